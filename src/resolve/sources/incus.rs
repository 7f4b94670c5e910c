//! Incus resolver (TrueNAS 25.04 to 25.10, and any Incus host): the Incus
//! REST API on its unix socket ([`UnixHttp`]).
//! `GET /1.0/instances?recursion=1` carries each instance's host-side
//! interface names as `config["volatile.<nic>.host_name"]`: a container's
//! veth (`veth` + 8 hex), a VM's tap (`tap` + 8 hex), a macvlan NIC's device
//! (`mac` + 8 hex). No process table, no guessing. A host without the socket
//! has no Incus: that is not a failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use http_body_util::Empty;
use hyper::body::Bytes;

use crate::clients::middleware::Middleware;
use crate::clients::unix_http::{UnixHttp, UnixHttpError};
use crate::expose::telemetry::{Limit, Telemetry};
use crate::model::labels::Kind;
use crate::model::owner::OwnerKind;
use crate::resolve::sources::{Claim, Claims, Lookup, ResolverId, Source, Worker, WorkerError};

/// Every project's instances; `recursion=1` includes their config (with the
/// volatile keys) without gathering each instance's live state.
const INSTANCES: &str = "/1.0/instances?recursion=1&all-projects=true";

#[derive(Debug, thiserror::Error)]
pub enum IncusError {
    #[error(transparent)]
    Http(#[from] UnixHttpError),
    #[error("Incus answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the Incus instance list is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("the Incus socket {0} is gone")]
    Gone(String),
}

#[derive(Deserialize)]
struct Answer {
    /// The instances; `null` in an error answer.
    metadata: Option<Vec<Instance>>,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct Instance {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: HashMap<String, String>,
}

/// Claims from the instance list: each `volatile.<nic>.host_name`.
pub fn parse_instances(json: &[u8]) -> Result<Claims, serde_json::Error> {
    let answer: Answer = serde_json::from_slice(json)?;
    let instances = answer
        .metadata
        .ok_or_else(|| <serde_json::Error as serde::de::Error>::missing_field("metadata"))?;
    let mut owners = Claims::default();
    for instance in instances {
        for (key, host_name) in &instance.config {
            let is_nic = key
                .strip_prefix("volatile.")
                .and_then(|k| k.strip_suffix(".host_name"))
                .is_some_and(|nic| !nic.is_empty());
            if !is_nic || host_name.is_empty() {
                continue;
            }
            let kind = if is_macvlan_name(host_name) {
                Kind::Macvtap
            } else if instance.kind == "virtual-machine" {
                Kind::Vm
            } else {
                Kind::Incus
            };
            let of = if instance.kind == "virtual-machine" {
                OwnerKind::Vm
            } else {
                OwnerKind::SystemContainer
            };
            let owner = Claim {
                kind,
                instance: instance.name.clone(),
                app: String::new(),
                of,
            };
            owners
                .by_interface
                .insert(host_name.as_bytes().to_vec(), owner);
        }
    }
    Ok(owners)
}

/// Incus names a macvlan NIC's host device `mac` + 8 hex digits.
fn is_macvlan_name(name: &str) -> bool {
    name.strip_prefix("mac")
        .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub struct IncusSource {
    socket: PathBuf,
    /// Looks at the socket and connects to it: a hung mount under the root
    /// must stall this resolver's refresh, not the thread every resolver shares.
    worker: Arc<Worker>,
    http: UnixHttp<Empty<Bytes>>,
    /// The middleware's share of the refresh timeout.
    budget: Duration,
    /// To tell "no Incus here" from "Incus, but its socket is not visible".
    middleware: Option<Arc<Middleware>>,
    /// Whether the socket was absent at the last refresh, to log changes only.
    absent: Mutex<Option<bool>>,
    /// `source_up{resolver="incus",source="socket"}`: none until the socket
    /// is found.
    health: Lookup,
}

impl IncusSource {
    /// `socket` is a path on the host, looked up under `rootfs`; `timeout`
    /// is the refresh timeout; an answer past `max_response` bytes fails
    /// and is counted.
    pub fn new(
        socket: &Path,
        rootfs: &Path,
        max_response: usize,
        timeout: Duration,
        middleware: Option<Arc<Middleware>>,
        telemetry: &Telemetry,
    ) -> IncusSource {
        let socket = rootfs.join(socket.strip_prefix("/").unwrap_or(socket));
        let worker = Arc::new(Worker::new(timeout));
        let http = UnixHttp::new(
            &socket,
            Arc::clone(&worker),
            max_response,
            telemetry.limit(Limit::IncusResponse),
            timeout,
        );
        IncusSource {
            socket,
            worker,
            http,
            budget: crate::resolve::sources::lookup_budget(timeout),
            middleware,
            absent: Mutex::new(None),
            health: Lookup::new(ResolverId::Incus, "socket", telemetry),
        }
    }

    /// The socket is missing: said once, at info, unless the middleware
    /// knows Incus instances, which means the socket should be visible.
    async fn report_absent(&self) {
        let instances = match &self.middleware {
            Some(m) => m
                .call("virt.instance.query", self.budget)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let listed = instances
            .as_deref()
            .and_then(|json| serde_json::from_str::<Vec<serde_json::Value>>(json).ok())
            .map_or(0, |list| list.len());
        let socket = self.socket.display();
        if listed > 0 {
            tracing::warn!(%socket, instances = listed, "the middleware lists Incus instances but the Incus socket is not there; in a container, is the host's / mounted at --path.rootfs?");
        } else {
            tracing::info!(%socket, "no Incus socket: no Incus instances on this host");
        }
    }
}

impl Source for IncusSource {
    type Snapshot = Claims;
    type Error = IncusError;
    const ID: ResolverId = ResolverId::Incus;

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }

    async fn refresh(&self) -> Result<Claims, IncusError> {
        let answer = self.query().await;
        let gone = || IncusError::Gone(self.socket.display().to_string());
        Ok(self.health.record_found(answer, gone)?.unwrap_or_default())
    }
}

impl IncusSource {
    /// The instances' claims; `None` while there is no socket.
    async fn query(&self) -> Result<Option<Claims>, IncusError> {
        let socket = self.socket.clone();
        let absent = self.worker.run(move |fs| !fs.exists(&socket)).await?;
        let changed = self
            .absent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(absent)
            != Some(absent);
        if absent {
            if changed {
                self.report_absent().await;
            }
            return Ok(None);
        }
        if changed {
            tracing::info!(socket = %self.socket.display(), "Incus socket found");
        }
        let (status, body) = self.http.get(INSTANCES).await?;
        if status != 200 {
            let message = serde_json::from_slice::<Answer>(&body)
                .map(|a| a.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(IncusError::Status { status, message });
        }
        Ok(Some(parse_instances(&body)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_of_containers_vms_and_macvlans() {
        let json = br#"{"type": "sync", "status": "Success", "status_code": 200, "metadata": [
          {"name": "web", "type": "container", "project": "default", "status": "Running",
           "config": {"image.os": "Debian", "volatile.eth0.host_name": "veth1a2b3c4d",
                      "volatile.eth0.hwaddr": "00:16:3e:aa:bb:cc", "volatile.eth1.host_name": "mac0a1b2c3d"}},
          {"name": "winvm", "type": "virtual-machine", "config": {"volatile.eth0.host_name": "tap9f8e7d6c"}},
          {"name": "stopped", "type": "container", "config": {"volatile.eth0.hwaddr": "00:16:3e:00:00:01"}},
          {"name": "odd", "type": "container", "config": {"volatile..host_name": "vethx", "volatile.eth0.host_name": ""}}
        ]}"#;
        let owners = parse_instances(json).unwrap();
        let got = |iface: &str| {
            let o = &owners.by_interface[iface.as_bytes()];
            (o.instance.as_str(), o.kind)
        };
        assert_eq!(got("veth1a2b3c4d"), ("web", Kind::Incus));
        assert_eq!(got("mac0a1b2c3d"), ("web", Kind::Macvtap));
        assert_eq!(got("tap9f8e7d6c"), ("winvm", Kind::Vm));
        assert_eq!(owners.by_interface.len(), 3);
        assert!(parse_instances(b"[]").is_err());
        assert!(
            parse_instances(br#"{"type": "error", "error": "not found", "metadata": null}"#)
                .is_err()
        );
        assert!(is_macvlan_name("mac0123abcd") && !is_macvlan_name("macvtap0"));
    }
}
