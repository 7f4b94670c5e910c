//! Reads of files that come from outside (procfs, sysfs, fixture trees),
//! bounded in bytes and never left waiting on something that is not a file:
//! the open does not block (`O_NONBLOCK`, so a FIFO cannot hold it), and
//! anything but a regular file is refused before a byte is read. What is left,
//! a regular file on a filesystem that hangs, is bounded in time by callers:
//! they read through a [`Worker`], one blocking thread at a time, under a timeout.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A blocking job's view of the files: reads bounded as this module's
/// functions are, each path recorded before it is touched, so that whoever
/// waits for the job can say what it is stuck on. A [`Worker`] hands one to
/// each job it runs.
#[derive(Debug, Clone, Default)]
pub struct Fs {
    at: Arc<Mutex<PathBuf>>,
}

impl Fs {
    /// Records `path` as the one the job is about to touch.
    pub fn at(&self, path: &Path) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.as_mut_os_string().clear();
        at.push(path);
    }

    /// The path the job touched last.
    pub fn last(&self) -> String {
        let at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.display().to_string()
    }

    /// [`read`].
    pub fn read(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        self.at(path);
        read(path, max)
    }

    /// [`read_into`].
    pub fn read_into(&self, path: &Path, max: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        self.at(path);
        read_into(path, max, buf)
    }

    /// [`sysfs_text`].
    pub fn sysfs_text(&self, path: &Path) -> Option<String> {
        self.at(path);
        sysfs_text(path)
    }

    pub fn read_dir(&self, path: &Path) -> io::Result<std::fs::ReadDir> {
        self.at(path);
        std::fs::read_dir(path)
    }

    pub fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.at(path);
        std::fs::read_link(path)
    }

    pub fn metadata(&self, path: &Path) -> io::Result<std::fs::Metadata> {
        self.at(path);
        std::fs::metadata(path)
    }

    /// Whether `path` exists, a dangling symlink included (a fixture's
    /// `device/driver`).
    pub fn exists(&self, path: &Path) -> bool {
        self.at(path);
        std::fs::symlink_metadata(path).is_ok()
    }
}

/// Opens `path` for reading without blocking and checks it is a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file"),
        ));
    }
    Ok(file)
}

/// Reads the regular file at `path` into `buf` (cleared first), failing if it
/// holds more than `max` bytes. procfs hands out a page per `read`, so this
/// loops to EOF.
pub fn read_into(path: &Path, max: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let file = open_regular(path)?;
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(buf)?;
    if buf.len() > max {
        buf.clear();
        return Err(too_large(max));
    }
    Ok(())
}

/// [`read_into`] for a file on procfs, which is never a FIFO or a device:
/// without the check of its type (a `statx` per scrape).
pub fn read_procfs_into(path: &Path, max: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    File::open(path)?.take(limit).read_to_end(buf)?;
    if buf.len() > max {
        buf.clear();
        return Err(too_large(max));
    }
    Ok(())
}

fn too_large(max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than the limit of {max} bytes"),
    )
}

/// [`read_into`] a fresh buffer.
pub fn read(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_into(path, max, &mut buf)?;
    Ok(buf)
}

/// The largest sysfs attribute the kernel writes is one page.
pub const SYSFS_MAX: usize = 4096;

/// A sysfs attribute as text, without its trailing newline; `None` if it is
/// missing, unreadable, not a regular file or longer than a page.
pub fn sysfs_text(path: &Path) -> Option<String> {
    let bytes = read(path, SYSFS_MAX).ok()?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    text.truncate(text.trim_end().len());
    Some(text)
}

/// Cuts `value` to at most `max` bytes, on a character boundary.
pub fn cap(mut value: String, max: usize) -> String {
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

/// Why a blocking job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("a blocking read panicked: {0}")]
    Panicked(String),
    #[error("no answer within {after:?} while reading {path}")]
    Timeout { path: String, after: Duration },
    #[error("an earlier read is still stuck on {path} (for {stuck_for:?})")]
    Stuck { path: String, stuck_for: Duration },
}

/// Runs blocking reads (sysfs, /proc, a net/dev off procfs, a socket's
/// path) on the blocking pool, one job at a time, each under a timeout that
/// counts from when it was asked for. A read that hangs in the kernel (a hung
/// filesystem) keeps its thread until it returns, and keeps its turn: while
/// it is overdue, new jobs fail at once, naming the path it is stuck on. So a
/// stuck path costs one thread per worker, however many callers ask.
pub struct Worker {
    timeout: Duration,
    /// One permit: the turn to run. A job holds it until its thread returns,
    /// even after its caller stopped waiting.
    turn: Arc<tokio::sync::Semaphore>,
    /// The job that holds the turn.
    running: Arc<Mutex<Option<Job>>>,
}

struct Job {
    started: Instant,
    /// What the job touches.
    fs: Fs,
}

impl Job {
    fn path(&self) -> String {
        self.fs.last()
    }
}

impl Worker {
    pub fn new(timeout: Duration) -> Worker {
        Worker {
            timeout,
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
            running: Arc::default(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The running job, if it is overdue: an error that names its path.
    fn stuck(&self) -> Option<WorkerError> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let job = running.as_ref()?;
        let stuck_for = job.started.elapsed();
        (stuck_for > self.timeout).then(|| WorkerError::Stuck {
            path: job.path(),
            stuck_for,
        })
    }

    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Fs) -> T + Send + 'static,
    ) -> Result<T, WorkerError> {
        if let Some(stuck) = self.stuck() {
            return Err(stuck);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let turn =
            match tokio::time::timeout_at(deadline, Arc::clone(&self.turn).acquire_owned()).await {
                Ok(Ok(turn)) => turn,
                // The semaphore is never closed; waiting past the deadline means
                // the job ahead overran it.
                _ => {
                    return Err(self.stuck().unwrap_or_else(|| WorkerError::Timeout {
                        path: "(waiting for an earlier read)".into(),
                        after: self.timeout,
                    }));
                }
            };
        let fs = Fs::default();
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job {
            started: Instant::now(),
            fs: fs.clone(),
        });
        let running = Arc::clone(&self.running);
        let progress = fs.clone();
        let handle = tokio::task::spawn_blocking(move || {
            // Given back however the job ends, even if nobody awaits it any more.
            // The turn (a field) goes back after the job is marked done.
            struct Done {
                running: Arc<Mutex<Option<Job>>>,
                _turn: tokio::sync::OwnedSemaphorePermit,
            }
            impl Drop for Done {
                fn drop(&mut self) {
                    self.running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                }
            }
            let _done = Done {
                running,
                _turn: turn,
            };
            job(&progress)
        });
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(WorkerError::Panicked(e.to_string())),
            Err(_) => Err(WorkerError::Timeout {
                path: fs.last(),
                after: self.timeout,
            }),
        }
    }

    /// The path the running job last touched, if a job runs.
    pub fn stuck_on(&self) -> Option<String> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.as_ref().map(Job::path)
    }
}

/// Connects to the unix socket at `path` through `worker`: `connect(2)` looks
/// the path up in the calling thread even on a non-blocking socket, and under
/// a hung mount that lookup never returns.
pub async fn connect_unix(worker: &Worker, path: &Path) -> io::Result<tokio::net::UnixStream> {
    let owned = path.to_owned();
    let stream = worker
        .run(move |fs| {
            fs.at(&owned);
            let stream = std::os::unix::net::UnixStream::connect(&owned)?;
            stream.set_nonblocking(true)?;
            Ok::<_, io::Error>(stream)
        })
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::TimedOut, e.to_string()))??;
    tokio::net::UnixStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn refuses_what_is_not_a_file_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = read(&fifo, 100).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        let err = read(dir.path(), 100).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(read(Path::new("/dev/zero"), 100).is_err(), "a device");
    }

    #[test]
    fn bounds_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read(&f, 10).unwrap(), b"0123456789");
        let err = read(&f, 9).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        std::fs::write(&f, "up\n").unwrap();
        assert_eq!(sysfs_text(&f).as_deref(), Some("up"));
        std::fs::write(&f, "x".repeat(SYSFS_MAX + 1)).unwrap();
        assert_eq!(sysfs_text(&f), None, "longer than a sysfs page");
    }

    /// A job that never returns (a read stuck in the kernel) keeps one thread:
    /// jobs asked for at the same moment wait for their turn, and once it is
    /// overdue they fail at once and name its path, instead of each taking a
    /// thread of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_job_costs_one_thread_and_is_named() {
        let worker = Arc::new(Worker::new(Duration::from_millis(300)));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let started = Arc::new(AtomicU64::new(0));
        let stuck = {
            let (worker, count) = (Arc::clone(&worker), Arc::clone(&started));
            tokio::spawn(async move {
                worker
                    .run(move |fs| {
                        count.fetch_add(1, Ordering::Relaxed);
                        fs.at(Path::new("/sys/class/net/eth0/operstate"));
                        let _ = hold.recv();
                    })
                    .await
            })
        };
        while started.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // Fifty callers within the stuck job's timeout (scrapes at once).
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let (worker, count) = (Arc::clone(&worker), Arc::clone(&started));
                tokio::spawn(async move {
                    worker
                        .run(move |_| count.fetch_add(1, Ordering::Relaxed))
                        .await
                })
            })
            .collect();
        let err = stuck.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, WorkerError::Timeout { path, .. } if path.ends_with("eth0/operstate")),
            "{err}"
        );
        for caller in callers {
            let err = caller.await.unwrap().unwrap_err();
            assert!(err.to_string().contains("eth0/operstate"), "{err}");
        }
        for _ in 0..50 {
            let count = Arc::clone(&started);
            let err = worker
                .run(move |_| count.fetch_add(1, Ordering::Relaxed))
                .await
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("still stuck on /sys/class/net/eth0/operstate"),
                "{err}"
            );
        }
        assert_eq!(
            started.load(Ordering::Relaxed),
            1,
            "no job started beside the stuck one"
        );
        assert_eq!(
            worker.stuck_on().as_deref(),
            Some("/sys/class/net/eth0/operstate")
        );
        release.send(()).unwrap();
        let back = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            worker.stuck_on().is_none()
        });
        assert!(back, "the stuck job returned");
        assert_eq!(worker.run(|_| 7).await.unwrap(), 7, "and jobs run again");
    }

    #[test]
    fn caps_on_char_boundaries() {
        assert_eq!(cap("abcdef".into(), 4), "abcd");
        assert_eq!(cap("aé".into(), 2), "a", "é is two bytes");
        assert_eq!(cap("ab".into(), 4), "ab");
    }
}
