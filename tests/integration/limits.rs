//! Nothing outside can stall or bloat the exporter: hostile clients, a FIFO
//! where net/dev or a sysfs file should be, tools that never stop talking, an
//! engine whose answer never ends. Each test runs the real binary as its own
//! process, so its memory, threads and descriptors can be read from /proc.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{bin, copy_fixture, have, http, parse, wait_for};

/// The exporter as a child process, killed when dropped.
pub struct Exporter {
    pub child: Child,
    pub addr: SocketAddr,
    _config: tempfile::TempDir,
}

impl Exporter {
    /// Serves `root` (a fixture host) with `toml` as its config file, Docker off.
    pub fn start(root: &Path, toml: &str, stderr: Stdio) -> Exporter {
        Exporter::start_with(root, toml, "", stderr)
    }

    /// As [`Exporter::start`], with the Docker socket at `docker`.
    pub fn start_with(root: &Path, toml: &str, docker: &str, stderr: Stdio) -> Exporter {
        Exporter::start_in(Command::new(bin()), root, toml, docker, stderr)
    }

    /// As [`Exporter::start_with`], run by `command` (a wrapper such as
    /// `prlimit`, with the binary as its last argument so far).
    pub fn start_in(
        command: Command,
        root: &Path,
        toml: &str,
        docker: &str,
        stderr: Stdio,
    ) -> Exporter {
        let args = [
            format!("--path.rootfs={}", root.display()),
            format!("--path.procfs={}", root.join("proc").display()),
            format!("--docker.socket={docker}"),
        ];
        Exporter::start_args(command, &args, toml, stderr)
    }

    /// `command` (the binary, or a wrapper ending in it) with `args`, a
    /// listen address of its own and `toml` as its config file.
    pub fn start_args(
        mut command: Command,
        args: &[String],
        toml: &str,
        stderr: Stdio,
    ) -> Exporter {
        let config = tempfile::tempdir().unwrap();
        let file = config.path().join("config.toml");
        std::fs::write(&file, toml).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = command
            .arg(format!("--web.listen-address={addr}"))
            .args(args)
            .arg(format!("--config.file={}", file.display()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(10), || TcpStream::connect(addr).ok())
            .expect("the exporter listens");
        Exporter {
            child,
            addr,
            _config: config,
        }
    }

    pub fn status(&self, key: &str) -> u64 {
        proc_status(self.child.id(), key).unwrap_or_else(|| panic!("{key} in /proc/<pid>/status"))
    }

    pub fn rss_kib(&self) -> u64 {
        self.status("VmRSS:")
    }

    pub fn peak_kib(&self) -> u64 {
        self.status("VmHWM:")
    }

    pub fn threads(&self) -> u64 {
        self.status("Threads:")
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// The value of an own metric in a fresh scrape (`name{labels}` as
    /// written), asked from an address of its own (127.0.0.3), so the test's
    /// own look never competes with the clients it plays.
    pub fn metric(&self, series: &str) -> f64 {
        let eyes = std::net::IpAddr::from([127, 0, 0, 3]);
        let body = crate::support::http_with(Some(eyes), self.addr, "GET", "/metrics", &[]).body;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in the scrape"))
    }

    /// SIGTERM; the time until the process has exited.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let limit = Duration::from_secs(30);
        while started.elapsed() < limit {
            if self.child.try_wait().unwrap().is_some() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("still running {limit:?} after SIGTERM");
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host with `n` veths on bridges, like benches/load.sh memory's. Built
/// once per size in cargo's tmpdir for integration tests and shared, read
/// only, by the tests that need it: 10,000 interfaces are 60,000 files.
pub fn big_host(n: usize) -> SharedHost {
    static BUILT: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("host-{n}"));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&n) {
        return SharedHost(root);
    }
    // Rebuilt on each run: an older layout must not linger.
    let _ = std::fs::remove_dir_all(&root);
    let net = root.join("sys/class/net");
    for i in 0..n {
        let name = format!("veth{i:07x}");
        let dir = net.join(&name);
        std::fs::create_dir_all(dir.join("brport")).unwrap();
        let bridge = format!("br-{:012x}", i / 20);
        if i % 20 == 0 {
            std::fs::create_dir_all(net.join(&bridge).join("bridge")).unwrap();
        }
        std::os::unix::fs::symlink(format!("../{bridge}"), dir.join("master")).unwrap();
        for (f, v) in [
            ("ifindex", (i + 100).to_string()),
            ("iflink", (i + 50_000).to_string()),
            ("type", "1".into()),
            ("operstate", "up".into()),
        ] {
            std::fs::write(dir.join(f), format!("{v}\n")).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("proc/1/net")).unwrap();
    std::fs::write(root.join("proc/1/net/dev"), netdev_of(n)).unwrap();
    built.push(n);
    SharedHost(root)
}

/// A net/dev of `n` veths, `veth0000000` on, with counters that differ.
fn netdev_of(n: usize) -> String {
    let mut netdev =
        String::from("Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n");
    for i in 0..n {
        netdev.push_str(&format!(
            "{:>15}: {} {} 0 0 0 0 0 0 {} {} 0 0 0 0 0 0\n",
            format!("veth{i:07x}"),
            i * 1_000_003,
            i * 17,
            i * 999_983,
            i * 13
        ));
    }
    netdev
}

/// A number from `/proc/<pid>/status` (`key` with its colon: `VmHWM:`), while
/// the process lives.
fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(key))?;
    value.split_whitespace().next()?.parse().ok()
}

/// A generated host that tests share and do not change.
pub struct SharedHost(PathBuf);

impl SharedHost {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// The test opens ~1,100 sockets: raise its own soft descriptor limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

#[test]
fn a_fifo_as_netdev_fails_fast_everywhere() {
    let host = copy_fixture("seed-host");
    let netdev = host.path().join("proc/1/net/dev");
    mkfifo(&netdev);

    let started = Instant::now();
    let out = crate::support::run_once(&[
        &format!("--path.rootfs={}", host.path().display()),
        &format!("--path.procfs={}", host.path().join("proc").display()),
        "--docker.socket=",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&netdev.display().to_string()) && err.contains("FIFO"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--once returned at once"
    );

    let mut exporter = Exporter::start(host.path(), "", Stdio::null());
    // The scrape answers with the exporter's own metrics, the live view and
    // the readiness with the reason, the liveness as always.
    for (path, status) in [
        ("/metrics", 200),
        ("/", 503),
        ("/api/v1/interfaces", 503),
        ("/-/ready", 503),
        ("/-/healthy", 200),
    ] {
        let started = Instant::now();
        assert_eq!(http(exporter.addr, "GET", path).status, status, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} answered at once"
        );
    }
    assert!(exporter.metric("truenas_net_exporter_netdev_read_errors_total") >= 1.0);
    // Not ready: the container's check fails, and says why.
    let (passed, err) = crate::http::healthcheck(exporter.addr);
    assert!(!passed);
    assert!(err.contains("FIFO"), "{err}");
    let took = exporter.terminate();
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

/// `--once` writes its output as it makes it: on a net/dev of 200,000
/// interfaces (16 MB; ~250 MB of output) its memory when the first bytes
/// arrive is below the output's size, and writing the rest adds little.
/// Holding the output whole (as it once did) peaks above the output's size
/// before the first byte is written. (The first measure alone, at half the
/// output, was within 2% of what the label table of 200,000 interfaces
/// takes by itself.)
#[test]
fn once_streams_its_output() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("proc/1/net");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dev"), netdev_of(200_000)).unwrap();

    let mut child = Command::new(bin())
        .arg("--once")
        .arg(format!("--path.rootfs={}", root.path().display()))
        .arg(format!(
            "--path.procfs={}",
            root.path().join("proc").display()
        ))
        .arg("--docker.socket=")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut written, mut peak_kib, mut next_sample) = (0u64, 0u64, 0u64);
    let mut first_kib = None;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        written += n as u64;
        if written >= next_sample {
            if let Some(kib) = proc_status(child.id(), "VmHWM:") {
                peak_kib = peak_kib.max(kib);
                first_kib.get_or_insert(kib);
            }
            next_sample = written + (4 << 20);
        }
    }
    assert!(child.wait().unwrap().success());
    eprintln!(
        "--once: {} MB written, RSS at the first bytes {first_kib:?} KiB, peak {peak_kib} KiB",
        written / 1_000_000
    );
    assert!(written > 200_000_000, "{written} bytes written");
    let first_kib = first_kib.expect("the process was measured");
    assert!(
        first_kib * 1024 < written,
        "RSS {first_kib} KiB at the first bytes of {written} bytes of output"
    );
    assert!(
        (peak_kib - first_kib) * 1024 < written / 10,
        "writing {written} bytes took RSS from {first_kib} to {peak_kib} KiB"
    );
}

/// 1,000 clients that send half a request and 100 that ask for a
/// 10,000-interface scrape and never read, all from one host, while a normal
/// client on another host scrapes every 200 ms: every normal scrape succeeds
/// (the silent readers hold at most their host's share of the default 40
/// scrape permits, and its connections are the ones closed for room), memory
/// stays bounded, and the held connections are closed at the header and
/// write timeouts.
#[test]
fn slow_and_silent_clients_cannot_starve_a_scrape() {
    raise_fd_limit();
    let host = big_host(10_000);
    // Refused scrapes leave idle keep-alive connections: closed after 5 s.
    let config = "[web]\nread_header_timeout = \"3s\"\nwrite_timeout = \"4s\"\n\
                  idle_timeout = \"5s\"\nmax_connections = 256\n";
    let exporter = Exporter::start(host.path(), config, Stdio::null());
    let addr = exporter.addr;
    assert_eq!(http(addr, "GET", "/metrics").status, 200);
    let rss_before = exporter.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let (scrapes, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let normal = {
        let (stop, scrapes, failures) = (stop.clone(), scrapes.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ok = std::panic::catch_unwind(|| {
                    let other_host = std::net::IpAddr::from([127, 0, 0, 2]);
                    let r =
                        crate::support::http_with(Some(other_host), addr, "GET", "/metrics", &[]);
                    r.status == 200
                        && r.body
                            .contains("net_interface_info{interface=\"veth0000000\"")
                })
                .unwrap_or(false);
                scrapes.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let opened = Instant::now();
    let half_sent: Vec<TcpStream> = (0..1000)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").ok()?;
            Some(s)
        })
        .collect();
    let silent: Vec<TcpStream> = (0..100)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(
        (half_sent.len(), silent.len()),
        (1000, 100),
        "all connected"
    );

    // The held connections go at the header and write timeouts (3 s, 4 s
    // after their responses stall): wait for them, scraping meanwhile.
    let mut peak = 0;
    let mut open = f64::MAX;
    while opened.elapsed() < Duration::from_secs(8)
        || (open > 2.0 && opened.elapsed() < Duration::from_secs(40))
    {
        peak = peak.max(exporter.rss_kib());
        open = exporter.metric("truenas_net_exporter_http_connections");
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    normal.join().unwrap();

    // Closed by the server: reading hits the end (or a reset) instead of
    // waiting. What was read first: a refused scrape holds a whole 503.
    let closed = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut sink = vec![0u8; 1 << 20];
        let mut first = Vec::new();
        loop {
            match s.read(&mut sink) {
                Ok(0) => return (true, first),
                Ok(n) => {
                    if first.len() < 64 {
                        first.extend_from_slice(&sink[..n.min(64)]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (false, first),
                Err(_) => return (true, first),
            }
        }
    };
    let half_closed = half_sent.into_iter().map(closed).filter(|c| c.0).count();
    let silent: Vec<_> = silent.into_iter().map(closed).collect();
    let silent_closed = silent.iter().filter(|c| c.0).count();
    let silent_refused = silent
        .iter()
        .filter(|(_, first)| first.starts_with(b"HTTP/1.1 503"))
        .count();
    let connections = exporter.metric("truenas_net_exporter_http_connections");
    let header_hits =
        exporter.metric("truenas_net_exporter_limit_hits_total{limit=\"http_header_timeout\"}");
    let write_hits =
        exporter.metric("truenas_net_exporter_limit_hits_total{limit=\"http_write_timeout\"}");
    let evictions =
        exporter.metric("truenas_net_exporter_limit_hits_total{limit=\"http_connections\"}");
    eprintln!(
        "normal scrapes {} (failed {}); RSS {rss_before} KiB before, peak {peak} KiB; \
         {half_closed}/1000 half-sent closed; {silent_closed}/100 silent closed, {silent_refused} of them refused; \
         open now {connections}; \
         hits: header {header_hits}, write {write_hits}, connection cap {evictions}",
        scrapes.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );
    assert!(scrapes.load(Ordering::Relaxed) >= 20);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "a normal scrape failed"
    );
    assert_eq!(half_closed, 1000, "every half-sent request was closed");
    assert_eq!(silent_closed, 100, "every silent reader was closed");
    // Their host's share of the 40 scrape permits (20) was served, then cut at
    // the write timeout; the rest were refused at once and closed when idle.
    assert!(silent_refused <= 80, "{silent_refused} refused");
    assert!(connections <= 2.0, "{connections} connections still open");
    assert!(header_hits >= 1.0 && write_hits >= 1.0 && evictions >= 1.0);
    // The bound docs/configuration.md states (Limits): 30 MiB plus 1.5 MiB per stalled
    // 10,000-interface response; at most 100 of those here.
    assert!(peak < 30 * 1024 + 100 * 1536, "peak RSS {peak} KiB");
}

/// A sysfs file that is a FIFO: every refresh goes on without it (no thread
/// or descriptor is left behind), and SIGTERM ends the process at once.
#[test]
fn a_fifo_in_sysfs_costs_nothing_per_refresh() {
    let host = copy_fixture("seed-host");
    mkfifo(&host.path().join("sys/class/net/br0/operstate"));
    let mut exporter = Exporter::start(
        host.path(),
        "[topology]\ninterval = \"1s\"\n",
        Stdio::null(),
    );
    let body = wait_for(Duration::from_secs(10), || {
        let body = http(exporter.addr, "GET", "/metrics").body;
        body.contains("truenas_net_exporter_resolver_up{resolver=\"topology\"} 1")
            .then_some(body)
    })
    .expect("topology up");
    let br0 = parse(&body)
        .into_iter()
        .find(|s| s.name == "net_interface_rx_bytes_total" && s.label("interface") == Some("br0"))
        .unwrap();
    assert_eq!(br0.label("state"), Some("unknown"));
    let (threads, fds) = (exporter.threads(), exporter.fds());
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        exporter.threads() <= threads + 1,
        "threads {threads} -> {}",
        exporter.threads()
    );
    assert!(exporter.fds() <= fds + 1, "fds {fds} -> {}", exporter.fds());
    assert_eq!(
        exporter.metric("truenas_net_exporter_resolver_errors_total{resolver=\"topology\"}"),
        0.0
    );
    let took = exporter.terminate();
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

/// After SIGTERM the listener closes at once; a request in flight gets the
/// shutdown timeout, and a client that never finishes its request does not
/// keep the process alive.
#[test]
fn shutdown_has_a_deadline() {
    let host = big_host(2_000);
    let config = "[web]\nshutdown_timeout = \"2s\"\n";
    let mut exporter = Exporter::start(host.path(), config, Stdio::null());
    let addr = exporter.addr;
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let took = exporter.terminate();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM, deadline 2 s"
    );
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

/// A `midclt` whose output never ends, and one that leaves a child holding
/// its stdout: memory stays bounded, the resolver says so, no process is left.
#[test]
fn endless_and_lingering_tools_are_cut_off() {
    let host = copy_fixture("seed-host");
    // A sleep no other process runs: 600.<pid> seconds.
    let tag = format!("sleep 600.{}", std::process::id());
    let tools = tempfile::tempdir().unwrap();
    let endless = tools.path().join("endless-midclt");
    std::fs::write(
        &endless,
        "#!/bin/sh\nexec yes '[{\"id\": 1, \"name\": \"x\"},'\n",
    )
    .unwrap();
    let linger = tools.path().join("lingering-midclt");
    std::fs::write(&linger, format!("#!/bin/sh\n{tag} &\necho '[]'\n")).unwrap();
    for tool in [&endless, &linger] {
        Command::new("chmod").arg("+x").arg(tool).status().unwrap();
    }
    let toml = |tool: &PathBuf| {
        format!(
            "[vm]\nsources = [\"midclt\"]\ninterval = \"1s\"\n[lxc]\nenabled = false\n\
             [commands]\nchroot = false\nmax_output_bytes = 1048576\n[truenas]\nmidclt_command = [{:?}]\n",
            tool.display().to_string()
        )
    };

    let exporter = Exporter::start(host.path(), &toml(&endless), Stdio::null());
    wait_for(Duration::from_secs(15), || {
        (exporter.metric("truenas_net_exporter_limit_hits_total{limit=\"command_output\"}") >= 3.0)
            .then_some(())
    })
    .expect("the endless output is cut, refresh after refresh");
    assert_eq!(
        exporter.metric("truenas_net_exporter_resolver_up{resolver=\"vm\"}"),
        0.0
    );
    let peak = exporter.peak_kib();
    assert!(
        peak < 48 * 1024,
        "peak RSS {peak} KiB with 1 MiB of output allowed"
    );
    drop(exporter);
    let left = Command::new("pgrep")
        .args(["-f", "^yes \\[\\{"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "yes left running");

    let exporter = Exporter::start(host.path(), &toml(&linger), Stdio::null());
    wait_for(Duration::from_secs(15), || {
        (exporter.metric("truenas_net_exporter_resolver_up{resolver=\"vm\"}") == 1.0).then_some(())
    })
    .expect("the lingering tool's answer counts");
    std::thread::sleep(Duration::from_secs(2));
    let left = Command::new("pgrep")
        .args(["-c", "-f", &tag])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout)
        .trim()
        .parse::<u32>()
        .unwrap_or(0);
    assert_eq!(left, 0, "children of the tool outlived it");
}

/// A Docker engine whose answer to "list containers" never ends: the call
/// fails at the response cap, memory stays bounded, the resolver says so.
#[test]
fn an_endless_engine_answer_is_cut_off() {
    use std::os::unix::net::UnixListener;

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || fake_engine(conn));
        }
    });
    let host = copy_fixture("seed-host");
    let config = "[docker]\ninterval = \"1s\"\nmax_response_bytes = 1048576\n";
    let exporter =
        Exporter::start_with(host.path(), config, socket.to_str().unwrap(), Stdio::null());
    wait_for(Duration::from_secs(20), || {
        (exporter.metric("truenas_net_exporter_limit_hits_total{limit=\"docker_response\"}") >= 3.0)
            .then_some(())
    })
    .expect("each refresh is cut at the cap");
    assert_eq!(
        exporter.metric("truenas_net_exporter_resolver_up{resolver=\"docker\"}"),
        0.0
    );
    let peak = exporter.peak_kib();
    assert!(
        peak < 48 * 1024,
        "peak RSS {peak} KiB with 1 MiB answers allowed"
    );
}

/// Answers `/version` like a real engine and `/containers/json` without end.
fn fake_engine(conn: std::os::unix::net::UnixStream) {
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    while let Some(request) = crate::support::next_request(&mut reader) {
        if request.contains("/version") {
            let body = r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if out
                .write_all(head.as_bytes())
                .and_then(|()| out.write_all(body.as_bytes()))
                .is_err()
            {
                return;
            }
        } else if request.contains("/containers/json") {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            let item = r#"{"Id":"0123456789abcdef0123456789abcdef","Names":["/x"]},"#.repeat(100);
            let chunk = format!("{:x}\r\n[{item}\r\n", item.len() + 1);
            while out.write_all(chunk.as_bytes()).is_ok() {}
            return;
        } else {
            let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

/// With few file descriptors (here 48), idle keep-alive connections cannot
/// take them all: the connection cap is lowered to leave the exporter its own
/// files, and the longest-idle connection makes room for a scrape.
#[test]
fn idle_connections_cannot_use_up_the_descriptors() {
    if !crate::support::require(have("prlimit"), "prlimit not installed (util-linux)") {
        return;
    }
    let host = copy_fixture("seed-host");
    let mut prlimit = Command::new("prlimit");
    prlimit.args(["--nofile=48:48", "--"]).arg(bin());
    let exporter = Exporter::start_in(prlimit, host.path(), "", "", Stdio::null());
    let addr = exporter.addr;
    // Keep-alive clients that each made one request and then sit idle.
    let idle: Vec<TcpStream> = (0..80)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(idle.len(), 80, "all connected");
    for _ in 0..10 {
        let r = http(addr, "GET", "/metrics");
        assert_eq!(r.status, 200);
        assert!(
            r.body.contains("net_interface_rx_bytes_total{"),
            "net/dev was read: {}",
            r.body
        );
    }
    assert!(exporter.fds() < 48, "fds {}", exporter.fds());
    assert!(exporter.metric("truenas_net_exporter_http_connections") <= 12.0);
    assert!(
        exporter.metric("truenas_net_exporter_limit_hits_total{limit=\"http_connections\"}")
            >= 10.0
    );
    drop(idle);
}
