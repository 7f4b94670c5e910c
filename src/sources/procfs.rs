//! Process-table helpers shared by the resolvers that look at processes
//! (Docker, LXC, the QEMU scan): listing pids, which network namespace a
//! process is in, and which host interfaces its interfaces are paired with.

use std::path::{Path, PathBuf};

use crate::bounded::Fs;

/// Every process directory under `procfs`, as `(pid, <procfs>/<pid>)`.
pub fn pids(fs: &Fs, procfs: &Path) -> std::io::Result<impl Iterator<Item = (u32, PathBuf)>> {
    Ok(fs.read_dir(procfs)?.flatten().filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse().ok()?;
        Some((pid, entry.path()))
    }))
}

/// The `net:[inode]` link of a process's network namespace.
pub fn netns_of(fs: &Fs, procfs: &Path, pid: &str) -> Option<String> {
    fs.read_link(&procfs.join(pid).join("ns/net"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The process of a container that is in the container's own network
/// namespace: `pid` itself, or, if `pid` is still in the host's namespace (a
/// supervisor such as libvirt's `libvirt_lxc`), its first child that is not.
pub fn in_own_netns(fs: &Fs, procfs: &Path, pid: u32, host_ns: Option<&str>) -> Option<u32> {
    let outside = |pid: u32| {
        let ns = netns_of(fs, procfs, &pid.to_string());
        ns.is_some() && ns.as_deref() != host_ns
    };
    if outside(pid) {
        return Some(pid);
    }
    let children = procfs.join(format!("{pid}/task/{pid}/children"));
    let children = fs.read(&children, 64 * 1024).ok()?;
    String::from_utf8_lossy(&children)
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|&child| outside(child))
}

/// One of a process's interfaces that is linked to a device outside its
/// namespace: a veth's container end (`host_ifindex` is the host end), or a
/// macvlan/ipvlan interface (`host_ifindex` is its parent). Only the host's
/// side can tell which: see [`Claims::get`](crate::sources::Claims::get).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VethEnd {
    /// The interface's `iflink`: an ifindex in the host's namespace.
    pub host_ifindex: u32,
    /// The interface's own ifindex, in the process's namespace.
    pub ifindex: u32,
}

/// Each non-`lo` interface under `<procfs>/<pid>/root/sys/class/net` whose
/// `iflink` points elsewhere.
pub fn veth_ends(fs: &Fs, procfs: &Path, pid: u32) -> std::io::Result<Vec<VethEnd>> {
    let class = procfs.join(pid.to_string()).join("root/sys/class/net");
    let read =
        |dir: &Path, f: &str| -> Option<u32> { fs.sysfs_text(&dir.join(f))?.trim().parse().ok() };
    let mut out = Vec::new();
    for entry in fs.read_dir(&class)?.flatten() {
        if entry.file_name() == "lo" {
            continue;
        }
        let dir = entry.path();
        if let (Some(link), Some(index)) = (read(&dir, "iflink"), read(&dir, "ifindex"))
            && link != index
        {
            out.push(VethEnd {
                host_ifindex: link,
                ifindex: index,
            });
        }
    }
    Ok(out)
}

/// A process's cgroup in the v2 hierarchy: the path of the `0::` line of
/// its `/proc/<pid>/cgroup` (`/docker/<id>`, `/system.slice/x.service`).
pub fn cgroup_v2(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim_end)
        .filter(|path| path.starts_with('/'))
}

/// [`cgroup_v2`] of process `pid`.
pub fn cgroup_of(fs: &Fs, procfs: &Path, pid: u32) -> Option<String> {
    let text = fs
        .read(&procfs.join(format!("{pid}/cgroup")), 64 * 1024)
        .ok()?;
    cgroup_v2(&String::from_utf8_lossy(&text)).map(str::to_owned)
}
