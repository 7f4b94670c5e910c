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
