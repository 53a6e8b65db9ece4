//! Verify: checks a registry as a client would see it, and more: every resource gunzips,
//! verifies and belongs to the repository; `names`, `versions` and `packages/` agree; every
//! release's tarball is there with its recorded checksum; every tarball is listed. What a
//! client would trip on is a problem; what a stopped run leaves and the next run repairs (the
//! index one change behind `packages/`, a tarball not yet recorded) is a note. Reads only;
//! takes no lock.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::Error;
use crate::format::proto;
use crate::format::registry::{self, ResourceError};
use crate::format::resource_path::{PACKAGES_DIR, ResourcePath, TARBALLS_DIR};
use crate::format::signing::PublicKey;
use crate::format::tarball;
use crate::storage::Storage;

/// What [`verify`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Every problem, as `PATH: what`: what a client would trip on (a file that does not open
    /// or verify, an indexed package without its file, a listed version its file lacks, a
    /// release without its tarball or with another checksum).
    pub problems: Vec<String>,
    /// What a run stopped between two writes leaves, harmless to clients and repaired by the
    /// next change or build (the index one change behind `packages/`, a tarball written before
    /// its record), as `PATH: what`.
    pub notes: Vec<String>,
    /// Packages whose `packages/NAME` file is sound.
    pub packages: usize,
    /// Their releases.
    pub releases: usize,
}

/// Why a note is harmless, said after each.
const LAG: &str = "harmless to clients: a run stopped between two writes leaves this, and the next build or change repairs it";

impl Verification {
    fn add(&mut self, path: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("{path}: {what}"));
    }

    fn note(&mut self, path: &str, what: impl std::fmt::Display) {
        self.notes.push(format!("{path}: {what} ({LAG})"));
    }

    /// Whether no problem was found.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every resource, signature and tarball of the registry of repository `repo` in
/// `storage`, signed by `key`. Fails only when the registry cannot be listed; every problem
/// with its content is in the result.
pub fn verify(storage: &dyn Storage, repo: &str, key: &PublicKey) -> Result<Verification, Error> {
    let mut found = Verification::default();
    let shown = |path: &str| tarball::one_line(&storage.display(path));
    let names = open(storage, &ResourcePath::Names, key, &mut found).and_then(|p| {
        check(
            registry::decode_names(&p, repo),
            &shown("names"),
            &mut found,
        )
    });
    let versions = open(storage, &ResourcePath::Versions, key, &mut found).and_then(|p| {
        check(
            registry::decode_versions(&p, repo),
            &shown("versions"),
            &mut found,
        )
    });

    // packages/*, read and checked in parallel.
    let files: Vec<String> = storage
        .list(PACKAGES_DIR)?
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .filter(|f| !f.starts_with('.'))
        .collect();
    let packages: Vec<(String, Option<proto::package::Package>, Verification)> = files
        .par_iter()
        .map(|name| {
            let mut problems = Verification::default();
            let path = ResourcePath::package(name).key();
            let shown = shown(&path);
            let package = match storage.read(&path) {
                Ok(Some(object)) => registry::open_package(&object.bytes, key, repo, name)
                    .map_err(|e| problems.add(&shown, e))
                    .ok(),
                Ok(None) => {
                    problems.add(&shown, "is missing");
                    None
                }
                Err(e) => {
                    problems.add(&shown, e);
                    None
                }
            };
            (name.clone(), package, problems)
        })
        .collect();
    let mut by_name: BTreeMap<String, proto::package::Package> = BTreeMap::new();
    // Packages whose file is unusable: their tarballs are not reported as unlisted too.
    let mut unreadable: BTreeSet<String> = BTreeSet::new();
    for (name, package, mut problems) in packages {
        found.problems.append(&mut problems.problems);
        match package {
            Some(package) => {
                by_name.insert(name, package);
            }
            None => {
                unreadable.insert(name);
            }
        }
    }

    // The indexes against each other and against packages/.
    if let (Some(names), Some(versions)) = (&names, &versions) {
        let listed: Vec<&str> = names.packages.iter().map(|p| p.name.as_str()).collect();
        let versioned: Vec<&str> = versions.packages.iter().map(|p| p.name.as_str()).collect();
        if listed != versioned {
            // A run stopped between writing names and versions leaves one ahead of the other
            // (a publish: names lists a new package; a remove: versions still lists it); with
            // the package's file sound, clients do not trip on it.
            let only_one: Vec<&str> = listed
                .iter()
                .filter(|n| !versioned.contains(n))
                .chain(versioned.iter().filter(|n| !listed.contains(n)))
                .copied()
                .collect();
            if only_one.iter().all(|n| by_name.contains_key(*n)) {
                found.note(
                    &shown("versions"),
                    format!(
                        "does not list the same packages as names (only one of them lists {})",
                        only_one.join(", ")
                    ),
                );
            } else {
                found.add(
                    &shown("versions"),
                    "does not list the same packages as names",
                );
            }
        }
        for p in &versions.packages {
            let path = ResourcePath::package(&p.name).key();
            match by_name.get(&p.name) {
                None if !files.contains(&p.name) => {
                    found.add(&shown(&path), "is missing, but versions lists the package")
                }
                None => {}
                Some(package) => {
                    let have: Vec<&str> = package
                        .releases
                        .iter()
                        .map(|r| r.version.as_str())
                        .collect();
                    if have != p.versions.iter().map(String::as_str).collect::<Vec<_>>() {
                        let what = format!(
                            "lists {} versions [{}] but {} has [{}]",
                            p.name,
                            p.versions.join(", "),
                            path,
                            have.join(", ")
                        );
                        // A version the index lists but the file lacks is one a client would
                        // look for in vain; the file ahead of the index is a stopped run.
                        if p.versions.iter().all(|v| have.contains(&v.as_str())) {
                            found.note(&shown("versions"), what);
                        } else {
                            found.add(&shown("versions"), what);
                        }
                    }
                    let retired: Vec<i32> = package
                        .releases
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.retired.is_some())
                        .map(|(i, _)| i as i32)
                        .collect();
                    let with_advisories: Vec<i32> = package
                        .releases
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| !r.advisory_indexes.is_empty())
                        .map(|(i, _)| i as i32)
                        .collect();
                    if with_advisories != p.with_advisories {
                        found.note(
                            &shown("versions"),
                            format!("with_advisories indexes of {} do not match {path}", p.name),
                        );
                    }
                    if retired != p.retired {
                        found.note(
                            &shown("versions"),
                            format!("retired indexes of {} do not match {path}", p.name),
                        );
                    }
                }
            }
        }
        for name in by_name.keys() {
            if !listed.contains(&name.as_str()) {
                found.note(
                    &shown(&ResourcePath::package(name).key()),
                    "is not listed in names",
                );
            }
        }
    }

    // Advisory indexes point at advisories the package has.
    for (name, package) in &by_name {
        for release in &package.releases {
            if let Some(i) = release
                .advisory_indexes
                .iter()
                .find(|&&i| i as usize >= package.advisories.len())
            {
                found.add(
                    &shown(&ResourcePath::package(name).key()),
                    format!(
                        "release {} has advisory index {i}, but the package has {} advisories (re-add or remove the advisory with `hexreg advisory`)",
                        release.version,
                        package.advisories.len()
                    ),
                );
            }
        }
    }

    // Every policy opens, verifies and names itself and the repository.
    for (name, policy) in super::policies::read_policies(storage, repo, key)? {
        let path = shown(&ResourcePath::Policy(name.clone()).key());
        if !crate::format::policy::is_valid_name(&name) {
            found.add(
                &path,
                format!(
                    "`{}` is not a policy name Hex accepts ({}): remove the file",
                    tarball::one_line(&name),
                    crate::format::policy::NAME_RULE
                ),
            );
        } else if let Err(e) = policy {
            found.add(&path, e);
        }
    }

    // Every release's tarball, with its outer checksum.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let mut jobs = Vec::new();
    for (name, package) in &by_name {
        for release in &package.releases {
            let path = ResourcePath::tarball(name, &release.version);
            if let ResourcePath::Tarball(file) = &path {
                expected.insert(file.clone());
            }
            jobs.push((path.key(), release.outer_checksum.clone()));
        }
    }
    let tarball_problems: Vec<Option<String>> = jobs
        .par_iter()
        .map(|(path, checksum)| {
            let shown = shown(path);
            let Some(checksum) = checksum else {
                return Some(format!(
                    "{shown}: its release has no outer_checksum (rebar3 refuses such a package)"
                ));
            };
            match storage.read(path) {
                Ok(Some(object)) => {
                    let actual: [u8; 32] = Sha256::digest(&object.bytes).into();
                    (actual.as_slice() != checksum.as_slice()).then(|| {
                        format!(
                            "{shown}: sha256 is {}, but the registry records {}",
                            crate::format::encoding::hex_upper(&actual),
                            crate::format::encoding::hex_upper(checksum)
                        )
                    })
                }
                Ok(None) => Some(format!(
                    "{shown}: is missing, but the registry lists this release"
                )),
                Err(e) => Some(format!("{shown}: {e}")),
            }
        })
        .collect();
    found
        .problems
        .extend(tarball_problems.into_iter().flatten());

    // Every tarball is listed.
    let present = storage.list(TARBALLS_DIR)?.unwrap_or_default();
    for file in present
        .iter()
        .map(|e| &e.name)
        .filter(|f| !f.starts_with('.') && f.ends_with(".tar"))
    {
        let package = file.split('-').next().unwrap_or_default();
        if !expected.contains(file) && !unreadable.contains(package) {
            found.note(
                &shown(&ResourcePath::Tarball(file.clone()).key()),
                "is not listed in the registry: `hexreg build` lists it, or remove it",
            );
        }
    }
    found.packages = by_name.len();
    found.releases = jobs.len();
    Ok(found)
}

/// Reads, gunzips and verifies a resource; records a problem and returns `None` on failure.
fn open(
    storage: &dyn Storage,
    path: &ResourcePath,
    key: &PublicKey,
    found: &mut Verification,
) -> Option<Vec<u8>> {
    let key_path = path.key();
    let shown = tarball::one_line(&storage.display(&key_path));
    let bytes = match storage.read(&key_path) {
        Ok(Some(object)) => object.bytes,
        Ok(None) => {
            found.add(&shown, "is missing");
            return None;
        }
        Err(e) => {
            found.add(&shown, e);
            return None;
        }
    };
    let opened = match registry::open(&bytes) {
        Ok(opened) => opened,
        Err(e) => {
            found.add(&shown, e);
            return None;
        }
    };
    if let Err(e) = opened.verify(key) {
        found.add(&shown, e);
        return None;
    }
    Some(opened.payload)
}

fn check<T>(decoded: Result<T, ResourceError>, shown: &str, found: &mut Verification) -> Option<T> {
    decoded.map_err(|e| found.add(shown, e)).ok()
}
