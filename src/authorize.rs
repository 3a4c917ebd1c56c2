//! The hot path of the sidecar: a request, the current snapshot, a decision.
//!
//! It resolves the principal in the snapshot's directory, fills the context keys iamd knows
//! (the principal's identity and tags, the resource's tags) over anything the caller claimed,
//! picks the applicable policies and runs the engine. Nothing here touches the store or takes a
//! lock.

use crate::eval::{self, Context, Decision, Explanation, PolicySet, Principal, Request};
use crate::snapshot::{EntityKind, PrincipalEntry, Snapshot, lookup_key};

/// Largest context accepted: keys, values per key, bytes per value.
pub const MAX_CONTEXT_KEYS: usize = 128;
pub const MAX_VALUES_PER_KEY: usize = 256;
pub const MAX_VALUE_BYTES: usize = 4_096;

/// A request field that cannot be used, named as in the API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField { field, message: message.into() }
}

/// What the caller asks.
#[derive(Debug)]
pub struct Query<'a> {
    pub principal: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub resource_account: &'a str,
    pub context: Context,
    pub explain: bool,
}

/// A decision, with its explanation when asked for (and always for a deny decided before
/// evaluation, so that the caller learns why).
#[derive(Debug)]
pub struct Answer {
    pub decision: Decision,
    pub explanation: Option<Explanation>,
    /// Denied before evaluation (unknown principal, unresolved policies): the explanation says
    /// why and is always returned.
    pub refused: bool,
}

/// Checks the size limits of a context.
pub fn check_context_size(keys: usize, longest: usize, largest: usize) -> Result<(), InvalidField> {
    if keys > MAX_CONTEXT_KEYS {
        return Err(invalid("context", format!("{keys} keys, more than the {MAX_CONTEXT_KEYS} allowed")));
    }
    if longest > MAX_VALUES_PER_KEY {
        return Err(invalid(
            "context",
            format!("a key has {longest} values, more than the {MAX_VALUES_PER_KEY} allowed"),
        ));
    }
    if largest > MAX_VALUE_BYTES {
        return Err(invalid(
            "context",
            format!("a value has {largest} bytes, more than the {MAX_VALUE_BYTES} allowed"),
        ));
    }
    Ok(())
}

/// Decides `query` against `snapshot`.
pub fn decide(snapshot: &Snapshot, query: Query<'_>) -> Result<Answer, InvalidField> {
    let principal = Principal::parse(query.principal).map_err(|e| invalid("principal", e.to_string()))?;
    // Without an explicit owner, a resource belongs to the account in its ARN or, for ARNs
    // without one (S3), to the account this sidecar serves: never to the caller's own account,
    // which would turn a cross-account request into a same-account one.
    let in_arn = crate::policy::arn::Arn::parse(query.resource)
        .map(|arn| arn.account)
        .filter(|account| crate::eval::principal::is_account_id(account));
    let owner = match (query.resource_account, in_arn) {
        ("", Some(account)) => account,
        ("", None) => snapshot.bundle.account.as_str(),
        (explicit, Some(account)) if explicit != account => {
            return Err(invalid(
                "resource_account",
                format!(
                    "`{explicit}` is not the account in the resource ARN (`{account}`): leave it empty or make them agree"
                ),
            ));
        }
        (explicit, _) => explicit,
    };
    let entry = match lookup(snapshot, &principal) {
        Lookup::Stored(entry) => Some(entry),
        Lookup::NotStored => None,
        Lookup::Unknown(reason) => {
            let request = Request::new(principal, query.action, query.resource).map_err(request_error)?;
            return Ok(refuse(&request, reason));
        }
    };
    let mut context = query.context;
    fill_context(&mut context, &principal, entry, snapshot, query.resource);
    context.insert("aws:ResourceAccount", [owner]);
    let request = Request::new(principal, query.action, query.resource)
        .map_err(request_error)?
        .with_resource_account(owner)
        .map_err(|e| invalid("resource_account", e.to_string()))?;
    if let Some(reason) = entry.and_then(|e| e.unresolved.as_deref()) {
        return Ok(refuse(&request, reason.to_string()));
    }
    let request = request.with_context(context);
    let principal = request.principal();
    let bundle = &snapshot.bundle;
    // A role's only resource-based policy is its own trust policy: a bundle policy never stands
    // in for it, and without a stored role there is none (and nothing can assume it).
    let resource_policy = if request.resource_policy_kind() == crate::policy::PolicyKind::Trust {
        trust_policy(snapshot, query.resource)
    } else {
        bundle.resource_policy(query.resource).map(|p| &**p)
    };
    let resource_account = request.resource_account.as_deref();
    let policies = PolicySet {
        identity: entry.map_or(&[], |e| e.identity.as_slice()),
        resource: resource_policy,
        permissions_boundary: entry.and_then(|e| e.boundary.as_deref()),
        session: None,
        scps: principal.account().and_then(|a| bundle.scps(a)).map(|levels| levels.as_slice()),
        rcps: resource_account.and_then(|a| bundle.rcps(a)).map(|levels| levels.as_slice()),
    };
    if query.explain {
        let explanation = eval::explain(&request, &policies);
        Ok(Answer { decision: explanation.decision, explanation: Some(explanation), refused: false })
    } else {
        Ok(Answer { decision: eval::authorize(&request, &policies), explanation: None, refused: false })
    }
}

fn request_error(e: eval::RequestError) -> InvalidField {
    match e {
        eval::RequestError::InvalidAction(_) => invalid("action", e.to_string()),
        _ => invalid("resource", e.to_string()),
    }
}

enum Lookup<'s> {
    Stored(&'s PrincipalEntry),
    /// A principal iamd does not store (root, anonymous, a service): only its request decides.
    NotStored,
    Unknown(String),
}

fn lookup<'s>(snapshot: &'s Snapshot, principal: &Principal) -> Lookup<'s> {
    let find = |kind, account: &str, name: &str| {
        snapshot.directory.principals.get(lookup_key(kind, account, name).as_str())
    };
    let unknown = || Lookup::Unknown(format!("principal {} is not known to iamd", principal.display()));
    match principal {
        Principal::User { arn, account } => {
            let name = arn.rsplit('/').next().unwrap_or_default();
            match find(EntityKind::User, account, name) {
                Some(entry) if entry.who.arn == *arn => Lookup::Stored(entry),
                _ => unknown(),
            }
        }
        Principal::Role { arn, account, name } => match find(EntityKind::Role, account, name) {
            Some(entry) if entry.who.arn == *arn => Lookup::Stored(entry),
            _ => unknown(),
        },
        Principal::AssumedRole { account, role_name, .. } => match find(EntityKind::Role, account, role_name)
        {
            Some(entry) => Lookup::Stored(entry),
            None => unknown(),
        },
        Principal::FederatedUser { .. } => unknown(),
        Principal::Root { .. } | Principal::Anonymous | Principal::Service(_) | Principal::Federated(_) => {
            Lookup::NotStored
        }
    }
}

fn refuse(request: &Request, reason: String) -> Answer {
    let explanation = Explanation {
        decision: Decision::ImplicitDeny,
        deciding_layer: None,
        reason: format!(
            "{} is not authorized to perform: {} on resource: {} because {reason}",
            request.principal().display(),
            request.action(),
            request.resource()
        ),
        matched_statements: Vec::new(),
    };
    Answer { decision: Decision::ImplicitDeny, explanation: Some(explanation), refused: true }
}

/// Keys (and key prefixes) about the principal and the resource that only iamd may set: a
/// caller's values for them are discarded before iamd fills in what it knows.
const CALLER_CANNOT_CLAIM: &[&str] = &[
    "aws:principaltag/",
    "aws:resourcetag/",
    "aws:username",
    "aws:userid",
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principaltype",
    "aws:principalservicename",
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalisawsservice",
    "aws:resourceaccount",
];

/// Context keys iamd knows better than the caller: who the principal is, its tags, and the
/// resource's tags. They replace whatever the caller sent under the same keys.
fn fill_context(
    context: &mut Context,
    principal: &Principal,
    entry: Option<&PrincipalEntry>,
    snapshot: &Snapshot,
    resource: &str,
) {
    for key in CALLER_CANNOT_CLAIM {
        context.remove_prefix(key);
    }
    if let Some(account) = principal.account() {
        context.insert("aws:PrincipalAccount", [account]);
    }
    let principal_type = match principal {
        Principal::User { .. } => "User",
        Principal::Role { .. } | Principal::AssumedRole { .. } => "AssumedRole",
        Principal::FederatedUser { .. } => "FederatedUser",
        Principal::Root { .. } => "Account",
        Principal::Anonymous => "Anonymous",
        Principal::Service(_) | Principal::Federated(_) => "Service",
    };
    context.insert("aws:PrincipalType", [principal_type]);
    let is_service = matches!(principal, Principal::Service(_));
    context.insert("aws:PrincipalIsAWSService", [if is_service { "true" } else { "false" }]);
    match principal {
        Principal::Root { account, .. } => {
            context.insert("aws:PrincipalArn", [principal.display()]);
            context.insert("aws:userid", [account.as_str()]);
        }
        Principal::Service(name) | Principal::Federated(name) => {
            context.insert("aws:PrincipalServiceName", [name.as_str()])
        }
        _ => {}
    }
    if let Some(entry) = entry {
        let who = &entry.who;
        context.insert("aws:PrincipalArn", [who.arn.as_str()]);
        match (who.kind, principal) {
            (EntityKind::User, _) => {
                context.insert("aws:username", [who.name.as_str()]);
                context.insert("aws:userid", [who.id.as_str()]);
            }
            (EntityKind::Role, Principal::AssumedRole { arn, .. }) => {
                let session = arn.rsplit('/').next().unwrap_or_default();
                context.insert("aws:userid", [format!("{}:{session}", who.id)]);
            }
            (EntityKind::Role, _) => context.insert("aws:userid", [who.id.as_str()]),
        }
        for tag in &who.tags {
            context.insert(&format!("aws:PrincipalTag/{}", tag.key), [tag.value.as_str()]);
        }
    }
    if let Some(tags) = snapshot.directory.resource_tags.get(resource) {
        for tag in tags.iter() {
            context.insert(&format!("aws:ResourceTag/{}", tag.key), [tag.value.as_str()]);
        }
    }
}

/// The trust policy of the stored role named by `resource`.
fn trust_policy<'s>(snapshot: &'s Snapshot, resource: &str) -> Option<&'s crate::policy::Policy> {
    let arn = crate::policy::arn::Arn::parse(resource)?;
    let name = arn.resource.rsplit('/').next()?;
    let entry =
        snapshot.directory.principals.get(lookup_key(EntityKind::Role, arn.account, name).as_str())?;
    (entry.who.arn == resource).then_some(entry.trust.as_deref()).flatten()
}
