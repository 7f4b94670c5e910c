//! Who wakes whom: every reason for a resolver to refresh before its
//! interval, and the resolvers each wakes, in one table. The wakers (link
//! notifications, the engine's and the middleware's events, a scrape that
//! met something unknown) say what happened; [`woken_by`] says who reads it.
//! A resolver woken by several causes at once refreshes once (its loop
//! drains the wakes), and the hub composes once per burst of publishes.

use crate::resolve::sources::ResolverId;

/// Why a resolver is asked to refresh early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The kernel added or removed a link that is neither a veth nor a tap.
    Link,
    /// ... a veth: a container's interface.
    VethLink,
    /// ... a tap, tun or macvtap: a VM's (or a VPN app's tun).
    TapLink,
    /// The Docker engine said a container or network changed; a veth comes
    /// or goes with it.
    DockerEvent,
    /// The middleware said a VM started or went.
    VmEvent,
    /// The middleware said a TrueNAS 26 container started or went.
    ContainerEvent,
    /// The middleware said an Incus instance changed.
    IncusEvent,
    /// A scrape met an interface the label table does not know.
    UnknownInterface,
    /// A scrape counted traffic of a cgroup the workload table does not know.
    UnknownCgroup,
    /// A scrape found peers in the kernel's map that the last tick had not.
    UnknownPeer,
}

/// The resolvers `cause` wakes.
pub fn woken_by(cause: Cause) -> &'static [ResolverId] {
    use ResolverId::*;
    match cause {
        Cause::Link => &[Topology],
        Cause::VethLink => &[Topology, Docker, Incus, Lxc],
        Cause::TapLink => &[Topology, Vm],
        // A container's cgroup comes with it: the tree is read at once, so
        // the container is named (at 0) before its first scrape.
        Cause::DockerEvent => &[Docker, Topology, Cgroups],
        Cause::VmEvent => &[Vm],
        Cause::ContainerEvent => &[Lxc, Cgroups],
        Cause::IncusEvent => &[Incus, Cgroups],
        // Any of them may be the one that knows it (names hold no
        // interfaces).
        Cause::UnknownInterface => &[Topology, Docker, Incus, Lxc, Vm, Cgroups, Peers],
        // A Docker cgroup waits for the engine's name for it.
        Cause::UnknownCgroup => &[Cgroups, Docker],
        Cause::UnknownPeer => &[Peers],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resolver_but_the_peers_tick_and_names_is_woken_by_some_event() {
        let events = [
            Cause::Link,
            Cause::VethLink,
            Cause::TapLink,
            Cause::DockerEvent,
            Cause::VmEvent,
            Cause::ContainerEvent,
            Cause::IncusEvent,
        ];
        for id in ResolverId::ALL {
            let woken = events.iter().any(|&c| woken_by(c).contains(&id));
            // The peers' tick reads only the kernel: only a scrape wakes it.
            // Names follow clients, whom no event announces: their interval.
            let by_interval = [ResolverId::Peers, ResolverId::Names];
            assert_eq!(woken, !by_interval.contains(&id), "{id:?}");
        }
        // A container's start reads the cgroup tree again.
        for cause in [Cause::DockerEvent, Cause::ContainerEvent, Cause::IncusEvent] {
            assert!(woken_by(cause).contains(&ResolverId::Cgroups), "{cause:?}");
        }
        // Every link change reaches the topology.
        for cause in [Cause::Link, Cause::VethLink, Cause::TapLink] {
            assert!(woken_by(cause).contains(&ResolverId::Topology), "{cause:?}");
        }
    }
}
