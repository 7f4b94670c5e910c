//! Traffic per remote peer with real servers and clients, on a TrueNAS-like
//! private host (`peers-host.sh`: cgroup2 alone at /sys/fs/cgroup, LAN
//! namespaces of their own addresses behind uplinks, the exporter started
//! last, its peers' tick every second). Three hosts, one per test, each
//! built with only what its checks need; the checks of a test share its
//! host, because building one is most of the test's time (a dockerd and an
//! image; smbd, users and an NFS server):
//!
//! - `nas_clients_are_named_by_address`: a real smbd serving alice (reads
//!   8 MB) and bob (writes 3 MB) from two LANs, each client's bytes under
//!   its address, `smb`, `server`, in its direction; a real NFS server
//!   (nfs-ganesha) whose listening socket's cgroup was removed before the
//!   exporter started, as knfsd's unit's is: `instance="nfs"`, exactly what
//!   crossed its client's otherwise silent link at L3, all of it under the
//!   client's address; this host as an NFS client is `side="client"` in
//!   its own service, nothing of it under the NFS server.
//! - `apps_name_each_peer`: a bridged and a host-network container, each
//!   to two LAN peers and a routed internet peer, a different amount to
//!   each; DNS over an unconnected UDP socket (exact); a container that
//!   lived 2 s and exited, named at the first scrape after it started.
//! - `a_flood_of_peers_is_bounded`: 5,000 peers of one service through a
//!   kernel map of 1,000 and a top 3: at most 4 series, the peer series and
//!   `other` add up to the workload's counter, the losses counted.
//!
//! A peer's series starts from 0 at the tick that first shows it (what it
//! moved before is in `other`), so where a test measures a peer's bytes the
//! client first makes a small transfer, the test waits for its series, and
//! then measures what the series gains. Every scrape a test waits for has
//! each workload's peer series, `other` included, adding up to its
//! `net_workload_*`.
//!
//! The cgroup tree is the machine's (a private host has its own network,
//! pids and mounts, not its own cgroups): the LANs' processes run in a
//! cgroup of their own, the script refuses a cgroup that is already there,
//! and whatever it made is removed when a test ends, even when the host or
//! this process was killed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use truenas_net_exporter::workloads::accounting::cgroup2_mount;

use crate::support::{
    PrivateHost, Sample, have, in_private_host, is_root, parse, require, wait_for,
};

const PORT: u16 = 9551;

/// A private host from `peers-host.sh` with `parts`, its exporter reading
/// `config`.
pub(crate) struct Host {
    inner: Option<PrivateHost>,
}

impl Host {
    pub(crate) fn start(parts: &str, config: &str, env: &[(&str, String)]) -> Host {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("config.toml"), config).unwrap();
        let mut command = in_private_host("peers-host.sh");
        command
            .arg("host")
            .env("ROOT", root.path())
            .env("PORT", PORT.to_string())
            .env("PARTS", parts);
        for (k, v) in env {
            command.env(k, v);
        }
        // Should this process die without unwinding (a CI timeout's kill),
        // the host goes with it: unshare is killed, and kills its child,
        // the host's pid 1, and so everything in the host.
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let unshare = command.spawn().unwrap();
        let host = Host {
            inner: Some(PrivateHost { unshare, root }),
        };
        let ready = wait_for(Duration::from_secs(90), || {
            host.path("ready").exists().then_some(())
        });
        assert!(ready.is_some(), "the host is not ready: {}", host.log());
        host
    }

    fn private(&self) -> &PrivateHost {
        self.inner.as_ref().unwrap()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.private().root.path().join(name)
    }

    pub(crate) fn log(&self) -> String {
        [
            "script.log",
            "exporter.log",
            "smbd.log",
            "ganesha/ganesha.log",
            "dockerd.log",
            "dnsmasq.log",
            "sink.log",
        ]
        .map(|f| {
            let text = std::fs::read_to_string(self.path(f)).unwrap_or_default();
            // The ends of long logs: what went wrong is last.
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {f}\n{}", tail.join("\n"))
        })
        .join("\n")
    }

    /// The host's pid 1, as seen from here.
    fn init(&self) -> String {
        let pid = self.private().unshare.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("the host's pid 1 is gone: {}", self.log()))
            .to_owned()
    }

    /// `peers-host.sh STEP ARGS` in the host (its network, mounts and pids),
    /// two minutes at most: its standard output.
    pub(crate) fn step(&self, args: &[&str]) -> String {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/peers-host.sh");
        let out = Command::new("timeout")
            .args([
                "-k",
                "5",
                "120",
                "nsenter",
                "-t",
                &self.init(),
                "-n",
                "-m",
                "-p",
                "bash",
            ])
            .arg(script)
            .args(args)
            .env("ROOT", self.private().root.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "step {args:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The numbers a step printed, in order.
    pub(crate) fn numbers(&self, args: &[&str]) -> Vec<u64> {
        let out = self.step(args);
        out.split_whitespace()
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("step {args:?} printed {out:?}"))
            })
            .collect()
    }

    /// GET /metrics from the exporter inside (5 s at most).
    pub(crate) fn scrape(&self) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.init(), "-n", "curl", "-sS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{PORT}/metrics"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scrape: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let Some(mut host) = self.inner.take() else {
            return;
        };
        // The script empties and removes what it made once told to; give
        // it the time to, then kill what is left.
        host.touch("done");
        let _ = wait_for(Duration::from_secs(15), || {
            host.unshare.try_wait().ok().flatten()
        });
        let read = |name| std::fs::read_to_string(host.root.path().join(name)).unwrap_or_default();
        let (made, parents) = (read("cgroups"), read("parents"));
        drop(host);
        // A killed host leaves its cgroups behind: they are the machine's.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let Some(top) = cgroup2_mount(&mountinfo) else {
            return;
        };
        for cgroup in made
            .lines()
            .rev()
            .filter(|l| !l.is_empty() && !l.contains(".."))
        {
            let dir = top.join(cgroup);
            if !dir.exists() {
                continue;
            }
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            let gone = wait_for(Duration::from_secs(5), || {
                (std::fs::remove_dir(&dir).is_ok() || !dir.exists()).then_some(())
            });
            if gone.is_none() {
                eprintln!("could not remove {}", dir.display());
            }
        }
        // Parents made for them, if nothing else uses them now.
        for cgroup in parents
            .lines()
            .rev()
            .filter(|l| !l.is_empty() && !l.contains(".."))
        {
            let _ = std::fs::remove_dir(top.join(cgroup));
        }
    }
}

/// A label's value; an empty one is the same as none.
pub(crate) fn label<'a>(s: &'a Sample, key: &str) -> &'a str {
    s.label(key).unwrap_or("")
}

/// A workload: `instance_type` and `instance`.
pub(crate) type Workload<'a> = (&'a str, &'a str);

fn of(s: &Sample, (kind, instance): Workload) -> bool {
    label(s, "instance_type") == kind && label(s, "instance") == instance
}

/// `net_workload_{dir}_bytes_total` of a workload.
fn workload(samples: &[Sample], dir: &str, w: Workload) -> Option<u64> {
    let name = format!("net_workload_{dir}_bytes_total");
    samples
        .iter()
        .find(|s| s.name == name && of(s, w))
        .map(|s| s.value as u64)
}

/// The workload's `net_peer_{dir}_bytes_total` series.
fn peers<'a>(samples: &'a [Sample], dir: &str, w: Workload) -> Vec<&'a Sample> {
    let name = format!("net_peer_{dir}_bytes_total");
    samples
        .iter()
        .filter(|s| s.name == name && of(s, w))
        .collect()
}

/// One peer's bytes in a workload: `peer`, `protocol`, `side`.
/// Which of a workload's peers: `peer`, `protocol`, `side`.
pub(crate) type At<'a> = (&'a str, &'a str, &'a str);

fn is_at(s: &Sample, (addr, protocol, side): At) -> bool {
    label(s, "peer") == addr && label(s, "protocol") == protocol && label(s, "side") == side
}

/// One peer's bytes in a workload, if it has a series of its own.
pub(crate) fn peer(samples: &[Sample], dir: &str, w: Workload, at: At) -> Option<u64> {
    peers(samples, dir, w)
        .into_iter()
        .find(|s| is_at(s, at))
        .map(|s| s.value as u64)
}

/// How much a peer's series grew from `before` to `after`.
fn grown(before: &[Sample], after: &[Sample], dir: &str, w: Workload, at: At) -> Option<u64> {
    Some(peer(after, dir, w, at)? - peer(before, dir, w, at)?)
}

fn sum_of_peers(samples: &[Sample], dir: &str, w: Workload) -> u64 {
    peers(samples, dir, w).iter().map(|s| s.value as u64).sum()
}

/// The workload's series, for messages.
fn listing(samples: &[Sample], w: Workload) -> String {
    samples
        .iter()
        .filter(|s| {
            (s.name.starts_with("net_peer_") || s.name.starts_with("net_workload_")) && of(s, w)
        })
        .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every peer series has the labels of a workload the exporter shows
/// (`instance_type`, `instance`, `app`), exactly as `net_workload_*`
/// writes them.
fn peers_are_workloads(samples: &[Sample]) {
    let key = |s: &Sample| {
        (
            label(s, "instance_type").to_owned(),
            label(s, "instance").to_owned(),
            label(s, "app").to_owned(),
        )
    };
    let workloads: std::collections::HashSet<_> = samples
        .iter()
        .filter(|s| s.name.starts_with("net_workload_"))
        .map(key)
        .collect();
    for s in samples.iter().filter(|s| s.name.starts_with("net_peer_")) {
        assert!(
            workloads.contains(&key(s)),
            "a peer series of no workload: {s:?}"
        );
    }
}

/// What keeps a scrape from being settled: peers of `shown` with no
/// series of their own, and workloads of `workloads` not written or whose
/// peer series do not add up to their `net_workload_*`.
fn unsettled(samples: &[Sample], shown: &[(Workload, At)], workloads: &[Workload]) -> Vec<String> {
    let mut why = Vec::new();
    for (w, at) in shown {
        if ["rx", "tx"]
            .iter()
            .any(|d| peer(samples, d, *w, *at).is_none())
        {
            why.push(format!("{w:?} has no series for {at:?}"));
        }
    }
    for w in workloads {
        for d in ["rx", "tx"] {
            let (total, sum) = (workload(samples, d, *w), sum_of_peers(samples, d, *w));
            if total != Some(sum) {
                why.push(format!(
                    "{w:?}: net_workload_{d}_bytes_total {total:?}, its peer series {sum}"
                ));
            }
        }
    }
    why
}

/// Waits (15 s at most: several 1 s ticks) until each of `shown` (a
/// workload's peer) has series of its own, and each of `workloads` is
/// written and its peer series, `other` included, add up to its
/// `net_workload_*` in both directions: that scrape, or the last one and
/// why it is not.
fn try_settled(
    host: &Host,
    shown: &[(Workload, At)],
    workloads: &[Workload],
) -> Result<Vec<Sample>, (Vec<Sample>, String)> {
    let mut last = Vec::new();
    let found = wait_for(Duration::from_secs(15), || {
        last = parse(&host.scrape());
        unsettled(&last, shown, workloads)
            .is_empty()
            .then(|| last.clone())
    });
    found.ok_or_else(|| {
        let why = unsettled(&last, shown, workloads).join("\n");
        let listings: Vec<String> = workloads.iter().map(|w| listing(&last, *w)).collect();
        // How the peers' tick is doing, and whether it shows anyone at all.
        let tick: Vec<String> = last
            .iter()
            .filter(|s| s.name.contains("peers") || s.label("resolver") == Some("peers"))
            .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
            .collect();
        let all = last
            .iter()
            .filter(|s| s.name.starts_with("net_peer_"))
            .count();
        let why = format!(
            "not settled in 15 s:\n{why}\n{}\n{}\n{all} net_peer_* series in all",
            listings.join("\n"),
            tick.join("\n")
        );
        (last, why)
    })
}

/// [`try_settled`], or the test fails.
fn settled(host: &Host, shown: &[(Workload, At)], workloads: &[Workload]) -> Vec<Sample> {
    try_settled(host, shown, workloads).unwrap_or_else(|(_, why)| panic!("{why}\n{}", host.log()))
}

pub(crate) fn tools(needed: &[&str]) -> bool {
    let missing: Vec<&str> = needed.iter().copied().filter(|t| !have(t)).collect();
    require(is_root(), "needs root for namespaces, cgroups and BPF")
        && require(missing.is_empty(), &format!("needs {}", missing.join(", ")))
}

pub(crate) const BASE_TOOLS: [&str; 7] = [
    "unshare", "nsenter", "timeout", "curl", "ip", "ss", "python3",
];

/// Failed checks, reported together at the end.
#[derive(Default)]
pub(crate) struct Checks(Vec<String>);

impl Checks {
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            // At once too: a later panic would hide it.
            eprintln!("FAILED: {what}");
            self.0.push(what);
        }
    }

    pub(crate) fn done(self, host: &Host) {
        self.assert_none(|| host.log());
    }

    /// Fails with every failed check, then `context`, if any failed.
    pub(crate) fn assert_none(self, context: impl FnOnce() -> String) {
        if !self.0.is_empty() {
            panic!("{}\n{}", self.0.join("\n"), context());
        }
    }
}

/// The peers' config for these tests: a 1 s tick, series that outlive the
/// test.
pub(crate) const PEERS: &str = "[peers]\ninterval = \"1s\"\nidle = \"1m\"\n";

/// SMB bytes per client (header overhead): at least the file, at most 10%
/// more plus 100 kB. SMB2 puts a 64-byte header on each read or write of
/// up to 8 MB and TCP/IP 52 bytes on each segment (at most 64 kB here,
/// GSO), the file's open and close are a few kB; the rest is room for
/// retransmissions on a busy machine.
fn smb_bound(payload: u64) -> std::ops::RangeInclusive<u64> {
    payload..=payload + payload / 10 + 100_000
}

/// A new peer's first bytes go to `other` (a series starts from 0 at the
/// tick that first shows it), so each client first makes a small transfer,
/// the test waits for its series, and then measures what the series gains.
#[test]
fn nas_clients_are_named_by_address() {
    let mut needed = BASE_TOOLS.to_vec();
    needed.extend(["smbd", "smbpasswd", "smbclient", "ganesha.nfsd", "nfs-cp"]);
    if !tools(&needed) {
        return;
    }
    const SMB_FILE: u64 = 8_000_000;
    const UPLOAD: u64 = 3_000_000;
    const NFS_FILE: u64 = 6_000_000;
    const NFS_CLIENT: u64 = 1_000_000;
    const SMALL: u64 = 65_536;
    let host = Host::start(
        "nas",
        &format!("[accounting]\ninterval = \"1s\"\n{PEERS}"),
        &[
            ("SMB_FILE", SMB_FILE.to_string()),
            ("NFS_FILE", NFS_FILE.to_string()),
        ],
    );
    let smbd = ("service", "tne-smbd");
    let nfs = ("service", "nfs");
    let client = ("service", "tnenfsclient");
    let alice = ("10.77.1.2", "smb", "server");
    let bob = ("10.77.2.2", "smb", "server");
    let lan3 = ("10.77.3.2", "nfs", "server");
    let server = ("10.77.1.2", "nfs", "client");
    let shown = [(smbd, alice), (smbd, bob), (nfs, lan3), (client, server)];
    let workloads = [smbd, nfs, client];

    host.step(&["nfs-client", "tnenfsclient", &SMALL.to_string()]);
    assert_eq!(host.numbers(&["smb-get", "small"]), [SMALL]);
    assert_eq!(host.numbers(&["smb-put", &SMALL.to_string()]), [SMALL]);
    // Last, so that nothing else (a new cgroup) prompts the exporter to
    // look again: a client's one copy from the removed cgroup's server is
    // named within the wait by itself.
    assert_eq!(host.numbers(&["nfs-copy", "small"])[8], SMALL);
    let before = settled(&host, &shown, &workloads);

    assert_eq!(host.numbers(&["smb-get", "big"]), [SMB_FILE]);
    assert_eq!(host.numbers(&["smb-put", &UPLOAD.to_string()]), [UPLOAD]);
    // lan3's interface counters before and after (rx bytes, rx packets, tx
    // bytes, tx packets), then the copy's size.
    let copy = host.numbers(&["nfs-copy", "big"]);
    assert_eq!(copy.len(), 9, "{copy:?}");
    assert_eq!(copy[8], NFS_FILE);
    host.step(&["nfs-client", "tnenfsclient", &NFS_CLIENT.to_string()]);
    let after = settled(&host, &shown, &workloads);
    for w in workloads {
        eprintln!("{}", listing(&after, w));
    }
    let grew = |dir, w, at| grown(&before, &after, dir, w, at);
    let mut checks = Checks::default();

    // SMB: what alice read is smbd's tx to her address, what bob wrote its
    // rx from his; the other way, only requests and replies.
    let (tx, rx) = (grew("tx", smbd, alice), grew("rx", smbd, alice));
    checks.check(tx.is_some_and(|v| smb_bound(SMB_FILE).contains(&v)), || {
        format!("smbd sent alice (10.77.1.2) the {SMB_FILE}-byte file: {tx:?}")
    });
    checks.check(rx.is_some_and(|v| v > 0 && v < SMB_FILE / 20), || {
        format!("smbd received alice's requests, not a file: {rx:?}")
    });
    let (rx, tx) = (grew("rx", smbd, bob), grew("tx", smbd, bob));
    checks.check(rx.is_some_and(|v| smb_bound(UPLOAD).contains(&v)), || {
        format!("smbd received bob's (10.77.2.2) {UPLOAD} bytes: {rx:?}")
    });
    checks.check(tx.is_some_and(|v| v > 0 && v < UPLOAD / 20), || {
        format!("smbd sent bob replies, not a file: {tx:?}")
    });

    // NFS: the server's connections carry a removed cgroup's id; they are
    // the NFS service's, exactly what crossed lan3 (which carries nothing
    // else) less 14 bytes of Ethernet header per frame; and all of it its
    // one client's.
    let lan = |i: usize| copy[4 + i] - copy[i];
    let (lan_rx, lan_tx) = (lan(0) - 14 * lan(1), lan(2) - 14 * lan(3));
    let nfs_grew =
        |dir| workload(&after, dir, nfs).unwrap_or(0) - workload(&before, dir, nfs).unwrap_or(0);
    checks.check(lan_rx >= NFS_FILE, || {
        format!("lan3 received the file: {lan_rx}")
    });
    checks.check((nfs_grew("tx"), nfs_grew("rx")) == (lan_rx, lan_tx), || {
        format!(
            "the NFS service's tx and rx are what lan3 received and sent at L3: \
             {:?} != {:?}",
            (nfs_grew("tx"), nfs_grew("rx")),
            (lan_rx, lan_tx)
        )
    });
    let by_peer = (grew("tx", nfs, lan3), grew("rx", nfs, lan3));
    checks.check(by_peer == (Some(lan_rx), Some(lan_tx)), || {
        format!("all of it is 10.77.3.2's: {by_peer:?}")
    });

    // This host as an NFS client: its service is a client of 10.77.1.2's
    // port 2049, and none of it is the NFS server's.
    let sent = grew("tx", client, server);
    checks.check(
        sent.is_some_and(|v| (NFS_CLIENT..=NFS_CLIENT + NFS_CLIENT / 20 + 20_000).contains(&v)),
        || format!("the NFS client's {NFS_CLIENT} bytes to 10.77.1.2: {sent:?}"),
    );
    let misplaced: Vec<_> = after
        .iter()
        .filter(|s| {
            s.name.starts_with("net_peer_")
                && ((of(s, nfs) && label(s, "peer") == "10.77.1.2")
                    || (of(s, client) && label(s, "side") == "server"))
        })
        .collect();
    checks.check(misplaced.is_empty(), || {
        format!("the NFS client as a server: {misplaced:?}")
    });
    peers_are_workloads(&after);
    checks.done(&host);
}

/// Bytes a container sent over TCP to one peer, at L3: at least the
/// payload, at most 5% more (headers on 64 kB GSO segments are far less;
/// the rest is retransmissions on a busy machine) plus 64 kB.
fn tcp_bound(payload: u64) -> std::ops::RangeInclusive<u64> {
    payload..=payload + payload / 20 + 65_536
}

#[test]
fn apps_name_each_peer() {
    let mut needed = BASE_TOOLS.to_vec();
    needed.extend(["dockerd", "docker", "busybox", "dnsmasq"]);
    if !tools(&needed) {
        return;
    }
    // The cgroup tree and Docker are read every minute only: what names a
    // new container at once is the scrape itself.
    let host = Host::start(
        "apps",
        &format!("[accounting]\ninterval = \"60s\"\n[docker]\ninterval = \"60s\"\n{PEERS}"),
        &[],
    );
    const BLIP: u64 = 2_000_000;
    let blip = ("docker", "tneblip");
    let mut checks = Checks::default();

    // A container that lived about 2 s and is gone (its cgroup too) by the
    // first scrape after it started.
    let first = parse(&host.scrape());
    checks.check(workload(&first, "tx", blip).is_none(), || {
        "tneblip before it ran".to_owned()
    });
    host.step(&["blip", "tneblip", &BLIP.to_string()]);
    let next = parse(&host.scrape());
    let blip_tx = workload(&next, "tx", blip);
    checks.check(blip_tx.is_some_and(|v| v >= BLIP), || {
        format!(
            "tneblip, exited, named at the first scrape after it started: {blip_tx:?}\n{}",
            next.iter()
                .filter(|s| s.name == "net_workload_tx_bytes_total")
                .map(|s| format!("{:?} {}", s.labels, s.value))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });

    // A bridged and a host-network container, each to two LAN peers (an
    // unlisted port, rsync) and an internet one (https), a different
    // number of bytes to each.
    let targets = |base: u64| {
        [
            (("10.77.1.2", "", ""), 5001, base),
            (("10.77.2.2", "rsync", "client"), 873, base * 2 / 3),
            (("198.51.100.7", "https", "client"), 443, base / 3),
        ]
    };
    let containers = [
        (("docker", "tnebridged"), "bridged", targets(3_000_000)),
        (("docker", "tnehostnet"), "host", targets(1_500_000)),
    ];
    let send = |w: Workload, to: &[(At, u16, u64)], small: bool| {
        let args: Vec<String> = to
            .iter()
            .map(|((addr, _, _), port, n)| {
                format!("{addr}:{port}:{}", if small { 10_000 } else { *n })
            })
            .collect();
        let mut step = vec!["send", w.1];
        step.extend(args.iter().map(String::as_str));
        host.step(&step);
    };
    // DNS over an unconnected socket: the peer is only in the packets.
    let resolver = ("service", "tnedns");
    let dns = ("10.77.1.2", "dns", "client");
    let mut shown = vec![(resolver, dns)];
    let mut workloads = vec![resolver];
    for (w, network, to) in &containers {
        host.step(&["run", w.1, network]);
        send(*w, to, true);
        shown.extend(to.iter().map(|(at, _, _)| (*w, *at)));
        workloads.push(*w);
    }
    host.numbers(&["dns", "tnedns", "1"]);
    let before = settled(&host, &shown, &workloads);

    for (w, _, to) in &containers {
        send(*w, to, false);
    }
    let queries = host.numbers(&["dns", "tnedns", "20"]);
    let after = settled(&host, &shown, &workloads);
    for w in &workloads {
        eprintln!("{}", listing(&after, *w));
    }
    let sink = std::fs::read_to_string(host.path("sink.log")).unwrap_or_default();
    eprintln!("the peers received (from, port, bytes):\n{sink}");
    let grew = |dir, w, at| grown(&before, &after, dir, w, at);
    for (w, _, to) in &containers {
        for (at, port, bytes) in to {
            let (tx, rx) = (grew("tx", *w, *at), grew("rx", *w, *at));
            checks.check(tx.is_some_and(|v| tcp_bound(*bytes).contains(&v)), || {
                format!("{} sent {bytes} bytes to {at:?} (port {port}): {tx:?}", w.1)
            });
            // What came back is the peer's ACKs: some, and far fewer bytes.
            checks.check(rx.is_some_and(|v| v > 0 && v < bytes / 10), || {
                format!("{} received only ACKs from {at:?}: {rx:?}", w.1)
            });
        }
    }
    let (tx, rx) = (grew("tx", resolver, dns), grew("rx", resolver, dns));
    checks.check((tx, rx) == (Some(queries[0]), Some(queries[1])), || {
        format!(
            "the resolver's queries to 10.77.1.2:53 and the answers: {:?}, sent and received {queries:?}",
            (tx, rx)
        )
    });
    peers_are_workloads(&after);
    checks.done(&host);
}

#[test]
fn a_flood_of_peers_is_bounded() {
    if !tools(&BASE_TOOLS) {
        return;
    }
    const TOP: usize = 3;
    let host = Host::start(
        "flood",
        &format!("[accounting]\ninterval = \"1s\"\n{PEERS}top = {TOP}\nmax_peers = 1000\n"),
        &[],
    );
    let flood = ("service", "tneflood");
    // One 100-byte SNMP datagram to each of 5,000 addresses, from one
    // socket, in a service made for it.
    let sent = host.numbers(&["flood", "tneflood", "5000", "100"]);
    // The traffic has stopped; two ticks later, and after, the peer series
    // (`other` included) add up to the workload.
    std::thread::sleep(Duration::from_millis(2_500));
    let mut checks = Checks::default();
    let samples = try_settled(&host, &[], &[flood]).unwrap_or_else(|(last, why)| {
        checks.check(false, || why);
        last
    });
    eprintln!("{}", listing(&samples, flood));
    let series = peers(&samples, "tx", flood);
    let snmp: Vec<_> = series
        .iter()
        .filter(|s| label(s, "protocol") == "snmp" && label(s, "side") == "client")
        .collect();
    checks.check(!snmp.is_empty() && snmp.len() <= TOP + 1, || {
        format!("at most {TOP} peers and other: {snmp:?}")
    });
    checks.check(snmp.iter().any(|s| label(s, "peer") == "other"), || {
        format!("the rest is other: {snmp:?}")
    });
    // Besides, only `other` for what the full map missed.
    let rest: Vec<_> = series
        .iter()
        .filter(|s| !(label(s, "protocol") == "snmp" && label(s, "side") == "client"))
        .collect();
    checks.check(rest.iter().all(|s| label(s, "peer") == "other"), || {
        format!("nothing but SNMP peers and other: {rest:?}")
    });
    let tx = workload(&samples, "tx", flood);
    checks.check(tx == Some(sent[0]), || {
        format!("every datagram counted at L3: {tx:?}, sent {}", sent[0])
    });
    let lost = samples
        .iter()
        .find(|s| s.name == "truenas_net_exporter_peers_lost_packets_total")
        .map(|s| s.value);
    checks.check(lost.is_some_and(|v| v > 0.0), || {
        format!("a full map loses packets, and says so: {lost:?}")
    });
    peers_are_workloads(&samples);
    checks.done(&host);
}
