//! Credentials end to end: access keys through the admin API, requests signed by botocore
//! verified by Authorize (and their tampered, expired, skewed and replayed copies refused), and
//! admin calls authorized by iamd's own policies.

mod common;

use common::{Sidecar, botocore_sign, temp_dir, write_bundle};
use iamd::credentials::sigv4::SigningCredentials;
use iamd::proto::{self, Decision};
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";

fn bundle(dir: &std::path::Path) {
    write_bundle(
        dir,
        &[
            ("manifest.json", format!("{{\"revision\": \"creds-1\", \"account\": \"{ACCOUNT}\"}}")),
            (
                "policies/ReadOwnReports.json",
                r#"{"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::reports/${aws:username}/*"},
                    {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}]}"#
                    .into(),
            ),
        ],
    );
}

fn error_code(status: &tonic::Status) -> String {
    status.metadata().get("iamd-error-code").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn owner(user: &str) -> proto::AccessKeyOwner {
    proto::AccessKeyOwner { user_name: user.into(), account_id: String::new() }
}

fn credentials(key: &proto::AccessKey) -> SigningCredentials {
    SigningCredentials {
        access_key_id: key.access_key_id.clone(),
        secret_access_key: key.secret_access_key.clone(),
        session_token: None,
    }
}

fn authorize(signed: &proto::SignedRequest, action: &str, resource: &str) -> proto::AuthorizeRequest {
    proto::AuthorizeRequest {
        action: action.into(),
        resource: resource.into(),
        signed_request: Some(signed.clone()),
        explain: true,
        ..Default::default()
    }
}

fn outcome(response: &proto::AuthorizeResponse) -> (Decision, String) {
    let code = response.authentication_error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
    (Decision::try_from(response.decision).unwrap(), code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_are_managed_as_in_aws() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    admin
        .create_user(proto::CreateUserRequest { user_name: "alice".into(), ..Default::default() })
        .await
        .unwrap();

    let first = admin.create_access_key(owner("alice")).await.unwrap().into_inner();
    assert!(first.access_key_id.starts_with("AKIA") && first.access_key_id.len() == 20);
    assert_eq!(first.secret_access_key.len(), 40);
    assert_eq!((first.user_name.as_str(), first.status.as_str()), ("alice", "Active"));
    let second = admin.create_access_key(owner("alice")).await.unwrap().into_inner();
    let third = admin.create_access_key(owner("alice")).await.unwrap_err();
    assert_eq!(error_code(&third), "LimitExceeded", "{third:?}");

    let listed = admin.list_access_keys(owner("alice")).await.unwrap().into_inner().access_key_metadata;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.secret_access_key.is_empty()), "a secret is shown only at creation");

    admin
        .update_access_key(proto::UpdateAccessKeyRequest {
            user_name: "alice".into(),
            access_key_id: second.access_key_id.clone(),
            status: "Inactive".into(),
            account_id: String::new(),
        })
        .await
        .unwrap();
    let statuses: Vec<String> = admin
        .list_access_keys(owner("alice"))
        .await
        .unwrap()
        .into_inner()
        .access_key_metadata
        .into_iter()
        .filter(|k| k.access_key_id == second.access_key_id)
        .map(|k| k.status)
        .collect();
    assert_eq!(statuses, ["Inactive"]);

    let unused = admin
        .get_access_key_last_used(proto::AccessKeyRequest {
            access_key_id: first.access_key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unused.user_name, "alice");
    assert_eq!(unused.access_key_last_used.unwrap().service_name, "N/A");

    let conflict = admin
        .delete_user(proto::EntityRequest { name: "alice".into(), account_id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(error_code(&conflict), "DeleteConflict");
    assert!(conflict.message().contains("access keys"), "{conflict:?}");

    let missing = admin
        .delete_access_key(proto::AccessKeyRequest {
            user_name: "alice".into(),
            access_key_id: "AKIAAAAAAAAAAAAAAAAA".into(),
            account_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&missing), "NoSuchEntity");
    for key in [&first, &second] {
        admin
            .delete_access_key(proto::AccessKeyRequest {
                user_name: "alice".into(),
                access_key_id: key.access_key_id.clone(),
                account_id: String::new(),
            })
            .await
            .unwrap();
    }
    admin
        .delete_user(proto::EntityRequest { name: "alice".into(), account_id: String::new() })
        .await
        .unwrap();

    // The secret is stored sealed: it is nowhere in the data directory or the master key file.
    let mut stored = Vec::new();
    for entry in walk(data.path()) {
        stored.extend(std::fs::read(entry).unwrap());
    }
    let haystack = String::from_utf8_lossy(&stored);
    assert!(!haystack.contains(&first.secret_access_key));
    assert!(haystack.contains(&first.access_key_id) || haystack.contains("akey/"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_by_botocore_are_authenticated_and_their_altered_copies_are_not() {
    let data = temp_dir();
    let policies = temp_dir();
    bundle(policies.path());
    let sidecar = Sidecar::start(data.path(), Some(policies.path()), &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    let alice =
        sidecar.user_with_key("alice", &[&format!("arn:aws:iam::{ACCOUNT}:policy/ReadOwnReports")]).await;

    let s3 = |name: &str, method: &str, url: &str| json!({"name": name, "method": method, "url": url, "service": "s3", "region": "us-east-1"});
    let mut requests = vec![
        s3("get", "GET", "https://reports.s3.amazonaws.com/reports/alice/q1.csv"),
        s3(
            "query",
            "GET",
            "https://s3.amazonaws.com/reports/alice/q1.csv?versionId=3%2F4&acl=&x-id=GetObject",
        ),
        s3("non-ascii", "GET", "https://s3.amazonaws.com/reports/alice/%C3%A9t%C3%A9%20%E2%82%AC.csv"),
        json!({"name": "put", "method": "PUT", "url": "https://s3.amazonaws.com/reports/alice/new.csv",
               "body": "a,b\n1,2\n", "service": "s3", "region": "eu-west-1"}),
        json!({"name": "api", "method": "POST", "url": "https://api.example.com/prod/orders/../orders/42?b=2&a=1",
               "headers": {"Content-Type": "application/json"}, "body": "{\"qty\": 3}",
               "service": "execute-api", "region": "us-east-1"}),
        json!({"name": "presigned", "method": "GET", "url": "https://s3.amazonaws.com/reports/alice/q1.csv",
               "service": "s3", "region": "us-east-1", "presign_expires": 900}),
        json!({"name": "old-presigned", "method": "GET", "url": "https://s3.amazonaws.com/reports/alice/q1.csv",
               "service": "s3", "region": "us-east-1", "presign_expires": 60, "offset_seconds": -600}),
        json!({"name": "expired", "method": "GET", "url": "https://s3.amazonaws.com/reports/alice/q1.csv",
               "service": "s3", "region": "us-east-1", "offset_seconds": -16 * 60}),
        json!({"name": "future", "method": "GET", "url": "https://s3.amazonaws.com/reports/alice/q1.csv",
               "service": "s3", "region": "us-east-1", "offset_seconds": 16 * 60}),
    ];
    requests.push(s3("other-user", "GET", "https://s3.amazonaws.com/reports/bob/q1.csv"));
    let signed = botocore_sign(&alice, Value::Array(requests));
    let mut authorizer = sidecar.authorizer().await;
    let object = |key: &str| format!("arn:aws:s3:::reports/{key}");

    for (name, action, resource) in [
        ("get", "s3:GetObject", object("alice/q1.csv")),
        ("query", "s3:GetObject", object("alice/q1.csv")),
        ("non-ascii", "s3:GetObject", object("alice/été €.csv")),
        ("put", "s3:PutObject", object("alice/new.csv")),
        (
            "api",
            "execute-api:Invoke",
            "arn:aws:execute-api:us-east-1:111122223333:api/prod/POST/orders/42".into(),
        ),
        ("presigned", "s3:GetObject", object("alice/q1.csv")),
    ] {
        let response =
            authorizer.authorize(authorize(&signed[name], action, &resource)).await.unwrap().into_inner();
        assert_eq!(outcome(&response), (Decision::Allow, String::new()), "{name}: {response:?}");
        assert_eq!(response.principal, format!("arn:aws:iam::{ACCOUNT}:user/alice"));
    }
    // Authenticated, but not allowed: the decision is the policies' own.
    let bob = authorizer
        .authorize(authorize(&signed["other-user"], "s3:GetObject", &object("bob/q1.csv")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&bob), (Decision::ImplicitDeny, String::new()));

    let refused =
        |request: proto::SignedRequest| authorize(&request, "s3:GetObject", &object("alice/q1.csv"));
    let mut cases: Vec<(&str, proto::SignedRequest, &str)> = Vec::new();
    let mut tampered_path = signed["get"].clone();
    tampered_path.path = "/reports/alice/q2.csv".into();
    cases.push(("tampered path", tampered_path, "SignatureDoesNotMatch"));
    let mut tampered_body = signed["put"].clone();
    tampered_body.payload = Some(proto::signed_request::Payload::Body(b"a,b\n9,9\n".to_vec()));
    cases.push(("tampered body", tampered_body, "XAmzContentSHA256Mismatch"));
    let mut tampered_api_body = signed["api"].clone();
    tampered_api_body.payload = Some(proto::signed_request::Payload::Body(b"{\"qty\": 300}".to_vec()));
    cases.push(("tampered body without a content hash header", tampered_api_body, "SignatureDoesNotMatch"));
    let mut tampered_query = signed["query"].clone();
    tampered_query.query = tampered_query.query.replace("3%2F4", "3%2F5");
    cases.push(("tampered query", tampered_query, "SignatureDoesNotMatch"));
    let mut tampered_presigned = signed["presigned"].clone();
    tampered_presigned.query = tampered_presigned.query.replace("X-Amz-Expires=900", "X-Amz-Expires=604800");
    cases.push(("tampered presigned expiry", tampered_presigned, "SignatureDoesNotMatch"));
    let mut unknown_key = signed["get"].clone();
    for header in &mut unknown_key.headers {
        if header.name.eq_ignore_ascii_case("authorization") {
            header.value = header.value.replace(&alice.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        }
    }
    cases.push(("unknown key", unknown_key, "InvalidClientTokenId"));
    cases.push(("expired", signed["expired"].clone(), "RequestExpired"));
    cases.push(("signed in the future", signed["future"].clone(), "RequestExpired"));
    cases.push(("expired presigned URL", signed["old-presigned"].clone(), "RequestExpired"));
    cases.push(("replayed", signed["get"].clone(), "AccessDenied"));
    // The same signed request may be asked about for another action (CopyObject reads one
    // object and writes another), but not twice for the same one.
    let other_question = authorizer
        .authorize(authorize(&signed["get"], "s3:GetObjectVersion", &object("alice/q1.csv")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&other_question).1, "", "{other_question:?}");
    let mut unsigned = signed["get"].clone();
    unsigned.headers.retain(|h| !h.name.eq_ignore_ascii_case("authorization"));
    cases.push(("unsigned", unsigned, "MissingAuthenticationToken"));
    for (name, request, code) in cases {
        let response = authorizer.authorize(refused(request)).await.unwrap().into_inner();
        assert_eq!(outcome(&response), (Decision::ImplicitDeny, code.to_string()), "{name}: {response:?}");
        assert!(response.principal.is_empty());
        let reason = response.explanation.unwrap().reason;
        assert!(!reason.contains(&alice.secret_access_key), "{name}: the secret leaked");
    }
    // A presigned URL may be used again until it expires.
    let again = authorizer
        .authorize(authorize(&signed["presigned"], "s3:GetObject", &object("alice/q1.csv")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&again), (Decision::Allow, String::new()));

    // An inactive key authenticates nothing.
    admin
        .update_access_key(proto::UpdateAccessKeyRequest {
            user_name: "alice".into(),
            access_key_id: alice.access_key_id.clone(),
            status: "Inactive".into(),
            account_id: String::new(),
        })
        .await
        .unwrap();
    let fresh =
        botocore_sign(&alice, json!([s3("fresh", "GET", "https://s3.amazonaws.com/reports/alice/q1.csv")]));
    let inactive = authorizer.authorize(refused(fresh["fresh"].clone())).await.unwrap().into_inner();
    assert_eq!(outcome(&inactive), (Decision::ImplicitDeny, "InvalidClientTokenId".to_string()));

    let used = admin
        .get_access_key_last_used(proto::AccessKeyRequest {
            access_key_id: alice.access_key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .access_key_last_used
        .unwrap();
    assert_eq!(used.service_name, "s3");
    assert!(["us-east-1", "eu-west-1"].contains(&used.region.as_str()), "{used:?}");
    assert!(!used.last_used_date.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_are_authorized_by_iamd_policies() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &[]);
    let mut root = sidecar.admin().await;
    root.create_user(proto::CreateUserRequest { user_name: "alice".into(), ..Default::default() })
        .await
        .unwrap();
    let key = root.create_access_key(owner("alice")).await.unwrap().into_inner();
    let mut alice = sidecar.admin_as(credentials(&key)).await;

    let create_bob = || proto::CreateUserRequest { user_name: "bob".into(), ..Default::default() };
    let denied = alice.create_user(create_bob()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(error_code(&denied), "AccessDenied");
    assert!(
        denied.message().contains(&format!(
            "User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: iam:CreateUser on resource: arn:aws:iam::{ACCOUNT}:user/bob"
        )),
        "{denied:?}"
    );

    root.attach_user_policy(proto::AttachmentRequest {
        name: "alice".into(),
        policy_arn: "arn:aws:iam::aws:policy/IAMFullAccess".into(),
        account_id: String::new(),
    })
    .await
    .unwrap();
    alice.create_user(create_bob()).await.unwrap();
    // Her own keys, without naming herself.
    let own = alice.list_access_keys(owner("")).await.unwrap().into_inner().access_key_metadata;
    assert_eq!(own.len(), 1);
    // IAMFullAccess is no iamd:* permission.
    let status = alice.status(proto::Empty {}).await.unwrap_err();
    assert_eq!(error_code(&status), "AccessDenied");
    assert!(status.message().contains("iamd:GetStatus"), "{status:?}");

    let mut wrong = credentials(&key);
    wrong.secret_access_key = "0".repeat(40);
    let refused = sidecar
        .admin_as(wrong)
        .await
        .get_user(proto::EntityRequest { name: "bob".into(), account_id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(error_code(&refused), "SignatureDoesNotMatch");

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", sidecar.admin))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let anonymous = proto::admin_client::AdminClient::new(channel)
        .list_users(proto::ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    assert_eq!(error_code(&anonymous), "MissingAuthenticationToken");

    // Writes, refusals and the root's calls are audited, with no secret.
    drop((alice, root));
    let audit_path = data.path().join("store/audit.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut audit = String::new();
    while std::time::Instant::now() < deadline {
        audit = std::fs::read_to_string(&audit_path).unwrap_or_default();
        if audit.contains("\"GetStatus\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let records: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by = |event: &str, principal: &str| {
        records
            .iter()
            .find(|r| r["eventName"] == event && r["principal"].as_str().unwrap().ends_with(principal))
    };
    assert_eq!(by("CreateUser", ":root").unwrap()["resource"], format!("arn:aws:iam::{ACCOUNT}:user/alice"));
    assert_eq!(by("CreateUser", "user/alice").unwrap()["errorCode"], "AccessDenied");
    assert!(by("CreateUser", "user/alice").iter().any(|r| r["accessKeyId"] == key.access_key_id.as_str()));
    assert_eq!(by("GetStatus", "user/alice").unwrap()["errorCode"], "AccessDenied");
    assert!(!audit.contains(&key.secret_access_key) && !audit.contains(&sidecar.root.secret_access_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_its_calls_like_the_aws_cli() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let endpoint = format!("http://{}", sidecar.admin);
    let iamd = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_iamd"));
        command.args(args).env("IAMD_ADMIN_ENDPOINT", &endpoint);
        for variable in
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "IAMD_CREDENTIALS_FILE"]
        {
            command.env_remove(variable);
        }
        command.envs(env.iter().copied());
        command.output().unwrap()
    };
    let root_file = data.path().join("root.env");
    let as_root = [("IAMD_CREDENTIALS_FILE", root_file.to_str().unwrap())];

    let missing = iamd(&["admin", "list-users"], &[]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no credentials"), "{missing:?}");

    assert!(iamd(&["admin", "create-user", "--user-name", "alice"], &as_root).status.success());
    let created = iamd(&["admin", "create-access-key", "--user-name", "alice"], &as_root);
    assert!(created.status.success(), "{created:?}");
    let key: Value = serde_json::from_slice(&created.stdout).unwrap();
    let (id, secret) = (
        key["AccessKey"]["AccessKeyId"].as_str().unwrap(),
        key["AccessKey"]["SecretAccessKey"].as_str().unwrap(),
    );
    let as_alice = [("AWS_ACCESS_KEY_ID", id), ("AWS_SECRET_ACCESS_KEY", secret)];

    let identity = iamd(&["sts", "get-caller-identity"], &as_alice);
    assert!(identity.status.success(), "{identity:?}");
    let identity: Value = serde_json::from_slice(&identity.stdout).unwrap();
    assert_eq!(identity["Arn"], format!("arn:aws:iam::{ACCOUNT}:user/alice"));

    let denied = iamd(&["admin", "create-user", "--user-name", "bob"], &as_alice);
    assert_eq!(denied.status.code(), Some(254));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("(AccessDenied) when calling the CreateUser operation"), "{stderr}");
}
