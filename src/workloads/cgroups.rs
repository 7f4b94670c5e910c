//! The cgroup v2 tree: every cgroup's id (its directory's inode number, the
//! id the kernel gives a socket's cgroup) and its path. The traffic counted
//! per cgroup is named from this and the owners' cgroup claims; nothing on
//! the scrape path walks a directory.
//!
//! The hierarchy is found in the exporter's own mount table ([`find_mount`],
//! once at start): at `/sys/fs/cgroup` on a unified host (TrueNAS), at
//! `/sys/fs/cgroup/unified` on a hybrid one.

use std::path::{Path, PathBuf};

use crate::bounded::Fs;
use crate::resolve::sources::{ResolverId, Source, Worker, WorkerError};
use crate::workloads::accounting::cgroup2_mount;

/// Cgroups read per refresh at most: past this the rest is left out (and
/// logged), not the refresh.
pub const MAX_CGROUPS: usize = crate::config::defaults::CGROUP_TREE_MAX;
/// How deep below the root the walk goes.
const MAX_DEPTH: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CgroupsError {
    #[error("no cgroup v2 hierarchy in the exporter's mount table")]
    NoHierarchy,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// One cgroup: its id and its path from the hierarchy's root (`/` for the
/// root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub id: u64,
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupTree {
    /// Where the hierarchy is mounted.
    pub root: PathBuf,
    /// Parents before their children.
    pub cgroups: Vec<Cgroup>,
    /// Whether the walk stopped at [`MAX_CGROUPS`].
    pub truncated: bool,
}

/// Walks the hierarchy from `root`, whose path in it is `path` (empty for
/// the hierarchy's root), parents first.
pub fn walk(fs: &Fs, root: &Path, path: &str) -> Result<CgroupTree, CgroupsError> {
    use std::os::unix::fs::MetadataExt;
    let id = |path: &Path| fs.metadata(path).map(|m| m.ino());
    let read = |path: &Path, source| CgroupsError::Read {
        path: path.to_owned(),
        source,
    };
    let mut tree = CgroupTree {
        root: root.to_owned(),
        cgroups: vec![Cgroup {
            id: id(root).map_err(|e| read(root, e))?,
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
        }],
        truncated: false,
    };
    let mut level = vec![(root.to_owned(), path.to_owned())];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for (dir, path) in level {
            let Ok(entries) = fs.read_dir(&dir) else {
                // Gone since its parent was read: a container that stopped.
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let child = entry.path();
                let Ok(inode) = id(&child) else { continue };
                if tree.cgroups.len() >= MAX_CGROUPS {
                    tree.truncated = true;
                    return Ok(tree);
                }
                let child_path = format!("{path}/{name}");
                tree.cgroups.push(Cgroup {
                    id: inode,
                    path: child_path.clone(),
                });
                next.push((child, child_path));
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(tree)
}

/// Where the cgroup v2 hierarchy is mounted, from the exporter's own mount
/// table (`<procfs>/self/mountinfo`); `None` if it has none or cannot be
/// read. Read once at start: the mount table of the exporter's namespace is
/// set before it starts (by systemd at boot, or by the container runtime).
pub fn find_mount(procfs: &Path) -> Option<PathBuf> {
    let mountinfo = procfs.join("self/mountinfo");
    let table = crate::bounded::read(&mountinfo, 1 << 20)
        .inspect_err(|e| tracing::debug!(mountinfo = %mountinfo.display(), error = %e, "cannot read the mount table"))
        .ok()?;
    cgroup2_mount(&String::from_utf8_lossy(&table))
}

pub struct CgroupSource {
    /// Where the counting programs are attached, if not at the hierarchy's
    /// root (the tests' own cgroup).
    root: Option<PathBuf>,
    /// Where the hierarchy is mounted, found at start and not looked for
    /// again, even when absent: the exporter's own mount table is set
    /// before it starts, and this resolver runs only where the programs were
    /// attached at start (to `root`, or to this mount). Without it a
    /// configured `root` is walked as a tree of its own.
    mount: Option<PathBuf>,
    worker: Worker,
}

impl CgroupSource {
    /// `mount`: [`find_mount`]'s answer.
    pub fn new(
        mount: Option<PathBuf>,
        root: Option<PathBuf>,
        timeout: std::time::Duration,
    ) -> CgroupSource {
        CgroupSource {
            root,
            mount,
            worker: Worker::new(timeout),
        }
    }
}

/// The directory to walk and its path in the hierarchy: the configured
/// root if any (its path from the mount, when it is below it), else the
/// mount itself.
pub fn start(root: Option<&Path>, mount: Option<&Path>) -> Option<(PathBuf, String)> {
    match (root, mount) {
        (Some(root), mount) => {
            let below = mount
                .and_then(|m| root.strip_prefix(m).ok())
                .map(|rel| format!("/{}", rel.display()))
                .filter(|p| p != "/")
                .unwrap_or_default();
            Some((root.to_owned(), below))
        }
        (None, Some(mount)) => Some((mount.to_owned(), String::new())),
        (None, None) => None,
    }
}

impl Source for CgroupSource {
    type Snapshot = CgroupTree;
    type Error = CgroupsError;
    const ID: ResolverId = ResolverId::Cgroups;

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }

    async fn refresh(&self) -> Result<CgroupTree, CgroupsError> {
        let (dir, path) =
            start(self.root.as_deref(), self.mount.as_deref()).ok_or(CgroupsError::NoHierarchy)?;
        self.worker.run(move |fs| walk(fs, &dir, &path)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_starts_at_the_root_or_the_configured_cgroup() {
        let mount = Path::new("/sys/fs/cgroup");
        assert_eq!(
            start(None, Some(mount)),
            Some((mount.to_owned(), String::new()))
        );
        assert_eq!(
            start(Some(Path::new("/sys/fs/cgroup/tne/x")), Some(mount)),
            Some((PathBuf::from("/sys/fs/cgroup/tne/x"), "/tne/x".to_owned()))
        );
        assert_eq!(
            start(Some(Path::new("/elsewhere")), Some(mount)),
            Some((PathBuf::from("/elsewhere"), String::new()))
        );
        assert_eq!(start(None, None), None);
    }
}
