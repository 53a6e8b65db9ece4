//! The `hexreg` command line: parses arguments, runs a command, prints errors as
//! `error: ...` on stderr and sets the exit status (0 success, 1 failure, 2 usage).

mod build;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use hexreg::signing::PublicKeyFormat;

#[derive(Parser)]
#[command(
    name = "hexreg",
    version,
    about = "Build, check and serve signed Hex package registries",
    long_about = "hexreg maintains a self-hosted Hex package repository (Elixir, Erlang, Gleam): \
a drop-in replacement for `mix hex.registry build` that writes the same bytes, validates every \
tarball, and replaces files atomically.",
    after_help = "Example:\n  hexreg build public --name=acme --private-key=key.pem"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the registry (names, versions, packages/*, public_key) from PUBLIC_DIR/tarballs.
    #[command(
        after_help = "Example:\n  hexreg build public --name=acme --private-key=key.pem\n\n\
Reads every PUBLIC_DIR/tarballs/NAME-VERSION.tar and writes PUBLIC_DIR/names, versions,\n\
packages/NAME and public_key, as `mix hex.registry build` does. Files whose content would\n\
not change are left alone and not listed."
    )]
    Build {
        /// The directory a web server publishes: holds tarballs/ and receives the registry.
        #[arg(value_name = "PUBLIC_DIR")]
        public_dir: String,
        /// Repository name clients configure (e.g. `mix hex.repo add acme ...`).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// RSA private key (PEM, PKCS#1 or PKCS#8) that signs the registry; keep it outside PUBLIC_DIR.
        #[arg(long, value_name = "KEY")]
        private_key: PathBuf,
        /// Format of the public_key file: pkcs1 (as mix writes it) or spki (for gleam's hexpm crate).
        #[arg(long, value_enum, default_value_t = KeyFormat::Pkcs1)]
        public_key_format: KeyFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyFormat {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build {
            public_dir,
            name,
            private_key,
            public_key_format,
        } => build::run(&build::BuildOptions {
            public_dir,
            name,
            private_key,
            public_key_format: public_key_format.into(),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
