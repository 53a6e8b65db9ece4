//! [`KeyStore`]: the keys of a keys file as a server holds them, shared between tasks and
//! reloaded when the file changes.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::{Duration, Instant};

use super::file::{Stamp, parse_file, read_text};
use super::{CHECK_INTERVAL, KeysError, KeysFile, Permission};

/// A key that [`KeyStore::authenticate`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The label of its line in the keys file.
    pub label: String,
    /// What it may do.
    pub permission: Permission,
    /// The packages it may change; `None`: every package.
    pub scope: Option<super::Scope>,
}

/// What a [`KeyStore`] reports of its reloads.
#[derive(Debug)]
pub enum Reload {
    /// The file changed and was read again; it now holds this many keys.
    Loaded {
        /// Keys in the new file.
        keys: usize,
    },
    /// The file changed but cannot be read or is invalid: the store accepts no key until a
    /// valid file is back ([`KeyStore::broken`]). Reported at each attempt to read it.
    Failed(KeysError),
    /// The file was deleted: no key is valid any more.
    Deleted,
}

/// How a store looks at its file.
struct Watch {
    /// When the file was last looked at.
    checked: Instant,
    /// The version of the file last read, valid or not.
    seen: Stamp,
    /// The file could not be read at the last look (reported already).
    unreadable: bool,
}

/// The keys of a keys file, for a server: shared by many threads or tokio tasks
/// (`Send + Sync`), and reloaded when the file changes.
///
/// [`KeyStore::authenticate`] looks at the file's size, times, inode and device at most once
/// per [`CHECK_INTERVAL`] (one `stat`; a blocking call, but a cheap one), and reads it again
/// when they changed. A changed file that cannot be read or parsed leaves the store with the
/// keys it had; that, and each successful reload, is told to the `report` callback given to
/// [`KeyStore::open`], which a server would log.
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<Arc<KeysFile>>,
    /// Why the file cannot be used, while it cannot: then no key is accepted.
    broken: RwLock<Option<String>>,
    watch: Mutex<Watch>,
    interval: Duration,
    report: Box<dyn Fn(&Reload) + Send + Sync>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Loads the keys file at `path`. Fails if it is missing (saying to create keys with
    /// `hexreg key add`), unreadable or invalid. `report` is called on each later reload; it
    /// runs with the store's watch lock held, so it must not call [`KeyStore::refresh`].
    pub fn open(
        path: impl Into<PathBuf>,
        report: impl Fn(&Reload) + Send + Sync + 'static,
    ) -> Result<KeyStore, KeysError> {
        Self::open_with_interval(path, CHECK_INTERVAL, report)
    }

    /// [`KeyStore::open`], looking at the file at most once per `interval` (zero: on every
    /// call).
    pub fn open_with_interval(
        path: impl Into<PathBuf>,
        interval: Duration,
        report: impl Fn(&Reload) + Send + Sync + 'static,
    ) -> Result<KeyStore, KeysError> {
        let path = path.into();
        let (text, seen) = read_text(&path)?;
        let keys = parse_file(&path, &text)?;
        Ok(KeyStore {
            path,
            keys: RwLock::new(Arc::new(keys)),
            broken: RwLock::new(None),
            watch: Mutex::new(Watch {
                checked: Instant::now(),
                seen,
                unreadable: false,
            }),
            interval,
            report: Box::new(report),
        })
    }

    /// The keys file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys in use.
    pub fn keys(&self) -> Arc<KeysFile> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The label and permission of the key `presented` (the `authorization` header), if the
    /// keys file has it; first reloads the file if it is due a look and changed. Compares in
    /// constant time, as [`KeysFile::authenticate`].
    ///
    /// The key may be the header itself (hex clients) or the password of HTTP Basic
    /// credentials (`Basic base64(ANY:KEY)`, browsers). While the file is broken
    /// ([`KeyStore::broken`]), no key is accepted.
    pub fn authenticate(&self, presented: &str) -> Option<Grant> {
        self.check(false);
        if self.broken().is_some() {
            return None;
        }
        let keys = self.keys();
        let presented = super::presented_key(presented);
        keys.authenticate_entry(&presented).map(|entry| Grant {
            label: entry.label().to_string(),
            permission: entry.permission(),
            scope: entry.scope().cloned(),
        })
    }

    /// Why the keys file cannot be used (unreadable or invalid since the server read it),
    /// while it cannot; `None` when the keys in use are the file's.
    pub fn broken(&self) -> Option<String> {
        self.check(false);
        self.broken
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_broken(&self, why: Option<String>) {
        *self.broken.write().unwrap_or_else(PoisonError::into_inner) = why;
    }

    /// The key labelled `label` as the keys file has it now (reloaded first if it is due a
    /// look and changed); `None` once it is revoked. Bearer tokens name their key this way.
    pub fn by_label(&self, label: &str) -> Option<super::KeyEntry> {
        self.check(false);
        self.keys().get(label).cloned()
    }

    /// Looks at the file now, whenever it was last looked at, and reloads it if it changed.
    pub fn refresh(&self) {
        self.check(true);
    }

    fn check(&self, now: bool) {
        let mut watch = if now {
            self.watch.lock().unwrap_or_else(PoisonError::into_inner)
        } else {
            match self.watch.try_lock() {
                Ok(watch) => watch,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                // Another thread is looking: use the keys as they are.
                Err(TryLockError::WouldBlock) => return,
            }
        };
        if !now && watch.checked.elapsed() < self.interval {
            return;
        }
        watch.checked = Instant::now();
        let meta = fs::metadata(&self.path);
        if let Err(e) = &meta
            && e.kind() == std::io::ErrorKind::NotFound
        {
            // Deleted: no keys (revoking every key by deleting the file works).
            if !watch.unreadable || self.broken.read().is_ok_and(|b| b.is_some()) {
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) =
                    Arc::new(KeysFile::new());
                self.set_broken(None);
                watch.unreadable = true;
                (self.report)(&Reload::Deleted);
            }
            return;
        }
        let unchanged = meta
            .map(|meta| Stamp::of(&meta) == watch.seen)
            .unwrap_or(false);
        if unchanged && !watch.unreadable {
            return;
        }
        let (text, version) = match read_text(&self.path) {
            Ok(read) => read,
            Err(error) => {
                // Looked at again at each interval, and reported each time, until it can be
                // read; meanwhile no key is accepted.
                watch.unreadable = true;
                self.set_broken(Some(error.to_string()));
                (self.report)(&Reload::Failed(error));
                return;
            }
        };
        watch.unreadable = false;
        // Valid or not, this version is not read again.
        watch.seen = version;
        match parse_file(&self.path, &text) {
            Ok(keys) => {
                let count = keys.list().count();
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                self.set_broken(None);
                (self.report)(&Reload::Loaded { keys: count });
            }
            Err(error) => {
                self.set_broken(Some(error.to_string()));
                (self.report)(&Reload::Failed(error));
            }
        }
    }
}
