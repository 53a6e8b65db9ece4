//! The `hexreg` command line: parses arguments, runs a command on the library's engine, prints
//! errors as `error: ...` on stderr and sets the exit status (0 success, 1 failure, 2 usage;
//! `verify`: 1 problems found, 2 could not check).

mod advisory;
mod audit;
mod build;
mod key;
mod keygen;
mod manage;
mod mirror;
mod options;
mod output;
mod policy;
mod progress;
mod proxy;
mod serve;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Threads to use [default: all cores].
    #[arg(long, short, global = true, value_name = "N", env = "HEXREG_JOBS")]
    jobs: Option<options::Jobs>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the registry (names, versions, packages/*, public_key) from PUBLIC_DIR/tarballs.
    #[command(after_help = build::AFTER_HELP)]
    Build(build::BuildArgs),
    /// Add tarballs to a registry without the other tarballs at hand.
    #[command(after_help = manage::ADD_HELP)]
    Add(manage::AddArgs),
    /// Remove a release (or a whole package) and its tarball.
    #[command(after_help = manage::REMOVE_HELP)]
    Remove(manage::RemoveArgs),
    /// Mark a release retired.
    #[command(after_help = manage::RETIRE_HELP)]
    Retire(manage::RetireArgs),
    /// Clear a release's retirement.
    #[command(after_help = manage::UNRETIRE_HELP)]
    Unretire(manage::UnretireArgs),
    /// Add, remove and list the security advisories of a package (`mix hex.audit`).
    #[command(after_help = advisory::AFTER_HELP)]
    Advisory(advisory::AdvisoryArgs),
    /// Set, remove and list the dependency policies of a registry (HEX_POLICY).
    #[command(after_help = policy::AFTER_HELP)]
    Policy(policy::PolicyArgs),
    /// Print the audit trail: every change to the registry, who made it, oldest first.
    #[command(after_help = audit::AFTER_HELP)]
    Audit(audit::AuditArgs),
    /// Check every resource, signature and tarball of a registry.
    #[command(after_help = verify::AFTER_HELP)]
    Verify(verify::VerifyArgs),
    /// Create an RSA private key to sign a registry with.
    #[command(after_help = keygen::AFTER_HELP)]
    Keygen(keygen::KeygenArgs),
    /// Add, list and revoke the API keys of the Hex HTTP API (`add`, `list`, `revoke`).
    #[command(after_help = key::AFTER_HELP)]
    Key(key::KeyArgs),
    /// Mirror hex.pm or another Hex repository, whole or a selection, verified.
    #[command(after_help = mirror::AFTER_HELP)]
    Mirror(mirror::MirrorArgs),
    /// Serve PUBLIC_DIR over HTTP for mix and rebar3.
    #[command(after_help = serve::AFTER_HELP)]
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let jobs = cli.jobs.map(usize::from);
    if let Some(jobs) = jobs {
        // Fails only if a pool was built already, which nothing does before this point.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .build_global();
    }
    let result = match cli.command {
        Command::Build(args) => build::run(&args),
        Command::Add(args) => manage::add(&args),
        Command::Remove(args) => manage::remove(&args),
        Command::Retire(args) => manage::retire(&args),
        Command::Unretire(args) => manage::unretire(&args),
        Command::Advisory(args) => advisory::run(&args),
        Command::Policy(args) => policy::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Key(args) => key::run(&args),
        Command::Verify(args) => match verify::run(&args) {
            Ok(verify::Outcome::Sound) => Ok(()),
            Ok(verify::Outcome::Problems) => return ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {}", output::describe(&e));
                return ExitCode::from(2);
            }
        },
        Command::Mirror(args) => mirror::run(&args, jobs),
        Command::Serve(args) => serve::run(args, jobs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::describe(&e));
            if e.downcast_ref::<output::Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
