//! What the pages show from inside archives: a package tarball's metadata and file list (read
//! in memory), and where each file of an inflated docs tarball lies ([`DocsIndex`]).

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use crate::format::docs::{MAX_DOCS_FILES, MAX_DOCS_UNCOMPRESSED};
use crate::format::metadata::{self, Term};
use crate::format::tarball::{self, MAX_UNCOMPRESSED_SIZE, TarballError};

/// Most files of a package listed on its version page.
pub const MAX_LISTED_FILES: usize = 5000;

/// What a version page shows of a tarball.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    /// `description`, when the metadata has one as text.
    pub description: Option<String>,
    /// `licenses`.
    pub licenses: Vec<String>,
    /// `links`: (name, URL).
    pub links: Vec<(String, String)>,
    /// Every top-level `{Key, Value}` of metadata.config, the value written out as Erlang
    /// text, in file order.
    pub metadata: Vec<(String, String)>,
    /// The files of contents.tar.gz with their sizes, at most [`MAX_LISTED_FILES`].
    pub files: Vec<(String, u64)>,
    /// Whether contents.tar.gz holds more files than listed (or could not be read whole).
    pub files_truncated: bool,
    /// sha256 of the whole tarball, to compare with the registry's checksum.
    pub outer_checksum: [u8; 32],
}

/// Why a tarball's details cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum DetailsError {
    /// Not a Hex tarball.
    #[error(transparent)]
    Tarball(#[from] TarballError),
    /// Its metadata.config is not Erlang terms.
    #[error("has an invalid metadata.config: {0}")]
    Metadata(#[from] metadata::MetadataError),
}

/// Reads what the pages show of the tarball `bytes`.
pub fn details(bytes: &[u8]) -> Result<Details, DetailsError> {
    let [_, _, metadata_config, contents] = tarball::outer_parts(bytes)?;
    let terms = metadata::parse_terms(metadata_config)?;
    let mut details = Details {
        description: None,
        licenses: Vec::new(),
        links: Vec::new(),
        metadata: Vec::new(),
        files: Vec::new(),
        files_truncated: false,
        outer_checksum: tarball::outer_checksum(bytes),
    };
    for term in &terms {
        let Term::Tuple(items) = term else { continue };
        let [key, value] = items.as_slice() else {
            continue;
        };
        let Some(key) = text_of(key) else { continue };
        match key.as_str() {
            "description" => details.description = text_of(value),
            "licenses" => {
                if let Term::List(items) = value {
                    details.licenses = items.iter().filter_map(text_of).collect();
                }
            }
            "links" => details.links = pairs(value),
            _ => {}
        }
        details.metadata.push((key, render_term(value)));
    }
    let (files, truncated) = list_contents(contents);
    details.files = files;
    details.files_truncated = truncated;
    Ok(details)
}

/// A binary or string term as text (invalid UTF-8 replaced).
fn text_of(term: &Term) -> Option<String> {
    match term {
        Term::Binary(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Term::String(chars) => Some(chars.iter().filter_map(|c| char::from_u32(*c)).collect()),
        Term::Atom(atom) => Some(atom.clone()),
        _ => None,
    }
}

/// `#{Name => Url}` or `[{Name, Url}]` as pairs of texts.
fn pairs(term: &Term) -> Vec<(String, String)> {
    let items: Vec<(&Term, &Term)> = match term {
        Term::Map(entries) => entries.iter().map(|(k, v)| (k, v)).collect(),
        Term::List(items) => items
            .iter()
            .filter_map(|item| match item {
                Term::Tuple(pair) => match pair.as_slice() {
                    [k, v] => Some((k, v)),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|(k, v)| Some((text_of(k)?, text_of(v)?)))
        .collect()
}

/// Longest rendering of one metadata value, in characters.
pub const MAX_RENDERED: usize = 4000;

/// A term written out as Erlang-like text, cut at [`MAX_RENDERED`] characters.
pub fn render_term(term: &Term) -> String {
    let mut out = String::new();
    write_term(term, &mut out);
    if out.chars().count() > MAX_RENDERED {
        out = out.chars().take(MAX_RENDERED).collect();
        out.push('…');
    }
    out
}

fn write_term(term: &Term, out: &mut String) {
    if out.len() > MAX_RENDERED * 4 {
        return;
    }
    let list = |items: &[Term], open: &str, close: &str, out: &mut String| {
        out.push_str(open);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_term(item, out);
        }
        out.push_str(close);
    };
    match term {
        Term::Atom(atom) => out.push_str(atom),
        Term::Integer(n) => out.push_str(&n.to_string()),
        Term::Binary(_) | Term::String(_) => {
            out.push('"');
            out.push_str(&text_of(term).unwrap_or_default());
            out.push('"');
        }
        Term::List(items) => list(items, "[", "]", out),
        Term::Tuple(items) => list(items, "{", "}", out),
        Term::Map(entries) => {
            out.push_str("#{");
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_term(k, out);
                out.push_str(" => ");
                write_term(v, out);
            }
            out.push('}');
        }
    }
}

/// The files of contents.tar.gz and their sizes, streamed (never held inflated); `true` when
/// the listing stops early (too many files, or the archive is damaged).
fn list_contents(contents: &[u8]) -> (Vec<(String, u64)>, bool) {
    let inflated = flate2::read::GzDecoder::new(contents).take(MAX_UNCOMPRESSED_SIZE);
    let mut archive = tar::Archive::new(inflated);
    let mut files = Vec::new();
    let Ok(entries) = archive.entries() else {
        return (files, true);
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return (files, true);
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if files.len() == MAX_LISTED_FILES {
            return (files, true);
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        files.push((name, entry.size()));
    }
    (files, false)
}

/// Where each file of an inflated docs tar lies: its normalised path (`a/b.html`), the offset
/// of its data in the tar and its size. Built once per archive by [`DocsIndex::build`]; a file
/// is then read on its own at its offset, so serving costs the file, not the archive.
#[derive(Debug, Default)]
pub struct DocsIndex {
    files: BTreeMap<String, (u64, u64)>,
    /// Bytes of names held, to bound the memory of many indexes.
    name_bytes: usize,
}

/// Why a docs tarball cannot be browsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DocsArchiveError {
    /// Over the docs size limits, or holding more than [`MAX_DOCS_FILES`] entries.
    #[error("is over the size limits for docs")]
    TooBig,
    /// Not a gzip'd tar.
    #[error("is not a gzip-compressed tar file: {0}")]
    NotTarGz(String),
}

impl DocsIndex {
    /// Indexes the regular files of the inflated tar `tar` (at most
    /// [`MAX_DOCS_UNCOMPRESSED`] bytes), seeking over file data rather than reading it.
    /// Entries whose path is absolute, holds `..` or a segment starting with a dot are left
    /// out, and so is anything but a regular file (a link, a device): they can never be asked
    /// for.
    pub fn build<R: Read + Seek>(tar: R) -> Result<DocsIndex, DocsArchiveError> {
        let mut archive = tar::Archive::new(tar);
        let bad = |e: std::io::Error| DocsArchiveError::NotTarGz(e.to_string());
        let mut index = DocsIndex::default();
        let mut entries = 0usize;
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            entries += 1;
            if entries > MAX_DOCS_FILES {
                return Err(DocsArchiveError::TooBig);
            }
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let (offset, size) = (entry.raw_file_position(), entry.size());
            if offset.saturating_add(size) > MAX_DOCS_UNCOMPRESSED {
                return Err(DocsArchiveError::TooBig);
            }
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if let Some(path) = normalise(&raw) {
                index.name_bytes = index.name_bytes.saturating_add(path.len());
                index.files.insert(path, (offset, size));
            }
        }
        Ok(index)
    }

    /// The file a request path (already percent-decoded, relative to the docs root) names,
    /// with the offset and size of its data: `""` and a path ending in `/` name that
    /// directory's `index.html`. `None` for anything not in the archive, and for any path
    /// with an empty, `.`-led or `..` segment.
    pub fn get(&self, path: &str) -> Option<(&str, u64, u64)> {
        let wanted = if path.is_empty() || path.ends_with('/') {
            format!("{path}index.html")
        } else {
            path.to_string()
        };
        let wanted = normalise(&wanted).filter(|p| *p == wanted)?;
        self.files
            .get_key_value(&wanted)
            .map(|(k, (offset, size))| (k.as_str(), *offset, *size))
    }

    /// Whether `path` (without a trailing `/`) is a directory holding an `index.html`.
    pub fn is_dir_with_index(&self, path: &str) -> bool {
        !path.is_empty() && self.get(&format!("{path}/")).is_some()
    }

    /// About how many bytes of memory the index holds.
    pub fn memory(&self) -> usize {
        self.name_bytes
            .saturating_add(self.files.len().saturating_mul(64))
    }

    /// How many files it holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it holds no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Inflates the gzip'd docs tarball `gz` into `out`, at most [`MAX_DOCS_UNCOMPRESSED`] bytes
/// (refused past that), in small buffers; returns the inflated size.
pub fn inflate_docs<R: Read, W: std::io::Write>(
    gz: R,
    out: &mut W,
) -> Result<u64, DocsArchiveError> {
    let mut inflated = flate2::read::GzDecoder::new(gz).take(MAX_DOCS_UNCOMPRESSED + 1);
    let written =
        std::io::copy(&mut inflated, out).map_err(|e| DocsArchiveError::NotTarGz(e.to_string()))?;
    if written > MAX_DOCS_UNCOMPRESSED {
        return Err(DocsArchiveError::TooBig);
    }
    Ok(written)
}

/// `./a//b` as `a/b`; `None` when a segment is `..` or starts with a dot, when the path is
/// absolute, or when it holds a NUL or a backslash.
fn normalise(path: &str) -> Option<String> {
    if path.starts_with('/') || path.contains('\0') || path.contains('\\') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in path.split('/').enumerate() {
        if segment.is_empty() || (segment == "." && i == 0) {
            continue;
        }
        if segment.starts_with('.') {
            return None;
        }
        out.push(segment);
    }
    if out.is_empty() {
        return None;
    }
    Some(out.join("/"))
}

/// The Content-Type for a docs file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" | "md" | "erl" | "ex" | "exs" => "text/plain; charset=utf-8",
        "epub" => "application/epub+zip",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs_tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // Written raw so that hostile names reach the reader unchanged.
            let raw = &mut header.as_old_mut().name;
            raw.iter_mut().for_each(|b| *b = 0);
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        let tar = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("gzip");
        gz.finish().expect("gzip")
    }

    #[test]
    fn docs_paths_are_confined() {
        let bytes = docs_tar_gz(&[
            ("./index.html", b"<h1>home</h1>"),
            ("guides/index.html", b"guides"),
            ("dist/app.js", b"js"),
            ("../escape.html", b"no"),
            (".build", b"no"),
            ("a/.hidden", b"no"),
        ]);
        let mut tar = Vec::new();
        inflate_docs(bytes.as_slice(), &mut tar).expect("inflate");
        let docs = DocsIndex::build(std::io::Cursor::new(&tar)).expect("index");
        let data = |found: Option<(&str, u64, u64)>| {
            found.map(|(_, at, len)| tar[at as usize..(at + len) as usize].to_vec())
        };
        assert_eq!(docs.len(), 3);
        assert_eq!(data(docs.get("")), Some(b"<h1>home</h1>".to_vec()));
        assert_eq!(docs.get("index.html").map(|f| f.0), Some("index.html"));
        assert_eq!(data(docs.get("guides/")), Some(b"guides".to_vec()));
        assert!(docs.is_dir_with_index("guides"));
        assert!(!docs.is_dir_with_index("dist"));
        assert_eq!(data(docs.get("dist/app.js")), Some(b"js".to_vec()));
        for refused in [
            "../escape.html",
            "dist/../index.html",
            "./index.html",
            "dist//app.js",
            ".build",
            "a/.hidden",
            "/index.html",
            "dist",
            "missing.html",
        ] {
            assert_eq!(docs.get(refused), None, "{refused}");
        }
    }

    #[test]
    fn docs_that_are_not_tar_gz_are_refused() {
        assert!(matches!(
            inflate_docs(&b"not gzip"[..], &mut Vec::new()),
            Err(DocsArchiveError::NotTarGz(_))
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[7u8; 4096]).expect("gzip");
        let not_tar = gz.finish().expect("gzip");
        let mut inflated = Vec::new();
        inflate_docs(not_tar.as_slice(), &mut inflated).expect("inflate");
        assert!(DocsIndex::build(std::io::Cursor::new(inflated)).is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.woff2"), "font/woff2");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[test]
    fn terms_render() {
        let terms = metadata::parse_terms(
            b"{<<\"links\">>, #{<<\"GitHub\">> => <<\"https://x\">>}}.\n{<<\"n\">>, [1, {a, \"s\"}]}.",
        )
        .expect("terms");
        let Term::Tuple(items) = &terms[0] else {
            panic!("not a tuple: {:?}", terms[0]);
        };
        assert_eq!(
            pairs(&items[1]),
            vec![("GitHub".to_string(), "https://x".to_string())]
        );
        let Term::Tuple(items) = &terms[1] else {
            panic!("not a tuple: {:?}", terms[1]);
        };
        assert_eq!(render_term(&items[1]), "[1, {a, \"s\"}]");
    }
}
