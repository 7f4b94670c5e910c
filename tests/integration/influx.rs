//! InfluxDB 1.x (Debian's `influxdb`) behind Prometheus' `remote_write`: a
//! real Prometheus scrapes two exporters with docs/prometheus.md's scrape
//! config and writes into InfluxDB with its `remote_write`; its
//! InfluxQL (transmit per Docker app, receive per VM) finds the same owners
//! as the equivalent PromQL on the same data, at the same rates within 10%,
//! and those rates are the fixture's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::prometheus::{PROMETHEUS_DOC, doc_promql, doc_scrape_config, encode, query_values};
use crate::prometheus::{Prometheus, start_prometheus_with};
use crate::support::{doc, doc_blocks, doc_section, have, http, require, wait_for};
use crate::victoria::{Daemon, FakeEngine, apps_exporter, apps_host, traffic};

/// The section of docs/prometheus.md on InfluxDB, to the next `## `.
fn influx_section() -> String {
    doc_section(&doc(PROMETHEUS_DOC), "## InfluxDB")
}

/// The section's fenced blocks tagged `lang`.
fn blocks(section: &str, lang: &str) -> Vec<String> {
    doc_blocks(section, lang)
}

/// The InfluxQL queries: in `influxql` blocks, separated by blank lines,
/// `--` comment lines left out.
fn influxql_queries(section: &str) -> Vec<String> {
    blocks(section, "influxql")
        .iter()
        .flat_map(|b| {
            b.split("\n\n")
                .map(|q| {
                    q.lines()
                        .filter(|l| !l.trim_start().starts_with("--"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .filter(|q| !q.trim().is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn start_influx() -> Daemon {
    let (addr, data) = Daemon::prepare();
    let dir = data.path();
    let rpc = crate::prometheus::free_port();
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
         [meta]\n  dir = {meta:?}\n\
         [data]\n  dir = {tsm:?}\n  wal-dir = {wal:?}\n  query-log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [http]\n  bind-address = \"{addr}\"\n  log-enabled = false\n",
        meta = dir.join("meta").display().to_string(),
        tsm = dir.join("data").display().to_string(),
        wal = dir.join("wal").display().to_string(),
    );
    let path = dir.join("influxdb.conf");
    std::fs::write(&path, config).unwrap();
    let mut c = Command::new("influxd");
    c.arg("-config").arg(&path);
    Daemon::start(c, addr, data, "/ping", 204)
}

/// One InfluxQL statement's series: their tags' `keys` joined, and value.
fn influxql(influx: SocketAddr, db: &str, q: &str, keys: &[&str]) -> BTreeMap<String, f64> {
    let r = http(influx, "GET", &format!("/query?db={db}&q={}", encode(q)));
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let result = &v["results"][0];
    assert!(result["error"].is_null(), "{q}: {}", r.body);
    result["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let key: Vec<&str> = keys
                .iter()
                .map(|k| s["tags"][*k].as_str().unwrap_or(""))
                .collect();
            let value = s["values"][0][1].as_f64().unwrap_or(f64::NAN);
            (key.join("/"), value)
        })
        .collect()
}

fn promql(prom: &Prometheus, q: &str, keys: &[&str]) -> BTreeMap<String, f64> {
    query_values(prom.addr, q)
        .into_iter()
        .map(|(m, v)| {
            let key: Vec<&str> = keys
                .iter()
                .map(|k| m.get(*k).and_then(Value::as_str).unwrap_or(""))
                .collect();
            (key.join("/"), v)
        })
        .collect()
}

/// Same keys, every value within `share` of the other's.
fn agree(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, share: f64) -> bool {
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().all(|(k, x)| {
            b.get(k)
                .is_some_and(|y| x.is_finite() && (x - y).abs() <= share * y.abs().max(1.0))
        })
}

#[test]
fn documented_influxql_gives_what_promql_gives() {
    if !require(
        have("influxd"),
        "influxd not installed (Debian package influxdb)",
    ) || !require(
        have("prometheus"),
        "prometheus not installed (Debian package prometheus)",
    ) {
        return;
    }
    let section = influx_section();
    let remote_write = blocks(&section, "yaml")
        .into_iter()
        .find(|b| b.contains("remote_write:"))
        .expect("the remote_write of docs/prometheus.md");
    let url = remote_write
        .split("url: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .map(|u| u.trim().trim_matches('"').to_owned())
        .expect("a url");
    let db = url.split("db=").nth(1).expect("?db= in the url").to_owned();
    let queries = influxql_queries(&section);
    assert_eq!(
        queries.len(),
        2,
        "transmit per app, receive per VM: {queries:?}"
    );

    let influx = start_influx();
    let created = http(
        influx.addr,
        "POST",
        &format!("/query?q={}", encode(&format!("CREATE DATABASE {db}"))),
    );
    assert_eq!(created.status, 200, "{}", created.body);

    let engine = FakeEngine::start();
    let hosts = [apps_host(), apps_host()];
    let _traffic = traffic(&[hosts[0].path(), hosts[1].path()]);
    let servers = [
        apps_exporter(hosts[0].path(), &engine),
        apps_exporter(hosts[1].path(), &engine),
    ];
    let host = url
        .split("//")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap();
    let remote_write = remote_write.replace(host, &influx.addr.to_string());
    let prom = start_prometheus_with(
        &format!(
            "{remote_write}{}",
            doc_scrape_config(&[servers[0].addr, servers[1].addr])
        ),
        &[],
    );

    // Both languages over the same window; 5 minutes of data would make the
    // test wait 5 minutes, so the window is 20 s (every query names it
    // once, the per-app PromQL twice: once per source).
    let window = |q: &str, from: &str, to: &str, times: usize| {
        assert_eq!(q.matches(from).count(), times, "{q}");
        q.replace(from, to)
    };
    let influxql_of: Vec<String> = queries
        .iter()
        .map(|q| window(q, "now() - 5m", "now() - 20s", 1))
        .collect();
    let (doc_promql, _) = doc_promql();
    // These hosts count nothing per cgroup: the PromQL reads the veths too.
    let per_app = window(&doc_promql[0], "[5m]", "[20s]", 2);
    assert!(per_app.contains("net_interface_tx_bytes_total{instance_type=\"docker\""));
    // The documented per-VM line is transmit; the InfluxQL one receive.
    let per_vm = window(&doc_promql[1], "[5m]", "[20s]", 1).replace(
        "net_interface_tx_bytes_total{instance_type=\"vm\"}",
        "net_interface_rx_bytes_total{instance_type=\"vm\"}",
    );
    assert!(per_vm.contains("rx_bytes_total"), "{per_vm}");
    let pairs = [
        (&influxql_of[0], per_app, ["host", "app"]),
        (&influxql_of[1], per_vm, ["host", "instance"]),
    ];

    // Wait for more history than the window (else rate() spreads a partial
    // window's increase over the whole), then until they agree.
    wait_for(Duration::from_secs(90), || {
        let q = r#"count_over_time(net_interface_tx_bytes_total{interface="veth402dbe0"}[1m])"#;
        let n = query_values(prom.addr, q);
        (n.len() == 2 && n.iter().all(|(_, c)| *c >= 25.0)).then_some(())
    })
    .expect("25 s of samples in Prometheus");
    let compare = || {
        pairs
            .iter()
            .map(|(iq, pq, keys)| {
                (
                    influxql(influx.addr, &db, iq, keys),
                    promql(&prom, pq, keys),
                )
            })
            .collect::<Vec<_>>()
    };
    let agreed = wait_for(Duration::from_secs(60), || {
        let r = compare();
        r.iter().all(|(i, p)| agree(i, p, 0.1)).then_some(r)
    });
    let results = agreed.unwrap_or_else(|| {
        panic!(
            "InfluxQL and PromQL disagree: {:#?}\ninfluxd: {}",
            compare(),
            influx.log()
        )
    });

    // And both are the fixture's traffic, per host: each app's veths send
    // 1,000 bytes/s times their position, each tap receives 1,000 times its.
    let apps: BTreeMap<&str, f64> = [
        ("immich", 1000.0),
        ("grafana", 5000.0),
        ("nextcloud", 4000.0),
    ]
    .into_iter()
    .collect();
    let vms: BTreeMap<&str, f64> = [
        ("pihole", 1000.0),
        ("pritunl", 2000.0),
        ("vyos", 7000.0),
        ("vnet5", 5000.0),
    ]
    .into_iter()
    .collect();
    for ((influx_rates, _), expected) in results.iter().zip([&apps, &vms]) {
        assert_eq!(influx_rates.len(), 2 * expected.len(), "{influx_rates:?}");
        for (key, rate) in influx_rates {
            let (host, owner) = key.split_once('/').unwrap();
            assert!(
                servers.iter().any(|s| s.addr.to_string() == host),
                "{key}: host is a target"
            );
            let want = expected[owner];
            assert!(
                (rate - want).abs() <= 0.1 * want,
                "{key}: {rate} bytes/s, expected {want}"
            );
        }
    }
    eprintln!("InfluxQL vs PromQL: {results:?}");
}
