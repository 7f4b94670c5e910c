//! HTTP: the routes served over HTTP/1.1 by hyper, one task per connection,
//! under the limits of `[web]`: header-read, idle and write timeouts, a cap on
//! open connections, and a deadline at shutdown. warp 0.4's own server has
//! none of these, so its filter is served here.
//!
//! Who owns what:
//! - this file: the accept loop, the connection cap, and each connection's
//!   service: the gate, then the routes, then the web config's headers;
//! - [`conn`]: one connection's phases and deadlines, and the registry of
//!   open connections;
//! - [`gate`]: basic auth and the `--web.max-requests` permits ([`permits`]);
//! - [`routes`]: the route table and its warp filter;
//! - [`reply`]: every response, with its headers;
//! - [`access`], [`web_config`]: the web config file (TLS, users, headers);
//! - [`live`]: the live view's page and data; [`healthcheck`]: the client
//!   side of `--healthcheck`.

pub(crate) mod access;
mod conn;
mod gate;
pub(crate) mod healthcheck;
pub(crate) mod live;
mod permits;
pub(crate) mod reply;
pub mod routes;
pub(crate) mod web_config;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;

use self::access::Access;
use self::conn::{Admitted, ConnState, Expired, Phase, Registry, TimedIo, Tracked};
use self::gate::Gate;
use self::permits::ScrapePermits;
use self::routes::Table;
use crate::config::HttpLimits;
use crate::exporter::Exporter;
use crate::expose::telemetry::{Limit, LimitMetric};

/// A request head (request line and headers) larger than this is refused;
/// Prometheus sends a few hundred bytes. It also bounds an idle connection's
/// read buffer.
const MAX_HEAD: usize = 16 * 1024;

/// Accepts connections until `stop` is cancelled, each a task on `tasks`;
/// then stops accepting at once and returns. A connection's request in
/// flight gets the shutdown timeout, then it is closed.
pub async fn serve(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    access: Arc<Access>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let mut limits = exporter.config.http;
    limits.max_connections = connection_cap(limits.max_connections);
    let table = Table::new(&exporter.config);
    let service = warp::service(routes::routes(&table, Arc::clone(&exporter)));
    let registry = Arc::new(Registry::new());
    let hits = Hits {
        header: exporter.telemetry.limit(Limit::HttpHeaderTimeout),
        write: exporter.telemetry.limit(Limit::HttpWriteTimeout),
        connections: exporter.telemetry.limit(Limit::HttpConnections),
        handshakes: exporter.telemetry.tls_handshake_errors.clone(),
    };
    let gate = Arc::new(Gate {
        access,
        table,
        scrapes: limits.max_requests.map(ScrapePermits::new),
        refused: exporter.telemetry.limit(Limit::HttpRequests),
    });
    let closed_at_deadline = Arc::new(AtomicBool::new(false));
    let mut accept_failing = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: an idle connection
                    // makes room; otherwise wait for one to close.
                    if let Some(victim) = registry.evict_one() {
                        hits.connections.hit(&format!("closed idle connection from {victim}: {e}"));
                        // Give its task a moment to close it before trying again.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    if !std::mem::replace(&mut accept_failing, true) {
                        tracing::warn!(error = %e, "cannot accept connections");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if std::mem::replace(&mut accept_failing, false) {
            tracing::info!("accepting connections again");
        }
        let (id, state) = match registry.admit(peer, limits.max_connections) {
            Admitted::Room(id, state) => (id, state),
            Admitted::Evicted(id, state, victim) => {
                hits.connections.hit(&format!(
                    "closed idle connection from {victim} for one from {peer}"
                ));
                (id, state)
            }
            Admitted::Full => {
                hits.connections
                    .hit(&format!("refused {peer}: every connection is busy"));
                continue;
            }
        };
        exporter.telemetry.connections.set(registry.len() as f64);
        let _ = stream.set_nodelay(true);
        let tls = gate.access.current().tls.clone();
        let connection = Connection {
            state,
            limits,
            service: service.clone(),
            gate: Arc::clone(&gate),
            stop: stop.clone(),
            hits: hits.clone(),
        };
        let registry = Arc::clone(&registry);
        let open = exporter.telemetry.connections.clone();
        let stop = stop.clone();
        let said = Arc::clone(&closed_at_deadline);
        tasks.spawn(async move {
            // Once stopping, a request in flight gets the shutdown timeout;
            // then the connection is closed, busy or not.
            let deadline = async {
                stop.cancelled().await;
                tokio::time::sleep(limits.shutdown_timeout).await;
            };
            tokio::select! {
                _ = connection.run(stream, tls) => {}
                _ = deadline => {
                    if !said.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            still_open = registry.len(),
                            "connections still busy at the shutdown deadline; closing them"
                        );
                    }
                }
            }
            registry.remove(id);
            open.set(registry.len() as f64);
        });
    }
    // Stop accepting at once; the connections end on their own, on the app's tracker.
    drop(listener);
}

/// File descriptors kept for the exporter's own work (net/dev, sysfs, the
/// tools' pipes, the Docker and Incus sockets, the runtime's own) when the
/// process may open few files.
const FD_RESERVE: u64 = 64;

/// The configured connection cap, lowered if the process may open so few
/// files that connections could take them all: a scrape must still be able to
/// open net/dev.
fn connection_cap(configured: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let Some(files) = limit.current else {
        return configured;
    };
    let room = files.saturating_sub(FD_RESERVE).max(files / 4);
    let cap = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(1, configured);
    if cap < configured {
        tracing::warn!(
            max_connections = cap,
            configured,
            open_files_limit = files,
            "fewer connections than configured: the process may open only so many files"
        );
    }
    cap
}

enum Event {
    Done(hyper::Result<()>),
    Timer,
    Evicted,
    Stop,
}

#[derive(Clone)]
struct Hits {
    header: Arc<LimitMetric>,
    write: Arc<LimitMetric>,
    connections: Arc<LimitMetric>,
    handshakes: metrics::Counter,
}

/// The answer to plain HTTP on the TLS port.
const PLAIN_TO_TLS: &str = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
     Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

struct Connection<S> {
    state: Arc<ConnState>,
    limits: HttpLimits,
    service: S,
    gate: Arc<Gate>,
    stop: CancellationToken,
    hits: Hits,
}

impl<S> Connection<S>
where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// Serves the connection, over TLS when the web config says so.
    async fn run(self, mut stream: tokio::net::TcpStream, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.drive(stream).await;
        };
        let peer = self.state.peer;
        // The handshake is part of the request's head: same deadline.
        let handshake = tokio::time::timeout(self.limits.read_header_timeout, async {
            let mut first = [0u8; 1];
            stream.peek(&mut first).await?;
            if first[0].is_ascii_alphabetic() {
                // "GET ...": plain HTTP on the TLS port. Say so, as Go's servers do.
                stream.write_all(PLAIN_TO_TLS.as_bytes()).await?;
                let _ = stream.shutdown().await;
                return Ok(None);
            }
            acceptor.accept(stream).await.map(Some)
        })
        .await;
        match handshake {
            Ok(Ok(Some(tls_stream))) => self.drive(tls_stream).await,
            Ok(Ok(None)) => tracing::debug!(%peer, "plain HTTP on the TLS port; answered 400"),
            Ok(Err(e)) => {
                self.hits.handshakes.increment(1);
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
            Err(_) => self.hits.header.hit(&peer),
        }
    }

    async fn drive<I>(self, stream: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.state.peer;
        let io = TimedIo::new(stream, Arc::clone(&self.state), self.limits.write_timeout);
        let state = Arc::clone(&self.state);
        let service = self.service.clone();
        let gate = Arc::clone(&self.gate);
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            state.set(Phase::Busy);
            let state = Arc::clone(&state);
            let mut service = service.clone();
            let gate = Arc::clone(&gate);
            async move {
                let access = gate.access.current();
                let mut response = match gate.admit(&access, &request, &state).await {
                    Ok(()) => service.call(request).await?,
                    Err(refused) => refused,
                };
                for (name, value) in &access.config.headers {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, state)))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            // Head and idle deadlines are ours: hyper's header timer also runs
            // while a keep-alive connection waits for its next request.
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD.max(8192))
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let evicted = self.state.evicted.notified();
        tokio::pin!(evicted);
        let stopping = self.stop.cancelled();
        tokio::pin!(stopping);
        let mut draining = false;
        // One timer for the connection's life, moved only when a deadline
        // comes earlier (a request's first byte); a later one is found when
        // the timer fires. Re-arming it on every request cost ~15% more CPU
        // per scrape (benches/load.sh http).
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let mut armed = self
            .state
            .deadline(&self.limits)
            .map_or_else(far, |(at, _)| at);
        let timer = tokio::time::sleep_until(armed);
        tokio::pin!(timer);
        let mut seen = self.state.generation();
        loop {
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(result));
                }
                let generation = self.state.generation();
                if generation != seen {
                    seen = generation;
                    if let Some((at, _)) = self.state.deadline(&self.limits)
                        && at < armed
                    {
                        armed = at;
                        timer.as_mut().reset(at);
                    }
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                if evicted.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Evicted);
                }
                if !draining && stopping.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Stop);
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Done(result) => {
                    if self.state.write_timed_out.load(Ordering::Relaxed) {
                        self.hits.write.hit(&peer);
                    } else if let Err(e) = result {
                        // A client that goes away mid-request is routine.
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                Event::Timer => match self.state.deadline(&self.limits) {
                    Some((at, why)) if at <= tokio::time::Instant::now() => {
                        match why {
                            Expired::HeaderTimeout => self.hits.header.hit(&peer),
                            Expired::IdleTimeout => {
                                tracing::debug!(%peer, "closing an idle keep-alive connection")
                            }
                        }
                        return;
                    }
                    next => {
                        armed = next.map_or_else(far, |(at, _)| at);
                        timer.as_mut().reset(armed);
                    }
                },
                Event::Evicted => return,
                Event::Stop => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
