//! One builder for every package tarball the tests make, in the style of cargo's test-support
//! `Package`: valid ones by default, written with the library's own writer
//! ([`hexreg::format::tarball::create`]'s parts: [`write_contents`], [`write_outer`],
//! [`hexreg::format::metadata::render`]), and broken ones on request.
//!
//! ```ignore
//! Package::new("foo", "1.0.0").dep("bar", "~> 1.0").publish(&public);
//! let bytes = Package::new("foo", "1.0.0").checksum("AB".repeat(32)).tarball();
//! ```
//!
//! What a tarball holds is decided in three layers, each over the one before:
//! 1. the package: name, version, app, requirements ([`Package::dep`], ...) and files
//!    ([`Package::file`]; `src/NAME.erl` when none is given), rendered as hex_core would;
//! 2. the parts, each replaceable by raw bytes: `VERSION` ([`Package::version_file`]),
//!    `metadata.config` ([`Package::metadata_config`], or one value of it with
//!    [`Package::metadata_term`]) and `contents.tar.gz` ([`Package::contents`]); `CHECKSUM`
//!    is computed from them unless [`Package::checksum`] sets it;
//! 3. the outer entries, edited in the order the calls are made after the CHECKSUM is
//!    computed (so never updated by them): [`Package::without_entry`],
//!    [`Package::with_entry`], [`Package::replace_entry`], [`Package::special_entry`],
//!    [`Package::reverse_entries`].
//!
//! `examples/bench.rs` includes this file too (with `#[path]`), so it uses only hexreg and the
//! crates hexreg depends on.

use std::fs;
use std::path::{Path, PathBuf};

use hexreg::format::encoding::hex_upper;
use hexreg::format::metadata::{Metadata, Requirement, render};
use hexreg::format::tarball::{inner_checksum, write_contents, write_outer};

/// A package release to build a tarball of.
#[derive(Clone, Debug)]
pub struct Package {
    name: String,
    version: String,
    app: Option<String>,
    requirements: Vec<Requirement>,
    terms: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    metadata_config: Option<Vec<u8>>,
    version_file: Vec<u8>,
    contents: Option<Vec<u8>>,
    checksum: Option<Vec<u8>>,
    edits: Vec<Edit>,
}

/// A change to the list of outer entries, applied after CHECKSUM is computed.
#[derive(Clone, Debug)]
enum Edit {
    Without(String),
    With(String, Vec<u8>),
    Replace(String, Vec<u8>),
    Special {
        name: String,
        kind: tar::EntryType,
        link: Option<String>,
    },
    Reverse,
}

/// One outer entry: a regular file, or an entry of another type with no data.
enum Entry {
    File(String, Vec<u8>),
    Special {
        name: String,
        kind: tar::EntryType,
        link: Option<String>,
    },
}

impl Package {
    /// Package `name` at `version`, app `name`, no dependencies.
    pub fn new(name: &str, version: &str) -> Package {
        Package {
            name: name.to_string(),
            version: version.to_string(),
            app: None,
            requirements: Vec::new(),
            terms: Vec::new(),
            files: Vec::new(),
            metadata_config: None,
            version_file: b"3".to_vec(),
            contents: None,
            checksum: None,
            edits: Vec::new(),
        }
    }

    /// The OTP application name (default: the package name).
    pub fn app(mut self, app: &str) -> Package {
        self.app = Some(app.to_string());
        self
    }

    /// A dependency on package `name` (app `name`) with this requirement.
    pub fn dep(self, name: &str, requirement: &str) -> Package {
        self.requirement(Requirement {
            name: name.to_string(),
            app: Some(name.to_string()),
            requirement: requirement.to_string(),
            optional: false,
            repository: None,
        })
    }

    /// An optional dependency on package `name` (app `name`).
    pub fn optional_dep(self, name: &str, requirement: &str) -> Package {
        self.requirement(Requirement {
            name: name.to_string(),
            app: Some(name.to_string()),
            requirement: requirement.to_string(),
            optional: true,
            repository: None,
        })
    }

    /// A dependency given whole (other app, repository, ...). Requirements are written sorted
    /// by name; a later one of the same name replaces an earlier one.
    pub fn requirement(mut self, requirement: Requirement) -> Package {
        self.requirements.retain(|r| r.name != requirement.name);
        self.requirements.push(requirement);
        self
    }

    /// A file of the package (in contents.tar.gz). Without any, the package holds
    /// `src/NAME.erl`.
    pub fn file(mut self, path: &str, bytes: impl AsRef<[u8]>) -> Package {
        self.files.push((path.to_string(), bytes.as_ref().to_vec()));
        self
    }

    /// Several files, as [`Package::file`].
    pub fn files(self, files: &[(&str, &[u8])]) -> Package {
        files
            .iter()
            .fold(self, |package, (path, bytes)| package.file(path, bytes))
    }

    /// The value of `key` in metadata.config, as raw Erlang text (`<<"jason">>`, `[jason]`),
    /// in place of the rendered one (or added, when render writes no such key).
    pub fn metadata_term(mut self, key: &str, erlang_text: &str) -> Package {
        self.terms.retain(|(k, _)| k != key);
        self.terms.push((key.to_string(), erlang_text.to_string()));
        self
    }

    /// metadata.config as these raw bytes, in place of the rendered one (CHECKSUM computed
    /// over them).
    pub fn metadata_config(mut self, bytes: impl AsRef<[u8]>) -> Package {
        self.metadata_config = Some(bytes.as_ref().to_vec());
        self
    }

    /// The `VERSION` entry (default `3`; CHECKSUM computed over it).
    pub fn version_file(mut self, bytes: impl AsRef<[u8]>) -> Package {
        self.version_file = bytes.as_ref().to_vec();
        self
    }

    /// contents.tar.gz as these raw bytes, in place of the gzip'd tar of the files (CHECKSUM
    /// computed over them).
    pub fn contents(mut self, bytes: impl AsRef<[u8]>) -> Package {
        self.contents = Some(bytes.as_ref().to_vec());
        self
    }

    /// The `CHECKSUM` entry as these bytes, right or wrong.
    pub fn checksum(mut self, bytes: impl AsRef<[u8]>) -> Package {
        self.checksum = Some(bytes.as_ref().to_vec());
        self
    }

    /// Leaves out the outer entry `name`.
    pub fn without_entry(mut self, name: &str) -> Package {
        self.edits.push(Edit::Without(name.to_string()));
        self
    }

    /// Adds an outer regular file `name` at the end (a second one when the name is taken).
    pub fn with_entry(mut self, name: &str, bytes: impl AsRef<[u8]>) -> Package {
        self.edits
            .push(Edit::With(name.to_string(), bytes.as_ref().to_vec()));
        self
    }

    /// The outer entry `name` holds these bytes instead (CHECKSUM not updated).
    pub fn replace_entry(mut self, name: &str, bytes: impl AsRef<[u8]>) -> Package {
        self.edits
            .push(Edit::Replace(name.to_string(), bytes.as_ref().to_vec()));
        self
    }

    /// An outer entry `name` of another type than a regular file (directory, symbolic link to
    /// `link`, ...), with no data, at the end, in place of the regular file of that name if
    /// there is one.
    pub fn special_entry(
        mut self,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
    ) -> Package {
        self.edits.push(Edit::Special {
            name: name.to_string(),
            kind,
            link: link.map(str::to_string),
        });
        self
    }

    /// Writes the outer entries in the reverse order (hex_core reads them in any order).
    pub fn reverse_entries(mut self) -> Package {
        self.edits.push(Edit::Reverse);
        self
    }

    /// `NAME-VERSION.tar`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.tar", self.name, self.version)
    }

    /// The metadata.config the tarball holds.
    pub fn metadata_text(&self) -> Vec<u8> {
        if let Some(raw) = &self.metadata_config {
            return raw.clone();
        }
        let mut requirements = self.requirements.clone();
        requirements.sort_by(|a, b| a.name.cmp(&b.name));
        let meta = Metadata {
            name: self.name.clone(),
            version: self.version.clone(),
            app: self.app.clone().unwrap_or_else(|| self.name.clone()),
            requirements,
        };
        let rendered = render(&meta);
        if self.terms.is_empty() {
            return rendered.into_bytes();
        }
        // render writes one `{Key, Value}.` form per line, keys sorted.
        let mut forms: Vec<String> = rendered.lines().map(str::to_string).collect();
        for (key, value) in &self.terms {
            let prefix = format!("{{<<\"{key}\">>,");
            let form = format!("{prefix}{value}}}.");
            match forms.iter().position(|f| f.starts_with(&prefix)) {
                Some(i) => forms[i] = form,
                None => {
                    let at = forms.partition_point(|f| f.as_str() < form.as_str());
                    forms.insert(at, form);
                }
            }
        }
        forms
            .iter()
            .map(|f| format!("{f}\n"))
            .collect::<String>()
            .into_bytes()
    }

    /// The contents.tar.gz the tarball holds.
    pub fn contents_tar_gz(&self) -> Vec<u8> {
        if let Some(raw) = &self.contents {
            return raw.clone();
        }
        if self.files.is_empty() {
            let source = format!("-module({}).\n%% {}\n", self.name, self.version);
            return write_contents(&[(&format!("src/{}.erl", self.name), source.as_bytes())]);
        }
        let files: Vec<(&str, &[u8])> = self
            .files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        write_contents(&files)
    }

    /// sha256(VERSION ‖ metadata.config ‖ contents.tar.gz) in upper-case hex: the right
    /// CHECKSUM for these parts, whatever [`Package::checksum`] says.
    pub fn inner_checksum(&self) -> String {
        hex_upper(&inner_checksum(
            &self.version_file,
            &self.metadata_text(),
            &self.contents_tar_gz(),
        ))
    }

    /// The tarball file's bytes.
    pub fn tarball(&self) -> Vec<u8> {
        let checksum = match &self.checksum {
            Some(bytes) => bytes.clone(),
            None => self.inner_checksum().into_bytes(),
        };
        let mut entries = vec![
            Entry::File("VERSION".into(), self.version_file.clone()),
            Entry::File("CHECKSUM".into(), checksum),
            Entry::File("metadata.config".into(), self.metadata_text()),
            Entry::File("contents.tar.gz".into(), self.contents_tar_gz()),
        ];
        for edit in &self.edits {
            match edit {
                Edit::Without(name) => entries.retain(|e| e.name() != name),
                Edit::With(name, bytes) => entries.push(Entry::File(name.clone(), bytes.clone())),
                Edit::Replace(name, bytes) => {
                    let entry = entries
                        .iter_mut()
                        .find(|e| e.name() == name)
                        .unwrap_or_else(|| panic!("no entry `{name}` to replace"));
                    *entry = Entry::File(name.clone(), bytes.clone());
                }
                Edit::Special { name, kind, link } => {
                    entries.retain(|e| e.name() != name);
                    entries.push(Entry::Special {
                        name: name.clone(),
                        kind: *kind,
                        link: link.clone(),
                    });
                }
                Edit::Reverse => entries.reverse(),
            }
        }
        write_entries(&entries)
    }

    /// Writes the tarball as `public/tarballs/NAME-VERSION.tar` (directories created) and
    /// returns its path.
    pub fn publish(&self, public: &Path) -> PathBuf {
        let dir = public.join("tarballs");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(self.file_name());
        fs::write(&path, self.tarball()).unwrap();
        path
    }
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::File(name, _) | Entry::Special { name, .. } => name,
        }
    }
}

/// The outer tar: [`write_outer`] when every entry is a regular file, else the tar crate's
/// builder (regular files mode 0644, the others 0755).
fn write_entries(entries: &[Entry]) -> Vec<u8> {
    if entries.iter().all(|e| matches!(e, Entry::File(..))) {
        let files: Vec<(&str, &[u8])> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::File(name, bytes) => Some((name.as_str(), bytes.as_slice())),
                Entry::Special { .. } => None,
            })
            .collect();
        return write_outer(&files);
    }
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        match entry {
            Entry::File(name, bytes) => {
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                builder
                    .append_data(&mut header, name, bytes.as_slice())
                    .unwrap();
            }
            Entry::Special { name, kind, link } => {
                header.set_entry_type(*kind);
                header.set_size(0);
                header.set_mode(0o755);
                match link {
                    Some(target) => builder.append_link(&mut header, name, target).unwrap(),
                    None => builder.append_data(&mut header, name, &[][..]).unwrap(),
                }
            }
        }
    }
    builder.into_inner().unwrap()
}
