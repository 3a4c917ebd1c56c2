//! Console passwords: login profiles hashed with argon2id, the account password policy, and
//! the password check of a console-style sign-in.
//!
//! Hashing is deliberately slow (tens of milliseconds), so it never happens under the state
//! lock; wrong passwords are rate-limited per user, as wrong MFA codes are per device.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::model::{LoginProfile, PasswordPolicy};
use super::{Iam, IamError, State, key, now, user_of};
use crate::store::Write;

/// AWS's limits for the policy's settings.
pub const MIN_LENGTH_RANGE: std::ops::RangeInclusive<u32> = 6..=128;
pub const MAX_AGE_RANGE: std::ops::RangeInclusive<u32> = 1..=1_095;
pub const REUSE_RANGE: std::ops::RangeInclusive<u32> = 1..=24;
/// Without a policy, AWS's default: 8 characters and three of the four character classes.
const DEFAULT_MIN_LENGTH: usize = 8;
const MAX_PASSWORD_CHARS: usize = 128;

/// The outcome of a password check that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIn {
    pub user_arn: String,
    /// The user has an MFA device: the sign-in must also give a code.
    pub mfa_devices: Vec<String>,
}

fn hash(password: &str) -> Result<String, IamError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|_| IamError::ServiceFailure("the password could not be hashed".into()))
}

/// Whether `password` is the one `hash` was made from (in constant time, inside argon2).
fn matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// What is wrong with `password` under `policy` (AWS's default rules without one).
fn violations(policy: Option<&PasswordPolicy>, password: &str) -> Vec<String> {
    let count = password.chars().count();
    let has = |f: fn(&char) -> bool| password.chars().any(|c| f(&c));
    let upper = has(char::is_ascii_uppercase);
    let lower = has(char::is_ascii_lowercase);
    let number = has(char::is_ascii_digit);
    let symbol = has(|c| c.is_ascii_punctuation());
    let mut problems = Vec::new();
    if count > MAX_PASSWORD_CHARS {
        problems.push(format!("at most {MAX_PASSWORD_CHARS} characters"));
    }
    match policy {
        Some(policy) => {
            if count < policy.minimum_password_length as usize {
                problems.push(format!("at least {} characters", policy.minimum_password_length));
            }
            for (required, present, what) in [
                (policy.require_uppercase_characters, upper, "an uppercase letter"),
                (policy.require_lowercase_characters, lower, "a lowercase letter"),
                (policy.require_numbers, number, "a number"),
                (policy.require_symbols, symbol, "a symbol (!@#$%^&*()_+-=[]{}|')"),
            ] {
                if required && !present {
                    problems.push(what.to_string());
                }
            }
        }
        None => {
            if count < DEFAULT_MIN_LENGTH {
                problems.push(format!("at least {DEFAULT_MIN_LENGTH} characters"));
            }
            if [upper, lower, number, symbol].iter().filter(|p| **p).count() < 3 {
                problems.push("three of: uppercase letters, lowercase letters, numbers, symbols".into());
            }
        }
    }
    problems
}

fn violation(problems: Vec<String>) -> IamError {
    IamError::PasswordPolicyViolation(format!(
        "Password does not conform to the account password policy: it needs {}.",
        problems.join(", ")
    ))
}

fn no_profile(user: &str) -> IamError {
    IamError::NoSuchEntity(format!("Login Profile for User {user} cannot be found."))
}

fn days_since(date: &str, now: jiff::Timestamp) -> Option<i64> {
    let then: jiff::Timestamp = date.parse().ok()?;
    Some((now.as_second() - then.as_second()) / 86_400)
}

impl Iam {
    /// Checks `password` against the policy and the reuse history of `profile`, hashing
    /// outside any lock. Returns the new hash.
    fn checked_hash(&self, account: &str, password: &str, history: &[String]) -> Result<String, IamError> {
        let policy = self.lock().password_policies.get(account).cloned();
        let problems = violations(policy.as_ref(), password);
        if !problems.is_empty() {
            return Err(violation(problems));
        }
        let reuse = policy.as_ref().and_then(|p| p.password_reuse_prevention).unwrap_or(0) as usize;
        if history.iter().take(reuse).any(|old| matches(password, old)) {
            return Err(IamError::PasswordPolicyViolation(format!(
                "Password does not conform to the account password policy: it cannot be one of the last {reuse} passwords."
            )));
        }
        hash(password)
    }

    pub fn create_login_profile(
        &self,
        account: &str,
        user: &str,
        password: &str,
        password_reset_required: bool,
    ) -> Result<LoginProfile, IamError> {
        let account = self.account(account)?;
        let name = user_of(&self.lock(), account, user)?.name.to_string();
        let hash = self.checked_hash(account, password, &[])?;
        let mut state = self.lock();
        user_of(&state, account, &name)?;
        if state.login_profiles.contains_key(&key(account, &name)) {
            return Err(IamError::EntityAlreadyExists(format!(
                "Login Profile for user {name} already exists."
            )));
        }
        let created = now();
        let profile = LoginProfile {
            account: account.to_string(),
            user: name,
            hash,
            created: created.clone(),
            changed: created,
            password_reset_required,
            previous: Vec::new(),
            last_used: None,
        };
        self.commit(&mut state, vec![Write::PutLoginProfile(profile.clone())])?;
        Ok(profile)
    }

    pub fn get_login_profile(&self, account: &str, user: &str) -> Result<LoginProfile, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        user_of(&state, account, user)?;
        state.login_profiles.get(&key(account, user)).cloned().ok_or_else(|| no_profile(user))
    }

    /// An administrator sets a new password and/or whether it must be changed at sign-in.
    pub fn update_login_profile(
        &self,
        account: &str,
        user: &str,
        password: Option<&str>,
        password_reset_required: Option<bool>,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        let history = self.get_login_profile(account, user)?.all_hashes();
        let hash = password.map(|p| self.checked_hash(account, p, &history)).transpose()?;
        let mut state = self.lock();
        let mut profile =
            state.login_profiles.get(&key(account, user)).cloned().ok_or_else(|| no_profile(user))?;
        if let Some(hash) = hash {
            profile.replace_hash(hash, &state);
        }
        if let Some(required) = password_reset_required {
            profile.password_reset_required = required;
        }
        self.commit(&mut state, vec![Write::PutLoginProfile(profile)])
    }

    pub fn delete_login_profile(&self, account: &str, user: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        user_of(&state, account, user)?;
        let profile = state.login_profiles.get(&key(account, user)).ok_or_else(|| no_profile(user))?;
        let write = Write::DeleteLoginProfile { account: account.to_string(), user: profile.user.clone() };
        self.commit(&mut state, vec![write])
    }

    /// A user changes their own password, giving the current one.
    pub fn change_password(&self, account: &str, user: &str, old: &str, new: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let profile = self.get_login_profile(account, user)?;
        self.check_password_attempts(account, user)?;
        if !matches(old, &profile.hash) {
            self.password_attempts
                .failed(&format!("{account}/{}", profile.user), jiff::Timestamp::now().as_second());
            return Err(IamError::AccessDenied("The old password is not correct.".into()));
        }
        let hash = self.checked_hash(account, new, &profile.all_hashes())?;
        let mut state = self.lock();
        let mut profile =
            state.login_profiles.get(&key(account, user)).cloned().ok_or_else(|| no_profile(user))?;
        profile.replace_hash(hash, &state);
        profile.password_reset_required = false;
        self.commit(&mut state, vec![Write::PutLoginProfile(profile)])
    }

    /// Whether the account's policy lets users change their own password.
    pub fn users_may_change_password(&self, account: &str) -> bool {
        self.lock().password_policies.get(account).is_some_and(|p| p.allow_users_to_change_password)
    }

    fn check_password_attempts(&self, account: &str, user: &str) -> Result<(), IamError> {
        self.password_attempts
            .check(&format!("{account}/{}", user.to_ascii_lowercase()), jiff::Timestamp::now().as_second())
            .map_err(|_| {
                IamError::AccessDenied("Too many failed sign-in attempts; try again in a few minutes.".into())
            })
    }

    /// A console-style sign-in: the password of `user`, checked against its hash, its age
    /// and the reset flag. An unknown user and a wrong password are refused alike. A password
    /// that must be changed is changed here with `new_password`, as the console asks.
    pub fn sign_in(
        &self,
        account: &str,
        user: &str,
        password: &str,
        new_password: Option<&str>,
    ) -> Result<SignIn, IamError> {
        let refused = || IamError::AccessDenied("Your authentication information is incorrect.".into());
        let account = self.account(account)?;
        let attempt_key = format!("{account}/{}", user.to_ascii_lowercase());
        self.check_password_attempts(account, user)?;
        let profile = self.get_login_profile(account, user).ok();
        // Hash even for an unknown user, so that the time taken does not tell users apart.
        let known = match &profile {
            Some(profile) => matches(password, &profile.hash),
            None => {
                let _ = hash(password);
                false
            }
        };
        let Some(profile) = profile.filter(|_| known) else {
            self.password_attempts.failed(&attempt_key, jiff::Timestamp::now().as_second());
            return Err(refused());
        };
        self.password_attempts.succeeded(&attempt_key);
        let policy = self.lock().password_policies.get(account).cloned();
        let expired = policy
            .as_ref()
            .and_then(|p| p.max_password_age)
            .zip(days_since(&profile.changed, jiff::Timestamp::now()))
            .is_some_and(|(max, age)| age >= i64::from(max));
        if expired && policy.as_ref().is_some_and(|p| p.hard_expiry) {
            return Err(IamError::AccessDenied(
                "Your password has expired; an administrator must reset it (the account policy sets hard expiry)."
                    .into(),
            ));
        }
        if expired || profile.password_reset_required {
            match new_password {
                Some(new) => self.change_password(account, user, password, new)?,
                None => {
                    return Err(IamError::PasswordResetRequired(
                        "The password must be changed: sign in again with a new password.".into(),
                    ));
                }
            }
        }
        let mut state = self.lock();
        let user_arn = user_of(&state, account, user)?.arn.to_string();
        let mfa_devices =
            super::mfa::owned(&state, account, &profile.user).map(|d| d.serial.clone()).collect();
        if let Some(mut current) = state.login_profiles.get(&key(account, user)).cloned() {
            current.last_used = Some(now());
            self.commit(&mut state, vec![Write::PutLoginProfile(current)])?;
        }
        Ok(SignIn { user_arn, mfa_devices })
    }

    pub fn update_account_password_policy(&self, policy: PasswordPolicy) -> Result<(), IamError> {
        let account = self.account(&policy.account)?.to_string();
        let out_of = |what: &str, value: u32, range: &std::ops::RangeInclusive<u32>| {
            IamError::InvalidInput(format!(
                "{what} {value} is out of range: expected {} to {}",
                range.start(),
                range.end()
            ))
        };
        if !MIN_LENGTH_RANGE.contains(&policy.minimum_password_length) {
            return Err(out_of("MinimumPasswordLength", policy.minimum_password_length, &MIN_LENGTH_RANGE));
        }
        if let Some(age) = policy.max_password_age.filter(|a| !MAX_AGE_RANGE.contains(a)) {
            return Err(out_of("MaxPasswordAge", age, &MAX_AGE_RANGE));
        }
        if let Some(reuse) = policy.password_reuse_prevention.filter(|r| !REUSE_RANGE.contains(r)) {
            return Err(out_of("PasswordReusePrevention", reuse, &REUSE_RANGE));
        }
        let mut state = self.lock();
        self.commit(&mut state, vec![Write::PutPasswordPolicy(PasswordPolicy { account, ..policy })])
    }

    pub fn get_account_password_policy(&self, account: &str) -> Result<PasswordPolicy, IamError> {
        let account = self.account(account)?;
        self.lock().password_policies.get(account).cloned().ok_or_else(|| {
            IamError::NoSuchEntity(format!("The Password Policy with domain name {account} cannot be found."))
        })
    }

    pub fn delete_account_password_policy(&self, account: &str) -> Result<(), IamError> {
        let account = self.account(account)?.to_string();
        let mut state = self.lock();
        if !state.password_policies.contains_key(&account) {
            return Err(IamError::NoSuchEntity(format!(
                "The account policy with name PasswordPolicy cannot be found for {account}."
            )));
        }
        self.commit(&mut state, vec![Write::DeletePasswordPolicy { account }])
    }
}

impl LoginProfile {
    /// The current hash and the remembered ones, newest first.
    fn all_hashes(&self) -> Vec<String> {
        std::iter::once(self.hash.clone()).chain(self.previous.iter().cloned()).collect()
    }

    /// Sets a new hash, remembering the old one as far as the policy's reuse prevention looks.
    fn replace_hash(&mut self, hash: String, state: &State) {
        let keep =
            state.password_policies.get(&self.account).and_then(|p| p.password_reuse_prevention).unwrap_or(0)
                as usize;
        let old = std::mem::replace(&mut self.hash, hash);
        self.previous.insert(0, old);
        self.previous.truncate(keep.saturating_sub(1));
        self.changed = now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            account: "111122223333".into(),
            minimum_password_length: 12,
            require_symbols: true,
            require_numbers: true,
            require_uppercase_characters: true,
            require_lowercase_characters: true,
            allow_users_to_change_password: true,
            max_password_age: Some(90),
            password_reuse_prevention: Some(3),
            hard_expiry: false,
        }
    }

    #[test]
    fn the_policy_names_every_missing_requirement() {
        let problems = violations(Some(&policy()), "short");
        assert_eq!(
            problems,
            ["at least 12 characters", "an uppercase letter", "a number", "a symbol (!@#$%^&*()_+-=[]{}|')"]
        );
        assert!(violations(Some(&policy()), "Correct-Horse-9-Battery").is_empty());
        // AWS's default without a policy: 8 characters, three classes.
        assert!(violations(None, "abcdefgh").len() == 1);
        assert!(violations(None, "abcdefG1").is_empty());
    }

    #[test]
    fn hashes_are_argon2id_and_verify_only_the_password() {
        let hashed = hash("Correct-Horse-9").unwrap();
        assert!(hashed.starts_with("$argon2id$"));
        assert!(matches("Correct-Horse-9", &hashed));
        assert!(!matches("Correct-Horse-8", &hashed));
        assert!(!matches("Correct-Horse-9", "not a hash"));
    }
}
