//! The registry on disk: where its files are, how they are replaced, and the
//! `* creating|updating|removing PATH` lines that report each change.
//!
//! Every file is replaced atomically: written to a temporary file in the same directory (a
//! dotfile, so static servers do not publish it and the package scan never sees it), given mode
//! 0644, flushed to disk, then renamed over the old one. A build killed at any moment (or a
//! machine that loses power) leaves either the old or the new file, never a truncated one.
//! Many files are staged first and flushed with one `syncfs`, so a build that rewrites
//! thousands of files does not pay one disk flush per file. A directory that does not exist
//! yet (`packages/` in a first build) is staged whole under a temporary name and renamed into
//! place once ([`StagedDir`]): a killed first build leaves all of it or none.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Prefix of hexreg's temporary files. A leading dot: hidden from `Path.wildcard`-style scans
/// and from the static servers operators put in front of a registry.
pub const TEMP_PREFIX: &str = ".hexreg-tmp-";

/// The directory layout of a registry, and the PUBLIC_DIR text as the user typed it (the task
/// prints paths built from that text).
pub struct Store {
    root: PathBuf,
    shown: String,
}

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Creating,
    Updating,
    Removing,
}

impl Store {
    pub fn new(public_dir: &str) -> Self {
        Store {
            root: PathBuf::from(public_dir),
            shown: public_dir.to_string(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `PUBLIC_DIR/REL` as a path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `PUBLIC_DIR/REL` as the task prints it: the argument text, a slash, the relative path.
    pub fn shown(&self, rel: &str) -> String {
        format!("{}/{}", self.shown, rel)
    }

    /// The tarballs directory as the task prints it (`Path.join`, so a trailing slash of
    /// PUBLIC_DIR is not doubled).
    pub fn shown_tarballs_dir(&self) -> String {
        let base = self.shown.trim_end_matches('/');
        if base.is_empty() && self.shown.starts_with('/') {
            "/tarballs".to_string()
        } else {
            format!("{base}/tarballs")
        }
    }

    pub fn tarballs_dir(&self) -> PathBuf {
        self.root.join("tarballs")
    }

    pub fn packages_dir(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// Reads `PUBLIC_DIR/REL` if it exists.
    pub fn read_existing(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(rel);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Replaces `PUBLIC_DIR/REL` with `bytes` atomically, creating its directory if needed.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let staged = self.stage(rel, bytes)?;
        commit(vec![staged])
    }

    /// Writes `bytes` to a temporary file beside `PUBLIC_DIR/REL`, to be put in place by
    /// [`commit`].
    pub fn stage(&self, rel: &str, bytes: &[u8]) -> Result<Staged> {
        let path = self.path(rel);
        let dir = path.parent().unwrap_or(Path::new("."));
        create_dir_all(dir)?;
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
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        Ok(Staged { temp, path })
    }

    /// Removes `PUBLIC_DIR/REL`.
    pub fn remove(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
    }
}

/// `mkdir -p`; a directory it creates gets mode 0755 whatever the umask.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// An exclusive lock on a registry directory, held until dropped. It is a `flock` on the
/// directory itself: no lock file is created (nothing that could be published), and the kernel
/// releases it when the process ends, however it ends.
pub struct DirLock {
    _dir: fs::File,
}

/// How to behave when another run holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait for the other run to finish (saying so on stderr).
    Wait,
    /// Fail at once.
    Fail,
}

impl DirLock {
    /// Locks `dir` (which must exist).
    pub fn acquire(dir: &Path, wait: LockWait) -> Result<DirLock> {
        let file = fs::File::open(dir)
            .with_context(|| format!("cannot open {} to lock it", dir.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok(DirLock { _dir: file }),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", dir.display()));
            }
        }
        if wait == LockWait::Fail {
            anyhow::bail!(
                "another hexreg run is changing {} right now; run again when it has finished (or leave out --no-wait to wait for it)",
                dir.display()
            );
        }
        eprintln!(
            "waiting for another hexreg run on {} to finish...",
            dir.display()
        );
        file.lock()
            .with_context(|| format!("cannot lock {}", dir.display()))?;
        Ok(DirLock { _dir: file })
    }
}

/// A file written beside its final place, not yet renamed over it.
pub struct Staged {
    temp: PathBuf,
    path: PathBuf,
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
pub struct StagedDir {
    temp: PathBuf,
    path: PathBuf,
}

impl Drop for StagedDir {
    /// A staged directory that was never committed (an error came first) is removed.
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.temp);
        }
    }
}

impl StagedDir {
    /// A new, empty temporary directory (mode 0755) beside `path`, when nothing exists at
    /// `path`; `None` when something does.
    pub fn create(path: &Path) -> Result<Option<StagedDir>> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Ok(_) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let parent = path.parent().unwrap_or(Path::new("."));
        create_dir_all(parent)?;
        let temp = temp_path(path);
        // A directory left by a killed run with this process id is not ours to reuse.
        if fs::symlink_metadata(&temp).is_ok() {
            remove_temp(&temp)?;
        }
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&temp)
            .and_then(|()| fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)))
            .with_context(|| format!("cannot create directory {}", temp.display()))?;
        Ok(Some(StagedDir {
            temp,
            path: path.to_path_buf(),
        }))
    }

    /// Writes the file `name` (mode 0644) into the staged directory and returns its metadata,
    /// which the final rename of the directory does not change.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<fs::Metadata> {
        let path = self.temp.join(name);
        let shown = self.path.join(name);
        (|| -> io::Result<fs::Metadata> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.write_all(bytes)?;
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
            file.metadata()
        })()
        .with_context(|| format!("cannot write {}", shown.display()))
    }

    /// Flushes the files and the directory to disk, renames the directory into place, and
    /// flushes its parent, so that the directory is durable, whole, before anything written
    /// after this call.
    pub fn commit(mut self) -> Result<()> {
        let mut paths: Vec<PathBuf> = list_dir(&self.temp)?
            .into_iter()
            .map(|name| self.temp.join(name))
            .collect();
        paths.push(self.temp.clone());
        flush(&paths)?;
        fs::rename(&self.temp, &self.path)
            .with_context(|| format!("cannot create directory {}", self.path.display()))?;
        self.temp = PathBuf::new();
        flush_one(self.path.parent().unwrap_or(Path::new(".")))
    }
}

/// `.hexreg-tmp-NAME.PID` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!("{TEMP_PREFIX}{name}.{}", std::process::id()))
}

/// Puts staged files in place: flushes their data to disk (one `syncfs` for all of them), renames
/// each over its final path, in order, then flushes the directories holding them, so the
/// renames are durable before anything written after this call.
pub fn commit(mut staged: Vec<Staged>) -> Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    flush(&staged.iter().map(|s| s.temp.clone()).collect::<Vec<_>>())?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in &mut staged {
        fs::rename(&file.temp, &file.path)
            .with_context(|| format!("cannot write {}", file.path.display()))?;
        file.temp = PathBuf::new();
        let dir = file.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        flush_one(&dir)?;
    }
    Ok(())
}

/// Flushes `paths` (files, or directories that got new entries) to disk: each on its own when
/// they are few, which costs less than flushing the whole file system; else one `syncfs` of the
/// file system holding them (all of them are on it).
fn flush(paths: &[PathBuf]) -> Result<()> {
    match paths.first() {
        Some(first) if paths.len() > FSYNC_EACH_UP_TO => sync_filesystem(first),
        _ => paths.iter().try_for_each(|path| flush_one(path)),
    }
}

/// Flushes one file or directory to disk.
fn flush_one(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {} to disk", path.display()))
}

/// Up to this many staged files are flushed one by one; more, with one `syncfs`.
const FSYNC_EACH_UP_TO: usize = 8;

/// Flushes the whole file system holding `path` (Linux `syncfs`), or just `path` elsewhere.
fn sync_filesystem(path: &Path) -> Result<()> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs only reads the descriptor, which `file` keeps open for the call.
        if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    file.sync_all()
        .with_context(|| format!("cannot flush {} to disk", path.display()))
}

/// Writes `path` through a temporary file in the same directory (filled by `write`) and a
/// rename, so that readers see the old file or the new one, whole. Not flushed to disk: for
/// files whose loss in a power cut is harmless (the cache).
pub fn write_atomic_unflushed(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_all(dir)?;
    // Dropped on error, the staged file removes its temporary file.
    let mut staged = Staged {
        temp: temp_path(path),
        path: path.to_path_buf(),
    };
    fs::File::create(&staged.temp)
        .and_then(|mut file| write(&mut file))
        .and_then(|()| fs::set_permissions(&staged.temp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&staged.temp, &staged.path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    staged.temp = PathBuf::new();
    Ok(())
}

/// Removes temporary files (and staged directories) a killed run left in `dir`.
pub fn remove_leftover_temp_files(dir: &Path) -> Result<()> {
    for name in list_dir(dir)? {
        if name.starts_with(TEMP_PREFIX) {
            remove_temp(&dir.join(name))?;
        }
    }
    Ok(())
}

/// Removes a temporary file, or a staged directory with what it holds (a symbolic link is
/// removed, never followed).
fn remove_temp(path: &Path) -> Result<()> {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .with_context(|| format!("cannot remove leftover temporary file {}", path.display()))
}

/// The names in `dir`, sorted bytewise; none when it does not exist.
pub fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The lines a run prints on stdout, kept in the order the task prints them, which is not the
/// order hexreg acts in (stale packages are removed last, for crash safety).
#[derive(Default)]
pub struct Report {
    lines: Vec<(u8, String)>,
}

/// Where a line goes in the task's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    PublicKey = 0,
    TarballsDir = 1,
    Packages = 2,
    Removals = 3,
    Names = 4,
    Versions = 5,
    /// Tarballs deleted by `remove`, after the index no longer lists them.
    Deletions = 6,
}

impl Report {
    pub fn line(&mut self, stage: Stage, text: String) {
        self.lines.push((stage as u8, text));
    }

    pub fn change(&mut self, stage: Stage, change: Change, shown_path: String) {
        let verb = match change {
            Change::Creating => "creating",
            Change::Updating => "updating",
            Change::Removing => "removing",
        };
        self.line(stage, format!("* {verb} {shown_path}"));
    }

    /// Moves the lines of `other` into this report.
    pub fn append(&mut self, other: &mut Report) {
        self.lines.append(&mut other.lines);
    }

    /// Prints the lines in the task's order (stable within a stage), unless `quiet`, and forgets
    /// them.
    pub fn print(&mut self, quiet: bool) {
        if quiet {
            self.lines.clear();
            return;
        }
        self.lines.sort_by_key(|(stage, _)| *stage);
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for (_, line) in self.lines.drain(..) {
            let _ = writeln!(out, "{line}");
        }
    }
}
