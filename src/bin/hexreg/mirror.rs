//! `hexreg mirror`: the arguments, the upstream and keys they name, the engine's
//! [`hexreg::engine::mirror::mirror`] on the destination, and the report.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use hexreg::engine::Signer;
use hexreg::engine::lock_mirror::{LockMirrorOptions, mirror_locked};
use hexreg::engine::mirror::{MirrorOptions, Mode, mirror};
use hexreg::format::signing::{PrivateKey, PublicKey, PublicKeyFormat};
use hexreg::mirror::Only;
use hexreg::mirror::upstream::{HttpOptions, HttpUpstream};
use hexreg::storage::Location;

use crate::options::open_location;
use crate::output::print_changes;
use crate::progress::Bar;

/// hex.pm's repository, the default upstream.
pub const HEXPM_URL: &str = "https://repo.hex.pm";

/// hex.pm's public key, as Hex itself carries it (hexpm/hex `lib/hex/repo.ex`).
pub const HEXPM_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApqREcFDt5vV21JVe2QNB
Edvzk6w36aNFhVGWN5toNJRjRJ6m4hIuG4KaXtDWVLjnvct6MYMfqhC79HAGwyF+
IqR6Q6a5bbFSsImgBJwz1oadoVKD6ZNetAuCIK84cjMrEFRkELtEIPNHblCzUkkM
3rS9+DPlnfG8hBvGi6tvQIuZmXGCxF/73hU0/MyGhbmEjIKRtG6b0sJYKelRLTPW
XgK7s5pESgiwf2YC/2MGDXjAJfpfCd0RpLdvd4eRiXtVlE9qO9bND94E7PgQ/xqZ
J1i2xWFndWa6nfFnRxZmCStCOZWYYPlaxr+FZceFbpMwzTNs4g3d4tLNUcbKAIH4
0wIDAQAB
-----END PUBLIC KEY-----
";

/// The environment variable holding the `authorization` header for the upstream.
pub const AUTH_ENV: &str = "HEXREG_MIRROR_AUTH";

/// Parallel downloads when `--jobs` is not given.
const DEFAULT_JOBS: usize = 8;

pub const AFTER_HELP: &str = "Examples:
  hexreg mirror public                                   # all of hex.pm, upstream's signatures
  hexreg mirror public --only phoenix:'~> 1.7' --only jason \\
      --name hexpm --private-key mirror_key.pem          # a vetted subset, re-signed
  hexreg mirror s3://bucket/hex --from http://10.0.0.5:8000 --upstream-name acme \\
      --upstream-key acme_public_key.pem

Every registry file is verified (signature, repository and package names) and every tarball
checked against the checksum upstream's signed registry records before it is kept; anything
wrong stops the run with an error naming the URL, and the mirror's registry is left as it was.

Full mirror (no --only): upstream's files are kept byte for byte, so clients keep upstream's
public key (mix: HEX_MIRROR_URL=http://your-mirror).

Filtered mirror (--only / --only-file): each selection keeps the releases its requirement
allows (every release without one); every dependency of a kept release, optional ones
included, keeps the releases of its package that the dependency's requirement allows, and so
on. The result is a registry of its own signed with --private-key under --name (use `hexpm`
to replace hex.pm: mix hex.repo set hexpm --url URL --public-key PUBLIC_DIR/public_key).
Retirements are carried over.

Runs are incremental: registry files are fetched with If-None-Match (ETags kept in
PUBLIC_DIR/.hexreg-mirror/, never served), tarballs already present with the right checksum
are not fetched again, and a run stopped at any point leaves the previous mirror intact; the
next run completes it. Credentials for the upstream: in the URL (https://USER:PASS@HOST, sent
as Basic, or https://KEY@HOST, sent as the key as Hex clients do) or in HEXREG_MIRROR_AUTH
(sent verbatim as the authorization header). Only the upstream's host is contacted:
redirects are refused and proxy variables are ignored. --jobs sets the parallel downloads
[default: 8].";

/// `hexreg mirror` arguments.
#[derive(clap::Args)]
pub struct MirrorArgs {
    /// The mirror's directory (created if missing), or `s3://BUCKET/PREFIX`.
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: String,
    /// The upstream repository's root URL.
    #[arg(long, value_name = "URL", default_value = HEXPM_URL)]
    pub from: String,
    /// The upstream's repository name, which its signed files must hold.
    #[arg(long, value_name = "NAME", default_value = "hexpm")]
    pub upstream_name: String,
    /// The upstream's public key (PEM, PKCS#1 or SPKI) [default: hex.pm's].
    #[arg(long, value_name = "FILE")]
    pub upstream_key: Option<PathBuf>,
    /// Mirror only this package (and what it depends on), optionally only the releases a
    /// requirement allows: `plug` or `plug:~> 1.14`. Repeatable.
    #[arg(long, value_name = "PKG[:REQUIREMENT]")]
    pub only: Vec<String>,
    /// Read selections from FILE, one `PKG[:REQUIREMENT]` a line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub only_file: Option<PathBuf>,
    /// Mirror exactly the Hex releases this lock file pins (`mix.lock` or `rebar.lock`),
    /// each checked against the lock's checksums, with the upstream's signed registry files
    /// unchanged (what `hexreg serve --upstream` caches). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub only_lock: Vec<PathBuf>,
    /// A filtered mirror's repository name, as its clients configure it (e.g. `hexpm`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The RSA private key that signs a filtered mirror; keep it outside PUBLIC_DIR.
    #[arg(long, value_name = "KEY")]
    pub private_key: Option<PathBuf>,
    /// Retries of a request after a connection failure, a timeout or a 5xx.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub retries: u32,
    /// Seconds before connecting or a read times out.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Print nothing but errors: no `* creating ...` lines, no progress bar, no summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Fail at once, instead of waiting, when another hexreg run is changing PUBLIC_DIR.
    #[arg(long)]
    pub no_wait: bool,
    /// Accept a signed registry file from upstream that lacks releases or packages this
    /// mirror holds from it (refused otherwise, as a rollback to an older file).
    #[arg(long)]
    pub allow_rollback: bool,
    #[command(flatten)]
    pub bucket: crate::options::BucketArgs,
}

/// The selections of `--only` and `--only-file`. Shared by `mirror` and `serve --upstream`.
pub fn selections(texts: &[String], only_file: Option<&std::path::Path>) -> Result<Vec<Only>> {
    let mut only = Vec::new();
    for text in texts {
        only.push(Only::parse(text).with_context(|| format!("--only {text}"))?);
    }
    if let Some(path) = only_file {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --only-file {shown}: check the path"))?;
        let parsed = Only::parse_file(&text)
            .map_err(|(line, e)| anyhow::anyhow!("--only-file {shown} line {line}: {e}"))?;
        if parsed.is_empty() {
            bail!("--only-file {shown} selects no package: write one PKG[:REQUIREMENT] a line");
        }
        only.extend(parsed);
    }
    Ok(only)
}

/// Upstream's public key (`--upstream-key`, else hex.pm's) and its PEM text, in the format the
/// file has. Shared by `mirror` and `serve --upstream`.
pub fn upstream_key(path: Option<&std::path::Path>) -> Result<(PublicKey, String)> {
    let (text, shown) = match path {
        Some(path) => (
            std::fs::read(path).with_context(|| {
                format!(
                    "cannot read --upstream-key {}: check the path",
                    path.display()
                )
            })?,
            path.display().to_string(),
        ),
        None => (
            HEXPM_PUBLIC_KEY.as_bytes().to_vec(),
            "hex.pm's built-in key".to_string(),
        ),
    };
    let key = PublicKey::from_pem(&text)
        .map_err(|e| anyhow::anyhow!("upstream key {shown} (--upstream-key) {e}"))?;
    let format = if String::from_utf8_lossy(&text).contains("BEGIN RSA PUBLIC KEY") {
        PublicKeyFormat::Pkcs1
    } else {
        PublicKeyFormat::Spki
    };
    let pem = key.to_pem(format);
    Ok((key, pem))
}

pub fn run(args: &MirrorArgs, jobs: Option<usize>) -> Result<()> {
    if !args.only_lock.is_empty() {
        return run_locked(args);
    }
    let only = selections(&args.only, args.only_file.as_deref())?;
    let (key, key_pem) = upstream_key(args.upstream_key.as_deref())?;
    let target = open_location(&args.public_dir, &args.bucket)?;
    let signer = match (&args.name, &args.private_key, only.is_empty()) {
        (None, None, true) => None,
        (_, _, true) => bail!(
            "--name and --private-key sign a filtered mirror, but a full mirror keeps upstream's signatures: select packages with --only or --only-file, or leave --name and --private-key out"
        ),
        (Some(_), Some(path), false) => {
            let shown = path.display();
            if target.holds(path) {
                bail!(
                    "private key {shown} lies inside the mirror {}, which is published: move it out (and replace it)",
                    args.public_dir
                );
            }
            let text = std::fs::read(path).with_context(|| {
                format!("cannot read private key {shown} (--private-key): check the path; create one with `hexreg keygen --out {shown}`")
            })?;
            let key = PrivateKey::from_pem(&text)
                .map_err(|e| anyhow::anyhow!("private key {shown} {e}"))?;
            Some(Signer::new(key, &shown.to_string()))
        }
        (_, _, false) => bail!(
            "a filtered mirror (--only, --only-file) is a registry of its own: give its repository name with --name (e.g. hexpm) and its signing key with --private-key (create one with `hexreg keygen --out mirror_key.pem`)"
        ),
    };
    let upstream = HttpUpstream::new(
        &args.from,
        HttpOptions {
            authorization: std::env::var(AUTH_ENV).ok().filter(|v| !v.is_empty()),
            retries: args.retries,
            timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        },
    )?;
    let mode = match (&signer, &args.name) {
        (Some(signer), Some(name)) => Mode::Filtered {
            only,
            name: name.clone(),
            signer,
        },
        _ => Mode::Full,
    };
    target.create_root()?;
    let storage = target.storage();
    let lock = take_lock(args, &target)?;
    let bar = Bar::new(args.quiet);
    let options = MirrorOptions {
        repository: args.upstream_name.clone(),
        key,
        key_pem,
        origin: upstream.base().to_string(),
        mode,
        jobs: jobs.unwrap_or(DEFAULT_JOBS),
        progress: &bar,
        allow_rollback: args.allow_rollback,
    };
    let report = match mirror(storage, lock, &upstream, &options) {
        Err(e @ hexreg::engine::mirror::MirrorError::Rollback { .. }) => {
            return Err(anyhow::Error::new(e).context(
                "the upstream served an older registry file (run again with --allow-rollback if it really removed them)",
            ));
        }
        other => other?,
    };
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    if args.quiet {
        return Ok(());
    }
    let summary = format!(
        "mirrored {} packages, {} releases from {} into {}: {} tarballs downloaded, {} already present; {} registry files fetched, {} not modified; {} bytes in {} requests",
        report.packages,
        report.releases,
        upstream.base(),
        target.shown(),
        report.tarballs_downloaded,
        report.tarballs_present,
        report.resources_fetched,
        report.resources_not_modified,
        report.bytes_downloaded,
        upstream.requests(),
    );
    print_changes(report.changes, storage, false);
    println!("{summary}");
    Ok(())
}

/// The storage's lock: at once, or after waiting for another run unless --no-wait.
fn take_lock(args: &MirrorArgs, target: &Location) -> Result<hexreg::storage::Lock> {
    let storage = target.storage();
    Ok(match storage.try_lock()? {
        Some(lock) => lock,
        None if args.no_wait => {
            return Err(hexreg::storage::StorageError::Locked {
                root: target.shown(),
            }
            .into());
        }
        None => {
            eprintln!(
                "waiting for another hexreg run on {} to finish...",
                target.shown()
            );
            storage.lock()?
        }
    })
}

/// `--only-lock`: exactly the releases the lock files pin, upstream's files unchanged.
fn run_locked(args: &MirrorArgs) -> Result<()> {
    if !args.only.is_empty() || args.only_file.is_some() {
        bail!(
            "--only-lock mirrors exactly what the lock files pin: leave out --only and --only-file (or run them separately)"
        );
    }
    if args.name.is_some() || args.private_key.is_some() {
        bail!(
            "--only-lock keeps the upstream's signed registry files unchanged, so clients keep the upstream's key: leave out --name and --private-key"
        );
    }
    let mut pins = Vec::new();
    for path in &args.only_lock {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --only-lock {shown}: check the path"))?;
        let parsed = hexreg::mirror::lock::parse(&text)
            .map_err(|e| anyhow::anyhow!("--only-lock {shown} {e}"))?;
        if parsed.is_empty() {
            bail!(
                "--only-lock {shown} pins no Hex package: give a mix.lock or rebar.lock with hex dependencies"
            );
        }
        pins.extend(parsed);
    }
    let (key, key_pem) = upstream_key(args.upstream_key.as_deref())?;
    let target = open_location(&args.public_dir, &args.bucket)?;
    let upstream = HttpUpstream::new(
        &args.from,
        HttpOptions {
            authorization: std::env::var(AUTH_ENV).ok().filter(|v| !v.is_empty()),
            retries: args.retries,
            timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        },
    )?;
    target.create_root()?;
    let lock = take_lock(args, &target)?;
    let options = LockMirrorOptions {
        repository: args.upstream_name.clone(),
        key,
        key_pem,
    };
    let report = mirror_locked(target.storage(), lock, &upstream, &options, &pins)?;
    for other in &report.other_repositories {
        eprintln!(
            "note: {other}: another repository than {}, not mirrored",
            args.upstream_name
        );
    }
    if !args.quiet {
        for path in &report.written {
            println!("* writing {}", target.storage().display(path));
        }
        println!(
            "mirrored the {} releases the lock files pin from {} into {}: {} files written",
            report.pinned,
            upstream.base(),
            target.shown(),
            report.written.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_hexpm_key_is_an_spki_rsa_key() {
        let key = PublicKey::from_pem(HEXPM_PUBLIC_KEY.as_bytes()).unwrap();
        // Written back in its own form, it is the text Hex carries.
        assert_eq!(
            key.to_pem(PublicKeyFormat::Spki),
            format!("{HEXPM_PUBLIC_KEY}\n")
        );
    }
}
