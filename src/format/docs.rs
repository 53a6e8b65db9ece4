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
        count += 1;
    }
    if count == 0 {
        return Err(DocsError::NotTarGz("it holds no file".into()));
    }
    Ok(())
}
