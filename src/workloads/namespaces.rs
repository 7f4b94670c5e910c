//! Traffic of containers that have a network namespace of their own but no
//! host interface (a macvlan or ipvlan app: its traffic shows only on the
//! parent NIC), from their namespace's `net/dev`, for hosts where the
//! kernel does not count per cgroup ([`crate::workloads`] covers them
//! there). The composer picks them ([`namespace_only`]); each scrape reads
//! one small procfs file per such container ([`NamespaceReader`]), before
//! its body is written and off the async threads, and the body writes what
//! was read ([`NamespaceCounts`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bounded::{Fs, Worker};
use crate::expose::telemetry::{Limit, LimitMetric, Telemetry};
use crate::resolve::sources::Claims;
use crate::workloads::accounting::Counts;

/// One container whose traffic is its namespace's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceWorkload {
    /// A process in the namespace.
    pub pid: u32,
    /// `instance_type="..",<owner label>="..",app=".."`, as a workload's.
    pub rendered: Box<str>,
}

/// The containers that own a network namespace and are not among
/// `claimants`, the owners that hold an interface: their bytes are nowhere
/// else.
pub fn namespace_only(
    claimants: &HashSet<&str>,
    claims: &[&Claims],
    owner_label: &str,
) -> Vec<NamespaceWorkload> {
    let mut list: Vec<NamespaceWorkload> = Vec::new();
    for (&pid, claim) in claims.iter().flat_map(|c| &c.by_netns) {
        if claimants.contains(claim.instance.as_str()) || list.iter().any(|w| w.pid == pid) {
            continue;
        }
        list.push(NamespaceWorkload {
            pid,
            rendered: crate::workloads::render(
                owner_label,
                claim.kind.as_str(),
                &claim.instance,
                &claim.app,
            ),
        });
    }
    list.sort_by(|a, b| a.rendered.cmp(&b.rendered));
    list
}

/// The sum of a namespace's interfaces but `lo`, from its `net/dev`.
pub fn namespace_counts(netdev: &[u8]) -> Counts {
    let mut c = Counts::default();
    for (name, counters) in crate::expose::netdev::parse(netdev).flatten() {
        if name == b"lo" {
            continue;
        }
        let v = counters.values;
        c.rx_bytes += v[0];
        c.tx_bytes += v[1];
        c.rx_packets += v[2];
        c.tx_packets += v[3];
    }
    c
}

/// A namespace's `net/dev` is a line per interface: a few hundred bytes.
const NETDEV_MAX: usize = 256 * 1024;

/// How one container's `net/dev` is read on the worker's thread.
type ReadFn = fn(&Fs, &Path, &mut Vec<u8>) -> io::Result<()>;

/// Bounded in bytes; refuses what is not a regular file, so a FIFO cannot
/// hold a thread.
fn read_netdev(fs: &Fs, path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    fs.read_into(path, NETDEV_MAX, buf)
}

/// Reads the namespaces' `net/dev` for a scrape. Each container has a
/// [`Worker`] of its own, so a read that hangs (a hung mount) holds one
/// thread and that container's turn only: it is named, counted
/// (`limit="netdev_timeout"`) and left out until the read returns, while the
/// other containers and the scrape go on. The reads run side by side, so a
/// scrape waits at most one deadline.
pub struct NamespaceReader {
    procfs: PathBuf,
    timeout: Duration,
    /// By pid, the containers of the latest list.
    containers: Mutex<HashMap<u32, Container>>,
    timeouts: Arc<LimitMetric>,
    read: ReadFn,
}

/// One container's reader, and how its last read went.
struct Container {
    worker: Arc<Worker>,
    /// Set while its reads fail, so the log fires on change only; `true`
    /// where that was worth a warning (not a container that stopped).
    failing: Option<bool>,
}

impl Container {
    fn new(timeout: Duration) -> Container {
        Container {
            worker: Arc::new(Worker::new(timeout)),
            failing: None,
        }
    }
}

/// What one scrape read: the containers that answered, with their counts,
/// for the body to write.
pub struct NamespaceCounts {
    list: Arc<Vec<NamespaceWorkload>>,
    /// Index into `list`, and the counts.
    counts: Vec<(usize, Counts)>,
}

impl NamespaceCounts {
    /// Writes the workload families for the containers read; nothing if
    /// none was.
    pub fn write(&self, out: &mut Vec<u8>) {
        let rows: Vec<(&str, Counts)> = self
            .counts
            .iter()
            .filter_map(|&(i, c)| Some((&*self.list.get(i)?.rendered, c)))
            .collect();
        if !rows.is_empty() {
            crate::workloads::write_families(out, &rows);
        }
    }
}

impl NamespaceReader {
    /// Reads `<procfs>/<pid>/net/dev`, each read within `timeout`.
    pub fn new(procfs: &Path, timeout: Duration, telemetry: &Telemetry) -> NamespaceReader {
        NamespaceReader {
            procfs: procfs.to_owned(),
            timeout,
            containers: Mutex::default(),
            timeouts: telemetry.limit(Limit::NetdevTimeout),
            read: read_netdev,
        }
    }

    /// Reads each container's counters. A container whose file cannot be
    /// read (it stopped since the last refresh, or its read hangs) is left
    /// out.
    pub async fn read(&self, list: Arc<Vec<NamespaceWorkload>>) -> NamespaceCounts {
        if list.is_empty() {
            return NamespaceCounts {
                list,
                counts: Vec::new(),
            };
        }
        let workers = self.workers_for(&list);
        let reads = list.iter().zip(workers).map(|(w, worker)| {
            let path = self.procfs.join(format!("{}/net/dev", w.pid));
            let read = self.read;
            async move {
                let job = worker.run(move |fs| {
                    let mut buf = Vec::new();
                    read(fs, &path, &mut buf).map(|()| namespace_counts(&buf))
                });
                job.await
            }
        });
        let results = futures_util::future::join_all(reads).await;
        let mut counts = Vec::with_capacity(list.len());
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        for (i, (w, result)) in list.iter().zip(results).enumerate() {
            let failing = &mut containers
                .entry(w.pid)
                .or_insert_with(|| Container::new(self.timeout))
                .failing;
            let (error, warn) = match result {
                Ok(Ok(c)) => {
                    match failing.take() {
                        Some(true) => {
                            tracing::info!(pid = w.pid, labels = %w.rendered, "a container's net/dev is readable again")
                        }
                        Some(false) => {
                            tracing::debug!(pid = w.pid, "a container's net/dev is back")
                        }
                        None => {}
                    }
                    counts.push((i, c));
                    continue;
                }
                Ok(Err(e)) => {
                    // Not found: the container stopped since the last
                    // refresh, and the next one drops it.
                    let warn = e.kind() != io::ErrorKind::NotFound;
                    (e.to_string(), warn)
                }
                Err(e) => {
                    self.timeouts.hit(&e);
                    (e.to_string(), true)
                }
            };
            let before = failing.replace(warn);
            if warn && before != Some(true) {
                tracing::warn!(pid = w.pid, labels = %w.rendered, %error, "cannot read a container's net/dev; its traffic is left out until it can be read");
            } else if before.is_none() {
                tracing::debug!(pid = w.pid, %error, "a container's net/dev is gone (it stopped)");
            }
        }
        NamespaceCounts { list, counts }
    }

    /// The worker of each container of `list`, in its order; the workers of
    /// containers no longer listed are dropped (a read of theirs that is
    /// still stuck keeps its thread until it returns).
    fn workers_for(&self, list: &[NamespaceWorkload]) -> Vec<Arc<Worker>> {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        containers.retain(|pid, _| list.iter().any(|w| w.pid == *pid));
        list.iter()
            .map(|w| {
                let container = containers
                    .entry(w.pid)
                    .or_insert_with(|| Container::new(self.timeout));
                Arc::clone(&container.worker)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_its_interfaces_but_lo() {
        let netdev = b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n\
            lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
            eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n\
            eth1: 1 1 0 0 0 0 0 0 2 2 0 0 0 0 0 0\n";
        assert_eq!(
            namespace_counts(netdev),
            Counts {
                rx_bytes: 1001,
                rx_packets: 11,
                tx_bytes: 2002,
                tx_packets: 22
            }
        );
    }
    const NETDEV: &[u8] = b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n\
        lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
        eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n";

    fn workload(pid: u32, name: &str) -> NamespaceWorkload {
        NamespaceWorkload {
            pid,
            rendered: crate::workloads::render("instance", "docker", name, ""),
        }
    }

    fn text(counts: &NamespaceCounts) -> String {
        let mut out = Vec::new();
        counts.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Opens without `O_NONBLOCK`, as a read on a hung mount waits: a FIFO
    /// that nobody writes holds it in `open`.
    fn read_blocking(fs: &Fs, path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
        fs.at(path);
        crate::bounded::read_procfs_into(path, NETDEV_MAX, buf)
    }

    /// One container's read hangs: the scrape waits one deadline the first
    /// time and not at all after, counts it, and writes the others; once the
    /// read returns, the container is read again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_or_failed_read_leaves_only_its_container_out() {
        let procfs = tempfile::tempdir().unwrap();
        let dir = |pid: u32| {
            let net = procfs.path().join(format!("{pid}/net"));
            std::fs::create_dir_all(&net).unwrap();
            net.join("dev")
        };
        std::fs::write(dir(10), NETDEV).unwrap();
        let fifo = dir(20);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // pid 30 stopped: no directory.
        let list = Arc::new(vec![
            workload(10, "web"),
            workload(20, "stuck"),
            workload(30, "gone"),
        ]);
        let telemetry = Telemetry::new();
        let hits = |t: &Telemetry| {
            t.render_fresh()
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        r#"truenas_net_exporter_limit_hits_total{limit="netdev_timeout"} "#,
                    )
                })
                .map(str::to_owned)
        };
        let timeout = Duration::from_millis(300);

        // As the exporter reads: the FIFO is refused at once.
        let reader = NamespaceReader::new(procfs.path(), timeout, &telemetry);
        let started = std::time::Instant::now();
        let read = reader.read(Arc::clone(&list)).await;
        assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
        assert_eq!(read.counts.len(), 1);
        assert_eq!(hits(&telemetry).as_deref(), Some("0"));

        // A read that hangs.
        let reader = NamespaceReader {
            read: read_blocking,
            ..NamespaceReader::new(procfs.path(), timeout, &telemetry)
        };
        let started = std::time::Instant::now();
        let first = reader.read(Arc::clone(&list)).await;
        let waited = started.elapsed();
        assert!(waited >= timeout && waited < timeout * 5, "{waited:?}");
        assert_eq!(
            text(&first),
            concat!(
                "# HELP net_workload_rx_bytes_total Bytes the workload received: its sockets' (IP header and payload), or its network namespace's interfaces'.\n",
                "# TYPE net_workload_rx_bytes_total counter\n",
                "net_workload_rx_bytes_total{instance_type=\"docker\",instance=\"web\",app=\"\"} 1000\n",
                "# HELP net_workload_tx_bytes_total Bytes the workload sent: its sockets' (IP header and payload), or its network namespace's interfaces'.\n",
                "# TYPE net_workload_tx_bytes_total counter\n",
                "net_workload_tx_bytes_total{instance_type=\"docker\",instance=\"web\",app=\"\"} 2000\n",
                "# HELP net_workload_rx_packets_total Packets the workload received (its sockets' count a GRO super-packet once).\n",
                "# TYPE net_workload_rx_packets_total counter\n",
                "net_workload_rx_packets_total{instance_type=\"docker\",instance=\"web\",app=\"\"} 10\n",
                "# HELP net_workload_tx_packets_total Packets the workload sent (its sockets' count a GSO super-packet once).\n",
                "# TYPE net_workload_tx_packets_total counter\n",
                "net_workload_tx_packets_total{instance_type=\"docker\",instance=\"web\",app=\"\"} 20\n",
            )
        );
        assert_eq!(hits(&telemetry).as_deref(), Some("1"));
        // Still stuck: the next scrape does not wait for it.
        let started = std::time::Instant::now();
        let second = reader.read(Arc::clone(&list)).await;
        assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
        assert_eq!(text(&second), text(&first));
        assert_eq!(hits(&telemetry).as_deref(), Some("2"));

        // The read returns (a writer comes and goes); the FIFO becomes a file.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        let worker = Arc::clone(&reader.containers.lock().unwrap()[&20].worker);
        let back = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            worker.stuck_on().is_none()
        });
        assert!(back, "the stuck read returned");
        std::fs::remove_file(&fifo).unwrap();
        std::fs::write(&fifo, NETDEV).unwrap();
        let third = reader.read(Arc::clone(&list)).await;
        assert_eq!(third.counts.len(), 2);
        assert!(text(&third).contains(r#"{instance_type="docker",instance="stuck",app=""} 1000"#));
        let failing = |reader: &NamespaceReader| -> Vec<u32> {
            let containers = reader.containers.lock().unwrap();
            let mut pids: Vec<u32> = containers
                .iter()
                .filter(|(_, c)| c.failing.is_some())
                .map(|(&pid, _)| pid)
                .collect();
            pids.sort();
            pids
        };
        assert_eq!(failing(&reader), [30]);

        // A container that leaves the list leaves its worker behind.
        let fewer = reader.read(Arc::new(vec![workload(10, "web")])).await;
        assert_eq!(fewer.counts.len(), 1);
        assert_eq!(reader.containers.lock().unwrap().len(), 1);
        assert!(failing(&reader).is_empty());
    }
}
