//! The scrape path: read `<procfs>/1/net/dev`, join each line against the
//! current [`LabelTable`], write the text exposition. No resolver work, no
//! directory scan and no lock happens here; misses only wake the resolvers.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::compose::{self, Entry, LabelSettings, LabelTable};
use crate::labels::Rendered;
use crate::netdev::{self, COUNTER_NAMES, Counters};

/// What one join produced besides the text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JoinStats {
    /// Interfaces written.
    pub interfaces: usize,
    /// Lines skipped because they did not parse.
    pub malformed: u64,
    /// Interfaces present in net/dev but absent from the label table.
    pub unknown: usize,
}

/// Reads a whole procfs file into `buf` (cleared first). procfs hands
/// `net/dev` out a page per `read`, so this loops to EOF.
pub fn read_netdev(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_end(buf)?;
    Ok(())
}

struct Row<'a> {
    name: &'a [u8],
    counters: Counters,
    labels: Slot<'a>,
}

enum Slot<'a> {
    Table(&'a Rendered),
    /// Index into the per-scrape list of fallback labels.
    Fallback(usize),
}

impl<'a> Slot<'a> {
    fn get<'s>(&'s self, fallbacks: &'s [Rendered]) -> &'s Rendered
    where
        'a: 's,
    {
        match *self {
            Slot::Table(r) => r,
            Slot::Fallback(i) => &fallbacks[i],
        }
    }
}

/// Parses `netdev`, joins it with `table` and appends the nine
/// `net_interface_*` families to `out`, sorted by interface name.
pub fn join_and_write(
    netdev: &[u8],
    table: &LabelTable,
    settings: &LabelSettings,
    out: &mut Vec<u8>,
) -> JoinStats {
    let mut stats = JoinStats::default();
    let mut rows: Vec<Row<'_>> = Vec::with_capacity(table.len() + 8);
    // Interfaces the table does not know yet: rare, so allocating here is fine.
    let mut fallbacks: Vec<Rendered> = Vec::new();
    for line in netdev::parse(netdev) {
        let Ok((name, counters)) = line else {
            stats.malformed += 1;
            continue;
        };
        let labels = match table.get(name) {
            Some(Entry { rendered: Some(r) }) => Slot::Table(r),
            Some(Entry { rendered: None }) => continue,
            None => {
                stats.unknown += 1;
                match compose::fallback(name, settings).rendered {
                    Some(r) => {
                        fallbacks.push(r);
                        Slot::Fallback(fallbacks.len() - 1)
                    }
                    None => continue,
                }
            }
        };
        rows.push(Row {
            name,
            counters,
            labels,
        });
    }
    rows.sort_unstable_by(|a, b| a.name.cmp(b.name));
    stats.interfaces = rows.len();

    let mut num = itoa::Buffer::new();
    for (i, (name, help)) in COUNTER_NAMES.iter().enumerate() {
        write_header(out, name, help, "counter");
        for row in &rows {
            out.extend_from_slice(name.as_bytes());
            out.push(b'{');
            out.extend_from_slice(row.labels.get(&fallbacks).counters.as_bytes());
            out.extend_from_slice(b"} ");
            out.extend_from_slice(num.format(row.counters.values[i]).as_bytes());
            out.push(b'\n');
        }
    }
    const INFO: &str = "net_interface_info";
    write_header(
        out,
        INFO,
        "Labels of each interface, with its 802.1Q id; always 1.",
        "gauge",
    );
    for row in &rows {
        out.extend_from_slice(INFO.as_bytes());
        out.push(b'{');
        out.extend_from_slice(row.labels.get(&fallbacks).info.as_bytes());
        out.extend_from_slice(b"} 1\n");
    }
    stats
}

fn write_header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    for part in [
        "# HELP ",
        name,
        " ",
        help,
        "\n# TYPE ",
        name,
        " ",
        kind,
        "\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{InterfaceFilter, compose};
    use crate::sources::topology::{LinkFacts, TopologySnapshot};

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
        links.insert(b"eth0".to_vec(), facts(true, "up"));
        links.insert(
            b"lo".to_vec(),
            LinkFacts {
                link_type: Some(772),
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
        assert!(text.ends_with("net_interface_info{interface=\"vnew\",instance=\"vnew\",instance_type=\"unknown\",app=\"\",bridge=\"\",vlan=\"\"} 1\n"));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 9 * 3);
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
