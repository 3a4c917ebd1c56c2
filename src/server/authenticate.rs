//! A tower layer that authenticates admin and STS calls by their SigV4 signature.
//!
//! The signature covers the HTTP/2 request that carries the gRPC call: method, path, the signed
//! headers (with `host` being the `:authority`) and the hash of the body, which holds the
//! length-prefixed protobuf message. Verifying needs the whole body, so the layer buffers it
//! (bounded), verifies, and hands the service the same bytes with the authenticated caller in
//! the request's extensions. Other services on the listener (health, reflection) pass through.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use tonic::body::Body;
use tower::{Layer, Service};

use super::Core;
use super::convert;
use crate::credentials::sigv4::{AuthError, ErrorCode, HttpRequest, Payload};

/// The largest signed call accepted: a state document for Import, much less for the rest.
pub const MAX_IMPORT_BODY: usize = 64 << 20;
pub const MAX_SIGNED_BODY: usize = 1 << 20;
const IMPORT_PATH: &str = "/iamd.v1.Admin/Import";

/// The services whose calls must be signed, with the service name their signatures must be
/// scoped to.
const SIGNED_SERVICES: &[(&str, &str)] = &[("/iamd.v1.Admin/", "iam"), ("/iamd.v1.Sts/", "sts")];

/// Calls of those services whose credential is in the message itself.
const UNSIGNED_CALLS: &[&str] = &["/iamd.v1.Sts/AssumeRoleWithWebIdentity"];

#[derive(Clone)]
pub struct AuthenticateLayer {
    core: Arc<Core>,
}

impl AuthenticateLayer {
    pub fn new(core: Arc<Core>) -> AuthenticateLayer {
        AuthenticateLayer { core }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner, core: self.core.clone() }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    core: Arc<Core>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for Authenticate<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let signed = SIGNED_SERVICES.iter().find(|(prefix, _)| path.starts_with(prefix)).map(|(_, s)| *s);
        let Some(service) = signed.filter(|_| !UNSIGNED_CALLS.contains(&path)) else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let core = self.core.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let refuse = |error: AuthError| {
                tracing::info!(code = error.code.as_str(), path = %parts.uri.path(), "call not authenticated");
                Ok(convert::auth_status(&error).into_http())
            };
            // Everything that can be checked without the body is, before the body is read.
            let headers = match headers(&parts) {
                Ok(headers) => headers,
                Err(error) => return refuse(error),
            };
            if let Err(error) = precheck(&parts, &headers, service) {
                return refuse(error);
            }
            let limit = if parts.uri.path() == IMPORT_PATH { MAX_IMPORT_BODY } else { MAX_SIGNED_BODY };
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(tonic::Status::resource_exhausted(format!(
                        "the request body could not be read or exceeds {limit} bytes"
                    ))
                    .into_http());
                }
            };
            match authenticate(&core, &parts, &headers, &bytes) {
                Ok(authenticated) => {
                    parts.extensions.insert(Arc::new(authenticated));
                }
                Err(error) => return refuse(error),
            }
            inner.call(Request::from_parts(parts, Body::new(Full::new(bytes)))).await
        })
    }
}

/// The request's headers as text, with `host` from the `:authority`. A header value that is
/// not visible ASCII is refused rather than dropped: dropping it could hide an unsigned value.
pub(super) fn headers(parts: &http::request::Parts) -> Result<Vec<(String, String)>, AuthError> {
    let mut headers = Vec::with_capacity(parts.headers.len() + 1);
    for (name, value) in &parts.headers {
        let value = value.to_str().map_err(|_| {
            AuthError::new(
                ErrorCode::IncompleteSignature,
                format!("The value of header '{name}' is not visible ASCII."),
            )
        })?;
        headers.push((name.as_str().to_string(), value.to_string()));
    }
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        headers.push(("host".to_string(), authority.as_str().to_string()));
    }
    Ok(headers)
}

fn http_request<'a>(
    parts: &'a http::request::Parts,
    headers: &'a [(String, String)],
    body: &'a [u8],
) -> HttpRequest<'a> {
    HttpRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers,
        payload: Payload::Body(body),
    }
}

/// A call must be signed in an `Authorization` header (a presigned URL would leave the gRPC
/// message, which is the body, unsigned), for the right service, at the right time.
fn precheck(
    parts: &http::request::Parts,
    headers: &[(String, String)],
    service: &str,
) -> Result<(), AuthError> {
    let signature = crate::credentials::sigv4::parse(&http_request(parts, headers, &[]))?;
    if signature.presigned_expires.is_some() {
        return Err(AuthError::new(
            ErrorCode::IncompleteSignature,
            "Calls must be signed in the Authorization header; presigned URLs are not accepted here.",
        ));
    }
    if signature.scope.service != service {
        return Err(AuthError::new(
            ErrorCode::SignatureDoesNotMatch,
            format!(
                "Credential should be scoped to correct service: '{service}', not '{}'.",
                signature.scope.service
            ),
        ));
    }
    crate::credentials::sigv4::check_time(&signature, jiff::Timestamp::now())
}

fn authenticate(
    core: &Core,
    parts: &http::request::Parts,
    headers: &[(String, String)],
    body: &Bytes,
) -> Result<crate::credentials::Authenticated, AuthError> {
    let snapshot = core.snapshot.load_full().ok_or_else(|| {
        AuthError::new(ErrorCode::AccessDenied, "no policy bundle is loaded yet: calls cannot be authorized")
    })?;
    // The path is signed, so it is what a replayed signature would be replayed for.
    core.authenticator.authenticate(
        &snapshot.directory,
        &http_request(parts, headers, body),
        jiff::Timestamp::now(),
        Some(parts.uri.path()),
    )
}
