//! A signed request, authenticated and decided in process: SigV4 verification (with the signing
//! key cached, as for every request after a key's first of the day) plus the decision, for a
//! user's long-term key and for an STS session.
//!
//! `cargo bench --bench credentials`

/// The allocator the `iamd` binary runs with, so that the figures are the sidecar's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use iamd::authorize::{self, Query, Verified};
use iamd::bundle::{Bundle, BundleSource};
use iamd::credentials::session::SessionIdentity;
use iamd::credentials::sigv4::{self, HttpRequest, Payload, SigningCredentials};
use iamd::credentials::{Authenticator, KeyRing, Secret, Session, TEMPORARY_PREFIX, new_access_key_id};
use iamd::eval::Context;
use iamd::iam::Iam;
use iamd::snapshot::SharedSnapshot;
use iamd::store::Store;

const ACCOUNT: &str = "111122223333";
const RESOURCE: &str = "arn:aws:s3:::reports/alice/q1.csv";

/// A GET signed like an S3 SDK request, with a nonce header so that every one is distinct.
fn signed(credentials: &SigningCredentials, nonce: u64) -> Vec<(String, String)> {
    let headers = vec![
        ("host".to_string(), "reports.s3.amazonaws.com".to_string()),
        ("x-nonce".to_string(), nonce.to_string()),
    ];
    let request = HttpRequest {
        method: "GET",
        path: "/alice/q1.csv",
        query: "",
        headers: &headers,
        payload: Payload::Hash(sigv4::UNSIGNED_PAYLOAD),
    };
    let mut all = headers.clone();
    all.extend(sigv4::sign(credentials, "us-east-1", "s3", jiff::Timestamp::now(), &request));
    all
}

fn decide(
    snapshot: &iamd::snapshot::Snapshot,
    authenticator: &Authenticator,
    headers: &[(String, String)],
) -> bool {
    let request = HttpRequest {
        method: "GET",
        path: "/alice/q1.csv",
        query: "",
        headers,
        payload: Payload::Hash(sigv4::UNSIGNED_PAYLOAD),
    };
    let now = jiff::Timestamp::now();
    let caller = authenticator
        .authenticate(&snapshot.directory, &request, now, Some("s3:GetObject"))
        .expect("authenticates");
    let query = Query {
        principal: "",
        action: "s3:GetObject",
        resource: RESOURCE,
        resource_account: "",
        context: Context::default(),
        explain: false,
        verified: Some(Verified {
            caller: &caller,
            source_ip: Some("192.0.2.10"),
            secure_transport: true,
            now,
            mfa_at: None,
        }),
    };
    authorize::decide(snapshot, query).unwrap().decision.is_allowed()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(KeyRing::ephemeral());
    let shared: SharedSnapshot = Arc::new(ArcSwapOption::empty());
    let iam =
        Iam::open(Store::open(dir.path()).unwrap(), shared.clone(), ACCOUNT.into(), keyring.clone()).unwrap();
    iam.publish_bundle(Arc::new(Bundle::compile("sample", &BundleSource::Embedded.read().unwrap()).unwrap()));
    iam.create_user(ACCOUNT, "alice", "/", &[], "").unwrap();
    iam.attach_policy(
        iamd::iam::Entity::User,
        ACCOUNT,
        "alice",
        &format!("arn:aws:iam::{ACCOUNT}:policy/ReportsReadOnly"),
    )
    .unwrap();
    iam.create_role(
        ACCOUNT,
        "Reader",
        "/",
        &format!(r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{ACCOUNT}"}}, "Action": "sts:AssumeRole"}}}}"#),
        3_600,
        "",
        &[],
        "",
    )
    .unwrap();
    iam.attach_policy(
        iamd::iam::Entity::Role,
        ACCOUNT,
        "Reader",
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    )
    .unwrap();
    let (key, secret) = iam.create_access_key(ACCOUNT, Some("alice")).unwrap();
    let alice = SigningCredentials {
        access_key_id: key.id,
        secret_access_key: secret.expose().to_string(),
        session_token: None,
    };
    let role = iam.get_role(ACCOUNT, "Reader").unwrap();
    let now = jiff::Timestamp::now().as_second();
    let session_secret = Secret::generate();
    let session = Session::new(
        new_access_key_id(TEMPORARY_PREFIX),
        session_secret.clone(),
        ACCOUNT.into(),
        SessionIdentity::Role {
            arn: role.arn(),
            name: role.name.clone(),
            id: role.id.clone(),
            session_name: "bench".into(),
            chained: false,
        },
        now,
        now + 3_600,
    );
    let session_credentials = SigningCredentials {
        access_key_id: session.access_key_id.clone(),
        secret_access_key: session_secret.expose().to_string(),
        session_token: Some(session.seal(&keyring)),
    };
    let snapshot = shared.load_full().unwrap();

    let accepting_replays = Authenticator::new(keyring.clone(), 0);
    let request = signed(&alice, 0);
    assert!(decide(&snapshot, &accepting_replays, &request));
    c.bench_function("sigv4 verify + decide (access key)", |b| {
        b.iter(|| black_box(decide(&snapshot, &accepting_replays, black_box(&request))))
    });
    let session_request = signed(&session_credentials, 0);
    assert!(decide(&snapshot, &accepting_replays, &session_request));
    c.bench_function("sigv4 verify + decide (STS session)", |b| {
        b.iter(|| black_box(decide(&snapshot, &accepting_replays, black_box(&session_request))))
    });
    // With replays refused (the default), every request must be new: each is signed outside
    // the measured routine.
    let refusing_replays = Authenticator::new(keyring, 1_000_000);
    let mut nonce = 0;
    c.bench_function("sigv4 verify + decide (access key, replay check)", |b| {
        b.iter_batched(
            || {
                nonce += 1;
                signed(&alice, nonce)
            },
            |request| black_box(decide(&snapshot, &refusing_replays, &request)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
