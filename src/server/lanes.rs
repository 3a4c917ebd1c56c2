//! The threads that serve the Authorizer API: `worker_threads` lanes, each a current-thread
//! Tokio runtime with a gRPC server of its own, and one acceptor that deals them the
//! connections in turn.
//!
//! The first lane is the process's main thread, which also serves the admin and Query APIs and
//! runs reloads; with one worker thread (the default) it is the only one. A connection stays on
//! the lane it was dealt to, so a request never wakes another thread: on its current-thread
//! runtime, the answers ready on a connection go out in one write once the lane has run its
//! other ready tasks. Tokio's multi-threaded scheduler, which hands tasks between threads,
//! spent 38–42 µs of CPU per decision on the benchmark's workload against 22–25 µs for one
//! current-thread runtime (2 cores, README's performance section).
//!
//! Connections are dealt round-robin rather than by load: gRPC clients keep their connections
//! open, so after a client's first few connections each lane holds about as many as the others.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::tls::{self, Conn, Tls};

/// A connection dealt to a lane: moved between runtimes as a std socket, since a Tokio socket
/// belongs to the runtime that registered it.
type Dealt = (std::net::TcpStream, SocketAddr);

/// The connections a lane's gRPC server takes, as tonic's `serve_with_incoming` wants them.
pub struct Incoming(mpsc::Receiver<(Conn, SocketAddr)>);

impl Incoming {
    pub fn new(connections: mpsc::Receiver<(Conn, SocketAddr)>) -> Incoming {
        Incoming(connections)
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = std::io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|next| next.map(|(connection, _)| Ok(connection)))
    }
}

/// Completes once `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The lanes, running.
pub struct Lanes<S> {
    /// The first lane, which runs on the caller's runtime.
    main: S,
    /// One per lane on a thread of its own: its server's result.
    others: Vec<oneshot::Receiver<Result<(), tonic::transport::Error>>>,
}

/// Starts `threads` lanes serving `listener` with the servers `serve` makes (given a lane's
/// connections and the stop signal); the first runs once the returned [`Lanes`] is awaited
/// through [`Lanes::finished`]. After `stop`, a lane stops accepting, lets its requests in
/// flight finish, and closes the connections still open `drain` later.
pub fn start<F, S>(
    threads: usize,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    stop: watch::Receiver<bool>,
    drain: Duration,
    serve: F,
) -> std::io::Result<Lanes<impl Future<Output = Result<(), tonic::transport::Error>>>>
where
    F: Fn(Incoming, watch::Receiver<bool>) -> S + Clone + Send + 'static,
    S: Future<Output = Result<(), tonic::transport::Error>>,
{
    let threads = threads.max(1);
    let mut dealers = Vec::with_capacity(threads);
    let (first, first_connections) = mpsc::channel(tls::BACKLOG);
    dealers.push(first);
    let mut others = Vec::with_capacity(threads - 1);
    for number in 1..threads {
        let (dealer, connections) = mpsc::channel(tls::BACKLOG);
        let (done, finished) = oneshot::channel();
        let (tls, stop, serve) = (tls.clone(), stop.clone(), serve.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(format!("iamd-lane-{number}")).spawn(move || {
            let _ = done.send(runtime.block_on(lane(connections, tls, stop, drain, serve)));
        })?;
        dealers.push(dealer);
        others.push(finished);
    }
    tokio::spawn(deal(listener, dealers, stop.clone()));
    Ok(Lanes { main: lane(first_connections, tls, stop, drain, serve), others })
}

impl<S: Future<Output = Result<(), tonic::transport::Error>>> Lanes<S> {
    /// Serves on the first lane until every lane has finished; the first error of any.
    pub async fn finished(self) -> Result<(), tonic::transport::Error> {
        let main = self.main.await;
        let mut result = main;
        for other in self.others {
            // A lane whose thread ended without a word has nothing more to report.
            if let Ok(Err(e)) = other.await
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }
}

/// Accepts connections and deals them to the lanes in turn, until `stop` or until no lane
/// takes connections any more.
async fn deal(listener: TcpListener, lanes: Vec<mpsc::Sender<Dealt>>, stop: watch::Receiver<bool>) {
    let stopping = stopped(stop);
    tokio::pin!(stopping);
    let mut turn = 0;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stopping => return,
            accepted = tls::accept_tcp(&listener) => accepted,
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand a connection to a serving thread");
                continue;
            }
        };
        let Some(lane) = (0..lanes.len()).map(|i| (turn + i) % lanes.len()).find(|&i| !lanes[i].is_closed())
        else {
            return;
        };
        turn = lane + 1;
        // A lane that stops while the connection waits for it drops the connection.
        let _ = lanes[lane].send((stream, peer)).await;
    }
}

/// One lane: takes over the connections dealt to it on its own runtime, runs their TLS
/// handshakes, and serves them.
async fn lane<F, S>(
    dealt: mpsc::Receiver<Dealt>,
    tls: Option<Arc<Tls>>,
    stop: watch::Receiver<bool>,
    drain: Duration,
    serve: F,
) -> Result<(), tonic::transport::Error>
where
    F: Fn(Incoming, watch::Receiver<bool>) -> S,
    S: Future<Output = Result<(), tonic::transport::Error>>,
{
    let (ready, accepted) = mpsc::channel(tls::BACKLOG);
    tokio::spawn(adopt(dealt, tls, ready));
    let drained = async {
        stopped(stop.clone()).await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        result = serve(Incoming::new(accepted), stop.clone()) => result,
        () = drained => Ok(()),
    }
}

/// Registers each dealt connection with this lane's runtime and admits it.
async fn adopt(
    mut dealt: mpsc::Receiver<Dealt>,
    tls: Option<Arc<Tls>>,
    ready: mpsc::Sender<(Conn, SocketAddr)>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = ready.closed() => return,
            next = dealt.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot serve a connection on this thread");
                continue;
            }
        };
        if !tls::admit(stream, peer, tls.as_ref(), tls::Protocol::Grpc, &ready).await {
            return;
        }
    }
}
