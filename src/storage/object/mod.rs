//! A registry in an S3-compatible bucket, under `s3://BUCKET/PREFIX`, with the guarantees a
//! local directory gives.
//!
//! Access goes through the `object_store` crate, driven by a private tokio runtime: the
//! [`Storage`] trait is synchronous and called from rayon threads, which `block_on` that
//! runtime. Never call it from a thread that runs async tasks (`block_on` panics there); from
//! tokio's blocking pool (`spawn_blocking`, where `hexreg serve` runs engine calls) it is fine.
//!
//! **Settings** come from the standard AWS environment, as `AmazonS3Builder::from_env` reads it,
//! and from the AWS shared files for `AWS_PROFILE` ([`super::aws_profile`]):
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`; `us-east-1` when neither is set), `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT`, `AWS_ENDPOINT_URL_S3`) for another S3-compatible service (an `http://` one is
//! taken as consent to plain HTTP, as the AWS CLI does; `AWS_ALLOW_HTTP=true` also allows it)
//! and the web identity / container credential variables.
//! [`ObjectOptions::settings`] override them (tests use it rather than the process
//! environment). Conditional writes are always on, whatever `AWS_CONDITIONAL_PUT` says; the
//! request timeout is 5 minutes (a tarball upload takes one request) unless `AWS_TIMEOUT` sets
//! it.
//!
//! **Files** are objects `PREFIX/PATH`. Every object is written whole by one PUT (readers see the
//! old object or the new one), with `Content-Type: application/octet-stream`, no
//! `Content-Encoding` (`names`, `versions` and `packages/*` are gzip files that clients
//! gunzip themselves; a `Content-Encoding: gzip` would make HTTP clients and CDNs do it
//! first), and a `Cache-Control` ([`ObjectOptions`]): `public, max-age=60` for `names`,
//! `versions`, `public_key` and `packages/*`, which change; `public, max-age=3600` for
//! `tarballs/*` and `docs/*`, which rarely do.
//!
//! **Version tokens** are ETags (without their quotes). Create-only writes are PUTs with
//! `If-None-Match: *`, replace-if-unchanged ones with `If-Match: "ETAG"`; a refusal (412, or
//! 409 from a concurrent conditional write) is [`StorageError::Conflict`]. A write refused
//! because the object already holds exactly the bytes being written counts as done: that is
//! what a request retried after a lost answer sees. An ETag is a digest of the content, so
//! rewriting an object with the same bytes gives it the same token: harmless, as equal tokens
//! still mean equal content.
//!
//! **Batches** are staged in memory and uploaded at [`Batch::commit`], up to
//! [`ObjectOptions::parallel`] at a time; nothing is visible before. A failed write stops the
//! uploads not yet started; those done stay (as a killed local run leaves its renames). Each
//! written object is then HEAD-ed for its `Last-Modified` (a PUT does not return it).
//!
//! **Directories** do not exist in a bucket: `list(dir)` gives the objects directly under
//! `PREFIX/dir/` (and, as entries that are not regular, the names of deeper "directories"), and
//! `None` when no object at all lies under it. The registry root always exists (an empty prefix
//! is an empty registry); a missing bucket is an error. [`Storage::create_dir`] does nothing.
//!
//! **The lock** is the object `PREFIX/.hexreg-lock` (the private submodule `lock` says how it
//! works): created with `If-None-Match: *`, renewed while held, judged expired by the store's
//! clock (`clock`: the `Date` of its answers) against its `Last-Modified`, and checked before
//! every write batch, upload and delete, so a run that cannot renew it stops writing before it
//! can expire ([`StorageError::LockLost`]).

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, UpdateVersion,
};

use super::{Batch, Condition, Entry, Lock, Object, Storage, StorageError, Version};

mod clock;
mod lock;

use clock::{ClockConnector, StoreClock};

/// The lock object's name, under the prefix. A dotfile: the engine skips dotfiles in listings.
pub const LOCK_NAME: &str = ".hexreg-lock";

/// The content type of every object: registry files are binary, whatever their name.
const CONTENT_TYPE: &str = "application/octet-stream";

/// How an [`ObjectStorage`] reaches its bucket and writes its objects.
#[derive(Debug, Clone)]
pub struct ObjectOptions {
    /// `object_store` S3 settings (key, value), applied over the environment: e.g.
    /// `("aws_endpoint", "http://127.0.0.1:9000")`, `("aws_allow_http", "true")`,
    /// `("aws_access_key_id", ...)`. Keys are those of `AmazonS3ConfigKey`.
    pub settings: Vec<(String, String)>,
    /// `Cache-Control` of `names`, `versions`, `public_key` and `packages/*`.
    pub index_cache_control: String,
    /// `Cache-Control` of `tarballs/*` and `docs/*`.
    pub archive_cache_control: String,
    /// How long a lock lasts without renewal (renewed every third of it while held).
    pub lock_ttl: Duration,
    /// Uploads in flight at once during a commit.
    pub parallel: usize,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        ObjectOptions {
            settings: Vec::new(),
            index_cache_control: "public, max-age=60".to_string(),
            archive_cache_control: "public, max-age=3600".to_string(),
            lock_ttl: Duration::from_secs(600),
            parallel: 16,
        }
    }
}

/// What [`ObjectStorage::fetch`] found.
#[derive(Debug)]
pub enum ObjectFetch {
    /// The object.
    Found {
        /// Its size in bytes.
        size: u64,
        /// Its ETag, quoted, as the store sent it.
        e_tag: Option<String>,
        /// Its `Last-Modified` time, Unix seconds.
        modified: i64,
        /// Its content, arriving in chunks as the store sends it; `None` for a HEAD.
        body: Option<ObjectBody>,
    },
    /// The client's `If-None-Match` matched: not sent again.
    NotModified,
    /// No such object.
    Missing,
}

/// Chunks buffered between the store's connection and the reader of an [`ObjectBody`]: what a
/// slow client holds in memory per download, besides the sockets' buffers.
const BODY_CHUNKS: usize = 4;

/// An object's content as the store sends it: chunks pulled from the connection by a task on
/// the storage's runtime, four at most waiting to be read, so a download holds a
/// few chunks in memory, never the whole object. Dropping it ends the download.
#[derive(Debug)]
pub struct ObjectBody {
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl ObjectBody {
    /// The next chunk; `None` at the end of the object.
    pub fn poll_chunk(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, io::Error>>> {
        self.chunks.poll_recv(cx)
    }

    /// The next chunk; `None` at the end of the object.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        self.chunks.recv().await
    }
}

/// Why a bucket cannot be used, or a request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The URL is not `s3://BUCKET/PREFIX`.
    #[error(
        "{url} is not a bucket URL: {reason}; write it as s3://BUCKET/PREFIX (PREFIX may be empty)"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting given in [`ObjectOptions::settings`] is unknown or invalid.
    #[error("cannot use the setting `{key}` for {url}: {source}")]
    BadSetting {
        /// The registry URL.
        url: String,
        /// The setting.
        key: String,
        /// The object store client's error.
        source: object_store::Error,
    },
    /// The AWS profile (`AWS_PROFILE`, `~/.aws/credentials`, `~/.aws/config`) cannot be used.
    #[error("cannot use the AWS profile for {url}: {source}")]
    Profile {
        /// The registry URL.
        url: String,
        /// What is wrong with the profile.
        source: super::aws_profile::ProfileError,
    },
    /// The S3 client cannot be set up from the settings.
    #[error(
        "cannot set up access to {url}: {source}; check AWS_REGION, AWS_ENDPOINT_URL (with AWS_ALLOW_HTTP=true for an http:// endpoint) and the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    )]
    Setup {
        /// The registry URL.
        url: String,
        /// The object store client's error.
        source: object_store::Error,
    },
    /// The runtime that drives requests cannot start.
    #[error("cannot start the I/O threads for {url}: {source}")]
    Runtime {
        /// The registry URL.
        url: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A request failed: shown as one line (the store's error code and message, or the cause
    /// underneath), then what to do; the full error is its source.
    #[error("{}{}", summary(source), if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    Request {
        /// The object store client's error.
        source: object_store::Error,
        /// What to do about it ("" when nothing specific).
        hint: &'static str,
    },
    /// The store answered without an ETag, which conditional writes need.
    #[error("the store gave no ETag for it: hexreg needs S3 ETags for its conditional writes")]
    NoETag,
    /// A path cannot be an object key.
    #[error("not a valid object key: {0}")]
    BadKey(object_store::path::Error),
    /// No random bytes for the lock's owner id.
    #[error("no random bytes for the lock's owner id")]
    NoRandom,
}

/// Whether an endpoint URL is `http://` (any case).
fn endpoint_is_plain_http(endpoint: &str) -> bool {
    endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

impl From<ObjectError> for StorageError {
    /// A failure to open the bucket, as a storage error naming the URL.
    fn from(e: ObjectError) -> StorageError {
        let path = match &e {
            ObjectError::BadUrl { url, .. }
            | ObjectError::BadSetting { url, .. }
            | ObjectError::Setup { url, .. }
            | ObjectError::Profile { url, .. }
            | ObjectError::Runtime { url, .. } => url.clone(),
            _ => String::new(),
        };
        StorageError::Io {
            action: "open",
            path,
            source: io::Error::other(e),
        }
    }
}

/// A failed request in one line: the S3 error document's status, code and message when the
/// store sent one, otherwise the innermost cause (a refused connection, a timeout), with the
/// retries made.
fn summary(e: &object_store::Error) -> String {
    let text = e.to_string();
    let between = |start: &str, end: &str| {
        let from = text.find(start)? + start.len();
        let len = text[from..].find(end)?;
        Some(text[from..from + len].trim().to_string())
    };
    if let (Some(code), Some(message)) = (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        let status = between("status code: ", ":").unwrap_or_default();
        return format!("the store answered {status} {code}: {message}");
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    match between("after ", " retries") {
        Some(retries) => format!("{inner} (after {retries} retries)"),
        None => inner.to_string(),
    }
}

/// What to do about a failed request, when the failure says.
fn hint(e: &object_store::Error) -> &'static str {
    let text = e.to_string();
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            "check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and that they may list, read, write and delete objects under the prefix"
        }
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            "the store must support conditional writes (If-None-Match and If-Match on PUT)"
        }
        _ if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied")
            || text.contains("ExpiredToken") =>
        {
            "check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or AWS_PROFILE) and that they may list, read, write and delete objects under the prefix"
        }
        _ if text.contains("NoSuchBucket") => {
            "the bucket does not exist: create it, or check the URL, AWS_ENDPOINT_URL and AWS_REGION"
        }
        _ if text.contains("NotImplemented") || text.contains("501 Not Implemented") => {
            "the store must support conditional writes (If-None-Match and If-Match on PUT)"
        }
        _ if text.contains("redirect") || text.contains("AuthorizationHeaderMalformed") => {
            "check the bucket's region (AWS_REGION)"
        }
        _ if text.contains("error sending request") => {
            "check the endpoint (AWS_ENDPOINT_URL; AWS_ALLOW_HTTP=true for http://) and the network"
        }
        _ => "",
    }
}

/// Whether a "not found" answer means the bucket, not the object, is missing.
fn no_bucket(e: &object_store::Error) -> bool {
    e.to_string().contains("NoSuchBucket")
}

/// The listing entry of object `meta`, named `name`.
fn object_entry(name: String, meta: &object_store::ObjectMeta) -> Entry {
    Entry {
        name,
        size: meta.size,
        modified: meta.last_modified.timestamp(),
        version: meta
            .e_tag
            .as_deref()
            .map_or(Version(Vec::new()), version_of),
        regular: true,
    }
}

/// The version token of an ETag: without `W/` and quotes.
fn version_of(e_tag: &str) -> Version {
    let bare = e_tag.trim();
    let bare = bare.strip_prefix("W/").unwrap_or(bare);
    Version(bare.trim_matches('"').as_bytes().to_vec())
}

/// The `If-Match` value for a version token.
fn e_tag_of(version: &Version) -> Option<String> {
    let text = std::str::from_utf8(&version.0).ok()?;
    (!text.is_empty()).then(|| format!("\"{text}\""))
}

/// Now, in whole Unix seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What is shared by a storage, its batches and its lock guards.
struct Shared {
    store: Arc<dyn ObjectStore>,
    handle: tokio::runtime::Handle,
    /// Kept to shut it down (without blocking: a storage may be dropped in async code).
    runtime: Option<tokio::runtime::Runtime>,
    /// `s3://bucket/prefix`, no trailing slash.
    url: String,
    /// The prefix, no leading or trailing slash ("" for the bucket's root).
    prefix: String,
    /// The URL and the endpoint: what identifies the registry for the cache.
    id: String,
    options: ObjectOptions,
    /// The store's time, from its answers: what the lock's expiry is judged by.
    clock: Arc<StoreClock>,
    /// How the lock this storage holds stands, while it holds one: every write checks it.
    standing: Mutex<Option<Arc<lock::Standing>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Shared {
    /// Runs `future` to completion on the private runtime, from a synchronous caller.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Runs `future` on the private runtime and waits for it up to `timeout`, from any thread
    /// (also one running async tasks: for drops).
    fn run_detached<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
        timeout: Duration,
    ) -> Option<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv_timeout(timeout).ok()
    }

    fn display(&self, path: &str) -> String {
        format!("{}/{}", self.url, path)
    }

    /// The object key of `rel`.
    fn location(&self, rel: &str) -> Result<Path, StorageError> {
        let full = match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
        };
        Path::parse(&full).map_err(|e| StorageError::Io {
            action: "name",
            path: self.display(rel),
            source: io::Error::new(io::ErrorKind::InvalidInput, ObjectError::BadKey(e)),
        })
    }

    fn failed(&self, action: &'static str, rel: &str, source: object_store::Error) -> StorageError {
        request_error(action, self.display(rel), source)
    }

    /// The error of a conditional PUT of `rel` that did not happen.
    fn put_failed(&self, action: &'static str, rel: &str, e: PutError) -> StorageError {
        match e {
            PutError::Conflict => StorageError::Conflict {
                path: self.display(rel),
            },
            PutError::Store(e) => self.failed(action, rel, e),
            PutError::NoETag => StorageError::Io {
                action,
                path: self.display(rel),
                source: io::Error::other(ObjectError::NoETag),
            },
        }
    }

    /// Attributes of a new object at `rel`.
    fn attributes(&self, rel: &str) -> Attributes {
        let cache_control = if rel == LOCK_NAME {
            "no-store".to_string()
        } else if rel.starts_with("tarballs/") || rel.starts_with("docs/") {
            self.options.archive_cache_control.clone()
        } else {
            self.options.index_cache_control.clone()
        };
        Attributes::from_iter([
            (Attribute::ContentType, AttributeValue::from(CONTENT_TYPE)),
            (Attribute::CacheControl, AttributeValue::from(cache_control)),
        ])
    }
}

fn request_error(action: &'static str, path: String, source: object_store::Error) -> StorageError {
    let hint = hint(&source);
    StorageError::Io {
        action,
        path,
        source: io::Error::other(ObjectError::Request { source, hint }),
    }
}

/// A conditional write, ready to send.
#[derive(Clone)]
enum Precondition {
    Create,
    /// The quoted ETag.
    Match(String),
}

impl Precondition {
    fn of(condition: &Condition) -> Option<Precondition> {
        match condition {
            Condition::Create => Some(Precondition::Create),
            Condition::Replace(version) => e_tag_of(version).map(Precondition::Match),
        }
    }
}

/// Why a conditional PUT did not happen.
enum PutError {
    Conflict,
    Store(object_store::Error),
    /// Written, but the store gives no ETag to know its version by.
    NoETag,
}

/// PUTs `bytes` at `location` if `precondition` holds; returns the new ETag's token. A refusal
/// where the object already holds exactly `bytes` is a success (a retried request whose first
/// attempt was applied).
async fn put_if(
    store: &dyn ObjectStore,
    location: &Path,
    bytes: Bytes,
    precondition: Precondition,
    attributes: Attributes,
) -> Result<Version, PutError> {
    let mode = match precondition {
        Precondition::Create => PutMode::Create,
        Precondition::Match(e_tag) => PutMode::Update(UpdateVersion {
            e_tag: Some(e_tag),
            version: None,
        }),
    };
    let options = PutOptions {
        mode,
        attributes,
        ..PutOptions::default()
    };
    match store
        .put_opts(location, PutPayload::from(bytes.clone()), options)
        .await
    {
        Ok(result) => match result.e_tag {
            Some(e_tag) => Ok(version_of(&e_tag)),
            None => match store.head(location).await {
                Ok(meta) => meta.e_tag.map(|e| version_of(&e)).ok_or(PutError::NoETag),
                Err(e) => Err(PutError::Store(e)),
            },
        },
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => match store.get(location).await {
            Ok(got) if got.meta.size == bytes.len() as u64 => {
                let e_tag = got.meta.e_tag.clone();
                let have = got.bytes().await.map_err(PutError::Store)?;
                match e_tag {
                    Some(e_tag) if have == bytes => Ok(version_of(&e_tag)),
                    _ => Err(PutError::Conflict),
                }
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Err(PutError::Conflict),
            Err(e) => Err(PutError::Store(e)),
        },
        Err(e) => Err(PutError::Store(e)),
    }
}

/// A registry under `s3://BUCKET/PREFIX`. Clones share the client and runtime.
#[derive(Clone)]
pub struct ObjectStorage {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl ObjectStorage {
    /// The registry at `url` (`s3://BUCKET/PREFIX`), reached with the AWS environment and
    /// `options` (see the module documentation). Sends no request.
    pub fn from_url(url: &str, options: ObjectOptions) -> Result<ObjectStorage, ObjectError> {
        let bad = |reason: &str| ObjectError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing"));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            Path::parse(prefix).map_err(|e| bad(&format!("bad prefix: {e}")))?;
        }
        let shown = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let profile = super::aws_profile::settings(
            |name| std::env::var(name).ok(),
            |path| std::fs::read_to_string(path).ok(),
        )
        .map_err(|source| ObjectError::Profile {
            url: shown.clone(),
            source,
        })?;
        for (key, value) in &profile {
            if let Ok(parsed) = key.parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(parsed, value);
            }
        }
        if std::env::var_os("AWS_TIMEOUT").is_none() {
            builder = builder.with_config(
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::Timeout),
                "300s",
            );
        }
        for (key, value) in &options.settings {
            let parsed: AmazonS3ConfigKey =
                key.parse().map_err(|source| ObjectError::BadSetting {
                    url: shown.clone(),
                    key: key.clone(),
                    source,
                })?;
            builder = builder.with_config(parsed, value);
        }
        builder = builder.with_conditional_put(S3ConditionalPut::ETagMatch);
        let clock = Arc::new(StoreClock::default());
        builder = builder.with_http_connector(ClockConnector {
            clock: Arc::clone(&clock),
        });
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_default();
        // An http:// endpoint is consent to plain HTTP, as the AWS CLI takes it; an explicit
        // AWS_ALLOW_HTTP=false still refuses it.
        // (The builder always has a value for allow_http, so "not set" is read from where a
        // value could come from: the environment and the settings.)
        let allow_http_set = std::env::var_os("AWS_ALLOW_HTTP").is_some()
            || options
                .settings
                .iter()
                .any(|(key, _)| key.eq_ignore_ascii_case("aws_allow_http") || key == "allow_http");
        if endpoint_is_plain_http(&endpoint) && !allow_http_set {
            builder = builder.with_config(
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
                "true",
            );
        }
        let store = builder.build().map_err(|source| ObjectError::Setup {
            url: shown.clone(),
            source,
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hexreg-s3")
            .enable_all()
            .build()
            .map_err(|source| ObjectError::Runtime {
                url: shown.clone(),
                source,
            })?;
        let id = if endpoint.is_empty() {
            shown.clone()
        } else {
            format!("{shown} at {endpoint}")
        };
        Ok(ObjectStorage {
            shared: Arc::new(Shared {
                store: Arc::new(store),
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
                url: shown,
                prefix: prefix.to_string(),
                id,
                options,
                clock,
                standing: Mutex::new(None),
            }),
        })
    }

    /// `s3://BUCKET/PREFIX`, as shown to users.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// What identifies the registry (the URL, and the endpoint when one is set): for the cache.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The `object_store` client, at the bucket's root (object keys include the prefix).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.shared.store)
    }

    /// The object key of registry path `rel` (`PREFIX/rel`).
    pub fn location(&self, rel: &str) -> Result<Path, StorageError> {
        self.shared.location(rel)
    }

    /// Runs `future` on the storage's runtime, from a synchronous caller (not from async code).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.shared.block_on(future)
    }

    /// Fetches `rel` for an HTTP front end, from async code (unlike the [`Storage`] methods):
    /// the request runs on the storage's own runtime. `head`: its metadata only.
    /// `if_none_match`: a client's `If-None-Match`, passed on to the store.
    pub async fn fetch(
        &self,
        rel: &str,
        head: bool,
        if_none_match: Option<String>,
    ) -> Result<ObjectFetch, StorageError> {
        let shared = Arc::clone(&self.shared);
        let location = shared.location(rel)?;
        let store = Arc::clone(&shared.store);
        let handle = shared.handle.clone();
        let request = async move {
            let options = object_store::GetOptions {
                if_none_match,
                head,
                ..object_store::GetOptions::default()
            };
            let got = store.get_opts(&location, options).await?;
            let meta = got.meta.clone();
            let body = if head {
                None
            } else {
                // Pulled on this runtime (the connection's), handed over a few chunks at a time.
                let (sender, chunks) = tokio::sync::mpsc::channel(BODY_CHUNKS);
                let mut stream = got.into_stream();
                handle.spawn(async move {
                    while let Some(chunk) =
                        std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
                    {
                        let failed = chunk.is_err();
                        if sender.send(chunk.map_err(io::Error::other)).await.is_err() || failed {
                            break;
                        }
                    }
                });
                Some(ObjectBody { chunks })
            };
            Ok::<_, object_store::Error>((meta, body))
        };
        let joined = shared.handle.spawn(request).await;
        let got = joined.map_err(|e| StorageError::Io {
            action: "read",
            path: self.display(rel),
            source: io::Error::other(e),
        })?;
        match got {
            Ok((meta, body)) => Ok(ObjectFetch::Found {
                size: meta.size,
                e_tag: meta.e_tag,
                modified: meta.last_modified.timestamp(),
                body,
            }),
            Err(object_store::Error::NotModified { .. }) => Ok(ObjectFetch::NotModified),
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => {
                Ok(ObjectFetch::Missing)
            }
            Err(e) => Err(self.shared.failed("read", rel, e)),
        }
    }
}

impl Storage for ObjectStorage {
    fn display(&self, path: &str) -> String {
        self.shared.display(path)
    }

    fn list(&self, dir: &str) -> Result<Option<Vec<Entry>>, StorageError> {
        let shared = &self.shared;
        let prefix = if dir.is_empty() && shared.prefix.is_empty() {
            None
        } else {
            Some(shared.location(dir)?)
        };
        let listed = shared
            .block_on(shared.store.list_with_delimiter(prefix.as_ref()))
            .map_err(|e| shared.failed("list", dir, e))?;
        let mut seen = false;
        let mut entries: Vec<Entry> = Vec::with_capacity(listed.objects.len());
        for meta in listed.objects {
            seen = true;
            // A "directory marker" (`dir/`, made by some consoles) is the directory itself.
            if Some(&meta.location) == prefix.as_ref() {
                continue;
            }
            let Some(name) = meta.location.filename() else {
                continue;
            };
            entries.push(object_entry(name.to_string(), &meta));
        }
        for sub in listed.common_prefixes {
            seen = true;
            let Some(name) = sub.filename() else {
                continue;
            };
            if !entries.iter().any(|e| e.name == name) {
                entries.push(Entry {
                    name: name.to_string(),
                    size: 0,
                    modified: 0,
                    version: Version(Vec::new()),
                    regular: false,
                });
            }
        }
        if !seen && !dir.is_empty() {
            return Ok(None);
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(entries))
    }

    fn stat(&self, path: &str) -> Result<Option<Entry>, StorageError> {
        let shared = &self.shared;
        let location = shared.location(path)?;
        match shared.block_on(shared.store.head(&location)) {
            Ok(meta) => Ok(Some(object_entry(path.to_string(), &meta))),
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => Ok(None),
            Err(e) => Err(shared.failed("stat", path, e)),
        }
    }

    fn read(&self, path: &str) -> Result<Option<Object>, StorageError> {
        let shared = &self.shared;
        let location = shared.location(path)?;
        let got = shared.block_on(async {
            let got = shared.store.get(&location).await?;
            let meta = got.meta.clone();
            let bytes = got.bytes().await?;
            Ok::<_, object_store::Error>((meta, bytes))
        });
        match got {
            Ok((meta, bytes)) => {
                let Some(e_tag) = meta.e_tag else {
                    return Err(StorageError::Io {
                        action: "read",
                        path: self.display(path),
                        source: io::Error::other(ObjectError::NoETag),
                    });
                };
                Ok(Some(Object {
                    bytes: bytes.to_vec(),
                    modified: meta.last_modified.timestamp(),
                    version: version_of(&e_tag),
                }))
            }
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => Ok(None),
            Err(e) => Err(shared.failed("read", path, e)),
        }
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        Box::new(ObjectBatch {
            storage: self,
            staged: Mutex::new(Vec::new()),
        })
    }

    fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let shared = &self.shared;
        let location = shared.location(path)?;
        shared.check_lock(path)?;
        // S3 deletes a missing object without saying so: look first.
        match shared.block_on(shared.store.head(&location)) {
            Ok(_) => {}
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => return Ok(false),
            Err(e) => return Err(shared.failed("delete", path, e)),
        }
        shared
            .block_on(shared.store.delete(&location))
            .map_err(|e| shared.failed("delete", path, e))?;
        Ok(true)
    }

    /// Directories do not exist in a bucket: nothing to create.
    fn create_dir(&self, _dir: &str) -> Result<bool, StorageError> {
        Ok(false)
    }

    fn try_lock(&self) -> Result<Option<Lock>, StorageError> {
        self.acquire()
    }

    fn lock(&self) -> Result<Lock, StorageError> {
        let mut wait = Duration::from_millis(250);
        loop {
            if let Some(lock) = self.acquire()? {
                return Ok(lock);
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

/// A write staged in a batch.
struct Staged {
    rel: String,
    location: Path,
    bytes: Bytes,
    precondition: Precondition,
}

/// A batch of writes to an [`ObjectStorage`]: staged in memory, uploaded at commit.
struct ObjectBatch<'a> {
    storage: &'a ObjectStorage,
    staged: Mutex<Vec<Staged>>,
}

impl Batch for ObjectBatch<'_> {
    fn put(&self, path: &str, bytes: &[u8], condition: Condition) -> Result<(), StorageError> {
        let shared = &self.storage.shared;
        let location = shared.location(path)?;
        let precondition = Precondition::of(&condition).ok_or_else(|| StorageError::Io {
            action: "write",
            path: shared.display(path),
            source: io::Error::other(ObjectError::NoETag),
        })?;
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Staged {
                rel: path.to_string(),
                location,
                bytes: Bytes::copy_from_slice(bytes),
                precondition,
            });
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<Vec<Entry>, StorageError> {
        let staged = self.staged.into_inner().unwrap_or_else(|e| e.into_inner());
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&self.storage.shared);
        if let Some(first) = staged.first() {
            shared.check_lock(&first.rel)?;
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(shared.options.parallel.max(1)));
        let failed = Arc::new(AtomicBool::new(false));
        self.storage.shared.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for file in staged {
                let (shared, limit, failed) =
                    (Arc::clone(&shared), Arc::clone(&limit), Arc::clone(&failed));
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await.ok();
                    if failed.load(Ordering::SeqCst) {
                        return None;
                    }
                    let result = upload(&shared, file).await;
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    Some(result)
                });
            }
            let mut written = Vec::new();
            let mut first_error = None;
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Some(Ok(entry))) => written.push(entry),
                    Ok(Some(Err(e))) => {
                        first_error.get_or_insert(e);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        first_error.get_or_insert(StorageError::Io {
                            action: "write",
                            path: shared.url.clone(),
                            source: io::Error::other(e),
                        });
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(written),
            }
        })
    }
}

/// Uploads one staged file, then reads back its modification time.
async fn upload(shared: &Shared, file: Staged) -> Result<Entry, StorageError> {
    shared.check_lock(&file.rel)?;
    let size = file.bytes.len() as u64;
    let version = match put_if(
        shared.store.as_ref(),
        &file.location,
        file.bytes,
        file.precondition,
        shared.attributes(&file.rel),
    )
    .await
    {
        Ok(version) => version,
        Err(e) => return Err(shared.put_failed("write", &file.rel, e)),
    };
    // The PUT does not give Last-Modified. If another writer replaced the object meanwhile,
    // its time is not ours: the clock stands in.
    let modified = match shared.store.head(&file.location).await {
        Ok(meta) if meta.e_tag.as_deref().map(version_of).as_ref() == Some(&version) => {
            meta.last_modified.timestamp()
        }
        Ok(_) | Err(object_store::Error::NotFound { .. }) => now(),
        Err(e) => return Err(shared.failed("read", &file.rel, e)),
    };
    Ok(Entry {
        name: file.rel,
        size,
        modified,
        version,
        regular: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        for (url, shown) in [
            ("s3://bucket", "s3://bucket"),
            ("s3://bucket/", "s3://bucket"),
            ("s3://bucket/hex/repo/", "s3://bucket/hex/repo"),
        ] {
            let storage = ObjectStorage::from_url(url, ObjectOptions::default()).unwrap();
            assert_eq!(storage.url(), shown);
            assert_eq!(storage.display("names"), format!("{shown}/names"));
        }
        let storage = ObjectStorage::from_url("s3://bucket/p", ObjectOptions::default()).unwrap();
        assert_eq!(
            storage.location("packages/a").unwrap().as_ref(),
            "p/packages/a"
        );
        for (url, says) in [
            ("bucket/p", "does not start with s3://"),
            ("s3:///p", "bucket name is missing"),
            ("s3://bucket/a//b", "bad prefix"),
        ] {
            let e = ObjectStorage::from_url(url, ObjectOptions::default()).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(url) && text.contains(says), "{text}");
            assert!(text.contains("s3://BUCKET/PREFIX"), "{text}");
        }
        let options = ObjectOptions {
            settings: vec![("no_such_setting".into(), "x".into())],
            ..ObjectOptions::default()
        };
        let e = ObjectStorage::from_url("s3://bucket", options).unwrap_err();
        assert!(e.to_string().contains("no_such_setting"), "{e}");
    }

    #[test]
    fn the_aws_endpoint_url_variable_sets_the_endpoint() {
        // `from_env` lowercases each `AWS_*` name and parses it as a setting.
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT",
            "AWS_ALLOW_HTTP",
            "AWS_REGION",
        ] {
            let key: Result<AmazonS3ConfigKey, _> = name.to_ascii_lowercase().parse();
            assert!(key.is_ok(), "{name}");
        }
        assert_eq!(
            "aws_endpoint_url".parse::<AmazonS3ConfigKey>().unwrap(),
            AmazonS3ConfigKey::Endpoint
        );
    }

    #[test]
    fn an_http_endpoint_allows_plain_http() {
        assert!(endpoint_is_plain_http("http://127.0.0.1:9000"));
        assert!(endpoint_is_plain_http("HTTP://minio:9000"));
        assert!(!endpoint_is_plain_http("https://s3.example.com"));
        assert!(!endpoint_is_plain_http(""));
        let options = ObjectOptions {
            settings: vec![("aws_endpoint".into(), "http://127.0.0.1:1".into())],
            ..ObjectOptions::default()
        };
        // Building the client succeeds; the refusal of http:// came at the first request.
        assert!(ObjectStorage::from_url("s3://bucket", options).is_ok());
    }

    #[test]
    fn versions_are_etags_without_quotes() {
        assert_eq!(version_of("\"abc\"").0, b"abc");
        assert_eq!(version_of("W/\"abc\"").0, b"abc");
        assert_eq!(e_tag_of(&version_of("\"abc\"")).unwrap(), "\"abc\"");
        assert_eq!(e_tag_of(&Version(Vec::new())), None);
    }
}
