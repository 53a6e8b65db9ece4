//! The Hex HTTP API under `/api`: authentication by API key, request bodies read within limits,
//! and every registry operation run by the engine on the blocking pool. Routes, bodies and
//! response terms come from [`crate::api`]; this file is the HTTP around them.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::api::answer::{self, Answer};
use crate::api::window::ReplaceWindow;
use crate::api::{self, Format, Route, RouteError, Urls};
use crate::engine::audit::{self, Action};
use crate::engine::{self, NewTarball, Registry, Signer};
use crate::format::encoding::hex_upper;
use crate::format::registry::Release;
use crate::format::resource_path::ResourcePath;
use crate::format::signing::PublicKey;
use crate::format::tarball::MAX_TARBALL_SIZE;
use crate::keys::{KeyStore, Permission};
use crate::storage::Location;

use super::State;
use super::respond::{ServeBody, log_line};

/// A client must send the whole of a request body within this many times the idle timeout
/// (`--body-timeout`, the longest pause allowed between two pieces).
const BODY_TIMEOUT_FACTOR: u32 = 10;

/// What the API needs: the registry, its keys, and who may do what.
pub struct Api {
    /// The registry: a directory or a bucket.
    pub storage: Location,
    /// The repository name.
    pub repo: String,
    /// Signs changes; `None`: the API is read-only.
    pub signer: Option<Signer>,
    /// Verifies what is read (the signer's public half, or PUBLIC_DIR/public_key).
    pub public: Option<PublicKey>,
    /// The API keys; `None`: no key is valid.
    pub keys: Option<KeyStore>,
    /// Anyone may fetch the repository's files (the API still needs a key).
    pub public_reads: bool,
    /// The longest pause allowed while a client sends a body.
    pub body_idle_timeout: Duration,
    /// Date releases as they are published (`--published-at`).
    pub release_dates: bool,
    /// Signs OAuth tokens (shared through the registry's storage); `None`: no tokens.
    pub token_secret: Option<Vec<u8>>,
    /// What the package search knows of each package's record.
    pub search: super::search::SearchCache,
    /// How long after publication a release may be replaced or reverted.
    pub replace_window: ReplaceWindow,
    /// How long a change waits for the registry's lock before 503.
    pub lock_timeout: Duration,
}

/// The client's address, put in each request's extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The label of the key a request was made with, put in the response's extensions for the
/// access log.
#[derive(Debug, Clone)]
pub struct KeyLabel(pub String);

/// Who makes a change, for the audit trail.
#[derive(Debug, Clone)]
struct Who {
    label: String,
    peer: String,
}

/// Answers an `/api` request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ServeBody> {
    let format = Format::from_accept(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let (answer, label) = answer(&state, req).await;
    let mut response = match &answer.body {
        Some(term) => {
            let mut r = Response::new(ServeBody::full(Bytes::from(format.encode(term))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        }
        None => Response::new(ServeBody::empty()),
    };
    *response.status_mut() = answer.status;
    if answer.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hexreg\""),
        );
    }
    if let Some(allow) = answer.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(location) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(secs) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(label) = label {
        response.extensions_mut().insert(KeyLabel(label));
    }
    response
}

/// The answer, and the label of the key that was accepted (if one was).
async fn answer(state: &Arc<State>, req: Request<Incoming>) -> (Answer, Option<String>) {
    let mut label = None;
    let answer = answer_with(state, req, &mut label).await;
    (answer, label)
}

async fn answer_with(
    state: &Arc<State>,
    req: Request<Incoming>,
    label: &mut Option<String>,
) -> Answer {
    let Some(api) = &state.api else {
        return Answer::error(
            StatusCode::NOT_FOUND,
            "this server has no API: start hexreg serve with --name and --keys",
        );
    };
    let route = match api::route(
        req.method().as_str(),
        req.uri().path(),
        req.uri().query(),
        &api.repo,
    ) {
        Ok(route) => route,
        Err(RouteError::NotFound) => return Answer::error(StatusCode::NOT_FOUND, "not found"),
        Err(RouteError::BadRequest(why)) => return Answer::error(StatusCode::BAD_REQUEST, &why),
        Err(RouteError::MethodNotAllowed(allowed)) => {
            let mut answer = Answer::error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("this path takes {allowed}"),
            );
            answer.allow = Some(allowed);
            return answer;
        }
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let urls = Urls {
        api: format!("http://{host}/api"),
        repo: format!("http://{host}"),
    };
    match route {
        // The exchange authenticates by its body; a short URL needs no key (as hex.pm).
        Route::OAuthToken => {
            return match read_body(req, 64 * 1024, api.body_idle_timeout).await {
                Ok(body) => super::oauth::exchange(api, &body),
                Err(answer) => answer,
            };
        }
        Route::ShortUrl => {
            return match read_body(req, 64 * 1024, api.body_idle_timeout).await {
                Ok(body) => answer::short_url(&body),
                Err(answer) => answer,
            };
        }
        _ => {}
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(why) = api.keys.as_ref().and_then(KeyStore::broken) {
        return answer::keys_broken(&why);
    }
    let grant = presented.and_then(|p| super::oauth::authenticate(api, p));
    let Some(grant) = grant else {
        return Answer::error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid API key: send a key made with `hexreg key add` (HEX_API_KEY for mix, api_key for rebar3)",
        );
    };
    *label = Some(grant.label.clone());
    if route.writes() {
        if !grant.permission.allows(Permission::Write) {
            return Answer::error(
                StatusCode::FORBIDDEN,
                &format!(
                    "key `{}` may only read: publishing, retiring, reverting and docs need a key made with `hexreg key add --write`",
                    grant.label
                ),
            );
        }
        if api.signer.is_none() {
            return Answer::error(
                StatusCode::FORBIDDEN,
                if state.proxy.is_some() {
                    "this server is a caching proxy of another repository, whose files it serves unchanged: publish there, or to a private repository served beside it"
                } else {
                    "this server is read-only: start hexreg serve with --private-key to accept changes"
                },
            );
        }
        if let Some(refused) = route.package().and_then(|name| out_of_scope(&grant, name)) {
            return refused;
        }
    }
    let who = Who {
        label: grant.label.clone(),
        peer: req
            .extensions()
            .get::<Peer>()
            .map(|p| p.0.to_string())
            .unwrap_or_default(),
    };
    match route {
        Route::OAuthToken | Route::ShortUrl => Answer::error(StatusCode::NOT_FOUND, "not found"),
        Route::Search { query } => super::search::answer(api, query.as_deref(), &urls).await,
        Route::Me => Answer::new(StatusCode::OK, api::me_body(&grant.label)),
        Route::Package { name } => read_package(state, api, &name, None, &urls).await,
        Route::Release { name, version } => {
            read_package(state, api, &name, Some(version), &urls).await
        }
        Route::Publish { replace, package } => {
            let answer = publish_route(state, api, req, replace, package, &grant, urls, who).await;
            if answer.status.is_success() {
                super::metrics::PUBLISHES.inc();
            } else {
                super::metrics::PUBLISH_FAILURES.inc();
            }
            answer
        }
        Route::Revert { name, version } => {
            run(state, move |api, registry| {
                let before = match registry_release(api, registry, &name, &version)? {
                    Some(release) => {
                        if let Some(refused) = outside_window(api, registry, &name, &release)? {
                            return Ok(refused);
                        }
                        hex_upper(&release.outer_checksum)
                    }
                    None => String::new(),
                };
                registry.remove(&name, Some(&version))?;
                audit::forget_first_indexed(registry.storage(), &name, &version)?;
                record(registry, &who, Action::Revert, &name, &version, &before, "")?;
                Ok(Answer::empty(StatusCode::NO_CONTENT))
            })
            .await
        }
        Route::Retire { name, version } => {
            let body = match read_body(req, 64 * 1024, api.body_idle_timeout).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let retirement = match api::parse_retirement(&body) {
                Ok(retirement) => retirement,
                Err(e) => return Answer::error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
            };
            run(state, move |_, registry| {
                registry.retire(&name, &version, retirement)?;
                record(registry, &who, Action::Retire, &name, &version, "", "")?;
                Ok(Answer::empty(StatusCode::NO_CONTENT))
            })
            .await
        }
        Route::Unretire { name, version } => {
            run(state, move |_, registry| {
                registry.unretire(&name, &version)?;
                record(registry, &who, Action::Unretire, &name, &version, "", "")?;
                Ok(Answer::empty(StatusCode::NO_CONTENT))
            })
            .await
        }
        Route::PublishDocs { name, version } => {
            let body = match read_body(
                req,
                crate::format::docs::MAX_DOCS_SIZE,
                api.body_idle_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let location = format!("{}/docs/{name}-{version}.tar.gz", urls.repo);
            run(state, move |_, registry| {
                registry.put_docs(&name, &version, &body)?;
                record(registry, &who, Action::DocsPublish, &name, &version, "", "")?;
                let mut answer = Answer::empty(StatusCode::CREATED);
                answer.location = Some(location);
                Ok(answer)
            })
            .await
        }
        Route::RemoveDocs { name, version } => {
            run(state, move |_, registry| {
                if registry.remove_docs(&name, &version)? {
                    record(registry, &who, Action::DocsRemove, &name, &version, "", "")?;
                    Ok(Answer::empty(StatusCode::NO_CONTENT))
                } else {
                    Ok(Answer::error(
                        StatusCode::NOT_FOUND,
                        &format!("{name} {version} has no docs"),
                    ))
                }
            })
            .await
        }
    }
}

/// On a caching proxy, fetches or revalidates `packages/NAME` from the upstream first, as a
/// client's request for the file would, so that the API describes what the upstream has;
/// `Some` answer when that failed (an upstream without the package is left to the read: 404).
async fn through_proxy(state: &Arc<State>, name: &str) -> Option<Answer> {
    let proxy = state.proxy.as_ref()?;
    let rel = std::path::PathBuf::from(format!("packages/{name}"));
    match proxy.prepare(&state.source, &rel).await {
        Ok(_) => None,
        Err(failure) if failure.status() == StatusCode::NOT_FOUND => None,
        Err(failure) => Some(Answer::error(failure.status(), failure.reason())),
    }
}

/// `GET /api/packages/NAME[/releases/VERSION]`.
async fn read_package(
    state: &Arc<State>,
    api: &Api,
    name: &str,
    version: Option<String>,
    urls: &Urls,
) -> Answer {
    if let Some(failed) = through_proxy(state, name).await {
        return failed;
    }
    let Some(public) = &api.public else {
        return Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the registry has no public_key to verify it with: build it with `hexreg build`",
        );
    };
    // On a bucket the read blocks on the storage's runtime: not on an async worker.
    let read = || {
        let reader = engine::Reader::new(api.storage.storage(), &api.repo, public);
        Ok::<_, engine::Error>(match reader.package(name)? {
            Some(releases) => Some((releases, reader.package_info(name)?)),
            None => None,
        })
    };
    let read = match &api.storage {
        Location::Local(_) => read(),
        Location::Object(_) => tokio::task::block_in_place(read),
    };
    let (releases, info) = match read {
        Ok(Some(read)) => read,
        Ok(None) => return Answer::error(StatusCode::NOT_FOUND, &format!("no package `{name}`")),
        Err(e) => return engine_error(api, e),
    };
    match version {
        None => Answer::new(
            StatusCode::OK,
            api::package_body(name, &api.repo, &releases, &info, urls),
        ),
        Some(version) => match releases.iter().find(|r| r.version == version) {
            Some(release) => Answer::new(
                StatusCode::OK,
                api::release_body(
                    name,
                    release,
                    info.release(&release.version)
                        .filter(|i| i.outer_checksum == release.outer_checksum),
                    urls,
                    &api.repo,
                ),
            ),
            None => Answer::error(
                StatusCode::NOT_FOUND,
                &format!("package `{name}` has no version `{version}`"),
            ),
        },
    }
}

/// `POST /api/publish` and `POST /api/packages/NAME/releases`: reads, validates and publishes
/// the uploaded tarball, which must be a release of the package the URL names (if any) and
/// within the key's scope.
#[allow(clippy::too_many_arguments)]
async fn publish_route(
    state: &Arc<State>,
    api: &Api,
    req: Request<Incoming>,
    replace: bool,
    package: Option<String>,
    grant: &crate::keys::Grant,
    urls: Urls,
    who: Who,
) -> Answer {
    let body = match read_body(req, MAX_TARBALL_SIZE, api.body_idle_timeout).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    // Validation (inflating and checking the tarball) runs before the lock is taken, so
    // concurrent publishes wait only for each other's writes.
    let repo = api.repo.clone();
    let validated = tokio::task::spawn_blocking(move || {
        NewTarball::validate("the uploaded tarball", body, &repo)
    })
    .await;
    let mut new = match validated {
        Ok(Ok(new)) => new,
        Ok(Err(problem)) => return answer::invalid_upload(&problem),
        Err(e) => {
            log_line(&format!("error: validating an upload failed: {e}"));
            return Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    if let Some(url_name) = package
        && url_name != new.name
    {
        return answer::wrong_package(&url_name, &new.name);
    }
    if let Some(refused) = out_of_scope(grant, &new.name) {
        return refused;
    }
    // The record names the key that published the release.
    if let Some(info) = &mut new.info {
        info.publisher = Some(grant.label.clone());
    }
    run(state, move |api, registry| {
        publish(api, registry, new, replace, &urls, &who)
    })
    .await
}

/// Publishes a validated tarball: an `add` through the engine, 201 for a new release, 200 for a
/// replaced one or for the same bytes again (a client's retry after a timeout), 422 for other
/// bytes of a release that exists without `replace`, or past the replace window. A release
/// exists once the index lists it: one that only `packages/NAME` records is a publish cut short
/// (the server was killed before it wrote `names` and `versions`), which the client's retry
/// completes (201).
fn publish(
    api: &Api,
    registry: &mut Registry,
    new: NewTarball,
    replace: bool,
    urls: &Urls,
    who: &Who,
) -> Result<Answer, engine::Error> {
    let (name, version) = (new.name.clone(), new.release.version.clone());
    let recorded = registry_release(api, registry, &name, &version)?;
    let public = registry.public_key().clone();
    let reader = engine::Reader::new(registry.storage(), &api.repo, &public);
    let existed = recorded.is_some()
        && reader
            .indexed_versions(&name)?
            .is_some_and(|versions| versions.contains(&version));
    let same = recorded
        .as_ref()
        .is_some_and(|r| r.outer_checksum == new.release.outer_checksum);
    let before = recorded
        .as_ref()
        .map(|r| hex_upper(&r.outer_checksum))
        .unwrap_or_default();
    let after = hex_upper(&new.release.outer_checksum);
    let release = new.release.clone();
    let info = new.info.clone();
    if same {
        // The same bytes again: nothing to replace; a publish cut short is completed.
        registry.add(vec![Ok(new)], false)?;
        if !existed {
            audit::note_first_indexed(registry.storage(), &name, &version, now_secs())?;
            record(registry, who, Action::Publish, &name, &version, "", &after)?;
        }
        return Ok(answer::published(
            existed,
            &name,
            &release,
            info.as_ref(),
            urls,
            &api.repo,
        ));
    }
    if existed && !replace {
        return Ok(answer::already_published(&name, &version));
    }
    let mut started = now_secs();
    if let Some(old) = &recorded {
        started = release_started(registry, &name, old)?;
        if !api.replace_window.allows(started, now_secs()) {
            return Ok(answer::past_window(
                &name,
                &version,
                &api.replace_window.refusal(),
            ));
        }
    }
    registry.add(vec![Ok(new)], replace)?;
    // A replaced release keeps the time it was first published: a chain of replaces cannot
    // keep a release open past the window (as hex.pm measures from `inserted_at`).
    audit::note_first_indexed(registry.storage(), &name, &version, started)?;
    let action = if recorded.is_some() {
        Action::Replace
    } else {
        Action::Publish
    };
    record(registry, who, action, &name, &version, &before, &after)?;
    Ok(answer::published(
        existed,
        &name,
        &release,
        info.as_ref(),
        urls,
        &api.repo,
    ))
}

/// Release `version` of `name` as `packages/NAME` records it, if it does.
fn registry_release(
    api: &Api,
    registry: &Registry,
    name: &str,
    version: &str,
) -> Result<Option<Release>, engine::Error> {
    let public = registry.public_key().clone();
    let reader = engine::Reader::new(registry.storage(), &api.repo, &public);
    Ok(reader
        .package(name)?
        .and_then(|releases| releases.into_iter().find(|r| r.version == version)))
}

/// When `release` of `name` was published, for the replace window: the earliest of the time
/// hexreg first indexed it, its recorded release date and its tarball's storage time (a
/// registry without dates or records: when the tarball was stored). Earliest, so that no
/// later write (a replace dates a release again) opens a window that had closed.
fn release_started(
    registry: &Registry,
    name: &str,
    release: &Release,
) -> Result<i64, engine::Error> {
    let storage = registry.storage();
    let mut times = Vec::new();
    if let Some(first) = audit::first_indexed(storage, name, &release.version)? {
        times.push(first);
    }
    if let Some(date) = &release.published_at {
        times.push(date.seconds);
    }
    if let Some(tarball) = storage.read(&ResourcePath::tarball(name, &release.version).key())? {
        times.push(tarball.modified);
    }
    Ok(times.into_iter().min().unwrap_or_else(now_secs))
}

/// 422 when `release` of `name` is past the replace window; `None` when it may be changed.
fn outside_window(
    api: &Api,
    registry: &Registry,
    name: &str,
    release: &Release,
) -> Result<Option<Answer>, engine::Error> {
    let started = release_started(registry, name, release)?;
    if api.replace_window.allows(started, now_secs()) {
        return Ok(None);
    }
    Ok(Some(answer::past_window(
        name,
        &release.version,
        &api.replace_window.refusal(),
    )))
}

/// 403 when `grant`'s scope does not cover package `name`.
fn out_of_scope(grant: &crate::keys::Grant, name: &str) -> Option<Answer> {
    let scope = grant.scope.as_ref()?;
    (!scope.allows(name)).then(|| answer::out_of_scope(name, &grant.label, &scope.to_string()))
}

/// Appends a record of a change made through the API to the registry's audit trail, before
/// the answer is sent.
fn record(
    registry: &Registry,
    who: &Who,
    action: Action,
    package: &str,
    version: &str,
    before: &str,
    after: &str,
) -> Result<(), engine::Error> {
    audit::append(
        registry.storage(),
        &audit::Record {
            time_nanos: audit::now_nanos(),
            actor: who.label.clone(),
            peer: who.peer.clone(),
            action,
            package: package.to_string(),
            version: version.to_string(),
            before: before.to_string(),
            after: after.to_string(),
        },
    )?;
    Ok(())
}

fn now_secs() -> i64 {
    (audit::now_nanos() / 1_000_000_000) as i64
}

/// Runs `change` on the registry, locked, on the blocking pool.
async fn run(
    state: &Arc<State>,
    change: impl FnOnce(&Api, &mut Registry) -> Result<Answer, engine::Error> + Send + 'static,
) -> Answer {
    let state = Arc::clone(state);
    let joined = tokio::task::spawn_blocking(move || {
        let Some(api) = &state.api else {
            return Answer::error(StatusCode::NOT_FOUND, "no API");
        };
        let Some(signer) = &api.signer else {
            return Answer::error(StatusCode::FORBIDDEN, "this server is read-only");
        };
        let lock = match lock_within(api) {
            Ok(Some(lock)) => lock,
            Ok(None) => return answer::busy(api.lock_timeout.as_secs()),
            Err(e) => return engine_error(api, e.into()),
        };
        let mut registry = Registry::open(api.storage.storage(), &api.repo, signer, lock)
            .with_release_dates(api.release_dates);
        let answer = change(api, &mut registry).unwrap_or_else(|e| engine_error(api, e));
        let changes = registry.take_changes();
        // This replica serves what it just wrote at the next request, not an interval later.
        state.bucket_cache.invalidate();
        for change in changes.as_made() {
            let verb = match change.kind {
                engine::ChangeKind::Creating => "creating",
                engine::ChangeKind::Updating | engine::ChangeKind::KeyMismatch => "updating",
                engine::ChangeKind::Removing => "removing",
            };
            log_line(&format!(
                "* {verb} {}",
                api.storage.storage().display(&change.path)
            ));
        }
        answer
    })
    .await;
    joined.unwrap_or_else(|e| {
        log_line(&format!("error: an API request failed: {e}"));
        Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

/// Takes the registry's lock, waiting at most `api.lock_timeout`; `None` when it stayed
/// taken. Polls, at growing intervals (at most a quarter second): on a bucket each try is a
/// conditional PUT.
fn lock_within(api: &Api) -> Result<Option<crate::storage::Lock>, crate::storage::StorageError> {
    let deadline = std::time::Instant::now() + api.lock_timeout;
    let mut pause = Duration::from_millis(10);
    let mut waited = false;
    loop {
        if let Some(lock) = api.storage.storage().try_lock()? {
            return Ok(Some(lock));
        }
        // A held lock is waited for; the metrics count the waits.
        if !waited {
            super::metrics::LOCK_WAITS.inc();
            waited = true;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The answer to an engine error; an internal one is logged in full.
fn engine_error(api: &Api, e: engine::Error) -> Answer {
    let mut answer = answer::engine_error(&e, &api.storage.storage().display(""));
    if let Some(line) = answer.log.take() {
        log_line(&format!("error: {line}"));
    }
    answer
}

/// Reads a request body of at most `limit` bytes: 413 at once when `content-length` says more
/// (before a client that sent `expect: 100-continue` sends it), or as soon as more arrives;
/// 408 when the client stalls.
async fn read_body(
    req: Request<Incoming>,
    limit: u64,
    idle_timeout: Duration,
) -> Result<Vec<u8>, Answer> {
    let too_big = || {
        Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over the {limit}-byte limit"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_big());
    }
    let mut body = req.into_body();
    let mut out = BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let whole = async {
        loop {
            let frame = tokio::time::timeout(
                idle_timeout,
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
            )
            .await;
            match frame {
                Err(_) => return Err(stalled()),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return Err(Answer::error(
                        StatusCode::BAD_REQUEST,
                        &format!("cannot read the body: {e}"),
                    ));
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if out.len() as u64 + data.len() as u64 > limit {
                            return Err(too_big());
                        }
                        out.extend_from_slice(&data);
                    }
                }
            }
        }
    };
    match tokio::time::timeout(idle_timeout * BODY_TIMEOUT_FACTOR, whole).await {
        Ok(Ok(())) => Ok(out.to_vec()),
        Ok(Err(answer)) => Err(answer),
        Err(_) => Err(stalled()),
    }
}

fn stalled() -> Answer {
    Answer::error(
        StatusCode::REQUEST_TIMEOUT,
        "the body did not arrive in time",
    )
}
