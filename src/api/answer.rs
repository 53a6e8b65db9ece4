//! Which status and body each outcome of an API request gets, as pure functions: the server
//! calls them and sends what they return, so every answer is unit-tested without a network
//! (as hexpm-rust's `*_response` functions are).

use http::StatusCode;

use super::etf::Term;
use super::{Urls, error_body, release_body};
use crate::engine::{self, Problem, Replace};
use crate::format::registry::Release;
use crate::format::release_info::ReleaseInfo;

/// A response of the API: status, body term, extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body, encoded in the format the request accepts; `None`: no body.
    pub body: Option<Term>,
    /// The `location` header (a new release's URL).
    pub location: Option<String>,
    /// The methods the path takes, for a 405 (RFC 9110: it MUST name them in `allow`).
    pub allow: Option<&'static str>,
    /// What only the server's log should see: the full text of an internal error.
    pub log: Option<String>,
    /// The `retry-after` header, in seconds (a 503 while the registry is busy).
    pub retry_after: Option<u64>,
}

impl Answer {
    /// `status` with `body`.
    pub fn new(status: StatusCode, body: Term) -> Answer {
        Answer {
            status,
            body: Some(body),
            location: None,
            allow: None,
            log: None,
            retry_after: None,
        }
    }

    /// `status` without a body.
    pub fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            body: None,
            location: None,
            allow: None,
            log: None,
            retry_after: None,
        }
    }

    /// `status` with hex.pm's error body carrying `message`.
    pub fn error(status: StatusCode, message: &str) -> Answer {
        Answer::new(status, error_body(status.as_u16(), message, &[]))
    }
}

/// What a client is told about a refused tarball: the problem, and what replacing would do.
pub fn problem_text(problem: &Problem) -> String {
    match problem.replace() {
        Some(Replace::Overwrites) => format!("{problem}: pass --replace to overwrite it"),
        Some(Replace::ChangesRelease) => format!("{problem}: pass --replace only if you must"),
        None => problem.to_string(),
    }
}

/// 422 for an upload that is not a valid release of the repository.
pub fn invalid_upload(problem: &Problem) -> Answer {
    let text = problem_text(problem);
    Answer::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        error_body(422, &text, &[("tarball", text.clone())]),
    )
}

/// 422 for a publish of a release that exists, without `replace`: hex.pm's wording in
/// `inserted_at`, which mix shows, and ours in `version`.
pub fn already_published(name: &str, version: &str) -> Answer {
    let message = format!(
        "{name} {version} is already published: releases are immutable for clients that locked them; publish again with --replace (mix) or replace=true (hex_core) to overwrite it"
    );
    Answer::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        error_body(
            422,
            "Validation error(s)",
            &[
                (
                    "inserted_at",
                    "must include the --replace flag to update an existing release".into(),
                ),
                ("version", message),
            ],
        ),
    )
}

/// 422 for a publish to `/api/packages/NAME/releases` of a tarball of another package.
pub fn wrong_package(url_name: &str, tarball_name: &str) -> Answer {
    let text = format!(
        "the URL publishes package `{url_name}` but the tarball is a release of `{tarball_name}`: publish it to /api/packages/{tarball_name}/releases"
    );
    Answer::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        error_body(422, &text, &[("name", text.clone())]),
    )
}

/// 422 for a replace or revert of a release past the replace window: hex.pm's wording (which
/// mix and rebar3 show), in `inserted_at` as hex.pm puts it, with `refusal` (the window's own
/// words, [`super::window::ReplaceWindow::refusal`]).
pub fn past_window(name: &str, version: &str, refusal: &str) -> Answer {
    Answer::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        error_body(
            422,
            &format!("{name} {version}: {refusal}"),
            &[("inserted_at", refusal.to_string())],
        ),
    )
}

/// 403 for a write key used on a package outside its scope.
pub fn out_of_scope(package: &str, label: &str, scope: &str) -> Answer {
    Answer::error(
        StatusCode::FORBIDDEN,
        &format!(
            "key `{label}` may not change package `{package}`: it may write only packages matching {scope}"
        ),
    )
}

/// 503 while the keys file cannot be used: no request that needs a key is let through until
/// a valid file is back.
pub fn keys_broken(problem: &str) -> Answer {
    Answer::error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "the server's API keys file is broken, so no key is accepted until its operator fixes it: {problem}"
        ),
    )
}

/// 503 with `retry-after` when the registry's lock was not free within `waited_secs`.
pub fn busy(waited_secs: u64) -> Answer {
    let mut answer = Answer::error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "the registry is busy with another change (its lock was not free within {waited_secs} s): nothing was changed; try again"
        ),
    );
    answer.retry_after = Some(waited_secs.clamp(1, 60));
    answer
}

/// A publish done: 201 for a new release, 200 for a replaced one, with the release's body and
/// its URL in `location`. `api_url` and `repo_url` are the server's as the client reached it.
pub fn published(
    existed: bool,
    name: &str,
    release: &Release,
    info: Option<&ReleaseInfo>,
    urls: &Urls,
    repo: &str,
) -> Answer {
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut answer = Answer::new(status, release_body(name, release, info, urls, repo));
    answer.location = Some(format!(
        "{}/packages/{name}/releases/{}",
        urls.api, release.version
    ));
    answer
}

/// The status and message of an engine error. The client's message never shows where the
/// registry is on the server: `root` (the registry's own text in messages, e.g. `/srv/hex/`)
/// is cut out of it, and an internal error's text goes to [`Answer::log`] only.
pub fn engine_error(e: &engine::Error, root: &str) -> Answer {
    use engine::Error;
    let status = match e {
        Error::NoPackage { .. } | Error::NoVersion { .. } => StatusCode::NOT_FOUND,
        Error::AddRefused { .. } | Error::InvalidTarballs { .. } | Error::BadDocs { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Error::Storage(crate::storage::StorageError::Conflict { .. }) => StatusCode::CONFLICT,
        Error::Storage(crate::storage::StorageError::LockLost { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        Error::AddRefused { problems } | Error::InvalidTarballs { problems, .. } => problems
            .iter()
            .map(problem_text)
            .collect::<Vec<_>>()
            .join("; "),
        Error::NoPackage { package, .. } => format!("package `{package}` is not in the registry"),
        other => other.to_string(),
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        let mut answer = Answer::error(status, "internal error: the server's log says more");
        answer.log = Some(message);
        return answer;
    }
    let message = if root.is_empty() {
        message
    } else {
        message.replace(root, "")
    };
    let mut answer = Answer::error(status, &message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // The lock this server lost expires within its TTL; a retry then goes through.
        answer.retry_after = Some(30);
    }
    answer
}

/// `POST /api/short_url` (`mix hex.outdated` asks for a short link to diff.hex.pm): 201 with
/// `url` as hex.pm answers, the URL given back as it is (hexreg keeps no links to shorten
/// them with); 422 when the body is not a map with a `url` in the Erlang term format.
pub fn short_url(body: &[u8]) -> Answer {
    let url = super::etf::decode(body)
        .ok()
        .and_then(|t| t.get("url").and_then(Term::as_str).map(str::to_string))
        .filter(|u| u.len() <= 8192);
    match url {
        Some(url) => Answer::new(StatusCode::CREATED, Term::map([("url", Term::bin(&url))])),
        None => Answer::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            error_body(
                422,
                "Validation error(s)",
                &[(
                    "url",
                    "send a map with a url in the Erlang term format".into(),
                )],
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(answer: &Answer) -> String {
        let Some(Term::Map(entries)) = &answer.body else {
            panic!("no map body: {answer:?}");
        };
        entries
            .iter()
            .find_map(|(k, v)| match (k, v) {
                (Term::Binary(k), Term::Binary(v)) if k == b"message" => {
                    Some(String::from_utf8_lossy(v).into_owned())
                }
                _ => None,
            })
            .expect("a message")
    }

    #[test]
    fn an_engine_error_never_shows_the_server_s_paths() {
        let e = engine::Error::NoPackage {
            package: "foo".into(),
            root: "/srv/hex".into(),
            path: "/srv/hex/packages/foo".into(),
        };
        let answer = engine_error(&e, "/srv/hex/");
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(message(&answer), "package `foo` is not in the registry");

        let e = engine::Error::HalfIndex {
            root: "/srv/hex".into(),
        };
        let answer = engine_error(&e, "/srv/hex/");
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!message(&answer).contains("/srv/hex"));
        assert!(
            answer
                .log
                .as_deref()
                .is_some_and(|l| l.contains("/srv/hex"))
        );
    }

    #[test]
    fn a_lost_lock_is_a_503_to_retry() {
        let e = engine::Error::Storage(crate::storage::StorageError::LockLost {
            lock: "s3://b/acme/.hexreg-lock".into(),
            path: "s3://b/acme/packages/foo".into(),
            reason: "could not be renewed (403 Forbidden) and may expire".into(),
        });
        let answer = engine_error(&e, "s3://b/acme/");
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.retry_after, Some(30));
        assert!(!message(&answer).contains("s3://b"), "{}", message(&answer));
        assert!(message(&answer).contains("could not be renewed"));
    }

    #[test]
    fn refused_tarballs_say_what_replacing_would_do() {
        let e = engine::Error::AddRefused {
            problems: vec![
                Problem::InTheWay {
                    path: "/srv/hex/tarballs/a-1.0.0.tar".into(),
                },
                Problem::Published {
                    source_name: "the uploaded tarball".into(),
                    name: "a".into(),
                    version: "1.0.0".into(),
                    published: "AB".repeat(32),
                    given: "CD".repeat(32),
                },
            ],
        };
        let answer = engine_error(&e, "/srv/hex/");
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        let text = message(&answer);
        assert!(
            text.starts_with("tarballs/a-1.0.0.tar already exists with other content: pass --replace to overwrite it; "),
            "{text}"
        );
        assert!(
            text.ends_with(": pass --replace only if you must"),
            "{text}"
        );
        assert!(text.contains(&"AB".repeat(32)), "{text}");
    }

    #[test]
    fn publish_answers() {
        let answer = already_published("a", "1.0.0");
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(message(&answer), "Validation error(s)");
        let answer = wrong_package("acme_a", "acme_b");
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(message(&answer).contains("`acme_a`") && message(&answer).contains("`acme_b`"));
        let answer = past_window(
            "a",
            "1.0.0",
            "can only modify a release up to one hour after publication",
        );
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(message(&answer).ends_with("up to one hour after publication"));
        let answer = busy(10);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.retry_after, Some(10));
        let answer = out_of_scope("b", "ci", "acme_*");
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert!(message(&answer).contains("`b`") && message(&answer).contains("`ci`"));
    }
}
