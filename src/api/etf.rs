//! The Erlang external term format: what `term_to_binary/1` writes and `binary_to_term/2` reads.
//!
//! The Hex HTTP API speaks it under the content type `application/vnd.hex+erlang`: hex_core (the
//! Hex client of mix and rebar3) sends request bodies such as
//! `term_to_binary(#{<<"reason">> => <<"security">>, <<"message">> => <<"...">>})` and decodes
//! responses such as `#{<<"status">> => 422, <<"message">> => <<"Validation error(s)">>}`: maps
//! with binary keys holding binaries, integers, booleans (the atoms `true` and `false`), `nil`,
//! lists and further maps. [`Term`] models those terms, [`encode`] / [`try_encode`] write them
//! and [`decode`] reads them, without I/O.
//!
//! [`encode`] writes exactly what `term_to_binary(Term, [{minor_version, 2}])` (the default
//! since OTP 26) writes for the same term, map entries in the order given: `SMALL_INTEGER_EXT`,
//! `INTEGER_EXT`, `SMALL_BIG_EXT` for integers outside `i32`, `NEW_FLOAT_EXT`,
//! `SMALL_ATOM_UTF8_EXT` / `ATOM_UTF8_EXT`, `BINARY_EXT`, `NIL_EXT`, `STRING_EXT` for a list of
//! at most 65535 integers in 0..=255 (as Erlang does), else a proper `LIST_EXT`, `MAP_EXT`,
//! `SMALL_TUPLE_EXT` / `LARGE_TUPLE_EXT`. It never compresses.
//!
//! [`decode`] also reads the older encodings Erlang may send: `ATOM_EXT` and `SMALL_ATOM_EXT`
//! (Latin-1, what OTP 25 and older write by default), `FLOAT_EXT` (`minor_version` 0),
//! `LARGE_BIG_EXT`, and compressed terms (tag 80, what `term_to_binary(T, [compressed])`
//! writes). What it refuses, each with an [`EtfError`] naming the byte offset:
//!
//! * improper lists (`[a | b]`): [`Term`] has no way to hold them. A list whose tail is itself
//!   a list is read as the concatenation, as Erlang does;
//! * integers outside `i64`, floats that are not finite, atoms over 255 characters, atoms that
//!   are not valid UTF-8, maps with a repeated key (Erlang's `binary_to_term` refuses the last
//!   four too);
//! * pids, ports, references, funs, bitstrings that are not whole bytes, atom cache references;
//! * nesting deeper than [`MAX_DEPTH`], bytes after the term, lengths that run past the input;
//! * compressed terms that inflate to more than [`MAX_INFLATED`] bytes (4 MiB), or to another
//!   size than their header says.
//!
//! Memory: no length read from the input is trusted before the bytes it promises are there,
//! and no container is preallocated for more than 1024 entries, so decoding `n` bytes builds at
//! most about `64 * n` bytes of [`Term`]s (a list of `n` empty lists is the worst case). A
//! server should bound request bodies with that in mind; compressed input counts with its
//! inflated size, at most [`MAX_INFLATED`].

use std::collections::HashSet;
use std::io::Read;

/// Deepest nesting accepted by [`decode`] and [`try_encode`]: a term may sit inside at most
/// this many lists, tuples and maps.
pub const MAX_DEPTH: usize = 64;

/// Largest inflated size of a compressed term that [`decode`] accepts: 4 MiB. hex_core never
/// compresses API bodies; the limit keeps a small compressed body from costing much memory.
pub const MAX_INFLATED: usize = 4 * 1024 * 1024;

/// The version byte every encoded term starts with.
const VERSION: u8 = 131;
const COMPRESSED: u8 = 80;
const NEW_FLOAT_EXT: u8 = 70;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const FLOAT_EXT: u8 = 99;
const ATOM_EXT: u8 = 100;
const SMALL_TUPLE_EXT: u8 = 104;
const LARGE_TUPLE_EXT: u8 = 105;
const NIL_EXT: u8 = 106;
const STRING_EXT: u8 = 107;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const SMALL_ATOM_EXT: u8 = 115;
const MAP_EXT: u8 = 116;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;

/// Most entries a decoded list, tuple or map reserves room for before they are read.
const PREALLOC_LIMIT: usize = 1024;

/// Most characters in an Erlang atom.
const MAX_ATOM_CHARS: usize = 255;

/// An Erlang term of the kinds the Hex API uses.
///
/// Erlang's `[]` (nil) is the empty [`Term::List`]; Elixir's `nil` and Erlang's `undefined` are
/// atoms. Map entries keep the order they were given or decoded in.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// An integer; the format allows any size, this type those of `i64`.
    Integer(i64),
    /// A float; Erlang has no infinities or NaN, so only finite values encode.
    Float(f64),
    /// An atom, such as `true`, `false`, `nil` or `undefined`.
    Atom(String),
    /// A binary, such as `<<"text">>`.
    Binary(Vec<u8>),
    /// A proper list; the empty list is Erlang's `[]`. An Erlang string (`"abc"`) is a list of
    /// integers.
    List(Vec<Term>),
    /// A map, its entries in order.
    Map(Vec<(Term, Term)>),
    /// A tuple, such as `{ok, Value}`.
    Tuple(Vec<Term>),
}

impl Term {
    /// The binary holding `text` as UTF-8: `<<"text">>`.
    pub fn bin(text: &str) -> Term {
        Term::Binary(text.as_bytes().to_vec())
    }

    /// The atom `name`.
    pub fn atom(name: &str) -> Term {
        Term::Atom(name.to_owned())
    }

    /// The atom `true` or `false`.
    pub fn boolean(value: bool) -> Term {
        Term::atom(if value { "true" } else { "false" })
    }

    /// The list of `items`.
    pub fn list(items: impl IntoIterator<Item = Term>) -> Term {
        Term::List(items.into_iter().collect())
    }

    /// The map with binary keys: `Term::map([("status", 422.into())])` is
    /// `#{<<"status">> => 422}`. Entries keep their order.
    pub fn map<K: AsRef<str>>(entries: impl IntoIterator<Item = (K, Term)>) -> Term {
        Term::Map(
            entries
                .into_iter()
                .map(|(key, value)| (Term::bin(key.as_ref()), value))
                .collect(),
        )
    }

    /// In a map, the value of the binary key `key` (the first, should it repeat); `None` for a
    /// missing key or a term that is not a map.
    pub fn get(&self, key: &str) -> Option<&Term> {
        match self {
            Term::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Term::Binary(b) if b == key.as_bytes()))
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// The text of a binary holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Term::Binary(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The bytes of a binary.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Term::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The value of an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Term::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The value of the atom `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Term::Atom(a) if a == "true" => Some(true),
            Term::Atom(a) if a == "false" => Some(false),
            _ => None,
        }
    }

    /// The name of an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Term]> {
        match self {
            Term::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries of a map.
    pub fn as_map(&self) -> Option<&[(Term, Term)]> {
        match self {
            Term::Map(entries) => Some(entries),
            _ => None,
        }
    }
}

impl From<i64> for Term {
    fn from(value: i64) -> Term {
        Term::Integer(value)
    }
}

impl From<bool> for Term {
    /// The atom `true` or `false`.
    fn from(value: bool) -> Term {
        Term::boolean(value)
    }
}

impl From<&str> for Term {
    /// A binary, like [`Term::bin`].
    fn from(value: &str) -> Term {
        Term::bin(value)
    }
}

impl From<String> for Term {
    /// A binary holding the string's UTF-8.
    fn from(value: String) -> Term {
        Term::Binary(value.into_bytes())
    }
}

impl From<Vec<Term>> for Term {
    fn from(items: Vec<Term>) -> Term {
        Term::List(items)
    }
}

/// Why bytes are not a term [`decode`] accepts. Offsets count from the version byte, at 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtfError {
    /// There are no bytes at all.
    #[error("is empty; an Erlang term starts with the version byte 131")]
    Empty,
    /// The first byte is not the version byte, 131.
    #[error("starts with byte {found}, not 131, the version byte of the Erlang term format")]
    BadVersion {
        /// The first byte.
        found: u8,
    },
    /// The bytes end before a term does.
    #[error(
        "ends inside the {what} at byte {offset}: byte {at} needs {needed} more bytes, {available} remain"
    )]
    Truncated {
        /// Where the term being read starts: its tag byte.
        offset: usize,
        /// The kind of term being read, e.g. `atom`, `list` or `big integer`.
        what: &'static str,
        /// Where the missing bytes were due.
        at: usize,
        /// How many bytes were needed from `at`: a length field, or the data or minimum
        /// size of the items a length announces.
        needed: u64,
        /// How many bytes remain from `at`.
        available: usize,
    },
    /// A tag of the format for a kind of term the Hex API never sends, such as a pid or a fun.
    #[error("holds a {name} (tag {tag}) at byte {offset}, which the Hex API never sends")]
    Unsupported {
        /// Where the tag is.
        offset: usize,
        /// The tag byte.
        tag: u8,
        /// The kind of term the tag stands for, e.g. `pid`.
        name: &'static str,
    },
    /// A byte in a tag's place that is no tag of the format.
    #[error("holds the unknown tag {tag} at byte {offset}")]
    UnknownTag {
        /// Where the byte is.
        offset: usize,
        /// The byte found in the tag's place.
        tag: u8,
    },
    /// Bytes follow the end of the one term.
    #[error("has {count} bytes after the end of the term, from byte {offset}")]
    TrailingBytes {
        /// Where the first byte after the term is.
        offset: usize,
        /// How many bytes follow the term.
        count: usize,
    },
    /// A term sits inside more than [`MAX_DEPTH`] lists, tuples and maps.
    #[error("nests deeper than {limit} lists, tuples and maps at byte {offset}")]
    TooDeep {
        /// Where the term that goes one level too deep starts.
        offset: usize,
        /// The limit, [`MAX_DEPTH`].
        limit: usize,
    },
    /// A big integer (`SMALL_BIG_EXT` or `LARGE_BIG_EXT`) outside the range of `i64`.
    #[error("holds an integer at byte {offset} that does not fit in 64 bits")]
    IntegerTooLarge {
        /// Where the integer's tag is.
        offset: usize,
    },
    /// A float that is not finite, or a text float (`FLOAT_EXT`) that is not a number.
    #[error("holds a float at byte {offset} that {reason}")]
    BadFloat {
        /// Where the float's tag is.
        offset: usize,
        /// What is wrong with it, completing "a float that …".
        reason: &'static str,
    },
    /// A UTF-8 atom (`ATOM_UTF8_EXT` or `SMALL_ATOM_UTF8_EXT`) whose bytes are not UTF-8.
    #[error("holds an atom at byte {offset} that is not valid UTF-8")]
    AtomNotUtf8 {
        /// Where the atom's tag is.
        offset: usize,
    },
    /// An atom over the 255 characters Erlang allows.
    #[error("holds an atom of {chars} characters at byte {offset}; Erlang atoms have at most 255")]
    AtomTooLong {
        /// Where the atom's tag is.
        offset: usize,
        /// How many characters the atom has.
        chars: usize,
    },
    /// A list whose tail is not a list (`[a | b]`).
    #[error(
        "holds an improper list at byte {offset}: its tail, at byte {tail_offset}, is not a list"
    )]
    ImproperList {
        /// Where the list's tag is.
        offset: usize,
        /// Where its tail starts.
        tail_offset: usize,
    },
    /// A map with a key twice, which Erlang refuses.
    #[error("holds a map at byte {offset} whose key at byte {key_offset} repeats an earlier key")]
    DuplicateKey {
        /// Where the map's tag is.
        offset: usize,
        /// Where the repeated key starts.
        key_offset: usize,
    },
    /// A compressed term whose header announces more than [`MAX_INFLATED`] bytes.
    #[error(
        "holds a compressed term of {size} bytes inflated, over the limit of {limit} bytes",
        limit = MAX_INFLATED
    )]
    CompressedTooLarge {
        /// The inflated size its header announces.
        size: u64,
    },
    /// A compressed term whose zlib data does not inflate to the size its header announces,
    /// or is followed by more bytes.
    #[error("holds a compressed term at byte {offset} that {reason}")]
    BadCompressed {
        /// Where the compressed term's tag is: byte 1, right after the version byte.
        offset: usize,
        /// What is wrong, completing "a compressed term that …".
        reason: String,
    },
    /// A compressed term's inflated data is not one term that [`decode`] accepts; holds why,
    /// its offsets counted from the start of the inflated data.
    #[error("holds a compressed term whose inflated data {0}")]
    InCompressed(Box<EtfError>),
}

/// Why a [`Term`] has no encoding that Erlang would read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A float that is infinite or NaN.
    #[error("a float is not finite; Erlang has no infinities or NaN")]
    NonFiniteFloat,
    /// An atom over the 255 characters Erlang allows.
    #[error("an atom has {chars} characters; Erlang atoms have at most 255")]
    AtomTooLong {
        /// How many characters the atom has.
        chars: usize,
    },
    /// A binary, list, tuple or map too long for the format's 32-bit length field.
    #[error("a {what} of {len} entries or bytes is over the format's limit of 2^32 - 1")]
    TooLong {
        /// The kind of term: `binary`, `list or tuple` or `map`.
        what: &'static str,
        /// Its length: bytes of a binary, entries of the others.
        len: usize,
    },
    /// A term inside more than [`MAX_DEPTH`] lists, tuples and maps.
    #[error("the term nests deeper than {limit} lists, tuples and maps", limit = MAX_DEPTH)]
    TooDeep,
    /// A map with the same key twice, which Erlang refuses.
    #[error("a map has the same key twice (entry {entry}); Erlang refuses such maps")]
    DuplicateKey {
        /// The position of the entry that repeats an earlier key, counted from 0.
        entry: usize,
    },
}

/// The bytes of `term`, version byte first, as `term_to_binary(Term, [{minor_version, 2}])`
/// writes them.
///
/// For a term Erlang cannot hold (see [`try_encode`]: a non-finite float, an atom over 255
/// characters, a repeated map key, nesting past [`MAX_DEPTH`]) this returns the lone version
/// byte, `[131]`, which every decoder refuses. Terms built from the Hex API's binaries,
/// integers and `true` / `false` / `nil` atoms always encode; use [`try_encode`] to learn why
/// another term does not.
pub fn encode(term: &Term) -> Vec<u8> {
    try_encode(term).unwrap_or_else(|_| vec![VERSION])
}

/// The bytes of `term`, as [`encode`], or why Erlang could not read the term back.
pub fn try_encode(term: &Term) -> Result<Vec<u8>, EncodeError> {
    check(term, 0)?;
    let mut out = vec![VERSION];
    write(&mut out, term);
    Ok(out)
}

/// Refuses what `write` cannot write faithfully or Erlang would not read.
fn check(term: &Term, depth: usize) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep);
    }
    let fits = |what, len: usize| {
        if u32::try_from(len).is_ok() {
            Ok(())
        } else {
            Err(EncodeError::TooLong { what, len })
        }
    };
    match term {
        Term::Integer(_) => Ok(()),
        Term::Float(f) if f.is_finite() => Ok(()),
        Term::Float(_) => Err(EncodeError::NonFiniteFloat),
        Term::Atom(name) => {
            let chars = name.chars().count();
            if chars > MAX_ATOM_CHARS {
                Err(EncodeError::AtomTooLong { chars })
            } else {
                Ok(())
            }
        }
        Term::Binary(bytes) => fits("binary", bytes.len()),
        Term::List(items) | Term::Tuple(items) => {
            fits("list or tuple", items.len())?;
            items.iter().try_for_each(|item| check(item, depth + 1))
        }
        Term::Map(entries) => {
            fits("map", entries.len())?;
            let mut seen = HashSet::new();
            for (entry, (key, value)) in entries.iter().enumerate() {
                check(key, depth + 1)?;
                check(value, depth + 1)?;
                if entries.len() > 1 && !seen.insert(canonical(key)) {
                    return Err(EncodeError::DuplicateKey { entry });
                }
            }
            Ok(())
        }
    }
}

/// The encoding of `key` without the version byte: equal terms, equal bytes.
fn canonical(key: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, key);
    out
}

/// A length as the format's 32-bit big-endian field. `check` has refused longer ones.
fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// The bytes of a list that Erlang writes as `STRING_EXT`: 1 to 65535 integers in 0..=255.
fn string_bytes(items: &[Term]) -> Option<Vec<u8>> {
    if items.is_empty() || items.len() > usize::from(u16::MAX) {
        return None;
    }
    items
        .iter()
        .map(|item| match item {
            Term::Integer(i) => u8::try_from(*i).ok(),
            _ => None,
        })
        .collect()
}

/// Writes `term` without the version byte. Infallible: call `check` first.
fn write(out: &mut Vec<u8>, term: &Term) {
    match term {
        Term::Integer(i) => write_integer(out, *i),
        Term::Float(f) => {
            out.push(NEW_FLOAT_EXT);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Term::Atom(name) => {
            match u8::try_from(name.len()) {
                Ok(len) => out.extend_from_slice(&[SMALL_ATOM_UTF8_EXT, len]),
                Err(_) => {
                    out.push(ATOM_UTF8_EXT);
                    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
                    out.extend_from_slice(&len.to_be_bytes());
                }
            }
            out.extend_from_slice(name.as_bytes());
        }
        Term::Binary(bytes) => {
            out.push(BINARY_EXT);
            out.extend_from_slice(&len32(bytes.len()));
            out.extend_from_slice(bytes);
        }
        Term::List(items) if items.is_empty() => out.push(NIL_EXT),
        Term::List(items) => {
            if let Some(bytes) = string_bytes(items) {
                out.push(STRING_EXT);
                let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&bytes);
            } else {
                out.push(LIST_EXT);
                out.extend_from_slice(&len32(items.len()));
                items.iter().for_each(|item| write(out, item));
                out.push(NIL_EXT);
            }
        }
        Term::Tuple(items) => {
            match u8::try_from(items.len()) {
                Ok(len) => out.extend_from_slice(&[SMALL_TUPLE_EXT, len]),
                Err(_) => {
                    out.push(LARGE_TUPLE_EXT);
                    out.extend_from_slice(&len32(items.len()));
                }
            }
            items.iter().for_each(|item| write(out, item));
        }
        Term::Map(entries) => {
            out.push(MAP_EXT);
            out.extend_from_slice(&len32(entries.len()));
            for (key, value) in entries {
                write(out, key);
                write(out, value);
            }
        }
    }
}

fn write_integer(out: &mut Vec<u8>, i: i64) {
    if let Ok(small) = u8::try_from(i) {
        out.extend_from_slice(&[SMALL_INTEGER_EXT, small]);
    } else if let Ok(int) = i32::try_from(i) {
        out.push(INTEGER_EXT);
        out.extend_from_slice(&int.to_be_bytes());
    } else {
        // SMALL_BIG_EXT: digit count, sign, magnitude little-endian without high zero bytes.
        let magnitude = i.unsigned_abs();
        let digits = 8 - magnitude.leading_zeros() / 8;
        let digits = u8::try_from(digits).unwrap_or(8);
        out.extend_from_slice(&[SMALL_BIG_EXT, digits, u8::from(i < 0)]);
        out.extend(
            magnitude
                .to_le_bytes()
                .iter()
                .take(usize::from(digits))
                .copied(),
        );
    }
}

/// The term in `bytes`, which must hold exactly one encoded term, version byte first.
pub fn decode(bytes: &[u8]) -> Result<Term, EtfError> {
    match bytes.first() {
        None => return Err(EtfError::Empty),
        Some(&VERSION) => {}
        Some(&found) => return Err(EtfError::BadVersion { found }),
    }
    if bytes.get(1) == Some(&COMPRESSED) {
        let inflated = inflate(bytes)?;
        return decode_all(&inflated, 0).map_err(|e| EtfError::InCompressed(Box::new(e)));
    }
    decode_all(bytes, 1)
}

/// The one term of `bytes` from `start` to the end.
fn decode_all(bytes: &[u8], start: usize) -> Result<Term, EtfError> {
    let mut decoder = Decoder { bytes, pos: start };
    let term = decoder.term(0)?;
    match decoder.remaining() {
        0 => Ok(term),
        count => Err(EtfError::TrailingBytes {
            offset: decoder.pos,
            count,
        }),
    }
}

/// The inflated data of a compressed term: `131, 80, Size:32, zlib data` with nothing after.
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, EtfError> {
    let mut header = Decoder { bytes, pos: 2 };
    let size = u32::from_be_bytes(header.array("compressed term", 1)?);
    let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
    if size_usize > MAX_INFLATED {
        return Err(EtfError::CompressedTooLarge { size: size.into() });
    }
    let bad = |reason: String| EtfError::BadCompressed { offset: 1, reason };
    let zlib = bytes.get(6..).unwrap_or_default();
    let mut decoder = flate2::bufread::ZlibDecoder::new(zlib);
    let mut inflated = Vec::new();
    (&mut decoder)
        .take(u64::from(size) + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| bad(format!("is not valid zlib data ({e})")))?;
    if inflated.len() != size_usize {
        let got = if inflated.len() > size_usize {
            "more".to_owned()
        } else {
            inflated.len().to_string()
        };
        return Err(bad(format!(
            "inflates to {got} bytes, but its header says {size}"
        )));
    }
    let rest = decoder.get_ref().len();
    if rest > 0 {
        return Err(bad(format!("has {rest} bytes after its zlib data")));
    }
    Ok(inflated)
}

struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn truncated(&self, what: &'static str, offset: usize, needed: u64) -> EtfError {
        EtfError::Truncated {
            offset,
            what,
            at: self.pos,
            needed,
            available: self.remaining(),
        }
    }

    /// Fails unless `needed` more bytes are there, for the `what` at `offset`.
    fn need(&self, needed: u64, what: &'static str, offset: usize) -> Result<(), EtfError> {
        if u64::try_from(self.remaining()).is_ok_and(|r| r >= needed) {
            Ok(())
        } else {
            Err(self.truncated(what, offset, needed))
        }
    }

    fn take(&mut self, n: usize, what: &'static str, offset: usize) -> Result<&'a [u8], EtfError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(self.truncated(what, offset, u64::try_from(n).unwrap_or(u64::MAX))),
        }
    }

    fn array<const N: usize>(
        &mut self,
        what: &'static str,
        offset: usize,
    ) -> Result<[u8; N], EtfError> {
        let chunk = self
            .bytes
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>());
        match chunk {
            Some(chunk) => {
                self.pos += N;
                Ok(*chunk)
            }
            None => Err(self.truncated(what, offset, u64::try_from(N).unwrap_or(u64::MAX))),
        }
    }

    /// A count of `min_each`-byte items, refused unless that many bytes remain (plus `extra`).
    fn count32(
        &mut self,
        what: &'static str,
        offset: usize,
        min_each: u64,
        extra: u64,
    ) -> Result<usize, EtfError> {
        let n = u32::from_be_bytes(self.array(what, offset)?);
        self.need(u64::from(n) * min_each + extra, what, offset)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn term(&mut self, depth: usize) -> Result<Term, EtfError> {
        let offset = self.pos;
        if depth > MAX_DEPTH {
            return Err(EtfError::TooDeep {
                offset,
                limit: MAX_DEPTH,
            });
        }
        let [tag] = self.array("term", offset)?;
        match tag {
            SMALL_INTEGER_EXT => {
                let [b] = self.array("small integer", offset)?;
                Ok(Term::Integer(b.into()))
            }
            INTEGER_EXT => Ok(Term::Integer(
                i32::from_be_bytes(self.array("integer", offset)?).into(),
            )),
            SMALL_BIG_EXT => {
                let [n] = self.array("big integer", offset)?;
                self.big(n.into(), offset)
            }
            LARGE_BIG_EXT => {
                let n = u32::from_be_bytes(self.array("big integer", offset)?);
                self.big(usize::try_from(n).unwrap_or(usize::MAX), offset)
            }
            NEW_FLOAT_EXT => {
                let bits = u64::from_be_bytes(self.array("float", offset)?);
                finite(f64::from_bits(bits), offset)
            }
            FLOAT_EXT => {
                // 31 bytes of C `%.20e` text, padded with NULs.
                let text: [u8; 31] = self.array("float", offset)?;
                let text = text.split(|&b| b == 0).next().unwrap_or_default();
                let value = std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .ok_or(EtfError::BadFloat {
                        offset,
                        reason: "is not a number in text form",
                    })?;
                finite(value, offset)
            }
            ATOM_EXT => {
                let n = u16::from_be_bytes(self.array("atom", offset)?);
                let bytes = self.take(n.into(), "atom", offset)?;
                latin1_atom(bytes, offset)
            }
            SMALL_ATOM_EXT => {
                let [n] = self.array("atom", offset)?;
                let bytes = self.take(n.into(), "atom", offset)?;
                latin1_atom(bytes, offset)
            }
            ATOM_UTF8_EXT => {
                let n = u16::from_be_bytes(self.array("atom", offset)?);
                let bytes = self.take(n.into(), "atom", offset)?;
                utf8_atom(bytes, offset)
            }
            SMALL_ATOM_UTF8_EXT => {
                let [n] = self.array("atom", offset)?;
                let bytes = self.take(n.into(), "atom", offset)?;
                utf8_atom(bytes, offset)
            }
            BINARY_EXT => {
                let n = u32::from_be_bytes(self.array("binary", offset)?);
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                Ok(Term::Binary(self.take(n, "binary", offset)?.to_vec()))
            }
            NIL_EXT => Ok(Term::List(Vec::new())),
            STRING_EXT => {
                let n = u16::from_be_bytes(self.array("string", offset)?);
                let bytes = self.take(n.into(), "string", offset)?;
                if !bytes.is_empty() && depth >= MAX_DEPTH {
                    return Err(EtfError::TooDeep {
                        offset,
                        limit: MAX_DEPTH,
                    });
                }
                Ok(Term::List(
                    bytes.iter().map(|&b| Term::Integer(b.into())).collect(),
                ))
            }
            LIST_EXT => {
                // Each element takes at least one byte, and so does the tail.
                let n = self.count32("list", offset, 1, 1)?;
                let mut items = Vec::with_capacity(n.min(PREALLOC_LIMIT));
                for _ in 0..n {
                    items.push(self.term(depth + 1)?);
                }
                let tail_offset = self.pos;
                match self.term(depth + 1)? {
                    Term::List(tail) => {
                        items.extend(tail);
                        Ok(Term::List(items))
                    }
                    _ => Err(EtfError::ImproperList {
                        offset,
                        tail_offset,
                    }),
                }
            }
            SMALL_TUPLE_EXT => {
                let [n] = self.array("tuple", offset)?;
                self.tuple(n.into(), depth)
            }
            LARGE_TUPLE_EXT => {
                let n = self.count32("tuple", offset, 1, 0)?;
                self.tuple(n, depth)
            }
            MAP_EXT => {
                // Each key and each value takes at least one byte.
                let n = self.count32("map", offset, 2, 0)?;
                let mut entries = Vec::with_capacity(n.min(PREALLOC_LIMIT));
                let mut seen = HashSet::new();
                for _ in 0..n {
                    let key_offset = self.pos;
                    let key = self.term(depth + 1)?;
                    if n > 1 && !seen.insert(canonical(&key)) {
                        return Err(EtfError::DuplicateKey { offset, key_offset });
                    }
                    let value = self.term(depth + 1)?;
                    entries.push((key, value));
                }
                Ok(Term::Map(entries))
            }
            _ => Err(match unsupported(tag) {
                Some(name) => EtfError::Unsupported { offset, tag, name },
                None => EtfError::UnknownTag { offset, tag },
            }),
        }
    }

    fn tuple(&mut self, n: usize, depth: usize) -> Result<Term, EtfError> {
        let mut items = Vec::with_capacity(n.min(PREALLOC_LIMIT));
        for _ in 0..n {
            items.push(self.term(depth + 1)?);
        }
        Ok(Term::Tuple(items))
    }

    /// The sign byte and `n` little-endian digits of a big integer at `offset`.
    fn big(&mut self, n: usize, offset: usize) -> Result<Term, EtfError> {
        let [sign] = self.array("big integer", offset)?;
        let digits = self.take(n, "big integer", offset)?;
        if digits.iter().skip(8).any(|&d| d != 0) {
            return Err(EtfError::IntegerTooLarge { offset });
        }
        let magnitude = digits
            .iter()
            .take(8)
            .rev()
            .fold(0u64, |acc, &d| (acc << 8) | u64::from(d));
        // Erlang reads any non-zero sign byte as negative.
        let value = if sign == 0 {
            i64::try_from(magnitude).ok()
        } else {
            0i64.checked_sub_unsigned(magnitude)
        };
        value
            .map(Term::Integer)
            .ok_or(EtfError::IntegerTooLarge { offset })
    }
}

fn finite(value: f64, offset: usize) -> Result<Term, EtfError> {
    if value.is_finite() {
        Ok(Term::Float(value))
    } else {
        Err(EtfError::BadFloat {
            offset,
            reason: "is not finite",
        })
    }
}

fn latin1_atom(bytes: &[u8], offset: usize) -> Result<Term, EtfError> {
    if bytes.len() > MAX_ATOM_CHARS {
        return Err(EtfError::AtomTooLong {
            offset,
            chars: bytes.len(),
        });
    }
    Ok(Term::Atom(bytes.iter().map(|&b| char::from(b)).collect()))
}

fn utf8_atom(bytes: &[u8], offset: usize) -> Result<Term, EtfError> {
    let name = std::str::from_utf8(bytes).map_err(|_| EtfError::AtomNotUtf8 { offset })?;
    let chars = name.chars().count();
    if chars > MAX_ATOM_CHARS {
        return Err(EtfError::AtomTooLong { offset, chars });
    }
    Ok(Term::Atom(name.to_owned()))
}

/// The kind of term a tag this module does not read stands for.
fn unsupported(tag: u8) -> Option<&'static str> {
    Some(match tag {
        COMPRESSED => "compressed term not right after the version byte",
        77 => "bitstring",
        82 => "atom cache reference",
        88 | 103 => "pid",
        89 | 102 | 120 => "port",
        90 | 101 | 114 => "reference",
        112 | 117 => "fun",
        113 => "external fun",
        121 => "local term",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(term: &Term) {
        let bytes = try_encode(term).unwrap();
        assert_eq!(decode(&bytes).as_ref(), Ok(term), "bytes {bytes:?}");
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// `131, 80, size, zlib(data)`.
    fn compressed(data: &[u8]) -> Vec<u8> {
        let mut out = vec![VERSION, COMPRESSED];
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&zlib(data));
        out
    }

    /// Maps with their entries sorted by key encoding, for comparisons where Erlang picks the
    /// order (maps over 32 keys).
    fn sorted(term: &Term) -> Term {
        match term {
            Term::List(items) => Term::List(items.iter().map(sorted).collect()),
            Term::Tuple(items) => Term::Tuple(items.iter().map(sorted).collect()),
            Term::Map(entries) => {
                let mut entries: Vec<_> = entries
                    .iter()
                    .map(|(k, v)| (sorted(k), sorted(v)))
                    .collect();
                entries.sort_by_key(|(k, _)| canonical(k));
                Term::Map(entries)
            }
            other => other.clone(),
        }
    }

    fn validation_error() -> Term {
        Term::map([
            (
                "errors",
                Term::map([(
                    "inserted_at",
                    "must include the --replace flag to update an existing release".into(),
                )]),
            ),
            ("message", "Validation error(s)".into()),
            ("status", 422.into()),
        ])
    }

    fn package_info() -> Term {
        let release = |version: &str, docs: bool| {
            Term::map([
                ("has_docs", docs.into()),
                (
                    "url",
                    format!("https://hex.example/api/packages/foo/releases/{version}").into(),
                ),
                ("version", version.into()),
            ])
        };
        Term::map([
            ("docs_html_url", Term::atom("nil")),
            (
                "downloads",
                Term::map([("all", 123_456_789_012.into()), ("week", 300.into())]),
            ),
            (
                "meta",
                Term::map([
                    ("description", "naïve ü 日本".into()),
                    ("licenses", Term::list([Term::bin("Apache-2.0")])),
                ]),
            ),
            ("name", "foo".into()),
            (
                "releases",
                Term::list([release("1.0.0", true), release("0.9.0-rc.1", false)]),
            ),
            ("retirement", Term::atom("undefined")),
        ])
    }

    /// Erlang expressions and the terms they stand for; `true` when Erlang writes the map
    /// entries in the given order, so its bytes equal ours.
    fn cases() -> Vec<(String, Term, bool)> {
        let long = "x".repeat(300);
        let mut cases = vec![
            ("#{<<\"a\">> => 1}".to_owned(), Term::map([("a", 1.into())]), true),
            (
                "#{<<\"reason\">> => <<\"security\">>, <<\"message\">> => <<\"CVE-2024-1\">>}"
                    .to_owned(),
                Term::map([
                    ("message", "CVE-2024-1".into()),
                    ("reason", "security".into()),
                ]),
                true,
            ),
            (
                "#{<<\"status\">> => 422, <<\"message\">> => <<\"Validation error(s)\">>, \
                 <<\"errors\">> => #{<<\"inserted_at\">> => \
                 <<\"must include the --replace flag to update an existing release\">>}}"
                    .to_owned(),
                validation_error(),
                true,
            ),
            (
                "#{<<\"organizations\">> => [], <<\"username\">> => <<\"ci\">>}".to_owned(),
                Term::map([
                    ("organizations", Term::List(vec![])),
                    ("username", "ci".into()),
                ]),
                true,
            ),
            (
                "#{<<\"url\">> => <<\"https://hex.example/api/packages/foo\">>, \
                 <<\"html_url\">> => <<\"https://hex.example/packages/foo\">>}"
                    .to_owned(),
                Term::map([
                    ("html_url", "https://hex.example/packages/foo".into()),
                    ("url", "https://hex.example/api/packages/foo".into()),
                ]),
                true,
            ),
            (
                "#{<<\"name\">> => <<\"foo\">>, <<\"retirement\">> => undefined, \
                 <<\"docs_html_url\">> => nil, \
                 <<\"downloads\">> => #{<<\"all\">> => 123456789012, <<\"week\">> => 300}, \
                 <<\"meta\">> => #{<<\"licenses\">> => [<<\"Apache-2.0\">>], \
                 <<\"description\">> => <<110,97,195,175,118,101,32,195,188,32,230,151,165,\
                 230,156,172>>}, \
                 <<\"releases\">> => [\
                 #{<<\"version\">> => <<\"1.0.0\">>, <<\"has_docs\">> => true, \
                 <<\"url\">> => <<\"https://hex.example/api/packages/foo/releases/1.0.0\">>}, \
                 #{<<\"version\">> => <<\"0.9.0-rc.1\">>, <<\"has_docs\">> => false, \
                 <<\"url\">> => <<\"https://hex.example/api/packages/foo/releases/0.9.0-rc.1\">>}]}"
                    .to_owned(),
                package_info(),
                true,
            ),
            (
                "[0, 255, 256, -1, 2147483647, -2147483648, 2147483648, -2147483649, \
                 1099511627776, 9223372036854775807, -9223372036854775808]"
                    .to_owned(),
                Term::list(
                    [
                        0,
                        255,
                        256,
                        -1,
                        2_147_483_647,
                        -2_147_483_648,
                        2_147_483_648,
                        -2_147_483_649,
                        1 << 40,
                        i64::MAX,
                        i64::MIN,
                    ]
                    .map(Term::Integer),
                ),
                true,
            ),
            (
                "{ok, <<>>, [], {}, true, false}".to_owned(),
                Term::Tuple(vec![
                    Term::atom("ok"),
                    Term::Binary(vec![]),
                    Term::List(vec![]),
                    Term::Tuple(vec![]),
                    Term::boolean(true),
                    Term::boolean(false),
                ]),
                true,
            ),
            (
                "[\"abc\", [1,2,3], [1,256], [[]]]".to_owned(),
                Term::list([
                    Term::list([97, 98, 99].map(Term::Integer)),
                    Term::list([1, 2, 3].map(Term::Integer)),
                    Term::list([1, 256].map(Term::Integer)),
                    Term::list([Term::List(vec![])]),
                ]),
                true,
            ),
            (
                "[1.5, -0.0, 3.0e100, -2.5e-300]".to_owned(),
                Term::list([1.5, -0.0, 3.0e100, -2.5e-300].map(Term::Float)),
                true,
            ),
            (
                "[list_to_atom([104,233,108,108,111]), list_to_atom([26085,26412]), \
                 list_to_atom(lists:duplicate(255, $a)), list_to_atom(lists:duplicate(255, 233))]"
                    .to_owned(),
                Term::list([
                    Term::atom("héllo"),
                    Term::atom("日本"),
                    Term::atom(&"a".repeat(255)),
                    Term::atom(&"é".repeat(255)),
                ]),
                true,
            ),
            (
                format!("{{<<\"{long}\">>, list_to_tuple(lists:seq(1, 300))}}"),
                Term::Tuple(vec![
                    Term::bin(&long),
                    Term::Tuple((1..=300).map(Term::Integer).collect()),
                ]),
                true,
            ),
            (
                "maps:from_list([{integer_to_binary(I), I} || I <- lists:seq(1, 40)])".to_owned(),
                Term::Map(
                    (1..=40)
                        .map(|i| (Term::bin(&i.to_string()), Term::Integer(i)))
                        .collect(),
                ),
                false,
            ),
            (
                "lists:duplicate(200, #{<<\"name\">> => <<\"foo\">>, <<\"version\">> => <<\"1.0.0\">>})"
                    .to_owned(),
                Term::List(vec![
                    Term::map([("name", "foo".into()), ("version", "1.0.0".into())]);
                    200
                ]),
                true,
            ),
            (
                "#{{1, 2} => [a], [] => #{}, 7 => nil}".to_owned(),
                Term::Map(vec![
                    (Term::Integer(7), Term::atom("nil")),
                    (
                        Term::Tuple(vec![Term::Integer(1), Term::Integer(2)]),
                        Term::list([Term::atom("a")]),
                    ),
                    (Term::List(vec![]), Term::Map(vec![])),
                ]),
                true,
            ),
        ];
        // A term nested exactly MAX_DEPTH deep.
        let mut deep = Term::Integer(1);
        let mut text = "1".to_owned();
        for _ in 0..MAX_DEPTH {
            deep = Term::list([deep]);
            text = format!("[{text}]");
        }
        cases.push((text, deep, true));
        cases
    }

    #[test]
    fn known_bytes() {
        assert_eq!(
            encode(&Term::map([("a", 1.into())])),
            [131, 116, 0, 0, 0, 1, 109, 0, 0, 0, 1, 97, 97, 1]
        );
        assert_eq!(encode(&Term::List(vec![])), [131, 106]);
        assert_eq!(encode(&Term::Integer(-1)), [131, 98, 255, 255, 255, 255]);
        assert_eq!(
            encode(&Term::Integer(1 << 40)),
            [131, 110, 6, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            encode(&Term::Integer(i64::MIN)),
            [131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128]
        );
        assert_eq!(
            encode(&Term::boolean(true)),
            [131, 119, 4, b't', b'r', b'u', b'e']
        );
        assert_eq!(
            encode(&Term::list([1, 2, 3].map(Term::Integer))),
            [131, 107, 0, 3, 1, 2, 3]
        );
        assert_eq!(
            encode(&Term::list([Term::atom("a")])),
            [131, 108, 0, 0, 0, 1, 119, 1, b'a', 106]
        );
        assert_eq!(encode(&Term::Tuple(vec![])), [131, 104, 0]);
        assert_eq!(
            encode(&Term::Float(1.5)),
            [131, 70, 63, 248, 0, 0, 0, 0, 0, 0]
        );
        // Older encodings, as OTP 25 writes them.
        assert_eq!(
            decode(&[131, 100, 0, 3, b'f', b'o', b'o']),
            Ok(Term::atom("foo"))
        );
        assert_eq!(decode(&[131, 115, 1, 233]), Ok(Term::atom("é")));
        let float_ext = b"\x83c1.50000000000000000000e+00\0\0\0\0\0";
        assert_eq!(decode(float_ext), Ok(Term::Float(1.5)));
        assert_eq!(decode(&[131, 110, 1, 2, 5]), Ok(Term::Integer(-5)));
        assert_eq!(decode(&[131, 110, 2, 0, 5, 0]), Ok(Term::Integer(5)));
        assert_eq!(decode(&[131, 110, 0, 0]), Ok(Term::Integer(0)));
        assert_eq!(
            decode(&[131, 111, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Ok(Term::Integer(1))
        );
        assert_eq!(decode(&[131, 107, 0, 0]), Ok(Term::List(vec![])));
        assert_eq!(decode(&[131, 108, 0, 0, 0, 0, 106]), Ok(Term::List(vec![])));
        // [1 | [2]]: a list tail is concatenated.
        assert_eq!(
            decode(&[131, 108, 0, 0, 0, 1, 97, 1, 107, 0, 1, 2]),
            Ok(Term::list([1, 2].map(Term::Integer)))
        );
    }

    #[test]
    fn roundtrips() {
        for (_, term, _) in cases() {
            roundtrip(&term);
        }
        roundtrip(&Term::Integer(i64::MAX));
        roundtrip(&Term::Integer(i64::MIN));
        roundtrip(&Term::Integer(i64::from(i32::MIN) - 1));
        roundtrip(&Term::Float(f64::MIN_POSITIVE));
        roundtrip(&Term::Binary(vec![0; 70_000]));
        roundtrip(&Term::List(vec![Term::Integer(7); 70_000]));
        roundtrip(&Term::atom(""));
        roundtrip(&Term::atom(&"ü".repeat(200)));
    }

    #[test]
    fn accessors() {
        let term = validation_error();
        assert_eq!(term.get("status").and_then(Term::as_int), Some(422));
        assert_eq!(
            term.get("message").and_then(Term::as_str),
            Some("Validation error(s)")
        );
        assert_eq!(
            term.get("errors")
                .and_then(|e| e.get("inserted_at"))
                .and_then(Term::as_bytes)
                .map(<[u8]>::len),
            Some(61)
        );
        assert_eq!(term.get("missing"), None);
        assert_eq!(Term::Integer(1).get("a"), None);
        assert_eq!(Term::boolean(false).as_bool(), Some(false));
        assert_eq!(Term::atom("nil").as_bool(), None);
        assert_eq!(Term::atom("nil").as_atom(), Some("nil"));
        assert_eq!(Term::Binary(vec![255]).as_str(), None);
        let info = package_info();
        let releases = info.get("releases").and_then(Term::as_list).unwrap();
        assert_eq!(releases.len(), 2);
        assert_eq!(releases[1].get("has_docs"), Some(&Term::boolean(false)));
        assert_eq!(info.as_map().map(<[_]>::len), Some(6));
    }

    #[test]
    fn refuses() {
        use EtfError::*;
        assert_eq!(decode(&[]), Err(Empty));
        assert_eq!(decode(&[130, 106]), Err(BadVersion { found: 130 }));
        assert!(matches!(
            decode(&[131]),
            Err(Truncated {
                offset: 1,
                at: 1,
                needed: 1,
                available: 0,
                ..
            })
        ));
        assert_eq!(
            decode(&[131, 106, 106]),
            Err(TrailingBytes {
                offset: 2,
                count: 1
            })
        );
        assert_eq!(
            decode(&[131, 108, 0, 0, 0, 1, 97, 1, 97, 2]),
            Err(ImproperList {
                offset: 1,
                tail_offset: 8
            })
        );
        assert_eq!(
            decode(&[131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(IntegerTooLarge { offset: 1 })
        );
        assert_eq!(
            decode(&[131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128]),
            Err(IntegerTooLarge { offset: 1 })
        );
        assert_eq!(
            decode(&[131, 110, 8, 1, 1, 0, 0, 0, 0, 0, 0, 128]),
            Err(IntegerTooLarge { offset: 1 })
        );
        assert_eq!(
            decode(&[131, 70, 127, 240, 0, 0, 0, 0, 0, 0]),
            Err(BadFloat {
                offset: 1,
                reason: "is not finite"
            })
        );
        assert!(matches!(
            decode(b"\x83cnan\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Err(BadFloat { offset: 1, .. })
        ));
        assert!(matches!(
            decode(b"\x83cjunk\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Err(BadFloat { offset: 1, .. })
        ));
        assert_eq!(
            decode(&[131, 119, 3, 240, 159, 152]),
            Err(AtomNotUtf8 { offset: 1 })
        );
        let mut long_atom = vec![131, 100, 1, 0];
        long_atom.extend([b'a'; 256]);
        assert_eq!(
            decode(&long_atom),
            Err(AtomTooLong {
                offset: 1,
                chars: 256
            })
        );
        // #{<<"a">> => 1, <<"a">> => 2}
        assert_eq!(
            decode(&[
                131, 116, 0, 0, 0, 2, 109, 0, 0, 0, 1, 97, 97, 1, 109, 0, 0, 0, 1, 97, 97, 2
            ]),
            Err(DuplicateKey {
                offset: 1,
                key_offset: 14
            })
        );
        // The same atom key in its old and new encodings.
        assert!(matches!(
            decode(&[131, 116, 0, 0, 0, 2, 100, 0, 1, 97, 106, 119, 1, 97, 106]),
            Err(DuplicateKey { key_offset: 11, .. })
        ));
        assert_eq!(
            decode(&[131, 88, 0]),
            Err(Unsupported {
                offset: 1,
                tag: 88,
                name: "pid"
            })
        );
        assert_eq!(
            decode(&[131, 108, 0, 0, 0, 1, 80, 0, 106]),
            Err(Unsupported {
                offset: 6,
                tag: 80,
                name: "compressed term not right after the version byte"
            })
        );
        assert_eq!(decode(&[131, 1]), Err(UnknownTag { offset: 1, tag: 1 }));
    }

    #[test]
    fn refuses_lengths_past_the_input() {
        for bytes in [
            &[131, 108, 255, 255, 255, 255, 106][..],
            &[131, 104, 255, 97, 1],
            &[131, 105, 255, 255, 255, 255, 97, 1],
            &[131, 116, 255, 255, 255, 255, 106, 106],
            &[131, 116, 0, 0, 0, 2, 106, 106, 106],
            &[131, 109, 255, 255, 255, 255, 0],
            &[131, 111, 255, 255, 255, 255, 0, 1],
            &[131, 110, 255, 0, 1],
            &[131, 107, 255, 255, 1],
            &[131, 118, 255, 255, b'a'],
            &[131, 100, 0, 2, b'a'],
        ] {
            let err = decode(bytes).unwrap_err();
            assert!(
                matches!(err, EtfError::Truncated { .. }),
                "{bytes:?}: {err}"
            );
        }
        let err = decode(&[131, 108, 255, 255, 255, 255, 106]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ends inside the list at byte 1: byte 6 needs 4294967296 more bytes, 1 remain"
        );
    }

    #[test]
    fn depth_limit() {
        let nest = |n: usize, open: &[u8], leaf: &[u8]| {
            let mut bytes = vec![VERSION];
            for _ in 0..n {
                bytes.extend_from_slice(open);
            }
            bytes.extend_from_slice(leaf);
            bytes
        };
        // Tuples of one element: the leaf sits inside `n` tuples.
        assert!(decode(&nest(MAX_DEPTH, &[104, 1], &[97, 1])).is_ok());
        assert_eq!(
            decode(&nest(MAX_DEPTH + 1, &[104, 1], &[97, 1])),
            Err(EtfError::TooDeep {
                offset: 1 + 2 * (MAX_DEPTH + 1),
                limit: MAX_DEPTH
            })
        );
        assert!(decode(&nest(MAX_DEPTH, &[104, 1], &[107, 0, 0])).is_ok());
        assert!(matches!(
            decode(&nest(MAX_DEPTH, &[104, 1], &[107, 0, 1, 7])),
            Err(EtfError::TooDeep { .. })
        ));
        // A million nested lists: an error, not a stack overflow.
        let deep = nest(1_000_000, &[108, 0, 0, 0, 1], &[106]);
        assert!(matches!(decode(&deep), Err(EtfError::TooDeep { .. })));
        let mut term = Term::Integer(1);
        for _ in 0..=MAX_DEPTH {
            term = Term::Tuple(vec![term]);
        }
        assert_eq!(try_encode(&term), Err(EncodeError::TooDeep));
        assert_eq!(encode(&term), [VERSION]);
    }

    #[test]
    fn encode_refuses_what_erlang_cannot_hold() {
        assert_eq!(
            try_encode(&Term::Float(f64::NAN)),
            Err(EncodeError::NonFiniteFloat)
        );
        assert_eq!(
            try_encode(&Term::list([Term::Float(f64::INFINITY)])),
            Err(EncodeError::NonFiniteFloat)
        );
        assert_eq!(
            try_encode(&Term::atom(&"a".repeat(256))),
            Err(EncodeError::AtomTooLong { chars: 256 })
        );
        assert_eq!(
            try_encode(&Term::map([
                ("a", 1.into()),
                ("b", 2.into()),
                ("a", 3.into())
            ])),
            Err(EncodeError::DuplicateKey { entry: 2 })
        );
        assert_eq!(encode(&Term::Float(f64::NAN)), [VERSION]);
        assert!(decode(&encode(&Term::Float(f64::NAN))).is_err());
    }

    #[test]
    fn compressed_terms() {
        let term = Term::List(vec![Term::bin("abc"); 100]);
        let plain = encode(&term);
        let bytes = compressed(&plain[1..]);
        assert!(bytes.len() < plain.len());
        assert_eq!(decode(&bytes), Ok(term));

        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode(&trailing),
            Err(EtfError::BadCompressed { ref reason, .. }) if reason.contains("after its zlib")
        ));
        let mut wrong_size = bytes.clone();
        wrong_size[5] += 1;
        assert!(matches!(
            decode(&wrong_size),
            Err(EtfError::BadCompressed { ref reason, .. }) if reason.contains("header says")
        ));
        wrong_size[5] -= 2;
        assert!(matches!(
            decode(&wrong_size),
            Err(EtfError::BadCompressed { ref reason, .. }) if reason.contains("more bytes")
        ));
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(
            decode(&corrupt),
            Err(EtfError::BadCompressed { .. })
        ));
        assert_eq!(
            decode(&[131, 80, 255, 255, 255, 255, 120, 156]),
            Err(EtfError::CompressedTooLarge { size: 0xffff_ffff })
        );
        // An inflated term with trailing bytes, and one compressed inside another.
        assert!(matches!(
            decode(&compressed(&[106, 106])),
            Err(EtfError::InCompressed(e)) if matches!(*e, EtfError::TrailingBytes { offset: 1, count: 1 })
        ));
        let inner = compressed(&[106]);
        assert!(matches!(
            decode(&compressed(&inner[1..])),
            Err(EtfError::InCompressed(e)) if matches!(*e, EtfError::Unsupported { tag: 80, .. })
        ));
        // The limit: exactly MAX_INFLATED bytes inflate; a byte more is refused up front.
        let mut big = vec![BINARY_EXT];
        big.extend_from_slice(&len32(MAX_INFLATED - 5));
        big.resize(MAX_INFLATED, 0);
        assert!(
            matches!(decode(&compressed(&big)), Ok(Term::Binary(b)) if b.len() == MAX_INFLATED - 5)
        );
        big.push(0);
        assert!(matches!(
            decode(&compressed(&big)),
            Err(EtfError::CompressedTooLarge { .. })
        ));
        // A stream that inflates past what its header claims stops at the claim.
        let mut bomb = compressed(&vec![0; 1 << 20]);
        bomb[2..6].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(decode(&bomb), Err(EtfError::BadCompressed { .. })));
    }

    /// Deterministic xorshift64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
        }
    }

    /// Decoding never panics, and what it accepts encodes back to an equal term.
    fn decode_checked(bytes: &[u8]) -> Result<Term, EtfError> {
        let result = decode(bytes);
        if let Ok(term) = &result {
            let again = try_encode(term).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
            assert_eq!(decode(&again).as_ref(), Ok(term), "{bytes:?}");
        }
        result
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = cases()
            .iter()
            .map(|(_, term, _)| encode(term))
            .filter(|bytes| bytes.len() < 4000)
            .collect();
        let repetitive = encode(&Term::List(vec![Term::bin("abc"); 50]));
        seeds.push(compressed(&repetitive[1..]));
        seeds.push(b"\x83c1.50000000000000000000e+00\0\0\0\0\0".to_vec());
        seeds.push(vec![131, 100, 0, 3, b'f', b'o', b'o']);
        seeds.push(vec![131, 111, 0, 0, 0, 2, 1, 0, 1]);
        seeds
    }

    #[test]
    fn truncations_are_errors() {
        for seed in seeds() {
            assert!(decode_checked(&seed).is_ok(), "{seed:?}");
            for len in 0..seed.len() {
                assert!(
                    decode_checked(&seed[..len]).is_err(),
                    "prefix {len} of {seed:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let tags = [
            70, 77, 80, 97, 98, 99, 100, 104, 105, 106, 107, 108, 109, 110, 111, 115, 116, 118,
            119, 0, 1, 255,
        ];
        let mut accepted = 0;
        for i in 0..4000 {
            let len = rng.below(48);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    // Mostly tags and small numbers, so the decoder gets past the first byte.
                    match rng.below(4) {
                        0 => tags[rng.below(tags.len())],
                        1 => 0,
                        2 => u8::try_from(rng.below(4)).unwrap(),
                        _ => rng.next().to_le_bytes()[0],
                    }
                })
                .collect();
            if i % 8 != 0 {
                bytes.insert(0, VERSION);
            }
            accepted += usize::from(decode_checked(&bytes).is_ok());
        }
        // Mutations of valid encodings.
        let seeds = seeds();
        for _ in 0..4000 {
            let mut bytes = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next().to_le_bytes()[0];
            }
            accepted += usize::from(decode_checked(&bytes).is_ok());
        }
        assert!(accepted > 0);
    }

    fn erlang_binary(bytes: &[u8]) -> String {
        let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
        format!("<<{}>>", list.join(","))
    }

    /// Runs `script` in `erl` and returns what it printed; fails when `erl` is missing.
    fn erl(script: &str) -> String {
        let output = std::process::Command::new("erl")
            .args(["-noshell", "-eval", script, "-s", "init", "stop"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `erl` ({e}): this test checks the term format against \
                     Erlang's own term_to_binary/binary_to_term; install Erlang/OTP \
                     (rebar3 brings it) and put `erl` on PATH"
                )
            });
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() && stdout.contains("\ndone\n"),
            "erl failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn parse_bytes(list: &str) -> Vec<u8> {
        let inner = list.trim().trim_start_matches('[').trim_end_matches(']');
        if inner.is_empty() {
            return Vec::new();
        }
        inner.split(',').map(|b| b.parse().unwrap()).collect()
    }

    #[test]
    fn against_erlang() {
        let cases = cases();
        let mut script = String::from("Cases = [");
        for (i, (expr, term, _)) in cases.iter().enumerate() {
            if i > 0 {
                script.push(',');
            }
            let ours = erlang_binary(&try_encode(term).unwrap());
            script.push_str(&format!("{{{i}, fun() -> {expr} end, {ours}}}"));
        }
        script.push_str(
            "],
            lists:foreach(fun({I, F, Ours}) ->
                E = F(),
                P = fun(K, B) -> io:format(\"~b ~s ~w~n\", [I, K, binary_to_list(B)]) end,
                P(\"default\", term_to_binary(E)),
                P(\"v0\", term_to_binary(E, [{minor_version, 0}])),
                P(\"v2\", term_to_binary(E, [{minor_version, 2}])),
                P(\"compressed\", term_to_binary(E, [{compressed, 9}])),
                R = try binary_to_term(Ours, [safe]) of V -> V catch C:X -> {C, X} end,
                io:format(\"~b ours ~w~n\", [I, R =:= E])
            end, Cases),
            io:format(\"~ndone~n\").",
        );
        let output = erl(&script);
        let mut seen_compressed = false;
        let mut checked = 0;
        for line in output.lines().filter(|l| !l.is_empty() && *l != "done") {
            let mut parts = line.splitn(3, ' ');
            let (i, kind, rest) = (
                parts.next().unwrap().parse::<usize>().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let (expr, term, exact) = &cases[i];
            if kind == "ours" {
                assert_eq!(
                    rest, "true",
                    "binary_to_term of our encoding of {expr} differs"
                );
                checked += 1;
                continue;
            }
            let bytes = parse_bytes(rest);
            seen_compressed |= bytes.get(1) == Some(&COMPRESSED);
            let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{kind} {expr}: {e}"));
            assert_eq!(sorted(&decoded), sorted(term), "{kind} {expr}");
            if kind == "v2" && *exact {
                assert_eq!(encode(term), bytes, "encoding of {expr}");
            }
            checked += 1;
        }
        assert_eq!(checked, cases.len() * 5, "erl output:\n{output}");
        assert!(seen_compressed, "no compressed term among erl's output");
    }
}
