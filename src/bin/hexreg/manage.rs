//! `hexreg add`, `remove`, `retire` and `unretire`: the arguments, and the engine's operations
//! ([`hexreg::engine::manage`]) on the directory they name.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Result;

use hexreg::engine::audit::{self, Action};
use hexreg::engine::{NewTarball, Problem, Registry};
use hexreg::format::encoding::hex_upper;
use hexreg::format::registry::{Retirement, RetirementReason};
use hexreg::format::tarball;

use crate::options::{RegistryArgs, save_cache};
use crate::output::{print_changes, with_problems};
use crate::progress::Bar;

pub const ADD_HELP: &str = "Example:
  hexreg add public foo-1.0.0.tar bar-0.2.0.tar --name=acme --private-key=key.pem

Validates each tarball, copies it to PUBLIC_DIR/tarballs/NAME-VERSION.tar and updates
packages/NAME, names and versions from the existing (verified) registry files: the other
tarballs need not be present. Re-adding an identical tarball changes nothing.";

/// `hexreg add` arguments.
#[derive(clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Package tarballs to add.
    #[arg(value_name = "TARBALL", required = true)]
    pub tarballs: Vec<PathBuf>,
    /// Replace a published release whose tarball differs (otherwise refused).
    #[arg(long)]
    pub replace: bool,
    /// Record when each new release enters the registry (`published_at`, which Hex 2.5's
    /// HEX_COOLDOWN reads): the time its tarball is stored.
    #[arg(long)]
    pub published_at: bool,
}

pub const REMOVE_HELP: &str = "Example:
  hexreg remove public foo 1.0.0 --name=acme --private-key=key.pem
  hexreg remove public foo --name=acme --private-key=key.pem     # every version

Updates packages/NAME (removed when no release is left), names and versions, then deletes
the tarballs of the removed releases.";

/// `hexreg remove` arguments.
#[derive(clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Package name.
    pub package: String,
    /// Version to remove [default: every version].
    pub version: Option<String>,
}

pub const RETIRE_HELP: &str = "Example:
  hexreg retire public foo 1.0.0 --reason=security --message=\"CVE-2026-1234, use 1.0.1\" \\
      --name=acme --private-key=key.pem

Marks the release retired in packages/NAME and versions; mix warns about retired releases
and does not pick them for new locks.";

/// Why a release is retired.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reason {
    Other,
    Invalid,
    Security,
    Deprecated,
    Renamed,
}

impl From<Reason> for RetirementReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::Other => RetirementReason::RetiredOther,
            Reason::Invalid => RetirementReason::RetiredInvalid,
            Reason::Security => RetirementReason::RetiredSecurity,
            Reason::Deprecated => RetirementReason::RetiredDeprecated,
            Reason::Renamed => RetirementReason::RetiredRenamed,
        }
    }
}

/// `hexreg retire` arguments.
#[derive(clap::Args)]
pub struct RetireArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Package name.
    pub package: String,
    /// Version to retire.
    pub version: String,
    /// Why the release is retired.
    #[arg(long, value_enum)]
    pub reason: Reason,
    /// A message shown to users (e.g. what to use instead).
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
}

pub const UNRETIRE_HELP: &str = "Example:
  hexreg unretire public foo 1.0.0 --name=acme --private-key=key.pem";

/// `hexreg unretire` arguments.
#[derive(clap::Args)]
pub struct UnretireArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Package name.
    pub package: String,
    /// Version to unretire.
    pub version: String,
}

/// Opens the registry `args` names, runs `change` on it, prints what changed and saves the
/// cache.
pub fn change(
    args: &RegistryArgs,
    change: impl FnOnce(&mut Registry) -> Result<(), hexreg::engine::Error>,
) -> Result<()> {
    change_dated(args, false, change)
}

/// [`change`], dating new releases when `release_dates` (`--published-at`).
fn change_dated(
    args: &RegistryArgs,
    release_dates: bool,
    change: impl FnOnce(&mut Registry) -> Result<(), hexreg::engine::Error>,
) -> Result<()> {
    let target = args.storage()?;
    let signer = args.signer(&target)?;
    if !target.exists() {
        anyhow::bail!(
            "{} is not a directory: give the registry directory (create one with `hexreg build`)",
            args.public_dir
        );
    }
    // A registry whose builds date releases keeps dating those added to it.
    let release_dates = release_dates
        || hexreg::engine::Settings::read(target.storage())?.published_at == Some(true);
    let bar = Bar::new(args.run.quiet);
    let mut registry = args
        .open(&target, &signer, &bar)?
        .with_release_dates(release_dates);
    let result = change(&mut registry);
    print_changes(registry.take_changes(), target.storage(), args.run.quiet);
    result.map_err(with_problems)?;
    save_cache(registry.into_cache(), "updated");
    Ok(())
}

/// Reads and validates a tarball given to `add`.
fn read_new_tarball(path: &Path, repo: &str) -> Result<NewTarball, Problem> {
    let shown = tarball::one_line(&path.display().to_string());
    let read_error = |error| Problem::Read {
        shown: shown.clone(),
        error,
    };
    let file = fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    if size > tarball::MAX_TARBALL_SIZE {
        return Err(Problem::Tarball {
            shown,
            error: tarball::TarballError::TooBig { size },
        });
    }
    let mut bytes = Vec::new();
    file.take(tarball::MAX_TARBALL_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    NewTarball::validate(&path.display().to_string(), bytes, repo)
}

pub fn add(args: &AddArgs) -> Result<()> {
    // A first `add` starts a registry, as a first `build` does.
    let target = args.registry.storage()?;
    args.registry.signer(&target)?;
    target.create_root()?;
    let repo = &args.registry.name;
    change_dated(&args.registry, args.published_at, |registry| {
        let new: Vec<Result<NewTarball, Problem>> = args
            .tarballs
            .iter()
            .map(|path| read_new_tarball(path, repo))
            .collect();
        // What each release was before, for the audit trail.
        let mut before = Vec::new();
        for t in new.iter().flatten() {
            let old = release_of(registry, repo, &t.name, &t.release.version)?;
            before.push((
                t.name.clone(),
                t.release.version.clone(),
                old.map(|r| hex_upper(&r.outer_checksum)),
                hex_upper(&t.release.outer_checksum),
            ));
        }
        registry.add(new, args.replace)?;
        let storage = registry.storage();
        for (name, version, old, new) in before {
            let action = match &old {
                None => Action::Publish,
                Some(old) if *old == new => continue,
                Some(_) => Action::Replace,
            };
            if old.is_none() {
                audit::note_first_indexed(storage, &name, &version, audit::now_secs())?;
            }
            audit::append_cli(
                storage,
                action,
                &name,
                &version,
                old.as_deref().unwrap_or(""),
                &new,
            )?;
        }
        Ok(())
    })
}

/// Release `version` of `name` as the registry records it, if it does.
fn release_of(
    registry: &Registry,
    repo: &str,
    name: &str,
    version: &str,
) -> Result<Option<hexreg::format::registry::Release>, hexreg::engine::Error> {
    let public = registry.public_key().clone();
    Ok(
        hexreg::engine::Reader::new(registry.storage(), repo, &public)
            .package(name)?
            .and_then(|releases| releases.into_iter().find(|r| r.version == version)),
    )
}

pub fn remove(args: &RemoveArgs) -> Result<()> {
    let repo = &args.registry.name;
    change(&args.registry, |registry| {
        let public = registry.public_key().clone();
        let gone: Vec<_> = hexreg::engine::Reader::new(registry.storage(), repo, &public)
            .package(&args.package)?
            .unwrap_or_default()
            .into_iter()
            .filter(|r| args.version.as_deref().is_none_or(|v| v == r.version))
            .collect();
        registry.remove(&args.package, args.version.as_deref())?;
        for release in gone {
            audit::forget_first_indexed(registry.storage(), &args.package, &release.version)?;
            audit::append_cli(
                registry.storage(),
                Action::Revert,
                &args.package,
                &release.version,
                &hex_upper(&release.outer_checksum),
                "",
            )?;
        }
        Ok(())
    })
}

pub fn retire(args: &RetireArgs) -> Result<()> {
    let retirement = Retirement {
        reason: args.reason.into(),
        message: args.message.clone(),
    };
    change(&args.registry, |registry| {
        registry.retire(&args.package, &args.version, retirement)?;
        audit::append_cli(
            registry.storage(),
            Action::Retire,
            &args.package,
            &args.version,
            "",
            "",
        )?;
        Ok(())
    })
}

pub fn unretire(args: &UnretireArgs) -> Result<()> {
    change(&args.registry, |registry| {
        registry.unretire(&args.package, &args.version)?;
        audit::append_cli(
            registry.storage(),
            Action::Unretire,
            &args.package,
            &args.version,
            "",
            "",
        )?;
        Ok(())
    })
}
