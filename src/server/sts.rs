//! The `iamd.v1.Sts` service: a thin layer over [`crate::sts`], which holds the rules. Every
//! issue of credentials, and every refusal, is audited.

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};

use super::Core;
use super::convert::{coded, tags};
use crate::audit::AuditRecord;
use crate::credentials::Authenticated;
use crate::credentials::oidc::VerifiedToken;
use crate::eval::Decision;
use crate::proto::{self, sts_server::Sts as StsApi};
use crate::sts::{AssumeRole, Issued, Sts, StsError, WebIdentityRequest};

pub struct StsService {
    core: Arc<Core>,
}

impl StsService {
    pub fn new(core: Arc<Core>) -> Self {
        StsService { core }
    }
}

fn caller<T>(request: &Request<T>) -> Result<Arc<Authenticated>, Status> {
    request.extensions().get::<Arc<Authenticated>>().cloned().ok_or_else(|| {
        coded(
            Code::Unauthenticated,
            "MissingAuthenticationToken",
            "sts.amazonaws.com",
            "Request is missing Authentication Token".into(),
        )
    })
}

fn sts_status(error: &StsError) -> Status {
    let code = match error.code {
        "AccessDenied" => Code::PermissionDenied,
        "ServiceFailure" => Code::Unavailable,
        _ => Code::InvalidArgument,
    };
    coded(code, error.code, "sts.amazonaws.com", error.message.clone())
}

fn credentials(issued: &Issued) -> proto::Credentials {
    proto::Credentials {
        access_key_id: issued.session.access_key_id.clone(),
        secret_access_key: issued.session.secret_access_key.expose().to_string(),
        session_token: issued.session_token.clone(),
        expiration: issued.expiration(),
    }
}

fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn duration(seconds: i32) -> Result<u32, Status> {
    u32::try_from(seconds).map_err(|_| {
        sts_status(&StsError {
            code: "ValidationError",
            message: "durationSeconds must not be negative".into(),
        })
    })
}

impl Core {
    fn web_identity_call(&self, request: WebIdentityRequest) -> Result<(Issued, VerifiedToken), Status> {
        let snapshot = self.snapshot.load_full().ok_or_else(|| {
            Status::unavailable("no policy bundle is loaded yet: credentials cannot be issued")
        })?;
        let sts = Sts {
            snapshot: &snapshot,
            iam: &self.iam,
            keyring: self.authenticator.keyring(),
            now: jiff::Timestamp::now(),
        };
        let role_arn = request.role_arn.clone();
        let result = sts.assume_role_with_web_identity(&self.web_identity, request);
        if self.audit.enabled() {
            let error = result.as_ref().err();
            self.audit.record(AuditRecord {
                event_time: sts.now,
                event_name: "AssumeRoleWithWebIdentity",
                principal: match &result {
                    Ok((_, token)) => format!("{}:{}", token.provider.config.issuer, token.claims.sub),
                    Err(_) => "web identity".into(),
                },
                action: "sts:AssumeRoleWithWebIdentity".into(),
                resource: role_arn,
                decision: if error.is_some_and(|e| e.code == "AccessDenied") {
                    Decision::ImplicitDeny
                } else {
                    Decision::Allow
                },
                reason: match &result {
                    Ok((issued, _)) => {
                        Some(format!("issued temporary credentials {}", issued.session.access_key_id))
                    }
                    Err(e) => Some(e.message.clone()),
                },
                snapshot_revision: snapshot.revision.clone(),
                error_code: error.map(|e| e.code.to_string()),
                ..AuditRecord::default()
            });
        }
        result.map_err(|e| sts_status(&e))
    }

    /// Runs an STS operation against the current snapshot, off the async workers (an MFA
    /// check writes to the store), and audits it.
    async fn sts_call<T: Send + 'static>(
        self: &Arc<Self>,
        caller: Arc<Authenticated>,
        operation: &'static str,
        resource: String,
        f: impl FnOnce(&Sts<'_>, &Authenticated) -> Result<T, StsError> + Send + 'static,
        describe: impl Fn(&T) -> String + Send + 'static,
    ) -> Result<T, Status> {
        let core = self.clone();
        tokio::task::spawn_blocking(move || {
            let snapshot = core.snapshot.load_full().ok_or_else(|| {
                Status::unavailable("no policy bundle is loaded yet: credentials cannot be issued")
            })?;
            let sts = Sts {
                snapshot: &snapshot,
                iam: &core.iam,
                keyring: core.authenticator.keyring(),
                now: jiff::Timestamp::now(),
            };
            let result = f(&sts, &caller);
            if core.audit.enabled() {
                let error = result.as_ref().err();
                core.audit.record(AuditRecord {
                    event_time: sts.now,
                    event_name: operation,
                    principal: caller.principal_arn(),
                    action: format!("sts:{operation}"),
                    resource: resource.clone(),
                    decision: if error.is_some_and(|e| e.code == "AccessDenied") {
                        Decision::ImplicitDeny
                    } else {
                        Decision::Allow
                    },
                    reason: match &result {
                        Ok(done) => Some(describe(done)),
                        Err(e) => Some(e.message.clone()),
                    },
                    snapshot_revision: snapshot.revision.clone(),
                    access_key_id: Some(caller.access_key_id.clone()),
                    error_code: error.map(|e| e.code.to_string()),
                    ..AuditRecord::default()
                });
            }
            result.map_err(|e| sts_status(&e))
        })
        .await
        .map_err(|_| Status::internal(format!("{operation} failed unexpectedly")))?
    }
}

#[tonic::async_trait]
impl StsApi for StsService {
    async fn assume_role(
        &self,
        r: Request<proto::AssumeRoleRequest>,
    ) -> Result<Response<proto::AssumeRoleResponse>, Status> {
        let caller = caller(&r)?;
        let r = r.into_inner();
        let request = AssumeRole {
            role_arn: r.role_arn.clone(),
            role_session_name: r.role_session_name,
            duration_seconds: duration(r.duration_seconds)?,
            policy: optional(r.policy),
            policy_arns: r.policy_arns,
            tags: tags(&r.tags),
            transitive_tag_keys: r.transitive_tag_keys,
            external_id: optional(r.external_id),
            mfa: optional(r.serial_number).zip(optional(r.token_code)),
            source_identity: optional(r.source_identity),
        };
        let issued = self
            .core
            .sts_call(
                caller,
                "AssumeRole",
                r.role_arn,
                move |sts, caller| sts.assume_role(caller, request),
                |i| format!("issued temporary credentials {}", i.session.access_key_id),
            )
            .await?;
        Ok(Response::new(proto::AssumeRoleResponse {
            credentials: Some(credentials(&issued)),
            assumed_role_user: Some(proto::AssumedRoleUser {
                assumed_role_id: issued.session.user_id(),
                arn: issued.session.principal_arn(),
            }),
            packed_policy_size: issued.packed_policy_size as i32,
            source_identity: issued.session.source_identity.clone().unwrap_or_default(),
        }))
    }

    async fn decode_authorization_message(
        &self,
        r: Request<proto::DecodeAuthorizationMessageRequest>,
    ) -> Result<Response<proto::DecodeAuthorizationMessageResponse>, Status> {
        let caller = caller(&r)?;
        let encoded = r.into_inner().encoded_message;
        let decoded_message = self
            .core
            .sts_call(
                caller,
                "DecodeAuthorizationMessage",
                "*".into(),
                move |sts, caller| sts.decode_authorization_message(caller, &encoded),
                |_| "decoded an authorization message".into(),
            )
            .await?;
        Ok(Response::new(proto::DecodeAuthorizationMessageResponse { decoded_message }))
    }

    async fn get_session_token(
        &self,
        r: Request<proto::GetSessionTokenRequest>,
    ) -> Result<Response<proto::GetSessionTokenResponse>, Status> {
        let caller = caller(&r)?;
        let r = r.into_inner();
        let seconds = duration(r.duration_seconds)?;
        let mfa = optional(r.serial_number).zip(optional(r.token_code));
        let resource = caller.principal_arn();
        let issued = self
            .core
            .sts_call(
                caller,
                "GetSessionToken",
                resource,
                move |sts, caller| sts.get_session_token(caller, seconds, mfa),
                |i| format!("issued temporary credentials {}", i.session.access_key_id),
            )
            .await?;
        Ok(Response::new(proto::GetSessionTokenResponse { credentials: Some(credentials(&issued)) }))
    }

    async fn assume_role_with_web_identity(
        &self,
        r: Request<proto::AssumeRoleWithWebIdentityRequest>,
    ) -> Result<Response<proto::AssumeRoleWithWebIdentityResponse>, Status> {
        let source_ip = r.remote_addr().map(|addr| addr.ip().to_string());
        let r = r.into_inner();
        let request = WebIdentityRequest {
            source_ip,
            role_arn: r.role_arn,
            role_session_name: r.role_session_name,
            web_identity_token: r.web_identity_token,
            duration_seconds: duration(r.duration_seconds)?,
            policy: optional(r.policy),
            policy_arns: r.policy_arns,
        };
        // A token naming a key not seen yet refreshes the provider's keys first.
        self.core.web_identity.prepare(&request.web_identity_token).await;
        let core = self.core.clone();
        let (issued, token) =
            tokio::task::spawn_blocking(move || core.web_identity_call(request))
                .await
                .map_err(|_| Status::internal("AssumeRoleWithWebIdentity failed unexpectedly"))??;
        Ok(Response::new(proto::AssumeRoleWithWebIdentityResponse {
            credentials: Some(credentials(&issued)),
            assumed_role_user: Some(proto::AssumedRoleUser {
                assumed_role_id: issued.session.user_id(),
                arn: issued.session.principal_arn(),
            }),
            subject_from_web_identity_token: token.claims.sub.clone(),
            audience: token.audience.clone(),
            provider: token.provider.config.issuer.clone(),
            packed_policy_size: issued.packed_policy_size as i32,
        }))
    }

    async fn get_caller_identity(
        &self,
        r: Request<proto::Empty>,
    ) -> Result<Response<proto::GetCallerIdentityResponse>, Status> {
        let caller = caller(&r)?;
        let snapshot = self
            .core
            .snapshot
            .load_full()
            .ok_or_else(|| Status::unavailable("no policy bundle is loaded yet"))?;
        let (user_id, account, arn) = crate::sts::caller_identity(&caller, &snapshot);
        Ok(Response::new(proto::GetCallerIdentityResponse { user_id, account, arn }))
    }
}
