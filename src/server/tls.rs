//! TLS and mutual TLS for iamd's listeners (rustls), with the certificate, key and client CA
//! read again from disk when they change, so that a rotated certificate is served without a
//! restart and without dropping a connection.
//!
//! Every listener's connections go through [`admit`], which runs each TLS handshake in a task
//! of its own (a slow or hostile client cannot hold up the others) and hands the ready
//! connections to the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use super::lanes::Held;

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted but not yet taken by the server.
pub(super) const BACKLOG: usize = 128;

/// Where the listeners' certificate, key and (for mutual TLS) client CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs client certificates must chain to. Set, every client must present one.
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// The server configurations in force, swapped whole when the files change.
pub struct Tls {
    files: TlsFiles,
    /// For the gRPC listeners (ALPN `h2`).
    grpc: ArcSwap<ServerConfig>,
    /// For the Query API (ALPN `http/1.1`).
    http1: ArcSwap<ServerConfig>,
}

/// Which protocol a listener speaks, for ALPN.
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    Grpc,
    Http1,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read the {what} `{}`: {e}", path.display())))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("the {what} `{}` is not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("the {what} `{}` holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// Builds the two server configurations from the files.
fn configs(files: &TlsFiles) -> Result<(ServerConfig, ServerConfig), TlsError> {
    let chain = certificates(&files.cert, "certificate file")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key, "key file")?).map_err(|e| {
        TlsError(format!("the key file `{}` holds no PEM private key: {e}", files.key.display()))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(path, "client CA file")? {
                roots.add(cert).map_err(|e| TlsError(format!("client CA `{}`: {e}", path.display())))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| TlsError(format!("client CA `{}`: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut grpc = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError(format!(
            "the certificate `{}` and the key `{}` do not make a usable pair: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    let mut http1 = grpc.clone();
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((grpc, http1))
}

fn modified(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

impl Tls {
    /// Loads the files; fails on anything unusable, so that iamd does not start without the
    /// TLS it was told to serve.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let (grpc, http1) = configs(&files)?;
        Ok(Arc::new(Tls { files, grpc: ArcSwap::from_pointee(grpc), http1: ArcSwap::from_pointee(http1) }))
    }

    /// Checks the files every reload interval and swaps in new configurations when they
    /// changed. A change that does not load (say, a certificate written before its key) keeps
    /// the configuration in force and is retried at the next check.
    pub fn watch(self: &Arc<Tls>) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut seen = modified(&tls.files);
            let mut every = tokio::time::interval(tls.files.reload_interval);
            every.tick().await;
            loop {
                every.tick().await;
                let now = modified(&tls.files);
                if now == seen {
                    continue;
                }
                match configs(&tls.files) {
                    Ok((grpc, http1)) => {
                        tls.grpc.store(Arc::new(grpc));
                        tls.http1.store(Arc::new(http1));
                        seen = now;
                        tracing::info!(cert = %tls.files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be loaded; still serving the previous ones")
                    }
                }
            }
        });
    }

    fn acceptor(&self, protocol: Protocol) -> tokio_rustls::TlsAcceptor {
        match protocol {
            Protocol::Grpc => self.grpc.load_full().into(),
            Protocol::Http1 => self.http1.load_full().into(),
        }
    }
}

/// An accepted connection, with or without TLS.
pub struct Conn {
    io: Io,
    /// Counts the connection on the serving thread it was dealt to, for as long as it is open.
    _held: Option<Held>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Io::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(stream) => stream.is_write_vectored(),
            Io::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match &self.io {
            Io::Plain(stream) => stream.connect_info(),
            Io::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}

/// Accepts connections on `listener` (with TLS when `tls` is set) until the receiver is
/// dropped.
pub fn accept(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    protocol: Protocol,
) -> mpsc::Receiver<(Conn, SocketAddr)> {
    let (ready, accepted) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = ready.closed() => return,
                accepted = accept_tcp(&listener) => accepted,
            };
            if !admit(stream, peer, None, tls.as_ref(), protocol, &ready).await {
                return;
            }
        }
    });
    accepted
}

/// The next connection on `listener`, with Nagle's algorithm off: a decision is one small
/// response, and delaying it for a delayed ACK costs up to 40 ms.
pub async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot turn off Nagle's algorithm");
                }
                return (stream, peer);
            }
            Err(e) => {
                // Out of file descriptors, say: back off rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Hands an accepted connection to the server through `ready`: at once without TLS, after its
/// handshake with it, run in a task of its own so that a slow or hostile client cannot hold up
/// the others. `held` goes with the connection and is dropped with it. False once the server has
/// stopped taking connections.
pub async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    held: Option<Held>,
    tls: Option<&Arc<Tls>>,
    protocol: Protocol,
    ready: &mpsc::Sender<(Conn, SocketAddr)>,
) -> bool {
    let Some(tls) = tls else {
        return ready.send((Conn { io: Io::Plain(stream), _held: held }, peer)).await.is_ok();
    };
    let acceptor = tls.acceptor(protocol);
    let ready = ready.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let connection = Conn { io: Io::Tls(Box::new(stream)), _held: held };
                let _ = ready.send((connection, peer)).await;
            }
            Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
        }
    });
    true
}

/// The accepted connections of the Query API, as axum takes them.
pub struct Accepted {
    pub connections: mpsc::Receiver<(Conn, SocketAddr)>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for Accepted {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.connections.recv().await {
            Some(accepted) => accepted,
            // The accepting task ends only once this receiver is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
