//! The composer: joins the latest snapshot of every resolver into one
//! [`LabelTable`]. It decides, once per composition, what each interface is
//! (the owner's claim first, then kernel facts, then the name) and who owns
//! it (an [`Owner`]), and renders its label blocks from that: the scrape
//! copies the blocks, and the live view and its API read the same
//! [`Interface`] values, so all three agree by construction.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::labels::{InterfaceLabels, Kind, LabelSettings, Rendered, label_value};
use crate::model::owner::{Owner, OwnerKind, OwnerSet};
use crate::resolve::sources::topology::{LinkFacts, TopologySnapshot};
use crate::resolve::sources::{Claim, Claims};

/// One interface as the exporter describes it, and its rendered labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: Box<[u8]>,
    /// `instance_type`.
    pub kind: Kind,
    pub owner: Arc<Owner>,
    /// The name of what holds it (a container, a VM, a Docker network) when a
    /// resolver claimed it; the owner label is then that, else the interface
    /// name.
    pub claimant: Option<Box<str>>,
    /// The bridge this interface is a port of.
    pub bridge: Option<Box<[u8]>>,
    /// The bond this interface is a port of.
    pub bond: Option<Box<[u8]>>,
    /// `operstate` as the kernel spells it, `unknown` if unread.
    pub state: Cow<'static, str>,
    /// 802.1Q id: its own, or its bridge's VLAN port's.
    pub vlan: Option<u16>,
    /// Link speed in bytes/s, where known.
    pub speed_bytes: Option<u64>,
    pub mtu: Option<u32>,
    pub rendered: Rendered,
}

/// What [`Interface::new`] is made from.
pub struct Described<'a> {
    pub name: &'a [u8],
    pub kind: Kind,
    pub owner: Arc<Owner>,
    pub claimant: Option<&'a str>,
    pub bridge: &'a [u8],
    pub bond: &'a [u8],
    pub state: &'a str,
    pub vlan: Option<u16>,
    pub speed_bytes: Option<u64>,
    pub mtu: Option<u32>,
}

impl Interface {
    pub fn new(d: Described<'_>, owner_label: &str) -> Interface {
        let labels = InterfaceLabels {
            interface: d.name,
            instance: d.claimant.map_or(d.name, str::as_bytes),
            kind: d.kind,
            app: d.owner.app.as_bytes(),
            bridge: d.bridge,
            state: d.state.as_bytes(),
            bond: d.bond,
        };
        Interface {
            rendered: Rendered::new(&labels, owner_label),
            name: d.name.into(),
            kind: d.kind,
            claimant: d.claimant.map(Into::into),
            bridge: (!d.bridge.is_empty()).then(|| d.bridge.into()),
            bond: (!d.bond.is_empty()).then(|| d.bond.into()),
            state: operstate(d.state),
            vlan: d.vlan,
            speed_bytes: d.speed_bytes,
            mtu: d.mtu,
            owner: d.owner,
        }
    }

    /// The `interface` label's value.
    pub fn interface(&self) -> Cow<'_, str> {
        label_value(&self.name)
    }

    /// The owner label's value: the claimant, else the interface name.
    pub fn instance(&self) -> Cow<'_, str> {
        self.claimant
            .as_deref()
            .map_or_else(|| label_value(&self.name), Cow::Borrowed)
    }

    pub fn app(&self) -> &str {
        &self.owner.app
    }

    /// The `bridge` label's value.
    pub fn bridge(&self) -> Cow<'_, str> {
        label_value(self.bridge.as_deref().unwrap_or_default())
    }

    /// The `bond` label's value (`net_interface_info`).
    pub fn bond(&self) -> Cow<'_, str> {
        label_value(self.bond.as_deref().unwrap_or_default())
    }
}

/// The `operstate` values the kernel writes, shared rather than copied into
/// every interface.
const OPERSTATES: [&str; 7] = [
    "up",
    "down",
    "unknown",
    "dormant",
    "lowerlayerdown",
    "notpresent",
    "testing",
];

fn operstate(state: &str) -> Cow<'static, str> {
    match OPERSTATES.iter().find(|known| **known == state) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(state.to_owned()),
    }
}

/// Interface name -> its [`Interface`] (`None` where the interface filter
/// leaves it out), built by [`compose`] and read by every scrape. Entries
/// are also addressable by index, so a streaming scrape can refer to them
/// while it owns the table through an `Arc`.
#[derive(Debug, Default)]
pub struct LabelTable {
    index: HashMap<Box<[u8]>, u32>,
    entries: Vec<Option<Interface>>,
    /// Every owner of this composition, by kind then name.
    pub owners: Vec<Arc<Owner>>,
    /// Written `interface` values that hold an escape. Only those can equal
    /// another interface's (a name with invalid UTF-8 is written with `\xNN`,
    /// which a real name could spell out), so only they are checked.
    escaped: HashSet<Box<str>>,
    /// Interfaces left out because their labels would repeat another's.
    pub collisions: Vec<String>,
}

impl LabelTable {
    /// The owners that hold an interface (as resolvers name them).
    pub fn claimants(&self) -> std::collections::HashSet<&str> {
        self.interfaces()
            .filter_map(|i| i.claimant.as_deref())
            .collect()
    }

    /// The interface called `name`, if the table has it and the filter keeps it.
    pub fn get(&self, name: &[u8]) -> Option<&Interface> {
        self.position(name).and_then(|i| self.at(i))
    }

    /// The index of `name`'s entry, for [`LabelTable::at`].
    pub fn position(&self, name: &[u8]) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The interface at `index` (from [`LabelTable::position`]); `None` if
    /// the filter leaves it out or the index is not this table's.
    pub fn at(&self, index: u32) -> Option<&Interface> {
        self.entries.get(index as usize)?.as_ref()
    }

    fn insert(&mut self, name: &[u8], entry: Option<Interface>) {
        let index = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.index.insert(name.into(), index);
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every interface the filter keeps.
    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.entries.iter().flatten()
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

/// Who owns an interface of kind `kind` that `claim` (if any) names; `app` is
/// its app (the claim's, or for an unclaimed veth its bridge network's).
/// An app's containers are the app's; a claimed interface is what claimed
/// it; the host's own NICs and bridges are themselves; the rest is the host's.
pub fn owner_of(kind: Kind, claim: Option<&Claim>, app: &str, name: &[u8]) -> Owner {
    match claim {
        Some(c) if c.of == OwnerKind::Container && !app.is_empty() => {
            Owner::new(OwnerKind::App, app, app)
        }
        Some(c) => Owner::new(c.of, &c.instance, app),
        None if kind == Kind::Docker && !app.is_empty() => Owner::new(OwnerKind::App, app, app),
        None if kind == Kind::Bridge => Owner::new(OwnerKind::Bridge, &label_value(name), ""),
        // A bond is the uplink its ports make together.
        None if matches!(kind, Kind::Physical | Kind::Bond) => {
            Owner::new(OwnerKind::Nic, &label_value(name), "")
        }
        None => Owner::host(),
    }
}

/// The interface for one the table does not know yet (born after the last
/// topology refresh): what its name tells, state `unknown`. `None` if the
/// filter leaves it out.
pub fn fallback(name: &[u8], settings: &LabelSettings) -> Option<Interface> {
    settings.filter.allows(name).then(|| {
        let kind = Kind::from_name(name);
        let described = Described {
            name,
            kind,
            owner: owner_of(kind, None, "", name).shared(),
            claimant: None,
            bridge: b"",
            bond: b"",
            state: "unknown",
            vlan: None,
            speed_bytes: None,
            mtu: None,
        };
        Interface::new(described, &settings.owner_label)
    })
}

/// Kernel facts first, the name prefixes (docs/metrics.md, Labels) where sysfs can't tell.
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
    if facts.is_bond || devtype == Some("bond") {
        // Before the stacked kinds: a bond has a `lower_*` link per port.
        return Kind::Bond;
    }
    if devtype == Some("wireguard") {
        return Kind::Wireguard;
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
        return if flags & IFF_TAP == 0 {
            Kind::Tun
        } else if name.starts_with(b"vnet") {
            Kind::Vm
        } else {
            Kind::Unknown
        };
    }
    if devtype.is_some() {
        // vxlan, geneve, ...: known kinds with no label value of their own.
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

/// Builds the label table from the topology and the claims (earlier
/// snapshots win when two claim the same interface).
pub fn compose(
    topology: &TopologySnapshot,
    claims: &[&Claims],
    settings: &LabelSettings,
) -> LabelTable {
    let claim_of = |name: &[u8]| {
        let facts = topology.links.get(name);
        claims.iter().find_map(|c| c.get(name, facts))
    };

    // A bridge with a VLAN port tags its other ports with that VLAN (lowest id wins).
    let mut bridge_vlan: HashMap<&[u8], u16> = HashMap::new();
    for (name, facts) in &topology.links {
        if let (Some(bridge), Some(id)) = (bridge_of(topology, name, facts), facts.vlan_id) {
            let slot = bridge_vlan.entry(bridge).or_insert(id);
            *slot = (*slot).min(id);
        }
    }

    let mut owners = OwnerSet::default();
    let mut table = LabelTable {
        index: HashMap::with_capacity(topology.links.len()),
        entries: Vec::with_capacity(topology.links.len()),
        ..LabelTable::default()
    };
    for (name, facts) in &topology.links {
        if !settings.filter.allows(name) {
            table.insert(name, None);
            continue;
        }
        let claim = claim_of(name);
        let kind = claim.map_or_else(|| classify(name, facts), |c| c.kind);
        let bridge = bridge_of(topology, name, facts).unwrap_or(b"");
        let app = match claim {
            Some(c) => c.app.as_str(),
            // Orphan veth: the app of the Docker network its bridge belongs to.
            None if kind == Kind::Docker => claim_of(bridge).map_or("", |b| b.app.as_str()),
            None => "",
        };
        let described = Described {
            name,
            kind,
            owner: owners.get(owner_of(kind, claim, app, name)),
            claimant: claim.map(|c| c.instance.as_str()),
            bridge,
            bond: port_of(topology, name, facts.bond.as_deref()).unwrap_or(b""),
            state: facts.operstate.as_deref().unwrap_or("unknown"),
            vlan: facts.vlan_id.or_else(|| bridge_vlan.get(bridge).copied()),
            speed_bytes: facts.speed_bytes,
            mtu: facts.mtu,
        };
        let interface = Interface::new(described, &settings.owner_label);
        let written = interface.rendered.interface();
        let entry = if !written.contains('\\') || table.escaped.insert(written.into()) {
            Some(interface)
        } else {
            // Names are visited in byte order: the first keeps the labels.
            table.collisions.push(written.to_owned());
            None
        };
        table.insert(name, entry);
    }
    table.owners = owners.into_sorted();
    table
}

/// The bridge `name` is a port of.
fn bridge_of<'a>(
    topology: &TopologySnapshot,
    name: &[u8],
    facts: &'a LinkFacts,
) -> Option<&'a [u8]> {
    port_of(topology, name, facts.bridge.as_deref())
}

/// sysfs's `master` of a port, if it names another interface of this host (a
/// broken tree's link may point anywhere, itself included).
fn port_of<'a>(
    topology: &TopologySnapshot,
    name: &[u8],
    master: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    master.filter(|m| *m != name && topology.links.contains_key(*m))
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::model::labels::InterfaceFilter;

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
        let tun = LinkFacts {
            tun_flags: Some(0x1001),
            ..eth(13, 13)
        };
        assert_eq!(classify(b"vnet-tun", &tun), Kind::Tun, "a tun is no tap");
        let bond = LinkFacts {
            is_bond: true,
            devtype: Some("bond".into()),
            has_lower: true,
            ..eth(14, 14)
        };
        assert_eq!(
            classify(b"lagg0", &bond),
            Kind::Bond,
            "not a macvlan for its lower_ links"
        );
        let wireguard = LinkFacts {
            devtype: Some("wireguard".into()),
            ..eth(15, 15)
        };
        assert_eq!(classify(b"wg0", &wireguard), Kind::Wireguard);
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
            .counters()
            .to_string()
    }

    fn info_of(table: &LabelTable, name: &str) -> String {
        let interface = table.get(name.as_bytes()).unwrap();
        interface.rendered.info(interface.vlan)
    }

    fn owner_in(table: &LabelTable, name: &str) -> (&'static str, String) {
        let owner = &table.get(name.as_bytes()).unwrap().owner;
        (owner.kind.as_str(), owner.name.to_string())
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
        let mut docker = Claims::default();
        docker.by_interface.insert(
            b"veth402dbe0".to_vec(),
            Claim {
                kind: Kind::Docker,
                instance: "ix-grafana-grafana-1".into(),
                app: "grafana".into(),
                of: OwnerKind::Container,
            },
        );
        docker.by_interface.insert(
            b"br-2c852816592c".to_vec(),
            Claim {
                kind: Kind::Bridge,
                instance: "ix-grafana_default".into(),
                app: "grafana".into(),
                of: OwnerKind::Network,
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
            r#"interface="vnet3",instance="vnet3",instance_type="vm",app="",bridge="br0",vlan="1",bond="""#
        );
        assert!(info_of(&table, "vlan1").ends_with(r#"bridge="br0",vlan="1",bond="""#));
        assert!(
            info_of(&table, "br0").ends_with(r#"vlan="",bond="""#),
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
        let owner = Claim {
            kind: Kind::Docker,
            instance: "ix-web-web-1".into(),
            app: "web".into(),
            of: OwnerKind::Container,
        };
        let mut docker = Claims::default();
        use crate::resolve::sources::procfs::VethEnd;
        let end = |host_ifindex, ifindex| VethEnd {
            host_ifindex,
            ifindex,
        };
        // Container ends: a veth (5 -> host 7), a macvlan on eno1 and one on
        // br0 (their iflink is the parent's), and an end whose index does not
        // match veth8's peer.
        docker.claim_veths(&[end(7, 5), end(2, 6), end(3, 4), end(8, 4)], &owner);
        let table = compose(&t, &[&docker], &LabelSettings::default());
        let instance = |name: &str| table.get(name.as_bytes()).unwrap().instance().into_owned();
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
        assert!(table.position(b"veth1").is_some() && table.get(b"veth1").is_none());
        assert!(table.get(b"eth0").is_some());
        assert_eq!(fallback(b"veth9", &settings), None);
        let fb = fallback(b"vnet7", &settings).unwrap();
        assert_eq!(
            fb.rendered.counters(),
            r#"interface="vnet7",instance="vnet7",instance_type="vm",app="",bridge="",state="unknown""#
        );
    }

    /// Each interface's owner, decided from the claims and kernel facts, not
    /// read back from its labels: a container named like its own veth is a
    /// container, not the host's.
    #[test]
    fn owners_come_from_claims_and_facts() {
        let claim = |kind, instance: &str, app: &str, of| Claim {
            kind,
            instance: instance.into(),
            app: app.into(),
            of,
        };
        use OwnerKind::*;
        let cases = [
            (
                Kind::Docker,
                Some(claim(
                    Kind::Docker,
                    "ix-immich-server-1",
                    "immich",
                    Container,
                )),
                "immich",
                "veth1",
                ("app", "immich"),
            ),
            (
                Kind::Docker,
                Some(claim(Kind::Docker, "portainer", "", Container)),
                "",
                "veth2",
                ("container", "portainer"),
            ),
            // Renamed to its own veth's name: still the container.
            (
                Kind::Docker,
                Some(claim(Kind::Docker, "veth9", "", Container)),
                "",
                "veth9",
                ("container", "veth9"),
            ),
            // An orphan veth on an app's network still counts for the app.
            (Kind::Docker, None, "immich", "veth3", ("app", "immich")),
            (Kind::Docker, None, "", "veth4", ("host", "host")),
            (
                Kind::Vm,
                Some(claim(Kind::Vm, "vyos", "", Vm)),
                "",
                "vnet0",
                ("vm", "vyos"),
            ),
            (
                Kind::Macvtap,
                Some(claim(Kind::Macvtap, "vyos", "", Vm)),
                "",
                "macvtap0",
                ("vm", "vyos"),
            ),
            // An Incus container's macvlan NIC is the container's.
            (
                Kind::Macvtap,
                Some(claim(Kind::Macvtap, "web", "", SystemContainer)),
                "",
                "mac0a1b2c3d",
                ("system container", "web"),
            ),
            (Kind::Vm, None, "", "vnet5", ("host", "host")),
            (
                Kind::Lxc,
                Some(claim(Kind::Lxc, "debian", "", SystemContainer)),
                "",
                "vnet7",
                ("system container", "debian"),
            ),
            (
                Kind::Bridge,
                Some(claim(Kind::Bridge, "ix-immich_default", "immich", Network)),
                "immich",
                "br-2c85",
                ("network", "ix-immich_default"),
            ),
            (Kind::Bridge, None, "", "br0", ("bridge", "br0")),
            (Kind::Physical, None, "", "enp3s0", ("nic", "enp3s0")),
            (Kind::Vlan, None, "", "vlan20", ("host", "host")),
            (Kind::Loopback, None, "", "lo", ("host", "host")),
            (Kind::Unknown, None, "", "wg0", ("host", "host")),
        ];
        for (kind, claim, app, name, (want_kind, want_name)) in cases {
            let owner = owner_of(kind, claim.as_ref(), app, name.as_bytes());
            assert_eq!(
                (owner.kind.as_str(), &*owner.name),
                (want_kind, want_name),
                "{name}"
            );
        }
    }

    #[test]
    fn the_table_lists_each_owner_once() {
        let t = topo(&[("veth1", eth(5, 6)), ("veth2", eth(7, 8))]);
        let mut docker = Claims::default();
        for (veth, container) in [("veth1", "ix-a-web-1"), ("veth2", "ix-a-db-1")] {
            docker.by_interface.insert(
                veth.as_bytes().to_vec(),
                Claim {
                    kind: Kind::Docker,
                    instance: container.into(),
                    app: "a".into(),
                    of: OwnerKind::Container,
                },
            );
        }
        let table = compose(&t, &[&docker], &LabelSettings::default());
        assert_eq!(table.owners.len(), 1);
        assert_eq!(owner_in(&table, "veth1"), ("app", "a".to_owned()));
        let (one, two) = (table.get(b"veth1").unwrap(), table.get(b"veth2").unwrap());
        assert!(Arc::ptr_eq(&one.owner, &two.owner), "shared, not copied");
        assert_eq!(one.instance(), "ix-a-web-1");
    }
}
