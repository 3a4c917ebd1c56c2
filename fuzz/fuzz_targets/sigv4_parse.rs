//! SigV4 parsing and verification on hostile requests: an `Authorization` header, or a
//! presigned query string, from the input. Parsing must refuse with an AWS error code or
//! succeed, and verification with a fixed key must never panic.
//!
//! Input: `PATH\nQUERY\nAUTHORIZATION\nX-AMZ-DATE\nBODY`.
#![no_main]

use iamd::credentials::sigv4::{self, HttpRequest, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(5, '\n');
    let path = lines.next().unwrap_or("/");
    let query = lines.next().unwrap_or("");
    let authorization = lines.next().unwrap_or("");
    let date = lines.next().unwrap_or("");
    let body = lines.next().unwrap_or("");
    let mut headers = vec![("host".to_string(), "iam.amazonaws.com".to_string())];
    if !authorization.is_empty() {
        headers.push(("authorization".to_string(), authorization.to_string()));
    }
    if !date.is_empty() {
        headers.push(("x-amz-date".to_string(), date.to_string()));
    }
    let request = HttpRequest {
        method: "POST",
        path,
        query,
        headers: &headers,
        payload: Payload::Body(body.as_bytes()),
    };
    let Ok(signature) = sigv4::parse(&request) else { return };
    let key = sigv4::SigningKey::derive("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &signature.scope);
    let _ = sigv4::verify(&request, &signature, &key);
});
