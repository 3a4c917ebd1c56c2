//! Authorize over gRPC on loopback: throughput and latency percentiles at concurrency 1 and 16,
//! with the client on the same machine as the server.
//!
//! `cargo bench --bench grpc` (`IAMD_BENCH_SECONDS` sets the duration of each run, default 5)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iamd::config::{Config, FileConfig, Overrides};
use iamd::proto::{self, admin_client::AdminClient, authorizer_client::AuthorizerClient};
use tonic::transport::Channel;

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1_000.0
}

/// CPU time (user + system) used so far by this process's threads whose name starts with
/// `prefix`, in seconds.
fn thread_cpu_seconds(prefix: &str) -> f64 {
    let ticks_per_second = 100.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += field(14) + field(15);
    }
    ticks as f64 / ticks_per_second
}

fn main() {
    let seconds: u64 = std::env::var("IAMD_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    if std::env::args().any(|a| a == "--list") {
        println!("grpc: bench");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        data: Some(data.path().join("data")),
        master_key_file: Some(data.path().join("master.keys")),
        root_credentials_file: Some(data.path().join("root.env")),
        no_audit: std::env::var("IAMD_BENCH_AUDIT").is_err(),
        ..Overrides::default()
    };
    let config = Config::resolve(FileConfig::default(), overrides).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_threads =
        std::env::var("IAMD_BENCH_SERVER_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(server_threads)
            .thread_name("iamd-server")
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(iamd::server::run(config, std::future::pending(), move |bound| {
                ready_tx.send(bound).unwrap()
            }))
            .unwrap();
    });
    let bound = ready_rx.recv().unwrap();

    // One client thread: the client shares the 2 cores with the server, as a sidecar's caller
    // does.
    let client_threads =
        std::env::var("IAMD_BENCH_CLIENT_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let root = std::fs::read_to_string(data.path().join("root.env")).unwrap();
        let credentials = iamd::client::credentials_from_file(&root).unwrap();
        let admin_endpoint = format!("http://{}", bound.admin);
        let channel = iamd::client::SigningChannel::connect(&admin_endpoint, credentials, "iam").await.unwrap();
        let mut admin = AdminClient::new(channel);
        admin.create_user(proto::CreateUserRequest { user_name: "alice".into(), ..Default::default() }).await.unwrap();
        admin
            .attach_user_policy(proto::AttachmentRequest {
                name: "alice".into(),
                policy_arn: "arn:aws:iam::111122223333:policy/ReportsReadOnly".into(),
                account_id: String::new(),
            })
            .await
            .unwrap();
        let request = proto::AuthorizeRequest {
            principal: "arn:aws:iam::111122223333:user/alice".into(),
            action: "s3:GetObject".into(),
            resource: "arn:aws:s3:::reports/alice/q1.csv".into(),
            resource_account: String::new(),
            context: HashMap::from([(
                "aws:SecureTransport".to_string(),
                proto::ContextValues { values: vec![proto::ContextValue { kind: Some(proto::context_value::Kind::String("true".into())) }] },
            )]),
            explain: false,
            signed_request: None,
            encode_authorization_message: false,
        };
        for concurrency in [1usize, 16] {
            let connections = std::env::var("IAMD_BENCH_CONNECTIONS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(4)
                .clamp(1, concurrency);
            let mut channels = Vec::new();
            for _ in 0..connections {
                channels.push(Channel::from_shared(format!("http://{}", bound.authorizer)).unwrap().connect().await.unwrap());
            }
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let warmup = Instant::now() + Duration::from_millis(500);
            let request = Arc::new(request.clone());
            let mut tasks = Vec::new();
            for task in 0..concurrency {
                let mut client = AuthorizerClient::new(channels[task % connections].clone());
                let request = request.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(200_000);
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let response = client.authorize((*request).clone()).await.expect("authorize succeeds");
                        assert_eq!(response.get_ref().decision, proto::Decision::Allow as i32);
                        if started > warmup {
                            latencies.push(started.elapsed().as_nanos() as u64);
                        }
                    }
                    latencies
                }));
            }
            let cpu_before = thread_cpu_seconds("iamd-server");
            let mut latencies = Vec::new();
            for task in tasks {
                latencies.extend(task.await.unwrap());
            }
            let server_cpu = thread_cpu_seconds("iamd-server") - cpu_before;
            latencies.sort_unstable();
            let measured = seconds as f64 - 0.5;
            println!(
                "grpc/authorize concurrency {concurrency:>2} ({connections} connection{}): {:>8.0} decisions/s, p50 {:>6.0} µs, p90 {:>6.0} µs, p99 {:>6.0} µs, p99.9 {:>6.0} µs, server CPU {:>5.1} µs/decision",
                if connections == 1 { "" } else { "s" },
                latencies.len() as f64 / measured,
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.90),
                percentile(&latencies, 0.99),
                percentile(&latencies, 0.999),
                server_cpu * 1e6 / latencies.len().max(1) as f64,
            );
        }
    });
}
