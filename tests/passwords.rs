//! Console passwords end to end: the account password policy enforced and reported, argon2id
//! login profiles, sign-in answered with temporary credentials (with MFA from pyotp codes),
//! resets, expiry, changes and reuse prevention, and wrong passwords rate-limited.

mod common;

use common::{Sidecar, run_python, temp_dir};
use iamd::credentials::sigv4::SigningCredentials;
use iamd::proto;
use serde_json::json;

const STRONG: &str = "Correct-Horse-9-Battery";
const STRONGER: &str = "Staple-7-Correct-Horse!";

fn error_code(status: &tonic::Status) -> String {
    status.metadata().get("iamd-error-code").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn sign_in(user: &str, password: &str) -> proto::SignInRequest {
    proto::SignInRequest { user_name: user.into(), password: password.into(), ..Default::default() }
}

fn credentials(response: &proto::SignInResponse) -> SigningCredentials {
    let c = response.credentials.as_ref().unwrap();
    SigningCredentials {
        access_key_id: c.access_key_id.clone(),
        secret_access_key: c.secret_access_key.clone(),
        session_token: Some(c.session_token.clone()),
    }
}

fn policy() -> proto::PasswordPolicy {
    proto::PasswordPolicy {
        minimum_password_length: 14,
        require_symbols: true,
        require_numbers: true,
        require_uppercase_characters: true,
        require_lowercase_characters: true,
        allow_users_to_change_password: true,
        max_password_age: 90,
        password_reuse_prevention: 2,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_follow_the_policy_and_sign_in_gives_temporary_credentials() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &[]);
    let mut root = sidecar.admin().await;
    let none = root.get_account_password_policy(proto::AccountRequest::default()).await.unwrap_err();
    assert_eq!(error_code(&none), "NoSuchEntity");
    root.update_account_password_policy(policy()).await.unwrap();
    let reported =
        root.get_account_password_policy(proto::AccountRequest::default()).await.unwrap().into_inner();
    assert_eq!((reported.minimum_password_length, reported.max_password_age), (14, 90));
    assert!(reported.expire_passwords && reported.allow_users_to_change_password);
    let out_of_range = proto::PasswordPolicy { minimum_password_length: 200, ..policy() };
    assert_eq!(
        error_code(&root.update_account_password_policy(out_of_range).await.unwrap_err()),
        "InvalidInput"
    );

    root.create_user(proto::CreateUserRequest { user_name: "alice".into(), ..Default::default() })
        .await
        .unwrap();
    let profile = |password: &str| proto::LoginProfileRequest {
        user_name: "alice".into(),
        password: password.into(),
        password_reset_required: Some(true),
        account_id: String::new(),
    };
    let weak = root.create_login_profile(profile("password")).await.unwrap_err();
    assert_eq!(error_code(&weak), "PasswordPolicyViolation");
    assert!(
        weak.message().contains("at least 14 characters") && weak.message().contains("a number"),
        "{weak:?}"
    );
    let created = root.create_login_profile(profile(STRONG)).await.unwrap().into_inner();
    assert!(created.password_reset_required);
    assert_eq!(
        error_code(&root.create_login_profile(profile(STRONG)).await.unwrap_err()),
        "EntityAlreadyExists"
    );

    let mut console = sidecar.console().await;
    let wrong = console.sign_in(sign_in("alice", "Wrong-Horse-9-Battery")).await.unwrap_err();
    let unknown = console.sign_in(sign_in("mallory", STRONG)).await.unwrap_err();
    assert_eq!((error_code(&wrong), error_code(&unknown)), ("AccessDenied".into(), "AccessDenied".into()));
    assert_eq!(wrong.message(), unknown.message(), "an unknown user and a wrong password look the same");

    // The first sign-in must set a new password, which the policy checks too.
    let reset = console.sign_in(sign_in("alice", STRONG)).await.unwrap_err();
    assert_eq!(error_code(&reset), "PasswordResetRequired");
    let same = proto::SignInRequest { new_password: STRONG.into(), ..sign_in("alice", STRONG) };
    assert_eq!(error_code(&console.sign_in(same).await.unwrap_err()), "PasswordPolicyViolation");
    let renewed = proto::SignInRequest { new_password: STRONGER.into(), ..sign_in("alice", STRONG) };
    let session = console.sign_in(renewed).await.unwrap().into_inner();
    assert_eq!(session.user_arn, "arn:aws:iam::111122223333:user/alice");
    let alice = credentials(&session);
    assert!(alice.access_key_id.starts_with("ASIA"));
    let me =
        sidecar.sts_as(alice.clone()).await.get_caller_identity(proto::Empty {}).await.unwrap().into_inner();
    assert_eq!(me.arn, session.user_arn);
    assert_eq!(error_code(&console.sign_in(sign_in("alice", STRONG)).await.unwrap_err()), "AccessDenied");

    // She changes her own password (the policy allows it), but not back to a recent one.
    let mut as_alice = sidecar.admin_as(alice.clone()).await;
    let change = |old: &str, new: &str| proto::ChangePasswordRequest {
        old_password: old.into(),
        new_password: new.into(),
    };
    assert_eq!(
        error_code(&as_alice.change_password(change("nope", STRONG)).await.unwrap_err()),
        "AccessDenied"
    );
    let reused = as_alice.change_password(change(STRONGER, STRONG)).await.unwrap_err();
    assert_eq!(error_code(&reused), "PasswordPolicyViolation", "{reused:?}");
    assert!(reused.message().contains("last 2 passwords"), "{reused:?}");
    let third = "Battery-5-Staple-Horse#";
    as_alice.change_password(change(STRONGER, third)).await.unwrap();
    console.sign_in(sign_in("alice", third)).await.unwrap();
    // Without the policy's permission, changing needs iam:ChangePassword.
    root.update_account_password_policy(proto::PasswordPolicy {
        allow_users_to_change_password: false,
        ..policy()
    })
    .await
    .unwrap();
    let denied = as_alice.change_password(change(third, "Fourth-4-Horse-Staple!")).await.unwrap_err();
    assert_eq!(error_code(&denied), "AccessDenied");
    assert!(denied.message().contains("iam:ChangePassword"), "{denied:?}");

    // With an MFA device, sign-in needs its code.
    let device = root
        .create_virtual_mfa_device(proto::CreateVirtualMfaDeviceRequest {
            virtual_mfa_device_name: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let now = jiff::Timestamp::now().as_second();
    let codes = run_python(
        "totp.py",
        &json!({"seed": device.base32_string_seed, "times": [now - 60, now - 30, now]}).to_string(),
    );
    root.enable_mfa_device(proto::MfaCodesRequest {
        user_name: "alice".into(),
        serial_number: device.serial_number.clone(),
        authentication_code1: codes[0].clone(),
        authentication_code2: codes[1].clone(),
        account_id: String::new(),
    })
    .await
    .unwrap();
    let without = console.sign_in(sign_in("alice", third)).await.unwrap_err();
    assert!(without.message().contains("MFA"), "{without:?}");
    let with = proto::SignInRequest { mfa_code: codes[2].clone(), ..sign_in("alice", third) };
    console.sign_in(with).await.unwrap();

    // Wrong passwords are rate-limited: after five, even the right one waits.
    for _ in 0..5 {
        let _ = console.sign_in(sign_in("alice", "Wrong-Horse-9-Battery")).await;
    }
    let locked = console.sign_in(sign_in("alice", third)).await.unwrap_err();
    assert!(locked.message().contains("Too many failed sign-in attempts"), "{locked:?}");

    // No password in the audit log, which records every sign-in.
    let audit = std::fs::read_to_string(data.path().join("store/audit.jsonl")).unwrap_or_default();
    for secret in [STRONG, STRONGER, third] {
        assert!(!audit.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_passwords_must_be_changed_or_with_hard_expiry_reset() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut root = sidecar.admin().await;
    root.update_account_password_policy(policy()).await.unwrap();
    for user in ["bob", "carol"] {
        root.create_user(proto::CreateUserRequest { user_name: user.into(), ..Default::default() })
            .await
            .unwrap();
        root.create_login_profile(proto::LoginProfileRequest {
            user_name: user.into(),
            password: STRONG.into(),
            password_reset_required: None,
            account_id: String::new(),
        })
        .await
        .unwrap();
    }
    // Age the passwords by rewriting the export: set two years ago.
    let exported = root.export(proto::Empty {}).await.unwrap().into_inner();
    let mut document: serde_json::Value = serde_json::from_str(&exported.json).unwrap();
    for profile in document["login_profiles"].as_array_mut().unwrap() {
        profile["changed"] = json!("2024-01-01T00:00:00Z");
    }
    root.import(proto::StateDocument { json: document.to_string() }).await.unwrap();

    let mut console = sidecar.console().await;
    let expired = console.sign_in(sign_in("bob", STRONG)).await.unwrap_err();
    assert_eq!(error_code(&expired), "PasswordResetRequired");
    let renewed = proto::SignInRequest { new_password: STRONGER.into(), ..sign_in("bob", STRONG) };
    console.sign_in(renewed).await.unwrap();
    console.sign_in(sign_in("bob", STRONGER)).await.unwrap();

    root.update_account_password_policy(proto::PasswordPolicy { hard_expiry: true, ..policy() })
        .await
        .unwrap();
    let hard = proto::SignInRequest { new_password: STRONGER.into(), ..sign_in("carol", STRONG) };
    let refused = console.sign_in(hard).await.unwrap_err();
    assert_eq!(error_code(&refused), "AccessDenied");
    assert!(refused.message().contains("administrator"), "{refused:?}");
    root.update_login_profile(proto::LoginProfileRequest {
        user_name: "carol".into(),
        password: STRONGER.into(),
        password_reset_required: Some(false),
        account_id: String::new(),
    })
    .await
    .unwrap();
    console.sign_in(sign_in("carol", STRONGER)).await.unwrap();
}
