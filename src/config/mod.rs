//! Configuration in two steps (as ripgrep does): [`RawConfig`] (`raw`) is the
//! TOML file as written, typed by serde, with unknown keys and values refused
//! by name; [`Config`] is the checked result after CLI flags override it.
//! Each section resolves itself from its raw form, the flags and
//! [`defaults`]: `web`, `host` (paths, net/dev, commands), `output` (labels,
//! interfaces, log) and `resolvers` (each one's schedule and settings), with
//! `check` holding what they share. This file holds [`Config`], the one
//! place that calls them, and the errors. Its types sit below everything
//! that uses them: config imports no source and no part of the server.

pub mod cli;
pub mod defaults;
pub(crate) mod raw;

mod check;
mod host;
mod names;
mod output;
mod peers;
mod resolvers;
mod web;

use std::path::{Path, PathBuf};

pub use crate::config::defaults::{Compression, LogLevel, VmLookup};
pub use crate::config::host::{CommandConfig, NetdevLimits};
pub use crate::config::names::NamesConfig;
pub use crate::config::peers::PeersConfig;
pub use crate::config::raw::RawConfig;
pub use crate::config::resolvers::{
    AccountingConfig, DockerConfig, IncusConfig, MIN_INTERVAL, Schedule, VmConfig, VmSettings,
};
pub use crate::config::web::HttpLimits;

use crate::config::cli::Cli;
use crate::model::labels::LabelSettings;

/// Each message is whole: the program prints it once, as one line where it
/// can, so no variant hands on a `source` to be printed again after it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not TOML: toml's report, which quotes the line.
    #[error("invalid config file {path}: {}", error.to_string().trim_end())]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    /// TOML, but a key or value the sections' types refuse.
    #[error("invalid config file {path}{}: {message}", place(*.line, .key.as_deref()))]
    Value {
        path: PathBuf,
        line: Option<usize>,
        /// As written in the file (`topology.interval`, `vm.sources`);
        /// `None` at the top level.
        key: Option<String>,
        message: String,
    },
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// ` (line 2, topology.interval)`, or what of it is known.
fn place(line: Option<usize>, key: Option<&str>) -> String {
    match (line, key) {
        (Some(line), Some(key)) => format!(" (line {line}, {key})"),
        (Some(line), None) => format!(" (line {line})"),
        (None, Some(key)) => format!(" ({key})"),
        (None, None) => String::new(),
    }
}

/// What the process does; decided once, dispatched once in `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Serve HTTP until SIGTERM (the default).
    Serve,
    /// `--once`: refresh every resolver once, print one scrape, exit.
    Once,
    /// `--healthcheck`: ask the exporter at the listen address whether it answers.
    Healthcheck,
}

impl RunMode {
    fn from_cli(cli: &Cli) -> RunMode {
        match (cli.once, cli.healthcheck) {
            (_, true) => RunMode::Healthcheck,
            (true, false) => RunMode::Once,
            (false, false) => RunMode::Serve,
        }
    }
}

/// The checked configuration the exporter runs with. A resolver that is off
/// is `None`: [`Config::build`] is the one place that decides.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: RunMode,
    pub listen_address: String,
    pub telemetry_path: String,
    pub http: HttpLimits,
    /// TLS, basic auth and headers (exporter-toolkit format).
    pub web_config_file: Option<PathBuf>,
    pub rootfs: PathBuf,
    pub procfs: PathBuf,
    pub netdev: NetdevLimits,
    pub log_level: LogLevel,
    pub labels: LabelSettings,
    pub topology: Option<Schedule>,
    /// Off with `[docker] enabled = false` or an empty socket path.
    pub docker: Option<DockerConfig>,
    pub vm: Option<VmConfig>,
    pub lxc: Option<Schedule>,
    pub incus: Option<IncusConfig>,
    pub commands: CommandConfig,
    /// Traffic per cgroup; off with `[accounting] enabled = false`.
    pub accounting: Option<AccountingConfig>,
    /// Bytes per remote peer; off with `[peers] enabled = false`, and
    /// counted only where `[accounting]` counts.
    pub peers: Option<PeersConfig>,
    /// Names for peers; off with `[names] enabled = false`.
    pub names: Option<NamesConfig>,
}

impl Config {
    /// Reads `--config.file` if given, then applies the flags over it.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        match &cli.config_file {
            Some(path) => Config::from_file(&RawConfig::read(path)?, path, cli),
            None => Config::build(RawConfig::default(), cli),
        }
    }

    /// `text`, the file at `path`, with the flags over it. A value the
    /// sections refuse is shown at its line when the file sets it.
    fn from_file(text: &str, path: &Path, cli: &Cli) -> Result<Config, ConfigError> {
        let raw = RawConfig::from_toml(text, path)?;
        Config::build(raw, cli).map_err(|e| match e {
            ConfigError::Invalid { key, reason } => match raw::line_of_key(text, key) {
                Some(line) => ConfigError::Value {
                    path: path.to_owned(),
                    line: Some(line),
                    key: Some(key.to_owned()),
                    message: reason,
                },
                None => ConfigError::Invalid { key, reason },
            },
            other => other,
        })
    }

    /// Flags override the file; then every value is checked. Each value is
    /// the flag's, else the file's, else the default ([`defaults`]).
    pub fn build(raw: RawConfig, cli: &Cli) -> Result<Config, ConfigError> {
        let web = raw.web.resolve(cli)?;
        let paths = raw.paths.resolve(cli);
        Ok(Config {
            mode: RunMode::from_cli(cli),
            listen_address: web.listen_address,
            telemetry_path: web.telemetry_path,
            http: web.http,
            web_config_file: web.config_file,
            rootfs: paths.rootfs,
            procfs: paths.procfs,
            netdev: raw.netdev.resolve()?,
            log_level: raw.log.resolve(cli)?,
            labels: LabelSettings {
                owner_label: raw.labels.resolve()?,
                filter: raw.interfaces.resolve()?,
            },
            topology: raw.topology.resolve(&resolvers::TOPOLOGY)?,
            docker: raw.docker.resolve(cli)?,
            vm: raw.vm.resolve()?,
            lxc: raw.lxc.resolve(&resolvers::LXC)?,
            incus: raw.incus.resolve()?,
            commands: raw.commands.resolve(raw.truenas)?,
            accounting: raw.accounting.resolve()?,
            peers: raw.peers.resolve()?,
            names: raw.names.resolve()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn build(toml: &str, cli: &Cli) -> Result<Config, ConfigError> {
        Config::build(RawConfig::from_toml(toml, Path::new("t.toml"))?, cli)
    }

    #[test]
    fn defaults_match_the_readme() {
        let c = build("", &Cli::default()).unwrap();
        assert_eq!(c.listen_address, ":9551");
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.rootfs, Path::new("/"));
        assert_eq!(c.procfs, Path::new("/proc"));
        assert_eq!(
            c.docker.as_ref().map(|d| d.socket.as_path()),
            Some(Path::new("/var/run/docker.sock"))
        );
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.labels.owner_label, "instance");
        assert_eq!(
            c.topology.map(|s| s.interval),
            Some(Duration::from_secs(10))
        );
        assert_eq!(c.mode, RunMode::Serve);
    }

    /// A resolver's lookups each get three quarters of its refresh timeout:
    /// by default a command's own timeout fits in that, so the command's
    /// error (not the lookup's deadline) is what a hung tool shows.
    #[test]
    fn default_command_timeout_fits_every_lookup_budget() {
        let c = build("", &Cli::default()).unwrap();
        let budget = |t: Duration| t.mul_f64(0.75);
        let timeouts = [
            c.vm.as_ref().map(|v| v.schedule.timeout),
            c.lxc.map(|s| s.timeout),
            c.incus.as_ref().map(|i| i.schedule.timeout),
        ];
        for timeout in timeouts {
            let timeout = timeout.expect("on by default");
            assert!(
                c.commands.timeout <= budget(timeout),
                "{:?} > 3/4 of {timeout:?}",
                c.commands.timeout
            );
        }
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let text = include_str!("../../config.example.toml");
        let from_file = build(text, &Cli::default()).unwrap();
        let defaults = build("", &Cli::default()).unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn flags_override_file() {
        let cli = Cli {
            listen_address: Some("127.0.0.1:1".into()),
            docker_socket: Some(String::new()),
            ..Cli::default()
        };
        let c = build(
            "[web]\nlisten_address = \":2\"\n[topology]\ninterval = \"1m 30s\"\n",
            &cli,
        )
        .unwrap();
        assert_eq!(c.listen_address, "127.0.0.1:1");
        assert_eq!(c.docker, None, "empty socket disables Docker");
        assert_eq!(
            c.topology.map(|s| s.interval),
            Some(Duration::from_secs(90))
        );
        let off = build("[docker]\nenabled = false\n", &Cli::default()).unwrap();
        assert_eq!(off.docker, None, "and so does enabled = false");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = build("[topology]\nintervall = \"5s\"\n", &Cli::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("intervall"), "{err}");
        let err = build("[dockr]\n", &Cli::default()).unwrap_err().to_string();
        assert!(err.contains("dockr"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[topology]\ninterval = \"soon\"", "topology.interval"),
            ("[topology]\ntimeout = \"0s\"", "topology.timeout"),
            ("[interfaces]\nexclude = \"(\"", "interfaces.exclude"),
            ("[labels]\nowner_label = \"bad-name\"", "labels.owner_label"),
            ("[labels]\nowner_label = \"app\"", "labels.owner_label"),
            ("[web]\ntelemetry_path = \"metrics\"", "web.telemetry_path"),
            ("[web]\nlisten_address = \"9551\"", "web.listen_address"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("[vm]\nsources = []", "vm.sources"),
            ("[truenas]\nmidclt_command = []", "truenas.midclt_command"),
            ("[commands]\ntimeout = \"x\"", "commands.timeout"),
            // Keys of no release: unknown, and named as such.
            ("[vm]\ncommand_timeout = \"15s\"", "command_timeout"),
            ("[vm]\nsources = [\"qemu\", \"qemu\"]", "vm.sources"),
            ("[incus]\ninterval = \"10ms\"", "incus.interval"),
            ("[vm]\nsources = [\"libvirt\"]", "libvirt"),
            ("[topology]\ninterval = \"1ms\"", "topology.interval"),
            ("[docker]\ninterval = \"999ms\"", "docker.interval"),
            ("[web]\nmax_connections = 0", "web.max_connections"),
            ("[web]\nidle_timeout = \"never\"", "web.idle_timeout"),
            ("[netdev]\nmax_bytes = 0", "netdev.max_bytes"),
            (
                "[accounting]\nmax_cgroups = 100001",
                "accounting.max_cgroups",
            ),
        ] {
            let err = build(toml, &Cli::default()).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let err = build("[topology]\ninterval = 5", &Cli::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("interval"), "{err}");
    }

    /// What serde refuses as it reads the file is one line that says where
    /// (the line, the key as written), what was found and what to write,
    /// with an example.
    #[test]
    fn refused_values_name_their_key_and_line() {
        for (toml, expected) in [
            (
                "[topology]\ninterval = \"soon\"",
                "(line 2, topology.interval): \"soon\" is not a duration; write a number \
                 and a unit in quotes (ms, s, m, h, d), such as interval = \"10s\"",
            ),
            (
                "[topology]\ninterval = 30",
                "(line 2, topology.interval): 30 has no unit; write a number and a unit \
                 in quotes (ms, s, m, h, d), such as interval = \"30s\"",
            ),
            (
                "[topology]\ninterval = \"1mn\"",
                "(line 2, topology.interval): \"1mn\" is not a duration: unknown time unit \"mn\"; ",
            ),
            (
                "[web]\ncompression = \"brotli\"",
                "(line 2, web.compression): unknown value \"brotli\"; write one of \
                 \"auto\", \"always\", \"never\", such as compression = \"auto\"",
            ),
            (
                "[vm]\nsources = [\"qemu\", \"libvirt\"]",
                "(line 2, vm.sources): unknown value \"libvirt\"; write one of \
                 \"midclt\", \"virsh\", \"qemu\", such as sources = [\"midclt\", \"virsh\", \"qemu\"]",
            ),
            (
                "[log]\nlevel = \"loud\"",
                "(line 2, log.level): unknown value \"loud\"; write one of \
                 \"debug\", \"info\", \"warn\", \"error\", such as level = \"info\"",
            ),
            (
                "[web]\n\n[topology]\nintervall = \"5s\"",
                "(line 4, topology.intervall): unknown key \"intervall\" \
                 (did you mean \"interval\"?); [topology] takes enabled, interval, timeout",
            ),
            (
                "[dockr]",
                "(line 1, dockr): unknown section [dockr] (did you mean \"docker\"?); \
                 the sections are web, paths,",
            ),
            (
                "interval = \"30s\"",
                "(line 1, interval): \"interval\" is not a section; it is a key of [docker], [topology],",
            ),
            (
                "[netdev]\nmax_bytes = -1",
                "(line 2, netdev.max_bytes): found integer -1; write a whole number of bytes, \
                 such as max_bytes = 33554432",
            ),
            (
                "[web]\nmax_connections = \"many\"",
                "(line 2, web.max_connections): found string \"many\"; write a whole number, \
                 such as max_connections = 256",
            ),
            (
                "[docker]\nenabled = \"yes\"",
                "(line 2, docker.enabled): found string \"yes\"; write true or false, \
                 such as enabled = true",
            ),
            (
                "[truenas]\nmidclt_command = \"midclt call\"",
                "(line 2, truenas.midclt_command): found string \"midclt call\"; write a list \
                 of strings, such as midclt_command = [\"midclt\", \"call\"]",
            ),
            (
                "web = 1",
                "(line 1, web): found integer 1; [web] is a section",
            ),
        ] {
            let err = build(toml, &Cli::default()).unwrap_err().to_string();
            assert!(err.starts_with("invalid config file t.toml ("), "{err}");
            assert!(err.contains(expected), "{toml}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    /// What the sections refuse after serde (zero, ranges) is shown at the
    /// line that sets it, when the file does.
    #[test]
    fn checked_values_are_shown_at_their_line() {
        let in_file = |text: &str, cli: &Cli| {
            Config::from_file(text, Path::new("t.toml"), cli)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            in_file("# x\n[topology]\ninterval = \"0s\"\n", &Cli::default()),
            "invalid config file t.toml (line 3, topology.interval): \
             must be greater than zero, such as interval = \"10s\""
        );
        assert_eq!(
            in_file("[web]\nlisten_address = \":99999\"\n", &Cli::default()),
            "invalid config file t.toml (line 2, web.listen_address): \
             port 99999 is out of range (0-65535)"
        );
        let flag = Cli {
            listen_address: Some(":70000".into()),
            ..Cli::default()
        };
        assert_eq!(
            in_file("[web]\nlisten_address = \":1\"\n", &flag),
            "invalid value for --web.listen-address: port 70000 is out of range (0-65535)"
        );
    }

    /// `--log.level` takes the names the file does, and says so when wrong.
    #[test]
    fn the_log_level_flag_reads_as_the_key_does() {
        let flag = |level: &str| Cli {
            log_level: Some(level.into()),
            ..Cli::default()
        };
        let c = build("[log]\nlevel = \"error\"", &flag("warn")).unwrap();
        assert_eq!(c.log_level, LogLevel::Warn);
        let err = build("", &flag("loud")).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid value for --log.level: unknown level \"loud\"; \
             write one of debug, info, warn, error, such as --log.level=info"
        );
    }

    /// The typed defaults are the declared ones, and the docs show their names.
    #[test]
    fn choices_default_to_their_declarations() {
        let c = build("", &Cli::default()).unwrap();
        assert_eq!(c.http.compression, defaults::COMPRESSION.default);
        assert_eq!(c.http.compression, Compression::Auto);
        assert_eq!(c.log_level, defaults::LOG_LEVEL.default);
        assert_eq!(
            c.vm.map(|vm| vm.settings.sources),
            Some(defaults::VM_SOURCES.default.to_vec())
        );
        let shown = |key: &str| {
            defaults::ALL
                .iter()
                .find(|r| r.key == key)
                .map(|r| r.default.plain())
        };
        assert_eq!(shown("web.compression").as_deref(), Some("auto"));
        assert_eq!(shown("log.level").as_deref(), Some("info"));
        assert_eq!(shown("vm.sources").as_deref(), Some("midclt virsh qemu"));
    }

    #[test]
    fn file_errors_say_their_cause_once() {
        // No source: `{e:#}` would print the reason a second time.
        let err = RawConfig::load(Path::new("/nonexistent/c.toml")).unwrap_err();
        assert!(std::error::Error::source(&err).is_none());
        let err = err.to_string();
        assert!(
            err.starts_with("cannot read config file /nonexistent/c.toml: "),
            "{err}"
        );
        let err = build("not toml", &Cli::default()).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid config file t.toml: TOML parse error"),
            "{err}"
        );
        assert!(!err.ends_with('\n'), "{err:?}");
    }
}
