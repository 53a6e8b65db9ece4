//! Hex package tarballs (format version 3): reading and validating them as hex_core's
//! `unpack(Tarball, memory)` does, and writing them as hex_core's `create/3` does.
//!
//! The outer file is a plain tar of exactly four entries: `VERSION` (`3`), `CHECKSUM` (hex of
//! the inner checksum), `metadata.config` (Erlang terms, see [`crate::metadata`]) and
//! `contents.tar.gz` (a gzip'd tar of the package files). The inner checksum is
//! sha256(VERSION ‖ metadata.config ‖ contents.tar.gz); the outer checksum is sha256 of the
//! whole file. `contents.tar.gz` is checked by streaming it through gzip and tar, never held
//! inflated in memory.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::metadata::{self, Metadata, MetadataError};

/// hex_core's `tarball_max_size`: the whole file.
pub const MAX_TARBALL_SIZE: u64 = 16 * 1024 * 1024;
/// hex_core's limit on `metadata.config`.
pub const MAX_METADATA_SIZE: u64 = 1024 * 1024;
/// hex_core's `tarball_max_uncompressed_size`: `contents.tar.gz` once inflated.
pub const MAX_UNCOMPRESSED_SIZE: u64 = 128 * 1024 * 1024;
/// hex_core's limit on `VERSION`.
const MAX_VERSION_SIZE: u64 = 32;
/// hex_core's limit on `CHECKSUM`.
const MAX_CHECKSUM_SIZE: u64 = 128;
/// The four entries of an outer tarball, in the order hex_core writes them.
pub const ENTRIES: [&str; 4] = ["VERSION", "CHECKSUM", "metadata.config", "contents.tar.gz"];
/// mtime hex_core gives every entry: 2000-01-01T00:00:00Z.
const ENTRY_MTIME: u64 = 946_684_800;

/// What is wrong with a tarball. Texts are meant to follow the file's name, on one line: text
/// taken from the tarball (entry names, VERSION, tar errors quoting header bytes) has its
/// control characters escaped and is cut to a few hundred characters.
#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    #[error("is {size} bytes, over Hex's limit of {limit} bytes (16 MiB)", limit = MAX_TARBALL_SIZE)]
    TooBig { size: u64 },
    #[error(
        "is empty (0 bytes): a Hex tarball is a tar file holding VERSION, CHECKSUM, metadata.config and contents.tar.gz"
    )]
    Empty,
    #[error(
        "is gzip-compressed, but a Hex package tarball is a plain (uncompressed) tar: build it with `mix hex.build` or `rebar3 hex build`"
    )]
    Gzipped,
    #[error("is not a readable tar file ({0}); it may be truncated or not a Hex tarball")]
    NotTar(String),
    #[error("holds no files; expected VERSION, CHECKSUM, metadata.config and contents.tar.gz")]
    NoEntries,
    #[error(
        "has an unexpected entry `{0}`; a Hex tarball holds only VERSION, CHECKSUM, metadata.config and contents.tar.gz"
    )]
    ExtraEntry(String),
    #[error("has `{name}` as a {kind}, but it must be a regular file")]
    NotAFile { name: String, kind: String },
    #[error("has the entry `{0}` twice")]
    DuplicateEntry(String),
    #[error("has `{name}` of {size} bytes, over Hex's limit of {limit} bytes")]
    EntryTooBig { name: String, size: u64, limit: u64 },
    #[error("lacks {}", .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    MissingEntries(Vec<&'static str>),
    #[error(
        "has tarball format VERSION `{0}`, expected `3` (formats 1 and 2 date from 2014 and are not accepted by current clients)"
    )]
    BadVersion(String),
    #[error("has a CHECKSUM that is not hexadecimal: {0:?}")]
    ChecksumNotHex(String),
    #[error("has a CHECKSUM of {0} bytes, expected 32 (64 hex digits)")]
    ChecksumLength(usize),
    #[error(
        "has a wrong CHECKSUM: it says {expected}, but sha256(VERSION ‖ metadata.config ‖ contents.tar.gz) is {actual}; the tarball was altered after it was built"
    )]
    ChecksumMismatch { expected: String, actual: String },
    #[error("has an invalid metadata.config: {0}")]
    Metadata(#[from] MetadataError),
    #[error("has a contents.tar.gz that is not valid gzip data: {0}")]
    ContentsNotGzip(String),
    #[error("has a contents.tar.gz that is not a valid gzip'd tar: {0}")]
    ContentsNotTar(String),
    #[error("has a contents.tar.gz that inflates past Hex's limit of {limit} bytes (128 MiB)", limit = MAX_UNCOMPRESSED_SIZE)]
    ContentsTooBig,
}

/// What the registry needs from a valid tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tarball {
    /// The parsed and normalised `metadata.config`.
    pub metadata: Metadata,
    /// The 32 bytes of `CHECKSUM` (verified).
    pub inner_checksum: [u8; 32],
    /// sha256 of the whole file.
    pub outer_checksum: [u8; 32],
}

/// sha256 of a whole tarball file: the release's outer checksum.
pub fn outer_checksum(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Reads and validates a tarball held in memory (at most [`MAX_TARBALL_SIZE`] bytes).
pub fn read(bytes: &[u8]) -> Result<Tarball, TarballError> {
    let size = bytes.len() as u64;
    if size > MAX_TARBALL_SIZE {
        return Err(TarballError::TooBig { size });
    }
    if bytes.is_empty() {
        return Err(TarballError::Empty);
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(TarballError::Gzipped);
    }
    let entries = outer_entries(bytes)?;
    let [version, checksum, metadata_config, contents] = entries;

    if version != b"3" {
        return Err(TarballError::BadVersion(version.escape_ascii().to_string()));
    }
    let expected = decode_checksum(checksum)?;
    let actual: [u8; 32] = inner_checksum(version, metadata_config, contents);
    if expected != actual {
        return Err(TarballError::ChecksumMismatch {
            expected: hex_upper(&expected),
            actual: hex_upper(&actual),
        });
    }
    let metadata = metadata::parse(metadata_config)?;
    check_contents(contents)?;
    Ok(Tarball {
        metadata,
        inner_checksum: expected,
        outer_checksum: outer_checksum(bytes),
    })
}

/// sha256(VERSION ‖ metadata.config ‖ contents.tar.gz).
pub fn inner_checksum(version: &[u8], metadata_config: &[u8], contents: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(version);
    h.update(metadata_config);
    h.update(contents);
    h.finalize().into()
}

/// The four entries' bytes, in [`ENTRIES`] order, whatever their order in the file.
fn outer_entries(bytes: &[u8]) -> Result<[&[u8]; 4], TarballError> {
    let mut found: [Option<&[u8]>; 4] = [None; 4];
    // Entries' data is sliced from `bytes`, never read through the archive: seeking past it
    // spares zeroing and filling a 32 KiB buffer per entry, which is what skipping costs a
    // reader that cannot seek. Seeking does not check that the data and its padding lie in the
    // file, which skipping did: that is checked here, with the same error.
    let mut archive = tar::Archive::new(io::Cursor::new(bytes));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| TarballError::NotTar(tar_error(&e, None)))?;
    let mut any = false;
    let mut previous: Option<&str> = None;
    let mut last_is_whole = true;
    for entry in entries {
        let entry = entry.map_err(|e| TarballError::NotTar(tar_error(&e, previous)))?;
        any = true;
        let path = entry.path_bytes().into_owned();
        let Some(slot) = ENTRIES.iter().position(|e| e.as_bytes() == path.as_slice()) else {
            return Err(TarballError::ExtraEntry(one_line(
                &String::from_utf8_lossy(&path),
            )));
        };
        let name = ENTRIES[slot].to_string();
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(TarballError::NotAFile {
                name,
                kind: entry_kind(kind),
            });
        }
        let size = entry.size();
        let limit = match slot {
            0 => MAX_VERSION_SIZE,
            1 => MAX_CHECKSUM_SIZE,
            2 => MAX_METADATA_SIZE,
            _ => MAX_TARBALL_SIZE,
        };
        if size > limit {
            return Err(TarballError::EntryTooBig { name, size, limit });
        }
        // The archive reads from a slice: the entry's data sits at raw_file_position.
        let start = entry.raw_file_position() as usize;
        let end = start
            .checked_add(size as usize)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| {
                TarballError::NotTar(format!("entry `{name}` runs past the end of the file"))
            })?;
        if found[slot].is_some() {
            return Err(TarballError::DuplicateEntry(name));
        }
        found[slot] = Some(&bytes[start..end]);
        previous = Some(ENTRIES[slot]);
        last_is_whole = padding_ends_within(&entry, bytes.len());
    }
    // A seek past the end ends the walk as if the archive ended there: only the last entry can
    // be cut short.
    if !last_is_whole {
        let skip = io::Error::other("unexpected EOF during skip");
        return Err(TarballError::NotTar(tar_error(&skip, previous)));
    }
    if !any {
        return Err(TarballError::NoEntries);
    }
    match found {
        [Some(a), Some(b), Some(c), Some(d)] => Ok([a, b, c, d]),
        _ => Err(TarballError::MissingEntries(
            ENTRIES
                .iter()
                .zip(found)
                .filter(|(_, f)| f.is_none())
                .map(|(n, _)| *n)
                .collect(),
        )),
    }
}

/// Longest text taken from a tarball that an error message quotes, in characters.
pub const MAX_QUOTED: usize = 200;

/// `text` fit for one line of an error message: control characters escaped (`\n`,
/// `\u{1b}`), cut to [`MAX_QUOTED`] characters. For any text that comes from a tarball or a
/// file name (a package name or version from metadata.config, an entry name, a path).
pub fn one_line(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_QUOTED {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Words for an error of the tar reader, met after the entry `previous` (`None`: at the
/// start). The tar crate's own texts quote raw header bytes, useless when the file is not a
/// tar at all; the common cases get plain words instead.
fn tar_error(e: &io::Error, previous: Option<&str>) -> String {
    let text = e.to_string();
    let header = match previous {
        None => "its first 512-byte block".to_string(),
        Some(name) => format!("the 512-byte block after entry `{}`", one_line(name)),
    };
    if text.contains("failed to read entire block") {
        format!("it ends in the middle of a tar header ({header})")
    } else if text.contains("when getting cksum") || text.contains("checksum mismatch") {
        format!("{header} is not a valid tar header")
    } else if text.contains("when getting size") {
        format!("{header} is a tar header with an invalid size field")
    } else {
        one_line(&text)
    }
}

/// "directory", "symbolic link", … for a tar entry type that is not a regular file.
fn entry_kind(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Directory => "directory".into(),
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        other => format!("tar entry of type {}", [other.as_byte()].escape_ascii()),
    }
}

/// Decodes CHECKSUM as hex_core's `decode_base16/1` does: either case, byte pairs, a single
/// trailing odd byte (e.g. a newline) ignored.
fn decode_checksum(text: &[u8]) -> Result<[u8; 32], TarballError> {
    let pairs = text.chunks_exact(2);
    let mut out = Vec::with_capacity(32);
    for pair in pairs {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => {
                return Err(TarballError::ChecksumNotHex(
                    String::from_utf8_lossy(text).into_owned(),
                ));
            }
        }
    }
    <[u8; 32]>::try_from(out.as_slice()).map_err(|_| TarballError::ChecksumLength(out.len()))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Uppercase hex, as CHECKSUM is written.
pub fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A reader that counts what comes through it, fails past a limit, and remembers whether the
/// failure came from below (the gzip layer) rather than from the tar reader above it.
struct Counted<R> {
    inner: R,
    left: u64,
    exceeded: bool,
    inner_error: Option<String>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                self.inner_error = Some(e.to_string());
                return Err(e);
            }
        };
        if n as u64 > self.left {
            self.exceeded = true;
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Streams `contents.tar.gz` through gzip and tar, as hex_core's memory unpack does, within the
/// 128 MiB inflated limit: every entry is read, then the rest of the gzip stream, so padding
/// after the tar's end counts too and the gzip trailer (CRC, size) is checked.
fn check_contents(contents: &[u8]) -> Result<(), TarballError> {
    if !contents.starts_with(&[0x1f, 0x8b]) {
        return Err(TarballError::ContentsNotGzip(
            "it does not start with the gzip magic bytes 1f 8b".into(),
        ));
    }
    if contents_valid_in_memory(contents) {
        return Ok(());
    }
    let counted = Counted {
        inner: flate2::read::GzDecoder::new(contents),
        left: MAX_UNCOMPRESSED_SIZE,
        exceeded: false,
        inner_error: None,
    };
    let mut archive = tar::Archive::new(counted);
    let mut previous: Option<String> = None;
    let tar_result = (|| -> io::Result<()> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            previous = Some(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
            io::copy(&mut entry, &mut io::sink())?;
        }
        Ok(())
    })();
    let mut counted = archive.into_inner();
    let drain_result = match tar_result {
        Ok(()) => io::copy(&mut counted, &mut io::sink()).map(drop),
        Err(e) => Err(e),
    };
    if counted.exceeded {
        return Err(TarballError::ContentsTooBig);
    }
    if let Some(gzip_error) = counted.inner_error {
        return Err(TarballError::ContentsNotGzip(one_line(&gzip_error)));
    }
    drain_result.map_err(|e| TarballError::ContentsNotTar(tar_error(&e, previous.as_deref())))
}

/// Largest inflated `contents.tar.gz` checked in memory; larger ones are streamed.
const IN_MEMORY_LIMIT: usize = 4 * 1024 * 1024;

/// The fast path of [`check_contents`], for the common small package: when the gzip trailer
/// announces at most [`IN_MEMORY_LIMIT`] bytes, inflate into a buffer of that size with
/// libdeflate (several times faster than zlib's streaming inflate, CRC and size checked) and
/// walk the tar in memory. True only when all of it is valid; anything else (a trailer that
/// lies, an error of any kind) is left to the streaming path, which gives the precise error.
fn contents_valid_in_memory(contents: &[u8]) -> bool {
    let Some(trailer) = contents
        .len()
        .checked_sub(4)
        .and_then(|at| contents.get(at..))
    else {
        return false;
    };
    let announced = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    if announced > IN_MEMORY_LIMIT {
        return false;
    }
    // libdeflate skips a header CRC (FHCRC) without checking it; zlib checks it.
    if contents.get(3).is_none_or(|flags| flags & 0x02 != 0) {
        return false;
    }
    INFLATE.with_borrow_mut(|(decompressor, buffer)| {
        // Grows to the largest contents seen on this thread, at most IN_MEMORY_LIMIT; bytes
        // past `announced` from an earlier tarball are never read.
        if buffer.len() < announced {
            buffer.resize(announced, 0);
        }
        let buffer = &mut buffer[..announced];
        match decompressor.gzip_decompress(contents, buffer) {
            Ok(n) if n == announced => tar_walks_to_the_end(buffer),
            _ => false,
        }
    })
}

std::thread_local! {
    /// A libdeflate decompressor and its output buffer per thread, kept between tarballs.
    static INFLATE: std::cell::RefCell<(libdeflater::Decompressor, Vec<u8>)> =
        std::cell::RefCell::new((libdeflater::Decompressor::new(), Vec::new()));
}

/// Whether `tar` is a tar archive whose every entry can be read to its end. Entries' data is
/// skipped, not copied: each entry's data and padding must lie within `tar`, which is what
/// reading them would check (seeking past the end does not fail). Sparse entries, whose data
/// is laid out differently, are left to the streaming path.
fn tar_walks_to_the_end(tar: &[u8]) -> bool {
    let mut archive = tar::Archive::new(io::Cursor::new(tar));
    let Ok(entries) = archive.entries_with_seek() else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        if entry.header().entry_type().is_gnu_sparse() {
            return false;
        }
        if !padding_ends_within(&entry, tar.len()) {
            return false;
        }
    }
    true
}

/// Whether `entry`'s data and the padding after it lie within an archive of `len` bytes: what
/// reading (or skipping) them checks, and seeking past them does not.
fn padding_ends_within<R: io::Read>(entry: &tar::Entry<'_, R>, len: usize) -> bool {
    entry
        .size()
        .checked_next_multiple_of(512)
        .and_then(|padded| padded.checked_add(entry.raw_file_position()))
        .is_some_and(|end| end <= len as u64)
}

/// Writes an outer tarball of the given entries, in the given order, as hex_core does (ustar,
/// mode 0644, uid/gid 0, mtime 2000-01-01). Any names may be given, which lets tests build
/// malformed tarballs; [`create`] builds a valid one.
pub fn write_outer(entries: &[(&str, &[u8])]) -> Vec<u8> {
    write_tar(entries.iter().map(|(n, d)| (*n, *d, 0o644)))
}

fn write_tar<'a>(entries: impl Iterator<Item = (&'a str, &'a [u8], u32)>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data, mode) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(ENTRY_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        // Writing into a Vec cannot fail; a name tar cannot store yields a tarball without
        // that entry, which tests of malformed tarballs see as such.
        let _ = builder.append_data(&mut header, name, data);
    }
    builder.into_inner().unwrap_or_default()
}

/// Writes `contents.tar.gz`: a gzip'd tar of the given files (path, bytes).
pub fn write_contents(files: &[(&str, &[u8])]) -> Vec<u8> {
    let tar = write_tar(files.iter().map(|(n, d)| (*n, *d, 0o644)));
    gzip(&tar)
}

/// gzip as hex_core's reproducible `gzip/1`: zero mtime, OS byte 0, default level.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .operating_system(0)
        .write(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Builds a valid tarball from a `metadata.config` text and the package's files.
pub fn create(metadata_config: &[u8], files: &[(&str, &[u8])]) -> Vec<u8> {
    let contents = write_contents(files);
    let checksum = hex_upper(&inner_checksum(b"3", metadata_config, &contents));
    write_outer(&[
        ("VERSION", b"3"),
        ("CHECKSUM", checksum.as_bytes()),
        ("metadata.config", metadata_config),
        ("contents.tar.gz", &contents),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &[u8] = b"{<<\"app\">>,<<\"foo\">>}.\n{<<\"name\">>,<<\"foo\">>}.\n{<<\"requirements\">>,[]}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/tarballs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn reads_genuine_tarballs() {
        let bytes = fixture("acme_edge-0.1.0.tar");
        let t = read(&bytes).unwrap();
        assert_eq!(t.metadata.name, "acme_edge");
        assert_eq!(t.metadata.version, "0.1.0");
        assert_eq!(t.outer_checksum, outer_checksum(&bytes));
        assert_eq!(t.metadata.requirements.len(), 4);
    }

    #[test]
    fn created_tarballs_read_back() {
        let bytes = create(META, &[("lib/foo.ex", b"defmodule Foo do end")]);
        let t = read(&bytes).unwrap();
        assert_eq!(t.metadata.name, "foo");
        assert_eq!(t.metadata.app, "foo");
    }

    #[test]
    fn entry_order_does_not_matter() {
        let contents = write_contents(&[("a", b"a")]);
        let sum = hex_upper(&inner_checksum(b"3", META, &contents));
        let bytes = write_outer(&[
            ("contents.tar.gz", &contents),
            ("metadata.config", META),
            ("CHECKSUM", sum.to_lowercase().as_bytes()),
            ("VERSION", b"3"),
        ]);
        assert!(read(&bytes).is_ok());
    }

    #[test]
    fn checksum_with_trailing_newline_is_tolerated() {
        let c = hex_upper(&[7; 32]) + "\n";
        assert_eq!(decode_checksum(c.as_bytes()).unwrap(), [7; 32]);
        assert!(matches!(
            decode_checksum(b"zz"),
            Err(TarballError::ChecksumNotHex(_))
        ));
        assert!(matches!(
            decode_checksum(b"abcd"),
            Err(TarballError::ChecksumLength(2))
        ));
    }

    #[test]
    fn rejects_the_obvious() {
        assert!(matches!(read(b""), Err(TarballError::Empty)));
        assert!(matches!(read(&gzip(b"x")), Err(TarballError::Gzipped)));
        assert!(matches!(read(&[7u8; 1000]), Err(TarballError::NotTar(_))));
        let good = create(META, &[]);
        assert!(matches!(
            read(&good[..700]),
            Err(TarballError::NotTar(_)) | Err(TarballError::MissingEntries(_))
        ));
    }

    #[test]
    fn a_file_cut_in_the_last_entry_is_refused() {
        let good = create(META, &[("lib/foo.ex", b"defmodule Foo do end")]);
        // `contents.tar.gz` comes last: its data ends before the padding and the two zero
        // blocks that end the archive.
        let contents = outer_entries(&good).unwrap()[3];
        let data_end = contents.as_ptr() as usize - good.as_ptr() as usize + contents.len();
        assert!(
            !data_end.is_multiple_of(512),
            "the test needs padding after the data"
        );
        let padded_end = data_end.next_multiple_of(512);
        // Whole without the end-of-archive blocks: still read, as hex_core reads it.
        assert!(read(&good[..padded_end]).is_ok());
        // Cut in the padding, or in the data.
        for cut in [padded_end - 1, data_end + 1, data_end] {
            let e = read(&good[..cut]).unwrap_err();
            assert!(
                matches!(&e, TarballError::NotTar(m) if m.contains("unexpected EOF during skip")),
                "cut at {cut}: {e}"
            );
        }
        let e = read(&good[..data_end - 1]).unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
    }

    #[test]
    fn the_in_memory_walk_refuses_what_reading_would() {
        let tar = write_tar(
            [
                ("a.txt", &b"hello"[..], 0o644),
                ("b.txt", &[7u8; 600][..], 0o644),
            ]
            .into_iter(),
        );
        assert!(tar_walks_to_the_end(&tar));
        // Cut in the last entry's data, in its padding, in the first entry's data, or in the
        // second header: reading stops short.
        let b_data = 512 * 3;
        for len in [
            b_data + 100,
            b_data + 600,
            b_data + 1000,
            512 + 100,
            1024 + 100,
        ] {
            assert!(!tar_walks_to_the_end(&tar[..len]), "cut at {len}");
            assert!(
                !contents_valid_in_memory(&gzip(&tar[..len])),
                "cut at {len}"
            );
            assert!(check_contents(&gzip(&tar[..len])).is_err(), "cut at {len}");
        }
        assert!(contents_valid_in_memory(&gzip(&tar)));
    }

    #[test]
    fn zip_bomb_is_stopped_while_streaming() {
        // 200 MiB of zeros compresses to ~200 KiB.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..200 {
            std::io::Write::write_all(&mut enc, &zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        let sum = hex_upper(&inner_checksum(b"3", META, &bomb));
        let bytes = write_outer(&[
            ("VERSION", b"3"),
            ("CHECKSUM", sum.as_bytes()),
            ("metadata.config", META),
            ("contents.tar.gz", &bomb),
        ]);
        assert!(matches!(read(&bytes), Err(TarballError::ContentsTooBig)));
    }
}
