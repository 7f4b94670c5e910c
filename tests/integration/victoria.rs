//! VictoriaMetrics (Debian's `victoria-metrics`, with vmalert) in place of
//! Prometheus: its own scraper runs docs/prometheus.md's scrape config unchanged
//! against two exporters of the same fixture host, which stay two hosts
//! (one counting traffic per cgroup, below a cgroup of the test's own; the
//! other without, its apps read on their veths); every PromQL line of the
//! README and docs/ and every dashboard panel answers through its
//! Prometheus API, the recording rules evaluated by vmalert; vmalert accepts
//! the rule files; and a real Prometheus remote-writing into it delivers the
//! same series it holds itself, as does a vmagent with the same config.
//!
//! The hosts run Docker apps without a Docker engine: a fake engine on a
//! unix socket names containers whose namespaces the fixture holds.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Map, Value};
use truenas_net_exporter::config::cli::Cli;

use crate::fixture_host::seed_vm_toml;
use crate::http::Server;
use crate::monitoring::{
    Senders, cgroup2, counts_per_cgroup, dashboard, host_with_a_system_container, panel_queries,
    sink,
};
use crate::prometheus::{
    OTHER_QUERIES, PROMETHEUS_QUERIES, all_answer, doc_promql, doc_scrape_config, encode,
    free_port, label_values, query_values, start_prometheus_with,
};
use crate::support::{
    GrowingRx, RX_BYTES, TX_BYTES, have, http, is_root, parse, require, wait_for,
};

/// A server process on a loopback port with its own data directory, killed
/// when dropped.
pub(crate) struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// A fresh port and data directory for a daemon about to start.
    pub(crate) fn prepare() -> (SocketAddr, tempfile::TempDir) {
        let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        (addr, tempfile::tempdir().unwrap())
    }

    /// Starts `command` (its output in `data`/log) and waits until `ready`
    /// answers with `status`.
    pub(crate) fn start(
        mut command: Command,
        addr: SocketAddr,
        data: tempfile::TempDir,
        ready: &str,
        status: u16,
    ) -> Daemon {
        let log = std::fs::File::create(data.path().join("log")).unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let mut d = Daemon { child, addr, data };
        let up = wait_for(Duration::from_secs(30), || {
            if d.child.try_wait().ok().flatten().is_some() {
                return Some(false);
            }
            std::net::TcpStream::connect(d.addr).ok()?;
            (http(d.addr, "GET", ready).status == status).then_some(true)
        });
        assert_eq!(up, Some(true), "{command:?} not ready: {}", d.log());
        d
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("log")).unwrap_or_default()
    }
}

/// A VictoriaMetrics single node; `scrape` is a `-promscrape.config` file's text.
pub(crate) fn start_victoria(scrape: Option<&str>) -> Daemon {
    let (addr, data) = Daemon::prepare();
    let mut c = Command::new("victoria-metrics");
    c.arg(format!(
        "-storageDataPath={}",
        data.path().join("vm").display()
    ))
    .arg(format!("-httpListenAddr={addr}"))
    .arg("-loggerLevel=ERROR")
    // By default the last 30 s of samples stay out of query results.
    .arg("-search.latencyOffset=0s")
    .arg("-search.disableCache");
    if let Some(scrape) = scrape {
        let path = data.path().join("scrape.yml");
        std::fs::write(&path, scrape).unwrap();
        c.arg(format!("-promscrape.config={}", path.display()));
    }
    Daemon::start(c, addr, data, "/health", 200)
}

/// The Docker containers of [`apps_host`]: name, Compose project, pid, and
/// the ifindexes of its veth's host end and own end (the seed fixture's
/// veths, whose `iflink` names the container's end).
pub(crate) const CONTAINERS: [(&str, &str, u32, (u32, u32)); 4] = [
    ("immich-server", "ix-immich", 8801, (17, 42)),
    ("grafana", "ix-grafana", 8802, (19, 43)),
    ("grafana-renderer", "ix-grafana", 8803, (20, 44)),
    ("nextcloud", "ix-nextcloud", 8804, (21, 45)),
];

/// The host ends of [`CONTAINERS`]' veths, in the same order.
pub(crate) const CONTAINER_VETHS: [&str; 4] =
    ["veth402dbe0", "veth8b2f7e9", "vethc4b3cbf", "veth4be5411"];

/// The seed host with its VMs (fake midclt), an LXC container and Docker
/// apps in [`CONTAINERS`], whose engine is [`FakeEngine`].
pub(crate) fn apps_host() -> tempfile::TempDir {
    let host = host_with_a_system_container();
    let proc = host.path().join("proc");
    for (i, (_, _, pid, (host_end, own_end))) in CONTAINERS.iter().enumerate() {
        let dir = proc.join(pid.to_string());
        let eth0 = dir.join("root/sys/class/net/eth0");
        std::fs::create_dir_all(&eth0).unwrap();
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        std::os::unix::fs::symlink(format!("net:[40265331{i:02}]"), dir.join("ns/net")).unwrap();
        std::fs::write(
            dir.join("cgroup"),
            format!("0::/system.slice/docker-{}.scope\n", container_id(i)),
        )
        .unwrap();
        std::fs::write(eth0.join("iflink"), format!("{host_end}\n")).unwrap();
        std::fs::write(eth0.join("ifindex"), format!("{own_end}\n")).unwrap();
    }
    host
}

fn container_id(i: usize) -> String {
    format!("{:064x}", 0xc0ffee00 + i)
}

/// Answers the Docker API calls the exporter makes with [`CONTAINERS`] and
/// the networks of the seed fixture's two `br-*` bridges.
pub(crate) struct FakeEngine {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeEngine {
    pub(crate) fn start() -> FakeEngine {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || answer(conn));
            }
        });
        FakeEngine { socket, _dir: dir }
    }
}

fn answer(conn: UnixStream) {
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    while let Some(request) = crate::support::next_request(&mut reader) {
        let path = request.split(' ').nth(1).unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        if path.ends_with("/events") {
            // A stream that stays open and quiet: nothing changes.
            let _ = out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let mut rest = String::new();
            while reader.read_line(&mut rest).unwrap_or(0) > 0 {}
            return;
        }
        let body = engine_answer(path);
        let (status, body) = match body {
            Some(b) => ("200 OK", b.to_string()),
            None => ("404 Not Found", r#"{"message":"not found"}"#.to_owned()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if out
            .write_all(head.as_bytes())
            .and_then(|()| out.write_all(body.as_bytes()))
            .is_err()
        {
            return;
        }
    }
}

fn engine_answer(path: &str) -> Option<Value> {
    use serde_json::json;
    if path.ends_with("/version") {
        return Some(json!({"Version": "27.5.1", "ApiVersion": "1.47", "MinAPIVersion": "1.24"}));
    }
    if path.ends_with("/_ping") {
        return Some(json!("OK"));
    }
    if path.ends_with("/containers/json") {
        let list: Vec<Value> = CONTAINERS
            .iter()
            .enumerate()
            .map(|(i, (name, ..))| json!({"Id": container_id(i), "Names": [format!("/{name}")], "State": "running"}))
            .collect();
        return Some(Value::Array(list));
    }
    if path.ends_with("/networks") {
        return Some(json!([
            {"Name": "bridge", "Id": format!("{:064x}", 1), "Driver": "bridge",
             "Options": {"com.docker.network.bridge.name": "docker0"}},
            {"Name": "ix-immich_default", "Id": format!("2c852816592c{}", "0".repeat(52)), "Driver": "bridge", "Options": {}},
            {"Name": "ix-grafana_default", "Id": format!("f33136af96f9{}", "0".repeat(52)), "Driver": "bridge", "Options": {}},
        ]));
    }
    let id = path.strip_suffix("/json")?.rsplit('/').next()?;
    let i = (0..CONTAINERS.len()).find(|&i| container_id(i) == id)?;
    let (name, project, pid, _) = CONTAINERS[i];
    Some(json!({
        "Id": id,
        "Name": format!("/{name}"),
        "State": {"Running": true, "Pid": pid},
        "Config": {"Labels": {"com.docker.compose.project": project}},
        "HostConfig": {"NetworkMode": format!("{project}_default")},
    }))
}

/// An exporter of `root` (an [`apps_host`]) with the fixture's VMs and the
/// fake engine's apps, returned once both are resolved.
pub(crate) fn apps_exporter(root: &Path, engine: &FakeEngine) -> Server {
    apps_exporter_with(root, engine, "")
}

/// [`apps_exporter`] with `toml` added to its configuration.
pub(crate) fn apps_exporter_with(root: &Path, engine: &FakeEngine, toml: &str) -> Server {
    let cli = Cli {
        rootfs: Some(root.to_owned()),
        procfs: Some(root.join("proc")),
        docker_socket: Some(engine.socket.to_str().unwrap().to_owned()),
        ..Cli::default()
    };
    let server = Server::start_with(&cli, &format!("{}{toml}", seed_vm_toml()));
    // Labels that change after the first scrape would make series twice.
    wait_for(Duration::from_secs(20), || {
        let samples = parse(&server.metrics());
        // Owned: named after something other than the interface itself.
        let owned = |iface: &str| {
            samples.iter().any(|s| {
                s.name == "net_interface_rx_bytes_total"
                    && s.label("interface") == Some(iface)
                    && s.label("instance").is_some_and(|i| i != iface)
            })
        };
        (CONTAINER_VETHS.iter().all(|v| owned(v))
            && owned("br-f33136af96f9")
            && owned("vnet0")
            && owned("veth3f3cbed"))
        .then_some(())
    })
    .unwrap_or_else(|| {
        let body = server.metrics();
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("net_interface_rx_bytes") || l.contains("resolver_up"))
            .collect();
        panic!("apps, VMs or the system container unresolved: {lines:#?}")
    });
    server
}

/// Traffic on `hosts`: host `h`'s enp8s0f0 receives `(h + 1) * 1000`
/// bytes/s; each container veth `i` sends `(i + 1) * 1000` and each VM tap
/// `vnetN` receives `(N + 1) * 1000` bytes/s, on every host.
pub(crate) fn traffic(hosts: &[&Path]) -> GrowingRx {
    let mut counters = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        counters.push((*host, "enp8s0f0", RX_BYTES, (h as u64 + 1) * 1000));
        for (i, veth) in CONTAINER_VETHS.iter().enumerate() {
            counters.push((*host, *veth, TX_BYTES, (i as u64 + 1) * 1000));
        }
        for (n, tap) in ["vnet0", "vnet1", "vnet2", "vnet3", "vnet5"]
            .iter()
            .enumerate()
        {
            counters.push((*host, *tap, RX_BYTES, (n as u64 + 1) * 1000));
        }
    }
    GrowingRx::counters(&counters)
}

/// An Alertmanager stand-in, which vmalert needs to start with alerting
/// rules: accepts every request.
fn alert_sink() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&conn);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let _ = (&conn)
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    addr
}

fn have_victoria() -> bool {
    require(
        have("victoria-metrics"),
        "victoria-metrics not installed (Debian package victoria-metrics)",
    )
}

fn have_vmalert() -> bool {
    require(
        have("vmalert"),
        "vmalert not installed (Debian package victoria-metrics)",
    )
}

fn rule_files() -> [PathBuf; 2] {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
    [
        dir.join("prometheus_rules.yaml"),
        dir.join("prometheus_alerts.yaml"),
    ]
}

fn labels(series: &[(Map<String, Value>, f64)], label: &str) -> Vec<String> {
    let maps: Vec<_> = series.iter().map(|(m, _)| m.clone()).collect();
    label_values(&maps, label)
}

#[test]
fn victoria_scrapes_with_the_documented_config_and_answers_every_query_and_panel() {
    if !have_victoria() || !have_vmalert() {
        return;
    }
    let engine = FakeEngine::start();
    let hosts = [apps_host(), apps_host()];
    let _traffic = traffic(&[hosts[0].path(), hosts[1].path()]);
    // Host 0 also counts traffic per cgroup, in a cgroup tree of the test's
    // own: a service and immich's container each send bytes there. Host 1
    // cannot (its procfs has no cgroup hierarchy), so its apps fall back to
    // their veths. Without BPF (not root) the per-service query and panel,
    // which only those counters feed, go unchecked.
    let n = std::process::id();
    let service = format!("tnevm{n}");
    let mut senders = Senders::default();
    let tree = cgroup2()
        .filter(|_| {
            require(
                is_root(),
                "counting per cgroup needs root: the per-service query and panel go unchecked",
            )
        })
        .map(|h| h.join(format!("tnevm{n}")));
    let counting_toml = tree.as_ref().map_or(String::new(), |tree| {
        let sink = sink("127.0.0.1:0");
        let slice = tree.join("system.slice");
        senders.start(&slice.join(format!("{service}.service")), sink);
        senders.start(
            &slice.join(format!("docker-{}.scope", container_id(0))),
            sink,
        );
        format!(
            "[accounting]\ncgroup = {:?}\ninterval = \"1s\"\n[peers]\ninterval = \"1s\"\n\
             [names]\ninterval = \"1s\"\nreverse_dns = false\n[names.hosts]\n\"127.0.0.0/8\" = \"this-host\"\n",
            tree.display().to_string()
        )
    });
    let servers = [
        apps_exporter_with(hosts[0].path(), &engine, &counting_toml),
        apps_exporter(hosts[1].path(), &engine),
    ];
    let counting = tree.is_some()
        && require(
            counts_per_cgroup(&servers[0]),
            "the exporter cannot load its BPF programs: the per-service query and panel go unchecked",
        );
    // What only the per-cgroup (and per-peer) counters feed.
    let per_service = |q: &str| {
        q.contains("instance_type=\"service\"")
            || q.contains("host_service:")
            || q.contains("net_peer_")
            || q.contains("host_peer:")
            || q.contains("host_protocol:")
    };
    let one_host = parse(&servers[0].metrics())
        .iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .count() as f64;
    // The documented text, with nothing but a faster scrape than VM's default.
    let scrape = doc_scrape_config(&[servers[0].addr, servers[1].addr]);
    let vm = start_victoria(Some(&format!("global:\n  scrape_interval: 1s\n{scrape}")));
    // vmalert evaluates the recording rules into VictoriaMetrics, which the
    // dashboard's panels read.
    let (addr, data) = Daemon::prepare();
    let mut c = Command::new("vmalert");
    for f in rule_files() {
        c.arg(format!("-rule={}", f.display()));
    }
    c.arg(format!("-datasource.url=http://{}", vm.addr))
        .arg(format!("-remoteWrite.url=http://{}", vm.addr))
        .arg("-remoteWrite.flushInterval=1s")
        .arg("-evaluationInterval=1s")
        .arg(format!("-notifier.url=http://{}", alert_sink()))
        .arg(format!("-httpListenAddr={addr}"))
        .arg("-loggerLevel=ERROR");
    let vmalert = Daemon::start(c, addr, data, "/health", 200);

    let targets = wait_for(Duration::from_secs(30), || {
        let r = http(vm.addr, "GET", "/api/v1/targets");
        let v: Value = serde_json::from_str(&r.body).ok()?;
        let active = v["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 2 && active.iter().all(|t| t["health"] == "up")).then_some(active)
    })
    .unwrap_or_else(|| panic!("both targets up: {}", vm.log()));
    let mut scraped_hosts: Vec<&str> = targets
        .iter()
        .map(|t| t["labels"]["host"].as_str().unwrap())
        .collect();
    scraped_hosts.sort();
    let mut addrs = [servers[0].addr.to_string(), servers[1].addr.to_string()];
    addrs.sort();
    assert_eq!(scraped_hosts, addrs, "host is the target's address");

    // Hosts stay apart: twice one host's series, each host's own rate.
    let count = |q: &str| query_values(vm.addr, q);
    let total = wait_for(Duration::from_secs(30), || {
        let c = count("count(net_interface_rx_bytes_total)");
        (c.first().map(|(_, n)| *n) == Some(2.0 * one_host)).then_some(())
    });
    assert!(
        total.is_some(),
        "{:?}, one host has {one_host}",
        count("count(net_interface_rx_bytes_total)")
    );
    let per_host = count("count by (host) (net_interface_rx_bytes_total)");
    assert_eq!(per_host.len(), 2, "{per_host:?}");
    assert!(per_host.iter().all(|(_, n)| *n == one_host), "{per_host:?}");

    let rates = wait_for(Duration::from_secs(60), || {
        let r = query_values(
            vm.addr,
            r#"rate(net_interface_rx_bytes_total{interface="enp8s0f0"}[10s])"#,
        );
        let enough =
            count(r#"count_over_time(net_interface_rx_bytes_total{interface="enp8s0f0"}[10s])"#);
        (r.len() == 2 && enough.iter().all(|(_, n)| *n >= 5.0)).then_some(r)
    })
    .expect("a rate per host");
    for (labels, value) in &rates {
        let host = labels["host"].as_str().unwrap();
        let h = servers
            .iter()
            .position(|s| s.addr.to_string() == host)
            .unwrap();
        let expected = (h as f64 + 1.0) * 1000.0;
        assert!(
            (value - expected).abs() < expected * 0.2,
            "{host}: {value} bytes/s, expected {expected}: the hosts' samples mixed"
        );
    }

    // Every documented PromQL line: docs/prometheus.md's, then the others'.
    let (queries, others) = doc_promql();
    let queries: Vec<String> = queries.into_iter().chain(others).collect();
    assert_eq!(
        queries.len(),
        PROMETHEUS_QUERIES + OTHER_QUERIES,
        "{queries:?}"
    );
    assert!(per_service(&queries[2]), "{}", queries[2]);
    let answers = |q: &String, r: &Vec<(Map<String, Value>, f64)>| {
        !r.is_empty() || (!counting && per_service(q))
    };
    let results = wait_for(Duration::from_secs(60), || {
        let r: Vec<_> = queries.iter().map(|q| query_values(vm.addr, q)).collect();
        queries
            .iter()
            .zip(&r)
            .all(|(q, r)| answers(q, r))
            .then_some(r)
    })
    .unwrap_or_else(|| {
        let empty: Vec<_> = queries
            .iter()
            .filter(|q| !answers(q, &query_values(vm.addr, q)))
            .collect();
        panic!("documented queries without an answer from VictoriaMetrics: {empty:#?}")
    });
    assert_eq!(
        labels(&results[0], "app"),
        [
            "grafana",
            "grafana",
            "immich",
            "immich",
            "nextcloud",
            "nextcloud"
        ],
        "per app, per host"
    );
    assert_eq!(
        labels(&results[1], "instance"),
        [
            "pihole", "pihole", "pritunl", "pritunl", "vnet5", "vnet5", "vyos", "vyos"
        ],
        "per VM, per host"
    );
    if counting {
        assert_eq!(
            labels(&results[2], "instance"),
            std::slice::from_ref(&service),
            "per service"
        );
        assert_eq!(
            labels(&results[2], "host"),
            [servers[0].addr.to_string()],
            "per service: host 0 only"
        );
    }
    assert!(labels(&results[4], "instance").contains(&"ix-immich_default".to_owned()));
    for (q, series) in queries.iter().zip(&results) {
        for (l, _) in series {
            assert!(l.contains_key("host"), "{q} mixes hosts: {l:?}");
        }
    }

    // Every dashboard panel, the recording rules' series written by vmalert.
    let panel_queries: Vec<(String, String)> = panel_queries(&dashboard())
        .into_iter()
        .filter(|(_, q)| counting || !per_service(q))
        .collect();
    assert!(panel_queries.len() >= 20, "{}", panel_queries.len());
    let answered = all_answer(vm.addr, &panel_queries, || {
        format!("vmalert: {}", vmalert.log())
    });
    let mut hosts_seen = BTreeSet::new();
    for ((title, q), series) in panel_queries.iter().zip(&answered) {
        for (l, _) in series {
            let host = l.get("host").and_then(Value::as_str);
            let host = host.unwrap_or_else(|| panic!("{title}: {q} mixes hosts: {l:?}"));
            hosts_seen.insert(host.to_owned());
        }
    }
    assert_eq!(hosts_seen.len(), 2, "{hosts_seen:?}");
    let every_app = [
        "grafana",
        "grafana",
        "immich",
        "immich",
        "nextcloud",
        "nextcloud",
    ];
    let apps = labels(
        &query_values(vm.addr, "host_app:net_interface_transmit_bits:rate5m"),
        "app",
    );
    assert_eq!(apps, every_app);
    // From the apps' side, one series per host and app whichever the source.
    // Only host 0's immich sends (its cgroup's bytes): the veths' receive
    // (what an app sent) stays put in the fixture.
    let sent = "host_app:net_workload_transmit_bits:rate5m";
    let expected = |(l, _): &(Map<String, Value>, f64)| {
        counting && l["app"] == "immich" && l["host"] == servers[0].addr.to_string().as_str()
    };
    let rates = wait_for(Duration::from_secs(30), || {
        let r = query_values(vm.addr, sent);
        (labels(&r, "app") == every_app && r.iter().all(|s| (s.1 > 0.0) == expected(s)))
            .then_some(r)
    });
    assert!(rates.is_some(), "{sent}: {:?}", query_values(vm.addr, sent));

    // Every rule's expression evaluates through the query API, and vmalert
    // runs every rule without an error.
    let mut rules = 0;
    for file in rule_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let groups: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        for group in groups["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let expr = rule["expr"].as_str().unwrap();
                let r = http(
                    vm.addr,
                    "GET",
                    &format!("/api/v1/query?query={}", encode(expr)),
                );
                assert_eq!(r.status, 200, "{expr}: {}", r.body);
                rules += 1;
            }
        }
    }
    let loaded: Value =
        serde_json::from_str(&http(vmalert.addr, "GET", "/api/v1/rules").body).unwrap();
    let loaded: Vec<&Value> = loaded["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(loaded.len(), rules, "vmalert runs every rule");
    for rule in loaded {
        assert_eq!(
            rule["lastError"].as_str().unwrap_or(""),
            "",
            "{}",
            rule["name"]
        );
    }
}

/// vmalert's own check of the rule files (MetricsQL parse, templates); a
/// broken copy shows it checks something.
#[test]
fn vmalert_accepts_the_rule_files() {
    if !have_vmalert() {
        return;
    }
    let check = |files: &[PathBuf]| {
        let mut c = Command::new("vmalert");
        c.arg("-dryRun").arg("-loggerLevel=ERROR");
        for f in files {
            c.arg(format!("-rule={}", f.display()));
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let files = rule_files();
    let (ok, log) = check(&files);
    assert!(ok, "{log}");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let (head, tail) = text.split_once("expr: |").expect("a rule expression");
    std::fs::write(&broken, format!("{head}expr: |\n          sum(({tail}")).unwrap();
    let (ok, log) = check(&[broken]);
    assert!(!ok, "a broken expression passes: {log}");
}

/// Prometheus with the documented scrape config and a `remote_write` to
/// VictoriaMetrics: what VictoriaMetrics holds is what Prometheus holds. And
/// a vmagent with the same scrape config, writing into another
/// VictoriaMetrics, sends the exporters' series just the same.
#[test]
fn prometheus_and_vmagent_remote_write_the_same_series_into_victoria() {
    if !have_victoria()
        || !require(
            have("vmagent"),
            "vmagent not installed (Debian package victoria-metrics)",
        )
        || !require(
            have("prometheus"),
            "prometheus not installed (Debian package prometheus)",
        )
    {
        return;
    }
    let engine = FakeEngine::start();
    let hosts = [apps_host(), apps_host()];
    let servers = [
        apps_exporter(hosts[0].path(), &engine),
        apps_exporter(hosts[1].path(), &engine),
    ];
    let vm = start_victoria(None);
    let config = format!(
        "remote_write:\n  - url: http://{}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n{}",
        vm.addr,
        doc_scrape_config(&[servers[0].addr, servers[1].addr])
    );
    let prom = start_prometheus_with(&config, &[]);

    // The series of both, each as its sorted label set.
    let series = |addr: SocketAddr| -> BTreeSet<String> {
        query_values(addr, r#"{job="truenas-net"}"#)
            .into_iter()
            .map(|(m, _)| serde_json::to_string(&m).unwrap())
            .collect()
    };
    let (in_prom, in_vm) = wait_for(Duration::from_secs(60), || {
        let p = series(prom.addr);
        let v = series(vm.addr);
        (!p.is_empty() && p == v).then_some((p, v))
    })
    .unwrap_or_else(|| {
        let p = series(prom.addr);
        let v = series(vm.addr);
        panic!(
            "only in Prometheus: {:#?}\nonly in VictoriaMetrics: {:#?}",
            p.difference(&v).collect::<Vec<_>>(),
            v.difference(&p).collect::<Vec<_>>()
        )
    });
    let exposed = parse(&servers[0].metrics()).len();
    assert!(
        in_vm.len() > 2 * exposed,
        "both hosts' samples and the scrape's own: {} of {exposed} per host",
        in_vm.len()
    );
    assert_eq!(in_prom.len(), in_vm.len());
    // And the values: a counter at one instant, the same in both.
    let at = |addr: SocketAddr| {
        let q = r#"net_interface_rx_bytes_total{interface="vnet3"}"#;
        let mut v: Vec<(String, f64)> = query_values(addr, q)
            .into_iter()
            .map(|(m, v)| (m["host"].as_str().unwrap().to_owned(), v))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let in_prom = at(prom.addr);
    assert_eq!(in_prom.len(), 2);
    assert_eq!(in_prom, at(vm.addr));

    let central = start_victoria(None);
    let (addr, data) = Daemon::prepare();
    let scrape = data.path().join("scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "global:\n  scrape_interval: 1s\n{}",
            doc_scrape_config(&[servers[0].addr, servers[1].addr])
        ),
    )
    .unwrap();
    let mut c = Command::new("vmagent");
    c.arg(format!("-promscrape.config={}", scrape.display()))
        .arg(format!(
            "-remoteWrite.url=http://{}/api/v1/write",
            central.addr
        ))
        .arg(format!(
            "-remoteWrite.tmpDataPath={}",
            data.path().join("queue").display()
        ))
        .arg("-remoteWrite.flushInterval=1s")
        .arg(format!("-httpListenAddr={addr}"))
        .arg("-loggerLevel=ERROR");
    let vmagent = Daemon::start(c, addr, data, "/health", 200);
    // The scrapers' own series (scrape_*) differ between the two; the
    // exporters' and `up` do not.
    let exported = |addr: SocketAddr| -> BTreeSet<String> {
        query_values(addr, r#"{job="truenas-net", __name__!~"scrape_.*"}"#)
            .into_iter()
            .map(|(m, _)| serde_json::to_string(&m).unwrap())
            .collect()
    };
    let from_prom = exported(prom.addr);
    assert!(from_prom.len() > exposed, "both hosts: {}", from_prom.len());
    let same = wait_for(Duration::from_secs(60), || {
        (exported(central.addr) == from_prom).then_some(())
    });
    assert!(
        same.is_some(),
        "vmagent's differ from Prometheus': {:#?}\n{}",
        exported(central.addr)
            .symmetric_difference(&from_prom)
            .collect::<Vec<_>>(),
        vmagent.log()
    );
}
