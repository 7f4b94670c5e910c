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

pub(crate) mod dns;
pub(crate) mod iscsi;
pub(crate) mod nfs;
pub(crate) mod smb;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bounded::Fs;
use crate::clients::command::{CommandError, Runner};
use crate::clients::middleware::{Middleware, MiddlewareError};
use crate::config::NamesConfig;
use crate::expose::encoder::{self, MetricType};
use crate::expose::telemetry::Telemetry;
pub use crate::model::peer::clean;
use crate::resolve::sources::{Lookup, ResolverId, Source, Worker, lookup_budget};

/// Entries one answer may list at most (sessions, clients): a larger answer
/// is refused whole, with a log line, rather than cut at an arbitrary row.
pub const MAX_ENTRIES: usize = 10_000;
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("{what} is not the expected JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{what} lists {count} entries, more than the {MAX_ENTRIES} accepted: refused")]
    TooMany { what: &'static str, count: usize },
    #[error("no source of names answered: {0}")]
    AllFailed(String),
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

/// A client's address as nfsd and the middleware write it: `10.0.0.2:869`,
/// `[fd00::2]:869`, `[fd00::2]` (SCST) or a bare address. A v4-mapped IPv6
/// address is its IPv4 address, as the per-peer counters key it. (Samba's
/// `ipv6:fd00::2:445` has no brackets: [`smb::samba_endpoint`].)
pub fn parse_endpoint(text: &str) -> Option<IpAddr> {
    let text = text.trim();
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

/// The info family's name and help.
pub const INFO: (&str, &str) = (
    "net_peer_info",
    "Names for a peer that the byte counters show by address (the user, machine and shares of its SMB sessions, its NFS client name, its iSCSI initiator, the hosts table, reverse DNS); join with * on (peer) group_left(...).",
);

impl PeerNames {
    /// Writes the info family: one series per named peer, value 1.
    pub fn write(&self, out: &mut Vec<u8>) {
        if self.rows.is_empty() {
            return;
        }
        let (name, help) = INFO;
        encoder::header(out, name, help, MetricType::Gauge);
        for row in &self.rows {
            encoder::sample(out, name, &row.rendered, 1u64);
        }
    }

    #[cfg(test)]
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
                let (peer_name, user, machine) =
                    (join(&k.peer_name), join(&k.user), join(&k.machine));
                let (share, initiator, target) =
                    (join(&k.share), join(&k.initiator), join(&k.target));
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

/// Where one protocol's names came from this refresh: which source
/// answered, and what it said (`None`: no such source on this host).
type Asked = Option<(&'static str, Result<Vec<Sighting>, String>)>;

/// The names resolver: asks each protocol's server for its clients (the
/// middleware first, the server's own tool or files where the middleware
/// is absent or refuses), joins them with the hosts table and reverse DNS,
/// and publishes [`PeerNames`]. A source this host lacks (no middleware,
/// no smbstatus, no nfsd, no SCST) is skipped and has no `source_up`.
pub struct NamesSource {
    config: NamesConfig,
    /// Public addresses fold as the counters fold them.
    fold: (u8, u8),
    middleware: Arc<Middleware>,
    runner: Runner,
    /// `<procfs>/fs/nfsd/clients`.
    nfsd_clients: PathBuf,
    /// `<rootfs>/sys/kernel/scst_tgt`.
    scst: PathBuf,
    worker: Worker,
    budget: Duration,
    dns: Option<dns::ReverseDns>,
    /// The peers the counters show now, to name beyond the servers' clients.
    shown: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    /// Each source's health ([`SOURCES`]): a [`Lookup`] has its
    /// `source_up` series from its first outcome, so a source this host
    /// lacks (never asked, or `None`) has none.
    lookups: Vec<Lookup>,
    /// What was said once: a source missing, the middleware refusing.
    said: Mutex<BTreeSet<&'static str>>,
}

/// Everything [`NamesSource::new`] takes from the exporter.
pub struct NamesInputs {
    pub config: NamesConfig,
    pub fold: (u8, u8),
    pub middleware: Arc<Middleware>,
    pub runner: Runner,
    pub rootfs: PathBuf,
    pub procfs: PathBuf,
    pub shown: Box<dyn Fn() -> Vec<String> + Send + Sync>,
}

/// Every source a refresh may ask, by its `source` label.
pub const SOURCES: [&str; 8] = [
    "smb.status",
    "smbstatus",
    "nfs.get_nfs4_clients",
    "nfsd",
    "nfs.get_nfs3_clients",
    "iscsi.global.sessions",
    "scst",
    "dns",
];

impl NamesSource {
    /// The middleware methods a refresh asks.
    pub const METHODS: [&'static str; 4] = [
        "smb.status",
        "nfs.get_nfs4_clients",
        "nfs.get_nfs3_clients",
        "iscsi.global.sessions",
    ];

    pub fn new(inputs: NamesInputs, telemetry: &Telemetry) -> NamesSource {
        let NamesInputs {
            config,
            fold,
            middleware,
            runner,
            rootfs,
            procfs,
            shown,
        } = inputs;
        let timeout = config.schedule.timeout;
        NamesSource {
            dns: config
                .reverse_dns
                .then(|| dns::ReverseDns::new(config.dns_timeout, config.dns_cache)),
            config,
            fold,
            middleware,
            runner,
            nfsd_clients: procfs.join("fs/nfsd/clients"),
            scst: rootfs.join("sys/kernel/scst_tgt"),
            worker: Worker::new(timeout),
            budget: lookup_budget(timeout),
            shown,
            lookups: SOURCES
                .map(|source| Lookup::new(ResolverId::Names, source, telemetry))
                .into(),
            said: Mutex::new(BTreeSet::new()),
        }
    }

    /// Records `outcome` as `source`'s (one of [`SOURCES`]).
    fn record<T>(&self, source: &str, outcome: Result<T, String>) -> Result<T, String> {
        match self.lookups.iter().find(|l| l.name() == source) {
            Some(lookup) => lookup.record(outcome),
            None => outcome,
        }
    }

    /// Logs `message` the first time `key` comes up.
    fn once(&self, key: &'static str, message: impl FnOnce()) {
        if self
            .said
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
        {
            message();
        }
    }

    /// The middleware's answer to `method`, parsed: `None` when this host has
    /// no middleware or it has no such method, or it refuses the call (25.10
    /// refuses the private `smb.status` to a caller without the role): then
    /// the caller asks the server itself.
    async fn middleware(
        &self,
        method: &'static str,
        parse: fn(&str, &'static str) -> Result<Vec<Sighting>, NamesError>,
    ) -> Asked {
        match self.middleware.call(method, self.budget).await {
            Ok(Some(json)) => Some((method, parse(&json, method).map_err(|e| e.to_string()))),
            Ok(None) => None,
            Err(MiddlewareError::Call { message, .. }) => {
                self.once(method, || {
                    tracing::info!(%method, %message, "the middleware refuses this call; asking the server itself")
                });
                None
            }
            Err(e) => Some((method, Err(e.to_string()))),
        }
    }

    async fn smb(&self) -> Asked {
        if let Some(asked) = self.middleware("smb.status", smb::parse_status).await {
            return Some(asked);
        }
        let mut argv = self.config.smbstatus_command.clone();
        argv.push("--json".to_owned());
        match self.runner.run_within(&argv, self.budget).await {
            Ok(json) => Some((
                "smbstatus",
                smb::parse_status(&json, "smbstatus --json").map_err(|e| e.to_string()),
            )),
            Err(CommandError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.once("no smbstatus", || {
                    tracing::info!(command = %argv[0], "no smbstatus on this host: SMB clients are not named")
                });
                None
            }
            Err(e) => Some(("smbstatus", Err(e.to_string()))),
        }
    }

    async fn nfs4(&self) -> Asked {
        if let Some(asked) = self
            .middleware("nfs.get_nfs4_clients", nfs::parse_nfs4_clients)
            .await
        {
            return Some(asked);
        }
        let dir = self.nfsd_clients.clone();
        self.files("nfsd", move |fs| nfs::read_clients(fs, &dir))
            .await
    }

    async fn iscsi(&self) -> Asked {
        if let Some(asked) = self
            .middleware("iscsi.global.sessions", iscsi::parse_sessions)
            .await
        {
            return Some(asked);
        }
        let root = self.scst.clone();
        self.files("scst", move |fs| iscsi::read_scst(fs, &root))
            .await
    }

    /// A server's files, read on the worker: `None` where they do not exist.
    async fn files(
        &self,
        source: &'static str,
        read: impl FnOnce(&Fs) -> std::io::Result<Vec<Sighting>> + Send + 'static,
    ) -> Asked {
        match self.worker.run(read).await {
            Ok(Ok(found)) => Some((source, Ok(found))),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
            Ok(Err(e)) => Some((source, Err(e.to_string()))),
            Err(e) => Some((source, Err(e.to_string()))),
        }
    }

    /// The label of `ip`, as the counters write it.
    fn label(&self, ip: IpAddr) -> String {
        crate::model::peer::peer_label(ip, self.fold.0, self.fold.1)
    }
}

/// What the servers and the hosts table say, by peer label.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Joined {
    pub known: BTreeMap<String, Known>,
    /// Addresses nothing named: for reverse DNS.
    pub unnamed: Vec<IpAddr>,
}

/// Joins each source's sightings by peer label (`label`: as the counters
/// write the address), adds the peers the counters show (`shown`), and
/// names from the hosts table every peer it holds, over any other name.
pub fn join(
    found: Vec<(&'static str, Vec<Sighting>)>,
    shown: &[String],
    config: &NamesConfig,
    label: impl Fn(IpAddr) -> String,
) -> Joined {
    let mut known: BTreeMap<String, Known> = BTreeMap::new();
    let mut addrs: BTreeMap<String, IpAddr> = BTreeMap::new();
    for (source, sightings) in found {
        for s in sightings {
            let peer = label(s.addr);
            addrs.entry(peer.clone()).or_insert(s.addr);
            let k = known.entry(peer).or_default();
            k.source.insert(source);
            k.peer_name.extend(s.name);
            k.user.extend(s.user);
            k.machine.extend(s.machine);
            k.share.extend(s.share);
            k.initiator.extend(s.initiator);
            k.target.extend(s.target);
        }
    }
    for peer in shown {
        if let Some(ip) = peer_address(peer) {
            addrs.entry(peer.clone()).or_insert(ip);
        }
    }
    let mut unnamed = Vec::new();
    for (peer, ip) in addrs {
        if let Some(name) = config.host_name(ip) {
            let k = known.entry(peer).or_default();
            k.peer_name = BTreeSet::from([name.to_owned()]);
            k.source.insert("config");
        } else if known.get(&peer).is_none_or(|k| k.peer_name.is_empty()) {
            unnamed.push(ip);
        }
    }
    Joined { known, unnamed }
}

/// A shown peer's address: the address, or a folded network's own.
fn peer_address(label: &str) -> Option<IpAddr> {
    label
        .parse::<IpAddr>()
        .ok()
        .or_else(|| label.parse::<ipnet::IpNet>().ok().map(|n| n.addr()))
}

impl Source for NamesSource {
    type Snapshot = PeerNames;
    type Error = NamesError;
    const ID: ResolverId = ResolverId::Names;

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }

    async fn refresh(&self) -> Result<PeerNames, NamesError> {
        let nfs3 = async {
            self.middleware("nfs.get_nfs3_clients", nfs::parse_nfs3_clients)
                .await
        };
        let (smb, nfs4, nfs3, iscsi) =
            futures_util::join!(self.smb(), self.nfs4(), nfs3, self.iscsi());
        let mut found = Vec::new();
        let (mut asked, mut failures) = (0, Vec::new());
        for (source, outcome) in [smb, nfs4, nfs3, iscsi].into_iter().flatten() {
            asked += 1;
            match self.record(source, outcome) {
                Ok(sightings) => found.push((source, sightings)),
                Err(_) => failures.push(source),
            }
        }
        let Joined { mut known, unnamed } =
            join(found, &(self.shown)(), &self.config, |ip| self.label(ip));
        if let Some(dns) = &self.dns
            && !unnamed.is_empty()
        {
            let answer = tokio::time::timeout(self.budget, dns.names(unnamed))
                .await
                .unwrap_or(Err(dns::DnsError::OutOfTime(self.budget)));
            asked += 1;
            match self.record("dns", answer.map_err(|e| e.to_string())) {
                Ok(names) => {
                    for (ip, name) in names {
                        let k = known.entry(self.label(ip)).or_default();
                        k.peer_name.insert(name);
                        k.source.insert("dns");
                    }
                }
                Err(_) => failures.push("dns"),
            }
        }
        if asked > 0 && failures.len() == asked {
            return Err(NamesError::AllFailed(failures.join(", ")));
        }
        Ok(PeerNames::from_known(known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hosts: &str) -> NamesConfig {
        let raw: crate::config::raw::RawNames = toml::from_str(hosts).unwrap();
        raw.resolve().unwrap().unwrap()
    }

    fn seen(addr: &str, f: impl FnOnce(&mut Sighting)) -> Sighting {
        let mut s = Sighting::at(addr.parse().unwrap());
        f(&mut s);
        s
    }

    #[test]
    fn sources_join_by_peer_and_the_table_wins() {
        let found = vec![
            (
                "smbstatus",
                vec![
                    seen("10.0.0.2", |s| {
                        s.user = Some("alice".into());
                        s.share = Some("photos".into());
                    }),
                    seen("10.0.0.2", |s| {
                        s.user = Some("alice".into());
                        s.share = Some("backup".into());
                    }),
                    seen("10.0.0.3", |s| s.user = Some("bob".into())),
                ],
            ),
            (
                "nfsd",
                vec![seen("10.0.0.3", |s| s.name = Some("bobs-nfs".into()))],
            ),
        ];
        let shown = vec!["10.0.0.9".to_owned(), "203.0.113.0/24".to_owned()];
        let c =
            config("[hosts]\n\"10.0.0.2\" = \"alice-laptop\"\n\"203.0.113.0/24\" = \"office\"\n");
        let Joined { known, unnamed } = join(found, &shown, &c, |ip| ip.to_string());
        let names = PeerNames::from_known(known);
        let alice = names.get("10.0.0.2").unwrap();
        assert_eq!(
            (
                alice.peer_name.as_str(),
                alice.user.as_str(),
                alice.share.as_str()
            ),
            ("alice-laptop", "alice", "backup,photos")
        );
        assert_eq!(alice.source, "config,smbstatus");
        let bob = names.get("10.0.0.3").unwrap();
        assert_eq!(
            (bob.peer_name.as_str(), bob.source.as_str()),
            ("bobs-nfs", "nfsd,smbstatus")
        );
        assert_eq!(names.get("203.0.113.0/24").unwrap().peer_name, "office");
        // Only the shown peer nothing named is left for DNS.
        assert_eq!(unnamed, vec!["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert!(names.get("10.0.0.9").is_none());
    }

    #[test]
    fn hostile_names_are_one_escaped_line() {
        let mut known = BTreeMap::new();
        known.insert(
            "10.0.0.2".to_owned(),
            Known {
                user: BTreeSet::from([clean("ev\"il\nuser\\").unwrap()]),
                source: BTreeSet::from(["smbstatus"]),
                ..Known::default()
            },
        );
        let mut out = Vec::new();
        PeerNames::from_known(known).write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                r#"net_peer_info{peer="10.0.0.2",user="ev\"il user\\",source="smbstatus"} 1"#
            ),
            "{text}"
        );
        assert_eq!(
            clean(&"x".repeat(1000)).unwrap().len(),
            crate::model::peer::MAX_VALUE
        );
        assert_eq!(clean(" \n\t "), None);
        assert_eq!(
            parse_endpoint("10.0.0.2:50123"),
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(
            parse_endpoint("[::ffff:10.0.0.2]:445"),
            Some("10.0.0.2".parse().unwrap())
        );
    }
}
