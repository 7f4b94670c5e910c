//! Traffic per workload on a TrueNAS-like host, with a real Docker engine:
//! cgroup2 alone at /sys/fs/cgroup and a dockerd of its own with TrueNAS's
//! cgroupfs layout, in a private host (`workloads-docker.sh`). A bridged, a
//! host-network and a macvlan container, a systemd-service stand-in, an
//! LXC/Incus container and a TrueNAS 26 container (the middleware faked,
//! as it cannot run here) each send a known number of bytes to a LAN
//! behind the uplink; the exporter names each one's bytes, and together
//! they are nearly all of the uplink's.

use std::time::Duration;

use crate::fake_middleware::{FakeMiddleware, Mode};
use crate::support::{PrivateHost, have, in_private_host, is_root, parse, require, wait_for};

const BYTES: u64 = 20_000_000;

#[test]
fn every_workload_on_a_truenas_like_host_is_named() {
    let tools = [
        "dockerd",
        "docker",
        "busybox",
        "python3",
        "unshare",
        "nsenter",
        "curl",
        "ip",
        "qemu-system-x86_64",
        "setpriv",
    ];
    if !require(is_root(), "needs root for namespaces, dockerd and BPF")
        || !require(
            tools.iter().all(|t| have(t)),
            &format!("needs {}", tools.join(", ")),
        )
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("config.toml"),
        "[vm]\nsources = [\"qemu\"]\n[lxc]\ninterval = \"1s\"\n[incus]\nenabled = false\n\
         [docker]\ninterval = \"2s\"\n[accounting]\ninterval = \"1s\"\n",
    )
    .unwrap();
    // TrueNAS 26's middleware, for its containers: the script mounts this
    // directory at /run/middleware.
    let middleware = FakeMiddleware::start(&root.path().join("mw/middlewared.sock"), Mode::JsonRpc);
    middleware.set_methods(&["container.query"]);
    let unshare = in_private_host("workloads-docker.sh")
        .env("ROOT", root.path())
        .env("PORT", "9551")
        .env("BYTES", BYTES.to_string())
        .spawn()
        .unwrap();
    let host = PrivateHost { unshare, root };
    host.wait_file("ready");
    host.wait_file("vnet31.pid");
    let pid = std::fs::read_to_string(host.root.path().join("vnet31.pid")).unwrap();
    let pid: u32 = pid.trim().parse().unwrap();
    middleware.set_rows(
        "container.query",
        vec![serde_json::json!({
            "id": 1,
            "name": "tnect",
            "status": {"state": "RUNNING", "pid": pid, "domain_state": "RUNNING"},
        })],
    );
    host.wait_file("sent");

    let workloads = [
        ("docker", "bridged"),
        ("docker", "hostnet"),
        ("docker", "macvlan"),
        ("service", "tnesvc"),
        ("incus", "tnelxc"),
        ("lxc", "tnect"),
    ];
    let value = |body: &str, family: &str, kind: &str, name: &str| {
        parse(body)
            .iter()
            .find(|s| {
                s.name == family
                    && s.label("instance_type") == Some(kind)
                    && s.label("instance") == Some(name)
            })
            .map(|s| s.value as u64)
    };
    let tx_of =
        |body: &str, kind: &str, name: &str| value(body, "net_workload_tx_bytes_total", kind, name);
    let body = wait_for(Duration::from_secs(20), || {
        let body = host.get("/metrics");
        workloads
            .iter()
            .all(|(k, n)| tx_of(&body, k, n).is_some_and(|v| v >= BYTES))
            .then_some(body)
    })
    .unwrap_or_else(|| {
        panic!(
            "every workload named with its bytes: {}\n{}",
            host.get("/metrics")
                .lines()
                .filter(|l| l.starts_with("net_workload_tx_bytes"))
                .collect::<Vec<_>>()
                .join("\n"),
            host.log()
        )
    });
    // The VM's tap is the VM's, and each system container's veth its
    // container's, in the interface counters.
    for (interface, kind, instance) in [
        ("vnet30", "vm", "tnevm"),
        ("veth5e1c0a11", "incus", "tnelxc"),
        ("vnet31", "lxc", "tnect"),
    ] {
        let info = parse(&body)
            .into_iter()
            .find(|s| s.name == "net_interface_info" && s.label("interface") == Some(interface));
        let labels = info
            .as_ref()
            .map(|s| (s.label("instance_type"), s.label("instance")));
        assert_eq!(
            labels,
            Some((Some(kind), Some(instance))),
            "{interface}: {info:?}"
        );
    }
    for line in body
        .lines()
        .filter(|l| l.starts_with("net_workload_tx_bytes"))
    {
        eprintln!("{line}");
    }
    let sink = std::fs::read_to_string(host.root.path().join("sink.log")).unwrap_or_default();
    eprintln!("the LAN received (peer, bytes):\n{sink}");
    let mut named = 0;
    for (kind, name) in workloads {
        let tx = tx_of(&body, kind, name).unwrap();
        let packets = value(&body, "net_workload_tx_packets_total", kind, name).unwrap();
        eprintln!("{kind} {name}: {tx} bytes sent in {packets} packets");
        // L3: the payload and each packet's IP and TCP headers (at most 60
        // bytes), and 5% for what TCP sends again when the receiving end
        // falls behind (on a busy 2-core machine, it does).
        assert!(
            tx <= BYTES + 60 * packets + BYTES / 20,
            "{kind} {name}: {tx} bytes in {packets} packets"
        );
        named += tx;
    }
    let uplink = parse(&body)
        .iter()
        .find(|s| {
            s.name == "net_interface_tx_bytes_total" && s.label("interface") == Some("uplink0")
        })
        .map(|s| s.value as u64)
        .expect("the uplink's counters");
    let share = named as f64 / uplink as f64;
    eprintln!(
        "named: {named} of the uplink's {uplink} bytes sent: {:.1}%",
        share * 100.0
    );
    assert!(share >= 0.95, "named {:.1}% of the uplink", share * 100.0);

    // Without CAP_BPF: the macvlan container, which has no host interface,
    // still gets its namespace's counters (Ethernet frames: at least what
    // it sent); the others are not named that way (the bridged one has its
    // veth, the host-network one and the service no namespace of their own).
    let unprivileged = host.get_on(9552, "/metrics");
    let macvlan = tx_of(&unprivileged, "docker", "macvlan");
    assert!(
        macvlan.is_some_and(|v| (BYTES..=BYTES + BYTES / 10).contains(&v)),
        "the macvlan container from its namespace: {macvlan:?}"
    );
    for (kind, name) in [
        ("docker", "bridged"),
        ("docker", "hostnet"),
        ("service", "tnesvc"),
        ("incus", "tnelxc"),
        ("lxc", "tnect"),
    ] {
        assert_eq!(tx_of(&unprivileged, kind, name), None, "{name}");
    }
    // Turned off: no workload families at all, the namespace fallback
    // included.
    let off = host.get_on(9553, "/metrics");
    assert!(
        off.contains("net_interface_rx_bytes_total") && !off.contains("net_workload_"),
        "[accounting] enabled = false"
    );
    let log = std::fs::read_to_string(host.root.path().join("unprivileged.log")).unwrap();
    assert_eq!(
        log.matches("cannot count traffic per cgroup").count(),
        1,
        "said once: {log}"
    );
    assert!(
        share <= 1.01,
        "named more than the uplink sent: {:.1}%",
        share * 100.0
    );
}
