//! Replays the four reference scenarios of `mix hex.registry build` (fixtures/{empty,full,
//! remove,newkey}) with `hexreg build` and compares every resource with the task's, byte for
//! byte: payload and signature first (to say which differs), then the whole gzip file.

use crate::support;

use std::fs;
use std::io::Read;
use std::path::Path;

use prost::Message;
use support::files::*;
use support::fixtures::*;
use support::package::Package;
use support::run::*;

/// Compares the registry in `public` with `fixtures/<scenario>/expected`.
fn assert_same_registry(public: &Path, scenario: &str) {
    let expected = registry_files(&fixtures().join(scenario).join("expected"));
    let actual = registry_files(public);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{scenario}: files differ"
    );
    for (rel, want) in &expected {
        let have = &actual[rel];
        if rel != "public_key" {
            let (hp, hs) = payload_and_signature(have);
            let (wp, ws) = payload_and_signature(want);
            assert_eq!(hp, wp, "{scenario}: payload of {rel} differs");
            assert_eq!(hs, ws, "{scenario}: signature of {rel} differs");
        }
        assert!(have == want, "{scenario}: bytes of {rel} differ");
    }
}

fn payload_and_signature(file: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut raw)
        .unwrap();
    let signed = hexreg::format::proto::signed::Signed::decode(raw.as_slice()).unwrap();
    (signed.payload, signed.signature.unwrap())
}

/// The task's stdout for a scenario, less the lines about files whose bytes did not change
/// since `previous` (hexreg neither rewrites nor lists those).
fn expected_stdout(scenario: &str, previous: Option<&str>) -> String {
    let task = fs::read_to_string(fixtures().join(scenario).join("stdout.txt")).unwrap();
    let Some(previous) = previous else {
        return task;
    };
    let before = registry_files(&fixtures().join(previous).join("expected"));
    let after = registry_files(&fixtures().join(scenario).join("expected"));
    let changed = |rel: &str| before.get(rel) != after.get(rel);
    task.lines()
        .filter(|line| {
            if line.starts_with("* public key at ") {
                return changed("public_key");
            }
            match line.strip_prefix("* updating public/") {
                Some(rel) => changed(rel),
                None => true,
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn empty_public_dir() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("public")).unwrap();
    let stdout = build(tmp.path(), &private_key());
    assert_eq!(stdout, expected_stdout("empty", None));
    assert_same_registry(&tmp.path().join("public"), "empty");
    assert!(tmp.path().join("public/tarballs").is_dir());
    assert!(!tmp.path().join("public/packages").exists());
}

#[test]
fn full_then_remove_then_newkey() {
    let all = all_tarballs();
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let (tmp, public) = temp_public(&names);

    let stdout = build(tmp.path(), &private_key());
    assert_eq!(stdout, expected_stdout("full", None));
    assert_same_registry(&public, "full");

    fs::remove_file(public.join("tarballs/acme_edge-0.1.0.tar")).unwrap();
    let stdout = build(tmp.path(), &private_key());
    assert_eq!(stdout, expected_stdout("remove", Some("full")));
    assert_same_registry(&public, "remove");

    let stdout = build(tmp.path(), &other_private_key());
    assert_eq!(stdout, expected_stdout("newkey", Some("remove")));
    assert_same_registry(&public, "newkey");
}

#[test]
fn unchanged_registry_is_neither_rewritten_nor_listed() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar", "acme_b-0.1.0.tar"]);
    assert!(!build(tmp.path(), &private_key()).is_empty());
    let before = mtimes_below(&public);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(build(tmp.path(), &private_key()), "");
    assert_eq!(mtimes_below(&public), before);
}

#[test]
fn new_tarball_mtime_updates_names_only() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar"]);
    build(tmp.path(), &private_key());
    set_mtime(&public.join("tarballs/acme_a-0.1.0.tar"), 1_800_000_000);
    assert_eq!(
        build(tmp.path(), &private_key()),
        "* updating public/names\n"
    );
}

#[test]
fn paths_are_printed_from_the_argument_as_given() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("public")).unwrap();
    let out = hexreg(
        tmp.path(),
        &[
            "build",
            "public/",
            "--name",
            "acme",
            "--private-key",
            private_key().to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "* creating public//public_key\n* creating public/tarballs\n* creating public//names\n* creating public//versions\n"
    );
}

#[test]
fn spki_public_key_format() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("public")).unwrap();
    let out = run_build(tmp.path(), &private_key(), &["--public-key-format=spki"]);
    assert!(out.status.success());
    let pem = fs::read(tmp.path().join("public/public_key")).unwrap();
    assert!(pem.starts_with(b"-----BEGIN PUBLIC KEY-----\n"));
    let spki = hexreg::format::signing::PublicKey::from_pem(&pem).unwrap();
    let pkcs1 = hexreg::format::signing::PublicKey::from_pem(
        &fs::read(fixtures().join("full/expected/public_key")).unwrap(),
    )
    .unwrap();
    assert_eq!(spki, pkcs1);
}

#[test]
fn output_is_the_same_whatever_the_number_of_threads() {
    let mut registries = Vec::new();
    for jobs in ["1", "2", "5"] {
        let all = all_tarballs();
        let (tmp, public) = temp_public(&all.iter().map(String::as_str).collect::<Vec<_>>());
        for p in 0..40 {
            Package::new(&format!("pkg{p:02}"), "1.0.0")
                .dep("acme_a", "~> 0.1")
                .publish(&public);
            Package::new(&format!("pkg{p:02}"), "1.1.0-rc.1").publish(&public);
        }
        for entry in fs::read_dir(public.join("tarballs")).unwrap() {
            set_mtime(&entry.unwrap().path(), 1_700_000_000);
        }
        let out = run_build(tmp.path(), &private_key(), &["--jobs", jobs]);
        assert!(out.status.success());
        registries.push((
            jobs,
            String::from_utf8(out.stdout).unwrap(),
            registry_files(&public),
        ));
    }
    let (_, stdout, files) = &registries[0];
    // public_key, names, versions, 6 fixture packages, 40 synthetic ones.
    assert_eq!(files.len(), 3 + 6 + 40);
    for (jobs, other_stdout, other_files) in &registries[1..] {
        assert_eq!(other_stdout, stdout, "--jobs {jobs}: stdout differs");
        assert!(other_files == files, "--jobs {jobs}: registry differs");
    }
}
