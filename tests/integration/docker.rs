//! Layer 4: a real Docker engine (Debian's docker.io, started by `.ci/run`).
//! Images are built locally with `docker import` from a busybox-static root,
//! since nothing can be pulled. Every name carries the test process's pid so
//! parallel tests and earlier runs never collide.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use truenas_net_exporter::config::cli::Cli;

use crate::http::Server;
use crate::support::{have, http, is_root, one, parse, require, strict, wait_for};

/// Docker tests share one engine; the daemon-restart test takes it alone.
pub static ENGINE: RwLock<()> = RwLock::new(());

pub fn shared_engine() -> RwLockReadGuard<'static, ()> {
    ENGINE.read().unwrap_or_else(|p| p.into_inner())
}

pub const IMAGE: &str = "tne-busybox:test";

/// The engine's socket: `DOCKER_HOST` where it names one (`.ci/run` starts
/// an engine of its own there), else Docker's default.
pub fn socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned())
}

/// The host bridge of the engine's default network (`docker0` unless the
/// engine was started with a bridge of its own).
pub fn default_bridge() -> String {
    let name = docker(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
    ]);
    if name.is_empty() {
        "docker0".to_owned()
    } else {
        name
    }
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The gateway address of Docker network `net` (its bridge's host address).
pub fn gateway(net: &str) -> String {
    docker(&[
        "network",
        "inspect",
        net,
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ])
}

/// `true` when an engine answers and the test image exists (built on demand).
pub fn engine() -> bool {
    // Not while the restart test has the engine down.
    let _engine = shared_engine();
    let up = have("docker")
        && Command::new("docker")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !require(
        is_root(),
        "Docker tests need root (they read /proc/<pid>/root)",
    ) || !require(up, &format!("no Docker engine answers on {}", socket()))
    {
        return false;
    }
    let present = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        if !require(
            std::path::Path::new("/bin/busybox").exists(),
            "busybox-static not installed",
        ) {
            return false;
        }
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "cat", "ls"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let cmd = format!(
            "tar -C {} -c . | docker import - {IMAGE}",
            root.path().display()
        );
        let ok = Command::new("sh")
            .args(["-c", &cmd])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "docker import of the busybox image");
    }
    true
}

/// Removes what a test created, even when it fails.
#[derive(Default)]
pub struct Cleanup {
    pub containers: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    pub fn run(&mut self, name: &str, args: &[&str]) {
        self.containers.push(name.to_owned());
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        docker(&all);
    }

    pub fn network(&mut self, name: &str, args: &[&str]) -> String {
        self.networks.push(name.to_owned());
        let mut all = vec!["network", "create"];
        all.extend_from_slice(args);
        all.push(name);
        docker(&all)
    }
    /// A one-container TrueNAS app as Apps deploys it: Compose project
    /// `ix-<app>`, its container `ix-<app>-web-1` on network
    /// `ix-<app>_default`, which is returned.
    pub fn app(&mut self, app: &str) -> String {
        let net = format!("ix-{app}_default");
        self.network(&net, &[]);
        self.run(
            &format!("ix-{app}-web-1"),
            &[
                "--label",
                &format!("com.docker.compose.project=ix-{app}"),
                "--network",
                &net,
                IMAGE,
                "sleep",
                "3600",
            ],
        );
        net
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        for n in &self.networks {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
    }
}

/// Host interface name by ifindex, from the host's sysfs.
fn host_names() -> HashMap<u32, String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let index = std::fs::read_to_string(e.path().join("ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((index, e.file_name().to_string_lossy().into_owned()))
        })
        .collect()
}

/// The host veths of a container: the `iflink` of each of its interfaces.
fn veths_of(container: &str) -> Vec<String> {
    let names = host_names();
    let links = docker(&[
        "exec",
        container,
        "sh",
        "-c",
        "cat /sys/class/net/eth*/iflink",
    ]);
    links
        .lines()
        .map(|l| names[&l.trim().parse::<u32>().unwrap()].clone())
        .collect()
}

fn server() -> Server {
    server_on(
        &socket(),
        "[docker]\ninterval = \"1h\"\n[topology]\ninterval = \"1h\"\n",
    )
}

pub fn server_on(socket: &str, toml: &str) -> Server {
    let cli = Cli {
        docker_socket: Some(socket.into()),
        ..Cli::default()
    };
    Server::start_with(&cli, toml)
}

fn docker_up(body: &str) -> Option<f64> {
    parse(body)
        .into_iter()
        .find(|s| {
            s.name == "truenas_net_exporter_resolver_up" && s.label("resolver") == Some("docker")
        })
        .map(|s| s.value)
}

fn labels_of(body: &str, interface: &str) -> Option<HashMap<String, String>> {
    let samples = parse(body);
    let s = samples.iter().find(|s| {
        s.name == "net_interface_rx_bytes_total" && s.label("interface") == Some(interface)
    })?;
    Some(s.labels.iter().cloned().collect())
}

#[test]
fn containers_and_networks_get_their_labels() {
    if !engine() {
        return;
    }
    let _engine = shared_engine();
    let n = std::process::id();
    let app = format!("tne{n}");
    let mut c = Cleanup::default();
    let default_net = format!("ix-{app}_default");
    let internal_net = format!("ix-{app}_ix-internal-{app}-db");
    let custom_net = format!("tnecustom{n}_net");
    let custom_bridge = format!("tnbr{n}");
    let default_id = c.network(&default_net, &[]);
    let internal_id = c.network(&internal_net, &[]);
    c.network(
        &custom_net,
        &[
            "-o",
            &format!("com.docker.network.bridge.name={custom_bridge}"),
        ],
    );

    let project = format!("com.docker.compose.project=ix-{app}");
    let web = format!("ix-{app}-web-1");
    c.run(
        &web,
        &[
            "--label",
            &project,
            "--network",
            &default_net,
            IMAGE,
            "sleep",
            "3600",
        ],
    );
    docker(&["network", "connect", &internal_net, &web]);
    let sidecar = format!("ix-{app}-sidecar-1");
    c.run(
        &sidecar,
        &[
            "--label",
            &project,
            "--network",
            &format!("container:{web}"),
            IMAGE,
            "sleep",
            "3600",
        ],
    );
    let hostnet = format!("tnehost{n}");
    c.run(&hostnet, &["--network", "host", IMAGE, "sleep", "3600"]);
    let plain = format!("tneplain{n}");
    c.run(&plain, &["--network", &custom_net, IMAGE, "sleep", "3600"]);
    let hostile = format!("tnehostile{n}");
    let hostile_project = "ix-we\"ird\\ app\nline-ü";
    c.run(
        &hostile,
        &[
            "--label",
            &format!("com.docker.compose.project={hostile_project}"),
            IMAGE,
            "sleep",
            "3600",
        ],
    );

    let web_veths = veths_of(&web);
    assert_eq!(web_veths.len(), 2, "web is on two networks");
    let plain_veth = veths_of(&plain).remove(0);
    let hostile_veth = veths_of(&hostile).remove(0);
    let default_bridge = format!("br-{}", &default_id[..12]);
    let internal_bridge = format!("br-{}", &internal_id[..12]);

    let server = server();
    let body = wait_for(Duration::from_secs(20), || {
        let body = server.metrics();
        let done = [&web_veths[0], &web_veths[1], &plain_veth, &hostile_veth]
            .iter()
            .all(|v| {
                labels_of(&body, v)
                    .is_some_and(|l| l["instance_type"] == "docker" && l["instance"] != **v)
            });
        done.then_some(body)
    })
    .expect("every container veth labelled");

    for veth in &web_veths {
        let l = labels_of(&body, veth).unwrap();
        assert_eq!(
            l["instance"], web,
            "{veth}: the sidecar shares web's namespace; web owns it"
        );
        assert_eq!(l["app"], app);
        assert!(
            l["bridge"] == default_bridge || l["bridge"] == internal_bridge,
            "{l:?}"
        );
    }
    let l = labels_of(&body, &plain_veth).unwrap();
    assert_eq!(
        (
            l["instance"].as_str(),
            l["app"].as_str(),
            l["bridge"].as_str()
        ),
        (plain.as_str(), "", custom_bridge.as_str())
    );
    let l = labels_of(&body, &hostile_veth).unwrap();
    assert_eq!(
        l["app"], "we\"ird\\ app\nline-ü",
        "escaped on the wire, intact after parsing"
    );
    let docker0 = self::default_bridge();
    assert_eq!(l["bridge"], docker0);

    for (bridge, net, app_label) in [
        (&default_bridge, &default_net, app.as_str()),
        (&internal_bridge, &internal_net, app.as_str()),
        (&custom_bridge, &custom_net, ""),
    ] {
        let l = labels_of(&body, bridge).unwrap_or_else(|| panic!("{bridge} exported"));
        assert_eq!(
            (
                l["instance"].as_str(),
                l["instance_type"].as_str(),
                l["app"].as_str()
            ),
            (net.as_str(), "bridge", app_label)
        );
    }
    let l = labels_of(&body, &docker0).unwrap();
    assert_eq!(
        (l["instance"].as_str(), l["app"].as_str()),
        (docker0.as_str(), ""),
        "the default network's bridge keeps its own name"
    );

    // No interface is labelled with the host-network container or the
    // sidecar (where the kernel counts per cgroup, each has workload
    // series of its own, at 0 if it sent nothing).
    let samples = parse(&body);
    let interface_of = |name: &str| {
        samples
            .iter()
            .any(|s| s.name.starts_with("net_interface_") && s.label("instance") == Some(name))
    };
    assert!(!interface_of(&hostnet));
    assert!(!interface_of(&sidecar));
    assert_eq!(
        one(&samples, "net_interface_info", &web_veths[0]).label("instance"),
        Some(web.as_str())
    );
    crate::fixture_host::promtool_check(&body);
}

#[test]
fn a_new_container_is_labelled_through_events() {
    if !engine() {
        return;
    }
    let _engine = shared_engine();
    let n = std::process::id();
    let mut c = Cleanup::default();
    let net = format!("ix-tneev{n}_default");
    c.network(&net, &[]);
    // Both intervals are an hour: only engine events can bring the new labels.
    let server = server();
    wait_for(Duration::from_secs(10), || {
        let body = server.metrics();
        body.contains("truenas_net_exporter_resolver_up{resolver=\"docker\"} 1")
            .then_some(())
    })
    .expect("docker resolver up");

    let name = format!("ix-tneev{n}-app-1");
    c.run(
        &name,
        &[
            "--label",
            &format!("com.docker.compose.project=ix-tneev{n}"),
            "--network",
            &net,
            IMAGE,
            "sleep",
            "3600",
        ],
    );
    let veth = veths_of(&name).remove(0);
    // No scrape meanwhile: a scrape that meets the unknown veth would wake the
    // resolvers itself. Only the engine's events can have labelled it by now.
    std::thread::sleep(Duration::from_secs(3));
    let labels = labels_of(&server.metrics(), &veth).expect("the new veth is exported");
    assert_eq!(
        (labels["instance"].as_str(), labels["app"].as_str()),
        (name.as_str(), format!("tneev{n}").as_str()),
        "labelled by events before any scrape saw it"
    );
}

/// Host links a test made, deleted however it ends.
struct Links(Vec<String>);

impl Drop for Links {
    fn drop(&mut self) {
        for link in &self.0 {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A container on a macvlan network whose parent is the host's uplink (a
/// bridge with a port towards the LAN, as many TrueNAS hosts have it): the
/// container's interface names the uplink's ifindex in its `iflink`, as a
/// veth's end names its host end's; the uplink stays the host's. (ipvlan
/// looks the same from the container; this kernel has no ipvlan, so
/// fixture_host.rs has that case.)
#[test]
fn a_macvlan_parent_is_never_a_containers() {
    if !engine() || !require(have("ip"), "iproute2 not installed") {
        return;
    }
    let _engine = shared_engine();
    let n = std::process::id();
    let uplink = format!("tneup{n}");
    let (port, lan) = (format!("tnep{n}"), format!("tnel{n}"));
    let _links = Links(vec![uplink.clone(), port.clone()]);
    ip(&["link", "add", &uplink, "type", "bridge"]);
    ip(&["link", "add", &port, "type", "veth", "peer", "name", &lan]);
    ip(&["link", "set", &port, "master", &uplink]);
    for link in [&uplink, &port, &lan] {
        ip(&["link", "set", link, "up"]);
    }
    let mut c = Cleanup::default();
    let macvlan = format!("tnemv{n}");
    c.network(
        &macvlan,
        &["-d", "macvlan", "-o", &format!("parent={uplink}")],
    );
    let lanapp = format!("ix-tnemv{n}-web-1");
    c.run(
        &lanapp,
        &[
            "--label",
            &format!("com.docker.compose.project=ix-tnemv{n}"),
            "--network",
            &macvlan,
            IMAGE,
            "sleep",
            "3600",
        ],
    );
    let bridged = c.app(&format!("tnemb{n}"));
    let _ = bridged;
    let bridged_veth = veths_of(&format!("ix-tnemb{n}-web-1")).remove(0);
    let server = server();
    let body = wait_for(Duration::from_secs(15), || {
        let body = server.metrics();
        labels_of(&body, &bridged_veth)
            .is_some_and(|l| l["instance"] == format!("ix-tnemb{n}-web-1"))
            .then_some(body)
    })
    .expect("the bridged app's veth is labelled");
    let l = labels_of(&body, &uplink).expect("the uplink is exported");
    assert_eq!(
        (
            l["instance"].as_str(),
            l["instance_type"].as_str(),
            l["app"].as_str()
        ),
        (uplink.as_str(), "bridge", ""),
        "the uplink keeps its own name and kind"
    );
    assert!(
        !parse(&body)
            .iter()
            .any(|s| s.name.starts_with("net_interface_")
                && s.label("instance") == Some(lanapp.as_str())),
        "no host interface is the macvlan container's"
    );
}

/// The HAProxy file of docs/security.md in front of the engine: the exporter labels a
/// container through it, and what the exporter never asks is refused.
#[test]
fn the_documented_read_only_proxy_is_enough_and_refuses_the_rest() {
    if !engine()
        || !require(
            have("haproxy") && have("curl"),
            "haproxy and curl not installed",
        )
    {
        return;
    }
    let _engine = shared_engine();
    let security = crate::support::doc("docs/security.md");
    let block = security
        .split("```haproxy\n")
        .nth(1)
        .expect("docs/security.md has the proxy's file");
    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("docker-ro.sock");
    let config = block[..block.find("```").unwrap()]
        .replace("/run/docker-ro.sock", proxy.to_str().unwrap())
        .replace("/var/run/docker.sock", &socket());
    std::fs::write(dir.path().join("haproxy.cfg"), config).unwrap();
    struct Proxy(std::process::Child);
    impl Drop for Proxy {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _proxy = Proxy(
        Command::new("haproxy")
            .arg("-f")
            .arg(dir.path().join("haproxy.cfg"))
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(10), || proxy.exists().then_some(())).expect("haproxy listens");
    let n = std::process::id();
    let mut c = Cleanup::default();
    c.app(&format!("tnepx{n}"));
    let name = format!("ix-tnepx{n}-web-1");
    let veth = veths_of(&name).remove(0);
    let server = server_on(proxy.to_str().unwrap(), "[docker]\ninterval = \"1s\"\n");
    wait_for(Duration::from_secs(15), || {
        labels_of(&server.metrics(), &veth).filter(|l| l["instance"] == name)
    })
    .expect("labelled through the proxy");
    let status = |method: &str, path: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
                "--unix-socket",
            ])
            .arg(&proxy)
            .arg(format!("http://docker{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status("GET", "/_ping"), "200");
    assert_eq!(status("POST", "/containers/create"), "403");
    assert_eq!(status("GET", "/images/json"), "403");
    assert_eq!(status("DELETE", &format!("/containers/{name}")), "403");
}

/// A container renamed to its own host veth's name is still a container:
/// owners are decided from what claimed the interface, not read back from
/// its labels (where owner label and interface name are then equal).
#[test]
fn a_container_named_like_its_veth_is_still_a_container() {
    if !engine() {
        return;
    }
    let _engine = shared_engine();
    let n = std::process::id();
    let mut c = Cleanup::default();
    let net = format!("tnern{n}_net");
    c.network(&net, &[]);
    let name = format!("tnern{n}");
    c.run(&name, &["--network", &net, IMAGE, "sleep", "3600"]);
    let veth = veths_of(&name).remove(0);
    docker(&["rename", &name, &veth]);
    c.containers.push(veth.clone());
    let server = server();
    // Until Docker's answer is in, the veth is the host's, and its owner
    // label is its own name too: only the owner's kind tells them apart.
    let mut last = serde_json::Value::Null;
    let entry = wait_for(Duration::from_secs(15), || {
        let api = http(server.addr, "GET", "/api/v1/interfaces");
        let doc: serde_json::Value = serde_json::from_str(&api.body).ok()?;
        let entry = doc["interfaces"]
            .as_array()?
            .iter()
            .find(|i| i["interface"] == veth.as_str() && i["bridge"] != "")
            .cloned()?;
        last = entry.clone();
        (entry["owner"]["kind"] == "container").then_some(entry)
    })
    .unwrap_or_else(|| panic!("the renamed container's veth is the container's: {last}"));
    assert_eq!(entry["owner"]["name"], veth.as_str());
    assert_eq!(entry["instance_type"], "docker");
    let page = http(server.addr, "GET", "/").body;
    assert!(
        page.contains(&format!(
            "<tbody class=\"owner\" data-kind=\"container\" data-name=\"{veth}\""
        )),
        "the page groups it under the container"
    );
}

#[test]
fn socket_absent_at_start_then_found() {
    if !engine() {
        return;
    }
    let _engine = shared_engine();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let server = server_on(socket.to_str().unwrap(), "[docker]\ninterval = \"1s\"\n");
    // No socket yet: no Docker on this host, which is not a failure, and
    // the socket has no source_up until it is found.
    let socket_up = "truenas_net_exporter_source_up{resolver=\"docker\",source=\"socket\"}";
    let body = wait_for(Duration::from_secs(10), || {
        let body = server.metrics();
        let refreshed = parse(&body).iter().any(|s| {
            s.name == "truenas_net_exporter_resolver_last_success_timestamp_seconds"
                && s.label("resolver") == Some("docker")
                && s.value > 0.0
        });
        refreshed.then_some(body)
    })
    .expect("docker resolver refreshed without the socket");
    assert_eq!(
        docker_up(&body),
        Some(1.0),
        "nothing of its kind is not a failure"
    );
    assert!(!body.contains(socket_up), "no series for an absent socket");
    assert!(
        body.contains("net_interface_rx_bytes_total{"),
        "scrapes go on without Docker"
    );

    std::os::unix::fs::symlink(self::socket(), &socket).unwrap();
    wait_for(Duration::from_secs(10), || {
        let body = server.metrics();
        (docker_up(&body) == Some(1.0) && body.contains(&format!("{socket_up} 1"))).then_some(())
    })
    .expect("found once the socket exists");
}

/// A daemon that accepts connections and never answers: every call must time
/// out, the resolver report it, and scrapes carry on.
#[test]
fn hung_daemon_times_out_without_stalling_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let server = server_on(
        socket.to_str().unwrap(),
        "[docker]\ninterval = \"1s\"\ntimeout = \"1s\"\n",
    );
    let body = wait_for(Duration::from_secs(15), || {
        let body = server.metrics();
        let errors = parse(&body)
            .into_iter()
            .find(|s| {
                s.name == "truenas_net_exporter_resolver_errors_total"
                    && s.label("resolver") == Some("docker")
            })
            .map_or(0.0, |s| s.value);
        (errors >= 2.0).then_some(body)
    })
    .expect("refreshes time out and are counted");
    assert_eq!(docker_up(&body), Some(0.0));
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(http(server.addr, "GET", "/metrics").status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a scrape never waits on Docker"
        );
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the exporter did reach the hung socket"
    );
}

/// Stops and restarts the real dockerd (with `--live-restore`, containers keep
/// running) while a client scrapes without pause.
#[test]
fn daemon_restart_loses_no_scrape_and_keeps_labels() {
    if !engine() {
        return;
    }
    let Some((pid, cmdline)) = restartable_engine() else {
        return;
    };
    let _engine = ENGINE.write().unwrap_or_else(|p| p.into_inner());
    let n = std::process::id();
    let mut c = Cleanup::default();
    let net = format!("ix-tnert{n}_default");
    c.network(&net, &[]);
    let name = format!("ix-tnert{n}-app-1");
    c.run(
        &name,
        &[
            "--label",
            &format!("com.docker.compose.project=ix-tnert{n}"),
            "--network",
            &net,
            IMAGE,
            "sleep",
            "3600",
        ],
    );
    let veth = veths_of(&name).remove(0);

    let server = server_on(&socket(), "[docker]\ninterval = \"1s\"\ntimeout = \"2s\"\n");
    wait_for(Duration::from_secs(10), || {
        labels_of(&server.metrics(), &veth).filter(|l| l["instance"] == name)
    })
    .expect("labelled before the restart");

    let stop = Arc::new(AtomicBool::new(false));
    let (scrapes, failures, unlabelled) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let saw_down = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (stop, scrapes, failures, unlabelled, saw_down) = (
            stop.clone(),
            scrapes.clone(),
            failures.clone(),
            unlabelled.clone(),
            saw_down.clone(),
        );
        let (addr, veth, name) = (server.addr, veth.clone(), name.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = http(addr, "GET", "/metrics");
                scrapes.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if labels_of(&r.body, &veth).is_none_or(|l| l["instance"] != name) {
                    unlabelled.fetch_add(1, Ordering::Relaxed);
                }
                if docker_up(&r.body) == Some(0.0) {
                    saw_down.store(true, Ordering::Relaxed);
                }
            }
        })
    };

    let restarted = restart_engine(pid, &cmdline, || {
        wait_for(Duration::from_secs(10), || {
            saw_down.load(Ordering::Relaxed).then_some(())
        })
        .expect("resolver_up went to 0");
    });
    let engine_back = restarted.elapsed();
    wait_for(Duration::from_secs(20), || {
        (docker_up(&server.metrics()) == Some(1.0)).then_some(())
    })
    .expect("resolver recovers by itself");
    eprintln!(
        "dockerd restart: engine answered after {engine_back:?}, resolver up after {:?}",
        restarted.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    scraper.join().unwrap();
    let total = scrapes.load(Ordering::Relaxed);
    eprintln!("{total} scrapes during the restart");
    assert!(total > 10);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed scrapes");
    assert_eq!(
        unlabelled.load(Ordering::Relaxed),
        0,
        "scrapes that lost the container's labels"
    );
}

/// Stops the engine (`pid`, started as `cmdline`), runs `while_down`, and
/// starts it again as it was; returns when it was started again, once it
/// answers.
fn restart_engine(pid: u32, cmdline: &[String], while_down: impl FnOnce()) -> Instant {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    wait_for(Duration::from_secs(30), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .expect("dockerd stopped");
    while_down();
    let log = std::fs::File::create("/tmp/tne-dockerd-restart.log").unwrap();
    // --fork: the daemon is not our child, and outlives this test process.
    let started = Command::new("setsid")
        .arg("--fork")
        .args(cmdline)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(started.success());
    let restarted = Instant::now();
    wait_for(Duration::from_secs(60), || {
        Command::new("docker")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
            .then_some(())
    })
    .expect("dockerd back");
    restarted
}

/// The engine to restart: its pid and command line, or `None` (with a
/// printed reason) where a restart is not for this test to do.
fn restartable_engine() -> Option<(u32, Vec<String>)> {
    let opted_in = strict() || std::env::var("TNE_DOCKER_RESTART").is_ok_and(|v| v == "1");
    if !require(
        opted_in,
        "restarting dockerd is opt-in outside CI: set TNE_DOCKER_RESTART=1",
    ) {
        return None;
    }
    let pid = docker_pid();
    let cmdline: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    require(
        cmdline.iter().any(|a| a == "--live-restore"),
        "dockerd must run with --live-restore",
    )
    .then_some((pid, cmdline))
}

/// The engine restarts and a container starts the moment it answers: the
/// events that follow the restart label it, long before the hour-long
/// intervals would, with no scrape to wake anything.
#[test]
fn a_container_started_right_after_an_engine_restart_is_labelled() {
    if !engine() {
        return;
    }
    let Some((pid, cmdline)) = restartable_engine() else {
        return;
    };
    let _engine = ENGINE.write().unwrap_or_else(|p| p.into_inner());
    let n = std::process::id();
    let mut c = Cleanup::default();
    let net = format!("ix-tnerr{n}_default");
    c.network(&net, &[]);
    let server = server();
    wait_for(Duration::from_secs(10), || {
        (docker_up(&server.metrics()) == Some(1.0)).then_some(())
    })
    .expect("docker resolver up");
    restart_engine(pid, &cmdline, || {});
    let name = format!("ix-tnerr{n}-app-1");
    c.run(
        &name,
        &[
            "--label",
            &format!("com.docker.compose.project=ix-tnerr{n}"),
            "--network",
            &net,
            IMAGE,
            "sleep",
            "3600",
        ],
    );
    let veth = veths_of(&name).remove(0);
    // No scrape meanwhile (one that met the unknown veth would wake the
    // resolvers itself): only following the events again can label it.
    std::thread::sleep(Duration::from_secs(6));
    let labels = labels_of(&server.metrics(), &veth).expect("the new veth is exported");
    assert_eq!(
        labels["instance"], name,
        "labelled through the events after the restart"
    );
}

/// The dockerd that serves [`socket`]: the one naming it in its `--host`
/// (or `-H`), or, for the default socket, the one with no `--host` at all.
fn docker_pid() -> u32 {
    let socket = socket();
    let names = |args: &[String]| {
        args.iter()
            .any(|a| a.ends_with(&socket) && a.contains("unix://"))
    };
    let hosted = |args: &[String]| args.iter().any(|a| a.starts_with("--host") || a == "-H");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let exe = args.first()?.rsplit('/').next()?.to_owned();
            let serves = names(&args) || (socket == "/var/run/docker.sock" && !hosted(&args));
            (exe == "dockerd" && serves).then_some(pid)
        })
        .next()
        .unwrap_or_else(|| panic!("no dockerd serves {socket}"))
}

/// A tun held open by a host-network container's process (a VPN app's
/// `tailscale0`) is that container's, found through the fd's `fdinfo` as
/// a VM's tap is. The holder is a process of the test's, moved into the
/// container's cgroup, since the test image has nothing that opens a tun.
#[test]
fn a_tun_held_by_a_host_network_app_is_the_apps() {
    if !engine() || !require(have("python3"), "python3 not installed") {
        return;
    }
    let _engine = shared_engine();
    let n = std::process::id();
    let name = format!("ix-tnevpn{n}-tailscale-1");
    let mut c = Cleanup::default();
    c.run(
        &name,
        &[
            "--label",
            &format!("com.docker.compose.project=ix-tnevpn{n}"),
            "--network",
            "host",
            IMAGE,
            "sleep",
            "3600",
        ],
    );
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &name]);
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("the container's v2 cgroup")
        .to_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount =
        truenas_net_exporter::workloads::accounting::cgroup2_mount(&mountinfo).expect("cgroup v2");
    // TUNSETIFF with IFF_TUN | IFF_NO_PI: a tun named tnetun<n>, held open.
    let tun = format!("tnetun{}", n % 100_000);
    let ready = tempfile::tempdir().unwrap();
    let flag = ready.path().join("ready");
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import fcntl, os, struct, time\n\
             fd = os.open('/dev/net/tun', os.O_RDWR)\n\
             fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'{tun}', 0x1001))\n\
             open('{}', 'w').close()\n\
             time.sleep(3600)\n",
            flag.display()
        ))
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let holder_pid = holder.id();
    let _holder = Kill(&mut holder);
    assert!(
        wait_for(Duration::from_secs(10), || flag.exists().then_some(())).is_some(),
        "the tun is open"
    );
    std::fs::write(
        mount
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs"),
        holder_pid.to_string(),
    )
    .unwrap();

    let server = server_on(
        &socket(),
        "[docker]\ninterval = \"1s\"\n[topology]\ninterval = \"1s\"\n",
    );
    let labels = wait_for(Duration::from_secs(15), || {
        labels_of(&server.metrics(), &tun).filter(|l| l["instance"] == name)
    })
    .unwrap_or_else(|| {
        panic!(
            "{tun} is the app's: {:?}",
            labels_of(&server.metrics(), &tun)
        )
    });
    assert_eq!(labels["instance_type"], "docker");
    assert_eq!(labels["app"], format!("tnevpn{n}"));
}

/// A port published through `docker-proxy`: the proxy is the engine's
/// process, so the client's bytes are the engine's workload's (its peer the
/// client) and the app's are its own once (its peer the bridge's gateway,
/// where the proxy connects from): the app is not counted twice.
#[test]
fn a_published_port_counts_toward_its_app_once() {
    if !engine() {
        return;
    }
    let _engine = shared_engine();
    let n = std::process::id();
    let mut c = Cleanup::default();
    let net = format!("tnepp{n}_net");
    c.network(&net, &[]);
    let name = format!("tnepp{n}");
    const FILE: u64 = 1_000_000;
    c.run(
        &name,
        &[
            "--network",
            &net,
            "-p",
            "127.0.0.1::8080",
            IMAGE,
            "sh",
            "-c",
            &format!("mkdir -p /www && head -c {FILE} /dev/zero > /www/f && exec httpd -f -p 8080 -h /www"),
        ],
    );
    let port = docker(&["port", &name, "8080"]);
    let addr = port.lines().next().unwrap_or_default().trim().to_owned();
    let server = server_on(&socket(), crate::monitoring::ACCOUNTING_1S);
    if !require(
        crate::monitoring::counts_per_cgroup(&server),
        "the exporter cannot load its BPF programs: no traffic per peer",
    ) {
        return;
    }
    let fetch = || {
        let out = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-w", "%{size_download}"])
            .arg(format!("http://{addr}/f"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            FILE.to_string(),
            "{addr}"
        );
    };
    // The app's tx per peer, and its workload's.
    let read = || -> (HashMap<String, f64>, f64) {
        let samples = parse(&server.metrics());
        let mine = |s: &&crate::support::Sample| s.label("instance") == Some(name.as_str());
        let peers = samples
            .iter()
            .filter(mine)
            .filter(|s| s.name == "net_peer_tx_bytes_total")
            .map(|s| {
                (
                    format!(
                        "{}/{}",
                        s.label("peer").unwrap_or(""),
                        s.label("protocol").unwrap_or("")
                    ),
                    s.value,
                )
            })
            .collect();
        let total = samples
            .iter()
            .filter(mine)
            .find(|s| s.name == "net_workload_tx_bytes_total")
            .map_or(0.0, |s| s.value);
        (peers, total)
    };
    // A first fetch makes the proxy a peer of the app; its series starts
    // at the tick after.
    fetch();
    wait_for(Duration::from_secs(20), || {
        let (peers, _) = read();
        (peers.keys().any(|p| !p.starts_with("other/"))).then_some(())
    })
    .unwrap_or_else(|| panic!("the app's peers: {:?}", read()));
    let (before, total_before) = read();
    for _ in 0..3 {
        fetch();
    }
    let settled = wait_for(Duration::from_secs(20), || {
        let (after, total) = read();
        let grown: f64 = after
            .iter()
            .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
            .sum();
        (total - total_before >= 3.0 * FILE as f64 && (grown - (total - total_before)).abs() < 1.0)
            .then_some((after, total))
    });
    let (after, total) = settled.unwrap_or_else(|| panic!("before {before:?}, now {:?}", read()));
    let sent = total - total_before;
    // Three files and their headers: not six (the proxy's copy is not the app's).
    assert!(
        sent < 3.0 * FILE as f64 * 1.1 + 100_000.0,
        "the app sent {sent} bytes for three files of {FILE}"
    );
    let gateway = gateway(&net);
    let to_gateway = after
        .get(&format!("{}/", gateway.trim()))
        .copied()
        .unwrap_or(0.0)
        - before
            .get(&format!("{}/", gateway.trim()))
            .copied()
            .unwrap_or(0.0);
    assert!(
        to_gateway >= 3.0 * FILE as f64,
        "the proxy, at the gateway, is the app's peer: {after:?}"
    );
    assert!(
        !after.keys().any(|p| p.starts_with("127.0.0.1/")),
        "the client is not the app's peer: {after:?}"
    );
}
