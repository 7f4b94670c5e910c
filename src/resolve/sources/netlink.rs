//! Link notifications: the kernel says when an interface is added or removed
//! (rtnetlink's link group), so a tap a VM just opened or a veth Docker just
//! made is read before the next scrape rather than at the next refresh. Only
//! where the exporter shares the host's network namespace (on the host, or a
//! container with host networking): elsewhere the kernel would tell about
//! the wrong interfaces, and a scrape that meets an unknown interface wakes
//! the resolvers instead.

use std::sync::Arc;

use futures_util::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{MulticastGroup, new_multicast_connection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Whom a link change wakes, by what the link is (the table of who wakes
/// whom is the resolvers' `wakes` module).
pub struct LinkWakes {
    /// Neither a veth nor a tap.
    pub other: Vec<Arc<Notify>>,
    pub veth: Vec<Arc<Notify>>,
    /// A tap, tun or macvtap.
    pub tap: Vec<Arc<Notify>>,
}

/// What a link message is about, for [`LinkWakes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Veth,
    Tap,
    Other,
}

pub fn kind_of(link: &LinkMessage) -> LinkKind {
    let kind = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    });
    match kind {
        Some(InfoKind::Veth) => LinkKind::Veth,
        Some(InfoKind::Tun | InfoKind::MacVtap) => LinkKind::Tap,
        _ => LinkKind::Other,
    }
}

/// Follows link notifications until `shutdown` is cancelled, waking by kind.
/// Returns early (logged) if the kernel refuses the subscription.
pub async fn follow(wakes: &LinkWakes, shutdown: CancellationToken) {
    let (connection, _handle, mut messages) = match new_multicast_connection(&[
        MulticastGroup::Link,
    ]) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow link notifications; new interfaces wait for a refresh or a scrape");
            return;
        }
    };
    let connection = tokio::spawn(connection);
    tracing::info!("following the kernel's link notifications: new interfaces are read at once");
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some((message, _)) = message else { break };
                let link = match message.payload {
                    NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewLink(link) | RouteNetlinkMessage::DelLink(link),
                    ) => link,
                    _ => continue,
                };
                let woken = match kind_of(&link) {
                    LinkKind::Veth => &wakes.veth,
                    LinkKind::Tap => &wakes.tap,
                    LinkKind::Other => &wakes.other,
                };
                for wake in woken {
                    wake.notify_one();
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    connection.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_sorted_by_kind() {
        let with = |kind: Option<InfoKind>| {
            let mut link = LinkMessage::default();
            if let Some(kind) = kind {
                link.attributes
                    .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
            }
            kind_of(&link)
        };
        assert_eq!(with(Some(InfoKind::Veth)), LinkKind::Veth);
        assert_eq!(with(Some(InfoKind::Tun)), LinkKind::Tap);
        assert_eq!(with(Some(InfoKind::MacVtap)), LinkKind::Tap);
        assert_eq!(with(Some(InfoKind::Bridge)), LinkKind::Other);
        assert_eq!(with(None), LinkKind::Other);
    }
}
