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
//! A file that fails verification is neither stored nor served (502, one line saying why; the
//! log names the upstream URL). With the upstream down, what is cached is still served
//! (registry files past their TTL with a warning in the log); what is not gets 502, or 504
//! when the upstream timed out. Concurrent requests for one missing file share one upstream
//! request (single flight); the waiters take the outcome of the request that was running when
//! they arrived. Writes are create-only (tarballs) or replace-if-unchanged (registry files), so
//! two proxies sharing one bucket never overwrite each other's verified files with older ones
//! they did not read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::Source;
use super::respond::{ServeBody, log_line};
use crate::engine::mirror::{FetchError, MAX_RESOURCE_BODY, Upstream, UpstreamResponse};
use crate::format::docs::MAX_DOCS_SIZE;
use crate::format::package_name;
use crate::format::proto::package::Package;
use crate::format::registry::{self, ResourceError};
use crate::format::signing::PublicKey;
use crate::format::tarball::MAX_TARBALL_SIZE;
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
}

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
    /// `docs/NAME-VERSION.tar.gz` or `installs/...`: passed through, not verified.
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
            Kind::PassThrough => MAX_DOCS_SIZE.max(MAX_TARBALL_SIZE),
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
            (package_name::is_valid(name) && !version.is_empty() && !version.contains('/'))
                .then_some(Kind::PassThrough)
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
        Kind::Tarball { .. } | Kind::PassThrough | Kind::PublicKey => Ok(None),
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
            other => Failure::new(StatusCode::BAD_GATEWAY, other.to_string()),
        }
    }

    fn cache(e: &StorageError) -> Failure {
        log_line(&format!("error: proxy cache: {e}"));
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the proxy's cache cannot be used; the server's log says why",
        )
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
        Proxy {
            upstream: config.upstream,
            repo: config.repo,
            key: config.key,
            ttl: config.ttl,
            cache,
            validated: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The upstream's URL, without credentials.
    pub fn upstream(&self) -> &str {
        self.upstream.base()
    }

    /// Makes sure the cache holds a current, verified copy of `rel` (when it is a file the
    /// proxy fetches), so that it can then be served from the cache as any file is.
    pub(crate) async fn prepare(
        self: &Arc<Self>,
        source: &Source,
        rel: &Path,
    ) -> Result<(), Failure> {
        let Some(rel) = rel.to_str() else {
            return Ok(());
        };
        let Some(kind) = classify(rel) else {
            return Ok(());
        };
        if kind == Kind::PublicKey {
            return Ok(());
        }
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
            tokio::task::spawn_blocking(move || proxy.fetch(&path, &kind))
                .await
                .unwrap_or_else(|e| {
                    log_line(&format!("error: proxy fetch of {rel} failed: {e}"));
                    Err(Failure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the proxy failed; the server's log says why",
                    ))
                })
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
            let validated = self
                .validated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(rel)
                .map(|(at, _)| *at);
            return Ok(is_fresh(validated, Instant::now(), self.ttl));
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
                    log_line(&format!(
                        "error: {url} {e}: refused, not cached (the cached copy, if any, is kept)"
                    ));
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
                        "warning: serving the cached {rel} past its TTL: {e}"
                    ));
                    // Ask again after another TTL, not on every request meanwhile.
                    self.mark(rel, None);
                    Ok(object.bytes)
                }
                _ => {
                    log_line(&format!("error: proxy: {e}"));
                    Err(Failure::fetch(&e))
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
                log_line(&format!("error: proxy: {e}"));
                return Err(Failure::fetch(&e));
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
        assert_eq!(classify("docs/jason-1.4.0.tar.gz"), Some(Kind::PassThrough));
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
