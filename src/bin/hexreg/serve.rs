//! `hexreg serve`: the arguments, checked and converted into a [`hexreg::server::Config`]; the
//! server itself is the library's [`hexreg::server`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hexreg::server::{ApiConfig, BasicAuth, Config, LogFormat, Server, ServerError};
use hexreg::storage::Location;
use hexreg::storage::local::LocalDir;

use crate::options::open_location;
use crate::output::usage;

pub const AFTER_HELP: &str = "Examples:
  hexreg serve public
  HEXREG_AUTH=ci:s3cret hexreg serve public --bind 0.0.0.0:8000
  hexreg serve public --bind [::]:8443 --auth-file users.htpasswd
  hexreg serve public --name=acme --private-key=key.pem --keys=keys --bind 0.0.0.0:8000
  AWS_PROFILE=ci hexreg serve s3://my-bucket/repo --name=acme --private-key=key.pem --keys=keys
  hexreg serve cache --upstream https://repo.hex.pm --only phoenix --cooldown 7d \\
      --name=vetted --private-key=proxy_key.pem

Serves the files under PUBLIC_DIR (names, versions, packages/*, public_key, tarballs/*) to
GET and HEAD with ETag, Last-Modified and 304 replies to If-None-Match / If-Modified-Since.
Dotfiles (hexreg's temporary files among them), directories, and paths that lead outside
PUBLIC_DIR (`..`, encoded slashes, symlinks) get 404. From s3://BUCKET/PREFIX the objects
under the prefix are served the same way, with the object's ETag and Last-Modified. Each
request is logged on stderr as `METHOD PATH STATUS BYTES MSms` (--log-format json: one JSON
object per line). SIGINT or SIGTERM stops accepting connections, lets the requests in flight
finish (a publish under way completes) for up to --shutdown-timeout seconds, and exits 0.

Service routes: /-/health answers 200 while the process runs; /-/ready answers 200 when the
storage answers and the keys file is valid, 503 with the reason otherwise (both open, without
registry data); /-/metrics is Prometheus text (requests, bytes, latency, publishes, lock
waits), behind the credentials unless --public-metrics.

Every option can be set in the environment instead: HEXREG_ and the option's name in capitals
(HEXREG_BIND, HEXREG_KEYS, HEXREG_PRIVATE_KEY_FILE...), as each option's [env: ...] says; the
command line wins. Secrets are given as file paths, never as values on the command line.

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
--public-reads), as the `authorization` header or as the password of HTTP Basic credentials
(http://any:KEY@host/); a write key changes it (a key made with --packages only the packages
it names); without --private-key the API is read-only. A release can be replaced or reverted
only within --replace-window of its publication. Every change goes through the same engine and
lock as the other commands, and is recorded in the audit trail (`hexreg audit`).

Caching proxy: with --upstream URL (hex.pm: https://repo.hex.pm), PUBLIC_DIR or the bucket is
the cache of that repository: each file is fetched the first time a client asks, verified
(signatures with --upstream-key, tarballs against the signed checksums), kept and served from
then on; clients use HEX_MIRROR=URL (mix) or HEX_CDN=URL (rebar3). With --only, --only-file
or --cooldown it serves a selection (as `hexreg mirror --only`) and the releases old enough,
signed with --private-key under --name: clients then use the proxy's public key and name.
See docs/mirror.md.";

/// Environment variable holding `USER:PASS` when `--auth` is not given.
pub const AUTH_ENV: &str = "HEXREG_AUTH";

/// Environment variable holding the keys file when `--keys` is not given.
pub const KEYS_ENV: &str = "HEXREG_KEYS";

/// `hexreg serve` arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The registry to publish: the PUBLIC_DIR of `hexreg build`, or a bucket prefix
    /// `s3://BUCKET/PREFIX` (credentials, region and endpoint from the AWS environment).
    #[arg(value_name = "PUBLIC_DIR", env = "HEXREG_PUBLIC_DIR")]
    pub public_dir: String,
    /// Address and port to listen on: 0.0.0.0:PORT or [::]:PORT for every interface, port 0 for
    /// any free port (the one chosen is printed).
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8000",
        env = "HEXREG_BIND"
    )]
    pub bind: String,
    /// Require HTTP Basic credentials USER:PASS. Visible in process lists: prefer the
    /// HEXREG_AUTH environment variable, or an htpasswd file (--auth-file) [env: HEXREG_AUTH].
    #[arg(long, value_name = "USER:PASS")]
    pub auth: Option<String>,
    /// Also accept the users of an htpasswd file with bcrypt hashes (`htpasswd -B`), read at
    /// startup.
    #[arg(long, value_name = "FILE", env = "HEXREG_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// Do not log each request on stderr (errors are still printed).
    #[arg(long, short, env = "HEXREG_QUIET")]
    pub quiet: bool,
    /// How each request is logged on stderr: `text` (`METHOD PATH STATUS BYTES MSms`) or `json`
    /// (one JSON object per line: time, method, path, status, bytes, ms).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text, env = "HEXREG_LOG_FORMAT")]
    pub log_format: LogFormatArg,
    /// Repository name, for the Hex API under /api (`mix hex.publish`, `rebar3 hex publish`),
    /// or the name a filtered proxy (--only, --only-file, --cooldown) signs its files under.
    #[arg(long, value_name = "NAME", env = "HEXREG_NAME")]
    pub name: Option<String>,
    /// Path of the RSA private key that signs the registry (never the key itself): with it the
    /// API accepts publishes, retirements, reverts and docs; without it the API is read-only.
    /// A filtered proxy (--only, --only-file, --cooldown) signs its registry files with it.
    #[arg(long, value_name = "KEY", env = "HEXREG_PRIVATE_KEY_FILE")]
    pub private_key: Option<PathBuf>,
    /// API keys file (`hexreg key add`), read again when it changes: a read key fetches the
    /// repository and reads the API, a write key also changes it.
    #[arg(long, value_name = "KEYS_FILE", env = KEYS_ENV)]
    pub keys: Option<PathBuf>,
    /// With --keys: let anyone fetch the repository's files (the API still needs a key).
    #[arg(long, env = "HEXREG_PUBLIC_READS")]
    pub public_reads: bool,
    /// With --keys: record when each release is published (`published_at`, which Hex 2.5's
    /// HEX_COOLDOWN reads), as `hexreg add --published-at` does [default: the registry's
    /// choice, made by `hexreg build --published-at`, else false].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        env = "HEXREG_PUBLISHED_AT"
    )]
    pub published_at: Option<bool>,
    /// Let anyone read /-/metrics; otherwise it needs the registry's credentials (Basic or an
    /// API key). /-/health and /-/ready are always open.
    #[arg(long, env = "HEXREG_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// On SIGTERM or SIGINT, how long, in seconds, requests in flight may take to finish
    /// before their connections are closed.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "30",
        env = "HEXREG_SHUTDOWN_TIMEOUT"
    )]
    pub shutdown_timeout: u64,
    /// The longest pause, in seconds, allowed while a client sends a request body (a publish,
    /// docs); a client that stalls longer, or takes over ten times this for the whole body,
    /// gets 408.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "30",
        env = "HEXREG_BODY_TIMEOUT"
    )]
    pub body_timeout: std::num::NonZeroU64,
    /// With --keys: how long after its publication a release may be replaced or reverted
    /// through the API (`30m`, `1h`, `2d`; `0`: never; `unlimited`: always, as hex.pm's
    /// organizations). `hexreg add --replace` and `hexreg remove` are not limited.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1h",
        env = "HEXREG_REPLACE_WINDOW"
    )]
    pub replace_window: hexreg::api::window::ReplaceWindow,
    /// With --keys: how many seconds a change through the API waits for the registry's lock
    /// (another change in progress) before it gets 503 with Retry-After.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "10",
        env = "HEXREG_LOCK_TIMEOUT"
    )]
    pub lock_timeout: u64,
    /// Serve this upstream Hex repository (e.g. https://repo.hex.pm) as a caching proxy, with
    /// PUBLIC_DIR (created if missing) or the bucket as its cache: files are fetched the first
    /// time a client asks, verified, kept and served from then on.
    #[arg(long, value_name = "URL", env = "HEXREG_UPSTREAM")]
    pub upstream: Option<String>,
    /// With --upstream: the upstream's repository name, which its signed files must hold.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "hexpm",
        env = "HEXREG_UPSTREAM_NAME"
    )]
    pub upstream_name: String,
    /// With --upstream: the upstream's public key (PEM, PKCS#1 or SPKI) [default: hex.pm's].
    #[arg(long, value_name = "FILE", env = "HEXREG_UPSTREAM_KEY")]
    pub upstream_key: Option<PathBuf>,
    /// With --upstream: how long a registry file checked upstream is served before it is
    /// checked again: `30s`, `5m`, `1h`, `1d`, or seconds.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        env = "HEXREG_UPSTREAM_TTL"
    )]
    pub upstream_ttl: String,
    /// With --upstream: serve only this package and what it depends on, optionally only the
    /// releases a requirement allows (`plug` or `plug:~> 1.14`), exactly as `hexreg mirror
    /// --only`; repeatable or comma-separated. Needs --name and --private-key: the proxy then
    /// signs its registry files itself.
    #[arg(
        long,
        value_name = "PKG[:REQUIREMENT]",
        value_delimiter = ',',
        env = "HEXREG_ONLY"
    )]
    pub only: Vec<String>,
    /// With --upstream: read --only selections from FILE, one `PKG[:REQUIREMENT]` a line (`#`
    /// comments).
    #[arg(long, value_name = "FILE", env = "HEXREG_ONLY_FILE")]
    pub only_file: Option<PathBuf>,
    /// With --upstream: hide releases younger than this by the upstream's release dates
    /// (`published_at`; a release without one is shown): `7d`, `12h`, or seconds. Needs --name
    /// and --private-key: the proxy then signs its registry files itself.
    #[arg(long, value_name = "DURATION", env = "HEXREG_COOLDOWN")]
    pub cooldown: Option<String>,
    /// With --upstream: seconds before connecting to the upstream, or a read, times out
    /// (the client then gets 504).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        env = "HEXREG_UPSTREAM_TIMEOUT"
    )]
    pub upstream_timeout: u64,
    /// On s3://: how long, in seconds, registry files (names, versions, packages/*,
    /// public_key) are served from memory before the bucket is asked again whether they changed
    /// (a conditional GET); 0 asks at every request. A publish through another replica is seen
    /// here within this time.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "2",
        env = "HEXREG_BUCKET_REVALIDATE"
    )]
    pub bucket_revalidate: u64,
    #[command(flatten)]
    pub bucket: crate::options::BucketArgs,
}

/// `--log-format` values.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// `METHOD PATH STATUS BYTES MSms`
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the server until SIGINT or SIGTERM; `jobs` worker threads (default: one per core).
pub fn run(args: ServeArgs, jobs: Option<usize>) -> Result<()> {
    let location = match open_location(&args.public_dir, &args.bucket)? {
        Location::Local(local) if args.upstream.is_some() => {
            local.create_root().with_context(|| {
                format!(
                    "cannot create the proxy's cache directory {}",
                    args.public_dir
                )
            })?;
            let root = check_public_dir(Path::new(&args.public_dir))?;
            Location::Local(LocalDir::new(&root.display().to_string()))
        }
        Location::Local(_) => {
            let root = check_public_dir(Path::new(&args.public_dir))?;
            Location::Local(LocalDir::new(&root.display().to_string()))
        }
        bucket @ Location::Object(_) => bucket,
    };
    let env_auth = match std::env::var(AUTH_ENV) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{AUTH_ENV} is not valid UTF-8: set it to USER:PASS, or unset it")
        }
    };
    // --auth wins over HEXREG_AUTH.
    let pair = match (&args.auth, &env_auth) {
        (Some(value), _) => Some((value.as_str(), "--auth")),
        (None, Some(value)) => Some((value.as_str(), AUTH_ENV)),
        (None, None) => None,
    };
    let basic_auth =
        BasicAuth::configure(pair, args.auth_file.as_deref()).map_err(|e| match e {
            hexreg::server::AuthError::ReadFile { .. } => anyhow::Error::new(e).context(format!(
                "--auth-file {}",
                args.auth_file.as_deref().unwrap_or(Path::new("")).display()
            )),
            other => anyhow::Error::new(other),
        })?;
    if basic_auth.is_some() && args.public_reads {
        usage!(
            "--public-reads lets anyone fetch the repository, which --auth, --auth-file or {AUTH_ENV} would protect: give one or the other"
        );
    }
    let bind = parse_bind(&args.bind)?;
    let proxy = crate::proxy::configure(&args, &location)?;
    let api = configure_api(&args, &location)?;
    let config = Config {
        location,
        bind,
        basic_auth,
        api,
        log_format: match (args.quiet, args.log_format) {
            (true, _) => LogFormat::Off,
            (false, LogFormatArg::Text) => LogFormat::Text,
            (false, LogFormatArg::Json) => LogFormat::Json,
        },
        workers: jobs,
        public_metrics: args.public_metrics,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        proxy,
        bucket_revalidate: std::time::Duration::from_secs(args.bucket_revalidate),
    };
    let server = Server::bind(config).map_err(|e| bind_error(&args.bind, e))?;
    server.run_until_signal()?;
    Ok(())
}

/// A bind failure names the flag and what to do.
fn bind_error(bind: &str, e: ServerError) -> anyhow::Error {
    let ServerError::Bind { source, .. } = &e else {
        return e.into();
    };
    let hint = match source.kind() {
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
    anyhow::anyhow!("--bind {bind}: {e}: {hint}")
}

/// The API's settings, when --keys is given (from the flag or HEXREG_KEYS). The keys file and
/// the private key must lie outside PUBLIC_DIR.
fn configure_api(args: &ServeArgs, location: &Location) -> Result<Option<ApiConfig>> {
    // clap reads HEXREG_KEYS; an empty value means none.
    let keys_path = args.keys.clone().filter(|p| !p.as_os_str().is_empty());
    // A filtered proxy's --name and --private-key are its own (crate::proxy checked them).
    let filtered_proxy = args.upstream.is_some() && crate::proxy::filtered(args);
    let Some(keys_path) = keys_path else {
        for (given, flag) in [
            (args.name.is_some() && !filtered_proxy, "--name"),
            (
                args.private_key.is_some() && !filtered_proxy,
                "--private-key",
            ),
            (args.public_reads, "--public-reads"),
            (args.published_at.is_some(), "--published-at"),
        ] {
            if given {
                usage!(
                    "{flag} is for the Hex API, which needs API keys: give --keys KEYS_FILE (or set {KEYS_ENV}); create keys with `hexreg key add --keys KEYS_FILE LABEL`"
                );
            }
        }
        return Ok(None);
    };
    if filtered_proxy {
        usage!(
            "--keys with a filtered proxy (--only, --only-file, --cooldown): the Hex API would read the upstream's unfiltered files in the cache; require credentials with --auth or --auth-file instead"
        );
    }
    // A caching proxy's registry files are the upstream's: its API reads them by its name.
    let repo = match (&args.name, &args.upstream) {
        (Some(name), Some(_)) if *name != args.upstream_name => usage!(
            "--name {name} with --upstream: the proxy's registry files are the upstream's, signed for the repository `{}` (--upstream-name); leave --name out or give the same name",
            args.upstream_name
        ),
        (Some(name), _) => name.clone(),
        (None, Some(_)) => args.upstream_name.clone(),
        (None, None) => usage!("--keys needs --name NAME, the repository name clients use"),
    };
    for (flag, path) in [
        ("--keys", Some(&keys_path)),
        ("--private-key", args.private_key.as_ref()),
    ] {
        if let Some(path) = path
            && location.holds(path)
        {
            bail!(
                "{flag} {} lies inside PUBLIC_DIR {}, which is published: move it out",
                path.display(),
                location.shown()
            );
        }
    }
    let signer = match &args.private_key {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| {
                format!("cannot read private key {} (--private-key)", path.display())
            })?;
            let key = hexreg::format::signing::PrivateKey::from_pem(&text)
                .map_err(|e| anyhow::anyhow!("private key {} {e}", path.display()))?;
            Some(hexreg::engine::Signer::new(
                key,
                &path.display().to_string(),
            ))
        }
        None => None,
    };
    Ok(Some(ApiConfig {
        repo,
        signer,
        keys_file: keys_path,
        public_reads: args.public_reads,
        release_dates: match args.published_at {
            Some(on) => on,
            // The registry's choice (`hexreg build --published-at` records it).
            None => hexreg::engine::Settings::read(location.storage())?.published_at == Some(true),
        },
        body_idle_timeout: Duration::from_secs(args.body_timeout.get()),
        replace_window: args.replace_window,
        lock_timeout: Duration::from_secs(args.lock_timeout),
    }))
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
