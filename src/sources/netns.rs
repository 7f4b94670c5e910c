//! Network-namespace helpers shared by the container resolvers (Docker, LXC):
//! which namespace a process is in, and which host interfaces its interfaces
//! are paired with.

use std::path::Path;

/// The `net:[inode]` link of a process's network namespace.
pub fn of(procfs: &Path, pid: &str) -> Option<String> {
    std::fs::read_link(procfs.join(pid).join("ns/net"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Host ifindexes of a process's network interfaces: each non-`lo` interface
/// under `<procfs>/<pid>/root/sys/class/net` whose `iflink` points elsewhere.
pub fn peer_ifindexes(procfs: &Path, pid: u32) -> std::io::Result<Vec<u32>> {
    let class = procfs.join(pid.to_string()).join("root/sys/class/net");
    let read = |dir: &Path, f: &str| -> Option<u32> {
        std::fs::read_to_string(dir.join(f))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
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
