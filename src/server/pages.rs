//! The web pages: routing and reading for [`crate::web`], which renders them.
//!
//! `/` is the package list (`?q=` searches names and descriptions), `/-/packages/NAME` a
//! package, `/-/packages/NAME/VERSION` one version (its files and metadata),
//! `/-/docs/NAME/VERSION/PATH` and `/-/docs/NAME/latest/PATH` the files of its docs tarball.
//! Everything is read through the storage (a directory or a bucket) on the blocking pool, at a
//! cost set by what the page shows, not by what the registry holds:
//! - the verified `versions` index and the package list made from it are kept, and checked
//!   against `versions`' version token (one stat) per request: read and verified again only
//!   when it changed;
//! - the list and search (`?q=`, by name) are paged on the server ([`web::PAGE_SIZE`] a page,
//!   `?page=N`) and never read a tarball;
//! - a package or version page reads `packages/NAME` and stats the files it links; what it
//!   shows from a tarball is kept in an LRU ([`DETAILS_CACHE`] entries, least recently used
//!   out, never cleared whole) keyed by the tarball's path and version token;
//! - docs are served by [`super::docs_cache`]: each archive inflated once into a temporary
//!   file and indexed, each member sent from there;
//! - HTML pages carry an ETag (a hash of the page) and answer 304 to a matching
//!   `If-None-Match`.
//!
//! Pages answer GET and HEAD behind the same credentials as the repository's files.

use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode, Uri};
use prost::Message;

use crate::format::registry::{self, Release, SecurityAdvisory};
use crate::format::signing::PublicKey;
use crate::storage::{Entry, Storage, Version};
use crate::web::{self, archive};

use super::State;
use super::docs_cache::DocsCache;
use super::lru::Lru;
use super::respond::{ServeBody, log_line};
use crate::storage::Location;

/// Tarball details kept (one entry per tarball, a few KiB each), least recently used out.
pub const DETAILS_CACHE: usize = 4096;

/// The pages' storage and caches.
pub struct Pages {
    target: Location,
    /// The key the registry is verified with, when the server has it (its signing key).
    public: Option<PublicKey>,
    /// The verified index last read, with the version tokens it was read at.
    index: Mutex<Option<Arc<Index>>>,
    /// A caching proxy's upstream repository name: the list is then what the cache holds.
    proxy: Option<String>,
    /// A caching proxy's list: each cached `packages/NAME`'s item, by name, at the version
    /// token it was read at.
    cached: Mutex<std::collections::HashMap<String, (Version, web::ListItem)>>,
    details: Mutex<Lru<String, (Version, Arc<archive::Details>)>>,
    docs: DocsCache,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// CSP of the pages: no script at all, inline style, forms to this server only.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// CSP of docs: their own scripts, styles, images and fonts only, no requests elsewhere, and
/// sandboxed into an opaque origin so that a docs script cannot read the registry with the
/// visitor's credentials.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'self'; sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox";

/// Whether `path` is a page's: `/` or under `/-/`.
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/-" || path.starts_with(web::PREFIX)
}

impl Pages {
    /// Pages over `target`, verified with `public` when given (else the registry's own
    /// `public_key` file).
    pub fn new(target: Location, public: Option<PublicKey>) -> Pages {
        Pages {
            target,
            public,
            index: Mutex::new(None),
            proxy: None,
            cached: Mutex::new(std::collections::HashMap::new()),
            details: Mutex::new(Lru::new(DETAILS_CACHE)),
            docs: DocsCache::default(),
        }
    }

    /// The pages of a caching proxy of repository `repo`: its list shows the packages its
    /// cache holds (the upstream's `versions` names thousands whose pages it has not fetched).
    pub fn of_proxy(mut self, repo: &str) -> Pages {
        self.proxy = Some(repo.to_string());
        self
    }

    fn storage(&self) -> &dyn Storage {
        self.target.storage()
    }
}

/// What a page request ends in.
enum Page {
    Html(StatusCode, String),
    Redirect(String),
    Docs {
        content_type: &'static str,
        /// The inflated docs tar the member lies in.
        file: Arc<File>,
        offset: u64,
        len: u64,
        /// Strong validator: the docs tarball's version token and the file's path, hashed.
        etag: String,
    },
}

/// Answers a GET or HEAD of a page (credentials already checked).
pub async fn handle(
    state: Arc<State>,
    uri: Uri,
    request: &HeaderMap,
    head: bool,
) -> Response<ServeBody> {
    let joined = tokio::task::spawn_blocking(move || {
        let Some(pages) = &state.pages else {
            return Page::Html(
                StatusCode::NOT_FOUND,
                web::error_page("hexreg", "Not found", "This server has no pages."),
            );
        };
        route(pages, &uri).unwrap_or_else(|e| {
            log_line(&format!("error: page {}: {e:#}", uri.path()));
            Page::Html(
                StatusCode::INTERNAL_SERVER_ERROR,
                web::error_page(
                    "hexreg",
                    "The registry cannot be read",
                    "The server's log says why.",
                ),
            )
        })
    })
    .await;
    let page = joined.unwrap_or_else(|e| {
        log_line(&format!("error: a page request failed: {e}"));
        Page::Html(
            StatusCode::INTERNAL_SERVER_ERROR,
            web::error_page("hexreg", "Internal error", "The server's log says why."),
        )
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let (status, content_type, csp, len, body) = match page {
        Page::Html(status, html) => {
            let etag = page_etag(html.as_bytes());
            if status == StatusCode::OK {
                if let Ok(value) = HeaderValue::from_str(&etag) {
                    headers.insert(header::ETAG, value);
                }
                if super::respond::not_modified(request, &etag, None) {
                    return super::respond::not_modified_response(headers);
                }
            }
            let body = Bytes::from(html);
            (
                status,
                "text/html; charset=utf-8",
                PAGE_CSP,
                body.len() as u64,
                ServeBody::full(body),
            )
        }
        Page::Redirect(location) => {
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, value);
            }
            let body = Bytes::from(format!("moved to {location}\n"));
            (
                StatusCode::MOVED_PERMANENTLY,
                "text/plain; charset=utf-8",
                PAGE_CSP,
                body.len() as u64,
                ServeBody::full(body),
            )
        }
        Page::Docs {
            content_type,
            file,
            offset,
            len,
            etag,
        } => {
            if let Ok(value) = HeaderValue::from_str(&etag) {
                headers.insert(header::ETAG, value);
            }
            if super::respond::not_modified(request, &etag, None) {
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(DOCS_CSP),
                );
                return super::respond::not_modified_response(headers);
            }
            (
                StatusCode::OK,
                content_type,
                DOCS_CSP,
                len,
                ServeBody::file_range(file, offset, len),
            )
        }
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let mut response = Response::new(if head { ServeBody::empty() } else { body });
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The decoded segments of a path under `/-/`; `None` for a malformed escape, a segment
/// holding `/`, `\` or NUL, or one starting with a dot. The last segment may be empty (a
/// trailing `/`).
fn segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix(web::PREFIX)?;
    let raw: Vec<&str> = rest.split('/').collect();
    let mut out = Vec::with_capacity(raw.len());
    for (i, segment) in raw.iter().enumerate() {
        let decoded = crate::format::encoding::percent_decode(segment)?;
        let decoded = String::from_utf8(decoded).ok()?;
        let last = i + 1 == raw.len();
        if (decoded.is_empty() && !last)
            || decoded.starts_with('.')
            || decoded.contains(['/', '\\', '\0'])
        {
            return None;
        }
        out.push(decoded);
    }
    Some(out)
}

fn not_found(repo: &str, message: &str) -> Page {
    Page::Html(
        StatusCode::NOT_FOUND,
        web::error_page(repo, "Not found", message),
    )
}

fn route(pages: &Pages, uri: &Uri) -> Result<Page> {
    let path = uri.path();
    let Some(index) = read_index(pages)? else {
        return Ok(Page::Html(
            if path == "/" {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            },
            web::error_page(
                "hexreg",
                "No registry yet",
                "This repository has no signed index yet: build it with `hexreg build`.",
            ),
        ));
    };
    if path == "/" {
        let query = web::query_value(uri.query(), "q").unwrap_or_default();
        let page = web::query_value(uri.query(), "page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1);
        return Ok(Page::Html(
            StatusCode::OK,
            web::index_page(
                &index.repo,
                &index.items,
                &query,
                page,
                index.note.as_deref(),
            ),
        ));
    }
    let Some(segments) = segments(path) else {
        return Ok(not_found(&index.repo, "There is no page at this address."));
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["packages", name] => package_page(pages, &index, name),
        ["packages", name, version] => version_page(pages, &index, name, version),
        ["docs", name, version] => Ok(Page::Redirect(format!(
            "/-/docs/{}/{}/",
            web::segment(name),
            web::segment(version)
        ))),
        ["docs", name, version, rest @ ..] => docs_file(pages, &index, name, version, rest),
        _ => Ok(not_found(&index.repo, "There is no page at this address.")),
    }
}

/// The verified `versions` index and the package list made of it, with the version tokens of
/// the files it was read from.
struct Index {
    repo: String,
    key: PublicKey,
    /// Every package, sorted by name.
    items: Vec<web::ListItem>,
    /// `versions`' token; `None` for a proxy's list of its cache.
    versions_token: Option<Version>,
    /// `public_key`'s token when the key was read from the registry.
    key_token: Option<Version>,
    /// When a proxy's list was made.
    listed: Option<std::time::Instant>,
    /// Said under the count.
    note: Option<String>,
}

/// The most `packages/NAME` files one refresh of a caching proxy's list reads: a page request
/// costs at most this many reads (and a listing), however large the cache. Packages not read
/// yet are listed by name, and read at the next refreshes.
pub const PROXY_LIST_READS: usize = 256;

/// How long a caching proxy's list of its cache is kept before the cache is listed again.
pub const PROXY_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// A caching proxy's list: the packages its cache holds, listed again at most every
/// [`PROXY_LIST_TTL`], each `packages/NAME` read and verified again only when its version
/// token changed, at most [`PROXY_LIST_READS`] a refresh. A file that does not verify is left
/// out (and logged).
fn read_cached_index(pages: &Pages, repo: &str, key: &PublicKey) -> Result<Arc<Index>> {
    if let Some(kept) = lock(&pages.index).as_ref()
        && kept.listed.is_some_and(|at| at.elapsed() < PROXY_LIST_TTL)
    {
        return Ok(Arc::clone(kept));
    }
    let storage = pages.storage();
    let entries = storage.list("packages")?.unwrap_or_default();
    let mut cached = lock(&pages.cached);
    let mut fresh = std::collections::HashMap::with_capacity(entries.len());
    // Listed by name only, their files not read yet: read at a later refresh.
    let mut unread = Vec::new();
    let mut budget = PROXY_LIST_READS;
    for entry in entries {
        let name = entry
            .name
            .rsplit('/')
            .next()
            .unwrap_or(&entry.name)
            .to_string();
        if !entry.regular || !crate::format::package_name::is_valid(&name) {
            continue;
        }
        if let Some((version, item)) = cached.remove(&name)
            && version == entry.version
        {
            fresh.insert(name, (version, item));
            continue;
        }
        if budget == 0 {
            unread.push(web::ListItem {
                name,
                latest: None,
                all_retired: false,
                advisories: false,
            });
            continue;
        }
        budget -= 1;
        let path = format!("packages/{name}");
        let Some(object) = storage.read(&path)? else {
            continue;
        };
        match registry::open_package(&object.bytes, key, repo, &name) {
            Ok(package) => {
                let item = cached_item(&name, &package);
                fresh.insert(name, (object.version, item));
            }
            Err(e) => log_line(&format!(
                "error: {} {e}: left out of the list",
                storage.display(&path)
            )),
        }
    }
    let mut items: Vec<web::ListItem> = fresh.values().map(|(_, item)| item.clone()).collect();
    items.extend(unread);
    items.sort_by(|a, b| a.name.cmp(&b.name));
    *cached = fresh;
    drop(cached);
    let note = if items.is_empty() {
        "Nothing is cached yet: a package appears here once a client fetches it through this proxy."
    } else {
        "The packages this proxy has cached: others appear once a client fetches them through it."
    };
    let index = Arc::new(Index {
        repo: repo.to_string(),
        key: key.clone(),
        items,
        versions_token: None,
        key_token: None,
        listed: Some(std::time::Instant::now()),
        note: Some(note.to_string()),
    });
    *lock(&pages.index) = Some(Arc::clone(&index));
    Ok(index)
}

/// A cached `packages/NAME` as the list shows it.
fn cached_item(name: &str, package: &crate::format::proto::package::Package) -> web::ListItem {
    let versions = crate::format::proto::versions::Package {
        name: name.to_string(),
        versions: package.releases.iter().map(|r| r.version.clone()).collect(),
        retired: package
            .releases
            .iter()
            .enumerate()
            .filter(|(_, r)| r.retired.is_some())
            .filter_map(|(i, _)| i32::try_from(i).ok())
            .collect(),
        with_advisories: package
            .releases
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.advisory_indexes.is_empty())
            .filter_map(|(i, _)| i32::try_from(i).ok())
            .collect(),
    };
    list_item(&versions)
}

/// The verified `versions` index: the one kept while `versions` (and `public_key`, when the
/// key is the registry's) keep their version tokens, else read and verified again; `None` when
/// the registry has none yet.
fn read_index(pages: &Pages) -> Result<Option<Arc<Index>>> {
    if let (Some(repo), Some(key)) = (&pages.proxy, &pages.public) {
        return read_cached_index(pages, repo, key).map(Some);
    }
    let storage = pages.storage();
    let key_token = match &pages.public {
        Some(_) => None,
        None => match storage.stat("public_key")? {
            Some(entry) => Some(entry.version),
            None => return Ok(None),
        },
    };
    let Some(versions) = storage.stat("versions")? else {
        return Ok(None);
    };
    if let Some(kept) = lock(&pages.index).as_ref()
        && kept.versions_token.as_ref() == Some(&versions.version)
        && kept.key_token == key_token
    {
        return Ok(Some(Arc::clone(kept)));
    }
    let (key, key_token) = match &pages.public {
        Some(key) => (key.clone(), None),
        None => {
            let Some(object) = storage.read("public_key")? else {
                return Ok(None);
            };
            let key = PublicKey::from_pem(&object.bytes)
                .map_err(|e| anyhow!("{} {e}", storage.display("public_key")))?;
            (key, Some(object.version))
        }
    };
    let Some(object) = storage.read("versions")? else {
        return Ok(None);
    };
    let shown = storage.display("versions");
    let opened = registry::open(&object.bytes)
        .and_then(|opened| opened.verify(&key).map(|()| opened))
        .map_err(|e| anyhow!("{shown} {e}"))?;
    let versions = crate::format::proto::versions::Versions::decode(opened.payload.as_slice())
        .with_context(|| format!("{shown} is not a Versions message"))?;
    let mut items: Vec<web::ListItem> = versions.packages.iter().map(list_item).collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    let index = Arc::new(Index {
        repo: versions.repository,
        key,
        items,
        versions_token: Some(object.version),
        key_token,
        listed: None,
        note: None,
    });
    *lock(&pages.index) = Some(Arc::clone(&index));
    Ok(Some(index))
}

/// A package of `versions` as the list shows it: its newest version not retired (else its
/// newest), whether all are retired, whether it has advisories.
fn list_item(package: &crate::format::proto::versions::Package) -> web::ListItem {
    let mut versions: Vec<(usize, semver::Version)> = package
        .versions
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some((i, crate::format::version::parse(v).ok()?)))
        .collect();
    versions.sort_by(|a, b| crate::format::version::compare(&b.1, &a.1));
    let retired = |i: usize| package.retired.iter().any(|r| usize::try_from(*r) == Ok(i));
    let latest = versions
        .iter()
        .find(|(i, _)| !retired(*i))
        .or_else(|| versions.first())
        .and_then(|(i, _)| package.versions.get(*i).cloned());
    web::ListItem {
        name: package.name.clone(),
        latest,
        all_retired: !package.versions.is_empty() && (0..package.versions.len()).all(retired),
        advisories: !package.with_advisories.is_empty(),
    }
}

/// The listing entry of one regular file of the registry; `None` when there is none.
fn stat(pages: &Pages, path: &str) -> Result<Option<Entry>> {
    Ok(pages.storage().stat(path)?.filter(|e| e.regular))
}

/// The details of tarball `file` (in `tarballs/`), at `entry`'s version: from the cache, or
/// read and kept.
fn details(pages: &Pages, file: &str, entry: &Entry) -> Result<Arc<archive::Details>, String> {
    let path = format!("tarballs/{file}");
    if let Some((version, details)) = lock(&pages.details).get(&path)
        && version == entry.version
    {
        return Ok(details);
    }
    let object = match pages.storage().read(&path) {
        Ok(Some(object)) => object,
        Ok(None) => return Err("the tarball is missing".into()),
        Err(e) => {
            log_line(&format!("error: {e}"));
            return Err("the tarball cannot be read (the server's log says why)".into());
        }
    };
    let details = Arc::new(archive::details(&object.bytes).map_err(|e| format!("it {e}"))?);
    lock(&pages.details).insert(path, (object.version, Arc::clone(&details)));
    Ok(details)
}

/// The details of `name`'s tarball at `version`, or why they cannot be shown.
fn tarball_details(
    pages: &Pages,
    name: &str,
    version: &str,
) -> Result<Result<Arc<archive::Details>, String>> {
    let file = format!("{name}-{version}.tar");
    Ok(match stat(pages, &format!("tarballs/{file}"))? {
        Some(entry) => details(pages, &file, &entry),
        None => Err("the tarball is missing".to_string()),
    })
}

/// Whether release `version` of `name` has docs.
fn has_docs(pages: &Pages, name: &str, version: &str) -> Result<bool> {
    Ok(stat(pages, &format!("docs/{name}-{version}.tar.gz"))?.is_some())
}

/// A package's releases, newest first, and advisories; `None` when there is no such package.
fn releases(
    pages: &Pages,
    index: &Index,
    name: &str,
) -> Result<Option<(Vec<Release>, Vec<SecurityAdvisory>)>> {
    if !crate::format::package_name::is_valid(name) {
        return Ok(None);
    }
    let Some(crate::engine::PackageRecord {
        mut releases,
        advisories,
    }) = crate::engine::Reader::new(pages.storage(), &index.repo, &index.key)
        .package_record(name)?
    else {
        return Ok(None);
    };
    releases.reverse();
    Ok(Some((releases, advisories)))
}

fn package_page(pages: &Pages, index: &Index, name: &str) -> Result<Page> {
    let Some((releases, advisories)) = releases(pages, index, name)? else {
        return Ok(not_found(&index.repo, "There is no such package."));
    };
    let mut with_docs = std::collections::HashSet::new();
    for release in &releases {
        if has_docs(pages, name, &release.version)? {
            with_docs.insert(release.version.clone());
        }
    }
    let latest = web::latest(&releases);
    let latest_details = match latest {
        Some(release) => tarball_details(pages, name, &release.version)?
            .ok()
            .map(|details| (release, details)),
        None => None,
    };
    let has_docs = |version: &str| with_docs.contains(version);
    let view = web::PackageView {
        repo: &index.repo,
        name,
        releases: &releases,
        advisories: &advisories,
        latest: latest_details.as_ref().map(|(r, d)| (*r, d.as_ref())),
        has_docs: &has_docs,
    };
    Ok(Page::Html(StatusCode::OK, web::package_page(&view)))
}

fn version_page(pages: &Pages, index: &Index, name: &str, version: &str) -> Result<Page> {
    let Some((releases, advisories)) = releases(pages, index, name)? else {
        return Ok(not_found(&index.repo, "There is no such package."));
    };
    let Some(release) = releases.iter().find(|r| r.version == version) else {
        return Ok(not_found(&index.repo, "The package has no such version."));
    };
    let details = tarball_details(pages, name, &release.version)?;
    let view = web::VersionView {
        repo: &index.repo,
        name,
        release,
        advisories: &advisories,
        details: details.as_deref().map_err(Clone::clone),
        has_docs: has_docs(pages, name, &release.version)?,
    };
    Ok(Page::Html(StatusCode::OK, web::version_page(&view)))
}

/// A file of the docs of `name` at `version` (or the latest version not retired).
fn docs_file(
    pages: &Pages,
    index: &Index,
    name: &str,
    version: &str,
    rest: &[&str],
) -> Result<Page> {
    let Some((releases, _)) = releases(pages, index, name)? else {
        return Ok(not_found(&index.repo, "There is no such package."));
    };
    let release = if version == "latest" {
        web::latest(&releases)
    } else {
        releases.iter().find(|r| r.version == version)
    };
    let Some(release) = release else {
        return Ok(not_found(&index.repo, "The package has no such version."));
    };
    let path = format!("docs/{name}-{}.tar.gz", release.version);
    let Some(entry) = stat(pages, &path)? else {
        return Ok(not_found(&index.repo, "This version has no docs."));
    };
    let archive = match pages
        .docs
        .get(pages.storage(), &path, &entry.version, entry.size)?
    {
        Ok(archive) => archive,
        Err(e) => {
            log_line(&format!("error: {} {e}", pages.storage().display(&path)));
            return Ok(not_found(
                &index.repo,
                "The docs of this version cannot be read.",
            ));
        }
    };
    let inner = rest.join("/");
    match archive.index.get(&inner) {
        Some((found, offset, len)) => Ok(Page::Docs {
            content_type: archive::content_type(found),
            file: Arc::clone(&archive.file),
            offset,
            len,
            etag: docs_etag(&entry.version, found),
        }),
        None if archive.index.is_dir_with_index(&inner) => Ok(Page::Redirect(format!(
            "/-/docs/{}/{}/{}/",
            web::segment(name),
            web::segment(version),
            rest.iter()
                .map(|s| web::segment(s))
                .collect::<Vec<_>>()
                .join("/")
        ))),
        None => Ok(not_found(&index.repo, "The docs hold no such file.")),
    }
}

/// `"HEX"`: sha256 of the docs tarball's version token and the file's path, cut to 128 bits.
fn docs_etag(version: &Version, path: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(&version.0);
    hash.update([0]);
    hash.update(path.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// `"p-HEX"`: sha256 of an HTML page, cut to 128 bits (the page is made from the registry's
/// files, so a change of any of them that shows changes it).
fn page_etag(html: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(html);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"p-{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy's list reads at most [`PROXY_LIST_READS`] package files a refresh, however many
    /// are cached: the rest are listed by name and read at the next refreshes.
    #[test]
    fn a_proxy_list_reads_a_bounded_number_of_files_a_refresh() {
        use crate::format::signing::PrivateKey;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let packages = root.join("packages");
        std::fs::create_dir_all(&packages).unwrap();
        let key = PrivateKey::from_pem(PrivateKey::generate_pem(2048).unwrap().as_bytes()).unwrap();
        let count = PROXY_LIST_READS + 44;
        let release = registry::Release {
            version: "1.0.0".into(),
            parsed: semver::Version::new(1, 0, 0),
            inner_checksum: [1; 32],
            outer_checksum: [2; 32],
            dependencies: Vec::new(),
            retired: None,
            published_at: None,
            advisory_indexes: Vec::new(),
        };
        for i in 0..count {
            let name = format!("p{i:04}");
            let payload =
                registry::package_payload("hexpm", &name, std::slice::from_ref(&release), &[]);
            std::fs::write(
                packages.join(&name),
                registry::seal(&payload, &key).unwrap(),
            )
            .unwrap();
        }
        let location =
            Location::Local(crate::storage::local::LocalDir::new(root.to_str().unwrap()));
        let pages = Pages::new(location, Some(key.public_key())).of_proxy("hexpm");
        let versions = |index: &Index| index.items.iter().filter(|i| i.latest.is_some()).count();
        let first = read_cached_index(&pages, "hexpm", &key.public_key()).unwrap();
        assert_eq!(first.items.len(), count, "every cached package is listed");
        assert_eq!(versions(&first), PROXY_LIST_READS, "at most this many read");
        // The next refresh (the kept list dropped, as its TTL would) reads the rest.
        *lock(&pages.index) = None;
        let second = read_cached_index(&pages, "hexpm", &key.public_key()).unwrap();
        assert_eq!(versions(&second), count);
    }

    #[test]
    fn page_paths() {
        assert!(is_page("/"));
        assert!(is_page("/-/packages/a"));
        assert!(!is_page("/names"));
        assert!(!is_page("/packages/a"));
        assert!(!is_page("/api/packages/a"));
        assert_eq!(
            segments("/-/docs/a/1.0.0/"),
            Some(vec![
                "docs".into(),
                "a".into(),
                "1.0.0".into(),
                String::new()
            ])
        );
        assert_eq!(
            segments("/-/docs/a/1.0.0/x%20y.html"),
            Some(vec![
                "docs".into(),
                "a".into(),
                "1.0.0".into(),
                "x y.html".into()
            ])
        );
        for refused in [
            "/-/docs/a/1.0.0/../../names",
            "/-/docs/a/1.0.0/%2e%2e/x",
            "/-/docs/a/1.0.0/a%2fb",
            "/-/docs/a//x",
            "/-/docs/a/1.0.0/.hidden",
            "/-/docs/a/1.0.0/%zz",
            "/-/docs/a/1.0.0/a%00",
        ] {
            assert_eq!(segments(refused), None, "{refused}");
        }
    }
}
