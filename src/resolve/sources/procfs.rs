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
/// side can tell which: see [`Claims::get`](crate::resolve::sources::Claims::get).
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

/// The tun or tap that fd `fd` of the process at `base` (`<procfs>/<pid>`)
/// is open on, by its `fdinfo`.
pub fn tun_of(fs: &Fs, base: &Path, fd: &std::ffi::OsStr) -> Option<String> {
    let info = fs.read(&base.join("fdinfo").join(fd), FDINFO_MAX).ok()?;
    fdinfo_iff(&String::from_utf8_lossy(&info)).map(str::to_owned)
}

/// The tuns and taps process `pid` holds open (a VPN's `tailscale0`, a
/// QEMU's `vnet3`): fds on `/dev/net/tun`, named by their `fdinfo`.
pub fn held_tuns(fs: &Fs, procfs: &Path, pid: u32) -> std::io::Result<Vec<String>> {
    let base = procfs.join(pid.to_string());
    let mut tuns = Vec::new();
    for entry in fs.read_dir(&base.join("fd"))?.flatten() {
        let is_tun = fs
            .read_link(&entry.path())
            .is_ok_and(|t| t == Path::new("/dev/net/tun"));
        if is_tun {
            tuns.extend(tun_of(fs, &base, &entry.file_name()));
        }
    }
    Ok(tuns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lines() {
        assert_eq!(
            fdinfo_iff("pos:\t0\nflags:\t0104002\nmnt_id:\t27\niff:\tvnet3\n"),
            Some("vnet3")
        );
        assert_eq!(fdinfo_iff("pos:\t0\n"), None);
        assert_eq!(fdinfo_iff("iff:\t\n"), None);
    }

    #[test]
    fn the_v2_cgroup_line() {
        let text = "12:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n";
        assert_eq!(cgroup_v2(text), Some("/docker/abc"));
        assert_eq!(cgroup_v2("0::/\n"), Some("/"));
        assert_eq!(cgroup_v2("1:cpu:/x\n"), None);
        assert_eq!(cgroup_v2("0::relative\n"), None);
    }
}
