//! `hexreg verify`: the arguments, the engine's [`verify`] on the directory they name, and the
//! report and exit status.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::options::open_location;
use hexreg::engine::verify;
use hexreg::format::signing::PublicKey;
use hexreg::storage::Location;

pub const AFTER_HELP: &str = "Example:
  hexreg verify public --name=acme
  hexreg verify public --name=acme --public-key=acme_public.pem

Prints every problem with its path, and notes (`note: PATH: ...`) of what a run stopped
between two writes leaves: harmless to clients, repaired by the next build or change (the
index one change behind packages/, a tarball not yet recorded). Exit status: 0 when the
registry is sound (a one-line summary, then any notes), 1 when problems were found, 2 when it could not be checked at all
(PUBLIC_DIR is not a directory, the public key cannot be read, a listing fails) or the
arguments are wrong.";

/// `hexreg verify` arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The registry directory, or `s3://BUCKET/PREFIX`.
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: String,
    /// Repository name clients use.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Public key (PEM, PKCS#1 or SPKI) [default: PUBLIC_DIR/public_key].
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

/// The public key that verifies a registry: `path` (`--public-key`), else the registry's own
/// `public_key`; with how messages name it.
pub fn public_key(
    storage: &dyn hexreg::storage::Storage,
    path: Option<&std::path::Path>,
) -> Result<(PublicKey, String)> {
    let (key_text, key_shown) = match path {
        Some(path) => {
            let text = fs::read(path).with_context(|| {
                format!(
                    "cannot read public key {} (--public-key): check the path",
                    path.display()
                )
            })?;
            (text, path.display().to_string())
        }
        None => {
            let shown = storage.display("public_key");
            let object = storage.read("public_key")?.with_context(|| {
                format!(
                    "cannot read public key {shown}: it is missing (give one with --public-key)"
                )
            })?;
            (object.bytes, shown)
        }
    };
    let key = PublicKey::from_pem(&key_text)
        .map_err(|e| anyhow::anyhow!("public key {key_shown} {e}"))?;
    Ok((key, key_shown))
}

/// The registry PUBLIC_DIR names, to read (verify, the `list` commands): a directory must
/// exist.
pub fn open_to_read(public_dir: &str) -> Result<Location> {
    let target = open_location(public_dir, &crate::options::BucketArgs::default())?;
    if !target.exists() {
        bail!("{public_dir} is not a directory: give the registry directory (PUBLIC_DIR)");
    }
    Ok(target)
}

/// What `verify` concluded, for the exit status.
pub enum Outcome {
    /// Sound: exit 0.
    Sound,
    /// Problems found: exit 1.
    Problems,
}

/// Checks the registry; `Err` when it cannot be checked at all (exit 2).
pub fn run(args: &VerifyArgs) -> Result<Outcome> {
    let target = open_to_read(&args.public_dir)?;
    let storage = target.storage();
    let (key, key_shown) = public_key(storage, args.public_key.as_deref())?;
    let found = verify(storage, &args.name, &key)?;
    if found.is_sound() {
        println!(
            "ok: {} packages, {} releases, every tarball present and matching, signed by {}",
            found.packages, found.releases, key_shown
        );
        for n in &found.notes {
            println!("note: {n}");
        }
        return Ok(Outcome::Sound);
    }
    for p in &found.problems {
        println!("{p}");
    }
    for n in &found.notes {
        println!("note: {n}");
    }
    eprintln!(
        "error: {} problem{} in {}",
        found.problems.len(),
        if found.problems.len() == 1 { "" } else { "s" },
        args.public_dir
    );
    Ok(Outcome::Problems)
}
