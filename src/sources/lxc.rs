//! LXC/Incus resolver: container processes sit in cgroup
//! `lxc.payload.<name>/...` (cgroup v2: `0::/lxc.payload.<name>/init.scope`);
//! the lowest such pid per container is read like a Docker container's, through
//! `<procfs>/<pid>/root/sys/class/net/*/iflink`, to claim its host veths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bounded;
use crate::labels::Kind;
use crate::sources::{Owner, Owners, ResolverId, Source, Worker, WorkerError, procfs};

#[derive(Debug, thiserror::Error)]
pub enum LxcError {
    #[error("cannot scan {path}: {source}")]
    Scan {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// The container name in a `/proc/<pid>/cgroup` file, if the process runs in
/// an LXC payload cgroup (the monitor, `lxc.monitor.<name>`, does not count).
pub fn payload_name(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let first = path.trim_start_matches('/').split('/').next()?;
        first.strip_prefix("lxc.payload.").filter(|n| !n.is_empty())
    })
}

/// A `/proc/<pid>/cgroup` is a line per hierarchy: a few hundred bytes.
const CGROUP_MAX: usize = 64 * 1024;

/// Container name -> lowest pid in its payload cgroup.
pub fn scan(procfs: &Path) -> Result<BTreeMap<String, u32>, LxcError> {
    let processes = procfs::pids(procfs).map_err(|source| LxcError::Scan {
        path: procfs.to_owned(),
        source,
    })?;
    let mut found = BTreeMap::new();
    for (pid, dir) in processes {
        let Ok(cgroup) = bounded::read(&dir.join("cgroup"), CGROUP_MAX) else {
            continue;
        };
        if let Some(name) = payload_name(&String::from_utf8_lossy(&cgroup)) {
            let slot = found.entry(name.to_owned()).or_insert(pid);
            *slot = (*slot).min(pid);
        }
    }
    Ok(found)
}

/// Claims each container's host veths.
pub fn owners(procfs: &Path, containers: &BTreeMap<String, u32>) -> Owners {
    let host_ns = procfs::netns_of(procfs, "1");
    let mut owners = Owners::default();
    for (name, &pid) in containers {
        if procfs::netns_of(procfs, &pid.to_string()) == host_ns {
            continue;
        }
        match procfs::peer_ifindexes(procfs, pid) {
            Ok(indexes) => {
                for index in indexes {
                    let owner = Owner {
                        kind: Kind::Incus,
                        instance: name.clone(),
                        app: String::new(),
                    };
                    owners.by_ifindex.insert(index, owner);
                }
            }
            Err(e) => {
                tracing::debug!(container = %name, pid, error = %e, "cannot read LXC container sysfs")
            }
        }
    }
    owners
}

pub struct LxcSource {
    procfs: PathBuf,
    worker: Worker,
}

impl LxcSource {
    /// `timeout` bounds each scan (the refresh timeout).
    pub fn new(procfs: &Path, timeout: std::time::Duration) -> LxcSource {
        LxcSource {
            procfs: procfs.to_owned(),
            worker: Worker::new(timeout),
        }
    }
}

impl Source for LxcSource {
    type Snapshot = Owners;
    type Error = LxcError;
    const ID: ResolverId = ResolverId::Lxc;

    async fn refresh(&self) -> Result<Owners, LxcError> {
        let procfs = self.procfs.clone();
        self.worker
            .run(move || scan(&procfs).map(|found| owners(&procfs, &found)))
            .await?
    }

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_cgroups() {
        assert_eq!(
            payload_name("0::/lxc.payload.web/init.scope\n"),
            Some("web")
        );
        assert_eq!(
            payload_name("12:pids:/lxc.payload.db/system.slice\n0::/\n"),
            Some("db")
        );
        assert_eq!(payload_name("0::/lxc.monitor.web\n"), None);
        assert_eq!(payload_name("0::/system.slice/lxc.payload.x\n"), None);
        assert_eq!(payload_name("0::/lxc.payload.\n"), None);
        assert_eq!(payload_name(""), None);
    }
}
