//! The TOML file as written: one struct per section, every key optional
//! (absent keys take their defaults later), unknown keys rejected. Values are
//! typed here, as serde reads them: durations, sizes, and the names of a
//! choice (compression, log level, VM lookups). A value of the wrong type or
//! an unknown name is an error that says its key, its line and what to
//! write instead, with an example (`interval = "30s"`); the checks
//! that need more than a type (ranges, regexes, label names) are each
//! section's `resolve`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::config::ConfigError;
use crate::config::defaults::{self as d, Compression, LogLevel, VmLookup};

/// The TOML file as written. Every key is optional; absent keys take defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub web: RawWeb,
    #[serde(default)]
    pub paths: RawPaths,
    #[serde(default)]
    pub netdev: RawNetdev,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub labels: RawLabels,
    #[serde(default)]
    pub interfaces: RawInterfaces,
    #[serde(default)]
    pub topology: RawResolver,
    #[serde(default)]
    pub docker: RawDocker,
    #[serde(default)]
    pub vm: RawVm,
    #[serde(default)]
    pub lxc: RawResolver,
    #[serde(default)]
    pub incus: RawIncus,
    #[serde(default)]
    pub truenas: RawTrueNas,
    #[serde(default)]
    pub commands: RawCommands,
    #[serde(default)]
    pub accounting: RawAccounting,
    #[serde(default)]
    pub peers: RawPeers,
    #[serde(default)]
    pub names: RawNames,
}

// `#[serde(flatten)]` would share the schedule keys between sections, but
// serde cannot flatten into a struct that denies unknown fields: each
// section lists them.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub listen_address: Option<String>,
    pub telemetry_path: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub read_header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub write_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_timeout: Option<Duration>,
    pub max_requests: Option<usize>,
    pub config_file: Option<PathBuf>,
    pub compression: Option<Compression>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    pub rootfs: Option<PathBuf>,
    pub procfs: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetdev {
    pub max_bytes: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<LogLevel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabels {
    pub owner_label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterfaces {
    pub include: Option<String>,
    pub exclude: Option<String>,
}

/// A resolver section with nothing but its schedule (`[topology]`, `[lxc]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    pub socket: Option<String>,
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVm {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub sources: Option<Vec<VmLookup>>,
    pub virsh_command: Option<Vec<String>>,
    pub virsh_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncus {
    pub enabled: Option<bool>,
    pub socket: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrueNas {
    pub midclt_command: Option<Vec<String>>,
    pub middleware_sockets: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommands {
    pub chroot: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub max_output_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounting {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub max_cgroups: Option<usize>,
    pub cgroup: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeers {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub top: Option<usize>,
    pub max_peers: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub idle: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub min_lifetime: Option<Duration>,
    pub fold_public_v4: Option<usize>,
    pub fold_public_v6: Option<usize>,
    /// Protocol name to its ports, over the default table's.
    pub ports: Option<std::collections::BTreeMap<String, Vec<u16>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNames {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub smbstatus_command: Option<Vec<String>>,
    pub reverse_dns: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub dns_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub dns_cache: Option<Duration>,
    /// An address or network to its name.
    pub hosts: Option<std::collections::BTreeMap<String, String>>,
}

impl RawConfig {
    /// Parses `text` (the file at `path`). A syntax error keeps TOML's own
    /// report (the line, a caret under the fault); an error in a value names
    /// its key and line, read from the file at the error's place (toml's
    /// error keeps the key to itself when it quotes the line). Not
    /// `serde_path_to_error`: wrapping the deserializer compiled the whole
    /// config's deserialisation again, 390 KB of the binary.
    pub fn from_toml(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        let document = toml::Deserializer::parse(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error: Box::new(error),
        })?;
        RawConfig::deserialize(document).map_err(|error| {
            let at = error.span().map(|span| span.start);
            let key = at.and_then(|offset| key_at(text, offset));
            ConfigError::Value {
                path: path.to_owned(),
                line: at.map(|offset| line_of(text, offset)),
                message: explain(error.message(), key.as_deref()),
                key,
            }
        })
    }

    /// The file's text; a missing or unreadable file is an error that names
    /// it once, with the system's reason.
    pub fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })
    }

    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        RawConfig::from_toml(&RawConfig::read(path)?, path)
    }
}

/// The dotted key of the line that byte `offset` of `text` lies on: a table
/// header's name (`docker`), or a `key = value` under the header above it
/// (`topology.interval`); `None` where that line holds neither (a line
/// inside a multi-line array).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("").trim();
    if line.starts_with('[') && !line.starts_with("[[") {
        let header = line.split(']').next().unwrap_or("");
        return Some(header.trim_start_matches('[').trim().to_owned());
    }
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with(['#', '[']) {
        return None;
    }
    let table = before[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(['[', ']']).trim());
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// Separates a message from the value a visitor suggests instead (`"30s"`
/// for `30`), which [`explain`] writes after the key.
const SUGGEST: char = '\u{1f}';

/// serde's message made into advice for `key` (`topology.interval`, as
/// written in the file): what was found, then what to write, with an
/// example from the key's default. Unknown keys and sections get the closest
/// known name.
fn explain(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (name, known) = quoted_names(rest);
        return unknown_key(&name, &known, key);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (name, known) = quoted_names(rest);
        return unknown_choice(&name, &known, key);
    }
    let row = key.and_then(d::row);
    let advice = |problem: &str, suggested: Option<&str>| {
        let Some(key) = key else {
            return problem.to_owned();
        };
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let example = match suggested {
            Some(value) => Some(format!("{leaf} = {value}")),
            None => d::example(key),
        };
        match (row, example) {
            (Some(row), Some(example)) => {
                format!("{problem}; write {}, such as {example}", row.default.form())
            }
            _ => problem.to_owned(),
        }
    };
    if let Some((problem, suggested)) = message.split_once(SUGGEST) {
        return advice(problem, Some(suggested));
    }
    let found = ["invalid type: ", "invalid value: ", "invalid length "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once(", expected "))
        // serde quotes numbers in backticks (integer `30`): shown bare.
        .map(|(got, expected)| (got.replace('`', ""), expected));
    match found {
        // A section written as a value (`web = 1`).
        Some((got, expected)) if expected.starts_with("struct ") => match key {
            Some(key) => format!(
                "found {got}; [{key}] is a section, written as a [{key}] line with its keys below it"
            ),
            None => format!("found {got}, expected a section"),
        },
        Some((got, _)) if row.is_some() => advice(&format!("found {got}"), None),
        _ => advice(message, None),
    }
}

/// `` `name`, expected one of `a`, `b` `` read as `name` and `[a, b]`.
fn quoted_names(text: &str) -> (String, Vec<String>) {
    let mut parts = text.split('`').skip(1).step_by(2).map(str::to_owned);
    let name = parts.next().unwrap_or_default();
    (name, parts.collect())
}

/// An unknown key in a section, or an unknown section (`key` has no dot).
fn unknown_key(name: &str, known: &[String], key: Option<&str>) -> String {
    let list = known.join(", ");
    let hint = closest(name, known)
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default();
    match key.and_then(|k| k.rsplit_once('.')) {
        Some((section, _)) => {
            format!("unknown key {name:?}{hint}; [{section}] takes {list}")
        }
        None => {
            // A section's key written above every section.
            let owners: Vec<String> = d::ALL
                .iter()
                .filter_map(|r| r.key.split_once('.'))
                .filter(|(_, leaf)| *leaf == name)
                .map(|(section, _)| format!("[{section}]"))
                .collect();
            if hint.is_empty() && !owners.is_empty() {
                format!(
                    "{name:?} is not a section; it is a key of {}: write it under one",
                    owners.join(", ")
                )
            } else {
                format!("unknown section [{name}]{hint}; the sections are {list}")
            }
        }
    }
}

/// A name that is not one of a choice's (`compression`, `log.level`, an
/// entry of `vm.sources`).
fn unknown_choice(name: &str, known: &[String], key: Option<&str>) -> String {
    let names: Vec<String> = known.iter().map(|k| format!("{k:?}")).collect();
    let mut text = format!("unknown value {name:?}; write one of {}", names.join(", "));
    if let Some(example) = key.and_then(d::example) {
        text.push_str(&format!(", such as {example}"));
    }
    text
}

/// The known name closest to `name`, if it is close: a letter or two
/// apart (`intervall`, `dockr`), or one is the start of the other.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(distance, k)| {
            *distance <= 2.max(name.len() / 4)
                || (name.len() >= 3 && (k.starts_with(name) || name.starts_with(k.as_str())))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.as_str())
}

/// The 1-based line where `text` sets the dotted `key`, if it does.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.contains('=') && key_at(text, offset).as_deref() == Some(key) {
            return Some(i + 1);
        }
        offset += line.len();
    }
    None
}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// A duration as humantime writes it (`"500ms"`, `"10s"`, `"1m 30s"`), read
/// by serde so that a bad one is an error at its key. Not the
/// `humantime-serde` crate: its error drops humantime's reason (`unknown
/// time unit "mn"`) for a bare "expected a duration".
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    struct Humantime;

    impl de::Visitor<'_> for Humantime {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"10s\" or \"1m 30s\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            use humantime::DurationError as Why;
            humantime::parse_duration(text).map_err(|e| match e {
                Why::UnknownUnit { unit, value, .. } if unit.is_empty() => {
                    E::custom(format_args!("{text:?} has no unit{SUGGEST}\"{value}s\""))
                }
                Why::UnknownUnit { unit, .. } => E::custom(format_args!(
                    "{text:?} is not a duration: unknown time unit {unit:?}"
                )),
                Why::NumberOverflow => {
                    E::custom(format_args!("{text:?} is not a duration: too large"))
                }
                _ => E::custom(format_args!("{text:?} is not a duration")),
            })
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format_args!("{n} is not a duration"))),
            }
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(E::custom(format_args!("{n} has no unit{SUGGEST}\"{n}s\"")))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(format_args!("{n} has no unit")))
        }
    }

    // Any: a number is refused with advice of its own, not "invalid type".
    deserializer.deserialize_any(Humantime).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_where_the_error_is() {
        let text = "top = 1\n[web]\nlisten = \"x\"\n[vm]\nsources = [\n  \"qemu\",\n]\n[dockr]\n";
        let at = |needle: &str| key_at(text, text.find(needle).unwrap());
        assert_eq!(at("1").as_deref(), Some("top"));
        assert_eq!(at("\"x\"").as_deref(), Some("web.listen"));
        assert_eq!(at("[\n").as_deref(), Some("vm.sources"));
        assert_eq!(at("\"qemu\"").as_deref(), None, "inside a multi-line array");
        assert_eq!(at("dockr").as_deref(), Some("dockr"));
        assert_eq!(line_of(text, text.find("dockr").unwrap()), 8);
    }
}
