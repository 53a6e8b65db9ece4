//! Whether a registry directory is whole and consistent: every resource signed and
//! verifiable, `names`, `versions` and `packages/*` agreeing, every release's tarball there
//! with its recorded outer checksum.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use hexreg::format::registry;
use hexreg::format::signing::PublicKey;

/// Checks that every registry file below `public` is whole, signed by `key` and consistent:
/// `names` and `versions` list the same packages, each with its `packages/` file, whose
/// releases match `versions` and have their tarball with the recorded outer checksum.
/// Returns package name → versions.
pub fn check_registry(public: &Path, repo: &str, key: &PublicKey) -> BTreeMap<String, Vec<String>> {
    check(public, repo, key, true)
}

/// What clients need even after a build or a publish was killed: every file whole and
/// verifiable, every package in `names` and `versions` has its `packages/` file, every release
/// in every `packages/` file has its tarball with the recorded outer checksum. (`names` and
/// `versions` may differ by a package, and `versions` may lag behind `packages/*` written just
/// before the kill: the engine's write order allows both.) Returns package name → versions in
/// `packages/NAME` for the packages `versions` lists.
pub fn check_after_kill(
    public: &Path,
    repo: &str,
    key: &PublicKey,
) -> BTreeMap<String, Vec<String>> {
    check(public, repo, key, false)
}

fn check(
    public: &Path,
    repo: &str,
    key: &PublicKey,
    strict: bool,
) -> BTreeMap<String, Vec<String>> {
    let open = |rel: &str| {
        let bytes = fs::read(public.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let opened = registry::open(&bytes).unwrap_or_else(|e| panic!("{rel} {e}"));
        opened.verify(key).unwrap_or_else(|e| panic!("{rel} {e}"));
        opened.payload
    };
    let names = registry::decode_names(&open("names"), repo).unwrap();
    let versions = registry::decode_versions(&open("versions"), repo).unwrap();
    let listed: Vec<&str> = names.packages.iter().map(|p| p.name.as_str()).collect();
    let versioned: Vec<&str> = versions.packages.iter().map(|p| p.name.as_str()).collect();
    // A run killed between the renames of `names` and `versions` leaves them one package
    // apart; every package either lists must still have its file (checked below for
    // `versions`, here for `names`).
    if strict {
        assert_eq!(
            listed, versioned,
            "names and versions list different packages"
        );
    } else {
        for name in &listed {
            assert!(
                public.join("packages").join(name).is_file(),
                "names lists {name} without its packages/ file"
            );
        }
    }
    let mut out = BTreeMap::new();
    for package in &versions.packages {
        let rel = format!("packages/{}", package.name);
        let decoded = registry::decode_package(&open(&rel), repo, &package.name).unwrap();
        let release_versions: Vec<String> =
            decoded.releases.iter().map(|r| r.version.clone()).collect();
        if strict {
            assert_eq!(
                release_versions, package.versions,
                "{rel} and versions disagree"
            );
        }
        for release in &decoded.releases {
            check_tarball(
                public,
                &package.name,
                &release.version,
                &release.outer_checksum,
            );
        }
        out.insert(package.name.clone(), release_versions);
    }
    if !strict {
        // A package whose `packages/` file was written but that no index lists yet (hidden
        // files are the engine's temporary files).
        for entry in fs::read_dir(public.join("packages")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || versioned.contains(&name.as_str()) {
                continue;
            }
            let rel = format!("packages/{name}");
            let decoded = registry::decode_package(&open(&rel), repo, &name).unwrap();
            for release in &decoded.releases {
                check_tarball(public, &name, &release.version, &release.outer_checksum);
            }
        }
    }
    PublicKey::from_pem(&fs::read(public.join("public_key")).unwrap()).unwrap();
    out
}

/// `tarballs/NAME-VERSION.tar` is there, with the outer checksum `recorded`.
fn check_tarball(public: &Path, name: &str, version: &str, recorded: &Option<Vec<u8>>) {
    let file = public
        .join("tarballs")
        .join(format!("{name}-{version}.tar"));
    let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(
        &Some(hexreg::format::tarball::outer_checksum(&bytes).to_vec()),
        recorded,
        "{} checksum",
        file.display()
    );
}
