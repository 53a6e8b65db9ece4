//! Generates the registry's protobuf types from `proto/*.proto` with prost, compiling the schema
//! with protox (pure Rust), so no `protoc` is needed on the build machine.
//!
//! The Hex schemas have no `package` statement and reuse message names across files (`Package`
//! exists in names, versions and package), so each file is compiled on its own into its own
//! output file: `OUT_DIR/<stem>.rs`, included by `src/proto.rs` as a module of that name.

use std::path::PathBuf;

const PROTOS: [&str; 5] = ["signed", "names", "versions", "package", "policy"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
