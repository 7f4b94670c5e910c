//! `monitoring/`: the rules pass promtool's checks and unit tests; the
//! dashboard has what Grafana needs to import it; and every panel's and every
//! rule's expression runs on a real Prometheus that scrapes three hosts with
//! docs/prometheus.md's config (the seed-host fixture: NICs, bridges, VLANs, VMs; this
//! host with a live Docker app; a fixture with an LXC container), each panel
//! returning data, every series keeping its host. A panel added later is
//! checked the same way: the test walks the JSON. The live host counts
//! traffic per cgroup: a bridged app, a host-network app and a service
//! stand-in send bytes, so the per-app and per-service panels show them.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;
use truenas_net_exporter::workloads::accounting::cgroup2_mount;

use crate::docker::{Cleanup, IMAGE, docker, engine, server_on, shared_engine};
use crate::fixture_host::seed_vm_toml;
use crate::http::Server;
use crate::prometheus::{all_answer, doc_scrape_config, query_values, start_prometheus_with};
use crate::support::{copy_fixture, have, parse, require, wait_for};

pub(crate) fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn rules_pass_promtools_checks_and_unit_tests() {
    if !require(
        have("promtool"),
        "promtool not installed (Debian package prometheus)",
    ) {
        return;
    }
    let checked = promtool(&[
        "check",
        "rules",
        "prometheus_rules.yaml",
        "prometheus_alerts.yaml",
    ]);
    assert!(checked.matches("SUCCESS").count() == 2, "{checked}");
    let tested = promtool(&["test", "rules", "tests/alerts_test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert is exercised by the unit tests.
    let alerts = std::fs::read_to_string(dir().join("prometheus_alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir().join("tests/alerts_test.yaml")).unwrap();
    for name in alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "{name} untested"
        );
    }
}

pub(crate) fn dashboard() -> Value {
    let text = std::fs::read_to_string(dir().join("dashboards/truenas-net.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
pub(crate) fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every panel target's expression, made concrete, with its panel's title.
pub(crate) fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), concrete(t["expr"].as_str()?))))
        })
        .collect()
}

#[test]
fn the_dashboard_has_what_grafana_needs_to_import_it() {
    let d = dashboard();
    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(
        variables.contains(&"datasource") && variables.contains(&"host"),
        "{variables:?}"
    );
    let datasource = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "datasource")
        .unwrap();
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert!(d["title"].is_string() && d["uid"].is_string());
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let id = p["id"].as_u64().expect("a numeric panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(grid[k].is_u64(), "panel {id}: gridPos.{k}");
        }
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "panel {id}: wider than the grid"
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {id} target");
                assert!(
                    t["expr"].as_str().is_some_and(|e| e.contains("$host")),
                    "panel {id}: every query follows the host variable"
                );
            }
        }
    }
    assert!(ids.len() >= 15, "{} panels", ids.len());
}

/// A copy of the seed-host fixture with an LXC container (found by its cgroup)
/// that owns veth3f3cbed (ifindex 22, its peer the container's eth0, 46).
pub(crate) fn host_with_a_system_container() -> tempfile::TempDir {
    let host = copy_fixture("seed-host");
    let proc = host.path().join("proc");
    std::fs::create_dir_all(proc.join("1/ns")).unwrap();
    std::os::unix::fs::symlink("net:[4026531840]", proc.join("1/ns/net")).unwrap();
    let pid = proc.join("8800");
    let eth0 = pid.join("root/sys/class/net/eth0");
    std::fs::create_dir_all(&eth0).unwrap();
    std::fs::create_dir_all(pid.join("ns")).unwrap();
    std::os::unix::fs::symlink("net:[4026532999]", pid.join("ns/net")).unwrap();
    std::fs::write(pid.join("cgroup"), "0::/lxc.payload.debian/init.scope\n").unwrap();
    std::fs::write(eth0.join("iflink"), "22\n").unwrap();
    std::fs::write(eth0.join("ifindex"), "46\n").unwrap();
    host
}

/// A TCP server on `addr` (port 0: any) that reads and drops what it is
/// sent: where the test's workloads send their bytes.
pub(crate) fn sink(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || std::io::copy(&mut &conn, &mut std::io::sink()));
        }
    });
    addr
}

/// A shell loop for busybox `sh`: 4 KB to `to` every second.
pub(crate) fn send_loop(to: SocketAddr) -> String {
    format!(
        "while :; do head -c 4096 /dev/zero | nc -w 1 {} {}; sleep 1; done",
        to.ip(),
        to.port()
    )
}

/// The cgroup v2 hierarchy this process sees, if any.
pub(crate) fn cgroup2() -> Option<PathBuf> {
    cgroup2_mount(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// Cgroups of the test's own, each with a shell in it sending 4 KB a second
/// over TCP, for the per-cgroup counters to name (a systemd service is
/// `<hierarchy>/system.slice/<unit>.service`). Dropping it kills what runs
/// in them and removes the cgroups it made.
#[derive(Default)]
pub(crate) struct Senders {
    made: Vec<PathBuf>,
    cgroups: Vec<PathBuf>,
    shells: Vec<Child>,
}

impl Senders {
    /// A shell in `cgroup`, made with any missing parent, sending to `to`.
    pub(crate) fn start(&mut self, cgroup: &Path, to: SocketAddr) {
        let mut missing: Vec<&Path> = cgroup.ancestors().take_while(|d| !d.exists()).collect();
        missing.reverse();
        for dir in missing {
            std::fs::create_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            self.made.push(dir.to_owned());
        }
        self.cgroups.push(cgroup.to_owned());
        // The shell moves itself in first: its children and sockets follow.
        let shell = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && while :; do head -c 4096 /dev/zero > /dev/tcp/{}/{}; sleep 1; done",
                cgroup.display(),
                to.ip(),
                to.port()
            ))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.shells.push(shell);
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        for shell in &mut self.shells {
            let _ = shell.kill();
            let _ = shell.wait();
        }
        // A `sleep` or `head` the shell left; a cgroup with a process in it
        // cannot be removed.
        for cgroup in &self.cgroups {
            let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
            let _ = wait_for(Duration::from_secs(5), || {
                let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).ok()?;
                procs.trim().is_empty().then_some(())
            });
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Whether `server`'s exporter counts traffic per cgroup (it loaded its
/// BPF programs).
pub(crate) fn counts_per_cgroup(server: &Server) -> bool {
    parse(&server.metrics()).iter().any(|s| {
        s.name == "truenas_net_exporter_source_up"
            && s.label("resolver") == Some("cgroups")
            && s.label("source") == Some("bpf")
            && s.value == 1.0
    })
}

/// The per-cgroup counting every 1 s (30 s by default), so that a cgroup
/// the test makes is named at once; loopback peers (the scrapers, the
/// tests' sinks) named, so that the documented join answers.
pub(crate) const ACCOUNTING_1S: &str = "[accounting]\ninterval = \"1s\"\n[peers]\ninterval = \"1s\"\n\
    [names]\ninterval = \"1s\"\nreverse_dns = false\n[names.hosts]\n\"127.0.0.0/8\" = \"this-host\"\n";

/// Substitutes the dashboard's variables as "All" and a short window.
pub(crate) fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$host", ".*")
        .replace("$workload", ".*")
}

#[test]
fn every_panel_and_rule_answers_on_a_real_prometheus() {
    if !require(
        have("prometheus"),
        "prometheus not installed (Debian package prometheus)",
    ) || !engine()
    {
        return;
    }
    let Some(hierarchy) = cgroup2() else {
        require(false, "no cgroup v2 hierarchy: no traffic per workload");
        return;
    };
    let _engine = shared_engine();
    let n = std::process::id();
    let app = format!("tnemon{n}");
    let mut c = Cleanup::default();
    let net = c.app(&app);
    // Bytes for the per-cgroup counters: the app's container on its bridge
    // sends to the bridge's host address; a second app, on the host
    // network (no veth: only those counters see it), and a service
    // stand-in send to the loopback.
    let gateway = crate::docker::gateway(&net);
    let bridged_sink = sink(&format!("{gateway}:0"));
    docker(&[
        "exec",
        "-d",
        &format!("ix-{app}-web-1"),
        "sh",
        "-c",
        &send_loop(bridged_sink),
    ]);
    let local_sink = sink("127.0.0.1:0");
    let host_app = format!("{app}h");
    c.run(
        &format!("ix-{host_app}-web-1"),
        &[
            "--label",
            &format!("com.docker.compose.project=ix-{host_app}"),
            "--network",
            "host",
            IMAGE,
            "sh",
            "-c",
            &send_loop(local_sink),
        ],
    );
    let mut senders = Senders::default();
    senders.start(
        &hierarchy.join(format!("system.slice/{app}.service")),
        local_sink,
    );

    let seed = Server::start(&crate::support::fixture("seed-host"), &seed_vm_toml());
    let containers = host_with_a_system_container();
    let lxc = Server::start(containers.path(), "");
    let docker_host = server_on(&crate::docker::socket(), ACCOUNTING_1S);
    if !require(
        counts_per_cgroup(&docker_host),
        "the exporter cannot load its BPF programs: no traffic per workload",
    ) {
        return;
    }
    let targets = [seed.addr, lxc.addr, docker_host.addr];
    let rules = [
        dir().join("prometheus_rules.yaml"),
        dir().join("prometheus_alerts.yaml"),
    ];
    let rule_refs: Vec<&Path> = rules.iter().map(PathBuf::as_path).collect();
    let prom = start_prometheus_with(&doc_scrape_config(&targets), &rule_refs);

    let queries = panel_queries(&dashboard());
    let results = all_answer(prom.addr, &queries, String::new);
    for ((title, q), series) in queries.iter().zip(&results) {
        for (labels, _) in series {
            assert!(
                labels.contains_key("host"),
                "{title}: {q} mixes hosts: {labels:?}"
            );
        }
    }
    let hosts: BTreeSet<String> = results
        .iter()
        .flatten()
        .filter_map(|(l, _)| l.get("host")?.as_str().map(str::to_owned))
        .collect();
    assert_eq!(hosts.len(), 3, "{hosts:?}");

    // The panels that matter per owner show the owners themselves.
    let owners = |q: &str, label: &str| -> BTreeSet<String> {
        query_values(prom.addr, q)
            .into_iter()
            .filter_map(|(l, _)| l.get(label)?.as_str().map(str::to_owned))
            .collect()
    };
    assert!(owners("host_app:net_interface_receive_bits:rate5m", "app").contains(&app));
    // Per app from the app's side: the bridged app and the host-network one
    // (which has no veth, so the host-side record lacks it); per service.
    let per_app = "host_app:net_workload_transmit_bits:rate5m";
    wait_for(Duration::from_secs(60), || {
        let apps = owners(per_app, "app");
        (apps.contains(&app) && apps.contains(&host_app)).then_some(())
    })
    .unwrap_or_else(|| panic!("{per_app}: {:?}", owners(per_app, "app")));
    assert!(!owners("host_app:net_interface_receive_bits:rate5m", "app").contains(&host_app));
    let per_service = "host_service:net_workload_transmit_bits:rate5m";
    wait_for(Duration::from_secs(60), || {
        owners(per_service, "instance").contains(&app).then_some(())
    })
    .unwrap_or_else(|| panic!("{per_service}: {:?}", owners(per_service, "instance")));
    // The bridged app is counted once: its veth's bytes (about as many) are
    // not added to its cgroup's.
    let once = format!(
        "{per_app}{{app=\"{app}\"}} / on (host, app) \
         (8 * sum by (host, app) (rate(net_workload_tx_bytes_total{{app=\"{app}\"}}[5m])))"
    );
    wait_for(Duration::from_secs(30), || {
        let ratio = query_values(prom.addr, &once).first()?.1;
        ((ratio - 1.0).abs() < 0.1).then_some(())
    })
    .unwrap_or_else(|| panic!("{once}: {:?}", query_values(prom.addr, &once)));
    assert!(owners("host_vm:net_interface_receive_bits:rate5m", "instance").contains("vyos"));
    assert!(
        owners(
            "host_system_container:net_interface_receive_bits:rate5m",
            "instance"
        )
        .contains("debian")
    );

    // Every rule parses and evaluates (alerts may rightly find nothing).
    for file in &rules {
        let text = std::fs::read_to_string(file).unwrap();
        let groups: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        for group in groups["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let expr = rule["expr"].as_str().unwrap();
                let r = crate::support::http(
                    prom.addr,
                    "GET",
                    &format!("/api/v1/query?query={}", crate::prometheus::encode(expr)),
                );
                assert_eq!(r.status, 200, "{expr}: {}", r.body);
            }
        }
    }
    let loaded = crate::support::http(prom.addr, "GET", "/api/v1/rules").body;
    let loaded: Value = serde_json::from_str(&loaded).unwrap();
    for group in loaded["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(
                rule["health"], "ok",
                "{}: {}",
                rule["name"], rule["lastError"]
            );
        }
    }
}

/// The panel of `dashboard` titled `title`: its targets' expressions.
fn panel_exprs(dashboard: &Value, title: &str) -> Vec<String> {
    let panel = panels(dashboard)
        .into_iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?}"));
    panel["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| concrete(t["expr"].as_str().unwrap()))
        .collect()
}

/// A LAGG host on a real Prometheus with the documented config and the rules:
/// the uplink panels and the saturation alert see the bond, once, at the
/// bond's rate, and never its ports (which carry the same bytes again).
#[test]
fn the_uplink_panels_and_alerts_count_a_bond_once() {
    if !require(
        have("prometheus"),
        "prometheus not installed (Debian package prometheus)",
    ) {
        return;
    }
    // eno1 receives 1 MB/s and eno2 3 MB/s; bond0, their sum, 4 MB/s.
    let host = crate::fixture_host::bond_host([1_000_000, 1_000_000]);
    let rx = crate::support::RX_BYTES;
    let _traffic = crate::support::GrowingRx::counters(&[
        (host.path(), "eno1", rx, 1_000_000),
        (host.path(), "eno2", rx, 3_000_000),
        (host.path(), "bond0", rx, 4_000_000),
    ]);
    let exporter = Server::start(host.path(), "");
    let rules = [
        dir().join("prometheus_rules.yaml"),
        dir().join("prometheus_alerts.yaml"),
    ];
    let rule_refs: Vec<&Path> = rules.iter().map(PathBuf::as_path).collect();
    let prom = start_prometheus_with(&doc_scrape_config(&[exporter.addr]), &rule_refs);

    let d = dashboard();
    let traffic = panel_exprs(&d, "Uplink traffic (NICs and bonds)");
    let utilisation = panel_exprs(&d, "Uplink utilisation (NICs and bonds)");
    // The saturation alert's own expression, with a threshold every link passes.
    let alerts = std::fs::read_to_string(&rules[1]).unwrap();
    let alerts: serde_norway::Value = serde_norway::from_str(&alerts).unwrap();
    let saturated = alerts["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "TrueNASNetInterfaceSaturated")
        .unwrap()["expr"]
        .as_str()
        .unwrap()
        .replace("> 0.9", ">= 0");
    assert!(saturated.contains(">= 0"), "{saturated}");

    // A 5m rate takes 5 minutes to reach the true rate (rate() divides by
    // the window): compare the bond with its ports, read at the same moment.
    let receive = &traffic[0];
    let ports = "sum(host_interface:net_interface_receive_bits:rate5m{interface=~\"eno1|eno2\"})";
    let (answered, both) = wait_for(Duration::from_secs(90), || {
        let bond = query_values(prom.addr, receive);
        let both = query_values(prom.addr, ports).first()?.1;
        (bond.iter().any(|(_, v)| *v > 0.0) && both > 0.0).then_some((bond, both))
    })
    .unwrap_or_else(|| panic!("no uplink traffic: {receive}"));
    let interfaces = |series: &[(serde_json::Map<String, Value>, f64)]| -> BTreeSet<String> {
        series
            .iter()
            .filter_map(|(l, _)| l.get("interface")?.as_str().map(str::to_owned))
            .collect()
    };
    let bond_only = BTreeSet::from(["bond0".to_owned()]);
    assert_eq!(interfaces(&answered), bond_only, "{receive}");
    let shown: f64 = answered.iter().map(|(_, v)| v).sum();
    assert!(
        (shown / both - 1.0).abs() < 0.1,
        "the panel shows {shown} b/s, the ports carry {both} b/s: counted once"
    );
    for q in traffic.iter().chain(&utilisation).chain([&saturated]) {
        let series = query_values(prom.addr, q);
        assert_eq!(interfaces(&series), bond_only, "{q}");
    }
    // Against the bond's own speed (2 Gb/s): at most 4 MB/s of 250 MB/s.
    let percent = query_values(prom.addr, &utilisation[0])[0].1;
    assert!(percent > 0.0 && percent < 2.0, "utilisation {percent}%");
}

/// The "Top peers" panel on a real Prometheus with the documented config and
/// the rules: a service (a cgroup the exporter counts below) sends to two
/// loopback peers on ports the config calls `tnemon`: 127.0.0.3, which
/// `[names.hosts]` names, and 127.0.0.4, which nothing names. Each of the panel's three queries (merged into one
/// table by their labels) lists both, once each: the first with its name
/// joined from `net_peer_info`, the second with its address as its name
/// (an unnamed peer is not dropped by the join), every row with the same
/// labels in all three.
#[test]
fn the_top_peers_panel_shows_names_and_keeps_unnamed_peers() {
    if !require(
        have("prometheus"),
        "prometheus not installed (Debian package prometheus)",
    ) || !require(
        crate::support::is_root(),
        "needs root to count traffic per peer (BPF)",
    ) {
        return;
    }
    let Some(hierarchy) = cgroup2() else {
        require(false, "no cgroup v2 hierarchy: no traffic per peer");
        return;
    };
    let top = hierarchy.join(format!("tne-mon-names-{}", std::process::id()));
    let mut senders = Senders::default();
    let (named, unnamed) = (sink("127.0.0.3:0"), sink("127.0.0.4:0"));
    let service = top.join("system.slice/tnenames.service");
    senders.start(&service, named);
    senders.start(&service, unnamed);
    let host = copy_fixture("seed-host");
    let server = Server::start(
        host.path(),
        &format!(
            "[accounting]\ncgroup = {:?}\ninterval = \"1s\"\n[peers]\ninterval = \"1s\"\n\
             [peers.ports]\ntnemon = [{}, {}]\n[names]\ninterval = \"1s\"\nreverse_dns = false\n[names.hosts]\n\"127.0.0.3\" = \"alice-laptop\"\n",
            top.display().to_string(),
            named.port(),
            unnamed.port()
        ),
    );
    if !require(
        counts_per_cgroup(&server),
        "the exporter cannot load its BPF programs: no traffic per peer",
    ) {
        return;
    }
    let rules = [dir().join("prometheus_rules.yaml")];
    let rule_refs: Vec<&Path> = rules.iter().map(PathBuf::as_path).collect();
    let prom = start_prometheus_with(&doc_scrape_config(&[server.addr]), &rule_refs);

    let queries = panel_exprs(&dashboard(), "Top peers");
    assert_eq!(queries.len(), 3, "total, received, sent");
    let peers = ["127.0.0.3", "127.0.0.4"];
    let answers = wait_for(Duration::from_secs(90), || {
        let answers: Vec<_> = queries.iter().map(|q| query_values(prom.addr, q)).collect();
        let shows = |series: &[(serde_json::Map<String, Value>, f64)], peer: &str| {
            series
                .iter()
                .any(|(l, v)| l["peer"] == peer && l.contains_key("peer_name") && *v > 0.0)
        };
        let named_yet = answers[0]
            .iter()
            .any(|(l, _)| l["peer"] == peers[0] && l["peer_name"] == "alice-laptop");
        (named_yet && answers.iter().all(|a| peers.iter().all(|p| shows(a, p)))).then_some(answers)
    })
    .unwrap_or_else(|| {
        let now: Vec<_> = queries.iter().map(|q| query_values(prom.addr, q)).collect();
        panic!("the panel's rows: {now:#?}\n{}", server.metrics())
    });
    let rows = |series: &[(serde_json::Map<String, Value>, f64)]| -> Vec<String> {
        let mut rows: Vec<String> = series
            .iter()
            .map(|(l, _)| serde_json::to_string(l).unwrap())
            .collect();
        rows.sort();
        rows
    };
    for (q, series) in queries.iter().zip(&answers) {
        assert_eq!(rows(series), rows(&answers[0]), "the same rows: {q}");
        let mine: Vec<_> = series
            .iter()
            .filter(|(l, _)| peers.contains(&l["peer"].as_str().unwrap()))
            .map(|(l, _)| l)
            .collect();
        assert_eq!(mine.len(), 2, "each peer once: {q}: {series:?}");
        for l in mine {
            let peer = l["peer"].as_str().unwrap();
            let name = if peer == peers[0] {
                "alice-laptop"
            } else {
                peer
            };
            assert_eq!(l["peer_name"], name, "{q}: {l:?}");
            assert_eq!(
                (&l["protocol"], &l["side"]),
                (&Value::from("tnemon"), &Value::from("client")),
                "{q}: {l:?}"
            );
            let mut keys: Vec<&str> = l.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["host", "peer", "peer_name", "protocol", "side"],
                "{q}"
            );
        }
    }
}

/// The seed's plain scrape config (two lines, no `honor_labels`, no `host`
/// relabelling): the dashboard's first panel, "Scrape config", says what to
/// add, where every other panel would be empty or mix boxes; with the
/// README's config it says all is well, per host.
#[test]
fn the_dashboard_says_what_a_plain_scrape_config_lacks() {
    if !require(
        have("prometheus"),
        "prometheus not installed (Debian package prometheus)",
    ) {
        return;
    }
    let host = copy_fixture("seed-host");
    let exporter = Server::start(host.path(), "");
    let d = dashboard();
    let check = panels(&d)
        .into_iter()
        .find(|p| p["title"] == "Scrape config")
        .expect("a Scrape config panel");
    assert_eq!(
        panels(&d)
            .iter()
            .map(|p| p["gridPos"]["y"].as_u64().unwrap())
            .min(),
        Some(0)
    );
    assert_eq!(check["gridPos"]["y"], 0, "it is the first thing one sees");
    let expr = concrete(check["targets"][0]["expr"].as_str().unwrap());
    let mappings = check["fieldConfig"]["defaults"]["mappings"]
        .as_array()
        .unwrap();
    let text_for = |value: f64| -> String {
        for m in mappings {
            let o = &m["options"];
            let text = match m["type"].as_str().unwrap() {
                "value" => o[format!("{value}")]["text"].as_str(),
                "range" if value >= o["from"].as_f64().unwrap() => o["result"]["text"].as_str(),
                _ => None,
            };
            if let Some(text) = text {
                return text.to_owned();
            }
        }
        panic!("no text for {value}")
    };
    let rules = [dir().join("prometheus_rules.yaml")];
    let rule_refs: Vec<&Path> = rules.iter().map(PathBuf::as_path).collect();

    // A plain scrape config, as a user might paste it (docs/prometheus.md).
    let plain = format!(
        "scrape_configs:\n  - job_name: \"truenas-net\"\n    static_configs:\n      - targets: [\"{}\"]\n",
        exporter.addr
    );
    let prom = start_prometheus_with(&plain, &rule_refs);
    let answer = wait_for(Duration::from_secs(30), || {
        let v = query_values(prom.addr, &expr);
        v.iter().any(|(_, n)| *n > 0.0).then_some(v)
    })
    .expect("the check sees interfaces scraped without host");
    for (labels, n) in &answer {
        assert!(!labels.contains_key("host"), "{labels:?}");
        let text = text_for(*n);
        assert!(
            text.contains("honor_labels: true") && text.contains("host"),
            "the panel says what to add: {text}"
        );
    }
    let description = check["description"].as_str().unwrap();
    for line in [
        "honor_labels: true",
        "source_labels: [host, __address__]",
        "regex: \";(.+)\"",
        "target_label: host",
    ] {
        assert!(description.contains(line), "{line}");
        assert!(
            crate::prometheus::doc_scrape_config(&[exporter.addr]).contains(line),
            "the README's config has {line}"
        );
    }
    drop(prom);

    // The README's config: all is well, per host.
    let prom = start_prometheus_with(&doc_scrape_config(&[exporter.addr]), &rule_refs);
    let answer = wait_for(Duration::from_secs(30), || {
        let v = query_values(prom.addr, &expr);
        (!v.is_empty()).then_some(v)
    })
    .expect("the check answers");
    for (labels, n) in &answer {
        assert!(labels.contains_key("host"), "{labels:?}");
        assert_eq!(*n, 0.0, "{labels:?}");
        assert!(text_for(*n).starts_with("OK"));
    }
}
