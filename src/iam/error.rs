//! Errors of identity operations, named with AWS's error codes.

/// An identity operation that failed, with the code AWS IAM returns for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    #[error("{0}")]
    NoSuchEntity(String),
    #[error("{0}")]
    EntityAlreadyExists(String),
    #[error("{0}")]
    DeleteConflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    InvalidAuthenticationCode(String),
    #[error("{0}")]
    PasswordPolicyViolation(String),
    /// The password expired and must be changed before signing in.
    #[error("{0}")]
    PasswordResetRequired(String),
    /// A credential check failed (a wrong or reused MFA code, a wrong password).
    #[error("{0}")]
    AccessDenied(String),
    /// The store failed; the message says whether the change took effect.
    #[error("{0}")]
    ServiceFailure(String),
}

impl IamError {
    /// AWS's error code.
    pub fn code(&self) -> &'static str {
        match self {
            IamError::NoSuchEntity(_) => "NoSuchEntity",
            IamError::EntityAlreadyExists(_) => "EntityAlreadyExists",
            IamError::DeleteConflict(_) => "DeleteConflict",
            IamError::LimitExceeded(_) => "LimitExceeded",
            IamError::MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            IamError::InvalidInput(_) => "InvalidInput",
            IamError::InvalidAuthenticationCode(_) => "InvalidAuthenticationCode",
            IamError::PasswordPolicyViolation(_) => "PasswordPolicyViolation",
            IamError::PasswordResetRequired(_) => "PasswordResetRequired",
            IamError::AccessDenied(_) => "AccessDenied",
            IamError::ServiceFailure(_) => "ServiceFailure",
        }
    }
}
