//! The label contract: the label names, interface kinds, the settings that
//! shape labels (owner label name, interface filter), and the pre-rendered
//! label blocks that the scrape path copies verbatim. Values are escaped by
//! the text encoder's one rule ([`crate::expose::encoder`]).

use regex::Regex;

use crate::expose::encoder::push_label;
// The composer names owners by the value a label will carry.
pub use crate::expose::encoder::label_value;

/// Every label the exporter writes, in output order. The counters carry the
/// first six; `net_interface_info` carries all but `state`. `instance` is the
/// default name of the owner label ([`LabelSettings::owner_label`]).
pub const LABEL_NAMES: [&str; 8] = [
    "interface",
    "instance",
    "instance_type",
    "app",
    "bridge",
    "state",
    "vlan",
    "bond",
];

/// The default name of the owner label.
pub const OWNER_LABEL: &str = "instance";

/// Include/exclude regexes over interface names; exclude wins.
#[derive(Debug, Clone, Default)]
pub struct InterfaceFilter {
    pub include: Option<Regex>,
    pub exclude: Option<Regex>,
}

impl InterfaceFilter {
    pub fn allows(&self, name: &[u8]) -> bool {
        let name = String::from_utf8_lossy(name);
        self.include.as_ref().is_none_or(|r| r.is_match(&name))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(&name))
    }
}

/// Settings that shape labels; fixed for the process lifetime.
#[derive(Debug, Clone)]
pub struct LabelSettings {
    /// Name of the label that carries the resolved owner (`instance` by default).
    pub owner_label: String,
    pub filter: InterfaceFilter,
}

impl Default for LabelSettings {
    fn default() -> Self {
        LabelSettings {
            owner_label: OWNER_LABEL.into(),
            filter: InterfaceFilter::default(),
        }
    }
}

/// What an interface is (`instance_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Physical,
    Bridge,
    Docker,
    Incus,
    /// A TrueNAS 26 system container (libvirt-LXC).
    Lxc,
    Vm,
    Vlan,
    Macvtap,
    /// A bonding master: a link aggregation (LACP, failover, balance).
    Bond,
    Wireguard,
    /// A tun device that is not a tap (layer 3: most VPNs).
    Tun,
    Loopback,
    Unknown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Physical => "physical",
            Kind::Bridge => "bridge",
            Kind::Docker => "docker",
            Kind::Incus => "incus",
            Kind::Lxc => "lxc",
            Kind::Vm => "vm",
            Kind::Vlan => "vlan",
            Kind::Macvtap => "macvtap",
            Kind::Bond => "bond",
            Kind::Wireguard => "wireguard",
            Kind::Tun => "tun",
            Kind::Loopback => "loopback",
            Kind::Unknown => "unknown",
        }
    }

    /// The name prefixes (docs/metrics.md, Labels): used only where neither an owner nor sysfs decides.
    pub fn from_name(name: &[u8]) -> Kind {
        let has = |p: &[u8]| name.starts_with(p);
        if name == b"lo" {
            Kind::Loopback
        } else if has(b"veth") {
            Kind::Docker
        } else if has(b"vnet") {
            Kind::Vm
        } else if has(b"macvtap") || has(b"macvlan") {
            Kind::Macvtap
        } else if has(b"vlan") {
            Kind::Vlan
        } else if has(b"br") || has(b"docker") || has(b"incus") {
            Kind::Bridge
        } else {
            Kind::Unknown
        }
    }
}

/// The label values of one interface's counters, as they are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceLabels<'a> {
    pub interface: &'a [u8],
    pub instance: &'a [u8],
    pub kind: Kind,
    pub app: &'a [u8],
    pub bridge: &'a [u8],
    pub state: &'a [u8],
    /// The bond this interface is a port of (the info block only).
    pub bond: &'a [u8],
}

/// One interface's label blocks, rendered once per composition so that a scrape
/// only copies bytes. The counter block and the info block share everything
/// but their last labels, so one string holds both (at 10,000 interfaces a
/// second copy would cost 1 MB of the 20 MiB budget):
/// `<common>,state="..",bond=".."`, where the counters end after `state` and
/// the info block is `<common>,vlan="..",bond=".."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    text: Box<str>,
    /// Length of the part shared with the info block (everything before `,state=`).
    common: u32,
    /// Where the counter block ends (before `,bond=`).
    counters_end: u32,
}

impl Rendered {
    pub fn new(l: &InterfaceLabels<'_>, owner_label: &str) -> Rendered {
        let [interface, _, instance_type, app, bridge, state, _, bond] = LABEL_NAMES;
        let mut s = String::with_capacity(128);
        let pairs = [
            (interface, l.interface),
            (owner_label, l.instance),
            (instance_type, l.kind.as_str().as_bytes()),
            (app, l.app),
            (bridge, l.bridge),
        ];
        for (i, (name, value)) in pairs.into_iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_label(&mut s, name, value);
        }
        let common = s.len();
        s.push(',');
        push_label(&mut s, state, l.state);
        let counters_end = s.len();
        s.push(',');
        push_label(&mut s, bond, l.bond);
        // Values are cut to a few dozen bytes by the sources: far below u32.
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Rendered {
            text: s.into_boxed_str(),
            common: at(common),
            counters_end: at(counters_end),
        }
    }

    /// `interface="..",<owner>="..",instance_type="..",app="..",bridge="..",state=".."`
    pub fn counters(&self) -> &str {
        &self.text[..self.counters_end as usize]
    }

    /// The `interface` value as written (escaped), without its quotes.
    pub fn interface(&self) -> &str {
        let value = &self.text[LABEL_NAMES[0].len() + 2..];
        let mut escaped = false;
        for (i, c) in value.char_indices() {
            match c {
                '"' if !escaped => return &value[..i],
                '\\' => escaped = !escaped,
                _ => escaped = false,
            }
        }
        value
    }

    /// Appends `interface="..",<owner>="..",instance_type="..",app="..",bridge="..",vlan="..",bond=".."`.
    pub fn write_info(&self, out: &mut Vec<u8>, vlan: Option<u16>) {
        let text = self.text.as_bytes();
        out.extend_from_slice(&text[..self.common as usize]);
        out.push(b',');
        out.extend_from_slice(LABEL_NAMES[6].as_bytes());
        out.extend_from_slice(b"=\"");
        if let Some(id) = vlan {
            out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        }
        out.push(b'"');
        out.extend_from_slice(&text[self.counters_end as usize..]);
    }

    /// The info block as a string (tests, diagnostics).
    pub fn info(&self, vlan: Option<u16>) -> String {
        let mut out = Vec::new();
        self.write_info(&mut out, vlan);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_interface_reads_back_as_written() {
        let r = Rendered::new(
            &InterfaceLabels {
                interface: b"veth\xff\"x",
                instance: b"a",
                kind: Kind::Docker,
                app: b"",
                bridge: b"",
                state: b"up",
                bond: b"",
            },
            "owner",
        );
        assert_eq!(r.interface(), r#"veth\\xff\"x"#);
    }

    #[test]
    fn prefix_table_matches_the_readme() {
        let cases: [(&[u8], Kind); 12] = [
            (b"lo", Kind::Loopback),
            (b"veth402dbe0", Kind::Docker),
            (b"vnet3", Kind::Vm),
            (b"macvtap0", Kind::Macvtap),
            (b"macvlan1", Kind::Macvtap),
            (b"vlan1", Kind::Vlan),
            (b"br-2c852816592c", Kind::Bridge),
            (b"br0", Kind::Bridge),
            (b"docker0", Kind::Bridge),
            (b"incusbr0", Kind::Bridge),
            (b"enp8s0f0", Kind::Unknown),
            (b"lo2", Kind::Unknown),
        ];
        for (name, kind) in cases {
            assert_eq!(
                Kind::from_name(name),
                kind,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn renders_blocks_in_contract_order() {
        let l = InterfaceLabels {
            interface: b"veth402dbe0",
            instance: b"ix-grafana-grafana-1",
            kind: Kind::Docker,
            app: b"grafana",
            bridge: b"br-2c852816592c",
            state: b"up",
            bond: b"",
        };
        let r = Rendered::new(&l, "instance");
        assert_eq!(
            r.counters(),
            r#"interface="veth402dbe0",instance="ix-grafana-grafana-1",instance_type="docker",app="grafana",bridge="br-2c852816592c",state="up""#
        );
        assert_eq!(
            r.info(None),
            r#"interface="veth402dbe0",instance="ix-grafana-grafana-1",instance_type="docker",app="grafana",bridge="br-2c852816592c",vlan="",bond="""#
        );
        let r = Rendered::new(&l, "owner");
        assert!(r.counters().contains(r#",owner="ix-grafana-grafana-1","#));
        assert!(r.info(Some(20)).ends_with(r#",vlan="20",bond="""#));
        let port = Rendered::new(
            &InterfaceLabels {
                interface: b"eno1",
                instance: b"eno1",
                kind: Kind::Physical,
                bridge: b"",
                bond: b"bond0",
                ..l
            },
            "instance",
        );
        assert!(
            port.counters().ends_with(r#"bridge="",state="up""#),
            "{}",
            port.counters()
        );
        assert!(port.info(None).ends_with(r#",vlan="",bond="bond0""#));
    }
}
