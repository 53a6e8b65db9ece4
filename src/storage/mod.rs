//! Where a registry's files are kept: the operations the engine needs of a directory or a
//! bucket, and no more.
//!
//! What belongs here: how files are listed, read, written, deleted and locked in a directory or
//! a bucket ([`Location`] says which). What must not: the registry's layout or formats (which
//! files exist, what they hold, what must be written together is the engine's to say), or
//! anything of a command line.
//!
//! - list one directory level (name, size, modification time, a version token);
//! - read a file (its bytes and version token);
//! - write files atomically, each either create-only or replace-if-unchanged (the version read
//!   earlier), in batches that become durable together ([`Batch`]);
//! - delete a file;
//! - hold an exclusive lock on the registry.
//!
//! Paths are relative to the registry's root, `/`-separated (`packages/foo`), as
//! [`crate::format::resource_path::ResourcePath`] spells them. [`local::LocalDir`] keeps a registry in a
//! directory; [`object::ObjectStorage`] in an S3-compatible bucket, under `s3://BUCKET/PREFIX`.

pub mod aws_profile;
pub mod local;
mod location;
pub mod object;

pub use location::Location;

use std::any::Any;
use std::fmt;

/// Identifies one version of a file's content: for a local file its size, times, inode and
/// device; for an object its ETag or version id. Two reads of a file that has not changed give
/// equal tokens; any write gives a new one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version(pub Vec<u8>);

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Version(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A file in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name within the listed directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, whole Unix seconds (floor).
    pub modified: i64,
    /// Its version token.
    pub version: Version,
    /// A regular file (or object). Listings also give what is not (a directory, a device), so
    /// that the engine can name it in an error rather than skip it silently.
    pub regular: bool,
}

/// A file read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its content.
    pub bytes: Vec<u8>,
    /// Modification time, whole Unix seconds (floor).
    pub modified: i64,
    /// Its version token, as of the read.
    pub version: Version,
}

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Only if nothing is at the path.
    Create,
    /// Only if the file at the path is still at this version.
    Replace(Version),
}

impl Condition {
    /// `Create` when nothing was there, `Replace` of what was.
    pub fn after(existing: Option<&Version>) -> Condition {
        match existing {
            None => Condition::Create,
            Some(version) => Condition::Replace(version.clone()),
        }
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system or the server refused an operation.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `list`, ...).
        action: &'static str,
        /// The file, as the user knows it.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A conditional write found the file changed, or a create-only write found a file.
    #[error(
        "{path} changed while hexreg was writing it (another program wrote it, or a run not using the lock): nothing more was written; run the command again"
    )]
    Conflict {
        /// The file, as the user knows it.
        path: String,
    },
    /// The lock is held by another run (and the caller chose not to wait).
    #[error("another hexreg run is changing {root} right now; run again when it has finished")]
    Locked {
        /// The registry, as the user knows it.
        root: String,
    },
    /// This run's lock can no longer be trusted to be its own (it could not be renewed before
    /// it could expire, or another run took it over): nothing more is written.
    #[error(
        "stopped before writing {path}: this run's lock {lock} {reason}, so another run may be changing the registry; nothing more was written. What was written stays readable (every file is replaced whole); check the connection to the store, then run the command again"
    )]
    LockLost {
        /// The lock, as the user knows it.
        lock: String,
        /// The file that was not written (or deleted).
        path: String,
        /// Why the lock is no longer ours.
        reason: String,
    },
}

/// An exclusive lock on a registry, released when dropped.
pub struct Lock(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl Lock {
    /// Wraps whatever keeps a storage's lock held while it lives.
    pub fn new(guard: impl Any + Send + Sync) -> Lock {
        Lock(Box::new(guard))
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lock")
    }
}

/// Writes staged together, made durable and put in place by [`Batch::commit`]: each file whole
/// or not at all, none visible before commit. [`Batch::put`] may be called from many threads
/// at once.
pub trait Batch: Sync {
    /// Stages `bytes` for `path`, to be written if `condition` holds at commit.
    fn put(&self, path: &str, bytes: &[u8], condition: Condition) -> Result<(), StorageError>;

    /// Puts every staged file in place, durably, and returns each one's new listing entry
    /// (`name` being the full path), in no particular order. Fails with
    /// [`StorageError::Conflict`] when a condition does not hold; files committed before that
    /// one stay.
    fn commit(self: Box<Self>) -> Result<Vec<Entry>, StorageError>;
}

/// A registry's files: a directory, a bucket, or memory in tests.
pub trait Storage: Send + Sync {
    /// How `path` is shown to users in messages and the `* creating PATH` lines.
    fn display(&self, path: &str) -> String;

    /// How the directory `dir` is shown when it is created (by default as [`Storage::display`]).
    fn display_dir(&self, dir: &str) -> String {
        self.display(dir)
    }

    /// The files directly in `dir` ("" for the root), sorted by name; `None` when `dir` does not
    /// exist.
    fn list(&self, dir: &str) -> Result<Option<Vec<Entry>>, StorageError>;

    /// The listing entry of the one file at `path` (`name` being the full path), without
    /// reading it or listing its directory where the storage can; `None` when there is none.
    fn stat(&self, path: &str) -> Result<Option<Entry>, StorageError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        Ok(self.list(dir)?.and_then(|entries| {
            entries.into_iter().find(|e| e.name == name).map(|mut e| {
                e.name = path.to_string();
                e
            })
        }))
    }

    /// The file at `path`, or `None` when there is none.
    fn read(&self, path: &str) -> Result<Option<Object>, StorageError>;

    /// A new batch of writes.
    fn batch(&self) -> Box<dyn Batch + '_>;

    /// Writes one file: a batch of one.
    fn write(&self, path: &str, bytes: &[u8], condition: Condition) -> Result<Entry, StorageError> {
        let batch = self.batch();
        batch.put(path, bytes, condition)?;
        let mut written = batch.commit()?;
        written.pop().ok_or_else(|| StorageError::Io {
            action: "write",
            path: self.display(path),
            source: std::io::Error::other("the storage reported no file written"),
        })
    }

    /// Deletes the file at `path`; `false` when there was none.
    fn delete(&self, path: &str) -> Result<bool, StorageError>;

    /// Makes sure directory `dir` exists where directories exist; `true` when it was created.
    fn create_dir(&self, dir: &str) -> Result<bool, StorageError>;

    /// Takes the registry's exclusive lock if it is free; `None` when another run holds it.
    fn try_lock(&self) -> Result<Option<Lock>, StorageError>;

    /// Takes the registry's exclusive lock, waiting for another run to release it.
    fn lock(&self) -> Result<Lock, StorageError>;
}
