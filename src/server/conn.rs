//! One HTTP connection under the limits. A connection is, at any moment,
//! reading a request's head, busy with a request, or idle between requests
//! (keep-alive). Reading a head has `read_header_timeout` from its first byte
//! (or from the accept); idling has `idle_timeout`; a busy connection has no
//! deadline, but a response that makes no progress for `write_timeout` (the
//! client stopped reading) fails its connection. The [`Registry`] holds every
//! open connection, so the acceptor can close the longest-waiting idle one
//! when the cap is reached.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::permits::Permit;
use crate::config::HttpLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for, or reading, a request's head.
    Head = 0,
    /// A request is being answered.
    Busy = 1,
    /// Keep-alive: between requests.
    Idle = 2,
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeaderTimeout,
    IdleTimeout,
}

/// What the connection's task, its I/O and its responses share.
pub struct ConnState {
    pub peer: SocketAddr,
    phase: AtomicU8,
    /// Milliseconds since the registry's epoch at which `phase` began.
    since: AtomicU64,
    epoch: Instant,
    /// Counts phase changes, so the connection's task can tell one happened.
    generation: AtomicU64,
    /// The acceptor closed this connection to make room.
    pub evicted: Notify,
    /// A write made no progress for the write timeout.
    pub write_timed_out: AtomicBool,
    /// The `--web.max-requests` permit of the scrape being answered, if any.
    permit: Mutex<Option<Permit>>,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        }
    }

    /// Phases change only inside the connection's own poll (its I/O, its
    /// service, its response body), so no wake-up is needed: the task looks
    /// at [`ConnState::generation`] after each poll.
    pub fn set(&self, phase: Phase) {
        self.since.store(self.now_ms(), Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps a scrape's permit until its response is done or stalls.
    pub fn hold(&self, permit: Permit) {
        *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
    }

    /// Gives the permit back.
    pub fn release(&self) {
        self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// When the current phase expires, and why; `None` while busy.
    pub fn deadline(&self, limits: &HttpLimits) -> Option<(Instant, Expired)> {
        let (timeout, why) = match self.phase() {
            Phase::Busy => return None,
            Phase::Head => (limits.read_header_timeout, Expired::HeaderTimeout),
            Phase::Idle => (limits.idle_timeout, Expired::IdleTimeout),
        };
        let since = self.epoch + Duration::from_millis(self.since.load(Ordering::Acquire));
        Some((since + timeout, why))
    }
}

/// Every open connection, by id.
pub struct Registry {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// What [`Registry::admit`] did to make room.
pub enum Admitted {
    /// Below the cap.
    Room(u64, Arc<ConnState>),
    /// At the cap: this idle connection was told to close.
    Evicted(u64, Arc<ConnState>, SocketAddr),
    /// At the cap and every connection is busy.
    Full,
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection from `peer`, closing one that is not busy
    /// (see [`Registry::evict`]) if `max` are open.
    pub fn admit(&self, peer: SocketAddr, max: usize) -> Admitted {
        let mut open = self.lock();
        let mut evicted = None;
        if open.len() >= max {
            let Some(victim) = Registry::evict(&mut open) else {
                return Admitted::Full;
            };
            evicted = Some(victim);
        }
        let state = Arc::new(ConnState {
            peer,
            phase: AtomicU8::new(Phase::Head as u8),
            since: AtomicU64::new(0),
            epoch: self.epoch,
            generation: AtomicU64::new(0),
            evicted: Notify::new(),
            write_timed_out: AtomicBool::new(false),
            permit: Mutex::new(None),
        });
        state.since.store(state.now_ms(), Ordering::Release);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        open.insert(id, Arc::clone(&state));
        match evicted {
            None => Admitted::Room(id, state),
            Some(victim) => Admitted::Evicted(id, state, victim),
        }
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes a connection that is not busy (out of file descriptors, say);
    /// returns its peer.
    pub fn evict_one(&self) -> Option<SocketAddr> {
        Registry::evict(&mut self.lock())
    }

    /// The connection to close for room: one that is not busy, from the
    /// address with the most open connections (so a flood from one host
    /// closes its own first), the one that has waited longest among them.
    fn evict(open: &mut HashMap<u64, Arc<ConnState>>) -> Option<SocketAddr> {
        let mut per_address: HashMap<std::net::IpAddr, usize> = HashMap::new();
        for c in open.values() {
            *per_address.entry(c.peer.ip()).or_default() += 1;
        }
        let victim = open
            .iter()
            .filter(|(_, c)| c.phase() != Phase::Busy)
            .min_by_key(|(_, c)| {
                let crowd = per_address.get(&c.peer.ip()).copied().unwrap_or(0);
                (std::cmp::Reverse(crowd), c.since.load(Ordering::Acquire))
            })
            .map(|(&id, _)| id)?;
        let victim = open.remove(&victim)?;
        victim.evicted.notify_one();
        Some(victim.peer)
    }
}

/// A response whose client has taken nothing for this long gives its
/// `--web.max-requests` permit back: one client that stops reading must not
/// hold a permit until the write timeout while other scrapes get 503.
const STALL_RELEASE: Duration = Duration::from_secs(1);

/// The connection's I/O: marks the first byte of a request's head, gives a
/// stalled response's permit back, and fails a write that makes no progress
/// for the write timeout.
pub struct TimedIo<T> {
    inner: T,
    state: Arc<ConnState>,
    write_timeout: Duration,
    /// While a write waits: when it began, and the timer of its next step.
    stall: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<T> TimedIo<T> {
    pub fn new(inner: T, state: Arc<ConnState>, write_timeout: Duration) -> TimedIo<T> {
        TimedIo {
            inner,
            state,
            write_timeout,
            stall: None,
        }
    }

    /// Ready results clear the stall; a pending one starts it. Past
    /// [`STALL_RELEASE`] the permit goes back, past the write timeout the write
    /// fails.
    fn bound<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stall = None;
            return poll;
        }
        let (timeout, first) = (self.write_timeout, STALL_RELEASE.min(self.write_timeout));
        let (since, timer) = self.stall.get_or_insert_with(|| {
            let now = Instant::now();
            (now, Box::pin(tokio::time::sleep_until(now + first)))
        });
        while timer.as_mut().poll(cx).is_ready() {
            if since.elapsed() >= timeout {
                self.state.write_timed_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took nothing for the write timeout",
                )));
            }
            self.state.release();
            let deadline = *since + timeout;
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.state.phase() == Phase::Idle {
            // The next request's first byte: its head now has the header timeout.
            self.state.set(Phase::Head);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bound(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bound(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.bound(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bound(cx, poll)
    }
}

/// A response body that marks its connection idle once it is done (written
/// to the end, or dropped when the connection fails).
pub struct Tracked<B> {
    body: B,
    state: Arc<ConnState>,
}

impl<B> Tracked<B> {
    pub fn new(body: B, state: Arc<ConnState>) -> Tracked<B> {
        Tracked { body, state }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.state.release();
        self.state.set(Phase::Idle);
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the cap, the crowd's idle connections go first: one host's flood
    /// closes its own, not another host's single keep-alive connection.
    #[tokio::test]
    async fn a_crowded_address_gives_up_its_connections_first() {
        let registry = Registry::new();
        let prometheus: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let Admitted::Room(_, first) = registry.admit(prometheus, 4) else {
            panic!("room");
        };
        first.set(Phase::Idle);
        for port in 1..=3 {
            let flood = SocketAddr::from(([127, 0, 0, 1], port));
            assert!(matches!(registry.admit(flood, 4), Admitted::Room(..)));
        }
        for port in 4..=20 {
            let flood = SocketAddr::from(([127, 0, 0, 1], port));
            match registry.admit(flood, 4) {
                Admitted::Evicted(_, _, victim) => {
                    assert_eq!(victim.ip(), flood.ip(), "the flood closes its own")
                }
                _ => panic!("at the cap, an idle connection makes room"),
            }
        }
        assert_eq!(registry.len(), 4);
        assert!(
            registry.lock().values().any(|c| c.peer == prometheus),
            "the other host's connection stays"
        );
    }
}
