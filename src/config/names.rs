//! `[names]`: where peers' names come from. The hosts table (an address or a
//! network to a name, the longest prefix winning) names what nothing else
//! does; the rest says how the servers and DNS are asked.

use std::time::Duration;

use ipnet::IpNet;

use crate::config::ConfigError;
use crate::config::check::{duration, invalid, program};
use crate::config::defaults as d;
use crate::config::raw::RawNames;
use crate::config::resolvers::{self, Schedule};

/// Rows the hosts table may have: it is searched per named peer.
pub const MAX_HOSTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct NamesConfig {
    pub schedule: Schedule,
    /// smbstatus and its arguments before `--json` (on the host, through
    /// the command runner).
    pub smbstatus_command: Vec<String>,
    /// Networks and their names, longest prefix first.
    pub hosts: Vec<(IpNet, String)>,
    pub reverse_dns: bool,
    /// One reverse lookup's time at most.
    pub dns_timeout: Duration,
    /// How long an answer (or the lack of one) is kept.
    pub dns_cache: Duration,
}

impl NamesConfig {
    /// The table's name for `ip`: the longest prefix that holds it.
    pub fn host_name(&self, ip: std::net::IpAddr) -> Option<&str> {
        self.hosts
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, name)| name.as_str())
    }
}

impl RawNames {
    pub(crate) fn resolve(self) -> Result<Option<NamesConfig>, ConfigError> {
        let schedule = resolvers::NAMES.checked(self.interval, self.timeout)?;
        let dns_timeout = duration(&d::NAMES_DNS_TIMEOUT, self.dns_timeout)?;
        if dns_timeout >= schedule.timeout {
            return Err(invalid(
                d::NAMES_DNS_TIMEOUT.key,
                format!(
                    "below names.timeout ({})",
                    humantime::format_duration(schedule.timeout)
                ),
            ));
        }
        let hosts = hosts(self.hosts.unwrap_or_default())?;
        let config = NamesConfig {
            schedule,
            smbstatus_command: program(&d::NAMES_SMBSTATUS_COMMAND, self.smbstatus_command)?,
            hosts,
            reverse_dns: self.reverse_dns.unwrap_or(d::NAMES_REVERSE_DNS.default),
            dns_timeout,
            dns_cache: duration(&d::NAMES_DNS_CACHE, self.dns_cache)?,
        };
        Ok(self
            .enabled
            .unwrap_or(d::NAMES_ENABLED.default)
            .then_some(config))
    }
}

/// The hosts table, checked: each key an address or a network, each name
/// one a label can carry; longest prefix first.
fn hosts(
    table: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(IpNet, String)>, ConfigError> {
    let key = d::NAMES_HOSTS.key;
    if table.len() > MAX_HOSTS {
        return Err(invalid(key, format!("at most {MAX_HOSTS} rows")));
    }
    let mut rows = Vec::with_capacity(table.len());
    for (at, name) in table {
        let net = at
            .parse::<IpNet>()
            .or_else(|_| at.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                invalid(
                    key,
                    format!("\"{at}\" is not an address or a network (\"192.168.1.20\", \"192.168.1.0/24\")"),
                )
            })?;
        let cleaned = crate::model::peer::clean(&name)
            .filter(|c| *c == name)
            .ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "the name of \"{at}\" must be 1 to {} bytes with no control characters",
                        crate::model::peer::MAX_VALUE
                    ),
                )
            })?;
        // A v4-mapped network names the IPv4 addresses the counters show.
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
                .addr()
                .to_ipv4_mapped()
                .and_then(|v4| IpNet::new(v4.into(), v6.prefix_len() - 96).ok())
                .unwrap_or(net),
            net => net,
        };
        rows.push((net.trunc(), cleaned));
    }
    rows.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(toml: &str) -> Result<Option<NamesConfig>, ConfigError> {
        let raw: RawNames = toml::from_str(toml).unwrap();
        raw.resolve()
    }

    #[test]
    fn the_longest_prefix_names_an_address() {
        let c = names(
            "[hosts]\n\"10.0.0.0/8\" = \"lan\"\n\"10.0.1.7\" = \"nas-backup\"\n\"fd00::/8\" = \"v6\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.host_name("10.0.1.7".parse().unwrap()), Some("nas-backup"));
        assert_eq!(c.host_name("10.9.9.9".parse().unwrap()), Some("lan"));
        assert_eq!(c.host_name("fd12::1".parse().unwrap()), Some("v6"));
        assert_eq!(c.host_name("192.168.1.1".parse().unwrap()), None);
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let e = names("[hosts]\n\"router\" = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("names.hosts") && e.contains("not an address"),
            "{e}"
        );
        let e = names("[hosts]\n\"10.0.0.1\" = \"a\\nb\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("control characters"), "{e}");
        let e = names("dns_timeout = \"20s\"\n").unwrap_err().to_string();
        assert!(e.contains("names.dns_timeout"), "{e}");
        assert!(names("enabled = false\n").unwrap().is_none());
    }
}
