//! [`Reader`]: a registry opened to read, without its lock: what the server, the pages and the
//! `list` commands ask of a registry, each file verified with the registry's public key.

use super::advisories::Affecting;
use super::policies::PolicyFile;
use super::{Error, PackageRecord, Verification};
use crate::format::registry::Release;
use crate::format::release_info::{PackageInfo, info_path};
use crate::format::signing::PublicKey;
use crate::storage::Storage;

/// A registry to read: its storage, its repository name and the key its files must be signed
/// with. Takes no lock; every read verifies what it reads.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    storage: &'a dyn Storage,
    repo: &'a str,
    key: &'a PublicKey,
}

impl<'a> Reader<'a> {
    /// The registry of repository `repo` in `storage`, verified with `key`.
    pub fn new(storage: &'a dyn Storage, repo: &'a str, key: &'a PublicKey) -> Reader<'a> {
        Reader { storage, repo, key }
    }

    /// The releases `packages/NAME` records, oldest first; `None` when there is no such file.
    pub fn package(&self, package: &str) -> Result<Option<Vec<Release>>, Error> {
        super::manage::read_package(self.storage, self.repo, self.key, package)
    }

    /// The API's record of `package` ([`crate::format::release_info`]); empty when there is
    /// none. One small read: never a tarball.
    pub fn package_info(&self, package: &str) -> Result<PackageInfo, Error> {
        Ok(self
            .storage
            .read(&info_path(package))?
            .map(|o| PackageInfo::decode_lenient(&o.bytes))
            .unwrap_or_default())
    }

    /// What `packages/NAME` records: releases and advisories.
    pub fn package_record(&self, package: &str) -> Result<Option<PackageRecord>, Error> {
        super::manage::read_package_record(self.storage, self.repo, self.key, package)
    }

    /// The versions `versions` lists for `package`; `None` when it lists no such package.
    pub fn indexed_versions(&self, package: &str) -> Result<Option<Vec<String>>, Error> {
        super::manage::indexed_versions(self.storage, self.repo, self.key, package)
    }

    /// The advisories of `package`, each with the versions it affects.
    pub fn advisories(&self, package: &str) -> Result<Option<Vec<Affecting>>, Error> {
        super::advisories::read_advisories(self.storage, self.repo, self.key, package)
    }

    /// The policies under `policies/`, each verified on its own.
    pub fn policies(&self) -> Result<Vec<PolicyFile>, Error> {
        super::policies::read_policies(self.storage, self.repo, self.key)
    }

    /// Every problem of the registry ([`super::verify()`]).
    pub fn verify(&self) -> Result<Verification, Error> {
        super::verify(self.storage, self.repo, self.key)
    }
}
