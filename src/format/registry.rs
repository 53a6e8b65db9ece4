//! The registry model and its resources: `names`, `versions` and `packages/NAME`, each
//! `gzip(Signed{payload, signature})` with the payload a protobuf message, encoded exactly as
//! `mix hex.registry build` (hex_core's gpb encoders) writes it.
//!
//! The task's presence rules: every dependency carries `package`, `requirement`, `optional`
//! (true or false) and `app`, plus `repository` only when it differs from the repository being
//! built; every release carries `outer_checksum`; `names` timestamps carry `nanos = 0`.

use std::io::{Read, Write};

use prost::Message;

use crate::format::proto;
use crate::format::signing::{PrivateKey, PublicKey, SignError};
use crate::format::tarball::Tarball;
use crate::format::version;

/// The gzip OS byte zlib writes on Unix builds, as Erlang's `zlib:gzip/1` does.
const GZIP_OS_UNIX: u8 = 3;
/// Largest registry resource accepted when reading one back (inflated).
const MAX_RESOURCE_SIZE: u64 = 256 * 1024 * 1024;

/// Why a registry resource could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The file does not gunzip; holds the gzip layer's error text.
    #[error("is not gzip data ({0})")]
    NotGzip(String),
    /// The file inflates to more than the limit for its kind (256 MiB when read back,
    /// less from a mirror's upstream).
    #[error("is over {limit} bytes inflated, the limit for this file")]
    TooBig {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The inflated bytes do not decode as a `Signed` message (`signed.proto`); holds prost's
    /// error text.
    #[error("is not a Signed protobuf message ({0})")]
    NotSigned(String),
    /// The `Signed` message carries no signature, or an empty one.
    #[error("has no signature")]
    Unsigned,
    /// The signature does not verify the payload with the registry's public key.
    #[error(
        "has a signature that does not verify with the public key (signed by another key, or altered)"
    )]
    BadSignature,
    /// The payload does not decode as the message the resource should hold.
    #[error("holds a payload that is not a {kind} message ({reason})")]
    BadPayload {
        /// The protobuf message expected: `Names`, `Versions` or `Package`.
        kind: &'static str,
        /// prost's decode error text.
        reason: String,
    },
    /// The payload's `repository` field names another repository than the one being read.
    #[error("belongs to repository `{found}`, expected `{expected}`")]
    WrongRepository {
        /// The repository being read.
        expected: String,
        /// The `repository` the payload holds.
        found: String,
    },
    /// A `packages/NAME` payload's `name` field is not the NAME it was read as.
    #[error("describes package `{found}`, expected `{expected}`")]
    WrongPackage {
        /// The package name the file was read as.
        expected: String,
        /// The `name` the payload holds.
        found: String,
    },
}

/// Why a release is retired: `RetirementReason` of `package.proto`.
pub use crate::format::proto::package::RetirementReason;

impl RetirementReason {
    /// The word clients, the API and the command line use for the reason (`security`).
    pub fn to_str(self) -> &'static str {
        match self {
            RetirementReason::RetiredOther => "other",
            RetirementReason::RetiredInvalid => "invalid",
            RetirementReason::RetiredSecurity => "security",
            RetirementReason::RetiredDeprecated => "deprecated",
            RetirementReason::RetiredRenamed => "renamed",
        }
    }
}

/// A retirement of a release, as `RetirementStatus` in `package.proto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    /// Why the release is retired: `RetirementStatus.reason`.
    pub reason: RetirementReason,
    /// Free text shown to users: `RetirementStatus.message`, absent when none was given.
    pub message: Option<String>,
}

impl Retirement {
    /// The retirement as `package.proto` encodes it.
    pub fn to_proto(&self) -> proto::package::RetirementStatus {
        proto::package::RetirementStatus {
            reason: self.reason as i32,
            message: self.message.clone(),
        }
    }

    /// A retirement read back from a registry file; fails on a reason `package.proto` does not
    /// define (a newer schema), which hexreg could not write back unchanged.
    pub fn from_proto(status: proto::package::RetirementStatus) -> Result<Self, ReleaseError> {
        let reason = RetirementReason::try_from(status.reason)
            .map_err(|_| ReleaseError::Reason(status.reason))?;
        Ok(Retirement {
            reason,
            message: status.message,
        })
    }
}

/// One release of a package, as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The version text from the metadata, verbatim.
    pub version: String,
    /// The version parsed, for ordering.
    pub parsed: semver::Version,
    /// The tarball's verified CHECKSUM.
    pub inner_checksum: [u8; 32],
    /// sha256 of the tarball file.
    pub outer_checksum: [u8; 32],
    /// Dependencies as encoded (already filtered by the presence rules).
    pub dependencies: Vec<proto::package::Dependency>,
    /// Set when the release is retired.
    pub retired: Option<Retirement>,
    /// When the release entered the registry (Hex 2.5's cooldown reads it); `None` writes no
    /// `published_at`, as the task does.
    pub published_at: Option<Timestamp>,
    /// Indexes into the package's advisories of those affecting this release.
    pub advisory_indexes: Vec<u32>,
}

/// `Timestamp` of `package.proto`: seconds and nanoseconds since the Unix epoch.
pub use crate::format::proto::package::Timestamp;

/// A security advisory of a package: `SecurityAdvisory` of `package.proto`.
pub use crate::format::proto::package::SecurityAdvisory;

/// The severity of an advisory: `AdvisorySeverity` of `package.proto`.
pub use crate::format::proto::package::AdvisorySeverity;

impl Release {
    /// The release a valid tarball describes, within repository `repo`.
    pub fn from_tarball(tarball: &Tarball, repo: &str) -> Result<Release, version::VersionError> {
        let meta = &tarball.metadata;
        let dependencies = meta
            .requirements
            .iter()
            .map(|r| proto::package::Dependency {
                package: r.name.clone(),
                requirement: r.requirement.clone(),
                optional: Some(r.optional),
                app: Some(r.app.clone().unwrap_or_else(|| r.name.clone())),
                repository: r.repository.clone().filter(|other| other != repo),
            })
            .collect();
        Ok(Release {
            parsed: version::parse(&meta.version)?,
            version: meta.version.clone(),
            inner_checksum: tarball.inner_checksum,
            outer_checksum: tarball.outer_checksum,
            dependencies,
            retired: None,
            published_at: None,
            advisory_indexes: Vec::new(),
        })
    }

    /// The release as `package.proto` encodes it.
    pub fn to_proto(&self) -> proto::package::Release {
        proto::package::Release {
            version: self.version.clone(),
            inner_checksum: self.inner_checksum.to_vec(),
            dependencies: self.dependencies.clone(),
            retired: self.retired.as_ref().map(Retirement::to_proto),
            outer_checksum: Some(self.outer_checksum.to_vec()),
            advisory_indexes: self.advisory_indexes.clone(),
            published_at: self.published_at,
        }
    }
}

impl Release {
    /// A release read back from a `packages/NAME` resource (or hexreg's cache). Fails when the
    /// version is not SemVer or a checksum is not 32 bytes; `outer_checksum` is required, as
    /// rebar3 requires it.
    pub fn from_proto(release: proto::package::Release) -> Result<Release, ReleaseError> {
        let parsed = version::parse(&release.version).map_err(ReleaseError::Version)?;
        let inner_checksum = <[u8; 32]>::try_from(release.inner_checksum.as_slice())
            .map_err(|_| ReleaseError::Checksum("inner_checksum", release.version.clone()))?;
        let outer_checksum = release
            .outer_checksum
            .as_deref()
            .and_then(|c| <[u8; 32]>::try_from(c).ok())
            .ok_or_else(|| ReleaseError::Checksum("outer_checksum", release.version.clone()))?;
        Ok(Release {
            parsed,
            version: release.version,
            inner_checksum,
            outer_checksum,
            dependencies: release.dependencies,
            retired: release.retired.map(Retirement::from_proto).transpose()?,
            published_at: release.published_at,
            advisory_indexes: release.advisory_indexes,
        })
    }
}

/// A release record that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The release's `version` is not a SemVer version; holds the parse error.
    #[error("release {}", .0)]
    Version(version::VersionError),
    /// A checksum is missing or not 32 bytes; holds the field (`inner_checksum` or
    /// `outer_checksum`) and the release's version.
    #[error("release {1} has no valid {0} (32 bytes expected)")]
    Checksum(&'static str, String),
    /// The retirement `reason` number is not one of `RetirementReason`'s values; holds it.
    #[error("a release has retirement reason {0}, which package.proto does not define")]
    Reason(i32),
}

/// Sorts releases ascending as Elixir's `Version.compare/2` orders them.
pub fn sort_releases(releases: &mut [Release]) {
    version::sort_by_version(releases, |r| &r.parsed);
}

/// The `packages/NAME` payload. `releases` must be sorted ([`sort_releases`]); their
/// `advisory_indexes` point into `advisories`.
pub fn package_payload(
    repo: &str,
    name: &str,
    releases: &[Release],
    advisories: &[SecurityAdvisory],
) -> Vec<u8> {
    proto::package::Package {
        releases: releases.iter().map(Release::to_proto).collect(),
        name: name.to_string(),
        repository: repo.to_string(),
        advisories: advisories.to_vec(),
    }
    .encode_to_vec()
}

/// What a `packages/NAME` file records that no tarball holds, and that every later build and
/// change keeps: each release's retirement, publication time and advisory indexes, and the
/// package's advisories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    /// The releases with any of them, by version.
    pub releases: Vec<ReleaseAnnotations>,
    /// The package's advisories, which `advisory_indexes` point into.
    pub advisories: Vec<SecurityAdvisory>,
}

/// What a `packages/NAME` file records of one release beyond its tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseAnnotations {
    /// The release's version, as text.
    pub version: String,
    /// Its retirement, `None` when the release is not retired.
    pub retired: Option<Retirement>,
    /// When it entered the registry (`published_at`), `None` when not recorded.
    pub published_at: Option<Timestamp>,
    /// Indexes into the package's advisories.
    pub advisory_indexes: Vec<u32>,
}

impl Annotations {
    /// The annotations of `releases` and `advisories`, as they would be written.
    pub fn of(releases: &[Release], advisories: &[SecurityAdvisory]) -> Self {
        Annotations {
            releases: releases
                .iter()
                .filter(|r| {
                    r.retired.is_some()
                        || r.published_at.is_some()
                        || !r.advisory_indexes.is_empty()
                })
                .map(|r| ReleaseAnnotations {
                    version: r.version.clone(),
                    retired: r.retired.clone(),
                    published_at: r.published_at,
                    advisory_indexes: r.advisory_indexes.clone(),
                })
                .collect(),
            advisories: advisories.to_vec(),
        }
    }

    /// The annotations of a decoded `packages/NAME` payload. Lenient, as a build must be with
    /// a file it is about to rewrite: a retirement reason `package.proto` does not define
    /// (written by a newer tool) is kept as "other", so the release stays retired, and an
    /// advisory index past the advisories is dropped.
    pub fn from_package(package: proto::package::Package) -> Self {
        let count = package.advisories.len();
        Annotations {
            releases: package
                .releases
                .into_iter()
                .map(|r| ReleaseAnnotations {
                    retired: r.retired.map(|status| {
                        Retirement::from_proto(status.clone()).unwrap_or(Retirement {
                            reason: RetirementReason::RetiredOther,
                            message: status.message,
                        })
                    }),
                    published_at: r.published_at,
                    advisory_indexes: r
                        .advisory_indexes
                        .into_iter()
                        .filter(|&i| (i as usize) < count)
                        .collect(),
                    version: r.version,
                })
                .filter(|r| {
                    r.retired.is_some()
                        || r.published_at.is_some()
                        || !r.advisory_indexes.is_empty()
                })
                .collect(),
            advisories: package.advisories,
        }
    }

    /// Gives each of `releases` (read from tarballs) what is recorded for its version: its
    /// retirement, its advisory indexes, and its publication time when one is recorded (a
    /// release without keeps the one it has, e.g. its tarball's modification time).
    pub fn apply(&self, releases: &mut [Release]) {
        for recorded in &self.releases {
            for release in releases
                .iter_mut()
                .filter(|r| r.version == recorded.version)
            {
                release.retired = recorded.retired.clone();
                release.advisory_indexes = recorded.advisory_indexes.clone();
                if recorded.published_at.is_some() {
                    release.published_at = recorded.published_at;
                }
            }
        }
    }
}

/// One package's line in `names` and `versions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSummary {
    /// Package name.
    pub name: String,
    /// Unix seconds of the package's newest tarball.
    pub updated_at: i64,
    /// Version texts, sorted.
    pub versions: Vec<String>,
    /// Indexes into `versions` of retired releases.
    pub retired: Vec<i32>,
    /// Indexes into `versions` of releases with security advisories.
    pub with_advisories: Vec<i32>,
}

impl PackageSummary {
    /// The summary of a package from its sorted releases.
    pub fn new(name: &str, updated_at: i64, releases: &[Release]) -> Self {
        PackageSummary {
            name: name.to_string(),
            updated_at,
            versions: releases.iter().map(|r| r.version.clone()).collect(),
            retired: releases
                .iter()
                .enumerate()
                .filter(|(_, r)| r.retired.is_some())
                .map(|(i, _)| i as i32)
                .collect(),
            with_advisories: releases
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.advisory_indexes.is_empty())
                .map(|(i, _)| i as i32)
                .collect(),
        }
    }
}

/// The `names` payload; `packages` in the order to write (sorted by name).
pub fn names_payload(repo: &str, packages: &[PackageSummary]) -> Vec<u8> {
    proto::names::Names {
        packages: packages
            .iter()
            .map(|p| proto::names::Package {
                name: p.name.clone(),
                updated_at: Some(proto::names::Timestamp {
                    seconds: p.updated_at,
                    nanos: 0,
                }),
            })
            .collect(),
        repository: repo.to_string(),
    }
    .encode_to_vec()
}

/// The `versions` payload; `packages` in the order to write (sorted by name).
pub fn versions_payload(repo: &str, packages: &[PackageSummary]) -> Vec<u8> {
    proto::versions::Versions {
        packages: packages
            .iter()
            .map(|p| proto::versions::Package {
                name: p.name.clone(),
                versions: p.versions.clone(),
                retired: p.retired.clone(),
                with_advisories: p.with_advisories.clone(),
            })
            .collect(),
        repository: repo.to_string(),
    }
    .encode_to_vec()
}

/// The bytes of a resource file: `gzip(Signed{payload, sign(payload)})`, gzip as Erlang's
/// `zlib:gzip/1` writes it (zlib level 6, zero mtime, OS byte 3). Fails when signing does.
pub fn seal(payload: &[u8], key: &PrivateKey) -> Result<Vec<u8>, SignError> {
    Ok(seal_signed(payload, key.sign(payload)?))
}

/// [`seal`] with the payload's signature already made by [`PrivateKey::sign`].
pub fn seal_signed(payload: &[u8], signature: Vec<u8>) -> Vec<u8> {
    let signed = proto::signed::Signed {
        payload: payload.to_vec(),
        signature: Some(signature),
    }
    .encode_to_vec();
    gzip(&signed)
}

/// The gzip header `zlib:gzip/1` writes: no flags, zero mtime, no extra flags, OS byte 3.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, GZIP_OS_UNIX];

std::thread_local! {
    /// One zlib deflate state per thread, reset between files: setting one up costs more than
    /// compressing a typical `packages/NAME` payload, and a reset stream compresses exactly as
    /// a new one does.
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::new(6), false));
}

/// `data` gzipped as `zlib:gzip/1` does: zlib's raw deflate at level 6 (window 15, memory level
/// 8) between [`GZIP_HEADER`] and the CRC-32 and length trailer.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    let deflated = DEFLATE.with_borrow_mut(|deflate| {
        deflate.reset();
        loop {
            let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
            let rest = data.get(consumed..).unwrap_or_default();
            match deflate.compress_vec(rest, &mut out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => return true,
                // Out of room: deflate stops when the output is full, so give it more.
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(_) => return false,
            }
        }
    });
    if !deflated {
        // zlib reports an error only for a misused stream, which the loop above avoids; should
        // it happen anyway, a new stream gives the same bytes.
        return gzip_with_new_stream(data);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the length modulo 2^32, as RFC 1952 defines it.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// [`gzip`] through a new zlib stream.
fn gzip_with_new_stream(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .operating_system(GZIP_OS_UNIX)
        .write(
            Vec::with_capacity(data.len() / 2 + 64),
            flate2::Compression::new(6),
        );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// A resource file opened: its payload and signature, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The `Signed` message's payload: an encoded `Names`, `Versions` or `Package` message.
    pub payload: Vec<u8>,
    /// The signature bytes (empty when absent).
    pub signature: Vec<u8>,
}

impl Opened {
    /// Checks the signature with `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ResourceError> {
        if self.signature.is_empty() {
            return Err(ResourceError::Unsigned);
        }
        key.verify(&self.payload, &self.signature)
            .map_err(|_| ResourceError::BadSignature)
    }
}

/// Gunzips and decodes a resource file.
pub fn open(file: &[u8]) -> Result<Opened, ResourceError> {
    open_within(file, MAX_RESOURCE_SIZE)
}

/// Gunzips and decodes a resource file, refusing it as soon as it inflates past `limit`
/// bytes (before the rest is inflated or anything is decoded).
pub fn open_within(file: &[u8], limit: u64) -> Result<Opened, ResourceError> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| ResourceError::NotGzip(e.to_string()))?;
    if raw.len() as u64 > limit {
        return Err(ResourceError::TooBig { limit });
    }
    let signed = proto::signed::Signed::decode(raw.as_slice())
        .map_err(|e| ResourceError::NotSigned(e.to_string()))?;
    Ok(Opened {
        payload: signed.payload,
        signature: signed.signature.unwrap_or_default(),
    })
}

fn bad_payload(kind: &'static str) -> impl Fn(prost::DecodeError) -> ResourceError {
    move |e| ResourceError::BadPayload {
        kind,
        reason: e.to_string(),
    }
}

fn check_repo(expected: &str, found: &str) -> Result<(), ResourceError> {
    if expected == found {
        Ok(())
    } else {
        Err(ResourceError::WrongRepository {
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }
}

/// Decodes a `names` payload and checks its repository, as hex_core's `decode_names/2`.
pub fn decode_names(payload: &[u8], repo: &str) -> Result<proto::names::Names, ResourceError> {
    let names = proto::names::Names::decode(payload).map_err(bad_payload("Names"))?;
    check_repo(repo, &names.repository)?;
    Ok(names)
}

/// Decodes a `versions` payload and checks its repository.
pub fn decode_versions(
    payload: &[u8],
    repo: &str,
) -> Result<proto::versions::Versions, ResourceError> {
    let versions = proto::versions::Versions::decode(payload).map_err(bad_payload("Versions"))?;
    check_repo(repo, &versions.repository)?;
    Ok(versions)
}

/// Decodes a `packages/NAME` payload and checks repository and name, as `decode_package/3`.
pub fn decode_package(
    payload: &[u8],
    repo: &str,
    name: &str,
) -> Result<proto::package::Package, ResourceError> {
    let package = proto::package::Package::decode(payload).map_err(bad_payload("Package"))?;
    check_repo(repo, &package.repository)?;
    if package.name != name {
        return Err(ResourceError::WrongPackage {
            expected: name.to_string(),
            found: package.name,
        });
    }
    Ok(package)
}

/// Opens a `packages/NAME` resource file: gunzips it, checks its signature with `key`, decodes
/// it and checks its repository and package name. The one way verify, the commands that change
/// a registry and the writer read a package back.
pub fn open_package(
    file: &[u8],
    key: &PublicKey,
    repo: &str,
    name: &str,
) -> Result<proto::package::Package, ResourceError> {
    let opened = open(file)?;
    opened.verify(key)?;
    decode_package(&opened.payload, repo, name)
}

/// Each release of a `packages/NAME` file and its outer checksum, without verifying the
/// signature (for the audit trail of a build that is about to replace the file, whatever key
/// signed it); `None` when the file cannot be decoded.
pub fn unverified_release_checksums(
    file: &[u8],
) -> Option<std::collections::BTreeMap<String, [u8; 32]>> {
    release_checksums(&open(file).ok()?.payload)
}

/// Each release of a `Package` payload (unsigned) and its outer checksum; `None` when it does
/// not decode.
pub fn release_checksums(payload: &[u8]) -> Option<std::collections::BTreeMap<String, [u8; 32]>> {
    let package = <proto::package::Package as prost::Message>::decode(payload).ok()?;
    Some(
        package
            .releases
            .into_iter()
            .filter_map(|r| Some((r.version, <[u8; 32]>::try_from(r.outer_checksum?).ok()?)))
            .collect(),
    )
}

/// Whether an existing resource file already holds exactly `payload`, signed by `key`. PKCS#1
/// v1.5 signatures are deterministic, so such a file is what [`seal`] would write, up to the
/// gzip encoder; rewriting it would change nothing a client sees.
pub fn is_current(existing: &[u8], payload: &[u8], key: &PublicKey) -> bool {
    match open(existing) {
        Ok(opened) => opened.payload == payload && opened.verify(key).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_inflating_past_its_limit_is_refused_before_decoding() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &vec![0u8; 1024 * 1024]).expect("gzip");
        let bomb = gz.finish().expect("gzip");
        assert!(matches!(
            open_within(&bomb, 64 * 1024),
            Err(ResourceError::TooBig { limit: 65536 })
        ));
        // Within the limit it inflates, and fails as what it is: no Signed message.
        assert!(matches!(
            open_within(&bomb, 2 * 1024 * 1024),
            Err(ResourceError::NotSigned(_))
        ));
    }

    fn key() -> PrivateKey {
        PrivateKey::from_pem(include_bytes!("../../fixtures/private_key.pem")).unwrap()
    }

    #[test]
    fn empty_names_payload_is_just_the_repository() {
        assert_eq!(names_payload("acme", &[]), b"\x12\x04acme");
    }

    #[test]
    fn names_payload_writes_nanos_zero() {
        let p = PackageSummary {
            name: "foo".into(),
            updated_at: 1,
            versions: vec![],
            retired: vec![],
            with_advisories: vec![],
        };
        assert_eq!(
            names_payload("acme", &[p]),
            b"\x0a\x0b\x0a\x03foo\x1a\x04\x08\x01\x10\x00\x12\x04acme"
        );
    }

    #[test]
    fn versions_retired_indexes_are_packed() {
        let p = PackageSummary {
            name: "a".into(),
            updated_at: 0,
            versions: vec!["1.0.0".into(), "2.0.0".into()],
            retired: vec![0, 1],
            with_advisories: vec![],
        };
        let bytes = versions_payload("r", &[p]);
        // ... 0x1a (field 3, length-delimited) 0x02 0x00 0x01
        assert!(bytes.windows(4).any(|w| w == [0x1a, 0x02, 0x00, 0x01]));
    }

    fn release(version: &str) -> Release {
        Release::from_proto(proto::package::Release {
            version: version.into(),
            inner_checksum: vec![1; 32],
            outer_checksum: Some(vec![2; 32]),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn annotations_carry_over_by_version_and_drop_bad_indexes() {
        let advisory = SecurityAdvisory {
            id: "A".into(),
            ..Default::default()
        };
        let mut recorded = vec![release("1.0.0"), release("2.0.0")];
        recorded[0].published_at = Some(Timestamp {
            seconds: 10,
            nanos: 5,
        });
        recorded[0].advisory_indexes = vec![0];
        recorded[1].retired = Some(Retirement {
            reason: RetirementReason::RetiredInvalid,
            message: None,
        });
        let mut package = proto::package::Package {
            releases: recorded.iter().map(Release::to_proto).collect(),
            name: "foo".into(),
            repository: "acme".into(),
            advisories: vec![advisory.clone()],
        };
        // An index past the advisories (a corrupt or foreign file) is dropped.
        package.releases[1].advisory_indexes = vec![7];
        let annotations = Annotations::from_package(package);
        assert_eq!(annotations, Annotations::of(&recorded, &[advisory]));

        // Releases read from tarballs take them; a date they already have is replaced only by
        // a recorded one.
        let mut fresh = vec![release("1.0.0"), release("2.0.0"), release("3.0.0")];
        for r in &mut fresh {
            r.published_at = Some(Timestamp {
                seconds: 99,
                nanos: 0,
            });
        }
        annotations.apply(&mut fresh);
        assert_eq!(
            fresh[0].published_at.map(|t| (t.seconds, t.nanos)),
            Some((10, 5))
        );
        assert_eq!(fresh[0].advisory_indexes, [0]);
        assert_eq!(fresh[1].published_at.map(|t| t.seconds), Some(99));
        assert!(fresh[1].retired.is_some());
        assert!(fresh[2].retired.is_none() && fresh[2].advisory_indexes.is_empty());
    }

    #[test]
    fn release_fields_are_written_in_ascending_order_with_unpacked_advisory_indexes() {
        let mut r = release("1.0.0");
        r.advisory_indexes = vec![0, 1];
        r.published_at = Some(Timestamp {
            seconds: 1,
            nanos: 0,
        });
        let bytes = r.to_proto().encode_to_vec();
        // ... outer_checksum (field 5), then 30 00 30 01 (field 6, one tag per element), then
        // 3a 04 08 01 10 00 (field 7: seconds 1, nanos 0).
        assert!(
            bytes.ends_with(&[0x30, 0x00, 0x30, 0x01, 0x3a, 0x04, 0x08, 0x01, 0x10, 0x00]),
            "{bytes:02x?}"
        );
        let p = PackageSummary::new("foo", 0, &[release("0.1.0"), r]);
        assert_eq!(p.with_advisories, [1]);
        let versions = versions_payload("acme", &[p]);
        // with_advisories: field 5, packed: 2a 01 01.
        assert!(versions.windows(3).any(|w| w == [0x2a, 0x01, 0x01]));
    }

    #[test]
    fn sealed_resources_open_and_verify() {
        let key = key();
        let file = seal(b"\x12\x04acme", &key).unwrap();
        assert_eq!(&file[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        let opened = open(&file).unwrap();
        assert_eq!(opened.payload, b"\x12\x04acme");
        opened.verify(&key.public_key()).unwrap();
        assert!(is_current(&file, b"\x12\x04acme", &key.public_key()));
        assert!(!is_current(&file, b"\x12\x04acmf", &key.public_key()));
        assert!(!is_current(b"junk", b"\x12\x04acme", &key.public_key()));
        decode_names(&opened.payload, "acme").unwrap();
        assert!(matches!(
            decode_names(&opened.payload, "other"),
            Err(ResourceError::WrongRepository { .. })
        ));
    }

    #[test]
    fn reused_deflate_stream_writes_what_a_new_one_does() {
        // Sizes around zlib's buffers and the initial output capacity, in an order that
        // reuses the thread's stream after both small and large inputs.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in [0, 1, 700, 70_000, 5, 300_000, 64 * 1024, 2_000_000, 33] {
            let data: Vec<u8> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Half text-like, half random, so deflate finds matches and misses them.
                    if i % 2 == 0 { b"abcab"[i % 5] } else { x as u8 }
                })
                .collect();
            let reused = gzip(&data);
            assert_eq!(reused, gzip_with_new_stream(&data), "length {len}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(reused.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }
}
