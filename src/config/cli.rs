//! Command-line flags. Every flag is optional here so that an unset flag falls
//! back to the config file, and the file to the default; `--help` shows the
//! defaults of [`crate::config::defaults`].

use std::path::PathBuf;

use clap::Parser;

use crate::config::defaults::{self as d, help};

#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "truenas-net-exporter",
    version,
    about = "Prometheus exporter for per-interface traffic, labelled with the container, VM or app that owns each interface."
)]
pub struct Cli {
    /// TOML configuration file (see config.example.toml).
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    #[arg(long = "web.listen-address", value_name = "ADDR", help = help("Address to listen on", &d::LISTEN_ADDRESS))]
    pub listen_address: Option<String>,
    #[arg(long = "web.telemetry-path", value_name = "PATH", help = help("Path under which to expose metrics", &d::TELEMETRY_PATH))]
    pub telemetry_path: Option<String>,
    #[arg(long = "web.config.file", value_name = "PATH", help = help("Web config file (exporter-toolkit format): TLS, basic auth, headers", &d::WEB_CONFIG_FILE))]
    pub web_config_file: Option<PathBuf>,
    #[arg(long = "web.max-requests", value_name = "N", help = help("Maximum number of scrapes served at once; 0 means no limit", &d::MAX_REQUESTS))]
    pub max_requests: Option<usize>,
    #[arg(long = "path.rootfs", value_name = "PATH", help = help("Host root filesystem; /host in a container", &d::ROOTFS))]
    pub rootfs: Option<PathBuf>,
    #[arg(long = "path.procfs", value_name = "PATH", help = help("procfs mount point; /host/proc in a container", &d::PROCFS))]
    pub procfs: Option<PathBuf>,
    #[arg(long = "docker.socket", value_name = "PATH", help = help("Docker Engine socket; empty disables Docker", &d::DOCKER_SOCKET))]
    pub docker_socket: Option<String>,
    #[arg(long = "log.level", value_name = "LEVEL", help = help("Log level: debug, info, warn or error", &d::LOG_LEVEL))]
    pub log_level: Option<String>,
    /// Refresh every enabled resolver once, print one scrape to stdout and
    /// exit (3 if net/dev cannot be read or the root filesystem is missing).
    #[arg(long)]
    pub once: bool,
    /// Ask the exporter listening on the configured address for `/-/ready`
    /// and exit 0 if it is ready (200, or 401 behind basic auth), 1 with the
    /// reason if not: a container healthcheck.
    #[arg(long, conflicts_with = "once")]
    pub healthcheck: bool,
}
