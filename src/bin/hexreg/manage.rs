//! `hexreg add`, `remove`, `retire` and `unretire`: change one package of a registry from the
//! registry itself. The signed resources are the state: `names` and `versions` give every
//! package, `packages/NAME` the releases of the one being changed, each verified with the key
//! pair's public half before it is trusted. No other tarball needs to be present, and no other
//! package's file is rewritten.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use hexreg::registry::{self, PackageSummary, Release, Retirement};
use hexreg::signing::{PrivateKey, PublicKey};
use hexreg::tarball;

use crate::build::{RunOptions, load_private_key, read_valid_tarball};
use crate::store::{Change, DirLock, Report, Stage, Store};
use crate::writer::Writer;

/// The registry a command changes, and how.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// The directory a web server publishes: holds tarballs/ and the registry files.
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: String,
    /// Repository name clients configure (e.g. `mix hex.repo add acme ...`).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// RSA private key (PEM, PKCS#1 or PKCS#8) that signs the registry; keep it outside PUBLIC_DIR.
    #[arg(long, value_name = "KEY")]
    pub private_key: PathBuf,
    #[command(flatten)]
    pub run: RunOptions,
}

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
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Reason {
    Other,
    Invalid,
    Security,
    Deprecated,
    Renamed,
}

impl Reason {
    /// The `RetirementReason` value of `package.proto`.
    fn value(self) -> i32 {
        match self {
            Reason::Other => 0,
            Reason::Invalid => 1,
            Reason::Security => 2,
            Reason::Deprecated => 3,
            Reason::Renamed => 4,
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
    /// Why.
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

/// An open, locked registry whose index has been read and verified.
struct Session {
    store: Store,
    key: PrivateKey,
    public: PublicKey,
    repo: String,
    key_shown: String,
    run: RunOptions,
    summaries: BTreeMap<String, PackageSummary>,
    _lock: DirLock,
}

impl Session {
    fn open(args: &RegistryArgs) -> Result<Session> {
        let key = load_private_key(&args.private_key, Path::new(&args.public_dir))?;
        let public = key.public_key();
        let store = Store::new(&args.public_dir);
        if !store.root().is_dir() {
            bail!(
                "{} is not a directory: give the registry directory (create one with `hexreg build`)",
                args.public_dir
            );
        }
        let lock = DirLock::acquire(store.root(), args.run.lock_wait())?;
        for dir in [
            store.root().to_path_buf(),
            store.packages_dir(),
            store.tarballs_dir(),
        ] {
            crate::store::remove_leftover_temp_files(&dir)?;
        }
        let mut session = Session {
            store,
            key,
            public,
            repo: args.name.clone(),
            key_shown: args.private_key.display().to_string(),
            run: args.run.clone(),
            summaries: BTreeMap::new(),
            _lock: lock,
        };
        session.summaries = session.load_index()?;
        Ok(session)
    }

    /// Reads, verifies and decodes resource `rel`, if it exists.
    fn payload(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.store.read_existing(rel)? else {
            return Ok(None);
        };
        let shown = self.store.shown(rel);
        let opened = registry::open(&bytes).map_err(|e| anyhow!("{shown} {e}"))?;
        opened.verify(&self.public).map_err(|e| {
            anyhow!(
                "{shown} {e}: it was not signed by {} (is --private-key the registry's key?); `hexreg verify` lists every problem",
                self.key_shown
            )
        })?;
        Ok(Some(opened.payload))
    }

    /// Every package of the registry, from `names` and `versions`.
    fn load_index(&self) -> Result<BTreeMap<String, PackageSummary>> {
        let names = self.payload("names")?;
        let versions = self.payload("versions")?;
        let (names, versions) = match (names, versions) {
            (None, None) => return Ok(BTreeMap::new()),
            (Some(n), Some(v)) => (n, v),
            (Some(_), None) | (None, Some(_)) => bail!(
                "{} has only one of `names` and `versions`: rebuild the registry from its tarballs with `hexreg build`",
                self.store.shown("").trim_end_matches('/')
            ),
        };
        let names = registry::decode_names(&names, &self.repo)
            .map_err(|e| anyhow!("{} {e} (check --name)", self.store.shown("names")))?;
        let versions = registry::decode_versions(&versions, &self.repo)
            .map_err(|e| anyhow!("{} {e} (check --name)", self.store.shown("versions")))?;
        let mut updated: BTreeMap<String, i64> = names
            .packages
            .into_iter()
            .map(|p| (p.name, p.updated_at.map_or(0, |t| t.seconds)))
            .collect();
        let mut summaries = BTreeMap::new();
        for p in versions.packages {
            let Some(updated_at) = updated.remove(&p.name) else {
                bail!(
                    "{} lists package `{}` but {} does not: run `hexreg verify`, then `hexreg build`",
                    self.store.shown("versions"),
                    p.name,
                    self.store.shown("names")
                );
            };
            summaries.insert(
                p.name.clone(),
                PackageSummary {
                    name: p.name,
                    updated_at,
                    versions: p.versions,
                    retired: p.retired,
                },
            );
        }
        if let Some(name) = updated.keys().next() {
            bail!(
                "{} lists package `{name}` but {} does not: run `hexreg verify`, then `hexreg build`",
                self.store.shown("names"),
                self.store.shown("versions")
            );
        }
        Ok(summaries)
    }

    /// The releases in `packages/NAME`, sorted; `None` if the file does not exist.
    fn load_package(&self, name: &str) -> Result<Option<Vec<Release>>> {
        let rel = format!("packages/{name}");
        let Some(payload) = self.payload(&rel)? else {
            return Ok(None);
        };
        let shown = self.store.shown(&rel);
        let package = registry::decode_package(&payload, &self.repo, name)
            .map_err(|e| anyhow!("{shown} {e}"))?;
        let mut releases = package
            .releases
            .into_iter()
            .map(|r| Release::from_proto(r).map_err(|e| anyhow!("{shown}: {e}")))
            .collect::<Result<Vec<_>>>()?;
        registry::sort_releases(&mut releases);
        Ok(Some(releases))
    }

    /// Writes the changed packages, then the index without `removed` packages, then deletes
    /// the files in `delete` (tarballs no release refers to any more); prints what changed.
    fn write(
        &mut self,
        mut changed: Vec<(String, Vec<Release>)>,
        removed: &[String],
        mut report: Report,
        delete: &[String],
    ) -> Result<()> {
        let mut cache = self.run.cache(self.store.root(), &self.repo, &self.public);
        let mut writer = Writer {
            store: &self.store,
            repo: &self.repo,
            key: &self.key,
            public: self.public.clone(),
            cache: &mut cache,
            report: Report::default(),
            quiet: self.run.quiet,
        };
        let result = (|| -> Result<()> {
            crate::build::write_public_key(&self.store, &self.public, None, &mut report)?;
            writer.write_packages(&mut changed, false)?;
            for (name, releases) in &changed {
                let updated_at = self.summaries.get(name).map_or(0, |s| s.updated_at);
                self.summaries.insert(
                    name.clone(),
                    PackageSummary::new(name, updated_at, releases),
                );
            }
            for name in removed {
                self.summaries.remove(name);
            }
            let summaries: Vec<PackageSummary> = self.summaries.values().cloned().collect();
            writer.write_index(&summaries, removed)?;
            for rel in delete {
                match fs::remove_file(self.store.path(rel)) {
                    Ok(()) => {
                        report.change(Stage::Deletions, Change::Removing, self.store.shown(rel))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot remove {}", self.store.shown(rel)));
                    }
                }
            }
            Ok(())
        })();
        let mut lines = std::mem::take(&mut writer.report);
        report.append(&mut lines);
        report.print(self.run.quiet);
        result?;
        cache.carry_over();
        if let Err(e) = cache.save() {
            eprintln!("warning: the registry is updated, but the cache could not be saved: {e:#}");
        }
        Ok(())
    }

    /// The releases of `package`, or an error saying it is not in the registry.
    fn existing_package(&self, package: &str) -> Result<Vec<Release>> {
        self.load_package(package)?.ok_or_else(|| {
            anyhow!(
                "package `{package}` is not in the registry {} (no {})",
                self.store.shown("").trim_end_matches('/'),
                self.store.shown(&format!("packages/{package}"))
            )
        })
    }
}

/// Index of `version` in `releases`, or an error listing the versions there are.
fn find_version(releases: &[Release], package: &str, version: &str) -> Result<usize> {
    releases
        .iter()
        .position(|r| r.version == version)
        .ok_or_else(|| {
            let have: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
            anyhow!(
                "package `{package}` has no version `{version}` (it has: {})",
                have.join(", ")
            )
        })
}

fn tarball_rel(name: &str, version: &str) -> String {
    format!("tarballs/{name}-{version}.tar")
}

/// A tarball given to `add`, read and checked.
struct NewTarball {
    source: PathBuf,
    bytes: Vec<u8>,
    name: String,
    release: Release,
}

fn read_new_tarball(path: &Path, repo: &str) -> Result<NewTarball, String> {
    let shown = tarball::one_line(&path.display().to_string());
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let (bytes, t, release) = read_valid_tarball(path, &shown, &meta, repo)?;
    Ok(NewTarball {
        source: path.to_path_buf(),
        bytes,
        name: t.metadata.name,
        release,
    })
}

pub fn add(args: &AddArgs) -> Result<()> {
    // A first `add` starts a registry, as a first `build` does.
    crate::store::create_dir_all(Path::new(&args.registry.public_dir))?;
    let mut session = Session::open(&args.registry)?;
    let repo = session.repo.clone();

    let mut errors = Vec::new();
    let mut new: Vec<NewTarball> = Vec::new();
    for path in &args.tarballs {
        match read_new_tarball(path, &repo) {
            Ok(t) => {
                if let Some(other) = new
                    .iter()
                    .find(|o| o.name == t.name && o.release.version == t.release.version)
                {
                    errors.push(format!(
                        "{} and {} are both {} {}: give one",
                        other.source.display(),
                        path.display(),
                        t.name,
                        t.release.version
                    ));
                } else {
                    new.push(t);
                }
            }
            Err(e) => errors.push(e),
        }
    }

    // Decide every change before writing anything.
    let mut packages: BTreeMap<String, Vec<Release>> = BTreeMap::new();
    let mut copies: Vec<&NewTarball> = Vec::new();
    // (package, version) of each release added or replaced.
    let mut added: Vec<(String, String)> = Vec::new();
    for t in &new {
        if !packages.contains_key(&t.name) {
            let releases = session.load_package(&t.name)?.unwrap_or_default();
            packages.insert(t.name.clone(), releases);
        }
        let releases = packages.entry(t.name.clone()).or_default();
        let rel = tarball_rel(&t.name, &t.release.version);
        let on_disk = session.store.read_existing(&rel)?;
        let differs_on_disk = on_disk.as_ref().is_some_and(|b| *b != t.bytes);
        match releases.iter().position(|r| r.version == t.release.version) {
            Some(i) if releases[i].outer_checksum == t.release.outer_checksum => {
                if differs_on_disk && !args.replace {
                    errors.push(format!(
                        "{} differs from {}, which the registry does not describe: pass --replace to overwrite it",
                        t.source.display(),
                        session.store.shown(&rel)
                    ));
                } else if on_disk.is_none() || differs_on_disk {
                    copies.push(t);
                }
            }
            Some(i) => {
                if !args.replace {
                    errors.push(format!(
                        "{}: {} {} is already published with another tarball (outer checksum {}, this one {}); releases are immutable for clients that locked them: pass --replace only if you must",
                        t.source.display(),
                        t.name,
                        t.release.version,
                        tarball::hex_upper(&releases[i].outer_checksum),
                        tarball::hex_upper(&t.release.outer_checksum)
                    ));
                    continue;
                }
                releases[i] = t.release.clone();
                copies.push(t);
                added.push((t.name.clone(), t.release.version.clone()));
            }
            None => {
                if differs_on_disk && !args.replace {
                    errors.push(format!(
                        "{} already exists with other content: pass --replace to overwrite it",
                        session.store.shown(&rel)
                    ));
                    continue;
                }
                releases.push(t.release.clone());
                registry::sort_releases(releases);
                if on_disk.is_none() || differs_on_disk {
                    copies.push(t);
                }
                added.push((t.name.clone(), t.release.version.clone()));
            }
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        bail!("nothing was added: fix the tarballs above and run again");
    }

    // Tarballs first: a release must never be listed before its tarball is there.
    let mut report = Report::default();
    for t in &copies {
        let rel = tarball_rel(&t.name, &t.release.version);
        let change = if session.store.path(&rel).exists() {
            Change::Updating
        } else {
            Change::Creating
        };
        session.store.write(&rel, &t.bytes)?;
        report.change(Stage::TarballsDir, change, session.store.shown(&rel));
    }
    // Each package with a new release: its `updated_at` becomes the newest mtime of the new
    // tarballs, as a build would compute it.
    for (name, version) in &added {
        let mtime = fs::metadata(session.store.path(&tarball_rel(name, version)))
            .map(|m| std::os::unix::fs::MetadataExt::mtime(&m))
            .unwrap_or(0);
        let entry = session
            .summaries
            .entry(name.clone())
            .or_insert_with(|| PackageSummary {
                name: name.clone(),
                updated_at: mtime,
                versions: Vec::new(),
                retired: Vec::new(),
            });
        entry.updated_at = entry.updated_at.max(mtime);
    }
    let changed: Vec<(String, Vec<Release>)> = packages
        .into_iter()
        .filter(|(name, _)| added.iter().any(|(n, _)| n == name))
        .collect();
    session.write(changed, &[], report, &[])
}

pub fn remove(args: &RemoveArgs) -> Result<()> {
    let mut session = Session::open(&args.registry)?;
    let mut releases = session.existing_package(&args.package)?;
    let gone: Vec<Release> = match &args.version {
        Some(version) => {
            let i = find_version(&releases, &args.package, version)?;
            vec![releases.remove(i)]
        }
        None => std::mem::take(&mut releases),
    };
    let delete: Vec<String> = gone
        .iter()
        .map(|r| tarball_rel(&args.package, &r.version))
        .collect();
    if releases.is_empty() {
        session.write(
            Vec::new(),
            std::slice::from_ref(&args.package),
            Report::default(),
            &delete,
        )
    } else {
        session.write(
            vec![(args.package.clone(), releases)],
            &[],
            Report::default(),
            &delete,
        )
    }
}

pub fn retire(args: &RetireArgs) -> Result<()> {
    let retirement = Retirement {
        reason: args.reason.value(),
        message: args.message.clone(),
    };
    set_retirement(
        &args.registry,
        &args.package,
        &args.version,
        Some(retirement),
    )
}

pub fn unretire(args: &UnretireArgs) -> Result<()> {
    set_retirement(&args.registry, &args.package, &args.version, None)
}

fn set_retirement(
    registry: &RegistryArgs,
    package: &str,
    version: &str,
    retirement: Option<Retirement>,
) -> Result<()> {
    let mut session = Session::open(registry)?;
    let mut releases = session.existing_package(package)?;
    let i = find_version(&releases, package, version)?;
    releases[i].retired = retirement;
    session.write(
        vec![(package.to_string(), releases)],
        &[],
        Report::default(),
        &[],
    )
}
