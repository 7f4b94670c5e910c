//! The shared state between resolvers and scrapes: each resolver's latest
//! snapshot, the label table composed from them (and, where the kernel
//! counts traffic per cgroup, the workload table), and each resolver's
//! wake-up.
//! Resolvers publish here; scrapes only `load()` the table, which is lock-free.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};

use crate::model::composer::{self, LabelTable};
use crate::model::labels::LabelSettings;
use crate::resolve::sources::topology::TopologySnapshot;
use crate::resolve::sources::{Claims, ResolverId};
use crate::workloads::Workloads;
use crate::workloads::cgroups::CgroupTree;
use crate::workloads::namespaces::{self, NamespaceWorkload};

pub struct Hub {
    settings: Arc<LabelSettings>,
    topology: ArcSwap<TopologySnapshot>,
    /// Indexed by [`ResolverId`]; the topology's slot stays empty.
    owners: [ArcSwap<Claims>; ResolverId::COUNT],
    table: ArcSwap<LabelTable>,
    cgroups: ArcSwap<CgroupTree>,
    /// Traffic per cgroup, where the counting programs are attached.
    workloads: Option<Workloads>,
    /// Where they are not: the containers whose traffic is their own
    /// namespace's only.
    namespace_only: ArcSwap<Vec<NamespaceWorkload>>,
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
    composed: AtomicBool,
    /// Indexed by [`ResolverId`]: how many times each resolver has published
    /// (changed or not), bumped once the table reflects it.
    refreshes: watch::Sender<[u64; ResolverId::COUNT]>,
}

/// Each resolver's publish count, as [`Hub::refreshes`] gives it.
pub type Refreshes = [u64; ResolverId::COUNT];

/// Scrape-triggered wakes are at most this frequent (engine events are not limited by it).
pub const UNKNOWN_WAKE_GAP: Duration = Duration::from_secs(5);

impl Hub {
    pub fn new(settings: LabelSettings, workloads: Option<Workloads>) -> Hub {
        Hub {
            settings: Arc::new(settings),
            topology: ArcSwap::default(),
            owners: Default::default(),
            table: ArcSwap::default(),
            cgroups: ArcSwap::default(),
            workloads,
            namespace_only: ArcSwap::default(),
            compose_lock: Mutex::new(Vec::new()),
            wakes: Default::default(),
            born: Instant::now(),
            last_unknown_wake: AtomicU64::new(0),
            last_cgroup_wake: AtomicU64::new(0),
            composed: AtomicBool::new(false),
            refreshes: watch::Sender::new([0; ResolverId::COUNT]),
        }
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

    /// Replaces the topology snapshot; recomposes only if it changed.
    pub fn publish_topology(&self, snapshot: TopologySnapshot) {
        if **self.topology.load() != snapshot {
            self.topology.store(Arc::new(snapshot));
            self.recompose();
        }
        self.refreshed(ResolverId::Topology);
    }

    /// Traffic per workload, if the kernel counts it here.
    pub fn workloads(&self) -> Option<&Workloads> {
        self.workloads.as_ref()
    }

    /// The containers whose traffic only their namespace's `net/dev` has,
    /// where the kernel does not count per cgroup.
    pub fn namespace_only(&self) -> Arc<Vec<NamespaceWorkload>> {
        self.namespace_only.load_full()
    }

    /// Replaces the cgroup tree; recomposes the workloads if it changed, or
    /// if the counting programs have met cgroups with no slot since.
    pub fn publish_cgroups(&self, tree: CgroupTree) {
        let unsettled = self.workloads.as_ref().is_some_and(|w| w.unsettled());
        if unsettled || **self.cgroups.load() != tree {
            if tree.truncated && !self.cgroups.load().truncated {
                tracing::warn!(
                    read = tree.cgroups.len(),
                    "more cgroups than the exporter reads; the rest count as the host's"
                );
            }
            self.cgroups.store(Arc::new(tree));
            let _serial = self.compose_lock.lock().unwrap_or_else(|p| p.into_inner());
            // This walk is not counted as refreshed yet.
            self.recompose_workloads(self.cgroup_walks() + 1);
        }
        self.refreshed(ResolverId::Cgroups);
    }

    /// Replaces one owner resolver's snapshot; recomposes only if it changed.
    pub fn publish_owners(&self, id: ResolverId, snapshot: Claims) {
        let slot = &self.owners[id.index()];
        if **slot.load() != snapshot {
            slot.store(Arc::new(snapshot));
            self.recompose();
        }
        self.refreshed(id);
    }

    fn refreshed(&self, id: ResolverId) {
        self.refreshes.send_modify(|r| r[id.index()] += 1);
    }

    /// How many times each resolver has published so far.
    pub fn refreshes(&self) -> Refreshes {
        *self.refreshes.borrow()
    }

    /// Waits until every resolver that had published by `since` has published
    /// again, or until `deadline`; says whether they all did. A resolver that
    /// never published (off, or failing from the start) is not waited for.
    pub async fn refreshed_since(&self, since: Refreshes, deadline: tokio::time::Instant) -> bool {
        let mut changes = self.refreshes.subscribe();
        let all_again = |now: &Refreshes| since.iter().zip(now).all(|(&b, &n)| b == 0 || n > b);
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
        if !self.wake_due(&self.last_unknown_wake) {
            return false;
        }
        for wake in &self.wakes {
            wake.notify_one();
        }
        true
    }

    /// A scrape counted cgroups the workload table does not know: the
    /// cgroup resolver looks again, as often as [`Hub::wake_for_unknown`].
    pub fn wake_for_unknown_cgroups(&self) {
        if self.wake_due(&self.last_cgroup_wake) {
            self.wakes[ResolverId::Cgroups.index()].notify_one();
        }
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

    fn recompose(&self) {
        let mut collisions = self.compose_lock.lock().unwrap_or_else(|p| p.into_inner());
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
            let list = namespaces::namespace_only(&table, &refs, &self.settings.owner_label);
            self.namespace_only.store(Arc::new(list));
        }
        self.table.store(Arc::new(table));
        self.composed.store(true, Ordering::Relaxed);
        self.recompose_workloads(self.cgroup_walks());
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
        hub.wake_for_unknown();
        for id in ResolverId::ALL {
            assert!(woken(id), "{id:?}");
        }
        hub.wake_for_unknown();
        assert!(!woken(ResolverId::Topology), "within the gap");
    }
}
