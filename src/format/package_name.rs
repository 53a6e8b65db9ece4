//! Rules on package names and tarball file names, shared by every command that reads tarballs.

use crate::format::tarball::one_line;

/// The longest package name, in bytes. Hex sets none, but each release is kept as the file
/// `NAME-VERSION.tar` (its docs `NAME-VERSION.tar.gz`), and a file name has at most 255 bytes
/// on every common file system: without a limit, a long name reaches the disk and fails there.
pub const MAX_LEN: usize = 200;

/// The longest file name a release is kept under, in bytes (ext4, XFS, APFS, NTFS).
pub const MAX_FILE_NAME: usize = 255;

/// Whether `name` is a Hex package name: `^[a-z][a-z0-9_]*$`, at most [`MAX_LEN`] bytes.
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_LEN
        && matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// What a valid package name looks like, for error messages.
pub const RULE: &str =
    "lowercase letters, digits and `_`, starting with a letter, at most 200 bytes";

/// Whether release `name`-`version`'s files (`NAME-VERSION.tar`, `NAME-VERSION.tar.gz`) have
/// names short enough for a file system ([`MAX_FILE_NAME`]).
pub fn release_fits(name: &str, version: &str) -> bool {
    name.len() + 1 + version.len() + ".tar.gz".len() <= MAX_FILE_NAME
}

/// `foo-1.0.0-rc.1.tar` → (`foo`, `1.0.0-rc.1`): the name ends at the first `-`, as the task
/// splits it.
pub fn split_tarball_file_name(file_name: &str) -> Option<(&str, &str)> {
    let stem = file_name.strip_suffix(".tar")?;
    let (name, version) = stem.split_once('-')?;
    (!name.is_empty() && !version.is_empty()).then_some((name, version))
}

/// Checks that a tarball's file name (`file_name`, `NAME-VERSION.tar`, split as `name` and
/// `version`) agrees with its metadata (`meta_name`, `meta_version`): clients fetch a release
/// by the name and version the registry records, which come from the metadata. `shown` names
/// the file in the error, which says how to fix it.
pub fn check_agreement(
    shown: &str,
    (name, version): (&str, &str),
    (meta_name, meta_version): (&str, &str),
) -> Result<(), Disagreement> {
    let (meta_name_q, meta_version_q) = (one_line(meta_name), one_line(meta_version));
    if meta_name != name {
        return Err(Disagreement::Name {
            shown: shown.to_string(),
            name: name.to_string(),
            meta_name: meta_name_q,
            meta_version: meta_version_q,
        });
    }
    if meta_version != version {
        return Err(Disagreement::Version {
            shown: shown.to_string(),
            name: name.to_string(),
            version: one_line(version),
            meta_version: meta_version_q,
        });
    }
    Ok(())
}

/// A tarball's file name and its metadata disagree. Names and versions from the metadata are
/// quoted on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    /// The package names differ.
    #[error(
        "{shown}: the file name says package `{name}` but metadata.config says `{meta_name}`; rename the file to {meta_name}-{meta_version}.tar"
    )]
    Name {
        /// The file, as shown.
        shown: String,
        /// The package its name says.
        name: String,
        /// The package its metadata says.
        meta_name: String,
        /// The version its metadata says.
        meta_version: String,
    },
    /// The versions differ.
    #[error(
        "{shown}: the file name says version `{version}` but metadata.config says `{meta_version}`; clients would fetch {name}-{meta_version}.tar, so rename the file"
    )]
    Version {
        /// The file, as shown.
        shown: String,
        /// The package.
        name: String,
        /// The version its name says.
        version: String,
        /// The version its metadata says.
        meta_version: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_split_at_the_first_dash() {
        assert_eq!(
            split_tarball_file_name("foo-1.0.0.tar"),
            Some(("foo", "1.0.0"))
        );
        assert_eq!(
            split_tarball_file_name("jason-1.0.0-rc.1.tar"),
            Some(("jason", "1.0.0-rc.1"))
        );
        assert_eq!(split_tarball_file_name("foo.tar"), None);
        assert_eq!(split_tarball_file_name("-1.0.0.tar"), None);
        assert_eq!(split_tarball_file_name("foo-.tar"), None);
    }

    #[test]
    fn package_names() {
        assert!(is_valid("acme_erl_base"));
        assert!(is_valid("a1"));
        assert!(!is_valid("1a"));
        assert!(!is_valid("Acme"));
        assert!(!is_valid("a-b"));
        assert!(!is_valid(""));
        assert!(is_valid(&"a".repeat(MAX_LEN)));
        assert!(!is_valid(&"a".repeat(MAX_LEN + 1)));
        assert!(release_fits(&"a".repeat(MAX_LEN), "1.0.0"));
        assert!(release_fits("a", &format!("1.0.0-{}", "b".repeat(240))));
        assert!(!release_fits("a", &format!("1.0.0-{}", "b".repeat(241))));
        assert!(!release_fits(
            &"a".repeat(MAX_LEN),
            &format!("1.0.0-{}", "b".repeat(60))
        ));
    }

    #[test]
    fn file_name_and_metadata_must_agree() {
        assert!(check_agreement("f", ("foo", "1.0.0"), ("foo", "1.0.0")).is_ok());
        let e = check_agreement("f", ("foo", "1.0.0"), ("bar", "1.0.0")).unwrap_err();
        assert!(
            e.to_string().contains("rename the file to bar-1.0.0.tar"),
            "{e}"
        );
        let e = check_agreement("f", ("foo", "1.0.0"), ("foo", "1.0.1")).unwrap_err();
        assert!(
            e.to_string().contains("clients would fetch foo-1.0.1.tar"),
            "{e}"
        );
    }
}
