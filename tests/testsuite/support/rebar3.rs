//! rebar3, the real Hex client the tests drive: found on PATH (or the test is skipped), and run
//! in a sandbox that holds nothing of the caller's environment.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rebar3 executable on PATH, or `None` after printing the skip notice for `test`.
pub fn rebar3_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("rebar3"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: rebar3 not installed (test {test})");
    }
    found
}

/// A command isolated from the caller's environment: everything inherited (DEBUG, QUIET,
/// HEX_*, REBAR_*, ERL_*, proxies, XDG_*...) dropped but PATH, so that `/usr/bin/env escript`
/// and `erl` are found; HOME, rebar3's cache and global config and TMPDIR in `sandbox`.
pub fn isolated(program: &Path, sandbox: &Path) -> Command {
    let home = sandbox.join("home");
    let cache = sandbox.join("rebar3-cache");
    let global_config = sandbox.join("rebar3-config");
    let tmp = sandbox.join("tmp");
    for d in [&home, &cache, &global_config, &tmp] {
        fs::create_dir_all(d).unwrap();
    }
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("REBAR_CACHE_DIR", &cache)
        .env("REBAR_GLOBAL_CONFIG_DIR", &global_config)
        .env("REBAR_COLOR", "none");
    cmd
}
