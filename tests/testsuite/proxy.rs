//! `hexreg serve CACHE --upstream URL`: the caching proxy, in front of an upstream that is a
//! `hexreg serve` on loopback serving a registry whose public key is given in SPKI form (as
//! hex.pm's is). Upstream requests are counted from the upstream's request log; rebar3 builds
//! through the proxy, then from its cache alone.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hexreg::format::registry;
use hexreg::format::signing::{PrivateKey, PublicKeyFormat};
use support::fixtures::{other_private_key, public_key};
use support::hexreg_serve::Server;
use support::moto::Moto;
use support::rebar3::{isolated, rebar3_or_skip};
use support::run::{ok, private_key_arg};

mod service;

/// The rebar3-built fixtures: acme_erl depends on `acme_erl_base ~> 0.1`.
const TARBALLS: [&str; 3] = [
    "acme_erl-0.1.0.tar",
    "acme_erl-0.2.0.tar",
    "acme_erl_base-0.1.0.tar",
];

/// A hung rebar3 is killed after this long so that the test fails instead of blocking CI.
const REBAR3_TIMEOUT: Duration = Duration::from_secs(120);

/// The upstream: `tmp/up`, repository `repo` signed with the fixture key, served on loopback;
/// its SPKI public key in `tmp/upstream.pem`.
struct Upstream {
    tmp: tempfile::TempDir,
    server: Option<Server>,
}

impl Upstream {
    fn start(repo: &str) -> Upstream {
        Upstream::start_with(repo, &TARBALLS, &[])
    }

    /// An upstream of these fixture tarballs, built with `build_extra` (`--published-at`).
    fn start_with(repo: &str, tarballs: &[&str], build_extra: &[&str]) -> Upstream {
        let tmp = tempfile::tempdir().unwrap();
        let up = tmp.path().join("up");
        support::fixtures::copy_tarballs(&up, tarballs);
        let name = format!("--name={repo}");
        let key = private_key_arg();
        let mut args = vec!["build", "up", &name, &key, "--quiet"];
        args.extend(build_extra);
        ok(tmp.path(), &args);
        fs::write(
            tmp.path().join("upstream.pem"),
            public_key().to_pem(PublicKeyFormat::Spki),
        )
        .unwrap();
        let server = Server::start(&up, &[], &[]);
        Upstream {
            tmp,
            server: Some(server),
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("up")
    }

    fn key_file(&self) -> PathBuf {
        self.tmp.path().join("upstream.pem")
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the upstream runs")
    }

    fn url(&self) -> String {
        self.server().url()
    }

    fn stop(&mut self) {
        drop(self.server.take());
    }

    /// A proxy of this upstream (repository `acme`) caching in `cache`, with `extra` options.
    fn proxy(&self, cache: &Path, extra: &[&str]) -> Server {
        let cache = cache.to_str().expect("a UTF-8 path");
        proxy(cache, &self.url(), "acme", &self.key_file(), extra)
    }

    /// How many `GET PATH` the upstream logged, every earlier request being logged (a sentinel
    /// request is sent and waited for).
    fn count(&self, path: &str) -> usize {
        let sentinel = format!("/proxy-test-sentinel-{}", self.server().lines().len());
        assert_eq!(self.server().get(&sentinel).status, 404);
        // A safety net against a server that stopped logging, not a timing assertion.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = self.server().lines();
            if lines.iter().any(|l| l.contains(&sentinel)) {
                return lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("GET {path} ")))
                    .count();
            }
            assert!(Instant::now() < deadline, "the sentinel was never logged");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `hexreg serve CACHE --upstream URL --upstream-name REPO --upstream-key upstream.pem EXTRA`.
fn proxy(cache: &str, upstream_url: &str, repo: &str, key: &Path, extra: &[&str]) -> Server {
    proxy_env(cache, upstream_url, repo, key, extra, &[])
}

fn proxy_env(
    cache: &str,
    upstream_url: &str,
    repo: &str,
    key: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let mut args = vec![
        "--upstream".to_string(),
        upstream_url.to_string(),
        format!("--upstream-name={repo}"),
        format!("--upstream-key={}", key.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(Path::new(cache), &args, env)
}

/// `GET PATH` on `port`, on a connection of its own closed after the answer.
fn get_once(port: u16, path: &str) -> support::hexreg_serve::HttpResponse {
    at_once(vec![(port, path.to_string())])
        .pop()
        .map(|(_, response)| response)
        .expect("one answer")
}

/// Each `(port, path)` asked at once, one client each: all connect first, then send together
/// (a barrier). The answers, with their paths, in the order given.
fn at_once(requests: Vec<(u16, String)>) -> Vec<(String, support::hexreg_serve::HttpResponse)> {
    use std::io::{Read, Write};
    let barrier = Arc::new(Barrier::new(requests.len()));
    let clients: Vec<_> = requests
        .into_iter()
        .map(|(port, path)| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut stream = support::hexreg_serve::connect(port);
                barrier.wait();
                let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                stream.write_all(head.as_bytes()).unwrap();
                let mut bytes = Vec::new();
                stream.read_to_end(&mut bytes).unwrap();
                let response = support::hexreg_serve::HttpResponse::parse_whole(&bytes);
                (path, response)
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

fn erl_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A rebar3 application depending on `acme_erl ~> 0.2`, with `hex_config` as its `hex` entry.
fn write_project(dir: &Path, hex_config: &str) {
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("rebar.config"),
        format!("{{deps, [{{acme_erl, \"~> 0.2\"}}]}}.\n{{hex, {hex_config}}}.\n"),
    )
    .unwrap();
    fs::write(
        dir.join("src/myapp.app.src"),
        "{application, myapp, [{vsn, \"0.1.0\"}, {applications, [kernel, stdlib, acme_erl]}]}.\n",
    )
    .unwrap();
}

/// `[{repos, replace, [acme at URL with KEY]}]`: rebar3 asks this repository only.
fn repo_url_config(url: &str, key_pem: &str) -> String {
    named_repo_config("acme", url, key_pem)
}

/// `[{repos, replace, [NAME at URL with KEY]}]`.
fn named_repo_config(name: &str, url: &str, key_pem: &str) -> String {
    format!(
        "[{{repos, replace, [#{{name => <<\"{}\">>, repo_url => <<\"{}\">>, repo_public_key => <<\"{}\">>}}]}}]",
        erl_string(name),
        erl_string(url),
        erl_string(key_pem)
    )
}

/// `rebar3 compile` in `project`, isolated in `sandbox`, with `env`; panics with rebar3's
/// output unless acme_erl and acme_erl_base were built.
fn compile(rebar3: &Path, sandbox: &Path, project: &Path, env: &[(&str, &str)], proxy: &Server) {
    let (success, report) = run_compile(rebar3, sandbox, project, env, proxy);
    assert!(success, "{report}");
    let lib = project.join("_build/default/lib");
    assert!(
        lib.join("acme_erl/ebin/acme_erl.beam").is_file(),
        "{report}"
    );
    assert!(
        lib.join("acme_erl_base/ebin/acme_erl_base.app").is_file(),
        "{report}"
    );
}

/// `rebar3 compile` in `project`, isolated in `sandbox`, with `env`: whether it succeeded,
/// and rebar3's output with the proxy's log.
fn run_compile(
    rebar3: &Path,
    sandbox: &Path,
    project: &Path,
    env: &[(&str, &str)],
    proxy: &Server,
) -> (bool, String) {
    let out_path = sandbox.join("rebar3.out");
    let mut cmd: Command = isolated(rebar3, sandbox);
    cmd.arg("compile")
        .current_dir(project)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::from(
            fs::File::create(sandbox.join("rebar3.err")).unwrap(),
        ));
    let mut child = cmd.spawn().expect("spawn rebar3");
    let deadline = Instant::now() + REBAR3_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = format!(
        "rebar3: {status:?}\n--- stdout\n{}\n--- stderr\n{}\n--- proxy log\n{}",
        fs::read_to_string(&out_path).unwrap_or_default(),
        fs::read_to_string(sandbox.join("rebar3.err")).unwrap_or_default(),
        proxy.lines().join("\n")
    );
    (status.is_some_and(|s| s.success()), report)
}

/// rebar3 with `repo_url`: it builds through the proxy; with the upstream stopped and a new
/// proxy process (TTL 0, so every registry file is past it), the same client and a fresh one
/// still build from the cache, and the log warns of each stale file served.
#[test]
fn rebar3_builds_through_the_proxy_then_from_its_cache_alone() {
    let Some(rebar3) = rebar3_or_skip("rebar3_builds_through_the_proxy_then_from_its_cache_alone")
    else {
        return;
    };
    let mut upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let proxy1 = proxy(
        cache_arg,
        &upstream.url(),
        "acme",
        &upstream.key_file(),
        &[],
    );

    let key = proxy1.get("/public_key");
    assert_eq!(key.status, 200);
    assert_eq!(key.body, fs::read(upstream.key_file()).unwrap());
    let key_pem = String::from_utf8(key.body).unwrap();

    let sandbox = tmp.path().join("client1");
    let project = sandbox.join("myapp");
    write_project(&project, &repo_url_config(&proxy1.url(), &key_pem));
    compile(&rebar3, &sandbox, &project, &[], &proxy1);
    for file in [
        "tarballs/acme_erl-0.2.0.tar",
        "tarballs/acme_erl_base-0.1.0.tar",
        "packages/acme_erl",
        "packages/acme_erl_base",
    ] {
        assert_eq!(
            fs::read(cache.join(file)).unwrap(),
            fs::read(upstream.dir().join(file)).unwrap(),
            "{file} is cached byte for byte"
        );
    }
    assert!(
        !cache.join("tarballs/acme_erl-0.1.0.tar").exists(),
        "only what was asked for is fetched"
    );

    upstream.stop();
    drop(proxy1);
    let proxy2 = proxy(
        cache_arg,
        "http://127.0.0.1:9",
        "acme",
        &upstream.key_file(),
        &["--upstream-ttl=0"],
    );
    // The same client, its build and lock removed: it asks the proxy again.
    fs::remove_dir_all(project.join("_build")).unwrap();
    fs::remove_file(project.join("rebar.lock")).unwrap();
    write_project(&project, &repo_url_config(&proxy2.url(), &key_pem));
    compile(&rebar3, &sandbox, &project, &[], &proxy2);
    // A fresh client with empty caches.
    let sandbox = tmp.path().join("client2");
    let project = sandbox.join("myapp");
    write_project(&project, &repo_url_config(&proxy2.url(), &key_pem));
    compile(&rebar3, &sandbox, &project, &[], &proxy2);
    let log = proxy2.lines().join("\n");
    assert!(
        log.contains("warning: serving the cached packages/acme_erl past its TTL"),
        "{log}"
    );
    assert!(
        log.contains("GET /tarballs/acme_erl_base-0.1.0.tar 200"),
        "{log}"
    );
}

/// rebar3 with `HEX_CDN` pointing at the proxy, for the `hexpm` repository with the
/// upstream's key: resolves, fetches and compiles through it.
#[test]
fn rebar3_builds_through_the_proxy_with_hex_cdn() {
    let Some(rebar3) = rebar3_or_skip("rebar3_builds_through_the_proxy_with_hex_cdn") else {
        return;
    };
    let upstream = Upstream::start("hexpm");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let proxy = proxy(
        cache.to_str().unwrap(),
        &upstream.url(),
        "hexpm",
        &upstream.key_file(),
        &[],
    );
    let key_pem = fs::read_to_string(upstream.key_file()).unwrap();
    let sandbox = tmp.path().join("client");
    let project = sandbox.join("myapp");
    write_project(
        &project,
        &format!(
            "[{{repos, [#{{name => <<\"hexpm\">>, repo_public_key => <<\"{}\">>}}]}}]",
            erl_string(&key_pem)
        ),
    );
    compile(
        &rebar3,
        &sandbox,
        &project,
        &[("HEX_CDN", &proxy.url())],
        &proxy,
    );
    assert!(cache.join("tarballs/acme_erl-0.2.0.tar").is_file());
    assert_eq!(upstream.count("/tarballs/acme_erl-0.2.0.tar"), 1);
}

/// Re-signs `file` (a registry file) with another key: a valid file the upstream key refuses.
fn resigned(file: &[u8]) -> Vec<u8> {
    let opened = registry::open(file).unwrap();
    let other = PrivateKey::from_pem(&fs::read(other_private_key()).unwrap()).unwrap();
    registry::seal(&opened.payload, &other).unwrap()
}

/// A tampered tarball, a registry file signed by another key and one of another repository are
/// refused with 502 and one line, never cached, the log naming the upstream URL; a cached copy
/// stays as it was and is served meanwhile, as when the upstream is down.
#[test]
fn tampered_upstream_files_are_refused_and_not_cached() {
    let upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let proxy = upstream.proxy(&cache, &["--upstream-ttl=0"]);
    let up = upstream.dir();

    // A tarball whose bytes are not those the signed release records.
    let tarball = up.join("tarballs/acme_erl_base-0.1.0.tar");
    let mut bytes = fs::read(&tarball).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&tarball, &bytes).unwrap();
    let response = proxy.get("/tarballs/acme_erl_base-0.1.0.tar");
    assert_eq!(response.status, 502);
    let text = String::from_utf8(response.body).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("SHA-256") && text.contains("refused"),
        "{text}"
    );
    assert!(!cache.join("tarballs/acme_erl_base-0.1.0.tar").exists());
    // The log is read from the server's stderr by another thread: wait for the line (a safety
    // net, not a timing assertion).
    let wanted = format!("{}/tarballs/acme_erl_base-0.1.0.tar", upstream.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.lines().iter().any(|l| l.contains(&wanted)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = proxy.lines().join("\n");
    assert!(log.contains(&wanted), "{log}");

    // A good package first (cached), then re-signed with another key upstream.
    let good = fs::read(up.join("packages/acme_erl")).unwrap();
    assert_eq!(proxy.get("/packages/acme_erl").body, good);
    // The cached copy, verified when stored, is served as if the upstream were down, never
    // the refused bytes; the log says why.
    fs::write(up.join("packages/acme_erl"), resigned(&good)).unwrap();
    let response = proxy.get("/packages/acme_erl");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, good);
    assert_eq!(fs::read(cache.join("packages/acme_erl")).unwrap(), good);
    let deadline = Instant::now() + Duration::from_secs(60);
    let logged = |l: &String| {
        l.contains("does not verify") && l.contains("serving the cached packages/acme_erl")
    };
    while !proxy.lines().iter().any(logged) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(proxy.lines().iter().any(logged), "{:?}", proxy.lines());
    // `names` signed by another key, not cached before: refused, never cached.
    let names = fs::read(up.join("names")).unwrap();
    fs::write(up.join("names"), resigned(&names)).unwrap();
    assert_eq!(proxy.get("/names").status, 502);
    assert!(!cache.join("names").exists());

    // Garbage is refused too.
    fs::write(up.join("versions"), b"not gzip").unwrap();
    let response = proxy.get("/versions");
    assert_eq!(response.status, 502);
    assert!(!cache.join("versions").exists());
}

/// A proxy whose upstream was never reachable: 502 with one line; one that never answers:
/// 504. Paths the proxy does not fetch are 404 without an upstream request.
#[test]
fn an_unreachable_or_silent_upstream_gives_502_or_504() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("upstream.pem");
    fs::write(&key, public_key().to_pem(PublicKeyFormat::Spki)).unwrap();
    let cache = tmp.path().join("cache");
    // Port 9 (discard) is closed on loopback here: connections are refused.
    let down = proxy(
        cache.to_str().unwrap(),
        "http://127.0.0.1:9",
        "acme",
        &key,
        &[],
    );
    let response = down.get("/packages/acme_erl");
    assert_eq!(response.status, 502);
    let text = String::from_utf8(response.body).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("cannot be reached"), "{text}");
    assert_eq!(down.get("/tarballs/acme_erl-0.2.0.tar").status, 502);
    assert_eq!(down.get("/other/file").status, 404);
    drop(down);

    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts the first attempt and its retry, reads them and never answers.
    let silent = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { break };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            held.push(stream);
        }
        held
    });
    let proxy = proxy(
        cache.to_str().unwrap(),
        &url,
        "acme",
        &key,
        &["--upstream-timeout=1"],
    );
    let response = proxy.get("/names");
    assert_eq!(response.status, 504);
    let text = String::from_utf8(response.body).unwrap();
    assert!(text.contains("timed out"), "{text}");
    assert_eq!(silent.join().unwrap().len(), 2);
}

/// 50 clients asking at once for a tarball not yet cached cost one upstream GET of it (and
/// one of its package); a second proxy on the same cache directory, asked at the same time,
/// leaves every cached file intact.
#[test]
fn concurrent_misses_cost_one_upstream_request() {
    let upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let proxy1 = proxy(
        cache_arg,
        &upstream.url(),
        "acme",
        &upstream.key_file(),
        &[],
    );
    let expected = fs::read(upstream.dir().join("tarballs/acme_erl-0.2.0.tar")).unwrap();
    let port = proxy1.port;
    let path = "/tarballs/acme_erl-0.2.0.tar".to_string();
    for (_, response) in at_once(vec![(port, path); 50]) {
        assert_eq!(response.status, 200);
        assert_eq!(response.body, expected);
    }
    assert_eq!(upstream.count("/tarballs/acme_erl-0.2.0.tar"), 1);
    assert_eq!(upstream.count("/packages/acme_erl"), 1);

    // The metrics say so: one upstream fetch for the 50 clients, then a cache hit.
    let get = |path: &str| get_once(port, path);
    assert_eq!(get("/tarballs/acme_erl-0.2.0.tar").status, 200);
    let metrics = get("/-/metrics");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let sample = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert_eq!(sample("hexreg_upstream_fetches_total"), Some(1.0), "{text}");
    assert!(
        sample("hexreg_cache_hits_total").is_some_and(|hits| hits >= 1.0),
        "{text}"
    );

    // Two proxies on one cache, each with 10 clients, for the same missing files.
    let proxy2 = proxy(
        cache_arg,
        &upstream.url(),
        "acme",
        &upstream.key_file(),
        &[],
    );
    let ports = [proxy1.port, proxy2.port];
    let requests = (0..20)
        .map(|i| {
            let path = if i % 4 < 2 {
                "/tarballs/acme_erl_base-0.1.0.tar"
            } else {
                "/packages/acme_erl_base"
            };
            (ports[i % 2], path.to_string())
        })
        .collect();
    for (path, response) in at_once(requests) {
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.body,
            fs::read(upstream.dir().join(&path[1..])).unwrap(),
            "{path}"
        );
    }
    for file in ["tarballs/acme_erl_base-0.1.0.tar", "packages/acme_erl_base"] {
        assert_eq!(
            fs::read(cache.join(file)).unwrap(),
            fs::read(upstream.dir().join(file)).unwrap(),
            "{file}"
        );
    }
    // No temporary file left behind by either proxy.
    for dir in ["tarballs", "packages"] {
        for entry in fs::read_dir(cache.join(dir)).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().starts_with('.'), "{name:?}");
        }
    }
}

/// A proxy whose cache is a bucket (moto): a tarball is fetched, verified and stored as an
/// object; a second proxy on the same bucket serves it with the upstream stopped.
#[test]
fn a_proxy_caches_in_a_bucket() {
    let mut upstream = Upstream::start("acme");
    let moto = Moto::start();
    moto.create_bucket("proxy");
    let env = moto.client_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = "s3://proxy/hex";
    let key = upstream.key_file();
    let first = proxy_env(url, &upstream.url(), "acme", &key, &[], &env);
    let expected = fs::read(upstream.dir().join("tarballs/acme_erl-0.2.0.tar")).unwrap();
    let response = first.get("/tarballs/acme_erl-0.2.0.tar");
    assert_eq!(response.status, 200, "{:?}", first.lines());
    assert_eq!(response.body, expected);
    let storage = moto.storage(url);
    use hexreg::storage::Storage as _;
    assert_eq!(
        storage
            .read("tarballs/acme_erl-0.2.0.tar")
            .unwrap()
            .unwrap()
            .bytes,
        expected
    );
    assert!(storage.read("packages/acme_erl").unwrap().is_some());
    assert_eq!(
        storage.read("public_key").unwrap().unwrap().bytes,
        fs::read(&key).unwrap()
    );
    upstream.stop();
    let second = proxy_env(url, "http://127.0.0.1:9", "acme", &key, &[], &env);
    let response = second.get("/tarballs/acme_erl-0.2.0.tar");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, expected);
    assert_eq!(second.get("/packages/acme_erl").status, 200);
    assert_eq!(second.get("/tarballs/acme_erl-0.1.0.tar").status, 502);
}

/// A rebar.lock as rebar3 writes it for acme_erl 0.2.0 (checksums of the fixtures), with the
/// outer checksum of acme_erl_base replaced by `base_outer`.
fn rebar_lock(base_outer: &str) -> String {
    format!(
        "{{\"1.2.0\",\n[{{<<\"acme_erl\">>,{{pkg,<<\"acme_erl\">>,<<\"0.2.0\">>}},0}},\n \
         {{<<\"acme_erl_base\">>,{{pkg,<<\"acme_erl_base\">>,<<\"0.1.0\">>}},1}}]}}.\n[\n\
         {{pkg_hash,[\n {{<<\"acme_erl\">>, <<\"FB45559110CF085E0E074FBAE28206FAC97DA70F42750C1D253C2EAA5E93A741\">>}},\n \
         {{<<\"acme_erl_base\">>, <<\"B2B9EAFF48A3CA2434C42E583DF1296E75E12482A1F03AEBC2B6A644382E55E9\">>}}]}},\n\
         {{pkg_hash_ext,[\n {{<<\"acme_erl\">>, <<\"06D18CBA7F8A11262A823533F289084C1D68366827C81A877A0935C381C2BF99\">>}},\n \
         {{<<\"acme_erl_base\">>, <<\"{base_outer}\">>}}]}}\n].\n"
    )
}

const BASE_OUTER: &str = "F1C252663B9EBB4305154AA05343F25CBDB51E303EC9E0038A04C0332B95CB20";

fn mirror_lock(
    upstream: &Upstream,
    cwd: &Path,
    dest: &str,
    locks: &[&str],
) -> std::process::Output {
    let mut cmd = support::run::command(cwd);
    cmd.env_remove("HEXREG_MIRROR_AUTH")
        .args([
            "mirror",
            dest,
            "--from",
            &upstream.url(),
            "--upstream-name=acme",
        ])
        .arg(format!("--upstream-key={}", upstream.key_file().display()));
    for lock in locks {
        cmd.arg(format!("--only-lock={lock}"));
    }
    cmd.output().unwrap()
}

/// `hexreg mirror --only-lock rebar.lock` copies exactly the pinned releases with the
/// upstream's signed files unchanged; the result is a proxy cache that serves them with the
/// upstream gone (air-gapped use).
#[test]
fn only_lock_mirrors_exactly_what_a_lock_pins_and_warms_a_proxy_cache() {
    let mut upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("rebar.lock"), rebar_lock(BASE_OUTER)).unwrap();
    let out = mirror_lock(&upstream, tmp.path(), "warm", &["rebar.lock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warm = tmp.path().join("warm");
    let mut tarballs: Vec<String> = fs::read_dir(warm.join("tarballs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    tarballs.sort();
    assert_eq!(
        tarballs,
        ["acme_erl-0.2.0.tar", "acme_erl_base-0.1.0.tar"],
        "exactly the pinned releases"
    );
    for file in [
        "packages/acme_erl",
        "packages/acme_erl_base",
        "names",
        "versions",
        "tarballs/acme_erl-0.2.0.tar",
    ] {
        assert_eq!(
            fs::read(warm.join(file)).unwrap(),
            fs::read(upstream.dir().join(file)).unwrap(),
            "{file}"
        );
    }
    // A second run has nothing to write.
    let again = mirror_lock(&upstream, tmp.path(), "warm", &["rebar.lock"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains(": 0 files written"));

    upstream.stop();
    let proxy = proxy(
        warm.to_str().unwrap(),
        "http://127.0.0.1:9",
        "acme",
        &upstream.key_file(),
        &[],
    );
    let response = proxy.get("/tarballs/acme_erl_base-0.1.0.tar");
    assert_eq!(response.status, 200);
    assert_eq!(proxy.get("/packages/acme_erl").status, 200);
}

/// Lock entries the upstream lacks are all named, a checksum the upstream's signed registry
/// does not record is refused, and in either case nothing is written.
#[test]
fn only_lock_names_what_the_upstream_lacks_and_refuses_other_checksums() {
    let upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("mix.lock"),
        "%{\n  \"acme_erl\": {:hex, :acme_erl, \"9.9.9\", \"00\", [:rebar3], [], \"acme\", \"00\"},\n  \
         \"nothere\": {:hex, :nothere, \"1.0.0\", \"00\", [:mix], [], \"acme\", \"00\"},\n  \
         \"other\": {:hex, :other, \"1.0.0\", \"00\", [:mix], [], \"hexpm:org\", \"00\"},\n  \
         \"git\": {:git, \"https://example.invalid/g.git\", \"abc\", []},\n}\n",
    )
    .unwrap();
    let out = mirror_lock(&upstream, tmp.path(), "m", &["mix.lock"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acme_erl 9.9.9 (no such release)"), "{err}");
    assert!(err.contains("nothere 1.0.0 (no package nothere)"), "{err}");
    assert!(!tmp.path().join("m/packages").exists());

    let wrong = "AA".repeat(32);
    fs::write(tmp.path().join("rebar.lock"), rebar_lock(&wrong)).unwrap();
    let out = mirror_lock(&upstream, tmp.path(), "m", &["rebar.lock"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme_erl_base 0.1.0: the lock file records the outer checksum"),
        "{err}"
    );
    assert!(!tmp.path().join("m/tarballs").exists());

    fs::write(tmp.path().join("broken.lock"), "%{\"a\": ").unwrap();
    let out = mirror_lock(&upstream, tmp.path(), "m", &["broken.lock"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--only-lock broken.lock"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Filtered proxies: --only, --only-file, --cooldown, re-signed with the proxy's own key.

/// The upstream's tarballs and one package no selection below reaches.
const WITH_OUTSIDER: [&str; 4] = [
    "acme_erl-0.1.0.tar",
    "acme_erl-0.2.0.tar",
    "acme_erl_base-0.1.0.tar",
    "acme_a-0.1.0.tar",
];

/// The proxy's signing key (not the upstream's) and its public half as the proxy serves it.
fn proxy_key() -> (String, String) {
    let path = other_private_key();
    let key = PrivateKey::from_pem(&fs::read(&path).unwrap()).unwrap();
    (
        format!("--private-key={}", path.display()),
        key.public_key().to_pem(PublicKeyFormat::Pkcs1),
    )
}

fn proxy_public_key() -> hexreg::format::signing::PublicKey {
    PrivateKey::from_pem(&fs::read(other_private_key()).unwrap())
        .unwrap()
        .public_key()
}

/// `names` served by a filtered proxy: verified with the proxy's key for repository `repo`
/// (and refused with the upstream's); the package names.
fn served_names(proxy: &Server, repo: &str) -> Vec<String> {
    let response = proxy.get("/names");
    assert_eq!(response.status, 200, "{:?}", proxy.lines());
    let opened = registry::open(&response.body).unwrap();
    assert!(
        opened.verify(&public_key()).is_err(),
        "signed by the proxy, not the upstream"
    );
    opened.verify(&proxy_public_key()).unwrap();
    registry::decode_names(&opened.payload, repo)
        .unwrap()
        .packages
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// `versions` served by a filtered proxy, verified: each package and its versions.
fn served_versions(proxy: &Server, repo: &str) -> Vec<(String, Vec<String>)> {
    let response = proxy.get("/versions");
    assert_eq!(response.status, 200, "{:?}", proxy.lines());
    let opened = registry::open(&response.body).unwrap();
    opened.verify(&proxy_public_key()).unwrap();
    registry::decode_versions(&opened.payload, repo)
        .unwrap()
        .packages
        .into_iter()
        .map(|p| (p.name, p.versions))
        .collect()
}

/// `packages/NAME` served by a filtered proxy, verified with its key for `repo`: each release's
/// version and `published_at` seconds.
fn served_releases(proxy: &Server, repo: &str, name: &str) -> Vec<(String, Option<i64>)> {
    let response = proxy.get(&format!("/packages/{name}"));
    assert_eq!(response.status, 200, "{:?}", proxy.lines());
    assert!(
        registry::open_package(&response.body, &public_key(), repo, name).is_err(),
        "the upstream's key does not verify the proxy's packages/{name}"
    );
    registry::open_package(&response.body, &proxy_public_key(), repo, name)
        .unwrap()
        .releases
        .into_iter()
        .map(|r| (r.version, r.published_at.map(|t| t.seconds)))
        .collect()
}

fn versions_of(releases: &[(String, Option<i64>)]) -> Vec<&str> {
    releases.iter().map(|(v, _)| v.as_str()).collect()
}

/// `--only acme_erl` serves acme_erl and its dependency acme_erl_base, signed with the proxy's
/// key under `--name`; acme_a, outside the closure, is 404 without an upstream request. rebar3
/// resolves and builds through the proxy with the proxy's key and name, and refuses the
/// proxy's files with the upstream's key.
#[test]
fn only_serves_the_closure_re_signed_and_rebar3_builds_with_the_proxys_key() {
    let upstream = Upstream::start_with("acme", &WITH_OUTSIDER, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (key_arg, key_pem) = proxy_key();
    let proxy = upstream.proxy(&cache, &["--only=acme_erl", "--name=vetted", &key_arg]);
    let served_key = proxy.get("/public_key");
    assert_eq!(served_key.status, 200);
    assert_eq!(String::from_utf8(served_key.body).unwrap(), key_pem);

    assert_eq!(
        served_names(&proxy, "vetted"),
        ["acme_erl", "acme_erl_base"]
    );
    assert_eq!(
        served_versions(&proxy, "vetted"),
        [
            ("acme_erl".to_string(), vec!["0.1.0".into(), "0.2.0".into()]),
            ("acme_erl_base".to_string(), vec!["0.1.0".into()]),
        ]
    );
    assert_eq!(
        versions_of(&served_releases(&proxy, "vetted", "acme_erl")),
        ["0.1.0", "0.2.0"]
    );
    // The upstream's verified bytes are what the cache keeps.
    assert_eq!(
        fs::read(cache.join("packages/acme_erl")).unwrap(),
        fs::read(upstream.dir().join("packages/acme_erl")).unwrap()
    );

    // Outside the closure: 404 with a reason, and never asked upstream.
    for path in [
        "/packages/acme_a",
        "/tarballs/acme_a-0.1.0.tar",
        "/docs/acme_a-0.1.0.tar.gz",
    ] {
        let response = proxy.get(path);
        assert_eq!(response.status, 404, "{path}");
        let text = String::from_utf8(response.body).unwrap();
        assert!(text.contains("not among the packages"), "{path}: {text}");
    }
    assert_eq!(proxy.get("/tarballs/acme_erl-9.9.9.tar").status, 404);
    for path in [
        "/packages/acme_a",
        "/tarballs/acme_a-0.1.0.tar",
        "/docs/acme_a-0.1.0.tar.gz",
        "/tarballs/acme_erl-9.9.9.tar",
    ] {
        assert_eq!(upstream.count(path), 0, "{path}");
    }
    // The upstream has it: only the filter hides it.
    assert_eq!(upstream.server().get("/packages/acme_a").status, 200);
    // No page shows the cache, which holds the upstream's files unfiltered.
    assert_eq!(proxy.get("/").status, 404);

    let Some(rebar3) =
        rebar3_or_skip("only_serves_the_closure_re_signed_and_rebar3_builds_with_the_proxys_key")
    else {
        return;
    };
    // The proxy's key and name: rebar3 resolves acme_erl ~> 0.2 and builds both.
    let sandbox = tmp.path().join("client");
    let project = sandbox.join("myapp");
    write_project(
        &project,
        &named_repo_config("vetted", &proxy.url(), &key_pem),
    );
    compile(&rebar3, &sandbox, &project, &[], &proxy);
    assert_eq!(
        fs::read(cache.join("tarballs/acme_erl-0.2.0.tar")).unwrap(),
        fs::read(upstream.dir().join("tarballs/acme_erl-0.2.0.tar")).unwrap()
    );
    // The upstream's key does not verify what the proxy signed: rebar3 refuses it.
    let upstream_pem = fs::read_to_string(upstream.key_file()).unwrap();
    let sandbox = tmp.path().join("client-upstream-key");
    let project = sandbox.join("myapp");
    write_project(
        &project,
        &named_repo_config("vetted", &proxy.url(), &upstream_pem),
    );
    let (success, report) = run_compile(&rebar3, &sandbox, &project, &[], &proxy);
    assert!(!success, "{report}");
    // rebar3's words for a registry file whose signature does not verify.
    assert!(
        report.contains("deprecated for security reasons") || report.contains("signature"),
        "{report}"
    );
    assert!(
        !project
            .join("_build/default/lib/acme_erl/ebin/acme_erl.beam")
            .exists(),
        "{report}"
    );
}

/// `--cooldown 1d` over an upstream that dates its releases (`hexreg build --published-at`,
/// from the tarballs' times): acme_erl 0.2.0, published just now, is hidden from
/// `packages/acme_erl` and its tarball is 404 without an upstream request; 0.1.0, a year old,
/// is served. Without --only, `names` is the upstream's, re-signed, and `versions` is 404.
#[test]
fn cooldown_hides_releases_younger_than_it() {
    let tmp = tempfile::tempdir().unwrap();
    // The fixture times are from 2024; acme_erl 0.2.0 is made recent before the build.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let upstream = {
        let up = Upstream::start_with("acme", &TARBALLS, &[]);
        support::fixtures::set_mtime(&up.dir().join("tarballs/acme_erl-0.2.0.tar"), now);
        ok(
            up.tmp.path(),
            &[
                "build",
                "up",
                "--name=acme",
                &private_key_arg(),
                "--quiet",
                "--published-at",
            ],
        );
        up
    };
    let dated = registry::open_package(
        &fs::read(upstream.dir().join("packages/acme_erl")).unwrap(),
        &public_key(),
        "acme",
        "acme_erl",
    )
    .unwrap();
    let old = support::fixtures::mtimes()["acme_erl-0.1.0.tar"] as i64;
    assert_eq!(
        dated
            .releases
            .iter()
            .map(|r| r.published_at.map(|t| t.seconds))
            .collect::<Vec<_>>(),
        [Some(old), Some(now as i64)],
        "the upstream dates its releases"
    );

    let cache = tmp.path().join("cache");
    let (key_arg, _) = proxy_key();
    let proxy = upstream.proxy(&cache, &["--cooldown=1d", "--name=vetted", &key_arg]);
    assert_eq!(
        served_releases(&proxy, "vetted", "acme_erl"),
        [("0.1.0".to_string(), Some(old))]
    );
    let response = proxy.get("/tarballs/acme_erl-0.2.0.tar");
    assert_eq!(response.status, 404);
    let text = String::from_utf8(response.body).unwrap();
    assert!(
        text.contains("younger than this proxy's --cooldown"),
        "{text}"
    );
    assert_eq!(upstream.count("/tarballs/acme_erl-0.2.0.tar"), 0);
    let response = proxy.get("/tarballs/acme_erl-0.1.0.tar");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        fs::read(upstream.dir().join("tarballs/acme_erl-0.1.0.tar")).unwrap()
    );
    assert_eq!(
        versions_of(&served_releases(&proxy, "vetted", "acme_erl_base")),
        ["0.1.0"]
    );
    assert_eq!(
        served_names(&proxy, "vetted"),
        ["acme_erl", "acme_erl_base"]
    );
    assert_eq!(proxy.get("/versions").status, 404);

    // The same cache without a filter: the upstream's bytes, 0.2.0 included.
    drop(proxy);
    let plain = upstream.proxy(&cache, &[]);
    assert_eq!(
        plain.get("/packages/acme_erl").body,
        fs::read(upstream.dir().join("packages/acme_erl")).unwrap()
    );
    assert_eq!(plain.get("/tarballs/acme_erl-0.2.0.tar").status, 200);
}

/// `--only-file` (a requirement, a comment) with `HEXREG_ONLY` from the environment: only the
/// releases the requirements allow, and their dependencies; a release outside them is 404
/// without an upstream request. With a TTL of 0, a new upstream release that brings in a new
/// dependency is seen at the next request (the closure is computed again).
#[test]
fn only_file_and_env_select_releases_and_the_closure_follows_the_upstream() {
    let upstream = Upstream::start_with(
        "acme",
        &[
            "acme_erl-0.1.0.tar",
            "acme_erl_base-0.1.0.tar",
            "acme_a-0.1.0.tar",
        ],
        &[],
    );
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("only.txt"),
        "# vetted packages\nacme_erl:~> 0.1 # and what it needs\n",
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    let (key_arg, _) = proxy_key();
    let only_file = format!("--only-file={}", tmp.path().join("only.txt").display());
    let proxy = proxy_env(
        cache.to_str().unwrap(),
        &upstream.url(),
        "acme",
        &upstream.key_file(),
        &[&only_file, "--name=vetted", &key_arg, "--upstream-ttl=0"],
        &[("HEXREG_ONLY", "acme_a")],
    );
    assert_eq!(served_names(&proxy, "vetted"), ["acme_a", "acme_erl"]);
    assert_eq!(proxy.get("/packages/acme_erl_base").status, 404);
    assert_eq!(upstream.count("/packages/acme_erl_base"), 0);

    // acme_erl 0.2.0 appears upstream, depending on acme_erl_base ~> 0.1.
    support::fixtures::copy_tarballs(&upstream.dir(), &["acme_erl-0.2.0.tar"]);
    ok(
        upstream.tmp.path(),
        &["build", "up", "--name=acme", &private_key_arg(), "--quiet"],
    );
    // `~> 0.1` allows 0.2.0 (>= 0.1.0 and < 1.0.0): it comes in, and its dependency with it.
    assert_eq!(
        served_names(&proxy, "vetted"),
        ["acme_a", "acme_erl", "acme_erl_base"]
    );
    assert_eq!(
        versions_of(&served_releases(&proxy, "vetted", "acme_erl")),
        ["0.1.0", "0.2.0"]
    );
    assert_eq!(proxy.get("/tarballs/acme_erl_base-0.1.0.tar").status, 200);
    drop(proxy);

    // A requirement that allows 0.1.0 only: 0.2.0 and acme_erl_base are not served.
    fs::write(tmp.path().join("only.txt"), "acme_erl:~> 0.1.0\n").unwrap();
    let narrow = upstream.proxy(&cache, &[&only_file, "--name=vetted", &key_arg]);
    assert_eq!(served_names(&narrow, "vetted"), ["acme_erl"]);
    assert_eq!(
        versions_of(&served_releases(&narrow, "vetted", "acme_erl")),
        ["0.1.0"]
    );
    let before = upstream.count("/tarballs/acme_erl-0.2.0.tar");
    let response = narrow.get("/tarballs/acme_erl-0.2.0.tar");
    assert_eq!(response.status, 404);
    let text = String::from_utf8(response.body).unwrap();
    assert!(text.contains("not among the releases"), "{text}");
    assert_eq!(upstream.count("/tarballs/acme_erl-0.2.0.tar"), before);
}

/// Runs `hexreg serve` expecting it to refuse to start with exit status `code` (2: options
/// that do not go together; 1: a value or file that is wrong); returns its stderr.
fn serve_refused(dir: &Path, args: &[&str], code: i32) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hexreg"))
        .arg("serve")
        .arg(dir)
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env_remove("HEXREG_AUTH")
        .stdin(Stdio::null())
        .output()
        .expect("run hexreg serve");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    stderr
}

/// A filter needs --name and --private-key, each named when missing, and --upstream; a key
/// without a filter stays refused; a bad duration or selection is named.
#[test]
fn filters_need_name_key_and_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (key_arg, _) = proxy_key();
    let up = ["--upstream", "http://127.0.0.1:9"];
    let with = |extra: &[&str]| -> Vec<String> {
        up.iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let refused = |args: Vec<String>, code: i32| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serve_refused(&cache, &args, code)
    };
    let err = refused(with(&["--only=acme_erl", &key_arg]), 2);
    assert!(err.contains("--name NAME"), "{err}");
    let err = refused(with(&["--cooldown=7d", "--name=vetted"]), 2);
    assert!(err.contains("--private-key KEY"), "{err}");
    let err = refused(with(&[&key_arg]), 2);
    assert!(
        err.contains("--private-key with --upstream")
            && err.contains("only with --only, --only-file or --cooldown"),
        "{err}"
    );
    let err = refused(with(&["--cooldown=7x", "--name=vetted", &key_arg]), 1);
    assert!(err.contains("--cooldown 7x: not a duration"), "{err}");
    let err = refused(with(&["--only=Bad", "--name=vetted", &key_arg]), 1);
    assert!(err.contains("--only Bad"), "{err}");
    let err = refused(
        with(&["--only-file=missing.txt", "--name=vetted", &key_arg]),
        1,
    );
    assert!(err.contains("--only-file missing.txt"), "{err}");
    // The Hex API would read the unfiltered cache.
    let err = refused(
        with(&["--only=acme_erl", "--name=vetted", &key_arg, "--keys=keys"]),
        2,
    );
    assert!(err.contains("--keys with a filtered proxy"), "{err}");

    // Without --upstream, a filter has nothing to filter.
    let (_keep, public) = support::fixtures::temp_public(&["acme_a-0.1.0.tar"]);
    let err = serve_refused(&public, &["--only=acme_a", "--name=vetted", &key_arg], 2);
    assert!(
        err.contains("--only, --only-file and --cooldown filter the caching proxy")
            && err.contains("--upstream URL"),
        "{err}"
    );
    let err = serve_refused(&public, &["--cooldown=1d"], 2);
    assert!(err.contains("--upstream URL"), "{err}");
}
