//! `/api/v1/interfaces`: one join of net/dev with the label table, as JSON.
//! Every value comes from the composed [`Interface`] itself, as the labels
//! of `/metrics` are rendered from it, so the two cannot drift.

use std::borrow::Cow;
use std::ops::Deref;
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::composer::{Interface, LabelTable};
use crate::expose::netdev::Counters;
use crate::model::owner::OwnerKind;
use crate::scrape::{FAMILIES, Scrape, Value};
use crate::workloads::accounting::Counts;
use crate::workloads::{self, Workload};

/// An interface's owner, as the API names it.
#[derive(Serialize)]
pub struct OwnerRef<'a> {
    pub kind: &'static str,
    pub name: &'a str,
}

/// One interface as `/api/v1/interfaces` gives it: the label values exactly as
/// `/metrics` writes them (unescaped; `instance` is the owner label whatever
/// `[labels] owner_label` calls it there), the link facts, the owner the page
/// groups it under, and the eight counters of the same read.
#[derive(Serialize)]
pub struct Entry<'a> {
    pub interface: Cow<'a, str>,
    pub instance: Cow<'a, str>,
    pub instance_type: &'static str,
    pub app: &'a str,
    pub bridge: Cow<'a, str>,
    pub state: &'a str,
    pub vlan: Option<u16>,
    pub bond: Cow<'a, str>,
    pub speed_bytes: Option<u64>,
    pub mtu_bytes: Option<u32>,
    pub owner: OwnerRef<'a>,
    #[serde(flatten)]
    pub counters: NamedCounters<'a>,
    /// The composed interface, for the page.
    #[serde(skip)]
    pub source: &'a Interface,
}

/// The eight counters, each under its family's name without `net_interface_`
/// and `_total` (`rx_bytes`, ..., `tx_dropped`), so the JSON cannot drift
/// from `/metrics`.
pub struct NamedCounters<'a>(pub &'a Counters);

impl Serialize for NamedCounters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.values.len()))?;
        for family in &FAMILIES {
            if let Value::Counter(i) = family.value {
                let key = family
                    .name
                    .trim_start_matches("net_interface_")
                    .trim_end_matches("_total");
                map.serialize_entry(key, &self.0.values[i])?;
            }
        }
        map.end()
    }
}

impl<'a> Entry<'a> {
    pub fn new(interface: &'a Interface, counters: &'a Counters) -> Entry<'a> {
        Entry {
            interface: interface.interface(),
            instance: interface.instance(),
            instance_type: interface.kind.as_str(),
            app: interface.app(),
            bridge: interface.bridge(),
            state: &interface.state,
            vlan: interface.vlan,
            bond: interface.bond(),
            speed_bytes: interface.speed_bytes,
            mtu_bytes: interface.mtu,
            owner: OwnerRef {
                kind: interface.owner.kind.as_str(),
                name: &interface.owner.name,
            },
            counters: NamedCounters(counters),
            source: interface,
        }
    }
}

/// One workload as `/api/v1/interfaces` gives it: its labels as the
/// `net_workload_*` families write them (`instance` is the owner label
/// whatever `[labels] owner_label` calls it there), the owner the page shows
/// it under, and its four counters, counted on its own side (`rx_bytes`:
/// what its sockets received).
#[derive(Serialize)]
pub struct WorkloadEntry<'a> {
    pub instance: &'a str,
    pub instance_type: &'static str,
    pub app: &'a str,
    pub owner: OwnerRef<'a>,
    #[serde(flatten)]
    pub counters: WorkloadCounters<'a>,
    /// The owner's kind, for the page's order.
    #[serde(skip)]
    pub owner_kind: OwnerKind,
}

/// The four counters under their families' names without `net_workload_`
/// and `_total`, so the JSON cannot drift from `/metrics`.
pub struct WorkloadCounters<'a>(pub &'a Counts);

impl Serialize for WorkloadCounters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(workloads::FAMILIES.len()))?;
        for (name, _, value) in &workloads::FAMILIES {
            let key = name
                .trim_start_matches("net_workload_")
                .trim_end_matches("_total");
            map.serialize_entry(key, &value(self.0))?;
        }
        map.end()
    }
}

impl<'a> WorkloadEntry<'a> {
    pub fn new(workload: &'a Workload, counts: &'a Counts) -> WorkloadEntry<'a> {
        let owner = &workload.owner;
        // An app's containers are one owner named by the app, as its
        // interfaces are (`composer::owner_of`); the workload keeps the
        // container's name as its `instance`.
        let name = if owner.kind == OwnerKind::App && !owner.app.is_empty() {
            &owner.app
        } else {
            &owner.name
        };
        WorkloadEntry {
            instance: &owner.name,
            instance_type: workload.kind,
            app: &owner.app,
            owner: OwnerRef {
                kind: owner.kind.as_str(),
                name,
            },
            counters: WorkloadCounters(counts),
            owner_kind: owner.kind,
        }
    }
}

/// What `/api/v1/interfaces` answers.
#[derive(Serialize)]
pub struct Document<'a> {
    pub version: &'static str,
    /// When net/dev was read, in seconds since the epoch (ms precision): the
    /// page divides counter deltas by the difference of two reads' times.
    pub time: f64,
    /// By interface name.
    pub interfaces: Vec<Entry<'a>>,
    /// Traffic per workload, read right after net/dev, in the order of
    /// `/metrics`; left out where the kernel does not count it here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<WorkloadEntry<'a>>>,
}

impl<'a> Document<'a> {
    /// The interfaces of one join, and the workloads read with it.
    pub fn new<T: Deref<Target = LabelTable>>(
        scrape: &'a Scrape<T>,
        read_at: SystemTime,
        workloads: Option<&'a [(Workload, Counts)]>,
    ) -> Self {
        let time = read_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1000.0);
        Document {
            version: env!("CARGO_PKG_VERSION"),
            time,
            interfaces: scrape
                .interfaces()
                .map(|(interface, counters)| Entry::new(interface, counters))
                .collect(),
            workloads: workloads.map(|w| w.iter().map(|(w, c)| WorkloadEntry::new(w, c)).collect()),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Only strings, integers and a finite float: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
