//! Configuration in two steps (as ripgrep does): [`RawConfig`] is the TOML file
//! as written, with unknown keys rejected by name; [`Config`] is the checked
//! result after CLI flags override it, with every value parsed and validated.
//! Its types (schedules, each resolver's settings, the server's fixed paths)
//! sit below everything that uses them: config imports no source and no part
//! of the server.

pub mod cli;
pub mod defaults;

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::config::cli::Cli;
use crate::config::defaults::{self as d, Bytes, Setting};
use crate::model::labels::{InterfaceFilter, LABEL_NAMES, LabelSettings, OWNER_LABEL};

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
    #[serde(default)]
    pub accounting: RawAccounting,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounting {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_cgroups: Option<usize>,
    pub cgroup: Option<PathBuf>,
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
    pub middleware_sockets: Option<Vec<PathBuf>>,
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

/// When a scrape is gzipped for a client that accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// From a thousand interfaces or so, where it pays (the server says exactly).
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

    pub fn from_name(name: &str) -> Option<VmLookup> {
        [VmLookup::Midclt, VmLookup::Virsh, VmLookup::Qemu]
            .into_iter()
            .find(|l| l.name() == name)
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
    /// Where the middleware's own socket may be, under `--path.rootfs`;
    /// empty: midclt only.
    pub middleware_sockets: Vec<PathBuf>,
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
}

#[derive(Debug, Clone)]
pub struct AccountingConfig {
    /// The cgroup tree's refresh.
    pub schedule: Schedule,
    /// Cgroups the kernel's maps hold at most.
    pub max_cgroups: u32,
    /// Where the programs are attached: `None` for the hierarchy's root.
    pub cgroup: Option<PathBuf>,
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

    /// Flags override the file; then every value is checked. Each value is
    /// the flag's, else the file's, else the default ([`crate::config::defaults`]).
    pub fn build(raw: RawConfig, cli: &Cli) -> Result<Config, ConfigError> {
        let (web, paths) = (raw.web, raw.paths);
        let listen_address = text(
            &d::LISTEN_ADDRESS,
            cli.listen_address.clone().or(web.listen_address),
        );
        check_listen_address(&listen_address)?;
        let telemetry_path = text(
            &d::TELEMETRY_PATH,
            cli.telemetry_path.clone().or(web.telemetry_path),
        );
        if !telemetry_path.starts_with('/') {
            return Err(invalid(
                d::TELEMETRY_PATH.key,
                format!("{telemetry_path:?} must start with /"),
            ));
        }
        let log_level = log_level(&text(
            &d::LOG_LEVEL,
            cli.log_level.clone().or(raw.log.level),
        ))?;
        let owner_label = text(&d::OWNER_LABEL, raw.labels.owner_label);
        check_owner_label(&owner_label)?;

        let docker_socket = text(
            &d::DOCKER_SOCKET,
            cli.docker_socket.clone().or(raw.docker.socket),
        );
        let docker = schedule(
            (&d::DOCKER_ENABLED, &d::DOCKER_INTERVAL, &d::DOCKER_TIMEOUT),
            (raw.docker.enabled, raw.docker.interval, raw.docker.timeout),
        )?
        .filter(|_| !docker_socket.is_empty())
        .map(|schedule| DockerConfig {
            socket: docker_socket.into(),
            schedule,
            max_response_bytes: bytes(&d::DOCKER_MAX_RESPONSE, raw.docker.max_response_bytes),
        });
        let vm_settings = vm_settings(raw.vm.sources, raw.vm.virsh_command, raw.vm.virsh_uri)?;
        let vm = schedule(
            (&d::VM_ENABLED, &d::VM_INTERVAL, &d::VM_TIMEOUT),
            (raw.vm.enabled, raw.vm.interval, raw.vm.timeout),
        )?
        .map(|schedule| VmConfig {
            schedule,
            settings: vm_settings,
        });
        let incus_socket = raw.incus.socket;
        let incus = schedule(
            (&d::INCUS_ENABLED, &d::INCUS_INTERVAL, &d::INCUS_TIMEOUT),
            (raw.incus.enabled, raw.incus.interval, raw.incus.timeout),
        )?
        .map(|schedule| IncusConfig {
            schedule,
            socket: incus_socket.unwrap_or_else(|| d::INCUS_SOCKET.default.into()),
            max_response_bytes: bytes(&d::INCUS_MAX_RESPONSE, raw.incus.max_response_bytes),
        });
        let topology = schedule(
            (
                &d::TOPOLOGY_ENABLED,
                &d::TOPOLOGY_INTERVAL,
                &d::TOPOLOGY_TIMEOUT,
            ),
            (
                raw.topology.enabled,
                raw.topology.interval,
                raw.topology.timeout,
            ),
        )?;
        let lxc = schedule(
            (&d::LXC_ENABLED, &d::LXC_INTERVAL, &d::LXC_TIMEOUT),
            (raw.lxc.enabled, raw.lxc.interval, raw.lxc.timeout),
        )?;
        let max_cgroups = count(&d::ACCOUNTING_MAX_CGROUPS, raw.accounting.max_cgroups)?;
        if max_cgroups > d::CGROUP_TREE_MAX {
            return Err(invalid(
                d::ACCOUNTING_MAX_CGROUPS.key,
                format!(
                    "at most {}: the cgroup tree is read no further",
                    d::CGROUP_TREE_MAX
                ),
            ));
        }
        let max_cgroups = max_cgroups as u32;
        let accounting_cgroup = raw.accounting.cgroup.filter(|p| !p.as_os_str().is_empty());
        let accounting = schedule(
            (
                &d::ACCOUNTING_ENABLED,
                &d::ACCOUNTING_INTERVAL,
                &d::ACCOUNTING_TIMEOUT,
            ),
            (
                raw.accounting.enabled,
                raw.accounting.interval,
                raw.accounting.timeout,
            ),
        )?
        .map(|schedule| AccountingConfig {
            schedule,
            max_cgroups,
            cgroup: accounting_cgroup,
        });
        let commands = CommandConfig {
            chroot: raw.commands.chroot.unwrap_or(d::COMMANDS_CHROOT.default),
            timeout: duration(&d::COMMANDS_TIMEOUT, raw.commands.timeout)?,
            max_output_bytes: positive(&d::COMMANDS_MAX_OUTPUT, raw.commands.max_output_bytes)?,
            midclt: program(&d::MIDCLT_COMMAND, raw.truenas.midclt_command)?,
            middleware_sockets: raw.truenas.middleware_sockets.unwrap_or_else(|| {
                d::MIDDLEWARE_SOCKETS
                    .default
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            }),
        };
        let http = HttpLimits {
            read_header_timeout: duration(&d::READ_HEADER_TIMEOUT, web.read_header_timeout)?,
            idle_timeout: duration(&d::IDLE_TIMEOUT, web.idle_timeout)?,
            write_timeout: duration(&d::WRITE_TIMEOUT, web.write_timeout)?,
            max_connections: count(&d::MAX_CONNECTIONS, web.max_connections)?,
            shutdown_timeout: duration(&d::SHUTDOWN_TIMEOUT, web.shutdown_timeout)?,
            // 0: no limit.
            max_requests: Some(
                cli.max_requests
                    .or(web.max_requests)
                    .unwrap_or(d::MAX_REQUESTS.default),
            )
            .filter(|&n| n > 0),
            compression: web.compression.unwrap_or(Compression::Auto),
        };
        let netdev = NetdevLimits {
            max_bytes: positive(&d::NETDEV_MAX_BYTES, raw.netdev.max_bytes)?,
            timeout: duration(&d::NETDEV_TIMEOUT, raw.netdev.timeout)?,
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
                .or(web.config_file)
                .filter(|p| !p.as_os_str().is_empty()),
            netdev,
            rootfs: cli
                .rootfs
                .clone()
                .or(paths.rootfs)
                .unwrap_or_else(|| d::ROOTFS.default.into()),
            procfs: cli
                .procfs
                .clone()
                .or(paths.procfs)
                .unwrap_or_else(|| d::PROCFS.default.into()),
            log_level,
            labels: LabelSettings {
                owner_label,
                filter: InterfaceFilter {
                    include: regex_key(d::INCLUDE.key, raw.interfaces.include)?,
                    exclude: regex_key(d::EXCLUDE.key, raw.interfaces.exclude)?,
                },
            },
            topology,
            docker,
            vm,
            lxc,
            incus,
            commands,
            accounting,
        })
    }
}

fn log_level(level: &str) -> Result<LogLevel, ConfigError> {
    Ok(match level {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        other => {
            return Err(invalid(
                d::LOG_LEVEL.key,
                format!("{other:?} is not one of debug, info, warn, error"),
            ));
        }
    })
}

/// A text value, or its default.
fn text(setting: &Setting<&'static str>, value: Option<String>) -> String {
    value.unwrap_or_else(|| setting.default.to_owned())
}

fn vm_settings(
    sources: Option<Vec<VmLookup>>,
    virsh: Option<Vec<String>>,
    virsh_uri: Option<String>,
) -> Result<VmSettings, ConfigError> {
    let sources = match sources {
        Some(sources) => sources,
        None => d::VM_SOURCES
            .default
            .iter()
            .filter_map(|s| VmLookup::from_name(s))
            .collect(),
    };
    if sources.is_empty() {
        return Err(invalid(
            d::VM_SOURCES.key,
            "is empty; set vm.enabled = false to turn VMs off",
        ));
    }
    let mut seen = sources.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != sources.len() {
        return Err(invalid(d::VM_SOURCES.key, "names a source twice"));
    }
    Ok(VmSettings {
        sources,
        virsh_command: program(&d::VIRSH_COMMAND, virsh)?,
        virsh_uri: virsh_uri.unwrap_or_else(|| d::VIRSH_URI.default.to_owned()),
    })
}

/// A command line from the config: a program and its arguments.
fn program(
    setting: &Setting<&'static [&'static str]>,
    value: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    match value {
        Some(v) if v.is_empty() || v[0].is_empty() => {
            Err(invalid(setting.key, "must name a program"))
        }
        Some(v) => Ok(v),
        None => Ok(setting.default.iter().map(|s| s.to_string()).collect()),
    }
}

fn check_listen_address(addr: &str) -> Result<(), ConfigError> {
    let port = addr.rsplit_once(':').map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(invalid(
            d::LISTEN_ADDRESS.key,
            format!("{addr:?} is not HOST:PORT or :PORT"),
        )),
    }
}

/// A Prometheus label name that none of the exporter's other labels uses.
fn check_owner_label(name: &str) -> Result<(), ConfigError> {
    let valid = Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").is_ok_and(|r| r.is_match(name));
    if !valid || name.starts_with("__") {
        return Err(invalid(
            d::OWNER_LABEL.key,
            format!("{name:?} is not a valid Prometheus label name"),
        ));
    }
    if name != OWNER_LABEL && LABEL_NAMES.contains(&name) {
        return Err(invalid(
            d::OWNER_LABEL.key,
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

/// A duration (`"10s"`, `"1m 30s"`), or its default; never zero.
fn duration(setting: &Setting<Duration>, value: Option<String>) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(setting.default);
    };
    let d = humantime::parse_duration(&text)
        .map_err(|e| invalid(setting.key, format!("{text:?}: {e}")))?;
    if d.is_zero() {
        return Err(invalid(setting.key, "must be greater than zero"));
    }
    Ok(d)
}

/// A count: its value, or the default; never zero.
fn count(setting: &Setting<usize>, value: Option<usize>) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(invalid(setting.key, "must be greater than zero")),
        Some(v) => Ok(v),
        None => Ok(setting.default),
    }
}

/// A size in bytes: its value, or the default; never zero.
fn positive(setting: &Setting<Bytes>, value: Option<usize>) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(invalid(setting.key, "must be greater than zero")),
        Some(v) => Ok(v),
        None => Ok(setting.default.0),
    }
}

/// The bytes of a size whose zero means nothing special (caps of API answers).
fn bytes(setting: &Setting<Bytes>, value: Option<usize>) -> usize {
    value.unwrap_or(setting.default.0)
}

/// Resolver intervals below this are refused: "1ms" is a typo for "1m" far
/// more often than a wish, and it would spin a core.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A resolver's schedule, or `None` when it is switched off. Its keys are
/// checked either way, so a typo in a disabled section is still an error.
fn schedule(
    settings: (&Setting<bool>, &Setting<Duration>, &Setting<Duration>),
    raw: (Option<bool>, Option<String>, Option<String>),
) -> Result<Option<Schedule>, ConfigError> {
    let (enabled, interval, timeout) = settings;
    let schedule = Schedule {
        interval: duration(interval, raw.1)?,
        timeout: duration(timeout, raw.2)?,
    };
    if schedule.interval < MIN_INTERVAL {
        return Err(invalid(
            interval.key,
            format!(
                "{} is below the minimum of {} (a typo for \"1m\"?)",
                humantime::format_duration(schedule.interval),
                humantime::format_duration(MIN_INTERVAL)
            ),
        ));
    }
    Ok(raw.0.unwrap_or(enabled.default).then_some(schedule))
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
}
