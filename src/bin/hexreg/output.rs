//! What the commands print: the `* creating|updating|removing PATH` lines, in the task's order,
//! and the lists of problems an engine error carries.

use std::io::Write;

use hexreg::engine::{ChangeKind, Changes, Error, Problem, Replace};
use hexreg::storage::Storage;
use hexreg::storage::StorageError;

/// Prints `changes` on stdout in the task's order, paths as `storage` shows them, unless
/// `quiet`.
pub fn print_changes(changes: Changes, storage: &dyn Storage, quiet: bool) {
    if quiet {
        return;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for change in changes.in_report_order() {
        let shown = if change.dir {
            storage.display_dir(&change.path)
        } else {
            storage.display(&change.path)
        };
        let line = match change.kind {
            ChangeKind::Creating => format!("* creating {shown}"),
            ChangeKind::Updating => format!("* updating {shown}"),
            ChangeKind::Removing => format!("* removing {shown}"),
            ChangeKind::KeyMismatch => {
                format!("* public key at {shown} does not match private key, overwriting")
            }
        };
        let _ = writeln!(out, "{line}");
    }
}

/// Prints the problems an error lists (each as `error: ...` on stderr) and returns it for the
/// closing line.
pub fn with_problems(e: Error) -> anyhow::Error {
    if let Error::InvalidTarballs { problems, .. } | Error::AddRefused { problems } = &e {
        for p in problems {
            eprintln!("error: {}", problem_text(p));
        }
    }
    e.into()
}

/// A refused tarball, and the flag that would get past it.
fn problem_text(problem: &Problem) -> String {
    match problem.replace() {
        Some(Replace::Overwrites) => format!("{problem}: pass --replace to overwrite it"),
        Some(Replace::ChangesRelease) => format!("{problem}: pass --replace only if you must"),
        None => problem.to_string(),
    }
}

/// The flag to check for an error of the library, which names none.
fn flag_hint(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let locked = " (or leave out --no-wait to wait for it)";
    match cause.downcast_ref::<Error>() {
        Some(Error::Untrusted { .. }) => return Some(" (is --private-key the registry's key?)"),
        Some(Error::WrongIndex { .. }) => return Some(" (check --name)"),
        Some(Error::Storage(StorageError::Locked { .. })) => return Some(locked),
        _ => {}
    }
    match cause.downcast_ref::<StorageError>() {
        Some(StorageError::Locked { .. }) => Some(locked),
        _ => None,
    }
}

/// Options that cannot go together or lack one another: exits 2, as clap's own usage errors
/// do, so a script tells a wrong command line from a failed run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// `Err(Usage)` with a formatted message, from the function it is used in.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::output::Usage(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// An error and its causes on one line, `outer: cause: ...`, leaving out a cause whose text is
/// already there (most messages include their source's) and the raw sources of an object-store
/// error, whose message already sums them up.
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        let summarized = cause
            .downcast_ref::<hexreg::storage::object::ObjectError>()
            .is_some()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<hexreg::storage::object::ObjectError>());
        if summarized {
            break;
        }
    }
    if let Some(hint) = e.chain().find_map(flag_hint) {
        text.push_str(hint);
    }
    text
}
