//! Configuration of `iamd serve`: defaults, overridden by a TOML file, overridden by environment
//! variables, overridden by flags. (Flags and environment variables are merged by the command
//! line parser; this module merges the file beneath them.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:50052";
pub const DEFAULT_QUERY_LISTEN: &str = "127.0.0.1:50053";
pub const DEFAULT_DATA: &str = "iamd-data";
pub const DEFAULT_ACCOUNT: &str = "111122223333";
/// One thread serving requests: see `FileConfig::worker_threads`.
pub const DEFAULT_WORKER_THREADS: usize = 1;

/// The configuration file, every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// The AWS Query API (IAM and STS for the aws CLI and SDKs).
    pub query_listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub bundle: Option<PathBuf>,
    pub account: Option<String>,
    /// Milliseconds to wait after the last change to a bundle before reloading it.
    pub reload_debounce_ms: Option<u64>,
    /// Threads serving the Authorizer API, each with its connections to itself (see
    /// `server::lanes`); by default one, the main thread, which also serves the admin and Query
    /// APIs. A sidecar shares its node with the application it guards, and on a node short of
    /// cores one thread answers faster than two that compete with the application (the README's
    /// performance section has the figures). Raise it for a sidecar that serves many callers,
    /// over several connections, on a node with cores to spare.
    pub worker_threads: Option<usize>,
    pub limits: Option<LimitsFile>,
    pub audit: Option<AuditFile>,
    pub log: Option<LogFile>,
    pub telemetry: Option<TelemetryFile>,
    pub credentials: Option<CredentialsFile>,
    pub tls: Option<TlsFile>,
}

/// TLS for every listener; without it the admin and Query listeners must be on loopback.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set, clients must present a certificate chaining to these CAs (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for a new certificate (default 10 s).
    pub reload_interval_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    /// The master key file (one base64 key per line, the first seals). Created with one new key
    /// if missing. `IAMD_MASTER_KEYS` (the same lines, or comma-separated) wins over it.
    pub master_key_file: Option<PathBuf>,
    /// Recent signatures remembered to refuse a replayed request; 0 accepts replays within the
    /// 15 minutes a signature is valid, as AWS does.
    pub replay_cache_entries: Option<usize>,
    /// Where to write the root's access key when iamd creates it at first start, instead of
    /// printing it on standard output.
    pub root_credentials_file: Option<PathBuf>,
    /// OpenID Connect providers trusted for AssumeRoleWithWebIdentity.
    #[serde(default)]
    pub oidc: Vec<crate::credentials::oidc::ProviderConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryFile {
    /// OTLP/gRPC collector, such as `http://127.0.0.1:4317`.
    pub otlp_endpoint: Option<String>,
    pub trace_decisions: Option<bool>,
    pub metrics_interval_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub request_timeout_ms: Option<u64>,
    pub concurrency: Option<usize>,
    pub concurrency_per_connection: Option<usize>,
    /// HTTP/2 streams a client may open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// by default `concurrency_per_connection`, so that a busy client waits for a stream instead
    /// of being refused. Below 100, the first requests of a new connection may still be refused:
    /// clients assume 100 until the server's settings reach them.
    pub max_concurrent_streams: Option<u32>,
    pub batch_size: Option<usize>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub enabled: Option<bool>,
    pub path: Option<PathBuf>,
    pub max_bytes: Option<u64>,
    pub keep: Option<usize>,
    pub buffer: Option<usize>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `text` or `json`.
    pub format: Option<String>,
}

/// Why the configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("configuration `{path}` is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })
    }
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub query_listen: SocketAddr,
    pub data: PathBuf,
    /// `None`: the embedded sample bundle.
    pub bundle: Option<PathBuf>,
    pub account: String,
    pub reload_debounce: Duration,
    pub worker_threads: usize,
    pub request_timeout: Duration,
    pub concurrency: usize,
    pub concurrency_per_connection: usize,
    pub max_concurrent_streams: u32,
    pub batch_size: usize,
    /// `None` disables the audit log.
    pub audit: Option<crate::audit::AuditConfig>,
    pub telemetry: crate::telemetry::TelemetryConfig,
    pub master_keys: MasterKeys,
    pub replay_cache_entries: usize,
    pub root_credentials_file: Option<PathBuf>,
    pub oidc_providers: Vec<crate::credentials::oidc::ProviderConfig>,
    /// `None`: plain TCP, allowed only on loopback for the admin and Query listeners.
    pub tls: Option<crate::server::tls::TlsFiles>,
}

/// Where the master keys come from.
#[derive(Clone)]
pub enum MasterKeys {
    /// The keys themselves, from `IAMD_MASTER_KEYS`.
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeys::Inline(_) => f.write_str("Inline(..)"),
            MasterKeys::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub query_listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub bundle: Option<PathBuf>,
    pub account: Option<String>,
    pub no_audit: bool,
    pub otlp_endpoint: Option<String>,
    /// `IAMD_MASTER_KEYS`.
    pub master_keys: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub root_credentials_file: Option<PathBuf>,
}

impl Config {
    pub fn resolve(file: FileConfig, overrides: Overrides) -> Result<Config, ConfigError> {
        let invalid =
            |message: String| ConfigError::Invalid { path: PathBuf::from("(configuration)"), message };
        let data = overrides.data.or(file.data).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
        let account = overrides.account.or(file.account).unwrap_or_else(|| DEFAULT_ACCOUNT.to_string());
        if !crate::eval::principal::is_account_id(&account) {
            return Err(invalid(format!("account `{account}` is not a 12-digit account id")));
        }
        let limits = file.limits.unwrap_or_default();
        let concurrency_per_connection = limits.concurrency_per_connection.unwrap_or(1_024);
        let audit_file = file.audit.unwrap_or_default();
        let audit =
            (!overrides.no_audit && audit_file.enabled.unwrap_or(true)).then(|| crate::audit::AuditConfig {
                path: audit_file.path.unwrap_or_else(|| data.join("audit.jsonl")),
                max_bytes: audit_file.max_bytes.unwrap_or(64 << 20),
                keep: audit_file.keep.unwrap_or(3),
                buffer: audit_file.buffer.unwrap_or(65_536),
            });
        let json_logs = match file.log.and_then(|l| l.format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(invalid(format!("log format `{other}` is unknown: expected `text` or `json`")));
            }
        };
        let credentials = file.credentials.unwrap_or_default();
        let master_keys =
            match (overrides.master_keys, overrides.master_key_file.or(credentials.master_key_file)) {
                (Some(keys), _) => MasterKeys::Inline(keys),
                (None, Some(path)) => MasterKeys::File(path),
                (None, None) => MasterKeys::File(data.with_extension("keys")),
            };
        let telemetry_file = file.telemetry.unwrap_or_default();
        let telemetry = crate::telemetry::TelemetryConfig {
            otlp_endpoint: overrides.otlp_endpoint.or(telemetry_file.otlp_endpoint),
            trace_decisions: telemetry_file.trace_decisions.unwrap_or(false),
            metrics_interval: Duration::from_millis(telemetry_file.metrics_interval_ms.unwrap_or(10_000)),
            json_logs,
        };
        // The parse of constant defaults cannot fail.
        let default_addr = |text: &str| text.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        Ok(Config {
            listen: overrides.listen.or(file.listen).unwrap_or_else(|| default_addr(DEFAULT_LISTEN)),
            admin_listen: overrides
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| default_addr(DEFAULT_ADMIN_LISTEN)),
            query_listen: overrides
                .query_listen
                .or(file.query_listen)
                .unwrap_or_else(|| default_addr(DEFAULT_QUERY_LISTEN)),
            data,
            bundle: overrides.bundle.or(file.bundle),
            account,
            reload_debounce: Duration::from_millis(file.reload_debounce_ms.unwrap_or(300)),
            worker_threads: match file.worker_threads {
                Some(0) => return Err(invalid("worker_threads must be at least 1".into())),
                threads => threads.unwrap_or(DEFAULT_WORKER_THREADS),
            },
            request_timeout: Duration::from_millis(limits.request_timeout_ms.unwrap_or(5_000)),
            concurrency: limits.concurrency.unwrap_or(4_096),
            concurrency_per_connection,
            max_concurrent_streams: match limits.max_concurrent_streams {
                Some(0) => return Err(invalid("limits.max_concurrent_streams must be at least 1".into())),
                Some(streams) => streams,
                None => u32::try_from(concurrency_per_connection).unwrap_or(u32::MAX),
            },
            batch_size: limits.batch_size.unwrap_or(1_000),
            audit,
            telemetry,
            master_keys,
            replay_cache_entries: credentials.replay_cache_entries.unwrap_or(1_000_000),
            root_credentials_file: overrides.root_credentials_file.or(credentials.root_credentials_file),
            oidc_providers: credentials.oidc,
            tls: file.tls.map(|tls| crate::server::tls::TlsFiles {
                cert: tls.cert_file,
                key: tls.key_file,
                client_ca: tls.client_ca_file,
                reload_interval: Duration::from_millis(tls.reload_interval_ms.unwrap_or(10_000).max(100)),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:6000\"\nadmin_listen = \"127.0.0.1:6001\"\naccount = \"444455556666\"\n[audit]\nenabled = false\n",
        )
        .unwrap();
        let overrides = Overrides { listen: Some("127.0.0.1:7000".parse().unwrap()), ..Overrides::default() };
        let config = Config::resolve(file, overrides).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.admin_listen.port(), 6001);
        assert_eq!(config.account, "444455556666");
        assert!(config.audit.is_none());
        assert_eq!(config.data, PathBuf::from(DEFAULT_DATA));
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("listn = \"127.0.0.1:1\"").is_err());
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    /// The configuration example in the README is a valid configuration.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("the README shows a TOML example") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("the example is closed");
        let file: FileConfig = toml::from_str(&readme[start..end]).unwrap_or_else(|e| panic!("{e}"));
        let config = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(config.worker_threads, 2);
        assert_eq!(config.telemetry.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(config.audit.unwrap().keep, 3);
    }
}
