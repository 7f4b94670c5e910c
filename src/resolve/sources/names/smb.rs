//! SMB sessions and the shares they use, from Samba's status.
//!
//! Two sources give the same facts in two shapes:
//! - `smbstatus --json` (Samba 4.17 and later, run as root): an object with
//!   `sessions` keyed by session id and `tcons` (tree connects) keyed by tcon
//!   id; a tcon names its session by `session_id`. `smbstatus -jp` (sessions
//!   only) has no `tcons`.
//! - the middleware's `smb.status` (24.10, 25.04, 25.10 and 26.0 alike, see
//!   `plugins/smb_/status.py`): it runs `smbstatus -d0 -jv --resolve-uids`
//!   and answers a list of the session objects. At the default info level
//!   (`ALL`) each session carries the tcons joined to it under
//!   `share_connections` (absent when it has none); at `SESSIONS` there is no
//!   `share_connections` at all.
//!
//! A session's fields used here: `hostname` (`ipv4:10.0.0.2:50412`,
//! `ipv6:fd00::2:50412`: Samba writes the v6 address without brackets, and
//! always with the port), `channels` (Samba 4.18 and later: an object keyed
//! by channel id, each with a `remote_address` in the same form; a
//! multichannel session has one per client connection), `username` and
//! `remote_machine`; a tcon's `service` (the share). Every other field is
//! ignored, and every one of these may be missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::{NamesError, Sighting, bounded, clean, parse_endpoint};

/// The sightings of every SMB session: one per (address, share) the session
/// has, its address being its `hostname`'s and each of its channels'. A
/// session with no share but `IPC$` (the RPC pipe every client opens) gives
/// one sighting with no share.
///
/// `user` is the session's `username` as Samba resolves it: a guest or
/// anonymous session is shown under the guest account's name (`nobody` on
/// Debian and TrueNAS by default), which is what `smbstatus` and the
/// TrueNAS UI show too; it is not renamed. An empty name is no user. With
/// `--resolve-uids` off, or a uid with no name, Samba writes the number.
/// `machine` is `remote_machine`, which is the client's address unless the
/// server does `hostname lookups` (or a NetBIOS client sent its name).
///
/// `what` names the source in errors. A session with no address that
/// parses is skipped; an answer of neither shape is [`NamesError::Json`];
/// more than [`super::MAX_ENTRIES`] sessions or tcons, [`NamesError::TooMany`].
pub fn parse_status(json: &str, what: &'static str) -> Result<Vec<Sighting>, NamesError> {
    let json_err = |source| NamesError::Json { what, source };
    let value: Value = serde_json::from_str(json).map_err(json_err)?;
    let (sessions, mut shares): (Vec<Session>, HashMap<String, Vec<String>>) = match value {
        // The middleware: a list of sessions, each with its tcons.
        Value::Array(items) => {
            bounded(what, items.len())?;
            let sessions = items
                .into_iter()
                .map(object::<Session>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(json_err)?;
            let tcons = sessions.iter().map(|s| s.share_connections.len()).sum();
            bounded(what, tcons)?;
            (sessions, HashMap::new())
        }
        // smbstatus itself: sessions and tcons, joined by session id.
        Value::Object(map) if map.contains_key("sessions") || map.contains_key("tcons") => {
            let status: Status = serde_json::from_value(Value::Object(map)).map_err(json_err)?;
            bounded(what, status.sessions.len())?;
            bounded(what, status.tcons.len())?;
            let mut shares: HashMap<String, Vec<String>> = HashMap::new();
            for tcon in status.tcons.into_values() {
                let tcon: Tcon = object(tcon).map_err(json_err)?;
                if let (Some(session), Some(service)) = (tcon.session_id.0, tcon.service.0) {
                    shares.entry(session).or_default().push(service);
                }
            }
            let sessions = status
                .sessions
                .into_values()
                .map(object::<Session>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(json_err)?;
            (sessions, shares)
        }
        _ => {
            return Err(json_err(serde::de::Error::custom(
                "neither smbstatus's object of sessions nor the middleware's list of them",
            )));
        }
    };

    let mut sightings = Vec::new();
    for session in sessions {
        let mut addrs = BTreeSet::new();
        addrs.extend(session.hostname.0.as_deref().and_then(samba_endpoint));
        addrs.extend(session.channels.iter().filter_map(samba_endpoint));
        if addrs.is_empty() {
            continue;
        }
        let joined = session
            .session_id
            .0
            .as_ref()
            .and_then(|id| shares.remove(id))
            .unwrap_or_default();
        let services = session
            .share_connections
            .into_iter()
            .filter_map(|t| t.service.0)
            .chain(joined);
        let shares: BTreeSet<String> = services
            .filter(|s| !s.trim().eq_ignore_ascii_case("IPC$"))
            .filter_map(|s| clean(&s))
            .collect();
        let user = session.username.0.as_deref().and_then(clean);
        let machine = session.remote_machine.0.as_deref().and_then(clean);
        for addr in addrs {
            let seen = Sighting {
                user: user.clone(),
                machine: machine.clone(),
                ..Sighting::at(addr)
            };
            if shares.is_empty() {
                sightings.push(seen);
                continue;
            }
            for share in &shares {
                sightings.push(Sighting {
                    share: Some(share.clone()),
                    ..seen.clone()
                });
            }
        }
    }
    Ok(sightings)
}

/// A Samba address: `ipv4:10.0.0.2:50412`, `ipv6:fd00::2:50412` (no
/// brackets: `tsocket_address_string`), else whatever [`parse_endpoint`]
/// reads. The port is split off the right first, so that a v6 address
/// ending in a group that could be a port is not read as the address.
pub fn samba_endpoint(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let rest = text
        .strip_prefix("ipv4:")
        .or_else(|| text.strip_prefix("ipv6:"));
    if let Some(rest) = rest
        && let Some((host, port)) = rest.rsplit_once(':')
        && port.parse::<u16>().is_ok()
    {
        let host = host.strip_prefix('[').unwrap_or(host);
        let host = host.strip_suffix(']').unwrap_or(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(ip.to_canonical());
        }
    }
    parse_endpoint(rest.unwrap_or(text))
}

/// `smbstatus --json`'s top level (the fields used), each entry read by
/// [`object`].
#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    sessions: BTreeMap<String, Value>,
    #[serde(default)]
    tcons: BTreeMap<String, Value>,
}

/// A session or tcon: a JSON object (serde would read a struct from a
/// list too).
fn object<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    if !value.is_object() {
        return Err(serde::de::Error::custom(format!(
            "an entry is not an object but {value:.40}"
        )));
    }
    serde_json::from_value(value)
}

#[derive(Deserialize)]
struct Session {
    #[serde(default)]
    session_id: Text,
    #[serde(default)]
    username: Text,
    #[serde(default)]
    remote_machine: Text,
    #[serde(default)]
    hostname: Text,
    #[serde(default)]
    channels: Channels,
    /// The middleware's join of the tcons (info level `ALL`).
    #[serde(default, deserialize_with = "tcon_list")]
    share_connections: Vec<Tcon>,
}

#[derive(Deserialize)]
struct Tcon {
    #[serde(default)]
    service: Text,
    #[serde(default)]
    session_id: Text,
}

/// A text field that may be missing, null, a number (written as text) or of
/// another type (taken as missing), so that one odd field does not refuse
/// the whole answer.
#[derive(Default)]
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        Ok(Text(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
    }
}

/// The `remote_address` of each of a session's channels: an object keyed by
/// channel id as Samba writes it (a list is read too).
#[derive(Default)]
struct Channels(Vec<String>);

impl Channels {
    fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl<'de> Deserialize<'de> for Channels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Channels, D::Error> {
        let channels: Vec<Value> = match Value::deserialize(d)? {
            Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
            Value::Array(list) => list,
            _ => Vec::new(),
        };
        Ok(Channels(
            channels
                .into_iter()
                .filter_map(|mut c| match c.get_mut("remote_address")?.take() {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ))
    }
}

/// `share_connections`: a list of tcons; null or another type is none.
fn tcon_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Tcon>, D::Error> {
    match Value::deserialize(d)? {
        Value::Array(items) => Ok(items.into_iter().filter_map(|t| object(t).ok()).collect()),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::sources::names::MAX_ENTRIES;

    const SMBSTATUS: &str = include_str!("../../../../tests/fixtures/smbstatus.json");
    const R2410: &str = include_str!("../../../../tests/fixtures/middleware/24.10/smb.status.json");
    const R2504: &str = include_str!("../../../../tests/fixtures/middleware/25.04/smb.status.json");
    const R2504_SESSIONS: &str =
        include_str!("../../../../tests/fixtures/middleware/25.04/smb.status.SESSIONS.json");
    const R2510: &str = include_str!("../../../../tests/fixtures/middleware/25.10/smb.status.json");
    const R2600: &str = include_str!("../../../../tests/fixtures/middleware/26.0/smb.status.json");

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn s(addr: &str, user: &str, machine: &str, share: Option<&str>) -> Sighting {
        Sighting {
            user: Some(user.into()),
            machine: Some(machine.into()),
            share: share.map(Into::into),
            ..Sighting::at(ip(addr))
        }
    }

    fn sorted(mut v: Vec<Sighting>) -> Vec<Sighting> {
        v.sort_by(|a, b| {
            (a.addr, &a.user, &a.share, &a.machine).cmp(&(b.addr, &b.user, &b.share, &b.machine))
        });
        v
    }

    /// What the four releases' common sessions give.
    fn common() -> Vec<Sighting> {
        vec![
            s("192.168.10.21", "alice", "192.168.10.21", Some("home")),
            s("192.168.10.21", "alice", "192.168.10.21", Some("projects")),
            s("192.168.10.40", "nobody", "192.168.10.40", Some("public")),
            // bob's second channel comes from his second NIC.
            s("192.168.10.33", "bob", "192.168.10.33", Some("media")),
            s("192.168.20.33", "bob", "192.168.10.33", Some("media")),
            // carol has only IPC$ open: a sighting with no share.
            s("fd00:10::77", "carol", "fd00:10::77", None),
        ]
    }

    #[test]
    fn real_smbstatus_json_from_samba_4_17() {
        // Captured from smbd 4.17 with two users on v4 and v6, a guest on
        // IPC$ and a guest on a share (SMB2_10).
        let got = sorted(parse_status(SMBSTATUS, "smbstatus").unwrap());
        let want = sorted(vec![
            s("127.0.0.1", "nobody", "127.0.0.1", Some("data")),
            s("127.0.0.1", "fixtureuser", "127.0.0.1", Some("data")),
            s("127.0.0.1", "nobody", "127.0.0.1", None),
            s("::1", "fixtureuser", "::1", Some("media")),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn each_releases_middleware_answer() {
        let mut r2504 = common();
        r2504.push(s("192.168.10.52", "dave", "DAVE-PC", Some("scans")));
        let mut r2510 = common();
        // A dual-stack smbd sees an IPv4 client v4-mapped: the IPv4 peer.
        r2510.push(s(
            "192.168.10.60",
            "erin",
            "::ffff:192.168.10.60",
            Some("backup"),
        ));
        let mut r2600 = common();
        r2600.push(s(
            "192.168.10.70",
            "AD\\frank",
            "192.168.10.70",
            Some("projects"),
        ));
        for (release, text, want) in [
            ("24.10", R2410, common()),
            ("25.04", R2504, r2504),
            ("25.10", R2510, r2510),
            ("26.0", R2600, r2600),
        ] {
            let got = sorted(parse_status(text, "smb.status").unwrap());
            assert_eq!(got, sorted(want), "{release}");
        }
    }

    #[test]
    fn the_sessions_level_list_has_no_shares() {
        let got = sorted(parse_status(R2504_SESSIONS, "smb.status").unwrap());
        let want = sorted(vec![
            s("192.168.10.21", "alice", "192.168.10.21", None),
            s("192.168.10.40", "nobody", "192.168.10.40", None),
            s("192.168.10.33", "bob", "192.168.10.33", None),
            s("192.168.20.33", "bob", "192.168.10.33", None),
            s("fd00:10::77", "carol", "fd00:10::77", None),
            s("192.168.10.52", "dave", "DAVE-PC", None),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn samba_addresses() {
        assert_eq!(samba_endpoint("ipv4:10.0.0.2:50412"), Some(ip("10.0.0.2")));
        // Without brackets, the last group is the port, not part of the address.
        assert_eq!(samba_endpoint("ipv6:fd00::2:445"), Some(ip("fd00::2")));
        assert_eq!(samba_endpoint("ipv6:::1:38512"), Some(ip("::1")));
        assert_eq!(samba_endpoint("ipv6:[fd00::2]:445"), Some(ip("fd00::2")));
        assert_eq!(
            samba_endpoint("ipv6:::ffff:10.0.0.2:50412"),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(samba_endpoint("ipv4:10.0.0.2"), Some(ip("10.0.0.2")));
        assert_eq!(samba_endpoint("10.0.0.2"), Some(ip("10.0.0.2")));
        assert_eq!(samba_endpoint("unix:/run/samba/x"), None);
        assert_eq!(samba_endpoint(""), None);
    }

    #[test]
    fn raw_and_middleware_shapes_agree() {
        let raw = r#"{"sessions": {"7": {"session_id": "7", "username": "u", "remote_machine": "m",
            "hostname": "ipv4:10.0.0.7:1000"}}, "tcons": {"1": {"service": "s1", "session_id": "7"},
            "2": {"service": "s2", "session_id": "7"}, "3": {"service": "orphan", "session_id": "8"}}}"#;
        let list = r#"[{"session_id": "7", "username": "u", "remote_machine": "m",
            "hostname": "ipv4:10.0.0.7:1000", "share_connections": [{"service": "s1", "session_id": "7"},
            {"service": "s2", "session_id": "7"}]}]"#;
        let want = vec![
            s("10.0.0.7", "u", "m", Some("s1")),
            s("10.0.0.7", "u", "m", Some("s2")),
        ];
        assert_eq!(sorted(parse_status(raw, "t").unwrap()), want);
        assert_eq!(sorted(parse_status(list, "t").unwrap()), want);
    }

    #[test]
    fn missing_odd_and_unknown_fields() {
        // No hostname: the channel's address; numbers and nulls tolerated.
        let text = r#"[{"session_id": 5, "username": null, "remote_machine": 12,
            "channels": {"1": {"remote_address": "ipv4:10.0.0.5:999", "new": true}},
            "share_connections": null, "something_new": {"a": [1]}}]"#;
        let got = parse_status(text, "t").unwrap();
        assert_eq!(
            got,
            vec![Sighting {
                machine: Some("12".into()),
                ..Sighting::at(ip("10.0.0.5"))
            }]
        );
        // No address at all: skipped. An empty user or machine is none.
        let text = r#"[{"username": "x"}, {"hostname": "ipv4:10.0.0.6:1", "username": "  ",
            "remote_machine": "", "share_connections": [{"service": "ipc$"}, {"service": null}, 7, []]}]"#;
        assert_eq!(
            parse_status(text, "t").unwrap(),
            vec![Sighting::at(ip("10.0.0.6"))]
        );
        // smbstatus with nothing connected, as the middleware substitutes it.
        assert_eq!(parse_status(r#"{"sessions": {}}"#, "t").unwrap(), vec![]);
        assert_eq!(parse_status("[]", "t").unwrap(), vec![]);
    }

    #[test]
    fn hostile_names_are_cleaned() {
        let text = r#"[{"hostname": "ipv4:10.0.0.9:1", "username": "a\"b\nc\u0000d",
            "remote_machine": "\r\n", "share_connections": [{"service": "sh\tare\u001b[31m"}]}]"#;
        let got = parse_status(text, "t").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].user.as_deref(), Some("a\"b c d"));
        assert_eq!(got[0].machine, None);
        assert_eq!(got[0].share.as_deref(), Some("sh are [31m"));
        let long = format!(
            r#"[{{"hostname": "ipv4:10.0.0.9:1", "username": "{}"}}]"#,
            "é".repeat(1000)
        );
        let got = parse_status(&long, "t").unwrap();
        assert!(got[0].user.as_ref().unwrap().len() <= crate::model::peer::MAX_VALUE);
    }

    #[test]
    fn wrong_shapes_are_json_errors() {
        for text in [
            "",
            "garbage",
            "42",
            "\"text\"",
            "{\"foo\": 1}",
            "[1, 2]",
            "[[]]",
            "{\"sessions\": []}",
            "{\"sessions\": {\"1\": 5}}",
            "{\"sessions\": {\"1\": []}}",
            "{\"tcons\": {\"1\": \"x\"}}",
            "[{\"hostname\": \"ipv4:10.0.0.1:1\"",
        ] {
            match parse_status(text, "smb.status") {
                Err(NamesError::Json { what, .. }) => assert_eq!(what, "smb.status"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn too_many_sessions_are_refused() {
        let n = 100_001;
        let one = r#"{"hostname":"ipv4:10.0.0.1:1"}"#;
        let list = format!("[{}]", vec![one; n].join(","));
        match parse_status(&list, "smb.status") {
            Err(NamesError::TooMany { what, count }) => {
                assert_eq!((what, count), ("smb.status", n));
            }
            other => panic!("{other:?}"),
        }
        let raw = format!(
            "{{\"sessions\": {{{}}}}}",
            (0..MAX_ENTRIES + 1)
                .map(|i| format!("\"{i}\":{one}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(matches!(
            parse_status(&raw, "smbstatus"),
            Err(NamesError::TooMany { count, .. }) if count == MAX_ENTRIES + 1
        ));
        // Exactly the limit is accepted.
        let list = format!("[{}]", vec![one; MAX_ENTRIES].join(","));
        assert_eq!(parse_status(&list, "t").unwrap().len(), MAX_ENTRIES);
    }
}
