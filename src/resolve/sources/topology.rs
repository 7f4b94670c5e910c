//! Topology resolver: kernel facts about every host interface, read from sysfs
//! (`<rootfs>/sys/class/net/<if>/`) and the 802.1Q table (`<procfs>/1/net/vlan/config`).
//! Parsers are pure; [`read`] is the thin I/O wrapper the resolver task calls.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::bounded::{self, Fs};
use crate::resolve::sources::netlink::{self, LinkWakes};
use crate::resolve::sources::{ResolverId, Source, Worker, WorkerError};

/// What sysfs says about one interface. Every field is optional because a
/// fixture, an old kernel or a vanishing interface may lack any file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts {
    pub ifindex: Option<u32>,
    pub iflink: Option<u32>,
    /// ARPHRD_* from `type` (772 = loopback).
    pub link_type: Option<u16>,
    /// `DEVTYPE=` from `uevent` (bridge, vlan, vxlan, bond, macvlan, ...).
    pub devtype: Option<String>,
    /// `bridge/` exists.
    pub is_bridge: bool,
    /// Target name of `master`, set only when `brport/` exists (a bridge port).
    pub bridge: Option<Vec<u8>>,
    /// `bonding/` exists: a bonding master (a TrueNAS LAGG).
    pub is_bond: bool,
    /// Target name of `master`, set only when `bonding_slave/` exists (a bond's port).
    pub bond: Option<Vec<u8>>,
    /// A `lower_*` link exists (stacked device: macvlan, macvtap, vlan).
    pub has_lower: bool,
    /// `tun_flags`, present on tun/tap devices.
    pub tun_flags: Option<u32>,
    /// `macvtap/` exists.
    pub is_macvtap: bool,
    /// `device/driver` exists (a real NIC).
    pub has_driver: bool,
    pub operstate: Option<String>,
    /// 802.1Q id, from `vlan/config`.
    pub vlan_id: Option<u16>,
    /// Link speed in bytes/s, where the kernel reports a positive one.
    pub speed_bytes: Option<u64>,
    pub mtu: Option<u32>,
}

impl LinkFacts {
    /// Linked to another device (`iflink` != `ifindex`): a veth's peer, a
    /// macvlan's or VLAN's parent.
    pub fn is_linked(&self) -> bool {
        matches!((self.ifindex, self.iflink), (Some(i), Some(l)) if i != l)
    }

    /// A veth: an Ethernet device linked to a peer, and nothing else the
    /// kernel would say (no `DEVTYPE`, no lower device, no driver, no tun).
    pub fn is_veth(&self) -> bool {
        self.is_linked()
            && self.link_type == Some(1)
            && !self.has_lower
            && self.devtype.is_none()
            && self.tun_flags.is_none()
            && !self.is_bridge
            && !self.has_driver
    }
}

/// Kernel facts for every interface in the host's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologySnapshot {
    pub links: BTreeMap<Vec<u8>, LinkFacts>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot list interfaces in {path}: {source}")]
    ListInterfaces { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    VlanConfig { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// Label values read from sysfs (operstate, a bridge's name) are cut to this
/// many bytes: the kernel's are short (IFNAMSIZ is 16), a broken or hostile
/// tree's need not be.
pub const MAX_LABEL_VALUE: usize = 64;

/// One row of `/proc/net/vlan/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanEntry<'a> {
    pub name: &'a str,
    pub id: u16,
    pub parent: &'a str,
}

/// Parses `/proc/net/vlan/config`: two header lines, then `name | id | parent`.
/// Rows that don't fit are skipped.
pub fn parse_vlan_config(text: &str) -> impl Iterator<Item = VlanEntry<'_>> {
    text.lines().skip(2).filter_map(|line| {
        let mut cols = line.split('|').map(str::trim);
        let name = cols.next().filter(|s| !s.is_empty())?;
        let id = cols.next()?.parse().ok()?;
        let parent = cols.next().unwrap_or("");
        Some(VlanEntry { name, id, parent })
    })
}

/// The value of `DEVTYPE=` in a sysfs `uevent` file.
pub fn parse_devtype(uevent: &str) -> Option<&str> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVTYPE="))
        .map(str::trim)
}

/// `tun_flags` is written as hex (`0x1002`).
pub fn parse_tun_flags(text: &str) -> Option<u32> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(hex, 16).ok()
}

/// Reads one interface's sysfs directory. Missing files leave their field unset.
pub fn read_interface(fs: &Fs, dir: &Path) -> LinkFacts {
    let num = |f: &str| fs.sysfs_text(&dir.join(f)).and_then(|s| s.parse().ok());
    let num16 = |f: &str| fs.sysfs_text(&dir.join(f)).and_then(|s| s.parse().ok());
    let text = |f: &str| {
        fs.sysfs_text(&dir.join(f))
            .map(|s| bounded::cap(s, MAX_LABEL_VALUE))
    };
    let exists = |f: &str| fs.exists(&dir.join(f));
    let mut has_lower = false;
    if let Ok(entries) = fs.read_dir(dir) {
        has_lower = entries
            .flatten()
            .any(|e| e.file_name().as_bytes().starts_with(b"lower_"));
    }
    // A port's `master` names its bridge or its bond; which, the port's own
    // `brport/` or `bonding_slave/` says.
    let master = |port_dir: &str| {
        if !exists(port_dir) {
            return None;
        }
        fs.read_link(&dir.join("master")).ok().and_then(|t| {
            let name = t.file_name()?.as_bytes();
            Some(name[..name.len().min(MAX_LABEL_VALUE)].to_vec())
        })
    };
    LinkFacts {
        ifindex: num("ifindex"),
        iflink: num("iflink"),
        link_type: num16("type"),
        devtype: fs
            .sysfs_text(&dir.join("uevent"))
            .and_then(|u| parse_devtype(&u).map(|d| bounded::cap(d.to_owned(), MAX_LABEL_VALUE))),
        is_bridge: exists("bridge"),
        bridge: master("brport"),
        is_bond: exists("bonding"),
        bond: master("bonding_slave"),
        has_lower,
        tun_flags: fs
            .sysfs_text(&dir.join("tun_flags"))
            .and_then(|s| parse_tun_flags(&s)),
        is_macvtap: exists("macvtap"),
        // A dangling `device/driver` link in a fixture still counts.
        has_driver: exists("device/driver"),
        operstate: text("operstate"),
        vlan_id: None,
        speed_bytes: fs
            .sysfs_text(&dir.join("speed"))
            .and_then(|s| parse_speed(&s)),
        mtu: num("mtu"),
    }
}

/// sysfs `speed` is in Mb/s; a link that is down or has no speed (bridges,
/// taps) reads -1 or fails to read. Bytes/s, so it divides byte rates.
pub fn parse_speed(text: &str) -> Option<u64> {
    let mbps: u64 = text.trim().parse().ok().filter(|&v| v > 0)?;
    mbps.checked_mul(125_000)
}

/// `vlan/config` holds a ~40-byte row per VLAN: 1 MiB is 4094 VLANs many times over.
const VLAN_CONFIG_MAX: usize = 1 << 20;

/// Reads the whole topology: `<rootfs>/sys/class/net` and `<procfs>/1/net/vlan/config`.
/// A missing vlan table means the 8021q module is not loaded: no VLANs, not an error.
pub fn read(fs: &Fs, rootfs: &Path, procfs: &Path) -> Result<TopologySnapshot, TopologyError> {
    let class = rootfs.join("sys/class/net");
    let entries = fs
        .read_dir(&class)
        .map_err(|source| TopologyError::ListInterfaces {
            path: class.clone(),
            source,
        })?;
    let mut links = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        // sysfs also lists `bonding_masters` as a plain file here.
        let path = entry.path();
        fs.at(&path);
        if !path.is_dir() {
            continue;
        }
        links.insert(name.as_bytes().to_vec(), read_interface(fs, &path));
    }

    let vlan_path = procfs.join("1/net/vlan/config");
    match fs.read(&vlan_path, VLAN_CONFIG_MAX) {
        Ok(bytes) => {
            for v in parse_vlan_config(&String::from_utf8_lossy(&bytes)) {
                if let Some(facts) = links.get_mut(v.name.as_bytes()) {
                    facts.vlan_id = Some(v.id);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(TopologyError::VlanConfig {
                path: vlan_path,
                source,
            });
        }
    }
    Ok(TopologySnapshot { links })
}

/// The topology resolver: [`read`] on the blocking pool, since sysfs reads
/// block. Where the host's link notifications reach it, it follows them.
pub struct TopologySource {
    rootfs: PathBuf,
    procfs: PathBuf,
    worker: Worker,
    links: LinkWakes,
}

impl TopologySource {
    /// `timeout` bounds each read of the whole tree (the refresh timeout);
    /// `links` says whom a link notification wakes.
    pub fn new(
        rootfs: &Path,
        procfs: &Path,
        timeout: std::time::Duration,
        links: LinkWakes,
    ) -> TopologySource {
        TopologySource {
            rootfs: rootfs.to_owned(),
            procfs: procfs.to_owned(),
            worker: Worker::new(timeout),
            links,
        }
    }

    /// Whether this process is in the network namespace of the host's pid 1.
    async fn in_host_netns(&self) -> bool {
        let host = self.procfs.join("1/ns/net");
        let own = self
            .worker
            .run(move |fs| {
                let host = fs.read_link(&host).ok()?;
                let own = fs.read_link(Path::new("/proc/self/ns/net")).ok()?;
                Some(host == own)
            })
            .await;
        matches!(own, Ok(Some(true)))
    }
}

impl Source for TopologySource {
    type Snapshot = TopologySnapshot;
    type Error = TopologyError;
    const ID: ResolverId = ResolverId::Topology;

    async fn refresh(&self) -> Result<TopologySnapshot, TopologyError> {
        let (rootfs, procfs) = (self.rootfs.clone(), self.procfs.clone());
        self.worker
            .run(move |fs| read(fs, &rootfs, &procfs))
            .await?
    }

    /// Link notifications, where they are the host's.
    async fn watch(&self, shutdown: tokio_util::sync::CancellationToken) {
        if self.in_host_netns().await {
            netlink::follow(&self.links, shutdown).await;
        } else {
            tracing::info!(
                "not in the host's network namespace: new interfaces are read at the next refresh, or when a scrape meets one"
            );
        }
    }

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_config_rows() {
        let text = "VLAN Dev name\t | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n\
                    vlan1          | 1  | enp8s0f0\n\
                    lan.20         | 20  | br0\n\
                    broken | x | y\n\
                    \n";
        let rows: Vec<_> = parse_vlan_config(text).collect();
        assert_eq!(
            rows,
            [
                VlanEntry {
                    name: "vlan1",
                    id: 1,
                    parent: "enp8s0f0"
                },
                VlanEntry {
                    name: "lan.20",
                    id: 20,
                    parent: "br0"
                },
            ]
        );
        assert_eq!(parse_vlan_config("").count(), 0);
    }

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("10000\n"), Some(1_250_000_000));
        assert_eq!(parse_speed("-1\n"), None, "down or unknown");
        assert_eq!(parse_speed("0"), None);
        assert_eq!(parse_speed("fast"), None);
    }

    #[test]
    fn devtype_and_tun_flags() {
        assert_eq!(
            parse_devtype("INTERFACE=br0\nIFINDEX=3\nDEVTYPE=bridge\n"),
            Some("bridge")
        );
        assert_eq!(parse_devtype("INTERFACE=eth0\nIFINDEX=2\n"), None);
        assert_eq!(parse_tun_flags("0x1002\n"), Some(0x1002));
        assert_eq!(parse_tun_flags("zz"), None);
    }

    #[test]
    fn missing_class_dir_is_an_error_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&Fs::default(), dir.path(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("sys/class/net"), "{err}");
    }
}
