//! The release workflow, .github/workflows/release.yml, is one GitHub accepts
//! and does what a release needs. Checked offline: against SchemaStore's
//! schema for GitHub workflows, vendored in tests/fixtures/schemas (with a
//! validator that has no HTTP client, so nothing is fetched), and against
//! what matters here: version tags trigger it, the image is built only after
//! the tests pass, from this repository's Containerfile, for linux/amd64 and
//! linux/arm64, and pushed to ghcr.io under the name compose.yaml runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const WORKFLOW: &str = ".github/workflows/release.yml";
const SCHEMA: &str = "tests/fixtures/schemas/github-workflow.json";

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn workflow() -> Value {
    yaml(WORKFLOW)
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(SCHEMA)).unwrap();
    assert!(
        schema["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("draft-07")),
        "the vendored schema is draft-07"
    );
    jsonschema::draft7::new(&schema).expect("the vendored schema compiles")
}

/// (where, what) of every violation.
fn violations(validator: &jsonschema::Validator, doc: &Value) -> Vec<(String, String)> {
    validator
        .iter_errors(doc)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect()
}

fn jobs(w: &Value) -> &serde_json::Map<String, Value> {
    w["jobs"].as_object().expect("jobs")
}

fn steps(job: &Value) -> &[Value] {
    job["steps"].as_array().map_or(&[], Vec::as_slice)
}

/// The steps of `job` that use `action` (owner/name, any version).
fn uses<'a>(job: &'a Value, action: &str) -> Vec<&'a Value> {
    steps(job)
        .iter()
        .filter(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.split('@').next() == Some(action))
        })
        .collect()
}

/// A job's `needs`, a string or a list.
fn needs(job: &Value) -> Vec<String> {
    match &job["needs"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The jobs `name` waits for, directly or through others.
fn all_needs(w: &Value, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = needs(&w["jobs"][name]);
    while let Some(n) = todo.pop() {
        if seen.insert(n.clone()) {
            todo.extend(needs(&w["jobs"][n.as_str()]));
        }
    }
    seen
}

/// The values a `${{ matrix.KEY }}` expression takes in `job`; any other
/// string is its own single value.
fn expand(job: &Value, value: &str) -> Vec<String> {
    let Some(key) = value
        .trim()
        .strip_prefix("${{ matrix.")
        .and_then(|k| k.strip_suffix(" }}"))
    else {
        return vec![value.to_owned()];
    };
    let matrix = &job["strategy"]["matrix"];
    let mut values: Vec<String> = matrix[key]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            matrix["include"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|entry| &entry[key]),
        )
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    values.dedup();
    assert!(!values.is_empty(), "matrix.{key} has no values");
    values
}

/// GitHub's filter patterns, as far as tags need them: `*` is any run of
/// characters but `/`; everything else stands for itself.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(name) = name.strip_prefix(head) else {
                return false;
            };
            (0..=name.len())
                .take_while(|&i| !name[..i].contains('/'))
                .filter(|&i| name.is_char_boundary(i))
                .any(|i| glob(rest, &name[i..]))
        }
    }
}

/// `key="value"` of the Containerfile's LABEL instruction.
fn containerfile_label(key: &str) -> String {
    let file = read("Containerfile");
    let start = file
        .find(&format!("{key}=\""))
        .unwrap_or_else(|| panic!("the Containerfile sets {key}"))
        + key.len()
        + 2;
    file[start..start + file[start..].find('"').unwrap()].to_owned()
}

/// `key=value` lines of a multi-line action input.
fn pairs(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn release_workflow_matches_githubs_schema() {
    let errors = violations(&validator(), &workflow());
    assert!(errors.is_empty(), "{WORKFLOW}: {errors:#?}");
}

#[test]
fn the_schema_check_rejects_broken_workflows() {
    let validator = validator();
    let good = workflow();
    assert!(validator.is_valid(&good));
    // (what is wrong, where the schema must object, the broken workflow)
    let mut broken: Vec<(&str, &str, Value)> = Vec::new();

    let mut w = good.clone();
    w["on"] = json!(42);
    broken.push(("`on:` a number", "/on", w));

    let mut w = good.clone();
    let test = w["jobs"]["test"].as_object_mut().unwrap();
    let runner = test.remove("runs-on").unwrap();
    test.insert("run-on".into(), runner);
    broken.push((
        "a job without runs-on, with an unknown key",
        "/jobs/test",
        w,
    ));

    let mut w = good.clone();
    w["jobs"]["test"]["steps"][0]["usess"] = json!("actions/checkout@v6");
    broken.push(("a step with an unknown key", "/jobs/test", w));

    let mut w = good.clone();
    w["permissions"]["packages"] = json!("publish");
    broken.push(("a permission level that does not exist", "/permissions", w));

    for (what, at, doc) in broken {
        let errors = violations(&validator, &doc);
        assert!(!errors.is_empty(), "{what}: accepted");
        assert!(
            errors.iter().all(|(path, _)| path.starts_with(at)),
            "{what}: rejected at {at}, and only there: {errors:#?}"
        );
    }
}

#[test]
fn release_runs_on_version_tags_only() {
    let w = workflow();
    let on = w["on"].as_object().expect("`on:` as a map");
    assert_eq!(on.keys().collect::<Vec<_>>(), ["push"], "{on:?}");
    let push = on["push"].as_object().unwrap();
    assert_eq!(
        push.keys().collect::<Vec<_>>(),
        ["tags"],
        "no branches: {push:?}"
    );
    let tags: Vec<&str> = push["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.iter().all(|t| t.starts_with('v')), "{tags:?}");
    let matches = |tag: &str| tags.iter().any(|p| glob(p, tag));
    for tag in ["v0.1.0", "v1.2.3", "v10.20.30", "v1.0.0-rc.1"] {
        assert!(matches(tag), "{tag} releases");
    }
    for tag in ["0.1.0", "v1", "v1.2", "latest", "main", "vx/1.2.3"] {
        assert!(!matches(tag), "{tag} does not release");
    }
}

#[test]
fn release_builds_and_pushes_only_after_the_tests_pass() {
    let w = workflow();
    let jobs = jobs(&w);
    let test = &jobs["test"];
    assert!(
        test["runs-on"]
            .as_str()
            .is_some_and(|r| r.starts_with("ubuntu-")),
        "{test}"
    );
    let run = steps(test)
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains(".ci/run")))
        .expect("the test job runs .ci/run");
    let script = run["run"].as_str().unwrap();
    assert!(
        script.contains("sudo -E") && script.contains("bash .ci/run"),
        "{script}"
    );
    assert_eq!(run["env"]["CI"], "true", "skips fail the release");
    assert!(
        uses(test, "docker/build-push-action").is_empty(),
        "the test job builds no image"
    );

    // Every other job, the ones that build and push, waits for the tests.
    for name in jobs.keys().filter(|n| *n != "test") {
        assert!(
            all_needs(&w, name).contains("test"),
            "job {name} needs the test job"
        );
    }
    assert!(
        jobs.values()
            .any(|j| !uses(j, "docker/build-push-action").is_empty()),
        "some job builds the image"
    );
}

#[test]
fn release_builds_the_containerfile_for_amd64_and_arm64() {
    let w = workflow();
    let mut platforms = BTreeSet::new();
    for (name, job) in jobs(&w) {
        for build in uses(job, "docker/build-push-action") {
            let with = &build["with"];
            assert_eq!(with["file"], "Containerfile", "job {name}");
            assert_eq!(with["context"], ".", "job {name}");
            assert!(Path::new(ROOT).join("Containerfile").is_file());
            let list = with["platforms"].as_str().expect("platforms");
            for platform in expand(job, list)
                .iter()
                .flat_map(|p| p.split(','))
                .map(str::trim)
            {
                platforms.insert(platform.to_owned());
            }
            // arm64 on an amd64 runner needs QEMU; otherwise a native runner.
            if !uses(job, "docker/setup-qemu-action").is_empty() {
                continue;
            }
            let entries = job["strategy"]["matrix"]["include"].as_array();
            for entry in entries.into_iter().flatten() {
                let runner = entry["runner"].as_str().unwrap_or_default();
                let arm = entry["platform"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("arm");
                assert_eq!(
                    runner.contains("-arm"),
                    arm,
                    "job {name}: {entry} runs on a runner of its own architecture"
                );
                assert_eq!(job["runs-on"], "${{ matrix.runner }}", "job {name}");
            }
        }
    }
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(platforms.contains(platform), "{platform}: {platforms:?}");
    }
}

#[test]
fn release_pushes_to_ghcr_under_the_version_tags() {
    let w = workflow();
    assert_eq!(w["permissions"]["contents"], "read");
    assert_eq!(w["permissions"]["packages"], "write");
    let image = "ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/truenas-net-exporter";
    let mut tags_seen = false;
    for (name, job) in jobs(&w) {
        let pushes = !uses(job, "docker/build-push-action").is_empty()
            || steps(job).iter().any(|s| {
                s["run"]
                    .as_str()
                    .is_some_and(|r| r.contains("imagetools create"))
            });
        if !pushes {
            continue;
        }
        // The image name, with the owner lowercased (registry names are).
        assert!(
            steps(job).iter().any(|s| s["run"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("IMAGE={image}")))),
            "job {name} names the image {image}"
        );
        let login = uses(job, "docker/login-action");
        assert_eq!(login.len(), 1, "job {name} logs in");
        assert_eq!(login[0]["with"]["registry"], "ghcr.io");
        assert_eq!(login[0]["with"]["password"], "${{ secrets.GITHUB_TOKEN }}");
        for meta in uses(job, "docker/metadata-action") {
            assert_eq!(meta["with"]["images"], "${{ env.IMAGE }}", "job {name}");
            // The image's metadata says what the Containerfile says.
            for input in ["labels", "annotations"] {
                let Some(text) = meta["with"][input].as_str() else {
                    continue;
                };
                for (key, value) in pairs(text) {
                    assert_eq!(
                        value,
                        containerfile_label(&key),
                        "job {name}: {input} {key}"
                    );
                }
            }
            if let Some(tags) = meta["with"]["tags"].as_str() {
                tags_seen = true;
                let tags: Vec<&str> = tags.lines().map(str::trim).collect();
                for pattern in ["{{version}}", "{{major}}.{{minor}}", "{{major}}"] {
                    assert!(
                        tags.contains(&format!("type=semver,pattern={pattern}").as_str()),
                        "job {name} tags {pattern}: {tags:?}"
                    );
                }
                let flavor = meta["with"]["flavor"].as_str().unwrap_or("latest=auto");
                assert!(
                    flavor.contains("latest=auto"),
                    "latest unless a pre-release"
                );
            }
        }
        for build in uses(job, "docker/build-push-action") {
            let with = &build["with"];
            let outputs = with["outputs"].as_str().unwrap_or_default();
            assert!(
                with["push"] == true || outputs.contains("push=true"),
                "job {name} pushes"
            );
            assert!(
                outputs.contains("name=${{ env.IMAGE }}"),
                "job {name} pushes to the image: {outputs}"
            );
            assert!(
                with["cache-from"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("type=gha"))
                    && with["cache-to"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("type=gha")),
                "job {name} caches in GitHub's cache"
            );
        }
    }
    assert!(tags_seen, "the image gets the version tags");
}

#[test]
fn actions_are_pinned_to_major_versions() {
    let w = workflow();
    let pinned = regex::Regex::new(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@v[0-9]+$").unwrap();
    for (name, job) in jobs(&w) {
        for step in steps(job) {
            if let Some(action) = step["uses"].as_str() {
                assert!(pinned.is_match(action), "job {name}: {action}");
            }
        }
    }
}

/// compose.yaml runs the image a release of this version publishes, under
/// the owner the Containerfile names as its source.
#[test]
fn compose_runs_the_released_image_of_this_version() {
    let compose = yaml("compose.yaml");
    let image = compose["services"]["truenas-net-exporter"]["image"]
        .as_str()
        .expect("compose.yaml names an image");
    let source = containerfile_label("org.opencontainers.image.source");
    let owner = source
        .strip_prefix("https://github.com/")
        .and_then(|r| r.split('/').next())
        .expect("the source label is a GitHub repository");
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    let version = cargo["package"]["version"].as_str().unwrap();
    assert_eq!(
        image,
        format!("ghcr.io/{owner}/truenas-net-exporter:{version}"),
        "compose.yaml's image is this version's release (bump it with Cargo.toml's version)"
    );
    assert_eq!(owner, owner.to_lowercase());
}
