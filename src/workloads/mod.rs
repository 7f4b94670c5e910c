//! Traffic per workload: the counters the kernel keeps per cgroup
//! ([`accounting`](crate::workloads::accounting)), named by owner. The background side
//! composes, from the cgroup tree and the owners' cgroup claims, which owner
//! each cgroup id is, and which counter slot is whose ([`WorkloadTable`]);
//! the scrape reads the slots and sums them per owner. An owner's counters
//! never go back: a cgroup that goes (a container recreated under the same
//! name) leaves its last counts to its owner, and its slot to a new cgroup.

pub mod accounting;
pub mod cgroups;
pub(crate) mod namespaces;
pub mod peers;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::expose::encoder::{self, MetricType};
use crate::model::owner::{Owner, OwnerKind};
use crate::resolve::sources::Claims;
use crate::workloads::accounting::peers::PeerCounting;
use crate::workloads::accounting::{Accounting, AccountingError, Counts};
use crate::workloads::cgroups::CgroupTree;

/// One workload: what its series say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub owner: Owner,
    /// `instance_type`: `docker`, `incus`, `lxc`, `service` or `host`.
    pub kind: &'static str,
    /// `instance_type="..",<owner label>="..",app=".."`, escaped.
    pub rendered: Box<str>,
}

/// Which workload each cgroup id is, from one composition.
#[derive(Debug, Default)]
pub struct WorkloadTable {
    pub by_id: HashMap<u64, u32>,
    /// In the order of their rendered labels, the order they are written in.
    pub workloads: Vec<Workload>,
    /// Per workload: the counts its gone cgroups left it.
    pub retired: Vec<Counts>,
    /// Each counter slot with a named cgroup, and that cgroup's workload.
    pub by_slot: Vec<(u32, u32)>,
    /// The programs' count of new cgroups when this table was made: a
    /// scrape that reads another has met cgroups the table does not know.
    pub new_cgroups: u64,
    /// Cgroups whose traffic goes uncounted for want of a slot.
    pub unslotted: usize,
    /// Cgroups no walk has that count in a slot of their own.
    pub orphans: HashSet<u64>,
    /// Counts wait for walks that will tell whether their cgroup is new or
    /// an orphan.
    pub pending: bool,
    /// The root cgroup's workload, and the NFS server's: NFS the root
    /// serves (kernel threads) moves from the one to the other.
    pub root: Option<u32>,
    pub nfs: Option<u32>,
    /// The root cgroup's id.
    pub root_cgroup: Option<u64>,
}

/// A unit's name if `path` is a systemd service's cgroup
/// (`/system.slice/smbd.service`, or below a slice of its own).
pub fn service_of(path: &str) -> Option<&str> {
    let (parent, last) = path.rsplit_once('/')?;
    let unit = last.strip_suffix(".service")?;
    (parent.ends_with(".slice") && !unit.is_empty()).then_some(unit)
}

/// The workload name of the NFS server, whichever unit started it: knfsd's
/// connections count in the cgroup of the unit whose `rpc.nfsd` made the
/// listener, or, once that is removed, in no cgroup of the tree, and both
/// are one workload.
pub const NFS: &str = "nfs";

/// A service's workload name: its unit's, but for the NFS server's units.
pub fn service_name(unit: &str) -> &str {
    match unit {
        "nfs-server" | "nfs-kernel-server" | "nfs-mountd" => NFS,
        unit => unit,
    }
}

/// A workload the tree does not show: a cgroup that is gone and still
/// counts (`id`), or a workload whose cgroups all went, kept a while so its
/// last counts are scraped (`id` is `None`).
#[derive(Debug, Clone)]
pub struct Extra {
    pub id: Option<u64>,
    pub kind: &'static str,
    pub owner: Owner,
}

/// A Docker container's id where the path is one of the engine's own
/// layouts, for a container the Docker resolver has not named (yet): the
/// cgroupfs driver's `/docker/<id>`, the systemd driver's
/// `/system.slice/docker-<id>.scope`.
pub fn docker_id(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next()?;
    let id = match path.strip_prefix("/docker/") {
        Some(id) if id == last => id,
        _ => last.strip_prefix("docker-")?.strip_suffix(".scope")?,
    };
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// A workload's labels as its series carry them:
/// `instance_type="..",<owner label>="..",app=".."`, escaped.
pub fn render(owner_label: &str, kind: &str, name: &str, app: &str) -> Box<str> {
    encoder::render_labels([
        ("instance_type", kind.as_bytes()),
        (owner_label, name.as_bytes()),
        ("app", app.as_bytes()),
    ])
}

/// Decides each cgroup's workload: the nearest cgroup at or above it that
/// an owner claims (a container, by the first resolver that claims it),
/// else a systemd service, else the host. A Docker cgroup the Docker
/// resolver has not named yet waits for it (left out of the table, so its
/// bytes show under the container's name once known, never under another
/// name first) where `docker_names`; elsewhere (no Docker resolver) it is
/// written under its short id.
pub fn compose(
    tree: &CgroupTree,
    claims: &[&Claims],
    owner_label: &str,
    docker_names: bool,
    extras: &[Extra],
) -> WorkloadTable {
    let mut table = WorkloadTable::default();
    let mut index: HashMap<(&'static str, Box<str>, Box<str>), u32> = HashMap::new();
    let mut at_path: HashMap<&str, u32> = HashMap::with_capacity(tree.cgroups.len());
    // Cgroups waiting for the Docker resolver's name, and all below them.
    let mut pending: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut add = |table: &mut WorkloadTable, kind: &'static str, owner: Owner| -> u32 {
        let key = (kind, owner.name.clone(), owner.app.clone());
        *index.entry(key).or_insert_with(|| {
            table.workloads.push(Workload {
                rendered: render(owner_label, kind, &owner.name, &owner.app),
                owner,
                kind,
            });
            table.retired.push(Counts::default());
            (table.workloads.len() - 1) as u32
        })
    };
    for cgroup in &tree.cgroups {
        let path = cgroup.path.as_str();
        let claim = claims.iter().find_map(|c| c.by_cgroup.get(path));
        let parent_path = path
            .rsplit_once('/')
            .map(|(p, _)| if p.is_empty() { "/" } else { p })
            .filter(|_| path != "/");
        let parent = parent_path.and_then(|p| at_path.get(p).copied());
        let waits = claim.is_none()
            && (parent_path.is_some_and(|p| pending.contains(p))
                || docker_names && docker_id(path).is_some());
        if waits {
            pending.insert(path);
            continue;
        }
        let workload = if let Some(c) = claim {
            let of = if c.of == OwnerKind::Container && !c.app.is_empty() {
                OwnerKind::App
            } else {
                c.of
            };
            add(
                &mut table,
                c.kind.as_str(),
                Owner::new(of, &c.instance, &c.app),
            )
        } else if let Some(id) = docker_id(path) {
            let owner = Owner::new(OwnerKind::Container, &id[..12], "");
            add(&mut table, "docker", owner)
        } else if let Some(unit) = service_of(path) {
            add(
                &mut table,
                "service",
                Owner::new(OwnerKind::Service, service_name(unit), ""),
            )
        } else if let Some(p) = parent {
            p
        } else {
            add(&mut table, "host", Owner::host())
        };
        at_path.insert(path, workload);
        table.by_id.insert(cgroup.id, workload);
    }
    for extra in extras {
        let workload = add(&mut table, extra.kind, extra.owner.clone());
        if let Some(id) = extra.id {
            table.by_id.entry(id).or_insert(workload);
        }
    }
    // Written in label order: sorted once here, not at every scrape.
    let mut order: Vec<u32> = (0..table.workloads.len() as u32).collect();
    order.sort_by(|&a, &b| {
        table.workloads[a as usize]
            .rendered
            .cmp(&table.workloads[b as usize].rendered)
    });
    let mut rank = vec![0u32; order.len()];
    for (to, &from) in order.iter().enumerate() {
        rank[from as usize] = to as u32;
    }
    let mut workloads: Vec<Option<Workload>> = table.workloads.drain(..).map(Some).collect();
    table.workloads = order
        .iter()
        .filter_map(|&from| workloads[from as usize].take())
        .collect();
    for w in table.by_id.values_mut() {
        *w = rank[*w as usize];
    }
    table
}

/// What a scrape's read of the counters found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Workloads written.
    pub workloads: usize,
    /// Cgroups counted that the last composition did not know (new since).
    pub unknown: usize,
    /// Cgroups whose traffic goes uncounted for want of a slot.
    pub unslotted: usize,
}

/// Each workload that counted anything, as its index in the table, with
/// its counts.
pub type Sums = Vec<(usize, Counts)>;

/// How long a workload whose cgroups all went keeps its series: long
/// enough for every scraper to read its last counts (a container that
/// lived two seconds), short enough that gone ones do not pile up.
pub const LINGER: Duration = Duration::from_secs(300);
/// Gone cgroups whose workload is remembered, for one that counts again
/// as an orphan (a unit's cgroup removed while its sockets live).
const FORMER_MAX: usize = 4096;

/// What gone cgroups left a workload.
#[derive(Debug)]
struct Retired {
    workload: Workload,
    counts: Counts,
    /// Since when the workload has no cgroup left.
    absent_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct Memory {
    /// By the workload's rendered labels.
    retired: HashMap<Box<str>, Retired>,
    /// A gone cgroup's workload, and the walk it went in.
    former: HashMap<u64, (Workload, u64)>,
    /// Cgroups no walk has that serve NFS, as the peer map saw.
    nfs: HashSet<u64>,
}

/// The per-peer programs in the counter's place, and what they give.
pub struct PeerCounts {
    pub counting: PeerCounting,
    /// The `nfs` protocol's index in the port table, if it is listed.
    pub nfs_protocol: Option<u8>,
}

/// The counting programs and the latest table.
pub struct Workloads {
    accounting: Accounting,
    peers: Option<PeerCounts>,
    /// The root's counts as last written, less the NFS it served: never
    /// written lower (the two are read a moment apart).
    root_floor: [AtomicU64; 4],
    table: ArcSwap<WorkloadTable>,
    memory: Mutex<Memory>,
    owner_label: String,
    /// Whether the last settle of the counters could write the kernel's
    /// maps.
    healthy: std::sync::atomic::AtomicBool,
}

impl Workloads {
    pub fn new(accounting: Accounting, peers: Option<PeerCounts>, owner_label: &str) -> Workloads {
        Workloads {
            accounting,
            peers,
            root_floor: Default::default(),
            table: ArcSwap::default(),
            memory: Mutex::default(),
            owner_label: owner_label.to_owned(),
            healthy: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn table(&self) -> Arc<WorkloadTable> {
        self.table.load_full()
    }

    /// Whether the programs have met cgroups since the table was made, so
    /// a new one is due even if the cgroup tree has not changed (a cgroup
    /// that was idle until now is known; its first counts wait for it).
    /// Counts that wait for the walks to tell a cgroup born since from one
    /// that is gone count too: the walks they wait for are due now, not at
    /// the next interval.
    pub fn unsettled(&self) -> bool {
        self.accounting.new_cgroups() != self.table.load().new_cgroups || self.table.load().pending
    }

    /// Whether the next read of the tree is to be settled even if it did
    /// not change: [`Workloads::unsettled`], orphans to watch, or gone
    /// workloads whose [`LINGER`] is to end.
    pub fn settle_due(&self) -> bool {
        self.unsettled()
            || !self.table.load().orphans.is_empty()
            || self
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retired
                .values()
                .any(|r| r.absent_since.is_some())
    }

    /// Detaches the counting programs (the way out).
    pub fn detach(&self) {
        self.accounting.detach();
        if let Some(peers) = &self.peers {
            peers.counting.detach();
        }
    }

    /// The per-peer counting, where it runs.
    pub fn peers(&self) -> Option<&PeerCounts> {
        self.peers.as_ref()
    }

    /// NFS the root cgroup served (knfsd's threads), counted exactly.
    fn root_nfs(&self) -> Counts {
        match &self.peers {
            Some(PeerCounts {
                counting,
                nfs_protocol: Some(nfs),
                ..
            }) => counting.root_protocol(*nfs),
            _ => Counts::default(),
        }
    }

    /// Whether the last composition could write the kernel's maps.
    pub fn healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes that cgroup `id`, which no walk has, serves NFS: its counts go
    /// to the [`NFS`] workload once it is an orphan. Returns whether this
    /// is news (a composition is then due).
    pub fn serves_nfs(&self, id: u64) -> bool {
        // Once a workload has its counts, it keeps them: a reclassified
        // orphan would take its counts from one workload's counter.
        if self.table.load().by_id.contains_key(&id) {
            return false;
        }
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.nfs.len() < FORMER_MAX && memory.nfs.insert(id)
    }

    /// A new composition: the counters are settled against the tree, the
    /// `walk`th read of it (new cgroups get slots, gone ones leave theirs),
    /// and a gone cgroup's last counts go to its workload, which keeps its
    /// series for [`LINGER`] after its last cgroup went. A cgroup no walk
    /// has that still counts (an orphan) is its former workload's, else
    /// the NFS server's if it serves NFS, else the host's.
    pub fn publish(
        &self,
        tree: &CgroupTree,
        walk: u64,
        claims: &[&Claims],
        docker_names: bool,
    ) -> Result<(), AccountingError> {
        let live: Vec<u64> = tree.cgroups.iter().map(|c| c.id).collect();
        let settled = match self.accounting.settle(&live, walk) {
            Ok(s) => s,
            Err(e) => {
                // The table in place still reads the slots it knows.
                self.healthy
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        };
        let now = Instant::now();
        let old = self.table.load_full();
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        for (id, c) in &settled.gone {
            let workload = old
                .by_id
                .get(id)
                .and_then(|&w| old.workloads.get(w as usize));
            if let Some(workload) = workload {
                memory
                    .retired
                    .entry(workload.rendered.clone())
                    .or_insert_with(|| Retired {
                        workload: workload.clone(),
                        counts: Counts::default(),
                        absent_since: None,
                    })
                    .counts
                    .add(c);
                memory.former.insert(*id, (workload.clone(), walk));
            }
        }
        if memory.former.len() > FORMER_MAX {
            let mut walks: Vec<u64> = memory.former.values().map(|(_, w)| *w).collect();
            walks.sort_unstable();
            let cut = walks[walks.len() - FORMER_MAX];
            memory.former.retain(|_, (_, w)| *w >= cut);
        }
        let mut extras: Vec<Extra> = Vec::new();
        for &id in &settled.orphans {
            let (kind, owner) = match memory.former.get(&id) {
                Some((w, _)) => (w.kind, w.owner.clone()),
                None if memory.nfs.contains(&id) => {
                    ("service", Owner::new(OwnerKind::Service, NFS, ""))
                }
                None => ("host", Owner::host()),
            };
            extras.push(Extra {
                id: Some(id),
                kind,
                owner,
            });
        }
        if self.root_nfs() != Counts::default() {
            extras.push(Extra {
                id: None,
                kind: "service",
                owner: Owner::new(OwnerKind::Service, NFS, ""),
            });
        }
        // Every workload with retired counts, so one whose cgroups all went
        // is still written while it lingers (for the others, a no-op).
        extras.extend(memory.retired.values().map(|r| Extra {
            id: None,
            kind: r.workload.kind,
            owner: r.workload.owner.clone(),
        }));
        let mut next = compose(tree, claims, &self.owner_label, docker_names, &extras);
        let present: HashMap<&str, usize> = next
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| (&*w.rendered, i))
            .collect();
        let has_cgroup: HashSet<u32> = next.by_id.values().copied().collect();
        memory.retired.retain(|k, r| {
            let Some(&i) = present.get(&**k) else {
                return false;
            };
            if has_cgroup.contains(&(i as u32)) {
                r.absent_since = None;
            } else {
                let since = *r.absent_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= LINGER {
                    // Written this once more; gone from the next.
                    return false;
                }
            }
            next.retired[i] = r.counts;
            true
        });
        drop(memory);
        next.root_cgroup = tree.cgroups.first().map(|c| c.id);
        next.root = next.root_cgroup.and_then(|id| next.by_id.get(&id).copied());
        let nfs = render(&self.owner_label, "service", NFS, "");
        next.nfs = next
            .workloads
            .iter()
            .position(|w| w.rendered == nfs)
            .map(|i| i as u32);
        next.orphans = settled.orphans.iter().copied().collect();
        next.pending = settled.pending;
        next.by_slot = settled
            .slots
            .iter()
            .filter_map(|(id, slot)| next.by_id.get(id).map(|&w| (*slot, w)))
            .collect();
        next.new_cgroups = settled.new_cgroups;
        next.unslotted = settled.unslotted;
        self.table.store(Arc::new(next));
        self.healthy.store(
            settled.failed.is_none(),
            std::sync::atomic::Ordering::Relaxed,
        );
        match settled.failed {
            Some((_, e)) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Reads the counters and writes the `net_workload_*` families.
    pub fn write(&self, out: &mut Vec<u8>) -> ReadStats {
        let (table, sums, stats) = self.read();
        let rows: Vec<(&str, Counts)> = sums
            .iter()
            .map(|&(w, c)| (&*table.workloads[w].rendered, c))
            .collect();
        write_families(out, &rows);
        stats
    }

    /// Reads the counter slots and sums them per workload, what gone
    /// cgroups left it included: the workloads that have counted anything,
    /// in the order `write` writes them in, as indexes into the table they
    /// were read with, which nothing is copied out of. No call to the
    /// kernel: the slots are mapped memory. The scrape and the live view
    /// both read through here, so they agree.
    pub fn read(&self) -> (Arc<WorkloadTable>, Sums, ReadStats) {
        let table = self.table.load_full();
        // Read before the root's slot: every packet in it is in the root's
        // counts by then (the counter runs first).
        let root_nfs = self.root_nfs();
        let mut sums = table.retired.clone();
        for &(slot, w) in &table.by_slot {
            if let Some(sum) = sums.get_mut(w as usize) {
                sum.add(&self.accounting.slot(slot));
            }
        }
        if let (Some(root), Some(nfs)) = (table.root, table.nfs)
            && root_nfs != Counts::default()
            && root != nfs
        {
            if let Some(sum) = sums.get_mut(root as usize) {
                *sum = self.floor(sum.saturating_sub(&root_nfs));
            }
            if let Some(sum) = sums.get_mut(nfs as usize) {
                sum.add(&root_nfs);
            }
        }
        // A container is written from its first composition, at 0 if it
        // has sent nothing: a series that appears late loses its first
        // bytes to `rate()`. A host service only once it counts (most never
        // touch the network).
        let read: Sums = sums
            .into_iter()
            .enumerate()
            .filter(|(w, c)| {
                *c != Counts::default()
                    || matches!(table.workloads[*w].kind, "docker" | "incus" | "lxc")
            })
            .collect();
        let stats = ReadStats {
            workloads: read.len(),
            unknown: self
                .accounting
                .new_cgroups()
                .saturating_sub(table.new_cgroups) as usize,
            unslotted: table.unslotted,
        };
        (table, read, stats)
    }
}

impl Workloads {
    /// `c`, but never below what was written before: a packet the counter
    /// has and the NFS count has not yet would otherwise be taken off the
    /// root once it has (a drop reads as a counter reset).
    fn floor(&self, c: Counts) -> Counts {
        let fields = [c.rx_bytes, c.rx_packets, c.tx_bytes, c.tx_packets];
        let mut out = [0u64; 4];
        for ((floor, v), o) in self.root_floor.iter().zip(fields).zip(&mut out) {
            *o = floor.fetch_max(v, Ordering::Relaxed).max(v);
        }
        Counts::from_entry(out)
    }
}

/// A counter family: name, help, and which count it writes.
pub type Family = (&'static str, &'static str, fn(&Counts) -> u64);

/// The workload families, from the workload's side (rx: what it received).
/// The kernel counts its sockets' packets per cgroup (IP header and
/// payload; a GSO/GRO super-packet once); where it cannot, a container with
/// a network namespace of its own and no host interface has its namespace's
/// interfaces' counters instead ([`crate::workloads::namespaces`]: Ethernet frames).
pub const FAMILIES: [Family; 4] = [
    (
        "net_workload_rx_bytes_total",
        "Bytes the workload received: its sockets' (IP header and payload), or its network namespace's interfaces'.",
        |c| c.rx_bytes,
    ),
    (
        "net_workload_tx_bytes_total",
        "Bytes the workload sent: its sockets' (IP header and payload), or its network namespace's interfaces'.",
        |c| c.tx_bytes,
    ),
    (
        "net_workload_rx_packets_total",
        "Packets the workload received (its sockets' count a GRO super-packet once).",
        |c| c.rx_packets,
    ),
    (
        "net_workload_tx_packets_total",
        "Packets the workload sent (its sockets' count a GSO super-packet once).",
        |c| c.tx_packets,
    ),
];

/// Writes [`FAMILIES`] for `rows` (rendered labels and counts), in order.
pub fn write_families(out: &mut Vec<u8>, rows: &[(&str, Counts)]) {
    for (name, help, value) in FAMILIES {
        encoder::header(out, name, help, MetricType::Counter);
        for (labels, counts) in rows {
            encoder::sample(out, name, labels, value(counts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::Kind;
    use crate::resolve::sources::Claim;
    use crate::workloads::cgroups::Cgroup;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn services_and_docker_layouts() {
        assert_eq!(service_of("/system.slice/smbd.service"), Some("smbd"));
        assert_eq!(service_of("/system.slice/ssh.service"), Some("ssh"));
        assert_eq!(service_of("/user.slice/x.service"), Some("x"));
        assert_eq!(service_of("/system.slice"), None);
        assert_eq!(service_of("/docker/x.service"), None);
        assert_eq!(docker_id(&format!("/docker/{ID}")), Some(ID));
        assert_eq!(
            docker_id(&format!("/system.slice/docker-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(docker_id(&format!("/docker/{ID}/child")), None);
        assert_eq!(docker_id("/docker/abc"), None);
    }

    #[test]
    fn each_cgroup_is_its_nearest_owner() {
        let tree = CgroupTree {
            cgroups: [
                "/",
                "/system.slice",
                "/docker",
                "/system.slice/smbd.service",
                "/system.slice/docker-aaaa.scope",
                &format!("/docker/{ID}"),
                "/docker/named",
                "/docker/named/inner",
                "/system.slice/smbd.service/worker",
                "/init.scope",
            ]
            .iter()
            .enumerate()
            .map(|(i, p)| Cgroup {
                id: i as u64 + 1,
                path: (*p).to_owned(),
            })
            .collect(),
            ..CgroupTree::default()
        };
        let mut claims = Claims::default();
        claims.by_cgroup.insert(
            "/docker/named".into(),
            Claim {
                kind: Kind::Docker,
                instance: "web\"1".into(),
                app: "immich".into(),
                of: OwnerKind::Container,
            },
        );
        let table = compose(&tree, &[&claims], "instance", false, &[]);
        let of = |id: u64| {
            table.workloads[table.by_id[&id] as usize]
                .rendered
                .to_string()
        };
        let host = r#"instance_type="host",instance="host",app="""#;
        assert_eq!(of(1), host);
        assert_eq!(of(2), host, "a slice is the host's");
        assert_eq!(of(4), r#"instance_type="service",instance="smbd",app="""#);
        assert_eq!(of(9), of(4), "below a service: the service");
        assert_eq!(of(5), host, "not a Docker id");
        assert_eq!(
            of(6),
            r#"instance_type="docker",instance="0123456789ab",app="""#
        );
        assert_eq!(
            of(7),
            r#"instance_type="docker",instance="web\"1",app="immich""#
        );
        assert_eq!(of(8), of(7), "below a container: the container");
        assert_eq!(of(10), host);
        assert_eq!(table.workloads.len(), 4);

        // With a Docker resolver, an unnamed container's cgroup waits for
        // its name, and so does everything below it.
        let mut tree = tree;
        tree.cgroups.push(Cgroup {
            id: 11,
            path: format!("/docker/{ID}/inner"),
        });
        let table = compose(&tree, &[&claims], "instance", true, &[]);
        assert!(!table.by_id.contains_key(&6) && !table.by_id.contains_key(&11));
        assert_eq!(
            table.workloads[table.by_id[&7] as usize]
                .rendered
                .to_string(),
            r#"instance_type="docker",instance="web\"1",app="immich""#
        );
    }
}
