//! Add, remove, retire and unretire: change one package of a registry from the registry itself.
//! The signed resources are the state: `names` and `versions` give every package,
//! `packages/NAME` the releases of the one being changed, each verified with the key pair's
//! public half before it is trusted. No other tarball needs to be present, and no other
//! package's file is rewritten.

use std::collections::BTreeMap;

use super::problem::Problem;
use super::writer::Carry;
use super::{ChangeKind, Error, Registry, Stage};
use crate::format::encoding::hex_upper;
use crate::format::package_name;
use crate::format::registry::{
    self, PackageSummary, Release, ResourceError, Retirement, SecurityAdvisory, Timestamp,
};
use crate::format::release_info::ReleaseInfo;
use crate::format::resource_path::{DOCS_DIR, ResourcePath, TARBALLS_DIR, tarball_file_name};
use crate::format::tarball;
use crate::storage::{Condition, Version};

/// A tarball given to [`Registry::add`], validated by [`NewTarball::validate`].
#[derive(Debug, Clone)]
pub struct NewTarball {
    /// Where it came from, as shown in messages (a path, an upload).
    pub source: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The package it is a release of.
    pub name: String,
    /// The release it makes.
    pub release: Release,
    /// What the API tells of the release (description, links, ...); set `publisher` to the
    /// key that uploads it.
    pub info: Option<ReleaseInfo>,
}

impl NewTarball {
    /// Validates `bytes` (from `source`) as a release of repository `repo`.
    pub fn validate(source: &str, bytes: Vec<u8>, repo: &str) -> Result<NewTarball, Problem> {
        let shown = tarball::one_line(source);
        let (t, release) = super::build::validate_tarball(&shown, &bytes, repo)?;
        let info = ReleaseInfo::from_tarball(&bytes, release.outer_checksum);
        Ok(NewTarball {
            source: source.to_string(),
            info,
            bytes,
            name: t.metadata.name,
            release,
        })
    }
}

/// What a package's `packages/NAME` records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackageRecord {
    /// Its releases, oldest first.
    pub releases: Vec<Release>,
    /// Its advisories, which the releases' `advisory_indexes` point into.
    pub advisories: Vec<SecurityAdvisory>,
}

/// The packages of a registry, from its `names` and `versions`.
pub(super) type Index = BTreeMap<String, PackageSummary>;

/// Which way a change goes, for the order of its writes (see `write_changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    Grow,
    Shrink,
}

impl Registry<'_> {
    /// Reads, verifies and decodes resource `path`, if it exists.
    fn payload(&self, path: &ResourcePath) -> Result<Option<Vec<u8>>, Error> {
        let key = path.key();
        let Some(object) = self.storage.read(&key)? else {
            return Ok(None);
        };
        let shown = self.shown(&key);
        let opened = registry::open(&object.bytes).map_err(|source| Error::Resource {
            path: shown.clone(),
            source,
        })?;
        opened
            .verify(&self.signer.public)
            .map_err(|source| Error::Untrusted {
                path: shown,
                source,
                key: self.signer.name.clone(),
            })?;
        Ok(Some(opened.payload))
    }

    /// Every package of the registry, from `names` and `versions`. A package only one of them
    /// lists (a run stopped between the two) is completed from what the other files record,
    /// so that the next write of the index repairs it.
    pub(super) fn load_index(&self) -> Result<Index, Error> {
        let names = self.payload(&ResourcePath::Names)?;
        let versions = self.payload(&ResourcePath::Versions)?;
        let (names, versions) = match (names, versions) {
            (None, None) => return Ok(BTreeMap::new()),
            (Some(n), Some(v)) => (n, v),
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::HalfIndex {
                    root: self.shown("").trim_end_matches('/').to_string(),
                });
            }
        };
        let wrong = |path: &str| {
            let path = self.shown(path);
            move |source: ResourceError| Error::WrongIndex { path, source }
        };
        let names = registry::decode_names(&names, &self.repo).map_err(wrong("names"))?;
        let versions =
            registry::decode_versions(&versions, &self.repo).map_err(wrong("versions"))?;
        let mut updated: BTreeMap<String, i64> = names
            .packages
            .into_iter()
            .map(|p| (p.name, p.updated_at.map_or(0, |t| t.seconds)))
            .collect();
        let mut summaries = BTreeMap::new();
        for p in versions.packages {
            let updated_at = match updated.remove(&p.name) {
                Some(updated_at) => updated_at,
                // In `versions` only: a run stopped between writing `versions` and `names`.
                // The time `names` would hold is the newest of the package's tarballs.
                None => {
                    let mut newest = 0;
                    for version in &p.versions {
                        let key = ResourcePath::tarball(&p.name, version).key();
                        if let Some(object) = self.storage.read(&key)? {
                            newest = newest.max(object.modified);
                        }
                    }
                    newest
                }
            };
            summaries.insert(
                p.name.clone(),
                PackageSummary {
                    name: p.name,
                    updated_at,
                    versions: p.versions,
                    retired: p.retired,
                    with_advisories: p.with_advisories,
                },
            );
        }
        // In `names` only: the same stop, the other way round. The versions are those its
        // `packages/NAME` records; without one, the package is gone.
        for (name, updated_at) in updated {
            if let Some(releases) = self.load_package(&name)? {
                let summary = PackageSummary::new(&name, updated_at, &releases);
                summaries.insert(name, summary);
            }
        }
        Ok(summaries)
    }

    /// The releases in `packages/NAME`, sorted; `None` if the file does not exist. A file not
    /// signed by this registry's key is reported as such, naming the key.
    fn load_package(&self, name: &str) -> Result<Option<Vec<Release>>, Error> {
        Ok(self
            .load_package_record(name)?
            .map(|record| record.releases))
    }

    /// [`Registry::load_package`], with the package's advisories.
    pub(super) fn load_package_record(&self, name: &str) -> Result<Option<PackageRecord>, Error> {
        read_package_record(self.storage, &self.repo, &self.signer.public, name).map_err(
            |e| match e {
                Error::Resource {
                    path,
                    source: source @ (ResourceError::BadSignature | ResourceError::Unsigned),
                } => Error::Untrusted {
                    path,
                    source,
                    key: self.signer.name.clone(),
                },
                other => other,
            },
        )
    }

    /// Release `version` of `package`, or an error saying there is none.
    pub(super) fn existing_release(&self, package: &str, version: &str) -> Result<Release, Error> {
        let mut releases = self.existing_package(package)?;
        let i = find_version(&releases, package, version)?;
        Ok(releases.swap_remove(i))
    }

    /// The releases of `package`, or an error saying it is not in the registry.
    pub(super) fn existing_package(&self, package: &str) -> Result<Vec<Release>, Error> {
        self.load_package(package)?.ok_or_else(|| Error::NoPackage {
            package: package.to_string(),
            root: self.shown("").trim_end_matches('/').to_string(),
            path: self.shown(&ResourcePath::package(package).key()),
        })
    }

    /// Writes the changed packages and the index (`index` updated with them, without
    /// `removed` packages), then deletes `delete` (tarballs no release refers to any more).
    ///
    /// The order keeps a run stopped at any write safe and repeatable. What grows (`Grow`: add,
    /// retire) goes packages first, then the index: the index never lists what its
    /// `packages/NAME` lacks. What shrinks (`Shrink`: remove) goes index first, then packages,
    /// then tarballs: a release leaves what clients resolve with before its record and its
    /// tarball go, and until its record goes, running the command again finds it.
    pub(super) fn write_changes(
        &mut self,
        order: Order,
        mut index: Index,
        mut changed: Vec<(String, Vec<Release>)>,
        removed: &[String],
        delete: &[ResourcePath],
        carry: Carry,
    ) -> Result<(), Error> {
        self.write_public_key(None)?;
        // A few packages change: their files are read, `packages/` is not listed.
        let files = super::writer::PackageFiles::Unlisted;
        if order == Order::Grow {
            self.write_packages(&files, &mut changed, carry)?;
        }
        for (name, releases) in &changed {
            let updated_at = index.get(name).map_or(0, |s| s.updated_at);
            index.insert(
                name.clone(),
                PackageSummary::new(name, updated_at, releases),
            );
        }
        for name in removed {
            index.remove(name);
        }
        let summaries: Vec<PackageSummary> = index.into_values().collect();
        self.write_index(&summaries, removed)?;
        if order == Order::Shrink {
            self.write_packages(&files, &mut changed, carry)?;
        }
        for path in delete {
            let key = path.key();
            self.lock_for_writing()?;
            if self.storage.delete(&key)? {
                self.changes
                    .file(Stage::Deletions, ChangeKind::Removing, &key);
            }
        }
        self.cache.carry_over();
        Ok(())
    }

    /// Adds releases from tarballs validated by [`NewTarball::validate`] (an `Err` is a
    /// tarball that failed validation, reported with the other refusals): each tarball is
    /// stored at `tarballs/NAME-VERSION.tar` and its package's `packages/NAME`, `names` and
    /// `versions` are updated. A release already published with other bytes is refused unless
    /// `replace`; re-adding an identical tarball changes nothing. Every refusal is reported at
    /// once and nothing is written.
    pub fn add(
        &mut self,
        new: Vec<Result<NewTarball, Problem>>,
        replace: bool,
    ) -> Result<(), Error> {
        let mut index = self.load_index()?;
        let mut problems = Vec::new();
        let mut unique: Vec<NewTarball> = Vec::new();
        for t in new {
            let t = match t {
                Ok(t) => t,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if let Some(other) = unique
                .iter()
                .find(|o| o.name == t.name && o.release.version == t.release.version)
            {
                problems.push(Problem::Duplicate {
                    first: other.source.clone(),
                    second: t.source.clone(),
                    name: t.name.clone(),
                    version: t.release.version.clone(),
                });
            } else {
                unique.push(t);
            }
        }

        // Decide every change before writing anything.
        let mut packages: BTreeMap<String, Vec<Release>> = BTreeMap::new();
        // Tarballs to store, with the version of the file they replace.
        let mut copies: Vec<(&NewTarball, Option<Version>)> = Vec::new();
        // (package, version) of each release added or replaced.
        let mut added: Vec<(String, String)> = Vec::new();
        // (package, version) of each dated release replaced: dated again.
        let mut redated: Vec<(String, String)> = Vec::new();
        for t in &unique {
            if !packages.contains_key(&t.name) {
                let releases = self.load_package(&t.name)?.unwrap_or_default();
                packages.insert(t.name.clone(), releases);
            }
            let releases = packages.entry(t.name.clone()).or_default();
            let key = ResourcePath::tarball(&t.name, &t.release.version).key();
            let on_disk = self.storage.read(&key)?;
            let differs_on_disk = on_disk.as_ref().is_some_and(|o| o.bytes != t.bytes);
            let on_disk_version = on_disk.map(|o| o.version);
            let shown = || self.shown(&key);
            match releases.iter().position(|r| r.version == t.release.version) {
                Some(i) if releases[i].outer_checksum == t.release.outer_checksum => {
                    if differs_on_disk && !replace {
                        problems.push(Problem::DiffersInPlace {
                            source_name: t.source.clone(),
                            path: shown(),
                        });
                    } else if on_disk_version.is_none() || differs_on_disk {
                        copies.push((t, on_disk_version));
                    }
                    // Recorded in `packages/NAME` but not in the index: a run stopped between
                    // the two. Adding it again completes it.
                    let indexed = index
                        .get(&t.name)
                        .is_some_and(|s| s.versions.contains(&t.release.version));
                    if !indexed {
                        added.push((t.name.clone(), t.release.version.clone()));
                    }
                }
                Some(i) => {
                    if !replace {
                        problems.push(Problem::Published {
                            source_name: t.source.clone(),
                            name: t.name.clone(),
                            version: t.release.version.clone(),
                            published: hex_upper(&releases[i].outer_checksum),
                            given: hex_upper(&t.release.outer_checksum),
                        });
                        continue;
                    }
                    // The release is the same version: what was said about it (its
                    // retirement, its advisories) stays. Its bytes are new, so a dated
                    // release is dated again when the new tarball is stored (below): a
                    // client's cooldown starts again.
                    let mut release = t.release.clone();
                    release.retired = releases[i].retired.take();
                    release.advisory_indexes = std::mem::take(&mut releases[i].advisory_indexes);
                    if releases[i].published_at.is_some() {
                        redated.push((t.name.clone(), t.release.version.clone()));
                    }
                    releases[i] = release;
                    copies.push((t, on_disk_version));
                    added.push((t.name.clone(), t.release.version.clone()));
                }
                None => {
                    if differs_on_disk && !replace {
                        problems.push(Problem::InTheWay { path: shown() });
                        continue;
                    }
                    releases.push(t.release.clone());
                    registry::sort_releases(releases);
                    if on_disk_version.is_none() || differs_on_disk {
                        copies.push((t, on_disk_version));
                    }
                    added.push((t.name.clone(), t.release.version.clone()));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::AddRefused { problems });
        }
        // Tarballs first: a release must never be listed before its tarball is there.
        let mut modified: BTreeMap<String, i64> = BTreeMap::new();
        if !copies.is_empty() {
            self.lock_for_writing()?;
            let batch = self.storage.batch();
            for (t, version) in &copies {
                let key = ResourcePath::tarball(&t.name, &t.release.version).key();
                batch.put(&key, &t.bytes, Condition::after(version.as_ref()))?;
            }
            for entry in batch.commit()? {
                modified.insert(entry.name, entry.modified);
            }
            for (t, version) in &copies {
                let key = ResourcePath::tarball(&t.name, &t.release.version).key();
                let kind = if version.is_some() {
                    ChangeKind::Updating
                } else {
                    ChangeKind::Creating
                };
                self.changes.file(Stage::TarballsDir, kind, &key);
            }
        }
        // Each package with a new release: its `updated_at` becomes the newest modification
        // time of the new tarballs, as a build would compute it.
        for (name, version) in &added {
            let key = ResourcePath::tarball(name, version).key();
            let mtime = match modified.get(&key) {
                Some(mtime) => *mtime,
                None => self.storage.read(&key)?.map_or(0, |o| o.modified),
            };
            let entry = index.entry(name.clone()).or_insert_with(|| PackageSummary {
                name: name.clone(),
                updated_at: mtime,
                versions: Vec::new(),
                retired: Vec::new(),
                with_advisories: Vec::new(),
            });
            entry.updated_at = entry.updated_at.max(mtime);
            // The API's record of it: indexed when its tarball was stored.
            if let Some(info) = unique
                .iter()
                .find(|t| &t.name == name && &t.release.version == version)
                .and_then(|t| t.info.clone())
            {
                self.fresh_info
                    .entry(name.clone())
                    .or_default()
                    .push(ReleaseInfo {
                        indexed_at: mtime,
                        updated_at: mtime,
                        ..info
                    });
            }
            // A release entering the registry is dated when it is stored; a replaced one
            // that was dated is dated again, its new bytes being new.
            if (self.release_dates || redated.contains(&(name.clone(), version.clone())))
                && let Some(release) = packages
                    .get_mut(name)
                    .and_then(|rs| rs.iter_mut().find(|r| &r.version == version))
                && release.published_at.is_none()
            {
                release.published_at = Some(Timestamp {
                    seconds: mtime,
                    nanos: 0,
                });
            }
        }
        let changed: Vec<(String, Vec<Release>)> = packages
            .into_iter()
            .filter(|(name, _)| added.iter().any(|(n, _)| n == name))
            .collect();
        self.write_changes(Order::Grow, index, changed, &[], &[], Carry::Records)
    }

    /// Removes release `version` of `package` (every release when `None`): updates
    /// `packages/NAME` (removed when no release is left), `names` and `versions`, then deletes
    /// the removed releases' tarballs.
    pub fn remove(&mut self, package: &str, version: Option<&str>) -> Result<(), Error> {
        let mut index = self.load_index()?;
        let Some(mut releases) = self.load_package(package)? else {
            // No record: a removal stopped after it may have left tarballs to delete.
            return self.delete_leftover_tarballs(package, version);
        };
        let gone: Vec<Release> = match version {
            Some(version) => match releases.iter().position(|r| r.version == version) {
                Some(i) => vec![releases.remove(i)],
                None => return self.delete_leftover_tarballs(package, Some(version)),
            },
            None => std::mem::take(&mut releases),
        };
        // The docs, then the tarballs of the removed releases: a tarball left by a stopped run
        // is what lets the command find the release again and finish.
        let delete: Vec<ResourcePath> = gone
            .iter()
            .map(|r| ResourcePath::docs(package, &r.version))
            .chain(
                gone.iter()
                    .map(|r| ResourcePath::tarball(package, &r.version)),
            )
            .collect();
        if releases.is_empty() {
            self.write_changes(
                Order::Shrink,
                index,
                Vec::new(),
                &[package.to_string()],
                &delete,
                Carry::Records,
            )
        } else {
            // `updated_at` is the newest of the package's tarballs, as a build computes it:
            // the removed one may have been the newest.
            let remaining: Vec<String> = releases
                .iter()
                .map(|r| tarball_file_name(package, &r.version))
                .collect();
            let newest = self
                .storage
                .list(TARBALLS_DIR)?
                .unwrap_or_default()
                .into_iter()
                .filter(|e| remaining.contains(&e.name))
                .map(|e| e.modified)
                .max();
            if let (Some(newest), Some(summary)) = (newest, index.get_mut(package)) {
                summary.updated_at = newest;
            }
            self.write_changes(
                Order::Shrink,
                index,
                vec![(package.to_string(), releases)],
                &[],
                &delete,
                Carry::Records,
            )
        }
    }

    /// Completes a removal that stopped after the release's record was gone: deletes the
    /// docs and tarballs of `package` (of `version` only, if given) that no record describes. Fails as
    /// "no such package" or "no such version" when there are none.
    fn delete_leftover_tarballs(
        &mut self,
        package: &str,
        version: Option<&str>,
    ) -> Result<(), Error> {
        let recorded = self.load_package(package)?.unwrap_or_default();
        let leftover = |name: &str, v: &str| {
            name == package
                && version.is_none_or(|version| version == v)
                && !recorded.iter().any(|r| r.version == v)
        };
        let mut leftovers: Vec<ResourcePath> = Vec::new();
        for e in self.storage.list(DOCS_DIR)?.unwrap_or_default() {
            let stem = e.name.strip_suffix(".tar.gz").unwrap_or_default();
            if let Some((name, v)) = stem.split_once('-')
                && leftover(name, v)
            {
                leftovers.push(ResourcePath::Docs(e.name.clone()));
            }
        }
        let tarballs = self.storage.list(TARBALLS_DIR)?.unwrap_or_default();
        for e in tarballs {
            if let Some((name, v)) = package_name::split_tarball_file_name(&e.name)
                && leftover(name, v)
            {
                leftovers.push(ResourcePath::Tarball(e.name.clone()));
            }
        }
        if leftovers.is_empty() {
            return Err(match version {
                Some(version) if !recorded.is_empty() => Error::NoVersion {
                    package: package.to_string(),
                    version: version.to_string(),
                    have: recorded.iter().map(|r| r.version.clone()).collect(),
                },
                _ => Error::NoPackage {
                    package: package.to_string(),
                    root: self.shown("").trim_end_matches('/').to_string(),
                    path: self.shown(&ResourcePath::package(package).key()),
                },
            });
        }
        for path in leftovers {
            let key = path.key();
            self.lock_for_writing()?;
            if self.storage.delete(&key)? {
                self.changes
                    .file(Stage::Deletions, ChangeKind::Removing, &key);
            }
        }
        Ok(())
    }

    /// Marks release `version` of `package` retired.
    pub fn retire(
        &mut self,
        package: &str,
        version: &str,
        retirement: Retirement,
    ) -> Result<(), Error> {
        self.set_retirement(package, version, Some(retirement))
    }

    /// Clears the retirement of release `version` of `package`.
    pub fn unretire(&mut self, package: &str, version: &str) -> Result<(), Error> {
        self.set_retirement(package, version, None)
    }

    fn set_retirement(
        &mut self,
        package: &str,
        version: &str,
        retirement: Option<Retirement>,
    ) -> Result<(), Error> {
        let index = self.load_index()?;
        let mut releases = self.existing_package(package)?;
        let i = find_version(&releases, package, version)?;
        releases[i].retired = retirement;
        self.write_changes(
            Order::Grow,
            index,
            vec![(package.to_string(), releases)],
            &[],
            &[],
            Carry::Records,
        )
    }
}

/// Index of `version` in `releases`, or an error listing the versions there are.
fn find_version(releases: &[Release], package: &str, version: &str) -> Result<usize, Error> {
    releases
        .iter()
        .position(|r| r.version == version)
        .ok_or_else(|| Error::NoVersion {
            package: package.to_string(),
            version: version.to_string(),
            have: releases.iter().map(|r| r.version.clone()).collect(),
        })
}

/// The versions of `package` that the `versions` index of the registry of repository `repo`
/// in `storage` lists, verified with `key`; `None` when it lists no such package (or there is
/// no index). A release recorded in `packages/NAME` but not listed here was added by a run
/// stopped before it wrote the index: adding it again completes it. Reads only; takes no lock.
pub(crate) fn indexed_versions(
    storage: &dyn crate::storage::Storage,
    repo: &str,
    key: &crate::format::signing::PublicKey,
    package: &str,
) -> Result<Option<Vec<String>>, Error> {
    let path = ResourcePath::Versions.key();
    let Some(object) = storage.read(&path)? else {
        return Ok(None);
    };
    let shown = crate::format::tarball::one_line(&storage.display(&path));
    let opened = registry::open(&object.bytes)
        .and_then(|opened| opened.verify(key).map(|()| opened))
        .map_err(|source| Error::Resource {
            path: shown.clone(),
            source,
        })?;
    let versions =
        registry::decode_versions(&opened.payload, repo).map_err(|source| Error::WrongIndex {
            path: shown,
            source,
        })?;
    Ok(versions
        .packages
        .into_iter()
        .find(|p| p.name == package)
        .map(|p| p.versions))
}

/// The releases of `package` in the registry of repository `repo` in `storage`, verified with
/// `key`, sorted; `None` when the registry has no such package. Reads only; takes no lock.
pub(crate) fn read_package(
    storage: &dyn crate::storage::Storage,
    repo: &str,
    key: &crate::format::signing::PublicKey,
    package: &str,
) -> Result<Option<Vec<Release>>, Error> {
    Ok(read_package_record(storage, repo, key, package)?.map(|record| record.releases))
}

/// [`read_package`], with the package's advisories (which the releases' `advisory_indexes`
/// point into).
pub(crate) fn read_package_record(
    storage: &dyn crate::storage::Storage,
    repo: &str,
    key: &crate::format::signing::PublicKey,
    package: &str,
) -> Result<Option<PackageRecord>, Error> {
    let path = ResourcePath::package(package).key();
    let Some(object) = storage.read(&path)? else {
        return Ok(None);
    };
    let shown = crate::format::tarball::one_line(&storage.display(&path));
    let decoded = registry::open_package(&object.bytes, key, repo, package).map_err(|source| {
        Error::Resource {
            path: shown.clone(),
            source,
        }
    })?;
    let mut releases = decoded
        .releases
        .into_iter()
        .map(|r| {
            Release::from_proto(r).map_err(|source| Error::BadRelease {
                path: shown.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    registry::sort_releases(&mut releases);
    Ok(Some(PackageRecord {
        releases,
        advisories: decoded.advisories,
    }))
}
