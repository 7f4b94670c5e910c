//! Docker resolver: which container owns each host veth, which Docker network
//! each bridge carries, and the app behind both. Talks to the engine through
//! one bollard client on [`UnixHttp`], kept for the process lifetime; reads
//! the containers' network interfaces through
//! `<procfs>/<pid>/root/sys/class/net`.
//! Name rules are pure functions; [`DockerSource`] is the I/O around them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures_util::{StreamExt, stream};
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::bounded::Fs;
use crate::clients::unix_http::{UnixHttp, UnixHttpError, chain};
use crate::config::DockerConfig;
use crate::expose::telemetry::{Limit, LimitMetric, Telemetry};
use crate::model::labels::Kind;
use crate::model::owner::OwnerKind;
use crate::resolve::sources::{
    Claim, Claims, Lookup, ResolverId, Source, Worker, WorkerError, procfs,
};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to the Docker socket {path}: {}", chain(source))]
    Connect {
        path: PathBuf,
        source: bollard::errors::Error,
    },
    #[error("Docker API {call} failed: {}", chain(source))]
    Api {
        call: &'static str,
        source: bollard::errors::Error,
    },
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// `ix-grafana` -> `grafana`: TrueNAS names its Compose projects `ix-<app>`.
pub fn app_from_project(project: &str) -> &str {
    project.strip_prefix("ix-").unwrap_or(project)
}

/// `ix-immich_ix-internal-immich-net` -> `immich`: TrueNAS app networks are
/// `ix-<app>_<suffix>`, and app names hold no `_`. Other networks have no app.
pub fn app_from_network(network: &str) -> &str {
    network
        .strip_prefix("ix-")
        .and_then(|rest| rest.split_once('_'))
        .map_or("", |(app, _)| app)
}

/// The host bridge of a bridge-driver network: its `com.docker.network.bridge.name`
/// option, else `br-` + the first 12 characters of its id.
pub fn bridge_name(
    driver: &str,
    id: &str,
    options: Option<&HashMap<String, String>>,
) -> Option<String> {
    if driver != "bridge" {
        return None;
    }
    if let Some(name) = options
        .and_then(|o| o.get("com.docker.network.bridge.name"))
        .filter(|n| !n.is_empty())
    {
        return Some(name.clone());
    }
    let short: String = id.chars().take(12).collect();
    (short.len() == 12).then(|| format!("br-{short}"))
}

/// The engine's default network, whose bridge is `docker0` unless the engine
/// was started with `--bridge`.
const DEFAULT_NETWORK: &str = "bridge";

/// Claim of a Docker network's bridge: the network's name, except the default
/// network's bridge (`docker0`), which keeps its interface name.
pub fn bridge_owner(bridge: &str, network: &str) -> Claim {
    let (instance, app) = if network == DEFAULT_NETWORK {
        (bridge, "")
    } else {
        (network, app_from_network(network))
    };
    Claim {
        kind: Kind::Bridge,
        instance: instance.to_owned(),
        app: app.to_owned(),
        of: OwnerKind::Network,
    }
}

/// What the resolver needs of one inspected, running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    /// Without Docker's leading `/`.
    pub name: String,
    pub pid: u32,
    pub app: String,
    /// `network_mode: container:<x>` (Compose `service:<x>`): it joined another's namespace.
    pub joins_another: bool,
    /// `network_mode: host`: the engine says so, whether or not the host's
    /// namespace can be read (it cannot without the right to look at pid 1).
    pub host_network: bool,
}

/// Picks, for each network namespace, the container that owns it: the one that
/// did not join another's namespace, then the first by name. Namespaces equal to
/// `host_ns` (host networking), and host-network containers, own nothing.
pub fn namespace_owners<'a>(
    containers: &'a [(ContainerFacts, String)],
    host_ns: Option<&str>,
) -> Vec<(&'a ContainerFacts, &'a str)> {
    let mut by_ns: BTreeMap<&str, &ContainerFacts> = BTreeMap::new();
    for (facts, ns) in containers {
        if facts.host_network || Some(ns.as_str()) == host_ns {
            continue;
        }
        let slot = by_ns.entry(ns.as_str()).or_insert(facts);
        if (facts.joins_another, &facts.name) < (slot.joins_another, &slot.name) {
            *slot = facts;
        }
    }
    by_ns.into_iter().map(|(ns, facts)| (facts, ns)).collect()
}

/// Claims every container's veths (by their host ends) for the container;
/// `cgroup2`, where the cgroup v2 hierarchy is mounted, finds the processes
/// of a host-network container (without it, its main process only).
pub fn map_veths(
    fs: &Fs,
    procfs: &Path,
    cgroup2: Option<&Path>,
    containers: Vec<ContainerFacts>,
) -> Claims {
    let mut veths = Claims::default();
    let claim = |c: &ContainerFacts| Claim {
        kind: Kind::Docker,
        instance: c.name.clone(),
        app: c.app.clone(),
        of: OwnerKind::Container,
    };
    let host_ns = procfs::netns_of(fs, procfs, "1");
    for c in &containers {
        // Every container's cgroup, whatever its network: a host-network
        // container's traffic has no interface of its own, only its sockets.
        let cgroup = procfs::cgroup_of(fs, procfs, c.pid);
        if let Some(path) = &cgroup {
            veths.by_cgroup.insert(path.clone(), claim(c));
        }
        // A host-network container's tuns are host interfaces (tailscale0,
        // zt*): its processes hold them open, as QEMU holds its taps.
        if c.host_network {
            let pids = cgroup
                .as_deref()
                .zip(cgroup2)
                .map(|(path, mount)| cgroup_procs(fs, mount, path))
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| vec![c.pid]);
            tracing::debug!(container = %c.name, ?pids, "a host-network container's processes");
            for pid in pids {
                for tun in procfs::held_tuns(fs, procfs, pid).unwrap_or_default() {
                    tracing::debug!(container = %c.name, %tun, pid, "a tun the container holds");
                    veths.by_interface.insert(tun.into_bytes(), claim(c));
                }
            }
        }
    }
    let with_ns: Vec<(ContainerFacts, String)> = containers
        .into_iter()
        .filter_map(|c| {
            let ns = procfs::netns_of(fs, procfs, &c.pid.to_string());
            if ns.is_none() {
                tracing::debug!(container = %c.name, pid = c.pid, "cannot read the container's network namespace");
            }
            Some((c, ns?))
        })
        .collect();
    for (facts, _) in namespace_owners(&with_ns, host_ns.as_deref()) {
        veths.by_netns.insert(facts.pid, claim(facts));
        match procfs::veth_ends(fs, procfs, facts.pid) {
            Ok(ends) => veths.claim_veths(&ends, &claim(facts)),
            Err(e) => {
                tracing::debug!(container = %facts.name, error = %e, "cannot read container sysfs")
            }
        }
    }
    veths
}

/// A container's processes looked at for tuns, at most: a VPN app has a few.
const MAX_PROCS: usize = 256;

/// The processes in cgroup `path` of the hierarchy mounted at `mount`.
fn cgroup_procs(fs: &Fs, mount: &Path, path: &str) -> Vec<u32> {
    let file = mount
        .join(path.trim_start_matches('/'))
        .join("cgroup.procs");
    fs.read(&file, 64 * 1024)
        .map(|t| {
            String::from_utf8_lossy(&t)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .take(MAX_PROCS)
                .collect()
        })
        .unwrap_or_default()
}

/// Inspects at most this many containers at once.
const INSPECT_CONCURRENCY: usize = 8;

/// The Docker resolver. The client is created on first use (the socket may
/// appear after the exporter starts) and then kept for the process lifetime.
pub struct DockerSource {
    socket: PathBuf,
    procfs: PathBuf,
    /// The cgroup v2 mount, found once at start.
    cgroup2: Option<PathBuf>,
    request_timeout: Duration,
    client: OnceCell<Docker>,
    /// Notified on every engine event that may change the mapping.
    wakes: Vec<Arc<Notify>>,
    worker: Worker,
    /// A larger API response fails the call.
    max_response: usize,
    oversize: Arc<LimitMetric>,
    /// `source_up{resolver="docker",source="socket"}`: none until the
    /// socket is found.
    health: Lookup,
    /// "No Docker socket" was said.
    said_absent: std::sync::atomic::AtomicBool,
}

impl DockerSource {
    /// `wakes`: the resolvers to wake on an engine event (this one, and the
    /// topology: a container's start or stop adds or removes a veth);
    /// `cgroup2`: where the cgroup v2 hierarchy is mounted, if it is.
    pub fn new(
        config: &DockerConfig,
        procfs: &Path,
        cgroup2: Option<PathBuf>,
        wakes: Vec<Arc<Notify>>,
        telemetry: &Telemetry,
    ) -> DockerSource {
        DockerSource {
            socket: config.socket.clone(),
            procfs: procfs.to_owned(),
            cgroup2,
            request_timeout: config.schedule.timeout,
            client: OnceCell::new(),
            wakes,
            worker: Worker::new(config.schedule.timeout),
            max_response: config.max_response_bytes,
            oversize: telemetry.limit(Limit::DockerResponse),
            health: Lookup::new(ResolverId::Docker, "socket", telemetry),
            said_absent: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The process's one client, created and version-negotiated on first
    /// success (the engine may speak an older API than bollard's default).
    async fn client(&self) -> Result<Docker, DockerError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let client = engine_client(
                    &self.socket,
                    self.max_response,
                    Arc::clone(&self.oversize),
                    self.request_timeout,
                )
                .map_err(|source| DockerError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
                client
                    .negotiate_version()
                    .await
                    .map_err(|source| DockerError::Connect {
                        path: self.socket.clone(),
                        source,
                    })
            })
            .await?;
        Ok(client.clone())
    }

    async fn inspect(docker: &Docker, id: String) -> Result<Option<ContainerFacts>, DockerError> {
        let inspect = match docker.inspect_container(&id, None).await {
            Ok(i) => i,
            // Gone between list and inspect.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(source) => {
                return Err(DockerError::Api {
                    call: "inspect container",
                    source,
                });
            }
        };
        let pid = inspect
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok());
        let Some(pid) = pid.filter(|&p| p > 0) else {
            return Ok(None);
        };
        let name = inspect
            .name
            .as_deref()
            .unwrap_or(&id)
            .trim_start_matches('/')
            .to_owned();
        let app = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get("com.docker.compose.project"))
            .map_or(String::new(), |p| app_from_project(p).to_owned());
        let network_mode = inspect
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref());
        let joins_another = network_mode.is_some_and(|m| m.starts_with("container:"));
        let host_network = network_mode == Some("host");
        Ok(Some(ContainerFacts {
            name,
            pid,
            app,
            joins_another,
            host_network,
        }))
    }

    /// Forwards engine events that change the mapping to `wakes`. When the
    /// stream breaks (the engine restarts, say) it asks again, with backoff,
    /// until the engine answers a ping; it then follows the events again
    /// from a little before the break (`since`: the engine replays what it
    /// saw meanwhile) and wakes the resolvers at once, since what happened
    /// while nobody listened is only known by looking.
    async fn watch_events(&self, shutdown: CancellationToken) {
        let wakes = &self.wakes;
        let wake_all = || wakes.iter().for_each(|w| w.notify_one());
        let mut backoff = EVENTS_BACKOFF;
        let mut since: Option<SystemTime> = None;
        loop {
            let reachable = match self.client().await {
                Ok(docker) => docker.ping().await.map(|_| docker).ok(),
                Err(_) => None,
            };
            if let Some(docker) = reachable {
                backoff = EVENTS_BACKOFF;
                let filters = HashMap::from([
                    (
                        "type".to_owned(),
                        vec!["container".to_owned(), "network".to_owned()],
                    ),
                    (
                        "event".to_owned(),
                        [
                            "start",
                            "die",
                            "destroy",
                            "create",
                            "connect",
                            "disconnect",
                            "rename",
                        ]
                        .map(str::to_owned)
                        .to_vec(),
                    ),
                ]);
                let mut events = docker.events(Some(EventsOptions {
                    filters: Some(filters),
                    since: since.map(events_since),
                    ..Default::default()
                }));
                if since.is_some() {
                    wake_all();
                }
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        event = events.next() => match event {
                            Some(Ok(_)) => wake_all(),
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "Docker event stream ended");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                since = Some(SystemTime::now());
                // Look now: the engine may be going away, or have been away.
                wake_all();
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(EVENTS_BACKOFF_MAX);
        }
    }
}

/// Between tries to reach the engine again: short, because an engine that
/// restarts is back within seconds, and events until then wait on this.
const EVENTS_BACKOFF: Duration = Duration::from_millis(250);
const EVENTS_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The engine's `since`: unix seconds, from a second before `at` (the
/// engine's clock is this host's; the margin covers its rounding).
fn events_since(at: SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs.saturating_sub(1).to_string()
}

impl Source for DockerSource {
    type Snapshot = Claims;
    type Error = DockerError;
    const ID: ResolverId = ResolverId::Docker;

    async fn watch(&self, shutdown: CancellationToken) {
        self.watch_events(shutdown).await;
    }

    fn stuck_on(&self) -> Option<String> {
        self.worker.stuck_on()
    }

    /// Until the socket is first found, a host without it has no Docker:
    /// said once, at info, and not a failure. Once found, an engine that
    /// stops (its socket gone or refusing) is a failure.
    async fn refresh(&self) -> Result<Claims, DockerError> {
        if !self.health.present() {
            let socket = self.socket.clone();
            if !self.worker.run(move |fs| fs.exists(&socket)).await? {
                if !self
                    .said_absent
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::info!(socket = %self.socket.display(), "no Docker socket: no Docker containers on this host");
                }
                return Ok(Claims::default());
            }
        }
        self.health.record(self.query().await)
    }
}

impl DockerSource {
    async fn query(&self) -> Result<Claims, DockerError> {
        let docker = self.client().await?;
        let listed = docker
            .list_containers(None)
            .await
            .map_err(|source| DockerError::Api {
                call: "list containers",
                source,
            })?;
        let networks = docker
            .list_networks(None)
            .await
            .map_err(|source| DockerError::Api {
                call: "list networks",
                source,
            })?;
        let inspected: Vec<_> = stream::iter(listed.into_iter().filter_map(|c| c.id))
            .map(|id| Self::inspect(&docker, id))
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;
        let mut containers = Vec::with_capacity(inspected.len());
        for result in inspected {
            if let Some(facts) = result? {
                containers.push(facts);
            }
        }
        let (procfs, cgroup2) = (self.procfs.clone(), self.cgroup2.clone());
        let mut owners = self
            .worker
            .run(move |fs| map_veths(fs, &procfs, cgroup2.as_deref(), containers))
            .await?;

        for net in &networks {
            let (Some(name), Some(id)) = (&net.name, &net.id) else {
                continue;
            };
            if let Some(bridge) = bridge_name(
                net.driver.as_deref().unwrap_or(""),
                id,
                net.options.as_ref(),
            ) {
                let owner = bridge_owner(&bridge, name);
                owners.by_interface.insert(bridge.into_bytes(), owner);
            }
        }
        Ok(owners)
    }
}

/// bollard on [`UnixHttp`]: the socket's one client, capped per response.
fn engine_client(
    socket: &Path,
    max_response: usize,
    oversize: Arc<LimitMetric>,
    timeout: Duration,
) -> Result<Docker, bollard::errors::Error> {
    let connects = Arc::new(Worker::new(timeout));
    let http = Arc::new(UnixHttp::new(
        socket,
        connects,
        max_response,
        oversize,
        timeout,
    ));
    Docker::connect_with_custom_transport(
        move |request| {
            let http = Arc::clone(&http);
            async move {
                http.request(request).await.map_err(|e| match e {
                    UnixHttpError::Timeout { .. } => bollard::errors::Error::RequestTimeoutError,
                    e => std::io::Error::other(e).into(),
                })
            }
        },
        // The client ignores the address: every request goes to the socket.
        Some("http://docker"),
        timeout.as_secs().max(1),
        bollard::API_DEFAULT_VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_from_projects_and_networks() {
        assert_eq!(app_from_project("ix-grafana"), "grafana");
        assert_eq!(app_from_project("mystack"), "mystack");
        assert_eq!(app_from_network("ix-grafana_default"), "grafana");
        assert_eq!(
            app_from_network("ix-immich_ix-internal-immich-net"),
            "immich"
        );
        assert_eq!(app_from_network("bridge"), "");
        assert_eq!(app_from_network("ix-noseparator"), "");
        assert_eq!(app_from_network("other_default"), "");
    }

    #[test]
    fn bridge_names() {
        let id = "2c852816592cabcdef0123456789";
        assert_eq!(
            bridge_name("bridge", id, None).as_deref(),
            Some("br-2c852816592c")
        );
        let opts = HashMap::from([(
            "com.docker.network.bridge.name".to_owned(),
            "docker0".to_owned(),
        )]);
        assert_eq!(
            bridge_name("bridge", id, Some(&opts)).as_deref(),
            Some("docker0")
        );
        assert_eq!(bridge_name("macvlan", id, None), None);
        assert_eq!(bridge_name("host", id, None), None);
        assert_eq!(bridge_name("bridge", "short", None), None);
        assert_eq!(bridge_owner("docker0", "bridge").instance, "docker0");
        assert_eq!(bridge_owner("tneci0", "bridge").instance, "tneci0");
        let o = bridge_owner("br-2c852816592c", "ix-grafana_default");
        assert_eq!(
            (o.instance.as_str(), o.app.as_str(), o.kind),
            ("ix-grafana_default", "grafana", Kind::Bridge)
        );
    }

    #[test]
    fn namespace_owner_is_deterministic() {
        let c = |name: &str, joins| ContainerFacts {
            name: name.into(),
            pid: 1,
            app: String::new(),
            joins_another: joins,
            host_network: name == "hostnet",
        };
        let list = vec![
            (c("b-sidecar", true), "net:[2]".to_owned()),
            (c("z-main", false), "net:[2]".to_owned()),
            (c("a-sidecar", true), "net:[2]".to_owned()),
            (c("hostnet", false), "net:[1]".to_owned()),
            (c("alone", false), "net:[3]".to_owned()),
        ];
        let owners = namespace_owners(&list, Some("net:[1]"));
        let names: Vec<_> = owners
            .iter()
            .map(|(f, ns)| (f.name.as_str(), *ns))
            .collect();
        assert_eq!(names, [("z-main", "net:[2]"), ("alone", "net:[3]")]);
        let mut reversed = list.clone();
        reversed.reverse();
        assert_eq!(namespace_owners(&reversed, Some("net:[1]")).len(), 2);
        assert_eq!(
            namespace_owners(&reversed, Some("net:[1]"))[0].0.name,
            "z-main"
        );
        // The host's namespace unread: the engine's word still counts.
        let names: Vec<_> = namespace_owners(&list, None)
            .iter()
            .map(|(f, _)| f.name.as_str())
            .collect();
        assert_eq!(names, ["z-main", "alone"]);
    }
}
