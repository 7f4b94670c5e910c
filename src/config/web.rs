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
        check_listen_address(&listen_address)
            .map_err(|reason| invalid(named(&d::LISTEN_ADDRESS, &cli.listen_address), reason))?;
        let telemetry_path = text(
            &d::TELEMETRY_PATH,
            cli.telemetry_path.clone().or(self.telemetry_path),
        );
        if !telemetry_path.starts_with('/') {
            return Err(invalid(
                named(&d::TELEMETRY_PATH, &cli.telemetry_path),
                format!("{telemetry_path:?} must start with /, such as \"/metrics\""),
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

/// What an error about `setting` calls it: its flag when the flag gave the
/// value, else its key.
fn named<T>(setting: &d::Setting<T>, flag_value: &Option<String>) -> &'static str {
    match (setting.flag, flag_value) {
        (Some(flag), Some(_)) => flag,
        _ => setting.key,
    }
}

/// `HOST:PORT` or `:PORT`, the port at most 65535 (0: any free port).
fn check_listen_address(addr: &str) -> Result<(), String> {
    const FORM: &str = "write HOST:PORT or :PORT, such as :9551 or 127.0.0.1:9551";
    let Some((_, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} has no port; {FORM}"));
    };
    if port.parse::<u16>().is_ok() {
        return Ok(());
    }
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port} is out of range (0-65535)"));
    }
    Err(format!("{addr:?} has no port number; {FORM}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_say_what_is_wrong() {
        assert_eq!(check_listen_address(":9551"), Ok(()));
        assert_eq!(check_listen_address("[::1]:0"), Ok(()));
        assert_eq!(
            check_listen_address(":99999").unwrap_err(),
            "port 99999 is out of range (0-65535)"
        );
        assert!(
            check_listen_address("9551")
                .unwrap_err()
                .starts_with("\"9551\" has no port;")
        );
        assert!(
            check_listen_address("host:http")
                .unwrap_err()
                .contains("such as :9551")
        );
    }
}
