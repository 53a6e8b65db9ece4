//! Every kind of malformed tarball (issue 3, points 1 and 6): `hexreg build` names the file on
//! stderr, says what is wrong in words, exits with status 1, and leaves PUBLIC_DIR exactly as
//! it was (bytes, inodes, modification and change times of every file and directory).
//!
//! A case is one line of the `bad!` table below: test name, file name, tarball bytes (made
//! with the support module's `Package` builder, on the library's own writer), and what the
//! file's `error:` line must say.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use hexreg::format::metadata::Requirement;
use hexreg::format::tarball::{
    MAX_METADATA_SIZE, MAX_TARBALL_SIZE, MAX_UNCOMPRESSED_SIZE, one_line, write_outer,
};
use sha2::{Digest, Sha256};
use support::bytes::{gzip, random_bytes};
use support::fixtures::*;
use support::package::Package;
use support::run::{build, run_build};

// ---------------------------------------------------------------------------
// Generating tarballs
// ---------------------------------------------------------------------------

/// The files of every generated package: a small mix project.
const FILES: &[(&str, &[u8])] = &[
    ("mix.exs", b"defmodule Foo.MixProject do end\n"),
    ("lib/foo.ex", b"defmodule Foo do\nend\n"),
];

/// Package `name` at `version` (app `name`, no dependencies) holding [`FILES`].
fn package(name: &str, version: &str) -> Package {
    Package::new(name, version).files(FILES)
}

/// `foo` 1.0.0, the package most cases break.
fn foo() -> Package {
    package("foo", "1.0.0")
}

/// A valid `foo` 1.0.0 tarball cut to `len` bytes.
fn truncated(len: usize) -> Vec<u8> {
    let mut bytes = foo().tarball();
    assert!(len < bytes.len());
    bytes.truncate(len);
    bytes
}

/// A valid `foo` 1.0.0 tarball cut in the middle of contents.tar.gz's data (the last entry,
/// followed by its padding to 512 bytes and the two zero blocks that end a tar).
fn cut_in_contents() -> Vec<u8> {
    let n = foo().tarball().len();
    let len = foo().contents_tar_gz().len();
    let padding = (512 - len % 512) % 512;
    truncated(n - 1024 - padding - len / 2)
}

/// `foo` 1.0.0 whose `contents.tar.gz` inflates to just over `MAX_UNCOMPRESSED_SIZE` (by
/// 1 MiB): zeros streamed through gzip 1 MiB at a time (about 130 KiB compressed), optionally
/// after the tar header of one file holding them, optionally with a gzip trailer that claims
/// another inflated size (ISIZE) than the true one.
fn zip_bomb(with_tar_header: bool, claimed_size: Option<u32>) -> Vec<u8> {
    const MIB: u64 = 1024 * 1024;
    let total = MAX_UNCOMPRESSED_SIZE + MIB;
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    if with_tar_header {
        let mut header = tar::Header::new_ustar();
        header.set_path("priv/zeros").unwrap();
        header.set_size(total - 512);
        header.set_mode(0o644);
        header.set_cksum();
        enc.write_all(header.as_bytes()).unwrap();
    }
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..total / MIB {
        enc.write_all(&zeros).unwrap();
    }
    let mut bomb = enc.finish().unwrap();
    if let Some(size) = claimed_size {
        let at = bomb.len() - 4;
        bomb[at..].copy_from_slice(&size.to_le_bytes());
    }
    foo().contents(bomb).tarball()
}

/// A `foo` 1.0.0 tarball just over `MAX_TARBALL_SIZE`, with a correct CHECKSUM: its
/// contents.tar.gz is incompressible bytes (not gzip, but the size is what is checked first).
fn too_big() -> Vec<u8> {
    let contents = random_bytes(MAX_TARBALL_SIZE as usize - 2048, 7);
    let bytes = foo().contents(contents).tarball();
    assert!(bytes.len() as u64 > MAX_TARBALL_SIZE);
    bytes
}

/// `foo` 1.0.0's metadata.config padded to just over `MAX_METADATA_SIZE` with a description.
fn big_metadata() -> Vec<u8> {
    let mut text = foo().metadata_text();
    let pad =
        MAX_METADATA_SIZE as usize + 1 - text.len() - "{<<\"description\">>,<<\"\">>}.\n".len();
    text.extend_from_slice(
        format!("{{<<\"description\">>,<<\"{}\">>}}.\n", "x".repeat(pad)).as_bytes(),
    );
    assert_eq!(text.len() as u64, MAX_METADATA_SIZE + 1);
    text
}

/// A contents.tar.gz that is a gzip stream cut short.
fn truncated_gzip() -> Vec<u8> {
    let mut gz = Package::new("foo", "1.0.0")
        .file("priv/data", random_bytes(4096, 3))
        .contents_tar_gz();
    gz.truncate(gz.len() / 2);
    gz
}

/// A contents.tar.gz whose gzip trailer (CRC32) is wrong.
fn bad_crc_gzip() -> Vec<u8> {
    let mut gz = foo().contents_tar_gz();
    let n = gz.len();
    gz[n - 8] ^= 0xff;
    gz
}

// ---------------------------------------------------------------------------
// Running hexreg on a registry and checking it was left alone
// ---------------------------------------------------------------------------

/// An old time every directory and registry file is set to before the failing run, so that
/// any write would show in a modification time even on a coarse-grained clock.
fn old_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
}

/// What can be observed of one entry below PUBLIC_DIR.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    is_dir: bool,
    inode: u64,
    len: u64,
    mtime: SystemTime,
    ctime: (i64, i64),
    sha256: Option<[u8; 32]>,
}

/// Every entry below `root` and `root` itself (relative path, "" for the root).
fn snapshot(root: &Path) -> BTreeMap<String, Seen> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Seen>) {
        let meta = fs::symlink_metadata(dir).unwrap();
        let rel = dir
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let sha256 = meta
            .is_file()
            .then(|| Sha256::digest(fs::read(dir).unwrap()).into());
        out.insert(
            rel,
            Seen {
                is_dir: meta.is_dir(),
                inode: meta.ino(),
                len: meta.len(),
                mtime: meta.modified().unwrap(),
                ctime: (meta.ctime(), meta.ctime_nsec()),
                sha256,
            },
        );
        if meta.is_dir() {
            for entry in fs::read_dir(dir).unwrap() {
                walk(root, &entry.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Sets the modification time of every directory and registry file below `root` (not the
/// tarballs) to [`old_time`].
fn age(root: &Path) {
    for rel in snapshot(root).keys() {
        let path = root.join(rel);
        if path.is_file() && rel.starts_with("tarballs/") {
            continue;
        }
        fs::File::open(&path)
            .unwrap()
            .set_modified(old_time())
            .unwrap();
    }
}

/// A temporary directory holding `public/`, a registry built from a good tarball.
fn registry() -> tempfile::TempDir {
    let (tmp, public) = temp_public(&["acme_a-0.1.0.tar"]);
    build(tmp.path(), &private_key());
    assert!(public.join("packages/acme_a").is_file());
    tmp
}

/// Drops `tarballs` into a built registry, runs `hexreg build`, and checks that it fails
/// naming every one of them with the words in `expect` (file name → words), on one `error:`
/// line each, and changes nothing in PUBLIC_DIR.
fn check_bad(tarballs: &[(&str, Vec<u8>)], expect: &[(&str, Vec<String>)]) {
    let tmp = registry();
    for (file, bytes) in tarballs {
        fs::write(tmp.path().join("public/tarballs").join(file), bytes).unwrap();
    }
    assert_rejected(tmp.path(), expect);
}

/// Runs `hexreg build` in `cwd` and checks that it fails as [`check_bad`] says.
fn assert_rejected(cwd: &Path, expect: &[(&str, Vec<String>)]) {
    let public = cwd.join("public");
    age(&public);
    let before = snapshot(&public);
    let out = run_build(cwd, &private_key(), &[]);
    let after = snapshot(&public);

    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let context = format!("stderr:\n{stderr}\nstdout:\n{stdout}");
    assert!(!stderr.contains("panicked"), "hexreg panicked\n{context}");
    assert_eq!(out.status.code(), Some(1), "exit status\n{context}");
    assert_eq!(stdout, "", "nothing written, so nothing to list\n{context}");

    for line in stderr.lines() {
        assert!(
            line.chars().count() <= 1000,
            "an error line of {} characters\n{}",
            line.chars().count(),
            context.chars().take(2000).collect::<String>()
        );
    }
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        stderr.lines().count(),
        error_lines.len(),
        "every stderr line is an `error:` line\n{context}"
    );
    assert_eq!(
        error_lines.len(),
        expect.len() + 1,
        "one `error:` line per bad tarball, then the summary\n{context}"
    );
    for (file, words) in expect {
        let path = format!("public/tarballs/{}", one_line(file));
        let lines: Vec<&&str> = error_lines.iter().filter(|l| l.contains(&path)).collect();
        assert_eq!(lines.len(), 1, "one line names {path}\n{context}");
        let line = lines[0];
        assert!(
            line.starts_with(&format!("error: {path}")),
            "the line starts with the path\n{context}"
        );
        for word in words {
            assert!(
                line.contains(word.as_str()),
                "the line about {file} says {word:?}\n{context}"
            );
        }
    }
    let summary = error_lines.last().unwrap();
    let n = expect.len();
    let plural = if n == 1 { "" } else { "s" };
    assert!(
        summary.contains(&format!("{n} invalid tarball{plural} in public/tarballs"))
            && summary.contains("nothing was written"),
        "summary line\n{context}"
    );

    let changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|rel| before.get(*rel) != after.get(*rel))
        .map(|rel| {
            format!(
                "{rel:?}: before {:?}, after {:?}",
                before.get(rel),
                after.get(rel)
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "PUBLIC_DIR changed:\n{}\n{context}",
        changed.join("\n")
    );
}

/// `bad!(test_name, "file-name.tar", bytes, [words the error line must hold, ...]);`
/// (attributes such as `#[ignore = "why"]` may precede the test name).
/// Words are anything with `to_string()` (text, numbers).
macro_rules! bad {
    ($(#[$attr:meta])* $test:ident, $file:expr, $bytes:expr, [$($word:expr),* $(,)?]) => {
        #[test]
        $(#[$attr])*
        fn $test() {
            check_bad(&[($file, $bytes)], &[($file, vec![$($word.to_string()),*])]);
        }
    };
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------
//
// One line per case (rustfmt skips this module to keep it so).

#[rustfmt::skip]
mod cases {
use super::*;

// Not a Hex tarball at all.
bad!(empty_file, "foo-1.0.0.tar", Vec::new(), ["is empty (0 bytes)"]);
bad!(text_file, "foo-1.0.0.tar", b"just some text\n".to_vec(), ["not a readable tar file", "ends in the middle of a tar header (its first 512-byte block)"]);
bad!(random_bytes_file, "foo-1.0.0.tar", random_bytes(10_000, 42), ["not a readable tar file", "its first 512-byte block is not a valid tar header"]);
bad!(zeros_only, "foo-1.0.0.tar", vec![0; 10_240], ["holds no files"]);
bad!(gzipped_outer_tar, "foo-1.0.0.tar", gzip(&foo().tarball()), ["gzip-compressed", "plain (uncompressed) tar"]);
bad!(zip_file, "foo-1.0.0.tar", b"PK\x03\x04\x14\x00\x00\x00\x08\x00".repeat(60), ["not a readable tar file", "its first 512-byte block is not a valid tar header"]);
bad!(truncated_in_first_header, "foo-1.0.0.tar", truncated(300), ["not a readable tar file", "ends in the middle of a tar header (its first 512-byte block)", "truncated"]);
bad!(truncated_in_a_header, "foo-1.0.0.tar", truncated(512 * 2 + 100), ["not a readable tar file", "ends in the middle of a tar header (the 512-byte block after entry `VERSION`)", "truncated"]);
bad!(truncated_in_contents, "foo-1.0.0.tar", cut_in_contents(), ["contents.tar.gz", "runs past the end of the file"]);
bad!(over_16_mib, "foo-1.0.0.tar", too_big(), [too_big().len(), MAX_TARBALL_SIZE, "over Hex's limit"]);

// The outer entries.
bad!(version_missing, "foo-1.0.0.tar", foo().without_entry("VERSION").tarball(), ["lacks `VERSION`"]);
bad!(version_2, "foo-1.0.0.tar", foo().version_file("2").tarball(), ["VERSION `2`", "expected `3`"]);
bad!(version_with_newline, "foo-1.0.0.tar", foo().version_file("3\n").tarball(), ["VERSION `3\\n`", "expected `3`"]);
bad!(version_binary, "foo-1.0.0.tar", foo().version_file(b"\x00\xff").tarball(), ["VERSION `\\x00\\xff`", "expected `3`"]);
bad!(version_too_big, "foo-1.0.0.tar", foo().replace_entry("VERSION", [b'3'; 33]).tarball(), ["`VERSION` of 33 bytes", "limit of 32 bytes"]);
bad!(checksum_missing, "foo-1.0.0.tar", foo().without_entry("CHECKSUM").tarball(), ["lacks `CHECKSUM`"]);
bad!(checksum_empty, "foo-1.0.0.tar", foo().checksum("").tarball(), ["CHECKSUM of 0 bytes, expected 32"]);
bad!(checksum_not_hex, "foo-1.0.0.tar", foo().checksum([b'z'; 64]).tarball(), ["CHECKSUM that is not hexadecimal", "z".repeat(64)]);
bad!(checksum_too_short, "foo-1.0.0.tar", foo().checksum("AB".repeat(31)).tarball(), ["CHECKSUM of 31 bytes, expected 32"]);
bad!(checksum_too_big, "foo-1.0.0.tar", foo().checksum("AB".repeat(65)).tarball(), ["`CHECKSUM` of 130 bytes", "limit of 128 bytes"]);
bad!(checksum_mismatch, "foo-1.0.0.tar", foo().checksum("AB".repeat(32)).tarball(), ["wrong CHECKSUM", "AB".repeat(32), foo().inner_checksum()]);
bad!(metadata_edited_after_build, "foo-1.0.0.tar", foo().replace_entry("metadata.config", foo().app("foo_app").metadata_text()).tarball(), ["wrong CHECKSUM", foo().inner_checksum(), foo().app("foo_app").inner_checksum()]);
bad!(metadata_missing, "foo-1.0.0.tar", foo().without_entry("metadata.config").tarball(), ["lacks `metadata.config`"]);
bad!(contents_missing, "foo-1.0.0.tar", foo().without_entry("contents.tar.gz").tarball(), ["lacks `contents.tar.gz`"]);
bad!(several_missing, "foo-1.0.0.tar", foo().without_entry("VERSION").without_entry("contents.tar.gz").tarball(), ["lacks `VERSION`, `contents.tar.gz`"]);
bad!(extra_entry, "foo-1.0.0.tar", foo().with_entry("README.md", b"hello").tarball(), ["unexpected entry `README.md`"]);
bad!(extra_entry_in_dir, "foo-1.0.0.tar", foo().with_entry("lib/foo.ex", b"defmodule Foo do end").tarball(), ["unexpected entry `lib/foo.ex`"]);
bad!(extra_directory, "foo-1.0.0.tar", foo().special_entry("docs/", tar::EntryType::Directory, None).tarball(), ["unexpected entry `docs/`"]);
bad!(symlink_entry, "foo-1.0.0.tar", foo().special_entry("README", tar::EntryType::Symlink, Some("/etc/passwd")).tarball(), ["unexpected entry `README`"]);
bad!(extra_entry_control_chars, "foo-1.0.0.tar", foo().with_entry("evil\n\x1b[2Jname", b"").tarball(), ["unexpected entry `evil\\n\\u{1b}[2Jname`"]);
bad!(extra_entry_long_name, "foo-1.0.0.tar", foo().with_entry(&"x".repeat(5000), b"").tarball(), ["unexpected entry `xxxxxxxx"]);
bad!(symlink_as_metadata, "foo-1.0.0.tar", foo().special_entry("metadata.config", tar::EntryType::Symlink, Some("/etc/passwd")).tarball(), ["`metadata.config` as a symbolic link"]);
bad!(duplicate_entry, "foo-1.0.0.tar", foo().with_entry("VERSION", b"3").tarball(), ["entry `VERSION` twice"]);

// metadata.config.
bad!(metadata_empty, "foo-1.0.0.tar", foo().metadata_config("").tarball(), ["invalid metadata.config: it holds no `{Key, Value}.` form at all"]);
bad!(metadata_blank, "foo-1.0.0.tar", foo().metadata_config("\n \t\n").tarball(), ["invalid metadata.config: it holds no `{Key, Value}.` form at all"]);
bad!(contents_tar_cut_in_header, "foo-1.0.0.tar", foo().contents(gzip(&write_outer(FILES)[..512 + 512 + 100])).tarball(), ["contents.tar.gz that is not a valid gzip'd tar", "after entry `mix.exs`"]);
bad!(metadata_syntax_error, "foo-1.0.0.tar", foo().metadata_config("{<<\"name\">>,<<\"foo\">>}.\n{<<\"version\">> <<\"1.0.0\">>}.\n").tarball(), ["syntax error at line 2, column 16", "expected `,` or `}` but found `<<`"]);
bad!(metadata_unterminated_string, "foo-1.0.0.tar", foo().metadata_config("{<<\"name\">>,<<\"foo>>}.\n").tarball(), ["syntax error at line 1", "unterminated"]);
bad!(metadata_missing_dot, "foo-1.0.0.tar", foo().metadata_config("{<<\"name\">>,<<\"foo\">>}\n").tarball(), ["syntax error at line", "`.`"]);
bad!(metadata_comment, "foo-1.0.0.tar", foo().metadata_config("% made by hand\n").tarball(), ["syntax error at line 1, column 1", "comments are not allowed"]);
bad!(metadata_elixir_syntax, "foo-1.0.0.tar", foo().metadata_config("%{name: \"foo\", version: \"1.0.0\"}\n").tarball(), ["syntax error at line 1, column 1"]);
bad!(metadata_nested_too_deep, "foo-1.0.0.tar", foo().metadata_config(format!("{{<<\"x\">>,{}}}.\n", "[".repeat(100_000))).tarball(), ["nested too deeply", "line 1"]);
bad!(metadata_long_atom_misplaced, "foo-1.0.0.tar", foo().metadata_config(format!("{{<<\"x\">> {}}}.\n", "a".repeat(100_000))).tarball(), ["syntax error at line 1, column 10", "found the atom `aaaa"]);
bad!(metadata_long_integer_misplaced, "foo-1.0.0.tar", foo().metadata_config(format!("{{<<\"x\">> {}}}.\n", "9".repeat(100_000))).tarball(), ["line 1, column 10"]);
bad!(metadata_control_char, "foo-1.0.0.tar", foo().metadata_config("{<<\"x\">>,\x7f}.\n").tarball(), ["syntax error at line 1, column 10", "unexpected character U+007F"]);
bad!(metadata_long_utf8_segment, "foo-1.0.0.tar", foo().metadata_config(format!("{{<<\"x\">>,<<{}/utf8>>}}.\n", "9".repeat(100_000))).tarball(), ["syntax error at line 1, column 12", "is not a Unicode code point"]);
bad!(metadata_integer_too_large, "foo-1.0.0.tar", foo().metadata_config(format!("{{<<\"x\">>,{}}}.\n", "9".repeat(50))).tarball(), ["integer too large at line 1"]);
bad!(metadata_not_a_pair, "foo-1.0.0.tar", foo().metadata_config([foo().metadata_text(), b"{<<\"x\">>,1,2}.\n".to_vec()].concat()).tarball(), ["form 6 is not a {Key, Value} pair", "line 6"]);
bad!(metadata_bare_atom_form, "foo-1.0.0.tar", foo().metadata_config([b"foo.\n".to_vec(), foo().metadata_text()].concat()).tarball(), ["form 1 is not a {Key, Value} pair", "line 1"]);
bad!(metadata_no_name, "foo-1.0.0.tar", foo().metadata_config("{<<\"app\">>,<<\"foo\">>}.\n{<<\"requirements\">>,[]}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n").tarball(), ["missing `name` entry"]);
bad!(metadata_no_version, "foo-1.0.0.tar", foo().metadata_config("{<<\"app\">>,<<\"foo\">>}.\n{<<\"name\">>,<<\"foo\">>}.\n{<<\"requirements\">>,[]}.\n").tarball(), ["missing `version` entry"]);
bad!(metadata_no_app, "foo-1.0.0.tar", foo().metadata_config("{<<\"name\">>,<<\"foo\">>}.\n{<<\"requirements\">>,[]}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n").tarball(), ["missing `app` entry"]);
bad!(metadata_atom_keys, "foo-1.0.0.tar", foo().metadata_config("{name,<<\"foo\">>}.\n{app,<<\"foo\">>}.\n{version,<<\"1.0.0\">>}.\n").tarball(), ["missing `name` entry"]);
bad!(metadata_name_not_text, "foo-1.0.0.tar", foo().metadata_config([foo().metadata_text(), b"{<<\"name\">>,42}.\n".to_vec()].concat()).tarball(), ["`name` entry must be text", "an integer (42)"]);
bad!(metadata_version_not_text, "foo-1.0.0.tar", foo().metadata_config([foo().metadata_text(), b"{<<\"version\">>,{1,0,0}}.\n".to_vec()].concat()).tarball(), ["`version` entry must be text", "a tuple ({1,0,0})"]);
bad!(metadata_name_not_utf8, "foo-1.0.0.tar", foo().metadata_config("{<<\"app\">>,<<\"foo\">>}.\n{<<\"name\">>,<<102,111,255>>}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n").tarball(), ["`name` entry is a binary that is not valid UTF-8"]);
bad!(metadata_over_1_mib, "foo-1.0.0.tar", foo().metadata_config(big_metadata()).tarball(), ["`metadata.config` of", MAX_METADATA_SIZE + 1, MAX_METADATA_SIZE]);
bad!(requirements_not_a_list, "foo-1.0.0.tar", foo().metadata_term("requirements", "<<\"jason\">>").tarball(), ["`requirements` entry", "neither the mix layout", "a binary (<<\"jason\">>)"]);
bad!(requirements_list_of_atoms, "foo-1.0.0.tar", foo().metadata_term("requirements", "[jason, plug]").tarball(), ["`requirements` entry", "neither the mix layout", "jason"]);
bad!(requirements_mixed_layouts, "foo-1.0.0.tar", foo().metadata_term("requirements", "[[{<<\"name\">>,<<\"jason\">>},{<<\"requirement\">>,<<\"~> 1.0\">>}],{<<\"plug\">>,[{<<\"requirement\">>,<<\"~> 1.0\">>}]}]").tarball(), ["neither the mix layout", "element 2"]);
bad!(requirements_without_name, "foo-1.0.0.tar", foo().metadata_term("requirements", "[[{<<\"app\">>,<<\"jason\">>},{<<\"requirement\">>,<<\"~> 1.0\">>}]]").tarball(), ["`requirements` element 1 has no `name` entry"]);
bad!(requirements_without_requirement, "foo-1.0.0.tar", foo().metadata_term("requirements", "[{<<\"jason\">>,[{<<\"app\">>,<<\"jason\">>}]}]").tarball(), ["dependency `jason` has no `requirement`"]);
bad!(requirements_name_control_chars, "foo-1.0.0.tar", foo().metadata_term("requirements", "[{<<\"evil\\nname\\e[2J\">>,[{<<\"app\">>,<<\"x\">>}]}]").tarball(), ["dependency `evil\\nname\\u{1b}[2J` has no `requirement`"]);
bad!(requirements_name_long, "foo-1.0.0.tar", foo().metadata_term("requirements", &format!("[{{<<\"{}\">>,[]}}]", "d".repeat(100_000))).tarball(), ["dependency `dddd"]);
bad!(requirements_app_not_text, "foo-1.0.0.tar", foo().metadata_term("requirements", "[{<<\"jason\">>,[{<<\"requirement\">>,<<\"~> 1.0\">>},{<<\"app\">>,42}]}]").tarball(), ["dependency `jason`", "`app` must be"]);
bad!(version_not_semver, "foo-1.0.tar", package("foo", "1.0").tarball(), ["`1.0` is not a SemVer version"]);
bad!(version_leading_zero, "foo-01.0.0.tar", package("foo", "01.0.0").tarball(), ["`01.0.0` is not a SemVer version"]);
bad!(version_with_space, "foo-1.0.0 .tar", package("foo", "1.0.0 ").tarball(), ["`1.0.0 ` is not a SemVer version"]);

// The file name against the metadata.
bad!(file_name_without_version, "foo.tar", package("foo", "1.0.0").tarball(), ["not named NAME-VERSION.tar"]);
bad!(file_name_empty_version, "foo-.tar", package("foo", "1.0.0").tarball(), ["not named NAME-VERSION.tar"]);
bad!(file_name_other_package, "foo-1.0.0.tar", package("bar", "1.0.0").tarball(), ["package `foo`", "says `bar`", "bar-1.0.0.tar"]);
bad!(file_name_other_version, "foo-1.0.0.tar", package("foo", "1.0.1").tarball(), ["version `1.0.0`", "says `1.0.1`"]);
bad!(file_name_dash_in_name, "foo-bar-1.0.0.tar", package("foo-bar", "1.0.0").tarball(), ["`foo-bar`"]);
bad!(metadata_name_control_chars, "foo-1.0.0.tar", foo().metadata_term("name", "<<\"foo\\nbar\\e[2J\">>").tarball(), ["metadata.config names the package `foo\\nbar\\u{1b}[2J`", "not a valid package name"]);
bad!(metadata_version_control_chars, "foo-1.0.0.tar", foo().metadata_term("version", "<<\"1.0.0\\n\\e[2J\">>").tarball(), ["metadata.config version `1.0.0\\n\\u{1b}[2J` is not a SemVer version"]);
bad!(metadata_name_long, "foo-1.0.0.tar", package(&"f".repeat(100_000), "1.0.0").app("foo").tarball(), ["metadata.config names the package `ffff", "…`", "at most 200 bytes"]);
bad!(metadata_name_invalid, "foo-1.0.0.tar", package("Foo", "1.0.0").tarball(), ["`Foo`", "not a valid package name"]);
bad!(metadata_version_invalid, "foo-1.0.0.tar", package("foo", "1.0").tarball(), ["`1.0` is not a SemVer version"]);
bad!(file_name_control_chars, "foo\n\x1b[2J-1.0.0.tar", package("foo", "1.0.0").tarball(), ["`foo\\n\\u{1b}[2J` is not a valid package name"]);
bad!(package_name_uppercase, "Foo-1.0.0.tar", package("Foo", "1.0.0").tarball(), ["`Foo` is not a valid package name"]);
bad!(package_name_digit_first, "1foo-1.0.0.tar", package("1foo", "1.0.0").tarball(), ["`1foo` is not a valid package name"]);
bad!(package_name_dot, "foo.bar-1.0.0.tar", package("foo.bar", "1.0.0").tarball(), ["`foo.bar` is not a valid package name"]);

// contents.tar.gz.
bad!(contents_not_gzip, "foo-1.0.0.tar", foo().contents(b"a plain text file").tarball(), ["contents.tar.gz that is not valid gzip data", "1f 8b"]);
bad!(contents_plain_tar, "foo-1.0.0.tar", foo().contents(write_outer(FILES)).tarball(), ["contents.tar.gz that is not valid gzip data", "1f 8b"]);
bad!(contents_gzip_not_tar, "foo-1.0.0.tar", foo().contents(gzip(&b"hello world\n".repeat(100))).tarball(), ["contents.tar.gz that is not a valid gzip'd tar", "its first 512-byte block is not a valid tar header"]);
bad!(contents_gzip_truncated, "foo-1.0.0.tar", foo().contents(truncated_gzip()).tarball(), ["contents.tar.gz that is not valid gzip data"]);
bad!(contents_gzip_bad_crc, "foo-1.0.0.tar", foo().contents(bad_crc_gzip()).tarball(), ["contents.tar.gz that is not valid gzip data", "checksum"]);
bad!(contents_zip_bomb, "foo-1.0.0.tar", zip_bomb(false, None), ["contents.tar.gz that inflates past", MAX_UNCOMPRESSED_SIZE]);
bad!(contents_zip_bomb_lying_trailer, "foo-1.0.0.tar", zip_bomb(true, Some(10_240)), ["contents.tar.gz that inflates past", MAX_UNCOMPRESSED_SIZE]);
bad!(contents_zip_bomb_in_a_file, "foo-1.0.0.tar", zip_bomb(true, None), ["contents.tar.gz that inflates past", MAX_UNCOMPRESSED_SIZE]);
}

/// One run reports every bad tarball, not only the first, next to a good one.
#[test]
fn every_bad_tarball_is_reported_in_one_run() {
    let mismatch = foo().checksum("AB".repeat(32)).tarball();
    check_bad(
        &[
            ("aaa-1.0.0.tar", Vec::new()),
            ("foo-1.0.0.tar", mismatch),
            ("zzz-2.0.0.tar", package("zzz", "2.0.1").tarball()),
            (
                "acme_good-1.0.0.tar",
                package("acme_good", "1.0.0").tarball(),
            ),
        ],
        &[
            ("aaa-1.0.0.tar", vec!["is empty".to_string()]),
            (
                "foo-1.0.0.tar",
                vec!["AB".repeat(32), foo().inner_checksum()],
            ),
            ("zzz-2.0.0.tar", vec!["`2.0.0`".into(), "`2.0.1`".into()]),
        ],
    );
}

/// Something in tarballs/ named like a tarball that is not a file is an error too.
#[test]
fn a_directory_named_like_a_tarball() {
    let tmp = registry();
    fs::create_dir(tmp.path().join("public/tarballs/foo-1.0.0.tar")).unwrap();
    assert_rejected(
        tmp.path(),
        &[("foo-1.0.0.tar", vec!["is not a regular file".into()])],
    );
}

/// A tarball already read (and cached) that is then altered in place, keeping its size, inode
/// and modification time, is read again and rejected, not taken from the cache.
#[test]
fn a_tarball_altered_in_place_is_read_again() {
    use std::os::unix::fs::FileExt;
    let tmp = registry();
    let path = tmp.path().join("public/tarballs/foo-1.0.0.tar");
    let bytes = foo().tarball();
    fs::write(&path, &bytes).unwrap();
    build(tmp.path(), &private_key());
    assert!(tmp.path().join("public/packages/foo").is_file());

    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    let sum = foo().inner_checksum();
    let at = bytes.windows(64).position(|w| w == sum.as_bytes()).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at("AB".repeat(32).as_bytes(), at as u64)
        .unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert_eq!(fs::metadata(&path).unwrap().len(), bytes.len() as u64);

    assert_rejected(
        tmp.path(),
        &[(
            "foo-1.0.0.tar",
            vec!["wrong CHECKSUM".into(), "AB".repeat(32), sum],
        )],
    );
}

/// The builder makes tarballs hexreg accepts, so every failure above is the defect the case
/// put in, including hex_core's tolerated quirks (lower-case CHECKSUM with a trailing newline,
/// entries in another order, either requirements layout).
#[test]
fn generated_tarballs_are_accepted() {
    let tmp = registry();
    let dir = tmp.path().join("public/tarballs");
    let quirky = package("quirky", "0.1.0");
    let quirky = quirky
        .clone()
        .checksum(quirky.inner_checksum().to_lowercase() + "\n")
        .reverse_entries()
        .tarball();
    let files = [
        ("foo-1.0.0.tar", foo().tarball()),
        (
            "foo-1.0.0-rc.1+build.7.tar",
            package("foo", "1.0.0-rc.1+build.7").tarball(),
        ),
        ("quirky-0.1.0.tar", quirky),
        (
            "mixdeps-1.0.0.tar",
            package("mixdeps", "1.0.0")
                .requirement(Requirement {
                    name: "foo".into(),
                    app: Some("foo".into()),
                    requirement: "~> 1.0".into(),
                    optional: false,
                    repository: Some("hexpm".into()),
                })
                .tarball(),
        ),
        (
            "rebardeps-1.0.0.tar",
            package("rebardeps", "1.0.0")
                .metadata_term(
                    "requirements",
                    "[{<<\"foo\">>,[{<<\"app\">>,<<\"foo\">>},{<<\"optional\">>,false},{<<\"requirement\">>,<<\"~> 1.0\">>}]}]",
                )
                .tarball(),
        ),
    ];
    for (file, bytes) in &files {
        fs::write(dir.join(file), bytes).unwrap();
    }
    let out = run_build(tmp.path(), &private_key(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for package in ["foo", "quirky", "mixdeps", "rebardeps"] {
        assert!(tmp.path().join("public/packages").join(package).is_file());
    }
}
