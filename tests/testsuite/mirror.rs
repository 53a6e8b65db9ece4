//! `hexreg mirror` against an upstream that is a `hexreg serve` on loopback, serving a registry
//! whose public key is given in SPKI form (`-----BEGIN PUBLIC KEY-----`), as hex.pm's is.
//! Requests are counted from the server's request log.

use crate::support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hexreg::format::registry;
use hexreg::format::signing::{PrivateKey, PublicKey, PublicKeyFormat};
use support::files::registry_files;
use support::fixtures::{fixtures, other_private_key, public_key};
use support::hexreg_serve::Server;
use support::package::Package;
use support::run::{command, ok, private_key_arg};

/// Every fixture tarball.
fn fixture_tarballs() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures().join("tarballs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    names.sort();
    names
}

/// An upstream: `tmp/up`, a registry of repository `hexpm` signed with the fixture key, built
/// from the fixture tarballs, served on loopback; the SPKI public key in `tmp/upstream.pem`.
struct Upstream {
    tmp: tempfile::TempDir,
    server: Server,
}

impl Upstream {
    fn start() -> Upstream {
        let tmp = tempfile::tempdir().unwrap();
        let up = tmp.path().join("up");
        let names = fixture_tarballs();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        support::fixtures::copy_tarballs(&up, &names);
        let upstream = Upstream::serve(tmp);
        upstream.rebuild();
        upstream
    }

    /// An upstream of the given packages only.
    fn of(packages: &[Package]) -> Upstream {
        let tmp = tempfile::tempdir().unwrap();
        for p in packages {
            p.publish(&tmp.path().join("up"));
        }
        let upstream = Upstream::serve(tmp);
        upstream.rebuild();
        upstream
    }

    fn serve(tmp: tempfile::TempDir) -> Upstream {
        let spki = public_key().to_pem(PublicKeyFormat::Spki);
        assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----"));
        fs::write(tmp.path().join("upstream.pem"), spki).unwrap();
        fs::create_dir_all(tmp.path().join("up")).unwrap();
        let server = Server::start(&tmp.path().join("up"), &[], &[]);
        Upstream { tmp, server }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("up")
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn key_file(&self) -> PathBuf {
        self.tmp.path().join("upstream.pem")
    }

    /// `hexreg build up --name hexpm` with the fixture key.
    fn rebuild(&self) {
        ok(
            self.root(),
            &["build", "up", "--name=hexpm", &private_key_arg(), "--quiet"],
        );
    }

    /// `hexreg mirror DEST --from URL --upstream-key upstream.pem EXTRA...`, run in the
    /// temporary directory.
    fn mirror(&self, dest: &str, extra: &[&str]) -> Output {
        self.mirror_from(&self.server.url(), dest, extra)
    }

    fn mirror_from(&self, url: &str, dest: &str, extra: &[&str]) -> Output {
        let key = self.key_file();
        command(self.root())
            .env_remove("HEXREG_MIRROR_AUTH")
            .args(["mirror", dest, "--from", url, "--upstream-key"])
            .arg(&key)
            .args(extra)
            .output()
            .unwrap()
    }

    /// Sends a request for a sentinel path and waits until the server has logged it, so that
    /// every earlier request is logged; the index of its line.
    fn sentinel(&self) -> usize {
        static SENTINEL: AtomicUsize = AtomicUsize::new(0);
        let sentinel = format!(
            "/mirror-test-sentinel-{}",
            SENTINEL.fetch_add(1, Ordering::Relaxed)
        );
        assert_eq!(self.server.get(&sentinel).status, 404);
        // A safety net against a server that stopped logging, not a timing assertion.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(i) = self
                .server
                .lines()
                .iter()
                .position(|l| l.contains(&sentinel))
            {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel request was never logged"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The requests (`(path, status)`) the server logged from line `from` on.
    fn requests_since(&self, from: usize) -> Vec<(String, u16)> {
        let end = self.sentinel();
        self.server.lines()[from.min(end)..end]
            .iter()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let (method, path, status) = (words.next()?, words.next()?, words.next()?);
                let status: u16 = status.parse().ok()?;
                (method == "GET" && !path.starts_with("/mirror-test-sentinel-"))
                    .then(|| (path.to_string(), status))
            })
            .collect()
    }

    /// Where the next run's log lines start: after every request logged so far.
    fn log_len(&self) -> usize {
        self.sentinel() + 1
    }
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "hexreg mirror failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "hexreg mirror should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file of a registry directory, tarballs included, the mirror's state left out.
fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = registry_files(dir);
    files.retain(|path, _| !path.starts_with(".hexreg"));
    if let Ok(entries) = fs::read_dir(dir.join("tarballs")) {
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(format!("tarballs/{name}"), fs::read(entry.path()).unwrap());
        }
    }
    files
}

/// `all_files` without `public_key` (a full mirror writes the key it was given, in its form).
fn signed_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = all_files(dir);
    files.remove("public_key");
    files
}

fn other_public_key() -> PublicKey {
    PrivateKey::from_pem(&fs::read(other_private_key()).unwrap())
        .unwrap()
        .public_key()
}

fn filtered_args(only: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = only.iter().map(|o| format!("--only={o}")).collect();
    args.push("--name=hexpm".into());
    args.push(format!("--private-key={}", other_private_key().display()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn full_mirror_keeps_upstream_files_byte_for_byte_and_verifies() {
    let upstream = Upstream::start();
    let stdout = succeeded(&upstream.mirror("mirror", &[]));
    let mirror = upstream.root().join("mirror");
    assert_eq!(signed_files(&mirror), signed_files(&upstream.dir()));
    assert!(
        stdout.contains(&format!("{} tarballs downloaded", fixture_tarballs().len())),
        "{stdout}"
    );
    // The mirror's public_key is upstream's key: `hexreg verify` with it finds all sound.
    let verified = ok(upstream.root(), &["verify", "mirror", "--name=hexpm"]);
    assert!(verified.starts_with("ok: "), "{verified}");
    assert_eq!(
        PublicKey::from_pem(&fs::read(mirror.join("public_key")).unwrap()).unwrap(),
        public_key()
    );
    // Served, the mirror never shows its state.
    assert!(mirror.join(".hexreg-mirror/state").is_file());
    let served = Server::start(&mirror, &["--quiet"], &[]);
    assert_eq!(served.get("/.hexreg-mirror/state").status, 404);
    assert_eq!(
        served.get("/names").body,
        fs::read(upstream.dir().join("names")).unwrap()
    );
}

#[test]
fn a_no_op_rerun_downloads_nothing() {
    let upstream = Upstream::start();
    succeeded(&upstream.mirror("mirror", &[]));
    let before = all_files(&upstream.root().join("mirror"));
    let from = upstream.log_len();
    let stdout = succeeded(&upstream.mirror("mirror", &[]));
    let requests = upstream.requests_since(from);
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|(path, status)| *status == 304 && !path.starts_with("/tarballs/")),
        "a no-op rerun fetched something: {requests:?}"
    );
    // names, versions and one packages/NAME per package: each asked once, conditionally.
    let packages = fs::read_dir(upstream.dir().join("packages"))
        .unwrap()
        .count();
    assert_eq!(requests.len(), 2 + packages, "{requests:?}");
    assert!(stdout.contains("0 tarballs downloaded"), "{stdout}");
    assert_eq!(all_files(&upstream.root().join("mirror")), before);

    // The same for a filtered mirror.
    let args = filtered_args(&["acme_erl"]);
    succeeded(&upstream.mirror("filtered", &strs(&args)));
    let from = upstream.log_len();
    succeeded(&upstream.mirror("filtered", &strs(&args)));
    let requests = upstream.requests_since(from);
    assert_eq!(requests.len(), 3, "names and two packages: {requests:?}");
    assert!(
        requests.iter().all(|(_, status)| *status == 304),
        "{requests:?}"
    );
}

/// app 2.0.0 needs lib ~> 2.0 and, optionally, opt; lib 2.0.0 needs base ~> 0.1.
fn closure_corpus() -> Vec<Package> {
    vec![
        Package::new("app", "1.0.0").dep("lib", "~> 1.0"),
        Package::new("app", "2.0.0")
            .dep("lib", "~> 2.0")
            .optional_dep("opt", "~> 0.1"),
        Package::new("lib", "1.0.0"),
        Package::new("lib", "1.1.0"),
        Package::new("lib", "2.0.0").dep("base", "~> 0.1"),
        Package::new("opt", "0.1.0"),
        Package::new("opt", "1.0.0"),
        Package::new("base", "0.1.0"),
        Package::new("unrelated", "1.0.0"),
    ]
}

fn mirrored_tarballs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("tarballs"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn mirrored_package(dir: &Path, name: &str) -> hexreg::format::proto::package::Package {
    let bytes = fs::read(dir.join("packages").join(name)).unwrap();
    registry::open_package(&bytes, &other_public_key(), "hexpm", name).unwrap()
}

#[test]
fn filtered_mirror_holds_the_closure_re_signed_with_retirements() {
    let upstream = Upstream::of(&closure_corpus());
    ok(
        upstream.root(),
        &[
            "retire",
            "up",
            "lib",
            "2.0.0",
            "--reason=security",
            "--message=use 2.0.1",
            "--name=hexpm",
            &private_key_arg(),
            "-q",
        ],
    );
    let mirror = upstream.root().join("mirror");
    succeeded(&upstream.mirror("mirror", &strs(&filtered_args(&["app:~> 2.0"]))));
    assert_eq!(
        mirrored_tarballs(&mirror),
        [
            "app-2.0.0.tar",
            "base-0.1.0.tar",
            "lib-2.0.0.tar",
            "opt-0.1.0.tar"
        ]
    );
    // A registry of its own: signed with the mirror's key, every tarball matching.
    let verified = ok(upstream.root(), &["verify", "mirror", "--name=hexpm"]);
    assert!(
        verified.starts_with("ok: 4 packages, 4 releases"),
        "{verified}"
    );
    assert_eq!(
        PublicKey::from_pem(&fs::read(mirror.join("public_key")).unwrap()).unwrap(),
        other_public_key()
    );
    let lib = mirrored_package(&mirror, "lib");
    let versions: Vec<&str> = lib.releases.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["2.0.0"]);
    let retired = lib.releases[0]
        .retired
        .as_ref()
        .expect("retirement carried over");
    assert_eq!(retired.message.as_deref(), Some("use 2.0.1"));
    // Upstream's tarballs, byte for byte.
    for file in mirrored_tarballs(&mirror) {
        assert_eq!(
            fs::read(mirror.join("tarballs").join(&file)).unwrap(),
            fs::read(upstream.dir().join("tarballs").join(&file)).unwrap(),
            "{file}"
        );
    }

    // Widening the selection (from a file) adds app 1.0.0 and the lib 1.x it allows.
    fs::write(upstream.root().join("only.txt"), "# every app\napp\n").unwrap();
    let mut args = filtered_args(&[]);
    args.push("--only-file=only.txt".into());
    succeeded(&upstream.mirror("mirror", &strs(&args)));
    assert_eq!(
        mirrored_tarballs(&mirror),
        [
            "app-1.0.0.tar",
            "app-2.0.0.tar",
            "base-0.1.0.tar",
            "lib-1.0.0.tar",
            "lib-1.1.0.tar",
            "lib-2.0.0.tar",
            "opt-0.1.0.tar"
        ]
    );

    // Narrowing it removes what is no longer kept, index first.
    let out = succeeded(&upstream.mirror("mirror", &strs(&filtered_args(&["unrelated"]))));
    assert_eq!(mirrored_tarballs(&mirror), ["unrelated-1.0.0.tar"]);
    assert!(!mirror.join("packages/app").exists(), "{out}");
    assert!(!mirror.join(".hexreg-mirror/upstream/packages/app").exists());
    assert!(
        mirror
            .join(".hexreg-mirror/upstream/packages/unrelated")
            .is_file()
    );
    let verified = ok(upstream.root(), &["verify", "mirror", "--name=hexpm"]);
    assert!(
        verified.starts_with("ok: 1 packages, 1 releases"),
        "{verified}"
    );
}

#[test]
fn a_selection_nothing_satisfies_is_refused() {
    let upstream = Upstream::start();
    let err = failed(&upstream.mirror("mirror", &strs(&filtered_args(&["acme_a:~> 9.0"]))));
    assert!(
        err.contains("acme_a:~> 9.0: no release of acme_a satisfies it"),
        "{err}"
    );
    let err = failed(&upstream.mirror("mirror", &strs(&filtered_args(&["nope"]))));
    assert!(err.contains("upstream has no package nope"), "{err}");
    assert!(!upstream.root().join("mirror/names").exists());
    // A full mirror takes no signing key; a filtered one needs one.
    let err = failed(&upstream.mirror("mirror", &["--name=hexpm"]));
    assert!(err.contains("--only"), "{err}");
    let err = failed(&upstream.mirror("mirror", &["--only=acme_a"]));
    assert!(err.contains("--private-key"), "{err}");
}

#[test]
fn tampered_registry_files_are_refused_and_change_nothing() {
    let upstream = Upstream::start();
    succeeded(&upstream.mirror("mirror", &[]));
    let mirror = upstream.root().join("mirror");
    let before = fs::read_dir(&mirror)
        .map(|_| registry_files(&mirror))
        .unwrap();
    let url = upstream.server.url();
    let package = upstream.dir().join("packages/acme_erl");
    let genuine = fs::read(&package).unwrap();

    // Signed by another key.
    let other = tempfile::tempdir().unwrap();
    support::fixtures::copy_tarballs(
        &other.path().join("public"),
        &["acme_erl-0.1.0.tar", "acme_erl-0.2.0.tar"],
    );
    ok(
        other.path(),
        &[
            "build",
            "public",
            "--name=hexpm",
            &format!("--private-key={}", other_private_key().display()),
            "-q",
        ],
    );
    fs::copy(other.path().join("public/packages/acme_erl"), &package).unwrap();
    let err = failed(&upstream.mirror("mirror", &[]));
    assert!(
        err.contains(&format!("refused {url}/packages/acme_erl"))
            && err.contains("signature that does not verify"),
        "{err}"
    );
    assert_eq!(registry_files(&mirror), before);

    // Genuinely signed, but another package's file.
    fs::copy(upstream.dir().join("packages/acme_erl_base"), &package).unwrap();
    let err = failed(&upstream.mirror("mirror", &[]));
    assert!(
        err.contains(&format!("{url}/packages/acme_erl"))
            && err.contains("describes package `acme_erl_base`"),
        "{err}"
    );
    assert_eq!(registry_files(&mirror), before);

    // Another repository's (a mirror expecting `acme`).
    fs::write(&package, &genuine).unwrap();
    let err = failed(&upstream.mirror("other", &["--upstream-name=acme"]));
    assert!(
        err.contains(&format!("{url}/names")) && err.contains("repository `hexpm`"),
        "{err}"
    );

    // `versions` of another registry (genuinely signed) that lists other packages.
    let versions = upstream.dir().join("versions");
    let genuine_versions = fs::read(&versions).unwrap();
    let small = tempfile::tempdir().unwrap();
    support::fixtures::copy_tarballs(&small.path().join("public"), &["acme_erl-0.2.0.tar"]);
    ok(
        small.path(),
        &["build", "public", "--name=hexpm", &private_key_arg(), "-q"],
    );
    fs::copy(small.path().join("public/versions"), &versions).unwrap();
    let err = failed(&upstream.mirror("mirror", &[]));
    assert!(
        err.contains(&format!(
            "{url}/names and {url}/versions do not list the same packages"
        )),
        "{err}"
    );
    assert_eq!(registry_files(&mirror), before);
    fs::write(&versions, genuine_versions).unwrap();

    // Garbage.
    fs::write(upstream.dir().join("names"), b"<html>oops</html>").unwrap();
    let err = failed(&upstream.mirror("mirror", &[]));
    assert!(
        err.contains(&format!("refused {url}/names")) && err.contains("gzip"),
        "{err}"
    );
    assert_eq!(registry_files(&mirror), before);
}

#[test]
fn a_tampered_tarball_is_refused_and_not_kept() {
    let upstream = Upstream::start();
    let tarball = upstream.dir().join("tarballs/acme_erl_base-0.1.0.tar");
    fs::write(&tarball, Package::new("acme_erl_base", "0.1.0").tarball()).unwrap();
    let err = failed(&upstream.mirror("mirror", &strs(&filtered_args(&["acme_erl"]))));
    let url = format!("{}/tarballs/acme_erl_base-0.1.0.tar", upstream.server.url());
    assert!(
        err.contains(&url) && err.contains("sha256 is") && err.contains("records"),
        "{err}"
    );
    let mirror = upstream.root().join("mirror");
    assert!(!mirror.join("names").exists() && !mirror.join("packages").exists());
    assert!(!mirror.join("tarballs/acme_erl_base-0.1.0.tar").exists());
}

/// Adds `n` packages to the upstream and rebuilds it; their tarball file names.
fn grow(upstream: &Upstream, n: usize) -> Vec<String> {
    let added: Vec<String> = (0..n)
        .map(|i| {
            let p = Package::new(&format!("new_{i:03}"), "1.0.0").dep("acme_erl_base", "~> 0.1");
            p.publish(&upstream.dir());
            p.file_name()
        })
        .collect();
    upstream.rebuild();
    added
}

#[test]
fn an_upstream_failing_mid_sync_leaves_the_mirror_intact_and_the_next_run_completes_it() {
    let upstream = Upstream::start();
    succeeded(&upstream.mirror("mirror", &[]));
    let mirror = upstream.root().join("mirror");
    let before = registry_files(&mirror);

    // Upstream grows, but one of the new tarballs cannot be fetched (404).
    let added = grow(&upstream, 20);
    let missing = upstream.dir().join("tarballs").join(&added[10]);
    let kept_aside = fs::read(&missing).unwrap();
    fs::remove_file(&missing).unwrap();
    let from = upstream.log_len();
    let err = failed(&upstream.mirror("mirror", &["--retries=0"]));
    assert!(
        err.contains(&format!(
            "{}/tarballs/{} answered HTTP 404",
            upstream.server.url(),
            added[10]
        )),
        "{err}"
    );
    assert_eq!(
        registry_files(&mirror),
        before,
        "the failed run changed the registry"
    );
    ok(upstream.root(), &["verify", "mirror", "--name=hexpm"]);

    // Upstream recovers: the next run completes the mirror, fetching no tarball twice.
    fs::write(&missing, kept_aside).unwrap();
    succeeded(&upstream.mirror("mirror", &[]));
    assert_eq!(signed_files(&mirror), signed_files(&upstream.dir()));
    let requests = upstream.requests_since(from);
    let mut fetched: BTreeMap<&str, usize> = BTreeMap::new();
    for (path, status) in &requests {
        if path.starts_with("/tarballs/") && *status == 200 {
            *fetched.entry(path.as_str()).or_default() += 1;
        }
    }
    assert_eq!(fetched.len(), added.len(), "{requests:?}");
    assert!(
        fetched.values().all(|n| *n == 1),
        "a tarball was fetched twice: {fetched:?}"
    );
}

#[test]
fn a_stopped_upstream_changes_nothing() {
    let upstream = Upstream::start();
    succeeded(&upstream.mirror("mirror", &[]));
    let mirror = upstream.root().join("mirror");
    let before = all_files(&mirror);
    let url = upstream.server.url();
    let Upstream { tmp, server } = upstream;
    drop(server);
    let key = tmp.path().join("upstream.pem");
    let out = command(tmp.path())
        .args([
            "mirror",
            "mirror",
            "--from",
            &url,
            "--retries=1",
            "--upstream-key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains(&format!("cannot fetch {url}/names")), "{err}");
    assert_eq!(all_files(&mirror), before);
}

#[test]
fn a_run_killed_at_any_moment_leaves_a_sound_mirror_and_the_next_completes_it() {
    let upstream = Upstream::start();
    succeeded(&upstream.mirror("mirror", &[]));
    let mirror = upstream.root().join("mirror");
    let old_names = fs::read(mirror.join("names")).unwrap();
    grow(&upstream, 150);

    let from = upstream.log_len();
    let mut child = command(upstream.root())
        .args([
            "mirror",
            "mirror",
            "--from",
            &upstream.server.url(),
            "--jobs=2",
            "--upstream-key",
        ])
        .arg(upstream.key_file())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it is downloading tarballs (or whenever it is, if it already finished).
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none()
        && Instant::now() < deadline
        && !upstream.server.lines()[from..]
            .iter()
            .any(|l| l.contains("/tarballs/new_"))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().unwrap();

    // Clients see either the previous mirror or the new one, never a broken one.
    let verified = ok(upstream.root(), &["verify", "mirror", "--name=hexpm"]);
    assert!(verified.starts_with("ok: "), "{verified}");
    let names = fs::read(mirror.join("names")).unwrap();
    assert!(names == old_names || names == fs::read(upstream.dir().join("names")).unwrap());

    succeeded(&upstream.mirror("mirror", &[]));
    assert_eq!(signed_files(&mirror), signed_files(&upstream.dir()));
}

#[test]
fn credentials_come_from_the_url_or_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path().join("up");
    support::fixtures::copy_tarballs(&up, &["acme_erl-0.2.0.tar", "acme_erl_base-0.1.0.tar"]);
    let upstream = Upstream {
        server: Server::start(&up, &["--auth", "mirror:s3cret"], &[]),
        tmp,
    };
    fs::write(
        upstream.key_file(),
        public_key().to_pem(PublicKeyFormat::Spki),
    )
    .unwrap();
    upstream.rebuild();
    let port = upstream.server.port;

    let err = failed(&upstream.mirror("mirror", &[]));
    assert!(
        err.contains("answered HTTP 401") && err.contains("HEXREG_MIRROR_AUTH"),
        "{err}"
    );

    let with_user = format!("http://mirror:s3cret@127.0.0.1:{port}");
    let stdout = succeeded(&upstream.mirror_from(&with_user, "mirror", &[]));
    // The credentials are never shown.
    assert!(!stdout.contains("s3cret"), "{stdout}");

    let out = command(upstream.root())
        .env("HEXREG_MIRROR_AUTH", "Basic bWlycm9yOnMzY3JldA==")
        .args([
            "mirror",
            "other",
            "--from",
            &upstream.server.url(),
            "--upstream-key",
        ])
        .arg(upstream.key_file())
        .output()
        .unwrap();
    succeeded(&out);
    assert_eq!(
        signed_files(&upstream.root().join("other")),
        signed_files(&up_dir(&upstream))
    );
}

fn up_dir(upstream: &Upstream) -> PathBuf {
    upstream.dir()
}

#[test]
fn mirrors_into_a_bucket() {
    let upstream = Upstream::start();
    let moto = support::moto::Moto::start();
    moto.create_bucket("mirror");
    let s3 = |args: &[&str]| {
        command(upstream.root())
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .args(args)
            .output()
            .unwrap()
    };
    let key = upstream.key_file().display().to_string();
    let url = upstream.server.url();
    let mirror = [
        "mirror",
        "s3://mirror/hex",
        "--from",
        &url,
        "--upstream-key",
        &key,
    ];
    let stdout = succeeded(&s3(&mirror));
    assert!(
        stdout.contains(&format!("{} tarballs downloaded", fixture_tarballs().len())),
        "{stdout}"
    );
    let verified = s3(&[
        "verify",
        "s3://mirror/hex",
        "--name=hexpm",
        "--public-key",
        &key,
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // Upstream's files, byte for byte.
    let storage = moto.storage("s3://mirror/hex");
    use hexreg::storage::Storage as _;
    for (path, bytes) in signed_files(&upstream.dir()) {
        let object = storage
            .read(&path)
            .unwrap()
            .unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(object.bytes, bytes, "{path}");
    }
    // A rerun fetches no tarball and no changed registry file.
    let from = upstream.log_len();
    let stdout = succeeded(&s3(&mirror));
    assert!(stdout.contains("0 tarballs downloaded"), "{stdout}");
    let requests = upstream.requests_since(from);
    assert!(
        requests.iter().all(|(_, status)| *status == 304),
        "{requests:?}"
    );
}

#[test]
fn server_errors_are_retried_then_reported() {
    let upstream = Upstream::start();
    let overloaded = support::static_server::StaticServer::start(&upstream.dir());
    overloaded.fail_next(2);
    succeeded(&upstream.mirror_from(&overloaded.url, "mirror", &["--retries=2"]));
    let requested = overloaded.requested_paths();
    assert_eq!(
        requested[..3],
        ["/names", "/names", "/names"],
        "{requested:?}"
    );
    assert_eq!(
        signed_files(&upstream.root().join("mirror")),
        signed_files(&upstream.dir())
    );

    overloaded.fail_next(1);
    let err = failed(&upstream.mirror_from(&overloaded.url, "other", &["--retries=0"]));
    assert!(
        err.contains(&format!("{}/names answered HTTP 503", overloaded.url)),
        "{err}"
    );
    assert!(!upstream.root().join("other/names").exists());
}

#[test]
fn redirects_to_another_host_are_refused() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Answers the one request the mirror sends with a redirect elsewhere, then stops.
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let Ok(mut stream) = stream else { break };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.invalid/names\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let out = command(tmp.path())
        .args(["mirror", "mirror", "--from", &url, "--retries=0"])
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(
        err.contains(&format!(
            "{url}/names redirects to http://elsewhere.invalid/names"
        )) && err.contains("only the upstream given with --from is contacted"),
        "{err}"
    );
    assert!(!tmp.path().join("mirror/names").exists());
    server.join().unwrap();
}

#[test]
fn an_upstream_that_never_answers_times_out_and_is_retried() {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Reads each of the two requests (the first attempt and its retry) and never answers;
    // the connections close when the test is done with them.
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { break };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            held.push(stream);
        }
        held
    });
    let tmp = tempfile::tempdir().unwrap();
    let out = command(tmp.path())
        .args([
            "mirror",
            "mirror",
            "--from",
            &url,
            "--timeout=1",
            "--retries=1",
        ])
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains(&format!("cannot fetch {url}/names")), "{err}");
    assert!(err.to_lowercase().contains("timed out"), "{err}");
    // Both attempts reached the server.
    assert_eq!(server.join().unwrap().len(), 2);
    assert!(!tmp.path().join("mirror/names").exists());
}

#[test]
fn a_rollback_to_older_signed_files_is_refused_unless_allowed() {
    let upstream = Upstream::of(&[Package::new("acme_roll", "1.0.0")]);
    // The files upstream signed when acme_roll had 1.0.0 only.
    let old: BTreeMap<String, Vec<u8>> = ["names", "versions", "packages/acme_roll"]
        .iter()
        .map(|f| (f.to_string(), fs::read(upstream.dir().join(f)).unwrap()))
        .collect();
    Package::new("acme_roll", "1.1.0").publish(&upstream.dir());
    Package::new("acme_later", "0.1.0").publish(&upstream.dir());
    upstream.rebuild();
    succeeded(&upstream.mirror("full", &[]));
    succeeded(&upstream.mirror("filtered", &strs(&filtered_args(&["acme_roll"]))));
    let before_full = all_files(&upstream.root().join("full"));
    let before_filtered = all_files(&upstream.root().join("filtered"));

    // Upstream serves the older, validly signed files again.
    for (file, bytes) in &old {
        fs::write(upstream.dir().join(file), bytes).unwrap();
    }
    let full = failed(&upstream.mirror("full", &[]));
    assert!(full.contains("/names lacks packages"), "{full}");
    assert!(full.contains("acme_later"), "{full}");
    assert!(full.contains("--allow-rollback"), "{full}");
    assert_eq!(all_files(&upstream.root().join("full")), before_full);
    // The package file alone rolled back (names and versions current): refused, naming it.
    upstream.rebuild();
    fs::write(
        upstream.dir().join("packages/acme_roll"),
        &old["packages/acme_roll"],
    )
    .unwrap();
    let filtered_args = filtered_args(&["acme_roll"]);
    let filtered = failed(&upstream.mirror("filtered", &strs(&filtered_args)));
    assert!(
        filtered.contains("/packages/acme_roll lacks releases") && filtered.contains("1.1.0"),
        "{filtered}"
    );
    assert_eq!(
        all_files(&upstream.root().join("filtered")),
        before_filtered
    );

    // Allowed: the mirror follows upstream back.
    let mut allowed = strs(&filtered_args);
    allowed.push("--allow-rollback");
    succeeded(&upstream.mirror("filtered", &allowed));
    succeeded(&upstream.mirror("full", &["--allow-rollback"]));
    let bytes = fs::read(upstream.root().join("full/packages/acme_roll")).unwrap();
    let roll = registry::open_package(&bytes, &public_key(), "hexpm", "acme_roll").unwrap();
    assert_eq!(roll.releases.len(), 1);
}
