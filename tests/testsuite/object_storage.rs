//! A registry in an S3 bucket ([`ObjectStorage`]) on a local S3 (`moto_server`, which must be
//! installed: `pip install 'moto[server]'`): conditional writes as S3 does them (moto 5.2.1
//! honours `If-None-Match: *` and `If-Match` on PUT), the bucket lock, and the engine building
//! and changing a registry there as it does in a directory.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hexreg::engine::{self, BuildOptions, NewTarball, Registry, Signer};
use hexreg::format::registry::{self, Retirement, RetirementReason};
use hexreg::storage::local::LocalDir;
use hexreg::storage::object::{LOCK_NAME, ObjectOptions, ObjectStorage};
use hexreg::storage::{Condition, Storage, StorageError, Version};
use object_store::{Attribute, GetOptions, ObjectStore};

use support::fixtures::{self, signer};
use support::hexreg_serve::Server;
use support::moto::{Logged, Moto};
use support::package::Package;

const REPO: &str = "acme";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn build(storage: &dyn Storage, signer: &Signer) -> engine::Changes {
    let lock = storage.try_lock().unwrap().expect("the lock is free");
    let mut registry = Registry::open(storage, REPO, signer, lock);
    registry.build(&BuildOptions::default()).unwrap();
    registry.take_changes()
}

fn assert_sound(storage: &dyn Storage, signer: &Signer) -> engine::Verification {
    let found = engine::verify(storage, REPO, &signer.public).unwrap();
    assert!(found.is_sound(), "{:?}", found.problems);
    found
}

/// Copies every fixture tarball into `tarballs/`.
fn upload_fixture_tarballs(storage: &ObjectStorage) -> Vec<String> {
    let names = fixtures::all_tarballs();
    for name in &names {
        let bytes = std::fs::read(fixtures::fixtures().join("tarballs").join(name)).unwrap();
        storage
            .write(&format!("tarballs/{name}"), &bytes, Condition::Create)
            .unwrap();
    }
    names
}

/// Every object under the storage's prefix: path → version.
fn objects(storage: &ObjectStorage) -> BTreeMap<String, Version> {
    fn walk(storage: &ObjectStorage, dir: &str, out: &mut BTreeMap<String, Version>) {
        for entry in storage.list(dir).unwrap().unwrap_or_default() {
            let path = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            if entry.regular {
                out.insert(path, entry.version);
            } else {
                walk(storage, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(storage, "", &mut out);
    out
}

/// The Content-Type, Content-Encoding and Cache-Control of the object at `rel`.
fn headers(storage: &ObjectStorage, rel: &str) -> [Option<String>; 3] {
    let store = storage.store();
    let location = storage.location(rel).unwrap();
    let got = storage
        .block_on(store.get_opts(
            &location,
            GetOptions {
                head: true,
                ..GetOptions::default()
            },
        ))
        .unwrap();
    [
        Attribute::ContentType,
        Attribute::ContentEncoding,
        Attribute::CacheControl,
    ]
    .map(|a| got.attributes.get(&a).map(|v| v.to_string()))
}

#[test]
fn writes_are_conditional_as_on_s3() {
    let moto = Moto::start();
    moto.create_bucket("hexreg");
    let s3 = moto.storage("s3://hexreg/registries/acme");
    assert_eq!(s3.display("names"), "s3://hexreg/registries/acme/names");

    // An empty prefix is an empty registry; a "directory" with nothing under it does not exist.
    assert_eq!(s3.list("").unwrap(), Some(Vec::new()));
    assert_eq!(s3.list("packages").unwrap(), None);
    assert_eq!(s3.read("names").unwrap(), None);
    assert!(!s3.create_dir("tarballs").unwrap());

    let first = s3.write("names", b"one", Condition::Create).unwrap();
    assert_eq!((first.name.as_str(), first.size), ("names", 3));
    let read = s3.read("names").unwrap().unwrap();
    assert_eq!(read.bytes, b"one");
    assert_eq!(read.version, first.version);
    assert_eq!(read.modified, first.modified);
    assert!((read.modified - now()).abs() < 60, "{}", read.modified);

    // Create-only over an object: If-None-Match: * refuses it.
    let e = s3.write("names", b"two", Condition::Create).unwrap_err();
    assert!(
        matches!(&e, StorageError::Conflict { path } if path == "s3://hexreg/registries/acme/names"),
        "{e}"
    );
    // Replace with the version read: If-Match accepts it, and the version changes.
    let second = s3
        .write("names", b"two", Condition::Replace(read.version.clone()))
        .unwrap();
    assert_ne!(second.version, first.version);
    // Replace with the stale version: If-Match refuses it.
    let e = s3
        .write("names", b"three", Condition::Replace(read.version.clone()))
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict { .. }), "{e}");
    // Replace of an object that is gone: refused too.
    let e = s3
        .write("versions", b"x", Condition::Replace(read.version.clone()))
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict { .. }), "{e}");
    // A refused write whose object already holds exactly its bytes counts as done (a request
    // retried after a lost answer).
    let again = s3.write("names", b"two", Condition::Create).unwrap();
    assert_eq!(again.version, second.version);
    assert_eq!(s3.read("names").unwrap().unwrap().bytes, b"two");

    // A batch: nothing visible before commit; the entries it returns are those listed after.
    let batch = s3.batch();
    batch.put("packages/b", b"bb", Condition::Create).unwrap();
    batch.put("packages/a", b"a", Condition::Create).unwrap();
    batch
        .put("tarballs/a-1.0.0.tar", b"tar", Condition::Create)
        .unwrap();
    assert_eq!(s3.list("packages").unwrap(), None);
    let mut written = batch.commit().unwrap();
    written.sort_by(|a, b| a.name.cmp(&b.name));
    let listed = s3.list("packages").unwrap().unwrap();
    let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    for (w, l) in written.iter().zip(&listed) {
        assert_eq!(w.name, format!("packages/{}", l.name));
        assert_eq!(
            (w.size, w.modified, &w.version),
            (l.size, l.modified, &l.version)
        );
        assert!(l.regular);
    }
    // The root lists its objects, and its "directories" as entries that are not regular.
    let root: Vec<(String, bool)> = s3
        .list("")
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.regular))
        .collect();
    assert_eq!(
        root,
        [
            ("names".to_string(), true),
            ("packages".to_string(), false),
            ("tarballs".to_string(), false)
        ]
    );

    // A batch with one refused write fails with a conflict; the others are written.
    let batch = s3.batch();
    batch.put("packages/a", b"a2", Condition::Create).unwrap();
    batch.put("packages/c", b"c", Condition::Create).unwrap();
    let e = batch.commit().unwrap_err();
    assert!(matches!(e, StorageError::Conflict { .. }), "{e}");
    assert_eq!(s3.read("packages/a").unwrap().unwrap().bytes, b"a");

    // Binary objects, not compressed for the client, cached briefly (indexes) or longer.
    let octets = Some("application/octet-stream".to_string());
    assert_eq!(
        headers(&s3, "names"),
        [octets.clone(), None, Some("public, max-age=60".into())]
    );
    assert_eq!(
        headers(&s3, "tarballs/a-1.0.0.tar"),
        [octets, None, Some("public, max-age=3600".into())]
    );

    assert!(s3.delete("packages/a").unwrap());
    assert!(!s3.delete("packages/a").unwrap());
    assert_eq!(s3.read("packages/a").unwrap(), None);

    // Another prefix of the bucket is another registry.
    let other = moto.storage("s3://hexreg/registries/other");
    assert_eq!(other.list("").unwrap(), Some(Vec::new()));

    // A missing bucket is an error that says so, not an empty registry.
    let missing = moto.storage("s3://no-such-bucket/acme");
    for e in [
        missing.read("names").unwrap_err(),
        missing.list("").unwrap_err(),
        missing.write("names", b"x", Condition::Create).unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(text.contains("s3://no-such-bucket/acme/"), "{text}");
        assert!(text.contains("the bucket does not exist"), "{text}");
    }
}

#[test]
fn the_lock_is_exclusive_renewed_taken_over_when_expired_and_released() {
    let moto = Moto::start();
    moto.create_bucket("locks");
    let short = ObjectOptions {
        lock_ttl: Duration::from_secs(3),
        ..moto.options()
    };
    let url = "s3://locks/acme";
    let a = ObjectStorage::from_url(url, short.clone()).unwrap();
    let b = ObjectStorage::from_url(url, short).unwrap();

    let held = a.try_lock().unwrap().expect("the lock is free");
    assert!(b.try_lock().unwrap().is_none());
    assert!(a.try_lock().unwrap().is_none());
    let text = String::from_utf8(a.read(LOCK_NAME).unwrap().unwrap().bytes).unwrap();
    assert!(
        text.contains(&format!("pid: {}", std::process::id())),
        "{text}"
    );
    // Renewed while held: still taken well after its TTL.
    std::thread::sleep(Duration::from_secs(5));
    assert!(b.try_lock().unwrap().is_none());
    drop(held);
    assert_eq!(a.read(LOCK_NAME).unwrap(), None, "released on drop");
    drop(b.try_lock().unwrap().expect("released"));

    // The lock of a run that was killed, past its expiry (its 1 s TTL after the store stamped
    // it): taken over with If-Match on its ETag, so a second taker that read the same lock is
    // refused.
    let dead = "hexreg lock\nid: dead\nhost: gone\npid: 1\nacquired: 0\nttl: 1\n";
    let dead_version = a
        .write(LOCK_NAME, dead.as_bytes(), Condition::Create)
        .unwrap()
        .version;
    std::thread::sleep(Duration::from_millis(2500));
    let taken = b
        .try_lock()
        .unwrap()
        .expect("an expired lock is taken over");
    let e = a
        .write(LOCK_NAME, b"second taker", Condition::Replace(dead_version))
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict { .. }), "{e}");
    assert!(a.try_lock().unwrap().is_none());
    drop(taken);
    assert_eq!(a.read(LOCK_NAME).unwrap(), None);

    // A live lock of another run is left alone; deleting it breaks it.
    let live = "hexreg lock\nid: other\nhost: elsewhere\npid: 1\nacquired: 0\nttl: 600\n";
    a.write(LOCK_NAME, live.as_bytes(), Condition::Create)
        .unwrap();
    assert!(b.try_lock().unwrap().is_none());
    assert!(a.delete(LOCK_NAME).unwrap());
    let held = b.try_lock().unwrap().expect("a deleted lock is free");

    // lock() waits for the holder to release it.
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| a.lock().unwrap());
        std::thread::sleep(Duration::from_secs(1));
        assert!(!waiter.is_finished());
        drop(held);
        drop(waiter.join().unwrap());
    });
    assert_eq!(a.read(LOCK_NAME).unwrap(), None);
}

#[test]
fn a_build_on_s3_writes_what_a_build_on_disk_writes() {
    let moto = Moto::start();
    moto.create_bucket("registry");
    let s3 = moto.storage("s3://registry/hex/acme");
    let tarballs = upload_fixture_tarballs(&s3);
    let signer = signer();
    let changes = build(&s3, &signer);
    assert!(!changes.is_empty());
    let found = assert_sound(&s3, &signer);
    assert_eq!(found.releases, tarballs.len());

    let names: Vec<&str> = tarballs.iter().map(String::as_str).collect();
    let (_tmp, public) = fixtures::temp_public(&names);
    let local = LocalDir::new(public.to_str().unwrap());
    build(&local, &signer);
    let packages = s3.list("packages").unwrap().unwrap();
    assert_eq!(packages.len(), found.packages);
    let on_disk: Vec<String> = local
        .list("packages")
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        packages.iter().map(|e| &e.name).collect::<Vec<_>>(),
        on_disk.iter().collect::<Vec<_>>()
    );
    for path in packages
        .iter()
        .map(|e| format!("packages/{}", e.name))
        .chain(["versions".to_string(), "public_key".to_string()])
    {
        assert_eq!(
            s3.read(&path).unwrap().unwrap().bytes,
            std::fs::read(public.join(&path)).unwrap(),
            "{path}"
        );
    }

    // Every object: binary, not compressed for the client.
    let before = objects(&s3);
    assert_eq!(
        before.len(),
        // Each package also has its API record (`.hexreg-api/packages/NAME`).
        tarballs.len() + 2 * packages.len() + 3,
        "{before:?}"
    );
    for path in before.keys() {
        let [content_type, content_encoding, cache_control] = headers(&s3, path);
        assert_eq!(
            content_type.as_deref(),
            Some("application/octet-stream"),
            "{path}"
        );
        assert_eq!(content_encoding, None, "{path}");
        assert!(cache_control.is_some(), "{path}");
    }

    // A second build writes nothing.
    let changes = build(&s3, &signer);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(objects(&s3), before);
}

fn new_tarball(name: &str, version: &str) -> Result<NewTarball, hexreg::engine::Problem> {
    NewTarball::validate(
        &format!("{name}-{version}.tar"),
        Package::new(name, version).tarball(),
        REPO,
    )
}

#[test]
fn add_retire_and_remove_on_s3_keep_the_registry_sound() {
    let moto = Moto::start();
    moto.create_bucket("registry");
    let s3 = moto.storage("s3://registry/acme");
    upload_fixture_tarballs(&s3);
    let signer = signer();
    build(&s3, &signer);
    let open = || Registry::open(&s3, REPO, &signer, s3.try_lock().unwrap().unwrap());

    open()
        .add(
            vec![
                new_tarball("acme_new", "1.0.0"),
                new_tarball("acme_a", "3.0.0"),
            ],
            false,
        )
        .unwrap();
    assert_sound(&s3, &signer);
    assert!(s3.read("tarballs/acme_new-1.0.0.tar").unwrap().is_some());
    // `add` took each new tarball's time from the bucket, as a build does: a build after it
    // changes nothing.
    assert!(build(&s3, &signer).is_empty());

    let retirement = Retirement {
        reason: RetirementReason::RetiredSecurity,
        message: Some("CVE-2026-1".into()),
    };
    open()
        .retire("acme_a", "0.1.0", retirement.clone())
        .unwrap();
    assert_sound(&s3, &signer);
    let file = s3.read("packages/acme_a").unwrap().unwrap().bytes;
    let package = registry::open_package(&file, &signer.public, REPO, "acme_a").unwrap();
    let retired: Vec<&str> = package
        .releases
        .iter()
        .filter(|r| r.retired.is_some())
        .map(|r| r.version.as_str())
        .collect();
    assert_eq!(retired, ["0.1.0"]);
    // Retirements survive a build.
    assert!(build(&s3, &signer).is_empty());

    open().remove("acme_new", None).unwrap();
    open().remove("acme_a", Some("3.0.0")).unwrap();
    let found = assert_sound(&s3, &signer);
    assert_eq!(found.releases, fixtures::all_tarballs().len());
    assert_eq!(s3.read("packages/acme_new").unwrap(), None);
    assert_eq!(s3.read("tarballs/acme_new-1.0.0.tar").unwrap(), None);
    assert_eq!(s3.read("tarballs/acme_a-3.0.0.tar").unwrap(), None);
}

#[test]
fn the_storage_works_from_tokio_blocking_threads() {
    let moto = Moto::start();
    moto.create_bucket("served");
    let storage = Arc::new(moto.storage("s3://served/acme"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // As `hexreg serve` runs engine calls: on the blocking pool, where a separate runtime's
        // block_on is allowed.
        let s3 = Arc::clone(&storage);
        let lock = tokio::task::spawn_blocking(move || {
            let lock = s3.lock().unwrap();
            s3.write("names", b"n", Condition::Create).unwrap();
            assert_eq!(s3.read("names").unwrap().unwrap().bytes, b"n");
            lock
        })
        .await
        .unwrap();
        // A lock and a storage dropped in async code release and shut down without panicking.
        drop(lock);
        let s3 = Arc::clone(&storage);
        let free = tokio::task::spawn_blocking(move || s3.try_lock().unwrap().is_some())
            .await
            .unwrap();
        assert!(free);
        drop(storage);
    });
}

/// Runs the hexreg binary in `cwd` with the AWS environment pointing at `moto`.
fn hexreg_on(moto: &Moto, cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hexreg"))
        .current_dir(cwd)
        .args(args)
        // No AWS_ALLOW_HTTP: an http:// endpoint is consent to plain HTTP, as for the AWS CLI.
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env_remove("AWS_ALLOW_HTTP")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("XDG_CACHE_HOME", cwd.join("cache"))
        .output()
        .expect("run hexreg")
}

fn succeeded(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_add_retire_remove_and_verify_take_an_s3_url() {
    let moto = Moto::start();
    moto.create_bucket("cli");
    let url = "s3://cli/registry";
    let storage = moto.storage(url);
    let tarballs = upload_fixture_tarballs(&storage);
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let key = format!("--private-key={}", fixtures::private_key().display());
    let run = |args: &[&str], what: &str| succeeded(&hexreg_on(&moto, cwd, args), what);

    let out = run(&["build", url, "--name=acme", &key], "build");
    assert!(out.contains("* creating s3://cli/registry/names"), "{out}");
    let out = run(&["verify", url, "--name=acme"], "verify");
    assert!(
        out.starts_with(&format!("ok: 6 packages, {} releases", tarballs.len())),
        "{out}"
    );
    assert_eq!(run(&["build", url, "--name=acme", &key], "no-op build"), "");

    let new = cwd.join("acme_new-1.0.0.tar");
    std::fs::write(
        &new,
        Package::new("acme_new", "1.0.0")
            .dep("acme_a", "~> 0.1")
            .tarball(),
    )
    .unwrap();
    let out = run(
        &["add", url, new.to_str().unwrap(), "--name=acme", &key],
        "add",
    );
    assert!(
        out.contains("* creating s3://cli/registry/packages/acme_new"),
        "{out}"
    );
    run(
        &[
            "retire",
            url,
            "acme_new",
            "1.0.0",
            "--reason=security",
            "--name=acme",
            &key,
        ],
        "retire",
    );
    let signer = signer();
    let releases = engine::Reader::new(&storage, REPO, &signer.public)
        .package("acme_new")
        .unwrap()
        .unwrap();
    assert_eq!(
        releases[0].retired.as_ref().map(|r| r.reason),
        Some(RetirementReason::RetiredSecurity)
    );
    run(&["remove", url, "acme_new", "--name=acme", &key], "remove");
    assert!(
        storage
            .read("tarballs/acme_new-1.0.0.tar")
            .unwrap()
            .is_none()
    );
    let out = run(&["verify", url, "--name=acme"], "verify after changes");
    assert!(out.starts_with("ok: 6 packages"), "{out}");
    assert_eq!(
        run(&["build", url, "--name=acme", &key], "build after changes"),
        ""
    );
}

/// A bucket on `moto` holding the fixture tarballs under `s3://BUCKET/repo`, with a working
/// directory and the `--private-key` argument.
struct Bucket {
    url: String,
    storage: ObjectStorage,
    /// How many fixture tarballs were uploaded.
    fixtures: usize,
    tmp: tempfile::TempDir,
    key: String,
}

impl Bucket {
    fn with_fixtures(moto: &Moto, bucket: &str) -> Bucket {
        moto.create_bucket(bucket);
        let url = format!("s3://{bucket}/repo");
        let storage = moto.storage(&url);
        let fixtures = upload_fixture_tarballs(&storage).len();
        Bucket {
            url,
            storage,
            fixtures,
            tmp: tempfile::tempdir().unwrap(),
            key: format!("--private-key={}", fixtures::private_key().display()),
        }
    }
}

/// The registry paths of `requests` that match `method` and succeeded, as `PREFIX`-relative
/// keys (`names`, `packages/acme_a`), leaving out listings.
fn keys_of(requests: &[Logged], method: &str, bucket_prefix: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == method && !r.is_list() && r.status < 300)
        .filter_map(|r| r.target.strip_prefix(bucket_prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_no_op_build_sends_no_write_and_adding_one_tarball_puts_three_files() {
    let moto = Moto::start();
    let Bucket {
        url,
        storage,
        fixtures: tarballs,
        tmp,
        key,
    } = Bucket::with_fixtures(&moto, "counted");
    let cwd = tmp.path();
    let url = url.as_str();
    let run = |what: &str| {
        succeeded(
            &hexreg_on(&moto, cwd, &["build", url, "--name=acme", &key]),
            what,
        )
    };
    run("first build");

    // No-op: listings and a handful of GETs, no PUT, no lock.
    let before = moto.requests().len();
    assert_eq!(run("no-op build"), "");
    let no_op = moto.requests()[before..].to_vec();
    assert!(
        no_op.iter().all(|r| r.method == "GET"),
        "only GETs: {no_op:#?}"
    );
    let gets = keys_of(&no_op, "GET", "/counted/repo/");
    assert!(
        gets.len() <= 3 && gets.iter().all(|k| !k.starts_with("tarballs/")),
        "a handful of GETs, no tarball: {gets:?}"
    );
    assert!(no_op.iter().any(Logged::is_list));

    // One new tarball: it alone is read; packages/NAME, names and versions are written (and
    // the lock, which a change takes).
    storage
        .write(
            "tarballs/acme_new-1.0.0.tar",
            &Package::new("acme_new", "1.0.0")
                .dep("acme_a", "~> 0.1")
                .tarball(),
            Condition::Create,
        )
        .unwrap();
    let before = moto.requests().len();
    let out = run("add-one build");
    assert!(out.contains("packages/acme_new"), "{out}");
    let add_one = moto.requests()[before..].to_vec();
    let tarball_gets: Vec<String> = keys_of(&add_one, "GET", "/counted/repo/")
        .into_iter()
        .filter(|k| k.starts_with("tarballs/"))
        .collect();
    assert_eq!(tarball_gets, ["tarballs/acme_new-1.0.0.tar"]);
    let mut puts = keys_of(&add_one, "PUT", "/counted/repo/");
    puts.sort();
    puts.dedup();
    // And two records of the audit trail, each an object of its own: the build, and the
    // release it added.
    let records: Vec<String> = puts
        .iter()
        .filter(|k| k.starts_with(".hexreg/audit/"))
        .cloned()
        .collect();
    assert_eq!(records.len(), 2, "{puts:?}");
    puts.retain(|k| !k.starts_with(".hexreg/audit/"));
    // `hexreg audit` reads the trail back from the bucket: the two builds that changed it
    // (the no-op wrote nothing), by the command line, the second with the release it added.
    let trail = succeeded(&hexreg_on(&moto, cwd, &["audit", url]), "audit");
    let builds: Vec<&str> = trail.lines().filter(|l| l.contains(" build ")).collect();
    assert_eq!(builds.len(), 3, "{trail}");
    assert!(builds[2].contains(" build acme_new 1.0.0 - "), "{trail}");
    assert!(
        builds
            .iter()
            .all(|l| l.split(' ').nth(1).is_some_and(|a| a.starts_with("cli:")))
    );
    // Served never: the bucket's dot-prefixed objects are refused like a directory's.
    let endpoint = moto.endpoint();
    let server = Server::start(
        std::path::Path::new(url),
        &[],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let record = format!("/{}", records[0]);
    assert_eq!(server.get(&record).status, 404, "{record}");
    assert_eq!(server.get("/names").status, 200);
    assert_eq!(
        puts,
        [
            ".hexreg-api/packages/acme_new",
            LOCK_NAME,
            "names",
            "packages/acme_new",
            "versions"
        ],
        "{add_one:#?}"
    );
    assert!(
        keys_of(&add_one, "DELETE", "/counted/repo/").is_empty(),
        "nothing deleted"
    );
    let out = succeeded(
        &hexreg_on(&moto, cwd, &["verify", url, "--name=acme"]),
        "verify",
    );
    assert!(
        out.starts_with(&format!("ok: 7 packages, {} releases", tarballs + 1)),
        "{out}"
    );
}

/// `hexreg serve s3://...` with the AWS environment of `moto`, a keys file in `cwd` and a
/// write key, which it returns.
fn serve_bucket(moto: &Moto, cwd: &std::path::Path, url: &str) -> (Server, String) {
    serve_bucket_with(moto, cwd, url, &[])
}

/// [`serve_bucket`], with `env` added to the server's environment.
fn serve_bucket_with(
    moto: &Moto,
    cwd: &std::path::Path,
    url: &str,
    env: &[(&str, &str)],
) -> (Server, String) {
    let key = succeeded(
        &hexreg_on(
            moto,
            cwd,
            &["key", "add", "--keys", "keys", "--write", "ci"],
        ),
        "key add",
    )
    .trim_end()
    .to_string();
    let endpoint = moto.endpoint();
    let keys = cwd.join("keys");
    let private_key = fixtures::private_key();
    let server = Server::start(
        std::path::Path::new(url),
        &[
            "--name=acme",
            "--keys",
            keys.to_str().unwrap(),
            "--private-key",
            private_key.to_str().unwrap(),
            "--public-reads",
        ],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .chain(env.iter().copied())
        .collect::<Vec<_>>(),
    );
    (server, key)
}

#[test]
fn serve_reads_from_a_bucket_and_publishes_into_it() {
    let moto = Moto::start();
    let Bucket {
        url,
        storage,
        fixtures: _count,
        tmp,
        key,
    } = Bucket::with_fixtures(&moto, "served");
    let cwd = tmp.path();
    let url = url.as_str();
    succeeded(
        &hexreg_on(&moto, cwd, &["build", url, "--name=acme", &key]),
        "build",
    );
    let (server, api_key) = serve_bucket(&moto, cwd, url);

    // The files, as stored, with the object's validators.
    let names = storage.read("names").unwrap().unwrap();
    let got = server.get("/names");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, names.bytes);
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("content-encoding"), None);
    let etag = got.header("etag").expect("an ETag").to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", String::from_utf8_lossy(&names.version.0))
    );
    let again = server.request("GET", "/names", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let tarball = storage.read("tarballs/acme_a-0.1.0.tar").unwrap().unwrap();
    let head = server.request("HEAD", "/tarballs/acme_a-0.1.0.tar", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(tarball.bytes.len().to_string().as_str())
    );
    // The API's records and the token secret are in the bucket, and never served.
    assert!(
        storage
            .read(".hexreg-api/packages/acme_a")
            .unwrap()
            .is_some()
    );
    assert!(storage.read(".hexreg-api/token-secret").unwrap().is_some());
    for path in [
        "/.hexreg-lock",
        "/.hexreg-api/packages/acme_a",
        "/.hexreg-api/token-secret",
        "/%2ehexreg-api/token-secret",
        "/packages",
        "/packages/nope",
        "/../names",
        "/tarballs/",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
    let info = server.request(
        "GET",
        "/api/packages/acme_a",
        &[("authorization", api_key.as_str())],
    );
    assert_eq!(info.status, 200);
    assert!(
        String::from_utf8_lossy(&info.body).contains("\"inserted_at\":\"20"),
        "{}",
        String::from_utf8_lossy(&info.body)
    );

    // The web pages read the same bucket: the list, a package, a version's files.
    let index = server.get("/");
    assert_eq!(index.status, 200);
    let index = String::from_utf8_lossy(&index.body).into_owned();
    assert!(index.contains("href=\"/-/packages/acme_a\""), "{index}");
    let package = server.get("/-/packages/acme_a");
    assert_eq!(package.status, 200);
    let package = String::from_utf8_lossy(&package.body).into_owned();
    assert!(
        package.contains("href=\"/tarballs/acme_a-0.1.0.tar\""),
        "{package}"
    );
    let version = server.get("/-/packages/acme_a/0.1.0");
    assert_eq!(version.status, 200);
    assert!(String::from_utf8_lossy(&version.body).contains("<h2 id=\"files\">Files</h2>"));
    assert_eq!(server.get("/-/packages/nope").status, 404);

    // A publish through the API lands in the bucket, signed, and is served.
    let new = Package::new("acme_pub", "1.0.0").tarball();
    let published = server.post(
        "/api/publish?replace=false",
        &[
            ("authorization", &api_key),
            ("content-type", "application/octet-stream"),
        ],
        &new,
    );
    assert_eq!(
        published.status,
        201,
        "{}",
        String::from_utf8_lossy(&published.body)
    );
    assert_eq!(
        storage
            .read("tarballs/acme_pub-1.0.0.tar")
            .unwrap()
            .unwrap()
            .bytes,
        new
    );
    let signer = signer();
    let releases = engine::Reader::new(&storage, REPO, &signer.public)
        .package("acme_pub")
        .unwrap()
        .expect("packages/acme_pub");
    assert_eq!(releases[0].version, "1.0.0");
    assert_sound(&storage, &signer);
    assert_eq!(server.get("/packages/acme_pub").status, 200);
    let info = server.request(
        "GET",
        "/api/packages/acme_pub",
        &[("authorization", &api_key)],
    );
    assert_eq!(info.status, 200);
    assert!(String::from_utf8_lossy(&info.body).contains("\"1.0.0\""));
    assert_eq!(storage.read(LOCK_NAME).unwrap(), None, "lock released");
}

/// Uploads `count` generated tarballs `gen_NNN-1.0.0.tar`, in parallel.
fn upload_generated(storage: &ObjectStorage, count: usize) {
    let batch = storage.batch();
    for i in 0..count {
        batch
            .put(
                &format!("tarballs/gen_{i:03}-1.0.0.tar"),
                &Package::new(&format!("gen_{i:03}"), "1.0.0").tarball(),
                Condition::Create,
            )
            .unwrap();
    }
    batch.commit().unwrap();
}

fn hexreg_command(moto: &Moto, cwd: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hexreg"));
    cmd.current_dir(cwd)
        .args(args)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("XDG_CACHE_HOME", cwd.join("cache"))
        .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn a_build_killed_midway_leaves_a_sound_bucket_and_the_next_build_completes_it() {
    let moto = Moto::start();
    let Bucket {
        url,
        storage,
        fixtures: fixtures_count,
        tmp,
        key,
    } = Bucket::with_fixtures(&moto, "killed");
    let cwd = tmp.path();
    let url = url.as_str();
    let args = ["build", url, "--name=acme", &key];
    succeeded(&hexreg_on(&moto, cwd, &args), "first build");
    upload_generated(&storage, 200);

    let mut child = hexreg_command(&moto, cwd, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has written some of the new packages/*, before names and versions.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let written = moto
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.target.starts_with("/killed/repo/packages/gen_"))
            .count();
        if written > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be killed"
        );
        assert!(std::time::Instant::now() < deadline, "no write seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        storage.read(LOCK_NAME).unwrap().is_some(),
        "the killed run leaves its lock"
    );

    // What clients read is whole: the old index and whatever packages/* came before it.
    let signer = signer();
    let found = assert_sound(&storage, &signer);
    assert!(found.packages >= 6, "{found:?}");
    let out = succeeded(
        &hexreg_on(&moto, cwd, &["verify", url, "--name=acme"]),
        "verify after the kill",
    );
    assert!(out.starts_with("ok: "), "{out}");

    // The next build takes over the dead run's lock at once (same machine, no such process)
    // and completes the registry.
    let out = hexreg_on(&moto, cwd, &args);
    succeeded(&out, "build after the kill");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("waiting"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = succeeded(
        &hexreg_on(&moto, cwd, &["verify", url, "--name=acme"]),
        "verify after the rebuild",
    );
    assert!(
        out.starts_with(&format!(
            "ok: 206 packages, {} releases",
            fixtures_count + 200
        )),
        "{out}"
    );
    assert_eq!(storage.read(LOCK_NAME).unwrap(), None);
}

#[test]
fn two_builds_at_once_never_interleave_and_both_succeed() {
    let moto = Moto::start();
    moto.create_bucket("racing");
    let url = "s3://racing/repo";
    let storage = moto.storage(url);
    let fixtures_count = upload_fixture_tarballs(&storage).len();
    upload_generated(&storage, 20);
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let key = format!("--private-key={}", fixtures::private_key().display());
    let args = ["build", url, "--name=acme", &key];

    // Held by this test while both builds start: each reads, then waits for it.
    let held = storage.try_lock().unwrap().expect("the lock is free");
    let start = || {
        let mut child = hexreg_command(&moto, cwd, &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        (child, rx)
    };
    let (a, a_err) = start();
    let (b, b_err) = start();
    for err in [&a_err, &b_err] {
        let line = err
            .recv_timeout(Duration::from_secs(120))
            .expect("a build says it waits");
        assert!(line.starts_with("waiting for another hexreg run"), "{line}");
    }
    drop(held);
    for (child, what) in [(a, "first"), (b, "second")] {
        let out = child.wait_with_output().unwrap();
        succeeded(&out, what);
    }

    let out = succeeded(
        &hexreg_on(&moto, cwd, &["verify", url, "--name=acme"]),
        "verify",
    );
    assert!(
        out.starts_with(&format!(
            "ok: 26 packages, {} releases",
            fixtures_count + 20
        )),
        "{out}"
    );
    // In the log, every successful write of a registry file lies inside one holding of the
    // lock (its creating PUT to its release), and holdings do not overlap.
    let mut holding = false;
    let mut holdings = 0;
    for r in moto.requests() {
        let lock = format!("/racing/repo/{LOCK_NAME}");
        let released = r.method == "POST" && r.target.starts_with("/racing?delete")
            || r.method == "DELETE" && r.target == lock;
        if r.method == "PUT" && r.target == lock && r.status == 200 {
            assert!(!holding, "the lock was taken while held: {r:?}");
            holding = true;
            holdings += 1;
        } else if released && r.status < 300 {
            holding = false;
        } else if r.method == "PUT"
            && r.status == 200
            && !r.target.starts_with("/racing/repo/tarballs/")
            && r.target.starts_with("/racing/repo/")
        {
            assert!(holding, "a write outside the lock: {r:?}");
        }
    }
    assert!(holdings >= 2, "the test's holding and at least one build's");
    assert_eq!(storage.read(LOCK_NAME).unwrap(), None);
}

#[test]
fn a_stale_lock_is_broken_and_a_live_one_is_waited_for_or_refused() {
    let moto = Moto::start();
    let Bucket {
        url,
        storage,
        fixtures: _count,
        tmp,
        key,
    } = Bucket::with_fixtures(&moto, "stale");
    let cwd = tmp.path();
    let url = url.as_str();
    let args = ["build", url, "--name=acme", &key, "--no-wait"];

    // Another machine's lock, past its expiry (1 s after the store stamped it): taken over.
    let expired = "hexreg lock\nid: dead\nhost: elsewhere\npid: 1\nacquired: 0\nttl: 1\n";
    storage
        .write(LOCK_NAME, expired.as_bytes(), Condition::Create)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let out = succeeded(&hexreg_on(&moto, cwd, &args), "build over an expired lock");
    assert!(out.contains("* creating s3://stale/repo/names"), "{out}");
    assert_eq!(storage.read(LOCK_NAME).unwrap(), None);

    // Another machine's live lock: --no-wait refuses, naming the way out; nothing written.
    let live = "hexreg lock\nid: other\nhost: elsewhere\npid: 1\nacquired: 0\nttl: 600\n";
    storage
        .write(LOCK_NAME, live.as_bytes(), Condition::Create)
        .unwrap();
    storage
        .write(
            "tarballs/acme_new-1.0.0.tar",
            &Package::new("acme_new", "1.0.0").tarball(),
            Condition::Create,
        )
        .unwrap();
    let before = objects(&storage);
    let out = hexreg_on(&moto, cwd, &args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another hexreg run is changing s3://stale/repo"),
        "{err}"
    );
    assert_eq!(objects(&storage), before, "nothing written");
    // Broken by deleting it, as README says: then the build goes through.
    assert!(storage.delete(LOCK_NAME).unwrap());
    succeeded(
        &hexreg_on(&moto, cwd, &args),
        "build after breaking the lock",
    );
    assert!(storage.read("packages/acme_new").unwrap().is_some());
}

#[test]
fn wrong_credentials_a_missing_bucket_and_an_unreachable_endpoint_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let key = format!("--private-key={}", fixtures::private_key().display());
    let fails = |moto: &Moto, url: &str, env: &[(&str, &str)], expected: &[&str]| {
        let mut cmd = hexreg_command(moto, cwd, &["build", url, "--name=acme", &key]);
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        for part in expected {
            assert!(err.contains(part), "{part:?} in {err}");
        }
    };

    let moto = Moto::start();
    moto.create_bucket("present");
    let storage = moto.storage("s3://present/repo");
    upload_fixture_tarballs(&storage);
    let before = objects(&storage);
    fails(
        &moto,
        "s3://absent/repo",
        &[],
        &["s3://absent/repo", "NoSuchBucket", "create it"],
    );
    // A port just freed: nothing listens there, connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let closed = format!("http://{closed}");
    fails(
        &moto,
        "s3://present/repo",
        &[("AWS_ENDPOINT_URL", &closed)],
        &[
            "s3://present/repo",
            "Connection refused",
            "AWS_ENDPOINT_URL",
        ],
    );
    assert_eq!(objects(&storage), before, "nothing written");

    // A server that checks credentials: test/test is no key it knows.
    let checking = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    fails(
        &checking,
        "s3://present/repo",
        &[],
        &[
            "s3://present/repo",
            "InvalidAccessKeyId",
            "check the credentials",
        ],
    );
    assert!(
        checking
            .requests()
            .iter()
            .filter(|r| r.target != "/")
            .all(|r| r.method == "GET" && r.status == 403),
        "nothing but refused reads (beside the readiness probe of `/`)"
    );
}

/// Release dates, advisories and policies in a bucket: the engine writes them there as in a
/// directory, a build keeps them, and verify checks the policies.
#[test]
fn dates_advisories_and_policies_on_s3() {
    let moto = Moto::start();
    moto.create_bucket("registry");
    let s3 = moto.storage("s3://registry/acme");
    upload_fixture_tarballs(&s3);
    let signer = signer();
    let open = || Registry::open(&s3, REPO, &signer, s3.try_lock().unwrap().unwrap());
    open()
        .with_release_dates(true)
        .build(&BuildOptions::default())
        .unwrap();
    let affects = hexreg::format::requirement::Requirement::parse("< 0.2.0").unwrap();
    let advisory = hexreg::format::advisory::NewAdvisory {
        id: "GHSA-s3".into(),
        summary: "in a bucket".into(),
        html_url: "https://example.com/GHSA-s3".into(),
        api_url: None,
        severity: registry::AdvisorySeverity::SeverityCritical,
        cvss_score: None,
        aliases: Vec::new(),
        affects,
    };
    let affected = open().add_advisory("acme_a", &advisory).unwrap();
    assert_eq!(affected, ["0.1.0", "0.1.1"]);
    let spec = hexreg::format::policy::PolicySpec {
        name: "strict".into(),
        repository: REPO.into(),
        cooldown: Some("2w".into()),
        ..Default::default()
    };
    open().set_policy(&spec).unwrap();

    // A build without dating keeps dates and advisories: nothing changes.
    assert!(build(&s3, &signer).is_empty());
    let file = s3.read("packages/acme_a").unwrap().unwrap().bytes;
    let package = registry::open_package(&file, &signer.public, REPO, "acme_a").unwrap();
    assert_eq!(package.advisories[0].id, "GHSA-s3");
    assert!(package.releases.iter().all(|r| r.published_at.is_some()));
    let flagged: Vec<&str> = package
        .releases
        .iter()
        .filter(|r| r.advisory_indexes == [0])
        .map(|r| r.version.as_str())
        .collect();
    assert_eq!(flagged, ["0.1.0", "0.1.1"]);
    let policy = s3.read("policies/strict").unwrap().unwrap().bytes;
    let policy =
        hexreg::format::policy::open_policy(&policy, &signer.public, REPO, "strict").unwrap();
    assert_eq!(
        policy.repositories[0]
            .restriction
            .as_ref()
            .and_then(|r| r.cooldown.as_deref()),
        Some("2w")
    );
    assert_sound(&s3, &signer);

    s3.write(
        "policies/strict",
        b"junk",
        Condition::Replace(s3.read("policies/strict").unwrap().unwrap().version),
    )
    .unwrap();
    let found = engine::verify(&s3, REPO, &signer.public).unwrap();
    assert!(
        found
            .problems
            .iter()
            .any(|p| p.contains("policies/strict: is not gzip data")),
        "{:?}",
        found.problems
    );
    open().remove_policy("strict").unwrap();
    assert_eq!(s3.read("policies/strict").unwrap(), None);
    assert_sound(&s3, &signer);
}

/// The bucket requests for `key` (`/BUCKET/PREFIX/KEY`) among `requests`: (all, answered 304).
fn bucket_gets(requests: &[Logged], target: &str) -> (usize, usize) {
    let gets: Vec<&Logged> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.target == target)
        .collect();
    (gets.len(), gets.iter().filter(|r| r.status == 304).count())
}

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// GETs `path` on a connection of its own, reading the body in pieces without keeping it:
/// the status and the body's length.
fn get_counting(port: u16, path: &str) -> (u16, u64) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = support::hexreg_serve::connect(port);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    loop {
        line.clear();
        reader.read_line(&mut line).expect("a header");
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut buf = vec![0; 64 * 1024];
    let mut len = 0u64;
    loop {
        match reader.read(&mut buf).expect("the body") {
            0 => break,
            n => len += n as u64,
        }
    }
    (status, len)
}

#[test]
fn registry_files_cost_one_bucket_request_per_interval_and_tarballs_stream() {
    let moto = Moto::start();
    let Bucket {
        url,
        storage,
        fixtures: _count,
        tmp,
        key,
    } = Bucket::with_fixtures(&moto, "cost");
    let cwd = tmp.path();
    let url = url.as_str();
    succeeded(
        &hexreg_on(&moto, cwd, &["build", url, "--name=acme", &key]),
        "build",
    );
    // A tarball-like object of 12 MiB: served to 8 clients at once, it would take 96 MiB held
    // whole per request.
    const BIG: usize = 12 * 1024 * 1024;
    let big: Vec<u8> = (0..BIG).map(|i| (i * 7 + i / 4096) as u8).collect();
    let batch = storage.batch();
    batch
        .put("tarballs/big-1.0.0.tar", &big, Condition::Create)
        .unwrap();
    batch.commit().unwrap();
    drop(big);

    // An interval longer than the test: 1,000 GETs of `names` cost one bucket request.
    let (server, api_key) =
        serve_bucket_with(&moto, cwd, url, &[("HEXREG_BUCKET_REVALIDATE", "3600")]);
    let names = storage.read("names").unwrap().unwrap();
    let before = moto.requests().len();
    for _ in 0..1000 {
        let got = server.get("/names");
        assert_eq!(got.status, 200);
        assert_eq!(got.body, names.bytes);
    }
    let (gets, _) = bucket_gets(&moto.requests()[before..], "/cost/repo/names");
    assert_eq!(gets, 1, "1,000 GETs of names within one interval");
    // Conditional requests and HEAD are answered from the copy.
    let etag = server.get("/names").header("etag").unwrap().to_string();
    assert_eq!(
        server
            .request("GET", "/names", &[("If-None-Match", &etag)])
            .status,
        304
    );
    let head = server.request("HEAD", "/names", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(names.bytes.len().to_string().as_str())
    );

    // A publish through this replica is served at once, whatever the interval.
    let new = Package::new("acme_fresh", "1.0.0").tarball();
    let published = server.post(
        "/api/publish?replace=false",
        &[
            ("authorization", &api_key),
            ("content-type", "application/octet-stream"),
        ],
        &new,
    );
    assert_eq!(published.status, 201);
    let names = storage.read("names").unwrap().unwrap();
    assert_eq!(
        server.get("/names").body,
        names.bytes,
        "names after a publish"
    );
    assert_eq!(server.get("/packages/acme_fresh").status, 200);

    // A tarball streams: 8 clients at once take less than two copies of it (8 copies, 96 MiB,
    // when each request held it whole; about 7 MiB measured on an idle machine, sockets'
    // buffers and threads, and once 13 MiB in a full test run on 2 loaded cores, when the
    // HTTP client's read buffers fill while the 8 downloads wait for a core).
    let pid = server.pid();
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(get_counting(port, "/tarballs/acme_a-0.1.0.tar").0, 200);
    let baseline = status_kb(pid, "VmHWM:") * 1024;
    let before = moto.requests().len();
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || get_counting(port, "/tarballs/big-1.0.0.tar")))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), (200, BIG as u64));
    }
    let peak = status_kb(pid, "VmHWM:") * 1024;
    assert!(
        peak < baseline + 2 * BIG as u64,
        "peak memory {peak} bytes, {baseline} before 8 downloads of {BIG} bytes"
    );
    let (gets, _) = bucket_gets(
        &moto.requests()[before..],
        "/cost/repo/tarballs/big-1.0.0.tar",
    );
    assert_eq!(gets, 8, "one bucket request per tarball download");
    eprintln!(
        "peak memory {} MiB before, {} MiB after 8 concurrent 12 MiB downloads",
        baseline >> 20,
        peak >> 20
    );
    drop(server);

    // Revalidating at every request: each is a conditional GET the bucket answers 304.
    let other = tempfile::tempdir().unwrap();
    let (server, _) = serve_bucket_with(
        &moto,
        other.path(),
        url,
        &[("HEXREG_BUCKET_REVALIDATE", "0")],
    );
    let before = moto.requests().len();
    for _ in 0..20 {
        assert_eq!(server.get("/names").body, names.bytes);
    }
    let (gets, not_modified) = bucket_gets(&moto.requests()[before..], "/cost/repo/names");
    assert_eq!((gets, not_modified), (20, 19));
    drop(server);

    // The default interval (2 s): 1,000 GETs cost at most one bucket request per 2 s begun.
    let third = tempfile::tempdir().unwrap();
    let (server, _) = serve_bucket(&moto, third.path(), url);
    let before = moto.requests().len();
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        assert_eq!(server.get("/names").status, 200);
    }
    let elapsed = started.elapsed();
    let (gets, _) = bucket_gets(&moto.requests()[before..], "/cost/repo/names");
    assert!(
        gets as u64 <= elapsed.as_secs() / 2 + 2,
        "{gets} bucket GETs of names for 1,000 client GETs in {elapsed:?}"
    );
    eprintln!("1,000 GETs of names in {elapsed:?}: {gets} bucket GETs");
}

/// A publish through the API to a bucket whose lock another run holds waits `--lock-timeout`
/// (here 1 s), gets 503 with Retry-After and changes nothing; once the lock is released, the
/// same publish lands.
#[test]
fn a_publish_on_s3_behind_a_held_lock_gets_503_then_lands() {
    let moto = Moto::start();
    let Bucket {
        url,
        storage,
        tmp,
        key,
        ..
    } = Bucket::with_fixtures(&moto, "held");
    let cwd = tmp.path();
    let url = url.as_str();
    succeeded(
        &hexreg_on(&moto, cwd, &["build", url, "--name=acme", &key]),
        "build",
    );
    let (server, api_key) = serve_bucket_with(&moto, cwd, url, &[("HEXREG_LOCK_TIMEOUT", "1")]);
    let held = storage.try_lock().unwrap().expect("the lock is free");
    let before = objects(&storage);
    let tarball = Package::new("acme_held", "1.0.0").tarball();
    let publish = || {
        server.post(
            "/api/publish",
            &[
                ("authorization", api_key.as_str()),
                ("accept", "application/json"),
                ("content-type", "application/octet-stream"),
            ],
            &tarball,
        )
    };
    let r = publish();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(String::from_utf8_lossy(&r.body).contains("try again"));
    assert_eq!(objects(&storage), before, "nothing written");
    assert_eq!(storage.read("packages/acme_held").unwrap(), None);
    drop(held);
    let r = publish();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(storage.read("packages/acme_held").unwrap().is_some());
}
