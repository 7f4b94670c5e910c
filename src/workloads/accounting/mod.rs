//! Traffic per cgroup, for the workloads with no host interface of their
//! own (host-network containers, the host's services): a counting program
//! on the ingress and egress of every inet socket below a cgroup v2
//! directory (the root, in production), linked once, counting per socket
//! cgroup id (the inode number of its directory).
//!
//! Each cgroup user space knows gets a slot in an array both the programs
//! and this process map: a scrape reads a slot with four loads and no call,
//! so its cost grows with the cgroups it names, not with the map's size. (A
//! batch read of a hash map walks every bucket: with 100 cgroups in a map
//! of 16384, 48 µs of a scrape, against 0.9 µs for the slots, `cargo bench
//! --bench scrape -- workloads`.) A cgroup new since user space looked
//! counts in a hash map by id until [`settle`] gives it a slot and takes
//! its counts over.
//!
//! Where `[peers]` is on, the links run the per-peer programs instead
//! ([`peers`]), which count per cgroup in these same maps; their peer map
//! caches each cgroup's slot, so [`settle`] zeroes the cached copies of a
//! slot it hands back before the slot is free (the race is in `peers`).
//!
//! The links close with the process, so a crash or `kill -9` leaves no
//! program attached. They coexist with systemd's and Docker's programs.
//!
//! [`settle`]: Accounting::settle

pub mod bpf;
pub mod elf;
pub mod peers;
pub mod program;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use self::bpf::{BpfError, Direction, MappedArray};

/// Map entries read per call at least; a read sizes its buffers by the
/// last one's count, so a host with few new cgroups does not clear 100 KiB
/// of buffers per read.
const MIN_CHUNK: usize = 64;
/// Walks of the cgroup tree a cgroup's fresh counts wait for it to appear
/// in before they are dropped as a gone cgroup's: the first walk after they
/// were taken may have begun before the cgroup was made; the next began
/// after.
const PENDING_WALKS: u64 = 2;
/// Walks an orphan's counts may stand still before its slot is handed
/// back (its counts go to its workload's retired counts).
const ORPHAN_IDLE_WALKS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum AccountingError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("cannot open the cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the compiled BPF object: {0}")]
    Object(#[from] elf::ElfError),
}

/// One cgroup's socket traffic since the program was attached: bytes are
/// L3 (IP header and payload), and a packet is what the socket layer saw
/// (a GSO or GRO super-packet counts once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

impl Counts {
    /// From rx bytes, rx packets, tx bytes, tx packets (a map entry's order).
    pub(crate) fn from_entry([rx_bytes, rx_packets, tx_bytes, tx_packets]: [u64; 4]) -> Counts {
        Counts {
            rx_bytes,
            rx_packets,
            tx_bytes,
            tx_packets,
        }
    }

    fn entry(&self) -> [u64; 4] {
        [
            self.rx_bytes,
            self.rx_packets,
            self.tx_bytes,
            self.tx_packets,
        ]
    }

    /// Each field less `other`'s, never below zero.
    pub fn saturating_sub(&self, other: &Counts) -> Counts {
        Counts {
            rx_bytes: self.rx_bytes.saturating_sub(other.rx_bytes),
            rx_packets: self.rx_packets.saturating_sub(other.rx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(other.tx_bytes),
            tx_packets: self.tx_packets.saturating_sub(other.tx_packets),
        }
    }

    pub fn add(&mut self, other: &Counts) {
        self.rx_bytes += other.rx_bytes;
        self.rx_packets += other.rx_packets;
        self.tx_bytes += other.tx_bytes;
        self.tx_packets += other.tx_packets;
    }
}

/// The programs linked to one cgroup, and the maps they share.
pub struct Accounting {
    /// Cgroup id to slot.
    slots: OwnedFd,
    /// Slot to counters; slot 0 counts the new cgroups met.
    counters: MappedArray,
    /// Cgroup id to counters, for cgroups with no slot.
    fresh: OwnedFd,
    max_cgroups: u32,
    /// The links, and the counter's own programs.
    links: Arc<Links>,
    state: Mutex<Slots>,
}

/// The two links to the cgroup, whichever programs they run: the counter
/// (`program.rs`), or the per-peer programs that count per cgroup too
/// (`peers.bpf.c`, [`peers::PeerCounting`]).
pub(crate) struct Links {
    /// Closing them detaches the programs: at [`Accounting::detach`], or
    /// with the process.
    links: Mutex<Option<[OwnedFd; 2]>>,
    /// The counter, ingress and egress.
    counter: [OwnedFd; 2],
}

impl Links {
    /// Has both links run `programs` (ingress, egress) from now on: each
    /// swap is one step (a packet runs the old program or the new, never
    /// both, never neither), and both count per cgroup in the same maps.
    /// Detached links stay detached.
    pub(crate) fn run(&self, programs: &[OwnedFd; 2]) -> Result<(), BpfError> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let Some([rx, tx]) = links.as_ref() else {
            return Ok(());
        };
        bpf::link_update(rx, &programs[0])?;
        if let Err(e) = bpf::link_update(tx, &programs[1]) {
            // Back to the counter on both, as before.
            let _ = bpf::link_update(rx, &self.counter[0]);
            return Err(e);
        }
        Ok(())
    }

    /// Back to the counter alone.
    pub(crate) fn restore(&self) -> Result<(), BpfError> {
        self.run(&self.counter)
    }
}

/// Who has which slot: user space alone hands them out.
#[derive(Debug, Default)]
struct Slots {
    of: HashMap<u64, u32>,
    /// Handed back by gone cgroups, zeroed.
    free: Vec<u32>,
    /// Handed back at the last settle: a program that found the slot just
    /// before its key went may still be adding, so they rest one settle.
    resting: Vec<u32>,
    /// Slots below it have been handed out once.
    next: u32,
    /// Counts taken from the fresh map for cgroups with no slot yet, and
    /// the walk of the tree in place when they were first taken.
    pending: HashMap<u64, (Counts, u64)>,
    /// Entries the last read of the fresh map found, to size the next.
    last_read: usize,
    /// The programs' count of uncounted packets at the last settle.
    uncounted: u64,
    /// Cgroups that count but are in no walk of the tree: removed while
    /// their sockets live on (knfsd's, whose listener `rpc.nfsd` made in a
    /// oneshot unit). Their slot, their counts at the last settle and the
    /// walk those last changed in.
    orphans: HashMap<u64, (u32, Counts, u64)>,
    /// The peer map, where the per-peer programs count: its keys cache
    /// their cgroup's slot.
    peers: Option<OwnedFd>,
}

/// What a settle did.
#[derive(Debug, Default)]
pub struct Settled {
    /// Every cgroup with a slot, and its slot.
    pub slots: Vec<(u64, u32)>,
    /// Cgroups that had a slot and are gone, with their last counts.
    pub gone: Vec<(u64, Counts)>,
    /// Cgroups no walk has, counting in a slot of their own.
    pub orphans: Vec<u64>,
    /// Whether counts of cgroups no walk has had yet wait for the walks
    /// that tell one born since from one that is gone (an orphan).
    pub pending: bool,
    /// [`Accounting::new_cgroups`] when the settle read the fresh map.
    pub new_cgroups: u64,
    /// Cgroups whose traffic goes uncounted for want of a slot (or of room
    /// in the fresh map).
    pub unslotted: usize,
    /// Map writes that failed (left for the next settle), and the first
    /// failure.
    pub failed: Option<(usize, BpfError)>,
    /// Peer keys whose cached slot was zeroed: their cgroup no longer had
    /// that slot.
    pub uncached: usize,
}

impl Settled {
    /// Counts a failed map write, keeping the first.
    fn fail(&mut self, e: BpfError) {
        match &mut self.failed {
            Some((n, _)) => *n += 1,
            None => self.failed = Some((1, e)),
        }
    }
}

impl Accounting {
    /// Loads the two programs, counting at most `max_cgroups` cgroups, and
    /// links them to the cgroup v2 directory `cgroup`.
    pub fn attach(cgroup: &Path, max_cgroups: u32) -> Result<Accounting, AccountingError> {
        let dir = std::fs::File::open(cgroup).map_err(|source| AccountingError::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        let max_cgroups = max_cgroups.clamp(1, u32::MAX - 1);
        let slots = bpf::hash_map(
            "tne_slots",
            program::KEY_SIZE,
            program::SLOT_SIZE,
            max_cgroups,
        )?;
        let counters = MappedArray::create("tne_counters", max_cgroups + 1)?;
        let fresh = bpf::hash_map(
            "tne_fresh",
            program::KEY_SIZE,
            program::VALUE_SIZE,
            max_cgroups,
        )?;
        let maps = program::Maps {
            slots: slots.as_raw_fd(),
            counters: counters.fd().as_raw_fd(),
            fresh: fresh.as_raw_fd(),
        };
        let load = |direction, name: &str, offset| {
            let code = program::bytes(&program::counter(maps, offset));
            bpf::load_cgroup_skb(name, direction, &code)
        };
        let counter = [
            load(Direction::Ingress, "tne_rx", program::INGRESS)?,
            load(Direction::Egress, "tne_tx", program::EGRESS)?,
        ];
        // The link holds the program, the program the maps.
        let rx = bpf::link_cgroup(&counter[0], &dir, Direction::Ingress)?;
        let tx = bpf::link_cgroup(&counter[1], &dir, Direction::Egress)?;
        Ok(Accounting {
            slots,
            counters,
            fresh,
            max_cgroups,
            links: Arc::new(Links {
                links: Mutex::new(Some([rx, tx])),
                counter,
            }),
            state: Mutex::new(Slots {
                next: 1,
                ..Slots::default()
            }),
        })
    }

    /// Detaches both programs now. The process's exit would too, but a
    /// thread stuck on a hung mount can keep a process from exiting, and
    /// the programs must not count on for it. They count nothing after.
    pub fn detach(&self) {
        let links = self
            .links
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(links);
    }

    /// The per-cgroup maps, by the names the compiled object loads them by.
    pub(crate) fn map_fd(&self, name: &str) -> Option<RawFd> {
        match name {
            "tne_slots" => Some(self.slots.as_raw_fd()),
            "tne_counters" => Some(self.counters.fd().as_raw_fd()),
            "tne_fresh" => Some(self.fresh.as_raw_fd()),
            _ => None,
        }
    }

    pub(crate) fn links(&self) -> Arc<Links> {
        self.links.clone()
    }

    /// The peer map whose keys cache slots (`None`: none): from now on a
    /// settle zeroes a cached slot before the slot can go to another
    /// cgroup.
    pub(crate) fn cache_slots_in(&self, peers: Option<OwnedFd>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).peers = peers;
    }

    /// Slot `slot`'s counts, now: four loads, no call.
    pub fn slot(&self, slot: u32) -> Counts {
        Counts::from_entry(self.counters.get(slot as usize))
    }

    /// How many cgroups with no slot the programs have met: when it
    /// changes, a settle has work to do.
    pub fn new_cgroups(&self) -> u64 {
        self.counters.get(0)[0]
    }

    /// Packets the programs could not count: the fresh map was full.
    pub fn uncounted_packets(&self) -> u64 {
        self.counters.get(0)[1]
    }

    /// The background step, with `live` every cgroup in the `walk`th read
    /// of the tree (parents first): takes over the fresh map's counts;
    /// gives a slot to each live cgroup that has traffic, then to the
    /// others while half the slots are free (so their first packet counts
    /// in a slot); and takes the slots of the cgroups that are gone, with
    /// their last counts.
    pub fn settle(&self, live: &[u64], walk: u64) -> Result<Settled, AccountingError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let new_cgroups = self.new_cgroups();
        let chunk = (st.last_read + st.last_read / 4).max(MIN_CHUNK);
        let taken = bpf::read_all(&self.fresh, chunk, true)?;
        st.last_read = taken.len();
        let uncounted = self.uncounted_packets();
        let fresh_full = std::mem::replace(&mut st.uncounted, uncounted) != uncounted;
        for (id, entry) in taken {
            match st.of.get(&id) {
                // Counted after its slot was given: the slot's.
                Some(&slot) => self.counters.add(slot as usize, entry),
                None => {
                    let (counts, _) = st.pending.entry(id).or_insert((Counts::default(), walk));
                    counts.add(&Counts::from_entry(entry));
                }
            }
        }
        let mut settled = Settled {
            new_cgroups,
            ..Settled::default()
        };

        let live_set: HashSet<u64> = live.iter().copied().collect();
        // Handed back at the last settle; free once no key caches them.
        let rested = std::mem::take(&mut st.resting);
        let gone: Vec<(u64, u32)> = st
            .of
            .iter()
            .filter(|(id, _)| !live_set.contains(id))
            .map(|(&id, &slot)| (id, slot))
            .collect();
        for (id, slot) in gone {
            if self.hand_back(&mut st, &mut settled, id, slot) {
                st.of.remove(&id);
            }
        }

        // Orphans whose counts stood still long enough hand their slot back.
        let mut quiet = Vec::new();
        for (&id, (slot, last, changed)) in st.orphans.iter_mut() {
            let now = self.slot(*slot);
            if now != *last {
                *last = now;
                *changed = walk;
            } else if walk >= *changed + ORPHAN_IDLE_WALKS {
                quiet.push((id, *slot));
            }
        }
        for (id, slot) in quiet {
            if self.hand_back(&mut st, &mut settled, id, slot) {
                st.orphans.remove(&id);
            }
        }

        // No peer key may cache a slot its cgroup no longer has: those
        // handed back now (so their cgroup's next packets find no slot, as
        // without the cache), and those handed back at the last settle (a
        // packet that read the slot from the slots map just before its key
        // went may have cached it since), before they are free.
        let mut swept = true;
        if (!rested.is_empty() || !st.resting.is_empty())
            && let Some(map) = &st.peers
        {
            let owns = |id: u64, slot: u32| {
                st.of.get(&id) == Some(&slot) || st.orphans.get(&id).is_some_and(|o| o.0 == slot)
            };
            match peers::uncache(map, owns) {
                Ok(n) => settled.uncached = n,
                Err(e) => {
                    settled.fail(e);
                    swept = false;
                }
            }
        }
        if swept {
            for slot in rested {
                self.counters.clear(slot as usize);
                st.free.push(slot);
            }
        } else {
            // Still resting, for the next settle's sweep.
            st.resting.extend(rested);
        }

        let mut pending: Vec<u64> = st.pending.keys().copied().collect();
        pending.sort_unstable();
        for id in pending {
            if !live_set.contains(&id) {
                let waited = st
                    .pending
                    .get(&id)
                    .is_some_and(|p| walk >= p.1 + PENDING_WALKS);
                if waited {
                    // Not a cgroup the walks had not met yet: one that is
                    // gone and still counts. It keeps its counts in a slot.
                    let counts = st.pending.remove(&id).map(|p| p.0).unwrap_or_default();
                    let Some(slot) = self.take_slot(&mut st) else {
                        settled.unslotted += 1;
                        continue;
                    };
                    self.counters.add(slot as usize, counts.entry());
                    match bpf::update(&self.slots, id, &slot.to_ne_bytes()) {
                        Ok(()) => {
                            st.orphans.insert(id, (slot, counts, walk));
                        }
                        Err(e) => {
                            self.counters.clear(slot as usize);
                            st.free.push(slot);
                            settled.fail(e);
                        }
                    }
                }
                continue;
            }
            let Some(slot) = self.take_slot(&mut st) else {
                settled.unslotted += 1;
                continue;
            };
            let counts = st.pending.get(&id).map(|p| p.0).unwrap_or_default();
            self.counters.add(slot as usize, counts.entry());
            match bpf::update(&self.slots, id, &slot.to_ne_bytes()) {
                Ok(()) => {
                    st.pending.remove(&id);
                    st.of.insert(id, slot);
                }
                Err(e) => {
                    self.counters.clear(slot as usize);
                    st.free.push(slot);
                    settled.fail(e);
                }
            }
        }
        for &id in live {
            if st.of.contains_key(&id) {
                continue;
            }
            if st.of.len() + 1 > self.max_cgroups as usize / 2 {
                break;
            }
            let Some(slot) = self.take_slot(&mut st) else {
                break;
            };
            if let Err(e) = bpf::update(&self.slots, id, &slot.to_ne_bytes()) {
                st.free.push(slot);
                settled.fail(e);
                continue;
            }
            st.of.insert(id, slot);
        }
        if fresh_full {
            settled.unslotted = settled.unslotted.max(1);
        }
        settled.slots = st.of.iter().map(|(&id, &slot)| (id, slot)).collect();
        settled
            .slots
            .extend(st.orphans.iter().map(|(&id, &(slot, _, _))| (id, slot)));
        settled.orphans = st.orphans.keys().copied().collect();
        settled.orphans.sort_unstable();
        settled.pending = !st.pending.is_empty();
        settled.slots.sort_unstable_by_key(|&(_, slot)| slot);
        Ok(settled)
    }

    /// Takes `id`'s slot back: its key goes from the slots map, its last
    /// counts into `settled.gone`, the slot to rest. Whether it worked.
    fn hand_back(&self, st: &mut Slots, settled: &mut Settled, id: u64, slot: u32) -> bool {
        if let Err(e) = bpf::delete(&self.slots, id) {
            settled.fail(e);
            return false;
        }
        // Read after the key went: what a program adds in the few
        // instructions between its lookup and its add is all it misses.
        settled.gone.push((id, self.slot(slot)));
        st.resting.push(slot);
        true
    }

    /// A zeroed slot no cgroup has, if one is left.
    fn take_slot(&self, st: &mut Slots) -> Option<u32> {
        if let Some(slot) = st.free.pop() {
            return Some(slot);
        }
        (st.next <= self.max_cgroups).then(|| {
            st.next += 1;
            st.next - 1
        })
    }

    /// Every cgroup counted so far, by id, wherever its counts are: its
    /// slot, or what the fresh map and the last settles hold for it.
    pub fn read(&self) -> Result<BTreeMap<u64, Counts>, AccountingError> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: BTreeMap<u64, Counts> = st
            .of
            .iter()
            .map(|(&id, &slot)| (id, self.slot(slot)))
            .chain(
                st.orphans
                    .iter()
                    .map(|(&id, &(slot, _, _))| (id, self.slot(slot))),
            )
            .collect();
        for (&id, (counts, _)) in &st.pending {
            all.entry(id).or_default().add(counts);
        }
        for (id, entry) in bpf::read_all(&self.fresh, MIN_CHUNK, false)? {
            all.entry(id).or_default().add(&Counts::from_entry(entry));
        }
        all.retain(|_, c| *c != Counts::default());
        Ok(all)
    }
}

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo`:
/// `/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid
/// one. The last `cgroup2` mount of the hierarchy's root wins: a later
/// mount may hide an earlier one (a fresh sysfs over `/sys`), never the
/// other way round.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().rev().find_map(|line| {
        // id parent major:minor root mount-point options [optional...] - type source super
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split(' ');
        let root = fields.nth(3)?;
        let point = fields.next()?;
        (root == "/").then(|| PathBuf::from(unescape(point)))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_mount_on_hybrid_and_unified_hosts() {
        let hybrid = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
30 29 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
31 29 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "35 25 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hidden = format!("{hybrid}50 25 0:40 / /sys rw - sysfs sysfs rw\n{unified}");
        assert_eq!(
            cgroup2_mount(&hidden),
            Some(PathBuf::from("/sys/fs/cgroup")),
            "the later mount"
        );
        // A container's view of a sub-cgroup is not the hierarchy's root.
        let sub = "40 35 0:30 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(sub), None);
        let spaced = "41 35 0:30 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(cgroup2_mount("garbage\n\n - \n"), None);
    }
}
