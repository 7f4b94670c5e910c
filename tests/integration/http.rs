//! The HTTP server, run in-process on 127.0.0.1:0 against fixture hosts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use truenas_net_exporter::Config;
use truenas_net_exporter::config::RawConfig;
use truenas_net_exporter::config::cli::Cli;

use crate::support::{copy_fixture, fixture, http, one, parse, wait_for};

/// An exporter serving in a background thread; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves a fixture host, Docker disabled.
    pub fn start(root: &Path, toml: &str) -> Server {
        let cli = Cli {
            rootfs: Some(root.to_owned()),
            procfs: Some(root.join("proc")),
            docker_socket: Some(String::new()),
            ..Cli::default()
        };
        Server::start_with(&cli, toml)
    }

    pub fn start_with(cli: &Cli, toml: &str) -> Server {
        let config = Config::build(
            RawConfig::from_toml(toml, Path::new("test.toml")).unwrap(),
            cli,
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                truenas_net_exporter::run(config, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server bound");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn metrics(&self) -> String {
        let r = http(self.addr, "GET", "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Waits until the topology resolver has published (a label only sysfs gives).
    pub fn wait_labelled(&self, interface: &str, bridge: &str) -> String {
        wait_for(Duration::from_secs(10), || {
            let body = self.metrics();
            let samples = parse(&body);
            let ok = samples.iter().any(|s| {
                s.name == "net_interface_rx_bytes_total"
                    && s.label("interface") == Some(interface)
                    && s.label("bridge") == Some(bridge)
            });
            ok.then_some(body)
        })
        .unwrap_or_else(|| panic!("{interface} never got bridge={bridge}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gauge(body: &str, name: &str, resolver: &str) -> f64 {
    parse(body)
        .into_iter()
        .find(|s| s.name == name && s.label("resolver") == Some(resolver))
        .unwrap_or_else(|| panic!("{name}{{resolver={resolver}}} missing"))
        .value
}

#[test]
fn routes_methods_and_content_types() {
    let server = Server::start(&fixture("seed-host"), "");
    let body = server.wait_labelled("vlan1", "br0");

    let r = http(server.addr, "GET", "/metrics");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(body.contains("truenas_net_exporter_build_info{version=\""));
    // client_golang's process metrics, with its types.
    for (family, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} {kind}\n")),
            "{family}"
        );
    }
    assert!(body.contains("truenas_net_exporter_scrape_duration_seconds_bucket{le="));
    let tasks = parse(&body)
        .into_iter()
        .find(|s| s.name == "truenas_net_exporter_runtime_tasks")
        .unwrap();
    assert!(tasks.value >= 1.0, "this connection at least");
    assert_eq!(
        gauge(&body, "truenas_net_exporter_resolver_up", "topology"),
        1.0
    );
    assert!(
        gauge(
            &body,
            "truenas_net_exporter_resolver_last_success_timestamp_seconds",
            "topology"
        ) > 1.7e9
    );

    let head = http(server.addr, "HEAD", "/metrics");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    let page = http(server.addr, "GET", "/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    // Relative, so the page also works behind a reverse proxy's path prefix.
    assert!(page.body.contains("href=\"./metrics\""), "{}", page.body);
    assert_eq!(http(server.addr, "GET", "/-/healthy").body, "OK\n");
    assert_eq!(http(server.addr, "GET", "/-/ready").body, "Ready\n");

    assert_eq!(http(server.addr, "GET", "/metricsx").status, 404);
    assert_eq!(http(server.addr, "GET", "/favicon.ico").status, 404);
    let post = http(server.addr, "POST", "/metrics");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(http(server.addr, "DELETE", "/").status, 405);
}

#[test]
fn healthcheck_passes_against_a_running_server() {
    let server = Server::start(&fixture("seed-host"), "");
    let out = std::process::Command::new(crate::support::bin())
        .args([
            "--healthcheck",
            &format!("--web.listen-address={}", server.addr),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn custom_telemetry_path() {
    let server = Server::start(
        &fixture("seed-host"),
        "[web]\ntelemetry_path = \"/x/net\"\n",
    );
    assert_eq!(http(server.addr, "GET", "/metrics").status, 404);
    let r = http(server.addr, "GET", "/x/net");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("net_interface_rx_bytes_total{"));
    assert!(
        http(server.addr, "GET", "/")
            .body
            .contains("href=\"./x/net\"")
    );
}

#[test]
fn unreadable_netdev_still_answers_with_own_metrics() {
    let host = copy_fixture("seed-host");
    std::fs::remove_file(host.path().join("proc/1/net/dev")).unwrap();
    let server = Server::start(host.path(), "");
    let body = server.metrics();
    assert!(!body.contains("net_interface_rx_bytes_total{"));
    let errors = parse(&body)
        .into_iter()
        .find(|s| s.name == "truenas_net_exporter_netdev_read_errors_total")
        .unwrap();
    assert!(errors.value >= 1.0);
}

#[test]
fn unknown_interface_is_exported_at_once_and_wakes_topology() {
    let host = copy_fixture("seed-host");
    // An hour-long interval: only the scrape's wake-up can refresh the topology.
    let server = Server::start(host.path(), "[topology]\ninterval = \"1h\"\n");
    server.wait_labelled("vlan1", "br0");

    // A veth is born on br0 after the last refresh.
    let net = host.path().join("sys/class/net/vethnew1");
    std::fs::create_dir_all(net.join("brport")).unwrap();
    for (f, v) in [
        ("ifindex", "60"),
        ("iflink", "61"),
        ("type", "1"),
        ("operstate", "up"),
    ] {
        std::fs::write(net.join(f), format!("{v}\n")).unwrap();
    }
    std::os::unix::fs::symlink("../br0", net.join("master")).unwrap();
    let netdev = host.path().join("proc/1/net/dev");
    let mut text = std::fs::read_to_string(&netdev).unwrap();
    text.push_str("vethnew1: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n");
    std::fs::write(&netdev, text).unwrap();

    let first = parse(&server.metrics());
    let s = one(&first, "net_interface_rx_bytes_total", "vethnew1");
    assert_eq!(s.label("instance_type"), Some("docker"), "from its name");
    // The scrape woke the topology resolver and waited a bounded time for it: on an idle
    // machine its sysfs facts are already in this answer, on a loaded one they may not be.
    let state = s.label("state");
    assert!(
        matches!(state, Some("up") | Some("unknown")),
        "state {state:?}"
    );
    assert_eq!(s.value, 10.0);

    // Either way they arrive without waiting the hour.
    server.wait_labelled("vethnew1", "br0");
}

#[test]
fn failing_topology_keeps_last_labels_and_recovers() {
    let host = copy_fixture("seed-host");
    let server = Server::start(host.path(), "[topology]\ninterval = \"1s\"\n");
    server.wait_labelled("vlan1", "br0");

    let class = host.path().join("sys/class/net");
    let hidden = host.path().join("sys/class/net.hidden");
    std::fs::rename(&class, &hidden).unwrap();
    let body = wait_for(Duration::from_secs(10), || {
        let body = server.metrics();
        (gauge(&body, "truenas_net_exporter_resolver_up", "topology") == 0.0).then_some(body)
    })
    .expect("resolver_up drops to 0");
    assert!(
        gauge(
            &body,
            "truenas_net_exporter_resolver_errors_total",
            "topology"
        ) >= 1.0
    );
    let samples = parse(&body);
    assert_eq!(
        one(&samples, "net_interface_rx_bytes_total", "vlan1").label("bridge"),
        Some("br0"),
        "labels kept"
    );

    std::fs::rename(&hidden, &class).unwrap();
    wait_for(Duration::from_secs(10), || {
        (gauge(
            &server.metrics(),
            "truenas_net_exporter_resolver_up",
            "topology",
        ) == 1.0)
            .then_some(())
    })
    .expect("resolver recovers");
}

#[test]
fn concurrent_scrapes_all_succeed() {
    let server = Server::start(&fixture("seed-host"), "");
    server.wait_labelled("vlan1", "br0");
    let addr = server.addr;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let r = http(addr, "GET", "/metrics");
                    assert_eq!(r.status, 200);
                    assert_eq!(
                        parse(&r.body)
                            .iter()
                            .filter(|s| s.name == "net_interface_info")
                            .count(),
                        21
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

/// `--healthcheck` against `addr`: whether it passed, and its stderr.
pub fn healthcheck(addr: SocketAddr) -> (bool, String) {
    let out = std::process::Command::new(crate::support::bin())
        .args(["--healthcheck", &format!("--web.listen-address={addr}")])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `/-/ready`, from the real binary: 503 with every reason (each naming its
/// path) while the host cannot be seen, at once, with `/-/healthy` still
/// 200; `--healthcheck` fails with the reason; once the host is there, 200
/// `Ready` without a restart, and the check passes.
#[test]
fn ready_says_why_until_the_host_can_be_seen() {
    use std::process::Stdio;
    use std::time::Instant;

    let host = copy_fixture("seed-host");
    let root = host.path();
    let netdev = root.join("proc/1/net/dev");
    let missing = root.join("missing-root");
    let args = [
        format!("--path.rootfs={}", missing.display()),
        format!("--path.procfs={}", root.join("proc").display()),
        "--docker.socket=".to_owned(),
    ];
    let saved = std::fs::read(&netdev).unwrap();
    std::fs::remove_file(&netdev).unwrap();
    let exporter = crate::limits::Exporter::start_args(
        std::process::Command::new(crate::support::bin()),
        &args,
        "",
        Stdio::null(),
    );
    let started = Instant::now();
    let r = http(exporter.addr, "GET", "/-/ready");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.body,
        format!(
            "not ready: cannot read {}: No such file or directory (os error 2); \
             no root filesystem at {} (--path.rootfs): No such file or directory (os error 2)\n",
            netdev.display(),
            missing.display()
        )
    );
    let head = http(exporter.addr, "HEAD", "/-/ready");
    assert_eq!((head.status, head.body.as_str()), (503, ""));
    assert_eq!(http(exporter.addr, "POST", "/-/ready").status, 405);
    assert_eq!(
        http(exporter.addr, "GET", "/-/healthy").status,
        200,
        "alive"
    );
    let (passed, err) = healthcheck(exporter.addr);
    assert!(!passed);
    assert!(
        err.contains("not healthy")
            && err.contains("503")
            && err.contains(&format!("cannot read {}", netdev.display())),
        "{err}"
    );
    // Probes are not scrapes: they count no read errors.
    assert_eq!(
        exporter.metric("truenas_net_exporter_netdev_read_errors_total"),
        1.0,
        "the metric's own scrape only"
    );

    // net/dev back: only the root filesystem is missing.
    std::fs::write(&netdev, &saved).unwrap();
    let r = http(exporter.addr, "GET", "/-/ready");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        format!(
            "not ready: no root filesystem at {} (--path.rootfs): No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    // A file where the root should be is no root either.
    std::fs::write(&missing, "").unwrap();
    let r = http(exporter.addr, "GET", "/-/ready");
    assert_eq!(r.status, 503);
    assert!(r.body.contains("is not a directory"), "{}", r.body);
    std::fs::remove_file(&missing).unwrap();
    std::fs::create_dir(&missing).unwrap();
    let r = http(exporter.addr, "GET", "/-/ready");
    assert_eq!((r.status, r.body.as_str()), (200, "Ready\n"));
    let (passed, err) = healthcheck(exporter.addr);
    assert!(passed, "{err}");

    // The seed host as it is: ready.
    let good = crate::limits::Exporter::start(&fixture("seed-host"), "", Stdio::null());
    let r = http(good.addr, "GET", "/-/ready");
    assert_eq!((r.status, r.body.as_str()), (200, "Ready\n"));
}
