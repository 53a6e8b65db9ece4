//! `hexreg advisory add|remove|list`: the arguments, and the engine's advisory operations
//! ([`hexreg::engine::advisories`]) on the registry they name.

use std::path::PathBuf;

use anyhow::{Result, bail};
use hexreg::engine::audit::{self, Action};

use hexreg::engine::Reader;
use hexreg::format::advisory::{NewAdvisory, severity_name};
use hexreg::format::registry::AdvisorySeverity;
use hexreg::format::requirement::Requirement;

use crate::manage::change;
use crate::options::RegistryArgs;

pub const AFTER_HELP: &str = "Examples:
  hexreg advisory add public foo --id GHSA-abcd-1234-wxyz --summary \"RCE in foo.parse\" \\
      --url https://example.com/GHSA-abcd-1234-wxyz --severity high --affects \"< 1.4.2\" \\
      --cvss 8.1 --name=acme --private-key=key.pem
  hexreg advisory list public foo --name=acme
  hexreg advisory remove public foo GHSA-abcd-1234-wxyz --name=acme --private-key=key.pem

Writes the advisory into packages/NAME (`advisories`, and `advisory_indexes` of each release
--affects matches) and versions (`with_advisories`); `mix hex.audit` reports a locked release
it affects. Every later build, add, remove and retire keeps it. --affects is matched against
the releases present now: add the advisory again (same --id) to match it against releases
added later.";

/// `hexreg advisory` arguments.
#[derive(clap::Args)]
pub struct AdvisoryArgs {
    #[command(subcommand)]
    command: AdvisoryCommand,
}

#[derive(clap::Subcommand)]
enum AdvisoryCommand {
    /// Add a security advisory to a package (or replace the one with the same --id).
    Add(AddArgs),
    /// Remove a security advisory from a package.
    Remove(RemoveArgs),
    /// List the advisories of a package and the versions each affects.
    List(ListArgs),
}

/// `--severity` values.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl From<Severity> for AdvisorySeverity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::None => AdvisorySeverity::SeverityNone,
            Severity::Low => AdvisorySeverity::SeverityLow,
            Severity::Medium => AdvisorySeverity::SeverityMedium,
            Severity::High => AdvisorySeverity::SeverityHigh,
            Severity::Critical => AdvisorySeverity::SeverityCritical,
        }
    }
}

#[derive(clap::Args)]
struct AddArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Package name.
    package: String,
    /// The advisory's id, e.g. GHSA-xxxx-xxxx-xxxx or CVE-2026-1234.
    #[arg(long, value_name = "ID")]
    id: String,
    /// One line on the vulnerability.
    #[arg(long, value_name = "TEXT")]
    summary: String,
    /// The advisory's web page.
    #[arg(long, value_name = "URL")]
    url: String,
    /// Its machine-readable form [default: --url].
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// How severe.
    #[arg(long, value_enum, value_name = "LEVEL")]
    severity: Severity,
    /// The versions it affects, as an Elixir requirement, e.g. "< 1.4.2" or "~> 1.2".
    #[arg(long, value_name = "REQUIREMENT")]
    affects: String,
    /// CVSS score, 0.0 to 10.0.
    #[arg(long, value_name = "SCORE")]
    cvss: Option<f32>,
    /// Another id of the same advisory (e.g. its CVE); repeat for more.
    #[arg(long = "alias", value_name = "ID")]
    aliases: Vec<String>,
}

#[derive(clap::Args)]
struct RemoveArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Package name.
    package: String,
    /// The advisory's id.
    id: String,
}

#[derive(clap::Args)]
struct ListArgs {
    /// The registry directory, or `s3://BUCKET/PREFIX`.
    #[arg(value_name = "PUBLIC_DIR")]
    public_dir: String,
    /// Package name.
    package: String,
    /// Repository name clients use.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Public key (PEM, PKCS#1 or SPKI) [default: PUBLIC_DIR/public_key].
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
}

pub fn run(args: &AdvisoryArgs) -> Result<()> {
    match &args.command {
        AdvisoryCommand::Add(args) => add(args),
        AdvisoryCommand::Remove(args) => change(&args.registry, |registry| {
            registry.remove_advisory(&args.package, &args.id)?;
            audit::append_cli(
                registry.storage(),
                Action::AdvisoryRemove,
                &args.package,
                "",
                "",
                "",
            )?;
            Ok(())
        }),
        AdvisoryCommand::List(args) => list(args),
    }
}

fn add(args: &AddArgs) -> Result<()> {
    let affects =
        Requirement::parse(&args.affects).map_err(|e| anyhow::anyhow!("--affects {e}"))?;
    let new = NewAdvisory {
        id: args.id.clone(),
        summary: args.summary.clone(),
        html_url: args.url.clone(),
        api_url: args.api_url.clone(),
        severity: args.severity.into(),
        cvss_score: args.cvss,
        aliases: args.aliases.clone(),
        affects,
    };
    // Checked before the registry is opened: a refused advisory writes nothing.
    new.check()?;
    let mut affected = Vec::new();
    change(&args.registry, |registry| {
        affected = registry.add_advisory(&args.package, &new)?;
        audit::append_cli(
            registry.storage(),
            Action::AdvisoryAdd,
            &args.package,
            "",
            "",
            "",
        )?;
        Ok(())
    })?;
    if affected.is_empty() {
        eprintln!(
            "warning: advisory {} matches no release of {} (--affects {}): `mix hex.audit` will not report it",
            args.id, args.package, args.affects
        );
    } else if !args.registry.run.quiet {
        println!(
            "{} affects {} {}",
            args.id,
            args.package,
            affected.join(", ")
        );
    }
    Ok(())
}

fn list(args: &ListArgs) -> Result<()> {
    let target = crate::verify::open_to_read(&args.public_dir)?;
    let storage = target.storage();
    let (key, _) = crate::verify::public_key(storage, args.public_key.as_deref())?;
    let Some(advisories) = Reader::new(storage, &args.name, &key).advisories(&args.package)? else {
        bail!(
            "package `{}` is not in the registry {}",
            args.package,
            args.public_dir
        );
    };
    for hexreg::engine::advisories::Affecting {
        advisory: a,
        versions: affected,
    } in advisories
    {
        let cvss = a
            .cvss_score
            .map(|s| format!(" cvss {s}"))
            .unwrap_or_default();
        println!(
            "{} {}{cvss}: {} <{}> affects {}",
            a.id,
            severity_name(a.severity),
            a.summary,
            a.html_url,
            if affected.is_empty() {
                "no release".to_string()
            } else {
                affected.join(", ")
            }
        );
    }
    Ok(())
}
