//! The web pages of `hexreg serve`: every route over HTTP (package list, search, package and
//! version pages, hosted docs, errors, auth, escaping of hostile tarball text), then the same
//! pages in a real browser (headless Chromium from Debian), with screenshots.
//!
//! The fixture repository is built by `hexreg build` from tarballs made by
//! `support::package::Package`; retirements and an advisory are added with hexreg itself, a
//! docs tarball is placed at `docs/NAME-VERSION.tar.gz`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use support::hexreg_serve::{HttpResponse, Server};
use support::package::Package;
use support::run::{build_with, ok, private_key_arg};

const HOSTILE: &str = "<script>alert(1)</script>";

struct Fixture {
    tmp: tempfile::TempDir,
    public: PathBuf,
}

fn docs_tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, *data)
            .expect("append");
    }
    support::bytes::gzip(&builder.into_inner().expect("tar"))
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let public = tmp.path().join("public");
        let packages = [
            Package::new("acme_json", "1.0.0")
                .metadata_term("description", "<<\"Fast JSON parser\">>")
                .metadata_term("licenses", "[<<\"Apache-2.0\">>]")
                .metadata_term(
                    "links",
                    "[{<<\"GitHub\">>, <<\"https://example.invalid/acme_json\">>}, {<<\"Bad\">>, <<\"javascript:alert(1)\">>}]",
                )
                .file("lib/acme_json.ex", b"defmodule AcmeJson do end\n"),
            Package::new("acme_json", "1.1.0")
                .metadata_term("description", "<<\"Fast JSON parser\">>")
                .dep("acme_util", "~> 0.1")
                .file("lib/acme_json.ex", b"defmodule AcmeJson do end\n"),
            Package::new("acme_util", "0.1.0")
                .metadata_term("description", &format!("<<\"{HOSTILE} utilities\">>"))
                .file(&format!("lib/{HOSTILE}.ex"), b"x\n"),
            Package::new("acme_xml", "0.2.0")
                .metadata_term("description", "<<\"XML reader\">>"),
        ];
        for package in &packages {
            package.publish(&public);
        }
        build_with(tmp.path(), &["--published-at"]);
        let key = private_key_arg();
        ok(
            tmp.path(),
            &[
                "retire",
                "public",
                "acme_json",
                "1.1.0",
                "--reason=security",
                &format!("--message=broken {HOSTILE}"),
                "--name=acme",
                &key,
            ],
        );
        ok(
            tmp.path(),
            &[
                "advisory",
                "add",
                "public",
                "acme_json",
                "--id=GHSA-test-0001",
                &format!("--summary=Overflow {HOSTILE}"),
                "--url=https://example.invalid/GHSA-test-0001",
                "--severity=high",
                "--affects=< 1.1.0",
                "--name=acme",
                &key,
            ],
        );
        std::fs::create_dir_all(public.join("docs")).expect("mkdir docs");
        std::fs::write(
            public.join("docs/acme_json-1.0.0.tar.gz"),
            docs_tar_gz(&[
                (
                    "index.html",
                    b"<!DOCTYPE html><html><head><title>AcmeJson docs</title></head><body><h1 id=\"docs-title\">AcmeJson 1.0.0 documentation</h1><a href=\"guides/\">Guides</a></body></html>",
                ),
                ("guides/index.html", b"<h1>Guides</h1>"),
                ("dist/app.css", b"body{color:#333}"),
            ]),
        )
        .expect("write docs");
        Fixture { tmp, public }
    }

    fn serve(&self, args: &[&str]) -> Server {
        Server::start(&self.public, args, &[])
    }
}

fn html(response: &HttpResponse) -> String {
    String::from_utf8(response.body.clone()).expect("UTF-8 page")
}

/// A page answered 200 as HTML with the pages' headers.
fn page(server: &Server, path: &str) -> String {
    let response = server.get(path);
    assert_eq!(response.status, 200, "{path}: {}", html(&response));
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{path}"
    );
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    let csp = response.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    html(&response)
}

/// No raw hostile markup anywhere; its escaped form is there when `expected`.
fn assert_escaped(page: &str, expected: bool) {
    assert!(!page.contains(HOSTILE), "raw hostile text in:\n{page}");
    assert!(
        !page.contains("href=\"javascript:"),
        "script link in:\n{page}"
    );
    if expected {
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "escaped text missing in:\n{page}"
        );
    }
}

#[test]
fn package_list_and_search() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let index = page(&server, "/");
    for name in ["acme_json", "acme_util", "acme_xml"] {
        assert!(
            index.contains(&format!("href=\"/-/packages/{name}\"")),
            "{name} missing"
        );
    }
    // The list reads no tarball: no descriptions there (the package page has them).
    assert!(!index.contains("Fast JSON parser"));
    assert!(index.contains("3 packages"));
    assert!(index.contains("<meta name=\"viewport\""));
    assert!(index.contains("href=\"#main\""));
    assert!(index.contains("<label for=\"q\""));
    assert_escaped(&index, false);
    // acme_json's latest is 1.0.0: 1.1.0 is retired.
    assert!(index.contains("acme_json</a> <span class=\"muted\">1.0.0</span>"));

    // By name, by several words of the name, not by description, nothing.
    let by_name = page(&server, "/?q=XML");
    assert!(by_name.contains("/-/packages/acme_xml"));
    assert!(!by_name.contains("/-/packages/acme_json"));
    let by_description = page(&server, "/?q=PARSER");
    assert!(by_description.contains("No packages."));
    let words = page(&server, "/?q=json+acme");
    assert!(words.contains("/-/packages/acme_json"));
    assert!(!words.contains("/-/packages/acme_xml"));
    let none = page(&server, "/?q=%3Cscript%3Enothing");
    assert!(none.contains("No packages."));
    assert!(none.contains("&lt;script&gt;nothing"));
    assert!(!none.contains("<script>nothing"));
}

#[test]
fn package_page_shows_versions_retirements_advisories_and_dependencies() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let html = page(&server, "/-/packages/acme_json");
    // Newest first.
    let newer = html.find(">1.1.0</a></td>").expect("1.1.0 row");
    let older = html.find(">1.0.0</a></td>").expect("1.0.0 row");
    assert!(newer < older, "versions not newest first");
    assert!(html.contains("retired: security"));
    assert!(html.contains("broken &lt;script&gt;"));
    assert!(html.contains("GHSA-test-0001"));
    assert!(html.contains("href=\"https://example.invalid/GHSA-test-0001\""));
    assert!(html.contains(">high<"));
    // Release dates from --published-at.
    assert!(html.contains(" UTC</td>"), "no release date");
    // The latest (1.0.0): its checksum, download, docs, links; the bad link is not a link.
    let tarball = std::fs::read(fx.public.join("tarballs/acme_json-1.0.0.tar")).expect("tarball");
    let checksum: String = Sha256::digest(&tarball)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(html.contains(&checksum), "checksum missing");
    assert!(html.contains("href=\"/tarballs/acme_json-1.0.0.tar\""));
    assert!(html.contains("href=\"/-/docs/acme_json/1.0.0/\""));
    assert!(!html.contains("href=\"/-/docs/acme_json/1.1.0/\""));
    assert!(html.contains("href=\"https://example.invalid/acme_json\""));
    assert!(html.contains("Apache-2.0"));
    assert_escaped(&html, true);
    // The download link works.
    let download = server.get("/tarballs/acme_json-1.0.0.tar");
    assert_eq!(download.status, 200);
    assert_eq!(download.body, tarball);

    // Dependencies link to their package (on the version page of 1.1.0).
    let version = page(&server, "/-/packages/acme_json/1.1.0");
    assert!(version.contains("href=\"/-/packages/acme_util\""));
    assert!(version.contains("~&gt; 0.1"));
    assert!(version.contains("retired: security"));
}

#[test]
fn version_page_lists_files_and_metadata_escaped() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let html = page(&server, "/-/packages/acme_util/0.1.0");
    assert!(html.contains("lib/&lt;script&gt;alert(1)&lt;/script&gt;.ex"));
    assert!(html.contains("<dt>description</dt>"));
    assert!(html.contains("<dt>app</dt>"));
    assert!(html.contains("No dependencies."));
    assert_escaped(&html, true);
    let package = page(&server, "/-/packages/acme_util");
    assert_escaped(&package, true);
}

#[test]
fn hosted_docs() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for path in [
        "/-/docs/acme_json/1.0.0/",
        "/-/docs/acme_json/1.0.0/index.html",
    ] {
        let response = server.get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(html(&response).contains("AcmeJson 1.0.0 documentation"));
        let csp = response.header("content-security-policy").expect("CSP");
        assert!(csp.contains("sandbox"), "{csp}");
        assert!(csp.contains("object-src 'none'"), "{csp}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
    // latest: the newest version not retired, 1.0.0 (1.1.0 is retired).
    let latest = server.get("/-/docs/acme_json/latest/");
    assert_eq!(latest.status, 200);
    assert!(html(&latest).contains("AcmeJson 1.0.0 documentation"));
    let css = server.get("/-/docs/acme_json/latest/dist/app.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.body, b"body{color:#333}");
    // Docs files have validators: 304 for the copy a browser holds.
    let etag = css.header("etag").expect("an ETag").to_string();
    assert_ne!(latest.header("etag"), Some(etag.as_str()));
    let again = server.request(
        "GET",
        "/-/docs/acme_json/1.0.0/dist/app.css",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // Directories redirect to their slash form.
    let bare = server.get("/-/docs/acme_json/1.0.0");
    assert_eq!(bare.status, 301);
    assert_eq!(bare.header("location"), Some("/-/docs/acme_json/1.0.0/"));
    let guides = server.get("/-/docs/acme_json/1.0.0/guides");
    assert_eq!(guides.status, 301);
    assert_eq!(
        guides.header("location"),
        Some("/-/docs/acme_json/1.0.0/guides/")
    );
    assert_eq!(server.get("/-/docs/acme_json/1.0.0/guides/").status, 200);
    // Confined: nothing outside the archive, no traversal, no version without docs.
    for path in [
        "/-/docs/acme_json/1.0.0/missing.html",
        "/-/docs/acme_json/1.0.0/../../../names",
        "/-/docs/acme_json/1.0.0/%2e%2e/%2e%2e/names",
        "/-/docs/acme_json/1.0.0/guides%2f..%2findex.html",
        "/-/docs/acme_json/1.0.0/.hidden",
        "/-/docs/acme_json/1.1.0/",
        "/-/docs/acme_json/9.9.9/",
        "/-/docs/acme_util/latest/",
        "/-/docs/nope/latest/",
        "/-/docs/..%2f..%2fetc/latest/",
    ] {
        let response = server.get(path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
    }
}

#[test]
fn errors_head_and_repository_files() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for path in [
        "/-/packages/nope",
        "/-/packages/Bad-Name",
        "/-/packages/acme_json/9.9.9",
        "/-/packages/%3Cscript%3E",
        "/-/nothing",
        "/-/",
    ] {
        let response = server.get(path);
        assert_eq!(response.status, 404, "{path}");
        assert!(html(&response).contains("<h1>Not found</h1>"), "{path}");
        assert_escaped(&html(&response), false);
    }
    let head = server.request("HEAD", "/-/packages/acme_json", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let len: usize = head
        .header("content-length")
        .expect("length")
        .parse()
        .expect("number");
    assert_eq!(len, server.get("/-/packages/acme_json").body.len());
    assert_eq!(server.request("POST", "/", &[]).status, 405);
    // The repository's own files are untouched by the pages.
    for file in ["names", "versions", "public_key", "packages/acme_json"] {
        let response = server.get(&format!("/{file}"));
        assert_eq!(response.status, 200, "{file}");
        assert_eq!(
            response.body,
            std::fs::read(fx.public.join(file)).expect("file")
        );
    }
    assert_eq!(server.get("/docs/acme_json-1.0.0.tar.gz").status, 200);
}

#[test]
fn a_changed_tarball_is_read_again_and_flagged() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert!(page(&server, "/-/packages/acme_xml").contains("XML reader"));
    assert!(!page(&server, "/-/packages/acme_xml/0.2.0").contains("does not match"));
    // Another tarball under the same name (not what the registry signed): the cached details
    // are dropped (its version token changed), and the version page says it does not match.
    let changed = Package::new("acme_xml", "0.2.0")
        .metadata_term("description", "<<\"XML reader, swapped\">>")
        .tarball();
    let path = fx.public.join("tarballs/acme_xml-0.2.0.tar");
    std::fs::write(path.with_extension("new"), &changed).expect("write");
    std::fs::rename(path.with_extension("new"), &path).expect("rename");
    assert!(page(&server, "/-/packages/acme_xml").contains("XML reader, swapped"));
    let version = page(&server, "/-/packages/acme_xml/0.2.0");
    assert!(
        version.contains("the tarball served does not match the registry's checksum"),
        "{version}"
    );
}

#[test]
fn pages_need_the_same_credentials() {
    let fx = Fixture::new();
    let server = fx.serve(&["--auth", "ci:s3cret"]);
    for path in ["/", "/-/packages/acme_json", "/-/docs/acme_json/latest/"] {
        let refused = server.get(path);
        assert_eq!(refused.status, 401, "{path}");
        assert!(refused.header("www-authenticate").is_some());
        let allowed = server.request("GET", path, &[("Authorization", "Basic Y2k6czNjcmV0")]);
        assert_eq!(allowed.status, 200, "{path}");
    }
}

#[test]
fn an_empty_directory_says_there_is_no_registry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(tmp.path(), &[], &[]);
    let html = page(&server, "/");
    assert!(html.contains("No registry yet"));
    assert_eq!(server.get("/-/packages/acme_json").status, 404);
}

#[test]
fn a_tampered_index_is_not_shown() {
    let fx = Fixture::new();
    let versions = fx.public.join("versions");
    let mut bytes = support::bytes::gunzip(&std::fs::read(&versions).expect("versions"));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&versions, support::bytes::gzip(&bytes)).expect("write");
    let server = fx.serve(&[]);
    let response = server.get("/");
    assert_eq!(response.status, 500);
    assert!(html(&response).contains("cannot be read"));
}

// ---------------------------------------------------------------------------------------------
// In a real browser

/// Headless Chromium, or `None` (with a loud message) when it is absent outside CI; in CI
/// (`CI=true`) its absence fails the test.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        });
        if found.is_some() {
            return found;
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "chromium is not installed, and CI=true: install it (`apt-get install -y chromium`; .ci/run does)"
        );
    }
    eprintln!(
        "\n\n*** SKIPPING the browser tests: chromium is not installed (apt-get install -y chromium) ***\n\n"
    );
    None
}

/// Runs headless Chromium with a fresh profile, only ever on loopback, and returns stdout.
fn run_chromium(chromium: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-proxy-server",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where screenshots go: `HEXREG_SCREENSHOTS` (e.g. docs/screenshots, to refresh the
/// README's), else a folder under cargo's target directory.
fn screenshot_dir() -> PathBuf {
    let dir = match std::env::var_os("HEXREG_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    };
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

#[test]
fn in_a_browser() {
    let Some(chromium) = chromium() else { return };
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let profile = fx.tmp.path().join("chromium-profile");
    let dom = |path: &str| {
        run_chromium(
            &chromium,
            &profile,
            &["--dump-dom"],
            &format!("{}{path}", server.url()),
        )
    };

    // The package list, as rendered: every package.
    let index = dom("/");
    assert!(index.contains("acme_json"), "{index}");
    assert!(index.contains("id=\"count\""));
    // Keyboard users meet the skip link first, then the labelled search box.
    let skip = index.find("href=\"#main\"").expect("skip link");
    assert!(skip < index.find("<header").expect("header"));
    assert!(index.contains("<label for=\"q\""));
    assert!(index.contains("<main id=\"main\""));

    // Search through the form's GET.
    let search = dom("/?q=json");
    assert!(search.contains("/-/packages/acme_json"));
    assert!(!search.contains("/-/packages/acme_xml"));
    assert!(search.contains("value=\"json\""));

    // A package page; the hostile description as text only.
    let util = dom("/-/packages/acme_util");
    assert!(!util.contains(HOSTILE));
    assert!(util.contains("&lt;script&gt;alert(1)&lt;/script&gt; utilities"));
    let package = dom("/-/packages/acme_json");
    assert!(package.contains("<h1>acme_json</h1>"));
    assert!(package.contains("GHSA-test-0001"));
    assert!(package.contains("retired: security"));

    // A docs page.
    let docs = dom("/-/docs/acme_json/latest/");
    assert!(docs.contains("AcmeJson 1.0.0 documentation"), "{docs}");

    // Screenshots: the package list and a package page, desktop and phone.
    let dir = screenshot_dir();
    for (file, path, size) in [
        ("package-list.png", "/", "1000,640"),
        ("package-page.png", "/-/packages/acme_json", "1000,900"),
        ("package-page-phone.png", "/-/packages/acme_json", "390,844"),
        (
            "version-page.png",
            "/-/packages/acme_util/0.1.0",
            "1000,900",
        ),
        ("docs-page.png", "/-/docs/acme_json/latest/", "800,300"),
    ] {
        let shot = dir.join(file);
        let _ = std::fs::remove_file(&shot);
        run_chromium(
            &chromium,
            &profile,
            &[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={size}"),
            ],
            &format!("{}{path}", server.url()),
        );
        let bytes = std::fs::read(&shot).expect("screenshot written");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{file} is not a PNG"
        );
        assert!(bytes.len() > 1000, "{file} is suspiciously small");
    }
}
