//! API keys for the Hex HTTP API of `hexreg serve`: clients send a key as the raw
//! `authorization` header; a read key fetches the repository, a write key also publishes,
//! retires, reverts and uploads docs.
//!
//! What belongs here: the keys file's format and rules ([`KeysFile`], no I/O), its file on disk
//! (`file`, its own small module: the keys file lives outside the published directory, so not
//! in a registry's storage) and the [`KeyStore`] a server holds. What must not: HTTP, or
//! anything of a registry.
//!
//! A key is `hexreg_` and 64 lowercase hexadecimal digits (32 random bytes from aws-lc's
//! system random generator). Only its SHA-256 is stored, in a keys file of one line per key:
//!
//! ```text
//! # comments and blank lines are kept as they are
//! ci-read read 3b5f...64 hex digits...9c2e 1718000000
//! release write 0a7d...64 hex digits...41f0 1718003600
//! ```
//!
//! `LABEL PERMISSION SHA256 CREATED`: a label of 1 to 64 of `A-Z a-z 0-9 . _ -`, unique in the
//! file; `read` or `write`; the SHA-256 of the key text in hexadecimal; when the key was created,
//! in Unix seconds. [`KeysFile`] parses, edits and renders that text, without I/O;
//! [`read_file`], [`write_file`] and [`update_file`] keep it on disk (mode 0600, replaced
//! atomically); [`KeyStore`] is what a server holds: it answers [`KeyStore::authenticate`] from
//! many threads and reloads the file when it changes, so keys added or revoked take effect
//! without a restart.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;

use crate::format::encoding;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

mod file;
mod scope;
mod store;

pub use file::{Updated, read_file, update_file, write_file};
pub use scope::Scope;
pub use store::{Grant, KeyStore, Reload};

/// Every key starts with this, so that a key pasted into a log, a chat or a commit is easy to
/// grep for and secret scanners can be taught to recognise it.
pub const KEY_PREFIX: &str = "hexreg_";

/// Random bytes in a key: 256 bits, beyond any guessing.
pub const KEY_BYTES: usize = 32;

/// Longest label.
pub const MAX_LABEL_LEN: usize = 64;

/// The mode of a keys file: read and write by its owner only.
pub const FILE_MODE: u32 = 0o600;

/// How often [`KeyStore::authenticate`] looks at the keys file at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a key may do. `Write` implies `Read`; the order is `Read < Write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Fetch the repository.
    Read,
    /// Also publish, retire, revert and upload docs.
    Write,
}

impl Permission {
    /// Whether a key with this permission may do what needs `needed`.
    pub fn allows(self, needed: Permission) -> bool {
        self >= needed
    }

    /// `read` or `write`, as in the keys file.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = KeysError;

    fn from_str(text: &str) -> Result<Self, KeysError> {
        match text {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            _ => Err(KeysError::BadPermission {
                text: text.to_string(),
            }),
        }
    }
}

/// What can go wrong with keys and keys files. Messages say which file, what is wrong and what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The keys file does not exist.
    #[error(
        "keys file {path} does not exist: create it and a first key with `hexreg key add --keys {path} LABEL`"
    )]
    Missing {
        /// The file, as given.
        path: String,
    },
    /// Reading or writing a keys file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, ...).
        action: &'static str,
        /// The file or directory.
        path: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A line of keys-file text is wrong (from [`KeysFile::parse`], which has no file name).
    #[error("line {line}: {problem}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A line of a keys file is wrong.
    #[error("{path}, line {line}: {problem}; fix or delete the line")]
    Invalid {
        /// The file, as given.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A label with characters or a length that labels may not have.
    #[error(
        "invalid key label {label:?}: use 1 to {MAX_LABEL_LEN} letters, digits, '.', '_' or '-'"
    )]
    BadLabel {
        /// The label given (cut to 80 characters).
        label: String,
    },
    /// A permission other than `read` or `write`.
    #[error("invalid permission {text:?}: use `read` or `write`")]
    BadPermission {
        /// The text given.
        text: String,
    },
    /// `add` with a label the file has already.
    #[error(
        "a key labelled {label} exists already: choose another label, or revoke the old key first with `hexreg key revoke`"
    )]
    LabelTaken {
        /// The label.
        label: String,
    },
    /// `revoke` with a label the file does not have.
    #[error("no key is labelled {label}; {}", holds(.labels))]
    UnknownLabel {
        /// The label given.
        label: String,
        /// The labels the file has.
        labels: Vec<String>,
    },
    /// The system random generator failed.
    #[error("the system random number generator failed; no key was created, try again")]
    Random,
}

fn holds(labels: &[String]) -> String {
    if labels.is_empty() {
        "the keys file holds no keys".to_string()
    } else {
        format!("the keys file holds: {}", labels.join(", "))
    }
}

/// One key of a keys file: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    label: String,
    permission: Permission,
    hash: [u8; 32],
    created: u64,
    scope: Option<Scope>,
}

impl KeyEntry {
    /// Its label, unique in its file.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What it may do.
    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// When it was created, in Unix seconds.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The SHA-256 of the key text, in lowercase hexadecimal.
    pub fn hash_hex(&self) -> String {
        to_hex(&self.hash)
    }

    /// The packages a write key may change; `None`: every package.
    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }
}

/// A line of a keys file: a key, or a comment or blank line kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Key(KeyEntry),
    Text(String),
}

/// The contents of a keys file: its keys, and its comments and blank lines where they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFile {
    lines: Vec<Line>,
}

/// The first lines of a new keys file.
const HEADER: [&str; 3] = [
    "# hexreg API keys: LABEL PERMISSION SHA256-OF-KEY CREATED-UNIX-SECONDS, one key per line.",
    "# Only hashes are stored. Manage with `hexreg key add|list|revoke`; a running",
    "# `hexreg serve` picks up changes by itself.",
];

impl Default for KeysFile {
    fn default() -> Self {
        KeysFile::new()
    }
}

impl KeysFile {
    /// A file with no keys, and a comment saying what the file is.
    pub fn new() -> Self {
        KeysFile {
            lines: HEADER.iter().map(|l| Line::Text(l.to_string())).collect(),
        }
    }

    /// Parses keys-file text. Errors are [`KeysError::Syntax`], with the line number.
    pub fn parse(text: &str) -> Result<KeysFile, KeysError> {
        let mut lines = Vec::new();
        // Label -> line it is on.
        let mut seen = std::collections::HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(Line::Text(raw.to_string()));
                continue;
            }
            let entry = parse_entry(trimmed).map_err(|problem| KeysError::Syntax {
                line: number,
                problem,
            })?;
            if let Some(first) = seen.insert(entry.label.clone(), number) {
                return Err(KeysError::Syntax {
                    line: number,
                    problem: format!(
                        "label {} is on line {first} already; labels must be unique",
                        entry.label
                    ),
                });
            }
            lines.push(Line::Key(entry));
        }
        Ok(KeysFile { lines })
    }

    /// The text of the file: comments and blank lines as they were, each key as
    /// `LABEL PERMISSION SHA256 CREATED`, every line ending in a newline.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Text(t) => text.push_str(t),
                Line::Key(e) => {
                    text.push_str(&format!(
                        "{} {} {} {}",
                        e.label,
                        e.permission,
                        e.hash_hex(),
                        e.created
                    ));
                    if let Some(scope) = &e.scope {
                        text.push_str(&format!(" packages={scope}"));
                    }
                }
            }
            text.push('\n');
        }
        text
    }

    /// The keys, in file order.
    pub fn list(&self) -> impl Iterator<Item = &KeyEntry> {
        self.lines.iter().filter_map(|line| match line {
            Line::Key(e) => Some(e),
            Line::Text(_) => None,
        })
    }

    /// The key labelled `label`.
    pub fn get(&self, label: &str) -> Option<&KeyEntry> {
        self.list().find(|e| e.label == label)
    }

    /// Creates a key labelled `label` with `permission`, created at `now` (Unix seconds), adds
    /// its hash at the end of the file and returns the key text: the only time it is known.
    pub fn add(
        &mut self,
        label: &str,
        permission: Permission,
        now: u64,
    ) -> Result<String, KeysError> {
        self.add_scoped(label, permission, None, now)
    }

    /// [`KeysFile::add`], for a key limited to the packages of `scope` (`None`: every
    /// package).
    pub fn add_scoped(
        &mut self,
        label: &str,
        permission: Permission,
        scope: Option<Scope>,
        now: u64,
    ) -> Result<String, KeysError> {
        check_label(label)?;
        if self.get(label).is_some() {
            return Err(KeysError::LabelTaken {
                label: label.to_string(),
            });
        }
        let key = generate_key()?;
        self.lines.push(Line::Key(KeyEntry {
            label: label.to_string(),
            permission,
            hash: hash_key(&key),
            created: now,
            scope,
        }));
        Ok(key)
    }

    /// Removes the key labelled `label`.
    pub fn revoke(&mut self, label: &str) -> Result<(), KeysError> {
        let before = self.lines.len();
        self.lines
            .retain(|line| !matches!(line, Line::Key(e) if e.label == label));
        if self.lines.len() == before {
            return Err(KeysError::UnknownLabel {
                label: label.to_string(),
                labels: self.list().map(|e| e.label.clone()).collect(),
            });
        }
        Ok(())
    }

    /// The label and permission of the key `presented`, if the file has it. The presented key
    /// is hashed and compared with every stored hash in constant time, so how long this takes
    /// says nothing about which hash, or how much of one, matched.
    pub fn authenticate(&self, presented: &str) -> Option<(&str, Permission)> {
        self.authenticate_entry(presented)
            .map(|entry| (entry.label(), entry.permission))
    }

    /// The entry of the key `presented`, if the file has it, compared as
    /// [`KeysFile::authenticate`] does.
    pub fn authenticate_entry(&self, presented: &str) -> Option<&KeyEntry> {
        let digest = hash_key(presented);
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.list().enumerate() {
            let equal = entry.hash[..].ct_eq(&digest[..]);
            index.conditional_assign(&(i as u64), equal);
            found |= equal;
        }
        if !bool::from(found) {
            return None;
        }
        self.list().nth(usize::try_from(index).ok()?)
    }
}

/// A key line's fields, or what is wrong with them.
fn parse_entry(line: &str) -> Result<KeyEntry, String> {
    let mut fields: Vec<&str> = line.split_whitespace().collect();
    let scope = match fields.get(4) {
        Some(extra) if fields.len() == 5 => {
            let patterns = extra.strip_prefix("packages=").ok_or_else(|| {
                format!(
                    "the fifth field must be `packages=PATTERN[,PATTERN...]`, not {:?}",
                    shorten(extra)
                )
            })?;
            fields.pop();
            Some(Scope::parse(patterns)?)
        }
        _ => None,
    };
    let [label, permission, hash, created] = fields[..] else {
        return Err(format!(
            "expected `LABEL PERMISSION SHA256 CREATED [packages=PATTERN,...]` (4 or 5 fields), found {} field{}",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    };
    check_label(label).map_err(|e| e.to_string())?;
    let permission = permission
        .parse::<Permission>()
        .map_err(|_| format!("permission must be `read` or `write`, not {permission:?}"))?;
    let hash = from_hex(hash).ok_or_else(|| {
        format!(
            "the key hash must be 64 hexadecimal digits (a SHA-256), not {:?}",
            shorten(hash)
        )
    })?;
    let created = created.parse::<u64>().map_err(|_| {
        format!("the creation time must be a number of seconds since 1970, not {created:?}")
    })?;
    Ok(KeyEntry {
        label: label.to_string(),
        permission,
        hash,
        created,
        scope,
    })
}

/// Whether `label` may label a key: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_label(label: &str) -> Result<(), KeysError> {
    let valid = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(KeysError::BadLabel {
            label: shorten(label),
        })
    }
}

/// `text`, cut to a length fit for a message.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// The key in an `authorization` header: the header itself (hex clients send the key as it
/// is), or the password of `Basic base64(USER:KEY)` credentials (browsers and tools that only
/// speak HTTP Basic; the user name is ignored).
pub fn presented_key(header: &str) -> std::borrow::Cow<'_, str> {
    use base64::Engine;
    let basic = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "));
    if let Some(encoded) = basic
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim())
        && let Ok(text) = String::from_utf8(decoded)
        && let Some((_, password)) = text.split_once(':')
    {
        return std::borrow::Cow::Owned(password.to_string());
    }
    std::borrow::Cow::Borrowed(header)
}

/// A new key: [`KEY_PREFIX`] and [`KEY_BYTES`] random bytes from aws-lc's system generator, in
/// lowercase hexadecimal.
pub fn generate_key() -> Result<String, KeysError> {
    let mut bytes = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeysError::Random)?;
    Ok(format!("{KEY_PREFIX}{}", to_hex(&bytes)))
}

/// What a keys file stores of a key: the SHA-256 of its text. A fast hash is safe here, unlike
/// for passwords: keys are 256 random bits, so no dictionary or brute force can reverse it.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn to_hex(bytes: &[u8]) -> String {
    encoding::hex_lower(bytes)
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(encoding::parse_hex(text)?.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    const HASH_A: &str = "3b5f0e3f6b7b9a1d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b9c2e";

    fn is_key(key: &str) -> bool {
        key.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    }

    #[test]
    fn keys_have_the_prefix_and_64_hex_digits_and_differ() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert!(is_key(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn parse_and_render_round_trip_keeping_comments() {
        let text = format!(
            "# keys\n\nci read {HASH_A} 1700000000\n  # indented comment\nrel-1.x_y write {} 0\n",
            HASH_A.replace('3', "4")
        );
        let keys = KeysFile::parse(&text).unwrap();
        assert_eq!(keys.render(), text);
        assert_eq!(KeysFile::parse(&keys.render()).unwrap(), keys);
        let listed: Vec<_> = keys
            .list()
            .map(|e| (e.label(), e.permission(), e.created()))
            .collect();
        assert_eq!(
            listed,
            [
                ("ci", Permission::Read, 1_700_000_000),
                ("rel-1.x_y", Permission::Write, 0)
            ]
        );
        // Extra spaces and upper-case digits are accepted, and rendered canonically.
        let loose = format!("ci\tread   {}  5 ", HASH_A.to_uppercase());
        assert_eq!(
            KeysFile::parse(&loose).unwrap().render(),
            format!("ci read {HASH_A} 5\n")
        );
        let fresh = KeysFile::new();
        assert_eq!(KeysFile::parse(&fresh.render()).unwrap(), fresh);
        assert_eq!(fresh.list().count(), 0);
    }

    fn syntax_error(text: &str) -> (usize, String) {
        match KeysFile::parse(text) {
            Err(KeysError::Syntax { line, problem }) => (line, problem),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn bad_lines_are_named_with_their_number() {
        let cases = [
            (format!("ci read {HASH_A}"), "found 3 fields"),
            (
                format!("ci read {HASH_A} 1 extra"),
                "the fifth field must be `packages=",
            ),
            (
                format!("ci read {HASH_A} 1 packages=a extra"),
                "found 6 fields",
            ),
            (format!("c/i read {HASH_A} 1"), "invalid key label \"c/i\""),
            (
                format!("{} read {HASH_A} 1", "a".repeat(65)),
                "invalid key label",
            ),
            (
                format!("ci admin {HASH_A} 1"),
                "`read` or `write`, not \"admin\"",
            ),
            ("ci read abc 1".to_string(), "64 hexadecimal digits"),
            (
                format!("ci read {} 1", HASH_A.replace('3', "g")),
                "64 hexadecimal",
            ),
            (
                format!("ci read {HASH_A} -1"),
                "seconds since 1970, not \"-1\"",
            ),
            (
                format!("ci read {HASH_A} 1\nci write {HASH_A} 2"),
                "label ci is on line 2",
            ),
        ];
        for (body, expected) in cases {
            let text = format!("# header\n{body}\n");
            let (line, problem) = syntax_error(&text);
            let want_line = if body.contains('\n') { 3 } else { 2 };
            assert_eq!(line, want_line, "{text:?}");
            assert!(problem.contains(expected), "{text:?}: {problem}");
        }
        // The message, whole.
        let message = KeysFile::parse("ci read x 1").unwrap_err().to_string();
        assert!(
            message.starts_with("line 1: the key hash must be"),
            "{message}"
        );
    }

    #[test]
    fn authenticate_right_wrong_and_revoked_keys() {
        let mut keys = KeysFile::new();
        let reader = keys.add("ci", Permission::Read, 10).unwrap();
        let writer = keys.add("release", Permission::Write, 20).unwrap();
        assert_eq!(keys.authenticate(&reader), Some(("ci", Permission::Read)));
        assert_eq!(
            keys.authenticate(&writer),
            Some(("release", Permission::Write))
        );
        assert_eq!(keys.authenticate(&format!("{reader}x")), None);
        assert_eq!(keys.authenticate(&reader[..reader.len() - 1]), None);
        assert_eq!(keys.authenticate(""), None);
        assert_eq!(keys.authenticate(&generate_key().unwrap()), None);
        // Only the hash is stored.
        let text = keys.render();
        assert!(!text.contains(&reader) && !text.contains(&reader[KEY_PREFIX.len()..]));
        assert!(text.contains(&to_hex(&hash_key(&reader))));
        // Survives a round trip through text.
        let reparsed = KeysFile::parse(&text).unwrap();
        assert_eq!(
            reparsed.authenticate(&reader),
            Some(("ci", Permission::Read))
        );

        keys.revoke("ci").unwrap();
        assert_eq!(keys.authenticate(&reader), None);
        assert_eq!(
            keys.authenticate(&writer),
            Some(("release", Permission::Write))
        );
    }

    #[test]
    fn add_and_revoke_refuse_what_they_cannot_do() {
        let mut keys = KeysFile::new();
        keys.add("ci", Permission::Read, 1).unwrap();
        let taken = keys.add("ci", Permission::Write, 2).unwrap_err();
        assert!(matches!(taken, KeysError::LabelTaken { .. }), "{taken}");
        assert_eq!(keys.get("ci").unwrap().permission(), Permission::Read);
        let bad = keys.add("has space", Permission::Read, 2).unwrap_err();
        assert!(matches!(bad, KeysError::BadLabel { .. }), "{bad}");
        let unknown = keys.revoke("nope").unwrap_err().to_string();
        assert_eq!(unknown, "no key is labelled nope; the keys file holds: ci");
        keys.revoke("ci").unwrap();
        let none = keys.revoke("ci").unwrap_err().to_string();
        assert!(none.ends_with("the keys file holds no keys"), "{none}");
    }

    #[test]
    fn write_implies_read() {
        assert!(Permission::Write.allows(Permission::Read));
        assert!(Permission::Write.allows(Permission::Write));
        assert!(Permission::Read.allows(Permission::Read));
        assert!(!Permission::Read.allows(Permission::Write));
        assert_eq!("write".parse::<Permission>().unwrap(), Permission::Write);
        assert!("Write".parse::<Permission>().is_err());
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_written_with_mode_0600_and_updated_under_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf").join("keys");
        let missing = update_file(&path, false, |_| Ok(())).unwrap_err();
        assert!(matches!(missing, KeysError::Missing { .. }), "{missing}");
        assert!(missing.to_string().contains("hexreg key add --keys"));

        let added = update_file(&path, true, |k| k.add("ci", Permission::Read, 1)).unwrap();
        assert!(added.created);
        assert_eq!(added.tightened_from, None);
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["keys"], "no temporary file left");

        // A file someone made readable to others is tightened, and the caller told.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let second = update_file(&path, true, |k| k.add("rel", Permission::Write, 2)).unwrap();
        assert!(!second.created);
        assert_eq!(second.tightened_from, Some(0o644));
        assert_eq!(mode(&path), 0o600);

        // A failed change writes nothing.
        let before = fs::read(&path).unwrap();
        assert!(update_file(&path, true, |k| k.revoke("nope")).is_err());
        assert_eq!(fs::read(&path).unwrap(), before);

        let keys = read_file(&path).unwrap();
        assert_eq!(
            keys.authenticate(&added.value),
            Some(("ci", Permission::Read))
        );
        assert_eq!(
            keys.authenticate(&second.value),
            Some(("rel", Permission::Write))
        );
    }

    #[test]
    fn read_file_names_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys");
        fs::write(&path, "# x\nci read nothex 1\n").unwrap();
        let message = read_file(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}, line 2: the key hash", path.display())),
            "{message}"
        );
        assert!(message.ends_with("; fix or delete the line"), "{message}");
    }

    #[test]
    fn a_scoped_key_round_trips_and_a_bad_scope_is_a_syntax_error() {
        let mut keys = KeysFile::new();
        let key = keys
            .add_scoped(
                "ci",
                Permission::Write,
                Some(Scope::parse("acme_*").unwrap()),
                7,
            )
            .unwrap();
        let text = keys.render();
        assert!(text.trim_end().ends_with(" 7 packages=acme_*"), "{text}");
        let back = KeysFile::parse(&text).unwrap();
        let entry = back.authenticate_entry(&key).unwrap();
        assert!(
            entry
                .scope()
                .is_some_and(|s| s.allows("acme_a") && !s.allows("b"))
        );
        let bad = text.replace("packages=acme_*", "pkgs=acme_*");
        assert!(KeysFile::parse(&bad).is_err());
        assert_eq!(&*presented_key("Basic YW55OmhleHJlZ194"), "hexreg_x");
        assert_eq!(&*presented_key("hexreg_x"), "hexreg_x");
    }

    fn recording_store(path: &Path) -> (KeyStore, Arc<Mutex<Vec<String>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&events);
        let store = KeyStore::open_with_interval(path, Duration::ZERO, move |event| {
            log.lock().unwrap().push(match event {
                Reload::Loaded { keys } => format!("loaded {keys}"),
                Reload::Failed(e) => format!("failed {e}"),
                Reload::Deleted => "deleted".to_string(),
            });
        })
        .unwrap();
        (store, events)
    }

    #[test]
    fn a_store_sees_changes_and_accepts_no_key_while_the_file_is_bad() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys");
        let missing = KeyStore::open(&path, |_| {}).unwrap_err().to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        assert!(missing.contains("hexreg key add"), "{missing}");

        let first = update_file(&path, true, |k| k.add("ci", Permission::Read, 1))
            .unwrap()
            .value;
        let (store, events) = recording_store(&path);
        let grant = store.authenticate(&first).unwrap();
        assert_eq!(
            grant,
            Grant {
                label: "ci".into(),
                permission: Permission::Read,
                scope: None,
            }
        );
        assert!(events.lock().unwrap().is_empty(), "nothing changed yet");

        let second = update_file(&path, false, |k| k.add("rel", Permission::Write, 2))
            .unwrap()
            .value;
        assert_eq!(
            store.authenticate(&second).map(|g| g.permission),
            Some(Permission::Write)
        );
        update_file(&path, false, |k| k.revoke("ci")).unwrap();
        assert_eq!(store.authenticate(&first), None);
        assert_eq!(*events.lock().unwrap(), ["loaded 2", "loaded 1"]);

        // Turned invalid (a typo while revoking): no key is accepted until it is fixed, and
        // the store says why.
        let valid = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{valid}broken line\n")).unwrap();
        for _ in 0..3 {
            assert!(store.authenticate(&second).is_none());
        }
        assert!(store.broken().is_some_and(|why| why.contains("line 5")));
        fs::write(&path, &valid).unwrap();
        assert!(store.authenticate(&second).is_some());
        assert_eq!(store.broken(), None);
        // Gone: no keys at all (not broken: deleting the file revokes every key).
        fs::remove_file(&path).unwrap();
        for _ in 0..3 {
            assert!(store.authenticate(&second).is_none());
        }
        assert_eq!(store.broken(), None);
        {
            let events = events.lock().unwrap();
            assert_eq!(events.len(), 5, "{events:?}");
            assert!(events[2].contains("line 5: expected"), "{}", events[2]);
            assert_eq!(events[3], "loaded 1");
            assert_eq!(events[4], "deleted");
        }
        // Back, valid: reloaded.
        let third = update_file(&path, true, |k| k.add("new", Permission::Read, 3))
            .unwrap()
            .value;
        assert!(store.authenticate(&second).is_none());
        assert_eq!(store.authenticate(&third).unwrap().label, "new");
        assert_eq!(events.lock().unwrap().last().unwrap(), "loaded 1");
    }

    #[test]
    fn a_store_looks_at_its_file_once_per_interval_unless_refreshed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys");
        update_file(&path, true, |k| k.add("ci", Permission::Read, 1)).unwrap();
        let store = KeyStore::open_with_interval(&path, Duration::from_secs(3600), |_| {}).unwrap();
        let key = update_file(&path, false, |k| k.add("rel", Permission::Read, 2))
            .unwrap()
            .value;
        // Opened just now: not looked at again within the interval.
        assert!(store.authenticate(&key).is_none());
        store.refresh();
        assert!(store.authenticate(&key).is_some());
    }

    #[test]
    fn a_store_is_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<KeyStore>();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys");
        let key = update_file(&path, true, |k| k.add("ci", Permission::Read, 1))
            .unwrap()
            .value;
        let store = Arc::new(KeyStore::open_with_interval(&path, Duration::ZERO, |_| {}).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                let key = key.clone();
                std::thread::spawn(move || (0..200).all(|_| store.authenticate(&key).is_some()))
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
    }
}
