//! Who is asking: the principal of a request, and how a policy's `Principal` names it.

use crate::policy::arn::Arn;

/// The principal that makes a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// An unauthenticated caller; only a resource-based policy granting `*` can allow it.
    Anonymous,
    /// The account root user (`arn:aws:iam::ACCOUNT:root`).
    Root { arn: String, account: String },
    /// An IAM user.
    User { arn: String, account: String },
    /// An IAM role acting as itself (rare: roles normally act through sessions).
    Role { arn: String, account: String, name: String },
    /// A role session from `AssumeRole*` (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`).
    AssumedRole { arn: String, account: String, role_name: String },
    /// A federated user session from `GetFederationToken`.
    FederatedUser { arn: String, account: String },
    /// An AWS service principal such as `ec2.amazonaws.com`.
    Service(String),
    /// A web identity or SAML provider (`Federated` in a trust policy).
    Federated(String),
}

/// Why a principal text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a principal: expected `anonymous`, an account id, a user, role, root, \
     assumed-role or federated-user ARN, or a service principal such as `ec2.amazonaws.com`"
)]
pub struct PrincipalParseError(pub String);

/// Web identity providers that appear as `Federated` principals without an ARN.
const WEB_IDENTITY_PROVIDERS: &[&str] =
    &["cognito-identity.amazonaws.com", "accounts.google.com", "graph.facebook.com", "www.amazon.com"];

impl Principal {
    /// Reads a principal as it appears in requests and test vectors.
    pub fn parse(text: &str) -> Result<Principal, PrincipalParseError> {
        let error = || PrincipalParseError(text.to_string());
        if text == "anonymous" || text == "*" {
            return Ok(Principal::Anonymous);
        }
        if is_account_id(text) {
            return Ok(Principal::Root { arn: format!("arn:aws:iam::{text}:root"), account: text.into() });
        }
        if WEB_IDENTITY_PROVIDERS.contains(&text) {
            return Ok(Principal::Federated(text.into()));
        }
        let Some(arn) = Arn::parse(text) else {
            let service_like = !text.is_empty()
                && text.contains('.')
                && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
            return if service_like { Ok(Principal::Service(text.into())) } else { Err(error()) };
        };
        if !is_account_id(arn.account) {
            return Err(error());
        }
        let account = arn.account.to_string();
        let arn_text = text.to_string();
        let (kind, rest) = arn.resource.split_once('/').unwrap_or((arn.resource, ""));
        match (arn.service, kind) {
            ("iam", "root") if rest.is_empty() => Ok(Principal::Root { arn: arn_text, account }),
            ("iam", "user") if !rest.is_empty() => Ok(Principal::User { arn: arn_text, account }),
            ("iam", "role") if !rest.is_empty() => {
                let name = rest.rsplit('/').next().unwrap_or(rest).to_string();
                Ok(Principal::Role { arn: arn_text, account, name })
            }
            ("iam", "saml-provider" | "oidc-provider") => Ok(Principal::Federated(arn_text)),
            ("sts", "assumed-role") => match rest.split_once('/') {
                Some((role, session)) if !role.is_empty() && !session.is_empty() => {
                    Ok(Principal::AssumedRole { arn: arn_text, account, role_name: role.into() })
                }
                _ => Err(error()),
            },
            ("sts", "federated-user") if !rest.is_empty() => {
                Ok(Principal::FederatedUser { arn: arn_text, account })
            }
            _ => Err(error()),
        }
    }

    /// The account the principal belongs to; `None` for anonymous, service and federated
    /// identity-provider principals.
    pub fn account(&self) -> Option<&str> {
        match self {
            Principal::Root { account, .. }
            | Principal::User { account, .. }
            | Principal::Role { account, .. }
            | Principal::AssumedRole { account, .. }
            | Principal::FederatedUser { account, .. } => Some(account),
            Principal::Anonymous | Principal::Service(_) | Principal::Federated(_) => None,
        }
    }

    /// The principal's ARN (or name, for services and providers), as shown in explanations.
    pub fn display(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Root { arn, .. }
            | Principal::User { arn, .. }
            | Principal::Role { arn, .. }
            | Principal::AssumedRole { arn, .. }
            | Principal::FederatedUser { arn, .. } => arn,
            Principal::Service(name) | Principal::Federated(name) => name,
        }
    }

    pub fn is_root(&self) -> bool {
        matches!(self, Principal::Root { .. })
    }
}

/// True for a 12-digit AWS account id.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// How directly a resource-based policy names the principal. The evaluation logic treats the
/// levels differently within one account: a grant to a role session or user is final, a grant
/// to the role is still capped by the role's permissions boundary and session policy, and a
/// grant to the whole account only delegates to the account's own policies for role trust
/// policies and KMS key policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantLevel {
    Account,
    Role,
    Direct,
}

/// One entry of a `Principal` / `NotPrincipal` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalId {
    /// `"*"`, `{"AWS": "*"}`: everyone, anonymous included.
    Everyone,
    /// An account id or `arn:PARTITION:iam::ACCOUNT:root`.
    Account(String),
    /// A user, role session or federated user ARN, named exactly.
    Exact(String),
    /// A role ARN: the role, and every session of it.
    Role {
        account: String,
        name: String,
        arn: String,
    },
    Service(String),
    Federated(String),
    CanonicalUser(String),
}

impl PrincipalId {
    /// How this entry names `principal`, or `None` if it does not.
    pub fn grant_level(&self, principal: &Principal) -> Option<GrantLevel> {
        match (self, principal) {
            (PrincipalId::Everyone, _) => Some(GrantLevel::Direct),
            (PrincipalId::Account(account), Principal::Root { account: a, .. }) => {
                (account == a).then_some(GrantLevel::Direct)
            }
            (PrincipalId::Account(account), p) => {
                (p.account() == Some(account.as_str())).then_some(GrantLevel::Account)
            }
            (PrincipalId::Exact(arn), p) => (p.display() == arn).then_some(GrantLevel::Direct),
            (PrincipalId::Role { arn, .. }, Principal::Role { arn: a, .. }) => {
                (arn == a).then_some(GrantLevel::Direct)
            }
            (
                PrincipalId::Role { account, name, .. },
                Principal::AssumedRole { account: a, role_name, .. },
            ) => (account == a && name == role_name).then_some(GrantLevel::Role),
            (PrincipalId::Service(s), Principal::Service(p)) => {
                s.eq_ignore_ascii_case(p).then_some(GrantLevel::Direct)
            }
            (PrincipalId::Federated(f), Principal::Federated(p)) => (f == p).then_some(GrantLevel::Direct),
            _ => None,
        }
    }

    /// True when this entry names every identity the principal acts as: itself, the role
    /// behind a session, and its account. `NotPrincipal` excludes a principal only then, which is
    /// why AWS asks a `Deny` with `NotPrincipal` to list the account and role ARNs as well.
    pub fn covers_identity(&self, identity: Identity<'_>) -> bool {
        match (self, identity) {
            (PrincipalId::Everyone, _) => true,
            (PrincipalId::Account(account), Identity::Account(a)) => account == a,
            (PrincipalId::Exact(arn), Identity::Arn(a)) => arn == a,
            (PrincipalId::Role { arn, .. }, Identity::Arn(a)) => arn == a,
            (PrincipalId::Role { account, name, .. }, Identity::RoleOf { account: a, role_name }) => {
                account == a && name == role_name
            }
            (PrincipalId::Service(s), Identity::Service(p)) => s.eq_ignore_ascii_case(p),
            (PrincipalId::Federated(f), Identity::Federated(p)) => f == p,
            _ => false,
        }
    }
}

/// One of the identities a principal acts as, for `NotPrincipal`.
#[derive(Clone, Copy, Debug)]
pub enum Identity<'a> {
    Arn(&'a str),
    RoleOf { account: &'a str, role_name: &'a str },
    Account(&'a str),
    Service(&'a str),
    Federated(&'a str),
    Anonymous,
}

impl Principal {
    /// Every identity this principal acts as (at most three).
    pub fn identities(&self) -> impl Iterator<Item = Identity<'_>> {
        let (first, second, third) = match self {
            Principal::Anonymous => (Identity::Anonymous, None, None),
            Principal::Root { account, .. } => (Identity::Account(account), None, None),
            Principal::User { arn, account } | Principal::FederatedUser { arn, account } => {
                (Identity::Arn(arn), Some(Identity::Account(account)), None)
            }
            Principal::Role { arn, account, .. } => {
                (Identity::Arn(arn), Some(Identity::Account(account)), None)
            }
            Principal::AssumedRole { arn, account, role_name } => (
                Identity::Arn(arn),
                Some(Identity::RoleOf { account, role_name }),
                Some(Identity::Account(account)),
            ),
            Principal::Service(name) => (Identity::Service(name), None, None),
            Principal::Federated(name) => (Identity::Federated(name), None, None),
        };
        std::iter::once(first).chain(second).chain(third)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_principals() {
        assert_eq!(Principal::parse("anonymous").unwrap(), Principal::Anonymous);
        assert!(matches!(Principal::parse("111122223333").unwrap(), Principal::Root { .. }));
        assert!(matches!(
            Principal::parse("arn:aws:iam::111122223333:user/division/alice").unwrap(),
            Principal::User { .. }
        ));
        let session = Principal::parse("arn:aws:sts::111122223333:assumed-role/Admin/alice").unwrap();
        assert!(matches!(&session, Principal::AssumedRole { role_name, .. } if role_name == "Admin"));
        assert_eq!(session.identities().count(), 3);
        assert!(matches!(Principal::parse("ec2.amazonaws.com").unwrap(), Principal::Service(_)));
        assert!(Principal::parse("arn:aws:iam::1111:user/x").is_err());
        assert!(Principal::parse("arn:aws:sts::111122223333:assumed-role/Admin").is_err());
        assert!(Principal::parse("nonsense").is_err());
    }

    #[test]
    fn role_arn_names_its_sessions() {
        let session = Principal::parse("arn:aws:sts::111122223333:assumed-role/Admin/alice").unwrap();
        let role = PrincipalId::Role {
            account: "111122223333".into(),
            name: "Admin".into(),
            arn: "arn:aws:iam::111122223333:role/ops/Admin".into(),
        };
        assert_eq!(role.grant_level(&session), Some(GrantLevel::Role));
        let account = PrincipalId::Account("111122223333".into());
        assert_eq!(account.grant_level(&session), Some(GrantLevel::Account));
        assert_eq!(
            PrincipalId::Exact(session.display().into()).grant_level(&session),
            Some(GrantLevel::Direct)
        );
    }
}
