//! The arguments every command that changes a registry takes, and what they open: the storage,
//! its lock, the signing key and the cache.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use hexreg::engine::{Cache, Registry, Signer, cache};
use hexreg::signing::PrivateKey;
use hexreg::storage::local::LocalDir;
use hexreg::storage::object::{ObjectOptions, ObjectStorage};
use hexreg::storage::{Lock, Storage, StorageError};

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
    #[arg(long, value_name = "VALUE")]
    pub index_cache_control: Option<String>,
    /// On s3://: the Cache-Control of tarballs/* and docs/* [default: public, max-age=3600].
    #[arg(long, value_name = "VALUE")]
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

/// Where a registry is: a local directory or a bucket prefix.
pub enum Target {
    /// PUBLIC_DIR.
    Local(LocalDir),
    /// `s3://BUCKET/PREFIX`.
    Object(ObjectStorage),
}

impl Target {
    /// The registry named by PUBLIC_DIR's text: `s3://...` is a bucket, anything else a
    /// directory.
    pub fn open(text: &str, bucket: &BucketArgs) -> Result<Target> {
        if text.starts_with("s3://") {
            let storage = ObjectStorage::from_url(text, bucket.options()?)?;
            Ok(Target::Object(storage))
        } else {
            Ok(Target::Local(LocalDir::new(text)))
        }
    }

    /// The storage.
    pub fn storage(&self) -> &dyn Storage {
        match self {
            Target::Local(local) => local,
            Target::Object(object) => object,
        }
    }

    /// Whether `path` lies inside the published directory (never, for a bucket).
    pub fn holds(&self, path: &Path) -> bool {
        match self {
            Target::Local(local) => local.holds(path),
            Target::Object(_) => false,
        }
    }

    /// Creates the directory if it is missing (a bucket prefix needs nothing).
    pub fn create_root(&self) -> Result<()> {
        match self {
            Target::Local(local) => Ok(local.create_root()?),
            Target::Object(_) => Ok(()),
        }
    }

    /// Whether the registry can exist there: a directory must already exist; a bucket is
    /// checked by its first request.
    pub fn exists(&self) -> bool {
        match self {
            Target::Local(local) => local.root().is_dir(),
            Target::Object(_) => true,
        }
    }

    /// The registry as messages name it.
    pub fn shown(&self) -> String {
        match self {
            Target::Local(local) => local.root().display().to_string(),
            Target::Object(object) => object.url().to_string(),
        }
    }

    /// What identifies the registry for the cache: its resolved directory, or its URL.
    fn cache_id(&self) -> Vec<u8> {
        match self {
            Target::Local(local) => {
                let root = local.root();
                let id = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
                id.as_os_str().as_encoded_bytes().to_vec()
            }
            Target::Object(object) => object.id().as_bytes().to_vec(),
        }
    }
}

impl RegistryArgs {
    /// The registry PUBLIC_DIR names.
    pub fn storage(&self) -> Result<Target> {
        Target::open(&self.public_dir, &self.run.bucket)
    }

    /// Reads the private key, refusing one that would be published with the registry.
    pub fn signer(&self, storage: &Target) -> Result<Signer> {
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
    pub fn lock(&self, target: &Target) -> Result<Lock, StorageError> {
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
        target: &'a Target,
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
        target: &'a Target,
        signer: &'a Signer,
        bar: &'a Bar,
    ) -> Result<Registry<'a>> {
        let Target::Object(_) = target else {
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
