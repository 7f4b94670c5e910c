//! Names for the other end: who each remote peer is. The NAS protocols'
//! servers know their clients (SMB sessions with their users and shares,
//! NFS clients, iSCSI initiators), the config's `[names.hosts]` table names
//! what nothing else does, and reverse DNS names private addresses. A
//! refresh asks them all and publishes one [`PeerNames`]: one row per named
//! peer, written as the `net_peer_info` family and joined onto the byte
//! counters by `peer`. Names are never labels of the counters themselves: a
//! user or a share is not a property of an address (two users behind one
//! NAT, one session on many shares), and a label that changes would break a
//! counter's series.
//!
//! One module per protocol's parsers (`smb`, `nfs`, `iscsi`), pure over the
//! answers' text; `dns` is the async resolver and its cache.

pub(crate) mod iscsi;
pub(crate) mod nfs;
pub(crate) mod smb;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Entries one answer may list at most (sessions, clients): a larger answer
/// is refused whole, with a log line, rather than cut at an arbitrary row.
pub const MAX_ENTRIES: usize = 10_000;
/// A name, user, share or IQN longer than this is cut (at a character
/// boundary): no real one comes close.
pub const MAX_VALUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("{what} is not the expected JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{what} lists {count} entries, more than the {MAX_ENTRIES} accepted: refused")]
    TooMany { what: &'static str, count: usize },
}

/// What one source said about one remote address. Every text is already
/// [`clean`]: bounded, control characters replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub addr: IpAddr,
    /// A name for the machine (an NFSv4 client's host name).
    pub name: Option<String>,
    pub user: Option<String>,
    /// The client's machine as the SMB server reports it.
    pub machine: Option<String>,
    pub share: Option<String>,
    pub initiator: Option<String>,
    pub target: Option<String>,
}

impl Sighting {
    pub fn at(addr: IpAddr) -> Sighting {
        Sighting {
            addr,
            name: None,
            user: None,
            machine: None,
            share: None,
            initiator: None,
            target: None,
        }
    }
}

/// A text from outside made safe to keep: control characters (newlines
/// included) become spaces, surrounding space goes, and it is cut to
/// [`MAX_VALUE`] bytes. `None` when nothing is left.
pub fn clean(text: &str) -> Option<String> {
    let text = text.trim();
    let mut out = String::with_capacity(text.len().min(MAX_VALUE));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_VALUE {
            break;
        }
        out.push(c);
    }
    let out = out.trim_end().to_owned();
    (!out.is_empty()).then_some(out)
}

/// A client's address as the servers write it: `ipv4:10.0.0.2:50123` and
/// `ipv6:[fd00::2]:445` (Samba), `10.0.0.2:869` and `[fd00::2]:869` (nfsd),
/// or a bare address. A v4-mapped IPv6 address is its IPv4 address, as the
/// per-peer counters key it.
pub fn parse_endpoint(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text
        .strip_prefix("ipv4:")
        .or_else(|| text.strip_prefix("ipv6:"))
        .unwrap_or(text);
    let ip = if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else if let Some(rest) = text.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()?
    } else {
        let (host, port) = text.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        host.parse().ok()?
    };
    Some(ip.to_canonical())
}

/// Refuses an answer listing more than [`MAX_ENTRIES`].
pub fn bounded(what: &'static str, count: usize) -> Result<(), NamesError> {
    if count > MAX_ENTRIES {
        return Err(NamesError::TooMany { what, count });
    }
    Ok(())
}

/// What is known of one peer, joined from every source that named it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub peer_name: BTreeSet<String>,
    pub user: BTreeSet<String>,
    pub machine: BTreeSet<String>,
    pub share: BTreeSet<String>,
    pub initiator: BTreeSet<String>,
    pub target: BTreeSet<String>,
    /// The sources that said something, by name (`smbstatus`, `dns`).
    pub source: BTreeSet<&'static str>,
}

/// One named peer, as written and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRow {
    /// The peer's label, as the byte counters write it.
    pub peer: String,
    pub peer_name: String,
    pub user: String,
    pub machine: String,
    pub share: String,
    pub initiator: String,
    pub target: String,
    pub source: String,
    /// The label block, rendered once.
    pub rendered: Box<str>,
}

/// The names resolver's snapshot: one row per named peer, by peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerNames {
    pub rows: Vec<NameRow>,
}

impl PeerNames {
    /// The row of `peer`, if it is named.
    pub fn get(&self, peer: &str) -> Option<&NameRow> {
        self.rows
            .binary_search_by(|r| r.peer.as_str().cmp(peer))
            .ok()
            .map(|i| &self.rows[i])
    }

    /// Rows from what each peer label is known by; sorted by peer.
    pub fn from_known(known: BTreeMap<String, Known>) -> PeerNames {
        let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
        let rows = known
            .into_iter()
            .map(|(peer, k)| {
                let source = k.source.iter().copied().collect::<Vec<_>>().join(",");
                let (peer_name, user, machine) = (join(&k.peer_name), join(&k.user), join(&k.machine));
                let (share, initiator, target) = (join(&k.share), join(&k.initiator), join(&k.target));
                let pairs = [
                    ("peer", peer.as_str()),
                    ("peer_name", peer_name.as_str()),
                    ("user", user.as_str()),
                    ("machine", machine.as_str()),
                    ("share", share.as_str()),
                    ("initiator", initiator.as_str()),
                    ("target", target.as_str()),
                    ("source", source.as_str()),
                ];
                let rendered = crate::expose::encoder::render_labels(
                    pairs
                        .iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (*k, v.as_bytes())),
                );
                NameRow {
                    peer,
                    peer_name,
                    user,
                    machine,
                    share,
                    initiator,
                    target,
                    source,
                    rendered,
                }
            })
            .collect();
        PeerNames { rows }
    }
}
