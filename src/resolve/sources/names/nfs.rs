//! NFS clients: NFSv4 clients from nfsd's own list, NFSv3 mounts from rmtab.
//!
//! - The middleware's `nfs.get_nfs4_clients` (24.10 to 26.0 alike,
//!   `plugins/nfs_/status.py`): `[{id, info, states}]`, `info` being
//!   `/proc/fs/nfsd/clients/<id>/info` read as YAML (`{}` when the file
//!   vanished). 25.10 and later replace the non-printable characters of
//!   `name` with U+FFFD.
//! - Outside TrueNAS, the same files read here ([`read_clients`]). The
//!   kernel writes (`fs/nfsd/nfs4state.c`, `client_info_show`) `address:
//!   "10.0.0.2:869"` (`"[fd00::2]:869"`), `name: "..."` (the client's id
//!   string, quoted, with `"`, `\` and every byte that is not printable
//!   ASCII escaped as `\xHH`), `minor version: 2`, and lines this reader
//!   does not need.
//! - The middleware's `nfs.get_nfs3_clients`: `[{ip, export}]` from rmtab
//!   (`10.0.0.2:/mnt/tank/share:0x00000001` lines), which may list clients
//!   long gone. Its `export` keeps the `ip:` prefix (`get_rmtab` splits the
//!   line twice), and an IPv6 client's `ip` is cut at its first colon: both
//!   are mended here.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{MAX_ENTRIES, NamesError, Sighting, bounded, clean, parse_endpoint};
use crate::bounded::Fs;

/// The largest `info` file read: the kernel's is a few lines, its quoted
/// strings at most 1024 bytes each before escaping (4096 after).
pub const INFO_MAX: usize = 16 << 10;

/// `nfs.get_nfs4_clients`: one sighting per client with an address, named
/// by its id string ([`client_name`]). A client whose `info` is empty (it
/// went away while the middleware read it) or has no address is skipped.
pub fn parse_nfs4_clients(json: &str, what: &'static str) -> Result<Vec<Sighting>, NamesError> {
    let clients: Vec<Nfs4Client> = list(json, what)?;
    Ok(clients
        .into_iter()
        .filter_map(|c| {
            let info = c.info?;
            let addr = parse_endpoint(info.address.as_deref()?)?;
            Some(Sighting {
                name: info.name.as_deref().and_then(client_name),
                ..Sighting::at(addr)
            })
        })
        .collect())
}

/// `nfs.get_nfs3_clients`: one sighting per rmtab line, its export as the
/// share. A line whose address does not parse is skipped.
pub fn parse_nfs3_clients(json: &str, what: &'static str) -> Result<Vec<Sighting>, NamesError> {
    let mounts: Vec<Nfs3Mount> = list(json, what)?;
    Ok(mounts
        .into_iter()
        .filter_map(|m| {
            let (addr, export) = rmtab_entry(m.ip.as_deref(), m.export.as_deref())?;
            Some(Sighting {
                share: export.and_then(clean),
                ..Sighting::at(addr)
            })
        })
        .collect())
}

/// The address and export of one of the middleware's rmtab rows. `export`
/// is `ip:path` as the middleware splits the line (a bare path is taken as
/// is); an `ip` that does not parse (an IPv6 client, cut at its first
/// colon) is recovered from the export, whose address ends at `:/`.
fn rmtab_entry<'a>(ip: Option<&str>, export: Option<&'a str>) -> Option<(IpAddr, Option<&'a str>)> {
    let split = export.and_then(|e| {
        let (host, _) = e.split_once(":/")?;
        Some((parse_endpoint(host)?, &e[host.len() + 1..]))
    });
    let (addr, export) = match (ip.and_then(parse_endpoint), split) {
        (Some(addr), Some((host, path))) if host == addr => (addr, Some(path)),
        (Some(addr), _) => (addr, export),
        (None, Some((host, path))) => (host, Some(path)),
        (None, None) => return None,
    };
    Some((addr, export.filter(|e| !e.trim().is_empty())))
}

/// One `/proc/fs/nfsd/clients/<id>/info` file: a sighting at its
/// `address`, named by its `name` ([`client_name`]); `None` without an
/// address that parses.
pub fn parse_client_info(text: &str) -> Option<Sighting> {
    let mut addr = None;
    let mut name = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "address" => addr = parse_endpoint(&String::from_utf8_lossy(&unquote(value))),
            "name" => name = Some(String::from_utf8_lossy(&unquote(value)).into_owned()),
            _ => {}
        }
    }
    Some(Sighting {
        name: name.as_deref().and_then(client_name),
        ..Sighting::at(addr?)
    })
}

/// A value as the kernel quotes it (`"..."`, with `\xHH`, `\ooo` and
/// `\"`-style escapes), as bytes; an unquoted value is taken as it is, an
/// unterminated one to its end.
fn unquote(value: &str) -> Vec<u8> {
    let value = value.trim();
    let Some(inner) = value.strip_prefix('"') else {
        return value.as_bytes().to_vec();
    };
    let bytes = inner.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => break,
            b'\\' if i + 1 < bytes.len() => {
                let hex = |at: usize| {
                    let digits = bytes.get(at..at + 2)?;
                    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
                };
                let octal = |at: usize| {
                    let digits = bytes.get(at..at + 3)?;
                    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()
                };
                match bytes[i + 1] {
                    b'x' if let Some(b) = hex(i + 2) => {
                        out.push(b);
                        i += 4;
                    }
                    b'0'..=b'7' if let Some(b) = octal(i + 1) => {
                        out.push(b);
                        i += 4;
                    }
                    c => {
                        out.push(match c {
                            b'n' => b'\n',
                            b't' => b'\t',
                            b'r' => b'\r',
                            other => other,
                        });
                        i += 2;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A name for an NFSv4 client from its id string. Linux writes `Linux
/// NFSv4.1 <host>`, `Linux NFSv4.2 <uniquifier>/<host>` (a uniquifier is
/// set by nfs-utils' udev rule or `nfs4_unique_id`), and for NFSv4.0
/// `Linux NFSv4.0 <host>/<server address>` or `<host>/<uniquifier>/<server
/// address>`: the host is the first `/` part, or the second when the first
/// is a uniquifier (hex digits and dashes, 16 or more). Old kernels wrote
/// `Linux NFSv4.0 <client address>/<server address> tcp`, with no host: an
/// address is no name, and such a string, like any other client's (FreeBSD,
/// ESXi, Windows), is kept whole.
pub fn client_name(id: &str) -> Option<String> {
    let whole = clean(id)?;
    let host = whole
        .strip_prefix("Linux NFSv")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(_version, rest)| {
            let mut parts = rest.split('/');
            let first = parts.next()?;
            let host = if is_uniquifier(first) {
                parts.next()?
            } else {
                first
            };
            let host = host.trim();
            let plain = !host.is_empty()
                && !host.contains(char::is_whitespace)
                && host.parse::<IpAddr>().is_err();
            plain.then(|| host.to_owned())
        });
    Some(host.unwrap_or(whole))
}

fn is_uniquifier(part: &str) -> bool {
    part.len() >= 16 && part.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Every client under `dir` (`/proc/fs/nfsd/clients`): `<dir>/<id>/info`,
/// each read up to [`INFO_MAX`] bytes, invalid UTF-8 replaced. A client
/// that goes away while it is read, or whose file is unreadable or too
/// large, is skipped. A missing `dir` is the `NotFound` error of its read
/// (no nfsd, or nfsd not running: the caller decides what that means);
/// more than [`MAX_ENTRIES`] clients is an error of kind `Other` carrying
/// [`NamesError::TooMany`].
pub fn read_clients(fs: &Fs, dir: &Path) -> io::Result<Vec<Sighting>> {
    let mut sightings = Vec::new();
    for (n, entry) in fs.read_dir(dir)?.enumerate() {
        if n >= MAX_ENTRIES {
            let count = n + 1;
            return Err(io::Error::other(NamesError::TooMany {
                what: "nfsd clients",
                count,
            }));
        }
        let Ok(entry) = entry else { continue };
        let Ok(bytes) = fs.read(&entry.path().join("info"), INFO_MAX) else {
            continue;
        };
        sightings.extend(parse_client_info(&String::from_utf8_lossy(&bytes)));
    }
    Ok(sightings)
}

/// A JSON list of objects, bounded; an entry that is not an object refuses
/// the answer.
fn list<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &'static str,
) -> Result<Vec<T>, NamesError> {
    let json_err = |source| NamesError::Json { what, source };
    let items: Vec<Value> = serde_json::from_str(json).map_err(json_err)?;
    bounded(what, items.len())?;
    items
        .into_iter()
        .map(|item| {
            if !item.is_object() {
                return Err(serde::de::Error::custom("an entry is not an object"));
            }
            serde_json::from_value(item)
        })
        .collect::<Result<_, _>>()
        .map_err(json_err)
}

#[derive(Deserialize)]
struct Nfs4Client {
    #[serde(default, deserialize_with = "info")]
    info: Option<Info>,
}

#[derive(Deserialize)]
struct Info {
    #[serde(default, deserialize_with = "text")]
    address: Option<String>,
    #[serde(default, deserialize_with = "text")]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Nfs3Mount {
    #[serde(default, deserialize_with = "text")]
    ip: Option<String>,
    #[serde(default, deserialize_with = "text")]
    export: Option<String>,
}

/// `info`: an object; anything else (null, `{}` read as YAML of nothing) is
/// no info.
fn info<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Info>, D::Error> {
    Ok(match Value::deserialize(d)? {
        v @ Value::Object(_) => serde_json::from_value(v).ok(),
        _ => None,
    })
}

/// A text field: a string, or a number written as text (YAML reads an
/// unquoted `name: 12` as one); any other type is missing.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFS4: [(&str, &str); 4] = [
        (
            "24.10",
            include_str!("../../../../tests/fixtures/middleware/24.10/nfs.get_nfs4_clients.json"),
        ),
        (
            "25.04",
            include_str!("../../../../tests/fixtures/middleware/25.04/nfs.get_nfs4_clients.json"),
        ),
        (
            "25.10",
            include_str!("../../../../tests/fixtures/middleware/25.10/nfs.get_nfs4_clients.json"),
        ),
        (
            "26.0",
            include_str!("../../../../tests/fixtures/middleware/26.0/nfs.get_nfs4_clients.json"),
        ),
    ];
    const NFS3: [(&str, &str); 4] = [
        (
            "24.10",
            include_str!("../../../../tests/fixtures/middleware/24.10/nfs.get_nfs3_clients.json"),
        ),
        (
            "25.04",
            include_str!("../../../../tests/fixtures/middleware/25.04/nfs.get_nfs3_clients.json"),
        ),
        (
            "25.10",
            include_str!("../../../../tests/fixtures/middleware/25.10/nfs.get_nfs3_clients.json"),
        ),
        (
            "26.0",
            include_str!("../../../../tests/fixtures/middleware/26.0/nfs.get_nfs3_clients.json"),
        ),
    ];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn named(addr: &str, name: &str) -> Sighting {
        Sighting {
            name: Some(name.into()),
            ..Sighting::at(ip(addr))
        }
    }

    fn mounted(addr: &str, share: &str) -> Sighting {
        Sighting {
            share: Some(share.into()),
            ..Sighting::at(ip(addr))
        }
    }

    #[test]
    fn nfs4_clients_of_each_release() {
        let common = || {
            vec![
                named("192.168.10.21", "debian12-hv"),
                // After a uniquifier, the host.
                named("fd00:10::77", "build-01"),
                // NFSv4.0: the host before the server's address.
                named("192.168.10.90", "oldbox"),
                // id 9 had an empty info: skipped.
            ]
        };
        let extra = |release| match release {
            "24.10" => vec![],
            "25.04" => vec![named(
                "192.168.10.44",
                "FreeBSD: 2b9c0e7a-1f40-11ef-a5d2-0800276f3a1b",
            )],
            "25.10" => vec![named("192.168.10.45", "lab\u{FFFD}box")],
            // Not a host name (a space in it): the whole id string.
            "26.0" => vec![named("192.168.10.46", "Linux NFSv4.2 \"quoted\" host")],
            _ => unreachable!(),
        };
        for (release, text) in NFS4 {
            let mut want = common();
            want.extend(extra(release));
            assert_eq!(parse_nfs4_clients(text, "nfs4").unwrap(), want, "{release}");
        }
    }

    #[test]
    fn nfs3_clients_of_each_release() {
        for (release, text) in NFS3 {
            let want = match release {
                "24.10" => vec![mounted("192.168.10.30", "/mnt/tank/media")],
                "25.04" => vec![
                    mounted("192.168.10.30", "/mnt/tank/media"),
                    mounted("192.168.10.31", "/mnt/tank/projects"),
                ],
                // An IPv6 client, its ip cut by the middleware: from the export.
                "25.10" => vec![
                    mounted("192.168.10.30", "/mnt/tank/media"),
                    mounted("fd00:10::31", "/mnt/tank/projects"),
                ],
                _ => vec![],
            };
            assert_eq!(parse_nfs3_clients(text, "nfs3").unwrap(), want, "{release}");
        }
    }

    #[test]
    fn rmtab_rows() {
        let row = |ip: &str, export: &str| {
            let text = serde_json::json!([{"ip": ip, "export": export}]).to_string();
            parse_nfs3_clients(&text, "t").unwrap()
        };
        // A bare path, as a later middleware might mend it.
        assert_eq!(
            row("10.0.0.3", "/mnt/a"),
            vec![mounted("10.0.0.3", "/mnt/a")]
        );
        // A path with colons in it.
        assert_eq!(
            row("10.0.0.3", "10.0.0.3:/mnt/a:b"),
            vec![mounted("10.0.0.3", "/mnt/a:b")]
        );
        // ip and export disagree: the ip, and the export as given.
        assert_eq!(
            row("10.0.0.3", "10.0.0.4:/mnt/a"),
            vec![mounted("10.0.0.3", "10.0.0.4:/mnt/a")]
        );
        assert_eq!(row("fd00", "fd00::5:/x"), vec![mounted("fd00::5", "/x")]);
        assert_eq!(
            row("::ffff:10.0.0.9", "::ffff:10.0.0.9:/x"),
            vec![mounted("10.0.0.9", "/x")]
        );
        assert_eq!(row("host", "host:/x"), vec![]);
        assert_eq!(row("10.0.0.3", ""), vec![Sighting::at(ip("10.0.0.3"))]);
        assert_eq!(
            parse_nfs3_clients(r#"[{"ip": "10.0.0.3"}, {"export": "/x"}, {}]"#, "t").unwrap(),
            vec![Sighting::at(ip("10.0.0.3"))]
        );
    }

    #[test]
    fn client_names() {
        for (id, want) in [
            ("Linux NFSv4.2 debian12-hv", "debian12-hv"),
            ("Linux NFSv4.1 f1e2d3c4b5a69788/web-3", "web-3"),
            (
                "Linux NFSv4.2 6c3e1f0a-9b2d-4e5f-8a7b-1c2d3e4f5a6b/ws.lan",
                "ws.lan",
            ),
            ("Linux NFSv4.0 oldbox/10.0.0.1", "oldbox"),
            ("Linux NFSv4.0 oldbox/f1e2d3c4b5a69788/10.0.0.1", "oldbox"),
            (
                "Linux NFSv4.0 10.0.0.2/10.0.0.1 tcp",
                "Linux NFSv4.0 10.0.0.2/10.0.0.1 tcp",
            ),
            ("Linux NFSv4.2 ", "Linux NFSv4.2"),
            ("FreeBSD: 2b9c0e7a", "FreeBSD: 2b9c0e7a"),
            ("  spaced\nname ", "spaced name"),
        ] {
            assert_eq!(client_name(id).as_deref(), Some(want), "{id:?}");
        }
        assert_eq!(client_name(""), None);
        assert_eq!(client_name("\n\t"), None);
    }

    const INFO: &str = "clientid: 0x6a1e3c2b65f4a1d2\n\
        address: \"192.168.10.21:790\"\n\
        status: confirmed\n\
        seconds from last renew: 45\n\
        name: \"Linux NFSv4.2 debian12-hv\"\n\
        minor version: 2\n\
        Implementation domain: \"kernel.org\"\n\
        Implementation name: \"Linux 6.1.0-12-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.52-1 (2023-09-07) x86_64\"\n\
        Implementation time: [0, 0]\n\
        callback state: UP\n\
        callback address: 192.168.40.247:0\n\
        admin-revoked states: 0\n";

    #[test]
    fn proc_info_files() {
        assert_eq!(
            parse_client_info(INFO),
            Some(named("192.168.10.21", "debian12-hv"))
        );
        let v6 = "address: \"[fd00:10::77]:872\"\nname: \"Linux NFSv4.1 build-01\"\n";
        assert_eq!(
            parse_client_info(v6),
            Some(named("fd00:10::77", "build-01"))
        );
        let mapped = "address: \"[::ffff:10.0.0.4]:700\"\n";
        assert_eq!(
            parse_client_info(mapped),
            Some(Sighting::at(ip("10.0.0.4")))
        );
        // No address, or one that does not parse: nothing.
        assert_eq!(parse_client_info("name: \"Linux NFSv4.2 x\"\n"), None);
        assert_eq!(parse_client_info("address: \"nowhere\"\n"), None);
        assert_eq!(parse_client_info(""), None);
    }

    #[test]
    fn proc_info_escapes_and_hostile_names() {
        // The kernel escapes quotes, backslashes and non-ASCII bytes as \xHH.
        let text = "address: \"10.0.0.5:1\"\nname: \"Linux NFSv4.2 caf\\xc3\\xa9\\x22x\\x5cy\"\n";
        assert_eq!(
            parse_client_info(text),
            Some(named("10.0.0.5", "café\"x\\y"))
        );
        // Invalid UTF-8 once unescaped, a newline, an escaped NUL, octal.
        let text = "address: \"10.0.0.5:1\"\nname: \"a\\xffb\\x0ac\\x00d\\101\"\n";
        assert_eq!(
            parse_client_info(text),
            Some(named("10.0.0.5", "a\u{FFFD}b c dA"))
        );
        // Unterminated quote, a bare value, trailing garbage escape.
        let text = "address: 10.0.0.5:1\nname: \"host\\";
        assert_eq!(parse_client_info(text), Some(named("10.0.0.5", "host\\")));
        // A name longer than any real one is cut.
        let text = format!(
            "address: \"10.0.0.5:1\"\nname: \"{}\"\n",
            "\\x41".repeat(4000)
        );
        let got = parse_client_info(&text).unwrap();
        assert_eq!(got.name.unwrap().len(), crate::model::peer::MAX_VALUE);
    }

    #[test]
    fn reads_the_client_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("clients");
        let client = |id: &str, bytes: &[u8]| {
            let d = root.join(id);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("info"), bytes).unwrap();
        };
        client("4", INFO.as_bytes());
        // Invalid UTF-8 in the file itself: replaced, the rest still read.
        client(
            "7",
            b"address: \"10.0.0.7:1\"\nname: \"Linux NFSv4.2 h\xff\xfeost\"\n",
        );
        client("8", &vec![b'x'; INFO_MAX + 1]);
        std::fs::create_dir_all(root.join("9")).unwrap(); // no info: gone
        std::fs::write(root.join("stray"), b"not a dir").unwrap();
        let fs = Fs::default();
        let mut got = read_clients(&fs, &root).unwrap();
        got.sort_by_key(|s| s.addr);
        assert_eq!(
            got,
            vec![
                named("10.0.0.7", "h\u{FFFD}\u{FFFD}ost"),
                named("192.168.10.21", "debian12-hv"),
            ]
        );
        let missing = read_clients(&fs, &dir.path().join("nothing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn too_many_clients_are_refused() {
        let one = r#"{"id": "1", "info": {"address": "10.0.0.1:1"}, "states": []}"#;
        let text = format!("[{}]", vec![one; 100_001].join(","));
        assert!(matches!(
            parse_nfs4_clients(&text, "nfs4"),
            Err(NamesError::TooMany {
                what: "nfs4",
                count: 100_001
            })
        ));
        let one = r#"{"ip": "10.0.0.1", "export": "10.0.0.1:/x"}"#;
        let text = format!("[{}]", vec![one; MAX_ENTRIES + 1].join(","));
        assert!(matches!(
            parse_nfs3_clients(&text, "nfs3"),
            Err(NamesError::TooMany { .. })
        ));
    }

    #[test]
    fn wrong_shapes_are_json_errors() {
        for text in [
            "",
            "garbage",
            "{}",
            "{\"id\": 1}",
            "[1]",
            "[[]]",
            "null",
            "[{\"id\": \"1\"",
        ] {
            assert!(
                matches!(
                    parse_nfs4_clients(text, "nfs4"),
                    Err(NamesError::Json { what: "nfs4", .. })
                ),
                "{text:?}"
            );
            assert!(
                matches!(
                    parse_nfs3_clients(text, "nfs3"),
                    Err(NamesError::Json { what: "nfs3", .. })
                ),
                "{text:?}"
            );
        }
        // Odd fields within a good shape are tolerated.
        let text = r#"[{"id": 3, "info": null}, {"info": "x"}, {"info": {"address": 5, "name": ["x"]}},
            {"info": {"address": "10.0.0.2:1", "name": 12, "new": {}}, "states": null, "more": 1}]"#;
        assert_eq!(
            parse_nfs4_clients(text, "t").unwrap(),
            vec![named("10.0.0.2", "12")]
        );
    }
}
