//! Calling iamd's signed APIs: a gRPC channel that signs every call with SigV4, as the admin
//! and STS services require. Used by `iamd admin` and `iamd sts`, and by programs that manage
//! iamd.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Full};
use tonic::body::Body;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tower::Service;

use crate::credentials::sigv4::{self, HttpRequest, Payload, SigningCredentials};

/// The region iamd's clients sign for: iamd serves one partition, so any region verifies.
pub const REGION: &str = "us-east-1";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const NONCE_HEADER: &str = "x-iamd-nonce";

/// A channel whose calls are signed for `service` (`iam` for admin calls, `sts` for STS).
#[derive(Clone, Debug)]
pub struct SigningChannel {
    inner: Channel,
    /// The `host` the server sees (the channel adds it below this layer).
    authority: Arc<str>,
    credentials: Arc<SigningCredentials>,
    service: &'static str,
}

impl SigningChannel {
    /// Connects to `endpoint` (`http://HOST:PORT`, or `https://` with the TLS settings of the
    /// environment: see [`tls_from_env`]).
    pub async fn connect(
        endpoint: &str,
        credentials: SigningCredentials,
        service: &'static str,
    ) -> Result<SigningChannel, ConnectError> {
        let tls = if endpoint.starts_with("https://") { Some(tls_from_env()?) } else { None };
        SigningChannel::connect_with(endpoint, credentials, service, tls).await
    }

    /// Connects to `endpoint`, over TLS with `tls` when given.
    pub async fn connect_with(
        endpoint: &str,
        credentials: SigningCredentials,
        service: &'static str,
        tls: Option<ClientTlsConfig>,
    ) -> Result<SigningChannel, ConnectError> {
        let uri: http::Uri = endpoint.parse().map_err(|_| ConnectError::Endpoint(endpoint.to_string()))?;
        let authority =
            uri.authority().ok_or_else(|| ConnectError::Endpoint(endpoint.to_string()))?.to_string();
        let mut builder = Channel::builder(uri);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(ConnectError::Transport)?;
        }
        let inner = builder.connect().await.map_err(ConnectError::Transport)?;
        Ok(SigningChannel { inner, authority: authority.into(), credentials: Arc::new(credentials), service })
    }
}

/// TLS settings from the environment: `IAMD_CA_FILE` (PEM, the CA that signed iamd's
/// certificate) and, for mutual TLS, `IAMD_CLIENT_CERT_FILE` and `IAMD_CLIENT_KEY_FILE`.
pub fn tls_from_env() -> Result<ClientTlsConfig, ConnectError> {
    let read = |variable: &str| -> Result<Option<Vec<u8>>, ConnectError> {
        match std::env::var_os(variable) {
            None => Ok(None),
            Some(path) => std::fs::read(&path).map(Some).map_err(|e| {
                ConnectError::Tls(format!("cannot read {variable} `{}`: {e}", path.to_string_lossy()))
            }),
        }
    };
    let ca = read("IAMD_CA_FILE")?.ok_or_else(|| {
        ConnectError::Tls("set IAMD_CA_FILE to the PEM file of the CA that signed iamd's certificate".into())
    })?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    match (read("IAMD_CLIENT_CERT_FILE")?, read("IAMD_CLIENT_KEY_FILE")?) {
        (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(cert, key)),
        (None, None) => {}
        _ => {
            return Err(ConnectError::Tls(
                "set both IAMD_CLIENT_CERT_FILE and IAMD_CLIENT_KEY_FILE, or neither".into(),
            ));
        }
    }
    Ok(tls)
}

/// Why a signing channel could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("`{0}` is not an endpoint URL such as http://127.0.0.1:50052")]
    Endpoint(String),
    #[error("cannot connect: {0}")]
    Transport(tonic::transport::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

impl Service<Request<Body>> for SigningChannel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let credentials = self.credentials.clone();
        let authority = self.authority.clone();
        let service = self.service;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let host = parts.uri.authority().map_or(&*authority, |a| a.as_str());
            // A signed nonce makes each call's signature unique, so that iamd's refusal of
            // replayed signatures never refuses a repeated call.
            let nonce: String = crate::credentials::keyring::random_bytes::<12>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            parts.headers.insert(NONCE_HEADER, HeaderValue::try_from(nonce.as_str())?);
            let mut signed_headers =
                vec![("host".to_string(), host.to_string()), (NONCE_HEADER.to_string(), nonce)];
            if let Some(content_type) =
                parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
            {
                signed_headers.push(("content-type".to_string(), content_type.to_string()));
            }
            let unsigned = HttpRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or_default(),
                headers: &signed_headers,
                payload: Payload::Body(&bytes),
            };
            let added = sigv4::sign(&credentials, REGION, service, jiff::Timestamp::now(), &unsigned);
            for (name, value) in added {
                parts.headers.insert(HeaderName::try_from(name)?, HeaderValue::try_from(value)?);
            }
            let response = inner.call(Request::from_parts(parts, Body::new(Full::new(bytes)))).await?;
            Ok(response)
        })
    }
}

/// Credentials from the environment, as the aws CLI reads them: `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and, for temporary credentials, `AWS_SESSION_TOKEN`.
pub fn credentials_from_env() -> Option<SigningCredentials> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Some(SigningCredentials {
        access_key_id: var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
        session_token: var("AWS_SESSION_TOKEN"),
    })
}

/// Credentials from a file of `NAME=VALUE` lines (the root credentials file iamd writes at
/// first start has this form).
pub fn credentials_from_file(text: &str) -> Option<SigningCredentials> {
    let value = |name: &str| {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix('=').map(str::to_string))
    };
    Some(SigningCredentials {
        access_key_id: value("AWS_ACCESS_KEY_ID")?,
        secret_access_key: value("AWS_SECRET_ACCESS_KEY")?,
        session_token: value("AWS_SESSION_TOKEN"),
    })
}
