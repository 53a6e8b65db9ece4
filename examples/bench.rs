//! Benchmark of `hexreg build` on a synthetic corpus.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench -- --packages 2000
//! cargo run --release --example bench -- --packages 21000 --max-releases 14   # hex.pm-sized
//! ```
//!
//! Writes N packages of 1 to `--max-releases` releases each (deterministic; genuine-format
//! tarballs of about 8 KB made with the tests' `Package` builder on the library's own writer,
//! each release depending on up to three other packages) into a temporary directory, then times `target/release/hexreg build`:
//! a full build of a fresh registry (empty cache), a rebuild where nothing changed, and a
//! rebuild after one new tarball. Wall time and the peak resident memory of the hexreg process
//! (from `wait4`) are printed, with the number of registry files each run rewrote. Each timed
//! run starts after a `sync`, so it does not pay for flushing the corpus just written.
//! `--hexreg PATH` times another binary (an older build, to compare side by side); `--dir DIR`
//! keeps the corpus in DIR, so that runs of two binaries read the same files.

// FFI: libc's sync and wait4 (the child's peak memory), which no safe crate here offers.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

// The tests' tarball builder: one generator for tests and benchmark alike.
#[allow(dead_code)]
#[path = "../tests/testsuite/support/package.rs"]
mod package;

#[path = "corpus/mod.rs"]
mod corpus;

use corpus::{Rng, generate, package_name, tarball};

struct Args {
    packages: usize,
    max_releases: usize,
    runs: usize,
    dir: Option<PathBuf>,
    jobs: Option<usize>,
    hexreg: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        packages: 2000,
        max_releases: 10,
        runs: 3,
        dir: None,
        jobs: None,
        hexreg: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--packages" => args.packages = value().parse().expect("--packages N"),
            "--max-releases" => args.max_releases = value().parse().expect("--max-releases N"),
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--dir" => args.dir = Some(PathBuf::from(value())),
            "--jobs" => args.jobs = Some(value().parse().expect("--jobs N")),
            "--hexreg" => args.hexreg = Some(PathBuf::from(value())),
            other => {
                panic!("unknown argument {other}; see the comment at the top of examples/bench.rs")
            }
        }
    }
    args
}

/// Runs hexreg, returning wall time and peak RSS in KiB.
fn run_hexreg(hexreg: &Path, work: &Path, jobs: Option<usize>) -> (Duration, u64) {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/private_key.pem");
    let mut cmd = Command::new(hexreg);
    cmd.current_dir(work)
        .env("XDG_CACHE_HOME", work.join("cache"))
        .args(["build", "public", "--name=acme", "--quiet"])
        .arg(format!("--private-key={}", key.display()));
    if let Some(jobs) = jobs {
        cmd.arg(format!("--jobs={jobs}"));
    }
    // Start from clean page cache state: what earlier steps wrote is on disk, so the build's
    // own flush (syncfs) flushes only what the build wrote.
    // SAFETY: sync has no preconditions.
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let start = Instant::now();
    // Reaped below by wait4, which also reports its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .spawn()
        .expect("run target/release/hexreg (cargo build --release first)");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    // SAFETY: rusage is a plain C struct of integers, for which all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and usage point to live locals.
    // SAFETY: status and usage are valid, writable, and live for the call; the pid is our
    // child's, not yet waited for.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "hexreg failed"
    );
    (wall, usage.ru_maxrss as u64)
}

fn registry_mtimes(public: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    for dir in [public.to_path_buf(), public.join("packages")] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_file() {
                out.insert(entry.path(), meta.modified().unwrap());
            }
        }
    }
    out
}

fn rewritten(before: &BTreeMap<PathBuf, SystemTime>, public: &Path) -> usize {
    registry_mtimes(public)
        .iter()
        .filter(|(p, t)| before.get(*p) != Some(t))
        .count()
}

fn median(mut v: Vec<(Duration, u64)>) -> (Duration, u64) {
    v.sort();
    let peak = v.iter().map(|x| x.1).max().unwrap_or(0);
    (v[v.len() / 2].0, peak)
}

fn main() {
    let args = parse_args();
    let hexreg = args.hexreg.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("hexreg")
    });
    let temp = tempfile::tempdir().unwrap();
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let corpus = base.join("corpus");
    let started = Instant::now();
    let (count, bytes) = if corpus.is_dir() {
        let n = fs::read_dir(&corpus).unwrap().count();
        let b = fs::read_dir(&corpus)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        (n, b)
    } else {
        generate(&corpus, args.packages, args.max_releases).expect("write the corpus")
    };
    println!(
        "corpus: {} packages, {count} tarballs, {:.1} MB (ready in {:.1?})",
        args.packages,
        bytes as f64 / 1e6,
        started.elapsed()
    );

    let (mut full, mut noop, mut add) = (vec![], vec![], vec![]);
    let (mut noop_rewrites, mut add_rewrites) = (0, 0);
    for run in 0..args.runs {
        let work = base.join(format!("run{run}"));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(work.join("public")).unwrap();
        // Hard links: the corpus is not copied, and each run starts from a fresh registry.
        fs::create_dir_all(work.join("public/tarballs")).unwrap();
        for entry in fs::read_dir(&corpus).unwrap() {
            let entry = entry.unwrap();
            fs::hard_link(
                entry.path(),
                work.join("public/tarballs").join(entry.file_name()),
            )
            .unwrap();
        }
        full.push(run_hexreg(&hexreg, &work, args.jobs));

        let public = work.join("public");
        let before = registry_mtimes(&public);
        noop.push(run_hexreg(&hexreg, &work, args.jobs));
        noop_rewrites = rewritten(&before, &public);

        let mut rng = Rng(run as u64 + 7);
        let name = package_name(rng.below(args.packages));
        let data = tarball(&mut rng, &name, &format!("9.{run}.0"), args.packages);
        fs::write(
            public
                .join("tarballs")
                .join(format!("{name}-9.{run}.0.tar")),
            data,
        )
        .unwrap();
        let before = registry_mtimes(&public);
        add.push(run_hexreg(&hexreg, &work, args.jobs));
        add_rewrites = rewritten(&before, &public);
    }
    // Run directories are removed only now: deleting thousands of files between runs makes
    // ext4's inode allocation in the next run slower than on any real registry.
    for run in 0..args.runs {
        let _ = fs::remove_dir_all(base.join(format!("run{run}")));
    }
    let show = |what: &str, (wall, rss): (Duration, u64), note: String| {
        println!(
            "{what:<28} {:>9.1} ms  peak RSS {:>7.1} MB  {note}",
            wall.as_secs_f64() * 1e3,
            rss as f64 / 1024.0
        );
    };
    println!("hexreg build, median of {} runs:", args.runs);
    show("full build (fresh)", median(full), String::new());
    show(
        "no-op rebuild",
        median(noop),
        format!("{noop_rewrites} files rewritten"),
    );
    show(
        "rebuild after one new tarball",
        median(add),
        format!("{add_rewrites} files rewritten"),
    );
}
