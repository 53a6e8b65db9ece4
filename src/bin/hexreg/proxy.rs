//! `hexreg serve --upstream URL`: the caching proxy's flags, checked and converted into a
//! [`hexreg::server::ProxyConfig`].

use std::time::Duration;

use anyhow::{Context, Result, bail};
use hexreg::engine::Signer;
use hexreg::format::signing::{PrivateKey, PublicKeyFormat};
use hexreg::mirror::upstream::{HttpOptions, HttpUpstream, UpstreamError};
use hexreg::server::ProxyConfig;
use hexreg::server::proxy::{Filter, parse_duration};
use hexreg::storage::Location;

use crate::mirror::AUTH_ENV;
use crate::output::usage;
use crate::serve::ServeArgs;

/// Whether a filter (--only, --only-file, --cooldown) is given.
pub fn filtered(args: &ServeArgs) -> bool {
    !args.only.is_empty() || args.only_file.is_some() || args.cooldown.is_some()
}

/// The proxy's settings, when --upstream is given; `location` is its cache.
pub fn configure(args: &ServeArgs, location: &Location) -> Result<Option<ProxyConfig>> {
    let Some(url) = &args.upstream else {
        if args.upstream_key.is_some() {
            usage!("--upstream-key is for the caching proxy: give --upstream URL too");
        }
        if filtered(args) {
            usage!(
                "--only, --only-file and --cooldown filter the caching proxy: give --upstream URL too (to serve a selection of another repository without a proxy, make a filtered mirror with `hexreg mirror --only`)"
            );
        }
        return Ok(None);
    };
    let filter = if filtered(args) {
        Some(filter(args, location)?)
    } else {
        if args.private_key.is_some() {
            usage!(
                "--private-key with --upstream: the proxy serves the upstream's signed files unchanged, \
                 so clients keep the upstream's key; a key is needed only with --only, --only-file or --cooldown, \
                 which make the proxy re-sign what it serves: leave --private-key out, or add a filter"
            );
        }
        None
    };
    let ttl = parse_duration(&args.upstream_ttl).with_context(|| {
        format!(
            "--upstream-ttl {}: not a duration; give e.g. 30s, 5m, 1h, 1d or a number of seconds",
            args.upstream_ttl
        )
    })?;
    let (key, key_pem) = crate::mirror::upstream_key(args.upstream_key.as_deref())?;
    let key_pem = key_pem.into_bytes();
    let upstream = HttpUpstream::new(
        url,
        HttpOptions {
            authorization: std::env::var(AUTH_ENV).ok().filter(|v| !v.is_empty()),
            // A client waits for the answer: one retry, not the mirror's four.
            retries: 1,
            timeout: Duration::from_secs(args.upstream_timeout.max(1)),
        },
    )
    .map_err(|e| match e {
        UpstreamError::BadUrl { url, reason } => anyhow::anyhow!(
            "--upstream {url}: {reason}; give the repository's root URL, e.g. https://repo.hex.pm or http://127.0.0.1:8000"
        ),
        other => anyhow::Error::new(other).context(format!("--upstream {url}")),
    })?;
    Ok(Some(ProxyConfig {
        upstream,
        repo: args.upstream_name.clone(),
        key,
        key_pem,
        ttl,
        filter,
    }))
}

/// The filter of --only, --only-file and --cooldown, with the proxy's --name and --private-key.
fn filter(args: &ServeArgs, location: &Location) -> Result<Filter> {
    let only = crate::mirror::selections(&args.only, args.only_file.as_deref())?;
    let cooldown = match &args.cooldown {
        Some(text) => parse_duration(text).with_context(|| {
            format!("--cooldown {text}: not a duration; give e.g. 12h, 7d or a number of seconds")
        })?,
        None => Duration::ZERO,
    };
    let why = "--only, --only-file and --cooldown change what the proxy serves, so it signs its registry files itself";
    let Some(name) = args.name.clone() else {
        usage!(
            "{why}: give the repository name its clients use with --name NAME (and its signing key with --private-key KEY)"
        );
    };
    let Some(path) = &args.private_key else {
        usage!(
            "{why}: give its signing key with --private-key KEY (create one with `hexreg keygen --out proxy_key.pem`, outside the cache); clients then use its public key, served at /public_key"
        );
    };
    let shown = path.display();
    if location.holds(path) {
        bail!(
            "--private-key {shown} lies inside the proxy's cache {}, which is served: move it out (and replace it)",
            location.shown()
        );
    }
    let text = std::fs::read(path).with_context(|| {
        format!("cannot read private key {shown} (--private-key): check the path; create one with `hexreg keygen --out {shown}`")
    })?;
    let key =
        PrivateKey::from_pem(&text).map_err(|e| anyhow::anyhow!("private key {shown} {e}"))?;
    let signer = Signer::new(key, &shown.to_string());
    let key_pem = signer.public.to_pem(PublicKeyFormat::Pkcs1).into_bytes();
    Ok(Filter {
        only,
        cooldown,
        name,
        signer,
        key_pem,
    })
}
