//! AssumeRoleWithWebIdentity end to end: OpenID Connect tokens issued by PyJWT, verified
//! against the provider's keys from a file and from a URL, and decided by the role's trust
//! policy on the token's audience and subject.

mod common;

use std::io::{Read as _, Write as _};

use common::{Sidecar, run_python, temp_dir};
use iamd::credentials::sigv4::SigningCredentials;
use iamd::proto;
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";

fn error_code(status: &tonic::Status) -> String {
    status.metadata().get("iamd-error-code").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// Runs PyJWT: the provider's JWKS, then one token per claims object.
fn issue(key_file: &std::path::Path, kid: &str, tokens: Value) -> (String, Vec<String>) {
    let lines =
        run_python("oidc.py", &json!({"key_file": key_file, "kid": kid, "tokens": tokens}).to_string());
    (lines[0].clone(), lines[1..].to_vec())
}

/// Serves `body` to every HTTP request on a loopback port, until the test ends.
fn serve_jwks(body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{address}/.well-known/jwks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_assume_roles_their_trust_policies_allow() {
    let dir = temp_dir();
    let claims =
        |iss: &str, aud: &str, sub: &str, exp: i64| json!({"iss": iss, "aud": aud, "sub": sub, "exp": exp});
    let file_issuer = "https://token.example.com";
    let url_issuer = "https://idp.example.org/realms/main";
    let (file_jwks, file_tokens) = issue(
        &dir.path().join("file.pem"),
        "k1",
        json!([
            claims(file_issuer, "sts.amazonaws.com", "repo:acme/app:ref:refs/heads/main", 600),
            claims(file_issuer, "sts.amazonaws.com", "repo:evil/app:ref:refs/heads/main", 600),
            claims(file_issuer, "someone-else", "repo:acme/app:ref:refs/heads/main", 600),
            claims(file_issuer, "sts.amazonaws.com", "repo:acme/app:ref:refs/heads/main", -600),
            claims("https://unknown.example.net", "sts.amazonaws.com", "repo:acme/app", 600),
        ]),
    );
    // Tokens signed by a key the provider never published.
    let (_, forged) = issue(
        &dir.path().join("other.pem"),
        "k1",
        json!([claims(file_issuer, "sts.amazonaws.com", "repo:acme/app:ref:x", 600)]),
    );
    let (url_jwks, url_tokens) = issue(
        &dir.path().join("url.pem"),
        "k2",
        json!([claims(url_issuer, "iamd", "service-account:builder", 600)]),
    );
    std::fs::write(dir.path().join("jwks.json"), &file_jwks).unwrap();
    let jwks_url = serve_jwks(url_jwks);
    let config = dir.path().join("iamd.toml");
    std::fs::write(
        &config,
        format!(
            r#"[credentials]
[[credentials.oidc]]
issuer = "{file_issuer}"
audiences = ["sts.amazonaws.com"]
jwks_file = "{}"

[[credentials.oidc]]
issuer = "{url_issuer}"
audiences = ["iamd"]
jwks_url = "{jwks_url}"
"#,
            dir.path().join("jwks.json").display()
        ),
    )
    .unwrap();
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit", "--config", config.to_str().unwrap()]);
    let mut root = sidecar.admin().await;
    let trust = |provider: &str, conditions: Value| {
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}")},
            "Action": "sts:AssumeRoleWithWebIdentity", "Condition": conditions}})
        .to_string()
    };
    for (role, document) in [
        (
            "Deployer",
            trust(
                "token.example.com",
                json!({"StringEquals": {"token.example.com:aud": "sts.amazonaws.com"},
                       "StringLike": {"token.example.com:sub": "repo:acme/*"}}),
            ),
        ),
        (
            "Builder",
            trust(
                "idp.example.org/realms/main",
                json!({"StringEquals": {"idp.example.org/realms/main:sub": "service-account:builder"}}),
            ),
        ),
    ] {
        root.create_role(proto::CreateRoleRequest {
            role_name: role.into(),
            assume_role_policy_document: document,
            ..Default::default()
        })
        .await
        .unwrap();
    }

    // No signature: the token is the credential.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", sidecar.admin))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sts = proto::sts_client::StsClient::new(channel);
    let assume = |role: &str, token: &str| proto::AssumeRoleWithWebIdentityRequest {
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/{role}"),
        role_session_name: "ci".into(),
        web_identity_token: token.into(),
        ..Default::default()
    };
    let assumed =
        sts.assume_role_with_web_identity(assume("Deployer", &file_tokens[0])).await.unwrap().into_inner();
    assert_eq!(assumed.subject_from_web_identity_token, "repo:acme/app:ref:refs/heads/main");
    assert_eq!((assumed.audience.as_str(), assumed.provider.as_str()), ("sts.amazonaws.com", file_issuer));
    let arn = assumed.assumed_role_user.as_ref().unwrap().arn.clone();
    assert_eq!(arn, format!("arn:aws:sts::{ACCOUNT}:assumed-role/Deployer/ci"));
    let c = assumed.credentials.unwrap();
    let session = SigningCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: Some(c.session_token),
    };
    let me = sidecar.sts_as(session).await.get_caller_identity(proto::Empty {}).await.unwrap().into_inner();
    assert_eq!(me.arn, arn);

    for (name, token, code) in [
        ("another subject", &file_tokens[1], "AccessDenied"),
        ("another audience", &file_tokens[2], "InvalidIdentityToken"),
        ("expired", &file_tokens[3], "ExpiredTokenException"),
        ("unknown issuer", &file_tokens[4], "InvalidIdentityToken"),
        ("forged", &forged[0], "InvalidIdentityToken"),
    ] {
        let refused = sts.assume_role_with_web_identity(assume("Deployer", token)).await.unwrap_err();
        assert_eq!(error_code(&refused), code, "{name}: {refused:?}");
    }
    let garbage = sts.assume_role_with_web_identity(assume("Deployer", "not.a.jwt")).await.unwrap_err();
    assert_eq!(error_code(&garbage), "InvalidIdentityToken");
    // A token of one provider does not open a role trusting another.
    let crossed = sts.assume_role_with_web_identity(assume("Builder", &file_tokens[0])).await.unwrap_err();
    assert_eq!(error_code(&crossed), "AccessDenied");

    // Keys fetched from the provider's URL.
    let built =
        sts.assume_role_with_web_identity(assume("Builder", &url_tokens[0])).await.unwrap().into_inner();
    assert_eq!(built.provider, url_issuer);
}
