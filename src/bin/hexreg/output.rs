//! What the commands print: the `* creating|updating|removing PATH` lines, in the task's order,
//! and the lists of problems an engine error carries.

use std::io::Write;

use hexreg::engine::{ChangeKind, Changes, Error};
use hexreg::storage::Storage;

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
            eprintln!("error: {p}");
        }
    }
    e.into()
}

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
    text
}
