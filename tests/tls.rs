//! TLS on every listener, with certificates from an independent X.509 implementation (Python's
//! cryptography): mutual TLS required, plain TCP refused, a rotated certificate served without a
//! restart; and an admin listener off loopback refused without TLS.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Sidecar, run_python, temp_dir};
use iamd::client::SigningChannel;
use iamd::proto::{self, admin_client::AdminClient, authorizer_client::AuthorizerClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// A client that trusts `ca` and, when `client` is set, presents the client certificate.
fn client_tls(dir: &Path, ca: &str, client: bool) -> ClientTlsConfig {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(dir, ca))).domain_name("localhost");
    if client {
        tls = tls.identity(Identity::from_pem(read(dir, "client.pem"), read(dir, "client.key")));
    }
    tls
}

/// Asks the Authorizer on `port` about one request, over TLS configured by `tls`.
async fn authorize(port: u16, tls: Option<ClientTlsConfig>) -> Result<proto::AuthorizeResponse, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{port}")).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    AuthorizerClient::new(channel)
        .authorize(proto::AuthorizeRequest {
            principal: "arn:aws:iam::111122223333:user/nobody".into(),
            action: "s3:GetObject".into(),
            resource: "arn:aws:s3:::reports/q1.csv".into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| format!("call: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_requires_mutual_tls_and_serves_a_rotated_certificate() {
    let data = temp_dir();
    let pki = data.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    run_python("certs.py", &serde_json::json!({"dir": pki}).to_string());
    let config = data.path().join("iamd.toml");
    std::fs::write(
        &config,
        format!(
            // Two serving threads: connections alternate between them, so each runs handshakes.
            "worker_threads = 2\n[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nreload_interval_ms = 200\n",
            pki.join("server.pem"),
            pki.join("server.key"),
            pki.join("ca.pem")
        ),
    )
    .unwrap();
    let sidecar = Sidecar::start(data.path(), None, &["--config", config.to_str().unwrap()]);
    let port = sidecar.authorizer.port();

    let answer = authorize(port, Some(client_tls(&pki, "ca.pem", true))).await.expect("mutual TLS works");
    assert_eq!(proto::Decision::try_from(answer.decision).unwrap(), proto::Decision::ImplicitDeny);
    let without_certificate = authorize(port, Some(client_tls(&pki, "ca.pem", false))).await;
    assert!(
        without_certificate.is_err(),
        "a client without a certificate is refused: {without_certificate:?}"
    );
    let plain = authorize(port, None).await;
    assert!(plain.is_err(), "plain TCP is refused: {plain:?}");

    // The admin API over TLS, signed as usual.
    let endpoint = format!("https://localhost:{}", sidecar.admin.port());
    let channel = SigningChannel::connect_with(
        &endpoint,
        sidecar.root.clone(),
        "iam",
        Some(client_tls(&pki, "ca.pem", true)),
    )
    .await
    .unwrap();
    let users =
        AdminClient::new(channel).list_users(proto::ListRequest::default()).await.unwrap().into_inner();
    assert!(users.users.is_empty());

    // The Query API over TLS: an unsigned call is answered, in AWS's XML, only inside TLS.
    let mut identity = read(&pki, "client.pem");
    identity.extend(read(&pki, "client.key"));
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&read(&pki, "ca.pem")).unwrap())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let url =
        format!("https://localhost:{}/?Action=GetCallerIdentity&Version=2011-06-15", sidecar.query.port());
    let response = https.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("<Code>MissingAuthenticationToken</Code>"));

    // Rotation: the files are replaced (key first, as a deploy tool might) and the next
    // connections get the new certificate, with no restart.
    std::fs::copy(pki.join("server2.key"), pki.join("server.key")).unwrap();
    std::fs::copy(pki.join("server2.pem"), pki.join("server.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while authorize(port, Some(client_tls(&pki, "ca2.pem", true))).await.is_err() {
        assert!(Instant::now() < deadline, "the rotated certificate was not served within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = authorize(port, Some(client_tls(&pki, "ca.pem", true))).await;
    assert!(old.is_err(), "the old certificate is no longer served: {old:?}");
    assert!(sidecar.log_contains("TLS certificate reloaded"));
}

#[test]
fn the_admin_listener_is_refused_off_loopback_without_tls() {
    let data = temp_dir();
    let output = Command::new(env!("CARGO_BIN_EXE_iamd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--query-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data.path().join("store"))
        .arg("--master-key-file")
        .arg(data.path().join("master.keys"))
        .arg("--root-credentials-file")
        .arg(data.path().join("root.env"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "iamd must not start: {stderr}");
    assert!(
        stderr.contains("refusing to serve the admin API on 0.0.0.0:0 without TLS")
            && stderr.contains("[tls]"),
        "{stderr}"
    );
}

#[test]
fn the_aws_cli_calls_the_query_api_over_tls() {
    let data = temp_dir();
    let pki = data.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    run_python("certs.py", &serde_json::json!({"dir": pki}).to_string());
    let config = data.path().join("iamd.toml");
    let tls =
        format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\n", pki.join("server.pem"), pki.join("server.key"));
    std::fs::write(&config, tls).unwrap();
    let sidecar = Sidecar::start(data.path(), None, &["--config", config.to_str().unwrap()]);
    let endpoint = format!("https://localhost:{}", sidecar.query.port());
    let output = Command::new(common::python())
        .args(["-m", "awscli", "sts", "get-caller-identity", "--output", "json", "--endpoint-url", &endpoint])
        .arg("--ca-bundle")
        .arg(pki.join("ca.pem"))
        .env_clear()
        .env("HOME", data.path())
        .env("AWS_ACCESS_KEY_ID", &sidecar.root.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &sidecar.root.secret_access_key)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let identity: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(identity["Arn"], "arn:aws:iam::111122223333:root", "{identity}");
}
