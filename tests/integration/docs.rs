//! The README says only what is true: its TOML snippets are valid configs,
//! the log messages its troubleshooting quotes are ones the code emits, and
//! the modules depend on each other in the one direction its Layout gives.
//! (Its Prometheus config and PromQL are run in prometheus.rs.)

use std::path::{Path, PathBuf};

use truenas_net_exporter::Config;
use truenas_net_exporter::cli::Cli;
use truenas_net_exporter::config::RawConfig;

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

/// Modules, lowest layer first: each may use only modules of a lower layer
/// (or its own). What README's Layout says about the direction.
const LAYERS: &[&[&str]] = &[
    &["bounded", "labels", "cli", "netdev", "healthcheck"],
    &["process"],
    &["telemetry"],
    &["command"],
    &["config"],
    &["sources"],
    &["resolver", "synthetic"],
    &["compose"],
    &["hub"],
    &["scrape"],
    &["exporter"],
    &["server"],
];

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
        let module = relative.split(['/', '.']).next().unwrap();
        if matches!(module, "lib" | "main") {
            continue;
        }
        let own = layer(module).unwrap_or_else(|| panic!("{relative}: not in LAYERS"));
        let text = std::fs::read_to_string(&file).unwrap();
        // Code, not doc links: a comment may point anywhere.
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for used in line.split("crate::").skip(1) {
                let used = used
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap();
                assert!(
                    !used.is_empty(),
                    "{relative}: name each module used: {line}"
                );
                if used == module {
                    continue;
                }
                let theirs = layer(used).unwrap_or_else(|| panic!("{used}: not in LAYERS"));
                assert!(
                    theirs < own,
                    "{relative} uses crate::{used}, a layer above or beside it: {line}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} uses seen");
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
