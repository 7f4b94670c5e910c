//! Sources of facts about interfaces, one module each. A source produces an
//! immutable snapshot per refresh; [`resolver`](crate::resolve) runs it on a
//! schedule and the [`composer`](crate::composer) joins the snapshots.
//! Topology publishes kernel facts; the others publish [`Claims`]: who holds
//! which interface. This module has what they share: the [`Source`] trait, the
//! [`ResolverId`] that names them, and the [`Claims`] snapshot.

use std::collections::HashMap;
use std::future::Future;

use tokio_util::sync::CancellationToken;

pub use crate::bounded::{Worker, WorkerError};
use crate::expose::telemetry::{Failing, SourceHealth, Turn};
use crate::model::labels::Kind;
use crate::model::owner::OwnerKind;
use crate::resolve::sources::topology::LinkFacts;

pub(crate) mod docker;
pub(crate) mod incus;
pub(crate) mod lxc;
pub(crate) mod names;
pub(crate) mod netlink;
pub(crate) mod procfs;
pub(crate) mod topology;
pub(crate) mod vm;

/// Every resolver, in the order their owner claims take precedence: when two
/// claim one interface, the earlier wins (a Docker veth is Docker's even if an
/// LXC scan also sees it). Indexes wakes, snapshots and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolverId {
    Topology,
    Docker,
    /// Names host interfaces exactly (`volatile.<nic>.host_name`): before the scans.
    Incus,
    Lxc,
    Vm,
    /// The cgroup tree, for traffic counted per cgroup: no claims of its own.
    Cgroups,
    /// The kernel's per-peer counts, read on a tick: no claims either.
    Peers,
    /// Names for peers (SMB, NFS and iSCSI clients, the hosts table, DNS).
    Names,
}

impl ResolverId {
    pub const COUNT: usize = 8;
    pub const ALL: [ResolverId; ResolverId::COUNT] = [
        ResolverId::Topology,
        ResolverId::Docker,
        ResolverId::Incus,
        ResolverId::Lxc,
        ResolverId::Vm,
        ResolverId::Cgroups,
        ResolverId::Peers,
        ResolverId::Names,
    ];

    /// The `resolver` label value and the name in logs.
    pub fn name(self) -> &'static str {
        match self {
            ResolverId::Topology => "topology",
            ResolverId::Docker => "docker",
            ResolverId::Incus => "incus",
            ResolverId::Lxc => "lxc",
            ResolverId::Vm => "vm",
            ResolverId::Cgroups => "cgroups",
            ResolverId::Peers => "peers",
            ResolverId::Names => "names",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Something a resolver refreshes from.
pub trait Source: Send + Sync + 'static {
    type Snapshot: Send + 'static;
    type Error: std::fmt::Display + Send;
    const ID: ResolverId;

    fn refresh(&self) -> impl Future<Output = Result<Self::Snapshot, Self::Error>> + Send;

    /// Work that runs beside the refresh loop for the resolver's lifetime and
    /// ends when `shutdown` is cancelled: Docker follows the engine's event stream
    /// here. Most sources have none.
    fn watch(&self, shutdown: CancellationToken) -> impl Future<Output = ()> + Send {
        let _ = shutdown;
        async {}
    }

    /// What a refresh that timed out was busy with (a file, a command), for
    /// the error; `None` if the source cannot tell.
    fn stuck_on(&self) -> Option<String> {
        None
    }
}

/// The part of a refresh's timeout each of its lookups may take: they run
/// side by side, and the rest of the refresh joins their answers. A tool's
/// own timeout is cut to it, so a hung tool cannot use up the refresh.
pub fn lookup_budget(refresh_timeout: std::time::Duration) -> std::time::Duration {
    refresh_timeout.mul_f64(0.75)
}

/// One of the lookups of a resolver (the VM resolver asks the middleware,
/// virsh and the process table): a lookup that fails is logged once per
/// change and counted, and the others still apply; the resolver fails only
/// when every lookup does.
///
/// A lookup whose source this host does not have (no virsh, no middleware,
/// no socket) is not a failure and has no `source_up` at all: its series
/// appear at its first outcome on a host that has it. Once found, a source
/// that goes missing again is a failure ("no longer on this host").
pub struct Lookup {
    resolver: ResolverId,
    name: &'static str,
    health: SourceHealth,
    failing: Failing,
}

impl Lookup {
    pub fn new(
        resolver: ResolverId,
        name: &'static str,
        telemetry: &crate::expose::telemetry::Telemetry,
    ) -> Lookup {
        Lookup {
            resolver,
            name,
            health: telemetry.source_health(resolver.name(), name),
            failing: Failing::default(),
        }
    }

    /// The `source` label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether this host has the source: it had an outcome here.
    pub fn present(&self) -> bool {
        self.health.present()
    }

    /// Runs one lookup under its own `budget` and records the outcome. Its
    /// error (a timeout included) comes back as text for the resolver's own.
    pub async fn run<T, E: std::fmt::Display>(
        &self,
        budget: std::time::Duration,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        self.record(within(budget, work).await)
    }

    /// As [`run`](Self::run), for a source this host may lack: `Ok(None)`
    /// from `work` says it has none. That is no outcome (no series, nothing
    /// counted) until the source has been found; after, it is a failure.
    pub async fn run_if_here<T, E: std::fmt::Display>(
        &self,
        budget: std::time::Duration,
        work: impl Future<Output = Result<Option<T>, E>>,
    ) -> Result<Option<T>, String> {
        self.record_if_here(within(budget, work).await)
    }

    /// Records the outcome of a source this host may lack (`Ok(None)`: it
    /// has none); see [`run_if_here`](Self::run_if_here).
    pub fn record_if_here<T, E: std::fmt::Display>(
        &self,
        result: Result<Option<T>, E>,
    ) -> Result<Option<T>, String> {
        self.record_found(result.map_err(|e| e.to_string()), || {
            "no longer on this host".to_owned()
        })
    }

    /// As [`record_if_here`](Self::record_if_here), keeping the error's type:
    /// a source that was found and is missing again fails with `gone()`.
    pub fn record_found<T, E: std::fmt::Display>(
        &self,
        result: Result<Option<T>, E>,
        gone: impl FnOnce() -> E,
    ) -> Result<Option<T>, E> {
        match result {
            Ok(None) if !self.present() => Ok(None),
            Ok(None) => self.record(Err(gone())),
            found => self.record(found),
        }
    }

    /// Records one outcome; passes it on.
    pub fn record<T, E: std::fmt::Display>(&self, result: Result<T, E>) -> Result<T, E> {
        self.outcome(result.as_ref().err());
        result
    }

    fn outcome<E: std::fmt::Display>(&self, error: Option<&E>) {
        let turn = self.failing.record(error.is_some());
        let (resolver, source) = (self.resolver.name(), self.name);
        self.health.record(error.is_none());
        match error {
            None => {
                if turn == Turn::Recovered {
                    tracing::info!(resolver, source, "source recovered");
                }
            }
            Some(e) => {
                if turn == Turn::Failed {
                    tracing::warn!(resolver, source, error = %e, "source failing; the resolver's other sources still apply");
                }
            }
        }
    }
}

/// `work` under `budget`, its error (a timeout included) as text.
async fn within<T, E: std::fmt::Display>(
    budget: std::time::Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(budget, work).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(budget)
        )),
    }
}

/// What a resolver says of an interface it knows: its kind, the name of what
/// holds it (a container, a VM, a Docker network), what that is, and its app.
/// The composer turns claims into owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: Kind,
    pub instance: String,
    pub app: String,
    /// What holds the interface: a container, a VM, a system container or a
    /// network.
    pub of: OwnerKind,
}

/// An owner resolver's snapshot. Interfaces are claimed by name where the
/// resolver knows it (a Docker bridge, a VM's tap), by their own ifindex
/// (a VM's macvtap, found through its device), or as the host end of a veth
/// whose other end a container holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub by_interface: HashMap<Vec<u8>, Claim>,
    pub by_ifindex: HashMap<u32, Claim>,
    /// Host ifindex -> the container-side end's ifindex and the container.
    pub by_veth: HashMap<u32, (u32, Claim)>,
    /// A workload's cgroup v2 path (`/docker/<id>`, `/lxc.payload.<name>`):
    /// its sockets' traffic, and that of every cgroup below it, is its own.
    pub by_cgroup: HashMap<String, Claim>,
    /// A process in each container's own network namespace, by pid: where
    /// its namespace's `net/dev` is read for a container with no host
    /// interface (macvlan, ipvlan) when the kernel does not count per cgroup.
    pub by_netns: HashMap<u32, Claim>,
}

impl Claims {
    /// The owner of interface `name`, given what sysfs says about it.
    ///
    /// A container's interface names its peer only through `iflink`, and a
    /// macvlan or ipvlan interface's `iflink` is its parent's ifindex: the
    /// uplink, a bridge, a NIC. So an `iflink` claim holds only for a host
    /// veth whose own `iflink` points back at the container's end.
    pub fn get(&self, name: &[u8], facts: Option<&LinkFacts>) -> Option<&Claim> {
        if let Some(owner) = self.by_interface.get(name) {
            return Some(owner);
        }
        let facts = facts?;
        let ifindex = facts.ifindex?;
        if let Some(owner) = self.by_ifindex.get(&ifindex) {
            return Some(owner);
        }
        let (peer, owner) = self.by_veth.get(&ifindex)?;
        (facts.is_veth() && facts.iflink == Some(*peer)).then_some(owner)
    }

    /// Adds what `other` claims and `self` does not: `self`'s claims win.
    pub fn fill_from(&mut self, other: Claims) {
        fn fill<K: std::hash::Hash + Eq, V>(into: &mut HashMap<K, V>, from: HashMap<K, V>) {
            for (k, v) in from {
                into.entry(k).or_insert(v);
            }
        }
        fill(&mut self.by_interface, other.by_interface);
        fill(&mut self.by_ifindex, other.by_ifindex);
        fill(&mut self.by_veth, other.by_veth);
        fill(&mut self.by_cgroup, other.by_cgroup);
        fill(&mut self.by_netns, other.by_netns);
    }

    /// Claims the host ends of a container's veths (`ends` from
    /// [`procfs::veth_ends`]) for `owner`; an end already claimed stays.
    pub fn claim_veths(&mut self, ends: &[procfs::VethEnd], owner: &Claim) {
        for end in ends {
            self.by_veth
                .entry(end.host_ifindex)
                .or_insert_with(|| (end.ifindex, owner.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expose::telemetry::Telemetry;

    fn up(telemetry: &Telemetry) -> Vec<String> {
        telemetry
            .render_fresh()
            .lines()
            .filter(|l| l.starts_with("truenas_net_exporter_source_"))
            .map(str::to_owned)
            .collect()
    }

    /// A source this host lacks has no series; found, it has both; missing
    /// again after, it is a failure.
    #[test]
    fn a_source_the_host_lacks_has_no_series() {
        let telemetry = Telemetry::new();
        let lookup = Lookup::new(ResolverId::Vm, "virsh", &telemetry);
        let missing: Result<Option<()>, String> = Ok(None);
        assert_eq!(lookup.record_if_here(missing.clone()), Ok(None));
        assert_eq!(up(&telemetry), Vec::<String>::new());
        assert!(!lookup.present());

        assert_eq!(
            lookup.record_if_here(Ok::<_, String>(Some(()))),
            Ok(Some(()))
        );
        assert_eq!(
            up(&telemetry),
            [
                "truenas_net_exporter_source_errors_total{resolver=\"vm\",source=\"virsh\"} 0",
                "truenas_net_exporter_source_up{resolver=\"vm\",source=\"virsh\"} 1",
            ]
        );
        assert_eq!(
            lookup.record_if_here(missing),
            Err("no longer on this host".to_owned())
        );
        assert_eq!(
            up(&telemetry),
            [
                "truenas_net_exporter_source_errors_total{resolver=\"vm\",source=\"virsh\"} 1",
                "truenas_net_exporter_source_up{resolver=\"vm\",source=\"virsh\"} 0",
            ]
        );
    }

    /// A failure is an outcome on a host that has the source: it makes the
    /// series too.
    #[test]
    fn a_first_failure_makes_the_series() {
        let telemetry = Telemetry::new();
        let lookup = Lookup::new(ResolverId::Lxc, "midclt", &telemetry);
        let failed: Result<Option<()>, &str> = Err("boom");
        assert!(lookup.record_if_here(failed).is_err());
        assert!(up(&telemetry).contains(
            &"truenas_net_exporter_source_up{resolver=\"lxc\",source=\"midclt\"} 0".to_owned()
        ));
    }
}
