//! Traffic per cgroup, for the workloads with no host interface of their
//! own (host-network containers, the host's services): a counting program
//! on the ingress and egress of every inet socket below a cgroup v2
//! directory (the root, in production), linked once, keyed by the socket's
//! cgroup id (the inode number of its directory), in one map both share.
//! The scrape reads it in a few calls; nothing walks a directory there.
//!
//! The links close with the process, so a crash or `kill -9` leaves no
//! program attached. They coexist with systemd's and Docker's programs.

pub mod bpf;
pub mod program;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use self::bpf::{BpfError, Direction};

/// Map entries read per call at least; a read sizes its buffers by the
/// last one's count, so a host with few cgroups does not clear 100 KiB of
/// buffers per scrape.
const MIN_CHUNK: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum AccountingError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("cannot open the cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// The programs linked to one cgroup, and the map they share.
pub struct Accounting {
    map: OwnedFd,
    /// Dropping them detaches the programs.
    _links: [OwnedFd; 2],
    /// Entries the last read found, to size the next one's buffers.
    last: std::sync::atomic::AtomicUsize,
}

impl Accounting {
    /// Loads the two programs, each counting into a map of at most
    /// `max_cgroups` cgroups, and links them to the cgroup v2 directory
    /// `cgroup`.
    pub fn attach(cgroup: &Path, max_cgroups: u32) -> Result<Accounting, AccountingError> {
        let dir = std::fs::File::open(cgroup).map_err(|source| AccountingError::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        let map = bpf::hash_map(
            "tne_cgroups",
            program::KEY_SIZE,
            program::VALUE_SIZE,
            max_cgroups,
        )?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&map);
        let link = |direction, name: &str, offset| -> Result<OwnedFd, AccountingError> {
            let code = program::bytes(&program::counter(fd, offset));
            let prog = bpf::load_cgroup_skb(name, direction, &code)?;
            // The link holds the program, the program the map.
            Ok(bpf::link_cgroup(&prog, &dir, direction)?)
        };
        let rx = link(Direction::Ingress, "tne_rx", program::INGRESS)?;
        let tx = link(Direction::Egress, "tne_tx", program::EGRESS)?;
        Ok(Accounting {
            map,
            _links: [rx, tx],
            last: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Every cgroup counted so far, by id: one read of the map (a call per
    /// chunk of entries).
    pub fn read(&self) -> Result<BTreeMap<u64, Counts>, AccountingError> {
        use std::sync::atomic::Ordering::Relaxed;
        let chunk = (self.last.load(Relaxed) + self.last.load(Relaxed) / 4).max(MIN_CHUNK);
        let all: BTreeMap<u64, Counts> = bpf::read_all(&self.map, chunk)?
            .into_iter()
            .map(|(id, [rx_bytes, rx_packets, tx_bytes, tx_packets])| {
                let counts = Counts {
                    rx_bytes,
                    rx_packets,
                    tx_bytes,
                    tx_packets,
                };
                (id, counts)
            })
            .collect();
        self.last.store(all.len(), Relaxed);
        Ok(all)
    }

    /// Drops the counters of cgroups that are gone, so the map holds only
    /// live ones.
    pub fn forget(&self, ids: impl IntoIterator<Item = u64>) -> Result<(), AccountingError> {
        for id in ids {
            bpf::delete(&self.map, id)?;
        }
        Ok(())
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
