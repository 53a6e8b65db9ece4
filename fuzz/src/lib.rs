//! The fuzz harness: one function per cargo-fuzz target (`fuzz_targets/NAME.rs` calls
//! `hexreg_fuzz::NAME`). Each takes arbitrary bytes, feeds them to hexreg's readers and checks
//! that they return (`Ok` or `Err`) without panicking, plus a few properties the library
//! documents. A panic here, in hexreg, or in a dependency is a finding.
//!
//! The harness uses only crates hexreg itself depends on (flate2, prost, tar), so
//! `tests/testsuite/fuzz_regressions.rs` includes this file with `#[path]` and replays every
//! crash ever found, and every seed, through exactly the code the fuzzer ran.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::OnceLock;

use hexreg::format::{metadata, registry, tarball, version};
use prost::Message;

/// Repository and package name the registry and tarball targets read resources back with (the
/// ones of `fixtures/full`).
const REPO: &str = "acme";
const PACKAGE: &str = "acme_a";

/// Target `metadata`: `metadata.config` bytes, through [`metadata::parse_terms`] and
/// [`metadata::parse`].
pub fn metadata(data: &[u8]) {
    let terms = metadata::parse_terms(data);
    let parsed = metadata::parse(data);
    match (&terms, &parsed) {
        (Err(_), Ok(m)) => panic!("parse accepted what parse_terms rejected: {m:?}"),
        (_, Ok(m)) => {
            // Documented: requirements sorted bytewise by name, names unique.
            assert!(
                m.requirements.windows(2).all(|w| w[0].name < w[1].name),
                "requirements not sorted and unique: {:?}",
                m.requirements
            );
            // What Release::from_tarball does next with it.
            let _ = version::parse(&m.version);
        }
        _ => {}
    }
    // Error texts are shown to users: formatting them must not panic either.
    if let Err(e) = &parsed {
        let _ = e.to_string();
    }
}

/// Target `metadata_display`: whatever [`metadata::parse_terms`] accepts, printed back with
/// `Display` (documented as "readable back by parse_terms"), must reparse to the same terms.
pub fn metadata_display(data: &[u8]) {
    let Ok(terms) = metadata::parse_terms(data) else {
        return;
    };
    let printed: String = terms.iter().map(|t| format!("{t}.\n")).collect();
    match metadata::parse_terms(printed.as_bytes()) {
        Ok(again) => assert_eq!(again, terms, "printed as:\n{printed}"),
        Err(e) => panic!("printed terms do not reparse ({e}):\n{printed}"),
    }
}

/// Target `tarball`: a whole tarball file, through [`tarball::read`]; then the same file with
/// its CHECKSUM entry rewritten to the right value (see [`repair_checksum`]), so that mutations
/// of `metadata.config` and `contents.tar.gz` get past the checksum check.
pub fn tarball(data: &[u8]) {
    read_tarball(data);
    if let Some(repaired) = repair_checksum(data) {
        read_tarball(&repaired);
    }
}

/// Target `tarball_parts`: a valid outer tarball is built around fuzzed parts, with the right
/// CHECKSUM, and read back. The input is
///
/// ```text
/// flags (1 byte) | metadata length (u32 little-endian) | metadata.config | contents
/// ```
///
/// (a length past the end takes everything). Flag bit 0: gzip `contents` first, so the fuzzer
/// drives the inner tar reader directly instead of mutating compressed bytes (zlib and
/// libdeflate are C, not instrumented, so libFuzzer cannot see into them); otherwise
/// `contents` is contents.tar.gz as is. Flag bit 2 (before bit 0): `contents` is
/// [`GZIP_HEADER_REGION`] bytes holding a gzip header without its two magic bytes (CM, FLG,
/// MTIME, XFL, OS, then the optional fields FLG announces: FEXTRA, FNAME, FCOMMENT, FHCRC;
/// the rest of the region is unused), then the inner tar; contents.tar.gz is the magic bytes,
/// that header as given, the deflated tar and a right trailer (CRC-32, size). So the fuzzer
/// explores gzip header fields over a valid body: flipping one FLG bit is enough.
/// Flag bit 1: write the four entries in reverse order.
pub fn tarball_parts(data: &[u8]) {
    let Some(bytes) = build_from_parts(data) else {
        return;
    };
    read_tarball(&bytes);
}

/// Target `registry`: a registry resource file (`names`, `versions`, `packages/NAME`: gzip of
/// a `Signed` protobuf), through [`registry::open`], signature check and the three payload
/// decoders. The same decoders also run on the input taken as an already gunzipped `Signed`
/// message and as a bare payload, so seeds of all three layers reach them.
pub fn registry(data: &[u8]) {
    if let Ok(opened) = registry::open(data) {
        let _ = opened.verify(public_key());
        decode_payload(&opened.payload);
    }
    if let Ok(signed) = hexreg::format::proto::signed::Signed::decode(data) {
        decode_payload(&signed.payload);
    }
    decode_payload(data);
}

fn decode_payload(payload: &[u8]) {
    if let Ok(names) = registry::decode_names(payload, REPO) {
        assert_eq!(names.repository, REPO);
    }
    if let Ok(versions) = registry::decode_versions(payload, REPO) {
        assert_eq!(versions.repository, REPO);
    }
    match registry::decode_package(payload, REPO, PACKAGE) {
        Ok(package) => assert_eq!(package.name, PACKAGE),
        Err(e) => drop(e.to_string()),
    }
}

fn public_key() -> &'static hexreg::format::signing::PublicKey {
    static KEY: OnceLock<hexreg::format::signing::PublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        hexreg::format::signing::PublicKey::from_pem(include_bytes!(
            "../../fixtures/full/expected/public_key"
        ))
        .expect("fixtures/full/expected/public_key is a valid key")
    })
}

/// [`tarball::read`], and for a tarball it accepts, what the registry does next with it: the
/// release, its `packages/NAME` payload, and that payload read back.
fn read_tarball(bytes: &[u8]) {
    let t = match tarball::read(bytes) {
        Ok(t) => t,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(t.outer_checksum, tarball::outer_checksum(bytes));
    let parts = outer_parts(bytes).expect("an accepted tarball has the four entries");
    assert!(
        streaming_contents_ok(&bytes[parts[3].clone()]),
        "read accepted a contents.tar.gz that the streaming gzip + tar check rejects"
    );
    let Ok(release) = registry::Release::from_tarball(&t, REPO) else {
        return;
    };
    let name = &t.metadata.name;
    let payload = registry::package_payload(REPO, name, std::slice::from_ref(&release), &[]);
    let package = registry::decode_package(&payload, REPO, name)
        .expect("a payload hexreg wrote decodes as the package it describes");
    assert_eq!(package.releases.len(), 1);
    assert_eq!(package.releases[0].version, t.metadata.version);
    assert_eq!(
        package.releases[0].dependencies.len(),
        t.metadata.requirements.len()
    );
}

/// Where the data of VERSION, CHECKSUM, metadata.config and contents.tar.gz (in
/// [`tarball::ENTRIES`] order) lie in an outer tar, as byte ranges; the first of each name
/// counts. `None` unless all four are there with their data inside the file.
pub fn outer_parts(data: &[u8]) -> Option<[Range<usize>; 4]> {
    let mut found: [Option<Range<usize>>; 4] = Default::default();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().ok()? {
        let Ok(entry) = entry else { break };
        let path = entry.path_bytes();
        let Some(slot) = tarball::ENTRIES
            .iter()
            .position(|e| e.as_bytes() == &path[..])
        else {
            continue;
        };
        let start = usize::try_from(entry.raw_file_position()).ok()?;
        let size = usize::try_from(entry.size()).ok()?;
        let end = start.checked_add(size).filter(|&end| end <= data.len())?;
        found[slot].get_or_insert(start..end);
    }
    let [Some(a), Some(b), Some(c), Some(d)] = found else {
        return None;
    };
    Some([a, b, c, d])
}

/// The tarball with the 64 first bytes of its CHECKSUM entry replaced by the right checksum
/// (uppercase hex), when [`outer_parts`] finds the four entries and CHECKSUM holds at least 64
/// bytes; `None` otherwise, or when it is already right.
pub fn repair_checksum(data: &[u8]) -> Option<Vec<u8>> {
    let [version, checksum, meta, contents] = outer_parts(data)?;
    if checksum.len() < 64 {
        return None;
    }
    let sum = hexreg::format::encoding::hex_upper(&tarball::inner_checksum(
        &data[version],
        &data[meta],
        &data[contents],
    ));
    let mut out = data.to_vec();
    out[checksum.start..checksum.start + 64].copy_from_slice(sum.as_bytes());
    (out != data).then_some(out)
}

/// contents.tar.gz checked the plain way: streamed through flate2's gzip reader and the tar
/// reader, every entry read, then the rest of the gzip stream (trailer CRC and size). Whatever
/// [`tarball::read`] accepts (by its in-memory fast path or otherwise) must pass this too.
pub fn streaming_contents_ok(contents: &[u8]) -> bool {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(contents));
    let tar_ok = (|| -> io::Result<()> {
        for entry in archive.entries()? {
            io::copy(&mut entry?, &mut io::sink())?;
        }
        Ok(())
    })()
    .is_ok();
    let mut gz = archive.into_inner();
    tar_ok && io::copy(&mut gz, &mut io::sink()).is_ok()
}

/// The tarball [`tarball_parts`] reads for an input; `None` when the input is too short.
pub fn build_from_parts(data: &[u8]) -> Option<Vec<u8>> {
    let (&flags, rest) = data.split_first()?;
    let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let rest = &rest[4..];
    let meta_len = (u32::from_le_bytes(len_bytes) as usize).min(rest.len());
    let (meta, contents) = rest.split_at(meta_len);
    let gzipped;
    let contents = if flags & 4 != 0 {
        let (region, inner) = contents.split_at(GZIP_HEADER_REGION.min(contents.len()));
        let mut full_header = vec![0x1f, 0x8b];
        full_header.extend_from_slice(&region[..gzip_header_len(region)]);
        gzipped = gzip_with_header(&full_header, inner);
        &gzipped[..]
    } else if flags & 1 != 0 {
        gzipped = gzip(contents);
        &gzipped[..]
    } else {
        contents
    };
    let sum = hexreg::format::encoding::hex_upper(&tarball::inner_checksum(b"3", meta, contents));
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("VERSION", b"3"),
        ("CHECKSUM", sum.as_bytes()),
        ("metadata.config", meta),
        ("contents.tar.gz", contents),
    ];
    if flags & 2 != 0 {
        entries.reverse();
    }
    Some(tarball::write_outer(&entries))
}

/// The `tarball_parts` input for these parts (the inverse of [`build_from_parts`]'s split):
/// with flag bit 2 or 0, `contents` is the inner tar (after the gzip header region with bit
/// 2), else contents.tar.gz itself.
pub fn parts_input(flags: u8, meta: &[u8], contents: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(contents);
    out
}

/// Bytes of a `tarball_parts` input (flag bit 2) set aside for the gzip header.
pub const GZIP_HEADER_REGION: usize = 32;

/// Length of the gzip header at the start of `bytes`, magic bytes left out (CM, FLG, MTIME,
/// XFL, OS and the optional fields FLG announces), at most `bytes.len()`.
pub fn gzip_header_len(bytes: &[u8]) -> usize {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let Some(&flg) = bytes.get(1) else {
        return bytes.len();
    };
    let mut n: usize = 8;
    if flg & FEXTRA != 0 {
        let xlen = match bytes.get(n..n + 2) {
            Some(&[lo, hi]) => usize::from(u16::from_le_bytes([lo, hi])),
            _ => 0,
        };
        n += 2 + xlen;
    }
    for field in [FNAME, FCOMMENT] {
        if flg & field != 0 {
            n = match bytes
                .get(n..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
            {
                Some(nul) => n + nul + 1,
                None => bytes.len(),
            };
        }
    }
    if flg & FHCRC != 0 {
        n += 2;
    }
    n.min(bytes.len())
}

/// `header`, then `data` raw-deflated, then the gzip trailer for `data`.
pub fn gzip_with_header(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(header.to_vec(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    let mut out = enc.finish().unwrap_or_default();
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}
