//! System containers, through two lookups whose union is the answer:
//! - `cgroups`: LXC and Incus containers (without Incus's API) have their
//!   processes in cgroup `lxc.payload.<name>/...` (cgroup v2:
//!   `0::/lxc.payload.<name>/init.scope`) -> `instance_type="incus"`;
//! - `midclt`: TrueNAS 26's libvirt-LXC containers, from the middleware's
//!   `container.query` and its `status.pid` -> `instance_type="lxc"`.
//!
//! Each container's process is read like a Docker container's, through
//! `<procfs>/<pid>/root/sys/class/net/*/iflink`, to claim its host veths
//! (libvirt names them `vnetN`, like VM taps: the claim goes by ifindex, not
//! by name).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::bounded::Fs;
use crate::clients::command::CommandError;
use crate::clients::middleware::Middleware;
use crate::expose::telemetry::Telemetry;
use crate::model::labels::Kind;
use crate::model::owner::OwnerKind;
use crate::resolve::sources::{
    Claim, Claims, Lookup, ResolverId, Source, Worker, WorkerError, procfs,
};

#[derive(Debug, thiserror::Error)]
pub enum LxcError {
    #[error("cannot scan {path}: {source}")]
    Scan {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Middleware(#[from] crate::clients::middleware::MiddlewareError),
    #[error("midclt container.query output is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no container lookup worked: {0}")]
    AllFailed(String),
}

#[derive(Deserialize)]
struct QueryContainer {
    name: String,
    status: Option<QueryStatus>,
}

#[derive(Deserialize)]
struct QueryStatus {
    pid: Option<i64>,
}

/// `midclt call container.query`: container name -> pid, for those running.
pub fn parse_container_query(json: &str) -> Result<BTreeMap<String, u32>, serde_json::Error> {
    let containers: Vec<QueryContainer> = serde_json::from_str(json)?;
    Ok(containers
        .into_iter()
        .filter_map(|c| {
            let pid = u32::try_from(c.status?.pid?).ok().filter(|&p| p > 0)?;
            Some((c.name, pid))
        })
        .collect())
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
pub fn scan(fs: &Fs, procfs: &Path) -> Result<BTreeMap<String, u32>, LxcError> {
    let processes = procfs::pids(fs, procfs).map_err(|source| LxcError::Scan {
        path: procfs.to_owned(),
        source,
    })?;
    let mut found = BTreeMap::new();
    for (pid, dir) in processes {
        let Ok(cgroup) = fs.read(&dir.join("cgroup"), CGROUP_MAX) else {
            continue;
        };
        if let Some(name) = payload_name(&String::from_utf8_lossy(&cgroup)) {
            let slot = found.entry(name.to_owned()).or_insert(pid);
            *slot = (*slot).min(pid);
        }
    }
    Ok(found)
}

/// Claims each container's host veths, as `kind`.
pub fn owners(fs: &Fs, procfs: &Path, containers: &BTreeMap<String, u32>, kind: Kind) -> Claims {
    let host_ns = procfs::netns_of(fs, procfs, "1");
    let mut owners = Claims::default();
    for (name, &pid) in containers {
        let owner = Claim {
            kind,
            instance: name.clone(),
            app: String::new(),
            of: OwnerKind::SystemContainer,
        };
        // The container's own cgroup: an LXC payload's top (its init sits
        // in `init.scope` below it), or where the middleware's pid is.
        let cgroup = procfs::cgroup_of(fs, procfs, pid).map(|path| {
            let payload = format!("/lxc.payload.{name}");
            if path.starts_with(&format!("{payload}/")) {
                payload
            } else {
                path
            }
        });
        if let Some(path) = cgroup {
            owners.by_cgroup.insert(path, owner.clone());
        }
        let Some(pid) = procfs::in_own_netns(fs, procfs, pid, host_ns.as_deref()) else {
            continue;
        };
        owners.by_netns.insert(pid, owner.clone());
        match procfs::veth_ends(fs, procfs, pid) {
            Ok(ends) => {
                owners.claim_veths(&ends, &owner);
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
    /// Each lookup's share of the refresh timeout.
    budget: std::time::Duration,
    worker: Worker,
    middleware: Arc<Middleware>,
    cgroups: Lookup,
    midclt: Lookup,
}

impl LxcSource {
    /// `timeout` bounds each scan (the refresh timeout).
    pub fn new(
        procfs: &Path,
        middleware: Arc<Middleware>,
        timeout: std::time::Duration,
        telemetry: &Telemetry,
    ) -> LxcSource {
        LxcSource {
            procfs: procfs.to_owned(),
            budget: crate::resolve::sources::lookup_budget(timeout),
            worker: Worker::new(timeout),
            middleware,
            cgroups: Lookup::new(ResolverId::Lxc, "cgroups", telemetry),
            midclt: Lookup::new(ResolverId::Lxc, "midclt", telemetry),
        }
    }

    async fn via_cgroups(&self) -> Result<Claims, LxcError> {
        let procfs = self.procfs.clone();
        self.worker
            .run(move |fs| scan(fs, &procfs).map(|found| owners(fs, &procfs, &found, Kind::Incus)))
            .await?
    }

    /// `None`: no middleware on this host.
    async fn via_midclt(&self) -> Result<Option<Claims>, LxcError> {
        let Some(json) = self.middleware.call("container.query", self.budget).await? else {
            if self.middleware.absent() {
                return Ok(None);
            }
            // A release before 26: no such containers here.
            return Ok(Some(Claims::default()));
        };
        let containers = parse_container_query(&json)?;
        let procfs = self.procfs.clone();
        Ok(Some(
            self.worker
                .run(move |fs| owners(fs, &procfs, &containers, Kind::Lxc))
                .await?,
        ))
    }
}

impl Source for LxcSource {
    type Snapshot = Claims;
    type Error = LxcError;
    const ID: ResolverId = ResolverId::Lxc;

    async fn refresh(&self) -> Result<Claims, LxcError> {
        // Side by side, each under its own budget: a hung midclt must not
        // keep the scan's answer from counting.
        let (from_middleware, from_cgroups) = futures_util::future::join(
            self.midclt.run_if_here(self.budget, self.via_midclt()),
            self.cgroups.run(self.budget, self.via_cgroups()),
        )
        .await;
        match (from_middleware, from_cgroups) {
            (Err(a), Err(b)) => Err(LxcError::AllFailed(format!("midclt: {a}; cgroups: {b}"))),
            (a, b) => {
                // TrueNAS's own containers first: the middleware knows them by name.
                let mut all = a.ok().flatten().unwrap_or_default();
                all.fill_from(b.unwrap_or_default());
                Ok(all)
            }
        }
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

    #[test]
    fn container_query_running_with_pid() {
        let json = r#"[
          {"id": 1, "uuid": "0c1f6b4e-3a2d-4f7e-9a51-2b8e6d0c7a11", "name": "debian", "status": {"state": "RUNNING", "pid": 4242, "domain_state": "RUNNING"}},
          {"id": 2, "uuid": "5a7d1e2c-8b3f-4c6a-9e0d-1f2a3b4c5d6e", "name": "off", "status": {"state": "STOPPED", "pid": null, "domain_state": "SHUTOFF"}}
        ]"#;
        let found = parse_container_query(json).unwrap();
        assert_eq!(found, BTreeMap::from([("debian".to_owned(), 4242)]));
        assert!(parse_container_query("{}").is_err());
    }
}
