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
use crate::expose::telemetry::{Failing, Turn};
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

/// One of several lookups of a resolver (the VM resolver asks the
/// middleware, virsh and the process table): a lookup that fails is logged
/// once per change and counted, and the others still apply; the resolver
/// fails only when every lookup does.
pub struct Lookup {
    resolver: ResolverId,
    name: &'static str,
    up: metrics::Gauge,
    errors: metrics::Counter,
    failing: Failing,
}

impl Lookup {
    pub fn new(
        resolver: ResolverId,
        name: &'static str,
        telemetry: &crate::expose::telemetry::Telemetry,
    ) -> Lookup {
        let (up, errors) = telemetry.source(resolver.name(), name);
        Lookup {
            resolver,
            name,
            up,
            errors,
            failing: Failing::default(),
        }
    }

    /// Runs one lookup under its own `budget` and records the outcome. Its
    /// error (a timeout included) comes back as text for the resolver's own.
    pub async fn run<T, E: std::fmt::Display>(
        &self,
        budget: std::time::Duration,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        let outcome = match tokio::time::timeout(budget, work).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(budget)
            )),
        };
        self.record(outcome)
    }

    /// Records one outcome; passes it on.
    pub fn record<T, E: std::fmt::Display>(&self, result: Result<T, E>) -> Result<T, E> {
        let turn = self.failing.record(result.is_err());
        let (resolver, source) = (self.resolver.name(), self.name);
        match &result {
            Ok(_) => {
                self.up.set(1.0);
                if turn == Turn::Recovered {
                    tracing::info!(resolver, source, "source recovered");
                }
            }
            Err(e) => {
                self.up.set(0.0);
                self.errors.increment(1);
                if turn == Turn::Failed {
                    tracing::warn!(resolver, source, error = %e, "source failing; the resolver's other sources still apply");
                }
            }
        }
        result
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
