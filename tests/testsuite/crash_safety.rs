//! A registry is never damaged: builds killed at any moment leave every file whole and the
//! registry consistent; concurrent builds do not interleave; the lock dies with its process;
//! the private key is never published; files and directories get the usual modes.

use crate::support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::files::registry_files;
use support::fixtures::*;
use support::package::Package;
use support::registry_check::{check_after_kill, check_registry};
use support::run::*;

/// `count` packages of `releases` releases each, each release depending on the previous
/// package.
fn corpus(public: &Path, count: usize, releases: usize) {
    for p in 0..count {
        let name = format!("pkg{p:04}");
        let dep = format!("pkg{:04}", p.saturating_sub(1));
        for r in 0..releases {
            let package = Package::new(&name, &format!("0.{r}.0"));
            let package = if p > 0 {
                package.dep(&dep, "~> 0.1")
            } else {
                package
            };
            package.publish(public);
        }
    }
}

/// Starts `hexreg build public` in `cwd` without the cache, its output discarded.
fn spawn_quiet_build(cwd: &Path) -> std::process::Child {
    command(cwd)
        .args(build_args(&private_key(), &["--no-cache"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills `child` with SIGKILL after `delay` (or finds it finished) and reaps it.
fn kill_after(mut child: std::process::Child, delay: Duration) {
    std::thread::sleep(delay);
    let _ = child.kill();
    child.wait().unwrap();
}

fn temp_files(public: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [public.to_path_buf(), public.join("packages")] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".hexreg-tmp-") {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn builds_killed_at_any_moment_leave_a_whole_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    corpus(&public, 300, 2);
    build(tmp.path(), &private_key());
    let key = public_key();
    check_registry(&public, "acme", &key);

    // How long a build that rewrites every resource takes, uninterrupted.
    let round = |n: u64| {
        for p in 0..300 {
            Package::new(&format!("pkg{p:04}"), &format!("1.{n}.0")).publish(&public);
        }
        spawn_quiet_build(tmp.path())
    };
    let started = Instant::now();
    assert!(round(0).wait().unwrap().success());
    let full = started.elapsed();

    // Each round adds a release to every package, so every resource gets rewritten, and kills
    // the build (SIGKILL) at a growing fraction of that time: reading, writing packages/*,
    // writing names and versions, or done.
    let mut mid_write = 0;
    for n in 1..=24u64 {
        kill_after(round(n), full * n as u32 / 22);
        // Whatever the moment, every file is whole, verifiable and consistent.
        let packages = check_after_kill(&public, "acme", &key);
        let newest = format!("1.{n}.0");
        let updated = packages.values().filter(|v| v.contains(&newest)).count();
        mid_write += usize::from(updated > 0 && updated < 300);
    }
    eprintln!("builds of {full:?} killed while writing packages/*: {mid_write} of 24");

    // The next run completes the registry and removes what killed runs left behind.
    build(tmp.path(), &private_key());
    assert_eq!(temp_files(&public), Vec::<String>::new());
    let packages = check_registry(&public, "acme", &key);
    assert_eq!(packages.len(), 300);
    assert!(packages.values().all(|v| v.len() == 2 + 25));
}

/// The files and directories a first build may leave in `public`, besides `tarballs/`.
fn outputs(public: &Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(public)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "tarballs")
        .collect();
    found.sort();
    found
}

#[test]
fn first_builds_killed_at_any_moment_leave_all_of_packages_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    corpus(&public, 300, 2);
    let key = public_key();
    let first_build = || {
        for name in outputs(&public) {
            let path = public.join(&name);
            if path.is_dir() {
                fs::remove_dir_all(&path).unwrap();
            } else {
                fs::remove_file(&path).unwrap();
            }
        }
        spawn_quiet_build(tmp.path())
    };
    let started = Instant::now();
    assert!(first_build().wait().unwrap().success());
    let full = started.elapsed();

    // A first build stages `packages/` whole under a temporary name, then renames it: killed at
    // any moment, it leaves no `packages/` or all of it, and an index only beside all of it.
    let mut staging = 0;
    for n in 1..=20u32 {
        kill_after(first_build(), full * n / 18);
        let left = outputs(&public);
        let staged = left
            .iter()
            .any(|name| name.starts_with(".hexreg-tmp-packages"));
        staging += usize::from(staged);
        let packages = public.join("packages");
        if packages.exists() {
            assert_eq!(fs::read_dir(&packages).unwrap().count(), 300, "{left:?}");
            for p in 0..300 {
                let rel = format!("packages/pkg{p:04}");
                let opened = hexreg::format::registry::open(&fs::read(public.join(&rel)).unwrap())
                    .unwrap_or_else(|e| panic!("{rel} {e}"));
                opened.verify(&key).unwrap_or_else(|e| panic!("{rel} {e}"));
            }
        }
        if public.join("names").exists() || public.join("versions").exists() {
            assert!(packages.exists(), "an index without packages/: {left:?}");
            check_after_kill(&public, "acme", &key);
        }
    }
    eprintln!("first builds of {full:?} killed while staging packages/: {staging} of 20");

    // A build over what a killed first build left removes its staged directory.
    let mut child = first_build();
    while !outputs(&public)
        .iter()
        .any(|name| name.starts_with(".hexreg-tmp-packages"))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before staging"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    child.wait().unwrap();
    build(tmp.path(), &private_key());
    assert_eq!(temp_files(&public), Vec::<String>::new());
    assert_eq!(check_registry(&public, "acme", &key).len(), 300);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&public.join("packages")), 0o755);
    assert_eq!(mode(&public.join("packages/pkg0000")), 0o644);
}

#[test]
fn a_held_lock_makes_no_wait_fail_and_others_wait() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar"]);
    let held = fs::File::open(&public).unwrap();
    held.lock().unwrap();

    let out = command(tmp.path())
        .args(build_args(&private_key(), &["--no-wait"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another hexreg run is changing public"),
        "{stderr}"
    );
    assert!(registry_files(&public).is_empty(), "nothing may be written");

    // Without --no-wait the build waits for the lock, then runs.
    let mut child = command(tmp.path())
        .args(build_args(&private_key(), &[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the build must wait");
    assert!(
        registry_files(&public).is_empty(),
        "a waiting build writes nothing"
    );
    held.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for another hexreg run"));
    check_registry(&public, "acme", &public_key());
}

#[test]
fn concurrent_builds_all_succeed_and_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    corpus(&public, 100, 3);
    let children: Vec<_> = (0..4)
        .map(|_| {
            command(tmp.path())
                .args(build_args(&private_key(), &["--no-cache"]))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Exactly one run created the files; the others, serialised behind it, found nothing to do.
    let created: Vec<usize> = outputs
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .matches("* creating")
                .count()
        })
        .collect();
    assert_eq!(created.iter().filter(|n| **n > 0).count(), 1, "{created:?}");
    // 100 packages, public_key, names, versions.
    assert_eq!(created.iter().sum::<usize>(), 100 + 3, "{created:?}");
    check_registry(&public, "acme", &public_key());
}

#[test]
fn the_lock_dies_with_a_killed_build() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    corpus(&public, 200, 2);
    let mut child = command(tmp.path())
        .args(build_args(&private_key(), &["--no-cache"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _ = child.kill();
    child.wait().unwrap();
    let out = command(tmp.path())
        .args(build_args(&private_key(), &["--no-wait"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_registry(&public, "acme", &public_key());
}

#[test]
fn a_private_key_inside_public_dir_is_refused() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar"]);
    fs::copy(private_key(), public.join("key.pem")).unwrap();
    for key in ["public/key.pem", "./public/../public/key.pem"] {
        let out = hexreg(
            tmp.path(),
            &["build", "public", "--name=acme", "--private-key", key],
        );
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("lies inside the public directory"),
            "{stderr}"
        );
        assert!(stderr.contains(key), "{stderr}");
    }
    let left: Vec<_> = registry_files(&public).into_keys().collect();
    assert_eq!(left, ["key.pem"], "nothing but the key itself");
}

#[test]
fn bad_key_files_are_refused_before_anything_is_written() {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar"]);
    let two = tmp.path().join("two.pem");
    fs::write(
        &two,
        [
            fs::read(private_key()).unwrap(),
            fs::read(other_private_key()).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let encrypted = tmp.path().join("enc.pem");
    fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let ec = tmp.path().join("ec.pem");
    fs::write(
        &ec,
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    for (key, words) in [
        (tmp.path().join("missing.pem"), "cannot read private key"),
        (two, "holds 2 PEM blocks"),
        (encrypted, "openssl pkey"),
        (ec, "is a EC key"),
    ] {
        let out = hexreg(
            tmp.path(),
            &build_args(&key, &[])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(&key.display().to_string()), "{stderr}");
        assert!(stderr.contains(words), "{stderr}");
        assert!(registry_files(&public).is_empty());
    }
}

#[test]
fn files_are_0644_and_directories_0755_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    fs::create_dir(&public).unwrap();
    fs::write(
        tmp.path().join("a.tar"),
        Package::new("a", "1.0.0").tarball(),
    )
    .unwrap();
    let script = format!(
        "umask 077 && mkdir -p public/tarballs && cp a.tar public/tarballs/a-1.0.0.tar && exec {} build public --name=acme --private-key={}",
        env!("CARGO_BIN_EXE_hexreg"),
        private_key().display()
    );
    let out = std::process::Command::new("sh")
        .current_dir(tmp.path())
        .env("XDG_CACHE_HOME", tmp.path().join(".cache"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &str| fs::metadata(public.join(p)).unwrap().permissions().mode() & 0o777;
    for file in ["names", "versions", "public_key", "packages/a"] {
        assert_eq!(mode(file), 0o644, "{file}");
    }
    assert_eq!(mode("packages"), 0o755);
}
