//! The Hex HTTP API of `hexreg serve`, end to end:
//!
//! - rebar3's bundled hex_core (`r3_hex_api_*`) publishes, retires, unretires and reverts
//!   against the server, then rebar3 resolves, fetches and compiles from it with a read key;
//! - every route and status with a raw HTTP/1.1 client, bodies decoded in both formats;
//! - 20 concurrent publishers all land;
//! - a server killed (SIGKILL) in the middle of publishes leaves a registry that clients accept
//!   and that the publishers' retries complete.
//!
//! Every registry starts empty (`hexreg build` on an empty tarballs/) and every server listens
//! on loopback only and is killed when dropped. Time limits are safety nets, never assertions.

use crate::support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hexreg::api::etf::{self, Term};
use hexreg::format::encoding::hex_upper;
use hexreg::format::registry;
use hexreg::format::tarball::outer_checksum;
use support::fixtures::{fixtures, private_key, public_key};
use support::hexreg_serve::{HttpResponse, Server};
use support::json;
use support::package::Package;
use support::rebar3::{isolated, rebar3_or_skip};
use support::registry_check::{check_after_kill, check_registry};
use support::run::{build, hexreg, ok, private_key_arg};

const REPO: &str = "acme";
const ERLANG: &str = "application/vnd.hex+erlang";
/// The message mix prints for a 422 on an existing release (hexpm's words).
const NEEDS_REPLACE: &str = "must include the --replace flag to update an existing release";
/// The API's body limit for tarballs and docs.
const LIMIT: u64 = 16 * 1024 * 1024;
/// Socket timeout: a safety net so a hung server fails a test instead of blocking it.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// A hung erl or rebar3 is killed after this long.
const TOOL_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// The registry, its keys and its server

/// An empty registry `public/` built by `hexreg build`, with a keys file holding a write key
/// (label `publisher`) and a read key (label `reader`).
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    public: PathBuf,
    keys: PathBuf,
    writer: String,
    reader: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let public = dir.join("public");
        fs::create_dir_all(public.join("tarballs")).unwrap();
        build(&dir, &private_key());
        let add = |label: &str, write: bool| {
            let mut args = vec!["key", "add", "--keys", "keys", label];
            if write {
                args.push("--write");
            }
            ok(&dir, &args).trim_end().to_string()
        };
        let writer = add("publisher", true);
        let reader = add("reader", false);
        Fixture {
            keys: dir.join("keys"),
            _tmp: tmp,
            dir,
            public,
            writer,
            reader,
        }
    }

    /// `hexreg serve public --name acme --keys keys --private-key KEY EXTRA...`.
    fn serve(&self, extra: &[&str]) -> Server {
        self.serve_signing(true, extra)
    }

    /// The server, with the signing key or (`signing` false) read-only.
    fn serve_signing(&self, signing: bool, extra: &[&str]) -> Server {
        let key = private_key().display().to_string();
        let keys = self.keys.display().to_string();
        let mut args = vec!["--name", REPO, "--keys", &keys];
        if signing {
            args.extend(["--private-key", &key]);
        }
        args.extend(extra);
        Server::start(&self.public, &args, &[])
    }

    /// `hexreg verify public --name acme`.
    fn verify(&self) -> Output {
        hexreg(&self.dir, &["verify", "public", "--name", REPO])
    }

    /// Asserts `hexreg verify` passes and counts `releases` releases.
    fn assert_sound(&self, releases: usize) {
        let out = self.verify();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "hexreg verify failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains("note: "), "leftovers remain: {stdout}");
        assert!(
            stdout.contains(&format!(" {releases} releases,")),
            "expected {releases} releases: {stdout}"
        );
    }

    /// Every file below `public/` (tarballs and docs included), path → bytes.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    let rel = path.strip_prefix(root).unwrap().display().to_string();
                    out.insert(rel, fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.public, &self.public, &mut out);
        out
    }

    /// The releases the registry's `versions` index lists, package → versions.
    fn indexed(&self) -> BTreeMap<String, Vec<String>> {
        let bytes = fs::read(self.public.join("versions")).unwrap();
        let opened = registry::open(&bytes).unwrap();
        opened.verify(&public_key()).unwrap();
        registry::decode_versions(&opened.payload, REPO)
            .unwrap()
            .packages
            .into_iter()
            .map(|p| (p.name, p.versions))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client with bodies

/// One request, sent on its own `Connection: close` connection.
#[derive(Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn req(method: &str, path: &str) -> Req {
    Req {
        method: method.to_string(),
        path: path.to_string(),
        headers: Vec::new(),
        body: None,
    }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The key, raw in `authorization`, as mix and hex_core send it.
    fn key(self, key: &str) -> Req {
        self.header("authorization", key)
    }

    /// `accept: application/vnd.hex+erlang`, as hex_core sends it.
    fn erlang(self) -> Req {
        self.header("accept", ERLANG)
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }

    /// A tarball body, as the clients send it.
    fn tarball(self, tarball: Vec<u8>) -> Req {
        self.header("content-type", "application/octet-stream")
            .body(tarball)
    }

    /// The request head; `content-length` for every body, and `0` for a bodiless POST or
    /// DELETE.
    fn head(&self) -> String {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let len = self.body.as_ref().map_or(0, Vec::len);
        if self.body.is_some() || matches!(self.method.as_str(), "POST" | "DELETE" | "PUT") {
            head.push_str(&format!("content-length: {len}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    /// Sends the request and reads the whole response; `Err` when the connection fails before
    /// a response head arrives. A server that answers without reading the body (401, 403) may
    /// reset the connection: the response read before that counts.
    fn try_send(&self, port: u16) -> io::Result<HttpResponse> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut out = self.head().into_bytes();
        out.extend_from_slice(self.body.as_deref().unwrap_or_default());
        let written = stream.write_all(&out);
        let mut bytes = Vec::new();
        let read = stream.read_to_end(&mut bytes);
        if !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
            written?;
            read?;
            return Err(io::Error::other(format!(
                "no response head in {:?}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        Ok(HttpResponse::parse_whole(&bytes))
    }

    fn send(&self, server: &Server) -> HttpResponse {
        self.try_send(server.port)
            .unwrap_or_else(|e| panic!("{} {}: {e}", self.method, self.path))
    }
}

/// The body decoded by its `content-type`: the Erlang term format or JSON.
fn term(r: &HttpResponse) -> Term {
    match r.header("content-type") {
        Some(ERLANG) => etf::decode(&r.body)
            .unwrap_or_else(|e| panic!("not the Erlang term format ({e}): {:?}", r.body)),
        Some("application/json") => {
            let text = std::str::from_utf8(&r.body).expect("UTF-8 JSON");
            json::parse(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        }
        other => panic!(
            "status {}: unexpected content-type {other:?}, body {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ),
    }
}

/// The text at `path` (map keys) in `term`.
fn text<'a>(term: &'a Term, path: &[&str]) -> Option<&'a str> {
    let mut at = term;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str()
}

/// Asserts an error answer: `status`, a body in the requested format with `status` and a
/// `message`; returns the body.
fn assert_error(r: &HttpResponse, status: u16, what: &str) -> Term {
    assert_eq!(
        r.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let body = term(r);
    assert_eq!(
        body.get("status").and_then(Term::as_int),
        Some(i64::from(status)),
        "{what}: {body:?}"
    );
    assert!(
        text(&body, &["message"]).is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body:?}"
    );
    body
}

/// `POST /api/publish` of `tarball` with `key`, Erlang format.
fn publish(server: &Server, key: &str, tarball: Vec<u8>) -> HttpResponse {
    req("POST", "/api/publish?replace=false")
        .key(key)
        .erlang()
        .tarball(tarball)
        .send(server)
}

/// A retire body as hex_core sends it.
fn retire_body(reason: &str, message: &str) -> Vec<u8> {
    etf::encode(&Term::map([
        ("reason", Term::bin(reason)),
        ("message", Term::bin(message)),
    ]))
}

/// A docs tarball: `index.html` in a gzip'd tar.
fn docs_tarball(html: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(html.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "index.html", html.as_bytes())
        .unwrap();
    support::bytes::gzip(&builder.into_inner().unwrap())
}

fn lower_hex(bytes: &[u8]) -> String {
    hex_upper(bytes).to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Routes and statuses

#[test]
fn users_me_and_package_reads_in_both_formats() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let one = Package::new("acme_one", "1.0.0").tarball();
    let two = Package::new("acme_two", "1.0.0")
        .dep("acme_one", "~> 1.0")
        .tarball();
    for tarball in [one, two.clone()] {
        assert_eq!(publish(&server, &fx.writer, tarball).status, 201);
    }

    // Each read in both formats: the same term.
    let both = |path: &str, key: &str| {
        let erl = req("GET", path).key(key).erlang().send(&server);
        let js = req("GET", path).key(key).send(&server);
        assert_eq!((erl.status, js.status), (200, 200), "{path}");
        assert_eq!(erl.header("content-type"), Some(ERLANG), "{path}");
        assert_eq!(
            js.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        let (erl, js) = (term(&erl), term(&js));
        assert_eq!(json::sorted(&erl), json::sorted(&js), "{path}");
        erl
    };

    let me = both("/api/users/me", &fx.reader);
    assert_eq!(text(&me, &["username"]), Some("reader"));
    assert_eq!(me.get("organizations"), Some(&Term::List(vec![])));
    let me = both("/api/users/me", &fx.writer);
    assert_eq!(text(&me, &["username"]), Some("publisher"));

    let package = both("/api/packages/acme_two", &fx.reader);
    assert_eq!(text(&package, &["name"]), Some("acme_two"));
    assert_eq!(text(&package, &["repository"]), Some(REPO));
    let releases = package.get("releases").and_then(Term::as_list).unwrap();
    assert_eq!(releases.len(), 1, "{package:?}");
    assert_eq!(text(&releases[0], &["version"]), Some("1.0.0"));
    assert_eq!(releases[0].get("retired"), Some(&Term::boolean(false)));
    // The repository-scoped form answers the same.
    assert_eq!(
        both("/api/repos/acme/packages/acme_two", &fx.reader),
        package
    );

    let release = both("/api/packages/acme_two/releases/1.0.0", &fx.reader);
    assert_eq!(text(&release, &["name"]), Some("acme_two"));
    assert_eq!(text(&release, &["version"]), Some("1.0.0"));
    assert_eq!(
        text(&release, &["checksum"]),
        Some(lower_hex(&outer_checksum(&two)).as_str())
    );
    assert_eq!(
        text(&release, &["requirements", "acme_one", "requirement"]),
        Some("~> 1.0")
    );
    assert_eq!(release.get("retirement"), Some(&Term::atom("nil")));
    // The tarball it points at is the one published, fetched with the read key.
    let url = text(&release, &["tarball_url"]).unwrap();
    let path = url.strip_prefix("http://127.0.0.1").expect(url);
    let fetched = req("GET", path).key(&fx.reader).send(&server);
    assert_eq!(fetched.status, 200, "{url}");
    assert_eq!(fetched.body, two);
}

#[test]
fn a_missing_or_wrong_key_is_401_with_a_challenge() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let tarball = Package::new("acme_one", "1.0.0").tarball();
    assert_eq!(publish(&server, &fx.writer, tarball.clone()).status, 201);
    let before = fx.snapshot();

    let mut tampered = fx.writer.clone();
    let last = if tampered.pop() == Some('0') {
        '1'
    } else {
        '0'
    };
    tampered.push(last);
    // `Bearer KEY` is the key itself (tests/testsuite/api_read.rs); a tampered one is not.
    let bearer = format!("Bearer {tampered}");
    let wrong = [
        None,
        Some(tampered.as_str()),
        Some(bearer.as_str()),
        Some(""),
    ];
    let requests = [
        req("GET", "/api/users/me"),
        req("GET", "/api/packages/acme_one"),
        req("GET", "/api/packages/acme_one/releases/1.0.0"),
        req("POST", "/api/publish?replace=true").tarball(tarball.clone()),
        req("POST", "/api/packages/acme_one/releases").tarball(tarball.clone()),
        req("POST", "/api/packages/acme_one/releases/1.0.0/retire").body(retire_body("other", "x")),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0/retire"),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0"),
        req("POST", "/api/packages/acme_one/releases/1.0.0/docs").body(docs_tarball("x")),
    ];
    for r in &requests {
        for key in &wrong {
            for erlang in [true, false] {
                let mut r = r.clone();
                if let Some(key) = key {
                    r = r.key(key);
                }
                if erlang {
                    r = r.erlang();
                }
                let what = format!("{} {} key {key:?}", r.method, r.path);
                let answer = r.send(&server);
                assert_error(&answer, 401, &what);
                assert_eq!(
                    answer.header("www-authenticate"),
                    Some("Basic realm=\"hexreg\""),
                    "{what}"
                );
            }
        }
    }
    // Repository files too need a key here (no --public-reads).
    for path in ["/names", "/versions", "/packages/acme_one"] {
        assert_eq!(req("GET", path).send(&server).status, 401, "{path}");
        assert_eq!(
            req("GET", path).key(&tampered).send(&server).status,
            401,
            "{path}"
        );
    }
    assert_eq!(
        fx.snapshot(),
        before,
        "a refused request changed the registry"
    );
}

#[test]
fn a_read_key_may_read_but_not_write() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let tarball = Package::new("acme_one", "1.0.0").tarball();
    assert_eq!(publish(&server, &fx.writer, tarball.clone()).status, 201);
    let before = fx.snapshot();

    let writes = [
        req("POST", "/api/publish?replace=false")
            .tarball(Package::new("acme_new", "1.0.0").tarball()),
        req("POST", "/api/repos/acme/publish?replace=true").tarball(tarball.clone()),
        req("POST", "/api/packages/acme_new/releases")
            .tarball(Package::new("acme_new", "1.0.0").tarball()),
        req("POST", "/api/packages/acme_one/releases/1.0.0/retire")
            .header("content-type", ERLANG)
            .body(retire_body("security", "x")),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0/retire"),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0"),
        req("POST", "/api/packages/acme_one/releases/1.0.0/docs").body(docs_tarball("x")),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0/docs"),
    ];
    for w in &writes {
        for erlang in [true, false] {
            let mut r = w.clone().key(&fx.reader);
            if erlang {
                r = r.erlang();
            }
            let what = format!("{} {} with the read key", r.method, r.path);
            let body = assert_error(&r.send(&server), 403, &what);
            assert!(
                text(&body, &["message"]).unwrap().contains("--write"),
                "{what}: {body:?}"
            );
        }
    }
    assert_eq!(
        fx.snapshot(),
        before,
        "a refused write changed the registry"
    );

    // The same key reads the API and the repository.
    for path in [
        "/api/users/me",
        "/api/packages/acme_one",
        "/api/packages/acme_one/releases/1.0.0",
        "/names",
        "/versions",
        "/packages/acme_one",
        "/tarballs/acme_one-1.0.0.tar",
    ] {
        let r = req("GET", path).key(&fx.reader).erlang().send(&server);
        assert_eq!(r.status, 200, "{path}");
    }
}

#[test]
fn without_the_private_key_writes_are_403_and_reads_work() {
    let fx = Fixture::new();
    let tarball = Package::new("acme_one", "1.0.0").tarball();
    {
        let server = fx.serve(&[]);
        assert_eq!(publish(&server, &fx.writer, tarball.clone()).status, 201);
    }
    let before = fx.snapshot();
    let server = fx.serve_signing(false, &[]);
    let writes = [
        req("POST", "/api/publish?replace=false")
            .tarball(Package::new("acme_new", "1.0.0").tarball()),
        req("POST", "/api/packages/acme_one/releases?replace=true").tarball(tarball.clone()),
        req("POST", "/api/packages/acme_one/releases/1.0.0/retire")
            .body(retire_body("security", "x")),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0/retire"),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0"),
        req("POST", "/api/packages/acme_one/releases/1.0.0/docs").body(docs_tarball("x")),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0/docs"),
    ];
    for w in writes {
        let what = format!("{} {} on a read-only server", w.method, w.path);
        let body = assert_error(&w.key(&fx.writer).erlang().send(&server), 403, &what);
        assert!(
            text(&body, &["message"]).unwrap().contains("--private-key"),
            "{what}: {body:?}"
        );
    }
    assert_eq!(
        fx.snapshot(),
        before,
        "a read-only server changed the registry"
    );

    let me = req("GET", "/api/users/me")
        .key(&fx.writer)
        .erlang()
        .send(&server);
    assert_eq!(me.status, 200);
    assert_eq!(text(&term(&me), &["username"]), Some("publisher"));
    let release = req("GET", "/api/packages/acme_one/releases/1.0.0")
        .key(&fx.reader)
        .send(&server);
    assert_eq!(release.status, 200);
    assert_eq!(
        text(&term(&release), &["checksum"]),
        Some(lower_hex(&outer_checksum(&tarball)).as_str())
    );
    let file = req("GET", "/tarballs/acme_one-1.0.0.tar")
        .key(&fx.reader)
        .send(&server);
    assert_eq!((file.status, file.body), (200, tarball));
}

#[test]
fn unknown_packages_versions_and_paths_are_404() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(
        publish(
            &server,
            &fx.writer,
            Package::new("acme_one", "1.0.0").tarball()
        )
        .status,
        201
    );
    let before = fx.snapshot();
    let requests = [
        req("GET", "/api/packages/acme_nope"),
        req("GET", "/api/packages/acme_nope/releases/1.0.0"),
        req("GET", "/api/packages/acme_one/releases/9.9.9"),
        req("DELETE", "/api/packages/acme_nope/releases/1.0.0"),
        req("DELETE", "/api/packages/acme_one/releases/9.9.9"),
        req("POST", "/api/packages/acme_nope/releases/1.0.0/retire")
            .body(retire_body("other", "x")),
        req("POST", "/api/packages/acme_one/releases/9.9.9/retire").body(retire_body("other", "x")),
        req("DELETE", "/api/packages/acme_nope/releases/1.0.0/retire"),
        req("POST", "/api/packages/acme_nope/releases/1.0.0/docs").body(docs_tarball("x")),
        req("DELETE", "/api/packages/acme_one/releases/1.0.0/docs"),
        req("GET", "/api/nothing/here"),
        req("GET", "/api/repos/other/packages/acme_one"),
        req("POST", "/api/repos/other/publish")
            .tarball(Package::new("acme_two", "1.0.0").tarball()),
    ];
    for r in requests {
        for erlang in [true, false] {
            let mut r = r.clone().key(&fx.writer);
            if erlang {
                r = r.erlang();
            }
            let what = format!("{} {}", r.method, r.path);
            assert_error(&r.send(&server), 404, &what);
        }
    }
    assert_eq!(fx.snapshot(), before);
}

/// An API error must not tell a client where the registry lives on the server's disk.
#[test]
fn error_messages_do_not_reveal_server_paths() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(
        publish(
            &server,
            &fx.writer,
            Package::new("acme_one", "1.0.0").tarball()
        )
        .status,
        201
    );
    let root = fs::canonicalize(&fx.public).unwrap();
    let requests = [
        req("DELETE", "/api/packages/acme_nope/releases/1.0.0"),
        req("POST", "/api/packages/acme_nope/releases/1.0.0/retire")
            .body(retire_body("other", "x")),
        req("DELETE", "/api/packages/acme_nope/releases/1.0.0/retire"),
        req("POST", "/api/packages/acme_nope/releases/1.0.0/docs").body(docs_tarball("x")),
        req("POST", "/api/packages/acme_one/releases/1.0.0/docs").body(b"not gzip".to_vec()),
        req("GET", "/api/packages/acme_nope"),
    ];
    for r in requests {
        let what = format!("{} {}", r.method, r.path);
        let answer = r.key(&fx.writer).erlang().send(&server);
        assert!(answer.status >= 400, "{what}: {}", answer.status);
        let message = text(&term(&answer), &["message"]).unwrap().to_string();
        for shown in [fx.public.display().to_string(), root.display().to_string()] {
            assert!(
                !message.contains(&shown),
                "{what}: the message reveals the server's directory {shown}: {message}"
            );
        }
    }
}

#[test]
fn a_wrong_method_is_405_naming_the_allowed_ones() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let cases = [
        ("PUT", "/api/users/me", "GET"),
        ("POST", "/api/users/me", "GET"),
        ("GET", "/api/publish", "POST"),
        ("DELETE", "/api/repos/acme/publish", "POST"),
        ("DELETE", "/api/packages/acme_one", "GET"),
        ("GET", "/api/packages/acme_one/releases", "POST"),
        (
            "PATCH",
            "/api/packages/acme_one/releases/1.0.0",
            "GET, DELETE",
        ),
        (
            "GET",
            "/api/packages/acme_one/releases/1.0.0/retire",
            "POST, DELETE",
        ),
        (
            "PUT",
            "/api/packages/acme_one/releases/1.0.0/docs",
            "POST, DELETE",
        ),
    ];
    for (method, path, allowed) in cases {
        let what = format!("{method} {path}");
        let answer = req(method, path).key(&fx.writer).erlang().send(&server);
        assert_error(&answer, 405, &what);
        // RFC 9110 §15.5.6: a 405 response MUST carry Allow.
        assert_eq!(answer.header("allow"), Some(allowed), "{what}");
    }
}

#[test]
fn publish_read_retire_docs_and_revert() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let v1 = Package::new("acme_life", "1.0.0").tarball();

    // Publish: 201 with location, visible at once, and a sound registry.
    let answer = publish(&server, &fx.writer, v1.clone());
    assert_eq!(answer.status, 201, "{:?}", term(&answer));
    assert_eq!(
        answer.header("location"),
        Some("http://127.0.0.1/api/packages/acme_life/releases/1.0.0")
    );
    let body = term(&answer);
    assert_eq!(text(&body, &["name"]), Some("acme_life"));
    assert_eq!(
        text(&body, &["checksum"]),
        Some(lower_hex(&outer_checksum(&v1)).as_str())
    );
    let listed = req("GET", "/api/packages/acme_life")
        .key(&fx.reader)
        .erlang()
        .send(&server);
    assert_eq!(listed.status, 200);
    let listed = term(&listed);
    let versions: Vec<&str> = listed
        .get("releases")
        .and_then(Term::as_list)
        .unwrap()
        .iter()
        .filter_map(|r| text(r, &["version"]))
        .collect();
    assert_eq!(versions, ["1.0.0"]);
    fx.assert_sound(1);
    assert_eq!(
        fs::read(fx.public.join("tarballs/acme_life-1.0.0.tar")).unwrap(),
        v1
    );

    // Again without replace: 422 with hexpm's error, in both formats; nothing changes.
    let before = fx.snapshot();
    let other = Package::new("acme_life", "1.0.0")
        .file("src/other.erl", "-module(other).\n")
        .tarball();
    // The same bytes again (a client's retry after a timeout): 200, nothing changes.
    let again = req("POST", "/api/packages/acme_life/releases")
        .key(&fx.writer)
        .erlang()
        .tarball(v1.clone())
        .send(&server);
    assert_eq!(again.status, 200, "{:?}", term(&again));
    assert_eq!(fx.snapshot(), before);
    for (tarball, erlang) in [(other.clone(), true), (other.clone(), false)] {
        let mut r = req("POST", "/api/packages/acme_life/releases?replace=false")
            .key(&fx.writer)
            .tarball(tarball);
        if erlang {
            r = r.erlang();
        }
        let body = assert_error(&r.send(&server), 422, "publish again");
        assert_eq!(text(&body, &["errors", "inserted_at"]), Some(NEEDS_REPLACE));
    }
    assert_eq!(fx.snapshot(), before);

    // With replace: 200, the new tarball in place.
    let answer = req("POST", "/api/repos/acme/publish?replace=true")
        .key(&fx.writer)
        .erlang()
        .tarball(other.clone())
        .send(&server);
    assert_eq!(answer.status, 200, "{:?}", term(&answer));
    assert_eq!(
        text(&term(&answer), &["checksum"]),
        Some(lower_hex(&outer_checksum(&other)).as_str())
    );
    assert_eq!(
        fs::read(fx.public.join("tarballs/acme_life-1.0.0.tar")).unwrap(),
        other
    );
    fx.assert_sound(1);

    // A second version through the other publish path.
    let v2 = Package::new("acme_life", "2.0.0").tarball();
    let answer = req("POST", "/api/packages/acme_life/releases")
        .key(&fx.writer)
        .tarball(v2)
        .send(&server);
    assert_eq!(answer.status, 201);
    assert_eq!(
        text(&term(&answer), &["version"]),
        Some("2.0.0"),
        "JSON body"
    );

    // Retire: 204, then both reads show it; a bad body is 422 and changes nothing.
    let retire = "/api/packages/acme_life/releases/1.0.0/retire";
    let answer = req("POST", retire)
        .key(&fx.writer)
        .header("content-type", ERLANG)
        .body(retire_body("security", "CVE-2026-1: use 2.0.0"))
        .send(&server);
    assert_eq!(answer.status, 204, "{:?}", answer);
    assert!(answer.body.is_empty());
    let release = term(
        &req("GET", "/api/packages/acme_life/releases/1.0.0")
            .key(&fx.reader)
            .erlang()
            .send(&server),
    );
    assert_eq!(text(&release, &["retirement", "reason"]), Some("security"));
    assert_eq!(
        text(&release, &["retirement", "message"]),
        Some("CVE-2026-1: use 2.0.0")
    );
    let package = term(
        &req("GET", "/api/packages/acme_life")
            .key(&fx.reader)
            .send(&server),
    );
    assert_eq!(
        text(&package, &["retirements", "1.0.0", "reason"]),
        Some("security")
    );
    fx.assert_sound(2);
    let before = fx.snapshot();
    for bad in [
        retire_body("bored", "x"),
        b"{\"reason\":\"security\"}".to_vec(),
        Vec::new(),
    ] {
        let answer = req("POST", retire)
            .key(&fx.writer)
            .erlang()
            .body(bad)
            .send(&server);
        assert_error(&answer, 422, "bad retire body");
    }
    assert_eq!(fx.snapshot(), before);

    // Unretire: 204, retirement gone.
    let answer = req("DELETE", retire).key(&fx.writer).send(&server);
    assert_eq!(answer.status, 204);
    let release = term(
        &req("GET", "/api/packages/acme_life/releases/1.0.0")
            .key(&fx.reader)
            .erlang()
            .send(&server),
    );
    assert_eq!(release.get("retirement"), Some(&Term::atom("nil")));

    // Docs: 201 with location, stored where hex_core fetches them, served with a key; 204 on
    // removal, 404 when there are none; a body that is no docs tarball is 422.
    let docs = docs_tarball("<h1>acme_life</h1>");
    let answer = req("POST", "/api/packages/acme_life/releases/1.0.0/docs")
        .key(&fx.writer)
        .header("content-type", "application/octet-stream")
        .body(docs.clone())
        .send(&server);
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.header("location"),
        Some("http://127.0.0.1/docs/acme_life-1.0.0.tar.gz")
    );
    assert_eq!(
        fs::read(fx.public.join("docs/acme_life-1.0.0.tar.gz")).unwrap(),
        docs
    );
    let fetched = req("GET", "/docs/acme_life-1.0.0.tar.gz")
        .key(&fx.reader)
        .send(&server);
    assert_eq!((fetched.status, &fetched.body), (200, &docs));
    let answer = req("POST", "/api/packages/acme_life/releases/1.0.0/docs")
        .key(&fx.writer)
        .erlang()
        .body(b"not a tarball".to_vec())
        .send(&server);
    assert_error(&answer, 422, "bad docs");
    // Docs holding a link (to /etc/shadow) are refused, naming the entry.
    let mut builder = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder
        .append_link(&mut link, "shadow.html", "/etc/shadow")
        .unwrap();
    let answer = req("POST", "/api/packages/acme_life/releases/1.0.0/docs")
        .key(&fx.writer)
        .body(support::bytes::gzip(&builder.into_inner().unwrap()))
        .send(&server);
    assert_eq!(answer.status, 422);
    let said = String::from_utf8_lossy(&answer.body);
    assert!(said.contains("`shadow.html`, a symbolic link"), "{said}");
    assert_eq!(
        fs::read(fx.public.join("docs/acme_life-1.0.0.tar.gz")).unwrap(),
        docs
    );
    let docs_path = "/api/packages/acme_life/releases/1.0.0/docs";
    assert_eq!(
        req("DELETE", docs_path)
            .key(&fx.writer)
            .send(&server)
            .status,
        204
    );
    assert!(!fx.public.join("docs/acme_life-1.0.0.tar.gz").exists());
    assert_error(
        &req("DELETE", docs_path)
            .key(&fx.writer)
            .erlang()
            .send(&server),
        404,
        "docs removed twice",
    );

    // Revert: 204, gone from the API, the index and the disk; 404 the second time.
    let release_path = "/api/packages/acme_life/releases/1.0.0";
    let answer = req("DELETE", release_path).key(&fx.writer).send(&server);
    assert_eq!(answer.status, 204);
    assert_error(
        &req("GET", release_path).key(&fx.reader).send(&server),
        404,
        "reverted release",
    );
    assert!(!fx.public.join("tarballs/acme_life-1.0.0.tar").exists());
    assert_eq!(fx.indexed()["acme_life"], ["2.0.0"]);
    fx.assert_sound(1);
    assert_error(
        &req("DELETE", release_path)
            .key(&fx.writer)
            .erlang()
            .send(&server),
        404,
        "reverted twice",
    );
    // The last release: the package goes.
    let answer = req("DELETE", "/api/packages/acme_life/releases/2.0.0")
        .key(&fx.writer)
        .send(&server);
    assert_eq!(answer.status, 204);
    assert_error(
        &req("GET", "/api/packages/acme_life")
            .key(&fx.reader)
            .send(&server),
        404,
        "package with no release left",
    );
    assert!(fx.indexed().is_empty());
    fx.assert_sound(0);
}

#[test]
fn invalid_tarballs_are_422_and_change_nothing() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(
        publish(
            &server,
            &fx.writer,
            Package::new("acme_one", "1.0.0").tarball()
        )
        .status,
        201
    );
    let before = fx.snapshot();
    let bad_checksum = Package::new("acme_bad", "1.0.0")
        .checksum("AB".repeat(32))
        .tarball();
    for erlang in [true, false] {
        let mut r = req("POST", "/api/publish")
            .key(&fx.writer)
            .tarball(bad_checksum.clone());
        if erlang {
            r = r.erlang();
        }
        let body = assert_error(&r.send(&server), 422, "bad checksum");
        let message = text(&body, &["message"]).unwrap();
        assert!(message.contains("wrong CHECKSUM"), "{message}");
        assert!(message.contains(&"AB".repeat(32)), "{message}");
        assert!(
            text(&body, &["errors", "tarball"]).is_some_and(|e| e.contains("CHECKSUM")),
            "{body:?}"
        );
    }
    for (what, bytes) in [
        ("garbage", b"this is not a tarball".to_vec()),
        ("empty", Vec::new()),
        (
            "no CHECKSUM",
            Package::new("acme_two", "1.0.0")
                .without_entry("CHECKSUM")
                .tarball(),
        ),
        (
            "a bad package name",
            Package::new("Acme-Two", "1.0.0").tarball(),
        ),
    ] {
        let answer = req("POST", "/api/publish")
            .key(&fx.writer)
            .erlang()
            .tarball(bytes)
            .send(&server);
        assert_error(&answer, 422, what);
    }
    assert_eq!(
        fx.snapshot(),
        before,
        "an invalid tarball changed the registry"
    );
    fx.assert_sound(1);
}

#[test]
fn repository_files_need_a_key_unless_public_reads() {
    let fx = Fixture::new();
    let tarball = Package::new("acme_one", "1.0.0").tarball();
    {
        let server = fx.serve(&[]);
        assert_eq!(publish(&server, &fx.writer, tarball.clone()).status, 201);
        for key in [&fx.reader, &fx.writer] {
            let r = req("GET", "/tarballs/acme_one-1.0.0.tar")
                .key(key)
                .send(&server);
            assert_eq!((r.status, &r.body), (200, &tarball));
        }
        let r = req("GET", "/tarballs/acme_one-1.0.0.tar").send(&server);
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").is_some());
    }
    let server = fx.serve(&["--public-reads"]);
    for path in ["/names", "/versions", "/packages/acme_one", "/public_key"] {
        assert_eq!(req("GET", path).send(&server).status, 200, "{path}");
    }
    let r = req("GET", "/tarballs/acme_one-1.0.0.tar").send(&server);
    assert_eq!((r.status, r.body), (200, tarball));
    // The API still needs a key.
    assert_error(
        &req("GET", "/api/packages/acme_one").erlang().send(&server),
        401,
        "API with --public-reads",
    );
}

// ---------------------------------------------------------------------------------------------
// Request bodies on the wire

/// Reads one response head (through the blank line) from `reader`.
fn read_head(reader: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read response head");
        assert!(n > 0, "connection closed after {head:?}");
        head.push_str(&line);
        if line == "\r\n" {
            return head;
        }
    }
}

#[test]
fn a_body_over_16_mib_is_413_before_it_is_sent() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let before = fx.snapshot();
    let paths = [
        "/api/publish?replace=false",
        "/api/repos/acme/publish",
        "/api/packages/acme_one/releases",
        "/api/packages/acme_one/releases/1.0.0/docs",
    ];
    for path in paths {
        for expect in [false, true] {
            // Only the head goes out: an answer proves the server did not wait for the body.
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut head = format!(
                "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\n\
                 accept: {ERLANG}\r\ncontent-type: application/octet-stream\r\n\
                 content-length: {}\r\n",
                fx.writer,
                LIMIT + 1
            );
            if expect {
                head.push_str("expect: 100-continue\r\n");
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).unwrap();
            let mut reader = BufReader::new(stream);
            let response = HttpResponse::read_one(&mut reader, false);
            let what = format!("{path} expect={expect}");
            assert_error(&response, 413, &what);
        }
    }
    // Exactly the limit is not refused for its size (but this body is no tarball: 422).
    let answer = req("POST", "/api/publish")
        .key(&fx.writer)
        .erlang()
        .tarball(vec![0; LIMIT as usize])
        .send(&server);
    assert_error(&answer, 422, "a body of exactly the limit");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn expect_100_continue_gets_100_then_201() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let tarball = Package::new("acme_cont", "1.0.0").tarball();
    let head = |key: &str| {
        format!(
            "POST /api/packages/acme_cont/releases?replace=false HTTP/1.1\r\n\
             host: 127.0.0.1\r\nauthorization: {key}\r\naccept: {ERLANG}\r\n\
             content-type: application/octet-stream\r\ncontent-length: {}\r\n\
             expect: 100-continue\r\n\r\n",
            tarball.len()
        )
    };

    // A read key: refused at once, no 100 (the client must not send the body).
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(head(&fx.reader).as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let response = HttpResponse::read_one(&mut reader, false);
    assert_error(&response, 403, "read key with expect: 100-continue");

    // The write key: 100 Continue before any body byte, then 201 once the body is sent.
    let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer.write_all(head(&fx.writer).as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let interim = read_head(&mut reader);
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "expected 100 Continue, got {interim:?}"
    );
    assert!(
        fx.indexed().is_empty(),
        "published before the body was sent"
    );
    writer.write_all(&tarball).unwrap();
    let response = HttpResponse::read_one(&mut reader, false);
    assert_eq!(response.status, 201, "{:?}", term(&response));
    assert_eq!(text(&term(&response), &["name"]), Some("acme_cont"));
    // The connection stays usable: a second request on it.
    writer
        .write_all(
            format!(
                "GET /api/packages/acme_cont HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\n\r\n",
                fx.reader
            )
            .as_bytes(),
        )
        .unwrap();
    let response = HttpResponse::read_one(&mut reader, false);
    assert_eq!(response.status, 200);
    assert_eq!(fx.indexed()["acme_cont"], ["1.0.0"]);
    fx.assert_sound(1);
}

// ---------------------------------------------------------------------------------------------
// Concurrency and crashes

/// Publishes every tarball at once, one thread each, released together; the answers in order
/// (`Err` when the connection failed).
fn publish_concurrently(
    port: u16,
    key: &str,
    tarballs: Vec<Vec<u8>>,
) -> Vec<io::Result<HttpResponse>> {
    let barrier = Arc::new(Barrier::new(tarballs.len()));
    let threads: Vec<_> = tarballs
        .into_iter()
        .map(|tarball| {
            let barrier = Arc::clone(&barrier);
            let r = req("POST", "/api/publish?replace=false")
                .key(key)
                .erlang()
                .tarball(tarball);
            thread::spawn(move || {
                barrier.wait();
                r.try_send(port)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn twenty_concurrent_publishers_all_land() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    // 10 packages, 2 versions each: some publishers race for the same package.
    let releases: Vec<(String, String)> = (0..20)
        .map(|i| (format!("acme_c{}", i / 2), format!("1.{}.0", i % 2)))
        .collect();
    let tarballs = releases
        .iter()
        .map(|(name, version)| Package::new(name, version).tarball())
        .collect();
    let answers = publish_concurrently(server.port, &fx.writer, tarballs);
    for ((name, version), answer) in releases.iter().zip(answers) {
        let answer = answer.unwrap_or_else(|e| panic!("{name} {version}: {e}"));
        assert_eq!(answer.status, 201, "{name} {version}: {:?}", term(&answer));
        assert_eq!(
            answer.header("location"),
            Some(format!("http://127.0.0.1/api/packages/{name}/releases/{version}").as_str())
        );
    }
    for p in 0..10 {
        let name = format!("acme_c{p}");
        let package = term(
            &req("GET", &format!("/api/packages/{name}"))
                .key(&fx.reader)
                .erlang()
                .send(&server),
        );
        let versions: Vec<&str> = package
            .get("releases")
            .and_then(Term::as_list)
            .unwrap()
            .iter()
            .filter_map(|r| text(r, &["version"]))
            .collect();
        assert_eq!(versions, ["1.1.0", "1.0.0"], "{name}");
    }
    let packages = check_registry(&fx.public, REPO, &public_key());
    assert_eq!(packages.len(), 10);
    assert!(packages.values().all(|v| v == &["1.0.0", "1.1.0"]));
    fx.assert_sound(20);
}

/// What `hexreg verify` may note after a kill: the leftovers of a publish cut short, as the
/// engine's write order leaves them (tarball, then `packages/NAME`, then `names`, then
/// `versions`), which it reports as notes, not problems. Returns the kind of each note;
/// panics on anything else.
fn leftovers(verify_stdout: &str) -> Vec<&'static str> {
    verify_stdout
        .lines()
        .filter(|line| !line.starts_with("ok: "))
        .map(|line| {
            assert!(
                line.starts_with("note: "),
                "hexreg verify found a problem, not a leftover: {line}\n{verify_stdout}"
            );
            if line.contains("/tarballs/") && line.contains("is not listed in the registry") {
                "tarball not listed"
            } else if line.contains("/packages/") && line.contains("is not listed in names") {
                "packages/NAME not in names"
            } else if line.contains("versions: does not list the same packages as names") {
                "names ahead of versions"
            } else if (line.contains("versions: lists ") && line.contains(" versions ["))
                || line.contains("versions: retired indexes of")
            {
                "versions behind packages/NAME"
            } else {
                panic!("hexreg verify found more than a cut-short publish: {line}\n{verify_stdout}")
            }
        })
        .collect()
}

/// The round's publishes: 4 new versions of one package (so its `packages/NAME` and
/// `versions` entry change under the kill) and 8 new packages.
fn kill_round(round: usize) -> Vec<(String, String)> {
    (0..12)
        .map(|i| {
            if i % 3 == 0 {
                ("acme_k".to_string(), format!("{round}.{i}.0"))
            } else {
                (format!("acme_k{round}_{i}"), "1.0.0".to_string())
            }
        })
        .collect()
}

#[test]
fn a_server_killed_mid_publish_leaves_a_registry_clients_accept_and_retries_complete() {
    let fx = Fixture::new();
    let key = public_key();
    let tarballs = |round: &[(String, String)]| -> Vec<Vec<u8>> {
        round
            .iter()
            .map(|(n, v)| Package::new(n, v).tarball())
            .collect()
    };

    // How long a round takes uninterrupted: the kills below land within it.
    let server = fx.serve(&["--quiet"]);
    let round0 = kill_round(0);
    let started = Instant::now();
    for answer in publish_concurrently(server.port, &fx.writer, tarballs(&round0)) {
        assert_eq!(answer.unwrap().status, 201);
    }
    let full = started.elapsed();
    drop(server);
    let mut total = round0.len();
    fx.assert_sound(total);

    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    let mut cut_short = 0;
    for round in 1..=6 {
        let releases = kill_round(round);
        let server = fx.serve(&["--quiet"]);
        let (port, writer, bodies) = (server.port, fx.writer.clone(), tarballs(&releases));
        let publishers = thread::spawn(move || publish_concurrently(port, &writer, bodies));
        // Somewhere from the start to a little past the uninterrupted round's end.
        let delay = full.mul_f64((next() % 1000) as f64 / 800.0);
        thread::sleep(delay);
        drop(server); // SIGKILL, then reaped
        let answers = publishers.join().unwrap();

        // Whatever the moment, clients accept the registry: whole signed files, every listed
        // package with its file, every release with its tarball.
        check_after_kill(&fx.public, REPO, &key);
        // Every publish answered 201 is fully in.
        let indexed = fx.indexed();
        for ((name, version), answer) in releases.iter().zip(&answers) {
            if let Ok(answer) = answer {
                assert_eq!(answer.status, 201, "{name} {version} before the kill");
                assert!(
                    indexed.get(name).is_some_and(|v| v.contains(version)),
                    "{name} {version} was answered 201 but is not in versions"
                );
            }
        }
        let unanswered = answers.iter().filter(|a| a.is_err()).count();

        // hexreg verify passes; it notes the leftovers of the publishes cut short.
        let out = fx.verify();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let kinds = leftovers(&stdout);
        if !kinds.is_empty() {
            cut_short += 1;
        }
        for kind in kinds {
            *found.entry(kind).or_default() += 1;
        }
        eprintln!(
            "round {round}: killed after {delay:?} (a round takes {full:?}), {unanswered} publishes unanswered, verify: {}",
            if out.status.success() {
                "sound\n"
            } else {
                &stdout
            }
        );

        // The publishers retry (the same bytes) on a restarted server: what `versions` lists by
        // then is published already (200, as for any retry of the same bytes), the rest is
        // completed (201); then the registry is sound. (A retry that writes the index also
        // completes the packages that `names` alone listed.)
        let server = fx.serve(&["--quiet"]);
        for (name, version) in &releases {
            let listed = fx.indexed().get(name).is_some_and(|v| v.contains(version));
            let answer = publish(&server, &fx.writer, Package::new(name, version).tarball());
            if listed {
                assert_eq!(answer.status, 200, "retry of {name} {version}");
            } else {
                assert_eq!(
                    answer.status,
                    201,
                    "retry of {name} {version}, not in versions: {:?}\nverify after the kill:\n{stdout}",
                    term(&answer)
                );
            }
        }
        drop(server);
        total += releases.len();
        fx.assert_sound(total);
        check_registry(&fx.public, REPO, &key);
    }
    eprintln!(
        "seed {seed}: verify found leftovers after {cut_short} of 6 kills: {found:?} (all completed by the retries)"
    );
}

/// A publish killed after it wrote `packages/*` but before the index: the retry with the same
/// tarball completes it (201) instead of answering "already published" and leaving the index
/// behind for good.
#[test]
fn a_retried_publish_completes_one_cut_short_before_the_index() {
    let fx = Fixture::new();
    let v1 = Package::new("acme_half", "1.0.0").tarball();
    let v2 = Package::new("acme_half", "2.0.0").tarball();
    let fresh = Package::new("acme_fresh", "1.0.0").tarball();
    let server = fx.serve(&[]);
    assert_eq!(publish(&server, &fx.writer, v1).status, 201);
    let names = fs::read(fx.public.join("names")).unwrap();
    let versions = fs::read(fx.public.join("versions")).unwrap();
    assert_eq!(publish(&server, &fx.writer, v2.clone()).status, 201);
    assert_eq!(publish(&server, &fx.writer, fresh.clone()).status, 201);
    drop(server);
    // The state a kill between the `packages/*` batch and the index batch leaves.
    fs::write(fx.public.join("names"), names).unwrap();
    fs::write(fx.public.join("versions"), versions).unwrap();
    let out = fx.verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let kinds = leftovers(&stdout);
    assert!(kinds.contains(&"packages/NAME not in names"), "{stdout}");
    assert!(kinds.contains(&"versions behind packages/NAME"), "{stdout}");
    check_after_kill(&fx.public, REPO, &public_key());

    let server = fx.serve(&[]);
    for (what, tarball) in [("acme_half 2.0.0", v2), ("acme_fresh 1.0.0", fresh)] {
        let answer = publish(&server, &fx.writer, tarball);
        assert_eq!(answer.status, 201, "retry of {what}: {:?}", term(&answer));
    }
    assert_eq!(fx.indexed()["acme_half"], ["1.0.0", "2.0.0"]);
    assert_eq!(fx.indexed()["acme_fresh"], ["1.0.0"]);
    fx.assert_sound(3);
}

// ---------------------------------------------------------------------------------------------
// hex_core and rebar3

/// Runs `cmd` with stdout and stderr to files in `dir` (named `name.*`), killed after
/// [`TOOL_TIMEOUT`]; returns the status (`None`: killed) and both outputs.
fn run_bounded(mut cmd: Command, dir: &Path, name: &str) -> (Option<ExitStatus>, String, String) {
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(50)),
        }
    };
    (
        status,
        fs::read_to_string(stdout).unwrap_or_default(),
        fs::read_to_string(stderr).unwrap_or_default(),
    )
}

/// The hex_core client: publishes, reads, retires, unretires and reverts, checking each
/// answer; prints `PASS STEP` or `FAIL STEP RESULT` per step.
const HEX_CORE_SCRIPT: &str = r#"#!/usr/bin/env escript
main(_) ->
    true = code:add_path("@BEAMS@"),
    {ok, _} = application:ensure_all_started(inets),
    Config = maps:merge(r3_hex_core:default_config(),
                        #{api_url => <<"@API@">>, api_key => <<"@WRITER@">>,
                          repo_name => <<"acme">>}),
    Scoped = Config#{api_repository => <<"acme">>},
    Reader = Config#{api_key => <<"@READER@">>},
    Nobody = Config#{api_key => <<"hexreg_not_a_key">>},
    Tar = fun(File) -> {ok, Bytes} = file:read_file(filename:join("@TARBALLS@", File)), Bytes end,
    Check = fun(Step, Result, Pred) ->
        case catch Pred(Result) of
            true -> io:format("PASS ~s~n", [Step]);
            _ -> io:format("FAIL ~s ~0p~n", [Step, Result])
        end
    end,
    Base = Tar("acme_erl_base-0.1.0.tar"),
    Check("me", r3_hex_api_user:me(Config),
        fun({ok, {200, _, #{<<"username">> := <<"publisher">>, <<"organizations">> := []}}}) -> true end),
    Check("publish/2 acme_erl_base", r3_hex_api_release:publish(Config, Base),
        fun({ok, {201, #{<<"location">> := <<"@API@/packages/acme_erl_base/releases/0.1.0">>},
                  #{<<"name">> := <<"acme_erl_base">>, <<"version">> := <<"0.1.0">>,
                    <<"checksum">> := <<"f1c252663b9ebb4305154aa05343f25cbdb51e303ec9e0038a04c0332b95cb20">>}}}) -> true end),
    Check("publish/3 acme_erl 0.1.0", r3_hex_api_release:publish(Config, Tar("acme_erl-0.1.0.tar"), [{replace, false}]),
        fun({ok, {201, _, #{<<"name">> := <<"acme_erl">>, <<"version">> := <<"0.1.0">>,
                            <<"requirements">> := Requirements}}}) -> Requirements =:= #{} end),
    Check("publish/2 acme_erl 0.2.0 repository-scoped", r3_hex_api_release:publish(Scoped, Tar("acme_erl-0.2.0.tar")),
        fun({ok, {201, _, #{<<"version">> := <<"0.2.0">>,
                            <<"requirements">> := #{<<"acme_erl_base">> := #{<<"requirement">> := <<"~> 0.1">>}}}}}) -> true end),
    Check("publish again, same bytes", r3_hex_api_release:publish(Config, Base),
        fun({ok, {200, _, #{<<"version">> := <<"0.1.0">>}}}) -> true end),
    Check("publish/3 replace", r3_hex_api_release:publish(Config, Base, [{replace, true}]),
        fun({ok, {200, _, #{<<"version">> := <<"0.1.0">>}}}) -> true end),
    Check("read key refused", r3_hex_api_release:publish(Reader, Tar("acme_tmp-0.1.0.tar")),
        fun({ok, {403, _, #{<<"status">> := 403}}}) -> true end),
    Check("bad key refused", r3_hex_api_release:publish(Nobody, Tar("acme_tmp-0.1.0.tar")),
        fun({ok, {401, #{<<"www-authenticate">> := _}, #{<<"status">> := 401}}}) -> true end),
    Check("retire", r3_hex_api_release:retire(Config, <<"acme_erl">>, <<"0.1.0">>,
                                              #{<<"reason">> => <<"security">>, <<"message">> => <<"CVE-2026-1">>}),
        fun({ok, {204, _, _}}) -> true end),
    Check("get retired", r3_hex_api_release:get(Reader, <<"acme_erl">>, <<"0.1.0">>),
        fun({ok, {200, _, #{<<"retirement">> := #{<<"reason">> := <<"security">>, <<"message">> := <<"CVE-2026-1">>}}}}) -> true end),
    Check("unretire", r3_hex_api_release:unretire(Config, <<"acme_erl">>, <<"0.1.0">>),
        fun({ok, {204, _, _}}) -> true end),
    Check("get unretired", r3_hex_api_release:get(Reader, <<"acme_erl">>, <<"0.1.0">>),
        fun({ok, {200, _, #{<<"retirement">> := nil}}}) -> true end),
    Check("retire deprecated", r3_hex_api_release:retire(Config, <<"acme_erl">>, <<"0.1.0">>,
                                                         #{<<"reason">> => <<"deprecated">>, <<"message">> => <<"use 0.2">>}),
        fun({ok, {204, _, _}}) -> true end),
    Check("publish acme_tmp", r3_hex_api_release:publish(Config, Tar("acme_tmp-0.1.0.tar")),
        fun({ok, {201, _, _}}) -> true end),
    Check("delete acme_tmp", r3_hex_api_release:delete(Config, <<"acme_tmp">>, <<"0.1.0">>),
        fun({ok, {204, _, _}}) -> true end),
    Check("delete acme_tmp again", r3_hex_api_release:delete(Config, <<"acme_tmp">>, <<"0.1.0">>),
        fun({ok, {404, _, #{<<"status">> := 404}}}) -> true end),
    Check("get acme_tmp gone", r3_hex_api_release:get(Reader, <<"acme_tmp">>, <<"0.1.0">>),
        fun({ok, {404, _, _}}) -> true end),
    io:format("DONE~n").
"#;

const HEX_CORE_STEPS: [&str; 17] = [
    "me",
    "publish/2 acme_erl_base",
    "publish/3 acme_erl 0.1.0",
    "publish/2 acme_erl 0.2.0 repository-scoped",
    "publish again, same bytes",
    "publish/3 replace",
    "read key refused",
    "bad key refused",
    "retire",
    "get retired",
    "unretire",
    "get unretired",
    "retire deprecated",
    "publish acme_tmp",
    "delete acme_tmp",
    "delete acme_tmp again",
    "get acme_tmp gone",
];

/// Writes a rebar3 application depending on `acme_erl ~> 0.2` from repository `acme` at
/// `repo_url`, with `repo_key` when given.
fn write_project(dir: &Path, repo_url: &str, public_key_pem: &str, repo_key: Option<&str>) {
    fs::create_dir_all(dir.join("src")).unwrap();
    let key = repo_key
        .map(|k| format!(",\n    repo_key => <<\"{k}\">>"))
        .unwrap_or_default();
    fs::write(
        dir.join("rebar.config"),
        format!(
            "{{deps, [{{acme_erl, \"~> 0.2\"}}]}}.\n\
             {{hex, [{{repos, replace, [#{{name => <<\"acme\">>,\n    \
             repo_url => <<\"{repo_url}\">>,\n    \
             repo_public_key => <<\"{public_key_pem}\">>{key}}}]}}]}}.\n"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("src/myapp.app.src"),
        "{application, myapp, [{description, \"hexreg API test\"}, {vsn, \"0.1.0\"},\n \
         {registered, []}, {applications, [kernel, stdlib, acme_erl]}, {env, []}, {modules, []}]}.\n",
    )
    .unwrap();
    fs::write(
        dir.join("src/myapp.erl"),
        "-module(myapp).\n-export([hello/0]).\nhello() -> ok.\n",
    )
    .unwrap();
}

#[test]
fn hex_core_publishes_retires_reverts_and_rebar3_compiles_from_the_server() {
    let Some(rebar3) = rebar3_or_skip("hex_core_publishes_retires_reverts_and_rebar3_compiles")
    else {
        return;
    };
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let api = format!("{}/api", server.url());

    // rebar3's own modules, unpacked from the escript.
    let beams = fx.dir.join("rebar3-beams");
    let extract = format!(
        "{{ok, Sections}} = escript:extract(\"{}\", []),\n\
         {{archive, Archive}} = lists:keyfind(archive, 1, Sections),\n\
         {{ok, _}} = zip:extract(Archive, [{{cwd, \"{}\"}}]),\nhalt().",
        rebar3.display(),
        beams.display()
    );
    let mut cmd = Command::new("erl");
    cmd.args(["-noshell", "-eval", &extract]);
    let (status, out, err) = run_bounded(cmd, &fx.dir, "extract");
    assert!(
        status.is_some_and(|s| s.success()),
        "unpacking rebar3 failed: {out}{err}"
    );

    let tarballs = fx.dir.join("client-tarballs");
    fs::create_dir_all(&tarballs).unwrap();
    for name in [
        "acme_erl_base-0.1.0.tar",
        "acme_erl-0.1.0.tar",
        "acme_erl-0.2.0.tar",
    ] {
        fs::copy(fixtures().join("tarballs").join(name), tarballs.join(name)).unwrap();
    }
    fs::write(
        tarballs.join("acme_tmp-0.1.0.tar"),
        Package::new("acme_tmp", "0.1.0").tarball(),
    )
    .unwrap();
    let script = HEX_CORE_SCRIPT
        .replace("@BEAMS@", &beams.join("rebar/ebin").display().to_string())
        .replace("@API@", &api)
        .replace("@WRITER@", &fx.writer)
        .replace("@READER@", &fx.reader)
        .replace("@TARBALLS@", &tarballs.display().to_string());
    let script_path = fx.dir.join("hex_core_client.escript");
    fs::write(&script_path, script).unwrap();
    let mut cmd = isolated(Path::new("escript"), &fx.dir.join("escript"));
    cmd.arg(&script_path);
    let (status, out, err) = run_bounded(cmd, &fx.dir, "escript");
    let report = format!("escript: {status:?}\n--- stdout\n{out}--- stderr\n{err}");
    assert!(status.is_some_and(|s| s.success()), "{report}");
    assert!(!out.contains("FAIL "), "{report}");
    for step in HEX_CORE_STEPS {
        assert!(
            out.lines().any(|l| l == format!("PASS {step}")),
            "step {step:?} did not pass\n{report}"
        );
    }
    assert!(out.lines().any(|l| l == "DONE"), "{report}");

    // What hex_core did is in the registry.
    let package = term(
        &req("GET", "/api/packages/acme_erl")
            .key(&fx.reader)
            .send(&server),
    );
    assert_eq!(
        text(&package, &["retirements", "0.1.0", "reason"]),
        Some("deprecated")
    );
    assert_eq!(
        fx.indexed().keys().collect::<Vec<_>>(),
        ["acme_erl", "acme_erl_base"]
    );
    assert_eq!(fx.indexed()["acme_erl"], ["0.1.0", "0.2.0"]);
    fx.assert_sound(3);

    // rebar3 resolves, fetches and compiles from the server with the read key ...
    let public_key_pem = fs::read_to_string(fx.public.join("public_key")).unwrap();
    let sandbox = fx.dir.join("rebar3-ok");
    let project = sandbox.join("myapp");
    write_project(&project, &server.url(), &public_key_pem, Some(&fx.reader));
    let mut cmd = isolated(&rebar3, &sandbox);
    cmd.arg("compile").current_dir(&project);
    let (status, out, err) = run_bounded(cmd, &sandbox, "rebar3");
    let report = format!("rebar3 compile: {status:?}\n--- stdout\n{out}--- stderr\n{err}");
    assert!(status.is_some_and(|s| s.success()), "{report}");
    let lib = project.join("_build/default/lib");
    for beam in [
        "acme_erl/ebin/acme_erl.beam",
        "acme_erl/ebin/acme_erl.app",
        "acme_erl_base/ebin/acme_erl_base.app",
    ] {
        assert!(lib.join(beam).is_file(), "{beam} not built\n{report}");
    }
    let lock: String = fs::read_to_string(project.join("rebar.lock"))
        .unwrap()
        .split_whitespace()
        .collect();
    for entry in [
        "{pkg,<<\"acme_erl\">>,<<\"0.2.0\">>",
        "{pkg,<<\"acme_erl_base\">>,<<\"0.1.0\">>",
        "<<\"F1C252663B9EBB4305154AA05343F25CBDB51E303EC9E0038A04C0332B95CB20\">>",
    ] {
        assert!(lock.contains(entry), "rebar.lock lacks {entry}: {lock}");
    }

    // ... and gets nothing without it.
    let sandbox = fx.dir.join("rebar3-nokey");
    let project = sandbox.join("myapp");
    write_project(&project, &server.url(), &public_key_pem, None);
    let mut cmd = isolated(&rebar3, &sandbox);
    cmd.arg("compile").current_dir(&project);
    let (status, out, err) = run_bounded(cmd, &sandbox, "rebar3");
    assert!(
        status.is_some_and(|s| !s.success()),
        "rebar3 without the key: {status:?}\n{out}{err}"
    );
    assert!(
        !project
            .join("_build/default/lib/acme_erl/ebin/acme_erl.beam")
            .exists()
    );

    // The server saw both publish paths and served the tarballs.
    let (_, log) = server.stop("TERM");
    for expected in [
        "POST /api/publish?replace=false 201",
        "POST /api/repos/acme/publish?replace=false 201",
        "POST /api/publish?replace=true 200",
        "POST /api/publish?replace=false 403",
        "POST /api/packages/acme_erl/releases/0.1.0/retire 204",
        "DELETE /api/packages/acme_erl/releases/0.1.0/retire 204",
        "DELETE /api/packages/acme_tmp/releases/0.1.0 204",
        "GET /tarballs/acme_erl-0.2.0.tar 200",
        "GET /tarballs/acme_erl_base-0.1.0.tar 200",
        "GET /packages/acme_erl 401",
    ] {
        assert!(
            log.iter().any(|l| l.starts_with(expected)),
            "no `{expected}` in the server log:\n{}",
            log.join("\n")
        );
    }
    // Each API request's line names the key it was made with, refused writes included.
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST /api/publish?replace=false 403")
                && l.ends_with(" key=reader")),
        "{}",
        log.join("\n")
    );
}

/// Sends `req` until `done` holds for its answer, for at most 20 s (the server looks at its
/// keys file at most once a second): a safety net, not a timing assertion.
fn until(server: &Server, req: &Req, done: impl Fn(&HttpResponse) -> bool) -> HttpResponse {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = req.send(server);
        if done(&answer) || std::time::Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_server_sees_keys_added_and_revoked() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let added = ok(
        &fx.dir,
        &["key", "add", "--keys", "keys", "late", "--write"],
    )
    .trim_end()
    .to_string();
    let me = req("GET", "/api/users/me").key(&added);
    let answer = until(&server, &me, |a| a.status == 200);
    assert_eq!(
        answer.status, 200,
        "a key added after the start is accepted"
    );
    assert_eq!(text(&term(&answer), &["username"]), Some("late"));
    let tarball = Package::new("acme_late", "1.0.0").tarball();
    assert_eq!(publish(&server, &added, tarball).status, 201);

    ok(&fx.dir, &["key", "revoke", "--keys", "keys", "late"]);
    let answer = until(&server, &me, |a| a.status == 401);
    assert_eq!(answer.status, 401, "a revoked key is refused");
    let tarball = Package::new("acme_late", "2.0.0").tarball();
    assert_eq!(publish(&server, &added, tarball).status, 401);
    // The other keys still work.
    assert_eq!(
        req("GET", "/api/users/me")
            .key(&fx.reader)
            .send(&server)
            .status,
        200
    );
}

#[test]
fn a_client_that_stalls_mid_body_gets_408_and_changes_nothing() {
    let fx = Fixture::new();
    let server = fx.serve(&["--body-timeout", "1"]);
    let before = fx.snapshot();
    let tarball = Package::new("acme_slow", "1.0.0").tarball();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\n\
         accept: {ERLANG}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        fx.writer,
        tarball.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Part of the body, then nothing: the server must give up on its own.
    stream.write_all(&tarball[..100]).unwrap();
    let mut reader = BufReader::new(stream);
    let response = HttpResponse::read_one(&mut reader, false);
    assert_error(&response, 408, "a stalled publish");
    assert_eq!(
        fx.snapshot(),
        before,
        "a stalled publish changed the registry"
    );
    // The server still answers others.
    let fresh = Package::new("acme_fast", "1.0.0").tarball();
    assert_eq!(publish(&server, &fx.writer, fresh).status, 201);
}

/// `serve --published-at` dates each release it publishes with the time its tarball was
/// stored (Hex 2.5's cooldown reads `published_at`); without the flag, none is written, as the
/// task writes none. Policies written next to the registry are served like any resource.
#[test]
fn publishing_with_published_at_dates_releases_and_policies_are_served() {
    let release_dates = |fx: &Fixture| -> Vec<Option<i64>> {
        let bytes = fs::read(fx.public.join("packages/acme_dated")).unwrap();
        registry::open_package(&bytes, &public_key(), REPO, "acme_dated")
            .unwrap()
            .releases
            .into_iter()
            .map(|r| r.published_at.map(|t| t.seconds))
            .collect()
    };
    let tarball = Package::new("acme_dated", "1.0.0").tarball();

    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(publish(&server, &fx.writer, tarball.clone()).status, 201);
    assert_eq!(release_dates(&fx), [None]);
    drop(server);

    let fx = Fixture::new();
    let server = fx.serve(&["--published-at"]);
    assert_eq!(publish(&server, &fx.writer, tarball).status, 201);
    let stored = fs::metadata(fx.public.join("tarballs/acme_dated-1.0.0.tar"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(release_dates(&fx), [Some(stored)]);
    fx.assert_sound(1);

    ok(
        &fx.dir,
        &[
            "policy",
            "set",
            "public",
            "strict",
            "--cooldown=7d",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    let served = req("GET", "/policies/strict").key(&fx.reader).send(&server);
    assert_eq!(served.status, 200);
    assert_eq!(
        served.body,
        fs::read(fx.public.join("policies/strict")).unwrap()
    );
}

mod trust;
