//! Layer 2: fixture hosts (directory trees with `proc/1/net/dev` and
//! `sys/class/net`) run through the real binary with `--once`.

use crate::support::{fixture, once_on_host, one, parse};

/// The counters' labels, in the contract's order.
pub const LABELS: [&str; 6] = [
    "interface",
    "instance",
    "instance_type",
    "app",
    "bridge",
    "state",
];

/// The reference example lines (CONTRIBUTING.md, Tests and benchmarks). Those decided by the topology, and the VM
/// lines (through the fixture's fake midclt and its /proc/<pid>/fd links),
/// must come out identical; the Docker lines come out in their unowned form
/// (a fixture host has no engine; tests/integration/docker.rs proves them).
const SEED_EXAMPLES: &str = r#"
net_interface_rx_bytes_total{interface="enp8s0f0",instance="enp8s0f0",instance_type="physical",app="",bridge="",state="up"} 1.111594096922e+12
net_interface_rx_bytes_total{interface="vnet3",instance="vyos",instance_type="vm",app="",bridge="br0",state="unknown"} 1.115796347231e+12
net_interface_rx_bytes_total{interface="macvtap0",instance="vyos",instance_type="macvtap",app="",bridge="",state="up"} 1.111594084954e+12
net_interface_rx_bytes_total{interface="br0",instance="br0",instance_type="bridge",app="",bridge="",state="up"} 1.343738956933e+12
net_interface_rx_bytes_total{interface="vlan1",instance="vlan1",instance_type="vlan",app="",bridge="br0",state="up"} 2.17320405154e+11
"#;

const SEED_UNOWNED: &str = r#"
net_interface_rx_bytes_total{interface="veth402dbe0",instance="veth402dbe0",instance_type="docker",app="",bridge="br-2c852816592c",state="up"} 2.56302961e+08
net_interface_rx_bytes_total{interface="br-2c852816592c",instance="br-2c852816592c",instance_type="bridge",app="",bridge="",state="up"} 2.54524065e+08
"#;

/// A config that points the VM resolver at the fixture's fake midclt, run
/// directly (the fixture root has no shell to chroot into).
fn seed_vm_config(dir: &std::path::Path) -> String {
    let path = dir.join("vm.toml");
    std::fs::write(&path, seed_vm_toml()).unwrap();
    format!("--config.file={}", path.display())
}

pub fn seed_vm_toml() -> String {
    let midclt = fixture("seed-host").join("usr/bin/midclt");
    format!(
        "[vm]\nsources = [\"midclt\"]\n[commands]\nchroot = false\n[truenas]\nmidclt_command = [{:?}, \"call\"]\n",
        midclt.display().to_string()
    )
}

fn seed_scrape(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = seed_vm_config(dir.path());
    let mut args = vec![config.as_str()];
    args.extend_from_slice(extra);
    once_on_host(&fixture("seed-host"), &args)
}

#[test]
fn seed_examples_come_out_identical() {
    let got = parse(&seed_scrape(&[]));
    for expected in parse(SEED_EXAMPLES).into_iter().chain(parse(SEED_UNOWNED)) {
        let iface = expected.label("interface").unwrap();
        let actual = one(&got, &expected.name, iface);
        assert_eq!(actual.labels, expected.labels, "labels of {iface}");
        assert_eq!(actual.value, expected.value, "value of {iface}");
    }
}

#[test]
fn values_are_integers_in_label_order_and_sorted() {
    let text = seed_scrape(&[]);
    let samples = parse(&text);
    let families: Vec<_> = [
        "rx_bytes",
        "tx_bytes",
        "rx_packets",
        "tx_packets",
        "rx_errors",
        "tx_errors",
        "rx_dropped",
        "tx_dropped",
    ]
    .iter()
    .map(|f| format!("net_interface_{f}_total"))
    .collect();
    let mut interfaces_of_first = None;
    for family in &families {
        assert!(
            text.contains(&format!("# TYPE {family} counter\n")),
            "{family} typed"
        );
        let rows: Vec<_> = samples.iter().filter(|s| &s.name == family).collect();
        let names: Vec<_> = rows.iter().map(|s| s.label("interface").unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{family} sorted by interface");
        assert_eq!(
            names.len(),
            21,
            "{family}: every well-formed line of the fixture"
        );
        for row in &rows {
            let keys: Vec<_> = row.labels.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, LABELS, "label order");
        }
        interfaces_of_first.get_or_insert(names.clone());
        assert_eq!(interfaces_of_first.as_ref(), Some(&names));
    }
    for line in text.lines().filter(|l| l.starts_with("net_interface_")) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.bytes().all(|b| b.is_ascii_digit()),
            "integer value: {line}"
        );
    }
    // tx_dropped is column 12 of the fixture line: idx % 4 for enp8s0f1 (idx 3).
    assert_eq!(
        one(&samples, "net_interface_tx_dropped_total", "enp8s0f1").value,
        3.0
    );
    assert_eq!(
        one(&samples, "net_interface_rx_errors_total", "br1").value,
        2.0
    );
}

#[test]
fn malformed_netdev_lines_are_skipped_and_counted() {
    let samples = parse(&seed_scrape(&[]));
    let malformed: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "truenas_net_exporter_netdev_malformed_lines_total")
        .collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].value, 2.0);
    assert!(!samples.iter().any(|s| s.label("interface") == Some("eth9")));
}

#[test]
fn info_metric_carries_vlan_ids() {
    let samples = parse(&seed_scrape(&[]));
    let vlan = |iface| {
        one(&samples, "net_interface_info", iface)
            .label("vlan")
            .unwrap()
            .to_owned()
    };
    assert_eq!(vlan("vlan1"), "1");
    assert_eq!(vlan("vlan2"), "2");
    assert_eq!(
        vlan("vnet3"),
        "1",
        "member of br0, whose VLAN port is vlan1"
    );
    assert_eq!(
        vlan("vnet5"),
        "2",
        "member of br1, whose VLAN port is vlan2"
    );
    assert_eq!(vlan("veth402dbe0"), "");
    assert_eq!(vlan("enp8s0f0"), "");
    let info = one(&samples, "net_interface_info", "vnet3");
    let keys: Vec<_> = info.labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "interface",
            "instance",
            "instance_type",
            "app",
            "bridge",
            "vlan",
            "bond"
        ]
    );
    assert_eq!(info.label("bond"), Some(""));
    assert_eq!(info.value, 1.0);
}

/// A system container whose interface is an ipvlan (or macvlan) on the
/// host's NIC: its `iflink` is the NIC's ifindex, as a veth end's is its host
/// end's. (This kernel has no ipvlan, so the host is a fixture, in the sysfs
/// shape the kernel gives one.) The NIC stays the host's.
#[test]
fn an_ipvlan_parent_stays_the_hosts() {
    let host = crate::support::copy_fixture("seed-host");
    let pid = host.path().join("proc/4242");
    let eth0 = pid.join("root/sys/class/net/eth0");
    std::fs::create_dir_all(&eth0).unwrap();
    std::fs::create_dir_all(pid.join("ns")).unwrap();
    std::fs::write(pid.join("cgroup"), "0::/lxc.payload.ipv/init.scope\n").unwrap();
    std::os::unix::fs::symlink("net:[4026532999]", pid.join("ns/net")).unwrap();
    let nic = std::fs::read_to_string(host.path().join("sys/class/net/enp8s0f0/ifindex")).unwrap();
    std::fs::write(eth0.join("ifindex"), "5\n").unwrap();
    std::fs::write(eth0.join("iflink"), nic).unwrap();
    let samples = parse(&once_on_host(host.path(), &[]));
    let s = one(&samples, "net_interface_rx_bytes_total", "enp8s0f0");
    assert_eq!(s.label("instance"), Some("enp8s0f0"));
    assert_eq!(s.label("instance_type"), Some("physical"));
}

/// Speed and MTU from sysfs, with the counters' labels: Mb/s become bytes/s,
/// and `-1` (a bridge) or no file at all (a tap) means no speed.
#[test]
fn link_facts_come_from_sysfs() {
    let samples = parse(&seed_scrape(&[]));
    let gauge = |name: &str, iface: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.label("interface") == Some(iface))
            .map(|s| s.value)
    };
    assert_eq!(gauge("net_interface_speed_bytes", "enp8s0f0"), Some(1.25e9));
    assert_eq!(gauge("net_interface_speed_bytes", "enp8s0f1"), Some(1.25e8));
    assert_eq!(gauge("net_interface_speed_bytes", "br0"), None, "speed -1");
    assert_eq!(
        gauge("net_interface_speed_bytes", "vnet3"),
        None,
        "no speed file"
    );
    assert_eq!(gauge("net_interface_mtu_bytes", "enp8s0f0"), Some(9000.0));
    assert_eq!(gauge("net_interface_mtu_bytes", "lo"), Some(65536.0));
    assert_eq!(gauge("net_interface_mtu_bytes", "vnet3"), Some(1500.0));
    let speed = samples
        .iter()
        .find(|s| s.name == "net_interface_speed_bytes")
        .unwrap();
    let keys: Vec<_> = speed.labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, LABELS, "the counters' label set");
    let counter = one(&samples, "net_interface_rx_bytes_total", "enp8s0f0");
    assert_eq!(
        &one(&samples, "net_interface_speed_bytes", "enp8s0f0").labels,
        &counter.labels,
        "so a rate divides by it"
    );
}

#[test]
fn vm_taps_and_macvtaps_map_to_their_vms() {
    let samples = parse(&seed_scrape(&[]));
    let owner = |iface| {
        let s = one(&samples, "net_interface_rx_bytes_total", iface);
        (
            s.label("instance").unwrap().to_owned(),
            s.label("instance_type").unwrap().to_owned(),
        )
    };
    assert_eq!(owner("vnet0"), ("pihole".into(), "vm".into()));
    assert_eq!(owner("vnet1"), ("pritunl".into(), "vm".into()));
    assert_eq!(owner("vnet2"), ("vyos".into(), "vm".into()));
    assert_eq!(
        owner("macvtap0"),
        ("vyos".into(), "macvtap".into()),
        "held through /dev/tapN"
    );
    assert_eq!(
        owner("vnet5"),
        ("vnet5".into(), "vm".into()),
        "held by no running VM"
    );
    let up = samples
        .iter()
        .find(|s| s.name == "truenas_net_exporter_resolver_up" && s.label("resolver") == Some("vm"))
        .unwrap();
    assert_eq!(up.value, 1.0);
    // The fixture is a 24.10 host: its middleware has no container.query, which
    // is "no such containers here", not a failure of the LXC resolver.
    let midclt = samples
        .iter()
        .find(|s| {
            s.name == "truenas_net_exporter_source_up"
                && s.label("resolver") == Some("lxc")
                && s.label("source") == Some("midclt")
        })
        .unwrap();
    assert_eq!(midclt.value, 1.0);
}

#[test]
fn config_file_filters_and_renames_the_owner_label() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[labels]\nowner_label = \"owner\"\n[interfaces]\ninclude = \"^(br|veth|vnet)\"\nexclude = \"^veth4\"\n",
    )
    .unwrap();
    let samples = parse(&once_on_host(
        &fixture("seed-host"),
        &[&format!("--config.file={}", cfg.display())],
    ));
    let rx: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .collect();
    let names: Vec<_> = rx.iter().map(|s| s.label("interface").unwrap()).collect();
    assert!(names.contains(&"br0") && names.contains(&"vnet3") && names.contains(&"veth8b2f7e9"));
    assert!(!names.iter().any(|n| n.starts_with("veth4")), "{names:?}");
    assert!(
        !names.contains(&"enp8s0f0") && !names.contains(&"lo"),
        "{names:?}"
    );
    assert!(
        rx.iter()
            .all(|s| s.label("owner").is_some() && s.label("instance").is_none())
    );
}

/// Writes an up Ethernet link per name into `root`'s sysfs (ifindex from 2)
/// and returns a net/dev whose counters are the link's position.
fn plain_links(root: &std::path::Path, names: &[&[u8]]) -> Vec<u8> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let mut netdev =
        b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n".to_vec();
    for (i, name) in names.iter().enumerate() {
        let dir = root.join("sys/class/net").join(OsStr::from_bytes(name));
        std::fs::create_dir_all(&dir).unwrap();
        for (f, v) in [("ifindex", i + 2), ("iflink", i + 2), ("type", 1)] {
            std::fs::write(dir.join(f), format!("{v}\n")).unwrap();
        }
        std::fs::write(dir.join("operstate"), "up\n").unwrap();
        netdev.extend_from_slice(name);
        netdev.extend_from_slice(format!(": {i} 1 0 0 0 0 0 0 {i} 1 0 0 0 0 0 0\n").as_bytes());
    }
    netdev
}

/// Kernel interface names may hold `"`, `\` and bytes that are not UTF-8
/// (only `/`, `:`, whitespace and NUL are refused): they must come out escaped.
#[test]
fn hostile_interface_names_are_escaped() {
    let host = tempfile::tempdir().unwrap();
    let names: [&[u8]; 4] = [b"we\"ird", b"back\\slash", b"caf\xc3\xa9", b"bad\xffbyte"];
    let netdev = plain_links(host.path(), &names);
    std::fs::create_dir_all(host.path().join("proc/1/net")).unwrap();
    std::fs::write(host.path().join("proc/1/net/dev"), netdev).unwrap();

    let text = once_on_host(host.path(), &[]);
    assert!(
        text.contains(r#"interface="we\"ird",instance="we\"ird""#),
        "{text}"
    );
    assert!(text.contains(r#"interface="back\\slash""#));
    assert!(text.contains("interface=\"café\""));
    assert!(
        text.contains(r#"interface="bad\\xffbyte""#),
        "invalid UTF-8 written as \\xNN"
    );
    let samples = parse(&text);
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", "we\"ird").label("state"),
        Some("up")
    );
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", "back\\slash").value,
        1.0
    );
    promtool_check(&text);
}

/// One series per label set, whatever the host's names: names that differ
/// only in bytes that are not UTF-8 stay apart, a name that spells out another
/// one's escape gives way (counted), a name listed twice in net/dev is written
/// once (counted), a `master` link to itself is no bridge, and a sysfs value
/// that is huge, endless or not a file does not become a label.
#[test]
fn colliding_names_and_oversized_values_stay_one_series_each() {
    let host = tempfile::tempdir().unwrap();
    let net = host.path().join("sys/class/net");
    let names: [&[u8]; 6] = [
        br"bad\xffa", // a real name that spells out the next one's escape
        b"bad\xffa",
        b"bad\xfea",
        b"longstate",
        b"selfish",
        b"fifostate",
    ];
    let mut netdev = plain_links(host.path(), &names);
    // Listed twice: the second line is dropped.
    netdev.extend_from_slice(b"selfish: 99 1 0 0 0 0 0 0 99 1 0 0 0 0 0 0\n");
    std::fs::write(net.join("longstate/operstate"), "x".repeat(100)).unwrap();
    std::fs::create_dir_all(net.join("selfish/brport")).unwrap();
    std::os::unix::fs::symlink("../selfish", net.join("selfish/master")).unwrap();
    std::fs::remove_file(net.join("fifostate/operstate")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(net.join("fifostate/operstate"))
        .status()
        .unwrap();
    assert!(fifo.success());
    std::fs::create_dir_all(host.path().join("proc/1/net")).unwrap();
    std::fs::write(host.path().join("proc/1/net/dev"), netdev).unwrap();

    let text = once_on_host(host.path(), &[]);
    let samples = parse(&text);
    let rx: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .collect();
    let mut label_sets: Vec<_> = rx.iter().map(|s| format!("{:?}", s.labels)).collect();
    label_sets.sort();
    label_sets.dedup();
    assert_eq!(label_sets.len(), rx.len(), "a label set twice: {text}");
    let interfaces: Vec<_> = rx.iter().map(|s| s.label("interface").unwrap()).collect();
    assert_eq!(
        interfaces,
        [
            r"bad\xffa",
            r"bad\xfea",
            "fifostate",
            "longstate",
            "selfish"
        ],
        "the real name spelling out an escape sorts first and keeps it; the other gives way"
    );
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", r"bad\xffa").value,
        0.0
    );
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", "selfish").value,
        4.0
    );
    let gauge = |name: &str| samples.iter().find(|s| s.name == name).unwrap().value;
    assert_eq!(gauge("truenas_net_exporter_label_collisions"), 1.0);
    assert_eq!(
        gauge("truenas_net_exporter_netdev_malformed_lines_total"),
        1.0,
        "the repeated line"
    );
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", "selfish").label("bridge"),
        Some(""),
        "a master link to itself is no bridge"
    );
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", "longstate").label("state"),
        Some("x".repeat(64).as_str()),
        "sysfs values are cut to 64 bytes"
    );
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", "fifostate").label("state"),
        Some("unknown"),
        "a FIFO is not read"
    );
    promtool_check(&text);
}

#[test]
fn promtool_accepts_the_seed_scrape() {
    promtool_check(&seed_scrape(&[]));
}

/// `promtool check metrics` (Debian's prometheus package) is the reference
/// parser and linter: it must have nothing to say.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};

    if !crate::support::require(
        crate::support::have("promtool"),
        "promtool not installed (Debian package prometheus)",
    ) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

/// A host whose uplink is a bond (a TrueNAS LAGG) of two NICs, beside a
/// WireGuard device and a tun, in the sysfs shape the kernel gives them: the
/// bond has `bonding/`, `DEVTYPE=bond` and a `lower_<port>` link per port;
/// each port has `bonding_slave/` and a `master` link to the bond. (This
/// machine has no bonding module, so the host is made, not found.) The ports'
/// receive counters are `rx` each, the bond's their sum.
pub fn bond_host(rx: [u64; 2]) -> tempfile::TempDir {
    use std::os::unix::fs::symlink;
    let root = tempfile::tempdir().unwrap();
    let net = root.path().join("sys/class/net");
    let write = |iface: &str, file: &str, text: &str| {
        let path = net.join(iface).join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // name, ifindex, type, DEVTYPE, operstate, mtu, speed
    let links = [
        ("lo", 1, 772, "", "unknown", 65536, None),
        ("eno1", 2, 1, "", "up", 1500, Some(1000)),
        ("eno2", 3, 1, "", "up", 1500, Some(1000)),
        ("bond0", 4, 1, "bond", "up", 1500, Some(2000)),
        ("wg0", 5, 65534, "wireguard", "unknown", 1420, None),
        ("tun0", 6, 65534, "", "unknown", 1500, None),
    ];
    for (name, ifindex, kind, devtype, state, mtu, speed) in links {
        let devtype = if devtype.is_empty() {
            String::new()
        } else {
            format!("DEVTYPE={devtype}\n")
        };
        write(
            name,
            "uevent",
            &format!("{devtype}INTERFACE={name}\nIFINDEX={ifindex}\n"),
        );
        write(name, "ifindex", &format!("{ifindex}\n"));
        write(name, "iflink", &format!("{ifindex}\n"));
        write(name, "type", &format!("{kind}\n"));
        write(name, "operstate", &format!("{state}\n"));
        write(name, "mtu", &format!("{mtu}\n"));
        if let Some(mbps) = speed {
            write(name, "speed", &format!("{mbps}\n"));
        }
    }
    write("bond0", "bonding/slaves", "eno1 eno2\n");
    write("bond0", "bonding/mode", "802.3ad 4\n");
    write("tun0", "tun_flags", "0x1001\n");
    for port in ["eno1", "eno2"] {
        std::fs::create_dir_all(net.join(port).join("device/driver")).unwrap();
        write(port, "bonding_slave/state", "active\n");
        write(port, "bonding_slave/mii_status", "up\n");
        symlink("../bond0", net.join(port).join("master")).unwrap();
        symlink("../bond0", net.join(port).join("upper_bond0")).unwrap();
        symlink(
            format!("../{port}"),
            net.join("bond0").join(format!("lower_{port}")),
        )
        .unwrap();
    }
    std::fs::write(net.join("bonding_masters"), "bond0\n").unwrap();
    let dev = root.path().join("proc/1/net");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("dev"), bond_netdev(rx)).unwrap();
    root
}

/// net/dev of [`bond_host`] with the ports' receive bytes `rx`.
fn bond_netdev(rx: [u64; 2]) -> String {
    let mut text = String::from(
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    let sum = rx[0] + rx[1];
    for (name, bytes) in [
        ("lo", 100),
        ("eno1", rx[0]),
        ("eno2", rx[1]),
        ("bond0", sum),
        ("wg0", 300),
        ("tun0", 400),
    ] {
        text.push_str(&format!(
            "{name:>6}: {bytes} 10 0 0 0 0 0 0 {bytes} 10 0 0 0 0 0 0\n"
        ));
    }
    text
}

#[test]
fn a_bond_its_ports_and_tunnels_are_what_the_kernel_says() {
    let host = bond_host([1_000, 3_000]);
    let text = once_on_host(host.path(), &[]);
    let samples = parse(&text);
    let kind = |iface| {
        one(&samples, "net_interface_rx_bytes_total", iface)
            .label("instance_type")
            .unwrap()
            .to_owned()
    };
    assert_eq!(kind("bond0"), "bond");
    assert_eq!(kind("eno1"), "physical");
    assert_eq!(kind("eno2"), "physical");
    assert_eq!(kind("wg0"), "wireguard");
    assert_eq!(kind("tun0"), "tun");
    let bond = |iface| {
        one(&samples, "net_interface_info", iface)
            .label("bond")
            .unwrap()
            .to_owned()
    };
    assert_eq!(bond("eno1"), "bond0");
    assert_eq!(bond("eno2"), "bond0");
    assert_eq!(bond("bond0"), "");
    assert_eq!(bond("wg0"), "");
    // The bond's speed is the kernel's (here two 1 Gb/s ports in LACP).
    assert_eq!(
        one(&samples, "net_interface_speed_bytes", "bond0").value,
        2.5e8
    );
    // Its ports' counters are not labelled with the bond: they stay NICs.
    let port = one(&samples, "net_interface_rx_bytes_total", "eno1");
    assert_eq!(port.label("bridge"), Some(""));
    assert_eq!(port.label("instance"), Some("eno1"));
    promtool_check(&text);
}

/// A host without virsh, without the TrueNAS middleware (no client, no
/// socket), without Incus and without Docker: the log says each is missing,
/// and the metrics agree: no `source_up` for any of them (none is "up"),
/// while the resolvers, which found nothing of their kind, are up and no
/// alert has anything to fire on.
#[test]
fn sources_the_host_lacks_have_no_source_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("absent.toml");
    std::fs::write(
        &config,
        "[commands]\nchroot = false\n\
         [vm]\nvirsh_command = [\"/nonexistent/virsh\"]\n\
         [truenas]\nmidclt_command = [\"/nonexistent/midclt\", \"call\"]\n",
    )
    .unwrap();
    let host = fixture("seed-host");
    let docker = dir.path().join("no-docker.sock");
    let out = crate::support::run_once(&[
        &format!("--path.rootfs={}", host.display()),
        &format!("--path.procfs={}", host.join("proc").display()),
        &format!("--docker.socket={}", docker.display()),
        &format!("--config.file={}", config.display()),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    for said in [
        "no virsh on this host",
        "no TrueNAS middleware client on this host",
        "no Incus socket",
        "no Docker socket",
    ] {
        assert!(log.contains(said), "the log says {said:?}: {log}");
    }
    let samples = parse(&String::from_utf8(out.stdout).unwrap());
    let sources: Vec<String> = samples
        .iter()
        .filter(|s| s.name == "truenas_net_exporter_source_up")
        .map(|s| {
            format!(
                "{}/{} {}",
                s.label("resolver").unwrap(),
                s.label("source").unwrap(),
                s.value
            )
        })
        .collect();
    for absent in [
        "vm/virsh",
        "vm/midclt",
        "lxc/midclt",
        "middleware/socket",
        "middleware/midclt",
        "incus/socket",
        "docker/socket",
    ] {
        assert!(
            !sources.iter().any(|s| s.starts_with(&format!("{absent} "))),
            "{absent} is not on this host, so has no source_up: {sources:?}"
        );
    }
    assert!(
        sources.contains(&"vm/qemu 1".to_owned()) && sources.contains(&"lxc/cgroups 1".to_owned()),
        "the scans this host has are up: {sources:?}"
    );
    for resolver in ["vm", "lxc", "incus", "docker"] {
        let up = samples
            .iter()
            .find(|s| {
                s.name == "truenas_net_exporter_resolver_up"
                    && s.label("resolver") == Some(resolver)
            })
            .unwrap_or_else(|| panic!("resolver_up{{resolver={resolver:?}}}"));
        assert_eq!(
            up.value, 1.0,
            "{resolver}: nothing of its kind is not a failure"
        );
    }
}
