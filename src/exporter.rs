//! The exporter as one value: configuration, the hub of snapshots, the
//! exporter's own metrics, and the two entry points built on them: starting
//! the resolver tasks, and producing one scrape.

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::hub::Hub;
use crate::resolver::{self, Health, Source};
use crate::scrape;
use crate::sources::topology::{self, TopologyError, TopologySnapshot};
use crate::telemetry::Telemetry;

pub struct ScrapeOutput {
    pub body: Vec<u8>,
    pub netdev_error: Option<io::Error>,
}

pub struct Exporter {
    pub config: Config,
    pub hub: Hub,
    pub telemetry: Telemetry,
    netdev_path: PathBuf,
    /// Size of the last response, to allocate the next one once.
    last_len: AtomicUsize,
    /// Whether the last net/dev read failed, so the log fires on change only.
    netdev_failing: AtomicBool,
}

thread_local! {
    // One read buffer per worker thread, reused across scrapes.
    static NETDEV_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(16 * 1024));
}

struct TopologySource {
    rootfs: PathBuf,
    procfs: PathBuf,
}

impl Source for TopologySource {
    type Snapshot = TopologySnapshot;
    type Error = TopologyError;
    const NAME: &'static str = "topology";

    async fn refresh(&self) -> Result<TopologySnapshot, TopologyError> {
        let (rootfs, procfs) = (self.rootfs.clone(), self.procfs.clone());
        match tokio::task::spawn_blocking(move || topology::read(&rootfs, &procfs)).await {
            Ok(result) => result,
            Err(join) => Err(TopologyError::Panicked(join.to_string())),
        }
    }
}

impl Exporter {
    pub fn new(config: Config) -> Arc<Exporter> {
        Arc::new(Exporter {
            netdev_path: config.procfs.join("1/net/dev"),
            hub: Hub::new(config.labels.clone()),
            telemetry: Telemetry::new(),
            config,
            last_len: AtomicUsize::new(0),
            netdev_failing: AtomicBool::new(false),
        })
    }

    fn topology_source(&self) -> TopologySource {
        TopologySource {
            rootfs: self.config.rootfs.clone(),
            procfs: self.config.procfs.clone(),
        }
    }

    /// Starts every enabled resolver on its own schedule.
    pub fn spawn_resolvers(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) {
        let topo = self.config.topology;
        if topo.enabled {
            let me = Arc::clone(self);
            tasks.spawn(resolver::run(
                self.topology_source(),
                topo.schedule,
                Arc::clone(&self.hub.wake_topology),
                Health::new(self.telemetry.resolver(TopologySource::NAME)),
                move |snapshot| me.hub.publish_topology(snapshot),
                shutdown.clone(),
            ));
        }
    }

    /// Refreshes every enabled resolver once, in the calling task (`--once`).
    pub async fn refresh_all_once(&self) {
        let topo = self.config.topology;
        if topo.enabled {
            let mut health = Health::new(self.telemetry.resolver(TopologySource::NAME));
            if let Some(s) =
                resolver::refresh_once(&self.topology_source(), topo.schedule.timeout, &mut health)
                    .await
            {
                self.hub.publish_topology(s);
            }
        }
    }

    /// One scrape: the `net_interface_*` families followed by the exporter's own
    /// metrics. If net/dev cannot be read the body holds only the latter and the
    /// error is returned beside it; the caller decides what that means (`--once`
    /// exits non-zero, the server still answers).
    pub fn scrape(&self) -> ScrapeOutput {
        let started = Instant::now();
        let mut out = Vec::with_capacity(self.last_len.load(Ordering::Relaxed) + 4096);
        let result = NETDEV_BUF.with_borrow_mut(|buf| {
            // procfs is memory-backed and answers in ~100 µs: reading inline is
            // cheaper than a hop to the blocking pool.
            scrape::read_netdev(&self.netdev_path, buf)?;
            let table = self.hub.table();
            let stats = scrape::join_and_write(buf, &table, self.hub.settings(), &mut out);
            Ok::<_, io::Error>(stats)
        });
        match &result {
            Ok(stats) => {
                if stats.malformed > 0 {
                    self.telemetry.malformed_lines.increment(stats.malformed);
                }
                if stats.unknown > 0 {
                    self.hub.wake_for_unknown();
                }
                if self.netdev_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.netdev_path.display(), "net/dev readable again");
                }
            }
            Err(e) => {
                self.telemetry.read_errors.increment(1);
                if !self.netdev_failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(path = %self.netdev_path.display(), error = %e, "cannot read net/dev; serving only the exporter's own metrics");
                }
            }
        }
        self.telemetry
            .scrape_duration
            .record(started.elapsed().as_secs_f64());
        self.telemetry.render_to(&mut out);
        self.last_len.store(out.len(), Ordering::Relaxed);
        ScrapeOutput {
            body: out,
            netdev_error: result.err().map(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", self.netdev_path.display()),
                )
            }),
        }
    }
}
