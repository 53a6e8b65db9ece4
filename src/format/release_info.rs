//! What the Hex API tells of a package beyond the signed registry files (`GET /api/packages/NAME`
//! as hex.pm answers it): each release's description, licenses, links, maintainers, build
//! tools, app, Elixir requirement, who published it and when hexreg recorded it.
//!
//! The engine keeps one record per package at [`info_path`] (`.hexreg-api/packages/NAME`, a
//! dot-path that `hexreg serve` never serves), written in the same batch as `packages/NAME`, so
//! the API reads one small file per request instead of every tarball. The record is a protobuf
//! ([`PackageInfo`]) of hexreg's own, unsigned: it only describes, clients never verify it, and
//! what a client installs is still checked against the signed `packages/NAME`.
//!
//! Everything taken from a tarball's `metadata.config` is bounded ([`MAX_TEXT`], [`MAX_ITEMS`]),
//! so a record, and the cost of one API request, stays small whatever a tarball holds.

use prost::Message;

use super::metadata::{self, Term};
use super::tarball;

/// The directory of the per-package records, under the registry's root.
pub const INFO_DIR: &str = ".hexreg-api/packages";

/// The longest text kept (a description, a link), in bytes; longer ones are cut at a character
/// boundary.
pub const MAX_TEXT: usize = 4096;

/// The most items kept of a list (licenses, links, maintainers, build tools).
pub const MAX_ITEMS: usize = 32;

/// Where the record of package `name` lives.
pub fn info_path(name: &str) -> String {
    format!("{INFO_DIR}/{name}")
}

/// One link of a release's `links` (`{<<"GitHub">>, <<"https://...">>}`).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Link {
    /// The link's name, e.g. `GitHub`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its URL.
    #[prost(string, tag = "2")]
    pub url: String,
}

/// What the API tells of one release.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct ReleaseInfo {
    /// The version, verbatim.
    #[prost(string, tag = "1")]
    pub version: String,
    /// sha256 of the tarball this was read from: a replaced tarball gets a new record.
    #[prost(bytes = "vec", tag = "2")]
    pub outer_checksum: Vec<u8>,
    /// `description`.
    #[prost(string, optional, tag = "3")]
    pub description: Option<String>,
    /// `licenses`.
    #[prost(string, repeated, tag = "4")]
    pub licenses: Vec<String>,
    /// `links`, in the metadata's order.
    #[prost(message, repeated, tag = "5")]
    pub links: Vec<Link>,
    /// `maintainers` (older packages).
    #[prost(string, repeated, tag = "6")]
    pub maintainers: Vec<String>,
    /// `build_tools`.
    #[prost(string, repeated, tag = "7")]
    pub build_tools: Vec<String>,
    /// `app`.
    #[prost(string, tag = "8")]
    pub app: String,
    /// `elixir`: the Elixir requirement.
    #[prost(string, optional, tag = "9")]
    pub elixir: Option<String>,
    /// The label of the API key that published it through `hexreg serve`.
    #[prost(string, optional, tag = "10")]
    pub publisher: Option<String>,
    /// Unix seconds when hexreg first recorded this version.
    #[prost(int64, tag = "11")]
    pub indexed_at: i64,
    /// Unix seconds when hexreg last recorded a new tarball for it.
    #[prost(int64, tag = "12")]
    pub updated_at: i64,
    /// Whether `docs/NAME-VERSION.tar.gz` was stored (kept by the docs upload and removal).
    #[prost(bool, tag = "13")]
    pub has_docs: bool,
}

/// The record of one package: its releases, oldest first.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct PackageInfo {
    /// One per release the record knows.
    #[prost(message, repeated, tag = "1")]
    pub releases: Vec<ReleaseInfo>,
}

impl PackageInfo {
    /// A record read back; an unreadable one (corrupt, written by a newer tool) is empty, which
    /// only costs the API its descriptions until the next write.
    pub fn decode_lenient(bytes: &[u8]) -> PackageInfo {
        PackageInfo::decode(bytes).unwrap_or_default()
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// The release `version`, if recorded.
    pub fn release(&self, version: &str) -> Option<&ReleaseInfo> {
        self.releases.iter().find(|r| r.version == version)
    }
}

impl ReleaseInfo {
    /// What a valid tarball's `metadata.config` tells (times and publisher unset), with its
    /// `outer_checksum` as validation already computed it (hashing the whole tarball again
    /// would double a build's SHA-256 work); `None` when the tarball's parts cannot be read (a
    /// caller validates tarballs before).
    pub fn from_tarball(bytes: &[u8], outer_checksum: [u8; 32]) -> Option<ReleaseInfo> {
        let [_, _, metadata_config, _] = tarball::outer_parts(bytes).ok()?;
        let terms = metadata::parse_terms(metadata_config).ok()?;
        let mut info = ReleaseInfo {
            outer_checksum: outer_checksum.to_vec(),
            ..ReleaseInfo::default()
        };
        for term in &terms {
            let Term::Tuple(items) = term else { continue };
            let [key, value] = items.as_slice() else {
                continue;
            };
            let Some(key) = text_of(key) else { continue };
            match key.as_str() {
                "version" => info.version = text_of(value).unwrap_or_default(),
                "app" => info.app = text_of(value).unwrap_or_default(),
                "description" => info.description = text_of(value),
                "elixir" => info.elixir = text_of(value),
                "licenses" => info.licenses = texts(value),
                "maintainers" => info.maintainers = texts(value),
                "build_tools" => info.build_tools = texts(value),
                "links" => info.links = links(value),
                _ => {}
            }
        }
        Some(info)
    }
}

/// A binary or string term as text, cut to [`MAX_TEXT`].
fn text_of(term: &Term) -> Option<String> {
    let text = match term {
        Term::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Term::String(chars) => chars.iter().filter_map(|c| char::from_u32(*c)).collect(),
        _ => return None,
    };
    Some(cut(text))
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A list of texts, at most [`MAX_ITEMS`].
fn texts(term: &Term) -> Vec<String> {
    match term {
        Term::List(items) => items.iter().filter_map(text_of).take(MAX_ITEMS).collect(),
        _ => Vec::new(),
    }
}

/// `#{Name => Url}` or `[{Name, Url}]`, at most [`MAX_ITEMS`].
fn links(term: &Term) -> Vec<Link> {
    let pair = |k: &Term, v: &Term| {
        Some(Link {
            name: text_of(k)?,
            url: text_of(v)?,
        })
    };
    match term {
        Term::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| pair(k, v))
            .take(MAX_ITEMS)
            .collect(),
        Term::List(items) => items
            .iter()
            .filter_map(|item| match item {
                Term::Tuple(kv) => match kv.as_slice() {
                    [k, v] => pair(k, v),
                    _ => None,
                },
                _ => None,
            })
            .take(MAX_ITEMS)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball_with(metadata: &str) -> Vec<u8> {
        tarball::create(metadata.as_bytes(), &[("lib/foo.ex", b"")])
    }

    #[test]
    fn reads_what_mix_writes_and_bounds_it() {
        let long = "x".repeat(MAX_TEXT + 10);
        let meta = format!(
            "{{<<\"name\">>,<<\"foo\">>}}.\n{{<<\"version\">>,<<\"1.0.0\">>}}.\n{{<<\"app\">>,<<\"foo\">>}}.\n\
             {{<<\"description\">>,<<\"{long}\">>}}.\n{{<<\"licenses\">>,[<<\"MIT\">>,<<\"Apache-2.0\">>]}}.\n\
             {{<<\"links\">>,[{{<<\"GitHub\">>,<<\"https://github.com/a/foo\">>}}]}}.\n\
             {{<<\"build_tools\">>,[<<\"mix\">>]}}.\n{{<<\"elixir\">>,<<\"~> 1.14\">>}}.\n"
        );
        let bytes = tarball_with(&meta);
        let info = ReleaseInfo::from_tarball(&bytes, tarball::outer_checksum(&bytes)).unwrap();
        assert_eq!(info.version, "1.0.0");
        assert_eq!(info.app, "foo");
        assert_eq!(info.description.as_deref().map(str::len), Some(MAX_TEXT));
        assert_eq!(info.licenses, ["MIT", "Apache-2.0"]);
        assert_eq!(
            info.links,
            [Link {
                name: "GitHub".into(),
                url: "https://github.com/a/foo".into()
            }]
        );
        assert_eq!(info.build_tools, ["mix"]);
        assert_eq!(info.elixir.as_deref(), Some("~> 1.14"));
        assert_eq!(
            info.outer_checksum,
            tarball::outer_checksum(&bytes).to_vec()
        );
        let record = PackageInfo {
            releases: vec![info.clone()],
        };
        assert_eq!(PackageInfo::decode_lenient(&record.encode()), record);
        assert_eq!(
            PackageInfo::decode_lenient(b"\xff\xff\xff"),
            PackageInfo::default()
        );
        assert!(ReleaseInfo::from_tarball(b"not a tarball", [0; 32]).is_none());
    }
}
