//! The HTML pages of `hexreg serve`, free of I/O: data in, a page out.
//!
//! What belongs here: HTML, as functions of the data shown, and reading the files inside a
//! tarball for those pages. What must not: sockets, routing, caches or the storage (that is
//! [`crate::server`]).
//!
//! Pages live at `/` (the package list, with search by `?q=`) and under `/-/`, a prefix no
//! registry file or API path can take (package names are `[a-z][a-z0-9_]*`):
//! `/-/packages/NAME`, `/-/packages/NAME/VERSION`, `/-/docs/NAME/VERSION/...` and
//! `/-/docs/NAME/latest/...`. Every text shown is escaped by [`escape`] (text from a tarball,
//! a package record or a request alike), every URL path segment by [`segment`], and a link
//! taken from a tarball or an advisory is only made a link when it is `http://` or `https://`
//! ([`safe_url`]). Pages carry their CSS inline: no script, no external asset.
//!
//! [`archive`] reads what the pages show from inside tarballs, in memory.

pub mod archive;

use std::fmt::Write as _;

use crate::format::advisory::severity_name;
use crate::format::encoding::{self, hex_lower, hex_upper};
use crate::format::registry::{Release, SecurityAdvisory};
use archive::Details;

/// The prefix of every page but the package list.
pub const PREFIX: &str = "/-/";

/// `text` made safe in HTML text and in a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one URL path segment (or query value): everything but unreserved characters
/// percent-encoded.
pub fn segment(text: &str) -> String {
    encoding::percent_encode_segment(text)
}

/// `url` when it is an absolute `http://` or `https://` URL, fit for an `href` once escaped;
/// `None` for anything else (`javascript:`, `data:`, relative).
pub fn safe_url(url: &str) -> Option<&str> {
    let lower = url.trim_start().get(..8).unwrap_or("").to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then_some(url.trim_start())
}

/// A `?q=` value decoded: `+` as space, `%XX` escapes (invalid ones kept as they are).
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    let query = query?;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            let out = encoding::percent_decode_lenient(&v.replace('+', " "));
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
    }
    None
}

/// `YYYY-MM-DD HH:MM UTC` of seconds since the epoch.
pub fn utc_date(secs: i64) -> String {
    let (year, month, day) = crate::format::time::civil_from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

const STYLE: &str = "
:root{color-scheme:light dark;--fg:#1b1b1f;--bg:#fff;--muted:#5c5c66;--line:#d8d8de;--accent:#4e2a8e;--warn:#8a4b00;--bad:#a4141a;--card:#f6f6f8}
@media (prefers-color-scheme:dark){:root{--fg:#e8e8ec;--bg:#141417;--muted:#a8a8b3;--line:#3a3a42;--accent:#c6a6ff;--warn:#f0b45a;--bad:#ff8a8f;--card:#1d1d22}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
a:focus-visible,input:focus-visible,button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.skip{position:absolute;left:-999px;top:0;background:var(--bg);padding:.5rem 1rem;z-index:1}
.skip:focus{left:.5rem}
header{border-bottom:1px solid var(--line);padding:.75rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center}
header .brand{font-weight:700;text-decoration:none;color:var(--fg)}
form.search{display:flex;gap:.5rem;flex:1 1 16rem;max-width:32rem}
form.search input{flex:1;min-width:0;font:inherit;padding:.4rem .6rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
form.search button{font:inherit;padding:.4rem .8rem;border:1px solid var(--accent);border-radius:6px;background:var(--accent);color:var(--bg);cursor:pointer}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0;overflow-wrap:anywhere}
h2{font-size:1.2rem;margin:1.5rem 0 .5rem;border-bottom:1px solid var(--line)}
ul.packages{list-style:none;padding:0;margin:0}
ul.packages li{padding:.75rem 0;border-bottom:1px solid var(--line)}
ul.packages .name{font-weight:600;font-size:1.1rem}
.muted{color:var(--muted)}
.desc{margin:.25rem 0 0;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;overflow-wrap:anywhere}
pre{background:var(--card);padding:.75rem;border-radius:6px;overflow-x:auto;white-space:pre-wrap}
.badge{display:inline-block;font-size:.8rem;padding:0 .4rem;border-radius:4px;border:1px solid currentColor}
.retired{color:var(--warn)}
.advisory{color:var(--bad)}
.card{background:var(--card);border-radius:8px;padding:.75rem 1rem;margin:.75rem 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0;overflow-wrap:anywhere}
footer{max-width:60rem;margin:2rem auto;padding:0 1rem;color:var(--muted);font-size:.9rem}
@media (max-width:40rem){dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.5rem}th,td{padding:.3rem}}
";

/// A whole page: `title` (escaped here), the search box holding `query`, and `body`
/// (already HTML).
pub fn layout(repo: &str, title: &str, query: &str, body: &str) -> String {
    let repo = escape(repo);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title} · {repo}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
<a class=\"skip\" href=\"#main\">Skip to content</a>\n\
<header>\n<a class=\"brand\" href=\"/\">{repo} packages</a>\n\
<form class=\"search\" role=\"search\" method=\"get\" action=\"/\">\n\
<label for=\"q\" class=\"sr-only\">Search packages</label>\n\
<input id=\"q\" name=\"q\" type=\"search\" value=\"{query}\" placeholder=\"package name\">\n\
<button type=\"submit\">Search</button>\n</form>\n</header>\n\
<main id=\"main\" tabindex=\"-1\">\n{body}</main>\n\
<footer>Served by hexreg from the signed registry <code>{repo}</code>.</footer>\n</body>\n</html>\n",
        title = escape(title),
        query = escape(query),
    )
}

/// One package of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    /// Its name.
    pub name: String,
    /// Its newest version not retired (else its newest).
    pub latest: Option<String>,
    /// Whether every version is retired.
    pub all_retired: bool,
    /// Whether some version has an advisory.
    pub advisories: bool,
}

/// Packages shown on one page of the list.
pub const PAGE_SIZE: usize = 100;

/// Whether `item` matches the search `query`: every word of it, case-insensitively, in the
/// name. (Descriptions live in tarballs, which the list never reads: its cost stays that of
/// the page shown, whatever the registry holds.)
pub fn matches(item: &ListItem, query: &str) -> bool {
    let name = item.name.to_lowercase();
    query
        .split_whitespace()
        .all(|word| name.contains(&word.to_lowercase()))
}

/// Page `page` (from 1; past the last, the last) of the package list at `/`: the packages of
/// `items` that match `query`, [`PAGE_SIZE`] a page, with links to the pages before and
/// after; `note` (text) under the count, when given.
pub fn index_page(
    repo: &str,
    items: &[ListItem],
    query: &str,
    page: usize,
    note: Option<&str>,
) -> String {
    let query = query.trim();
    let matching: Vec<&ListItem> = items.iter().filter(|i| matches(i, query)).collect();
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let shown = matching.iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE);
    let mut body = String::new();
    if query.is_empty() {
        let _ = writeln!(
            body,
            "<h1>Packages</h1>\n<p class=\"muted\" id=\"count\">{} package{} in repository <code>{}</code></p>",
            items.len(),
            plural(items.len()),
            escape(repo)
        );
    } else {
        let _ = writeln!(
            body,
            "<h1>Search results</h1>\n<p class=\"muted\" id=\"count\">{} of {} package{} match <q>{}</q> · <a href=\"/\">all packages</a></p>",
            matching.len(),
            items.len(),
            plural(items.len()),
            escape(query)
        );
    }
    if let Some(note) = note {
        let _ = writeln!(body, "<p class=\"muted\" id=\"note\">{}</p>", escape(note));
    }
    if matching.is_empty() {
        body.push_str("<p>No packages.</p>\n");
    } else {
        body.push_str("<ul class=\"packages\">\n");
        for item in shown {
            let _ = write!(
                body,
                "<li><a class=\"name\" href=\"/-/packages/{}\">{}</a>",
                segment(&item.name),
                escape(&item.name)
            );
            if let Some(latest) = &item.latest {
                let _ = write!(body, " <span class=\"muted\">{}</span>", escape(latest));
            }
            if item.all_retired {
                body.push_str(" <span class=\"badge retired\">retired</span>");
            }
            if item.advisories {
                body.push_str(" <span class=\"badge advisory\">advisory</span>");
            }
            body.push_str("</li>\n");
        }
        body.push_str("</ul>\n");
    }
    if pages > 1 {
        let link = |to: usize| {
            let mut href = format!("/?page={to}");
            if !query.is_empty() {
                href.push_str("&amp;q=");
                href.push_str(&segment(query));
            }
            href
        };
        body.push_str("<nav class=\"pager\" id=\"pager\">");
        if page > 1 {
            let _ = write!(
                body,
                "<a rel=\"prev\" href=\"{}\">previous</a> ",
                link(page - 1)
            );
        }
        let _ = write!(body, "<span class=\"muted\">page {page} of {pages}</span>");
        if page < pages {
            let _ = write!(
                body,
                " <a rel=\"next\" href=\"{}\">next</a>",
                link(page + 1)
            );
        }
        body.push_str("</nav>\n");
    }
    layout(repo, "Packages", query, &body)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What a package page shows.
pub struct PackageView<'a> {
    /// The repository.
    pub repo: &'a str,
    /// The package.
    pub name: &'a str,
    /// Its releases, newest first.
    pub releases: &'a [Release],
    /// Its advisories (the releases' `advisory_indexes` point into them).
    pub advisories: &'a [SecurityAdvisory],
    /// The latest release's tarball, when it could be read.
    pub latest: Option<(&'a Release, &'a Details)>,
    /// Which versions have docs.
    pub has_docs: &'a dyn Fn(&str) -> bool,
}

/// The newest release that is not retired (else the newest) of `releases`, newest first.
pub fn latest(releases: &[Release]) -> Option<&Release> {
    releases
        .iter()
        .find(|r| r.retired.is_none())
        .or_else(|| releases.first())
}

fn retirement_html(release: &Release) -> String {
    match &release.retired {
        None => String::new(),
        Some(retired) => {
            let mut out = format!(
                "<span class=\"badge retired\">retired: {}</span>",
                retired.reason.to_str()
            );
            if let Some(message) = &retired.message {
                let _ = write!(out, " <span class=\"retired\">{}</span>", escape(message));
            }
            out
        }
    }
}

fn advisories_of<'a>(
    release: &Release,
    advisories: &'a [SecurityAdvisory],
) -> Vec<&'a SecurityAdvisory> {
    release
        .advisory_indexes
        .iter()
        .filter_map(|i| advisories.get(*i as usize))
        .collect()
}

fn advisory_html(advisory: &SecurityAdvisory) -> String {
    let id = escape(&advisory.id);
    let id = match safe_url(&advisory.html_url) {
        Some(url) => format!("<a href=\"{}\">{id}</a>", escape(url)),
        None => id,
    };
    let mut out = format!(
        "<strong>{id}</strong> <span class=\"badge advisory\">{}</span> {}",
        severity_name(advisory.severity),
        escape(&advisory.summary)
    );
    if let Some(score) = advisory.cvss_score {
        let _ = write!(out, " <span class=\"muted\">CVSS {score:.1}</span>");
    }
    if !advisory.aliases.is_empty() {
        let aliases: Vec<String> = advisory.aliases.iter().map(|a| escape(a)).collect();
        let _ = write!(
            out,
            " <span class=\"muted\">({})</span>",
            aliases.join(", ")
        );
    }
    out
}

fn dependencies_html(repo: &str, release: &Release) -> String {
    if release.dependencies.is_empty() {
        return "<p class=\"muted\">No dependencies.</p>\n".into();
    }
    let mut out = String::from(
        "<div class=\"table-wrap\"><table>\n<thead><tr><th scope=\"col\">Package</th><th scope=\"col\">Requirement</th><th scope=\"col\">Notes</th></tr></thead>\n<tbody>\n",
    );
    for dep in &release.dependencies {
        let here = dep.repository.as_deref().is_none_or(|r| r == repo);
        let name = if here {
            format!(
                "<a href=\"/-/packages/{}\">{}</a>",
                segment(&dep.package),
                escape(&dep.package)
            )
        } else {
            escape(&dep.package)
        };
        let mut notes = Vec::new();
        if dep.optional == Some(true) {
            notes.push("optional".to_string());
        }
        if let Some(r) = dep.repository.as_deref().filter(|r| *r != repo) {
            notes.push(format!("repository {}", escape(r)));
        }
        if let Some(app) = dep.app.as_deref().filter(|a| *a != dep.package) {
            notes.push(format!("app {}", escape(app)));
        }
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&dep.requirement),
            notes.join(", ")
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn links_html(details: &Details) -> String {
    let mut out = String::new();
    if !details.licenses.is_empty() {
        let licenses: Vec<String> = details.licenses.iter().map(|l| escape(l)).collect();
        let _ = writeln!(out, "<dt>Licenses</dt><dd>{}</dd>", licenses.join(", "));
    }
    for (name, url) in &details.links {
        let value = match safe_url(url) {
            Some(url) => format!("<a href=\"{0}\">{0}</a>", escape(url)),
            None => escape(url),
        };
        let _ = writeln!(out, "<dt>{}</dt><dd>{value}</dd>", escape(name));
    }
    out
}

/// The version's download and docs links.
fn release_links(name: &str, release: &Release, has_docs: bool) -> String {
    let mut out = format!(
        "<a href=\"/tarballs/{}\" download>tarball</a>",
        segment(&format!("{name}-{}.tar", release.version))
    );
    if has_docs {
        let _ = write!(
            out,
            " · <a href=\"/-/docs/{}/{}/\">docs</a>",
            segment(name),
            segment(&release.version)
        );
    }
    out
}

/// The page of a package: `/-/packages/NAME`.
pub fn package_page(view: &PackageView) -> String {
    let name = view.name;
    let mut body = format!("<h1>{}</h1>\n", escape(name));
    let latest = latest(view.releases);
    if let Some((_, details)) = view.latest
        && let Some(desc) = &details.description
    {
        let _ = writeln!(
            body,
            "<p class=\"desc\" id=\"description\">{}</p>",
            escape(desc)
        );
    }
    if let Some(latest) = latest {
        body.push_str("<div class=\"card\"><dl class=\"facts\">\n");
        let _ = writeln!(
            body,
            "<dt>Latest</dt><dd><a href=\"/-/packages/{}/{}\">{}</a> {}</dd>",
            segment(name),
            segment(&latest.version),
            escape(&latest.version),
            retirement_html(latest)
        );
        let _ = writeln!(
            body,
            "<dt>Install</dt><dd><code>{{:{}, \"~&gt; {}\", repo: \"{}\"}}</code></dd>",
            escape(name),
            escape(&latest.version),
            escape(view.repo)
        );
        let _ = writeln!(
            body,
            "<dt>Checksum</dt><dd><code>{}</code></dd>",
            hex_lower(&latest.outer_checksum)
        );
        let _ = writeln!(
            body,
            "<dt>Download</dt><dd>{}</dd>",
            release_links(name, latest, (view.has_docs)(&latest.version))
        );
        if let Some((_, details)) = view.latest {
            body.push_str(&links_html(details));
        }
        body.push_str("</dl></div>\n");
    }
    if !view.advisories.is_empty() {
        body.push_str("<h2 id=\"advisories\">Advisories</h2>\n<ul>\n");
        for advisory in view.advisories {
            let _ = writeln!(body, "<li>{}</li>", advisory_html(advisory));
        }
        body.push_str("</ul>\n");
    }
    let _ = writeln!(
        body,
        "<h2 id=\"versions\">Versions</h2>\n<div class=\"table-wrap\"><table>\n<thead><tr><th scope=\"col\">Version</th><th scope=\"col\">Released</th><th scope=\"col\">Status</th><th scope=\"col\">Files</th></tr></thead>\n<tbody>"
    );
    for release in view.releases {
        let date = release
            .published_at
            .as_ref()
            .map(|t| utc_date(t.seconds))
            .unwrap_or_default();
        let mut status = retirement_html(release);
        for advisory in advisories_of(release, view.advisories) {
            let _ = write!(
                status,
                " <span class=\"badge advisory\">{}</span>",
                escape(&advisory.id)
            );
        }
        let _ = writeln!(
            body,
            "<tr><td><a href=\"/-/packages/{}/{}\">{}</a></td><td>{date}</td><td>{status}</td><td>{}</td></tr>",
            segment(name),
            segment(&release.version),
            escape(&release.version),
            release_links(name, release, (view.has_docs)(&release.version))
        );
    }
    body.push_str("</tbody></table></div>\n");
    if let Some(latest) = latest {
        let _ = write!(
            body,
            "<h2 id=\"dependencies\">Dependencies of {}</h2>\n{}",
            escape(&latest.version),
            dependencies_html(view.repo, latest)
        );
    }
    layout(view.repo, name, "", &body)
}

/// What a version page shows.
pub struct VersionView<'a> {
    /// The repository.
    pub repo: &'a str,
    /// The package.
    pub name: &'a str,
    /// The release.
    pub release: &'a Release,
    /// The package's advisories.
    pub advisories: &'a [SecurityAdvisory],
    /// The tarball's details, or why they cannot be shown.
    pub details: Result<&'a Details, String>,
    /// Whether the release has docs.
    pub has_docs: bool,
}

/// The page of one version: `/-/packages/NAME/VERSION`.
pub fn version_page(view: &VersionView) -> String {
    let (name, release) = (view.name, view.release);
    let mut body = format!(
        "<p><a href=\"/-/packages/{}\">← {}</a></p>\n<h1>{} {}</h1>\n",
        segment(name),
        escape(name),
        escape(name),
        escape(&release.version)
    );
    if let Ok(details) = &view.details
        && let Some(desc) = &details.description
    {
        let _ = writeln!(
            body,
            "<p class=\"desc\" id=\"description\">{}</p>",
            escape(desc)
        );
    }
    body.push_str("<div class=\"card\"><dl class=\"facts\">\n");
    if release.retired.is_some() {
        let _ = writeln!(
            body,
            "<dt>Retired</dt><dd>{}</dd>",
            retirement_html(release)
        );
    }
    if let Some(t) = &release.published_at {
        let _ = writeln!(body, "<dt>Released</dt><dd>{}</dd>", utc_date(t.seconds));
    }
    let _ = writeln!(
        body,
        "<dt>Checksum</dt><dd><code>{}</code></dd>\n<dt>Inner checksum</dt><dd><code>{}</code></dd>",
        hex_lower(&release.outer_checksum),
        hex_upper(&release.inner_checksum)
    );
    if let Ok(details) = &view.details
        && details.outer_checksum != release.outer_checksum
    {
        body.push_str("<dt>Warning</dt><dd class=\"advisory\">the tarball served does not match the registry's checksum</dd>\n");
    }
    let _ = writeln!(
        body,
        "<dt>Download</dt><dd>{}</dd>",
        release_links(name, release, view.has_docs)
    );
    if let Ok(details) = &view.details {
        body.push_str(&links_html(details));
    }
    body.push_str("</dl></div>\n");
    let advisories = advisories_of(release, view.advisories);
    if !advisories.is_empty() {
        body.push_str("<h2 id=\"advisories\">Advisories</h2>\n<ul>\n");
        for advisory in advisories {
            let _ = writeln!(body, "<li>{}</li>", advisory_html(advisory));
        }
        body.push_str("</ul>\n");
    }
    let _ = write!(
        body,
        "<h2 id=\"dependencies\">Dependencies</h2>\n{}",
        dependencies_html(view.repo, release)
    );
    match &view.details {
        Err(why) => {
            let _ = writeln!(
                body,
                "<h2>Files</h2>\n<p class=\"muted\">The tarball cannot be read: {}</p>",
                escape(why)
            );
        }
        Ok(details) => {
            let _ = writeln!(
                body,
                "<h2 id=\"files\">Files</h2>\n<div class=\"table-wrap\"><table>\n<thead><tr><th scope=\"col\">Path</th><th scope=\"col\">Bytes</th></tr></thead>\n<tbody>"
            );
            for (path, size) in &details.files {
                let _ = writeln!(
                    body,
                    "<tr><td><code>{}</code></td><td>{size}</td></tr>",
                    escape(path)
                );
            }
            body.push_str("</tbody></table></div>\n");
            if details.files_truncated {
                body.push_str("<p class=\"muted\">(more files not listed)</p>\n");
            }
            body.push_str("<h2 id=\"metadata\">Metadata</h2>\n<dl class=\"facts\">\n");
            for (key, value) in &details.metadata {
                let _ = writeln!(
                    body,
                    "<dt>{}</dt><dd><code>{}</code></dd>",
                    escape(key),
                    escape(value)
                );
            }
            body.push_str("</dl>\n");
        }
    }
    layout(view.repo, &format!("{name} {}", release.version), "", &body)
}

/// An error page: `title` (such as `Not found`) and a sentence.
pub fn error_page(repo: &str, title: &str, message: &str) -> String {
    let body = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/\">All packages</a></p>\n",
        escape(title),
        escape(message)
    );
    layout(repo, title, "", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<script>alert(1)</script>&\"'"),
            "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"
        );
        assert_eq!(escape("a\u{0}b"), "a\u{FFFD}b");
        assert_eq!(segment("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(safe_url("https://x.org/a"), Some("https://x.org/a"));
        assert_eq!(safe_url("HTTP://x"), Some("HTTP://x"));
        assert_eq!(safe_url("javascript:alert(1)"), None);
        assert_eq!(safe_url("/relative"), None);
    }

    #[test]
    fn queries() {
        assert_eq!(
            query_value(Some("a=1&q=json+parser%21"), "q").as_deref(),
            Some("json parser!")
        );
        assert_eq!(query_value(Some("q=%zz%"), "q").as_deref(), Some("%zz%"));
        assert_eq!(query_value(Some("x=1"), "q"), None);
        assert_eq!(query_value(None, "q"), None);
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(1_709_251_200), "2024-03-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
        // Never panics.
        let _ = utc_date(i64::MIN);
        let _ = utc_date(i64::MAX);
    }

    #[test]
    fn search_matches_names() {
        let item = ListItem {
            name: "acme_json".into(),
            latest: Some("1.0.0".into()),
            all_retired: false,
            advisories: false,
        };
        assert!(matches(&item, ""));
        assert!(matches(&item, "acme"));
        assert!(matches(&item, "JSON acme"));
        assert!(!matches(&item, "xml"));
        let page = index_page("acme", std::slice::from_ref(&item), "<b>", 1, None);
        assert!(page.contains("&lt;b&gt;"));
        assert!(!page.contains("<b>"));
        let page = index_page("acme", &[item], "", 1, Some("<i>"));
        assert!(page.contains("id=\"note\">&lt;i&gt;"));
        assert!(page.contains("href=\"/-/packages/acme_json\""));
        assert!(page.contains("<meta name=\"viewport\""));
        assert!(!page.contains("id=\"pager\""));
    }

    #[test]
    fn the_list_is_paged() {
        let items: Vec<ListItem> = (0..250)
            .map(|i| ListItem {
                name: format!("p{i:03}"),
                latest: None,
                all_retired: false,
                advisories: false,
            })
            .collect();
        let first = index_page("r", &items, "", 1, None);
        assert_eq!(first.matches("<li>").count(), PAGE_SIZE);
        assert!(first.contains("p000") && !first.contains("p100"));
        assert!(first.contains("href=\"/?page=2\""));
        assert!(first.contains("page 1 of 3"));
        let last = index_page("r", &items, "", 99, None);
        assert_eq!(last.matches("<li>").count(), 50);
        assert!(last.contains("p249") && last.contains("page 3 of 3"));
        assert!(!last.contains("rel=\"next\""));
        let searched = index_page("r", &items, "p1 &", 1, None);
        assert!(searched.contains("No packages."));
        let searched = index_page("r", &items, "p", 2, None);
        assert!(searched.contains("href=\"/?page=1&amp;q=p\""));
        assert!(searched.contains("href=\"/?page=3&amp;q=p\""));
    }
}
