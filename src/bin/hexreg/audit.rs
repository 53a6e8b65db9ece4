//! `hexreg audit`: print a registry's audit trail (every change, who made it and from where),
//! oldest first, as text or JSON lines.

use anyhow::{Context, Result, bail};

use hexreg::engine::audit::{self, AUDIT_DIR};

use crate::options::open_location;

pub const AFTER_HELP: &str = "Examples:
  hexreg audit public
  hexreg audit public --package acme_a --since 2026-12-01
  hexreg audit s3://my-bucket/repo --json | jq 'select(.action == \"replace\")'

Every change to the registry appends one record under PUBLIC_DIR/.hexreg/audit/ (on a bucket,
one object each, created only if absent): publishes, replaces, reverts, retirements, docs
through the API (the actor is the API key's label, with the client's address) and the
command line's build, add, remove, retire, unretire, advisory and policy changes (the actor
is cli:USER@HOST). `hexreg serve` never serves that directory. Each line shows the UTC time,
the actor, the peer, the action, the package and version, and the release's outer checksum
before and after (`-` where none).";

/// `hexreg audit` arguments.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// The registry: a directory or `s3://BUCKET/PREFIX`.
    #[arg(value_name = "PUBLIC_DIR")]
    pub public_dir: String,
    /// Only the records of this package.
    #[arg(long, value_name = "NAME")]
    pub package: Option<String>,
    /// Only the records from this time on: `YYYY-MM-DD` (midnight UTC) or
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &AuditArgs) -> Result<()> {
    let since = match &args.since {
        Some(text) => match audit::parse_date(text) {
            Some(secs) => Some(i128::from(secs) * 1_000_000_000),
            None => {
                bail!("--since {text}: give a date as YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")
            }
        },
        None => None,
    };
    let target = open_location(&args.public_dir, &crate::options::BucketArgs::default())?;
    let storage = target.storage();
    let records = audit::read_all(storage)
        .with_context(|| format!("cannot read the audit trail {}", storage.display(AUDIT_DIR)))?;
    let mut out = String::new();
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    for record in records
        .iter()
        .filter(|r| args.package.as_ref().is_none_or(|p| *p == r.package))
        .filter(|r| since.is_none_or(|since| r.time_nanos >= since))
    {
        if args.json {
            out.push_str(&record.json());
        } else {
            out.push_str(&format!(
                "{} {} {} {} {} {} {} {}",
                record.time_text(),
                dash(&record.actor),
                dash(&record.peer),
                record.action.as_str(),
                dash(&record.package),
                dash(&record.version),
                dash(&record.before),
                dash(&record.after),
            ));
        }
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
