//! VM resolver: which VM holds each tap (`vnetN`, Incus' `tapXXXXXXXX`) and
//! each macvtap. VMs are found, in a configurable order, through TrueNAS's
//! middleware (`midclt call vm.query`), `virsh`, or a scan of `/proc` for QEMU
//! processes; a VM process's taps are the `/dev/net/tun` fds whose `fdinfo`
//! says `iff:<name>`, its macvtaps the fds on `/dev/tapN` (N = ifindex).
//! Parsers are pure; commands run with a timeout and are killed past it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::bounded;
use crate::command::{CommandError, Runner};
use crate::labels::Kind;
use crate::sources::{Owner, Owners, ResolverId, Source, Worker, WorkerError, procfs};
use crate::telemetry::Telemetry;

/// Where VMs are looked up (`[vm] sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmLookup {
    Midclt,
    Virsh,
    Qemu,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Command(#[from] CommandError),
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

/// A running VM: display name and, when known, its QEMU process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningVm {
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
    state: Option<String>,
    pid: Option<i64>,
}

/// `midclt call vm.query`: the RUNNING VMs that have a QEMU pid.
pub fn parse_vm_query(json: &str) -> Result<Vec<RunningVm>, serde_json::Error> {
    let vms: Vec<QueryVm> = serde_json::from_str(json)?;
    Ok(vms
        .into_iter()
        .filter_map(|vm| {
            let status = vm.status?;
            let pid = u32::try_from(status.pid?).ok().filter(|&p| p > 0)?;
            (status.state.as_deref() == Some("RUNNING")).then(|| RunningVm {
                name: display_name(&vm.name).to_owned(),
                pid,
            })
        })
        .collect())
}

/// `virsh list --name --state-running`: one domain per line.
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

/// The interface name in a tun fd's `fdinfo` (`iff:\tvnet0`).
pub fn fdinfo_iff(fdinfo: &str) -> Option<&str> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("iff:"))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// An fd's `fdinfo` is a few lines (an epoll fd's one per watched fd).
const FDINFO_MAX: usize = 64 * 1024;
/// QEMU command lines from libvirt run to a few kilobytes.
const CMDLINE_MAX: usize = 256 * 1024;

/// Taps (by name) and macvtaps (by ifindex) held open by a process.
pub fn held_interfaces(procfs: &Path, pid: u32) -> std::io::Result<(Vec<String>, Vec<u32>)> {
    let base = procfs.join(pid.to_string());
    let (mut taps, mut macvtaps) = (Vec::new(), Vec::new());
    let fds = base.join("fd");
    bounded::note(&fds);
    for entry in std::fs::read_dir(fds)?.flatten() {
        bounded::note(&entry.path());
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.as_os_str().as_bytes();
        if target == b"/dev/net/tun" {
            let info = bounded::read(&base.join("fdinfo").join(entry.file_name()), FDINFO_MAX);
            let info = info.map(|b| String::from_utf8_lossy(&b).into_owned());
            if let Some(name) = info.ok().as_deref().and_then(fdinfo_iff) {
                taps.push(name.to_owned());
            }
        } else if let Some(n) = target.strip_prefix(b"/dev/tap")
            && let Some(index) = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok())
        {
            macvtaps.push(index);
        }
    }
    Ok((taps, macvtaps))
}

/// Every QEMU process under `procfs`, with its guest name.
pub fn scan_qemu(procfs: &Path) -> Result<Vec<RunningVm>, VmError> {
    let processes = procfs::pids(procfs).map_err(|source| VmError::Scan {
        path: procfs.to_owned(),
        source,
    })?;
    let mut vms = Vec::new();
    for (pid, dir) in processes {
        let Ok(cmdline) = bounded::read(&dir.join("cmdline"), CMDLINE_MAX) else {
            continue;
        };
        if let Some(name) = qemu_guest_name(&cmdline) {
            vms.push(RunningVm { name, pid });
        }
    }
    vms.sort_by_key(|v| v.pid);
    Ok(vms)
}

/// Owners for VMs whose processes are known: their taps and macvtaps.
pub fn owners_of_vm_processes(procfs: &Path, vms: &[RunningVm]) -> Owners {
    let mut owners = Owners::default();
    for vm in vms {
        let owner = |kind| Owner {
            kind,
            instance: vm.name.clone(),
            app: String::new(),
        };
        match held_interfaces(procfs, vm.pid) {
            Ok((taps, macvtaps)) => {
                for tap in taps {
                    owners
                        .by_interface
                        .insert(tap.into_bytes(), owner(Kind::Vm));
                }
                for index in macvtaps {
                    owners.by_ifindex.insert(index, owner(Kind::Macvtap));
                }
            }
            Err(e) => {
                tracing::debug!(vm = %vm.name, pid = vm.pid, error = %e, "cannot read the VM process's fds")
            }
        }
    }
    owners
}

/// The VM resolver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSettings {
    pub sources: Vec<VmLookup>,
    pub midclt_command: Vec<String>,
    pub virsh_command: Vec<String>,
    /// `-c` for virsh; empty: virsh's default connection.
    pub virsh_uri: String,
    /// Run commands inside `rootfs` when it is not `/`.
    pub chroot: bool,
    pub command_timeout: Duration,
    /// Output beyond this fails the command, which is killed.
    pub max_output_bytes: usize,
}

pub struct VmSource {
    settings: VmSettings,
    procfs: PathBuf,
    runner: Runner,
    worker: Worker,
}

impl VmSource {
    /// `timeout` bounds each blocking scan (the resolver's refresh timeout).
    pub fn new(
        settings: VmSettings,
        rootfs: &Path,
        procfs: &Path,
        timeout: Duration,
        telemetry: &Telemetry,
    ) -> VmSource {
        // In a container the tools live on the host: run them inside its root.
        let chroot = (settings.chroot && rootfs != Path::new("/")).then(|| rootfs.to_owned());
        let runner = Runner::new(
            chroot,
            settings.command_timeout,
            settings.max_output_bytes,
            telemetry,
        );
        VmSource {
            settings,
            procfs: procfs.to_owned(),
            runner,
            worker: Worker::new(timeout),
        }
    }

    async fn run(&self, argv: &[String]) -> Result<String, VmError> {
        Ok(self.runner.run(argv).await?)
    }

    async fn owners_of_processes(&self, vms: Vec<RunningVm>) -> Result<Owners, VmError> {
        let procfs = self.procfs.clone();
        Ok(self
            .worker
            .run(move || owners_of_vm_processes(&procfs, &vms))
            .await?)
    }

    async fn virsh(&self, args: &[&str]) -> Result<String, VmError> {
        let mut argv = self.settings.virsh_command.clone();
        if !self.settings.virsh_uri.is_empty() {
            argv.extend(["-c".to_owned(), self.settings.virsh_uri.clone()]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        self.run(&argv).await
    }

    async fn via_virsh(&self) -> Result<Owners, VmError> {
        let list = self.virsh(&["list", "--name", "--state-running"]).await?;
        let mut owners = Owners::default();
        for domain in parse_virsh_list(&list) {
            let rows = self.virsh(&["domiflist", domain]).await?;
            for (iface, kind) in parse_domiflist(&rows) {
                let owner = Owner {
                    kind,
                    instance: display_name(domain).to_owned(),
                    app: String::new(),
                };
                owners.by_interface.insert(iface.as_bytes().to_vec(), owner);
            }
        }
        Ok(owners)
    }

    async fn via(&self, lookup: VmLookup) -> Result<Owners, VmError> {
        match lookup {
            VmLookup::Midclt => {
                let json = self.run(&self.settings.midclt_command).await?;
                self.owners_of_processes(parse_vm_query(&json)?).await
            }
            VmLookup::Virsh => self.via_virsh().await,
            VmLookup::Qemu => {
                let procfs = self.procfs.clone();
                let vms = self.worker.run(move || scan_qemu(&procfs)).await??;
                self.owners_of_processes(vms).await
            }
        }
    }
}

impl Source for VmSource {
    type Snapshot = Owners;
    type Error = VmError;
    const ID: ResolverId = ResolverId::Vm;

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }

    /// The first lookup, in configured order, that answers decides.
    async fn refresh(&self) -> Result<Owners, VmError> {
        let mut failures = Vec::new();
        for &lookup in &self.settings.sources {
            match self.via(lookup).await {
                Ok(owners) => {
                    if !failures.is_empty() {
                        tracing::debug!(source = ?lookup, skipped = %failures.join("; "), "VM source fell back");
                    }
                    return Ok(owners);
                }
                Err(e) => failures.push(format!("{lookup:?}: {e}")),
            }
        }
        Err(VmError::AllFailed(failures.join("; ")))
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
    fn vm_query_running_with_pid() {
        let json = r#"[
          {"id": 3, "name": "vyos", "devices": [], "status": {"state": "RUNNING", "pid": 7730, "domain_state": "RUNNING"}},
          {"id": 4, "name": "pihole", "status": {"state": "STOPPED", "pid": null, "domain_state": "SHUTOFF"}},
          {"id": 5, "name": "odd", "status": {"state": "RUNNING", "pid": null}},
          {"id": 6, "name": "nostatus"}
        ]"#;
        assert_eq!(
            parse_vm_query(json).unwrap(),
            [RunningVm {
                name: "vyos".into(),
                pid: 7730
            }]
        );
        assert!(parse_vm_query("not json").is_err());
        assert!(parse_vm_query("{}").is_err());
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

    #[test]
    fn fdinfo_lines() {
        assert_eq!(
            fdinfo_iff("pos:\t0\nflags:\t0104002\nmnt_id:\t27\niff:\tvnet3\n"),
            Some("vnet3")
        );
        assert_eq!(fdinfo_iff("pos:\t0\n"), None);
        assert_eq!(fdinfo_iff("iff:\t\n"), None);
    }
}
