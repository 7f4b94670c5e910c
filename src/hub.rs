//! The shared state between resolvers and scrapes: each resolver's latest
//! snapshot, and the label table composed from them. Resolvers publish here;
//! scrapes only `load()` the table, which is lock-free.

use std::sync::{Arc, Mutex};

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
}

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
    /// again. `Notify` keeps at most one permit, so bursts coalesce.
    pub fn wake_for_unknown(&self) {
        self.wake_topology.notify_one();
        self.wake_docker.notify_one();
    }

    fn recompose(&self) {
        let _guard = self.compose_lock.lock().unwrap_or_else(|p| p.into_inner());
        let topology = self.topology.load();
        let owners = OwnerSource::ALL.map(|s| self.owners[s as usize].load_full());
        let refs: Vec<&Owners> = owners.iter().map(|o| o.as_ref()).collect();
        let table = compose::compose(&topology, &refs, &self.settings);
        self.table.store(Arc::new(table));
    }
}
