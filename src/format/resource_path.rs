//! Where each file of a registry lives, relative to the registry's root: the one place that
//! spells `packages/NAME` or `tarballs/NAME-VERSION.tar`.

use std::fmt;

/// Directory of the `packages/NAME` resources.
pub const PACKAGES_DIR: &str = "packages";
/// Directory of the release tarballs.
pub const TARBALLS_DIR: &str = "tarballs";
/// Directory of the documentation tarballs, where hex_core's `get_docs` fetches them.
pub const DOCS_DIR: &str = "docs";
/// Directory of the `policies/NAME` resources (Hex 2.5's `HEX_POLICY=REPO/NAME`).
pub const POLICIES_DIR: &str = "policies";

/// A file of a registry, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourcePath {
    /// `names`: every package with its last update.
    Names,
    /// `versions`: every package with its versions and retired indexes.
    Versions,
    /// `public_key`: the PEM public key clients verify signatures with.
    PublicKey,
    /// `packages/NAME`: the releases of one package.
    Package(String),
    /// `tarballs/FILE`: a release tarball, `FILE` being `NAME-VERSION.tar` when it is one.
    Tarball(String),
    /// `docs/NAME-VERSION.tar.gz`: a release's documentation.
    Docs(String),
    /// `policies/NAME`: a dependency policy.
    Policy(String),
}

impl ResourcePath {
    /// `packages/NAME`.
    pub fn package(name: &str) -> Self {
        ResourcePath::Package(name.to_string())
    }

    /// `tarballs/NAME-VERSION.tar`.
    pub fn tarball(name: &str, version: &str) -> Self {
        ResourcePath::Tarball(tarball_file_name(name, version))
    }

    /// `docs/NAME-VERSION.tar.gz`.
    pub fn docs(name: &str, version: &str) -> Self {
        ResourcePath::Docs(format!("{name}-{version}.tar.gz"))
    }

    /// The path as the storage keys it (`packages/foo`).
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePath::Names => f.write_str("names"),
            ResourcePath::Versions => f.write_str("versions"),
            ResourcePath::PublicKey => f.write_str("public_key"),
            ResourcePath::Package(name) => write!(f, "{PACKAGES_DIR}/{name}"),
            ResourcePath::Tarball(file) => write!(f, "{TARBALLS_DIR}/{file}"),
            ResourcePath::Docs(file) => write!(f, "{DOCS_DIR}/{file}"),
            ResourcePath::Policy(name) => write!(f, "{POLICIES_DIR}/{name}"),
        }
    }
}

/// `NAME-VERSION.tar`, the file name clients fetch a release's tarball by.
pub fn tarball_file_name(name: &str, version: &str) -> String {
    format!("{name}-{version}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_spelled_as_clients_fetch_them() {
        assert_eq!(ResourcePath::Names.key(), "names");
        assert_eq!(ResourcePath::Versions.key(), "versions");
        assert_eq!(ResourcePath::PublicKey.key(), "public_key");
        assert_eq!(ResourcePath::package("foo").key(), "packages/foo");
        assert_eq!(
            ResourcePath::tarball("foo", "1.0.0-rc.1").key(),
            "tarballs/foo-1.0.0-rc.1.tar"
        );
        assert_eq!(
            ResourcePath::docs("foo", "1.0.0").key(),
            "docs/foo-1.0.0.tar.gz"
        );
    }
}
