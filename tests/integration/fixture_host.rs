//! Layer 2: fixture hosts (directory trees with `proc/1/net/dev` and
//! `sys/class/net`) run through the real binary with `--once`.

use crate::support::{fixture, once_on_host, one, parse};

const LABELS: [&str; 6] = [
    "interface",
    "instance",
    "instance_type",
    "app",
    "bridge",
    "state",
];

/// The seed README's example lines. Those decided by the topology alone must
/// come out identical; the Docker and VM lines come out in their unowned form
/// until the Docker and VM resolvers exist.
const SEED_EXAMPLES: &str = r#"
net_interface_rx_bytes_total{interface="enp8s0f0",instance="enp8s0f0",instance_type="physical",app="",bridge="",state="up"} 1.111594096922e+12
net_interface_rx_bytes_total{interface="br0",instance="br0",instance_type="bridge",app="",bridge="",state="up"} 1.343738956933e+12
net_interface_rx_bytes_total{interface="vlan1",instance="vlan1",instance_type="vlan",app="",bridge="br0",state="up"} 2.17320405154e+11
"#;

const SEED_UNOWNED: &str = r#"
net_interface_rx_bytes_total{interface="veth402dbe0",instance="veth402dbe0",instance_type="docker",app="",bridge="br-2c852816592c",state="up"} 2.56302961e+08
net_interface_rx_bytes_total{interface="br-2c852816592c",instance="br-2c852816592c",instance_type="bridge",app="",bridge="",state="up"} 2.54524065e+08
net_interface_rx_bytes_total{interface="vnet3",instance="vnet3",instance_type="vm",app="",bridge="br0",state="unknown"} 1.115796347231e+12
net_interface_rx_bytes_total{interface="macvtap0",instance="macvtap0",instance_type="macvtap",app="",bridge="",state="up"} 1.111594084954e+12
"#;

fn seed_scrape(extra: &[&str]) -> String {
    once_on_host(&fixture("seed-host"), extra)
}

#[test]
fn seed_examples_come_out_identical() {
    let got = parse(&seed_scrape(&[]));
    for expected in parse(SEED_EXAMPLES).into_iter().chain(parse(SEED_UNOWNED)) {
        let iface = expected.label("interface").unwrap();
        let actual = one(&got, &expected.name, iface);
        assert_eq!(actual.labels, expected.labels, "labels of {iface}");
        assert_eq!(actual.value, expected.value, "value of {iface}");
    }
}

#[test]
fn values_are_integers_in_label_order_and_sorted() {
    let text = seed_scrape(&[]);
    let samples = parse(&text);
    let families: Vec<_> = [
        "rx_bytes",
        "tx_bytes",
        "rx_packets",
        "tx_packets",
        "rx_errors",
        "tx_errors",
        "rx_dropped",
        "tx_dropped",
    ]
    .iter()
    .map(|f| format!("net_interface_{f}_total"))
    .collect();
    let mut interfaces_of_first = None;
    for family in &families {
        assert!(
            text.contains(&format!("# TYPE {family} counter\n")),
            "{family} typed"
        );
        let rows: Vec<_> = samples.iter().filter(|s| &s.name == family).collect();
        let names: Vec<_> = rows.iter().map(|s| s.label("interface").unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{family} sorted by interface");
        assert_eq!(
            names.len(),
            21,
            "{family}: every well-formed line of the fixture"
        );
        for row in &rows {
            let keys: Vec<_> = row.labels.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, LABELS, "label order");
        }
        interfaces_of_first.get_or_insert(names.clone());
        assert_eq!(interfaces_of_first.as_ref(), Some(&names));
    }
    for line in text.lines().filter(|l| l.starts_with("net_interface_")) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.bytes().all(|b| b.is_ascii_digit()),
            "integer value: {line}"
        );
    }
    // tx_dropped is column 12 of the fixture line: idx % 4 for enp8s0f1 (idx 3).
    assert_eq!(
        one(&samples, "net_interface_tx_dropped_total", "enp8s0f1").value,
        3.0
    );
    assert_eq!(
        one(&samples, "net_interface_rx_errors_total", "br1").value,
        2.0
    );
}

#[test]
fn malformed_netdev_lines_are_skipped_and_counted() {
    let samples = parse(&seed_scrape(&[]));
    let malformed: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "truenas_net_exporter_netdev_malformed_lines_total")
        .collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].value, 2.0);
    assert!(!samples.iter().any(|s| s.label("interface") == Some("eth9")));
}

#[test]
fn info_metric_carries_vlan_ids() {
    let samples = parse(&seed_scrape(&[]));
    let vlan = |iface| {
        one(&samples, "net_interface_info", iface)
            .label("vlan")
            .unwrap()
            .to_owned()
    };
    assert_eq!(vlan("vlan1"), "1");
    assert_eq!(vlan("vlan2"), "2");
    assert_eq!(
        vlan("vnet3"),
        "1",
        "member of br0, whose VLAN port is vlan1"
    );
    assert_eq!(
        vlan("vnet5"),
        "2",
        "member of br1, whose VLAN port is vlan2"
    );
    assert_eq!(vlan("veth402dbe0"), "");
    assert_eq!(vlan("enp8s0f0"), "");
    let info = one(&samples, "net_interface_info", "vnet3");
    let keys: Vec<_> = info.labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "interface",
            "instance",
            "instance_type",
            "app",
            "bridge",
            "vlan"
        ]
    );
    assert_eq!(info.value, 1.0);
}

#[test]
fn config_file_filters_and_renames_the_owner_label() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[labels]\nowner_label = \"owner\"\n[interfaces]\ninclude = \"^(br|veth|vnet)\"\nexclude = \"^veth4\"\n",
    )
    .unwrap();
    let samples = parse(&seed_scrape(&[&format!("--config.file={}", cfg.display())]));
    let rx: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .collect();
    let names: Vec<_> = rx.iter().map(|s| s.label("interface").unwrap()).collect();
    assert!(names.contains(&"br0") && names.contains(&"vnet3") && names.contains(&"veth8b2f7e9"));
    assert!(!names.iter().any(|n| n.starts_with("veth4")), "{names:?}");
    assert!(
        !names.contains(&"enp8s0f0") && !names.contains(&"lo"),
        "{names:?}"
    );
    assert!(
        rx.iter()
            .all(|s| s.label("owner").is_some() && s.label("instance").is_none())
    );
}
