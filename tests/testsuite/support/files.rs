//! What a directory holds, to compare before and after a run.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Every file below `dir` (relative path → bytes), `tarballs/` and the audit trail left out.
pub fn registry_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    collect(dir, dir, &mut files);
    // hexreg's own records (the API's `.hexreg-api/`, the audit trail and release times in
    // `.hexreg/`) are not part of the registry clients read.
    files.retain(|rel, _| {
        !rel.starts_with("tarballs/")
            && !rel.starts_with(".hexreg-api/")
            && !rel.starts_with(".hexreg/")
    });
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

/// Every file below `dir` (relative path → modification time), `tarballs/` left out.
pub fn mtimes_below(dir: &Path) -> BTreeMap<String, SystemTime> {
    registry_files(dir)
        .keys()
        .map(|rel| {
            let t = fs::metadata(dir.join(rel)).unwrap().modified().unwrap();
            (rel.clone(), t)
        })
        .collect()
}

/// The regular files directly in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}
