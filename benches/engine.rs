//! Decision latency and compile time of the policy engine.
//!
//! `cargo bench --bench engine` — figures are in the README's performance section.

/// The allocator the `iamd` binary runs with, so that the figures are the sidecar's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use iamd::eval::{self, Context, PolicySet, Principal, Request};
use iamd::policy::{self, Policy, PolicyKind};
use serde_json::{Value, json};

const SERVICES: &[&str] =
    &["s3", "ec2", "dynamodb", "sqs", "sns", "lambda", "kms", "logs", "iam", "cloudwatch"];

fn compile(name: &str, document: &Value, kind: PolicyKind) -> Arc<Policy> {
    Arc::new(policy::parse_value(name, document, kind).expect("benchmark policies are valid").policy)
}

fn request() -> Request {
    let principal = Principal::parse("arn:aws:iam::111122223333:user/alice").unwrap();
    let mut context = Context::default();
    context.insert("aws:username", ["alice"]);
    context.insert("aws:SourceIp", ["10.1.2.3"]);
    context.insert("aws:PrincipalTag/team", ["analytics"]);
    context.insert("aws:SecureTransport", ["true"]);
    context.insert("aws:CurrentTime", ["2026-11-25T12:00:00Z"]);
    Request::new(principal, "s3:GetObject", "arn:aws:s3:::reports/alice/2026/q3.csv")
        .unwrap()
        .with_resource_account("111122223333")
        .unwrap()
        .with_context(context)
}

/// About 6 KB: many statements over many services, with conditions, like a real managed policy.
fn managed_policy(seed: usize) -> Value {
    let statements: Vec<Value> = (0..18)
        .map(|i| {
            let service = SERVICES[(seed + i) % SERVICES.len()];
            json!({
                "Sid": format!("S{seed}x{i}"),
                "Effect": if i % 7 == 3 { "Deny" } else { "Allow" },
                "Action": [format!("{service}:Get*"), format!("{service}:List*"), format!("{service}:Describe{i}*")],
                "Resource": [format!("arn:aws:{service}:*:111122223333:thing-{seed}-{i}/*"),
                             format!("arn:aws:{service}:us-east-1:111122223333:other-{i}/${{aws:username}}/*")],
                "Condition": {"StringEquals": {"aws:PrincipalTag/team": format!("team-{i}")},
                              "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn bench_small(c: &mut Criterion) {
    let identity = vec![
        compile(
            "read",
            &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "arn:aws:s3:::reports/${aws:username}/*"}]}),
            PolicyKind::Identity,
        ),
        compile(
            "ec2",
            &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}),
            PolicyKind::Identity,
        ),
        compile(
            "guard",
            &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}),
            PolicyKind::Identity,
        ),
    ];
    let request = request();
    let set = PolicySet { identity: &identity, ..PolicySet::default() };
    assert!(eval::authorize(&request, &set).is_allowed());
    c.bench_function("decide/a_three_small_policies", |b| {
        b.iter(|| eval::authorize(black_box(&request), black_box(&set)))
    });
}

fn bench_managed(c: &mut Criterion) {
    let mut identity: Vec<Arc<Policy>> =
        (0..9).map(|i| compile(&format!("managed{i}"), &managed_policy(i), PolicyKind::Identity)).collect();
    identity.push(compile(
        "reports",
        &json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/${aws:username}/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}),
        PolicyKind::Identity,
    ));
    let full = || {
        compile(
            "FullAWSAccess",
            &json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
            PolicyKind::Scp,
        )
    };
    let guard = compile(
        "DenyRegions",
        &json!({"Version": "2012-10-17", "Statement": {"Effect": "Deny", "NotAction": ["iam:*", "sts:*"], "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}, "Null": {"aws:RequestedRegion": "false"}}}}),
        PolicyKind::Scp,
    );
    let scps = vec![vec![full()], vec![full(), guard], vec![full()]];
    let boundary = compile(
        "boundary",
        &json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": ["s3:*", "ec2:*", "dynamodb:*"], "Resource": "*"}}),
        PolicyKind::Boundary,
    );
    let sizes: Vec<usize> = (0..9).map(|i| managed_policy(i).to_string().len()).collect();
    eprintln!("managed policy sizes (bytes): {sizes:?}");
    let request = request();
    let set = PolicySet {
        identity: &identity,
        permissions_boundary: Some(&boundary),
        scps: Some(&scps),
        ..PolicySet::default()
    };
    assert!(eval::authorize(&request, &set).is_allowed());
    c.bench_function("decide/b_ten_managed_3_scp_levels_boundary", |b| {
        b.iter(|| eval::authorize(black_box(&request), black_box(&set)))
    });
    c.bench_function("explain/b_ten_managed_3_scp_levels_boundary", |b| {
        b.iter(|| eval::explain(black_box(&request), black_box(&set)))
    });
}

fn bench_worst_case(c: &mut Criterion) {
    // Ten policies of ten statements: every statement is a candidate for any action and must
    // run its wildcard and condition tests before failing on the last one.
    let statements = |p: usize| -> Vec<Value> {
        (0..10)
        .map(|i| json!({
            "Effect": "Allow",
            "Action": ["s3:*", "*"],
            "Resource": format!("arn:aws:s3:::*r*e*p*o*r*t*s*/*{p}{i}*/*.csv"),
            "Condition": {"StringLike": {"aws:PrincipalTag/team": ["*a*n*a*l*y*t*i*c*s*"], "aws:username": "a*"},
                          "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]},
                          "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
                          "StringEquals": {"aws:RequestedRegion": "eu-west-1"}}
        }))
        .collect()
    };
    let identity: Vec<Arc<Policy>> = (0..10)
        .map(|p| {
            compile(
                &format!("wild{p}"),
                &json!({"Version": "2012-10-17", "Statement": statements(p)}),
                PolicyKind::Identity,
            )
        })
        .collect();
    let mut request = request();
    request.context_mut().insert("aws:RequestedRegion", ["us-east-1"]);
    let set = PolicySet { identity: &identity, ..PolicySet::default() };
    assert!(!eval::authorize(&request, &set).is_allowed());
    c.bench_function("decide/c_10_policies_of_10_wildcard_condition_statements", |b| {
        b.iter(|| eval::authorize(black_box(&request), black_box(&set)))
    });
}

fn bench_compile(c: &mut Criterion) {
    let texts: Vec<String> = (0..10_000)
        .map(|i| {
            let service = SERVICES[i % SERVICES.len()];
            json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "Read", "Effect": "Allow", "Action": [format!("{service}:Get*"), format!("{service}:List*")],
                 "Resource": format!("arn:aws:{service}:*:111122223333:team-{i}/*")},
                {"Sid": "Write", "Effect": "Allow", "Action": format!("{service}:Put*"),
                 "Resource": format!("arn:aws:{service}:*:111122223333:team-{i}/${{aws:username}}/*"),
                 "Condition": {"StringEquals": {"aws:PrincipalTag/team": format!("t{i}")}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
                {"Sid": "Guard", "Effect": "Deny", "NotAction": "iam:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
            ]})
            .to_string()
        })
        .collect();
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10000_policies", |b| {
        b.iter(|| {
            for (i, text) in texts.iter().enumerate() {
                black_box(policy::parse(&format!("p{i}"), text, PolicyKind::Identity).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_small, bench_managed, bench_worst_case, bench_compile);
criterion_main!(benches);
