//! Layer 3: real kernel devices. As root, `kernel-topology.sh` builds bridges,
//! veths, taps, a macvtap, a macvlan and a vxlan (named to defeat prefix
//! guessing) in a private namespace, and scrapes them before and after traffic.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::support::{bin, have, is_root, one, parse, require};

#[test]
fn real_devices_are_classified_and_counted() {
    if !require(is_root(), "kernel test needs root (unshare, ip link)")
        || !require(
            have("ip") && have("unshare"),
            "kernel test needs iproute2 and util-linux",
        )
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sys")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/kernel-topology.sh");
    let out = Command::new("unshare")
        .args(["-n", "-p", "-f", "-m", "--mount-proc", "bash"])
        .arg(&script)
        .env("BIN", bin())
        .env("ROOT", root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "topology script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = parse(&std::fs::read_to_string(root.path().join("before.prom")).unwrap());
    let after = parse(&std::fs::read_to_string(root.path().join("after.prom")).unwrap());
    let operstate: HashMap<String, String> =
        std::fs::read_to_string(root.path().join("operstate.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect();

    let expected = [
        ("lo", "loopback", ""),
        ("lan", "bridge", ""),
        ("vethbr", "bridge", ""),
        ("brfake0", "docker", "lan"),
        ("peer0", "docker", ""),
        ("mvt0", "macvtap", ""),
        ("vlan5", "macvtap", ""),
        ("veth-vx", "unknown", ""),
        ("vnet9", "vm", "lan"),
        ("tapx", "unknown", ""),
        ("up0", "docker", ""),
    ];
    for (iface, kind, bridge) in expected {
        let s = one(&after, "net_interface_rx_bytes_total", iface);
        assert_eq!(s.label("instance_type"), Some(kind), "{iface}");
        assert_eq!(s.label("bridge"), Some(bridge), "{iface}");
        assert_eq!(s.label("instance"), Some(iface));
        assert_eq!(
            s.label("state"),
            operstate.get(iface).map(String::as_str),
            "{iface} state as sysfs says"
        );
    }
    let rx: Vec<_> = after
        .iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .collect();
    assert_eq!(
        rx.len(),
        operstate.len(),
        "every interface in sysfs is exported once"
    );

    // 25 UDP datagrams went out of up0 and into its peer up1.
    let moved = |metric: &str, iface: &str| {
        one(&after, metric, iface).value - one(&before, metric, iface).value
    };
    assert!(moved("net_interface_tx_packets_total", "up0") >= 25.0);
    assert!(moved("net_interface_rx_packets_total", "up1") >= 25.0);
    assert!(
        moved("net_interface_tx_bytes_total", "up0") >= 25.0 * 42.0,
        "UDP+IP+Ethernet headers per datagram"
    );
    assert_eq!(moved("net_interface_rx_packets_total", "lan"), 0.0);
}

/// Real QEMU processes holding taps and a macvtap, and an "LXC container",
/// resolved through each VM source: the QEMU scan, a fake `midclt` run directly
/// and through `chroot` into a busybox root, a fake `virsh`; and a `midclt`
/// that hangs, killed at its timeout while the server keeps answering.
#[test]
fn vms_and_lxc_containers_map_to_their_owners() {
    if !require(is_root(), "VM test needs root (unshare, taps, cgroups)")
        || !require(
            have("ip") && have("unshare") && have("curl"),
            "VM test needs iproute2, util-linux and curl",
        )
        || !require(
            have("qemu-system-x86_64"),
            "VM test needs qemu-system-x86_64 (Debian qemu-system-x86)",
        )
        || !require(
            Path::new("/bin/busybox").exists(),
            "VM test needs busybox-static",
        )
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/vm-topology.sh");
    let out = Command::new("unshare")
        .args(["-n", "-p", "-f", "-m", "--mount-proc", "bash"])
        .arg(&script)
        .env("BIN", bin())
        .env("ROOT", root.path())
        .env("TNE_ID", std::process::id().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "VM script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(root.path().join("out").join(f)).unwrap();
    let lxc = read("lxc-name").trim().to_owned();

    for source in ["qemu", "midclt", "chroot", "virsh"] {
        let samples = parse(&read(&format!("{source}.prom")));
        let expected = [
            ("vnet0", "vyos", "vm", "br0"),
            ("vnet1", "vyos", "vm", "br0"),
            ("macvtap0", "vyos", "macvtap", ""),
            ("tap1a2b3c4d", "c2", "vm", ""),
            ("vethlxc0", lxc.as_str(), "incus", "br0"),
        ];
        for (iface, instance, kind, bridge) in expected {
            let s = one(&samples, "net_interface_rx_bytes_total", iface);
            let got = (
                s.label("instance").unwrap(),
                s.label("instance_type").unwrap(),
                s.label("bridge").unwrap(),
            );
            assert_eq!(got, (instance, kind, bridge), "{iface} via {source}");
        }
        let up = samples
            .iter()
            .find(|s| {
                s.name == "truenas_net_exporter_resolver_up" && s.label("resolver") == Some("vm")
            })
            .unwrap();
        assert_eq!(up.value, 1.0, "{source}");
    }

    // The hung midclt: every scrape answered, the resolver says so, no child left behind.
    let codes = read("hung-codes.txt");
    assert_eq!(codes.lines().count(), 5);
    for line in codes.lines() {
        let (code, secs) = line.split_once(' ').unwrap();
        assert_eq!(code, "200");
        assert!(
            secs.parse::<f64>().unwrap() < 1.0,
            "a scrape waited on midclt: {line}"
        );
    }
    let last = parse(&read("hung-5.prom"));
    let vm = |name: &str| {
        last.iter()
            .find(|s| s.name == name && s.label("resolver") == Some("vm"))
            .unwrap()
            .value
    };
    assert_eq!(vm("truenas_net_exporter_resolver_up"), 0.0);
    assert!(
        vm("truenas_net_exporter_resolver_errors_total") >= 2.0,
        "timeouts counted"
    );
    assert!(
        read("hung-alive.txt").trim().parse::<u32>().unwrap() <= 1,
        "timed-out midclts were killed"
    );
    assert_eq!(
        read("hung-zombies.txt").trim(),
        "0",
        "killed midclts were reaped"
    );
}
