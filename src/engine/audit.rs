//! The audit trail of a registry: one record per change (who, from where, what, the outer
//! checksum before and after), and the time each release was first indexed, both kept in the
//! registry's own storage under [`AUDIT_DIR`] and [`RELEASED_DIR`]. Both are under `.hexreg/`,
//! a dot-directory: `serve` never serves a dot-prefixed path (on a directory or a bucket), and
//! the engine's listings skip dotfiles.
//!
//! Each record is its own file (on S3 its own object), created with a create-only write
//! (`If-None-Match: *` on a bucket), and never rewritten. Its name starts with the time in
//! nanoseconds, zero-padded, so that a listing is in time order. Its text is one line of
//! tab-separated fields after a version tag:
//!
//! ```text
//! hexreg-audit-1<TAB>TIME<TAB>ACTOR<TAB>PEER<TAB>ACTION<TAB>PACKAGE<TAB>VERSION<TAB>BEFORE<TAB>AFTER
//! ```
//!
//! `TIME` in Unix nanoseconds, `-` for an empty field, every field visible ASCII only (anything
//! else becomes `?`, so no record can forge a second line or field).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::format::encoding::hex_lower;
use crate::format::encoding::json_string;
use crate::format::time::{date_and_time, days_from_civil};
use crate::storage::{Condition, Storage, StorageError};

/// Where audit records are, from the registry's root.
pub const AUDIT_DIR: &str = ".hexreg/audit";

/// Where the time each release was first indexed is kept, from the registry's root: one file
/// `NAME-VERSION` per release, holding Unix seconds.
pub const RELEASED_DIR: &str = ".hexreg/released";

/// The first field of a record: the format's version.
const TAG: &str = "hexreg-audit-1";

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new release (API publish, `hexreg add`).
    Publish,
    /// A release's tarball replaced by other bytes.
    Replace,
    /// A release removed (API revert, `hexreg remove`).
    Revert,
    /// A release retired.
    Retire,
    /// A release's retirement cleared.
    Unretire,
    /// Docs uploaded.
    DocsPublish,
    /// Docs removed.
    DocsRemove,
    /// `hexreg build`.
    Build,
    /// An advisory added.
    AdvisoryAdd,
    /// An advisory removed.
    AdvisoryRemove,
    /// A policy set.
    PolicySet,
    /// A policy removed.
    PolicyRemove,
}

impl Action {
    const ALL: [Action; 12] = [
        Action::Publish,
        Action::Replace,
        Action::Revert,
        Action::Retire,
        Action::Unretire,
        Action::DocsPublish,
        Action::DocsRemove,
        Action::Build,
        Action::AdvisoryAdd,
        Action::AdvisoryRemove,
        Action::PolicySet,
        Action::PolicyRemove,
    ];

    /// Its name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Replace => "replace",
            Action::Revert => "revert",
            Action::Retire => "retire",
            Action::Unretire => "unretire",
            Action::DocsPublish => "docs-publish",
            Action::DocsRemove => "docs-remove",
            Action::Build => "build",
            Action::AdvisoryAdd => "advisory-add",
            Action::AdvisoryRemove => "advisory-remove",
            Action::PolicySet => "policy-set",
            Action::PolicyRemove => "policy-remove",
        }
    }

    fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// One change of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When, in Unix nanoseconds (UTC).
    pub time_nanos: i128,
    /// Who: an API key's label, or `cli:USER@HOST`.
    pub actor: String,
    /// The client's address for a change over HTTP; empty for the command line.
    pub peer: String,
    /// What was done.
    pub action: Action,
    /// The package (or the policy's name); empty when none (a build).
    pub package: String,
    /// The version; empty when none.
    pub version: String,
    /// The release's outer checksum before the change, uppercase hex; empty when none.
    pub before: String,
    /// The release's outer checksum after the change, uppercase hex; empty when none.
    pub after: String,
}

/// Why the audit trail cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The storage failed.
    #[error("the audit trail: {0}")]
    Storage(#[from] StorageError),
    /// No random bytes for a record's name.
    #[error("no random bytes for an audit record's name")]
    Random,
    /// A record cannot be read.
    #[error(
        "audit record {path} is not a hexreg audit record: it was changed by something other than hexreg"
    )]
    BadRecord {
        /// The record, as shown.
        path: String,
    },
}

/// A field made safe for a record: visible ASCII only, `-` when empty.
fn field(text: &str) -> String {
    if text.is_empty() {
        return "-".to_string();
    }
    text.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn unfield(text: &str) -> String {
    if text == "-" {
        String::new()
    } else {
        text.to_string()
    }
}

impl Record {
    /// The record's text.
    pub fn render(&self) -> String {
        format!(
            "{TAG}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            self.time_nanos,
            field(&self.actor),
            field(&self.peer),
            self.action.as_str(),
            field(&self.package),
            field(&self.version),
            field(&self.before),
            field(&self.after),
        )
    }

    /// Parses a record's text.
    pub fn parse(text: &str) -> Option<Record> {
        let fields: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
        let [
            tag,
            time,
            actor,
            peer,
            action,
            package,
            version,
            before,
            after,
        ] = fields[..]
        else {
            return None;
        };
        if tag != TAG {
            return None;
        }
        Some(Record {
            time_nanos: time.parse().ok()?,
            actor: unfield(actor),
            peer: unfield(peer),
            action: Action::parse(action)?,
            package: unfield(package),
            version: unfield(version),
            before: unfield(before),
            after: unfield(after),
        })
    }

    /// The time as `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`.
    pub fn time_text(&self) -> String {
        let secs = self.time_nanos.div_euclid(1_000_000_000) as i64;
        let nanos = self.time_nanos.rem_euclid(1_000_000_000);
        let (date, time) = date_and_time(secs);
        format!("{date}T{time}.{nanos:09}Z")
    }

    /// The record as a JSON object on one line.
    pub fn json(&self) -> String {
        format!(
            "{{\"time\":{},\"actor\":{},\"peer\":{},\"action\":{},\"package\":{},\"version\":{},\"before\":{},\"after\":{}}}",
            json_string(&self.time_text()),
            json_string(&self.actor),
            json_string(&self.peer),
            json_string(self.action.as_str()),
            json_string(&self.package),
            json_string(&self.version),
            json_string(&self.before),
            json_string(&self.after),
        )
    }
}

/// Unix seconds of `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ`; `None` otherwise.
pub fn parse_date(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    let number = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let (year, month, day) = (
        number(parts.next()?, 4)?,
        number(parts.next()?, 2)?,
        number(parts.next()?, 2)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if let Some(time) = time {
        let mut parts = time.split(':');
        let (h, m, s) = (
            number(parts.next()?, 2)?,
            number(parts.next()?, 2)?,
            number(parts.next()?, 2)?,
        );
        if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + m * 60 + s;
    }
    Some(secs)
}

/// Now, in Unix nanoseconds.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    (now_nanos() / 1_000_000_000) as i64
}

/// Appends `record` to the audit trail of `storage`: a new file, created only if none is there.
pub fn append(storage: &dyn Storage, record: &Record) -> Result<(), AuditError> {
    let mut random = [0u8; 8];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| AuditError::Random)?;
    let name = format!(
        "{AUDIT_DIR}/{:020}-{}",
        record.time_nanos.max(0),
        hex_lower(&random)
    );
    storage.create_dir(AUDIT_DIR)?;
    storage.write(&name, record.render().as_bytes(), Condition::Create)?;
    Ok(())
}

/// Every record of the audit trail of `storage`, oldest first.
pub fn read_all(storage: &dyn Storage) -> Result<Vec<Record>, AuditError> {
    let Some(entries) = storage.list(AUDIT_DIR)? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries.iter().filter(|e| e.regular) {
        let path = format!("{AUDIT_DIR}/{}", entry.name);
        let Some(object) = storage.read(&path)? else {
            continue;
        };
        let record = std::str::from_utf8(&object.bytes)
            .ok()
            .and_then(Record::parse)
            .ok_or_else(|| AuditError::BadRecord {
                path: storage.display(&path),
            })?;
        records.push(record);
    }
    records.sort_by_key(|r| r.time_nanos);
    Ok(records)
}

/// The actor of a change made on the command line: `cli:USER@HOST` (the user from `USER` or
/// `LOGNAME`, else the user id; the host's name from `uname`).
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()));
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy().into_owned();
    format!("cli:{user}@{host}")
}

/// Appends a record of a change made on the command line (actor [`cli_actor`], no peer).
pub fn append_cli(
    storage: &dyn Storage,
    action: Action,
    package: &str,
    version: &str,
    before: &str,
    after: &str,
) -> Result<(), AuditError> {
    append(
        storage,
        &Record {
            time_nanos: now_nanos(),
            actor: cli_actor(),
            peer: String::new(),
            action,
            package: package.to_string(),
            version: version.to_string(),
            before: before.to_string(),
            after: after.to_string(),
        },
    )
}

fn released_path(package: &str, version: &str) -> String {
    format!("{RELEASED_DIR}/{package}-{version}")
}

/// When release `version` of `package` was first indexed by hexreg (Unix seconds), if
/// recorded.
pub fn first_indexed(
    storage: &dyn Storage,
    package: &str,
    version: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(storage
        .read(&released_path(package, version))?
        .and_then(|o| std::str::from_utf8(&o.bytes).ok()?.trim().parse().ok()))
}

/// Records that release `version` of `package` was first indexed at `secs`, unless a time is
/// recorded already (that one stays).
pub fn note_first_indexed(
    storage: &dyn Storage,
    package: &str,
    version: &str,
    secs: i64,
) -> Result<(), StorageError> {
    storage.create_dir(RELEASED_DIR)?;
    match storage.write(
        &released_path(package, version),
        format!("{secs}\n").as_bytes(),
        Condition::Create,
    ) {
        Ok(_) | Err(StorageError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Forgets when release `version` of `package` was first indexed (it was removed: a new
/// release of that version starts afresh).
pub fn forget_first_indexed(
    storage: &dyn Storage,
    package: &str,
    version: &str,
) -> Result<(), StorageError> {
    storage.delete(&released_path(package, version))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_cannot_forge_fields() {
        let record = Record {
            time_nanos: 1_765_000_000_123_456_789,
            actor: "cli:me@host\tx\nhexreg-audit-1".into(),
            peer: String::new(),
            action: Action::Replace,
            package: "acme".into(),
            version: "1.0.0".into(),
            before: "AB".into(),
            after: "CD".into(),
        };
        let text = record.render();
        assert_eq!(text.lines().count(), 1);
        let back = Record::parse(&text).unwrap();
        assert_eq!(back.actor, "cli:me@host?x?hexreg-audit-1");
        assert_eq!(back.peer, "");
        assert_eq!(back.action, Action::Replace);
        assert_eq!(back.time_text(), "2025-12-06T05:46:40.123456789Z");
        assert!(back.json().contains("\"action\":\"replace\""));
        assert_eq!(Record::parse("nonsense"), None);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2025-12-06T05:46:40Z"), Some(1_765_000_000));
        for bad in [
            "2025-13-01",
            "2025-1-01",
            "yesterday",
            "2025-12-06T05:46:40",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(date_and_time(1_765_000_000).0, "2025-12-06");
    }
}
