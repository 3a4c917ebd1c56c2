//! Customer managed policies created through the API, with up to five versions each, beside
//! the managed policies of the bundle.
//!
//! Both kinds attach the same way and are found by ARN, the bundle's first. A name the bundle
//! uses is refused here, and the bundle's policies cannot be changed through the API: the
//! bundle is their source of truth.

use std::sync::Arc;

use super::model::{ManagedPolicy, PolicyVersion, Tag};
use super::validate::{self, NameKind};
use super::{Iam, IamError, State, now, unique_id};
use crate::policy::{self, Policy, PolicyKind};
use crate::store::Write;

/// AWS's limit on the versions a managed policy keeps.
pub const MAX_VERSIONS: usize = 5;
/// AWS's limit on a managed policy document, in characters other than whitespace.
const MAX_DOCUMENT: usize = 6_144;

/// A stored policy with its default version compiled; `None` when the stored document no
/// longer compiles (its attachments then deny, as a missing policy does).
#[derive(Clone, Debug)]
pub(super) struct StoredPolicy {
    pub record: ManagedPolicy,
    pub compiled: Option<Arc<Policy>>,
}

impl StoredPolicy {
    pub fn new(record: ManagedPolicy) -> StoredPolicy {
        let compiled = policy::parse(&record.arn(), record.default_document(), PolicyKind::Identity)
            .ok()
            .map(|parsed| Arc::new(parsed.policy));
        StoredPolicy { record, compiled }
    }
}

/// Where a managed policy is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// AWS managed (`arn:aws:iam::aws:policy/...`), built into iamd.
    Aws,
    /// A `policies/NAME.json` of the bundle.
    Bundle,
    /// Created through the API and stored.
    Stored,
}

/// A managed policy as `GetPolicy` and `ListPolicies` describe it.
#[derive(Clone, Debug)]
pub struct PolicyInfo {
    pub arn: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub description: String,
    pub created: String,
    pub updated: String,
    pub default_version: String,
    pub attachment_count: usize,
    pub boundary_usage_count: usize,
    pub tags: Vec<Tag>,
    pub source: PolicySource,
}

/// Which policies `ListPolicies` returns, as its `Scope` parameter says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Aws,
    Local,
}

fn check_document(document: &str) -> Result<(), IamError> {
    if validate::policy_size(document) > MAX_DOCUMENT {
        return Err(IamError::LimitExceeded(format!(
            "Cannot exceed quota for PolicySize: {MAX_DOCUMENT}: the document has {} characters other than \
             whitespace",
            validate::policy_size(document)
        )));
    }
    policy::parse("PolicyDocument", document, PolicyKind::Identity)
        .map(|_| ())
        .map_err(|e| IamError::MalformedPolicyDocument(e.to_string()))
}

fn no_such_policy(arn: &str) -> IamError {
    IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
}

fn bundle_owned(arn: &str) -> IamError {
    IamError::InvalidInput(format!(
        "Policy {arn} is defined by the policy bundle (or is AWS managed) and cannot be changed through \
         the API: change the bundle's policies/ file instead"
    ))
}

/// The id AWS gives a policy version: `v` and a number.
fn version_id(number: u32) -> String {
    format!("v{number}")
}

/// A stable id for a bundle policy, derived from its ARN, so that it is the same on every
/// reload and on every instance serving the bundle.
fn bundle_policy_id(arn: &str) -> String {
    use sha2::Digest as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = sha2::Sha256::digest(arn.as_bytes());
    let suffix: String =
        digest.iter().take(17).map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect();
    format!("ANPA{suffix}")
}

/// The policy `arn` as a decision uses it: the bundle's, else a stored one.
pub(super) fn managed_policy<'s>(state: &'s State, arn: &str) -> Option<&'s Arc<Policy>> {
    state
        .bundle
        .as_ref()
        .and_then(|b| b.managed_policy(arn))
        .or_else(|| state.managed_policies.get(arn).and_then(|p| p.compiled.as_ref()))
}

/// How many users, groups and roles attach `arn`, and how many use it as their boundary.
fn usage(state: &State, arn: &str) -> (usize, usize) {
    let principals = || state.directory.principals.values().map(|entry| &entry.who.links);
    let attachments = principals().filter(|links| links.attached.iter().any(|a| **a == *arn)).count()
        + state.groups.values().filter(|g| g.record.attached.iter().any(|a| a == arn)).count();
    let boundaries = principals().filter(|links| links.boundary() == Some(arn)).count();
    (attachments, boundaries)
}

fn stored_info(state: &State, policy: &ManagedPolicy) -> PolicyInfo {
    let arn = policy.arn();
    let (attachment_count, boundary_usage_count) = usage(state, &arn);
    PolicyInfo {
        name: policy.name.clone(),
        path: policy.path.clone(),
        id: policy.id.clone(),
        description: policy.description.clone(),
        created: policy.created.clone(),
        updated: policy.updated.clone(),
        default_version: policy.default_version.clone(),
        attachment_count,
        boundary_usage_count,
        tags: policy.tags.clone(),
        source: PolicySource::Stored,
        arn,
    }
}

fn bundle_info(state: &State, arn: &str) -> Option<PolicyInfo> {
    let bundle = state.bundle.as_ref()?;
    bundle.managed_policy(arn)?;
    let (_, rest) = arn.split_once(":policy/")?;
    let (attachment_count, boundary_usage_count) = usage(state, arn);
    Some(PolicyInfo {
        arn: arn.to_string(),
        name: rest.rsplit('/').next().unwrap_or(rest).to_string(),
        path: "/".into(),
        id: bundle_policy_id(arn),
        description: String::new(),
        created: bundle.compiled_at.clone(),
        updated: bundle.compiled_at.clone(),
        default_version: version_id(1),
        attachment_count,
        boundary_usage_count,
        tags: state.resource_tags.get(arn).cloned().unwrap_or_default(),
        source: if arn.starts_with("arn:aws:iam::aws:") { PolicySource::Aws } else { PolicySource::Bundle },
    })
}

impl Iam {
    pub fn create_policy(
        &self,
        account: &str,
        name: &str,
        path: &str,
        document: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<PolicyInfo, IamError> {
        let account = self.account(account)?;
        let path = if path.is_empty() { "/" } else { path };
        validate::name(NameKind::Policy, name)?;
        validate::path(path)?;
        validate::description(description)?;
        validate::tags(tags)?;
        check_document(document)?;
        let mut state = self.lock();
        let taken = state
            .managed_policies
            .values()
            .any(|p| p.record.account == account && p.record.name.eq_ignore_ascii_case(name));
        if taken {
            return Err(IamError::EntityAlreadyExists(format!(
                "A policy called {name} already exists. Duplicate names are not allowed."
            )));
        }
        let in_bundle = state.bundle.as_ref().is_some_and(|b| {
            b.managed_policy_arns().any(|arn| {
                arn.strip_prefix(&format!("arn:aws:iam::{account}:policy/"))
                    .is_some_and(|rest| rest.rsplit('/').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            })
        });
        if in_bundle {
            return Err(IamError::EntityAlreadyExists(format!(
                "A policy called {name} already exists: the policy bundle defines it. Choose another name, or \
                 change the bundle's policies/{name}.json instead."
            )));
        }
        let created = now();
        let record = ManagedPolicy {
            account: account.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            id: unique_id("ANPA"),
            description: description.to_string(),
            created: created.clone(),
            updated: created.clone(),
            default_version: version_id(1),
            versions: vec![PolicyVersion { id: version_id(1), document: document.to_string(), created }],
            next_version: 2,
            tags: tags.to_vec(),
        };
        let info = stored_info(&state, &record);
        self.commit(&mut state, vec![Write::PutManagedPolicy(record)])?;
        Ok(info)
    }

    pub fn get_policy(&self, arn: &str) -> Result<PolicyInfo, IamError> {
        let state = self.lock();
        if let Some(info) = bundle_info(&state, arn) {
            return Ok(info);
        }
        let stored = state.managed_policies.get(arn).ok_or_else(|| no_such_policy(arn))?;
        Ok(stored_info(&state, &stored.record))
    }

    /// Managed policies of `account` (and AWS's), in ARN order.
    pub fn list_policies(
        &self,
        account: &str,
        scope: Scope,
        only_attached: bool,
        path_prefix: &str,
    ) -> Result<Vec<PolicyInfo>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        let mut found: Vec<PolicyInfo> = Vec::new();
        if let Some(bundle) = &state.bundle {
            let own = format!("arn:aws:iam::{account}:policy/");
            for arn in bundle.managed_policy_arns() {
                let wanted = match scope {
                    Scope::All => arn.starts_with(&own) || arn.starts_with("arn:aws:iam::aws:"),
                    Scope::Aws => arn.starts_with("arn:aws:iam::aws:"),
                    Scope::Local => arn.starts_with(&own),
                };
                if wanted && let Some(info) = bundle_info(&state, arn) {
                    found.push(info);
                }
            }
        }
        if scope != Scope::Aws {
            found.extend(
                state
                    .managed_policies
                    .values()
                    .filter(|p| p.record.account == account)
                    .map(|p| stored_info(&state, &p.record)),
            );
        }
        found.retain(|p| p.path.starts_with(path_prefix) && (!only_attached || p.attachment_count > 0));
        found.sort_by(|a, b| a.arn.cmp(&b.arn));
        Ok(found)
    }

    pub fn delete_policy(&self, arn: &str) -> Result<(), IamError> {
        let mut state = self.lock();
        if bundle_info(&state, arn).is_some() {
            return Err(bundle_owned(arn));
        }
        let stored = state.managed_policies.get(arn).ok_or_else(|| no_such_policy(arn))?;
        let (attachments, boundaries) = usage(&state, arn);
        if attachments + boundaries > 0 {
            return Err(IamError::DeleteConflict(
                "Cannot delete a policy attached to entities: detach it first (or remove it as a permissions \
                 boundary)."
                    .into(),
            ));
        }
        if stored.record.versions.len() > 1 {
            return Err(IamError::DeleteConflict(
                "This policy has more than one version. Before you delete a policy, you must delete the policy's \
                 versions. The default version is deleted with the policy."
                    .into(),
            ));
        }
        let (account, name) = (stored.record.account.clone(), stored.record.name.clone());
        self.commit(&mut state, vec![Write::DeleteManagedPolicy { account, name }])
    }

    /// The stored policy `arn`, to change; a bundle policy is refused with the reason.
    fn stored_policy(state: &State, arn: &str) -> Result<ManagedPolicy, IamError> {
        if bundle_info(state, arn).is_some() {
            return Err(bundle_owned(arn));
        }
        state.managed_policies.get(arn).map(|p| p.record.clone()).ok_or_else(|| no_such_policy(arn))
    }

    pub fn create_policy_version(
        &self,
        arn: &str,
        document: &str,
        set_as_default: bool,
    ) -> Result<PolicyVersion, IamError> {
        check_document(document)?;
        let mut state = self.lock();
        let mut record = Self::stored_policy(&state, arn)?;
        if record.versions.len() >= MAX_VERSIONS {
            return Err(IamError::LimitExceeded(format!(
                "A managed policy can have up to {MAX_VERSIONS} versions. Before you create a new version, you \
                 must delete an existing version."
            )));
        }
        let version = PolicyVersion {
            id: version_id(record.next_version),
            document: document.to_string(),
            created: now(),
        };
        record.next_version += 1;
        record.versions.push(version.clone());
        record.updated = version.created.clone();
        if set_as_default {
            record.default_version = version.id.clone();
        }
        self.commit(&mut state, vec![Write::PutManagedPolicy(record)])?;
        Ok(version)
    }

    /// A version's document and whether it is the default.
    pub fn get_policy_version(&self, arn: &str, version: &str) -> Result<(PolicyVersion, bool), IamError> {
        let state = self.lock();
        if let Some(info) = bundle_info(&state, arn) {
            let document = state.bundle.as_ref().and_then(|b| b.managed_policy_document(arn));
            return match document {
                Some(document) if version == info.default_version => Ok((
                    PolicyVersion {
                        id: info.default_version,
                        document: document.to_string(),
                        created: info.created,
                    },
                    true,
                )),
                _ => Err(IamError::NoSuchEntity(format!("Policy {arn} version {version} does not exist."))),
            };
        }
        let stored = &state.managed_policies.get(arn).ok_or_else(|| no_such_policy(arn))?.record;
        let found = stored.versions.iter().find(|v| v.id == version).cloned().ok_or_else(|| {
            IamError::NoSuchEntity(format!("Policy {arn} version {version} does not exist."))
        })?;
        let is_default = found.id == stored.default_version;
        Ok((found, is_default))
    }

    /// Every version, newest first as AWS lists them, with whether it is the default.
    pub fn list_policy_versions(&self, arn: &str) -> Result<Vec<(PolicyVersion, bool)>, IamError> {
        let state = self.lock();
        if let Some(info) = bundle_info(&state, arn) {
            drop(state);
            return Ok(vec![self.get_policy_version(arn, &info.default_version)?]);
        }
        let stored = &state.managed_policies.get(arn).ok_or_else(|| no_such_policy(arn))?.record;
        Ok(stored.versions.iter().rev().map(|v| (v.clone(), v.id == stored.default_version)).collect())
    }

    pub fn delete_policy_version(&self, arn: &str, version: &str) -> Result<(), IamError> {
        let mut state = self.lock();
        let mut record = Self::stored_policy(&state, arn)?;
        if record.default_version == version {
            return Err(IamError::DeleteConflict(
                "Cannot delete the default version of a policy: make another version the default first."
                    .into(),
            ));
        }
        let before = record.versions.len();
        record.versions.retain(|v| v.id != version);
        if record.versions.len() == before {
            return Err(IamError::NoSuchEntity(format!("Policy {arn} version {version} does not exist.")));
        }
        self.commit(&mut state, vec![Write::PutManagedPolicy(record)])
    }

    pub fn set_default_policy_version(&self, arn: &str, version: &str) -> Result<(), IamError> {
        let mut state = self.lock();
        let mut record = Self::stored_policy(&state, arn)?;
        if !record.versions.iter().any(|v| v.id == version) {
            return Err(IamError::NoSuchEntity(format!("Policy {arn} version {version} does not exist.")));
        }
        record.default_version = version.to_string();
        record.updated = now();
        self.commit(&mut state, vec![Write::PutManagedPolicy(record)])
    }

    /// Tags of a stored policy live on the policy; the bundle's are resource tags by ARN.
    pub fn tag_policy(&self, arn: &str, tags: &[Tag]) -> Result<(), IamError> {
        validate::tags(tags)?;
        let mut state = self.lock();
        if bundle_info(&state, arn).is_some() {
            drop(state);
            return self.tag_resource(arn, tags);
        }
        let mut record =
            state.managed_policies.get(arn).map(|p| p.record.clone()).ok_or_else(|| no_such_policy(arn))?;
        validate::merge_tags(&mut record.tags, tags)?;
        self.commit(&mut state, vec![Write::PutManagedPolicy(record)])
    }

    pub fn untag_policy(&self, arn: &str, keys: &[String]) -> Result<(), IamError> {
        let mut state = self.lock();
        if bundle_info(&state, arn).is_some() {
            drop(state);
            return self.untag_resource(arn, keys);
        }
        let mut record =
            state.managed_policies.get(arn).map(|p| p.record.clone()).ok_or_else(|| no_such_policy(arn))?;
        record.tags.retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
        self.commit(&mut state, vec![Write::PutManagedPolicy(record)])
    }
}
