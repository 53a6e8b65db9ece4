//! `hexreg build`: the arguments, and the engine's [`Registry::build`](hexreg::engine::Registry::build)
//! on the directory they name.

use anyhow::Result;

use hexreg::engine::{BuildOptions, Settings};
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
    /// Remembered by the registry (PUBLIC_DIR/.hexreg-settings): a later build without the flag
    /// keeps it [default: the registry's choice, else the format of its public_key, else pkcs1].
    #[arg(long, value_enum)]
    pub public_key_format: Option<KeyFormat>,
    /// Record when each release enters the registry (`published_at`, which Hex 2.5's
    /// HEX_COOLDOWN reads): its tarball's modification time. Remembered by the registry: later
    /// builds, `add` and `serve` keep dating releases until `--published-at=false`. Dates
    /// already recorded are kept either way, even when the tarballs are new copies.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub published_at: Option<bool>,
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
    let remembered = Settings::read(target.storage())?;
    let chosen = Settings {
        public_key_format: args.public_key_format.map(PublicKeyFormat::from),
        published_at: args.published_at,
    };
    let bar = Bar::new(opts.run.quiet);
    let mut registry = opts
        .open_deferred(&target, &signer, &bar)?
        .with_release_dates(
            chosen
                .published_at
                .or(remembered.published_at)
                .unwrap_or(false),
        );
    let options = BuildOptions {
        public_key_format: chosen
            .public_key_format
            .or(remembered.public_key_format)
            .unwrap_or_default(),
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
    let release_changes = registry.take_release_changes();
    print_changes(changes, target.storage(), opts.run.quiet);
    result.map_err(with_problems)?;
    // Only what a flag chose is recorded: a registry built without flags keeps no file.
    Settings::remember(target.storage(), chosen)?;
    if changed {
        // One record for the build, then one per release it added, replaced or removed (a
        // build that created the registry imports it: that one record says so).
        let record = |package: &str, version: &str, before: &str, after: &str| {
            hexreg::engine::audit::append_cli(
                target.storage(),
                hexreg::engine::audit::Action::Build,
                package,
                version,
                before,
                after,
            )
            .map_err(hexreg::engine::Error::from)
        };
        record("", "", "", "")?;
        let hex = |sum: Option<[u8; 32]>| {
            sum.map(|s| hexreg::format::encoding::hex_upper(&s))
                .unwrap_or_default()
        };
        for change in release_changes {
            record(
                &change.package,
                &change.version,
                &hex(change.before),
                &hex(change.after),
            )?;
        }
    }
    save_cache(registry.into_cache(), "built");
    Ok(())
}
