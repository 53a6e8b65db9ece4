//! `hexreg serve`: the registry over HTTP. (Being written.)

use anyhow::{Result, bail};

pub const AFTER_HELP: &str = "Example:\n  hexreg serve public --bind 127.0.0.1:8000";

/// `hexreg serve` arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The registry directory to publish.
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: std::path::PathBuf,
}

pub fn run(_args: ServeArgs) -> Result<()> {
    bail!("hexreg serve is not available yet")
}
