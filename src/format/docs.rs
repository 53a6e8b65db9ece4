//! Documentation tarballs, `docs/NAME-VERSION.tar.gz`: the limits hexpm sets and the checks a
//! docs tarball must pass before it is stored or read.

use std::io::Read;

/// Largest docs tarball accepted, compressed (hexpm's limit).
pub const MAX_DOCS_SIZE: u64 = 16 * 1024 * 1024;
/// Largest docs tarball accepted, uncompressed (hexpm's limit).
pub const MAX_DOCS_UNCOMPRESSED: u64 = 128 * 1024 * 1024;

/// Why a docs tarball is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocsError {
    /// Over [`MAX_DOCS_SIZE`].
    #[error("is {size} bytes, over the {MAX_DOCS_SIZE}-byte limit for docs")]
    TooBig {
        /// Its size.
        size: u64,
    },
    /// Not a gzip file, or over [`MAX_DOCS_UNCOMPRESSED`] once inflated.
    #[error(
        "is not a gzip-compressed tar file ({0}): make it with `mix hex.publish docs` or `rebar3 ex_doc`"
    )]
    NotTarGz(String),
    /// An entry whose path could leave the docs directory once unpacked.
    #[error("holds the entry `{0}`, whose path is absolute or contains `..`")]
    UnsafePath(String),
    /// An entry that is neither a regular file nor a directory (a symbolic or hard link, a
    /// device, a FIFO): docs are served as files, and a link could name a file outside them.
    #[error(
        "holds the entry `{entry}`, a {kind}: docs may hold only regular files and directories; build them again without links"
    )]
    NotAFile {
        /// The entry's path.
        entry: String,
        /// What it is (`symbolic link`, `hard link`, `device`...).
        kind: &'static str,
    },
    /// More entries than [`MAX_DOCS_FILES`].
    #[error("holds more than {MAX_DOCS_FILES} entries, the limit for docs")]
    TooManyFiles,
}

/// Most entries (files and directories) a docs tarball may hold: ExDoc's largest sets are a
/// few thousand files; the bound keeps the server's index of one archive small.
pub const MAX_DOCS_FILES: usize = 50_000;

/// What an entry of a tar is, for a message; `None` for a regular file or a directory, the
/// only kinds docs may hold.
pub fn forbidden_kind(kind: tar::EntryType) -> Option<&'static str> {
    use tar::EntryType;
    match kind {
        EntryType::Regular | EntryType::Directory => None,
        EntryType::Symlink => Some("symbolic link"),
        EntryType::Link => Some("hard link"),
        EntryType::Char => Some("character device"),
        EntryType::Block => Some("block device"),
        EntryType::Fifo => Some("FIFO"),
        EntryType::Continuous => Some("contiguous file"),
        EntryType::GNUSparse => Some("sparse file"),
        _ => Some("special entry"),
    }
}

/// Checks a docs tarball: gzip, a tar inside, no entry that could be unpacked outside its
/// directory, within the size limits.
pub fn validate_docs(bytes: &[u8]) -> Result<(), DocsError> {
    let size = bytes.len() as u64;
    if size > MAX_DOCS_SIZE {
        return Err(DocsError::TooBig { size });
    }
    let inflated = flate2::read::GzDecoder::new(bytes).take(MAX_DOCS_UNCOMPRESSED + 1);
    let mut archive = tar::Archive::new(inflated);
    let entries = archive
        .entries()
        .map_err(|e| DocsError::NotTarGz(e.to_string()))?;
    let mut count = 0usize;
    for entry in entries {
        let entry = entry.map_err(|e| DocsError::NotTarGz(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| DocsError::NotTarGz(e.to_string()))?
            .into_owned();
        let unsafe_path = path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        if unsafe_path {
            return Err(DocsError::UnsafePath(crate::format::tarball::one_line(
                &path.display().to_string(),
            )));
        }
        if let Some(kind) = forbidden_kind(entry.header().entry_type()) {
            return Err(DocsError::NotAFile {
                entry: crate::format::tarball::one_line(&path.display().to_string()),
                kind,
            });
        }
        count += 1;
        if count > MAX_DOCS_FILES {
            return Err(DocsError::TooManyFiles);
        }
    }
    if count == 0 {
        return Err(DocsError::NotTarGz("it holds no file".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, target) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(0);
            if !target.is_empty() {
                header.set_link_name(target).expect("link name");
            }
            builder
                .append_data(&mut header, name, std::io::empty())
                .expect("append");
        }
        let tar = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("gzip");
        gz.finish().expect("gzip")
    }

    #[test]
    fn only_files_and_directories() {
        use tar::EntryType;
        let good = tar_gz(&[
            ("dist", EntryType::Directory, ""),
            ("index.html", EntryType::Regular, ""),
        ]);
        assert_eq!(validate_docs(&good), Ok(()));
        for (name, kind, target, said) in [
            (
                "shadow.html",
                EntryType::Symlink,
                "/etc/shadow",
                "symbolic link",
            ),
            ("hard.html", EntryType::Link, "/etc/shadow", "hard link"),
            ("dev", EntryType::Char, "", "character device"),
            ("blk", EntryType::Block, "", "block device"),
            ("pipe", EntryType::Fifo, "", "FIFO"),
        ] {
            let bytes = tar_gz(&[("index.html", EntryType::Regular, ""), (name, kind, target)]);
            assert_eq!(
                validate_docs(&bytes),
                Err(DocsError::NotAFile {
                    entry: name.to_string(),
                    kind: said
                }),
                "{name}"
            );
        }
    }
}
