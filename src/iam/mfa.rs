//! Virtual MFA devices: TOTP (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), as AWS's
//! virtual MFA devices and every authenticator app use.
//!
//! A device is created unassigned, with its seed shown once; it is enabled for a user with two
//! consecutive codes, which proves the app holds the seed. Each accepted code's time step is
//! stored, so a code is never accepted twice; wrong codes are rate-limited per device.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::model::MfaDevice;
use super::validate::{self, NameKind};
use super::{Iam, IamError, State, now, user_of};
use crate::credentials::keyring::{Purpose, random_bytes};
use crate::store::Write;

/// TOTP time step, in seconds.
const STEP: u64 = 30;
/// Steps before and after the current one in which a code is accepted (clock drift).
const SKEW: u64 = 1;
/// How far back a resync or enable may find the two consecutive codes (AWS accepts codes from a
/// device whose clock drifted): ten minutes.
const RESYNC_STEPS: u64 = 20;
/// Wrong codes accepted per device in one window before it is locked for the rest of it.
pub const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW_SECONDS: i64 = 300;
/// MFA devices one user may have, as in AWS.
pub const MAX_DEVICES_PER_USER: usize = 8;

/// Recent wrong codes, per device serial: (failures, start of the window).
#[derive(Default)]
pub(super) struct Attempts(Mutex<HashMap<String, (u32, i64)>>);

impl Attempts {
    pub(super) fn check(&self, serial: &str, now: i64) -> Result<(), IamError> {
        let attempts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match attempts.get(serial) {
            Some((failures, since)) if *failures >= MAX_FAILURES && now - since < FAILURE_WINDOW_SECONDS => {
                Err(IamError::AccessDenied(format!(
                    "MultiFactorAuthentication failed: too many invalid codes for {serial}; try again in {} seconds",
                    FAILURE_WINDOW_SECONDS - (now - since)
                )))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn failed(&self, serial: &str, now: i64) {
        let mut attempts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = attempts.entry(serial.to_string()).or_insert((0, now));
        if now - entry.1 >= FAILURE_WINDOW_SECONDS {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub(super) fn succeeded(&self, serial: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(serial);
    }
}

/// A device just created: its seed is shown only now.
pub struct NewDevice {
    pub device: MfaDevice,
    /// The seed in base32, as authenticator apps take it.
    pub base32_seed: String,
    /// `otpauth://totp/...`, the content of the QR code apps scan.
    pub otpauth_uri: String,
}

impl std::fmt::Debug for NewDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDevice").field("device", &self.device).finish_non_exhaustive()
    }
}

fn totp(seed: Vec<u8>) -> Result<totp_rs::Totp, IamError> {
    totp_rs::Builder::new()
        .with_secret(seed)
        .with_skew(0)
        .build()
        .map_err(|e| IamError::ServiceFailure(format!("the MFA device's seed is unusable: {e}")))
}

fn invalid_code() -> IamError {
    IamError::InvalidAuthenticationCode("Authentication code for the MFA device is not valid.".into())
}

fn well_formed(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

fn unix_now() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0)
}

impl Iam {
    fn seed(state: &State, device: &MfaDevice) -> Result<Vec<u8>, IamError> {
        let sealed = STANDARD
            .decode(&device.sealed_seed)
            .map_err(|_| IamError::ServiceFailure(format!("the seed of {} is damaged", device.serial)))?;
        state.keyring.open(Purpose::StoredSecret, device.serial.as_bytes(), &sealed).map_err(|_| {
            IamError::ServiceFailure(format!(
                "the seed of {} cannot be opened with the configured master keys",
                device.serial
            ))
        })
    }

    /// Creates an unassigned virtual MFA device named `name` (`arn:aws:iam::ACCOUNT:mfa/NAME`).
    pub fn create_virtual_mfa_device(
        &self,
        account: &str,
        name: &str,
        path: &str,
    ) -> Result<NewDevice, IamError> {
        let account = self.account(account)?;
        validate::name(NameKind::User, name)?;
        let path = if path.is_empty() { "/" } else { path };
        validate::path(path)?;
        let serial = format!("arn:aws:iam::{account}:mfa{path}{name}");
        let mut state = self.lock();
        if state.mfa_devices.values().any(|d| d.account == account && d.name.eq_ignore_ascii_case(name)) {
            return Err(IamError::EntityAlreadyExists(
                "MFADevice entity at the same path and name already exists.".into(),
            ));
        }
        let seed = random_bytes::<20>();
        let base32_seed = totp_rs::Secret::from(seed.to_vec()).to_base32();
        let device = MfaDevice {
            serial: serial.clone(),
            account: account.to_string(),
            name: name.to_string(),
            sealed_seed: STANDARD.encode(state.keyring.seal(Purpose::StoredSecret, serial.as_bytes(), &seed)),
            created: now(),
            user: None,
            enabled: None,
            last_step: 0,
        };
        self.commit(&mut state, vec![Write::PutMfaDevice(device.clone())])?;
        let label = percent_encoding::utf8_percent_encode(
            &format!("iamd:{name}@{account}"),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let otpauth_uri = format!(
            "otpauth://totp/{label}?secret={base32_seed}&issuer=iamd&algorithm=SHA1&digits=6&period=30"
        );
        Ok(NewDevice { device, base32_seed, otpauth_uri })
    }

    /// Assigns the device to `user` once two consecutive codes prove the app has its seed.
    pub fn enable_mfa_device(
        &self,
        account: &str,
        user: &str,
        serial: &str,
        code1: &str,
        code2: &str,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let user_name = user_of(&state, account, user)?.name.to_string();
        let mut device = device_of(&state, serial)?.clone();
        if device.user.is_some() {
            return Err(IamError::EntityAlreadyExists(format!("MFA device {serial} is already in use.")));
        }
        if owned(&state, account, &user_name).count() >= MAX_DEVICES_PER_USER {
            return Err(IamError::LimitExceeded(format!(
                "Cannot exceed quota for MFADevicesPerUser: {MAX_DEVICES_PER_USER}"
            )));
        }
        let step = self.consecutive(&state, &device, code1, code2)?;
        device.user = Some(user_name);
        device.enabled = Some(now());
        device.last_step = step;
        self.commit(&mut state, vec![Write::PutMfaDevice(device)])
    }

    /// Resynchronises a device whose clock drifted, with two consecutive codes.
    pub fn resync_mfa_device(
        &self,
        account: &str,
        user: &str,
        serial: &str,
        code1: &str,
        code2: &str,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let mut device = assigned(&state, account, user, serial)?.clone();
        let step = self.consecutive(&state, &device, code1, code2)?;
        device.last_step = device.last_step.max(step);
        self.commit(&mut state, vec![Write::PutMfaDevice(device)])
    }

    /// The step of `code2` if `code1` and `code2` are the codes of two consecutive steps within
    /// the last ten minutes (or the next step), and newer than any code accepted before.
    fn consecutive(
        &self,
        state: &State,
        device: &MfaDevice,
        code1: &str,
        code2: &str,
    ) -> Result<u64, IamError> {
        let now = unix_now();
        self.mfa_attempts.check(&device.serial, now as i64)?;
        if !well_formed(code1) || !well_formed(code2) {
            return Err(invalid_code());
        }
        let totp = totp(Self::seed(state, device)?)?;
        let current = now / STEP;
        let found = (current.saturating_sub(RESYNC_STEPS)..=current + SKEW).find(|&step| {
            step > device.last_step
                && totp.check(code1, (step - 1) * STEP).is_some()
                && totp.check(code2, step * STEP).is_some()
        });
        match found {
            Some(step) => {
                self.mfa_attempts.succeeded(&device.serial);
                Ok(step)
            }
            None => {
                self.mfa_attempts.failed(&device.serial, now as i64);
                Err(invalid_code())
            }
        }
    }

    /// Checks one code of `user`'s device `serial` for a sign-in or a session: the code of the
    /// current step (or the one before or after), never one already accepted.
    pub fn verify_mfa_code(
        &self,
        account: &str,
        user: &str,
        serial: &str,
        code: &str,
    ) -> Result<(), IamError> {
        let account = self.account(account)?;
        let now = unix_now();
        let mut state = self.lock();
        let mut device = assigned(&state, account, user, serial)
            .map_err(|_| {
                IamError::AccessDenied(
                    "MultiFactorAuthentication failed with invalid MFA one time pass code.".into(),
                )
            })?
            .clone();
        self.mfa_attempts.check(serial, now as i64)?;
        let totp = totp(Self::seed(&state, &device)?)?;
        let current = now / STEP;
        let accepted = well_formed(code)
            .then(|| {
                (current.saturating_sub(SKEW)..=current + SKEW)
                    .find(|&step| totp.check(code, step * STEP).is_some())
            })
            .flatten();
        match accepted {
            Some(step) if step > device.last_step => {
                self.mfa_attempts.succeeded(serial);
                device.last_step = step;
                self.commit(&mut state, vec![Write::PutMfaDevice(device)])
            }
            Some(_) => {
                self.mfa_attempts.failed(serial, now as i64);
                Err(IamError::AccessDenied(
                    "MultiFactorAuthentication failed: this code was already used; wait for the next one"
                        .into(),
                ))
            }
            None => {
                self.mfa_attempts.failed(serial, now as i64);
                Err(IamError::AccessDenied(
                    "MultiFactorAuthentication failed with invalid MFA one time pass code.".into(),
                ))
            }
        }
    }

    pub fn deactivate_mfa_device(&self, account: &str, user: &str, serial: &str) -> Result<(), IamError> {
        let account = self.account(account)?;
        let mut state = self.lock();
        let mut device = assigned(&state, account, user, serial)?.clone();
        device.user = None;
        device.enabled = None;
        self.commit(&mut state, vec![Write::PutMfaDevice(device)])
    }

    pub fn delete_virtual_mfa_device(&self, serial: &str) -> Result<(), IamError> {
        let mut state = self.lock();
        let device = device_of(&state, serial)?;
        if device.user.is_some() {
            return Err(IamError::DeleteConflict("MFA device is in use; deactivate it first.".into()));
        }
        self.commit(&mut state, vec![Write::DeleteMfaDevice { serial: serial.to_string() }])
    }

    /// The devices enabled for `user`.
    pub fn list_mfa_devices(&self, account: &str, user: &str) -> Result<Vec<MfaDevice>, IamError> {
        let account = self.account(account)?;
        let state = self.lock();
        let name = user_of(&state, account, user)?.name.to_string();
        Ok(owned(&state, account, &name).cloned().collect())
    }
}

fn device_of<'s>(state: &'s State, serial: &str) -> Result<&'s MfaDevice, IamError> {
    state.mfa_devices.get(serial).ok_or_else(|| {
        IamError::NoSuchEntity(format!("VirtualMFADevice with serial number {serial} doesn't exist."))
    })
}

fn assigned<'s>(
    state: &'s State,
    account: &str,
    user: &str,
    serial: &str,
) -> Result<&'s MfaDevice, IamError> {
    user_of(state, account, user)?;
    state
        .mfa_devices
        .get(serial)
        .filter(|d| d.account == account && d.user.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(user)))
        .ok_or_else(|| IamError::NoSuchEntity(format!("MFA device {serial} is not enabled for user {user}.")))
}

/// The devices enabled for the user `name` of `account`.
pub(super) fn owned<'s>(
    state: &'s State,
    account: &'s str,
    name: &'s str,
) -> impl Iterator<Item = &'s MfaDevice> + 's {
    state.mfa_devices.values().filter(move |d| {
        d.account == account && d.user.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(name))
    })
}
