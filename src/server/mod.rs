//! `hexreg serve` as a library: a [`Config`] in, a running HTTP/1.1 server out, for mix,
//! rebar3 and gleam.
//!
//! What belongs here: the network side of serving a registry (accepting connections, routing,
//! credentials, reading files and objects for a response, the access log) and the glue that
//! calls the engine for the Hex API and the page renderers for the web pages. What must not:
//! the Hex API's wire rules and answers ([`crate::api`], pure functions), HTML
//! ([`crate::web`]), registry changes ([`crate::engine`]), or anything of the command line
//! (flags, exit codes): the `hexreg` binary converts its arguments into a [`Config`].
//!
//! Shape: [`Server::bind`] opens the storage and the keys, binds, and returns; then
//! [`Server::run_until_signal`] accepts connections on a tokio runtime (one task per
//! connection, hyper's HTTP/1.1 with keep-alive) until SIGINT or SIGTERM; then stops
//! accepting, lets requests in flight finish (a publish under way completes and is durable)
//! within [`Config::shutdown_timeout`], and returns. What a request may see is decided in
//! `files` (path confinement, no dotfiles, no directories), [`auth`] (HTTP Basic) and
//! `respond` (methods, conditional requests, headers, the per-request log line and metrics).
//! `health` answers `/-/health`, `/-/ready` and `/-/metrics`; [`metrics`] holds the counters
//! any module increments.

mod api;
pub mod auth;
mod bucket_cache;
mod docs_cache;
mod files;
mod health;
mod lru;
pub mod metrics;
mod oauth;
mod pages;
pub mod proxy;
mod respond;
mod search;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::engine::Signer;
use crate::format::signing::PublicKey;
use crate::keys::{KeyStore, KeysError, Reload};
use crate::storage::Location;
use crate::storage::object::ObjectStorage;

pub use auth::{AuthError, BasicAuth};
pub use proxy::ProxyConfig;
pub use respond::LogFormat;

/// How long requests in flight may run after SIGINT/SIGTERM before the server exits anyway,
/// unless [`Config::shutdown_timeout`] says otherwise.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// A client must send a complete request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error such as "too many open files", so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What a server serves, and to whom.
pub struct Config {
    /// The registry: a directory (canonical, existing) or a bucket prefix.
    pub location: Location,
    /// The addresses to try, in order; the first that can be bound is used.
    pub bind: Vec<SocketAddr>,
    /// HTTP Basic credentials; `None`: none configured.
    pub basic_auth: Option<BasicAuth>,
    /// The Hex API under `/api`; `None`: no API (and no API keys).
    pub api: Option<ApiConfig>,
    /// How each request is logged on stderr, or not.
    pub log_format: LogFormat,
    /// Worker threads (default: one per core).
    pub workers: Option<usize>,
    /// `/-/metrics` open to anyone; otherwise it needs the registry's credentials.
    pub public_metrics: bool,
    /// How long requests in flight may run after SIGINT/SIGTERM (default
    /// [`SHUTDOWN_TIMEOUT`]).
    pub shutdown_timeout: Duration,
    /// Serve an upstream repository as a caching proxy, `location` being its cache.
    pub proxy: Option<ProxyConfig>,
    /// On a bucket: how long registry files are served from memory before being revalidated.
    pub bucket_revalidate: std::time::Duration,
}

/// The Hex API's settings.
pub struct ApiConfig {
    /// The repository name clients use.
    pub repo: String,
    /// Signs changes; `None`: the API is read-only.
    pub signer: Option<Signer>,
    /// The API keys file (`hexreg key add`), read again when it changes.
    pub keys_file: PathBuf,
    /// Anyone may fetch the repository's files (the API still needs a key).
    pub public_reads: bool,
    /// Date releases as they are published (Hex 2.5's `published_at`).
    pub release_dates: bool,
    /// The longest pause allowed while a client sends a request body.
    pub body_idle_timeout: Duration,
    /// How long after publication a release may be replaced or reverted.
    pub replace_window: crate::api::window::ReplaceWindow,
    /// How long a change waits for the registry's lock before 503.
    pub lock_timeout: Duration,
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The registry directory could not be opened.
    #[error("cannot open the registry directory {path}: {source}")]
    OpenRoot {
        /// The directory.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The keys file could not be read.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// No address of the list could be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The last address tried.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// No address was given.
    #[error("no address to listen on")]
    NoAddress,
    /// The bound socket's address could not be read.
    #[error("cannot read the address the server listens on: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// A signal handler could not be installed.
    #[error("cannot handle {signal}: {source}")]
    Signal {
        /// SIGTERM or SIGINT.
        signal: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the served files are.
pub(crate) enum Source {
    /// A directory: every served file must resolve to a path under it.
    Dir(files::Root),
    /// `s3://BUCKET/PREFIX`: every served file is an object under the prefix.
    Bucket(ObjectStorage),
}

/// What every request handler shares.
pub(crate) struct State {
    /// The registry's files.
    pub source: Source,
    /// HTTP Basic credentials; `None`: none configured.
    pub auth: Option<BasicAuth>,
    /// Whether fetching the repository's files needs credentials (Basic or an API key).
    pub reads_need_credentials: bool,
    /// The Hex API; `None` without keys.
    pub api: Option<api::Api>,
    /// The web pages; `None`: none are served.
    pub pages: Option<pages::Pages>,
    /// How each request is logged on stderr, or not.
    pub log_format: LogFormat,
    /// The health, readiness and metrics routes.
    pub service: health::Service,
    /// The caching proxy of an upstream repository; `None`: serve the storage as it is.
    pub proxy: Option<Arc<proxy::Proxy>>,
    /// On a bucket: the registry files held in memory (unused for a directory).
    pub bucket_cache: bucket_cache::BucketCache,
}

/// A server bound to its address, not yet accepting.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    state: Arc<State>,
    shown: String,
    shutdown_timeout: Duration,
}

impl Server {
    /// Opens the registry and the keys, starts the runtime and binds the first address of
    /// `config.bind` that works.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        let shown = config.location.shown();
        let source = match &config.location {
            Location::Local(local) => Source::Dir(
                files::Root::open(local.root().to_path_buf()).map_err(|source| {
                    ServerError::OpenRoot {
                        path: shown.clone(),
                        source,
                    }
                })?,
            ),
            Location::Object(bucket) => Source::Bucket(bucket.clone()),
        };
        let pages_location = config.location.clone();
        // The proxy first: it stores the upstream's public key, which its API reads the cache's
        // registry files with (a fresh cache has none yet).
        let proxy = config.proxy.map(|proxy| {
            let key = proxy.key.clone();
            (
                Arc::new(proxy::Proxy::new(proxy, pages_location.clone())),
                key,
            )
        });
        let api = match config.api {
            Some(api) => Some(configure_api(
                api,
                config.location,
                proxy.as_ref().map(|(_, key)| key.clone()),
            )?),
            None => None,
        };
        let mut pages = pages::Pages::new(
            pages_location,
            api.as_ref()
                .and_then(|api| api.signer.as_ref())
                .map(|signer| signer.public.clone())
                .or_else(|| proxy.as_ref().map(|(_, key)| key.clone())),
        );
        if let Some((proxy, _)) = &proxy {
            pages = pages.of_proxy(proxy.repo());
        }
        let filtered = proxy.as_ref().is_some_and(|(proxy, _)| proxy.filtered());
        let public_reads = api.as_ref().is_some_and(|a| a.public_reads);
        let reads_need_credentials = config.basic_auth.is_some()
            || (api.as_ref().is_some_and(|a| a.keys.is_some()) && !public_reads);
        raise_open_file_limit();

        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(workers) = config.workers {
            builder.worker_threads(workers);
        }
        let runtime = builder
            .enable_all()
            .thread_name("hexreg-serve")
            .build()
            .map_err(ServerError::Runtime)?;
        let listener = runtime.block_on(bind(&config.bind))?;
        let state = Arc::new(State {
            source,
            auth: config.basic_auth,
            reads_need_credentials,
            api,
            // A filtered proxy's cache holds the upstream's files unfiltered: no pages of it.
            pages: (!filtered).then_some(pages),
            log_format: config.log_format,
            service: health::Service::new(config.public_metrics),
            proxy: proxy.map(|(proxy, _)| proxy),
            bucket_cache: bucket_cache::BucketCache::new(config.bucket_revalidate),
        });
        Ok(Server {
            runtime,
            listener,
            state,
            shown,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The address the server listens on (the port chosen when port 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(ServerError::LocalAddr)
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting, lets requests in flight finish
    /// (for at most the shutdown timeout) and returns.
    pub fn run_until_signal(self) -> Result<(), ServerError> {
        let Server {
            runtime,
            listener,
            state,
            shown,
            shutdown_timeout,
        } = self;
        let result = runtime.block_on(serve(state, listener, &shown, shutdown_timeout));
        // Blocking file reads still running (a client that went away mid-download) are not
        // waited for past this.
        runtime.shutdown_timeout(Duration::from_secs(1));
        result
    }
}

/// The API's registry, signing key and keys file. `upstream_key` is a caching proxy's
/// upstream key, which signs the registry files its cache holds.
fn configure_api(
    config: ApiConfig,
    location: Location,
    upstream_key: Option<PublicKey>,
) -> Result<api::Api, ServerError> {
    let keys_shown = config.keys_file.display().to_string();
    let keys = KeyStore::open(&config.keys_file, move |reload| match reload {
        Reload::Loaded { keys } => respond::log_line(&format!("API keys reloaded: {keys} keys")),
        Reload::Failed(e) => respond::log_line(&format!(
            "error: the API keys file is broken: every request that needs a key gets 503 until it is fixed: {e}"
        )),
        Reload::Deleted => respond::log_line(&format!(
            "API keys file {keys_shown} deleted: no key is valid until it is back"
        )),
    })?;
    let public = match (&config.signer, upstream_key) {
        (Some(signer), _) => Some(signer.public.clone()),
        (None, Some(key)) => Some(key),
        (None, None) => location
            .storage()
            .read("public_key")
            .ok()
            .flatten()
            .and_then(|object| PublicKey::from_pem(&object.bytes).ok()),
    };
    // Tokens need a secret every server on the registry shares; without one (a read-only
    // storage) the API still takes keys.
    let token_secret = match oauth::load_secret(location.storage()) {
        Ok(secret) => Some(secret),
        Err(e) => {
            respond::log_line(&format!(
                "error: no OAuth tokens: cannot read or create the token secret: {e}"
            ));
            None
        }
    };
    Ok(api::Api {
        token_secret,
        search: search::SearchCache::default(),
        storage: location,
        repo: config.repo,
        signer: config.signer,
        public,
        keys: Some(keys),
        public_reads: config.public_reads,
        body_idle_timeout: config.body_idle_timeout,
        release_dates: config.release_dates,
        replace_window: config.replace_window,
        lock_timeout: config.lock_timeout,
    })
}

/// Each connection holds a socket and, while a large file is sent, the file: raise the soft
/// limit on open files to the hard one (as Go programs do), since the usual soft
/// default of 1024 would cap the server near a thousand clients. Best effort.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// Binds the first address of `addrs` that works; the error is the last address's.
async fn bind(addrs: &[SocketAddr]) -> Result<TcpListener, ServerError> {
    let mut last = None;
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((*addr, e)),
        }
    }
    let Some((addr, source)) = last else {
        return Err(ServerError::NoAddress);
    };
    Err(ServerError::Bind { addr, source })
}

async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    shown: &str,
    shutdown_timeout: Duration,
) -> Result<(), ServerError> {
    let local = listener.local_addr().map_err(ServerError::LocalAddr)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| ServerError::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| ServerError::Signal {
        signal: "SIGINT",
        source,
    })?;

    respond::log_line(&format!("serving {shown} on http://{local}"));
    if let Some(proxy) = &state.proxy {
        respond::log_line(&format!(
            "caching proxy of {}: {shown} is its cache{}",
            proxy.upstream(),
            if proxy.filtered() {
                "; filtered, its registry files re-signed with its own key (no web pages)"
            } else {
                ""
            }
        ));
    }
    if let Some(auth) = &state.auth {
        respond::log_line(&format!("HTTP Basic auth required: {}", auth.describe()));
    }
    if let Source::Dir(root) = &state.source
        && state.proxy.is_none()
        && !root.path().join("names").is_file()
    {
        respond::log_line(&format!(
            "warning: {shown} has no names file yet: create the registry with \
             `hexreg build {shown} --name=NAME --private-key=KEY`"
        ));
    }

    let graceful = GracefulShutdown::new();
    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small responses go out at once instead of waiting for Nagle's timer.
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let service = service_fn(move |mut req: hyper::Request<_>| {
                        // The audit trail names the client of each change.
                        req.extensions_mut().insert(api::Peer(peer));
                        respond::handle(Arc::clone(&state), req)
                    });
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    // A connection error is the client's (reset, timeout, malformed request):
                    // hyper has answered what could be answered; nothing to report.
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                Err(e) => {
                    if !is_per_connection_error(&e) {
                        respond::log_line(&format!("error: cannot accept a connection: {e}"));
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            },
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    drop(listener);
    respond::log_line(&format!(
        "{signal_name}: stopped accepting connections; finishing requests in flight"
    ));
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(shutdown_timeout) => {
            respond::log_line(&format!(
                "requests still running after {}s (the shutdown timeout): closing their connections",
                shutdown_timeout.as_secs_f64()
            ));
        }
        _ = sigint.recv() => respond::log_line("SIGINT again: closing all connections now"),
        _ = sigterm.recv() => respond::log_line("SIGTERM again: closing all connections now"),
    }
    respond::log_line("stopped");
    Ok(())
}

/// Accept errors that concern one connection only (the client gave up before it was
/// accepted); the next accept can proceed at once.
fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}
