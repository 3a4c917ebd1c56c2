//! Temporary credentials, as AWS STS issues them: AssumeRole, GetSessionToken and
//! GetCallerIdentity.
//!
//! A session is a [`Session`] sealed into its token: issuing one writes nothing. AssumeRole is
//! decided by the engine like any request, as `sts:AssumeRole` on the role's ARN: the role's
//! trust policy is the resource-based policy, and across accounts the caller's own policies
//! must allow it too. Session tags need `sts:TagSession` and a source identity
//! `sts:SetSourceIdentity`, as in AWS.

use std::sync::Arc;

use crate::authorize::{self, Query, Verified};
use crate::credentials::oidc::{VerifiedToken, WebIdentity};
use crate::credentials::session::SessionIdentity;
use crate::credentials::{
    Authenticated, Caller, KeyRing, Secret, Session, TEMPORARY_PREFIX, new_access_key_id,
};
use crate::eval::Context;
use crate::iam::model::{Role, Tag};
use crate::iam::{Iam, IamError};
use crate::policy::{self, PolicyKind};
use crate::snapshot::Snapshot;

/// Session durations, in seconds.
pub const MIN_DURATION: u32 = 900;
pub const DEFAULT_ROLE_DURATION: u32 = 3_600;
/// Role chaining caps a session at one hour.
pub const CHAINED_MAX_DURATION: u32 = 3_600;
pub const MAX_SESSION_TOKEN_DURATION: u32 = 129_600;
pub const DEFAULT_SESSION_TOKEN_DURATION: u32 = 43_200;
pub const ROOT_MAX_SESSION_TOKEN_DURATION: u32 = 3_600;
/// Session policy limits.
pub const MAX_INLINE_POLICY_CHARS: usize = 2_048;
pub const MAX_POLICY_ARNS: usize = 10;
/// Session tag limits.
pub const MAX_SESSION_TAGS: usize = 50;

/// An STS failure with AWS's error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StsError {
    pub code: &'static str,
    pub message: String,
}

fn validation(message: impl Into<String>) -> StsError {
    StsError { code: "ValidationError", message: message.into() }
}

fn access_denied(message: impl Into<String>) -> StsError {
    StsError { code: "AccessDenied", message: message.into() }
}

impl From<IamError> for StsError {
    fn from(error: IamError) -> StsError {
        match error {
            IamError::AccessDenied(message) | IamError::InvalidAuthenticationCode(message) => {
                access_denied(message)
            }
            IamError::ServiceFailure(message) => StsError { code: "ServiceFailure", message },
            other => validation(other.to_string()),
        }
    }
}

/// AssumeRole's parameters. Its `Debug` leaves out the MFA code and the external id.
#[derive(Clone, Default)]
pub struct AssumeRole {
    pub role_arn: String,
    pub role_session_name: String,
    /// 0 for the default of one hour.
    pub duration_seconds: u32,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub tags: Vec<Tag>,
    pub transitive_tag_keys: Vec<String>,
    pub external_id: Option<String>,
    /// An MFA device of the caller and its current code.
    pub mfa: Option<(String, String)>,
    pub source_identity: Option<String>,
}

impl std::fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRole")
            .field("role_arn", &self.role_arn)
            .field("role_session_name", &self.role_session_name)
            .field("duration_seconds", &self.duration_seconds)
            .field("policy_arns", &self.policy_arns)
            .field("tags", &self.tags)
            .field("mfa_serial", &self.mfa.as_ref().map(|(serial, _)| serial))
            .field("source_identity", &self.source_identity)
            .finish_non_exhaustive()
    }
}

/// AssumeRoleWithWebIdentity's parameters. Its `Debug` leaves out the token.
#[derive(Clone, Default)]
pub struct WebIdentityRequest {
    pub role_arn: String,
    pub role_session_name: String,
    pub web_identity_token: String,
    pub duration_seconds: u32,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    /// The caller's address, for `aws:SourceIp` in the trust policy.
    pub source_ip: Option<String>,
}

impl std::fmt::Debug for WebIdentityRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentityRequest")
            .field("role_arn", &self.role_arn)
            .field("role_session_name", &self.role_session_name)
            .finish_non_exhaustive()
    }
}

/// Where an unsigned STS request came from: its trust policy may ask.
#[derive(Clone, Copy, Debug, Default)]
pub struct Connection<'a> {
    pub source_ip: Option<&'a str>,
    pub secure_transport: bool,
}

/// Newly issued temporary credentials.
#[derive(Clone)]
pub struct Issued {
    pub session: Arc<Session>,
    pub session_token: String,
    /// The session's policies and tags as a percentage of what fits.
    pub packed_policy_size: u32,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("access_key_id", &self.session.access_key_id)
            .field("principal", &self.session.principal_arn())
            .finish_non_exhaustive()
    }
}

impl Issued {
    pub fn expiration(&self) -> String {
        jiff::Timestamp::from_second(self.session.expires)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    }
}

/// What STS needs: the snapshot that decides, the identities (roles and MFA devices) and the
/// keys that seal tokens.
pub struct Sts<'a> {
    pub snapshot: &'a Snapshot,
    pub iam: &'a Iam,
    pub keyring: &'a KeyRing,
    pub now: jiff::Timestamp,
}

/// What AssumeRole decided before the trust policy is asked.
struct Issue<'r> {
    account: &'r str,
    role_name: &'r str,
    duration: u32,
    tags: Vec<Tag>,
    transitive_tag_keys: Vec<String>,
    mfa_at: Option<i64>,
    chained: bool,
    inherited_identity: Option<String>,
}

/// `[\w+=,.@-]`: the characters of session names and source identities.
fn name_chars(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

fn check_name(field: &str, value: &str) -> Result<(), StsError> {
    if !(2..=64).contains(&value.chars().count()) || !name_chars(value) {
        return Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must \
             have length between 2 and 64 and satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    Ok(())
}

impl Sts<'_> {
    pub fn assume_role(&self, caller: &Authenticated, request: AssumeRole) -> Result<Issued, StsError> {
        check_name("roleSessionName", &request.role_session_name)?;
        if caller.is_root() {
            return Err(access_denied("Roles may not be assumed by root accounts."));
        }
        let (account, role_name) = parse_role_arn(&request.role_arn)?;
        let caller_session = caller.session();
        let chained = matches!(caller_session.map(|s| &s.identity), Some(SessionIdentity::Role { .. }));
        let duration = match request.duration_seconds {
            0 => DEFAULT_ROLE_DURATION,
            seconds => seconds,
        };
        if !(MIN_DURATION..=43_200).contains(&duration) {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: \
                 Member must have value between {MIN_DURATION} and 43200"
            )));
        }
        if chained && duration > CHAINED_MAX_DURATION {
            return Err(validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            ));
        }
        self.check_session_policies(request.policy.as_deref(), &request.policy_arns)?;
        if let Some(source_identity) = &request.source_identity {
            check_name("sourceIdentity", source_identity)?;
            if source_identity.to_ascii_lowercase().starts_with("aws:") {
                return Err(validation("SourceIdentity must not begin with 'aws:'."));
            }
        }
        let inherited_identity = caller_session.and_then(|s| s.source_identity.clone());
        if let (Some(inherited), Some(requested)) = (&inherited_identity, &request.source_identity)
            && inherited != requested
        {
            return Err(access_denied(
                "The source identity of a chained session cannot be changed: it must stay the one the first session set.",
            ));
        }
        let (tags, transitive_tag_keys) = session_tags(caller_session, &request)?;

        // MFA: a code given now, or the MFA of the session the caller signs with.
        let mfa_at = match &request.mfa {
            Some((serial, code)) => {
                let user = match (&caller.caller, caller_session.map(|s| &s.identity)) {
                    (Caller::User { name, .. }, _) | (_, Some(SessionIdentity::User { name, .. })) => {
                        name.clone()
                    }
                    _ => return Err(access_denied("Only IAM users can authenticate with an MFA device.")),
                };
                self.iam.verify_mfa_code(caller.account(), &user, serial, code)?;
                Some(self.now.as_second())
            }
            None => caller_session.and_then(|s| s.mfa_authenticated),
        };
        let issue = Issue {
            account,
            role_name,
            duration,
            tags,
            transitive_tag_keys,
            mfa_at,
            chained,
            inherited_identity,
        };
        self.issue_role(caller, &request, issue)
    }

    fn issue_role(
        &self,
        caller: &Authenticated,
        request: &AssumeRole,
        issue: Issue<'_>,
    ) -> Result<Issued, StsError> {
        let Issue {
            account,
            role_name,
            duration,
            tags,
            transitive_tag_keys,
            mfa_at,
            chained,
            inherited_identity,
        } = issue;
        let denied = || {
            access_denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                caller.principal_arn(),
                request.role_arn
            ))
        };
        // A role that does not exist is refused like one that may not be assumed.
        let role = self.iam.get_role(account, role_name).map_err(|_| denied())?;
        if role.arn() != request.role_arn {
            return Err(denied());
        }
        let mut context = Context::default();
        context.insert("sts:RoleSessionName", [request.role_session_name.as_str()]);
        if let Some(external_id) = &request.external_id {
            context.insert("sts:ExternalId", [external_id.as_str()]);
        }
        for tag in &request.tags {
            context.insert(&format!("aws:RequestTag/{}", tag.key), [tag.value.as_str()]);
        }
        if !request.tags.is_empty() {
            context.insert("aws:TagKeys", request.tags.iter().map(|t| t.key.as_str()));
        }
        if !request.transitive_tag_keys.is_empty() {
            context.insert("sts:TransitiveTagKeys", request.transitive_tag_keys.iter().map(String::as_str));
        }
        // A source identity, set now or carried from the calling session, needs
        // sts:SetSourceIdentity from every role of the chain.
        let source_identity = request.source_identity.clone().or(inherited_identity);
        if let Some(source_identity) = &source_identity {
            context.insert("sts:SourceIdentity", [source_identity.as_str()]);
        }
        let mut actions = vec!["sts:AssumeRole"];
        if !request.tags.is_empty() || !request.transitive_tag_keys.is_empty() {
            actions.push("sts:TagSession");
        }
        if source_identity.is_some() {
            actions.push("sts:SetSourceIdentity");
        }
        for action in actions {
            let query = Query {
                principal: "",
                action,
                resource: &request.role_arn,
                resource_account: "",
                context: context.clone(),
                explain: true,
                verified: Some(Verified {
                    caller,
                    source_ip: None,
                    secure_transport: false,
                    now: self.now,
                    mfa_at,
                }),
            };
            let answer = authorize::decide(self.snapshot, query).map_err(|e| validation(e.to_string()))?;
            if !answer.decision.is_allowed() {
                let reason = answer.explanation.map(|e| e.reason).unwrap_or_default();
                return Err(access_denied(reason));
            }
        }

        // Only now that the caller may assume the role does it learn the role's limit.
        let mut session = self.role_session(&role, &request.role_session_name, duration, chained)?;
        session.policy = request.policy.clone();
        session.policy_arns = request.policy_arns.clone();
        session.tags = tags;
        session.transitive_tag_keys = transitive_tag_keys;
        session.source_identity = source_identity;
        session.mfa_authenticated = mfa_at;
        let packed_policy_size = packed_size(&session)?;
        let session_token = session.seal(self.keyring);
        Ok(Issued { session: Arc::new(session), session_token, packed_policy_size })
    }

    /// DecodeAuthorizationMessage: the explanation sealed in a denial, for a caller allowed
    /// `sts:DecodeAuthorizationMessage`.
    pub fn decode_authorization_message(
        &self,
        caller: &Authenticated,
        encoded: &str,
    ) -> Result<String, StsError> {
        let query = Query {
            principal: "",
            action: "sts:DecodeAuthorizationMessage",
            resource: "*",
            resource_account: "",
            context: Context::default(),
            explain: true,
            verified: Some(Verified {
                caller,
                source_ip: None,
                secure_transport: false,
                now: self.now,
                mfa_at: None,
            }),
        };
        let answer = authorize::decide(self.snapshot, query).map_err(|e| validation(e.to_string()))?;
        if !answer.decision.is_allowed() {
            return Err(access_denied(answer.explanation.map(|e| e.reason).unwrap_or_default()));
        }
        crate::authorization_message::decode(self.keyring, encoded)
            .map_err(|e| StsError { code: "InvalidAuthorizationMessageException", message: e.to_string() })
    }

    /// A new session of `role`, within the role's maximum session duration.
    fn role_session(
        &self,
        role: &Role,
        session_name: &str,
        duration: u32,
        chained: bool,
    ) -> Result<Session, StsError> {
        if duration > role.max_session_duration {
            return Err(validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ));
        }
        let now = self.now.as_second();
        Ok(Session::new(
            new_access_key_id(TEMPORARY_PREFIX),
            Secret::generate(),
            role.account.clone(),
            SessionIdentity::Role {
                arn: role.arn(),
                name: role.name.clone(),
                id: role.id.clone(),
                session_name: session_name.to_string(),
                chained,
            },
            now,
            now + i64::from(duration),
        ))
    }

    /// The inline and managed session policies: one limit of plain text shared by both, a
    /// policy that compiles, at most ten managed policies that exist.
    fn check_session_policies(&self, policy: Option<&str>, policy_arns: &[String]) -> Result<(), StsError> {
        let policy_chars = policy.map_or(0, |p| p.chars().count())
            + policy_arns.iter().map(|arn| arn.chars().count()).sum::<usize>();
        if policy_chars > MAX_INLINE_POLICY_CHARS {
            return Err(validation(format!(
                "1 validation error detected: the session policies (Policy and PolicyArns) have {policy_chars} \
                 characters; Member must have length less than or equal to {MAX_INLINE_POLICY_CHARS}"
            )));
        }
        if let Some(text) = policy {
            policy::parse("session policy", text, PolicyKind::Session)
                .map_err(|e| StsError { code: "MalformedPolicyDocument", message: e.to_string() })?;
        }
        if policy_arns.len() > MAX_POLICY_ARNS {
            return Err(validation(format!(
                "at most {MAX_POLICY_ARNS} managed session policies (PolicyArns) are allowed"
            )));
        }
        if let Some(missing) = policy_arns.iter().find(|arn| self.snapshot.managed_policy(arn).is_none()) {
            return Err(validation(format!("Policy {missing} does not exist or is not attachable.")));
        }
        Ok(())
    }

    /// AssumeRoleWithWebIdentity: an OpenID Connect token of a configured provider, trusted by
    /// the role's trust policy as a `Federated` principal.
    pub fn assume_role_with_web_identity(
        &self,
        web: &WebIdentity,
        request: WebIdentityRequest,
    ) -> Result<(Issued, VerifiedToken), StsError> {
        check_name("roleSessionName", &request.role_session_name)?;
        parse_role_arn(&request.role_arn)?;
        let duration =
            if request.duration_seconds == 0 { DEFAULT_ROLE_DURATION } else { request.duration_seconds };
        if !(MIN_DURATION..=43_200).contains(&duration) {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: \
                 Member must have value between {MIN_DURATION} and 43200"
            )));
        }
        self.check_session_policies(request.policy.as_deref(), &request.policy_arns)?;
        let token = web
            .verify(&request.web_identity_token)
            .map_err(|e| StsError { code: e.code, message: e.message })?;
        let caller = Connection { source_ip: request.source_ip.as_deref(), secure_transport: false };
        let mut session = self.web_identity_session(
            &token,
            &request.role_arn,
            &request.role_session_name,
            duration,
            caller,
        )?;
        session.policy = request.policy;
        session.policy_arns = request.policy_arns;
        let packed_policy_size = packed_size(&session)?;
        let session_token = session.seal(self.keyring);
        Ok((Issued { session: Arc::new(session), session_token, packed_policy_size }, token))
    }

    /// A session of `role_arn` for a verified OpenID Connect token, as
    /// AssumeRoleWithWebIdentity gives it: the role's trust policy must allow the token's
    /// provider (`Federated`) `sts:AssumeRoleWithWebIdentity`, with the token's `aud`, `sub`,
    /// `azp` and `amr` as `PROVIDER:aud` and so on, and the request's time, address and
    /// transport. Envoy's checks use it for bearer tokens a route file maps to a role.
    pub fn web_identity_session(
        &self,
        token: &VerifiedToken,
        role_arn: &str,
        session_name: &str,
        duration: u32,
        connection: Connection<'_>,
    ) -> Result<Session, StsError> {
        check_name("roleSessionName", session_name)?;
        let (account, role_name) = parse_role_arn(role_arn)?;
        let provider_arn = token.provider.arn(account);
        let name = &token.provider.name;
        let mut context = Context::default();
        context.insert(&format!("{name}:aud"), [token.audience.as_str()]);
        context.insert(&format!("{name}:sub"), [token.claims.sub.as_str()]);
        if let Some(azp) = &token.claims.azp {
            context.insert(&format!("{name}:azp"), [azp.as_str()]);
        }
        if let Some(amr) = &token.claims.amr {
            let values: Vec<&str> = match amr {
                serde_json::Value::Array(values) => values.iter().filter_map(|v| v.as_str()).collect(),
                value => value.as_str().into_iter().collect(),
            };
            context.insert(&format!("{name}:amr"), values);
        }
        context.insert("sts:RoleSessionName", [session_name]);
        let now = self.now.as_second();
        context.insert("aws:CurrentTime", [authorize::current_time(now)]);
        context.insert("aws:EpochTime", [now.to_string()]);
        context.insert("aws:SecureTransport", [if connection.secure_transport { "true" } else { "false" }]);
        if let Some(ip) = connection.source_ip.filter(|ip| !ip.is_empty()) {
            context.insert("aws:SourceIp", [ip]);
        }
        let query = Query {
            principal: &provider_arn,
            action: "sts:AssumeRoleWithWebIdentity",
            resource: role_arn,
            resource_account: "",
            context,
            explain: true,
            verified: None,
        };
        let answer = authorize::decide(self.snapshot, query).map_err(|e| validation(e.to_string()))?;
        if !answer.decision.is_allowed() {
            return Err(access_denied(format!(
                "Not authorized to perform sts:AssumeRoleWithWebIdentity: {}",
                answer.explanation.map(|e| e.reason).unwrap_or_default()
            )));
        }
        let role = self
            .iam
            .get_role(account, role_name)
            .map_err(|_| access_denied("Not authorized to perform sts:AssumeRoleWithWebIdentity"))?;
        if role.arn() != role_arn {
            return Err(access_denied("Not authorized to perform sts:AssumeRoleWithWebIdentity"));
        }
        self.role_session(&role, session_name, duration, false)
    }

    /// GetSessionToken: temporary credentials for a user (or root) with long-term keys, with
    /// MFA if a device and code are given.
    pub fn get_session_token(
        &self,
        caller: &Authenticated,
        duration_seconds: u32,
        mfa: Option<(String, String)>,
    ) -> Result<Issued, StsError> {
        self.user_session(caller, duration_seconds, mfa, false)
    }

    /// The session of a console sign-in: like GetSessionToken's, but not limited to STS and
    /// MFA-authenticated calls (a console user uses IAM with their policies).
    pub fn console_session(
        &self,
        caller: &Authenticated,
        duration_seconds: u32,
        mfa: Option<(String, String)>,
    ) -> Result<Issued, StsError> {
        self.user_session(caller, duration_seconds, mfa, true)
    }

    fn user_session(
        &self,
        caller: &Authenticated,
        duration_seconds: u32,
        mfa: Option<(String, String)>,
        console: bool,
    ) -> Result<Issued, StsError> {
        let (identity, max, default) = match &caller.caller {
            Caller::Session(_) => {
                return Err(access_denied("Cannot call GetSessionToken with session credentials"));
            }
            Caller::Root { .. } => {
                (SessionIdentity::Root, ROOT_MAX_SESSION_TOKEN_DURATION, ROOT_MAX_SESSION_TOKEN_DURATION)
            }
            Caller::User { account, name, arn } => {
                let user = self.iam.get_user(account, name)?;
                (
                    SessionIdentity::User { arn: arn.clone(), name: name.clone(), id: user.id },
                    MAX_SESSION_TOKEN_DURATION,
                    DEFAULT_SESSION_TOKEN_DURATION,
                )
            }
        };
        let duration = if duration_seconds == 0 { default } else { duration_seconds };
        if !(MIN_DURATION..=max).contains(&duration) {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: \
                 Member must have value between {MIN_DURATION} and {max}"
            )));
        }
        let now = self.now.as_second();
        let mfa_at = match (&mfa, &caller.caller) {
            (None, _) => None,
            (Some((serial, code)), Caller::User { account, name, .. }) => {
                self.iam.verify_mfa_code(account, name, serial, code)?;
                Some(now)
            }
            (Some(_), _) => return Err(access_denied("Only IAM users can authenticate with an MFA device.")),
        };
        let mut session = Session::new(
            new_access_key_id(TEMPORARY_PREFIX),
            Secret::generate(),
            caller.account().to_string(),
            identity,
            now,
            now + i64::from(duration),
        );
        session.mfa_authenticated = mfa_at;
        session.console = console;
        let session_token = session.seal(self.keyring);
        Ok(Issued { session: Arc::new(session), session_token, packed_policy_size: 0 })
    }
}

/// GetCallerIdentity: `(UserId, Account, Arn)` of the caller.
pub fn caller_identity(caller: &Authenticated, snapshot: &Snapshot) -> (String, String, String) {
    let user_id = match &caller.caller {
        Caller::Session(session) => session.user_id(),
        Caller::Root { account } => account.clone(),
        Caller::User { account, name, .. } => snapshot
            .directory
            .principals
            .get(crate::snapshot::lookup_key(crate::snapshot::EntityKind::User, account, name).as_str())
            .map(|entry| entry.who.id.to_string())
            .unwrap_or_default(),
    };
    (user_id, caller.account().to_string(), caller.principal_arn())
}

fn parse_role_arn(arn: &str) -> Result<(&str, &str), StsError> {
    let invalid = || validation(format!("{arn} is invalid: a role ARN is arn:aws:iam::ACCOUNT:role/NAME"));
    let rest = arn.strip_prefix("arn:aws:iam::").ok_or_else(invalid)?;
    let (account, resource) = rest.split_once(':').ok_or_else(invalid)?;
    let path_and_name = resource.strip_prefix("role/").ok_or_else(invalid)?;
    let name = path_and_name.rsplit('/').next().filter(|n| !n.is_empty()).ok_or_else(invalid)?;
    if !crate::eval::principal::is_account_id(account) {
        return Err(invalid());
    }
    Ok((account, name))
}

/// The tags of the new session: the transitive tags of the caller's session, which cannot be
/// overridden, and the requested ones.
fn session_tags(caller: Option<&Session>, request: &AssumeRole) -> Result<(Vec<Tag>, Vec<String>), StsError> {
    let inherited_keys: Vec<&String> =
        caller.map(|s| s.transitive_tag_keys.iter().collect()).unwrap_or_default();
    let mut tags: Vec<Tag> = caller
        .map(|s| {
            s.tags
                .iter()
                .filter(|t| inherited_keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut transitive: Vec<String> = inherited_keys.iter().map(|k| k.to_string()).collect();
    for tag in &request.tags {
        if tag.key.is_empty() || tag.key.chars().count() > 128 || tag.value.chars().count() > 256 {
            return Err(validation(format!(
                "session tag `{}`: keys are 1 to 128 characters and values at most 256",
                tag.key
            )));
        }
        let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        if !tag.key.chars().all(allowed) || !tag.value.chars().all(allowed) {
            return Err(validation(format!(
                "session tag `{}`: keys and values are letters, digits, spaces and _.:/=+-@",
                tag.key
            )));
        }
        if tag.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(validation(format!("session tag keys cannot begin with 'aws:': `{}`", tag.key)));
        }
        if tags.iter().any(|t| t.key.eq_ignore_ascii_case(&tag.key)) {
            let why = if inherited_keys.iter().any(|k| k.eq_ignore_ascii_case(&tag.key)) {
                "it is a transitive tag of the calling session, which cannot be overridden"
            } else {
                "it is given twice"
            };
            return Err(StsError {
                code: "InvalidParameterValue",
                message: format!("session tag `{}` cannot be set: {why}", tag.key),
            });
        }
        tags.push(tag.clone());
    }
    if tags.len() > MAX_SESSION_TAGS {
        return Err(validation(format!("a session has at most {MAX_SESSION_TAGS} tags")));
    }
    for key in &request.transitive_tag_keys {
        if !request.tags.iter().any(|t| t.key.eq_ignore_ascii_case(key)) {
            return Err(validation(format!(
                "transitive tag key `{key}` is not the key of a session tag given"
            )));
        }
        if !transitive.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            transitive.push(key.clone());
        }
    }
    Ok((tags, transitive))
}

/// The packed size of the session policies and tags, as a percentage of the limit: AWS packs
/// them into a compressed binary form; iamd counts their characters against 2,048 for the
/// inline policy and 2,048 for the tags.
fn packed_size(session: &Session) -> Result<u32, StsError> {
    let policy = session.policy.as_ref().map_or(0, |p| p.chars().filter(|c| !c.is_whitespace()).count())
        + session.policy_arns.iter().map(String::len).sum::<usize>();
    let tags: usize = session.tags.iter().map(|t| t.key.len() + t.value.len()).sum();
    let percent = (policy.max(tags) * 100).div_ceil(MAX_INLINE_POLICY_CHARS);
    if percent > 100 {
        return Err(StsError {
            code: "PackedPolicyTooLarge",
            message: format!(
                "Packed policy consumes {percent}% of allotted space, please use smaller policy for this session."
            ),
        });
    }
    Ok(percent as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_and_session_names_are_checked() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::111122223333:role/app/Reader").unwrap(),
            ("111122223333", "Reader")
        );
        assert!(parse_role_arn("arn:aws:iam::111122223333:user/alice").is_err());
        assert!(parse_role_arn("arn:aws:iam::1111:role/x").is_err());
        check_name("roleSessionName", "alice@example.com").unwrap();
        assert_eq!(check_name("roleSessionName", "a").unwrap_err().code, "ValidationError");
        assert!(check_name("roleSessionName", "has space").is_err());
    }

    #[test]
    fn transitive_tags_pass_on_and_cannot_be_overridden() {
        let now = 0;
        let mut parent = Session::new(
            "ASIA".into(),
            Secret::new("s"),
            "111122223333".into(),
            SessionIdentity::Root,
            now,
            now + 900,
        );
        parent.tags = vec![
            Tag { key: "team".into(), value: "blue".into() },
            Tag { key: "cost".into(), value: "1".into() },
        ];
        parent.transitive_tag_keys = vec!["team".into()];
        let request = AssumeRole {
            tags: vec![Tag { key: "stage".into(), value: "prod".into() }],
            ..AssumeRole::default()
        };
        let (tags, transitive) = session_tags(Some(&parent), &request).unwrap();
        let keys: Vec<&str> = tags.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["team", "stage"]);
        assert_eq!(transitive, ["team"]);
        let overriding = AssumeRole {
            tags: vec![Tag { key: "Team".into(), value: "red".into() }],
            ..AssumeRole::default()
        };
        assert_eq!(session_tags(Some(&parent), &overriding).unwrap_err().code, "InvalidParameterValue");
        let dangling = AssumeRole { transitive_tag_keys: vec!["x".into()], ..AssumeRole::default() };
        assert_eq!(session_tags(None, &dangling).unwrap_err().code, "ValidationError");
    }
}
