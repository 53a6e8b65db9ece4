//! Shared test helpers: the bundled fixtures, temporary registries, and running the binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

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

/// The hexreg binary, to run in `cwd`, with its cache in `cwd/.cache` (never the user's).
pub fn command(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hexreg"));
    cmd.current_dir(cwd)
        .env("XDG_CACHE_HOME", cwd.join(".cache"));
    cmd
}

/// Runs the hexreg binary in `cwd`.
pub fn hexreg(cwd: &Path, args: &[&str]) -> Output {
    command(cwd).args(args).output().unwrap()
}

/// Runs `hexreg build public --name=acme --private-key=KEY` in `cwd` and asserts success.
pub fn build(cwd: &Path, key: &Path) -> String {
    let out = hexreg(
        cwd,
        &[
            "build",
            "public",
            "--name=acme",
            &format!("--private-key={}", key.display()),
        ],
    );
    assert!(
        out.status.success(),
        "hexreg build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file below `dir` (relative path → bytes), `tarballs/` left out.
pub fn registry_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    collect(dir, dir, &mut files);
    files.retain(|rel, _| !rel.starts_with("tarballs/"));
    files
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(rel, fs::read(&path).unwrap());
        }
    }
}

/// Every file below `dir` (relative path → modification time).
pub fn mtimes_below(dir: &Path) -> BTreeMap<String, SystemTime> {
    registry_files(dir)
        .keys()
        .map(|rel| {
            let t = fs::metadata(dir.join(rel)).unwrap().modified().unwrap();
            (rel.clone(), t)
        })
        .collect()
}
