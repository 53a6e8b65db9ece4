//! The synthetic corpus the benchmarks build on, shared by `examples/bench.rs` and
//! `examples/publish_bench.rs` (each includes this file with `#[path]`): N packages of 1 to
//! `max_releases` releases, genuine-format tarballs of about 8 KB made with the tests' Package
//! builder, each release depending on up to three other packages. Deterministic: the same
//! arguments give the same bytes.

use std::fs;
use std::io;
use std::path::Path;

use super::package::Package;

/// A small deterministic pseudo-random generator (xorshift), so corpora are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: [&str; 16] = [
    "registry", "package", "release", "version", "module", "function", "defp", "case", "when",
    "end", "state", "acc", "reduce", "map", "error", "ok",
];

/// Source text of about 10.5 KB that gzips to about 4.5 KB, so tarballs average the 7.9 KB of
/// the corpus the task was measured on (87 MB in 10,959 tarballs).
fn source(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(11_000);
    while s.len() < 10_500 {
        match rng.below(8) {
            0 => s.push_str(&format!("{:x} ", rng.next())),
            1 => s.push('\n'),
            _ => {
                s.push_str(WORDS[rng.below(WORDS.len())]);
                s.push(' ');
            }
        }
    }
    s
}

/// The name of package number `i`.
pub fn package_name(i: usize) -> String {
    format!("pkg_{i:05}")
}

/// A tarball of `name` at `version`, depending on up to three of the corpus's `packages`.
pub fn tarball(rng: &mut Rng, name: &str, version: &str, packages: usize) -> Vec<u8> {
    let deps: Vec<String> = (0..rng.below(4))
        .map(|_| package_name(rng.below(packages)))
        .filter(|dep| dep != name)
        .collect();
    let src = source(rng);
    deps.iter()
        .fold(Package::new(name, version), |package, dep| {
            package.dep(dep, "~> 0.1")
        })
        .file(&format!("lib/{name}.ex"), src)
        .tarball()
}

/// Writes the corpus into `tarballs`; returns how many tarballs and bytes.
pub fn generate(tarballs: &Path, packages: usize, max_releases: usize) -> io::Result<(usize, u64)> {
    fs::create_dir_all(tarballs)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut count, mut bytes) = (0, 0u64);
    for p in 0..packages {
        let name = package_name(p);
        for r in 0..1 + rng.below(max_releases) {
            let version = format!("0.{r}.0");
            let data = tarball(&mut rng, &name, &version, packages);
            bytes += data.len() as u64;
            fs::write(tarballs.join(format!("{name}-{version}.tar")), data)?;
            count += 1;
        }
    }
    Ok((count, bytes))
}
