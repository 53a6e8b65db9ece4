//! The bodies of `GET /api/packages/NAME` and `GET /api/packages/NAME/releases/VERSION`, with
//! hex.pm's field names and types (hexpm/hexpm `lib/hexpm_web/views/api/package_view.ex`,
//! `release_view.ex`), built from the signed `packages/NAME` and the engine's per-package record
//! ([`crate::format::release_info`]): what `mix hex.info`, hex_core and Renovate's hex datasource
//! read.

use super::etf::Term;
use crate::format::encoding::hex_lower;
use crate::format::registry::{Release, Retirement};
use crate::format::release_info::{PackageInfo, ReleaseInfo};

/// Where things are, as the client reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    /// The API, `http://HOST/api`.
    pub api: String,
    /// The repository (and its web pages), `http://HOST`.
    pub repo: String,
}

pub use crate::format::time::rfc3339;

fn nil() -> Term {
    Term::atom("nil")
}

fn opt_text(text: Option<&str>) -> Term {
    text.map(Term::bin).unwrap_or_else(nil)
}

fn texts(items: &[String]) -> Term {
    Term::list(items.iter().map(|i| Term::bin(i)))
}

/// When a release entered: the release date the registry records, else when hexreg indexed it.
fn inserted_at(release: &Release, info: Option<&ReleaseInfo>) -> Option<i64> {
    release
        .published_at
        .map(|t| t.seconds)
        .or_else(|| info.map(|i| i.indexed_at).filter(|&t| t > 0))
}

/// When a release last changed: when hexreg last recorded a new tarball for it.
fn updated_at(release: &Release, info: Option<&ReleaseInfo>) -> Option<i64> {
    let inserted = inserted_at(release, info);
    let updated = info.map(|i| i.updated_at).filter(|&t| t > 0);
    match (inserted, updated) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn time(seconds: Option<i64>) -> Term {
    seconds.map(|s| Term::bin(&rfc3339(s))).unwrap_or_else(nil)
}

fn retirement_body(retired: &Retirement) -> Term {
    Term::map([
        ("reason", Term::bin(retired.reason.to_str())),
        ("message", opt_text(retired.message.as_deref())),
    ])
}

/// `links` as hex.pm sends it: a map of name to URL.
fn links(info: Option<&ReleaseInfo>) -> Term {
    Term::map(
        info.map(|i| i.links.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|l| (l.name.as_str(), Term::bin(&l.url))),
    )
}

/// A release as `GET .../releases/VERSION` and a publish answer it. `info` is the engine's
/// record of it, if any; `repo` is the repository's name.
pub fn release_body(
    name: &str,
    release: &Release,
    info: Option<&ReleaseInfo>,
    urls: &Urls,
    repo: &str,
) -> Term {
    let version = &release.version;
    let url = format!("{}/packages/{name}/releases/{version}", urls.api);
    let has_docs = info.is_some_and(|i| i.has_docs);
    let requirements = Term::map(release.dependencies.iter().map(|d| {
        (
            d.package.as_str(),
            Term::map([
                ("requirement", Term::bin(&d.requirement)),
                ("optional", Term::boolean(d.optional.unwrap_or(false))),
                (
                    "app",
                    Term::bin(d.app.as_deref().unwrap_or(d.package.as_str())),
                ),
            ]),
        )
    }));
    let meta = Term::map([
        (
            "app",
            Term::bin(info.map_or(name, |i| if i.app.is_empty() { name } else { &i.app })),
        ),
        (
            "build_tools",
            texts(info.map(|i| i.build_tools.as_slice()).unwrap_or_default()),
        ),
        ("elixir", opt_text(info.and_then(|i| i.elixir.as_deref()))),
    ]);
    let publisher = match info.and_then(|i| i.publisher.as_deref()) {
        Some(label) => Term::map([
            ("username", Term::bin(label)),
            ("email", nil()),
            ("url", nil()),
        ]),
        None => nil(),
    };
    Term::map([
        ("name", Term::bin(name)),
        ("version", Term::bin(version)),
        ("checksum", Term::bin(&hex_lower(&release.outer_checksum))),
        (
            "inner_checksum",
            Term::bin(&hex_lower(&release.inner_checksum)),
        ),
        ("has_docs", Term::boolean(has_docs)),
        ("url", Term::bin(&url)),
        (
            "html_url",
            Term::bin(&format!("{}/-/packages/{name}/{version}", urls.repo)),
        ),
        (
            "docs_html_url",
            if has_docs {
                Term::bin(&format!("{}/-/docs/{name}/{version}/", urls.repo))
            } else {
                nil()
            },
        ),
        (
            "package_url",
            Term::bin(&format!("{}/packages/{name}", urls.api)),
        ),
        (
            "tarball_url",
            Term::bin(&format!("{}/tarballs/{name}-{version}.tar", urls.repo)),
        ),
        ("meta", meta),
        ("requirements", requirements),
        (
            "retirement",
            release
                .retired
                .as_ref()
                .map(retirement_body)
                .unwrap_or_else(nil),
        ),
        ("publisher", publisher),
        ("inserted_at", time(inserted_at(release, info))),
        ("updated_at", time(updated_at(release, info))),
        ("configs", configs(name, version, repo)),
    ])
}

/// How to depend on release `version` of `name` from repository `repo`, per build tool, as
/// hexpm's `configs` (`mix hex.info` prints the `mix.exs` one).
fn configs(name: &str, version: &str, repo: &str) -> Term {
    let requirement = match crate::format::version::parse(version) {
        Ok(v) if v.pre.is_empty() => format!("~> {}.{}", v.major, v.minor),
        _ => version.to_string(),
    };
    Term::map([
        (
            "mix.exs",
            Term::bin(&format!("{{:{name}, \"{requirement}\", repo: \"{repo}\"}}")),
        ),
        (
            "rebar.config",
            Term::bin(&format!("{{{name}, \"{version}\"}}")),
        ),
        (
            "erlang.mk",
            Term::bin(&format!("dep_{name} = hex {version}")),
        ),
    ])
}

/// The release whose metadata speaks for the package, as hex.pm's package `meta` is the last
/// published release's: the newest version with a record.
fn speaking<'a>(releases: &[Release], info: &'a PackageInfo) -> Option<&'a ReleaseInfo> {
    releases.iter().rev().find_map(|r| {
        info.release(&r.version)
            .filter(|i| i.outer_checksum == r.outer_checksum)
    })
}

/// The record of `release`, when it describes the same tarball.
fn record<'a>(release: &Release, info: &'a PackageInfo) -> Option<&'a ReleaseInfo> {
    info.release(&release.version)
        .filter(|i| i.outer_checksum == release.outer_checksum)
}

/// A package as `GET /api/packages/NAME` answers it: `releases` (oldest first, as the registry
/// records them) newest first, `meta` from the newest release the record describes.
pub fn package_body(
    name: &str,
    repo: &str,
    releases: &[Release],
    info: &PackageInfo,
    urls: &Urls,
) -> Term {
    let url = format!("{}/packages/{name}", urls.api);
    let newest = releases
        .last()
        .map(|r| r.version.as_str())
        .unwrap_or("0.0.0");
    let stable = releases
        .iter()
        .rev()
        .find(|r| r.parsed.pre.is_empty())
        .map(|r| Term::bin(&r.version))
        .unwrap_or_else(nil);
    let meta_of = speaking(releases, info);
    let mut meta = vec![
        (
            "description",
            opt_text(meta_of.and_then(|i| i.description.as_deref())),
        ),
        (
            "licenses",
            texts(meta_of.map(|i| i.licenses.as_slice()).unwrap_or_default()),
        ),
        ("links", links(meta_of)),
        (
            "build_tools",
            texts(
                meta_of
                    .map(|i| i.build_tools.as_slice())
                    .unwrap_or_default(),
            ),
        ),
    ];
    if let Some(i) = meta_of.filter(|i| !i.maintainers.is_empty()) {
        meta.push(("maintainers", texts(&i.maintainers)));
    }
    let any_docs = releases
        .iter()
        .any(|r| record(r, info).is_some_and(|i| i.has_docs));
    let inserted = releases
        .iter()
        .filter_map(|r| inserted_at(r, record(r, info)))
        .min();
    let updated = releases
        .iter()
        .filter_map(|r| updated_at(r, record(r, info)))
        .max();
    Term::map([
        ("name", Term::bin(name)),
        ("repository", Term::bin(repo)),
        ("meta", Term::map(meta)),
        ("configs", configs(name, newest, repo)),
        ("url", Term::bin(&url)),
        (
            "html_url",
            Term::bin(&format!("{}/-/packages/{name}", urls.repo)),
        ),
        (
            "docs_html_url",
            if any_docs {
                Term::bin(&format!("{}/-/docs/{name}/latest/", urls.repo))
            } else {
                nil()
            },
        ),
        ("latest_version", Term::bin(newest)),
        ("latest_stable_version", stable),
        ("inserted_at", time(inserted)),
        ("updated_at", time(updated)),
        (
            "releases",
            Term::list(releases.iter().rev().map(|r| {
                let i = record(r, info);
                Term::map([
                    ("version", Term::bin(&r.version)),
                    ("url", Term::bin(&format!("{url}/releases/{}", r.version))),
                    ("has_docs", Term::boolean(i.is_some_and(|i| i.has_docs))),
                    ("retired", Term::boolean(r.retired.is_some())),
                    ("inserted_at", time(inserted_at(r, i))),
                    ("updated_at", time(updated_at(r, i))),
                ])
            })),
        ),
        (
            "retirements",
            Term::map(
                releases.iter().filter_map(|r| {
                    Some((r.version.as_str(), retirement_body(r.retired.as_ref()?)))
                }),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::registry::{RetirementReason, Timestamp};
    use crate::format::release_info::Link;

    fn release(version: &str, published: Option<i64>) -> Release {
        Release {
            version: version.into(),
            parsed: crate::format::version::parse(version).unwrap(),
            inner_checksum: [1; 32],
            outer_checksum: [2; 32],
            dependencies: vec![],
            retired: None,
            published_at: published.map(|seconds| Timestamp { seconds, nanos: 0 }),
            advisory_indexes: vec![],
        }
    }

    fn urls() -> Urls {
        Urls {
            api: "http://h/api".into(),
            repo: "http://h".into(),
        }
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_526_245), "2026-12-06T03:04:05Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn package_bodies_carry_hex_pm_fields() {
        let mut old = release("1.0.0", Some(1_000));
        old.retired = Some(Retirement {
            reason: RetirementReason::RetiredSecurity,
            message: None,
        });
        let releases = vec![old, release("1.1.0-rc.0", None)];
        let info = PackageInfo {
            releases: vec![ReleaseInfo {
                version: "1.1.0-rc.0".into(),
                outer_checksum: vec![2; 32],
                description: Some("Foo things".into()),
                licenses: vec!["MIT".into()],
                links: vec![Link {
                    name: "GitHub".into(),
                    url: "https://github.com/a/foo".into(),
                }],
                build_tools: vec!["mix".into()],
                app: "foo".into(),
                has_docs: true,
                indexed_at: 2_000,
                updated_at: 3_000,
                ..ReleaseInfo::default()
            }],
        };
        let body = package_body("foo", "acme", &releases, &info, &urls());
        let meta = body.get("meta").unwrap();
        assert_eq!(
            meta.get("description").and_then(Term::as_str),
            Some("Foo things")
        );
        assert_eq!(
            meta.get("links")
                .and_then(|l| l.get("GitHub"))
                .and_then(Term::as_str),
            Some("https://github.com/a/foo")
        );
        assert!(meta.get("maintainers").is_none());
        assert_eq!(
            body.get("html_url").and_then(Term::as_str),
            Some("http://h/-/packages/foo")
        );
        assert_eq!(
            body.get("docs_html_url").and_then(Term::as_str),
            Some("http://h/-/docs/foo/latest/")
        );
        assert_eq!(
            body.get("latest_stable_version").and_then(Term::as_str),
            Some("1.0.0")
        );
        let Some(Term::List(list)) = body.get("releases") else {
            panic!("releases is a list")
        };
        assert_eq!(
            list[0].get("version").and_then(Term::as_str),
            Some("1.1.0-rc.0")
        );
        assert_eq!(
            list[0].get("inserted_at").and_then(Term::as_str),
            Some("1970-01-01T00:33:20Z")
        );
        assert_eq!(
            list[0].get("updated_at").and_then(Term::as_str),
            Some("1970-01-01T00:50:00Z")
        );
        // A recorded release date wins; no record: no docs.
        assert_eq!(
            list[1].get("inserted_at").and_then(Term::as_str),
            Some("1970-01-01T00:16:40Z")
        );
        assert_eq!(list[1].get("has_docs"), Some(&Term::boolean(false)));
        assert!(
            body.get("retirements")
                .and_then(|r| r.get("1.0.0"))
                .is_some()
        );
        let json = super::super::to_json(&body);
        assert!(
            json.contains(r#""links":{"GitHub":"https://github.com/a/foo"}"#),
            "{json}"
        );

        let one = release_body(
            "foo",
            &releases[1],
            info.release("1.1.0-rc.0"),
            &urls(),
            "acme",
        );
        let meta = one.get("meta").unwrap();
        assert_eq!(meta.get("app").and_then(Term::as_str), Some("foo"));
        assert_eq!(one.get("publisher"), Some(&Term::atom("nil")));
        assert_eq!(
            one.get("docs_html_url").and_then(Term::as_str),
            Some("http://h/-/docs/foo/1.1.0-rc.0/")
        );
        // A record of another tarball of the same version is not this release's.
        let mut replaced = releases[1].clone();
        replaced.outer_checksum = [9; 32];
        let body = package_body("foo", "acme", &[replaced], &info, &urls());
        assert_eq!(
            body.get("meta").and_then(|m| m.get("description")),
            Some(&Term::atom("nil"))
        );
    }
}
