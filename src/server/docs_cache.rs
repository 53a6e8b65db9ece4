//! Hosted docs at a cost bounded by a constant, not by the archive.
//!
//! A docs tarball is prepared once per version token: inflated into an unnamed temporary file
//! (`$TMPDIR`, gone when the last reader drops it) and indexed ([`archive::DocsIndex`]: each
//! member's path, offset and size). A request then sends one member, read from that file in
//! small chunks; nothing of the archive is held in memory but its index. One request prepares
//! a given archive while the others asking for it wait for the result; at most
//! [`PREPARING_AT_ONCE`] archives are prepared at once; prepared archives are kept, least
//! recently used first out, within [`DISK_BUDGET`] bytes of temporary files and
//! [`INDEX_BUDGET`] bytes of indexes. An archive that cannot be read is remembered too (by its
//! version token), so a broken upload is not inflated again for every request.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::format::docs::MAX_DOCS_SIZE;
use crate::storage::{Storage, StorageError, Version};
use crate::web::archive::{self, DocsArchiveError, DocsIndex};

/// Archives prepared at once (each holds at most 16 MiB compressed in memory while it is).
pub const PREPARING_AT_ONCE: usize = 2;
/// Bytes of inflated archives kept in temporary files.
pub const DISK_BUDGET: u64 = 1024 * 1024 * 1024;
/// Bytes of indexes kept in memory (about 64 bytes and the path per member).
pub const INDEX_BUDGET: usize = 32 * 1024 * 1024;

/// An archive ready to serve: its inflated tar in an unnamed file and the index of its members.
#[derive(Debug)]
pub struct Prepared {
    /// The inflated tar.
    pub file: Arc<File>,
    /// Where each member lies in it.
    pub index: DocsIndex,
    /// Its size, in bytes.
    pub size: u64,
}

/// What preparing an archive gave: the archive, or why it cannot be browsed.
type Outcome = Result<Arc<Prepared>, DocsArchiveError>;

struct Slot {
    version: Version,
    outcome: Outcome,
    /// When it was last used, in uses of the cache (a logical clock).
    used: u64,
}

/// The prepared docs archives of one server.
#[derive(Default)]
pub struct DocsCache {
    slots: Mutex<Slots>,
    /// Per archive path, the lock its preparer holds while the others wait.
    preparing: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Preparations under way, at most [`PREPARING_AT_ONCE`].
    running: Mutex<usize>,
    freed: Condvar,
}

#[derive(Default)]
struct Slots {
    by_path: HashMap<String, Slot>,
    clock: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DocsCache {
    /// The archive at `path` of `storage`, at `version` and `size` (its listing's): kept, or
    /// prepared now. `Ok(Err(_))`: it is not a docs tarball that can be browsed.
    pub fn get(
        &self,
        storage: &dyn Storage,
        path: &str,
        version: &Version,
        size: u64,
    ) -> Result<Outcome, StorageError> {
        if size > MAX_DOCS_SIZE {
            return Ok(Err(DocsArchiveError::TooBig));
        }
        if let Some(outcome) = self.kept(path, version) {
            return Ok(outcome);
        }
        let gate = Arc::clone(lock(&self.preparing).entry(path.to_string()).or_default());
        let outcome = {
            let _preparing = lock(&gate);
            match self.kept(path, version) {
                Some(outcome) => Ok(outcome),
                None => self.prepare_and_keep(storage, path),
            }
        };
        let mut preparing = lock(&self.preparing);
        // Forget the gate when nobody else holds it (the map's and this request's only).
        if Arc::strong_count(&gate) == 2 {
            preparing.remove(path);
        }
        outcome
    }

    fn kept(&self, path: &str, version: &Version) -> Option<Outcome> {
        let mut slots = lock(&self.slots);
        slots.clock += 1;
        let clock = slots.clock;
        let slot = slots.by_path.get_mut(path)?;
        if slot.version != *version {
            return None;
        }
        slot.used = clock;
        Some(slot.outcome.clone())
    }

    fn prepare_and_keep(&self, storage: &dyn Storage, path: &str) -> Result<Outcome, StorageError> {
        let (version, outcome) = {
            let _permit = self.permit();
            let Some(object) = read_bounded(storage, path)? else {
                return Ok(Err(DocsArchiveError::NotTarGz("it is gone".into())));
            };
            let outcome = prepare(&object.bytes).map(Arc::new);
            (object.version, outcome)
        };
        let mut slots = lock(&self.slots);
        slots.clock += 1;
        let used = slots.clock;
        slots.by_path.insert(
            path.to_string(),
            Slot {
                version,
                outcome: outcome.clone(),
                used,
            },
        );
        evict(&mut slots.by_path);
        Ok(outcome)
    }

    /// Waits for a place among the [`PREPARING_AT_ONCE`] preparations.
    fn permit(&self) -> Permit<'_> {
        let mut running = lock(&self.running);
        while *running >= PREPARING_AT_ONCE {
            running = self
                .freed
                .wait(running)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *running += 1;
        Permit(self)
    }
}

struct Permit<'a>(&'a DocsCache);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.0.running) -= 1;
        self.0.freed.notify_one();
    }
}

/// Reads the docs tarball, refusing one over [`MAX_DOCS_SIZE`] (which upload refuses too).
fn read_bounded(
    storage: &dyn Storage,
    path: &str,
) -> Result<Option<crate::storage::Object>, StorageError> {
    let object = storage.read(path)?;
    Ok(object.filter(|o| o.bytes.len() as u64 <= MAX_DOCS_SIZE))
}

/// Inflates `gz` into an unnamed temporary file and indexes it.
fn prepare(gz: &[u8]) -> Result<Prepared, DocsArchiveError> {
    let io = |e: std::io::Error| DocsArchiveError::NotTarGz(format!("cannot be unpacked: {e}"));
    let file = tempfile::tempfile().map_err(io)?;
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let size = archive::inflate_docs(gz, &mut out)?;
    let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.rewind().map_err(io)?;
    let index = DocsIndex::build(std::io::BufReader::with_capacity(16 * 1024, &file))?;
    super::metrics::DOCS_ARCHIVES_PREPARED.inc();
    Ok(Prepared {
        file: Arc::new(file),
        index,
        size,
    })
}

/// Drops the least recently used archives until the rest fit both budgets.
fn evict(slots: &mut HashMap<String, Slot>) {
    loop {
        let (disk, memory) = slots
            .values()
            .filter_map(|s| s.outcome.as_ref().ok())
            .fold((0u64, 0usize), |(d, m), p| {
                (d.saturating_add(p.size), m.saturating_add(p.index.memory()))
            });
        if (disk <= DISK_BUDGET && memory <= INDEX_BUDGET && slots.len() <= 4096)
            || slots.len() <= 1
        {
            return;
        }
        let Some(oldest) = slots
            .iter()
            .min_by_key(|(_, s)| s.used)
            .map(|(p, _)| p.clone())
        else {
            return;
        };
        slots.remove(&oldest);
    }
}
