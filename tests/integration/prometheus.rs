//! Layer 5: a real Prometheus (Debian's `prometheus`) scrapes two exporters
//! every second: the seed-host fixture (NICs, bridges, VMs through its fake
//! midclt) and this host with a real Docker engine, a TrueNAS-style app and
//! a systemd service stand-in (a cgroup of the test's own) sending bytes.
//! Its scrape config is docs/prometheus.md's, and every PromQL line of the
//! README and docs/ is run through the HTTP API and must return the
//! expected series. With the same config, two exporters of the same host
//! stay two hosts.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::docker::{Cleanup, engine, server_on, shared_engine};
use crate::fixture_host::seed_vm_toml;
use crate::http::Server;
use crate::monitoring::{ACCOUNTING_1S, Senders, cgroup2, counts_per_cgroup, sink};
use crate::support::{
    GrowingRx, copy_fixture, doc, doc_blocks, doc_files, fixture, have, http, require, wait_for,
};

/// The file with the scrape config and the queries: `docs/prometheus.md`.
pub(crate) const PROMETHEUS_DOC: &str = "docs/prometheus.md";

/// The PromQL lines of `docs/prometheus.md` (the per-owner queries).
pub(crate) const PROMETHEUS_QUERIES: usize = 6;

/// The PromQL lines of every other documentation file: the VLAN join and
/// utilisation (docs/metrics.md), the busiest peers and their names
/// (docs/workloads.md).
pub(crate) const OTHER_QUERIES: usize = 4;

/// Every PromQL line of the documentation: those of `docs/prometheus.md`,
/// and those of every other file (README.md, docs/*.md by name,
/// CONTRIBUTING.md), in that order.
pub(crate) fn doc_promql() -> (Vec<String>, Vec<String>) {
    let mut queries = Vec::new();
    let mut others = Vec::new();
    for (path, text) in doc_files() {
        if path == PROMETHEUS_DOC {
            queries.extend(promql_lines(&text));
        } else {
            others.extend(promql_lines(&text));
        }
    }
    (queries, others)
}

/// The first fenced block of `docs/prometheus.md`, by its tag.
fn doc_block(lang: &str) -> String {
    doc_blocks(&doc(PROMETHEUS_DOC), lang)
        .into_iter()
        .next()
        .expect("block")
}

/// The query lines of every `promql` block in `text`, in order.
pub(crate) fn promql_lines(text: &str) -> Vec<String> {
    doc_blocks(text, "promql")
        .iter()
        .flat_map(|block| {
            block
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scrape config of `docs/prometheus.md`, its example targets replaced by `targets`.
pub fn doc_scrape_config(targets: &[SocketAddr]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let example = r#""truenas.lan:9551", "backup-nas.lan:9551""#;
    let scrape = doc_block("yaml").replace(example, &list.join(", "));
    assert!(
        scrape.contains(&list[0]),
        "the scrape config of docs/prometheus.md names the example targets"
    );
    scrape
}

fn start_prometheus(targets: &[SocketAddr]) -> Prometheus {
    start_prometheus_with(&doc_scrape_config(targets), &[])
}

/// A Prometheus scraping every second with `scrape` (a `scrape_configs:`
/// block, and any other top-level keys) and `rule_files` loaded.
pub fn start_prometheus_with(scrape: &str, rule_files: &[&Path]) -> Prometheus {
    let data = tempfile::tempdir().unwrap();
    let rules: String = rule_files
        .iter()
        .map(|f| format!("  - {:?}\n", f.display().to_string()))
        .collect();
    let rules = if rules.is_empty() {
        String::new()
    } else {
        format!("rule_files:\n{rules}")
    };
    let config =
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rules}{scrape}");
    let path = data.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let p = Prometheus {
        child,
        addr,
        _data: data,
    };
    wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(p.addr).ok()?;
        (http(p.addr, "GET", "/-/ready").status == 200).then_some(())
    })
    .expect("prometheus ready");
    p
}

pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant query: each series' labels.
fn query(prom: SocketAddr, q: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    query_values(prom, q).into_iter().map(|(m, _)| m).collect()
}

/// The result vector of an instant query: each series' labels and value.
pub fn query_values(
    prom: SocketAddr,
    q: &str,
) -> Vec<(serde_json::Map<String, serde_json::Value>, f64)> {
    let r = http(prom, "GET", &format!("/api/v1/query?query={}", encode(q)));
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let value = s["value"][1].as_str().unwrap().parse().unwrap();
            (s["metric"].as_object().unwrap().clone(), value)
        })
        .collect()
}

/// Each query's series once every one of them answers (recording rules
/// and rate() need a few scrapes), within 90 s; else a panic naming those
/// still empty, with `context` after them.
pub fn all_answer(
    addr: SocketAddr,
    queries: &[(String, String)],
    context: impl FnOnce() -> String,
) -> Vec<Vec<(serde_json::Map<String, serde_json::Value>, f64)>> {
    let answered = crate::support::wait_for(std::time::Duration::from_secs(90), || {
        let results: Vec<_> = queries.iter().map(|(_, q)| query_values(addr, q)).collect();
        results.iter().all(|r| !r.is_empty()).then_some(results)
    });
    answered.unwrap_or_else(|| {
        let empty: Vec<_> = queries
            .iter()
            .filter(|(_, q)| query_values(addr, q).is_empty())
            .map(|(t, q)| format!("{t}: {q}"))
            .collect();
        panic!("panels without data: {empty:#?}\n{}", context())
    })
}

pub(crate) fn label_values(
    series: &[serde_json::Map<String, serde_json::Value>],
    label: &str,
) -> Vec<String> {
    let mut v: Vec<String> = series
        .iter()
        .filter_map(|s| s.get(label)?.as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

#[test]
fn documented_queries_answer_from_a_real_prometheus() {
    if !require(
        have("prometheus"),
        "prometheus not installed (Debian package prometheus)",
    ) || !engine()
    {
        return;
    }
    let Some(hierarchy) = cgroup2() else {
        require(false, "no cgroup v2 hierarchy: no traffic per service");
        return;
    };
    let _engine = shared_engine();
    let n = std::process::id();
    let app = format!("tneprom{n}");
    let mut c = Cleanup::default();
    let net = c.app(&app);
    // A service stand-in that sends bytes, for the per-service query.
    let mut senders = Senders::default();
    senders.start(
        &hierarchy.join(format!("system.slice/{app}.service")),
        sink("127.0.0.1:0"),
    );

    let fixture_server = Server::start(&fixture("seed-host"), &seed_vm_toml());
    let host_server = server_on(&crate::docker::socket(), ACCOUNTING_1S);
    if !require(
        counts_per_cgroup(&host_server),
        "the exporter cannot load its BPF programs: no traffic per service",
    ) {
        return;
    }
    let prom = start_prometheus(&[fixture_server.addr, host_server.addr]);

    let (queries, others) = doc_promql();
    assert_eq!(
        queries.len(),
        PROMETHEUS_QUERIES,
        "the queries of {PROMETHEUS_DOC}"
    );
    // And those of the other files: the VLAN join (a join on `interface`
    // alone would fail here: both hosts have `lo`), utilisation, the
    // busiest peers (Prometheus's own scrapes are the counting host's) and
    // their names.
    assert_eq!(
        others.len(),
        OTHER_QUERIES,
        "the VLAN join, utilisation, the busiest peers and their names: {others:?}"
    );
    let queries: Vec<String> = queries.into_iter().chain(others).collect();
    // rate() needs two samples: poll until every query has an answer.
    let results = wait_for(Duration::from_secs(60), || {
        let r: Vec<_> = queries.iter().map(|q| query(prom.addr, q)).collect();
        r.iter().all(|s| !s.is_empty()).then_some(r)
    })
    .unwrap_or_else(|| panic!("some documented query returned nothing"));

    assert!(
        label_values(&results[0], "app").contains(&app),
        "per app: {:?}",
        results[0]
    );
    let vms = label_values(&results[1], "instance");
    assert_eq!(
        vms,
        ["pihole", "pritunl", "vnet5", "vyos"],
        "per VM (vnet5 is held by no VM)"
    );
    let service = wait_for(Duration::from_secs(30), || {
        let services = label_values(&query(prom.addr, &queries[2]), "instance");
        services.contains(&app).then_some(())
    });
    assert!(service.is_some(), "per service: {:?}", results[2]);
    let nics = label_values(&results[3], "interface");
    assert!(
        nics.contains(&"enp8s0f0".to_owned()) && nics.contains(&"enp8s0f1".to_owned()),
        "{nics:?}"
    );
    assert!(
        label_values(&results[4], "instance").contains(&net),
        "bridge totals: {:?}",
        results[4]
    );
    assert!(label_values(&results[5], "interface").contains(&"vlan1".to_owned()));

    let vlans = label_values(&results[6], "vlan");
    assert!(
        vlans.contains(&"1".to_owned()) && vlans.contains(&"2".to_owned()),
        "{vlans:?}"
    );
    assert!(
        results[6].iter().all(|s| s.contains_key("host")),
        "each VLAN total is per host"
    );
    let nics = label_values(&results[7], "interface");
    assert!(
        nics.contains(&"enp8s0f0".to_owned()) && nics.contains(&"enp8s0f1".to_owned()),
        "utilisation where the speed is known: {nics:?}"
    );

    // The documented honor_labels keeps the exporter's owner label as `instance`.
    assert!(
        results[3]
            .iter()
            .all(|s| !s.contains_key("exported_instance"))
    );
}

/// Two NAS boxes that look alike (same interfaces, same owners), scraped in
/// one job with the documented config: with `honor_labels` the target address
/// is gone from `instance`, so only `host` keeps their series apart.
#[test]
fn two_hosts_in_one_job_stay_apart() {
    if !require(
        have("prometheus"),
        "prometheus not installed (Debian package prometheus)",
    ) {
        return;
    }
    let hosts = [copy_fixture("seed-host"), copy_fixture("seed-host")];
    // Host 0 receives 1,000 bytes/s on enp8s0f0, host 1 3,000 bytes/s.
    let per_second = [1000u64, 3000];
    let traffic = GrowingRx::start(&[
        (hosts[0].path(), per_second[0]),
        (hosts[1].path(), per_second[1]),
    ]);
    let servers = [
        Server::start(hosts[0].path(), ""),
        Server::start(hosts[1].path(), ""),
    ];
    let prom = start_prometheus(&[servers[0].addr, servers[1].addr]);

    // rate() extrapolates over its whole window: wait until it is full.
    wait_for(Duration::from_secs(60), || {
        let samples = query_values(
            prom.addr,
            r#"count_over_time(net_interface_rx_bytes_total{interface="enp8s0f0"}[5s])"#,
        );
        (samples.len() == 2 && samples.iter().all(|(_, n)| *n >= 5.0)).then_some(())
    })
    .expect("five samples of one enp8s0f0 series per host");
    let rates = query_values(
        prom.addr,
        r#"rate(net_interface_rx_bytes_total{interface="enp8s0f0"}[5s])"#,
    );
    assert_eq!(rates.len(), 2, "{rates:?}");
    for (labels, value) in &rates {
        let host = labels["host"].as_str().unwrap();
        let i = servers
            .iter()
            .position(|s| s.addr.to_string() == host)
            .unwrap_or_else(|| panic!("host {host} is a target address"));
        let expected = per_second[i] as f64;
        assert!(
            (value - expected).abs() < expected * 0.2,
            "{host}: {value} bytes/s, expected {expected}: the hosts' samples mixed"
        );
    }

    let count = |q: &str| query_values(prom.addr, q);
    let one_host = 21.0;
    assert_eq!(
        count("count(net_interface_rx_bytes_total)")[0].1,
        2.0 * one_host
    );
    let per_host = count("count by (host) (net_interface_rx_bytes_total)");
    assert_eq!(per_host.len(), 2);
    assert!(per_host.iter().all(|(_, n)| *n == one_host), "{per_host:?}");

    drop(traffic);
    let own = http(prom.addr, "GET", "/metrics").body;
    for counter in [
        "prometheus_target_scrapes_sample_out_of_order_total",
        "prometheus_target_scrapes_sample_duplicate_timestamp_total",
    ] {
        let line = own
            .lines()
            .find(|l| l.starts_with(counter))
            .unwrap_or_else(|| panic!("{counter} missing"));
        assert_eq!(line, format!("{counter} 0"), "samples collided");
    }
}
