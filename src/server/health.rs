//! The routes a service manager and a monitoring system use: `GET /-/health` (the process
//! answers: a liveness probe), `GET /-/ready` (the storage answers and the keys file is valid:
//! a readiness probe, 200 or 503 with the reason) and `GET /-/metrics` (Prometheus text,
//! [`super::metrics`]). Health and readiness are open without credentials and say nothing of
//! the registry's content; metrics need the registry's credentials unless `--public-metrics`.
//!
//! A readiness check costs a storage request (a HEAD of `names` in a bucket), so its result is
//! kept for [`READY_CACHE`]: a flood of probes makes at most one check per second, and
//! concurrent probes wait for the one running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::respond::{ServeBody, log_line};
use super::{Source, State, metrics};
use crate::storage::object::ObjectFetch;

/// How long a readiness result is reused.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// The state of the service routes.
pub struct Service {
    /// Whether `/-/metrics` is open to anyone.
    pub public_metrics: bool,
    started: Instant,
    ready: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Service {
    /// Starts counting uptime now.
    pub fn new(public_metrics: bool) -> Service {
        Service {
            public_metrics,
            started: Instant::now(),
            ready: tokio::sync::Mutex::new(None),
        }
    }
}

/// Whether `path` is one of the service routes.
pub fn is_service(path: &str) -> bool {
    matches!(path, "/-/health" | "/-/ready" | "/-/metrics")
}

/// Answers a service route.
pub async fn handle(state: &Arc<State>, req: &Request<Incoming>) -> Response<ServeBody> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: GET or HEAD\n".into(),
                false,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    match req.uri().path() {
        "/-/health" => text(StatusCode::OK, "ok\n".into(), head),
        "/-/ready" => match ready(state).await {
            Ok(()) => text(StatusCode::OK, "ready\n".into(), head),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
                head,
            ),
        },
        _ => {
            if !state.service.public_metrics && !super::respond::authorized(state, req).await {
                return super::respond::unauthorized();
            }
            let body = metrics::render(&metrics::snapshot(state.service.started.elapsed()));
            let mut response = text(StatusCode::OK, body, head);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
    }
}

fn text(status: StatusCode, body: String, head: bool) -> Response<ServeBody> {
    let len = body.len();
    let mut response = Response::new(if head {
        ServeBody::empty()
    } else {
        ServeBody::full(Bytes::from(body))
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The readiness, from the last check if it is recent enough.
async fn ready(state: &Arc<State>) -> Result<(), String> {
    let mut last = state.service.ready.lock().await;
    if let Some((at, result)) = &*last
        && at.elapsed() < READY_CACHE
    {
        return result.clone();
    }
    let result = check(state).await;
    *last = Some((Instant::now(), result.clone()));
    result
}

/// Checks the storage and the keys file now. The reason given to the client is short and
/// names no path; the log line has the detail.
async fn check(state: &Arc<State>) -> Result<(), String> {
    let storage = match &state.source {
        Source::Dir(root) => {
            let path = root.path().to_path_buf();
            match tokio::task::spawn_blocking(move || std::fs::read_dir(&path).map(|_| ())).await {
                Ok(result) => {
                    result.map_err(|e| format!("cannot read the registry directory: {e}"))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Source::Bucket(bucket) => match bucket.fetch("names", true, None).await {
            Ok(ObjectFetch::Found { .. } | ObjectFetch::Missing | ObjectFetch::NotModified) => {
                Ok(())
            }
            Err(e) => Err(format!("the bucket does not answer: {e}")),
        },
    };
    if let Err(detail) = storage {
        log_line(&format!("not ready: {detail}"));
        return Err("the registry's storage is not reachable (the server's log says why)".into());
    }
    if let Some(keys) = state.api.as_ref().and_then(|api| api.keys.as_ref()) {
        let path = keys.path().to_path_buf();
        let read = tokio::task::spawn_blocking(move || crate::keys::read_file(&path)).await;
        let detail = match read {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(detail) = detail {
            log_line(&format!("not ready: {detail}"));
            return Err(
                "the API keys file is missing or invalid (the server's log says why)".into(),
            );
        }
    }
    Ok(())
}
