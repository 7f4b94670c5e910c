//! TrueNAS owners by event: the exporter asks the middleware over its own
//! socket (a fake that speaks the middleware's protocols, on a real unix
//! socket) and follows its events, with midclt only as the fallback. On the
//! seed-host fixture here; with real QEMU taps and real link notifications
//! in a private namespace below.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_middleware::{FakeMiddleware, Mode};
use crate::http::Server;
use crate::support::{
    PrivateHost, copy_fixture, fixture, have, http, in_private_host, is_root, parse, require,
    wait_for,
};

/// Where the exporter looks for the socket under its root (26's path).
const SOCKET: &str = "run/middleware/middlewared.sock";

/// The seed host's `vm.query` rows, as its fake midclt prints them.
fn seed_rows() -> Vec<Value> {
    let out = Command::new(fixture("seed-host").join("usr/bin/midclt"))
        .args(["call", "vm.query"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A midclt that counts its runs in `<dir>/midclt-runs` and then answers as
/// the seed host's does.
fn counting_midclt(dir: &Path) -> PathBuf {
    let script = dir.join("counting-midclt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> {}\nexec {} \"$@\"\n",
            dir.join("midclt-runs").display(),
            fixture("seed-host").join("usr/bin/midclt").display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    script
}

fn midclt_runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("midclt-runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// VMs from the middleware only, refreshed once an hour: whatever changes
/// sooner came by event.
fn config_text(midclt: &Path) -> String {
    format!(
        "[vm]\nsources = [\"midclt\"]\ninterval = \"1h\"\n[lxc]\nenabled = false\n[incus]\nenabled = false\n\
         [commands]\nchroot = false\n[truenas]\nmidclt_command = [{:?}, \"call\"]\n",
        midclt.display().to_string()
    )
}

/// `interface`'s owner label in a fresh scrape.
fn owner_of(addr: SocketAddr, interface: &str) -> Option<String> {
    let samples = parse(&http(addr, "GET", "/metrics").body);
    samples
        .iter()
        .find(|s| {
            s.name == "net_interface_rx_bytes_total" && s.label("interface") == Some(interface)
        })
        .and_then(|s| s.label("instance").map(str::to_owned))
}

fn source_up(addr: SocketAddr, source: &str) -> Option<f64> {
    parse(&http(addr, "GET", "/metrics").body)
        .iter()
        .find(|s| {
            s.name == "truenas_net_exporter_source_up"
                && s.label("resolver") == Some("middleware")
                && s.label("source") == Some(source)
        })
        .map(|s| s.value)
}

/// One VM row of `vm.query`, running as `pid`.
fn row(id: u64, name: &str, pid: u64) -> Value {
    json!({"id": id, "name": name, "devices": [],
           "status": {"state": "RUNNING", "pid": pid, "domain_state": "RUNNING"}})
}

/// Announces a change and waits a second, with no scrape in between; then
/// the first scrape must show `vnet3`'s owner as `expected`.
fn after_event(
    addr: SocketAddr,
    fake: &FakeMiddleware,
    msg: &str,
    fields: Option<Value>,
    expected: &str,
) {
    fake.announce("vm.query", msg, json!(3), fields);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        owner_of(addr, "vnet3").as_deref(),
        Some(expected),
        "vnet3's owner 1 s after a {msg} event"
    );
}

/// JSON-RPC (25.04 and later) and the legacy protocol (24.10, whose
/// `/api/current` is a 404) pass the same test: names from the socket with
/// no midclt run; an added, a changed and a removed VM each show at the
/// first scrape, 1 s after their event, with the periodic refresh an hour
/// away; a middleware restart is followed by a new subscription and events
/// work again.
#[test]
fn vms_follow_the_middlewares_events_over_its_socket() {
    for mode in [Mode::JsonRpc, Mode::Release2410] {
        let host = copy_fixture("seed-host");
        let tools = tempfile::tempdir().unwrap();
        let fake = FakeMiddleware::start(&host.path().join(SOCKET), mode);
        fake.set_methods(&["vm.query"]);
        // vyos (pid 7730, vnet3 among its taps) is not there yet.
        let without_vyos: Vec<Value> = seed_rows()
            .into_iter()
            .filter(|r| r["name"] != "vyos")
            .collect();
        fake.set_rows("vm.query", without_vyos.clone());
        let server = Server::start(host.path(), &config_text(&counting_midclt(tools.path())));

        let first = wait_for(Duration::from_secs(10), || {
            owner_of(server.addr, "vnet0").filter(|o| o == "pihole")
        });
        assert!(first.is_some(), "{mode:?}: the socket's VMs are named");
        let subscribed = wait_for(Duration::from_secs(5), || {
            fake.subscriptions()
                .contains(&"vm.query".to_owned())
                .then_some(())
        });
        assert!(subscribed.is_some(), "{mode:?}: subscribed to vm.query");
        // The first refresh, the subscription's probe and the refresh it
        // wakes, done before anything changes.
        let settled = wait_for(Duration::from_secs(5), || {
            (fake.calls("vm.query") >= 3).then_some(())
        });
        assert!(
            settled.is_some(),
            "{mode:?}: {} calls",
            fake.calls("vm.query")
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(owner_of(server.addr, "vnet3").as_deref(), Some("vnet3"));

        let mut rows = without_vyos.clone();
        rows.push(row(3, "vyos", 7730));
        fake.set_rows("vm.query", rows.clone());
        after_event(
            server.addr,
            &fake,
            "added",
            Some(row(3, "vyos", 7730)),
            "vyos",
        );

        rows.retain(|r| r["id"] != 3);
        rows.push(row(3, "router", 7730));
        fake.set_rows("vm.query", rows);
        after_event(
            server.addr,
            &fake,
            "changed",
            Some(row(3, "router", 7730)),
            "router",
        );

        fake.set_rows("vm.query", without_vyos.clone());
        after_event(server.addr, &fake, "removed", None, "vnet3");

        // A restart: the connection drops, the client reconnects with
        // backoff and subscribes again.
        fake.stop();
        std::thread::sleep(Duration::from_millis(300));
        fake.start_again();
        let again = wait_for(Duration::from_secs(15), || {
            (fake.connections() >= 2 && fake.subscriptions().contains(&"vm.query".to_owned()))
                .then_some(())
        });
        assert!(
            again.is_some(),
            "{mode:?}: subscribed again after a restart"
        );
        let mut rows = without_vyos;
        rows.push(row(3, "vyos", 7730));
        fake.set_rows("vm.query", rows);
        after_event(
            server.addr,
            &fake,
            "changed",
            Some(row(3, "vyos", 7730)),
            "vyos",
        );

        assert_eq!(
            midclt_runs(tools.path()),
            0,
            "{mode:?}: no midclt while the socket answers"
        );
        assert_eq!(source_up(server.addr, "socket"), Some(1.0), "{mode:?}");
        assert_eq!(
            source_up(server.addr, "midclt"),
            None,
            "{mode:?}: midclt never ran, so it has no series"
        );
        assert!(
            fake.calls("vm.query") >= 5,
            "{mode:?}: {} calls",
            fake.calls("vm.query")
        );
    }
}

/// Without a socket, midclt answers, and the metrics say which way worked.
#[test]
fn midclt_is_the_fallback_without_a_socket() {
    let host = copy_fixture("seed-host");
    let tools = tempfile::tempdir().unwrap();
    let server = Server::start(host.path(), &config_text(&counting_midclt(tools.path())));
    let named = wait_for(Duration::from_secs(10), || {
        owner_of(server.addr, "vnet3").filter(|o| o == "vyos")
    });
    assert!(named.is_some(), "midclt names the VMs");
    assert!(midclt_runs(tools.path()) >= 1);
    assert_eq!(source_up(server.addr, "midclt"), Some(1.0));
    assert_eq!(
        source_up(server.addr, "socket"),
        None,
        "no socket on this host: no series"
    );
}

/// With every resolver on and refreshing each second, a host whose
/// middleware answers over its socket starts no process: no midclt, and
/// virsh once, at the first refresh, before the socket has been seen to
/// answer. When the middleware goes away, both run again.
#[test]
fn the_socket_leaves_no_process_to_start() {
    let host = copy_fixture("seed-host");
    let tools = tempfile::tempdir().unwrap();
    let fake = FakeMiddleware::start(&host.path().join(SOCKET), Mode::JsonRpc);
    fake.set_methods(&["vm.query"]);
    fake.set_rows("vm.query", seed_rows());
    let virsh = tools.path().join("virsh");
    std::fs::write(
        &virsh,
        format!(
            "#!/bin/sh\necho run >> {}\n",
            tools.path().join("virsh-runs").display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&virsh)
        .status()
        .unwrap();
    let virsh_runs = || {
        std::fs::read_to_string(tools.path().join("virsh-runs"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let midclt = counting_midclt(tools.path());
    let config = format!(
        "[vm]\ninterval = \"1s\"\nvirsh_command = [{virsh:?}]\n[lxc]\ninterval = \"1s\"\n\
         [incus]\ninterval = \"1s\"\n[commands]\nchroot = false\n\
         [truenas]\nmidclt_command = [{midclt:?}, \"call\"]\n",
        virsh = virsh.display().to_string(),
        midclt = midclt.display().to_string(),
    );
    let server = Server::start(host.path(), &config);
    let named = wait_for(Duration::from_secs(10), || {
        owner_of(server.addr, "vnet3").filter(|o| o == "vyos")
    });
    assert!(named.is_some(), "the socket names the VMs");
    let calls = fake.calls("vm.query");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        fake.calls("vm.query") >= calls + 3,
        "the VM resolver kept refreshing: {} calls",
        fake.calls("vm.query")
    );
    assert_eq!(midclt_runs(tools.path()), 0, "no midclt");
    assert!(virsh_runs() <= 1, "virsh ran {} times", virsh_runs());
    assert_eq!(owner_of(server.addr, "vnet3").as_deref(), Some("vyos"));

    fake.stop();
    let fallback = wait_for(Duration::from_secs(10), || {
        (midclt_runs(tools.path()) >= 1 && virsh_runs() >= 2).then_some(())
    });
    assert!(
        fallback.is_some(),
        "without the socket: {} midclt, {} virsh runs",
        midclt_runs(tools.path()),
        virsh_runs()
    );
    assert_eq!(owner_of(server.addr, "vnet3").as_deref(), Some("vyos"));
}

/// A tap that appears between two refreshes, met first by a scrape: the
/// scrape wakes the resolvers and waits (a bounded wait) for their answer,
/// so even that first scrape names its VM, and never leaves it out. The
/// exporter's histogram says what the wait cost.
#[test]
fn a_new_tap_is_named_at_the_first_scrape_that_meets_it() {
    let host = copy_fixture("seed-host");
    let tools = tempfile::tempdir().unwrap();
    let fake = FakeMiddleware::start(&host.path().join(SOCKET), Mode::JsonRpc);
    fake.set_methods(&["vm.query"]);
    let mut rows = seed_rows();
    rows.push(row(9, "9_newvm", 7740));
    fake.set_rows("vm.query", rows);
    let config = config_text(&counting_midclt(tools.path())) + "[topology]\ninterval = \"1h\"\n";
    let server = Server::start(host.path(), &config);
    let named = wait_for(Duration::from_secs(10), || {
        owner_of(server.addr, "vnet3").filter(|o| o == "vyos")
    });
    assert!(named.is_some(), "the first refreshes are done");
    let waits = |samples: &[crate::support::Sample], suffix: &str| {
        samples
            .iter()
            .find(|s| s.name == format!("truenas_net_exporter_new_interface_wait_seconds_{suffix}"))
            .map(|s| s.value)
    };
    // A scrape before the first topology may have waited for it already;
    // the exporter's own metrics are rendered at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let before = parse(&http(server.addr, "GET", "/metrics").body);
    let (count_before, sum_before) = (
        waits(&before, "count").unwrap_or(0.0),
        waits(&before, "sum").unwrap_or(0.0),
    );
    // The scrape-triggered wake is rate-limited from the exporter's start.
    std::thread::sleep(truenas_net_exporter::hub::UNKNOWN_WAKE_GAP);

    // The VM starts: its QEMU (pid 7740) holds the new tap vnet9.
    let root = host.path();
    let qemu = root.join("proc/7740");
    std::fs::create_dir_all(qemu.join("fd")).unwrap();
    std::fs::create_dir_all(qemu.join("fdinfo")).unwrap();
    std::os::unix::fs::symlink("/dev/net/tun", qemu.join("fd/40")).unwrap();
    std::fs::write(
        qemu.join("fdinfo/40"),
        "pos:\t0\nflags:\t0104002\niff:\tvnet9\n",
    )
    .unwrap();
    let tap = root.join("sys/class/net/vnet9");
    std::fs::create_dir_all(&tap).unwrap();
    for (file, text) in [
        ("ifindex", "99\n"),
        ("iflink", "99\n"),
        ("type", "1\n"),
        ("tun_flags", "0x1002\n"),
        ("operstate", "unknown\n"),
        ("mtu", "1500\n"),
    ] {
        std::fs::write(tap.join(file), text).unwrap();
    }
    let netdev = root.join("proc/1/net/dev");
    let mut text = std::fs::read_to_string(&netdev).unwrap();
    text.push_str("  vnet9: 900 9 0 0 0 0 0 0 450 5 0 0 0 0 0 0\n");
    std::fs::write(&netdev, text).unwrap();

    let started = Instant::now();
    let body = http(server.addr, "GET", "/metrics").body;
    let took = started.elapsed();
    let samples = parse(&body);
    let vnet9 = samples
        .iter()
        .find(|s| s.name == "net_interface_rx_bytes_total" && s.label("interface") == Some("vnet9"))
        .expect("the new tap is written");
    assert_eq!(
        vnet9.label("instance"),
        Some("newvm"),
        "named at the first scrape"
    );
    assert_eq!(vnet9.label("state"), Some("unknown"));
    assert_eq!(
        waits(&samples, "count"),
        Some(count_before + 1.0),
        "one more scrape waited"
    );
    let waited = waits(&samples, "sum").unwrap() - sum_before;
    let bound = truenas_net_exporter::exporter::UNKNOWN_WAIT.as_secs_f64();
    assert!(waited <= bound + 0.05, "the wait is bounded: {waited} s");
    eprintln!(
        "the first scrape of a new tap waited {:.1} ms (the whole scrape took {:.1} ms)",
        waited * 1e3,
        took.as_secs_f64() * 1e3
    );
    assert_eq!(midclt_runs(tools.path()), 0);
}

/// Real devices in a private namespace, with the exporter in it: a tap
/// created with no scrape and no event is in the topology within 1 s (the
/// kernel's link notification); a real QEMU holding a tap, announced by the
/// middleware's event while the periodic refresh is an hour away, is named
/// at the first scrape after it, within 1 s of the event; removed, it drops
/// out. No midclt runs throughout.
#[test]
fn real_taps_are_found_by_link_notifications_and_named_by_events() {
    if !require(is_root(), "needs root for unshare")
        || !require(
            have("unshare") && have("nsenter") && have("ip"),
            "util-linux and iproute2 not installed",
        )
        || !require(
            have("qemu-system-x86_64"),
            "qemu-system-x86_64 not installed",
        )
        || !require(have("curl"), "curl not installed")
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sys")).unwrap();
    let fake = FakeMiddleware::start(&root.path().join(SOCKET), Mode::JsonRpc);
    fake.set_methods(&["vm.query"]);
    fake.set_rows("vm.query", vec![]);
    let midclt = counting_midclt(root.path());
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(&midclt) + "[topology]\ninterval = \"1h\"\n",
    )
    .unwrap();
    let unshare = in_private_host("vm-events.sh")
        .env("ROOT", root.path())
        .env("PORT", "9551")
        .env("CONFIG", &config)
        .spawn()
        .unwrap();
    let ns = PrivateHost { unshare, root };
    ns.wait_file("ready");
    let subscribed = wait_for(Duration::from_secs(10), || {
        fake.subscriptions()
            .contains(&"vm.query".to_owned())
            .then_some(())
    });
    assert!(subscribed.is_some(), "subscribed: {}", ns.log());

    // A tap, with no scrape and no event: the topology has it (its MTU is
    // sysfs's) and no read had to wait for it.
    ns.touch("go-tap");
    ns.wait_file("tap-done");
    std::thread::sleep(Duration::from_secs(1));
    let api: Value = serde_json::from_str(&ns.get("/api/v1/interfaces")).unwrap();
    let tap = api["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == "tnetap0")
        .unwrap_or_else(|| panic!("no tnetap0 in {api}"));
    assert_eq!(tap["mtu_bytes"], 1500, "in the topology: {tap}");
    let waits = |text: &str| {
        parse(text)
            .iter()
            .find(|s| s.name == "truenas_net_exporter_new_interface_wait_seconds_count")
            .map(|s| s.value)
    };
    assert_eq!(
        waits(&ns.get("/metrics")),
        Some(0.0),
        "known before any read met it"
    );

    // A VM starts: QEMU opens vnet7; the middleware then announces it.
    ns.touch("go-vm");
    ns.wait_file("qemu.pid");
    let pid: u64 = std::fs::read_to_string(ns.root.path().join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let found = wait_for(Duration::from_secs(10), || {
        parse(&ns.get("/metrics"))
            .iter()
            .any(|s| s.label("interface") == Some("vnet7"))
            .then_some(())
    });
    assert!(found.is_some(), "vnet7 exported: {}", ns.log());
    std::thread::sleep(Duration::from_millis(500));
    let vm = row(7, "7_newvm", pid);
    fake.set_rows("vm.query", vec![vm.clone()]);
    let calls = fake.calls("vm.query");
    let announced = Instant::now();
    fake.announce("vm.query", "changed", json!(7), Some(vm));
    // What the event set off, seen from the middleware's side (no scrape).
    let asked = wait_for(Duration::from_secs(1), || {
        (fake.calls("vm.query") > calls).then(|| announced.elapsed())
    });
    eprintln!("the VM resolver asked vm.query {asked:?} after the event");
    std::thread::sleep(Duration::from_secs(1).saturating_sub(announced.elapsed()));
    let owner = |text: &str| {
        parse(text)
            .iter()
            .find(|s| {
                s.name == "net_interface_rx_bytes_total" && s.label("interface") == Some("vnet7")
            })
            .and_then(|s| s.label("instance").map(str::to_owned))
    };
    assert_eq!(
        owner(&ns.get("/metrics")).as_deref(),
        Some("newvm"),
        "1 s after the event: {}",
        ns.log()
    );

    fake.set_rows("vm.query", vec![]);
    fake.announce("vm.query", "removed", json!(7), None);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        owner(&ns.get("/metrics")).as_deref(),
        Some("vnet7"),
        "removed"
    );
    assert_eq!(
        midclt_runs(ns.root.path()),
        0,
        "no midclt while the socket answers"
    );
}
