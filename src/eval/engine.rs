//! The AWS policy evaluation logic, as the IAM User Guide's "Policy evaluation logic" and
//! "Cross-account policy evaluation logic" describe it:
//!
//! 1. an explicit `Deny` in any applicable policy decides;
//! 2. every level of resource control policies, then of service control policies, must allow;
//! 3. within one account an `Allow` from the resource-based policy or from the identity-based
//!    policies is enough, except that a grant to a role (not a session) is still capped by the
//!    permissions boundary and the session policy, a grant to the whole account only delegates
//!    to the account's identity-based policies, and role trust policies and KMS key policies
//!    must themselves allow;
//! 4. across accounts both the resource-based policy and the principal's own policies
//!    (identity, boundary, session) must allow;
//! 5. otherwise the request is implicitly denied.

use std::sync::Arc;

use super::explain::{Explanation, Layer, MatchedStatement};
use super::principal::{GrantLevel, Principal};
use super::request::Request;
use crate::policy::arn::Arn;
use crate::policy::{Effect, Policy, Statement};

/// The outcome of a request. Without anything that allows, a request is denied: the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    Allow,
    #[default]
    ImplicitDeny,
    ExplicitDeny,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// The policies that apply to one request, borrowed from wherever they are kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicySet<'a> {
    /// The principal's identity-based policies: inline and attached, its groups' too.
    pub identity: &'a [Arc<Policy>],
    /// The resource's resource-based policy (bucket policy, key policy, trust policy, ...).
    pub resource: Option<&'a Policy>,
    pub permissions_boundary: Option<&'a Policy>,
    /// Session policies (inline and managed): together they cap the session's permissions.
    pub session: Option<&'a [Arc<Policy>]>,
    /// Service control policies of the principal's account, one list per level of the
    /// organisation path, root first. `None` when the account is not governed by SCPs.
    pub scps: Option<&'a [Vec<Arc<Policy>>]>,
    /// Resource control policies of the resource's account, same shape.
    pub rcps: Option<&'a [Vec<Arc<Policy>>]>,
}

/// Decides `request` against `policies`.
pub fn authorize(request: &Request, policies: &PolicySet<'_>) -> Decision {
    Evaluation::new(request, None).decide(policies).0
}

/// Decides `request` and explains the decision: the deciding layer, the reason in AWS's words
/// and every statement that matched.
pub fn explain(request: &Request, policies: &PolicySet<'_>) -> Explanation {
    let mut matched = Vec::new();
    let (decision, layer) = Evaluation::new(request, Some(&mut matched)).decide(policies);
    Explanation::new(request, decision, layer, matched)
}

/// What one scan of a policy (or of a list of policies) found.
#[derive(Clone, Copy, Default)]
struct Scan {
    allow: bool,
    deny: bool,
    /// For resource-based policies: how directly an applying `Allow` names the principal.
    grant: Option<GrantLevel>,
}

impl Scan {
    fn merge(&mut self, other: Scan) {
        self.allow |= other.allow;
        self.deny |= other.deny;
        self.grant = self.grant.max(other.grant);
    }
}

struct Evaluation<'r, 'm> {
    request: &'r Request,
    arn: Option<Arn<'r>>,
    trace: Option<&'m mut Vec<MatchedStatement>>,
    /// Where the first explicit deny was found.
    denied_by: Option<Layer>,
    /// Whether the principal has a permissions boundary: AWS then applies every `Deny` with
    /// `NotPrincipal` to it, whatever the `NotPrincipal` lists.
    has_boundary: bool,
}

impl<'r, 'm> Evaluation<'r, 'm> {
    fn new(request: &'r Request, trace: Option<&'m mut Vec<MatchedStatement>>) -> Self {
        Evaluation {
            request,
            arn: Arn::parse(&request.resource),
            trace,
            denied_by: None,
            has_boundary: false,
        }
    }

    /// Without a trace, the first explicit deny settles the request.
    fn settled(&self) -> bool {
        self.denied_by.is_some() && self.trace.is_none()
    }

    fn decide(mut self, policies: &PolicySet<'_>) -> (Decision, Option<Layer>) {
        let principal = &self.request.principal;
        self.has_boundary = policies.permissions_boundary.is_some();
        let has_identity_policies = matches!(
            principal,
            Principal::User { .. }
                | Principal::Role { .. }
                | Principal::AssumedRole { .. }
                | Principal::FederatedUser { .. }
        );
        let identity = if has_identity_policies {
            self.scan_all(policies.identity, Layer::Identity)
        } else {
            Scan::default()
        };
        let resource = policies.resource.map(|p| self.scan(p, Layer::Resource));
        let boundary = policies.permissions_boundary.map(|p| self.scan(p, Layer::PermissionsBoundary));
        let session = policies.session.map(|p| self.scan_all(p, Layer::SessionPolicy));
        // SCPs govern principals of member accounts; RCPs govern access to member accounts'
        // resources by anyone but AWS services acting as themselves.
        let scp_gap = match policies.scps {
            Some(levels) if principal.account().is_some() => self.levels(levels, Layer::Scp),
            _ => None,
        };
        let rcp_gap = match policies.rcps {
            Some(levels) if !matches!(principal, Principal::Service(_)) => self.levels(levels, Layer::Rcp),
            _ => None,
        };

        if let Some(layer) = self.denied_by {
            return (Decision::ExplicitDeny, Some(layer));
        }
        if let Some(layer) = rcp_gap.or(scp_gap) {
            return (Decision::ImplicitDeny, Some(layer));
        }

        let identity_allows = principal.is_root() || identity.allow;
        let boundary_allows = boundary.is_none_or(|s| s.allow);
        let session_allows = session.is_none_or(|s| s.allow);
        let missing_on_identity_side = if !identity_allows {
            Some(Layer::Identity)
        } else if !boundary_allows {
            Some(Layer::PermissionsBoundary)
        } else if !session_allows {
            Some(Layer::SessionPolicy)
        } else {
            None
        };
        let grant = resource.and_then(|s| s.grant);
        let deny = |layer| (Decision::ImplicitDeny, Some(layer));

        let Some(principal_account) = principal.account() else {
            // Anonymous callers and service principals have no policies of their own.
            return match grant {
                Some(_) => (Decision::Allow, Some(Layer::Resource)),
                None => deny(Layer::Resource),
            };
        };
        let resource_account = self
            .request
            .resource_account
            .as_deref()
            .or(self.arn.map(|a| a.account).filter(|a| !a.is_empty()))
            .unwrap_or(principal_account);

        if resource_account != principal_account {
            return match (grant, missing_on_identity_side) {
                (None, _) => deny(Layer::Resource),
                (Some(_), Some(layer)) => deny(layer),
                (Some(_), None) => (Decision::Allow, Some(Layer::Identity)),
            };
        }

        // Without its trust policy or key policy, nothing grants access to a role or a key.
        let resource_must_allow = self.is_trust_or_key_policy();
        let capped_by_session = if !boundary_allows {
            Some(Layer::PermissionsBoundary)
        } else if !session_allows {
            Some(Layer::SessionPolicy)
        } else {
            None
        };
        match grant {
            Some(GrantLevel::Direct) => (Decision::Allow, Some(Layer::Resource)),
            Some(GrantLevel::Role) => match capped_by_session {
                Some(layer) => deny(layer),
                None => (Decision::Allow, Some(Layer::Resource)),
            },
            None if resource_must_allow => deny(Layer::Resource),
            Some(GrantLevel::Account) | None => match missing_on_identity_side {
                Some(layer) => deny(layer),
                None => (Decision::Allow, Some(Layer::Identity)),
            },
        }
    }

    /// Role trust policies and KMS key policies are the sole authority over their resource:
    /// without their `Allow`, identity-based policies grant nothing.
    fn is_trust_or_key_policy(&self) -> bool {
        self.arn.is_some_and(|arn| arn.service == "kms") || self.request.is_role_assumption()
    }

    /// Scans every level; returns the first level without an applicable `Allow`.
    fn levels(&mut self, levels: &[Vec<Arc<Policy>>], layer: fn(usize) -> Layer) -> Option<Layer> {
        let mut gap = None;
        for (level, policies) in levels.iter().enumerate() {
            let scan = self.scan_all(policies, layer(level));
            if !scan.allow && gap.is_none() {
                gap = Some(layer(level));
            }
            if self.settled() {
                break;
            }
        }
        gap
    }

    fn scan_all(&mut self, policies: &[Arc<Policy>], layer: Layer) -> Scan {
        let mut total = Scan::default();
        for policy in policies {
            total.merge(self.scan(policy, layer));
            if self.settled() {
                break;
            }
        }
        total
    }

    fn scan(&mut self, policy: &Policy, layer: Layer) -> Scan {
        let mut scan = Scan::default();
        for statement in policy.candidates(self.request.service()) {
            let Some(level) = self.applies(statement) else {
                continue;
            };
            match statement.effect {
                Effect::Allow => {
                    scan.allow = true;
                    scan.grant = scan.grant.max(Some(level));
                }
                Effect::Deny => {
                    scan.deny = true;
                    self.denied_by.get_or_insert(layer);
                }
            }
            if let Some(trace) = self.trace.as_deref_mut() {
                trace.push(MatchedStatement::new(layer, policy, statement));
            } else if scan.deny {
                break;
            }
        }
        scan
    }

    /// Whether `statement` applies to the request, and if so how directly its `Principal`
    /// names the requester (`Direct` for statements without one).
    fn applies(&self, statement: &Statement) -> Option<GrantLevel> {
        let request = self.request;
        let context = &request.context;
        let action = &statement.action;
        let action_hit = action.patterns.iter().any(|a| a.pattern.matches(&request.action_key, context));
        if action_hit == action.negated {
            return None;
        }
        if let Some(resource) = &statement.resource {
            let arn = self.arn.as_ref();
            let hit = resource.patterns.iter().any(|p| p.matches(&request.resource, arn, context));
            if hit == resource.negated {
                return None;
            }
        }
        let level = match &statement.principal {
            None => GrantLevel::Direct,
            Some(principal) if principal.negated => {
                // `NotPrincipal` applies unless every identity the requester acts as is listed.
                let bounded_deny = self.has_boundary && statement.effect == Effect::Deny;
                let excluded = !bounded_deny
                    && request
                        .principal
                        .identities()
                        .all(|identity| principal.ids.iter().any(|id| id.covers_identity(identity)));
                if excluded {
                    return None;
                }
                GrantLevel::Direct
            }
            Some(principal) => {
                principal.ids.iter().filter_map(|id| id.grant_level(&request.principal)).max()?
            }
        };
        statement.conditions.iter().all(|c| c.holds(context)).then_some(level)
    }
}
