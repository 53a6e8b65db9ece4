//! The web pages: routing and reading for [`crate::web`], which renders them.
//!
//! `/` is the package list (`?q=` searches names and descriptions), `/-/packages/NAME` a
//! package, `/-/packages/NAME/VERSION` one version (its files and metadata),
//! `/-/docs/NAME/VERSION/PATH` and `/-/docs/NAME/latest/PATH` the files of its docs tarball.
//! Everything is read through the storage (a directory or a bucket) on the blocking pool: the
//! `versions` index (which names every package) and `packages/NAME`, verified with the
//! registry's public key,
//! and the tarballs, whose details are kept in memory keyed by their version token, so a page
//! reads a tarball again only when it changed. Docs tarballs are read whole into memory (never
//! unpacked to disk), a few kept. Pages answer GET and HEAD behind the same credentials as
//! the repository's files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
use super::respond::{ServeBody, log_line};
use crate::storage::Location;

/// Tarball details kept (one entry per tarball, a few KiB each).
const DETAILS_CACHE: usize = 4096;
/// Inflated docs kept in memory, in bytes (an archive larger than this is read per request).
const DOCS_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The pages' storage and caches.
pub struct Pages {
    target: Location,
    /// The key the registry is verified with, when the server has it (its signing key).
    public: Option<PublicKey>,
    details: Mutex<HashMap<String, (Version, Arc<archive::Details>)>>,
    docs: Mutex<Vec<(String, Version, Arc<archive::DocsArchive>)>>,
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
            details: Mutex::new(HashMap::new()),
            docs: Mutex::new(Vec::new()),
        }
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
        bytes: Bytes,
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
    let (status, content_type, csp, body) = match page {
        Page::Html(status, html) => (
            status,
            "text/html; charset=utf-8",
            PAGE_CSP,
            Bytes::from(html),
        ),
        Page::Redirect(location) => {
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, value);
            }
            (
                StatusCode::MOVED_PERMANENTLY,
                "text/plain; charset=utf-8",
                PAGE_CSP,
                Bytes::from(format!("moved to {location}\n")),
            )
        }
        Page::Docs {
            content_type,
            bytes,
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
            (StatusCode::OK, content_type, DOCS_CSP, bytes)
        }
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut response = Response::new(if head {
        ServeBody::empty()
    } else {
        ServeBody::full(body)
    });
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
        return index_page(pages, &index, &query);
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

/// The verified `versions` index.
struct Index {
    repo: String,
    key: PublicKey,
    packages: Vec<crate::format::proto::versions::Package>,
}

/// Reads and verifies `versions`; `None` when the registry has none yet.
fn read_index(pages: &Pages) -> Result<Option<Index>> {
    let storage = pages.storage();
    let key = match &pages.public {
        Some(key) => key.clone(),
        None => {
            let Some(object) = storage.read("public_key")? else {
                return Ok(None);
            };
            PublicKey::from_pem(&object.bytes)
                .map_err(|e| anyhow!("{} {e}", storage.display("public_key")))?
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
    Ok(Some(Index {
        repo: versions.repository,
        key,
        packages: versions.packages,
    }))
}

/// The files of a directory of the registry by name (none when it does not exist).
fn listing(storage: &dyn Storage, dir: &str) -> Result<HashMap<String, Entry>> {
    Ok(storage
        .list(dir)?
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regular)
        .map(|e| (e.name.clone(), e))
        .collect())
}

/// The details of tarball `file` (in `tarballs/`), at `entry`'s version: from the cache, or
/// read and kept.
fn details(pages: &Pages, file: &str, entry: &Entry) -> Result<Arc<archive::Details>, String> {
    let path = format!("tarballs/{file}");
    if let Ok(cache) = pages.details.lock()
        && let Some((version, details)) = cache.get(&path)
        && *version == entry.version
    {
        return Ok(Arc::clone(details));
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
    if let Ok(mut cache) = pages.details.lock() {
        if cache.len() >= DETAILS_CACHE {
            cache.clear();
        }
        cache.insert(path, (object.version, Arc::clone(&details)));
    }
    Ok(details)
}

fn index_page(pages: &Pages, index: &Index, query: &str) -> Result<Page> {
    let tarballs = listing(pages.storage(), "tarballs")?;
    let mut items = Vec::with_capacity(index.packages.len());
    for package in &index.packages {
        // The newest version not retired, else the newest.
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
        let description = latest.as_ref().and_then(|v| {
            let file = format!("{}-{v}.tar", package.name);
            let entry = tarballs.get(&file)?;
            details(pages, &file, entry).ok()?.description.clone()
        });
        items.push(web::ListItem {
            name: package.name.clone(),
            latest,
            description,
            all_retired: !package.versions.is_empty() && (0..package.versions.len()).all(retired),
            advisories: !package.with_advisories.is_empty(),
        });
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Page::Html(
        StatusCode::OK,
        web::index_page(&index.repo, &items, query),
    ))
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
    let docs = listing(pages.storage(), "docs")?;
    let tarballs = listing(pages.storage(), "tarballs")?;
    let latest = web::latest(&releases);
    let latest_details = latest.and_then(|release| {
        let file = format!("{name}-{}.tar", release.version);
        let details = details(pages, &file, tarballs.get(&file)?).ok()?;
        Some((release, details))
    });
    let has_docs = |version: &str| docs.contains_key(&format!("{name}-{version}.tar.gz"));
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
    let file = format!("{name}-{}.tar", release.version);
    let tarballs = listing(pages.storage(), "tarballs")?;
    let details = match tarballs.get(&file) {
        Some(entry) => details(pages, &file, entry),
        None => Err("the tarball is missing".to_string()),
    };
    let has_docs = pages
        .storage()
        .list("docs")?
        .unwrap_or_default()
        .iter()
        .any(|e| e.name == format!("{file}.gz"));
    let view = web::VersionView {
        repo: &index.repo,
        name,
        release,
        advisories: &advisories,
        details: details.as_deref().map_err(Clone::clone),
        has_docs,
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
    let docs = listing(pages.storage(), "docs")?;
    let Some(entry) = docs.get(&format!("{name}-{}.tar.gz", release.version)) else {
        return Ok(not_found(&index.repo, "This version has no docs."));
    };
    let archive = docs_archive(pages, &path, entry)?;
    let Some(archive) = archive else {
        return Ok(not_found(
            &index.repo,
            "The docs of this version cannot be read.",
        ));
    };
    let inner = rest.join("/");
    match archive.get(&inner) {
        Some((found, bytes)) => Ok(Page::Docs {
            content_type: archive::content_type(found),
            bytes: Bytes::copy_from_slice(bytes),
            etag: docs_etag(&entry.version, found),
        }),
        None if archive.is_dir_with_index(&inner) => Ok(Page::Redirect(format!(
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

/// The docs tarball at `path`, at `entry`'s version, from the cache or read; `None` when it
/// is not a docs tarball.
fn docs_archive(
    pages: &Pages,
    path: &str,
    entry: &Entry,
) -> Result<Option<Arc<archive::DocsArchive>>> {
    if let Ok(mut cache) = pages.docs.lock()
        && let Some(at) = cache
            .iter()
            .position(|(p, v, _)| p == path && *v == entry.version)
    {
        // Most recently used last.
        let hit = cache.remove(at);
        let archive = Arc::clone(&hit.2);
        cache.push(hit);
        return Ok(Some(archive));
    }
    let Some(object) = pages.storage().read(path)? else {
        return Ok(None);
    };
    let archive = match archive::DocsArchive::read(&object.bytes) {
        Ok(archive) => Arc::new(archive),
        Err(e) => {
            log_line(&format!("error: {} {e}", pages.storage().display(path)));
            return Ok(None);
        }
    };
    if archive.size() <= DOCS_CACHE_BYTES
        && let Ok(mut cache) = pages.docs.lock()
    {
        cache.retain(|(p, _, _)| p != path);
        cache.push((path.to_string(), object.version, Arc::clone(&archive)));
        while cache.iter().map(|(_, _, a)| a.size()).sum::<usize>() > DOCS_CACHE_BYTES {
            cache.remove(0);
        }
    }
    Ok(Some(archive))
}

#[cfg(test)]
mod tests {
    use super::*;

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
