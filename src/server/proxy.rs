//! The caching proxy of `hexreg serve --upstream URL`: the served repository is an upstream Hex
//! repository (hex.pm, or any other), fetched the first time a client asks for a file,
//! verified, kept in the server's storage (the cache), and served from there.
//!
//! - `names`, `versions`, `packages/NAME`: a copy validated less than the TTL ago is served as
//!   it is; otherwise it is revalidated upstream (`If-None-Match` with the upstream's ETag when
//!   this process knows it), and a new body is verified (signature with the upstream's key,
//!   repository name, package name) before it replaces the cached copy, bytes unchanged.
//! - `tarballs/NAME-VERSION.tar`: fetched once and kept for good, stored only after its
//!   SHA-256 equals the outer checksum of the release in the signed `packages/NAME` (fetched
//!   first when not cached).
//! - `docs/...` and `installs/...` (mix's `hex-1.x.csv` and its `.signed`): passed through and
//!   kept like registry files (no signature of the repository covers them).
//! - `public_key`: the upstream's key, written into the cache at startup.
//!
//! # Filters, with re-signing
//!
//! With a [`Filter`] (`--only`, `--only-file`, `--cooldown`) the proxy serves less than the
//! upstream has, so it cannot pass the upstream's signed files through: `names`, `versions` and
//! `packages/NAME` are derived from the upstream's verified files (which stay in the cache as
//! above, bytes unchanged) and signed with the proxy's own key under its own repository name;
//! `public_key` is the proxy's key. Clients then use that key and name.
//!
//! - `--only`: the packages and releases are those [`crate::mirror::closure`] keeps, exactly as
//!   `hexreg mirror --only` keeps them, computed from the upstream's verified `names` and the
//!   `packages/NAME` of the closure, read through the cache above (each revalidated when past
//!   the TTL). The closure is computed again at the first request after the TTL
//!   since it was last computed. Dependencies on another repository are not followed. Without
//!   `--only`, every package the upstream lists is allowed.
//! - `--cooldown`: a release is shown once it is at least that old by its `published_at`; a
//!   release without one is shown (hex.pm's files carry none today, and Hex 2.5 itself treats
//!   an undated release as eligible). A package none of whose releases is shown is absent.
//! - A package outside the closure, a release not kept or too young: `packages/NAME`,
//!   `tarballs/NAME-VERSION.tar` and `docs/NAME-VERSION.tar.gz` answer 404, and a package
//!   outside the closure costs no upstream request.
//! - With `--cooldown` and no `--only`, `versions` answers 404: listing every package's shown
//!   releases would take every `packages/NAME` upstream (mix and rebar3 never fetch it).
//!
//! The derived files are kept in memory ([`DERIVED_CACHE`] entries, least recently used out),
//! keyed by their path and the SHA-256 of their payload, so a file is signed again only when
//! what it says changes.
//!
//! A file that fails verification is neither stored nor served (502, one line saying why; the
//! log names the upstream URL). With the upstream down, what is cached is still served
//! (registry files past their TTL with a warning in the log); what is not gets 502, or 504
//! when the upstream timed out. Concurrent requests for one missing file share one upstream
//! request (single flight); the waiters take the outcome of the request that was running when
//! they arrived. Writes are create-only (tarballs) or replace-if-unchanged (registry files), so
//! two proxies sharing one bucket never overwrite each other's verified files with older ones
//! they did not read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use prost::Message as _;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::Source;
use super::lru::Lru;
use super::respond::{ServeBody, log_line};
use crate::engine::Signer;
use crate::engine::mirror::{FetchError, MAX_RESOURCE_BODY, Upstream, UpstreamResponse};
use crate::format::docs::MAX_DOCS_SIZE;
use crate::format::package_name;
use crate::format::proto::package::{Dependency, Package};
use crate::format::registry::{
    self, PackageSummary, Release, ResourceError, SecurityAdvisory, Timestamp,
};
use crate::format::signing::PublicKey;
use crate::format::tarball::MAX_TARBALL_SIZE;
use crate::mirror::Only;
use crate::mirror::upstream::HttpUpstream;
use crate::storage::object::ObjectFetch;
use crate::storage::{Condition, Location, StorageError};

/// What a proxy serves: the upstream repository and how its files are checked.
pub struct ProxyConfig {
    /// The upstream repository (its URL may hold credentials).
    pub upstream: HttpUpstream,
    /// The upstream's repository name, which its signed files must hold (`hexpm`).
    pub repo: String,
    /// The upstream's public key, which every registry file must verify with.
    pub key: PublicKey,
    /// The same key as served at `/public_key` (PEM).
    pub key_pem: Vec<u8>,
    /// How long a registry file validated upstream is served without asking again.
    pub ttl: Duration,
    /// What of the upstream is served, re-signed; `None`: everything, the upstream's bytes.
    pub filter: Option<Filter>,
}

/// A filtered proxy's selection and signing key (see the module's doc).
pub struct Filter {
    /// The `--only` selections; empty: every package the upstream lists.
    pub only: Vec<Only>,
    /// Releases younger than this by their `published_at` are hidden; zero hides none.
    pub cooldown: Duration,
    /// The repository name the proxy's signed files hold, which its clients configure.
    pub name: String,
    /// The key the proxy signs its registry files with.
    pub signer: Signer,
    /// Its public half as served at `/public_key` (PEM).
    pub key_pem: Vec<u8>,
}

/// Whether a release published at `published_at` is at least `cooldown` old at `now` (Unix
/// seconds); a release without a date is.
pub fn old_enough(published_at: Option<&Timestamp>, cooldown: Duration, now: i64) -> bool {
    let Some(at) = published_at else {
        return true;
    };
    let cooldown = i64::try_from(cooldown.as_secs()).unwrap_or(i64::MAX);
    now.saturating_sub(at.seconds) >= cooldown
}

/// A package's `updated_at` in a filtered proxy's `names`: the upstream's, unless releases
/// are hidden (by the cooldown), when the upstream's would tell when the hidden one came; then
/// the latest date of the releases shown (the upstream's when none is dated).
fn shown_updated_at(upstream: i64, some_hidden: bool, shown: &[Release]) -> i64 {
    if !some_hidden {
        return upstream;
    }
    shown
        .iter()
        .filter_map(|r| r.published_at.as_ref().map(|t| t.seconds))
        .max()
        .map_or(upstream, |latest| latest.min(upstream))
}

/// Derived files kept in memory by a filtered proxy: the closure's packages and the indexes
/// (each a few KiB), least recently used out.
pub const DERIVED_CACHE: usize = 4096;

/// The files a proxy knows how to fetch, by request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `names`.
    Names,
    /// `versions`.
    Versions,
    /// `packages/NAME`.
    Package(String),
    /// `tarballs/NAME-VERSION.tar`.
    Tarball {
        /// The package.
        name: String,
        /// The version.
        version: String,
    },
    /// `docs/NAME-VERSION.tar.gz`: passed through, not verified.
    Docs {
        /// The package.
        name: String,
        /// The version.
        version: String,
    },
    /// `installs/...`: passed through, not verified.
    PassThrough,
    /// `public_key`: the upstream's, written at startup.
    PublicKey,
}

impl Kind {
    /// Registry files and pass-through files are revalidated after the TTL; tarballs and the
    /// public key never are.
    fn expires(&self) -> bool {
        !matches!(self, Kind::Tarball { .. } | Kind::PublicKey)
    }

    /// The largest body accepted for it.
    fn limit(&self) -> u64 {
        match self {
            Kind::Tarball { .. } => MAX_TARBALL_SIZE,
            Kind::PassThrough | Kind::Docs { .. } => MAX_DOCS_SIZE.max(MAX_TARBALL_SIZE),
            _ => MAX_RESOURCE_BODY,
        }
    }
}

/// What a request path (relative, confined by `files::request_path`) names for the proxy;
/// `None`: nothing the proxy fetches (served from the cache if there, else 404).
pub fn classify(rel: &str) -> Option<Kind> {
    match rel {
        "names" => return Some(Kind::Names),
        "versions" => return Some(Kind::Versions),
        "public_key" => return Some(Kind::PublicKey),
        _ => {}
    }
    let (dir, file) = rel.split_once('/')?;
    match dir {
        "packages" if package_name::is_valid(file) => Some(Kind::Package(file.to_string())),
        "tarballs" => {
            let (name, version) = package_name::split_tarball_file_name(file)?;
            (package_name::is_valid(name) && crate::format::version::parse(version).is_ok()).then(
                || Kind::Tarball {
                    name: name.to_string(),
                    version: version.to_string(),
                },
            )
        }
        "docs" => {
            let stem = file.strip_suffix(".tar.gz")?;
            let (name, version) = stem.split_once('-')?;
            (package_name::is_valid(name) && !version.is_empty() && !version.contains('/')).then(
                || Kind::Docs {
                    name: name.to_string(),
                    version: version.to_string(),
                },
            )
        }
        // mix's update check (`hex-1.x.csv`, `.signed`) and the archives it lists.
        "installs" => Some(Kind::PassThrough),
        _ => None,
    }
}

/// Whether a registry file validated at `validated` is still fresh at `now`.
pub fn is_fresh(validated: Option<Instant>, now: Instant, ttl: Duration) -> bool {
    validated.is_some_and(|at| now.saturating_duration_since(at) < ttl)
}

/// `5m`, `30s`, `2h`, `1d`, or a number of seconds: a TTL.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit).map(Duration::from_secs)
}

/// Why a fetched registry file is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The file does not open or verify.
    #[error("{0}")]
    Resource(#[from] ResourceError),
    /// A tarball's SHA-256 is not the outer checksum its signed release records.
    #[error(
        "has SHA-256 {found}, but the signed packages/{name} records {expected} for version {version}"
    )]
    Checksum {
        /// The package.
        name: String,
        /// The version.
        version: String,
        /// The recorded outer checksum (hex).
        expected: String,
        /// The tarball's (hex).
        found: String,
    },
}

/// Checks a fetched registry file as its kind requires: `names` and `versions` signed by
/// `key` for repository `repo`, `packages/NAME` also describing NAME. Pass-through files are
/// not checked. Returns the package when it is one.
pub fn verify_file(
    kind: &Kind,
    bytes: &[u8],
    repo: &str,
    key: &PublicKey,
) -> Result<Option<Package>, Refused> {
    match kind {
        Kind::Names | Kind::Versions => {
            let opened = registry::open(bytes)?;
            opened.verify(key)?;
            if *kind == Kind::Names {
                registry::decode_names(&opened.payload, repo)?;
            } else {
                registry::decode_versions(&opened.payload, repo)?;
            }
            Ok(None)
        }
        Kind::Package(name) => Ok(Some(registry::open_package(bytes, key, repo, name)?)),
        Kind::Tarball { .. } | Kind::Docs { .. } | Kind::PassThrough | Kind::PublicKey => Ok(None),
    }
}

/// Checks a fetched tarball against the outer checksum `package` records for `version`;
/// `Ok(false)`: the package has no such release.
pub fn verify_tarball(package: &Package, version: &str, bytes: &[u8]) -> Result<bool, Refused> {
    let Some(release) = package.releases.iter().find(|r| r.version == version) else {
        return Ok(false);
    };
    let found: [u8; 32] = Sha256::digest(bytes).into();
    let expected = release.outer_checksum.as_deref().unwrap_or_default();
    if expected == found {
        return Ok(true);
    }
    Err(Refused::Checksum {
        name: package.name.clone(),
        version: version.to_string(),
        expected: crate::format::encoding::hex_lower(expected),
        found: crate::format::encoding::hex_lower(&found),
    })
}

/// A request the proxy could not satisfy: the status and the one line a client prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    status: StatusCode,
    reason: String,
}

impl Failure {
    fn new(status: StatusCode, reason: impl Into<String>) -> Failure {
        Failure {
            status,
            reason: reason
                .into()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        }
    }

    /// The failure of fetching `url`: 504 on a timeout, 404 when the upstream has no such
    /// file, 502 otherwise.
    fn fetch(e: &FetchError) -> Failure {
        match e {
            FetchError::Status { status: 404, url } => {
                Failure::new(StatusCode::NOT_FOUND, format!("the upstream has no {url}"))
            }
            FetchError::Transport { url, reason } if reason.contains("timed out") => Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the upstream timed out: {url} ({reason})"),
            ),
            FetchError::Transport { url, reason } => Failure::new(
                StatusCode::BAD_GATEWAY,
                format!("the upstream cannot be reached: {url} ({reason})"),
            ),
            // The mirror's wording names its own flags: say it in the proxy's terms.
            FetchError::Status {
                status: status @ (401 | 403),
                url,
            } => Failure::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the upstream refused the proxy: {url} answered HTTP {status}; its operator gives credentials in --upstream (https://KEY@HOST) or HEXREG_MIRROR_AUTH"
                ),
            ),
            FetchError::Status { status, url } if *status >= 500 => Failure::new(
                StatusCode::BAD_GATEWAY,
                format!("the upstream failed: {url} answered HTTP {status}; try again later"),
            ),
            FetchError::Status { status, url } => Failure::new(
                StatusCode::BAD_GATEWAY,
                format!("the upstream answered HTTP {status} for {url}"),
            ),
            FetchError::Redirect { url, location } => Failure::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "{url} redirects to {location}: the proxy follows no redirect; its operator gives --upstream the URL it redirects to"
                ),
            ),
            FetchError::TooBig { url, limit } => Failure::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "refused: {url} sent more than {limit} bytes, more than a Hex repository's file may hold"
                ),
            ),
            other @ FetchError::UnexpectedNotModified { .. } => {
                Failure::new(StatusCode::BAD_GATEWAY, other.to_string())
            }
        }
    }

    fn cache(e: &StorageError) -> Failure {
        log_line(&format!("error: proxy cache: {e}"));
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the proxy's cache cannot be used; the server's log says why",
        )
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The one line saying why.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The response: `STATUS REASON: LINE`, as text.
    pub fn response(&self) -> Response<ServeBody> {
        let text = format!(
            "{} {}: {}\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Error"),
            self.reason
        );
        let mut response = Response::new(ServeBody::full(Bytes::from(text)));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// One fetch in progress, which requests for the same path wait for.
#[derive(Default)]
struct Flight {
    /// When the fetch finished, and how.
    done: tokio::sync::Mutex<Option<(Instant, Result<(), Failure>)>>,
}

/// One revalidation in progress on the blocking pool: when it finished, and the bytes or the
/// failure.
#[derive(Default)]
struct BlockingFlight {
    done: Mutex<Option<(Instant, Fetched)>>,
}

/// The bytes of a file revalidated upstream, or why not.
type Fetched = Result<Vec<u8>, Failure>;

/// What [`Proxy::prepare`] leaves to serve.
pub(crate) enum Prepared {
    /// The file in the cache, as it is.
    Cache,
    /// A file a filtered proxy derived (re-signed), served from memory.
    Derived(Derived),
}

/// A derived file's bytes and strong validator.
#[derive(Clone)]
pub(crate) struct Derived {
    /// The bytes served.
    pub bytes: Bytes,
    /// Its ETag: a hash of the bytes.
    pub etag: String,
}

impl Derived {
    fn of(bytes: Bytes) -> Derived {
        let digest = Sha256::digest(&bytes);
        let etag = format!(
            "\"{}\"",
            crate::format::encoding::hex_lower(digest.get(..16).unwrap_or_default())
        );
        Derived { bytes, etag }
    }
}

/// A filtered proxy's `--only` closure, computed from the upstream's verified files.
struct View {
    /// Each package in the closure: its kept releases (sorted, dependencies on the upstream's
    /// repository made dependencies on the proxy's) and its advisories.
    kept: BTreeMap<String, Kept>,
    /// The upstream's `names`: each package's `updated_at` seconds.
    updated: BTreeMap<String, i64>,
    /// What was not followed or not matched, logged when it changes.
    notes: Vec<String>,
}

/// One package of a [`View`].
struct Kept {
    releases: Vec<Release>,
    advisories: Vec<SecurityAdvisory>,
}

/// The proxy a server holds.
pub struct Proxy {
    upstream: HttpUpstream,
    repo: String,
    key: PublicKey,
    ttl: Duration,
    cache: Location,
    /// When each registry file was last validated upstream, and the upstream's ETag for it.
    validated: Mutex<HashMap<String, (Instant, Option<String>)>>,
    /// Fetches in progress, by path.
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    /// A filtered proxy's revalidations in progress (on the blocking pool), by path: the
    /// requests that arrive meanwhile wait and take the outcome, as [`Proxy::flights`].
    blocking_flights: Mutex<HashMap<String, Arc<BlockingFlight>>>,
    filter: Option<Filter>,
    /// A filtered proxy's closure and when it was computed; held while it is computed, so
    /// that one computation runs at a time.
    view: Mutex<Option<(Instant, Arc<View>)>>,
    /// A filtered proxy's derived files: path to the SHA-256 of the payload and the file.
    derived: Mutex<Lru<String, ([u8; 32], Derived)>>,
}

impl Proxy {
    /// The proxy of `config` over the cache `cache`; writes the upstream's public key into
    /// the cache (best effort: a cache that cannot take it is reported in the log).
    pub fn new(config: ProxyConfig, cache: Location) -> Proxy {
        let storage = cache.storage();
        let current = storage.read("public_key");
        let outcome = match &current {
            Ok(Some(object)) if object.bytes == config.key_pem => Ok(()),
            Ok(existing) => storage
                .write(
                    "public_key",
                    &config.key_pem,
                    Condition::after(existing.as_ref().map(|o| &o.version)),
                )
                .map(|_| ()),
            Err(e) => Err(StorageError::Io {
                action: "read",
                path: storage.display("public_key"),
                source: std::io::Error::other(e.to_string()),
            }),
        };
        if let Err(e) = outcome {
            log_line(&format!(
                "warning: cannot write the upstream's public key into the cache: {e}"
            ));
        }
        // The directories first: two first writes into one at once would both create it.
        for dir in ["packages", "tarballs", "docs"] {
            if let Err(e) = storage.create_dir(dir) {
                log_line(&format!("warning: cannot create {dir}/ in the cache: {e}"));
            }
        }
        Proxy {
            upstream: config.upstream,
            repo: config.repo,
            key: config.key,
            ttl: config.ttl,
            cache,
            validated: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            blocking_flights: Mutex::new(HashMap::new()),
            filter: config.filter,
            view: Mutex::new(None),
            derived: Mutex::new(Lru::new(DERIVED_CACHE)),
        }
    }

    /// The upstream's repository name, which its signed files hold.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// Whether it filters (and re-signs) what it serves.
    pub fn filtered(&self) -> bool {
        self.filter.is_some()
    }

    /// The upstream's URL, without credentials.
    pub fn upstream(&self) -> &str {
        self.upstream.base()
    }

    /// Makes sure the cache holds a current, verified copy of `rel` (when it is a file the
    /// proxy fetches), so that it can then be served from the cache as any file is; a filtered
    /// proxy derives its registry files instead, and refuses (404) what its filter hides.
    pub(crate) async fn prepare(
        self: &Arc<Self>,
        source: &Source,
        rel: &Path,
    ) -> Result<Prepared, Failure> {
        let Some(rel) = rel.to_str() else {
            return Ok(Prepared::Cache);
        };
        let Some(kind) = classify(rel) else {
            return Ok(Prepared::Cache);
        };
        if self.filter.is_some() {
            match &kind {
                Kind::PublicKey | Kind::Names | Kind::Versions | Kind::Package(_) => {
                    let proxy = Arc::clone(self);
                    return blocking(rel, move || proxy.derive(&kind))
                        .await
                        .map(Prepared::Derived);
                }
                Kind::Tarball { name, version } | Kind::Docs { name, version } => {
                    let proxy = Arc::clone(self);
                    let (name, version) = (name.clone(), version.clone());
                    blocking(rel, move || proxy.check_release(&name, &version)).await?;
                }
                Kind::PassThrough => {}
            }
        }
        if kind == Kind::PublicKey {
            return Ok(Prepared::Cache);
        }
        self.prepare_cached(source, rel, kind)
            .await
            .map(|()| Prepared::Cache)
    }

    /// [`Proxy::prepare`] of a file served from the cache.
    async fn prepare_cached(
        self: &Arc<Self>,
        source: &Source,
        rel: &str,
        kind: Kind,
    ) -> Result<(), Failure> {
        let arrived = Instant::now();
        if self.satisfied(source, rel, &kind).await? {
            super::metrics::CACHE_HITS.inc();
            return Ok(());
        }
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(flights.entry(rel.to_string()).or_default())
        };
        let mut done = flight.done.lock().await;
        if let Some((at, outcome)) = &*done
            && *at >= arrived
        {
            return outcome.clone();
        }
        // Another flight (since removed from the map) may have finished meanwhile.
        let outcome = if self.satisfied(source, rel, &kind).await? {
            Ok(())
        } else {
            let proxy = Arc::clone(self);
            let path = rel.to_string();
            blocking(rel, move || proxy.fetch(&path, &kind)).await
        };
        *done = Some((Instant::now(), outcome.clone()));
        drop(done);
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(rel).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(rel);
        }
        outcome
    }

    /// Whether the cache can serve `rel` without asking upstream: a tarball present, a
    /// registry file validated within the TTL.
    async fn satisfied(&self, source: &Source, rel: &str, kind: &Kind) -> Result<bool, Failure> {
        if kind.expires() {
            return Ok(self.validated_within_ttl(rel));
        }
        match source {
            Source::Dir(root) => match super::files::open(root, Path::new(rel)) {
                Ok(found) => Ok(found.is_some()),
                Err(e) => Err(Failure::cache(&StorageError::Io {
                    action: "read",
                    path: root.path().join(rel).display().to_string(),
                    source: e,
                })),
            },
            Source::Bucket(bucket) => match bucket.fetch(rel, true, None).await {
                Ok(ObjectFetch::Missing) => Ok(false),
                Ok(_) => Ok(true),
                Err(e) => {
                    log_line(&format!("error: proxy cache: {e}"));
                    Err(Failure::new(
                        StatusCode::BAD_GATEWAY,
                        "the proxy's bucket did not answer as expected; the server's log says why",
                    ))
                }
            },
        }
    }

    /// Fetches `rel` upstream, verifies and stores it (blocking).
    fn fetch(&self, rel: &str, kind: &Kind) -> Result<(), Failure> {
        super::metrics::UPSTREAM_FETCHES.inc();
        match kind {
            Kind::Tarball { name, version } => self.fetch_tarball(rel, name, version),
            _ => self.revalidate(rel, kind).map(|_| ()),
        }
    }

    fn mark(&self, rel: &str, etag: Option<String>) {
        let mut validated = self.validated.lock().unwrap_or_else(|e| e.into_inner());
        let etag = etag.or_else(|| validated.get(rel).and_then(|(_, etag)| etag.clone()));
        validated.insert(rel.to_string(), (Instant::now(), etag));
    }

    /// Revalidates a registry or pass-through file upstream; returns the bytes now cached.
    fn revalidate(&self, rel: &str, kind: &Kind) -> Result<Vec<u8>, Failure> {
        let storage = self.cache.storage();
        let cached = storage.read(rel).map_err(|e| Failure::cache(&e))?;
        let etag = match &cached {
            Some(_) => self
                .validated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(rel)
                .and_then(|(_, etag)| etag.clone()),
            None => None,
        };
        let url = self.upstream.url(rel);
        match self.upstream.get(rel, etag.as_deref(), kind.limit()) {
            Ok(UpstreamResponse::NotModified) => {
                self.mark(rel, None);
                Ok(cached.map(|o| o.bytes).unwrap_or_default())
            }
            Ok(UpstreamResponse::Body { bytes, etag }) => {
                if let Err(e) = verify_file(kind, &bytes, &self.repo, &self.key) {
                    // The cached copy was verified when it was stored: a failing upstream is
                    // one that is down, so it is served (point 5), never the refused bytes.
                    if let Some(object) = cached {
                        log_line(&format!(
                            "error: {url} {e}: refused, not cached; serving the cached {rel}, verified when it was stored, until the upstream's verifies"
                        ));
                        self.mark(rel, None);
                        return Ok(object.bytes);
                    }
                    log_line(&format!("error: {url} {e}: refused, not cached"));
                    return Err(Failure::new(
                        StatusCode::BAD_GATEWAY,
                        format!("refused: the upstream's {rel} {e}"),
                    ));
                }
                let unchanged = cached.as_ref().is_some_and(|o| o.bytes == bytes);
                if !unchanged {
                    let condition = Condition::after(cached.as_ref().map(|o| &o.version));
                    match storage.write(rel, &bytes, condition) {
                        Ok(_) => {}
                        // Another proxy on the same cache stored it meanwhile, verified too.
                        Err(StorageError::Conflict { .. }) => {}
                        Err(e) => return Err(Failure::cache(&e)),
                    }
                }
                self.mark(rel, etag);
                Ok(bytes)
            }
            Err(e) => match cached {
                Some(object) if !matches!(e, FetchError::Status { status: 404, .. }) => {
                    log_line(&format!(
                        "warning: serving the cached {rel} past its TTL: {}",
                        Failure::fetch(&e).reason
                    ));
                    // Ask again after another TTL, not on every request meanwhile.
                    self.mark(rel, None);
                    Ok(object.bytes)
                }
                _ => {
                    let failure = Failure::fetch(&e);
                    log_line(&format!("error: proxy: {}", failure.reason));
                    Err(failure)
                }
            },
        }
    }

    /// The signed package `name`, from the cache if it has `version`, else revalidated.
    fn package(&self, name: &str, version: &str) -> Result<Package, Failure> {
        let rel = format!("packages/{name}");
        let kind = Kind::Package(name.to_string());
        let cached = self
            .cache
            .storage()
            .read(&rel)
            .map_err(|e| Failure::cache(&e))?;
        if let Some(object) = cached
            && let Ok(package) = registry::open_package(&object.bytes, &self.key, &self.repo, name)
            && package.releases.iter().any(|r| r.version == version)
        {
            return Ok(package);
        }
        let bytes = self.revalidate(&rel, &kind)?;
        registry::open_package(&bytes, &self.key, &self.repo, name).map_err(|e| {
            Failure::new(
                StatusCode::BAD_GATEWAY,
                format!("refused: the cached {rel} {e}"),
            )
        })
    }

    fn fetch_tarball(&self, rel: &str, name: &str, version: &str) -> Result<(), Failure> {
        let package = self.package(name, version).map_err(|f| {
            if f.status == StatusCode::NOT_FOUND {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    format!("the upstream has no package {name}"),
                )
            } else {
                f
            }
        })?;
        if !package.releases.iter().any(|r| r.version == version) {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("the upstream's signed packages/{name} has no release {version}"),
            ));
        }
        let url = self.upstream.url(rel);
        let bytes = match self.upstream.get(rel, None, MAX_TARBALL_SIZE) {
            Ok(UpstreamResponse::Body { bytes, .. }) => bytes,
            Ok(UpstreamResponse::NotModified) => {
                return Err(Failure::fetch(&FetchError::UnexpectedNotModified { url }));
            }
            Err(e) => {
                let failure = Failure::fetch(&e);
                log_line(&format!("error: proxy: {}", failure.reason));
                return Err(failure);
            }
        };
        if let Err(e) = verify_tarball(&package, version, &bytes) {
            log_line(&format!("error: {url} {e}: refused, not cached"));
            return Err(Failure::new(
                StatusCode::BAD_GATEWAY,
                format!("refused: the upstream's {rel} {e}"),
            ));
        }
        match self.cache.storage().write(rel, &bytes, Condition::Create) {
            // A conflict: another proxy on the same cache stored it first, verified too.
            Ok(_) | Err(StorageError::Conflict { .. }) => Ok(()),
            Err(e) => Err(Failure::cache(&e)),
        }
    }
}

/// Runs `f` on the blocking pool; a panic there is a 500 (and a line in the log).
async fn blocking<T: Send + 'static>(
    rel: &str,
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        log_line(&format!("error: proxy fetch of {rel} failed: {e}"));
        Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the proxy failed; the server's log says why",
        ))
    })
}

/// Unix seconds now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A dependency on the upstream's own repository, written out, becomes one on the proxy's
/// (written as none, as builds write it); one on another repository is left as it is.
fn local_dependencies(dependencies: &mut [Dependency], upstream: &str) {
    for dep in dependencies {
        if dep.repository.as_deref() == Some(upstream) {
            dep.repository = None;
        }
    }
}

/// The 502 of an upstream file that does not open, verify or decode.
fn refused(rel: &str, e: impl std::fmt::Display) -> Failure {
    log_line(&format!("error: the upstream's {rel} {e}: refused"));
    Failure::new(
        StatusCode::BAD_GATEWAY,
        format!("refused: the upstream's {rel} {e}"),
    )
}

/// A 404 of a filtered proxy, saying what hides the file.
fn hidden(reason: String) -> Failure {
    Failure::new(StatusCode::NOT_FOUND, reason)
}

impl Proxy {
    /// The upstream's `rel` from the cache while validated within the TTL, else revalidated
    /// upstream (blocking).
    ///
    /// Concurrent calls for one file cost one upstream request: the first revalidates, the
    /// others wait for it and take its outcome.
    fn ensure(&self, rel: &str, kind: &Kind) -> Result<Vec<u8>, Failure> {
        let arrived = Instant::now();
        if let Some(bytes) = self.fresh(rel)? {
            super::metrics::CACHE_HITS.inc();
            return Ok(bytes);
        }
        let flight = {
            let mut flights = self
                .blocking_flights
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            Arc::clone(flights.entry(rel.to_string()).or_default())
        };
        let mut done = flight.done.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, outcome)) = &*done
            && *at >= arrived
        {
            return outcome.clone();
        }
        // Another flight (since removed from the map) may have finished meanwhile.
        let outcome = match self.fresh(rel)? {
            Some(bytes) => Ok(bytes),
            None => {
                super::metrics::UPSTREAM_FETCHES.inc();
                self.revalidate(rel, kind)
            }
        };
        *done = Some((Instant::now(), outcome.clone()));
        drop(done);
        let mut flights = self
            .blocking_flights
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if flights.get(rel).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(rel);
        }
        outcome
    }

    /// Whether `rel` was validated upstream within the TTL.
    fn validated_within_ttl(&self, rel: &str) -> bool {
        let validated = self
            .validated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rel)
            .map(|(at, _)| *at);
        is_fresh(validated, Instant::now(), self.ttl)
    }

    /// The cached `rel` while it was validated upstream within the TTL.
    fn fresh(&self, rel: &str) -> Result<Option<Vec<u8>>, Failure> {
        if !self.validated_within_ttl(rel) {
            return Ok(None);
        }
        Ok(self
            .cache
            .storage()
            .read(rel)
            .map_err(|e| Failure::cache(&e))?
            .map(|object| object.bytes))
    }

    /// The upstream's `packages/NAME`, verified; `None` when the upstream has none.
    fn upstream_package(&self, name: &str) -> Result<Option<Package>, Failure> {
        let rel = format!("packages/{name}");
        let bytes = match self.ensure(&rel, &Kind::Package(name.to_string())) {
            Ok(bytes) => bytes,
            Err(failure) if failure.status == StatusCode::NOT_FOUND => return Ok(None),
            Err(failure) => return Err(failure),
        };
        registry::open_package(&bytes, &self.key, &self.repo, name)
            .map(Some)
            .map_err(|e| refused(&rel, e))
    }

    /// The closure, computed again when older than the TTL. A computation that fails keeps
    /// the last one (with a warning) for another TTL.
    fn view(&self, filter: &Filter) -> Result<Arc<View>, Failure> {
        let mut slot = self.view.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, view)) = &*slot
            && is_fresh(Some(*at), Instant::now(), self.ttl)
        {
            return Ok(Arc::clone(view));
        }
        match self.compute_view(filter) {
            Ok(view) => {
                let old_notes = slot.as_ref().map(|(_, v)| v.notes.as_slice());
                if old_notes != Some(view.notes.as_slice()) {
                    for note in &view.notes {
                        log_line(&format!("note: proxy filter: {note}"));
                    }
                }
                let view = Arc::new(view);
                *slot = Some((Instant::now(), Arc::clone(&view)));
                Ok(view)
            }
            Err(failure) => match &mut *slot {
                Some((at, view)) => {
                    log_line(&format!(
                        "warning: the proxy's --only closure cannot be computed again, the last one is kept: {}",
                        failure.reason
                    ));
                    *at = Instant::now();
                    Ok(Arc::clone(view))
                }
                None => Err(failure),
            },
        }
    }

    /// Computes the closure as `hexreg mirror --only` does ([`crate::mirror::closure`]), from
    /// the upstream's verified `names` and the `packages/NAME` it needs.
    fn compute_view(&self, filter: &Filter) -> Result<View, Failure> {
        let bytes = self.ensure("names", &Kind::Names)?;
        let opened = registry::open(&bytes).map_err(|e| refused("names", e))?;
        opened.verify(&self.key).map_err(|e| refused("names", e))?;
        let names =
            registry::decode_names(&opened.payload, &self.repo).map_err(|e| refused("names", e))?;
        let updated: BTreeMap<String, i64> = names
            .packages
            .into_iter()
            .map(|p| (p.name, p.updated_at.map_or(0, |t| t.seconds)))
            .collect();
        let listed: BTreeSet<String> = updated.keys().cloned().collect();
        let mut known: BTreeMap<String, Vec<Release>> = BTreeMap::new();
        let mut advisories: BTreeMap<String, Vec<SecurityAdvisory>> = BTreeMap::new();
        let step = loop {
            let step = crate::mirror::closure(&filter.only, &known, &listed, &self.repo);
            if step.missing.is_empty() {
                break step;
            }
            let fetched: Vec<Result<(String, Option<Package>), Failure>> = step
                .missing
                .par_iter()
                .map(|name| Ok((name.clone(), self.upstream_package(name)?)))
                .collect();
            for result in fetched {
                let (name, package) = result?;
                let Some(package) = package else {
                    // Listed but absent upstream: no release to keep (the closure notes it).
                    known.insert(name, Vec::new());
                    continue;
                };
                let rel = format!("packages/{name}");
                let releases = package
                    .releases
                    .into_iter()
                    .map(Release::from_proto)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| refused(&rel, e))?;
                known.insert(name.clone(), releases);
                advisories.insert(name, package.advisories);
            }
        };
        let mut kept = BTreeMap::new();
        for (name, indexes) in step.kept {
            let Some(releases) = known.get(&name) else {
                continue;
            };
            let mut releases: Vec<Release> = indexes
                .iter()
                .filter_map(|i| releases.get(*i).cloned())
                .collect();
            for release in &mut releases {
                local_dependencies(&mut release.dependencies, &self.repo);
            }
            registry::sort_releases(&mut releases);
            let advisories = advisories.remove(&name).unwrap_or_default();
            kept.insert(
                name,
                Kept {
                    releases,
                    advisories,
                },
            );
        }
        let mut notes = step.notes;
        notes.extend(
            step.unmatched
                .into_iter()
                .map(|u| format!("--only {u}: nothing of it is served")),
        );
        Ok(View {
            kept,
            updated,
            notes,
        })
    }

    /// A filtered proxy's `public_key`, `names`, `versions` or `packages/NAME` (blocking).
    fn derive(&self, kind: &Kind) -> Result<Derived, Failure> {
        let Some(filter) = &self.filter else {
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the proxy has no filter",
            ));
        };
        let now = unix_now();
        let shown = |releases: &[Release]| -> Vec<Release> {
            releases
                .iter()
                .filter(|r| old_enough(r.published_at.as_ref(), filter.cooldown, now))
                .cloned()
                .collect()
        };
        let (rel, payload) = match kind {
            Kind::PublicKey => return Ok(Derived::of(Bytes::from(filter.key_pem.clone()))),
            Kind::Names | Kind::Versions if !filter.only.is_empty() => {
                let view = self.view(filter)?;
                let summaries: Vec<PackageSummary> = view
                    .kept
                    .iter()
                    .filter_map(|(name, kept)| {
                        let releases = shown(&kept.releases);
                        let upstream = view.updated.get(name).copied().unwrap_or(0);
                        let updated = shown_updated_at(
                            upstream,
                            releases.len() < kept.releases.len(),
                            &releases,
                        );
                        (!releases.is_empty())
                            .then(|| PackageSummary::new(name, updated, &releases))
                    })
                    .collect();
                if *kind == Kind::Names {
                    (
                        "names".to_string(),
                        registry::names_payload(&filter.name, &summaries),
                    )
                } else {
                    (
                        "versions".to_string(),
                        registry::versions_payload(&filter.name, &summaries),
                    )
                }
            }
            Kind::Names => {
                let bytes = self.ensure("names", kind)?;
                let opened = registry::open(&bytes).map_err(|e| refused("names", e))?;
                opened.verify(&self.key).map_err(|e| refused("names", e))?;
                let mut names = registry::decode_names(&opened.payload, &self.repo)
                    .map_err(|e| refused("names", e))?;
                names.repository = filter.name.clone();
                ("names".to_string(), names.encode_to_vec())
            }
            Kind::Versions => {
                return Err(hidden(
                    "a proxy filtered by --cooldown alone serves no versions index (listing every package's releases old enough would take every packages/NAME upstream; mix and rebar3 never fetch it): give --only to have one".to_string(),
                ));
            }
            Kind::Package(name) => {
                let rel = format!("packages/{name}");
                let (releases, advisories) = if filter.only.is_empty() {
                    let Some(package) = self.upstream_package(name)? else {
                        return Err(hidden(format!("the upstream has no package {name}")));
                    };
                    let releases = package
                        .releases
                        .into_iter()
                        .map(Release::from_proto)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| refused(&rel, e))?;
                    let mut releases = shown(&releases);
                    for release in &mut releases {
                        local_dependencies(&mut release.dependencies, &self.repo);
                    }
                    registry::sort_releases(&mut releases);
                    (releases, package.advisories)
                } else {
                    let view = self.view(filter)?;
                    let Some(kept) = view.kept.get(name) else {
                        return Err(hidden(format!(
                            "{name} is not among the packages this proxy serves (--only and their dependencies)"
                        )));
                    };
                    (shown(&kept.releases), kept.advisories.clone())
                };
                if releases.is_empty() {
                    return Err(hidden(format!(
                        "no release of {name} is older than this proxy's --cooldown yet"
                    )));
                }
                let payload = registry::package_payload(&filter.name, name, &releases, &advisories);
                (rel, payload)
            }
            Kind::Tarball { .. } | Kind::Docs { .. } | Kind::PassThrough => {
                return Err(Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the proxy derives registry files only",
                ));
            }
        };
        self.sealed(filter, rel, &payload)
    }

    /// `payload` signed and sealed with the proxy's key, from memory when it was already.
    fn sealed(&self, filter: &Filter, rel: String, payload: &[u8]) -> Result<Derived, Failure> {
        let digest: [u8; 32] = Sha256::digest(payload).into();
        let mut derived = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, file)) = derived.get(&rel)
            && known == digest
        {
            return Ok(file);
        }
        let sealed = registry::seal(payload, &filter.signer.key).map_err(|e| {
            log_line(&format!(
                "error: cannot sign {rel} with {}: {e}",
                filter.signer.name
            ));
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the proxy cannot sign its registry files; the server's log says why",
            )
        })?;
        let file = Derived::of(Bytes::from(sealed));
        derived.insert(rel, (digest, file.clone()));
        Ok(file)
    }

    /// Whether a filtered proxy serves release `version` of `name` (its tarball, its docs):
    /// a 404 when not, without an upstream request for a package outside `--only`'s closure.
    fn check_release(&self, name: &str, version: &str) -> Result<(), Failure> {
        let Some(filter) = &self.filter else {
            return Ok(());
        };
        let published_at = if filter.only.is_empty() {
            let Some(package) = self.upstream_package(name)? else {
                return Err(hidden(format!("the upstream has no package {name}")));
            };
            let Some(release) = package.releases.into_iter().find(|r| r.version == version) else {
                return Err(hidden(format!(
                    "the upstream's signed packages/{name} has no release {version}"
                )));
            };
            release.published_at
        } else {
            let view = self.view(filter)?;
            let Some(kept) = view.kept.get(name) else {
                return Err(hidden(format!(
                    "{name} is not among the packages this proxy serves (--only and their dependencies)"
                )));
            };
            let Some(release) = kept.releases.iter().find(|r| r.version == version) else {
                return Err(hidden(format!(
                    "{name} {version} is not among the releases this proxy serves (--only and their dependencies)"
                )));
            };
            release.published_at
        };
        if old_enough(published_at.as_ref(), filter.cooldown, unix_now()) {
            Ok(())
        } else {
            Err(hidden(format!(
                "{name} {version} is younger than this proxy's --cooldown"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        assert_eq!(classify("names"), Some(Kind::Names));
        assert_eq!(classify("versions"), Some(Kind::Versions));
        assert_eq!(classify("public_key"), Some(Kind::PublicKey));
        assert_eq!(
            classify("packages/jason"),
            Some(Kind::Package("jason".into()))
        );
        assert_eq!(
            classify("tarballs/jason-1.4.0-rc.1.tar"),
            Some(Kind::Tarball {
                name: "jason".into(),
                version: "1.4.0-rc.1".into()
            })
        );
        assert_eq!(
            classify("docs/jason-1.4.0.tar.gz"),
            Some(Kind::Docs {
                name: "jason".into(),
                version: "1.4.0".into()
            })
        );
        assert_eq!(classify("installs/hex-1.x.csv"), Some(Kind::PassThrough));
        assert_eq!(
            classify("installs/hex-1.x.csv.signed"),
            Some(Kind::PassThrough)
        );
        for other in [
            "packages/Bad",
            "packages/",
            "tarballs/jason.tar",
            "tarballs/jason-x.tar",
            "tarballs/Jason-1.0.0.tar",
            "docs/jason.tar.gz",
            "policies/x",
            "favicon.ico",
        ] {
            assert_eq!(classify(other), None, "{other}");
        }
    }

    #[test]
    fn upstream_failures_are_told_in_the_proxys_terms() {
        let url = "http://up/packages/a".to_string();
        let status = |status| {
            Failure::fetch(&FetchError::Status {
                url: url.clone(),
                status,
            })
        };
        assert_eq!(status(404).status, StatusCode::NOT_FOUND);
        for code in [401, 403, 500, 503, 418] {
            let f = status(code);
            assert_eq!(f.status, StatusCode::BAD_GATEWAY, "{code}");
            assert!(
                !f.reason.contains("--from") && !f.reason.contains("resume"),
                "{f:?}"
            );
            assert!(f.reason.contains(&code.to_string()), "{f:?}");
        }
        assert!(status(401).reason.contains("--upstream"));
        let f = Failure::fetch(&FetchError::Redirect {
            url: url.clone(),
            location: "http://elsewhere/".into(),
        });
        assert!(
            f.reason.contains("--upstream") && !f.reason.contains("--from"),
            "{f:?}"
        );
    }

    #[test]
    fn updated_at_tells_nothing_of_hidden_releases() {
        let release = |version: &str, at: Option<i64>| Release {
            version: version.to_string(),
            parsed: semver::Version::parse(version).unwrap(),
            inner_checksum: [0; 32],
            outer_checksum: [0; 32],
            dependencies: Vec::new(),
            retired: None,
            published_at: at.map(|seconds| Timestamp { seconds, nanos: 0 }),
            advisory_indexes: Vec::new(),
        };
        let shown = [release("1.0.0", Some(100)), release("1.1.0", Some(200))];
        // Nothing hidden: the upstream's.
        assert_eq!(shown_updated_at(900, false, &shown), 900);
        // A release hidden: the latest shown date, never later than the upstream's.
        assert_eq!(shown_updated_at(900, true, &shown), 200);
        assert_eq!(shown_updated_at(150, true, &shown), 150);
        // No date to go by: the upstream's.
        assert_eq!(shown_updated_at(900, true, &[release("1.0.0", None)]), 900);
    }

    #[test]
    fn freshness() {
        let now = Instant::now();
        let ttl = Duration::from_secs(300);
        assert!(!is_fresh(None, now, ttl));
        assert!(is_fresh(Some(now), now, ttl));
        let later = now + Duration::from_secs(301);
        assert!(!is_fresh(Some(now), later, ttl));
        assert!(!is_fresh(Some(now), now, Duration::ZERO));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "m", "5x", "-1", "1.5m", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn cooldown_hides_young_releases_and_shows_undated_ones() {
        let day = Duration::from_secs(86_400);
        let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
        let now = 1_000_000;
        assert!(old_enough(None, day, now));
        assert!(old_enough(at(now - 86_400).as_ref(), day, now));
        assert!(!old_enough(at(now - 86_399).as_ref(), day, now));
        assert!(old_enough(at(now).as_ref(), Duration::ZERO, now));
        // A date in the future is younger than any cooldown.
        assert!(!old_enough(at(now + 10).as_ref(), day, now));
        // Extremes saturate instead of overflowing.
        assert!(old_enough(at(i64::MIN).as_ref(), Duration::MAX, now));
        assert!(!old_enough(at(now).as_ref(), Duration::MAX, now));
    }

    #[test]
    fn dependencies_on_the_upstream_become_the_proxys() {
        let dep = |repository: Option<&str>| Dependency {
            package: "a".into(),
            requirement: "~> 1.0".into(),
            optional: None,
            app: None,
            repository: repository.map(str::to_string),
        };
        let mut deps = vec![dep(Some("hexpm")), dep(Some("acme")), dep(None)];
        local_dependencies(&mut deps, "hexpm");
        let repos: Vec<Option<&str>> = deps.iter().map(|d| d.repository.as_deref()).collect();
        assert_eq!(repos, [None, Some("acme"), None]);
    }

    #[test]
    fn tarballs_are_checked_against_the_signed_release() {
        let bytes = b"not really a tarball";
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let package = Package {
            name: "a".into(),
            repository: "hexpm".into(),
            releases: vec![crate::format::proto::package::Release {
                version: "1.0.0".into(),
                outer_checksum: Some(digest.to_vec()),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(verify_tarball(&package, "1.0.0", bytes).unwrap());
        assert!(!verify_tarball(&package, "2.0.0", bytes).unwrap());
        let e = verify_tarball(&package, "1.0.0", b"tampered").unwrap_err();
        assert!(e.to_string().contains("packages/a records"), "{e}");
    }

    #[test]
    fn failures_are_one_line_with_the_right_status() {
        let timeout = Failure::fetch(&FetchError::Transport {
            url: "http://u/names".into(),
            reason: "operation timed out".into(),
        });
        assert_eq!(timeout.status, StatusCode::GATEWAY_TIMEOUT);
        let down = Failure::fetch(&FetchError::Transport {
            url: "http://u/names".into(),
            reason: "connection refused\nsecond line".into(),
        });
        assert_eq!(down.status, StatusCode::BAD_GATEWAY);
        assert!(!down.reason.contains('\n'));
        let missing = Failure::fetch(&FetchError::Status {
            url: "http://u/packages/x".into(),
            status: 404,
        });
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
}
