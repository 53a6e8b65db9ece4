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
use hexreg::tarball::{self, one_line};

use crate::cache::{self, Cache, Stat};
use crate::manage::RegistryArgs;
use crate::progress::Progress;
use crate::store::{Change, DirLock, LockWait, Report, Stage, Store};
use crate::writer::{Outcome, Writer};

pub const AFTER_HELP: &str = "Example:
  hexreg build public --name=acme --private-key=key.pem

Reads every PUBLIC_DIR/tarballs/NAME-VERSION.tar and writes PUBLIC_DIR/names, versions,
packages/NAME and public_key, as `mix hex.registry build` does. Files whose content would
not change are left alone and not listed.";

/// `hexreg build` arguments.
#[derive(clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Format of the public_key file: pkcs1 (as mix writes it) or spki (for gleam's hexpm crate).
    #[arg(long, value_enum, default_value_t = KeyFormat::Pkcs1)]
    pub public_key_format: KeyFormat,
}

/// Options every command that changes a registry takes.
#[derive(clap::Args, Clone)]
pub struct RunOptions {
    /// Print nothing but errors: no `* creating ...` lines, no progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Fail at once, instead of waiting, when another hexreg run is changing PUBLIC_DIR.
    #[arg(long)]
    pub no_wait: bool,
    /// Where to keep the cache of tarballs already read [default: $XDG_CACHE_HOME/hexreg or ~/.cache/hexreg].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Read every tarball, ignoring and not writing the cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl RunOptions {
    pub fn lock_wait(&self) -> LockWait {
        if self.no_wait {
            LockWait::Fail
        } else {
            LockWait::Wait
        }
    }

    /// The cache for `public_dir`, as the options ask.
    pub fn cache(&self, public_dir: &Path, repository: &str, key: &PublicKey) -> Cache {
        let dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => cache::default_dir(),
        };
        match dir {
            Some(dir) => Cache::load(&dir, public_dir, repository, &key.fingerprint()),
            None => Cache::disabled(repository),
        }
    }
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
    file_name: String,
}

/// Packages are read and encoded this many at a time, so that a build holds the releases of one
/// batch only, plus the encoded payloads of changed packages and a summary (names, versions)
/// of every package.
const PACKAGES_PER_BATCH: usize = 512;

/// A tarball read and validated.
struct ReadTarball {
    package: String,
    release: Release,
    mtime: i64,
}

pub fn run(args: &BuildArgs) -> Result<()> {
    let opts = &args.registry;
    let key = load_private_key(&opts.private_key, Path::new(&opts.public_dir))?;
    let public = key.public_key();
    let store = Store::new(&opts.public_dir);
    let quiet = opts.run.quiet;

    // The task creates PUBLIC_DIR too; hexreg does it first, to lock it.
    crate::store::create_dir_all(store.root())?;
    let _lock = DirLock::acquire(store.root(), opts.run.lock_wait())?;
    let mut cache = opts.run.cache(store.root(), &opts.name, &public);
    let files = scan_tarballs(&store.tarballs_dir())?;

    let mut writer = Writer {
        store: &store,
        repo: &opts.name,
        key: &key,
        public: public.clone(),
        cache: &mut cache,
        report: Report::default(),
        quiet,
    };
    // Read, validate and encode everything first, in memory: an invalid tarball stops the run
    // before anything is written. Signing comes with writing.
    let (outcomes, summaries) = prepare(&mut writer, &store.tarballs_dir(), &files)?;
    for dir in [
        store.root().to_path_buf(),
        store.packages_dir(),
        store.tarballs_dir(),
    ] {
        crate::store::remove_leftover_temp_files(&dir)?;
    }
    let result = write_all(
        &mut writer,
        args.public_key_format.into(),
        outcomes,
        &summaries,
    );
    writer.report.print(quiet);
    result?;
    if let Err(e) = cache.save() {
        eprintln!("warning: the registry is built, but the cache could not be saved: {e:#}");
    }
    Ok(())
}

/// Reads every tarball (those the cache does not know) and prepares every `packages/NAME`,
/// batch by batch, in parallel. Reports every invalid tarball, then fails; otherwise returns
/// the prepared packages and the summaries for the indexes, sorted by name.
fn prepare(
    writer: &mut Writer,
    dir: &Path,
    files: &[TarballFile],
) -> Result<(Vec<Outcome>, Vec<PackageSummary>)> {
    let progress = Progress::new(files.len(), "reading tarballs", writer.quiet);
    let mut outcomes = Vec::new();
    let mut summaries: Vec<PackageSummary> = Vec::new();
    let mut errors = Vec::new();
    for batch in batches(files) {
        let cache: &Cache = writer.cache;
        let results: Vec<Result<(ReadTarball, Stat, bool), String>> = batch
            .par_iter()
            .map(|file| {
                let result = read_tarball(dir, file, writer.repo, cache);
                progress.inc();
                result
            })
            .collect();
        let mut packages: BTreeMap<String, (Vec<Release>, i64)> = BTreeMap::new();
        for (file, result) in batch.iter().zip(results) {
            match result {
                Ok((t, stat, fresh)) => {
                    if fresh {
                        writer.cache.put(&file.file_name, stat, &t.release);
                    } else {
                        writer.cache.keep(&file.file_name);
                    }
                    let entry = packages.entry(t.package).or_insert((Vec::new(), i64::MIN));
                    entry.0.push(t.release);
                    entry.1 = entry.1.max(t.mtime);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            // Only validating from here on.
            continue;
        }
        let mut list = Vec::with_capacity(packages.len());
        let mut mtimes = Vec::with_capacity(packages.len());
        for (name, (mut releases, mtime)) in packages {
            registry::sort_releases(&mut releases);
            list.push((name, releases));
            mtimes.push(mtime);
        }
        // Retirements are taken from the existing files here, so summaries come after.
        outcomes.extend(writer.prepare_packages(&mut list, true)?);
        for ((name, releases), mtime) in list.iter().zip(mtimes) {
            summaries.push(PackageSummary::new(name, mtime, releases));
        }
    }
    drop(progress);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        let dir = dir.display();
        bail!(
            "{} invalid tarball{} in {dir}: nothing was written; fix or remove {} and run again",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            if errors.len() == 1 { "it" } else { "them" },
        );
    }
    // Files are sorted by name and a package's files are contiguous, so this is a no-op but
    // for the guarantee.
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((outcomes, summaries))
}

/// Splits the sorted tarball files into batches of about [`PACKAGES_PER_BATCH`] packages,
/// never splitting a package.
fn batches(files: &[TarballFile]) -> Vec<&[TarballFile]> {
    let package = |f: &TarballFile| {
        split_file_name(&f.file_name)
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| f.file_name.clone())
    };
    let mut out = Vec::new();
    let (mut start, mut count) = (0, 0);
    for i in 1..=files.len() {
        let boundary = i == files.len() || package(&files[i]) != package(&files[i - 1]);
        if boundary {
            count += 1;
            if count == PACKAGES_PER_BATCH || i == files.len() {
                out.push(&files[start..i]);
                start = i;
                count = 0;
            }
        }
    }
    out
}

/// Writes `public_key`, the tarballs directory, `packages/*`, `names` and `versions`, and
/// removes stale `packages/*`.
fn write_all(
    writer: &mut Writer,
    format: PublicKeyFormat,
    outcomes: Vec<Outcome>,
    summaries: &[PackageSummary],
) -> Result<()> {
    let store = writer.store;
    write_public_key(store, &writer.public, Some(format), &mut writer.report)?;
    let tarballs_dir = store.tarballs_dir();
    if !tarballs_dir.is_dir() {
        writer.report.change(
            Stage::TarballsDir,
            Change::Creating,
            store.shown_tarballs_dir(),
        );
        crate::store::create_dir_all(&tarballs_dir)?;
    }
    writer.commit_packages(outcomes)?;
    let stale = stale_packages(store, summaries)?;
    writer.write_index(summaries, &stale)
}

/// Reads the private key, refusing one that would be published with the registry.
pub fn load_private_key(path: &Path, public_dir: &Path) -> Result<PrivateKey> {
    let shown = path.display();
    if let (Ok(key), Ok(dir)) = (path.canonicalize(), public_dir.canonicalize())
        && key.starts_with(&dir)
    {
        bail!(
            "private key {shown} lies inside the public directory {}, which is published: move it out (and replace it: anyone who fetched it can sign registries)",
            public_dir.display()
        );
    }
    let text = fs::read(path).with_context(|| {
        format!("cannot read private key {shown} (--private-key): check the path; create a key with `hexreg keygen --out {shown}`")
    })?;
    PrivateKey::from_pem(&text).map_err(|e| anyhow::anyhow!("private key {shown} {e}"))
}

/// Writes `public_key` when its bytes differ from what the private key implies.
///
/// With `format` (what `build` does, like the task) any other bytes are replaced; without
/// (other commands), a file holding the same key in any PEM form is left alone, and a missing
/// or different one is written as PKCS#1.
pub fn write_public_key(
    store: &Store,
    public: &PublicKey,
    format: Option<PublicKeyFormat>,
    report: &mut Report,
) -> Result<()> {
    let want = public.to_pem(format.unwrap_or_default());
    match store.read_existing("public_key")? {
        Some(have) if have == want.as_bytes() => return Ok(()),
        Some(have)
            if format.is_none() && PublicKey::from_pem(&have).is_ok_and(|k| &k == public) =>
        {
            return Ok(());
        }
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
    Ok(crate::store::list_dir(dir)?
        .into_iter()
        .filter(|name| !name.starts_with('.') && name.ends_with(".tar"))
        .map(|file_name| TarballFile { file_name })
        .collect())
}

/// Reads one tarball and checks it against its file name `NAME-VERSION.tar`.
fn read_tarball(
    dir: &Path,
    file: &TarballFile,
    repo: &str,
    cache: &Cache,
) -> Result<(ReadTarball, Stat, bool), String> {
    let path = dir.join(&file.file_name);
    // File names and metadata text may hold anything: quote them on one line. Only errors
    // need the text, so it is made on demand (a no-op build passes 150,000 files here).
    let shown = || one_line(&path.display().to_string());
    let (name, version) = split_file_name(&file.file_name).ok_or_else(|| {
        format!(
            "{} is not named NAME-VERSION.tar (e.g. foo-1.0.0.tar), as clients expect tarballs to be",
            shown()
        )
    })?;
    if !valid_package_name(name) {
        return Err(format!(
            "{}: `{}` is not a valid package name (lowercase letters, digits and `_`, starting with a letter)",
            shown(),
            one_line(name)
        ));
    }
    let meta = fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", shown()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", shown()));
    }
    let stat = Stat::of(&meta);
    if let Some(release) = cache.get(&file.file_name, &stat) {
        let t = ReadTarball {
            package: name.to_string(),
            release,
            mtime: mtime_seconds(&meta),
        };
        return Ok((t, stat, false));
    }
    let shown = shown();
    let (_, t, release) = read_valid_tarball(&path, &shown, &meta, repo)?;
    let (meta_name, meta_version) = (one_line(&t.metadata.name), one_line(&t.metadata.version));
    if t.metadata.name != name {
        return Err(format!(
            "{shown}: the file name says package `{name}` but metadata.config says `{meta_name}`; rename the file to {meta_name}-{meta_version}.tar"
        ));
    }
    if t.metadata.version != version {
        return Err(format!(
            "{shown}: the file name says version `{}` but metadata.config says `{meta_version}`; clients would fetch {name}-{meta_version}.tar, so rename the file",
            one_line(version)
        ));
    }
    let t = ReadTarball {
        package: name.to_string(),
        release,
        mtime: mtime_seconds(&meta),
    };
    Ok((t, stat, true))
}

/// Reads the tarball at `path` (whose metadata is `meta`; `shown` names it in errors) and
/// validates it: hex_core's checks, a valid package name and a SemVer version in its metadata.
/// Returns its bytes, what it holds, and the release it makes in repository `repo`. The
/// metadata's own name and version are checked here, before any comparison with a file name,
/// so that no error advises a rename that would be refused in turn.
pub fn read_valid_tarball(
    path: &Path,
    shown: &str,
    meta: &fs::Metadata,
    repo: &str,
) -> Result<(Vec<u8>, tarball::Tarball, Release), String> {
    if meta.len() > tarball::MAX_TARBALL_SIZE {
        return Err(format!(
            "{shown} {}",
            tarball::TarballError::TooBig { size: meta.len() }
        ));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let t = tarball::read(&bytes).map_err(|e| format!("{shown} {e}"))?;
    if !valid_package_name(&t.metadata.name) {
        return Err(format!(
            "{shown}: metadata.config names the package `{}`, which is not a valid package name (lowercase letters, digits and `_`, starting with a letter)",
            one_line(&t.metadata.name)
        ));
    }
    let release = Release::from_tarball(&t, repo).map_err(|e| {
        format!(
            "{shown}: metadata.config version {}",
            one_line(&e.to_string())
        )
    })?;
    Ok((bytes, t, release))
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

/// `packages/*` entries (dotfiles aside) that are no current package, sorted.
pub fn stale_packages(store: &Store, current: &[PackageSummary]) -> Result<Vec<String>> {
    Ok(crate::store::list_dir(&store.packages_dir())?
        .into_iter()
        .filter(|name| {
            !name.starts_with('.')
                && current
                    .binary_search_by(|p| p.name.as_str().cmp(name))
                    .is_err()
        })
        .collect())
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
    fn batches_cover_every_file_and_never_split_a_package() {
        let mut files = Vec::new();
        for p in 0..1300 {
            for v in 0..(p % 4 + 1) {
                let file_name = format!("p{p:05}-{v}.0.0.tar");
                files.push(TarballFile { file_name });
            }
        }
        files.push(TarballFile {
            file_name: "zz.tar".into(),
        });
        let batches = batches(&files);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), files.len());
        for pair in batches.windows(2) {
            let last = split_file_name(&pair[0].last().unwrap().file_name)
                .unwrap()
                .0;
            let first = &pair[1][0].file_name;
            assert!(!first.starts_with(&format!("{last}-")), "{last} split");
        }
        assert!(super::batches(&[]).is_empty());
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
