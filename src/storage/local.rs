//! A registry in a local directory (the PUBLIC_DIR a web server publishes).
//!
//! Every file is replaced atomically: written to a temporary file in the same directory (a
//! dotfile, so static servers do not publish it and the package scan never sees it), given mode
//! 0644, flushed to disk, then renamed over the old one. A run killed at any moment (or a
//! machine that loses power) leaves either the old or the new file, never a truncated one.
//! The files of a batch are staged first and flushed with one `syncfs` when they are many, so a
//! build that rewrites thousands of files does not pay one disk flush per file. A directory that
//! does not exist yet (`packages/` in a first build) is staged whole under a temporary name and
//! renamed into place once: a killed first build leaves all of it or none.
//!
//! The lock is a `flock` on the directory itself: no lock file is created (nothing that could be
//! published), and the kernel releases it when the process ends, however it ends. Whoever takes
//! the lock removes the temporary files a killed run left.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use super::{Batch, Condition, Entry, Lock, Object, Storage, StorageError, Version};

/// Prefix of hexreg's temporary files. A leading dot: hidden from `Path.wildcard`-style scans
/// and from the static servers operators put in front of a registry.
pub const TEMP_PREFIX: &str = ".hexreg-tmp-";

/// Up to this many staged files are flushed one by one; more, with one `syncfs`.
const FSYNC_EACH_UP_TO: usize = 8;

/// Listings of more entries than this stat them in parallel.
const PARALLEL_STAT_FROM: usize = 256;

/// A registry directory, and its path as the user typed it (messages print paths built from
/// that text, as the task does).
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    shown: String,
    /// Leftovers of killed runs were removed (done once, at the first lock taken).
    cleaned: std::sync::atomic::AtomicBool,
}

impl Clone for LocalDir {
    fn clone(&self) -> Self {
        LocalDir {
            root: self.root.clone(),
            shown: self.shown.clone(),
            cleaned: std::sync::atomic::AtomicBool::new(
                self.cleaned.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }
}

impl LocalDir {
    /// The registry in directory `public_dir` (which need not exist yet).
    pub fn new(public_dir: &str) -> Self {
        LocalDir {
            root: PathBuf::from(public_dir),
            shown: public_dir.to_string(),
            cleaned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `PUBLIC_DIR/REL` as a path.
    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Creates the directory (mode 0755) if it does not exist.
    pub fn create_root(&self) -> Result<(), StorageError> {
        create_dir_all(&self.root).map_err(|source| StorageError::Io {
            action: "create directory",
            path: self.root.display().to_string(),
            source,
        })
    }

    /// Whether `path` lies inside the directory (both resolved): a private key there would be
    /// published.
    pub fn holds(&self, path: &Path) -> bool {
        match (path.canonicalize(), self.root.canonicalize()) {
            (Ok(path), Ok(root)) => path.starts_with(root),
            _ => false,
        }
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.display().to_string();
        move |source| StorageError::Io {
            action,
            path,
            source,
        }
    }

    /// Removes temporary files (and staged directories) killed runs left, in the root and in
    /// each directory directly under it (where batches write).
    fn remove_leftovers(&self) -> Result<(), StorageError> {
        let mut dirs = vec![self.root.clone()];
        for name in list_names(&self.root)
            .map_err(self.io("list", &self.root))?
            .unwrap_or_default()
        {
            let path = self.root.join(&name);
            if name.starts_with(TEMP_PREFIX) {
                remove_temp(&path).map_err(self.io("remove leftover temporary file", &path))?;
            } else if fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
                dirs.push(path);
            }
        }
        for dir in dirs.into_iter().skip(1) {
            for name in list_names(&dir)
                .map_err(self.io("list", &dir))?
                .unwrap_or_default()
            {
                if name.starts_with(TEMP_PREFIX) {
                    let path = dir.join(name);
                    remove_temp(&path).map_err(self.io("remove leftover temporary file", &path))?;
                }
            }
        }
        Ok(())
    }

    /// The lock taken: the first time, leftovers of killed runs are removed (a server that
    /// takes the lock per publish lists the directories once, not per publish; leftovers are
    /// dotfiles that nothing serves, so a later one waits for the next process).
    fn locked(&self, file: fs::File) -> Result<Lock, StorageError> {
        if !self.cleaned.swap(true, std::sync::atomic::Ordering::SeqCst)
            && let Err(e) = self.remove_leftovers()
        {
            self.cleaned
                .store(false, std::sync::atomic::Ordering::SeqCst);
            return Err(e);
        }
        Ok(Lock::new(file))
    }

    fn open_for_lock(&self) -> Result<fs::File, StorageError> {
        fs::File::open(&self.root).map_err(self.io("open to lock", &self.root))
    }
}

/// The version token of a local file: size, modification and change times (nanoseconds), inode
/// and device. Any write to a file changes its ctime, which no tool can set back.
/// Each field is written as a LEB128 varint: tokens are kept for every tarball in the cache,
/// whose size (and checksum time) this halves.
pub fn version_of(meta: &fs::Metadata) -> Version {
    let mut token = Vec::with_capacity(32);
    let mtime = meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec();
    let ctime = meta.ctime().saturating_mul(1_000_000_000) + meta.ctime_nsec();
    // Times before 1970 keep their bits: the cast is a bijection, which is all a token needs.
    for field in [
        meta.size(),
        mtime as u64,
        ctime as u64,
        meta.ino(),
        meta.dev(),
    ] {
        let mut rest = field;
        while rest >= 0x80 {
            token.push((rest as u8) | 0x80);
            rest >>= 7;
        }
        token.push(rest as u8);
    }
    Version(token)
}

fn entry_of(name: String, meta: &fs::Metadata) -> Entry {
    Entry {
        name,
        size: meta.size(),
        modified: meta.mtime(),
        version: version_of(meta),
        regular: meta.is_file(),
    }
}

impl Storage for LocalDir {
    fn display(&self, path: &str) -> String {
        format!("{}/{}", self.shown, path)
    }

    /// As `Path.join` prints it: a trailing slash of PUBLIC_DIR is not doubled.
    fn display_dir(&self, dir: &str) -> String {
        let base = self.shown.trim_end_matches('/');
        if base.is_empty() && self.shown.starts_with('/') {
            format!("/{dir}")
        } else {
            format!("{base}/{dir}")
        }
    }

    fn list(&self, dir: &str) -> Result<Option<Vec<Entry>>, StorageError> {
        let path = self.path(dir);
        let Some(names) = list_names(&path).map_err(self.io("list", &path))? else {
            return Ok(None);
        };
        // `metadata` follows symbolic links, as reading the file does. A name that cannot be
        // stat'ed (a dangling link) is listed as not regular.
        let stat = |name: String| {
            let meta = fs::metadata(path.join(&name));
            match meta {
                Ok(meta) => entry_of(name, &meta),
                Err(_) => Entry {
                    name,
                    size: 0,
                    modified: 0,
                    version: Version(Vec::new()),
                    regular: false,
                },
            }
        };
        let entries = if names.len() > PARALLEL_STAT_FROM {
            names.into_par_iter().map(stat).collect()
        } else {
            names.into_iter().map(stat).collect()
        };
        Ok(Some(entries))
    }

    fn stat(&self, path: &str) -> Result<Option<Entry>, StorageError> {
        let full = self.path(path);
        match fs::metadata(&full) {
            Ok(meta) => Ok(Some(entry_of(path.to_string(), &meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("stat", &full)(e)),
        }
    }

    fn read(&self, path: &str) -> Result<Option<Object>, StorageError> {
        let full = self.path(path);
        let mut file = match fs::File::open(&full) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read", &full)(e)),
        };
        let meta = file.metadata().map_err(self.io("read", &full))?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(self.io("read", &full))?;
        Ok(Some(Object {
            bytes,
            modified: meta.mtime(),
            version: version_of(&meta),
        }))
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        Box::new(LocalBatch {
            dir: self,
            files: Mutex::new(Vec::new()),
            dirs: Mutex::new(Vec::new()),
        })
    }

    fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let full = self.path(path);
        match fs::remove_file(&full) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("remove", &full)(e)),
        }
    }

    fn create_dir(&self, dir: &str) -> Result<bool, StorageError> {
        let path = self.path(dir);
        if path.is_dir() {
            return Ok(false);
        }
        create_dir_all(&path).map_err(self.io("create directory", &path))?;
        Ok(true)
    }

    fn try_lock(&self) -> Result<Option<Lock>, StorageError> {
        let file = self.open_for_lock()?;
        match file.try_lock() {
            Ok(()) => self.locked(file).map(Some),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(self.io("lock", &self.root)(e)),
        }
    }

    fn lock(&self) -> Result<Lock, StorageError> {
        let file = self.open_for_lock()?;
        file.lock().map_err(self.io("lock", &self.root))?;
        self.locked(file)
    }
}

/// A file written beside its final place, not yet renamed over it.
struct Staged {
    temp: PathBuf,
    path: PathBuf,
    rel: String,
    condition: Condition,
}

impl Drop for Staged {
    /// A staged file that was never committed (an error came first) is removed.
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// A new directory filled beside the missing directory it is to become, then put in place with
/// one rename: how a fresh registry gets its `packages/`, without a rename per file.
struct StagedDir {
    temp: PathBuf,
    path: PathBuf,
    /// The files written into it: path relative to the registry, and the entry (which the
    /// final rename of the directory does not change).
    written: Vec<Entry>,
}

impl Drop for StagedDir {
    /// A staged directory that was never committed (an error came first) is removed.
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.temp);
        }
    }
}

/// A batch of writes to a [`LocalDir`].
struct LocalBatch<'a> {
    dir: &'a LocalDir,
    files: Mutex<Vec<Staged>>,
    /// Each directory written to: `Some` when it did not exist and is staged whole.
    dirs: Mutex<Vec<(PathBuf, Option<StagedDir>)>>,
}

impl LocalBatch<'_> {
    /// Writes `bytes` into the staged directory of `parent` if it has one; gives the bytes back
    /// when the directory exists.
    fn put_in_new_dir(
        &self,
        rel: &str,
        parent: &Path,
        name: &str,
        bytes: &[u8],
        condition: &Condition,
    ) -> Result<bool, StorageError> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let index = match dirs.iter().position(|(p, _)| p == parent) {
            Some(i) => i,
            None => {
                let staged =
                    StagedDir::create(parent).map_err(self.dir.io("create directory", parent))?;
                dirs.push((parent.to_path_buf(), staged));
                dirs.len() - 1
            }
        };
        let Some(staged) = dirs.get_mut(index).and_then(|(_, s)| s.as_mut()) else {
            return Ok(false);
        };
        if *condition != Condition::Create {
            return Err(StorageError::Conflict {
                path: self.dir.display(rel),
            });
        }
        let shown = staged.path.join(name);
        let meta = staged
            .write(name, bytes)
            .map_err(self.dir.io("write", &shown))?;
        staged.written.push(entry_of(rel.to_string(), &meta));
        Ok(true)
    }
}

impl Batch for LocalBatch<'_> {
    fn put(&self, rel: &str, bytes: &[u8], condition: Condition) -> Result<(), StorageError> {
        let path = self.dir.path(rel);
        let parent = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.put_in_new_dir(rel, &parent, &name, bytes, &condition)? {
            return Ok(());
        }
        let temp = temp_path(&path);
        let result = (|| -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.set_permissions(fs::Permissions::from_mode(0o644))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(self.dir.io("write", &path)(e));
        }
        let staged = Staged {
            temp,
            path,
            rel: rel.to_string(),
            condition,
        };
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(staged);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<Vec<Entry>, StorageError> {
        let dir = self.dir;
        let mut written = Vec::new();
        let dirs = self.dirs.into_inner().unwrap_or_else(|e| e.into_inner());
        for staged in dirs.into_iter().filter_map(|(_, s)| s) {
            written.extend(
                staged
                    .commit()
                    .map_err(|(path, e)| dir.io("write", &path)(e))?,
            );
        }
        let mut files = self.files.into_inner().unwrap_or_else(|e| e.into_inner());
        if files.is_empty() {
            return Ok(written);
        }
        let temps: Vec<PathBuf> = files.iter().map(|s| s.temp.clone()).collect();
        flush(&temps).map_err(|(path, e)| dir.io("flush to disk", &path)(e))?;
        let mut parents: Vec<PathBuf> = Vec::new();
        for file in &mut files {
            check_condition(dir, file)?;
            fs::rename(&file.temp, &file.path).map_err(dir.io("write", &file.path))?;
            file.temp = PathBuf::new();
            let parent = file.path.parent().unwrap_or(Path::new(".")).to_path_buf();
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
        for parent in parents {
            flush_one(&parent).map_err(dir.io("flush to disk", &parent))?;
        }
        // A rename changes the file's ctime: stat it where it now is.
        let entries: Vec<Result<Entry, StorageError>> = files
            .par_iter()
            .map(|file| {
                fs::metadata(&file.path)
                    .map(|meta| entry_of(file.rel.clone(), &meta))
                    .map_err(dir.io("read", &file.path))
            })
            .collect();
        for entry in entries {
            written.push(entry?);
        }
        Ok(written)
    }
}

/// Refuses to rename a staged file over a file its condition does not allow. The registry's
/// lock keeps hexreg's own runs apart; this catches anything else that wrote meanwhile.
fn check_condition(dir: &LocalDir, file: &Staged) -> Result<(), StorageError> {
    let current = match fs::metadata(&file.path) {
        Ok(meta) => Some(version_of(&meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(dir.io("read", &file.path)(e)),
    };
    let holds = match (&file.condition, current) {
        (Condition::Create, None) => true,
        (Condition::Replace(want), Some(have)) => *want == have,
        _ => false,
    };
    if holds {
        Ok(())
    } else {
        Err(StorageError::Conflict {
            path: dir.display(&file.rel),
        })
    }
}

impl StagedDir {
    /// A new, empty temporary directory (mode 0755) beside `path`, when nothing exists at
    /// `path`; `None` when something does.
    fn create(path: &Path) -> io::Result<Option<StagedDir>> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Ok(_) => return Ok(None),
            Err(e) => return Err(e),
        }
        let parent = path.parent().unwrap_or(Path::new("."));
        create_dir_all(parent)?;
        let temp = temp_path(path);
        // A directory left by a killed run with this process id is not ours to reuse.
        if fs::symlink_metadata(&temp).is_ok() {
            remove_temp(&temp)?;
        }
        fs::DirBuilder::new().mode(0o755).create(&temp)?;
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755))?;
        Ok(Some(StagedDir {
            temp,
            path: path.to_path_buf(),
            written: Vec::new(),
        }))
    }

    /// Writes the file `name` (mode 0644) into the staged directory and returns its metadata.
    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<fs::Metadata> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.temp.join(name))?;
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.metadata()
    }

    /// Flushes the files and the directory to disk, renames the directory into place, and
    /// flushes its parent, so that the directory is durable, whole, before anything written
    /// after this call.
    fn commit(mut self) -> Result<Vec<Entry>, (PathBuf, io::Error)> {
        let mut paths: Vec<PathBuf> = list_names(&self.temp)
            .map_err(|e| (self.temp.clone(), e))?
            .unwrap_or_default()
            .into_iter()
            .map(|name| self.temp.join(name))
            .collect();
        paths.push(self.temp.clone());
        flush(&paths)?;
        fs::rename(&self.temp, &self.path).map_err(|e| (self.path.clone(), e))?;
        self.temp = PathBuf::new();
        let parent = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        flush_one(&parent).map_err(|e| (parent, e))?;
        Ok(std::mem::take(&mut self.written))
    }
}

/// `.hexreg-tmp-NAME.PID.N` beside `path`, N counting this process's temporary files, so that
/// two threads writing the same path at once (a proxy fetching one package for two requests,
/// or creating `packages/` for two) never share a temporary file.
fn temp_path(path: &Path) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!("{TEMP_PREFIX}{name}.{}.{n}", std::process::id()))
}

/// Flushes `paths` (files, or directories that got new entries) to disk: each on its own when
/// they are few, which costs less than flushing the whole file system; else one `syncfs` of the
/// file system holding them (all of them are on it).
fn flush(paths: &[PathBuf]) -> Result<(), (PathBuf, io::Error)> {
    match paths.first() {
        Some(first) if paths.len() > FSYNC_EACH_UP_TO => {
            sync_filesystem(first).map_err(|e| (first.clone(), e))
        }
        _ => paths
            .iter()
            .try_for_each(|path| flush_one(path).map_err(|e| (path.clone(), e))),
    }
}

/// Flushes one file or directory to disk.
fn flush_one(path: &Path) -> io::Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all())
}

/// Flushes the whole file system holding `path` (Linux `syncfs`), or just `path` elsewhere.
fn sync_filesystem(path: &Path) -> io::Result<()> {
    let file = fs::File::open(path)?;
    #[cfg(target_os = "linux")]
    if rustix::fs::syncfs(&file).is_ok() {
        return Ok(());
    }
    file.sync_all()
}

/// `mkdir -p`; a directory it creates gets mode 0755 whatever the umask.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

/// Writes `path` through a temporary file in the same directory (filled by `write`) and a
/// rename, so that readers see the old file or the new one, whole. Not flushed to disk: for
/// files whose loss in a power cut is harmless (the cache).
pub fn write_atomic_unflushed(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_all(dir)?;
    // Dropped on error, the staged file removes its temporary file.
    let mut staged = Staged {
        temp: temp_path(path),
        path: path.to_path_buf(),
        rel: String::new(),
        condition: Condition::Create,
    };
    fs::File::create(&staged.temp)
        .and_then(|mut file| write(&mut file))
        .and_then(|()| fs::set_permissions(&staged.temp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&staged.temp, &staged.path))?;
    staged.temp = PathBuf::new();
    Ok(())
}

/// Removes a temporary file, or a staged directory with what it holds (a symbolic link is
/// removed, never followed).
fn remove_temp(path: &Path) -> io::Result<()> {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// The names in `dir`, sorted bytewise; `None` when it does not exist.
fn list_names(dir: &Path) -> io::Result<Option<Vec<String>>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, LocalDir) {
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalDir::new(tmp.path().join("public").to_str().unwrap());
        local.create_root().unwrap();
        (tmp, local)
    }

    #[test]
    fn writes_are_conditional_on_what_was_read() {
        let (_tmp, local) = dir();
        let first = local.write("names", b"one", Condition::Create).unwrap();
        assert!(matches!(
            local.write("names", b"two", Condition::Create),
            Err(StorageError::Conflict { .. })
        ));
        let read = local.read("names").unwrap().unwrap();
        assert_eq!(read.version, first.version);
        local
            .write("names", b"two", Condition::Replace(read.version.clone()))
            .unwrap();
        // The old version no longer holds.
        assert!(matches!(
            local.write("names", b"three", Condition::Replace(read.version)),
            Err(StorageError::Conflict { .. })
        ));
        assert_eq!(local.read("names").unwrap().unwrap().bytes, b"two");
        // Nothing staged is left behind by the refused writes.
        let names: Vec<String> = local
            .list("")
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["names"]);
    }

    #[test]
    fn a_missing_directory_is_staged_whole_with_its_modes() {
        let (_tmp, local) = dir();
        let batch = local.batch();
        batch.put("packages/a", b"a", Condition::Create).unwrap();
        batch.put("packages/b", b"b", Condition::Create).unwrap();
        // Not visible before commit.
        assert!(local.list("packages").unwrap().is_none());
        let mut written = batch.commit().unwrap();
        written.sort_by(|a, b| a.name.cmp(&b.name));
        let listed = local.list("packages").unwrap().unwrap();
        assert_eq!(listed.len(), 2);
        for (w, l) in written.iter().zip(&listed) {
            assert_eq!(w.name, format!("packages/{}", l.name));
            assert_eq!(w.version, l.version, "{}", w.name);
        }
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&local.path("packages")), 0o755);
        assert_eq!(mode(&local.path("packages/a")), 0o644);
    }

    #[test]
    fn an_uncommitted_batch_leaves_nothing() {
        let (_tmp, local) = dir();
        local.create_dir("tarballs").unwrap();
        {
            let batch = local.batch();
            batch
                .put("tarballs/x.tar", b"x", Condition::Create)
                .unwrap();
            batch.put("packages/x", b"x", Condition::Create).unwrap();
        }
        assert_eq!(local.list("tarballs").unwrap().unwrap(), Vec::new());
        assert!(local.list("packages").unwrap().is_none());
    }

    #[test]
    fn the_lock_is_exclusive_and_removes_leftovers() {
        let (_tmp, local) = dir();
        fs::write(local.path(".hexreg-tmp-names.1"), b"junk").unwrap();
        let lock = local.try_lock().unwrap().unwrap();
        assert!(!local.path(".hexreg-tmp-names.1").exists());
        assert!(local.try_lock().unwrap().is_none());
        drop(lock);
        assert!(local.try_lock().unwrap().is_some());
    }
}
