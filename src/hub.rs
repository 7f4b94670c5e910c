//! The shared state between resolvers and scrapes: each resolver's latest
//! snapshot, the label table composed from them (and, where the kernel
//! counts traffic per cgroup, the workload table), and each resolver's
//! wake-up, handed out by cause as the table of who wakes whom says.
//! Resolvers publish here; the hub's composer task composes once per burst
//! of publishes (a `docker run` is an engine event, a link notification and
//! the refreshes they wake: one new table, not one per resolver); scrapes
//! only `load()` the table, which is lock-free.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::composer::{self, LabelTable};
use crate::model::labels::LabelSettings;
use crate::resolve::sources::names::PeerNames;
use crate::resolve::sources::topology::TopologySnapshot;
use crate::resolve::sources::{Claims, ResolverId};
use crate::resolve::wakes::{Cause, woken_by};
use crate::workloads::Workloads;
use crate::workloads::cgroups::CgroupTree;
use crate::workloads::namespaces::{self, NamespaceWorkload};
use crate::workloads::peers::PeerTable;

pub struct Hub {
    settings: Arc<LabelSettings>,
    topology: ArcSwap<TopologySnapshot>,
    /// Indexed by [`ResolverId`]; the topology's slot stays empty.
    owners: [ArcSwap<Claims>; ResolverId::COUNT],
    table: ArcSwap<LabelTable>,
    cgroups: ArcSwap<CgroupTree>,
    /// Traffic per cgroup, where the counting programs are attached.
    workloads: Option<Arc<Workloads>>,
    /// Where they are not: the containers whose traffic is their own
    /// namespace's only.
    namespace_only: ArcSwap<Vec<NamespaceWorkload>>,
    /// The peers tick's latest series.
    peers: ArcSwap<PeerTable>,
    /// The names resolver's latest names for peers.
    names: ArcSwap<PeerNames>,
    /// Serialises compositions so a slower, older one cannot overwrite a newer
    /// table; holds the last table's label collisions, to log only changes.
    compose_lock: Mutex<Vec<String>>,
    /// Indexed by [`ResolverId`]: a notification makes that resolver refresh soon.
    wakes: [Arc<Notify>; ResolverId::COUNT],
    born: Instant,
    /// Milliseconds since `born` of the last scrape-triggered wake; 0 = never.
    last_unknown_wake: AtomicU64,
    /// The same for the cgroup resolver, woken by cgroups a scrape counted
    /// but the workload table did not know.
    last_cgroup_wake: AtomicU64,
    /// When a scrape last woke the peers' tick (as `last_cgroup_wake`).
    last_peer_wake: AtomicU64,
    composed: AtomicBool,
    /// Indexed by [`ResolverId`]: how many times each resolver has published
    /// (changed or not), bumped once the table reflects it.
    refreshes: watch::Sender<[u64; ResolverId::COUNT]>,
    /// Publishes the composer has not composed yet.
    pending: Mutex<Pending>,
    /// Tells the composer task there are some.
    compose_due: Notify,
    /// Label tables composed so far.
    compositions: AtomicU64,
}

/// What changed since the last composition.
#[derive(Debug, Default)]
struct Pending {
    /// Indexed by [`ResolverId`]: publishes, changed or not.
    published: [u64; ResolverId::COUNT],
    /// A topology or owner snapshot changed: the label table is composed anew.
    labels: bool,
    /// The cgroup tree changed, or cgroups wait for a slot: the workloads are.
    cgroups: bool,
}

/// A burst of publishes ends after this long without one...
pub const BURST_QUIET: Duration = Duration::from_millis(25);
/// ... or this long after it began, whichever comes first: a steady stream
/// of publishes must not hold labels back.
pub const BURST_MAX: Duration = Duration::from_millis(100);

/// Each resolver's publish count, as [`Hub::refreshes`] gives it.
pub type Refreshes = [u64; ResolverId::COUNT];

/// Scrape-triggered wakes are at most this frequent (engine events are not limited by it).
pub const UNKNOWN_WAKE_GAP: Duration = Duration::from_secs(5);

impl Hub {
    pub fn new(settings: LabelSettings, workloads: Option<Arc<Workloads>>) -> Hub {
        Hub {
            settings: Arc::new(settings),
            topology: ArcSwap::default(),
            owners: Default::default(),
            table: ArcSwap::default(),
            cgroups: ArcSwap::default(),
            workloads,
            namespace_only: ArcSwap::default(),
            peers: ArcSwap::default(),
            names: ArcSwap::default(),
            compose_lock: Mutex::new(Vec::new()),
            wakes: Default::default(),
            born: Instant::now(),
            last_unknown_wake: AtomicU64::new(0),
            last_cgroup_wake: AtomicU64::new(0),
            last_peer_wake: AtomicU64::new(0),
            composed: AtomicBool::new(false),
            refreshes: watch::Sender::new([0; ResolverId::COUNT]),
            pending: Mutex::default(),
            compose_due: Notify::new(),
            compositions: AtomicU64::new(0),
        }
    }

    /// The wake-ups of the resolvers that `cause` wakes ([`woken_by`]).
    pub fn waker(&self, cause: Cause) -> Vec<Arc<Notify>> {
        woken_by(cause).iter().map(|&id| self.wake(id)).collect()
    }

    /// Label tables composed so far.
    pub fn compositions(&self) -> u64 {
        self.compositions.load(Ordering::Relaxed)
    }

    /// The composer: once publishes come, waits for their burst to end
    /// ([`BURST_QUIET`], at most [`BURST_MAX`]), then composes once. The
    /// first publish is composed at once: until then scrapes have no labels.
    /// Runs until `shutdown` is cancelled.
    pub async fn compose_bursts(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.compose_due.notified() => {}
            }
            if !self.composed.load(Ordering::Relaxed) {
                self.compose_pending();
                continue;
            }
            let end = tokio::time::Instant::now() + BURST_MAX;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.compose_due.notified() => {}
                    _ = tokio::time::sleep(BURST_QUIET) => break,
                    _ = tokio::time::sleep_until(end) => break,
                }
            }
            self.compose_pending();
        }
    }

    /// Composes what was published since the last composition, if anything
    /// changed, and counts each publish as reflected. The composer task
    /// calls it per burst; `--once` once, after its refreshes.
    pub fn compose_pending(&self) {
        let mut collisions = self.compose_lock.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        // The walk that this composition reads, the one in place included.
        let walk = self.cgroup_walks() + pending.published[ResolverId::Cgroups.index()];
        if pending.labels {
            self.recompose(&mut collisions, walk);
        } else if pending.cgroups {
            self.recompose_workloads(walk);
        }
        if pending.published.iter().any(|&n| n > 0) {
            self.refreshes.send_modify(|r| {
                for (count, new) in r.iter_mut().zip(pending.published) {
                    *count += new;
                }
            });
        }
    }

    /// Notes a publish of `id` for the composer.
    fn published(&self, id: ResolverId, labels: bool, cgroups: bool) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.published[id.index()] += 1;
            pending.labels |= labels;
            pending.cgroups |= cgroups;
        }
        self.compose_due.notify_one();
    }

    pub fn settings(&self) -> &LabelSettings {
        &self.settings
    }

    /// The current label table (a cheap `Arc` clone).
    pub fn table(&self) -> Arc<LabelTable> {
        self.table.load_full()
    }

    /// The wake-up of resolver `id`: notified by scrapes that meet an unknown
    /// interface, and by sources that learn of a change (Docker's events).
    pub fn wake(&self, id: ResolverId) -> Arc<Notify> {
        Arc::clone(&self.wakes[id.index()])
    }

    /// Replaces the topology snapshot; the next composition reads it if it
    /// changed.
    pub fn publish_topology(&self, snapshot: TopologySnapshot) {
        let changed = **self.topology.load() != snapshot;
        if changed {
            self.topology.store(Arc::new(snapshot));
        }
        self.published(ResolverId::Topology, changed, false);
    }

    /// Traffic per workload, if the kernel counts it here.
    pub fn workloads(&self) -> Option<&Arc<Workloads>> {
        self.workloads.as_ref()
    }

    /// Replaces the peer series with a tick's.
    pub fn publish_peers(&self, table: PeerTable) {
        self.peers.store(Arc::new(table));
        self.published(ResolverId::Peers, false, false);
    }

    /// The peers tick's latest series (empty before the first, and where
    /// nothing counts per peer).
    pub fn peer_table(&self) -> Arc<PeerTable> {
        self.peers.load_full()
    }

    /// Replaces the names for peers with a refresh's.
    pub fn publish_names(&self, names: PeerNames) {
        self.names.store(Arc::new(names));
        self.published(ResolverId::Names, false, false);
    }

    /// The latest names for peers (empty before the first refresh).
    pub fn peer_names(&self) -> Arc<PeerNames> {
        self.names.load_full()
    }

    /// A scrape found keys in the per-peer map the last tick did not read:
    /// the tick runs early, as often as [`Hub::wake_for_unknown`]. Returns
    /// whether it woke it.
    pub fn wake_for_unknown_peers(&self) -> bool {
        self.wake_gapped(&self.last_peer_wake, Cause::UnknownPeer)
    }

    /// The containers whose traffic only their namespace's `net/dev` has,
    /// where the kernel does not count per cgroup.
    pub fn namespace_only(&self) -> Arc<Vec<NamespaceWorkload>> {
        self.namespace_only.load_full()
    }

    /// Replaces the cgroup tree; the next composition settles the workloads
    /// if it changed, or if the counting programs have met cgroups with no
    /// slot since.
    pub fn publish_cgroups(&self, tree: CgroupTree) {
        let unsettled = self.workloads.as_ref().is_some_and(|w| w.settle_due());
        let changed = unsettled || **self.cgroups.load() != tree;
        if changed {
            if tree.truncated && !self.cgroups.load().truncated {
                tracing::warn!(
                    read = tree.cgroups.len(),
                    "more cgroups than the exporter reads; the rest count as the host's"
                );
            }
            self.cgroups.store(Arc::new(tree));
        }
        self.published(ResolverId::Cgroups, false, changed);
    }

    /// Replaces one owner resolver's snapshot; the next composition reads it
    /// if it changed.
    pub fn publish_owners(&self, id: ResolverId, snapshot: Claims) {
        let current = &self.owners[id.index()];
        let changed = **current.load() != snapshot;
        if changed {
            current.store(Arc::new(snapshot));
        }
        self.published(id, changed, false);
    }

    /// How many times each resolver has published so far.
    pub fn refreshes(&self) -> Refreshes {
        *self.refreshes.borrow()
    }

    /// Waits until every resolver an unknown interface wakes that had
    /// published by `since` has published again, or until `deadline`; says
    /// whether they all did. A resolver that never published (off, or
    /// failing from the start) is not waited for.
    pub async fn refreshed_since(&self, since: Refreshes, deadline: tokio::time::Instant) -> bool {
        self.refreshed_of(woken_by(Cause::UnknownInterface), since, deadline)
            .await
    }

    /// [`Hub::refreshed_since`] for the resolvers `ids` only.
    pub async fn refreshed_of(
        &self,
        ids: &[ResolverId],
        since: Refreshes,
        deadline: tokio::time::Instant,
    ) -> bool {
        let mut changes = self.refreshes.subscribe();
        let all_again = |now: &Refreshes| {
            ids.iter().all(|id| {
                let (b, n) = (since[id.index()], now[id.index()]);
                b == 0 || n > b
            })
        };
        tokio::time::timeout_at(deadline, changes.wait_for(all_again))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A scrape met interfaces it could not label: ask every resolver to look
    /// again, at most once per [`UNKNOWN_WAKE_GAP`]. An interface that no
    /// resolver will ever find (say, `--path.procfs` of the host with the
    /// rootfs of a container) must not turn every scrape into refreshes.
    /// Says whether it woke them.
    pub fn wake_for_unknown(&self) -> bool {
        if !self.composed.load(Ordering::Relaxed) {
            // Nothing published yet: every resolver is on its first refresh anyway.
            return false;
        }
        self.wake_gapped(&self.last_unknown_wake, Cause::UnknownInterface)
    }

    /// A scrape counted cgroups the workload table does not know: the
    /// cgroup resolver looks again, as often as [`Hub::wake_for_unknown`].
    /// Returns whether it woke them.
    pub fn wake_for_unknown_cgroups(&self) -> bool {
        self.wake_gapped(&self.last_cgroup_wake, Cause::UnknownCgroup)
    }

    /// Wakes the resolvers `cause` wakes if [`UNKNOWN_WAKE_GAP`] has passed
    /// since `last` (then now is `last`); says whether it did.
    fn wake_gapped(&self, last: &AtomicU64, cause: Cause) -> bool {
        let due = self.wake_due(last);
        if due {
            for wake in self.waker(cause) {
                wake.notify_one();
            }
        }
        due
    }

    /// Whether [`UNKNOWN_WAKE_GAP`] has passed since `last`; if so, now is `last`.
    fn wake_due(&self, last: &AtomicU64) -> bool {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let previous = last.load(Ordering::Relaxed);
        let gap = u64::try_from(UNKNOWN_WAKE_GAP.as_millis()).unwrap_or(u64::MAX);
        if previous != 0 && now.saturating_sub(previous) < gap {
            return false;
        }
        // 0 means "never"; a wake in the first millisecond is stored as 1.
        last.store(now.max(1), Ordering::Relaxed);
        true
    }

    /// With the compose lock held (its guard is `collisions`).
    fn recompose(&self, collisions: &mut Vec<String>, walk: u64) {
        let topology = self.topology.load();
        let owners = ResolverId::ALL.map(|id| self.owners[id.index()].load_full());
        let refs: Vec<&Claims> = owners.iter().map(|o| o.as_ref()).collect();
        let table = composer::compose(&topology, &refs, &self.settings);
        if table.collisions != *collisions {
            if !table.collisions.is_empty() {
                tracing::warn!(interfaces = ?table.collisions, "interfaces left out: their labels would repeat another interface's");
            }
            collisions.clone_from(&table.collisions);
        }
        if self.workloads.is_none() {
            let claimants = table.claimants();
            let list = namespaces::namespace_only(&claimants, &refs, &self.settings.owner_label);
            self.namespace_only.store(Arc::new(list));
        }
        self.table.store(Arc::new(table));
        self.composed.store(true, Ordering::Relaxed);
        self.compositions.fetch_add(1, Ordering::Relaxed);
        self.recompose_workloads(walk);
    }

    fn cgroup_walks(&self) -> u64 {
        self.refreshes.borrow()[ResolverId::Cgroups.index()]
    }

    /// With the compose lock held; `walk` counts the cgroup trees published,
    /// the one in place included.
    fn recompose_workloads(&self, walk: u64) {
        let Some(workloads) = &self.workloads else {
            return;
        };
        let tree = self.cgroups.load();
        if tree.cgroups.is_empty() {
            return;
        }
        let owners = ResolverId::ALL.map(|id| self.owners[id.index()].load_full());
        let refs: Vec<&Claims> = owners.iter().map(|o| o.as_ref()).collect();
        // The Docker resolver has answered at least once: new containers'
        // cgroups wait for its names.
        let docker_names = self.refreshes.borrow()[ResolverId::Docker.index()] > 0;
        if let Err(e) = workloads.publish(&tree, walk, &refs, docker_names) {
            tracing::warn!(error = %e, "cannot settle the counters per cgroup with the cgroup tree");
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn unknown_wakes_are_rate_limited_and_wait_for_a_first_table() {
        let hub = Hub::new(LabelSettings::default(), None);
        let woken = |id| hub.wake(id).notified().now_or_never().is_some();
        hub.wake_for_unknown();
        assert!(!woken(ResolverId::Topology), "no table yet: no wake");

        let mut topology = TopologySnapshot::default();
        topology.links.insert(b"eth0".to_vec(), Default::default());
        hub.publish_topology(topology);
        hub.compose_pending();
        hub.wake_for_unknown();
        for &id in woken_by(Cause::UnknownInterface) {
            assert!(woken(id), "{id:?}");
        }
        hub.wake_for_unknown();
        assert!(!woken(ResolverId::Topology), "within the gap");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_publishes_is_one_composition() {
        let hub = Arc::new(Hub::new(LabelSettings::default(), None));
        let stop = CancellationToken::new();
        let composer = tokio::spawn({
            let hub = Arc::clone(&hub);
            let stop = stop.clone();
            async move { hub.compose_bursts(stop).await }
        });
        let link = |name: &[u8]| {
            let mut topology = TopologySnapshot::default();
            topology.links.insert(name.to_vec(), Default::default());
            topology
        };
        // The first publish is composed at once.
        hub.publish_topology(link(b"eth0"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(hub.compositions(), 1, "the first table waits for no burst");

        // A `docker run`: the topology, then the engine's resolver, 10 ms apart.
        hub.publish_topology(link(b"veth1"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        hub.publish_owners(ResolverId::Docker, Claims::default());
        assert_eq!(hub.compositions(), 1, "composed within the burst");
        let docker = || hub.refreshes()[ResolverId::Docker.index()];
        assert_eq!(docker(), 0, "counted before composing");
        tokio::time::sleep(BURST_QUIET * 2).await;
        assert_eq!(hub.compositions(), 2);
        assert_eq!(hub.refreshes()[ResolverId::Topology.index()], 2);
        assert_eq!(docker(), 1);
        assert!(
            hub.table().get(b"veth1").is_some(),
            "the table has the new link"
        );

        // A publish that changes nothing is counted, and composes nothing.
        hub.publish_topology(link(b"veth1"));
        tokio::time::sleep(BURST_QUIET * 2).await;
        assert_eq!(hub.compositions(), 2);
        assert_eq!(hub.refreshes()[ResolverId::Topology.index()], 3);

        // A steady stream still composes within BURST_MAX.
        for n in 0..20u8 {
            hub.publish_topology(link(&[b'x', n]));
            tokio::time::sleep(BURST_QUIET / 2).await;
        }
        assert!(hub.compositions() >= 4, "{}", hub.compositions());
        stop.cancel();
        composer.await.unwrap();
    }
}
