//! The threads that serve the Authorizer API: `worker_threads` lanes, each a current-thread
//! Tokio runtime with a gRPC server of its own, and one acceptor that deals them the
//! connections.
//!
//! The first lane is the process's main thread, which also serves the admin and Query APIs and
//! runs reloads; with one worker thread (the default) it is the only one. A connection stays on
//! the lane it was dealt to, so a request never wakes another thread: on its current-thread
//! runtime, the answers ready on a connection go out in one write once the lane has run its
//! other ready tasks. With two threads, Tokio's multi-threaded scheduler, which hands tasks
//! between threads, spent 43–49 µs of CPU per decision on the benchmark's workload against
//! 34–36 µs for two lanes (2 cores shared with the client; README's performance section).
//!
//! A new connection goes to the lane holding the fewest open connections (in turn among equals),
//! so that short-lived ones, such as health probes, cannot pile the long-lived ones onto one
//! lane; a lane whose queue of new connections is full is passed over, so one stalled lane does
//! not hold up accepting for the others.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::tls::{self, Conn, Tls};

/// A connection dealt to a lane: moved between runtimes as a std socket, since a Tokio socket
/// belongs to the runtime that registered it.
type Dealt = (std::net::TcpStream, SocketAddr, Held);

/// One open connection counted on a lane; the count drops with it.
pub struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(open: &Arc<AtomicUsize>) -> Held {
        open.fetch_add(1, Ordering::Relaxed);
        Held(open.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where the acceptor sends a lane its connections, and how many it holds.
struct Dealer {
    number: usize,
    connections: mpsc::Sender<Dealt>,
    open: Arc<AtomicUsize>,
}

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
    /// One per lane on a thread of its own: its number, and its server's result.
    others: Vec<(usize, oneshot::Receiver<Result<(), tonic::transport::Error>>)>,
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
    let dealer = |number| {
        let (connections, dealt) = mpsc::channel(tls::BACKLOG);
        (Dealer { number, connections, open: Arc::new(AtomicUsize::new(0)) }, dealt)
    };
    let (first, first_dealt) = dealer(0);
    let mut dealers = vec![first];
    let mut others = Vec::with_capacity(threads - 1);
    for number in 1..threads {
        let (dealer, dealt) = dealer(number);
        let (done, finished) = oneshot::channel();
        let (started, runtime_built) = std::sync::mpsc::sync_channel(1);
        let (tls, stop, serve) = (tls.clone(), stop.clone(), serve.clone());
        // The runtime is built on its own thread: a runtime dropped inside another's context
        // (as one would be if this thread could not be started) panics.
        std::thread::Builder::new().name(format!("iamd-lane-{number}")).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            let result = runtime.block_on(lane(dealt, tls, stop, drain, serve));
            if let Err(e) = &result {
                tracing::error!(lane = number, error = %e, "a thread serving the Authorizer API stopped");
            }
            let _ = done.send(result);
        })?;
        // Start-up only, and the thread answers as soon as its runtime exists.
        runtime_built.recv().map_err(|_| std::io::Error::other("a serving thread ended as it started"))??;
        dealers.push(dealer);
        others.push((number, finished));
    }
    tokio::spawn(deal(listener, dealers, stop.clone()));
    Ok(Lanes { main: lane(first_dealt, tls, stop, drain, serve), others })
}

impl<S: Future<Output = Result<(), tonic::transport::Error>>> Lanes<S> {
    /// Serves on the first lane until every lane has finished; the first error of any.
    pub async fn finished(self) -> Result<(), tonic::transport::Error> {
        let mut result = self.main.await;
        for (number, other) in self.others {
            match other.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => tracing::error!(lane = number, "a thread serving the Authorizer API panicked"),
            }
        }
        result
    }
}

/// Accepts connections and deals each to the lane holding the fewest, until `stop` or until no
/// lane takes connections any more.
async fn deal(listener: TcpListener, lanes: Vec<Dealer>, stop: watch::Receiver<bool>) {
    let stopping = stopped(stop);
    tokio::pin!(stopping);
    let mut reported = vec![false; lanes.len()];
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
        for lane in lanes.iter().filter(|lane| lane.connections.is_closed()) {
            if !std::mem::replace(&mut reported[lane.number], true) {
                tracing::error!(
                    lane = lane.number,
                    "a thread serving the Authorizer API is gone; the others go on"
                );
            }
        }
        // Fewest open connections first, in turn among equals.
        let mut order: Vec<&Dealer> = lanes.iter().filter(|lane| !lane.connections.is_closed()).collect();
        if order.is_empty() {
            tracing::error!("no thread serves the Authorizer API any more; it no longer accepts connections");
            return;
        }
        order.sort_by_key(|lane| {
            (lane.open.load(Ordering::Relaxed), (lane.number + lanes.len() - turn) % lanes.len())
        });
        turn = (order[0].number + 1) % lanes.len();
        if let Some((stream, peer)) = offer(&order, (stream, peer)) {
            // Every lane's queue is full: wait for the one that should have had it.
            let lane = order[0];
            tokio::select! {
                () = &mut stopping => return,
                _ = lane.connections.send((stream, peer, Held::new(&lane.open))) => {}
            }
        }
    }
}

/// Offers a connection to `lanes` in order; gives it back if every queue is full.
fn offer(
    lanes: &[&Dealer],
    mut connection: (std::net::TcpStream, SocketAddr),
) -> Option<(std::net::TcpStream, SocketAddr)> {
    use tokio::sync::mpsc::error::TrySendError;
    for lane in lanes {
        match lane.connections.try_send((connection.0, connection.1, Held::new(&lane.open))) {
            Ok(()) => return None,
            Err(TrySendError::Full((stream, peer, _)) | TrySendError::Closed((stream, peer, _))) => {
                connection = (stream, peer)
            }
        }
    }
    Some(connection)
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
        let (stream, peer, held) = tokio::select! {
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
        if !tls::admit(stream, peer, Some(held), tls.as_ref(), tls::Protocol::Grpc, &ready).await {
            return;
        }
    }
}
