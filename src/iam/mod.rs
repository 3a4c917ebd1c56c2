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
use crate::policy::{self, Policy, PolicyKind};
use crate::snapshot::{
    AccessKeyEntry, Directory, EntityKind, PrincipalEntry, SharedSnapshot, Snapshot, Who, principal_key,
};
use crate::store::{SCHEMA_VERSION, Store, StoreError, Stored, Write};

type Key = (String, String);

fn key(account: &str, name: &str) -> Key {
    (account.to_string(), name.to_ascii_lowercase())
}

/// A stored entity with its inline policies compiled and, for users and roles, who it is.
#[derive(Clone, Debug)]
struct Compiled<T> {
    /// Boxed: the maps of entities keep their values inline in B-tree nodes that are about half
    /// full, and a record is hundreds of bytes, while its box is 8.
    record: Box<T>,
    inline: Vec<Arc<Policy>>,
    who: Option<Arc<Who>>,
    /// A role's trust policy; `None` for users and groups, and for a role whose stored trust
    /// policy does not compile (the role is then unusable rather than open).
    trust: Option<Arc<Policy>>,
    /// Why an inline policy did not compile: requests of the entity (and of a group's members)
    /// are then denied, since the policy could have been a `Deny`.
    problem: Option<String>,
}

impl<T> Compiled<T> {
    /// Refuses an entity whose inline policies do not compile (on load and import).
    fn valid(self) -> Result<Self, IamError> {
        match &self.problem {
            Some(problem) => Err(IamError::MalformedPolicyDocument(problem.clone())),
            None => Ok(self),
        }
    }
}

/// Compiles inline policies, turning a failure into a problem rather than dropping them.
fn compile_or_note(owner: &str, inline: &BTreeMap<String, String>) -> (Vec<Arc<Policy>>, Option<String>) {
    match compile_inline(owner, inline) {
        Ok(policies) => (policies, None),
        Err(e) => (Vec::new(), Some(format!("an inline policy of {owner} does not compile: {e}"))),
    }
}

fn compiled_user(user: User) -> Compiled<User> {
    let (inline, problem) = compile_or_note(&user.arn(), &user.inline);
    let who = Who {
        kind: EntityKind::User,
        arn: user.arn(),
        account: user.account.clone(),
        name: user.name.clone(),
        id: user.id.clone(),
        tags: user.tags.clone(),
    };
    Compiled { record: Box::new(user), inline, who: Some(Arc::new(who)), trust: None, problem }
}

fn compiled_group(group: Group) -> Compiled<Group> {
    let (inline, problem) = compile_or_note(&group.arn(), &group.inline);
    Compiled { record: Box::new(group), inline, who: None, trust: None, problem }
}

fn compiled_role(role: Role) -> Compiled<Role> {
    let (inline, problem) = compile_or_note(&role.arn(), &role.inline);
    let who = Who {
        kind: EntityKind::Role,
        arn: role.arn(),
        account: role.account.clone(),
        name: role.name.clone(),
        id: role.id.clone(),
        tags: role.tags.clone(),
    };
    let trust = policy::parse(&format!("{}/trust-policy", role.arn()), &role.trust_policy, PolicyKind::Trust)
        .ok()
        .map(|parsed| Arc::new(parsed.policy));
    Compiled { record: Box::new(role), inline, who: Some(Arc::new(who)), trust, problem }
}

struct State {
    users: BTreeMap<Key, Compiled<User>>,
    groups: BTreeMap<Key, Compiled<Group>>,
    roles: BTreeMap<Key, Compiled<Role>>,
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
}

impl State {
    fn new(keyring: Arc<KeyRing>) -> State {
        State {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            roles: BTreeMap::new(),
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
        let iam = Iam {
            store,
            state: Mutex::new(State::new(keyring)),
            snapshot,
            default_account,
            mfa_attempts: mfa::Attempts::default(),
            password_attempts: mfa::Attempts::default(),
        };
        {
            let mut state = iam.lock();
            iam.store.for_each(|record| load_stored(&mut state, record))?;
        }
        Ok(iam)
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
            Entity::User => user_of(&state, account, name).map(|u| u.record.arn()),
            Entity::Group => group_of(&state, account, name).map(|g| g.record.arn()),
            Entity::Role => role_of(&state, account, name).map(|r| r.record.arn()),
        };
        stored.unwrap_or_else(|_| format!("arn:aws:iam::{account}:{}/{name}", kind.label()))
    }

    pub fn counts(&self) -> Counts {
        let state = self.lock();
        Counts {
            users: state.users.len(),
            groups: state.groups.len(),
            roles: state.roles.len(),
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
        if state.users.contains_key(&key(account, name)) {
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
        Ok(user_of(&state, account, name)?.record.as_ref().clone())
    }

    pub fn list_users(&self, account: &str, path_prefix: &str) -> Result<Vec<User>, IamError> {
        let account = self.account(account)?;
        Ok(listed(&self.lock().users, path_prefix, |u| (u.account == account, &u.path)))
    }

    /// Deletes a user that has no inline policies, attachments, boundary or group memberships,
    /// as AWS requires.
    pub fn delete_user(&self, account: &str, name: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let user = &user_of(&state, account, name)?.record;
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
        let name = user.name.clone();
        self.commit(&mut state, vec![Write::DeleteUser { account: account.to_string(), name }])
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
        let group = group_of(&state, account, name)?.record.as_ref().clone();
        let members = members(&state, account, &group.name).map(|u| u.record.name.clone()).collect();
        Ok((group, members))
    }

    pub fn list_groups(&self, account: &str, path_prefix: &str) -> Result<Vec<Group>, IamError> {
        let account = self.account(account)?;
        Ok(listed(&self.lock().groups, path_prefix, |g| (g.account == account, &g.path)))
    }

    pub fn list_groups_for_user(&self, account: &str, user: &str) -> Result<Vec<Group>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        let user = user_of(&state, account, user)?;
        Ok(user
            .record
            .groups
            .iter()
            .filter_map(|g| state.groups.get(&key(account, g)))
            .map(|g| g.record.as_ref().clone())
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
        let mut record = user_of(&state, account, user)?.record.as_ref().clone();
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
        let mut record = user_of(&state, account, user)?.record.as_ref().clone();
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
        if state.roles.contains_key(&key(account, name)) {
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
        Ok(role_of(&state, account, name)?.record.as_ref().clone())
    }

    pub fn list_roles(&self, account: &str, path_prefix: &str) -> Result<Vec<Role>, IamError> {
        let account = self.account(account)?;
        Ok(listed(&self.lock().roles, path_prefix, |r| (r.account == account, &r.path)))
    }

    pub fn delete_role(&self, account: &str, name: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let role = &role_of(&state, account, name)?.record;
        if !role.inline.is_empty() || !role.attached.is_empty() {
            return Err(IamError::DeleteConflict("Cannot delete entity, must delete policies first.".into()));
        }
        let name = role.name.clone();
        self.commit(&mut state, vec![Write::DeleteRole { account: account.to_string(), name }])
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
        let mut role = role_of(&state, account, name)?.record.as_ref().clone();
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
        let (inline, _) = entity_policies(&state, kind, account, name)?;
        inline.get(policy_name).cloned().ok_or_else(|| {
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
        Ok(entity_policies(&state, kind, account, name)?.0.keys().cloned().collect())
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
        Ok(entity_policies(&state, kind, account, name)?.1.to_vec())
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
            Entity::User => Ok(user_of(&state, account, name)?.record.tags.clone()),
            Entity::Role => Ok(role_of(&state, account, name)?.record.tags.clone()),
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
    pub fn export(&self) -> StateDocument {
        let state = self.lock();
        StateDocument {
            schema_version: SCHEMA_VERSION,
            users: state.users.values().map(|u| u.record.as_ref().clone()).collect(),
            groups: state.groups.values().map(|g| g.record.as_ref().clone()).collect(),
            roles: state.roles.values().map(|r| r.record.as_ref().clone()).collect(),
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
        }
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
        let counts = Counts {
            users: fresh.users.len(),
            groups: fresh.groups.len(),
            roles: fresh.roles.len(),
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
                let mut user = user_of(state, account, name)?.record.as_ref().clone();
                change(&mut user.tags, &mut user.boundary)?;
                Write::PutUser(user)
            }
            Entity::Role => {
                let mut role = role_of(state, account, name)?.record.as_ref().clone();
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
                let mut user = user_of(state, account, name)?.record.as_ref().clone();
                change(&mut user.inline, &mut user.attached)?;
                Write::PutUser(user)
            }
            Entity::Group => {
                let mut group = group_of(state, account, name)?.record.as_ref().clone();
                change(&mut group.inline, &mut group.attached)?;
                Write::PutGroup(group)
            }
            Entity::Role => {
                let mut role = role_of(state, account, name)?.record.as_ref().clone();
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

/// The records of one account whose path starts with `path_prefix`, as `ListUsers` and its
/// siblings return them. `place` gives whether a record is in the account, and its path.
fn listed<T: Clone>(
    entities: &BTreeMap<Key, Compiled<T>>,
    path_prefix: &str,
    place: impl Fn(&T) -> (bool, &str),
) -> Vec<T> {
    entities
        .values()
        .filter(|e| {
            let (in_account, path) = place(&e.record);
            in_account && path.starts_with(path_prefix)
        })
        .map(|e| e.record.as_ref().clone())
        .collect()
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

fn user_of<'s>(state: &'s State, account: &str, name: &str) -> Result<&'s Compiled<User>, IamError> {
    state
        .users
        .get(&key(account, name))
        .ok_or_else(|| IamError::NoSuchEntity(format!("The user with name {name} cannot be found.")))
}

fn group_of<'s>(state: &'s State, account: &str, name: &str) -> Result<&'s Compiled<Group>, IamError> {
    state
        .groups
        .get(&key(account, name))
        .ok_or_else(|| IamError::NoSuchEntity(format!("The group with name {name} cannot be found.")))
}

fn role_of<'s>(state: &'s State, account: &str, name: &str) -> Result<&'s Compiled<Role>, IamError> {
    state
        .roles
        .get(&key(account, name))
        .ok_or_else(|| IamError::NoSuchEntity(format!("The role with name {name} cannot be found.")))
}

fn entity_policies<'s>(
    state: &'s State,
    kind: Entity,
    account: &str,
    name: &str,
) -> Result<(&'s BTreeMap<String, String>, &'s [String]), IamError> {
    Ok(match kind {
        Entity::User => {
            let u = &user_of(state, account, name)?.record;
            (&u.inline, &u.attached)
        }
        Entity::Group => {
            let g = &group_of(state, account, name)?.record;
            (&g.inline, &g.attached)
        }
        Entity::Role => {
            let r = &role_of(state, account, name)?.record;
            (&r.inline, &r.attached)
        }
    })
}

fn members<'s>(
    state: &'s State,
    account: &'s str,
    group: &str,
) -> impl Iterator<Item = &'s Compiled<User>> + 's {
    let group = group.to_ascii_lowercase();
    state.users.values().filter(move |u| u.record.account == account && u.record.groups.contains(&group))
}

/// Adds one record from the store to `state`, as the store holds it: an entity whose policies
/// no longer compile (say, after a rule of this version tightened) is kept, and its requests are
/// denied with the reason, rather than refusing to start.
fn load_stored(state: &mut State, record: Stored) {
    match record {
        Stored::User(user) => {
            state.users.insert(key(&user.account, &user.name), compiled_user(user));
        }
        Stored::Group(group) => {
            state.groups.insert(key(&group.account, &group.name), compiled_group(group));
        }
        Stored::Role(role) => {
            state.roles.insert(key(&role.account, &role.name), compiled_role(role));
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
        state.users.insert(key(&user.account, &user.name), compiled_user(user).valid()?);
    }
    for group in document.groups {
        accounts(&group.account)?;
        validate::name(NameKind::Group, &group.name)?;
        validate::path(&group.path)?;
        state.groups.insert(key(&group.account, &group.name), compiled_group(group).valid()?);
    }
    for role in document.roles {
        accounts(&role.account)?;
        validate::name(NameKind::Role, &role.name)?;
        validate::path(&role.path)?;
        check_trust_policy(&role.trust_policy)?;
        state.roles.insert(key(&role.account, &role.name), compiled_role(role).valid()?);
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
            && !state.users.contains_key(&key(&device.account, user))
        {
            return Err(IamError::NoSuchEntity(format!(
                "MFA device {} is enabled for user {user}, which the document does not define",
                device.serial
            )));
        }
        state.mfa_devices.insert(device.serial.clone(), device);
    }
    for profile in document.login_profiles {
        if !state.users.contains_key(&key(&profile.account, &profile.user)) {
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
            let k = key(&user.account, &user.name);
            let compiled = compiled_user(user);
            let entry = resolve_user(state, &compiled);
            state.directory.principals.insert(principal_key(EntityKind::User, &k.0, &k.1), entry);
            state.users.insert(k, compiled);
        }
        Write::DeleteUser { account, name } => {
            state.users.remove(&key(&account, &name));
            state.directory.principals.remove(&principal_key(EntityKind::User, &account, &name));
        }
        Write::PutGroup(group) => {
            let (account, name) = (group.account.clone(), group.name.clone());
            state.groups.insert(key(&account, &name), compiled_group(group));
            let affected: Vec<Key> =
                members(state, &account, &name).map(|u| key(&u.record.account, &u.record.name)).collect();
            for k in affected {
                if let Some(user) = state.users.get(&k) {
                    let entry = resolve_user(state, user);
                    state.directory.principals.insert(principal_key(EntityKind::User, &k.0, &k.1), entry);
                }
            }
        }
        Write::DeleteGroup { account, name } => {
            state.groups.remove(&key(&account, &name));
        }
        Write::PutRole(role) => {
            let k = key(&role.account, &role.name);
            let compiled = compiled_role(role);
            let entry = resolve_role(state, &compiled);
            state.directory.principals.insert(principal_key(EntityKind::Role, &k.0, &k.1), entry);
            state.roles.insert(k, compiled);
        }
        Write::DeleteRole { account, name } => {
            state.roles.remove(&key(&account, &name));
            state.directory.principals.remove(&principal_key(EntityKind::Role, &account, &name));
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
    let uses = |attached: &[String], boundary: &Option<String>| {
        attached.iter().any(|a| a == arn) || boundary.as_deref() == Some(arn)
    };
    let users: Vec<Key> = state
        .users
        .iter()
        .filter(|(_, u)| {
            uses(&u.record.attached, &u.record.boundary)
                || u.record.groups.iter().any(|g| {
                    state
                        .groups
                        .get(&key(&u.record.account, g))
                        .is_some_and(|g| uses(&g.record.attached, &None))
                })
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in users {
        if let Some(user) = state.users.get(&k) {
            let entry = resolve_user(state, user);
            state.directory.principals.insert(principal_key(EntityKind::User, &k.0, &k.1), entry);
        }
    }
    let roles: Vec<Key> = state
        .roles
        .iter()
        .filter(|(_, r)| uses(&r.record.attached, &r.record.boundary))
        .map(|(k, _)| k.clone())
        .collect();
    for k in roles {
        if let Some(role) = state.roles.get(&k) {
            let entry = resolve_role(state, role);
            state.directory.principals.insert(principal_key(EntityKind::Role, &k.0, &k.1), entry);
        }
    }
}

/// Resolves every principal against the current bundle into a new directory and publishes it.
fn rebuild(state: &mut State, snapshot: &SharedSnapshot) {
    let mut directory = Directory::default();
    for user in state.users.values() {
        let entry = resolve_user(state, user);
        directory
            .principals
            .insert(principal_key(EntityKind::User, &user.record.account, &user.record.name), entry);
    }
    for role in state.roles.values() {
        let entry = resolve_role(state, role);
        directory
            .principals
            .insert(principal_key(EntityKind::Role, &role.record.account, &role.record.name), entry);
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
    let reclaim = move || drop((old_directory, previous));
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
fn attach(state: &State, arns: &[String], policies: &mut Vec<Arc<Policy>>, missing: &mut Vec<String>) {
    for arn in arns {
        match policies::managed_policy(state, arn) {
            Some(policy) => policies.push(policy.clone()),
            None => missing.push(arn.clone()),
        }
    }
}

fn boundary(state: &State, arn: Option<&String>, missing: &mut Vec<String>) -> Option<Arc<Policy>> {
    let arn = arn?;
    let found = policies::managed_policy(state, arn).cloned();
    if found.is_none() {
        missing.push(arn.clone());
    }
    found
}

fn unresolved(missing: Vec<String>) -> Option<String> {
    (!missing.is_empty()).then(|| {
        format!(
            "attached policies missing from the bundle and the store: {}; requests are denied until they \
             are restored",
            missing.join(", ")
        )
    })
}

fn resolve_user(state: &State, user: &Compiled<User>) -> Arc<PrincipalEntry> {
    let record = &user.record;
    let mut identity = user.inline.clone();
    let mut missing: Vec<String> = user.problem.iter().cloned().collect();
    attach(state, &record.attached, &mut identity, &mut missing);
    for group in &record.groups {
        if let Some(group) = state.groups.get(&key(&record.account, group)) {
            identity.extend(group.inline.iter().cloned());
            missing.extend(group.problem.iter().cloned());
            attach(state, &group.record.attached, &mut identity, &mut missing);
        }
    }
    let boundary = boundary(state, record.boundary.as_ref(), &mut missing);
    entry(user, identity, boundary, None, missing)
}

fn resolve_role(state: &State, role: &Compiled<Role>) -> Arc<PrincipalEntry> {
    let record = &role.record;
    let mut identity = role.inline.clone();
    let mut missing: Vec<String> = role.problem.iter().cloned().collect();
    attach(state, &record.attached, &mut identity, &mut missing);
    let boundary = boundary(state, record.boundary.as_ref(), &mut missing);
    let trust = role.trust.clone();
    if trust.is_none() {
        missing.push("its trust policy, which does not compile".into());
    }
    entry(role, identity, boundary, trust, missing)
}

fn entry<T>(
    entity: &Compiled<T>,
    identity: Vec<Arc<Policy>>,
    boundary: Option<Arc<Policy>>,
    trust: Option<Arc<Policy>>,
    mut missing: Vec<String>,
) -> Arc<PrincipalEntry> {
    let who = entity.who.clone().unwrap_or_else(|| {
        missing.push("its identity".into());
        Arc::new(Who {
            kind: EntityKind::User,
            arn: String::new(),
            account: String::new(),
            name: String::new(),
            id: String::new(),
            tags: Vec::new(),
        })
    });
    Arc::new(PrincipalEntry { who, identity, boundary, trust, unresolved: unresolved(missing) })
}
