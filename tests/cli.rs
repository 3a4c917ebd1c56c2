//! The command line: `iamd simulate` and `iamd policy validate` as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn iamd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iamd"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iamd runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("iamd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn simulate_reads_stdin_and_keeps_going_after_a_bad_case() {
    let cases = r#"{"id": "ok", "principal": "arn:aws:iam::111122223333:user/alice", "action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "identity_policies": [{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}}]}
{"id": "bad", "principal": "arn:aws:iam::111122223333:user/alice", "action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "identity_policies": [{"Statement": {"Effect": "Permit", "Action": "s3:GetObject", "Resource": "*"}}]}

{"id": "denied", "principal": "anonymous", "action": "s3:GetObject", "resource": "arn:aws:s3:::b/k"}
"#;
    let output = iamd(&["simulate", "--cases", "-", "--explain"], cases);
    assert!(output.status.success());
    let lines: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["decision"], "Allow");
    assert_eq!(lines[0]["error"], Value::Null);
    assert_eq!(lines[0]["explanation"]["matched_statements"][0]["effect"], "Allow");
    assert_eq!(lines[1]["decision"], Value::Null);
    let error = lines[1]["error"].as_str().unwrap();
    assert!(error.starts_with("line 2: ") && error.contains("\"Permit\""), "{error}");
    assert_eq!(lines[2]["id"], "denied");
    assert_eq!(lines[2]["decision"], "ImplicitDeny");
    assert_eq!(lines[2]["explanation"]["deciding_layer"], "resource");
}

#[test]
fn validate_prints_positions_and_fails_on_errors() {
    let bad = temp_file(
        "bad.json",
        "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\n    \"Effect\": \"Allow\",\n    \"Action\": \"s3:GetObject\",\n    \"Resource\": \"*\",\n    \"Condition\": {\"IpAddress\": {\"aws:SourceIp\": \"10.0.0.300\"}}\n  }]\n}\n",
    );
    let output = iamd(&["policy", "validate", bad.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected = format!("{}:7:49: error: `10.0.0.300` is not valid for `IpAddress`", bad.display());
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.contains("at `Statement[0].Condition.IpAddress.aws:SourceIp`"), "{stdout}");
}

#[test]
fn validate_warns_without_failing_and_speaks_json() {
    let risky = temp_file(
        "risky.json",
        r#"{"Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}"#,
    );
    let output = iamd(&["policy", "validate", "--format", "json", risky.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(0));
    let diagnostics: Value = serde_json::from_slice(&output.stdout).unwrap();
    let codes: Vec<&str> =
        diagnostics.as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["missing-version", "pass-role-wildcard"]);
    assert_eq!(diagnostics[1]["severity"], "warning");
    assert_eq!(diagnostics[1]["line"], 1);
}

#[test]
fn validate_checks_the_kind() {
    let trust = temp_file(
        "trust.json",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#,
    );
    let path = trust.to_str().unwrap();
    assert_eq!(iamd(&["policy", "validate", "--kind", "trust", path], "").status.code(), Some(0));
    let as_identity = iamd(&["policy", "validate", "--kind", "identity", path], "");
    assert_eq!(as_identity.status.code(), Some(1));
    let stdout = String::from_utf8(as_identity.stdout).unwrap();
    assert!(stdout.contains("`Principal` is not allowed in an identity-based policy"), "{stdout}");
}
