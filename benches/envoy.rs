//! Latency through a real Envoy on loopback at a fixed rate, with and without the ext_authz
//! filter calling iamd, for requests signed with SigV4 (each verified and decided). A third run
//! points the filter at a server that allows everything without looking: the floor any ext_authz
//! server meets on this machine, so that iamd's share of the filter's cost can be told apart.
//!
//! `bash tests/python/setup.sh && cargo bench --bench envoy` (`IAMD_BENCH_SECONDS` sets the
//! duration of each run, default 10; `IAMD_BENCH_RATE` the requests per second, default 1000).

/// The allocator the `iamd` binary runs with, so that the figures are the sidecar's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iamd::config::{Config, FileConfig, Overrides};
use iamd::credentials::sigv4::{self, HttpRequest, Payload, SigningCredentials};
use iamd::proto::{self, admin_client::AdminClient};

const ACCOUNT: &str = "111122223333";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An upstream answering 200 to every request, on keep-alive connections.
fn upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn envoy_binary() -> String {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/python/bin/python");
    let output = Command::new(python)
        .args([
            "-c",
            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
        ])
        .output()
        .expect("run `bash tests/python/setup.sh` first: it installs Envoy");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn start_envoy(dir: &std::path::Path, listen: u16, app: u16, iamd: u16, ext_authz: bool) -> Envoy {
    let mut config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/envoy.yaml")).unwrap();
    if !ext_authz {
        let start = config.find("                  - name: envoy.filters.http.ext_authz").unwrap();
        let end = config.find("                  - name: envoy.filters.http.router").unwrap();
        config.replace_range(start..end, "");
    }
    let config = config
        .replace("address: 0.0.0.0, port_value: 10000", &format!("address: 127.0.0.1, port_value: {listen}"))
        .replace("port_value: 8080", &format!("port_value: {app}"))
        .replace("port_value: 50051", &format!("port_value: {iamd}"))
        .replace("port_value: 9901", &format!("port_value: {}", free_port()));
    let path = dir.join(format!("envoy-{listen}.yaml"));
    std::fs::write(&path, config).unwrap();
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&path)
        .args(["--log-level", "error", "--base-id", &listen.to_string(), "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Envoy(child)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1_000.0
}

const PATH: &str = "/reports/alice/q1.csv";

/// Starts `send(n)` for n = 1, 2, ... `rate` times a second for `seconds`, open loop (a slow
/// answer does not delay the next request); returns the latencies in ns, sorted. The clock of
/// each starts when its future is first polled, after `send` has built (and signed) it.
async fn open_loop<F, R>(rate: u64, seconds: u64, mut send: F) -> Vec<u64>
where
    F: FnMut(u64) -> R,
    R: Future<Output = ()> + Send + 'static,
{
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        n += 1;
        let request = send(n);
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            request.await;
            latencies.lock().unwrap().push(sent.elapsed().as_nanos() as u64);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_unstable();
    latencies
}

/// The headers of the benchmark's GET signed for `host`, a nonce making each request distinct.
fn signed_get(credentials: &SigningCredentials, host: &str, nonce: u64) -> Vec<(String, String)> {
    let signed = vec![("host".to_string(), host.to_string()), ("x-nonce".to_string(), nonce.to_string())];
    let unsigned =
        HttpRequest { method: "GET", path: PATH, query: "", headers: &signed, payload: Payload::Body(b"") };
    let added = sigv4::sign(credentials, "us-east-1", "s3", jiff::Timestamp::now(), &unsigned);
    signed.into_iter().chain(added).collect()
}

/// Sends `rate` signed requests a second through Envoy for `seconds`; returns latencies in ns.
async fn run(port: u16, credentials: &SigningCredentials, rate: u64, seconds: u64) -> Vec<u64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let host = format!("127.0.0.1:{port}");
    open_loop(rate, seconds, |nonce| {
        let mut request = client.get(format!("http://{host}{PATH}"));
        for (name, value) in signed_get(credentials, &host, nonce).into_iter().filter(|(n, _)| n != "host") {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await;
        }
    })
    .await
}

/// Sends `rate` Check calls a second straight to iamd, each with what Envoy sends for one
/// signed request to it on `envoy_port`; returns latencies in ns. Set beside the runs through
/// Envoy, it tells iamd's part of the filter's cost from Envoy's.
async fn run_direct(
    iamd: u16,
    envoy_port: u16,
    credentials: &SigningCredentials,
    rate: u64,
    seconds: u64,
) -> Vec<u64> {
    use envoy_types::pb::envoy::service::auth::v3::{
        AttributeContext, CheckRequest, attribute_context, authorization_client::AuthorizationClient,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{iamd}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    let host = format!("127.0.0.1:{envoy_port}");
    open_loop(rate, seconds, |nonce| {
        let mut headers: std::collections::HashMap<String, String> =
            signed_get(credentials, &host, nonce).into_iter().filter(|(n, _)| n != "host").collect();
        for (name, value) in [(":authority", host.as_str()), (":method", "GET"), (":path", PATH)] {
            headers.insert(name.into(), value.into());
        }
        let check = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        method: "GET".into(),
                        path: PATH.into(),
                        host: host.clone(),
                        scheme: "http".into(),
                        protocol: "HTTP/1.1".into(),
                        headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let mut client = AuthorizationClient::new(channel.clone());
        async move {
            let response = client.check(check).await.unwrap().into_inner();
            assert_eq!(response.status.map(|s| s.code), Some(0), "iamd allows the signed request");
        }
    })
    .await
}

/// An ext_authz server that allows every request without reading it.
struct AllowAll;

#[tonic::async_trait]
impl envoy_types::ext_authz::v3::pb::Authorization for AllowAll {
    async fn check(
        &self,
        _: tonic::Request<envoy_types::ext_authz::v3::pb::CheckRequest>,
    ) -> Result<tonic::Response<envoy_types::ext_authz::v3::pb::CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(envoy_types::ext_authz::v3::pb::CheckResponse {
            status: Some(envoy_types::pb::google::rpc::Status { code: 0, ..Default::default() }),
            ..Default::default()
        }))
    }
}

/// Starts [`AllowAll`] on a thread of its own, on a current-thread runtime as iamd's; its port.
fn allow_all() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(envoy_types::ext_authz::v3::pb::AuthorizationServer::new(AllowAll))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    port
}

fn report(what: &str, latencies: &[u64], rate: u64) {
    println!(
        "{what}: {} requests at {rate}/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        percentile(latencies, 0.50) / 1_000.0,
        percentile(latencies, 0.99) / 1_000.0,
        percentile(latencies, 1.0) / 1_000.0,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("envoy: bench");
        return;
    }
    let seconds: u64 = std::env::var("IAMD_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let rate: u64 = std::env::var("IAMD_BENCH_RATE").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    for (path, text) in [
        ("manifest.json", format!("{{\"revision\": \"bench\", \"account\": \"{ACCOUNT}\"}}")),
        (
            "policies/Reports.json",
            r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/${aws:username}/*"}}"#.to_string(),
        ),
        (
            "routes/files.json",
            r#"{"hosts": ["*"], "rules": [{"method": "GET", "path": "/reports/{key+}", "action": "s3:GetObject", "resource": "arn:aws:s3:::reports/{key}"}]}"#.to_string(),
        ),
    ] {
        let path = bundle.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        data: Some(dir.path().join("data")),
        bundle: Some(bundle),
        master_key_file: Some(dir.path().join("master.keys")),
        root_credentials_file: Some(dir.path().join("root.env")),
        no_audit: true,
        ..Overrides::default()
    };
    let config = Config::resolve(FileConfig::default(), overrides).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // As `iamd serve` runs with its default one thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
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
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let root = std::fs::read_to_string(dir.path().join("root.env")).unwrap();
        let root = iamd::client::credentials_from_file(&root).unwrap();
        let channel = iamd::client::SigningChannel::connect(&format!("http://{}", bound.admin), root, "iam")
            .await
            .unwrap();
        let mut admin = AdminClient::new(channel);
        admin
            .create_user(proto::CreateUserRequest { user_name: "alice".into(), ..Default::default() })
            .await
            .unwrap();
        admin
            .attach_user_policy(proto::AttachmentRequest {
                name: "alice".into(),
                policy_arn: format!("arn:aws:iam::{ACCOUNT}:policy/Reports"),
                account_id: String::new(),
            })
            .await
            .unwrap();
        let key = admin
            .create_access_key(proto::AccessKeyOwner { user_name: "alice".into(), account_id: String::new() })
            .await
            .unwrap()
            .into_inner();
        let alice = SigningCredentials {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            session_token: None,
        };
        let app = upstream();
        let floor = allow_all();
        for (what, ext_authz, server) in [
            ("envoy without ext_authz", false, bound.authorizer.port()),
            ("envoy with ext_authz", true, bound.authorizer.port()),
            ("envoy with ext_authz to a server that allows all", true, floor),
        ] {
            let port = free_port();
            let _envoy = start_envoy(dir.path(), port, app, server, ext_authz);
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "envoy did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            run(port, &alice, rate, 1).await;
            let latencies = run(port, &alice, rate, seconds).await;
            report(what, &latencies, rate);
        }
        let iamd = bound.authorizer.port();
        run_direct(iamd, 10_000, &alice, rate, 1).await;
        report("iamd Check alone, no Envoy", &run_direct(iamd, 10_000, &alice, rate, seconds).await, rate);
    });
}
