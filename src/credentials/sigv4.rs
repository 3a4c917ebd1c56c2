//! AWS Signature Version 4, verified as AWS verifies it (and signed, for iamd's own clients).
//!
//! A request is signed over its canonical form: method, path, query, the headers it names as
//! signed, and the hash of its payload. Verifying recomputes that signature from the secret of
//! the access key the request names and compares the two in constant time. The signing key
//! depends only on the secret, the date, the region and the service, so callers cache it (see
//! [`SigningKey`]); the per-request cost is then two SHA-256 and one HMAC.
//!
//! Reference: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>

use hmac::{KeyInit, Mac};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far a request's time may be from the verifier's clock.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;
/// The longest validity of a presigned URL: seven days.
pub const MAX_PRESIGNED_EXPIRES: i64 = 7 * 24 * 60 * 60;

/// The error codes AWS returns for authentication failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// No signature at all.
    MissingAuthenticationToken,
    /// A signature that cannot be parsed: missing or malformed parts.
    IncompleteSignature,
    /// The access key (or the session token) is unknown or inactive.
    InvalidClientTokenId,
    /// The signature is not the one the secret produces for this request.
    SignatureDoesNotMatch,
    /// The request's time is more than 15 minutes from the clock, or a presigned URL expired.
    RequestExpired,
    /// The session token has expired.
    ExpiredToken,
    /// The payload does not hash to the declared `x-amz-content-sha256`.
    XAmzContentSHA256Mismatch,
    /// Authenticated, but refused: a replayed signature, a credential not allowed here.
    AccessDenied,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingAuthenticationToken => "MissingAuthenticationToken",
            ErrorCode::IncompleteSignature => "IncompleteSignature",
            ErrorCode::InvalidClientTokenId => "InvalidClientTokenId",
            ErrorCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            ErrorCode::RequestExpired => "RequestExpired",
            ErrorCode::ExpiredToken => "ExpiredToken",
            ErrorCode::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            ErrorCode::AccessDenied => "AccessDenied",
        }
    }
}

/// An authentication failure: AWS's code and a message that tells no more than AWS tells.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct AuthError {
    pub code: ErrorCode,
    pub message: String,
}

impl AuthError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AuthError {
        AuthError { code, message: message.into() }
    }

    fn incomplete(message: impl Into<String>) -> AuthError {
        AuthError::new(ErrorCode::IncompleteSignature, message)
    }

    pub fn invalid_token() -> AuthError {
        AuthError::new(
            ErrorCode::InvalidClientTokenId,
            "The security token included in the request is invalid.",
        )
    }

    pub fn mismatch() -> AuthError {
        AuthError::new(
            ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. Check \
             your AWS Secret Access Key and signing method. Consult the service documentation for \
             details.",
        )
    }
}

/// A request as the service received it. Its `Debug` shows no header value or body: they
/// carry signatures and session tokens.
#[derive(Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path exactly as sent (still percent-encoded), without the query.
    pub path: &'a str,
    /// The query string exactly as sent, without the `?`.
    pub query: &'a str,
    /// Header names (any case) and values; a name may repeat.
    pub headers: &'a [(String, String)],
    pub payload: Payload<'a>,
}

impl std::fmt::Debug for HttpRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("header_names", &names)
            .finish_non_exhaustive()
    }
}

/// What the verifier knows of the payload.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// The body itself.
    Body(&'a [u8]),
    /// The hex SHA-256 of the body, computed by the caller, or `UNSIGNED-PAYLOAD`.
    Hash(&'a str),
}

impl HttpRequest<'_> {
    fn header_values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn header<'h>(&'h self, name: &'h str) -> Option<&'h str> {
        self.header_values(name).next()
    }
}

/// The credential scope: the date, region and service the signing key was derived for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub date: String,
    pub region: String,
    pub service: String,
}

/// A parsed (not yet verified) signature. Its `Debug` omits the signature and the token.
#[derive(Clone)]
pub struct Signature {
    pub access_key_id: String,
    pub scope: Scope,
    pub signed_headers: Vec<String>,
    signature: String,
    /// When the request was signed.
    pub time: Timestamp,
    /// The same time in the basic ISO 8601 form the string to sign uses.
    amz_date: String,
    /// `X-Amz-Security-Token`, for temporary credentials.
    pub session_token: Option<String>,
    /// For a presigned URL, how many seconds it stays valid.
    pub presigned_expires: Option<i64>,
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signature")
            .field("access_key_id", &self.access_key_id)
            .field("scope", &self.scope)
            .field("time", &self.time)
            .field("presigned_expires", &self.presigned_expires)
            .finish_non_exhaustive()
    }
}

impl Signature {
    /// The signature itself, for replay detection.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// When this signature stops being acceptable.
    pub fn valid_until(&self) -> Timestamp {
        let seconds = self.presigned_expires.unwrap_or(MAX_SKEW_SECONDS);
        self.time.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap_or(self.time)
    }
}

/// Finds and parses the signature of `request`: an `Authorization` header or the `X-Amz-*`
/// parameters of a presigned URL.
pub fn parse(request: &HttpRequest<'_>) -> Result<Signature, AuthError> {
    if let Some(header) = request.header("authorization") {
        return parse_header(request, header);
    }
    let query = query_pairs(request.query);
    if query.iter().any(|(k, _)| k == "X-Amz-Algorithm" || k == "X-Amz-Signature") {
        return parse_presigned(&query);
    }
    Err(AuthError::new(ErrorCode::MissingAuthenticationToken, "Request is missing Authentication Token"))
}

fn parse_header(request: &HttpRequest<'_>, header: &str) -> Result<Signature, AuthError> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| AuthError::incomplete(format!("Authorization header must start with {ALGORITHM}.")))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or_else(|| {
            AuthError::incomplete(format!(
                "Authorization header requires each component to be of the form key=value: '{}'.",
                part.trim()
            ))
        })?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    let missing = |what: &str| {
        AuthError::incomplete(format!(
            "Authorization header requires '{what}' parameter. Authorization={}",
            header.split("Signature=").next().unwrap_or_default().trim_end()
        ))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let (time, amz_date) = match request.header("x-amz-date") {
        Some(value) => (parse_amz_date(value)?, value.to_string()),
        None => match request.header("date") {
            Some(value) => jiff::fmt::rfc2822::parse(value)
                .map(|zoned| (zoned.timestamp(), amz_date(zoned.timestamp())))
                .map_err(|_| {
                    AuthError::incomplete(format!("Date header '{value}' is not a valid HTTP date."))
                })?,
            None => {
                return Err(AuthError::incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                ));
            }
        },
    };
    let (access_key_id, scope) = parse_credential(credential)?;
    Ok(Signature {
        access_key_id,
        scope,
        signed_headers: split_signed_headers(signed_headers)?,
        signature: signature.to_string(),
        time,
        amz_date,
        session_token: request.header("x-amz-security-token").map(str::to_string),
        presigned_expires: None,
    })
}

fn parse_presigned(query: &[(String, String)]) -> Result<Signature, AuthError> {
    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let require = |name: &str| {
        get(name).ok_or_else(|| {
            AuthError::incomplete(format!("AWS query-string parameters must include '{name}'."))
        })
    };
    if require("X-Amz-Algorithm")? != ALGORITHM {
        return Err(AuthError::incomplete(format!("X-Amz-Algorithm only supports '{ALGORITHM}'.")));
    }
    let (access_key_id, scope) = parse_credential(require("X-Amz-Credential")?)?;
    let amz_date = require("X-Amz-Date")?;
    let time = parse_amz_date(amz_date)?;
    let expires = require("X-Amz-Expires")?;
    let expires = expires
        .parse::<i64>()
        .ok()
        .filter(|e| (1..=MAX_PRESIGNED_EXPIRES).contains(e))
        .ok_or_else(|| {
            AuthError::incomplete(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGNED_EXPIRES}, not '{expires}'."
            ))
        })?;
    Ok(Signature {
        access_key_id,
        scope,
        signed_headers: split_signed_headers(require("X-Amz-SignedHeaders")?)?,
        signature: require("X-Amz-Signature")?.to_string(),
        time,
        amz_date: amz_date.to_string(),
        session_token: get("X-Amz-Security-Token").map(str::to_string),
        presigned_expires: Some(expires),
    })
}

/// Region and service names: 1 to 64 lower-case letters, digits and `-`.
fn scope_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn parse_credential(credential: &str) -> Result<(String, Scope), AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"]
            if (1..=128).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_alphanumeric())
                && date.len() == 8
                && date.bytes().all(|b| b.is_ascii_digit())
                && scope_name(region)
                && scope_name(service) =>
        {
            Ok((
                key.to_string(),
                Scope { date: date.to_string(), region: region.to_string(), service: service.to_string() },
            ))
        }
        _ => Err(AuthError::incomplete(format!(
            "Credential should be scoped to a valid region, not '{credential}'. The credential must \
             have the form ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request."
        ))),
    }
}

fn split_signed_headers(value: &str) -> Result<Vec<String>, AuthError> {
    let headers: Vec<String> = value.split(';').map(str::to_ascii_lowercase).collect();
    if headers.iter().any(String::is_empty) {
        return Err(AuthError::incomplete(format!("SignedHeaders '{value}' names an empty header.")));
    }
    if !headers.iter().any(|h| h == "host") {
        return Err(AuthError::incomplete("'Host' must be a signed header."));
    }
    Ok(headers)
}

/// `YYYYMMDDTHHMMSSZ`, read by hand: it is on every request.
fn parse_amz_date(value: &str) -> Result<Timestamp, AuthError> {
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i16> {
        let part = bytes.get(range)?;
        part.iter().try_fold(0i16, |n, b| b.is_ascii_digit().then(|| n * 10 + i16::from(b - b'0')))
    };
    let shaped = bytes.len() == 16 && bytes[8] == b'T' && bytes[15] == b'Z';
    let parsed = shaped
        .then(|| {
            let date =
                jiff::civil::Date::new(digits(0..4)?, digits(4..6)? as i8, digits(6..8)? as i8).ok()?;
            let time =
                jiff::civil::Time::new(digits(9..11)? as i8, digits(11..13)? as i8, digits(13..15)? as i8, 0)
                    .ok()?;
            jiff::tz::TimeZone::UTC.to_timestamp(date.to_datetime(time)).ok()
        })
        .flatten();
    parsed.ok_or_else(|| {
        AuthError::incomplete(format!(
            "X-Amz-Date '{value}' must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'."
        ))
    })
}

/// The amz-date form of `time`: `20150830T123600Z`.
pub fn amz_date(time: Timestamp) -> String {
    time.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Checks the signature's time against `now`: within 15 minutes for a signed header, and for a
/// presigned URL, not signed in the future and not yet expired.
pub fn check_time(signature: &Signature, now: Timestamp) -> Result<(), AuthError> {
    let skew = now.as_second() - signature.time.as_second();
    let signed = signature.amz_date.as_str();
    if signature.scope.date != signed[..8] {
        return Err(AuthError::new(
            ErrorCode::SignatureDoesNotMatch,
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
                 HTTP: '{}' != '{}', from '{signed}'.",
                signature.scope.date,
                &signed[..8]
            ),
        ));
    }
    if -skew > MAX_SKEW_SECONDS {
        return Err(AuthError::new(
            ErrorCode::RequestExpired,
            format!(
                "Signature not yet current: {signed} is still later than {} ({} + 15 min.)",
                amz_date(now + jiff::SignedDuration::from_secs(MAX_SKEW_SECONDS)),
                amz_date(now)
            ),
        ));
    }
    match signature.presigned_expires {
        Some(expires) if skew > expires => {
            Err(AuthError::new(ErrorCode::RequestExpired, "Request has expired."))
        }
        None if skew > MAX_SKEW_SECONDS => Err(AuthError::new(
            ErrorCode::RequestExpired,
            format!(
                "Signature expired: {signed} is now earlier than {} ({} - 15 min.)",
                amz_date(now - jiff::SignedDuration::from_secs(MAX_SKEW_SECONDS)),
                amz_date(now)
            ),
        )),
        _ => Ok(()),
    }
}

/// The key a secret signs with for one day, region and service.
#[derive(Clone, Copy)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl SigningKey {
    pub fn derive(secret: &str, scope: &Scope) -> SigningKey {
        let date = hmac(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
        let region = hmac(&date, scope.region.as_bytes());
        let service = hmac(&region, scope.service.as_bytes());
        SigningKey(hmac(&service, b"aws4_request"))
    }
}

/// Verifies `signature` over `request` with `key`, in constant time.
pub fn verify(request: &HttpRequest<'_>, signature: &Signature, key: &SigningKey) -> Result<(), AuthError> {
    let payload_hash = payload_hash(request, signature)?;
    let canonical = canonical_request(
        request,
        &signature.signed_headers,
        &signature.scope.service,
        &payload_hash,
        signature.presigned_expires.is_some(),
    )?;
    let expected = signature_of(key, &signature.amz_date, &signature.scope, &canonical);
    if expected.as_bytes().ct_eq(signature.signature.as_bytes()).into() {
        Ok(())
    } else {
        Err(AuthError::mismatch())
    }
}

fn payload_hash(request: &HttpRequest<'_>, signature: &Signature) -> Result<String, AuthError> {
    let declared = request.header("x-amz-content-sha256");
    let unhashed = |hash: &str| hash == UNSIGNED_PAYLOAD || hash.starts_with("STREAMING-");
    if let Some(declared) = declared
        && unhashed(declared)
        && signature.scope.service != "s3"
    {
        return Err(AuthError::new(
            ErrorCode::XAmzContentSHA256Mismatch,
            format!("'{declared}' is accepted for Amazon S3 only: sign the payload's SHA-256."),
        ));
    }
    let mismatch = || {
        AuthError::new(
            ErrorCode::XAmzContentSHA256Mismatch,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    };
    match (declared, request.payload) {
        (Some(declared), _) if unhashed(declared) => Ok(declared.to_string()),
        (Some(declared), Payload::Body(body)) => {
            if !hex(&Sha256::digest(body)).eq_ignore_ascii_case(declared) {
                return Err(mismatch());
            }
            Ok(declared.to_string())
        }
        (Some(declared), Payload::Hash(hash)) => {
            if !unhashed(hash) && !hash.eq_ignore_ascii_case(declared) {
                return Err(mismatch());
            }
            Ok(declared.to_string())
        }
        (None, _) if signature.presigned_expires.is_some() => Ok(UNSIGNED_PAYLOAD.to_string()),
        (None, Payload::Body(body)) => Ok(hex(&Sha256::digest(body))),
        (None, Payload::Hash(hash)) => Ok(hash.to_string()),
    }
}

fn signature_of(key: &SigningKey, amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        scope.date,
        scope.region,
        scope.service,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    hex(&hmac(&key.0, string_to_sign.as_bytes()))
}

/// The canonical request: method, path, query, signed headers and payload hash.
fn canonical_request(
    request: &HttpRequest<'_>,
    signed_headers: &[String],
    service: &str,
    payload_hash: &str,
    presigned: bool,
) -> Result<String, AuthError> {
    let mut canonical = String::with_capacity(256);
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical_path(&mut canonical, request.path, service);
    canonical.push('\n');
    canonical_query(&mut canonical, request.query, presigned);
    canonical.push('\n');
    for name in signed_headers {
        let mut values = request.header_values(name).peekable();
        if values.peek().is_none() {
            return Err(AuthError::new(
                ErrorCode::SignatureDoesNotMatch,
                format!("The request signature names the header '{name}', which the request does not have."),
            ));
        }
        canonical.push_str(name);
        canonical.push(':');
        for (i, value) in values.enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            let mut words = value.split_ascii_whitespace();
            if let Some(first) = words.next() {
                canonical.push_str(first);
                for word in words {
                    canonical.push(' ');
                    canonical.push_str(word);
                }
            }
        }
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(payload_hash);
    Ok(canonical)
}

/// S3 signs the path as sent; every other service signs it normalised (no empty or dot
/// segments) and encoded once more.
fn canonical_path(out: &mut String, path: &str, service: &str) {
    if service == "s3" {
        let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
        if decoded.is_empty() {
            out.push('/');
        }
        encode_into(out, &decoded, false);
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut normalized = String::with_capacity(path.len() + 1);
    if path.starts_with('/') || path.is_empty() {
        normalized.push('/');
    }
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    encode_into(out, normalized.as_bytes(), false);
}

/// The query's parameters, each name and value percent-decoded to bytes and encoded again
/// the one way SigV4 encodes; a presigned URL's own signature is left out.
fn canonical_query(out: &mut String, query: &str, presigned: bool) {
    let decode = |s: &str| encode(&percent_encoding::percent_decode_str(s).collect::<Vec<u8>>());
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(name, _)| !(presigned && *name == "X-Amz-Signature"))
        .map(|(name, value)| (decode(name), decode(value)))
        .collect();
    pairs.sort();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
}

/// The query's parameters, percent-decoded (`+` is kept: SigV4 clients encode spaces as `%20`).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            (decode(name), decode(value))
        })
        .collect()
}

/// URI-encodes everything but the unreserved characters, as SigV4 requires.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    encode_into(&mut out, bytes, true);
    out
}

fn encode_into(out: &mut String, bytes: &[u8], encode_slash: bool) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 0xf)] as char);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Credentials to sign with.
#[derive(Clone)]
pub struct SigningCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SigningCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Signs `request` the way botocore does, returning the headers to add to it (`x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token` if any, `authorization`). The request's
/// headers must hold `host`; all of them are signed.
pub fn sign(
    credentials: &SigningCredentials,
    region: &str,
    service: &str,
    time: Timestamp,
    request: &HttpRequest<'_>,
) -> Vec<(String, String)> {
    let payload_hash = match request.payload {
        Payload::Body(body) => hex(&Sha256::digest(body)),
        Payload::Hash(hash) => hash.to_string(),
    };
    let mut added = vec![
        ("x-amz-date".to_string(), amz_date(time)),
        ("x-amz-content-sha256".to_string(), payload_hash.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token".to_string(), token.clone()));
    }
    let mut all: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .chain(added.iter().cloned())
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut signed_headers: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
    signed_headers.dedup();
    let request = HttpRequest { headers: &all, payload: Payload::Hash(&payload_hash), ..*request };
    let scope =
        Scope { date: amz_date(time)[..8].to_string(), region: region.into(), service: service.into() };
    let key = SigningKey::derive(&credentials.secret_access_key, &scope);
    // Every header named here is present, so the canonical request always builds.
    let canonical =
        canonical_request(&request, &signed_headers, service, &payload_hash, false).unwrap_or_default();
    let signature = signature_of(&key, &amz_date(time), &scope, &canonical);
    added.push((
        "authorization".to_string(),
        format!(
            "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
            credentials.access_key_id,
            scope.date,
            scope.region,
            scope.service,
            signed_headers.join(";")
        ),
    ));
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// The example of AWS's "Create a signed AWS API request" page (IAM ListUsers).
    #[test]
    fn verifies_the_aws_documentation_example() {
        let headers = headers(&[
            ("Host", "iam.amazonaws.com"),
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("X-Amz-Date", "20150830T123600Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            ),
        ]);
        let request = HttpRequest {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload: Payload::Body(b""),
        };
        let signature = parse(&request).unwrap();
        assert_eq!(signature.access_key_id, "AKIDEXAMPLE");
        let key = SigningKey::derive(SECRET, &signature.scope);
        verify(&request, &signature, &key).unwrap();
        check_time(&signature, "2015-08-30T12:40:00Z".parse().unwrap()).unwrap();

        let wrong = SigningKey::derive("not the secret", &signature.scope);
        assert_eq!(verify(&request, &signature, &wrong).unwrap_err().code, ErrorCode::SignatureDoesNotMatch);
        let tampered = HttpRequest { query: "Action=ListUsers&Version=2010-05-09", ..request };
        assert_eq!(verify(&tampered, &signature, &key).unwrap_err().code, ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn requests_outside_fifteen_minutes_have_expired() {
        let headers = headers(&[
            ("host", "example"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            ),
        ]);
        let request = HttpRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            payload: Payload::Body(b""),
        };
        let signature = parse(&request).unwrap();
        for late in ["2015-08-30T12:51:01Z", "2015-08-30T12:20:59Z"] {
            let error = check_time(&signature, late.parse().unwrap()).unwrap_err();
            assert_eq!(error.code, ErrorCode::RequestExpired, "{late}");
        }
        check_time(&signature, "2015-08-30T12:51:00Z".parse().unwrap()).unwrap();
    }

    #[test]
    fn malformed_signatures_are_incomplete() {
        for authorization in [
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=x-amz-date, Signature=00",
            "AWS4-HMAC-SHA1 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential",
        ] {
            let headers = headers(&[
                ("host", "h"),
                ("x-amz-date", "20150830T123600Z"),
                ("authorization", authorization),
            ]);
            let request = HttpRequest {
                method: "GET",
                path: "/",
                query: "",
                headers: &headers,
                payload: Payload::Body(b""),
            };
            assert_eq!(parse(&request).unwrap_err().code, ErrorCode::IncompleteSignature, "{authorization}");
        }
        let none =
            HttpRequest { method: "GET", path: "/", query: "", headers: &[], payload: Payload::Body(b"") };
        assert_eq!(parse(&none).unwrap_err().code, ErrorCode::MissingAuthenticationToken);
    }

    #[test]
    fn paths_are_normalised_except_for_s3() {
        let mut out = String::new();
        canonical_path(&mut out, "/a//b/./c/../d%20e/", "iam");
        assert_eq!(out, "/a/b/d%2520e/");
        out.clear();
        canonical_path(&mut out, "/a//b/../%E2%82%AC", "s3");
        assert_eq!(out, "/a//b/../%E2%82%AC");
    }

    #[test]
    fn signing_and_verifying_agree() {
        let credentials = SigningCredentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: SECRET.into(),
            session_token: Some("token".into()),
        };
        let time: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let base = headers(&[("host", "127.0.0.1:1"), ("content-type", "application/grpc")]);
        let mut all = base.clone();
        let unsigned = HttpRequest {
            method: "POST",
            path: "/x.Y/Z",
            query: "b=2&a=1",
            headers: &base,
            payload: Payload::Body(b"body"),
        };
        all.extend(sign(&credentials, "us-east-1", "iam", time, &unsigned));
        let request = HttpRequest {
            method: "POST",
            path: "/x.Y/Z",
            query: "b=2&a=1",
            headers: &all,
            payload: Payload::Body(b"body"),
        };
        let signature = parse(&request).unwrap();
        assert_eq!(signature.session_token.as_deref(), Some("token"));
        verify(&request, &signature, &SigningKey::derive(SECRET, &signature.scope)).unwrap();
        let changed = HttpRequest { payload: Payload::Body(b"other"), ..request };
        assert_eq!(
            verify(&changed, &signature, &SigningKey::derive(SECRET, &signature.scope)).unwrap_err().code,
            ErrorCode::XAmzContentSHA256Mismatch
        );
    }

    fn signed_request(service: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let credentials = SigningCredentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: SECRET.into(),
            session_token: None,
        };
        let mut base = headers(&[("host", "example")]);
        base.extend(headers(extra));
        let unsigned = HttpRequest {
            method: "PUT",
            path: "/k",
            query: "",
            headers: &base,
            payload: Payload::Body(b"body"),
        };
        let mut all = base.clone();
        all.extend(sign(&credentials, "us-east-1", service, jiff::Timestamp::now(), &unsigned));
        all
    }

    #[test]
    fn an_unsigned_payload_is_for_s3_only_and_a_given_hash_must_match() {
        let all = signed_request("iam", &[]);
        let mut declared: Vec<(String, String)> =
            all.iter().filter(|(n, _)| n != "x-amz-content-sha256").cloned().collect();
        declared.push(("x-amz-content-sha256".into(), UNSIGNED_PAYLOAD.into()));
        let request = HttpRequest {
            method: "PUT",
            path: "/k",
            query: "",
            headers: &declared,
            payload: Payload::Body(b"body"),
        };
        let signature = parse(&request).unwrap();
        let key = SigningKey::derive(SECRET, &signature.scope);
        assert_eq!(
            verify(&request, &signature, &key).unwrap_err().code,
            ErrorCode::XAmzContentSHA256Mismatch
        );

        // The caller passes the body's hash instead of the body: it must be the signed one.
        let request =
            HttpRequest { method: "PUT", path: "/k", query: "", headers: &all, payload: Payload::Hash("00") };
        let signature = parse(&request).unwrap();
        assert_eq!(
            verify(&request, &signature, &key).unwrap_err().code,
            ErrorCode::XAmzContentSHA256Mismatch
        );
        let hash = all.iter().find(|(n, _)| n == "x-amz-content-sha256").unwrap().1.clone();
        let request = HttpRequest {
            method: "PUT",
            path: "/k",
            query: "",
            headers: &all,
            payload: Payload::Hash(&hash),
        };
        verify(&request, &signature, &key).unwrap();
    }

    #[test]
    fn query_parameters_are_decoded_to_bytes_and_only_a_presigned_signature_is_left_out() {
        let mut out = String::new();
        canonical_query(&mut out, "b=%FF&a=%FE&X-Amz-Signature=1", false);
        assert_eq!(out, "X-Amz-Signature=1&a=%FE&b=%FF");
        out.clear();
        canonical_query(&mut out, "b=%FF&a=%FE&X-Amz-Signature=1", true);
        assert_eq!(out, "a=%FE&b=%FF");
    }

    #[test]
    fn scopes_are_checked_before_anything_is_cached() {
        for credential in [
            "AKID/20150830/US-EAST-1/iam/aws4_request",
            &format!("AKID/20150830/{}/iam/aws4_request", "r".repeat(65)),
        ] {
            assert_eq!(
                parse_credential(credential).unwrap_err().code,
                ErrorCode::IncompleteSignature,
                "{credential}"
            );
        }
    }
}
