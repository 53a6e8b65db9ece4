//! `hexreg verify`: checks a registry directory as a client would see it, and more: every
//! resource gunzips, verifies and belongs to the repository; `names`, `versions` and
//! `packages/` agree; every release's tarball is there with its recorded checksum; every
//! tarball is listed. Reads only; takes no lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use hexreg::proto;
use hexreg::registry;
use hexreg::signing::PublicKey;
use hexreg::tarball;

use crate::store::Store;

pub const AFTER_HELP: &str = "Example:
  hexreg verify public --name=acme
  hexreg verify public --name=acme --public-key=acme_public.pem

Prints every problem with its path and exits 1 if there is any; otherwise prints a one-line
summary and exits 0.";

/// `hexreg verify` arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The registry directory.
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: String,
    /// Repository name clients use.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Public key (PEM, PKCS#1 or SPKI) [default: PUBLIC_DIR/public_key].
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

/// Problems found, each `PATH: what`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: &str, what: impl std::fmt::Display) {
        self.0.push(format!("{path}: {what}"));
    }
}

/// Outcome of `verify`: `Ok(true)` when the registry is sound.
pub fn run(args: &VerifyArgs) -> Result<bool> {
    let store = Store::new(&args.public_dir);
    if !store.root().is_dir() {
        bail!("{} is not a directory", args.public_dir);
    }
    let key_path = args
        .public_key
        .clone()
        .unwrap_or_else(|| store.path("public_key"));
    let key_text = fs::read(&key_path).with_context(|| {
        format!(
            "cannot read public key {} (give one with --public-key)",
            key_path.display()
        )
    })?;
    let key = PublicKey::from_pem(&key_text)
        .map_err(|e| anyhow::anyhow!("public key {} {e}", key_path.display()))?;

    let mut problems = Problems::default();
    let repo = args.name.as_str();
    let names = open(&store, "names", &key, &mut problems).and_then(|p| {
        check(
            registry::decode_names(&p, repo),
            &store,
            "names",
            &mut problems,
        )
    });
    let versions = open(&store, "versions", &key, &mut problems).and_then(|p| {
        check(
            registry::decode_versions(&p, repo),
            &store,
            "versions",
            &mut problems,
        )
    });

    // packages/*, read and checked in parallel.
    let mut files: Vec<String> = crate::store::list_dir(&store.packages_dir())?;
    files.retain(|f| !f.starts_with('.'));
    let packages: Vec<(String, Option<proto::package::Package>, Problems)> = files
        .par_iter()
        .map(|name| {
            let mut problems = Problems::default();
            let rel = format!("packages/{name}");
            let package = open(&store, &rel, &key, &mut problems).and_then(|p| {
                check(
                    registry::decode_package(&p, repo, name),
                    &store,
                    &rel,
                    &mut problems,
                )
            });
            (name.clone(), package, problems)
        })
        .collect();
    let mut by_name: BTreeMap<String, proto::package::Package> = BTreeMap::new();
    // Packages whose file is unusable: their tarballs are not reported as unlisted too.
    let mut unreadable: BTreeSet<String> = BTreeSet::new();
    for (name, package, mut found) in packages {
        problems.0.append(&mut found.0);
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
            problems.add(
                &store.shown("versions"),
                "does not list the same packages as names",
            );
        }
        for p in &versions.packages {
            let rel = format!("packages/{}", p.name);
            match by_name.get(&p.name) {
                None if !files.contains(&p.name) => problems.add(
                    &store.shown(&rel),
                    "is missing, but versions lists the package",
                ),
                None => {}
                Some(package) => {
                    let have: Vec<&str> = package
                        .releases
                        .iter()
                        .map(|r| r.version.as_str())
                        .collect();
                    if have != p.versions.iter().map(String::as_str).collect::<Vec<_>>() {
                        problems.add(
                            &store.shown("versions"),
                            format!(
                                "lists {} versions [{}] but {} has [{}]",
                                p.name,
                                p.versions.join(", "),
                                rel,
                                have.join(", ")
                            ),
                        );
                    }
                    let retired: Vec<i32> = package
                        .releases
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.retired.is_some())
                        .map(|(i, _)| i as i32)
                        .collect();
                    if retired != p.retired {
                        problems.add(
                            &store.shown("versions"),
                            format!("retired indexes of {} do not match {rel}", p.name),
                        );
                    }
                }
            }
        }
        for name in by_name.keys() {
            if !listed.contains(&name.as_str()) {
                problems.add(
                    &store.shown(&format!("packages/{name}")),
                    "is not listed in names",
                );
            }
        }
    }

    // Every release's tarball, with its outer checksum.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let mut jobs = Vec::new();
    for (name, package) in &by_name {
        for release in &package.releases {
            let file = format!("{name}-{}.tar", release.version);
            expected.insert(file.clone());
            jobs.push((file, release.outer_checksum.clone()));
        }
    }
    let tarball_problems: Vec<Option<String>> = jobs
        .par_iter()
        .map(|(file, checksum)| {
            let rel = format!("tarballs/{file}");
            let path = store.path(&rel);
            let shown = store.shown(&rel);
            let Some(checksum) = checksum else {
                return Some(format!(
                    "{shown}: its release has no outer_checksum (rebar3 refuses such a package)"
                ));
            };
            match sha256_file(&path) {
                Ok(actual) if actual.as_slice() == checksum.as_slice() => None,
                Ok(actual) => Some(format!(
                    "{shown}: sha256 is {}, but the registry records {}",
                    tarball::hex_upper(&actual),
                    tarball::hex_upper(checksum)
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                    "{shown}: is missing, but the registry lists this release"
                )),
                Err(e) => Some(format!("{shown}: cannot read: {e}")),
            }
        })
        .collect();
    problems.0.extend(tarball_problems.into_iter().flatten());

    // Every tarball is listed.
    let on_disk = crate::store::list_dir(&store.tarballs_dir())?;
    for file in on_disk
        .iter()
        .filter(|f| !f.starts_with('.') && f.ends_with(".tar"))
    {
        let package = file.split('-').next().unwrap_or_default();
        if !expected.contains(file) && !unreadable.contains(package) {
            problems.add(
                &store.shown(&format!("tarballs/{file}")),
                "is not listed in the registry (run `hexreg build`, or remove it)",
            );
        }
    }

    if problems.0.is_empty() {
        println!(
            "ok: {} packages, {} releases, every tarball present and matching, signed by {}",
            by_name.len(),
            jobs.len(),
            key_path.display()
        );
        return Ok(true);
    }
    for p in &problems.0 {
        println!("{p}");
    }
    eprintln!(
        "error: {} problem{} in {}",
        problems.0.len(),
        if problems.0.len() == 1 { "" } else { "s" },
        args.public_dir
    );
    Ok(false)
}

/// Reads, gunzips and verifies a resource; records a problem and returns `None` on failure.
fn open(store: &Store, rel: &str, key: &PublicKey, problems: &mut Problems) -> Option<Vec<u8>> {
    let shown = store.shown(rel);
    let bytes = match fs::read(store.path(rel)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.add(&shown, "is missing");
            return None;
        }
        Err(e) => {
            problems.add(&shown, format!("cannot read: {e}"));
            return None;
        }
    };
    let opened = match registry::open(&bytes) {
        Ok(opened) => opened,
        Err(e) => {
            problems.add(&shown, e);
            return None;
        }
    };
    if let Err(e) = opened.verify(key) {
        problems.add(&shown, e);
        return None;
    }
    Some(opened.payload)
}

fn check<T>(
    decoded: Result<T, registry::ResourceError>,
    store: &Store,
    rel: &str,
    problems: &mut Problems,
) -> Option<T> {
    decoded.map_err(|e| problems.add(&store.shown(rel), e)).ok()
}

fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
