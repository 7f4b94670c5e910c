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
use crate::resolve::sources::names::{NameRow, PeerNames};
use crate::scrape::{FAMILIES, Scrape, Value};
use crate::workloads::accounting::Counts;
use crate::workloads::peers::{PeerRow, PeerTable};
use crate::workloads::{self, Workload};

/// Peer rows `/api/v1/interfaces` lists at most: past it, the rows with
/// the fewest bytes so far are left out (and counted in `peers_omitted`).
pub const MAX_PEERS: usize = 2000;

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

/// Seconds since the epoch, ms precision.
fn seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

/// One peer series of the latest peers tick, as `net_peer_*` writes it:
/// the workload's labels as `workloads` gives them (unescaped; `instance`
/// is the owner label), the peer (an address, a folded network or
/// `other`), the protocol (`""` for none), the side (`server`: this host
/// serves the peer; `client`: it is the peer's client; `""`: neither port
/// listed), and the bytes from the workload's side (`rx_bytes`: what it
/// received from the peer).
#[derive(Serialize)]
pub struct PeerEntry<'a> {
    pub instance: Cow<'a, str>,
    pub instance_type: Cow<'a, str>,
    pub app: Cow<'a, str>,
    pub peer: &'a str,
    pub protocol: &'a str,
    pub side: &'static str,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl<'a> PeerEntry<'a> {
    /// `row` of the workload `workload` (found by its rendered labels), or,
    /// for one the read did not list, of the labels the row carries.
    fn new(row: &'a PeerRow, workload: Option<&'a Workload>) -> PeerEntry<'a> {
        let (instance_type, instance, app) = match workload {
            Some(w) => (
                Cow::Borrowed(w.kind),
                Cow::Borrowed(&*w.owner.name),
                Cow::Borrowed(&*w.owner.app),
            ),
            None => {
                let mut values = label_values(&row.workload).into_iter().map(Cow::Owned);
                let mut next = || values.next().unwrap_or_default();
                (next(), next(), next())
            }
        };
        PeerEntry {
            instance,
            instance_type,
            app,
            peer: &row.peer,
            protocol: &row.protocol,
            side: row.side,
            rx_bytes: row.counts.rx_bytes,
            tx_bytes: row.counts.tx_bytes,
        }
    }
}

/// The values of a rendered label block (`a="..",b=".."`), in order and
/// unescaped (`\\`, `\"`, `\n`).
fn label_values(rendered: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = rendered;
    while let Some(open) = rest.find("=\"") {
        let mut value = String::new();
        let mut chars = rest[open + 2..].char_indices();
        let mut end = rest.len() - open - 2;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = i + 1;
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                c => value.push(c),
            }
        }
        values.push(value);
        rest = &rest[open + 2 + end..];
    }
    values
}

/// The peers of one tick: at most [`MAX_PEERS`] (those with the most bytes
/// so far), by workload in the order of `/metrics`, then by bytes (rx + tx)
/// so far, most first, `other` after the workload's peers; and how many
/// were left out.
fn peer_entries<'a>(
    table: &'a PeerTable,
    workloads: Option<&'a [(Workload, Counts)]>,
) -> (Vec<PeerEntry<'a>>, usize) {
    let by_rendered: std::collections::HashMap<&str, &Workload> = workloads
        .unwrap_or_default()
        .iter()
        .map(|(w, _)| (&*w.rendered, w))
        .collect();
    let bytes = |r: &PeerRow| r.counts.rx_bytes.saturating_add(r.counts.tx_bytes);
    let mut rows: Vec<&PeerRow> = table.rows.iter().collect();
    let omitted = rows.len().saturating_sub(MAX_PEERS);
    if omitted > 0 {
        rows.sort_by(|a, b| {
            bytes(b)
                .cmp(&bytes(a))
                .then_with(|| a.rendered.cmp(&b.rendered))
        });
        rows.truncate(MAX_PEERS);
    }
    rows.sort_by(|a, b| {
        a.workload
            .cmp(&b.workload)
            .then_with(|| (&*a.peer == "other").cmp(&(&*b.peer == "other")))
            .then_with(|| bytes(b).cmp(&bytes(a)))
            .then_with(|| a.rendered.cmp(&b.rendered))
    });
    let entries = rows
        .into_iter()
        .map(|r| PeerEntry::new(r, by_rendered.get(&*r.workload).copied()))
        .collect();
    (entries, omitted)
}

/// What is known of one peer, as `net_peer_info` writes it: every field
/// is always there, `""` where nothing is known (as a label `/metrics`
/// leaves out); several values are sorted and joined by `,`. `peer` is the
/// peer's label as in `peers`; `source` lists what named it (`config`,
/// `dns`, `smbstatus`, `smb.status`, ...).
#[derive(Serialize)]
pub struct NameEntry<'a> {
    pub peer: &'a str,
    pub peer_name: &'a str,
    pub user: &'a str,
    pub machine: &'a str,
    pub share: &'a str,
    pub initiator: &'a str,
    pub target: &'a str,
    pub source: &'a str,
}

impl<'a> From<&'a NameRow> for NameEntry<'a> {
    fn from(row: &'a NameRow) -> NameEntry<'a> {
        NameEntry {
            peer: &row.peer,
            peer_name: &row.peer_name,
            user: &row.user,
            machine: &row.machine,
            share: &row.share,
            initiator: &row.initiator,
            target: &row.target,
            source: &row.source,
        }
    }
}

/// The names of one refresh, at most [`MAX_PEERS`]: those of the peers
/// `peers` lists first, then the others (idle clients a server still
/// knows) as room is left; by peer.
fn name_entries<'a>(names: &'a PeerNames, peers: &[PeerEntry<'_>]) -> Vec<NameEntry<'a>> {
    let listed: std::collections::HashSet<&str> = peers.iter().map(|p| p.peer).collect();
    let (mut rows, rest): (Vec<&NameRow>, Vec<&NameRow>) = names
        .rows
        .iter()
        .partition(|r| listed.contains(r.peer.as_str()));
    rows.truncate(MAX_PEERS);
    let room = MAX_PEERS - rows.len();
    rows.extend(rest.into_iter().take(room));
    rows.sort_by(|a, b| a.peer.cmp(&b.peer));
    rows.into_iter().map(NameEntry::from).collect()
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
    /// When the latest peers tick read the kernel's map, in seconds since
    /// the epoch: the page divides the peers' deltas by the difference of
    /// two ticks' times (the peers change only once a tick). `null` before
    /// the first tick; left out with `peers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_time: Option<Option<f64>>,
    /// The latest peers tick's series ([`peer_entries`]); left out where
    /// the kernel does not count per peer here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerEntry<'a>>>,
    /// Peer series past [`MAX_PEERS`], left out of `peers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_omitted: Option<usize>,
    /// Names for peers ([`NameEntry`], by peer; [`name_entries`]): the
    /// latest names refresh's, at most [`MAX_PEERS`], those of the peers
    /// `peers` lists first; left out with `peers`. Empty before the first
    /// refresh or with `[names] enabled = false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<NameEntry<'a>>>,
}

impl<'a> Document<'a> {
    /// The interfaces of one join, the workloads read with it, the latest
    /// peers tick and the latest names for peers.
    pub fn new<T: Deref<Target = LabelTable>>(
        scrape: &'a Scrape<T>,
        read_at: SystemTime,
        workloads: Option<&'a [(Workload, Counts)]>,
        peers: Option<&'a PeerTable>,
        names: &'a PeerNames,
    ) -> Self {
        let time = seconds(read_at);
        let mut document = Document {
            version: env!("CARGO_PKG_VERSION"),
            time,
            interfaces: scrape
                .interfaces()
                .map(|(interface, counters)| Entry::new(interface, counters))
                .collect(),
            workloads: workloads.map(|w| w.iter().map(|(w, c)| WorkloadEntry::new(w, c)).collect()),
            peers_time: None,
            peers: None,
            peers_omitted: None,
            names: None,
        };
        document.set_peers(peers, workloads);
        document.set_names(names);
        document
    }

    /// The names of `names` for the peers set (none where there are none:
    /// call after [`Document::set_peers`]).
    pub fn set_names(&mut self, names: &'a PeerNames) {
        self.names = self.peers.as_deref().map(|p| name_entries(names, p));
    }

    /// The peers of `table`, with the workloads of `workloads` where they
    /// list them; none where `table` is `None`.
    pub fn set_peers(
        &mut self,
        table: Option<&'a PeerTable>,
        workloads: Option<&'a [(Workload, Counts)]>,
    ) {
        (self.peers_time, self.peers, self.peers_omitted) = match table {
            Some(table) => {
                let (entries, omitted) = peer_entries(table, workloads);
                (
                    Some(table.read_at.map(seconds)),
                    Some(entries),
                    Some(omitted),
                )
            }
            None => (None, None, None),
        };
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Only strings, integers and a finite float: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
