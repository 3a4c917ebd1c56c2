//! In-process sidecar decisions at scale: 100,000 principals and 10,000 managed policies.
//! Also reports the bundle reload time and the resident memory at that size.
//!
//! `cargo bench --bench sidecar`

/// The allocator the `iamd` binary runs with, so that the figures are the sidecar's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// As the binary does: give back memory freed in bulk (see `iamd::memory`).
fn release_freed_memory() {
    // SAFETY: `mi_collect` only walks mimalloc's own structures, from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use criterion::{Criterion, criterion_group, criterion_main};
use iamd::authorize::{self, Query};
use iamd::bundle::Bundle;
use iamd::credentials::KeyRing;
use iamd::eval::Context;
use iamd::iam::Iam;
use iamd::iam::model::{StateDocument, Tag, User};
use iamd::snapshot::SharedSnapshot;
use iamd::store::Store;

const PRINCIPALS: usize = 100_000;
const POLICIES: usize = 10_000;
const SERVICES: &[&str] = &["s3", "ec2", "dynamodb", "sqs", "sns", "lambda", "kms", "logs"];

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn bundle_files() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert(
        "manifest.json".to_string(),
        r#"{"revision": "bench", "account": "111122223333"}"#.to_string(),
    );
    for i in 0..POLICIES {
        let service = SERVICES[i % SERVICES.len()];
        let policy = format!(
            r#"{{"Version": "2012-10-17", "Statement": [
                {{"Sid": "Read", "Effect": "Allow", "Action": ["{service}:Get*", "{service}:List*"], "Resource": "arn:aws:{service}:*:111122223333:team-{i}/*"}},
                {{"Sid": "Own", "Effect": "Allow", "Action": "{service}:*", "Resource": "arn:aws:{service}:*:111122223333:team-{i}/${{aws:username}}/*",
                  "Condition": {{"StringEquals": {{"aws:PrincipalTag/team": "t{i}"}}}}}},
                {{"Sid": "Guard", "Effect": "Deny", "Action": "{service}:Delete*", "Resource": "*", "Condition": {{"Bool": {{"aws:MultiFactorAuthPresent": "false"}}}}}}]}}"#
        );
        files.insert(format!("policies/P{i}.json"), policy);
    }
    files
}

fn users() -> Vec<User> {
    (0..PRINCIPALS)
        .map(|i| User {
            account: "111122223333".into(),
            name: format!("user{i}"),
            path: "/".into(),
            id: format!("AIDA{i:017}"),
            created: "2026-01-01T00:00:00Z".into(),
            tags: vec![Tag { key: "team".into(), value: format!("t{}", i % POLICIES) }],
            inline: BTreeMap::new(),
            attached: (0..3)
                .map(|k| format!("arn:aws:iam::111122223333:policy/P{}", (i + k * 3_333) % POLICIES))
                .collect(),
            boundary: None,
            groups: Default::default(),
        })
        .collect()
}

/// Starts iamd's state from an existing data directory, as a restarted sidecar does, and
/// reports the start-up time and resident memory of that process alone.
fn measure_restart(data: &std::path::Path) {
    let started = Instant::now();
    let files = bundle_files();
    let bundle = Bundle::compile("bench", &files).unwrap();
    drop(files);
    // As the server does after compiling a bundle.
    release_freed_memory();
    let after_bundle = rss_mb();
    let snapshot: SharedSnapshot = Arc::new(ArcSwapOption::empty());
    let store = Store::open(data).unwrap();
    let after_open = rss_mb();
    let iam =
        Iam::open(store, snapshot.clone(), "111122223333".into(), Arc::new(KeyRing::ephemeral())).unwrap();
    let after_state = rss_mb();
    iam.publish_bundle(Arc::new(bundle));
    eprintln!(
        "restart: RSS {after_bundle:.0} MB with the compiled bundle alone, {after_open:.0} MB after opening sled, {after_state:.0} MB with the identity state"
    );
    assert!(snapshot.load().is_some());
    eprintln!(
        "restart with {PRINCIPALS} principals and {POLICIES} policies: ready in {:.0} ms, RSS {:.0} MB",
        started.elapsed().as_secs_f64() * 1e3,
        rss_mb()
    );
}

fn bench_at_scale(c: &mut Criterion) {
    iamd::memory::install_release(release_freed_memory);
    if let Some(data) = std::env::var_os("IAMD_BENCH_RESTART") {
        measure_restart(std::path::Path::new(&data));
        std::process::exit(0);
    }
    let base = rss_mb();
    let dir = tempfile::tempdir().unwrap();
    let snapshot: SharedSnapshot = Arc::new(ArcSwapOption::empty());
    let iam = Iam::open(
        Store::open(dir.path()).unwrap(),
        snapshot.clone(),
        "111122223333".into(),
        Arc::new(KeyRing::ephemeral()),
    )
    .unwrap();
    let files = bundle_files();

    let started = Instant::now();
    let bundle = Bundle::compile("bench", &files).unwrap();
    let compile = started.elapsed();
    iam.publish_bundle(Arc::new(bundle));
    let started = Instant::now();
    iam.import(StateDocument { schema_version: 1, users: users(), ..StateDocument::default() }).unwrap();
    let import = started.elapsed();

    // A reload with every principal stored: compile the bundle and re-resolve everyone.
    let started = Instant::now();
    let bundle = Bundle::compile("bench", &files).unwrap();
    iam.publish_bundle(Arc::new(bundle));
    let reload = started.elapsed();
    let rss = rss_mb();
    eprintln!(
        "scale: {PRINCIPALS} principals, {POLICIES} policies: bundle compile {:.0} ms, import {:.0} ms, \
         reload (compile + re-resolve all) {:.0} ms, RSS {:.0} MB ({:.0} MB over the process at start)",
        compile.as_secs_f64() * 1e3,
        import.as_secs_f64() * 1e3,
        reload.as_secs_f64() * 1e3,
        rss,
        rss - base
    );

    iam.flush().unwrap();
    let current = snapshot.load_full().unwrap();
    drop(iam);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--bench"])
        .env("IAMD_BENCH_RESTART", dir.path())
        .status()
        .unwrap();
    assert!(status.success());

    let principals: Vec<String> =
        (0..1024).map(|i| format!("arn:aws:iam::111122223333:user/user{}", i * 97 % PRINCIPALS)).collect();
    let resources: Vec<String> = (0..1024)
        .map(|i| {
            let user = i * 97 % PRINCIPALS;
            let policy = user % POLICIES;
            let service = SERVICES[policy % SERVICES.len()];
            format!("arn:aws:{service}:us-east-1:111122223333:team-{policy}/user{user}/doc")
        })
        .collect();
    let actions: Vec<String> = (0..1024)
        .map(|i| {
            let policy = (i * 97 % PRINCIPALS) % POLICIES;
            format!("{}:GetObject", SERVICES[policy % SERVICES.len()])
        })
        .collect();
    let query = |i: usize| Query {
        principal: &principals[i],
        action: &actions[i],
        resource: &resources[i],
        resource_account: "",
        context: Context::default(),
        explain: false,
        verified: None,
    };
    assert!(authorize::decide(&current, query(1)).unwrap().decision.is_allowed());
    // Cold: 1,024 principals in turn, each with its own policies, so caches rarely help, as
    // when many services share one sidecar. Hot: one principal again and again.
    let mut i = 0;
    c.bench_function("sidecar/decide_100k_principals_10k_policies/rotating", |b| {
        b.iter(|| {
            i = (i + 1) % 1024;
            black_box(authorize::decide(black_box(&current), query(i)).unwrap().decision)
        })
    });
    c.bench_function("sidecar/decide_100k_principals_10k_policies/same_principal", |b| {
        b.iter(|| black_box(authorize::decide(black_box(&current), query(1)).unwrap().decision))
    });
}

criterion_group!(benches, bench_at_scale);
criterion_main!(benches);
