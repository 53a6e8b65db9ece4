//! `hexreg serve` run as a service (issue #26): the health, readiness and metrics routes
//! (`promtool check metrics` reads the exposition), a clean shutdown during a publish,
//! configuration from `HEXREG_...` variables, the JSON access log (parsed by Python's `json`),
//! and the choices a registry remembers between builds.

use crate::support;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fixtures::{private_key, public_key};
use support::hexreg_serve::{HttpResponse, Server, connect};
use support::package::Package;
use support::run::{build, ok, private_key_arg};

/// An empty registry `public/` with a keys file holding a write key.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    public: PathBuf,
    keys: PathBuf,
    writer: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let public = dir.join("public");
        fs::create_dir_all(public.join("tarballs")).unwrap();
        build(&dir, &private_key());
        let writer = ok(&dir, &["key", "add", "--keys", "keys", "--write", "ci"])
            .trim_end()
            .to_string();
        Fixture {
            keys: dir.join("keys"),
            public,
            dir,
            writer,
            _tmp: tmp,
        }
    }

    /// `hexreg serve` with the API (name, keys, private key), then `args`.
    fn serve(&self, args: &[&str]) -> Server {
        let key = private_key_arg();
        let keys = self.keys.display().to_string();
        let mut all = vec!["--name", "acme", "--keys", &keys, &key];
        all.extend(args);
        Server::start(&self.public, &all, &[])
    }
}

/// `promtool`, or `None` with a notice outside CI; under CI its absence fails the test.
fn promtool_or_skip() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    assert!(
        std::env::var("CI").is_err(),
        "promtool is missing: install Debian's prometheus package (.ci/run does)"
    );
    eprintln!("SKIPPED: promtool is missing (Debian package prometheus): metrics not checked");
    None
}

fn body(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// The value of the sample `name` (with its labels, exactly as written) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn health_and_ready_are_open_and_metrics_need_credentials() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    // Reads need a key here, but the probes do not.
    assert_eq!(server.get("/names").status, 401);
    let health = server.get("/-/health");
    assert_eq!((health.status, body(&health).as_str()), (200, "ok\n"));
    let ready = server.get("/-/ready");
    assert_eq!((ready.status, body(&ready).as_str()), (200, "ready\n"));
    assert_eq!(ready.header("cache-control"), Some("no-store"));
    assert_eq!(server.request("HEAD", "/-/health", &[]).status, 200);
    assert_eq!(server.request("POST", "/-/health", &[]).status, 405);

    let denied = server.get("/-/metrics");
    assert_eq!(denied.status, 401);
    assert!(!body(&denied).contains("hexreg_"), "{}", body(&denied));

    // A publish, then the metrics count it.
    let tarball = Package::new("svc_pkg", "1.0.0").tarball();
    let auth = [
        ("authorization", fx.writer.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    assert_eq!(server.post("/api/publish", &auth, &tarball).status, 201);
    // The same bytes again are a client's retry: a success (issue #21).
    assert_eq!(server.post("/api/publish", &auth, &tarball).status, 200);
    let other = Package::new("svc_pkg", "1.0.0")
        .file("lib/other.ex", "other bytes")
        .tarball();
    assert_eq!(server.post("/api/publish", &auth, &other).status, 422);
    assert_eq!(
        server.post("/api/publish", &auth, b"not a tarball").status,
        422
    );
    let metrics = server.request("GET", "/-/metrics", &[("authorization", &fx.writer)]);
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = body(&metrics);
    assert_eq!(sample(&text, "hexreg_publishes_total"), Some(2.0), "{text}");
    assert_eq!(
        sample(&text, "hexreg_publish_failures_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "hexreg_requests_total{route=\"files\",status=\"401\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "hexreg_requests_total{route=\"api\",status=\"201\"}"),
        Some(1.0),
        "{text}"
    );
    // Every request before this one finished: the histogram's count is the requests'.
    let answered: f64 = text
        .lines()
        .filter(|l| l.starts_with("hexreg_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let timed: f64 = text
        .lines()
        .filter(|l| l.starts_with("hexreg_request_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(answered, timed, "{text}");
    for name in [
        "hexreg_lock_waits_total",
        "hexreg_upstream_fetches_total",
        "hexreg_cache_hits_total",
        "hexreg_docs_archives_prepared_total",
        "hexreg_response_bytes_total{route=\"api\"}",
    ] {
        assert!(sample(&text, name).is_some(), "{name} missing:\n{text}");
    }
    // No registry data in the open routes' answers, nor package names in the metrics.
    assert!(!text.contains("svc_pkg"), "{text}");

    if let Some(promtool) = promtool_or_skip() {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn public_metrics_are_open_and_only_the_metrics() {
    let fx = Fixture::new();
    let server = fx.serve(&["--public-metrics"]);
    assert_eq!(server.get("/-/metrics").status, 200);
    assert_eq!(server.get("/names").status, 401);
}

#[test]
fn ready_says_503_and_why_when_the_keys_file_breaks() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    fs::write(&fx.keys, "this is not a keys file\n").unwrap();
    let ready = server.get("/-/ready");
    assert_eq!(ready.status, 503, "{}", body(&ready));
    let text = body(&ready);
    assert!(text.contains("keys file"), "{text}");
    // The reason names no path; the log has the detail.
    assert!(!text.contains(&fx.dir.display().to_string()), "{text}");
    assert_eq!(server.get("/-/health").status, 200);
    let (_, lines) = server.stop("TERM");
    assert!(
        lines.iter().any(|l| l.starts_with("not ready:")),
        "{lines:#?}"
    );
}

#[test]
fn ready_says_503_when_the_storage_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    fs::create_dir_all(public.join("tarballs")).unwrap();
    build(tmp.path(), &private_key());
    let server = Server::start(&public, &[], &[]);
    assert_eq!(server.get("/-/ready").status, 200);
    // The directory the server holds open is deleted: reading it fails.
    fs::remove_dir_all(&public).unwrap();
    // Past the readiness cache (a wait for the cache to expire, not a timing assertion).
    std::thread::sleep(Duration::from_millis(1100));
    let ready = server.get("/-/ready");
    assert_eq!(ready.status, 503, "{}", body(&ready));
    assert!(body(&ready).contains("storage"), "{}", body(&ready));
}

#[test]
fn sigterm_during_a_slow_publish_lets_it_finish_and_exits_0() {
    let fx = Fixture::new();
    let server = fx.serve(&["--shutdown-timeout", "60"]);
    let tarball = Package::new("slow_pkg", "1.0.0").tarball();
    let (first, rest) = tarball.split_at(tarball.len() / 2);
    let mut stream = connect(server.port);
    // `Expect: 100-continue`: the server answers 100 once the publish handler reads the body,
    // so the request is known to be in flight before the signal.
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        fx.writer,
        tarball.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed");
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{interim:?}");
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    server.signal("TERM");
    wait_for(&server, "SIGTERM: stopped accepting");
    // No new connection is accepted now.
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err());
    stream.write_all(rest).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = HttpResponse::parse_whole(&response);
    assert_eq!(response.status, 201, "{}", body(&response));
    let (status, lines) = server.wait();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(lines.iter().any(|l| l == "stopped"), "{lines:#?}");
    // Durable and sound: verify passes and the release is in the registry.
    let out = ok(&fx.dir, &["verify", "public", "--name=acme"]);
    assert!(out.starts_with("ok: 1 packages, 1 releases"), "{out}");
    assert!(fx.public.join("tarballs/slow_pkg-1.0.0.tar").is_file());
}

/// Waits until a line of the server's stderr contains `text` (a safety-net deadline, not a
/// timing assertion).
fn wait_for(server: &Server, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.lines().iter().any(|l| l.contains(text)) {
        assert!(Instant::now() < deadline, "no line with {text:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_serve_option_has_an_environment_variable_named_in_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_hexreg"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut options = 0;
    // Each option's entry runs from its `--name` line to the next option's.
    let mut entry = String::new();
    let mut entries = Vec::new();
    // The options come before the examples and notes (after_help).
    for line in help.lines().take_while(|l| !l.starts_with("Examples:")) {
        let trimmed = line.trim_start();
        let is_option = line.starts_with("  ") && trimmed.starts_with("--")
            || line.starts_with("  ") && trimmed.starts_with('-') && trimmed.get(2..3) == Some(",");
        if is_option {
            entries.push(std::mem::take(&mut entry));
        }
        entry.push_str(line);
        entry.push('\n');
    }
    entries.push(entry);
    for entry in entries.iter().filter(|e| e.trim_start().starts_with('-')) {
        // `-q, --quiet`: the long name.
        let flag = entry
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .unwrap();
        if flag == "--help" {
            continue;
        }
        options += 1;
        assert!(
            entry.contains("[env: HEXREG_"),
            "{flag} has no HEXREG_ variable:\n{entry}"
        );
    }
    assert!(options >= 14, "{options} options found in:\n{help}");
    assert!(help.contains("[env: HEXREG_PUBLIC_DIR"), "{help}");
    assert!(help.contains("[env: HEXREG_PRIVATE_KEY_FILE"), "{help}");
}

#[test]
fn serve_configured_from_the_environment_logs_json() {
    let fx = Fixture::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hexreg"))
        .arg("serve")
        .env("HEXREG_PUBLIC_DIR", &fx.public)
        .env("HEXREG_BIND", "127.0.0.1:0")
        .env("HEXREG_NAME", "acme")
        .env("HEXREG_KEYS", &fx.keys)
        .env("HEXREG_PRIVATE_KEY_FILE", private_key())
        .env("HEXREG_LOG_FORMAT", "json")
        .env("HEXREG_PUBLIC_METRICS", "true")
        .env("HEXREG_PUBLISHED_AT", "true")
        .env_remove("HEXREG_AUTH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    let port: u16 = first
        .trim_end()
        .rsplit_once("127.0.0.1:")
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{first:?}"));
    let server_port = port;
    let get = |path: &str, headers: &[(&str, &str)], body: Option<&[u8]>| {
        let mut stream = connect(server_port);
        let method = if body.is_some() { "POST" } else { "GET" };
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        stream.write_all(raw.as_bytes()).unwrap();
        if let Some(body) = body {
            stream.write_all(body).unwrap();
        }
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        HttpResponse::parse_whole(&bytes)
    };
    // HEXREG_PUBLIC_METRICS: open.
    assert_eq!(get("/-/metrics", &[], None).status, 200);
    // HEXREG_KEYS + HEXREG_PRIVATE_KEY_FILE: publishes are accepted and signed.
    let tarball = Package::new("env_pkg", "1.0.0").tarball();
    let published = get(
        "/api/publish",
        &[
            ("authorization", &fx.writer),
            ("content-type", "application/octet-stream"),
        ],
        Some(&tarball),
    );
    assert_eq!(published.status, 201, "{}", body(&published));
    // Odd paths, to test the escaping.
    assert_eq!(get("/a%22b%5C%0A", &[], None).status, 401);
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    // HEXREG_PUBLISHED_AT: the release is dated.
    let bytes = fs::read(fx.public.join("packages/env_pkg")).unwrap();
    let package =
        hexreg::format::registry::open_package(&bytes, &public_key(), "acme", "env_pkg").unwrap();
    assert!(package.releases[0].published_at.is_some());

    let access: Vec<&str> = rest.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(access.len(), 3, "{rest}");
    // Python's json module parses each line as one object with the fields.
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json,sys\n\
             for line in sys.stdin:\n\
             \x20   o = json.loads(line)\n\
             \x20   assert isinstance(o, dict), line\n\
             \x20   assert set(o) - {'key'} == {'time','method','path','status','bytes','ms'}, o\n\
             \x20   assert ('key' in o) == o['path'].startswith('/api/'), o\n\
             \x20   print(o['method'], o['path'], o['status'])\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    python
        .stdin
        .take()
        .unwrap()
        .write_all((access.join("\n") + "\n").as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{rest}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        parsed,
        "GET /-/metrics 200\nPOST /api/publish 201\nGET /a%22b%5C%0A 401\n"
    );
}

/// `packages/NAME`'s releases: version and whether it is dated.
fn dated(public: &Path, name: &str) -> Vec<(String, bool)> {
    let bytes = fs::read(public.join("packages").join(name)).unwrap();
    hexreg::format::registry::open_package(&bytes, &public_key(), "acme", name)
        .unwrap()
        .releases
        .into_iter()
        .map(|r| (r.version, r.published_at.is_some()))
        .collect()
}

#[test]
fn a_registry_remembers_its_public_key_format_and_release_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    Package::new("mem", "1.0.0").publish(&public);
    let key = private_key_arg();
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "public", "--name=acme", &key];
        args.extend(extra);
        ok(tmp.path(), &args)
    };
    build(&["--public-key-format=spki", "--published-at"]);
    let settings = fs::read_to_string(public.join(".hexreg-settings")).unwrap();
    assert!(settings.contains("public_key_format = spki"), "{settings}");
    Package::new("mem", "1.1.0").publish(&public);
    // No flags: the key stays SPKI and the new release is dated.
    build(&[]);
    assert!(
        fs::read(public.join("public_key"))
            .unwrap()
            .starts_with(b"-----BEGIN PUBLIC KEY-----\n")
    );
    assert_eq!(
        dated(&public, "mem"),
        vec![("1.0.0".to_string(), true), ("1.1.0".to_string(), true)]
    );
    // `add` keeps dating too.
    let tarball = Package::new("mem", "1.2.0").tarball();
    let added = tmp.path().join("mem-1.2.0.tar");
    fs::write(&added, tarball).unwrap();
    ok(
        tmp.path(),
        &[
            "add",
            "public",
            "--name=acme",
            &key,
            added.to_str().unwrap(),
        ],
    );
    assert!(dated(&public, "mem").iter().all(|(_, d)| *d));
    // Turned off explicitly: remembered as off; the dates recorded stay.
    build(&["--published-at=false", "--public-key-format=pkcs1"]);
    Package::new("mem", "1.3.0").publish(&public);
    build(&[]);
    assert_eq!(
        dated(&public, "mem").last(),
        Some(&("1.3.0".to_string(), false))
    );
    assert!(dated(&public, "mem")[0].1);
    assert!(
        fs::read(public.join("public_key"))
            .unwrap()
            .starts_with(b"-----BEGIN RSA PUBLIC KEY-----\n")
    );
    // Never served.
    let server = Server::start(&public, &[], &[]);
    assert_eq!(server.get("/.hexreg-settings").status, 404);
    // verify accepts the registry with the file in it.
    ok(tmp.path(), &["verify", "public", "--name=acme"]);
}

#[test]
fn a_registry_made_before_the_settings_file_keeps_its_spki_key() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    fs::create_dir_all(public.join("tarballs")).unwrap();
    let key = private_key_arg();
    ok(
        tmp.path(),
        &[
            "build",
            "public",
            "--name=acme",
            &key,
            "--public-key-format=spki",
        ],
    );
    // As an older hexreg left it: no settings file.
    fs::remove_file(public.join(".hexreg-settings")).unwrap();
    let out = ok(tmp.path(), &["build", "public", "--name=acme", &key]);
    assert!(!out.contains("public_key"), "{out}");
    assert!(
        fs::read(public.join("public_key"))
            .unwrap()
            .starts_with(b"-----BEGIN PUBLIC KEY-----\n")
    );
}

#[test]
fn a_broken_settings_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    fs::create_dir_all(public.join("tarballs")).unwrap();
    fs::write(public.join(".hexreg-settings"), "public_key_format = der\n").unwrap();
    let key = private_key_arg();
    let out = support::run::hexreg(tmp.path(), &["build", "public", "--name=acme", &key]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".hexreg-settings line 1") && err.contains("der"),
        "{err}"
    );
}
