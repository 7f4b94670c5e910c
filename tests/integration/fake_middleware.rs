//! A fake of the TrueNAS middleware's websocket server on a unix socket, for
//! the middleware client's tests. It speaks the middleware's protocol as the
//! real server does on its unix socket: JSON-RPC 2.0 at `/api/current` (and
//! `/api/vXX.YY.Z`), the legacy protocol at `/websocket`, a plain HTTP
//! `/api/versions`; a 24.10 server has only `/websocket`. The caller is root
//! by its socket credentials, so there is no login.
//!
//! It runs its own tokio runtime on a background thread, so synchronous
//! tests can use it; every method here returns without awaiting anything.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Which middleware the fake plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 25.04 and later: JSON-RPC at `/api/current`, legacy at `/websocket`,
    /// `GET /api/versions`.
    JsonRpc,
    /// The same server as `JsonRpc`, for tests that reach it through
    /// `/websocket` only.
    Legacy,
    /// 24.10: `/websocket` only; `/api/...` answers 404. It answers the
    /// legacy `{"msg":"ping"}`, which later releases ignore.
    Release2410,
}

/// The query methods that exist unless `set_methods` says otherwise.
const DEFAULT_METHODS: [&str; 3] = ["vm.query", "container.query", "virt.instance.query"];
/// What `GET /api/versions` lists; each is also served at `/api/<version>`.
const VERSIONS: [&str; 3] = ["v25.04.0", "v25.04.2", "v25.10.0"];
/// Client-to-server messages above this close the connection (1009).
const MAX_MESSAGE: usize = 64 << 10;
/// An HTTP request head larger than this is refused.
const MAX_HEAD: usize = 16 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    JsonRpc,
    Legacy,
}

struct Subscription {
    /// The uuid `core.subscribe` returned, or the legacy `sub`'s own id.
    id: Value,
    name: String,
}

struct Conn {
    protocol: Protocol,
    tx: mpsc::UnboundedSender<Message>,
    subs: Vec<Subscription>,
}

struct State {
    methods: HashSet<String>,
    rows: HashMap<String, Vec<Value>>,
    /// Answers other than a list of rows (`set_answer`).
    answers: HashMap<String, Value>,
    /// Methods refused as 25.10 refuses a private method (`refuse`).
    refused: HashSet<String>,
    /// Methods never answered (`hang`).
    hung: HashSet<String>,
    calls: HashMap<String, usize>,
    connections: usize,
    next_conn: u64,
    conns: HashMap<u64, Conn>,
    listening: bool,
    /// Bumped by each listen, so an accept loop a stop has ended accepts nothing more.
    generation: u64,
    /// The accept loop and the connections, aborted by `stop`.
    tasks: Vec<AbortHandle>,
}

struct Shared {
    mode: Mode,
    path: PathBuf,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
    /// How many of the accept loop and the connections still hold their socket.
    live: Mutex<usize>,
    idle: Condvar,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a socket as open until it is dropped: declared after the socket in
/// its owner, so it drops after the socket's descriptor is closed.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: &Arc<Shared>) -> Live {
        *shared.live.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Live(shared.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        *self.0.live.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.idle.notify_all();
    }
}

struct Acceptor {
    listener: UnixListener,
    _live: Live,
}

/// A connection's stream, counted as live until dropped.
struct Tracked {
    stream: UnixStream,
    _live: Live,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A fake middleware listening on a unix socket; stops when dropped.
pub struct FakeMiddleware {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeMiddleware {
    /// Listens on a unix socket at `path` (creating parent dirs, mode 0666).
    pub fn start(path: &Path, mode: Mode) -> FakeMiddleware {
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            handle_tx.send(rt.handle().clone()).unwrap();
            rt.block_on(async {
                let _ = stopped.await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        let runtime = handle_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fake middleware runtime started");
        let shared = Arc::new(Shared {
            mode,
            path: path.to_owned(),
            runtime,
            state: Mutex::new(State {
                methods: DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
                rows: HashMap::new(),
                answers: HashMap::new(),
                refused: HashSet::new(),
                hung: HashSet::new(),
                calls: HashMap::new(),
                connections: 0,
                next_conn: 0,
                conns: HashMap::new(),
                listening: false,
                generation: 0,
                tasks: Vec::new(),
            }),
            live: Mutex::new(0),
            idle: Condvar::new(),
        });
        let fake = FakeMiddleware {
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        };
        fake.listen();
        fake
    }

    /// Which methods exist; every other one answers "method does not exist"
    /// (`core.subscribe` and `core.unsubscribe` always exist). A method that
    /// exists answers the rows `set_rows` gave it (an empty list by default).
    /// Default: `vm.query`, `container.query` and `virt.instance.query`.
    pub fn set_methods(&self, methods: &[&str]) {
        self.shared.state().methods = methods.iter().map(|m| m.to_string()).collect();
    }

    /// The rows `collection` (e.g. "vm.query") answers, as JSON values.
    pub fn set_rows(&self, collection: &str, rows: Vec<Value>) {
        self.shared.state().rows.insert(collection.to_owned(), rows);
    }

    /// What `method` answers, any JSON value (`smb.status` answers a list
    /// of objects, `smbstatus` an object); it takes precedence over
    /// `set_rows`. The method then exists, until a later `set_methods`
    /// leaves it out.
    pub fn set_answer(&self, method: &str, answer: Value) {
        let mut state = self.shared.state();
        state.methods.insert(method.to_owned());
        state.answers.insert(method.to_owned(), answer);
    }

    /// Refuses every call of `method` as 25.10 refuses a private method
    /// (`smb.status` there) to credentials not allowed it: the check of
    /// `authorize_method_call` (`main.py`), `CallError('Not authorized',
    /// errno.EACCES)`. Over JSON-RPC that is the TrueNAS call error
    /// (-32001, "Method call error", the error in `data`); over the legacy
    /// protocol, a `result` with the error. A full admin over the unix
    /// socket is not refused: 25.10 only logs "Private method ... called on
    /// a connection without private_methods enabled"
    /// (`ws_handler/rpc.py`, a FIXME to prohibit it). Whether the method
    /// exists does not matter.
    pub fn refuse(&self, method: &str) {
        self.shared.state().refused.insert(method.to_owned());
    }

    /// Calls of `method` are never answered; the connection stays open and
    /// answers other calls, as the middleware runs each call on its own.
    pub fn hang(&self, method: &str) {
        self.shared.state().hung.insert(method.to_owned());
    }

    /// Sends an event to every connection subscribed to `collection`, once
    /// per connection however many of its subscriptions name it: `msg`
    /// "added" | "changed" | "removed", `id`, and `fields` (None for removed).
    pub fn announce(&self, collection: &str, msg: &str, id: Value, fields: Option<Value>) {
        self.announce_event(collection, msg, id, fields, None);
    }

    /// `announce`, with the event's other keywords under `extra` (as the
    /// middleware sends `extra.state` with a `vm.query` event).
    pub fn announce_with_extra(
        &self,
        collection: &str,
        msg: &str,
        id: Value,
        fields: Option<Value>,
        extra: Value,
    ) {
        self.announce_event(collection, msg, id, fields, Some(extra));
    }

    fn announce_event(
        &self,
        collection: &str,
        msg: &str,
        id: Value,
        fields: Option<Value>,
        extra: Option<Value>,
    ) {
        let mut event = serde_json::Map::new();
        event.insert("msg".into(), msg.into());
        event.insert("collection".into(), collection.into());
        event.insert("id".into(), id);
        if let Some(fields) = fields {
            event.insert("fields".into(), fields);
        }
        if let Some(extra) = extra {
            event.insert("extra".into(), extra);
        }
        let event = Value::Object(event);
        let state = self.shared.state();
        for conn in state.conns.values() {
            if !conn.subs.iter().any(|s| s.name == collection) {
                continue;
            }
            let text = match conn.protocol {
                Protocol::JsonRpc => json!({
                    "jsonrpc": "2.0",
                    "method": "collection_update",
                    "params": event,
                }),
                Protocol::Legacy => event.clone(),
            };
            let _ = conn.tx.send(Message::text(text.to_string()));
        }
    }

    /// Ends `collection`'s subscriptions: `notify_unsubscribed` (JSON-RPC,
    /// one per connection) or `nosub` (legacy, one per subscription, with
    /// its id), and forgets them.
    pub fn end_subscriptions(&self, collection: &str) {
        let mut state = self.shared.state();
        for conn in state.conns.values_mut() {
            let (ended, kept) = std::mem::take(&mut conn.subs)
                .into_iter()
                .partition::<Vec<_>, _>(|s| s.name == collection);
            conn.subs = kept;
            if ended.is_empty() {
                continue;
            }
            match conn.protocol {
                Protocol::JsonRpc => {
                    let note = json!({
                        "jsonrpc": "2.0",
                        "method": "notify_unsubscribed",
                        "params": {"collection": collection, "error": null},
                    });
                    let _ = conn.tx.send(Message::text(note.to_string()));
                }
                Protocol::Legacy => {
                    for sub in ended {
                        let note = json!({
                            "msg": "nosub",
                            "id": sub.id,
                            "collection": collection,
                            "error": null,
                        });
                        let _ = conn.tx.send(Message::text(note.to_string()));
                    }
                }
            }
        }
    }

    /// Drops every connection (no close frame, as when the middleware
    /// restarts) and stops listening; the socket file is removed. Returns
    /// once every socket is closed.
    pub fn stop(&self) {
        let tasks = {
            let mut state = self.shared.state();
            if !state.listening {
                return;
            }
            state.listening = false;
            state.conns.clear();
            std::mem::take(&mut state.tasks)
        };
        let _ = std::fs::remove_file(&self.shared.path);
        for task in tasks {
            task.abort();
        }
        let live = self.shared.live.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .shared
            .idle
            .wait_timeout_while(live, Duration::from_secs(5), |n| *n > 0);
    }

    /// Listens again at the same path, with the same methods, rows and counters.
    pub fn start_again(&self) {
        self.listen();
    }

    /// How many calls were made of `method` (every protocol and connection,
    /// since start; an unknown method counts too).
    pub fn calls(&self, method: &str) -> usize {
        self.shared.state().calls.get(method).copied().unwrap_or(0)
    }

    /// How many websocket connections were ever opened (either protocol).
    /// Plain HTTP requests and refused upgrades do not count.
    pub fn connections(&self) -> usize {
        self.shared.state().connections
    }

    /// The collection names of the live subscriptions, sorted, one per subscription.
    pub fn subscriptions(&self) -> Vec<String> {
        let state = self.shared.state();
        let mut names: Vec<String> = state
            .conns
            .values()
            .flat_map(|c| c.subs.iter().map(|s| s.name.clone()))
            .collect();
        names.sort();
        names
    }

    fn listen(&self) {
        let shared = &self.shared;
        if shared.state().listening {
            return;
        }
        if let Some(dir) = shared.path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let _ = std::fs::remove_file(&shared.path);
        let std_listener = std::os::unix::net::UnixListener::bind(&shared.path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", shared.path.display()));
        std::fs::set_permissions(&shared.path, std::fs::Permissions::from_mode(0o666)).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let listener = {
            let _entered = shared.runtime.enter();
            UnixListener::from_std(std_listener).unwrap()
        };
        let acceptor = Acceptor {
            listener,
            _live: Live::new(shared),
        };
        let mut state = shared.state();
        state.listening = true;
        state.generation += 1;
        let task = shared
            .runtime
            .spawn(accept_loop(shared.clone(), acceptor, state.generation));
        state.tasks.push(task.abort_handle());
    }
}

impl Drop for FakeMiddleware {
    fn drop(&mut self) {
        self.stop();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, acceptor: Acceptor, generation: u64) {
    loop {
        let stream = match acceptor.listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Under the lock, so `stop` either sees this connection's task or
        // this loop sees the stop.
        let mut state = shared.state();
        if !state.listening || state.generation != generation {
            return;
        }
        let tracked = Tracked {
            stream,
            _live: Live::new(&shared),
        };
        let task = tokio::spawn(serve(shared.clone(), tracked));
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(task.abort_handle());
    }
}

/// The request line and headers of an HTTP request.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn parse(head: &str) -> Option<Request> {
        let mut lines = head.split("\r\n");
        let mut line = lines.next()?.split(' ');
        let method = line.next()?.to_owned();
        let target = line.next()?;
        if !line.next()?.starts_with("HTTP/1.") || line.next().is_some() {
            return None;
        }
        let path = target.split('?').next()?.to_owned();
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Some(Request {
            method,
            path,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header lists `token` (any case).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

enum Route {
    Websocket(Protocol),
    Versions,
    NotFound,
}

fn route(mode: Mode, path: &str) -> Route {
    let api = mode != Mode::Release2410;
    match path {
        "/websocket" => Route::Websocket(Protocol::Legacy),
        "/api/current" if api => Route::Websocket(Protocol::JsonRpc),
        "/api/versions" if api => Route::Versions,
        _ if api
            && VERSIONS
                .iter()
                .any(|v| path.strip_prefix("/api/") == Some(v)) =>
        {
            Route::Websocket(Protocol::JsonRpc)
        }
        _ => Route::NotFound,
    }
}

/// Reads an HTTP request head; returns it and whatever came after it.
async fn read_head(stream: &mut Tracked) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((String::from_utf8(buf).ok()?, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(stream: &mut Tracked, status: &str, content_type: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn serve(shared: Arc<Shared>, mut stream: Tracked) {
    let Some((head, rest)) = read_head(&mut stream).await else {
        return;
    };
    let Some(request) = Request::parse(&head) else {
        respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "400: Bad Request",
        )
        .await;
        return;
    };
    let protocol = match route(shared.mode, &request.path) {
        Route::NotFound => {
            respond(&mut stream, "404 Not Found", "text/plain", "404: Not Found").await;
            return;
        }
        _ if request.method != "GET" => {
            let body = "405: Method Not Allowed";
            respond(&mut stream, "405 Method Not Allowed", "text/plain", body).await;
            return;
        }
        Route::Versions => {
            let body = json!(VERSIONS).to_string();
            respond(&mut stream, "200 OK", "application/json", &body).await;
            return;
        }
        Route::Websocket(protocol) => protocol,
    };
    let key = request.header("sec-websocket-key").map(str::to_owned);
    let upgrade = request.has_token("upgrade", "websocket")
        && request.has_token("connection", "upgrade")
        && request.header("sec-websocket-version") == Some("13");
    let (Some(key), true) = (key, upgrade) else {
        respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "400: Bad Request",
        )
        .await;
        return;
    };
    // No subprotocol is echoed, whatever the client offers.
    let accept = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(accept.as_bytes()).await.is_err() {
        return;
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
    session(shared, protocol, ws).await;
}

/// Removes its connection from the state when the connection ends.
struct Registered {
    shared: Arc<Shared>,
    conn: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.state().conns.remove(&self.conn);
    }
}

async fn session(shared: Arc<Shared>, protocol: Protocol, mut ws: WebSocketStream<Tracked>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = {
        let mut state = shared.state();
        state.connections += 1;
        state.next_conn += 1;
        let conn = state.next_conn;
        state.conns.insert(
            conn,
            Conn {
                protocol,
                tx,
                subs: Vec::new(),
            },
        );
        conn
    };
    let _registered = Registered {
        shared: shared.clone(),
        conn,
    };
    // The legacy protocol answers nothing but `failed` until `connect`.
    let mut connected = false;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { return };
                if ws.send(out).await.is_err() {
                    return;
                }
            }
            incoming = ws.next() => {
                let text = match incoming {
                    None => return,
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        return close(ws, CloseCode::Unsupported).await;
                    }
                    // Pings are answered by tungstenite, a close too.
                    Some(Ok(_)) => continue,
                    Some(Err(WsError::Capacity(_))) => {
                        return close(ws, CloseCode::Size).await;
                    }
                    Some(Err(_)) => return,
                };
                let reply = match protocol {
                    Protocol::JsonRpc => json_rpc(&shared, conn, &text),
                    Protocol::Legacy => legacy(&shared, conn, &mut connected, &text),
                };
                if let Some(reply) = reply
                    && ws.send(Message::text(reply.to_string())).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Sends a close frame and waits briefly for the client's.
async fn close(mut ws: WebSocketStream<Tracked>, code: CloseCode) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(""),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Why a call failed, in terms both protocols can express.
enum CallError {
    NoMethod {
        method: String,
        service_exists: bool,
    },
    InvalidParams(String),
    /// `CallError('Not authorized', errno.EACCES)`.
    NotAuthorized,
    /// No answer ever.
    Hang,
}

/// Runs a method call for connection `conn`.
fn call(shared: &Shared, conn: u64, method: &str, params: &[Value]) -> Result<Value, CallError> {
    let mut state = shared.state();
    *state.calls.entry(method.to_owned()).or_default() += 1;
    if state.hung.contains(method) {
        return Err(CallError::Hang);
    }
    if state.refused.contains(method) {
        return Err(CallError::NotAuthorized);
    }
    match method {
        "core.subscribe" => {
            let [Value::String(name)] = params else {
                return Err(CallError::InvalidParams(
                    "core.subscribe takes one event name".into(),
                ));
            };
            let id = uuid4();
            if let Some(c) = state.conns.get_mut(&conn) {
                c.subs.push(Subscription {
                    id: Value::String(id.clone()),
                    name: name.clone(),
                });
            }
            Ok(Value::String(id))
        }
        "core.unsubscribe" => {
            let [id @ Value::String(_)] = params else {
                return Err(CallError::InvalidParams(
                    "core.unsubscribe takes one subscription id".into(),
                ));
            };
            if let Some(c) = state.conns.get_mut(&conn) {
                c.subs.retain(|s| &s.id != id);
            }
            Ok(Value::Null)
        }
        _ if state.methods.contains(method) => Ok(match state.answers.get(method) {
            Some(answer) => answer.clone(),
            None => Value::Array(state.rows.get(method).cloned().unwrap_or_default()),
        }),
        _ => {
            let service = method.rsplit_once('.').map_or(method, |(s, _)| s);
            let service_exists = service == "core"
                || state
                    .methods
                    .iter()
                    .any(|m| m.rsplit_once('.').is_some_and(|(s, _)| s == service));
            Err(CallError::NoMethod {
                method: method.to_owned(),
                service_exists,
            })
        }
    }
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id})
}

/// One JSON-RPC message; the answer, if any (a notification has none).
fn json_rpc(shared: &Shared, conn: u64, text: &str) -> Option<Value> {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return Some(rpc_error(Value::Null, -32700, "Parse error"));
    };
    let request = match message {
        Value::Object(request) => request,
        Value::Array(_) => {
            return Some(rpc_error(
                Value::Null,
                -32600,
                "Batch requests are not supported",
            ));
        }
        _ => return Some(rpc_error(Value::Null, -32600, "Invalid Request")),
    };
    let id = match request.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
        Some(_) => return Some(rpc_error(Value::Null, -32600, "Invalid Request")),
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    let method = match (request.get("jsonrpc"), request.get("method")) {
        (Some(Value::String(v)), Some(Value::String(method))) if v == "2.0" => method,
        _ => return Some(rpc_error(answer_id, -32600, "Invalid Request")),
    };
    let params = match request.get("params") {
        None => &[][..],
        Some(Value::Array(params)) => params.as_slice(),
        Some(_) => return Some(rpc_error(answer_id, -32602, "Invalid params")),
    };
    let result = call(shared, conn, method, params);
    id.as_ref()?;
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": answer_id}),
        Err(CallError::NoMethod { .. }) => rpc_error(answer_id, -32601, "Method does not exist"),
        Err(CallError::InvalidParams(_)) => rpc_error(answer_id, -32602, "Invalid params"),
        Err(CallError::NotAuthorized) => {
            // `send_truenas_error`: TRUENAS_CALL_ERROR, the error in `data`
            // (`format_truenas_error`, without `type`).
            let mut data = legacy_error(13, "EACCES", "CallError", "Not authorized");
            if let Some(data) = data.as_object_mut() {
                data.remove("type");
            }
            json!({
                "jsonrpc": "2.0",
                "error": {"code": -32001, "message": "Method call error", "data": data},
                "id": answer_id,
            })
        }
        Err(CallError::Hang) => return None,
    })
}

/// A middleware error object, as the legacy protocol's `result` carries it.
fn legacy_error(errno: i64, errname: &str, class: &str, message: &str) -> Value {
    let reason = format!("[{errname}] {message}");
    json!({
        "error": errno,
        "errname": errname,
        "type": null,
        "reason": reason,
        "trace": {
            "class": class,
            "formatted": format!("Traceback (most recent call last):\n{class}: {reason}\n"),
            "repr": format!("{class}({reason:?})"),
        },
        "extra": null,
    })
}

/// One legacy message; the answer, if any.
fn legacy(shared: &Shared, conn: u64, connected: &mut bool, text: &str) -> Option<Value> {
    let message = serde_json::from_str::<Value>(text).ok();
    let field = |name: &str| message.as_ref().and_then(|m| m.get(name));
    let msg = field("msg").and_then(Value::as_str);
    if !*connected {
        if msg == Some("connect") && field("version").and_then(Value::as_str) == Some("1") {
            *connected = true;
            return Some(json!({"msg": "connected", "session": uuid4()}));
        }
        return Some(json!({"msg": "failed", "version": "1"}));
    }
    match msg? {
        "method" => {
            let id = field("id")?.clone();
            let method = field("method")?.as_str()?;
            let params = match field("params") {
                None => &[][..],
                Some(Value::Array(params)) => params.as_slice(),
                Some(_) => {
                    let error = legacy_error(22, "EINVAL", "CallError", "params must be a list");
                    return Some(json!({"msg": "result", "id": id, "error": error}));
                }
            };
            Some(match call(shared, conn, method, params) {
                Ok(result) => json!({"msg": "result", "id": id, "result": result}),
                Err(e) => {
                    let error = match e {
                        CallError::NoMethod {
                            method,
                            service_exists,
                        } => {
                            let (service, name) = method.rsplit_once('.').unwrap_or((&method, ""));
                            let text = if service_exists {
                                format!("Method '{name}' not found in '{service}'")
                            } else {
                                format!("Service '{service}' not found")
                            };
                            legacy_error(201, "ENOMETHOD", "MethodNotFoundError", &text)
                        }
                        CallError::InvalidParams(text) => {
                            legacy_error(22, "EINVAL", "CallError", &text)
                        }
                        CallError::NotAuthorized => {
                            legacy_error(13, "EACCES", "CallError", "Not authorized")
                        }
                        CallError::Hang => return None,
                    };
                    json!({"msg": "result", "id": id, "error": error})
                }
            })
        }
        "sub" => {
            let id = field("id")?.clone();
            let name = field("name")?.as_str()?.to_owned();
            if let Some(c) = shared.state().conns.get_mut(&conn) {
                c.subs.push(Subscription {
                    id: id.clone(),
                    name,
                });
            }
            Some(json!({"msg": "ready", "subs": [id]}))
        }
        "unsub" => {
            let id = field("id")?;
            if let Some(c) = shared.state().conns.get_mut(&conn) {
                c.subs.retain(|s| &s.id != id);
            }
            None
        }
        "ping" if shared.mode == Mode::Release2410 => Some(match field("id") {
            Some(id) => json!({"msg": "pong", "id": id}),
            None => json!({"msg": "pong"}),
        }),
        _ => None,
    }
}

/// A random (version 4) uuid, as the middleware gives sessions and subscriptions.
fn uuid4() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut b))
        .expect("read /dev/urandom");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// The fake through a raw websocket client, one shape of the protocol at a time.

type Client = WebSocketStream<UnixStream>;

fn socket_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/middleware/middlewared.sock");
    (dir, path)
}

async fn open(path: &Path, target: &str) -> Result<Client, WsError> {
    let stream = UnixStream::connect(path).await.map_err(WsError::Io)?;
    let url = format!("ws://localhost{target}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

async fn send(ws: &mut Client, message: Value) {
    ws.send(Message::text(message.to_string())).await.unwrap();
}

async fn next(ws: &mut Client) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("the fake answers within 2 s")
}

async fn recv(ws: &mut Client) -> Value {
    match next(ws).await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends `message` and returns the next message received.
async fn ask(ws: &mut Client, message: Value) -> Value {
    send(ws, message).await;
    recv(ws).await
}

/// Nothing arrives for a while.
async fn quiet(ws: &mut Client) {
    let got = tokio::time::timeout(Duration::from_millis(150), ws.next()).await;
    assert!(got.is_err(), "unexpected {got:?}");
}

async fn http_get(path: &Path, target: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(path).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 36
            && s.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            })
    })
}

fn vm_row() -> Value {
    json!({"id": 1, "name": "1_vyos", "status": {"state": "RUNNING", "pid": 1234, "domain_state": "RUNNING"}})
}

#[tokio::test]
async fn fake_middleware_json_rpc_answers_by_id() {
    let (_dir, path) = socket_path();
    let fake = FakeMiddleware::start(&path, Mode::JsonRpc);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);
    fake.set_rows("vm.query", vec![vm_row()]);
    let mut ws = open(&path, "/api/current").await.unwrap();

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "vm.query", "params": []});
    let want = json!({"jsonrpc": "2.0", "result": [vm_row()], "id": 1});
    assert_eq!(ask(&mut ws, call).await, want);
    let call = json!({"jsonrpc": "2.0", "id": "a", "method": "container.query", "params": []});
    let want = json!({"jsonrpc": "2.0", "result": [], "id": "a"});
    assert_eq!(ask(&mut ws, call).await, want);

    fake.set_methods(&["vm.query"]);
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "container.query", "params": []});
    let want = json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method does not exist"}, "id": 3});
    assert_eq!(ask(&mut ws, call).await, want);

    // A notification runs unanswered; the next answer is the parse error's.
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "method": "vm.query", "params": []}),
    )
    .await;
    ws.send(Message::text("{\"jsonrpc\": \"2.0\", \"id\": 4,"))
        .await
        .unwrap();
    let want =
        json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null});
    assert_eq!(recv(&mut ws).await, want);

    let batch = json!([{"jsonrpc": "2.0", "id": 5, "method": "vm.query", "params": []}]);
    let got = ask(&mut ws, batch).await;
    assert_eq!(got["error"]["code"], -32600, "{got}");
    assert_eq!(got["id"], Value::Null);
    let old = json!({"jsonrpc": "1.0", "id": 6, "method": "vm.query", "params": []});
    let got = ask(&mut ws, old).await;
    assert_eq!(
        (&got["error"]["code"], &got["id"]),
        (&json!(-32600), &json!(6))
    );
    let named = json!({"jsonrpc": "2.0", "id": 7, "method": "vm.query", "params": {}});
    let got = ask(&mut ws, named).await;
    assert_eq!(
        (&got["error"]["code"], &got["id"]),
        (&json!(-32602), &json!(7))
    );
    let bad_subscribe =
        json!({"jsonrpc": "2.0", "id": 8, "method": "core.subscribe", "params": [1]});
    assert_eq!(ask(&mut ws, bad_subscribe).await["error"]["code"], -32602);

    // Under the 64 KiB cap a large message is answered.
    let pad = "x".repeat(60 << 10);
    let big =
        json!({"jsonrpc": "2.0", "id": 9, "method": "vm.query", "params": [[], {"pad": pad}]});
    assert_eq!(ask(&mut ws, big).await["result"], json!([vm_row()]));

    // A versioned endpoint is the same server.
    let mut versioned = open(&path, "/api/v25.10.0").await.unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "vm.query", "params": []});
    assert_eq!(ask(&mut versioned, call).await["result"], json!([vm_row()]));

    assert_eq!(fake.calls("vm.query"), 4, "the notification counts");
    assert_eq!(fake.calls("container.query"), 2);
    assert_eq!(fake.calls("core.subscribe"), 1);
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn fake_middleware_json_rpc_subscriptions_and_events() {
    let (_dir, path) = socket_path();
    let fake = FakeMiddleware::start(&path, Mode::JsonRpc);
    let mut ws = open(&path, "/api/current").await.unwrap();
    let subscribe = |id: i64, name: &str| json!({"jsonrpc": "2.0", "id": id, "method": "core.subscribe", "params": [name]});
    let first = ask(&mut ws, subscribe(1, "vm.query")).await;
    assert_eq!(first["id"], 1);
    assert!(is_uuid(&first["result"]), "{first}");
    let second = ask(&mut ws, subscribe(2, "vm.query")).await;
    assert!(is_uuid(&second["result"]) && second["result"] != first["result"]);
    // A name that does not exist subscribes without error.
    let none = ask(&mut ws, subscribe(3, "nonexistent.query")).await;
    assert!(is_uuid(&none["result"]), "{none}");
    assert_eq!(
        fake.subscriptions(),
        ["nonexistent.query", "vm.query", "vm.query"]
    );

    let fields = json!({"name": "1_vyos", "status": {"state": "SHUTOFF", "pid": null, "domain_state": "SHUTOFF"}});
    fake.announce("vm.query", "changed", json!(1), Some(fields.clone()));
    fake.announce("container.query", "changed", json!(2), Some(json!({})));
    fake.announce("vm.query", "removed", json!(1), None);
    fake.announce_with_extra(
        "vm.query",
        "added",
        json!(5),
        Some(fields.clone()),
        json!({"state": "STOPPED"}),
    );
    let event =
        |params: Value| json!({"jsonrpc": "2.0", "method": "collection_update", "params": params});
    assert_eq!(
        recv(&mut ws).await,
        event(json!({"msg": "changed", "collection": "vm.query", "id": 1, "fields": fields}))
    );
    assert_eq!(
        recv(&mut ws).await,
        event(json!({"msg": "removed", "collection": "vm.query", "id": 1}))
    );
    assert_eq!(
        recv(&mut ws).await,
        event(
            json!({"msg": "added", "collection": "vm.query", "id": 5, "fields": fields, "extra": {"state": "STOPPED"}})
        )
    );
    // One notification per event, however many subscriptions name it.
    quiet(&mut ws).await;

    let unsubscribe = json!({"jsonrpc": "2.0", "id": "u", "method": "core.unsubscribe", "params": [first["result"]]});
    assert_eq!(
        ask(&mut ws, unsubscribe).await,
        json!({"jsonrpc": "2.0", "result": null, "id": "u"})
    );
    assert_eq!(fake.subscriptions(), ["nonexistent.query", "vm.query"]);

    fake.end_subscriptions("vm.query");
    assert_eq!(
        recv(&mut ws).await,
        json!({"jsonrpc": "2.0", "method": "notify_unsubscribed", "params": {"collection": "vm.query", "error": null}})
    );
    assert_eq!(fake.subscriptions(), ["nonexistent.query"]);
    fake.announce("vm.query", "changed", json!(1), Some(fields));
    quiet(&mut ws).await;
    assert_eq!(fake.calls("core.subscribe"), 3);
    assert_eq!(fake.calls("core.unsubscribe"), 1);
}

#[tokio::test]
async fn fake_middleware_legacy_protocol() {
    for mode in [Mode::JsonRpc, Mode::Legacy, Mode::Release2410] {
        let (_dir, path) = socket_path();
        let fake = FakeMiddleware::start(&path, mode);
        fake.set_rows("vm.query", vec![vm_row()]);
        fake.set_methods(&["vm.query"]);
        let mut ws = open(&path, "/websocket").await.unwrap();
        let failed = json!({"msg": "failed", "version": "1"});
        let call = |id: &str, method: &str| json!({"msg": "method", "id": id, "method": method, "params": []});
        assert_eq!(ask(&mut ws, call("m0", "vm.query")).await, failed);
        let other = json!({"msg": "connect", "version": "2", "support": ["2"], "features": []});
        assert_eq!(ask(&mut ws, other).await, failed);
        let connect = json!({"msg": "connect", "version": "1", "support": ["1"], "features": []});
        let connected = ask(&mut ws, connect).await;
        assert_eq!(connected["msg"], "connected", "{mode:?}");
        assert!(is_uuid(&connected["session"]), "{connected}");

        assert_eq!(
            ask(&mut ws, call("m1", "vm.query")).await,
            json!({"msg": "result", "id": "m1", "result": [vm_row()]})
        );
        let got = ask(&mut ws, call("m2", "vm.foo")).await;
        assert_eq!((&got["msg"], &got["id"]), (&json!("result"), &json!("m2")));
        assert!(got.get("result").is_none(), "{got}");
        let error = &got["error"];
        assert_eq!(error["error"], 201);
        assert_eq!(error["errname"], "ENOMETHOD");
        assert_eq!(error["type"], Value::Null);
        assert_eq!(error["extra"], Value::Null);
        assert_eq!(
            error["reason"],
            "[ENOMETHOD] Method 'foo' not found in 'vm'"
        );
        assert_eq!(error["trace"]["class"], "MethodNotFoundError");
        assert!(error["trace"]["formatted"].is_string() && error["trace"]["repr"].is_string());
        let got = ask(&mut ws, call("m3", "container.query")).await;
        assert_eq!(
            got["error"]["reason"],
            "[ENOMETHOD] Service 'container' not found"
        );

        let sub = json!({"msg": "sub", "id": "s1", "name": "vm.query"});
        assert_eq!(
            ask(&mut ws, sub).await,
            json!({"msg": "ready", "subs": ["s1"]})
        );
        assert_eq!(fake.subscriptions(), ["vm.query"]);
        let fields = json!({"status": {"state": "RUNNING", "pid": 99, "domain_state": "RUNNING"}});
        fake.announce("vm.query", "changed", json!(3), Some(fields.clone()));
        fake.announce("vm.query", "removed", json!(3), None);
        assert_eq!(
            recv(&mut ws).await,
            json!({"msg": "changed", "collection": "vm.query", "id": 3, "fields": fields})
        );
        assert_eq!(
            recv(&mut ws).await,
            json!({"msg": "removed", "collection": "vm.query", "id": 3})
        );
        fake.end_subscriptions("vm.query");
        assert_eq!(
            recv(&mut ws).await,
            json!({"msg": "nosub", "id": "s1", "collection": "vm.query", "error": null})
        );
        assert!(fake.subscriptions().is_empty());

        // Only 24.10 answers the legacy ping.
        send(&mut ws, json!({"msg": "ping", "id": "p"})).await;
        if mode == Mode::Release2410 {
            assert_eq!(recv(&mut ws).await, json!({"msg": "pong", "id": "p"}));
        } else {
            quiet(&mut ws).await;
        }
        assert_eq!(fake.calls("vm.query"), 1, "before connect nothing runs");
        assert_eq!(fake.calls("vm.foo"), 1);
    }
}

#[tokio::test]
async fn fake_middleware_sends_events_in_each_connections_protocol() {
    let (_dir, path) = socket_path();
    let fake = FakeMiddleware::start(&path, Mode::JsonRpc);
    let mut rpc = open(&path, "/api/current").await.unwrap();
    let subscribe = json!({"jsonrpc": "2.0", "id": 1, "method": "core.subscribe", "params": ["virt.instance.query"]});
    assert!(is_uuid(&ask(&mut rpc, subscribe).await["result"]));
    let mut legacy = open(&path, "/websocket").await.unwrap();
    let connect = json!({"msg": "connect", "version": "1", "support": ["1"]});
    assert_eq!(ask(&mut legacy, connect).await["msg"], "connected");
    let sub = json!({"msg": "sub", "id": 7, "name": "virt.instance.query"});
    assert_eq!(ask(&mut legacy, sub).await["subs"], json!([7]));

    let fields = json!({"status": "STOPPED"});
    fake.announce(
        "virt.instance.query",
        "changed",
        json!("web"),
        Some(fields.clone()),
    );
    let event = json!({"msg": "changed", "collection": "virt.instance.query", "id": "web", "fields": fields});
    assert_eq!(
        recv(&mut rpc).await,
        json!({"jsonrpc": "2.0", "method": "collection_update", "params": event})
    );
    assert_eq!(recv(&mut legacy).await, event);
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn fake_middleware_release_2410_serves_only_websocket() {
    let (_dir, path) = socket_path();
    let fake = FakeMiddleware::start(&path, Mode::Release2410);
    match open(&path, "/api/current").await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
    assert_eq!(http_get(&path, "/api/versions").await.0, 404);
    let mut ws = open(&path, "/websocket").await.unwrap();
    let connect = json!({"msg": "connect", "version": "1", "support": ["1"]});
    assert_eq!(ask(&mut ws, connect).await["msg"], "connected");
    assert_eq!(fake.connections(), 1, "a refused upgrade is no connection");

    let (_dir, path) = socket_path();
    let _current = FakeMiddleware::start(&path, Mode::JsonRpc);
    let (status, body) = http_get(&path, "/api/versions").await;
    assert_eq!(status, 200);
    let versions: Value = serde_json::from_str(&body).unwrap();
    let versions = versions.as_array().unwrap();
    assert!(!versions.is_empty() && versions.iter().all(Value::is_string));
    assert_eq!(http_get(&path, "/api/current").await.0, 400, "no upgrade");
    assert_eq!(http_get(&path, "/elsewhere").await.0, 404);
}

#[tokio::test]
async fn fake_middleware_closes_on_binary_and_oversized_frames() {
    let (_dir, path) = socket_path();
    let _fake = FakeMiddleware::start(&path, Mode::JsonRpc);
    let mut ws = open(&path, "/api/current").await.unwrap();
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Pong(payload))) => assert_eq!(&payload[..], b"hi"),
        other => panic!("expected a pong, got {other:?}"),
    }
    ws.send(Message::Binary(b"{}".to_vec().into()))
        .await
        .unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Unsupported),
        other => panic!("expected close 1003, got {other:?}"),
    }

    let mut ws = open(&path, "/api/current").await.unwrap();
    ws.send(Message::text("x".repeat((64 << 10) + 1)))
        .await
        .unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn fake_middleware_stop_drops_connections_and_start_again_keeps_state() {
    let (_dir, path) = socket_path();
    let fake = FakeMiddleware::start(&path, Mode::JsonRpc);
    fake.set_rows("vm.query", vec![vm_row()]);
    let mut ws = open(&path, "/api/current").await.unwrap();
    let subscribe =
        json!({"jsonrpc": "2.0", "id": 1, "method": "core.subscribe", "params": ["vm.query"]});
    assert!(is_uuid(&ask(&mut ws, subscribe).await["result"]));

    fake.stop();
    assert!(!path.exists());
    assert!(fake.subscriptions().is_empty());
    match next(&mut ws).await {
        None | Some(Err(_)) => {}
        other => panic!("expected a dropped connection, got {other:?}"),
    }
    assert!(UnixStream::connect(&path).await.is_err());

    fake.start_again();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);
    let mut ws = open(&path, "/api/current").await.unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "vm.query", "params": []});
    assert_eq!(ask(&mut ws, call).await["result"], json!([vm_row()]));
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.calls("core.subscribe"), 1);

    drop(fake);
    assert!(!path.exists());
    match next(&mut ws).await {
        None | Some(Err(_)) => {}
        other => panic!("expected a dropped connection, got {other:?}"),
    }
}

#[tokio::test]
async fn fake_middleware_answers_any_value_refuses_and_hangs() {
    for path_of in ["/api/current", "/websocket"] {
        let (_dir, path) = socket_path();
        let fake = FakeMiddleware::start(&path, Mode::JsonRpc);
        let sessions = json!([{"session_id": "7", "hostname": "ipv4:10.0.0.7:50000", "share_connections": []}]);
        fake.set_answer("smb.status", sessions.clone());
        fake.set_answer("core.answer_object", json!({"sessions": {}}));
        fake.set_rows("vm.query", vec![vm_row()]);
        fake.refuse("nfs.get_nfs4_clients");
        fake.hang("iscsi.global.sessions");
        let mut ws = open(&path, path_of).await.unwrap();
        let legacy = path_of == "/websocket";
        if legacy {
            let connect = json!({"msg": "connect", "version": "1", "support": ["1"]});
            assert_eq!(ask(&mut ws, connect).await["msg"], "connected");
        }
        let call = |id: i64, method: &str| {
            if legacy {
                json!({"msg": "method", "id": id.to_string(), "method": method, "params": []})
            } else {
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": []})
            }
        };
        let result = |answer: &Value| answer["result"].clone();

        assert_eq!(result(&ask(&mut ws, call(1, "smb.status")).await), sessions);
        assert_eq!(
            result(&ask(&mut ws, call(2, "core.answer_object")).await),
            json!({"sessions": {}})
        );
        // set_rows still answers.
        assert_eq!(
            result(&ask(&mut ws, call(3, "vm.query")).await),
            json!([vm_row()])
        );

        let refused = ask(&mut ws, call(4, "nfs.get_nfs4_clients")).await;
        let error = if legacy {
            assert_eq!(
                (&refused["msg"], &refused["id"]),
                (&json!("result"), &json!("4"))
            );
            assert_eq!(refused["error"]["type"], Value::Null);
            &refused["error"]
        } else {
            assert_eq!(refused["id"], 4);
            assert_eq!(refused["error"]["code"], -32001);
            assert_eq!(refused["error"]["message"], "Method call error");
            assert!(refused["error"]["data"].get("type").is_none(), "{refused}");
            &refused["error"]["data"]
        };
        assert_eq!(error["error"], 13);
        assert_eq!(error["errname"], "EACCES");
        assert_eq!(error["reason"], "[EACCES] Not authorized");
        assert_eq!(error["trace"]["class"], "CallError");
        assert_eq!(error["extra"], Value::Null);

        // A hung call: no answer, and the connection still answers others.
        send(&mut ws, call(5, "iscsi.global.sessions")).await;
        quiet(&mut ws).await;
        let answer = ask(&mut ws, call(6, "vm.query")).await;
        assert_eq!(result(&answer), json!([vm_row()]));
        assert_eq!(fake.calls("iscsi.global.sessions"), 1);
        assert_eq!(fake.calls("nfs.get_nfs4_clients"), 1);

        // set_methods can take an answered method away again.
        fake.set_methods(&["vm.query"]);
        let gone = ask(&mut ws, call(7, "smb.status")).await;
        if legacy {
            assert_eq!(gone["error"]["errname"], "ENOMETHOD");
        } else {
            assert_eq!(gone["error"]["code"], -32601);
        }
    }
}
