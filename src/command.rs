//! Runs an external tool (`midclt`, `virsh`) for a source: optionally inside a
//! chroot, bounded by a timeout, killed and reaped past it. The crate's only
//! `unsafe` outside `main` (the chroot between fork and exec) is here.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

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
    #[error("{command}: exited with {status}: {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// Runs `argv` (inside `chroot_to` when given), bounded by `timeout`, and
/// returns its stdout. Past the timeout the child is killed (`kill_on_drop`)
/// and tokio reaps it.
pub async fn run(
    argv: &[String],
    chroot_to: Option<&Path>,
    timeout: Duration,
) -> Result<String, CommandError> {
    let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
    let command = argv.join(" ");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(root) = chroot_to {
        let root = CString::new(root.as_os_str().as_bytes()).map_err(|e| CommandError::Spawn {
            command: command.clone(),
            source: std::io::Error::other(e),
        })?;
        // SAFETY: only async-signal-safe calls (chroot, chdir) between fork and
        // exec; the path was allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(CommandError::Timeout { command, timeout }),
        Ok(Err(source)) => Err(CommandError::Spawn { command, source }),
        Ok(Ok(out)) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Ok(Ok(out)) => Err(CommandError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(200)
                .collect(),
        }),
    }
}
