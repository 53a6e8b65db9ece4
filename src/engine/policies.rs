//! Policies: write, remove and list the signed `policies/NAME` files ([`crate::format::policy`]) that
//! Hex 2.5 loads with `HEX_POLICY=REPO/NAME`. They are signed with the registry's key and
//! checked by [`super::verify()`]; nothing else in the registry refers to them.

use super::{ChangeKind, Error, Registry, Stage};
use crate::format::policy::{self, PolicySpec};
use crate::format::proto::policy::Policy;
use crate::format::registry::{self, ResourceError};
use crate::format::resource_path::{POLICIES_DIR, ResourcePath};
use crate::format::signing::PublicKey;
use crate::storage::{Condition, Storage};

impl Registry<'_> {
    /// Writes `policies/NAME` for `spec`, replacing the policy of that name. Refuses an invalid
    /// name, repository or cooldown, writing nothing. A file that already holds this policy,
    /// signed by this key, is left alone.
    pub fn set_policy(&mut self, spec: &PolicySpec) -> Result<(), Error> {
        spec.check()?;
        let payload = policy::policy_payload(&self.repo, spec);
        self.write_public_key(None)?;
        let path = ResourcePath::Policy(spec.name.clone()).key();
        let existing = self.storage.read(&path)?;
        if let Some(have) = &existing
            && registry::is_current(&have.bytes, &payload, &self.signer.public)
        {
            return Ok(());
        }
        let sealed = registry::seal(&payload, &self.signer.key).map_err(|source| Error::Sign {
            path: self.shown(&path),
            source,
        })?;
        let kind = if existing.is_some() {
            ChangeKind::Updating
        } else {
            ChangeKind::Creating
        };
        let condition = Condition::after(existing.as_ref().map(|o| &o.version));
        self.storage.write(&path, &sealed, condition)?;
        self.changes.file(Stage::Policies, kind, &path);
        self.cache.carry_over();
        Ok(())
    }

    /// Removes `policies/NAME`; refuses a policy that does not exist.
    pub fn remove_policy(&mut self, name: &str) -> Result<(), Error> {
        if !policy::is_valid_name(name) {
            return Err(policy::PolicyError::Name(crate::format::tarball::one_line(name)).into());
        }
        let path = ResourcePath::Policy(name.to_string()).key();
        if !self.storage.delete(&path)? {
            return Err(Error::NoPolicy {
                name: name.to_string(),
                path: self.shown(&path),
            });
        }
        self.changes
            .file(Stage::Policies, ChangeKind::Removing, &path);
        self.cache.carry_over();
        Ok(())
    }
}

/// A file of `policies/`: its name, and the policy it holds or why it cannot be used.
pub type PolicyFile = (String, Result<Policy, ResourceError>);

/// Every file of `policies/`, by name, each opened and checked (signature with `key`,
/// repository `repo`, the name it holds): the policy, or why it cannot be used. Reads only;
/// takes no lock.
pub(crate) fn read_policies(
    storage: &dyn Storage,
    repo: &str,
    key: &PublicKey,
) -> Result<Vec<PolicyFile>, Error> {
    let mut names: Vec<String> = storage
        .list(POLICIES_DIR)?
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regular && !e.name.starts_with('.'))
        .map(|e| e.name)
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = ResourcePath::Policy(name.clone()).key();
        let Some(object) = storage.read(&path)? else {
            continue;
        };
        out.push((
            name.clone(),
            policy::open_policy(&object.bytes, key, repo, &name),
        ));
    }
    Ok(out)
}
