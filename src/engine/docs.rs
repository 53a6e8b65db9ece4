//! Documentation tarballs: `docs/NAME-VERSION.tar.gz`, where hex_core's `get_docs` fetches a
//! release's docs, stored and removed beside the registry.

use std::io::Read;

use super::{ChangeKind, Error, Registry, Stage};
use crate::format::resource_path::ResourcePath;
use crate::storage::Condition;

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

impl Registry<'_> {
    /// Stores `bytes` as the docs of release `version` of `package`, which must exist,
    /// replacing earlier docs. Returns whether docs were there before.
    pub fn put_docs(&mut self, package: &str, version: &str, bytes: &[u8]) -> Result<bool, Error> {
        self.existing_release(package, version)?;
        let path = ResourcePath::docs(package, version).key();
        validate_docs(bytes).map_err(|source| Error::BadDocs {
            path: self.shown(&path),
            source,
        })?;
        let existing = self.storage.read(&path)?;
        let kind = if existing.is_some() {
            ChangeKind::Updating
        } else {
            ChangeKind::Creating
        };
        self.lock_for_writing()?;
        self.storage.write(
            &path,
            bytes,
            Condition::after(existing.as_ref().map(|o| &o.version)),
        )?;
        self.changes.file(Stage::Deletions, kind, &path);
        Ok(existing.is_some())
    }

    /// Removes the docs of release `version` of `package`; `false` when there were none.
    pub fn remove_docs(&mut self, package: &str, version: &str) -> Result<bool, Error> {
        let path = ResourcePath::docs(package, version).key();
        self.lock_for_writing()?;
        let removed = self.storage.delete(&path)?;
        if removed {
            self.changes
                .file(Stage::Deletions, ChangeKind::Removing, &path);
        }
        Ok(removed)
    }
}
