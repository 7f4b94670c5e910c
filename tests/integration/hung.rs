//! A hung mount, as a hard NFS mount whose server went away: a FUSE file
//! system (`hangfs.py`) mirrors a directory and, on demand, stops answering,
//! so every lookup or read under it blocks in the kernel. The exporter runs
//! in a private mount namespace that holds the mount; whatever it reads
//! there (net/dev, the web config, the host's root with its sockets and
//! tools) must stall only what needs it, each within its deadline, and cost
//! a bounded number of threads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::limits::Exporter;
use crate::support::{bin, copy_fixture, have, http, is_root, require, wait_for};

/// The FUSE mirror of a directory, mounted for the exporter that
/// [`HungMount::exporter`] starts.
pub struct HungMount {
    dir: tempfile::TempDir,
}

impl HungMount {
    /// `None` (with a printed reason) where FUSE, root or the tools are missing.
    pub fn new() -> Option<HungMount> {
        let fusepy = Command::new("/usr/bin/python3")
            .args(["-c", "import fusepy"])
            .output()
            .is_ok_and(|o| o.status.success());
        let ok = require(is_root(), "hung-mount tests need root (FUSE, unshare)")
            && require(
                Path::new("/dev/fuse").exists(),
                "hung-mount tests need /dev/fuse",
            )
            && require(
                fusepy && have("unshare") && have("mountpoint"),
                "hung-mount tests need python3-fusepy and util-linux",
            );
        ok.then(|| HungMount {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// Where the mirror appears, in the exporter's mount namespace.
    pub fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn control(&self) -> PathBuf {
        self.dir.path().join("hang")
    }

    /// The exporter, in a mount namespace of its own where `source` is
    /// mirrored at [`HungMount::mountpoint`], with `args` and `toml`.
    pub fn exporter(&self, source: &Path, args: &[String], toml: &str) -> HungExporter {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/hangfs.py");
        let mnt = self.mountpoint();
        std::fs::create_dir_all(&mnt).unwrap();
        let mut wrapper = Command::new("unshare");
        wrapper
            .args(["-m", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "/usr/bin/python3 \"$HANGFS\" \"$SOURCE\" \"$MNT\" \"$CONTROL\" & \
                 echo $! > \"$PIDFILE\"; \
                 for _ in $(seq 200); do mountpoint -q \"$MNT\" && break; sleep 0.05; done; \
                 mountpoint -q \"$MNT\" || exit 1; exec \"$@\"",
            )
            .args(["sh", bin()])
            .env("HANGFS", script)
            .env("SOURCE", source)
            .env("MNT", &mnt)
            .env("CONTROL", self.control())
            .env("PIDFILE", self.dir.path().join("fuse.pid"));
        HungExporter {
            exporter: Some(Exporter::start_args(wrapper, args, toml, Stdio::null())),
            control: self.control(),
        }
    }

    /// From now on nothing under the mount answers.
    pub fn hang(&self) {
        std::fs::write(self.control(), "").unwrap();
    }

    pub fn release(&self) {
        let _ = std::fs::remove_file(self.control());
    }
}

impl Drop for HungMount {
    fn drop(&mut self) {
        self.release();
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("fuse.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

/// The exporter on the mount. Dropped, it releases the mount first: a
/// process whose threads wait on a hung FUSE request cannot finish exiting.
pub struct HungExporter {
    exporter: Option<Exporter>,
    control: PathBuf,
}

impl std::ops::Deref for HungExporter {
    type Target = Exporter;

    fn deref(&self) -> &Exporter {
        self.exporter.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for HungExporter {
    fn deref_mut(&mut self) -> &mut Exporter {
        self.exporter.as_mut().expect("present until dropped")
    }
}

impl Drop for HungExporter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.control);
        self.exporter.take();
    }
}

/// Every resolver off: what is left is the scrape's own read.
const SCRAPE_ONLY: &str = "[topology]\nenabled = false\n[vm]\nenabled = false\n\
                           [lxc]\nenabled = false\n[incus]\nenabled = false\n";

/// Scrapes `addr` from `n` threads at once; each one's status and time.
fn scrape_at_once(addr: SocketAddr, n: usize) -> Vec<(u16, Duration)> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                let status = http(addr, "GET", "/metrics").status;
                (status, started.elapsed())
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

/// net/dev on a hung mount (not procfs, so read on a blocking thread): twenty
/// scrapes at once each answer with the exporter's own metrics within the
/// read's timeout, and together they cost one stuck thread, not twenty.
#[test]
fn concurrent_scrapes_of_a_hung_netdev_cost_one_thread() {
    let Some(hung) = HungMount::new() else {
        return;
    };
    let host = copy_fixture("seed-host");
    let mnt = hung.mountpoint();
    let args = [
        format!("--path.rootfs={}", host.path().display()),
        format!("--path.procfs={}", mnt.join("proc").display()),
        "--docker.socket=".to_owned(),
    ];
    let toml = format!("{SCRAPE_ONLY}[netdev]\ntimeout = \"1s\"\n");
    let e = hung.exporter(host.path(), &args, &toml);
    for _ in 0..3 {
        assert_eq!(http(e.addr, "GET", "/metrics").status, 200);
    }
    let before = e.threads();
    hung.hang();
    let answers = scrape_at_once(e.addr, 20);
    let after = e.threads();
    let slowest = answers.iter().map(|a| a.1).max().unwrap();
    eprintln!("hung net/dev: threads {before} -> {after}; 20 scrapes at once, slowest {slowest:?}");
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    assert!(
        slowest < Duration::from_secs(3),
        "within the 1 s read timeout: {slowest:?}"
    );
    assert!(
        after <= before + 2,
        "threads {before} -> {after}: a thread per scrape"
    );
    // Counted per scrape; shown once the one-second render cache turns over.
    std::thread::sleep(Duration::from_millis(1100));
    let errors = e.metric("truenas_net_exporter_netdev_read_errors_total");
    assert!(errors >= 20.0, "{errors} read errors counted");
    hung.release();
    let back = wait_for(Duration::from_secs(10), || {
        let r = http(e.addr, "GET", "/metrics");
        r.body
            .contains("net_interface_rx_bytes_total{")
            .then_some(())
    });
    assert!(
        back.is_some(),
        "net/dev is read again once the mount answers"
    );
}

/// The web config on a hung mount: connections keep being accepted and
/// served with the config in force; looking at the file again waits on a
/// blocking thread, not on the accept loop.
#[test]
fn a_hung_web_config_does_not_stall_accepting() {
    let Some(hung) = HungMount::new() else {
        return;
    };
    let host = copy_fixture("seed-host");
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("web.yml"),
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    .unwrap();
    let args = [
        format!("--path.rootfs={}", host.path().display()),
        format!("--path.procfs={}", host.path().join("proc").display()),
        "--docker.socket=".to_owned(),
        format!(
            "--web.config.file={}",
            hung.mountpoint().join("web.yml").display()
        ),
    ];
    let e = hung.exporter(web.path(), &args, SCRAPE_ONLY);
    assert_eq!(
        http(e.addr, "GET", "/metrics").header("x-frame-options"),
        Some("deny")
    );
    hung.hang();
    // Past the once-a-second look, each new connection would look again.
    std::thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    for _ in 0..10 {
        let r = http(e.addr, "GET", "/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-frame-options"),
            Some("deny"),
            "the config in force"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    let took = started.elapsed();
    eprintln!("hung web config: 10 scrapes in {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let answers = scrape_at_once(e.addr, 10);
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    hung.release();
}

/// The host's root on a hung mount (sysfs, the Incus and Docker sockets,
/// the tools run in it): the resolvers that read it time out, each on its
/// own, naming what they are stuck on; the scan of /proc, which is not
/// under it, keeps refreshing, and scrapes keep answering.
#[test]
fn a_hung_root_stalls_only_the_resolvers_that_read_it() {
    let Some(hung) = HungMount::new() else {
        return;
    };
    let host = copy_fixture("seed-host");
    let mnt = hung.mountpoint();
    let args = [
        format!("--path.rootfs={}", mnt.display()),
        format!("--path.procfs={}", host.path().join("proc").display()),
        format!(
            "--docker.socket={}",
            mnt.join("var/run/docker.sock").display()
        ),
    ];
    let toml = String::from(
        "[topology]\ninterval = \"1s\"\ntimeout = \"2s\"\n\
         [docker]\ninterval = \"1s\"\ntimeout = \"2s\"\n\
         [incus]\ninterval = \"1s\"\ntimeout = \"2s\"\n\
         [lxc]\ninterval = \"1s\"\ntimeout = \"2s\"\n\
         [vm]\ninterval = \"1s\"\ntimeout = \"2s\"\nsources = [\"qemu\"]\n",
    );
    let e = hung.exporter(host.path(), &args, &toml);
    let lxc_success = || {
        e.metric("truenas_net_exporter_resolver_last_success_timestamp_seconds{resolver=\"lxc\"}")
    };
    wait_for(Duration::from_secs(10), || {
        (lxc_success() > 0.0).then_some(())
    })
    .expect("the lxc resolver refreshed");
    hung.hang();
    std::thread::sleep(Duration::from_secs(4));
    let during = lxc_success();
    std::thread::sleep(Duration::from_secs(3));
    let later = lxc_success();
    let up = |r: &str| {
        e.metric(&format!(
            "truenas_net_exporter_resolver_up{{resolver=\"{r}\"}}"
        ))
    };
    eprintln!(
        "hung root: lxc last success {during} -> {later}; up: topology {}, incus {}, docker {}, lxc {}",
        up("topology"),
        up("incus"),
        up("docker"),
        up("lxc")
    );
    assert!(later > during, "the /proc scan kept refreshing");
    assert_eq!(up("lxc"), 1.0);
    for stuck in ["topology", "incus", "docker"] {
        assert_eq!(up(stuck), 0.0, "{stuck} times out");
    }
    let answers = scrape_at_once(e.addr, 10);
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 200 && a.1 < Duration::from_secs(2)),
        "{answers:?}"
    );
    hung.release();
}

/// What a SIGTERM test leaves running, to be watched on the way out: the
/// exporter on a FUSE mirror of the seed host, its counting programs on a
/// test cgroup, a middleware socket that accepts and never answers, a VM
/// lookup stuck in a midclt that never ends, and a request half sent.
struct Busy {
    exporter: HungExporter,
    cgroup: crate::accounting::Cleanup,
    /// The stuck midclt's pid, once it runs.
    tool: PathBuf,
    _middleware: std::os::unix::net::UnixListener,
    _half_sent: std::net::TcpStream,
    _host: tempfile::TempDir,
}

impl Busy {
    fn start(hung: &HungMount) -> Option<Busy> {
        if !require(have("bpftool"), "bpftool not installed") {
            return None;
        }
        let cgroup = crate::accounting::test_cgroup("sigterm")?;
        let host = copy_fixture("seed-host");
        let sock = host.path().join("run/middleware/middlewared.sock");
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        // Connections are taken (by the kernel's backlog) and never answered.
        let middleware = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let tool = host.path().join("midclt.pid");
        let midclt = host.path().join("stuck-midclt");
        std::fs::write(
            &midclt,
            format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", tool.display()),
        )
        .unwrap();
        std::fs::set_permissions(&midclt, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mnt = hung.mountpoint();
        let args = [
            format!("--path.rootfs={}", host.path().display()),
            format!("--path.procfs={}", mnt.join("proc").display()),
            "--docker.socket=".to_owned(),
        ];
        let toml = format!(
            "[topology]\nenabled = false\n[lxc]\nenabled = false\n[incus]\nenabled = false\n\
             [vm]\nsources = [\"midclt\"]\ninterval = \"1s\"\ntimeout = \"60s\"\n\
             [truenas]\nmidclt_command = [\"{}\", \"call\"]\n\
             middleware_sockets = [\"/run/middleware/middlewared.sock\"]\n\
             [commands]\nchroot = false\ntimeout = \"60s\"\n\
             [accounting]\ncgroup = \"{}\"\n\
             [netdev]\ntimeout = \"1s\"\n[web]\nshutdown_timeout = \"2s\"\n",
            midclt.display(),
            cgroup.0[0].display()
        );
        let exporter = hung.exporter(host.path(), &args, &toml);
        assert_eq!(http(exporter.addr, "GET", "/metrics").status, 200);
        let linked = wait_for(Duration::from_secs(10), || {
            // The counter, or with [peers] the programs that count both.
            let listing = crate::accounting::attached(&cgroup.0[0]);
            (listing.contains("tne_rx") || listing.contains("tne_peer_rx")).then_some(())
        });
        assert!(linked.is_some(), "the counting programs are linked");
        // The socket's handshake times out after 5 s; then midclt runs.
        let started = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&tool)
                .ok()
                .filter(|p| !p.is_empty())
        });
        assert!(started.is_some(), "the stuck midclt runs");
        let mut half_sent = std::net::TcpStream::connect(exporter.addr).unwrap();
        std::io::Write::write_all(&mut half_sent, b"GET /metrics HTTP/1.1\r\nHo").unwrap();
        Some(Busy {
            exporter,
            cgroup,
            tool,
            _middleware: middleware,
            _half_sent: half_sent,
            _host: host,
        })
    }

    fn tool_pid(&self) -> String {
        std::fs::read_to_string(&self.tool)
            .unwrap()
            .trim()
            .to_owned()
    }

    fn send_sigterm(&self) {
        let pid = self.exporter.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits, up to `bound`, until the listener is closed, no program is on
    /// the cgroup and the stuck midclt is gone (killed and reaped: a
    /// zombie keeps its /proc entry). Says what is still left.
    fn wait_until_stopped(&self, bound: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let tool = format!("/proc/{}", self.tool_pid());
        loop {
            let listening = std::net::TcpStream::connect(self.exporter.addr).is_ok();
            let linked = crate::accounting::attached(&self.cgroup.0[0]).contains("tne_");
            let tool_left = Path::new(&tool).exists();
            if !listening && !linked && !tool_left {
                return Ok(started.elapsed());
            }
            if started.elapsed() > bound {
                return Err(format!(
                    "after {bound:?}: listening {listening}, programs linked {linked}, midclt left {tool_left}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGTERM reaches every task: with net/dev hung in the kernel, a request
/// half sent, a middleware socket that never answers and a midclt that
/// never ends, within the shutdown timeout (2 s, twice: connections, then
/// the other tasks) the listener is closed, the counting programs are off
/// the cgroup and the tool is killed and reaped. The thread stuck on the
/// mount keeps the process until the mount answers; then it exits.
#[test]
fn sigterm_reaches_every_task() {
    let Some(hung) = HungMount::new() else {
        return;
    };
    let Some(mut busy) = Busy::start(&hung) else {
        return;
    };
    hung.hang();
    // A scrape that meets the hung read: it answers after the read's 1 s.
    let addr = busy.exporter.addr;
    let scrape = std::thread::spawn(move || http(addr, "GET", "/metrics").status);
    std::thread::sleep(Duration::from_millis(300));
    busy.send_sigterm();
    let stopped = busy.wait_until_stopped(Duration::from_secs(6));
    let exited = busy.exporter.child.try_wait().unwrap();
    eprintln!("SIGTERM with a hung mount: stopped after {stopped:?}; exited: {exited:?}");
    stopped.unwrap();
    let _ = scrape.join();
    hung.release();
    let exited = wait_for(Duration::from_secs(10), || {
        busy.exporter.child.try_wait().unwrap()
    });
    assert!(exited.is_some(), "exits once the mount answers");
}

/// The same without the hung mount: the process itself is gone within the
/// bound.
#[test]
fn sigterm_ends_the_process_within_the_bound() {
    let Some(hung) = HungMount::new() else {
        return;
    };
    let Some(mut busy) = Busy::start(&hung) else {
        return;
    };
    let started = Instant::now();
    busy.send_sigterm();
    let stopped = busy.wait_until_stopped(Duration::from_secs(6));
    stopped.unwrap();
    let exited = wait_for(Duration::from_secs(6), || {
        busy.exporter.child.try_wait().unwrap()
    });
    let took = started.elapsed();
    eprintln!("SIGTERM: exited after {took:?}");
    assert!(exited.is_some(), "still running {took:?} after SIGTERM");
}
