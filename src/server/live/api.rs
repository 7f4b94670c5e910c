//! `/api/v1/interfaces`: one join of net/dev with the label table, as JSON.
//! Every value comes from the composed [`Interface`] itself, as the labels
//! of `/metrics` are rendered from it, so the two cannot drift.

use std::borrow::Cow;
use std::ops::Deref;
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::compose::{Interface, LabelTable};
use crate::netdev::Counters;
use crate::scrape::{FAMILIES, Scrape, Value};

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

/// What `/api/v1/interfaces` answers.
#[derive(Serialize)]
pub struct Document<'a> {
    pub version: &'static str,
    /// When net/dev was read, in seconds since the epoch (ms precision): the
    /// page divides counter deltas by the difference of two reads' times.
    pub time: f64,
    /// By interface name.
    pub interfaces: Vec<Entry<'a>>,
}

impl<'a> Document<'a> {
    /// The interfaces of one join.
    pub fn new<T: Deref<Target = LabelTable>>(scrape: &'a Scrape<T>, read_at: SystemTime) -> Self {
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
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Only strings, integers and a finite float: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
