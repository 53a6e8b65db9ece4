//! Writing registry resources: encode, compare with what is there, then sign, seal and stage
//! what changed, commit in a crash-safe order, and record each change. Shared by every
//! operation that changes a registry.
//!
//! Order: `packages/*` first (one batch, durable together), then `names` and `versions` (a
//! second batch), then the removal of stale `packages/*`. A run killed at any point leaves every
//! file whole, and every package the indexes list has its `packages/` file.
//!
//! Whether a file already holds the wanted payload is known without reading it when the cache
//! recorded the file (same version token, same signing key) with that payload's digest;
//! otherwise the file is read, gunzipped and its signature checked.

use std::collections::HashMap;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{ChangeKind, Error, Registry, Stage};
use crate::format::registry::{self, Annotations, PackageSummary, Release, SecurityAdvisory};
use crate::format::release_info::{PackageInfo, info_path};
use crate::format::resource_path::{PACKAGES_DIR, ResourcePath};
use crate::storage::{Condition, Entry, Version};

/// What is at a resource's path before it is written.
pub(super) enum Existing {
    Missing,
    /// Recorded by the cache: not read.
    Known(Version, super::cache::KnownResource),
    /// Read.
    Read(Version, Vec<u8>),
}

/// One resource, prepared: encoded and compared with the file in place (nothing is signed or
/// written before [`Registry::commit_resources`]).
pub(super) struct Outcome {
    path: ResourcePath,
    digest: [u8; 32],
    annotations: Annotations,
    /// `Some` when the file must be written: how, and the payload to sign and seal.
    changed: Option<(ChangeKind, Condition, Vec<u8>)>,
    /// The version of the unchanged file.
    version: Option<Version>,
    /// The package's API record (`.hexreg-api/packages/NAME`) when it must be written: path,
    /// bytes and condition. Staged in the same batch as `packages/NAME`.
    info: Option<(String, Vec<u8>, Condition)>,
}

impl Outcome {
    /// The package whose `packages/NAME` this outcome writes, when it writes one, with each
    /// release it will hold and its outer checksum (from the payload about to be signed).
    pub(super) fn written_releases(
        &self,
    ) -> Option<(&str, std::collections::BTreeMap<String, [u8; 32]>)> {
        match (&self.path, &self.changed) {
            (ResourcePath::Package(name), Some((_, _, payload))) => Some((
                name,
                registry::release_checksums(payload).unwrap_or_default(),
            )),
            _ => None,
        }
    }
}

/// What a write of `packages/NAME` keeps of the file in place.
#[derive(Clone, Copy)]
pub(super) enum Carry<'a> {
    /// The releases were read from tarballs (build): each takes the retirement, publication
    /// time and advisory indexes the file records for its version, and the package the
    /// file's advisories.
    Tarballs,
    /// The releases were read from the file (add, remove, retire): the package keeps the
    /// file's advisories.
    Records,
    /// The package's advisories become these (`advisory add` and `remove`).
    Advisories(&'a [SecurityAdvisory]),
}

/// The files of `packages/`: listed once per operation, sorted by name (a build, which looks at
/// every package), or not listed (an operation on a few packages reads just their files).
pub(super) enum PackageFiles {
    Listed(Vec<Entry>),
    Unlisted,
}

/// What is known of one package's file before it is read.
enum Listing<'e> {
    /// Listed, as this entry.
    Entry(&'e Entry),
    /// Not in the listing: no such file.
    Absent,
    /// No listing: read the file to know.
    Unknown,
}

impl PackageFiles {
    pub(super) fn names(&self) -> impl Iterator<Item = &String> {
        let entries: &[Entry] = match self {
            PackageFiles::Listed(entries) => entries,
            PackageFiles::Unlisted => &[],
        };
        entries.iter().map(|e| &e.name)
    }

    fn get(&self, name: &str) -> Listing<'_> {
        match self {
            PackageFiles::Listed(entries) => entries
                .binary_search_by(|e| e.name.as_str().cmp(name))
                .ok()
                .and_then(|i| entries.get(i))
                .map_or(Listing::Absent, Listing::Entry),
            PackageFiles::Unlisted => Listing::Unknown,
        }
    }
}

impl Registry<'_> {
    /// Lists `packages/`.
    pub(super) fn package_files(&self) -> Result<PackageFiles, Error> {
        let mut entries = self.storage.list(PACKAGES_DIR)?.unwrap_or_default();
        entries.retain(|e| !e.name.starts_with('.'));
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(PackageFiles::Listed(entries))
    }

    /// Looks at `path` before writing it.
    fn existing(&self, path: &ResourcePath, listed: Listing) -> Result<Existing, Error> {
        let key = path.key();
        match listed {
            Listing::Absent => return Ok(Existing::Missing),
            Listing::Entry(entry) => {
                if let Some(known) = self.cache.resource(&key, &entry.version) {
                    return Ok(Existing::Known(entry.version.clone(), known));
                }
            }
            Listing::Unknown => {}
        }
        Ok(match self.storage.read(&key)? {
            Some(object) => Existing::Read(object.version, object.bytes),
            None => Existing::Missing,
        })
    }

    /// Compares `payload` for `path` with the file in place, keeping it to be written unless
    /// the file already holds it.
    fn prepare(
        &self,
        path: ResourcePath,
        payload: Vec<u8>,
        existing: Existing,
        annotations: Annotations,
    ) -> Outcome {
        let digest: [u8; 32] = Sha256::digest(&payload).into();
        let (unchanged, version) = match existing {
            Existing::Missing => (false, None),
            Existing::Known(version, known) => (known.payload_sha256 == digest, Some(version)),
            Existing::Read(version, bytes) => (
                registry::is_current(&bytes, &payload, &self.signer.public),
                Some(version),
            ),
        };
        let changed = (!unchanged).then(|| match &version {
            None => (ChangeKind::Creating, Condition::Create, payload),
            Some(v) => (ChangeKind::Updating, Condition::Replace(v.clone()), payload),
        });
        Outcome {
            path,
            digest,
            annotations,
            changed,
            version: if unchanged { version } else { None },
            info: None,
        }
    }

    /// Writes prepared resources (each signed, sealed and staged by one thread, in parallel,
    /// then one commit) and records them in the changes and the cache.
    fn commit_resources(
        &mut self,
        outcomes: Vec<Outcome>,
        stage: impl Fn(&ResourcePath) -> Stage,
    ) -> Result<(), Error> {
        let mut payloads = Vec::new();
        let mut unchanged = Vec::new();
        let mut infos = Vec::new();
        for mut outcome in outcomes {
            infos.extend(outcome.info.take());
            match outcome.changed {
                Some((kind, condition, payload)) => {
                    payloads.push((
                        outcome.path,
                        kind,
                        condition,
                        payload,
                        outcome.digest,
                        outcome.annotations,
                    ));
                }
                None => unchanged.push(outcome),
            }
        }
        if !payloads.is_empty() || !infos.is_empty() {
            self.lock_for_writing()?;
            let batch = self.storage.batch();
            for (key, bytes, condition) in &infos {
                batch.put(key, bytes, condition.clone())?;
            }
            let (key, progress) = (&self.signer.key, self.progress);
            progress.start("signing packages", payloads.len());
            let staged: Result<(), Error> =
                payloads
                    .par_iter()
                    .try_for_each(|(path, _, condition, payload, ..)| {
                        let signature = key.sign(payload).map_err(|source| Error::Sign {
                            path: self.shown(&path.key()),
                            source,
                        })?;
                        let sealed = registry::seal_signed(payload, signature);
                        batch.put(&path.key(), &sealed, condition.clone())?;
                        progress.advance(1);
                        Ok(())
                    });
            progress.finish();
            staged?;
            let written: HashMap<String, Version> = batch
                .commit()?
                .into_iter()
                .map(|e| (e.name, e.version))
                .collect();
            for (path, kind, _, _, digest, annotations) in payloads {
                let key = path.key();
                self.changes.file(stage(&path), kind, &key);
                if let Some(version) = written.get(&key) {
                    self.cache
                        .put_resource(&key, version.clone(), digest, annotations, true);
                }
            }
        }
        for outcome in unchanged {
            if let Some(version) = outcome.version {
                self.cache.put_resource(
                    &outcome.path.key(),
                    version,
                    outcome.digest,
                    outcome.annotations,
                    false,
                );
            }
        }
        Ok(())
    }

    /// Writes `packages/NAME` of each package whose payload changed, with what `carry` says
    /// to keep of the file in place.
    pub(super) fn write_packages(
        &mut self,
        files: &PackageFiles,
        packages: &mut [(String, Vec<Release>)],
        carry: Carry,
    ) -> Result<(), Error> {
        let outcomes = self.prepare_packages(files, packages, carry)?;
        self.commit_packages(outcomes)
    }

    /// Writes packages prepared by [`Registry::prepare_packages`].
    pub(super) fn commit_packages(&mut self, outcomes: Vec<Outcome>) -> Result<(), Error> {
        self.commit_resources(outcomes, |_| Stage::Packages)
    }

    /// Encodes `packages/NAME` of each package, in parallel, and compares it with the file in
    /// place, signing and writing nothing (see [`Registry::write_packages`]).
    pub(super) fn prepare_packages(
        &self,
        files: &PackageFiles,
        packages: &mut [(String, Vec<Release>)],
        carry: Carry,
    ) -> Result<Vec<Outcome>, Error> {
        let this = self;
        packages
            .par_iter_mut()
            .map(|(name, releases)| {
                let path = ResourcePath::package(name);
                let existing = this.existing(&path, files.get(name))?;
                let recorded = match &existing {
                    Existing::Known(_, known) => known.annotations.clone(),
                    Existing::Read(_, bytes) => read_annotations(bytes, &this.repo, name),
                    Existing::Missing => Annotations::default(),
                };
                let advisories: &[SecurityAdvisory] = match carry {
                    Carry::Tarballs => {
                        recorded.apply(releases);
                        &recorded.advisories
                    }
                    Carry::Records => &recorded.advisories,
                    Carry::Advisories(advisories) => advisories,
                };
                // Every index points at an advisory the file holds.
                for release in releases.iter_mut() {
                    release
                        .advisory_indexes
                        .retain(|&i| (i as usize) < advisories.len());
                }
                let payload = registry::package_payload(&this.repo, name, releases, advisories);
                let annotations = Annotations::of(releases, advisories);
                let mut outcome = this.prepare(path, payload, existing, annotations);
                outcome.info = this.prepare_info(name, releases, outcome.changed.is_some())?;
                Ok(outcome)
            })
            .collect()
    }

    /// Writes `names` and `versions` for `summaries` (sorted by name), then removes the
    /// `packages/*` files of `stale` packages.
    pub(super) fn write_index(
        &mut self,
        summaries: &[PackageSummary],
        stale: &[String],
    ) -> Result<(), Error> {
        let root: HashMap<String, Entry> = self
            .storage
            .list("")?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.regular)
            .map(|e| (e.name.clone(), e))
            .collect();
        let mut outcomes = Vec::new();
        for (path, payload) in [
            (
                ResourcePath::Names,
                registry::names_payload(&self.repo, summaries),
            ),
            (
                ResourcePath::Versions,
                registry::versions_payload(&self.repo, summaries),
            ),
        ] {
            let listed = root
                .get(&path.key())
                .map_or(Listing::Absent, Listing::Entry);
            let existing = self.existing(&path, listed)?;
            outcomes.push(self.prepare(path, payload, existing, Annotations::default()));
        }
        self.commit_resources(outcomes, |path| {
            if *path == ResourcePath::Names {
                Stage::Names
            } else {
                Stage::Versions
            }
        })?;
        for name in stale {
            let path = ResourcePath::package(name).key();
            self.lock_for_writing()?;
            // Its API record goes first (not a registry file: not reported), so that a run
            // stopped between the two leaves `packages/NAME`, which the next run finds.
            self.storage.delete(&info_path(name))?;
            self.storage.delete(&path)?;
            self.changes
                .file(Stage::Removals, ChangeKind::Removing, &path);
        }
        Ok(())
    }
}

impl Registry<'_> {
    /// The API record of package `name` whose releases are now `releases`, when it must be
    /// written: each release takes what its tarball told this run (`fresh_info`, dated by the
    /// tarball's modification time) or what the record in place holds for the same tarball; a
    /// release it knows nothing of is left out.
    /// Read only when this run read one of the package's tarballs or changes its file, so a
    /// no-op build reads no record.
    fn prepare_info(
        &self,
        name: &str,
        releases: &[Release],
        package_changed: bool,
    ) -> Result<Option<(String, Vec<u8>, Condition)>, Error> {
        let fresh = self.fresh_info.get(name);
        if fresh.is_none() && !package_changed {
            return Ok(None);
        }
        let path = info_path(name);
        let existing = self.storage.read(&path)?;
        let old = existing
            .as_ref()
            .map(|o| PackageInfo::decode_lenient(&o.bytes))
            .unwrap_or_default();
        let mut record = PackageInfo::default();
        for release in releases {
            let checksum = release.outer_checksum.as_slice();
            let old = old.release(&release.version);
            let fresh = fresh.and_then(|f| {
                f.iter()
                    .find(|i| i.version == release.version && i.outer_checksum == checksum)
            });
            let entry = match (fresh, old) {
                (Some(fresh), Some(old)) if old.outer_checksum == checksum => {
                    let mut entry = fresh.clone();
                    entry.indexed_at = old.indexed_at;
                    entry.updated_at = old.updated_at;
                    entry.has_docs = old.has_docs;
                    if entry.publisher.is_none() {
                        entry.publisher = old.publisher.clone();
                    }
                    entry
                }
                (Some(fresh), old) => {
                    // New (dated by its tarball), or a replaced tarball: that keeps the time
                    // the release first entered.
                    let mut entry = fresh.clone();
                    if let Some(old) = old {
                        entry.indexed_at = old.indexed_at;
                        entry.has_docs = old.has_docs;
                    }
                    entry
                }
                (None, Some(old)) if old.outer_checksum == checksum => old.clone(),
                (None, _) => continue,
            };
            record.releases.push(entry);
        }
        let bytes = record.encode();
        Ok(match existing {
            Some(o) if o.bytes == bytes => None,
            Some(o) => Some((path, bytes, Condition::Replace(o.version))),
            None if record.releases.is_empty() => None,
            None => Some((path, bytes, Condition::Create)),
        })
    }
}

/// What an existing `packages/NAME` file records beyond the tarballs. A file that cannot be
/// read back (corrupt, another repository) has nothing to keep. The signature is not checked:
/// retirements, release dates and advisories survive a build that changes the key, as
/// retirements do in the task.
fn read_annotations(existing: &[u8], repo: &str, name: &str) -> Annotations {
    registry::open(existing)
        .ok()
        .and_then(|opened| registry::decode_package(&opened.payload, repo, name).ok())
        .map(Annotations::from_package)
        .unwrap_or_default()
}
