//! A bucket's registry files (`names`, `versions`, `public_key`, `packages/*`, and anything
//! else outside `tarballs/` and `docs/`) kept in memory with their ETag, so that many clients of
//! one replica cost one bucket request per file per interval.
//!
//! A file is served from memory while it was checked less than the interval ago
//! (`hexreg serve --bucket-revalidate`, 2 seconds by default); after that, the next request for
//! it sends a conditional GET (`If-None-Match` with the ETag held) and the others asking for the
//! same file meanwhile wait for that answer: a 304 renews the copy, a 200 replaces it, a 404
//! drops it. A publish through this replica's API marks every copy stale at once
//! ([`BucketCache::invalidate`]), so it is seen here at the next request; another replica sees
//! it within its interval. Bounded: files larger than [`FILE_LIMIT`] are not kept (they stream
//! from the bucket), and the copies held total at most [`BUDGET`] bytes and [`MAX_FILES`]
//! files, the least recently used dropped first. Missing files are not kept: a 404 costs one
//! bucket request.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::storage::object::{ObjectFetch, ObjectStorage};
use crate::storage::{Storage as _, StorageError};

/// The largest file kept in memory (hex.pm's largest `packages/NAME` is under 1 MiB).
pub const FILE_LIMIT: u64 = 8 * 1024 * 1024;

/// The bytes of all the copies held at once.
pub const BUDGET: u64 = 64 * 1024 * 1024;

/// The number of files held at once.
pub const MAX_FILES: usize = 16 * 1024;

/// A registry file as held: served from memory.
#[derive(Clone)]
pub struct Copy {
    /// Its content.
    pub bytes: Bytes,
    /// Its ETag, quoted, as the bucket sent it ("" when it sent none).
    pub e_tag: String,
    /// Its `Last-Modified`, Unix seconds.
    pub modified: i64,
    /// When the bucket last confirmed it.
    checked: Instant,
    /// The [`BucketCache::invalidate`] count it was confirmed under.
    generation: u64,
}

/// What [`BucketCache::get`] found.
pub enum Lookup {
    /// The file, current within the interval.
    Hit(Copy),
    /// No such object.
    Missing,
    /// Larger than [`FILE_LIMIT`]: to be streamed from the bucket instead.
    TooLarge,
}

/// One file's place: its copy, behind a lock held while it is being revalidated.
type Slot = Arc<tokio::sync::Mutex<Option<Copy>>>;

struct Held {
    slot: Slot,
    used: u64,
    size: u64,
}

#[derive(Default)]
struct Slots {
    files: HashMap<String, Held>,
    by_use: BTreeMap<u64, String>,
    clock: u64,
    bytes: u64,
}

impl Slots {
    /// The slot of `rel` (made empty if new), now the most recently used.
    fn slot(&mut self, rel: &str) -> Slot {
        self.clock += 1;
        let now = self.clock;
        if let Some(held) = self.files.get_mut(rel) {
            self.by_use.remove(&held.used);
            held.used = now;
            self.by_use.insert(now, rel.to_string());
            return Arc::clone(&held.slot);
        }
        let slot = Slot::default();
        self.files.insert(
            rel.to_string(),
            Held {
                slot: Arc::clone(&slot),
                used: now,
                size: 0,
            },
        );
        self.by_use.insert(now, rel.to_string());
        self.shrink(rel);
        slot
    }

    /// Records the size of `rel`'s copy, then drops others until within bounds.
    fn account(&mut self, rel: &str, size: u64) {
        if let Some(held) = self.files.get_mut(rel) {
            self.bytes = self.bytes - held.size + size;
            held.size = size;
        }
        self.shrink(rel);
    }

    /// Forgets `rel`.
    fn forget(&mut self, rel: &str) {
        if let Some(held) = self.files.remove(rel) {
            self.by_use.remove(&held.used);
            self.bytes -= held.size;
        }
    }

    /// Drops the least recently used files, never `keep`, while over a bound.
    fn shrink(&mut self, keep: &str) {
        while self.bytes > BUDGET || self.files.len() > MAX_FILES {
            let oldest = self
                .by_use
                .values()
                .find(|rel| rel.as_str() != keep)
                .cloned();
            match oldest {
                Some(rel) => self.forget(&rel),
                None => break,
            }
        }
    }
}

/// The registry files of one bucket, held by one server.
pub struct BucketCache {
    interval: Duration,
    generation: AtomicU64,
    slots: Mutex<Slots>,
}

/// Whether `rel` is a registry file, kept in memory (tarballs and docs stream).
pub fn cacheable(rel: &str) -> bool {
    !rel.starts_with("tarballs/") && !rel.starts_with("docs/")
}

impl BucketCache {
    /// An empty cache whose copies are served for `interval` before being revalidated.
    pub fn new(interval: Duration) -> Self {
        BucketCache {
            interval,
            generation: AtomicU64::new(0),
            slots: Mutex::new(Slots::default()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks every copy stale: the next request for each revalidates it (after a write).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The file `rel`, from memory when checked within the interval, otherwise from `bucket`
    /// (one conditional GET, shared by the requests that wait for it).
    pub async fn get(&self, bucket: &ObjectStorage, rel: &str) -> Result<Lookup, StorageError> {
        let slot = self.slots().slot(rel);
        let mut copy = slot.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(held) = copy.as_ref()
            && held.generation == generation
            && held.checked.elapsed() < self.interval
        {
            return Ok(Lookup::Hit(held.clone()));
        }
        let if_none_match = copy
            .as_ref()
            .map(|held| held.e_tag.clone())
            .filter(|tag| !tag.is_empty());
        let checked = Instant::now();
        match bucket.fetch(rel, false, if_none_match).await? {
            ObjectFetch::NotModified => match copy.as_mut() {
                Some(held) => {
                    held.checked = checked;
                    held.generation = generation;
                    Ok(Lookup::Hit(held.clone()))
                }
                // Not sent without a copy; the store answered oddly.
                None => Err(StorageError::Io {
                    action: "read",
                    path: bucket.display(rel),
                    source: io::Error::other("the store answered 304 to an unconditional GET"),
                }),
            },
            ObjectFetch::Missing => {
                *copy = None;
                self.slots().forget(rel);
                Ok(Lookup::Missing)
            }
            ObjectFetch::Found { size, .. } if size > FILE_LIMIT => {
                *copy = None;
                self.slots().forget(rel);
                Ok(Lookup::TooLarge)
            }
            ObjectFetch::Found {
                size,
                e_tag,
                modified,
                body,
            } => {
                let bytes = collect(bucket, rel, size, body).await?;
                let held = Copy {
                    bytes,
                    e_tag: e_tag.unwrap_or_default(),
                    modified,
                    checked,
                    generation,
                };
                *copy = Some(held.clone());
                self.slots().account(rel, size);
                Ok(Lookup::Hit(held))
            }
        }
    }
}

/// The whole body of a file of `size` bytes (at most [`FILE_LIMIT`]).
async fn collect(
    bucket: &ObjectStorage,
    rel: &str,
    size: u64,
    body: Option<crate::storage::object::ObjectBody>,
) -> Result<Bytes, StorageError> {
    let failed = |source: io::Error| StorageError::Io {
        action: "read",
        path: bucket.display(rel),
        source,
    };
    let Some(mut body) = body else {
        return Err(failed(io::Error::other("the store sent no body")));
    };
    let mut bytes = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(chunk) = body.chunk().await {
        let chunk = chunk.map_err(failed)?;
        if (bytes.len() + chunk.len()) as u64 > size {
            return Err(failed(io::Error::other(
                "the store sent more than the object's size",
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != size {
        return Err(failed(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the store sent less than the object's size",
        )));
    }
    Ok(bytes.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_files_are_kept_and_archives_are_not() {
        for rel in ["names", "versions", "public_key", "packages/a"] {
            assert!(cacheable(rel), "{rel}");
        }
        for rel in ["tarballs/a-1.0.0.tar", "docs/a-1.0.0.tar.gz"] {
            assert!(!cacheable(rel), "{rel}");
        }
    }

    #[test]
    fn the_least_recently_used_go_first_when_over_budget() {
        let mut slots = Slots::default();
        let half = BUDGET / 2;
        slots.slot("a");
        slots.account("a", half);
        slots.slot("b");
        slots.account("b", half);
        slots.slot("a");
        slots.slot("c");
        slots.account("c", 1);
        assert!(slots.files.contains_key("a") && slots.files.contains_key("c"));
        assert!(!slots.files.contains_key("b"));
        assert_eq!(slots.bytes, half + 1);
        slots.forget("a");
        assert_eq!(slots.bytes, 1);
        assert_eq!(slots.by_use.len(), 1);
    }

    #[test]
    fn the_number_of_files_is_bounded() {
        let mut slots = Slots::default();
        for i in 0..MAX_FILES + 10 {
            slots.slot(&format!("packages/p{i}"));
        }
        assert_eq!(slots.files.len(), MAX_FILES);
        assert!(!slots.files.contains_key("packages/p0"));
    }
}
