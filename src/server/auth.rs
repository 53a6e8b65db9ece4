//! HTTP Basic credentials for `hexreg serve`: one `USER:PASS` from `--auth` or
//! `HEXREG_AUTH`, and/or the users of an htpasswd file with bcrypt hashes (`--auth-file`).
//!
//! Comparisons take the same time whatever the guess: the `USER:PASS` pair is compared as
//! SHA-256 digests with a constant-time equality, and a user unknown to the htpasswd file is
//! still checked against a real bcrypt hash so that its answer takes as long as a known
//! user's. A bcrypt check costs tens of milliseconds of CPU, so credentials that passed one
//! are remembered (as a SHA-256 digest) and later requests with them skip it; failed
//! attempts are never remembered, and at most a few bcrypt checks run at once so that a
//! flood of wrong passwords cannot take every core.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// The realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "hexreg";

/// Remembered successful bcrypt checks; the set is emptied when it reaches this size.
const VERIFIED_CACHE_LIMIT: usize = 4096;

/// The HTTP Basic credentials a server accepts.
pub struct BasicAuth {
    /// SHA-256 of one `USER:PASS`, and where it came from (for the startup message).
    pair: Option<([u8; 32], String)>,
    /// From `--auth-file`.
    file: Option<Htpasswd>,
}

struct Htpasswd {
    path: String,
    /// User name -> bcrypt hash.
    users: HashMap<Vec<u8>, String>,
    /// A hash to check unknown users against, so they take as long as known ones.
    decoy: String,
    /// SHA-256 of `USER:PASS` pairs that passed a bcrypt check.
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt_slots: Arc<Semaphore>,
}

/// Why credentials cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A `USER:PASS` pair is malformed; `origin` names where it came from (a flag, a variable).
    /// The value is a secret: the message never repeats it.
    #[error("{origin} {problem}")]
    Pair {
        /// Where the pair came from.
        origin: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The htpasswd file cannot be read.
    #[error("cannot read htpasswd file {path} (a file of USER:BCRYPT_HASH lines): {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the htpasswd file is wrong.
    #[error("{path} line {line}: {problem}")]
    Line {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong and how to set it right.
        problem: String,
    },
    /// The htpasswd file has no users.
    #[error(
        "{path} has no users: add some with `htpasswd -B {path} USER` (the file holds \
         USER:BCRYPT_HASH lines)"
    )]
    NoUsers {
        /// The file.
        path: String,
    },
}

impl BasicAuth {
    /// Credentials from one `USER:PASS` pair (`origin` names where it came from, for messages)
    /// and the users of an htpasswd file with bcrypt hashes; `None` when neither is given.
    pub fn configure(
        pair: Option<(&str, &str)>,
        htpasswd: Option<&Path>,
    ) -> Result<Option<BasicAuth>, AuthError> {
        let pair = match pair {
            Some((value, origin)) => Some((parse_pair(value, origin)?, origin.to_string())),
            None => None,
        };
        let file = match htpasswd {
            Some(path) => Some(Htpasswd::load(path)?),
            None => None,
        };
        if pair.is_none() && file.is_none() {
            return Ok(None);
        }
        Ok(Some(BasicAuth { pair, file }))
    }

    /// Where the accepted credentials come from, for the startup message.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((_, source)) = &self.pair {
            parts.push(format!("1 user from {source}"));
        }
        if let Some(file) = &self.file {
            let n = file.users.len();
            let s = if n == 1 { "" } else { "s" };
            parts.push(format!("{n} user{s} from {}", file.path));
        }
        parts.join(", ")
    }

    /// Whether an `Authorization` header carries accepted credentials.
    pub async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some(credentials) = header.and_then(basic_credentials) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(&credentials).into();
        let pair_matches = self
            .pair
            .as_ref()
            .is_some_and(|(expected, _)| bool::from(digest.ct_eq(expected)));
        if pair_matches {
            return true;
        }
        match &self.file {
            Some(file) => file.check(credentials, digest).await,
            None => false,
        }
    }
}

/// `USER:PASS` with a non-empty user and password; returns the SHA-256 of the text. The value
/// is a secret: errors never repeat it.
fn parse_pair(value: &str, origin: &str) -> Result<[u8; 32], AuthError> {
    let problem = match value.split_once(':') {
        None => Some("must be USER:PASS, with a colon between the user name and the password"),
        Some(("", _)) => Some("has an empty user name: it must be USER:PASS"),
        Some((_, "")) => Some("has an empty password: it must be USER:PASS"),
        Some(_) if value.chars().any(char::is_control) => {
            Some("contains a control character (a stray newline?): it must be USER:PASS")
        }
        Some(_) => None,
    };
    match problem {
        Some(problem) => Err(AuthError::Pair {
            origin: origin.to_string(),
            problem,
        }),
        None => Ok(Sha256::digest(value.as_bytes()).into()),
    }
}

/// The decoded `USER:PASS` bytes of `Authorization: Basic BASE64`.
fn basic_credentials(header: &HeaderValue) -> Option<Vec<u8>> {
    let text = header.to_str().ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = rest.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    if !decoded.contains(&b':') {
        return None;
    }
    Some(decoded)
}

impl Htpasswd {
    fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadFile {
            path: shown.clone(),
            source,
        })?;
        let line_error = |line: usize, problem: String| AuthError::Line {
            path: shown.clone(),
            line,
            problem,
        };
        let mut users: HashMap<Vec<u8>, String> = HashMap::new();
        let mut lines_of: HashMap<String, usize> = HashMap::new();
        let mut decoy = None;
        for (index, line) in text.lines().enumerate() {
            let n = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, rest)) = line.split_once(':') else {
                return Err(line_error(
                    n,
                    format!(
                        "expected USER:HASH with a bcrypt hash; create lines with \
                     `htpasswd -B {shown} USER`"
                    ),
                ));
            };
            // nginx allows a third `:comment` field; a bcrypt hash never holds a colon.
            let hash = rest.split(':').next().unwrap_or(rest).trim();
            if user.is_empty() {
                return Err(line_error(
                    n,
                    "the user name before the colon is empty".to_string(),
                ));
            }
            if !is_bcrypt_prefix(hash) {
                return Err(line_error(
                    n,
                    format!(
                        "the password of user {user:?} is {}, not a bcrypt hash ($2y$...); only \
                         bcrypt is accepted: set it again with `htpasswd -B {shown} {user}`",
                        describe_hash(hash)
                    ),
                ));
            }
            let parts = bcrypt::HashParts::from_str(hash).map_err(|e| {
                line_error(
                    n,
                    format!(
                        "the bcrypt hash of user {user:?} is malformed ({e}); set it again with \
                         `htpasswd -B {shown} {user}`"
                    ),
                )
            })?;
            let cost = parts.get_cost();
            if !(4..=31).contains(&cost) {
                return Err(line_error(
                    n,
                    format!(
                        "the bcrypt hash of user {user:?} has cost {cost}, outside \
                     4..=31; set it again with `htpasswd -B {shown} {user}`"
                    ),
                ));
            }
            if let Some(first) = lines_of.insert(user.to_string(), n) {
                return Err(line_error(
                    n,
                    format!("user {user:?} is already defined on line {first}"),
                ));
            }
            if decoy.is_none() {
                decoy = Some(hash.to_string());
            }
            users.insert(user.as_bytes().to_vec(), hash.to_string());
        }
        let Some(decoy) = decoy else {
            return Err(AuthError::NoUsers { path: shown });
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Htpasswd {
            path: shown,
            users,
            decoy,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: Arc::new(Semaphore::new(cores)),
        })
    }

    async fn check(&self, credentials: Vec<u8>, digest: [u8; 32]) -> bool {
        if self.lock_verified().contains(&digest) {
            return true;
        }
        let Some(colon) = credentials.iter().position(|&b| b == b':') else {
            return false;
        };
        let (hash, known) = match self.users.get(&credentials[..colon]) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let Ok(_slot) = Arc::clone(&self.bcrypt_slots).acquire_owned().await else {
            return false;
        };
        let matches = tokio::task::spawn_blocking(move || {
            let password = &credentials[colon + 1..];
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if matches && known {
            let mut verified = self.lock_verified();
            if verified.len() >= VERIFIED_CACHE_LIMIT {
                verified.clear();
            }
            verified.insert(digest);
            return true;
        }
        false
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_bcrypt_prefix(hash: &str) -> bool {
    ["$2y$", "$2b$", "$2a$", "$2x$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
}

/// What kind of hash a non-bcrypt htpasswd entry holds, for the error message.
fn describe_hash(hash: &str) -> &'static str {
    if hash.starts_with("$apr1$") {
        "an Apache MD5 hash ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "a SHA-1 hash ({SHA})"
    } else if hash.starts_with("$1$") {
        "an MD5-crypt hash ($1$)"
    } else if hash.starts_with("$5$") {
        "a SHA-256-crypt hash ($5$)"
    } else if hash.starts_with("$6$") {
        "a SHA-512-crypt hash ($6$)"
    } else if hash.is_empty() {
        "empty"
    } else {
        "plain text or DES crypt"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("header value")
    }

    #[test]
    fn pair_errors_name_the_source_and_hide_the_value() {
        for (value, expected) in [
            ("alice", "must be USER:PASS"),
            (":secret", "empty user name"),
            ("alice:", "empty password"),
            ("alice:se\ncret", "control character"),
        ] {
            let e = parse_pair(value, "--auth").expect_err(value).to_string();
            assert!(e.starts_with("--auth "), "{e}");
            assert!(e.contains(expected), "{e}");
            assert!(!e.contains("secret") && !e.contains("cret"), "{e}");
        }
        let e = parse_pair("x", "HEXREG_AUTH").expect_err("x").to_string();
        assert!(e.starts_with("HEXREG_AUTH "), "{e}");
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(basic_credentials(&header("a:b:c")), Some(b"a:b:c".to_vec()));
        let lower = HeaderValue::from_static("basic YTpi");
        assert_eq!(basic_credentials(&lower), Some(b"a:b".to_vec()));
        for bad in ["Bearer YTpi", "Basic", "Basic !!!", "Basic YWI="] {
            let value = HeaderValue::from_static(bad);
            assert_eq!(basic_credentials(&value), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn one_pair_is_checked() {
        let auth = BasicAuth::configure(Some(("a:1", "--auth")), None)
            .expect("configure")
            .expect("some auth");
        assert!(auth.check(Some(&header("a:1"))).await);
        assert!(!auth.check(Some(&header("b:2"))).await);
        assert!(!auth.check(None).await);
        let e = BasicAuth::configure(Some(("junk", "HEXREG_AUTH")), None)
            .err()
            .expect("a pair without a colon is refused");
        assert!(
            e.to_string().starts_with("HEXREG_AUTH must be USER:PASS"),
            "{e}"
        );
        assert!(
            !e.to_string().contains("junk"),
            "the secret is never repeated: {e}"
        );
        assert!(
            BasicAuth::configure(None, None)
                .expect("configure")
                .is_none()
        );
    }
}
