//! Synthetic hosts of any size, for benchmarks and tests of the scrape path.

use std::collections::BTreeMap;

use crate::model::labels::Kind;
use crate::resolve::sources::topology::{LinkFacts, TopologySnapshot};
use crate::resolve::sources::{Claim, Claims};

/// A host with `n` Docker veths on compose bridges, with owners: the net/dev
/// text, the topology and the Docker owners.
pub fn host(n: usize) -> (Vec<u8>, TopologySnapshot, Claims) {
    let mut text =
        String::from("Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n");
    let mut links = BTreeMap::new();
    let mut owners = Claims::default();
    for i in 0..n {
        let name = format!("veth{i:07x}");
        let bridge = format!("br-{:012x}", i / 20);
        text.push_str(&format!(
            "{name:>15}: {} {} 0 0 0 0 0 0 {} {} 0 0 0 0 0 0\n",
            i * 1_000_003,
            i * 17,
            i * 999_983,
            i * 13
        ));
        links.insert(
            name.clone().into_bytes(),
            LinkFacts {
                ifindex: Some(i as u32 + 100),
                iflink: Some(i as u32 + 50_000),
                link_type: Some(1),
                bridge: Some(bridge.into_bytes()),
                operstate: Some("up".into()),
                ..LinkFacts::default()
            },
        );
        owners.by_interface.insert(
            name.into_bytes(),
            Claim {
                kind: Kind::Docker,
                instance: format!("ix-app{}-server-{}", i / 20, i % 20),
                app: format!("app{}", i / 20),
                of: crate::model::owner::OwnerKind::Container,
            },
        );
    }
    (text.into_bytes(), TopologySnapshot { links }, owners)
}
