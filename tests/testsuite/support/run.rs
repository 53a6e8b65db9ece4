//! Running the hexreg binary.

use std::path::Path;
use std::process::{Command, Output};

use super::fixtures::private_key;

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

/// Runs hexreg in `cwd`, asserts it succeeded (else fails with its stderr) and returns its
/// stdout.
pub fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = hexreg(cwd, args);
    assert!(
        out.status.success(),
        "hexreg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs hexreg in `cwd`, asserts it failed with status 1 and returns its stderr.
pub fn fails(cwd: &Path, args: &[&str]) -> String {
    let out = hexreg(cwd, args);
    assert_eq!(out.status.code(), Some(1), "hexreg {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// `--private-key=KEY`.
pub fn key_arg(key: &Path) -> String {
    format!("--private-key={}", key.display())
}

/// `--private-key=` the fixture private key.
pub fn private_key_arg() -> String {
    key_arg(&private_key())
}

/// `build public --name=acme --private-key=KEY`, then `extra`.
pub fn build_args(key: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "build".to_string(),
        "public".into(),
        "--name=acme".into(),
        key_arg(key),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `hexreg build public --name=acme --private-key=KEY EXTRA...` in `cwd`, whatever
/// comes of it.
pub fn run_build(cwd: &Path, key: &Path, extra: &[&str]) -> Output {
    command(cwd).args(build_args(key, extra)).output().unwrap()
}

/// Runs `hexreg build public --name=acme --private-key=KEY` in `cwd`, asserts success and
/// returns stdout.
pub fn build(cwd: &Path, key: &Path) -> String {
    succeeded(run_build(cwd, key, &[]))
}

/// Runs `hexreg build` with the fixture key and `extra` arguments in `cwd`, asserts success
/// and returns stdout.
pub fn build_with(cwd: &Path, extra: &[&str]) -> String {
    succeeded(run_build(cwd, &private_key(), extra))
}

fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "hexreg build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
