//! The resolvers' sections resolved: each one's [`Schedule`] (or `None` when
//! it is off) and its own settings, for `[topology]`, `[docker]`, `[vm]`,
//! `[lxc]`, `[incus]` and `[accounting]`. A section that is off is still
//! checked, so a mistake in it shows before it is switched on.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::check::{bytes, count, duration, invalid, path, program, text};
use crate::config::cli::Cli;
use crate::config::defaults::{self as d, Setting, VmLookup};
use crate::config::raw::{RawAccounting, RawDocker, RawIncus, RawResolver, RawVm};

/// When a resolver refreshes, and how long a refresh may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Resolver intervals below this are refused: "1ms" is a typo for "1m" far
/// more often than a wish, and it would spin a core.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Docker's checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    pub socket: PathBuf,
    pub schedule: Schedule,
    /// A larger API response fails the call.
    pub max_response_bytes: usize,
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

#[derive(Debug, Clone)]
pub struct AccountingConfig {
    /// The cgroup tree's refresh.
    pub schedule: Schedule,
    /// Cgroups the kernel's maps hold at most.
    pub max_cgroups: u32,
    /// Where the programs are attached: `None` for the hierarchy's root.
    pub cgroup: Option<PathBuf>,
}

/// A resolver's three schedule settings.
pub(super) struct Keys {
    enabled: Setting<bool>,
    interval: Setting<Duration>,
    timeout: Setting<Duration>,
}

pub(super) const TOPOLOGY: Keys = Keys {
    enabled: d::TOPOLOGY_ENABLED,
    interval: d::TOPOLOGY_INTERVAL,
    timeout: d::TOPOLOGY_TIMEOUT,
};

pub(super) const LXC: Keys = Keys {
    enabled: d::LXC_ENABLED,
    interval: d::LXC_INTERVAL,
    timeout: d::LXC_TIMEOUT,
};

const DOCKER: Keys = Keys {
    enabled: d::DOCKER_ENABLED,
    interval: d::DOCKER_INTERVAL,
    timeout: d::DOCKER_TIMEOUT,
};

pub(super) const PEERS: Keys = Keys {
    enabled: d::PEERS_ENABLED,
    interval: d::PEERS_INTERVAL,
    timeout: d::PEERS_TIMEOUT,
};

pub(super) const NAMES: Keys = Keys {
    enabled: d::NAMES_ENABLED,
    interval: d::NAMES_INTERVAL,
    timeout: d::NAMES_TIMEOUT,
};

const VM: Keys = Keys {
    enabled: d::VM_ENABLED,
    interval: d::VM_INTERVAL,
    timeout: d::VM_TIMEOUT,
};

const INCUS: Keys = Keys {
    enabled: d::INCUS_ENABLED,
    interval: d::INCUS_INTERVAL,
    timeout: d::INCUS_TIMEOUT,
};

const ACCOUNTING: Keys = Keys {
    enabled: d::ACCOUNTING_ENABLED,
    interval: d::ACCOUNTING_INTERVAL,
    timeout: d::ACCOUNTING_TIMEOUT,
};

impl Keys {
    /// The schedule, or `None` when the resolver is switched off. Its keys
    /// are checked either way.
    fn schedule(
        &self,
        enabled: Option<bool>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<Option<Schedule>, ConfigError> {
        let schedule = self.checked(interval, timeout)?;
        Ok(enabled.unwrap_or(self.enabled.default).then_some(schedule))
    }

    /// The schedule, on or off: its interval at least [`MIN_INTERVAL`].
    pub(super) fn checked(
        &self,
        interval: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<Schedule, ConfigError> {
        let schedule = Schedule {
            interval: duration(&self.interval, interval)?,
            timeout: duration(&self.timeout, timeout)?,
        };
        if schedule.interval < MIN_INTERVAL {
            return Err(invalid(
                self.interval.key,
                format!(
                    "{} is below the minimum of {} (a typo for \"1m\"?)",
                    humantime::format_duration(schedule.interval),
                    humantime::format_duration(MIN_INTERVAL)
                ),
            ));
        }
        Ok(schedule)
    }
}

impl RawResolver {
    /// `keys`: whose section this is (`[topology]` and `[lxc]` share the form).
    pub(super) fn resolve(self, keys: &Keys) -> Result<Option<Schedule>, ConfigError> {
        keys.schedule(self.enabled, self.interval, self.timeout)
    }
}

impl RawDocker {
    /// Off with `enabled = false` or an empty socket path.
    pub(super) fn resolve(self, cli: &Cli) -> Result<Option<DockerConfig>, ConfigError> {
        let socket = text(&d::DOCKER_SOCKET, cli.docker_socket.clone().or(self.socket));
        let max_response_bytes = bytes(&d::DOCKER_MAX_RESPONSE, self.max_response_bytes);
        Ok(DOCKER
            .schedule(self.enabled, self.interval, self.timeout)?
            .filter(|_| !socket.is_empty())
            .map(|schedule| DockerConfig {
                socket: socket.into(),
                schedule,
                max_response_bytes,
            }))
    }
}

impl RawVm {
    pub(super) fn resolve(self) -> Result<Option<VmConfig>, ConfigError> {
        let sources = self
            .sources
            .unwrap_or_else(|| d::VM_SOURCES.default.to_vec());
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
        let settings = VmSettings {
            sources,
            virsh_command: program(&d::VIRSH_COMMAND, self.virsh_command)?,
            virsh_uri: text(&d::VIRSH_URI, self.virsh_uri),
        };
        Ok(VM
            .schedule(self.enabled, self.interval, self.timeout)?
            .map(|schedule| VmConfig { schedule, settings }))
    }
}

impl RawIncus {
    pub(super) fn resolve(self) -> Result<Option<IncusConfig>, ConfigError> {
        let socket = path(&d::INCUS_SOCKET, self.socket);
        let max_response_bytes = bytes(&d::INCUS_MAX_RESPONSE, self.max_response_bytes);
        Ok(INCUS
            .schedule(self.enabled, self.interval, self.timeout)?
            .map(|schedule| IncusConfig {
                schedule,
                socket,
                max_response_bytes,
            }))
    }
}

impl RawAccounting {
    pub(super) fn resolve(self) -> Result<Option<AccountingConfig>, ConfigError> {
        let max_cgroups = count(&d::ACCOUNTING_MAX_CGROUPS, self.max_cgroups)?;
        // Within the cgroup tree's bound, and so within u32.
        let max_cgroups = u32::try_from(max_cgroups)
            .ok()
            .filter(|_| max_cgroups <= d::CGROUP_TREE_MAX)
            .ok_or_else(|| {
                invalid(
                    d::ACCOUNTING_MAX_CGROUPS.key,
                    format!(
                        "at most {}: the cgroup tree is read no further",
                        d::CGROUP_TREE_MAX
                    ),
                )
            })?;
        // Empty: the hierarchy's root, as the default says.
        let cgroup = self.cgroup.filter(|p| !p.as_os_str().is_empty());
        Ok(ACCOUNTING
            .schedule(self.enabled, self.interval, self.timeout)?
            .map(|schedule| AccountingConfig {
                schedule,
                max_cgroups,
                cgroup,
            }))
    }
}
