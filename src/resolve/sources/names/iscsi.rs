//! iSCSI initiators: who is logged in to which target.
//!
//! - The middleware's `iscsi.global.sessions` (24.10 to 26.0): a list of
//!   sessions with `initiator` (IQN), `initiator_addr`, `initiator_alias`
//!   (always null under SCST), `target` (IQN) and negotiated parameters.
//!   Under SCST (24.10 to 25.10, and 26.0 unless LIO is chosen)
//!   `initiator_addr` is the first connection's `ip` file: `10.0.0.5`, or
//!   `[fd00:0:..:5]` for IPv6. Under LIO (26.0) it is the address from the
//!   ACL's `info` file, or `""` for a dynamic-ACL session, whose address the
//!   kernel does not say.
//! - Outside the middleware, SCST's sysfs ([`read_scst`]):
//!   `<root>/targets/iscsi/<target>/sessions/<initiator>[#<portal>]/<conn>/ip`,
//!   one `<conn>` directory per connection (named by its address, `_N`
//!   added for a second one from the same address), as the middleware reads it.

use std::io;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{MAX_ENTRIES, NamesError, Sighting, bounded, clean, parse_endpoint};
use crate::bounded::{Fs, SYSFS_MAX};

/// `iscsi.global.sessions`: one sighting per session with an address, its
/// initiator and target, and the initiator's alias (when LIO has one) as
/// its name. A session with no address (LIO's dynamic ACLs) is skipped.
pub fn parse_sessions(json: &str, what: &'static str) -> Result<Vec<Sighting>, NamesError> {
    let json_err = |source| NamesError::Json { what, source };
    let items: Vec<Value> = serde_json::from_str(json).map_err(json_err)?;
    bounded(what, items.len())?;
    let mut sightings = Vec::new();
    for item in items {
        if !item.is_object() {
            return Err(json_err(serde::de::Error::custom(
                "a session is not an object",
            )));
        }
        let session: Session = serde_json::from_value(item).map_err(json_err)?;
        let Some(addr) = session.initiator_addr.as_deref().and_then(parse_endpoint) else {
            continue;
        };
        sightings.push(Sighting {
            name: session.initiator_alias.as_deref().and_then(clean),
            initiator: session.initiator.as_deref().and_then(clean),
            target: session.target.as_deref().and_then(clean),
            ..Sighting::at(addr)
        });
    }
    Ok(sightings)
}

/// One SCST connection: its target's and session's directory names and
/// its `ip` file. The initiator is the session's name before its last `#`
/// (SCST adds `#<portal>` when one initiator logs in more than once), as
/// the middleware reads it.
pub fn scst_session(target: &str, session: &str, ip: &str) -> Option<Sighting> {
    let addr = parse_endpoint(ip)?;
    let initiator = session.rsplit_once('#').map_or(session, |(i, _)| i);
    Some(Sighting {
        initiator: clean(initiator),
        target: clean(target),
        ..Sighting::at(addr)
    })
}

/// Every connection in SCST's sysfs under `root` (`/sys/kernel/scst_tgt`):
/// one sighting per connection (a session's connections may come from
/// several addresses). The `<root>/targets/iscsi` directory missing (SCST
/// not loaded) is its `NotFound` error; anything below it that is not a
/// directory, has no readable `ip`, or vanishes while read, is skipped.
/// More than [`MAX_ENTRIES`] sessions is an error of kind `Other` carrying
/// [`NamesError::TooMany`]. The per-session I/O counters are not read.
pub fn read_scst(fs: &Fs, root: &Path) -> io::Result<Vec<Sighting>> {
    let mut sightings = Vec::new();
    let mut sessions = 0usize;
    for target in fs.read_dir(&root.join("targets/iscsi"))?.flatten() {
        let Ok(entries) = fs.read_dir(&target.path().join("sessions")) else {
            continue; // an attribute of the driver (enabled, mgmt, ...)
        };
        let target_name = target.file_name();
        let target_name = target_name.to_string_lossy();
        for session in entries.flatten() {
            sessions += 1;
            if sessions > MAX_ENTRIES {
                return Err(io::Error::other(NamesError::TooMany {
                    what: "SCST sessions",
                    count: sessions,
                }));
            }
            let Ok(conns) = fs.read_dir(&session.path()) else {
                continue;
            };
            let session_name = session.file_name();
            let session_name = session_name.to_string_lossy();
            for conn in conns.flatten() {
                let Ok(ip) = fs.read(&conn.path().join("ip"), SYSFS_MAX) else {
                    continue;
                };
                let ip = String::from_utf8_lossy(&ip);
                sightings.extend(scst_session(&target_name, &session_name, &ip));
            }
        }
    }
    Ok(sightings)
}

#[derive(Deserialize)]
struct Session {
    #[serde(default, deserialize_with = "text")]
    initiator: Option<String>,
    #[serde(default, deserialize_with = "text")]
    initiator_addr: Option<String>,
    #[serde(default, deserialize_with = "text")]
    initiator_alias: Option<String>,
    #[serde(default, deserialize_with = "text")]
    target: Option<String>,
}

/// A string field; null or any other type is missing.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const RELEASES: [(&str, &str); 4] = [
        (
            "24.10",
            include_str!("../../../../tests/fixtures/middleware/24.10/iscsi.global.sessions.json"),
        ),
        (
            "25.04",
            include_str!("../../../../tests/fixtures/middleware/25.04/iscsi.global.sessions.json"),
        ),
        (
            "25.10",
            include_str!("../../../../tests/fixtures/middleware/25.10/iscsi.global.sessions.json"),
        ),
        (
            "26.0",
            include_str!("../../../../tests/fixtures/middleware/26.0/iscsi.global.sessions.json"),
        ),
    ];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn seen(addr: &str, initiator: &str, target: &str) -> Sighting {
        Sighting {
            initiator: Some(initiator.into()),
            target: Some(target.into()),
            ..Sighting::at(ip(addr))
        }
    }

    #[test]
    fn sessions_of_each_release() {
        let vmstore = "iqn.2005-10.org.freenas.ctl:vmstore";
        for (release, text) in RELEASES {
            let mut want = vec![
                seen(
                    "192.168.10.61",
                    "iqn.1991-05.com.microsoft:win-srv01",
                    vmstore,
                ),
                // SCST writes IPv6 in full, in brackets.
                seen(
                    "fd00:10::62",
                    "iqn.1993-08.org.debian:01:9c2f8a1b3d4e",
                    "iqn.2005-10.org.freenas.ctl:backup",
                ),
            ];
            match release {
                "25.04" => want.push(seen(
                    "192.168.10.63",
                    "iqn.1998-01.com.vmware:esx01-4f1c2d3e",
                    vmstore,
                )),
                "25.10" => want.push(seen(
                    "192.168.10.64",
                    "iqn.1998-01.com.vmware:esx02-5a6b7c8d",
                    vmstore,
                )),
                // LIO: the alias names the machine; the dynamic session has
                // no address and is skipped.
                "26.0" => want.push(Sighting {
                    name: Some("ubuntu-lab".into()),
                    ..seen(
                        "192.168.10.65",
                        "iqn.2004-10.com.ubuntu:01:ab12cd34ef56",
                        "iqn.2005-10.org.freenas.ctl:lab",
                    )
                }),
                _ => {}
            }
            assert_eq!(parse_sessions(text, "iscsi").unwrap(), want, "{release}");
        }
    }

    #[test]
    fn odd_and_hostile_sessions() {
        let text = r#"[{"initiator": "iqn.x\n\"evil\"", "initiator_addr": "[::ffff:10.0.0.8]",
            "target": 5, "initiator_alias": "", "new_field": [1, 2]},
            {"initiator": "iqn.y", "initiator_addr": null},
            {"initiator_addr": "10.0.0.9"}]"#;
        assert_eq!(
            parse_sessions(text, "t").unwrap(),
            vec![
                Sighting {
                    initiator: Some("iqn.x \"evil\"".into()),
                    ..Sighting::at(ip("10.0.0.8"))
                },
                Sighting::at(ip("10.0.0.9")),
            ]
        );
        assert_eq!(parse_sessions("[]", "t").unwrap(), vec![]);
    }

    #[test]
    fn wrong_shapes_and_too_many() {
        for text in [
            "",
            "{}",
            "garbage",
            "[1]",
            "[[]]",
            "null",
            "[{\"initiator\": 1",
        ] {
            assert!(
                matches!(
                    parse_sessions(text, "iscsi"),
                    Err(NamesError::Json { what: "iscsi", .. })
                ),
                "{text:?}"
            );
        }
        let one = r#"{"initiator": "iqn.a", "initiator_addr": "10.0.0.1", "target": "iqn.t"}"#;
        let text = format!("[{}]", vec![one; 100_001].join(","));
        assert!(matches!(
            parse_sessions(&text, "iscsi"),
            Err(NamesError::TooMany { count: 100_001, .. })
        ));
    }

    #[test]
    fn scst_paths() {
        let t = "iqn.2005-10.org.freenas.ctl:vmstore";
        assert_eq!(
            scst_session(t, "iqn.1991-05.com.microsoft:win-srv01", "192.168.10.61"),
            Some(seen(
                "192.168.10.61",
                "iqn.1991-05.com.microsoft:win-srv01",
                t
            ))
        );
        // A second login of one initiator: `#portal` is not the initiator's.
        assert_eq!(
            scst_session(
                t,
                "iqn.1993-08.org.debian:01:abc#192.168.10.5",
                "10.0.0.2\n"
            ),
            Some(seen("10.0.0.2", "iqn.1993-08.org.debian:01:abc", t))
        );
        assert_eq!(
            scst_session(t, "iqn.a", "[fd00:0010:0000:0000:0000:0000:0000:0062]"),
            Some(seen("fd00:10::62", "iqn.a", t))
        );
        assert_eq!(
            scst_session(t, "iqn.a", "[0000:0000:0000:0000:0000:ffff:0a00:0005]"),
            Some(seen("10.0.0.5", "iqn.a", t))
        );
        assert_eq!(scst_session(t, "iqn.a", "Unknown family 1"), None);
        assert_eq!(scst_session(t, "iqn.a", ""), None);
    }

    #[test]
    fn reads_scst_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("scst_tgt");
        let iscsi = root.join("targets/iscsi");
        let write = |path: &str, text: &str| {
            let path = iscsi.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let t = "iqn.2005-10.org.freenas.ctl:vmstore";
        write("enabled", "1\n");
        write("mgmt", "");
        write(&format!("{t}/enabled"), "1");
        write(
            &format!("{t}/sessions/iqn.a/192.168.10.61/ip"),
            "192.168.10.61",
        );
        write(&format!("{t}/sessions/iqn.a/192.168.10.61/cid"), "0");
        write(
            &format!("{t}/sessions/iqn.a/192.168.10.61_1/ip"),
            "192.168.10.61",
        );
        write(&format!("{t}/sessions/iqn.a/read_io_count_kb"), "1024");
        write(
            &format!("{t}/sessions/iqn.b#10.0.0.1/[fd00::62]/ip"),
            "[fd00:0000:0000:0000:0000:0000:0000:0062]",
        );
        // A connection going away: its directory without an ip.
        std::fs::create_dir_all(iscsi.join(format!("{t}/sessions/iqn.c/10.0.0.3"))).unwrap();
        let fs = Fs::default();
        let mut got = read_scst(&fs, &root).unwrap();
        got.sort_by_key(|s| s.addr);
        assert_eq!(
            got,
            vec![
                seen("192.168.10.61", "iqn.a", t),
                seen("192.168.10.61", "iqn.a", t),
                seen("fd00::62", "iqn.b", t),
            ]
        );
        let err = read_scst(&fs, &dir.path().join("none")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
