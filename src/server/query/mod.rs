//! The AWS Query API: IAM (`Version=2010-05-08`) and STS (`Version=2011-06-15`) as the aws CLI,
//! boto3 and the AWS SDKs speak them, so that their users point `--endpoint-url` at iamd.
//!
//! A request is a form (in the body of a POST, or the query string of a GET) naming its
//! `Action`, signed with SigV4 for `iam` or `sts`; the answer is XML, and an error is AWS's
//! `ErrorResponse` document. This module is a codec only: every action is decoded into the
//! message the gRPC admin or STS service takes and run by that service, so authorization,
//! validation, auditing and the identity rules are one implementation behind both APIs.

mod iam;
mod params;
mod sts;
mod xml;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use http::{HeaderValue, Response, StatusCode, header};

use super::Core;
use crate::credentials::Authenticated;
use crate::credentials::sigv4::{AuthError, ErrorCode, HttpRequest, Payload};
pub use params::Params;
use xml::Xml;

/// The largest request accepted: policy documents are at most 10 KiB, URL-encoded.
const MAX_BODY: usize = 1 << 20;

/// Which API a request is for, by its `Version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Iam,
    Sts,
}

impl Api {
    fn from_version(version: &str) -> Option<Api> {
        match version {
            "2010-05-08" => Some(Api::Iam),
            "2011-06-15" => Some(Api::Sts),
            _ => None,
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Api::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            Api::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
        }
    }

    /// The service a request's signature must be scoped to.
    fn service(self) -> &'static str {
        match self {
            Api::Iam => "iam",
            Api::Sts => "sts",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Api::Iam => "2010-05-08",
            Api::Sts => "2011-06-15",
        }
    }
}

/// A failed request, as AWS reports it: a code, a message and the HTTP status that goes with
/// the code.
#[derive(Debug)]
pub struct QueryError {
    pub code: String,
    pub message: String,
}

impl QueryError {
    fn new(code: &str, message: String) -> QueryError {
        QueryError { code: code.to_string(), message }
    }

    pub fn validation(message: String) -> QueryError {
        QueryError::new("ValidationError", message)
    }

    fn status(&self) -> StatusCode {
        match self.code.as_str() {
            "NoSuchEntity" => StatusCode::NOT_FOUND,
            "EntityAlreadyExists" | "DeleteConflict" | "LimitExceeded" => StatusCode::CONFLICT,
            "AccessDenied"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "InvalidAuthenticationCode"
            | "IncompleteSignature" => StatusCode::FORBIDDEN,
            "ServiceFailure" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<tonic::Status> for QueryError {
    /// The services put AWS's code in the `iamd-error-code` metadata and prefix the message
    /// with it; the Query API carries them in separate fields.
    fn from(status: tonic::Status) -> QueryError {
        let code = status.metadata().get("iamd-error-code").and_then(|v| v.to_str().ok()).map(str::to_string);
        let code = code.unwrap_or_else(|| {
            match status.code() {
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange => "ValidationError",
                tonic::Code::NotFound => "NoSuchEntity",
                tonic::Code::AlreadyExists => "EntityAlreadyExists",
                tonic::Code::PermissionDenied => "AccessDenied",
                tonic::Code::Unauthenticated => "MissingAuthenticationToken",
                tonic::Code::ResourceExhausted => "LimitExceeded",
                tonic::Code::Unavailable => "ServiceUnavailable",
                _ => "ServiceFailure",
            }
            .to_string()
        });
        let message = status.message();
        let message = message.strip_prefix(&format!("{code}: ")).unwrap_or(message).to_string();
        QueryError { code, message }
    }
}

impl From<AuthError> for QueryError {
    fn from(error: AuthError) -> QueryError {
        QueryError::new(error.code.as_str(), error.message)
    }
}

/// A successful action: its result element's content.
pub(crate) struct Answer {
    action: String,
    result: Xml,
}

impl Answer {
    fn new(action: &str, result: Xml) -> Answer {
        Answer { action: action.to_string(), result }
    }
}

/// Serves the Query API on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub(super) async fn serve(
    listener: super::tls::Accepted,
    core: Arc<Core>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback(handle)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.concurrency))
        .with_state(Served { core, timeout: limits.timeout });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// The listener's limits, the same as the gRPC listeners'.
pub(super) struct Limits {
    pub concurrency: usize,
    pub timeout: std::time::Duration,
}

#[derive(Clone)]
struct Served {
    core: Arc<Core>,
    timeout: std::time::Duration,
}

async fn handle(State(served): State<Served>, request: Request) -> Response<Body> {
    let request_id = super::request_id::next_id();
    let (api, outcome) = match tokio::time::timeout(served.timeout, answer(&served.core, request)).await {
        Ok(answered) => answered,
        // The call may still complete (a write waiting for the disk): the caller cannot know,
        // as with a timeout of AWS's own API, and should read before retrying a create.
        Err(_) => (
            None,
            Err(QueryError::new(
                "ServiceUnavailable",
                format!("The request did not complete within {} ms.", served.timeout.as_millis()),
            )),
        ),
    };
    let api = api.unwrap_or(Api::Iam);
    let (status, document) = match outcome {
        Ok(answer) => {
            let mut document = Xml::new();
            let result = answer.result;
            document
                .element(&format!("{}Result", answer.action), |xml| {
                    xml.append(result);
                })
                .element("ResponseMetadata", |xml| {
                    xml.text("RequestId", &request_id);
                });
            (StatusCode::OK, document.finish(&format!("{}Response", answer.action), api.namespace()))
        }
        Err(error) => {
            let status = error.status();
            tracing::info!(code = %error.code, request_id = %request_id, "Query API request refused");
            let mut document = Xml::new();
            document
                .element("Error", |xml| {
                    xml.text("Type", if status.is_server_error() { "Receiver" } else { "Sender" })
                        .text("Code", &error.code)
                        .text("Message", &error.message);
                })
                .text("RequestId", &request_id);
            (status, document.finish("ErrorResponse", api.namespace()))
        }
    };
    let mut response = Response::new(Body::from(document));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// Decodes, authenticates and runs one request; also says which API it was for, so that an
/// error is written in that API's namespace.
async fn answer(core: &Arc<Core>, request: Request) -> (Option<Api>, Result<Answer, QueryError>) {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            let message = format!("The request body could not be read or exceeds {MAX_BODY} bytes.");
            return (None, Err(QueryError::new("RequestEntityTooLarge", message)));
        }
    };
    let params = Params::parse(parts.uri.query().unwrap_or_default(), &body);
    let Some(action) = params.get("Action").filter(|a| !a.is_empty()) else {
        return (
            None,
            Err(QueryError::new("MissingAction", "The request must contain the parameter Action.".into())),
        );
    };
    let version = params.get("Version").unwrap_or_default();
    let Some(api) = Api::from_version(version) else {
        let message = format!(
            "Could not find operation {action} for version {version}: iamd serves IAM (Version=2010-05-08) and \
             STS (Version=2011-06-15)."
        );
        return (None, Err(QueryError::new("InvalidAction", message)));
    };
    let unsigned = api == Api::Sts && action == "AssumeRoleWithWebIdentity";
    let caller = if unsigned {
        None
    } else {
        match authenticate(core, &parts, &body, api) {
            Ok(caller) => Some(Arc::new(caller)),
            Err(error) => return (Some(api), Err(error.into())),
        }
    };
    let span = tracing::info_span!("query", action, service = api.service());
    let _entered = span.enter();
    let ran = match (api, &caller) {
        (Api::Iam, Some(caller)) => iam::call(core, caller, action, &params).await,
        (Api::Sts, caller) => sts::call(core, caller.as_ref(), action, &params).await,
        (Api::Iam, None) => unreachable_unsigned(),
    };
    let outcome = ran.and_then(|answer| {
        answer.ok_or_else(|| {
            QueryError::new(
                "InvalidAction",
                format!(
                    "Could not find operation {action} for version {}: iamd does not implement it (see the \
                     README's table of supported actions).",
                    api.version()
                ),
            )
        })
    });
    (Some(api), outcome)
}

/// Every IAM action is signed; only STS has an unsigned one.
fn unreachable_unsigned() -> Result<Option<Answer>, QueryError> {
    Err(QueryError::new("MissingAuthenticationToken", "Request is missing Authentication Token".into()))
}

/// Verifies the request's SigV4 signature (in the `Authorization` header or the query string)
/// for the API's service. Replays are accepted, as AWS accepts them: the aws CLI may send the
/// same signed request twice within a second.
fn authenticate(
    core: &Core,
    parts: &http::request::Parts,
    body: &[u8],
    api: Api,
) -> Result<Authenticated, AuthError> {
    let headers = super::authenticate::headers(parts)?;
    let request = HttpRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &headers,
        payload: Payload::Body(body),
    };
    let signature = crate::credentials::sigv4::parse(&request)?;
    if signature.scope.service != api.service() {
        return Err(AuthError::new(
            ErrorCode::SignatureDoesNotMatch,
            format!(
                "Credential should be scoped to correct service: '{}', not '{}'.",
                api.service(),
                signature.scope.service
            ),
        ));
    }
    let snapshot = core.snapshot.load_full().ok_or_else(|| {
        AuthError::new(ErrorCode::AccessDenied, "no policy bundle is loaded yet: calls cannot be authorized")
    })?;
    core.authenticator.authenticate(&snapshot.directory, &request, jiff::Timestamp::now(), None)
}
