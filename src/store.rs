//! Durable storage of identities in sled.
//!
//! Everything lives in one tree under prefixed keys (`user/ACCOUNT/name`, `group/...`,
//! `role/...`, `rtag/ARN`, `akey/ID`), so that every change, however many records it touches, is one atomic
//! batch. A batch is flushed before the call returns: once an admin call is acknowledged, a
//! crash of the process loses nothing. Nothing outside this module knows the key layout.
//!
//! When access keys were last used is bookkeeping, not state: it goes to a second tree, is
//! written without waiting for the disk, and is not exported.
//!
//! sled recovers a damaged or truncated log by silently dropping everything after the damage,
//! which would serve an old state as if it were current. So every batch also counts the changes
//! acknowledged so far, and the count is copied, once the batch is on disk, to a file of its own
//! beside sled's ([`ACKNOWLEDGED_FILE`]): a store that opens with fewer changes than that file
//! names has lost acknowledged changes, and is refused.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::iam::model::{
    AccessKey, Group, LastUsed, LoginProfile, ManagedPolicy, MfaDevice, PasswordPolicy, ResourceTags, Role,
    User,
};

/// The layout of the data directory this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"meta/schema_version";
const CACHE_BYTES: u64 = 16 << 20;
const PREFIXES: [&str; 9] =
    ["user/", "group/", "role/", "rtag/", "akey/", "mfa/", "login/", "pwpolicy/", "policy/"];
const LAST_USED_TREE: &[u8] = b"last-used";
/// The number of changes acknowledged so far, in the same batch as each change.
const ACKNOWLEDGED_KEY: &[u8] = b"meta/acknowledged";
/// The same number, written once the change is on disk; kept in the data directory so that a
/// backup of the directory carries it along.
pub const ACKNOWLEDGED_FILE: &str = "iamd-acknowledged";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the data directory `{path}`: {}; check that it exists, is writable, and is \
         not used by another iamd process",
        describe(error)
    )]
    Open { path: PathBuf, error: sled::Error },
    #[error(
        "the data directory `{path}` is damaged ({}): restore it from a backup, or move it away and \
         import an export (`iamd admin import`)",
        describe(error)
    )]
    Damaged { path: PathBuf, error: sled::Error },
    #[error(
        "the data directory `{path}` has lost acknowledged changes: it holds {found} of the \
         {acknowledged} changes iamd acknowledged, so its files were truncated, damaged or replaced. \
         Restore it from a backup, or move it away and import an export (`iamd admin import`); to \
         serve what it still holds instead, delete `{witness}`",
        witness = path.join(ACKNOWLEDGED_FILE).display()
    )]
    Lost { path: PathBuf, found: u64, acknowledged: u64 },
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
    /// sled stops writing after its first failed write, until it is opened again.
    #[error(
        "the data directory cannot be written ({}): check that its disk is writable and not full, \
         then restart iamd, which takes no changes until then",
        describe(.0)
    )]
    Io(sled::Error),
    /// The change was written but the flush to disk failed: it is applied, but may not survive
    /// a restart.
    #[error(
        "the change was applied but could not be flushed to disk ({}); it may be lost when iamd \
         restarts: check that the data directory's disk is writable and not full, then restart iamd",
        describe(.0)
    )]
    NotFlushed(sled::Error),
}

// Not `#[from]`: the message already tells the cause, which would otherwise be printed twice.
impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> StoreError {
        StoreError::Io(error)
    }
}

/// sled shows I/O errors in their debug form (`Os { code: 28, ... }`), and its copies of one
/// keep only that text and the kind: the kind reads better ("no storage space").
fn describe(error: &sled::Error) -> String {
    match error {
        sled::Error::Io(e) if e.raw_os_error().is_none() && e.kind() != std::io::ErrorKind::Other => {
            e.kind().to_string()
        }
        sled::Error::Io(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// One stored record, as [`Store::for_each`] reads it.
pub enum Stored {
    User(User),
    Group(Group),
    Role(Role),
    ResourceTags(ResourceTags),
    AccessKey(AccessKey),
    MfaDevice(MfaDevice),
    LoginProfile(LoginProfile),
    PasswordPolicy(PasswordPolicy),
    ManagedPolicy(ManagedPolicy),
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
    /// The data directory, where [`ACKNOWLEDGED_FILE`] is.
    path: PathBuf,
    /// Changes committed so far; held while committing, so that counts are written in order.
    acknowledged: Mutex<u64>,
}

fn entity_key(kind: &str, account: &str, name: &str) -> Vec<u8> {
    format!("{kind}/{account}/{}", name.to_ascii_lowercase()).into_bytes()
}

fn account_prefix(kind: &str, account: &str) -> String {
    if account.is_empty() { format!("{kind}/") } else { format!("{kind}/{account}/") }
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
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
        // only slows admin reads of cold records, which read one record or one page.
        match sled::Config::new().path(path).cache_capacity(CACHE_BYTES).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error @ sled::Error::Corruption { .. }) => {
                return Err(StoreError::Damaged { path: path.to_path_buf(), error });
            }
            result => return result.map_err(|error| StoreError::Open { path: path.to_path_buf(), error }),
        }
    }
}

fn read_count(bytes: &[u8], key: &str) -> Result<u64, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| StoreError::Corrupt { key: key.into(), message: "not a number".into() })
}

/// Replaces the acknowledged count atomically: a crash leaves the old count or the new one.
fn write_acknowledged(dir: &Path, count: u64) -> std::io::Result<()> {
    let temporary = dir.join(format!("{ACKNOWLEDGED_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    std::io::Write::write_all(&mut file, format!("{count}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(ACKNOWLEDGED_FILE))
}

impl Store {
    /// Opens (or creates) the data directory, refusing one written by a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = open_waiting_for_lock(path)?;
        // Checked before anything is written: an emptied store must not look like a new one.
        let found =
            db.get(ACKNOWLEDGED_KEY)?.map(|bytes| read_count(&bytes, "meta/acknowledged")).transpose()?;
        let witness = match std::fs::read(path.join(ACKNOWLEDGED_FILE)) {
            Ok(bytes) => Some(read_count(&bytes, ACKNOWLEDGED_FILE)?),
            // A new directory, or one written before iamd kept the count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Open { path: path.to_path_buf(), error: e.into() }),
        };
        let found = found.unwrap_or(0);
        if let Some(acknowledged) = witness.filter(|acknowledged| *acknowledged > found) {
            return Err(StoreError::Lost { path: path.to_path_buf(), found, acknowledged });
        }
        match db.get(SCHEMA_KEY)? {
            Some(bytes) => {
                let found = u32::try_from(read_count(&bytes, "meta/schema_version")?).unwrap_or(u32::MAX);
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
        Ok(Store { db, last_used, path: path.to_path_buf(), acknowledged: Mutex::new(found) })
    }

    /// Reads everything stored, at once (iamd itself reads it record by record).
    #[cfg(test)]
    pub fn load(&self) -> Result<crate::iam::model::StateDocument, StoreError> {
        let mut document =
            crate::iam::model::StateDocument { schema_version: SCHEMA_VERSION, ..Default::default() };
        self.for_each(|record| match record {
            Stored::User(user) => document.users.push(user),
            Stored::Group(group) => document.groups.push(group),
            Stored::Role(role) => document.roles.push(role),
            Stored::ResourceTags(tags) => document.resource_tags.push(tags),
            Stored::AccessKey(key) => document.access_keys.push(key),
            Stored::MfaDevice(device) => document.mfa_devices.push(device),
            Stored::LoginProfile(profile) => document.login_profiles.push(profile),
            Stored::PasswordPolicy(policy) => document.password_policies.push(policy),
            Stored::ManagedPolicy(policy) => document.managed_policies.push(policy),
        })?;
        Ok(document)
    }

    /// Closes the store and opens it again: sled then lets go of the pages it cached.
    pub fn reopen(self) -> Result<Store, StoreError> {
        let path = self.path.clone();
        drop(self);
        Store::open(&path)
    }

    pub fn user(&self, account: &str, name: &str) -> Result<Option<User>, StoreError> {
        self.get(&entity_key("user", account, name))
    }

    pub fn role(&self, account: &str, name: &str) -> Result<Option<Role>, StoreError> {
        self.get(&entity_key("role", account, name))
    }

    /// The users of `account` (of every account when it is empty) in name order, from the name
    /// `from` on (case-insensitive; empty for the first), each with its lower-cased name.
    /// Records are read and decoded as the iterator is advanced, so a page costs its own size.
    pub fn users<'s>(
        &'s self,
        account: &str,
        from: &str,
    ) -> impl Iterator<Item = Result<(String, User), StoreError>> + 's {
        self.entries("user", account, from)
    }

    /// The roles of `account`, as [`Store::users`] lists users.
    pub fn roles<'s>(
        &'s self,
        account: &str,
        from: &str,
    ) -> impl Iterator<Item = Result<(String, Role), StoreError>> + 's {
        self.entries("role", account, from)
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.db.get(key)?.map(|value| decode(key, &value)).transpose()
    }

    fn entries<'s, T: DeserializeOwned>(
        &'s self,
        kind: &str,
        account: &str,
        from: &str,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + 's {
        let prefix = account_prefix(kind, account);
        let start = format!("{prefix}{}", from.to_ascii_lowercase());
        self.db.range(start.into_bytes()..).map_while(move |entry| match entry {
            Ok((key, value)) => {
                let name = String::from_utf8_lossy(key.strip_prefix(prefix.as_bytes())?).into_owned();
                Some(decode(&key, &value).map(|record| (name, record)))
            }
            Err(error) => Some(Err(error.into())),
        })
    }

    /// Hands every stored record to `visit`, one at a time: a start-up that builds its state
    /// this way never holds a second copy of everything, which at 100,000 users is most of the
    /// process's peak memory.
    pub fn for_each(&self, mut visit: impl FnMut(Stored)) -> Result<(), StoreError> {
        fn read<T: DeserializeOwned>(
            db: &sled::Db,
            prefix: &str,
            wrap: fn(T) -> Stored,
            visit: &mut impl FnMut(Stored),
        ) -> Result<(), StoreError> {
            for entry in db.scan_prefix(prefix) {
                let (key, value) = entry?;
                visit(wrap(decode(&key, &value)?));
            }
            Ok(())
        }
        read(&self.db, "user/", Stored::User, &mut visit)?;
        read(&self.db, "group/", Stored::Group, &mut visit)?;
        read(&self.db, "role/", Stored::Role, &mut visit)?;
        read(&self.db, "rtag/", Stored::ResourceTags, &mut visit)?;
        read(&self.db, "akey/", Stored::AccessKey, &mut visit)?;
        read(&self.db, "mfa/", Stored::MfaDevice, &mut visit)?;
        read(&self.db, "login/", Stored::LoginProfile, &mut visit)?;
        read(&self.db, "pwpolicy/", Stored::PasswordPolicy, &mut visit)?;
        read(&self.db, "policy/", Stored::ManagedPolicy, &mut visit)
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
        let mut acknowledged = self.acknowledged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = *acknowledged + 1;
        batch.insert(ACKNOWLEDGED_KEY, count.to_string().as_bytes());
        self.db.apply_batch(batch)?;
        // The batch is in sled from here on, flushed or not: the next one counts after it.
        *acknowledged = count;
        self.db.flush().map_err(StoreError::NotFlushed)?;
        // A count behind the store is harmless (it is checked for being ahead), so a failure
        // here does not undo an acknowledgement the store can honour.
        if let Err(e) = write_acknowledged(&self.path, count) {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot record the count of acknowledged changes");
        }
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
    fn refuses_a_store_that_lost_acknowledged_changes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.apply(&[Write::PutUser(user("alice"))]).unwrap();
            store.apply(&[Write::PutUser(user("bob"))]).unwrap();
        }
        // sled's files replaced by empty ones, as a lost volume would be; the count stays.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != ACKNOWLEDGED_FILE {
                if path.is_dir() {
                    std::fs::remove_dir_all(path).unwrap();
                } else {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        let error = Store::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("holds 0 of the 2 changes iamd acknowledged"), "{error}");
        std::fs::remove_file(dir.path().join(ACKNOWLEDGED_FILE)).unwrap();
        assert!(Store::open(dir.path()).unwrap().load().unwrap().users.is_empty());
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
