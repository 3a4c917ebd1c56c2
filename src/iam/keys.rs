//! Access keys of users and of the account root.
//!
//! A secret is shown once, when the key is created, and stored only sealed with the master key.
//! The opened secrets live in memory, in the snapshot's key directory, where the authenticator
//! finds them.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::model::{AccessKey, KeyStatus, LastUsed};
use super::{Iam, IamError, State, now, user_of};
use crate::credentials::keyring::Purpose;
use crate::credentials::{LONG_TERM_PREFIX, Secret, new_access_key_id};
use crate::snapshot::{AccessKeyEntry, KeyOwner};
use crate::store::Write;

/// Access keys one user (or the root) may have.
pub const MAX_ACCESS_KEYS: usize = 2;

/// The keys of `user` in `account` (`None`: the root's).
pub(super) fn owned_by<'s>(
    state: &'s State,
    account: &'s str,
    user: Option<&'s str>,
) -> impl Iterator<Item = &'s AccessKey> + 's {
    state.access_keys.values().map(|(k, _)| k).filter(move |k| {
        k.account == account
            && match (&k.user, user) {
                (Some(owner), Some(user)) => owner.eq_ignore_ascii_case(user),
                (None, None) => true,
                _ => false,
            }
    })
}

/// The hot path's view of `key`: its owner and opened secret.
pub(super) fn entry(state: &State, key: &AccessKey) -> Arc<AccessKeyEntry> {
    let owner = match &key.user {
        Some(name) => KeyOwner::User {
            account: key.account.clone(),
            name: name.clone(),
            arn: user_of(state, &key.account, name)
                .map(|u| u.arn.to_string())
                .unwrap_or_else(|_| format!("arn:aws:iam::{}:user/{name}", key.account)),
        },
        None => KeyOwner::Root { account: key.account.clone() },
    };
    let secret = STANDARD
        .decode(&key.sealed_secret)
        .ok()
        .and_then(|sealed| state.keyring.open(Purpose::StoredSecret, key.id.as_bytes(), &sealed).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Secret::new);
    Arc::new(AccessKeyEntry { owner, active: key.status == KeyStatus::Active, secret })
}

/// Refuses an imported key that the admin API could not have created.
pub(super) fn check_imported(state: &State, key: &AccessKey) -> Result<(), IamError> {
    let well_formed = key.id.len() == 20
        && key.id.starts_with(LONG_TERM_PREFIX)
        && key.id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !well_formed {
        return Err(IamError::InvalidInput(format!(
            "access key id `{}` is not of the form AKIA + 16 characters",
            key.id
        )));
    }
    if !crate::eval::principal::is_account_id(&key.account) {
        return Err(IamError::InvalidInput(format!(
            "account `{}` is not a 12-digit account id",
            key.account
        )));
    }
    let Some(user) = &key.user else {
        return Err(IamError::InvalidInput(format!(
            "access key {} belongs to a root: the root's keys stay with the iamd that created them",
            key.id
        )));
    };
    if user_of(state, &key.account, user).is_err() {
        return Err(IamError::NoSuchEntity(format!(
            "access key {} belongs to user {user}, which the document does not define",
            key.id
        )));
    }
    if entry(state, key).secret.is_none() {
        return Err(IamError::InvalidInput(format!(
            "the secret of access key {} is sealed with a master key this iamd does not have: configure \
             the exporting iamd's master key here too (as a second line of the key file) and import again",
            key.id
        )));
    }
    Ok(())
}

fn no_such_key(id: &str) -> IamError {
    IamError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
}

impl Iam {
    /// Creates an access key for `user` (`None`: the account root) and returns it with its
    /// secret, which is never shown again.
    pub fn create_access_key(
        &self,
        account: &str,
        user: Option<&str>,
    ) -> Result<(AccessKey, Secret), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let user = match user {
            Some(name) => Some(user_of(&state, account, name)?.name.to_string()),
            None => None,
        };
        if owned_by(&state, account, user.as_deref()).count() >= MAX_ACCESS_KEYS {
            return Err(IamError::LimitExceeded(format!(
                "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}"
            )));
        }
        let id = new_access_key_id(LONG_TERM_PREFIX);
        let secret = Secret::generate();
        let sealed = state.keyring.seal(Purpose::StoredSecret, id.as_bytes(), secret.expose().as_bytes());
        let record = AccessKey {
            id,
            account: account.to_string(),
            user,
            status: KeyStatus::Active,
            created: now(),
            sealed_secret: STANDARD.encode(sealed),
        };
        self.commit(&mut state, vec![Write::PutAccessKey(record.clone())])?;
        Ok((record, secret))
    }

    /// The keys of `user` (`None`: the root's), without their secrets.
    pub fn list_access_keys(&self, account: &str, user: Option<&str>) -> Result<Vec<AccessKey>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        if let Some(name) = user {
            user_of(&state, account, name)?;
        }
        Ok(owned_by(&state, account, user).cloned().collect())
    }

    pub fn update_access_key(
        &self,
        account: &str,
        user: Option<&str>,
        id: &str,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let mut record = owned_key(&state, account, user, id)?.clone();
        if record.status != status {
            record.status = status;
            self.commit(&mut state, vec![Write::PutAccessKey(record)])?;
        }
        Ok(())
    }

    pub fn delete_access_key(&self, account: &str, user: Option<&str>, id: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        owned_key(&state, account, user, id)?;
        self.commit(&mut state, vec![Write::DeleteAccessKey { id: id.to_string() }])?;
        drop(state);
        if let Err(e) = self.store.forget_last_used(id) {
            tracing::warn!(access_key_id = %id, error = %e, "could not forget when the deleted access key was last used");
        }
        Ok(())
    }

    /// The key's owner and when it was last used (`pending`: a use not yet recorded).
    pub fn access_key_last_used(
        &self,
        id: &str,
        pending: Option<LastUsed>,
    ) -> Result<(AccessKey, Option<LastUsed>), IamError> {
        let record =
            self.lock().access_keys.get(id).map(|(k, _)| k.clone()).ok_or_else(|| no_such_key(id))?;
        let used = match pending {
            Some(used) => Some(used),
            None => self.store.last_used(id).map_err(|e| IamError::ServiceFailure(e.to_string()))?,
        };
        Ok((record, used))
    }

    /// The ARN of the user (or root) owning the key `id`.
    pub fn access_key_owner_arn(&self, id: &str) -> Option<String> {
        let state = self.lock();
        let (key, entry) = state.access_keys.get(id)?;
        Some(match &entry.owner {
            KeyOwner::User { arn, .. } => arn.clone(),
            KeyOwner::Root { .. } => format!("arn:aws:iam::{}:root", key.account),
        })
    }

    /// Stores when keys were last used (see [`crate::store::Store::record_last_used`]).
    pub fn record_last_used(&self, entries: &[(String, LastUsed)]) -> Result<(), IamError> {
        self.store.record_last_used(entries).map_err(|e| IamError::ServiceFailure(e.to_string()))
    }

    /// At first start: creates the root's access key of the default account if it has none.
    /// Returns it, with its secret, only when it was created.
    pub fn bootstrap_root(&self) -> Result<Option<(AccessKey, Secret)>, IamError> {
        let account = self.default_account.clone();
        if owned_by(&self.lock(), &account, None).next().is_some() {
            return Ok(None);
        }
        self.create_access_key(&account, None).map(Some)
    }
}

fn owned_key<'s>(
    state: &'s State,
    account: &str,
    user: Option<&str>,
    id: &str,
) -> Result<&'s AccessKey, IamError> {
    if let Some(name) = user {
        user_of(state, account, name)?;
    }
    state
        .access_keys
        .get(id)
        .map(|(k, _)| k)
        .filter(|k| {
            k.account == account
                && match (&k.user, user) {
                    (Some(owner), Some(user)) => owner.eq_ignore_ascii_case(user),
                    (None, None) => true,
                    _ => false,
                }
        })
        .ok_or_else(|| no_such_key(id))
}
