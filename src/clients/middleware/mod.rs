//! TrueNAS's middleware: the resolvers ask it for its VMs and containers.
//! It is asked over its own unix socket where it has one ([`socket`]: one
//! connection, with events that wake the resolvers), and through its client
//! `midclt` otherwise (`midclt call <method>` prints the result as JSON,
//! starting a Python interpreter each time). This remembers which methods
//! this release lacks (`vm.query` is gone on 25.04.0-1, `container.query`
//! arrives with 26, `virt.instance.query` leaves with it): asking for one of
//! those is "nothing of that kind here", answered without a process from
//! then on.

pub mod protocol;
pub mod socket;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use self::protocol::Outcome;
use self::socket::{SocketClient, SocketError};
use crate::clients::command::{CommandError, Runner};
use crate::expose::telemetry::SourceHealth;

/// midclt's messages for a method the middleware does not have: the
/// JSON-RPC API of 25.04 and later says `Method does not exist`; the
/// websocket API of 24.x says `[ENOMETHOD] Service 'container' not found`
/// (or `Method 'query' not found in 'vm'`).
const NO_SUCH_METHOD: [&str; 2] = ["Method does not exist", "[ENOMETHOD]"];

#[derive(Debug, thiserror::Error)]
pub enum MiddlewareError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the middleware's socket: {0}")]
    Socket(#[from] SocketError),
    #[error("the middleware answered {method} with an error: {message}")]
    Call {
        method: &'static str,
        message: String,
    },
}

/// What the middleware said to one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Answers,
    Absent,
}

/// Which way the middleware was last reached, for the log and
/// `truenas_net_exporter_source_up{resolver="middleware"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Path {
    Socket,
    Midclt,
}

/// `source_up` and `source_errors_total` of one way to the middleware: made
/// the first time that way is taken, so a host without a middleware socket
/// (or without midclt) has none for it.
pub struct PathMetrics(SourceHealth);

impl PathMetrics {
    /// The socket's and midclt's, as `resolver="middleware"`.
    pub fn both(telemetry: &crate::expose::telemetry::Telemetry) -> [PathMetrics; 2] {
        ["socket", "midclt"]
            .map(|source| PathMetrics(telemetry.source_health("middleware", source)))
    }
}

pub struct Middleware {
    /// The client and its arguments before the method (`midclt call`).
    argv: Vec<String>,
    runner: Runner,
    /// Every method anyone will ask for, so the host's answer can be logged
    /// once, in one line, when each has been tried.
    expected: Vec<&'static str>,
    /// The middleware's own socket, tried first; `None` when configured off.
    socket: Option<SocketClient>,
    /// Socket's, then midclt's.
    metrics: [PathMetrics; 2],
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    known: BTreeMap<&'static str, Known>,
    /// The client itself is missing: not a TrueNAS host.
    no_client: bool,
    logged: bool,
    path: Option<Path>,
}

impl Middleware {
    pub fn new(
        argv: Vec<String>,
        runner: Runner,
        expected: Vec<&'static str>,
        socket: Option<SocketClient>,
        metrics: [PathMetrics; 2],
    ) -> Middleware {
        Middleware {
            argv,
            runner,
            expected,
            socket,
            metrics,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer to `method` as JSON, or `None` if this host has no such
    /// method (or no middleware at all): over the socket while it is up,
    /// else from midclt. The call gets `budget` at most.
    pub async fn call(
        &self,
        method: &'static str,
        budget: Duration,
    ) -> Result<Option<String>, MiddlewareError> {
        if self.state().known.get(method) == Some(&Known::Absent) {
            return Ok(None);
        }
        if let Some(socket) = &self.socket {
            match socket.call(method, budget).await {
                Ok(outcome) => {
                    self.took(Path::Socket, Ok(()));
                    let answer = match outcome {
                        Outcome::Answer(json) => Some(json),
                        Outcome::NoMethod => None,
                        Outcome::Failed(message) => {
                            return Err(MiddlewareError::Call { method, message });
                        }
                    };
                    self.learned(method, answer.is_some());
                    return Ok(answer);
                }
                Err(SocketError::Unavailable(reason)) => {
                    // Absent, refusing, or reconnecting: midclt instead.
                    tracing::debug!(%reason, "middleware socket unavailable");
                    self.metrics[0].0.idle();
                }
                Err(e) => {
                    self.took(Path::Socket, Err(()));
                    return Err(e.into());
                }
            }
        }
        if self.state().no_client {
            return Ok(None);
        }
        let answer = self.via_midclt(method, budget).await;
        if !self.state().no_client {
            self.took(Path::Midclt, answer.as_ref().map(|_| ()).map_err(|_| ()));
        }
        Ok(answer?)
    }

    /// The socket's connection task, for the app to run until shutdown;
    /// `None` when the socket is configured off.
    pub fn connection(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.socket.as_ref().map(|s| s.connection(shutdown))
    }

    /// Whether this host has no middleware at all: no client, and the
    /// socket (if any) never answered. Its `None` answers then mean "no
    /// middleware here" rather than "no such method".
    pub fn absent(&self) -> bool {
        let state = self.state();
        state.no_client && state.path.is_none()
    }

    /// Whether the last answer came over the socket (so events keep the
    /// owners current and no process was started for it).
    pub fn over_socket(&self) -> bool {
        self.state().path == Some(Path::Socket)
    }

    /// Records which way worked (or failed) and says so when it changes.
    fn took(&self, path: Path, result: Result<(), ()>) {
        let [socket, midclt] = &self.metrics;
        let (this, other) = match path {
            Path::Socket => (socket, midclt),
            Path::Midclt => (midclt, socket),
        };
        match result {
            Ok(()) => {
                this.0.record(true);
                other.0.idle();
                let mut state = self.state();
                if state.path.as_ref() != Some(&path) {
                    match path {
                        Path::Socket => {
                            let protocol = self.socket.as_ref().and_then(SocketClient::protocol);
                            tracing::info!(
                                protocol = protocol.map_or("?", |p| p.name()),
                                "TrueNAS middleware: asked over its socket"
                            );
                        }
                        Path::Midclt => tracing::info!(
                            client = %self.argv[0],
                            "TrueNAS middleware: no socket to ask, asking midclt"
                        ),
                    }
                    state.path = Some(path);
                }
            }
            Err(()) => this.0.record(false),
        }
    }

    /// Records whether this release has `method`, and logs the host's
    /// methods once every expected one has been tried.
    fn learned(&self, method: &'static str, answers: bool) {
        let known = if answers {
            Known::Answers
        } else {
            Known::Absent
        };
        let mut state = self.state();
        state.known.insert(method, known);
        if !state.logged && self.expected.iter().all(|m| state.known.contains_key(m)) {
            state.logged = true;
            let list = |k| {
                let names: Vec<_> = state
                    .known
                    .iter()
                    .filter(|(_, v)| **v == k)
                    .map(|(m, _)| *m)
                    .collect();
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            };
            tracing::info!(
                answers = %list(Known::Answers),
                not_on_this_release = %list(Known::Absent),
                "TrueNAS middleware methods"
            );
        }
    }

    /// `midclt call <method>`.
    async fn via_midclt(
        &self,
        method: &'static str,
        budget: Duration,
    ) -> Result<Option<String>, CommandError> {
        let mut argv = self.argv.clone();
        argv.push(method.to_owned());
        let (result, known) = match self.runner.run_within(&argv, budget).await {
            Ok(out) => (Ok(Some(out)), Known::Answers),
            Err(CommandError::Failed { stderr, .. })
                if NO_SUCH_METHOD.iter().any(|m| stderr.contains(m)) =>
            {
                (Ok(None), Known::Absent)
            }
            Err(CommandError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let mut state = self.state();
                if !std::mem::replace(&mut state.no_client, true) {
                    tracing::info!(
                        client = %self.argv[0],
                        "no TrueNAS middleware client on this host: names come from the other sources"
                    );
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.learned(method, known == Known::Answers);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(5);
    use crate::expose::telemetry::Telemetry;

    /// A fake client: answers `vm.query`, fails `container.query` as 24.x
    /// does and `virt.instance.query` as 26 does, counting its runs.
    fn fake(dir: &std::path::Path) -> Middleware {
        let script = dir.join("midclt");
        let runs = dir.join("runs");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho run >> {runs}\ncase \"$2\" in\n\
                 vm.query) echo '[]' ;;\n\
                 container.query) echo \"[ENOMETHOD] Service 'container' not found\" >&2\n\
                 echo 'Traceback (most recent call last):' >&2; exit 1 ;;\n\
                 virt.instance.query) echo 'Method does not exist' >&2; exit 1 ;;\n\
                 *) echo 'boom' >&2; exit 1 ;;\nesac\n",
                runs = runs.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let telemetry = Telemetry::new();
        let runner = Runner::new(None, Duration::from_secs(5), 1 << 20, &telemetry);
        Middleware::new(
            vec![script.display().to_string(), "call".into()],
            runner,
            vec!["vm.query", "container.query", "virt.instance.query"],
            None,
            PathMetrics::both(&telemetry),
        )
    }

    #[tokio::test]
    async fn missing_methods_are_nothing_here_and_asked_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = fake(dir.path());
        assert_eq!(
            m.call("vm.query", BUDGET).await.unwrap().as_deref(),
            Some("[]\n")
        );
        for _ in 0..3 {
            assert_eq!(m.call("container.query", BUDGET).await.unwrap(), None);
            assert_eq!(m.call("virt.instance.query", BUDGET).await.unwrap(), None);
        }
        let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
        assert_eq!(
            runs.lines().count(),
            3,
            "each missing method was tried once"
        );
        let err = m.call("other.query", BUDGET).await.unwrap_err();
        assert!(
            err.to_string().contains("boom"),
            "a real failure is an error: {err}"
        );
    }

    #[tokio::test]
    async fn no_client_means_no_middleware() {
        let telemetry = Telemetry::new();
        let runner = Runner::new(None, Duration::from_secs(5), 1 << 20, &telemetry);
        let m = Middleware::new(
            vec!["/nonexistent/midclt".into(), "call".into()],
            runner,
            vec![],
            None,
            PathMetrics::both(&telemetry),
        );
        assert_eq!(m.call("vm.query", BUDGET).await.unwrap(), None);
        assert!(m.absent(), "no client and no socket: no middleware");
        let text = telemetry.render_fresh();
        assert!(
            !text.contains("truenas_net_exporter_source_up{resolver=\"middleware\""),
            "a middleware this host lacks has no source_up: {text}"
        );
    }

    /// midclt's series appear when it is first run; the socket's, which was
    /// never there, do not.
    #[tokio::test]
    async fn only_the_way_taken_has_series() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let mut m = fake(dir.path());
        m.metrics = PathMetrics::both(&telemetry);
        m.call("vm.query", BUDGET).await.unwrap();
        assert!(!m.absent());
        let text = telemetry.render_fresh();
        assert!(text.contains(
            "truenas_net_exporter_source_up{resolver=\"middleware\",source=\"midclt\"} 1"
        ));
        assert!(!text.contains("source=\"socket\""), "{text}");
    }
}
