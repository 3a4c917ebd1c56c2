//! Between the gRPC messages and iamd's own types.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::authorize::{InvalidField, check_context_size};
use crate::credentials::sigv4::AuthError;
use crate::eval::{Context, Decision, Explanation};
use crate::iam::IamError;
use crate::iam::model::Tag;
use crate::proto;

/// `INVALID_ARGUMENT` naming the field, with a `BadRequest` detail for tools.
pub fn invalid_argument(error: InvalidField) -> Status {
    let message = error.to_string();
    Status::with_error_details(
        Code::InvalidArgument,
        message.clone(),
        ErrorDetails::with_bad_request_violation(error.field, error.message),
    )
}

/// An identity error as a gRPC status, with AWS's error code as the `ErrorInfo` reason.
pub fn iam_status(error: IamError) -> Status {
    let code = match &error {
        IamError::NoSuchEntity(_) => Code::NotFound,
        IamError::EntityAlreadyExists(_) => Code::AlreadyExists,
        IamError::DeleteConflict(_) => Code::FailedPrecondition,
        IamError::LimitExceeded(_) => Code::ResourceExhausted,
        IamError::MalformedPolicyDocument(_)
        | IamError::InvalidInput(_)
        | IamError::InvalidAuthenticationCode(_) => Code::InvalidArgument,
        IamError::AccessDenied(_) => Code::PermissionDenied,
        IamError::PasswordPolicyViolation(_) => Code::InvalidArgument,
        IamError::PasswordResetRequired(_) => Code::FailedPrecondition,
        IamError::ServiceFailure(_) => Code::Unavailable,
    };
    coded(code, error.code(), "iam.amazonaws.com", error.to_string())
}

pub fn decision(decision: Decision) -> proto::Decision {
    match decision {
        Decision::Allow => proto::Decision::Allow,
        Decision::ImplicitDeny => proto::Decision::ImplicitDeny,
        Decision::ExplicitDeny => proto::Decision::ExplicitDeny,
    }
}

pub fn explanation(explanation: &Explanation) -> proto::Explanation {
    proto::Explanation {
        deciding_layer: explanation.deciding_layer.map(|l| l.to_string()).unwrap_or_default(),
        reason: explanation.reason.clone(),
        matched_statements: explanation
            .matched_statements
            .iter()
            .map(|m| proto::MatchedStatement {
                layer: m.layer.to_string(),
                policy: m.policy.to_string(),
                statement: m.statement.to_string(),
                effect: m.effect.to_string(),
            })
            .collect(),
    }
}

/// Reads the request context: each typed value becomes the text AWS would put in the request
/// context.
pub fn context(entries: HashMap<String, proto::ContextValues>) -> Result<Context, InvalidField> {
    let longest = entries.values().map(|v| v.values.len()).max().unwrap_or(0);
    let mut largest = 0;
    let mut context = Context::default();
    for (key, values) in entries {
        if key.is_empty() || !key.contains(':') {
            return Err(InvalidField {
                field: "context",
                message: format!(
                    "key `{key}` is not a condition key: expected `service:name` such as `aws:SourceIp`"
                ),
            });
        }
        let mut texts = Vec::with_capacity(values.values.len());
        for value in values.values {
            let text = value_text(&key, value)?;
            largest = largest.max(text.len());
            texts.push(text);
        }
        context.insert(&key, texts);
    }
    check_context_size(context.len(), longest, largest)?;
    Ok(context)
}

fn value_text(key: &str, value: proto::ContextValue) -> Result<String, InvalidField> {
    use proto::context_value::Kind;
    let missing = || InvalidField {
        field: "context",
        message: format!("a value of `{key}` is empty: set one of its kinds"),
    };
    Ok(match value.kind.ok_or_else(missing)? {
        Kind::String(s) => s,
        // A typed address that does not parse would match no `IpAddress` condition and could
        // switch off a `Deny`: refuse it instead.
        Kind::Ip(s) => match crate::policy::condition::parse_ip(&s) {
            Some(_) => s,
            None => {
                return Err(InvalidField {
                    field: "context",
                    message: format!("`{key}` value `{s}` is not an IPv4 or IPv6 address"),
                });
            }
        },
        Kind::Bool(b) => b.to_string(),
        Kind::Integer(i) => i.to_string(),
        Kind::Number(n) => n.to_string(),
        Kind::Date(t) => {
            let timestamp = jiff::Timestamp::new(t.seconds, t.nanos).map_err(|e| InvalidField {
                field: "context",
                message: format!("date value of `{key}` is out of range: {e}"),
            })?;
            timestamp.to_string()
        }
        Kind::Binary(bytes) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    })
}

pub fn tags(tags: &[proto::Tag]) -> Vec<Tag> {
    tags.iter().map(|t| Tag { key: t.key.clone(), value: t.value.clone() }).collect()
}

pub fn proto_tags(tags: &[Tag]) -> Vec<proto::Tag> {
    tags.iter().map(|t| proto::Tag { key: t.key.clone(), value: t.value.clone() }).collect()
}

/// A failed authentication as `UNAUTHENTICATED`, with AWS's code.
pub fn auth_status(error: &AuthError) -> Status {
    coded(Code::Unauthenticated, error.code.as_str(), "iam.amazonaws.com", error.message.clone())
}

/// `PERMISSION_DENIED` with AWS's `AccessDenied` code and message.
pub fn access_denied(domain: &str, message: String) -> Status {
    coded(Code::PermissionDenied, "AccessDenied", domain, message)
}

/// A status carrying an AWS error code in an `ErrorInfo` and in the `iamd-error-code` metadata.
pub fn coded(code: Code, aws_code: &str, domain: &str, message: String) -> Status {
    let details = ErrorDetails::with_error_info(aws_code, domain, HashMap::new());
    let mut status = Status::with_error_details(code, format!("{aws_code}: {message}"), details);
    if let Ok(value) = aws_code.parse() {
        status.metadata_mut().insert("iamd-error-code", value);
    }
    status
}
