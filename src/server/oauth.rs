//! Bearer tokens in `hexreg serve`: the secret that signs them, kept in the registry's storage
//! so every server on one registry shares it; `POST /api/oauth/token` (a key exchanged for a
//! token, [`crate::api::oauth`]); and [`authenticate`], which every request's `authorization`
//! header goes through: a key as it is, `Bearer KEY`, or `Bearer TOKEN`.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use http::StatusCode;

use super::api::Api;
use crate::api::answer::Answer;
use crate::api::oauth::{self, Claims, TOKEN_LIFETIME, TOKEN_PREFIX};
use crate::keys::Grant;
use crate::storage::{Condition, Storage, StorageError};

/// Where the token secret lives: a dot-path, which `hexreg serve` never serves.
pub const SECRET_PATH: &str = ".hexreg-api/token-secret";

/// The token secret of the registry in `storage`: read, or made (32 random bytes) with a
/// create-only write, so that of servers starting together on one bucket all end up with the
/// one that was written first.
pub fn load_secret(storage: &dyn Storage) -> Result<Vec<u8>, StorageError> {
    if let Some(object) = storage.read(SECRET_PATH)?
        && object.bytes.len() >= 32
    {
        return Ok(object.bytes);
    }
    let mut secret = vec![0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| StorageError::Io {
            action: "make",
            path: storage.display(SECRET_PATH),
            source: std::io::Error::other("the system's random generator failed"),
        })?;
    match storage.write(SECRET_PATH, &secret, Condition::Create) {
        Ok(_) => Ok(secret),
        Err(StorageError::Conflict { .. }) => storage
            .read(SECRET_PATH)?
            .map(|o| o.bytes)
            .filter(|b| b.len() >= 32)
            .ok_or_else(|| StorageError::Io {
                action: "read",
                path: storage.display(SECRET_PATH),
                source: std::io::Error::other(
                    "the token secret is shorter than 32 bytes: delete it and restart every server",
                ),
            }),
        Err(e) => Err(e),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who the `authorization` header `presented` is: a key (bare, or `Bearer KEY`), or a token
/// (`Bearer TOKEN`) whose key still exists, with the lesser of the token's and the key's
/// current permission.
///
/// Nothing is accepted while the keys file is broken: neither a key nor a token, whose key
/// may be the one an operator was revoking when the file broke.
pub fn authenticate(api: &Api, presented: &str) -> Option<Grant> {
    let keys = api.keys.as_ref()?;
    let presented = presented.trim();
    let bare = match presented.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => presented,
    };
    // A key: the store refuses every one while the file is broken.
    if !bare.starts_with(TOKEN_PREFIX) {
        return keys.authenticate(bare);
    }
    if keys.broken().is_some() {
        return None;
    }
    let claims = oauth::verify(bare, api.token_secret.as_deref()?, now())?;
    let entry = keys.by_label(&claims.label)?;
    if !entry.hash_hex().starts_with(&claims.fingerprint) {
        return None;
    }
    Some(Grant {
        label: claims.label,
        permission: claims.permission.min(entry.permission()),
        scope: entry.scope().cloned(),
    })
}

/// `POST /api/oauth/token` with `body`.
pub fn exchange(api: &Api, body: &[u8]) -> Answer {
    let error = |status: StatusCode, code: &str, text: &str| {
        Answer::new(status, oauth::error_body(code, text))
    };
    let request = oauth::parse_request(body);
    if request.grant_type.as_deref() != Some("client_credentials") {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "send grant_type=client_credentials with the API key as client_secret",
        );
    }
    let (Some(keys), Some(secret)) = (&api.keys, &api.token_secret) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "this server issues no tokens",
        );
    };
    // A key cannot be checked while the keys file is broken: 503 (fix the file), not 401.
    if let Some(why) = keys.broken() {
        return crate::api::answer::keys_broken(&why);
    }
    let Some(grant) = request
        .client_secret
        .as_deref()
        .and_then(|k| keys.authenticate(k))
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_secret is not a valid API key: send a key made with `hexreg key add`",
        );
    };
    let permission =
        match oauth::scope_permission(request.scope.as_deref(), &api.repo, grant.permission) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_scope", &e.to_string()),
        };
    let Some(entry) = keys.by_label(&grant.label) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the key was revoked",
        );
    };
    let hash = entry.hash_hex();
    let claims = Claims {
        label: grant.label,
        fingerprint: hash.get(..16).unwrap_or(&hash).to_string(),
        permission,
        expires: now() + TOKEN_LIFETIME,
    };
    let scope = request.scope.unwrap_or_else(|| match permission {
        crate::keys::Permission::Write => "api".to_string(),
        crate::keys::Permission::Read => "repositories".to_string(),
    });
    Answer::new(
        StatusCode::OK,
        oauth::token_body(&oauth::issue(&claims, secret), TOKEN_LIFETIME, &scope),
    )
}
