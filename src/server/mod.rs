//! The sidecar process: the gRPC listeners, bundle reloads, and shutdown.
//!
//! Both listeners serve over one [`Core`]: the published snapshot (read by every decision),
//! the identity store (changed by admin calls), the bundle source and the audit log.

mod admin;
mod authorizer;
mod convert;
mod request_id;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::audit::{Audit, AuditRecord};
use crate::authorize::{self, InvalidField, Query};
use crate::bundle::{Bundle, BundleSource};
use crate::config::Config;
use crate::iam::Iam;
use crate::proto::{self, admin_server::AdminServer, authorizer_server::AuthorizerServer};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

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
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC reflection could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// What every service shares.
pub struct Core {
    pub iam: Iam,
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
    /// Decides one request against `snapshot` and audits it.
    fn decide(
        &self,
        snapshot: &Snapshot,
        request: proto::AuthorizeRequest,
        request_id: String,
    ) -> Result<proto::AuthorizeResponse, InvalidField> {
        let started = std::time::Instant::now();
        let _span =
            tracing::debug_span!("authorize", principal = %request.principal, action = %request.action)
                .entered();
        let context = convert::context(request.context)?;
        let source_ip = context.get("aws:sourceip").and_then(|v| v.first()).map(|v| v.as_str().to_string());
        let query = Query {
            principal: &request.principal,
            action: &request.action,
            resource: &request.resource,
            resource_account: &request.resource_account,
            context,
            explain: request.explain || self.audit.enabled(),
        };
        let answer = authorize::decide(snapshot, query)?;
        self.metrics.decision(answer.decision, started.elapsed().as_secs_f64() * 1e6);
        if self.audit.enabled() {
            let explanation = answer.explanation.as_ref();
            self.audit.record(AuditRecord {
                event_time: jiff::Timestamp::now().to_string(),
                request_id: request_id.clone(),
                principal: request.principal.clone(),
                action: request.action.clone(),
                resource: request.resource.clone(),
                decision: format!("{:?}", answer.decision),
                matched_statements: explanation
                    .map(|e| {
                        e.matched_statements
                            .iter()
                            .map(|m| format!("{}:{}:{}:{}", m.layer, m.policy, m.statement, m.effect))
                            .collect()
                    })
                    .unwrap_or_default(),
                reason: explanation.map(|e| e.reason.clone()),
                snapshot_revision: snapshot.revision.clone(),
                source_ip,
            });
        }
        let explanation = answer.explanation.as_ref().filter(|_| request.explain || answer.refused);
        Ok(proto::AuthorizeResponse {
            decision: convert::decision(answer.decision) as i32,
            revision: snapshot.revision.clone(),
            request_id,
            explanation: explanation.map(convert::explanation),
        })
    }

    /// Reads, compiles and publishes the bundle. On failure the last good snapshot keeps
    /// serving and the errors are returned, logged and kept for status.
    #[tracing::instrument(skip(self), fields(source = %self.source.describe()))]
    pub async fn reload(self: &Arc<Self>) -> Result<(), Vec<String>> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let source = self.source.clone();
        let current = self.snapshot.load().as_ref().map(|s| s.bundle.digest);
        let compiled = tokio::task::spawn_blocking(move || {
            let files = source.read().map_err(|e| vec![e.to_string()])?;
            if Some(crate::bundle::source_digest(&files)) == current {
                return Ok(None);
            }
            Bundle::compile(&source.describe(), &files)
                .map(Some)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect())
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
                    self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                    self.metrics.reload(false);
                    tracing::error!("{}", errors[0]);
                    set_lock(&self.last_reload_errors, errors.clone());
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
                set_lock(&self.last_reload_errors, errors.clone());
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
            managed_policies: snapshot.as_ref().map_or(0, |s| s.bundle.managed_policy_count() as u64),
            reloads_succeeded: self.reloads_succeeded.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_reload_errors: self.last_reload_errors.lock().map(|e| e.clone()).unwrap_or_default(),
            audit_records_dropped: self.audit.dropped(),
            bundle_source: self.source.describe(),
        }
    }
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
}

/// Accepted connections with Nagle's algorithm off: a decision is one small response, and
/// delaying it for a delayed ACK costs up to 40 ms.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
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
    let store = Store::open(&config.data)?;
    let snapshot: SharedSnapshot = Arc::new(ArcSwapOption::empty());
    let iam = Iam::open(store, snapshot.clone(), config.account.clone())?;
    let audit = Audit::start(config.audit.clone()).map_err(ServeError::Audit)?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_not_serving::<AuthorizerServer<authorizer::AuthorizerService>>().await;
    let source = match &config.bundle {
        Some(path) => BundleSource::from_path(path),
        None => BundleSource::Embedded,
    };
    let metrics = Metrics::new(snapshot.clone());
    let core = Arc::new(Core {
        iam,
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
    let _watch = match &source {
        BundleSource::Directory(path) | BundleSource::TarGz(path) => {
            Some(crate::bundle::watch::watch(path, config.reload_debounce, reload_tx.clone()).map_err(
                |e| ServeError::Watch { path: path.display().to_string(), message: e.to_string() },
            )?)
        }
        BundleSource::Embedded => None,
    };
    spawn_sighup(reload_tx);
    let reloader = core.clone();
    tokio::spawn(async move {
        while reload_rx.recv().await.is_some() {
            let _ = reloader.reload().await;
        }
    });

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let (authorizer_listener, authorizer_addr) = bind(config.listen).await?;
    let (admin_listener, admin_addr) = bind(config.admin_listen).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let builder = || {
        Server::builder()
            .timeout(config.request_timeout)
            .concurrency_limit_per_connection(config.concurrency_per_connection)
            .load_shed(true)
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(config.concurrency))
            .layer(request_id::RequestIdLayer)
    };
    let authorizer_server = builder()
        .add_service(health_service.clone())
        .add_service(reflection.clone())
        .add_service(AuthorizerServer::new(authorizer::AuthorizerService::new(core.clone())))
        .serve_with_incoming_shutdown(incoming(authorizer_listener), stopped(stop_rx.clone()));
    let admin_server = builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AdminServer::new(admin::AdminService::new(core.clone())))
        .serve_with_incoming_shutdown(incoming(admin_listener), stopped(stop_rx));

    tracing::info!(
        authorizer = %authorizer_addr,
        admin = %admin_addr,
        data = %config.data.display(),
        bundle = %source.describe(),
        startup_ms = started.elapsed().as_millis() as u64,
        "iamd is serving"
    );
    ready(Bound { authorizer: authorizer_addr, admin: admin_addr });
    let (a, b) = tokio::join!(authorizer_server, admin_server);
    // Flush whatever happened to the servers.
    tracing::info!("stopping: flushing the audit log and the store");
    core.audit.flush();
    core.iam.flush()?;
    a?;
    b?;
    Ok(())
}

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
