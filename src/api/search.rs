//! `GET /api/packages?search=TERM&sort=SORT&page=N`: hex.pm's package search as
//! `mix hex.package search` and hex_core's `hex_api_package:search/3` call it, over what
//! hexreg knows (names from the `versions` index, descriptions from the engine's records).
//!
//! Every word of the search must appear, case-insensitively, in the package's name or
//! description (`name:WORD` and `description:WORD` restrict a word to one of them). Every
//! sort hex.pm accepts is accepted: `name`, `inserted_at`, `updated_at` order by what they say;
//! the download sorts (hexreg counts no downloads) put exact name matches first, then names
//! that start with the word, then the rest by name. [`PER_PAGE`] packages a page, as hex.pm.

use super::etf::Term;
use super::package::{Urls, rfc3339};
use crate::format::release_info::PackageInfo;

/// Packages per page.
pub const PER_PAGE: usize = 100;

/// The longest search text taken, in bytes.
pub const MAX_SEARCH: usize = 256;

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// `name`.
    Name,
    /// `inserted_at`: newest package first.
    InsertedAt,
    /// `updated_at`: most recently updated first.
    UpdatedAt,
    /// `downloads`, `total_downloads`, `recent_downloads` (and anything else): by relevance.
    Relevance,
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The words, lowercased.
    pub search: String,
    /// The order.
    pub sort: Sort,
    /// The page, from 1.
    pub page: usize,
}

/// The search a query string asks for: `search`, `sort`, `page` (bad or missing values take
/// hex.pm's defaults: no search, by name, page 1).
pub fn parse_query(query: Option<&str>) -> Query {
    let mut out = Query {
        search: String::new(),
        sort: Sort::Name,
        page: 1,
    };
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::format::encoding::percent_decode(&v.replace('+', " "))
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        match k {
            "search" => {
                let mut s = v.to_lowercase();
                while s.len() > MAX_SEARCH {
                    s.pop();
                }
                out.search = s;
            }
            "sort" => {
                out.sort = match v.as_str() {
                    "name" => Sort::Name,
                    "inserted_at" => Sort::InsertedAt,
                    "updated_at" => Sort::UpdatedAt,
                    _ => Sort::Relevance,
                }
            }
            "page" => out.page = v.parse::<usize>().ok().filter(|&p| p >= 1).unwrap_or(1),
            _ => {}
        }
    }
    out
}

/// A package that may be found: from the `versions` index and the engine's record.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its name.
    pub name: String,
    /// Its versions, as the index lists them.
    pub versions: Vec<String>,
    /// Its record (empty when it has none).
    pub info: std::sync::Arc<PackageInfo>,
}

impl Candidate {
    /// The newest version, by Elixir's order.
    fn newest(&self, stable_only: bool) -> Option<&str> {
        let mut best: Option<(&str, semver::Version)> = None;
        for v in &self.versions {
            let Ok(parsed) = crate::format::version::parse(v) else {
                continue;
            };
            if stable_only && !parsed.pre.is_empty() {
                continue;
            }
            if best.as_ref().is_none_or(|(_, b)| {
                crate::format::version::compare(&parsed, b) == std::cmp::Ordering::Greater
            }) {
                best = Some((v, parsed));
            }
        }
        best.map(|(v, _)| v)
    }

    fn description(&self) -> Option<&str> {
        let newest = self.newest(false)?;
        self.info.release(newest)?.description.as_deref()
    }

    fn inserted(&self) -> i64 {
        self.info
            .releases
            .iter()
            .map(|r| r.indexed_at)
            .min()
            .unwrap_or(0)
    }

    fn updated(&self) -> i64 {
        self.info
            .releases
            .iter()
            .map(|r| r.updated_at)
            .max()
            .unwrap_or(0)
    }
}

fn matches(c: &Candidate, search: &str) -> bool {
    let name = c.name.to_lowercase();
    let description = c.description().unwrap_or("").to_lowercase();
    search.split_whitespace().all(|word| {
        if let Some(w) = word.strip_prefix("name:") {
            name.contains(w)
        } else if let Some(w) = word.strip_prefix("description:") {
            description.contains(w)
        } else {
            name.contains(word) || description.contains(word)
        }
    })
}

/// The page of `candidates` that `query` asks for.
pub fn search<'a>(query: &Query, candidates: &'a [Candidate]) -> Vec<&'a Candidate> {
    let mut hits: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| matches(c, &query.search))
        .collect();
    let first = query
        .search
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    match query.sort {
        Sort::Name => hits.sort_by(|a, b| a.name.cmp(&b.name)),
        Sort::InsertedAt => {
            hits.sort_by(|a, b| b.inserted().cmp(&a.inserted()).then(a.name.cmp(&b.name)))
        }
        Sort::UpdatedAt => {
            hits.sort_by(|a, b| b.updated().cmp(&a.updated()).then(a.name.cmp(&b.name)))
        }
        Sort::Relevance => hits.sort_by_key(|c| {
            let name = c.name.to_lowercase();
            let rank = if name == first {
                0
            } else if name.starts_with(&first) {
                1
            } else {
                2
            };
            (rank, c.name.clone())
        }),
    }
    hits.into_iter()
        .skip((query.page - 1).saturating_mul(PER_PAGE))
        .take(PER_PAGE)
        .collect()
}

/// One result as hex.pm lists it (the package view without its release details).
pub fn hit_body(c: &Candidate, urls: &Urls, repo: &str) -> Term {
    let url = format!("{}/packages/{}", urls.api, c.name);
    let nil = || Term::atom("nil");
    let newest = c.newest(false);
    let speaking = newest.and_then(|v| c.info.release(v));
    let text = |t: Option<&str>| t.map(Term::bin).unwrap_or_else(nil);
    let time = |t: i64| if t > 0 { Term::bin(&rfc3339(t)) } else { nil() };
    Term::map([
        ("name", Term::bin(&c.name)),
        ("repository", Term::bin(repo)),
        (
            "meta",
            Term::map([
                ("description", text(c.description())),
                (
                    "licenses",
                    Term::list(
                        speaking
                            .map(|i| i.licenses.as_slice())
                            .unwrap_or_default()
                            .iter()
                            .map(|l| Term::bin(l)),
                    ),
                ),
                (
                    "links",
                    Term::map(
                        speaking
                            .map(|i| i.links.as_slice())
                            .unwrap_or_default()
                            .iter()
                            .map(|l| (l.name.as_str(), Term::bin(&l.url))),
                    ),
                ),
            ]),
        ),
        ("latest_version", text(newest)),
        ("latest_stable_version", text(c.newest(true))),
        (
            "releases",
            Term::list(c.versions.iter().rev().map(|v| {
                Term::map([
                    ("version", Term::bin(v)),
                    ("url", Term::bin(&format!("{url}/releases/{v}"))),
                ])
            })),
        ),
        ("inserted_at", time(c.inserted())),
        ("updated_at", time(c.updated())),
        ("url", Term::bin(&url)),
        (
            "html_url",
            Term::bin(&format!("{}/-/packages/{}", urls.repo, c.name)),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::release_info::ReleaseInfo;
    use std::sync::Arc;

    fn candidate(name: &str, description: &str, at: i64) -> Candidate {
        Candidate {
            name: name.into(),
            versions: vec!["0.1.0".into(), "1.0.0".into(), "2.0.0-rc.1".into()],
            info: Arc::new(PackageInfo {
                releases: vec![ReleaseInfo {
                    version: "2.0.0-rc.1".into(),
                    description: Some(description.into()),
                    indexed_at: at,
                    updated_at: at,
                    ..ReleaseInfo::default()
                }],
            }),
        }
    }

    #[test]
    fn queries_take_every_hex_pm_sort_and_bad_pages() {
        let q = parse_query(Some("search=Plug+auth&sort=downloads&page=2"));
        assert_eq!(q.search, "plug auth");
        assert_eq!(q.sort, Sort::Relevance);
        assert_eq!(q.page, 2);
        for sort in ["recent_downloads", "total_downloads", "nonsense"] {
            assert_eq!(
                parse_query(Some(&format!("sort={sort}"))).sort,
                Sort::Relevance
            );
        }
        assert_eq!(parse_query(Some("page=0")).page, 1);
        assert_eq!(parse_query(Some("page=x&search=%zz")).search, "");
        assert_eq!(parse_query(None).sort, Sort::Name);
        let long = format!("search={}", "a".repeat(10_000));
        assert_eq!(parse_query(Some(&long)).search.len(), MAX_SEARCH);
    }

    #[test]
    fn search_matches_names_and_descriptions_in_order() {
        let all = vec![
            candidate("plug_auth", "Authentication for Plug", 30),
            candidate("plug", "A specification for web modules", 10),
            candidate("jason", "A JSON parser", 20),
            candidate("myplug", "Nothing", 40),
        ];
        let names = |q: &str| {
            search(&parse_query(Some(q)), &all)
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("search=plug&sort=downloads"),
            ["plug", "plug_auth", "myplug"]
        );
        assert_eq!(
            names("search=plug&sort=name"),
            ["myplug", "plug", "plug_auth"]
        );
        assert_eq!(
            names("search=plug&sort=inserted_at"),
            ["myplug", "plug_auth", "plug"]
        );
        assert_eq!(names("search=JSON"), ["jason"]);
        assert_eq!(names("search=description:authentication"), ["plug_auth"]);
        assert_eq!(names("search=name:json"), Vec::<&str>::new());
        assert_eq!(names("search=plug&page=2"), Vec::<&str>::new());
        let body = hit_body(
            &all[2],
            &Urls {
                api: "http://h/api".into(),
                repo: "http://h".into(),
            },
            "acme",
        );
        assert_eq!(
            body.get("meta")
                .and_then(|m| m.get("description"))
                .and_then(Term::as_str),
            Some("A JSON parser")
        );
        assert_eq!(
            body.get("latest_stable_version").and_then(Term::as_str),
            Some("1.0.0")
        );
    }
}
