//! Traffic of containers that have a network namespace of their own but no
//! host interface (a macvlan or ipvlan app: its traffic shows only on the
//! parent NIC), from their namespace's `net/dev`, for hosts where the
//! kernel does not count per cgroup ([`crate::workloads`] covers them
//! there). The composer picks them; the scrape reads one small procfs file
//! per such container.

use std::path::Path;

use crate::model::composer::LabelTable;
use crate::resolve::sources::Claims;
use crate::workloads::accounting::Counts;

/// One container whose traffic is its namespace's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceWorkload {
    /// A process in the namespace.
    pub pid: u32,
    /// `instance_type="..",<owner label>="..",app=".."`, as a workload's.
    pub rendered: Box<str>,
}

/// The containers that own a network namespace and hold no interface in
/// `table`: their bytes are nowhere else.
pub fn namespace_only(
    table: &LabelTable,
    claims: &[&Claims],
    owner_label: &str,
) -> Vec<NamespaceWorkload> {
    let claimants: std::collections::HashSet<&str> = table
        .interfaces()
        .filter_map(|i| i.claimant.as_deref())
        .collect();
    let mut list: Vec<NamespaceWorkload> = Vec::new();
    for (&pid, claim) in claims.iter().flat_map(|c| &c.by_netns) {
        if claimants.contains(claim.instance.as_str()) || list.iter().any(|w| w.pid == pid) {
            continue;
        }
        list.push(NamespaceWorkload {
            pid,
            rendered: crate::workloads::render(
                owner_label,
                claim.kind.as_str(),
                &claim.instance,
                &claim.app,
            ),
        });
    }
    list.sort_by(|a, b| a.rendered.cmp(&b.rendered));
    list
}

/// The sum of a namespace's interfaces but `lo`, from its `net/dev`.
pub fn namespace_counts(netdev: &[u8]) -> Counts {
    let mut c = Counts::default();
    for (name, counters) in crate::expose::netdev::parse(netdev).flatten() {
        if name == b"lo" {
            continue;
        }
        let v = counters.values;
        c.rx_bytes += v[0];
        c.tx_bytes += v[1];
        c.rx_packets += v[2];
        c.tx_packets += v[3];
    }
    c
}

/// A namespace's `net/dev` is a line per interface: a few hundred bytes.
const NETDEV_MAX: usize = 256 * 1024;

/// Reads each container's `<procfs>/<pid>/net/dev` and writes the workload
/// families for them; a container whose file cannot be read (it stopped
/// since the last refresh) is left out.
pub fn write(procfs: &Path, list: &[NamespaceWorkload], out: &mut Vec<u8>) {
    let mut buf = Vec::new();
    let rows: Vec<(&str, Counts)> = list
        .iter()
        .filter_map(|w| {
            buf.clear();
            let path = procfs.join(format!("{}/net/dev", w.pid));
            crate::clients::bounded::read_procfs_into(&path, NETDEV_MAX, &mut buf).ok()?;
            Some((&*w.rendered, namespace_counts(&buf)))
        })
        .collect();
    if !rows.is_empty() {
        crate::workloads::write_families(out, &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_its_interfaces_but_lo() {
        let netdev = b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n\
            lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
            eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n\
            eth1: 1 1 0 0 0 0 0 0 2 2 0 0 0 0 0 0\n";
        assert_eq!(
            namespace_counts(netdev),
            Counts {
                rx_bytes: 1001,
                rx_packets: 11,
                tx_bytes: 2002,
                tx_packets: 22
            }
        );
    }
}
