//! The proxy as a service: its Hex API and pages over what it caches, its TTL and conditional
//! revalidation, files of another repository or package refused, `docs/` and `installs/`
//! passed through and kept, a filtered proxy's single flight, two proxies on one bucket.

use super::*;

fn json_get(server: &Server, path: &str, key: &str) -> support::hexreg_serve::HttpResponse {
    server.request(
        "GET",
        path,
        &[("authorization", key), ("accept", "application/json")],
    )
}

/// Sends GET `path` until `done` holds, for at most 20 s (a proxy lists its cache again every
/// 2 s): a safety net, not a timing assertion.
fn until(
    server: &Server,
    path: &str,
    key: &str,
    done: impl Fn(&support::hexreg_serve::HttpResponse) -> bool,
) -> support::hexreg_serve::HttpResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = json_get(server, path, key);
        if done(&answer) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A proxy with read keys on a fresh cache: its API describes the upstream's packages
/// (fetching `packages/NAME` as a client would, once), refuses changes naming why, and its
/// pages list what the cache holds, starting from an empty cache.
#[test]
fn a_proxy_with_keys_reads_the_upstream_through_its_api_and_lists_its_cache() {
    let upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    let reader = ok(tmp.path(), &["key", "add", "--keys", "keys", "ci"])
        .trim()
        .to_string();
    let writer = ok(
        tmp.path(),
        &["key", "add", "--keys", "keys", "w", "--write"],
    )
    .trim()
    .to_string();
    let keys = format!("--keys={}", tmp.path().join("keys").display());
    let cache = tmp.path().join("cache");
    let proxy = upstream.proxy(&cache, &[&keys]);
    // Credentials are needed for everything.
    assert_eq!(proxy.get("/names").status, 401);
    assert_eq!(proxy.get("/").status, 401);
    let home = json_get(&proxy, "/", &reader);
    assert_eq!(home.status, 200);
    let html = String::from_utf8_lossy(&home.body).into_owned();
    assert!(html.contains("Nothing is cached yet"), "{html}");

    let r = json_get(&proxy, "/api/packages/acme_erl", &reader);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("\"0.1.0\"") && body.contains("\"0.2.0\""),
        "{body}"
    );
    let r = json_get(&proxy, "/api/packages/acme_erl/releases/0.2.0", &reader);
    assert_eq!(r.status, 200);
    assert_eq!(
        json_get(&proxy, "/api/packages/acme_nope", &reader).status,
        404
    );
    // Within the TTL the API's second read asked the upstream nothing more.
    assert_eq!(upstream.count("/packages/acme_erl"), 1);
    assert!(cache.join("packages/acme_erl").is_file());

    // Changes are refused, saying where to make them.
    let tarball = fs::read(upstream.dir().join("tarballs/acme_erl-0.2.0.tar")).unwrap();
    let r = proxy.post(
        "/api/publish",
        &[
            ("authorization", &writer),
            ("accept", "application/json"),
            ("content-type", "application/octet-stream"),
        ],
        &tarball,
    );
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("caching proxy"));

    // The list shows what is cached: acme_erl, not acme_erl_base (never fetched).
    let home = until(&proxy, "/", &reader, |r| {
        String::from_utf8_lossy(&r.body).contains("/-/packages/acme_erl\"")
    });
    let html = String::from_utf8_lossy(&home.body).into_owned();
    assert!(html.contains("/-/packages/acme_erl\""), "{html}");
    assert!(!html.contains("/-/packages/acme_erl_base\""), "{html}");
    assert!(html.contains("1 package "), "{html}");
    let page = json_get(&proxy, "/-/packages/acme_erl", &reader);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("0.2.0"));
}

/// With --name, a proxy's API must use the upstream's repository name.
#[test]
fn a_proxy_api_under_another_name_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("keys"), "").unwrap();
    let keys = format!("--keys={}", tmp.path().join("keys").display());
    let err = serve_refused(
        &tmp.path().join("cache"),
        &["--upstream", "http://127.0.0.1:9", &keys, "--name=acme"],
        2,
    );
    assert!(
        err.contains("--name acme with --upstream") && err.contains("hexpm"),
        "{err}"
    );
}

/// Within the TTL a registry file is served without asking the upstream; past it, the proxy
/// asks with the ETag it was given and the upstream's 304 keeps the cached bytes.
#[test]
fn registry_files_are_served_within_the_ttl_and_revalidated_with_a_conditional_get() {
    let upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let long = upstream.proxy(&cache, &["--upstream-ttl=1h"]);
    let expected = fs::read(upstream.dir().join("packages/acme_erl")).unwrap();
    for _ in 0..3 {
        assert_eq!(long.get("/packages/acme_erl").body, expected);
    }
    assert_eq!(upstream.count("/packages/acme_erl"), 1);
    drop(long);

    let zero = upstream.proxy(&cache, &["--upstream-ttl=0"]);
    for _ in 0..3 {
        assert_eq!(zero.get("/packages/acme_erl").body, expected);
    }
    // A new process knows no ETag: its first request is a full GET, the next two are
    // conditional and answered 304.
    assert_eq!(upstream.count("/packages/acme_erl"), 4);
    let not_modified = upstream
        .server()
        .lines()
        .iter()
        .filter(|l| l.starts_with("GET /packages/acme_erl 304 "))
        .count();
    assert_eq!(not_modified, 2, "{:?}", upstream.server().lines());
}

/// An upstream whose files are of another repository, or whose `packages/NAME` is another
/// package's: refused (502) and not cached.
#[test]
fn files_of_another_repository_or_package_are_refused() {
    let upstream = Upstream::start("other");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = upstream.proxy(&cache, &[]);
    let r = first.get("/packages/acme_erl");
    assert_eq!(r.status, 502);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(text.contains("refused") && text.contains("other"), "{text}");
    assert!(!cache.join("packages/acme_erl").exists());
    assert_eq!(first.get("/names").status, 502);
    assert!(!cache.join("names").exists());
    drop(first);

    let upstream = Upstream::start("acme");
    let up = upstream.dir();
    fs::copy(
        up.join("packages/acme_erl_base"),
        up.join("packages/acme_erl"),
    )
    .unwrap();
    let proxy = upstream.proxy(&cache, &[]);
    let r = proxy.get("/packages/acme_erl");
    assert_eq!(r.status, 502);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(text.contains("acme_erl_base"), "{text}");
    assert!(!cache.join("packages/acme_erl").exists());
    // Its tarballs cannot be checked against it either.
    assert_eq!(proxy.get("/tarballs/acme_erl-0.2.0.tar").status, 502);
    assert!(!cache.join("tarballs/acme_erl-0.2.0.tar").exists());
}

/// `docs/...` and `installs/hex-1.x.csv` (with `.signed`) pass through unchanged, are kept,
/// and are served from the cache once the upstream is gone.
#[test]
fn docs_and_installs_pass_through_and_outlive_the_upstream() {
    let mut upstream = Upstream::start("acme");
    let up = upstream.dir();
    let files = [
        ("docs/acme_erl-0.2.0.tar.gz", b"docs bytes".to_vec()),
        ("installs/hex-1.x.csv", b"2.5.1,abc,1.17.0\n".to_vec()),
        ("installs/hex-1.x.csv.signed", b"c2lnbmF0dXJl".to_vec()),
    ];
    for (rel, bytes) in &files {
        fs::create_dir_all(up.join(rel).parent().unwrap()).unwrap();
        fs::write(up.join(rel), bytes).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = upstream.proxy(&cache, &[]);
    for (rel, bytes) in &files {
        let r = first.get(&format!("/{rel}"));
        assert_eq!(r.status, 200, "{rel}");
        assert_eq!(&r.body, bytes, "{rel}");
        assert_eq!(&fs::read(cache.join(rel)).unwrap(), bytes, "{rel} is kept");
    }
    assert_eq!(first.get("/docs/acme_erl-0.1.0.tar.gz").status, 404);
    upstream.stop();
    drop(first);
    let second = proxy(
        cache.to_str().unwrap(),
        "http://127.0.0.1:9",
        "acme",
        &upstream.key_file(),
        &["--upstream-ttl=0"],
    );
    for (rel, bytes) in &files {
        let r = second.get(&format!("/{rel}"));
        assert_eq!(r.status, 200, "{rel}");
        assert_eq!(&r.body, bytes, "{rel}");
    }
}

/// 50 clients asking a filtered proxy at once for a package it has not fetched cost one
/// upstream GET of it, as an unfiltered proxy's do.
#[test]
fn a_filtered_proxys_concurrent_misses_cost_one_upstream_request() {
    let upstream = Upstream::start("acme");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (key_arg, _) = proxy_key();
    let proxy = upstream.proxy(&cache, &["--cooldown=1d", "--name=vetted", &key_arg]);
    let requests = (0..50)
        .map(|i| {
            let path = if i % 2 == 0 {
                "/packages/acme_erl"
            } else {
                "/tarballs/acme_erl_base-0.1.0.tar"
            };
            (proxy.port, path.to_string())
        })
        .collect();
    for (path, response) in at_once(requests) {
        assert_eq!(response.status, 200, "{path}");
    }
    assert_eq!(upstream.count("/packages/acme_erl"), 1);
    assert_eq!(upstream.count("/packages/acme_erl_base"), 1);
    assert_eq!(upstream.count("/tarballs/acme_erl_base-0.1.0.tar"), 1);
}

/// Two proxies on one bucket, asked at once for the same missing files: every answer is the
/// upstream's bytes and the bucket holds them byte for byte.
#[test]
fn two_proxies_on_one_bucket_at_once() {
    let upstream = Upstream::start("acme");
    let moto = Moto::start();
    moto.create_bucket("shared");
    let env = moto.client_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = "s3://shared/hex";
    let key = upstream.key_file();
    let a = proxy_env(url, &upstream.url(), "acme", &key, &[], &env);
    let b = proxy_env(url, &upstream.url(), "acme", &key, &[], &env);
    let files = [
        "tarballs/acme_erl-0.2.0.tar",
        "tarballs/acme_erl_base-0.1.0.tar",
        "packages/acme_erl",
        "packages/acme_erl_base",
    ];
    let ports = [a.port, b.port];
    let requests = (0..24)
        .map(|i| (ports[i % 2], format!("/{}", files[(i / 2) % files.len()])))
        .collect();
    for (path, response) in at_once(requests) {
        assert_eq!(response.status, 200, "{path}");
        let expected = fs::read(upstream.dir().join(&path[1..])).unwrap();
        assert_eq!(response.body, expected, "{path}");
    }
    let storage = moto.storage(url);
    use hexreg::storage::Storage as _;
    for file in files {
        assert_eq!(
            storage.read(file).unwrap().unwrap().bytes,
            fs::read(upstream.dir().join(file)).unwrap(),
            "{file}"
        );
    }
}
