//! Socket accounting per cgroup on the real kernel: the counting programs
//! linked to a cgroup of the test's own, processes in two cgroups below it
//! sending and receiving known amounts over TCP, and the counters read back
//! by cgroup id. Dropping the accounting leaves nothing attached.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use truenas_net_exporter::workloads::accounting::{Accounting, cgroup2_mount};

use crate::support::{have, is_root, require};

/// Runs `script` in bash, in `cgroup` (it moves itself there first).
fn run_in(cgroup: &Path, script: &str) -> std::process::Child {
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && {script}",
            cgroup.display()
        ))
        .spawn()
        .unwrap()
}

/// Programs attached to the cgroup, as bpftool lists them.
pub fn attached(cgroup: &Path) -> String {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_cgroup_counts_what_its_sockets_sent_and_received() {
    if !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    let Some(cgroup) = test_cgroup("accounting") else {
        return;
    };
    let top = cgroup.0[0].clone();
    let _children = Cleanup(vec![top.join("sender"), top.join("receiver")]);
    for dir in ["sender", "receiver"] {
        std::fs::create_dir_all(top.join(dir)).unwrap();
    }
    let id = |child: &str| std::fs::metadata(top.join(child)).unwrap().ino();

    let accounting = Accounting::attach(&top, 1024).unwrap();
    let listing = attached(&top);
    assert!(
        listing.contains("tne_rx") && listing.contains("tne_tx"),
        "attached: {listing}"
    );

    // The test's server lives outside the cgroup: only the children count.
    const SENT: usize = 3_000_000;
    const RECEIVED: usize = 5_000_000;
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let sender = run_in(
        &top.join("sender"),
        &format!("head -c {SENT} /dev/zero > /dev/tcp/127.0.0.1/{port}"),
    );
    let (mut from_sender, _) = server.accept().unwrap();
    let mut got = Vec::new();
    from_sender.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), SENT);
    let receiver = run_in(
        &top.join("receiver"),
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; cat <&3 > /dev/null"),
    );
    let (mut to_receiver, _) = server.accept().unwrap();
    to_receiver.write_all(&vec![7u8; RECEIVED]).unwrap();
    drop(to_receiver);
    for mut child in [sender, receiver] {
        assert!(child.wait().unwrap().success());
    }

    let counts = accounting.read().unwrap();
    let sender = counts.get(&id("sender")).copied().unwrap_or_default();
    let receiver = counts.get(&id("receiver")).copied().unwrap_or_default();
    eprintln!("sender {sender:?}, receiver {receiver:?}");
    // L3 bytes: the payload plus each packet's IP and TCP headers (at most
    // 60 + 60 bytes), the handshake and the close, and what TCP sent again:
    // over a busy loopback, a 64 KiB segment now and then.
    let within = |bytes: u64, packets: u64, payload: usize| {
        let payload = payload as u64;
        bytes >= payload && bytes <= payload + payload / 10 + 120 * packets + 140_000
    };
    assert!(
        within(sender.tx_bytes, sender.tx_packets, SENT),
        "{sender:?}"
    );
    assert!(
        within(receiver.rx_bytes, receiver.rx_packets, RECEIVED),
        "{receiver:?}"
    );
    // What went the other way is acknowledgements only.
    assert!(
        sender.rx_bytes < 100 * sender.rx_packets.max(1),
        "{sender:?}"
    );
    assert!(
        receiver.tx_bytes < 100 * receiver.tx_packets.max(1),
        "{receiver:?}"
    );
    assert!(
        !counts.contains_key(&id("")),
        "the parent cgroup had no socket"
    );

    // A settle gives the two slots, then the sender's cgroup goes: its
    // last counts come back once, and it is counted no more.
    let settled = accounting
        .settle(&[id(""), id("sender"), id("receiver")], 1)
        .unwrap();
    assert!(settled.failed.is_none(), "{settled:?}");
    assert_eq!(settled.slots.len(), 3, "every cgroup, while slots last");
    assert_eq!(
        accounting.read().unwrap(),
        counts,
        "the same counts, in slots"
    );
    let receiver_slot = settled
        .slots
        .iter()
        .find(|s| s.0 == id("receiver"))
        .unwrap()
        .1;
    assert_eq!(accounting.slot(receiver_slot), receiver);
    let settled = accounting.settle(&[id(""), id("receiver")], 2).unwrap();
    assert_eq!(settled.gone, [(id("sender"), sender)]);
    let counts = accounting.read().unwrap();
    assert!(!counts.contains_key(&id("sender")));
    assert!(counts.contains_key(&id("receiver")));

    drop(accounting);
    // A child another test forks in this moment holds a copy of the link's
    // fd until it execs: the detach may trail the close by that long.
    let detached = crate::support::wait_for(std::time::Duration::from_secs(2), || {
        (!attached(&top).contains("tne_")).then_some(())
    });
    assert!(
        detached.is_some(),
        "closed links leave nothing: {}",
        attached(&top)
    );
}

/// A cgroup made after the last walk of the tree counts in the fresh map
/// until the tree has it: its counts wait through any number of settles of
/// the same walk and move into its slot once it is live; a cgroup the next
/// two walks do not have is dropped. A gone cgroup's slot rests one settle
/// and comes back zeroed to the next cgroup.
#[test]
fn a_new_cgroup_keeps_its_counts_until_the_tree_has_it() {
    let Some(cgroup) = test_cgroup("settle") else {
        return;
    };
    let top = cgroup.0[0].clone();
    let (late, dead, next) = (top.join("late"), top.join("dead"), top.join("next"));
    let (one, two) = (top.join("one"), top.join("two"));
    let _children = Cleanup(vec![
        late.clone(),
        dead.clone(),
        next.clone(),
        one.clone(),
        two.clone(),
    ]);
    for dir in [&late, &dead, &next, &one, &two] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let id = |dir: &Path| std::fs::metadata(dir).unwrap().ino();
    // One slot: idle cgroups get none (half the slots must stay free).
    let accounting = Accounting::attach(&top, 1).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    send_from(&listener, &late, 100_000);
    assert_eq!(
        accounting.new_cgroups(),
        1,
        "the programs met one new cgroup"
    );
    let counts = accounting.read().unwrap()[&id(&late)];
    assert!(counts.tx_bytes >= 100_000, "{counts:?}");

    for _ in 0..5 {
        let settled = accounting.settle(&[id(&top)], 1).unwrap();
        assert!(settled.slots.is_empty(), "{settled:?}");
        assert_eq!(settled.new_cgroups, 1);
    }
    assert_eq!(accounting.read().unwrap()[&id(&late)], counts, "kept");
    let settled = accounting.settle(&[id(&top), id(&late)], 2).unwrap();
    assert_eq!(settled.slots, [(id(&late), 1)]);
    assert_eq!(accounting.slot(1), counts, "its counts, in its slot");

    // Traffic of a cgroup the tree never has: kept while a walk may have
    // missed it, then an orphan with a slot of its own; with the one slot
    // taken, it goes uncounted and the limit shows.
    send_from(&listener, &dead, 1000);
    let live = [id(&top), id(&late)];
    assert_eq!(accounting.settle(&live, 2).unwrap().unslotted, 0);
    assert_eq!(accounting.settle(&live, 3).unwrap().unslotted, 0);
    assert!(accounting.read().unwrap().contains_key(&id(&dead)));
    accounting.settle(&live, 4).unwrap();
    assert!(!accounting.read().unwrap().contains_key(&id(&dead)));
    send_from(&listener, &next, 1000);
    let live = [id(&top), id(&late), id(&next)];
    assert_eq!(
        accounting.settle(&live, 5).unwrap().unslotted,
        1,
        "no slot left"
    );

    // `late` goes: its slot rests one settle, then is `next`'s, zeroed.
    let live = [id(&top), id(&next)];
    let settled = accounting.settle(&live, 6).unwrap();
    assert_eq!(settled.gone, [(id(&late), counts)]);
    assert!(
        settled.slots.is_empty() && settled.unslotted == 1,
        "{settled:?}"
    );
    let settled = accounting.settle(&live, 6).unwrap();
    assert_eq!(settled.slots, [(id(&next), 1)]);
    let next_counts = accounting.slot(1);
    assert!(
        (1000..=10_000).contains(&next_counts.tx_bytes),
        "only next's: {next_counts:?}"
    );

    // The fresh map (one entry here) full: a third new cgroup's packets are
    // counted as uncounted, and the settle says so.
    assert_eq!(accounting.uncounted_packets(), 0);
    send_from(&listener, &one, 1000);
    send_from(&listener, &two, 1000);
    assert!(accounting.uncounted_packets() > 0);
    assert!(accounting.settle(&live, 7).unwrap().unslotted >= 1);
}

/// A cgroup removed while its sockets still count (knfsd's listener was
/// made in a oneshot unit's cgroup) is an orphan: once the walks have
/// surely missed it, it counts in a slot of its own, and hands the slot
/// back with its last counts once it stands still.
#[test]
fn a_removed_cgroup_that_still_counts_keeps_a_slot() {
    let Some(cgroup) = test_cgroup("orphan") else {
        return;
    };
    let top = cgroup.0[0].clone();
    let gone = top.join("gone");
    let _children = Cleanup(vec![gone.clone()]);
    std::fs::create_dir_all(&gone).unwrap();
    let id = |dir: &Path| std::fs::metadata(dir).unwrap().ino();
    let (top_id, gone_id) = (id(&top), id(&gone));
    let accounting = Accounting::attach(&top, 8).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    send_from(&listener, &gone, 50_000);
    std::fs::remove_dir(&gone).unwrap();
    let live = [top_id];
    for walk in 1..=2 {
        let settled = accounting.settle(&live, walk).unwrap();
        assert!(settled.orphans.is_empty(), "a walk may have missed it yet");
    }
    let settled = accounting.settle(&live, 3).unwrap();
    assert_eq!(settled.orphans, [gone_id]);
    assert!(settled.slots.iter().any(|&(i, _)| i == gone_id));
    let counts = accounting.read().unwrap()[&gone_id];
    assert!(counts.tx_bytes >= 50_000, "{counts:?}");
    let mut handed_back = None;
    for walk in 4..20 {
        let settled = accounting.settle(&live, walk).unwrap();
        if let Some(&(_, last)) = settled.gone.iter().find(|(i, _)| *i == gone_id) {
            handed_back = Some((walk, last));
            break;
        }
    }
    let (walk, last) = handed_back.expect("a quiet orphan hands its slot back");
    assert_eq!(last, counts, "with its last counts");
    assert!(walk >= 13, "after ten quiet walks, not at once: {walk}");
}

/// A program the verifier refuses comes back with the verifier's reason.
#[test]
fn a_refused_program_says_why() {
    use truenas_net_exporter::workloads::accounting::bpf::{Direction, load_cgroup_skb};
    use truenas_net_exporter::workloads::accounting::program::{Insn, bytes};
    if !require(is_root(), "needs root to load BPF programs") {
        return;
    }
    // r0 = 1, and no exit.
    let no_exit = [Insn {
        code: 0xb7,
        dst: 0,
        src: 0,
        off: 0,
        imm: 1,
    }];
    let err = load_cgroup_skb("tne_bad", Direction::Egress, &bytes(&no_exit)).expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("verifier refused"), "{text}");
    assert!(text.contains("exit"), "the verifier's log: {text}");
}

/// The exporter counts per cgroup below its `[accounting] cgroup` (here the
/// test's own, standing in for the hierarchy's root) and names what it
/// counts: a systemd service by its unit, a Docker container's cgroup by
/// its short id until the Docker resolver names it, the rest as the host.
/// A cgroup that goes leaves its counts to its workload, whose counter
/// never goes back.
#[test]
fn the_scrape_names_each_cgroups_traffic() {
    let Some(cgroup) = test_cgroup("workloads") else {
        return;
    };
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let top = cgroup.0[0].clone();
    let service = top.join("system.slice/tnetest.service");
    let worker = service.join("worker");
    let container = top.join(format!("system.slice/docker-{ID}.scope"));
    let _cleanup = Cleanup(vec![
        worker.clone(),
        service.clone(),
        container.clone(),
        top.join("system.slice"),
    ]);
    for dir in [&worker, &container] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let (_host, server) = server_counting(&top, "");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let send = |cgroup: &Path, bytes: usize| send_from(&listener, cgroup, bytes);
    send(&service, 1_000_000);
    send(&worker, 2_000_000);
    send(&container, 500_000);

    let tx = |body: &str, kind: &str, instance: &str| {
        crate::support::parse(body)
            .iter()
            .find(|s| {
                s.name == "net_workload_tx_bytes_total"
                    && s.label("instance_type") == Some(kind)
                    && s.label("instance") == Some(instance)
            })
            .map(|s| s.value)
    };
    let body = crate::support::wait_for(std::time::Duration::from_secs(10), || {
        let body = server.metrics();
        (tx(&body, "service", "tnetest").is_some_and(|v| v >= 3_000_000.0)
            && tx(&body, "docker", &ID[..12]).is_some())
        .then_some(body)
    })
    .unwrap_or_else(|| panic!("workloads named: {}", server.metrics()));
    let service_tx = tx(&body, "service", "tnetest").unwrap();
    let container_tx = tx(&body, "docker", &ID[..12]).unwrap();
    eprintln!("service sent {service_tx} bytes, the container {container_tx}");
    // Headers, and over loopback a 64 KiB segment sent again now and then.
    let within = |sent: f64| sent..=sent * 1.05 + 140_000.0;
    assert!(within(3_000_000.0).contains(&service_tx), "{service_tx}");
    assert!(within(500_000.0).contains(&container_tx), "{container_tx}");

    // The worker's cgroup goes: its bytes stay the service's.
    std::fs::remove_dir(&worker).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = tx(&server.metrics(), "service", "tnetest").unwrap();
    assert!(after >= service_tx, "{after} < {service_tx}: went back");
}

/// The seed fixture served in-process with `extra` TOML after its
/// `[accounting]` section, the programs linked at `cgroup`.
fn server_counting(cgroup: &Path, extra: &str) -> (tempfile::TempDir, crate::http::Server) {
    let host = crate::support::copy_fixture("seed-host");
    let server = crate::http::Server::start(
        host.path(),
        &format!(
            "[accounting]\ncgroup = {:?}\ninterval = \"1s\"\n{extra}",
            cgroup.display().to_string()
        ),
    );
    // The listener is bound before the programs are linked: a first answer
    // means they are.
    let _ = server.metrics();
    (host, server)
}

/// Sends `bytes` to `listener` from a process in `cgroup`, and waits until
/// all arrived.
fn send_from(listener: &TcpListener, cgroup: &Path, bytes: usize) {
    let port = listener.local_addr().unwrap().port();
    let mut child = run_in(
        cgroup,
        &format!("head -c {bytes} /dev/zero > /dev/tcp/127.0.0.1/{port}"),
    );
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(got.len(), bytes);
}

/// Removes cgroup directories, children first.
pub struct Cleanup(pub Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The exporter's binary on the seed fixture, its programs linked to
/// `cgroup`, run through `wrapper` (empty: directly); its stderr goes to
/// `log`. Returns the process and its address once it answers.
fn exporter_on(
    cgroup: &Path,
    wrapper: &[&str],
    log: &Path,
) -> (std::process::Child, std::net::SocketAddr) {
    let host = crate::support::fixture("seed-host");
    let port = crate::prometheus::free_port();
    let config = log.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[accounting]\ncgroup = {:?}\n",
            cgroup.display().to_string()
        ),
    )
    .unwrap();
    let mut command = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(crate::support::bin());
            c
        }
        None => Command::new(crate::support::bin()),
    };
    let child = command
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--path.rootfs={}", host.display()))
        .arg(format!("--path.procfs={}", host.join("proc").display()))
        .arg("--docker.socket=")
        .arg(format!("--config.file={}", config.display()))
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = crate::support::wait_for(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).ok()
    });
    assert!(up.is_some(), "the exporter listens");
    // It listens before it links the programs: an answer means it has.
    assert_eq!(crate::support::http(addr, "GET", "/-/healthy").status, 200);
    (child, addr)
}

/// A test cgroup under the v2 hierarchy, or `None` (skipped) without one
/// or without root, which loading the programs needs.
pub fn test_cgroup(name: &str) -> Option<Cleanup> {
    if !require(is_root(), "needs root to load BPF programs") {
        return None;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = cgroup2_mount(&mountinfo);
    if !require(root.is_some(), "no cgroup v2 hierarchy mounted") {
        return None;
    }
    let dir = root?.join(format!("tne-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Some(Cleanup(vec![dir]))
}

/// `kill -9` of the exporter leaves no program on the cgroup: its links
/// close with the process.
#[test]
fn a_killed_exporter_leaves_nothing_attached() {
    if !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    let Some(cgroup) = test_cgroup("kill") else {
        return;
    };
    let dir = cgroup.0[0].clone();
    let logs = tempfile::tempdir().unwrap();
    let (mut exporter, _) = exporter_on(&dir, &[], &logs.path().join("exporter.log"));
    let listing = attached(&dir);
    // The counter, or (with [peers]) the programs that count both.
    let counting = |d: &str| {
        listing.contains(&format!("tne_{d}")) || listing.contains(&format!("tne_peer_{d}"))
    };
    let running = counting("rx") && counting("tx");
    if !running {
        exporter.kill().unwrap();
    }
    assert!(running, "attached while it runs: {listing}");
    exporter.kill().unwrap();
    exporter.wait().unwrap();
    let listing = attached(&dir);
    assert!(!listing.contains("tne_"), "after kill -9: {listing}");
}

/// Without CAP_BPF and CAP_SYS_ADMIN the exporter starts, serves every
/// interface, says once why there is no traffic per workload, and its
/// health metrics show it.
#[test]
fn without_the_privilege_it_serves_and_says_so() {
    if !require(is_root(), "needs root to drop capabilities")
        || !require(have("setpriv"), "setpriv not installed (util-linux)")
    {
        return;
    }
    let Some(cgroup) = test_cgroup("nocap") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("exporter.log");
    let drop = "-bpf,-sys_admin,-perfmon";
    let wrapper = ["setpriv", "--bounding-set", drop, "--inh-caps", drop, "--"];
    let (mut exporter, addr) = exporter_on(&cgroup.0[0], &wrapper, &log);
    let body = crate::support::http(addr, "GET", "/metrics").body;
    let _ = exporter.kill();
    let _ = exporter.wait();
    let samples = crate::support::parse(&body);
    let interfaces = samples
        .iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .count();
    assert!(interfaces >= 5, "interfaces served: {interfaces}");
    assert!(
        !samples.iter().any(|s| s.name.starts_with("net_workload_")),
        "no workload families"
    );
    let up = samples
        .iter()
        .find(|s| {
            s.name == "truenas_net_exporter_source_up"
                && s.label("resolver") == Some("cgroups")
                && s.label("source") == Some("bpf")
        })
        .map(|s| s.value);
    assert_eq!(up, Some(0.0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("cannot count traffic per cgroup").count(),
        1,
        "said once: {text}"
    );
    assert!(text.contains("Operation not permitted"), "why: {text}");
}

/// Past `[accounting] max_cgroups`, a new cgroup goes uncounted, and the
/// exporter counts the hit; nothing else changes.
#[test]
fn full_maps_are_a_counted_limit() {
    let Some(cgroup) = test_cgroup("full") else {
        return;
    };
    let top = cgroup.0[0].clone();
    let slice = top.join("t.slice");
    let (a, b) = (slice.join("a.service"), slice.join("b.service"));
    let _children = Cleanup(vec![a.clone(), b.clone(), slice.clone()]);
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let (_host, server) = server_counting(&top, "max_cgroups = 1\n");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for dir in [&a, &b] {
        send_from(&listener, dir, 1000);
    }
    // The limit shows as soon as a scrape reads the full maps; the cgroup
    // that made it in is named once the cgroup tree has been read.
    let named = |samples: &[crate::support::Sample]| {
        samples
            .iter()
            .filter(|s| s.name == "net_workload_tx_bytes_total")
            .filter_map(|s| s.label("instance").map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let samples = crate::support::wait_for(std::time::Duration::from_secs(10), || {
        let samples = crate::support::parse(&server.metrics());
        let hits = samples
            .iter()
            .find(|s| {
                s.name == "truenas_net_exporter_limit_hits_total"
                    && s.label("limit") == Some("accounting_cgroups")
            })
            .map(|s| s.value)?;
        (hits >= 1.0 && !named(&samples).is_empty()).then_some(samples)
    })
    .expect("the full maps are counted");
    // Which of the two made it in is the kernel's (its free list is per CPU).
    let named = named(&samples);
    assert!(
        named == ["a"] || named == ["b"],
        "one cgroup counted: {named:?}"
    );
}
