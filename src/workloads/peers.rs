//! Traffic per remote peer, bounded: the kernel counts per (socket cgroup,
//! remote address, server port) ([`accounting::peers`]); on a background
//! tick, never per scrape (so every reader sees the same choice), this
//! picks per workload, protocol and side the top K peers by recent traffic
//! to get series of their own, and gives the rest to `peer="other"`.
//!
//! The rules that keep the series honest counters:
//! - a series lives at least `min_lifetime`, and a shown one gives way to a
//!   newcomer only when the newcomer moves twice its recent traffic
//!   (hysteresis: two peers of equal weight do not swap every tick);
//! - a newly shown series starts from 0; one that returns within `idle`
//!   continues from the value it had;
//! - `other` adds what no shown series got since the last tick, and what
//!   the workload's own (exact, per-cgroup) counter saw that the bounded
//!   peer map did not (a full map), under `protocol=""`: so over any
//!   window the increases of a workload's peer series and its `other`s
//!   equal the increase of its `net_workload_*` counter.
//!
//! [`Tracker`] is pure (the tick's time is an argument); [`PeerSource`]
//! reads the kernel's map for it on the resolver schedule.
//!
//! [`accounting::peers`]: crate::workloads::accounting

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::PeersConfig;
use crate::expose::encoder::{self, MetricType};
use crate::expose::telemetry::Telemetry;
use crate::model::peer::peer_label;
use crate::resolve::sources::{ResolverId, Source};
use crate::workloads::accounting::AccountingError;
use crate::workloads::accounting::Counts;
use crate::workloads::accounting::peers::{PeerKey, Side};
use crate::workloads::{Family, Workloads};

/// The `side` label: `server` where this host serves the peer (a listed
/// local port), `client` where it is the peer's client (a listed remote
/// port), empty where neither port is listed.
pub fn side_label(side: Side) -> &'static str {
    match side {
        Side::Server => "server",
        Side::Client => "client",
        Side::None => "",
    }
}

/// The peer of what no shown series got.
pub const OTHER: &str = "other";

/// A recent-traffic score decays by half each tick.
const DECAY: f64 = 0.5;
/// A newcomer takes a shown series' place only above this many times its
/// score.
const HYSTERESIS: f64 = 2.0;
/// Candidates kept per shown series at most, across all workloads: what a
/// torrent app's thousands of peers cost user space between ticks.
const CANDIDATES_PER_SERIES: usize = 64;

/// Where a kernel key's traffic goes: a workload (its rendered labels) and
/// the protocol index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Group {
    workload: Arc<str>,
    protocol: u8,
    side: Side,
}

#[derive(Debug)]
struct Candidate {
    /// Recent traffic, decaying: what the top K is chosen by.
    score: f64,
    last_active: Instant,
    /// The value the series has (or had, while hidden within `idle`).
    value: Counts,
    /// Since when it is shown, if it is.
    shown: Option<Instant>,
    /// Its labels, rendered once when first shown.
    rendered: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct GroupState {
    peers: HashMap<Arc<str>, Candidate>,
    other: Counts,
    other_rendered: Option<Arc<str>>,
    last_active: Option<Instant>,
}

/// The exact counter's side of a workload: what the peer map missed.
#[derive(Debug)]
struct Remainder {
    /// The peer map's sum for the workload since the tracker first saw it.
    peers: Counts,
    /// What went to `other` so far for the difference.
    given: Counts,
    seen: Instant,
}

#[derive(Debug)]
struct KeyState {
    counts: Counts,
    changed: Instant,
    /// The `peer` label, folded where it is public.
    peer: Arc<str>,
    /// The last read that had it.
    read: u64,
}

/// One tick's inputs besides the readings.
pub struct TickInput<'a> {
    /// The workload a cgroup's traffic of a protocol (index, side) goes to,
    /// as its rendered labels; `None` for a cgroup not known yet (its
    /// counts wait for the next tick).
    pub workload_of: &'a dyn Fn(u64, u8, Side) -> Option<Arc<str>>,
    /// Each workload's own counter, read just before the peer map (so the
    /// map holds at least every packet the counter does).
    pub exact: &'a HashMap<Arc<str>, Counts>,
    pub now: Instant,
}

/// The series of one tick, in label order: what scrapes and the live view
/// read until the next.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PeerTable {
    pub rows: Vec<PeerRow>,
    /// The programs' count of new keys when the map was read.
    pub new_keys: u64,
    /// When the tick read the map (`None` before the first): the live
    /// view divides two tables' differences by the time between them.
    pub read_at: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    /// The workload's labels, then `peer`, `protocol` and `side`.
    pub rendered: Arc<str>,
    pub workload: Arc<str>,
    pub peer: Arc<str>,
    pub protocol: Arc<str>,
    pub side: &'static str,
    pub counts: Counts,
}

/// What a tick did besides the table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Kernel keys idle for `idle`, for the caller to delete.
    pub idle_keys: Vec<PeerKey>,
    /// Candidates dropped to stay within the bound.
    pub dropped: usize,
}

/// The user-space state between ticks.
#[derive(Debug)]
pub struct Tracker {
    settings: PeersConfig,
    /// Each listed port's protocol index, from `settings.ports`.
    port_protocol: HashMap<u16, u8>,
    /// Candidates kept at most (a bound on memory under churn).
    max_candidates: usize,
    keys: HashMap<PeerKey, KeyState>,
    /// Keys of cgroups no workload holds yet: since when, and the last
    /// read that had them.
    unknown: HashMap<PeerKey, (Instant, u64)>,
    /// Reads of the map so far.
    reads: u64,
    groups: HashMap<Group, GroupState>,
    remainders: HashMap<Arc<str>, Remainder>,
    protocol_names: Vec<Arc<str>>,
}

/// Whether every field of `a` is at least `b`'s: a key that went back was
/// deleted and made again.
fn covers(a: &Counts, b: &Counts) -> bool {
    a.rx_bytes >= b.rx_bytes
        && a.rx_packets >= b.rx_packets
        && a.tx_bytes >= b.tx_bytes
        && a.tx_packets >= b.tx_packets
}

fn bytes(c: &Counts) -> u64 {
    c.rx_bytes.saturating_add(c.tx_bytes)
}

impl Tracker {
    pub fn new(settings: &PeersConfig) -> Tracker {
        let mut protocol_names: Vec<Arc<str>> = vec![Arc::from("")];
        protocol_names.extend(settings.protocols.iter().map(|p| Arc::from(&**p)));
        Tracker {
            port_protocol: settings.ports.iter().copied().collect(),
            max_candidates: (settings.max_peers as usize).max(settings.top * CANDIDATES_PER_SERIES),
            settings: settings.clone(),
            keys: HashMap::new(),
            unknown: HashMap::new(),
            reads: 0,
            groups: HashMap::new(),
            remainders: HashMap::new(),
            protocol_names,
        }
    }

    fn protocol_of(&self, port: u16) -> u8 {
        self.port_protocol.get(&port).copied().unwrap_or(0)
    }

    /// One tick: the kernel map's `readings` (every key, its counts since
    /// it was made), attributed, ranked and written as the next table.
    pub fn tick(
        &mut self,
        readings: &[(PeerKey, Counts)],
        input: &TickInput,
    ) -> (PeerTable, TickStats) {
        let now = input.now;
        let mut stats = TickStats::default();
        // Which keys this read has: a key the map no longer has is gone.
        self.reads += 1;
        let read = self.reads;
        // Deltas per group and peer label.
        let mut deltas: HashMap<(Group, Arc<str>), Counts> = HashMap::new();
        for (key, counts) in readings {
            if let Some(state) = self.keys.get_mut(key)
                && state.counts == *counts
            {
                // Most keys, most ticks: nothing new, nothing to attribute.
                state.read = read;
                continue;
            }
            let protocol = if key.side == Side::None {
                0
            } else {
                self.protocol_of(key.port)
            };
            let Some(workload) = (input.workload_of)(key.cgroup, protocol, key.side) else {
                // Its counts wait for the cgroup's name; a key that waits
                // for `idle` leaves the map (its cgroup's own counter still
                // has the bytes, and its workload's `other` then).
                let (since, seen) = self.unknown.entry(*key).or_insert((now, read));
                *seen = read;
                if now.saturating_duration_since(*since) >= self.settings.idle {
                    stats.idle_keys.push(*key);
                    self.unknown.remove(key);
                }
                continue;
            };
            self.unknown.remove(key);
            let state = match self.keys.get_mut(key) {
                Some(s) => s,
                None => {
                    let peer = peer_label(key.ip(), self.settings.fold_v4, self.settings.fold_v6);
                    self.keys.entry(*key).or_insert(KeyState {
                        counts: Counts::default(),
                        changed: now,
                        peer: Arc::from(peer),
                        read,
                    })
                }
            };
            let delta = if covers(counts, &state.counts) {
                counts.saturating_sub(&state.counts)
            } else {
                *counts
            };
            if delta != Counts::default() {
                state.changed = now;
            }
            state.counts = *counts;
            state.read = read;
            let group = Group {
                workload,
                protocol,
                side: if protocol == 0 { Side::None } else { key.side },
            };
            deltas
                .entry((group, Arc::clone(&state.peer)))
                .or_default()
                .add(&delta);
        }
        let idle = self.settings.idle;
        self.unknown.retain(|_, (_, seen)| *seen == read);
        self.keys.retain(|key, state| {
            if state.read != read {
                return false;
            }
            let quiet = now.saturating_duration_since(state.changed) >= idle;
            if quiet {
                stats.idle_keys.push(*key);
            }
            !quiet
        });

        // The peer map's sum per workload this tick.
        let mut per_workload: HashMap<Arc<str>, Counts> = HashMap::new();
        for ((group, peer), delta) in deltas {
            per_workload
                .entry(Arc::clone(&group.workload))
                .or_default()
                .add(&delta);
            let state = self.groups.entry(group).or_default();
            let candidate = state.peers.entry(peer).or_insert(Candidate {
                score: 0.0,
                last_active: now,
                value: Counts::default(),
                shown: None,
                rendered: None,
            });
            candidate.score += bytes(&delta) as f64;
            if delta != Counts::default() {
                candidate.last_active = now;
                state.last_active = Some(now);
            }
            if candidate.shown.is_some() {
                candidate.value.add(&delta);
            } else {
                state.other.add(&delta);
            }
        }
        self.account_remainders(&per_workload, input);
        self.select(now);
        stats.dropped = self.bound();
        (self.table(), stats)
    }

    /// What each workload's own counter saw that the peer map did not (a
    /// full map, keys removed as idle while unnamed), added to its `other`
    /// with no protocol. Only ever added: a packet the map has and the
    /// counter had not yet is evened out by the next, not subtracted.
    fn account_remainders(&mut self, per_workload: &HashMap<Arc<str>, Counts>, input: &TickInput) {
        let now = input.now;
        for (workload, exact) in input.exact {
            let r = self
                .remainders
                .entry(Arc::clone(workload))
                .or_insert(Remainder {
                    peers: Counts::default(),
                    given: Counts::default(),
                    seen: now,
                });
            r.seen = now;
            if let Some(from_peers) = per_workload.get(workload) {
                r.peers.add(from_peers);
            }
            // The counter was read before the map: what it has beyond the
            // map is traffic the map never held (a full map), never a
            // packet the map will count at the next tick.
            let missed = exact.saturating_sub(&r.peers);
            let more = missed.saturating_sub(&r.given);
            if more == Counts::default() {
                continue;
            }
            r.given.add(&more);
            let group = Group {
                workload: Arc::clone(workload),
                protocol: 0,
                side: Side::None,
            };
            let state = self.groups.entry(group).or_default();
            state.other.add(&more);
            state.last_active = Some(now);
        }
        let idle = self.settings.idle;
        self.remainders
            .retain(|_, r| now.saturating_duration_since(r.seen) < idle);
    }

    /// The top K per group, with hysteresis and a minimum lifetime.
    fn select(&mut self, now: Instant) {
        let PeersConfig {
            top,
            idle,
            min_lifetime,
            ..
        } = self.settings;
        for state in self.groups.values_mut() {
            let mut shown = 0;
            for c in state.peers.values_mut() {
                c.score *= DECAY;
                let Some(since) = c.shown else { continue };
                let old = now.saturating_duration_since(since) >= min_lifetime;
                if old && now.saturating_duration_since(c.last_active) >= idle {
                    c.shown = None;
                } else {
                    shown += 1;
                }
            }
            // Newcomers by score, best first.
            let mut waiting: Vec<(&Arc<str>, f64)> = state
                .peers
                .iter()
                .filter(|(_, c)| {
                    c.shown.is_none()
                        && c.score > 0.0
                        && now.saturating_duration_since(c.last_active) < idle
                })
                .map(|(p, c)| (p, c.score))
                .collect();
            waiting.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let mut promote: Vec<Arc<str>> = Vec::new();
            let mut demote: Vec<Arc<str>> = Vec::new();
            let mut waiting = waiting.into_iter();
            for (peer, _) in waiting.by_ref().take(top.saturating_sub(shown)) {
                promote.push(Arc::clone(peer));
            }
            // The shown that may give way, weakest first.
            let mut evictable: Vec<(&Arc<str>, f64)> = state
                .peers
                .iter()
                .filter(|(_, c)| {
                    c.shown
                        .is_some_and(|s| now.saturating_duration_since(s) >= min_lifetime)
                })
                .map(|(p, c)| (p, c.score))
                .collect();
            evictable.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
            for ((peer, score), (weak, weak_score)) in waiting.zip(evictable) {
                if score <= weak_score * HYSTERESIS {
                    break;
                }
                promote.push(Arc::clone(peer));
                demote.push(Arc::clone(weak));
            }
            for peer in demote {
                if let Some(c) = state.peers.get_mut(&peer) {
                    c.shown = None;
                }
            }
            for peer in promote {
                if let Some(c) = state.peers.get_mut(&peer) {
                    c.shown = Some(now);
                }
            }
            // A hidden one quiet for `idle` is forgotten, its value with it.
            state.peers.retain(|_, c| {
                c.shown.is_some() || now.saturating_duration_since(c.last_active) < idle
            });
        }
        self.groups.retain(|_, s| {
            !s.peers.is_empty()
                || s.last_active
                    .is_some_and(|t| now.saturating_duration_since(t) < idle)
        });
    }

    /// Drops the weakest hidden candidates past the bound; returns how many.
    fn bound(&mut self) -> usize {
        let total: usize = self.groups.values().map(|s| s.peers.len()).sum();
        let over = total.saturating_sub(self.max_candidates);
        if over == 0 {
            return 0;
        }
        let mut hidden: Vec<(f64, Group, Arc<str>)> = self
            .groups
            .iter()
            .flat_map(|(g, s)| {
                s.peers
                    .iter()
                    .filter(|(_, c)| c.shown.is_none())
                    .map(move |(p, c)| (c.score, g.clone(), Arc::clone(p)))
            })
            .collect();
        hidden.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut dropped = 0;
        for (_, group, peer) in hidden.into_iter().take(over) {
            if let Some(s) = self.groups.get_mut(&group) {
                s.peers.remove(&peer);
                dropped += 1;
            }
        }
        dropped
    }

    /// The shown series and each group's `other`, in label order.
    fn table(&mut self) -> PeerTable {
        let mut rows = Vec::new();
        for (group, state) in &mut self.groups {
            let protocol = Arc::clone(&self.protocol_names[group.protocol as usize]);
            let side = side_label(group.side);
            let render = |peer: &str| -> Arc<str> {
                Arc::from(format!(
                    "{},{}",
                    group.workload,
                    encoder::render_labels([
                        ("peer", peer.as_bytes()),
                        ("protocol", protocol.as_bytes()),
                        ("side", side.as_bytes()),
                    ])
                ))
            };
            for (peer, c) in &mut state.peers {
                if c.shown.is_none() {
                    continue;
                }
                let rendered = c.rendered.get_or_insert_with(|| render(peer));
                rows.push(PeerRow {
                    rendered: Arc::clone(rendered),
                    workload: Arc::clone(&group.workload),
                    peer: Arc::clone(peer),
                    protocol: Arc::clone(&protocol),
                    side,
                    counts: c.value,
                });
            }
            let rendered = state.other_rendered.get_or_insert_with(|| render(OTHER));
            rows.push(PeerRow {
                rendered: Arc::clone(rendered),
                workload: Arc::clone(&group.workload),
                peer: Arc::from(OTHER),
                protocol,
                side,
                counts: state.other,
            });
        }
        rows.sort_by(|a, b| a.rendered.cmp(&b.rendered));
        PeerTable {
            rows,
            new_keys: 0,
            read_at: None,
        }
    }
}

/// The peer families, from the workload's side (rx: what it received from
/// the peer). L3 bytes, as `net_workload_*`.
pub const FAMILIES: [Family; 2] = [
    (
        "net_peer_rx_bytes_total",
        "Bytes the workload received from the peer (IP header and payload); peer=\"other\": from the workload's peers with no series of their own.",
        |c| c.rx_bytes,
    ),
    (
        "net_peer_tx_bytes_total",
        "Bytes the workload sent to the peer (IP header and payload); peer=\"other\": to the workload's peers with no series of their own.",
        |c| c.tx_bytes,
    ),
];

impl PeerTable {
    /// Every peer with a series of its own (not `other`), once each.
    pub fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = self
            .rows
            .iter()
            .filter(|r| &*r.peer != OTHER)
            .map(|r| r.peer.to_string())
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    /// Writes [`FAMILIES`], each row under its rendered labels.
    pub fn write(&self, out: &mut Vec<u8>) {
        for (name, help, value) in FAMILIES {
            encoder::header(out, name, help, MetricType::Counter);
            for row in &self.rows {
                encoder::sample(out, name, &row.rendered, value(&row.counts));
            }
        }
    }
}

/// The tick: reads the kernel's map, then the workloads' own counters, and
/// hands both to the [`Tracker`]. A resolver like the others (bounded,
/// its failures counted), woken early only by a scrape that finds keys the
/// last tick did not read. The map's read is a few batch calls (bounded by
/// `[peers] max_peers`), made on the resolvers' own thread.
pub struct PeerSource {
    workloads: Arc<Workloads>,
    tracker: Mutex<Tracker>,
    /// Woken when a removed cgroup turns out to serve NFS.
    recompose: Vec<Arc<Notify>>,
    lost: (metrics::Counter, metrics::Counter),
}

impl PeerSource {
    pub fn new(
        workloads: Arc<Workloads>,
        settings: &PeersConfig,
        recompose: Vec<Arc<Notify>>,
        telemetry: &Telemetry,
    ) -> PeerSource {
        PeerSource {
            workloads,
            tracker: Mutex::new(Tracker::new(settings)),
            recompose,
            lost: (
                telemetry.peers_lost_packets.clone(),
                telemetry.peers_lost_bytes.clone(),
            ),
        }
    }

    fn tick(&self) -> Result<PeerTable, AccountingError> {
        let Some(peers) = self.workloads.peers() else {
            return Ok(PeerTable::default());
        };
        // The counters before the map: the map then holds all they do, so
        // no packet counts twice (once as missed by the map, once in it).
        let (table, sums, _) = self.workloads.read();
        let stats = peers.counting.stats();
        let readings = peers.counting.read()?;
        let read_at = SystemTime::now();
        let rendered: Vec<Arc<str>> = table
            .workloads
            .iter()
            .map(|w| Arc::from(&*w.rendered))
            .collect();
        let exact: HashMap<Arc<str>, Counts> = sums
            .iter()
            .map(|&(w, c)| (Arc::clone(&rendered[w]), c))
            .collect();
        let news = std::cell::Cell::new(false);
        let nfs = peers.nfs_protocol;
        let workload_of = |cgroup: u64, protocol: u8, side: Side| -> Option<Arc<str>> {
            let serves_nfs = side == Side::Server && nfs == Some(protocol);
            if serves_nfs && table.root_cgroup == Some(cgroup) && table.nfs.is_some() {
                return table.nfs.map(|w| Arc::clone(&rendered[w as usize]));
            }
            match table.by_id.get(&cgroup) {
                Some(&w) => Some(Arc::clone(&rendered[w as usize])),
                None => {
                    if serves_nfs && self.workloads.serves_nfs(cgroup) {
                        news.set(true);
                    }
                    None
                }
            }
        };
        let tracker = &mut *self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        let (mut next, done) = tracker.tick(
            &readings,
            &TickInput {
                workload_of: &workload_of,
                exact: &exact,
                now: Instant::now(),
            },
        );
        if news.get() {
            for wake in &self.recompose {
                wake.notify_one();
            }
        }
        if !done.idle_keys.is_empty() {
            peers.counting.remove(&done.idle_keys)?;
        }
        self.lost.0.absolute(stats.lost_packets);
        self.lost.1.absolute(stats.lost_bytes);
        next.new_keys = stats.new_keys;
        next.read_at = Some(read_at);
        Ok(next)
    }
}

impl Source for PeerSource {
    type Snapshot = PeerTable;
    type Error = AccountingError;
    const ID: ResolverId = ResolverId::Peers;

    async fn refresh(&self) -> Result<PeerTable, AccountingError> {
        self.tick()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn settings(top: usize) -> PeersConfig {
        PeersConfig {
            schedule: crate::config::Schedule {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
            },
            top,
            max_peers: 1000,
            idle: Duration::from_secs(60),
            min_lifetime: Duration::from_secs(20),
            fold_v4: 32,
            fold_v6: 128,
            protocols: vec!["smb".into(), "nfs".into()],
            ports: vec![(445, 1), (2049, 2)],
        }
    }

    fn key(cgroup: u64, last: u8, port: u16, side: Side) -> PeerKey {
        PeerKey {
            cgroup,
            addr: Ipv4Addr::new(10, 0, 0, last).to_ipv6_mapped(),
            port,
            side,
        }
    }

    fn tx(bytes: u64) -> Counts {
        Counts {
            tx_bytes: bytes,
            tx_packets: bytes / 1000 + 1,
            ..Counts::default()
        }
    }

    struct World {
        tracker: Tracker,
        now: Instant,
        /// Cumulative per key.
        keys: HashMap<PeerKey, Counts>,
        /// The workload's exact counter: every key's bytes plus `missed`.
        missed: u64,
        /// Bytes of keys removed from the map as idle.
        forgotten: u64,
    }

    impl World {
        fn new(top: usize) -> World {
            World {
                tracker: Tracker::new(&settings(top)),
                now: Instant::now(),
                keys: HashMap::new(),
                missed: 0,
                forgotten: 0,
            }
        }

        fn send(&mut self, k: PeerKey, bytes: u64) {
            self.keys.entry(k).or_default().add(&tx(bytes));
        }

        fn tick(&mut self) -> PeerTable {
            self.now += Duration::from_secs(10);
            let readings: Vec<(PeerKey, Counts)> =
                self.keys.iter().map(|(k, c)| (*k, *c)).collect();
            let mut total = tx(0);
            total.tx_packets = 0;
            for c in self.keys.values() {
                total.add(c);
            }
            total.tx_bytes += self.missed + self.forgotten;
            let exact: HashMap<Arc<str>, Counts> = [(Arc::from("w=\"a\""), total)].into();
            let workload_of = |_: u64, _: u8, _: Side| Some(Arc::from("w=\"a\""));
            let (table, stats) = self.tracker.tick(
                &readings,
                &TickInput {
                    workload_of: &workload_of,
                    exact: &exact,
                    now: self.now,
                },
            );
            for k in stats.idle_keys {
                if let Some(c) = self.keys.remove(&k) {
                    self.forgotten += c.tx_bytes;
                }
            }
            table
        }
    }

    fn value(table: &PeerTable, peer: &str, protocol: &str) -> Option<u64> {
        table
            .rows
            .iter()
            .find(|r| &*r.peer == peer && &*r.protocol == protocol)
            .map(|r| r.counts.tx_bytes)
    }

    #[test]
    fn the_top_k_have_series_and_the_rest_is_other() {
        let mut w = World::new(2);
        for i in 1..=5u8 {
            w.send(key(7, i, 445, Side::Server), 1000 * i as u64);
        }
        let first = w.tick();
        // The first tick is the baseline of the exact counter; nothing shown
        // had a value yet: all went to `other`, and the top two are shown.
        assert_eq!(value(&first, "10.0.0.5", "smb"), Some(0));
        assert_eq!(value(&first, "10.0.0.4", "smb"), Some(0));
        assert_eq!(value(&first, "10.0.0.3", "smb"), None);
        assert_eq!(value(&first, "other", "smb"), Some(15_000));
        for i in 1..=5u8 {
            w.send(key(7, i, 445, Side::Server), 100);
        }
        let t = w.tick();
        assert_eq!(
            value(&t, "10.0.0.5", "smb"),
            Some(100),
            "from 0, its own delta"
        );
        assert_eq!(value(&t, "other", "smb"), Some(15_300));
        let shown: Vec<_> = t.rows.iter().filter(|r| &*r.protocol == "smb").collect();
        assert_eq!(shown.len(), 3, "K + 1");
        assert_eq!(
            &*t.rows[0].rendered,
            "w=\"a\",peer=\"10.0.0.4\",protocol=\"smb\",side=\"server\""
        );
    }

    #[test]
    fn increases_add_up_to_the_workload_counter() {
        let mut w = World::new(3);
        let mut exact_before = 0;
        let mut series_before: HashMap<Arc<str>, u64> = HashMap::new();
        for round in 0..40u64 {
            for i in 0..50u8 {
                // Peers that come and go, and shift in weight.
                if (i as u64 + round) % 7 < 3 {
                    let side = if i % 2 == 0 { Side::Server } else { Side::None };
                    w.send(
                        key(1, i, if side == Side::Server { 445 } else { 0 }, side),
                        (i as u64 * 37 + round * 11) % 500 + 1,
                    );
                }
            }
            w.missed += round;
            let t = w.tick();
            let exact: u64 =
                w.keys.values().map(|c| c.tx_bytes).sum::<u64>() + w.missed + w.forgotten;
            // Shown series and `other`s, gone ones' last values included.
            let mut last = series_before.clone();
            for r in &t.rows {
                last.insert(Arc::clone(&r.rendered), r.counts.tx_bytes);
            }
            let all: u64 = last.values().sum();
            assert_eq!(
                all, exact,
                "the series add up to the counter, round {round}"
            );
            if round > 0 {
                // Every series' increase (a new one from 0, a gone one's
                // last value kept) against the counter's.
                let mut increase = 0;
                for r in &t.rows {
                    let before = series_before.get(&r.rendered).copied().unwrap_or(0);
                    assert!(r.counts.tx_bytes >= before, "monotonic: {}", r.rendered);
                    increase += r.counts.tx_bytes - before;
                }
                assert_eq!(increase, exact - exact_before, "round {round}");
            }
            for r in &t.rows {
                series_before.insert(Arc::clone(&r.rendered), r.counts.tx_bytes);
            }
            exact_before = exact;
            let per_group = t.rows.iter().filter(|r| &*r.protocol == "smb").count();
            assert!(per_group <= 4, "at most K + 1 per group: {per_group}");
        }
    }

    #[test]
    fn hysteresis_and_a_minimum_lifetime_keep_series_steady() {
        let mut w = World::new(1);
        w.send(key(1, 1, 445, Side::Server), 1000);
        w.tick();
        // A newcomer a little heavier does not take the place.
        for _ in 0..5 {
            w.send(key(1, 1, 445, Side::Server), 1000);
            w.send(key(1, 2, 445, Side::Server), 1500);
            let t = w.tick();
            assert!(value(&t, "10.0.0.1", "smb").is_some());
            assert!(value(&t, "10.0.0.2", "smb").is_none());
        }
        // Ten times heavier does, once the shown one is old enough.
        w.send(key(1, 2, 445, Side::Server), 100_000);
        w.send(key(1, 1, 445, Side::Server), 10);
        let t = w.tick();
        assert_eq!(value(&t, "10.0.0.2", "smb"), Some(0));
        assert!(value(&t, "10.0.0.1", "smb").is_none());
        // Back on top: it continues from its last value.
        let before = {
            w.send(key(1, 1, 445, Side::Server), 10_000_000);
            w.tick();
            w.send(key(1, 1, 445, Side::Server), 10);
            w.tick()
        };
        assert!(value(&before, "10.0.0.1", "smb").unwrap() >= 5000);
    }

    #[test]
    fn idle_keys_are_handed_back_and_idle_series_go() {
        let mut w = World::new(2);
        w.send(key(1, 1, 2049, Side::Server), 1000);
        w.tick();
        w.send(key(1, 1, 2049, Side::Server), 1000);
        assert_eq!(value(&w.tick(), "10.0.0.1", "nfs"), Some(1000));
        let mut gone = false;
        for _ in 0..10 {
            let t = w.tick();
            if value(&t, "10.0.0.1", "nfs").is_none() {
                gone = true;
            }
        }
        assert!(gone, "quiet for idle: the series goes");
        assert!(w.keys.is_empty(), "and the key leaves the kernel's map");
    }

    #[test]
    fn keys_of_a_cgroup_never_named_leave_the_map_after_idle() {
        let mut tracker = Tracker::new(&settings(2));
        let k = key(99, 1, 445, Side::Server);
        let nobody = |_: u64, _: u8, _: Side| None;
        let exact = HashMap::new();
        let mut now = Instant::now();
        let mut removed = Vec::new();
        for _ in 0..8 {
            now += Duration::from_secs(10);
            let (table, stats) = tracker.tick(
                &[(k, tx(100))],
                &TickInput {
                    workload_of: &nobody,
                    exact: &exact,
                    now,
                },
            );
            assert!(table.rows.is_empty());
            removed.extend(stats.idle_keys);
        }
        assert_eq!(removed, [k], "once, after idle");
    }
}
