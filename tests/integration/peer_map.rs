//! Bytes per remote peer on the real kernel: the compiled peer programs
//! (`peers.bpf.c`, committed as `peers.bpf.o`) linked to a cgroup of the
//! test's own, Python processes in it serving, connecting and sending
//! datagrams, and the keys read back. Also: the committed object is what
//! the committed source compiles to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use truenas_net_exporter::workloads::accounting::peers::{
    EGRESS, INGRESS, MAP_NAMES, OBJECT, PeerCounting, PeerKey, Side,
};
use truenas_net_exporter::workloads::accounting::{Accounting, Counts, bpf, elf};

use crate::accounting::{Cleanup, test_cgroup};
use crate::support::{have, is_root, require};

/// The processes in the test's cgroup: `python3 -c "$TNE_PY" MODE ...`.
const PY: &str = r#"
import socket, sys

def listener(spec):
    family, host = spec.split("/", 1)
    if family == "4":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, family == "6")
    s.bind((host, 0))
    s.listen(8)
    return s

def drain(c):
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            return n
        n += len(b)

mode = sys.argv[1]
if mode == "serve":
    # serve REPLY SPEC...: one listener per SPEC (4/addr, 6/addr, or
    # dual/:: for a dual-stack one), their ports on one line; then, one
    # listener after the other, one connection read to its end and
    # answered with REPLY bytes.
    reply = int(sys.argv[2])
    ls = [listener(spec) for spec in sys.argv[3:]]
    print(" ".join(str(s.getsockname()[1]) for s in ls), flush=True)
    for s in ls:
        c, _ = s.accept()
        print(drain(c), flush=True)
        c.sendall(b"\x07" * reply)
        c.close()
elif mode == "connect":
    # connect HOST PORT SEND: sends SEND bytes, reads the answer to its end.
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    c.sendall(b"\x05" * int(sys.argv[4]))
    c.shutdown(socket.SHUT_WR)
    print(drain(c), flush=True)
    c.close()
elif mode == "spray":
    # spray PORT SIZE ADDR...: one datagram to each ADDR, from one
    # unconnected socket.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for addr in sys.argv[4:]:
        s.sendto(b"\x01" * int(sys.argv[3]), (addr, int(sys.argv[2])))
    print("sent", flush=True)
elif mode == "datagrams":
    # datagrams PORT: in a network namespace of its own, where fd00::2 and
    # fd00::3 are on lo. For each family, an unconnected socket at the
    # first address sends to the two others' PORT; the first answers.
    port = int(sys.argv[2])
    for family, me, one, two in [
        (socket.AF_INET, "127.0.0.1", "127.0.0.2", "127.0.0.3"),
        (socket.AF_INET6, "::1", "fd00::2", "fd00::3"),
    ]:
        def bound(addr, port):
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind((addr, port))
            return s
        r1, r2, s = bound(one, port), bound(two, port), bound(me, 0)
        s.sendto(b"a" * 100, (one, port))
        s.sendto(b"b" * 200, (two, port))
        data, sender = r1.recvfrom(1000)
        r1.sendto(b"c" * 50, sender)
        r2.recvfrom(1000)
        s.recvfrom(1000)
    print("done", flush=True)
"#;

/// A process in a cgroup, killed if the test ends before it does (a
/// cgroup with a process in it cannot be removed).
struct Helper {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Helper {
    /// Runs `script` in bash in `cgroup` (it moves itself there first),
    /// with the Python helpers in `$TNE_PY`.
    fn start(cgroup: &Path, script: &str) -> Helper {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && {script}",
                cgroup.display()
            ))
            .env("TNE_PY", PY)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Helper { child, out }
    }

    fn python(cgroup: &Path, args: &str) -> Helper {
        Helper::start(cgroup, &format!("exec python3 -c \"$TNE_PY\" {args}"))
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the helper ended early");
        line.trim().to_owned()
    }

    fn finish(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "helper: {status}");
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test cgroup, and its id; `None` (skipped) without root, a cgroup v2
/// hierarchy, BPF or python3.
fn kernel(name: &str) -> Option<(Cleanup, u64)> {
    if !require(have("python3"), "python3 not installed") {
        return None;
    }
    let cgroup = test_cgroup(name)?;
    if !bpf_works() {
        return None;
    }
    let id = std::fs::metadata(&cgroup.0[0]).unwrap().ino();
    Some((cgroup, id))
}

/// Whether this process may make BPF maps (skips with the reason if not).
fn bpf_works() -> bool {
    let probe = bpf::array_map("tne_probe", 8, 1);
    require(probe.is_ok(), &format!("no BPF here: {:?}", probe.err()))
}

/// `read` once two reads 200 ms apart agree: the last packets of a close
/// may trail the processes.
fn quiet<T: PartialEq>(mut read: impl FnMut() -> T) -> T {
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = read();
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

fn keys(peers: &PeerCounting, cgroup: u64) -> Vec<(PeerKey, Counts)> {
    let mut keys: Vec<_> = peers
        .read()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.cgroup == cgroup)
        .collect();
    keys.sort_by_key(|(k, _)| *k);
    keys
}

fn total(keys: &[(PeerKey, Counts)]) -> Counts {
    let mut sum = Counts::default();
    for (_, c) in keys {
        sum.add(c);
    }
    sum
}

/// Payload plus at most 100 bytes of headers per packet.
fn carries(bytes: u64, packets: u64, payload: usize) -> bool {
    let payload = payload as u64;
    bytes >= payload && bytes <= payload + 100 * packets
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Connects to `port` at `host`, sends `send` bytes, and reads the answer
/// to its end: its length.
fn exchange(host: &str, port: u16, send: usize) -> usize {
    let mut conn = TcpStream::connect((host, port)).unwrap();
    conn.write_all(&vec![3u8; send]).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    got.len()
}

/// A server in the cgroup on listed ports, clients outside over IPv4, IPv6
/// and into a dual-stack socket: each client is one key (the dual-stack
/// socket's IPv4 client as IPv4), on the server's port, this host the
/// server, carrying what was sent; together exactly the per-cgroup count.
#[test]
fn served_connections_count_per_client() {
    let Some((cgroup, id)) = kernel("peer-served") else {
        return;
    };
    const SEND: usize = 20_000;
    const REPLY: usize = 30_000;
    let mut server = Helper::python(
        &cgroup.0[0],
        &format!("serve {REPLY} 4/127.0.0.1 6/::1 dual/::"),
    );
    let ports: Vec<u16> = server
        .line()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let [v4, v6, dual] = ports[..] else {
        panic!("{ports:?}")
    };
    let accounting = Accounting::attach(&cgroup.0[0], 64).unwrap();
    let peers = PeerCounting::attach(&accounting, 64, &[(v4, 1), (v6, 2), (dual, 3)], 0).unwrap();
    let listing = crate::accounting::attached(&cgroup.0[0]);
    if have("bpftool") {
        // One pair counts both, in the counter's place.
        assert!(listing.contains("tne_peer_rx"), "{listing}");
        assert!(listing.contains("tne_peer_tx"), "{listing}");
        assert!(!listing.contains("tne_rx"), "{listing}");
    }

    for (host, port) in [("127.0.0.1", v4), ("::1", v6), ("127.0.0.1", dual)] {
        assert_eq!(exchange(host, port, SEND), REPLY);
        assert_eq!(server.line(), SEND.to_string());
    }
    server.finish();

    let (keys, per_cgroup) = quiet(|| {
        let per_cgroup = accounting.read().unwrap().get(&id).copied();
        (keys(&peers, id), per_cgroup)
    });
    eprintln!("{keys:#?}");
    for (port, addr) in [(v4, "127.0.0.1"), (v6, "::1"), (dual, "127.0.0.1")] {
        let on_port: Vec<_> = keys.iter().filter(|(k, _)| k.port == port).collect();
        // One key per port: the listener's SYN (read from the packet) and
        // the accepted socket's packets fold into one.
        assert_eq!(on_port.len(), 1, "port {port}: {keys:?}");
        let (key, counts) = on_port[0];
        assert_eq!(key.ip(), ip(addr), "{key:?}");
        assert_eq!(key.side, Side::Server);
        assert!(
            carries(counts.rx_bytes, counts.rx_packets, SEND),
            "{key:?} {counts:?}"
        );
        assert!(
            carries(counts.tx_bytes, counts.tx_packets, REPLY),
            "{key:?} {counts:?}"
        );
    }
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(Some(total(&keys)), per_cgroup, "the per-cgroup count");
    let stats = peers.stats();
    assert_eq!(stats.new_keys, 3);
    assert_eq!((stats.lost_packets, stats.lost_bytes), (0, 0));

    peers.detach();
    if have("bpftool") {
        let listing = crate::accounting::attached(&cgroup.0[0]);
        assert!(!listing.contains("tne_peer"), "after detach: {listing}");
        assert!(listing.contains("tne_rx"), "the counter again: {listing}");
    }
}

/// A process in the cgroup connects to a server outside: with the
/// server's port listed, the key is that port and this host the client;
/// with neither port listed, port 0 and no side (never the ephemeral port).
fn client_key(name: &str, listed: bool) -> Option<(PeerKey, u16)> {
    let (cgroup, id) = kernel(name)?;
    const SEND: usize = 10_000;
    const REPLY: usize = 4_000;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Listing some other port leaves both ends of this one unlisted.
    let table = if listed { (port, 9) } else { (port ^ 1, 9) };
    let accounting = Accounting::attach(&cgroup.0[0], 64).unwrap();
    let peers = PeerCounting::attach(&accounting, 64, &[table], 0).unwrap();
    let client = Helper::python(&cgroup.0[0], &format!("connect 127.0.0.1 {port} {SEND}"));
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), SEND);
    conn.write_all(&vec![1u8; REPLY]).unwrap();
    drop(conn);
    client.finish();
    let keys = quiet(|| keys(&peers, id));
    assert_eq!(keys.len(), 1, "{keys:?}");
    let (key, counts) = keys[0];
    assert_eq!(key.ip(), ip("127.0.0.1"));
    assert!(
        carries(counts.tx_bytes, counts.tx_packets, SEND),
        "{counts:?}"
    );
    assert!(
        carries(counts.rx_bytes, counts.rx_packets, REPLY),
        "{counts:?}"
    );
    Some((key, port))
}

#[test]
fn a_client_in_the_cgroup_is_keyed_by_the_remote_listed_port() {
    if let Some((key, port)) = client_key("peer-client", true) {
        assert_eq!((key.port, key.side), (port, Side::Client), "{key:?}");
    }
}

#[test]
fn unlisted_ports_at_both_ends_are_port_0_and_no_side() {
    if let Some((key, _)) = client_key("peer-unlisted", false) {
        assert_eq!((key.port, key.side), (0, Side::None), "{key:?}");
    }
}

/// Unconnected UDP sockets name no peer: the packet's header does. Each
/// address sent to or received from is its own key, with the ports read
/// from the UDP header, in IPv4 and IPv6. (In a network namespace of the
/// helper's own, for a second and third IPv6 address.)
#[test]
fn unconnected_datagrams_are_keyed_by_the_packets_addresses() {
    if !require(have("unshare"), "unshare not installed (util-linux)")
        || !require(have("ip"), "ip not installed (iproute2)")
    {
        return;
    }
    let Some((cgroup, id)) = kernel("peer-udp") else {
        return;
    };
    const PORT: u16 = 5353;
    let accounting = Accounting::attach(&cgroup.0[0], 64).unwrap();
    let peers = PeerCounting::attach(&accounting, 64, &[(PORT, 4)], 0).unwrap();
    let mut helper = Helper::start(
        &cgroup.0[0],
        &format!(
            "exec unshare -n sh -c 'ip link set lo up && \
             ip -6 addr add fd00::2/128 dev lo nodad && \
             ip -6 addr add fd00::3/128 dev lo nodad && \
             exec python3 -c \"$TNE_PY\" datagrams {PORT}'"
        ),
    );
    assert_eq!(helper.line(), "done");
    helper.finish();
    let keys = keys(&peers, id);
    eprintln!("{keys:#?}");
    let find = |addr: &str, side: Side| {
        keys.iter()
            .find(|(k, _)| k.ip() == ip(addr) && k.side == side)
            .map(|(k, c)| {
                assert_eq!(k.port, PORT, "{k:?}");
                *c
            })
            .unwrap_or_else(|| panic!("no key for {addr} {side:?}: {keys:?}"))
    };
    let counts = |rx: u64, rx_packets: u64, tx: u64, tx_packets: u64| Counts {
        rx_bytes: rx,
        rx_packets,
        tx_bytes: tx,
        tx_packets,
    };
    // IP and UDP headers: 28 bytes in IPv4, 48 in IPv6.
    for (h, me, one, two) in [
        (28, "127.0.0.1", "127.0.0.2", "127.0.0.3"),
        (48, "::1", "fd00::2", "fd00::3"),
    ] {
        // The sender: the one that answered, and the one that did not.
        assert_eq!(find(one, Side::Client), counts(50 + h, 1, 100 + h, 1));
        assert_eq!(find(two, Side::Client), counts(0, 0, 200 + h, 1));
        // The two receivers, from the sender's address.
        assert_eq!(
            find(me, Side::Server),
            counts(300 + 2 * h, 2, 50 + h, 1),
            "{me}"
        );
    }
    assert!(keys.iter().all(|(k, _)| k.port == PORT || k.port == 0));
}

/// A map of 4 keys and 10 peers: 4 keys, the rest counted as lost; removed
/// keys make room for new peers.
#[test]
fn a_full_map_counts_what_it_cannot_hold() {
    let Some((cgroup, id)) = kernel("peer-full") else {
        return;
    };
    const SIZE: usize = 10;
    let accounting = Accounting::attach(&cgroup.0[0], 64).unwrap();
    let peers = PeerCounting::attach(&accounting, 4, &[], 0).unwrap();
    // A slot, so the keys cache it.
    accounting.settle(&[id], 1).unwrap();
    let per_cgroup = || accounting.read().unwrap().get(&id).copied();
    let spray = |first: u8, last: u8| {
        let addrs: Vec<String> = (first..=last).map(|i| format!("127.0.0.{i}")).collect();
        let mut helper =
            Helper::python(&cgroup.0[0], &format!("spray 9 {SIZE} {}", addrs.join(" ")));
        assert_eq!(helper.line(), "sent");
        helper.finish();
    };
    spray(1, 10);
    let first = keys(&peers, id);
    assert_eq!(first.len(), 4, "{first:?}");
    let stats = peers.stats();
    assert_eq!(stats.new_keys, 4);
    assert_eq!(stats.lost_packets, 6, "{stats:?}");
    assert_eq!(stats.lost_bytes, 6 * (28 + SIZE as u64), "{stats:?}");
    for (key, counts) in &first {
        assert_eq!((key.port, key.side), (0, Side::None));
        assert_eq!((counts.tx_packets, counts.tx_bytes), (1, 28 + SIZE as u64));
    }
    // The per-cgroup count misses none of them.
    let sent = per_cgroup().unwrap();
    assert_eq!(
        (sent.tx_packets, sent.tx_bytes),
        (10, 10 * (28 + SIZE as u64))
    );

    let gone: Vec<PeerKey> = first.iter().map(|(k, _)| *k).collect();
    assert_eq!(peers.remove(&gone).unwrap(), 4);
    assert_eq!(peers.remove(&gone).unwrap(), 0, "already gone");
    assert!(keys(&peers, id).is_empty());
    spray(11, 15);
    let second = keys(&peers, id);
    assert_eq!(second.len(), 4, "{second:?}");
    assert!(second.iter().all(|(k, _)| !gone.contains(k)));
    let stats = peers.stats();
    assert_eq!(stats.new_keys, 8);
    assert_eq!(stats.lost_packets, 7, "{stats:?}");
    let sent = per_cgroup().unwrap();
    assert_eq!(
        (sent.tx_packets, sent.tx_bytes),
        (15, 15 * (28 + SIZE as u64))
    );
    assert_eq!(accounting.new_cgroups(), 0, "all in the slot");
}

/// A slot a peer key cached is zeroed in the key when its cgroup hands the
/// slot back, before the slot can go to another cgroup: the cgroup's next
/// packets count as a new cgroup's (the fresh map), not in the slot's new
/// owner's.
#[test]
fn a_handed_back_slot_is_cached_nowhere_once_reused() {
    let Some((cgroup, id)) = kernel("peer-reuse") else {
        return;
    };
    const SIZE: usize = 10;
    let accounting = Accounting::attach(&cgroup.0[0], 64).unwrap();
    let peers = PeerCounting::attach(&accounting, 64, &[], 0).unwrap();
    let spray = |addrs: &str| {
        let mut helper = Helper::python(&cgroup.0[0], &format!("spray 9 {SIZE} {addrs}"));
        assert_eq!(helper.line(), "sent");
        helper.finish();
    };
    let settled = accounting.settle(&[id], 1).unwrap();
    assert_eq!(settled.slots, [(id, 1)]);
    spray("127.0.0.1 127.0.0.2");
    assert_eq!(accounting.slot(1).tx_packets, 2);
    spray("127.0.0.1 127.0.0.2");
    assert_eq!(
        accounting.slot(1).tx_packets,
        4,
        "counted by the cached slot"
    );

    // Gone from the tree: its slot is handed back, the keys forget it.
    let settled = accounting.settle(&[], 2).unwrap();
    assert_eq!(settled.gone.len(), 1, "{settled:?}");
    assert_eq!(settled.uncached, 2, "{settled:?}");
    // The slot, rested, goes to another cgroup (any id will do).
    let other = id + 1_000_000;
    let settled = accounting.settle(&[other], 3).unwrap();
    assert_eq!(settled.uncached, 0, "{settled:?}");
    assert_eq!(settled.slots, [(other, 1)], "the slot reused");
    assert_eq!(accounting.slot(1), Counts::default());

    spray("127.0.0.1 127.0.0.2");
    assert_eq!(
        accounting.slot(1),
        Counts::default(),
        "nothing in the new owner's slot"
    );
    let all = accounting.read().unwrap();
    assert_eq!(all.get(&id).map(|c| c.tx_packets), Some(2), "{all:?}");
    assert_eq!(accounting.new_cgroups(), 1, "a new cgroup again");
    let keys = keys(&peers, id);
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|(_, c)| c.tx_packets == 3), "{keys:?}");
}

/// With the cgroup standing in for the root (its id as `root_id`), what it
/// serves on a listed port is counted per protocol, exactly what the peer
/// map holds for that port; what it does as a client is not.
#[test]
fn the_root_cgroups_served_traffic_per_protocol() {
    let Some((cgroup, id)) = kernel("peer-root") else {
        return;
    };
    const INDEX: u8 = 7;
    let mut server = Helper::python(&cgroup.0[0], "serve 40000 4/127.0.0.1");
    let port: u16 = server.line().parse().unwrap();
    let outside = TcpListener::bind("127.0.0.1:0").unwrap();
    let client_port = outside.local_addr().unwrap().port();
    let table = [(port, INDEX), (client_port, 8)];
    let accounting = Accounting::attach(&cgroup.0[0], 64).unwrap();
    let peers = PeerCounting::attach(&accounting, 64, &table, id).unwrap();
    assert_eq!(exchange("127.0.0.1", port, 25_000), 40_000);
    assert_eq!(server.line(), "25000");
    server.finish();
    let client = Helper::python(
        &cgroup.0[0],
        &format!("connect 127.0.0.1 {client_port} 1000"),
    );
    let (mut conn, _) = outside.accept().unwrap();
    std::io::copy(&mut conn, &mut std::io::sink()).unwrap();
    drop(conn);
    client.finish();

    let (keys, served, as_client) = quiet(|| {
        (
            keys(&peers, id),
            peers.root_protocol(INDEX),
            peers.root_protocol(8),
        )
    });
    let on_port: Vec<_> = keys
        .iter()
        .filter(|(k, _)| k.port == port && k.side == Side::Server)
        .cloned()
        .collect();
    assert!(carries(served.rx_bytes, served.rx_packets, 25_000));
    assert_eq!(served, total(&on_port), "{keys:?}");
    assert_eq!(as_client, Counts::default(), "a client's traffic");
    assert!(keys.iter().any(|(k, _)| k.side == Side::Client), "{keys:?}");
    for index in (0..=255u8).filter(|&i| i != INDEX) {
        assert_eq!(peers.root_protocol(index), Counts::default(), "{index}");
    }
}

/// A section loaded with something that is not a map where a map goes is
/// refused, and the error carries the verifier's log.
#[test]
fn a_bad_map_fd_is_refused_with_the_verifiers_log() {
    if !require(is_root(), "needs root to load BPF programs") || !bpf_works() {
        return;
    }
    let not_a_map = std::fs::File::open("/dev/null").unwrap();
    let fd: RawFd = not_a_map.as_raw_fd();
    let code = elf::patched(OBJECT, INGRESS, |_| Some(fd)).unwrap();
    let err = bpf::load_cgroup_skb("tne_peer_bad", bpf::Direction::Ingress, &code).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("verifier refused"), "{text}");
    assert!(text.contains(&format!("fd {fd}")), "the log: {text}");
}

/// The committed object is what the committed source compiles to: each
/// code section's bytes and its map loads (not the whole file, whose
/// symbols and string tables may differ with the path).
#[test]
fn the_committed_object_is_the_source_compiled() {
    let helpers = Path::new("/usr/include/bpf/bpf_helpers.h");
    if !require(have("clang"), "clang not installed")
        || !require(helpers.exists(), "libbpf-dev not installed")
    {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/workloads/accounting");
    let out = tempfile::tempdir().unwrap();
    let object = out.path().join("peers.bpf.o");
    // The command in peers.bpf.c's header.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let built = Command::new("clang")
        .args(["-O2", "-target", "bpf", "-mcpu=v3", &multiarch, "-c"])
        .arg(dir.join("peers.bpf.c"))
        .arg("-o")
        .arg(&object)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "clang: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let fresh = std::fs::read(&object).unwrap();
    assert_eq!(
        std::fs::read(dir.join("peers.bpf.o")).unwrap(),
        OBJECT,
        "the crate embeds the file"
    );
    for section in [INGRESS, EGRESS] {
        let committed = elf::program(OBJECT, section).unwrap();
        let compiled = elf::program(&fresh, section).unwrap();
        eprintln!("{section}: {} instructions", compiled.code.len() / 8);
        assert!(
            committed == compiled,
            "{section} differs from the source: rebuild peers.bpf.o with the command in \
             peers.bpf.c's header"
        );
        let names: Vec<&str> = compiled.maps.iter().map(|(_, n)| n.as_str()).collect();
        for name in MAP_NAMES {
            assert!(names.contains(&name), "{section} loads {name}");
        }
    }
}
