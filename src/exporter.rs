//! The exporter as one value: configuration, the hub of snapshots, the
//! exporter's own metrics, and the two entry points built on them: starting
//! the resolver tasks, and producing one scrape.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::compose::LabelTable;
use crate::compose::Owners;
use crate::config::Config;
use crate::config::ResolverConfig;
use crate::hub::{Hub, OwnerSource};
use crate::resolver::{self, Health, Source};
use crate::scrape::{self, JoinStats, Scrape};
use crate::sources::docker::DockerSource;
use crate::sources::lxc::LxcSource;
use crate::sources::topology::TopologySource;
use crate::sources::vm::VmSource;
use crate::telemetry::Telemetry;

pub struct Exporter {
    pub config: Config,
    pub hub: Hub,
    pub telemetry: Telemetry,
    netdev_path: PathBuf,
    /// Size of the last net/dev read, to allocate the next buffer once.
    last_netdev_len: AtomicUsize,
    /// Whether the last net/dev read failed, so the log fires on change only.
    netdev_failing: AtomicBool,
}

impl Exporter {
    pub fn new(config: Config) -> Arc<Exporter> {
        Arc::new(Exporter {
            netdev_path: config.procfs.join("1/net/dev"),
            hub: Hub::new(config.labels.clone()),
            telemetry: Telemetry::new(),
            config,
            last_netdev_len: AtomicUsize::new(0),
            netdev_failing: AtomicBool::new(false),
        })
    }

    fn topology_source(&self) -> TopologySource {
        TopologySource::new(&self.config.rootfs, &self.config.procfs)
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
        if let Some(docker) = self.docker_source() {
            // An engine event also changes sysfs (a veth comes or goes).
            let wakes = vec![
                Arc::clone(&self.hub.wake_docker),
                Arc::clone(&self.hub.wake_topology),
            ];
            tasks.spawn(Arc::clone(&docker).watch_events(wakes, shutdown.clone()));
            let wake = Arc::clone(&self.hub.wake_docker);
            self.spawn_owner(
                tasks,
                shutdown,
                docker,
                self.config.docker,
                wake,
                OwnerSource::Docker,
            );
        }
        if let Some(vm) = self.vm_source() {
            let wake = Arc::clone(&self.hub.wake_vm);
            self.spawn_owner(tasks, shutdown, vm, self.config.vm, wake, OwnerSource::Vm);
        }
        if let Some(lxc) = self.lxc_source() {
            let wake = Arc::clone(&self.hub.wake_lxc);
            self.spawn_owner(
                tasks,
                shutdown,
                lxc,
                self.config.lxc,
                wake,
                OwnerSource::Lxc,
            );
        }
    }

    fn spawn_owner<S: Source<Snapshot = Owners>>(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
        source: S,
        config: ResolverConfig,
        wake: Arc<Notify>,
        slot: OwnerSource,
    ) {
        let me = Arc::clone(self);
        tasks.spawn(resolver::run(
            source,
            config.schedule,
            wake,
            Health::new(self.telemetry.resolver(S::NAME)),
            move |owners| me.hub.publish_owners(slot, owners),
            shutdown.clone(),
        ));
    }

    fn docker_source(&self) -> Option<Arc<DockerSource>> {
        let socket = self
            .config
            .docker_socket
            .as_deref()
            .filter(|_| self.config.docker.enabled)?;
        let timeout = self.config.docker.schedule.timeout;
        Some(DockerSource::new(socket, &self.config.procfs, timeout))
    }

    fn vm_source(&self) -> Option<VmSource> {
        let c = &self.config;
        c.vm.enabled
            .then(|| VmSource::new(c.vm_settings.clone(), &c.rootfs, &c.procfs))
    }

    fn lxc_source(&self) -> Option<LxcSource> {
        self.config
            .lxc
            .enabled
            .then(|| LxcSource::new(&self.config.procfs))
    }

    /// Refreshes every enabled resolver once, in the calling task (`--once`).
    pub async fn refresh_all_once(&self) {
        let topo = self.config.topology;
        if topo.enabled {
            let mut health = Health::new(self.telemetry.resolver(TopologySource::NAME));
            let source = self.topology_source();
            if let Some(s) =
                resolver::refresh_once(&source, topo.schedule.timeout, &mut health).await
            {
                self.hub.publish_topology(s);
            }
        }
        if let Some(docker) = self.docker_source() {
            self.owner_once(&docker, self.config.docker, OwnerSource::Docker)
                .await;
        }
        if let Some(vm) = self.vm_source() {
            self.owner_once(&vm, self.config.vm, OwnerSource::Vm).await;
        }
        if let Some(lxc) = self.lxc_source() {
            self.owner_once(&lxc, self.config.lxc, OwnerSource::Lxc)
                .await;
        }
    }

    async fn owner_once<S: Source<Snapshot = Owners>>(
        &self,
        source: &S,
        config: ResolverConfig,
        slot: OwnerSource,
    ) {
        let mut health = Health::new(self.telemetry.resolver(S::NAME));
        if let Some(owners) =
            resolver::refresh_once(source, config.schedule.timeout, &mut health).await
        {
            self.hub.publish_owners(slot, owners);
        }
    }

    /// One scrape: the `net_interface_*` families followed by the exporter's own
    /// metrics, as a body that writes itself chunk by chunk. If net/dev cannot
    /// be read the body holds only the own metrics and the error is returned
    /// beside it; the caller decides what that means (`--once` exits non-zero,
    /// the server still answers).
    pub fn scrape(self: &Arc<Self>) -> ScrapeOutput {
        let started = Instant::now();
        let mut netdev = Vec::with_capacity(self.last_netdev_len.load(Ordering::Relaxed) + 1024);
        let (scrape, netdev_error) = match scrape::read_netdev(&self.netdev_path, &mut netdev) {
            Ok(()) => {
                self.last_netdev_len.store(netdev.len(), Ordering::Relaxed);
                let scrape = Scrape::new(&netdev, self.hub.table(), self.hub.settings());
                self.after_join(&scrape.stats);
                (Some(scrape), None)
            }
            Err(e) => {
                self.telemetry.read_errors.increment(1);
                if !self.netdev_failing.swap(true, Ordering::Relaxed) {
                    self.telemetry.state_changed();
                    tracing::error!(path = %self.netdev_path.display(), error = %e, "cannot read net/dev; serving only the exporter's own metrics");
                }
                let e = io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", self.netdev_path.display()),
                );
                (None, Some(e))
            }
        };
        ScrapeOutput {
            body: ScrapeBody {
                exporter: Arc::clone(self),
                scrape,
                started,
                done: false,
            },
            netdev_error,
        }
    }

    fn after_join(&self, stats: &JoinStats) {
        if stats.malformed > 0 {
            self.telemetry.malformed_lines.increment(stats.malformed);
        }
        if stats.unknown > 0 {
            self.hub.wake_for_unknown();
        }
        if self.netdev_failing.swap(false, Ordering::Relaxed) {
            self.telemetry.state_changed();
            tracing::info!(path = %self.netdev_path.display(), "net/dev readable again");
        }
    }
}

/// Size at which a response chunk is handed to the server: large enough that
/// a 50-interface scrape is one chunk, small enough to bound memory.
const CHUNK: usize = 128 * 1024;

pub struct ScrapeOutput {
    pub body: ScrapeBody,
    pub netdev_error: Option<io::Error>,
}

/// The response body: an iterator of chunks, the last of which carries the
/// exporter's own metrics (including this scrape's duration).
pub struct ScrapeBody {
    exporter: Arc<Exporter>,
    scrape: Option<Scrape<Arc<LabelTable>>>,
    started: Instant,
    done: bool,
}

impl ScrapeBody {
    /// The whole body in one buffer (`--once`, tests).
    pub fn into_vec(self) -> Vec<u8> {
        self.flatten().collect()
    }
}

impl Iterator for ScrapeBody {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let hint = self.scrape.as_ref().map_or(0, |s| s.remaining_hint());
        let mut out = Vec::with_capacity(hint.min(CHUNK) + 8 * 1024);
        if let Some(scrape) = &mut self.scrape
            && scrape.write_chunk(&mut out, CHUNK)
        {
            return Some(out);
        }
        self.done = true;
        let telemetry = &self.exporter.telemetry;
        telemetry
            .scrape_duration
            .record(self.started.elapsed().as_secs_f64());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            telemetry
                .tasks
                .set(runtime.metrics().num_alive_tasks() as f64);
        }
        telemetry.render_to(&mut out);
        Some(out)
    }
}
