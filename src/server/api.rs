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
use crate::api::{self, Format, Route, RouteError, Urls};
use crate::engine::{self, NewTarball, Registry, Signer};
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
}

/// Answers an `/api` request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ServeBody> {
    let format = Format::from_accept(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let answer = answer(&state, req).await;
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
    response
}

async fn answer(state: &Arc<State>, req: Request<Incoming>) -> Answer {
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
    let grant = presented.and_then(|p| super::oauth::authenticate(api, p));
    let Some(grant) = grant else {
        return Answer::error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid API key: send a key made with `hexreg key add` (HEX_API_KEY for mix, api_key for rebar3)",
        );
    };
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
                "this server is read-only: start hexreg serve with --private-key to accept changes",
            );
        }
    }
    match route {
        Route::OAuthToken | Route::ShortUrl => Answer::error(StatusCode::NOT_FOUND, "not found"),
        Route::Search { query } => super::search::answer(api, query.as_deref(), &urls).await,
        Route::Me => Answer::new(StatusCode::OK, api::me_body(&grant.label)),
        Route::Package { name } => read_package(api, &name, None, &urls).await,
        Route::Release { name, version } => read_package(api, &name, Some(version), &urls).await,
        Route::Publish { replace } => {
            let answer = publish_route(state, api, req, replace, urls, &grant.label).await;
            if answer.status.is_success() {
                super::metrics::PUBLISHES.inc();
            } else {
                super::metrics::PUBLISH_FAILURES.inc();
            }
            answer
        }
        Route::Revert { name, version } => {
            run(state, move |_, registry| {
                registry.remove(&name, Some(&version))?;
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
                Ok(Answer::empty(StatusCode::NO_CONTENT))
            })
            .await
        }
        Route::Unretire { name, version } => {
            run(state, move |_, registry| {
                registry.unretire(&name, &version)?;
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
                let mut answer = Answer::empty(StatusCode::CREATED);
                answer.location = Some(location);
                Ok(answer)
            })
            .await
        }
        Route::RemoveDocs { name, version } => {
            run(state, move |_, registry| {
                if registry.remove_docs(&name, &version)? {
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

/// `GET /api/packages/NAME[/releases/VERSION]`.
async fn read_package(api: &Api, name: &str, version: Option<String>, urls: &Urls) -> Answer {
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

/// `POST /api/publish`: reads, validates and publishes the uploaded tarball.
async fn publish_route(
    state: &Arc<State>,
    api: &Api,
    req: Request<Incoming>,
    replace: bool,
    urls: Urls,
    publisher: &str,
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
    let new = match validated {
        Ok(Ok(new)) => new,
        Ok(Err(problem)) => return answer::invalid_upload(&problem),
        Err(e) => {
            log_line(&format!("error: validating an upload failed: {e}"));
            return Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    // The record names the key that published the release.
    let mut new = new;
    if let Some(info) = &mut new.info {
        info.publisher = Some(publisher.to_string());
    }
    run(state, move |api, registry| {
        publish(api, registry, new, replace, &urls)
    })
    .await
}

/// Publishes a validated tarball: an `add` through the engine, 201 for a new release, 200 for a replaced
/// one, 422 for one that exists without `replace`. A release exists once the index lists it:
/// one that only `packages/NAME` records is a publish cut short (the server was killed before
/// it wrote `names` and `versions`), which the client's retry completes (201).
fn publish(
    api: &Api,
    registry: &mut Registry,
    new: NewTarball,
    replace: bool,
    urls: &Urls,
) -> Result<Answer, engine::Error> {
    let (name, version) = (new.name.clone(), new.release.version.clone());
    let public = registry.public_key().clone();
    let reader = engine::Reader::new(registry.storage(), &api.repo, &public);
    let recorded = reader
        .package(&name)?
        .is_some_and(|releases| releases.iter().any(|r| r.version == version));
    let existed = recorded
        && reader
            .indexed_versions(&name)?
            .is_some_and(|versions| versions.contains(&version));
    if existed && !replace {
        return Ok(answer::already_published(&name, &version));
    }
    let release = new.release.clone();
    let info = new.info.clone();
    registry.add(vec![Ok(new)], replace)?;
    Ok(answer::published(
        existed,
        &name,
        &release,
        info.as_ref(),
        urls,
        &api.repo,
    ))
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
        // A held lock is waited for; the metrics count the waits.
        let lock = match api.storage.storage().try_lock() {
            Ok(Some(lock)) => Ok(lock),
            Ok(None) => {
                super::metrics::LOCK_WAITS.inc();
                api.storage.storage().lock()
            }
            Err(e) => Err(e),
        };
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => return engine_error(api, e.into()),
        };
        let mut registry = Registry::open(api.storage.storage(), &api.repo, signer, lock)
            .with_release_dates(api.release_dates);
        let answer = change(api, &mut registry).unwrap_or_else(|e| engine_error(api, e));
        let changes = registry.take_changes();
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
