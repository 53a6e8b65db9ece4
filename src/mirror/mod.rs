//! Mirroring another Hex repository, free of I/O: which packages and releases a filtered mirror
//! keeps ([`Only`], [`closure`]), and the state a mirror keeps between runs ([`State`]).
//!
//! What belongs here: the mirror's own rules and state, free of I/O, and [`upstream`], the
//! HTTP(S) client it fetches with. What must not: writes to a registry (the mirror's run is
//! [`crate::engine::mirror`], over a storage) or a command line.
//!
//! # Which releases a filtered mirror keeps
//!
//! - each `--only PKG[:REQUIREMENT]` selects the releases of PKG its requirement allows (every
//!   release without one);
//! - every dependency of a kept release, optional ones included, brings in the releases of its
//!   package that the dependency's requirement allows, and so on until nothing new comes in.
//!
//! Optional dependencies are kept because a project that also depends on one resolves it from
//! the same mirror; leaving them out would leave records that name packages the mirror lacks.
//! A dependency on another repository (its record names one) is not followed, and reported; so
//! is one whose requirement cannot be read, whose package upstream lacks, or that no version
//! satisfies. A requirement that cannot be read keeps every release of its package.
//! Requirements match as [`crate::format::requirement`] says (as Elixir's `Version.match?/2`, pre-releases
//! included), so that
//! the mirror holds at least every release a client could pick.

pub mod lock;
pub mod upstream;

use std::collections::{BTreeMap, BTreeSet};

use crate::format::encoding;
use crate::format::package_name;
use crate::format::registry::Release;
use crate::format::requirement::{Requirement, RequirementError};

/// One `--only` selection: a package, and which of its releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Only {
    /// The package.
    pub package: String,
    /// Its releases to keep; every release when `None`.
    pub requirement: Option<Requirement>,
    /// The selection as written, for messages.
    pub text: String,
}

/// A selection that cannot be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OnlyError {
    /// Not a package name.
    #[error(
        "`{0}` is not a package name (lowercase letters, digits and `_`, starting with a letter); write PKG or PKG:REQUIREMENT, e.g. `plug:~> 1.14`"
    )]
    Name(String),
    /// The requirement after `:` cannot be read.
    #[error("in `{text}`: {source}")]
    Requirement {
        /// The selection as written.
        text: String,
        /// What is wrong with the requirement.
        source: RequirementError,
    },
}

impl Only {
    /// Reads `PKG` or `PKG:REQUIREMENT` (e.g. `plug:~> 1.14`).
    pub fn parse(text: &str) -> Result<Only, OnlyError> {
        let text = text.trim();
        let (package, requirement) = match text.split_once(':') {
            Some((package, requirement)) => (package.trim(), Some(requirement)),
            None => (text, None),
        };
        if !package_name::is_valid(package) {
            return Err(OnlyError::Name(package.to_string()));
        }
        let requirement = requirement
            .map(Requirement::parse)
            .transpose()
            .map_err(|source| OnlyError::Requirement {
                text: text.to_string(),
                source,
            })?;
        Ok(Only {
            package: package.to_string(),
            requirement,
            text: text.to_string(),
        })
    }

    /// Reads an `--only-file`: one selection a line; blank lines and `#` comments ignored.
    /// Fails with the 1-based line number of the first bad line.
    pub fn parse_file(text: &str) -> Result<Vec<Only>, (usize, OnlyError)> {
        text.lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line.split('#').next().unwrap_or_default().trim()))
            .filter(|(_, line)| !line.is_empty())
            .map(|(n, line)| Only::parse(line).map_err(|e| (n, e)))
            .collect()
    }
}

/// One step of the closure: what is kept of the packages known so far, and what must be
/// fetched to go on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    /// Kept releases: package name to the indexes of its kept releases.
    pub kept: BTreeMap<String, BTreeSet<usize>>,
    /// Packages upstream lists that a kept release needs and that are not known yet: fetch
    /// them and take another step.
    pub missing: BTreeSet<String>,
    /// Selections that no release satisfies (or whose package upstream lacks).
    pub unmatched: Vec<String>,
    /// Dependencies not followed, one line each (another repository, not upstream, an
    /// unreadable requirement, no version satisfying it).
    pub notes: Vec<String>,
}

/// The releases a filtered mirror keeps (see the module's rule), given the selections, the
/// packages fetched so far (`known`, each with its releases), the names upstream lists, and
/// upstream's repository name.
pub fn closure(
    only: &[Only],
    known: &BTreeMap<String, Vec<Release>>,
    listed: &BTreeSet<String>,
    repository: &str,
) -> Step {
    let mut step = Step::default();
    // (package, requirement or every release), still to apply.
    let mut queue: Vec<(String, Option<Requirement>, String)> = Vec::new();
    for o in only {
        if !listed.contains(&o.package) {
            step.unmatched
                .push(format!("{}: upstream has no package {}", o.text, o.package));
            continue;
        }
        match known.get(&o.package) {
            None => {
                step.missing.insert(o.package.clone());
            }
            Some(releases) => {
                let matched = select(releases, o.requirement.as_ref());
                if matched.is_empty() {
                    let have: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
                    step.unmatched.push(format!(
                        "{}: no release of {} satisfies it (upstream has {})",
                        o.text,
                        o.package,
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ));
                }
                queue.push((o.package.clone(), o.requirement.clone(), o.text.clone()));
            }
        }
    }
    while let Some((package, requirement, _why)) = queue.pop() {
        let Some(releases) = known.get(&package) else {
            continue;
        };
        let matched = select(releases, requirement.as_ref());
        let kept = step.kept.entry(package.clone()).or_default();
        let new: Vec<usize> = matched.into_iter().filter(|i| kept.insert(*i)).collect();
        for i in new {
            let Some(release) = releases.get(i) else {
                continue;
            };
            for dep in &release.dependencies {
                let from = format!("{package} {} depends on {}", release.version, dep.package);
                if dep.repository.as_deref().is_some_and(|r| r != repository) {
                    step.notes.push(format!(
                        "{from} from repository {}, which is not mirrored",
                        dep.repository.as_deref().unwrap_or_default()
                    ));
                    continue;
                }
                if !listed.contains(&dep.package) {
                    step.notes
                        .push(format!("{from}, which upstream does not list"));
                    continue;
                }
                let requirement = match Requirement::parse(&dep.requirement) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        step.notes
                            .push(format!("{from}: {e}; every release of it is kept"));
                        None
                    }
                };
                match known.get(&dep.package) {
                    None => {
                        step.missing.insert(dep.package.clone());
                    }
                    Some(dep_releases) => {
                        if select(dep_releases, requirement.as_ref()).is_empty() {
                            step.notes.push(format!(
                                "{from} {}, which no release satisfies",
                                dep.requirement
                            ));
                        }
                        queue.push((dep.package.clone(), requirement, from));
                    }
                }
            }
        }
    }
    step.kept.retain(|_, kept| !kept.is_empty());
    step.notes.sort();
    step.notes.dedup();
    step
}

/// The indexes of the releases `requirement` allows (every one for `None`).
fn select(releases: &[Release], requirement: Option<&Requirement>) -> Vec<usize> {
    releases
        .iter()
        .enumerate()
        .filter(|(_, r)| requirement.is_none_or(|req| req.matches(&r.parsed)))
        .map(|(i, _)| i)
        .collect()
}

/// Where a mirror keeps its state, inside the mirror (a dotfile, so never served nor listed).
pub const STATE_PATH: &str = ".hexreg-mirror/state";

/// Where a filtered mirror keeps upstream's verified files (its own are re-signed), so that an
/// upstream's `304 Not Modified` can be answered from them.
pub const UPSTREAM_COPY_DIR: &str = ".hexreg-mirror/upstream";

/// What a mirror remembers between runs: upstream's ETag of each registry file fetched, with
/// the SHA-256 of the bytes it was sent, and the tarballs already checked (by their storage
/// version token), so that a run fetches and reads only what changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    /// The upstream it is of (URL without credentials, repository, mode): a state of another
    /// upstream is ignored.
    pub origin: String,
    /// Registry file path (`names`, `packages/foo`) to its ETag and the SHA-256 of its body.
    pub resources: BTreeMap<String, (String, [u8; 32])>,
    /// Tarball path to the storage version token it had when its SHA-256 was checked, and
    /// that SHA-256.
    pub tarballs: BTreeMap<String, (Vec<u8>, [u8; 32])>,
}

const STATE_HEADER: &str = "hexreg-mirror-state 1";

impl State {
    /// An empty state for `origin`.
    pub fn new(origin: &str) -> State {
        State {
            origin: origin.to_string(),
            ..State::default()
        }
    }

    /// Reads a state file; `None` when it is not one (then the mirror starts afresh: a state
    /// only saves work).
    pub fn parse(bytes: &[u8]) -> Option<State> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != STATE_HEADER {
            return None;
        }
        let origin = lines.next()?.strip_prefix("origin\t")?;
        let mut state = State::new(origin);
        for line in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["resource", path, etag, sha] => {
                    state
                        .resources
                        .insert(path.to_string(), (etag.to_string(), unhex32(sha)?));
                }
                ["tarball", path, version, sha] => {
                    state
                        .tarballs
                        .insert(path.to_string(), (unhex(version)?, unhex32(sha)?));
                }
                _ => return None,
            }
        }
        Some(state)
    }

    /// The state file's bytes. ETags and paths holding a tab or line break are left out (no
    /// server sends such ETags; the file fetched again is all that costs).
    pub fn encode(&self) -> Vec<u8> {
        let clean = |s: &str| !s.contains(['\t', '\n', '\r']);
        let mut out = format!(
            "{STATE_HEADER}\norigin\t{}\n",
            self.origin.replace(['\t', '\n', '\r'], " ")
        );
        for (path, (etag, sha)) in &self.resources {
            if clean(path) && clean(etag) && !etag.is_empty() {
                out.push_str(&format!("resource\t{path}\t{etag}\t{}\n", hex(sha)));
            }
        }
        for (path, (version, sha)) in &self.tarballs {
            if clean(path) {
                out.push_str(&format!(
                    "tarball\t{path}\t{}\t{}\n",
                    hex(version),
                    hex(sha)
                ));
            }
        }
        out.into_bytes()
    }
}

fn hex(bytes: &[u8]) -> String {
    encoding::hex_lower(bytes)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    encoding::parse_hex(text)
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(unhex(text)?.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::proto::package::Dependency;
    use crate::format::version;

    fn release(v: &str, deps: &[(&str, &str, bool)]) -> Release {
        Release {
            parsed: version::parse(v).unwrap(),
            version: v.to_string(),
            inner_checksum: [0; 32],
            outer_checksum: [0; 32],
            dependencies: deps
                .iter()
                .map(|(p, r, optional)| Dependency {
                    package: p.to_string(),
                    requirement: r.to_string(),
                    optional: Some(*optional),
                    app: None,
                    repository: None,
                })
                .collect(),
            retired: None,
            published_at: None,
            advisory_indexes: Vec::new(),
        }
    }

    fn run(only: &[&str], known: &BTreeMap<String, Vec<Release>>) -> Step {
        let only: Vec<Only> = only.iter().map(|o| Only::parse(o).unwrap()).collect();
        let listed = known
            .keys()
            .cloned()
            .chain(["absent_dep".to_string()])
            .collect();
        closure(&only, known, &listed, "hexpm")
    }

    fn corpus() -> BTreeMap<String, Vec<Release>> {
        let mut known = BTreeMap::new();
        known.insert(
            "app".to_string(),
            vec![
                release("1.0.0", &[("lib", "~> 1.0", false)]),
                release(
                    "2.0.0",
                    &[("lib", "~> 2.0", false), ("opt", ">= 0.0.0", true)],
                ),
            ],
        );
        known.insert(
            "lib".to_string(),
            vec![
                release("1.0.0", &[]),
                release("1.1.0", &[]),
                release("2.0.0", &[("base", "~> 0.1", false)]),
            ],
        );
        known.insert("opt".to_string(), vec![release("0.1.0", &[])]);
        known.insert(
            "base".to_string(),
            vec![release("0.1.0", &[]), release("0.2.0", &[])],
        );
        known.insert("other".to_string(), vec![release("1.0.0", &[])]);
        known
    }

    #[test]
    fn keeps_what_some_requirement_allows_optional_included() {
        let step = run(&["app:~> 2.0"], &corpus());
        let kept: Vec<(&str, Vec<usize>)> = step
            .kept
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().copied().collect()))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("app", vec![1]),
                ("base", vec![0, 1]),
                ("lib", vec![2]),
                ("opt", vec![0])
            ]
        );
        assert!(
            step.missing.is_empty() && step.unmatched.is_empty(),
            "{step:?}"
        );
    }

    #[test]
    fn every_release_without_a_requirement() {
        let step = run(&["lib"], &corpus());
        assert_eq!(step.kept.get("lib").map(|k| k.len()), Some(3));
        assert!(step.kept.contains_key("base"));
        assert!(!step.kept.contains_key("app"));
    }

    #[test]
    fn unknown_packages_are_asked_for_and_unmatched_selections_reported() {
        let mut known = corpus();
        known.remove("lib");
        let mut listed: BTreeSet<String> = known.keys().cloned().collect();
        listed.insert("lib".into());
        let only = vec![
            Only::parse("app:~> 1.0").unwrap(),
            Only::parse("nope").unwrap(),
            Only::parse("other:~> 5.0").unwrap(),
        ];
        let step = closure(&only, &known, &listed, "hexpm");
        assert_eq!(step.missing, BTreeSet::from(["lib".to_string()]));
        assert_eq!(step.unmatched.len(), 2, "{:?}", step.unmatched);
    }

    #[test]
    fn dependencies_outside_are_noted_not_followed() {
        let mut known = corpus();
        let mut r = release(
            "1.0.0",
            &[
                ("unlisted", "~> 1.0", false),
                ("elsewhere", "~> 1.0", false),
            ],
        );
        if let Some(d) = r.dependencies.get_mut(1) {
            d.repository = Some("acme".into());
        }
        known.insert("odd".into(), vec![r]);
        let step = run(&["odd"], &known);
        assert_eq!(step.kept.len(), 1);
        assert_eq!(step.notes.len(), 2, "{:?}", step.notes);
        assert!(step.missing.is_empty(), "{:?}", step.missing);
    }

    #[test]
    fn selections_parse() {
        let o = Only::parse("plug:~> 1.14").unwrap();
        assert_eq!(o.package, "plug");
        assert!(o.requirement.is_some());
        assert!(Only::parse("Plug").is_err());
        assert!(Only::parse("plug:~>").is_err());
        let file = Only::parse_file("# pinned\nplug:~> 1.14\n\njason # any\n").unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(Only::parse_file("ok\nBad!").unwrap_err().0, 2);
    }

    #[test]
    fn state_round_trips_and_garbage_is_none() {
        let mut state = State::new("http://h/ hexpm full");
        state
            .resources
            .insert("names".into(), ("\"abc\"".into(), [7; 32]));
        state
            .tarballs
            .insert("tarballs/a-1.0.0.tar".into(), (vec![1, 2, 255], [9; 32]));
        assert_eq!(State::parse(&state.encode()), Some(state));
        assert_eq!(State::parse(b"junk"), None);
        assert_eq!(
            State::parse(b"hexreg-mirror-state 1\norigin\tx\nresource\tnames\tx\tzz\n"),
            None
        );
    }
}
