//! The cache speeds rebuilds up but never decides what the registry says: a corrupt, stale or
//! outdated cache, or registry files changed behind hexreg's back, still give the registry a
//! build without any cache gives.

use crate::support;

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use support::files::registry_files;
use support::fixtures::*;
use support::package::Package;
use support::registry_check::check_registry;
use support::run::{build_with, ok, private_key_arg};

/// The registry a cache-less build makes of the tarballs of `public` (same names, same mtimes).
fn reference_registry(public: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let other = tempfile::tempdir().unwrap();
    let dest = other.path().join("public/tarballs");
    fs::create_dir_all(&dest).unwrap();
    for entry in fs::read_dir(public.join("tarballs")).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        fs::copy(entry.path(), &to).unwrap();
        let mtime = entry.metadata().unwrap().modified().unwrap();
        fs::File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    build_with(other.path(), &["--no-cache"]);
    registry_files(&other.path().join("public"))
}

fn cache_files(cwd: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(cwd.join(".cache/hexreg"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn setup() -> tempfile::TempDir {
    let (tmp, _) = temp_public(&[
        "acme_a-0.1.0.tar",
        "acme_a-0.2.0.tar",
        "acme_b-0.1.0.tar",
        "acme_c-0.1.0.tar",
    ]);
    assert!(!build_with(tmp.path(), &[]).is_empty());
    assert_eq!(cache_files(tmp.path()).len(), 1, "the build keeps a cache");
    tmp
}

#[test]
fn a_corrupt_cache_is_ignored() {
    let tmp = setup();
    let public = tmp.path().join("public");
    for garbage in [b"".to_vec(), b"not a cache".to_vec(), vec![0xff; 4096]] {
        for file in cache_files(tmp.path()) {
            fs::write(file, &garbage).unwrap();
        }
        // The registry is current: nothing to write, whatever the cache says.
        assert_eq!(build_with(tmp.path(), &[]), "");
        assert_eq!(registry_files(&public), reference_registry(&public));
    }
    // A cache with one flipped byte fails its checksum.
    build_with(tmp.path(), &[]);
    for file in cache_files(tmp.path()) {
        let mut bytes = fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(file, bytes).unwrap();
    }
    fs::remove_file(public.join("packages/acme_b")).unwrap();
    assert_eq!(
        build_with(tmp.path(), &[]),
        "* creating public/packages/acme_b\n"
    );
    assert_eq!(registry_files(&public), reference_registry(&public));
}

#[test]
fn a_tarball_replaced_in_place_with_its_old_size_and_mtime_is_read_again() {
    let tmp = setup();
    let public = tmp.path().join("public");
    let file = public.join("tarballs/zeta-0.1.0.tar");
    let old = Package::new("zeta", "0.1.0").tarball();
    fs::write(&file, &old).unwrap();
    assert!(build_with(tmp.path(), &[]).contains("* creating public/packages/zeta"));
    let old_mtime = fs::metadata(&file).unwrap().modified().unwrap();
    // Another zeta 0.1.0 (other dependencies), padded by tar to the same size.
    let new = Package::new("zeta", "0.1.0")
        .dep("acme_b", "~> 0.1")
        .tarball();
    assert_eq!(
        new.len(),
        old.len(),
        "the test wants a same-size replacement"
    );
    assert_ne!(new, old);
    fs::write(&file, &new).unwrap(); // same inode, new content
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();

    assert_eq!(
        build_with(tmp.path(), &[]),
        "* updating public/packages/zeta\n"
    );
    assert_eq!(registry_files(&public), reference_registry(&public));
    check_registry(&public, "acme", &public_key());
}

#[test]
fn an_outdated_cache_is_harmless() {
    let tmp = setup();
    let public = tmp.path().join("public");
    let snapshot: Vec<(std::path::PathBuf, Vec<u8>)> = cache_files(tmp.path())
        .into_iter()
        .map(|f| (f.clone(), fs::read(&f).unwrap()))
        .collect();
    // The registry moves on: a release added, one removed...
    copy_tarballs(&public, &["acme_a-0.9.0.tar"]);
    fs::remove_file(public.join("tarballs/acme_b-0.1.0.tar")).unwrap();
    build_with(tmp.path(), &[]);
    // ...then the old cache comes back (a restored backup, a shared cache directory).
    for (file, bytes) in &snapshot {
        fs::write(file, bytes).unwrap();
    }
    assert_eq!(build_with(tmp.path(), &[]), "");
    assert_eq!(registry_files(&public), reference_registry(&public));
    check_registry(&public, "acme", &public_key());
}

#[test]
fn registry_files_changed_behind_hexregs_back_are_rewritten() {
    let tmp = setup();
    let public = tmp.path().join("public");
    let a = public.join("packages/acme_a");
    let mtime: SystemTime = fs::metadata(&a).unwrap().modified().unwrap();
    // Someone copies another package's file over acme_a and sets the mtime back.
    fs::write(&a, fs::read(public.join("packages/acme_b")).unwrap()).unwrap();
    fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::write(public.join("versions"), b"garbage").unwrap();

    let out = build_with(tmp.path(), &[]);
    assert_eq!(
        out,
        "* updating public/packages/acme_a\n* updating public/versions\n"
    );
    assert_eq!(registry_files(&public), reference_registry(&public));
}

#[test]
fn retirements_survive_in_cached_and_uncached_builds() {
    let tmp = setup();
    let public = tmp.path().join("public");
    // Fails the test, with retire's stderr, unless retire succeeds.
    ok(
        tmp.path(),
        &[
            "retire",
            "public",
            "acme_a",
            "0.1.0",
            "--reason=security",
            "--message=CVE-2026-1",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    let retired = registry_files(&public);
    // A tarball added elsewhere: acme_a's file is untouched and keeps its retirement.
    copy_tarballs(&public, &["acme_b-0.2.0.tar"]);
    build_with(tmp.path(), &[]);
    assert_eq!(
        registry_files(&public)["packages/acme_a"],
        retired["packages/acme_a"]
    );
    // A release added to acme_a: its file is rewritten, the retirement kept, with or without
    // the cache.
    copy_tarballs(&public, &["acme_a-0.9.0.tar"]);
    build_with(tmp.path(), &["--no-cache"]);
    let with_new = registry_files(&public);
    let bytes = &with_new["packages/acme_a"];
    let opened = hexreg::format::registry::open(bytes).unwrap();
    let package =
        hexreg::format::registry::decode_package(&opened.payload, "acme", "acme_a").unwrap();
    let r = package
        .releases
        .iter()
        .find(|r| r.version == "0.1.0")
        .unwrap();
    assert_eq!(r.retired.as_ref().unwrap().reason, 2);
    assert_eq!(
        r.retired.as_ref().unwrap().message.as_deref(),
        Some("CVE-2026-1")
    );
}
