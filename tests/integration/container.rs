//! The deployment: the Containerfile's runtime stage, assembled from a static
//! binary built locally by the build stage's own script, .ci/build-static
//! (nothing can be pulled here), run with exactly
//! compose.yaml's settings by Debian's docker-compose, must label the host's
//! interfaces and containers, its own veth included, as the host-mode binary does.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::docker::{Cleanup, ENGINE, docker, engine};
use crate::support::{bin, have, http, parse, require, wait_for};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The shipped kind of binary, built by the script the Containerfile's build
/// stage runs (a static glibc release build: the image has no libc), into `out`.
fn static_binary(out: &Path) {
    let status = Command::new("sh")
        .arg(Path::new(ROOT).join(".ci/build-static"))
        .arg(out)
        .arg("-q")
        .current_dir(ROOT)
        .status()
        .expect("run .ci/build-static");
    assert!(status.success(), ".ci/build-static");
}

/// An instruction: (its first word, upper-cased; the whole instruction).
type Instruction = (String, String);

/// A stage: its `FROM` instruction's words, and the instructions after it.
type Stage = (Vec<String>, Vec<Instruction>);

/// The Containerfile's instructions: (first word, upper-cased; the whole
/// instruction with continuation lines joined). Comments and blank lines,
/// also inside a continuation, are dropped, as Docker drops them.
fn instructions(file: &str) -> Vec<Instruction> {
    let mut all = Vec::new();
    let mut current: Option<String> = None;
    for line in file.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (part, continues) = match t.strip_suffix('\\') {
            Some(p) => (p.trim_end(), true),
            None => (t, false),
        };
        let text = match current.take() {
            Some(mut c) => {
                c.push(' ');
                c.push_str(part);
                c
            }
            None => part.to_owned(),
        };
        if continues {
            current = Some(text);
        } else {
            let word = text.split_whitespace().next().unwrap().to_ascii_uppercase();
            all.push((word, text));
        }
    }
    assert!(
        current.is_none(),
        "the Containerfile ends inside a continuation"
    );
    all
}

/// The Containerfile's stages, in order.
fn stages(file: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for (word, text) in instructions(file) {
        if word == "FROM" {
            let words = text.split_whitespace().map(str::to_owned).collect();
            stages.push((words, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.1.push((word, text));
        }
    }
    stages
}

/// The binary a `COPY --from=build SRC DST` of the runtime stage takes: (SRC, DST).
fn copied_binary(stage: &[Instruction]) -> (String, String) {
    let copies: Vec<_> = stage
        .iter()
        .filter(|(w, _)| w == "COPY" || w == "ADD")
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "the runtime stage copies one file: {copies:?}"
    );
    let (word, text) = copies[0];
    assert_eq!(word, "COPY", "{text}");
    let args: Vec<&str> = text.split_whitespace().skip(1).collect();
    assert!(
        args.contains(&"--from=build"),
        "copied from the build stage: {text}"
    );
    let paths: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
    assert_eq!(paths.len(), 2, "COPY SRC DST: {text}");
    (paths[0].to_owned(), paths[1].to_owned())
}

/// The Containerfile's last stage, copying the binary from the build context
/// (where `name` is) instead of from the build stage.
fn runtime_stage(file: &str, name: &str) -> String {
    let stages = stages(file);
    let (from, body) = stages.last().expect("a stage");
    assert!(
        from.len() >= 2 && from[1] == "scratch",
        "the runtime stage is FROM scratch: {from:?}"
    );
    let mut out = String::from("FROM scratch\n");
    for (word, text) in body {
        if word == "COPY" {
            let flags = text
                .split_whitespace()
                .skip(1)
                .filter(|a| a.starts_with("--") && !a.starts_with("--from="));
            let (_, dst) = copied_binary(body);
            out.push_str("COPY ");
            for flag in flags {
                out.push_str(flag);
                out.push(' ');
            }
            out.push_str(&format!("{name} {dst}\n"));
        } else {
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

fn containerfile() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("Containerfile")).unwrap()
}

/// compose.yaml's `image:`: the test tags its build with it, so that
/// `docker-compose up --no-build` runs exactly that build.
fn compose_image() -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("compose.yaml")).unwrap();
    let compose: serde_json::Value = serde_norway::from_str(&text).unwrap();
    compose["services"]["truenas-net-exporter"]["image"]
        .as_str()
        .expect("compose.yaml names an image")
        .to_owned()
}

/// The container's healthcheck, as compose.yaml and the Containerfile each
/// declare it, is `--healthcheck`, and it asks for readiness: run as
/// declared (the image's binary being this build), it fails against an
/// exporter that cannot read net/dev, naming why, and passes against one
/// that can.
#[test]
fn the_healthchecks_probe_readiness() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("compose.yaml")).unwrap();
    let compose: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let test: Vec<String> = serde_json::from_value(
        compose["services"]["truenas-net-exporter"]["healthcheck"]["test"].clone(),
    )
    .expect("compose.yaml's healthcheck is a list");
    assert_eq!(test[0], "CMD", "exec form, no shell in the image: {test:?}");
    let compose_command = test[1..].to_vec();
    let containerfile = containerfile();
    let healthcheck = instructions(&containerfile)
        .into_iter()
        .find(|(word, _)| word == "HEALTHCHECK")
        .expect("the Containerfile has a HEALTHCHECK");
    let (_, exec) = healthcheck
        .1
        .split_once(" CMD ")
        .expect("HEALTHCHECK ... CMD");
    let image_command: Vec<String> = serde_json::from_str(exec.trim()).expect("exec form");
    assert_eq!(compose_command, image_command);
    assert_eq!(compose_command[0], "/truenas-net-exporter");
    assert!(compose_command.contains(&"--healthcheck".to_owned()));

    let run = |addr: std::net::SocketAddr| {
        let out = Command::new(bin())
            .args(&compose_command[1..])
            .arg(format!("--web.listen-address={addr}"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let host = crate::support::copy_fixture("seed-host");
    let netdev = host.path().join("proc/1/net/dev");
    let saved = std::fs::read(&netdev).unwrap();
    std::fs::remove_file(&netdev).unwrap();
    let exporter = crate::limits::Exporter::start(host.path(), "", std::process::Stdio::null());
    assert_eq!(http(exporter.addr, "GET", "/-/healthy").status, 200);
    let (code, err) = run(exporter.addr);
    // 1 is what engines read as unhealthy (2 is reserved).
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("not ready: cannot read {}", netdev.display())),
        "{err}"
    );
    std::fs::write(&netdev, saved).unwrap();
    let (code, err) = run(exporter.addr);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn image_ships_what_the_shared_script_builds() {
    let file = containerfile();
    let stages = stages(&file);
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (from, build) = &stages[0];
    assert!(
        from.iter().any(|w| w.eq_ignore_ascii_case("build")),
        "the first stage is `build`: {from:?}"
    );
    let (src, dst) = copied_binary(&stages[1].1);
    assert_eq!(dst, "/truenas-net-exporter");
    // The build stage's binary comes from the script this module builds with,
    // and no other cargo build happens there.
    let runs: Vec<&str> = build
        .iter()
        .filter(|(w, _)| w == "RUN")
        .map(|(_, t)| t.as_str())
        .collect();
    assert!(
        runs.contains(&format!("RUN sh .ci/build-static {src}").as_str()),
        "the build stage runs .ci/build-static {src}: {runs:?}"
    );
    assert!(
        !runs.iter().any(|r| r.contains("cargo")),
        "the build stage has no cargo build of its own: {runs:?}"
    );
    assert!(
        build
            .iter()
            .any(|(w, t)| w == "COPY" && t.contains(".ci/build-static")),
        "the build stage copies the script in"
    );

    // The extraction keeps everything but the source of the copy.
    let stage = runtime_stage(&file, "truenas-net-exporter");
    assert!(stage.starts_with("FROM scratch\n"), "{stage}");
    assert!(
        stage.contains("\nCOPY truenas-net-exporter /truenas-net-exporter\n"),
        "{stage}"
    );
    for word in ["LABEL", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD"] {
        assert!(
            stage.contains(&format!("\n{word} ")),
            "{word} kept: {stage}"
        );
    }
    assert!(!stage.contains("--from"), "{stage}");
    assert!(!stage.contains('#'), "comments dropped: {stage}");

    // Released under the name compose.yaml runs.
    let image = compose_image();
    assert!(
        image.starts_with("ghcr.io/") && image.contains("/truenas-net-exporter:"),
        "compose.yaml runs the released image: {image}"
    );
}

/// Removes the test's tag again, so that no local build is left standing in
/// for the released image.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", &self.0])
            .output();
    }
}

/// compose.yaml, with the engine's socket where the test's engine has it
/// (`DOCKER_HOST`): an override file whose volume replaces compose.yaml's
/// for the same path in the container, which is what Compose does.
struct Compose {
    project: String,
    overrides: tempfile::TempDir,
}

impl Compose {
    fn new(project: &str) -> Compose {
        let overrides = tempfile::tempdir().unwrap();
        std::fs::write(
            overrides.path().join("socket.yaml"),
            format!(
                "services:\n  truenas-net-exporter:\n    volumes:\n      - {}:/host/var/run/docker.sock:ro\n",
                crate::docker::socket()
            ),
        )
        .unwrap();
        Compose {
            project: project.to_owned(),
            overrides,
        }
    }

    fn command(&self, args: &[&str]) -> std::process::Output {
        let socket = self.overrides.path().join("socket.yaml");
        Command::new("docker-compose")
            .arg("-f")
            .arg(self.compose_file())
            .arg("-f")
            .arg(socket)
            .args(["-p", &self.project])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Compose {
    /// compose.yaml as Debian 12's docker-compose 1.29 and Docker 20.10 can
    /// run it: the one does not know `cgroup:` (Compose v2 does), the other
    /// not the capability BPF, so the copy leaves those two lines out, and
    /// the exporter here runs without traffic per workload. What is
    /// compared (the interfaces' labels) does not depend on it.
    fn compose_file(&self) -> std::path::PathBuf {
        let text = std::fs::read_to_string(format!("{ROOT}/compose.yaml")).unwrap();
        for line in TOO_NEW {
            assert!(text.contains(line), "compose.yaml has {line:?}");
        }
        let copy = self.overrides.path().join("compose.yaml");
        let older = TOO_NEW
            .iter()
            .fold(text, |text, line| text.replace(line, "\n"));
        std::fs::write(&copy, older).unwrap();
        copy
    }
}

/// compose.yaml's lines this machine's Compose and engine do not know.
const TOO_NEW: [&str; 2] = ["\n    cgroup: host\n", "\n      - BPF\n"];

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command(&["down"]);
    }
}

/// (interface, instance, instance_type, app, bridge) of every rx_bytes sample.
fn labels(text: &str) -> BTreeSet<(String, String, String, String, String)> {
    parse(text)
        .into_iter()
        .filter(|s| s.name == "net_interface_rx_bytes_total")
        .map(|s| {
            let l = |k| s.label(k).unwrap_or_default().to_owned();
            (
                l("interface"),
                l("instance"),
                l("instance_type"),
                l("app"),
                l("bridge"),
            )
        })
        .collect()
}

#[test]
fn image_runs_with_compose_settings_and_maps_like_the_host_binary() {
    if !engine()
        || !require(
            have("docker-compose"),
            "docker-compose not installed (Debian package docker-compose)",
        )
    {
        return;
    }
    // Alone on the engine: the host-mode and container views are compared.
    let _engine = ENGINE.write().unwrap_or_else(|p| p.into_inner());
    let ctx = tempfile::tempdir().unwrap();
    static_binary(&ctx.path().join("truenas-net-exporter"));
    std::fs::write(
        ctx.path().join("Containerfile"),
        runtime_stage(&containerfile(), "truenas-net-exporter"),
    )
    .unwrap();
    let ctx_path = ctx.path().to_str().unwrap();
    // Tagged as compose.yaml's (released) image, for this test only.
    let image = compose_image();
    let _untag = Untag(image.clone());
    docker(&[
        "build",
        "-q",
        "-t",
        &image,
        "-f",
        &format!("{ctx_path}/Containerfile"),
        ctx_path,
    ]);

    let n = std::process::id();
    let app = format!("tnect{n}");
    let mut c = Cleanup::default();
    c.app(&app);
    let web = format!("ix-{app}-web-1");

    let _ = Command::new("docker")
        .args(["rm", "-f", "truenas_net_exporter"])
        .output();
    let project = format!("tnect{n}");
    let compose = Compose::new(&project);
    let up = compose.command(&["up", "-d", "--no-build"]);
    assert!(
        up.status.success(),
        "compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    let settings = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.PidMode}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapAdd}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Privileged}}",
        "truenas_net_exporter",
    ]);
    // Docker adds `label=disable` to the security options of a pid: host
    // container, and lists the capabilities in an order of its own.
    let caps = settings
        .strip_prefix("host true [")
        .and_then(|rest| rest.split_once("] [no-new-privileges:true"))
        .map(|(caps, _)| {
            let mut caps: Vec<_> = caps.split(' ').collect();
            caps.sort_unstable();
            caps
        });
    assert_eq!(caps, Some(vec!["NET_ADMIN", "SYS_PTRACE"]), "{settings}");
    assert!(settings.ends_with(" false"), "not privileged: {settings}");

    let addr = "127.0.0.1:9551".parse().unwrap();
    let body = wait_for(Duration::from_secs(30), || {
        let r = std::net::TcpStream::connect(addr)
            .ok()
            .map(|_| http(addr, "GET", "/metrics"))?;
        let ok = r.body.contains("instance=\"truenas_net_exporter\"")
            && r.body.contains(&format!("instance=\"{web}\""));
        ok.then_some(r.body)
    })
    .expect("the containerised exporter labels its own veth and the app's");
    for resolver in ["topology", "docker", "vm", "lxc"] {
        assert!(
            body.contains(&format!(
                "truenas_net_exporter_resolver_up{{resolver=\"{resolver}\"}} 1"
            )),
            "{resolver} up"
        );
    }
    let own = labels(&body)
        .into_iter()
        .find(|l| l.1 == "truenas_net_exporter")
        .unwrap();
    assert_eq!(
        (own.2.as_str(), own.3.as_str()),
        ("docker", project.as_str()),
        "its own veth: {own:?}"
    );

    // The host-mode binary, now, sees the same interfaces with the same labels.
    let socket = format!("--docker.socket={}", crate::docker::socket());
    let host = Command::new(bin())
        .args(["--once", &socket])
        .output()
        .unwrap();
    assert!(host.status.success());
    assert_eq!(
        labels(&body),
        labels(&String::from_utf8_lossy(&host.stdout))
    );

    let health = Command::new("docker")
        .args([
            "exec",
            "truenas_net_exporter",
            "/truenas-net-exporter",
            "--healthcheck",
        ])
        .status()
        .unwrap();
    assert!(
        health.success(),
        "the compose healthcheck command works in the image"
    );
}
