//! The page at `/`: every interface and workload of one read under its
//! owner, NICs also in a table of their own, without rates (the script adds
//! them; workloads show their counters), rendered on the server so it reads
//! without JavaScript. Every name came from outside
//! (container names, Compose labels, interface names): each is escaped, in
//! text and attributes alike.

use std::collections::HashMap;

use super::api::{Document, Entry, NameEntry, PeerEntry, WorkloadEntry};
use super::group;
use crate::model::owner::OwnerKind;

/// Peers shown under a workload by name, at most; the rest add up in one
/// `other` row (the script picks them by rate, this page by bytes).
pub const PEER_ROWS: usize = 8;
/// Rows of the Clients table, at most.
pub const CLIENT_ROWS: usize = 50;

const PAGE: &str = include_str!("page.html");

/// The page. `metrics` is the telemetry path, linked relative so the page
/// works behind a path prefix.
pub fn page(document: &Document<'_>, metrics: &str) -> String {
    let mut nics = String::new();
    for entry in document
        .interfaces
        .iter()
        .filter(|e| e.source.owner.kind == OwnerKind::Nic)
    {
        nic_row(&mut nics, entry);
    }
    let workloads = document.workloads.as_deref().unwrap_or_default();
    let peers = document.peers.as_deref().unwrap_or_default();
    let mut peers_of: HashMap<(&str, &str), Vec<&PeerEntry<'_>>> = HashMap::new();
    for p in peers {
        peers_of
            .entry((&p.instance_type, &p.instance))
            .or_default()
            .push(p);
    }
    let names: Names<'_> = document
        .names
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|n| (n.peer, n))
        .collect();
    let (groups, loopback) = group::by_owner(&document.interfaces, workloads);
    let mut owners = String::with_capacity((document.interfaces.len() + workloads.len()) * 300);
    for g in &groups {
        owner_head(&mut owners, g.kind, g.name);
        for entry in &g.interfaces {
            interface_row(&mut owners, entry);
        }
        for workload in &g.workloads {
            workload_row(&mut owners, workload);
            if let Some(list) = peers_of.get(&(workload.instance_type, workload.instance)) {
                peer_rows(&mut owners, workload, list, &names);
            }
        }
        owners.push_str("</tbody>\n");
    }
    let mut out = String::with_capacity(PAGE.len() + nics.len() + owners.len() + 64);
    fill(&mut out, PAGE, |key, out| {
        match key {
            "metrics" => push_html(out, &relative(metrics)),
            "nics" => out.push_str(&nics),
            "named" => named(out, document.workloads.is_some()),
            "clients" => clients(out, peers, &names),
            "owners" => out.push_str(&owners),
            "loopback" => loopback_section(out, &loopback),
            "version" => push_html(out, document.version),
            _ => return false,
        }
        true
    });
    out
}

/// An absolute path as a link relative to `/`, so that it follows a reverse
/// proxy's prefix: `/metrics` -> `./metrics`. The `./` keeps whatever
/// follows (`a:b`, `/x`, `\\x`) a path on this site, never a scheme or a host.
fn relative(path: &str) -> String {
    format!(".{path}")
}

/// Copies `template`, letting `put` write each `{key}`; `put` returns false
/// for a key it does not know, which is then copied as it is.
fn fill(out: &mut String, template: &str, mut put: impl FnMut(&str, &mut String) -> bool) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if put(&after[..close], out) => rest = &after[close + 1..],
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// Appends `s` escaped for HTML text and quoted attribute values alike.
fn push_html(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

/// Appends the pieces: `Raw` as they are (the page's own markup), `Text`
/// escaped (everything that came from outside).
fn push_all(out: &mut String, pieces: &[Piece<'_>]) {
    for piece in pieces {
        match piece {
            Piece::Raw(s) => out.push_str(s),
            Piece::Text(s) => push_html(out, s),
        }
    }
}

enum Piece<'a> {
    Raw(&'static str),
    Text(&'a str),
}
use Piece::{Raw, Text};

fn nic_row(out: &mut String, it: &Entry<'_>) {
    let speed = it.speed_bytes.filter(|&b| b > 0).map(format_speed);
    push_all(
        out,
        &[
            Raw("<tr class=\"nic\" data-interface=\""),
            Text(&it.interface),
            Raw("\" data-rx-bps=\"\" data-tx-bps=\"\" data-util=\"\"><td>"),
            Text(&it.interface),
            Raw("</td><td data-state=\""),
            Text(it.state),
            Raw("\">"),
            Text(it.state),
            Raw("</td><td>"),
            Text(speed.as_deref().unwrap_or("")),
            Raw("</td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td><td class=\"util\">"),
            Raw(if speed.is_some() { "" } else { "\u{2014}" }),
            Raw("</td></tr>\n"),
        ],
    );
}

/// Loopback apart from the owners, below them: what stays on the host is
/// no owner's traffic. Hidden where there is none (the script shows it).
fn loopback_section(out: &mut String, entries: &[&Entry<'_>]) {
    out.push_str(if entries.is_empty() {
        "<section id=\"loopback\" aria-labelledby=\"loopback-h\" hidden>\n"
    } else {
        "<section id=\"loopback\" aria-labelledby=\"loopback-h\">\n"
    });
    out.push_str(
        "<h2 id=\"loopback-h\">Loopback</h2>\n<p class=\"note\">Traffic that stays on the host, in no owner\u{2019}s figures.</p>\n<table>\n<thead><tr><th class=\"c-if\">Interface</th><th class=\"c-ty\">Owner</th><th class=\"rate c-rx\">rx</th><th class=\"rate c-tx\">tx</th></tr></thead>\n<tbody>\n",
    );
    for it in entries {
        push_all(
            out,
            &[
                Raw("<tr class=\"loop\" data-interface=\""),
                Text(&it.interface),
                Raw("\" data-rx-bps=\"\" data-tx-bps=\"\"><td>"),
                Text(&it.interface),
                Raw("</td><td>"),
                Text(it.owner.name),
                Raw("</td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td></tr>\n"),
            ],
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// The line under the NICs. The share it states comes from rates, which
/// only the script has; without it the line says so, or that there is
/// nothing to name traffic by.
fn named(out: &mut String, counted: bool) {
    let (state, text) = if counted {
        (
            "js",
            "Named share of the uplinks\u{2019} traffic: with live rates.",
        )
    } else {
        (
            "off",
            "Traffic per workload is not counted on this host, so the page cannot say how much of the uplinks\u{2019} traffic it names.",
        )
    };
    push_all(
        out,
        &[
            Raw("<p id=\"named\" class=\"named\" data-named=\""),
            Raw(state),
            Raw("\" data-rx-pct=\"\" data-tx-pct=\"\">"),
            Raw(text),
            Raw("</p>"),
        ],
    );
}

fn owner_head(out: &mut String, kind: OwnerKind, name: &str) {
    let kind = kind.as_str();
    push_all(
        out,
        &[
            Raw("<tbody class=\"owner\" data-kind=\""),
            Text(kind),
            Raw("\" data-name=\""),
            Text(name),
            Raw(
                "\" data-rx-bps=\"\" data-tx-bps=\"\">\n<tr class=\"owner-head\"><th colspan=\"5\"><span class=\"kind\">",
            ),
            Text(kind),
            Raw("</span> <span class=\"name\">"),
            Text(name),
            Raw("</span></th><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td></tr>\n"),
        ],
    );
}

fn interface_row(out: &mut String, it: &Entry<'_>) {
    let instance: &str = &it.instance;
    // The owner label when it says more than the row and its group already do.
    let detail = !instance.is_empty() && instance != it.interface && instance != it.owner.name;
    let vlan = it.vlan.map(|v| v.to_string()).unwrap_or_default();
    push_all(
        out,
        &[
            Raw("<tr class=\"iface\" data-interface=\""),
            Text(&it.interface),
            Raw("\" data-rx-bps=\"\" data-tx-bps=\"\"><td>"),
            Text(&it.interface),
            Raw(if detail { "<small>" } else { "" }),
            Text(if detail { instance } else { "" }),
            Raw(if detail { "</small>" } else { "" }),
            Raw("</td><td>"),
            Text(it.instance_type),
            Raw("</td><td>"),
            Text(&it.bridge),
            Raw("</td><td>"),
            Text(&vlan),
            Raw("</td><td data-state=\""),
            Text(it.state),
            Raw("\">"),
            Text(it.state),
            Raw("</td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td></tr>\n"),
        ],
    );
}

/// A workload: its own sockets' traffic, with its counters so far (the
/// script adds rates, and keeps the counters current).
fn workload_row(out: &mut String, w: &WorkloadEntry<'_>) {
    let c = w.counters.0;
    let totals = format!(
        "sockets: rx {} \u{b7} tx {}",
        format_bytes(c.rx_bytes),
        format_bytes(c.tx_bytes)
    );
    push_all(
        out,
        &[
            Raw("<tr class=\"wl\" data-workload=\""),
            Text(w.instance),
            Raw("\" data-type=\""),
            Text(w.instance_type),
            Raw("\" data-rx-bps=\"\" data-tx-bps=\"\"><td>"),
            Text(w.instance),
            Raw("<small class=\"totals\">"),
            Text(&totals),
            Raw("</small></td><td>"),
            Text(w.instance_type),
            Raw(
                "</td><td></td><td></td><td></td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td></tr>\n",
            ),
        ],
    );
}

/// What a peer row says of its side: `server`, this host serves the peer.
fn side_text(side: &str) -> &'static str {
    match side {
        "server" => "served here",
        "client" => "served there",
        _ => "",
    }
}

/// The names of the document's peers, by peer.
type Names<'d> = HashMap<&'d str, &'d NameEntry<'d>>;

/// What a row of `protocol` says of its peer's sessions: SMB's users and
/// shares, iSCSI's initiators; nothing for another protocol (an NFS
/// client's name is its `peer_name`). As the script writes it.
fn about(protocol: &str, name: Option<&NameEntry<'_>>) -> String {
    let Some(n) = name else {
        return String::new();
    };
    let parts: &[(&str, &str)] = match protocol {
        "smb" => &[("user", n.user), ("share", n.share)],
        "iscsi" => &[("initiator", n.initiator)],
        _ => &[],
    };
    let mut out = String::new();
    for (label, value) in parts.iter().filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push_str(" \u{b7} ");
        }
        out.push_str(label);
        out.push_str(if value.contains(',') { "s " } else { " " });
        out.push_str(&value.replace(',', ", "));
    }
    out
}

/// The start of a peer's cell: its name with its address after it, or the
/// address alone; then what the row's protocol knows of it, if anything.
fn who(out: &mut String, peer: &str, protocol: &str, names: &Names<'_>) {
    let name = names.get(peer).copied();
    match name.map(|n| n.peer_name).filter(|n| !n.is_empty()) {
        Some(shown) => push_all(
            out,
            &[
                Raw("<span class=\"who\">"),
                Text(shown),
                Raw("</span> <span class=\"addr\">"),
                Text(peer),
                Raw("</span>"),
            ],
        ),
        None => push_html(out, peer),
    }
    let about = about(protocol, name);
    if !about.is_empty() {
        push_all(
            out,
            &[
                Raw("<small class=\"about\">"),
                Text(&about),
                Raw("</small>"),
            ],
        );
    }
}

/// A workload's peers (in the API's order: most bytes first, `other`
/// last): the first [`PEER_ROWS`] by name, then one `other` row with the
/// rest, if they counted anything.
fn peer_rows(out: &mut String, w: &WorkloadEntry<'_>, list: &[&PeerEntry<'_>], names: &Names<'_>) {
    let (mut rest_rx, mut rest_tx) = (0u64, 0u64);
    let mut shown = 0;
    for p in list {
        if p.peer != "other" && shown < PEER_ROWS {
            shown += 1;
            let about = side_text(p.side);
            peer_row(
                out,
                w,
                [p.peer, p.protocol, p.side, about],
                (p.rx_bytes, p.tx_bytes),
                names,
            );
        } else {
            rest_rx = rest_rx.saturating_add(p.rx_bytes);
            rest_tx = rest_tx.saturating_add(p.tx_bytes);
        }
    }
    if rest_rx > 0 || rest_tx > 0 {
        let about = "the rest of its peers";
        peer_row(out, w, ["other", "", "", about], (rest_rx, rest_tx), names);
    }
}

/// One peer row: `[peer, protocol, side, what the row says of its side]`
/// and its bytes so far.
fn peer_row(
    out: &mut String,
    w: &WorkloadEntry<'_>,
    text: [&str; 4],
    (rx, tx): (u64, u64),
    names: &Names<'_>,
) {
    let [peer, protocol, side, about] = text;
    let mut totals = String::new();
    if !about.is_empty() {
        totals.push_str(about);
        totals.push_str(" \u{b7} ");
    }
    totals.push_str(&format!(
        "rx {} \u{b7} tx {}",
        format_bytes(rx),
        format_bytes(tx)
    ));
    push_all(
        out,
        &[
            Raw("<tr class=\"peer\" data-workload=\""),
            Text(w.instance),
            Raw("\" data-type=\""),
            Text(w.instance_type),
            Raw("\" data-peer=\""),
            Text(peer),
            Raw("\" data-protocol=\""),
            Text(protocol),
            Raw("\" data-side=\""),
            Text(side),
            Raw("\" data-rx-bps=\"\" data-tx-bps=\"\"><td>"),
        ],
    );
    who(out, peer, protocol, names);
    push_all(
        out,
        &[
            Raw("<small class=\"totals\">"),
            Text(&totals),
            Raw("</small></td><td>"),
            Text(protocol),
            Raw(
                "</td><td></td><td></td><td></td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td></tr>\n",
            ),
        ],
    );
}

/// The Clients section: who uses this host's services, the `server` side's
/// peers by peer and protocol across workloads, most bytes first (`other`
/// last), at most [`CLIENT_ROWS`], each by its name where it has one;
/// hidden where there are none (the script shows it once there are).
fn clients(out: &mut String, peers: &[PeerEntry<'_>], names: &Names<'_>) {
    struct Client<'p> {
        peer: &'p str,
        protocol: &'p str,
        rx: u64,
        tx: u64,
        via: Vec<&'p str>,
    }
    let mut by: HashMap<(&str, &str), Client<'_>> = HashMap::new();
    for p in peers.iter().filter(|p| p.side == "server") {
        let c = by.entry((p.peer, p.protocol)).or_insert_with(|| Client {
            peer: p.peer,
            protocol: p.protocol,
            rx: 0,
            tx: 0,
            via: Vec::new(),
        });
        c.rx = c.rx.saturating_add(p.rx_bytes);
        c.tx = c.tx.saturating_add(p.tx_bytes);
        if !c.via.contains(&&*p.instance) {
            c.via.push(&p.instance);
        }
    }
    // An `other` that counted nothing is no one.
    let mut rows: Vec<Client<'_>> = by
        .into_values()
        .filter(|c| c.peer != "other" || c.rx > 0 || c.tx > 0)
        .collect();
    rows.sort_by(|a, b| {
        (a.peer == "other")
            .cmp(&(b.peer == "other"))
            .then_with(|| (b.rx.saturating_add(b.tx)).cmp(&a.rx.saturating_add(a.tx)))
            .then_with(|| (a.peer, a.protocol).cmp(&(b.peer, b.protocol)))
    });
    rows.truncate(CLIENT_ROWS);
    push_all(
        out,
        &[Raw(if rows.is_empty() {
            "<section id=\"clients\" aria-labelledby=\"clients-h\" hidden>\n"
        } else {
            "<section id=\"clients\" aria-labelledby=\"clients-h\">\n"
        })],
    );
    out.push_str(
        "<h2 id=\"clients-h\">Clients</h2>\n<table>\n<thead><tr><th class=\"c-if\">Client</th><th class=\"c-ty\">Protocol</th><th class=\"c-via\">Served by</th><th class=\"rate c-rx\">rx</th><th class=\"rate c-tx\">tx</th></tr></thead>\n<tbody>\n",
    );
    for c in &rows {
        let totals = format!("rx {} \u{b7} tx {}", format_bytes(c.rx), format_bytes(c.tx));
        let via = c.via.join(", ");
        push_all(
            out,
            &[
                Raw("<tr class=\"client\" data-peer=\""),
                Text(c.peer),
                Raw("\" data-protocol=\""),
                Text(c.protocol),
                Raw("\" data-rx-bps=\"\" data-tx-bps=\"\"><td>"),
            ],
        );
        who(out, c.peer, c.protocol, names);
        push_all(
            out,
            &[
                Raw("<small class=\"totals\">"),
                Text(&totals),
                Raw("</small></td><td>"),
                Text(c.protocol),
                Raw("</td><td>"),
                Text(&via),
                Raw("</td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td></tr>\n"),
            ],
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// Bytes in decimal units to 3 significant digits, as the script writes
/// them: "512 B", "1.23 kB", "45.6 MB", "789 GB".
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while unit < UNITS.len() - 1 && value >= 999.5 {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value >= 99.95 => format!("{value:.0} {}", UNITS[unit]),
        _ if value >= 9.995 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.2} {}", UNITS[unit]),
    }
}

/// A link speed in bytes/s as bits/s in the largest unit that keeps it at 1
/// or more, to at most two decimals: "2.5 Gb/s", "10 Gb/s", "100 Mb/s".
pub fn format_speed(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["b/s", "kb/s", "Mb/s", "Gb/s"];
    let mut value = bytes as f64 * 8.0;
    let mut unit = 0;
    while unit < UNITS.len() - 1 && value >= 1000.0 {
        value /= 1000.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::composer::{Described, Interface};
    use crate::expose::netdev::Counters;
    use crate::model::labels::Kind;
    use crate::model::owner::Owner;
    use crate::resolve::sources::names::PeerNames;

    fn interface(name: &str, claimant: &str, kind: Kind, owner: &Arc<Owner>) -> Interface {
        let described = Described {
            name: name.as_bytes(),
            kind,
            owner: Arc::clone(owner),
            claimant: (!claimant.is_empty()).then_some(claimant),
            bridge: b"br0",
            bond: b"",
            state: "up",
            vlan: Some(20),
            speed_bytes: Some(125_000_000),
            mtu: Some(1500),
        };
        Interface::new(described, "instance")
    }

    #[test]
    fn the_metrics_link_is_relative() {
        assert_eq!(relative("/metrics"), "./metrics");
        assert_eq!(relative("/x/net"), "./x/net");
        assert_eq!(relative("/a:b/c"), "./a:b/c");
        assert_eq!(relative("//evil.example/m"), ".//evil.example/m");
    }

    #[test]
    fn speeds_read_as_link_speeds() {
        assert_eq!(format_speed(312_500_000), "2.5 Gb/s");
        assert_eq!(format_speed(1_250_000_000), "10 Gb/s");
        assert_eq!(format_speed(125_000_000), "1 Gb/s");
        assert_eq!(format_speed(12_500_000), "100 Mb/s");
        assert_eq!(format_speed(125), "1 kb/s");
        assert_eq!(format_speed(100), "800 b/s");
        assert_eq!(format_speed(3_125_000_000_000), "25000 Gb/s");
    }

    #[test]
    fn the_template_has_its_slots_and_unknown_braces_stay() {
        let mut seen = Vec::new();
        let mut out = String::new();
        fill(&mut out, PAGE, |key, _| {
            seen.push(key.to_owned());
            true
        });
        assert_eq!(
            seen,
            [
                "metrics", "nics", "named", "clients", "owners", "loopback", "version"
            ]
        );
        let mut out = String::new();
        fill(&mut out, "a {x} {b} {", |key, out| {
            (key == "x").then(|| out.push('X')).is_some()
        });
        assert_eq!(out, "a X {b} {");
    }

    #[test]
    fn the_page_escapes_every_name_and_groups_by_owner() {
        let hostile = r#"<img src=x onerror="alert('1')">&"#;
        let nic = Arc::new(Owner::new(OwnerKind::Nic, "enp3s0", ""));
        let app = Arc::new(Owner::new(OwnerKind::App, hostile, hostile));
        let interfaces = [
            interface("enp3s0", "", Kind::Physical, &nic),
            interface("veth1", "web-1", Kind::Docker, &app),
            interface("veth2", "db-1", Kind::Docker, &app),
        ];
        let counters = Counters {
            values: [1, 2, 3, 4, 5, 6, 7, 8],
        };
        let doc = interfaces_doc(&interfaces, &counters);
        let html = page(&doc, "/prom/metrics");
        let escaped = "&lt;img src=x onerror=&quot;alert(&#x27;1&#x27;)&quot;&gt;&amp;";
        assert!(!html.contains("<img"), "{html}");
        assert_eq!(
            html.matches(escaped).count(),
            2,
            "data-name and the shown name, once per owner"
        );
        assert_eq!(html.matches("<tbody class=\"owner\"").count(), 2);
        assert!(html.contains(r#"<a href="./prom/metrics">metrics</a>"#));
        assert!(html.contains(
            r#"<tr class="nic" data-interface="enp3s0" data-rx-bps="" data-tx-bps="" data-util=""><td>enp3s0</td><td data-state="up">up</td><td>1 Gb/s</td><td class="rx-rate"></td><td class="tx-rate"></td><td class="util"></td></tr>"#
        ));
        assert!(html.contains(
            r#"<tr class="iface" data-interface="veth1" data-rx-bps="" data-tx-bps=""><td>veth1<small>web-1</small></td><td>docker</td><td>br0</td><td>20</td><td data-state="up">up</td><td class="rx-rate"></td><td class="tx-rate"></td></tr>"#
        ));
        // The app comes before the NIC; within it, interfaces by name.
        let app = html.find("data-kind=\"app\"").unwrap();
        assert!(app < html.find("data-kind=\"nic\"").unwrap());
        assert!(
            html.find("data-interface=\"veth1\"").unwrap()
                < html.find("data-interface=\"veth2\"").unwrap()
        );

        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        assert_eq!(json["interfaces"][1]["owner"]["name"], hostile);
        assert_eq!(json["interfaces"][1]["owner"]["kind"], "app");
        assert_eq!(json["interfaces"][1]["app"], hostile);
        assert_eq!(json["interfaces"][1]["instance"], "web-1");
        assert_eq!(json["interfaces"][1]["tx_dropped"], 8);
        assert_eq!(json["interfaces"][1]["vlan"], 20);
        assert!(json["interfaces"][1].get("source").is_none());
        assert!(json.get("workloads").is_none(), "not counted here");
        assert!(html.contains(r#"data-named="off""#));
    }

    /// Loopback is apart, below the owners: `lo` is no row of its owner,
    /// and an owner with nothing else is no owner on the page.
    #[test]
    fn loopback_is_apart_from_the_owners() {
        let nic = Arc::new(Owner::new(OwnerKind::Nic, "enp3s0", ""));
        let host = Arc::new(Owner::new(OwnerKind::Host, "host", ""));
        let counters = Counters { values: [9; 8] };
        let doc = |interfaces: &[Interface]| -> String {
            let doc = interfaces_doc(interfaces, &counters);
            page(&doc, "/metrics")
        };
        let lo_only = doc(&[
            interface("lo", "", Kind::Loopback, &host),
            interface("enp3s0", "", Kind::Physical, &nic),
        ]);
        assert!(!lo_only.contains(r#"data-kind="host""#), "{lo_only}");
        assert!(!lo_only.contains(r#"<tr class="iface" data-interface="lo""#));
        let owners = lo_only.find(r#"<table id="owners">"#).unwrap();
        let section = lo_only
            .find(r#"<section id="loopback" aria-labelledby="loopback-h">"#)
            .unwrap_or_else(|| panic!("{lo_only}"));
        assert!(owners < section);
        assert!(lo_only[section..].contains(
            r#"<tr class="loop" data-interface="lo" data-rx-bps="" data-tx-bps=""><td>lo</td><td>host</td><td class="rx-rate"></td>"#
        ));
        // The host with more than loopback stays an owner, without `lo`.
        let both = doc(&[
            interface("lo", "", Kind::Loopback, &host),
            interface("vlan5", "", Kind::Vlan, &host),
        ]);
        assert!(both.contains(r#"<tbody class="owner" data-kind="host" data-name="host""#));
        assert!(both.contains(r#"<tr class="iface" data-interface="vlan5""#));
        assert!(!both.contains(r#"<tr class="iface" data-interface="lo""#));
        assert_eq!(both.matches(r#"data-interface="lo""#).count(), 1);
        // No loopback: the section is there for the script, hidden.
        let none = doc(&[interface("enp3s0", "", Kind::Physical, &nic)]);
        assert!(none.contains(r#"<section id="loopback" aria-labelledby="loopback-h" hidden>"#));
        // Connecting until the script has data; without it, the noscript line.
        assert!(none.contains(
            r#"<noscript><span>Snapshot: live rates need JavaScript.</span></noscript><span id="status">Connecting&#x2026;</span>"#
        ));
    }

    #[test]
    fn bytes_read_as_the_script_writes_them() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1000), "1.00 kB");
        assert_eq!(format_bytes(1234), "1.23 kB");
        assert_eq!(format_bytes(45_600_000), "45.6 MB");
        assert_eq!(format_bytes(789_000_000_000), "789 GB");
        assert_eq!(format_bytes(999_600), "1.00 MB");
    }

    #[test]
    fn workloads_join_their_owners_or_stand_alone() {
        use crate::workloads::Workload;
        use crate::workloads::accounting::Counts;

        let nic = Arc::new(Owner::new(OwnerKind::Nic, "enp3s0", ""));
        let app = Arc::new(Owner::new(OwnerKind::App, "immich", "immich"));
        let interfaces = [
            interface("enp3s0", "", Kind::Physical, &nic),
            interface("veth1", "immich-server-1", Kind::Docker, &app),
        ];
        let workload = |kind: &'static str, of: OwnerKind, name: &str, app: &str| Workload {
            owner: Owner::new(of, name, app),
            kind,
            rendered: "".into(),
        };
        let read = [
            (
                workload("docker", OwnerKind::App, "immich-server-1", "immich"),
                Counts {
                    rx_bytes: 1234,
                    tx_bytes: 45_600_000,
                    rx_packets: 3,
                    tx_packets: 4,
                },
            ),
            (
                workload("service", OwnerKind::Service, "<smbd>", ""),
                Counts {
                    rx_bytes: 7,
                    tx_bytes: 8,
                    rx_packets: 1,
                    tx_packets: 2,
                },
            ),
        ];
        let counters = Counters { values: [0; 8] };
        let mut doc = interfaces_doc(&interfaces, &counters);
        doc.workloads = Some(read.iter().map(|(w, c)| WorkloadEntry::new(w, c)).collect());
        let html = page(&doc, "/metrics");
        // The app's container is a row of the app's group, not an owner of its own.
        assert_eq!(html.matches("<tbody class=\"owner\"").count(), 3, "{html}");
        let app = html.find(r#"data-kind="app" data-name="immich""#).unwrap();
        let row = html
            .find(r#"<tr class="wl" data-workload="immich-server-1" data-type="docker""#)
            .unwrap();
        assert!(app < row && row < html.find("data-kind=\"service\"").unwrap());
        assert!(html.contains(
            r#"<td>immich-server-1<small class="totals">sockets: rx 1.23 kB · tx 45.6 MB</small></td><td>docker</td>"#
        ));
        assert!(
            html.contains(r#"<tbody class="owner" data-kind="service" data-name="&lt;smbd&gt;""#)
        );
        assert!(html.contains(r#"data-named="js""#));

        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        assert_eq!(
            json["workloads"][0],
            serde_json::json!({
                "instance": "immich-server-1", "instance_type": "docker", "app": "immich",
                "owner": {"kind": "app", "name": "immich"},
                "rx_bytes": 1234, "tx_bytes": 45_600_000, "rx_packets": 3, "tx_packets": 4
            })
        );
        assert_eq!(json["workloads"][1]["owner"]["kind"], "service");
        assert_eq!(json["workloads"][1]["instance"], "<smbd>");
    }

    /// A document of `read`'s workloads and `peers`' peers, no interfaces,
    /// no names.
    /// A document of `interfaces`, each with `counters`, and nothing else.
    fn interfaces_doc<'a>(interfaces: &'a [Interface], counters: &'a Counters) -> Document<'a> {
        Document {
            version: "0.1.0",
            time: 1.5,
            interfaces: interfaces.iter().map(|i| Entry::new(i, counters)).collect(),
            workloads: None,
            peers_time: None,
            peers: None,
            peers_omitted: None,
            names: None,
        }
    }

    fn doc_of<'a>(
        read: &'a [(
            crate::workloads::Workload,
            crate::workloads::accounting::Counts,
        )],
        peers: Option<&'a crate::workloads::peers::PeerTable>,
    ) -> Document<'a> {
        static NONE: PeerNames = PeerNames { rows: Vec::new() };
        doc_named(read, peers, &NONE)
    }

    /// [`doc_of`], with `names` for the peers.
    pub(super) fn doc_named<'a>(
        read: &'a [(
            crate::workloads::Workload,
            crate::workloads::accounting::Counts,
        )],
        peers: Option<&'a crate::workloads::peers::PeerTable>,
        names: &'a PeerNames,
    ) -> Document<'a> {
        let mut doc = Document {
            version: "0.1.0",
            time: 1.5,
            interfaces: Vec::new(),
            workloads: Some(read.iter().map(|(w, c)| WorkloadEntry::new(w, c)).collect()),
            peers_time: None,
            peers: None,
            peers_omitted: None,
            names: None,
        };
        doc.set_peers(peers, Some(read));
        doc.set_names(names);
        doc
    }

    #[test]
    fn peers_show_under_their_workload_and_clients_by_peer() {
        use std::time::{Duration, SystemTime};

        use crate::workloads::Workload;
        use crate::workloads::accounting::Counts;
        use crate::workloads::peers::{PeerRow, PeerTable};

        let render = |kind, name, app| crate::workloads::render("instance", kind, name, app);
        let smbd = Workload {
            owner: Owner::new(OwnerKind::Service, "smbd", ""),
            kind: "service",
            rendered: render("service", "smbd", ""),
        };
        let nfs = Workload {
            owner: Owner::new(OwnerKind::Service, "nfs", ""),
            kind: "service",
            rendered: render("service", "nfs", ""),
        };
        let read = [
            (smbd.clone(), Counts::default()),
            (nfs.clone(), Counts::default()),
        ];
        let bytes = |rx, tx| Counts {
            rx_bytes: rx,
            tx_bytes: tx,
            ..Counts::default()
        };
        let row = |w: &str, peer: &str, protocol: &str, side: &'static str, counts| PeerRow {
            rendered: format!("{w},peer=\"{peer}\",protocol=\"{protocol}\",side=\"{side}\"").into(),
            workload: w.into(),
            peer: peer.into(),
            protocol: protocol.into(),
            side,
            counts,
        };
        // Gone from the read: its labels come from the row, unescaped.
        let gone = render("docker", "we\"b\\1", "a\nb");
        let table = PeerTable {
            rows: vec![
                row(
                    &nfs.rendered,
                    "10.0.0.23",
                    "nfs",
                    "server",
                    bytes(5000, 9000),
                ),
                row(&nfs.rendered, "other", "nfs", "server", bytes(0, 0)),
                row(
                    &smbd.rendered,
                    "10.0.0.23",
                    "smb",
                    "server",
                    bytes(100, 200),
                ),
                row(
                    &smbd.rendered,
                    "10.0.0.9",
                    "smb",
                    "server",
                    bytes(7000, 8000),
                ),
                row(&smbd.rendered, "<b>", "smb", "server", bytes(1, 1)),
                row(&smbd.rendered, "other", "smb", "server", bytes(30, 40)),
                row(
                    &smbd.rendered,
                    "192.168.1.1",
                    "dns",
                    "client",
                    bytes(50, 60),
                ),
                row(&gone, "10.0.0.23", "https", "client", bytes(1, 2)),
            ],
            new_keys: 0,
            read_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)),
        };
        let doc = doc_of(&read, Some(&table));
        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        assert_eq!(json["peers_time"], 1_700_000_000.25);
        assert_eq!(json["peers_omitted"], 0);
        let peers = json["peers"].as_array().unwrap();
        let order: Vec<(&str, &str)> = peers
            .iter()
            .map(|p| (p["instance"].as_str().unwrap(), p["peer"].as_str().unwrap()))
            .collect();
        // By workload (as /metrics), then bytes, `other` last.
        assert_eq!(
            order,
            [
                ("we\"b\\1", "10.0.0.23"),
                ("nfs", "10.0.0.23"),
                ("nfs", "other"),
                ("smbd", "10.0.0.9"),
                ("smbd", "10.0.0.23"),
                ("smbd", "192.168.1.1"),
                ("smbd", "<b>"),
                ("smbd", "other"),
            ]
        );
        assert_eq!(
            peers[3],
            serde_json::json!({
                "instance": "smbd", "instance_type": "service", "app": "",
                "peer": "10.0.0.9", "protocol": "smb", "side": "server",
                "rx_bytes": 7000, "tx_bytes": 8000
            })
        );
        assert_eq!(peers[0]["instance_type"], "docker");
        assert_eq!(peers[0]["app"], "a\nb");

        let html = page(&doc, "/metrics");
        assert!(!html.contains("<b>"), "escaped");
        // The workload's peers right under its row, most bytes first.
        let wl = html.find(r#"<tr class="wl" data-workload="smbd""#).unwrap();
        let first = html
            .find(r#"<tr class="peer" data-workload="smbd" data-type="service" data-peer="10.0.0.9" data-protocol="smb" data-side="server" data-rx-bps="" data-tx-bps=""><td>10.0.0.9<small class="totals">served here · rx 7.00 kB · tx 8.00 kB</small></td><td>smb</td>"#)
            .unwrap_or_else(|| panic!("{html}"));
        let other = html
            .find(r#"<tr class="peer" data-workload="smbd" data-type="service" data-peer="other" data-protocol="" data-side="""#)
            .unwrap();
        assert!(wl < first && first < other, "{html}");
        assert!(html[other..].starts_with(
            r#"<tr class="peer" data-workload="smbd" data-type="service" data-peer="other" data-protocol="" data-side="" data-rx-bps="" data-tx-bps=""><td>other<small class="totals">the rest of its peers · rx 30 B · tx 40 B</small>"#
        ));
        assert!(html.contains(r#"data-peer="192.168.1.1" data-protocol="dns" data-side="client""#));
        // nfs's `other` counted nothing: no row.
        assert_eq!(
            html.matches(r#"data-type="service" data-peer="other""#)
                .count(),
            1,
            "{html}"
        );

        // Clients: the server side by peer and protocol, most bytes first.
        let clients = &html[html.find(r#"<section id="clients""#).unwrap()..];
        assert!(clients.starts_with(r#"<section id="clients" aria-labelledby="clients-h">"#));
        let clients = &clients[..clients.find("</section>").unwrap()];
        let rows: Vec<&str> = clients
            .match_indices(r#"<tr class="client" data-peer=""#)
            .map(|(i, _)| &clients[i + 30..][..clients[i + 30..].find('"').unwrap()])
            .collect();
        assert_eq!(
            rows,
            ["10.0.0.9", "10.0.0.23", "10.0.0.23", "&lt;b&gt;", "other"],
            "by peer and protocol: {clients}"
        );
        assert_eq!(
            clients.matches("<td>other<").count(),
            1,
            "nfs's empty other is no one"
        );
        assert!(clients.contains(
            r#"<td>10.0.0.23<small class="totals">rx 5.00 kB · tx 9.00 kB</small></td><td>nfs</td><td>nfs</td>"#
        ));
        assert!(
            !clients.contains("192.168.1.1"),
            "a client side is no client"
        );

        // No peers counted: nothing extra.
        let none = doc_of(&read, None);
        let json: serde_json::Value = serde_json::from_slice(&none.to_json()).unwrap();
        assert!(json.get("peers").is_none() && json.get("peers_time").is_none());
        let html = page(&none, "/metrics");
        assert!(!html.contains("class=\"peer\""));
        assert!(html.contains(r#"<section id="clients" aria-labelledby="clients-h" hidden>"#));
    }

    #[test]
    fn the_peers_list_is_bounded_by_bytes() {
        use crate::workloads::accounting::Counts;
        use crate::workloads::peers::{PeerRow, PeerTable};

        let n = super::super::api::MAX_PEERS + 5;
        let rows = (0..n)
            .map(|i| PeerRow {
                rendered: format!("w,peer=\"{i:05}\"").into(),
                workload: "instance_type=\"service\",instance=\"w\",app=\"\"".into(),
                peer: format!("{i:05}").into(),
                protocol: "".into(),
                side: "",
                counts: Counts {
                    rx_bytes: i as u64,
                    ..Counts::default()
                },
            })
            .collect();
        let table = PeerTable {
            rows,
            new_keys: 0,
            read_at: None,
        };
        let doc = doc_of(&[], Some(&table));
        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        assert_eq!(json["peers_omitted"], 5);
        assert_eq!(json["peers_time"], serde_json::Value::Null);
        let peers = json["peers"].as_array().unwrap();
        assert_eq!(peers.len(), n - 5);
        assert_eq!(peers[0]["rx_bytes"], n as u64 - 1);
        assert_eq!(peers[n - 6]["rx_bytes"], 5, "the 5 smallest left out");
        assert_eq!(peers[0]["instance"], "w");
    }
}

#[cfg(test)]
mod names_tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::model::owner::{Owner, OwnerKind};
    use crate::resolve::sources::names::{Known, PeerNames};
    use crate::workloads::Workload;
    use crate::workloads::accounting::Counts;
    use crate::workloads::peers::{PeerRow, PeerTable};

    fn known(
        name: &str,
        user: &[&str],
        share: &[&str],
        initiator: &str,
        source: &'static str,
    ) -> Known {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        Known {
            peer_name: set(&[name][..(!name.is_empty()) as usize]),
            user: set(user),
            share: set(share),
            initiator: set(&[initiator][..(!initiator.is_empty()) as usize]),
            source: BTreeSet::from([source]),
            ..Known::default()
        }
    }

    fn row(w: &Workload, peer: &str, protocol: &str, side: &'static str, rx: u64) -> PeerRow {
        PeerRow {
            rendered: format!("{},peer=\"{peer}\",protocol=\"{protocol}\"", w.rendered).into(),
            workload: (*w.rendered).into(),
            peer: peer.into(),
            protocol: protocol.into(),
            side,
            counts: Counts {
                rx_bytes: rx,
                tx_bytes: rx,
                ..Counts::default()
            },
        }
    }

    /// The names of the listed peers and of one a server knows idle, in
    /// the API by peer with every field; on the page each peer by its
    /// name with its address after it, SMB's users and shares and iSCSI's
    /// initiator under it; names from outside escaped.
    #[test]
    fn peers_show_by_their_names_escaped() {
        let w = Workload {
            owner: Owner::new(OwnerKind::Service, "smbd", ""),
            kind: "service",
            rendered: crate::workloads::render("instance", "service", "smbd", ""),
        };
        let read = [(w.clone(), Counts::default())];
        let table = PeerTable {
            rows: vec![
                row(&w, "10.0.0.9", "smb", "server", 9000),
                row(&w, "10.0.0.23", "iscsi", "server", 5000),
                row(&w, "10.0.0.23", "ssh", "server", 10),
                row(&w, "192.168.1.1", "dns", "client", 50),
            ],
            new_keys: 0,
            read_at: None,
        };
        let hostile = "<script>alert(\"x\")</script>\n'q'";
        let names = PeerNames::from_known(BTreeMap::from([
            (
                "10.0.0.9".to_owned(),
                known(hostile, &["alice", "b<o>b"], &["media"], "", "smbstatus"),
            ),
            (
                "10.0.0.23".to_owned(),
                known("", &[], &[], "iqn.2005-10.org:esx1", "scst"),
            ),
            (
                "10.0.0.50".to_owned(),
                known("idle", &["carol"], &[], "", "smbstatus"),
            ),
        ]));
        let doc = super::tests::doc_named(&read, Some(&table), &names);
        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        assert_eq!(
            json["names"],
            serde_json::json!([
                {"peer": "10.0.0.23", "peer_name": "", "user": "", "machine": "", "share": "",
                 "initiator": "iqn.2005-10.org:esx1", "target": "", "source": "scst"},
                {"peer": "10.0.0.50", "peer_name": "idle", "user": "carol", "machine": "",
                 "share": "", "initiator": "", "target": "", "source": "smbstatus"},
                {"peer": "10.0.0.9", "peer_name": hostile, "user": "alice,b<o>b", "machine": "",
                 "share": "media", "initiator": "", "target": "", "source": "smbstatus"},
            ])
        );

        let html = page(&doc, "/metrics");
        assert!(
            !html.contains("<script>alert") && !html.contains("<o>"),
            "{html}"
        );
        let name = "<span class=\"who\">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;\n&#x27;q&#x27;</span> <span class=\"addr\">10.0.0.9</span>";
        let smb = format!(
            "{name}<small class=\"about\">users alice, b&lt;o&gt;b \u{b7} share media</small><small class=\"totals\">"
        );
        // Under the workload and among the clients.
        assert_eq!(html.matches(&smb).count(), 2, "{html}");
        // No name: the address alone; the initiator on the iSCSI row only.
        let iscsi = "<td>10.0.0.23<small class=\"about\">initiator iqn.2005-10.org:esx1</small><small class=\"totals\">";
        assert_eq!(html.matches(iscsi).count(), 2, "{html}");
        assert_eq!(
            html.matches("<td>10.0.0.23<small class=\"totals\">")
                .count(),
            2,
            "ssh: {html}"
        );
        assert!(
            html.contains("<td>192.168.1.1<small class=\"totals\">"),
            "{html}"
        );
        assert!(!html.contains("carol"), "an idle peer has no row");

        // No peers counted: no names either.
        let none = super::tests::doc_named(&read, None, &names);
        let json: serde_json::Value = serde_json::from_slice(&none.to_json()).unwrap();
        assert!(json.get("names").is_none(), "{json}");
    }

    /// At most MAX_PEERS names, those of the listed peers first: past the
    /// bound, the names of peers left out of `peers` (and of idle ones)
    /// are left out, even where they sort first.
    #[test]
    fn the_names_are_bounded_listed_peers_first() {
        let max = super::super::api::MAX_PEERS;
        let w = Workload {
            owner: Owner::new(OwnerKind::Service, "w", ""),
            kind: "service",
            rendered: crate::workloads::render("instance", "service", "w", ""),
        };
        let n = max + 5;
        let table = PeerTable {
            rows: (0..n)
                .map(|i| row(&w, &format!("{i:05}"), "", "", i as u64))
                .collect(),
            new_keys: 0,
            read_at: None,
        };
        let labels = (0..n)
            .map(|i| format!("{i:05}"))
            .chain((0..10).map(|i| format!("a{i}")));
        let names = PeerNames::from_known(
            labels
                .map(|l| (l.clone(), known(&format!("n{l}"), &[], &[], "", "config")))
                .collect(),
        );
        let read = [(w.clone(), Counts::default())];
        let doc = super::tests::doc_named(&read, Some(&table), &names);
        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        assert_eq!(json["peers_omitted"], 5);
        let list = json["names"].as_array().unwrap();
        assert_eq!(list.len(), max);
        assert_eq!(
            list[0]["peer"], "00005",
            "the 5 peers left out have no names"
        );
        assert_eq!(list[max - 1]["peer"], format!("{:05}", n - 1));
        assert_eq!(list[0]["peer_name"], "n00005");

        // Room left: the others' names too, by peer.
        let small = PeerTable {
            rows: vec![row(&w, "00003", "", "", 1)],
            new_keys: 0,
            read_at: None,
        };
        let doc = super::tests::doc_named(&read, Some(&small), &names);
        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        let list = json["names"].as_array().unwrap();
        assert_eq!(list.len(), max);
        assert!(list.iter().any(|n| n["peer"] == "00003"));
        assert_eq!(list[0]["peer"], "00000");
    }
}
