//! The live view: `/api/v1/interfaces` says what `/metrics` says, `/` lists
//! every interface without JavaScript, and in a real browser (headless
//! Chromium over the DevTools protocol) the page shows rates from real
//! traffic on real devices, link utilisation, and hostile names as text.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use truenas_net_exporter::workloads::accounting::cgroup2_mount;

use crate::browser::{Browser, chromium};
use crate::fixture_host::{LABELS, seed_vm_toml};
use crate::http::Server;
use crate::support::{
    GrowingRx, Sample, copy_fixture, fixture, have, http, in_private_host, is_root, one, parse,
    require, wait_for,
};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// JSON key and `/metrics` family of each counter.
const COUNTERS: [(&str, &str); 8] = [
    ("rx_bytes", "net_interface_rx_bytes_total"),
    ("tx_bytes", "net_interface_tx_bytes_total"),
    ("rx_packets", "net_interface_rx_packets_total"),
    ("tx_packets", "net_interface_tx_packets_total"),
    ("rx_errors", "net_interface_rx_errors_total"),
    ("tx_errors", "net_interface_tx_errors_total"),
    ("rx_dropped", "net_interface_rx_dropped_total"),
    ("tx_dropped", "net_interface_tx_dropped_total"),
];

/// The seed-host fixture served with its VMs resolved (through its fake midclt).
fn seed_server() -> Server {
    let server = Server::start(&fixture("seed-host"), &seed_vm_toml());
    wait_for(Duration::from_secs(10), || {
        server.metrics().contains("instance=\"vyos\"").then_some(())
    })
    .expect("the VMs resolved");
    server
}

fn interfaces_of(samples: &[Sample]) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .map(|s| s.label("interface").unwrap().to_owned())
        .collect()
}

fn gauge(samples: &[Sample], family: &str, interface: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == family && s.label("interface") == Some(interface))
        .map(|s| s.value)
}

#[test]
fn the_api_says_what_metrics_says() {
    let server = seed_server();
    let before = SystemTime::now();
    let r = http(server.addr, "GET", "/api/v1/interfaces");
    let after = SystemTime::now();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    let samples = parse(&server.metrics());

    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let time = doc["time"].as_f64().unwrap();
    assert!(
        secs(before) - 0.001 <= time && time <= secs(after) + 0.001,
        "read time {time}"
    );

    let list = doc["interfaces"].as_array().unwrap();
    let names: Vec<&str> = list
        .iter()
        .map(|i| i["interface"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "by name");
    let expected = interfaces_of(&samples);
    assert_eq!(
        names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        expected
    );
    assert_eq!(names.len(), expected.len(), "each once");
    // Two entries whole, exactly: a NIC with its link speed, a VM's tap on a
    // VLAN bridge (no speed: taps report none).
    let entry = |name: &str| list.iter().find(|i| i["interface"] == name).unwrap();
    assert_eq!(
        entry("enp8s0f0"),
        &serde_json::json!({
            "interface": "enp8s0f0", "instance": "enp8s0f0", "instance_type": "physical",
            "app": "", "bridge": "", "state": "up", "vlan": null, "bond": "",
            "speed_bytes": 1_250_000_000u64, "mtu_bytes": 9000,
            "owner": {"kind": "nic", "name": "enp8s0f0"},
            "rx_bytes": 1_111_594_096_922u64, "tx_bytes": 555_797_048_461u64,
            "rx_packets": 22, "tx_packets": 26, "rx_errors": 2, "tx_errors": 0,
            "rx_dropped": 2, "tx_dropped": 2
        })
    );
    assert_eq!(
        entry("vnet0"),
        &serde_json::json!({
            "interface": "vnet0", "instance": "pihole", "instance_type": "vm",
            "app": "", "bridge": "br0", "state": "unknown", "vlan": 1, "bond": "",
            "speed_bytes": null, "mtu_bytes": 1500,
            "owner": {"kind": "vm", "name": "pihole"},
            "rx_bytes": 8007, "tx_bytes": 4003, "rx_packets": 88, "tx_packets": 104,
            "rx_errors": 2, "tx_errors": 0, "rx_dropped": 3, "tx_dropped": 0
        })
    );

    for it in list {
        let name = it["interface"].as_str().unwrap();
        let rx = one(&samples, "net_interface_rx_bytes_total", name);
        for label in LABELS {
            assert_eq!(it[label].as_str(), rx.label(label), "{name}: {label}");
        }
        for (key, family) in COUNTERS {
            let value = it[key].as_u64().unwrap_or_else(|| panic!("{name}: {key}"));
            assert_eq!(
                value as f64,
                one(&samples, family, name).value,
                "{name}: {key}"
            );
        }
        let info = one(&samples, "net_interface_info", name);
        assert_eq!(it["bond"].as_str(), info.label("bond"), "{name}: bond");
        let vlan = info.label("vlan").unwrap();
        assert_eq!(
            it["vlan"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            vlan,
            "{name}: vlan"
        );
        for (key, family) in [
            ("speed_bytes", "net_interface_speed_bytes"),
            ("mtu_bytes", "net_interface_mtu_bytes"),
        ] {
            assert_eq!(
                it[key].as_u64().map(|v| v as f64),
                gauge(&samples, family, name),
                "{name}: {key}"
            );
        }
    }

    let owner = |name: &str| {
        let it = list.iter().find(|i| i["interface"] == name).unwrap();
        (
            it["owner"]["kind"].as_str().unwrap().to_owned(),
            it["owner"]["name"].as_str().unwrap().to_owned(),
        )
    };
    for (interface, kind, name) in [
        ("enp8s0f0", "nic", "enp8s0f0"),
        ("vnet3", "vm", "vyos"),
        ("macvtap0", "vm", "vyos"),
        ("br0", "bridge", "br0"),
        ("vlan1", "host", "host"),
        // No Docker engine here: an unclaimed veth is the host's.
        ("veth402dbe0", "host", "host"),
        ("lo", "host", "host"),
    ] {
        assert_eq!(owner(interface), (kind.into(), name.into()), "{interface}");
    }
    // A concrete line, against the fixture's net/dev.
    let enp = list.iter().find(|i| i["interface"] == "enp8s0f0").unwrap();
    assert_eq!(enp["rx_bytes"], 1_111_594_096_922u64);
    assert_eq!(enp["speed_bytes"], 1_250_000_000u64);
}

/// `data-interface` of every row of `class` in a page's markup (names here
/// are plain, so no entity decoding is needed).
fn rows(html: &str, class: &str) -> Vec<String> {
    let re =
        regex::Regex::new(&format!(r#"<tr class="{class}" data-interface="([^"]*)""#)).unwrap();
    re.captures_iter(html).map(|c| c[1].to_owned()).collect()
}

#[test]
fn the_page_lists_every_interface_without_javascript() {
    let server = seed_server();
    let samples = parse(&server.metrics());
    let page = http(server.addr, "GET", "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let all = interfaces_of(&samples);
    let physical: BTreeSet<String> = samples
        .iter()
        .filter(|s| {
            s.name == "net_interface_rx_bytes_total" && s.label("instance_type") == Some("physical")
        })
        .map(|s| s.label("interface").unwrap().to_owned())
        .collect();
    let check = |html: &str, how: &str| {
        // Loopback apart, below the owners.
        let looped = rows(html, "loop");
        assert_eq!(looped, ["lo"], "{how}");
        let listed: Vec<String> = rows(html, "iface").into_iter().chain(looped).collect();
        assert_eq!(listed.len(), all.len(), "{how}: each interface once");
        assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), all, "{how}");
        assert_eq!(
            rows(html, "nic").into_iter().collect::<BTreeSet<_>>(),
            physical,
            "{how}: the NIC table"
        );
        assert!(
            html.contains(r#"<tbody class="owner" data-kind="vm" data-name="vyos""#),
            "{how}"
        );
    };
    check(&page.body, "raw HTML");
    // The one script is the embedded file; the link to /metrics stays.
    assert_eq!(page.body.matches("<script").count(), 1);
    assert!(
        page.body
            .contains(r#"<script src="live.js" defer></script>"#)
    );
    assert!(page.body.contains(r#"<a href="./metrics">metrics</a>"#));

    let script = http(server.addr, "GET", "/live.js");
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let style = http(server.addr, "GET", "/live.css");
    assert_eq!(
        style.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    let total = page.body.len() + script.body.len() + style.body.len();
    println!(
        "live view of the seed host ({} interfaces): page {} + script {} + style {} = {total} bytes",
        all.len(),
        page.body.len(),
        script.body.len(),
        style.body.len()
    );
    // 45 KB since the peers and the Clients section (37 KB before), 46 KB
    // with their names, 47 KB with loopback apart.
    assert!(total < 48 * 1024, "{total} bytes");

    let Some(chromium) = chromium() else {
        require(false, "chromium not installed (Debian package chromium)");
        return;
    };
    let mut browser = Browser::start(|flags| {
        let mut c = Command::new(chromium);
        c.args(flags);
        c
    });
    let url = format!("http://{}/", server.addr);
    let tab = browser.open(&url, false);
    let html = browser.html(&tab);
    assert!(
        html.contains(r#"<html lang="en" class="nojs">"#),
        "scripts stayed off"
    );
    check(&html, "Chromium without JavaScript");
    // The side switch needs the script: without it, it stays out of sight,
    // and the footnote says which side the figures are counted on.
    assert!(
        html.contains(r#"<span id="side" class="side" role="radiogroup" aria-label="rx and tx as counted by" hidden="">"#),
        "the switch is hidden"
    );
    assert!(html.contains("<p id=\"convention\">rx and tx are counted as the host"));
    // The line under the NICs needs rates: without the script it says so.
    assert!(html.contains(r#"<p id="named" class="named" data-named="off""#));
    // Without the script the status line is the noscript one, not "Connecting".
    assert!(
        browser.shown(&tab, ".bar noscript"),
        "the noscript line shows"
    );
    assert!(
        !browser.shown(&tab, "#status"),
        "no Connecting without the script"
    );
    // With it, "Connecting" until its first data.
    let live = browser.open(&url, true);
    assert!(browser.shown(&live, "#status"));
    assert!(!browser.shown(&live, ".bar noscript"));
    assert!(!html.contains("<svg"), "no sparklines without the script");
}

/// A copy of the seed-host fixture with its VMs resolved every second through its
/// fake midclt, and the config that says so.
fn vm_host() -> (tempfile::TempDir, String) {
    let host = copy_fixture("seed-host");
    let midclt = host.path().join("usr/bin/midclt");
    let toml = format!(
        "[vm]\nsources = [\"midclt\"]\ninterval = \"1s\"\n[commands]\nchroot = false\n\
         [truenas]\nmidclt_command = [{:?}, \"call\"]\n",
        midclt.display().to_string()
    );
    (host, toml)
}

const IMG: &str = r#"<img src=x onerror="window.__xss=1">"#;
const SCRIPT: &str = "</script><script>window.__xss=2</script>";

/// From now on the host's middleware names two VMs with markup.
fn rename_vms_with_markup(host: &Path) {
    let midclt = host.join("usr/bin/midclt");
    let script = std::fs::read_to_string(&midclt)
        .unwrap()
        .replace(
            r#""name": "vyos""#,
            r#""name": "<img src=x onerror=\"window.__xss=1\">""#,
        )
        .replace(
            r#""name": "pihole""#,
            r#""name": "</script><script>window.__xss=2</script>""#,
        );
    let tmp = host.join("usr/bin/midclt.new");
    std::fs::write(&tmp, script).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(tmp, midclt).unwrap();
}

/// Owners as a page shows them (`kind|name`, in order), and whether any
/// markup from a name became an element or ran.
const OWNERS_SHOWN: &str = r#"({
    owners: [...document.querySelectorAll('#owners tbody.owner')]
        .map(t => t.dataset.kind + '|' + t.querySelector('.name').textContent),
    elements: document.querySelectorAll('img, script:not([src])').length,
    ran: typeof window.__xss,
})"#;

fn assert_names_are_text(shown: &Value, how: &str) {
    let owners: Vec<&str> = shown["owners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        owners.contains(&format!("vm|{IMG}").as_str()),
        "{how}: {owners:?}"
    );
    assert!(
        owners.contains(&format!("vm|{SCRIPT}").as_str()),
        "{how}: {owners:?}"
    );
    assert_eq!(shown["elements"], 0, "{how}: markup became elements");
    assert_eq!(shown["ran"], "undefined", "{how}: injected script ran");
}

/// On a fixture host whose NIC receives 1 Gb/s on its 10 Gb/s link, and
/// whose VMs get names with markup while a page is open: that page's script
/// shows the new names as text, and so does a page the server renders with
/// them; neither runs the payloads. The rate, 10 % utilisation and the NIC as
/// the busiest owner are shown, and the page fits a phone's screen.
#[test]
fn a_browser_shows_rates_utilisation_and_hostile_names_as_text() {
    let Some(chromium) = chromium() else {
        require(false, "chromium not installed (Debian package chromium)");
        return;
    };
    let (host, toml) = vm_host();
    // 1 Gb/s into enp8s0f0.
    let _traffic = GrowingRx::start(&[(host.path(), 125_000_000)]);
    let server = Server::start(host.path(), &toml);
    wait_for(Duration::from_secs(10), || {
        server.metrics().contains("instance=\"vyos\"").then_some(())
    })
    .expect("the VMs resolved");
    let mut browser = Browser::start(|flags| {
        let mut c = Command::new(chromium);
        c.args(flags);
        c
    });
    let url = format!("http://{}/", server.addr);
    let live = browser.open(&url, true);

    // Three refreshes: a rate from two reads, rendered by the script.
    let nic = wait_for(Duration::from_secs(30), || {
        let v = browser.eval(
            &live,
            r#"(() => {
                const tr = document.querySelector('#nics tr.nic[data-interface="enp8s0f0"]');
                return +document.body.dataset.refreshes >= 3 && tr && tr.dataset.util !== ''
                    ? {util: +tr.dataset.util, rx: tr.querySelector('.rx-rate').textContent,
                       shown: tr.querySelector('.util').textContent,
                       first: document.querySelector('#owners tbody.owner').dataset.name}
                    : null;
            })()"#,
        );
        (!v.is_null()).then_some(v)
    })
    .expect("a utilisation for enp8s0f0");
    let util = nic["util"].as_f64().unwrap();
    assert!((7.0..13.0).contains(&util), "1 Gb/s of 10 Gb/s: {nic}");
    let rx = nic["rx"].as_str().unwrap();
    assert!(rx.ends_with(" Gb/s") || rx.ends_with(" Mb/s"), "{nic}");
    assert!(nic["shown"].as_str().unwrap().ends_with(" %"), "{nic}");
    assert_eq!(nic["first"], "enp8s0f0", "the busiest owner first");

    rename_vms_with_markup(host.path());
    let api = wait_for(Duration::from_secs(10), || {
        let r = http(server.addr, "GET", "/api/v1/interfaces");
        r.body.contains("window.__xss=2").then_some(r.body)
    })
    .expect("the new VM names resolved");
    let api: Value = serde_json::from_str(&api).unwrap();
    let vm_names: BTreeSet<&str> = api["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["owner"]["kind"] == "vm")
        .filter_map(|i| i["owner"]["name"].as_str())
        .collect();
    assert!(
        vm_names.contains(IMG) && vm_names.contains(SCRIPT),
        "{vm_names:?}"
    );

    // The open page builds the new owners from the JSON, in the browser.
    let shown = wait_for(Duration::from_secs(15), || {
        let v = browser.eval(&live, OWNERS_SHOWN);
        v["owners"].to_string().contains("__xss=2").then_some(v)
    })
    .expect("the open page shows the new names");
    assert_names_are_text(&shown, "names the script rendered");

    // A page loaded now has them from the server.
    let raw = http(server.addr, "GET", "/").body;
    assert!(
        !raw.contains("<img") && !raw.contains("<script>window"),
        "escaped by the server"
    );
    assert!(raw.contains("&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;"));
    let fresh = browser.open(&url, true);
    let shown = browser.eval(&fresh, OWNERS_SHOWN);
    assert_names_are_text(&shown, "names the server rendered");

    // On a phone's screen nothing is wider than the screen.
    assert_fits_a_phone(&mut browser, &fresh, "#owners tr.iface");
}

/// On a 390 px phone screen, nothing on `page` is wider than the screen,
/// and rows `rows` (a CSS selector) are there.
fn assert_fits_a_phone(browser: &mut Browser, page: &crate::browser::Page, rows: &str) {
    browser.phone(page, 390, 844);
    let fits = wait_for(Duration::from_secs(5), || {
        let v = browser.eval(
            page,
            &format!(
                "[window.innerWidth, document.documentElement.scrollWidth, \
                 document.querySelectorAll('{rows}').length]"
            ),
        );
        (v[0] == 390).then_some(v)
    })
    .expect("the phone viewport applied");
    assert!(
        fits[1].as_u64() <= Some(390),
        "page width on a 390 px phone: {fits}"
    );
    assert!(fits[2].as_u64() > Some(0), "{rows}: {fits}");
}

/// The cgroup the namespace script makes; removed here too in case the
/// script was killed before its own cleanup.
struct CgroupGuard(String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"] {
            let dir = Path::new(root).join(&self.0);
            for _ in 0..50 {
                let _ = std::fs::remove_dir(dir.join("init.scope"));
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Real devices in a private namespace: a system container behind a veth
/// on a bridge, UDP traffic to it that grows every 200 ms, the exporter and
/// Chromium in the same namespace. The page shows the owners, a non-zero
/// rate for the container's veth, and a different figure after the next
/// refresh. A host service (a process in `system.slice/tnelive.service`
/// below a cgroup of the test's own, where the exporter counts per cgroup)
/// sends TCP all along: the page shows it as an owner with a non-zero rate,
/// and the line under the NICs (there are none here: it says so, with no
/// share above 100 %).
#[test]
fn a_browser_shows_live_traffic_on_real_devices() {
    if !require(
        is_root(),
        "live view test needs root (unshare, ip link, cgroups)",
    ) || !require(
        have("ip") && have("unshare") && have("nsenter"),
        "live view test needs iproute2 and util-linux",
    ) {
        return;
    }
    let Some(chromium) = chromium() else {
        require(false, "chromium not installed (Debian package chromium)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sys")).unwrap();
    let id = std::process::id().to_string();
    let container = format!("tnelive{id}");
    let _cgroup = CgroupGuard(format!("lxc.payload.{container}"));
    let service = if require(
        have("busybox"),
        "the live view's host service needs busybox (nc)",
    ) {
        ServiceCgroup::new(&format!("tne-live-{id}"), "tnelive")
    } else {
        None
    };
    if let Some(service) = &service {
        std::fs::write(root.path().join("config.toml"), service.config()).unwrap();
    }
    let mut browser = Browser::start(|flags| {
        let mut c = in_private_host("live-view.sh");
        c.arg(chromium)
            .args(flags)
            .env("ROOT", root.path())
            .env("TNE_ID", &id)
            .env("PORT", "9551");
        if let Some(service) = &service {
            c.env("SERVICE", &service.service);
        }
        c
    });
    let log = || {
        ["script.log", "exporter.log"]
            .map(|f| std::fs::read_to_string(root.path().join(f)).unwrap_or_default())
            .join("\n")
    };
    let tab = browser.open("http://127.0.0.1:9551/", true);
    let probe = format!(
        r#"(() => {{
            const t = document.querySelector('#owners tbody.owner[data-kind="system container"][data-name="{container}"]');
            const row = t && t.querySelector('tr.iface[data-interface="vethlive0"]');
            return row && row.dataset.txBps !== '' ? {{
                refreshes: +document.body.dataset.refreshes,
                bps: +row.dataset.txBps,
                text: row.querySelector('.tx-rate').textContent,
                owners: [...document.querySelectorAll('#owners tbody.owner')]
                    .map(t => t.dataset.kind + '|' + t.dataset.name),
                loop: [...document.querySelectorAll('#loopback tr.loop')].map(tr => tr.dataset.interface),
                js: !document.documentElement.classList.contains('nojs'),
            }} : null;
        }})()"#
    );
    let first = wait_for(Duration::from_secs(30), || {
        let v = browser.eval(&tab, &probe);
        (!v.is_null() && v["bps"].as_f64() > Some(0.0)).then_some(v)
    })
    .unwrap_or_else(|| panic!("no rate for the container's veth; logs:\n{}", log()));
    let owners: Vec<&str> = first["owners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The host's only interface is loopback: it is apart, and the host no
    // owner by it.
    assert_eq!(first["loop"], serde_json::json!(["lo"]), "{first}");
    for expected in [format!("system container|{container}"), "bridge|lan".into()] {
        assert!(
            owners.contains(&expected.as_str()),
            "{expected}: {owners:?}"
        );
    }
    assert_eq!(first["js"], true);
    assert!(first["text"].as_str().unwrap().ends_with("b/s"), "{first}");

    let refreshes = first["refreshes"].as_u64().unwrap();
    let next = wait_for(Duration::from_secs(15), || {
        let v = browser.eval(&tab, &probe);
        (v["refreshes"].as_u64() > Some(refreshes)).then_some(v)
    })
    .expect("another refresh within 15 s");
    assert!(next["bps"].as_f64() > Some(0.0), "{next}");
    assert_ne!(
        next["text"], first["text"],
        "the figure changed: {first} -> {next}"
    );
    println!(
        "vethlive0 transmit: {} then {} (refreshes {refreshes} -> {})",
        first["text"], next["text"], next["refreshes"]
    );

    if service.is_none() {
        return;
    }
    let probe = r#"(() => {
        const t = document.querySelector('#owners tbody.owner[data-kind="service"][data-name="tnelive"]');
        const row = t && t.querySelector('tr.wl[data-workload="tnelive"][data-type="service"]');
        const n = document.querySelector('#named');
        return row && row.dataset.txBps !== '' ? {
            owner: +t.dataset.txBps, row: +row.dataset.txBps,
            text: t.querySelector('.owner-head .tx-rate').textContent,
            nics: document.querySelectorAll('#nics tr.nic').length,
            named: n && {state: n.dataset.named, tx: n.dataset.txPct, rx: n.dataset.rxPct, text: n.textContent},
        } : null;
    })()"#;
    let shown = wait_for(Duration::from_secs(30), || {
        let v = browser.eval(&tab, probe);
        (!v.is_null() && v["owner"].as_f64() > Some(0.0)).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "no rate for the service tnelive: {}; logs:\n{}",
            browser.eval(
                &tab,
                "[...document.querySelectorAll('#owners tbody.owner')].map(t => t.dataset.kind + '|' + t.dataset.name + ' ' + t.dataset.txBps)"
            ),
            log()
        )
    });
    assert_eq!(shown["owner"], shown["row"], "{shown}");
    assert!(shown["text"].as_str().unwrap().ends_with("b/s"), "{shown}");
    let named = &shown["named"];
    for dir in ["tx", "rx"] {
        let pct = named[dir].as_str().unwrap();
        assert!(
            pct.is_empty() || pct.parse::<f64>().is_ok_and(|p| (0.0..=100.0).contains(&p)),
            "{dir}: {named}"
        );
    }
    if shown["nics"] == 0 {
        assert_eq!(named["state"], "none", "no uplink here: {named}");
    } else {
        assert!(
            ["ok", "capped"].contains(&named["state"].as_str().unwrap()),
            "{named}"
        );
    }
    println!(
        "service tnelive sends {}; the line under the NICs: {}",
        shown["text"], named["text"]
    );
}

/// Loopback busier than everything else (60 Mb/s each way) on real
/// devices, beside an idle veth pair of the host's (as `lo` is) and a
/// system container's veth with less traffic: in the first paint (the
/// server's page, scripts off) and after the script's refreshes, `lo` is a
/// row of the loopback section below the owners and of no owner, the host
/// is an owner by its veths alone, and the top owner is not the host.
#[test]
fn a_browser_ranks_owners_with_loopback_apart() {
    if !require(
        is_root(),
        "live view test needs root (unshare, ip link, cgroups)",
    ) || !require(
        have("ip") && have("unshare") && have("nsenter") && have("python3"),
        "the loopback test needs iproute2, util-linux and python3",
    ) {
        return;
    }
    let Some(chromium) = chromium() else {
        require(false, "chromium not installed (Debian package chromium)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sys")).unwrap();
    let id = format!("{}lo", std::process::id());
    let container = format!("tnelive{id}");
    let _cgroup = CgroupGuard(format!("lxc.payload.{container}"));
    let mut browser = Browser::start(|flags| {
        let mut c = in_private_host("live-view.sh");
        c.arg(chromium)
            .args(flags)
            .env("ROOT", root.path())
            .env("TNE_ID", &id)
            .env("PORT", "9552")
            .env("LOOPBACK", "1");
        c
    });
    let log = || {
        ["script.log", "exporter.log"]
            .map(|f| std::fs::read_to_string(root.path().join(f)).unwrap_or_default())
            .join("\n")
    };
    let url = "http://127.0.0.1:9552/";

    // The first paint: the server's page as it is, before any script.
    let first = browser.open(url, false);
    let html = browser.html(&first);
    let owners: Vec<&str> = html
        .match_indices(r#"<tbody class="owner" data-kind=""#)
        .map(|(i, _)| {
            let rest = &html[i + 32..];
            &rest[..rest.find(r#"" data-rx-bps"#).unwrap()]
        })
        .collect();
    assert!(
        owners.contains(&r#"host" data-name="host"#),
        "the host, by its idle veths: {owners:?}; logs:\n{}",
        log()
    );
    assert_ne!(
        owners.first(),
        Some(&r#"host" data-name="host"#),
        "{owners:?}"
    );
    assert_eq!(rows(&html, "loop"), ["lo"]);
    assert!(!rows(&html, "iface").contains(&"lo".to_owned()));
    assert!(rows(&html, "iface").contains(&"vethidle0".to_owned()));
    let (owners_at, loop_at) = (
        html.find(r#"<table id="owners">"#).unwrap(),
        html.find(r#"<section id="loopback""#).unwrap(),
    );
    assert!(owners_at < loop_at, "loopback below the owners");
    assert!(
        html.contains("loopback apart, below."),
        "the page says what it ranks by"
    );

    // After the script's refreshes: owners by their rates, loopback apart.
    let live = browser.open(url, true);
    const RANKED: &str = r#"(() => {
        const lo = document.querySelector('#loopback tr.loop[data-interface="lo"]');
        const owners = [...document.querySelectorAll('#owners tbody.owner')].map(t => ({
            owner: t.dataset.kind + '|' + t.dataset.name, rx: +t.dataset.rxBps, tx: +t.dataset.txBps,
            ifaces: [...t.querySelectorAll('tr.iface')].map(tr => tr.dataset.interface)}));
        return lo && lo.dataset.txBps !== '' && owners.every(o => o.rx >= 0) ? {
            refreshes: +document.body.dataset.refreshes,
            status: document.querySelector('#status').textContent,
            lo: [+lo.dataset.rxBps, +lo.dataset.txBps], owners,
            shown: !document.querySelector('#loopback').hidden,
        } : null;
    })()"#;
    let mut seen = 0;
    let mut last = 0;
    while seen < 3 {
        let v = wait_for(Duration::from_secs(30), || {
            let v = browser.eval(&live, RANKED);
            (!v.is_null()
                && v["refreshes"].as_u64() > Some(last)
                && v["lo"][1].as_f64() > Some(10e6))
            .then_some(v)
        })
        .unwrap_or_else(|| {
            panic!(
                "no busy loopback: {}; logs:\n{}",
                browser.eval(&live, RANKED),
                log()
            )
        });
        last = v["refreshes"].as_u64().unwrap();
        let owners = v["owners"].as_array().unwrap();
        let lo = v["lo"][1].as_f64().unwrap();
        assert_eq!(v["shown"], true, "{v}");
        assert!(v["status"].as_str().unwrap().starts_with("Live"), "{v}");
        assert_ne!(owners[0]["owner"], "host|host", "the top owner: {v}");
        for o in owners {
            assert!(
                !o["ifaces"].as_array().unwrap().contains(&"lo".into()),
                "{v}"
            );
            assert!(
                o["tx"].as_f64().unwrap() < lo / 2.0,
                "loopback is busier: {v}"
            );
        }
        let host = owners
            .iter()
            .find(|o| o["owner"] == "host|host")
            .expect("the host");
        assert!(host["rx"].as_f64() < Some(1e6), "the host without lo: {v}");
        println!(
            "refresh {last}: lo {} b/s; owners {:?}",
            lo,
            owners
                .iter()
                .map(|o| format!("{} {}", o["owner"], o["tx"]))
                .collect::<Vec<_>>()
        );
        seen += 1;
    }
}

/// The `curl | jq` lines of docs/live-view.md, run against a fixture host whose NIC
/// receives 1 Gb/s: the per-owner rates put that NIC first, at about 1 Gb/s.
#[test]
fn the_documented_jq_example_works() {
    if !require(
        have("jq") && have("curl"),
        "the jq example of docs/live-view.md needs jq and curl",
    ) {
        return;
    }
    let page = crate::support::doc("docs/live-view.md");
    let script = &crate::support::doc_blocks(&page, "sh")[0];
    let host = copy_fixture("seed-host");
    // 1 Gb/s into enp8s0f0.
    let _traffic = GrowingRx::start(&[(host.path(), 125_000_000)]);
    let server = Server::start(host.path(), "");
    server.wait_labelled("vnet3", "br0");
    let script = script.replace("truenas.lan:9551", &server.addr.to_string());
    assert!(
        script.contains(&server.addr.to_string()),
        "the example's host"
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    let (bps, owner) = first.split_once('\t').unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(owner, "nic enp8s0f0", "{stdout}");
    let bps: f64 = bps.parse().unwrap();
    assert!((0.9e9..1.1e9).contains(&bps), "{bps} bits/s for 1 Gb/s");
}

/// One interface's traffic for [`Traffic`]: receive and transmit bytes/s,
/// always and while the burst is on.
struct Flow {
    interface: &'static str,
    steady: (f64, f64),
    burst: (f64, f64),
}

impl Flow {
    /// The same rates with the burst on or off.
    fn even(interface: &'static str, rates: (f64, f64)) -> Flow {
        Flow {
            interface,
            steady: rates,
            burst: rates,
        }
    }
}

/// Counters that grow in a fixture host's net/dev as `flows` say, the
/// bursts while [`Traffic::burst`] is set.
struct Traffic {
    burst: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(host: &Path, flows: Vec<Flow>) -> Traffic {
        let netdev = host.join("proc/1/net/dev");
        let (burst, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = {
            let (burst, stop) = (Arc::clone(&burst), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut bytes = vec![(1e6, 1e6); flows.len()];
                let mut was = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    let dt = was.elapsed().as_secs_f64();
                    was = Instant::now();
                    let on = burst.load(Ordering::Relaxed);
                    for (flow, (rx, tx)) in flows.iter().zip(&mut bytes) {
                        let (r, t) = if on { flow.burst } else { flow.steady };
                        *rx += r * dt;
                        *tx += t * dt;
                    }
                    let Ok(text) = std::fs::read_to_string(&netdev) else {
                        return;
                    };
                    let mut out = String::with_capacity(text.len());
                    for line in text.lines() {
                        let flow = line.split_once(':').and_then(|(name, rest)| {
                            let i = flows.iter().position(|f| f.interface == name.trim())?;
                            Some((name, rest, bytes[i]))
                        });
                        match flow {
                            Some((name, rest, (rx, tx))) => {
                                let mut fields: Vec<String> =
                                    rest.split_whitespace().map(str::to_owned).collect();
                                fields[0] = (rx as u64).to_string();
                                fields[8] = (tx as u64).to_string();
                                out.push_str(&format!("{name}: {}\n", fields.join(" ")));
                            }
                            None => out.push_str(&format!("{line}\n")),
                        }
                    }
                    let tmp = netdev.with_extension("new");
                    if std::fs::write(&tmp, out).is_err() || std::fs::rename(&tmp, &netdev).is_err()
                    {
                        return;
                    }
                }
            })
        };
        Traffic {
            burst,
            stop,
            thread: Some(thread),
        }
    }

    fn burst(&self, on: bool) {
        self.burst.store(on, Ordering::Relaxed);
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Each owner's and NIC's sparkline as numbers: the scale's top
/// (`data-max`), and per line the points as (x, bits/s) read back from the
/// drawn path, oldest first.
const SPARKS: &str = r#"(() => {
    const H = 24, line = (s, cls) => {
        const top = Math.max(+s.dataset.max, 1000), d = s.querySelector('path.' + cls).getAttribute('d');
        return [...d.matchAll(/[ML](-?[\d.]+) (-?[\d.]+)/g)].map(m => [+m[1], (H - 1 - m[2]) * top / (H - 2)]);
    };
    const out = {};
    document.querySelectorAll('#owners tbody.owner').forEach(t => {
        const s = t.querySelector('tr.owner-head svg.spark');
        if (s) out[t.dataset.kind + '|' + t.dataset.name] = {max: +s.dataset.max, rx: line(s, 'rx'), tx: line(s, 'tx')};
    });
    document.querySelectorAll('#nics tr.nic').forEach(tr => {
        const s = tr.querySelector('svg.spark');
        if (s) out['nic row|' + tr.dataset.interface] = {max: +s.dataset.max, rx: line(s, 'rx'), tx: line(s, 'tx')};
    });
    return {refreshes: +document.body.dataset.refreshes, sparks: out};
})()"#;

fn refreshes(browser: &mut Browser, page: &crate::browser::Page) -> u64 {
    browser
        .eval(page, "+document.body.dataset.refreshes")
        .as_u64()
        .unwrap()
}

/// Waits for `n` more refreshes of the page.
fn wait_refreshes(browser: &mut Browser, page: &crate::browser::Page, n: u64) {
    let target = refreshes(browser, page) + n;
    wait_for(Duration::from_secs(5 * n + 10), || {
        (refreshes(browser, page) >= target).then_some(())
    })
    .unwrap_or_else(|| panic!("{n} refreshes"));
}

/// Bits/s of one line's points.
fn values(spark: &Value, line: &str) -> Vec<f64> {
    spark[line]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect()
}

/// Rates of the rows a snapshot reads (`key` -> [rx, tx] bits/s).
const ROWS: &str = r#"(() => {
    const r = e => [e.dataset.rxBps, e.dataset.txBps];
    const out = {side: document.body.dataset.side};
    document.querySelectorAll('#owners tbody.owner').forEach(t => {
        out['owner|' + t.dataset.kind + '|' + t.dataset.name] = r(t);
        t.querySelectorAll('tr.iface').forEach(tr => { out['iface|' + tr.dataset.interface] = r(tr); });
        const s = t.querySelector('svg.spark path.rx');
        out['spark|' + t.dataset.name] = [s.getAttribute('d'), t.querySelector('svg.spark path.tx').getAttribute('d')];
    });
    document.querySelectorAll('#nics tr.nic').forEach(tr => { out['nic|' + tr.dataset.interface] = r(tr); });
    return out;
})()"#;

/// On a fixture host where two VMs' taps burst for 6 s and are quiet
/// around it, one page shows the burst in those VMs' sparklines (and
/// nothing in a quiet owner's); the side switch swaps rx and tx for the
/// VMs' taps and their owners and for nothing else; and on a 390 px screen
/// the page, its sparklines and the switch still fit. With
/// `LIVE_SCREENSHOTS=<dir>` it saves page-desktop.png and page-phone.png there.
#[test]
fn a_browser_keeps_a_short_history_and_shows_either_side() {
    let Some(chromium) = chromium() else {
        require(false, "chromium not installed (Debian package chromium)");
        return;
    };
    let (host, toml) = vm_host();
    const MB: f64 = 1e6;
    let traffic = Traffic::start(
        host.path(),
        vec![
            // A NIC and a VM's tap that differ by direction, all along.
            Flow::even("enp8s0f0", (50.0 * MB, 5.0 * MB)),
            Flow::even("vnet3", (1.0 * MB, 0.25 * MB)),
            // Host-owned: a bridge, and a veth no container claims.
            Flow::even("br0", (2.0 * MB, 1.0 * MB)),
            Flow::even("veth402dbe0", (0.3 * MB, 0.1 * MB)),
            // A macvtap counts as its VM does: never swapped.
            Flow::even("macvtap0", (0.5 * MB, 0.0)),
            // The burst: pihole sends 100 Mb/s (its tap receives), pritunl
            // receives 200 Mb/s (its tap transmits).
            Flow {
                interface: "vnet0",
                steady: (0.0, 0.0),
                burst: (12.5 * MB, 0.0),
            },
            Flow {
                interface: "vnet1",
                steady: (0.0, 0.0),
                burst: (0.0, 25.0 * MB),
            },
        ],
    );
    let server = Server::start(host.path(), &toml);
    wait_for(Duration::from_secs(10), || {
        server
            .metrics()
            .contains("instance=\"pritunl\"")
            .then_some(())
    })
    .expect("the VMs resolved");
    let mut browser = Browser::start(|flags| {
        let mut c = Command::new(chromium);
        c.args(flags);
        c
    });
    let page = browser.open(&format!("http://{}/", server.addr), true);
    browser.desktop(&page, 1280, 1000);

    // Quiet first (two points), then 6 s of burst, then quiet again.
    wait_refreshes(&mut browser, &page, 3);
    traffic.burst(true);
    std::thread::sleep(Duration::from_secs(6));
    traffic.burst(false);
    wait_refreshes(&mut browser, &page, 4);
    let shown = browser.eval(&page, SPARKS);
    let sparks = &shown["sparks"];
    for (owner, line, bps) in [("vm|pihole", "rx", 100e6), ("vm|pritunl", "tx", 200e6)] {
        let spark = &sparks[owner];
        let v = values(spark, line);
        assert!(v.len() >= 8, "{owner}: {spark}");
        let peak = v.iter().cloned().fold(0.0, f64::max);
        let at = v.iter().position(|&x| x == peak).unwrap();
        assert!(
            (0.8 * bps..1.2 * bps).contains(&peak),
            "{owner}: {line} peak {peak}: {spark}"
        );
        assert!(
            (peak - spark["max"].as_f64().unwrap()).abs() < 0.01 * bps,
            "{owner}: the scale's top is the peak"
        );
        assert!(
            v[0] < 0.01 * bps && *v.last().unwrap() < 0.01 * bps,
            "{owner}: quiet before and after: {v:?}"
        );
        assert!(
            0 < at && at < v.len() - 1,
            "{owner}: the burst inside: {v:?}"
        );
        // The other direction stayed at zero.
        let other = if line == "rx" { "tx" } else { "rx" };
        assert!(
            values(spark, other).iter().all(|&x| x < 0.01 * bps),
            "{owner}: {spark}"
        );
        // Time runs left to right, the newest at the right edge.
        let xs: Vec<f64> = spark[line]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_f64().unwrap())
            .collect();
        assert!(
            xs.windows(2).all(|w| w[0] < w[1]) && *xs.last().unwrap() == 120.0,
            "{xs:?}"
        );
    }
    assert_eq!(
        sparks["bridge|br1"]["max"], 0.0,
        "a quiet owner's line is flat: {}",
        sparks["bridge|br1"]
    );
    assert!(
        values(&sparks["nic row|enp8s0f0"], "rx")
            .iter()
            .all(|&x| x > 300e6),
        "{}",
        sparks["nic row|enp8s0f0"]
    );
    println!(
        "pihole rx sparkline after {} refreshes: {:?}",
        shown["refreshes"],
        values(&sparks["vm|pihole"], "rx")
            .iter()
            .map(|v| (v / 1e6).round())
            .collect::<Vec<_>>()
    );

    // The CSP allows no inline style: the sparklines are styled by class.
    assert_eq!(
        browser.eval(&page, "document.querySelectorAll('[style]').length"),
        0
    );
    if let Some(dir) = std::env::var_os("LIVE_SCREENSHOTS") {
        browser.screenshot(&page, &Path::new(&dir).join("page-desktop.png"));
    }

    // The switch, in one go so that no refresh comes between the reads.
    let both = browser.eval(
        &page,
        &format!(
            "(() => {{ const a = {ROWS}; document.querySelector('#side input[value=owner]').click(); \
             return [a, {ROWS}]; }})()"
        ),
    );
    let (host_side, owner_side) = (&both[0], &both[1]);
    assert_eq!(host_side["side"], "host");
    assert_eq!(owner_side["side"], "owner");
    let bps = |side: &Value, key: &str, i: usize| -> f64 {
        side[key][i]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {side}"))
            .parse()
            .unwrap()
    };
    // vyos sends 8 Mb/s through its tap, receives 2 Mb/s there and 4 Mb/s on its macvtap.
    assert!(
        (7e6..9e6).contains(&bps(host_side, "iface|vnet3", 0)),
        "{host_side}"
    );
    let swapped = [
        "iface|vnet0",
        "iface|vnet1",
        "iface|vnet2",
        "iface|vnet3",
        "owner|vm|pihole",
        "owner|vm|pritunl",
        "spark|pihole",
        "spark|pritunl",
    ];
    let mut keys = 0;
    for (key, value) in host_side.as_object().unwrap() {
        if key == "side" {
            continue;
        }
        keys += 1;
        let there = &owner_side[key];
        if swapped.contains(&key.as_str()) {
            assert_eq!(
                (&value[0], &value[1]),
                (&there[1], &there[0]),
                "{key} swaps"
            );
        } else if !key.ends_with("vyos") {
            assert_eq!(value, there, "{key} stays");
        }
    }
    assert!(keys > 20, "{host_side}");
    for key in [
        "nic|enp8s0f0",
        "iface|br0",
        "iface|veth402dbe0",
        "owner|host|host",
    ] {
        assert!(
            bps(host_side, key, 0) > bps(host_side, key, 1) && bps(host_side, key, 1) > 0.0,
            "{key} has traffic that would show a swap: {host_side}"
        );
    }
    // vyos: its tap swapped, its macvtap not.
    assert_eq!(owner_side["iface|macvtap0"], host_side["iface|macvtap0"]);
    for (i, j) in [(0, 1), (1, 0)] {
        let sum = bps(host_side, "iface|vnet3", j) + bps(host_side, "iface|macvtap0", i);
        assert!(
            (bps(owner_side, "owner|vm|vyos", i) - sum).abs() < 1.0,
            "vyos {i}: {owner_side}"
        );
    }
    // The next refresh keeps the owner's side.
    wait_refreshes(&mut browser, &page, 1);
    let next = browser.eval(&page, ROWS);
    assert_eq!(next["side"], "owner");
    assert!(
        (1.5e6..2.5e6).contains(&bps(&next, "iface|vnet3", 0)),
        "vyos receives 2 Mb/s: {next}"
    );
    assert!(
        (300e6..500e6).contains(&bps(&next, "nic|enp8s0f0", 0)),
        "the NIC's rx stays: {next}"
    );

    // On a phone's screen nothing is wider than the screen, sparklines and
    // the switch included.
    browser.phone(&page, 390, 844);
    let fits = wait_for(Duration::from_secs(5), || {
        let v = browser.eval(
            &page,
            r#"(() => {
                const right = s => Math.max(...[...document.querySelectorAll(s)].map(e => e.getBoundingClientRect().right));
                const spark = document.querySelector('svg.spark').getBoundingClientRect();
                return [window.innerWidth, document.documentElement.scrollWidth, right('svg.spark'), right('#side'), spark.width];
            })()"#,
        );
        (v[0] == 390).then_some(v)
    })
    .expect("the phone viewport applied");
    assert!(
        fits[1].as_f64() <= Some(390.0),
        "page width on a 390 px phone: {fits}"
    );
    assert!(
        fits[2].as_f64() <= Some(390.0) && fits[3].as_f64() <= Some(390.0),
        "{fits}"
    );
    assert!(fits[4].as_f64() > Some(40.0), "the sparkline shows: {fits}");
    if let Some(dir) = std::env::var_os("LIVE_SCREENSHOTS") {
        browser.screenshot(&page, &Path::new(&dir).join("page-phone.png"));
    }
}

/// A cgroup of the test's own under the cgroup v2 hierarchy (`name`), with a
/// systemd-like service below it (`system.slice/<unit>.service`); the
/// exporter's counting programs are linked there through its config. When
/// dropped, the processes left in them are killed and the cgroups removed,
/// children first.
struct ServiceCgroup {
    top: PathBuf,
    service: PathBuf,
    /// What [`ServiceCgroup::run`] started.
    children: Vec<std::process::Child>,
}

impl ServiceCgroup {
    /// `None` (the test skips) without a cgroup v2 hierarchy in view.
    fn new(name: &str, unit: &str) -> Option<ServiceCgroup> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = cgroup2_mount(&mountinfo);
        if !require(root.is_some(), "no cgroup v2 hierarchy mounted") {
            return None;
        }
        let top = root?.join(name);
        let service = top.join(format!("system.slice/{unit}.service"));
        std::fs::create_dir_all(&service).unwrap();
        Some(ServiceCgroup {
            top,
            service,
            children: Vec::new(),
        })
    }

    /// The exporter's config: count below `top`, refresh the tree each second.
    fn config(&self) -> String {
        format!(
            "[accounting]\ncgroup = {:?}\ninterval = \"1s\"\n",
            self.top.display().to_string()
        )
    }

    /// Starts `script` in bash in the service's cgroup (it moves itself
    /// there before it opens any socket).
    fn run(&mut self, script: &str) {
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && {script}",
                self.service.display()
            ))
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Waits for what [`ServiceCgroup::run`] started; each must succeed.
    fn wait(&mut self) {
        for mut child in self.children.drain(..) {
            assert!(child.wait().unwrap().success());
        }
    }
}

impl Drop for ServiceCgroup {
    fn drop(&mut self) {
        let slice = self.service.parent().unwrap().to_owned();
        for dir in [&self.service, &slice, &self.top] {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in [&self.service, &slice, &self.top] {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A TCP sink on 127.0.0.1 that reads and drops whatever it is sent, on
/// any number of connections; its port.
fn sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || std::io::copy(&mut &conn, &mut std::io::sink()));
        }
    });
    port
}

/// `(instance_type, instance)` -> value of one `net_workload_*` family.
fn workload_values(samples: &[Sample], family: &str) -> BTreeMap<(String, String), f64> {
    samples
        .iter()
        .filter(|s| s.name == family)
        .map(|s| {
            let label = |l| s.label(l).unwrap().to_owned();
            ((label("instance_type"), label("instance")), s.value)
        })
        .collect()
}

/// With the kernel counting per cgroup (programs linked at a test cgroup),
/// `/api/v1/interfaces` lists each workload with the counters `/metrics`
/// gives it: read between two scrapes, each value lies between theirs. A
/// service is its own owner; the page without JavaScript lists it with its
/// counters. Where nothing counts (the other tests' fixture servers) the
/// key is left out.
#[test]
fn the_api_has_the_workloads_metrics_has() {
    if !require(is_root(), "needs root to count traffic per cgroup (BPF)") {
        return;
    }
    let Some(mut cgroup) =
        ServiceCgroup::new(&format!("tne-live-api-{}", std::process::id()), "tneapi")
    else {
        return;
    };
    let host = copy_fixture("seed-host");
    let server = Server::start(host.path(), &cgroup.config());
    // It answers once its programs are linked: nothing sent before is counted.
    server.metrics();
    let port = sink();
    cgroup.run(&format!(
        "head -c 1000000 /dev/zero > /dev/tcp/127.0.0.1/{port}"
    ));
    cgroup.wait();
    let service = ("service".to_owned(), "tneapi".to_owned());
    wait_for(Duration::from_secs(10), || {
        let sent = workload_values(&parse(&server.metrics()), "net_workload_tx_bytes_total");
        sent.get(&service).is_some_and(|&v| v >= 1e6).then_some(())
    })
    .unwrap_or_else(|| panic!("the service counted: {}", server.metrics()));

    let before = parse(&server.metrics());
    let r = http(server.addr, "GET", "/api/v1/interfaces");
    let after = parse(&server.metrics());
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    let list = doc["workloads"].as_array().expect("a workloads list");
    let listed: BTreeSet<(String, String)> = list
        .iter()
        .map(|w| {
            (
                w["instance_type"].as_str().unwrap().to_owned(),
                w["instance"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed.len(), list.len(), "each once: {list:?}");
    let families = [
        ("rx_bytes", "net_workload_rx_bytes_total"),
        ("tx_bytes", "net_workload_tx_bytes_total"),
        ("rx_packets", "net_workload_rx_packets_total"),
        ("tx_packets", "net_workload_tx_packets_total"),
    ];
    for (key, family) in families {
        let (was, now) = (
            workload_values(&before, family),
            workload_values(&after, family),
        );
        assert!(
            was.keys().all(|k| listed.contains(k)) && listed.iter().all(|k| now.contains_key(k)),
            "{family}: {was:?} {listed:?} {now:?}"
        );
        for w in list {
            let k = (
                w["instance_type"].as_str().unwrap().to_owned(),
                w["instance"].as_str().unwrap().to_owned(),
            );
            let value = w[key].as_u64().unwrap() as f64;
            let low = was.get(&k).copied().unwrap_or(0.0);
            assert!(
                low <= value && value <= now[&k],
                "{k:?} {key}: {low} <= {value} <= {}",
                now[&k]
            );
        }
    }
    let svc = list
        .iter()
        .find(|w| w["instance"] == "tneapi")
        .expect("the service");
    assert_eq!(
        svc["owner"],
        serde_json::json!({"kind": "service", "name": "tneapi"})
    );
    assert_eq!(svc["app"], "");
    let sent = svc["tx_bytes"].as_u64().unwrap();
    assert!(
        (1_000_000..1_100_000).contains(&sent),
        "1 MB and its headers: {sent}"
    );
    // The same read keys as the interfaces' counters do (no other field).
    let mut keys: Vec<&str> = svc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "app",
            "instance",
            "instance_type",
            "owner",
            "rx_bytes",
            "rx_packets",
            "tx_bytes",
            "tx_packets"
        ]
    );

    // Without JavaScript: the service is an owner, its row has its counters.
    let html = http(server.addr, "GET", "/").body;
    let owner = html
        .find(r#"<tbody class="owner" data-kind="service" data-name="tneapi""#)
        .unwrap_or_else(|| panic!("{html}"));
    let row = html
        .find(r#"<tr class="wl" data-workload="tneapi" data-type="service""#)
        .unwrap();
    assert!(
        owner < row && !html[owner..row].contains("</tbody>"),
        "{html}"
    );
    let totals =
        regex::Regex::new(r#"<small class="totals">sockets: rx [^<]* · tx (1\.0\d) MB</small>"#)
            .unwrap();
    assert!(totals.is_match(&html[row..]), "{}", &html[row..row + 300]);
    assert!(html.contains(r#"data-named="js""#));

    // The fixture servers of the other tests count nothing: no key.
    let plain = Server::start(&fixture("seed-host"), "");
    let doc: Value =
        serde_json::from_str(&http(plain.addr, "GET", "/api/v1/interfaces").body).unwrap();
    assert!(doc.get("workloads").is_none(), "{doc}");
    assert!(
        http(plain.addr, "GET", "/")
            .body
            .contains(r#"data-named="off""#)
    );
}

/// The page's workloads and its line under the NICs, as numbers: the
/// service's owner and row, every workload row's and pihole's rates (host
/// side), the uplinks' transmit rate and the line's attributes.
const NAMED: &str = r#"(() => {
    const q = s => document.querySelector(s), n = q('#named');
    const owner = q('#owners tbody.owner[data-kind="service"][data-name="tnepage"]');
    const row = owner && owner.querySelector('tr.wl[data-workload="tnepage"][data-type="service"]');
    const sum = (s, d) => [...document.querySelectorAll(s)].reduce((a, e) => a + (+e.dataset[d] || 0), 0);
    return {
        refreshes: +document.body.dataset.refreshes,
        side: document.body.dataset.side,
        owner: owner ? [owner.dataset.rxBps, owner.dataset.txBps] : null,
        row: row ? [row.dataset.rxBps, row.dataset.txBps, row.querySelector('.totals').textContent] : null,
        wl_tx: sum('#owners tr.wl', 'txBps'),
        vm_sent: sum('#owners tbody.owner[data-kind="vm"]', 'rxBps'),
        up_tx: sum('#nics tr.nic', 'txBps'),
        state: n.dataset.named, pct: n.dataset.txPct, raw: n.dataset.txRaw, rx_pct: n.dataset.rxPct,
        text: n.textContent,
    };
})()"#;

/// A service (a process in `system.slice/tnepage.service` below the test's
/// cgroup, where the exporter counts) sends TCP all along; pihole sends
/// 4 Mb/s through its tap; the uplink sends 32 Mb/s, then, in a burst, only
/// 80 kb/s. The page shows the service as an owner with its rate (its
/// workload row's), the same on either side; the line under the NICs names
/// the service's and pihole's share of what the uplinks sent, and caps it
/// at 100 % (and says so) once they send more than the uplinks. With
/// `LIVE_SCREENSHOTS=<dir>` it saves page-workloads.png there.
#[test]
fn a_browser_shows_workloads_and_how_much_of_the_uplinks_it_names() {
    if !require(is_root(), "needs root to count traffic per cgroup (BPF)") {
        return;
    }
    let Some(chromium) = chromium() else {
        require(false, "chromium not installed (Debian package chromium)");
        return;
    };
    let Some(mut cgroup) =
        ServiceCgroup::new(&format!("tne-live-page-{}", std::process::id()), "tnepage")
    else {
        return;
    };
    let (host, toml) = vm_host();
    const MB: f64 = 1e6;
    let traffic = Traffic::start(
        host.path(),
        vec![
            Flow {
                interface: "enp8s0f0",
                steady: (1.0 * MB, 4.0 * MB),
                burst: (1.0 * MB, 0.01 * MB),
            },
            Flow::even("vnet0", (0.5 * MB, 0.0)),
        ],
    );
    let server = Server::start(host.path(), &format!("{toml}{}", cgroup.config()));
    let port = sink();
    cgroup.run(&format!(
        "exec 3>/dev/tcp/127.0.0.1/{port}; while :; do head -c 100000 /dev/zero >&3; sleep 0.1; done"
    ));
    wait_for(Duration::from_secs(10), || {
        let body = server.metrics();
        (body.contains("instance=\"pihole\"") && body.contains("instance=\"tnepage\""))
            .then_some(())
    })
    .expect("the VMs resolved and the service counted");
    let mut browser = Browser::start(|flags| {
        let mut c = Command::new(chromium);
        c.args(flags);
        c
    });
    let page = browser.open(&format!("http://{}/", server.addr), true);
    browser.desktop(&page, 1280, 1000);

    let bps = |v: &Value, key: &str, i: usize| -> f64 {
        v[key][i]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let shown = wait_for(Duration::from_secs(30), || {
        let v = browser.eval(&page, NAMED);
        (v["refreshes"].as_u64() >= Some(3) && v["state"] == "ok" && bps(&v, "owner", 1) > 0.0)
            .then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "the service's rate and the named share: {}",
            browser.eval(&page, NAMED)
        )
    });
    // An owner without interfaces is counted by its workloads.
    assert_eq!(shown["owner"][0], shown["row"][0], "{shown}");
    assert_eq!(shown["owner"][1], shown["row"][1], "{shown}");
    let sent = bps(&shown, "owner", 1);
    assert!((1e6..20e6).contains(&sent), "about 8 Mb/s at most: {shown}");
    assert!(
        shown["row"][2]
            .as_str()
            .unwrap()
            .starts_with("sockets: rx "),
        "{shown}"
    );
    let pct: f64 = shown["pct"].as_str().unwrap().parse().unwrap();
    let raw: f64 = shown["raw"].as_str().unwrap().parse().unwrap();
    let (wl, vm, up) = (
        shown["wl_tx"].as_f64().unwrap(),
        shown["vm_sent"].as_f64().unwrap(),
        shown["up_tx"].as_f64().unwrap(),
    );
    assert!(
        (28e6..36e6).contains(&up),
        "the uplink sends 32 Mb/s: {shown}"
    );
    assert!((3e6..5e6).contains(&vm), "pihole sends 4 Mb/s: {shown}");
    assert!(
        (raw - (wl + vm) / up * 100.0).abs() < 0.01,
        "named = workloads' and VMs' sent over the uplinks' sent: {shown}"
    );
    assert!(0.0 < pct && pct == raw && pct < 100.0, "{shown}");
    assert!(
        shown["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Named by workloads and VMs: {pct:.1} % of the ")),
        "{shown}"
    );
    assert_eq!(
        browser.eval(&page, "document.querySelectorAll('[style]').length"),
        0,
        "no inline style"
    );
    if let Some(dir) = std::env::var_os("LIVE_SCREENSHOTS") {
        browser.screenshot(&page, &Path::new(&dir).join("page-workloads.png"));
    }

    // A workload's own sockets have no other side: the switch leaves them.
    let both = browser.eval(
        &page,
        &format!(
            "(() => {{ const a = {NAMED}; document.querySelector('#side input[value=owner]').click(); \
             const b = {NAMED}; document.querySelector('#side input[value=host]').click(); return [a, b]; }})()"
        ),
    );
    assert_eq!(both[1]["side"], "owner");
    for key in ["owner", "row"] {
        assert_eq!(both[0][key], both[1][key], "{key}: {both}");
    }

    // The uplink sends less than the service alone: capped, and said so.
    traffic.burst(true);
    let capped = wait_for(Duration::from_secs(20), || {
        let v = browser.eval(&page, NAMED);
        (v["state"] == "capped").then_some(v)
    })
    .unwrap_or_else(|| panic!("capped: {}", browser.eval(&page, NAMED)));
    assert_eq!(capped["pct"], "100", "{capped}");
    let raw: f64 = capped["raw"].as_str().unwrap().parse().unwrap();
    assert!(raw > 100.0, "{capped}");
    let text = capped["text"].as_str().unwrap();
    assert!(
        text.contains("100.0 % of the ") && text.contains("Capped at 100 %"),
        "{capped}"
    );
    traffic.burst(false);

    // On a phone's screen the workload rows fit too.
    assert_fits_a_phone(&mut browser, &page, "#owners tr.wl");
    if let Some(dir) = std::env::var_os("LIVE_SCREENSHOTS") {
        browser.screenshot(&page, &Path::new(&dir).join("page-workloads-phone.png"));
    }
}

/// The service of [`the_api_and_the_page_show_peers_and_clients`]: listens
/// on 127.0.0.1 (its port on a line), reads every connection to its end.
const LISTEN_PY: &str = r#"
import socket, threading
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
def drain(c):
    while c.recv(65536):
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"#;

/// What the page shows of the service's peers and the clients, as numbers.
const PEERS_SHOWN: &str = r#"(() => {
    const q = s => document.querySelector(s), c = q('#clients');
    const owner = q('#owners tbody.owner[data-kind="service"][data-name="tnepeer"]');
    const rows = owner ? [...owner.querySelectorAll('tr.wl, tr.peer')] : [];
    const client = c && c.querySelector('tr.client[data-peer="127.0.0.1"][data-protocol="tnetest"]');
    return {
        refreshes: +document.body.dataset.refreshes,
        rows: rows.map(r => r.classList.contains('wl') ? 'wl ' + r.dataset.workload
            : ['peer', r.dataset.peer, r.dataset.protocol, r.dataset.side].join(' ')),
        served: rows.filter(r => r.dataset.protocol === 'tnetest').map(r =>
            [r.dataset.rxBps, r.dataset.txBps, r.querySelector('.totals').textContent]),
        clients_hidden: c ? c.hidden : null,
        clients: c ? [...c.querySelectorAll('tr.client')].map(r => r.dataset.peer + ' ' + r.dataset.protocol) : null,
        client: client ? [client.dataset.rxBps, client.cells[2].textContent] : null,
        client_name: client ? [...client.cells[0].querySelectorAll('.who, .addr')].map(e => e.textContent) : null,
    };
})()"#;

/// The name `[names.hosts]` gives the test's peer (127.0.0.1): quotes in
/// it, for the page to escape.
const PEER_NAME: &str = "alice's \"laptop\"";
/// The names resolver each second, from the hosts table only (no DNS).
const NAMES_TOML: &str = "[names]\ninterval = \"1s\"\nreverse_dns = false\n[names.hosts]\n\"127.0.0.1\" = \"alice's \\\"laptop\\\"\"\n";

/// Whether `metrics` has the test peer's `net_peer_info` with its name.
fn samples_have_info(metrics: &str) -> bool {
    parse(metrics).iter().any(|s| {
        s.name == "net_peer_info"
            && s.label("peer") == Some("127.0.0.1")
            && s.label("peer_name") == Some(PEER_NAME)
            && s.label("source") == Some("config")
    })
}

/// With the kernel counting per peer (the programs linked at a test
/// cgroup, a peers tick each second): a service listens on a port the
/// config names `tnetest` and the test sends it 2 MB, then keeps sending;
/// the service itself sends 1 MB to a sink on a port named `tnesink`.
/// `/api/v1/interfaces` lists both peers (the service serves the first,
/// is the client of the second) as `/metrics` has them; the page without
/// JavaScript lists them under the service's row and the first among the
/// clients; in Chromium (where installed) they get rates, the served one
/// in the Clients section too, and fit a phone's screen. The config's
/// `[names.hosts]` names the peer: the API carries the name, and the page
/// shows the peer by it (the address after it), with and without
/// JavaScript.
#[test]
fn the_api_and_the_page_show_peers_and_clients() {
    if !require(is_root(), "needs root to count traffic per peer (BPF)") {
        return;
    }
    let Some(mut cgroup) =
        ServiceCgroup::new(&format!("tne-live-peers-{}", std::process::id()), "tnepeer")
    else {
        return;
    };
    let mut service = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c \"$TNE_PY\"",
            cgroup.service.display()
        ))
        .env("TNE_PY", LISTEN_PY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(service.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    // Not among the children `wait` waits for: the cgroup's kill ends it.
    let _service = service;
    let served: u16 = line.trim().parse().expect("the service's port");
    let sink = sink();
    let host = copy_fixture("seed-host");
    let server = Server::start(
        host.path(),
        &format!(
            "{}[peers]\ninterval = \"1s\"\n[peers.ports]\ntnetest = [{served}]\ntnesink = [{sink}]\n{NAMES_TOML}",
            cgroup.config()
        ),
    );
    // It answers once its programs are linked.
    server.metrics();
    let exchange = |cgroup: &mut ServiceCgroup| {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", served)).unwrap();
        std::io::Write::write_all(&mut conn, &vec![0u8; 2_000_000]).unwrap();
        drop(conn);
        cgroup.run(&format!(
            "head -c 1000000 /dev/zero > /dev/tcp/127.0.0.1/{sink}"
        ));
        cgroup.wait();
    };
    let find = |doc: &Value, protocol: &str| -> Option<Value> {
        doc["peers"]
            .as_array()?
            .iter()
            .find(|p| {
                p["instance"] == "tnepeer" && p["peer"] == "127.0.0.1" && p["protocol"] == protocol
            })
            .cloned()
    };
    // A peer's series starts from 0 once the tick shows it (what came
    // before went to `other`): first the peers, then what is measured.
    exchange(&mut cgroup);
    wait_for(Duration::from_secs(15), || {
        let doc: Value =
            serde_json::from_str(&http(server.addr, "GET", "/api/v1/interfaces").body).ok()?;
        (find(&doc, "tnetest").is_some() && find(&doc, "tnesink").is_some()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the peers shown: {}",
            http(server.addr, "GET", "/api/v1/interfaces").body
        )
    });
    exchange(&mut cgroup);
    let doc = wait_for(Duration::from_secs(15), || {
        let doc: Value =
            serde_json::from_str(&http(server.addr, "GET", "/api/v1/interfaces").body).ok()?;
        let done = find(&doc, "tnetest")?["rx_bytes"].as_u64()? >= 2_000_000
            && find(&doc, "tnesink")?["tx_bytes"].as_u64()? >= 1_000_000;
        done.then_some(doc)
    })
    .unwrap_or_else(|| {
        panic!(
            "the peers counted: {}",
            http(server.addr, "GET", "/api/v1/interfaces").body
        )
    });
    let got = find(&doc, "tnetest").unwrap();
    let rx = got["rx_bytes"].as_u64().unwrap();
    assert!(
        (2_000_000..2_200_000).contains(&rx),
        "2 MB and its headers: {got}"
    );
    assert_eq!(
        (&got["instance_type"], &got["app"], &got["side"]),
        (
            &Value::from("service"),
            &Value::from(""),
            &Value::from("server")
        ),
        "{got}"
    );
    let mut keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "app",
            "instance",
            "instance_type",
            "peer",
            "protocol",
            "rx_bytes",
            "side",
            "tx_bytes"
        ]
    );
    let client = find(&doc, "tnesink").unwrap();
    assert_eq!(client["side"], "client", "{client}");
    // The hosts table names the peer once a names refresh has seen it.
    let named = |doc: &Value| -> Option<Value> {
        doc["names"]
            .as_array()?
            .iter()
            .find(|n| n["peer"] == "127.0.0.1")
            .cloned()
    };
    let name = wait_for(Duration::from_secs(15), || {
        named(&serde_json::from_str(&http(server.addr, "GET", "/api/v1/interfaces").body).ok()?)
    })
    .unwrap_or_else(|| {
        panic!(
            "the peer's name: {}",
            http(server.addr, "GET", "/api/v1/interfaces").body
        )
    });
    assert_eq!(
        name,
        serde_json::json!({
            "peer": "127.0.0.1", "peer_name": PEER_NAME, "user": "", "machine": "",
            "share": "", "initiator": "", "target": "", "source": "config"
        })
    );
    assert!(
        samples_have_info(&server.metrics()),
        "net_peer_info names the peer on /metrics too"
    );
    assert_eq!(doc["peers_omitted"], 0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let tick = doc["peers_time"].as_f64().expect("a tick's time");
    assert!(now - 30.0 < tick && tick <= now + 1.0, "{tick} vs {now}");
    // By workload, `other` after the workload's peers.
    let list = doc["peers"].as_array().unwrap();
    let mine: Vec<&str> = list
        .iter()
        .filter(|p| p["instance"] == "tnepeer")
        .map(|p| p["peer"].as_str().unwrap())
        .collect();
    let first_other = mine
        .iter()
        .position(|p| *p == "other")
        .unwrap_or(mine.len());
    assert!(
        mine[first_other..].iter().all(|p| *p == "other"),
        "{mine:?}"
    );
    // `/metrics` has the series, at least as far as the API's read.
    let samples = parse(&server.metrics());
    let metric = samples
        .iter()
        .find(|s| {
            s.name == "net_peer_rx_bytes_total"
                && s.label("instance") == Some("tnepeer")
                && s.label("peer") == Some("127.0.0.1")
                && s.label("protocol") == Some("tnetest")
                && s.label("side") == Some("server")
        })
        .expect("the served peer's series");
    assert!(metric.value >= rx as f64, "{} < {rx}", metric.value);

    // Without JavaScript: the peers under the service's row; the served
    // one among the clients, the other not.
    let html = http(server.addr, "GET", "/").body;
    let row = html
        .find(r#"<tr class="wl" data-workload="tnepeer" data-type="service""#)
        .unwrap_or_else(|| panic!("{html}"));
    let peer = html
        .find(r#"<tr class="peer" data-workload="tnepeer" data-type="service" data-peer="127.0.0.1" data-protocol="tnetest" data-side="server""#)
        .unwrap_or_else(|| panic!("{html}"));
    assert!(
        row < peer && !html[row..peer].contains("</tbody>"),
        "{html}"
    );
    assert!(html.contains(r#"data-peer="127.0.0.1" data-protocol="tnesink" data-side="client""#));
    let clients = &html[html.find(r#"<section id="clients""#).unwrap()..];
    let clients = &clients[..clients.find("</section>").unwrap()];
    assert!(!clients.starts_with(r#"<section id="clients" aria-labelledby="clients-h" hidden"#));
    assert!(
        clients.contains(r#"<tr class="client" data-peer="127.0.0.1" data-protocol="tnetest""#),
        "{clients}"
    );
    assert!(!clients.contains("tnesink"), "{clients}");
    assert!(
        clients.contains(
            r#"<span class="who">alice&#x27;s &quot;laptop&quot;</span> <span class="addr">127.0.0.1</span>"#
        ),
        "by its name, escaped: {clients}"
    );

    let Some(chromium) = chromium() else {
        require(false, "chromium not installed (Debian package chromium)");
        return;
    };
    // Keep sending to the service (about 8 Mb/s) while the page looks.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", served)).unwrap();
        std::thread::spawn(move || {
            let chunk = vec![0u8; 100_000];
            while !stop.load(Ordering::Relaxed) {
                if std::io::Write::write_all(&mut conn, &chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut browser = Browser::start(|flags| {
        let mut c = Command::new(chromium);
        c.args(flags);
        c
    });
    let page = browser.open(&format!("http://{}/", server.addr), true);
    browser.desktop(&page, 1280, 1000);
    let rate = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let shown = wait_for(Duration::from_secs(30), || {
        let v = browser.eval(&page, PEERS_SHOWN);
        (rate(&v["served"][0][0]) > 0.0 && rate(&v["client"][0]) > 0.0).then_some(v)
    })
    .unwrap_or_else(|| panic!("the peer's rate: {}", browser.eval(&page, PEERS_SHOWN)));
    let rx = rate(&shown["served"][0][0]);
    assert!((2e6..40e6).contains(&rx), "about 8 Mb/s: {shown}");
    assert_eq!(
        rate(&shown["client"][0]),
        rx,
        "one workload: the same rate {shown}"
    );
    assert_eq!(shown["client"][1], "tnepeer", "{shown}");
    assert_eq!(
        shown["client_name"],
        serde_json::json!([PEER_NAME, "127.0.0.1"]),
        "{shown}"
    );
    assert_eq!(shown["clients_hidden"], false, "{shown}");
    assert!(
        shown["served"][0][2]
            .as_str()
            .unwrap()
            .starts_with("served here · rx "),
        "{shown}"
    );
    let rows: Vec<&str> = shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        rows[0], "wl tnepeer",
        "the workload, then its peers: {shown}"
    );
    assert!(rows.contains(&"peer 127.0.0.1 tnetest server"), "{shown}");
    assert!(
        rows.iter()
            .skip_while(|r| !r.starts_with("peer other"))
            .all(|r| r.starts_with("peer other")),
        "other last: {shown}"
    );
    assert!(
        !shown["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("tnesink")),
        "{shown}"
    );
    assert_eq!(
        browser.eval(&page, "document.querySelectorAll('[style]').length"),
        0,
        "no inline style"
    );
    if let Some(dir) = std::env::var_os("LIVE_SCREENSHOTS") {
        browser.screenshot(&page, &Path::new(&dir).join("page-peers.png"));
        browser.eval(&page, "document.querySelector('#clients').scrollIntoView()");
        browser.screenshot(&page, &Path::new(&dir).join("page-clients.png"));
        browser.eval(&page, "window.scrollTo(0, 0)");
    }
    assert_fits_a_phone(&mut browser, &page, "#owners tr.peer, #clients tr.client");
    if let Some(dir) = std::env::var_os("LIVE_SCREENSHOTS") {
        browser.screenshot(&page, &Path::new(&dir).join("page-peers-phone.png"));
        browser.eval(&page, "document.querySelector('#clients').scrollIntoView()");
        browser.screenshot(&page, &Path::new(&dir).join("page-clients-phone.png"));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
}
