//! Identity management: users, groups, roles, their policies and tags.
//!
//! [`Iam`] is the one implementation behind every way of changing identities (the admin gRPC
//! API today, the AWS-compatible API later). Each change is validated against AWS's rules,
//! written to the store and flushed, applied to the in-memory state, and published in a new
//! snapshot before the call returns: the next decision sees it.

pub mod error;
mod keys;
mod mfa;
pub mod model;
mod password;
mod policies;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

pub use error::IamError;
pub use mfa::NewDevice;
use model::{
    AccessKey, Group, LoginProfile, MfaDevice, PasswordPolicy, ResourceTags, Role, StateDocument, Tag, User,
};
pub use password::SignIn;
use policies::StoredPolicy;
pub use policies::{MAX_VERSIONS, PolicyInfo, PolicySource, Scope};
use validate::NameKind;

use crate::bundle::Bundle;
use crate::credentials::KeyRing;
use crate::policy::Interner;
use crate::policy::{self, Policy, PolicyKind};
use crate::snapshot::{
    AccessKeyEntry, Directory, EntityKind, Links, MoreLinks, PrincipalEntry, SharedSnapshot, Snapshot, Who,
    lookup_key, principal_key,
};
use crate::store::{SCHEMA_VERSION, Store, StoreError, Stored, Write};

type Key = (String, String);

fn key(account: &str, name: &str) -> Key {
    (account.to_string(), name.to_ascii_lowercase())
}

/// Where a listing starts and how much of it to return, as AWS's `Marker` and `MaxItems`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paging<'a> {
    /// The name to start at (case-insensitive): the `next` of the previous page.
    pub from: &'a str,
    /// The most items to return; 0 for all of them.
    pub max_items: usize,
}

/// One page of a listing, in name order.
#[derive(Debug)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Where the next page starts, when more items follow.
    pub next: Option<String>,
}

impl Paging<'_> {
    /// Takes this page from `entries` (lower-cased name and item, in name order, starting at
    /// `from`), keeping the items `keep` accepts.
    fn take<T, E>(
        self,
        entries: impl Iterator<Item = Result<(String, T), E>>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Listing<T>, E> {
        let mut items = Vec::new();
        for entry in entries {
            let (name, item) = entry?;
            if !keep(&item) {
                continue;
            }
            if self.max_items != 0 && items.len() == self.max_items {
                return Ok(Listing { items, next: Some(name) });
            }
            items.push(item);
        }
        Ok(Listing { items, next: None })
    }
}

/// A group as iamd keeps it in memory: the whole record (groups are few), with its inline
/// policies compiled.
#[derive(Clone, Debug)]
struct CompiledGroup {
    record: Group,
    inline: Box<[Arc<Policy>]>,
    /// Why an inline policy did not compile: requests of the group's members are then denied,
    /// since the policy could have been a `Deny`.
    problem: Option<Box<str>>,
}

/// Compiles inline policies, turning a failure into a problem rather than dropping them.
fn compile_or_note(owner: &str, inline: &BTreeMap<String, String>) -> (Box<[Arc<Policy>]>, Option<Box<str>>) {
    match compile_inline(owner, inline) {
        Ok(policies) => (policies.into(), None),
        Err(e) => (Box::default(), Some(format!("an inline policy of {owner} does not compile: {e}").into())),
    }
}

fn compiled_group(group: Group) -> CompiledGroup {
    let (inline, problem) = compile_or_note(&group.arn(), &group.inline);
    CompiledGroup { record: group, inline, problem }
}

/// What of a user's record iamd keeps in memory.
fn user_who(strings: &mut Interner, user: User) -> Who {
    let arn = user.arn();
    let (inline, problem) = compile_or_note(&arn, &user.inline);
    let links = Links::new(
        user.attached.iter().map(|a| strings.intern(a)).collect(),
        MoreLinks {
            inline,
            boundary: user.boundary.as_deref().map(|b| strings.intern(b)),
            groups: user.groups.into_iter().map(String::into_boxed_str).collect(),
            trust: None,
            problem,
        },
    );
    Who {
        kind: EntityKind::User,
        arn: arn.into(),
        account: strings.intern(&user.account),
        name: user.name.into(),
        id: user.id.into(),
        tags: user.tags.into(),
        links,
    }
}

/// What of a role's record iamd keeps in memory.
fn role_who(strings: &mut Interner, role: Role) -> Who {
    let arn = role.arn();
    let (inline, problem) = compile_or_note(&arn, &role.inline);
    let trust = policy::parse(&format!("{arn}/trust-policy"), &role.trust_policy, PolicyKind::Trust)
        .ok()
        .map(|parsed| Arc::new(parsed.policy));
    let links = Links::new(
        role.attached.iter().map(|a| strings.intern(a)).collect(),
        MoreLinks {
            inline,
            boundary: role.boundary.as_deref().map(|b| strings.intern(b)),
            groups: Box::default(),
            trust,
            problem,
        },
    );
    Who {
        kind: EntityKind::Role,
        arn: arn.into(),
        account: strings.intern(&role.account),
        name: role.name.into(),
        id: role.id.into(),
        tags: role.tags.into(),
        links,
    }
}

/// Refuses an entity whose inline policies do not compile (on import).
fn valid(problem: Option<&str>) -> Result<(), IamError> {
    match problem {
        Some(problem) => Err(IamError::MalformedPolicyDocument(problem.to_string())),
        None => Ok(()),
    }
}

/// The in-memory state. Users and roles live only in the directory, as its entries hold them
/// (see [`Who`]): at 100,000 principals a second map of them would be tens of megabytes.
struct State {
    groups: BTreeMap<Key, CompiledGroup>,
    resource_tags: BTreeMap<String, Vec<Tag>>,
    /// Access keys by id, with their opened secrets.
    access_keys: BTreeMap<String, (AccessKey, Arc<AccessKeyEntry>)>,
    /// MFA devices by serial number.
    mfa_devices: BTreeMap<String, MfaDevice>,
    login_profiles: BTreeMap<Key, LoginProfile>,
    /// Password policies by account.
    password_policies: BTreeMap<String, PasswordPolicy>,
    /// Customer managed policies created through the API, by ARN.
    managed_policies: BTreeMap<String, StoredPolicy>,
    keyring: Arc<KeyRing>,
    bundle: Option<Arc<Bundle>>,
    directory: Directory,
    generation: u64,
    /// The account ids and managed policy ARNs of principals, each stored once.
    strings: Interner,
}

impl State {
    fn new(keyring: Arc<KeyRing>) -> State {
        State {
            groups: BTreeMap::new(),
            resource_tags: BTreeMap::new(),
            access_keys: BTreeMap::new(),
            mfa_devices: BTreeMap::new(),
            login_profiles: BTreeMap::new(),
            password_policies: BTreeMap::new(),
            managed_policies: BTreeMap::new(),
            keyring,
            bundle: None,
            directory: Directory::default(),
            generation: 0,
            strings: Interner::default(),
        }
    }
}

/// Counts for status.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub users: usize,
    pub groups: usize,
    pub roles: usize,
    pub resource_tags: usize,
    pub access_keys: usize,
}

pub struct Iam {
    store: Store,
    state: Mutex<State>,
    snapshot: SharedSnapshot,
    default_account: String,
    mfa_attempts: mfa::Attempts,
    /// Recent wrong passwords, per `account/user`.
    password_attempts: mfa::Attempts,
}

fn storage(e: StoreError) -> IamError {
    match e {
        // Written, but not known to be on disk: applied, so "nothing was changed" would be wrong.
        StoreError::NotFlushed(_) => IamError::ServiceFailure(e.to_string()),
        e => not_changed(e),
    }
}

fn not_changed(e: StoreError) -> IamError {
    IamError::ServiceFailure(format!("the change could not be stored, nothing was changed: {e}"))
}

fn compile_inline(owner: &str, inline: &BTreeMap<String, String>) -> Result<Vec<Arc<Policy>>, IamError> {
    inline
        .iter()
        .map(|(name, text)| {
            policy::parse(&format!("{owner}/{name}"), text, PolicyKind::Identity)
                .map(|parsed| Arc::new(parsed.policy))
                .map_err(|e| IamError::MalformedPolicyDocument(e.to_string()))
        })
        .collect()
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An IAM unique id: a four-letter prefix by kind and 17 random characters, as AWS does.
fn unique_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 17];
    // The OS random source failing is not recoverable; ids then fall back to time-derived bytes.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
        bytes[..16].copy_from_slice(&nanos);
    }
    let suffix: String = bytes.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect();
    format!("{prefix}{suffix}")
}

impl Iam {
    /// Loads the stored identities and prepares to publish snapshots into `snapshot`.
    pub fn open(
        store: Store,
        snapshot: SharedSnapshot,
        default_account: String,
        keyring: Arc<KeyRing>,
    ) -> Result<Iam, StoreError> {
        let mut state = State::new(keyring);
        store.for_each(|record| load_stored(&mut state, record))?;
        // sled keeps every page this first read touched in its cache (its LRU evicts nothing
        // until tens of thousands of further reads): at 100,000 users, ~40 MB held for nothing.
        // Opening the store again lets go of them.
        let store = store.reopen()?;
        crate::memory::release_freed();
        Ok(Iam {
            store,
            state: Mutex::new(state),
            snapshot,
            default_account,
            mfa_attempts: mfa::Attempts::default(),
            password_attempts: mfa::Attempts::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed: changes are
        // applied only after they are stored, by infallible code.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn default_account(&self) -> &str {
        &self.default_account
    }

    fn account<'a>(&'a self, account: &'a str) -> Result<&'a str, IamError> {
        if account.is_empty() {
            return Ok(&self.default_account);
        }
        if !crate::eval::principal::is_account_id(account) {
            return Err(IamError::InvalidInput(format!("account `{account}` is not a 12-digit account id")));
        }
        Ok(account)
    }

    /// Publishes `bundle`: every principal is resolved against it. Called at start and on
    /// every successful reload.
    pub fn publish_bundle(&self, bundle: Arc<Bundle>) {
        let mut state = self.lock();
        state.bundle = Some(bundle);
        rebuild(&mut state, &self.snapshot);
    }

    /// The ARN of a user, group or role: with its stored path if it exists, else with `/`
    /// (the ARN a call that creates it, or fails to find it, is authorized on).
    pub fn entity_arn(&self, kind: Entity, account: &str, name: &str) -> String {
        let account = if account.is_empty() { self.default_account.as_str() } else { account };
        let state = self.lock();
        let stored = match kind {
            Entity::User => user_of(&state, account, name).map(|u| u.arn.to_string()),
            Entity::Group => group_of(&state, account, name).map(|g| g.record.arn()),
            Entity::Role => role_of(&state, account, name).map(|r| r.arn.to_string()),
        };
        stored.unwrap_or_else(|_| format!("arn:aws:iam::{account}:{}/{name}", kind.label()))
    }

    pub fn counts(&self) -> Counts {
        let state = self.lock();
        let (users, roles) = principal_counts(&state.directory);
        Counts {
            users,
            groups: state.groups.len(),
            roles,
            resource_tags: state.resource_tags.len(),
            access_keys: state.access_keys.len(),
        }
    }

    /// Stores `writes`, then applies them in memory and publishes. A write that reached the
    /// store but not the disk is applied too (memory must match what a restart will read) and
    /// reported as a failure.
    fn commit(&self, state: &mut State, writes: Vec<Write>) -> Result<(), IamError> {
        let stored = self.store.apply(&writes);
        let stored = match stored {
            Err(e) if !matches!(e, StoreError::NotFlushed(_)) => return Err(not_changed(e)),
            stored => stored,
        };
        for write in writes {
            apply(state, write);
        }
        publish(state, &self.snapshot);
        stored.map_err(storage)
    }

    fn managed_policy_exists(state: &State, arn: &str) -> bool {
        policies::managed_policy(state, arn).is_some()
    }

    fn check_attachable(state: &State, arn: &str) -> Result<(), IamError> {
        if Self::managed_policy_exists(state, arn) {
            Ok(())
        } else {
            Err(IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable.")))
        }
    }

    // Users.

    pub fn create_user(
        &self,
        account: &str,
        name: &str,
        path: &str,
        tags: &[Tag],
        boundary: &str,
    ) -> Result<User, IamError> {
        let account = self.account(account)?;
        validate::name(NameKind::User, name)?;
        let path = if path.is_empty() { "/" } else { path };
        validate::path(path)?;
        let mut merged = Vec::new();
        validate::merge_tags(&mut merged, tags)?;
        let mut state = self.lock();
        if user_of(&state, account, name).is_ok() {
            return Err(IamError::EntityAlreadyExists(format!("User with name {name} already exists.")));
        }
        if !boundary.is_empty() {
            Self::check_attachable(&state, boundary)?;
        }
        let user = User {
            account: account.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            id: unique_id("AIDA"),
            created: now(),
            tags: merged,
            inline: BTreeMap::new(),
            attached: Vec::new(),
            boundary: (!boundary.is_empty()).then(|| boundary.to_string()),
            groups: BTreeSet::new(),
        };
        self.commit(&mut state, vec![Write::PutUser(user.clone())])?;
        Ok(user)
    }

    pub fn get_user(&self, account: &str, name: &str) -> Result<User, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        self.user_record(&state, account, name)
    }

    /// Users are listed from the store, which every acknowledged write has reached, without
    /// the state lock: a long listing does not hold up writes (as in AWS, a user created while
    /// it runs may or may not be in it).
    pub fn list_users(
        &self,
        account: &str,
        path_prefix: &str,
        page: Paging<'_>,
    ) -> Result<Listing<User>, IamError> {
        let account = self.account(account)?;
        page.take(self.store.users(account, page.from), |u| u.path.starts_with(path_prefix))
            .map_err(unreadable)
    }

    /// Deletes a user that has no inline policies, attachments, boundary or group memberships,
    /// as AWS requires.
    pub fn delete_user(&self, account: &str, name: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let user = self.user_record(&state, account, name)?;
        let blockers: Vec<&str> = [
            (!user.inline.is_empty(), "inline policies"),
            (!user.attached.is_empty(), "attached policies"),
            (!user.groups.is_empty(), "group memberships"),
            (keys::owned_by(&state, account, Some(&user.name)).next().is_some(), "access keys"),
            (mfa::owned(&state, account, &user.name).next().is_some(), "MFA devices"),
            (state.login_profiles.contains_key(&key(account, &user.name)), "login profile"),
        ]
        .into_iter()
        .filter_map(|(present, what)| present.then_some(what))
        .collect();
        if !blockers.is_empty() {
            return Err(IamError::DeleteConflict(format!(
                "Cannot delete entity, must remove {} first.",
                blockers.join(", ")
            )));
        }
        self.commit(&mut state, vec![Write::DeleteUser { account: account.to_string(), name: user.name }])
    }

    // Groups.

    pub fn create_group(&self, account: &str, name: &str, path: &str) -> Result<Group, IamError> {
        let account = self.account(account)?;
        validate::name(NameKind::Group, name)?;
        let path = if path.is_empty() { "/" } else { path };
        validate::path(path)?;
        let mut state = self.lock();
        if state.groups.contains_key(&key(account, name)) {
            return Err(IamError::EntityAlreadyExists(format!("Group with name {name} already exists.")));
        }
        let group = Group {
            account: account.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            id: unique_id("AGPA"),
            created: now(),
            inline: BTreeMap::new(),
            attached: Vec::new(),
        };
        self.commit(&mut state, vec![Write::PutGroup(group.clone())])?;
        Ok(group)
    }

    /// A group and the names of its members.
    pub fn get_group(&self, account: &str, name: &str) -> Result<(Group, Vec<String>), IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        let group = group_of(&state, account, name)?.record.clone();
        let mut members: Vec<String> =
            members(&state, account, &group.name).map(|u| u.name.to_string()).collect();
        members.sort_by_cached_key(|name| name.to_ascii_lowercase());
        Ok((group, members))
    }

    pub fn list_groups(
        &self,
        account: &str,
        path_prefix: &str,
        page: Paging<'_>,
    ) -> Result<Listing<Group>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        let entries = state
            .groups
            .range(key(account, page.from)..)
            .take_while(|((owner, _), _)| owner == account)
            .map(|((_, name), group)| Ok::<_, std::convert::Infallible>((name.clone(), &group.record)));
        let Ok(listing) = page.take(entries, |g| g.path.starts_with(path_prefix));
        Ok(Listing { items: listing.items.into_iter().cloned().collect(), next: listing.next })
    }

    pub fn list_groups_for_user(&self, account: &str, user: &str) -> Result<Vec<Group>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        let user = user_of(&state, account, user)?;
        Ok(user
            .links
            .groups()
            .iter()
            .filter_map(|g| state.groups.get(&key(account, g)))
            .map(|g| g.record.clone())
            .collect())
    }

    pub fn delete_group(&self, account: &str, name: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let group = &group_of(&state, account, name)?.record;
        if members(&state, account, &group.name).next().is_some() {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must remove users from group first.".into(),
            ));
        }
        if !group.inline.is_empty() || !group.attached.is_empty() {
            return Err(IamError::DeleteConflict("Cannot delete entity, must delete policies first.".into()));
        }
        let name = group.name.clone();
        self.commit(&mut state, vec![Write::DeleteGroup { account: account.to_string(), name }])
    }

    pub fn add_user_to_group(&self, account: &str, group: &str, user: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let group_name = group_of(&state, account, group)?.record.name.to_ascii_lowercase();
        let mut record = self.user_record(&state, account, user)?;
        if record.groups.insert(group_name) {
            if record.groups.len() > validate::MAX_GROUPS_PER_USER {
                return Err(IamError::LimitExceeded(format!(
                    "Cannot exceed quota for GroupsPerUser: {}",
                    validate::MAX_GROUPS_PER_USER
                )));
            }
            self.commit(&mut state, vec![Write::PutUser(record)])?;
        }
        Ok(())
    }

    pub fn remove_user_from_group(&self, account: &str, group: &str, user: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        group_of(&state, account, group)?;
        let mut record = self.user_record(&state, account, user)?;
        if !record.groups.remove(&group.to_ascii_lowercase()) {
            return Err(IamError::NoSuchEntity(format!("User {user} is not in group {group}.")));
        }
        self.commit(&mut state, vec![Write::PutUser(record)])
    }

    // Roles.

    #[allow(clippy::too_many_arguments)]
    pub fn create_role(
        &self,
        account: &str,
        name: &str,
        path: &str,
        trust_policy: &str,
        max_session_duration: u32,
        description: &str,
        tags: &[Tag],
        boundary: &str,
    ) -> Result<Role, IamError> {
        let account = self.account(account)?;
        validate::name(NameKind::Role, name)?;
        let path = if path.is_empty() { "/" } else { path };
        validate::path(path)?;
        let max_session_duration = if max_session_duration == 0 { 3_600 } else { max_session_duration };
        validate::max_session_duration(max_session_duration)?;
        validate::description(description)?;
        check_trust_policy(trust_policy)?;
        let mut merged = Vec::new();
        validate::merge_tags(&mut merged, tags)?;
        let mut state = self.lock();
        if role_of(&state, account, name).is_ok() {
            return Err(IamError::EntityAlreadyExists(format!("Role with name {name} already exists.")));
        }
        if !boundary.is_empty() {
            Self::check_attachable(&state, boundary)?;
        }
        let role = Role {
            account: account.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            id: unique_id("AROA"),
            created: now(),
            trust_policy: trust_policy.to_string(),
            max_session_duration,
            description: description.to_string(),
            tags: merged,
            inline: BTreeMap::new(),
            attached: Vec::new(),
            boundary: (!boundary.is_empty()).then(|| boundary.to_string()),
        };
        self.commit(&mut state, vec![Write::PutRole(role.clone())])?;
        Ok(role)
    }

    pub fn get_role(&self, account: &str, name: &str) -> Result<Role, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        self.role_record(&state, account, name)
    }

    /// Roles are listed from the store, as [`Iam::list_users`] lists users.
    pub fn list_roles(
        &self,
        account: &str,
        path_prefix: &str,
        page: Paging<'_>,
    ) -> Result<Listing<Role>, IamError> {
        let account = self.account(account)?;
        page.take(self.store.roles(account, page.from), |r| r.path.starts_with(path_prefix))
            .map_err(unreadable)
    }

    pub fn delete_role(&self, account: &str, name: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let role = self.role_record(&state, account, name)?;
        if !role.inline.is_empty() || !role.attached.is_empty() {
            return Err(IamError::DeleteConflict("Cannot delete entity, must delete policies first.".into()));
        }
        self.commit(&mut state, vec![Write::DeleteRole { account: account.to_string(), name: role.name }])
    }

    pub fn update_assume_role_policy(
        &self,
        account: &str,
        name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        check_trust_policy(document)?;
        let mut state = self.lock();
        let mut role = self.role_record(&state, account, name)?;
        role.trust_policy = document.to_string();
        self.commit(&mut state, vec![Write::PutRole(role)])
    }

    // Inline policies, attachments, boundaries and tags of users, groups and roles.

    pub fn put_inline_policy(
        &self,
        kind: Entity,
        account: &str,
        name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        validate::name(NameKind::Policy, policy_name)?;
        policy::parse(policy_name, document, PolicyKind::Identity)
            .map_err(|e| IamError::MalformedPolicyDocument(e.to_string()))?;
        let mut state = self.lock();
        self.update(&mut state, kind, account, name, |inline, _| {
            inline.insert(policy_name.to_string(), document.to_string());
            let total: usize = inline.values().map(|d| validate::policy_size(d)).sum();
            let limit = kind.inline_limit();
            if total > limit {
                return Err(IamError::LimitExceeded(format!(
                    "Maximum policy size of {limit} bytes exceeded for {} {name}.",
                    kind.label()
                )));
            }
            Ok(())
        })
    }

    pub fn get_inline_policy(
        &self,
        kind: Entity,
        account: &str,
        name: &str,
        policy_name: &str,
    ) -> Result<String, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        let (mut inline, _) = self.entity_policies(&state, kind, account, name)?;
        inline.remove(policy_name).ok_or_else(|| {
            IamError::NoSuchEntity(format!(
                "The {} policy with name {policy_name} cannot be found.",
                kind.label()
            ))
        })
    }

    pub fn list_inline_policies(
        &self,
        kind: Entity,
        account: &str,
        name: &str,
    ) -> Result<Vec<String>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        Ok(self.entity_policies(&state, kind, account, name)?.0.into_keys().collect())
    }

    pub fn delete_inline_policy(
        &self,
        kind: Entity,
        account: &str,
        name: &str,
        policy_name: &str,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        self.update(&mut state, kind, account, name, |inline, _| {
            inline.remove(policy_name).map(|_| ()).ok_or_else(|| {
                IamError::NoSuchEntity(format!(
                    "The {} policy with name {policy_name} cannot be found.",
                    kind.label()
                ))
            })
        })
    }

    pub fn attach_policy(&self, kind: Entity, account: &str, name: &str, arn: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        Self::check_attachable(&state, arn)?;
        self.update(&mut state, kind, account, name, |_, attached| {
            if !attached.iter().any(|a| a == arn) {
                attached.push(arn.to_string());
            }
            if attached.len() > validate::MAX_ATTACHED_POLICIES {
                return Err(IamError::LimitExceeded(format!(
                    "Cannot exceed quota for PoliciesPer{}: {}",
                    kind.quota_name(),
                    validate::MAX_ATTACHED_POLICIES
                )));
            }
            Ok(())
        })
    }

    pub fn detach_policy(&self, kind: Entity, account: &str, name: &str, arn: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        self.update(&mut state, kind, account, name, |_, attached| {
            let before = attached.len();
            attached.retain(|a| a != arn);
            if attached.len() == before {
                return Err(IamError::NoSuchEntity(format!("Policy {arn} was not found.")));
            }
            Ok(())
        })
    }

    pub fn list_attached_policies(
        &self,
        kind: Entity,
        account: &str,
        name: &str,
    ) -> Result<Vec<String>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        Ok(self.entity_policies(&state, kind, account, name)?.1)
    }

    /// Sets (`Some`) or removes (`None`) the permissions boundary of a user or role.
    pub fn set_boundary(
        &self,
        kind: Entity,
        account: &str,
        name: &str,
        arn: Option<&str>,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        if let Some(arn) = arn {
            Self::check_attachable(&state, arn)?;
        }
        self.update_principal(
            &mut state,
            kind,
            account,
            name,
            "have no permissions boundary",
            |_, boundary| {
                *boundary = arn.map(str::to_string);
                Ok(())
            },
        )
    }

    pub fn tag(&self, kind: Entity, account: &str, name: &str, tags: &[Tag]) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        self.update_principal(&mut state, kind, account, name, "cannot be tagged", |existing, _| {
            validate::merge_tags(existing, tags)
        })
    }

    pub fn untag(&self, kind: Entity, account: &str, name: &str, keys: &[String]) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        self.update_principal(&mut state, kind, account, name, "cannot be tagged", |tags, _| {
            tags.retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
            Ok(())
        })
    }

    pub fn list_tags(&self, kind: Entity, account: &str, name: &str) -> Result<Vec<Tag>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        match kind {
            Entity::User => Ok(user_of(&state, account, name)?.tags.to_vec()),
            Entity::Role => Ok(role_of(&state, account, name)?.tags.to_vec()),
            Entity::Group => Err(IamError::InvalidInput("groups cannot be tagged".into())),
        }
    }

    pub fn tag_resource(&self, arn: &str, tags: &[Tag]) -> Result<(), IamError> {
        check_resource_arn(arn)?;
        let mut state = self.lock();
        let mut existing = state.resource_tags.get(arn).cloned().unwrap_or_default();
        validate::merge_tags(&mut existing, tags)?;
        self.commit(
            &mut state,
            vec![Write::PutResourceTags(ResourceTags { arn: arn.to_string(), tags: existing })],
        )
    }

    pub fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), IamError> {
        check_resource_arn(arn)?;
        let mut state = self.lock();
        let mut existing = state.resource_tags.get(arn).cloned().unwrap_or_default();
        existing.retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
        let write = if existing.is_empty() {
            Write::DeleteResourceTags { arn: arn.to_string() }
        } else {
            Write::PutResourceTags(ResourceTags { arn: arn.to_string(), tags: existing })
        };
        self.commit(&mut state, vec![write])
    }

    pub fn list_resource_tags(&self, arn: &str) -> Result<Vec<Tag>, IamError> {
        check_resource_arn(arn)?;
        Ok(self.lock().resource_tags.get(arn).cloned().unwrap_or_default())
    }

    /// Everything stored, as one document.
    pub fn export(&self) -> Result<StateDocument, IamError> {
        let state = self.lock();
        Ok(StateDocument {
            schema_version: SCHEMA_VERSION,
            users: self
                .store
                .users("", "")
                .map(|entry| entry.map(|(_, user)| user))
                .collect::<Result<_, _>>()
                .map_err(unreadable)?,
            groups: state.groups.values().map(|g| g.record.clone()).collect(),
            roles: self
                .store
                .roles("", "")
                .map(|entry| entry.map(|(_, role)| role))
                .collect::<Result<_, _>>()
                .map_err(unreadable)?,
            resource_tags: state
                .resource_tags
                .iter()
                .map(|(arn, tags)| ResourceTags { arn: arn.clone(), tags: tags.clone() })
                .collect(),
            // The root's keys belong to this instance: they are neither exported nor imported.
            access_keys: state
                .access_keys
                .values()
                .filter(|(key, _)| key.user.is_some())
                .map(|(key, _)| key.clone())
                .collect(),
            mfa_devices: state.mfa_devices.values().cloned().collect(),
            login_profiles: state.login_profiles.values().cloned().collect(),
            password_policies: state.password_policies.values().cloned().collect(),
            managed_policies: state.managed_policies.values().map(|p| p.record.clone()).collect(),
        })
    }

    /// Replaces everything stored with `document`, after validating all of it.
    pub fn import(&self, document: StateDocument) -> Result<Counts, IamError> {
        if document.schema_version > SCHEMA_VERSION {
            return Err(IamError::InvalidInput(format!(
                "the document has schema version {}, newer than the {SCHEMA_VERSION} this iamd supports",
                document.schema_version
            )));
        }
        let mut state = self.lock();
        let mut fresh = State::new(state.keyring.clone());
        let mut document = document;
        for user in &mut document.users {
            user.groups = user.groups.iter().map(|g| g.to_ascii_lowercase()).collect();
        }
        load_document(&mut fresh, document.clone())?;
        let root_keys: Vec<AccessKey> = state
            .access_keys
            .values()
            .filter(|(key, _)| key.user.is_none())
            .map(|(key, _)| key.clone())
            .collect();
        for key in &root_keys {
            let entry = keys::entry(&fresh, key);
            fresh.access_keys.insert(key.id.clone(), (key.clone(), entry));
        }
        let writes: Vec<Write> = document
            .users
            .into_iter()
            .map(Write::PutUser)
            .chain(document.groups.into_iter().map(Write::PutGroup))
            .chain(document.roles.into_iter().map(Write::PutRole))
            .chain(document.resource_tags.into_iter().map(Write::PutResourceTags))
            .chain(document.access_keys.into_iter().chain(root_keys).map(Write::PutAccessKey))
            .chain(document.mfa_devices.into_iter().map(Write::PutMfaDevice))
            .chain(document.login_profiles.into_iter().map(Write::PutLoginProfile))
            .chain(document.password_policies.into_iter().map(Write::PutPasswordPolicy))
            .chain(document.managed_policies.into_iter().map(Write::PutManagedPolicy))
            .collect();
        let stored = self.store.replace_all(&writes);
        if let Err(e) = stored {
            return Err(match e {
                // The batch is in the store: memory must match what a restart will read.
                StoreError::NotFlushed(_) => {
                    fresh.bundle = state.bundle.take();
                    fresh.generation = state.generation;
                    *state = fresh;
                    rebuild(&mut state, &self.snapshot);
                    storage(e)
                }
                e => not_changed(e),
            });
        }
        let (users, roles) = principal_counts(&fresh.directory);
        let counts = Counts {
            users,
            groups: fresh.groups.len(),
            roles,
            resource_tags: fresh.resource_tags.len(),
            access_keys: fresh.access_keys.len(),
        };
        fresh.bundle = state.bundle.take();
        fresh.generation = state.generation;
        *state = fresh;
        rebuild(&mut state, &self.snapshot);
        Ok(counts)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }

    /// A user's whole record. Memory holds only what decisions need; the rest is read from the
    /// store, with the state locked so that no write comes between.
    fn user_record(&self, state: &State, account: &str, name: &str) -> Result<User, IamError> {
        let name = &user_of(state, account, name)?.name;
        self.store.user(account, name).map_err(unreadable)?.ok_or_else(|| missing_record("user", name))
    }

    /// A role's whole record, as [`Iam::user_record`].
    fn role_record(&self, state: &State, account: &str, name: &str) -> Result<Role, IamError> {
        let name = &role_of(state, account, name)?.name;
        self.store.role(account, name).map_err(unreadable)?.ok_or_else(|| missing_record("role", name))
    }

    /// The inline policy documents and attached policy ARNs of an entity.
    fn entity_policies(
        &self,
        state: &State,
        kind: Entity,
        account: &str,
        name: &str,
    ) -> Result<(BTreeMap<String, String>, Vec<String>), IamError> {
        Ok(match kind {
            Entity::User => {
                let u = self.user_record(state, account, name)?;
                (u.inline, u.attached)
            }
            Entity::Group => {
                let g = &group_of(state, account, name)?.record;
                (g.inline.clone(), g.attached.clone())
            }
            Entity::Role => {
                let r = self.role_record(state, account, name)?;
                (r.inline, r.attached)
            }
        })
    }

    /// Changes the tags or the permissions boundary of a user or role through `change`; groups
    /// have neither (`for_groups` completes the error: "groups cannot be tagged").
    fn update_principal(
        &self,
        state: &mut State,
        kind: Entity,
        account: &str,
        name: &str,
        for_groups: &str,
        change: impl FnOnce(&mut Vec<Tag>, &mut Option<String>) -> Result<(), IamError>,
    ) -> Result<(), IamError> {
        let write = match kind {
            Entity::User => {
                let mut user = self.user_record(state, account, name)?;
                change(&mut user.tags, &mut user.boundary)?;
                Write::PutUser(user)
            }
            Entity::Role => {
                let mut role = self.role_record(state, account, name)?;
                change(&mut role.tags, &mut role.boundary)?;
                Write::PutRole(role)
            }
            Entity::Group => return Err(IamError::InvalidInput(format!("groups {for_groups}"))),
        };
        self.commit(state, vec![write])
    }

    /// Changes the inline policies or attachments of an entity through `change`.
    fn update(
        &self,
        state: &mut State,
        kind: Entity,
        account: &str,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>, &mut Vec<String>) -> Result<(), IamError>,
    ) -> Result<(), IamError> {
        let write = match kind {
            Entity::User => {
                let mut user = self.user_record(state, account, name)?;
                change(&mut user.inline, &mut user.attached)?;
                Write::PutUser(user)
            }
            Entity::Group => {
                let mut group = group_of(state, account, name)?.record.clone();
                change(&mut group.inline, &mut group.attached)?;
                Write::PutGroup(group)
            }
            Entity::Role => {
                let mut role = self.role_record(state, account, name)?;
                change(&mut role.inline, &mut role.attached)?;
                Write::PutRole(role)
            }
        };
        self.commit(state, vec![write])
    }
}

/// Which kind of entity an inline policy, attachment or tag call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    User,
    Group,
    Role,
}

impl Entity {
    pub fn label(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Group => "group",
            Entity::Role => "role",
        }
    }

    fn quota_name(self) -> &'static str {
        match self {
            Entity::User => "User",
            Entity::Group => "Group",
            Entity::Role => "Role",
        }
    }

    fn inline_limit(self) -> usize {
        match self {
            Entity::User => validate::USER_INLINE_LIMIT,
            Entity::Group => validate::GROUP_INLINE_LIMIT,
            Entity::Role => validate::ROLE_INLINE_LIMIT,
        }
    }
}

fn check_trust_policy(document: &str) -> Result<(), IamError> {
    policy::parse("AssumeRolePolicyDocument", document, PolicyKind::Trust)
        .map(|_| ())
        .map_err(|e| IamError::MalformedPolicyDocument(e.to_string()))
}

fn check_resource_arn(arn: &str) -> Result<(), IamError> {
    if crate::policy::arn::Arn::parse(arn).is_none() || arn.contains(['*', '?']) {
        return Err(IamError::InvalidInput(format!(
            "`{arn}` is not a resource ARN: expected arn:partition:service:region:account:resource without wildcards"
        )));
    }
    Ok(())
}

fn unreadable(e: StoreError) -> IamError {
    IamError::ServiceFailure(format!("the record could not be read from the store: {e}"))
}

fn missing_record(kind: &str, name: &str) -> IamError {
    IamError::ServiceFailure(format!(
        "the {kind} {name} is in memory but not in the store; restart iamd to reload its state"
    ))
}

/// How many users and roles the directory holds.
fn principal_counts(directory: &Directory) -> (usize, usize) {
    directory.principals.values().fold((0, 0), |(users, roles), entry| match entry.who.kind {
        EntityKind::User => (users + 1, roles),
        EntityKind::Role => (users, roles + 1),
    })
}

fn stored_principal<'s>(state: &'s State, kind: EntityKind, account: &str, name: &str) -> Option<&'s Who> {
    state.directory.principals.get(lookup_key(kind, account, name).as_str()).map(|entry| entry.who.as_ref())
}

fn user_of<'s>(state: &'s State, account: &str, name: &str) -> Result<&'s Who, IamError> {
    stored_principal(state, EntityKind::User, account, name)
        .ok_or_else(|| IamError::NoSuchEntity(format!("The user with name {name} cannot be found.")))
}

fn group_of<'s>(state: &'s State, account: &str, name: &str) -> Result<&'s CompiledGroup, IamError> {
    state
        .groups
        .get(&key(account, name))
        .ok_or_else(|| IamError::NoSuchEntity(format!("The group with name {name} cannot be found.")))
}

fn role_of<'s>(state: &'s State, account: &str, name: &str) -> Result<&'s Who, IamError> {
    stored_principal(state, EntityKind::Role, account, name)
        .ok_or_else(|| IamError::NoSuchEntity(format!("The role with name {name} cannot be found.")))
}

/// The users of `account` in `group`.
fn members<'s>(state: &'s State, account: &'s str, group: &'s str) -> impl Iterator<Item = &'s Who> + 's {
    state
        .directory
        .principals
        .values()
        .map(|entry| entry.who.as_ref())
        .filter(move |who| is_member(who, account, group))
}

/// Adds one record from the store to `state`, as the store holds it: an entity whose policies
/// no longer compile (say, after a rule of this version tightened) is kept, and its requests are
/// denied with the reason, rather than refusing to start.
fn load_stored(state: &mut State, record: Stored) {
    match record {
        Stored::User(user) => {
            let who = user_who(&mut state.strings, user);
            put_principal(state, Arc::new(who));
        }
        Stored::Group(group) => {
            state.groups.insert(key(&group.account, &group.name), compiled_group(group));
        }
        Stored::Role(role) => {
            let who = role_who(&mut state.strings, role);
            put_principal(state, Arc::new(who));
        }
        Stored::ResourceTags(tags) => {
            state.resource_tags.insert(tags.arn, tags.tags);
        }
        Stored::AccessKey(key) => {
            let entry = keys::entry(state, &key);
            if entry.secret.is_none() {
                tracing::warn!(
                    access_key_id = %key.id,
                    "the secret of this access key cannot be opened with the configured master keys; \
                     it authenticates nothing until the master key that sealed it is configured again"
                );
            }
            state.access_keys.insert(key.id.clone(), (key, entry));
        }
        Stored::MfaDevice(device) => {
            state.mfa_devices.insert(device.serial.clone(), device);
        }
        Stored::LoginProfile(profile) => {
            state.login_profiles.insert(key(&profile.account, &profile.user), profile);
        }
        Stored::PasswordPolicy(policy) => {
            state.password_policies.insert(policy.account.clone(), policy);
        }
        Stored::ManagedPolicy(policy) => {
            state.managed_policies.insert(policy.arn(), StoredPolicy::new(policy));
        }
    }
}

/// Fills `state` from an imported document, refusing anything the admin API would refuse.
fn load_document(state: &mut State, document: StateDocument) -> Result<(), IamError> {
    let accounts = |account: &str| {
        if crate::eval::principal::is_account_id(account) {
            Ok(())
        } else {
            Err(IamError::InvalidInput(format!("account `{account}` is not a 12-digit account id")))
        }
    };
    let groups: BTreeSet<Key> = document.groups.iter().map(|g| key(&g.account, &g.name)).collect();
    for user in &document.users {
        if let Some(missing) = user.groups.iter().find(|g| !groups.contains(&key(&user.account, g))) {
            return Err(IamError::NoSuchEntity(format!(
                "user {} is a member of group {missing}, which the document does not define",
                user.name
            )));
        }
    }
    for user in document.users {
        accounts(&user.account)?;
        validate::name(NameKind::User, &user.name)?;
        validate::path(&user.path)?;
        let who = user_who(&mut state.strings, user);
        valid(who.links.problem())?;
        put_principal(state, Arc::new(who));
    }
    for group in document.groups {
        accounts(&group.account)?;
        validate::name(NameKind::Group, &group.name)?;
        validate::path(&group.path)?;
        let group = compiled_group(group);
        valid(group.problem.as_deref())?;
        state.groups.insert(key(&group.record.account, &group.record.name), group);
    }
    for role in document.roles {
        accounts(&role.account)?;
        validate::name(NameKind::Role, &role.name)?;
        validate::path(&role.path)?;
        check_trust_policy(&role.trust_policy)?;
        let who = role_who(&mut state.strings, role);
        valid(who.links.problem())?;
        put_principal(state, Arc::new(who));
    }
    for tags in document.resource_tags {
        state.resource_tags.insert(tags.arn, tags.tags);
    }
    for key in document.access_keys {
        keys::check_imported(state, &key)?;
        let entry = keys::entry(state, &key);
        state.access_keys.insert(key.id.clone(), (key, entry));
    }
    for device in document.mfa_devices {
        if let Some(user) = &device.user
            && user_of(state, &device.account, user).is_err()
        {
            return Err(IamError::NoSuchEntity(format!(
                "MFA device {} is enabled for user {user}, which the document does not define",
                device.serial
            )));
        }
        state.mfa_devices.insert(device.serial.clone(), device);
    }
    for profile in document.login_profiles {
        if user_of(state, &profile.account, &profile.user).is_err() {
            return Err(IamError::NoSuchEntity(format!(
                "the login profile of user {} has no user in the document",
                profile.user
            )));
        }
        state.login_profiles.insert(key(&profile.account, &profile.user), profile);
    }
    for policy in document.password_policies {
        accounts(&policy.account)?;
        state.password_policies.insert(policy.account.clone(), policy);
    }
    for policy in document.managed_policies {
        accounts(&policy.account)?;
        validate::name(NameKind::Policy, &policy.name)?;
        validate::path(&policy.path)?;
        let stored = StoredPolicy::new(policy);
        if stored.compiled.is_none() {
            return Err(IamError::MalformedPolicyDocument(format!(
                "the default version of managed policy {} does not compile",
                stored.record.arn()
            )));
        }
        state.managed_policies.insert(stored.record.arn(), stored);
    }
    Ok(())
}

/// Applies a stored write to the in-memory state and its directory.
fn apply(state: &mut State, write: Write) {
    match write {
        Write::PutUser(user) => {
            let who = user_who(&mut state.strings, user);
            put_principal(state, Arc::new(who));
        }
        Write::DeleteUser { account, name } => {
            state.directory.principals.remove(lookup_key(EntityKind::User, &account, &name).as_str());
        }
        Write::PutGroup(group) => {
            let (account, name) = (group.account.clone(), group.name.clone());
            state.groups.insert(key(&account, &name), compiled_group(group));
            let affected: Vec<Arc<Who>> = state
                .directory
                .principals
                .values()
                .filter(|e| is_member(&e.who, &account, &name))
                .map(|e| e.who.clone())
                .collect();
            for who in affected {
                put_principal(state, who);
            }
        }
        Write::DeleteGroup { account, name } => {
            state.groups.remove(&key(&account, &name));
        }
        Write::PutRole(role) => {
            let who = role_who(&mut state.strings, role);
            put_principal(state, Arc::new(who));
        }
        Write::DeleteRole { account, name } => {
            state.directory.principals.remove(lookup_key(EntityKind::Role, &account, &name).as_str());
        }
        Write::PutResourceTags(tags) => {
            state.directory.resource_tags.insert(tags.arn.as_str().into(), tags.tags.as_slice().into());
            state.resource_tags.insert(tags.arn, tags.tags);
        }
        Write::DeleteResourceTags { arn } => {
            state.directory.resource_tags.remove(arn.as_str());
            state.resource_tags.remove(&arn);
        }
        Write::PutAccessKey(key) => {
            let entry = keys::entry(state, &key);
            state.directory.access_keys.insert(key.id.as_str().into(), entry.clone());
            state.access_keys.insert(key.id.clone(), (key, entry));
        }
        Write::DeleteAccessKey { id } => {
            state.directory.access_keys.remove(id.as_str());
            state.access_keys.remove(&id);
        }
        Write::PutMfaDevice(device) => {
            state.mfa_devices.insert(device.serial.clone(), device);
        }
        Write::DeleteMfaDevice { serial } => {
            state.mfa_devices.remove(&serial);
        }
        Write::PutLoginProfile(profile) => {
            state.login_profiles.insert(key(&profile.account, &profile.user), profile);
        }
        Write::DeleteLoginProfile { account, user } => {
            state.login_profiles.remove(&key(&account, &user));
        }
        Write::PutPasswordPolicy(policy) => {
            state.password_policies.insert(policy.account.clone(), policy);
        }
        Write::DeletePasswordPolicy { account } => {
            state.password_policies.remove(&account);
        }
        Write::PutManagedPolicy(policy) => {
            let arn = policy.arn();
            let stored = StoredPolicy::new(policy);
            match &stored.compiled {
                Some(compiled) => {
                    state.directory.managed_policies.insert(arn.as_str().into(), compiled.clone())
                }
                None => state.directory.managed_policies.remove(arn.as_str()),
            };
            state.managed_policies.insert(arn.clone(), stored);
            resolve_users_of_policy(state, &arn);
        }
        Write::DeleteManagedPolicy { account, name } => {
            let arn = state
                .managed_policies
                .values()
                .find(|p| p.record.account == account && p.record.name.eq_ignore_ascii_case(&name))
                .map(|p| p.record.arn());
            if let Some(arn) = arn {
                state.managed_policies.remove(&arn);
                state.directory.managed_policies.remove(arn.as_str());
                resolve_users_of_policy(state, &arn);
            }
        }
    }
}

/// Resolves again the users and roles that attach `arn` (themselves or through a group) or
/// have it as their boundary, after the policy changed.
fn resolve_users_of_policy(state: &mut State, arn: &str) {
    let affected: Vec<Arc<Who>> = state
        .directory
        .principals
        .values()
        .filter(|entry| {
            let links = &entry.who.links;
            links.attached.iter().any(|a| **a == *arn)
                || links.boundary() == Some(arn)
                || links.groups().iter().any(|g| {
                    state
                        .groups
                        .get(&key(&entry.who.account, g))
                        .is_some_and(|g| g.record.attached.iter().any(|a| a == arn))
                })
        })
        .map(|entry| entry.who.clone())
        .collect();
    for who in affected {
        put_principal(state, who);
    }
}

fn is_member(who: &Who, account: &str, group: &str) -> bool {
    who.kind == EntityKind::User
        && *who.account == *account
        && who.links.groups().iter().any(|g| g.eq_ignore_ascii_case(group))
}

/// Resolves a user or role (changed, or using a policy or group that changed) and puts it in
/// the directory.
fn put_principal(state: &mut State, who: Arc<Who>) {
    let key = principal_key(who.kind, &who.account, &who.name);
    let entry = resolve(state, who);
    state.directory.principals.insert(key, entry);
}

/// Resolves every principal against the current bundle into a new directory and publishes it.
fn rebuild(state: &mut State, snapshot: &SharedSnapshot) {
    state.strings.forget_unused();
    let mut directory = Directory::default();
    for (key, entry) in &state.directory.principals {
        directory.principals.insert(key.clone(), resolve(state, entry.who.clone()));
    }
    for (arn, tags) in &state.resource_tags {
        directory.resource_tags.insert(arn.as_str().into(), tags.as_slice().into());
    }
    for (id, (_, entry)) in &state.access_keys {
        directory.access_keys.insert(id.as_str().into(), entry.clone());
    }
    for (arn, stored) in &state.managed_policies {
        if let Some(compiled) = &stored.compiled {
            directory.managed_policies.insert(arn.as_str().into(), compiled.clone());
        }
    }
    let old_directory = std::mem::replace(&mut state.directory, directory);
    let previous = publish(state, snapshot);
    // Freeing a whole directory (and the previous bundle) takes a while at large sizes: do it
    // off the publishing path, once readers of the old snapshot are done with it.
    let reclaim = move || {
        drop((old_directory, previous));
        crate::memory::release_freed();
    };
    if std::thread::Builder::new().name("iamd-reclaim".into()).spawn(reclaim).is_err() {
        tracing::debug!("cannot start a thread to free the previous snapshot; it was freed in place");
    }
}

/// Publishes the state as a new snapshot and returns the one it replaces.
fn publish(state: &mut State, snapshot: &SharedSnapshot) -> Option<Arc<Snapshot>> {
    state.generation += 1;
    let bundle = state.bundle.as_ref()?;
    snapshot.swap(Some(Arc::new(Snapshot::new(bundle.clone(), state.directory.clone(), state.generation))))
}

/// Looks up attached managed policies, noting any that cannot be found.
fn attach(
    state: &State,
    arns: &[impl AsRef<str>],
    policies: &mut Vec<Arc<Policy>>,
    missing: &mut Vec<String>,
) {
    for arn in arns {
        match policies::managed_policy(state, arn.as_ref()) {
            Some(policy) => policies.push(policy.clone()),
            None => missing.push(arn.as_ref().to_string()),
        }
    }
}

fn unresolved(missing: Vec<String>) -> Option<Box<str>> {
    (!missing.is_empty()).then(|| {
        format!(
            "attached policies missing from the bundle and the store: {}; requests are denied until they \
             are restored",
            missing.join(", ")
        )
        .into()
    })
}

/// What a decision needs of a user or role: its policies (its groups' included) looked up in
/// the bundle and the store.
fn resolve(state: &State, who: Arc<Who>) -> Arc<PrincipalEntry> {
    if state.bundle.is_none() {
        // Only before the first bundle: nothing is published until it comes, and
        // then every principal is resolved again.
        let unresolved = Some("no policy bundle is loaded".into());
        return Arc::new(PrincipalEntry { who, identity: Box::default(), boundary: None, unresolved });
    }
    let links = &who.links;
    let mut identity = links.inline().to_vec();
    let mut missing: Vec<String> = links.problem().iter().map(|p| p.to_string()).collect();
    attach(state, &links.attached, &mut identity, &mut missing);
    for group in links.groups() {
        if let Some(group) = state.groups.get(&key(&who.account, group)) {
            identity.extend(group.inline.iter().cloned());
            missing.extend(group.problem.iter().map(|p| p.to_string()));
            attach(state, &group.record.attached, &mut identity, &mut missing);
        }
    }
    let boundary = links.boundary().and_then(|arn| {
        let found = policies::managed_policy(state, arn).cloned();
        if found.is_none() {
            missing.push(arn.to_string());
        }
        found
    });
    if who.kind == EntityKind::Role && links.trust().is_none() {
        missing.push("its trust policy, which does not compile".into());
    }
    let unresolved = unresolved(missing);
    Arc::new(PrincipalEntry { who, identity: identity.into(), boundary, unresolved })
}
