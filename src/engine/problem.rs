//! Why one tarball is refused by a build or an add: typed, so that each front end says what
//! to do in its own terms (the command line names its `--replace` flag; the Hex API names the
//! client's).

use crate::format::package_name;
use crate::format::tarball::{TarballError, one_line};
use crate::storage::StorageError;

/// One tarball refused. File names and metadata text are quoted on one line.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A file under `tarballs/` whose name is not `NAME-VERSION.tar`.
    #[error(
        "{shown} is not named NAME-VERSION.tar (e.g. foo-1.0.0.tar), as clients expect tarballs to be"
    )]
    FileName {
        /// The file, as shown.
        shown: String,
    },
    /// A file name whose package part is not a package name.
    #[error("{shown}: `{name}` is not a valid package name ({rule})", rule = package_name::RULE)]
    FileNamePackage {
        /// The file, as shown.
        shown: String,
        /// The package part of its name.
        name: String,
    },
    /// Not a regular file.
    #[error("{shown} is not a regular file")]
    NotRegular {
        /// The file, as shown.
        shown: String,
    },
    /// The tarball cannot be read or is not a valid Hex tarball.
    #[error("{shown} {error}")]
    Tarball {
        /// The file, as shown.
        shown: String,
        /// What is wrong with the tarball.
        #[source]
        error: TarballError,
    },
    /// The tarball cannot be read from where it is.
    #[error("cannot read {shown}: {error}")]
    Read {
        /// The file, as shown.
        shown: String,
        /// The operating system's error.
        #[source]
        error: std::io::Error,
    },
    /// The storage failed while reading the tarball.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file went away between the listing and the read.
    #[error("cannot read {shown}: it was removed while hexreg ran")]
    Vanished {
        /// The file, as shown.
        shown: String,
    },
    /// `metadata.config` names a package that is not a package name.
    #[error(
        "{shown}: metadata.config names the package `{name}`, which is not a valid package name ({rule})",
        rule = package_name::RULE
    )]
    PackageName {
        /// The file, as shown.
        shown: String,
        /// The name it gives.
        name: String,
    },
    /// `metadata.config`'s version cannot be used.
    #[error("{shown}: metadata.config version {detail}")]
    Version {
        /// The file, as shown.
        shown: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The file name and the metadata disagree.
    #[error(transparent)]
    Disagreement(#[from] package_name::Disagreement),
    /// Two tarballs given at once are the same release.
    #[error("{first} and {second} are both {name} {version}: give one")]
    Duplicate {
        /// The first, as shown.
        first: String,
        /// The second, as shown.
        second: String,
        /// The package.
        name: String,
        /// The version.
        version: String,
    },
    /// The registry records this release with these bytes, but the file in place differs.
    #[error("{source_name} differs from {path}, which the registry does not describe")]
    DiffersInPlace {
        /// The tarball given, as shown.
        source_name: String,
        /// The file in place, as shown.
        path: String,
    },
    /// The release is published with another tarball.
    #[error(
        "{source_name}: {name} {version} is already published with another tarball (outer checksum {published}, this one {given}); releases are immutable for clients that locked them"
    )]
    Published {
        /// The tarball given, as shown.
        source_name: String,
        /// The package.
        name: String,
        /// The version.
        version: String,
        /// The outer checksum the registry records, in uppercase hexadecimal.
        published: String,
        /// The outer checksum of the tarball given, in uppercase hexadecimal.
        given: String,
    },
    /// A tarball file the registry does not describe is in the way.
    #[error("{path} already exists with other content")]
    InTheWay {
        /// The file in place, as shown.
        path: String,
    },
}

/// What replacing would do about a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replacing overwrites a file the registry does not describe.
    Overwrites,
    /// Replacing changes a published release, which clients may have locked.
    ChangesRelease,
}

impl Problem {
    /// Whether (and how) adding again with replace allowed would get past this problem.
    pub fn replace(&self) -> Option<Replace> {
        match self {
            Problem::DiffersInPlace { .. } | Problem::InTheWay { .. } => Some(Replace::Overwrites),
            Problem::Published { .. } => Some(Replace::ChangesRelease),
            _ => None,
        }
    }

    /// The problem of a package name read from metadata, quoted on one line.
    pub(crate) fn package_name(shown: &str, name: &str) -> Problem {
        Problem::PackageName {
            shown: shown.to_string(),
            name: one_line(name),
        }
    }
}
