//! `hexreg serve` end to end: the binary is started on 127.0.0.1 with a free port (`--bind
//! 127.0.0.1:0`, port read from its first stderr line) and spoken to with a tiny raw HTTP/1.1
//! client, so that request lines such as `GET /%2e%2e/secret` go out exactly as written (both
//! in `support::hexreg_serve`). A guard kills the server when a test ends, however it ends.
//! Signals are sent with kill(2).

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use base64::Engine;
use support::bytes::random_bytes;
use support::hexreg_serve::{HttpResponse, Server, connect};

// ---------------------------------------------------------------------------------------------
// Fixture

/// A temporary directory holding `public/` (the registry) and things outside it that must
/// never be served.
struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    public: PathBuf,
}

const NAMES: &[u8] = b"\x1f\x8b\x08\x00names-registry-bytes\x00\x01\x02";
const SECRET: &[u8] = b"outside PUBLIC_DIR: never served\n";

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().to_path_buf();
        let public = base.join("public");
        for dir in ["packages", "tarballs", ".hidden"] {
            std::fs::create_dir_all(public.join(dir)).expect("mkdir");
        }
        std::fs::create_dir_all(base.join("outside")).expect("mkdir outside");
        let fx = Fixture {
            _tmp: tmp,
            base,
            public,
        };
        fx.write("names", NAMES);
        fx.write("versions", b"\x1f\x8b\x08\x00versions");
        fx.write(
            "public_key",
            b"-----BEGIN RSA PUBLIC KEY-----\nMIIB\n-----END RSA PUBLIC KEY-----\n",
        );
        fx.write("packages/acme_a", b"\x1f\x8b\x08\x00package acme_a");
        fx.write("tarballs/acme_a-1.0.0.tar", &random_bytes(5120, 1));
        // Larger than what the server reads whole: exercises chunked streaming.
        fx.write("tarballs/big-2.0.0.tar", &random_bytes(700 * 1024 + 13, 7));
        fx.write(".hexreg.lock", b"lock");
        fx.write("tarballs/.hexreg-tmp-1234", b"half-written");
        fx.write(".hidden/file", b"hidden");
        std::fs::write(fx.base.join("secret"), SECRET).expect("write secret");
        std::fs::write(fx.base.join("outside/file"), SECRET).expect("write outside/file");
        let link = |target: &str, name: &str| {
            symlink(target, fx.public.join(name)).expect("symlink");
        };
        link("../secret", "escape");
        link("../outside", "escape_dir");
        link(
            fx.base.join("secret").to_str().expect("utf-8 path"),
            "escape_abs",
        );
        link("acme_a-1.0.0.tar", "tarballs/alias-1.0.0.tar");
        link(".hexreg.lock", "dotlink");
        link("packages", "pkgs");
        link(".hidden", "hidden_dir");
        link("missing", "dangling");
        let fifo = fx.public.join("fifo");
        let status = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed");
        fx
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        std::fs::write(self.public.join(rel), bytes).expect("write fixture file");
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.public.join(rel)).expect("read fixture file")
    }

    fn serve(&self, args: &[&str]) -> Server {
        Server::start(&self.public, args, &[])
    }
}

// ---------------------------------------------------------------------------------------------
// Server process (`support::hexreg_serve`)

/// Runs `hexreg serve` expecting it to refuse to start (exit 1); returns its stderr.
fn serve_fails(public: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    serve_exits(public, args, env, 1)
}

/// Runs `hexreg serve` expecting it to refuse to start with exit status `code`; returns its
/// stderr.
fn serve_exits(public: &Path, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hexreg"));
    cmd.arg("serve").arg(public);
    if !args.contains(&"--bind") {
        cmd.args(["--bind", "127.0.0.1:0"]);
    }
    cmd.args(args)
        .env_remove("HEXREG_AUTH")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hexreg serve");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    stderr
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

fn http_date_of(path: &Path) -> String {
    let modified: SystemTime = std::fs::metadata(path)
        .expect("metadata")
        .modified()
        .expect("mtime");
    httpdate::fmt_http_date(modified)
}

// ---------------------------------------------------------------------------------------------
// Files and headers

#[test]
fn serves_registry_files_with_headers() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for rel in [
        "names",
        "versions",
        "public_key",
        "packages/acme_a",
        "tarballs/acme_a-1.0.0.tar",
        "tarballs/big-2.0.0.tar",
    ] {
        let r = server.get(&format!("/{rel}"));
        let expected = fx.read(rel);
        assert_eq!(r.status, 200, "{rel}");
        assert!(r.body == expected, "{rel}: body differs from the file");
        assert_eq!(
            r.header("content-length"),
            Some(expected.len().to_string().as_str()),
            "{rel}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/octet-stream"),
            "{rel}"
        );
        assert_eq!(r.header("content-encoding"), None, "{rel}");
        let etag = r.header("etag").expect("etag");
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
            "strong quoted etag: {etag}"
        );
        assert_eq!(
            r.header("last-modified"),
            Some(http_date_of(&fx.public.join(rel)).as_str()),
            "{rel}"
        );
    }
}

#[test]
fn gzip_registry_files_are_not_content_encoded_even_when_asked() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let r = server.request("GET", "/names", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, NAMES);
}

#[test]
fn percent_encoded_names_are_decoded() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let r = server.get("/n%61mes");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, NAMES);
    let r = server.get("/names?etag=ignored");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, NAMES);
}

#[test]
fn head_has_content_length_and_no_body() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for rel in ["names", "tarballs/big-2.0.0.tar"] {
        let r = server.request("HEAD", &format!("/{rel}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some(fx.read(rel).len().to_string().as_str())
        );
        assert!(r.header("etag").is_some());
        assert!(r.header("last-modified").is_some());
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.body.is_empty(), "HEAD response has a body");
    }
}

#[test]
fn if_none_match_gives_304() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let first = server.get("/names");
    let etag = first.header("etag").expect("etag").to_string();
    let last_modified = first.header("last-modified").expect("last-modified");

    for condition in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".to_string(),
    ] {
        let r = server.request("GET", "/names", &[("If-None-Match", &condition)]);
        assert_eq!(r.status, 304, "If-None-Match: {condition}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("last-modified"), Some(last_modified));
    }
    let r = server.request("HEAD", "/names", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);

    let r = server.request("GET", "/names", &[("If-None-Match", "\"other\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, NAMES);
}

#[test]
fn etag_changes_when_the_file_is_replaced() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let old = server.get("/names");
    let old_etag = old.header("etag").expect("etag").to_string();
    // As `hexreg build` does: a temporary file renamed over the old one.
    let tmp = fx.public.join(".hexreg-tmp-names");
    std::fs::write(&tmp, b"\x1f\x8b new names").expect("write");
    std::fs::rename(&tmp, fx.public.join("names")).expect("rename");
    let r = server.request("GET", "/names", &[("If-None-Match", &old_etag)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"\x1f\x8b new names");
    assert_ne!(r.header("etag"), Some(old_etag.as_str()));
}

#[test]
fn if_modified_since_gives_304() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let last_modified = server
        .get("/names")
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let r = server.request("GET", "/names", &[("If-Modified-Since", &last_modified)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = server.request(
        "GET",
        "/names",
        &[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")],
    );
    assert_eq!(r.status, 200);
    // If-None-Match decides when both are present.
    let r = server.request(
        "GET",
        "/names",
        &[
            ("If-None-Match", "\"other\""),
            ("If-Modified-Since", &last_modified),
        ],
    );
    assert_eq!(r.status, 200);
    let r = server.request("GET", "/names", &[("If-Modified-Since", "garbage")]);
    assert_eq!(r.status, 200);
}

#[test]
fn missing_files_are_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for path in [
        "/nothing",
        "/packages/nope",
        "/tarballs/nope-1.0.0.tar",
        "/names/extra",
        "/dangling",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("etag"), None, "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Confinement

fn assert_all_404(server: &Server, paths: &[&str]) {
    for path in paths {
        let r = server.get(path);
        assert_eq!(r.status, 404, "GET {path}");
        assert!(
            !r.body.windows(SECRET.len()).any(|w| w == SECRET),
            "{path} leaked the secret"
        );
        let r = server.request("HEAD", path, &[]);
        assert_eq!(r.status, 404, "HEAD {path}");
    }
}

#[test]
fn dot_dot_traversal_is_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(
        &server,
        &[
            "/../secret",
            "/tarballs/../../secret",
            "/packages/../../outside/file",
            "/packages/../names",
            "/..",
            "/./names",
        ],
    );
}

#[test]
fn percent_encoded_traversal_is_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(
        &server,
        &[
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/.%2e/secret",
            "/%2e%2e%2fsecret",
            "/..%2fsecret",
            "/..%2Fsecret",
            "/tarballs/..%2f..%2fsecret",
            "/tarballs/%2e%2e%2f%2e%2e%2fsecret",
            "/%2e%2e%5csecret",
            "/names%00",
            "/names%zz",
        ],
    );
}

#[test]
fn encoded_slash_is_404_even_inside() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(&server, &["/packages%2facme_a", "/packages%2Facme_a"]);
    assert_eq!(server.get("/packages/acme_a").status, 200);
}

#[test]
fn symlinks_pointing_outside_are_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(
        &server,
        &["/escape", "/escape_dir/file", "/escape_abs", "/escape_dir"],
    );
}

#[test]
fn symlinks_inside_are_served() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let r = server.get("/tarballs/alias-1.0.0.tar");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fx.read("tarballs/acme_a-1.0.0.tar"));
    let r = server.get("/pkgs/acme_a");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fx.read("packages/acme_a"));
}

#[test]
fn public_dir_given_through_a_symlink() {
    let fx = Fixture::new();
    let link = fx.base.join("current");
    symlink(&fx.public, &link).expect("symlink");
    let server = Server::start(&link, &[], &[]);
    assert_eq!(server.get("/names").body, NAMES);
    assert_all_404(&server, &["/escape", "/../secret", "/.hexreg.lock"]);
}

#[test]
fn dotfiles_are_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(
        &server,
        &[
            "/.hexreg.lock",
            "/.hidden/file",
            "/%2ehexreg.lock",
            "/dotlink",
            "/hidden_dir/file",
        ],
    );
}

#[test]
fn hexreg_temporary_files_are_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(
        &server,
        &["/tarballs/.hexreg-tmp-1234", "/tarballs/%2Ehexreg-tmp-1234"],
    );
}

#[test]
fn directories_are_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(
        &server,
        &[
            // `/` is the package list (tests/pages.rs).
            "/packages",
            "/packages/",
            "/tarballs",
            "/tarballs/",
            "//",
        ],
    );
}

#[test]
fn fifo_is_404_without_blocking() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_all_404(&server, &["/fifo"]);
    // The server still answers afterwards.
    assert_eq!(server.get("/names").status, 200);
}

#[test]
fn other_methods_are_405() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = server.request(method, "/names", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    assert_eq!(fx.read("names"), NAMES);
}

// ---------------------------------------------------------------------------------------------
// Credentials

fn assert_auth_required(server: &Server, good: &str, wrong: &[&str]) {
    let challenge = |r: &HttpResponse| {
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"hexreg\""));
    };
    challenge(&server.get("/names"));
    challenge(&server.request("HEAD", "/names", &[]));
    // Nothing is revealed without credentials, not even whether a file exists.
    challenge(&server.get("/nothing"));
    for bad in wrong {
        challenge(&server.request("GET", "/names", &[("Authorization", &basic(bad))]));
    }
    challenge(&server.request("GET", "/names", &[("Authorization", "Basic !!!")]));
    challenge(&server.request("GET", "/names", &[("Authorization", "Bearer token")]));
    let auth = basic(good);
    let r = server.request("GET", "/names", &[("Authorization", &auth)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, NAMES);
    let r = server.request("GET", "/nothing", &[("Authorization", &auth)]);
    assert_eq!(r.status, 404);
    // Twice: the second may come from the cache of verified credentials.
    let r = server.request("GET", "/names", &[("Authorization", &auth)]);
    assert_eq!(r.status, 200);
}

fn assert_no_secret_in_log(lines: &[String], secrets: &[&str]) {
    for line in lines {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "log line reveals {secret:?}: {line}"
            );
        }
    }
}

#[test]
fn auth_flag() {
    let fx = Fixture::new();
    let server = fx.serve(&["--auth", "ci:s3cr3t:with:colons"]);
    assert_auth_required(
        &server,
        "ci:s3cr3t:with:colons",
        &["ci:wrong", "other:s3cr3t:with:colons", "ci:", "ci:s3cr3t"],
    );
    let (status, lines) = server.stop("TERM");
    assert!(status.success());
    assert_no_secret_in_log(
        &lines,
        &["s3cr3t", &basic("ci:s3cr3t:with:colons")["Basic ".len()..]],
    );
    assert!(lines.iter().any(|l| l.starts_with("GET /names 401 ")));
    assert!(lines.iter().any(|l| l.starts_with("GET /names 200 ")));
}

#[test]
fn auth_from_environment() {
    let fx = Fixture::new();
    let server = Server::start(&fx.public, &[], &[("HEXREG_AUTH", "deploy:env-pass")]);
    assert_auth_required(&server, "deploy:env-pass", &["deploy:nope"]);
    let (status, lines) = server.stop("TERM");
    assert!(status.success());
    assert_no_secret_in_log(&lines, &["env-pass"]);
}

#[test]
fn auth_flag_wins_over_environment() {
    let fx = Fixture::new();
    let server = Server::start(
        &fx.public,
        &["--auth", "flag:pass1"],
        &[("HEXREG_AUTH", "env:pass2")],
    );
    assert_auth_required(&server, "flag:pass1", &["env:pass2"]);
}

fn write_htpasswd(fx: &Fixture, users: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from("# users of the acme registry\n\n");
    for (user, pass) in users {
        let hash = bcrypt::hash_with_result(pass, 4)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoY);
        assert!(hash.starts_with("$2y$04$"));
        text.push_str(&format!("{user}:{hash}\r\n"));
    }
    let path = fx.base.join("users.htpasswd");
    std::fs::write(&path, text).expect("write htpasswd");
    path
}

#[test]
fn auth_file_with_bcrypt_hashes() {
    let fx = Fixture::new();
    let file = write_htpasswd(&fx, &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let server = fx.serve(&["--auth-file", file.to_str().expect("utf-8")]);
    assert_auth_required(
        &server,
        "alice:alice-pw",
        &["alice:bob-pw", "carol:alice-pw", "bob:alice-pw"],
    );
    let r = server.request("GET", "/names", &[("Authorization", &basic("bob:bob-pw"))]);
    assert_eq!(r.status, 200);
    let (status, lines) = server.stop("TERM");
    assert!(status.success());
    assert_no_secret_in_log(&lines, &["alice-pw", "bob-pw"]);
}

#[test]
fn auth_file_combines_with_auth_flag() {
    let fx = Fixture::new();
    let file = write_htpasswd(&fx, &[("alice", "alice-pw")]);
    let server = Server::start(
        &fx.public,
        &["--auth-file", file.to_str().expect("utf-8")],
        &[("HEXREG_AUTH", "ci:ci-pw")],
    );
    for good in ["alice:alice-pw", "ci:ci-pw"] {
        let r = server.request("GET", "/names", &[("Authorization", &basic(good))]);
        assert_eq!(r.status, 200, "{good}");
    }
    let r = server.request("GET", "/names", &[("Authorization", &basic("ci:alice-pw"))]);
    assert_eq!(r.status, 401);
}

// ---------------------------------------------------------------------------------------------
// Startup errors

#[test]
fn malformed_credentials_are_refused_naming_their_source() {
    let fx = Fixture::new();
    let e = serve_fails(&fx.public, &["--auth", "no-colon-secret"], &[]);
    assert!(e.contains("--auth must be USER:PASS"), "{e}");
    assert!(
        !e.contains("no-colon-secret"),
        "error repeats the secret: {e}"
    );
    let e = serve_fails(&fx.public, &["--auth", "user:"], &[]);
    assert!(e.contains("--auth has an empty password"), "{e}");
    let e = serve_fails(&fx.public, &[], &[("HEXREG_AUTH", "no-colon-secret")]);
    assert!(e.contains("HEXREG_AUTH must be USER:PASS"), "{e}");
    assert!(!e.contains("no-colon-secret"), "{e}");
}

#[test]
fn non_bcrypt_htpasswd_is_refused_naming_file_and_line() {
    let fx = Fixture::new();
    let path = fx.base.join("md5.htpasswd");
    std::fs::write(
        &path,
        "# comment\n\nalice:$apr1$abcdefgh$0123456789abcdefghijkl\n",
    )
    .expect("write");
    let e = serve_fails(
        &fx.public,
        &["--auth-file", path.to_str().expect("utf-8")],
        &[],
    );
    assert!(e.contains(&format!("{} line 3", path.display())), "{e}");
    assert!(e.contains("alice") && e.contains("bcrypt"), "{e}");
    assert!(e.contains("htpasswd -B"), "{e}");

    std::fs::write(&path, "alice:plaintext\n").expect("write");
    let e = serve_fails(
        &fx.public,
        &["--auth-file", path.to_str().expect("utf-8")],
        &[],
    );
    assert!(e.contains("line 1"), "{e}");

    std::fs::write(&path, "just-a-name\n").expect("write");
    let e = serve_fails(
        &fx.public,
        &["--auth-file", path.to_str().expect("utf-8")],
        &[],
    );
    assert!(e.contains("line 1") && e.contains("USER:HASH"), "{e}");

    std::fs::write(&path, "# nobody\n").expect("write");
    let e = serve_fails(
        &fx.public,
        &["--auth-file", path.to_str().expect("utf-8")],
        &[],
    );
    assert!(e.contains("has no users"), "{e}");

    let missing = fx.base.join("missing.htpasswd");
    let e = serve_fails(
        &fx.public,
        &["--auth-file", missing.to_str().expect("utf-8")],
        &[],
    );
    assert!(e.contains(&missing.display().to_string()), "{e}");
}

/// Options that cannot go together are usage errors (exit 2, as clap's own), named.
#[test]
fn contradicting_options_are_usage_errors() {
    let fx = Fixture::new();
    let keys = fx.base.join("keys");
    std::fs::write(&keys, "").expect("write");
    let keys = format!("--keys={}", keys.display());
    let e = serve_exits(
        &fx.public,
        &["--auth", "u:p", "--public-reads", &keys, "--name=acme"],
        &[],
        2,
    );
    assert!(e.contains("--public-reads") && e.contains("--auth"), "{e}");
    let e = serve_exits(
        &fx.public,
        &["--public-reads", &keys, "--name=acme"],
        &[("HEXREG_AUTH", "u:p")],
        2,
    );
    assert!(e.contains("HEXREG_AUTH"), "{e}");
    let e = serve_exits(&fx.public, &["--public-reads"], &[], 2);
    assert!(e.contains("--public-reads is for the Hex API"), "{e}");
    let e = serve_exits(&fx.public, &[&keys], &[], 2);
    assert!(e.contains("--keys needs --name NAME"), "{e}");
    let e = serve_exits(&fx.public, &["--upstream-key=k.pem"], &[], 2);
    assert!(e.contains("give --upstream URL too"), "{e}");
}

#[test]
fn missing_public_dir_is_refused() {
    let fx = Fixture::new();
    let missing = fx.base.join("nope");
    let e = serve_fails(&missing, &[], &[]);
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("does not exist"), "{e}");
    let e = serve_fails(&fx.public.join("names"), &[], &[]);
    assert!(e.contains("is not a directory"), "{e}");
}

#[test]
fn bad_bind_is_refused() {
    let fx = Fixture::new();
    for bind in ["8000", "127.0.0.1:notaport", "127.0.0.1:99999"] {
        let e = serve_fails(&fx.public, &["--bind", bind], &[]);
        assert!(e.contains("--bind"), "{bind}: {e}");
    }
    // A port already taken by another server.
    let server = fx.serve(&[]);
    let taken = format!("127.0.0.1:{}", server.port);
    let e = serve_fails(&fx.public, &["--bind", &taken], &[]);
    assert!(e.contains("--bind") && e.contains("another program"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Log and shutdown

#[test]
fn one_log_line_per_request() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    server.get("/names?x=1");
    server.get("/nothing");
    server.request("HEAD", "/versions", &[]);
    server.request("DELETE", "/names", &[]);
    let (status, lines) = server.stop("TERM");
    assert!(status.success());
    let requests: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("GET ") || l.starts_with("HEAD ") || l.starts_with("DELETE "))
        .collect();
    assert_eq!(requests.len(), 4, "{lines:#?}");
    let expect = |prefix: &str| {
        let line = requests
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no log line starting with {prefix:?}: {lines:#?}"));
        let ms = line.rsplit(' ').next().expect("last field");
        let number = ms.strip_suffix("ms").expect("ends in ms");
        assert!(number.parse::<f64>().is_ok(), "{line}");
        assert_eq!(line.split(' ').count(), 5, "{line}");
    };
    expect(&format!("GET /names 200 {} ", NAMES.len()));
    expect("GET /nothing 404 ");
    expect("HEAD /versions 200 0 ");
    expect("DELETE /names 405 ");
}

#[test]
fn quiet_logs_no_requests() {
    let fx = Fixture::new();
    let server = fx.serve(&["--quiet"]);
    assert_eq!(server.get("/names").status, 200);
    let (status, lines) = server.stop("TERM");
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.starts_with("GET ")), "{lines:#?}");
}

#[test]
fn sigterm_exits_0() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(server.get("/names").status, 200);
    let port = server.port;
    let (status, lines) = server.stop("TERM");
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:#?}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn sigint_exits_0() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(server.get("/names").status, 200);
    let (status, _) = server.stop("INT");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_with_idle_keep_alive_connection_exits_0() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let stream = connect(server.port);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    writer
        .write_all(b"GET /names HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let r = HttpResponse::read_one(&mut reader, false);
    assert_eq!(r.status, 200);
    // The connection stays open and idle while the server stops.
    let (status, _) = server.stop("TERM");
    assert_eq!(status.code(), Some(0));
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn sigterm_lets_a_download_in_flight_finish() {
    let fx = Fixture::new();
    let big = random_bytes(16 * 1024 * 1024, 3);
    fx.write("tarballs/huge-1.0.0.tar", &big);
    let server = fx.serve(&[]);
    let stream = connect(server.port);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    writer
        .write_all(b"GET /tarballs/huge-1.0.0.tar HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    // Wait for the status line: the request is being answered.
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    server.signal("TERM");
    // The rest of the head and the whole body still arrive.
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).expect("read head");
        if line == b"\r\n" || line.is_empty() {
            break;
        }
        head.extend_from_slice(&line);
    }
    let mut body = Vec::new();
    reader.read_to_end(&mut body).expect("read body");
    assert_eq!(body.len(), big.len());
    assert!(body == big, "body differs");
    let (status, lines) = server.wait();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("GET /tarballs/huge-1.0.0.tar 200 {} ", big.len()))),
        "{lines:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Load

#[test]
fn load_many_concurrent_clients() {
    const CLIENTS: usize = 40;
    const REQUESTS: usize = 100;
    let fx = Fixture::new();
    let server = fx.serve(&["--quiet"]);
    let files: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        [
            "names",
            "versions",
            "packages/acme_a",
            "tarballs/acme_a-1.0.0.tar",
            "tarballs/big-2.0.0.tar",
        ]
        .iter()
        .map(|rel| (format!("/{rel}"), fx.read(rel)))
        .collect(),
    );
    let port = server.port;
    let clients: Vec<JoinHandle<usize>> = (0..CLIENTS)
        .map(|client| {
            let files = Arc::clone(&files);
            std::thread::spawn(move || {
                let keep_alive = client % 2 == 0;
                let mut ok = 0;
                let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                for i in 0..REQUESTS {
                    let (path, expected) = &files[(client + i) % files.len()];
                    if keep_alive {
                        if conn.is_none() {
                            let stream = connect(port);
                            let reader = BufReader::new(stream.try_clone().expect("clone"));
                            conn = Some((stream, reader));
                        }
                        let Some((stream, reader)) = conn.as_mut() else {
                            unreachable!()
                        };
                        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                        stream.write_all(req.as_bytes()).expect("send");
                        let r = HttpResponse::read_one(reader, false);
                        assert_eq!(r.status, 200, "{path}");
                        assert!(r.body == *expected, "{path}: wrong bytes");
                    } else {
                        let mut stream = connect(port);
                        let req = format!(
                            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                        );
                        stream.write_all(req.as_bytes()).expect("send");
                        let mut bytes = Vec::new();
                        stream.read_to_end(&mut bytes).expect("read");
                        let r = HttpResponse::parse_whole(&bytes);
                        assert_eq!(r.status, 200, "{path}");
                        assert!(r.body == *expected, "{path}: wrong bytes");
                    }
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let total: usize = clients
        .into_iter()
        .map(|c| c.join().expect("client thread panicked"))
        .sum();
    assert_eq!(total, CLIENTS * REQUESTS);
    let (status, lines) = server.stop("TERM");
    assert!(status.success());
    assert!(!lines.iter().any(|l| l.starts_with("error")), "{lines:#?}");
}
