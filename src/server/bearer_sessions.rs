//! Role sessions made for bearer tokens on Envoy's path, kept while they may be reused.
//!
//! A client that calls AssumeRoleWithWebIdentity once uses the session it gets for every
//! request until it expires. A client behind Envoy presents its token instead, on every request;
//! without this cache each one would evaluate the role's trust policy and mint a fresh session,
//! with its own access key id in the audit log. Reusing the session for the same token makes
//! the proxied client look like the direct one. The token itself is still verified every time
//! (signature, issuer, audience, expiry), before the cache is consulted.
//!
//! An entry is only reused for the same token bytes, role, source address and transport, and
//! only while the snapshot that made it is current: every publish (a bundle reload, any
//! stored-identity change such as a new trust policy or a deleted role) makes every entry miss.
//! It is also dropped when the token expires, when the session does, and after
//! [`MAX_REUSE_SECONDS`] at most: a trust policy's time conditions (`aws:CurrentTime`) are
//! evaluated when the session is made, so a cut-off can be overrun by that much, as AWS's own
//! sessions outlive the trust policy that granted them by up to their duration.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::Digest as _;

use crate::credentials::Authenticated;
use crate::snapshot::Snapshot;

/// Longest time a session made for a token is reused without checking the token again.
pub const MAX_REUSE_SECONDS: i64 = 60;

/// Entries kept at most; a full cache starts over, which costs each client one trust
/// evaluation.
const CAPACITY: usize = 10_000;

/// What a cached session was made for. The token is kept as its digest: the cache never holds
/// a credential.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    token: [u8; 32],
    role: String,
    source_ip: Option<String>,
    secure_transport: bool,
    /// The snapshot's generation, which every publish advances.
    generation: u64,
}

impl Key {
    pub fn new(
        token: &str,
        role: &str,
        source_ip: Option<&str>,
        secure_transport: bool,
        snapshot: &Snapshot,
    ) -> Key {
        Key::at(token, role, source_ip, secure_transport, snapshot.generation)
    }

    fn at(token: &str, role: &str, source_ip: Option<&str>, secure_transport: bool, generation: u64) -> Key {
        Key {
            token: sha2::Sha256::digest(token.as_bytes()).into(),
            role: role.to_string(),
            source_ip: source_ip.map(str::to_string),
            secure_transport,
            generation,
        }
    }
}

struct Entry {
    caller: Authenticated,
    /// Epoch second from which the entry is no longer used.
    until: i64,
}

#[derive(Default)]
pub struct BearerSessions {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl BearerSessions {
    /// The session made earlier for `key`, if it may still be used at `now` (epoch seconds).
    pub fn get(&self, key: &Key, now: i64) -> Option<Authenticated> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(key).filter(|entry| now < entry.until).map(|entry| entry.caller.clone())
    }

    /// Keeps `caller`, made at `now` for a token that expires at `token_expires`, for reuse.
    pub fn insert(&self, key: Key, caller: Authenticated, now: i64, token_expires: i64) {
        let session_expires = caller.session().map_or(now, |session| session.expires);
        let until = token_expires.min(session_expires).min(now + MAX_REUSE_SECONDS);
        if until <= now {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, Entry { caller, until });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::credentials::session::{Session, SessionIdentity};
    use crate::credentials::{Caller, Secret};

    const NOW: i64 = 1_800_000_000;

    const ROLE: &str = "arn:aws:iam::111122223333:role/partner-app";

    fn key(token: &str, generation: u64) -> Key {
        Key::at(token, ROLE, Some("192.0.2.1"), true, generation)
    }

    fn caller(expires: i64) -> Authenticated {
        let identity = SessionIdentity::Role {
            arn: "arn:aws:iam::111122223333:role/partner-app".into(),
            name: "partner-app".into(),
            id: "AROAEXAMPLE".into(),
            session_name: "partner-1".into(),
            chained: false,
        };
        let session = Session::new(
            "ASIAEXAMPLE".into(),
            Secret::generate(),
            "111122223333".into(),
            identity,
            NOW,
            expires,
        );
        Authenticated {
            access_key_id: session.access_key_id.clone(),
            caller: Caller::Session(Arc::new(session)),
            service: "sts".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn the_same_token_reuses_its_session_until_the_first_limit() {
        let sessions = BearerSessions::default();
        sessions.insert(key("t1", 1), caller(NOW + 3_600), NOW, NOW + 3_600);
        let reused = sessions.get(&key("t1", 1), NOW + 1).expect("reused");
        assert_eq!(reused.access_key_id, "ASIAEXAMPLE");
        assert!(sessions.get(&key("t1", 1), NOW + MAX_REUSE_SECONDS - 1).is_some());
        assert!(
            sessions.get(&key("t1", 1), NOW + MAX_REUSE_SECONDS).is_none(),
            "checked again after a minute"
        );

        // A token about to expire is reused only until it does.
        sessions.insert(key("t2", 1), caller(NOW + 3_600), NOW, NOW + 10);
        assert!(sessions.get(&key("t2", 1), NOW + 9).is_some());
        assert!(sessions.get(&key("t2", 1), NOW + 10).is_none());
        // So is a session.
        sessions.insert(key("t3", 1), caller(NOW + 5), NOW, NOW + 3_600);
        assert!(sessions.get(&key("t3", 1), NOW + 4).is_some());
        assert!(sessions.get(&key("t3", 1), NOW + 5).is_none());
        // An expired token is never kept.
        sessions.insert(key("t4", 1), caller(NOW + 3_600), NOW, NOW);
        assert!(sessions.get(&key("t4", 1), NOW).is_none());
    }

    #[test]
    fn anything_else_about_the_request_or_the_snapshot_misses() {
        let sessions = BearerSessions::default();
        sessions.insert(key("t1", 1), caller(NOW + 3_600), NOW, NOW + 3_600);
        assert!(sessions.get(&key("t2", 1), NOW).is_none(), "another token");
        assert!(sessions.get(&key("t1", 2), NOW).is_none(), "a newer snapshot");
        let other = Key::at("t1", ROLE, Some("198.51.100.1"), true, 1);
        assert!(sessions.get(&other, NOW).is_none(), "another address");
        assert!(sessions.get(&Key::at("t1", ROLE, None, true, 1), NOW).is_none(), "no address");
        assert!(sessions.get(&Key::at("t1", ROLE, Some("192.0.2.1"), false, 1), NOW).is_none(), "plain HTTP");
        let other = Key::at("t1", "arn:aws:iam::111122223333:role/other", Some("192.0.2.1"), true, 1);
        assert!(sessions.get(&other, NOW).is_none(), "another role");
    }

    #[test]
    fn a_full_cache_makes_room() {
        let sessions = BearerSessions::default();
        for i in 0..CAPACITY {
            sessions.insert(key(&format!("t{i}"), 1), caller(NOW + 3_600), NOW, NOW + 3_600);
        }
        assert!(sessions.get(&key("t0", 1), NOW).is_some());
        sessions.insert(key("new", 1), caller(NOW + 3_600), NOW, NOW + 3_600);
        assert!(sessions.get(&key("new", 1), NOW).is_some());
        assert!(sessions.get(&key("t0", 1), NOW).is_none(), "started over");
        assert_eq!(sessions.entries.lock().unwrap().len(), 1);
    }
}
