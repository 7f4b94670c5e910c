//! TrueNAS's middleware, through its client `midclt`: `midclt call <method>`
//! prints the result as JSON. midclt takes one method per process and starts
//! a Python interpreter each time, so this asks only for what a resolver
//! needs and remembers which methods this release lacks (`vm.query` is gone
//! on 25.04.0-1, `container.query` arrives with 26, `virt.instance.query`
//! leaves with it): asking for one of those is "nothing of that kind here",
//! answered without a process from then on.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::command::{CommandError, Runner};

/// midclt's messages for a method the middleware does not have: the
/// JSON-RPC API of 25.04 and later says `Method does not exist`; the
/// websocket API of 24.x says `[ENOMETHOD] Service 'container' not found`
/// (or `Method 'query' not found in 'vm'`).
const NO_SUCH_METHOD: [&str; 2] = ["Method does not exist", "[ENOMETHOD]"];

/// What the middleware said to one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Answers,
    Absent,
}

pub struct Middleware {
    /// The client and its arguments before the method (`midclt call`).
    argv: Vec<String>,
    runner: Runner,
    /// Every method anyone will ask for, so the host's answer can be logged
    /// once, in one line, when each has been tried.
    expected: Vec<&'static str>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    known: BTreeMap<&'static str, Known>,
    /// The client itself is missing: not a TrueNAS host.
    no_client: bool,
    logged: bool,
}

impl Middleware {
    pub fn new(argv: Vec<String>, runner: Runner, expected: Vec<&'static str>) -> Middleware {
        Middleware {
            argv,
            runner,
            expected,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `midclt call <method>`'s output, or `None` if this host has no such
    /// method (or no middleware at all). The call gets `budget` at most.
    pub async fn call(
        &self,
        method: &'static str,
        budget: Duration,
    ) -> Result<Option<String>, CommandError> {
        {
            let state = self.state();
            if state.no_client || state.known.get(method) == Some(&Known::Absent) {
                return Ok(None);
            }
        }
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
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(5);
    use crate::telemetry::Telemetry;

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
        let runner = Runner::new(None, Duration::from_secs(5), 1 << 20, &Telemetry::new());
        Middleware::new(
            vec![script.display().to_string(), "call".into()],
            runner,
            vec!["vm.query", "container.query", "virt.instance.query"],
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
        let runner = Runner::new(None, Duration::from_secs(5), 1 << 20, &Telemetry::new());
        let m = Middleware::new(
            vec!["/nonexistent/midclt".into(), "call".into()],
            runner,
            vec![],
        );
        assert_eq!(m.call("vm.query", BUDGET).await.unwrap(), None);
    }
}
