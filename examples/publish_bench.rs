//! Benchmark of publishing through `hexreg serve`'s Hex API against a full `hexreg build`
//! (issue #13, point 4).
//!
//! ```text
//! cargo build --release && cargo run --release --example publish_bench -- --packages 2000
//! ```
//!
//! On the corpus of `examples/bench.rs` (same generator, same seed: N packages of 1 to
//! `--max-releases` releases; `--dir DIR` reuses DIR/corpus, e.g. one `bench --dir DIR` made):
//! 1. times `target/release/hexreg build` of a fresh registry (fresh tarball links, fresh
//!    XDG_CACHE_HOME, after a `sync`), `--runs` times;
//! 2. serves the first of those registries with `hexreg serve --name acme --private-key
//!    --keys` on a loopback port and times `--publishes` single publishes of new releases:
//!    from sending `POST /api/publish` until its 201 arrives, each followed by
//!    `GET /packages/NAME` through the same server, which must hold the new version (gunzip,
//!    signature checked against PUBLIC_DIR/public_key, protobuf decoded);
//! 3. runs C = 1, 4, 16 clients, each on its own keep-alive connection, publishing distinct new
//!    releases, `--total` publishes per C, and reports publishes per second;
//! 4. runs `hexreg verify PUBLIC_DIR --name acme` on the final registry.
//!
//! The publish/full-build ratio is against hexreg's own full build; the 8.5 s of
//! `mix hex.registry build` on this corpus was measured on another machine and is shown only
//! as context.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

// The tests' tarball builder, as examples/bench.rs uses it.
#[allow(dead_code)]
#[path = "../tests/testsuite/support/package.rs"]
mod package;

#[path = "corpus/mod.rs"]
mod corpus;

use corpus::{Rng, generate, package_name, tarball};

/// `mix hex.registry build` on the 2,000-package bench corpus, measured earlier on another
/// machine: context only, not comparable with timings taken here.
const TASK_SECONDS_ELSEWHERE: f64 = 8.5;
/// Socket timeout: a hung server fails the benchmark instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// Client counts of the concurrency runs.
const CLIENTS: [usize; 3] = [1, 4, 16];
const REPO: &str = "acme";

struct Args {
    packages: usize,
    max_releases: usize,
    runs: usize,
    publishes: usize,
    total: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        packages: 2000,
        max_releases: 10,
        runs: 3,
        publishes: 20,
        total: 200,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"));
        let number = |v: Result<String>| -> Result<usize> {
            let v = v?;
            let n: usize = v
                .parse()
                .with_context(|| format!("{flag} {v}: not a number"))?;
            ensure!(n > 0, "{flag} must be at least 1");
            Ok(n)
        };
        match flag.as_str() {
            "--packages" => args.packages = number(value)?,
            "--max-releases" => args.max_releases = number(value)?,
            "--runs" => args.runs = number(value)?,
            "--publishes" => args.publishes = number(value)?,
            "--total" => args.total = number(value)?,
            "--dir" => args.dir = Some(PathBuf::from(value?)),
            other => bail!(
                "unknown argument {other}; see the comment at the top of examples/publish_bench.rs"
            ),
        }
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
/// A new release (a version no corpus package has: major 9 and up) of a package of the corpus.
struct NewRelease {
    name: String,
    version: String,
    tarball: Vec<u8>,
}

fn new_release(seed: u64, package: usize, version: String, packages: usize) -> NewRelease {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let name = package_name(package % packages);
    let tarball = tarball(&mut rng, &name, &version, packages);
    NewRelease {
        name,
        version,
        tarball,
    }
}

// ---------------------------------------------------------------------------------------------
// hexreg as child processes

/// The hexreg binary next to this example's directory (target/release/hexreg).
fn hexreg_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("hexreg"))
        .context("no directory above the example binary")?;
    ensure!(
        bin.is_file(),
        "{} is missing: run `cargo build --release` first",
        bin.display()
    );
    Ok(bin)
}

fn private_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/private_key.pem")
}

/// A fresh `work/public/tarballs` of hard links to the corpus.
fn fresh_registry(corpus: &Path, work: &Path) -> Result<()> {
    let tarballs = work.join("public/tarballs");
    fs::create_dir_all(&tarballs)?;
    for entry in fs::read_dir(corpus)? {
        let entry = entry?;
        fs::hard_link(entry.path(), tarballs.join(entry.file_name()))?;
    }
    Ok(())
}

/// Times `hexreg build public --name acme` in `work` with an empty XDG_CACHE_HOME.
fn full_build(hexreg: &Path, work: &Path) -> Result<Duration> {
    let cache = work.join("cache");
    ensure!(!cache.exists(), "{} is not fresh", cache.display());
    // What earlier steps wrote goes to disk first, so the build flushes only its own files.
    let synced = Command::new("sync").status()?;
    ensure!(synced.success(), "sync failed: {synced}");
    let start = Instant::now();
    let out = Command::new(hexreg)
        .current_dir(work)
        .env("XDG_CACHE_HOME", &cache)
        .args([
            "build",
            "public",
            "--name",
            REPO,
            "--quiet",
            "--private-key",
        ])
        .arg(private_key())
        .output()?;
    let wall = start.elapsed();
    ensure!(
        out.status.success(),
        "hexreg build failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(wall)
}

/// `hexreg serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(hexreg: &Path, public: &Path, keys: &Path) -> Result<Server> {
        let mut child = Command::new(hexreg)
            .arg("serve")
            .arg(public)
            .args(["--name", REPO, "--bind", "127.0.0.1:0", "--quiet"])
            .arg("--private-key")
            .arg(private_key())
            .arg("--keys")
            .arg(keys)
            .env_remove("HEXREG_AUTH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn hexreg serve")?;
        let stderr = child.stderr.take().context("piped stderr")?;
        // From here on `server` kills the child on any error.
        let mut server = Server { child, port: 0 };
        let mut reader = BufReader::new(stderr);
        let mut first = String::new();
        reader.read_line(&mut first)?;
        server.port = first
            .trim_end()
            .strip_prefix("serving ")
            .and_then(|rest| rest.rsplit_once(" on http://127.0.0.1:"))
            .and_then(|(_, port)| port.parse().ok())
            .with_context(|| format!("hexreg serve's first stderr line: {first:?}"))?;
        // Keep reading so the pipe never fills up; echo only errors and warnings (each
        // publish also logs the files it changed).
        std::thread::spawn(move || {
            for line in reader.lines().map_while(|l| l.ok()) {
                if line.contains("error") || line.contains("warning") {
                    eprintln!("hexreg serve: {line}");
                }
            }
        });
        Ok(server)
    }

    fn connect(&self) -> Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .with_context(|| format!("connect to 127.0.0.1:{}", self.port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client

struct Client {
    reader: BufReader<TcpStream>,
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Client {
    fn request(&mut self, method: &str, path: &str, key: &str, body: &[u8]) -> Result<Response> {
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {key}\r\n\
             accept: application/vnd.hex+erlang\r\ncontent-length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            raw.push_str("content-type: application/octet-stream\r\n");
        }
        raw.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(raw.as_bytes())?;
        stream.write_all(body)?;
        self.read_response()
            .with_context(|| format!("{method} {path}: reading the response"))
    }

    fn read_response(&mut self) -> Result<Response> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("bad header line {line:?}"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse::<usize>()?),
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = self.line()?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .with_context(|| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    while !self.line()?.is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..])?;
                self.line()?;
            }
        } else {
            let length = length.context("response with neither content-length nor chunks")?;
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        }
        Ok(Response { status, body })
    }

    /// One header line without its CRLF.
    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line)?;
        ensure!(n > 0, "connection closed by the server");
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    /// Publishes `release`; an error unless the answer is 201.
    fn publish(&mut self, key: &str, release: &NewRelease) -> Result<()> {
        let r = self.request("POST", "/api/publish?replace=false", key, &release.tarball)?;
        if r.status != 201 {
            bail!(
                "publishing {} {}: status {} instead of 201: {}",
                release.name,
                release.version,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok(())
    }

    /// `GET /packages/NAME`, checked and decoded: its versions.
    fn versions(
        &mut self,
        key: &str,
        public: &hexreg::format::signing::PublicKey,
        name: &str,
    ) -> Result<Vec<String>> {
        let r = self.request("GET", &format!("/packages/{name}"), key, &[])?;
        ensure!(
            r.status == 200,
            "GET /packages/{name}: status {} instead of 200",
            r.status
        );
        let package = hexreg::format::registry::open_package(&r.body, public, REPO, name)
            .map_err(|e| anyhow!("GET /packages/{name}: {e}"))?;
        Ok(package.releases.into_iter().map(|r| r.version).collect())
    }
}

// ---------------------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The nearest-rank `p` quantile of sorted `v`.
fn quantile(v: &[Duration], p: f64) -> Duration {
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let hexreg = hexreg_binary()?;
    let temp = tempfile::tempdir()?;
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let corpus = base.join("corpus");
    let started = Instant::now();
    let tarballs = if corpus.is_dir() {
        fs::read_dir(&corpus)?.count()
    } else {
        generate(&corpus, args.packages, args.max_releases)?.0
    };
    println!(
        "corpus: {} packages, {tarballs} tarballs (ready in {:.1?})",
        args.packages,
        started.elapsed()
    );

    // 1. Full builds; the first registry is the one served afterwards.
    let mut builds = Vec::new();
    for run in 0..args.runs {
        let work = base.join(format!("pubrun{run}"));
        let _ = fs::remove_dir_all(&work);
        fresh_registry(&corpus, &work)?;
        builds.push(full_build(&hexreg, &work).with_context(|| format!("full build {run}"))?);
    }
    let mut sorted_builds = builds.clone();
    sorted_builds.sort();
    let full = sorted_builds[sorted_builds.len() / 2];
    println!(
        "full builds: {}",
        builds
            .iter()
            .map(|d| format!("{:.0} ms", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let work = base.join("pubrun0");
    let public = work.join("public");
    let public_key =
        hexreg::format::signing::PublicKey::from_pem(&fs::read(public.join("public_key"))?)
            .map_err(|e| anyhow!("{}: {e}", public.join("public_key").display()))?;
    let keys = base.join("keys");
    let _ = fs::remove_file(&keys);
    let out = Command::new(&hexreg)
        .args(["key", "add", "--keys"])
        .arg(&keys)
        .args(["bench", "--write"])
        .output()?;
    ensure!(
        out.status.success(),
        "hexreg key add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout)?.trim().to_string();
    ensure!(!key.is_empty(), "hexreg key add printed no key");

    let server = Server::start(&hexreg, &public, &keys)?;

    // 2. Publish to visible, one at a time.
    let mut client = server.connect()?;
    let mut publish_times = Vec::new();
    for k in 0..args.publishes {
        let release = new_release(k as u64 + 1, k * 97 + 13, format!("9.{k}.0"), args.packages);
        let before = client.versions(&key, &public_key, &release.name)?;
        ensure!(
            !before.contains(&release.version),
            "{} {} exists before publishing",
            release.name,
            release.version
        );
        let start = Instant::now();
        client.publish(&key, &release)?;
        publish_times.push(start.elapsed());
        let after = client.versions(&key, &public_key, &release.name)?;
        ensure!(
            after.contains(&release.version),
            "{} {} got 201 but GET /packages/{} right after lists only {:?}",
            release.name,
            release.version,
            release.name,
            after
        );
    }
    drop(client);
    publish_times.sort();
    let (p50, p90) = (quantile(&publish_times, 0.5), quantile(&publish_times, 0.9));

    // 3. Concurrent clients.
    let mut throughput = Vec::new();
    for (ci, &clients) in CLIENTS.iter().enumerate() {
        let total = args.total;
        // Client c publishes releases c, c + clients, ...: `total` distinct ones in all.
        let work: Vec<Vec<NewRelease>> = (0..clients)
            .map(|c| {
                (c..total)
                    .step_by(clients)
                    .map(|i| {
                        new_release(
                            (1000 * (ci + 1) + i) as u64,
                            i * 31 + ci * 7,
                            format!("{}.{i}.0", 10 + ci),
                            args.packages,
                        )
                    })
                    .collect()
            })
            .collect();
        let connections = (0..clients)
            .map(|_| server.connect())
            .collect::<Result<Vec<_>>>()?;
        let barrier = Barrier::new(clients + 1);
        let (elapsed, results) = std::thread::scope(|s| {
            let handles: Vec<_> = connections
                .into_iter()
                .zip(&work)
                .map(|(mut client, releases)| {
                    let (barrier, key) = (&barrier, &key);
                    s.spawn(move || -> Result<usize> {
                        barrier.wait();
                        for release in releases {
                            client.publish(key, release)?;
                        }
                        Ok(releases.len())
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let results: Vec<Result<usize>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))
                })
                .collect();
            (start.elapsed(), results)
        });
        let mut created = 0;
        for result in results {
            created += result.with_context(|| format!("{clients} concurrent clients"))?;
        }
        ensure!(created == total, "{created} of {total} publishes got 201");
        throughput.push((clients, created, elapsed));
    }
    drop(server);

    // 4. The final registry verifies.
    let verify = Command::new(&hexreg)
        .arg("verify")
        .arg(&public)
        .args(["--name", REPO])
        .output()?;
    let verified = verify.status.success();

    let ratio = ms(p50) / ms(full);
    println!();
    println!(
        "registry: {} packages, {tarballs} tarballs; hexreg build, median of {}: {:.0} ms",
        args.packages,
        args.runs,
        ms(full)
    );
    println!(
        "publish to visible (POST sent -> 201), {} new releases, each seen by GET /packages/NAME right after:",
        publish_times.len()
    );
    println!(
        "  median {:>7.1} ms   p90 {:>7.1} ms   min {:.1} ms   max {:.1} ms",
        ms(p50),
        ms(p90),
        ms(publish_times[0]),
        ms(publish_times[publish_times.len() - 1])
    );
    println!(
        "  median publish / hexreg full build        = 1/{:.0} ({:.4}; goal <= 1/100 of the task's full build)",
        1.0 / ratio,
        ratio
    );
    println!(
        "  median publish / task (mix hex.registry build, {TASK_SECONDS_ELSEWHERE} s, measured on ANOTHER machine; context only) = 1/{:.0}",
        TASK_SECONDS_ELSEWHERE * 1e3 / ms(p50)
    );
    println!("concurrent publishes (keep-alive connections, distinct new releases):");
    println!("  clients  publishes  all 201  wall (ms)  publishes/s");
    for (clients, created, elapsed) in &throughput {
        println!(
            "  {clients:>7}  {created:>9}  {:>7}  {:>9.0}  {:>11.1}",
            "yes",
            ms(*elapsed),
            *created as f64 / elapsed.as_secs_f64()
        );
    }
    println!(
        "hexreg verify on the final registry ({} releases published): {}",
        publish_times.len() + throughput.iter().map(|t| t.1).sum::<usize>(),
        if verified { "ok (exit 0)" } else { "FAILED" }
    );
    // As examples/bench.rs: run directories go only at the end (a kept --dir keeps its corpus).
    for run in 0..args.runs {
        let _ = fs::remove_dir_all(base.join(format!("pubrun{run}")));
    }
    let _ = fs::remove_file(&keys);
    if !verified {
        bail!(
            "hexreg verify failed ({}): {}{}",
            verify.status,
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    Ok(())
}
