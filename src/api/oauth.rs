//! `POST /api/oauth/token`: an API key exchanged for a short-lived bearer token, as hex.pm's
//! `client_credentials` grant (Hex 2.4+; hex_core's `mix_hex_api_oauth:client_credentials_token`).
//!
//! A token is `hexreg_t1.PAYLOAD.MAC`: the payload names the key by its label and a fingerprint
//! of its hash, the permission asked for and the expiry; the MAC is HMAC-SHA256 under a secret
//! every server on one registry shares (the server keeps it in the registry's storage), so
//! replicas accept each other's tokens. Nothing is stored per token: at each use the key is
//! looked up by label in the keys file as it is then, so a token carries the key's current
//! permission (never more than its scope asked) and dies with the key.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::etf::{self, Term};
use crate::keys::Permission;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "hexreg_t1.";

/// How long a token lives, in seconds.
pub const TOKEN_LIFETIME: u64 = 30 * 60;

/// The longest token accepted, in bytes (a label is short: longer text is not a token).
const MAX_TOKEN: usize = 1024;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The key's label.
    pub label: String,
    /// The first 16 hexadecimal digits of the key's hash: a key revoked and made again under
    /// the same label does not revive the old key's tokens.
    pub fingerprint: String,
    /// The permission the scope asked for.
    pub permission: Permission,
    /// Unix seconds after which the token is refused.
    pub expires: u64,
}

/// A token for `claims`, signed with `secret`.
pub fn issue(claims: &Claims, secret: &[u8]) -> String {
    let payload = format!(
        "{}\n{}\n{}\n{}",
        claims.label,
        claims.fingerprint,
        claims.permission.as_str(),
        claims.expires
    );
    let payload = URL_SAFE_NO_PAD.encode(payload.as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, payload.as_bytes());
    format!(
        "{TOKEN_PREFIX}{payload}.{}",
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// What `token` says, if `secret` signed it and it has not expired at `now` (Unix seconds).
/// The MAC is checked in constant time before anything else is read.
pub fn verify(token: &str, secret: &[u8], now: u64) -> Option<Claims> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (payload, tag) = rest.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, payload.as_bytes(), &tag).ok()?;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let mut fields = payload.split('\n');
    let label = fields.next()?.to_string();
    let fingerprint = fields.next()?.to_string();
    let permission = fields.next()?.parse::<Permission>().ok()?;
    let expires = fields.next()?.parse::<u64>().ok()?;
    if fields.next().is_some() || now >= expires {
        return None;
    }
    Some(Claims {
        label,
        fingerprint,
        permission,
        expires,
    })
}

/// The fields of a token request: the body in the Erlang term format (what hex_core sends) or
/// `application/x-www-form-urlencoded` (OAuth's own form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `client_secret`: the API key.
    pub client_secret: Option<String>,
    /// `scope`, space-separated.
    pub scope: Option<String>,
}

/// Reads a token request's body.
pub fn parse_request(body: &[u8]) -> TokenRequest {
    let mut out = TokenRequest::default();
    let mut set = |k: &str, v: String| match k {
        "grant_type" => out.grant_type = Some(v),
        "client_secret" => out.client_secret = Some(v),
        "scope" => out.scope = Some(v),
        _ => {}
    };
    if body.first() == Some(&131) {
        if let Ok(Term::Map(entries)) = etf::decode(body) {
            for (k, v) in &entries {
                if let (Some(k), Some(v)) = (k.as_str().or_else(|| k.as_atom()), v.as_str()) {
                    set(k, v.to_string());
                }
            }
        }
    } else {
        for pair in String::from_utf8_lossy(body).split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |t: &str| {
                String::from_utf8_lossy(&crate::format::encoding::percent_decode_lenient(
                    &t.replace('+', " "),
                ))
                .into_owned()
            };
            set(&decode(k), decode(v));
        }
    }
    out
}

/// Why a scope is refused: the text of hex.pm's `invalid_scope`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A scope this server does not know.
    #[error(
        "unknown scope `{0}`: ask for api, api:read, api:write, repositories or repository:{1}"
    )]
    Unknown(String, String),
    /// A scope beyond the key's permission.
    #[error("the key may only read: scope `{0}` needs a key made with `hexreg key add --write`")]
    Beyond(String),
}

/// The permission `scope` (space-separated, as mix sends it: `api` to publish, `repositories`
/// to fetch) asks for, checked against what the key may do; no scope asks for what the key may
/// do.
pub fn scope_permission(
    scope: Option<&str>,
    repo: &str,
    key: Permission,
) -> Result<Permission, ScopeError> {
    let words: Vec<&str> = scope.unwrap_or("").split_whitespace().collect();
    if words.is_empty() {
        return Ok(key);
    }
    let mut wanted = Permission::Read;
    for word in &words {
        let needs = match *word {
            "api" | "api:write" => Permission::Write,
            "api:read" | "repositories" => Permission::Read,
            w if w.strip_prefix("repository:") == Some(repo) => Permission::Read,
            w => return Err(ScopeError::Unknown(w.to_string(), repo.to_string())),
        };
        if !key.allows(needs) {
            return Err(ScopeError::Beyond(word.to_string()));
        }
        wanted = wanted.max(needs);
    }
    Ok(wanted)
}

/// The 200 body of a granted token.
pub fn token_body(token: &str, expires_in: u64, scope: &str) -> Term {
    Term::map([
        ("access_token", Term::bin(token)),
        ("token_type", Term::bin("bearer")),
        (
            "expires_in",
            Term::Integer(i64::try_from(expires_in).unwrap_or(i64::MAX)),
        ),
        ("scope", Term::bin(scope)),
    ])
}

/// An OAuth error body (RFC 6749 §5.2, as hex.pm sends it): `error` and `error_description`.
pub fn error_body(error: &str, description: &str) -> Term {
    Term::map([
        ("error", Term::bin(error)),
        ("error_description", Term::bin(description)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            label: "ci".into(),
            fingerprint: "0123456789abcdef".into(),
            permission: Permission::Write,
            expires: 1_000,
        }
    }

    #[test]
    fn tokens_verify_only_under_their_secret_and_before_expiry() {
        let token = issue(&claims(), b"secret-one");
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(verify(&token, b"secret-one", 999), Some(claims()));
        assert_eq!(verify(&token, b"secret-one", 1_000), None);
        assert_eq!(verify(&token, b"secret-two", 999), None);
        // Any change to the payload breaks the MAC.
        let (head, tag) = token.rsplit_once('.').unwrap();
        let mut forged = claims();
        forged.label = "admin".into();
        let other = issue(&forged, b"another");
        let (other_head, _) = other.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&format!("{other_head}.{tag}"), b"secret-one", 0),
            None
        );
        assert_eq!(verify(&format!("{head}x.{tag}"), b"secret-one", 0), None);
        assert_eq!(verify("hexreg_t1.", b"secret-one", 0), None);
        assert_eq!(verify(&"a".repeat(5000), b"secret-one", 0), None);
    }

    #[test]
    fn scopes_as_hex_pm_grants_them() {
        use Permission::{Read, Write};
        assert_eq!(scope_permission(Some("api"), "acme", Write), Ok(Write));
        assert_eq!(
            scope_permission(Some("repositories"), "acme", Read),
            Ok(Read)
        );
        assert_eq!(
            scope_permission(Some("repository:acme"), "acme", Read),
            Ok(Read)
        );
        assert_eq!(scope_permission(None, "acme", Read), Ok(Read));
        assert!(matches!(
            scope_permission(Some("api"), "acme", Read),
            Err(ScopeError::Beyond(_))
        ));
        assert!(matches!(
            scope_permission(Some("repository:other"), "acme", Write),
            Err(ScopeError::Unknown(..))
        ));
    }

    #[test]
    fn requests_in_both_forms() {
        let etf = etf::encode(&Term::map([
            ("grant_type", Term::bin("client_credentials")),
            ("client_id", Term::bin("hex")),
            ("client_secret", Term::bin("hexreg_k")),
            ("scope", Term::bin("api")),
        ]));
        let want = TokenRequest {
            grant_type: Some("client_credentials".into()),
            client_secret: Some("hexreg_k".into()),
            scope: Some("api".into()),
        };
        assert_eq!(parse_request(&etf), want);
        assert_eq!(
            parse_request(b"grant_type=client_credentials&client_secret=hexreg_k&scope=api"),
            want
        );
        assert_eq!(parse_request(b"\x83garbage"), TokenRequest::default());
    }
}
