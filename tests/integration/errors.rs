//! What a new user sees for each mistake: the real binary's stderr, said
//! once, naming the key, its line and what to write instead.

use crate::support::run_once;

/// Runs `--once` with `text` as the config file; its stderr, with the
/// file's path written as `{path}`.
fn stderr_for(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = run_once(&[&format!("--config.file={}", path.display())]);
    assert!(!out.status.success(), "{text}");
    String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "{path}")
}

/// Every `part` is in `err` exactly once.
fn once(err: &str, parts: &[&str]) {
    for part in parts {
        assert_eq!(err.matches(part).count(), 1, "{part:?} once in: {err}");
    }
}

#[test]
fn each_kind_of_value_says_what_to_write() {
    for (text, expected) in [
        // Durations.
        (
            "[topology]\ninterval = \"banana\"\n",
            "(line 2, topology.interval): \"banana\" is not a duration; write a number and \
             a unit in quotes (ms, s, m, h, d), such as interval = \"10s\"",
        ),
        (
            "[topology]\ninterval = 30\n",
            "(line 2, topology.interval): 30 has no unit; write a number and a unit in \
             quotes (ms, s, m, h, d), such as interval = \"30s\"",
        ),
        (
            "[docker]\ntimeout = \"30\"\n",
            "(line 2, docker.timeout): \"30\" has no unit; write a number and a unit in \
             quotes (ms, s, m, h, d), such as timeout = \"30s\"",
        ),
        (
            "[vm]\ninterval = \"1mn\"\n",
            "(line 2, vm.interval): \"1mn\" is not a duration: unknown time unit \"mn\"; \
             write a number and a unit in quotes (ms, s, m, h, d), such as interval = \"1m\"",
        ),
        // Sizes and counts.
        (
            "[netdev]\nmax_bytes = \"32MiB\"\n",
            "(line 2, netdev.max_bytes): found string \"32MiB\"; write a whole number of \
             bytes, such as max_bytes = 33554432",
        ),
        (
            "[web]\nmax_connections = -1\n",
            "(line 2, web.max_connections): found integer -1; write a whole number, \
             such as max_connections = 256",
        ),
        // Booleans and lists.
        (
            "[docker]\nenabled = \"no\"\n",
            "(line 2, docker.enabled): found string \"no\"; write true or false, \
             such as enabled = true",
        ),
        (
            "[vm]\nvirsh_command = \"virsh -r\"\n",
            "(line 2, vm.virsh_command): found string \"virsh -r\"; write a list of \
             strings, such as virsh_command = [\"virsh\"]",
        ),
        // Choices list their names.
        (
            "[web]\ncompression = \"gzip\"\n",
            "(line 2, web.compression): unknown value \"gzip\"; write one of \"auto\", \
             \"always\", \"never\", such as compression = \"auto\"",
        ),
        (
            "[log]\nlevel = \"trace\"\n",
            "(line 2, log.level): unknown value \"trace\"; write one of \"debug\", \
             \"info\", \"warn\", \"error\", such as level = \"info\"",
        ),
        (
            "[vm]\nsources = [\"midclt\", \"libvirt\"]\n",
            "(line 2, vm.sources): unknown value \"libvirt\"; write one of \"midclt\", \
             \"virsh\", \"qemu\", such as sources = [\"midclt\", \"virsh\", \"qemu\"]",
        ),
        // Unknown keys and sections: the closest known name.
        (
            "[topology]\nintervall = \"5s\"\n",
            "(line 2, topology.intervall): unknown key \"intervall\" (did you mean \
             \"interval\"?); [topology] takes enabled, interval, timeout",
        ),
        (
            "[web]\nlisten = \":9551\"\n",
            "(line 2, web.listen): unknown key \"listen\" (did you mean \"listen_address\"?); \
             [web] takes listen_address,",
        ),
        (
            "[dockr]\nenabled = false\n",
            "(line 1, dockr): unknown section [dockr] (did you mean \"docker\"?); \
             the sections are web, paths, netdev,",
        ),
        (
            "interval = \"30s\"\n",
            "(line 1, interval): \"interval\" is not a section; it is a key of [docker], \
             [topology],",
        ),
        (
            "web = 1\n",
            "(line 1, web): found integer 1; [web] is a section, written as a [web] line \
             with its keys below it",
        ),
        // What the sections check after reading: still at the key's line.
        (
            "# mine\n[topology]\ninterval = \"0s\"\n",
            "(line 3, topology.interval): must be greater than zero, such as \
             interval = \"10s\"",
        ),
        (
            "[web]\nlisten_address = \":99999\"\n",
            "(line 2, web.listen_address): port 99999 is out of range (0-65535)",
        ),
    ] {
        let err = stderr_for(text);
        assert!(
            err.starts_with("error: invalid config file {path} (line "),
            "{text}: {err}"
        );
        assert!(err.contains(expected), "{text}:\n{err}\nwanted: {expected}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // Said once: the key's place, and the message after it.
        let (place, message) = expected.split_once("): ").unwrap();
        once(&err, &[&format!("{place})"), message]);
    }
}

#[test]
fn a_syntax_error_is_tomls_report_once() {
    let err = stderr_for("[web\nlisten_address = \":1\"\n");
    assert!(
        err.starts_with("error: invalid config file {path}: TOML parse error at line 1, column 5"),
        "{err}"
    );
    once(
        &err,
        &["TOML parse error", "1 | [web", "unclosed table", "^"],
    );
    let err = stderr_for("[web]\nlisten_address = :1\n");
    once(
        &err,
        &[
            "line 2, column 18",
            "listen_address = :1",
            "string values must be quoted",
        ],
    );
}

#[test]
fn a_missing_file_says_its_path_and_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let out = run_once(&[&format!("--config.file={}", path.display())]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "error: cannot read config file {}: No such file or directory (os error 2)\n",
            path.display()
        )
    );
}

#[test]
fn flags_are_named_as_typed() {
    for (flag, expected) in [
        (
            "--web.listen-address=:99999",
            "error: invalid value for --web.listen-address: port 99999 is out of range (0-65535)\n",
        ),
        (
            "--web.listen-address=9551",
            "error: invalid value for --web.listen-address: \"9551\" has no port; write \
             HOST:PORT or :PORT, such as :9551 or 127.0.0.1:9551\n",
        ),
        (
            "--log.level=loud",
            "error: invalid value for --log.level: unknown level \"loud\"; write one of \
             debug, info, warn, error, such as --log.level=info\n",
        ),
        (
            "--web.telemetry-path=metrics",
            "error: invalid value for --web.telemetry-path: \"metrics\" must start with /, \
             such as \"/metrics\"\n",
        ),
    ] {
        let out = run_once(&[flag]);
        assert!(!out.status.success(), "{flag}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{flag}");
    }
}
