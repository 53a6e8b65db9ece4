//! `hexreg serve --upstream URL`: the caching proxy's flags, checked and converted into a
//! [`hexreg::server::ProxyConfig`].

use std::time::Duration;

use anyhow::{Context, Result, bail};
use hexreg::mirror::upstream::{HttpOptions, HttpUpstream, UpstreamError};
use hexreg::server::ProxyConfig;
use hexreg::server::proxy::parse_duration;

use crate::mirror::AUTH_ENV;
use crate::serve::ServeArgs;

/// The proxy's settings, when --upstream is given.
pub fn configure(args: &ServeArgs) -> Result<Option<ProxyConfig>> {
    let Some(url) = &args.upstream else {
        if args.upstream_key.is_some() {
            bail!("--upstream-key is for the caching proxy: give --upstream URL too");
        }
        return Ok(None);
    };
    if args.private_key.is_some() {
        bail!(
            "--private-key with --upstream: the proxy serves the upstream's signed files unchanged, \
             and the Hex API must not change them; leave --private-key out (read keys from --keys still work)"
        );
    }
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
    }))
}
