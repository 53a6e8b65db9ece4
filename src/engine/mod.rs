//! The registry engine: every operation that reads or changes a registry, over a
//! [`Storage`], for every front end (the command line, `serve`).
//!
//! What belongs here: the operations and the order of their writes, their cache, their typed
//! errors ([`Error`], [`Problem`]). What must not: flags, printing, exit codes or HTTP (the
//! front ends word what to do about an error), or parsing of a format (that is
//! [`crate::format`]).
//!
//! A [`Registry`] is a repository name, its signing key and a storage whose lock it holds. Its
//! operations ([`Registry::build`], [`Registry::add`], [`Registry::remove`],
//! [`Registry::retire`], [`Registry::unretire`], [`Registry::add_advisory`],
//! [`Registry::remove_advisory`], [`Registry::set_policy`], [`Registry::remove_policy`]) decide
//! every change before writing anything,
//! then write in an order that leaves a registry clients accept after any write: what grows
//! goes tarballs, `packages/*`, then `names` and `versions`; what shrinks goes the index first
//! and deletes tarballs last. Each records what it changed in [`Changes`]. [`verify()`] reads
//! a registry and returns every problem it finds. What a `packages/NAME` records beyond the
//! tarballs (retirements, release dates, advisories) is kept by every write of it.

pub mod advisories;
pub mod audit;
pub mod build;
pub mod cache;
pub mod changes;
pub mod docs;
pub mod lock_mirror;
pub mod manage;
pub mod mirror;
pub mod policies;
mod problem;
mod reader;
pub mod settings;
pub mod verify;
mod writer;

use crate::format::registry::ReleaseError;
use crate::format::registry::ResourceError;
use crate::format::signing::{PrivateKey, PublicKey, SignError};
use crate::storage::{Lock, Storage, StorageError};

pub use build::BuildOptions;
pub use cache::Cache;
pub use changes::{Change, ChangeKind, Changes, Stage};
pub use manage::{NewTarball, PackageRecord};
pub use problem::{Problem, Replace};
pub use reader::Reader;
pub use settings::{Settings, SettingsError};
pub use verify::{Verification, verify};

/// Why an operation failed. Nothing was written unless the error says so.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Signing failed: nothing of the batch being signed was put in place.
    #[error("cannot sign {path}, so none of the files signed with it were written: {source}")]
    Sign {
        /// The file, as shown.
        path: String,
        /// The signer's error.
        source: SignError,
    },
    /// Some tarballs of a build are invalid (each problem names its file).
    #[error(
        "{} invalid tarball{} in {dir}: nothing was written; fix or remove {} and run again",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        if problems.len() == 1 { "it" } else { "them" }
    )]
    InvalidTarballs {
        /// The tarballs directory, as shown.
        dir: String,
        /// One per invalid tarball.
        problems: Vec<Problem>,
    },
    /// Some tarballs given to `add` are invalid or conflict with the registry.
    #[error("nothing was added: fix the tarballs above and run again")]
    AddRefused {
        /// One per refused tarball.
        problems: Vec<Problem>,
    },
    /// A registry file cannot be read back.
    #[error("{path} {source}")]
    Resource {
        /// The file, as shown.
        path: String,
        /// What is wrong with the file.
        source: ResourceError,
    },
    /// A registry file is not signed by the key this run signs with.
    #[error("{path} {source}: it was not signed by {key}; `hexreg verify` lists every problem")]
    Untrusted {
        /// The file, as shown.
        path: String,
        /// What is wrong with the file.
        source: ResourceError,
        /// The private key, as the user named it.
        key: String,
    },
    /// An index belongs to another repository, or is not an index.
    #[error("{path} {source}")]
    WrongIndex {
        /// The file, as shown.
        path: String,
        /// What is wrong with the file.
        source: ResourceError,
    },
    /// A release record in a `packages/NAME` file cannot be used.
    #[error("{path}: {source}")]
    BadRelease {
        /// The file, as shown.
        path: String,
        /// What is wrong with the record.
        source: ReleaseError,
    },
    /// Only one of `names` and `versions` exists.
    #[error(
        "{root} has only one of `names` and `versions`: rebuild the registry from its tarballs with `hexreg build`"
    )]
    HalfIndex {
        /// The registry, as shown.
        root: String,
    },
    /// A docs tarball is refused.
    #[error("{path} {source}")]
    BadDocs {
        /// Where it would go, as shown.
        path: String,
        /// What is wrong with the docs tarball.
        source: crate::format::docs::DocsError,
    },
    /// No such package.
    #[error("package `{package}` is not in the registry {root} (no {path})")]
    NoPackage {
        /// The package.
        package: String,
        /// The registry, as shown.
        root: String,
        /// Its missing `packages/NAME` file, as shown.
        path: String,
    },
    /// An advisory refused.
    #[error(transparent)]
    Advisory(#[from] crate::format::advisory::AdvisoryError),
    /// No such advisory.
    #[error("package `{package}` has no advisory `{id}` (it has: {})", if have.is_empty() { "none".to_string() } else { have.join(", ") })]
    NoAdvisory {
        /// The package.
        package: String,
        /// The id asked for.
        id: String,
        /// The ids there are.
        have: Vec<String>,
    },
    /// A policy refused.
    #[error(transparent)]
    Policy(#[from] crate::format::policy::PolicyError),
    /// No such policy.
    #[error(
        "there is no policy `{name}` ({path} does not exist; `hexreg policy list` shows the policies)"
    )]
    NoPolicy {
        /// The policy.
        name: String,
        /// Its missing file, as shown.
        path: String,
    },
    /// The audit trail cannot be written or read.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// No such version.
    #[error("package `{package}` has no version `{version}` (it has: {})", have.join(", "))]
    NoVersion {
        /// The package.
        package: String,
        /// The version asked for.
        version: String,
        /// The versions there are.
        have: Vec<String>,
    },
}

/// Reports the progress of long phases (reading tarballs, signing packages); by default,
/// nothing.
pub trait Progress: Sync {
    /// A phase of `total` steps begins.
    fn start(&self, _what: &'static str, _total: usize) {}
    /// `n` more steps are done.
    fn advance(&self, _n: usize) {}
    /// The phase is over.
    fn finish(&self) {}
}

/// A [`Progress`] that reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// The key that signs a registry, and how the user named it (for messages).
pub struct Signer {
    /// The private key.
    pub key: PrivateKey,
    /// Its public half, which verifies what the registry holds.
    pub public: PublicKey,
    /// How the user named it, e.g. the `--private-key` path.
    pub name: String,
}

impl Signer {
    /// `key`, named `name` in messages.
    pub fn new(key: PrivateKey, name: &str) -> Self {
        let public = key.public_key();
        Signer {
            key,
            public,
            name: name.to_string(),
        }
    }
}

/// Takes a storage's lock for a registry opened with [`Registry::open_deferred`].
pub type TakeLock<'a> = Box<dyn Fn() -> Result<Lock, StorageError> + Send + Sync + 'a>;

/// A registry open for changes: its storage, whose lock it holds (or takes before its first
/// write), its repository name, its signing key, the cache of what earlier runs read, and the
/// changes made so far.
pub struct Registry<'a> {
    storage: &'a dyn Storage,
    repo: String,
    signer: &'a Signer,
    cache: Cache,
    progress: &'a dyn Progress,
    changes: Changes,
    /// What a build did to each release (see [`Registry::take_release_changes`]).
    release_changes: Vec<changes::ReleaseChange>,
    release_dates: bool,
    lock: std::sync::Mutex<Option<Lock>>,
    /// With [`Registry::open_deferred`]: how to take the lock, and whether it was taken after
    /// the registry was read.
    take_lock: Option<TakeLock<'a>>,
    locked_late: std::sync::atomic::AtomicBool,
    /// What this run read from each package's new tarballs for the API's records, by package.
    fresh_info: std::collections::HashMap<String, Vec<crate::format::release_info::ReleaseInfo>>,
}

impl<'a> Registry<'a> {
    /// The registry of repository `repo` in `storage`, whose lock `lock` is. Without a cache
    /// ([`Registry::with_cache`]), every tarball and registry file is read.
    pub fn open(storage: &'a dyn Storage, repo: &str, signer: &'a Signer, lock: Lock) -> Self {
        Registry::with_lock(storage, repo, signer, Some(lock), None)
    }

    /// The registry of repository `repo` in `storage`, whose lock `take_lock` takes just before
    /// the first write, so that an operation with nothing to write (a no-op build) takes no
    /// lock: on a bucket the lock costs a PUT and a DELETE. Every write is conditional on the
    /// version read, so when another run changed the registry between this one's reads and
    /// its lock, a write fails with [`StorageError::Conflict`] and [`Registry::locked_late`]
    /// tells the caller to run the operation again, now under the lock.
    pub fn open_deferred(
        storage: &'a dyn Storage,
        repo: &str,
        signer: &'a Signer,
        take_lock: TakeLock<'a>,
    ) -> Self {
        Registry::with_lock(storage, repo, signer, None, Some(take_lock))
    }

    fn with_lock(
        storage: &'a dyn Storage,
        repo: &str,
        signer: &'a Signer,
        lock: Option<Lock>,
        take_lock: Option<TakeLock<'a>>,
    ) -> Self {
        Registry {
            storage,
            repo: repo.to_string(),
            signer,
            cache: Cache::disabled(repo),
            progress: &Silent,
            changes: Changes::default(),
            release_changes: Vec::new(),
            release_dates: false,
            lock: std::sync::Mutex::new(lock),
            take_lock,
            locked_late: std::sync::atomic::AtomicBool::new(false),
            fresh_info: std::collections::HashMap::new(),
        }
    }

    /// Whether the lock was taken after the registry was read (by a registry opened with
    /// [`Registry::open_deferred`]): then a [`StorageError::Conflict`] may only mean that
    /// another run came first, and the operation, run again, reads under the lock.
    pub fn locked_late(&self) -> bool {
        self.locked_late.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes sure the lock is held before a write.
    fn lock_for_writing(&self) -> Result<(), Error> {
        let mut held = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.is_none()
            && let Some(take) = &self.take_lock
        {
            *held = Some(take()?);
            self.locked_late
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Uses `cache` to skip what earlier runs read.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = cache;
        self
    }

    /// With `on`, every release that enters the registry without a recorded `published_at`
    /// gets one (Hex 2.5's cooldown reads it): its tarball's modification time, which for
    /// `add` (and a publish through `serve`) is when the tarball was stored. Dates already
    /// recorded are kept either way; off (the default), nothing new is dated, so a registry
    /// without dates is written byte for byte as the task writes it.
    pub fn with_release_dates(mut self, on: bool) -> Self {
        self.release_dates = on;
        self
    }

    /// Reports long phases to `progress`.
    pub fn with_progress(mut self, progress: &'a dyn Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The public half of the signing key, which verifies what the registry holds.
    pub fn public_key(&self) -> &PublicKey {
        &self.signer.public
    }

    /// The storage.
    pub fn storage(&self) -> &'a dyn Storage {
        self.storage
    }

    /// Takes the changes made so far (also after a failed operation: what it did before
    /// failing).
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// What the last build did to each release that was there before it (added, replaced by
    /// other bytes, removed), for the audit trail; empty after a build that created the
    /// registry.
    pub fn take_release_changes(&mut self) -> Vec<changes::ReleaseChange> {
        std::mem::take(&mut self.release_changes)
    }

    /// Closes the registry, releasing its lock, and gives back the cache to save.
    pub fn into_cache(self) -> Cache {
        self.cache
    }

    /// `storage.display(path)`, made one line (file names may hold anything).
    fn shown(&self, path: &str) -> String {
        crate::format::tarball::one_line(&self.storage.display(path))
    }
}
