//! The hot path of the sidecar: a request, the current snapshot, a decision.
//!
//! It resolves the principal in the snapshot's directory, fills the context keys iamd knows
//! (the principal's identity and tags, the resource's tags, and for an authenticated caller its
//! session, MFA and transport) over anything the caller claimed, picks the applicable policies
//! and runs the engine. Nothing here touches the store or takes a lock.

use std::borrow::Cow;
use std::sync::Arc;

use crate::credentials::session::SessionIdentity;
use crate::credentials::{Authenticated, Session};
use crate::eval::{self, Context, Decision, Explanation, PolicySet, Principal, Request};
use crate::policy::Policy;
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
    /// The principal the caller names; ignored when `verified` is given.
    pub principal: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub resource_account: &'a str,
    pub context: Context,
    pub explain: bool,
    /// The authenticated signer of the request, when the request was signed.
    pub verified: Option<Verified<'a>>,
}

/// A caller established by its signature, and what the service saw of its request.
#[derive(Debug)]
pub struct Verified<'a> {
    pub caller: &'a Authenticated,
    /// `aws:SourceIp`.
    pub source_ip: Option<&'a str>,
    /// `aws:SecureTransport`.
    pub secure_transport: bool,
    pub now: jiff::Timestamp,
    /// When MFA was verified with this very request (an MFA code given to AssumeRole or
    /// GetSessionToken), over what the caller's session says.
    pub mfa_at: Option<i64>,
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
    /// For an explained deny, the request's context as evaluated (with the keys iamd filled
    /// in): what an encoded authorization message records. Handed back rather than copied, so
    /// that an allow costs nothing.
    pub context: Option<Context>,
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
    let principal_arn: Cow<'_, str> = match &query.verified {
        Some(verified) => verified.caller.principal_arn().into(),
        None => query.principal.into(),
    };
    let principal = Principal::parse(&principal_arn).map_err(|e| invalid("principal", e.to_string()))?;
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
    let session = query.verified.as_ref().and_then(|v| v.caller.session());
    let mut context = query.context;
    fill_context(&mut context, &principal, entry, snapshot, query.resource);
    if let Some(verified) = &query.verified {
        fill_authenticated(&mut context, verified, entry);
    }
    context.insert_static("aws:resourceaccount", [owner]);
    let request = Request::new(principal, query.action, query.resource)
        .map_err(request_error)?
        .with_resource_account(owner)
        .map_err(|e| invalid("resource_account", e.to_string()))?;
    if let Some(reason) = entry.and_then(|e| e.unresolved.as_deref()) {
        return Ok(refuse(&request, reason.to_string()));
    }
    if let Some(session) = session
        && let Some(reason) = outlived(session, entry)
    {
        return Ok(refuse(&request, reason));
    }
    let session_policies = match session.map(|s| session_policies(snapshot, s)).transpose() {
        Ok(policies) => policies.flatten(),
        Err(reason) => return Ok(refuse(&request, reason)),
    };
    let mut request = request.with_context(context);
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
        identity: entry.map_or(&[], |e| &*e.identity),
        resource: resource_policy,
        permissions_boundary: entry.and_then(|e| e.boundary.as_deref()),
        session: session_policies.as_deref(),
        scps: principal.account().and_then(|a| bundle.scps(a)).map(|levels| levels.as_slice()),
        rcps: resource_account.and_then(|a| bundle.rcps(a)).map(|levels| levels.as_slice()),
    };
    if query.explain {
        let explanation = eval::explain(&request, &policies);
        let context = (!explanation.decision.is_allowed()).then(|| std::mem::take(&mut request.context));
        Ok(Answer { decision: explanation.decision, explanation: Some(explanation), refused: false, context })
    } else {
        let decision = eval::authorize(&request, &policies);
        Ok(Answer { decision, explanation: None, refused: false, context: None })
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
                Some(entry) if *entry.who.arn == **arn => Lookup::Stored(entry),
                _ => unknown(),
            }
        }
        Principal::Role { arn, account, name } => match find(EntityKind::Role, account, name) {
            Some(entry) if *entry.who.arn == **arn => Lookup::Stored(entry),
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
            "User: {} is not authorized to perform: {} on resource: {} because {reason}",
            request.principal().display(),
            request.action(),
            request.resource()
        ),
        matched_statements: Vec::new(),
    };
    Answer { decision: Decision::ImplicitDeny, explanation: Some(explanation), refused: true, context: None }
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
    let resource_tags = snapshot.directory.resource_tags.get(resource);
    // The principal's keys below, its tags, the resource's tags and aws:ResourceAccount.
    let principal_tags = entry.map_or(0, |e| e.who.tags.len());
    context.reserve(8 + principal_tags + resource_tags.map_or(0, |tags| tags.len()));
    if let Some(account) = principal.account() {
        context.insert_static("aws:principalaccount", [account]);
    }
    let principal_type = match principal {
        Principal::User { .. } => "User",
        Principal::Role { .. } | Principal::AssumedRole { .. } => "AssumedRole",
        Principal::FederatedUser { .. } => "FederatedUser",
        Principal::Root { .. } => "Account",
        Principal::Anonymous => "Anonymous",
        Principal::Service(_) | Principal::Federated(_) => "Service",
    };
    context.insert_static("aws:principaltype", [principal_type]);
    let is_service = matches!(principal, Principal::Service(_));
    context.insert_static("aws:principalisawsservice", [if is_service { "true" } else { "false" }]);
    match principal {
        Principal::Root { account, .. } => {
            context.insert_static("aws:principalarn", [principal.display()]);
            context.insert_static("aws:userid", [account.as_str()]);
        }
        Principal::Service(name) | Principal::Federated(name) => {
            context.insert_static("aws:principalservicename", [name.as_str()])
        }
        _ => {}
    }
    if let Some(entry) = entry {
        let who = &entry.who;
        context.insert_static("aws:principalarn", [&*who.arn]);
        match (who.kind, principal) {
            (EntityKind::User, _) => {
                context.insert_static("aws:username", [&*who.name]);
                context.insert_static("aws:userid", [&*who.id]);
            }
            (EntityKind::Role, Principal::AssumedRole { arn, .. }) => {
                let session = arn.rsplit('/').next().unwrap_or_default();
                context.insert_static("aws:userid", [format!("{}:{session}", who.id)]);
            }
            (EntityKind::Role, _) => context.insert_static("aws:userid", [&*who.id]),
        }
        for tag in &who.tags {
            context.insert_prefixed("aws:principaltag/", &tag.key, [tag.value.as_str()]);
        }
    }
    if let Some(tags) = resource_tags {
        for tag in tags.iter() {
            context.insert_prefixed("aws:resourcetag/", &tag.key, [tag.value.as_str()]);
        }
    }
}

/// Keys that describe how the caller authenticated: for a signed request iamd knows them, and a
/// caller's claims are discarded.
const AUTHENTICATION_KEYS: &[&str] = &[
    "aws:multifactorauthpresent",
    "aws:multifactorauthage",
    "aws:tokenissuetime",
    "aws:sourceidentity",
    "aws:currenttime",
    "aws:epochtime",
    "aws:securetransport",
    "aws:sourceip",
    "aws:federatedprovider",
];

/// The context keys of an authenticated caller, as AWS sets them: MFA keys only for temporary
/// credentials (a long-term access key carries no MFA), session tags over the role's tags.
fn fill_authenticated(context: &mut Context, verified: &Verified<'_>, entry: Option<&PrincipalEntry>) {
    for key in AUTHENTICATION_KEYS {
        context.remove_prefix(key);
    }
    let now = verified.now;
    context.insert_static("aws:currenttime", [current_time(now.as_second())]);
    context.insert_static("aws:epochtime", [now.as_second().to_string()]);
    context.insert_static("aws:securetransport", [if verified.secure_transport { "true" } else { "false" }]);
    if let Some(ip) = verified.source_ip.filter(|ip| !ip.is_empty()) {
        context.insert_static("aws:sourceip", [ip]);
    }
    let caller = verified.caller;
    if caller.is_root() {
        context.insert_static("aws:userid", [caller.account()]);
    }
    let session = caller.session();
    let mfa_at = verified.mfa_at.or(session.and_then(|s| s.mfa_authenticated));
    if let Some(at) = mfa_at {
        context.insert_static("aws:multifactorauthpresent", ["true"]);
        context.insert_static("aws:multifactorauthage", [(now.as_second() - at).max(0).to_string()]);
    } else if session.is_some() {
        context.insert_static("aws:multifactorauthpresent", ["false"]);
    }
    let Some(session) = session else { return };
    context.insert_static("aws:tokenissuetime", [session.issue_time()]);
    if let Some(source_identity) = &session.source_identity {
        context.insert_static("aws:sourceidentity", [source_identity.as_str()]);
    }
    if entry.is_some() {
        context.insert_static("aws:userid", [session.user_id()]);
    }
    for tag in &session.tags {
        context.insert_prefixed("aws:principaltag/", &tag.key, [tag.value.as_str()]);
    }
}

/// `aws:CurrentTime` for a second: formatted once per second per thread, not per request.
pub(crate) fn current_time(second: i64) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != second {
            let time = jiff::Timestamp::from_second(second).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            *last = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        last.1.clone()
    })
}

/// A session outlives its principal if the user or role was deleted (and perhaps recreated
/// under the same name: the unique id tells them apart, as in AWS).
fn outlived(session: &Session, entry: Option<&PrincipalEntry>) -> Option<String> {
    let expected = match &session.identity {
        SessionIdentity::Role { id, .. } | SessionIdentity::User { id, .. } => id,
        SessionIdentity::Root => return None,
    };
    match entry {
        Some(entry) if *entry.who.id == **expected => None,
        _ => Some("the session's role or user no longer exists".to_string()),
    }
}

/// The session's policies: its inline policy and its managed policies from the bundle. `None`
/// when the session has none (it is then not capped).
fn session_policies(snapshot: &Snapshot, session: &Session) -> Result<Option<Vec<Arc<Policy>>>, String> {
    if session.policy.is_none() && session.policy_arns.is_empty() {
        return Ok(None);
    }
    let mut policies = Vec::with_capacity(1 + session.policy_arns.len());
    if let Some(inline) = session.inline_policy()? {
        policies.push(inline.clone());
    }
    for arn in &session.policy_arns {
        match snapshot.managed_policy(arn) {
            Some(policy) => policies.push(policy.clone()),
            None => return Err(format!("the session policy {arn} does not exist")),
        }
    }
    Ok(Some(policies))
}

/// The trust policy of the stored role named by `resource`.
fn trust_policy<'s>(snapshot: &'s Snapshot, resource: &str) -> Option<&'s crate::policy::Policy> {
    let arn = crate::policy::arn::Arn::parse(resource)?;
    let name = arn.resource.rsplit('/').next()?;
    let entry =
        snapshot.directory.principals.get(lookup_key(EntityKind::Role, arn.account, name).as_str())?;
    (*entry.who.arn == *resource).then(|| entry.who.links.trust().map(|trust| &**trust)).flatten()
}
