//! The composer: joins the latest snapshot of every resolver into one
//! [`LabelTable`], mapping interface name -> pre-rendered label blocks.
//! Classification order: the owner first, then kernel facts, then the name.

use std::collections::{HashMap, HashSet};

use crate::labels::{InterfaceLabels, Kind, LabelSettings, Rendered};
use crate::sources::Owners;
use crate::sources::topology::{LinkFacts, TopologySnapshot};

/// One interface's row in the table. `rendered` is `None` when filtered out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rendered: Option<Rendered>,
}

/// Interface name -> labels, built by [`compose`] and read by every scrape.
/// Entries are also addressable by index, so a streaming scrape can refer to
/// them while it owns the table through an `Arc`.
#[derive(Debug, Default)]
pub struct LabelTable {
    index: HashMap<Box<[u8]>, u32>,
    entries: Vec<Entry>,
    /// Written `interface` values that hold an escape. Only those can equal
    /// another interface's (a name with invalid UTF-8 is written with `\xNN`,
    /// which a real name could spell out), so only they are checked.
    escaped: HashSet<Box<str>>,
    /// Interfaces left out because their labels would repeat another's.
    pub collisions: Vec<String>,
}

impl LabelTable {
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.position(name).map(|i| self.at(i))
    }

    /// The index of `name`'s entry, for [`LabelTable::at`].
    pub fn position(&self, name: &[u8]) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// # Panics
    /// If `index` did not come from [`LabelTable::position`] on this table.
    pub fn at(&self, index: u32) -> &Entry {
        &self.entries[index as usize]
    }

    fn insert(&mut self, name: &[u8], entry: Entry) {
        let index = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.index.insert(name.into(), index);
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an interface outside the table, written as `rendered`, would
    /// repeat the labels of one inside it.
    pub fn collides(&self, rendered: &Rendered) -> bool {
        let interface = rendered.interface();
        interface.contains('\\') && self.escaped.contains(interface)
    }
}

/// Labels for an interface the table doesn't know yet (born after the last
/// topology refresh): what its name tells, state `unknown`.
pub fn fallback(name: &[u8], settings: &LabelSettings) -> Entry {
    let rendered = settings.filter.allows(name).then(|| {
        let labels = InterfaceLabels {
            interface: name,
            instance: name,
            kind: Kind::from_name(name),
            app: b"",
            bridge: b"",
            state: b"unknown",
            vlan: None,
            speed_bytes: None,
            mtu: None,
        };
        Rendered::new(&labels, &settings.owner_label)
    });
    Entry { rendered }
}

/// Kernel facts first, the name prefixes (README, Labels) where sysfs can't tell.
pub fn classify(name: &[u8], facts: &LinkFacts) -> Kind {
    let devtype = facts.devtype.as_deref();
    if facts.link_type == Some(772) || name == b"lo" {
        return Kind::Loopback;
    }
    if facts.is_bridge || devtype == Some("bridge") {
        return Kind::Bridge;
    }
    if devtype == Some("vlan") || facts.vlan_id.is_some() {
        return Kind::Vlan;
    }
    if facts.is_macvtap {
        return Kind::Macvtap;
    }
    if facts.has_driver {
        return Kind::Physical;
    }
    if let Some(flags) = facts.tun_flags {
        // An unowned tap is a VM's only when its name says so (libvirt's vnetN).
        const IFF_TAP: u32 = 0x0002;
        return if flags & IFF_TAP != 0 && name.starts_with(b"vnet") {
            Kind::Vm
        } else {
            Kind::Unknown
        };
    }
    if devtype.is_some() {
        // vxlan, bond, wireguard, ...: known kinds with no label value of their own.
        return Kind::Unknown;
    }
    if facts.has_lower && facts.is_linked() {
        // Stacked on a lower device with no DEVTYPE: a macvlan (VLANs say DEVTYPE=vlan).
        return Kind::Macvtap;
    }
    if facts.is_veth() {
        // An unowned veth: a Docker veth whose container has gone.
        return Kind::Docker;
    }
    match (facts.ifindex, Kind::from_name(name)) {
        // sysfs was readable and ruled out every stacked kind: trust it over the name.
        (Some(_), Kind::Docker | Kind::Vm | Kind::Macvtap | Kind::Vlan | Kind::Bridge) => {
            Kind::Unknown
        }
        (_, by_name) => by_name,
    }
}

/// Builds the label table from the topology and the owner snapshots (earlier
/// owners win when two claim the same interface).
pub fn compose(
    topology: &TopologySnapshot,
    owners: &[&Owners],
    settings: &LabelSettings,
) -> LabelTable {
    let owner_of = |name: &[u8]| {
        let facts = topology.links.get(name);
        owners.iter().find_map(|o| o.get(name, facts))
    };

    // A bridge with a VLAN port tags its other ports with that VLAN (lowest id wins).
    let mut bridge_vlan: HashMap<&[u8], u16> = HashMap::new();
    for (name, facts) in &topology.links {
        if let (Some(bridge), Some(id)) = (bridge_of(topology, name, facts), facts.vlan_id) {
            let slot = bridge_vlan.entry(bridge).or_insert(id);
            *slot = (*slot).min(id);
        }
    }

    let mut table = LabelTable {
        index: HashMap::with_capacity(topology.links.len()),
        entries: Vec::with_capacity(topology.links.len()),
        ..LabelTable::default()
    };
    for (name, facts) in &topology.links {
        if !settings.filter.allows(name) {
            table.insert(name, Entry { rendered: None });
            continue;
        }
        let owner = owner_of(name);
        let kind = owner.map_or_else(|| classify(name, facts), |o| o.kind);
        let bridge = bridge_of(topology, name, facts).unwrap_or(b"");
        let app = match owner {
            Some(o) => o.app.as_bytes(),
            // Orphan veth: the app of the Docker network its bridge belongs to.
            None if kind == Kind::Docker => owner_of(bridge).map_or(&b""[..], |b| b.app.as_bytes()),
            None => b"",
        };
        let vlan = facts.vlan_id.or_else(|| bridge_vlan.get(bridge).copied());
        let labels = InterfaceLabels {
            interface: name,
            instance: owner.map_or(name.as_slice(), |o| o.instance.as_bytes()),
            kind,
            app,
            bridge,
            state: facts
                .operstate
                .as_deref()
                .map_or(&b"unknown"[..], str::as_bytes),
            vlan,
            speed_bytes: facts.speed_bytes,
            mtu: facts.mtu,
        };
        let rendered = Rendered::new(&labels, &settings.owner_label);
        let interface = rendered.interface();
        let rendered = if !interface.contains('\\') || table.escaped.insert(interface.into()) {
            Some(rendered)
        } else {
            // Names are visited in byte order: the first keeps the labels.
            table.collisions.push(interface.to_owned());
            None
        };
        table.insert(name, Entry { rendered });
    }
    table
}

/// The bridge `name` is a port of: sysfs's `master`, if it names another
/// interface of this host (a broken tree's link may point anywhere, itself included).
fn bridge_of<'a>(
    topology: &TopologySnapshot,
    name: &[u8],
    facts: &'a LinkFacts,
) -> Option<&'a [u8]> {
    facts
        .bridge
        .as_deref()
        .filter(|b| *b != name && topology.links.contains_key(*b))
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::labels::InterfaceFilter;
    use crate::sources::Owner;

    fn eth(ifindex: u32, iflink: u32) -> LinkFacts {
        LinkFacts {
            ifindex: Some(ifindex),
            iflink: Some(iflink),
            link_type: Some(1),
            operstate: Some("up".into()),
            ..LinkFacts::default()
        }
    }

    #[test]
    fn kernel_facts_beat_names() {
        let bridge = LinkFacts {
            is_bridge: true,
            ..eth(3, 3)
        };
        assert_eq!(classify(b"lan", &bridge), Kind::Bridge);
        let macvtap = LinkFacts {
            is_macvtap: true,
            has_lower: true,
            ..eth(9, 2)
        };
        assert_eq!(classify(b"mvt0", &macvtap), Kind::Macvtap);
        let macvlan = LinkFacts {
            has_lower: true,
            ..eth(9, 2)
        };
        assert_eq!(classify(b"veth-not", &macvlan), Kind::Macvtap);
        let vlan = LinkFacts {
            devtype: Some("vlan".into()),
            has_lower: true,
            ..eth(5, 2)
        };
        assert_eq!(classify(b"trunk", &vlan), Kind::Vlan);
        assert_eq!(
            classify(b"brx", &eth(7, 8)),
            Kind::Docker,
            "a veth named br*"
        );
        let nic = LinkFacts {
            has_driver: true,
            ..eth(2, 2)
        };
        assert_eq!(classify(b"vnet9", &nic), Kind::Physical);
        let vxlan = LinkFacts {
            devtype: Some("vxlan".into()),
            ..eth(11, 0)
        };
        assert_eq!(classify(b"veth-vx", &vxlan), Kind::Unknown);
        let tap = LinkFacts {
            tun_flags: Some(0x1002),
            ..eth(12, 12)
        };
        assert_eq!(classify(b"vnet0", &tap), Kind::Vm);
        assert_eq!(classify(b"tap0", &tap), Kind::Unknown);
        let lo = LinkFacts {
            link_type: Some(772),
            ..eth(1, 1)
        };
        assert_eq!(classify(b"lo", &lo), Kind::Loopback);
        assert_eq!(
            classify(b"br-plain", &eth(4, 4)),
            Kind::Unknown,
            "sysfs says not a bridge"
        );
    }

    #[test]
    fn names_decide_when_sysfs_is_silent() {
        let none = LinkFacts::default();
        assert_eq!(classify(b"br0", &none), Kind::Bridge);
        assert_eq!(classify(b"vlan1", &none), Kind::Vlan);
        assert_eq!(classify(b"enp1s0", &none), Kind::Unknown);
    }

    fn topo(links: &[(&str, LinkFacts)]) -> TopologySnapshot {
        TopologySnapshot {
            links: links
                .iter()
                .map(|(n, f)| (n.as_bytes().to_vec(), f.clone()))
                .collect(),
        }
    }

    fn counters_of(table: &LabelTable, name: &str) -> String {
        table
            .get(name.as_bytes())
            .unwrap()
            .rendered
            .as_ref()
            .unwrap()
            .counters()
            .to_string()
    }

    fn info_of(table: &LabelTable, name: &str) -> String {
        table
            .get(name.as_bytes())
            .unwrap()
            .rendered
            .as_ref()
            .unwrap()
            .info()
    }

    #[test]
    fn joins_owners_bridges_and_vlans() {
        let port = |idx, link| LinkFacts {
            bridge: Some(b"br-2c852816592c".to_vec()),
            ..eth(idx, link)
        };
        let t = topo(&[
            (
                "br-2c852816592c",
                LinkFacts {
                    is_bridge: true,
                    ..eth(10, 10)
                },
            ),
            ("veth402dbe0", port(11, 4)),
            ("vethorphan", port(12, 5)),
            (
                "br0",
                LinkFacts {
                    is_bridge: true,
                    ..eth(20, 20)
                },
            ),
            (
                "vlan1",
                LinkFacts {
                    vlan_id: Some(1),
                    bridge: Some(b"br0".to_vec()),
                    has_lower: true,
                    ..eth(21, 2)
                },
            ),
            (
                "vnet3",
                LinkFacts {
                    tun_flags: Some(0x1002),
                    bridge: Some(b"br0".to_vec()),
                    operstate: Some("unknown".into()),
                    ..eth(22, 22)
                },
            ),
        ]);
        let mut docker = Owners::default();
        docker.by_interface.insert(
            b"veth402dbe0".to_vec(),
            Owner {
                kind: Kind::Docker,
                instance: "ix-grafana-grafana-1".into(),
                app: "grafana".into(),
            },
        );
        docker.by_interface.insert(
            b"br-2c852816592c".to_vec(),
            Owner {
                kind: Kind::Bridge,
                instance: "ix-grafana_default".into(),
                app: "grafana".into(),
            },
        );
        let table = compose(&t, &[&docker], &LabelSettings::default());
        assert_eq!(
            counters_of(&table, "veth402dbe0"),
            r#"interface="veth402dbe0",instance="ix-grafana-grafana-1",instance_type="docker",app="grafana",bridge="br-2c852816592c",state="up""#
        );
        assert_eq!(
            counters_of(&table, "vethorphan"),
            r#"interface="vethorphan",instance="vethorphan",instance_type="docker",app="grafana",bridge="br-2c852816592c",state="up""#
        );
        assert_eq!(
            counters_of(&table, "br-2c852816592c"),
            r#"interface="br-2c852816592c",instance="ix-grafana_default",instance_type="bridge",app="grafana",bridge="",state="up""#
        );
        assert_eq!(
            info_of(&table, "vnet3"),
            r#"interface="vnet3",instance="vnet3",instance_type="vm",app="",bridge="br0",vlan="1""#
        );
        assert!(info_of(&table, "vlan1").ends_with(r#"bridge="br0",vlan="1""#));
        assert!(
            info_of(&table, "br0").ends_with(r#"vlan="""#),
            "the bridge itself is no member"
        );
    }

    /// A container's macvlan (or ipvlan) interface has its parent's ifindex
    /// as `iflink`, just as a veth's container end has its host end's: the
    /// claim holds only for a host veth that points back at that end.
    #[test]
    fn an_iflink_claims_only_the_host_end_of_a_veth() {
        let nic = LinkFacts {
            has_driver: true,
            ..eth(2, 2)
        };
        let bridge = LinkFacts {
            is_bridge: true,
            ..eth(3, 3)
        };
        let t = topo(&[
            ("eno1", nic),
            ("br0", bridge),
            // Host veths: 7's peer is the container's end 5; 8's is elsewhere.
            ("veth7", eth(7, 5)),
            ("veth8", eth(8, 9)),
        ]);
        let owner = Owner {
            kind: Kind::Docker,
            instance: "ix-web-web-1".into(),
            app: "web".into(),
        };
        let mut docker = Owners::default();
        use crate::sources::procfs::VethEnd;
        let end = |host_ifindex, ifindex| VethEnd {
            host_ifindex,
            ifindex,
        };
        // Container ends: a veth (5 -> host 7), a macvlan on eno1 and one on
        // br0 (their iflink is the parent's), and an end whose index does not
        // match veth8's peer.
        docker.claim_veths(&[end(7, 5), end(2, 6), end(3, 4), end(8, 4)], &owner);
        let table = compose(&t, &[&docker], &LabelSettings::default());
        let instance = |name: &str| {
            table
                .get(name.as_bytes())
                .unwrap()
                .rendered
                .as_ref()
                .unwrap()
                .values()[1]
                .to_string()
        };
        assert_eq!(instance("veth7"), "ix-web-web-1");
        assert_eq!(
            instance("eno1"),
            "eno1",
            "the macvlan's parent NIC stays the host's"
        );
        assert_eq!(instance("br0"), "br0", "and so does a parent bridge");
        assert_eq!(
            instance("veth8"),
            "veth8",
            "a veth whose peer is another end"
        );
        assert!(counters_of(&table, "eno1").contains(r#"instance_type="physical""#));
        assert!(counters_of(&table, "br0").contains(r#"instance_type="bridge""#));
    }

    #[test]
    fn filter_marks_entries_and_fallbacks() {
        let t = topo(&[
            ("veth1", eth(5, 6)),
            (
                "eth0",
                LinkFacts {
                    has_driver: true,
                    ..eth(2, 2)
                },
            ),
        ]);
        let settings = LabelSettings {
            filter: InterfaceFilter {
                include: None,
                exclude: Regex::new("^veth").ok(),
            },
            ..LabelSettings::default()
        };
        let table = compose(&t, &[], &settings);
        assert_eq!(table.get(b"veth1").unwrap().rendered, None);
        assert!(table.get(b"eth0").unwrap().rendered.is_some());
        assert_eq!(fallback(b"veth9", &settings).rendered, None);
        let fb = fallback(b"vnet7", &settings).rendered.unwrap();
        assert_eq!(
            fb.counters(),
            r#"interface="vnet7",instance="vnet7",instance_type="vm",app="",bridge="",state="unknown""#
        );
    }
}
