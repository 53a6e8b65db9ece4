//! The supply-chain controls of Hex 2.5 (issue 16): release dates (`published_at`), security
//! advisories and signed policies, each decoded with the project's protos from the files the
//! binary writes, and kept by every later build, add, remove and retire. rebar3's bundled
//! hex_core (0.7.1) predates these fields: `tests/rebar3_client.rs` checks it still reads such
//! registries.

use crate::support;

use std::fs;
use std::path::Path;

use hexreg::format::proto;
use support::files::registry_files;
use support::fixtures::*;
use support::package::Package;
use support::run::{hexreg, key_arg, ok, private_key_arg};

const A: [&str; 3] = ["acme_a-0.1.0.tar", "acme_a-0.2.0.tar", "acme_a-1.0.0.tar"];

/// Runs `hexreg ARGS --name=acme --private-key=KEY` in `cwd`, asserting success.
fn change(cwd: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    let key = private_key_arg();
    all.extend(["--name=acme", &key]);
    ok(cwd, &all)
}

/// Runs `hexreg ARGS --name=acme --private-key=KEY` in `cwd`, asserting the exit status
/// `code`; returns stderr.
fn refused(cwd: &Path, args: &[&str], code: i32) -> String {
    let mut all: Vec<&str> = args.to_vec();
    let key = private_key_arg();
    all.extend(["--name=acme", &key]);
    let out = hexreg(cwd, &all);
    assert_eq!(out.status.code(), Some(code), "hexreg {all:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// `packages/NAME`, signature verified, decoded with the project's protos.
fn package(public: &Path, name: &str) -> proto::package::Package {
    let bytes = fs::read(public.join("packages").join(name)).unwrap();
    hexreg::format::registry::open_package(&bytes, &public_key(), "acme", name).unwrap()
}

/// `versions`, signature verified, decoded with the project's protos: name → package.
fn versions(public: &Path, name: &str) -> proto::versions::Package {
    let bytes = fs::read(public.join("versions")).unwrap();
    let opened = hexreg::format::registry::open(&bytes).unwrap();
    opened.verify(&public_key()).unwrap();
    hexreg::format::registry::decode_versions(&opened.payload, "acme")
        .unwrap()
        .packages
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
}

/// Each release's version and `published_at` seconds.
fn dates(public: &Path, name: &str) -> Vec<(String, Option<i64>)> {
    package(public, name)
        .releases
        .into_iter()
        .map(|r| (r.version, r.published_at.map(|t| t.seconds)))
        .collect()
}

/// Each release's version and advisory indexes.
fn indexes(public: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    package(public, name)
        .releases
        .into_iter()
        .map(|r| (r.version, r.advisory_indexes))
        .collect()
}

/// Replaces every tarball of `public` by a fresh copy with a new modification time, as a CI
/// checkout of the tarballs gives.
fn fresh_copies(public: &Path, secs: u64) {
    for entry in fs::read_dir(public.join("tarballs")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, bytes).unwrap();
        set_mtime(&path, secs);
    }
}

fn verify_ok(cwd: &Path) -> String {
    ok(cwd, &["verify", "public", "--name=acme"])
}

#[test]
fn default_build_writes_no_release_dates() {
    let (tmp, public) = temp_public(&A);
    change(tmp.path(), &["build", "public"]);
    assert!(dates(&public, "acme_a").iter().all(|(_, d)| d.is_none()));
}

#[test]
fn release_dates_are_tarball_times_and_survive_rebuilds_from_fresh_copies() {
    let (tmp, public) = temp_public(&A);
    let mtimes = mtimes();
    change(tmp.path(), &["build", "public", "--published-at"]);
    let first = dates(&public, "acme_a");
    let expected: Vec<(String, Option<i64>)> = A
        .iter()
        .map(|t| {
            let version = t.trim_start_matches("acme_a-").trim_end_matches(".tar");
            (version.to_string(), Some(mtimes[*t] as i64))
        })
        .collect();
    assert_eq!(first, expected);
    // `names` keeps the task's updated_at: the newest tarball time.
    let names = fs::read(public.join("names")).unwrap();
    let names = hexreg::format::registry::open(&names).unwrap();
    let names = hexreg::format::registry::decode_names(&names.payload, "acme").unwrap();
    let newest = A.iter().map(|t| mtimes[*t] as i64).max();
    assert_eq!(
        names.packages[0].updated_at.map(|t| t.seconds),
        newest,
        "names.updated_at"
    );

    // A fresh checkout: new files, new times. With and without the flag, with the cache and
    // without it, the recorded dates stay.
    fresh_copies(&public, 2_000_000_000);
    change(tmp.path(), &["build", "public", "--published-at"]);
    assert_eq!(dates(&public, "acme_a"), first);
    fresh_copies(&public, 2_000_000_100);
    change(tmp.path(), &["build", "public", "--no-cache"]);
    assert_eq!(dates(&public, "acme_a"), first);
    fresh_copies(&public, 2_000_000_200);
    change(tmp.path(), &["build", "public"]);
    assert_eq!(dates(&public, "acme_a"), first);

    // A release found without a date gets its tarball's time.
    let new = Package::new("acme_a", "2.0.0").publish(&public);
    set_mtime(&new, 2_100_000_000);
    change(tmp.path(), &["build", "public", "--published-at"]);
    let mut now = first.clone();
    now.push(("2.0.0".into(), Some(2_100_000_000)));
    assert_eq!(dates(&public, "acme_a"), now);
    verify_ok(tmp.path());
}

#[test]
fn add_dates_new_releases_and_keeps_old_dates() {
    let (tmp, public) = temp_public(&A[..1]);
    change(tmp.path(), &["build", "public", "--published-at"]);
    let first = dates(&public, "acme_a");
    assert!(first[0].1.is_some());
    // The registry remembers `--published-at` (tests/testsuite/service.rs): turned off here.
    change(tmp.path(), &["build", "public", "--published-at=false"]);
    assert_eq!(dates(&public, "acme_a")[0], first[0]);

    // Without the flag a new release has no date; the old one keeps its own.
    let undated = tmp.path().join("acme_a-0.2.0.tar");
    fs::write(&undated, Package::new("acme_a", "0.2.0").tarball()).unwrap();
    change(tmp.path(), &["add", "public", undated.to_str().unwrap()]);
    assert_eq!(dates(&public, "acme_a")[1], ("0.2.0".into(), None));
    assert_eq!(dates(&public, "acme_a")[0], first[0]);

    // With it, the new release gets the time its tarball was stored.
    let dated = tmp.path().join("acme_b-0.1.0.tar");
    fs::write(&dated, Package::new("acme_b", "0.1.0").tarball()).unwrap();
    change(
        tmp.path(),
        &["add", "public", dated.to_str().unwrap(), "--published-at"],
    );
    let stored = fs::metadata(public.join("tarballs/acme_b-0.1.0.tar"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(
        dates(&public, "acme_b"),
        [("0.1.0".to_string(), Some(stored))]
    );

    // Retire and a rebuild keep both.
    change(
        tmp.path(),
        &["retire", "public", "acme_b", "0.1.0", "--reason=invalid"],
    );
    assert_eq!(dates(&public, "acme_b")[0].1, Some(stored));
    fresh_copies(&public, 2_000_000_000);
    change(tmp.path(), &["build", "public"]);
    assert_eq!(dates(&public, "acme_b")[0].1, Some(stored));
    assert_eq!(dates(&public, "acme_a")[0], first[0]);
    verify_ok(tmp.path());
}

#[test]
fn advisories_are_written_and_survive_build_add_remove_and_retire() {
    let (tmp, public) = temp_public(&A);
    change(tmp.path(), &["build", "public"]);
    let out = change(
        tmp.path(),
        &[
            "advisory",
            "add",
            "public",
            "acme_a",
            "--id=GHSA-aaaa-bbbb-cccc",
            "--summary=Remote code execution in acme_a.parse",
            "--url=https://example.com/GHSA-aaaa-bbbb-cccc",
            "--severity=high",
            "--affects=< 1.0.0",
            "--cvss=8.1",
            "--alias=CVE-2026-1234",
        ],
    );
    assert!(out.contains("* updating public/packages/acme_a"), "{out}");
    assert!(
        out.contains("GHSA-aaaa-bbbb-cccc affects acme_a 0.1.0, 0.2.0"),
        "{out}"
    );
    let p = package(&public, "acme_a");
    assert_eq!(p.advisories.len(), 1);
    let a = &p.advisories[0];
    assert_eq!(a.id, "GHSA-aaaa-bbbb-cccc");
    assert_eq!(a.summary, "Remote code execution in acme_a.parse");
    assert_eq!(a.html_url, "https://example.com/GHSA-aaaa-bbbb-cccc");
    assert_eq!(a.api_url, a.html_url);
    assert_eq!(
        a.severity,
        Some(proto::package::AdvisorySeverity::SeverityHigh as i32)
    );
    assert_eq!(a.cvss_score, Some(8.1));
    assert_eq!(a.aliases, ["CVE-2026-1234"]);
    let affected = vec![
        ("0.1.0".to_string(), vec![0]),
        ("0.2.0".to_string(), vec![0]),
        ("1.0.0".to_string(), vec![]),
    ];
    assert_eq!(indexes(&public, "acme_a"), affected);
    assert_eq!(versions(&public, "acme_a").with_advisories, [0, 1]);

    // A second advisory, then every other command: the advisories stay.
    change(
        tmp.path(),
        &[
            "advisory",
            "add",
            "public",
            "acme_a",
            "--id=GHSA-2",
            "--summary=DoS",
            "--url=https://example.com/GHSA-2",
            "--severity=low",
            "--affects=~> 0.2",
        ],
    );
    change(
        tmp.path(),
        &["retire", "public", "acme_a", "0.1.0", "--reason=security"],
    );
    fresh_copies(&public, 2_000_000_000);
    change(tmp.path(), &["build", "public", "--no-cache"]);
    change(tmp.path(), &["build", "public"]);
    let new = tmp.path().join("acme_a-0.3.0.tar");
    fs::write(&new, Package::new("acme_a", "0.3.0").tarball()).unwrap();
    change(tmp.path(), &["add", "public", new.to_str().unwrap()]);
    assert_eq!(
        indexes(&public, "acme_a"),
        [
            ("0.1.0".to_string(), vec![0]),
            ("0.2.0".to_string(), vec![0, 1]),
            ("0.3.0".to_string(), vec![]),
            ("1.0.0".to_string(), vec![]),
        ]
    );
    // Removing a release shifts the versions indexes.
    change(tmp.path(), &["remove", "public", "acme_a", "0.1.0"]);
    assert_eq!(versions(&public, "acme_a").with_advisories, [0]);
    let p = package(&public, "acme_a");
    assert_eq!(p.advisories.len(), 2);
    assert!(p.releases[0].retired.is_none());
    let list = ok(
        tmp.path(),
        &["advisory", "list", "public", "acme_a", "--name=acme"],
    );
    assert_eq!(
        list,
        "GHSA-aaaa-bbbb-cccc high cvss 8.1: Remote code execution in acme_a.parse <https://example.com/GHSA-aaaa-bbbb-cccc> affects 0.2.0\n\
         GHSA-2 low: DoS <https://example.com/GHSA-2> affects 0.2.0\n"
    );

    // Removing the first advisory renumbers the second.
    change(
        tmp.path(),
        &[
            "advisory",
            "remove",
            "public",
            "acme_a",
            "GHSA-aaaa-bbbb-cccc",
        ],
    );
    let p = package(&public, "acme_a");
    assert_eq!(p.advisories.len(), 1);
    assert_eq!(p.advisories[0].id, "GHSA-2");
    assert_eq!(p.releases[0].advisory_indexes, [0]);
    let err = refused(
        tmp.path(),
        &["advisory", "remove", "public", "acme_a", "GHSA-9"],
        1,
    );
    assert!(
        err.contains("package `acme_a` has no advisory `GHSA-9` (it has: GHSA-2)"),
        "{err}"
    );
    verify_ok(tmp.path());
}

#[test]
fn bad_advisories_and_policies_are_refused_and_nothing_is_written() {
    let (tmp, public) = temp_public(&A);
    change(tmp.path(), &["build", "public"]);
    let before = registry_files(&public);
    fn advisory<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "advisory",
            "add",
            "public",
            "acme_a",
            "--id=GHSA-1",
            "--summary=bad",
            "--url=https://example.com/1",
        ];
        args.extend(extra);
        args
    }

    let err = refused(
        tmp.path(),
        &advisory(&["--severity=severe", "--affects=< 1.0.0"]),
        2,
    );
    assert!(
        err.contains("invalid value 'severe' for '--severity <LEVEL>'")
            && err.contains("possible values: none, low, medium, high, critical"),
        "{err}"
    );
    for bad in [">= 1.0", "1.0.0 2.0.0", "latest", "< 1.0.0 and"] {
        let affects = format!("--affects={bad}");
        let err = refused(tmp.path(), &advisory(&["--severity=high", &affects]), 1);
        assert!(
            err.contains(&format!("--affects `{bad}` is not a version requirement")),
            "{err}"
        );
    }
    let err = refused(
        tmp.path(),
        &advisory(&["--severity=high", "--affects=< 1.0.0", "--cvss=12"]),
        1,
    );
    assert!(err.contains("--cvss 12 is not a CVSS score"), "{err}");
    let err = refused(
        tmp.path(),
        &[
            "advisory",
            "add",
            "public",
            "nosuch",
            "--id=GHSA-1",
            "--summary=bad",
            "--url=https://example.com/1",
            "--severity=high",
            "--affects=< 1.0.0",
        ],
        1,
    );
    assert!(
        err.contains("package `nosuch` is not in the registry"),
        "{err}"
    );

    for (args, message) in [
        (
            vec!["policy", "set", "public", "a/b"],
            "policy name `a/b` is not valid",
        ),
        (
            vec!["policy", "set", "public", "../escape"],
            "policy name `../escape` is not valid",
        ),
        (
            vec!["policy", "set", "public", "strict", "--cooldown=7h"],
            "--cooldown `7h` is not a duration Hex reads",
        ),
        (
            vec!["policy", "set", "public", "strict", "--deny=acme_b:>= 1.0"],
            "--deny `acme_b:...`: `>= 1.0` is not a version requirement",
        ),
        (
            vec!["policy", "set", "public", "strict", "--allow=Acme"],
            "--allow `Acme` does not start with a package name",
        ),
        (
            vec!["policy", "remove", "public", "a/b"],
            "policy name `a/b` is not valid",
        ),
    ] {
        let err = refused(tmp.path(), &args, 1);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let err = refused(
        tmp.path(),
        &["policy", "set", "public", "strict", "--min-severity=urgent"],
        2,
    );
    assert!(err.contains("invalid value 'urgent'"), "{err}");
    let err = refused(tmp.path(), &["policy", "remove", "public", "strict"], 1);
    assert!(err.contains("there is no policy `strict`"), "{err}");

    assert_eq!(registry_files(&public), before, "nothing was written");
    assert!(!public.join("policies").exists());
}

#[test]
fn policies_are_signed_decoded_listed_verified_and_removed() {
    let (tmp, public) = temp_public(&A);
    change(tmp.path(), &["build", "public"]);
    let out = change(
        tmp.path(),
        &[
            "policy",
            "set",
            "public",
            "strict",
            "--cooldown=7d",
            "--min-severity=high",
            "--retired=security,invalid",
            "--deny=acme_b",
            "--allow=acme_a:~> 0.2",
            "--description=CI policy",
        ],
    );
    assert_eq!(out, "* creating public/policies/strict\n");
    let bytes = fs::read(public.join("policies/strict")).unwrap();
    let policy =
        hexreg::format::policy::open_policy(&bytes, &public_key(), "acme", "strict").unwrap();
    use proto::policy::*;
    assert_eq!(
        policy,
        Policy {
            repository: "acme".into(),
            name: "strict".into(),
            description: Some("CI policy".into()),
            visibility: Visibility::Private as i32,
            repositories: vec![RepositoryPolicy {
                repository: "acme".into(),
                restriction: Some(Restriction {
                    advisory_min_severity: Some(AdvisorySeverity::SeverityHigh as i32),
                    retirement_reasons: vec![
                        RetirementReason::RetiredInvalid as i32,
                        RetirementReason::RetiredSecurity as i32
                    ],
                    cooldown: Some("7d".into()),
                }),
                overrides: vec![
                    Override {
                        action: OverrideAction::Allow as i32,
                        r#ref: PackageRef {
                            package: "acme_a".into(),
                            requirement: Some("~> 0.2".into()),
                        },
                        advisory_id: None,
                        retirement_reason: None,
                        comment: None,
                    },
                    Override {
                        action: OverrideAction::Deny as i32,
                        r#ref: PackageRef {
                            package: "acme_b".into(),
                            requirement: None,
                        },
                        advisory_id: None,
                        retirement_reason: None,
                        comment: None,
                    },
                ],
            }],
        }
    );
    // The reasons are one packed run (field 2, length 2, values 1 and 2), as hex_core writes.
    let opened = hexreg::format::registry::open(&bytes).unwrap();
    assert!(
        opened
            .payload
            .windows(4)
            .any(|w| w == [0x12, 0x02, 0x01, 0x02]),
        "packed retirement_reasons"
    );

    // Setting the same policy again changes nothing; another one replaces it.
    assert_eq!(
        change(
            tmp.path(),
            &[
                "policy",
                "set",
                "public",
                "strict",
                "--cooldown=7d",
                "--min-severity=high",
                "--retired=security,invalid",
                "--deny=acme_b",
                "--allow=acme_a:~> 0.2",
                "--description=CI policy",
            ],
        ),
        ""
    );
    change(
        tmp.path(),
        &["policy", "set", "public", "lax", "--cooldown=0", "--public"],
    );
    assert_eq!(
        ok(tmp.path(), &["policy", "list", "public", "--name=acme"]),
        "lax (public): repository acme, cooldown 0\n\
         strict (private): repository acme, cooldown 7d, min-severity high, retired invalid,security, allow acme_a:~> 0.2, deny acme_b\n"
    );
    // Builds and other changes leave policies alone.
    change(tmp.path(), &["build", "public"]);
    change(
        tmp.path(),
        &["retire", "public", "acme_a", "0.1.0", "--reason=other"],
    );
    assert_eq!(fs::read(public.join("policies/strict")).unwrap(), bytes);
    verify_ok(tmp.path());

    // verify checks them: another key's signature, garbage.
    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::create_dir_all(other.join("public/tarballs")).unwrap();
    ok(
        &other,
        &[
            "policy",
            "set",
            "public",
            "strict",
            "--name=acme",
            &key_arg(&other_private_key()),
        ],
    );
    fs::copy(
        other.join("public/policies/strict"),
        public.join("policies/strict"),
    )
    .unwrap();
    fs::write(public.join("policies/lax"), b"not gzip").unwrap();
    let out = hexreg(tmp.path(), &["verify", "public", "--name=acme"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("public/policies/strict: has a signature that does not verify"),
        "{stdout}"
    );
    assert!(
        stdout.contains("public/policies/lax: is not gzip data"),
        "{stdout}"
    );

    assert_eq!(
        change(tmp.path(), &["policy", "remove", "public", "lax"]),
        "* removing public/policies/lax\n"
    );
    assert!(!public.join("policies/lax").exists());
}
