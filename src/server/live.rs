//! The live view: `/` lists every interface under its owner (an app, a
//! container, a VM, a system container, a Docker network, the host's NICs and
//! bridges), rendered on the server so it reads without JavaScript; the
//! embedded `live.js` then polls `/api/v1/interfaces` every 2 s and turns two
//! reads into rates in the browser, so the exporter keeps no state per
//! client and does nothing while nobody looks.
//!
//! Both are built from one join of net/dev with the label table, as a scrape
//! is. Every name comes from outside (container names, Compose labels,
//! interface names): the page escapes each one, in text and attributes alike,
//! and its Content-Security-Policy allows no inline script.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Deref;
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::compose::LabelTable;
use crate::labels::Rendered;
use crate::netdev::Counters;
use crate::scrape::{FAMILIES, Scrape, Value};

pub const SCRIPT: &str = include_str!("live/live.js");
pub const STYLE: &str = include_str!("live/live.css");
const PAGE: &str = include_str!("live/page.html");

/// The page, its script and style may only load from this origin and never
/// run inline code: a name that slipped through as markup would still not run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Who an interface belongs to, as the page groups it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OwnerKind {
    App,
    Container,
    Vm,
    SystemContainer,
    Network,
    Bridge,
    Nic,
    Host,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::App => "app",
            OwnerKind::Container => "container",
            OwnerKind::Vm => "vm",
            OwnerKind::SystemContainer => "system container",
            OwnerKind::Network => "network",
            OwnerKind::Bridge => "bridge",
            OwnerKind::Nic => "nic",
            OwnerKind::Host => "host",
        }
    }
}

/// The owner of an interface from its labels: a Docker interface belongs to
/// its app if it has one, else to its container; a bridge to its Docker
/// network if it is one. Interfaces no resolver claimed (the owner label is
/// then the interface's own name) and the host's own (loopback, VLANs,
/// tunnels) belong to the host.
pub fn owner<'a>(
    interface: &Cow<'a, str>,
    instance: &Cow<'a, str>,
    instance_type: &str,
    app: &Cow<'a, str>,
) -> (OwnerKind, Cow<'a, str>) {
    let claimed = instance != interface && !instance.is_empty();
    match instance_type {
        "docker" if !app.is_empty() => (OwnerKind::App, app.clone()),
        "docker" if claimed => (OwnerKind::Container, instance.clone()),
        "vm" | "macvtap" if claimed => (OwnerKind::Vm, instance.clone()),
        "incus" | "lxc" if claimed => (OwnerKind::SystemContainer, instance.clone()),
        "bridge" if claimed => (OwnerKind::Network, instance.clone()),
        "bridge" => (OwnerKind::Bridge, interface.clone()),
        "physical" => (OwnerKind::Nic, interface.clone()),
        _ => (OwnerKind::Host, Cow::Borrowed("host")),
    }
}

#[derive(Serialize)]
pub struct Owner<'a> {
    pub kind: &'static str,
    pub name: Cow<'a, str>,
}

/// One interface as `/api/v1/interfaces` gives it: the label values exactly as
/// `/metrics` writes them (unescaped; `instance` is the owner label whatever
/// `[labels] owner_label` calls it there), the link facts, the owner the page
/// groups it under, and the eight counters of the same read.
#[derive(Serialize)]
pub struct Interface<'a> {
    pub interface: Cow<'a, str>,
    pub instance: Cow<'a, str>,
    pub instance_type: Cow<'a, str>,
    pub app: Cow<'a, str>,
    pub bridge: Cow<'a, str>,
    pub state: Cow<'a, str>,
    pub vlan: Option<u16>,
    pub speed_bytes: Option<u64>,
    pub mtu_bytes: Option<u32>,
    pub owner: Owner<'a>,
    #[serde(flatten)]
    pub counters: NamedCounters<'a>,
    /// For sorting owners; not sent.
    #[serde(skip)]
    owner_kind: OwnerKind,
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

impl<'a> Interface<'a> {
    pub fn new(labels: &'a Rendered, counters: &'a Counters) -> Interface<'a> {
        let [interface, instance, instance_type, app, bridge, state] = labels.values();
        let (owner_kind, name) = owner(&interface, &instance, &instance_type, &app);
        Interface {
            owner: Owner {
                kind: owner_kind.as_str(),
                name,
            },
            owner_kind,
            interface,
            instance,
            instance_type,
            app,
            bridge,
            state,
            vlan: labels.vlan(),
            speed_bytes: labels.speed_bytes,
            mtu_bytes: labels.mtu,
            counters: NamedCounters(counters),
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
    pub interfaces: Vec<Interface<'a>>,
}

impl<'a> Document<'a> {
    /// The interfaces of one join, each with its owner.
    pub fn new<T: Deref<Target = LabelTable>>(scrape: &'a Scrape<T>, read_at: SystemTime) -> Self {
        let time = read_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1000.0);
        Document {
            version: env!("CARGO_PKG_VERSION"),
            time,
            interfaces: scrape
                .interfaces()
                .map(|(labels, counters)| Interface::new(labels, counters))
                .collect(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Only strings, integers and a finite float: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The page: every interface under its owner, NICs also in a table of
    /// their own, without rates (the script adds them). `metrics` is the
    /// telemetry path, linked relative so the page works behind a path prefix.
    pub fn to_html(&self, metrics: &str) -> String {
        let mut nics = String::new();
        for it in self
            .interfaces
            .iter()
            .filter(|it| it.owner_kind == OwnerKind::Nic)
        {
            nic_row(&mut nics, it);
        }
        let mut groups: Vec<&Interface<'_>> = self.interfaces.iter().collect();
        // Stable: within an owner, interfaces stay by name.
        groups.sort_by(|a, b| owner_order(a, b));
        let mut owners = String::with_capacity(self.interfaces.len() * 300);
        for (i, it) in groups.iter().enumerate() {
            let first = i == 0 || owner_order(groups[i - 1], it) != Ordering::Equal;
            if first {
                if i > 0 {
                    owners.push_str("</tbody>\n");
                }
                owner_head(&mut owners, it);
            }
            interface_row(&mut owners, it);
        }
        if !groups.is_empty() {
            owners.push_str("</tbody>\n");
        }
        let mut out = String::with_capacity(PAGE.len() + nics.len() + owners.len() + 64);
        fill(&mut out, PAGE, |key, out| {
            match key {
                "metrics" => push_html(out, &relative(metrics)),
                "nics" => out.push_str(&nics),
                "owners" => out.push_str(&owners),
                "version" => push_html(out, self.version),
                _ => return false,
            }
            true
        });
        out
    }
}

/// An absolute path as a link relative to `/`, so that it follows a reverse
/// proxy's prefix: `/metrics` -> `./metrics`. The `./` keeps whatever
/// follows (`a:b`, `/x`, `\\x`) a path on this site, never a scheme or a host.
fn relative(path: &str) -> String {
    format!(".{path}")
}

/// Owners by kind, then name (bytes); the script re-sorts by traffic.
fn owner_order(a: &Interface<'_>, b: &Interface<'_>) -> Ordering {
    a.owner_kind
        .cmp(&b.owner_kind)
        .then_with(|| a.owner.name.as_bytes().cmp(b.owner.name.as_bytes()))
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

fn nic_row(out: &mut String, it: &Interface<'_>) {
    let speed = it.speed_bytes.filter(|&b| b > 0).map(format_speed);
    push_all(
        out,
        &[
            Raw("<tr class=\"nic\" data-interface=\""),
            Text(&it.interface),
            Raw("\" data-rx-bps=\"\" data-tx-bps=\"\" data-util=\"\"><td>"),
            Text(&it.interface),
            Raw("</td><td data-state=\""),
            Text(&it.state),
            Raw("\">"),
            Text(&it.state),
            Raw("</td><td>"),
            Text(speed.as_deref().unwrap_or("")),
            Raw("</td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td><td class=\"util\">"),
            Raw(if speed.is_some() { "" } else { "\u{2014}" }),
            Raw("</td></tr>\n"),
        ],
    );
}

fn owner_head(out: &mut String, it: &Interface<'_>) {
    let (kind, name) = (it.owner.kind, &*it.owner.name);
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

fn interface_row(out: &mut String, it: &Interface<'_>) {
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
            Text(&it.instance_type),
            Raw("</td><td>"),
            Text(&it.bridge),
            Raw("</td><td>"),
            Text(&vlan),
            Raw("</td><td data-state=\""),
            Text(&it.state),
            Raw("\">"),
            Text(&it.state),
            Raw("</td><td class=\"rx-rate\"></td><td class=\"tx-rate\"></td></tr>\n"),
        ],
    );
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
    use super::*;
    use crate::labels::{InterfaceLabels, Kind};

    fn rendered(interface: &str, instance: &str, kind: Kind, app: &str) -> Rendered {
        let labels = InterfaceLabels {
            interface: interface.as_bytes(),
            instance: instance.as_bytes(),
            kind,
            app: app.as_bytes(),
            bridge: b"br0",
            state: b"up",
            vlan: Some(20),
            speed_bytes: Some(125_000_000),
            mtu: Some(1500),
        };
        Rendered::new(&labels, "instance")
    }

    fn owner_of(interface: &str, instance: &str, kind: Kind, app: &str) -> (&'static str, String) {
        let (k, name) = owner(
            &Cow::Borrowed(interface),
            &Cow::Borrowed(instance),
            kind.as_str(),
            &Cow::Borrowed(app),
        );
        (k.as_str(), name.into_owned())
    }

    #[test]
    fn owners_follow_the_labels() {
        let cases = [
            (
                ("veth1", "ix-immich-server-1", Kind::Docker, "immich"),
                ("app", "immich"),
            ),
            (
                ("veth2", "portainer", Kind::Docker, ""),
                ("container", "portainer"),
            ),
            // An orphan veth on an app's network still counts for the app.
            (
                ("veth3", "veth3", Kind::Docker, "immich"),
                ("app", "immich"),
            ),
            (("veth4", "veth4", Kind::Docker, ""), ("host", "host")),
            (("vnet0", "vyos", Kind::Vm, ""), ("vm", "vyos")),
            (("macvtap0", "vyos", Kind::Macvtap, ""), ("vm", "vyos")),
            (("vnet5", "vnet5", Kind::Vm, ""), ("host", "host")),
            (
                ("veth5", "debian", Kind::Incus, ""),
                ("system container", "debian"),
            ),
            (("vnet7", "web", Kind::Lxc, ""), ("system container", "web")),
            (
                ("br-2c85", "ix-immich_default", Kind::Bridge, "immich"),
                ("network", "ix-immich_default"),
            ),
            (("br0", "br0", Kind::Bridge, ""), ("bridge", "br0")),
            (("enp3s0", "enp3s0", Kind::Physical, ""), ("nic", "enp3s0")),
            (("vlan20", "vlan20", Kind::Vlan, ""), ("host", "host")),
            (("lo", "lo", Kind::Loopback, ""), ("host", "host")),
            (("wg0", "wg0", Kind::Unknown, ""), ("host", "host")),
        ];
        for ((interface, instance, kind, app), (want_kind, want_name)) in cases {
            assert_eq!(
                owner_of(interface, instance, kind, app),
                (want_kind, want_name.to_owned()),
                "{interface}"
            );
        }
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
        assert_eq!(seen, ["metrics", "nics", "owners", "version"]);
        let mut out = String::new();
        fill(&mut out, "a {x} {b} {", |key, out| {
            (key == "x").then(|| out.push('X')).is_some()
        });
        assert_eq!(out, "a X {b} {");
    }

    #[test]
    fn the_page_escapes_every_name_and_groups_by_owner() {
        let hostile = r#"<img src=x onerror="alert('1')">&"#;
        let labels = [
            rendered("enp3s0", "enp3s0", Kind::Physical, ""),
            rendered("veth1", "web-1", Kind::Docker, hostile),
            rendered("veth2", "db-1", Kind::Docker, hostile),
        ];
        let counters = Counters {
            values: [1, 2, 3, 4, 5, 6, 7, 8],
        };
        let doc = Document {
            version: "0.1.0",
            time: 1.5,
            interfaces: labels
                .iter()
                .map(|l| Interface::new(l, &counters))
                .collect(),
        };
        let html = doc.to_html("/prom/metrics");
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
        assert_eq!(json["interfaces"][1]["tx_dropped"], 8);
        assert_eq!(json["interfaces"][1]["vlan"], 20);
        assert!(json["interfaces"][1].get("owner_kind").is_none());
    }
}
