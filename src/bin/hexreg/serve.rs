//! `hexreg serve`: the registry over HTTP/1.1, for mix, rebar3 and gleam.
//!
//! Shape: check PUBLIC_DIR and the credentials, bind, then accept connections on a tokio
//! runtime (one task per connection, hyper's HTTP/1.1 with keep-alive) until SIGINT or
//! SIGTERM; then stop accepting, let requests in flight finish for a short grace period, and
//! return. What a request may see is decided in `files` (path confinement, no dotfiles, no
//! directories), `auth` (HTTP Basic) and `respond` (methods, conditional requests, headers,
//! the per-request log line).

mod api;
mod auth;
mod files;
mod pages;
mod respond;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hexreg::storage::local::LocalDir;
use hexreg::storage::object::ObjectStorage;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::options::Target;

pub const AFTER_HELP: &str = "Examples:
  hexreg serve public
  HEXREG_AUTH=ci:s3cret hexreg serve public --bind 0.0.0.0:8000
  hexreg serve public --bind [::]:8443 --auth-file users.htpasswd
  hexreg serve public --name=acme --private-key=key.pem --keys=keys --bind 0.0.0.0:8000
  AWS_PROFILE=ci hexreg serve s3://my-bucket/repo --name=acme --private-key=key.pem --keys=keys

Serves the files under PUBLIC_DIR (names, versions, packages/*, public_key, tarballs/*) to
GET and HEAD with ETag, Last-Modified and 304 replies to If-None-Match / If-Modified-Since.
Dotfiles (hexreg's temporary files among them), directories, and paths that lead outside
PUBLIC_DIR (`..`, encoded slashes, symlinks) get 404. From s3://BUCKET/PREFIX the objects
under the prefix are served the same way, with the object's ETag and Last-Modified. Each request is logged on stderr as
`METHOD PATH STATUS BYTES MSms`. SIGINT or SIGTERM stops the server after the requests in
flight finish.

Web pages, behind the same credentials: / lists the packages (search by name and
description with /?q=WORDS), /-/packages/NAME shows a package (versions, release dates,
retirements, advisories, dependencies, checksums, downloads), /-/packages/NAME/VERSION its
files and metadata, and /-/docs/NAME/VERSION/ (or /-/docs/NAME/latest/, the newest version
not retired) browses its docs tarball docs/NAME-VERSION.tar.gz without unpacking it.

Credentials: HTTP Basic, realm \"hexreg\". USER:PASS comes from --auth or, to keep it out of
process lists and shell history, from the HEXREG_AUTH environment variable (--auth wins).
--auth-file adds the users of an htpasswd file with bcrypt hashes (`htpasswd -B FILE USER`);
it combines with either. Basic auth sends the password in clear: put a TLS proxy in front
when the registry leaves this machine or a trusted network.

Hex API: with --name and --keys (keys made by `hexreg key add`), /api answers mix and rebar3:
publish (`HEX_API_URL=http://HOST:8000/api HEX_API_KEY=KEY mix hex.publish package`), revert,
retire, unretire, docs, package info. A read key also fetches the repository's files (unless
--public-reads), a write key changes it; without --private-key the API is read-only. Every
change goes through the same engine and lock as the other commands.";

/// Environment variable holding `USER:PASS` when `--auth` is not given.
pub const AUTH_ENV: &str = "HEXREG_AUTH";

/// How long requests in flight may run after SIGINT/SIGTERM before the server exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A client must send a complete request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error such as "too many open files", so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// `hexreg serve` arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The registry to publish: the PUBLIC_DIR of `hexreg build`, or a bucket prefix
    /// `s3://BUCKET/PREFIX` (credentials, region and endpoint from the AWS environment).
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: String,
    /// Address and port to listen on: 0.0.0.0:PORT or [::]:PORT for every interface, port 0 for
    /// any free port (the one chosen is printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8000")]
    pub bind: String,
    /// Require HTTP Basic credentials USER:PASS. Visible in process lists: prefer the
    /// HEXREG_AUTH environment variable.
    #[arg(long, value_name = "USER:PASS")]
    pub auth: Option<String>,
    /// Also accept the users of an htpasswd file with bcrypt hashes (`htpasswd -B`), read at
    /// startup.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Do not log each request on stderr (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Repository name, for the Hex API under /api (`mix hex.publish`, `rebar3 hex publish`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// RSA private key that signs the registry: with it the API accepts publishes, retirements,
    /// reverts and docs; without it the API is read-only.
    #[arg(long, value_name = "KEY")]
    pub private_key: Option<PathBuf>,
    /// API keys file (`hexreg key add`), read again when it changes: a read key fetches the
    /// repository and reads the API, a write key also changes it [env: HEXREG_KEYS].
    #[arg(long, value_name = "KEYS_FILE")]
    pub keys: Option<PathBuf>,
    /// With --keys: let anyone fetch the repository's files (the API still needs a key).
    #[arg(long)]
    pub public_reads: bool,
    /// With --keys: record when each release is published (`published_at`, which Hex 2.5's
    /// HEX_COOLDOWN reads), as `hexreg add --published-at` does.
    #[arg(long)]
    pub published_at: bool,
    /// The longest pause, in seconds, allowed while a client sends a request body (a publish,
    /// docs); a client that stalls longer, or takes over ten times this for the whole body,
    /// gets 408.
    #[arg(long, value_name = "SECS", default_value = "30")]
    pub body_timeout: std::num::NonZeroU64,
    #[command(flatten)]
    pub bucket: crate::options::BucketArgs,
}

/// Where the served files are.
pub(crate) enum Source {
    /// PUBLIC_DIR: every served file must resolve to a path under it.
    Dir(files::Root),
    /// `s3://BUCKET/PREFIX`: every served file is an object under the prefix.
    Bucket(ObjectStorage),
}

/// What every request handler shares.
pub(crate) struct State {
    /// The registry's files.
    pub source: Source,
    /// HTTP Basic credentials; `None`: none configured.
    pub auth: Option<auth::Auth>,
    /// Whether fetching the repository's files needs credentials (Basic or an API key).
    pub reads_need_credentials: bool,
    /// The Hex API; `None` without --keys.
    pub api: Option<api::Api>,
    /// The web pages; `None`: none are served.
    pub pages: Option<pages::Pages>,
    /// Log one line per request on stderr.
    pub log_requests: bool,
}

/// Runs the server until SIGINT or SIGTERM; `jobs` worker threads (default: one per core).
pub fn run(args: ServeArgs, jobs: Option<usize>) -> Result<()> {
    let target = match Target::open(&args.public_dir, &args.bucket)? {
        Target::Local(_) => {
            let root = check_public_dir(Path::new(&args.public_dir))?;
            Target::Local(LocalDir::new(&root.display().to_string()))
        }
        bucket @ Target::Object(_) => bucket,
    };
    let env_auth = match std::env::var(AUTH_ENV) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{AUTH_ENV} is not valid UTF-8: set it to USER:PASS, or unset it")
        }
    };
    let auth = auth::Auth::configure(
        args.auth.as_deref(),
        env_auth.as_deref(),
        args.auth_file.as_deref(),
    )?;
    let addrs = parse_bind(&args.bind)?;
    let source = match &target {
        Target::Local(local) => Source::Dir(
            files::Root::open(local.root().to_path_buf())
                .with_context(|| format!("cannot open PUBLIC_DIR {}", args.public_dir))?,
        ),
        Target::Object(bucket) => Source::Bucket(bucket.clone()),
    };
    let pages_target = match &target {
        Target::Local(local) => Target::Local(LocalDir::new(&local.root().display().to_string())),
        Target::Object(bucket) => Target::Object(bucket.clone()),
    };
    let api = configure_api(&args, target)?;
    let pages = pages::Pages::new(
        pages_target,
        api.as_ref()
            .and_then(|api| api.signer.as_ref())
            .map(|signer| signer.public.clone()),
    );
    let reads_need_credentials =
        auth.is_some() || (api.as_ref().is_some_and(|a| a.keys.is_some()) && !args.public_reads);
    raise_open_file_limit();

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(jobs) = jobs {
        builder.worker_threads(jobs);
    }
    let runtime = builder
        .enable_all()
        .thread_name("hexreg-serve")
        .build()
        .context("cannot start the async runtime")?;
    let state = Arc::new(State {
        source,
        auth,
        reads_need_credentials,
        api,
        pages: Some(pages),
        log_requests: !args.quiet,
    });
    let result = runtime.block_on(serve(state, &args, &addrs));
    // Blocking file reads still running (a client that went away mid-download) are not
    // waited for past this.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The API's registry, signing key and keys file, when --keys is given (from the flag or
/// HEXREG_KEYS). The keys file and the private key must lie outside PUBLIC_DIR.
fn configure_api(args: &ServeArgs, storage: Target) -> Result<Option<api::Api>> {
    let keys_path = match (&args.keys, std::env::var_os(KEYS_ENV)) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(path)) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => None,
    };
    let Some(keys_path) = keys_path else {
        for (given, flag) in [
            (args.name.is_some(), "--name"),
            (args.private_key.is_some(), "--private-key"),
            (args.public_reads, "--public-reads"),
            (args.published_at, "--published-at"),
        ] {
            if given {
                bail!(
                    "{flag} is for the Hex API, which needs API keys: give --keys KEYS_FILE (or set {KEYS_ENV}); create keys with `hexreg key add --keys KEYS_FILE LABEL`"
                );
            }
        }
        return Ok(None);
    };
    let Some(repo) = args.name.clone() else {
        bail!("--keys needs --name NAME, the repository name clients use");
    };
    for (flag, path) in [
        ("--keys", Some(&keys_path)),
        ("--private-key", args.private_key.as_ref()),
    ] {
        if let Some(path) = path
            && storage.holds(path)
        {
            bail!(
                "{flag} {} lies inside PUBLIC_DIR {}, which is published: move it out",
                path.display(),
                storage.shown()
            );
        }
    }
    let keys = hexreg::api_keys::KeyStore::open(&keys_path, |reload| match reload {
        hexreg::api_keys::Reload::Loaded { keys } => {
            respond::log_line(&format!("API keys reloaded: {keys} keys"))
        }
        hexreg::api_keys::Reload::Failed(e) => respond::log_line(&format!(
            "error: API keys not reloaded, keeping the old ones: {e}"
        )),
    })?;
    let signer = match &args.private_key {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| {
                format!("cannot read private key {} (--private-key)", path.display())
            })?;
            let key = hexreg::signing::PrivateKey::from_pem(&text)
                .map_err(|e| anyhow::anyhow!("private key {} {e}", path.display()))?;
            Some(hexreg::engine::Signer::new(
                key,
                &path.display().to_string(),
            ))
        }
        None => None,
    };
    let public = match &signer {
        Some(signer) => Some(signer.public.clone()),
        None => storage
            .storage()
            .read("public_key")
            .ok()
            .flatten()
            .and_then(|object| hexreg::signing::PublicKey::from_pem(&object.bytes).ok()),
    };
    Ok(Some(api::Api {
        storage,
        repo,
        signer,
        public,
        keys: Some(keys),
        body_idle_timeout: Duration::from_secs(args.body_timeout.get()),
        release_dates: args.published_at,
    }))
}

/// Environment variable holding the keys file when `--keys` is not given.
pub const KEYS_ENV: &str = "HEXREG_KEYS";

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

/// PUBLIC_DIR must exist and be a directory; returns its canonical path.
fn check_public_dir(dir: &Path) -> Result<PathBuf> {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "PUBLIC_DIR {shown} does not exist: give the directory that `hexreg build` writes \
             the registry to"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read PUBLIC_DIR {shown}")),
    };
    if !meta.is_dir() {
        bail!(
            "PUBLIC_DIR {shown} is not a directory: give the directory that holds names, \
             versions, packages/ and tarballs/"
        );
    }
    std::fs::canonicalize(dir).with_context(|| format!("cannot resolve PUBLIC_DIR {shown}"))
}

/// `--bind`: `ADDR:PORT` (`127.0.0.1:8000`, `[::1]:8000`) or `HOST:PORT` (`localhost:8000`).
fn parse_bind(bind: &str) -> Result<Vec<SocketAddr>> {
    if let Ok(addr) = bind.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let usage = "expected ADDR:PORT such as 127.0.0.1:8000, 0.0.0.0:8000 or [::1]:8000";
    if !bind.contains(':') {
        bail!("--bind {bind:?} is not ADDR:PORT: {usage}");
    }
    let addrs: Vec<SocketAddr> = match bind.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            bail!("--bind {bind:?} is not an address this machine can listen on ({e}): {usage}")
        }
    };
    if addrs.is_empty() {
        bail!("--bind {bind:?} resolves to no address: {usage}");
    }
    Ok(addrs)
}

/// Binds the first address of `addrs` that works; the error names the flag and the cause.
async fn bind(bind: &str, addrs: &[SocketAddr]) -> Result<TcpListener> {
    let mut last = None;
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((*addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        bail!("--bind {bind:?} resolves to no address");
    };
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another program is listening on that port: stop it or choose another port with --bind"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: choose a port above 1023 with --bind"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "this machine has no such address: use 127.0.0.1, 0.0.0.0, [::] or one of its own \
             addresses"
        }
        _ => "check the address and port given to --bind",
    };
    bail!("--bind {bind}: cannot listen on {addr}: {e}: {hint}")
}

async fn serve(state: Arc<State>, args: &ServeArgs, addrs: &[SocketAddr]) -> Result<()> {
    let listener = bind(&args.bind, addrs).await?;
    let local = listener
        .local_addr()
        .context("cannot read the address the server listens on")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    respond::log_line(&format!("serving {} on http://{local}", args.public_dir));
    if let Some(auth) = &state.auth {
        respond::log_line(&format!("HTTP Basic auth required: {}", auth.describe()));
    }
    if let Source::Dir(root) = &state.source
        && !root.path().join("names").is_file()
    {
        respond::log_line(&format!(
            "warning: {} has no names file yet: create the registry with \
             `hexreg build {} --name=NAME --private-key=KEY`",
            args.public_dir, args.public_dir
        ));
    }

    let graceful = GracefulShutdown::new();
    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small responses go out at once instead of waiting for Nagle's timer.
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let service = service_fn(move |req| respond::handle(Arc::clone(&state), req));
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
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            respond::log_line(&format!(
                "requests still running after {}s: closing their connections",
                SHUTDOWN_GRACE.as_secs()
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
