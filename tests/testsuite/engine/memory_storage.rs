//! A registry kept in memory: the second implementation of `Storage`, showing that the engine
//! needs no file system. It can fail any chosen write, the way a crash or a full disk would
//! stop a run there: batches commit file by file, so a failure inside a commit leaves the files
//! before it written and the rest not, as a killed local run leaves its renames.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hexreg::storage::{Batch, Condition, Entry, Lock, Object, Storage, StorageError, Version};

#[derive(Clone)]
struct File {
    bytes: Vec<u8>,
    modified: i64,
    version: u64,
}

/// Files by path; directories exist implicitly, plus those created empty.
#[derive(Default)]
pub struct MemoryStorage {
    files: Mutex<BTreeMap<String, File>>,
    dirs: Mutex<Vec<String>>,
    next_version: AtomicU64,
    /// The clock files get their modification time from.
    pub now: AtomicU64,
    /// Writes (each file put in place, each delete) done so far.
    writes: AtomicUsize,
    /// Fail the write with this number (counted from 0), if set.
    fail_at: Mutex<Option<usize>>,
    locked: Arc<AtomicBool>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        let storage = MemoryStorage::default();
        storage.now.store(1_700_000_000, Ordering::SeqCst);
        storage
    }

    /// Fails write number `n` (from now on, counting from 0) and every write after it.
    pub fn fail_from(&self, n: Option<usize>) {
        self.writes.store(0, Ordering::SeqCst);
        *self.fail_at.lock().unwrap() = n;
    }

    /// Writes done since the last [`MemoryStorage::fail_from`].
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Counts one write, failing it if asked to.
    fn write_allowed(&self, path: &str) -> Result<(), StorageError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        match *self.fail_at.lock().unwrap() {
            Some(at) if n >= at => Err(StorageError::Io {
                action: "write",
                path: path.to_string(),
                source: std::io::Error::other(format!("injected failure at write {n}")),
            }),
            _ => Ok(()),
        }
    }

    /// Puts a file directly (as an operator copying a tarball in).
    pub fn insert(&self, path: &str, bytes: &[u8]) {
        let version = self.next_version.fetch_add(1, Ordering::SeqCst);
        let modified = self.now.load(Ordering::SeqCst) as i64;
        self.files.lock().unwrap().insert(
            path.to_string(),
            File {
                bytes: bytes.to_vec(),
                modified,
                version,
            },
        );
    }

    /// Every file: path → bytes.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.files
            .lock()
            .unwrap()
            .iter()
            .map(|(k, f)| (k.clone(), f.bytes.clone()))
            .collect()
    }

    fn entry(name: &str, file: &File) -> Entry {
        Entry {
            name: name.to_string(),
            size: file.bytes.len() as u64,
            modified: file.modified,
            version: Version(file.version.to_le_bytes().to_vec()),
            regular: true,
        }
    }
}

struct Staged {
    path: String,
    bytes: Vec<u8>,
    condition: Condition,
}

struct MemoryBatch<'a> {
    storage: &'a MemoryStorage,
    staged: Mutex<Vec<Staged>>,
}

impl Batch for MemoryBatch<'_> {
    fn put(&self, path: &str, bytes: &[u8], condition: Condition) -> Result<(), StorageError> {
        self.staged.lock().unwrap().push(Staged {
            path: path.to_string(),
            bytes: bytes.to_vec(),
            condition,
        });
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<Vec<Entry>, StorageError> {
        let storage = self.storage;
        let mut written = Vec::new();
        for staged in self.staged.into_inner().unwrap() {
            storage.write_allowed(&staged.path)?;
            let mut files = storage.files.lock().unwrap();
            let current = files
                .get(&staged.path)
                .map(|f| Version(f.version.to_le_bytes().to_vec()));
            let holds = match (&staged.condition, current) {
                (Condition::Create, None) => true,
                (Condition::Replace(want), Some(have)) => *want == have,
                _ => false,
            };
            if !holds {
                return Err(StorageError::Conflict {
                    path: staged.path.clone(),
                });
            }
            let file = File {
                bytes: staged.bytes,
                modified: storage.now.load(Ordering::SeqCst) as i64,
                version: storage.next_version.fetch_add(1, Ordering::SeqCst),
            };
            written.push(MemoryStorage::entry(&staged.path, &file));
            files.insert(staged.path, file);
        }
        Ok(written)
    }
}

struct Held(Arc<AtomicBool>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Storage for MemoryStorage {
    fn display(&self, path: &str) -> String {
        format!("mem:{path}")
    }

    fn list(&self, dir: &str) -> Result<Option<Vec<Entry>>, StorageError> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let files = self.files.lock().unwrap();
        let entries: Vec<Entry> = files
            .iter()
            .filter_map(|(path, file)| {
                let name = path.strip_prefix(&prefix)?;
                (!name.contains('/')).then(|| MemoryStorage::entry(name, file))
            })
            .collect();
        let exists = dir.is_empty()
            || !entries.is_empty()
            || files.keys().any(|p| p.starts_with(&prefix))
            || self.dirs.lock().unwrap().iter().any(|d| d == dir);
        Ok(exists.then_some(entries))
    }

    fn read(&self, path: &str) -> Result<Option<Object>, StorageError> {
        Ok(self.files.lock().unwrap().get(path).map(|f| Object {
            bytes: f.bytes.clone(),
            modified: f.modified,
            version: Version(f.version.to_le_bytes().to_vec()),
        }))
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        Box::new(MemoryBatch {
            storage: self,
            staged: Mutex::new(Vec::new()),
        })
    }

    fn delete(&self, path: &str) -> Result<bool, StorageError> {
        self.write_allowed(path)?;
        Ok(self.files.lock().unwrap().remove(path).is_some())
    }

    fn create_dir(&self, dir: &str) -> Result<bool, StorageError> {
        if self.list(dir)?.is_some() {
            return Ok(false);
        }
        self.dirs.lock().unwrap().push(dir.to_string());
        Ok(true)
    }

    fn try_lock(&self) -> Result<Option<Lock>, StorageError> {
        if self.locked.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        Ok(Some(Lock::new(Held(self.locked.clone()))))
    }

    fn lock(&self) -> Result<Lock, StorageError> {
        loop {
            if let Some(lock) = self.try_lock()? {
                return Ok(lock);
            }
            std::thread::yield_now();
        }
    }
}
