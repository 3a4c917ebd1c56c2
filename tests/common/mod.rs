//! A real `iamd serve` process on loopback ports, with its own data directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iamd::client::SigningChannel;
use iamd::credentials::sigv4::SigningCredentials;
use iamd::proto::{admin_client::AdminClient, authorizer_client::AuthorizerClient, sts_client::StsClient};
use tonic::transport::Channel;

pub struct Sidecar {
    pub child: Child,
    pub authorizer: SocketAddr,
    pub admin: SocketAddr,
    /// The AWS Query API (the endpoint the aws CLI and boto3 are pointed at).
    pub query: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The root's access key, written at the data directory's first start.
    pub root: SigningCredentials,
}

fn address_after(line: &str, key: &str) -> Option<SocketAddr> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()?.parse().ok()
}

/// An `iamd serve` that exited instead of serving.
#[derive(Debug)]
pub struct Exited {
    pub status: std::process::ExitStatus,
    pub log: Vec<String>,
}

impl Sidecar {
    /// Starts `iamd serve` on ephemeral loopback ports and waits until it serves. The master
    /// key and the root's credentials are kept beside the store, in `data`.
    pub fn start(data: &Path, bundle: Option<&Path>, extra: &[&str]) -> Sidecar {
        Sidecar::try_start(data, bundle, extra, None)
            .unwrap_or_else(|exited| panic!("iamd did not start: {exited:#?}"))
    }

    /// Starts `iamd serve` and waits until it serves or exits. With `file_size_limit` (`ulimit
    /// -f`), a write that would make any file longer than that many bytes fails with EFBIG, as a
    /// write to a full disk fails with ENOSPC.
    pub fn try_start(
        data: &Path,
        bundle: Option<&Path>,
        extra: &[&str],
        file_size_limit: Option<u64>,
    ) -> Result<Sidecar, Exited> {
        let iamd = env!("CARGO_BIN_EXE_iamd");
        let mut command = match file_size_limit {
            None => Command::new(iamd),
            Some(bytes) => {
                // POSIX `ulimit -f` counts 512-byte blocks; `exec` keeps the process id iamd's.
                let mut command = Command::new("sh");
                command
                    .args(["-c", "ulimit -f \"$0\" && exec \"$@\""])
                    .arg((bytes / 512).to_string())
                    .arg(iamd);
                command
            }
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--query-listen", "127.0.0.1:0", "--data"])
            .arg(data.join("store"))
            .arg("--master-key-file")
            .arg(data.join("master.keys"))
            .arg("--root-credentials-file")
            .arg(data.join("root.env"));
        if let Some(bundle) = bundle {
            command.arg("--bundle").arg(bundle);
        }
        command.args(extra).env("IAMD_LOG", "info").stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("iamd starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                if line.contains("iamd is serving") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            // Standard error closed: the process is exiting.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                return Err(Exited { status, log: log.lock().unwrap().clone() });
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("iamd did not start: {:#?}", log.lock().unwrap());
            }
        };
        let authorizer = address_after(&line, "authorizer=").expect("authorizer address in the log");
        let admin = address_after(&line, "admin=").expect("admin address in the log");
        let query = address_after(&line, "query=").expect("query API address in the log");
        let root =
            std::fs::read_to_string(data.join("root.env")).expect("the root's credentials were written");
        let root = iamd::client::credentials_from_file(&root).expect("the credentials file holds a key");
        Ok(Sidecar { child, authorizer, admin, query, log, root })
    }

    /// The process id of `iamd serve`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The URL to give the aws CLI and boto3 as `--endpoint-url`.
    pub fn query_url(&self) -> String {
        format!("http://{}", self.query)
    }

    pub async fn authorizer(&self) -> AuthorizerClient<Channel> {
        AuthorizerClient::connect(format!("http://{}", self.authorizer)).await.expect("connects")
    }

    /// The admin API, signed as the root.
    pub async fn admin(&self) -> AdminClient<SigningChannel> {
        self.admin_as(self.root.clone()).await
    }

    pub async fn admin_as(&self, credentials: SigningCredentials) -> AdminClient<SigningChannel> {
        AdminClient::new(self.signed(credentials, "iam").await)
    }

    pub async fn sts_as(&self, credentials: SigningCredentials) -> StsClient<SigningChannel> {
        StsClient::new(self.signed(credentials, "sts").await)
    }

    /// The console sign-in service, which is not signed.
    pub async fn console(&self) -> iamd::proto::console_client::ConsoleClient<Channel> {
        iamd::proto::console_client::ConsoleClient::connect(format!("http://{}", self.admin))
            .await
            .expect("connects")
    }

    async fn signed(&self, credentials: SigningCredentials, service: &'static str) -> SigningChannel {
        SigningChannel::connect(&format!("http://{}", self.admin), credentials, service)
            .await
            .expect("connects")
    }

    pub fn log_contains(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Waits up to `timeout` for a log line containing `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a bundle directory from `(relative path, contents)` pairs.
pub fn write_bundle(dir: &Path, files: &[(&str, String)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Points the symbolic link `link` at `target` atomically, as Kubernetes does for ConfigMaps.
pub fn swap_link(link: &Path, target: &Path) {
    let temporary = link.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary).unwrap();
    std::fs::rename(&temporary, link).unwrap();
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// The Python of `target/python`, with botocore and pyotp (installed on first use by
/// `tests/python/setup.sh`, which `.ci/run` also runs).
pub fn python() -> PathBuf {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let status = Command::new("bash").arg(root.join("tests/python/setup.sh")).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "cannot install the Python packages the tests use (tests/python/requirements.txt): \
                 python3 with venv and access to PyPI are needed"
            );
            root.join("target/python/bin/python")
        })
        .clone()
}

/// Runs a script of `tests/python` with `input` on standard input; returns its output lines.
pub fn run_python(script: &str, input: &str) -> Vec<String> {
    use std::io::Write as _;
    let mut child = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{script} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect()
}

/// Signs `requests` with botocore and returns them by name.
pub fn botocore_sign(
    credentials: &SigningCredentials,
    requests: serde_json::Value,
) -> std::collections::HashMap<String, iamd::proto::SignedRequest> {
    let input = serde_json::json!({
        "credentials": {
            "access_key_id": credentials.access_key_id,
            "secret_access_key": credentials.secret_access_key,
            "session_token": credentials.session_token,
        },
        "requests": requests,
    });
    run_python("sign.py", &input.to_string())
        .iter()
        .map(|line| {
            let signed: serde_json::Value = serde_json::from_str(line).unwrap();
            let request = iamd::proto::SignedRequest {
                method: signed["method"].as_str().unwrap().into(),
                path: signed["path"].as_str().unwrap().into(),
                query: signed["query"].as_str().unwrap().into(),
                headers: signed["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| iamd::proto::Header {
                        name: h[0].as_str().unwrap().into(),
                        value: h[1].as_str().unwrap().into(),
                    })
                    .collect(),
                payload: Some(iamd::proto::signed_request::Payload::Body(
                    signed["body"].as_str().unwrap().as_bytes().to_vec(),
                )),
                source_ip: "192.0.2.10".into(),
                secure_transport: true,
            };
            (signed["name"].as_str().unwrap().to_string(), request)
        })
        .collect()
}

impl Sidecar {
    /// Creates user `name` with the managed policies `policy_arns` attached and an access key;
    /// returns the key's credentials.
    pub async fn user_with_key(&self, name: &str, policy_arns: &[&str]) -> SigningCredentials {
        use iamd::proto;
        let mut root = self.admin().await;
        root.create_user(proto::CreateUserRequest { user_name: name.into(), ..Default::default() })
            .await
            .unwrap();
        for arn in policy_arns {
            root.attach_user_policy(attachment(name, arn)).await.unwrap();
        }
        let key = root
            .create_access_key(proto::AccessKeyOwner { user_name: name.into(), account_id: String::new() })
            .await
            .unwrap()
            .into_inner();
        SigningCredentials {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            session_token: None,
        }
    }
}

/// An `Authorize` request for a principal ARN, without context.
pub fn request(principal: &str, action: &str, resource: &str) -> iamd::proto::AuthorizeRequest {
    iamd::proto::AuthorizeRequest {
        principal: principal.into(),
        action: action.into(),
        resource: resource.into(),
        ..Default::default()
    }
}

pub fn decision(response: &iamd::proto::AuthorizeResponse) -> iamd::proto::Decision {
    iamd::proto::Decision::try_from(response.decision).unwrap()
}

pub fn create_user(name: &str) -> iamd::proto::CreateUserRequest {
    iamd::proto::CreateUserRequest { user_name: name.into(), ..Default::default() }
}

/// Attaches the managed policy `policy_arn` to user `name` of the caller's account.
pub fn attachment(name: &str, policy_arn: &str) -> iamd::proto::AttachmentRequest {
    iamd::proto::AttachmentRequest {
        name: name.into(),
        policy_arn: policy_arn.into(),
        account_id: String::new(),
    }
}

pub fn entity(name: &str) -> iamd::proto::EntityRequest {
    iamd::proto::EntityRequest { name: name.into(), account_id: String::new() }
}
