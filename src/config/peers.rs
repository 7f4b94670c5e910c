//! `[peers]`: bytes per remote peer and protocol. The port table names the
//! protocols (the defaults' table, each protocol the file names replacing
//! its row, `name = []` removing it); the rest bounds what is counted and
//! shown.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::check::{count, duration, invalid};
use crate::config::defaults as d;
use crate::config::raw::RawPeers;
use crate::config::resolvers::{self, Schedule};

/// Protocols the kernel's table can tell apart (their index is a byte, 0
/// meaning none).
pub const MAX_PROTOCOLS: usize = 255;
/// Peer series per workload and protocol, at most.
pub const MAX_TOP: usize = 1000;
/// The kernel map's size, at most: about 130 bytes an entry.
pub const MAX_PEERS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct PeersConfig {
    /// The background tick that reads the kernel's map and picks the series.
    pub schedule: Schedule,
    /// Peer series per workload, protocol and side.
    pub top: usize,
    /// Entries the kernel's map holds at most.
    pub max_peers: u32,
    /// A peer quiet this long leaves the map, and its series goes.
    pub idle: Duration,
    /// A series shown lives at least this long.
    pub min_lifetime: Duration,
    /// Public addresses fold into one peer per network of this prefix.
    pub fold_v4: u8,
    pub fold_v6: u8,
    /// Protocol names; a port's protocol index is its position plus one.
    pub protocols: Vec<Box<str>>,
    /// Each listed port and its protocol index.
    pub ports: Vec<(u16, u8)>,
}

impl PeersConfig {
    /// A protocol index's name; empty for none.
    pub fn protocol(&self, index: u8) -> &str {
        index
            .checked_sub(1)
            .and_then(|i| self.protocols.get(i as usize))
            .map_or("", |n| n)
    }

    /// The index of the protocol named `name`.
    pub fn protocol_index(&self, name: &str) -> Option<u8> {
        let at = self.protocols.iter().position(|p| &**p == name)?;
        u8::try_from(at + 1).ok()
    }
}

impl RawPeers {
    pub(super) fn resolve(self) -> Result<Option<PeersConfig>, ConfigError> {
        let schedule = resolvers::PEERS.checked(self.interval, self.timeout)?;
        let top = count(&d::PEERS_TOP, self.top)?;
        if top > MAX_TOP {
            return Err(invalid(d::PEERS_TOP.key, format!("at most {MAX_TOP}")));
        }
        let max_peers = count(&d::PEERS_MAX_PEERS, self.max_peers)?;
        let max_peers = u32::try_from(max_peers)
            .ok()
            .filter(|&n| n as usize <= MAX_PEERS)
            .ok_or_else(|| invalid(d::PEERS_MAX_PEERS.key, format!("at most {MAX_PEERS}")))?;
        let prefix = |setting: &d::Setting<usize>, value: Option<usize>, bits: usize| {
            let v = value.unwrap_or(setting.default);
            u8::try_from(v)
                .ok()
                .filter(|&p| (8..=bits).contains(&(p as usize)))
                .ok_or_else(|| invalid(setting.key, format!("a prefix length from 8 to {bits}")))
        };
        let fold_v4 = prefix(&d::PEERS_FOLD_PUBLIC_V4, self.fold_public_v4, 32)?;
        let fold_v6 = prefix(&d::PEERS_FOLD_PUBLIC_V6, self.fold_public_v6, 128)?;
        let (protocols, ports) = port_table(self.ports.unwrap_or_default())?;
        let idle = duration(&d::PEERS_IDLE, self.idle)?;
        let min_lifetime = duration(&d::PEERS_MIN_LIFETIME, self.min_lifetime)?;
        let enabled = self.enabled.unwrap_or(d::PEERS_ENABLED.default);
        Ok(enabled.then_some(PeersConfig {
            schedule,
            top,
            max_peers,
            idle,
            min_lifetime,
            fold_v4,
            fold_v6,
            protocols,
            ports,
        }))
    }
}

/// Protocol names, and each listed port with its protocol's index.
type PortTable = (Vec<Box<str>>, Vec<(u16, u8)>);

/// The default table with the file's rows over it: protocol names and each
/// listed port with its protocol's index.
fn port_table(overrides: BTreeMap<String, Vec<u16>>) -> Result<PortTable, ConfigError> {
    let key = d::PEERS_PORTS.key;
    let mut table: Vec<(String, Vec<u16>)> = d::PEERS_PORTS
        .default
        .iter()
        .filter(|(name, _)| !overrides.contains_key(*name))
        .map(|(name, ports)| ((*name).to_owned(), ports.to_vec()))
        .collect();
    for (name, ports) in overrides {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(invalid(
                key,
                format!("{name:?}: a protocol is named by 1 to 32 of a-z, 0-9, - and _"),
            ));
        }
        if !ports.is_empty() {
            table.push((name, ports));
        }
    }
    // One order whichever rows the file wrote.
    table.sort();
    if table.len() > MAX_PROTOCOLS {
        return Err(invalid(key, format!("at most {MAX_PROTOCOLS} protocols")));
    }
    let mut by_port: BTreeMap<u16, &str> = BTreeMap::new();
    let mut ports = Vec::new();
    for (i, (name, list)) in table.iter().enumerate() {
        for &port in list {
            if port == 0 {
                return Err(invalid(key, format!("{name}: port 0 is no port")));
            }
            if let Some(other) = by_port.insert(port, name) {
                return Err(invalid(
                    key,
                    format!("port {port} is listed for both {other} and {name}"),
                ));
            }
            ports.push((port, (i + 1) as u8));
        }
    }
    let names = table.into_iter().map(|(n, _)| n.into_boxed_str()).collect();
    Ok((names, ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml: &str) -> Result<Option<PeersConfig>, ConfigError> {
        #[derive(serde::Deserialize)]
        struct File {
            peers: RawPeers,
        }
        let file: File = toml::from_str(&format!("[peers]\n{toml}")).unwrap();
        file.peers.resolve()
    }

    #[test]
    fn the_default_table_and_overrides() {
        let c = resolve("").unwrap().unwrap();
        assert_eq!(c.top, 10);
        let smb = c.protocol_index("smb").unwrap();
        assert!(c.ports.contains(&(445, smb)) && c.ports.contains(&(139, smb)));
        assert_eq!(c.protocol(0), "");
        assert_eq!(c.protocol(smb), "smb");

        let c = resolve("[peers.ports]\nsmb = []\nminio = [9001]\ns3 = [9002]\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.protocol_index("smb"), None, "removed");
        let minio = c.protocol_index("minio").unwrap();
        assert!(c.ports.contains(&(9001, minio)));
        let s3 = c.protocol_index("s3").unwrap();
        assert!(c.ports.contains(&(9002, s3)) && !c.ports.iter().any(|p| p.0 == 9000));
        assert!(resolve("enabled = false").unwrap().is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |toml: &str| resolve(toml).unwrap_err().to_string();
        assert!(err("[peers.ports]\nweb = [80]").contains("port 80 is listed for both"));
        assert!(err("[peers.ports]\n\"Bad Name\" = [1]").contains("peers.ports"));
        assert!(err("[peers.ports]\nx = [0]").contains("port 0"));
        assert!(err("top = 0").contains("peers.top"));
        assert!(err("top = 5000").contains("at most 1000"));
        assert!(err("max_peers = 99999999").contains("peers.max_peers"));
        assert!(err("fold_public_v4 = 33").contains("peers.fold_public_v4"));
        assert!(err("idle = \"0s\"").contains("peers.idle"));
    }
}
