//! The arguments every command that changes a registry takes, and what they open: the storage,
//! its lock, the signing key and the cache.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use hexreg::engine::{Cache, Registry, Signer, cache};
use hexreg::signing::PrivateKey;
use hexreg::storage::local::LocalDir;
use hexreg::storage::{Lock, Storage};

use crate::progress::Bar;

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
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Read every tarball, ignoring and not writing the cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// `--jobs`: at least one thread.
pub type Jobs = NonZeroUsize;

impl RegistryArgs {
    /// The registry directory.
    pub fn storage(&self) -> LocalDir {
        LocalDir::new(&self.public_dir)
    }

    /// Reads the private key, refusing one that would be published with the registry.
    pub fn signer(&self, storage: &LocalDir) -> Result<Signer> {
        let path = &self.private_key;
        let shown = path.display();
        if storage.holds(path) {
            bail!(
                "private key {shown} lies inside the public directory {}, which is published: move it out (and replace it: anyone who fetched it can sign registries)",
                self.public_dir
            );
        }
        let text = std::fs::read(path).with_context(|| {
            format!("cannot read private key {shown} (--private-key): check the path; create a key with `hexreg keygen --out {shown}`")
        })?;
        let key =
            PrivateKey::from_pem(&text).map_err(|e| anyhow::anyhow!("private key {shown} {e}"))?;
        Ok(Signer::new(key, &shown.to_string()))
    }

    /// Takes the registry's lock: at once, or after waiting (saying so) unless `--no-wait`.
    pub fn lock(&self, storage: &LocalDir) -> Result<Lock> {
        if let Some(lock) = storage.try_lock()? {
            return Ok(lock);
        }
        if self.run.no_wait {
            return Err(hexreg::storage::StorageError::Locked {
                root: storage.root().display().to_string(),
            }
            .into());
        }
        eprintln!(
            "waiting for another hexreg run on {} to finish...",
            storage.root().display()
        );
        Ok(storage.lock()?)
    }

    /// Opens the registry for changes: the key, the lock, the cache, the progress bar.
    pub fn open<'a>(
        &self,
        storage: &'a LocalDir,
        signer: &'a Signer,
        bar: &'a Bar,
    ) -> Result<Registry<'a>> {
        let lock = self.lock(storage)?;
        let cache = self.run.cache(storage.root(), &self.name, signer);
        Ok(Registry::open(storage, &self.name, signer, lock)
            .with_cache(cache)
            .with_progress(bar))
    }
}

impl RunOptions {
    /// The cache for the registry in `public_dir`, as the options ask.
    fn cache(&self, public_dir: &Path, repository: &str, signer: &Signer) -> Cache {
        let dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => cache::default_dir(),
        };
        let id = public_dir
            .canonicalize()
            .unwrap_or_else(|_| public_dir.to_path_buf());
        match dir {
            Some(dir) => Cache::load(
                &dir,
                id.as_os_str().as_encoded_bytes(),
                repository,
                &signer.public.fingerprint(),
            ),
            None => Cache::disabled(repository),
        }
    }
}

/// Saves the cache after a successful run; a failure only warns (the registry is fine).
pub fn save_cache(cache: Cache, what: &str) {
    if let Err(e) = cache.save() {
        eprintln!("warning: the registry is {what}, but the cache could not be saved: {e:#}");
    }
}
