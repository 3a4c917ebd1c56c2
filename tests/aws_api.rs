//! The AWS Query API end to end, driven by the real clients: the aws CLI manages users, roles and
//! policies and assumes a role, and shows iamd's errors as AWS's own; boto3 pages through lists
//! and runs an STS session. The session's credentials then sign requests that Authorize decides.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::{Sidecar, botocore_sign, run_python, temp_dir};
use iamd::credentials::sigv4::SigningCredentials;
use iamd::proto::{self, Decision};
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";

/// Who the CLI signs as: keys in its environment, or a profile of its credentials file.
enum As<'a> {
    Keys(&'a SigningCredentials),
    Profile(&'a str),
}

/// The aws CLI pointed at one sidecar. Its environment is cleared and its home is a directory of
/// its own, so that no AWS configuration of the machine (keys, profiles, instance metadata, a
/// pager) reaches it.
struct Cli {
    endpoint: String,
    home: tempfile::TempDir,
}

impl Cli {
    fn new(sidecar: &Sidecar) -> Cli {
        Cli { endpoint: sidecar.query_url(), home: temp_dir() }
    }

    fn credentials_file(&self) -> PathBuf {
        self.home.path().join("credentials")
    }

    /// Adds profile `name` to the shared credentials file, as `aws configure` would.
    fn add_profile(&self, name: &str, credentials: &SigningCredentials) {
        let mut section = format!(
            "[{name}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            credentials.access_key_id, credentials.secret_access_key
        );
        if let Some(token) = &credentials.session_token {
            section.push_str(&format!("aws_session_token = {token}\n"));
        }
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(self.credentials_file()).unwrap();
        file.write_all(section.as_bytes()).unwrap();
    }

    /// Runs `aws ARGS` with one attempt: a retried call could hide a failure.
    fn run(&self, who: &As<'_>, args: &[&str]) -> Output {
        let home = self.home.path();
        let mut command = Command::new(common::python());
        command
            .args(["-m", "awscli"])
            .args(args)
            .args(["--endpoint-url", &self.endpoint, "--output", "json"])
            .env_clear()
            .env("HOME", home)
            .env("AWS_SHARED_CREDENTIALS_FILE", self.credentials_file())
            .env("AWS_CONFIG_FILE", home.join("config"))
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_RETRY_MODE", "standard")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_PAGER", "");
        match who {
            As::Keys(credentials) => {
                command
                    .env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
                    .env("AWS_SECRET_ACCESS_KEY", &credentials.secret_access_key);
                if let Some(token) = &credentials.session_token {
                    command.env("AWS_SESSION_TOKEN", token);
                }
            }
            As::Profile(name) => {
                command.args(["--profile", name]);
            }
        }
        command.output().expect("the aws CLI runs")
    }

    /// Runs a command that must succeed; returns its JSON output (`null` for a command that
    /// prints nothing, such as put-user-policy).
    fn ok(&self, who: &As<'_>, args: &[&str]) -> Value {
        let output = self.run(who, args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "aws {} failed ({}):\nstdout: {stdout}\nstderr: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        if stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("aws {}: {e}: {stdout}", args.join(" ")))
    }

    /// Runs a command that must fail with the AWS error `code`; returns what the CLI printed,
    /// `An error occurred (CODE) when calling the OPERATION operation ...: MESSAGE`.
    fn fails(&self, who: &As<'_>, args: &[&str], code: &str) -> String {
        let output = self.run(who, args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // awscli v1 exits with 255 on a service error (v2 with 254).
        assert!(
            output.status.code() == Some(255) && stderr.contains(&format!("An error occurred ({code})")),
            "aws {} should fail with {code} ({}):\nstdout: {}\nstderr: {stderr}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout)
        );
        stderr
    }
}

/// The credentials in a CLI response: the `AccessKey` of create-access-key or the
/// `Credentials` of assume-role.
fn credentials(keys: &Value) -> SigningCredentials {
    let field = |name: &str| keys[name].as_str().unwrap_or_else(|| panic!("no {name} in {keys}")).to_string();
    SigningCredentials {
        access_key_id: field("AccessKeyId"),
        secret_access_key: field("SecretAccessKey"),
        session_token: keys["SessionToken"].as_str().map(str::to_string),
    }
}

/// A policy document allowing `action` on `resource`.
fn allow(action: &str, resource: &str) -> String {
    let statement = json!({"Effect": "Allow", "Action": action, "Resource": resource});
    json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_manages_identities_and_assumes_a_role() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &[]);
    let cli = Cli::new(&sidecar);
    let root = As::Keys(&sidecar.root);
    let alice_arn = format!("arn:aws:iam::{ACCOUNT}:user/alice");
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/reader");

    let user = cli.ok(&root, &["iam", "create-user", "--user-name", "alice"]);
    assert_eq!(
        (&user["User"]["UserName"], &user["User"]["Arn"]),
        (&json!("alice"), &json!(alice_arn)),
        "{user}"
    );
    let key = cli.ok(&root, &["iam", "create-access-key", "--user-name", "alice"]);
    let alice = credentials(&key["AccessKey"]);
    assert!(alice.access_key_id.starts_with("AKIA") && alice.secret_access_key.len() == 40, "{key}");
    let assume = allow("sts:AssumeRole", &role_arn);
    cli.ok(
        &root,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "alice",
            "--policy-name",
            "assume",
            "--policy-document",
            &assume,
        ],
    );
    // A managed policy of the embedded sample bundle.
    let reports = format!("arn:aws:iam::{ACCOUNT}:policy/ReportsReadOnly");
    cli.ok(&root, &["iam", "attach-user-policy", "--user-name", "alice", "--policy-arn", &reports]);
    let attached = cli.ok(&root, &["iam", "list-attached-user-policies", "--user-name", "alice"]);
    assert_eq!(
        attached["AttachedPolicies"],
        json!([{"PolicyName": "ReportsReadOnly", "PolicyArn": reports}]),
        "{attached}"
    );

    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": alice_arn}, "Action": "sts:AssumeRole"}]})
    .to_string();
    let role = cli
        .ok(&root, &["iam", "create-role", "--role-name", "reader", "--assume-role-policy-document", &trust]);
    assert_eq!(role["Role"]["Arn"], json!(role_arn), "{role}");
    let read = allow("s3:GetObject", "arn:aws:s3:::reports/*");
    cli.ok(
        &root,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "reader",
            "--policy-name",
            "read",
            "--policy-document",
            &read,
        ],
    );

    cli.add_profile("alice", &alice);
    let assumed = cli.ok(
        &As::Profile("alice"),
        &["sts", "assume-role", "--role-arn", &role_arn, "--role-session-name", "s1"],
    );
    let session_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/reader/s1");
    assert_eq!(assumed["AssumedRoleUser"]["Arn"], json!(session_arn), "{assumed}");
    let session = credentials(&assumed["Credentials"]);
    assert!(session.access_key_id.starts_with("ASIA") && session.session_token.is_some(), "{assumed}");
    cli.add_profile("session", &session);
    let caller = cli.ok(&As::Profile("session"), &["sts", "get-caller-identity"]);
    assert_eq!((&caller["Arn"], &caller["Account"]), (&json!(session_arn), &json!(ACCOUNT)), "{caller}");
    let caller = cli.ok(&As::Profile("alice"), &["sts", "get-caller-identity"]);
    assert_eq!(caller["Arn"], json!(alice_arn), "{caller}");

    // The session signs requests as the role: its policy allows reading the reports, not writing.
    let object = "https://reports.s3.amazonaws.com/q1.csv";
    let signed = botocore_sign(
        &session,
        json!([
            {"name": "get", "method": "GET", "url": object, "service": "s3", "region": "us-east-1"},
            {"name": "put", "method": "PUT", "url": object, "body": "a,b\n",
             "service": "s3", "region": "us-east-1"},
        ]),
    );
    let mut authorizer = sidecar.authorizer().await;
    for (name, action, decision) in
        [("get", "s3:GetObject", Decision::Allow), ("put", "s3:PutObject", Decision::ImplicitDeny)]
    {
        let response = authorizer
            .authorize(proto::AuthorizeRequest {
                action: action.into(),
                resource: "arn:aws:s3:::reports/q1.csv".into(),
                signed_request: Some(signed[name].clone()),
                explain: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(Decision::try_from(response.decision).unwrap(), decision, "{name}: {response:?}");
        assert!(response.authentication_error.is_none(), "{name}: {response:?}");
        assert_eq!(response.principal, session_arn, "{name}: {response:?}");
    }
}

#[test]
fn the_aws_cli_shows_aws_errors() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &[]);
    let cli = Cli::new(&sidecar);
    let root = As::Keys(&sidecar.root);

    let missing = cli.fails(&root, &["iam", "get-user", "--user-name", "nobody"], "NoSuchEntity");
    assert!(missing.contains("the GetUser operation") && missing.contains("nobody"), "{missing}");
    cli.ok(&root, &["iam", "create-user", "--user-name", "alice"]);
    cli.fails(&root, &["iam", "create-user", "--user-name", "alice"], "EntityAlreadyExists");
    let no_resource = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject"}]}"#;
    cli.fails(
        &root,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "alice",
            "--policy-name",
            "read",
            "--policy-document",
            no_resource,
        ],
        "MalformedPolicyDocument",
    );

    // alice's key authenticates her, but no policy lets her manage IAM.
    let alice =
        credentials(&cli.ok(&root, &["iam", "create-access-key", "--user-name", "alice"])["AccessKey"]);
    let denied =
        cli.fails(&As::Keys(&alice), &["iam", "create-user", "--user-name", "mallory"], "AccessDenied");
    let expected =
        format!("User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: iam:CreateUser");
    assert!(denied.contains(&expected), "{denied}");
    cli.fails(&root, &["iam", "get-user", "--user-name", "mallory"], "NoSuchEntity");

    let wrong_secret = SigningCredentials { secret_access_key: "0".repeat(40), ..sidecar.root.clone() };
    cli.fails(&As::Keys(&wrong_secret), &["iam", "list-users"], "SignatureDoesNotMatch");
    let unknown_key = SigningCredentials { access_key_id: "AKIAIOSFODNN7EXAMPLE".into(), ..wrong_secret };
    cli.fails(&As::Keys(&unknown_key), &["sts", "get-caller-identity"], "InvalidClientTokenId");
}

#[test]
fn boto3_paginates_and_runs_the_sts_session_flow() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &[]);
    let input = json!({
        "endpoint_url": sidecar.query_url(),
        "credentials": {
            "access_key_id": sidecar.root.access_key_id,
            "secret_access_key": sidecar.root.secret_access_key,
        },
    });
    let lines = run_python("boto3_flow.py", &input.to_string());
    let [line] = lines.as_slice() else { panic!("boto3_flow.py prints one line: {lines:#?}") };
    let result: Value = serde_json::from_str(line).unwrap();

    // 25 users in pages of 10, in order, with the markers boto3's paginator follows.
    let names: Vec<String> = (0..25).map(|n| format!("page-user-{n:02}")).collect();
    assert_eq!((&result["pages"], &result["names"]), (&json!(3), &json!(names)), "{result}");
    assert_eq!((&result["version"], &result["default_version"]), (&json!("v2"), &json!("v2")), "{result}");
    let local = result["local_policies"].as_array();
    assert!(local.is_some_and(|names| names.contains(&json!("boto-read"))), "{result}");
    let session_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/flow-role/boto");
    assert_eq!(result["caller_arn"], json!(session_arn), "{result}");
    assert_eq!(result["missing_role_error"], "NoSuchEntity", "{result}");
}

/// Asks the Authorizer whether the stored `principal` may do `action` on `resource`.
async fn decide(sidecar: &Sidecar, principal: &str, action: &str, resource: &str) -> Decision {
    let response = sidecar
        .authorizer()
        .await
        .authorize(proto::AuthorizeRequest {
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    Decision::try_from(response.decision).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_policies_created_with_the_cli_decide_and_survive_a_restart() {
    let data = temp_dir();
    let mut sidecar = Sidecar::start(data.path(), None, &[]);
    let cli = Cli::new(&sidecar);
    let root_keys = sidecar.root.clone();
    let root = As::Keys(&root_keys);
    let bob = format!("arn:aws:iam::{ACCOUNT}:user/bob");
    let object = "arn:aws:s3:::reports/q1.csv";

    let created = cli.ok(
        &root,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "reports-access",
            "--path",
            "/teams/",
            "--policy-document",
            &allow("s3:GetObject", "arn:aws:s3:::reports/*"),
        ],
    );
    let policy_arn = format!("arn:aws:iam::{ACCOUNT}:policy/teams/reports-access");
    assert_eq!(
        (&created["Policy"]["Arn"], &created["Policy"]["DefaultVersionId"]),
        (&json!(policy_arn), &json!("v1")),
        "{created}"
    );
    cli.ok(&root, &["iam", "create-user", "--user-name", "bob"]);
    cli.ok(&root, &["iam", "attach-user-policy", "--user-name", "bob", "--policy-arn", &policy_arn]);
    assert_eq!(decide(&sidecar, &bob, "s3:GetObject", object).await, Decision::Allow);
    assert_eq!(decide(&sidecar, &bob, "s3:PutObject", object).await, Decision::ImplicitDeny);

    // A new default version takes effect at once for every principal it is attached to.
    let version = cli.ok(
        &root,
        &[
            "iam",
            "create-policy-version",
            "--policy-arn",
            &policy_arn,
            "--policy-document",
            &allow("s3:PutObject", "arn:aws:s3:::reports/*"),
            "--set-as-default",
        ],
    );
    assert_eq!(version["PolicyVersion"]["VersionId"], json!("v2"), "{version}");
    assert_eq!(decide(&sidecar, &bob, "s3:GetObject", object).await, Decision::ImplicitDeny);
    assert_eq!(decide(&sidecar, &bob, "s3:PutObject", object).await, Decision::Allow);
    let document =
        cli.ok(&root, &["iam", "get-policy-version", "--policy-arn", &policy_arn, "--version-id", "v1"]);
    assert_eq!(
        document["PolicyVersion"]["Document"]["Statement"][0]["Action"],
        json!("s3:GetObject"),
        "{document}"
    );

    let simulated = cli.ok(
        &root,
        &[
            "iam",
            "simulate-principal-policy",
            "--policy-source-arn",
            &bob,
            "--action-names",
            "s3:GetObject",
            "s3:PutObject",
            "--resource-arns",
            object,
        ],
    );
    let results = &simulated["EvaluationResults"];
    assert_eq!(
        (&results[0]["EvalDecision"], &results[1]["EvalDecision"]),
        (&json!("implicitDeny"), &json!("allowed")),
        "{simulated}"
    );
    assert_eq!(results[1]["MatchedStatements"][0]["SourcePolicyId"], json!(policy_arn), "{simulated}");
    let custom = cli.ok(
        &root,
        &[
            "iam",
            "simulate-custom-policy",
            "--policy-input-list",
            &allow("s3:List*", "*"),
            "--action-names",
            "s3:ListBucket",
            "s3:GetObject",
        ],
    );
    let results = &custom["EvaluationResults"];
    assert_eq!(
        (&results[0]["EvalDecision"], &results[1]["EvalDecision"]),
        (&json!("allowed"), &json!("implicitDeny")),
        "{custom}"
    );

    let details = cli.ok(&root, &["iam", "get-account-authorization-details"]);
    let users = details["UserDetailList"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{details}");
    assert_eq!(users[0]["UserName"], json!("bob"), "{details}");
    assert_eq!(users[0]["AttachedManagedPolicies"][0]["PolicyArn"], json!(policy_arn), "{details}");
    let policies = details["Policies"].as_array().unwrap();
    let stored =
        policies.iter().find(|p| p["Arn"] == json!(policy_arn)).expect("the stored policy is listed");
    let versions = stored["PolicyVersionList"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{stored}");
    assert_eq!(versions[0]["Document"]["Statement"][0]["Action"], json!("s3:PutObject"), "{stored}");
    let only_roles = cli.ok(&root, &["iam", "get-account-authorization-details", "--filter", "Role"]);
    assert_eq!(only_roles["UserDetailList"], json!([]), "{only_roles}");

    // AWS's rules on deleting, and the bundle's policies are the bundle's.
    cli.fails(&root, &["iam", "delete-policy", "--policy-arn", &policy_arn], "DeleteConflict");
    cli.fails(
        &root,
        &["iam", "delete-policy-version", "--policy-arn", &policy_arn, "--version-id", "v2"],
        "DeleteConflict",
    );
    let taken = cli.fails(
        &root,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "ReportsReadOnly",
            "--policy-document",
            &allow("s3:*", "*"),
        ],
        "EntityAlreadyExists",
    );
    assert!(taken.contains("bundle"), "{taken}");
    let reports = format!("arn:aws:iam::{ACCOUNT}:policy/ReportsReadOnly");
    let bundled =
        cli.ok(&root, &["iam", "get-policy-version", "--policy-arn", &reports, "--version-id", "v1"]);
    assert_eq!(
        bundled["PolicyVersion"]["Document"]["Statement"][0]["Sid"],
        json!("ListOwnPrefix"),
        "{bundled}"
    );
    cli.fails(
        &root,
        &["iam", "create-policy-version", "--policy-arn", &reports, "--policy-document", &allow("s3:*", "*")],
        "InvalidInput",
    );
    let unsupported = cli.fails(&root, &["iam", "list-instance-profiles"], "InvalidAction");
    assert!(unsupported.contains("ListInstanceProfiles"), "{unsupported}");

    // What was acknowledged is on disk: a restarted iamd decides the same.
    sidecar.signal("TERM");
    sidecar.wait_exit(std::time::Duration::from_secs(10)).expect("iamd stops after SIGTERM");
    let sidecar = Sidecar::start(data.path(), None, &[]);
    let cli = Cli::new(&sidecar);
    assert_eq!(decide(&sidecar, &bob, "s3:PutObject", object).await, Decision::Allow);
    let listed = cli.ok(&root, &["iam", "list-policies", "--scope", "Local", "--only-attached"]);
    assert_eq!(listed["Policies"][0]["Arn"], json!(policy_arn), "{listed}");
    assert_eq!(listed["Policies"][0]["DefaultVersionId"], json!("v2"), "{listed}");
    assert_eq!(listed["Policies"][0]["AttachmentCount"], json!(1), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_carry_a_message_that_only_callers_allowed_to_decode_can_read() {
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &[]);
    let cli = Cli::new(&sidecar);
    let root = As::Keys(&sidecar.root);
    cli.ok(&root, &["iam", "create-user", "--user-name", "carol"]);
    let carol =
        credentials(&cli.ok(&root, &["iam", "create-access-key", "--user-name", "carol"])["AccessKey"]);

    let mut context = std::collections::HashMap::new();
    context.insert(
        "aws:SourceIp".to_string(),
        proto::ContextValues {
            values: vec![proto::ContextValue {
                kind: Some(proto::context_value::Kind::Ip("192.0.2.7".into())),
            }],
        },
    );
    let denied = sidecar
        .authorizer()
        .await
        .authorize(proto::AuthorizeRequest {
            principal: format!("arn:aws:iam::{ACCOUNT}:user/carol"),
            action: "s3:DeleteObject".into(),
            resource: "arn:aws:s3:::reports/q1.csv".into(),
            context,
            encode_authorization_message: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(Decision::try_from(denied.decision).unwrap(), Decision::ImplicitDeny);
    assert!(denied.explanation.is_none(), "the explanation was not asked for: {denied:?}");
    let encoded = denied.encoded_authorization_message;
    assert!(!encoded.is_empty() && !encoded.contains("DeleteObject"), "an opaque message: {encoded}");

    // carol, denied, cannot read why; the root, allowed everything in its account, can.
    let refused = cli.fails(
        &As::Keys(&carol),
        &["sts", "decode-authorization-message", "--encoded-message", &encoded],
        "AccessDenied",
    );
    assert!(refused.contains("sts:DecodeAuthorizationMessage"), "{refused}");
    let decoded = cli.ok(&root, &["sts", "decode-authorization-message", "--encoded-message", &encoded]);
    let message: Value = serde_json::from_str(decoded["DecodedMessage"].as_str().unwrap()).unwrap();
    assert_eq!((&message["allowed"], &message["explicitDeny"]), (&json!(false), &json!(false)), "{message}");
    assert_eq!(message["context"]["action"], json!("s3:DeleteObject"), "{message}");
    assert_eq!(message["context"]["principal"]["arn"], json!(format!("arn:aws:iam::{ACCOUNT}:user/carol")));
    // The context as evaluated: what the caller gave and what iamd knows of the principal.
    let conditions = message["context"]["conditions"]["items"].as_array().unwrap();
    let value = |key: &str| {
        conditions.iter().find(|c| c["key"] == key).map(|c| c["values"]["items"][0]["value"].clone())
    };
    assert_eq!(value("aws:sourceip"), Some(json!("192.0.2.7")), "{message}");
    assert_eq!(value("aws:username"), Some(json!("carol")), "{message}");

    let mut altered = encoded.clone();
    altered.replace_range(10..11, if &encoded[10..11] == "A" { "B" } else { "A" });
    cli.fails(
        &root,
        &["sts", "decode-authorization-message", "--encoded-message", &altered],
        "InvalidAuthorizationMessageException",
    );
}
