//! Socket accounting per cgroup on the real kernel: the counting programs
//! linked to a cgroup of the test's own, processes in two cgroups below it
//! sending and receiving known amounts over TCP, and the counters read back
//! by cgroup id. Dropping the accounting leaves nothing attached.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use truenas_net_exporter::accounting::{Accounting, cgroup2_mount};

use crate::support::{have, is_root, require};

/// A cgroup of the test's own under the v2 hierarchy, removed at the end.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for child in ["sender", "receiver"] {
            let _ = std::fs::remove_dir(self.0.join(child));
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

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
fn attached(cgroup: &Path) -> String {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_cgroup_counts_what_its_sockets_sent_and_received() {
    if !require(is_root(), "needs root to load BPF programs")
        || !require(have("bpftool"), "bpftool not installed")
    {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(root) = cgroup2_mount(&mountinfo) else {
        assert!(
            require(false, "no cgroup v2 hierarchy mounted"),
            "unreachable"
        );
        return;
    };
    let cgroup = TestCgroup(root.join(format!("tne-accounting-{}", std::process::id())));
    for dir in ["", "sender", "receiver"] {
        std::fs::create_dir_all(cgroup.0.join(dir)).unwrap();
    }
    let id = |child: &str| std::fs::metadata(cgroup.0.join(child)).unwrap().ino();

    let accounting = Accounting::attach(&cgroup.0, 1024).unwrap();
    let listing = attached(&cgroup.0);
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
        &cgroup.0.join("sender"),
        &format!("head -c {SENT} /dev/zero > /dev/tcp/127.0.0.1/{port}"),
    );
    let (mut from_sender, _) = server.accept().unwrap();
    let mut got = Vec::new();
    from_sender.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), SENT);
    let receiver = run_in(
        &cgroup.0.join("receiver"),
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
    // 60 + 60 bytes), the handshake and the close, and what TCP sent again
    // (a 64 KiB segment over loopback now and then, as the interface sees).
    let within = |bytes: u64, packets: u64, payload: usize| {
        let payload = payload as u64;
        bytes >= payload && bytes <= payload + payload / 20 + 120 * packets + 1000
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

    accounting.forget([id("sender")]).unwrap();
    let counts = accounting.read().unwrap();
    assert!(!counts.contains_key(&id("sender")));
    assert!(counts.contains_key(&id("receiver")));

    drop(accounting);
    let listing = attached(&cgroup.0);
    assert!(
        !listing.contains("tne_"),
        "closed links leave nothing: {listing}"
    );
}

/// A program the verifier refuses comes back with the verifier's reason.
#[test]
fn a_refused_program_says_why() {
    use truenas_net_exporter::accounting::bpf::{Direction, load_cgroup_skb};
    use truenas_net_exporter::accounting::program::{Insn, bytes};
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
