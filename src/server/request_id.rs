//! A tower layer that gives every request an id (the caller's `x-request-id`, or a new one)
//! and returns it in the response headers, so logs, audit records and callers can be matched.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

pub const REQUEST_ID: &str = "x-request-id";

#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RequestId<S> {
    inner: S,
}

/// A process-unique id: a random prefix fixed at start and a counter.
pub(super) fn next_id() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    });
    format!("{prefix:08x}-{:012x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let valid = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.is_empty() && v.len() <= 128);
        if !valid && let Ok(value) = HeaderValue::from_str(&next_id()) {
            request.headers_mut().insert(REQUEST_ID, value);
        }
        // A value that never repeats is not worth a place in the connection's HPACK table: it
        // would only push out entries that do repeat (RFC 7541, section 7.1.3).
        let id = request.headers().get(REQUEST_ID).cloned().map(|mut id| {
            id.set_sensitive(true);
            id
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(id) = id {
                response.headers_mut().insert(REQUEST_ID, id);
            }
            Ok(response)
        })
    }
}
