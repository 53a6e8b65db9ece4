//! One request, one response: credentials, method, path, conditional requests, headers, and
//! the log line written when the response body is done (or dropped by a client that left).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::task::JoinHandle;

use super::auth::REALM;
use super::bucket_cache::{self, Lookup};
use super::files;
use super::metrics::RouteClass;
use super::{Source, State};
use crate::format::encoding::json_string;
use crate::storage::object::{ObjectBody, ObjectFetch, ObjectStorage};

/// Bytes read per step when streaming a file larger than [`files::READ_WHOLE_LIMIT`].
const CHUNK: u64 = 128 * 1024;

/// The hyper service: never fails, every outcome is an HTTP response.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ServeBody>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let is_api = uri.path() == "/api" || uri.path().starts_with("/api/");
    let mut response = if is_api {
        super::api::handle(Arc::clone(&state), req).await
    } else if super::health::is_service(uri.path()) {
        super::health::handle(&state, &req).await
    } else {
        respond(&state, &req).await
    };
    // Counted in the metrics always; logged unless --quiet.
    let status = response.status().as_u16();
    let key = response
        .extensions()
        .get::<super::api::KeyLabel>()
        .map(|k| k.0.clone());
    let target = match uri.path() {
        // Authority-form or `*` targets: log the target as sent.
        "" => uri.to_string(),
        // The API's query says what a change did (`?replace=true`): kept.
        path if is_api => uri
            .path_and_query()
            .map_or(path.to_string(), |pq| pq.as_str().to_string()),
        path => path.to_string(),
    };
    response.body_mut().log = Some(LogEntry {
        method,
        class: RouteClass::of(uri.path()),
        path: loggable(target),
        status,
        started,
        format: state.log_format,
        key,
    });
    Ok(response)
}

/// Whether the request carries the credentials the registry's files need (always true when
/// they need none): HTTP Basic, or an API key.
pub(super) async fn authorized(state: &Arc<State>, req: &Request<Incoming>) -> bool {
    !state.reads_need_credentials || {
        let presented = req.headers().get(header::AUTHORIZATION);
        // A key, `Bearer KEY` or `Bearer TOKEN` (an OAuth token).
        let by_key = state
            .api
            .as_ref()
            .zip(presented.and_then(|v| v.to_str().ok()))
            .is_some_and(|(api, key)| super::oauth::authenticate(api, key).is_some());
        by_key
            || match &state.auth {
                Some(auth) => auth.check(presented).await,
                None => false,
            }
    }
}

async fn respond(state: &Arc<State>, req: &Request<Incoming>) -> Response<ServeBody> {
    if !authorized(state, req).await {
        // A key cannot be checked while the keys file is broken: say so, rather than 401.
        // (The store logs why at each attempt to read the file, not once per request.)
        if let Some(why) = state
            .api
            .as_ref()
            .and_then(|api| api.keys.as_ref())
            .and_then(|keys| keys.broken())
        {
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "503 Service Unavailable: the server's API keys file is broken, so no key is accepted until its operator fixes it: {why}\n"
                ),
            );
        }
        return unauthorized();
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return method_not_allowed(),
    };
    if super::pages::is_page(req.uri().path()) {
        return super::pages::handle(Arc::clone(state), req.uri().clone(), req.headers(), head)
            .await;
    }
    let Some(rel) = files::request_path(req.uri().path()) else {
        return not_found();
    };
    if let Some(proxy) = &state.proxy {
        match proxy.prepare(&state.source, &rel).await {
            Err(failure) => return failure.response(),
            Ok(super::proxy::Prepared::Derived(derived)) => {
                let headers = validators(&derived.etag, None);
                if not_modified(req.headers(), &derived.etag, None) {
                    return not_modified_response(headers);
                }
                let len = derived.bytes.len() as u64;
                let body = if head {
                    ServeBody::empty()
                } else {
                    ServeBody::full(derived.bytes)
                };
                return content_response(headers, len, body);
            }
            Ok(super::proxy::Prepared::Cache) => {}
        }
    }
    let root = match &state.source {
        Source::Dir(root) => root,
        Source::Bucket(bucket) => {
            return from_bucket(state, bucket, &rel, head, req.headers()).await;
        }
    };
    // Opening, fstat and reading a small file run right here on the async worker, as nginx's
    // workers do: from a local disk and the page cache they take microseconds, and a hop to
    // the blocking pool would double the CPU cost of a small response. Bodies larger than
    // `files::READ_WHOLE_LIMIT` are read in chunks on the blocking pool.
    let cannot_read = |e: io::Error| {
        log_line(&format!(
            "error: cannot read {}: {e}",
            root.path().join(&rel).display()
        ));
        internal_error()
    };
    let opened = match files::open(root, &rel) {
        Ok(Some(opened)) => opened,
        Ok(None) => return not_found(),
        Err(e) => return cannot_read(e),
    };
    let headers = validators(&opened.etag, opened.modified_secs);
    if not_modified(req.headers(), &opened.etag, opened.modified_secs) {
        return not_modified_response(headers);
    }
    let body = if head {
        ServeBody::empty()
    } else if opened.len <= files::READ_WHOLE_LIMIT {
        match opened.read_whole() {
            Ok(bytes) => ServeBody::full(bytes),
            Err(e) => return cannot_read(e),
        }
    } else {
        ServeBody::file(opened.file, opened.len)
    };
    content_response(headers, opened.len, body)
}

/// A file from a bucket, with the object's ETag and Last-Modified. Registry files come from
/// the replica's copy in memory ([`super::bucket_cache`]), revalidated at most once per
/// interval; tarballs and docs stream from the bucket chunk by chunk, the client's
/// If-None-Match passed on to the store (which answers 304 without the body);
/// If-Modified-Since is checked here.
async fn from_bucket(
    state: &State,
    bucket: &ObjectStorage,
    rel: &std::path::Path,
    head: bool,
    request: &HeaderMap,
) -> Response<ServeBody> {
    let Some(rel) = rel.to_str() else {
        return not_found();
    };
    let bad_gateway = |e: crate::storage::StorageError| {
        log_line(&format!("error: {e}"));
        text_response(
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway: the registry's bucket did not answer as expected; the server's log says why\n",
        )
    };
    if bucket_cache::cacheable(rel) {
        match state.bucket_cache.get(bucket, rel).await {
            Ok(Lookup::Hit(copy)) => {
                let modified = u64::try_from(copy.modified).ok();
                let headers = validators(&copy.e_tag, modified);
                if not_modified(request, &copy.e_tag, modified) {
                    return not_modified_response(headers);
                }
                let len = copy.bytes.len() as u64;
                let body = if head {
                    ServeBody::empty()
                } else {
                    ServeBody::full(copy.bytes)
                };
                return content_response(headers, len, body);
            }
            Ok(Lookup::Missing) => return not_found(),
            // Streamed from the bucket, as a tarball is.
            Ok(Lookup::TooLarge) => {}
            Err(e) => return bad_gateway(e),
        }
    }
    let if_none_match = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match bucket.fetch(rel, head, if_none_match.clone()).await {
        Ok(ObjectFetch::Missing) => not_found(),
        Ok(ObjectFetch::NotModified) => {
            let mut headers = HeaderMap::new();
            // The tag the client holds is the object's (a list is not echoed).
            if let Some(tag) = if_none_match.filter(|t| !t.contains(',') && t.trim() != "*") {
                set(&mut headers, header::ETAG, tag.trim());
            }
            not_modified_response(headers)
        }
        Ok(ObjectFetch::Found {
            size,
            e_tag,
            modified,
            body,
        }) => {
            let etag = e_tag.unwrap_or_default();
            let modified = u64::try_from(modified).ok();
            let headers = validators(&etag, modified);
            if not_modified(request, &etag, modified) {
                return not_modified_response(headers);
            }
            let body = match body {
                Some(body) if !head => ServeBody::object(body, size),
                _ => ServeBody::empty(),
            };
            content_response(headers, size, body)
        }
        Err(e) => bad_gateway(e),
    }
}

/// `ETag` and `Last-Modified`, sent with every answer about a file.
fn validators(etag: &str, modified_secs: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if !etag.is_empty() {
        set(&mut headers, header::ETAG, etag);
    }
    if let Some(secs) = modified_secs {
        set(&mut headers, header::LAST_MODIFIED, &files::http_date(secs));
    }
    headers
}

pub(super) fn not_modified_response(headers: HeaderMap) -> Response<ServeBody> {
    let mut response = Response::new(ServeBody::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    *response.headers_mut() = headers;
    response
}

/// A file's answer: `headers` (its validators), its length and its body.
fn content_response(mut headers: HeaderMap, len: u64, body: ServeBody) -> Response<ServeBody> {
    // Registry files are gzip files served as they are: no Content-Encoding, ever.
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    response
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// RFC 9110 13.2.2: If-None-Match decides when present; otherwise If-Modified-Since.
/// Whether the client's copy, by its If-None-Match or (without one) If-Modified-Since, is the
/// file's.
pub(super) fn not_modified(headers: &HeaderMap, etag: &str, modified_secs: Option<u64>) -> bool {
    let mut none_match = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if none_match.peek().is_some() {
        return none_match.any(|value| {
            value
                .to_str()
                .is_ok_and(|list| etag_list_matches(list, etag))
        });
    }
    let (Some(since), Some(modified)) = (headers.get(header::IF_MODIFIED_SINCE), modified_secs)
    else {
        return false;
    };
    let Some(since) = since.to_str().ok().and_then(files::parse_http_date) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // A date in the future is invalid (RFC 9110 13.1.3): send the file.
    since <= now && modified <= since
}

/// Weak comparison (RFC 9110 8.8.3.2) of `etag` against an If-None-Match list.
fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == etag
    })
}

fn text_response(status: StatusCode, text: impl Into<Bytes>) -> Response<ServeBody> {
    let mut response = Response::new(ServeBody::full(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn not_found() -> Response<ServeBody> {
    text_response(StatusCode::NOT_FOUND, "404 Not Found\n")
}

pub(super) fn unauthorized() -> Response<ServeBody> {
    let mut response = text_response(
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: this registry needs a user name and password (HTTP Basic)\n",
    );
    set(
        response.headers_mut(),
        header::WWW_AUTHENTICATE,
        &format!("Basic realm=\"{REALM}\""),
    );
    response
}

fn method_not_allowed() -> Response<ServeBody> {
    let mut response = text_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "405 Method Not Allowed: this registry is read-only (GET and HEAD)\n",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn internal_error() -> Response<ServeBody> {
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 Internal Server Error: the server's log says why\n",
    )
}

/// A line on stderr, written with one call so that lines from concurrent requests do not
/// mix. A closed or full stderr is not an error worth stopping for.
pub fn log_line(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// The request path for the log: bytes other than visible ASCII escaped as `%XX`.
fn loggable(path: String) -> String {
    if path.bytes().all(|b| b.is_ascii_graphic()) {
        return path;
    }
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// How access-log lines are written (`--log-format`), or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `METHOD PATH STATUS BYTES MSms`.
    Text,
    /// One JSON object per line: `{"time":..., "method":..., "path":..., "status":...,
    /// "bytes":..., "ms":...}`, `time` in Unix seconds.
    Json,
    /// No access log (`--quiet`); errors are still written.
    Off,
}

/// One request's log line and metrics, written when the body is finished or dropped, so the
/// bytes are what was actually handed to the connection and the time the whole time taken.
pub struct LogEntry {
    method: Method,
    class: RouteClass,
    path: String,
    status: u16,
    started: Instant,
    format: LogFormat,
    /// The label of the API key the request was made with.
    key: Option<String>,
}

impl LogEntry {
    fn write(&self, sent: u64) {
        let took = self.started.elapsed();
        super::metrics::REQUESTS.record(self.class, self.status, sent, took);
        let ms = took.as_secs_f64() * 1000.0;
        match self.format {
            LogFormat::Off => {}
            LogFormat::Text => {
                let key = match &self.key {
                    Some(label) => format!(" key={label}"),
                    None => String::new(),
                };
                log_line(&format!(
                    "{} {} {} {sent} {ms:.2}ms{key}",
                    self.method, self.path, self.status
                ))
            }
            LogFormat::Json => log_line(&json_line(
                self.method.as_str(),
                &self.path,
                self.status,
                sent,
                ms,
                self.key.as_deref(),
            )),
        }
    }
}

/// An access-log line as one JSON object.
fn json_line(
    method: &str,
    path: &str,
    status: u16,
    sent: u64,
    ms: f64,
    key: Option<&str>,
) -> String {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let key = match key {
        Some(label) => format!(",\"key\":{}", json_string(label)),
        None => String::new(),
    };
    format!(
        "{{\"time\":{time:.3},\"method\":{},\"path\":{},\"status\":{status},\"bytes\":{sent},\"ms\":{ms:.2}{key}}}",
        json_string(method),
        json_string(path)
    )
}

/// A response body: nothing, bytes in memory, a file read in chunks on the blocking pool, or
/// an object streamed from a bucket.
pub struct ServeBody {
    content: Content,
    sent: u64,
    log: Option<LogEntry>,
}

enum Content {
    Empty,
    Full(Option<Bytes>),
    File {
        file: Arc<File>,
        offset: u64,
        remaining: u64,
        reading: Option<JoinHandle<io::Result<Bytes>>>,
    },
    Object {
        body: ObjectBody,
        remaining: u64,
    },
}

impl ServeBody {
    fn new(content: Content) -> Self {
        ServeBody {
            content,
            sent: 0,
            log: None,
        }
    }

    pub fn empty() -> Self {
        Self::new(Content::Empty)
    }

    pub fn full(bytes: Bytes) -> Self {
        Self::new(Content::Full(Some(bytes)))
    }

    /// The first `len` bytes of `file`.
    pub fn file(file: File, len: u64) -> Self {
        Self::new(Content::File {
            file: Arc::new(file),
            offset: 0,
            remaining: len,
            reading: None,
        })
    }

    /// An object of `len` bytes, passed on chunk by chunk as the bucket sends it.
    pub fn object(body: ObjectBody, len: u64) -> Self {
        Self::new(Content::Object {
            body,
            remaining: len,
        })
    }

    /// `len` bytes of a shared `file` from `offset` (a member of an inflated docs tar).
    pub fn file_range(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self::new(Content::File {
            file,
            offset,
            remaining: len,
            reading: None,
        })
    }
}

/// Reads up to `len` bytes at `offset` (fewer only at the end of the file) into a fresh
/// buffer, without zeroing it first.
fn read_chunk(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .min(CHUNK as usize);
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The allocation may be larger than asked for: never send more than `len`.
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match &mut this.content {
            Content::Empty => Poll::Ready(None),
            Content::Full(bytes) => match bytes.take() {
                Some(bytes) => {
                    this.sent += bytes.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                None => Poll::Ready(None),
            },
            Content::File {
                file,
                offset,
                remaining,
                reading,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let task = reading.get_or_insert_with(|| {
                    let file = Arc::clone(file);
                    let (at, len) = (*offset, (*remaining).min(CHUNK));
                    tokio::task::spawn_blocking(move || read_chunk(&file, at, len))
                });
                let result = match Pin::new(task).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result,
                };
                *reading = None;
                let bytes = match result {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Err(e) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                };
                if bytes.is_empty() {
                    // Shorter than its Content-Length: the connection is closed mid-body, so the
                    // client sees a truncated download rather than a wrong file.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    ))));
                }
                let n = bytes.len() as u64;
                *offset += n;
                *remaining = remaining.saturating_sub(n);
                this.sent += n;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Content::Object { body, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                match body.poll_chunk(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(bytes))) => {
                        let n = bytes.len() as u64;
                        if n > *remaining {
                            // Longer than its Content-Length: cut the connection.
                            *remaining = 0;
                            return Poll::Ready(Some(Err(io::Error::other(
                                "the bucket sent more than the object's size",
                            ))));
                        }
                        *remaining -= n;
                        this.sent += n;
                        Poll::Ready(Some(Ok(Frame::data(bytes))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    // Shorter than its Content-Length: the client sees a truncated download.
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the bucket's answer ended before the object's size",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.content {
            Content::Empty => true,
            Content::Full(bytes) => bytes.is_none(),
            Content::File { remaining, .. } | Content::Object { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Empty => SizeHint::with_exact(0),
            Content::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Content::File { remaining, .. } | Content::Object { remaining, .. } => {
                SizeHint::with_exact(*remaining)
            }
        }
    }
}

impl Drop for ServeBody {
    fn drop(&mut self) {
        if let Some(entry) = self.log.take() {
            entry.write(self.sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_lists() {
        let etag = "\"1f-5-0.1\"";
        assert!(etag_list_matches("\"1f-5-0.1\"", etag));
        assert!(etag_list_matches("W/\"1f-5-0.1\"", etag));
        assert!(etag_list_matches("\"x\", \"1f-5-0.1\"", etag));
        assert!(etag_list_matches("*", etag));
        assert!(!etag_list_matches("\"1f-5-0.2\"", etag));
        assert!(!etag_list_matches("1f-5-0.1", etag));
    }

    #[test]
    fn json_log_lines_escape_what_json_needs() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        let line = json_line("GET", "/x\"", 200, 5, 1.5, None);
        assert!(line.starts_with("{\"time\":"), "{line}");
        assert!(
            line.ends_with(
                ",\"method\":\"GET\",\"path\":\"/x\\\"\",\"status\":200,\"bytes\":5,\"ms\":1.50}"
            ),
            "{line}"
        );
    }

    #[test]
    fn log_paths_are_escaped() {
        assert_eq!(loggable("/names".to_string()), "/names");
        assert_eq!(loggable("/a b\n\u{e9}".to_string()), "/a%20b%0A%C3%A9");
    }
}
