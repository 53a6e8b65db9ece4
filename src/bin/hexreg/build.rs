//! `hexreg build`: the arguments, and the engine's [`Registry::build`](hexreg::engine::Registry::build)
//! on the directory they name.

use anyhow::Result;

use hexreg::engine::BuildOptions;
use hexreg::format::signing::PublicKeyFormat;
use hexreg::storage::StorageError;

use crate::options::{RegistryArgs, save_cache};
use crate::output::{print_changes, with_problems};
use crate::progress::Bar;

pub const AFTER_HELP: &str = "Example:
  hexreg build public --name=acme --private-key=key.pem

Reads every PUBLIC_DIR/tarballs/NAME-VERSION.tar and writes PUBLIC_DIR/names, versions,
packages/NAME and public_key, as `mix hex.registry build` does. Files whose content would
not change are left alone and not listed.";

/// `hexreg build` arguments.
#[derive(clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Format of the public_key file: pkcs1 (as mix writes it) or spki (for gleam's hexpm crate).
    #[arg(long, value_enum, default_value_t = KeyFormat::Pkcs1)]
    pub public_key_format: KeyFormat,
    /// Record when each release enters the registry (`published_at`, which Hex 2.5's
    /// HEX_COOLDOWN reads): its tarball's modification time. Dates already recorded are kept,
    /// with or without this flag, even when the tarballs are new copies.
    #[arg(long)]
    pub published_at: bool,
}

/// `--public-key-format` values.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeyFormat {
    /// `-----BEGIN RSA PUBLIC KEY-----`
    Pkcs1,
    /// `-----BEGIN PUBLIC KEY-----`
    Spki,
}

impl From<KeyFormat> for PublicKeyFormat {
    fn from(f: KeyFormat) -> Self {
        match f {
            KeyFormat::Pkcs1 => PublicKeyFormat::Pkcs1,
            KeyFormat::Spki => PublicKeyFormat::Spki,
        }
    }
}

pub fn run(args: &BuildArgs) -> Result<()> {
    let opts = &args.registry;
    let target = opts.storage()?;
    let signer = opts.signer(&target)?;
    // The task creates PUBLIC_DIR too; hexreg does it first, to lock it.
    target.create_root()?;
    let bar = Bar::new(opts.run.quiet);
    let mut registry = opts
        .open_deferred(&target, &signer, &bar)?
        .with_release_dates(args.published_at);
    let options = BuildOptions {
        public_key_format: args.public_key_format.into(),
    };
    let mut result = registry.build(&options);
    if registry.locked_late()
        && matches!(
            result,
            Err(hexreg::engine::Error::Storage(
                StorageError::Conflict { .. }
            ))
        )
    {
        // Another run changed the registry between this one's reads and its lock: build
        // again, reading under the lock now held.
        result = registry.build(&options);
    }
    let changes = registry.take_changes();
    let changed = !changes.is_empty();
    print_changes(changes, target.storage(), opts.run.quiet);
    result.map_err(with_problems)?;
    if changed {
        hexreg::engine::audit::append_cli(
            target.storage(),
            hexreg::engine::audit::Action::Build,
            "",
            "",
            "",
            "",
        )
        .map_err(hexreg::engine::Error::from)?;
    }
    save_cache(registry.into_cache(), "built");
    Ok(())
}
