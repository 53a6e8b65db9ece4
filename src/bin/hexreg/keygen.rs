//! `hexreg keygen`: a new RSA key to sign a registry with.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use hexreg::format::signing::PrivateKey;

pub const AFTER_HELP: &str = "Example:
  hexreg keygen --out acme_key.pem

Writes a PKCS#8 PEM RSA private key, readable by its owner only (mode 0600). Keep it out of
the directory you publish; `hexreg build` writes the public half to PUBLIC_DIR/public_key.";

/// `hexreg keygen` arguments.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Key size in bits.
    #[arg(long, value_enum, default_value = "2048")]
    pub bits: Bits,
}

/// RSA key sizes `keygen` offers.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Bits {
    #[value(name = "2048")]
    B2048,
    #[value(name = "3072")]
    B3072,
    #[value(name = "4096")]
    B4096,
}

impl Bits {
    fn get(self) -> u32 {
        match self {
            Bits::B2048 => 2048,
            Bits::B3072 => 3072,
            Bits::B4096 => 4096,
        }
    }
}

pub fn run(args: &KeygenArgs) -> Result<()> {
    let shown = args.out.display();
    if args.out.exists() {
        bail!(
            "{shown} already exists; hexreg never overwrites a key: choose another --out or delete the file first"
        );
    }
    let bits = args.bits.get();
    let pem = PrivateKey::generate_pem(bits)
        .map_err(|e| anyhow::anyhow!("cannot create a {bits}-bit RSA key: {e}"))?;
    // create_new: if another process created the file meanwhile, fail rather than overwrite.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("cannot create {shown}"))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {shown}"))?;
    println!("* creating {shown}");
    Ok(())
}
