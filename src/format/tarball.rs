//! Hex package tarballs (format version 3): reading and validating them as hex_core's
//! `unpack(Tarball, memory)` does, and writing them as hex_core's `create/3` does.
//!
//! The outer file is a plain tar of exactly four entries: `VERSION` (`3`), `CHECKSUM` (hex of
//! the inner checksum), `metadata.config` (Erlang terms, see [`crate::format::metadata`]) and
//! `contents.tar.gz` (a gzip'd tar of the package files). The inner checksum is
//! sha256(VERSION ‖ metadata.config ‖ contents.tar.gz); the outer checksum is sha256 of the
//! whole file. `contents.tar.gz` is checked by streaming it through gzip and tar, never held
//! inflated in memory.

use std::cell::Cell;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::format::encoding::{hex_digit, hex_upper};
use crate::format::metadata::{self, Metadata, MetadataError};

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
    /// The file is over [`MAX_TARBALL_SIZE`].
    #[error("is {size} bytes, over Hex's limit of {limit} bytes (16 MiB)", limit = MAX_TARBALL_SIZE)]
    TooBig {
        /// The file's size in bytes.
        size: u64,
    },
    /// The file is 0 bytes long.
    #[error(
        "is empty (0 bytes): a Hex tarball is a tar file holding VERSION, CHECKSUM, metadata.config and contents.tar.gz"
    )]
    Empty,
    /// The file starts with the gzip magic bytes: a compressed tarball, where Hex wants a
    /// plain tar.
    #[error(
        "is gzip-compressed, but a Hex package tarball is a plain (uncompressed) tar: build it with `mix hex.build` or `rebar3 hex build`"
    )]
    Gzipped,
    /// The outer tar does not read to its end; holds the words for where and why it stopped.
    #[error("is not a readable tar file ({0}); it may be truncated or not a Hex tarball")]
    NotTar(String),
    /// The outer tar ends before any entry.
    #[error("holds no files; expected VERSION, CHECKSUM, metadata.config and contents.tar.gz")]
    NoEntries,
    /// An entry other than the four of [`ENTRIES`]; holds its name, made fit for one line.
    #[error(
        "has an unexpected entry `{0}`; a Hex tarball holds only VERSION, CHECKSUM, metadata.config and contents.tar.gz"
    )]
    ExtraEntry(String),
    /// One of the four entries is not a regular file.
    #[error("has `{name}` as a {kind}, but it must be a regular file")]
    NotAFile {
        /// The entry's name, one of [`ENTRIES`].
        name: String,
        /// What the entry is instead, e.g. `directory` or `symbolic link`.
        kind: String,
    },
    /// One of the four entries appears twice; holds its name.
    #[error("has the entry `{0}` twice")]
    DuplicateEntry(String),
    /// One of the four entries is over hex_core's limit for it.
    #[error("has `{name}` of {size} bytes, over Hex's limit of {limit} bytes")]
    EntryTooBig {
        /// The entry's name, one of [`ENTRIES`].
        name: String,
        /// The entry's size in bytes, as its tar header gives it.
        size: u64,
        /// hex_core's limit for that entry, in bytes.
        limit: u64,
    },
    /// Some of the four entries are absent; holds their names, in [`ENTRIES`] order.
    #[error("lacks {}", .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    MissingEntries(Vec<&'static str>),
    /// `VERSION` is not `3`; holds its text, non-ASCII and control bytes escaped.
    #[error(
        "has tarball format VERSION `{0}`, expected `3` (formats 1 and 2 date from 2014 and are not accepted by current clients)"
    )]
    BadVersion(String),
    /// `CHECKSUM` holds a byte pair that is not two hex digits; holds its text.
    #[error("has a CHECKSUM that is not hexadecimal: {0:?}")]
    ChecksumNotHex(String),
    /// `CHECKSUM` decodes to other than 32 bytes; holds how many.
    #[error("has a CHECKSUM of {0} bytes, expected 32 (64 hex digits)")]
    ChecksumLength(usize),
    /// `CHECKSUM` is not the inner checksum of the other three entries.
    #[error(
        "has a wrong CHECKSUM: it says {expected}, but sha256(VERSION ‖ metadata.config ‖ contents.tar.gz) is {actual}; the tarball was altered after it was built"
    )]
    ChecksumMismatch {
        /// The checksum `CHECKSUM` gives, in upper-case hex.
        expected: String,
        /// sha256(VERSION ‖ metadata.config ‖ contents.tar.gz), in upper-case hex.
        actual: String,
    },
    /// `metadata.config` does not parse or breaks a rule; holds why.
    #[error("has an invalid metadata.config: {0}")]
    Metadata(#[from] MetadataError),
    /// `contents.tar.gz` lacks the gzip magic bytes or fails to inflate; holds the gzip layer's
    /// error text.
    #[error("has a contents.tar.gz that is not valid gzip data: {0}")]
    ContentsNotGzip(String),
    /// `contents.tar.gz` inflates, but not to a tar that reads to its end; holds the words for
    /// where and why it stopped.
    #[error("has a contents.tar.gz that is not a valid gzip'd tar: {0}")]
    ContentsNotTar(String),
    /// `contents.tar.gz` inflates to more than [`MAX_UNCOMPRESSED_SIZE`].
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

/// The four entries' bytes of a tarball, in [`ENTRIES`] order (`VERSION`, `CHECKSUM`,
/// `metadata.config`, `contents.tar.gz`), without checking their content: for readers that
/// show what a tarball holds ([`read`] validates it).
pub fn outer_parts(bytes: &[u8]) -> Result<[&[u8]; 4], TarballError> {
    if bytes.len() as u64 > MAX_TARBALL_SIZE {
        return Err(TarballError::TooBig {
            size: bytes.len() as u64,
        });
    }
    outer_entries(bytes)
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
        .map_err(|e| TarballError::NotTar(tar_error(&e, None, None)))?;
    let mut any = false;
    let mut previous: Option<&str> = None;
    let mut last_is_whole = true;
    // Where the next header is due: the tar reader stops there or just after when it fails.
    let mut due: Option<u64> = Some(0);
    for entry in entries {
        let entry = entry.map_err(|e| {
            // The file is all there: what follows `due` is what the reader had to go on.
            let stop = due.map(|at| {
                let rest = usize::try_from(at).ok().and_then(|at| bytes.get(at..));
                why_tar_stopped(rest, true)
            });
            TarballError::NotTar(tar_error(&e, previous, stop.flatten()))
        })?;
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
        due = next_header(&entry);
    }
    // A seek past the end ends the walk as if the archive ended there: only the last entry can
    // be cut short.
    if !last_is_whole {
        return Err(TarballError::NotTar(TarStop::DataCut.words(previous)));
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

/// Words for an error `e` of the tar reader, met after the entry `previous` (`None`: at the
/// start), given what hexreg itself found wrong where the reader stopped ([`why_tar_stopped`]).
/// The reader's own text is quoted only when hexreg found nothing: it quotes raw header bytes,
/// useless when the file is not a tar at all.
fn tar_error(e: &io::Error, previous: Option<&str>, stop: Option<TarStop>) -> String {
    match stop {
        Some(stop) => stop.words(previous),
        None => one_line(&e.to_string()),
    }
}

/// Size of a tar block: a header, or a unit of data and its padding.
const BLOCK: usize = 512;

/// What is wrong with a tar archive where a walk through it stopped, as hexreg sees it in the
/// bytes (see [`why_tar_stopped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TarStop {
    /// The input ends inside an entry's data or the padding after it.
    DataCut,
    /// The input ends inside a 512-byte header block.
    HeaderCut,
    /// A header block whose checksum field is not an octal number or not the sum of its bytes.
    BadChecksum,
    /// A header block, its checksum right, whose size field is not a number.
    BadSize,
}

impl TarStop {
    /// The words for it, met after the entry `previous` (`None`: at the start).
    fn words(self, previous: Option<&str>) -> String {
        let header = match previous {
            None => "its first 512-byte block".to_string(),
            Some(name) => format!("the 512-byte block after entry `{}`", one_line(name)),
        };
        match self {
            TarStop::DataCut => "unexpected EOF during skip".to_string(),
            TarStop::HeaderCut => format!("it ends in the middle of a tar header ({header})"),
            TarStop::BadChecksum => format!("{header} is not a valid tar header"),
            TarStop::BadSize => format!("{header} is a tar header with an invalid size field"),
        }
    }
}

/// Where the header after `entry` is due: after its data, padded to a whole block. `None` for
/// a sparse entry, whose data is laid out differently, or past `u64`.
fn next_header<R: io::Read>(entry: &tar::Entry<'_, R>) -> Option<u64> {
    if entry.header().entry_type().is_gnu_sparse() {
        return None;
    }
    entry
        .size()
        .checked_next_multiple_of(BLOCK as u64)?
        .checked_add(entry.raw_file_position())
}

/// Checks the header blocks that start `rest`, the archive from where the tar reader's next
/// header was due, as the reader does before it gives an entry: each block must be whole, its
/// checksum right and its size field a number. The GNU long name and long link headers and
/// pax extended headers that precede an entry are followed to the entry's own header, and a
/// GNU sparse header to its extension blocks. `rest` is `None` when the archive ends before
/// the header was due; `ended` is whether the archive ends where `rest` does (rather than
/// having been read no further). `None` when nothing is found wrong.
fn why_tar_stopped(rest: Option<&[u8]>, ended: bool) -> Option<TarStop> {
    // Whatever is left at `at`, or the archive's end inside the data before it.
    let left = |at: usize| match rest.and_then(|rest| rest.get(at..)) {
        Some(left) => Ok(left),
        None => Err(ended.then_some(TarStop::DataCut)),
    };
    // A whole block at `at`, or the archive's end inside it.
    let block = |at: usize| -> Result<&[u8; BLOCK], Option<TarStop>> {
        let left = left(at)?;
        left.first_chunk::<BLOCK>()
            .ok_or((ended && !left.is_empty()).then_some(TarStop::HeaderCut))
    };
    let mut at = 0usize;
    loop {
        let header = match block(at) {
            Ok(header) => header,
            Err(stop) => return stop,
        };
        // An all-zero block ends the archive: the reader does not check it.
        if header.iter().all(|&b| b == 0) {
            return None;
        }
        // The checksum is the sum of the header's bytes, its own field counted as spaces. The
        // reader keeps only the low 32 bits of the field; so does this check, so that no header
        // the reader accepted is called invalid.
        let sum: u64 = header[..148]
            .iter()
            .chain(&header[156..])
            .map(|&b| u64::from(b))
            .sum::<u64>()
            + 8 * u64::from(b' ');
        match octal_field(&header[148..156]) {
            Some(field) if field & u64::from(u32::MAX) == sum => {}
            _ => return Some(TarStop::BadChecksum),
        }
        let Some(size) = size_field(&header[124..136]) else {
            return Some(TarStop::BadSize);
        };
        let ustar = &header[257..263] == b"ustar\0" && &header[263..265] == b"00";
        let gnu = &header[257..263] == b"ustar " && &header[263..265] == b" \0";
        match header[156] {
            // Extension headers, read with their data before the entry they describe.
            b'L' | b'K' | b'x' if ustar || gnu => {
                let data = usize::try_from(size.checked_next_multiple_of(BLOCK as u64)?).ok()?;
                at = at.checked_add(BLOCK)?.checked_add(data)?;
            }
            // A sparse file's extension blocks follow its header, each saying whether another
            // one follows.
            b'S' if gnu && header[482] == 1 => {
                at = at.checked_add(BLOCK)?;
                loop {
                    let extension = match block(at) {
                        Ok(extension) => extension,
                        Err(stop) => return stop,
                    };
                    if extension[504] != 1 {
                        return None;
                    }
                    at = at.checked_add(BLOCK)?;
                }
            }
            _ => return None,
        }
    }
}

/// An octal number field of a tar header as the tar reader takes it: up to the first NUL,
/// surrounding whitespace ignored.
fn octal_field(field: &[u8]) -> Option<u64> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(field.get(..end)?).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// The 12-byte size field of a tar header: octal, or (high bit of its first byte set) GNU
/// base-256, of which the last 8 bytes count.
fn size_field(field: &[u8]) -> Option<u64> {
    if field.first()? & 0x80 == 0 {
        return octal_field(field);
    }
    let last = field.len().checked_sub(8)?;
    Some(u64::from_be_bytes(field.get(last..)?.try_into().ok()?))
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

/// A reader that counts what comes through it, fails past a limit, and remembers whether the
/// failure came from below (the gzip layer) rather than from the tar reader above it. It also
/// keeps what the tar reader read from where its next header was due (`due`, set by the walk
/// after each entry), for [`why_tar_stopped`] to look at when the reader fails.
struct Counted<'a, R> {
    inner: R,
    left: u64,
    exceeded: bool,
    inner_error: Option<String>,
    /// Bytes read so far.
    pos: u64,
    /// Whether `inner` has ended (a read gave nothing).
    ended: bool,
    /// Where the walk's next header is due; `None`: not known.
    due: &'a Cell<Option<u64>>,
    /// The `due` that `kept` starts at.
    kept_from: Option<u64>,
    /// What was read from `kept_from` on, at most [`MAX_KEPT`] bytes.
    kept: Vec<u8>,
    /// Whether more was read from `kept_from` on than `kept` holds.
    kept_all: bool,
}

/// Most bytes [`Counted`] keeps from where a header was due: headers and the long names and
/// pax records before an entry.
const MAX_KEPT: usize = 64 * 1024;

impl<'a, R> Counted<'a, R> {
    fn new(inner: R, due: &'a Cell<Option<u64>>) -> Self {
        Counted {
            inner,
            left: MAX_UNCOMPRESSED_SIZE,
            exceeded: false,
            inner_error: None,
            pos: 0,
            ended: false,
            due,
            kept_from: None,
            kept: Vec::new(),
            kept_all: true,
        }
    }

    /// Notes `bytes`, just read at `self.pos`.
    fn keep(&mut self, bytes: &[u8]) {
        let due = self.due.get();
        if self.kept_from != due {
            self.kept_from = due;
            self.kept.clear();
            self.kept_all = true;
        }
        let Some(due) = due else { return };
        // The part of `bytes` at `due` or after.
        let skip = usize::try_from(due.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let Some(from_due) = bytes.get(skip..) else {
            return;
        };
        let room = MAX_KEPT.saturating_sub(self.kept.len());
        if from_due.len() > room {
            self.kept_all = false;
        }
        self.kept
            .extend_from_slice(&from_due[..from_due.len().min(room)]);
    }

    /// [`why_tar_stopped`] for what the tar reader read from where its next header was due.
    fn why_tar_stopped(&self) -> Option<TarStop> {
        let due = self.due.get()?;
        if self.pos < due {
            return why_tar_stopped(None, self.ended);
        }
        if self.kept_from != Some(due) {
            // Nothing read since the header was due.
            return why_tar_stopped(Some(&[]), self.ended);
        }
        why_tar_stopped(Some(&self.kept), self.ended && self.kept_all)
    }
}

impl<R: Read> Read for Counted<'_, R> {
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
        if n == 0 && !buf.is_empty() {
            self.ended = true;
        }
        if let Some(read) = buf.get(..n) {
            self.keep(read);
        }
        self.pos += n as u64;
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
    let due = Cell::new(Some(0));
    let counted = Counted::new(flate2::read::GzDecoder::new(contents), &due);
    let mut archive = tar::Archive::new(counted);
    let mut previous: Option<String> = None;
    let tar_result = (|| -> io::Result<()> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            previous = Some(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
            due.set(next_header(&entry));
            io::copy(&mut entry, &mut io::sink())?;
        }
        Ok(())
    })();
    let mut counted = archive.into_inner();
    let (drain_result, stop) = match tar_result {
        Ok(()) => (io::copy(&mut counted, &mut io::sink()).map(drop), None),
        Err(e) => (Err(e), counted.why_tar_stopped()),
    };
    if counted.exceeded {
        return Err(TarballError::ContentsTooBig);
    }
    if let Some(gzip_error) = counted.inner_error {
        return Err(TarballError::ContentsNotGzip(one_line(&gzip_error)));
    }
    drain_result.map_err(|e| TarballError::ContentsNotTar(tar_error(&e, previous.as_deref(), stop)))
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

    /// `tar` with the header block at `at` edited by `edit`, its checksum then fixed or not.
    fn edit_header(tar: &[u8], at: usize, fix_checksum: bool, edit: impl Fn(&mut [u8])) -> Vec<u8> {
        let mut out = tar.to_vec();
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(&out[at..at + BLOCK]);
        edit(header.as_mut_bytes());
        if fix_checksum {
            header.set_cksum();
        }
        out[at..at + BLOCK].copy_from_slice(header.as_bytes());
        out
    }

    #[test]
    fn tar_stops_are_told_apart_by_their_bytes() {
        // `a.txt`: header at 0, data at 512; `b.txt`: header at 1024.
        let tar = write_tar([("a.txt", &b"hello"[..], 0o644), ("b.txt", b"x", 0o644)].into_iter());
        let rest = |tar: &[u8]| why_tar_stopped(Some(&tar[1024..]), true);
        assert_eq!(rest(&tar), None);
        // Cut inside the header, inside the data before it, or exactly before it.
        assert_eq!(rest(&tar[..1024 + 100]), Some(TarStop::HeaderCut));
        assert_eq!(why_tar_stopped(None, true), Some(TarStop::DataCut));
        assert_eq!(rest(&tar[..1024]), None);
        // Read no further rather than ended: nothing to say about what is missing.
        assert_eq!(why_tar_stopped(Some(&tar[1024..1124]), false), None);
        assert_eq!(why_tar_stopped(None, false), None);
        // A byte changed after the checksum was computed; a checksum field that is no number.
        let changed = edit_header(&tar, 1024, false, |h| h[0] ^= 1);
        assert_eq!(rest(&changed), Some(TarStop::BadChecksum));
        let garbled = edit_header(&tar, 1024, false, |h| {
            h[148..156].copy_from_slice(b"zzzzzzz\0")
        });
        assert_eq!(rest(&garbled), Some(TarStop::BadChecksum));
        // A size field that is no number, the checksum right: the size, not the checksum.
        let bad_size = edit_header(&tar, 1024, true, |h| {
            h[124..136].copy_from_slice(b"12z45678901\0")
        });
        assert_eq!(rest(&bad_size), Some(TarStop::BadSize));
        // Both wrong: the checksum is checked first, as the reader does.
        let both = edit_header(&tar, 1024, false, |h| {
            h[124..136].copy_from_slice(b"12z45678901\0")
        });
        assert_eq!(rest(&both), Some(TarStop::BadChecksum));
        // Base-256 sizes are numbers.
        let base256 = edit_header(&tar, 1024, true, |h| {
            h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        });
        assert_eq!(rest(&base256), None);
    }

    #[test]
    fn tar_stops_past_a_long_name_are_found_in_the_entry_header() {
        // A GNU long name header at 0, the name at 512, the entry's own header at 1024.
        let name = "n".repeat(150);
        let tar = write_tar([(name.as_str(), &b"data"[..], 0o644)].into_iter());
        assert_eq!(tar[156], b'L');
        assert_eq!(why_tar_stopped(Some(&tar), true), None);
        assert_eq!(
            why_tar_stopped(Some(&tar[..1024 + 10]), true),
            Some(TarStop::HeaderCut)
        );
        assert_eq!(
            why_tar_stopped(Some(&tar[..600]), true),
            Some(TarStop::DataCut)
        );
        let changed = edit_header(&tar, 1024, false, |h| h[0] ^= 1);
        assert_eq!(
            why_tar_stopped(Some(&changed), true),
            Some(TarStop::BadChecksum)
        );
        // The reader says the same: each of these fails to read, with hexreg's words.
        let contents = |tar: &[u8]| check_contents(&gzip(tar)).unwrap_err().to_string();
        assert!(
            contents(&tar[..1024 + 10])
                .contains("ends in the middle of a tar header (its first 512-byte block)")
        );
        assert!(contents(&changed).contains("its first 512-byte block is not a valid tar header"));
        assert!(contents(&tar[..600]).ends_with(": unexpected EOF during skip"));
    }

    #[test]
    fn broken_tar_headers_get_hexreg_s_words() {
        let outer = create(META, &[]);
        // VERSION: header at 0, data at 512; CHECKSUM's header at 1024.
        let not_tar = |bytes: &[u8]| match read(bytes) {
            Err(TarballError::NotTar(words)) => words,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            not_tar(&edit_header(&outer, 1024, false, |h| h[0] ^= 1)),
            "the 512-byte block after entry `VERSION` is not a valid tar header"
        );
        assert_eq!(
            not_tar(&edit_header(&outer, 1024, true, |h| h[124] = b'9')),
            "the 512-byte block after entry `VERSION` is a tar header with an invalid size field"
        );
        assert_eq!(
            not_tar(&outer[..1024 + 511]),
            "it ends in the middle of a tar header (the 512-byte block after entry `VERSION`)"
        );
        assert_eq!(
            not_tar(&edit_header(&outer, 0, false, |h| h[200] ^= 1)),
            "its first 512-byte block is not a valid tar header"
        );

        // The same inside contents.tar.gz, read as a stream.
        let tar = write_tar([("a.txt", &b"hello"[..], 0o644), ("b.txt", b"x", 0o644)].into_iter());
        let not_contents = |tar: &[u8]| match check_contents(&gzip(tar)) {
            Err(TarballError::ContentsNotTar(words)) => words,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            not_contents(&edit_header(&tar, 1024, false, |h| h[0] ^= 1)),
            "the 512-byte block after entry `a.txt` is not a valid tar header"
        );
        assert_eq!(
            not_contents(&edit_header(&tar, 1024, true, |h| h[124] = b'9')),
            "the 512-byte block after entry `a.txt` is a tar header with an invalid size field"
        );
        assert_eq!(
            not_contents(&tar[..1024 + 100]),
            "it ends in the middle of a tar header (the 512-byte block after entry `a.txt`)"
        );
        // Cut in a.txt's data or padding: not a header.
        for cut in [512 + 3, 512 + 100] {
            assert_eq!(
                not_contents(&tar[..cut]),
                "unexpected EOF during skip",
                "cut at {cut}"
            );
        }
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
