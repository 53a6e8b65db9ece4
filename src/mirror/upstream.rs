//! An upstream Hex repository over HTTP(S), the [`Upstream`] the mirror engine fetches from.
//!
//! - only the host of the URL given is contacted: redirects are refused and proxies from the
//!   environment are not used;
//! - credentials from the URL (`https://USER:PASS@HOST/...`, sent as `Basic`, or
//!   `https://KEY@HOST/...`, sent as the key itself, as Hex clients send a repository key) or
//!   given by the caller, in the `authorization` header;
//! - conditional requests (`If-None-Match`);
//! - retries with exponential backoff ([`backoff`]) on connection failures, timeouts and the
//!   statuses [`retryable`] names;
//! - bodies read up to a limit.
//!
//! Requests run on a private tokio runtime; [`Upstream::get`] blocks the calling thread, so
//! that the engine's download threads each drive one request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{self, HeaderValue};

use crate::engine::mirror::{FetchError, Upstream, UpstreamResponse};

/// How an [`HttpUpstream`] behaves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The `authorization` header value when the URL holds no credentials.
    pub authorization: Option<String>,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Connecting, and each read of a response, time out after this long.
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            authorization: None,
            retries: 4,
            timeout: Duration::from_secs(30),
        }
    }
}

/// An upstream URL or client that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The URL is not an `http(s)://` URL.
    #[error(
        "--from {url}: {reason}; give the repository's root URL, e.g. https://repo.hex.pm or http://127.0.0.1:8000"
    )]
    BadUrl {
        /// The URL (without credentials).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The credentials cannot be sent in a header.
    #[error("the credentials for {url} hold characters an HTTP header cannot carry")]
    BadCredentials {
        /// The URL (without credentials).
        url: String,
    },
    /// The HTTP client or its runtime cannot start.
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

/// Whether a response status is worth another attempt: the server failed or is overloaded.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// What a response status means for a `GET`, sent conditionally (`If-None-Match`) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200`: read the body.
    Body,
    /// `304` to a conditional request: the copy at hand is current.
    NotModified,
    /// `304` to an unconditional request: not a Hex repository.
    UnexpectedNotModified,
    /// Any other `3xx`: refused, only the upstream's host is contacted.
    Redirect,
    /// Worth another attempt ([`retryable`]).
    Retry,
    /// Any other status: an error.
    Fail,
}

/// What `status` means (free of I/O, so that the policy is tested on its own).
pub fn answer(status: u16, conditional: bool) -> Answer {
    match status {
        200 => Answer::Body,
        304 if conditional => Answer::NotModified,
        304 => Answer::UnexpectedNotModified,
        300..=399 => Answer::Redirect,
        s if retryable(s) => Answer::Retry,
        _ => Answer::Fail,
    }
}

/// How long to wait before retry number `attempt` (1, 2, ...): 0.5 s doubling, at most 8 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(4));
    Duration::from_millis(ms.min(8000))
}

/// A Hex repository at an `http(s)://` URL.
pub struct HttpUpstream {
    /// `scheme://host[:port][/path]`, without credentials or a trailing `/`.
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    authorization: Option<HeaderValue>,
    retries: u32,
    requests: AtomicU64,
}

/// One attempt's failure: worth retrying or not.
enum Failure {
    Retry(FetchError),
    Fatal(FetchError),
}

impl HttpUpstream {
    /// The repository at `url`.
    pub fn new(url: &str, options: HttpOptions) -> Result<HttpUpstream, UpstreamError> {
        let mut parsed = reqwest::Url::parse(url).map_err(|e| UpstreamError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let user = percent_decode(parsed.username());
        let password = parsed.password().map(percent_decode);
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let shown = parsed.as_str().trim_end_matches('/').to_string();
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(UpstreamError::BadUrl {
                url: shown,
                reason: format!("`{}` is not http or https", parsed.scheme()),
            });
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(UpstreamError::BadUrl {
                url: shown,
                reason: "it names no host".into(),
            });
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(UpstreamError::BadUrl {
                url: shown,
                reason: "it has a query or fragment".into(),
            });
        }
        let credentials = match (user.is_empty(), password) {
            (true, None) => options.authorization.clone(),
            (_, Some(password)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            (false, None) => Some(user),
        };
        let authorization = credentials
            .map(|c| {
                HeaderValue::from_str(&c).map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
            })
            .transpose()
            .map_err(|_| UpstreamError::BadCredentials { url: shown.clone() })?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(options.timeout)
            .read_timeout(options.timeout)
            .user_agent(concat!("hexreg/", env!("CARGO_PKG_VERSION"), " (mirror)"))
            // The system's roots (and SSL_CERT_FILE) plus Mozilla's, compiled in: a static
            // binary in an image or chroot without /etc/ssl still verifies hex.pm.
            .tls_certs_merge(bundled_roots())
            .build()
            .map_err(|e| UpstreamError::Client(error_chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hexreg-http")
            .enable_all()
            .build()
            .map_err(|e| UpstreamError::Client(e.to_string()))?;
        Ok(HttpUpstream {
            base: shown,
            client,
            runtime,
            authorization,
            retries: options.retries,
            requests: AtomicU64::new(0),
        })
    }

    /// The repository's URL, without credentials.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn get_async(
        &self,
        path: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<UpstreamResponse, FetchError> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            match self.once(&url, etag, limit).await {
                Ok(fetched) => return Ok(fetched),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    if attempt >= self.retries {
                        return Err(e);
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    async fn once(
        &self,
        url: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<UpstreamResponse, Failure> {
        let transport = |e: reqwest::Error| {
            Failure::Retry(FetchError::Transport {
                url: url.to_string(),
                reason: error_chain(&e),
            })
        };
        let mut request = self.client.get(url);
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        match answer(status, etag.is_some()) {
            Answer::Body => {}
            Answer::NotModified => return Ok(UpstreamResponse::NotModified),
            Answer::UnexpectedNotModified => {
                return Err(Failure::Fatal(FetchError::UnexpectedNotModified {
                    url: url.to_string(),
                }));
            }
            Answer::Redirect => {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(no Location)");
                return Err(Failure::Fatal(FetchError::Redirect {
                    url: url.to_string(),
                    location: crate::format::tarball::one_line(location),
                }));
            }
            answer @ (Answer::Retry | Answer::Fail) => {
                let e = FetchError::Status {
                    url: url.to_string(),
                    status,
                };
                return Err(if answer == Answer::Retry {
                    Failure::Retry(e)
                } else {
                    Failure::Fatal(e)
                });
            }
        }
        let too_big = || {
            Failure::Fatal(FetchError::TooBig {
                url: url.to_string(),
                limit,
            })
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        let new_etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(UpstreamResponse::Body {
            bytes,
            etag: new_etag,
        })
    }
}

impl Upstream for HttpUpstream {
    fn get(
        &self,
        path: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<UpstreamResponse, FetchError> {
        self.runtime.block_on(self.get_async(path, etag, limit))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

/// An error and its sources, `: `-separated (reqwest's own text alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Decodes `%XX` escapes (the user and password of a URL come percent-encoded).
fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&crate::format::encoding::percent_decode_lenient(text)).into_owned()
}

/// Mozilla's CA roots, as bundled by `webpki-root-certs`.
fn bundled_roots() -> Vec<reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy() {
        assert!(retryable(500) && retryable(503) && retryable(429) && retryable(408));
        assert!(!retryable(404) && !retryable(401) && !retryable(200));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_millis(1000));
        assert_eq!(backoff(4), Duration::from_millis(4000));
        assert_eq!(backoff(50), Duration::from_millis(8000));
    }

    #[test]
    fn statuses() {
        assert_eq!(answer(200, false), Answer::Body);
        assert_eq!(answer(304, true), Answer::NotModified);
        assert_eq!(answer(304, false), Answer::UnexpectedNotModified);
        assert_eq!(answer(301, true), Answer::Redirect);
        assert_eq!(answer(503, true), Answer::Retry);
        assert_eq!(answer(404, false), Answer::Fail);
        assert_eq!(answer(204, false), Answer::Fail);
    }

    #[test]
    fn credentials_leave_the_shown_url() {
        let up = HttpUpstream::new("http://me:p%40ss@127.0.0.1:9/repo/", HttpOptions::default())
            .unwrap();
        assert_eq!(up.base(), "http://127.0.0.1:9/repo");
        assert_eq!(up.url("names"), "http://127.0.0.1:9/repo/names");
        let auth = up
            .authorization
            .as_ref()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let expected = base64::engine::general_purpose::STANDARD.encode("me:p@ss");
        assert_eq!(auth, format!("Basic {expected}"));
        let key = HttpUpstream::new("http://KEY@127.0.0.1:9", HttpOptions::default()).unwrap();
        assert_eq!(key.authorization.unwrap().to_str().unwrap(), "KEY");
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in ["ftp://h/", "not a url", "http://h/?q=1", "file:///tmp"] {
            assert!(
                HttpUpstream::new(bad, HttpOptions::default()).is_err(),
                "{bad}"
            );
        }
    }
}
