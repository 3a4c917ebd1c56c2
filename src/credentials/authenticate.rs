//! From a signed request to the principal that signed it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::keyring::KeyRing;
use super::session::Session;
use super::sigv4::{self, AuthError, ErrorCode, HttpRequest, SigningKey};
use super::{Secret, TEMPORARY_PREFIX};
use crate::iam::model::LastUsed;
use crate::snapshot::{Directory, KeyOwner};

/// Entries kept in each cache before it is cleared: enough for every key and session of a busy
/// sidecar, small enough that a flood of distinct credentials cannot grow memory without bound.
const CACHE_ENTRIES: usize = 16_384;

/// Who signed a request.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A user, with a long-term access key.
    User { account: String, name: String, arn: String },
    /// The account root, with a long-term access key.
    Root { account: String },
    /// A temporary session from STS.
    Session(Arc<Session>),
}

/// A request whose signature was verified.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub access_key_id: String,
    pub caller: Caller,
    /// The service and region the request was signed for.
    pub service: String,
    pub region: String,
}

impl Authenticated {
    /// The ARN the caller acts as, in the form the policy engine takes.
    pub fn principal_arn(&self) -> String {
        match &self.caller {
            Caller::User { arn, .. } => arn.clone(),
            Caller::Root { account } => format!("arn:aws:iam::{account}:root"),
            Caller::Session(session) => session.principal_arn(),
        }
    }

    pub fn account(&self) -> &str {
        match &self.caller {
            Caller::User { account, .. } | Caller::Root { account } => account,
            Caller::Session(session) => &session.account,
        }
    }

    pub fn session(&self) -> Option<&Session> {
        match &self.caller {
            Caller::Session(session) => Some(session),
            _ => None,
        }
    }

    pub fn is_root(&self) -> bool {
        match &self.caller {
            Caller::Root { .. } => true,
            Caller::Session(session) => matches!(session.identity, super::session::SessionIdentity::Root),
            Caller::User { .. } => false,
        }
    }
}

/// A session token as presented, and the session it opened to.
type OpenedToken = (Box<str>, Arc<Session>);

/// Verifies signed requests against the access keys of a snapshot and the session tokens its
/// keyring sealed. Shared by every request; its caches are behind short-held locks.
pub struct Authenticator {
    keyring: Arc<KeyRing>,
    /// The signing key of each access key for the scope it was last used with, and the secret
    /// it was derived from (a key id's secret can change through an import).
    signing_keys: Mutex<HashMap<String, (sigv4::Scope, Secret, SigningKey)>>,
    /// Opened session tokens, by their access key id (unique to each session).
    sessions: Mutex<HashMap<String, OpenedToken>>,
    replays: Option<Mutex<ReplayCache>>,
    /// Uses not yet recorded: when (seconds), service and region.
    last_used: Mutex<HashMap<String, (i64, String, String)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("rejects_replays", &self.replays.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The caches hold no invariant a panic could break half-way.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Authenticator {
    /// `replay_capacity`: how many recent signatures to remember in order to refuse a request
    /// signed by `Authorization` header that is presented twice; `0` accepts replays within the
    /// 15 minutes, as AWS does.
    pub fn new(keyring: Arc<KeyRing>, replay_capacity: usize) -> Authenticator {
        Authenticator {
            keyring,
            signing_keys: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            replays: (replay_capacity > 0).then(|| Mutex::new(ReplayCache::new(replay_capacity))),
            last_used: Mutex::new(HashMap::new()),
        }
    }

    pub fn keyring(&self) -> &Arc<KeyRing> {
        &self.keyring
    }

    /// Authenticates `request` at time `now`. `question` is what the request is used for (the
    /// action and resource decided for it): a signature is refused when it is presented twice
    /// for the same question, so that a service may ask several questions about one request.
    /// Without a question, replays are accepted as AWS accepts them (the AWS Query API, whose
    /// clients may send the same signed request twice within a second).
    pub fn authenticate(
        &self,
        directory: &Directory,
        request: &HttpRequest<'_>,
        now: Timestamp,
        question: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let signature = sigv4::parse(request)?;
        sigv4::check_time(&signature, now)?;
        let (caller, secret) = if signature.access_key_id.starts_with(TEMPORARY_PREFIX) {
            let token = signature.session_token.as_deref().ok_or_else(AuthError::invalid_token)?;
            let session = self.open_session(&signature.access_key_id, token)?;
            if now.as_second() >= session.expires {
                return Err(AuthError::new(
                    ErrorCode::ExpiredToken,
                    "The security token included in the request is expired",
                ));
            }
            let secret = session.secret_access_key.clone();
            (Caller::Session(session), secret)
        } else {
            let entry = directory
                .access_keys
                .get(signature.access_key_id.as_str())
                .filter(|entry| entry.active)
                .ok_or_else(AuthError::invalid_token)?;
            let secret = entry.secret.clone().ok_or_else(AuthError::invalid_token)?;
            let caller = match &entry.owner {
                KeyOwner::User { account, name, arn } => {
                    Caller::User { account: account.clone(), name: name.clone(), arn: arn.clone() }
                }
                KeyOwner::Root { account } => Caller::Root { account: account.clone() },
            };
            (caller, secret)
        };
        let (key, cached) = self.signing_key(&signature.access_key_id, &secret, &signature.scope);
        sigv4::verify(request, &signature, &key)?;
        if !cached {
            self.remember_signing_key(&signature.access_key_id, secret, &signature.scope, key);
        }
        if signature.presigned_expires.is_none()
            && let Some(question) = question
            && let Some(replays) = &self.replays
            && !lock(replays).first_use(
                Sha256::new()
                    .chain_update(signature.signature())
                    .chain_update([0])
                    .chain_update(question)
                    .finalize()
                    .into(),
                signature.valid_until().as_second(),
                now.as_second(),
            )
        {
            return Err(AuthError::new(
                ErrorCode::AccessDenied,
                "The request signature has already been used; sign each request anew.",
            ));
        }
        if !matches!(caller, Caller::Session(_)) {
            self.used(&signature.access_key_id, now.as_second(), &signature.scope);
        }
        Ok(Authenticated {
            access_key_id: signature.access_key_id,
            caller,
            service: signature.scope.service,
            region: signature.scope.region,
        })
    }

    /// Notes a use of a long-term key; allocates only when the second, service or region
    /// changes.
    fn used(&self, access_key_id: &str, at: i64, scope: &sigv4::Scope) {
        let mut pending = lock(&self.last_used);
        match pending.get_mut(access_key_id) {
            Some((when, service, region)) if *service == scope.service && *region == scope.region => {
                *when = at
            }
            _ => {
                pending.insert(access_key_id.to_string(), (at, scope.service.clone(), scope.region.clone()));
            }
        }
    }

    /// Takes the last-used records gathered since the previous call, for the store.
    pub fn take_last_used(&self) -> Vec<(String, LastUsed)> {
        lock(&self.last_used).drain().map(|(id, used)| (id, last_used(used))).collect()
    }

    /// The most recent use not yet taken, if any.
    pub fn pending_last_used(&self, access_key_id: &str) -> Option<LastUsed> {
        lock(&self.last_used).get(access_key_id).cloned().map(last_used)
    }

    /// Opens the session token of `access_key_id`, or finds it already opened. A cached
    /// session is used only for the very token it was opened from.
    fn open_session(&self, access_key_id: &str, token: &str) -> Result<Arc<Session>, AuthError> {
        if let Some((cached, session)) = lock(&self.sessions).get(access_key_id)
            && constant_time_eq::constant_time_eq(cached.as_bytes(), token.as_bytes())
        {
            return Ok(session.clone());
        }
        let session = Arc::new(Session::open(&self.keyring, token).ok_or_else(AuthError::invalid_token)?);
        if session.access_key_id != access_key_id {
            return Err(AuthError::invalid_token());
        }
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= CACHE_ENTRIES {
            sessions.clear();
        }
        sessions.insert(access_key_id.to_string(), (token.into(), session.clone()));
        Ok(session)
    }

    /// The signing key for `scope`, and whether it came from the cache.
    fn signing_key(&self, access_key_id: &str, secret: &Secret, scope: &sigv4::Scope) -> (SigningKey, bool) {
        if let Some((cached_scope, cached_secret, key)) = lock(&self.signing_keys).get(access_key_id)
            && cached_scope == scope
            && cached_secret == secret
        {
            return (*key, true);
        }
        (SigningKey::derive(secret.expose(), scope), false)
    }

    /// Caches a signing key once a request verified with it: unverified requests cannot fill
    /// the cache.
    fn remember_signing_key(
        &self,
        access_key_id: &str,
        secret: Secret,
        scope: &sigv4::Scope,
        key: SigningKey,
    ) {
        let mut keys = lock(&self.signing_keys);
        if keys.len() >= CACHE_ENTRIES {
            keys.clear();
        }
        keys.insert(access_key_id.to_string(), (scope.clone(), secret, key));
    }
}

fn last_used((at, service, region): (i64, String, String)) -> LastUsed {
    let date = jiff::Timestamp::from_second(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    LastUsed { date: date.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(), service, region }
}

/// Signatures seen while they are still acceptable, oldest first.
struct ReplayCache {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<([u8; 32], i64)>,
    capacity: usize,
}

impl ReplayCache {
    fn new(capacity: usize) -> ReplayCache {
        ReplayCache { seen: HashSet::new(), order: VecDeque::new(), capacity }
    }

    /// Records `signature` (valid until `expires`) and says whether it was new. When full, the
    /// oldest entry is forgotten: memory stays bounded at the cost of the oldest protection.
    fn first_use(&mut self, digest: [u8; 32], expires: i64, now: i64) -> bool {
        while let Some((oldest, until)) = self.order.front() {
            if *until >= now && self.order.len() < self.capacity {
                break;
            }
            self.seen.remove(oldest);
            self.order.pop_front();
        }

        if !self.seen.insert(digest) {
            return false;
        }
        self.order.push_back((digest, expires));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_cache_refuses_a_second_use_and_stays_bounded() {
        let mut cache = ReplayCache::new(2);
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        assert!(cache.first_use(a, 100, 0));
        assert!(!cache.first_use(a, 100, 1));
        assert!(cache.first_use(b, 100, 1));
        assert!(cache.first_use(c, 100, 1));
        assert_eq!(cache.order.len(), 2);
        // Expired entries are forgotten.
        assert!(cache.first_use(b, 300, 200));
        assert_eq!(cache.order.len(), 1);
    }
}
