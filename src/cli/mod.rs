//! Commands that talk to a running sidecar, and `serve` itself.

pub mod admin;
pub mod bench;
pub mod sts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::{Value, json};
use tonic::transport::Channel;

use iamd::config::{Config, FileConfig, Overrides};
use iamd::proto::{self, authorizer_client::AuthorizerClient};
use iamd::telemetry::Telemetry;

#[derive(Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and environment variables override it
    #[arg(long, env = "IAMD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the Authorizer API [default: 127.0.0.1:50051]
    #[arg(long, env = "IAMD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address of the Admin API [default: 127.0.0.1:50052]
    #[arg(long, env = "IAMD_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Address of the AWS Query API for the aws CLI and SDKs [default: 127.0.0.1:50053]
    #[arg(long, env = "IAMD_QUERY_LISTEN", value_name = "ADDR")]
    query_listen: Option<SocketAddr>,
    /// sled data directory [default: ./iamd-data]
    #[arg(long, env = "IAMD_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Policy bundle: a directory or a .tar.gz [default: the embedded sample bundle]
    #[arg(long, env = "IAMD_BUNDLE", value_name = "PATH")]
    bundle: Option<PathBuf>,
    /// Default account of admin calls [default: 111122223333]
    #[arg(long, env = "IAMD_ACCOUNT", value_name = "ID")]
    account: Option<String>,
    /// Do not write the audit log
    #[arg(long)]
    no_audit: bool,
    /// Export traces and metrics to this OTLP/gRPC collector (off by default)
    #[arg(long, env = "IAMD_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Master key file: base64 keys, one per line, the first seals [default: DATA.keys,
    /// created if missing]. The keys themselves may instead be given in IAMD_MASTER_KEYS.
    #[arg(long, env = "IAMD_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Write the root's access key, when it is created at first start, to this new file
    /// (readable by its owner only) instead of printing it
    #[arg(long, env = "IAMD_ROOT_CREDENTIALS_FILE", value_name = "FILE")]
    root_credentials_file: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let overrides = Overrides {
        listen: args.listen,
        admin_listen: args.admin_listen,
        query_listen: args.query_listen,
        data: args.data,
        bundle: args.bundle,
        account: args.account,
        no_audit: args.no_audit,
        otlp_endpoint: args.otlp_endpoint,
        // Only from the environment: a flag would show the keys in the process list.
        master_keys: std::env::var("IAMD_MASTER_KEYS").ok().filter(|keys| !keys.trim().is_empty()),
        master_key_file: args.master_key_file,
        root_credentials_file: args.root_credentials_file,
    };
    let config = Config::resolve(file, overrides)?;
    // The main thread runs everything but the Authorizer API's extra serving threads, which
    // `server::run` starts (see `server::lanes`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let telemetry = Telemetry::init(&config.telemetry)?;
        // Before anything is written: the master key file, the data directory, the audit log.
        survive_file_size_limit();
        let result = iamd::server::run(config, shutdown_signal(), |_| {}).await;
        // Exporting what is pending waits for the collector, for up to its export timeout per
        // signal: a hung collector must not hold up the exit. The exporters' connections run on
        // this runtime, so it waits without blocking it.
        let exported = tokio::task::spawn_blocking(move || telemetry.shutdown());
        if tokio::time::timeout(TELEMETRY_EXPORT_WAIT, exported).await.is_err() {
            tracing::warn!("the OpenTelemetry collector did not take the last spans and metrics in time");
        }
        Ok(result?)
    })
}

/// How long stopping waits for the last spans and metrics to be exported.
const TELEMETRY_EXPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// SIGXFSZ, which neither std nor tokio names: 31 on MIPS Linux, 25 everywhere else iamd runs.
#[cfg(unix)]
const SIGXFSZ: i32 = if cfg!(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6"
)) {
    31
} else {
    25
};

/// A write past the file size limit (`ulimit -f`, RLIMIT_FSIZE, as a container runtime may
/// set) raises SIGXFSZ, whose default action kills the process: the sidecar would vanish with
/// every decision it serves. Handled, the write fails with EFBIG like a write to a full disk:
/// admin writes are refused with an error, audit records are counted as dropped, and decisions
/// go on from memory.
fn survive_file_size_limit() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::from_raw(SIGXFSZ)) {
            Ok(mut exceeded) => {
                tokio::spawn(async move {
                    if exceeded.recv().await.is_some() {
                        tracing::warn!(
                            "a write reached the file size limit (ulimit -f); writes past it fail"
                        );
                    }
                    // Keep receiving: the handler stays installed, and the stream is drained.
                    while exceeded.recv().await.is_some() {}
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGXFSZ; a file size limit will stop iamd"),
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Args)]
pub struct CheckArgs {
    /// The Authorizer API address
    #[arg(long, env = "IAMD_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    #[arg(long)]
    principal: String,
    #[arg(long)]
    action: String,
    #[arg(long, default_value = "*")]
    resource: String,
    #[arg(long, default_value = "")]
    resource_account: String,
    /// KEY=VALUE; repeat a key for a multivalued key
    #[arg(long, value_name = "KEY=VALUE")]
    context: Vec<String>,
    #[arg(long)]
    explain: bool,
    /// On a deny, also print the encoded authorization message (for
    /// `aws sts decode-authorization-message`)
    #[arg(long)]
    encode_message: bool,
}

pub async fn check(args: CheckArgs) -> Result<Value> {
    let mut context: HashMap<String, proto::ContextValues> = HashMap::new();
    for entry in &args.context {
        let (key, value) =
            entry.split_once('=').with_context(|| format!("`--context {entry}` must be KEY=VALUE"))?;
        context
            .entry(key.to_string())
            .or_default()
            .values
            .push(proto::ContextValue { kind: Some(proto::context_value::Kind::String(value.to_string())) });
    }
    let channel = connect(&args.endpoint).await?;
    let response = AuthorizerClient::new(channel)
        .authorize(proto::AuthorizeRequest {
            principal: args.principal,
            action: args.action,
            resource: args.resource,
            resource_account: args.resource_account,
            context,
            explain: args.explain,
            signed_request: None,
            encode_authorization_message: args.encode_message,
        })
        .await?
        .into_inner();
    let decision = match proto::Decision::try_from(response.decision) {
        Ok(proto::Decision::Allow) => "Allow",
        Ok(proto::Decision::ImplicitDeny) => "ImplicitDeny",
        Ok(proto::Decision::ExplicitDeny) => "ExplicitDeny",
        _ => "Unspecified",
    };
    let mut output =
        json!({"decision": decision, "revision": response.revision, "request_id": response.request_id});
    if !response.encoded_authorization_message.is_empty() {
        output["encoded_authorization_message"] = response.encoded_authorization_message.into();
    }
    if let Some(e) = response.explanation {
        output["explanation"] = json!({
            "deciding_layer": e.deciding_layer,
            "reason": e.reason,
            "matched_statements": e.matched_statements.iter().map(|m| json!({
                "layer": m.layer, "policy": m.policy, "statement": m.statement, "effect": m.effect})).collect::<Vec<_>>(),
        });
    }
    Ok(output)
}

/// Prints a gRPC error the way the aws CLI prints AWS errors, when it carries an AWS code.
pub fn describe_error(error: &anyhow::Error, operation: &str) -> String {
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => match status.metadata().get("iamd-error-code").and_then(|v| v.to_str().ok()) {
            Some(code) => {
                let message = status.message().strip_prefix(&format!("{code}: ")).unwrap_or(status.message());
                format!("An error occurred ({code}) when calling the {operation} operation: {message}")
            }
            None => format!("{} ({:?})", status.message(), status.code()),
        },
        None => format!("{error:#}"),
    }
}

/// A channel to `endpoint`; `https://` uses the TLS settings of the environment
/// (`IAMD_CA_FILE`, and `IAMD_CLIENT_CERT_FILE` with `IAMD_CLIENT_KEY_FILE` for mutual TLS).
pub async fn connect(endpoint: &str) -> Result<Channel> {
    let mut builder = Channel::from_shared(endpoint.to_string())
        .with_context(|| format!("`{endpoint}` is not a valid endpoint URL"))?;
    if endpoint.starts_with("https://") {
        builder = builder.tls_config(iamd::client::tls_from_env()?)?;
    }
    builder.connect().await.with_context(|| format!("cannot connect to iamd at {endpoint}"))
}
