//! `hexreg key add|list|revoke`: keys printed once, stored as hashes in a 0600 file, and
//! accepted by the library's `KeyStore`.

use crate::support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hexreg::keys::{KeyStore, Permission};
use support::run::{command, fails, ok};

/// `hexreg key add --keys keys LABEL [--write]` in `cwd`: the key it printed.
fn add(cwd: &Path, label: &str, write: bool) -> String {
    let mut args = vec!["key", "add", "--keys", "keys", label];
    if write {
        args.push("--write");
    }
    let out = ok(cwd, &args);
    out.strip_suffix('\n').expect("one line").to_string()
}

fn is_key(key: &str) -> bool {
    key.strip_prefix("hexreg_").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[test]
fn add_list_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let keys = cwd.join("keys");

    let reader = add(cwd, "ci", false);
    let writer = add(cwd, "release.bot", true);
    assert!(is_key(&reader), "{reader:?}");
    assert!(is_key(&writer), "{writer:?}");
    assert_ne!(reader, writer);

    assert_eq!(
        fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = fs::read_to_string(&keys).unwrap();
    for key in [&reader, &writer] {
        assert!(!text.contains(&key["hexreg_".len()..]), "key text stored");
    }

    let listed = ok(cwd, &["key", "list", "--keys", "keys"]);
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[0][..2], ["ci", "read"]);
    assert_eq!(rows[1][..2], ["release.bot", "write"]);
    // YYYY-MM-DD HH:MM:SS, then what the key may write.
    assert!(
        rows.iter()
            .all(|r| r.len() == 5 && r[2].len() == 10 && r[3].len() == 8)
    );
    assert_eq!(rows[0][4], "-");
    assert_eq!(rows[1][4], "packages=*");

    // The library accepts the printed keys.
    let store = KeyStore::open(&keys, |_| {}).unwrap();
    let grant = store.authenticate(&reader).unwrap();
    assert_eq!(
        (grant.label.as_str(), grant.permission),
        ("ci", Permission::Read)
    );
    let grant = store.authenticate(&writer).unwrap();
    assert_eq!(grant.permission, Permission::Write);
    let mut tampered = reader.clone();
    let last = if tampered.pop() == Some('0') {
        '1'
    } else {
        '0'
    };
    tampered.push(last);
    assert!(store.authenticate(&tampered).is_none());

    // An existing label is refused, and the file left as it was.
    let err = fails(cwd, &["key", "add", "--keys", "keys", "ci", "--write"]);
    assert!(
        err.starts_with("error: ") && err.contains("exists already"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&keys).unwrap(), text);

    // Revoked: gone from the list and from the store.
    let out = ok(cwd, &["key", "revoke", "--keys", "keys", "ci"]);
    assert!(out.contains("revoked key ci"), "{out}");
    let listed = ok(cwd, &["key", "list", "--keys", "keys"]);
    assert!(!listed.contains("ci "), "{listed}");
    assert!(listed.starts_with("release.bot"), "{listed}");
    store.refresh();
    assert!(store.authenticate(&reader).is_none());
    assert!(store.authenticate(&writer).is_some());

    let err = fails(cwd, &["key", "revoke", "--keys", "keys", "ci"]);
    assert!(err.contains("the keys file holds: release.bot"), "{err}");
}

#[test]
fn keys_file_from_the_environment_or_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let out = command(cwd)
        .args(["key", "add", "ci"])
        .env("HEXREG_KEYS", "from-env")
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(is_key(key.trim_end()), "{key:?}");
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(note.contains("only its hash is kept"), "{note}");
    assert!(cwd.join("from-env").is_file());

    let out = command(cwd)
        .args(["key", "list"])
        .env_remove("HEXREG_KEYS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--keys") && err.contains("HEXREG_KEYS"),
        "{err}"
    );

    let err = fails(cwd, &["key", "list", "--keys", "missing"]);
    assert!(err.contains("hexreg key add --keys missing"), "{err}");
}
