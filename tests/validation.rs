//! What the parser rejects and warns about, with the positions it reports.

use iamd::policy::{self, PolicyKind, Severity};

fn errors(text: &str, kind: PolicyKind) -> Vec<String> {
    match policy::parse("p.json", text, kind) {
        Ok(parsed) => panic!("expected errors, got a policy with warnings {:?}", parsed.warnings),
        Err(e) => e.errors().map(|d| format!("{}|{}|{}", d.code, d.path, d.message)).collect(),
    }
}

fn warnings(text: &str, kind: PolicyKind) -> Vec<&'static str> {
    let parsed = policy::parse("p.json", text, kind).unwrap_or_else(|e| panic!("{e}"));
    assert!(parsed.warnings.iter().all(|w| w.severity == Severity::Warning));
    parsed.warnings.iter().map(|w| w.code).collect()
}

fn stmt(body: &str) -> String {
    format!(r#"{{"Version": "2012-10-17", "Statement": [{body}]}}"#)
}

#[track_caller]
fn rejects(text: &str, kind: PolicyKind, code: &str, fragment: &str) {
    let found = errors(text, kind);
    assert!(
        found.iter().any(|e| e.starts_with(&format!("{code}|")) && e.contains(fragment)),
        "expected {code} mentioning `{fragment}`, got {found:#?}"
    );
}

#[test]
fn rejects_what_aws_rejects() {
    use PolicyKind::*;
    let ok = r#""Effect": "Allow", "Action": "s3:GetObject", "Resource": "*""#;
    rejects("{", Identity, "invalid-json", "malformed JSON");
    rejects("[]", Identity, "expected-object", "JSON object");
    rejects(r#"{"Version": "2012-10-17"}"#, Identity, "missing-statement", "no `Statement`");
    rejects(r#"{"Version": "2012-10-17", "Statement": []}"#, Identity, "empty", "at least one statement");
    rejects(
        r#"{"Version": "2012-10-18", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#,
        Identity,
        "invalid-version",
        "2012-10-17",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Effect": "Deny"}}"#)),
        Identity,
        "duplicate-key",
        "`Effect` appears more than once",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Resources": "*"}}"#)),
        Identity,
        "unknown-element",
        "did you mean `Resource`?",
    );
    rejects(
        &stmt(r#"{"Effect": "Maybe", "Action": "*", "Resource": "*"}"#),
        Identity,
        "invalid-effect",
        "\"Allow\" or \"Deny\"",
    );
    rejects(&stmt(r#"{"Action": "*", "Resource": "*"}"#), Identity, "missing-effect", "no `Effect`");
    rejects(
        &stmt(r#"{"Effect": "Allow", "Action": "*", "NotAction": "s3:*", "Resource": "*"}"#),
        Identity,
        "conflicting-elements",
        "both `Action` and `NotAction`",
    );
    rejects(&stmt(r#"{"Effect": "Allow", "Resource": "*"}"#), Identity, "missing-action", "no `Action`");
    rejects(
        &stmt(r#"{"Effect": "Allow", "Action": "s3:GetObject"}"#),
        Identity,
        "missing-resource",
        "no `Resource`",
    );
    rejects(
        &stmt(r#"{"Effect": "Allow", "Action": "GetObject", "Resource": "*"}"#),
        Identity,
        "invalid-action",
        "service:action",
    );
    rejects(&stmt(r#"{"Effect": "Allow", "Action": [], "Resource": "*"}"#), Identity, "empty", "empty array");
    rejects(
        &stmt(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "bucket/*"}"#),
        Identity,
        "invalid-resource",
        "not a resource",
    );
    rejects(
        &stmt(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::${aws:username"}"#),
        Identity,
        "invalid-variable",
        "not closed",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Principal": "*"}}"#)),
        Identity,
        "principal-not-allowed",
        "identity-based policy",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Principal": "*"}}"#)),
        Scp,
        "principal-not-allowed",
        "service control policy",
    );
    rejects(&stmt(&format!("{{{ok}}}")), Resource, "missing-principal", "resource-based policy must name");
    rejects(
        &stmt(&format!(r#"{{{ok}, "Principal": {{"AWS": "arn:aws:iam::111122223333:user/*"}}}}"#)),
        Resource,
        "invalid-principal",
        "no partial wildcards",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Principal": {{"AWS": "alice"}}}}"#)),
        Resource,
        "invalid-principal",
        "not a valid `AWS` principal",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Principal": {{"Aws": "*"}}}}"#)),
        Resource,
        "unknown-element",
        "did you mean `AWS`?",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Principal": {{"AWS": "111122223333"}}}}"#)),
        Rcp,
        "invalid-principal",
        "must be \"*\"",
    );
    rejects(
        &stmt(
            r#"{"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole", "Resource": "*"}"#,
        ),
        Trust,
        "resource-not-allowed",
        "trust policy",
    );
    rejects(
        &stmt(r#"{"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "s3:GetObject"}"#),
        Trust,
        "invalid-action",
        "trust policy",
    );
    rejects(&stmt(&format!(r#"{{"Sid": "read-all", {ok}}}"#)), Identity, "invalid-sid", "letters and digits");
    rejects(
        &stmt(&format!(r#"{{"Sid": "A", {ok}}}, {{"Sid": "A", {ok}}}"#)),
        Identity,
        "duplicate-sid",
        "must be unique",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"StringEqualz": {{"aws:username": "a"}}}}}}"#)),
        Identity,
        "unknown-operator",
        "did you mean `StringEquals`?",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"IpAddress": {{"aws:SourceIp": "10.0.0.0/33"}}}}}}"#)),
        Identity,
        "invalid-condition-value",
        "IPv4 or IPv6",
    );
    rejects(
        &stmt(&format!(
            r#"{{{ok}, "Condition": {{"DateGreaterThan": {{"aws:CurrentTime": "2020-13-01"}}}}}}"#
        )),
        Identity,
        "invalid-condition-value",
        "ISO 8601",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"NumericLessThan": {{"s3:max-keys": "ten"}}}}}}"#)),
        Identity,
        "invalid-condition-value",
        "a number",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"Bool": {{"aws:SecureTransport": "yes"}}}}}}"#)),
        Identity,
        "invalid-condition-value",
        "\"true\" or \"false\"",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"ArnLike": {{"aws:SourceArn": "my-role"}}}}}}"#)),
        Identity,
        "invalid-condition-value",
        "an ARN",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"BinaryEquals": {{"s3:x": "%%%"}}}}}}"#)),
        Identity,
        "invalid-condition-value",
        "base64",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"StringEquals": {{"username": "a"}}}}}}"#)),
        Identity,
        "invalid-condition-key",
        "service:name",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"NullIfExists": {{"aws:username": "true"}}}}}}"#)),
        Identity,
        "unknown-operator",
        "`Null` cannot take",
    );
    rejects(
        &stmt(&format!(r#"{{{ok}, "Condition": {{"StringEquals": {{"aws:username": []}}}}}}"#)),
        Identity,
        "empty",
        "empty list of values",
    );
    let big = stmt(&format!(
        r#"{{"Effect": "Allow", "Action": [{}], "Resource": "*"}}"#,
        (0..700).map(|i| format!("\"s3:Action{i}\"")).collect::<Vec<_>>().join(",")
    ));
    rejects(&big, Identity, "too-large", "limit of 6144");
    assert!(policy::parse("p", &big, Resource).is_err(), "still needs a Principal");
}

#[test]
fn errors_point_at_the_line_and_column() {
    let text = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": {\n    \"Sid\": \"S1\",\n    \"Effect\": \"Allow\",\n    \"Action\": \"s3:GetObject\",\n    \"Resource\": \"s3://bucket\"\n  }\n}";
    let error = policy::parse("p.json", text, PolicyKind::Identity).unwrap_err();
    let first = error.errors().next().unwrap();
    assert_eq!((first.line, first.column), (7, 17));
    assert_eq!(first.statement.as_deref(), Some("S1"));
    assert_eq!(first.path, "Statement.Resource");
    assert!(error.to_string().starts_with("p.json:7:17: error: `s3://bucket` is not a resource"), "{error}");
}

#[test]
fn reports_every_error_at_once() {
    let text = stmt(r#"{"Effect": "allow", "Action": "s3 Get", "Resource": "bucket"}, {"Effect": "Allow"}"#);
    let found = errors(&text, PolicyKind::Identity);
    assert_eq!(found.len(), 5, "{found:#?}");
}

#[test]
fn accepts_the_whole_grammar() {
    let text = r#"{
      "Version": "2012-10-17",
      "Id": "full",
      "Statement": [
        {"Sid": "A", "Effect": "Allow", "Principal": {"AWS": ["111122223333", "arn:aws:iam::444455556666:role/path/R",
           "arn:aws:sts::444455556666:assumed-role/R/s"], "Service": "lambda.amazonaws.com",
           "Federated": "cognito-identity.amazonaws.com", "CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
         "NotAction": ["s3:Delete*"], "NotResource": ["arn:aws:s3:::secret/*"],
         "Condition": {"ForAllValues:StringLikeIfExists": {"aws:TagKeys": ["env*", "team"]},
                       "NumericGreaterThanEquals": {"s3:max-keys": 1},
                       "Bool": {"aws:SecureTransport": true},
                       "DateLessThan": {"aws:CurrentTime": ["2030-01-01", "1893456000"]},
                       "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]},
                       "ArnLike": {"aws:SourceArn": "arn:aws:sns:*:111122223333:topic-?"},
                       "BinaryEquals": {"s3:x-amz-meta": "QmluYXJ5"},
                       "Null": {"aws:TokenIssueTime": "false"}}},
        {"Effect": "Deny", "NotPrincipal": "*", "Action": "*", "Resource": "*"}
      ]
    }"#;
    assert_eq!(warnings(text, PolicyKind::Resource), ["never-matches"]);
}

#[test]
fn warns_about_likely_mistakes() {
    use PolicyKind::*;
    assert_eq!(
        warnings(
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}"#,
            Identity
        ),
        ["missing-version"]
    );
    assert_eq!(
        warnings(
            r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username}"}}"#,
            Identity
        ),
        ["variables-in-2008"]
    );
    assert_eq!(
        warnings(&stmt(r#"{"Effect": "Allow", "Action": "iam:Pass*", "Resource": "*"}"#), Identity),
        ["pass-role-wildcard"]
    );
    assert_eq!(
        warnings(&stmt(r#"{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}"#), Identity),
        ["allow-not-action"]
    );
    assert_eq!(
        warnings(&stmt(r#"{"Effect": "Deny", "NotAction": "*", "Resource": "*"}"#), Identity),
        ["never-matches"]
    );
    assert_eq!(
        warnings(
            &stmt(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}"#),
            Resource
        ),
        ["public-access"]
    );
    assert!(warnings(&stmt(r#"{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::111122223333:role/app"}"#), Identity).is_empty());
}
