//! Build: what `mix hex.registry build` does, plus validation and skipping files whose content
//! would not change.
//!
//! Shape: list `tarballs/`, read and validate every tarball (in parallel, batch by batch),
//! group by package, then encode, sign and write each resource whose payload changed, `names`
//! and `versions` last, and remove the `packages/*` files of packages that have no tarball left.

use super::problem::Problem;
use std::collections::BTreeMap;

use rayon::prelude::*;

use super::cache::Cache;
use super::writer::{Carry, Outcome};
use super::{ChangeKind, Error, Registry, Stage};
use crate::format::package_name;
use crate::format::registry::{self, PackageSummary, Release, Timestamp};
use crate::format::release_info::{INFO_DIR, ReleaseInfo};
use crate::format::resource_path::{ResourcePath, TARBALLS_DIR};
use crate::format::signing::{PublicKey, PublicKeyFormat};
use crate::format::tarball::{self, one_line};
use crate::storage::{Condition, Entry, Version};

/// How to build.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// The form of the `public_key` file; any other bytes there are replaced.
    pub public_key_format: PublicKeyFormat,
}

/// Packages are read and encoded this many at a time, so that a build holds the releases of one
/// batch only, plus the encoded payloads of changed packages and a summary (names, versions)
/// of every package.
const PACKAGES_PER_BATCH: usize = 512;

/// A tarball read and validated.
struct ReadTarball {
    package: String,
    release: Release,
    mtime: i64,
    /// What the API tells of it, when the tarball was read (not known from the cache).
    info: Option<ReleaseInfo>,
}

impl Registry<'_> {
    /// Builds the registry from the tarballs present: reads and validates every one (reporting
    /// every invalid one and writing nothing if any is), then writes `public_key`, the tarballs
    /// directory, each changed `packages/NAME`, `names` and `versions`, and removes the
    /// `packages/*` of packages without a tarball.
    pub fn build(&mut self, options: &BuildOptions) -> Result<(), Error> {
        let files: Vec<Entry> = self
            .storage
            .list(TARBALLS_DIR)?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.name.starts_with('.') && e.name.ends_with(".tar"))
            .collect();
        let package_files = self.package_files()?;
        // Read, validate and encode everything first, in memory: an invalid tarball stops the
        // run before anything is written. Signing comes with writing.
        let (outcomes, summaries) = self.prepare_build(&package_files, &files)?;
        let stale: Vec<String> = package_files
            .names()
            .filter(|name| {
                summaries
                    .binary_search_by(|p| p.name.as_str().cmp(name))
                    .is_err()
            })
            .cloned()
            .collect();
        // The releases of each package file about to change or go, as they are: the audit
        // trail records each release added, replaced or removed. (A build that creates the
        // registry is one import: recorded as one record, not one per release.)
        let imported = package_files.names().next().is_none();
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        if !imported {
            for (name, releases) in outcomes.iter().filter_map(Outcome::written_releases) {
                before.insert(name.to_string(), self.release_checksums(name)?);
                after.insert(name.to_string(), releases);
            }
            for name in &stale {
                before.insert(name.clone(), self.release_checksums(name)?);
            }
        }
        self.write_public_key(Some(options.public_key_format))?;
        if self.storage.create_dir(TARBALLS_DIR)? {
            self.changes.dir_created(Stage::TarballsDir, TARBALLS_DIR);
        }
        self.commit_packages(outcomes)?;
        self.write_index(&summaries, &stale)?;
        for (name, old) in before {
            let new = after.remove(&name).unwrap_or_default();
            self.release_changes
                .extend(super::changes::release_changes(&name, &old, &new));
        }
        Ok(())
    }

    /// Each release of `name` and its outer checksum, as the `packages/NAME` in place records
    /// them (empty when there is no such file, or it cannot be decoded: the build replaces it).
    fn release_checksums(&self, name: &str) -> Result<BTreeMap<String, [u8; 32]>, Error> {
        let path = ResourcePath::package(name).key();
        let Some(object) = self.storage.read(&path)? else {
            return Ok(BTreeMap::new());
        };
        Ok(registry::unverified_release_checksums(&object.bytes).unwrap_or_default())
    }

    /// Reads every tarball (those the cache does not know) and prepares every `packages/NAME`,
    /// batch by batch, in parallel. Fails with every invalid tarball; otherwise returns the
    /// prepared packages and the summaries for the indexes, sorted by name.
    fn prepare_build(
        &mut self,
        package_files: &super::writer::PackageFiles,
        files: &[Entry],
    ) -> Result<(Vec<Outcome>, Vec<PackageSummary>), Error> {
        // A package without an API record (a registry built before hexreg kept them) has its
        // tarballs read again, past the cache, to make one.
        let recorded: std::collections::HashSet<String> = self
            .storage
            .list(INFO_DIR)?
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .collect();
        self.progress.start("reading tarballs", files.len());
        let mut outcomes = Vec::new();
        let mut summaries: Vec<PackageSummary> = Vec::new();
        let mut problems = Vec::new();
        for batch in batches(files) {
            let this = &*self;
            let results: Vec<Result<(ReadTarball, Option<Version>), Problem>> = batch
                .par_iter()
                .map(|file| {
                    let result = this.read_tarball(file, &this.cache, &recorded);
                    this.progress.advance(1);
                    result
                })
                .collect();
            let mut packages: BTreeMap<String, (Vec<Release>, i64)> = BTreeMap::new();
            for (file, result) in batch.iter().zip(results) {
                match result {
                    Ok((t, fresh)) => {
                        match fresh {
                            Some(version) => self.cache.put(&file.name, version, &t.release),
                            None => self.cache.keep(&file.name),
                        }
                        if let Some(info) = t.info {
                            self.fresh_info
                                .entry(t.package.clone())
                                .or_default()
                                .push(info);
                        }
                        let entry = packages.entry(t.package).or_insert((Vec::new(), i64::MIN));
                        let mut release = t.release;
                        if self.release_dates {
                            // Replaced by the date the file in place records, if any.
                            release.published_at = Some(Timestamp {
                                seconds: t.mtime,
                                nanos: 0,
                            });
                        }
                        entry.0.push(release);
                        entry.1 = entry.1.max(t.mtime);
                    }
                    Err(e) => problems.push(e),
                }
            }
            if !problems.is_empty() {
                // Only validating from here on.
                continue;
            }
            let mut list = Vec::with_capacity(packages.len());
            let mut mtimes = Vec::with_capacity(packages.len());
            for (name, (mut releases, mtime)) in packages {
                registry::sort_releases(&mut releases);
                list.push((name, releases));
                mtimes.push(mtime);
            }
            // Retirements, dates and advisories are taken from the existing files here, so
            // summaries come after.
            outcomes.extend(self.prepare_packages(package_files, &mut list, Carry::Tarballs)?);
            for ((name, releases), mtime) in list.iter().zip(mtimes) {
                summaries.push(PackageSummary::new(name, mtime, releases));
            }
        }
        self.progress.finish();
        if !problems.is_empty() {
            return Err(Error::InvalidTarballs {
                dir: self.storage.display_dir(TARBALLS_DIR),
                problems,
            });
        }
        // Files are sorted by name and a package's files are contiguous, so this is a no-op but
        // for the guarantee.
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((outcomes, summaries))
    }

    /// Reads one tarball (unless the cache knows its version) and checks it against its file
    /// name `NAME-VERSION.tar`. Returns it, with its version when it was read (to cache).
    fn read_tarball(
        &self,
        file: &Entry,
        cache: &Cache,
        recorded: &std::collections::HashSet<String>,
    ) -> Result<(ReadTarball, Option<Version>), Problem> {
        // The path and the text naming it are made on demand: a no-op build passes 150,000
        // files here, nearly all known to the cache. File names and metadata text may hold
        // anything: errors quote them on one line.
        let path = || ResourcePath::Tarball(file.name.clone()).key();
        let shown = || self.shown(&path());
        let (name, version) = package_name::split_tarball_file_name(&file.name)
            .ok_or_else(|| Problem::FileName { shown: shown() })?;
        if !package_name::is_valid(name) {
            return Err(Problem::FileNamePackage {
                shown: shown(),
                name: one_line(name),
            });
        }
        if !file.regular {
            return Err(Problem::NotRegular { shown: shown() });
        }
        if let Some(release) = cache
            .get(&file.name, &file.version)
            .filter(|_| recorded.contains(name))
        {
            let t = ReadTarball {
                package: name.to_string(),
                release,
                mtime: file.modified,
                info: None,
            };
            return Ok((t, None));
        }
        let shown = shown();
        if file.size > tarball::MAX_TARBALL_SIZE {
            return Err(Problem::Tarball {
                shown,
                error: tarball::TarballError::TooBig { size: file.size },
            });
        }
        let object = self
            .storage
            .read(&path())?
            .ok_or_else(|| Problem::Vanished {
                shown: shown.clone(),
            })?;
        let (t, release) = validate_tarball(&shown, &object.bytes, &self.repo)?;
        package_name::check_agreement(
            &shown,
            (name, version),
            (&t.metadata.name, &t.metadata.version),
        )?;
        let info = ReleaseInfo::from_tarball(&object.bytes, release.outer_checksum).map(|info| {
            ReleaseInfo {
                indexed_at: object.modified,
                updated_at: object.modified,
                ..info
            }
        });
        let t = ReadTarball {
            package: name.to_string(),
            release,
            mtime: object.modified,
            info,
        };
        Ok((t, Some(object.version)))
    }

    /// Writes `public_key` when its bytes differ from what the private key implies.
    ///
    /// With `format` (what `build` does, like the task) any other bytes are replaced; without
    /// (other operations), a file holding the same key in any PEM form is left alone, and a
    /// missing or different one is written as PKCS#1.
    pub(super) fn write_public_key(
        &mut self,
        format: Option<PublicKeyFormat>,
    ) -> Result<(), Error> {
        let public = &self.signer.public;
        let want = public.to_pem(format.unwrap_or_default());
        let path = ResourcePath::PublicKey.key();
        let existing = self.storage.read(&path)?;
        match &existing {
            Some(have) if have.bytes == want.as_bytes() => return Ok(()),
            Some(have)
                if format.is_none()
                    && PublicKey::from_pem(&have.bytes).is_ok_and(|k| &k == public) =>
            {
                return Ok(());
            }
            Some(_) => {
                self.changes
                    .file(Stage::PublicKey, ChangeKind::KeyMismatch, &path);
                self.changes
                    .file(Stage::PublicKey, ChangeKind::Updating, &path);
            }
            None => self
                .changes
                .file(Stage::PublicKey, ChangeKind::Creating, &path),
        }
        let condition = Condition::after(existing.as_ref().map(|o| &o.version));
        self.lock_for_writing()?;
        self.storage.write(&path, want.as_bytes(), condition)?;
        Ok(())
    }
}

/// Validates a tarball's bytes (`shown` names it in errors): hex_core's checks, a valid package
/// name and a SemVer version in its metadata. Returns what it holds and the release it makes in
/// repository `repo`. The metadata's own name and version are checked here, before any
/// comparison with a file name, so that no error advises a rename that would be refused in turn.
pub fn validate_tarball(
    shown: &str,
    bytes: &[u8],
    repo: &str,
) -> Result<(tarball::Tarball, Release), Problem> {
    let size = bytes.len() as u64;
    let tarball_problem = |error| Problem::Tarball {
        shown: shown.to_string(),
        error,
    };
    if size > tarball::MAX_TARBALL_SIZE {
        return Err(tarball_problem(tarball::TarballError::TooBig { size }));
    }
    let t = tarball::read(bytes).map_err(tarball_problem)?;
    if !package_name::is_valid(&t.metadata.name) {
        return Err(Problem::package_name(shown, &t.metadata.name));
    }
    let release = Release::from_tarball(&t, repo).map_err(|e| Problem::Version {
        shown: shown.to_string(),
        detail: one_line(&e.to_string()),
    })?;
    if !package_name::release_fits(&t.metadata.name, &t.metadata.version) {
        return Err(Problem::Version {
            shown: shown.to_string(),
            detail: format!(
                "{} is too long: the release's file {}-VERSION.tar.gz would be longer than {} bytes, which file systems refuse; use a shorter version",
                one_line(&t.metadata.version),
                t.metadata.name,
                package_name::MAX_FILE_NAME
            ),
        });
    }
    Ok((t, release))
}

/// Splits the sorted tarball files into batches of about [`PACKAGES_PER_BATCH`] packages,
/// never splitting a package.
fn batches(files: &[Entry]) -> Vec<&[Entry]> {
    let package = |f: &Entry| {
        package_name::split_tarball_file_name(&f.name)
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| f.name.clone())
    };
    let mut out = Vec::new();
    let (mut start, mut count) = (0, 0);
    for i in 1..=files.len() {
        let boundary = i == files.len() || package(&files[i]) != package(&files[i - 1]);
        if boundary {
            count += 1;
            if count == PACKAGES_PER_BATCH || i == files.len() {
                out.push(&files[start..i]);
                start = i;
                count = 0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: String) -> Entry {
        Entry {
            name,
            size: 0,
            modified: 0,
            version: Version(Vec::new()),
            regular: true,
        }
    }

    #[test]
    fn batches_cover_every_file_and_never_split_a_package() {
        let mut files = Vec::new();
        for p in 0..1300 {
            for v in 0..(p % 4 + 1) {
                files.push(entry(format!("p{p:05}-{v}.0.0.tar")));
            }
        }
        files.push(entry("zz.tar".into()));
        let batches = batches(&files);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), files.len());
        for pair in batches.windows(2) {
            let last = package_name::split_tarball_file_name(&pair[0].last().unwrap().name)
                .unwrap()
                .0;
            let first = &pair[1][0].name;
            assert!(!first.starts_with(&format!("{last}-")), "{last} split");
        }
        assert!(super::batches(&[]).is_empty());
    }
}
