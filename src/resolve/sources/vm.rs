//! VM resolver: which VM holds each tap (`vnetN`, Incus' `tapXXXXXXXX`) and
//! each macvtap. Three lookups, each optional (`[vm] sources`), and the
//! answer is their union, never the first that answers:
//! - `qemu`: every QEMU process in `/proc`; it holds its taps as fds on
//!   `/dev/net/tun` (`fdinfo` says `iff:<name>`) and its macvtaps as fds on
//!   their character devices (`/dev/tapN`, N = ifindex, or any node with the
//!   device numbers of `macvtap/tapN/dev`). Its name is the command line's
//!   `-name`, which on TrueNAS 26 is the domain's UUID;
//! - `midclt` (`vm.query`): the middleware's VMs and their QEMU pids: adds
//!   VMs the scan could not name and names them as TrueNAS does;
//! - `virsh`: each active domain's interfaces (`domiflist`); skipped while
//!   the middleware's socket and the process scan leave it nothing to add.
//!
//! Where lookups name one interface differently, the order of `[vm] sources`
//! decides. The lookups run side by side; one that fails is logged and
//! counted and the others still apply; the resolver fails only when all do.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use serde::Deserialize;

use crate::bounded::Fs;
use crate::clients::command::{CommandError, Runner};
use crate::clients::middleware::Middleware;
use crate::config::{VmLookup, VmSettings};
use crate::expose::telemetry::Telemetry;
use crate::model::labels::Kind;
use crate::model::owner::OwnerKind;
use crate::resolve::sources::{
    Claim, Claims, Lookup, ResolverId, Source, Worker, WorkerError, procfs,
};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Middleware(#[from] crate::clients::middleware::MiddlewareError),
    #[error("midclt vm.query output is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot scan {path}: {source}")]
    Scan {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("no VM lookup worked: {0}")]
    AllFailed(String),
}

/// A VM's QEMU process and the name one lookup gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmProcess {
    pub name: String,
    pub pid: u32,
}

/// TrueNAS names libvirt domains `<id>_<name>`; users know the name.
pub fn display_name(domain: &str) -> &str {
    match domain.split_once('_') {
        Some((id, name))
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() =>
        {
            name
        }
        _ => domain,
    }
}

#[derive(Deserialize)]
struct QueryVm {
    name: String,
    status: Option<QueryStatus>,
}

#[derive(Deserialize)]
struct QueryStatus {
    pid: Option<i64>,
}

/// `midclt call vm.query`: every VM with a QEMU process. The middleware sets
/// `status.pid` while the VM runs or is paused (SUSPENDED): a paused VM still
/// holds its taps, so the state does not matter, the pid does.
pub fn parse_vm_query(json: &str) -> Result<Vec<VmProcess>, serde_json::Error> {
    let vms: Vec<QueryVm> = serde_json::from_str(json)?;
    Ok(vms
        .into_iter()
        .filter_map(|vm| {
            let pid = u32::try_from(vm.status?.pid?).ok().filter(|&p| p > 0)?;
            Some(VmProcess {
                name: display_name(&vm.name).to_owned(),
                pid,
            })
        })
        .collect())
}

/// `virsh list --name`: one active (running or paused) domain per line.
pub fn parse_virsh_list(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// `virsh domiflist <domain>`: `(interface, kind)` per row below the dashes.
/// `direct` interfaces are macvtaps; the rest are taps.
pub fn parse_domiflist(text: &str) -> Vec<(&str, Kind)> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("---"))
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let iface = cols.next().filter(|i| *i != "-")?;
            let kind = if cols.next() == Some("direct") {
                Kind::Macvtap
            } else {
                Kind::Vm
            };
            Some((iface, kind))
        })
        .collect()
}

/// The guest name of a QEMU command line (`/proc/<pid>/cmdline`, NUL-separated):
/// `-name guest=NAME,...` or `-name NAME[,...]`. `None` if it is not QEMU.
pub fn qemu_guest_name(cmdline: &[u8]) -> Option<String> {
    let mut args = cmdline.split(|&b| b == 0).map(String::from_utf8_lossy);
    let argv0 = args.next()?;
    let exe = argv0.rsplit('/').next().unwrap_or(&argv0);
    if !(exe.starts_with("qemu-system-") || exe == "qemu-kvm") {
        return None;
    }
    let name = args.skip_while(|a| a != "-name").nth(1)?;
    let first = name.split(',').next()?;
    let guest = first.strip_prefix("guest=").unwrap_or(first);
    (!guest.is_empty()).then(|| display_name(guest).to_owned())
}

/// QEMU command lines from libvirt run to a few kilobytes.
const CMDLINE_MAX: usize = 256 * 1024;

/// What a process holds open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Taps, by name.
    pub taps: Vec<String>,
    /// Macvtaps, by ifindex.
    pub macvtaps: Vec<u32>,
}

/// The host's macvtaps, from `<rootfs>/sys/class/net/<if>/macvtap/tapN`.
#[derive(Debug, Default)]
pub struct Macvtaps {
    /// Device number (`macvtap/tapN/dev`) -> ifindex N.
    pub by_device: HashMap<u64, u32>,
    /// ifindex -> interface name.
    pub names: HashMap<u32, String>,
}

pub fn macvtaps(fs: &Fs, rootfs: &Path) -> Macvtaps {
    let class = rootfs.join("sys/class/net");
    let mut found = Macvtaps::default();
    let Ok(interfaces) = fs.read_dir(&class) else {
        return found;
    };
    for interface in interfaces.flatten() {
        let Ok(taps) = fs.read_dir(&interface.path().join("macvtap")) else {
            continue;
        };
        for tap in taps.flatten() {
            let name = tap.file_name();
            let Some(index) = name
                .to_str()
                .and_then(|n| n.strip_prefix("tap"))
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            found
                .names
                .insert(index, interface.file_name().to_string_lossy().into_owned());
            if let Some(dev) = fs
                .sysfs_text(&tap.path().join("dev"))
                .and_then(|d| parse_dev(&d))
            {
                found.by_device.insert(dev, index);
            }
        }
    }
    found
}

/// A sysfs `dev` file: `major:minor`.
pub fn parse_dev(text: &str) -> Option<u64> {
    let (major, minor) = text.trim().split_once(':')?;
    Some(rustix::fs::makedev(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

/// Taps and macvtaps held open by a process. A macvtap fd is recognised by
/// its device numbers (`devices`: [`Macvtaps::by_device`]), or, where sysfs
/// has no numbers (a fixture tree), by its node's name `/dev/tapN`.
pub fn held_interfaces(
    fs: &Fs,
    procfs: &Path,
    pid: u32,
    devices: &HashMap<u64, u32>,
) -> std::io::Result<Held> {
    let base = procfs.join(pid.to_string());
    let mut held = Held::default();
    for entry in fs.read_dir(&base.join("fd"))?.flatten() {
        let fd = entry.path();
        let Ok(target) = fs.read_link(&fd) else {
            continue;
        };
        let target = target.as_os_str().as_bytes();
        if target == b"/dev/net/tun" {
            held.taps
                .extend(procfs::tun_of(fs, &base, &entry.file_name()));
            continue;
        }
        // stat through the fd: the device it is open on, whatever its node is called.
        let by_device = fs
            .metadata(&fd)
            .ok()
            .filter(|m| m.file_type().is_char_device())
            .and_then(|m| devices.get(&m.rdev()).copied());
        let by_name = || {
            let n = target.strip_prefix(b"/dev/tap")?;
            std::str::from_utf8(n).ok()?.parse().ok()
        };
        if let Some(index) = by_device.or_else(by_name) {
            held.macvtaps.push(index);
        }
    }
    Ok(held)
}

/// Every QEMU process under `procfs`, with its guest name.
pub fn scan_qemu(fs: &Fs, procfs: &Path) -> Result<Vec<VmProcess>, VmError> {
    let processes = procfs::pids(fs, procfs).map_err(|source| VmError::Scan {
        path: procfs.to_owned(),
        source,
    })?;
    let mut vms = Vec::new();
    for (pid, dir) in processes {
        let Ok(cmdline) = fs.read(&dir.join("cmdline"), CMDLINE_MAX) else {
            continue;
        };
        if let Some(name) = qemu_guest_name(&cmdline) {
            vms.push(VmProcess { name, pid });
        }
    }
    vms.sort_by_key(|v| v.pid);
    Ok(vms)
}

/// What one lookup found: VM processes by pid (midclt, the scan) or
/// interfaces by name (virsh).
enum Answer {
    Processes(Vec<VmProcess>),
    Interfaces(HashMap<String, (String, Kind)>),
}

/// What the lookups found, before they are joined.
#[derive(Debug, Default)]
pub struct Found {
    /// QEMU pid -> the name each lookup that knows the process gives it.
    pub processes: BTreeMap<u32, BTreeMap<VmLookup, String>>,
    /// What each process holds.
    pub held: BTreeMap<u32, Held>,
    /// virsh: interface name -> (VM name, tap or macvtap).
    pub virsh: HashMap<String, (String, Kind)>,
    /// Host macvtap names by ifindex, to find a held macvtap in virsh's list.
    pub macvtap_names: HashMap<u32, String>,
}

/// Joins the lookups: every interface any of them knows, named by the first
/// lookup in `order` that names it.
pub fn combine(order: &[VmLookup], found: &Found) -> Claims {
    let mut owners = Claims::default();
    let pick = |pid: u32, interface: Option<&str>| {
        order.iter().find_map(|lookup| match lookup {
            VmLookup::Virsh => interface.and_then(|i| found.virsh.get(i)).map(|(n, _)| n),
            other => found.processes.get(&pid)?.get(other),
        })
    };
    for (&pid, held) in &found.held {
        let owner = |name: &String, kind| Claim {
            kind,
            instance: name.clone(),
            app: String::new(),
            of: OwnerKind::Vm,
        };
        for tap in &held.taps {
            if let Some(name) = pick(pid, Some(tap)) {
                owners
                    .by_interface
                    .insert(tap.clone().into_bytes(), owner(name, Kind::Vm));
            }
        }
        for index in &held.macvtaps {
            let interface = found.macvtap_names.get(index).map(String::as_str);
            if let Some(name) = pick(pid, interface) {
                owners.by_ifindex.insert(*index, owner(name, Kind::Macvtap));
            }
        }
    }
    // Interfaces only virsh knows (no process of it could be read).
    for (interface, (name, kind)) in &found.virsh {
        let claimed_by_index = found
            .macvtap_names
            .iter()
            .any(|(i, n)| n == interface && owners.by_ifindex.contains_key(i));
        if !claimed_by_index {
            owners
                .by_interface
                .entry(interface.clone().into_bytes())
                .or_insert(Claim {
                    kind: *kind,
                    instance: name.clone(),
                    app: String::new(),
                    of: OwnerKind::Vm,
                });
        }
    }
    owners
}

/// `virsh domiflist` calls at once.
const VIRSH_CONCURRENCY: usize = 4;

pub struct VmSource {
    settings: VmSettings,
    procfs: PathBuf,
    rootfs: PathBuf,
    /// Runs virsh.
    runner: Runner,
    middleware: Arc<Middleware>,
    worker: Worker,
    /// Each lookup's share of the refresh timeout.
    budget: Duration,
    lookups: BTreeMap<VmLookup, Lookup>,
    /// virsh is not installed (said once).
    no_virsh: std::sync::atomic::AtomicBool,
    /// Whether virsh could add anything at the next refresh (see
    /// [`VmSource::virsh_adds_nothing`]); true until a refresh says otherwise.
    virsh_needed: std::sync::atomic::AtomicBool,
}

impl VmSource {
    /// `timeout` bounds each blocking scan (the resolver's refresh timeout).
    pub fn new(
        settings: VmSettings,
        paths: (&Path, &Path),
        runner: Runner,
        middleware: Arc<Middleware>,
        timeout: Duration,
        telemetry: &Telemetry,
    ) -> VmSource {
        let (rootfs, procfs) = paths;
        let lookups = settings
            .sources
            .iter()
            .map(|&l| (l, Lookup::new(ResolverId::Vm, l.name(), telemetry)))
            .collect();
        VmSource {
            settings,
            procfs: procfs.to_owned(),
            rootfs: rootfs.to_owned(),
            runner,
            middleware,
            worker: Worker::new(timeout),
            budget: crate::resolve::sources::lookup_budget(timeout),
            lookups,
            no_virsh: std::sync::atomic::AtomicBool::new(false),
            virsh_needed: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// virsh names only what the others name too, once the middleware
    /// answers over its socket (VM names by pid, kept current by events) and
    /// every VM process's fds could be read (its taps and macvtaps): then it
    /// is not run, so a TrueNAS host starts no process per refresh. It runs
    /// again at the refresh after either stops being so.
    fn virsh_adds_nothing(&self, unreadable: usize) -> bool {
        self.settings.sources.contains(&VmLookup::Midclt)
            && self.middleware.over_socket()
            && unreadable == 0
    }

    async fn virsh(&self, args: &[&str]) -> Result<String, VmError> {
        let mut argv = self.settings.virsh_command.clone();
        if !self.settings.virsh_uri.is_empty() {
            argv.extend(["-c".to_owned(), self.settings.virsh_uri.clone()]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        // The lookup is a list, then the domains side by side: each step
        // gets half its budget, so one hung domain leaves the others' answers.
        Ok(self.runner.run_within(&argv, self.budget / 2).await?)
    }

    /// `None`: no virsh on this host.
    async fn via_virsh(&self) -> Result<Option<HashMap<String, (String, Kind)>>, VmError> {
        let list = match self.virsh(&["list", "--name"]).await {
            Err(VmError::Command(CommandError::Spawn { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // No libvirt client here: nothing of that kind, not a failure.
                if !self.no_virsh.swap(true, Ordering::Relaxed) {
                    tracing::info!(command = %self.settings.virsh_command[0], "no virsh on this host: the VM resolver's other sources still apply");
                }
                return Ok(None);
            }
            list => list?,
        };
        // One domiflist per domain, side by side: a domain whose answer hangs
        // costs its own call, not the others'.
        let domains: Vec<String> = parse_virsh_list(&list)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let count = domains.len();
        let calls = domains.into_iter().map(|domain| async move {
            let rows = self.virsh(&["domiflist", &domain]).await;
            (domain, rows)
        });
        let answers: Vec<_> = stream::iter(calls)
            .buffer_unordered(VIRSH_CONCURRENCY)
            .collect()
            .await;
        let mut interfaces = HashMap::new();
        let mut failed = Vec::new();
        for (domain, rows) in answers {
            match rows {
                Ok(rows) => {
                    for (iface, kind) in parse_domiflist(&rows) {
                        interfaces
                            .insert(iface.to_owned(), (display_name(&domain).to_owned(), kind));
                    }
                }
                Err(e) => {
                    tracing::debug!(%domain, error = %e, "virsh domiflist failed");
                    failed.push(e);
                }
            }
        }
        match failed.pop() {
            // Every domain failed: the lookup did.
            Some(e) if failed.len() + 1 == count => Err(e),
            _ => Ok(Some(interfaces)),
        }
    }

    /// `None`: no middleware on this host.
    async fn via_midclt(&self) -> Result<Option<Vec<VmProcess>>, VmError> {
        match self.middleware.call("vm.query", self.budget).await? {
            Some(json) => Ok(Some(parse_vm_query(&json)?)),
            None if self.middleware.absent() => Ok(None),
            // A release without vm.query (25.04.0-1): no VMs here.
            None => Ok(Some(Vec::new())),
        }
    }

    /// `None`: the lookup's source is not on this host.
    async fn ask(&self, lookup: VmLookup) -> Result<Option<Answer>, VmError> {
        Ok(match lookup {
            VmLookup::Midclt => self.via_midclt().await?.map(Answer::Processes),
            VmLookup::Virsh => self.via_virsh().await?.map(Answer::Interfaces),
            VmLookup::Qemu => Some(Answer::Processes(self.via_qemu().await?)),
        })
    }

    async fn via_qemu(&self) -> Result<Vec<VmProcess>, VmError> {
        let procfs = self.procfs.clone();
        self.worker.run(move |fs| scan_qemu(fs, &procfs)).await?
    }
}

impl Source for VmSource {
    type Snapshot = Claims;
    type Error = VmError;
    const ID: ResolverId = ResolverId::Vm;

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }

    async fn refresh(&self) -> Result<Claims, VmError> {
        // All at once: a hung midclt and a hung virsh, each within its
        // command timeout, must not use up the refresh timeout before the
        // scan has run.
        let virsh = self.virsh_needed.load(Ordering::Relaxed);
        let asked: Vec<_> = self
            .lookups
            .iter()
            .filter(|(l, _)| **l != VmLookup::Virsh || virsh)
            .collect();
        let answers = join_all(
            asked
                .iter()
                .map(|(l, health)| health.run_if_here(self.budget, self.ask(**l))),
        )
        .await;
        let mut found = Found::default();
        let mut failures = Vec::new();
        // Lookups whose source this host has.
        let mut here = 0;
        for ((lookup, _), answer) in asked.iter().zip(answers) {
            let lookup = **lookup;
            let answer = match answer {
                Ok(None) => continue,
                Ok(Some(answer)) => Ok(answer),
                Err(e) => Err(e),
            };
            here += 1;
            let outcome = answer.map(|answer| match answer {
                Answer::Interfaces(interfaces) => found.virsh = interfaces,
                Answer::Processes(vms) => {
                    for vm in vms {
                        found
                            .processes
                            .entry(vm.pid)
                            .or_default()
                            .insert(lookup, vm.name);
                    }
                }
            });
            if let Err(e) = outcome {
                failures.push(format!("{}: {e}", lookup.name()));
            }
        }
        if here > 0 && failures.len() == here {
            return Err(VmError::AllFailed(failures.join("; ")));
        }
        let (procfs, rootfs) = (self.procfs.clone(), self.rootfs.clone());
        let pids: Vec<u32> = found.processes.keys().copied().collect();
        let (held, macvtap_names, unreadable) = self
            .worker
            .run(move |fs| {
                let macvtaps = macvtaps(fs, &rootfs);
                let mut held = BTreeMap::new();
                let mut unreadable = 0;
                for pid in pids {
                    match held_interfaces(fs, &procfs, pid, &macvtaps.by_device) {
                        Ok(h) => {
                            held.insert(pid, h);
                        }
                        Err(e) => {
                            unreadable += 1;
                            tracing::debug!(pid, error = %e, "cannot read the VM process's fds")
                        }
                    }
                }
                (held, macvtaps.names, unreadable)
            })
            .await?;
        let needed = !self.virsh_adds_nothing(unreadable);
        if self.virsh_needed.swap(needed, Ordering::Relaxed) != needed
            && self.lookups.contains_key(&VmLookup::Virsh)
        {
            tracing::debug!(needed, "virsh lookup");
        }
        found.held = held;
        found.macvtap_names = macvtap_names;
        Ok(combine(&self.settings.sources, &found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_lose_the_domain_id() {
        assert_eq!(display_name("3_vyos"), "vyos");
        assert_eq!(display_name("12_my_vm"), "my_vm");
        assert_eq!(display_name("vyos"), "vyos");
        assert_eq!(display_name("_x"), "_x");
        assert_eq!(display_name("a1_x"), "a1_x");
        assert_eq!(display_name("3_"), "3_");
    }

    #[test]
    fn vm_query_every_vm_with_a_process() {
        let json = r#"[
          {"id": 3, "name": "vyos", "devices": [], "status": {"state": "RUNNING", "pid": 7730, "domain_state": "RUNNING"}},
          {"id": 4, "name": "pihole", "status": {"state": "STOPPED", "pid": null, "domain_state": "SHUTOFF"}},
          {"id": 5, "name": "odd", "status": {"state": "RUNNING", "pid": null}},
          {"id": 6, "name": "nostatus"},
          {"id": 7, "uuid": "6f1c2a4e-8d3b-4e5f-a6b7-c8d9e0f1a2b3", "name": "paused", "status": {"state": "SUSPENDED", "pid": 8800, "domain_state": "PAUSED"}}
        ]"#;
        let vm = |name: &str, pid| VmProcess {
            name: name.into(),
            pid,
        };
        assert_eq!(
            parse_vm_query(json).unwrap(),
            [vm("vyos", 7730), vm("paused", 8800)],
            "a paused VM still holds its taps"
        );
        assert!(parse_vm_query("not json").is_err());
        assert!(parse_vm_query("{}").is_err());
    }

    #[test]
    fn union_of_lookups_named_in_their_order() {
        use VmLookup::{Midclt, Qemu, Virsh};
        let uuid = "6f1c2a4e-8d3b-4e5f-a6b7-c8d9e0f1a2b3";
        let mut found = Found::default();
        // 100: known to all three; 200: a 26-style VM, UUID on its command
        // line; 300: a QEMU the middleware does not know (an Incus VM).
        found.processes.insert(
            100,
            BTreeMap::from([(Midclt, "vyos".into()), (Qemu, "vyos".into())]),
        );
        found.processes.insert(
            200,
            BTreeMap::from([(Midclt, "homeassistant".into()), (Qemu, uuid.into())]),
        );
        found
            .processes
            .insert(300, BTreeMap::from([(Qemu, "c2".into())]));
        let held = |taps: &[&str], macvtaps: &[u32]| Held {
            taps: taps.iter().map(|t| t.to_string()).collect(),
            macvtaps: macvtaps.to_vec(),
        };
        found.held.insert(100, held(&["vnet0"], &[14]));
        found.held.insert(200, held(&["vnet2"], &[]));
        found.held.insert(300, held(&["tap1a2b3c4d"], &[]));
        found.macvtap_names.insert(14, "macvtap0".into());
        found
            .virsh
            .insert("vnet0".into(), ("router".into(), Kind::Vm));
        found
            .virsh
            .insert("macvtap0".into(), ("router".into(), Kind::Macvtap));
        found
            .virsh
            .insert("vnet9".into(), ("elsewhere".into(), Kind::Vm));

        let name_of =
            |owners: &Claims, iface: &str| owners.by_interface[iface.as_bytes()].instance.clone();
        let owners = combine(&[Midclt, Virsh, Qemu], &found);
        assert_eq!(name_of(&owners, "vnet0"), "vyos", "midclt first");
        assert_eq!(owners.by_ifindex[&14].instance, "vyos");
        assert_eq!(owners.by_ifindex[&14].kind, Kind::Macvtap);
        assert_eq!(name_of(&owners, "vnet2"), "homeassistant", "not the UUID");
        assert_eq!(
            name_of(&owners, "tap1a2b3c4d"),
            "c2",
            "only the scan knows it"
        );
        assert_eq!(
            name_of(&owners, "vnet9"),
            "elsewhere",
            "only virsh knows it"
        );
        assert!(
            !owners.by_interface.contains_key(&b"macvtap0"[..]),
            "claimed by ifindex already"
        );

        let owners = combine(&[Virsh, Qemu, Midclt], &found);
        assert_eq!(name_of(&owners, "vnet0"), "router", "virsh first now");
        assert_eq!(owners.by_ifindex[&14].instance, "router");
        assert_eq!(
            name_of(&owners, "vnet2"),
            uuid,
            "the scan before the middleware"
        );
    }

    #[test]
    fn device_numbers() {
        assert_eq!(parse_dev("240:3\n"), Some(rustix::fs::makedev(240, 3)));
        assert_eq!(parse_dev("x"), None);
    }

    #[test]
    fn virsh_outputs() {
        assert_eq!(
            parse_virsh_list("3_vyos\n4_pihole\n\n"),
            ["3_vyos", "4_pihole"]
        );
        let rows = " Interface   Type     Source     Model    MAC\n\
                    -------------------------------------------------------------\n \
                    vnet0       bridge   br0        virtio   52:54:00:aa:bb:cc\n \
                    macvtap0    direct   enp8s0f0   virtio   52:54:00:aa:bb:cd\n \
                    -           user     -          e1000    52:54:00:aa:bb:ce\n";
        assert_eq!(
            parse_domiflist(rows),
            [("vnet0", Kind::Vm), ("macvtap0", Kind::Macvtap)]
        );
        assert!(parse_domiflist("").is_empty());
    }

    #[test]
    fn qemu_command_lines() {
        let line = |args: &[&str]| args.join("\0").into_bytes();
        assert_eq!(
            qemu_guest_name(&line(&[
                "/usr/bin/qemu-system-x86_64",
                "-name",
                "guest=3_vyos,debug-threads=on",
                "-S"
            ])),
            Some("vyos".into())
        );
        assert_eq!(
            qemu_guest_name(&line(&["qemu-kvm", "-name", "plain"])),
            Some("plain".into())
        );
        assert_eq!(
            qemu_guest_name(&line(&["qemu-system-aarch64", "-name", "c2,process=x"])),
            Some("c2".into())
        );
        assert_eq!(
            qemu_guest_name(&line(&["qemu-system-x86_64", "-m", "512"])),
            None
        );
        assert_eq!(qemu_guest_name(&line(&["/bin/sleep", "-name", "x"])), None);
        assert_eq!(qemu_guest_name(b""), None);
    }
}
