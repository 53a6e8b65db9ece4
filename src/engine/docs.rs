//! Documentation tarballs: `docs/NAME-VERSION.tar.gz`, where hex_core's `get_docs` fetches a
//! release's docs, stored and removed beside the registry.

use super::{ChangeKind, Error, Registry, Stage};
use crate::format::docs::validate_docs;
use crate::format::release_info::{PackageInfo, info_path};
use crate::format::resource_path::ResourcePath;
use crate::storage::Condition;

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
        self.set_has_docs(package, version, true)?;
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
        self.set_has_docs(package, version, false)?;
        Ok(removed)
    }

    /// Records in the package's API record whether release `version` has docs (nothing when
    /// the record does not know the release).
    fn set_has_docs(&mut self, package: &str, version: &str, has_docs: bool) -> Result<(), Error> {
        let path = info_path(package);
        let Some(existing) = self.storage.read(&path)? else {
            return Ok(());
        };
        let mut record = PackageInfo::decode_lenient(&existing.bytes);
        let mut changed = false;
        for release in record.releases.iter_mut().filter(|r| r.version == version) {
            changed |= release.has_docs != has_docs;
            release.has_docs = has_docs;
        }
        if changed {
            self.storage.write(
                &path,
                &record.encode(),
                Condition::Replace(existing.version),
            )?;
        }
        Ok(())
    }
}
