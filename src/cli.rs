//! Command-line flags. Every flag is optional here so that an unset flag falls
//! back to the config file, and the file to the built-in default.

use std::path::PathBuf;

use clap::Parser;

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
    /// Address to listen on [default: :9551].
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Path under which to expose metrics [default: /metrics].
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,
    /// Web config file (exporter-toolkit format): TLS, basic auth, headers.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// Maximum number of scrapes served at once; 0 means no limit [default: 40].
    #[arg(long = "web.max-requests", value_name = "N")]
    pub max_requests: Option<usize>,
    /// Host root filesystem; /host in a container [default: /].
    #[arg(long = "path.rootfs", value_name = "PATH")]
    pub rootfs: Option<PathBuf>,
    /// procfs mount point; /host/proc in a container [default: /proc].
    #[arg(long = "path.procfs", value_name = "PATH")]
    pub procfs: Option<PathBuf>,
    /// Docker Engine socket; empty disables Docker [default: /var/run/docker.sock].
    #[arg(long = "docker.socket", value_name = "PATH")]
    pub docker_socket: Option<String>,
    /// Log level: debug, info, warn or error [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Refresh every enabled resolver once, print one scrape to stdout and exit.
    #[arg(long)]
    pub once: bool,
    /// Ask the exporter listening on the configured address for `/-/healthy`
    /// and exit 0 if it answers (200, or 401 behind basic auth): a container
    /// healthcheck.
    #[arg(long, conflicts_with = "once")]
    pub healthcheck: bool,
}
