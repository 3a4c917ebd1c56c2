//! The sidecar process: the gRPC listeners, bundle reloads, and shutdown.
//!
//! Both listeners serve over one [`Core`]: the published snapshot (read by every decision),
//! the identity store (changed by admin calls), the bundle source and the audit log.

mod admin;
mod authenticate;
pub use authenticate::MAX_IMPORT_BODY;
mod authorizer;
mod bearer_sessions;
mod console;
mod convert;
mod ext_authz;
mod lanes;
pub mod query;
mod request_id;
mod sts;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::transport::Server;

use crate::audit::{Audit, AuditRecord};
use crate::authorize::{self, InvalidField, Query};
use crate::bundle::{Bundle, BundleSource};
use crate::config::{Config, MasterKeys};
use crate::credentials::sigv4::{AuthError, HttpRequest, Payload};
use crate::credentials::{Authenticated, Authenticator, KeyRing};
use crate::eval::Decision;
use crate::iam::Iam;
use crate::proto::{self, admin_server::AdminServer, authorizer_server::AuthorizerServer};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// How the Authorizer reads a request's typed context values (public for the request-decoding
/// fuzz target, which feeds it hostile messages).
pub use convert::context as decode_context;
pub use request_id::REQUEST_ID;

/// Why the sidecar could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the audit log: {0}")]
    Audit(std::io::Error),
    #[error("cannot watch the bundle `{path}`: {message}")]
    Watch { path: String, message: String },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot start the threads that serve the Authorizer API: {0}")]
    Threads(std::io::Error),
    #[error(
        "refusing to serve the {listener} API on {addr} without TLS: it carries credentials. Configure \
         [tls] in the configuration file, or listen on a loopback address such as 127.0.0.1"
    )]
    Insecure { listener: &'static str, addr: SocketAddr },
    #[error("the Query API server failed: {0}")]
    Query(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC reflection could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    KeyRing(#[from] crate::credentials::keyring::KeyRingError),
    #[error("cannot create the root's access key: {0}")]
    Bootstrap(String),
    #[error(transparent)]
    Provider(#[from] crate::credentials::oidc::ProviderError),
}

/// What every service shares.
pub struct Core {
    pub iam: Iam,
    pub authenticator: Authenticator,
    pub web_identity: crate::credentials::oidc::WebIdentity,
    /// Role sessions made for bearer tokens on Envoy's path.
    bearer_sessions: bearer_sessions::BearerSessions,
    pub snapshot: SharedSnapshot,
    source: BundleSource,
    audit: Audit,
    batch_size: usize,
    reloads_succeeded: AtomicU64,
    reloads_failed: AtomicU64,
    last_reload_errors: Mutex<Vec<String>>,
    reload_lock: tokio::sync::Mutex<()>,
    health: tonic_health::server::HealthReporter,
    metrics: Metrics,
}

impl Core {
    /// Decides one request against `snapshot` and audits it. A signed request is first
    /// authenticated; if that fails, the answer is a deny carrying AWS's error code.
    fn decide(
        &self,
        snapshot: &Snapshot,
        mut request: proto::AuthorizeRequest,
        request_id: String,
    ) -> Result<proto::AuthorizeResponse, InvalidField> {
        let started = std::time::Instant::now();
        let _span =
            tracing::debug_span!("authorize", principal = %request.principal, action = %request.action)
                .entered();
        let context = convert::context(std::mem::take(&mut request.context))?;
        let now = jiff::Timestamp::now();
        let authenticated = match &request.signed_request {
            None => None,
            Some(signed) => {
                if !request.principal.is_empty() {
                    return Err(InvalidField {
                        field: "principal",
                        message: "give either `principal` or `signed_request`, not both".into(),
                    });
                }
                let question = format!("{}\n{}", request.action, request.resource);
                match self.authenticate(snapshot, signed, now, &question) {
                    Ok(authenticated) => Some(authenticated),
                    Err(error) => {
                        self.metrics.decision(Decision::ImplicitDeny, started.elapsed().as_secs_f64() * 1e6);
                        return Ok(self.unauthenticated(snapshot, &request, request_id, signed, error));
                    }
                }
            }
        };
        let source_ip = match &request.signed_request {
            Some(signed) => Some(signed.source_ip.clone()).filter(|ip| !ip.is_empty()),
            None => context.get("aws:sourceip").and_then(|v| v.first()).map(|v| v.as_str().to_string()),
        };
        let verified = authenticated.as_ref().zip(request.signed_request.as_ref()).map(|(caller, signed)| {
            authorize::Verified {
                caller,
                source_ip: Some(signed.source_ip.as_str()),
                secure_transport: signed.secure_transport,
                now,
                mfa_at: None,
            }
        });
        let principal =
            authenticated.as_ref().map(|a| a.principal_arn()).unwrap_or_else(|| request.principal.clone());
        let encode = request.encode_authorization_message;
        let query = Query {
            principal: &request.principal,
            action: &request.action,
            resource: &request.resource,
            resource_account: &request.resource_account,
            context,
            explain: request.explain || encode || self.audit.enabled(),
            verified,
        };
        let answer = authorize::decide(snapshot, query)?;
        self.metrics.decision(answer.decision, started.elapsed().as_secs_f64() * 1e6);
        let encoded_authorization_message = match &answer.explanation {
            // A request refused before evaluation (an unknown principal) records no context.
            Some(explanation) if encode && !answer.decision.is_allowed() => {
                crate::authorization_message::encode(
                    self.authenticator.keyring(),
                    &principal,
                    &request.action,
                    &request.resource,
                    answer.context.as_ref().unwrap_or(&crate::eval::Context::default()),
                    explanation,
                )
            }
            _ => String::new(),
        };
        let explanation = answer.explanation.as_ref().filter(|_| request.explain || answer.refused);
        let response = proto::AuthorizeResponse {
            encoded_authorization_message,
            decision: convert::decision(answer.decision) as i32,
            revision: snapshot.revision.clone(),
            request_id: request_id.clone(),
            explanation: explanation.map(convert::explanation),
            principal: if authenticated.is_some() { principal.clone() } else { String::new() },
            authentication_error: None,
        };
        if self.audit.enabled() {
            let (reason, matched_statements) = match answer.explanation {
                Some(explanation) => (Some(explanation.reason), explanation.matched_statements),
                None => (None, Vec::new()),
            };
            self.audit.record(AuditRecord {
                event_time: now,
                event_name: "Authorize",
                request_id,
                principal,
                action: request.action,
                resource: request.resource,
                decision: answer.decision,
                matched_statements,
                reason,
                snapshot_revision: snapshot.revision.clone(),
                source_ip,
                access_key_id: authenticated.map(|a| a.access_key_id),
                error_code: None,
            });
        }
        Ok(response)
    }

    /// Verifies a signed request against the snapshot's access keys and the session keys.
    fn authenticate(
        &self,
        snapshot: &Snapshot,
        signed: &proto::SignedRequest,
        now: jiff::Timestamp,
        question: &str,
    ) -> Result<Authenticated, AuthError> {
        let headers: Vec<(String, String)> =
            signed.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
        let payload = match &signed.payload {
            Some(proto::signed_request::Payload::Body(body)) => Payload::Body(body),
            Some(proto::signed_request::Payload::PayloadSha256(hash)) => Payload::Hash(hash),
            None => Payload::Body(&[]),
        };
        let http = HttpRequest {
            method: &signed.method,
            path: &signed.path,
            query: &signed.query,
            headers: &headers,
            payload,
        };
        self.authenticator.authenticate(&snapshot.directory, &http, now, Some(question))
    }

    /// The deny for a request that could not be authenticated, audited with its error code.
    fn unauthenticated(
        &self,
        snapshot: &Snapshot,
        request: &proto::AuthorizeRequest,
        request_id: String,
        signed: &proto::SignedRequest,
        error: AuthError,
    ) -> proto::AuthorizeResponse {
        let reason = format!("the request was not authenticated: {}: {}", error.code.as_str(), error.message);
        if self.audit.enabled() {
            self.audit.record(AuditRecord {
                event_time: jiff::Timestamp::now(),
                event_name: "Authorize",
                request_id: request_id.clone(),
                action: request.action.clone(),
                resource: request.resource.clone(),
                decision: Decision::ImplicitDeny,
                reason: Some(reason.clone()),
                snapshot_revision: snapshot.revision.clone(),
                source_ip: Some(signed.source_ip.clone()).filter(|ip| !ip.is_empty()),
                error_code: Some(error.code.as_str().to_string()),
                ..AuditRecord::default()
            });
        }
        proto::AuthorizeResponse {
            decision: proto::Decision::ImplicitDeny as i32,
            revision: snapshot.revision.clone(),
            request_id,
            explanation: Some(proto::Explanation {
                deciding_layer: String::new(),
                reason,
                matched_statements: Vec::new(),
            }),
            principal: String::new(),
            authentication_error: Some(proto::AuthenticationError {
                code: error.code.as_str().to_string(),
                message: error.message,
            }),
            encoded_authorization_message: String::new(),
        }
    }

    /// Reads, compiles and publishes the bundle. On failure the last good snapshot keeps
    /// serving and the errors are returned, logged and kept for status.
    #[tracing::instrument(skip(self), fields(source = %self.source.describe()))]
    pub async fn reload(self: &Arc<Self>) -> Result<(), Vec<String>> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let source = self.source.clone();
        let current = self.snapshot.load().as_ref().map(|s| s.bundle.digest);
        let compiled = tokio::task::spawn_blocking(move || {
            let files = read_settled(&source)?;
            if Some(crate::bundle::source_digest(&files)) == current {
                return Ok(None);
            }
            let compiled = Bundle::compile(&source.describe(), &files)
                .map(Some)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect());
            drop(files);
            crate::memory::release_freed();
            compiled
        })
        .await
        .unwrap_or_else(|_| Err(vec!["bundle compilation failed unexpectedly".to_string()]));
        match compiled {
            Ok(None) => Ok(()),
            Ok(Some(bundle)) => {
                for warning in &bundle.warnings {
                    tracing::warn!("{warning}");
                }
                let revision = bundle.revision.clone();
                let started = std::time::Instant::now();
                // Re-resolving every principal holds the identity lock for up to a second at
                // large sizes: keep it off the async workers.
                let iam = self.clone();
                let bundle = Arc::new(bundle);
                if tokio::task::spawn_blocking(move || iam.iam.publish_bundle(bundle)).await.is_err() {
                    let errors = vec![format!(
                        "publishing bundle {revision} failed unexpectedly; the last good snapshot keeps serving"
                    )];
                    // The errors first: status shows them once it shows the failure.
                    set_lock(&self.last_reload_errors, errors.clone());
                    self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                    self.metrics.reload(false);
                    tracing::error!("{}", errors[0]);
                    return Err(errors);
                }
                self.reloads_succeeded.fetch_add(1, Ordering::Relaxed);
                self.metrics.reload(true);
                set_lock(&self.last_reload_errors, Vec::new());
                self.health.set_serving::<AuthorizerServer<authorizer::AuthorizerService>>().await;
                tracing::info!(
                    revision,
                    publish_ms = started.elapsed().as_millis() as u64,
                    "bundle published"
                );
                Ok(())
            }
            Err(errors) => {
                // The errors first: status shows them once it shows the failure.
                set_lock(&self.last_reload_errors, errors.clone());
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                self.metrics.reload(false);
                for error in &errors {
                    tracing::error!("bundle rejected: {error}");
                }
                tracing::error!(
                    count = errors.len(),
                    "bundle rejected; {}",
                    if self.snapshot.load().is_some() {
                        "the last good snapshot keeps serving"
                    } else {
                        "no snapshot is loaded: decisions are UNAVAILABLE"
                    }
                );
                Err(errors)
            }
        }
    }

    fn status(&self) -> proto::StatusResponse {
        let snapshot = self.snapshot.load_full();
        let counts = self.iam.counts();
        proto::StatusResponse {
            revision: snapshot.as_ref().map(|s| s.revision.clone()).unwrap_or_default(),
            bundle_revision: snapshot.as_ref().map(|s| s.bundle.revision.clone()).unwrap_or_default(),
            store_generation: snapshot.as_ref().map_or(0, |s| s.generation),
            principals: (counts.users + counts.roles) as u64,
            managed_policies: snapshot
                .as_ref()
                .map_or(0, |s| (s.bundle.managed_policy_count() + s.directory.managed_policies.len()) as u64),
            reloads_succeeded: self.reloads_succeeded.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_reload_errors: self.last_reload_errors.lock().map(|e| e.clone()).unwrap_or_default(),
            audit_records_dropped: self.audit.dropped(),
            bundle_source: self.source.describe(),
        }
    }
}

/// How often the last use of access keys is written to the store.
const LAST_USED_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

impl Core {
    fn record_last_used(&self) {
        let entries = self.authenticator.take_last_used();
        if entries.is_empty() {
            return;
        }
        if let Err(e) = self.iam.record_last_used(&entries) {
            tracing::warn!(error = %e, "could not record when access keys were last used");
        }
    }
}

/// Shows the root's new access key once: in the configured file, or on standard output (never
/// in the log, which may be shipped elsewhere).
fn show_root_credentials(
    config: &Config,
    key: &crate::iam::model::AccessKey,
    secret: &crate::credentials::Secret,
) -> Result<(), ServeError> {
    let text = format!(
        "# The root access key of account {}: the break-glass identity. Store it safely;\n\
         # iamd shows it only this once.\n\
         AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
        key.account,
        key.id,
        secret.expose()
    );
    match &config.root_credentials_file {
        Some(path) => {
            crate::credentials::keyring::write_private(path, text.as_bytes())
                .map_err(|e| ServeError::Bootstrap(format!("cannot write `{}`: {e}", path.display())))?;
            tracing::warn!(
                access_key_id = %key.id,
                path = %path.display(),
                "created the root's access key; its secret is in the file"
            );
        }
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            tracing::warn!(access_key_id = %key.id, "created the root's access key; it was printed on standard output");
        }
    }
    Ok(())
}

/// Reads of a bundle that must agree before it is compiled.
const SETTLE_READS: usize = 5;

/// Reads the bundle until two reads in a row agree: one replaced while it is read (files
/// rewritten one by one, a directory or symbolic link swapped) would otherwise be compiled half
/// old, half new. A bundle that keeps changing is left to the reload its next change brings.
fn read_settled(source: &BundleSource) -> Result<std::collections::BTreeMap<String, String>, Vec<String>> {
    let read = || source.read().map_err(|e| vec![e.to_string()]);
    let mut files = read()?;
    for _ in 1..SETTLE_READS {
        let again = read()?;
        if again == files {
            return Ok(files);
        }
        files = again;
    }
    Err(vec![format!(
        "the bundle changed each of the {SETTLE_READS} times it was read; it is read again at its next change"
    )])
}

fn set_lock<T>(lock: &Mutex<T>, value: T) {
    match lock.lock() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

/// Addresses the listeners are bound to (useful with port 0).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub authorizer: SocketAddr,
    pub admin: SocketAddr,
    pub query: SocketAddr,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Runs the sidecar until `shutdown` completes, then stops accepting, lets in-flight requests
/// finish, and flushes the audit log and the store. `ready` receives the bound addresses.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    // Refused before anything is created: credentials never cross the network in the clear.
    let tls = config.tls.clone().map(tls::Tls::load).transpose()?;
    if tls.is_none() {
        for (listener, addr) in [("admin", config.admin_listen), ("Query", config.query_listen)] {
            if !addr.ip().is_loopback() {
                return Err(ServeError::Insecure { listener, addr });
            }
        }
    }
    if let Some(tls) = &tls {
        tls.watch();
    }
    let keyring = Arc::new(match &config.master_keys {
        MasterKeys::Inline(keys) => KeyRing::parse("IAMD_MASTER_KEYS", keys)?,
        MasterKeys::File(path) => {
            let (keyring, created) = KeyRing::load_or_create(path)?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "created a new master key file; keep it apart from backups of the data \
                     directory, and back it up: without it, stored secrets cannot be opened"
                );
            }
            keyring
        }
    });
    let store = Store::open(&config.data)?;
    let snapshot: SharedSnapshot = Arc::new(ArcSwapOption::empty());
    let iam = Iam::open(store, snapshot.clone(), config.account.clone(), keyring.clone())?;
    if let Some((key, secret)) = iam.bootstrap_root().map_err(|e| ServeError::Bootstrap(e.to_string()))? {
        show_root_credentials(&config, &key, &secret)?;
    }
    let audit = Audit::start(config.audit.clone()).map_err(ServeError::Audit)?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_not_serving::<AuthorizerServer<authorizer::AuthorizerService>>().await;
    let source = match &config.bundle {
        Some(path) => BundleSource::from_path(path),
        None => BundleSource::Embedded,
    };
    let metrics = Metrics::new(snapshot.clone());
    let web_identity = crate::credentials::oidc::WebIdentity::new(config.oidc_providers.clone())?;
    web_identity.refresh_all().await;
    let core = Arc::new(Core {
        iam,
        authenticator: Authenticator::new(keyring, config.replay_cache_entries),
        web_identity,
        bearer_sessions: bearer_sessions::BearerSessions::default(),
        snapshot,
        metrics,
        source: source.clone(),
        audit,
        batch_size: config.batch_size,
        reloads_succeeded: AtomicU64::new(0),
        reloads_failed: AtomicU64::new(0),
        last_reload_errors: Mutex::new(Vec::new()),
        reload_lock: tokio::sync::Mutex::new(()),
        health: health_reporter,
    });
    // A bad bundle at start leaves decisions UNAVAILABLE until a good one arrives.
    let _ = core.reload().await;

    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(1);
    let watched = match &source {
        BundleSource::Directory(path) | BundleSource::TarGz(path) => Some(path.clone()),
        BundleSource::Embedded => None,
    };
    let (debounce, changes) = (config.reload_debounce, reload_tx.clone());
    let watch = move |path: &std::path::Path| crate::bundle::watch::watch(path, debounce, changes.clone());
    let mut _watching =
        match &watched {
            Some(path) => Some(watch(path).map_err(|e| ServeError::Watch {
                path: path.display().to_string(),
                message: e.to_string(),
            })?),
            None => None,
        };
    spawn_sighup(reload_tx);
    let reloader = core.clone();
    tokio::spawn(async move {
        while reload_rx.recv().await.is_some() {
            // Watched afresh before it is read: a bundle directory deleted and created again, or
            // a symbolic link pointed at another directory, is one the old watch does not see into.
            if let Some(path) = &watched {
                match watch(path) {
                    Ok(fresh) => _watching = Some(fresh),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch the bundle again; changes may need a SIGHUP")
                    }
                }
            }
            let _ = reloader.reload().await;
        }
    });
    if !core.web_identity.is_empty() {
        let refresher = core.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::credentials::oidc::REFRESH_INTERVAL);
            every.tick().await;
            loop {
                every.tick().await;
                refresher.web_identity.refresh_all().await;
            }
        });
    }
    let recorder = core.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(LAST_USED_INTERVAL);
        loop {
            every.tick().await;
            let core = recorder.clone();
            let _ = tokio::task::spawn_blocking(move || core.record_last_used()).await;
        }
    });

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let (authorizer_listener, authorizer_addr) = bind(config.listen).await?;
    let (admin_listener, admin_addr) = bind(config.admin_listen).await?;
    let (query_listener, query_addr) = bind(config.query_listen).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let drain = config.request_timeout + DRAIN_MARGIN;

    let limits = GrpcLimits {
        request_timeout: config.request_timeout,
        concurrency_per_connection: config.concurrency_per_connection,
        max_concurrent_streams: config.max_concurrent_streams,
    };
    // One limit for the listener, however many threads serve it.
    let authorizer_limit = Arc::new(tokio::sync::Semaphore::new(config.concurrency));
    let serve_authorizer = {
        let (core, health, reflection) = (core.clone(), health_service.clone(), reflection.clone());
        move |incoming, stop| {
            limits
                .server(authorizer_limit.clone())
                .add_service(health.clone())
                .add_service(reflection.clone())
                .add_service(AuthorizerServer::new(authorizer::AuthorizerService::new(core.clone())))
                .add_service(ext_authz::service(core.clone()))
                .serve_with_incoming_shutdown(incoming, lanes::stopped(stop))
        }
    };
    let authorizer_server = lanes::start(
        config.worker_threads,
        authorizer_listener,
        tls.clone(),
        stop_rx.clone(),
        drain,
        serve_authorizer,
    )
    .map_err(ServeError::Threads)?
    .finished();
    let admin_server = limits
        .server(Arc::new(tokio::sync::Semaphore::new(config.concurrency)))
        .layer(authenticate::AuthenticateLayer::new(core.clone()))
        .add_service(health_service)
        .add_service(reflection)
        // The signature check already bounds every body, to 1 MiB but for Import's state document.
        .add_service(
            AdminServer::new(admin::AdminService::new(core.clone()))
                .max_decoding_message_size(authenticate::MAX_IMPORT_BODY),
        )
        .add_service(proto::sts_server::StsServer::new(sts::StsService::new(core.clone())))
        .add_service(proto::console_server::ConsoleServer::new(console::ConsoleService::new(core.clone())))
        .serve_with_incoming_shutdown(
            lanes::Incoming::new(tls::accept(admin_listener, tls.clone(), tls::Protocol::Grpc)),
            lanes::stopped(stop_rx.clone()),
        );
    let query_limits = query::Limits { concurrency: config.concurrency, timeout: config.request_timeout };
    let query_connections = tls::Accepted {
        connections: tls::accept(query_listener, tls.clone(), tls::Protocol::Http1),
        local: query_addr,
    };
    let query_server =
        query::serve(query_connections, core.clone(), query_limits, lanes::stopped(stop_rx.clone()));

    tracing::info!(
        authorizer = %authorizer_addr,
        admin = %admin_addr,
        query = %query_addr,
        data = %config.data.display(),
        bundle = %source.describe(),
        startup_ms = started.elapsed().as_millis() as u64,
        "iamd is serving"
    );
    ready(Bound { authorizer: authorizer_addr, admin: admin_addr, query: query_addr });
    // The servers return once every connection has closed, and a connection that never sent a
    // request (or holds a health watch open) never does. Requests end within the request
    // timeout, so once it has passed after the signal, the connections left are closed.
    // The Authorizer's lanes close their own connections at `drain`; waiting a little longer
    // lets them finish, and their last decisions reach the audit log before it is flushed.
    let drained = async move {
        lanes::stopped(stop_rx).await;
        tokio::time::sleep(drain + LANES_CLOSE_MARGIN).await;
    };
    let servers = tokio::select! {
        results = async { tokio::join!(authorizer_server, admin_server, query_server) } => Some(results),
        () = drained => {
            tracing::warn!(drain_ms = drain.as_millis() as u64, "closing the connections still open after the requests in flight");
            None
        }
    };
    // Flush whatever happened to the servers.
    tracing::info!("stopping: flushing the audit log and the store");
    if !core.audit.flush(AUDIT_FLUSH_WAIT) {
        tracing::warn!("the audit log could not be written out before stopping: queued records are lost");
    }
    core.record_last_used();
    core.iam.flush()?;
    if let Some((a, b, c)) = servers {
        a?;
        b?;
        c.map_err(ServeError::Query)?;
    }
    Ok(())
}

/// What every gRPC listener's server enforces.
#[derive(Clone, Copy)]
struct GrpcLimits {
    request_timeout: std::time::Duration,
    concurrency_per_connection: usize,
    max_concurrent_streams: u32,
}

impl GrpcLimits {
    /// A server with these limits, `concurrency` across all its connections, load shedding
    /// past them, and request ids.
    fn server(
        self,
        concurrency: Arc<tokio::sync::Semaphore>,
    ) -> Server<
        tower::layer::util::Stack<
            request_id::RequestIdLayer,
            tower::layer::util::Stack<
                tower::limit::GlobalConcurrencyLimitLayer,
                tower::layer::util::Identity,
            >,
        >,
    > {
        Server::builder()
            .timeout(self.request_timeout)
            .concurrency_limit_per_connection(self.concurrency_per_connection)
            .max_concurrent_streams(self.max_concurrent_streams)
            .load_shed(true)
            .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(concurrency))
            .layer(request_id::RequestIdLayer)
    }
}

/// How long the process waits at shutdown, past the drain deadline, for the Authorizer's lanes.
const LANES_CLOSE_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// How long after the request timeout connections are given to close at shutdown.
const DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How long shutdown waits for the audit log to be written out (a hung disk must not stop it).
const AUDIT_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(unix)]
fn spawn_sighup(reload: mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the bundle");
                    let _ = reload.try_send(());
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with `iamd admin reload` instead")
        }
    }
}

#[cfg(not(unix))]
fn spawn_sighup(_reload: mpsc::Sender<()>) {}
