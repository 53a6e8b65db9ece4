//! `hexreg key add|list|revoke`: the API keys of `hexreg serve`'s Hex HTTP API, kept as
//! hashes in a keys file (see `hexreg::keys`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use hexreg::keys::{self, KeysFile, Permission, Updated};

/// Environment variable naming the keys file when `--keys` is not given.
pub const KEYS_ENV: &str = "HEXREG_KEYS";

pub const AFTER_HELP: &str = "Examples:
  KEY=$(hexreg key add --keys /etc/hexreg/keys ci)
  hexreg key add --keys /etc/hexreg/keys release --write
  hexreg key add --keys /etc/hexreg/keys acme-ci --write --packages 'acme_*,acme'
  HEXREG_KEYS=/etc/hexreg/keys hexreg key list
  hexreg key revoke --keys /etc/hexreg/keys ci

Clients send a key as the `authorization` header of the Hex HTTP API (`mix hex.repo add
acme URL --auth-key KEY`). A read key fetches the repository; a write key also publishes,
retires, reverts and uploads docs. The keys file holds only SHA-256 hashes of the keys, with
mode 0600; keep it outside PUBLIC_DIR all the same. A `hexreg serve` using the file sees keys
added or revoked within about a second, without a restart.";

/// `hexreg key` arguments.
#[derive(clap::Args)]
pub struct KeyArgs {
    /// The keys file [default: the HEXREG_KEYS environment variable].
    #[arg(long, global = true, value_name = "KEYS_FILE")]
    pub keys: Option<PathBuf>,
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create a key: print it once on stdout and store only its hash (creates KEYS_FILE).
    Add(AddArgs),
    /// Print each key's label, permission and creation time (UTC), one per line.
    List,
    /// Remove a key: clients using it are refused from then on.
    Revoke(RevokeArgs),
}

/// `hexreg key add` arguments.
#[derive(clap::Args)]
pub struct AddArgs {
    /// A name for the key, unique in the file: 1 to 64 letters, digits, '.', '_' or '-'.
    #[arg(value_name = "LABEL")]
    pub label: String,
    /// Let the key publish, retire, revert and upload docs too [default: read only].
    #[arg(long)]
    pub write: bool,
    /// With --write: limit the key's changes to the packages matching PATTERN (`*` matches
    /// any run of characters), several separated by commas [default: every package].
    #[arg(long, value_name = "PATTERN[,PATTERN...]", requires = "write")]
    pub packages: Option<String>,
}

/// `hexreg key revoke` arguments.
#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The label of the key to remove.
    #[arg(value_name = "LABEL")]
    pub label: String,
}

pub fn run(args: &KeyArgs) -> Result<()> {
    let path = keys_path(args.keys.as_deref());
    match &args.command {
        KeyCommand::Add(add_args) => add(&path, add_args),
        KeyCommand::List => list(&path),
        KeyCommand::Revoke(revoke_args) => revoke(&path, revoke_args),
    }
}

/// `--keys`, else `HEXREG_KEYS`; neither is a usage error (exit 2).
fn keys_path(flag: Option<&Path>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    match std::env::var_os(KEYS_ENV) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            format!(
                "no keys file: give --keys KEYS_FILE or set {KEYS_ENV}\n\n\
                 For more information, try 'hexreg key --help'.\n"
            ),
        )
        .exit(),
    }
}

fn add(path: &Path, args: &AddArgs) -> Result<()> {
    let shown = path.display();
    // Before anything is created.
    keys::check_label(&args.label)?;
    let scope = match &args.packages {
        Some(text) => {
            Some(keys::Scope::parse(text).map_err(|e| anyhow::anyhow!("--packages {text}: {e}"))?)
        }
        None => None,
    };
    let permission = if args.write {
        Permission::Write
    } else {
        Permission::Read
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let updated = keys::update_file(path, true, |keys| {
        keys.add_scoped(&args.label, permission, scope.clone(), now)
    })
    .with_context(|| format!("cannot add key {} to {shown}", args.label))?;
    if updated.created {
        eprintln!("* created {shown} (mode 0600)");
    }
    warn_tightened(path, &updated);
    // The key alone on stdout, so that `KEY=$(hexreg key add ...)` works.
    let printed = {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", updated.value).and_then(|()| out.flush())
    };
    if let Err(e) = printed {
        // Nobody saw the key: do not leave it usable.
        let undone = keys::update_file(path, false, |keys| keys.revoke(&args.label));
        return Err(anyhow::anyhow!(
            "cannot print the new key: {e}; {}",
            match undone {
                Ok(_) => format!("it was removed from {shown} again"),
                Err(undo) => format!(
                    "and cannot remove it ({undo}): run `hexreg key revoke --keys {shown} {}`",
                    args.label
                ),
            }
        ));
    }
    let limited = match &scope {
        Some(scope) => format!(" for packages {scope}"),
        None => String::new(),
    };
    eprintln!(
        "* added {permission} key {}{limited} to {shown}: store it now, only its hash is kept",
        args.label
    );
    Ok(())
}

fn list(path: &Path) -> Result<()> {
    let keys = keys::read_file(path)?;
    print!("{}", listing(&keys));
    if keys.list().next().is_none() {
        eprintln!(
            "{} holds no keys: add one with `hexreg key add --keys {} LABEL`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// `LABEL  PERMISSION  YYYY-MM-DD HH:MM:SS  SCOPE` lines, the labels padded to one width;
/// SCOPE is what a write key may change (`packages=PATTERN,...`; `packages=*` for every
/// package; `-` for a read key).
fn listing(keys: &KeysFile) -> String {
    let width = keys.list().map(|k| k.label().len()).max().unwrap_or(0);
    keys.list()
        .map(|k| {
            let scope = match (k.permission(), k.scope()) {
                (Permission::Read, _) => "-".to_string(),
                (Permission::Write, Some(scope)) => format!("packages={scope}"),
                (Permission::Write, None) => "packages=*".to_string(),
            };
            format!(
                "{:<width$}  {:<5}  {}  {scope}\n",
                k.label(),
                k.permission(),
                utc(k.created())
            )
        })
        .collect()
}

fn revoke(path: &Path, args: &RevokeArgs) -> Result<()> {
    let shown = path.display();
    let updated = keys::update_file(path, false, |keys| keys.revoke(&args.label))
        .with_context(|| format!("cannot revoke key {} in {shown}", args.label))?;
    warn_tightened(path, &updated);
    println!("* revoked key {}", args.label);
    Ok(())
}

fn warn_tightened<T>(path: &Path, updated: &Updated<T>) {
    if let Some(mode) = updated.tightened_from {
        eprintln!(
            "warning: {} was readable by others (mode {mode:04o}); it is 0600 now",
            path.display()
        );
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS`, UTC.
fn utc(secs: u64) -> String {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let time = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// The Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59");
        assert_eq!(utc(4_102_444_800), "2100-01-01 00:00:00");
    }

    #[test]
    fn listing_aligns_labels() {
        let mut keys = KeysFile::new();
        keys.add("ci", Permission::Read, 0).unwrap();
        keys.add("release-bot", Permission::Write, 1_700_000_000)
            .unwrap();
        keys.add_scoped(
            "acme",
            Permission::Write,
            Some(keys::Scope::parse("acme_*").unwrap()),
            0,
        )
        .unwrap();
        assert_eq!(
            listing(&keys),
            "ci           read   1970-01-01 00:00:00  -\n\
             release-bot  write  2023-11-14 22:13:20  packages=*\n\
             acme         write  1970-01-01 00:00:00  packages=acme_*\n"
        );
    }
}
