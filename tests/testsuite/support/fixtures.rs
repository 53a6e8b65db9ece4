//! The bundled fixtures (`fixtures/`): keys, genuine tarballs with the mtimes the reference
//! run saw, and temporary registry directories made of them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hexreg::engine::Signer;
use hexreg::format::signing::{PrivateKey, PublicKey};

/// `fixtures/` of this repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn private_key() -> PathBuf {
    fixtures().join("private_key.pem")
}

pub fn other_private_key() -> PathBuf {
    fixtures().join("other_private_key.pem")
}

/// The engine's signer with [`private_key`], for tests that drive the library directly.
pub fn signer() -> Signer {
    let key = PrivateKey::from_pem(&fs::read(private_key()).unwrap()).unwrap();
    Signer::new(key, "fixtures/private_key.pem")
}

/// The public half of [`private_key`].
pub fn public_key() -> PublicKey {
    PrivateKey::from_pem(&fs::read(private_key()).unwrap())
        .unwrap()
        .public_key()
}

/// The tarball mtimes the reference run saw (`fixtures/mtimes.txt`).
pub fn mtimes() -> BTreeMap<String, u64> {
    fs::read_to_string(fixtures().join("mtimes.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (secs, name) = l.split_once(' ')?;
            Some((name.to_string(), secs.parse().ok()?))
        })
        .collect()
}

/// Sets a file's modification time to `secs` Unix seconds.
pub fn set_mtime(path: &Path, secs: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Copies fixture tarballs into `public/tarballs`, with the reference mtimes.
pub fn copy_tarballs(public: &Path, names: &[&str]) {
    let dir = public.join("tarballs");
    fs::create_dir_all(&dir).unwrap();
    let mtimes = mtimes();
    for name in names {
        let dest = dir.join(name);
        fs::copy(fixtures().join("tarballs").join(name), &dest).unwrap();
        set_mtime(&dest, mtimes[*name]);
    }
}

/// Names of every fixture tarball, sorted.
pub fn all_tarballs() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures().join("tarballs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A temporary directory holding `public/tarballs/` with these fixture tarballs (no registry
/// built yet), and the path of its `public/`.
pub fn temp_public(tarballs: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    copy_tarballs(&public, tarballs);
    (tmp, public)
}
