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

    // Link facts as sysfs has them: an up veth says 10000 Mb/s, a bridge with
    // no port has no speed (-1; with ports the kernel gives their best), a
    // down device none (EINVAL); every device has an MTU.
    let table = |file: &str| -> HashMap<String, String> {
        std::fs::read_to_string(root.path().join(file))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect()
    };
    let (mtu, speed) = (table("mtu.txt"), table("speed.txt"));
    let gauge = |name: &str, iface: &str| {
        after
            .iter()
            .find(|s| s.name == name && s.label("interface") == Some(iface))
            .map(|s| s.value)
    };
    assert_eq!(speed["up0"], "10000");
    assert_eq!(gauge("net_interface_speed_bytes", "up0"), Some(1.25e9));
    assert_eq!(speed["vethbr"], "-1");
    assert_eq!(
        gauge("net_interface_speed_bytes", "vethbr"),
        None,
        "a bridge without ports has no speed"
    );
    for (iface, value) in &speed {
        let expected = value
            .parse::<f64>()
            .ok()
            .filter(|v| *v > 0.0)
            .map(|v| v * 125_000.0);
        assert_eq!(
            gauge("net_interface_speed_bytes", iface),
            expected,
            "{iface}"
        );
    }
    for (iface, value) in &mtu {
        assert_eq!(
            gauge("net_interface_mtu_bytes", iface),
            value.parse().ok(),
            "{iface}"
        );
    }
    let s = one(&after, "net_interface_speed_bytes", "up0");
    assert_eq!(
        s.label("instance_type"),
        Some("docker"),
        "the counters' labels"
    );
}

/// Real QEMU processes (a TrueNAS VM, an Incus VM, a 26-style VM named by
/// UUID and paused), an LXC container found by its cgroup, a 26-style
/// libvirt-LXC container, and Incus instances behind a fake Incus API: each
/// maps to its owner through the union of the VM lookups and each lookup
/// alone, through a failing midclt, through a midclt and a virsh that both
/// hang, and on a 26-style host; and a `midclt` that hangs is killed at its
/// timeout while the server keeps answering.
#[test]
fn vms_and_system_containers_map_to_their_owners() {
    if !require(is_root(), "VM test needs root (unshare, taps, cgroups)")
        || !require(
            have("ip") && have("unshare") && have("curl") && have("mknod"),
            "VM test needs iproute2, util-linux, coreutils and curl",
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
    let incus = fake_incus(&root.path().join("var/lib/incus/unix.socket"));
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
    assert!(
        incus.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the Incus API was asked"
    );
    let read = |f: &str| std::fs::read_to_string(root.path().join("out").join(f)).unwrap();
    let lxc = read("lxc-name").trim().to_owned();
    let uuid = "6f1c2a4e-8d3b-4e5f-a6b7-c8d9e0f1a2b3";

    let owners = |run: &str, expected: &[(&str, &str, &str, &str)]| {
        let samples = parse(&read(&format!("{run}.prom")));
        for &(iface, instance, kind, bridge) in expected {
            let s = one(&samples, "net_interface_rx_bytes_total", iface);
            let got = (
                s.label("instance").unwrap(),
                s.label("instance_type").unwrap(),
                s.label("bridge").unwrap(),
            );
            assert_eq!(
                got,
                (instance, kind, bridge),
                "{iface} in run {run}; its log:\n{}",
                read(&format!("{run}.log"))
            );
        }
        samples
    };
    let gauge = |samples: &[crate::support::Sample], name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name}{labels:?}"))
            .value
    };
    let vyos = [
        ("vnet0", "vyos", "vm", "br0"),
        ("vnet1", "vyos", "vm", "br0"),
        ("macvtap0", "vyos", "macvtap", ""),
    ];
    let ha = |name| {
        [
            ("vnet2", name, "vm", "br0"),
            ("macvtap1", name, "macvtap", ""),
        ]
    };

    // The union: the middleware names vyos and the UUID VM (paused), the scan
    // adds the QEMU it does not know; Incus and cgroups name the containers.
    let union = owners("union", &vyos);
    owners("union", &ha("homeassistant"));
    owners(
        "union",
        &[
            ("tap1a2b3c4d", "c2", "vm", ""),
            ("vethlxc0", lxc.as_str(), "incus", "br0"),
            ("veth7e3a1b2c", "web", "incus", ""),
            ("mac0a1b2c3d", "web", "macvtap", ""),
            ("tap5d4c3b2a", "winvm", "vm", ""),
        ],
    );
    // The macvlan parents stay the host's: br0 a bridge, up0 the veth it is.
    owners(
        "union",
        &[("br0", "br0", "bridge", ""), ("up0", "up0", "docker", "")],
    );
    for resolver in ["vm", "lxc", "incus"] {
        let up = gauge(
            &union,
            "truenas_net_exporter_resolver_up",
            &[("resolver", resolver)],
        );
        assert_eq!(up, 1.0, "{resolver}");
    }
    for (resolver, source) in [
        ("vm", "midclt"),
        ("vm", "virsh"),
        ("vm", "qemu"),
        ("lxc", "midclt"),
        ("lxc", "cgroups"),
    ] {
        let labels = [("resolver", resolver), ("source", source)];
        assert_eq!(
            gauge(&union, "truenas_net_exporter_source_up", &labels),
            1.0,
            "{labels:?}"
        );
    }
    let log = read("union.log");
    assert!(
        log.contains("TrueNAS middleware methods")
            && log.contains("answers=vm.query")
            && log.contains("not_on_this_release=container.query"),
        "the middleware's methods, said once: {log}"
    );

    // Each lookup alone.
    owners("qemu", &vyos);
    owners("qemu", &ha(uuid));
    owners("qemu", &[("tap1a2b3c4d", "c2", "vm", "")]);
    for run in ["midclt", "chroot"] {
        owners(run, &vyos);
        owners(run, &ha("homeassistant"));
        owners(run, &[("tap1a2b3c4d", "tap1a2b3c4d", "unknown", "")]);
    }
    owners("virsh", &vyos);

    // midclt fails: the other lookups still apply; only it is down.
    let broken = owners("broken", &vyos);
    owners("broken", &ha(uuid));
    let vm_up = &[("resolver", "vm")];
    assert_eq!(
        gauge(&broken, "truenas_net_exporter_resolver_up", vm_up),
        1.0
    );
    let midclt = &[("resolver", "vm"), ("source", "midclt")];
    assert_eq!(
        gauge(&broken, "truenas_net_exporter_source_up", midclt),
        0.0
    );
    assert!(gauge(&broken, "truenas_net_exporter_source_errors_total", midclt) >= 1.0);
    assert!(
        read("broken.log").contains("source failing"),
        "{}",
        read("broken.log")
    );

    // midclt and virsh hang together: the scan alone names the VMs, and
    // only the two hung lookups are down.
    let hung = owners("hungtools", &vyos);
    owners("hungtools", &ha(uuid));
    assert_eq!(gauge(&hung, "truenas_net_exporter_resolver_up", vm_up), 1.0);
    for (source, up) in [("midclt", 0.0), ("virsh", 0.0), ("qemu", 1.0)] {
        let labels = [("resolver", "vm"), ("source", source)];
        assert_eq!(
            gauge(&hung, "truenas_net_exporter_source_up", &labels),
            up,
            "{labels:?}"
        );
    }

    // A TrueNAS 26 host: container.query names the libvirt-LXC container
    // (through its supervisor's pid), vm.query the UUID VM; no virt.* and no
    // Incus socket, which is not a failure.
    let tn26 = owners(
        "truenas26",
        &[
            ("vnet7", "debian", "lxc", "truenasbr0"),
            ("up0", "up0", "docker", ""),
            ("br0", "br0", "bridge", ""),
        ],
    );
    owners("truenas26", &ha("homeassistant"));
    for resolver in ["vm", "lxc", "incus"] {
        let up = gauge(
            &tn26,
            "truenas_net_exporter_resolver_up",
            &[("resolver", resolver)],
        );
        assert_eq!(up, 1.0, "{resolver}");
    }
    let log = read("truenas26.log");
    assert!(log.contains("no Incus socket"), "{log}");
    assert!(log.contains("answers=container.query, vm.query"), "{log}");

    // container.query hangs past the lxc refresh timeout: the cgroup scan
    // still names its container, and only the midclt lookup is down.
    let hunglxc = owners("hunglxc", &[("vethlxc0", lxc.as_str(), "incus", "br0")]);
    let lxc_up = &[("resolver", "lxc")];
    assert_eq!(
        gauge(&hunglxc, "truenas_net_exporter_resolver_up", lxc_up),
        1.0
    );
    for (source, up) in [("midclt", 0.0), ("cgroups", 1.0)] {
        let labels = [("resolver", "lxc"), ("source", source)];
        assert_eq!(
            gauge(&hunglxc, "truenas_net_exporter_source_up", &labels),
            up,
            "{labels:?}"
        );
    }
    // One domain's domiflist hangs: virsh still names the other's interfaces.
    owners("hungvirsh", &vyos);

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

/// A fake Incus API on a unix socket: `GET /1.0/instances?recursion=1...`
/// answers in the real shape, claiming the Incus devices vm-topology.sh
/// makes. Returns a count of the requests it served.
fn fake_incus(socket: &Path) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&served);
    let body = r#"{"type": "sync", "status": "Success", "status_code": 200, "operation": "", "error_code": 0, "error": "",
 "metadata": [
  {"name": "web", "type": "container", "project": "default", "status": "Running", "status_code": 103,
   "architecture": "x86_64", "ephemeral": false, "stateful": false, "description": "",
   "config": {"image.os": "Debian", "volatile.base_image": "5f2c", "volatile.eth0.host_name": "veth7e3a1b2c",
              "volatile.eth0.hwaddr": "00:16:3e:12:34:56", "volatile.eth1.host_name": "mac0a1b2c3d",
              "volatile.eth1.hwaddr": "00:16:3e:12:34:57"},
   "devices": {}, "expanded_devices": {"eth0": {"network": "incusbr0", "type": "nic"}}},
  {"name": "winvm", "type": "virtual-machine", "project": "default", "status": "Running", "status_code": 103,
   "config": {"volatile.eth0.host_name": "tap5d4c3b2a", "volatile.eth0.hwaddr": "00:16:3e:aa:bb:cc"},
   "devices": {}},
  {"name": "stopped", "type": "container", "project": "default", "status": "Stopped", "status_code": 102,
   "config": {"volatile.eth0.hwaddr": "00:16:3e:00:00:01"}, "devices": {}}
 ]}"#;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let mut conn = conn;
            if request.starts_with("GET /1.0/instances?recursion=1") {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            } else {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    served
}
