//! The binary's command line: flags, config errors and `--once` failures.

use std::process::Command;

use crate::support::{bin, run_once};

#[test]
fn help_lists_the_seed_flags() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--web.listen-address",
        "--web.telemetry-path",
        "--web.config.file",
        "--web.max-requests",
        "--path.rootfs",
        "--path.procfs",
        "--docker.socket",
        "--log.level",
        "--config.file",
        "--once",
        "--healthcheck",
        "--version",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn once_without_netdev_fails_clearly() {
    let empty = tempfile::tempdir().unwrap();
    let procfs = format!("--path.procfs={}", empty.path().display());
    let rootfs = format!("--path.rootfs={}", empty.path().display());
    let out = run_once(&[&procfs, &rootfs, "--docker.socket="]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1/net/dev"), "{err}");
    assert!(out.stdout.is_empty());
}

/// `--once` agrees with `/-/ready`: a host whose net/dev cannot be read, or
/// with no root filesystem, exits 3 with every reason, said once on one
/// line, and nothing on stdout; each fails before any resolver runs. A
/// config error is 1, a command line clap cannot parse 2, success 0.
#[test]
fn once_exit_codes_say_what_failed() {
    let host = crate::support::fixture("seed-host");
    let procfs = format!("--path.procfs={}", host.join("proc").display());
    let rootfs = format!("--path.rootfs={}", host.display());
    for (args, code, reasons) in [
        (
            ["--path.procfs=/nonexistent", rootfs.as_str()],
            3,
            &["not ready: cannot read /nonexistent/1/net/dev: No such file or directory"][..],
        ),
        (
            [procfs.as_str(), "--path.rootfs=/nonexistent"],
            3,
            &[
                "not ready: no root filesystem at /nonexistent (--path.rootfs): No such file or directory",
            ][..],
        ),
        (
            ["--path.procfs=/nonexistent", "--path.rootfs=/nonexistent"],
            3,
            &[
                "cannot read /nonexistent/1/net/dev",
                "no root filesystem at /nonexistent",
            ][..],
        ),
        ([procfs.as_str(), rootfs.as_str()], 0, &[][..]),
    ] {
        let out = run_once(&[args[0], args[1], "--docker.socket="]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        if code == 0 {
            assert!(!out.stdout.is_empty());
            continue;
        }
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(err.starts_with("error: not ready: "), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        for reason in reasons {
            assert_eq!(err.matches(reason).count(), 1, "{args:?}: {err}");
        }
        assert_eq!(err.matches("No such file").count(), reasons.len(), "{err}");
    }
    let out = run_once(&["--config.file=/nonexistent/c.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run_once(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "clap's own");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[topology]\nintervall = \"5s\"\n", "intervall"),
        ("[topology]\ninterval = \"often\"\n", "topology.interval"),
        ("[vm]\ninterval = \"1ms\"\n", "vm.interval"),
        ("[interfaces]\ninclude = \"[\"\n", "interfaces.include"),
        ("not toml at all", "config"),
    ] {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = run_once(&[&format!("--config.file={}", cfg.display())]);
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
    // What serde refuses as it reads the file: one line, at the key's line,
    // with what is accepted.
    for (text, needle) in [
        (
            "[web]\ncompression = \"brotli\"\n",
            "(line 2, web.compression): unknown value \"brotli\"; write one of",
        ),
        (
            "[vm]\nsources = [\"libvirt\"]\n",
            "(line 2, vm.sources): unknown value \"libvirt\"; write one of",
        ),
        (
            "[commands]\ntimeout = \"10 secs later\"\n",
            "(line 2, commands.timeout): \"10 secs later\" is not a duration",
        ),
    ] {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = run_once(&[&format!("--config.file={}", cfg.display())]);
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: invalid config file "), "{err}");
        assert!(err.contains(needle), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let out = run_once(&["--config.file=/nonexistent/c.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/c.toml"), "{err}");
    // The reason once, not again as a cause.
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    let out = run_once(&["--log.level=loud"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.level"));
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(bin())
        .args([
            "--healthcheck",
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not healthy"));
}

#[test]
fn healthcheck_fails_on_a_non_200_answer() {
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let n = conn.read(&mut request).unwrap();
        conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    let out = Command::new(bin())
        .args(["--healthcheck", &format!("--web.listen-address={addr}")])
        .output()
        .unwrap();
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /-/ready HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not healthy") && err.contains("503"), "{err}");
}

/// stderr is not a terminal here, as under `docker logs`: plain text, no
/// colour codes; a client that hangs up mid-response is not an error; a bad
/// config is one line even with `RUST_BACKTRACE=1`.
#[test]
fn logs_are_plain_quiet_about_clients_and_one_line_per_error() {
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let host = crate::limits::big_host(2_000);
    let mut exporter = crate::limits::Exporter::start(
        host.path(),
        "[log]\nlevel = \"debug\"\n",
        std::fs::File::create(&log).unwrap().into(),
    );
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(exporter.addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut start = [0u8; 64];
        s.read_exact(&mut start).unwrap();
        drop(s); // hang up with most of the body unread
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    exporter.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("listening"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "colour codes in a non-terminal log: {text}"
    );
    assert!(
        !text.contains("ERROR"),
        "a hang-up logged as an error: {text}"
    );
    assert!(text.contains("connection ended"), "logged at debug: {text}");

    let out = Command::new(bin())
        .args(["--once", "--log.level=loud"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: invalid value for --log.level"),
        "{err}"
    );
}
