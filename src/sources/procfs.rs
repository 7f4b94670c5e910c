//! Process-table helpers shared by the resolvers that look at processes
//! (Docker, LXC, the QEMU scan): listing pids, which network namespace a
//! process is in, and which host interfaces its interfaces are paired with.

use std::path::{Path, PathBuf};

use crate::bounded;

/// Every process directory under `procfs`, as `(pid, <procfs>/<pid>)`.
pub fn pids(procfs: &Path) -> std::io::Result<impl Iterator<Item = (u32, PathBuf)>> {
    bounded::note(procfs);
    Ok(std::fs::read_dir(procfs)?.flatten().filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse().ok()?;
        Some((pid, entry.path()))
    }))
}

/// The `net:[inode]` link of a process's network namespace.
pub fn netns_of(procfs: &Path, pid: &str) -> Option<String> {
    let link = procfs.join(pid).join("ns/net");
    bounded::note(&link);
    std::fs::read_link(link)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Host ifindexes of a process's network interfaces: each non-`lo` interface
/// under `<procfs>/<pid>/root/sys/class/net` whose `iflink` points elsewhere.
pub fn peer_ifindexes(procfs: &Path, pid: u32) -> std::io::Result<Vec<u32>> {
    let class = procfs.join(pid.to_string()).join("root/sys/class/net");
    let read = |dir: &Path, f: &str| -> Option<u32> {
        bounded::sysfs_text(&dir.join(f))?.trim().parse().ok()
    };
    bounded::note(&class);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(class)?.flatten() {
        if entry.file_name() == "lo" {
            continue;
        }
        let dir = entry.path();
        if let (Some(link), Some(index)) = (read(&dir, "iflink"), read(&dir, "ifindex"))
            && link != index
        {
            out.push(link);
        }
    }
    Ok(out)
}
