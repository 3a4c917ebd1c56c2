//! The `iamd.v1.Console` service: password sign-in, answered with temporary credentials.
//!
//! Its calls are not signed (the password is the credential), so they are bounded here: a few
//! password hashes at a time, since each takes tens of milliseconds by design, and wrong
//! passwords are rate-limited per user by [`crate::iam::Iam::sign_in`].

use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use super::Core;
use super::convert::{coded, iam_status};
use crate::audit::AuditRecord;
use crate::credentials::{Authenticated, Caller};
use crate::eval::Decision;
use crate::proto::{self, console_server::Console};
use crate::sts::Sts;

/// Password hashes computed at once: each uses a core and 19 MiB for tens of milliseconds.
const CONCURRENT_HASHES: usize = 2;

pub struct ConsoleService {
    core: Arc<Core>,
    hashing: Semaphore,
}

impl ConsoleService {
    pub fn new(core: Arc<Core>) -> Self {
        ConsoleService { core, hashing: Semaphore::new(CONCURRENT_HASHES) }
    }
}

#[tonic::async_trait]
impl Console for ConsoleService {
    async fn sign_in(
        &self,
        r: Request<proto::SignInRequest>,
    ) -> Result<Response<proto::SignInResponse>, Status> {
        let r = r.into_inner();
        let _permit = self.hashing.acquire().await.map_err(|_| Status::unavailable("iamd is stopping"))?;
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.sign_in(r))
            .await
            .map_err(|_| Status::internal("sign-in failed unexpectedly"))?
            .map(Response::new)
    }
}

impl Core {
    fn sign_in(&self, r: proto::SignInRequest) -> Result<proto::SignInResponse, Status> {
        let account = if r.account_id.is_empty() {
            self.iam.default_account().to_string()
        } else {
            r.account_id.clone()
        };
        let result = self.signed_in(&account, &r);
        if self.audit.enabled() {
            let error_code = result.as_ref().err().and_then(|s| {
                s.metadata().get("iamd-error-code").and_then(|v| v.to_str().ok()).map(str::to_string)
            });
            self.audit.record(AuditRecord {
                event_time: jiff::Timestamp::now(),
                event_name: "ConsoleLogin",
                principal: format!("arn:aws:iam::{account}:user/{}", r.user_name),
                action: "signin:ConsoleLogin".into(),
                decision: if result.is_ok() { Decision::Allow } else { Decision::ImplicitDeny },
                reason: result.as_ref().err().map(|s| s.message().to_string()),
                access_key_id: result
                    .as_ref()
                    .ok()
                    .and_then(|c| c.credentials.as_ref())
                    .map(|c| c.access_key_id.clone()),
                error_code,
                ..AuditRecord::default()
            });
        }
        result
    }

    fn signed_in(&self, account: &str, r: &proto::SignInRequest) -> Result<proto::SignInResponse, Status> {
        let new_password = Some(r.new_password.as_str()).filter(|p| !p.is_empty());
        let signed =
            self.iam.sign_in(account, &r.user_name, &r.password, new_password).map_err(iam_status)?;
        let mfa = match signed.mfa_devices.as_slice() {
            [] => None,
            devices => {
                if r.mfa_code.is_empty() {
                    return Err(coded(
                        tonic::Code::PermissionDenied,
                        "AccessDenied",
                        "signin.amazonaws.com",
                        "The user has an MFA device: give its current code (mfa_code).".into(),
                    ));
                }
                let serial = match (r.mfa_serial_number.as_str(), devices) {
                    ("", [only]) => only.clone(),
                    (serial, _) => serial.to_string(),
                };
                Some((serial, r.mfa_code.clone()))
            }
        };
        let snapshot =
            self.snapshot.load_full().ok_or_else(|| Status::unavailable("no policy bundle is loaded yet"))?;
        let caller = Authenticated {
            access_key_id: String::new(),
            caller: Caller::User {
                account: account.to_string(),
                name: signed.user_arn.rsplit('/').next().unwrap_or_default().to_string(),
                arn: signed.user_arn.clone(),
            },
            service: "signin".into(),
            region: String::new(),
        };
        let sts = Sts {
            snapshot: &snapshot,
            iam: &self.iam,
            keyring: self.authenticator.keyring(),
            now: jiff::Timestamp::now(),
        };
        let duration =
            u32::try_from(r.duration_seconds).unwrap_or(0).min(crate::sts::DEFAULT_SESSION_TOKEN_DURATION);
        let issued = sts
            .console_session(&caller, duration, mfa)
            .map_err(|e| coded(tonic::Code::PermissionDenied, e.code, "signin.amazonaws.com", e.message))?;
        Ok(proto::SignInResponse {
            credentials: Some(proto::Credentials {
                access_key_id: issued.session.access_key_id.clone(),
                secret_access_key: issued.session.secret_access_key.expose().to_string(),
                session_token: issued.session_token.clone(),
                expiration: issued.expiration(),
            }),
            user_arn: signed.user_arn,
        })
    }
}
