//! The arguments every command that changes a registry takes, and what they open: the storage,
//! its lock, the signing key and the cache.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use hexreg::engine::{Cache, Registry, Signer, cache};
use hexreg::format::signing::PrivateKey;
use hexreg::storage::object::ObjectOptions;
use hexreg::storage::{Location, Lock, StorageError};

use crate::progress::Bar;

/// The registry a command changes, and how.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// The directory a web server publishes (holds tarballs/ and the registry files), or a
    /// bucket prefix `s3://BUCKET/PREFIX` (credentials, region and endpoint from the AWS
    /// environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL...).
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
    #[command(flatten)]
    pub bucket: BucketArgs,
}

/// How objects are written to a bucket (ignored for a directory).
#[derive(clap::Args, Clone, Default)]
pub struct BucketArgs {
    /// On s3://: the Cache-Control of names, versions, public_key and packages/* (a CDN in
    /// front serves them this long before asking again) [default: public, max-age=60].
    #[arg(long, value_name = "VALUE", env = "HEXREG_INDEX_CACHE_CONTROL")]
    pub index_cache_control: Option<String>,
    /// On s3://: the Cache-Control of tarballs/* and docs/* [default: public, max-age=3600].
    #[arg(long, value_name = "VALUE", env = "HEXREG_ARCHIVE_CACHE_CONTROL")]
    pub archive_cache_control: Option<String>,
}

impl BucketArgs {
    /// The bucket options these flags ask for.
    fn options(&self) -> Result<ObjectOptions> {
        let mut options = ObjectOptions::default();
        for (flag, given, field) in [
            (
                "--index-cache-control",
                &self.index_cache_control,
                &mut options.index_cache_control,
            ),
            (
                "--archive-cache-control",
                &self.archive_cache_control,
                &mut options.archive_cache_control,
            ),
        ] {
            if let Some(value) = given {
                if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    bail!(
                        "{flag} {value:?} is not a header value: give printable ASCII such as \"public, max-age=300\""
                    );
                }
                *field = value.clone();
            }
        }
        Ok(options)
    }
}

/// `--jobs`: at least one thread.
pub type Jobs = NonZeroUsize;

/// The registry named by PUBLIC_DIR's text: `s3://...` is a bucket, anything else a
/// directory.
pub fn open_location(text: &str, bucket: &BucketArgs) -> Result<Location> {
    Ok(Location::parse(text, bucket.options()?)?)
}

impl RegistryArgs {
    /// The registry PUBLIC_DIR names.
    pub fn storage(&self) -> Result<Location> {
        open_location(&self.public_dir, &self.run.bucket)
    }

    /// Reads the private key, refusing one that would be published with the registry.
    pub fn signer(&self, storage: &Location) -> Result<Signer> {
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
    pub fn lock(&self, target: &Location) -> Result<Lock, StorageError> {
        let storage = target.storage();
        if let Some(lock) = storage.try_lock()? {
            return Ok(lock);
        }
        if self.run.no_wait {
            return Err(StorageError::Locked {
                root: target.shown(),
            });
        }
        eprintln!(
            "waiting for another hexreg run on {} to finish...",
            target.shown()
        );
        storage.lock()
    }

    /// Opens the registry for changes: the key, the lock, the cache, the progress bar.
    pub fn open<'a>(
        &self,
        target: &'a Location,
        signer: &'a Signer,
        bar: &'a Bar,
    ) -> Result<Registry<'a>> {
        let lock = self.lock(target)?;
        let cache = self.run.cache(&target.cache_id(), &self.name, signer);
        Ok(Registry::open(target.storage(), &self.name, signer, lock)
            .with_cache(cache)
            .with_progress(bar))
    }

    /// Opens the registry for an operation that may have nothing to write (a build): on a
    /// bucket, where the lock costs requests, it is taken before the first write only
    /// ([`Registry::open_deferred`]); on a directory at once, as [`RegistryArgs::open`].
    pub fn open_deferred<'a>(
        &'a self,
        target: &'a Location,
        signer: &'a Signer,
        bar: &'a Bar,
    ) -> Result<Registry<'a>> {
        let Location::Object(_) = target else {
            return self.open(target, signer, bar);
        };
        let cache = self.run.cache(&target.cache_id(), &self.name, signer);
        let take = Box::new(move || self.lock(target));
        Ok(
            Registry::open_deferred(target.storage(), &self.name, signer, take)
                .with_cache(cache)
                .with_progress(bar),
        )
    }
}

impl RunOptions {
    /// The cache for the registry identified by `id`, as the options ask.
    fn cache(&self, id: &[u8], repository: &str, signer: &Signer) -> Cache {
        let dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => cache::default_dir(),
        };
        match dir {
            Some(dir) => Cache::load(&dir, id, repository, &signer.public.fingerprint()),
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
