//! keygen, add, remove, retire, unretire and verify: each works from the registry itself, with
//! the other tarballs absent, and rewrites nothing it need not.

use crate::support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hexreg::format::signing::PrivateKey;
use support::files::*;
use support::fixtures::*;
use support::package::Package;
use support::registry_check::check_registry;
use support::run::{build, fails, hexreg, ok, private_key_arg};

fn fixture_tarball(name: &str) -> String {
    fixtures().join("tarballs").join(name).display().to_string()
}

/// The release list of `packages/NAME` with each release's retirement reason.
fn releases(public: &Path, name: &str) -> Vec<(String, Option<i32>)> {
    let bytes = fs::read(public.join("packages").join(name)).unwrap();
    let opened = hexreg::format::registry::open(&bytes).unwrap();
    hexreg::format::registry::decode_package(&opened.payload, "acme", name)
        .unwrap()
        .releases
        .into_iter()
        .map(|r| (r.version, r.retired.map(|s| s.reason)))
        .collect()
}

/// A registry built from three fixture tarballs, whose tarballs are then all deleted (as on a
/// CI machine that syncs only the registry files).
fn registry_without_tarballs() -> tempfile::TempDir {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar", "acme_a-0.2.0.tar", "acme_b-0.1.0.tar"]);
    build(tmp.path(), &private_key());
    for entry in fs::read_dir(public.join("tarballs")).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    tmp
}

#[test]
fn version_prints_the_version() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = format!("hexreg {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(ok(tmp.path(), &["--version"]), expected);
    assert_eq!(ok(tmp.path(), &["-V"]), expected);
}

#[test]
fn keygen_writes_a_private_key_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(tmp.path(), &["keygen", "--out", "k.pem", "--bits", "3072"]);
    assert_eq!(out, "* creating k.pem\n");
    let path = tmp.path().join("k.pem");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = fs::read(&path).unwrap();
    assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(PrivateKey::from_pem(&pem).unwrap().bits(), 3072);

    let err = fails(tmp.path(), &["keygen", "--out", "k.pem"]);
    assert!(err.contains("k.pem already exists"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), pem, "the key stays as it was");

    // A generated key builds a registry that verifies.
    fs::create_dir(tmp.path().join("public")).unwrap();
    ok(
        tmp.path(),
        &["build", "public", "--name=acme", "--private-key=k.pem"],
    );
    assert!(ok(tmp.path(), &["verify", "public", "--name=acme"]).starts_with("ok: 0 packages"));
    let err = hexreg(tmp.path(), &["keygen", "--out", "x.pem", "--bits", "1024"]);
    assert_eq!(err.status.code(), Some(2), "usage error");
}

#[test]
fn add_works_without_the_other_tarballs_and_touches_only_its_package() {
    let tmp = registry_without_tarballs();
    let public = tmp.path().join("public");
    let before = registry_files(&public);
    let out = ok(
        tmp.path(),
        &[
            "add",
            "public",
            &fixture_tarball("acme_a-0.10.0.tar"),
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(
        out.contains("* creating public/tarballs/acme_a-0.10.0.tar\n"),
        "{out}"
    );
    assert!(out.contains("* updating public/packages/acme_a\n"), "{out}");
    assert!(out.contains("* updating public/versions\n"), "{out}");
    assert!(!out.contains("acme_b"), "{out}");
    let after = registry_files(&public);
    assert_eq!(after["packages/acme_b"], before["packages/acme_b"]);
    assert_eq!(
        releases(&public, "acme_a"),
        [
            ("0.1.0".into(), None),
            ("0.2.0".into(), None),
            ("0.10.0".into(), None)
        ]
    );

    // A new package.
    let out = ok(
        tmp.path(),
        &[
            "add",
            "public",
            &fixture_tarball("acme_c-0.1.0.tar"),
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(out.contains("* creating public/packages/acme_c\n"), "{out}");
    assert!(out.contains("* updating public/names\n"), "{out}");

    // Re-adding an identical tarball changes nothing.
    let before = registry_files(&public);
    let mtimes = mtimes_below(&public);
    let out = ok(
        tmp.path(),
        &[
            "add",
            "public",
            &fixture_tarball("acme_c-0.1.0.tar"),
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert_eq!(out, "");
    assert_eq!(registry_files(&public), before);
    assert_eq!(mtimes_below(&public), mtimes);

    // Once every tarball is back, a full build agrees with what add wrote.
    copy_tarballs(
        &public,
        &["acme_a-0.1.0.tar", "acme_a-0.2.0.tar", "acme_b-0.1.0.tar"],
    );
    let listed = check_registry(&public, "acme", &public_key());
    assert_eq!(listed.len(), 3);
    let built = ok(
        tmp.path(),
        &["build", "public", "--name=acme", &private_key_arg()],
    );
    assert!(
        !built.contains("packages/"),
        "build rewrote packages add wrote: {built}"
    );
}

#[test]
fn add_refuses_a_different_tarball_for_a_published_version_unless_replace() {
    let tmp = registry_without_tarballs();
    let public = tmp.path().join("public");
    let other = tmp.path().join("acme_b-0.1.0.tar");
    fs::write(
        &other,
        Package::new("acme_b", "0.1.0")
            .dep("acme_a", "~> 0.1")
            .tarball(),
    )
    .unwrap();
    let before = registry_files(&public);
    let err = fails(
        tmp.path(),
        &[
            "add",
            "public",
            other.to_str().unwrap(),
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(
        err.contains("already published with another tarball"),
        "{err}"
    );
    assert!(err.contains("--replace"), "{err}");
    assert_eq!(registry_files(&public), before);
    assert!(!public.join("tarballs/acme_b-0.1.0.tar").exists());

    let out = ok(
        tmp.path(),
        &[
            "add",
            "public",
            other.to_str().unwrap(),
            "--name=acme",
            &private_key_arg(),
            "--replace",
        ],
    );
    assert!(out.contains("* updating public/packages/acme_b\n"), "{out}");
    assert_eq!(
        fs::read(public.join("tarballs/acme_b-0.1.0.tar")).unwrap(),
        fs::read(&other).unwrap()
    );
}

#[test]
fn add_refuses_invalid_tarballs_and_a_registry_signed_by_another_key() {
    let tmp = registry_without_tarballs();
    let public = tmp.path().join("public");
    let bad = tmp.path().join("bad.tar");
    fs::write(&bad, b"not a tarball").unwrap();
    let before = registry_files(&public);
    let err = fails(
        tmp.path(),
        &[
            "add",
            "public",
            bad.to_str().unwrap(),
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(err.contains("bad.tar"), "{err}");
    let err = fails(
        tmp.path(),
        &[
            "add",
            "public",
            &fixture_tarball("acme_c-0.1.0.tar"),
            "--name=acme",
            &format!("--private-key={}", other_private_key().display()),
        ],
    );
    assert!(err.contains("public/names"), "{err}");
    assert!(err.contains("does not verify"), "{err}");
    assert_eq!(registry_files(&public), before);
}

#[test]
fn remove_a_version_then_the_package() {
    let tmp = registry_without_tarballs();
    let public = tmp.path().join("public");
    copy_tarballs(&public, &["acme_a-0.1.0.tar"]);
    let out = ok(
        tmp.path(),
        &[
            "remove",
            "public",
            "acme_a",
            "0.1.0",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert_eq!(
        out,
        "* updating public/packages/acme_a\n* updating public/versions\n* removing public/tarballs/acme_a-0.1.0.tar\n"
    );
    assert_eq!(releases(&public, "acme_a"), [("0.2.0".into(), None)]);
    assert!(!public.join("tarballs/acme_a-0.1.0.tar").exists());

    let err = fails(
        tmp.path(),
        &[
            "remove",
            "public",
            "acme_a",
            "9.9.9",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(
        err.contains("has no version `9.9.9` (it has: 0.2.0)"),
        "{err}"
    );
    let err = fails(
        tmp.path(),
        &[
            "remove",
            "public",
            "nope",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(
        err.contains("package `nope` is not in the registry"),
        "{err}"
    );

    let out = ok(
        tmp.path(),
        &[
            "remove",
            "public",
            "acme_a",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert_eq!(
        out,
        "* removing public/packages/acme_a\n* updating public/names\n* updating public/versions\n"
    );
    assert!(!public.join("packages/acme_a").exists());
    copy_tarballs(&public, &["acme_b-0.1.0.tar"]);
    assert_eq!(check_registry(&public, "acme", &public_key()).len(), 1);
}

#[test]
fn retire_and_unretire_and_build_keeps_retirements() {
    let tmp = registry_without_tarballs();
    let public = tmp.path().join("public");
    let out = ok(
        tmp.path(),
        &[
            "retire",
            "public",
            "acme_a",
            "0.2.0",
            "--reason=deprecated",
            "--message=use 0.10",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert_eq!(
        out,
        "* updating public/packages/acme_a\n* updating public/versions\n"
    );
    assert_eq!(
        releases(&public, "acme_a"),
        [("0.1.0".into(), None), ("0.2.0".into(), Some(3))]
    );
    // versions carries the retired index.
    let bytes = fs::read(public.join("versions")).unwrap();
    let opened = hexreg::format::registry::open(&bytes).unwrap();
    let versions = hexreg::format::registry::decode_versions(&opened.payload, "acme").unwrap();
    assert_eq!(versions.packages[0].retired, [1]);

    // A full build (tarballs back, one more release) keeps the retirement.
    copy_tarballs(
        &public,
        &[
            "acme_a-0.1.0.tar",
            "acme_a-0.2.0.tar",
            "acme_a-0.9.0.tar",
            "acme_b-0.1.0.tar",
        ],
    );
    ok(
        tmp.path(),
        &[
            "build",
            "public",
            "--name=acme",
            &private_key_arg(),
            "--no-cache",
        ],
    );
    assert_eq!(
        releases(&public, "acme_a"),
        [
            ("0.1.0".into(), None),
            ("0.2.0".into(), Some(3)),
            ("0.9.0".into(), None)
        ]
    );
    assert!(
        ok(tmp.path(), &["verify", "public", "--name=acme"])
            .starts_with("ok: 2 packages, 4 releases")
    );

    let out = ok(
        tmp.path(),
        &[
            "unretire",
            "public",
            "acme_a",
            "0.2.0",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert_eq!(
        out,
        "* updating public/packages/acme_a\n* updating public/versions\n"
    );
    assert!(releases(&public, "acme_a").iter().all(|(_, r)| r.is_none()));
    // Unretiring again changes nothing.
    assert_eq!(
        ok(
            tmp.path(),
            &[
                "unretire",
                "public",
                "acme_a",
                "0.2.0",
                "--name=acme",
                &private_key_arg()
            ]
        ),
        ""
    );
    let err = fails(
        tmp.path(),
        &[
            "retire",
            "public",
            "acme_a",
            "7.0.0",
            "--reason=other",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(err.contains("no version `7.0.0`"), "{err}");
}

#[test]
fn verify_names_every_problem() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar", "acme_b-0.1.0.tar", "acme_c-0.1.0.tar"]);
    build(tmp.path(), &private_key());
    let out = ok(tmp.path(), &["verify", "public", "--name=acme"]);
    assert_eq!(out.lines().count(), 1);
    assert!(out.starts_with("ok: 3 packages, 3 releases"), "{out}");

    // A wrong repository name.
    let out = hexreg(tmp.path(), &["verify", "public", "--name=other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("public/names: belongs to repository `acme`, expected `other`")
    );

    // Tampering: a resource signed by another key, a flipped byte in a tarball, an unlisted
    // tarball, a missing tarball.
    let (other, _) = temp_public(&["acme_b-0.1.0.tar"]);
    build(other.path(), &other_private_key());
    fs::copy(
        other.path().join("public/packages/acme_b"),
        public.join("packages/acme_b"),
    )
    .unwrap();
    let a = public.join("tarballs/acme_a-0.1.0.tar");
    let mut bytes = fs::read(&a).unwrap();
    bytes[600] ^= 1;
    fs::write(&a, bytes).unwrap();
    copy_tarballs(&public, &["acme_a-0.2.0.tar"]);
    fs::remove_file(public.join("tarballs/acme_c-0.1.0.tar")).unwrap();

    let out = hexreg(tmp.path(), &["verify", "public", "--name=acme"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("public/packages/acme_b: has a signature that does not verify"),
        "{stdout}"
    );
    assert!(
        stdout.contains("public/tarballs/acme_a-0.1.0.tar: sha256 is"),
        "{stdout}"
    );
    // An unlisted tarball is what a stopped add or publish leaves: a note, not a problem.
    assert!(
        stdout.contains("note: public/tarballs/acme_a-0.2.0.tar: is not listed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("public/tarballs/acme_c-0.1.0.tar: is missing"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 problems in public"));

    // With the other key given explicitly, acme_b verifies but the rest does not.
    let pem = tmp.path().join("other_public.pem");
    fs::write(
        &pem,
        PrivateKey::from_pem(&fs::read(other_private_key()).unwrap())
            .unwrap()
            .public_key()
            .to_pem(hexreg::format::signing::PublicKeyFormat::Spki),
    )
    .unwrap();
    let out = hexreg(
        tmp.path(),
        &[
            "verify",
            "public",
            "--name=acme",
            "--public-key",
            pem.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("public/names: has a signature that does not verify"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("public/packages/acme_b: has a signature"),
        "{stdout}"
    );
}

#[test]
fn verify_tells_problems_from_a_registry_it_cannot_check() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar"]);
    build(tmp.path(), &private_key());
    assert_eq!(
        hexreg(tmp.path(), &["verify", "public", "--name=acme"])
            .status
            .code(),
        Some(0)
    );
    // Problems found: 1.
    fs::remove_file(public.join("tarballs/acme_a-0.1.0.tar")).unwrap();
    let out = hexreg(tmp.path(), &["verify", "public", "--name=acme"]);
    assert_eq!(out.status.code(), Some(1), "problems found");
    assert!(String::from_utf8_lossy(&out.stdout).contains("is missing"));
    // Cannot check at all: 2, as a usage error.
    let out = hexreg(tmp.path(), &["verify", "nothing_here", "--name=acme"]);
    assert_eq!(out.status.code(), Some(2), "not a directory");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing_here is not a directory"));
    let out = hexreg(
        tmp.path(),
        &[
            "verify",
            "public",
            "--name=acme",
            "--public-key=missing.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "no key");
}

#[test]
fn contradicting_or_zero_options_are_usage_errors() {
    let (tmp, _public) = temp_public(&["acme_a-0.1.0.tar"]);
    let key = private_key_arg();
    for args in [
        vec![
            "build",
            "public",
            "--name=acme",
            key.as_str(),
            "--no-cache",
            "--cache-dir=c",
        ],
        vec!["build", "public", "--name=acme", key.as_str(), "--jobs=0"],
    ] {
        let out = hexreg(tmp.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!tmp.path().join("public/names").exists(), "{args:?} wrote");
    }
}

#[test]
fn after_removing_the_newest_release_a_build_changes_nothing() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar", "acme_a-0.2.0.tar", "acme_b-0.1.0.tar"]);
    set_mtime(&public.join("tarballs/acme_a-0.1.0.tar"), 1_600_000_000);
    set_mtime(&public.join("tarballs/acme_a-0.2.0.tar"), 1_700_000_000);
    build(tmp.path(), &private_key());
    ok(
        tmp.path(),
        &[
            "remove",
            "public",
            "acme_a",
            "0.2.0",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    // names now holds acme_a's remaining tarball's time, as a build computes it.
    let out = ok(
        tmp.path(),
        &[
            "build",
            "public",
            "--name=acme",
            &private_key_arg(),
            "--no-cache",
        ],
    );
    assert_eq!(out, "", "a build after remove rewrote: {out}");
}
