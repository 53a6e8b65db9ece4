//! Which file a request path names, and opening it: the confinement rules of `hexreg serve`.
//!
//! A request path is percent-decoded one segment at a time. It is refused (the caller
//! answers 404) when a segment decodes to something holding `/` or NUL, when any segment
//! starts with a dot (`.`, `..`, dotfiles such as hexreg's `.hexreg-tmp-*` temporary files),
//! when it names PUBLIC_DIR itself or ends with `/`, or when an escape is malformed.
//!
//! What is left is opened beneath the PUBLIC_DIR handle one segment at a time with `openat`
//! and `O_NOFOLLOW`, so the common case can neither leave PUBLIC_DIR nor be raced by a
//! symlink swapped in meanwhile. When a symlink is met, the path is canonicalized instead:
//! the real path must lie under PUBLIC_DIR and contain no dot segment (a symlink may point
//! elsewhere inside PUBLIC_DIR, never outside it nor at a dotfile). Files are opened without
//! blocking on FIFOs and must be regular files; the metadata comes from the open handle, so
//! ETag, Content-Length and the bytes sent all describe the same file even if `hexreg build`
//! renames a new one over it meanwhile.

use crate::format::encoding::percent_decode;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Files up to this size are read whole by the task that opens them; larger ones are
/// streamed in chunks.
pub const READ_WHOLE_LIMIT: u64 = 256 * 1024;

/// The relative path a request path (as in the request line, without the query) names, or
/// `None` when the request must get a 404.
pub fn request_path(raw: &str) -> Option<PathBuf> {
    let rest = raw.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let mut path = PathBuf::new();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            if i + 1 == segments.len() {
                // `/` or `/dir/`: a directory listing, which is never served.
                return None;
            }
            // `//`: collapse.
            continue;
        }
        let decoded = percent_decode(segment)?;
        if decoded.is_empty()
            || decoded.starts_with(b".")
            || decoded.contains(&b'/')
            || decoded.contains(&0)
        {
            return None;
        }
        path.push(OsStr::from_bytes(&decoded));
    }
    if path.as_os_str().is_empty() {
        return None;
    }
    Some(path)
}

/// PUBLIC_DIR: its canonical path, and the directory itself held open so that files are
/// looked up beneath it with `openat`.
pub struct Root {
    path: PathBuf,
    dir: OwnedFd,
}

impl Root {
    /// `canonical` must be canonical (no symlinks, no `..`).
    pub fn open(canonical: PathBuf) -> io::Result<Root> {
        let dir = rustix::fs::open(
            &canonical,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            path: canonical,
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An open regular file under PUBLIC_DIR, described by the metadata of the open handle.
pub struct Opened {
    pub file: File,
    pub len: u64,
    /// Strong validator: `"SIZE-MTIME.NSEC-INODE"` in hex, quoted.
    pub etag: String,
    /// Modification time in whole seconds since the epoch, when it can be given as an HTTP
    /// date (1970 to 9999).
    pub modified_secs: Option<u64>,
}

impl Opened {
    /// The whole content: `len` bytes, or an error if the file shrank meanwhile (something
    /// rewrites it in place instead of renaming a new file over it).
    pub fn read_whole(&self) -> io::Result<Bytes> {
        let mut buf = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        (&self.file).take(self.len).read_to_end(&mut buf)?;
        if buf.len() as u64 != self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being read: something rewrites it in place instead of \
                 renaming a new file over it",
            ));
        }
        Ok(Bytes::from(buf))
    }
}

/// Opens `rel` (from [`request_path`]) under `root`. `Ok(None)`: nothing to serve there (404).
/// `Err`: an unexpected I/O error (permissions, disk), for a 500 and a log line.
pub fn open(root: &Root, rel: &Path) -> io::Result<Option<Opened>> {
    let file = match open_beneath(root, rel) {
        Ok(file) => file,
        // A symlink on the way, or a file where a directory should be: resolve the whole path
        // and check where it leads.
        Err(e) if e == Errno::LOOP || e == Errno::NOTDIR => match open_resolved(root, rel)? {
            Some(file) => file,
            None => return Ok(None),
        },
        Err(e) if means_absent(&e.into()) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let len = meta.len();
    let etag = format!(
        "\"{:x}-{:x}.{:x}-{:x}\"",
        len,
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    let modified_secs = u64::try_from(meta.mtime())
        .ok()
        .filter(|secs| *secs < LAST_HTTP_DATE_SECS);
    Ok(Some(Opened {
        file,
        len,
        etag,
        modified_secs,
    }))
}

/// The common case, in one `openat` per path segment from the PUBLIC_DIR handle, none of
/// them following a symlink (`ELOOP` or `ENOTDIR` when one is met). Never blocks on a FIFO.
fn open_beneath(root: &Root, rel: &Path) -> rustix::io::Result<File> {
    let names: Vec<&OsStr> = rel.iter().collect();
    let Some((last, dirs)) = names.split_last() else {
        return Err(Errno::NOENT);
    };
    let mut dir: Option<OwnedFd> = None;
    for name in dirs {
        let base = dir.as_ref().map_or(root.dir.as_fd(), |d| d.as_fd());
        let next = rustix::fs::openat(
            base,
            *name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        dir = Some(next);
    }
    let base = dir.as_ref().map_or(root.dir.as_fd(), |d| d.as_fd());
    let fd = rustix::fs::openat(base, *last, FILE_FLAGS, Mode::empty())?;
    Ok(File::from(fd))
}

/// Read-only, no controlling terminal, not following a final symlink, not blocking on FIFOs.
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// A path with symlinks: canonicalized, it must stay under PUBLIC_DIR and name no dotfile.
fn open_resolved(root: &Root, rel: &Path) -> io::Result<Option<File>> {
    let real = match std::fs::canonicalize(root.path.join(rel)) {
        Ok(real) => real,
        Err(e) if means_absent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(inside) = real.strip_prefix(&root.path) else {
        return Ok(None);
    };
    let mut any = false;
    for component in inside.components() {
        match component {
            Component::Normal(name) if !name.as_bytes().starts_with(b".") => any = true,
            _ => return Ok(None),
        }
    }
    if !any {
        return Ok(None);
    }
    match rustix::fs::open(&real, FILE_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(e) => {
            let e = io::Error::from(e);
            if means_absent(&e) { Ok(None) } else { Err(e) }
        }
    }
}

/// Errors that only say there is no such file (or that the path cannot name one).
fn means_absent(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::NotFound {
        return true;
    }
    [
        Errno::NOENT,
        Errno::NOTDIR,
        Errno::LOOP,
        Errno::NAMETOOLONG,
        Errno::INVAL,
    ]
    .iter()
    .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// First second of the year 10000, which HTTP dates cannot express.
const LAST_HTTP_DATE_SECS: u64 = 253_402_300_800;

/// `Sun, 06 Nov 1994 08:49:37 GMT` for a time in seconds since the epoch (below
/// [`LAST_HTTP_DATE_SECS`]).
pub fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.min(LAST_HTTP_DATE_SECS - 1)))
}

/// Seconds since the epoch of an HTTP date, or `None` when it is not one.
pub fn parse_http_date(text: &str) -> Option<u64> {
    let time: SystemTime = httpdate::parse_http_date(text).ok()?;
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths() {
        assert_eq!(request_path("/names"), Some(PathBuf::from("names")));
        assert_eq!(
            request_path("/packages/acme_a"),
            Some(PathBuf::from("packages/acme_a"))
        );
        assert_eq!(
            request_path("//tarballs//a-1.0.0.tar"),
            Some(PathBuf::from("tarballs/a-1.0.0.tar"))
        );
        assert_eq!(request_path("/n%61mes"), Some(PathBuf::from("names")));
        for refused in [
            "",
            "*",
            "/",
            "/packages/",
            "/..",
            "/../secret",
            "/packages/../names",
            "/%2e%2e/secret",
            "/%2E%2e%2fsecret",
            "/..%2fsecret",
            "/packages%2facme_a",
            "/.htpasswd",
            "/tarballs/.hexreg-tmp-123",
            "/%2ehidden",
            "/./names",
            "/names%00",
            "/names%",
            "/names%2",
            "/names%zz",
        ] {
            assert_eq!(request_path(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        // Never panics, even past year 9999.
        assert!(http_date(u64::MAX).starts_with("Fri, 31 Dec 9999"));
    }
}
