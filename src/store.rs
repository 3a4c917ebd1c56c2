//! Durable storage of identities in sled.
//!
//! Everything lives in one tree under prefixed keys (`user/ACCOUNT/name`, `group/...`,
//! `role/...`, `rtag/ARN`, `akey/ID`), so that every change, however many records it touches, is one atomic
//! batch. A batch is flushed before the call returns: once an admin call is acknowledged, a
//! crash of the process loses nothing. Nothing outside this module knows the key layout.
//!
//! When access keys were last used is bookkeeping, not state: it goes to a second tree, is
//! written without waiting for the disk, and is not exported.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::iam::model::{
    AccessKey, Group, LastUsed, LoginProfile, ManagedPolicy, MfaDevice, PasswordPolicy, ResourceTags, Role,
    StateDocument, User,
};

/// The layout of the data directory this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"meta/schema_version";
const CACHE_BYTES: u64 = 16 << 20;
const PREFIXES: [&str; 9] =
    ["user/", "group/", "role/", "rtag/", "akey/", "mfa/", "login/", "pwpolicy/", "policy/"];
const LAST_USED_TREE: &[u8] = b"last-used";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the data directory `{path}`: {source}; check that it exists, is writable, \
         and is not used by another iamd process"
    )]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "the data directory `{path}` has schema version {found}, newer than the {supported} this \
         iamd supports: run a newer iamd, or export with it and import here"
    )]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    #[error(
        "record `{key}` in the data directory is unreadable ({message}): the data is damaged; \
         restore it from an export (`iamd admin import`) or a backup"
    )]
    Corrupt { key: String, message: String },
    #[error("storage error: {0}; check that the data directory's disk is writable and not full")]
    Io(#[from] sled::Error),
    /// The change was written but the flush to disk failed: it is applied, but may not survive
    /// a crash.
    #[error(
        "the change was applied but could not be flushed to disk ({0}); it may not survive a \
         crash: check that the data directory's disk is writable and not full"
    )]
    NotFlushed(sled::Error),
}

/// One change to the stored state.
#[derive(Clone, Debug)]
pub enum Write {
    PutUser(User),
    DeleteUser { account: String, name: String },
    PutGroup(Group),
    DeleteGroup { account: String, name: String },
    PutRole(Role),
    DeleteRole { account: String, name: String },
    PutResourceTags(ResourceTags),
    DeleteResourceTags { arn: String },
    PutAccessKey(AccessKey),
    DeleteAccessKey { id: String },
    PutMfaDevice(MfaDevice),
    DeleteMfaDevice { serial: String },
    PutLoginProfile(LoginProfile),
    DeleteLoginProfile { account: String, user: String },
    PutPasswordPolicy(PasswordPolicy),
    DeletePasswordPolicy { account: String },
    PutManagedPolicy(ManagedPolicy),
    DeleteManagedPolicy { account: String, name: String },
}

pub struct Store {
    db: sled::Db,
    last_used: sled::Tree,
}

fn entity_key(kind: &str, account: &str, name: &str) -> Vec<u8> {
    format!("{kind}/{account}/{}", name.to_ascii_lowercase()).into_bytes()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain records to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// How long to wait for another holder of the data directory (a process still exiting, or
/// sled's background flush of a store just closed) to let go of its lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn open_waiting_for_lock(path: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        // sled's page cache defaults to 1 GiB; decisions never read sled, so a small cache
        // only slows admin reads of cold records, which are served from memory anyway.
        match sled::Config::new().path(path).cache_capacity(CACHE_BYTES).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result.map_err(|source| StoreError::Open { path: path.to_path_buf(), source }),
        }
    }
}

impl Store {
    /// Opens (or creates) the data directory, refusing one written by a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = open_waiting_for_lock(path)?;
        match db.get(SCHEMA_KEY)? {
            Some(bytes) => {
                let found = std::str::from_utf8(&bytes).ok().and_then(|s| s.parse::<u32>().ok()).ok_or_else(
                    || StoreError::Corrupt {
                        key: "meta/schema_version".into(),
                        message: "not a number".into(),
                    },
                )?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: path.to_path_buf(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                db.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())?;
                db.flush()?;
            }
        }
        let last_used = db.open_tree(LAST_USED_TREE)?;
        Ok(Store { db, last_used })
    }

    /// Reads everything stored.
    pub fn load(&self) -> Result<StateDocument, StoreError> {
        fn read<T: DeserializeOwned>(db: &sled::Db, prefix: &str) -> Result<Vec<T>, StoreError> {
            db.scan_prefix(prefix)
                .map(|entry| {
                    let (key, value) = entry?;
                    serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        message: e.to_string(),
                    })
                })
                .collect()
        }
        Ok(StateDocument {
            schema_version: SCHEMA_VERSION,
            users: read(&self.db, "user/")?,
            groups: read(&self.db, "group/")?,
            roles: read(&self.db, "role/")?,
            resource_tags: read(&self.db, "rtag/")?,
            access_keys: read(&self.db, "akey/")?,
            mfa_devices: read(&self.db, "mfa/")?,
            login_profiles: read(&self.db, "login/")?,
            password_policies: read(&self.db, "pwpolicy/")?,
            managed_policies: read(&self.db, "policy/")?,
        })
    }

    /// Applies `writes` atomically and durably: all or none, flushed before returning.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.commit(sled::Batch::default(), writes)
    }

    fn commit(&self, mut batch: sled::Batch, writes: &[Write]) -> Result<(), StoreError> {
        for write in writes {
            match write {
                Write::PutUser(user) => {
                    batch.insert(entity_key("user", &user.account, &user.name), encode(user))
                }
                Write::DeleteUser { account, name } => batch.remove(entity_key("user", account, name)),
                Write::PutGroup(group) => {
                    batch.insert(entity_key("group", &group.account, &group.name), encode(group))
                }
                Write::DeleteGroup { account, name } => batch.remove(entity_key("group", account, name)),
                Write::PutRole(role) => {
                    batch.insert(entity_key("role", &role.account, &role.name), encode(role))
                }
                Write::DeleteRole { account, name } => batch.remove(entity_key("role", account, name)),
                Write::PutResourceTags(tags) => {
                    batch.insert(format!("rtag/{}", tags.arn).into_bytes(), encode(tags))
                }
                Write::DeleteResourceTags { arn } => batch.remove(format!("rtag/{arn}").into_bytes()),
                Write::PutAccessKey(key) => {
                    batch.insert(format!("akey/{}", key.id).into_bytes(), encode(key))
                }
                Write::DeleteAccessKey { id } => batch.remove(format!("akey/{id}").into_bytes()),
                Write::PutMfaDevice(device) => {
                    batch.insert(format!("mfa/{}", device.serial).into_bytes(), encode(device))
                }
                Write::DeleteMfaDevice { serial } => batch.remove(format!("mfa/{serial}").into_bytes()),
                Write::PutLoginProfile(profile) => {
                    batch.insert(entity_key("login", &profile.account, &profile.user), encode(profile))
                }
                Write::DeleteLoginProfile { account, user } => {
                    batch.remove(entity_key("login", account, user))
                }
                Write::PutPasswordPolicy(policy) => {
                    batch.insert(format!("pwpolicy/{}", policy.account).into_bytes(), encode(policy))
                }
                Write::DeletePasswordPolicy { account } => {
                    batch.remove(format!("pwpolicy/{account}").into_bytes())
                }
                Write::PutManagedPolicy(policy) => {
                    batch.insert(entity_key("policy", &policy.account, &policy.name), encode(policy))
                }
                Write::DeleteManagedPolicy { account, name } => {
                    batch.remove(entity_key("policy", account, name))
                }
            }
        }
        self.db.apply_batch(batch)?;
        self.db.flush().map_err(StoreError::NotFlushed)?;
        Ok(())
    }

    /// Removes every record (for `import`) in the same atomic batch as the writes that replace
    /// them.
    pub fn replace_all(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for prefix in PREFIXES {
            for key in self.db.scan_prefix(prefix).keys() {
                batch.remove(key?);
            }
        }
        self.commit(batch, writes)
    }

    /// Records when access keys were last used. Written without a flush: sled's background
    /// flush makes it durable within half a second, and losing the last moments of it in a
    /// crash is acceptable for bookkeeping.
    pub fn record_last_used(&self, entries: &[(String, LastUsed)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (id, used) in entries {
            batch.insert(id.as_bytes(), encode(used));
        }
        self.last_used.apply_batch(batch)?;
        Ok(())
    }

    pub fn last_used(&self, id: &str) -> Result<Option<LastUsed>, StoreError> {
        match self.last_used.get(id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt { key: format!("last-used/{id}"), message: e.to_string() }),
        }
    }

    pub fn forget_last_used(&self, id: &str) -> Result<(), StoreError> {
        self.last_used.remove(id.as_bytes())?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            account: "111122223333".into(),
            name: name.into(),
            path: "/".into(),
            id: "AIDAEXAMPLE".into(),
            created: "2026-01-01T00:00:00Z".into(),
            tags: vec![],
            inline: Default::default(),
            attached: vec![],
            boundary: None,
            groups: Default::default(),
        }
    }

    #[test]
    fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.apply(&[Write::PutUser(user("Alice")), Write::PutUser(user("bob"))]).unwrap();
            store.apply(&[Write::DeleteUser { account: "111122223333".into(), name: "BOB".into() }]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.users, vec![user("Alice")]);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(SCHEMA_KEY, b"99").unwrap();
            db.flush().unwrap();
        }
        let error = Store::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("schema version 99, newer than the 1"), "{error}");
    }
}
