//! The `metadata.config` file inside a package tarball.
//!
//! The file is a sequence of Erlang terms, each followed by a `.`, written by
//! hex_core's `encode_metadata/1` (one `{<<"key">>, Value}.` form per key).
//! hex_core reads it back with its own restricted tokenizer (`safe_erl_term.xrl`)
//! and `erl_parse:parse_term/1`; this module reimplements that reader:
//!
//! * [`parse_terms`] turns the bytes into [`Term`]s (lexer + recursive-descent
//!   parser, nesting capped at [`MAX_DEPTH`]);
//! * [`parse`] checks that every form is a `{Key, Value}` pair, keeps the last
//!   value of a duplicate key (like `maps:from_list/1`) and normalises what the
//!   registry needs into a [`Metadata`].
//!
//! Behaviour copied from hex_core on purpose, including its quirks:
//!
//! * the bytes are decoded as UTF-8, and if that fails anywhere, the whole file
//!   is read as Latin-1;
//! * the extent of a quoted string or atom is the *longest* match of the leex
//!   rule `"(\\\^.|\\.|[^"])*"`, so a literal ending in an escaped backslash
//!   (`"a\\"`) reaches on to a later quote when there is one, exactly as
//!   hex_core (and therefore `mix hex.registry build`) does;
//! * escapes are those of `safe_erl_term.xrl`: `\NNN` with exactly three octal
//!   digits, `\^X`, `\n \r \t \v \b \f \e \s \d`, a backslash before a
//!   character 0–32 is dropped with it, and any other `\c` is `c`;
//! * a `.` always ends a form, even when no whitespace follows.
//!
//! What is not copied: hex_core only accepts atoms that already exist in the
//! running VM; here every atom is accepted. Integers are limited to `i128`.
//!
//! The code is split into `lexer` (bytes to tokens), `parser` (tokens to
//! [`Term`]s) and this module (the terms, [`Metadata`], the errors, the
//! normalisation and [`render`]).

use std::collections::BTreeMap;
use std::fmt;

use crate::format::tarball::one_line;

use parser::parse_forms;

mod lexer;
mod parser;
#[cfg(test)]
mod tests;

/// Deepest nesting of lists, tuples, maps and binaries accepted by the parser.
pub const MAX_DEPTH: usize = 256;

/// An Erlang term as found in metadata.config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// An atom or quoted atom, its text as decoded.
    Atom(String),
    /// An integer, with its sign.
    Integer(i128),
    /// A binary: `<<"...">>` (Latin-1, each char code truncated to its low
    /// byte), `<<"..."/utf8>>` (UTF-8), `<<1,2,3>>` (each integer taken mod 256),
    /// or a concatenation of such segments.
    Binary(Vec<u8>),
    /// A `"..."` literal: a list of character codes (an Erlang string).
    String(Vec<u32>),
    /// A proper list, including `[]`.
    List(Vec<Term>),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A map `#{K => V, ...}`, in source order (duplicates are kept).
    Map(Vec<(Term, Term)>),
}

/// The part of a package's metadata the registry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The package's name: the `name` entry, as text.
    pub name: String,
    /// The release's version: the `version` entry, as text, verbatim (not yet checked as
    /// SemVer).
    pub version: String,
    /// The OTP application the package provides: the `app` entry, as text.
    pub app: String,
    /// Sorted by name bytewise, unique names (a later duplicate wins, like
    /// `maps:from_list/1`).
    pub requirements: Vec<Requirement>,
}

/// One dependency of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The dependency's package name.
    pub name: String,
    /// `None` when the entry has no `app` key (or it is the atom `undefined`).
    pub app: Option<String>,
    /// The version requirement on the dependency, e.g. `~> 1.0`: its `requirement` entry, as
    /// text.
    pub requirement: String,
    /// `true` only when the value is the atom `true`.
    pub optional: bool,
    /// `None` when the entry has no `repository` key (or it is the atom
    /// `undefined`).
    pub repository: Option<String>,
}

/// Why a `metadata.config` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The text is not a valid sequence of `Term.` forms.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// Line where the error was found, counted from 1.
        line: usize,
        /// Column where the error was found, counted from 1 in characters.
        column: usize,
        /// What is wrong there, e.g. what was found instead of what was expected.
        message: String,
    },
    /// An integer that does not fit in 128 bits.
    #[error("integer too large at line {line}, column {column} (at most 128 bits are supported)")]
    IntegerTooLarge {
        /// Line where the integer starts, counted from 1.
        line: usize,
        /// Column where the integer starts, counted from 1 in characters.
        column: usize,
    },
    /// Lists, tuples, maps or binaries nested deeper than [`MAX_DEPTH`].
    #[error(
        "terms nested too deeply at line {line}, column {column} (more than {max} levels)",
        max = MAX_DEPTH
    )]
    TooDeep {
        /// Line of the term that opens one level too many, counted from 1.
        line: usize,
        /// Column of that term, counted from 1 in characters.
        column: usize,
    },
    /// The file holds no form at all.
    #[error("it holds no `{{Key, Value}}.` form at all (the file is empty or blank)")]
    Empty,
    /// A form (1-based) that is not a 2-tuple.
    #[error("form {form} is not a {{Key, Value}} pair (it starts at line {line})")]
    NotKeyValue {
        /// The form's position in the file, counted from 1.
        form: usize,
        /// Line where the form starts, counted from 1.
        line: usize,
    },
    /// A required top-level key is absent.
    #[error("missing `{0}` entry")]
    MissingKey(&'static str),
    /// A top-level value of the wrong kind.
    #[error("`{key}` entry must be {expected}, but it is {found}")]
    WrongType {
        /// The entry's key, e.g. `name`.
        key: String,
        /// What kind of value the key takes.
        expected: &'static str,
        /// The value found, described with its kind, e.g. `an integer (5)`.
        found: String,
    },
    /// A top-level text value given as a binary that is not UTF-8.
    #[error("`{key}` entry is a binary that is not valid UTF-8")]
    InvalidUtf8 {
        /// The entry's key, e.g. `name`.
        key: String,
    },
    /// `requirements` is in neither known layout.
    #[error(
        "`requirements` entry is in neither the mix layout (a list of property lists, each with a \
         `name`) nor the rebar3 layout (a list of {{Name, Properties}} pairs): {detail}"
    )]
    RequirementsLayout {
        /// Which element breaks which layout, and how.
        detail: String,
    },
    /// Mix layout: an element (1-based) without a `name`.
    #[error("`requirements` element {element} has no `name` entry")]
    RequirementWithoutName {
        /// The element's position in `requirements`, counted from 1.
        element: usize,
    },
    /// The name of a dependency is not usable text.
    #[error("`requirements` element {element}: the dependency name {problem}")]
    BadDependencyName {
        /// The element's position in `requirements`, counted from 1.
        element: usize,
        /// What is wrong with the name: not text, or a binary that is not UTF-8.
        problem: String,
    },
    /// A dependency without a version requirement.
    #[error(
        "`requirements` entry for dependency `{}` has no `requirement`",
        one_line(.dependency)
    )]
    MissingRequirement {
        /// The dependency's package name.
        dependency: String,
    },
    /// A dependency property of the wrong kind.
    #[error(
        "`requirements` entry for dependency `{}`: `{key}` must be {expected}, but it is {found}",
        one_line(.dependency)
    )]
    DependencyWrongType {
        /// The dependency's package name.
        dependency: String,
        /// The property's key: `requirement`, `app` or `repository`.
        key: &'static str,
        /// What kind of value the key takes.
        expected: &'static str,
        /// The value found, described with its kind, or that it is a binary that is not UTF-8.
        found: String,
    },
}

type Result<T> = std::result::Result<T, MetadataError>;

const TEXT: &str = "text (a binary such as <<\"...\">> or a string)";

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Parse the whole file: a sequence of `Term .` forms. Bytes are decoded as
/// UTF-8; if the file is not valid UTF-8 anywhere, the whole file is read as
/// Latin-1 (each byte one char), as hex_core does.
pub fn parse_terms(bytes: &[u8]) -> Result<Vec<Term>> {
    Ok(parse_forms(bytes)?.into_iter().map(|f| f.term).collect())
}

/// [`parse_terms`], then: every form must be a 2-tuple `{Key, Value}`, a later
/// duplicate key wins, and `name`, `version`, `app` and `requirements` are
/// extracted and normalised. Keys are matched only when they are binaries
/// (`<<"name">>`); other keys and unknown keys are ignored.
///
/// `requirements` may be absent (no dependencies), as in
/// `mix hex.registry build`, which reads it with a default of `[]`.
pub fn parse(bytes: &[u8]) -> Result<Metadata> {
    let forms = parse_forms(bytes)?;
    if forms.is_empty() {
        return Err(MetadataError::Empty);
    }
    let mut entries: BTreeMap<&[u8], &Term> = BTreeMap::new();
    for (index, form) in forms.iter().enumerate() {
        match &form.term {
            Term::Tuple(items) if items.len() == 2 => {
                if let [Term::Binary(key), value] = items.as_slice() {
                    entries.insert(key.as_slice(), value);
                }
            }
            _ => {
                return Err(MetadataError::NotKeyValue {
                    form: index + 1,
                    line: form.line,
                });
            }
        }
    }
    let required_text = |key: &'static str| -> Result<String> {
        let value = entries
            .get(key.as_bytes())
            .ok_or(MetadataError::MissingKey(key))?;
        top_level_text(key, value)
    };
    let name = required_text("name")?;
    let version = required_text("version")?;
    let app = required_text("app")?;
    let requirements = match entries.get(b"requirements".as_slice()) {
        Some(value) => normalise_requirements(value)?,
        None => Vec::new(),
    };
    Ok(Metadata {
        name,
        version,
        app,
        requirements,
    })
}

/// Writes `meta` as a `metadata.config` text that [`parse`] reads.
///
/// The text is five `{Key, Value}.` forms, one per line, keys in byte order: `app`,
/// `build_tools`, `name`, `requirements` and `version`. `build_tools` is always
/// `[<<"rebar3">>]` (it is not part of [`Metadata`]). Each text is a binary, `<<"...">>`, or
/// `<<"..."/utf8>>` when it is not ASCII, with `\` written as `\134`, `"` as `\"` and every
/// other character as it is. `requirements` is in mix's layout (a list of property lists), in
/// the order of `meta.requirements`, each with the keys `app` (only when it is `Some`), `name`,
/// `optional` (the atom `true` or `false`), `repository` (only when it is `Some`) and
/// `requirement`.
///
/// It is not byte for byte what hex_core's `encode_metadata/1` writes: that pretty-prints,
/// breaking long forms over several lines. [`parse`] gives `meta` back only when
/// `meta.requirements` is sorted by name bytewise with no name twice, as [`parse`] returns it;
/// otherwise it sorts them, and of two with the same name the later wins.
pub fn render(meta: &Metadata) -> String {
    fn bin(text: &str) -> String {
        // Backslash as `\134`, not `\\` (see `write_escaped_char`).
        let escaped = text.replace('\\', "\\134").replace('"', "\\\"");
        if text.is_ascii() {
            format!("<<\"{escaped}\">>")
        } else {
            format!("<<\"{escaped}\"/utf8>>")
        }
    }
    let requirements: Vec<String> = meta
        .requirements
        .iter()
        .map(|r| {
            let mut pairs = Vec::new();
            if let Some(app) = &r.app {
                pairs.push(format!("{{<<\"app\">>,{}}}", bin(app)));
            }
            pairs.push(format!("{{<<\"name\">>,{}}}", bin(&r.name)));
            pairs.push(format!("{{<<\"optional\">>,{}}}", r.optional));
            if let Some(repo) = &r.repository {
                pairs.push(format!("{{<<\"repository\">>,{}}}", bin(repo)));
            }
            pairs.push(format!("{{<<\"requirement\">>,{}}}", bin(&r.requirement)));
            format!("[{}]", pairs.join(","))
        })
        .collect();
    format!(
        "{{<<\"app\">>,{}}}.\n{{<<\"build_tools\">>,[<<\"rebar3\">>]}}.\n{{<<\"name\">>,{}}}.\n{{<<\"requirements\">>,[{}]}}.\n{{<<\"version\">>,{}}}.\n",
        bin(&meta.app),
        bin(&meta.name),
        requirements.join(","),
        bin(&meta.version)
    )
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

enum TextError {
    NotText,
    InvalidUtf8,
}

/// A binary (UTF-8) or an Erlang string (a list of character codes).
fn term_text(term: &Term) -> std::result::Result<String, TextError> {
    match term {
        Term::Binary(bytes) => String::from_utf8(bytes.clone()).map_err(|_| TextError::InvalidUtf8),
        Term::String(codes) => codes
            .iter()
            .map(|&c| char::from_u32(c))
            .collect::<Option<String>>()
            .ok_or(TextError::NotText),
        // `"ab"` and `[97, 98]` are the same term in Erlang.
        Term::List(items) => items
            .iter()
            .map(|item| match item {
                Term::Integer(i) => u32::try_from(*i).ok().and_then(char::from_u32),
                _ => None,
            })
            .collect::<Option<String>>()
            .ok_or(TextError::NotText),
        _ => Err(TextError::NotText),
    }
}

fn top_level_text(key: &'static str, value: &Term) -> Result<String> {
    term_text(value).map_err(|e| match e {
        TextError::NotText => MetadataError::WrongType {
            key: key.to_string(),
            expected: TEXT,
            found: describe(value),
        },
        TextError::InvalidUtf8 => MetadataError::InvalidUtf8 {
            key: key.to_string(),
        },
    })
}

/// The `{Key, Value}` pairs of a property list (`[{K, V}, ...]`, `[]` or `""`).
fn kvlist(term: &Term) -> Option<Vec<(&Term, &Term)>> {
    match term {
        Term::List(items) => items
            .iter()
            .map(|item| match item {
                Term::Tuple(pair) => match pair.as_slice() {
                    [k, v] => Some((k, v)),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        Term::String(codes) if codes.is_empty() => Some(Vec::new()),
        _ => None,
    }
}

/// A property list or a map.
fn properties(term: &Term) -> Option<Vec<(&Term, &Term)>> {
    match term {
        Term::Map(pairs) => Some(pairs.iter().map(|(k, v)| (k, v)).collect()),
        _ => kvlist(term),
    }
}

/// The value of the binary key `key`; the last one wins.
fn lookup<'a>(props: &[(&'a Term, &'a Term)], key: &str) -> Option<&'a Term> {
    props.iter().rev().find_map(|(k, v)| match k {
        Term::Binary(b) if b.as_slice() == key.as_bytes() => Some(*v),
        _ => None,
    })
}

fn is_list_like(term: &Term) -> bool {
    matches!(term, Term::List(_) | Term::String(_))
}

fn is_pair(term: &Term) -> bool {
    matches!(term, Term::Tuple(items) if items.len() == 2)
}

fn normalise_requirements(value: &Term) -> Result<Vec<Requirement>> {
    let layout_error = |detail: String| MetadataError::RequirementsLayout { detail };
    let mut deps: BTreeMap<String, Requirement> = BTreeMap::new();
    match value {
        Term::List(items) if items.is_empty() => {}
        Term::String(codes) if codes.is_empty() => {}
        Term::List(items) => {
            let first = items.first().map(is_list_like).unwrap_or(false);
            if first {
                // mix layout: [[{<<"name">>, Name}, {<<"app">>, App}, ...], ...]
                for (i, item) in items.iter().enumerate() {
                    let element = i + 1;
                    let props = match item {
                        Term::List(_) | Term::String(_) => kvlist(item),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        layout_error(format!(
                            "element {element} is {}, but element 1 is a list (mix layout), so \
                             every element must be a list of {{Key, Value}} pairs",
                            describe(item)
                        ))
                    })?;
                    let name_term = lookup(&props, "name")
                        .ok_or(MetadataError::RequirementWithoutName { element })?;
                    let name = dependency_name(element, name_term)?;
                    let dep = requirement(name, &props)?;
                    deps.insert(dep.name.clone(), dep);
                }
            } else if items.first().map(is_pair).unwrap_or(false) {
                // rebar3 / Gleam layout: [{Name, [{<<"app">>, App}, ...]}, ...]
                for (i, item) in items.iter().enumerate() {
                    let element = i + 1;
                    let (name_term, props_term) = match item {
                        Term::Tuple(pair) => match pair.as_slice() {
                            [n, p] => Some((n, p)),
                            _ => None,
                        },
                        _ => None,
                    }
                    .ok_or_else(|| {
                        layout_error(format!(
                            "element {element} is {}, but element 1 is a {{Name, Properties}} \
                             pair (rebar3 layout), so every element must be one",
                            describe(item)
                        ))
                    })?;
                    let name = dependency_name(element, name_term)?;
                    let dep = dependency_from_properties(element, name, props_term)?;
                    deps.insert(dep.name.clone(), dep);
                }
            } else {
                let first = items.first().map(describe).unwrap_or_default();
                return Err(layout_error(format!(
                    "element 1 is {first}, expected a list (mix layout) or a {{Name, Properties}} \
                     pair (rebar3 layout)"
                )));
            }
        }
        Term::Map(pairs) => {
            // #{Name => Properties}: what hex_core's normalisation produces.
            for (i, (name_term, props_term)) in pairs.iter().enumerate() {
                let element = i + 1;
                let name = dependency_name(element, name_term)?;
                let dep = dependency_from_properties(element, name, props_term)?;
                deps.insert(dep.name.clone(), dep);
            }
        }
        other => {
            return Err(layout_error(format!(
                "it is {}, not a list",
                describe(other)
            )));
        }
    }
    Ok(deps.into_values().collect())
}

fn dependency_name(element: usize, term: &Term) -> Result<String> {
    term_text(term).map_err(|e| MetadataError::BadDependencyName {
        element,
        problem: match e {
            TextError::NotText => format!("must be {TEXT}, but it is {}", describe(term)),
            TextError::InvalidUtf8 => "is a binary that is not valid UTF-8".to_string(),
        },
    })
}

fn dependency_from_properties(element: usize, name: String, props: &Term) -> Result<Requirement> {
    let props = properties(props).ok_or_else(|| MetadataError::RequirementsLayout {
        detail: format!(
            "element {element} (dependency `{}`) has properties that are {}, expected a list \
             of {{Key, Value}} pairs",
            one_line(&name),
            describe(props)
        ),
    })?;
    requirement(name, &props)
}

fn requirement(name: String, props: &[(&Term, &Term)]) -> Result<Requirement> {
    let text = |key: &'static str, value: &Term| -> Result<String> {
        term_text(value).map_err(|e| MetadataError::DependencyWrongType {
            dependency: name.clone(),
            key,
            expected: TEXT,
            found: match e {
                TextError::NotText => describe(value),
                TextError::InvalidUtf8 => "a binary that is not valid UTF-8".to_string(),
            },
        })
    };
    let optional_text = |key: &'static str| -> Result<Option<String>> {
        match lookup(props, key) {
            None => Ok(None),
            Some(Term::Atom(a)) if a == "undefined" => Ok(None),
            Some(value) => text(key, value).map(Some),
        }
    };
    let requirement = match lookup(props, "requirement") {
        Some(value) => text("requirement", value)?,
        None => {
            return Err(MetadataError::MissingRequirement {
                dependency: name.clone(),
            });
        }
    };
    let app = optional_text("app")?;
    let repository = optional_text("repository")?;
    let optional = matches!(lookup(props, "optional"), Some(Term::Atom(a)) if a == "true");
    Ok(Requirement {
        name,
        app,
        requirement,
        optional,
        repository,
    })
}

/// `an integer (5)`, `a list ([1,2])`, … for error messages.
fn describe(term: &Term) -> String {
    let kind = match term {
        Term::Atom(_) => "an atom",
        Term::Integer(_) => "an integer",
        Term::Binary(_) => "a binary",
        Term::String(_) => "a string",
        Term::List(_) => "a list",
        Term::Tuple(_) => "a tuple",
        Term::Map(_) => "a map",
    };
    let mut text = term.to_string();
    const MAX: usize = 60;
    if text.chars().count() > MAX {
        text = text.chars().take(MAX).collect::<String>() + "…";
    }
    format!("{kind} ({text})")
}

// ---------------------------------------------------------------------------
// Display: Erlang syntax
// ---------------------------------------------------------------------------

fn is_bare_atom(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
}

fn write_escaped_char(f: &mut fmt::Formatter<'_>, c: char, quote: char) -> fmt::Result {
    match c {
        // Not `\\`: hex_core's lexer takes the longest match, so `"a\\"` followed later by
        // another `"` would run on to it. The octal escape has no such reading.
        '\\' => f.write_str("\\134"),
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if c == quote => write!(f, "\\{c}"),
        c if u32::from(c) < 32 || c == '\u{7f}' => write!(f, "\\{:03o}", u32::from(c)),
        c => write!(f, "{c}"),
    }
}

fn write_list<T>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    mut each: impl FnMut(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        each(f, item)?;
    }
    Ok(())
}

impl fmt::Display for Term {
    /// Erlang syntax, readable back by [`parse_terms`] (strings and binaries are
    /// written so that they reparse to the same value).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Atom(a) if is_bare_atom(a) => f.write_str(a),
            Term::Atom(a) => {
                f.write_str("'")?;
                for c in a.chars() {
                    write_escaped_char(f, c, '\'')?;
                }
                f.write_str("'")
            }
            Term::Integer(i) => write!(f, "{i}"),
            Term::Binary(bytes) => match std::str::from_utf8(bytes) {
                Ok(s)
                    if !s
                        .chars()
                        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
                {
                    f.write_str("<<\"")?;
                    for c in s.chars() {
                        write_escaped_char(f, c, '"')?;
                    }
                    if s.is_ascii() {
                        f.write_str("\">>")
                    } else {
                        f.write_str("\"/utf8>>")
                    }
                }
                _ => {
                    f.write_str("<<")?;
                    write_list(f, bytes, |f, b| write!(f, "{b}"))?;
                    f.write_str(">>")
                }
            },
            Term::String(codes) => match codes
                .iter()
                .map(|&c| char::from_u32(c))
                .collect::<Option<Vec<char>>>()
            {
                Some(chars) => {
                    f.write_str("\"")?;
                    for c in chars {
                        write_escaped_char(f, c, '"')?;
                    }
                    f.write_str("\"")
                }
                None => {
                    f.write_str("[")?;
                    write_list(f, codes, |f, c| write!(f, "{c}"))?;
                    f.write_str("]")
                }
            },
            Term::List(items) => {
                f.write_str("[")?;
                write_list(f, items, |f, t| write!(f, "{t}"))?;
                f.write_str("]")
            }
            Term::Tuple(items) => {
                f.write_str("{")?;
                write_list(f, items, |f, t| write!(f, "{t}"))?;
                f.write_str("}")
            }
            Term::Map(pairs) => {
                f.write_str("#{")?;
                write_list(f, pairs, |f, (k, v)| write!(f, "{k} => {v}"))?;
                f.write_str("}")
            }
        }
    }
}
