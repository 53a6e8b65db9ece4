//! `hexreg build`: what `mix hex.registry build` does, plus validation, atomic writes and
//! skipping files whose content would not change.
//!
//! Shape: scan `tarballs/`, read and validate every tarball (in parallel), group by package,
//! then encode, sign and write each resource whose payload changed, `names` and `versions`
//! last, and remove the `packages/*` files of packages that have no tarball left.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use hexreg::registry::{self, PackageSummary, Release};
use hexreg::signing::{PrivateKey, PublicKey, PublicKeyFormat};
use hexreg::tarball;

use crate::store::{Change, Report, Stage, Store};

pub const AFTER_HELP: &str = "Example:
  hexreg build public --name=acme --private-key=key.pem

Reads every PUBLIC_DIR/tarballs/NAME-VERSION.tar and writes PUBLIC_DIR/names, versions,
packages/NAME and public_key, as `mix hex.registry build` does. Files whose content would
not change are left alone and not listed.";

/// `hexreg build` arguments.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// The directory a web server publishes: holds tarballs/ and receives the registry.
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: String,
    /// Repository name clients configure (e.g. `mix hex.repo add acme ...`).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// RSA private key (PEM, PKCS#1 or PKCS#8) that signs the registry; keep it outside PUBLIC_DIR.
    #[arg(long, value_name = "KEY")]
    pub private_key: PathBuf,
    /// Format of the public_key file: pkcs1 (as mix writes it) or spki (for gleam's hexpm crate).
    #[arg(long, value_enum, default_value_t = KeyFormat::Pkcs1)]
    pub public_key_format: KeyFormat,
}

/// `--public-key-format` values.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeyFormat {
    /// `-----BEGIN RSA PUBLIC KEY-----`
    Pkcs1,
    /// `-----BEGIN PUBLIC KEY-----`
    Spki,
}

impl From<KeyFormat> for PublicKeyFormat {
    fn from(f: KeyFormat) -> Self {
        match f {
            KeyFormat::Pkcs1 => PublicKeyFormat::Pkcs1,
            KeyFormat::Spki => PublicKeyFormat::Spki,
        }
    }
}

/// A tarball file found in `tarballs/`.
struct TarballFile {
    path: PathBuf,
    file_name: String,
}

/// A tarball read and validated.
struct ReadTarball {
    package: String,
    release: Release,
    mtime: i64,
}

pub fn run(opts: &BuildArgs) -> Result<()> {
    let key = load_private_key(&opts.private_key, Path::new(&opts.public_dir))?;
    let public = key.public_key();
    let store = Store::new(&opts.public_dir);

    // Read everything first: an invalid tarball stops the run before anything is written.
    let files = scan_tarballs(&store.tarballs_dir())?;
    let packages = read_tarballs(&files, &opts.name)?;

    let mut report = Report::default();
    write_public_key(&store, &public, opts.public_key_format.into(), &mut report)?;
    let tarballs_dir = store.tarballs_dir();
    if !tarballs_dir.is_dir() {
        report.change(
            Stage::TarballsDir,
            Change::Creating,
            store.shown_tarballs_dir(),
        );
        crate::store::create_dir_all(&tarballs_dir)?;
    }

    let summaries = write_packages(&store, &opts.name, &key, &public, packages, &mut report)?;
    let stale = stale_packages(&store, &summaries)?;
    write_resource(
        &store,
        "names",
        &registry::names_payload(&opts.name, &summaries),
        &key,
        &public,
        Stage::Names,
        &mut report,
    )?;
    write_resource(
        &store,
        "versions",
        &registry::versions_payload(&opts.name, &summaries),
        &key,
        &public,
        Stage::Versions,
        &mut report,
    )?;
    for name in stale {
        let rel = format!("packages/{name}");
        store.remove(&rel)?;
        report.change(Stage::Removals, Change::Removing, store.shown(&rel));
    }
    report.print();
    Ok(())
}

/// Reads the private key, refusing one that would be published with the registry.
pub fn load_private_key(path: &Path, public_dir: &Path) -> Result<PrivateKey> {
    let shown = path.display();
    if let (Ok(key), Ok(dir)) = (path.canonicalize(), public_dir.canonicalize()) {
        if key.starts_with(&dir) {
            bail!(
                "private key {shown} lies inside the public directory {}, which is published: move it out (and replace it: anyone who fetched it can sign registries)",
                public_dir.display()
            );
        }
    }
    let text = fs::read(path).with_context(|| {
        format!("cannot read private key {shown} (--private-key): check the path; create a key with `hexreg keygen --out {shown}`")
    })?;
    PrivateKey::from_pem(&text)
        .with_context(|| format!("private key {shown} cannot be used"))
        .map_err(|e| anyhow::anyhow!("private key {shown} {}", e.root_cause()))
}

/// Writes `public_key` when its bytes differ from what the private key implies.
fn write_public_key(
    store: &Store,
    public: &PublicKey,
    format: PublicKeyFormat,
    report: &mut Report,
) -> Result<()> {
    let want = public.to_pem(format);
    match store.read_existing("public_key")? {
        Some(have) if have == want.as_bytes() => return Ok(()),
        Some(_) => {
            report.line(
                Stage::PublicKey,
                format!(
                    "* public key at {} does not match private key, overwriting",
                    store.shown("public_key")
                ),
            );
            report.change(
                Stage::PublicKey,
                Change::Updating,
                store.shown("public_key"),
            );
        }
        None => report.change(
            Stage::PublicKey,
            Change::Creating,
            store.shown("public_key"),
        ),
    }
    store.write("public_key", want.as_bytes())
}

/// `tarballs/*.tar`, sorted, dotfiles skipped, not recursive (the task's `Path.wildcard`).
fn scan_tarballs(dir: &Path) -> Result<Vec<TarballFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') || !file_name.ends_with(".tar") {
            continue;
        }
        files.push(TarballFile {
            path: entry.path(),
            file_name,
        });
    }
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(files)
}

/// Reads every tarball in parallel; reports every invalid one, then fails, or groups the
/// releases by package (sorted by name, releases sorted by version).
fn read_tarballs(
    files: &[TarballFile],
    repo: &str,
) -> Result<BTreeMap<String, (Vec<Release>, i64)>> {
    let results: Vec<Result<ReadTarball, String>> = files
        .par_iter()
        .map(|file| read_tarball(file, repo).map_err(|e| format!("{}", e)))
        .collect();
    let mut packages: BTreeMap<String, (Vec<Release>, i64)> = BTreeMap::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(t) => {
                let entry = packages.entry(t.package).or_insert((Vec::new(), i64::MIN));
                entry.0.push(t.release);
                entry.1 = entry.1.max(t.mtime);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        bail!(
            "{} invalid tarball{} in {}: nothing was written; fix or remove {} and run again",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            files
                .first()
                .map(|f| f
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .display()
                    .to_string())
                .unwrap_or_default(),
            if errors.len() == 1 { "it" } else { "them" },
        );
    }
    for (releases, _) in packages.values_mut() {
        registry::sort_releases(releases);
    }
    Ok(packages)
}

/// Reads one tarball and checks it against its file name `NAME-VERSION.tar`.
fn read_tarball(file: &TarballFile, repo: &str) -> Result<ReadTarball, String> {
    let shown = file.path.display();
    let (name, version) = split_file_name(&file.file_name).ok_or_else(|| {
        format!("{shown} is not named NAME-VERSION.tar (e.g. foo-1.0.0.tar), as clients expect tarballs to be")
    })?;
    if !valid_package_name(name) {
        return Err(format!(
            "{shown}: `{name}` is not a valid package name (lowercase letters, digits and `_`, starting with a letter)"
        ));
    }
    let meta = fs::metadata(&file.path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > tarball::MAX_TARBALL_SIZE {
        return Err(format!(
            "{shown} {}",
            tarball::TarballError::TooBig { size: meta.len() }
        ));
    }
    let bytes = fs::read(&file.path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let t = tarball::read(&bytes).map_err(|e| format!("{shown} {e}"))?;
    if t.metadata.name != name {
        return Err(format!(
            "{shown}: the file name says package `{name}` but metadata.config says `{}`; rename the file to {}-{}.tar",
            t.metadata.name, t.metadata.name, t.metadata.version
        ));
    }
    if t.metadata.version != version {
        return Err(format!(
            "{shown}: the file name says version `{version}` but metadata.config says `{}`; clients would fetch {name}-{}.tar, so rename the file",
            t.metadata.version, t.metadata.version
        ));
    }
    let release = Release::from_tarball(&t, repo)
        .map_err(|e| format!("{shown}: metadata.config version {e}"))?;
    Ok(ReadTarball {
        package: name.to_string(),
        release,
        mtime: mtime_seconds(&meta),
    })
}

/// `foo-1.0.0-rc.1.tar` → (`foo`, `1.0.0-rc.1`): the name ends at the first `-`.
fn split_file_name(file_name: &str) -> Option<(&str, &str)> {
    let stem = file_name.strip_suffix(".tar")?;
    let (name, version) = stem.split_once('-')?;
    (!name.is_empty() && !version.is_empty()).then_some((name, version))
}

/// Hex package names: `^[a-z][a-z0-9_]*$`.
pub fn valid_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Modification time in whole Unix seconds (floor), as Elixir's `File.stat/1` reports it.
fn mtime_seconds(meta: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime()
}

/// Encodes, signs and writes `packages/NAME` of every package whose payload changed.
fn write_packages(
    store: &Store,
    repo: &str,
    key: &PrivateKey,
    public: &PublicKey,
    packages: BTreeMap<String, (Vec<Release>, i64)>,
    report: &mut Report,
) -> Result<Vec<PackageSummary>> {
    let list: Vec<(String, Vec<Release>, i64)> = packages
        .into_iter()
        .map(|(name, (releases, mtime))| (name, releases, mtime))
        .collect();
    let changes: Vec<Result<Option<Change>>> = list
        .par_iter()
        .map(|(name, releases, _)| {
            let payload = registry::package_payload(repo, name, releases);
            write_if_changed(store, &format!("packages/{name}"), &payload, key, public)
        })
        .collect();
    let mut summaries = Vec::with_capacity(list.len());
    for ((name, releases, mtime), change) in list.iter().zip(changes) {
        if let Some(change) = change? {
            report.change(
                Stage::Packages,
                change,
                store.shown(&format!("packages/{name}")),
            );
        }
        summaries.push(PackageSummary::new(name, *mtime, releases));
    }
    Ok(summaries)
}

/// Writes `rel` unless it already holds `payload` signed by this key.
fn write_if_changed(
    store: &Store,
    rel: &str,
    payload: &[u8],
    key: &PrivateKey,
    public: &PublicKey,
) -> Result<Option<Change>> {
    let change = match store.read_existing(rel)? {
        Some(existing) if registry::is_current(&existing, payload, public) => return Ok(None),
        Some(_) => Change::Updating,
        None => Change::Creating,
    };
    store.write(rel, &registry::seal(payload, key))?;
    Ok(Some(change))
}

fn write_resource(
    store: &Store,
    rel: &str,
    payload: &[u8],
    key: &PrivateKey,
    public: &PublicKey,
    stage: Stage,
    report: &mut Report,
) -> Result<()> {
    if let Some(change) = write_if_changed(store, rel, payload, key, public)? {
        report.change(stage, change, store.shown(rel));
    }
    Ok(())
}

/// `packages/*` entries (dotfiles aside) that are no current package, sorted.
fn stale_packages(store: &Store, current: &[PackageSummary]) -> Result<Vec<String>> {
    let dir = store.packages_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if current
            .binary_search_by(|p| p.name.as_str().cmp(&name))
            .is_err()
        {
            stale.push(name);
        }
    }
    stale.sort();
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_split_at_the_first_dash() {
        assert_eq!(split_file_name("foo-1.0.0.tar"), Some(("foo", "1.0.0")));
        assert_eq!(
            split_file_name("jason-1.0.0-rc.1.tar"),
            Some(("jason", "1.0.0-rc.1"))
        );
        assert_eq!(split_file_name("foo.tar"), None);
        assert_eq!(split_file_name("-1.0.0.tar"), None);
        assert_eq!(split_file_name("foo-.tar"), None);
    }

    #[test]
    fn package_names() {
        assert!(valid_package_name("acme_erl_base"));
        assert!(valid_package_name("a1"));
        assert!(!valid_package_name("1a"));
        assert!(!valid_package_name("Acme"));
        assert!(!valid_package_name("a-b"));
        assert!(!valid_package_name(""));
    }
}
