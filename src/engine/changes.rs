//! What an operation changed, in the order the task reports it (which is not the order hexreg
//! writes in: stale packages are removed last, for crash safety).

/// What happened to a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Creating,
    /// Replaced.
    Updating,
    /// Removed.
    Removing,
    /// The existing `public_key` held another key and was replaced (reported before its
    /// `Updating`).
    KeyMismatch,
}

/// Where a change goes in the task's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// `public_key`.
    PublicKey = 0,
    /// The tarballs directory, and tarballs added.
    TarballsDir = 1,
    /// `packages/*` written.
    Packages = 2,
    /// `packages/*` removed.
    Removals = 3,
    /// `names`.
    Names = 4,
    /// `versions`.
    Versions = 5,
    /// Tarballs deleted by `remove`, after the index no longer lists them.
    Deletions = 6,
    /// `policies/*` written or removed.
    Policies = 7,
}

/// One change: a path relative to the registry's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where it goes in the report.
    pub stage: Stage,
    /// What happened.
    pub kind: ChangeKind,
    /// The file (or directory) relative to the registry's root.
    pub path: String,
    /// A directory rather than a file.
    pub dir: bool,
}

/// The changes of an operation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    list: Vec<Change>,
}

impl Changes {
    /// Records a change to the file `path`.
    pub fn file(&mut self, stage: Stage, kind: ChangeKind, path: &str) {
        self.list.push(Change {
            stage,
            kind,
            path: path.to_string(),
            dir: false,
        });
    }

    /// Records the creation of directory `path`.
    pub fn dir_created(&mut self, stage: Stage, path: &str) {
        self.list.push(Change {
            stage,
            kind: ChangeKind::Creating,
            path: path.to_string(),
            dir: true,
        });
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The changes in the task's order (stable within a stage).
    pub fn in_report_order(mut self) -> Vec<Change> {
        self.list.sort_by_key(|c| c.stage);
        self.list
    }

    /// The changes in the order they were made.
    pub fn as_made(&self) -> &[Change] {
        &self.list
    }
}
