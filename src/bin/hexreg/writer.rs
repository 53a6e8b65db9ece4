//! Writing registry resources: encode, compare with what is there, then sign, seal and stage
//! what changed, commit in a crash-safe order, and report each change. Shared by every command
//! that changes a registry.
//!
//! Order: `packages/*` first (flushed and renamed together), then `names` and `versions`, then
//! the removal of stale `packages/*`. A run killed at any point leaves every file whole, and
//! every package the indexes list has its `packages/` file.
//!
//! Whether a file already holds the wanted payload is known without reading it when the cache
//! recorded the file (same `stat`, same signing key) with that payload's digest; otherwise the
//! file is read, gunzipped and its signature checked.

use std::fs;

use anyhow::{Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use hexreg::registry::{self, PackageSummary, Release, Retirement};
use hexreg::signing::{PrivateKey, PublicKey};

use crate::cache::{Cache, KnownResource, Stat};
use crate::progress::Progress;
use crate::store::{Change, Report, Stage, Staged, StagedDir, Store};

/// Writes the resources of one registry.
pub struct Writer<'a> {
    pub store: &'a Store,
    pub repo: &'a str,
    pub key: &'a PrivateKey,
    pub public: PublicKey,
    pub cache: &'a mut Cache,
    pub report: Report,
    pub quiet: bool,
}

/// What is on disk at a resource's path before it is written.
enum Existing {
    Missing,
    /// Recorded by the cache: not read.
    Known(Stat, KnownResource),
    /// Read from disk.
    Read(Stat, Vec<u8>),
}

/// One resource, prepared: encoded and compared with the file in place (nothing is signed or
/// written before [`Writer::commit_packages`] or the end of a write).
pub struct Outcome {
    rel: String,
    digest: [u8; 32],
    retired: Vec<(String, Retirement)>,
    /// `Some` when the file must be written: the payload to sign and seal.
    changed: Option<(Change, Vec<u8>)>,
    /// The stat of the unchanged file.
    stat: Option<Stat>,
}

impl Writer<'_> {
    /// Looks at `rel` before writing it.
    fn existing(&self, rel: &str) -> Result<Existing> {
        let path = self.store.path(rel);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let stat = Stat::of(&meta);
        if let Some(known) = self.cache.resource(rel, &stat) {
            return Ok(Existing::Known(stat, known));
        }
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Existing::Read(stat, bytes))
    }

    /// Compares `payload` for `rel` with the file in place, keeping it to be written unless the
    /// file already holds it.
    fn prepare(
        &self,
        rel: String,
        payload: Vec<u8>,
        existing: Existing,
        retired: Vec<(String, Retirement)>,
    ) -> Result<Outcome> {
        let digest: [u8; 32] = Sha256::digest(&payload).into();
        let (unchanged, stat, change) = match existing {
            Existing::Missing => (false, None, Change::Creating),
            Existing::Known(stat, known) => {
                (known.payload_sha256 == digest, Some(stat), Change::Updating)
            }
            Existing::Read(stat, bytes) => (
                registry::is_current(&bytes, &payload, &self.public),
                Some(stat),
                Change::Updating,
            ),
        };
        Ok(Outcome {
            rel,
            digest,
            retired,
            changed: (!unchanged).then_some((change, payload)),
            stat,
        })
    }

    /// Writes prepared resources (each signed, sealed and written to a temporary file by one
    /// thread, in parallel, then one commit) and records them in the report and the cache.
    fn commit(&mut self, outcomes: Vec<Outcome>, stage: impl Fn(&str) -> Stage) -> Result<()> {
        let mut payloads = Vec::new();
        let mut written = Vec::new();
        let mut unchanged = Vec::new();
        for outcome in outcomes {
            match outcome.changed {
                Some((change, payload)) => {
                    payloads.push((outcome.rel.clone(), payload));
                    written.push((outcome.rel, change, outcome.digest, outcome.retired));
                }
                None => unchanged.push(outcome),
            }
        }
        let (store, key) = (self.store, self.key);
        // Only `packages/*` come in numbers worth a bar.
        let progress = Progress::new(payloads.len(), "signing packages", self.quiet);
        // A registry without `packages/` (a first build) gets the whole directory in one
        // rename, its files written in place inside it: their stat is final when written.
        let all_packages = payloads
            .iter()
            .all(|(rel, _)| rel.strip_prefix("packages/").is_some());
        let new_dir = if all_packages && !payloads.is_empty() {
            StagedDir::create(&store.packages_dir())?
        } else {
            None
        };
        let stats: Vec<Option<Stat>> = if let Some(dir) = new_dir {
            let stats = sign_and_write(key, &payloads, &progress, |rel, sealed| {
                let name = rel.strip_prefix("packages/").unwrap_or(rel);
                Ok(Some(Stat::of(&dir.write(name, sealed)?)))
            })?;
            drop(progress);
            dir.commit()?;
            stats
        } else {
            let staged: Vec<Staged> = sign_and_write(key, &payloads, &progress, |rel, sealed| {
                store.stage(rel, sealed)
            })?;
            drop(progress);
            crate::store::commit(staged)?;
            // A rename changes the file's ctime: stat it where it now is.
            written
                .par_iter()
                .map(|(rel, ..)| fs::metadata(store.path(rel)).ok().map(|m| Stat::of(&m)))
                .collect()
        };
        for ((rel, change, digest, retired), stat) in written.into_iter().zip(stats) {
            self.report
                .change(stage(&rel), change, self.store.shown(&rel));
            if let Some(stat) = stat {
                self.cache.put_resource(&rel, stat, digest, retired, true);
            }
        }
        for outcome in unchanged {
            if let Some(stat) = outcome.stat {
                self.cache
                    .put_resource(&outcome.rel, stat, outcome.digest, outcome.retired, false);
            }
        }
        Ok(())
    }

    /// Writes `packages/NAME` of each package whose payload changed. With `keep_retirements`,
    /// releases take the retirement recorded for their version in the existing file (what
    /// `build` does, since tarballs carry no retirement).
    pub fn write_packages(
        &mut self,
        packages: &mut [(String, Vec<Release>)],
        keep_retirements: bool,
    ) -> Result<()> {
        let outcomes = self.prepare_packages(packages, keep_retirements)?;
        self.commit_packages(outcomes)
    }

    /// Writes packages prepared by [`Writer::prepare_packages`].
    pub fn commit_packages(&mut self, outcomes: Vec<Outcome>) -> Result<()> {
        self.commit(outcomes, |_| Stage::Packages)
    }

    /// Encodes `packages/NAME` of each package, in parallel, and compares it with the file in
    /// place, signing and writing nothing (see [`Writer::write_packages`]).
    pub fn prepare_packages(
        &self,
        packages: &mut [(String, Vec<Release>)],
        keep_retirements: bool,
    ) -> Result<Vec<Outcome>> {
        let this = self;
        let outcomes: Vec<Result<Outcome>> = packages
            .par_iter_mut()
            .map(|(name, releases)| {
                let rel = format!("packages/{name}");
                let existing = this.existing(&rel)?;
                if keep_retirements {
                    match &existing {
                        Existing::Known(_, known) => apply_retirements(&known.retired, releases),
                        Existing::Read(_, bytes) => {
                            apply_retirements(&read_retirements(bytes, this.repo, name), releases)
                        }
                        Existing::Missing => {}
                    }
                }
                let payload = registry::package_payload(this.repo, name, releases);
                let retired = releases
                    .iter()
                    .filter_map(|r| Some((r.version.clone(), r.retired.clone()?)))
                    .collect();
                this.prepare(rel, payload, existing, retired)
            })
            .collect();
        outcomes.into_iter().collect()
    }

    /// Writes `names` and `versions` for `summaries` (sorted by name), then removes the
    /// `packages/*` files of `stale` packages.
    pub fn write_index(&mut self, summaries: &[PackageSummary], stale: &[String]) -> Result<()> {
        let mut outcomes = Vec::new();
        for (rel, payload) in [
            ("names", registry::names_payload(self.repo, summaries)),
            ("versions", registry::versions_payload(self.repo, summaries)),
        ] {
            let existing = self.existing(rel)?;
            outcomes.push(self.prepare(rel.to_string(), payload, existing, Vec::new())?);
        }
        self.commit(outcomes, |rel| {
            if rel == "names" {
                Stage::Names
            } else {
                Stage::Versions
            }
        })?;
        for name in stale {
            let rel = format!("packages/{name}");
            self.store.remove(&rel)?;
            self.report
                .change(Stage::Removals, Change::Removing, self.store.shown(&rel));
        }
        Ok(())
    }
}

/// Signs and seals `payloads` (relative path, payload) and writes each with `write`, in
/// parallel: signing dominates, so each thread writes each file as soon as it is sealed, which
/// overlaps the system calls with the other threads' signing. Results come in payload order.
fn sign_and_write<T: Send>(
    key: &PrivateKey,
    payloads: &[(String, Vec<u8>)],
    progress: &Progress,
    write: impl Fn(&str, &[u8]) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    payloads
        .par_iter()
        .map(|(rel, payload)| {
            let signature = key
                .sign(payload)
                .with_context(|| format!("cannot sign {rel}, so it was not written"))?;
            let written = write(rel, &registry::seal_signed(payload, signature));
            progress.inc();
            written
        })
        .collect()
}

/// The retirements recorded in an existing `packages/NAME` file. A file that cannot be read back
/// (corrupt, another repository) has none to keep.
pub fn read_retirements(existing: &[u8], repo: &str, name: &str) -> Vec<(String, Retirement)> {
    let Ok(opened) = registry::open(existing) else {
        return Vec::new();
    };
    let Ok(package) = registry::decode_package(&opened.payload, repo, name) else {
        return Vec::new();
    };
    package
        .releases
        .into_iter()
        .filter_map(|r| {
            let status = r.retired?;
            Some((
                r.version,
                Retirement {
                    reason: status.reason,
                    message: status.message,
                },
            ))
        })
        .collect()
}

/// Sets the retirement of each release whose version is listed.
fn apply_retirements(retired: &[(String, Retirement)], releases: &mut [Release]) {
    for (version, retirement) in retired {
        for release in releases.iter_mut().filter(|r| &r.version == version) {
            release.retired = Some(retirement.clone());
        }
    }
}
