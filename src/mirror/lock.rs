//! The releases a lock file pins, free of I/O: `mix.lock` (an Elixir map) and `rebar.lock`
//! (Erlang terms), for `hexreg mirror --only-lock`.
//!
//! - `mix.lock`: `%{"name": {:hex, :name, "version", "inner", [tools], [deps], "repo",
//!   "outer"}, ...}`; older files lack the outer checksum (and even the repository). Entries
//!   that are not `:hex` (git, path) are skipped: no Hex repository serves them.
//! - `rebar.lock`: `{"1.2.0", [{<<"app">>, {pkg, <<"name">>, <<"version">>}, Level}, ...]}.`
//!   then `[{pkg_hash, [{<<"app">>, <<"INNER">>}]}, {pkg_hash_ext, [{<<"app">>, <<"OUTER">>}]}].`;
//!   the oldest format is the bare list of the first form. Checksums are keyed by the
//!   application name, which may differ from the package's.

use crate::format::encoding::parse_hex;
use crate::format::metadata::{self, Term};
use crate::format::package_name;

/// One release a lock file pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The Hex package.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The repository the lock names (`hexpm`, `hexpm:org`); `None` when it names none
    /// (rebar.lock, old mix.lock files).
    pub repo: Option<String>,
    /// The inner checksum (SHA-256 of the tarball's contents), when the lock records it.
    pub inner: Option<Vec<u8>>,
    /// The outer checksum (SHA-256 of the tarball file), when the lock records it.
    pub outer: Option<Vec<u8>>,
}

/// A lock file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Neither a mix.lock map nor rebar.lock terms.
    #[error(
        "is neither a mix.lock (an Elixir map `%{{...}}`) nor a rebar.lock (Erlang terms): {0}"
    )]
    Syntax(String),
    /// An entry that does not have the shape of its format.
    #[error("has an entry that is not a Hex release: {0}")]
    Entry(String),
}

/// The Hex releases pinned by a lock file's `text`, `mix.lock` or `rebar.lock` by its content.
pub fn parse(text: &str) -> Result<Vec<Pin>, LockError> {
    if text.trim_start().starts_with("%{") {
        parse_mix_lock(text)
    } else {
        parse_rebar_lock(text)
    }
}

/// A checksum written as hex (either case), if it is one of 32 bytes.
fn checksum(text: &str) -> Option<Vec<u8>> {
    parse_hex(text).filter(|b| b.len() == 32)
}

fn pin(name: &str, version: &str, shown: &str) -> Result<Pin, LockError> {
    if !package_name::is_valid(name) || crate::format::version::parse(version).is_err() {
        return Err(LockError::Entry(shown.chars().take(200).collect()));
    }
    Ok(Pin {
        name: name.to_string(),
        version: version.to_string(),
        repo: None,
        inner: None,
        outer: None,
    })
}

// ---------------------------------------------------------------------------------------------
// rebar.lock

fn binary(term: &Term) -> Option<String> {
    match term {
        Term::Binary(bytes) => String::from_utf8(bytes.clone()).ok(),
        _ => None,
    }
}

/// The releases a `rebar.lock` pins, with the checksums of its `pkg_hash` and `pkg_hash_ext`.
pub fn parse_rebar_lock(text: &str) -> Result<Vec<Pin>, LockError> {
    let terms =
        metadata::parse_terms(text.as_bytes()).map_err(|e| LockError::Syntax(e.to_string()))?;
    let (entries, hashes) = match terms.as_slice() {
        [Term::Tuple(header), rest @ ..] => match header.as_slice() {
            [_, Term::List(entries)] => (entries, rest.first()),
            _ => {
                return Err(LockError::Syntax(
                    "the first term is not {Version, [...]}".into(),
                ));
            }
        },
        [Term::List(entries)] => (entries, None),
        _ => return Err(LockError::Syntax("no list of locked dependencies".into())),
    };
    let mut apps = Vec::new();
    for entry in entries {
        let shown = format!("{entry:?}");
        let Term::Tuple(fields) = entry else {
            return Err(LockError::Entry(shown));
        };
        let (Some(app), Some(Term::Tuple(source))) =
            (fields.first().and_then(binary), fields.get(1))
        else {
            return Err(LockError::Entry(shown));
        };
        // `{pkg, Name, Version}` or `{pkg, Name, Version, Repo}`; git and other sources skipped.
        if source.first() != Some(&Term::Atom("pkg".into())) {
            continue;
        }
        let (Some(name), Some(version)) = (
            source.get(1).and_then(binary),
            source.get(2).and_then(binary),
        ) else {
            return Err(LockError::Entry(shown));
        };
        let mut pin = pin(&name, &version, &shown)?;
        pin.repo = source.get(3).and_then(binary);
        apps.push((app, pin));
    }
    if let Some(Term::List(sections)) = hashes {
        for section in sections {
            let Term::Tuple(pair) = section else { continue };
            let (Some(Term::Atom(kind)), Some(Term::List(items))) = (pair.first(), pair.get(1))
            else {
                continue;
            };
            for item in items {
                let Term::Tuple(kv) = item else { continue };
                let (Some(app), Some(hash)) = (
                    kv.first().and_then(binary),
                    kv.get(1).and_then(binary).and_then(|h| checksum(&h)),
                ) else {
                    continue;
                };
                for (_, pin) in apps.iter_mut().filter(|(a, _)| *a == app) {
                    match kind.as_str() {
                        "pkg_hash" => pin.inner = Some(hash.clone()),
                        "pkg_hash_ext" => pin.outer = Some(hash.clone()),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(apps.into_iter().map(|(_, pin)| pin).collect())
}

// ---------------------------------------------------------------------------------------------
// mix.lock: the Elixir term subset `mix` writes.

/// An Elixir term as mix.lock holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ex {
    Str(String),
    Atom(String),
    Other,
    List(Vec<Ex>),
    Tuple(Vec<Ex>),
    Map(Vec<(Ex, Ex)>),
}

struct Reader<'a> {
    text: &'a [u8],
    pos: usize,
    depth: usize,
}

/// Nesting deeper than this is refused (a lock file nests four levels).
const MAX_DEPTH: usize = 64;

impl Reader<'_> {
    fn error<T>(&self, what: &str) -> Result<T, LockError> {
        Err(LockError::Syntax(format!("{what} at byte {}", self.pos)))
    }

    fn skip_space(&mut self) {
        while let Some(&c) = self.text.get(self.pos) {
            if c == b'#' {
                while self.text.get(self.pos).is_some_and(|&c| c != b'\n') {
                    self.pos += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_space();
        if self.text[self.pos..].starts_with(s.as_bytes()) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Result<String, LockError> {
        // At the opening quote.
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.text.get(self.pos) {
                None => return self.error("unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let Some(&c) = self.text.get(self.pos + 1) else {
                        return self.error("unterminated string");
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).or_else(|_| self.error("a string that is not UTF-8"))
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self.text.get(self.pos).is_some_and(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'?' | b'!' | b'.' | b'-' | b'+')
        }) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()
    }

    /// A sequence of terms up to `close`, where `key: value` and `"key": value` are pairs.
    fn items(&mut self, close: &str) -> Result<Vec<Ex>, LockError> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            let item = self.term()?;
            let item = if self.eat("=>") {
                Ex::Tuple(vec![item, self.term()?])
            } else {
                item
            };
            items.push(item);
            if !self.eat(",") {
                if self.eat(close) {
                    return Ok(items);
                }
                return self.error(&format!("expected `,` or `{close}`"));
            }
        }
    }

    fn term(&mut self) -> Result<Ex, LockError> {
        if self.depth >= MAX_DEPTH {
            return self.error("nesting too deep");
        }
        self.depth += 1;
        let term = self.term_inner();
        self.depth -= 1;
        term
    }

    fn term_inner(&mut self) -> Result<Ex, LockError> {
        match self.peek() {
            None => self.error("unexpected end"),
            Some(b'%') => {
                if !self.eat("%{") {
                    return self.error("expected `%{`");
                }
                let items = self.items("}")?;
                Ok(Ex::Map(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Ex::Tuple(mut kv) if kv.len() == 2 => {
                                let v = kv.pop().unwrap_or(Ex::Other);
                                let k = kv.pop().unwrap_or(Ex::Other);
                                (k, v)
                            }
                            other => (other, Ex::Other),
                        })
                        .collect(),
                ))
            }
            Some(b'{') => {
                self.pos += 1;
                Ok(Ex::Tuple(self.items("}")?))
            }
            Some(b'[') => {
                self.pos += 1;
                Ok(Ex::List(self.items("]")?))
            }
            Some(b'"') => {
                let s = self.string()?;
                // `"key": value`
                if self.text.get(self.pos) == Some(&b':') {
                    self.pos += 1;
                    return Ok(Ex::Tuple(vec![Ex::Str(s), self.term()?]));
                }
                Ok(Ex::Str(s))
            }
            Some(b':') => {
                self.pos += 1;
                if self.text.get(self.pos) == Some(&b'"') {
                    return Ok(Ex::Atom(self.string()?));
                }
                Ok(Ex::Atom(self.word()))
            }
            Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                let word = self.word();
                // `key: value` in a keyword list.
                if self.text.get(self.pos) == Some(&b':')
                    && self
                        .text
                        .get(self.pos + 1)
                        .is_some_and(|c| c.is_ascii_whitespace())
                {
                    self.pos += 1;
                    return Ok(Ex::Tuple(vec![Ex::Atom(word), self.term()?]));
                }
                Ok(match word.as_str() {
                    "true" | "false" | "nil" => Ex::Atom(word),
                    _ => Ex::Other,
                })
            }
            Some(_) => self.error("unexpected character"),
        }
    }
}

/// The Hex releases a `mix.lock` pins.
pub fn parse_mix_lock(text: &str) -> Result<Vec<Pin>, LockError> {
    let mut reader = Reader {
        text: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let Ex::Map(entries) = reader.term()? else {
        return Err(LockError::Syntax("not a map".into()));
    };
    if reader.peek().is_some() {
        return reader.error("text after the map");
    }
    let mut pins = Vec::new();
    for (_, value) in entries {
        let Ex::Tuple(fields) = &value else {
            return Err(LockError::Entry(format!("{value:?}")));
        };
        if fields.first() != Some(&Ex::Atom("hex".into())) {
            continue;
        }
        let shown = format!("{value:?}");
        let (Some(Ex::Atom(name)), Some(Ex::Str(version))) = (fields.get(1), fields.get(2)) else {
            return Err(LockError::Entry(shown));
        };
        let mut pin = pin(name, version, &shown)?;
        let text = |i: usize| match fields.get(i) {
            Some(Ex::Str(s)) => Some(s.clone()),
            _ => None,
        };
        pin.inner = text(3).and_then(|h| checksum(&h));
        pin.repo = text(6);
        pin.outer = text(7).and_then(|h| checksum(&h));
        pins.push(pin);
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX_LOCK: &str = r#"%{
  "decimal": {:hex, :decimal, "2.1.1", "5611dca5d4b2c3dd497dec8f68751f1f1a54755e8ed2a966c2633cf885973ad6", [:mix], [], "hexpm", "53cfe5f497ed0e7771ae1a475575603d77425099ba5faef9394932b35020ffcc"},
  "jason": {:hex, :jason, "1.4.1", "af1504e35f629ddcdd6addb3513c3853991f694921b1b9368b0bd32beb9f1b63", [:mix], [{:decimal, "~> 1.0 or ~> 2.0", [hex: :decimal, repo: "hexpm", optional: true]}], "hexpm", "fbb01ecdfd565b56261302f7e1fcc27c4fb8f32d56eab74db621fc154604a7a1"},
  "mine": {:git, "https://example.com/mine.git", "0123abc", []},
  "old": {:hex, :old_pkg, "0.1.0", "AF1504E35F629DDCDD6ADDB3513C3853991F694921B1B9368B0BD32BEB9F1B63", [:mix], []},
}
"#;

    #[test]
    fn mix_lock_pins() {
        let pins = parse(MIX_LOCK).unwrap();
        assert_eq!(pins.len(), 3);
        assert_eq!(pins[1].name, "jason");
        assert_eq!(pins[1].version, "1.4.1");
        assert_eq!(pins[1].repo.as_deref(), Some("hexpm"));
        assert_eq!(
            pins[1].outer.as_deref(),
            checksum("fbb01ecdfd565b56261302f7e1fcc27c4fb8f32d56eab74db621fc154604a7a1").as_deref()
        );
        assert_eq!(pins[2].name, "old_pkg");
        assert!(pins[2].inner.is_some() && pins[2].outer.is_none() && pins[2].repo.is_none());
    }

    const REBAR_LOCK: &str = r#"{"1.2.0",
[{<<"acme_erl">>,{pkg,<<"acme_erl">>,<<"0.2.0">>},0},
 {<<"base">>,{pkg,<<"acme_erl_base">>,<<"0.1.0">>},1},
 {<<"g">>,{git,"https://example.com/g.git",{ref,"abc"}},0}]}.
[
{pkg_hash,[
 {<<"acme_erl">>, <<"FB45559110CF085E0E074FBAE28206FAC97DA70F42750C1D253C2EAA5E93A741">>},
 {<<"base">>, <<"B2B9EAFF48A3CA2434C42E583DF1296E75E12482A1F03AEBC2B6A644382E55E9">>}]},
{pkg_hash_ext,[
 {<<"acme_erl">>, <<"06D18CBA7F8A11262A823533F289084C1D68366827C81A877A0935C381C2BF99">>},
 {<<"base">>, <<"F1C252663B9EBB4305154AA05343F25CBDB51E303EC9E0038A04C0332B95CB20">>}]}
].
"#;

    #[test]
    fn rebar_lock_pins() {
        let pins = parse(REBAR_LOCK).unwrap();
        assert_eq!(pins.len(), 2);
        assert_eq!(
            (pins[1].name.as_str(), pins[1].version.as_str()),
            ("acme_erl_base", "0.1.0")
        );
        assert_eq!(
            pins[1].outer.as_deref(),
            checksum("F1C252663B9EBB4305154AA05343F25CBDB51E303EC9E0038A04C0332B95CB20").as_deref()
        );
        assert!(pins[0].inner.is_some());
        // The oldest format: the list alone.
        let old = parse("[{<<\"a\">>,{pkg,<<\"a\">>,<<\"1.0.0\">>},0}].").unwrap();
        assert_eq!(old[0].name, "a");
        assert!(old[0].outer.is_none());
    }

    #[test]
    fn hostile_locks_are_refused_without_panicking() {
        for bad in [
            "",
            "%{",
            "%{\"a\": {:hex, :A, \"1.0.0\"}}",
            "%{\"a\": {:hex, :a, \"not a version\"}}",
            "%{\"a\": \"x\"} trailing",
            "{\"1.2.0\", nope}.",
            "[{<<\"a\">>,{pkg,<<\"../x\">>,<<\"1.0.0\">>},0}].",
            "\"unterminated",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = format!("%{{\"a\": {}", "[".repeat(10_000));
        assert!(parse(&deep).is_err());
    }
}
