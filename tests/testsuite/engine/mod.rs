//! The engine on a storage that is not a file system: builds and changes in memory give the
//! registry a directory gets, and a failure injected at any write leaves a registry clients
//! accept, which the next run completes.

mod memory_storage;
mod mirror;

use std::collections::BTreeMap;

use hexreg::engine::{self, BuildOptions, NewTarball, Registry, Signer};
use hexreg::format::registry::{self, Retirement, RetirementReason};
use hexreg::storage::Storage;
use hexreg::storage::local::LocalDir;

use crate::support::fixtures::signer;
use crate::support::package::Package;
use memory_storage::MemoryStorage;

const REPO: &str = "acme";

/// A valid tarball of `name` at `version` depending on `deps` (name, requirement).
fn tarball(name: &str, version: &str, deps: &[(&str, &str)]) -> Vec<u8> {
    deps.iter()
        .fold(Package::new(name, version), |p, (dep, req)| p.dep(dep, req))
        .tarball()
}

/// The tarballs every test starts from.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, version, deps) in [
        ("alpha", "1.0.0", vec![]),
        ("alpha", "1.1.0", vec![]),
        ("alpha", "2.0.0-rc.1", vec![]),
        ("beta", "0.1.0", vec![("alpha", "~> 1.0")]),
        (
            "gamma",
            "3.0.0",
            vec![("alpha", ">= 1.0.0"), ("beta", "~> 0.1")],
        ),
    ] {
        out.push((
            format!("{name}-{version}.tar"),
            tarball(name, version, &deps),
        ));
    }
    out
}

fn memory_with(tarballs: &[(String, Vec<u8>)]) -> MemoryStorage {
    let storage = MemoryStorage::new();
    for (file, bytes) in tarballs {
        storage.insert(&format!("tarballs/{file}"), bytes);
    }
    storage
}

fn build(storage: &dyn Storage, signer: &Signer) -> Result<engine::Changes, engine::Error> {
    let lock = storage.try_lock().unwrap().expect("lock is free");
    let mut registry = Registry::open(storage, REPO, signer, lock);
    let result = registry.build(&BuildOptions::default());
    let changes = registry.take_changes();
    result.map(|()| changes)
}

/// What must hold at any moment, even after a failed run: every file of the registry opens and
/// verifies; every package `versions` lists has its `packages/` file, and (`with_tarballs`)
/// every release in those files has its tarball with the recorded checksum. (`versions` may lag
/// behind a `packages/` file written just before the failure.) Returns package → versions as
/// `versions` says.
fn check_consistent(
    storage: &dyn Storage,
    signer: &Signer,
    with_tarballs: bool,
) -> BTreeMap<String, Vec<String>> {
    let read = |path: &str| storage.read(path).unwrap().map(|o| o.bytes);
    let mut out = BTreeMap::new();
    let (Some(names), Some(versions)) = (read("names"), read("versions")) else {
        return out;
    };
    let open = |bytes: &[u8]| {
        let opened = registry::open(bytes).unwrap();
        opened.verify(&signer.public).unwrap();
        opened.payload
    };
    registry::decode_names(&open(&names), REPO).unwrap();
    let versions = registry::decode_versions(&open(&versions), REPO).unwrap();
    for p in versions.packages {
        let file = read(&format!("packages/{}", p.name))
            .unwrap_or_else(|| panic!("versions lists {} but packages/{0} is missing", p.name));
        let package = registry::open_package(&file, &signer.public, REPO, &p.name).unwrap();
        for release in package.releases.iter().filter(|_| with_tarballs) {
            let version = &release.version;
            let tarball = read(&format!("tarballs/{}-{version}.tar", p.name))
                .unwrap_or_else(|| panic!("{} {version} recorded without its tarball", p.name));
            assert_eq!(
                Some(hexreg::format::tarball::outer_checksum(&tarball).to_vec()),
                release.outer_checksum
            );
        }
        out.insert(p.name, p.versions);
    }
    out
}

#[test]
fn a_build_in_memory_writes_what_a_build_on_disk_writes() {
    let signer = signer();
    let memory = memory_with(&corpus());
    let changes = build(&memory, &signer).unwrap();
    assert!(!changes.is_empty());
    let found = engine::verify(&memory, REPO, &signer.public).unwrap();
    assert!(found.is_sound(), "{:?}", found.problems);
    assert_eq!((found.packages, found.releases), (3, 5));

    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir_all(public.join("tarballs")).unwrap();
    for (file, bytes) in corpus() {
        std::fs::write(public.join("tarballs").join(file), bytes).unwrap();
    }
    let local = LocalDir::new(public.to_str().unwrap());
    build(&local, &signer).unwrap();

    let in_memory = memory.snapshot();
    for name in ["alpha", "beta", "gamma"] {
        let path = format!("packages/{name}");
        assert_eq!(
            in_memory.get(&path),
            std::fs::read(public.join(&path)).ok().as_ref(),
            "{path}"
        );
    }
    assert_eq!(
        in_memory.get("public_key"),
        std::fs::read(public.join("public_key")).ok().as_ref()
    );
    // `versions` holds no time: equal too. (`names` holds each package's newest tarball time.)
    assert_eq!(
        in_memory.get("versions"),
        std::fs::read(public.join("versions")).ok().as_ref()
    );
}

#[test]
fn a_second_build_changes_nothing() {
    let signer = signer();
    let memory = memory_with(&corpus());
    build(&memory, &signer).unwrap();
    let before = memory.snapshot();
    memory.fail_from(None);
    let changes = build(&memory, &signer).unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(memory.writes(), 0);
    assert_eq!(memory.snapshot(), before);
}

#[test]
fn the_lock_is_held_while_a_registry_is_open() {
    let signer = signer();
    let memory = memory_with(&corpus());
    let lock = memory.try_lock().unwrap().unwrap();
    assert!(memory.try_lock().unwrap().is_none());
    let registry = Registry::open(&memory, REPO, &signer, lock);
    assert!(memory.try_lock().unwrap().is_none());
    drop(registry);
    assert!(memory.try_lock().unwrap().is_some());
}

/// Runs `operation` with a failure injected at each of its writes in turn, on a fresh copy of
/// `start` each time: every failed run leaves a consistent registry, and running the operation
/// again completes it exactly as an uninterrupted run does.
fn fails_safely_at_every_write(
    with_tarballs: bool,
    start: impl Fn() -> MemoryStorage,
    operation: impl Fn(&mut Registry) -> Result<(), engine::Error>,
) {
    let signer = signer();
    let run = |storage: &MemoryStorage| {
        let lock = storage.try_lock().unwrap().unwrap();
        let mut registry = Registry::open(storage, REPO, &signer, lock);
        operation(&mut registry)
    };
    let clean = start();
    clean.fail_from(None);
    run(&clean).unwrap();
    let writes = clean.writes();
    assert!(writes > 0, "the operation writes something");
    let wanted = clean.snapshot();
    let wanted_index = check_consistent(&clean, &signer, true);
    for n in 0..writes {
        let storage = start();
        storage.fail_from(Some(n));
        let e = run(&storage).expect_err("the injected failure stops the run");
        assert!(e.to_string().contains("injected failure"), "write {n}: {e}");
        check_consistent(&storage, &signer, with_tarballs);
        storage.fail_from(None);
        run(&storage).unwrap_or_else(|e| panic!("after a failure at write {n}: {e}"));
        assert_eq!(
            check_consistent(&storage, &signer, true),
            wanted_index,
            "write {n}"
        );
        let got = storage.snapshot();
        let differ: Vec<&String> = got
            .keys()
            .chain(wanted.keys())
            .filter(|k| got.get(*k) != wanted.get(*k))
            .collect();
        assert!(
            differ.is_empty(),
            "after a failure at write {n}: {differ:?} differ"
        );
    }
}

/// A registry built from [`corpus`].
fn built() -> MemoryStorage {
    let memory = memory_with(&corpus());
    build(&memory, &signer()).unwrap();
    memory
}

#[test]
fn a_first_build_fails_safely_at_every_write() {
    fails_safely_at_every_write(
        true,
        || memory_with(&corpus()),
        |registry| registry.build(&BuildOptions::default()),
    );
}

#[test]
fn a_rebuild_after_changes_fails_safely_at_every_write() {
    // The tarballs of `beta` are deleted before the run, so until it rewrites the index,
    // releases are listed without their tarball: not checked here.
    fails_safely_at_every_write(
        false,
        || {
            let memory = built();
            // One package gone, one new release, one new package.
            let files: Vec<String> = memory
                .snapshot()
                .into_keys()
                .filter(|k| k.starts_with("tarballs/beta-"))
                .collect();
            for f in files {
                memory.delete(&f).unwrap();
            }
            memory.insert("tarballs/alpha-1.2.0.tar", &tarball("alpha", "1.2.0", &[]));
            memory.insert("tarballs/delta-0.0.1.tar", &tarball("delta", "0.0.1", &[]));
            memory
        },
        |registry| registry.build(&BuildOptions::default()),
    );
}

fn new_tarball(name: &str, version: &str) -> Result<NewTarball, hexreg::engine::Problem> {
    NewTarball::validate(
        &format!("{name}-{version}.tar"),
        tarball(name, version, &[("alpha", "~> 1.0")]),
        REPO,
    )
}

#[test]
fn add_fails_safely_at_every_write() {
    fails_safely_at_every_write(true, built, |registry| {
        registry.add(
            vec![
                new_tarball("beta", "0.2.0"),
                new_tarball("epsilon", "1.0.0"),
            ],
            false,
        )
    });
}

#[test]
fn remove_fails_safely_at_every_write() {
    fails_safely_at_every_write(true, built, |registry| {
        registry.remove("alpha", Some("1.0.0"))
    });
    fails_safely_at_every_write(true, built, |registry| registry.remove("beta", None));
}

#[test]
fn retire_and_unretire_fail_safely_at_every_write() {
    let retirement = Retirement {
        reason: RetirementReason::RetiredSecurity,
        message: Some("CVE-2026-1".into()),
    };
    fails_safely_at_every_write(true, built, |registry| {
        registry.retire("alpha", "1.1.0", retirement.clone())
    });
    fails_safely_at_every_write(
        true,
        || {
            let memory = built();
            let signer = signer();
            let lock = memory.try_lock().unwrap().unwrap();
            Registry::open(&memory, REPO, &signer, lock)
                .retire("alpha", "1.1.0", retirement.clone())
                .unwrap();
            memory
        },
        |registry| registry.unretire("alpha", "1.1.0"),
    );
}

#[test]
fn changes_in_memory_keep_the_registry_sound() {
    let signer = signer();
    let memory = built();
    let open = || Registry::open(&memory, REPO, &signer, memory.try_lock().unwrap().unwrap());

    open()
        .add(vec![new_tarball("beta", "0.2.0")], false)
        .unwrap();
    let mut registry = open();
    registry
        .retire(
            "beta",
            "0.1.0",
            Retirement {
                reason: RetirementReason::RetiredDeprecated,
                message: None,
            },
        )
        .unwrap();
    let changes = registry.take_changes();
    let paths: Vec<&str> = changes.as_made().iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["packages/beta", "versions"]);
    drop(registry);
    open().remove("gamma", None).unwrap();

    let found = engine::verify(&memory, REPO, &signer.public).unwrap();
    assert!(found.is_sound(), "{:?}", found.problems);
    let index = check_consistent(&memory, &signer, true);
    assert_eq!(
        index.keys().map(String::as_str).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    assert_eq!(index["beta"], ["0.1.0", "0.2.0"]);
    assert!(memory.read("tarballs/gamma-3.0.0.tar").unwrap().is_none());

    // Re-adding the same release with other bytes is refused without `replace`, and nothing
    // changes.
    let before = memory.snapshot();
    let other = NewTarball::validate(
        "beta-0.2.0.tar",
        tarball("beta", "0.2.0", &[("alpha", "~> 1.1")]),
        REPO,
    );
    let e = open().add(vec![other], false).unwrap_err();
    assert!(matches!(e, engine::Error::AddRefused { .. }), "{e}");
    assert_eq!(memory.snapshot(), before);
}

#[test]
fn reverting_a_release_with_docs_fails_safely_at_every_write() {
    let docs = Package::new("alpha", "1.0.0")
        .file("index.html", "<h1>alpha</h1>")
        .contents_tar_gz();
    let with_docs = || {
        let memory = built();
        let signer = signer();
        let lock = memory.try_lock().unwrap().unwrap();
        let replaced = Registry::open(&memory, REPO, &signer, lock)
            .put_docs("alpha", "1.0.0", &docs)
            .unwrap();
        assert!(!replaced);
        assert!(memory.read("docs/alpha-1.0.0.tar.gz").unwrap().is_some());
        memory
    };
    fails_safely_at_every_write(true, with_docs, |registry| {
        registry.remove("alpha", Some("1.0.0"))
    });
    // Docs of a release that does not exist, or that are not a tarball, are refused.
    let memory = with_docs();
    let signer = signer();
    let mut registry = Registry::open(&memory, REPO, &signer, memory.try_lock().unwrap().unwrap());
    assert!(matches!(
        registry.put_docs("alpha", "9.9.9", &docs),
        Err(engine::Error::NoVersion { .. })
    ));
    assert!(matches!(
        registry.put_docs("alpha", "1.1.0", b"not gzip"),
        Err(engine::Error::BadDocs { .. })
    ));
    registry.remove("alpha", Some("1.0.0")).unwrap();
    assert!(memory.read("docs/alpha-1.0.0.tar.gz").unwrap().is_none());
}

fn advisory(id: &str, affects: &str) -> hexreg::format::advisory::NewAdvisory {
    hexreg::format::advisory::NewAdvisory {
        id: id.into(),
        summary: "a vulnerability".into(),
        html_url: format!("https://example.com/{id}"),
        api_url: None,
        severity: registry::AdvisorySeverity::SeverityHigh,
        cvss_score: Some(9.0),
        aliases: Vec::new(),
        affects: hexreg::format::requirement::Requirement::parse(affects).unwrap(),
    }
}

/// [`built`], with an advisory on alpha 1.0.0 and 1.1.0.
fn with_advisory() -> MemoryStorage {
    let memory = built();
    let signer = signer();
    let lock = memory.try_lock().unwrap().unwrap();
    Registry::open(&memory, REPO, &signer, lock)
        .add_advisory("alpha", &advisory("GHSA-1", "~> 1.0"))
        .unwrap();
    memory
}

#[test]
fn advisories_fail_safely_at_every_write() {
    fails_safely_at_every_write(true, built, |registry| {
        registry
            .add_advisory("alpha", &advisory("GHSA-1", "< 2.0.0-0"))
            .map(drop)
    });
    fails_safely_at_every_write(true, with_advisory, |registry| {
        registry.remove_advisory("alpha", "GHSA-1")
    });
}

#[test]
fn policies_fail_safely_at_every_write() {
    let spec = hexreg::format::policy::PolicySpec {
        name: "strict".into(),
        repository: REPO.into(),
        cooldown: Some("7d".into()),
        ..Default::default()
    };
    fails_safely_at_every_write(true, built, |registry| registry.set_policy(&spec));
    fails_safely_at_every_write(
        true,
        || {
            let memory = built();
            let signer = signer();
            let lock = memory.try_lock().unwrap().unwrap();
            Registry::open(&memory, REPO, &signer, lock)
                .set_policy(&spec)
                .unwrap();
            memory
        },
        |registry| registry.remove_policy("strict"),
    );
}

#[test]
fn advisories_and_dates_survive_changes_in_memory() {
    let signer = signer();
    let memory = with_advisory();
    let open = || Registry::open(&memory, REPO, &signer, memory.try_lock().unwrap().unwrap());
    let flagged = || {
        let file = memory.read("packages/alpha").unwrap().unwrap().bytes;
        let package = registry::open_package(&file, &signer.public, REPO, "alpha").unwrap();
        assert_eq!(package.advisories.len(), 1);
        package
            .releases
            .iter()
            .filter(|r| !r.advisory_indexes.is_empty())
            .map(|r| r.version.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(flagged(), ["1.0.0", "1.1.0"]);
    open()
        .with_release_dates(true)
        .build(&BuildOptions::default())
        .unwrap();
    open()
        .add(vec![new_tarball("alpha", "1.2.0")], false)
        .unwrap();
    open()
        .retire(
            "alpha",
            "1.0.0",
            Retirement {
                reason: RetirementReason::RetiredSecurity,
                message: None,
            },
        )
        .unwrap();
    open().remove("alpha", Some("1.1.0")).unwrap();
    assert!(build(&memory, &signer).unwrap().is_empty());
    assert_eq!(flagged(), ["1.0.0"]);
    let file = memory.read("packages/alpha").unwrap().unwrap().bytes;
    let package = registry::open_package(&file, &signer.public, REPO, "alpha").unwrap();
    let dated: Vec<(&str, bool)> = package
        .releases
        .iter()
        .map(|r| (r.version.as_str(), r.published_at.is_some()))
        .collect();
    // Dated by the build with dates; 1.2.0 was added without.
    assert_eq!(
        dated,
        [("1.0.0", true), ("1.2.0", false), ("2.0.0-rc.1", true)]
    );
    let found = engine::verify(&memory, REPO, &signer.public).unwrap();
    assert!(found.is_sound() && found.notes.is_empty(), "{found:?}");
}
