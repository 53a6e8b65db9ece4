//! The keys file on disk: read, written atomically with mode 0600, and changed under a lock.
//! Its own small file module (not the registry's storage): the keys file lives outside the
//! published directory, beside the operator's other secrets.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{FILE_MODE, KeysError, KeysFile};

/// Temporary files are dotfiles with this prefix, in the keys file's directory.
const TEMP_PREFIX: &str = ".hexreg-tmp-";

/// Identifies one version of the file: size, times, inode and device. Two reads of a file
/// that has not changed give equal stamps; any write gives a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp([i64; 6]);

impl Stamp {
    pub(super) fn of(meta: &fs::Metadata) -> Stamp {
        Stamp([
            meta.size() as i64,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime_nsec()
                .wrapping_add(meta.ctime().wrapping_mul(1_000_000_000)),
            meta.ino() as i64,
            meta.dev() as i64,
        ])
    }
}

/// Creates `dir` and its parents, mode 0755, if missing.
fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

pub(super) fn shown(path: &Path) -> String {
    path.display().to_string()
}

pub(super) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeysError {
    let path = shown(path);
    move |source| KeysError::Io {
        action,
        path,
        source,
    }
}

/// Reads the keys file at `path`, and its version token (to tell later whether it changed). A
/// missing file is [`KeysError::Missing`].
pub(super) fn read_text(path: &Path) -> Result<(String, Stamp), KeysError> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeysError::Missing { path: shown(path) });
        }
        Err(e) => return Err(io_error("open", path)(e)),
    };
    // The token of the file read, not of whatever the path names a moment later.
    let version = Stamp::of(&file.metadata().map_err(io_error("read", path))?);
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(io_error("read", path))?;
    Ok((text, version))
}

/// Parses the text of the keys file at `path`: errors are [`KeysError::Invalid`].
pub(super) fn parse_file(path: &Path, text: &str) -> Result<KeysFile, KeysError> {
    KeysFile::parse(text).map_err(|e| match e {
        KeysError::Syntax { line, problem } => KeysError::Invalid {
            path: shown(path),
            line,
            problem,
        },
        other => other,
    })
}

/// Reads and parses the keys file at `path`. A missing file is [`KeysError::Missing`]; a bad
/// line is [`KeysError::Invalid`].
pub fn read_file(path: &Path) -> Result<KeysFile, KeysError> {
    let (text, _) = read_text(path)?;
    parse_file(path, &text)
}

/// Writes `keys` to `path`, mode 0600 whatever the umask: to a temporary file in the same
/// directory, flushed to disk, then renamed over `path` (and the directory flushed), so that
/// readers such as a running server see the old file or the new one, whole. The directory is
/// created (mode 0755) if missing.
pub fn write_file(path: &Path, keys: &KeysFile) -> Result<(), KeysError> {
    let dir = parent_dir(path);
    create_dir_all(dir).map_err(io_error("create directory", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!("{TEMP_PREFIX}{name}.{}", std::process::id()));
    let result = write_temp_and_rename(&temp, path, keys.render().as_bytes());
    if result.is_err() {
        // Best effort: the temporary file may not even exist.
        let _ = fs::remove_file(&temp);
    }
    result?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("flush directory", dir))
}

fn write_temp_and_rename(temp: &Path, path: &Path, bytes: &[u8]) -> Result<(), KeysError> {
    // A file left by a killed run of this process id: it holds only hashes; start afresh.
    match fs::remove_file(temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error("remove leftover temporary file", temp)(e));
        }
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(temp)
        .map_err(io_error("create", temp))?;
    // The umask can only clear bits, but say the mode outright all the same.
    fs::set_permissions(temp, fs::Permissions::from_mode(FILE_MODE))
        .map_err(io_error("set the mode of", temp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", temp))?;
    fs::rename(temp, path).map_err(io_error("replace", path))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// What [`update_file`] did besides the change.
#[derive(Debug)]
pub struct Updated<T> {
    /// What the change returned.
    pub value: T,
    /// The file did not exist and was created.
    pub created: bool,
    /// The file was readable by group or others with this mode; it is 0600 now.
    pub tightened_from: Option<u32>,
}

/// Reads the keys file at `path` (a new [`KeysFile`] if it is missing and `create` is set),
/// applies `change` and writes the result with [`write_file`]. The directory holding the file
/// is locked (`flock`) meanwhile, so that two commands changing the same file at once do not
/// lose either change. Nothing is written if `change` fails.
pub fn update_file<T>(
    path: &Path,
    create: bool,
    change: impl FnOnce(&mut KeysFile) -> Result<T, KeysError>,
) -> Result<Updated<T>, KeysError> {
    let dir = parent_dir(path);
    if create {
        create_dir_all(dir).map_err(io_error("create directory", dir))?;
    }
    let lock = match fs::File::open(dir) {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeysError::Missing { path: shown(path) });
        }
        Err(e) => return Err(io_error("open to lock", dir)(e)),
    };
    lock.lock().map_err(io_error("lock", dir))?;
    let (mut keys, created, mode) = match fs::metadata(path) {
        Ok(meta) => (read_file(path)?, false, meta.mode() & 0o777),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            (KeysFile::new(), true, FILE_MODE)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeysError::Missing { path: shown(path) });
        }
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let value = change(&mut keys)?;
    write_file(path, &keys)?;
    // The lock is released when `lock` is dropped, after the rename.
    drop(lock);
    Ok(Updated {
        value,
        created,
        tightened_from: (mode & 0o077 != 0).then_some(mode),
    })
}
