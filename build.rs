//! Generates the registry's protobuf types from `proto/*.proto` with prost, compiling the schema
//! with protox (pure Rust), so no `protoc` is needed on the build machine.
//!
//! The Hex schemas have no `package` statement and reuse message names across files (`Package`
//! exists in names, versions and package), so each file is compiled on its own into its own
//! output file: `OUT_DIR/<stem>.rs`, included by `src/proto.rs` as a module of that name.

use std::path::{Path, PathBuf};

const PROTOS: [&str; 4] = ["signed", "names", "versions", "package"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    link_crypto_mb();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");
    for stem in PROTOS {
        let file = format!("{stem}.proto");
        println!("cargo:rerun-if-changed=proto/{file}");
        let fds = protox::compile([file.as_str()], ["proto"])?;
        let dir = out_dir.join(stem);
        std::fs::create_dir_all(&dir)?;
        prost_build::Config::new()
            .out_dir(&dir)
            .default_package_filename(stem)
            .compile_fds(fds)?;
    }
    Ok(())
}

/// Links Intel's crypto_mb (`libcrypto_mb.a`) and sets `cfg(crypto_mb)` when the library is found:
/// in the directory `HEXREG_CRYPTO_MB_DIR` names, else in `vendor/crypto_mb`, where
/// `scripts/fetch-crypto-mb.sh` puts it. x86-64 Linux only. Without it, aws-lc signs alone.
fn link_crypto_mb() {
    println!("cargo::rustc-check-cfg=cfg(crypto_mb)");
    println!("cargo:rerun-if-env-changed=HEXREG_CRYPTO_MB_DIR");
    println!("cargo:rerun-if-changed=vendor/crypto_mb");
    let target = (
        std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default(),
        std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default(),
    );
    if target != ("x86_64".to_string(), "linux".to_string()) {
        return;
    }
    let dir = match std::env::var_os("HEXREG_CRYPTO_MB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/crypto_mb"),
    };
    let lib = dir.join("libcrypto_mb.a");
    if lib.is_file() {
        println!("cargo:rerun-if-changed={}", lib.display());
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-cfg=crypto_mb");
    } else if std::env::var_os("HEXREG_CRYPTO_MB_DIR").is_some() {
        println!(
            "cargo:warning=HEXREG_CRYPTO_MB_DIR is set but {} is missing: building without crypto_mb",
            lib.display()
        );
    }
}
