//! The shared state between resolvers and scrapes: each resolver's latest
//! snapshot, and the label table composed from them. Resolvers publish here;
//! scrapes only `load()` the table, which is lock-free.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::compose::{self, LabelSettings, LabelTable, Owners};
use crate::sources::topology::TopologySnapshot;

/// Resolvers that claim interfaces, in precedence order (earlier wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSource {
    Docker,
    Lxc,
    Vm,
}

impl OwnerSource {
    const ALL: [OwnerSource; 3] = [OwnerSource::Docker, OwnerSource::Lxc, OwnerSource::Vm];
}

pub struct Hub {
    settings: Arc<LabelSettings>,
    topology: ArcSwap<TopologySnapshot>,
    owners: [ArcSwap<Owners>; 3],
    table: ArcSwap<LabelTable>,
    /// Serialises compositions so a slower, older one cannot overwrite a newer table.
    compose_lock: Mutex<()>,
    /// Woken by scrapes that meet an interface the table doesn't know.
    pub wake_topology: Arc<Notify>,
    pub wake_docker: Arc<Notify>,
    pub wake_vm: Arc<Notify>,
    pub wake_lxc: Arc<Notify>,
    born: Instant,
    /// Milliseconds since `born` of the last scrape-triggered wake; 0 = never.
    last_unknown_wake: AtomicU64,
    composed: AtomicBool,
}

/// Scrape-triggered wakes are at most this frequent (engine events are not limited by it).
pub const UNKNOWN_WAKE_GAP: Duration = Duration::from_secs(5);

impl Hub {
    pub fn new(settings: LabelSettings) -> Hub {
        Hub {
            settings: Arc::new(settings),
            topology: ArcSwap::default(),
            owners: Default::default(),
            table: ArcSwap::default(),
            compose_lock: Mutex::new(()),
            wake_topology: Arc::new(Notify::new()),
            wake_docker: Arc::new(Notify::new()),
            wake_vm: Arc::new(Notify::new()),
            wake_lxc: Arc::new(Notify::new()),
            born: Instant::now(),
            last_unknown_wake: AtomicU64::new(0),
            composed: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> &LabelSettings {
        &self.settings
    }

    /// The current label table (a cheap `Arc` clone).
    pub fn table(&self) -> Arc<LabelTable> {
        self.table.load_full()
    }

    /// Replaces the topology snapshot; recomposes only if it changed.
    pub fn publish_topology(&self, snapshot: TopologySnapshot) {
        if **self.topology.load() == snapshot {
            return;
        }
        self.topology.store(Arc::new(snapshot));
        self.recompose();
    }

    /// Replaces one owner resolver's snapshot; recomposes only if it changed.
    pub fn publish_owners(&self, source: OwnerSource, snapshot: Owners) {
        let slot = &self.owners[source as usize];
        if **slot.load() == snapshot {
            return;
        }
        slot.store(Arc::new(snapshot));
        self.recompose();
    }

    /// A scrape met interfaces it could not label: ask the resolvers to look
    /// again, at most once per [`UNKNOWN_WAKE_GAP`]. An interface that no
    /// resolver will ever find (say, `--path.procfs` of the host with the
    /// rootfs of a container) must not turn every scrape into refreshes.
    pub fn wake_for_unknown(&self) {
        if !self.composed.load(Ordering::Relaxed) {
            // Nothing published yet: every resolver is on its first refresh anyway.
            return;
        }
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_unknown_wake.load(Ordering::Relaxed);
        let gap = u64::try_from(UNKNOWN_WAKE_GAP.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < gap {
            return;
        }
        // 0 means "never"; a wake in the first millisecond is stored as 1.
        self.last_unknown_wake.store(now.max(1), Ordering::Relaxed);
        for wake in [
            &self.wake_topology,
            &self.wake_docker,
            &self.wake_vm,
            &self.wake_lxc,
        ] {
            wake.notify_one();
        }
    }

    fn recompose(&self) {
        let _guard = self.compose_lock.lock().unwrap_or_else(|p| p.into_inner());
        let topology = self.topology.load();
        let owners = OwnerSource::ALL.map(|s| self.owners[s as usize].load_full());
        let refs: Vec<&Owners> = owners.iter().map(|o| o.as_ref()).collect();
        let table = compose::compose(&topology, &refs, &self.settings);
        self.table.store(Arc::new(table));
        self.composed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn unknown_wakes_are_rate_limited_and_wait_for_a_first_table() {
        let hub = Hub::new(LabelSettings::default());
        hub.wake_for_unknown();
        assert!(
            hub.wake_topology.notified().now_or_never().is_none(),
            "no table yet: no wake"
        );

        let mut topology = TopologySnapshot::default();
        topology.links.insert(b"eth0".to_vec(), Default::default());
        hub.publish_topology(topology);
        hub.wake_for_unknown();
        assert!(hub.wake_topology.notified().now_or_never().is_some());
        assert!(hub.wake_docker.notified().now_or_never().is_some());
        assert!(hub.wake_vm.notified().now_or_never().is_some());
        assert!(hub.wake_lxc.notified().now_or_never().is_some());
        hub.wake_for_unknown();
        assert!(
            hub.wake_topology.notified().now_or_never().is_none(),
            "within the gap"
        );
    }
}
