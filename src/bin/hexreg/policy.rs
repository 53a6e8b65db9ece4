//! `hexreg policy set|remove|list`: the arguments, and the engine's policy operations
//! ([`hexreg::engine::policies`]) on the registry they name.

use std::path::PathBuf;

use anyhow::{Result, bail};
use hexreg::engine::audit::{self, Action};

use hexreg::engine::Reader;
use hexreg::format::policy::{self, PolicySpec};
use hexreg::format::proto::policy::{AdvisorySeverity, RetirementReason};

use crate::advisory::Severity;
use crate::manage::{Reason, change};
use crate::options::RegistryArgs;

pub const AFTER_HELP: &str = "Examples:
  hexreg policy set public strict --cooldown 7d --min-severity high --retired security,invalid \\
      --deny leftpad --allow jason:\"~> 1.4\" --name=acme --private-key=key.pem
  hexreg policy list public --name=acme
  hexreg policy remove public strict --name=acme --private-key=key.pem

Writes PUBLIC_DIR/policies/NAME, signed with the registry's key, as hex_core's Policy message.
Hex 2.5 loads it with HEX_POLICY=acme/strict: releases younger than --cooldown, with an
advisory at least --min-severity, or retired for a --retired reason are not resolved; --deny
blocks a package (or the versions a requirement matches), --allow lets it through every
restriction. `hexreg verify` checks every policy.";

/// `hexreg policy` arguments.
#[derive(clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand)]
enum PolicyCommand {
    /// Write (or replace) a policy.
    Set(SetArgs),
    /// Remove a policy.
    Remove(RemoveArgs),
    /// List the policies.
    List(ListArgs),
}

#[derive(clap::Args)]
struct SetArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Policy name, what HEX_POLICY=REPO/NAME gives (3-64 of a-z 0-9 _ - .).
    #[arg(value_name = "POLICY")]
    policy: String,
    /// Minimum release age: 0, or days, weeks or months, e.g. 7d, 2w, 1mo.
    #[arg(long, value_name = "DURATION")]
    cooldown: Option<String>,
    /// Refuse releases with an advisory at least this severe.
    #[arg(long, value_enum, value_name = "LEVEL")]
    min_severity: Option<Severity>,
    /// Refuse releases retired for these reasons (comma-separated or repeated).
    #[arg(long, value_enum, value_name = "REASON", value_delimiter = ',')]
    retired: Vec<Reason>,
    /// Always allow a package, or the versions of it a requirement matches: PKG or PKG:REQ.
    #[arg(long, value_name = "PKG[:REQ]")]
    allow: Vec<String>,
    /// Always refuse a package, or the versions of it a requirement matches: PKG or PKG:REQ.
    #[arg(long, value_name = "PKG[:REQ]")]
    deny: Vec<String>,
    /// Free text shown by clients.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Mark the policy public (default: private to the registry's users).
    #[arg(long)]
    public: bool,
    /// The repository whose releases the policy constrains, as clients name it [default: --name].
    #[arg(long, value_name = "REPO")]
    repository: Option<String>,
}

#[derive(clap::Args)]
struct RemoveArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Policy name.
    #[arg(value_name = "POLICY")]
    policy: String,
}

#[derive(clap::Args)]
struct ListArgs {
    /// The registry directory, or `s3://BUCKET/PREFIX`.
    #[arg(value_name = "PUBLIC_DIR")]
    public_dir: String,
    /// Repository name clients use.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Public key (PEM, PKCS#1 or SPKI) [default: PUBLIC_DIR/public_key].
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
}

pub fn run(args: &PolicyArgs) -> Result<()> {
    match &args.command {
        PolicyCommand::Set(args) => set(args),
        PolicyCommand::Remove(args) => {
            if !policy::is_valid_name(&args.policy) {
                bail!(policy::PolicyError::Name(args.policy.clone()));
            }
            change(&args.registry, |registry| {
                registry.remove_policy(&args.policy)?;
                audit::append_cli(
                    registry.storage(),
                    Action::PolicyRemove,
                    &args.policy,
                    "",
                    "",
                    "",
                )?;
                Ok(())
            })
        }
        PolicyCommand::List(args) => list(args),
    }
}

fn severity(s: Severity) -> AdvisorySeverity {
    match s {
        Severity::None => AdvisorySeverity::SeverityNone,
        Severity::Low => AdvisorySeverity::SeverityLow,
        Severity::Medium => AdvisorySeverity::SeverityMedium,
        Severity::High => AdvisorySeverity::SeverityHigh,
        Severity::Critical => AdvisorySeverity::SeverityCritical,
    }
}

fn reason(r: Reason) -> RetirementReason {
    match r {
        Reason::Other => RetirementReason::RetiredOther,
        Reason::Invalid => RetirementReason::RetiredInvalid,
        Reason::Security => RetirementReason::RetiredSecurity,
        Reason::Deprecated => RetirementReason::RetiredDeprecated,
        Reason::Renamed => RetirementReason::RetiredRenamed,
    }
}

fn set(args: &SetArgs) -> Result<()> {
    let mut retired: Vec<RetirementReason> = args.retired.iter().map(|&r| reason(r)).collect();
    retired.sort();
    retired.dedup();
    let overrides = |flag: &'static str, list: &[String]| {
        list.iter()
            .map(|text| policy::parse_override(flag, text))
            .collect::<Result<Vec<_>, _>>()
    };
    let spec = PolicySpec {
        name: args.policy.clone(),
        description: args.description.clone(),
        public: args.public,
        repository: args
            .repository
            .clone()
            .unwrap_or_else(|| args.registry.name.clone()),
        cooldown: args.cooldown.clone(),
        min_severity: args.min_severity.map(severity),
        retired,
        allow: overrides("--allow", &args.allow)?,
        deny: overrides("--deny", &args.deny)?,
    };
    // Checked before the registry is opened: a refused policy writes nothing.
    spec.check()?;
    change(&args.registry, |registry| {
        registry.set_policy(&spec)?;
        audit::append_cli(
            registry.storage(),
            Action::PolicySet,
            &spec.name,
            "",
            "",
            "",
        )?;
        Ok(())
    })
}

fn list(args: &ListArgs) -> Result<()> {
    let target = crate::verify::open_to_read(&args.public_dir)?;
    let storage = target.storage();
    let (key, _) = crate::verify::public_key(storage, args.public_key.as_deref())?;
    let mut bad = 0;
    for (name, policy) in Reader::new(storage, &args.name, &key).policies()? {
        match policy {
            Ok(policy) => println!("{}", policy::describe(&policy)),
            Err(e) => {
                bad += 1;
                eprintln!(
                    "error: {} {e}",
                    storage.display(&format!("policies/{name}"))
                );
            }
        }
    }
    if bad > 0 {
        bail!(
            "{bad} policies cannot be used: `hexreg verify` lists every problem; set them again with `hexreg policy set`"
        );
    }
    Ok(())
}
