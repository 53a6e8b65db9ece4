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

/// What must hold even after a build was killed: every file whole and verifiable, every
/// package in `names` and `versions` has its `packages/` file, every release there has its
/// tarball. (`versions` may lag behind `packages/*` written just before the kill.) Returns
/// package name → versions in `packages/NAME`.
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
            let file = public
                .join("tarballs")
                .join(format!("{}-{}.tar", package.name, release.version));
            let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(
                Some(hexreg::format::tarball::outer_checksum(&bytes).to_vec()),
                release.outer_checksum,
                "{} checksum",
                file.display()
            );
        }
        out.insert(package.name.clone(), release_versions);
    }
    PublicKey::from_pem(&fs::read(public.join("public_key")).unwrap()).unwrap();
    out
}
