//! hexreg's cache of what it read from each tarball, so that a rebuild reads only new or changed
//! tarballs, and of the payload each registry file holds, so that a rebuild need not read back
//! files it would not change.
//!
//! An entry is keyed by the tarball's file name and its storage version token (for a local
//! file: size, modification and change times in nanoseconds, inode and device; any write to a
//! file changes its ctime, which no tool can set back), so a changed tarball never matches its
//! old entry, and a name alone never does. The file is a protobuf body
//! preceded by its SHA-256: a cache that is truncated, corrupt, of another format or for another
//! repository name is ignored (and rebuilt), never trusted.
//!
//! The cache lives outside the registry (by default in `$XDG_CACHE_HOME/hexreg` or
//! `~/.cache/hexreg`), so no static server publishes it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::format::proto;
use crate::format::registry::{Annotations, Release, ReleaseAnnotations, Retirement};
use crate::storage::Version;

/// Bump when the meaning of an entry changes (2: storage version tokens instead of `stat`;
/// 3: registry files record release dates and advisories, not only retirements).
const FORMAT: u32 = 3;

/// The cache file. Tarball entries are kept encoded (a `CacheEntry` message is wire-compatible
/// with `bytes`): a hex.pm-sized cache holds 150,000 of them, and only the entries of the
/// tarballs a run looks up are ever decoded, so memory stays near the file's size.
#[derive(Clone, PartialEq, prost::Message)]
struct CacheFile {
    #[prost(uint32, tag = "1")]
    format: u32,
    #[prost(string, tag = "2")]
    repository: String,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    entries: Vec<Bytes>,
    #[prost(bytes = "vec", tag = "4")]
    key_fingerprint: Vec<u8>,
    #[prost(message, repeated, tag = "5")]
    resources: Vec<ResourceEntry>,
}

/// The key of a `CacheEntry`: decoding only these two fields skips the release.
#[derive(Clone, PartialEq, prost::Message)]
struct EntryKey {
    #[prost(string, tag = "1")]
    file_name: String,
    #[prost(bytes = "vec", tag = "2")]
    version: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceEntry {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(bytes = "vec", tag = "2")]
    version: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    payload_sha256: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    releases: Vec<ReleaseEntry>,
    #[prost(message, repeated, tag = "5")]
    advisories: Vec<proto::package::SecurityAdvisory>,
}

/// One release's [`ReleaseAnnotations`].
#[derive(Clone, PartialEq, prost::Message)]
struct ReleaseEntry {
    #[prost(string, tag = "1")]
    version: String,
    #[prost(message, optional, tag = "2")]
    status: Option<proto::package::RetirementStatus>,
    #[prost(message, optional, tag = "3")]
    published_at: Option<proto::package::Timestamp>,
    #[prost(uint32, repeated, tag = "4")]
    advisory_indexes: Vec<u32>,
}

/// What the cache knows of a registry file hexreg wrote or checked.
#[derive(Debug, Clone)]
pub struct KnownResource {
    /// SHA-256 of the payload the file holds, signed by the current key.
    pub payload_sha256: [u8; 32],
    /// What that payload records beyond the tarballs (for `packages/*`).
    pub annotations: Annotations,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CacheEntry {
    #[prost(string, tag = "1")]
    file_name: String,
    #[prost(bytes = "vec", tag = "2")]
    version: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    release: Option<proto::package::Release>,
}

/// The cache of one registry: entries loaded from disk, and the entries of this run.
pub struct Cache {
    path: Option<PathBuf>,
    repository: String,
    key_fingerprint: Vec<u8>,
    /// Loaded tarball entries: file name → (version token, the encoded `CacheEntry`).
    old: HashMap<String, (Version, Bytes)>,
    /// How many tarball entries were loaded (`old` gives up those this run keeps).
    old_count: usize,
    /// This run's tarball entries, encoded.
    new: Vec<Bytes>,
    /// Their file names, for `carry_over`.
    new_names: Vec<String>,
    old_resources: HashMap<String, ResourceEntry>,
    new_resources: Vec<ResourceEntry>,
    changed: bool,
}

/// The user's cache directory for hexreg: `$XDG_CACHE_HOME/hexreg`, else `$HOME/.cache/hexreg`;
/// `None` when neither variable is set.
pub fn default_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|d| d.join("hexreg"))
}

impl Cache {
    /// A cache that remembers nothing and writes nothing (`--no-cache`).
    pub fn disabled(repository: &str) -> Cache {
        Cache {
            path: None,
            repository: repository.to_string(),
            key_fingerprint: Vec::new(),
            old: HashMap::new(),
            old_count: 0,
            new: Vec::new(),
            new_names: Vec::new(),
            old_resources: HashMap::new(),
            new_resources: Vec::new(),
            changed: false,
        }
    }

    /// Loads the cache of the registry identified by `registry_id` (its resolved directory, or
    /// its bucket URL: one cache file each) from `cache_dir`, for a registry signed by the key of
    /// `key_fingerprint`. A missing or unusable cache file gives an empty cache.
    pub fn load(
        cache_dir: &Path,
        registry_id: &[u8],
        repository: &str,
        key_fingerprint: &[u8],
    ) -> Cache {
        let key = Sha256::digest(registry_id);
        let path = cache_dir.join(format!(
            "{}.cache",
            crate::format::encoding::hex_upper(&key[..12])
        ));
        let mut cache = Cache::disabled(repository);
        cache.key_fingerprint = key_fingerprint.to_vec();
        if let Some(file) = fs::read(&path).ok().and_then(|b| decode(b.into()))
            && file.format == FORMAT
            && file.repository == repository
        {
            cache.old = file
                .entries
                .into_iter()
                .filter_map(|raw| {
                    let key = EntryKey::decode(raw.clone()).ok()?;
                    Some((key.file_name, (Version(key.version), raw)))
                })
                .collect();
            cache.old_count = cache.old.len();
            if file.key_fingerprint == key_fingerprint {
                cache.old_resources = file
                    .resources
                    .into_iter()
                    .map(|r| (r.path.clone(), r))
                    .collect();
            }
        }
        cache.path = Some(path);
        cache
    }

    /// The release cached for `file_name` if its version is unchanged.
    pub fn get(&self, file_name: &str, version: &Version) -> Option<Release> {
        let (cached, raw) = self.old.get(file_name)?;
        if cached != version || version.0.is_empty() {
            return None;
        }
        let entry = CacheEntry::decode(raw.clone()).ok()?;
        Release::from_proto(entry.release?).ok()
    }

    /// Keeps the entry of a tarball [`Cache::get`] found unchanged, for the next run.
    pub fn keep(&mut self, file_name: &str) {
        if let Some((file_name, (_, raw))) = self.old.remove_entry(file_name) {
            self.new.push(raw);
            self.new_names.push(file_name);
        }
    }

    /// Records the release of a tarball read this run, for the next run.
    pub fn put(&mut self, file_name: &str, version: Version, release: &Release) {
        // What a tarball holds only: the rest comes from the registry file.
        let mut proto = release.to_proto();
        proto.retired = None;
        proto.published_at = None;
        proto.advisory_indexes = Vec::new();
        self.changed = true;
        let entry = CacheEntry {
            file_name: file_name.to_string(),
            version: version.0,
            release: Some(proto),
        };
        self.new.push(entry.encode_to_vec().into());
        self.new_names.push(file_name.to_string());
    }

    /// What is known of registry file `rel` if its version is unchanged.
    pub fn resource(&self, rel: &str, version: &Version) -> Option<KnownResource> {
        let entry = self.old_resources.get(rel)?;
        if entry.version != version.0 || version.0.is_empty() {
            return None;
        }
        let releases = entry
            .releases
            .iter()
            .map(|r| {
                let retired = match &r.status {
                    Some(status) => Some(Retirement::from_proto(status.clone()).ok()?),
                    None => None,
                };
                Some(ReleaseAnnotations {
                    version: r.version.clone(),
                    retired,
                    published_at: r.published_at,
                    advisory_indexes: r.advisory_indexes.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(KnownResource {
            payload_sha256: <[u8; 32]>::try_from(entry.payload_sha256.as_slice()).ok()?,
            annotations: Annotations {
                releases,
                advisories: entry.advisories.clone(),
            },
        })
    }

    /// Records what registry file `rel` holds; `fresh` when it was written or read this run.
    pub fn put_resource(
        &mut self,
        rel: &str,
        version: Version,
        payload_sha256: [u8; 32],
        annotations: Annotations,
        fresh: bool,
    ) {
        let entry = ResourceEntry {
            path: rel.to_string(),
            version: version.0,
            payload_sha256: payload_sha256.to_vec(),
            releases: annotations
                .releases
                .into_iter()
                .map(|r| ReleaseEntry {
                    version: r.version,
                    status: r.retired.as_ref().map(Retirement::to_proto),
                    published_at: r.published_at,
                    advisory_indexes: r.advisory_indexes,
                })
                .collect(),
            advisories: annotations.advisories,
        };
        self.changed |= fresh || self.old_resources.get(rel) != Some(&entry);
        self.new_resources.push(entry);
    }

    /// Keeps, for the next run, every loaded entry this run did not replace: for commands that
    /// change part of a registry without scanning all of it.
    pub fn carry_over(&mut self) {
        let seen: std::collections::HashSet<&String> = self.new_names.iter().collect();
        let mut kept = Vec::new();
        for (file_name, (_, raw)) in self.old.drain() {
            if !seen.contains(&file_name) {
                kept.push((file_name, raw));
            }
        }
        for (file_name, raw) in kept {
            self.new.push(raw);
            self.new_names.push(file_name);
        }
        let seen: std::collections::HashSet<String> =
            self.new_resources.iter().map(|e| e.path.clone()).collect();
        for (path, entry) in &self.old_resources {
            if !seen.contains(path) {
                self.new_resources.push(entry.clone());
            }
        }
    }

    /// Writes the cache if it changed (a tarball read or gone, a registry file written).
    pub fn save(mut self) -> io::Result<()> {
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        if !self.changed
            && self.new.len() == self.old_count
            && self.new_resources.len() == self.old_resources.len()
        {
            return Ok(());
        }
        // The body is written piece by piece (concatenated protobuf messages merge, and
        // repeated fields append), so a hex.pm-sized cache is never held twice in memory.
        let head = CacheFile {
            format: FORMAT,
            repository: self.repository,
            entries: Vec::new(),
            key_fingerprint: self.key_fingerprint,
            resources: self.new_resources,
        }
        .encode_to_vec();
        let entries = self.new;
        crate::storage::local::write_atomic_unflushed(&path, |file| {
            let mut out = io::BufWriter::with_capacity(1 << 16, &mut *file);
            // The checksum goes first; it is known once the body is written.
            out.write_all(&[0; 32])?;
            let mut digest = Sha256::new();
            let mut put = |piece: &[u8]| {
                digest.update(piece);
                out.write_all(piece)
            };
            put(&head)?;
            let mut piece = Vec::new();
            for chunk in entries.chunks(1024) {
                piece.clear();
                CacheFile {
                    entries: chunk.to_vec(),
                    ..CacheFile::default()
                }
                .encode(&mut piece)
                .map_err(io::Error::other)?;
                put(&piece)?;
            }
            out.flush()?;
            drop(out);
            file.seek(io::SeekFrom::Start(0))?;
            file.write_all(&digest.finalize())
        })
    }
}

/// The body of a cache file whose checksum holds.
fn decode(bytes: Bytes) -> Option<CacheFile> {
    if bytes.len() < 32 {
        return None;
    }
    let body = bytes.slice(32..);
    if Sha256::digest(&body).as_slice() != &bytes[..32] {
        return None;
    }
    CacheFile::decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_or_foreign_cache_files_are_not_decoded() {
        let body = CacheFile {
            format: FORMAT,
            repository: "acme".into(),
            entries: vec![],
            key_fingerprint: vec![],
            resources: vec![],
        }
        .encode_to_vec();
        let mut good = Sha256::digest(&body).to_vec();
        good.extend_from_slice(&body);
        assert!(decode(good.clone().into()).is_some());
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decode(flipped.into()).is_none());
        assert!(decode(Bytes::copy_from_slice(&good[..20])).is_none());
        assert!(decode(Bytes::new()).is_none());
    }

    fn release(i: usize) -> Release {
        let proto = proto::package::Release {
            version: format!("1.{i}.0"),
            inner_checksum: vec![i as u8; 32],
            outer_checksum: Some(vec![!(i as u8); 32]),
            ..Default::default()
        };
        Release::from_proto(proto).unwrap()
    }

    fn stat(i: usize) -> Version {
        Version(format!("v{i}").into_bytes())
    }

    #[test]
    fn a_saved_cache_loads_back_whole() {
        // More entries than one written piece holds, so pieces must merge on load.
        let count = 2500;
        let dir = tempfile::tempdir().unwrap();
        let public = b"/srv/public";
        let mut cache = Cache::load(dir.path(), public, "acme", b"key");
        for i in 0..count {
            cache.put(&format!("foo-1.{i}.0.tar"), stat(i), &release(i));
        }
        cache.put_resource("names", stat(1), [3; 32], Annotations::default(), true);
        cache.save().unwrap();

        let loaded = Cache::load(dir.path(), public, "acme", b"key");
        assert_eq!(loaded.old_count, count);
        for i in 0..count {
            let got = loaded.get(&format!("foo-1.{i}.0.tar"), &stat(i)).unwrap();
            assert_eq!(got.version, release(i).version);
            assert_eq!(got.inner_checksum, release(i).inner_checksum);
            assert_eq!(got.outer_checksum, release(i).outer_checksum);
        }
        assert_eq!(
            loaded.resource("names", &stat(1)).unwrap().payload_sha256,
            [3; 32]
        );
        // Another repository name or key: entries or resources are not trusted.
        assert_eq!(
            Cache::load(dir.path(), public, "other", b"key").old_count,
            0
        );
        assert!(
            Cache::load(dir.path(), public, "acme", b"other key")
                .resource("names", &stat(1))
                .is_none()
        );
    }
}
