//! Runs an external tool (`midclt`, `virsh`) for a source: optionally inside a
//! chroot, in a process group of its own, bounded in time and in output.
//! However it ends, the whole group is killed, so a tool's children cannot
//! outlive it, and the child is reaped. Its `unsafe` is the chroot between
//! fork and exec; the crate's other `unsafe` is `main`'s allocator setting
//! and the `bpf()` calls and mapped counters of `workloads::accounting::bpf`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::bounded::Worker;
use crate::expose::telemetry::{Limit, LimitMetric, Telemetry};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the command is empty")]
    Empty,
    #[error("{command}: cannot start: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command}: timed out after {timeout:?}; killed")]
    Timeout { command: String, timeout: Duration },
    #[error("{command}: output exceeds {max} bytes; killed")]
    TooMuchOutput { command: String, max: usize },
    #[error("{command}: exited with {status}: {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// How a command is run.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    /// Run inside this root (chroot) when given.
    pub chroot: Option<&'a Path>,
    pub timeout: Duration,
    /// stdout beyond this fails the command.
    pub max_output: usize,
    /// Starts the process: `fork` + `exec` wait for the program to be found,
    /// which under a hung mount (the host's root) never happens.
    pub spawner: &'a Worker,
}

/// Runs commands with fixed limits, counting each limit that trips.
pub struct Runner {
    chroot: Option<PathBuf>,
    timeout: Duration,
    max_output: usize,
    spawner: Worker,
    timeouts: Arc<LimitMetric>,
    overflows: Arc<LimitMetric>,
}

impl Runner {
    pub fn new(
        chroot: Option<PathBuf>,
        timeout: Duration,
        max_output: usize,
        telemetry: &Telemetry,
    ) -> Runner {
        Runner {
            chroot,
            timeout,
            max_output,
            spawner: Worker::new(timeout),
            timeouts: telemetry.limit(Limit::CommandTimeout),
            overflows: telemetry.limit(Limit::CommandOutput),
        }
    }

    /// Runs `argv` under the command timeout or `budget`, whichever is
    /// shorter: a lookup's budget within its resolver's refresh.
    pub async fn run_within(
        &self,
        argv: &[String],
        budget: Duration,
    ) -> Result<String, CommandError> {
        let limits = Limits {
            chroot: self.chroot.as_deref(),
            timeout: self.timeout.min(budget),
            max_output: self.max_output,
            spawner: &self.spawner,
        };
        let result = run(argv, limits).await;
        match &result {
            Err(e @ CommandError::Timeout { .. }) => self.timeouts.hit(e),
            Err(e @ CommandError::TooMuchOutput { .. }) => self.overflows.hit(e),
            _ => {}
        }
        result
    }
}

/// Of stderr only the start is kept, for the error message.
const STDERR_KEPT: usize = 4096;

/// After the tool exits, its output pipes get this long to reach end of file:
/// a child it left behind may hold them open, and is then killed with the group.
const DRAIN_GRACE: Duration = Duration::from_millis(250);

/// Runs `argv` and returns its stdout (lossy UTF-8).
pub async fn run(argv: &[String], limits: Limits<'_>) -> Result<String, CommandError> {
    let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
    let command = argv.join(" ");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(root) = limits.chroot {
        let root = CString::new(root.as_os_str().as_bytes()).map_err(|e| CommandError::Spawn {
            command: command.clone(),
            source: std::io::Error::other(e),
        })?;
        // SAFETY: only async-signal-safe calls (chroot, chdir) between fork and
        // exec; the path was allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::chroot(root.as_c_str())?;
                rustix::process::chdir(c"/")?;
                Ok(())
            });
        }
    }
    let at = PathBuf::from(program);
    // A caller that gives up while the spawn waits for its turn (a refresh
    // cancelled at shutdown, on a loaded machine) must not start the tool
    // afterwards: nobody would wait for it, and once the runtimes are gone
    // nobody would reap it.
    let wanted = Wanted(Arc::new(AtomicBool::new(true)));
    let still = Arc::clone(&wanted.0);
    let spawned = limits
        .spawner
        .run(move |fs| {
            fs.at(&at);
            if !still.load(Ordering::Acquire) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "the caller gave up before the spawn",
                ));
            }
            cmd.spawn()
        })
        .await
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string()))
        .and_then(|spawned| spawned);
    let mut child = spawned.map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    // Killed however this ends, the caller giving up on it (a dropped
    // future) included.
    let group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(CommandError::Spawn {
            command,
            source: std::io::Error::other("no pipes to the child"),
        });
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = tokio::time::timeout(limits.timeout, async {
        let mut output = Box::pin(async {
            tokio::try_join!(
                read_capped(stdout, &mut out, limits.max_output),
                read_capped(stderr, &mut err, STDERR_KEPT),
            )
        });
        // Output and exit, in either order; once the tool has exited, its
        // pipes get a short grace to close.
        let status = tokio::select! {
            read = &mut output => match read {
                Ok((true, _)) => child.wait().await,
                Ok((false, _)) => return Ok(None),
                Err(e) => Err(e),
            },
            status = child.wait() => match tokio::time::timeout(DRAIN_GRACE, &mut output).await {
                Ok(Ok((false, _))) => return Ok(None),
                Ok(Err(e)) => Err(e),
                Ok(Ok((true, _))) | Err(_) => status,
            },
        };
        status.map(Some)
    })
    .await;
    drop(group);
    match outcome {
        Err(_) => Err(CommandError::Timeout {
            command,
            timeout: limits.timeout,
        }),
        Ok(Err(source)) => Err(CommandError::Spawn { command, source }),
        Ok(Ok(None)) => Err(CommandError::TooMuchOutput {
            command,
            max: limits.max_output,
        }),
        Ok(Ok(Some(status))) if status.success() => Ok(String::from_utf8_lossy(&out).into_owned()),
        Ok(Ok(Some(status))) => Err(CommandError::Failed {
            command,
            status,
            stderr: String::from_utf8_lossy(&err)
                .trim()
                .chars()
                .take(200)
                .collect(),
        }),
    }
}

/// Reads `pipe` to its end into `buf`, keeping at most `max` bytes. Returns
/// whether everything fit; past `max` it stops reading.
async fn read_capped(
    pipe: impl AsyncRead + Unpin,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    pipe.take(limit).read_to_end(buf).await?;
    if buf.len() > max {
        buf.truncate(max);
        return Ok(false);
    }
    Ok(true)
}

/// Whether the caller still waits for a spawn: false once it is dropped.
struct Wanted(Arc<AtomicBool>);

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The tool's process group: SIGKILL to all of it when dropped (a no-op
/// once it is empty). The child itself is reaped by tokio (`kill_on_drop`).
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(group) = self.0.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    fn limits(timeout_ms: u64, max_output: usize) -> Limits<'static> {
        static SPAWNER: std::sync::LazyLock<Worker> =
            std::sync::LazyLock::new(|| Worker::new(Duration::from_secs(5)));
        Limits {
            chroot: None,
            timeout: Duration::from_millis(timeout_ms),
            max_output,
            spawner: &SPAWNER,
        }
    }

    #[tokio::test]
    async fn output_exit_status_and_stderr() {
        assert_eq!(
            run(&sh("echo hello"), limits(5000, 100)).await.unwrap(),
            "hello\n"
        );
        let err = run(&sh("echo broken >&2; exit 3"), limits(5000, 100))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exit status: 3") && err.contains("broken"),
            "{err}"
        );
        assert!(matches!(
            run(&[], limits(5000, 100)).await,
            Err(CommandError::Empty)
        ));
    }

    #[tokio::test]
    async fn endless_output_is_cut_and_the_tool_killed() {
        let err = run(&sh("yes"), limits(10_000, 1 << 16)).await.unwrap_err();
        assert!(
            matches!(err, CommandError::TooMuchOutput { max: 65536, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_child_holding_stdout_is_killed_with_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        // The tool prints, leaves a child holding its stdout, and exits.
        let script = format!(
            "echo done; sleep 600 & echo $! > {}; exit 0",
            pidfile.display()
        );
        let started = std::time::Instant::now();
        let out = run(&sh(&script), limits(5000, 100)).await.unwrap();
        assert_eq!(out, "done\n");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "did not wait for the child"
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let alive = || exists(pid) && !is_zombie(pid);
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !alive()
        });
        assert!(gone, "the grandchild {pid} outlived the command");
    }

    #[tokio::test]
    async fn a_hung_tool_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child");
        let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let err = run(&sh(&script), limits(300, 100)).await.unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !exists(pid) || is_zombie(pid)
        });
        assert!(gone, "the tool's child {pid} outlived the timeout");
    }

    /// A caller that gives up (its lookup's budget ran out) drops the
    /// future: the tool and its children go with it.
    #[tokio::test]
    async fn a_dropped_run_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child");
        let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let given_up = tokio::time::timeout(
            Duration::from_millis(500),
            run(&sh(&script), limits(60_000, 100)),
        )
        .await;
        assert!(given_up.is_err(), "still running at the caller's deadline");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !exists(pid) || is_zombie(pid)
        });
        assert!(gone, "the tool's child {pid} outlived the dropped run");
    }

    fn exists(pid: i32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    /// Killed but not yet reaped by its new parent.
    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    }
}
