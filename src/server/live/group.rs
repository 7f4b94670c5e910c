//! The page's grouping: the interfaces and workloads of one read under
//! their owners, in the page's order (by owner kind, then name; the script
//! re-sorts by traffic). Owners come composed; nothing here decides one.
//! Loopback is kept apart: what stays on the host is not what an owner
//! exchanges, and `lo` alone would otherwise put the host first.

use std::collections::BTreeMap;

use super::api::{Entry, WorkloadEntry};
use crate::model::owner::OwnerKind;

/// One owner, its interfaces (by interface name) and its workloads (in the
/// order of `/metrics`).
pub struct Group<'d, 'a> {
    pub kind: OwnerKind,
    pub name: &'a str,
    pub interfaces: Vec<&'d Entry<'a>>,
    pub workloads: Vec<&'d WorkloadEntry<'a>>,
}

/// The `instance_type` of a loopback interface (`lo`).
pub const LOOPBACK: &str = "loopback";

/// The interfaces and workloads under their owners: by owner kind, then
/// name (bytes). An owner with both (an app whose containers have veths,
/// the host) is one group. Loopback interfaces are not in their owner's
/// group but in the second list (an owner with nothing else has no group).
pub fn by_owner<'d, 'a>(
    entries: &'d [Entry<'a>],
    workloads: &'d [WorkloadEntry<'a>],
) -> (Vec<Group<'d, 'a>>, Vec<&'d Entry<'a>>) {
    let mut groups: BTreeMap<(OwnerKind, &'a [u8]), Group<'d, 'a>> = BTreeMap::new();
    let (loopback, entries): (Vec<_>, Vec<_>) =
        entries.iter().partition(|e| e.instance_type == LOOPBACK);
    for entry in entries {
        group_of(&mut groups, entry.source.owner.kind, entry.owner.name)
            .interfaces
            .push(entry);
    }
    for workload in workloads {
        group_of(&mut groups, workload.owner_kind, workload.owner.name)
            .workloads
            .push(workload);
    }
    (groups.into_values().collect(), loopback)
}

fn group_of<'g, 'd, 'a>(
    groups: &'g mut BTreeMap<(OwnerKind, &'a [u8]), Group<'d, 'a>>,
    kind: OwnerKind,
    name: &'a str,
) -> &'g mut Group<'d, 'a> {
    groups
        .entry((kind, name.as_bytes()))
        .or_insert_with(|| Group {
            kind,
            name,
            interfaces: Vec::new(),
            workloads: Vec::new(),
        })
}
