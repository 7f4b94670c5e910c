//! The documentation (README.md, docs/*.md, CONTRIBUTING.md) says only what
//! is true: its TOML snippets are valid configs and its YAML parses, the log
//! messages docs/troubleshooting.md quotes are ones the code emits, the flags
//! and limits tables are the defaults, the README's install steps are
//! compose.yaml's and the Containerfile's, every relative link leads to a
//! file (and heading) of the repository, the README stays short, and the
//! modules depend on each other in the one direction CONTRIBUTING.md's
//! Layout gives. (The Prometheus config and every PromQL line are run in
//! prometheus.rs and victoria.rs.)

use std::path::{Path, PathBuf};

use truenas_net_exporter::Config;
use truenas_net_exporter::config::RawConfig;
use truenas_net_exporter::config::cli::Cli;

use crate::support::{doc, doc_blocks, doc_files, doc_section};

fn readme() -> String {
    doc("README.md")
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

/// Every TOML block of the documentation is a config the exporter takes.
#[test]
fn toml_snippets_are_valid_configs() {
    let mut blocks = 0;
    for (path, text) in doc_files() {
        for toml in doc_blocks(&text, "toml") {
            let raw = RawConfig::from_toml(&toml, Path::new(&path))
                .unwrap_or_else(|e| panic!("{path}: {e}\n{toml}"));
            Config::build(raw, &Cli::default()).unwrap_or_else(|e| panic!("{path}: {e}\n{toml}"));
            blocks += 1;
        }
    }
    assert!(blocks >= 1);
}

#[test]
fn troubleshooting_quotes_real_log_messages() {
    let text = doc("docs/troubleshooting.md");
    // After the title and its one-line intro.
    let section = &text[text.find("\n- ").unwrap()..];
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
                "docs/troubleshooting.md quotes {part:?}, which the code never says"
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

/// CONTRIBUTING.md's Layout names every module, so the tree can be read from it.
#[test]
fn the_layout_names_every_module() {
    let layout = doc_section(&doc("CONTRIBUTING.md"), "## Layout");
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
            "CONTRIBUTING.md's Layout does not name {relative}"
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
    files.extend(doc_files().into_iter().map(|(path, _)| root.join(path)));
    files.extend(["Containerfile", "compose.yaml", "config.example.toml"].map(|f| root.join(f)));
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
/// `config.example.toml`, and the Flags and Limits tables of
/// docs/configuration.md say.
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
    let configuration = doc("docs/configuration.md");
    let flags_section = doc_section(&configuration, "## Flags");
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
            .unwrap_or_else(|| panic!("the Flags table of docs/configuration.md has no {flag}"));
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
    let limits = doc_section(&configuration, "## Limits");
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

/// GitHub's anchor for each heading of a Markdown `text` (lowercase,
/// punctuation dropped, spaces as `-`, a repeated one numbered).
fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut bases: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = bases.iter().filter(|s| **s == slug).count();
        seen.push(if repeats == 0 {
            slug.clone()
        } else {
            format!("{slug}-{repeats}")
        });
        bases.push(slug);
    }
    seen
}

/// The targets of the Markdown links and images of `text`, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        // Inline code is not a link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for (i, _) in prose.match_indices("](") {
            let rest = &prose[i + 2..];
            let end = rest.find(')').expect("a closed link");
            targets.push(rest[..end].to_owned());
        }
    }
    targets
}

/// Every relative link of README.md, CONTRIBUTING.md and docs/*.md leads to
/// a file of the repository, and its `#anchor`, if any, to a heading of it.
#[test]
fn every_relative_link_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for (path, text) in doc_files() {
        let dir = Path::new(&path).parent().unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if file.is_empty() {
                PathBuf::from(&path)
            } else {
                // Lexically: `docs/../LICENSE` is `LICENSE`.
                let mut p = dir.to_path_buf();
                for part in Path::new(file).components() {
                    match part {
                        std::path::Component::ParentDir => {
                            assert!(p.pop(), "{path}: {target} leaves the repository");
                        }
                        std::path::Component::CurDir => {}
                        other => p.push(other),
                    }
                }
                p
            };
            let shown = linked.to_string_lossy().into_owned();
            assert!(
                root.join(&linked).exists(),
                "{path} links {target}: {shown} is not in the repository"
            );
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(root.join(&linked)).unwrap();
                assert!(
                    anchors(&text).iter().any(|a| a == anchor),
                    "{path} links {target}: {shown} has no heading #{anchor} ({:?})",
                    anchors(&text)
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} links checked");
}

#[test]
fn the_anchors_are_githubs() {
    assert_eq!(
        anchors(
            "# A\n## A b\n## TLS and basic auth: `--web.config.file`\n```sh\n# not one\n```\n## The page: `/`\n## A\n"
        ),
        [
            "a",
            "a-b",
            "tls-and-basic-auth---webconfigfile",
            "the-page-",
            "a-1"
        ]
    );
    assert_eq!(
        link_targets("see [x](a.md#b), `[not](c.md)`, ![img](d/e.png)\n```\n[no](f.md)\n```\n"),
        ["a.md#b", "d/e.png"]
    );
}

/// The README is read top-down on a first visit: it stays short, and the
/// rest lives in docs/.
#[test]
fn the_readme_is_at_most_400_lines() {
    let lines = readme().lines().count();
    assert!(
        lines <= 400,
        "README.md has {lines} lines; move detail to docs/"
    );
}

/// The README's install steps build and run the image `compose.yaml` and the
/// Containerfile name (the local tag, the published image and its tags), and
/// name every grant `compose.yaml` asks for, and no capability it does not.
#[test]
fn the_install_steps_are_compose_and_the_containerfile() {
    let compose_text = doc("compose.yaml");
    let compose: serde_json::Value = serde_norway::from_str(&compose_text).unwrap();
    let service = &compose["services"]["truenas-net-exporter"];
    let published = service["image"].as_str().expect("compose.yaml's image");
    let containerfile = doc("Containerfile");
    let after = |text: &str, marker: &str| -> String {
        let at = text.find(marker).unwrap_or_else(|| panic!("no {marker:?}")) + marker.len();
        text[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches([',', '.'])
            .to_owned()
    };
    // `# Build: docker build -f Containerfile -t NAME .`
    let built = after(&containerfile, "docker build -f Containerfile -t ");
    let released = after(&containerfile, "Released images: ");
    // compose.yaml: "set `image:` to a local name such as NAME:TAG"
    let local = after(&compose_text, "a local\n    # name such as ");
    assert_eq!(
        local.split(':').next(),
        Some(built.as_str()),
        "compose.yaml's local name is the Containerfile's build name"
    );
    assert!(
        published.starts_with(&format!("{released}:")),
        "{published} is {released}"
    );

    let install = doc_section(&readme(), "## Install on TrueNAS");
    let build = install
        .lines()
        .find(|l| l.starts_with("docker build "))
        .expect("the README builds the image");
    assert_eq!(build, format!("docker build -f Containerfile -t {local} ."));
    let yaml = doc_blocks(&install, "yaml");
    assert_eq!(yaml.len(), 1, "the one change to compose.yaml");
    let change: serde_json::Value = serde_norway::from_str(&yaml[0]).unwrap();
    assert_eq!(change["image"], local.as_str(), "{change}");
    assert_eq!(change["pull_policy"], "never", "{change}");
    assert!(
        install.contains(&format!("`{published}`")),
        "the README names compose.yaml's image, {published}"
    );
    let version = published.rsplit(':').next().unwrap();
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    for tag in [
        format!("{major}.{minor}"),
        major.to_owned(),
        "latest".to_owned(),
    ] {
        assert!(install.contains(&format!("`{tag}`")), "the tag {tag}");
    }
    for word in install.split(|c: char| c.is_whitespace() || c == '`') {
        if word.contains("truenas-net-exporter:") {
            assert!(
                word == local || word == published,
                "the README names an image that is neither built nor published: {word}"
            );
        }
    }

    let caps: Vec<&str> = service["cap_add"]
        .as_array()
        .expect("cap_add")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut grants: Vec<String> = caps.iter().map(|c| format!("`{c}`")).collect();
    for key in ["pid", "cgroup"] {
        grants.push(format!("`{key}: {}`", service[key].as_str().unwrap()));
    }
    grants.push(format!("`read_only: {}`", service["read_only"]));
    for list in ["security_opt", "volumes"] {
        for entry in service[list].as_array().unwrap() {
            grants.push(format!("`{}`", entry.as_str().unwrap()));
        }
    }
    for grant in &grants {
        assert!(
            install.contains(grant.as_str()),
            "compose.yaml grants {grant}; the README's install does not say so"
        );
    }
    assert!(grants.len() >= 8, "{grants:?}");
    // And no capability compose.yaml does not grant.
    for span in install.split('`').skip(1).step_by(2) {
        if span.len() > 2 && span.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            assert!(
                caps.contains(&span),
                "the README's install names {span}, which compose.yaml does not grant"
            );
        }
    }
}

/// Every YAML block of the documentation is YAML (each is also run: the
/// scrape config and remote writes in prometheus.rs, victoria.rs and
/// influx.rs, the web config in security.rs, the README's change to
/// compose.yaml above).
#[test]
fn yaml_snippets_parse() {
    let mut blocks = 0;
    for (path, text) in doc_files() {
        for yaml in doc_blocks(&text, "yaml") {
            let _: serde_json::Value =
                serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("{path}: {e}\n{yaml}"));
            blocks += 1;
        }
    }
    assert!(blocks >= 5, "only {blocks} YAML blocks");
}

/// Every PromQL line of the documentation is one prometheus.rs and
/// victoria.rs run: the counts they hold are the documentation's.
#[test]
fn every_promql_line_is_run() {
    use crate::prometheus::{OTHER_QUERIES, PROMETHEUS_QUERIES, doc_promql};
    let (queries, others) = doc_promql();
    assert_eq!(queries.len(), PROMETHEUS_QUERIES, "{queries:#?}");
    assert_eq!(others.len(), OTHER_QUERIES, "{others:#?}");
    // Every `promql` block counted, wherever it is.
    let blocks: usize = doc_files()
        .iter()
        .map(|(_, text)| text.matches("```promql\n").count())
        .sum();
    let lines: usize = doc_files()
        .iter()
        .flat_map(|(_, text)| doc_blocks(text, "promql"))
        .map(|b| {
            b.lines()
                .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
                .count()
        })
        .sum();
    assert!(blocks >= 5, "{blocks} promql blocks");
    assert_eq!(lines, PROMETHEUS_QUERIES + OTHER_QUERIES);
}
