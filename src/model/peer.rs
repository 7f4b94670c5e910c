//! A remote peer as the labels write it: its address, or for a public one
//! folded to a shorter prefix, its network. The per-peer counters and the
//! names for peers label them alike, so the two join by `peer`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A peer's label: the address, or for a public one folded to a shorter
/// prefix, its network (`203.0.113.0/24`).
pub fn peer_label(ip: IpAddr, fold_v4: u8, fold_v6: u8) -> String {
    match ip {
        IpAddr::V4(v4) if fold_v4 < 32 && public(ip) => {
            let mask = u32::MAX.checked_shl(32 - fold_v4 as u32).unwrap_or(0);
            format!("{}/{fold_v4}", Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) if fold_v6 < 128 && public(ip) => {
            let mask = u128::MAX.checked_shl(128 - fold_v6 as u32).unwrap_or(0);
            format!("{}/{fold_v6}", Ipv6Addr::from(u128::from(v6) & mask))
        }
        ip => ip.to_string(),
    }
}

/// An address of the internet: not of the local networks ([`is_lan`]),
/// and not loopback, multicast, broadcast or unspecified.
fn public(ip: IpAddr) -> bool {
    let special = match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_loopback() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_multicast(),
    };
    !(is_lan(ip) || special || ip.is_unspecified())
}

/// Whether `ip` is an address of the local networks, whose names their own
/// DNS may know: private, shared (CGNAT), link-local or unique-local.
pub fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

/// A peer's name, user, share or IQN longer than this is cut (at a character
/// boundary): no real one comes close.
pub const MAX_VALUE: usize = 256;

/// A text from outside made safe to keep: control characters (newlines
/// included) become spaces, surrounding space goes, and it is cut to
/// [`MAX_VALUE`] bytes. `None` when nothing is left.
pub fn clean(text: &str) -> Option<String> {
    let text = text.trim();
    let mut out = String::with_capacity(text.len().min(MAX_VALUE));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_VALUE {
            break;
        }
        out.push(c);
    }
    let out = out.trim_end().to_owned();
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_fold_when_asked() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(peer_label(v4("203.0.113.77"), 24, 128), "203.0.113.0/24");
        assert_eq!(peer_label(v4("192.168.1.7"), 24, 128), "192.168.1.7");
        assert_eq!(peer_label(v4("100.64.1.7"), 24, 128), "100.64.1.7", "CGNAT");
        assert_eq!(peer_label(v4("203.0.113.77"), 32, 128), "203.0.113.77");
        assert_eq!(peer_label(v4("2001:db8:1:2::5"), 32, 48), "2001:db8:1::/48");
        assert_eq!(peer_label(v4("fd00::5"), 32, 48), "fd00::5");
        assert_eq!(peer_label(v4("127.0.0.1"), 8, 48), "127.0.0.1");
    }

    #[test]
    fn lan_addresses_are_those_of_the_local_networks() {
        for lan in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.9",
            "100.64.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_lan(lan.parse().unwrap()), "{lan}");
        }
        for other in ["8.8.8.8", "203.0.113.9", "2001:db8::1", "127.0.0.1", "::1"] {
            assert!(!is_lan(other.parse().unwrap()), "{other}");
        }
    }
}
