//! Bytes per remote peer, and per cgroup in the same pass: where `[peers]`
//! is on, one pair of cgroup_skb programs (`peers.bpf.c`) takes the
//! counter's place in its links (`BPF_LINK_UPDATE`: each packet runs the
//! one or the other, so no packet is counted twice or missed), counting
//! each packet by (socket cgroup, remote address, listed server port,
//! which end serves) and, as the counter does, by socket cgroup in the
//! counter's maps. This module owns the three peer maps (made here, by the
//! names the object's relocations use), loads the object's two sections,
//! and reads and trims the counts. [`PeerCounting::detach`] swaps the
//! counter back in.
//!
//! One lookup for both: the peer map's value caches the cgroup's slot in
//! the counters array. A packet whose key is there with a slot adds to the
//! key and to the slot (an array lookup the verifier inlines), with no
//! lookup of the slots map. A packet whose key is not there, or caches no
//! slot (0), counts per cgroup exactly as `program.rs` does (slots map,
//! else the fresh map, else uncounted in slot 0) and then stores the slot
//! it found (or 0) in the key, inserted if absent. A full peer map costs
//! the per-peer count only: the per-cgroup one is made first, either way.
//!
//! A cached slot must never count into a slot another cgroup has since
//! been given. [`Accounting::settle`](super::Accounting::settle) hands a
//! slot back by deleting its cgroup's key from the slots map, and the slot
//! rests one settle before it is free. The race: a packet that read the
//! slot from the slots map just before the key went may store it in a peer
//! key just after, whatever settle does at that moment. So settle, which
//! holds the peer map too ([`uncache`]), zeroes every cached slot its
//! cgroup does not have, both in the settle that hands the slot back (so
//! the cgroup's next packets go the slow way, as without a cache) and in
//! the next one, before the rested slot is free: by then every packet that
//! could have read it from the slots map has long finished (a program run
//! takes microseconds, within one RCU read section; settles are seconds
//! apart), and no other path caches it. A sweep that fails keeps the slots
//! resting. A packet that holds the slot from before the handback adds to
//! it in the next few instructions, as with the counter alone, which the
//! rest covers. Zeroing rewrites the key's value whole (a map update, with
//! the counts as read, only if the key is still there): packets that
//! counted in it between the read and the write are lost to the per-peer
//! count (a gone cgroup's, so next to nothing), never to the per-cgroup
//! one.
//!
//! Why this program is C compiled by clang, when the per-cgroup counter is
//! written out instruction by instruction in `program.rs`: that counter is
//! some 50 instructions of lookups and adds, reviewable as they are. This
//! one parses IPv4 and IPv6 headers for unconnected sockets, folds
//! addresses to one form, consults a port table and counts per cgroup as
//! well: by hand, hundreds of instructions a direction with jumps patched
//! by offset, which no reviewer could check (clang's output is ~520). In C
//! it reads as what it does (`peers.bpf.c`). The object is committed, so
//! building the exporter needs no clang; a test rebuilds it when clang is
//! there (always in CI) and compares each code section and its relocations
//! with the committed one. The loader stays ours (`elf.rs` patches the map
//! loads, `bpf.rs` loads): no libbpf, no BTF. Where `[peers]` is off the
//! counter stays `program.rs`'s: the cheapest program that counts per
//! cgroup, with no object file in its way.
//!
//! The peer map is bounded: the programs insert a key only if absent and
//! count what a full map could not hold (stats entry 0); user space reads
//! the keys and removes idle ones. Traffic the root cgroup serves on a
//! listed port (kernel servers: knfsd, NVMe-oF) is also counted exactly per
//! protocol in the stats array, whatever the peer map holds, after its
//! per-cgroup count (so it trails the root's total).

use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::bpf::{self, BpfError, Direction, MappedArray};
use super::{Accounting, AccountingError, Counts, Links, MIN_CHUNK, elf};

/// `peers.bpf.c`, built by the command in its header.
pub const OBJECT: &[u8] = include_bytes!("peers.bpf.o");
pub const INGRESS: &str = "cgroup_skb/ingress";
pub const EGRESS: &str = "cgroup_skb/egress";

const CFG: &str = "tne_peer_cfg";
const PEERS: &str = "tne_peers";
const STATS: &str = "tne_peer_stats";
/// The maps the object loads, by the names of its relocations: the
/// per-peer ones, then the counter's.
pub const MAP_NAMES: [&str; 6] = [CFG, PEERS, STATS, "tne_slots", "tne_counters", "tne_fresh"];

/// `struct peer_cfg`: the root cgroup's id, then a protocol index by port.
const CFG_SIZE: usize = 8 + 65536;
/// `struct peer_key`.
const KEY_SIZE: usize = 32;
/// `struct peer_value`: `struct counts`, then the cached slot (u32) and
/// padding, in u64s.
const VALUE_WORDS: usize = 5;
const VALUE_SIZE: usize = VALUE_WORDS * 8;
/// Keys read per call when settle looks for stale slots.
const SWEEP_CHUNK: usize = 1024;
/// The program's own counts, then one entry per protocol index.
const STATS_ENTRIES: u32 = 1 + 256;

/// Which end of the connection this host is, by the port table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Neither port is listed: the key's port is 0.
    None = 0,
    /// The local port is listed: this host serves.
    Server = 1,
    /// The remote port is listed: this host is the client.
    Client = 2,
}

/// One key of the peer map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    /// The socket's cgroup id.
    pub cgroup: u64,
    /// The remote address; IPv4 as `::ffff:a.b.c.d`.
    pub addr: Ipv6Addr,
    /// The listed port (local for a server, remote for a client), or 0.
    pub port: u16,
    pub side: Side,
}

impl PeerKey {
    /// The remote address, a v4-mapped one as IPv4.
    pub fn ip(&self) -> IpAddr {
        self.addr
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(self.addr), IpAddr::V4)
    }

    fn to_bytes(self) -> [u8; KEY_SIZE] {
        let mut b = [0u8; KEY_SIZE];
        b[..8].copy_from_slice(&self.cgroup.to_ne_bytes());
        b[8..24].copy_from_slice(&self.addr.octets());
        b[24..26].copy_from_slice(&self.port.to_ne_bytes());
        b[26] = self.side as u8;
        b
    }

    /// None for a side or padding the program never writes.
    fn from_bytes(b: &[u8; KEY_SIZE]) -> Option<PeerKey> {
        let side = match b[26] {
            0 => Side::None,
            1 => Side::Server,
            2 => Side::Client,
            _ => return None,
        };
        if b[27..] != [0; 5] {
            return None;
        }
        let addr: [u8; 16] = b[8..24].try_into().ok()?;
        Some(PeerKey {
            cgroup: u64::from_ne_bytes(b[..8].try_into().ok()?),
            addr: Ipv6Addr::from(addr),
            port: u16::from_ne_bytes([b[24], b[25]]),
            side,
        })
    }
}

/// The programs' own counts since attach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Keys the programs inserted: when it changes, the map has peers user
    /// space has not read yet.
    pub new_keys: u64,
    /// Packets not counted per peer: the map was full.
    pub lost_packets: u64,
    pub lost_bytes: u64,
}

/// The peer programs linked to one cgroup, and their maps.
pub struct PeerCounting {
    peers: OwnedFd,
    /// Entry 0 the programs' own counts, 1 + p protocol p's served by the
    /// root cgroup.
    stats: MappedArray,
    max_peers: u32,
    /// Entries the last read found, to size the next one's buffers.
    last_read: AtomicUsize,
    /// The counter's links, which run these programs.
    links: Arc<Links>,
}

impl PeerCounting {
    /// Loads the two programs, counting at most `max_peers` keys, and has
    /// `accounting`'s links run them in place of its counter (they count
    /// per cgroup in its maps too). `ports`: (port, protocol index
    /// 1..=255); an index 0 lists nothing. `root_id`: the root cgroup's id,
    /// whose served traffic is counted per protocol. On an error the
    /// counter runs on.
    pub fn attach(
        accounting: &Accounting,
        max_peers: u32,
        ports: &[(u16, u8)],
        root_id: u64,
    ) -> Result<PeerCounting, AccountingError> {
        let max_peers = max_peers.max(1);
        let cfg = bpf::array_map(CFG, CFG_SIZE, 1)?;
        let mut value = vec![0u8; CFG_SIZE];
        value[..8].copy_from_slice(&root_id.to_ne_bytes());
        for &(port, index) in ports {
            value[8 + port as usize] = index;
        }
        bpf::update_key(&cfg, &0u32.to_ne_bytes(), &value)?;
        let peers = bpf::hash_map_with(PEERS, KEY_SIZE, VALUE_SIZE, max_peers, bpf::F_NO_PREALLOC)?;
        let stats = MappedArray::create(STATS, STATS_ENTRIES)?;
        let map_fd = |name: &str| match name {
            CFG => Some(cfg.as_raw_fd()),
            PEERS => Some(peers.as_raw_fd()),
            STATS => Some(stats.fd().as_raw_fd()),
            _ => accounting.map_fd(name),
        };
        // The program holds its maps.
        let load = |direction, name: &str, section| -> Result<OwnedFd, AccountingError> {
            let code = elf::patched(OBJECT, section, map_fd)?;
            Ok(bpf::load_cgroup_skb(name, direction, &code)?)
        };
        let programs = [
            load(Direction::Ingress, "tne_peer_rx", INGRESS)?,
            load(Direction::Egress, "tne_peer_tx", EGRESS)?,
        ];
        // Settle zeroes stale slots from before the first packet caches one.
        let shared = peers.try_clone().map_err(|source| bpf::BpfError::Call {
            command: "dup of the peer map",
            source,
        })?;
        accounting.cache_slots_in(Some(shared));
        let links = accounting.links();
        if let Err(e) = links.run(&programs) {
            accounting.cache_slots_in(None);
            return Err(e.into());
        }
        Ok(PeerCounting {
            peers,
            stats,
            max_peers,
            last_read: AtomicUsize::new(0),
            links,
        })
    }

    /// Every key and its counts, now; nothing is removed. Reads in batches
    /// sized by the last read's count.
    pub fn read(&self) -> Result<Vec<(PeerKey, Counts)>, AccountingError> {
        let last = self.last_read.load(Relaxed);
        let chunk = (last + last / 4)
            .max(MIN_CHUNK)
            .min(self.max_peers as usize);
        let entries = bpf::read_keyed::<KEY_SIZE, VALUE_WORDS>(&self.peers, chunk, false)?;
        self.last_read.store(entries.len(), Relaxed);
        Ok(entries
            .into_iter()
            .filter_map(|(key, [rx_bytes, rx_packets, tx_bytes, tx_packets, _])| {
                Some((
                    PeerKey::from_bytes(&key)?,
                    Counts::from_entry([rx_bytes, rx_packets, tx_bytes, tx_packets]),
                ))
            })
            .collect())
    }

    /// Removes `keys` (idle ones: what a packet adds between the last read
    /// and the removal is lost): how many were there.
    pub fn remove(&self, keys: &[PeerKey]) -> Result<usize, AccountingError> {
        let mut removed = 0;
        for key in keys {
            if bpf::delete_key(&self.peers, &key.to_bytes())? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The programs' own counts: four loads, no call.
    pub fn stats(&self) -> PeerStats {
        let [new_keys, lost_packets, lost_bytes, _] = self.stats.get(0);
        PeerStats {
            new_keys,
            lost_packets,
            lost_bytes,
        }
    }

    /// What the root cgroup served for protocol `index` (its listed
    /// ports), exactly.
    pub fn root_protocol(&self, index: u8) -> Counts {
        Counts::from_entry(self.stats.get(1 + index as usize))
    }

    /// Stops counting per peer: the links run the counter alone again,
    /// counting per cgroup on with no gap. (Detached links stay so.)
    pub fn detach(&self) {
        if let Err(e) = self.links.restore() {
            tracing::warn!(error = %e, "cannot stop counting per peer");
        }
    }
}

/// Zeroes the slot cached in each key of the peer map `peers` whose cgroup
/// does not have it now (`owns(cgroup, slot)` is false): how many. A key
/// rewritten loses what packets added to it between its read here and its
/// write (a gone cgroup's, so next to nothing); a key removed meanwhile
/// stays removed.
pub(super) fn uncache(peers: &OwnedFd, owns: impl Fn(u64, u32) -> bool) -> Result<usize, BpfError> {
    let mut zeroed = 0;
    for (key, mut value) in bpf::read_keyed::<KEY_SIZE, VALUE_WORDS>(peers, SWEEP_CHUNK, false)? {
        let cached = value[4].to_ne_bytes();
        let slot = u32::from_ne_bytes([cached[0], cached[1], cached[2], cached[3]]);
        let cgroup = u64::from_ne_bytes(key[..8].try_into().unwrap_or_default());
        if slot == 0 || owns(cgroup, slot) {
            continue;
        }
        value[4] = 0;
        let bytes: Vec<u8> = value.iter().flat_map(|w| w.to_ne_bytes()).collect();
        match bpf::update_key_with(peers, &key, &bytes, bpf::EXIST) {
            Ok(()) => zeroed += 1,
            Err(BpfError::Call { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(zeroed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_programs_bytes() {
        let key = PeerKey {
            cgroup: 0x0102_0304_0506_0708,
            addr: "::ffff:10.0.0.7".parse().unwrap(),
            port: 2049,
            side: Side::Server,
        };
        let b = key.to_bytes();
        assert_eq!(
            &b[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 7]
        );
        assert_eq!(b[26], 1);
        assert_eq!(PeerKey::from_bytes(&b), Some(key));
        assert_eq!(key.ip(), "10.0.0.7".parse::<IpAddr>().unwrap());
        let v6 = PeerKey {
            addr: "fd00::7".parse().unwrap(),
            ..key
        };
        assert_eq!(v6.ip(), "fd00::7".parse::<IpAddr>().unwrap());
        let mut odd = b;
        odd[26] = 3;
        assert_eq!(PeerKey::from_bytes(&odd), None);
    }
}
