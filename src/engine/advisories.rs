//! Advisories: add, replace and remove the security advisories of a package
//! ([`crate::format::advisory`]), in its `packages/NAME` and in `versions` (`with_advisories`). Every
//! later build and change keeps them (see the writer's `Carry`).

use super::manage::Order;
use super::writer::Carry;
use super::{Error, Registry};
use crate::format::advisory::{self, NewAdvisory};
use crate::format::registry::{Release, SecurityAdvisory};
use crate::format::signing::PublicKey;
use crate::storage::Storage;

impl Registry<'_> {
    /// Adds `new` to `package` (replacing its advisory of the same id), marking the releases
    /// its requirement matches. Returns the versions it affects. Refuses an invalid advisory
    /// and a package not in the registry, writing nothing.
    pub fn add_advisory(&mut self, package: &str, new: &NewAdvisory) -> Result<Vec<String>, Error> {
        new.check()?;
        let index = self.load_index()?;
        let super::PackageRecord {
            mut releases,
            mut advisories,
        } = self.existing_record(package)?;
        let affected = advisory::add(&mut releases, &mut advisories, new);
        self.write_advisories(Order::Grow, index, package, releases, &advisories)?;
        Ok(affected)
    }

    /// Removes advisory `id` from `package`. Refuses an id the package has not, writing
    /// nothing.
    pub fn remove_advisory(&mut self, package: &str, id: &str) -> Result<(), Error> {
        let index = self.load_index()?;
        let super::PackageRecord {
            mut releases,
            mut advisories,
        } = self.existing_record(package)?;
        if !advisory::remove(&mut releases, &mut advisories, id) {
            return Err(Error::NoAdvisory {
                package: package.to_string(),
                id: id.to_string(),
                have: advisories.iter().map(|a| a.id.clone()).collect(),
            });
        }
        self.write_advisories(Order::Shrink, index, package, releases, &advisories)
    }

    fn existing_record(&self, package: &str) -> Result<super::PackageRecord, Error> {
        match self.load_package_record(package)? {
            Some(record) => Ok(record),
            // Says which package and file are missing.
            None => self
                .existing_package(package)
                .map(|releases| super::PackageRecord {
                    releases,
                    advisories: Vec::new(),
                }),
        }
    }

    /// Writes `package` with `advisories`, and the index. Adding goes `packages/NAME` first,
    /// removing the index first: `versions` never flags a release its file does not, and a
    /// run stopped between the two writes is completed by running it again (the file still
    /// holds what it adds or removes).
    fn write_advisories(
        &mut self,
        order: Order,
        index: super::manage::Index,
        package: &str,
        releases: Vec<Release>,
        advisories: &[SecurityAdvisory],
    ) -> Result<(), Error> {
        self.write_changes(
            order,
            index,
            vec![(package.to_string(), releases)],
            &[],
            &[],
            Carry::Advisories(advisories),
        )
    }
}

/// An advisory and the versions it affects.
#[derive(Debug, Clone, PartialEq)]
pub struct Affecting {
    /// The advisory.
    pub advisory: SecurityAdvisory,
    /// The versions of the package it affects, oldest first.
    pub versions: Vec<String>,
}

/// The advisories of `package` in the registry of repository `repo` in `storage`, verified
/// with `key`, each with the versions it affects; `None` when there is no such package.
/// Reads only; takes no lock.
pub(crate) fn read_advisories(
    storage: &dyn Storage,
    repo: &str,
    key: &PublicKey,
    package: &str,
) -> Result<Option<Vec<Affecting>>, Error> {
    let Some(super::PackageRecord {
        releases,
        advisories,
    }) = super::manage::read_package_record(storage, repo, key, package)?
    else {
        return Ok(None);
    };
    Ok(Some(
        advisories
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let affected = releases
                    .iter()
                    .filter(|r| r.advisory_indexes.contains(&(i as u32)))
                    .map(|r| r.version.clone())
                    .collect();
                Affecting {
                    advisory: a,
                    versions: affected,
                }
            })
            .collect(),
    ))
}
