//! STS end to end: AssumeRole decided by trust policies (external id, MFA from pyotp codes,
//! chaining, session policies and tags), GetSessionToken, GetCallerIdentity, and the session
//! credentials used in signed requests (botocore) and admin calls.

mod common;

use common::{Sidecar, botocore_sign, run_python, temp_dir, write_bundle};
use iamd::credentials::KeyRing;
use iamd::credentials::session::SessionIdentity;
use iamd::credentials::sigv4::SigningCredentials;
use iamd::proto::{self, Decision};
use serde_json::json;

const ACCOUNT: &str = "111122223333";

fn error_code(status: &tonic::Status) -> String {
    status.metadata().get("iamd-error-code").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn bundle(dir: &std::path::Path) {
    write_bundle(
        dir,
        &[
            ("manifest.json", format!("{{\"revision\": \"sts-1\", \"account\": \"{ACCOUNT}\"}}")),
            (
                "policies/AssumeAppRoles.json",
                format!(
                    r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow",
                        "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "arn:aws:iam::{ACCOUNT}:role/app/*"}}}}"#
                ),
            ),
            (
                "policies/ReadReports.json",
                r#"{"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/*"},
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
                    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::reports/${aws:PrincipalTag/team}/*"}]}"#
                    .into(),
            ),
            (
                "policies/OnlyPublic.json",
                r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::reports/public/*"}}"#
                    .into(),
            ),
        ],
    );
}

fn trust(condition: serde_json::Value) -> String {
    json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": ["sts:AssumeRole", "sts:TagSession"], "Condition": condition}})
    .to_string()
}

fn session_credentials(response: &proto::AssumeRoleResponse) -> SigningCredentials {
    let c = response.credentials.as_ref().unwrap();
    SigningCredentials {
        access_key_id: c.access_key_id.clone(),
        secret_access_key: c.secret_access_key.clone(),
        session_token: Some(c.session_token.clone()),
    }
}

fn assume(role: &str, session: &str) -> proto::AssumeRoleRequest {
    proto::AssumeRoleRequest {
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/app/{role}"),
        role_session_name: session.into(),
        ..Default::default()
    }
}

/// Decides `s3:ACTION` on `reports/KEY` for a request botocore signs with `credentials`.
async fn s3(
    sidecar: &Sidecar,
    credentials: &SigningCredentials,
    action: &str,
    key: &str,
) -> (Decision, String) {
    let name = format!("{action}-{key}");
    let signed = botocore_sign(
        credentials,
        json!([{"name": name, "method": "GET", "url": format!("https://s3.amazonaws.com/reports/{key}"),
                "service": "s3", "region": "us-east-1"}]),
    );
    let response = sidecar
        .authorizer()
        .await
        .authorize(proto::AuthorizeRequest {
            action: format!("s3:{action}"),
            resource: format!("arn:aws:s3:::reports/{key}"),
            signed_request: Some(signed[&name].clone()),
            explain: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let code = response.authentication_error.map(|e| e.code).unwrap_or_default();
    (Decision::try_from(response.decision).unwrap(), code)
}

struct World {
    sidecar: Sidecar,
    alice: SigningCredentials,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// alice may assume the roles under `/app/`; `Reader` trusts the account with an external id,
/// `Admin` only with MFA.
async fn world() -> World {
    let data = temp_dir();
    let policies = temp_dir();
    bundle(policies.path());
    let sidecar = Sidecar::start(data.path(), Some(policies.path()), &[]);
    let alice =
        sidecar.user_with_key("alice", &[&format!("arn:aws:iam::{ACCOUNT}:policy/AssumeAppRoles")]).await;
    let mut root = sidecar.admin().await;
    for (role, condition) in [
        ("Reader", json!({"StringEquals": {"sts:ExternalId": "ext-1"}})),
        (
            "Admin",
            json!({"Bool": {"aws:MultiFactorAuthPresent": "true"}, "NumericLessThan": {"aws:MultiFactorAuthAge": "300"}}),
        ),
        ("Chained", json!({})),
    ] {
        root.create_role(proto::CreateRoleRequest {
            role_name: role.into(),
            path: "/app/".into(),
            assume_role_policy_document: trust(condition),
            max_session_duration: 7_200,
            tags: vec![proto::Tag { key: "team".into(), value: "role-team".into() }],
            ..Default::default()
        })
        .await
        .unwrap();
        root.attach_role_policy(proto::AttachmentRequest {
            name: role.into(),
            policy_arn: format!("arn:aws:iam::{ACCOUNT}:policy/ReadReports"),
            account_id: String::new(),
        })
        .await
        .unwrap();
    }
    World { sidecar, alice, _dirs: (data, policies) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_follows_the_trust_policy_and_its_session_signs_requests() {
    let w = world().await;
    let mut sts = w.sidecar.sts_as(w.alice.clone()).await;

    let identity = sts.get_caller_identity(proto::Empty {}).await.unwrap().into_inner();
    assert_eq!(identity.arn, format!("arn:aws:iam::{ACCOUNT}:user/alice"));
    assert_eq!(identity.account, ACCOUNT);
    assert!(identity.user_id.starts_with("AIDA"));

    let without = sts.assume_role(assume("Reader", "s1")).await.unwrap_err();
    assert_eq!(error_code(&without), "AccessDenied", "{without:?}");
    assert!(without.message().contains("sts:AssumeRole"), "{without:?}");
    let wrong_external = proto::AssumeRoleRequest { external_id: "ext-2".into(), ..assume("Reader", "s1") };
    assert_eq!(error_code(&sts.assume_role(wrong_external).await.unwrap_err()), "AccessDenied");
    let missing = proto::AssumeRoleRequest { external_id: "ext-1".into(), ..assume("Nobody", "s1") };
    assert_eq!(error_code(&sts.assume_role(missing).await.unwrap_err()), "AccessDenied");
    let bad_name = proto::AssumeRoleRequest { external_id: "ext-1".into(), ..assume("Reader", "has space") };
    assert_eq!(error_code(&sts.assume_role(bad_name).await.unwrap_err()), "ValidationError");
    let too_long = proto::AssumeRoleRequest {
        external_id: "ext-1".into(),
        duration_seconds: 7_201,
        ..assume("Reader", "s1")
    };
    assert_eq!(error_code(&sts.assume_role(too_long).await.unwrap_err()), "ValidationError");

    let request = proto::AssumeRoleRequest {
        external_id: "ext-1".into(),
        tags: vec![proto::Tag { key: "team".into(), value: "blue".into() }],
        transitive_tag_keys: vec!["team".into()],
        ..assume("Reader", "alice-session")
    };
    let assumed = sts.assume_role(request).await.unwrap().into_inner();
    let session = session_credentials(&assumed);
    assert!(session.access_key_id.starts_with("ASIA"));
    let user = assumed.assumed_role_user.unwrap();
    assert_eq!(user.arn, format!("arn:aws:sts::{ACCOUNT}:assumed-role/Reader/alice-session"));
    assert!(user.assumed_role_id.starts_with("AROA") && user.assumed_role_id.ends_with(":alice-session"));
    let expiration: jiff::Timestamp = assumed.credentials.as_ref().unwrap().expiration.parse().unwrap();
    let remaining = expiration.as_second() - jiff::Timestamp::now().as_second();
    assert!((3_500..=3_600).contains(&remaining), "the default is one hour: {remaining}");

    let mut as_session = w.sidecar.sts_as(session.clone()).await;
    let identity = as_session.get_caller_identity(proto::Empty {}).await.unwrap().into_inner();
    assert_eq!(identity.arn, user.arn);
    assert_eq!(identity.user_id, user.assumed_role_id);

    // The session acts with the role's policies; its session tag overrides the role's tag.
    assert_eq!(s3(&w.sidecar, &session, "GetObject", "q1.csv").await, (Decision::Allow, String::new()));
    assert_eq!(s3(&w.sidecar, &session, "PutObject", "blue/x.csv").await, (Decision::Allow, String::new()));
    assert_eq!(s3(&w.sidecar, &session, "PutObject", "role-team/x.csv").await.0, Decision::ImplicitDeny);
    // Long-term keys of alice herself cannot read reports.
    assert_eq!(s3(&w.sidecar, &w.alice, "GetObject", "q1.csv").await.0, Decision::ImplicitDeny);

    // A tampered token, or one sealed by another key, is not a session.
    let mut tampered = session.clone();
    tampered.session_token = Some(tampered.session_token.unwrap().replacen('A', "B", 1));
    assert_eq!(
        s3(&w.sidecar, &tampered, "GetObject", "q1.csv").await,
        (Decision::ImplicitDeny, "InvalidClientTokenId".into())
    );

    // Chaining: one hour at most, and the transitive tag follows and cannot be overridden.
    let long = proto::AssumeRoleRequest { duration_seconds: 7_200, ..assume("Chained", "chain") };
    let refused = as_session.assume_role(long).await.unwrap_err();
    assert_eq!(error_code(&refused), "ValidationError");
    assert!(refused.message().contains("role chaining"), "{refused:?}");
    let overriding = proto::AssumeRoleRequest {
        tags: vec![proto::Tag { key: "team".into(), value: "red".into() }],
        ..assume("Chained", "chain")
    };
    assert_eq!(error_code(&as_session.assume_role(overriding).await.unwrap_err()), "InvalidParameterValue");
    let chained = as_session.assume_role(assume("Chained", "chain")).await.unwrap().into_inner();
    let chained = session_credentials(&chained);
    assert_eq!(s3(&w.sidecar, &chained, "PutObject", "blue/x.csv").await, (Decision::Allow, String::new()));

    // A session policy caps the session.
    let capped = proto::AssumeRoleRequest {
        external_id: "ext-1".into(),
        policy_arns: vec![format!("arn:aws:iam::{ACCOUNT}:policy/OnlyPublic")],
        ..assume("Reader", "capped")
    };
    let capped = session_credentials(&sts.assume_role(capped).await.unwrap().into_inner());
    assert_eq!(s3(&w.sidecar, &capped, "GetObject", "public/a.csv").await, (Decision::Allow, String::new()));
    assert_eq!(s3(&w.sidecar, &capped, "GetObject", "q1.csv").await.0, Decision::ImplicitDeny);
    let inline = proto::AssumeRoleRequest {
        external_id: "ext-1".into(),
        policy: r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/q1.csv"}}"#.into(),
        ..assume("Reader", "inline")
    };
    let inline = session_credentials(&sts.assume_role(inline).await.unwrap().into_inner());
    assert_eq!(s3(&w.sidecar, &inline, "GetObject", "q1.csv").await, (Decision::Allow, String::new()));
    assert_eq!(s3(&w.sidecar, &inline, "GetObject", "q2.csv").await.0, Decision::ImplicitDeny);
    let malformed = proto::AssumeRoleRequest {
        external_id: "ext-1".into(),
        policy: "{".into(),
        ..assume("Reader", "bad")
    };
    assert_eq!(error_code(&sts.assume_role(malformed).await.unwrap_err()), "MalformedPolicyDocument");

    // Deleting the role ends its sessions' permissions.
    let mut root = w.sidecar.admin().await;
    for policy in ["ReadReports"] {
        root.detach_role_policy(proto::AttachmentRequest {
            name: "Reader".into(),
            policy_arn: format!("arn:aws:iam::{ACCOUNT}:policy/{policy}"),
            account_id: String::new(),
        })
        .await
        .unwrap();
    }
    root.delete_role(proto::EntityRequest { name: "Reader".into(), account_id: String::new() })
        .await
        .unwrap();
    assert_eq!(s3(&w.sidecar, &session, "GetObject", "q1.csv").await.0, Decision::ImplicitDeny);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_codes_from_an_authenticator_app_open_mfa_protected_roles_once() {
    let w = world().await;
    let mut root = w.sidecar.admin().await;
    let device = root
        .create_virtual_mfa_device(proto::CreateVirtualMfaDeviceRequest {
            virtual_mfa_device_name: "alice-phone".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(device.serial_number, format!("arn:aws:iam::{ACCOUNT}:mfa/alice-phone"));
    assert!(
        device.otpauth_uri.starts_with("otpauth://totp/")
            && device.otpauth_uri.contains(&device.base32_string_seed)
    );
    let codes = |times: Vec<i64>| {
        run_python("totp.py", &json!({"seed": device.base32_string_seed, "times": times}).to_string())
    };
    let now = jiff::Timestamp::now().as_second();
    let enable = |code1: &str, code2: &str| proto::MfaCodesRequest {
        user_name: "alice".into(),
        serial_number: device.serial_number.clone(),
        authentication_code1: code1.into(),
        authentication_code2: code2.into(),
        account_id: String::new(),
    };
    let pair = codes(vec![now - 60, now - 30]);
    let not_consecutive = codes(vec![now - 90, now - 30]);
    let refused = root.enable_mfa_device(enable(&not_consecutive[0], &not_consecutive[1])).await.unwrap_err();
    assert_eq!(error_code(&refused), "InvalidAuthenticationCode", "{refused:?}");
    root.enable_mfa_device(enable(&pair[0], &pair[1])).await.unwrap();
    let listed = root
        .list_mfa_devices(proto::AccessKeyOwner { user_name: "alice".into(), account_id: String::new() })
        .await
        .unwrap()
        .into_inner()
        .mfa_devices;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].base32_string_seed.is_empty(), "the seed is shown only at creation");

    let mut sts = w.sidecar.sts_as(w.alice.clone()).await;
    let without = sts.assume_role(assume("Admin", "admin")).await.unwrap_err();
    assert_eq!(error_code(&without), "AccessDenied");
    let wrong = proto::AssumeRoleRequest {
        serial_number: device.serial_number.clone(),
        token_code: "000000".into(),
        ..assume("Admin", "admin")
    };
    let wrong = sts.assume_role(wrong).await.unwrap_err();
    assert_eq!(error_code(&wrong), "AccessDenied");

    let current = &codes(vec![jiff::Timestamp::now().as_second()])[0];
    let with = |code: &str| proto::AssumeRoleRequest {
        serial_number: device.serial_number.clone(),
        token_code: code.into(),
        ..assume("Admin", "admin")
    };
    let assumed = sts.assume_role(with(current)).await.unwrap().into_inner();
    assert_eq!(
        s3(&w.sidecar, &session_credentials(&assumed), "GetObject", "q1.csv").await.0,
        Decision::Allow
    );
    let reused = sts.assume_role(with(current)).await.unwrap_err();
    assert_eq!(error_code(&reused), "AccessDenied");
    assert!(reused.message().contains("already used"), "{reused:?}");

    // Wrong codes are rate-limited: after five, even a right one waits.
    for _ in 0..5 {
        let _ = sts.assume_role(with("123456")).await;
    }
    let next = &codes(vec![jiff::Timestamp::now().as_second() + 30])[0];
    let locked = sts.assume_role(with(next)).await.unwrap_err();
    assert!(locked.message().contains("too many invalid codes"), "{locked:?}");

    // GetSessionToken with MFA: the session carries MFA into AssumeRole.
    let mut root_sts = w.sidecar.sts_as(w.sidecar.root.clone()).await;
    let root_session = root_sts
        .get_session_token(proto::GetSessionTokenRequest { duration_seconds: 7_200, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(error_code(&root_session), "ValidationError", "the root's sessions last an hour at most");
    let plain = sts.get_session_token(proto::GetSessionTokenRequest::default()).await.unwrap().into_inner();
    let plain = plain.credentials.unwrap();
    let plain = SigningCredentials {
        access_key_id: plain.access_key_id,
        secret_access_key: plain.secret_access_key,
        session_token: Some(plain.session_token),
    };
    let again = w
        .sidecar
        .sts_as(plain.clone())
        .await
        .get_session_token(proto::GetSessionTokenRequest::default())
        .await;
    assert_eq!(
        error_code(&again.unwrap_err()),
        "AccessDenied",
        "no GetSessionToken with session credentials"
    );
    // Without MFA, session credentials from GetSessionToken cannot call IAM.
    let iam =
        w.sidecar.admin_as(plain.clone()).await.list_users(proto::ListRequest::default()).await.unwrap_err();
    assert_eq!(error_code(&iam), "AccessDenied");
    assert!(iam.message().contains("MFA"), "{iam:?}");
    let as_plain = w.sidecar.sts_as(plain).await.assume_role(assume("Admin", "admin2")).await.unwrap_err();
    assert_eq!(error_code(&as_plain), "AccessDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_tokens_are_refused_with_expired_token() {
    let w = world().await;
    // A session sealed with this sidecar's own master key, which expired a minute ago.
    let keys = std::fs::read_to_string(w._dirs.0.path().join("master.keys")).unwrap();
    let keyring = KeyRing::parse("test", &keys).unwrap();
    let mut roles = w.sidecar.admin().await;
    let role = roles
        .get_role(proto::EntityRequest { name: "Chained".into(), account_id: String::new() })
        .await
        .unwrap()
        .into_inner();
    let now = jiff::Timestamp::now().as_second();
    let secret = iamd::credentials::Secret::generate();
    let session = iamd::credentials::Session::new(
        iamd::credentials::new_access_key_id("ASIA"),
        secret.clone(),
        ACCOUNT.into(),
        SessionIdentity::Role {
            arn: role.arn.clone(),
            name: role.role_name.clone(),
            id: role.role_id.clone(),
            session_name: "old".into(),
            chained: false,
        },
        now - 3_660,
        now - 60,
    );
    let expired = SigningCredentials {
        access_key_id: session.access_key_id.clone(),
        secret_access_key: secret.expose().to_string(),
        session_token: Some(session.seal(&keyring)),
    };
    assert_eq!(
        s3(&w.sidecar, &expired, "GetObject", "q1.csv").await,
        (Decision::ImplicitDeny, "ExpiredToken".into())
    );
    let refused = w.sidecar.sts_as(expired).await.get_caller_identity(proto::Empty {}).await.unwrap_err();
    assert_eq!(error_code(&refused), "ExpiredToken");
}
