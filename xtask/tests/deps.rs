//! The dependency policy of `deny.toml` (licences, duplicate versions, sources, wildcard
//! requirements), checked against `cargo metadata` on every test run.
//!
//! `deny.toml` is in cargo-deny's format, and `cargo deny --offline check licenses bans
//! sources` passes on it too; this test does the same checks without cargo-deny, which
//! takes minutes to build on a fresh machine. It knows only the keys `deny.toml` uses, and
//! fails on any other, so that a key added for cargo-deny is never silently ignored here.
//! The advisories (which need the RustSec database) are not checked: only the form of
//! `[advisories] ignore`.
//!
//! Where it differs from cargo-deny: `cargo metadata` resolves optional dependencies more
//! widely than a build does, so the graph checked here can hold a few more crates; a
//! licence must be an SPDX expression in the crate's manifest (no licence-text scanning);
//! and an unused or unneeded `skip` fails (cargo-deny only warns).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value as Json;
use toml::{Table, Value};

/// How cargo names crates.io in `cargo metadata` and lockfiles, whatever the protocol.
const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// A `deny`/`warn`/`allow` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Deny,
    Warn,
    Allow,
}

/// What `deny.toml` asks.
#[derive(Debug, Clone)]
struct Policy {
    targets: Vec<String>,
    allow: BTreeSet<String>,
    licenses_include_dev: bool,
    multiple_versions: Level,
    multiple_versions_include_dev: bool,
    /// (name, version) → reason.
    skip: BTreeMap<(String, String), String>,
    wildcards: Level,
    allow_wildcard_paths: bool,
    unknown_registry: Level,
    unknown_git: Level,
    allow_registry: Vec<String>,
    allow_git: Vec<String>,
}

fn keys_known(table: &Table, section: &str, known: &[&str]) -> Result<(), String> {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            return Err(format!(
                "deny.toml: [{section}] {key} is not known to xtask/tests/deps.rs: teach it \
                 the key (and what cargo-deny does with it) or leave the key out"
            ));
        }
    }
    Ok(())
}

/// The `{ FIELD = "...", reason = "..." }` entries of the array `key` of `table`, as
/// (field, reason): every accepted exception in deny.toml says why.
fn reasoned<'a>(
    table: &'a Table,
    section: &str,
    key: &str,
    field: &str,
) -> Result<Vec<(&'a str, &'a str)>, String> {
    let Some(entries) = table.get(key) else {
        return Ok(Vec::new());
    };
    let entries = entries
        .as_array()
        .ok_or_else(|| format!("deny.toml: [{section}] {key} is not an array"))?;
    entries
        .iter()
        .map(|entry| {
            let value = entry.get(field).and_then(Value::as_str);
            let reason = entry.get("reason").and_then(Value::as_str);
            match (value, reason) {
                (Some(value), Some(reason)) if !reason.trim().is_empty() => Ok((value, reason)),
                _ => Err(format!(
                    "deny.toml: [{section}] {key}: {entry} is not {{ {field} = \"...\", \
                     reason = \"...\" }} with a reason"
                )),
            }
        })
        .collect()
}

fn section<'a>(top: &'a Table, name: &str) -> Result<&'a Table, String> {
    match top.get(name) {
        Some(Value::Table(t)) => Ok(t),
        Some(_) => Err(format!("deny.toml: [{name}] is not a table")),
        None => Err(format!("deny.toml: no [{name}]")),
    }
}

fn strings(table: &Table, section: &str, key: &str) -> Result<Vec<String>, String> {
    match table.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("deny.toml: [{section}] {key}: {v} is not a string"))
            })
            .collect(),
        Some(v) => Err(format!("deny.toml: [{section}] {key}: {v} is not an array")),
    }
}

fn boolean(table: &Table, section: &str, key: &str, default: bool) -> Result<bool, String> {
    match table.get(key) {
        None => Ok(default),
        Some(Value::Boolean(b)) => Ok(*b),
        Some(v) => Err(format!(
            "deny.toml: [{section}] {key}: {v} is not true or false"
        )),
    }
}

fn level(table: &Table, section: &str, key: &str, default: Level) -> Result<Level, String> {
    match table.get(key).map(|v| v.as_str()) {
        None => Ok(default),
        Some(Some("deny")) => Ok(Level::Deny),
        Some(Some("warn")) => Ok(Level::Warn),
        Some(Some("allow")) => Ok(Level::Allow),
        Some(_) => Err(format!(
            "deny.toml: [{section}] {key}: not deny, warn or allow"
        )),
    }
}

impl Policy {
    fn parse(text: &str) -> Result<Policy, String> {
        let top: Table = text.parse().map_err(|e| format!("deny.toml: {e}"))?;
        keys_known(
            &top,
            "",
            &["graph", "licenses", "bans", "sources", "advisories"],
        )?;

        let graph = section(&top, "graph")?;
        keys_known(graph, "graph", &["targets"])?;
        let targets = strings(graph, "graph", "targets")?;

        let licenses = section(&top, "licenses")?;
        keys_known(
            licenses,
            "licenses",
            &["allow", "confidence-threshold", "include-dev"],
        )?;
        let allow = strings(licenses, "licenses", "allow")?
            .into_iter()
            .collect();
        let licenses_include_dev = boolean(licenses, "licenses", "include-dev", false)?;

        let bans = section(&top, "bans")?;
        keys_known(
            bans,
            "bans",
            &[
                "multiple-versions",
                "multiple-versions-include-dev",
                "wildcards",
                "allow-wildcard-paths",
                "skip",
            ],
        )?;
        let mut skip = BTreeMap::new();
        for (spec, reason) in reasoned(bans, "bans", "skip", "crate")? {
            let Some((name, version)) = spec.split_once('@') else {
                return Err(format!(
                    "deny.toml: [bans] skip: {spec}: name one version, NAME@VERSION"
                ));
            };
            skip.insert((name.to_owned(), version.to_owned()), reason.to_owned());
        }

        let sources = section(&top, "sources")?;
        keys_known(
            sources,
            "sources",
            &[
                "unknown-registry",
                "unknown-git",
                "allow-registry",
                "allow-git",
            ],
        )?;
        let mut allow_registry = strings(sources, "sources", "allow-registry")?;
        if !sources.contains_key("allow-registry") {
            // cargo-deny's default.
            allow_registry.push(CRATES_IO["registry+".len()..].to_owned());
        }

        let advisories = section(&top, "advisories")?;
        keys_known(advisories, "advisories", &["ignore"])?;
        for (id, _) in reasoned(advisories, "advisories", "ignore", "id")? {
            if !id.starts_with("RUSTSEC-") {
                return Err(format!(
                    "deny.toml: [advisories] ignore: {id} is not a RUSTSEC-... id"
                ));
            }
        }

        Ok(Policy {
            targets,
            allow,
            licenses_include_dev,
            multiple_versions: level(bans, "bans", "multiple-versions", Level::Warn)?,
            multiple_versions_include_dev: boolean(
                bans,
                "bans",
                "multiple-versions-include-dev",
                false,
            )?,
            skip,
            wildcards: level(bans, "bans", "wildcards", Level::Allow)?,
            allow_wildcard_paths: boolean(bans, "bans", "allow-wildcard-paths", false)?,
            unknown_registry: level(sources, "sources", "unknown-registry", Level::Warn)?,
            unknown_git: level(sources, "sources", "unknown-git", Level::Warn)?,
            allow_registry,
            allow_git: strings(sources, "sources", "allow-git")?,
        })
    }
}

/// An SPDX licence expression: `A OR (B AND C)`, `A WITH EXC`, and the old `A/B` for OR.
#[derive(Debug, PartialEq)]
enum Licence {
    Id(String),
    And(Box<Licence>, Box<Licence>),
    Or(Box<Licence>, Box<Licence>),
}

impl Licence {
    fn parse(text: &str) -> Result<Licence, String> {
        let spaced = text
            .replace('(', " ( ")
            .replace(')', " ) ")
            .replace('/', " OR ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let mut pos = 0;
        let expr = Self::or(&tokens, &mut pos)?;
        if pos != tokens.len() {
            return Err(format!("{text:?}: unexpected {:?}", tokens[pos]));
        }
        Ok(expr)
    }

    fn or(tokens: &[&str], pos: &mut usize) -> Result<Licence, String> {
        let mut left = Self::and(tokens, pos)?;
        while tokens.get(*pos) == Some(&"OR") {
            *pos += 1;
            left = Licence::Or(Box::new(left), Box::new(Self::and(tokens, pos)?));
        }
        Ok(left)
    }

    fn and(tokens: &[&str], pos: &mut usize) -> Result<Licence, String> {
        let mut left = Self::atom(tokens, pos)?;
        while tokens.get(*pos) == Some(&"AND") {
            *pos += 1;
            left = Licence::And(Box::new(left), Box::new(Self::atom(tokens, pos)?));
        }
        Ok(left)
    }

    fn atom(tokens: &[&str], pos: &mut usize) -> Result<Licence, String> {
        let token = *tokens.get(*pos).ok_or("the expression ends too soon")?;
        *pos += 1;
        if token == "(" {
            let inner = Self::or(tokens, pos)?;
            if tokens.get(*pos) != Some(&")") {
                return Err("a `(` is not closed".to_owned());
            }
            *pos += 1;
            return Ok(inner);
        }
        if matches!(token, ")" | "AND" | "OR" | "WITH") {
            return Err(format!("unexpected {token:?}"));
        }
        let mut id = token.to_owned();
        if tokens.get(*pos) == Some(&"WITH") {
            let exception = tokens.get(*pos + 1).ok_or("WITH names no exception")?;
            // `A WITH EXC` is its own licence: allowed only when listed as such.
            id = format!("{id} WITH {exception}");
            *pos += 2;
        }
        Ok(Licence::Id(id))
    }

    fn satisfied_by(&self, allow: &BTreeSet<String>) -> bool {
        match self {
            Licence::Id(id) => allow.contains(id),
            Licence::And(a, b) => a.satisfied_by(allow) && b.satisfied_by(allow),
            Licence::Or(a, b) => a.satisfied_by(allow) || b.satisfied_by(allow),
        }
    }
}

/// `cargo metadata` for the targets of the policy.
fn metadata(targets: &[String]) -> Json {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(xtask::workspace_root().join("Cargo.toml"));
    for target in targets {
        command.args(["--filter-platform", target]);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn text<'a>(value: &'a Json, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// The package ids of the graph: reachable from the workspace members, through their
/// dev-dependencies too when `include_dev`.
fn graph(meta: &Json, include_dev: bool) -> BTreeSet<String> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    let nodes: BTreeMap<&str, &Json> = meta["resolve"]["nodes"]
        .as_array()
        .expect("a resolved graph")
        .iter()
        .map(|node| (text(node, "id"), node))
        .collect();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = members.iter().copied().collect();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.to_owned()) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let only_dev = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|kind| kind["kind"].as_str() == Some("dev"));
            if include_dev || !only_dev {
                todo.push(text(dep, "pkg"));
            }
        }
    }
    seen
}

/// Everything in `meta` that breaks `policy`, one line each; warnings go to stderr.
fn problems(policy: &Policy, meta: &Json) -> Vec<String> {
    let packages: BTreeMap<&str, &Json> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (text(p, "id"), p))
        .collect();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    let mut problems = Vec::new();
    let mut report = |level: Level, message: String| match level {
        Level::Deny => problems.push(message),
        Level::Warn => eprintln!("warning: {message}"),
        Level::Allow => {}
    };
    let name_of = |p: &Json| format!("{} {}", text(p, "name"), text(p, "version"));

    // Licences.
    for id in graph(meta, policy.licenses_include_dev) {
        let p = packages[id.as_str()];
        match p["license"].as_str() {
            None => report(
                Level::Deny,
                format!(
                    "{}: no SPDX licence expression in its manifest; cargo-deny would need a \
                     [[licenses.clarify]] for it",
                    name_of(p)
                ),
            ),
            Some(expr) => match Licence::parse(expr) {
                Err(e) => report(Level::Deny, format!("{}: licence {e}", name_of(p))),
                Ok(licence) if !licence.satisfied_by(&policy.allow) => report(
                    Level::Deny,
                    format!(
                        "{}: licence {expr:?} is not allowed by deny.toml's [licenses] allow",
                        name_of(p)
                    ),
                ),
                Ok(_) => {}
            },
        }
    }

    // Duplicate versions, minus the accepted ones.
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for id in graph(meta, policy.multiple_versions_include_dev) {
        let p = packages[id.as_str()];
        versions
            .entry(text(p, "name"))
            .or_default()
            .insert(text(p, "version"));
    }
    for (name, version) in policy.skip.keys() {
        match versions.get(name.as_str()) {
            Some(found) if found.contains(version.as_str()) && found.len() > 1 => {}
            Some(found) if found.contains(version.as_str()) => report(
                Level::Deny,
                format!(
                    "deny.toml: [bans] skip {name}@{version} is no longer needed: it is the \
                     only version of {name}; remove the entry"
                ),
            ),
            _ => report(
                Level::Deny,
                format!(
                    "deny.toml: [bans] skip {name}@{version} matches no crate of the graph; \
                     remove or update the entry"
                ),
            ),
        }
    }
    for (name, found) in &versions {
        let left: Vec<&str> = found
            .iter()
            .copied()
            .filter(|v| !policy.skip.contains_key(&(name.to_string(), v.to_string())))
            .collect();
        if left.len() > 1 {
            report(
                policy.multiple_versions,
                format!(
                    "{name} is in the graph in versions {}: unify them, or add all but one to \
                     deny.toml's [bans] skip with the reason (`cargo tree -i {name}@VERSION` \
                     shows who wants each)",
                    left.join(", ")
                ),
            );
        }
    }

    // Sources.
    for id in graph(meta, true) {
        let p = packages[id.as_str()];
        let Some(source) = p["source"].as_str() else {
            if !members.contains(id.as_str()) {
                report(
                    Level::Deny,
                    format!(
                        "{}: a path dependency outside the workspace ({})",
                        name_of(p),
                        text(p, "manifest_path")
                    ),
                );
            }
            continue;
        };
        if let Some(url) = source
            .strip_prefix("registry+")
            .or_else(|| source.strip_prefix("sparse+"))
        {
            if !policy.allow_registry.iter().any(|allowed| allowed == url) {
                report(
                    policy.unknown_registry,
                    format!(
                        "{}: from the registry {url}, not an allowed one",
                        name_of(p)
                    ),
                );
            }
        } else if let Some(url) = source.strip_prefix("git+") {
            let repo = url.split(['?', '#']).next().unwrap_or(url);
            if !policy.allow_git.iter().any(|allowed| allowed == repo) {
                report(
                    policy.unknown_git,
                    format!(
                        "{}: from the git repository {repo}, not allowed",
                        name_of(p)
                    ),
                );
            }
        } else {
            report(
                Level::Deny,
                format!("{}: from an unknown kind of source {source}", name_of(p)),
            );
        }
    }

    // Wildcard requirements in the workspace's own manifests.
    for id in &members {
        let p = packages[id];
        let private = p["publish"].as_array().is_some_and(Vec::is_empty);
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            if text(dep, "req") != "*" {
                continue;
            }
            // As cargo-deny reads `allow-wildcard-paths`: path dependencies of private
            // crates, and path dev-dependencies of any (cargo drops those when packaging).
            let dev = dep["kind"].as_str() == Some("dev");
            if dep["path"].is_string() && (private || dev) && policy.allow_wildcard_paths {
                continue;
            }
            report(
                policy.wildcards,
                format!(
                    "{}: dependency {} has no version requirement (`*`)",
                    name_of(p),
                    text(dep, "name")
                ),
            );
        }
    }
    problems
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let path = xtask::workspace_root().join("deny.toml");
        let text = std::fs::read_to_string(&path).expect("deny.toml at the workspace root");
        Policy::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn workspace_metadata() -> &'static Json {
    static META: OnceLock<Json> = OnceLock::new();
    META.get_or_init(|| metadata(&policy().targets))
}

#[test]
fn the_workspace_follows_deny_toml() {
    let problems = problems(policy(), workspace_metadata());
    assert!(
        problems.is_empty(),
        "the dependencies break deny.toml's policy (docs/packaging.md):\n  {}",
        problems.join("\n  ")
    );
}

// The check must be able to fail: each test below breaks one rule in a copy of the real
// metadata or policy, and expects the matching problem.

/// The real metadata with the package named `name` changed by `change`.
fn with_package(name: &str, change: impl Fn(&mut Json)) -> Json {
    let mut meta = workspace_metadata().clone();
    let mut found = false;
    for p in meta["packages"].as_array_mut().expect("packages") {
        if p["name"] == name {
            change(p);
            found = true;
        }
    }
    assert!(found, "{name} is in the graph");
    meta
}

fn expect_problem(policy: &Policy, meta: &Json, needle: &str) {
    let problems = problems(policy, meta);
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem with {needle:?}, got {problems:#?}"
    );
}

#[test]
fn a_licence_outside_the_allow_list_is_refused() {
    let meta = with_package("serde_yaml", |p| p["license"] = "GPL-3.0-only".into());
    expect_problem(
        policy(),
        &meta,
        "serde_yaml 0.9.34+deprecated: licence \"GPL-3.0-only\"",
    );
    // Half of an AND is not enough.
    let meta = with_package("log", |p| p["license"] = "MIT AND LGPL-2.1-or-later".into());
    expect_problem(policy(), &meta, "is not allowed");
}

#[test]
fn a_crate_without_a_licence_expression_is_refused() {
    let meta = with_package("log", |p| p["license"] = Json::Null);
    expect_problem(policy(), &meta, "no SPDX licence expression");
}

#[test]
fn an_unlisted_duplicate_is_refused() {
    let mut policy = policy().clone();
    policy.skip.retain(|(name, _), _| name != "syn");
    expect_problem(
        &policy,
        workspace_metadata(),
        "syn is in the graph in versions",
    );
}

#[test]
fn a_stale_skip_is_refused() {
    let mut policy = policy().clone();
    policy.skip.insert(
        ("log".to_owned(), "0.4.0".to_owned()),
        "a version nobody uses".to_owned(),
    );
    expect_problem(
        &policy,
        workspace_metadata(),
        "skip log@0.4.0 matches no crate",
    );
}

#[test]
fn a_crate_from_git_or_another_registry_is_refused() {
    let meta = with_package("log", |p| {
        p["source"] = "git+https://example.org/log.git?rev=1#abc".into()
    });
    expect_problem(
        policy(),
        &meta,
        "from the git repository https://example.org/log.git",
    );
    let meta = with_package("log", |p| {
        p["source"] = "registry+https://example.org/index".into()
    });
    expect_problem(
        policy(),
        &meta,
        "from the registry https://example.org/index",
    );
}

#[test]
fn a_published_crate_with_a_bare_path_dependency_is_refused() {
    let meta = with_package("vduse-blk", |p| {
        for dep in p["dependencies"].as_array_mut().expect("dependencies") {
            if dep["name"] == "vduse" {
                dep["req"] = "*".into();
            }
        }
    });
    expect_problem(
        policy(),
        &meta,
        "vduse-blk 0.1.0: dependency vduse has no version",
    );
}

#[test]
fn unknown_keys_in_deny_toml_are_refused() {
    let text =
        std::fs::read_to_string(xtask::workspace_root().join("deny.toml")).expect("deny.toml");
    let text = text.replace("[bans]\n", "[bans]\nhighlight = \"all\"\n");
    let err = Policy::parse(&text).expect_err("an unknown key");
    assert!(err.contains("[bans] highlight"), "{err}");
}

#[test]
fn licence_expressions_parse_as_spdx_does() {
    let allow: BTreeSet<String> = ["MIT", "Apache-2.0"].map(str::to_owned).into();
    for (expr, ok) in [
        ("MIT", true),
        ("MIT/Apache-2.0", true),
        ("MIT OR GPL-2.0-only", true),
        ("MIT AND GPL-2.0-only", false),
        ("(MIT OR Apache-2.0) AND Unicode-3.0", false),
        ("(MIT OR Apache-2.0) AND (ISC OR MIT)", true),
        ("Apache-2.0 WITH LLVM-exception", false),
        ("Apache-2.0 WITH LLVM-exception OR MIT", true),
    ] {
        let licence = Licence::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(licence.satisfied_by(&allow), ok, "{expr}");
    }
    for bad in ["", "MIT OR", "(MIT", "MIT)", "AND MIT"] {
        assert!(Licence::parse(bad).is_err(), "{bad:?}");
    }
}
