//! The evaluation logic's special cases, one scenario each, through the public case format.

use iamd::eval::Decision::{self, Allow, ExplicitDeny, ImplicitDeny};
use iamd::simulate::run_case;
use serde_json::{Value, json};

const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const SESSION: &str = "arn:aws:sts::111122223333:assumed-role/AppRole/worker";
const ROLE: &str = "arn:aws:iam::111122223333:role/AppRole";
const BUCKET_KEY: &str = "arn:aws:s3:::reports/q1.csv";

fn decide(case: Value) -> Decision {
    let outcome = run_case(&case.to_string(), false);
    assert_eq!(outcome.error, None, "case failed: {case}");
    outcome.decision.unwrap()
}

fn allow(action: &str, resource: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})
}

fn deny(action: &str, resource: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": action, "Resource": resource}]})
}

fn grant(principal: Value, action: &str, resource: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": resource}]})
}

fn base(principal: &str, action: &str, resource: &str) -> Value {
    json!({"id": "t", "principal": principal, "action": action, "resource": resource})
}

fn with(mut case: Value, field: &str, value: Value) -> Value {
    case[field] = value;
    case
}

#[test]
fn default_deny_and_identity_allow() {
    let case = base(ALICE, "s3:GetObject", BUCKET_KEY);
    assert_eq!(decide(case.clone()), ImplicitDeny);
    let allowed =
        with(case.clone(), "identity_policies", json!([allow("s3:Get*", "arn:aws:s3:::reports/*")]));
    assert_eq!(decide(allowed), Allow);
    let case_insensitive =
        with(case, "identity_policies", json!([allow("S3:getobject", "arn:aws:s3:::reports/*")]));
    assert_eq!(decide(case_insensitive), Allow);
}

#[test]
fn explicit_deny_wins_everywhere() {
    let case = with(base(ALICE, "s3:GetObject", BUCKET_KEY), "identity_policies", json!([allow("*", "*")]));
    assert_eq!(decide(with(case.clone(), "permission_boundary", json!(deny("s3:*", "*")))), ExplicitDeny);
    let with_resource_deny = with(
        case.clone(),
        "resource_policy",
        json!({"Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": BUCKET_KEY}]}),
    );
    assert_eq!(decide(with_resource_deny), ExplicitDeny);
    let scp = with(case, "scps", json!([[allow("*", "*")], [allow("*", "*"), deny("s3:GetObject", "*")]]));
    assert_eq!(decide(scp), ExplicitDeny);
}

#[test]
fn every_scp_level_must_allow() {
    let case = with(base(ALICE, "s3:GetObject", BUCKET_KEY), "identity_policies", json!([allow("*", "*")]));
    let full =
        with(case.clone(), "scps", json!([[allow("*", "*")], [allow("s3:*", "*")], [allow("*", "*")]]));
    assert_eq!(decide(full), Allow);
    let gap = with(case, "scps", json!([[allow("*", "*")], [allow("ec2:*", "*")], [allow("*", "*")]]));
    assert_eq!(decide(gap), ImplicitDeny);
}

#[test]
fn root_user() {
    let root = "arn:aws:iam::111122223333:root";
    let own = with(
        base(root, "s3:DeleteBucket", "arn:aws:s3:::reports"),
        "resource_account",
        json!("111122223333"),
    );
    assert_eq!(decide(own.clone()), Allow, "root needs no policy in its own account");
    assert_eq!(
        decide(with(own.clone(), "scps", json!([[allow("*", "*"), deny("s3:*", "*")]]))),
        ExplicitDeny
    );
    assert_eq!(decide(with(own, "scps", json!([[allow("ec2:*", "*")]]))), ImplicitDeny);
    let other = with(base(root, "s3:GetObject", BUCKET_KEY), "resource_account", json!("444455556666"));
    assert_eq!(decide(other.clone()), ImplicitDeny, "another account's resource needs its grant");
    let granted = with(
        other,
        "resource_policy",
        grant(json!({"AWS": "111122223333"}), "s3:GetObject", "arn:aws:s3:::reports/*"),
    );
    assert_eq!(decide(granted), Allow);
}

#[test]
fn same_account_resource_policy_grant_to_user_is_enough() {
    let case = with(base(ALICE, "s3:GetObject", BUCKET_KEY), "resource_account", json!("111122223333"));
    let granted =
        with(case, "resource_policy", grant(json!({"AWS": ALICE}), "s3:GetObject", "arn:aws:s3:::reports/*"));
    assert_eq!(decide(granted.clone()), Allow);
    let bounded = with(granted, "permission_boundary", allow("ec2:*", "*"));
    assert_eq!(decide(bounded), Allow, "a grant to the user ARN is not capped by the boundary");
}

#[test]
fn same_account_grant_to_the_account_delegates_to_identity_policies() {
    let case = with(base(ALICE, "s3:GetObject", BUCKET_KEY), "resource_account", json!("111122223333"));
    let to_account =
        with(case, "resource_policy", grant(json!({"AWS": "111122223333"}), "s3:GetObject", "*"));
    assert_eq!(decide(to_account.clone()), ImplicitDeny);
    assert_eq!(decide(with(to_account, "identity_policies", json!([allow("s3:GetObject", "*")]))), Allow);
}

#[test]
fn grant_to_role_is_capped_by_boundary_and_session_policy_but_grant_to_session_is_not() {
    let case = with(base(SESSION, "s3:GetObject", BUCKET_KEY), "resource_account", json!("111122223333"));
    let to_role = with(case.clone(), "resource_policy", grant(json!({"AWS": ROLE}), "s3:GetObject", "*"));
    assert_eq!(decide(to_role.clone()), Allow);
    assert_eq!(decide(with(to_role.clone(), "permission_boundary", allow("ec2:*", "*"))), ImplicitDeny);
    assert_eq!(decide(with(to_role, "session_policy", allow("ec2:*", "*"))), ImplicitDeny);
    let to_session = with(case, "resource_policy", grant(json!({"AWS": SESSION}), "s3:GetObject", "*"));
    assert_eq!(decide(with(to_session.clone(), "permission_boundary", allow("ec2:*", "*"))), Allow);
    assert_eq!(decide(with(to_session, "session_policy", allow("ec2:*", "*"))), Allow);
}

#[test]
fn boundary_and_session_policy_intersect_identity_policies() {
    let case =
        with(base(SESSION, "s3:GetObject", BUCKET_KEY), "identity_policies", json!([allow("s3:*", "*")]));
    assert_eq!(decide(with(case.clone(), "permission_boundary", allow("s3:Get*", "*"))), Allow);
    assert_eq!(decide(with(case.clone(), "permission_boundary", allow("s3:Put*", "*"))), ImplicitDeny);
    assert_eq!(decide(with(case.clone(), "session_policy", allow("s3:GetObject", BUCKET_KEY))), Allow);
    assert_eq!(
        decide(with(case, "session_policy", allow("s3:GetObject", "arn:aws:s3:::other/*"))),
        ImplicitDeny
    );
}

#[test]
fn cross_account_needs_both_sides() {
    let case = with(base(ALICE, "s3:GetObject", BUCKET_KEY), "resource_account", json!("444455556666"));
    let identity_only = with(case.clone(), "identity_policies", json!([allow("s3:*", "*")]));
    assert_eq!(decide(identity_only.clone()), ImplicitDeny);
    let resource_grant = grant(json!({"AWS": "arn:aws:iam::111122223333:root"}), "s3:GetObject", "*");
    let resource_only = with(case, "resource_policy", resource_grant.clone());
    assert_eq!(decide(resource_only), ImplicitDeny);
    let both = with(identity_only, "resource_policy", resource_grant);
    assert_eq!(decide(both.clone()), Allow);
    assert_eq!(decide(with(both, "permission_boundary", allow("ec2:*", "*"))), ImplicitDeny);
}

#[test]
fn trust_policy_must_allow_and_account_grants_delegate() {
    let target = "arn:aws:iam::111122223333:role/Deploy";
    let case = base(ALICE, "sts:AssumeRole", target);
    let trust_account = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole"}]});
    let delegated = with(case.clone(), "resource_policy", trust_account.clone());
    assert_eq!(decide(delegated.clone()), ImplicitDeny, "an account grant needs the user's own allow");
    assert_eq!(decide(with(delegated, "identity_policies", json!([allow("sts:AssumeRole", target)]))), Allow);
    let trust_user = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "sts:AssumeRole"}]});
    assert_eq!(decide(with(case.clone(), "resource_policy", trust_user)), Allow);
    let trust_other = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let not_trusted = with(
        with(case, "resource_policy", trust_other),
        "identity_policies",
        json!([allow("sts:AssumeRole", "*")]),
    );
    assert_eq!(decide(not_trusted), ImplicitDeny, "identity policies cannot bypass a trust policy");
}

#[test]
fn kms_key_policy_is_the_authority() {
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let case = with(base(ALICE, "kms:Decrypt", key), "identity_policies", json!([allow("kms:*", "*")]));
    let key_policy_without_account =
        grant(json!({"AWS": "arn:aws:iam::111122223333:user/bob"}), "kms:*", "*");
    assert_eq!(decide(with(case.clone(), "resource_policy", key_policy_without_account)), ImplicitDeny);
    let key_policy_account = grant(json!({"AWS": "arn:aws:iam::111122223333:root"}), "kms:*", "*");
    assert_eq!(decide(with(case, "resource_policy", key_policy_account)), Allow);
}

#[test]
fn anonymous_and_service_principals_need_a_resource_grant() {
    let case = base("anonymous", "s3:GetObject", BUCKET_KEY);
    assert_eq!(decide(with(case.clone(), "identity_policies", json!([allow("*", "*")]))), ImplicitDeny);
    assert_eq!(
        decide(with(
            case.clone(),
            "resource_policy",
            grant(json!("*"), "s3:GetObject", "arn:aws:s3:::reports/*")
        )),
        Allow
    );
    let only_account = grant(json!({"AWS": "111122223333"}), "s3:GetObject", "*");
    assert_eq!(decide(with(case, "resource_policy", only_account)), ImplicitDeny);
    let service = base("cloudtrail.amazonaws.com", "s3:PutObject", BUCKET_KEY);
    let to_service = grant(json!({"Service": "cloudtrail.amazonaws.com"}), "s3:PutObject", "*");
    assert_eq!(decide(with(service, "resource_policy", to_service)), Allow);
}

#[test]
fn not_principal_with_deny_needs_every_identity_listed() {
    let deny_all_but = |listed: Value| {
        json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "NotPrincipal": {"AWS": listed}, "Action": "s3:*", "Resource": "*"}]})
    };
    let case =
        with(base(SESSION, "s3:GetObject", BUCKET_KEY), "identity_policies", json!([allow("s3:*", "*")]));
    let session_only = with(case.clone(), "resource_policy", deny_all_but(json!([SESSION])));
    assert_eq!(decide(session_only), ExplicitDeny);
    let complete =
        with(case, "resource_policy", deny_all_but(json!([SESSION, ROLE, "arn:aws:iam::111122223333:root"])));
    assert_eq!(decide(complete), Allow);
}

#[test]
fn statement_order_and_policy_order_do_not_matter() {
    let a = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    let b = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]});
    for policy in [a, b] {
        let case = with(base(ALICE, "s3:GetObject", BUCKET_KEY), "identity_policies", json!([policy]));
        assert_eq!(
            decide(with(case.clone(), "context", json!({"aws:SecureTransport": "false"}))),
            ExplicitDeny
        );
        assert_eq!(decide(with(case.clone(), "context", json!({"aws:SecureTransport": "true"}))), Allow);
        assert_eq!(decide(case), Allow, "Bool on a missing key is false, so the deny does not apply");
    }
}

#[test]
fn explanations_name_statements_and_layers() {
    let case = with(
        base(ALICE, "s3:GetObject", BUCKET_KEY),
        "identity_policies",
        json!([
        {"Version": "2012-10-17", "Statement": [{"Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]},
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::reports/*"}]}]),
    );
    let outcome = run_case(&case.to_string(), true);
    let explanation = outcome.explanation.unwrap();
    assert_eq!(explanation.decision, ExplicitDeny);
    let text = serde_json::to_value(&explanation).unwrap();
    assert_eq!(text["deciding_layer"], "identity");
    assert_eq!(text["matched_statements"][0]["statement"], "Read");
    assert_eq!(text["matched_statements"][1]["statement"], "#0");
    assert_eq!(text["matched_statements"][1]["policy"], "identity_policies[1]");
    assert!(
        explanation.reason.ends_with("with an explicit deny in an identity-based policy"),
        "{}",
        explanation.reason
    );

    let denied = run_case(&base(ALICE, "s3:GetObject", BUCKET_KEY).to_string(), true).explanation.unwrap();
    assert_eq!(
        denied.reason,
        format!(
            "User: {ALICE} is not authorized to perform: s3:GetObject on resource: {BUCKET_KEY} because no identity-based policy allows the s3:GetObject action"
        )
    );
}

#[test]
fn bad_cases_report_errors_and_never_decide() {
    for (case, expected) in [
        (json!({"id": 1, "principal": "nobody", "action": "s3:GetObject", "resource": "*"}), "`principal`"),
        (json!({"id": 2, "principal": ALICE, "action": "s3 GetObject", "resource": "*"}), "not an action"),
        (
            json!({"id": 3, "principal": ALICE, "action": "s3:GetObject", "resource": "*", "identity_policy": []}),
            "unknown field `identity_policy`",
        ),
        (
            json!({"id": 4, "principal": ALICE, "action": "s3:GetObject", "resource": "*",
                "identity_policies": [{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}}]}),
            "`Principal` is not allowed",
        ),
        (
            json!({"id": 5, "principal": ALICE, "action": "s3:GetObject", "resource": "*", "scps": [allow("*", "*")]}),
            "array of levels",
        ),
    ] {
        let outcome = run_case(&case.to_string(), false);
        assert_eq!(outcome.decision, None);
        let error = outcome.error.unwrap();
        assert!(error.contains(expected), "{error}");
    }
    assert!(run_case("{not json", false).error.unwrap().contains("not valid JSON"));
    let twice = format!(
        r#"{{"id": 6, "principal": "{ALICE}", "action": "s3:GetObject", "resource": "*", "resource_policy": null, "resource_policy": null}}"#
    );
    assert!(
        run_case(&twice, false).error.unwrap().contains("field `resource_policy` appears more than once")
    );
}

#[test]
fn trust_and_key_policies_must_exist_to_allow() {
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let kms = with(base(ALICE, "kms:Decrypt", key), "identity_policies", json!([allow("kms:*", "*")]));
    assert_eq!(decide(kms), ImplicitDeny, "no key policy: nothing grants the key");
    let role = "arn:aws:iam::111122223333:role/Deploy";
    let assume =
        with(base(ALICE, "sts:AssumeRole", role), "identity_policies", json!([allow("sts:AssumeRole", "*")]));
    assert_eq!(decide(assume), ImplicitDeny, "no trust policy: nobody can assume the role");
}

#[test]
fn not_principal_with_allow_and_duplicate_keys_are_rejected() {
    let allow_everyone_else = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "s3:*", "Resource": "*"}]});
    let outcome = run_case(
        &with(base("anonymous", "s3:GetObject", BUCKET_KEY), "resource_policy", allow_everyone_else)
            .to_string(),
        false,
    );
    assert_eq!(outcome.decision, None);
    assert!(outcome.error.unwrap().contains("`NotPrincipal` can only be used with"));

    let line = format!(
        r#"{{"id": "dup", "principal": "{ALICE}", "action": "s3:GetObject", "resource": "{BUCKET_KEY}",
           "identity_policies": [{{"Version": "2012-10-17", "Statement": {{"Effect": "Deny", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}}}}]}}"#
    )
    .replace('\n', " ");
    let outcome = run_case(&line, false);
    assert_eq!(outcome.decision, None, "a duplicated Effect must never be resolved by picking one");
    assert!(outcome.error.unwrap().contains("`Effect` appears more than once"));
}
