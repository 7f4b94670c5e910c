//! The owner model: who an interface's traffic (or, later, a cgroup's)
//! belongs to, as one value. The composer decides each owner once, from the
//! resolvers' claims; the label blocks, `/api/v1/interfaces` and the page
//! all read it from there, so they cannot disagree.

use std::sync::{Arc, LazyLock};

/// What an owner is. The order is the page's: workloads first, the host's
/// own network last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerKind {
    /// A TrueNAS app (a Compose project): its containers together.
    App,
    /// A Docker container outside any app.
    Container,
    Vm,
    /// An Incus/LXC or TrueNAS 26 container.
    SystemContainer,
    /// A Docker network, through its bridge.
    Network,
    /// A host service (a systemd unit).
    Service,
    /// A bridge that is no Docker network's.
    Bridge,
    /// A physical NIC.
    Nic,
    /// Everything else of the host: loopback, VLANs, tunnels, unclaimed devices.
    Host,
}

impl OwnerKind {
    pub const ALL: [OwnerKind; 9] = [
        OwnerKind::App,
        OwnerKind::Container,
        OwnerKind::Vm,
        OwnerKind::SystemContainer,
        OwnerKind::Network,
        OwnerKind::Service,
        OwnerKind::Bridge,
        OwnerKind::Nic,
        OwnerKind::Host,
    ];

    /// The name in `/api/v1/interfaces` and on the page.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::App => "app",
            OwnerKind::Container => "container",
            OwnerKind::Vm => "vm",
            OwnerKind::SystemContainer => "system container",
            OwnerKind::Network => "network",
            OwnerKind::Service => "service",
            OwnerKind::Bridge => "bridge",
            OwnerKind::Nic => "nic",
            OwnerKind::Host => "host",
        }
    }
}

/// An owner: its kind, its name (the app, container, VM, network, unit or
/// interface name; `host` for the host) and its app, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub kind: OwnerKind,
    pub name: Box<str>,
    pub app: Box<str>,
}

impl Owner {
    pub fn new(kind: OwnerKind, name: &str, app: &str) -> Owner {
        Owner {
            kind,
            name: name.into(),
            app: app.into(),
        }
    }

    /// The one owner of everything the host keeps to itself.
    pub fn host() -> Owner {
        Owner::new(OwnerKind::Host, "host", "")
    }

    /// `self`, shared: the host's one copy if `self` is the host, so that
    /// interfaces made outside a composition (a scrape's fallbacks, which
    /// can be as many as net/dev has lines) do not each hold their own.
    pub fn shared(self) -> Arc<Owner> {
        static HOST: LazyLock<Arc<Owner>> = LazyLock::new(|| Arc::new(Owner::host()));
        if self == **HOST {
            Arc::clone(&HOST)
        } else {
            Arc::new(self)
        }
    }
}

/// Every owner of one composition, each once, shared by what it owns.
#[derive(Debug, Default)]
pub struct OwnerSet {
    owners: std::collections::HashMap<(OwnerKind, Box<str>), Arc<Owner>>,
}

impl OwnerSet {
    /// The shared copy of `owner`, added if it is new.
    pub fn get(&mut self, owner: Owner) -> Arc<Owner> {
        let key = (owner.kind, owner.name.clone());
        Arc::clone(self.owners.entry(key).or_insert_with(|| Arc::new(owner)))
    }

    /// By kind, then name.
    pub fn into_sorted(self) -> Vec<Arc<Owner>> {
        let mut all: Vec<_> = self.owners.into_values().collect();
        all.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_shared_and_sorted() {
        let mut set = OwnerSet::default();
        let a = set.get(Owner::new(OwnerKind::App, "immich", "immich"));
        let b = set.get(Owner::new(OwnerKind::App, "immich", "immich"));
        assert!(Arc::ptr_eq(&a, &b), "one owner, shared");
        set.get(Owner::host());
        set.get(Owner::new(OwnerKind::Vm, "vyos", ""));
        let sorted: Vec<_> = set
            .into_sorted()
            .iter()
            .map(|o| (o.kind.as_str(), o.name.to_string()))
            .collect();
        assert_eq!(
            sorted,
            [
                ("app", "immich".to_owned()),
                ("vm", "vyos".to_owned()),
                ("host", "host".to_owned())
            ]
        );
    }
}
