//! A request to decide: who, what action, on which resource, with which context.

use super::context::Context;
use super::principal::Principal;

/// A request, normalised once so that evaluation does no parsing or case folding.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) principal: Principal,
    pub(crate) action: Box<str>,
    /// The action lower-cased, for case-insensitive matching.
    pub(crate) action_key: Box<str>,
    /// Length of the service prefix in `action_key`.
    service_len: usize,
    pub(crate) resource: Box<str>,
    pub(crate) resource_account: Option<Box<str>>,
    pub(crate) context: Context,
}

/// Why a request was refused before evaluation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "action `{0}` is not an action: expected `service:ActionName` such as `s3:GetObject`, without wildcards"
    )]
    InvalidAction(String),
    #[error("resource is empty: expected an ARN, or `*` for actions without resource-level permissions")]
    EmptyResource,
    #[error("resource account `{0}` is not a 12-digit account id")]
    InvalidAccount(String),
}

impl Request {
    pub fn new(principal: Principal, action: &str, resource: &str) -> Result<Request, RequestError> {
        let valid_action = match action.split_once(':') {
            Some((service, name)) => {
                !service.is_empty()
                    && !name.is_empty()
                    && service.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !name.chars().any(|c| c.is_whitespace() || matches!(c, '*' | '?' | ':'))
            }
            None => false,
        };
        if !valid_action {
            return Err(RequestError::InvalidAction(action.to_string()));
        }
        if resource.is_empty() {
            return Err(RequestError::EmptyResource);
        }
        Ok(Request {
            principal,
            action: action.into(),
            service_len: action.find(':').unwrap_or(0),
            action_key: action.to_lowercase().into(),
            resource: resource.into(),
            resource_account: None,
            context: Context::default(),
        })
    }

    /// Sets the account that owns the resource. Without it the account is read from the
    /// resource ARN, and for ARNs without one (S3) assumed to be the principal's.
    pub fn with_resource_account(mut self, account: &str) -> Result<Request, RequestError> {
        if !super::principal::is_account_id(account) {
            return Err(RequestError::InvalidAccount(account.to_string()));
        }
        self.resource_account = Some(account.into());
        Ok(self)
    }

    pub fn with_context(mut self, context: Context) -> Request {
        self.context = context;
        self
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    pub fn context_mut(&mut self) -> &mut Context {
        &mut self.context
    }

    /// The kind of the resource's own policy: a trust policy when a role is being assumed,
    /// otherwise a resource-based policy.
    pub fn resource_policy_kind(&self) -> crate::policy::PolicyKind {
        if self.is_role_assumption() {
            crate::policy::PolicyKind::Trust
        } else {
            crate::policy::PolicyKind::Resource
        }
    }

    /// True for an `sts:` action on an IAM role, whose resource-based policy is its trust policy.
    pub(crate) fn is_role_assumption(&self) -> bool {
        self.service() == "sts"
            && crate::policy::arn::Arn::parse(&self.resource)
                .is_some_and(|arn| arn.service == "iam" && arn.resource.starts_with("role/"))
    }

    /// The lower-cased service prefix of the action.
    pub(crate) fn service(&self) -> &str {
        &self.action_key[..self.service_len]
    }
}
