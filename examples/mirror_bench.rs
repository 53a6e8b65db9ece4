//! Benchmark of `hexreg mirror` over loopback.
//!
//! ```text
//! cargo build --release && cargo run --release --example mirror_bench -- --packages 2000
//! ```
//!
//! Writes the synthetic corpus the build benchmark uses (N packages of 1 to `--max-releases`
//! releases, tarballs of about 8 KB, each release depending on up to three other packages),
//! builds it into an upstream registry with `target/release/hexreg build`, serves it with
//! `hexreg serve` on 127.0.0.1, then times `hexreg mirror`: a full mirror into an empty
//! directory, the no-op rerun, and a filtered mirror (`--only` of 20 packages and the closure
//! of their dependencies). Requests and bytes are counted from the server's request log.
//! `--jobs N` sets the mirror's parallel downloads (default: hexreg's, 8). `--s3 s3://BUCKET/PREFIX`
//! also times a full mirror into that bucket and its no-op rerun (the bucket reached through the
//! AWS_* environment, e.g. a local `moto_server` with `AWS_ENDPOINT_URL=http://127.0.0.1:5000
//! AWS_ALLOW_HTTP=true`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// The tests' tarball builder: one generator for tests and benchmarks alike.
#[allow(dead_code)]
#[path = "../tests/testsuite/support/package.rs"]
mod package;

#[path = "corpus/mod.rs"]
mod corpus;

struct Args {
    packages: usize,
    max_releases: usize,
    jobs: Option<usize>,
    s3: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        packages: 2000,
        max_releases: 10,
        jobs: None,
        s3: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--packages" => args.packages = value().parse().expect("--packages N"),
            "--max-releases" => args.max_releases = value().parse().expect("--max-releases N"),
            "--jobs" => args.jobs = Some(value().parse().expect("--jobs N")),
            "--s3" => args.s3 = Some(value()),
            other => panic!(
                "unknown argument {other}; see the comment at the top of examples/mirror_bench.rs"
            ),
        }
    }
    args
}

/// `hexreg serve` on a free loopback port, its request log collected.
struct Serve {
    child: std::process::Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start(hexreg: &Path, public: &Path) -> Serve {
        let mut child = Command::new(hexreg)
            .arg("serve")
            .arg(public)
            .args(["--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run target/release/hexreg serve (cargo build --release first)");
        let mut reader = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut first = String::new();
        reader
            .read_line(&mut first)
            .expect("read serve's first line");
        let url = first
            .trim_end()
            .rsplit_once(" on ")
            .map(|(_, url)| url.to_string())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Serve { child, url, log }
    }

    /// Requests and body bytes logged from line `from` on.
    fn since(&self, from: usize) -> (usize, u64) {
        // Let the last log lines of the run land (a benchmark, not a test).
        std::thread::sleep(Duration::from_millis(300));
        let log = self.log.lock().unwrap();
        let requests: Vec<&String> = log[from..]
            .iter()
            .filter(|l| l.starts_with("GET "))
            .collect();
        let bytes = requests
            .iter()
            .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
            .sum();
        (requests.len(), bytes)
    }

    fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let args = parse_args();
    let hexreg: PathBuf = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("hexreg");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let key = manifest.join("fixtures/private_key.pem");
    let temp = tempfile::tempdir().unwrap();
    let base = temp.path();
    let up = base.join("up");
    let (count, bytes) = corpus::generate(&up.join("tarballs"), args.packages, args.max_releases)
        .expect("write the corpus");
    let status = Command::new(&hexreg)
        .current_dir(base)
        .env("XDG_CACHE_HOME", base.join("cache"))
        .args(["build", "up", "--name=hexpm", "--quiet"])
        .arg(format!("--private-key={}", key.display()))
        .status()
        .unwrap();
    assert!(status.success(), "hexreg build failed");
    let spki = hexreg::format::signing::PrivateKey::from_pem(&std::fs::read(&key).unwrap())
        .unwrap()
        .public_key()
        .to_pem(hexreg::format::signing::PublicKeyFormat::Spki);
    std::fs::write(base.join("upstream.pem"), spki).unwrap();
    println!(
        "upstream: {} packages, {count} tarballs, {:.1} MB, served by hexreg serve on loopback",
        args.packages,
        bytes as f64 / 1e6
    );
    let serve = Serve::start(&hexreg, &up);

    let mirror = |label: &str, dest: &str, extra: &[String]| {
        let mut cmd = Command::new(&hexreg);
        cmd.current_dir(base)
            .args(["mirror", dest, "--from", &serve.url, "--quiet"])
            .arg(format!(
                "--upstream-key={}",
                base.join("upstream.pem").display()
            ))
            .args(extra);
        if let Some(jobs) = args.jobs {
            cmd.arg(format!("--jobs={jobs}"));
        }
        let from = serve.len();
        let start = Instant::now();
        let out = cmd.output().unwrap();
        let wall = start.elapsed();
        assert!(
            out.status.success(),
            "hexreg mirror failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (requests, bytes) = serve.since(from);
        println!(
            "{label:<26} {:>9.1} ms  {requests:>6} requests  {:>8.1} MB",
            wall.as_secs_f64() * 1e3,
            bytes as f64 / 1e6
        );
    };
    let filtered: Vec<String> = (0..20)
        .map(|i| format!("--only={}", corpus::package_name(i * 97 % args.packages)))
        .chain([
            "--name=hexpm".to_string(),
            format!(
                "--private-key={}",
                manifest.join("fixtures/other_private_key.pem").display()
            ),
        ])
        .collect();
    mirror("full", "full", &[]);
    mirror("full, no-op rerun", "full", &[]);
    mirror("filtered", "filtered", &filtered);
    mirror("filtered, no-op rerun", "filtered", &filtered);
    if let Some(bucket) = &args.s3 {
        mirror("full into S3", bucket, &[]);
        mirror("full into S3, no-op rerun", bucket, &[]);
    }
}
