//! The exporter as one value: its configuration, the hub of snapshots and the
//! exporter's own metrics. It builds the list of enabled resolvers (which
//! serving and `--once` both use) and produces scrapes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bounded::Worker;
use crate::clients::command::Runner;
use crate::clients::middleware::socket::{SocketClient, Watched};
use crate::clients::middleware::{Middleware, PathMetrics};
use crate::composer::LabelTable;
use crate::config::{Config, PeersConfig, Schedule, VmLookup};
use crate::expose::telemetry::{Failing, Telemetry, Turn};
use crate::hub::Hub;
use crate::resolve::sources::docker::DockerSource;
use crate::resolve::sources::incus::IncusSource;
use crate::resolve::sources::lxc::LxcSource;
use crate::resolve::sources::names::{NamesInputs, NamesSource, PeerNames};
use crate::resolve::sources::netlink::LinkWakes;
use crate::resolve::sources::topology::TopologySource;
use crate::resolve::sources::vm::VmSource;
use crate::resolve::sources::{Claims, ResolverId, Source};
use crate::resolve::wakes::{Cause, woken_by};
use crate::resolve::{AnyResolver, Publish, Resolver};
use crate::scrape::{JoinStats, NetdevReader, Scrape};
use crate::workloads::accounting::peers::PeerCounting;
use crate::workloads::accounting::{Accounting, Counts};
use crate::workloads::cgroups::{CgroupSource, find_mount};
use crate::workloads::namespaces::{NamespaceCounts, NamespaceReader};
use crate::workloads::peers::{PeerSource, PeerTable};
use crate::workloads::{PeerCounts, Workload, Workloads};

/// The exporter's background work, for the app to start: see [`Exporter::background`].
pub struct Background {
    pub resolvers: Vec<Box<dyn AnyResolver>>,
    /// The hub's composer and the middleware connection, each bound to the
    /// shutdown they were made with.
    pub tasks: Vec<BoxFuture<'static, ()>>,
}

pub struct Exporter {
    pub config: Config,
    /// Hit when the kernel's per-cgroup map is full.
    cgroups_full: Arc<crate::expose::telemetry::LimitMetric>,
    /// `source_up` and `source_errors_total` of the per-cgroup counters,
    /// where they are asked for.
    bpf: Option<(metrics::Gauge, metrics::Counter)>,
    pub hub: Hub,
    pub telemetry: Telemetry,
    netdev: NetdevReader,
    /// Looks at the root filesystem for readiness, one look at a time
    /// under net/dev's timeout: a hung mount holds one thread, not one per probe.
    rootfs_look: Worker,
    /// The namespaces' net/dev, where the workload families come from them.
    namespaces: NamespaceReader,
    /// Whether net/dev reads fail, so the log fires on change only.
    netdev_failing: Failing,
    /// The cgroup v2 hierarchy in the exporter's mount table, read once at
    /// start (the table is set before the exporter starts) for those that
    /// need it: the counting programs, the cgroup tree, Docker's tun search.
    cgroup2: Option<PathBuf>,
}

impl Exporter {
    pub fn new(config: Config) -> Arc<Exporter> {
        let telemetry = Telemetry::new();
        let cgroup2 = (config.docker.is_some() || config.accounting.is_some())
            .then(|| find_mount(&config.procfs))
            .flatten();
        // A one-off run would count nothing: the programs start at zero.
        let bpf = (config.accounting.is_some() && config.mode == crate::config::RunMode::Serve)
            .then(|| telemetry.source("cgroups", "bpf"));
        let workloads = bpf
            .as_ref()
            .and_then(|(up, _)| attach_accounting(&config, cgroup2.as_deref(), up));
        Arc::new(Exporter {
            cgroups_full: telemetry.limit(crate::expose::telemetry::Limit::AccountingCgroups),
            bpf,
            netdev: NetdevReader::new(&config.procfs, config.netdev, &telemetry),
            rootfs_look: Worker::new(config.netdev.timeout),
            namespaces: NamespaceReader::new(&config.procfs, config.netdev.timeout, &telemetry),
            hub: Hub::new(config.labels.clone(), workloads.map(Arc::new)),
            telemetry,
            config,
            netdev_failing: Failing::default(),
            cgroup2,
        })
    }

    /// What runs in the background: every enabled resolver, each publishing
    /// into the hub; the hub's composer; and the middleware connection the
    /// resolvers share. The tasks end when `shutdown` is cancelled, the
    /// resolvers when the shutdown their `run` is given is. The app starts
    /// them all.
    pub fn background(self: &Arc<Self>, shutdown: &CancellationToken) -> Background {
        let c = &self.config;
        let mut list = Vec::new();
        let cgroup2 = &self.cgroup2;
        if let Some(schedule) = c.topology {
            let me = Arc::clone(self);
            let publish: Publish<_> = Box::new(move |s| me.hub.publish_topology(s));
            let links = LinkWakes {
                other: self.hub.waker(Cause::Link),
                veth: self.hub.waker(Cause::VethLink),
                tap: self.hub.waker(Cause::TapLink),
            };
            let source = TopologySource::new(&c.rootfs, &c.procfs, schedule.timeout, links);
            list.push(self.resolver(source, schedule, publish));
        }
        if let Some(docker) = &c.docker {
            let wakes = self.hub.waker(Cause::DockerEvent);
            let source =
                DockerSource::new(docker, &c.procfs, cgroup2.clone(), wakes, &self.telemetry);
            list.push(self.owner_resolver(source, docker.schedule));
        }
        let me = Arc::clone(self);
        let stop = shutdown.clone();
        let mut tasks: Vec<BoxFuture<'static, ()>> =
            vec![Box::pin(async move { me.hub.compose_bursts(stop).await })];
        let middleware = Arc::new(self.middleware());
        if let Some(connection) = middleware.connection(shutdown.clone()) {
            tasks.push(Box::pin(connection));
        }
        if let Some(incus) = &c.incus {
            let source = IncusSource::new(
                &incus.socket,
                &c.rootfs,
                incus.max_response_bytes,
                incus.schedule.timeout,
                Some(Arc::clone(&middleware)),
                &self.telemetry,
            );
            list.push(self.owner_resolver(source, incus.schedule));
        }
        if let Some(schedule) = c.lxc {
            let source = LxcSource::new(
                &c.procfs,
                Arc::clone(&middleware),
                schedule.timeout,
                &self.telemetry,
            );
            list.push(self.owner_resolver(source, schedule));
        }
        if let Some(accounting) = c
            .accounting
            .as_ref()
            .filter(|_| self.hub.workloads().is_some())
        {
            let me = Arc::clone(self);
            let publish: Publish<_> = Box::new(move |tree| me.hub.publish_cgroups(tree));
            let source = CgroupSource::new(
                cgroup2.clone(),
                accounting.cgroup.clone(),
                accounting.schedule.timeout,
            );
            list.push(self.resolver(source, accounting.schedule, publish));
        }
        if let (Some(peers), Some(workloads)) = (&c.peers, self.hub.workloads())
            && workloads.peers().is_some()
        {
            let me = Arc::clone(self);
            let publish: Publish<_> = Box::new(move |table| me.hub.publish_peers(table));
            let source = PeerSource::new(
                Arc::clone(workloads),
                peers,
                self.hub.waker(Cause::UnknownCgroup),
                &self.telemetry,
            );
            list.push(self.resolver(source, peers.schedule, publish));
        }
        if let Some(names) = &c.names {
            let me = Arc::clone(self);
            let publish: Publish<_> = Box::new(move |names| me.hub.publish_names(names));
            // With no per-peer counters there is nothing to fold as.
            let fold = c
                .peers
                .as_ref()
                .map_or((32, 128), |p| (p.fold_v4, p.fold_v6));
            let hub = Arc::clone(self);
            let source = NamesSource::new(
                NamesInputs {
                    config: names.clone(),
                    fold,
                    middleware: Arc::clone(&middleware),
                    runner: self.runner(),
                    rootfs: c.rootfs.clone(),
                    procfs: c.procfs.clone(),
                    shown: Box::new(move || hub.hub.peer_table().peers()),
                },
                &self.telemetry,
            );
            list.push(self.resolver(source, names.schedule, publish));
        }
        if let Some(vm) = &c.vm {
            let source = VmSource::new(
                vm.settings.clone(),
                (&c.rootfs, &c.procfs),
                self.runner(),
                middleware,
                vm.schedule.timeout,
                &self.telemetry,
            );
            list.push(self.owner_resolver(source, vm.schedule));
        }
        Background {
            resolvers: list,
            tasks,
        }
    }

    /// Runs the host's tools: inside its root when the exporter has its own.
    fn runner(&self) -> Runner {
        let c = &self.config;
        let chroot = (c.commands.chroot && c.rootfs != Path::new("/")).then(|| c.rootfs.clone());
        Runner::new(
            chroot,
            c.commands.timeout,
            c.commands.max_output_bytes,
            &self.telemetry,
        )
    }

    /// TrueNAS's middleware, shared by the resolvers that ask it something:
    /// one socket connection, whose events wake the resolvers that read
    /// what changed.
    fn middleware(&self) -> Middleware {
        let c = &self.config;
        let vm_asks =
            c.vm.as_ref()
                .is_some_and(|vm| vm.settings.sources.contains(&VmLookup::Midclt));
        let mut every_refresh = Vec::new();
        let mut watched = Vec::new();
        let mut watch = |collection, cause| {
            watched.push(Watched {
                collection,
                wakes: self.hub.waker(cause),
            })
        };
        if vm_asks {
            every_refresh.push("vm.query");
            watch("vm.query", Cause::VmEvent);
        }
        if c.lxc.is_some() {
            every_refresh.push("container.query");
            watch("container.query", Cause::ContainerEvent);
        }
        if c.incus.is_some() {
            watch("virt.instance.query", Cause::IncusEvent);
        }
        if c.names.is_some() {
            every_refresh.extend(NamesSource::METHODS);
        }
        let paths = c
            .commands
            .middleware_sockets
            .iter()
            .map(|p| c.rootfs.join(p.strip_prefix("/").unwrap_or(p)))
            .collect::<Vec<_>>();
        let socket = (!paths.is_empty())
            .then(|| SocketClient::new(paths, c.commands.max_output_bytes, watched));
        Middleware::new(
            c.commands.midclt.clone(),
            self.runner(),
            every_refresh,
            socket,
            PathMetrics::both(&self.telemetry),
        )
    }

    fn resolver<S: Source>(
        &self,
        source: S,
        schedule: Schedule,
        publish: Publish<S::Snapshot>,
    ) -> Box<dyn AnyResolver> {
        let metrics = self.telemetry.resolver(S::ID.name());
        Box::new(Resolver::new(
            source,
            schedule,
            self.hub.wake(S::ID),
            metrics,
            publish,
        ))
    }

    fn owner_resolver<S: Source<Snapshot = Claims>>(
        self: &Arc<Self>,
        source: S,
        schedule: Schedule,
    ) -> Box<dyn AnyResolver> {
        let me = Arc::clone(self);
        let publish: Publish<_> = Box::new(move |owners| me.hub.publish_owners(S::ID, owners));
        self.resolver(source, schedule, publish)
    }

    /// Refreshes every enabled resolver once, concurrently (`--once`), with
    /// the connections they ask through running meanwhile; then composes.
    pub async fn refresh_all_once(self: &Arc<Self>) {
        let shutdown = CancellationToken::new();
        let Background {
            mut resolvers,
            tasks: background,
        } = self.background(&shutdown);
        let tasks = TaskTracker::new();
        for task in background {
            tasks.spawn(task);
        }
        futures_util::future::join_all(resolvers.iter_mut().map(|r| r.refresh())).await;
        self.hub.compose_pending();
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
    }

    /// Whether a scrape would find the host (`/-/ready`, and `--once`
    /// before it refreshes anything): net/dev reads, as a scrape reads it
    /// (bounded in bytes, and in time off procfs), and the root filesystem
    /// is a directory (looked at under the same timeout). Nothing is joined,
    /// counted or logged: a probe may come often, and a failing read is the
    /// scrapes' to count. Every reason, when there are several.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let (netdev, rootfs) = tokio::join!(self.netdev.read(), self.rootfs_is_there());
        let reasons: Vec<String> = [netdev.err().map(|e| e.to_string()), rootfs.err()]
            .into_iter()
            .flatten()
            .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(NotReady(reasons))
        }
    }

    async fn rootfs_is_there(&self) -> Result<(), String> {
        let rootfs = self.config.rootfs.clone();
        let shown = rootfs.display().to_string();
        let look = self.rootfs_look.run(move |fs| fs.metadata(&rootfs)).await;
        match look {
            Ok(Ok(meta)) if meta.is_dir() => Ok(()),
            Ok(Ok(_)) => Err(format!(
                "the root filesystem {shown} (--path.rootfs) is not a directory"
            )),
            Ok(Err(e)) => Err(format!(
                "no root filesystem at {shown} (--path.rootfs): {e}"
            )),
            Err(e) => Err(format!(
                "cannot look at the root filesystem {shown} (--path.rootfs): {e}"
            )),
        }
    }

    /// Detaches the counting programs from the cgroup tree now, whoever
    /// still holds the exporter (a thread stuck on a hung mount may).
    pub fn detach(&self) {
        if let Some(workloads) = self.hub.workloads() {
            workloads.detach();
        }
    }

    /// One scrape: the `net_interface_*` families followed by the exporter's own
    /// metrics, as a body that writes itself chunk by chunk. If net/dev cannot
    /// be read the body holds only the own metrics and the error is returned
    /// beside it; the caller decides what that means (`--once` exits non-zero,
    /// the server still answers).
    pub async fn scrape(self: &Arc<Self>) -> ScrapeOutput {
        let started = Instant::now();
        let (scrape, netdev_error) = match self.read_interfaces().await {
            Ok((scrape, _)) => (Some(scrape), None),
            Err(e) => {
                // Counted and logged per scrape only: a browser polling the
                // live view must not inflate what alerts read.
                self.telemetry.read_errors.increment(1);
                if self.netdev_failing.record(true) == Turn::Failed {
                    self.telemetry.state_changed();
                    tracing::error!(error = %e, "cannot read net/dev; serving only the exporter's own metrics");
                }
                (None, Some(e))
            }
        };
        let namespaces = match scrape {
            Some(_) => {
                self.await_new_cgroups_and_peers().await;
                self.read_namespaces().await
            }
            None => None,
        };
        ScrapeOutput {
            body: ScrapeBody {
                exporter: Arc::clone(self),
                scrape,
                namespaces,
                started,
                done: false,
            },
            netdev_error,
        }
    }

    /// Reads net/dev and joins it with the current label table, with the
    /// wall-clock time of the read (a scrape, or the live view).
    ///
    /// An interface the table does not know yet (born since the last
    /// refresh) wakes the resolvers; their answer is waited for, up to
    /// [`UNKNOWN_WAIT`], so that it is written under its owner rather than
    /// under its own name for one scrape. It is written either way.
    pub async fn read_interfaces(&self) -> io::Result<(Scrape<Arc<LabelTable>>, SystemTime)> {
        let netdev = self.netdev.read().await?;
        let time = SystemTime::now();
        let settings = self.hub.settings();
        let before = self.hub.refreshes();
        let mut scrape = Scrape::new(&netdev, self.hub.table(), settings);
        if scrape.stats.unknown > 0 && self.hub.wake_for_unknown() {
            let waited = Instant::now();
            let deadline = tokio::time::Instant::now() + UNKNOWN_WAIT;
            let answered = self.hub.refreshed_since(before, deadline).await;
            scrape = Scrape::new(&netdev, self.hub.table(), settings);
            self.telemetry
                .unknown_wait
                .record(waited.elapsed().as_secs_f64());
            tracing::debug!(answered, waited = ?waited.elapsed(), "waited for the resolvers' answer about new interfaces");
        }
        self.telemetry
            .label_collisions
            .set(scrape.table().collisions.len() as f64);
        self.after_join(&scrape.stats);
        Ok((scrape, time))
    }

    /// The programs counted cgroups the workload table does not know (a
    /// container or a service born since the tree was read): the tree is
    /// read again and its composition waited for, up to [`UNKNOWN_WAIT`],
    /// so the new workload is written under its name at this scrape, not
    /// the next. At most once per wake gap, as for new interfaces.
    /// The same for peers the per-peer map has and the last tick did not
    /// read: the tick runs early and is waited for, so a new peer of a
    /// workload is in this scrape's `other` or series, not the next's.
    async fn await_new_cgroups_and_peers(&self) {
        let Some(workloads) = self.hub.workloads() else {
            return;
        };
        let new_peers = workloads
            .peers()
            .is_some_and(|p| p.counting.stats().new_keys != self.hub.peer_table().new_keys);
        let before = self.hub.refreshes();
        let mut woke: Vec<ResolverId> = Vec::new();
        if workloads.unsettled() && self.hub.wake_for_unknown_cgroups() {
            woke.extend(woken_by(Cause::UnknownCgroup));
        }
        if new_peers && self.hub.wake_for_unknown_peers() {
            woke.extend(woken_by(Cause::UnknownPeer));
        }
        if !woke.is_empty() {
            let deadline = tokio::time::Instant::now() + UNKNOWN_WAIT;
            let answered = self.hub.refreshed_of(&woke, before, deadline).await;
            tracing::debug!(answered, woke = ?woke, "waited for the answer about new cgroups or peers");
        }
    }

    /// Where the kernel does not count per cgroup, the counters of the
    /// containers that have a namespace and no host interface: read before
    /// the body is written, off the async threads and under a deadline.
    /// `[accounting] enabled = false` asks for no workload families.
    async fn read_namespaces(&self) -> Option<NamespaceCounts> {
        if self.hub.workloads().is_some() || self.config.accounting.is_none() {
            return None;
        }
        Some(self.namespaces.read(self.hub.namespace_only()).await)
    }

    /// The `net_workload_*` families: from the kernel's per-cgroup
    /// counters, or, where there are none, from what [`Self::read_namespaces`]
    /// read.
    fn write_workloads(&self, namespaces: Option<&NamespaceCounts>, out: &mut Vec<u8>) {
        let Some(workloads) = self.hub.workloads() else {
            if let Some(namespaces) = namespaces {
                namespaces.write(out);
            }
            return;
        };
        let health = |ok: bool| {
            if let Some((up, errors)) = &self.bpf {
                up.set(if ok { 1.0 } else { 0.0 });
                if !ok {
                    errors.increment(1);
                }
            }
        };
        let stats = workloads.write(out);
        if workloads.peers().is_some() {
            self.hub.peer_table().write(out);
        }
        health(workloads.healthy());
        if stats.unknown > 0 {
            self.hub.wake_for_unknown_cgroups();
        }
        if stats.unslotted > 0 {
            self.cgroups_full.hit(&format!(
                "{} cgroups with traffic go uncounted ([accounting] max_cgroups)",
                stats.unslotted
            ));
        }
    }

    /// Each workload's counters, read now as a scrape reads them (for the
    /// live view); `None` where the kernel does not count per cgroup here.
    pub fn read_workloads(&self) -> Option<Vec<(Workload, Counts)>> {
        let (table, read, stats) = self.hub.workloads()?.read();
        if stats.unknown > 0 {
            self.hub.wake_for_unknown_cgroups();
        }
        Some(
            read.into_iter()
                .map(|(w, c)| (table.workloads[w].clone(), c))
                .collect(),
        )
    }

    /// The latest tick's peer series (for the live view); `None` where
    /// the kernel does not count per peer here.
    pub fn read_peers(&self) -> Option<Arc<PeerTable>> {
        self.hub.workloads()?.peers()?;
        Some(self.hub.peer_table())
    }

    /// The latest names for peers (for the live view).
    pub fn read_names(&self) -> Arc<PeerNames> {
        self.hub.peer_names()
    }

    fn after_join(&self, stats: &JoinStats) {
        if stats.malformed > 0 {
            self.telemetry.malformed_lines.increment(stats.malformed);
        }
        if self.netdev_failing.record(false) == Turn::Recovered {
            self.telemetry.state_changed();
            tracing::info!(path = %self.netdev.path().display(), "net/dev readable again");
        }
    }
}

/// The counting programs, linked where `[accounting]` says (by default the
/// cgroup v2 hierarchy in `<procfs>/self/mountinfo`). Where that cannot be
/// (no hierarchy in view, an old kernel, no `CAP_BPF`/`CAP_NET_ADMIN`) it
/// says so once, at info, and `up`
/// (`source_up{resolver="cgroups",source="bpf"}`) is 0: everything else
/// works as without it.
fn attach_accounting(
    config: &Config,
    cgroup2: Option<&Path>,
    up: &metrics::Gauge,
) -> Option<Workloads> {
    let settings = config.accounting.as_ref()?;
    let Some(cgroup) = settings.cgroup.clone().or(cgroup2.map(Path::to_owned)) else {
        let mountinfo = config.procfs.join("self/mountinfo");
        tracing::info!(mountinfo = %mountinfo.display(), "no cgroup v2 hierarchy in view: no traffic per workload (host-network containers and services stay unnamed)");
        up.set(0.0);
        return None;
    };
    match Accounting::attach(&cgroup, settings.max_cgroups) {
        Ok(accounting) => {
            tracing::info!(cgroup = %cgroup.display(), "counting traffic per cgroup");
            up.set(1.0);
            // In the counter's place: one program counts both.
            let peers = config
                .peers
                .as_ref()
                .and_then(|p| attach_peers(p, &cgroup, &accounting));
            Some(Workloads::new(
                accounting,
                peers,
                &config.labels.owner_label,
            ))
        }
        Err(e) => {
            tracing::info!(error = %e, "cannot count traffic per cgroup (it needs CAP_BPF and CAP_NET_ADMIN, and kernel 5.7): no traffic per workload (host-network containers and services stay unnamed)");
            up.set(0.0);
            None
        }
    }
}

/// The per-peer programs, in the counter's links (they count per cgroup
/// too). Where they cannot be (an older kernel's verifier, a map too large
/// for the memory limit) it says so once: the counter runs on.
fn attach_peers(
    config: &PeersConfig,
    cgroup: &Path,
    accounting: &Accounting,
) -> Option<PeerCounts> {
    use std::os::unix::fs::MetadataExt;
    let root_id = match std::fs::metadata(cgroup) {
        Ok(m) => m.ino(),
        Err(e) => {
            tracing::info!(cgroup = %cgroup.display(), error = %e, "cannot count traffic per peer");
            return None;
        }
    };
    match PeerCounting::attach(accounting, config.max_peers, &config.ports, root_id) {
        Ok(counting) => {
            tracing::info!(max_peers = config.max_peers, "counting traffic per peer");
            Some(PeerCounts {
                counting,
                nfs_protocol: config.protocol_index(crate::workloads::NFS),
            })
        }
        Err(e) => {
            tracing::info!(error = %e, "cannot count traffic per peer: no net_peer_* series (traffic per workload is still counted)");
            None
        }
    }
}

/// How long a scrape that met new interfaces waits for the resolvers it woke.
/// At most once per [`crate::hub::UNKNOWN_WAKE_GAP`], since only a scrape
/// that wakes them waits.
pub const UNKNOWN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Size at which a response chunk is handed to the server: large enough that
/// a 50-interface scrape is one chunk, small enough to bound memory.
const CHUNK: usize = 128 * 1024;

/// Why the exporter is not ready: one reason per thing it cannot reach
/// (net/dev, the root filesystem), each naming its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady(pub Vec<String>);

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not ready: {}", self.0.join("; "))
    }
}

impl std::error::Error for NotReady {}

pub struct ScrapeOutput {
    pub body: ScrapeBody,
    pub netdev_error: Option<io::Error>,
}

/// The response body: an iterator of chunks, the last of which carries the
/// exporter's own metrics (including this scrape's duration).
pub struct ScrapeBody {
    exporter: Arc<Exporter>,
    scrape: Option<Scrape<Arc<LabelTable>>>,
    /// Read by the scrape, where the workload families come from them.
    namespaces: Option<NamespaceCounts>,
    started: Instant,
    done: bool,
}

impl ScrapeBody {
    /// Interfaces this body writes (0 if net/dev could not be read).
    pub fn interfaces(&self) -> usize {
        self.scrape.as_ref().map_or(0, |s| s.stats.interfaces)
    }

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
        if self.scrape.is_some() {
            self.exporter
                .write_workloads(self.namespaces.as_ref(), &mut out);
            self.exporter.hub.peer_names().write(&mut out);
        }
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
