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

/// What a build did to one release, by its tarball's outer checksum: added (no `before`),
/// replaced by other bytes (both, different) or removed (no `after`). The audit trail records
/// each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseChange {
    /// The package.
    pub package: String,
    /// The release's version.
    pub version: String,
    /// The outer checksum before the build, if the release was there.
    pub before: Option<[u8; 32]>,
    /// The outer checksum after the build, if the release is there.
    pub after: Option<[u8; 32]>,
}

/// The releases of `package` that differ between `before` and `after` (version → outer
/// checksum), by version.
pub fn release_changes(
    package: &str,
    before: &std::collections::BTreeMap<String, [u8; 32]>,
    after: &std::collections::BTreeMap<String, [u8; 32]>,
) -> Vec<ReleaseChange> {
    let versions: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    versions
        .into_iter()
        .filter_map(|version| {
            let (b, a) = (before.get(version).copied(), after.get(version).copied());
            (b != a).then(|| ReleaseChange {
                package: package.to_string(),
                version: version.clone(),
                before: b,
                after: a,
            })
        })
        .collect()
}
