//! The immutable view every decision reads: the compiled bundle and the directory of
//! principals with their resolved policies. A new snapshot is published with one atomic swap,
//! so a request sees the whole old state or the whole new one.

mod shared_map;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
pub use shared_map::SharedMap;

use crate::bundle::Bundle;
use crate::iam::model::Tag;
use crate::policy::Policy;

/// What a stored principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    User,
    Role,
}

/// A stored user or role as iamd keeps it in memory: the facts it puts in the request context,
/// and what its policies are resolved from. Built once per change of the entity and shared by
/// every snapshot until the next; the rest of its record (path, creation date, inline policy
/// documents) stays in the store, read by the admin calls that show it.
#[derive(Debug)]
pub struct Who {
    pub kind: EntityKind,
    pub arn: Box<str>,
    /// Shared by the principals of the account.
    pub account: Arc<str>,
    pub name: Box<str>,
    pub id: Box<str>,
    pub tags: Box<[Tag]>,
    pub links: Links,
}

/// What a user's or role's policies are resolved from, kept so that a reload or a change of a
/// managed policy or group resolves the principal again without reading the store.
#[derive(Debug, Default)]
pub struct Links {
    /// Managed policy ARNs, in attachment order.
    pub attached: Box<[Arc<str>]>,
    /// Everything else, which most users do not have: boxed, it costs them one pointer.
    more: Option<Box<MoreLinks>>,
}

#[derive(Debug, Default)]
pub struct MoreLinks {
    /// Its inline policies, compiled.
    pub inline: Box<[Arc<Policy>]>,
    pub boundary: Option<Arc<str>>,
    /// A user's groups, by lower-cased name.
    pub groups: Box<[Box<str>]>,
    /// A role's trust policy; `None` for users, and for a role whose stored trust policy does
    /// not compile (the role is then unusable rather than open).
    pub trust: Option<Arc<Policy>>,
    /// Why an inline policy did not compile: the principal's requests are then denied, since
    /// the policy could have been a `Deny`.
    pub problem: Option<Box<str>>,
}

impl Links {
    pub fn new(attached: Box<[Arc<str>]>, more: MoreLinks) -> Links {
        let empty = more.inline.is_empty()
            && more.boundary.is_none()
            && more.groups.is_empty()
            && more.trust.is_none()
            && more.problem.is_none();
        Links { attached, more: (!empty).then(|| Box::new(more)) }
    }

    pub fn inline(&self) -> &[Arc<Policy>] {
        self.more.as_ref().map_or(&[], |more| &more.inline)
    }

    pub fn boundary(&self) -> Option<&str> {
        self.more.as_ref().and_then(|more| more.boundary.as_deref())
    }

    pub fn groups(&self) -> &[Box<str>] {
        self.more.as_ref().map_or(&[], |more| &more.groups)
    }

    pub fn trust(&self) -> Option<&Arc<Policy>> {
        self.more.as_ref().and_then(|more| more.trust.as_ref())
    }

    pub fn problem(&self) -> Option<&str> {
        self.more.as_ref().and_then(|more| more.problem.as_deref())
    }
}

/// A stored user or role with everything a decision needs, resolved at write or reload time.
#[derive(Debug)]
pub struct PrincipalEntry {
    pub who: Arc<Who>,
    /// Inline and attached policies, the user's groups' included.
    pub identity: Box<[Arc<Policy>]>,
    pub boundary: Option<Arc<Policy>>,
    /// Why the principal's policies could not all be resolved (an attached policy missing from
    /// the bundle). Its requests are then denied: a missing policy could have been a `Deny`.
    pub unresolved: Option<Box<str>>,
}

/// Who an access key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    User { account: String, name: String, arn: String },
    Root { account: String },
}

/// An access key as the hot path needs it.
#[derive(Debug)]
pub struct AccessKeyEntry {
    pub owner: KeyOwner,
    pub active: bool,
    /// `None` when the stored secret cannot be opened with the configured master keys (the key
    /// then authenticates nothing).
    pub secret: Option<crate::credentials::Secret>,
}

/// Principals and resource tags, as persistent maps: publishing after a write shares all
/// unchanged entries with the previous snapshot.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    pub principals: SharedMap<Arc<PrincipalEntry>>,
    pub resource_tags: SharedMap<Arc<[Tag]>>,
    /// Access keys by id.
    pub access_keys: SharedMap<Arc<AccessKeyEntry>>,
    /// Customer managed policies created through the API, by ARN (the bundle's are in the
    /// bundle).
    pub managed_policies: SharedMap<Arc<Policy>>,
}

/// The key of a user or role in the directory.
pub fn principal_key(kind: EntityKind, account: &str, name: &str) -> Arc<str> {
    lookup_key(kind, account, name).into()
}

/// The same key as a plain string, for lookups (one allocation instead of two).
pub fn lookup_key(kind: EntityKind, account: &str, name: &str) -> String {
    let kind = match kind {
        EntityKind::User => "user/",
        EntityKind::Role => "role/",
    };
    let mut key = String::with_capacity(kind.len() + account.len() + name.len() + 1);
    key.push_str(kind);
    key.push_str(account);
    key.push('/');
    key.extend(name.chars().map(|c| c.to_ascii_lowercase()));
    key
}

#[derive(Debug)]
pub struct Snapshot {
    pub bundle: Arc<Bundle>,
    pub directory: Directory,
    /// Increases with every published change of the stored identities.
    pub generation: u64,
    /// `BUNDLE_REVISION+GENERATION`: which bundle and which store state decided.
    pub revision: String,
}

impl Snapshot {
    /// A managed policy by ARN: the bundle's, else one created through the API.
    pub fn managed_policy(&self, arn: &str) -> Option<&Arc<Policy>> {
        self.bundle.managed_policy(arn).or_else(|| self.directory.managed_policies.get(arn))
    }

    pub fn new(bundle: Arc<Bundle>, directory: Directory, generation: u64) -> Snapshot {
        let revision = format!("{}+{generation}", bundle.revision);
        Snapshot { bundle, directory, generation, revision }
    }
}

/// The published snapshot, read lock-free on every request. Empty until a bundle has loaded.
pub type SharedSnapshot = Arc<ArcSwapOption<Snapshot>>;
