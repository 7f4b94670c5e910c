//! The deployment: the Containerfile's runtime stage, assembled from a locally
//! built static binary (nothing can be pulled here), run with exactly
//! compose.yaml's settings by Debian's docker-compose, must label the host's
//! interfaces and containers, its own veth included, as the host-mode binary does.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::docker::{Cleanup, ENGINE, IMAGE, docker, engine};
use crate::support::{bin, have, http, parse, require, wait_for};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A static (glibc, crt-static) release build: the image has no libc.
fn static_binary() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-q",
            "--bin",
            "truenas-net-exporter",
        ])
        .args([
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
            "target/static",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(ROOT)
        .status()
        .expect("run cargo");
    assert!(status.success(), "static build");
    Path::new(ROOT).join("target/static/x86_64-unknown-linux-gnu/release/truenas-net-exporter")
}

/// The Containerfile's last stage, copying the local binary instead of the build stage's.
fn runtime_stage() -> String {
    let file = std::fs::read_to_string(Path::new(ROOT).join("Containerfile")).unwrap();
    let stage = &file[file
        .rfind("\nFROM scratch")
        .expect("a scratch runtime stage")
        + 1..];
    let copy = "COPY --from=build /truenas-net-exporter /truenas-net-exporter";
    assert!(
        stage.contains(copy),
        "the runtime stage copies the built binary"
    );
    stage.replace(copy, "COPY truenas-net-exporter /truenas-net-exporter")
}

struct Compose(String);

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(["-f", &format!("{ROOT}/compose.yaml"), "-p", &self.0, "down"])
            .output();
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
    std::fs::copy(static_binary(), ctx.path().join("truenas-net-exporter")).unwrap();
    std::fs::write(ctx.path().join("Containerfile"), runtime_stage()).unwrap();
    let ctx_path = ctx.path().to_str().unwrap();
    docker(&[
        "build",
        "-q",
        "-t",
        "truenas-net-exporter:latest",
        "-f",
        &format!("{ctx_path}/Containerfile"),
        ctx_path,
    ]);

    let n = std::process::id();
    let app = format!("tnect{n}");
    let mut c = Cleanup::default();
    c.network(&format!("ix-{app}_default"), &[]);
    let web = format!("ix-{app}-web-1");
    c.run(
        &web,
        &[
            "--label",
            &format!("com.docker.compose.project=ix-{app}"),
            "--network",
            &format!("ix-{app}_default"),
            IMAGE,
            "sleep",
            "3600",
        ],
    );

    let _ = Command::new("docker")
        .args(["rm", "-f", "truenas_net_exporter"])
        .output();
    let project = format!("tnect{n}");
    let up = Command::new("docker-compose")
        .args([
            "-f",
            &format!("{ROOT}/compose.yaml"),
            "-p",
            &project,
            "up",
            "-d",
            "--no-build",
        ])
        .output()
        .unwrap();
    let _compose = Compose(project.clone());
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
    // Docker adds `label=disable` to the security options of a pid: host container.
    assert!(
        settings.starts_with("host true [SYS_PTRACE] [no-new-privileges:true"),
        "{settings}"
    );
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
    let host = Command::new(bin()).args(["--once"]).output().unwrap();
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
