//! Names for the peers, on the private host of `peers-host.sh` (see
//! peers.rs): the clients the per-peer byte counters show are named by the
//! servers that know them and by DNS, in `net_peer_info`, one series per
//! named peer, joined onto the counters by `peer`.
//!
//! - `smb_clients_are_named_by_samba_and_dns`: alice (lan1, 10.77.1.2) and
//!   bob (lan2, 10.77.2.2) hold sessions on a real smbd; no middleware
//!   runs, so `smbstatus --json` (on the host's own smb.conf) names their
//!   users, machines and share. A DNS server of the test's own names both
//!   clients; `[names.hosts]` names 10.77.1.2 too, and wins.
//! - `iscsi_initiators_are_named_by_the_middleware`: a real user-space
//!   target (tgtd) and a real initiator in lan4 (10.77.4.2) reading from
//!   it; a fake middleware answers `iscsi.global.sessions` with the session
//!   tgtd reports, and DNS names the initiator's machine.
//!
//! Each test first checks its rig (what smbstatus, tgtadm, getent and dig
//! see in the host, the byte counters of the peers), then the names.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_middleware::{FakeMiddleware, Mode};
use crate::peers::{At, BASE_TOOLS, Checks, Host, PEERS, Workload, label, peer, tools};
use crate::support::{Sample, parse, wait_for};

/// The names resolver's config for these tests: a 1 s refresh, reverse DNS
/// on.
const NAMES: &str = "[names]\ninterval = \"1s\"\ntimeout = \"10s\"\n\
    reverse_dns = true\ndns_timeout = \"2s\"\n";

const TARGET: &str = "iqn.2026-12.test.tne:disk1";
const INITIATOR: &str = "iqn.2026-12.test.tne:client-lan4";

/// The `net_peer_info` series of `addr`, if there is one.
fn info<'a>(samples: &'a [Sample], addr: &str) -> Option<&'a Sample> {
    samples
        .iter()
        .find(|s| s.name == "net_peer_info" && label(s, "peer") == addr)
}

/// Every `net_peer_info` series, for messages.
fn infos(samples: &[Sample]) -> String {
    let rows: Vec<String> = samples
        .iter()
        .filter(|s| s.name == "net_peer_info")
        .map(|s| format!("{:?} {}", s.labels, s.value))
        .collect();
    if rows.is_empty() {
        return "no net_peer_info at all".to_owned();
    }
    rows.join("\n")
}

/// The names resolver's health of `source`.
fn source_up(samples: &[Sample], source: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == "truenas_net_exporter_source_up"
                && label(s, "resolver") == "names"
                && label(s, "source") == source
        })
        .map(|s| s.value)
}

/// `source`'s comma-separated list holds `name`.
fn from(s: &Sample, name: &str) -> bool {
    label(s, "source").split(',').any(|n| n == name)
}

/// What a peer's `net_peer_info` must say: each label's exact value, and
/// the sources its `source` must list; empty where nothing is required.
struct Expect<'a> {
    addr: &'a str,
    labels: Vec<(&'a str, String)>,
    sources: Vec<&'a str>,
    /// Text no label of the series may hold (a name that lost).
    never: Option<&'a str>,
}

impl Expect<'_> {
    /// Why `samples` does not show it yet.
    fn unmet(&self, samples: &[Sample]) -> Vec<String> {
        let Some(s) = info(samples, self.addr) else {
            return vec![format!("no net_peer_info{{peer=\"{}\"}}", self.addr)];
        };
        let mut why = Vec::new();
        if s.value != 1.0 {
            why.push(format!(
                "{}: net_peer_info is {}, not 1",
                self.addr, s.value
            ));
        }
        for (key, want) in &self.labels {
            let got = label(s, key);
            if got != want {
                why.push(format!("{}: {key}={got:?}, not {want:?}", self.addr));
            }
        }
        for source in &self.sources {
            if !from(s, source) {
                why.push(format!(
                    "{}: source={:?} does not list {source}",
                    self.addr,
                    label(s, "source")
                ));
            }
        }
        if let Some(never) = self.never
            && s.labels.iter().any(|(_, v)| v.contains(never))
        {
            why.push(format!("{}: {never} is in {:?}", self.addr, s.labels));
        }
        why
    }
}

/// Scrapes until `unmet` has nothing to say or `limit` passes: the last
/// scrape, and what it still lacks.
fn until(
    host: &Host,
    limit: Duration,
    unmet: impl Fn(&[Sample]) -> Vec<String>,
) -> (Vec<Sample>, Vec<String>) {
    let mut last = Vec::new();
    let found = wait_for(limit, || {
        last = parse(&host.scrape());
        unmet(&last).is_empty().then_some(())
    });
    let why = if found.is_some() {
        Vec::new()
    } else {
        unmet(&last)
    };
    (last, why)
}

/// Both directions' byte series of each of `shown` (a workload's peer).
fn no_series(samples: &[Sample], shown: &[(Workload, At)]) -> Vec<String> {
    let mut why = Vec::new();
    for (w, at) in shown {
        for dir in ["rx", "tx"] {
            if peer(samples, dir, *w, *at).is_none() {
                why.push(format!("no net_peer_{dir}_bytes_total of {w:?} for {at:?}"));
            }
        }
    }
    why
}

/// What the host's resolver says of each address: `getent hosts` and `dig
/// -x` (the `resolve` step), by address.
fn resolve(host: &Host, addrs: &[&str]) -> Vec<(String, String, String)> {
    let mut args = vec!["resolve"];
    args.extend(addrs);
    host.step(&args)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
        })
        .collect()
}

/// The rig's DNS: each address has its name through both getent (the C
/// library's resolver) and dig.
fn check_dns(checks: &mut Checks, host: &Host, names: &[(&str, &str)]) {
    let addrs: Vec<&str> = names.iter().map(|(a, _)| *a).collect();
    let got = resolve(host, &addrs);
    eprintln!("resolve (address, getent, dig): {got:?}");
    for (addr, name) in names {
        let seen = got.iter().find(|(a, _, _)| a == addr);
        checks.check(seen.is_some_and(|(_, g, d)| g == name && d == name), || {
            format!("the host resolves {addr} to {name} (getent and dig): {seen:?}")
        });
    }
}

/// The ends of the logs of the names' rig, printed for a failure's
/// record (cargo shows them only then).
fn rig_logs(host: &Host, files: &[&str]) {
    for f in files {
        let text = std::fs::read_to_string(host.path(f)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        eprintln!("--- {f}\n{}", tail.join("\n"));
    }
}

const DNS_TOOLS: [&str; 3] = ["dnsmasq", "getent", "dig"];

#[test]
fn smb_clients_are_named_by_samba_and_dns() {
    let mut needed = BASE_TOOLS.to_vec();
    needed.extend(["smbd", "smbpasswd", "smbclient", "smbstatus"]);
    needed.extend(DNS_TOOLS);
    if !tools(&needed) {
        return;
    }
    // No middleware: the default sockets are in the host's own, empty
    // /run. smbstatus runs on the host's smb.conf ("@ROOT@": the script
    // puts the host's directory there).
    let host = Host::start(
        "smb dns",
        &format!(
            "[accounting]\ninterval = \"1s\"\n{PEERS}{NAMES}\
             smbstatus_command = [\"smbstatus\", \"-s\", \"@ROOT@/smb.conf\"]\n\
             [names.hosts]\n\"10.77.1.2\" = \"alice-laptop\"\n"
        ),
        &[],
    );
    let mut checks = Checks::default();
    check_dns(
        &mut checks,
        &host,
        &[
            ("10.77.1.2", "lan1-client.lan"),
            ("10.77.2.2", "bob-pc.lan"),
        ],
    );

    // Both sessions open for a minute; Samba lists them, with their share.
    host.step(&["smb-hold", "60"]);
    let status = host.step(&["smbstatus"]);
    eprintln!("smbstatus --json:\n{status}");
    let status: Value = serde_json::from_str(&status).unwrap_or_else(|e| {
        checks.check(false, || format!("smbstatus --json is JSON: {e}"));
        Value::Null
    });
    let session = |user: &str| {
        status["sessions"]
            .as_object()
            .and_then(|s| s.values().find(|v| v["username"] == user))
            .cloned()
    };
    let tcon_of = |session: &Value| {
        status["tcons"].as_object().and_then(|t| {
            t.values()
                .find(|v| v["session_id"] == session["session_id"])
                .cloned()
        })
    };
    let mut expect = Vec::new();
    for (user, addr) in [("alice", "10.77.1.2"), ("bob", "10.77.2.2")] {
        let s = session(user);
        let machine = s.as_ref().and_then(|s| s["remote_machine"].as_str());
        checks.check(
            s.as_ref()
                .is_some_and(|s| s["hostname"].as_str().unwrap_or("").contains(addr)),
            || format!("smbstatus lists {user}'s session from {addr}: {s:?}"),
        );
        let tcon = s.as_ref().and_then(tcon_of);
        checks.check(
            tcon.as_ref().is_some_and(|t| t["service"] == "share"),
            || format!("smbstatus lists {user} on the share: {tcon:?}"),
        );
        // The machine as Samba reports it (the address: no hostname lookups).
        expect.push((user, addr, machine.unwrap_or(addr).to_owned()));
    }

    // The byte counters of smbd for both clients: what the names join.
    let smbd = ("service", "tne-smbd");
    let shown = [
        (smbd, ("10.77.1.2", "smb", "server")),
        (smbd, ("10.77.2.2", "smb", "server")),
    ];
    let (samples, why) = until(&host, Duration::from_secs(15), |s| no_series(s, &shown));
    for why in why {
        checks.check(false, || why);
    }
    let smb_peers: Vec<String> = samples
        .iter()
        .filter(|s| s.name.starts_with("net_peer_") && label(s, "protocol") == "smb")
        .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
        .collect();
    eprintln!("SMB peer series:\n{}", smb_peers.join("\n"));

    // The names: Samba's user, machine and share; the table's name over
    // DNS's for alice's machine, DNS's for bob's.
    let mut expected: Vec<Expect> = expect
        .iter()
        .map(|(user, addr, machine)| Expect {
            addr,
            labels: vec![
                ("user", user.to_string()),
                ("machine", machine.clone()),
                ("share", "share".to_owned()),
            ],
            sources: vec!["smbstatus"],
            never: None,
        })
        .collect();
    expected[0]
        .labels
        .push(("peer_name", "alice-laptop".to_owned()));
    expected[0].sources.push("config");
    expected[0].never = Some("lan1-client.lan");
    expected[1]
        .labels
        .push(("peer_name", "bob-pc.lan".to_owned()));
    expected[1].sources.push("dns");
    let (samples, why) = until(&host, Duration::from_secs(20), |s| {
        expected.iter().flat_map(|e| e.unmet(s)).collect()
    });
    eprintln!("net_peer_info:\n{}", infos(&samples));
    for why in why {
        checks.check(false, || why);
    }
    let up = source_up(&samples, "smbstatus");
    checks.check(up == Some(1.0), || {
        format!("truenas_net_exporter_source_up{{resolver=\"names\",source=\"smbstatus\"}}: {up:?}")
    });
    rig_logs(&host, &["dns.log", "hold-alice.log", "hold-bob.log"]);
    checks.done(&host);
}

#[test]
fn iscsi_initiators_are_named_by_the_middleware() {
    let mut needed = BASE_TOOLS.to_vec();
    needed.extend(["tgtd", "tgtadm", "iscsi-perf", "tc"]);
    needed.extend(DNS_TOOLS);
    if !tools(&needed) {
        return;
    }
    // The middleware, with no iSCSI session yet: the host's exporter
    // reaches its socket through the file system, from its own namespaces.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("middlewared.sock");
    let fake = FakeMiddleware::start(&socket, Mode::JsonRpc);
    fake.set_methods(&[
        "vm.query",
        "container.query",
        "virt.instance.query",
        "iscsi.global.sessions",
    ]);
    let host = Host::start(
        "iscsi dns",
        &format!(
            "[accounting]\ninterval = \"1s\"\n{PEERS}\
             [truenas]\nmiddleware_sockets = [{:?}]\n{NAMES}",
            socket.display().to_string()
        ),
        &[],
    );
    let mut checks = Checks::default();
    check_dns(&mut checks, &host, &[("10.77.4.2", "proxmox.lan")]);

    // The initiator reads for a minute; what tgtd says of its session is
    // what the middleware answers (TrueNAS reads the same from SCST).
    host.step(&["iscsi-read", "60"]);
    let sessions = host.step(&["iscsi-sessions"]);
    eprintln!("tgtadm's sessions (target, initiator, address):\n{sessions}");
    let sessions: Vec<Vec<&str>> = sessions
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    checks.check(
        sessions.contains(&vec![TARGET, INITIATOR, "10.77.4.2"]),
        || format!("tgtd lists {INITIATOR} at 10.77.4.2 on {TARGET}: {sessions:?}"),
    );
    let rows: Vec<Value> = sessions
        .iter()
        .filter(|f| f.len() == 3)
        .map(|f| {
            json!({
                "initiator": f[1],
                "initiator_addr": f[2],
                "initiator_alias": null,
                "target": f[0],
                "target_alias": f[0].rsplit(':').next(),
                "header_digest": "None",
                "data_digest": "None",
                "max_data_segment_length": 262144,
                "max_receive_data_segment_length": 262144,
                "max_xmit_data_segment_length": 262144,
                "max_burst_length": 1048576,
                "first_burst_length": 65536,
                "immediate_data": true,
                "iser": false,
                "offload": false,
            })
        })
        .collect();
    fake.set_rows("iscsi.global.sessions", rows);

    // tgtd's bytes for its initiator, on the iSCSI port, and growing.
    let tgt = ("service", "tne-tgt");
    let at = ("10.77.4.2", "iscsi", "server");
    let (first, why) = until(&host, Duration::from_secs(15), |s| {
        no_series(s, &[(tgt, at)])
    });
    for why in why {
        checks.check(false, || why);
    }
    std::thread::sleep(Duration::from_secs(2));

    let expect = Expect {
        addr: "10.77.4.2",
        labels: vec![
            ("initiator", INITIATOR.to_owned()),
            ("target", TARGET.to_owned()),
            ("peer_name", "proxmox.lan".to_owned()),
        ],
        sources: vec!["iscsi.global.sessions", "dns"],
        never: None,
    };
    let (samples, why) = until(&host, Duration::from_secs(20), |s| expect.unmet(s));
    eprintln!("net_peer_info:\n{}", infos(&samples));
    for why in why {
        checks.check(false, || why);
    }
    let sent = (peer(&first, "tx", tgt, at), peer(&samples, "tx", tgt, at));
    checks.check(matches!(sent, (Some(a), Some(b)) if b > a), || {
        format!("tgtd's bytes to 10.77.4.2 grow while the initiator reads: {sent:?}")
    });
    // The exporter reaches the fake at all (its VM names ask it too).
    let connections = fake.connections();
    checks.check(connections > 0, || {
        format!(
            "the exporter connected to the middleware at {}",
            socket.display()
        )
    });
    let asked = fake.calls("iscsi.global.sessions");
    checks.check(asked > 0, || {
        "the exporter asked the middleware for iscsi.global.sessions".to_owned()
    });
    let up = source_up(&samples, "iscsi.global.sessions");
    checks.check(up == Some(1.0), || {
        format!(
            "truenas_net_exporter_source_up{{resolver=\"names\",source=\"iscsi.global.sessions\"}}: {up:?}"
        )
    });
    rig_logs(&host, &["dns.log", "tgt/tgtd.log", "tgt/perf.log"]);
    checks.done(&host);
}

/// A fixture host (no root needed) whose middleware is the fake, at
/// `<root>/run/mw.sock`; `smbstatus` is a script that prints `smbstatus`.
struct FixtureNames {
    root: tempfile::TempDir,
    middleware: FakeMiddleware,
}

impl FixtureNames {
    fn new(mode: Mode, smbstatus: &str) -> FixtureNames {
        let root = crate::support::copy_fixture("seed-host");
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        let middleware = FakeMiddleware::start(&root.path().join("run/mw.sock"), mode);
        let script = root.path().join("smbstatus");
        std::fs::write(&script, format!("#!/bin/sh\ncat '{smbstatus}'\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        FixtureNames { root, middleware }
    }

    /// The config: names every second, no DNS, the host's tools run as
    /// they are (the fixture root has no shell to chroot into).
    fn config(&self, timeout: &str) -> String {
        format!(
            "[truenas]\nmiddleware_sockets = [\"/run/mw.sock\"]\n\
             [commands]\nchroot = false\ntimeout = \"2s\"\n\
             [names]\ninterval = \"1s\"\ntimeout = \"{timeout}\"\nreverse_dns = false\n\
             dns_timeout = \"1s\"\nsmbstatus_command = [\"{}\"]\n",
            self.root.path().join("smbstatus").display()
        )
    }
}

/// The fixture of `method` in `release`'s shape.
fn shape(release: &str, method: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/middleware/{release}/{method}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn smbstatus_fixture() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smbstatus.json")
        .display()
        .to_string()
}

/// Each release's answers, through the fake middleware in that release's
/// protocol: every client is named from them; where `smb.status` is
/// refused (as 25.10 refuses a caller without the role), `smbstatus` names
/// the SMB clients instead, and `source` says so.
#[test]
fn each_release_names_its_clients_through_the_middleware() {
    const METHODS: [&str; 4] = [
        "smb.status",
        "nfs.get_nfs4_clients",
        "nfs.get_nfs3_clients",
        "iscsi.global.sessions",
    ];
    for release in ["24.10", "25.04", "25.10", "26.0"] {
        let mode = if release == "24.10" {
            Mode::Release2410
        } else {
            Mode::JsonRpc
        };
        let host = FixtureNames::new(mode, &smbstatus_fixture());
        for method in METHODS {
            host.middleware.set_answer(method, shape(release, method));
        }
        let refused = release == "25.10";
        if refused {
            host.middleware.refuse("smb.status");
        }
        let samples = parse(&crate::support::once_on_host(
            host.root.path(),
            &[&format!(
                "--config.file={}",
                write_config(&host.root, &host.config("10s"))
            )],
        ));
        let mut checks = Checks::default();
        let mut expect = vec![
            Expect {
                addr: "192.168.10.21",
                labels: vec![("peer_name", "debian12-hv".into())],
                sources: vec!["nfs.get_nfs4_clients"],
                never: None,
            },
            Expect {
                addr: "192.168.10.61",
                labels: vec![
                    ("initiator", "iqn.1991-05.com.microsoft:win-srv01".into()),
                    ("target", "iqn.2005-10.org.freenas.ctl:vmstore".into()),
                ],
                sources: vec!["iscsi.global.sessions"],
                never: None,
            },
            Expect {
                addr: "fd00:10::62",
                labels: vec![("target", "iqn.2005-10.org.freenas.ctl:backup".into())],
                sources: vec!["iscsi.global.sessions"],
                never: None,
            },
        ];
        if refused {
            expect.push(Expect {
                addr: "::1",
                labels: vec![("user", "fixtureuser".into())],
                sources: vec!["smbstatus"],
                never: None,
            });
        } else {
            expect.push(Expect {
                addr: "192.168.10.33",
                labels: vec![("user", "bob".into()), ("share", "media".into())],
                sources: vec!["smb.status"],
                never: None,
            });
        }
        if release != "26.0" {
            expect.push(Expect {
                addr: "192.168.10.30",
                labels: vec![("share", "/mnt/tank/media".into())],
                sources: vec!["nfs.get_nfs3_clients"],
                never: None,
            });
        }
        for e in &expect {
            for why in e.unmet(&samples) {
                checks.check(false, || format!("{release}: {why}"));
            }
        }
        let smb = if refused { "smbstatus" } else { "smb.status" };
        checks.check(source_up(&samples, smb) == Some(1.0), || {
            format!("{release}: source_up of {smb} is not 1")
        });
        if !refused {
            checks.check(source_up(&samples, "smbstatus").is_none(), || {
                format!("{release}: smbstatus was asked though smb.status answered")
            });
        }
        checks.check(host.middleware.calls("smb.status") > 0, || {
            format!("{release}: smb.status was not asked")
        });
        checks.assert_none(|| infos(&samples));
    }
}

/// A config file in `dir`.
fn write_config(dir: &tempfile::TempDir, toml: &str) -> String {
    let path = dir.path().join("names.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

/// Hostile answers: a middleware that never answers `smb.status`, one that
/// lists 100,001 iSCSI sessions, and nfsd client files whose names hold
/// quotes, markup and bytes that are not UTF-8. Each is bounded (the hang
/// by the lookup's budget, the list refused whole), the names are one line
/// each and escaped, the log says what was refused, and every scrape
/// meanwhile answers at once with the interfaces' counters.
#[test]
fn hostile_answers_are_bounded_and_escaped_and_scrapes_go_on() {
    let host = FixtureNames::new(Mode::JsonRpc, "/nonexistent");
    host.middleware.hang("smb.status");
    let sessions: Vec<Value> = (0..100_001u32)
        .map(|i| {
            json!({"initiator": format!("iqn.x:{i}"), "initiator_addr": format!("10.1.{}.{}", i >> 8 & 255, i & 255), "target": "t"})
        })
        .collect();
    host.middleware
        .set_answer("iscsi.global.sessions", Value::Array(sessions));
    let clients = host.root.path().join("proc/fs/nfsd/clients");
    for (id, name) in [
        ("7", b"Linux NFSv4.2 evil\\x22host<script>" as &[u8]),
        ("8", b"Linux NFSv4.2 bad\xff\xfeutf8"),
    ] {
        let dir = clients.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let addr = if id == "7" { "10.9.0.7" } else { "10.9.0.8" };
        let mut info =
            format!("clientid: 0x1\naddress: \"{addr}:870\"\nstatus: confirmed\nname: \"")
                .into_bytes();
        info.extend_from_slice(name);
        info.extend_from_slice(b"\"\nminor version: 2\n");
        std::fs::write(dir.join("info"), info).unwrap();
    }
    let log = host.root.path().join("exporter.log");
    let exporter = crate::limits::Exporter::start(
        host.root.path(),
        &host.config("3s"),
        std::fs::File::create(&log).unwrap().into(),
    );
    let mut checks = Checks::default();
    let mut slowest = Duration::ZERO;
    let mut last = Vec::new();
    // Over several refreshes, each of which waits out the hung call.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        let started = std::time::Instant::now();
        let reply = crate::support::http(exporter.addr, "GET", "/metrics");
        slowest = slowest.max(started.elapsed());
        checks.check(reply.status == 200, || {
            format!("/metrics answered {}", reply.status)
        });
        last = parse(&reply.body);
        checks.check(
            last.iter()
                .any(|s| s.name == "net_interface_rx_bytes_total"),
            || "a scrape had no interface counters".into(),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // A scrape copies what was published: the hung lookup is not on its path.
    checks.check(slowest < Duration::from_secs(1), || {
        format!("the slowest scrape took {slowest:?}")
    });
    let evil = info(&last, "10.9.0.7");
    checks.check(
        evil.is_some_and(|s| label(s, "peer_name") == "evil\"host<script>"),
        || format!("the quoted name: {:?}", evil.map(|s| &s.labels)),
    );
    let bad = info(&last, "10.9.0.8");
    checks.check(
        bad.is_some_and(|s| label(s, "peer_name") == "bad\u{fffd}\u{fffd}utf8"),
        || format!("the name that is not UTF-8: {:?}", bad.map(|s| &s.labels)),
    );
    checks.check(
        !last
            .iter()
            .any(|s| s.name == "net_peer_info" && !label(s, "initiator").is_empty()),
        || "an initiator of the refused list is named".into(),
    );
    checks.check(
        source_up(&last, "iscsi.global.sessions") == Some(0.0),
        || "iscsi.global.sessions is not down".into(),
    );
    checks.check(source_up(&last, "smb.status") == Some(0.0), || {
        "the hung smb.status is not down".into()
    });
    checks.check(source_up(&last, "nfsd") == Some(1.0), || {
        "nfsd is not up".into()
    });
    drop(exporter);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    checks.check(
        text.contains("more than the 10000 accepted: refused"),
        || format!("the log does not say the list was refused:\n{text}"),
    );
    checks.check(text.contains("smb.status"), || {
        format!("the log does not name the hung call:\n{text}")
    });
    checks.assert_none(|| infos(&last));
}

/// No middleware: the servers' own files and tools name their clients, as
/// outside TrueNAS. smbstatus (a script printing a real Samba 4.17
/// capture), nfsd's client files under `--path.procfs` and SCST's sysfs
/// under `--path.rootfs`, each named in `source` and up in `source_up`;
/// the middleware's methods have no `source_up` series at all.
#[test]
fn the_servers_name_their_clients_where_no_middleware_runs() {
    let root = crate::support::copy_fixture("seed-host");
    let script = root.path().join("smbstatus");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat '{}'\n", smbstatus_fixture()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let write = |path: &str, text: &str| {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "proc/fs/nfsd/clients/3/info",
        "clientid: 0xfb4a2c37d7e0c02a\naddress: \"192.168.10.21:790\"\nstatus: confirmed\n\
         seconds from last renew: 12\nname: \"Linux NFSv4.2 debian12-hv\"\nminor version: 2\n",
    );
    let target = "iqn.2005-10.org.freenas.ctl:vmstore";
    write(
        &format!(
            "sys/kernel/scst_tgt/targets/iscsi/{target}/sessions/iqn.1998-01.com.vmware:esx01/192.168.10.63/ip"
        ),
        "192.168.10.63\n",
    );
    let toml = format!(
        "[commands]\nchroot = false\n[names]\nreverse_dns = false\nsmbstatus_command = [\"{}\"]\n",
        script.display()
    );
    let samples = parse(&crate::support::once_on_host(
        root.path(),
        &[&format!("--config.file={}", write_config(&root, &toml))],
    ));
    let mut checks = Checks::default();
    let expect = [
        Expect {
            addr: "192.168.10.21",
            labels: vec![("peer_name", "debian12-hv".into())],
            sources: vec!["nfsd"],
            never: None,
        },
        Expect {
            addr: "192.168.10.63",
            labels: vec![
                ("initiator", "iqn.1998-01.com.vmware:esx01".into()),
                ("target", target.into()),
            ],
            sources: vec!["scst"],
            never: None,
        },
        Expect {
            addr: "::1",
            labels: vec![("user", "fixtureuser".into())],
            sources: vec!["smbstatus"],
            never: None,
        },
    ];
    for e in &expect {
        for why in e.unmet(&samples) {
            checks.check(false, || why);
        }
    }
    for source in ["nfsd", "scst", "smbstatus"] {
        checks.check(source_up(&samples, source) == Some(1.0), || {
            format!("source_up of {source} is not 1")
        });
    }
    for method in [
        "smb.status",
        "nfs.get_nfs4_clients",
        "iscsi.global.sessions",
    ] {
        checks.check(source_up(&samples, method).is_none(), || {
            format!("{method} has a source_up on a host with no middleware")
        });
    }
    checks.assert_none(|| infos(&samples));
}
