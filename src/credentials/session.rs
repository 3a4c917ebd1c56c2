//! STS session tokens: the whole session, sealed.
//!
//! A token carries everything a decision needs about its session (who, which session policies
//! and tags, when it expires, whether MFA was used), authenticated and encrypted with the
//! session-token key. Any sidecar holding the master key verifies it without a store lookup, and
//! nothing about a session is stored: it ends when its token expires.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::Secret;
use super::keyring::{KeyRing, Purpose};
use crate::iam::model::Tag;
use crate::policy::{self, Policy, PolicyKind};

/// Whose session it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionIdentity {
    /// From AssumeRole.
    Role {
        /// The role's ARN (with its path) and unique id.
        arn: String,
        name: String,
        id: String,
        session_name: String,
        /// Assumed with the credentials of another role session.
        chained: bool,
    },
    /// From GetSessionToken by an IAM user.
    User { arn: String, name: String, id: String },
    /// From GetSessionToken by the account root.
    Root,
}

/// A temporary session, as sealed in its token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// `ASIA...`: the access key id the session signs with.
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub account: String,
    pub identity: SessionIdentity,
    /// The inline session policy, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Managed session policies, by ARN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_arns: Vec<String>,
    /// Session tags, including those inherited as transitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Keys of the tags that pass on to sessions chained from this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_tag_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// Seconds since the epoch.
    pub issued: i64,
    pub expires: i64,
    /// When MFA was last verified for this session (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_authenticated: Option<i64>,
    /// A user's session from a console (password) sign-in rather than GetSessionToken.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub console: bool,
    /// The inline policy, compiled on first use.
    #[serde(skip)]
    compiled: OnceLock<Result<Option<Arc<Policy>>, String>>,
    #[serde(skip)]
    issue_time: OnceLock<String>,
}

impl Session {
    /// A session with no policies, tags, source identity or MFA: set those fields as needed.
    pub fn new(
        access_key_id: String,
        secret_access_key: Secret,
        account: String,
        identity: SessionIdentity,
        issued: i64,
        expires: i64,
    ) -> Session {
        Session {
            access_key_id,
            secret_access_key,
            account,
            identity,
            policy: None,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            transitive_tag_keys: Vec::new(),
            source_identity: None,
            issued,
            expires,
            mfa_authenticated: None,
            console: false,
            compiled: OnceLock::new(),
            issue_time: OnceLock::new(),
        }
    }

    /// `aws:TokenIssueTime`: when the session was issued, in ISO 8601.
    pub fn issue_time(&self) -> String {
        self.issue_time
            .get_or_init(|| {
                let issued = jiff::Timestamp::from_second(self.issued).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                issued.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            })
            .clone()
    }

    /// The ARN this session acts as: `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` for a
    /// role session; the user (or root) itself for GetSessionToken.
    pub fn principal_arn(&self) -> String {
        match &self.identity {
            SessionIdentity::Role { name, session_name, .. } => {
                format!("arn:aws:sts::{}:assumed-role/{name}/{session_name}", self.account)
            }
            SessionIdentity::User { arn, .. } => arn.clone(),
            SessionIdentity::Root => format!("arn:aws:iam::{}:root", self.account),
        }
    }

    /// `aws:userid`: `ROLEID:SESSION` for a role session, the user's id, or the account.
    pub fn user_id(&self) -> String {
        match &self.identity {
            SessionIdentity::Role { id, session_name, .. } => format!("{id}:{session_name}"),
            SessionIdentity::User { id, .. } => id.clone(),
            SessionIdentity::Root => self.account.clone(),
        }
    }

    /// The inline session policy, compiled once per opened token. It was validated when the
    /// session was created, so an error here means the policy language changed since.
    pub fn inline_policy(&self) -> Result<Option<&Arc<Policy>>, String> {
        let compiled = self.compiled.get_or_init(|| {
            self.policy
                .as_deref()
                .map(|text| {
                    policy::parse("session-policy", text, PolicyKind::Session)
                        .map(|parsed| Arc::new(parsed.policy))
                        .map_err(|e| format!("the session policy does not compile: {e}"))
                })
                .transpose()
        });
        compiled.as_ref().map(Option::as_ref).map_err(Clone::clone)
    }

    /// Seals the session into its token.
    pub fn seal(&self, keyring: &KeyRing) -> String {
        // Serialising this plain struct to JSON cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        STANDARD.encode(keyring.seal(Purpose::SessionToken, TOKEN_CONTEXT, &json))
    }

    /// Opens a token; `None` for anything that is not a token sealed by one of the keys.
    pub fn open(keyring: &KeyRing, token: &str) -> Option<Session> {
        let sealed = STANDARD.decode(token).ok()?;
        let json = keyring.open(Purpose::SessionToken, TOKEN_CONTEXT, &sealed).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

const TOKEN_CONTEXT: &[u8] = b"sts session token v1";

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let mut session = Session::new(
            "ASIAEXAMPLE".into(),
            Secret::new("s3cr3t"),
            "111122223333".into(),
            SessionIdentity::Role {
                arn: "arn:aws:iam::111122223333:role/app/Reader".into(),
                name: "Reader".into(),
                id: "AROAEXAMPLE".into(),
                session_name: "alice".into(),
                chained: false,
            },
            1,
            2,
        );
        session.tags = vec![Tag { key: "team".into(), value: "blue".into() }];
        session
    }

    #[test]
    fn tokens_open_with_the_keyring_that_sealed_them_only() {
        let ring = KeyRing::ephemeral();
        let token = session().seal(&ring);
        assert!(!token.contains("s3cr3t") && !token.contains("alice"));
        let opened = Session::open(&ring, &token).unwrap();
        assert_eq!(opened.principal_arn(), "arn:aws:sts::111122223333:assumed-role/Reader/alice");
        assert_eq!(opened.user_id(), "AROAEXAMPLE:alice");
        assert_eq!(opened.secret_access_key, Secret::new("s3cr3t"));
        assert!(Session::open(&KeyRing::ephemeral(), &token).is_none());
        let mut tampered = token.into_bytes();
        tampered[40] = if tampered[40] == b'A' { b'B' } else { b'A' };
        assert!(Session::open(&ring, std::str::from_utf8(&tampered).unwrap()).is_none());
    }
}
