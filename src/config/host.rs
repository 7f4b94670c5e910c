//! How the host is read, resolved: `[paths]` (its root and procfs),
//! `[netdev]` (the counters' file), and `[commands]` with `[truenas]` (how
//! midclt and virsh are run, and where the middleware's socket is).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::check::{duration, path, positive, program};
use crate::config::cli::Cli;
use crate::config::defaults as d;
use crate::config::raw::{RawCommands, RawNetdev, RawPaths, RawTrueNas};

/// Bounds on reading net/dev.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetdevLimits {
    pub max_bytes: usize,
    /// For a net/dev that is not on procfs (a fixture tree, another mount).
    pub timeout: Duration,
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

/// `[paths]` with the flags applied.
pub(super) struct Paths {
    pub rootfs: PathBuf,
    pub procfs: PathBuf,
}

impl RawPaths {
    pub(super) fn resolve(self, cli: &Cli) -> Paths {
        Paths {
            rootfs: path(&d::ROOTFS, cli.rootfs.clone().or(self.rootfs)),
            procfs: path(&d::PROCFS, cli.procfs.clone().or(self.procfs)),
        }
    }
}

impl RawNetdev {
    pub(super) fn resolve(self) -> Result<NetdevLimits, ConfigError> {
        Ok(NetdevLimits {
            max_bytes: positive(&d::NETDEV_MAX_BYTES, self.max_bytes)?,
            timeout: duration(&d::NETDEV_TIMEOUT, self.timeout)?,
        })
    }
}

impl RawCommands {
    /// With `[truenas]`: its midclt is one of the commands run.
    pub(super) fn resolve(self, truenas: RawTrueNas) -> Result<CommandConfig, ConfigError> {
        Ok(CommandConfig {
            chroot: self.chroot.unwrap_or(d::COMMANDS_CHROOT.default),
            timeout: duration(&d::COMMANDS_TIMEOUT, self.timeout)?,
            max_output_bytes: positive(&d::COMMANDS_MAX_OUTPUT, self.max_output_bytes)?,
            midclt: program(&d::MIDCLT_COMMAND, truenas.midclt_command)?,
            middleware_sockets: truenas.middleware_sockets.unwrap_or_else(|| {
                d::MIDDLEWARE_SOCKETS
                    .default
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            }),
        })
    }
}
