//! Bytes per remote peer: a second pair of cgroup_skb programs, linked
//! beside the per-cgroup counter, counting each packet by (socket cgroup,
//! remote address, listed server port, which end serves). This module owns
//! their three maps (made here, by the names the object's relocations
//! use), loads the object's two sections, and reads and trims the counts.
//!
//! Why this program is C compiled by clang, when the per-cgroup counter is
//! written out instruction by instruction in `program.rs`: that counter is
//! some 50 instructions of lookups and adds, reviewable as they are. This
//! one parses IPv4 and IPv6 headers for unconnected sockets, folds
//! addresses to one form and consults a port table: by hand, ~150
//! instructions a direction with jumps patched by offset, which no reviewer
//! could check (clang's output is 329). In C it reads as what it does
//! (`peers.bpf.c`). The object is committed, so building the exporter needs
//! no clang; a test rebuilds it when clang is there (always in CI) and
//! compares each code section and its relocations with the committed one.
//! The loader stays ours (`elf.rs` patches the map loads, `bpf.rs` loads):
//! no libbpf, no BTF.
//!
//! The peer map is bounded: the programs insert a key only if absent and
//! count what a full map could not hold (stats entry 0); user space reads
//! the keys and removes idle ones. Traffic the root cgroup serves on a
//! listed port (kernel servers: knfsd, NVMe-oF) is also counted exactly per
//! protocol in the stats array, whatever the peer map holds.

use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::bpf::{self, Direction, MappedArray};
use super::{AccountingError, Counts, MIN_CHUNK, elf};

/// `peers.bpf.c`, built by the command in its header.
pub const OBJECT: &[u8] = include_bytes!("peers.bpf.o");
pub const INGRESS: &str = "cgroup_skb/ingress";
pub const EGRESS: &str = "cgroup_skb/egress";

const CFG: &str = "tne_peer_cfg";
const PEERS: &str = "tne_peers";
const STATS: &str = "tne_peer_stats";
/// The maps the object loads, by the names of its relocations.
pub const MAP_NAMES: [&str; 3] = [CFG, PEERS, STATS];

/// `struct peer_cfg`: the root cgroup's id, then a protocol index by port.
const CFG_SIZE: usize = 8 + 65536;
/// `struct peer_key`.
const KEY_SIZE: usize = 32;
/// `struct counts`.
const VALUE_SIZE: usize = 32;
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
    /// Closing them detaches the programs.
    links: Mutex<Option<[OwnedFd; 2]>>,
}

impl PeerCounting {
    /// Loads the two programs, counting at most `max_peers` keys, and links
    /// them to the cgroup v2 directory `cgroup`. `ports`: (port, protocol
    /// index 1..=255); an index 0 lists nothing. `root_id`: the root
    /// cgroup's id, whose served traffic is counted per protocol.
    pub fn attach(
        cgroup: &Path,
        max_peers: u32,
        ports: &[(u16, u8)],
        root_id: u64,
    ) -> Result<PeerCounting, AccountingError> {
        let dir = std::fs::File::open(cgroup).map_err(|source| AccountingError::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
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
            _ => None,
        };
        let link = |direction, name: &str, section| -> Result<OwnedFd, AccountingError> {
            let code = elf::patched(OBJECT, section, map_fd)?;
            let prog = bpf::load_cgroup_skb(name, direction, &code)?;
            // The link holds the program, the program its maps.
            Ok(bpf::link_cgroup(&prog, &dir, direction)?)
        };
        let rx = link(Direction::Ingress, "tne_peer_rx", INGRESS)?;
        let tx = link(Direction::Egress, "tne_peer_tx", EGRESS)?;
        Ok(PeerCounting {
            peers,
            stats,
            max_peers,
            last_read: AtomicUsize::new(0),
            links: Mutex::new(Some([rx, tx])),
        })
    }

    /// Every key and its counts, now; nothing is removed. Reads in batches
    /// sized by the last read's count.
    pub fn read(&self) -> Result<Vec<(PeerKey, Counts)>, AccountingError> {
        let last = self.last_read.load(Relaxed);
        let chunk = (last + last / 4)
            .max(MIN_CHUNK)
            .min(self.max_peers as usize);
        let entries = bpf::read_keyed::<KEY_SIZE>(&self.peers, chunk, false)?;
        self.last_read.store(entries.len(), Relaxed);
        Ok(entries
            .into_iter()
            .filter_map(|(key, value)| {
                Some((PeerKey::from_bytes(&key)?, Counts::from_entry(value)))
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

    /// Detaches both programs now (see [`super::Accounting::detach`]).
    pub fn detach(&self) {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(links);
    }
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
