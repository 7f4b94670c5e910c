//! The README says only what is true: its TOML snippets are valid configs,
//! the log messages its troubleshooting quotes are ones the code emits, and
//! the modules depend on each other in the one direction its Layout gives.
//! (Its Prometheus config and PromQL are run in prometheus.rs.)

use std::path::{Path, PathBuf};

use truenas_net_exporter::Config;
use truenas_net_exporter::config::RawConfig;
use truenas_net_exporter::config::cli::Cli;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under src/.
fn source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

fn sources() -> String {
    source_files()
        .into_iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

#[test]
fn readme_toml_snippets_are_valid_configs() {
    let text = readme();
    let mut blocks = 0;
    for block in text.split("```toml\n").skip(1) {
        let toml = &block[..block.find("```").unwrap()];
        let raw = RawConfig::from_toml(toml, Path::new("README.md"))
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        Config::build(raw, &Cli::default()).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        blocks += 1;
    }
    assert!(blocks >= 1);
}

#[test]
fn troubleshooting_quotes_real_log_messages() {
    let text = readme();
    let section = &text[text.find("## Troubleshooting").unwrap()..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let code = sources();
    let mut checked = 0;
    for span in section.split('`').skip(1).step_by(2) {
        // Messages are prose: they have spaces and are not flags, paths, config keys or label sets.
        if !span.contains(' ') || span.starts_with(['-', '/', '[']) || span.contains(['=', ':']) {
            continue;
        }
        for part in span.split("...").map(str::trim).filter(|p| !p.is_empty()) {
            assert!(
                code.contains(part),
                "README quotes {part:?}, which the code never says"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} messages checked");
}

/// Rooms, lowest layer first: each may use only rooms of a lower layer (or
/// its own). A room is a folder of `src/` (`resolve`, with its sources) or a
/// file at its top (`composer`, `hub`, `scrape`: the pipeline's spine). What
/// the Layout says about the direction.
const LAYERS: &[&[&str]] = &[
    &["bounded"],
    &["expose"],
    &["model"],
    &["config"],
    &["clients"],
    &["resolve"],
    &["workloads", "synthetic"],
    &["composer"],
    &["hub"],
    &["scrape"],
    &["exporter"],
    &["server"],
];

/// The room (as [`LAYERS`] names them) that a path from the crate root
/// lies in: the longest prefix of `path` that is one.
fn module_of(path: &[String]) -> String {
    let known = |p: &str| LAYERS.iter().any(|l| l.contains(&p));
    (1..=path.len().min(2))
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|p| known(p))
        .unwrap_or_else(|| path.first().cloned().unwrap_or_default())
}

/// The modules a line of `module_path`'s code refers to, through `crate::`,
/// `super::` or `self::` paths (braced lists included).
fn referenced(line: &str, module_path: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    // The path segments after a `crate::` (or a resolved `super::`), with
    // each name of a braced list as its own path.
    let paths_after = |base: &[String], rest: &str| -> Vec<Vec<String>> {
        let word = |s: &str| -> Vec<String> {
            s.split("::")
                .map(|w| {
                    w.trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '*')
                        .collect::<String>()
                })
                .take_while(|w| !w.is_empty())
                .collect()
        };
        let rest = rest.trim_start();
        let (head, list) = match rest.find('{') {
            Some(i) if !rest[..i].contains([' ', ';', '(', ')']) => {
                let list = &rest[i + 1..];
                (
                    &rest[..i],
                    Some(&list[..list.find('}').unwrap_or(list.len())]),
                )
            }
            _ => (rest, None),
        };
        let mut prefix = base.to_vec();
        prefix.extend(word(head));
        match list {
            None => vec![prefix],
            Some(list) => list
                .split(',')
                .map(|n| {
                    let mut p = prefix.clone();
                    p.extend(word(n));
                    p
                })
                .filter(|p| p.len() > prefix.len() || !prefix.is_empty())
                .collect(),
        }
    };
    for (i, _) in line.match_indices("crate::") {
        // `truenas_net_exporter::...` in a doc path is not a use.
        if line[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        found.extend(paths_after(&[], &line[i + 7..]));
    }
    for (prefix, up) in [("super::", 1), ("self::", 0)] {
        for (i, _) in line.match_indices(prefix) {
            if line[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let base = &module_path[..module_path.len().saturating_sub(up)];
            found.extend(paths_after(base, &line[i + prefix.len()..]));
        }
    }
    found
        .into_iter()
        .map(|p| {
            if p.is_empty() {
                String::new()
            } else {
                module_of(&p)
            }
        })
        .collect()
}

#[test]
fn modules_depend_one_way() {
    let layer = |module: &str| LAYERS.iter().position(|l| l.contains(&module));
    let src = src();
    let mut checked = 0;
    for file in source_files() {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut module_path: Vec<String> = relative
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        if module_path.last().is_some_and(|m| m == "mod") {
            module_path.pop();
        }
        if matches!(module_path[0].as_str(), "lib" | "main") {
            continue;
        }
        let module = module_of(&module_path);
        let own = layer(&module).unwrap_or_else(|| panic!("{relative}: not in LAYERS"));
        let text = std::fs::read_to_string(&file).unwrap();
        let mut in_tests = false;
        // Code, not doc links: a comment may point anywhere.
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            if line.trim_start().starts_with("mod tests") {
                in_tests = true;
            }
            let mut path = module_path.clone();
            if in_tests {
                path.push("tests".to_owned());
            }
            for used in referenced(line, &path) {
                assert!(
                    !used.is_empty() && used != "*",
                    "{relative}: name each module used: {line}"
                );
                if used == module {
                    continue;
                }
                let theirs = layer(&used)
                    .unwrap_or_else(|| panic!("{used}: not in LAYERS ({relative}: {line})"));
                assert!(
                    theirs < own,
                    "{relative} uses {used}, a layer above or beside it: {line}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} uses seen");
}

/// The README's Layout names every module, so the tree can be read from it.
#[test]
fn the_layout_names_every_module() {
    let text = readme();
    let layout = &text[text.find("## Layout").unwrap()..];
    let layout = &layout[..layout[3..].find("\n## ").map_or(layout.len(), |i| i + 3)];
    let src = src();
    let mut named = 0;
    for file in source_files() {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        // A directory's mod.rs is named by its directory; any other file by its stem.
        let name = if stem == "mod" {
            format!("{}/", relative.trim_end_matches("/mod.rs"))
        } else {
            stem
        };
        assert!(
            layout.contains(&name),
            "README's Layout does not name {relative}"
        );
        named += 1;
    }
    assert!(named > 30, "only {named} files seen");
}

#[test]
fn the_layering_check_sees_super_and_braced_paths() {
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        referenced("use super::permits::Permit;", &path(&["server", "gate"])),
        ["server"]
    );
    assert_eq!(
        referenced("use super::*;", &path(&["composer", "tests"])),
        ["composer"]
    );
    assert_eq!(
        referenced(
            "use crate::model::{labels::Kind, owner};",
            &path(&["composer"])
        ),
        ["model", "model"]
    );
    assert_eq!(
        referenced("let x = crate::scrape::FAMILIES;", &path(&["server"])),
        ["scrape"]
    );
    assert_eq!(
        referenced(
            "use crate::resolve::sources::{Claims, topology::LinkFacts};",
            &path(&["hub"])
        ),
        ["resolve", "resolve"]
    );
    assert_eq!(
        referenced("use crate::{config::Schedule, hub};", &path(&["resolve"])),
        ["config", "hub"]
    );
}

/// Comments, tests and scripts stand on their own: they cite nothing that is
/// not in the repository (the documents this project was first written from
/// are not).
#[test]
fn nothing_cites_a_document_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let outside = [
        "design.md",
        "seed-readme",
        "truenas-facts",
        "workload-accounting",
        "middleware-api",
        "the seed's",
        "seed README",
        "the seed README",
        "../shared",
    ];
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = ["src", "tests/integration", "benches", "monitoring", ".ci"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.extend(
        [
            "README.md",
            "Containerfile",
            "compose.yaml",
            "config.example.toml",
        ]
        .map(|f| root.join(f)),
    );
    let mut read = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        read += 1;
        for cited in outside {
            // This test names them to look for them.
            if file.ends_with("docs.rs") {
                continue;
            }
            assert!(
                !text.contains(cited),
                "{} cites {cited:?}, which is not in the repository",
                file.display()
            );
        }
    }
    assert!(read > 50, "only {read} files read");
}

/// The one table of defaults (`src/config/defaults.rs`) is what `--help`,
/// `config.example.toml`, and the README's Flags and Limits tables say.
#[test]
fn every_default_is_said_the_same_everywhere() {
    use truenas_net_exporter::config::defaults::{ALL, Shown};

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("config.example.toml")).unwrap())
            .unwrap();
    let mut in_example = 0;
    for (section, keys) in &example {
        for key in keys.as_table().unwrap().keys() {
            let full = format!("{section}.{key}");
            assert!(
                ALL.iter().any(|r| r.key == full),
                "config.example.toml has {full}, which has no default"
            );
            in_example += 1;
        }
    }
    assert_eq!(in_example, ALL.len(), "every setting is in the example");
    for row in ALL {
        let (section, key) = row.key.split_once('.').unwrap();
        let value = &example[section][key];
        let same = match &row.default {
            Shown::Text(t) => value.as_str() == Some(*t),
            Shown::Duration(d) => {
                value
                    .as_str()
                    .and_then(|v| humantime::parse_duration(v).ok())
                    == Some(*d)
            }
            Shown::Count(n) | Shown::Bytes(n) => value.as_integer() == Some(*n as i64),
            Shown::Bool(b) => value.as_bool() == Some(*b),
            Shown::List(l) => {
                let list: Vec<_> = value
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                list == *l
            }
            Shown::Ports(table) => {
                let written = value.as_table().unwrap();
                written.len() == table.len()
                    && table.iter().all(|(name, ports)| {
                        let listed: Vec<i64> = written[*name]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p.as_integer().unwrap())
                            .collect();
                        listed == ports.iter().map(|&p| p as i64).collect::<Vec<_>>()
                    })
            }
            Shown::Table(table) => {
                let written = value.as_table().unwrap();
                written.len() == table.len()
                    && table
                        .iter()
                        .all(|(key, name)| written[*key].as_str() == Some(*name))
            }
        };
        assert!(
            same,
            "config.example.toml: {} = {value}, the default is {:?}",
            row.key, row.default
        );
    }

    let help = std::process::Command::new(crate::support::bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let flags_section = {
        let text = readme();
        let start = text.find("## Flags").unwrap();
        text[start..start + text[start..].find("\n## ").unwrap_or(text.len() - start)].to_owned()
    };
    let mut flags = 0;
    for row in ALL {
        let Some(flag) = row.flag else { continue };
        flags += 1;
        let shown = row.default.plain();
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("--help has no {flag}"));
        let readme_row = flags_section
            .lines()
            .find(|l| l.starts_with(&format!("| `{flag}` |")))
            .unwrap_or_else(|| panic!("README's Flags table has no {flag}"));
        let readme_default = readme_row.split('|').nth(2).unwrap().trim();
        if shown.is_empty() {
            assert!(!line.contains("[default:"), "{line}");
            assert_eq!(readme_default, "", "{readme_row}");
        } else {
            assert!(
                line.contains(&format!("[default: {shown}]")),
                "--help: {line}"
            );
            assert_eq!(readme_default, format!("`{shown}`"), "{readme_row}");
        }
    }
    assert!(flags >= 8);

    // Limits: each row naming `[section] key`s says each one's default.
    let text = readme();
    let limits = &text[text.find("## Limits").unwrap()..];
    let limits = &limits[..limits[3..].find("\n## ").unwrap() + 3];
    let mut checked = 0;
    for line in limits
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("`["))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (bound, keys) = (cells[2], cells[3]);
        let Some(section) = keys
            .strip_prefix("`[")
            .and_then(|k| k.split_once(']'))
            .map(|(s, _)| s)
        else {
            continue;
        };
        if section.starts_with('<') {
            continue;
        }
        let names = keys
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|k| k.rsplit(' ').next().unwrap());
        for name in names {
            let key = format!("{section}.{name}");
            let row = ALL
                .iter()
                .find(|r| r.key == key)
                .unwrap_or_else(|| panic!("the Limits table names {key}, which has no default"));
            let human = row.default.human();
            assert!(
                bound.contains(&human),
                "Limits: {key} is {human}, the table says {bound:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} limits checked");
}
