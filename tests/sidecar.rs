//! The sidecar as users run it: a real `iamd serve` on loopback, a temporary sled directory,
//! real gRPC clients.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{
    Sidecar, attachment, create_user, decision, entity, path, request, swap_link, temp_dir, write_bundle,
};
use iamd::proto::{self, Decision};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const ACCOUNT: &str = "111122223333";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";

fn string(value: &str) -> proto::ContextValues {
    proto::ContextValues {
        values: vec![proto::ContextValue { kind: Some(proto::context_value::Kind::String(value.into())) }],
    }
}

fn put_policy(name: &str, policy_name: &str, document: &str) -> proto::PutPolicyRequest {
    proto::PutPolicyRequest {
        name: name.into(),
        policy_name: policy_name.into(),
        policy_document: document.into(),
        account_id: String::new(),
    }
}

fn error_code(status: &tonic::Status) -> String {
    status.metadata().get("iamd-error-code").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_are_seen_by_the_next_decision() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    let mut authorizer = sidecar.authorizer().await;
    let read = request(ALICE, "s3:GetObject", "arn:aws:s3:::reports/alice/q1.csv");

    let unknown = authorizer.authorize(read.clone()).await.unwrap().into_inner();
    assert_eq!(decision(&unknown), Decision::ImplicitDeny);
    assert!(unknown.explanation.unwrap().reason.contains("is not known to iamd"));

    let user = admin.create_user(create_user("alice")).await.unwrap().into_inner();
    assert_eq!(user.arn, ALICE);
    assert!(user.user_id.starts_with("AIDA") && user.user_id.len() == 21, "{}", user.user_id);
    assert_eq!(
        decision(&authorizer.authorize(read.clone()).await.unwrap().into_inner()),
        Decision::ImplicitDeny
    );

    // The sample bundle's ReportsReadOnly uses ${aws:username}: iamd fills it from the store.
    admin
        .attach_user_policy(attachment("alice", "arn:aws:iam::111122223333:policy/ReportsReadOnly"))
        .await
        .unwrap();
    assert_eq!(decision(&authorizer.authorize(read.clone()).await.unwrap().into_inner()), Decision::Allow);
    let bob_file = request(ALICE, "s3:GetObject", "arn:aws:s3:::reports/bob/q1.csv");
    assert_eq!(decision(&authorizer.authorize(bob_file).await.unwrap().into_inner()), Decision::ImplicitDeny);

    // Tags become aws:PrincipalTag/*, and a caller cannot claim tags it does not have.
    let team = request(ALICE, "s3:GetObject", "arn:aws:s3:::reports/teams/red/plan.txt");
    let mut claimed = team.clone();
    claimed.context.insert("aws:PrincipalTag/team".into(), string("red"));
    assert_eq!(
        decision(&authorizer.authorize(claimed.clone()).await.unwrap().into_inner()),
        Decision::ImplicitDeny
    );
    admin
        .tag_user(proto::TagRequest {
            name: "alice".into(),
            tags: vec![proto::Tag { key: "team".into(), value: "red".into() }],
            account_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(decision(&authorizer.authorize(team).await.unwrap().into_inner()), Decision::Allow);

    // The bucket policy of the sample bundle denies insecure transport: an explicit deny.
    let mut insecure = read.clone();
    insecure.context.insert("aws:SecureTransport".into(), string("false"));
    insecure.explain = true;
    let denied = authorizer.authorize(insecure).await.unwrap().into_inner();
    assert_eq!(decision(&denied), Decision::ExplicitDeny);
    let explanation = denied.explanation.unwrap();
    assert_eq!(explanation.deciding_layer, "resource");
    assert!(explanation.matched_statements.iter().any(|m| m.statement == "DenyInsecureTransport"));

    // Groups: a group's inline policy reaches its members at once, and leaves with them.
    admin
        .create_group(proto::CreateGroupRequest { group_name: "ops".into(), ..Default::default() })
        .await
        .unwrap();
    admin
        .put_group_policy(put_policy("ops", "Queues", r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}}"#))
        .await
        .unwrap();
    let queue = request(ALICE, "sqs:SendMessage", "arn:aws:sqs:us-east-1:111122223333:jobs");
    assert_eq!(
        decision(&authorizer.authorize(queue.clone()).await.unwrap().into_inner()),
        Decision::ImplicitDeny
    );
    let membership = proto::GroupMembershipRequest {
        group_name: "ops".into(),
        user_name: "alice".into(),
        account_id: String::new(),
    };
    admin.add_user_to_group(membership.clone()).await.unwrap();
    assert_eq!(decision(&authorizer.authorize(queue.clone()).await.unwrap().into_inner()), Decision::Allow);
    admin.remove_user_from_group(membership).await.unwrap();
    assert_eq!(decision(&authorizer.authorize(queue).await.unwrap().into_inner()), Decision::ImplicitDeny);

    // Batch: one snapshot for all.
    let batch = authorizer
        .batch_authorize(proto::BatchAuthorizeRequest {
            requests: vec![read.clone(), request(ALICE, "s3:PutObject", "arn:aws:s3:::reports/alice/x")],
        })
        .await
        .unwrap()
        .into_inner();
    let decisions: Vec<Decision> = batch.responses.iter().map(decision).collect();
    assert_eq!(decisions, [Decision::Allow, Decision::ImplicitDeny]);
    assert!(batch.responses.iter().all(|r| r.revision == batch.revision));

    let simulated = authorizer
        .simulate_principal_policy(proto::SimulatePrincipalPolicyRequest {
            policy_source_arn: ALICE.into(),
            action_names: vec!["s3:GetObject".into(), "s3:DeleteObject".into()],
            resource_arns: vec!["arn:aws:s3:::reports/alice/q1.csv".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(simulated.results.len(), 2);
    assert_eq!(simulated.results[0].decision, Decision::Allow as i32);
    assert_eq!(
        simulated.results[0].explanation.as_ref().unwrap().matched_statements[0].statement,
        "ReadOwnReports"
    );
    assert_eq!(simulated.results[1].decision, Decision::ImplicitDeny as i32);
}

/// Listings page as AWS's `Marker` and `MaxItems` do: in name order (case-insensitive), the
/// path prefix applied before the page is cut, and the marker naming where the next page starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_in_name_order() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    for (name, path) in
        [("dave", "/team/"), ("Carol", "/"), ("bob", "/team/"), ("eve", "/team/"), ("alice", "/team/")]
    {
        let request = proto::CreateUserRequest { path: path.into(), ..create_user(name) };
        admin.create_user(request).await.unwrap();
        admin
            .create_group(proto::CreateGroupRequest {
                group_name: format!("{name}s"),
                path: path.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let list = |path_prefix: &str, marker: &str, max_items| proto::ListRequest {
        path_prefix: path_prefix.into(),
        marker: marker.into(),
        max_items,
        ..Default::default()
    };
    let mut users = admin.clone();
    let mut users_page = async |request| {
        let page = users.list_users(request).await.unwrap().into_inner();
        (page.users.into_iter().map(|u| u.user_name).collect::<Vec<_>>(), page.marker)
    };

    assert_eq!(users_page(list("/team/", "", 2)).await, (vec!["alice".into(), "bob".into()], "dave".into()));
    assert_eq!(
        users_page(list("/team/", "DAVE", 2)).await,
        (vec!["dave".into(), "eve".into()], String::new())
    );
    assert_eq!(
        users_page(list("/", "", 3)).await,
        (vec!["alice".into(), "bob".into(), "Carol".into()], "dave".into())
    );
    assert_eq!(users_page(list("/", "", 0)).await.0.len(), 5);
    assert_eq!(users_page(list("/", "zed", 2)).await, (Vec::<String>::new(), String::new()));

    let groups = admin.list_groups(list("/team/", "", 3)).await.unwrap().into_inner();
    let names: Vec<_> = groups.groups.iter().map(|g| g.group_name.as_str()).collect();
    assert_eq!((names, groups.marker.as_str()), (vec!["alices", "bobs", "daves"], "eves"));
    let groups = admin.list_groups(list("/team/", &groups.marker, 3)).await.unwrap().into_inner();
    let names: Vec<_> = groups.groups.iter().map(|g| g.group_name.as_str()).collect();
    assert_eq!((names, groups.marker.as_str()), (vec!["eves"], ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_cannot_claim_identity_keys_or_another_account() {
    let data = temp_dir();
    let bundle = temp_dir();
    write_bundle(bundle.path(), &[
        ("manifest.json", format!("{{\"revision\": \"r1\", \"account\": \"{ACCOUNT}\"}}")),
        ("policies/S3.json", r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#.into()),
        ("resource-policies/reports.json", r#"{"resources": ["arn:aws:s3:::reports/*"], "policy": {"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalAccount": "111122223333"}}}}}"#.into()),
    ]);
    let sidecar = Sidecar::start(data.path(), Some(bundle.path()), &["--no-audit"]);
    let mut authorizer = sidecar.authorizer().await;
    let mut spoofed = request("anonymous", "s3:GetObject", "arn:aws:s3:::reports/x");
    spoofed.context.insert("aws:PrincipalAccount".into(), string(ACCOUNT));
    assert_eq!(decision(&authorizer.authorize(spoofed).await.unwrap().into_inner()), Decision::ImplicitDeny);

    // bob belongs to another account: the bucket (no account in its ARN) is the sidecar's, so
    // his own s3:* is not enough without a grant from the bucket policy to his account.
    let mut admin = sidecar.admin().await;
    admin
        .create_user(proto::CreateUserRequest {
            user_name: "bob".into(),
            account_id: "444455556666".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .attach_user_policy(proto::AttachmentRequest {
            name: "bob".into(),
            policy_arn: "arn:aws:iam::111122223333:policy/S3".into(),
            account_id: "444455556666".into(),
        })
        .await
        .unwrap();
    let bob = "arn:aws:iam::444455556666:user/bob";
    assert_eq!(
        decision(
            &authorizer
                .authorize(request(bob, "s3:PutObject", "arn:aws:s3:::reports/x"))
                .await
                .unwrap()
                .into_inner()
        ),
        Decision::ImplicitDeny
    );
    let mut own = request(bob, "s3:PutObject", "arn:aws:s3:::bobs-bucket/x");
    own.resource_account = "444455556666".into();
    assert_eq!(decision(&authorizer.authorize(own).await.unwrap().into_inner()), Decision::Allow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_errors_carry_aws_codes() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    admin.create_user(create_user("alice")).await.unwrap();

    let exists = admin.create_user(create_user("ALICE")).await.unwrap_err();
    assert_eq!((exists.code(), error_code(&exists).as_str()), (Code::AlreadyExists, "EntityAlreadyExists"));
    let missing = admin.get_user(entity("bob")).await.unwrap_err();
    assert_eq!((missing.code(), error_code(&missing).as_str()), (Code::NotFound, "NoSuchEntity"));
    let bad_name = admin.create_user(create_user("no spaces")).await.unwrap_err();
    assert_eq!(error_code(&bad_name), "InvalidInput");
    let malformed = admin
        .put_user_policy(put_policy("alice", "P", r#"{"Statement": {"Effect": "Allow", "Action": "s3:*"}}"#))
        .await
        .unwrap_err();
    assert_eq!(error_code(&malformed), "MalformedPolicyDocument");
    assert!(malformed.message().contains("no `Resource`"), "{}", malformed.message());
    let not_attachable = admin
        .attach_user_policy(attachment("alice", "arn:aws:iam::111122223333:policy/Nope"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&not_attachable), "NoSuchEntity");

    admin.put_user_policy(put_policy("alice", "P", r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#)).await.unwrap();
    let conflict = admin.delete_user(entity("alice")).await.unwrap_err();
    assert_eq!(
        (conflict.code(), error_code(&conflict).as_str()),
        (Code::FailedPrecondition, "DeleteConflict")
    );

    let too_big = format!(
        r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow", "Action": [{}], "Resource": "*"}}}}"#,
        (0..200).map(|i| format!("\"s3:Action{i}\"")).collect::<Vec<_>>().join(",")
    );
    let limit = admin.put_user_policy(put_policy("alice", "Big", &too_big)).await.unwrap_err();
    assert_eq!(error_code(&limit), "LimitExceeded");

    let tags: Vec<proto::Tag> =
        (0..51).map(|i| proto::Tag { key: format!("k{i}"), value: "v".into() }).collect();
    let too_many = admin
        .tag_user(proto::TagRequest { name: "alice".into(), tags, account_id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(error_code(&too_many), "LimitExceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_invalid_argument_naming_the_field() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut authorizer = sidecar.authorizer().await;
    let cases = [
        (request("bob", "s3:GetObject", "*"), "`principal`"),
        (request(ALICE, "s3GetObject", "*"), "`action`"),
        (request(ALICE, "s3:Get*", "*"), "`action`"),
        (request(ALICE, "s3:GetObject", ""), "`resource`"),
    ];
    for (request, field) in cases {
        let status = authorizer.authorize(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    let mut other_owner = request(ALICE, "sqs:SendMessage", "arn:aws:sqs:us-east-1:999999999999:jobs");
    other_owner.resource_account = ACCOUNT.into();
    let status = authorizer.authorize(other_owner).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("`resource_account`"), "{}", status.message());
    let mut bad_context = request(ALICE, "s3:GetObject", "*");
    bad_context.context.insert("SourceIp".into(), string("10.0.0.1"));
    let status = authorizer.authorize(bad_context).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("`context`"), "{}", status.message());
    let mut huge = request(ALICE, "s3:GetObject", "*");
    for i in 0..200 {
        huge.context.insert(format!("app:key{i}"), string("v"));
    }
    assert_eq!(authorizer.authorize(huge).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_and_no_snapshot_is_unavailable() {
    let data = temp_dir();
    let bundle = temp_dir();
    write_bundle(bundle.path(), &[("manifest.json", "{\"revision\": \"broken\"}".into())]);
    let sidecar = Sidecar::start(data.path(), Some(bundle.path()), &["--no-audit"]);
    let mut authorizer = sidecar.authorizer().await;
    let status = authorizer.authorize(request(ALICE, "s3:GetObject", "*")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", sidecar.authorizer))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest { service: service.into() };
    let serving = health.check(check("iamd.v1.Authorizer")).await.unwrap().into_inner().status;
    assert_eq!(serving, ServingStatus::NotServing as i32);
    assert!(sidecar.log_contains("manifest.json"), "the rejected bundle's error is logged");

    write_bundle(
        bundle.path(),
        &[("manifest.json", format!("{{\"revision\": \"fixed\", \"account\": \"{ACCOUNT}\"}}"))],
    );
    assert!(sidecar.wait_for_log("bundle published", Duration::from_secs(10)));
    let serving = health.check(check("iamd.v1.Authorizer")).await.unwrap().into_inner().status;
    assert_eq!(serving, ServingStatus::Serving as i32);
    let response = authorizer.authorize(request(ALICE, "s3:GetObject", "*")).await.unwrap().into_inner();
    assert!(response.revision.starts_with("fixed+"), "{}", response.revision);
}

fn versioned_bundle(root: &std::path::Path, version: &str, allowed_action: &str) -> std::path::PathBuf {
    let dir = root.join(version);
    let policy = format!(
        r#"{{"Version": "2012-10-17", "Statement": {{"Sid": "{version}", "Effect": "Allow", "Action": "{allowed_action}", "Resource": "*"}}}}"#
    );
    write_bundle(
        &dir,
        &[
            ("manifest.json", format!("{{\"revision\": \"{version}\", \"account\": \"{ACCOUNT}\"}}")),
            ("policies/App.json", policy),
        ],
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_hot_reload_under_load_never_fails_or_mixes() {
    let data = temp_dir();
    let root = temp_dir();
    let v1 = versioned_bundle(root.path(), "v1", "s3:GetObject");
    let link = path(&root, "current");
    swap_link(&link, &v1);
    let sidecar = Sidecar::start(data.path(), Some(&link), &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    admin.create_user(create_user("alice")).await.unwrap();
    admin.attach_user_policy(attachment("alice", "arn:aws:iam::111122223333:policy/App")).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut client = sidecar.authorizer().await;
        let (stop, checked) = (stop.clone(), checked.clone());
        workers.push(tokio::spawn(async move {
            let mut revisions = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let response = client
                    .authorize(request(ALICE, "s3:GetObject", "arn:aws:s3:::b/k"))
                    .await
                    .expect("no request fails during reloads")
                    .into_inner();
                let expected = if response.revision.starts_with("v1+") {
                    Decision::Allow
                } else {
                    Decision::ImplicitDeny
                };
                assert_eq!(
                    decision(&response),
                    expected,
                    "revision {} decided from another bundle",
                    response.revision
                );
                revisions.insert(response.revision.split('+').next().unwrap().to_string());
                checked.fetch_add(1, Ordering::Relaxed);
            }
            revisions
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    let v2 = versioned_bundle(root.path(), "v2", "s3:PutObject");
    swap_link(&link, &v2);
    assert!(sidecar.wait_for_log("revision=\"v2\"", Duration::from_secs(10)), "v2 was published");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A broken bundle is rejected whole and v2 keeps serving.
    let v3 = root.path().join("v3");
    write_bundle(&v3, &[
        ("manifest.json", format!("{{\"revision\": \"v3\", \"account\": \"{ACCOUNT}\"}}")),
        ("policies/App.json", "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": {\"Effect\": \"Allow\", \"Action\": \"s3:*\"}\n}".into()),
    ]);
    swap_link(&link, &v3);
    assert!(sidecar.wait_for_log("bundle rejected", Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for worker in workers {
        seen.extend(worker.await.unwrap());
    }
    assert!(checked.load(Ordering::Relaxed) > 100, "the load ran");
    assert!(seen.contains("v1") && seen.contains("v2"), "{seen:?}");
    assert!(!seen.contains("v3"));

    let status = admin.status(proto::Empty {}).await.unwrap().into_inner();
    assert!(status.revision.starts_with("v2+"));
    assert!(status.reloads_failed >= 1);
    assert!(
        status
            .last_reload_errors
            .iter()
            .any(|e| e.contains("policies/App.json:3:") && e.contains("no `Resource`")),
        "{:?}",
        status.last_reload_errors
    );
    let reload = admin.reload(proto::Empty {}).await.unwrap().into_inner();
    assert!(!reload.published);
    assert!(reload.revision.starts_with("v2+"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let data = temp_dir();
    let acknowledged = {
        let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
        let mut admin = sidecar.admin().await;
        let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("user{i}");
                    match admin.create_user(create_user(&name)).await {
                        Ok(_) => acknowledged.lock().unwrap().push(name),
                        Err(_) => break,
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut sidecar = sidecar;
        sidecar.child.kill().unwrap();
        sidecar.child.wait().unwrap();
        let _ = writer.await;
        acknowledged.lock().unwrap().clone()
    };
    assert!(acknowledged.len() > 5, "writes were acknowledged before the kill: {}", acknowledged.len());

    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    let stored: std::collections::HashSet<String> = admin
        .list_users(proto::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .users
        .into_iter()
        .map(|u| u.user_name)
        .collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|name| !stored.contains(*name)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost after SIGKILL: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_export_import_round_trip() {
    let data = temp_dir();
    let mut sidecar = Sidecar::start(data.path(), None, &[]);
    let mut admin = sidecar.admin().await;
    admin
        .create_user(proto::CreateUserRequest {
            user_name: "alice".into(),
            tags: vec![proto::Tag { key: "team".into(), value: "red".into() }],
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .create_group(proto::CreateGroupRequest { group_name: "ops".into(), ..Default::default() })
        .await
        .unwrap();
    admin
        .add_user_to_group(proto::GroupMembershipRequest {
            group_name: "ops".into(),
            user_name: "alice".into(),
            account_id: String::new(),
        })
        .await
        .unwrap();
    let trust = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}}"#;
    admin
        .create_role(proto::CreateRoleRequest {
            role_name: "App".into(),
            assume_role_policy_document: trust.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .tag_resource(proto::TagRequest {
            name: "arn:aws:s3:::reports".into(),
            tags: vec![proto::Tag { key: "env".into(), value: "prod".into() }],
            account_id: String::new(),
        })
        .await
        .unwrap();
    let mut authorizer = sidecar.authorizer().await;
    authorizer.authorize(request(ALICE, "s3:GetObject", "arn:aws:s3:::reports")).await.unwrap();
    let exported = admin.export(proto::Empty {}).await.unwrap().into_inner();

    sidecar.signal("HUP");
    assert!(sidecar.wait_for_log("SIGHUP: reloading the bundle", Duration::from_secs(5)));
    sidecar.signal("TERM");
    let status = sidecar.wait_exit(Duration::from_secs(10)).expect("iamd stops after SIGTERM");
    assert!(status.success(), "{status:?}");
    let audit = std::fs::read_to_string(data.path().join("store/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let record = records.iter().rev().find(|r| r["eventName"] == "Authorize").unwrap();
    assert_eq!(record["action"], "s3:GetObject");
    assert_eq!(record["decision"], "ImplicitDeny");
    // Admin writes are audited too, with the caller and its access key.
    let export = records.iter().rev().find(|r| r["eventName"] == "Export").unwrap();
    assert_eq!(export["principal"], "arn:aws:iam::111122223333:root");
    assert_eq!(export["accessKeyId"], sidecar.root.access_key_id.as_str());
    assert!(!audit.contains(&sidecar.root.secret_access_key), "no secret in the audit log");

    let other = temp_dir();
    let sidecar = Sidecar::start(other.path(), None, &["--no-audit"]);
    let mut admin = sidecar.admin().await;
    let counts = admin.import(exported.clone()).await.unwrap().into_inner();
    assert_eq!((counts.users, counts.groups, counts.roles, counts.resource_tags), (1, 1, 1, 1));
    let again = admin.export(proto::Empty {}).await.unwrap().into_inner();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again.json).unwrap(),
        serde_json::from_str::<serde_json::Value>(&exported.json).unwrap()
    );
    let groups = admin.list_groups_for_user(entity("alice")).await.unwrap().into_inner().groups;
    assert_eq!(groups[0].group_name, "ops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_hold_with_errors_that_name_the_limit() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut authorizer = sidecar.authorizer().await;
    let refused = |status: tonic::Status, code: Code, needle: &str| {
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "`{}` should name {needle}", status.message());
    };

    let mut keys = request(ALICE, "s3:GetObject", "*");
    for i in 0..129 {
        keys.context.insert(format!("app:key{i}"), string("v"));
    }
    refused(
        authorizer.authorize(keys).await.unwrap_err(),
        Code::InvalidArgument,
        "more than the 128 allowed",
    );
    let mut values = request(ALICE, "s3:GetObject", "*");
    values.context.insert(
        "app:many".into(),
        proto::ContextValues { values: (0..257).map(|i| string(&i.to_string()).values.remove(0)).collect() },
    );
    refused(
        authorizer.authorize(values).await.unwrap_err(),
        Code::InvalidArgument,
        "more than the 256 allowed",
    );
    let mut large = request(ALICE, "s3:GetObject", "*");
    large.context.insert("app:large".into(), string(&"x".repeat(4_097)));
    refused(
        authorizer.authorize(large).await.unwrap_err(),
        Code::InvalidArgument,
        "more than the 4096 allowed",
    );

    let batch = proto::BatchAuthorizeRequest {
        requests: (0..1_001).map(|_| request(ALICE, "s3:GetObject", "arn:aws:s3:::b/k")).collect(),
    };
    refused(
        authorizer.batch_authorize(batch).await.unwrap_err(),
        Code::InvalidArgument,
        "more than the 1000",
    );

    // A message over gRPC's 4 MiB is refused before it is decoded, and the server goes on.
    let oversized = request(ALICE, "s3:GetObject", &format!("arn:aws:s3:::b/{}", "k".repeat(5 << 20)));
    refused(authorizer.authorize(oversized).await.unwrap_err(), Code::OutOfRange, "4194304");
    let fine = authorizer.authorize(request(ALICE, "s3:GetObject", "arn:aws:s3:::b/k")).await.unwrap();
    assert!(!fine.into_inner().revision.is_empty());

    // An inline policy over the user limit of 2,048 characters is refused as AWS does.
    let mut admin = sidecar.admin().await;
    admin.create_user(create_user("limits")).await.unwrap();
    let statement = r#"{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/key"}"#;
    let statements = vec![statement; 40].join(",");
    let document = format!(r#"{{"Version": "2012-10-17", "Statement": [{statements}]}}"#);
    let status = admin.put_user_policy(put_policy("limits", "big", &document)).await.unwrap_err();
    assert_eq!(error_code(&status), "LimitExceeded", "{status:?}");
    assert!(status.message().contains("2048"), "{}", status.message());
}

/// An export larger than gRPC's 4 MiB default message size goes through the CLI both ways, and
/// a restart reads it back from sled record by record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_state_imports_exports_and_survives_a_restart() {
    const USERS: usize = 20_000;
    let users: Vec<serde_json::Value> = (0..USERS)
        .map(|i| {
            serde_json::json!({
                "account": "111122223333", "name": format!("user{i}"), "path": "/",
                "id": format!("AIDA{i:017}"), "created": "2026-01-01T00:00:00Z",
                "tags": [{"key": "team", "value": format!("t{}", i % 7)}],
                "attached": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
            })
        })
        .collect();
    let document = serde_json::json!({"schema_version": 1, "users": users}).to_string();
    assert!(document.len() > 4 << 20, "the document must exceed gRPC's default limit");
    let scratch = temp_dir();
    let state = path(&scratch, "state.json");
    std::fs::write(&state, &document).unwrap();

    let data = temp_dir();
    let mut sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_iamd"))
            .arg("admin")
            .args(["--endpoint", &format!("http://{}", sidecar.admin)])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &sidecar.root.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &sidecar.root.secret_access_key)
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let counts = cli(&["import", "--state", &format!("file://{}", state.display())]);
    assert_eq!(counts["Users"], USERS);
    let exported = cli(&["export"]);
    let exported = exported["users"].as_array().unwrap();
    assert_eq!(exported.len(), USERS);
    let last = exported.iter().find(|u| u["name"] == format!("user{}", USERS - 1)).unwrap();
    assert_eq!(last["tags"][0]["value"], format!("t{}", (USERS - 1) % 7));

    sidecar.signal("TERM");
    assert!(sidecar.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let mut authorizer = sidecar.authorizer().await;
    let last = format!("arn:aws:iam::111122223333:user/user{}", USERS - 1);
    let read = authorizer.authorize(request(&last, "s3:GetObject", "arn:aws:s3:::b/k")).await.unwrap();
    assert_eq!(decision(read.get_ref()), Decision::Allow);
    let write = authorizer.authorize(request(&last, "s3:PutObject", "arn:aws:s3:::b/k")).await.unwrap();
    assert_eq!(decision(write.get_ref()), Decision::ImplicitDeny);
}

/// CPU time of each of `pid`'s threads named `iamd-lane-*`, in nanoseconds (Linux schedstat).
fn lane_cpu_ns(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut lanes = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map_while(Result::ok) {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
        if !name.starts_with("iamd-lane-") {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
        lanes.insert(name, schedstat.split_whitespace().next().unwrap().parse().unwrap());
    }
    lanes
}

/// [`lane_cpu_ns`] once `count` lanes run: a thread takes its name once it runs, which may be a
/// moment after iamd says it serves.
async fn lanes_started(sidecar: &Sidecar, count: usize) -> std::collections::BTreeMap<String, u64> {
    for _ in 0..100 {
        let lanes = lane_cpu_ns(sidecar.pid());
        if lanes.len() == count {
            return lanes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lane_cpu_ns(sidecar.pid())
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_connection_does_not_push_the_next_one_onto_a_busy_thread() {
    let data = temp_dir();
    let config = path(&data, "iamd.toml");
    std::fs::write(&config, "worker_threads = 2\n").unwrap();
    let sidecar = Sidecar::start(data.path(), None, &["--config", config.to_str().unwrap(), "--no-audit"]);
    assert_eq!(lanes_started(&sidecar, 1).await.len(), 1);
    let read = request(ALICE, "s3:GetObject", "arn:aws:s3:::reports/alice/q1.csv");

    // A long-lived connection lands on the main thread, a probe-like one on the lane and closes.
    let mut long_lived = sidecar.authorizer().await;
    long_lived.authorize(read.clone()).await.unwrap();
    let mut probe = sidecar.authorizer().await;
    probe.authorize(read.clone()).await.unwrap();
    drop(probe);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Taken in turn, the next connection would go back to the main thread; by open connections,
    // it goes to the lane, which holds none.
    let mut next = sidecar.authorizer().await;
    let before = lane_cpu_ns(sidecar.pid())["iamd-lane-1"];
    for _ in 0..2_000 {
        next.authorize(read.clone()).await.unwrap();
    }
    let spent = lane_cpu_ns(sidecar.pid())["iamd-lane-1"] - before;
    assert!(spent > 1_000_000, "the new connection was not served by the idle lane: {spent} ns of its CPU");
    long_lived.authorize(read).await.unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_each_serve_their_share_of_connections_and_stop_on_sigterm() {
    let data = temp_dir();
    let config = path(&data, "iamd.toml");
    // A long request timeout puts the drain deadline (timeout + 1 s) far beyond a prompt stop.
    std::fs::write(&config, "worker_threads = 3\n[limits]\nrequest_timeout_ms = 30000\n").unwrap();
    let mut sidecar = Sidecar::start(data.path(), None, &["--config", config.to_str().unwrap()]);
    let idle = lanes_started(&sidecar, 2).await;
    assert_eq!(idle.keys().collect::<Vec<_>>(), ["iamd-lane-1", "iamd-lane-2"]);

    // Six connections, each dealt to the thread holding the fewest: two each.
    let mut admin = sidecar.admin().await;
    admin.create_user(create_user("alice")).await.unwrap();
    admin
        .attach_user_policy(attachment("alice", "arn:aws:iam::111122223333:policy/ReportsReadOnly"))
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(sidecar.authorizer().await);
    }
    let load = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            for i in 0..500 {
                let own = request(ALICE, "s3:GetObject", &format!("arn:aws:s3:::reports/alice/{i}.csv"));
                assert_eq!(decision(&client.authorize(own).await.unwrap().into_inner()), Decision::Allow);
                let other = request(ALICE, "s3:GetObject", &format!("arn:aws:s3:::reports/bob/{i}.csv"));
                assert_eq!(
                    decision(&client.authorize(other).await.unwrap().into_inner()),
                    Decision::ImplicitDeny
                );
            }
            client
        })
    });
    let mut clients = Vec::new();
    for task in load {
        clients.push(task.await.unwrap());
    }
    let busy = lane_cpu_ns(sidecar.pid());
    for (lane, before) in &idle {
        // 2,000 decisions at tens of microseconds each: well over a millisecond of work.
        let spent = busy[lane] - before;
        assert!(spent > 1_000_000, "{lane} served no connection: {spent} ns of CPU under load");
    }

    // The clients keep their connections open: each lane must close its own on SIGTERM. One
    // that did not would hold the process until the drain deadline, 31 s away. The wait runs
    // off the runtime, whose threads the clients need to answer the server's goodbye.
    sidecar.signal("TERM");
    let status = tokio::task::spawn_blocking(move || sidecar.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("iamd stops promptly after SIGTERM");
    assert!(status.success(), "{status:?}");
    drop(clients);
}
