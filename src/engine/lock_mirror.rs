//! `hexreg mirror --only-lock`: copies exactly the releases lock files pin
//! ([`crate::mirror::lock`]) from an [`Upstream`], with the upstream's signed registry files
//! byte for byte, so that the result is what the caching proxy (`hexreg serve --upstream`)
//! keeps: a cache to warm before going offline, or a registry clients read with the
//! upstream's public key.
//!
//! Every `packages/NAME` is verified (signature, repository, name); every pin must be a
//! release it records, with the checksums the lock file records (outer, else inner); every
//! tarball's SHA-256 must equal the signed outer checksum. Anything the upstream lacks is
//! named, all at once, before anything is written. Writes go tarballs first, then
//! `packages/*`, then `names`, `versions` and `public_key`, each one conditional on the file
//! read (create-only, or replace-if-unchanged), so a proxy sharing the storage is never
//! overwritten blindly.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::mirror::{FetchError, MAX_RESOURCE_BODY, Upstream, UpstreamResponse};
use crate::format::encoding::hex_lower;
use crate::format::proto::package::Package;
use crate::format::registry::{self, ResourceError};
use crate::format::resource_path::ResourcePath;
use crate::format::signing::PublicKey;
use crate::format::tarball::MAX_TARBALL_SIZE;
use crate::mirror::lock::Pin;
use crate::storage::{Condition, Lock, Storage, StorageError};

/// What a run is given besides the pins.
pub struct LockMirrorOptions {
    /// The upstream's repository name, which its payloads must hold (`hexpm`).
    pub repository: String,
    /// The upstream's public key.
    pub key: PublicKey,
    /// The key as PEM text, written as `public_key`.
    pub key_pem: String,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct LockReport {
    /// The releases pinned (after dropping duplicates and other repositories).
    pub pinned: usize,
    /// Files written, by path.
    pub written: Vec<String>,
    /// Pins of another repository than the upstream's, as `NAME VERSION (REPO)`: not copied.
    pub other_repositories: Vec<String>,
}

/// Why a run stopped; nothing is written before every pin is found and checked.
#[derive(Debug, thiserror::Error)]
pub enum LockMirrorError {
    /// A fetch failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A registry file does not open, verify or belong.
    #[error("refused {url}: it {source}; nothing was written")]
    Resource {
        /// The URL.
        url: String,
        /// What is wrong with the file.
        source: ResourceError,
    },
    /// Lock entries the upstream lacks.
    #[error("the upstream lacks what the lock files pin: {}; nothing was written", .0.join("; "))]
    Missing(Vec<String>),
    /// A lock entry's checksum is not the one the upstream's signed registry records.
    #[error(
        "{name} {version}: the lock file records the {which} checksum {lock}, but the upstream's signed packages/{name} records {registry}: refused, nothing was written (the lock file pins another tarball than the upstream serves)"
    )]
    LockChecksum {
        /// The package.
        name: String,
        /// The version.
        version: String,
        /// `outer` or `inner`.
        which: &'static str,
        /// What the lock records (hex).
        lock: String,
        /// What the registry records (hex).
        registry: String,
    },
    /// A tarball is not the one the signed registry records.
    #[error(
        "{url}: sha256 is {actual}, but the upstream's signed registry records {expected}: refused (the upstream, or something between it and here, serves an altered tarball)"
    )]
    Checksum {
        /// The URL.
        url: String,
        /// What the registry records.
        expected: String,
        /// What came.
        actual: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn body(
    upstream: &dyn Upstream,
    path: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, LockMirrorError> {
    match upstream.get(path, None, limit) {
        Ok(UpstreamResponse::Body { bytes, .. }) => Ok(Some(bytes)),
        Ok(UpstreamResponse::NotModified) => Err(FetchError::UnexpectedNotModified {
            url: upstream.url(path),
        }
        .into()),
        Err(FetchError::Status { status: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `bytes` at `path` unless the file already holds them; `true` when written.
fn put(storage: &dyn Storage, path: &str, bytes: &[u8]) -> Result<bool, StorageError> {
    let existing = storage.read(path)?;
    if existing.as_ref().is_some_and(|o| o.bytes == bytes) {
        return Ok(false);
    }
    storage.write(
        path,
        bytes,
        Condition::after(existing.as_ref().map(|o| &o.version)),
    )?;
    Ok(true)
}

/// Copies the releases `pins` name from `upstream` into `storage` (whose lock `_lock` is held).
pub fn mirror_locked(
    storage: &dyn Storage,
    _lock: Lock,
    upstream: &dyn Upstream,
    options: &LockMirrorOptions,
    pins: &[Pin],
) -> Result<LockReport, LockMirrorError> {
    let mut report = LockReport::default();
    let mut wanted: BTreeMap<String, BTreeMap<String, &Pin>> = BTreeMap::new();
    for pin in pins {
        match &pin.repo {
            Some(repo) if *repo != options.repository => report
                .other_repositories
                .push(format!("{} {} ({repo})", pin.name, pin.version)),
            _ => {
                wanted
                    .entry(pin.name.clone())
                    .or_default()
                    .insert(pin.version.clone(), pin);
            }
        }
    }
    report.pinned = wanted.values().map(BTreeMap::len).sum();

    // 1. Every package, verified, and every pin checked against it.
    let mut packages: Vec<(String, Vec<u8>, Package)> = Vec::new();
    let mut missing = Vec::new();
    for (name, versions) in &wanted {
        let path = ResourcePath::package(name).key();
        let Some(bytes) = body(upstream, &path, MAX_RESOURCE_BODY)? else {
            for version in versions.keys() {
                missing.push(format!("{name} {version} (no package {name})"));
            }
            continue;
        };
        let package = registry::open_package(&bytes, &options.key, &options.repository, name)
            .map_err(|source| LockMirrorError::Resource {
                url: upstream.url(&path),
                source,
            })?;
        for (version, pin) in versions {
            let Some(release) = package.releases.iter().find(|r| r.version == *version) else {
                missing.push(format!("{name} {version} (no such release)"));
                continue;
            };
            for (which, lock, registry) in [
                ("outer", &pin.outer, release.outer_checksum.as_deref()),
                ("inner", &pin.inner, Some(release.inner_checksum.as_slice())),
            ] {
                if let Some(lock) = lock
                    && registry != Some(lock.as_slice())
                {
                    return Err(LockMirrorError::LockChecksum {
                        name: name.clone(),
                        version: version.clone(),
                        which,
                        lock: hex_lower(lock),
                        registry: hex_lower(registry.unwrap_or_default()),
                    });
                }
            }
        }
        packages.push((path, bytes, package));
    }
    if !missing.is_empty() {
        return Err(LockMirrorError::Missing(missing));
    }

    // 2. The tarballs, each checked against the signed outer checksum.
    for (_, _, package) in &packages {
        let Some(versions) = wanted.get(&package.name) else {
            continue;
        };
        for version in versions.keys() {
            let Some(expected) = package
                .releases
                .iter()
                .find(|r| r.version == *version)
                .and_then(|r| r.outer_checksum.clone())
            else {
                continue;
            };
            let path = ResourcePath::tarball(&package.name, version).key();
            if let Some(existing) = storage.read(&path)?
                && Sha256::digest(&existing.bytes).as_slice() == expected.as_slice()
            {
                continue;
            }
            let Some(bytes) = body(upstream, &path, MAX_TARBALL_SIZE)? else {
                return Err(LockMirrorError::Missing(vec![format!(
                    "{} {version} (no tarball at {})",
                    package.name,
                    upstream.url(&path)
                )]));
            };
            let actual = Sha256::digest(&bytes);
            if actual.as_slice() != expected.as_slice() {
                return Err(LockMirrorError::Checksum {
                    url: upstream.url(&path),
                    expected: hex_lower(&expected),
                    actual: hex_lower(&actual),
                });
            }
            if put(storage, &path, &bytes)? {
                report.written.push(path);
            }
        }
    }

    // 3. The registry files, upstream's bytes.
    for (path, bytes, _) in &packages {
        if put(storage, path, bytes)? {
            report.written.push(path.clone());
        }
    }
    for index in ["names", "versions"] {
        let Some(bytes) = body(upstream, index, MAX_RESOURCE_BODY)? else {
            continue;
        };
        let resource = |source| LockMirrorError::Resource {
            url: upstream.url(index),
            source,
        };
        let opened = registry::open(&bytes).map_err(resource)?;
        opened.verify(&options.key).map_err(resource)?;
        if index == "names" {
            registry::decode_names(&opened.payload, &options.repository).map_err(resource)?;
        } else {
            registry::decode_versions(&opened.payload, &options.repository).map_err(resource)?;
        }
        if put(storage, index, &bytes)? {
            report.written.push(index.to_string());
        }
    }
    if put(storage, "public_key", options.key_pem.as_bytes())? {
        report.written.push("public_key".to_string());
    }
    Ok(report)
}
