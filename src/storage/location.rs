//! Where a registry is: a local directory or a bucket prefix, named by the text a user gives
//! (`public`, `/srv/hex`, `s3://BUCKET/PREFIX`).

use std::path::Path;

use super::local::LocalDir;
use super::object::{ObjectError, ObjectOptions, ObjectStorage};
use super::{Storage, StorageError};

/// A registry's storage, of either kind.
#[derive(Clone)]
pub enum Location {
    /// A directory.
    Local(LocalDir),
    /// `s3://BUCKET/PREFIX`.
    Object(ObjectStorage),
}

impl Location {
    /// The storage `text` names: `s3://...` is a bucket (written with `options`), anything
    /// else a directory.
    pub fn parse(text: &str, options: ObjectOptions) -> Result<Location, ObjectError> {
        if text.starts_with("s3://") {
            Ok(Location::Object(ObjectStorage::from_url(text, options)?))
        } else {
            Ok(Location::Local(LocalDir::new(text)))
        }
    }

    /// The storage.
    pub fn storage(&self) -> &dyn Storage {
        match self {
            Location::Local(local) => local,
            Location::Object(object) => object,
        }
    }

    /// Whether `path` lies inside the published directory (never, for a bucket).
    pub fn holds(&self, path: &Path) -> bool {
        match self {
            Location::Local(local) => local.holds(path),
            Location::Object(_) => false,
        }
    }

    /// Creates the directory if it is missing (a bucket prefix needs nothing).
    pub fn create_root(&self) -> Result<(), StorageError> {
        match self {
            Location::Local(local) => local.create_root(),
            Location::Object(_) => Ok(()),
        }
    }

    /// Whether the registry can exist there: a directory must already exist; a bucket is
    /// checked by its first request.
    pub fn exists(&self) -> bool {
        match self {
            Location::Local(local) => local.root().is_dir(),
            Location::Object(_) => true,
        }
    }

    /// The registry as messages name it.
    pub fn shown(&self) -> String {
        match self {
            Location::Local(local) => local.root().display().to_string(),
            Location::Object(object) => object.url().to_string(),
        }
    }

    /// What identifies the registry for a cache: its resolved directory, or its URL.
    pub fn cache_id(&self) -> Vec<u8> {
        match self {
            Location::Local(local) => {
                let root = local.root();
                let id = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
                id.as_os_str().as_encoded_bytes().to_vec()
            }
            Location::Object(object) => object.id().as_bytes().to_vec(),
        }
    }

    /// Whether reads block on the network (a bucket): async callers then read through
    /// `block_in_place`.
    pub fn is_remote(&self) -> bool {
        matches!(self, Location::Object(_))
    }
}
