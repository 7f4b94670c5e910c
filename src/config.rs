//! Configuration in two steps (as ripgrep does): [`RawConfig`] is the TOML file
//! as written, with unknown keys rejected by name; [`Config`] is the checked
//! result after CLI flags override it, with every value parsed and validated.
//! Its types (schedules, each resolver's settings, the server's fixed paths)
//! sit below everything that uses them: config imports no source and no part
//! of the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::cli::Cli;
use crate::labels::{InterfaceFilter, LABEL_NAMES, LabelSettings, OWNER_LABEL};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The TOML file as written. Every key is optional; absent keys take defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub web: RawWeb,
    #[serde(default)]
    pub paths: RawPaths,
    #[serde(default)]
    pub netdev: RawNetdev,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub labels: RawLabels,
    #[serde(default)]
    pub interfaces: RawInterfaces,
    #[serde(default)]
    pub topology: RawResolver,
    #[serde(default)]
    pub docker: RawDocker,
    #[serde(default)]
    pub vm: RawVm,
    #[serde(default)]
    pub lxc: RawResolver,
    #[serde(default)]
    pub incus: RawIncus,
    #[serde(default)]
    pub truenas: RawTrueNas,
    #[serde(default)]
    pub commands: RawCommands,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncus {
    pub enabled: Option<bool>,
    pub socket: Option<PathBuf>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrueNas {
    pub midclt_command: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommands {
    pub chroot: Option<bool>,
    pub timeout: Option<String>,
    pub max_output_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVm {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub sources: Option<Vec<VmLookup>>,
    pub virsh_command: Option<Vec<String>>,
    pub virsh_uri: Option<String>,
    // Keys that moved, kept only to say where they went.
    pub midclt_command: Option<toml::Value>,
    pub chroot: Option<toml::Value>,
    pub command_timeout: Option<toml::Value>,
    pub max_output_bytes: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub listen_address: Option<String>,
    pub telemetry_path: Option<String>,
    pub read_header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub shutdown_timeout: Option<String>,
    pub max_requests: Option<usize>,
    pub config_file: Option<PathBuf>,
    pub compression: Option<Compression>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetdev {
    pub max_bytes: Option<usize>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    pub rootfs: Option<PathBuf>,
    pub procfs: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabels {
    pub owner_label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterfaces {
    pub include: Option<String>,
    pub exclude: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    pub socket: Option<String>,
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_response_bytes: Option<usize>,
}

impl RawConfig {
    pub fn from_toml(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        RawConfig::from_toml(&text, path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
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

/// Docker's checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    pub socket: PathBuf,
    pub schedule: Schedule,
    /// A larger API response fails the call.
    pub max_response_bytes: usize,
}

/// Bounds on HTTP clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's first byte (or its accept) to its request's last header.
    pub read_header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// A response that makes no progress (the client does not read) this long is cut.
    pub write_timeout: Duration,
    /// Open connections; above it an idle one is closed for a new one.
    pub max_connections: usize,
    /// After SIGTERM, in-flight requests get this long before the process exits.
    pub shutdown_timeout: Duration,
    /// Scrapes served at once (node_exporter's `--web.max-requests`); above
    /// it, 503. `None`: no limit.
    pub max_requests: Option<usize>,
    /// When a client that accepts gzip gets it.
    pub compression: Compression,
}

/// When a resolver refreshes, and how long a refresh may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    pub timeout: Duration,
}

/// With `[web] compression = "auto"`, a scrape of at least this many
/// interfaces is gzipped for a client that accepts it. Measured on this
/// project's 2-core machine (benches/scrape.rs, `gzip_*`): see the README.
pub const GZIP_MIN_INTERFACES: usize = 1000;

/// The live view's page and its data; both read net/dev as a scrape does.
pub const PAGE_PATH: &str = "/";
pub const API_PATH: &str = "/api/v1/interfaces";
/// Every path besides the telemetry path, which may be none of them.
pub const FIXED_PATHS: [&str; 5] = [PAGE_PATH, API_PATH, "/live.js", "/live.css", "/-/healthy"];

/// When a scrape is gzipped for a client that accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// From [`GZIP_MIN_INTERFACES`] interfaces, where it pays.
    Auto,
    Always,
    Never,
}

/// Bounds on reading net/dev.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetdevLimits {
    pub max_bytes: usize,
    /// For a net/dev that is not on procfs (a fixture tree, another mount).
    pub timeout: Duration,
}

/// Where VMs are looked up (`[vm] sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmLookup {
    Midclt,
    Virsh,
    Qemu,
}

impl VmLookup {
    pub fn name(self) -> &'static str {
        match self {
            VmLookup::Midclt => "midclt",
            VmLookup::Virsh => "virsh",
            VmLookup::Qemu => "qemu",
        }
    }
}

/// The VM resolver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSettings {
    pub sources: Vec<VmLookup>,
    pub virsh_command: Vec<String>,
    /// `-c` for virsh; empty: virsh's default connection.
    pub virsh_uri: String,
}

/// The VM resolver's checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub schedule: Schedule,
    pub settings: VmSettings,
}

/// The Incus resolver's checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncusConfig {
    pub schedule: Schedule,
    /// A path on the host (under `--path.rootfs`).
    pub socket: PathBuf,
    pub max_response_bytes: usize,
}

/// How external tools (midclt, virsh) are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Inside `--path.rootfs` (chroot) when that is not `/`.
    pub chroot: bool,
    pub timeout: Duration,
    pub max_output_bytes: usize,
    /// TrueNAS's middleware client, before the method: `midclt call`.
    pub midclt: Vec<String>,
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
}

impl Config {
    /// Reads `--config.file` if given, then applies the flags over it.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let raw = match &cli.config_file {
            Some(path) => RawConfig::load(path)?,
            None => RawConfig::default(),
        };
        Config::build(raw, cli)
    }

    /// Flags override the file; then every value is checked.
    pub fn build(raw: RawConfig, cli: &Cli) -> Result<Config, ConfigError> {
        let listen_address = cli
            .listen_address
            .clone()
            .or(raw.web.listen_address)
            .unwrap_or_else(|| ":9551".into());
        check_listen_address(&listen_address)?;

        let telemetry_path = cli
            .telemetry_path
            .clone()
            .or(raw.web.telemetry_path)
            .unwrap_or_else(|| "/metrics".into());
        if !telemetry_path.starts_with('/') {
            return Err(invalid(
                "web.telemetry_path",
                format!("{telemetry_path:?} must start with /"),
            ));
        }
        if FIXED_PATHS.contains(&telemetry_path.as_str()) {
            return Err(invalid(
                "web.telemetry_path",
                format!("{telemetry_path:?} is taken by the live view or the health check"),
            ));
        }

        let log_level = match cli
            .log_level
            .clone()
            .or(raw.log.level)
            .as_deref()
            .unwrap_or("info")
        {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            other => {
                return Err(invalid(
                    "log.level",
                    format!("{other:?} is not one of debug, info, warn, error"),
                ));
            }
        };

        let owner_label = raw.labels.owner_label.unwrap_or_else(|| OWNER_LABEL.into());
        check_owner_label(&owner_label)?;

        let docker_socket = cli
            .docker_socket
            .clone()
            .or(raw.docker.socket)
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        let docker = resolver_key(
            ("docker.interval", "docker.timeout"),
            RawResolver {
                enabled: raw.docker.enabled,
                interval: raw.docker.interval,
                timeout: raw.docker.timeout,
            },
            Duration::from_secs(30),
            Duration::from_secs(10),
        )?
        .filter(|_| !docker_socket.is_empty())
        .map(|schedule| DockerConfig {
            socket: docker_socket.into(),
            schedule,
            max_response_bytes: raw.docker.max_response_bytes.unwrap_or(16 << 20),
        });

        let vm_schedule = resolver_key(
            ("vm.interval", "vm.timeout"),
            RawResolver {
                enabled: raw.vm.enabled,
                interval: raw.vm.interval,
                timeout: raw.vm.timeout,
            },
            // midclt is a Python client that takes seconds to start.
            Duration::from_secs(60),
            Duration::from_secs(30),
        )?;
        for (key, value, now) in [
            (
                "vm.midclt_command",
                raw.vm.midclt_command.is_some(),
                "truenas.midclt_command (without the method)",
            ),
            ("vm.chroot", raw.vm.chroot.is_some(), "commands.chroot"),
            (
                "vm.command_timeout",
                raw.vm.command_timeout.is_some(),
                "commands.timeout",
            ),
            (
                "vm.max_output_bytes",
                raw.vm.max_output_bytes.is_some(),
                "commands.max_output_bytes",
            ),
        ] {
            if value {
                return Err(invalid(key, format!("has moved to {now}")));
            }
        }
        let vm_settings = vm_settings(raw.vm.sources, raw.vm.virsh_command, raw.vm.virsh_uri)?;
        let commands = CommandConfig {
            chroot: raw.commands.chroot.unwrap_or(true),
            timeout: duration_key(
                "commands.timeout",
                raw.commands.timeout,
                Duration::from_secs(10),
            )?,
            max_output_bytes: positive(
                "commands.max_output_bytes",
                raw.commands.max_output_bytes,
                16 << 20,
            )?,
            midclt: program(
                "truenas.midclt_command",
                raw.truenas.midclt_command,
                &["midclt", "call"],
            )?,
        };
        let incus = resolver_key(
            ("incus.interval", "incus.timeout"),
            RawResolver {
                enabled: raw.incus.enabled,
                interval: raw.incus.interval,
                timeout: raw.incus.timeout,
            },
            Duration::from_secs(30),
            Duration::from_secs(15),
        )?
        .map(|schedule| IncusConfig {
            schedule,
            socket: raw
                .incus
                .socket
                .unwrap_or_else(|| "/var/lib/incus/unix.socket".into()),
            max_response_bytes: raw.incus.max_response_bytes.unwrap_or(16 << 20),
        });
        let http = HttpLimits {
            read_header_timeout: duration_key(
                "web.read_header_timeout",
                raw.web.read_header_timeout,
                Duration::from_secs(10),
            )?,
            idle_timeout: duration_key(
                "web.idle_timeout",
                raw.web.idle_timeout,
                Duration::from_secs(120),
            )?,
            write_timeout: duration_key(
                "web.write_timeout",
                raw.web.write_timeout,
                Duration::from_secs(10),
            )?,
            max_connections: positive("web.max_connections", raw.web.max_connections, 256)?,
            shutdown_timeout: duration_key(
                "web.shutdown_timeout",
                raw.web.shutdown_timeout,
                Duration::from_secs(5),
            )?,
            max_requests: Some(cli.max_requests.or(raw.web.max_requests).unwrap_or(40))
                .filter(|&n| n > 0),
            compression: raw.web.compression.unwrap_or(Compression::Auto),
        };
        let netdev = NetdevLimits {
            max_bytes: positive("netdev.max_bytes", raw.netdev.max_bytes, 32 << 20)?,
            timeout: duration_key("netdev.timeout", raw.netdev.timeout, Duration::from_secs(5))?,
        };

        let mode = match (cli.once, cli.healthcheck) {
            (_, true) => RunMode::Healthcheck,
            (true, false) => RunMode::Once,
            (false, false) => RunMode::Serve,
        };

        Ok(Config {
            mode,
            listen_address,
            telemetry_path,
            http,
            web_config_file: cli
                .web_config_file
                .clone()
                .or(raw.web.config_file)
                .filter(|p| !p.as_os_str().is_empty()),
            netdev,
            rootfs: cli
                .rootfs
                .clone()
                .or(raw.paths.rootfs)
                .unwrap_or_else(|| "/".into()),
            procfs: cli
                .procfs
                .clone()
                .or(raw.paths.procfs)
                .unwrap_or_else(|| "/proc".into()),
            log_level,
            labels: LabelSettings {
                owner_label,
                filter: InterfaceFilter {
                    include: regex_key("interfaces.include", raw.interfaces.include)?,
                    exclude: regex_key("interfaces.exclude", raw.interfaces.exclude)?,
                },
            },
            topology: resolver_key(
                ("topology.interval", "topology.timeout"),
                raw.topology,
                Duration::from_secs(10),
                Duration::from_secs(5),
            )?,
            docker,
            vm: vm_schedule.map(|schedule| VmConfig {
                schedule,
                settings: vm_settings,
            }),
            lxc: resolver_key(
                ("lxc.interval", "lxc.timeout"),
                raw.lxc,
                Duration::from_secs(30),
                Duration::from_secs(15),
            )?,
            incus,
            commands,
        })
    }
}

fn vm_settings(
    sources: Option<Vec<VmLookup>>,
    virsh: Option<Vec<String>>,
    virsh_uri: Option<String>,
) -> Result<VmSettings, ConfigError> {
    let sources =
        sources.unwrap_or_else(|| vec![VmLookup::Midclt, VmLookup::Virsh, VmLookup::Qemu]);
    if sources.is_empty() {
        return Err(invalid(
            "vm.sources",
            "is empty; set vm.enabled = false to turn VMs off",
        ));
    }
    let mut seen = sources.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != sources.len() {
        return Err(invalid("vm.sources", "names a source twice"));
    }
    Ok(VmSettings {
        sources,
        virsh_command: program("vm.virsh_command", virsh, &["virsh"])?,
        virsh_uri: virsh_uri.unwrap_or_default(),
    })
}

/// A command line from the config: a program and its arguments.
fn program(
    key: &'static str,
    value: Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<String>, ConfigError> {
    match value {
        Some(v) if v.is_empty() || v[0].is_empty() => Err(invalid(key, "must name a program")),
        Some(v) => Ok(v),
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
    }
}

fn check_listen_address(addr: &str) -> Result<(), ConfigError> {
    let port = addr.rsplit_once(':').map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(invalid(
            "web.listen_address",
            format!("{addr:?} is not HOST:PORT or :PORT"),
        )),
    }
}

/// A Prometheus label name that none of the exporter's other labels uses.
fn check_owner_label(name: &str) -> Result<(), ConfigError> {
    let valid = Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").is_ok_and(|r| r.is_match(name));
    if !valid || name.starts_with("__") {
        return Err(invalid(
            "labels.owner_label",
            format!("{name:?} is not a valid Prometheus label name"),
        ));
    }
    if name != OWNER_LABEL && LABEL_NAMES.contains(&name) {
        return Err(invalid(
            "labels.owner_label",
            format!("{name:?} is already one of the exporter's labels"),
        ));
    }
    Ok(())
}

fn regex_key(key: &'static str, value: Option<String>) -> Result<Option<Regex>, ConfigError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Regex::new(&v)
            .map(Some)
            .map_err(|e| invalid(key, e.to_string())),
    }
}

fn duration_key(
    key: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(&text).map_err(|e| invalid(key, format!("{text:?}: {e}")))?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

/// A count or size key: its value, or the default; never zero.
fn positive(key: &'static str, value: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(invalid(key, "must be greater than zero")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// Resolver intervals below this are refused: "1ms" is a typo for "1m" far
/// more often than a wish, and it would spin a core.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A resolver's schedule, or `None` when it is switched off. Its keys are
/// checked either way, so a typo in a disabled section is still an error.
fn resolver_key(
    keys: (&'static str, &'static str),
    raw: RawResolver,
    interval: Duration,
    timeout: Duration,
) -> Result<Option<Schedule>, ConfigError> {
    let schedule = Schedule {
        interval: duration_key(keys.0, raw.interval, interval)?,
        timeout: duration_key(keys.1, raw.timeout, timeout)?,
    };
    if schedule.interval < MIN_INTERVAL {
        return Err(invalid(
            keys.0,
            format!(
                "{} is below the minimum of {} (a typo for \"1m\"?)",
                humantime::format_duration(schedule.interval),
                humantime::format_duration(MIN_INTERVAL)
            ),
        ));
    }
    Ok(raw.enabled.unwrap_or(true).then_some(schedule))
}

#[cfg(test)]
mod tests {
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
        let text = include_str!("../config.example.toml");
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
            ("[web]\ntelemetry_path = \"/\"", "web.telemetry_path"),
            (
                "[web]\ntelemetry_path = \"/api/v1/interfaces\"",
                "web.telemetry_path",
            ),
            ("[web]\nlisten_address = \"9551\"", "web.listen_address"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("[vm]\nsources = []", "vm.sources"),
            ("[truenas]\nmidclt_command = []", "truenas.midclt_command"),
            ("[commands]\ntimeout = \"x\"", "commands.timeout"),
            ("[vm]\ncommand_timeout = \"15s\"", "commands.timeout"),
            (
                "[vm]\nmidclt_command = [\"midclt\", \"call\", \"vm.query\"]",
                "truenas.midclt_command",
            ),
            ("[vm]\nsources = [\"qemu\", \"qemu\"]", "vm.sources"),
            ("[incus]\ninterval = \"10ms\"", "incus.interval"),
            ("[vm]\nsources = [\"libvirt\"]", "libvirt"),
            ("[topology]\ninterval = \"1ms\"", "topology.interval"),
            ("[docker]\ninterval = \"999ms\"", "docker.interval"),
            ("[web]\nmax_connections = 0", "web.max_connections"),
            ("[web]\nidle_timeout = \"never\"", "web.idle_timeout"),
            ("[netdev]\nmax_bytes = 0", "netdev.max_bytes"),
        ] {
            let err = build(toml, &Cli::default()).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let err = build("[topology]\ninterval = 5", &Cli::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("interval"), "{err}");
    }
}
