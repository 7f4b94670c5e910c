//! One websocket connection to the middleware's unix socket, for the whole
//! exporter. The middleware logs a root client in from its socket
//! credentials, so no password is involved. A task the app starts
//! ([`SocketClient::connection`]) keeps the connection until shutdown:
//! it connects (JSON-RPC at `/api/current`, or 24.10's legacy protocol at
//! `/websocket` when that path is a 404), subscribes to the collections the
//! resolvers read, wakes those resolvers on each event and after every
//! (re)connect, and reconnects with backoff when the middleware restarts.
//! Calls go over the same connection and are matched to answers by id.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Change, Event, Incoming, Outcome, Protocol};
use crate::bounded::{self, Worker};

/// Connecting and the handshake, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The subscriptions' probe calls, each.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Requests waiting to be written; a caller beyond it waits (within its budget).
const OUTBOX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// No connection: no socket, or it refuses, or it is reconnecting.
    #[error("{0}")]
    Unavailable(String),
    #[error("no answer from the middleware's socket within the budget")]
    Timeout,
    #[error("the middleware's socket closed before it answered")]
    Closed,
}

/// A collection the resolvers read, and the resolvers its events wake.
pub struct Watched {
    pub collection: &'static str,
    pub wakes: Vec<Arc<Notify>>,
}

pub struct SocketClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the socket may be, first found first.
    paths: Vec<PathBuf>,
    max_message_bytes: usize,
    watched: Vec<Watched>,
    state: watch::Sender<State>,
    /// Connects off the async threads: a hung mount under the root costs one
    /// thread, not the runtime.
    connector: Worker,
}

#[derive(Clone)]
enum State {
    /// The first connection is being tried.
    Starting,
    Up(Arc<Conn>),
    Down(String),
}

/// One live connection.
struct Conn {
    protocol: Protocol,
    out: mpsc::Sender<String>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    next_id: AtomicU64,
}

impl SocketClient {
    pub fn new(paths: Vec<PathBuf>, max_message_bytes: usize, watched: Vec<Watched>) -> Self {
        SocketClient {
            inner: Arc::new(Inner {
                paths,
                max_message_bytes,
                watched,
                state: watch::Sender::new(State::Starting),
                connector: Worker::new(CONNECT_TIMEOUT),
            }),
        }
    }

    /// The connection task, for the app to run: connects, serves, and after
    /// a loss reconnects with backoff, until `shutdown` is cancelled.
    pub fn connection(
        &self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = keep_connected(&inner) => {}
            }
            inner
                .state
                .send_replace(State::Down("the exporter is stopping".into()));
        }
    }

    /// Calls `method` within `budget`, waiting for the connection task's
    /// first attempt if it has not settled yet.
    pub async fn call(&self, method: &str, budget: Duration) -> Result<Outcome, SocketError> {
        let deadline = Instant::now() + budget;
        let mut state = self.inner.state.subscribe();
        let settled = timeout_at(deadline, async {
            state
                .wait_for(|s| !matches!(s, State::Starting))
                .await
                .map(|s| s.clone())
        })
        .await;
        let state = match settled {
            Ok(Ok(state)) => state,
            Ok(Err(_)) => return Err(SocketError::Closed),
            Err(_) => return Err(SocketError::Timeout),
        };
        match state {
            State::Up(conn) => conn.call(method, deadline).await,
            State::Down(reason) => Err(SocketError::Unavailable(reason)),
            State::Starting => Err(SocketError::Timeout),
        }
    }

    /// Whether a connection is up now, and its protocol.
    pub fn protocol(&self) -> Option<Protocol> {
        match &*self.inner.state.borrow() {
            State::Up(conn) => Some(conn.protocol),
            _ => None,
        }
    }
}

impl Conn {
    async fn call(&self, method: &str, deadline: Instant) -> Result<Outcome, SocketError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        let answer = async {
            self.out
                .send(protocol::call(self.protocol, id, method))
                .await
                .map_err(|_| SocketError::Closed)?;
            rx.await.map_err(|_| SocketError::Closed)
        };
        let result = timeout_at(deadline, answer)
            .await
            .unwrap_or(Err(SocketError::Timeout));
        // Answered or not, the slot goes: nothing waits for it any more.
        self.pending().remove(&id);
        result
    }

    /// Asks for `collection`'s events; the answer is not awaited.
    async fn subscribe(&self, collection: &str) -> bool {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.out
            .send(protocol::subscribe(self.protocol, id, collection))
            .await
            .is_ok()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Outcome>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Connects, serves, and after a loss reconnects with backoff; ends only
/// when dropped. A panic in a connection is logged and counts as a loss.
async fn keep_connected(inner: &Arc<Inner>) {
    let mut backoff = MIN_BACKOFF;
    let mut last_reason = String::new();
    loop {
        // The state a panic could leave half-changed is replaced whole below.
        let attempt = AssertUnwindSafe(connect_and_serve(inner))
            .catch_unwind()
            .await;
        let (reason, lasted) = match attempt {
            Ok(outcome) => outcome,
            Err(_) => ("the connection task panicked".to_owned(), Duration::ZERO),
        };
        if lasted > MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        if reason != last_reason {
            tracing::info!(reason = %reason, retry_in = ?backoff, "TrueNAS middleware socket unavailable");
            last_reason.clone_from(&reason);
        }
        inner.state.send_replace(State::Down(reason));
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection from start to loss: why it ended, and how long it lasted.
async fn connect_and_serve(inner: &Arc<Inner>) -> (String, Duration) {
    let (ws, protocol, path) = match connect(inner).await {
        Ok(connected) => connected,
        Err(reason) => return (reason, Duration::ZERO),
    };
    let since = Instant::now();
    tracing::info!(socket = %path.display(), protocol = protocol.name(), "TrueNAS middleware: using its socket, with events");
    let (out, outbox) = mpsc::channel(OUTBOX);
    let conn = Arc::new(Conn {
        protocol,
        out,
        pending: Mutex::default(),
        next_id: AtomicU64::new(1),
    });
    inner.state.send_replace(State::Up(Arc::clone(&conn)));
    // The connection's own chores (subscribing, subscribing again): they
    // end with it, aborted when the set drops.
    let mut chores = JoinSet::new();
    chores.spawn(subscribe_all(Arc::clone(inner), Arc::clone(&conn)));
    let reason = serve(inner, ws, &conn, outbox, &mut chores).await;
    drop(chores);
    // Callers still waiting get `Closed` as their senders drop.
    conn.pending().clear();
    (format!("connection lost: {reason}"), since.elapsed())
}

type Ws = WebSocketStream<UnixStream>;

/// The first socket that takes a connection, in the newest protocol it speaks.
async fn connect(inner: &Inner) -> Result<(Ws, Protocol, PathBuf), String> {
    let mut reasons = Vec::new();
    for path in &inner.paths {
        match open(inner, path, Protocol::JsonRpc).await {
            Ok(ws) => return Ok((ws, Protocol::JsonRpc, path.clone())),
            // 24.10 serves only the legacy path.
            Err(Opened::NotFound) => match open(inner, path, Protocol::Legacy).await {
                Ok(ws) => return Ok((ws, Protocol::Legacy, path.clone())),
                Err(e) => reasons.push(format!("{}: {}", path.display(), e.text())),
            },
            Err(e) => reasons.push(format!("{}: {}", path.display(), e.text())),
        }
    }
    Err(reasons.join("; "))
}

enum Opened {
    NotFound,
    Failed(String),
}

impl Opened {
    fn text(&self) -> String {
        match self {
            Opened::NotFound => "404 on both protocols' paths".to_owned(),
            Opened::Failed(e) => e.clone(),
        }
    }
}

async fn open(inner: &Inner, path: &std::path::Path, protocol: Protocol) -> Result<Ws, Opened> {
    let stream = bounded::connect_unix(&inner.connector, path)
        .await
        .map_err(|e| Opened::Failed(e.to_string()))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(inner.max_message_bytes))
        .max_frame_size(Some(inner.max_message_bytes));
    let url = format!("ws://localhost{}", protocol.path());
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let handshake = tokio_tungstenite::client_async_with_config(url, stream, Some(config));
    let mut ws = match timeout_at(deadline, handshake).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(tungstenite::Error::Http(response))) if response.status() == 404 => {
            return Err(Opened::NotFound);
        }
        Ok(Err(e)) => return Err(Opened::Failed(e.to_string())),
        Err(_) => return Err(Opened::Failed("no websocket handshake in time".into())),
    };
    if protocol == Protocol::Legacy {
        let greeted = async {
            ws.send(Message::text(protocol::LEGACY_CONNECT))
                .await
                .ok()?;
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(text) = frame {
                    return Some(protocol::parse(protocol, text.as_str()));
                }
            }
            None
        };
        match timeout_at(deadline, greeted).await {
            Ok(Some(Incoming::Connected)) => {}
            Ok(Some(Incoming::Refused)) => {
                return Err(Opened::Failed("the legacy handshake was refused".into()));
            }
            _ => return Err(Opened::Failed("no legacy handshake in time".into())),
        }
    }
    Ok(ws)
}

/// Reads frames and writes requests until the connection ends; says why.
async fn serve(
    inner: &Arc<Inner>,
    ws: Ws,
    conn: &Arc<Conn>,
    mut outbox: mpsc::Receiver<String>,
    chores: &mut JoinSet<()>,
) -> String {
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            // Finished chores leave the set.
            Some(_) = chores.join_next(), if !chores.is_empty() => {}
            out = outbox.recv() => {
                // The conn holds a sender, so the outbox cannot close first.
                let Some(text) = out else { return "closed".into() };
                if let Err(e) = sink.send(Message::text(text)).await {
                    return e.to_string();
                }
            }
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    dispatch(inner, conn, protocol::parse(conn.protocol, text.as_str()), chores);
                }
                Some(Ok(Message::Close(_))) | None => return "closed by the middleware".into(),
                // Pings are answered by the library; nothing else is expected.
                Some(Ok(_)) => {}
                Some(Err(e)) => return e.to_string(),
            },
        }
    }
}

fn dispatch(inner: &Arc<Inner>, conn: &Arc<Conn>, incoming: Incoming, chores: &mut JoinSet<()>) {
    match incoming {
        Incoming::Result { id, outcome } => {
            if let Some(waiting) = conn.pending().remove(&id) {
                let _ = waiting.send(outcome);
            }
        }
        Incoming::Event(event) => {
            if wakes_for(&event) {
                wake(inner, &event.collection);
            }
        }
        Incoming::Unsubscribed { collection } => {
            // The middleware ended that source of events: ask again shortly,
            // and meanwhile read the list once more.
            tracing::info!(collection = %collection, "the middleware ended a subscription; subscribing again");
            let conn = Arc::clone(conn);
            let inner = Arc::clone(inner);
            chores.spawn(async move {
                sleep(MIN_BACKOFF).await;
                if let Some(name) = inner.watched.iter().find(|w| w.collection == collection) {
                    conn.subscribe(name.collection).await;
                }
                wake(&inner, &collection);
            });
        }
        Incoming::Connected | Incoming::Refused | Incoming::Other => {}
    }
}

/// A row that gained a running process (a VM or container started), or one
/// that went: the resolvers' labels change. A row that changed without a
/// pid (a VM stopping) takes its interfaces with it and needs nothing. The
/// Incus instances' events never carry a pid.
pub fn wakes_for(event: &Event) -> bool {
    event.change == Change::Removed
        || event.pid.is_some()
        || event.collection == "virt.instance.query"
}

fn wake(inner: &Inner, collection: &str) {
    for watched in inner.watched.iter().filter(|w| w.collection == collection) {
        for wake in &watched.wakes {
            wake.notify_one();
        }
    }
}

/// Subscribes to each watched collection this release has (a subscription
/// to a name it lacks succeeds too, so each is probed by a call first), then
/// wakes every watched resolver to read its list afresh.
async fn subscribe_all(inner: Arc<Inner>, conn: Arc<Conn>) {
    for watched in &inner.watched {
        let probe = conn
            .call(watched.collection, Instant::now() + PROBE_TIMEOUT)
            .await;
        match probe {
            Ok(Outcome::NoMethod) => continue,
            Ok(_) => {
                conn.subscribe(watched.collection).await;
            }
            Err(_) => return,
        }
    }
    for watched in &inner.watched {
        wake(&inner, watched.collection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_that_change_labels_wake() {
        let event = |collection: &str, change, pid| Event {
            collection: collection.into(),
            change,
            pid,
        };
        assert!(wakes_for(&event("vm.query", Change::Changed, Some(4))));
        assert!(wakes_for(&event("vm.query", Change::Added, Some(4))));
        assert!(wakes_for(&event("vm.query", Change::Removed, None)));
        assert!(!wakes_for(&event("vm.query", Change::Changed, None)));
        assert!(wakes_for(&event(
            "virt.instance.query",
            Change::Changed,
            None
        )));
    }

    #[tokio::test]
    async fn no_socket_is_unavailable_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let client = SocketClient::new(vec![dir.path().join("middlewared.sock")], 1 << 20, vec![]);
        let stop = CancellationToken::new();
        let connection = tokio::spawn(client.connection(stop.clone()));
        let started = std::time::Instant::now();
        let err = client
            .call("vm.query", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, SocketError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("middlewared.sock"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(4));
        stop.cancel();
        connection.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_task_ends_at_shutdown_and_calls_fail_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let client = SocketClient::new(vec![dir.path().join("middlewared.sock")], 1 << 20, vec![]);
        let stop = CancellationToken::new();
        let connection = tokio::spawn(client.connection(stop.clone()));
        // Between two attempts, in its backoff.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
        connection.await.unwrap();
        let err = client
            .call("vm.query", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("stopping"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_its_task_a_call_waits_out_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let client = SocketClient::new(vec![dir.path().join("middlewared.sock")], 1 << 20, vec![]);
        let err = client
            .call("vm.query", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, SocketError::Timeout), "{err}");
    }
}
