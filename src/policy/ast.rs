//! The compiled form of a policy: what the parser produces and the evaluator reads.
//!
//! Patterns are compiled at parse time and statements are indexed by the service prefix of
//! their actions, so evaluating a request never parses, allocates a pattern or looks at a
//! statement that cannot match its action.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::arn::ArnPattern;
use super::condition::Condition;
use super::pattern::Pattern;
use crate::eval::principal::PrincipalId;

/// Where a policy is used; it decides which elements are required or forbidden and the size
/// limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// An identity-based policy (managed or inline, of a user, group or role).
    Identity,
    /// A resource-based policy (bucket policy, key policy, queue policy, ...).
    Resource,
    /// A role trust policy (the role's resource-based policy for `sts:AssumeRole*`).
    Trust,
    /// A service control policy.
    Scp,
    /// A resource control policy.
    Rcp,
    /// A permissions boundary.
    Boundary,
    /// A session policy passed to `AssumeRole*` or `GetFederationToken`.
    Session,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 7] = [
        PolicyKind::Identity,
        PolicyKind::Resource,
        PolicyKind::Trust,
        PolicyKind::Scp,
        PolicyKind::Rcp,
        PolicyKind::Boundary,
        PolicyKind::Session,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Identity => "identity",
            PolicyKind::Resource => "resource",
            PolicyKind::Trust => "trust",
            PolicyKind::Scp => "scp",
            PolicyKind::Rcp => "rcp",
            PolicyKind::Boundary => "boundary",
            PolicyKind::Session => "session",
        }
    }

    pub fn from_name(name: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind with its article, for messages: "an identity-based policy".
    pub fn described(self) -> &'static str {
        match self {
            PolicyKind::Identity => "an identity-based policy",
            PolicyKind::Resource => "a resource-based policy",
            PolicyKind::Trust => "a role trust policy",
            PolicyKind::Scp => "a service control policy",
            PolicyKind::Rcp => "a resource control policy",
            PolicyKind::Boundary => "a permissions boundary",
            PolicyKind::Session => "a session policy",
        }
    }

    /// AWS's size quota for this kind, in characters not counting white space.
    pub fn size_limit(self) -> usize {
        match self {
            PolicyKind::Identity | PolicyKind::Boundary => 6_144,
            PolicyKind::Resource => 20_480,
            PolicyKind::Trust | PolicyKind::Session => 2_048,
            PolicyKind::Scp | PolicyKind::Rcp => 5_120,
        }
    }

    /// True for kinds whose statements name a principal.
    pub fn needs_principal(self) -> bool {
        matches!(self, PolicyKind::Resource | PolicyKind::Trust | PolicyKind::Rcp)
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The policy language version. Without a `Version` element AWS reads a policy as
/// `2008-10-17`, in which `${...}` is literal text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2008_10_17,
    V2012_10_17,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// `Principal` or `NotPrincipal`.
#[derive(Clone, Debug, PartialEq)]
pub struct PrincipalMatch {
    pub negated: bool,
    pub ids: Vec<PrincipalId>,
}

/// One action pattern, lower-cased; `service` is its literal service prefix, if it has one.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionPattern {
    pub pattern: Pattern,
    pub service: Option<Arc<str>>,
}

/// `Action` or `NotAction`.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionMatch {
    pub negated: bool,
    pub patterns: Vec<ActionPattern>,
}

/// `Resource` or `NotResource`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceMatch {
    pub negated: bool,
    pub patterns: Vec<ArnPattern>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sid: Option<Arc<str>>,
    /// How explanations name the statement: its `Sid`, or `#index` without one. Made once at
    /// load, and shared with every explanation that names the statement.
    pub label: Arc<str>,
    /// Position in the policy's `Statement` array, from 0.
    pub index: usize,
    pub effect: Effect,
    pub principal: Option<PrincipalMatch>,
    pub action: ActionMatch,
    /// `None` only in trust policies, which have no `Resource`.
    pub resource: Option<ResourceMatch>,
    pub conditions: Box<[Condition]>,
}

/// A parsed, validated and compiled policy. Immutable and `Send + Sync`: compile once, share
/// behind an `Arc`, evaluate from any thread.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Shared with the explanations that name the policy.
    pub(crate) name: Arc<str>,
    pub(crate) kind: PolicyKind,
    pub(crate) version: Version,
    pub(crate) id: Option<Box<str>>,
    pub(crate) statements: Box<[Statement]>,
    pub(crate) index: ServiceIndex,
}

impl Policy {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The statements whose actions can match an action of `service` (lower-case), in order.
    pub fn candidates<'a>(&'a self, service: &str) -> impl Iterator<Item = &'a Statement> + 'a {
        let specific = self.index.for_service(service);
        // Merge the two sorted index lists so statements keep their order.
        let mut a = specific.iter().peekable();
        let mut b = self.index.any_service.iter().peekable();
        std::iter::from_fn(move || {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, _) => b.next(),
            }?;
            self.statements.get(*next as usize)
        })
    }
}

/// Statement indexes by the literal service prefix of their action patterns; statements with
/// `NotAction` or a wildcard in the service prefix can match any service. A policy names few
/// services, so a sorted list searched by bisection beats hashing the prefix on every lookup.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceIndex {
    by_service: Box<[ServiceEntry]>,
    any_service: Box<[u32]>,
}

/// A service prefix and the indexes of its statements.
type ServiceEntry = (Box<str>, Box<[u32]>);

impl ServiceIndex {
    fn for_service(&self, service: &str) -> &[u32] {
        match self.by_service.binary_search_by(|(s, _)| (**s).cmp(service)) {
            Ok(at) => &self.by_service[at].1,
            Err(_) => &[],
        }
    }

    pub(crate) fn build(statements: &[Statement]) -> ServiceIndex {
        let mut by_service: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut any_service = Vec::new();
        for (at, statement) in statements.iter().enumerate() {
            let at = at as u32;
            let services: Option<Vec<&str>> = if statement.action.negated {
                None
            } else {
                statement.action.patterns.iter().map(|p| p.service.as_deref()).collect()
            };
            match services {
                None => any_service.push(at),
                Some(services) => {
                    for service in services {
                        let list = by_service.entry(service.into()).or_default();
                        if list.last() != Some(&at) {
                            list.push(at);
                        }
                    }
                }
            }
        }
        let mut by_service: Vec<ServiceEntry> =
            by_service.into_iter().map(|(k, v)| (k, v.into_boxed_slice())).collect();
        by_service.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        ServiceIndex {
            by_service: by_service.into_boxed_slice(),
            any_service: any_service.into_boxed_slice(),
        }
    }
}
