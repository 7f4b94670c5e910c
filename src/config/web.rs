//! `[web]` resolved: where the exporter listens, the path it serves, the web
//! config file, and the bounds on HTTP clients ([`HttpLimits`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::check::{count, duration, invalid, text};
use crate::config::cli::Cli;
use crate::config::defaults::{self as d, Compression};
use crate::config::raw::RawWeb;

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

/// `[web]` checked, flags applied; [`crate::config::Config`] takes its fields.
pub(super) struct Web {
    pub listen_address: String,
    pub telemetry_path: String,
    pub http: HttpLimits,
    pub config_file: Option<PathBuf>,
}

impl RawWeb {
    pub(super) fn resolve(self, cli: &Cli) -> Result<Web, ConfigError> {
        let listen_address = text(
            &d::LISTEN_ADDRESS,
            cli.listen_address.clone().or(self.listen_address),
        );
        check_listen_address(&listen_address)?;
        let telemetry_path = text(
            &d::TELEMETRY_PATH,
            cli.telemetry_path.clone().or(self.telemetry_path),
        );
        if !telemetry_path.starts_with('/') {
            return Err(invalid(
                d::TELEMETRY_PATH.key,
                format!("{telemetry_path:?} must start with /"),
            ));
        }
        let http = HttpLimits {
            read_header_timeout: duration(&d::READ_HEADER_TIMEOUT, self.read_header_timeout)?,
            idle_timeout: duration(&d::IDLE_TIMEOUT, self.idle_timeout)?,
            write_timeout: duration(&d::WRITE_TIMEOUT, self.write_timeout)?,
            max_connections: count(&d::MAX_CONNECTIONS, self.max_connections)?,
            shutdown_timeout: duration(&d::SHUTDOWN_TIMEOUT, self.shutdown_timeout)?,
            // 0: no limit.
            max_requests: Some(
                cli.max_requests
                    .or(self.max_requests)
                    .unwrap_or(d::MAX_REQUESTS.default),
            )
            .filter(|&n| n > 0),
            compression: self.compression.unwrap_or(d::COMPRESSION.default),
        };
        Ok(Web {
            listen_address,
            telemetry_path,
            http,
            // Empty: none, as the default says.
            config_file: cli
                .web_config_file
                .clone()
                .or(self.config_file)
                .filter(|p| !p.as_os_str().is_empty()),
        })
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
