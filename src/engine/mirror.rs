//! Mirror: copies another Hex repository (its signed `names`, `versions`, `packages/*` and the
//! tarballs of its releases) into a [`Storage`], from an [`Upstream`] that fetches its files.
//!
//! Every registry file is verified before anything is written: its signature with upstream's
//! public key, the repository and package names inside its payload, every release record. Each
//! tarball is checked against the outer checksum upstream's signed `packages/NAME` records
//! before it is kept. Anything wrong stops the run with an error naming the URL, and the
//! mirror's registry files are left as they were.
//!
//! Two modes ([`Mode`]):
//! - full: upstream's registry files are kept byte for byte (clients keep upstream's key);
//! - filtered: the releases [`crate::mirror::closure`] keeps, written as a registry of its own
//!   by the engine's writer, signed with the mirror's key, retirements carried over.
//!
//! Writes go in the engine's crash-safe order: tarballs first (each verified, then written
//! atomically), then `packages/*`, then `names` and `versions`, then the removal of what
//! upstream no longer has, and last the state ([`crate::mirror::State`]) that makes the next
//! run incremental. A run stopped at any point leaves the previous mirror readable by clients
//! and the tarballs it downloaded in place; the next run completes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::writer::Carry;
use super::{ChangeKind, Changes, Error, Progress, Registry, Signer, Stage};
use crate::format::package_name;
use crate::format::registry::{self, PackageSummary, Release, ReleaseError, ResourceError};
use crate::format::resource_path::{PACKAGES_DIR, ResourcePath, TARBALLS_DIR};
use crate::format::signing::PublicKey;
use crate::format::tarball;
use crate::mirror::{self, Only, STATE_PATH, State, UPSTREAM_COPY_DIR};
use crate::storage::{Condition, Lock, Storage, StorageError, Version};

/// The most a registry file may weigh as sent (gzipped); hex.pm's largest is a few MB.
pub const MAX_RESOURCE_BODY: u64 = 64 * 1024 * 1024;

/// The most `names` may inflate to: hex.pm's lists about 20,000 packages at about 30 bytes
/// each (well under 1 MB); the bound leaves room for 30 times that.
pub const MAX_NAMES_INFLATED: u64 = 32 * 1024 * 1024;
/// The most `versions` may inflate to: hex.pm's lists each package's versions, a few MB in
/// all; the bound leaves room for 10 times that.
pub const MAX_VERSIONS_INFLATED: u64 = 64 * 1024 * 1024;
/// The most one `packages/NAME` may inflate to: a release record is under 1 KB with its
/// dependencies, and hex.pm's packages with the most releases have a few thousand (a few MB).
pub const MAX_PACKAGE_INFLATED: u64 = 16 * 1024 * 1024;

/// The most registry file `path` may inflate to (and weigh as sent), by its kind.
pub fn resource_limit(path: &str) -> u64 {
    match path {
        "names" => MAX_NAMES_INFLATED,
        "versions" => MAX_VERSIONS_INFLATED,
        _ => MAX_PACKAGE_INFLATED,
    }
}

/// Where a mirror's files come from: `GET` of a path relative to the repository's root.
pub trait Upstream: Sync {
    /// Fetches `path` (`names`, `packages/foo`, `tarballs/foo-1.0.0.tar`), conditionally on
    /// `etag` when given, refusing a body over `limit` bytes. Retries, if any, happen inside.
    fn get(
        &self,
        path: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<UpstreamResponse, FetchError>;

    /// The URL of `path`, as messages show it (without credentials).
    fn url(&self, path: &str) -> String;
}

/// What a `GET` brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamResponse {
    /// `200`: the body, and its ETag if the server sent one.
    Body {
        /// The bytes.
        bytes: Vec<u8>,
        /// The `ETag` header.
        etag: Option<String>,
    },
    /// `304 Not Modified`: the ETag sent still holds.
    NotModified,
}

/// Why a `GET` failed (after its retries).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A status other than 200 (or 304 to a conditional request).
    #[error("{url} answered HTTP {status}{}", status_hint(*status))]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The connection failed or timed out.
    #[error("cannot fetch {url}: {reason} (is the upstream reachable? run again to resume)")]
    Transport {
        /// The URL.
        url: String,
        /// Why, as the HTTP client says.
        reason: String,
    },
    /// The body is larger than any file of its kind may be.
    #[error(
        "{url} sent more than {limit} bytes, more than a Hex repository's file may hold: refused; check that --from is a Hex repository"
    )]
    TooBig {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A redirect, which is not followed.
    #[error(
        "{url} redirects to {location}: only the upstream given with --from is contacted; give the URL it redirects to"
    )]
    Redirect {
        /// The URL.
        url: String,
        /// Where it points.
        location: String,
    },
    /// `304` to a request without `If-None-Match`.
    #[error(
        "{url} answered 304 Not Modified to an unconditional request: the upstream is not a Hex repository"
    )]
    UnexpectedNotModified {
        /// The URL.
        url: String,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            " (credentials missing or refused: give them in the --from URL as https://USER:PASS@HOST or in HEXREG_MIRROR_AUTH)"
        }
        404 => " (not found: check --from, which must be the repository's root URL)",
        500..=599 => " (the upstream failed; run again later to resume)",
        _ => "",
    }
}

/// Which mirror to make.
pub enum Mode<'a> {
    /// Upstream's files, byte for byte.
    Full,
    /// The closure of the selections, as a registry of its own.
    Filtered {
        /// The selections.
        only: Vec<Only>,
        /// The repository name the mirror's clients use.
        name: String,
        /// The mirror's signing key.
        signer: &'a Signer,
    },
}

/// What a mirror run is given.
pub struct MirrorOptions<'a> {
    /// Upstream's repository name, which its payloads must hold (`hexpm`).
    pub repository: String,
    /// Upstream's public key.
    pub key: PublicKey,
    /// The key as PEM text, written as a full mirror's `public_key`.
    pub key_pem: String,
    /// What identifies the upstream (its URL without credentials): a state of another is
    /// ignored.
    pub origin: String,
    /// Full or filtered.
    pub mode: Mode<'a>,
    /// Parallel downloads.
    pub jobs: usize,
    /// Reports the long phases.
    pub progress: &'a dyn Progress,
    /// Accept a signed registry file that lacks releases or packages the mirror holds from
    /// upstream (else refused as a rollback).
    pub allow_rollback: bool,
}

/// What a mirror run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Packages in the mirror.
    pub packages: usize,
    /// Releases in the mirror.
    pub releases: usize,
    /// Registry files upstream sent (`200`).
    pub resources_fetched: usize,
    /// Registry files upstream said had not changed (`304`).
    pub resources_not_modified: usize,
    /// Tarballs downloaded.
    pub tarballs_downloaded: usize,
    /// Bytes of registry files and tarballs received.
    pub bytes_downloaded: u64,
    /// Tarballs already present with the right checksum.
    pub tarballs_present: usize,
    /// The files written and removed.
    pub changes: Changes,
    /// Dependencies a filtered mirror did not follow, one line each.
    pub notes: Vec<String>,
}

/// Why a mirror run stopped. The mirror's registry files are unchanged unless the error is a
/// storage failure during the final writes.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A fetch failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A registry file does not open, verify or belong.
    #[error(
        "refused {url} (nothing of the mirror's registry was changed; check --upstream-key and --upstream-name, or whether something between here and the upstream alters files)"
    )]
    Resource {
        /// The URL.
        url: String,
        /// What is wrong with the file.
        source: ResourceError,
    },
    /// A release record cannot be used.
    #[error("refused {url} (nothing of the mirror's registry was changed)")]
    Release {
        /// The URL of its `packages/NAME`.
        url: String,
        /// What is wrong with the record.
        source: ReleaseError,
    },
    /// An index lists a name that is not a package name.
    #[error(
        "{url} lists `{name}`, which is not a package name ({}): refused, nothing was changed; check that --from is a Hex repository",
        package_name::RULE
    )]
    BadName {
        /// The URL.
        url: String,
        /// The name, made one line.
        name: String,
    },
    /// `names` and `versions` disagree.
    #[error(
        "{names} and {versions} do not list the same packages: refused, nothing was changed; run again when the upstream is consistent"
    )]
    Inconsistent {
        /// `names`' URL.
        names: String,
        /// `versions`' URL.
        versions: String,
    },
    /// A tarball is not the one the signed registry records.
    #[error(
        "{url}: sha256 is {actual}, but upstream's signed registry records {expected}: the tarball was refused and the mirror's registry not changed (the upstream, or something between it and here, serves an altered tarball: tell the upstream's operator)"
    )]
    Checksum {
        /// The URL.
        url: String,
        /// What the registry records.
        expected: String,
        /// What came.
        actual: String,
    },
    /// A validly signed file older than the copy the mirror holds: it lacks releases (or
    /// packages) that upstream served before.
    #[error(
        "{url} lacks {} that the mirror already holds from it ({}): refused as a rollback (an older signed file served again), nothing was changed; if upstream really removed them, allow the rollback",
        if *.packages { "packages" } else { "releases" },
        .missing.join(", ")
    )]
    Rollback {
        /// The URL.
        url: String,
        /// Whether packages are missing (`names`, `versions`) rather than releases.
        packages: bool,
        /// What is missing (at most 10 named).
        missing: Vec<String>,
    },
    /// Selections no release satisfies.
    #[error("nothing was changed: {}; fix the selection (--only, --only-file)", .0.join("; "))]
    Unmatched(Vec<String>),
    /// The download threads cannot start.
    #[error("cannot start {jobs} download threads: {reason}")]
    Pool {
        /// How many.
        jobs: usize,
        /// What went wrong, in words.
        reason: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The engine's writer failed.
    #[error(transparent)]
    Engine(#[from] Error),
}

/// One registry file fetched and its bytes in hand.
struct Got {
    /// What upstream holds (sent now, or the copy it said is current).
    bytes: Vec<u8>,
    /// Its ETag, if any.
    etag: Option<String>,
    /// The copy kept from the last run differs from (or is not) what upstream holds.
    changed: bool,
    /// The copy's version, for the conditional write.
    copy_version: Option<Version>,
    /// Bytes received.
    received: u64,
    /// The copy kept from the last run, when upstream sent something else.
    previous: Option<Vec<u8>>,
}

/// A tarball present after [`Run::tarball`]: its path, version token, checksum and whether
/// it was downloaded.
type TarballKept = (String, Version, [u8; 32], bool);

/// One upstream package, verified.
struct Package {
    got: Got,
    releases: Vec<Release>,
}

/// A mirror run in progress.
struct Run<'a> {
    storage: &'a dyn Storage,
    upstream: &'a dyn Upstream,
    options: &'a MirrorOptions<'a>,
    state: State,
    full: bool,
    pool: rayon::ThreadPool,
    report: Mutex<Report>,
}

/// Mirrors `upstream` into `storage`, whose lock `lock` is, as `options` say.
pub fn mirror(
    storage: &dyn Storage,
    lock: Lock,
    upstream: &dyn Upstream,
    options: &MirrorOptions,
) -> Result<Report, MirrorError> {
    let full = matches!(options.mode, Mode::Full);
    let origin = match &options.mode {
        Mode::Full => format!("{} {} full", options.origin, options.repository),
        Mode::Filtered { name, .. } => {
            format!("{} {} filtered {name}", options.origin, options.repository)
        }
    };
    let old_state = storage.read(STATE_PATH)?;
    let state = old_state
        .as_ref()
        .and_then(|o| State::parse(&o.bytes))
        .filter(|s| s.origin == origin)
        .unwrap_or_else(|| State::new(&origin));
    let jobs = options.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| MirrorError::Pool {
            jobs,
            reason: e.to_string(),
        })?;
    let mut run = Run {
        storage,
        upstream,
        options,
        state,
        full,
        pool,
        report: Mutex::new(Report::default()),
    };

    // 1. The registry files, every one verified before anything is written.
    let names = run.fetch("names")?;
    let names_payload = run.verified("names", &names.bytes)?;
    let names_index = registry::decode_names(&names_payload, &options.repository)
        .map_err(|source| run.resource_error("names", source))?;
    let mut updated: BTreeMap<String, i64> = BTreeMap::new();
    for p in &names_index.packages {
        if !package_name::is_valid(&p.name) {
            return Err(MirrorError::BadName {
                url: upstream.url("names"),
                name: tarball::one_line(&p.name),
            });
        }
        updated.insert(
            p.name.clone(),
            p.updated_at.as_ref().map_or(0, |t| t.seconds),
        );
    }
    let listed: BTreeSet<String> = updated.keys().cloned().collect();
    if let Some(held) = run
        .previous_payload("names", &names)
        .and_then(|payload| registry::decode_names(&payload, &options.repository).ok())
    {
        let now: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
        run.refuse_rollback("names", true, held.packages.iter().map(|p| &p.name), &now)?;
    }

    let mut resources = vec![("names".to_string(), names)];
    let mut packages: BTreeMap<String, Package> = BTreeMap::new();
    let kept: BTreeMap<String, BTreeSet<usize>> = match &options.mode {
        Mode::Full => {
            let versions = run.fetch("versions")?;
            let payload = run.verified("versions", &versions.bytes)?;
            let index = registry::decode_versions(&payload, &options.repository)
                .map_err(|source| run.resource_error("versions", source))?;
            let versioned: BTreeSet<String> =
                index.packages.iter().map(|p| p.name.clone()).collect();
            if versioned != listed {
                return Err(MirrorError::Inconsistent {
                    names: upstream.url("names"),
                    versions: upstream.url("versions"),
                });
            }
            if let Some(held) = run
                .previous_payload("versions", &versions)
                .and_then(|payload| registry::decode_versions(&payload, &options.repository).ok())
            {
                let now: BTreeSet<&str> = versioned.iter().map(String::as_str).collect();
                run.refuse_rollback(
                    "versions",
                    true,
                    held.packages.iter().map(|p| &p.name),
                    &now,
                )?;
            }
            resources.push(("versions".to_string(), versions));
            packages = run.fetch_packages(&listed)?;
            packages
                .iter()
                .map(|(name, p)| (name.clone(), (0..p.releases.len()).collect()))
                .collect()
        }
        Mode::Filtered { only, .. } => loop {
            let known: BTreeMap<String, Vec<Release>> = packages
                .iter()
                .map(|(name, p)| (name.clone(), p.releases.clone()))
                .collect();
            let step = mirror::closure(only, &known, &listed, &options.repository);
            if !step.missing.is_empty() {
                packages.extend(run.fetch_packages(&step.missing)?);
                continue;
            }
            if !step.unmatched.is_empty() {
                return Err(MirrorError::Unmatched(step.unmatched));
            }
            run.report_mut(|r| r.notes = step.notes);
            break step.kept;
        },
    };

    // 2. The tarballs of the kept releases.
    let mut wanted: Vec<(String, [u8; 32])> = Vec::new();
    for (name, indexes) in &kept {
        if let Some(p) = packages.get(name) {
            for release in indexes.iter().filter_map(|i| p.releases.get(*i)) {
                let path = ResourcePath::tarball(name, &release.version).key();
                wanted.push((path, release.outer_checksum));
            }
        }
    }
    run.tarballs(&wanted)?;

    // 3. The registry files.
    let wanted_tarballs: BTreeSet<&str> = wanted.iter().map(|(p, _)| p.as_str()).collect();
    for (name, p) in &packages {
        resources.push((ResourcePath::package(name).key(), clone_got(&p.got)));
    }
    // The lock is held to the end: by the registry the filtered mode writes with, or here.
    let (_held, _registry): (Option<Lock>, Option<Registry>);
    match &options.mode {
        Mode::Full => {
            run.write_full(&resources)?;
            (_held, _registry) = (Some(lock), None);
        }
        Mode::Filtered { name, signer, .. } => {
            run.write_copies(&resources)?;
            let mut mirrored: Vec<(String, Vec<Release>)> = kept
                .iter()
                .filter_map(|(package, indexes)| {
                    let p = packages.get(package)?;
                    let mut releases: Vec<Release> = indexes
                        .iter()
                        .filter_map(|i| p.releases.get(*i).cloned())
                        .collect();
                    registry::sort_releases(&mut releases);
                    Some((package.clone(), releases))
                })
                .collect();
            let mut registry = Registry::open(storage, name, signer, lock);
            let result = write_filtered(&mut registry, &mut mirrored, &updated);
            let changes = registry.take_changes();
            run.report_mut(|r| {
                for change in changes.as_made() {
                    r.changes.file(change.stage, change.kind, &change.path);
                }
            });
            result?;
            (_held, _registry) = (None, Some(registry));
        }
    }
    run.delete_stale_tarballs(&wanted_tarballs)?;
    let fetched: BTreeSet<&str> = resources.iter().map(|(p, _)| p.as_str()).collect();
    if !full {
        run.delete_stale_copies(&fetched)?;
    }

    // 4. The state, last.
    run.state
        .resources
        .retain(|path, _| fetched.contains(path.as_str()));
    for (path, got) in &resources {
        match &got.etag {
            Some(etag) => {
                let sha: [u8; 32] = Sha256::digest(&got.bytes).into();
                run.state
                    .resources
                    .insert(path.clone(), (etag.clone(), sha));
            }
            None => {
                run.state.resources.remove(path);
            }
        }
    }
    run.state
        .tarballs
        .retain(|path, _| wanted_tarballs.contains(path.as_str()));
    let bytes = run.state.encode();
    if old_state.as_ref().is_none_or(|o| o.bytes != bytes) {
        let condition = Condition::after(old_state.as_ref().map(|o| &o.version));
        storage.write(STATE_PATH, &bytes, condition)?;
    }

    let mut report = run.report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.packages = kept.len();
    report.releases = wanted.len();
    Ok(report)
}

/// Writes a filtered mirror's `packages/*`, `names` and `versions` with the engine's writer.
fn write_filtered(
    registry: &mut Registry,
    mirrored: &mut [(String, Vec<Release>)],
    updated: &BTreeMap<String, i64>,
) -> Result<(), Error> {
    registry.write_public_key(None)?;
    let files = registry.package_files()?;
    // Upstream's advisories are not carried over yet: the indexes into them go too.
    for (_, releases) in mirrored.iter_mut() {
        for release in releases.iter_mut() {
            release.advisory_indexes.clear();
        }
    }
    registry.write_packages(&files, mirrored, Carry::Advisories(&[]))?;
    let keep: BTreeSet<&str> = mirrored.iter().map(|(n, _)| n.as_str()).collect();
    let stale: Vec<String> = files
        .names()
        .filter(|n| !keep.contains(n.as_str()))
        .cloned()
        .collect();
    let summaries: Vec<PackageSummary> = mirrored
        .iter()
        .map(|(name, releases)| {
            PackageSummary::new(name, updated.get(name).copied().unwrap_or(0), releases)
        })
        .collect();
    registry.write_index(&summaries, &stale)
}

fn clone_got(got: &Got) -> Got {
    Got {
        bytes: got.bytes.clone(),
        etag: got.etag.clone(),
        changed: got.changed,
        copy_version: got.copy_version.clone(),
        received: got.received,
        previous: None,
    }
}

impl Run<'_> {
    fn report_mut(&self, f: impl FnOnce(&mut Report)) {
        f(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn resource_error(&self, path: &str, source: ResourceError) -> MirrorError {
        MirrorError::Resource {
            url: self.upstream.url(path),
            source,
        }
    }

    /// Where the copy of upstream's `path` kept from the last run is: the file itself in a
    /// full mirror, under [`UPSTREAM_COPY_DIR`] in a filtered one.
    fn copy_path(&self, path: &str) -> String {
        if self.full {
            path.to_string()
        } else {
            format!("{UPSTREAM_COPY_DIR}/{path}")
        }
    }

    /// Fetches registry file `path`, conditionally when the last run's copy is intact.
    fn fetch(&self, path: &str) -> Result<Got, MirrorError> {
        let copy = self.storage.read(&self.copy_path(path))?;
        let etag = match (&copy, self.state.resources.get(path)) {
            (Some(copy), Some((etag, sha)))
                if <[u8; 32]>::from(Sha256::digest(&copy.bytes)) == *sha =>
            {
                Some(etag.as_str())
            }
            _ => None,
        };
        let limit = resource_limit(path).min(MAX_RESOURCE_BODY);
        let fetched = self.upstream.get(path, etag, limit)?;
        let copy_version = copy.as_ref().map(|c| c.version.clone());
        Ok(match (fetched, copy) {
            (UpstreamResponse::NotModified, Some(copy)) => {
                self.report_mut(|r| r.resources_not_modified += 1);
                Got {
                    bytes: copy.bytes,
                    etag: etag.map(str::to_string),
                    changed: false,
                    copy_version,
                    received: 0,
                    previous: None,
                }
            }
            (UpstreamResponse::NotModified, None) => {
                return Err(FetchError::UnexpectedNotModified {
                    url: self.upstream.url(path),
                }
                .into());
            }
            (UpstreamResponse::Body { bytes, etag }, copy) => {
                let received = bytes.len() as u64;
                self.report_mut(|r| {
                    r.resources_fetched += 1;
                    r.bytes_downloaded += received;
                });
                let previous = copy.map(|c| c.bytes).filter(|c| *c != bytes);
                Got {
                    changed: previous.is_some() || copy_version.is_none(),
                    bytes,
                    etag,
                    copy_version,
                    received,
                    previous,
                }
            }
        })
    }

    /// Opens and verifies a registry file; its payload.
    fn verified(&self, path: &str, bytes: &[u8]) -> Result<Vec<u8>, MirrorError> {
        let opened = registry::open_within(bytes, resource_limit(path))
            .map_err(|e| self.resource_error(path, e))?;
        opened
            .verify(&self.options.key)
            .map_err(|e| self.resource_error(path, e))?;
        Ok(opened.payload)
    }

    /// Fetches and verifies `packages/NAME` of each of `names`, in parallel.
    fn fetch_packages(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Package>, MirrorError> {
        let names: Vec<&String> = names.iter().collect();
        let progress = self.options.progress;
        progress.start("fetching packages", names.len());
        let failed = AtomicBool::new(false);
        let results: Vec<Result<(String, Package), MirrorError>> = self.pool.install(|| {
            names
                .par_iter()
                .filter(|_| !failed.load(Ordering::Relaxed))
                .map(|name| {
                    let result = self.fetch_package(name);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    progress.advance(1);
                    result.map(|p| ((*name).clone(), p))
                })
                .collect()
        });
        progress.finish();
        results.into_iter().collect()
    }

    fn fetch_package(&self, name: &str) -> Result<Package, MirrorError> {
        let path = ResourcePath::package(name).key();
        let got = self.fetch(&path)?;
        let payload = self.verified(&path, &got.bytes)?;
        let package = registry::decode_package(&payload, &self.options.repository, name)
            .map_err(|e| self.resource_error(&path, e))?;
        let releases = package
            .releases
            .into_iter()
            .map(Release::from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| MirrorError::Release {
                url: self.upstream.url(&path),
                source,
            })?;
        let held = self.previous_payload(&path, &got).and_then(|payload| {
            registry::decode_package(&payload, &self.options.repository, name).ok()
        });
        if let Some(held) = held {
            let now: BTreeSet<&str> = releases.iter().map(|r| r.version.as_str()).collect();
            self.refuse_rollback(&path, false, held.releases.iter().map(|r| &r.version), &now)?;
        }
        Ok(Package { got, releases })
    }

    /// The payload of the copy `got` replaces, when there is one that opens (it was verified
    /// when it was written).
    fn previous_payload(&self, path: &str, got: &Got) -> Option<Vec<u8>> {
        let previous = got.previous.as_ref()?;
        registry::open_within(previous, resource_limit(path))
            .ok()
            .map(|opened| opened.payload)
    }

    /// A [`MirrorError::Rollback`] when something of `held` is not in `now` (unless rollbacks
    /// are allowed).
    fn refuse_rollback<'s>(
        &self,
        path: &str,
        packages: bool,
        held: impl Iterator<Item = &'s String>,
        now: &BTreeSet<&str>,
    ) -> Result<(), MirrorError> {
        if self.options.allow_rollback {
            return Ok(());
        }
        let missing: Vec<String> = held
            .filter(|h| !now.contains(h.as_str()))
            .take(10)
            .map(|h| tarball::one_line(h))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(MirrorError::Rollback {
            url: self.upstream.url(path),
            packages,
            missing,
        })
    }

    /// Makes sure every wanted tarball is present with its checksum, downloading the others
    /// in parallel; each is checked before it is written.
    fn tarballs(&mut self, wanted: &[(String, [u8; 32])]) -> Result<(), MirrorError> {
        let present: HashMap<String, Version> = self
            .storage
            .list(TARBALLS_DIR)?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.regular)
            .map(|e| (format!("{TARBALLS_DIR}/{}", e.name), e.version))
            .collect();
        // The directory first: downloads in parallel must not each try to create it.
        if self.storage.create_dir(TARBALLS_DIR)? {
            self.report_mut(|r| r.changes.dir_created(Stage::TarballsDir, TARBALLS_DIR));
        }
        let progress = self.options.progress;
        progress.start("downloading tarballs", wanted.len());
        let failed = AtomicBool::new(false);
        let this = &*self;
        let results: Vec<Result<TarballKept, MirrorError>> = self.pool.install(|| {
            wanted
                .par_iter()
                .filter(|_| !failed.load(Ordering::Relaxed))
                .map(|(path, checksum)| {
                    let result = this.tarball(path, checksum, present.get(path));
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    progress.advance(1);
                    result
                })
                .collect()
        });
        progress.finish();
        let mut first_error = None;
        for result in results {
            match result {
                Ok((path, version, sha, downloaded)) => {
                    if downloaded {
                        let kind = if present.contains_key(&path) {
                            ChangeKind::Updating
                        } else {
                            ChangeKind::Creating
                        };
                        self.report_mut(|r| r.changes.file(Stage::TarballsDir, kind, &path));
                    }
                    self.state.tarballs.insert(path, (version.0, sha));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One tarball: kept if present with `checksum`, else downloaded, checked and written.
    /// Gives its path, version token, checksum and whether it was downloaded.
    fn tarball(
        &self,
        path: &str,
        checksum: &[u8; 32],
        present: Option<&Version>,
    ) -> Result<TarballKept, MirrorError> {
        if let Some(version) = present {
            let known = self
                .state
                .tarballs
                .get(path)
                .is_some_and(|(v, sha)| v == &version.0 && sha == checksum);
            if known {
                self.report_mut(|r| r.tarballs_present += 1);
                return Ok((path.to_string(), version.clone(), *checksum, false));
            }
            if let Some(object) = self.storage.read(path)? {
                let sha: [u8; 32] = Sha256::digest(&object.bytes).into();
                if &sha == checksum {
                    self.report_mut(|r| r.tarballs_present += 1);
                    return Ok((path.to_string(), object.version, sha, false));
                }
            }
        }
        let bytes = match self.upstream.get(path, None, tarball::MAX_TARBALL_SIZE)? {
            UpstreamResponse::Body { bytes, .. } => bytes,
            UpstreamResponse::NotModified => {
                return Err(FetchError::UnexpectedNotModified {
                    url: self.upstream.url(path),
                }
                .into());
            }
        };
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        if &sha != checksum {
            return Err(MirrorError::Checksum {
                url: self.upstream.url(path),
                expected: crate::format::encoding::hex_upper(checksum),
                actual: crate::format::encoding::hex_upper(&sha),
            });
        }
        let entry = self
            .storage
            .write(path, &bytes, Condition::after(present))?;
        self.report_mut(|r| {
            r.tarballs_downloaded += 1;
            r.bytes_downloaded += bytes.len() as u64;
        });
        Ok((path.to_string(), entry.version, sha, true))
    }

    /// A full mirror's registry files: upstream's bytes, `packages/*` then `names` and
    /// `versions`, then the removal of packages upstream no longer lists.
    fn write_full(&self, resources: &[(String, Got)]) -> Result<(), MirrorError> {
        let mut changes = Changes::default();
        // public_key: upstream's, which is what a full mirror's clients verify with.
        let key_path = ResourcePath::PublicKey.key();
        let existing_key = self.storage.read(&key_path)?;
        if existing_key
            .as_ref()
            .is_none_or(|k| k.bytes != self.options.key_pem.as_bytes())
        {
            let kind = if existing_key.is_some() {
                ChangeKind::Updating
            } else {
                ChangeKind::Creating
            };
            self.storage.write(
                &key_path,
                self.options.key_pem.as_bytes(),
                Condition::after(existing_key.as_ref().map(|k| &k.version)),
            )?;
            changes.file(Stage::PublicKey, kind, &key_path);
        }
        let index = |path: &str| path == "names" || path == "versions";
        for stage_index in [false, true] {
            let batch = self.storage.batch();
            let mut staged = Vec::new();
            for (path, got) in resources
                .iter()
                .filter(|(p, g)| index(p) == stage_index && g.changed)
            {
                batch.put(
                    path,
                    &got.bytes,
                    Condition::after(got.copy_version.as_ref()),
                )?;
                let kind = if got.copy_version.is_some() {
                    ChangeKind::Updating
                } else {
                    ChangeKind::Creating
                };
                let stage = match path.as_str() {
                    "names" => Stage::Names,
                    "versions" => Stage::Versions,
                    _ => Stage::Packages,
                };
                staged.push((stage, kind, path.clone()));
            }
            if !staged.is_empty() {
                batch.commit()?;
                for (stage, kind, path) in staged {
                    changes.file(stage, kind, &path);
                }
            }
        }
        let listed: BTreeSet<&str> = resources.iter().map(|(p, _)| p.as_str()).collect();
        for entry in self.storage.list(PACKAGES_DIR)?.unwrap_or_default() {
            let path = format!("{PACKAGES_DIR}/{}", entry.name);
            if !entry.name.starts_with('.') && entry.regular && !listed.contains(path.as_str()) {
                self.storage.delete(&path)?;
                changes.file(Stage::Removals, ChangeKind::Removing, &path);
            }
        }
        self.report_mut(|r| {
            for change in changes.as_made() {
                r.changes.file(change.stage, change.kind, &change.path);
            }
        });
        Ok(())
    }

    /// A filtered mirror keeps upstream's verified files aside, for the next run's `304`s.
    fn write_copies(&self, resources: &[(String, Got)]) -> Result<(), MirrorError> {
        // The directories first: a batch creates at most one new directory per file.
        self.storage
            .create_dir(&format!("{UPSTREAM_COPY_DIR}/{PACKAGES_DIR}"))?;
        let batch = self.storage.batch();
        let mut any = false;
        for (path, got) in resources.iter().filter(|(_, g)| g.changed) {
            batch.put(
                &self.copy_path(path),
                &got.bytes,
                Condition::after(got.copy_version.as_ref()),
            )?;
            any = true;
        }
        if any {
            batch.commit()?;
        }
        Ok(())
    }

    /// Deletes a filtered mirror's copies of upstream files it no longer fetches (packages
    /// that left the closure).
    fn delete_stale_copies(&self, fetched: &BTreeSet<&str>) -> Result<(), MirrorError> {
        let dir = format!("{UPSTREAM_COPY_DIR}/{PACKAGES_DIR}");
        for entry in self.storage.list(&dir)?.unwrap_or_default() {
            let path = format!("{PACKAGES_DIR}/{}", entry.name);
            if entry.regular && !entry.name.starts_with('.') && !fetched.contains(path.as_str()) {
                self.storage.delete(&format!("{dir}/{}", entry.name))?;
            }
        }
        Ok(())
    }

    /// Deletes the tarballs no kept release refers to, after the index no longer lists them.
    fn delete_stale_tarballs(&self, wanted: &BTreeSet<&str>) -> Result<(), MirrorError> {
        let mut removed = Vec::new();
        for entry in self.storage.list(TARBALLS_DIR)?.unwrap_or_default() {
            let path = format!("{TARBALLS_DIR}/{}", entry.name);
            if entry.regular
                && !entry.name.starts_with('.')
                && entry.name.ends_with(".tar")
                && !wanted.contains(path.as_str())
            {
                self.storage.delete(&path)?;
                removed.push(path);
            }
        }
        self.report_mut(|r| {
            for path in &removed {
                r.changes.file(Stage::Deletions, ChangeKind::Removing, path);
            }
        });
        Ok(())
    }
}
