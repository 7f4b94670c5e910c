//! The scrape path: read `<procfs>/1/net/dev`, join each line against the
//! current [`LabelTable`], write the text exposition (through the
//! [`encoder`], copying each interface's rendered label block). No resolver
//! work, no directory scan and no lock happens here; misses only wake the
//! resolvers.
//!
//! The output is produced in chunks ([`Scrape::write_chunk`]) so that a host
//! with 10,000 interfaces (13 MB of text) never holds its whole response in
//! memory: the server streams the chunks as it writes them.

use std::io;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::OnceCell;

use crate::bounded::{self, Worker};
use crate::composer::{self, Interface, LabelTable};
use crate::config::NetdevLimits;
use crate::expose::encoder::{self, MetricType};
use crate::expose::netdev::{self, Counters};
use crate::expose::telemetry::{Limit, LimitMetric, Telemetry};
use crate::model::labels::LabelSettings;

/// What one join produced besides the text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JoinStats {
    /// Interfaces written.
    pub interfaces: usize,
    /// Lines skipped because they did not parse, repeated an interface
    /// already listed, or would have repeated another interface's labels.
    pub malformed: u64,
    /// Interfaces present in net/dev but absent from the label table.
    pub unknown: usize,
}

/// Reads `<procfs>/1/net/dev` for each scrape, bounded in bytes and in time.
/// On procfs, the real case, the read happens inline: procfs answers from
/// memory and cannot hang, and a hop to another thread would cost more than
/// the read (~60 µs at 50 interfaces). Anywhere else (a fixture tree, a mount
/// that is not procfs) it runs on a blocking thread under a timeout, one read
/// at a time, so a FIFO or a hung filesystem costs at most one thread.
pub struct NetdevReader {
    path: PathBuf,
    limits: NetdevLimits,
    /// Whether `path` is on procfs, once known.
    on_procfs: OnceCell<bool>,
    worker: Worker,
    /// Size of the last read, to allocate the next buffer once.
    last_len: AtomicUsize,
    too_large: Arc<LimitMetric>,
    timeouts: Arc<LimitMetric>,
}

impl NetdevReader {
    pub fn new(procfs: &Path, limits: NetdevLimits, telemetry: &Telemetry) -> NetdevReader {
        NetdevReader {
            path: procfs.join("1/net/dev"),
            limits,
            on_procfs: OnceCell::new(),
            worker: Worker::new(limits.timeout),
            last_len: AtomicUsize::new(0),
            too_large: telemetry.limit(Limit::NetdevSize),
            timeouts: telemetry.limit(Limit::NetdevTimeout),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file; an error names the path.
    pub async fn read(&self) -> io::Result<Vec<u8>> {
        let capacity = self.last_len.load(Ordering::Relaxed) + 1024;
        let max = self.limits.max_bytes;
        let result = if self.on_procfs().await {
            let mut buf = Vec::with_capacity(capacity.min(max + 1));
            bounded::read_procfs_into(&self.path, max, &mut buf).map(|()| buf)
        } else {
            let path = self.path.clone();
            let job = self.worker.run(move |fs| {
                let mut buf = Vec::with_capacity(capacity.min(max + 1));
                fs.read_into(&path, max, &mut buf).map(|()| buf)
            });
            match job.await {
                Ok(read) => read,
                Err(e) => {
                    self.timeouts.hit(&e);
                    Err(io::Error::new(io::ErrorKind::TimedOut, e.to_string()))
                }
            }
        };
        match result {
            Ok(buf) => {
                self.last_len.store(buf.len(), Ordering::Relaxed);
                Ok(buf)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::FileTooLarge {
                    self.too_large.hit(&format!("{}: {e}", self.path.display()));
                }
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", self.path.display()),
                ))
            }
        }
    }

    /// Decided once, through the worker: `statfs` on a hung mount blocks
    /// too, and then later scrapes must fail at once rather than start
    /// another check each. Until it can be decided, reads go off-thread.
    async fn on_procfs(&self) -> bool {
        let decided = self.on_procfs.get_or_try_init(|| async {
            let path = self.path.clone();
            let check = self.worker.run(move |fs| {
                fs.at(&path);
                is_procfs(&path)
            });
            match check.await {
                Ok(Ok(answer)) => Ok(answer),
                _ => Err(()),
            }
        });
        decided.await.copied().unwrap_or(false)
    }
}

/// Whether `path` lives on procfs.
fn is_procfs(path: &Path) -> io::Result<bool> {
    let stat = rustix::fs::statfs(path)?;
    Ok(stat.f_type == rustix::fs::PROC_SUPER_MAGIC)
}

/// Reads a net/dev file on procfs inline into `buf`, as a scrape does
/// (benchmarks of the raw read).
pub fn read_netdev(path: &Path, max: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    bounded::read_procfs_into(path, max, buf)
}

/// One metric family of the output contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub value: Value,
}

/// Where a family's value and labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// The counter at this index of [`Counters::values`], with the counter labels.
    Counter(usize),
    /// 1, with the info labels (the VLAN instead of the state).
    Info,
    /// The link speed from sysfs, with the counter labels; only where known.
    Speed,
    /// The MTU from sysfs, with the counter labels; only where known.
    Mtu,
}

const fn counter(index: usize, name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        value: Value::Counter(index),
    }
}

/// The output contract: every `net_interface_*` family, in output order. The
/// eight counters come first, in the order of [`Counters::values`]; the info
/// family carries the labels and the VLAN id; the link facts come from the
/// last topology refresh, not from net/dev.
pub const FAMILIES: [Family; 11] = [
    counter(0, "net_interface_rx_bytes_total", "Total bytes received."),
    counter(
        1,
        "net_interface_tx_bytes_total",
        "Total bytes transmitted.",
    ),
    counter(
        2,
        "net_interface_rx_packets_total",
        "Total packets received.",
    ),
    counter(
        3,
        "net_interface_tx_packets_total",
        "Total packets transmitted.",
    ),
    counter(4, "net_interface_rx_errors_total", "Total receive errors."),
    counter(5, "net_interface_tx_errors_total", "Total transmit errors."),
    counter(
        6,
        "net_interface_rx_dropped_total",
        "Total received packets dropped.",
    ),
    counter(
        7,
        "net_interface_tx_dropped_total",
        "Total transmitted packets dropped.",
    ),
    Family {
        name: "net_interface_info",
        help: "Labels of each interface, with its 802.1Q id; always 1.",
        kind: MetricType::Gauge,
        value: Value::Info,
    },
    Family {
        name: "net_interface_speed_bytes",
        help: "Link speed in bytes per second, where the kernel reports one.",
        kind: MetricType::Gauge,
        value: Value::Speed,
    },
    Family {
        name: "net_interface_mtu_bytes",
        help: "Maximum transmission unit in bytes.",
        kind: MetricType::Gauge,
        value: Value::Mtu,
    },
];

struct Row {
    /// The interface name's position in the net/dev buffer.
    name: Range<usize>,
    counters: Counters,
    labels: Slot,
}

enum Slot {
    /// Index into the label table.
    Table(u32),
    /// Index into the scrape's own fallback labels.
    Fallback(u32),
}

/// One joined scrape, written out family by family. Generic over how it holds
/// the table: the server owns an `Arc<LabelTable>` so the response can stream;
/// benches and tests borrow one. The net/dev buffer is not kept: the rows hold
/// the counters, and the label blocks hold the names.
pub struct Scrape<T> {
    table: T,
    rows: Vec<Row>,
    /// Interfaces the table does not know yet: rare, so allocated.
    fallbacks: Vec<Interface>,
    pub stats: JoinStats,
    family: usize,
    /// Next row to write within `family`; `None` until its header is written.
    row: Option<usize>,
}

impl<T: Deref<Target = LabelTable>> Scrape<T> {
    /// Parses `netdev` and joins it with `table`, sorting by interface name.
    pub fn new(netdev: &[u8], table: T, settings: &LabelSettings) -> Self {
        let mut stats = JoinStats::default();
        let mut rows = Vec::with_capacity(table.len() + 8);
        let mut fallbacks = Vec::new();
        // Names are kept as offsets into `netdev`, which the scrape does not keep.
        let base = netdev.as_ptr() as usize;
        for line in netdev::parse(netdev) {
            let Ok((name, counters)) = line else {
                stats.malformed += 1;
                continue;
            };
            let labels = match table.position(name) {
                Some(i) if table.at(i).is_some() => Slot::Table(i),
                Some(_) => continue,
                None => {
                    stats.unknown += 1;
                    let Some(interface) = composer::fallback(name, settings) else {
                        continue;
                    };
                    if table.collides(&interface.rendered) {
                        stats.malformed += 1;
                        continue;
                    }
                    fallbacks.push(interface);
                    Slot::Fallback(u32::try_from(fallbacks.len() - 1).unwrap_or(u32::MAX))
                }
            };
            let start = name.as_ptr() as usize - base;
            rows.push(Row {
                name: start..start + name.len(),
                counters,
                labels,
            });
        }
        // By name; a name listed twice keeps its first line.
        rows.sort_unstable_by(|a, b| {
            netdev[a.name.clone()]
                .cmp(&netdev[b.name.clone()])
                .then(a.name.start.cmp(&b.name.start))
        });
        let listed = rows.len();
        rows.dedup_by(|later, first| netdev[later.name.clone()] == netdev[first.name.clone()]);
        stats.malformed += (listed - rows.len()) as u64;
        stats.interfaces = rows.len();
        Scrape {
            table,
            rows,
            fallbacks,
            stats,
            family: 0,
            row: None,
        }
    }

    /// The label table this scrape was joined with.
    pub fn table(&self) -> &LabelTable {
        &self.table
    }

    /// Each joined interface's labels and counters, by name (the live view).
    pub fn interfaces(&self) -> impl Iterator<Item = (&Interface, &Counters)> {
        self.rows
            .iter()
            .filter_map(|row| Some((self.labels(row)?, &row.counters)))
    }

    fn labels(&self, row: &Row) -> Option<&Interface> {
        match row.labels {
            Slot::Table(i) => self.table.at(i),
            Slot::Fallback(i) => self.fallbacks.get(i as usize),
        }
    }

    /// Appends lines to `out` until it holds at least `limit` bytes or the
    /// scrape is complete. Returns `true` while there is more to write.
    pub fn write_chunk(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        while let Some(family) = FAMILIES.get(self.family) {
            let name = family.name;
            let mut next = match self.row {
                Some(next) => next,
                None => {
                    encoder::header(out, name, family.help, family.kind);
                    0
                }
            };
            while let Some(row) = self.rows.get(next) {
                if out.len() >= limit {
                    self.row = Some(next);
                    return true;
                }
                next += 1;
                // Always Some: rows are only made for labelled interfaces.
                let Some(interface) = self.labels(row) else {
                    continue;
                };
                let labels = &interface.rendered;
                let value = match family.value {
                    Value::Counter(i) => Some(row.counters.values[i]),
                    Value::Info => {
                        let info = |out: &mut Vec<u8>| labels.write_info(out, interface.vlan);
                        encoder::sample_with(out, name, info, 1u64);
                        continue;
                    }
                    Value::Speed => interface.speed_bytes,
                    Value::Mtu => interface.mtu.map(u64::from),
                };
                if let Some(value) = value {
                    encoder::sample(out, name, labels.counters(), value);
                }
            }
            self.family += 1;
            self.row = None;
        }
        false
    }

    /// A rough upper bound of the bytes still to write (a line of at most
    /// ~200 bytes per family and interface), to size buffers without
    /// over-allocating.
    pub fn remaining_hint(&self) -> usize {
        let rows_left = FAMILIES.len().saturating_sub(self.family) * self.rows.len();
        rows_left * 200 + 4096
    }

    /// Writes everything that is left.
    pub fn write_all(&mut self, out: &mut Vec<u8>) {
        while self.write_chunk(out, usize::MAX) {}
    }
}

/// Parses `netdev`, joins it with `table` and appends every
/// `net_interface_*` family ([`FAMILIES`]) to `out`, sorted by interface name.
pub fn join_and_write(
    netdev: &[u8],
    table: &LabelTable,
    settings: &LabelSettings,
    out: &mut Vec<u8>,
) -> JoinStats {
    let mut scrape = Scrape::new(netdev, table, settings);
    scrape.write_all(out);
    scrape.stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::composer::compose;
    use crate::model::labels::InterfaceFilter;
    use crate::resolve::sources::topology::{LinkFacts, TopologySnapshot};

    const NETDEV: &[u8] = b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n\
        vnew: 5 6 0 0 0 0 0 0 7 8 0 0 0 0 0 0\n\
        eth0: 100 2 3 4 0 0 0 0 200 5 6 7 0 0 0 0\n\
        broken line\n\
        lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n";

    fn table(settings: &LabelSettings) -> LabelTable {
        let facts = |driver, state: &str| LinkFacts {
            ifindex: Some(2),
            iflink: Some(2),
            link_type: Some(1),
            has_driver: driver,
            operstate: Some(state.into()),
            ..LinkFacts::default()
        };
        let mut links = std::collections::BTreeMap::new();
        links.insert(
            b"eth0".to_vec(),
            LinkFacts {
                speed_bytes: Some(125_000_000),
                mtu: Some(9000),
                ..facts(true, "up")
            },
        );
        links.insert(
            b"lo".to_vec(),
            LinkFacts {
                link_type: Some(772),
                mtu: Some(65536),
                ..facts(false, "unknown")
            },
        );
        compose(&TopologySnapshot { links }, &[], settings)
    }

    #[test]
    fn writes_exact_sorted_exposition() {
        let settings = LabelSettings::default();
        let mut out = Vec::new();
        let stats = join_and_write(NETDEV, &table(&settings), &settings, &mut out);
        assert_eq!(
            stats,
            JoinStats {
                interfaces: 3,
                malformed: 1,
                unknown: 1
            }
        );
        let text = String::from_utf8(out).unwrap();
        let rx_bytes: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("net_interface_rx_bytes_total"))
            .collect();
        assert_eq!(
            rx_bytes,
            [
                r#"net_interface_rx_bytes_total{interface="eth0",instance="eth0",instance_type="physical",app="",bridge="",state="up"} 100"#,
                r#"net_interface_rx_bytes_total{interface="lo",instance="lo",instance_type="loopback",app="",bridge="",state="unknown"} 1"#,
                r#"net_interface_rx_bytes_total{interface="vnew",instance="vnew",instance_type="unknown",app="",bridge="",state="unknown"} 5"#,
            ]
        );
        assert!(text.starts_with(
            "# HELP net_interface_rx_bytes_total Total bytes received.\n# TYPE net_interface_rx_bytes_total counter\n"
        ));
        assert!(text.contains(r#"net_interface_tx_dropped_total{interface="eth0",instance="eth0",instance_type="physical",app="",bridge="",state="up"} 7"#));
        assert!(text.contains(r#"net_interface_rx_errors_total{interface="eth0",instance="eth0",instance_type="physical",app="",bridge="",state="up"} 3"#));
        assert!(text.contains("net_interface_info{interface=\"vnew\",instance=\"vnew\",instance_type=\"unknown\",app=\"\",bridge=\"\",vlan=\"\",bond=\"\"} 1\n# HELP net_interface_speed_bytes"));
        // Link facts only where sysfs gave them: eth0's speed, eth0's and lo's MTU.
        assert!(text.ends_with(concat!(
            "# HELP net_interface_speed_bytes Link speed in bytes per second, where the kernel reports one.\n",
            "# TYPE net_interface_speed_bytes gauge\n",
            "net_interface_speed_bytes{interface=\"eth0\",instance=\"eth0\",instance_type=\"physical\",app=\"\",bridge=\"\",state=\"up\"} 125000000\n",
            "# HELP net_interface_mtu_bytes Maximum transmission unit in bytes.\n",
            "# TYPE net_interface_mtu_bytes gauge\n",
            "net_interface_mtu_bytes{interface=\"eth0\",instance=\"eth0\",instance_type=\"physical\",app=\"\",bridge=\"\",state=\"up\"} 9000\n",
            "net_interface_mtu_bytes{interface=\"lo\",instance=\"lo\",instance_type=\"loopback\",app=\"\",bridge=\"\",state=\"unknown\"} 65536\n",
        )));
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            9 * 3 + 3
        );
    }

    #[test]
    fn chunks_add_up_to_the_whole() {
        let settings = LabelSettings::default();
        let table = table(&settings);
        let mut whole = Vec::new();
        join_and_write(NETDEV, &table, &settings, &mut whole);
        let mut scrape = Scrape::new(NETDEV, &table, &settings);
        let mut joined = Vec::new();
        let mut chunks = 0;
        loop {
            let mut chunk = Vec::new();
            let more = scrape.write_chunk(&mut chunk, 200);
            assert!(
                chunk.len() < 200 + 300,
                "a chunk stops soon after its limit"
            );
            joined.extend_from_slice(&chunk);
            chunks += 1;
            if !more {
                break;
            }
        }
        assert!(chunks > 5);
        assert_eq!(
            String::from_utf8(joined).unwrap(),
            String::from_utf8(whole).unwrap()
        );
    }

    #[test]
    fn excluded_interfaces_are_not_written() {
        let settings = LabelSettings {
            filter: InterfaceFilter {
                include: regex::Regex::new("^(eth|v)").ok(),
                exclude: None,
            },
            ..LabelSettings::default()
        };
        let mut out = Vec::new();
        let stats = join_and_write(NETDEV, &table(&settings), &settings, &mut out);
        assert_eq!(stats.interfaces, 2);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains(r#"interface="lo""#));
        assert!(text.contains(r#"interface="vnew""#));
    }
}
