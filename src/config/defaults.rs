//! Every setting's default, declared once, in the type the setting has. The
//! config's sections read them from here, `--help` is written from them, and
//! tests check `config.example.toml` and docs/configuration.md's Flags and Limits tables
//! against [`ALL`]. The settings that are a choice of names (compression, log
//! level, VM lookups) are declared here too, each name written once: serde
//! reads it, [`ALL`] shows it.

use std::time::Duration;

use serde::Deserialize;

/// One setting: its key in the TOML file (`section.key`), its default, and
/// the flag that overrides it, if one does.
#[derive(Debug, Clone, Copy)]
pub struct Setting<T: 'static> {
    pub key: &'static str,
    pub default: T,
    pub flag: Option<&'static str>,
}

impl<T: Copy> Setting<T> {
    const fn new(key: &'static str, default: T) -> Setting<T> {
        Setting {
            key,
            default,
            flag: None,
        }
    }

    const fn flag(self, flag: &'static str) -> Setting<T> {
        Setting {
            flag: Some(flag),
            ..self
        }
    }
}

/// A size in bytes (shown as KiB or MiB where it divides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub usize);

/// An enum whose variants are written as names in the file: `name` is what
/// serde reads (an unknown name is an error that lists the known ones) and
/// what `--help` and the docs show.
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        pub enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every name, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The names of `list`, in its order (`N` is its length).
            pub const fn names<const N: usize>(list: &[$name]) -> [&'static str; N] {
                let mut names = [""; N];
                let mut i = 0;
                while i < N {
                    names[i] = list[i].name();
                    i += 1;
                }
                names
            }

            /// As [`ALL`] shows a default of this type.
            pub const fn shown(self) -> Shown {
                Shown::Text(self.name())
            }
        }
    };
}

choice! {
    /// When a scrape is gzipped for a client that accepts it.
    Compression {
        /// From a thousand interfaces or so, where it pays (the server says exactly).
        Auto = "auto",
        Always = "always",
        Never = "never",
    }
}

choice! {
    /// The least severe events logged.
    LogLevel {
        Debug = "debug",
        Info = "info",
        Warn = "warn",
        Error = "error",
    }
}

impl LogLevel {
    /// As tracing's filter takes it.
    pub const fn as_str(self) -> &'static str {
        self.name()
    }
}

choice! {
    /// Where VMs are looked up (`[vm] sources`).
    VmLookup {
        Midclt = "midclt",
        Virsh = "virsh",
        Qemu = "qemu",
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const MIB: usize = 1 << 20;

// [web]
pub const LISTEN_ADDRESS: Setting<&str> =
    Setting::new("web.listen_address", ":9551").flag("--web.listen-address");
pub const TELEMETRY_PATH: Setting<&str> =
    Setting::new("web.telemetry_path", "/metrics").flag("--web.telemetry-path");
pub const READ_HEADER_TIMEOUT: Setting<Duration> =
    Setting::new("web.read_header_timeout", secs(10));
pub const IDLE_TIMEOUT: Setting<Duration> = Setting::new("web.idle_timeout", secs(120));
pub const WRITE_TIMEOUT: Setting<Duration> = Setting::new("web.write_timeout", secs(10));
pub const MAX_CONNECTIONS: Setting<usize> = Setting::new("web.max_connections", 256);
pub const SHUTDOWN_TIMEOUT: Setting<Duration> = Setting::new("web.shutdown_timeout", secs(5));
pub const MAX_REQUESTS: Setting<usize> =
    Setting::new("web.max_requests", 40).flag("--web.max-requests");
pub const COMPRESSION: Setting<Compression> = Setting::new("web.compression", Compression::Auto);
pub const WEB_CONFIG_FILE: Setting<&str> =
    Setting::new("web.config_file", "").flag("--web.config.file");
// [paths]
pub const ROOTFS: Setting<&str> = Setting::new("paths.rootfs", "/").flag("--path.rootfs");
pub const PROCFS: Setting<&str> = Setting::new("paths.procfs", "/proc").flag("--path.procfs");
// [netdev]
pub const NETDEV_MAX_BYTES: Setting<Bytes> = Setting::new("netdev.max_bytes", Bytes(32 * MIB));
pub const NETDEV_TIMEOUT: Setting<Duration> = Setting::new("netdev.timeout", secs(5));
// [log], [labels], [interfaces]
pub const LOG_LEVEL: Setting<LogLevel> =
    Setting::new("log.level", LogLevel::Info).flag("--log.level");
pub const OWNER_LABEL: Setting<&str> = Setting::new("labels.owner_label", "instance");
pub const INCLUDE: Setting<&str> = Setting::new("interfaces.include", "");
pub const EXCLUDE: Setting<&str> = Setting::new("interfaces.exclude", "");
// [topology]
pub const TOPOLOGY_ENABLED: Setting<bool> = Setting::new("topology.enabled", true);
pub const TOPOLOGY_INTERVAL: Setting<Duration> = Setting::new("topology.interval", secs(10));
pub const TOPOLOGY_TIMEOUT: Setting<Duration> = Setting::new("topology.timeout", secs(5));
// [docker]
pub const DOCKER_ENABLED: Setting<bool> = Setting::new("docker.enabled", true);
pub const DOCKER_SOCKET: Setting<&str> =
    Setting::new("docker.socket", "/var/run/docker.sock").flag("--docker.socket");
pub const DOCKER_INTERVAL: Setting<Duration> = Setting::new("docker.interval", secs(30));
pub const DOCKER_TIMEOUT: Setting<Duration> = Setting::new("docker.timeout", secs(10));
pub const DOCKER_MAX_RESPONSE: Setting<Bytes> =
    Setting::new("docker.max_response_bytes", Bytes(16 * MIB));
// [vm]: midclt is a Python client that takes a while to start.
pub const VM_ENABLED: Setting<bool> = Setting::new("vm.enabled", true);
pub const VM_SOURCES: Setting<&[VmLookup]> = Setting::new(
    "vm.sources",
    &[VmLookup::Midclt, VmLookup::Virsh, VmLookup::Qemu],
);
pub const VM_INTERVAL: Setting<Duration> = Setting::new("vm.interval", secs(60));
pub const VM_TIMEOUT: Setting<Duration> = Setting::new("vm.timeout", secs(30));
pub const VIRSH_COMMAND: Setting<&[&str]> = Setting::new("vm.virsh_command", &["virsh"]);
pub const VIRSH_URI: Setting<&str> = Setting::new("vm.virsh_uri", "");
// [lxc]
pub const LXC_ENABLED: Setting<bool> = Setting::new("lxc.enabled", true);
pub const LXC_INTERVAL: Setting<Duration> = Setting::new("lxc.interval", secs(30));
pub const LXC_TIMEOUT: Setting<Duration> = Setting::new("lxc.timeout", secs(15));
// [incus]
pub const INCUS_ENABLED: Setting<bool> = Setting::new("incus.enabled", true);
pub const INCUS_SOCKET: Setting<&str> = Setting::new("incus.socket", "/var/lib/incus/unix.socket");
pub const INCUS_INTERVAL: Setting<Duration> = Setting::new("incus.interval", secs(30));
pub const INCUS_TIMEOUT: Setting<Duration> = Setting::new("incus.timeout", secs(15));
pub const INCUS_MAX_RESPONSE: Setting<Bytes> =
    Setting::new("incus.max_response_bytes", Bytes(16 * MIB));
// [truenas]
pub const MIDCLT_COMMAND: Setting<&[&str]> =
    Setting::new("truenas.midclt_command", &["midclt", "call"]);
/// Under `--path.rootfs`: 25.10 and earlier, then 26 and later.
pub const MIDDLEWARE_SOCKETS: Setting<&[&str]> = Setting::new(
    "truenas.middleware_sockets",
    &[
        "/var/run/middleware/middlewared.sock",
        "/run/middleware/middlewared.sock",
    ],
);
// [accounting]: traffic per cgroup, counted by the kernel.
pub const ACCOUNTING_ENABLED: Setting<bool> = Setting::new("accounting.enabled", true);
pub const ACCOUNTING_INTERVAL: Setting<Duration> = Setting::new("accounting.interval", secs(30));
pub const ACCOUNTING_TIMEOUT: Setting<Duration> = Setting::new("accounting.timeout", secs(10));
pub const ACCOUNTING_MAX_CGROUPS: Setting<usize> = Setting::new("accounting.max_cgroups", 4096);
/// Cgroups a read of the cgroup tree takes at most (a host has hundreds;
/// past this the rest is left out, and logged): `max_cgroups` above it
/// would be counters no cgroup could be named for.
pub const CGROUP_TREE_MAX: usize = 100_000;
pub const ACCOUNTING_CGROUP: Setting<&str> = Setting::new("accounting.cgroup", "");
// [peers]: bytes per remote peer and protocol, counted by the kernel beside
// [accounting] (and only where it counts).
pub const PEERS_ENABLED: Setting<bool> = Setting::new("peers.enabled", true);
pub const PEERS_INTERVAL: Setting<Duration> = Setting::new("peers.interval", secs(10));
pub const PEERS_TIMEOUT: Setting<Duration> = Setting::new("peers.timeout", secs(5));
pub const PEERS_TOP: Setting<usize> = Setting::new("peers.top", 10);
pub const PEERS_MAX_PEERS: Setting<usize> = Setting::new("peers.max_peers", 16384);
pub const PEERS_IDLE: Setting<Duration> = Setting::new("peers.idle", secs(300));
pub const PEERS_MIN_LIFETIME: Setting<Duration> = Setting::new("peers.min_lifetime", secs(60));
pub const PEERS_FOLD_PUBLIC_V4: Setting<usize> = Setting::new("peers.fold_public_v4", 32);
pub const PEERS_FOLD_PUBLIC_V6: Setting<usize> = Setting::new("peers.fold_public_v6", 128);
/// The services named by port: a listed local port means this host serves
/// the protocol, a listed remote port that it is the client.
pub const PEERS_PORTS: Setting<&[(&str, &[u16])]> = Setting::new(
    "peers.ports",
    &[
        ("smb", &[445, 139]),
        ("nfs", &[2049, 20049]),
        ("rpcbind", &[111]),
        ("iscsi", &[3260]),
        ("nvme-tcp", &[4420]),
        ("ssh", &[22]),
        ("ftp", &[21]),
        ("rsync", &[873]),
        ("http", &[80]),
        ("https", &[443]),
        ("s3", &[9000]),
        ("syncthing", &[22000]),
        ("snmp", &[161]),
        ("dns", &[53]),
    ],
);
// [names]: names for peers (SMB users and shares, NFS clients, iSCSI
// initiators, the hosts table, reverse DNS), written as net_peer_info.
pub const NAMES_ENABLED: Setting<bool> = Setting::new("names.enabled", true);
pub const NAMES_INTERVAL: Setting<Duration> = Setting::new("names.interval", secs(30));
pub const NAMES_TIMEOUT: Setting<Duration> = Setting::new("names.timeout", secs(15));
pub const NAMES_SMBSTATUS_COMMAND: Setting<&[&str]> =
    Setting::new("names.smbstatus_command", &["smbstatus"]);
pub const NAMES_REVERSE_DNS: Setting<bool> = Setting::new("names.reverse_dns", true);
pub const NAMES_DNS_TIMEOUT: Setting<Duration> = Setting::new("names.dns_timeout", secs(2));
pub const NAMES_DNS_CACHE: Setting<Duration> = Setting::new("names.dns_cache", secs(600));
/// Addresses or networks and their names; none by default.
pub const NAMES_HOSTS: Setting<&[(&str, &str)]> = Setting::new("names.hosts", &[]);
// [commands]: each command's timeout fits in 3/4 of the refresh timeout of
// every resolver that runs one (a test checks).
pub const COMMANDS_CHROOT: Setting<bool> = Setting::new("commands.chroot", true);
pub const COMMANDS_TIMEOUT: Setting<Duration> = Setting::new("commands.timeout", secs(10));
pub const COMMANDS_MAX_OUTPUT: Setting<Bytes> =
    Setting::new("commands.max_output_bytes", Bytes(16 * MIB));

/// A default as text, for `--help`, the example file and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    Text(&'static str),
    Duration(Duration),
    Count(usize),
    Bytes(usize),
    Bool(bool),
    List(&'static [&'static str]),
    /// A table of names to lists of ports.
    Ports(&'static [(&'static str, &'static [u16])]),
    /// A table of keys to texts.
    Table(&'static [(&'static str, &'static str)]),
}

impl Shown {
    /// As `--help` and docs/configuration.md's Flags table write it.
    pub fn plain(&self) -> String {
        match self {
            Shown::Text(t) => (*t).to_owned(),
            Shown::Duration(d) => humantime::format_duration(*d).to_string(),
            Shown::Count(n) | Shown::Bytes(n) => n.to_string(),
            Shown::Bool(b) => b.to_string(),
            Shown::List(l) => l.join(" "),
            Shown::Ports(table) => table
                .iter()
                .map(|(name, ports)| {
                    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                    format!("{name}={}", ports.join(","))
                })
                .collect::<Vec<_>>()
                .join(" "),
            Shown::Table(table) => table
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// As docs/configuration.md's Limits table writes it: `10 s`, `2 min`, `16 MiB`.
    pub fn human(&self) -> String {
        match self {
            Shown::Duration(d) if d.as_secs() >= 60 && d.as_secs() % 60 == 0 => {
                format!("{} min", d.as_secs() / 60)
            }
            Shown::Duration(d) => format!("{} s", d.as_secs()),
            Shown::Bytes(n) if n % MIB == 0 => format!("{} MiB", n / MIB),
            Shown::Bytes(n) if n % 1024 == 0 => format!("{} KiB", n / 1024),
            other => other.plain(),
        }
    }
}

impl Shown {
    /// What a value of this kind is written as, for an error's advice.
    pub fn form(&self) -> &'static str {
        match self {
            Shown::Text(_) => "a string in quotes",
            Shown::Duration(_) => "a number and a unit in quotes (ms, s, m, h, d)",
            Shown::Count(_) => "a whole number",
            Shown::Bytes(_) => "a whole number of bytes",
            Shown::Bool(_) => "true or false",
            Shown::List(_) => "a list of strings",
            Shown::Ports(_) => "a table of protocol names to lists of ports (0-65535)",
            Shown::Table(_) => "a table of addresses or networks to names",
        }
    }

    /// This default as the TOML file writes it: `"10s"`, `256`, `["virsh"]`.
    pub fn toml(&self) -> String {
        let quoted = |items: &[&str]| {
            let items: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            format!("[{}]", items.join(", "))
        };
        match self {
            Shown::Text(t) => format!("{t:?}"),
            Shown::Duration(_) => format!("{:?}", self.plain()),
            Shown::Count(n) | Shown::Bytes(n) => n.to_string(),
            Shown::Bool(b) => b.to_string(),
            Shown::List(l) => quoted(l),
            Shown::Ports(table) => match table.first() {
                Some((name, ports)) => {
                    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                    format!("{{ {name} = [{}] }}", ports.join(", "))
                }
                None => "{ smb = [445] }".to_owned(),
            },
            Shown::Table(table) => match table.first() {
                Some((key, value)) => format!("{{ {key:?} = {value:?} }}"),
                None => "{ \"192.0.2.10\" = \"backup-nas\" }".to_owned(),
            },
        }
    }
}

/// The row of `key` (`topology.interval`).
pub fn row(key: &str) -> Option<&'static Row> {
    ALL.iter().find(|r| r.key == key)
}

/// `key` with its default as the file writes it, for an error's advice:
/// `interval = "10s"`.
pub fn example(key: &str) -> Option<String> {
    let row = row(key)?;
    let leaf = key.rsplit('.').next().unwrap_or(key);
    Some(format!("{leaf} = {}", row.default.toml()))
}

/// A setting of any type, as [`ALL`] lists it.
pub struct Row {
    pub key: &'static str,
    pub default: Shown,
    pub flag: Option<&'static str>,
}

macro_rules! rows {
    ($($setting:ident => $shown:expr),* $(,)?) => {
        /// Every setting, in the example file's order.
        pub const ALL: &[Row] = &[$(Row {
            key: $setting.key,
            default: $shown($setting.default),
            flag: $setting.flag,
        }),*];
    };
}

rows! {
    LISTEN_ADDRESS => Shown::Text,
    TELEMETRY_PATH => Shown::Text,
    READ_HEADER_TIMEOUT => Shown::Duration,
    IDLE_TIMEOUT => Shown::Duration,
    WRITE_TIMEOUT => Shown::Duration,
    MAX_CONNECTIONS => Shown::Count,
    SHUTDOWN_TIMEOUT => Shown::Duration,
    MAX_REQUESTS => Shown::Count,
    COMPRESSION => Compression::shown,
    WEB_CONFIG_FILE => Shown::Text,
    ROOTFS => Shown::Text,
    PROCFS => Shown::Text,
    NETDEV_MAX_BYTES => bytes,
    NETDEV_TIMEOUT => Shown::Duration,
    DOCKER_ENABLED => Shown::Bool,
    DOCKER_SOCKET => Shown::Text,
    DOCKER_INTERVAL => Shown::Duration,
    DOCKER_TIMEOUT => Shown::Duration,
    DOCKER_MAX_RESPONSE => bytes,
    LOG_LEVEL => LogLevel::shown,
    OWNER_LABEL => Shown::Text,
    INCLUDE => Shown::Text,
    EXCLUDE => Shown::Text,
    TOPOLOGY_ENABLED => Shown::Bool,
    TOPOLOGY_INTERVAL => Shown::Duration,
    TOPOLOGY_TIMEOUT => Shown::Duration,
    VM_ENABLED => Shown::Bool,
    VM_SOURCES => vm_sources,
    VM_INTERVAL => Shown::Duration,
    VM_TIMEOUT => Shown::Duration,
    VIRSH_COMMAND => Shown::List,
    VIRSH_URI => Shown::Text,
    LXC_ENABLED => Shown::Bool,
    LXC_INTERVAL => Shown::Duration,
    LXC_TIMEOUT => Shown::Duration,
    INCUS_ENABLED => Shown::Bool,
    INCUS_SOCKET => Shown::Text,
    INCUS_INTERVAL => Shown::Duration,
    INCUS_TIMEOUT => Shown::Duration,
    INCUS_MAX_RESPONSE => bytes,
    MIDCLT_COMMAND => Shown::List,
    MIDDLEWARE_SOCKETS => Shown::List,
    COMMANDS_CHROOT => Shown::Bool,
    COMMANDS_TIMEOUT => Shown::Duration,
    COMMANDS_MAX_OUTPUT => bytes,
    ACCOUNTING_ENABLED => Shown::Bool,
    ACCOUNTING_INTERVAL => Shown::Duration,
    ACCOUNTING_TIMEOUT => Shown::Duration,
    ACCOUNTING_MAX_CGROUPS => Shown::Count,
    ACCOUNTING_CGROUP => Shown::Text,
    PEERS_ENABLED => Shown::Bool,
    PEERS_INTERVAL => Shown::Duration,
    PEERS_TIMEOUT => Shown::Duration,
    PEERS_TOP => Shown::Count,
    PEERS_MAX_PEERS => Shown::Count,
    PEERS_IDLE => Shown::Duration,
    PEERS_MIN_LIFETIME => Shown::Duration,
    PEERS_FOLD_PUBLIC_V4 => Shown::Count,
    PEERS_FOLD_PUBLIC_V6 => Shown::Count,
    PEERS_PORTS => Shown::Ports,
    NAMES_ENABLED => Shown::Bool,
    NAMES_INTERVAL => Shown::Duration,
    NAMES_TIMEOUT => Shown::Duration,
    NAMES_SMBSTATUS_COMMAND => Shown::List,
    NAMES_REVERSE_DNS => Shown::Bool,
    NAMES_DNS_TIMEOUT => Shown::Duration,
    NAMES_DNS_CACHE => Shown::Duration,
    NAMES_HOSTS => Shown::Table,
}

const fn bytes(b: Bytes) -> Shown {
    Shown::Bytes(b.0)
}

/// [`VM_SOURCES`]'s names: a const slice of them cannot be mapped in place.
const VM_SOURCE_NAMES: [&str; VM_SOURCES.default.len()] = VmLookup::names(VM_SOURCES.default);

const fn vm_sources(_: &[VmLookup]) -> Shown {
    Shown::List(&VM_SOURCE_NAMES)
}

/// `what`, with the default of `setting` as `--help` shows it.
pub fn help<T>(what: &str, setting: &Setting<T>) -> String {
    let shown = ALL
        .iter()
        .find(|r| r.key == setting.key)
        .map(|r| r.default.plain())
        .unwrap_or_default();
    if shown.is_empty() {
        what.to_owned()
    } else {
        format!("{what} [default: {shown}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_shown_as_the_readme_writes_them() {
        let mut keys: Vec<_> = ALL.iter().map(|r| r.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), ALL.len());
        assert_eq!(Shown::Duration(secs(120)).human(), "2 min");
        assert_eq!(Shown::Duration(secs(10)).human(), "10 s");
        assert_eq!(Shown::Bytes(16 * MIB).human(), "16 MiB");
        assert_eq!(Shown::Bytes(16 * 1024).human(), "16 KiB");
        assert_eq!(help("Address", &LISTEN_ADDRESS), "Address [default: :9551]");
        assert_eq!(help("Web config", &WEB_CONFIG_FILE), "Web config");
    }

    #[test]
    fn examples_are_written_as_the_file_writes_them() {
        let example = |key: &str| example(key).unwrap();
        assert_eq!(example("topology.interval"), "interval = \"10s\"");
        assert_eq!(example("web.max_connections"), "max_connections = 256");
        assert_eq!(example("netdev.max_bytes"), "max_bytes = 33554432");
        assert_eq!(example("docker.enabled"), "enabled = true");
        assert_eq!(
            example("vm.sources"),
            "sources = [\"midclt\", \"virsh\", \"qemu\"]"
        );
        assert_eq!(example("peers.ports"), "ports = { smb = [445, 139] }");
        assert_eq!(
            example("names.hosts"),
            "hosts = { \"192.0.2.10\" = \"backup-nas\" }"
        );
        assert_eq!(example("web.compression"), "compression = \"auto\"");
        assert_eq!(super::example("nothing.here"), None);
    }
}
