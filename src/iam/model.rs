//! The identities iamd stores, as they are persisted (JSON in sled) and exported.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// An IAM user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub account: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub created: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Inline policies by name, as the JSON text the caller gave.
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    /// Managed policy ARNs, in attachment order.
    #[serde(default)]
    pub attached: Vec<String>,
    #[serde(default)]
    pub boundary: Option<String>,
    /// Names of the groups the user belongs to (lower-cased keys of the account's groups).
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

/// An IAM group; its members are the users naming it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub account: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub created: String,
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
}

/// An IAM role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub account: String,
    pub name: String,
    pub path: String,
    pub id: String,
    pub created: String,
    pub trust_policy: String,
    pub max_session_duration: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
    #[serde(default)]
    pub boundary: Option<String>,
}

/// A customer managed policy created through the API (those of the bundle are not stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedPolicy {
    pub account: String,
    pub name: String,
    pub path: String,
    /// `ANPA` and 17 characters.
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub created: String,
    pub updated: String,
    /// The version that is in force, such as `v3`.
    pub default_version: String,
    /// Up to five versions, oldest first.
    pub versions: Vec<PolicyVersion>,
    /// The number of the next version: as in AWS, a deleted version's id is not reused.
    pub next_version: u32,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl ManagedPolicy {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{}:policy{}{}", self.account, self.path, self.name)
    }

    pub fn default_document(&self) -> &str {
        self.versions.iter().find(|v| v.id == self.default_version).map(|v| v.document.as_str()).unwrap_or("")
    }
}

/// One version of a managed policy: its document as the caller gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub id: String,
    pub document: String,
    pub created: String,
}

/// Tags on an arbitrary resource, by ARN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTags {
    pub arn: String,
    pub tags: Vec<Tag>,
}

impl User {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{}:user{}{}", self.account, self.path, self.name)
    }
}

impl Group {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{}:group{}{}", self.account, self.path, self.name)
    }
}

impl Role {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{}:role{}{}", self.account, self.path, self.name)
    }
}

/// Whether an access key can sign requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// A long-term access key of a user, or of the account root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// `AKIA` and 16 characters.
    pub id: String,
    pub account: String,
    /// The owning user's name; `None` for a key of the account root.
    pub user: Option<String>,
    pub status: KeyStatus,
    pub created: String,
    /// The secret access key sealed with the master key (base64): never stored in the clear.
    pub sealed_secret: String,
}

/// When and where an access key was last used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsed {
    pub date: String,
    pub service: String,
    pub region: String,
}

/// A virtual MFA device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaDevice {
    /// `arn:aws:iam::ACCOUNT:mfa/NAME`.
    pub serial: String,
    pub account: String,
    pub name: String,
    /// The TOTP seed sealed with the master key (base64).
    pub sealed_seed: String,
    pub created: String,
    /// The user it is enabled for.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub enabled: Option<String>,
    /// The time step of the last code accepted: a code is accepted once.
    #[serde(default)]
    pub last_step: u64,
}

/// A user's console password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginProfile {
    pub account: String,
    pub user: String,
    /// The argon2id hash, as a PHC string.
    pub hash: String,
    pub created: String,
    /// When the password was last set, for the maximum age.
    pub changed: String,
    #[serde(default)]
    pub password_reset_required: bool,
    /// Hashes of earlier passwords, newest first, for reuse prevention.
    #[serde(default)]
    pub previous: Vec<String>,
    #[serde(default)]
    pub last_used: Option<String>,
}

/// An account's password policy, as AWS's UpdateAccountPasswordPolicy sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    pub account: String,
    pub minimum_password_length: u32,
    pub require_symbols: bool,
    pub require_numbers: bool,
    pub require_uppercase_characters: bool,
    pub require_lowercase_characters: bool,
    pub allow_users_to_change_password: bool,
    /// Days; `None` for passwords that never expire.
    pub max_password_age: Option<u32>,
    /// How many previous passwords cannot be reused.
    pub password_reuse_prevention: Option<u32>,
    /// An expired password can only be reset by an administrator.
    pub hard_expiry: bool,
}

/// Everything iamd stores: the format of `iamd admin export` and `import`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDocument {
    pub schema_version: u32,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub resource_tags: Vec<ResourceTags>,
    /// Access keys with their secrets sealed: an export opens only where the same master key
    /// is configured.
    #[serde(default)]
    pub access_keys: Vec<AccessKey>,
    /// MFA devices with their seeds sealed, like access keys.
    #[serde(default)]
    pub mfa_devices: Vec<MfaDevice>,
    /// Login profiles with their password hashes.
    #[serde(default)]
    pub login_profiles: Vec<LoginProfile>,
    #[serde(default)]
    pub password_policies: Vec<PasswordPolicy>,
    /// Customer managed policies created through the API.
    #[serde(default)]
    pub managed_policies: Vec<ManagedPolicy>,
}
