//! Envoy's external authorization (`envoy.service.auth.v3.Authorization/Check`).
//!
//! Envoy asks about every HTTP request it proxies. The bundle's route maps turn the request
//! into an action and a resource; the caller is the signer of a SigV4 request, the holder of a
//! bearer token from a configured OIDC provider, the mTLS peer mapped from its SPIFFE ID, or
//! anonymous; the decision is iamd's, as for `Authorize`. Allowed requests go on with
//! `x-iamd-principal` and `x-iamd-request-id`; refused ones end at Envoy with 403 (401 when the
//! credentials did not authenticate) and an AWS-style JSON body. Any internal error is a deny.

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HttpResponse, HttpStatus, HttpStatusCode,
    OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use tonic::{Request, Response, Status};

use super::{Core, bearer_sessions};
use crate::audit::AuditRecord;
use crate::authorize::{self, Query, Verified};
use crate::bundle::routes::{HttpView, Mapped};
use crate::credentials::Authenticated;
use crate::credentials::sigv4::{AuthError, HttpRequest, Payload};
use crate::eval::{Context, Decision};
use crate::snapshot::Snapshot;
use sha2::Digest as _;

pub struct ExtAuthzService {
    core: Arc<Core>,
}

impl ExtAuthzService {
    pub fn new(core: Arc<Core>) -> Self {
        ExtAuthzService { core }
    }
}

/// Who the request is from.
enum Identity {
    Signed(Authenticated),
    /// A principal iamd trusts the proxy for: an mTLS peer, a verified token's provider.
    Trusted(String, Vec<(String, String)>),
    Anonymous,
}

/// The answer to Envoy.
struct Verdict {
    status: u16,
    code: &'static str,
    message: String,
    /// The explanation of a policy denial, sealed for `sts:DecodeAuthorizationMessage`.
    encoded: Option<String>,
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue { key: key.into(), value: value.into(), raw_value: Vec::new() }),
        ..Default::default()
    }
}

fn ok(principal: &str, request_id: &str) -> CheckResponse {
    CheckResponse {
        status: Some(envoy_types::pb::google::rpc::Status { code: 0, ..Default::default() }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![header("x-iamd-principal", principal), header("x-iamd-request-id", request_id)],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn denied(verdict: &Verdict, request_id: &str) -> CheckResponse {
    let status = if verdict.status == 401 { HttpStatusCode::Unauthorized } else { HttpStatusCode::Forbidden };
    let mut body =
        serde_json::json!({"Code": verdict.code, "Message": verdict.message, "RequestId": request_id});
    if let Some(encoded) = &verdict.encoded {
        body["EncodedAuthorizationMessage"] = encoded.as_str().into();
    }
    CheckResponse {
        status: Some(envoy_types::pb::google::rpc::Status {
            code: if verdict.status == 401 { 16 } else { 7 },
            message: verdict.message.clone(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: status as i32 }),
            headers: vec![
                header("content-type", "application/json"),
                header("x-iamd-request-id", request_id),
            ],
            body: body.to_string(),
        })),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let request_id = request
            .metadata()
            .get(super::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let check = request.into_inner();
        let response = match self.core.snapshot.load_full() {
            Some(snapshot) => match self.core.check(&snapshot, &check) {
                (Some(principal), None) => ok(&principal, &request_id),
                (_, verdict) => denied(
                    &verdict.unwrap_or(Verdict {
                        status: 403,
                        code: "AccessDenied",
                        message: "Access denied".into(),
                        encoded: None,
                    }),
                    &request_id,
                ),
            },
            None => denied(
                &Verdict {
                    status: 403,
                    code: "ServiceUnavailable",
                    message: "no policy bundle is loaded yet: every request is denied".into(),
                    encoded: None,
                },
                &request_id,
            ),
        };
        Ok(Response::new(response))
    }
}

impl Core {
    /// Decides one proxied request: the principal when allowed, the refusal otherwise.
    fn check(&self, snapshot: &Snapshot, check: &CheckRequest) -> (Option<String>, Option<Verdict>) {
        let refuse =
            |status, code, message: String| (None, Some(Verdict { status, code, message, encoded: None }));
        let Some(attributes) = check.attributes.as_ref() else {
            return refuse(403, "AccessDenied", "the check carries no request attributes".into());
        };
        let Some(http) = attributes.request.as_ref().and_then(|r| r.http.as_ref()) else {
            return refuse(403, "AccessDenied", "the check carries no HTTP request".into());
        };
        let (path, query) = http.path.split_once('?').unwrap_or((http.path.as_str(), ""));
        let host = if http.host.is_empty() {
            http.headers.get(":authority").map_or("", String::as_str)
        } else {
            &http.host
        };
        let view = HttpView { host, method: &http.method, path, query, headers: &http.headers };
        let (action, resource, mapped_context) =
            match snapshot.bundle.routes.map(&view, &attributes.context_extensions) {
                Mapped::Public => return (Some("public".into()), None),
                Mapped::Unmapped => {
                    return refuse(
                        403,
                        "AccessDenied",
                        format!("no route map rule maps {} {path} on {host}", http.method),
                    );
                }
                Mapped::Request { action, resource, context } => (action, resource, context),
            };
        let source_ip =
            attributes.source.as_ref().and_then(|peer| peer.address.as_ref()).and_then(|address| {
                match &address.address {
                    Some(Address::SocketAddress(socket)) => Some(socket.address.clone()),
                    _ => None,
                }
            });
        let secure = http.scheme == "https"
            || attributes.source.as_ref().is_some_and(|peer| !peer.principal.is_empty());
        let now = jiff::Timestamp::now();
        let connection = crate::sts::Connection { source_ip: source_ip.as_deref(), secure_transport: secure };
        let identity =
            match self.identify(snapshot, attributes, http, host, (&action, &resource), now, connection) {
                Ok(identity) => identity,
                Err(error) => {
                    // Failed credentials are audited like any refusal, with AWS's code.
                    if self.audit.enabled() {
                        self.audit.record(AuditRecord {
                            event_time: now,
                            event_name: "Check",
                            action: action.clone(),
                            resource: resource.clone(),
                            decision: Decision::ImplicitDeny,
                            reason: Some(error.message.clone()),
                            snapshot_revision: snapshot.revision.clone(),
                            source_ip: source_ip.clone(),
                            error_code: Some(error.code.as_str().to_string()),
                            ..AuditRecord::default()
                        });
                    }
                    return refuse(401, error.code.as_str(), error.message);
                }
            };
        let mut context = Context::default();
        for (key, value) in &mapped_context {
            context.insert(key, [value.as_str()]);
        }
        if let Some(agent) = http.headers.get("user-agent") {
            context.insert("aws:UserAgent", [agent.as_str()]);
        }
        if let Some(referer) = http.headers.get("referer") {
            context.insert("aws:Referer", [referer.as_str()]);
        }
        context.insert("aws:SecureTransport", [if secure { "true" } else { "false" }]);
        if let Some(ip) = &source_ip {
            context.insert("aws:SourceIp", [ip.as_str()]);
        }
        let (principal, verified, extra) = match &identity {
            Identity::Signed(caller) => (
                caller.principal_arn(),
                Some(Verified {
                    caller,
                    source_ip: source_ip.as_deref(),
                    secure_transport: secure,
                    now,
                    mfa_at: None,
                }),
                None,
            ),
            Identity::Trusted(principal, extra) => (principal.clone(), None, Some(extra)),
            Identity::Anonymous => ("anonymous".to_string(), None, None),
        };
        for (key, value) in extra.into_iter().flatten() {
            context.insert(key, [value.as_str()]);
        }
        let query = Query {
            principal: &principal,
            action: &action,
            resource: &resource,
            resource_account: "",
            context,
            explain: true,
            verified,
        };
        let answer = match authorize::decide(snapshot, query) {
            Ok(answer) => answer,
            Err(e) => return refuse(403, "AccessDenied", format!("the request cannot be decided: {e}")),
        };
        if self.audit.enabled() {
            let explanation = answer.explanation.as_ref();
            self.audit.record(AuditRecord {
                event_time: now,
                event_name: "Check",
                principal: principal.clone(),
                action: action.clone(),
                resource: resource.clone(),
                decision: answer.decision,
                matched_statements: explanation.map(|e| e.matched_statements.clone()).unwrap_or_default(),
                reason: explanation.map(|e| e.reason.clone()),
                snapshot_revision: snapshot.revision.clone(),
                source_ip: source_ip.clone(),
                access_key_id: match &identity {
                    Identity::Signed(caller) => Some(caller.access_key_id.clone()),
                    _ => None,
                },
                ..AuditRecord::default()
            });
        }
        if answer.decision == Decision::Allow {
            return (Some(principal), None);
        }
        let Some(explanation) = answer.explanation else {
            return refuse(403, "AccessDenied", "Access denied".into());
        };
        let message_context = answer.context.unwrap_or_default();
        let encoded = crate::authorization_message::encode(
            self.authenticator.keyring(),
            &principal,
            &action,
            &resource,
            &message_context,
            &explanation,
        );
        (
            None,
            Some(Verdict {
                status: 403,
                code: "AccessDenied",
                message: explanation.reason,
                encoded: Some(encoded),
            }),
        )
    }

    /// Establishes who sent the request: a SigV4 signature, a bearer token, an mTLS peer.
    #[allow(clippy::too_many_arguments)]
    fn identify(
        &self,
        snapshot: &Snapshot,
        attributes: &envoy_types::pb::envoy::service::auth::v3::AttributeContext,
        http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
        host: &str,
        (action, resource): (&str, &str),
        now: jiff::Timestamp,
        connection: crate::sts::Connection<'_>,
    ) -> Result<Identity, AuthError> {
        let authorization = http.headers.get("authorization").map(String::as_str).unwrap_or_default();
        let presigned = http.path.contains("X-Amz-Signature=");
        if authorization.starts_with("AWS4-") || presigned {
            let (path, query) = http.path.split_once('?').unwrap_or((http.path.as_str(), ""));
            let mut headers: Vec<(String, String)> = http
                .headers
                .iter()
                .filter(|(name, _)| !name.starts_with(':'))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            if !http.headers.contains_key("host") {
                headers.push(("host".into(), host.to_string()));
            }
            let body: &[u8] = if http.raw_body.is_empty() { http.body.as_bytes() } else { &http.raw_body };
            let request = HttpRequest {
                method: &http.method,
                path,
                query,
                headers: &headers,
                payload: Payload::Body(body),
            };
            let question = format!("{action}\n{resource}");
            return self
                .authenticator
                .authenticate(&snapshot.directory, &request, now, Some(&question))
                .map(Identity::Signed);
        }
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            let verified = self.web_identity.verify(token.trim()).map_err(|e| {
                AuthError::new(
                    crate::credentials::sigv4::ErrorCode::AccessDenied,
                    format!("{}: {}", e.code, e.message),
                )
            })?;
            if let Some(role) =
                snapshot.bundle.routes.web_identity_role(host, &verified.provider.config.issuer)
            {
                let key = bearer_sessions::Key::new(
                    token.trim(),
                    role,
                    connection.source_ip,
                    connection.secure_transport,
                    snapshot,
                );
                if let Some(caller) = self.bearer_sessions.get(&key, now.as_second()) {
                    return Ok(Identity::Signed(caller));
                }
                let sts =
                    crate::sts::Sts { snapshot, iam: &self.iam, keyring: self.authenticator.keyring(), now };
                let session = sts
                    .web_identity_session(
                        &verified,
                        role,
                        &session_name(&verified.claims.sub),
                        crate::sts::DEFAULT_ROLE_DURATION,
                        connection,
                    )
                    .map_err(|e| {
                        AuthError::new(
                            crate::credentials::sigv4::ErrorCode::AccessDenied,
                            format!("the token cannot act as {role}: {}", e.message),
                        )
                    })?;
                let caller = Authenticated {
                    access_key_id: session.access_key_id.clone(),
                    caller: crate::credentials::Caller::Session(Arc::new(session)),
                    service: "sts".into(),
                    region: crate::client::REGION.into(),
                };
                self.bearer_sessions.insert(key, caller.clone(), now.as_second(), verified.claims.exp as i64);
                return Ok(Identity::Signed(caller));
            }
            let name = &verified.provider.name;
            let context = vec![
                (format!("{name}:aud"), verified.audience.clone()),
                (format!("{name}:sub"), verified.claims.sub.clone()),
            ];
            return Ok(Identity::Trusted(verified.provider.arn(&snapshot.bundle.account), context));
        }
        if let Some(peer) = attributes.source.as_ref().filter(|peer| !peer.principal.is_empty())
            && let Some(principal) = snapshot.bundle.routes.spiffe_principal(host, &peer.principal)
        {
            return Ok(Identity::Trusted(principal.to_string(), Vec::new()));
        }
        Ok(Identity::Anonymous)
    }
}

/// A role session name from a token's subject: AWS allows `[\w+=,.@-]`, 2 to 64 characters.
/// A subject that does not fit as it is gets a digest of itself appended, so that two subjects
/// never share a session (and with it `aws:userid` and the session ARN).
fn session_name(subject: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    if (2..=64).contains(&subject.len()) && subject.chars().all(allowed) {
        return subject.to_string();
    }
    let readable: String = subject.chars().map(|c| if allowed(c) { c } else { '-' }).take(47).collect();
    let digest = sha2::Sha256::digest(subject.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{hex}")
}

/// `iamd.v1.Authorizer`'s neighbour on the decision listener.
pub fn service(core: Arc<Core>) -> envoy_types::ext_authz::v3::pb::AuthorizationServer<ExtAuthzService> {
    envoy_types::ext_authz::v3::pb::AuthorizationServer::new(ExtAuthzService::new(core))
}

#[cfg(test)]
mod tests {
    use super::session_name;

    fn allowed(name: &str) -> bool {
        (2..=64).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    }

    #[test]
    fn session_names_keep_what_aws_allows_of_the_subject() {
        assert_eq!(session_name("partner-1"), "partner-1");
        assert_eq!(session_name("alice@example.com"), "alice@example.com");
        let github = session_name("repo:acme/app:ref:refs/heads/main");
        assert!(github.starts_with("repo-acme-app-ref-refs-heads-main-") && allowed(&github), "{github}");
        for subject in ["7", "", "ünïcode", &"x".repeat(100), "repo:acme/app:ref:refs/heads/main"] {
            assert!(allowed(&session_name(subject)), "{subject}: {}", session_name(subject));
        }
    }

    #[test]
    fn different_subjects_never_share_a_session_name() {
        assert_ne!(session_name("a:b"), session_name("a-b"));
        assert_ne!(session_name("a:b"), session_name("a/b"));
        let long = "x".repeat(70);
        assert_ne!(session_name(&format!("{long}1")), session_name(&format!("{long}2")));
    }
}
