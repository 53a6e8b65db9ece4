//! The Hex HTTP API as mix and rebar3 call it, free of I/O: a request's method and path parsed
//! into a [`Route`], the bodies clients send decoded, and the bodies they decode built as
//! [`Term`]s and encoded in the format the request accepts ([`Format`]).
//!
//! What belongs here: the API's wire rules, as pure functions (routes, bodies, the Erlang term
//! format in [`etf`], and in [`answer`] which status and body each outcome gets). What must
//! not: sockets, files, locks or the storage; the server ([`crate::server`]) does the I/O and
//! calls these.
//!
//! Paths are those of hexpm's router, with and without the `/repos/REPO` prefix:
//! `POST /api/publish`, `POST /api/packages/NAME/releases` (publish), `GET /api/packages/NAME`,
//! `GET|DELETE /api/packages/NAME/releases/VERSION` (info, revert),
//! `POST|DELETE .../releases/VERSION/retire`, `POST|DELETE .../releases/VERSION/docs`,
//! `GET /api/users/me`, `GET /api/packages?search=` (search), `POST /api/oauth/token` (a key
//! exchanged for a token), `POST /api/short_url`.

pub mod answer;
pub mod etf;
pub mod oauth;
pub mod package;
pub mod search;
pub mod window;

pub use package::{Urls, package_body, release_body};

use crate::format::encoding;
use crate::format::registry::{Retirement, RetirementReason};
use etf::Term;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/users/me`: who the key belongs to.
    Me,
    /// Publish the tarball in the body (`replace` an existing release).
    Publish {
        /// `?replace=true`.
        replace: bool,
        /// The package the path names (`/api/packages/NAME/releases`); the tarball must be a
        /// release of it. `None` for `/api/publish`.
        package: Option<String>,
    },
    /// `GET /api/packages?search=...`: the package search ([`search`]).
    Search {
        /// The query string.
        query: Option<String>,
    },
    /// `POST /api/oauth/token`: a key exchanged for a short-lived token ([`oauth`]).
    OAuthToken,
    /// `POST /api/short_url`: a short URL for a long one (`mix hex.outdated`).
    ShortUrl,
    /// `GET /api/packages/NAME`.
    Package {
        /// Package name.
        name: String,
    },
    /// `GET /api/packages/NAME/releases/VERSION`.
    Release {
        /// Package name.
        name: String,
        /// Version.
        version: String,
    },
    /// `DELETE /api/packages/NAME/releases/VERSION`: revert a release.
    Revert {
        /// Package name.
        name: String,
        /// Version.
        version: String,
    },
    /// `POST .../retire`.
    Retire {
        /// Package name.
        name: String,
        /// Version.
        version: String,
    },
    /// `DELETE .../retire`.
    Unretire {
        /// Package name.
        name: String,
        /// Version.
        version: String,
    },
    /// `POST .../docs`: the body is the docs tarball.
    PublishDocs {
        /// Package name.
        name: String,
        /// Version.
        version: String,
    },
    /// `DELETE .../docs`.
    RemoveDocs {
        /// Package name.
        name: String,
        /// Version.
        version: String,
    },
}

impl Route {
    /// Whether the route changes the repository (needs a write key and the signing key).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Route::Me
                | Route::Package { .. }
                | Route::Release { .. }
                | Route::Search { .. }
                | Route::OAuthToken
                | Route::ShortUrl
        )
    }

    /// The package the path names, if any.
    pub fn package(&self) -> Option<&str> {
        match self {
            Route::Me | Route::Search { .. } | Route::OAuthToken | Route::ShortUrl => None,
            Route::Publish { package, .. } => package.as_deref(),
            Route::Package { name }
            | Route::Release { name, .. }
            | Route::Revert { name, .. }
            | Route::Retire { name, .. }
            | Route::Unretire { name, .. }
            | Route::PublishDocs { name, .. }
            | Route::RemoveDocs { name, .. } => Some(name),
        }
    }

    /// The version the path names, if any.
    pub fn version(&self) -> Option<&str> {
        match self {
            Route::Me
            | Route::Publish { .. }
            | Route::Package { .. }
            | Route::Search { .. }
            | Route::OAuthToken
            | Route::ShortUrl => None,
            Route::Release { version, .. }
            | Route::Revert { version, .. }
            | Route::Retire { version, .. }
            | Route::Unretire { version, .. }
            | Route::PublishDocs { version, .. }
            | Route::RemoveDocs { version, .. } => Some(version),
        }
    }
}

/// Why a request has no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (or another repository's).
    NotFound,
    /// The path exists, not with this method; the methods it takes.
    MethodNotAllowed(&'static str),
    /// The path names a package or version that cannot exist: what is wrong with it (400,
    /// before any storage is touched).
    BadRequest(String),
}

/// The route of `method` on `path` (which starts with `/api`) and `query`, for repository
/// `repo` (the `/repos/REPO` form must name it).
pub fn route(
    method: &str,
    path: &str,
    query: Option<&str>,
    repo: &str,
) -> Result<Route, RouteError> {
    let rest = path.strip_prefix("/api").ok_or(RouteError::NotFound)?;
    let mut segments: Vec<String> = Vec::new();
    for raw in rest.split('/').skip(1) {
        segments.push(percent_decode(raw).ok_or(RouteError::NotFound)?);
    }
    if segments.last().is_some_and(String::is_empty) {
        segments.pop();
    }
    let mut s: Vec<&str> = segments.iter().map(String::as_str).collect();
    if s.first() == Some(&"repos") {
        if s.get(1) != Some(&repo) {
            return Err(RouteError::NotFound);
        }
        s.drain(..2);
    }
    let replace = query_flag(query, "replace");
    let name = |i: usize| s.get(i).map(|n| n.to_string()).unwrap_or_default();
    let allow = |allowed: &'static str, route: Route| {
        if allowed.split(", ").any(|m| m == method) {
            Ok(route)
        } else {
            Err(RouteError::MethodNotAllowed(allowed))
        }
    };
    let route = match s.as_slice() {
        ["users", "me"] => allow("GET", Route::Me),
        ["publish"] => allow(
            "POST",
            Route::Publish {
                replace,
                package: None,
            },
        ),
        ["packages"] => allow(
            "GET",
            Route::Search {
                query: query.map(str::to_string),
            },
        ),
        ["oauth", "token"] => allow("POST", Route::OAuthToken),
        ["short_url"] => allow("POST", Route::ShortUrl),
        ["packages", _] => allow("GET", Route::Package { name: name(1) }),
        ["packages", _, "releases"] => allow(
            "POST",
            Route::Publish {
                replace,
                package: Some(name(1)),
            },
        ),
        ["packages", _, "releases", _] => {
            let (name, version) = (name(1), name(3));
            match method {
                "DELETE" => Ok(Route::Revert { name, version }),
                _ => allow("GET, DELETE", Route::Release { name, version }),
            }
        }
        ["packages", _, "releases", _, "retire"] => {
            let (name, version) = (name(1), name(3));
            match method {
                "DELETE" => Ok(Route::Unretire { name, version }),
                _ => allow("POST, DELETE", Route::Retire { name, version }),
            }
        }
        ["packages", _, "releases", _, "docs"] => {
            let (name, version) = (name(1), name(3));
            match method {
                "DELETE" => Ok(Route::RemoveDocs { name, version }),
                _ => allow("POST, DELETE", Route::PublishDocs { name, version }),
            }
        }
        _ => Err(RouteError::NotFound),
    }?;
    check_names(&route)?;
    Ok(route)
}

/// Refuses a route whose package name or version cannot exist, before anything reads the
/// storage with it (`..`, `a/b` and the like never reach a path).
fn check_names(route: &Route) -> Result<(), RouteError> {
    if let Some(name) = route.package()
        && !crate::format::package_name::is_valid(name)
    {
        return Err(RouteError::BadRequest(format!(
            "{:?} is not a package name: names are a lowercase letter, then lowercase letters, digits and underscores, at most {} bytes",
            crate::format::tarball::one_line(name),
            crate::format::package_name::MAX_LEN
        )));
    }
    if let Some(version) = route.version()
        && crate::format::version::parse(version).is_err()
    {
        return Err(RouteError::BadRequest(format!(
            "{:?} is not a version: versions are SemVer 2.0 (e.g. 1.0.0)",
            crate::format::tarball::one_line(version)
        )));
    }
    if let (Some(name), Some(version)) = (route.package(), route.version())
        && !crate::format::package_name::release_fits(name, version)
    {
        return Err(RouteError::BadRequest(format!(
            "release {name} {:?} cannot exist: its file name NAME-VERSION.tar.gz would be longer than {} bytes",
            crate::format::tarball::one_line(version),
            crate::format::package_name::MAX_FILE_NAME
        )));
    }
    Ok(())
}

/// `?NAME=true` (or `1`) in a query string.
fn query_flag(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k == name && matches!(v, "true" | "1")
        })
    })
}

/// `%XX` escapes decoded; `None` for a malformed escape, a `/` or NUL, or text that is not
/// UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let out = encoding::percent_decode(raw)?;
    if out.contains(&b'/') || out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// The body format of a response: the Erlang term format when the request accepts
/// `application/vnd.hex+erlang` (hex_core decodes nothing else), JSON otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/vnd.hex+erlang`.
    Erlang,
    /// `application/json`.
    Json,
}

/// The media type of the Erlang term format.
pub const ERLANG_MEDIA_TYPE: &str = "application/vnd.hex+erlang";

impl Format {
    /// The format an `accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains(ERLANG_MEDIA_TYPE) => Format::Erlang,
            _ => Format::Json,
        }
    }

    /// `content-type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Erlang => ERLANG_MEDIA_TYPE,
            Format::Json => "application/json",
        }
    }

    /// `term` encoded in this format.
    pub fn encode(self, term: &Term) -> Vec<u8> {
        match self {
            Format::Erlang => etf::encode(term),
            Format::Json => to_json(term).into_bytes(),
        }
    }
}

/// `term` as JSON: maps with binary or atom keys become objects, binaries strings (invalid
/// UTF-8 replaced), `true`/`false` booleans, `nil`/`undefined`/`null` null, other atoms strings.
pub fn to_json(term: &Term) -> String {
    let mut out = String::new();
    write_json(term, &mut out);
    out
}

fn write_json(term: &Term, out: &mut String) {
    match term {
        Term::Integer(i) => out.push_str(&i.to_string()),
        Term::Float(f) if f.is_finite() => out.push_str(&f.to_string()),
        Term::Float(_) => out.push_str("null"),
        Term::Atom(a) => match a.as_str() {
            "true" | "false" => out.push_str(a),
            "nil" | "undefined" | "null" => out.push_str("null"),
            other => write_json_string(other, out),
        },
        Term::Binary(b) => write_json_string(&String::from_utf8_lossy(b), out),
        Term::List(items) | Term::Tuple(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Term::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let key = match k {
                    Term::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                    Term::Atom(a) => a.clone(),
                    other => to_json(other),
                };
                write_json_string(&key, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a retire request's body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetireBodyError {
    /// Not the Erlang term format of a map.
    #[error(
        "the body is not a map in the Erlang term format ({0}): send reason and message as hex_core does"
    )]
    NotTerm(String),
    /// No reason, or an unknown one.
    #[error("reason must be one of other, invalid, security, deprecated, renamed")]
    Reason,
}

/// The retirement a `POST .../retire` body asks for: `#{<<"reason">>, <<"message">>}`.
pub fn parse_retirement(body: &[u8]) -> Result<Retirement, RetireBodyError> {
    let term = etf::decode(body).map_err(|e| RetireBodyError::NotTerm(e.to_string()))?;
    if term.as_map().is_none() {
        return Err(RetireBodyError::NotTerm("not a map".into()));
    }
    let text = |key: &str| {
        term.get(key)
            .and_then(|t| t.as_str().or_else(|| t.as_atom()))
            .map(str::to_string)
    };
    let reason = match text("reason").as_deref() {
        Some("other") => RetirementReason::RetiredOther,
        Some("invalid") => RetirementReason::RetiredInvalid,
        Some("security") => RetirementReason::RetiredSecurity,
        Some("deprecated") => RetirementReason::RetiredDeprecated,
        Some("renamed") => RetirementReason::RetiredRenamed,
        _ => return Err(RetireBodyError::Reason),
    };
    let message = text("message").filter(|m| !m.is_empty() && m != "nil");
    Ok(Retirement { reason, message })
}

/// An error body as hexpm writes it: `#{"status", "message"}`, plus `"errors"` (field →
/// text) when given; mix prints the message and each error.
pub fn error_body(status: u16, message: &str, errors: &[(&str, String)]) -> Term {
    let mut entries = vec![
        ("status", Term::Integer(i64::from(status))),
        ("message", Term::bin(message)),
    ];
    if !errors.is_empty() {
        entries.push((
            "errors",
            Term::map(errors.iter().map(|(k, v)| (*k, Term::bin(v)))),
        ));
    }
    Term::map(entries)
}

/// `GET /api/users/me`: the key's label as user name; no organizations (mix maps over them).
pub fn me_body(label: &str) -> Term {
    Term::map([
        ("username", Term::bin(label)),
        ("organizations", Term::list([])),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str, query: Option<&str>) -> Result<Route, RouteError> {
        route(method, path, query, "acme")
    }

    #[test]
    fn routes_of_both_publish_paths_and_the_repository_form() {
        assert_eq!(
            r("POST", "/api/publish", Some("replace=false")),
            Ok(Route::Publish {
                replace: false,
                package: None
            })
        );
        assert_eq!(
            r("POST", "/api/repos/acme/publish", Some("replace=true")),
            Ok(Route::Publish {
                replace: true,
                package: None
            })
        );
        assert_eq!(
            r("POST", "/api/packages/foo/releases", Some("replace=true")),
            Ok(Route::Publish {
                replace: true,
                package: Some("foo".into())
            })
        );
        assert!(matches!(
            r("GET", "/api/packages/..", None),
            Err(RouteError::BadRequest(_))
        ));
        assert!(matches!(
            r("DELETE", "/api/packages/foo/releases/1.0", None),
            Err(RouteError::BadRequest(_))
        ));
        assert_eq!(
            r("POST", "/api/repos/other/publish", None),
            Err(RouteError::NotFound)
        );
        assert_eq!(r("GET", "/api/users/me", None), Ok(Route::Me));
        assert_eq!(
            r("DELETE", "/api/packages/foo/releases/1.0.0%2Bbuild", None),
            Ok(Route::Revert {
                name: "foo".into(),
                version: "1.0.0+build".into()
            })
        );
        assert_eq!(
            r("DELETE", "/api/packages/foo/releases/1.0.0/retire", None),
            Ok(Route::Unretire {
                name: "foo".into(),
                version: "1.0.0".into()
            })
        );
        assert_eq!(
            r("PUT", "/api/packages/foo/releases/1.0.0/docs", None),
            Err(RouteError::MethodNotAllowed("POST, DELETE"))
        );
        assert_eq!(
            r("GET", "/api/packages/a%2fb", None),
            Err(RouteError::NotFound)
        );
        assert_eq!(r("GET", "/api/nothing", None), Err(RouteError::NotFound));
        assert!(
            Route::Publish {
                replace: false,
                package: None
            }
            .writes()
        );
        assert!(!Route::Me.writes());
    }

    #[test]
    fn json_escapes_what_it_must() {
        let term = Term::map([
            ("a", Term::bin("x\"y\\z\n\u{1}")),
            (
                "b",
                Term::list([Term::Integer(-3), Term::boolean(true), Term::atom("nil")]),
            ),
        ]);
        assert_eq!(
            to_json(&term),
            r#"{"a":"x\"y\\z\n\u0001","b":[-3,true,null]}"#
        );
    }

    #[test]
    fn retire_bodies_as_hex_core_sends_them() {
        let body = etf::encode(&Term::map([
            ("reason", Term::bin("security")),
            ("message", Term::bin("CVE-1")),
        ]));
        assert_eq!(
            parse_retirement(&body),
            Ok(Retirement {
                reason: RetirementReason::RetiredSecurity,
                message: Some("CVE-1".into())
            })
        );
        let bad = etf::encode(&Term::map([("reason", Term::bin("bored"))]));
        assert_eq!(parse_retirement(&bad), Err(RetireBodyError::Reason));
        assert!(matches!(
            parse_retirement(b"{}"),
            Err(RetireBodyError::NotTerm(_))
        ));
    }

    #[test]
    fn error_bodies_carry_status_message_and_errors() {
        let body = error_body(422, "Validation error(s)", &[("inserted_at", "x".into())]);
        assert_eq!(body.get("status").and_then(Term::as_int), Some(422));
        assert_eq!(
            body.get("errors")
                .and_then(|e| e.get("inserted_at"))
                .and_then(Term::as_str),
            Some("x")
        );
    }
}
