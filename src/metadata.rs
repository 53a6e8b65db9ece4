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

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use crate::tarball::one_line;

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
    pub name: String,
    pub version: String,
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
        line: usize,
        column: usize,
        message: String,
    },
    /// An integer that does not fit in 128 bits.
    #[error("integer too large at line {line}, column {column} (at most 128 bits are supported)")]
    IntegerTooLarge { line: usize, column: usize },
    /// Lists, tuples, maps or binaries nested deeper than [`MAX_DEPTH`].
    #[error(
        "terms nested too deeply at line {line}, column {column} (more than {max} levels)",
        max = MAX_DEPTH
    )]
    TooDeep { line: usize, column: usize },
    /// The file holds no form at all.
    #[error("it holds no `{{Key, Value}}.` form at all (the file is empty or blank)")]
    Empty,
    /// A form (1-based) that is not a 2-tuple.
    #[error("form {form} is not a {{Key, Value}} pair (it starts at line {line})")]
    NotKeyValue { form: usize, line: usize },
    /// A required top-level key is absent.
    #[error("missing `{0}` entry")]
    MissingKey(&'static str),
    /// A top-level value of the wrong kind.
    #[error("`{key}` entry must be {expected}, but it is {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    /// A top-level text value given as a binary that is not UTF-8.
    #[error("`{key}` entry is a binary that is not valid UTF-8")]
    InvalidUtf8 { key: String },
    /// `requirements` is in neither known layout.
    #[error(
        "`requirements` entry is in neither the mix layout (a list of property lists, each with a \
         `name`) nor the rebar3 layout (a list of {{Name, Properties}} pairs): {detail}"
    )]
    RequirementsLayout { detail: String },
    /// Mix layout: an element (1-based) without a `name`.
    #[error("`requirements` element {element} has no `name` entry")]
    RequirementWithoutName { element: usize },
    /// The name of a dependency is not usable text.
    #[error("`requirements` element {element}: the dependency name {problem}")]
    BadDependencyName { element: usize, problem: String },
    /// A dependency without a version requirement.
    #[error(
        "`requirements` entry for dependency `{}` has no `requirement`",
        one_line(.dependency)
    )]
    MissingRequirement { dependency: String },
    /// A dependency property of the wrong kind.
    #[error(
        "`requirements` entry for dependency `{}`: `{key}` must be {expected}, but it is {found}",
        one_line(.dependency)
    )]
    DependencyWrongType {
        dependency: String,
        key: &'static str,
        expected: &'static str,
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

/// "an integer (5)", "a list ([1,2])", … for error messages.
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

// ---------------------------------------------------------------------------
// Lexer (safe_erl_term.xrl)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Punct {
    Hash,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Plus,
    Minus,
    LtLt,
    GtGt,
    FatArrow,
    Slash,
}

impl Punct {
    fn text(self) -> &'static str {
        match self {
            Punct::Hash => "#",
            Punct::LBracket => "[",
            Punct::RBracket => "]",
            Punct::LBrace => "{",
            Punct::RBrace => "}",
            Punct::Comma => ",",
            Punct::Plus => "+",
            Punct::Minus => "-",
            Punct::LtLt => "<<",
            Punct::GtGt => ">>",
            Punct::FatArrow => "=>",
            Punct::Slash => "/",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Atom(String),
    /// Where the string's codes lie in the lexer's code buffer.
    Str(Range<usize>),
    /// The decimal digits, unconverted.
    Int(String),
    Punct(Punct),
    Dot,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn syntax(line: usize, column: usize, message: impl Into<String>) -> MetadataError {
    MetadataError::Syntax {
        line,
        column,
        message: message.into(),
    }
}

/// What the lexer makes of a file: its tokens, the codes their strings index, and the line and
/// column just past its end.
struct Lexed {
    tokens: Vec<Token>,
    codes: Vec<u32>,
    eof: (usize, usize),
}

struct Lexer {
    chars: Vec<char>,
    /// The codes of every string and quoted atom, one after the other: a `Tok::Str` is a range
    /// of it, so a string costs no allocation of its own.
    codes: Vec<u32>,
    pos: usize,
    line: usize,
    column: usize,
}

fn is_atom_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '@'
}

fn is_whitespace(c: char) -> bool {
    u32::from(c) <= 32
}

impl Lexer {
    fn new(bytes: &[u8]) -> Lexer {
        let chars: Vec<char> = match std::str::from_utf8(bytes) {
            Ok(s) => s.chars().collect(),
            Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
        };
        Lexer {
            codes: Vec::with_capacity(chars.len()),
            chars,
            pos: 0,
            line: 1,
            column: 1,
        }
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) {
        if let Some(&c) = self.chars.get(self.pos) {
            self.pos += 1;
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
    }

    /// Moves to `pos` (not past the end), counting lines and columns.
    fn bump_to(&mut self, pos: usize) {
        let pos = pos.min(self.chars.len());
        for &c in &self.chars[self.pos.min(pos)..pos] {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.pos = self.pos.max(pos);
    }

    /// All tokens, the codes of their strings, and the position just past the end of the input.
    fn tokens(mut self) -> Result<Lexed> {
        // About one token per four chars in typical metadata: one allocation, not a dozen.
        let mut out = Vec::with_capacity(self.chars.len() / 4);
        while let Some(c) = self.peek_at(0) {
            if is_whitespace(c) {
                self.bump();
                continue;
            }
            let (line, column) = (self.line, self.column);
            let tok = match c {
                'a'..='z' => {
                    let start = self.pos;
                    while self.peek_at(0).is_some_and(is_atom_char) {
                        self.bump();
                    }
                    Tok::Atom(self.chars[start..self.pos].iter().collect())
                }
                '0'..='9' => {
                    let start = self.pos;
                    while self.peek_at(0).is_some_and(|c| c.is_ascii_digit()) {
                        self.bump();
                    }
                    Tok::Int(self.chars[start..self.pos].iter().collect())
                }
                '"' => Tok::Str(self.quoted('"')?),
                '\'' => {
                    let codes = self.quoted('\'')?;
                    // Escapes only produce valid code points (at most 0o777).
                    let text: Option<String> = self.codes[codes.clone()]
                        .iter()
                        .map(|&c| char::from_u32(c))
                        .collect();
                    self.codes.truncate(codes.start);
                    Tok::Atom(text.ok_or_else(|| syntax(line, column, "invalid quoted atom"))?)
                }
                '.' => {
                    self.bump();
                    Tok::Dot
                }
                '<' | '>' | '=' => {
                    let next = self.peek_at(1);
                    let punct = match (c, next) {
                        ('<', Some('<')) => Punct::LtLt,
                        ('>', Some('>')) => Punct::GtGt,
                        ('=', Some('>')) => Punct::FatArrow,
                        _ => return Err(syntax(line, column, unexpected_char_message(c))),
                    };
                    self.bump();
                    self.bump();
                    Tok::Punct(punct)
                }
                _ => {
                    let punct = match c {
                        '#' => Punct::Hash,
                        '[' => Punct::LBracket,
                        ']' => Punct::RBracket,
                        '{' => Punct::LBrace,
                        '}' => Punct::RBrace,
                        ',' => Punct::Comma,
                        '+' => Punct::Plus,
                        '-' => Punct::Minus,
                        '/' => Punct::Slash,
                        _ => return Err(syntax(line, column, unexpected_char_message(c))),
                    };
                    self.bump();
                    Tok::Punct(punct)
                }
            };
            out.push(Token { tok, line, column });
        }
        Ok(Lexed {
            tokens: out,
            codes: self.codes,
            eof: (self.line, self.column),
        })
    }

    /// A `"..."` string or `'...'` atom starting at the current position.
    ///
    /// The extent is the longest match of leex's `Q(\\\^.|\\.|[^Q])*Q` (where
    /// `.` is any char but newline), found by running the NFA; the interior is
    /// then unescaped left to right as `safe_erl_term:escape/1` does.
    /// Its codes are appended to [`Lexer::codes`]; returns where they lie there.
    fn quoted(&mut self, quote: char) -> Result<Range<usize>> {
        const LOOP: u8 = 1; // inside the literal; a quote may end it
        const ESC: u8 = 2; // after a backslash
        const CTRL: u8 = 4; // after a backslash and a caret
        let (line, column) = (self.line, self.column);
        let start = self.pos + 1;
        // Most literals hold no backslash: they end at the first quote, and each char is its
        // own code.
        let plain_end = self
            .chars
            .get(start..)
            .and_then(|rest| rest.iter().position(|&c| c == quote || c == '\\'))
            .map(|offset| start + offset)
            .filter(|&at| self.chars.get(at) == Some(&quote));
        if let Some(end) = plain_end {
            let at = self.codes.len();
            let plain = self.chars[start..end].iter().map(|&c| u32::from(c));
            self.codes.extend(plain);
            self.bump_to(end + 1);
            return Ok(at..self.codes.len());
        }
        let mut states = LOOP;
        let mut end = None;
        let mut i = start;
        while states != 0 {
            let Some(&c) = self.chars.get(i) else { break };
            let mut next = 0;
            if states & LOOP != 0 {
                if c == quote {
                    end = Some(i);
                } else if c == '\\' {
                    next |= LOOP | ESC;
                } else {
                    next |= LOOP;
                }
            }
            if states & ESC != 0 && c != '\n' {
                next |= LOOP;
                if c == '^' {
                    next |= CTRL;
                }
            }
            if states & CTRL != 0 && c != '\n' {
                next |= LOOP;
            }
            states = next;
            i += 1;
        }
        let what = if quote == '"' {
            "string"
        } else {
            "quoted atom"
        };
        let Some(end) = end else {
            return Err(syntax(
                line,
                column,
                format!("unterminated {what} (no closing `{quote}`)"),
            ));
        };
        let codes = unescape(&self.chars[start..end]).ok_or_else(|| {
            syntax(
                line,
                column,
                format!("{what} ends with a lone backslash before its closing `{quote}`"),
            )
        })?;
        self.bump_to(end + 1);
        let at = self.codes.len();
        self.codes.extend_from_slice(&codes);
        Ok(at..self.codes.len())
    }
}

fn unexpected_char_message(c: char) -> String {
    let hint = match c {
        '%' => " (comments are not allowed in metadata.config)",
        '$' => " (character literals are not allowed)",
        'A'..='Z' | '_' => {
            " (variables are not allowed; quote atoms that start with an uppercase letter)"
        }
        _ => "",
    };
    if c.is_ascii_graphic() {
        format!("unexpected character `{c}`{hint}")
    } else {
        format!("unexpected character U+{:04X}{hint}", u32::from(c))
    }
}

/// `safe_erl_term:escape/1`. `None` when the text ends with a lone backslash.
fn unescape(chars: &[char]) -> Option<Vec<u32>> {
    let is_octal = |c: Option<&char>| matches!(c, Some('0'..='7'));
    let digit = |c: char| u32::from(c) - u32::from('0');
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c != '\\' {
            out.push(u32::from(c));
            i += 1;
            continue;
        }
        let rest = chars.get(i + 1..).unwrap_or(&[]);
        match rest {
            [] => return None,
            [a, b, c, ..] if is_octal(Some(a)) && is_octal(Some(b)) && is_octal(Some(c)) => {
                out.push((digit(*a) * 8 + digit(*b)) * 8 + digit(*c));
                i += 4;
            }
            ['^', x, ..] => {
                out.push(u32::from(*x) & 31);
                i += 3;
            }
            [x, ..] if is_whitespace(*x) => {
                i += 2;
            }
            [x, ..] => {
                out.push(match x {
                    'n' => 10,
                    'r' => 13,
                    't' => 9,
                    'v' => 11,
                    'b' => 8,
                    'f' => 12,
                    'e' => 27,
                    's' => 32,
                    'd' => 127,
                    other => u32::from(*other),
                });
                i += 2;
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Parser (the erl_parse:parse_term subset reachable with those tokens)
// ---------------------------------------------------------------------------

struct Form {
    term: Term,
    line: usize,
}

fn parse_forms(bytes: &[u8]) -> Result<Vec<Form>> {
    let Lexed { tokens, codes, eof } = Lexer::new(bytes).tokens()?;
    let mut parser = Parser {
        tokens,
        codes,
        pos: 0,
        eof,
    };
    let mut forms = Vec::new();
    while let Some(first) = parser.tokens.get(parser.pos) {
        let line = first.line;
        let term = parser.term(0)?;
        parser.expect_dot()?;
        forms.push(Form { term, line });
    }
    Ok(forms)
}

struct Parser {
    tokens: Vec<Token>,
    /// [`Lexer::codes`]: what `Tok::Str` ranges index.
    codes: Vec<u32>,
    pos: usize,
    /// Line and column just past the end of the input.
    eof: (usize, usize),
}

fn describe_token(tok: Option<&Token>) -> String {
    match tok.map(|t| &t.tok) {
        None => "the end of the file".to_string(),
        Some(Tok::Atom(a)) => format!(
            "the atom `{}`",
            one_line(&Term::Atom(a.clone()).to_string())
        ),
        Some(Tok::Str(_)) => "a string".to_string(),
        Some(Tok::Int(digits)) => format!("the integer {}", one_line(digits)),
        Some(Tok::Punct(p)) => format!("`{}`", p.text()),
        Some(Tok::Dot) => "`.`".to_string(),
    }
}

enum Segment {
    Int {
        negative: bool,
        digits: String,
        line: usize,
        column: usize,
    },
    /// A range of [`Parser::codes`].
    Str(Range<usize>),
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_punct(&self, p: Punct) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Punct(q), .. }) if *q == p)
    }

    /// Takes the current token out of the list (no copy of its text) and moves past it. A
    /// caller that does not want it gives it back with [`Parser::unread`].
    fn next(&mut self) -> Option<Token> {
        let slot = self.tokens.get_mut(self.pos)?;
        // Text is moved out; what is left in its place is never described, since only a
        // punctuation token is ever stepped back onto without being put back.
        let tok = match &mut slot.tok {
            Tok::Atom(text) => Tok::Atom(std::mem::take(text)),
            Tok::Int(text) => Tok::Int(std::mem::take(text)),
            other => other.clone(),
        };
        self.pos += 1;
        Some(Token {
            tok,
            line: slot.line,
            column: slot.column,
        })
    }

    /// After [`Parser::next`] gave `taken`, puts it back for an error to describe; with
    /// nothing taken (the file ended), the error describes the end of the file.
    fn back(&mut self, taken: Option<Token>) {
        if let Some(token) = taken {
            self.unread(token);
        }
    }

    /// Puts back the token [`Parser::next`] just took, so that an error can describe it.
    fn unread(&mut self, token: Token) {
        self.pos = self.pos.saturating_sub(1);
        if let Some(slot) = self.tokens.get_mut(self.pos) {
            *slot = token;
        }
    }

    /// Line and column of the current token, or of the end of the input.
    fn here(&self) -> (usize, usize) {
        match self.peek() {
            Some(t) => (t.line, t.column),
            None => self.eof,
        }
    }

    fn error_expected(&self, expected: &str) -> MetadataError {
        let (line, column) = self.here();
        syntax(
            line,
            column,
            format!(
                "expected {expected} but found {}",
                describe_token(self.peek())
            ),
        )
    }

    fn expect_dot(&mut self) -> Result<()> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Dot) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error_expected("`.` (end of the form)")),
        }
    }

    fn expect_punct(&mut self, p: Punct, expected: &str) -> Result<()> {
        if self.peek_punct(p) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error_expected(expected))
        }
    }

    /// Adjacent string literals concatenate, as in Erlang: the range of [`Parser::codes`]
    /// holding `first` and the strings right after it.
    fn strings(&mut self, first: Range<usize>) -> Range<usize> {
        let mut range = first;
        while let Some(Token {
            tok: Tok::Str(more),
            ..
        }) = self.peek()
        {
            let more = more.clone();
            if more.start == range.end {
                // Adjacent literals were lexed one after the other: their codes already are.
                range.end = more.end;
            } else {
                let at = self.codes.len();
                self.codes.extend_from_within(range);
                self.codes.extend_from_within(more);
                range = at..self.codes.len();
            }
            self.pos += 1;
        }
        range
    }

    fn term(&mut self, depth: usize) -> Result<Term> {
        let Some(token) = self.next() else {
            return Err(self.error_expected("a term"));
        };
        let (line, column) = (token.line, token.column);
        let nested = |depth: usize| -> Result<usize> {
            if depth >= MAX_DEPTH {
                Err(MetadataError::TooDeep { line, column })
            } else {
                Ok(depth + 1)
            }
        };
        match token.tok {
            Tok::Atom(a) => Ok(Term::Atom(a)),
            Tok::Int(digits) => Ok(Term::Integer(integer(false, &digits, line, column)?)),
            Tok::Str(codes) => {
                let range = self.strings(codes);
                Ok(Term::String(self.codes[range].to_vec()))
            }
            Tok::Punct(sign @ (Punct::Minus | Punct::Plus)) => match self.next() {
                Some(Token {
                    tok: Tok::Int(digits),
                    line,
                    column,
                }) => Ok(Term::Integer(integer(
                    sign == Punct::Minus,
                    &digits,
                    line,
                    column,
                )?)),
                other => {
                    self.back(other);
                    Err(self.error_expected(&format!("an integer after `{}`", sign.text())))
                }
            },
            Tok::Punct(Punct::LBracket) => {
                let depth = nested(depth)?;
                let items = self.sequence(depth, Punct::RBracket, "`,` or `]`")?;
                Ok(Term::List(items))
            }
            Tok::Punct(Punct::LBrace) => {
                let depth = nested(depth)?;
                let items = self.sequence(depth, Punct::RBrace, "`,` or `}`")?;
                Ok(Term::Tuple(items))
            }
            Tok::Punct(Punct::Hash) => {
                let depth = nested(depth)?;
                self.expect_punct(Punct::LBrace, "`{` after `#`")?;
                self.map(depth)
            }
            Tok::Punct(Punct::LtLt) => {
                nested(depth)?;
                self.binary()
            }
            tok => {
                self.unread(Token { tok, line, column });
                Err(self.error_expected("a term"))
            }
        }
    }

    /// Elements up to `close`, separated by commas (the opener is consumed).
    fn sequence(&mut self, depth: usize, close: Punct, expected: &str) -> Result<Vec<Term>> {
        let mut items = Vec::new();
        if self.peek_punct(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.term(depth)?);
            if self.peek_punct(Punct::Comma) {
                self.pos += 1;
            } else if self.peek_punct(close) {
                self.pos += 1;
                return Ok(items);
            } else {
                return Err(self.error_expected(expected));
            }
        }
    }

    fn map(&mut self, depth: usize) -> Result<Term> {
        let mut pairs = Vec::new();
        if self.peek_punct(Punct::RBrace) {
            self.pos += 1;
            return Ok(Term::Map(pairs));
        }
        loop {
            let key = self.term(depth)?;
            self.expect_punct(Punct::FatArrow, "`=>`")?;
            let value = self.term(depth)?;
            pairs.push((key, value));
            if self.peek_punct(Punct::Comma) {
                self.pos += 1;
            } else if self.peek_punct(Punct::RBrace) {
                self.pos += 1;
                return Ok(Term::Map(pairs));
            } else {
                return Err(self.error_expected("`,` or `}`"));
            }
        }
    }

    fn binary(&mut self) -> Result<Term> {
        let mut bytes = Vec::new();
        if self.peek_punct(Punct::GtGt) {
            self.pos += 1;
            return Ok(Term::Binary(bytes));
        }
        loop {
            self.segment(&mut bytes)?;
            if self.peek_punct(Punct::Comma) {
                self.pos += 1;
            } else if self.peek_punct(Punct::GtGt) {
                self.pos += 1;
                return Ok(Term::Binary(bytes));
            } else {
                return Err(self.error_expected("`,` or `>>`"));
            }
        }
    }

    fn segment(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let (line, column) = self.here();
        let token = self.next();
        let segment = match token.map(|t| (t.tok, t.line, t.column)) {
            Some((Tok::Int(digits), line, column)) => Segment::Int {
                negative: false,
                digits,
                line,
                column,
            },
            Some((Tok::Punct(sign @ (Punct::Minus | Punct::Plus)), _, _)) => match self.next() {
                Some(Token {
                    tok: Tok::Int(digits),
                    line,
                    column,
                }) => Segment::Int {
                    negative: sign == Punct::Minus,
                    digits,
                    line,
                    column,
                },
                other => {
                    self.back(other);
                    return Err(self.error_expected(&format!("an integer after `{}`", sign.text())));
                }
            },
            Some((Tok::Str(codes), _, _)) => Segment::Str(self.strings(codes)),
            other => {
                self.back(other.map(|(tok, line, column)| Token { tok, line, column }));
                return Err(self.error_expected("an integer or a string in a binary"));
            }
        };
        let utf8 = if self.peek_punct(Punct::Slash) {
            self.pos += 1;
            self.segment_types()?
        } else {
            false
        };
        match segment {
            Segment::Int {
                negative,
                digits,
                line,
                column,
            } => {
                if utf8 {
                    let code = if negative {
                        None
                    } else {
                        digits.parse::<u32>().ok().and_then(char::from_u32)
                    };
                    let c = code.ok_or_else(|| {
                        syntax(
                            line,
                            column,
                            format!(
                                "{}{} is not a Unicode code point, so it cannot be a /utf8 \
                                 segment",
                                if negative { "-" } else { "" },
                                one_line(&digits)
                            ),
                        )
                    })?;
                    push_utf8(out, c);
                } else {
                    let low = digits.bytes().fold(0u32, |acc, d| {
                        (acc * 10 + u32::from(d.wrapping_sub(b'0'))) % 256
                    });
                    let low = if negative { (256 - low) % 256 } else { low };
                    out.push(u8::try_from(low).unwrap_or(0));
                }
            }
            Segment::Str(codes) => {
                let codes = &self.codes[codes];
                out.reserve(codes.len());
                for &code in codes {
                    if utf8 {
                        let c = char::from_u32(code).ok_or_else(|| {
                            syntax(
                                line,
                                column,
                                format!("character code {code} is not a Unicode code point"),
                            )
                        })?;
                        push_utf8(out, c);
                    } else {
                        out.push(code.to_le_bytes()[0]);
                    }
                }
            }
        }
        Ok(())
    }

    /// The type list after `/`: `utf8`, optionally with an endianness (which
    /// does not change UTF-8). Returns whether `utf8` was given.
    fn segment_types(&mut self) -> Result<bool> {
        let mut utf8 = false;
        loop {
            let Some(token) = self.next() else {
                return Err(self.error_expected("a segment type such as `utf8`"));
            };
            match &token.tok {
                Tok::Atom(a) if a == "utf8" => utf8 = true,
                Tok::Atom(a) if matches!(a.as_str(), "big" | "little" | "native") => {}
                Tok::Atom(a) => {
                    return Err(syntax(
                        token.line,
                        token.column,
                        format!(
                            "unsupported binary segment type `{}` (only `utf8` is supported)",
                            one_line(&Term::Atom(a.clone()).to_string())
                        ),
                    ));
                }
                _ => {
                    self.unread(token);
                    return Err(self.error_expected("a segment type such as `utf8`"));
                }
            }
            if self.peek_punct(Punct::Minus) {
                self.pos += 1;
            } else {
                break;
            }
        }
        if utf8 {
            Ok(true)
        } else {
            let (line, column) = self.here();
            Err(syntax(
                line,
                column,
                "a binary segment type list must contain `utf8` (the only supported type)",
            ))
        }
    }
}

fn push_utf8(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// A decimal integer with a sign; an error rather than an overflow.
fn integer(negative: bool, digits: &str, line: usize, column: usize) -> Result<i128> {
    let too_large = || MetadataError::IntegerTooLarge { line, column };
    let magnitude: u128 = digits.parse().map_err(|_| too_large())?;
    if negative {
        0i128.checked_sub_unsigned(magnitude).ok_or_else(too_large)
    } else {
        i128::try_from(magnitude).map_err(|_| too_large())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// metadata.config of fixtures/tarballs/acme_edge-0.1.0.tar (mix layout).
    const ACME_EDGE: &str = r#"{<<"app">>,<<"acme_edge">>}.
{<<"build_tools">>,[<<"mix">>]}.
{<<"description">>,
 <<"Edge cases: deps from other repos, renamed dep, test-only dep dropped">>}.
{<<"elixir">>,<<"~> 1.14">>}.
{<<"files">>,[<<"lib">>,<<"lib/acme_edge.ex">>,<<"mix.exs">>,<<"README.md">>]}.
{<<"licenses">>,[<<"MIT">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_edge">>}]}.
{<<"name">>,<<"acme_edge">>}.
{<<"requirements">>,
 [[{<<"app">>,<<"jason">>},
   {<<"name">>,<<"jason">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"hexpm">>},
   {<<"requirement">>,<<"~> 1.4">>}],
  [{<<"app">>,<<"other_pkg">>},
   {<<"name">>,<<"other_pkg">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"other">>},
   {<<"requirement">>,<<"~> 2.0">>}],
  [{<<"app">>,<<"org_pkg">>},
   {<<"name">>,<<"org_pkg">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"myorg">>},
   {<<"requirement">>,<<"== 1.0.0">>}],
  [{<<"app">>,<<"aliased_a">>},
   {<<"name">>,<<"acme_a">>},
   {<<"optional">>,true},
   {<<"repository">>,<<"acme">>},
   {<<"requirement">>,<<"~> 0.1">>}]]}.
{<<"version">>,<<"0.1.0">>}.
"#;

    /// metadata.config of fixtures/tarballs/acme_erl-0.2.0.tar (rebar3 layout).
    const ACME_ERL: &str = r#"{<<"app">>,<<"acme_erl">>}.
{<<"build_tools">>,[<<"rebar3">>]}.
{<<"description">>,
 <<65,99,109,101,32,69,114,108,97,110,103,32,116,101,115,116,32,112,97,99,107,
   97,103,101,32,97,99,109,101,95,101,114,108,32,226,128,148,32,99,97,102,195,
   169>>}.
{<<"files">>,
 [<<"README.md">>,<<"rebar.config">>,<<"src/acme_erl.app.src">>,
  <<"src/acme_erl.erl">>]}.
{<<"licenses">>,[<<"Apache-2.0">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_erl">>}]}.
{<<"name">>,<<"acme_erl">>}.
{<<"requirements">>,
 [{<<"acme_erl_base">>,
   [{<<"app">>,<<"acme_erl_base">>},
    {<<"optional">>,false},
    {<<"requirement">>,<<"~> 0.1">>}]}]}.
{<<"version">>,<<"0.2.0">>}.
"#;

    /// metadata.config of fixtures/tarballs/acme_b-0.2.0.tar (mix layout,
    /// optional dependency, description as a byte list).
    const ACME_B: &str = r#"{<<"app">>,<<"acme_b">>}.
{<<"build_tools">>,[<<"mix">>]}.
{<<"description">>,
 <<65,99,109,101,32,66,32,119,105,116,104,32,111,112,116,105,111,110,97,108,
   32,97,99,109,101,95,99,32,226,128,148,32,195,169,109,111,106,105,32,240,
   159,154,128>>}.
{<<"elixir">>,<<"~> 1.14">>}.
{<<"files">>,[<<"lib">>,<<"lib/acme_b.ex">>,<<"mix.exs">>,<<"README.md">>]}.
{<<"licenses">>,[<<"MIT">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_b">>}]}.
{<<"name">>,<<"acme_b">>}.
{<<"requirements">>,
 [[{<<"app">>,<<"acme_a">>},
   {<<"name">>,<<"acme_a">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"acme">>},
   {<<"requirement">>,<<"~> 0.2">>}],
  [{<<"app">>,<<"acme_c">>},
   {<<"name">>,<<"acme_c">>},
   {<<"optional">>,true},
   {<<"repository">>,<<"acme">>},
   {<<"requirement">>,<<"~> 0.1">>}]]}.
{<<"version">>,<<"0.2.0">>}.
"#;

    /// metadata.config of fixtures/tarballs/acme_a-1.0.0-rc.1.tar (no deps).
    const ACME_A_RC: &str = r#"{<<"app">>,<<"acme_a">>}.
{<<"build_tools">>,[<<"mix">>]}.
{<<"description">>,<<"Acme A prerelease">>}.
{<<"elixir">>,<<"~> 1.14">>}.
{<<"files">>,[<<"lib">>,<<"lib/acme_a.ex">>,<<"mix.exs">>,<<"README.md">>]}.
{<<"licenses">>,[<<"MIT">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_a">>}]}.
{<<"name">>,<<"acme_a">>}.
{<<"requirements">>,[]}.
{<<"version">>,<<"1.0.0-rc.1">>}.
"#;

    const REAL: [&str; 4] = [ACME_EDGE, ACME_ERL, ACME_B, ACME_A_RC];

    fn one(src: &str) -> Term {
        let mut terms = parse_terms(src.as_bytes()).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(terms.len(), 1, "{src:?}");
        terms.remove(0)
    }

    /// The second element of the single form `{a, X}.`.
    fn value(x: &str) -> Term {
        match one(&format!("{{a,{x}}}.")) {
            Term::Tuple(mut items) if items.len() == 2 => items.remove(1),
            other => panic!("{other:?}"),
        }
    }

    fn err_terms(src: &[u8]) -> String {
        match parse_terms(src) {
            Ok(t) => panic!("{src:?} parsed as {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn err(src: &str) -> MetadataError {
        match parse(src.as_bytes()) {
            Ok(m) => panic!("{src:?} parsed as {m:?}"),
            Err(e) => e,
        }
    }

    fn s(text: &str) -> Term {
        Term::String(text.chars().map(u32::from).collect())
    }

    fn bin(bytes: &[u8]) -> Term {
        Term::Binary(bytes.to_vec())
    }

    fn atom(a: &str) -> Term {
        Term::Atom(a.to_string())
    }

    const HEAD: &str = "{<<\"name\">>,<<\"p\">>}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n\
                        {<<\"app\">>,<<\"p\">>}.\n";

    fn with_requirements(requirements: &str) -> String {
        format!("{HEAD}{{<<\"requirements\">>,{requirements}}}.\n")
    }

    fn req(name: &str, app: Option<&str>, requirement: &str) -> Requirement {
        Requirement {
            name: name.to_string(),
            app: app.map(str::to_string),
            requirement: requirement.to_string(),
            optional: false,
            repository: None,
        }
    }

    // -- lexer: escapes -------------------------------------------------------

    #[test]
    fn named_escapes() {
        assert_eq!(
            value(r#""\n\r\t\v\b\f\e\s\d""#),
            Term::String(vec![10, 13, 9, 11, 8, 12, 27, 32, 127])
        );
    }

    #[test]
    fn octal_escapes_need_exactly_three_digits() {
        assert_eq!(value(r#""\101\000\777""#), Term::String(vec![65, 0, 511]));
        // Like safe_erl_term (not erl_scan): fewer digits are not an octal escape.
        assert_eq!(value(r#""\1x""#), s("1x"));
        assert_eq!(value(r#""\12""#), s("12"));
        assert_eq!(value(r#""\18""#), s("18"));
        assert_eq!(value(r#""\1234""#), Term::String(vec![83, 52]));
        // In a binary, 0o400 = 256 becomes 0.
        assert_eq!(value(r#"<<"\400\101">>"#), bin(&[0, 65]));
    }

    #[test]
    fn control_escapes() {
        assert_eq!(value(r#""\^A\^a\^[\^?""#), Term::String(vec![1, 1, 27, 31]));
        // `\^` with nothing after it is a plain `^`.
        assert_eq!(value(r#""\^""#), s("^"));
    }

    #[test]
    fn backslash_before_whitespace_is_dropped() {
        assert_eq!(
            value("\"a\\\nb\\ c\\\td\\\r\ne\""),
            Term::String(vec![97, 98, 99, 100, 10, 101])
        );
        assert_eq!(value("\"a\\\u{0}b\""), s("ab"));
    }

    #[test]
    fn other_escapes_are_the_char_itself() {
        assert_eq!(value(r#""\x{41}""#), s("x{41}"));
        assert_eq!(value(r#""\q\"\\\'""#), s("q\"\\'"));
        assert_eq!(value(r#""\é""#), s("é"));
    }

    #[test]
    fn quoted_atoms() {
        assert_eq!(value("'hello world'"), atom("hello world"));
        assert_eq!(value(r#"'it\'s'"#), atom("it's"));
        assert_eq!(value(r#"'a\nb'"#), atom("a\nb"));
        assert_eq!(value("'Foo'"), atom("Foo"));
        assert_eq!(value("'true'"), atom("true"));
        assert_eq!(value("''"), atom(""));
        assert_eq!(value("foo_Bar@1"), atom("foo_Bar@1"));
    }

    #[test]
    fn adjacent_strings_concatenate() {
        assert_eq!(value(r#""ab" "cd"  "e""#), s("abcde"));
        assert_eq!(value(r#"<<"ab" "cd">>"#), bin(b"abcd"));
        assert_eq!(value(r#"<<"é" "ü"/utf8>>"#), bin("éü".as_bytes()));
        assert_eq!(value(r#""""#), s(""));
        // Escaped and plain literals mix; a quoted atom between strings splits them.
        assert_eq!(value(r#""a\n" "b" "\101""#), s("a\nbA"));
        assert_eq!(
            value(r#"{"a" "b", 'c\td', "e\"" "f"}"#),
            Term::Tuple(vec![s("ab"), atom("c\td"), s("e\"f")])
        );
    }

    #[test]
    fn string_extent_is_leex_longest_match() {
        // No later quote: `"a\\"` is the string `a\`.
        assert_eq!(value(r#"<<"a\\">>"#), bin(b"a\\"));
        // With a later quote, hex_core's lexer reaches on to it (so this file is
        // rejected by hex_core too).
        let e = err_terms(b"{a,<<\"a\\\\\">>}.\n{b,<<\"c\">>}.\n");
        assert!(e.contains("line 2, column 8"), "{e}");
        assert!(e.contains("unterminated string"), "{e}");
        // An escaped quote.
        assert_eq!(value(r#""a\"b""#), s("a\"b"));
        // `\^"` is a control escape of the quote character.
        assert_eq!(value(r#""\^"x""#), Term::String(vec![2, 120]));
    }

    #[test]
    fn crlf_line_endings() {
        let src = ACME_ERL.replace('\n', "\r\n");
        assert_eq!(
            parse_terms(src.as_bytes()).unwrap(),
            parse_terms(ACME_ERL.as_bytes()).unwrap()
        );
        assert_eq!(parse(src.as_bytes()).unwrap().requirements.len(), 1);
        let e = err_terms(b"{a,1}.\r\n{b,%}.\r\n");
        assert!(e.contains("line 2, column 4"), "{e}");
    }

    #[test]
    fn whitespace_is_chars_0_to_32() {
        assert_eq!(
            parse_terms(b"\x00\x01{a,\x0b\x0c1}\x1f.\x20").unwrap(),
            vec![Term::Tuple(vec![atom("a"), Term::Integer(1)])]
        );
    }

    #[test]
    fn dot_needs_no_following_whitespace() {
        assert_eq!(parse_terms(b"{a,1}.{b,2}.").unwrap().len(), 2);
        assert_eq!(parse_terms(b"ok.").unwrap(), vec![atom("ok")]);
    }

    // -- encodings ------------------------------------------------------------

    #[test]
    fn utf8_input() {
        assert_eq!(value(r#""é日""#), Term::String(vec![0xE9, 0x65E5]));
        // Without /utf8, each char is truncated to its low byte (Latin-1).
        assert_eq!(value(r#"<<"é日">>"#), bin(&[0xE9, 0xE5]));
        assert_eq!(value(r#"<<"é日"/utf8>>"#), bin("é日".as_bytes()));
        assert_eq!(value(r#"<<"x"/utf8>>"#), bin(b"x"));
        assert_eq!(value(r#"'é'"#), atom("é"));
    }

    #[test]
    fn latin1_fallback() {
        // A raw 0xE9 byte is not UTF-8, so the whole file is read as Latin-1 ...
        let src = b"{a,\"caf\xE9\"}.\n{b,<<\"\xC3\xA9\"/utf8>>}.\n";
        let terms = parse_terms(src).unwrap();
        assert_eq!(
            terms,
            vec![
                Term::Tuple(vec![atom("a"), s("café")]),
                // ... including the bytes that were valid UTF-8: two chars here.
                Term::Tuple(vec![atom("b"), bin("Ã©".as_bytes())]),
            ]
        );
        // A Latin-1 binary is not UTF-8 text.
        let e = parse(b"{<<\"name\">>,<<\"caf\xE9\">>}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n")
            .unwrap_err();
        assert!(
            matches!(e, MetadataError::InvalidUtf8 { ref key } if key == "name"),
            "{e:?}"
        );
        let e = parse(b"{<<\"name\">>,<<\"caf\xE9\">>}.")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "`name` entry is a binary that is not valid UTF-8");
        // A Latin-1 string is fine: its chars are code points.
        let m = parse(
            b"{<<\"name\">>,\"caf\xE9\"}.{<<\"version\">>,<<\"1.0.0\">>}.{<<\"app\">>,<<\"a\">>}.",
        )
        .unwrap();
        assert_eq!(m.name, "café");
    }

    // -- binaries, integers, containers ----------------------------------------

    #[test]
    fn binaries() {
        assert_eq!(value("<<>>"), bin(b""));
        assert_eq!(value("<<1,2,3>>"), bin(&[1, 2, 3]));
        assert_eq!(
            value("<<-1, 256, 257, +7, - 2>>"),
            bin(&[255, 0, 1, 7, 254])
        );
        assert_eq!(value(r#"<<"a", 1, "b"/utf8>>"#), bin(b"a\x01b"));
        assert_eq!(value("<<233/utf8, 65/utf8>>"), bin("éA".as_bytes()));
        assert_eq!(value(r#"<<"é"/utf8-big>>"#), bin("é".as_bytes()));
        // Arbitrarily large integers are taken mod 256, as erlang does.
        assert_eq!(
            value("<<1234567890123456789012345678901234567890>>"),
            bin(&[210])
        );
        assert_eq!(value(r#"<<"">>"#), bin(b""));
    }

    #[test]
    fn binary_errors() {
        let e = err_terms(br#"{a,<<"x"/binary>>}."#);
        assert!(
            e.contains("unsupported binary segment type `binary`"),
            "{e}"
        );
        assert!(e.contains("line 1, column 10"), "{e}");
        let e = err_terms(b"{a,<<a>>}.");
        assert!(
            e.contains("expected an integer or a string in a binary"),
            "{e}"
        );
        let e = err_terms(b"{a,<<-1/utf8>>}.");
        assert!(e.contains("not a Unicode code point"), "{e}");
        let e = err_terms(b"{a,<<1114112/utf8>>}.");
        assert!(e.contains("not a Unicode code point"), "{e}");
        let e = err_terms(b"{a,<<1/big>>}.");
        assert!(e.contains("must contain `utf8`"), "{e}");
        let e = err_terms(b"{a,<<1 2>>}.");
        assert!(
            e.contains("expected `,` or `>>` but found the integer 2"),
            "{e}"
        );
        let e = err_terms(b"{a,<<<<1>>/binary>>}.");
        assert!(e.contains("line 1, column 6"), "{e}");
    }

    #[test]
    fn integers() {
        assert_eq!(value("42"), Term::Integer(42));
        assert_eq!(value("007"), Term::Integer(7));
        assert_eq!(value("-1"), Term::Integer(-1));
        assert_eq!(value("- 12"), Term::Integer(-12));
        assert_eq!(value("+5"), Term::Integer(5));
        assert_eq!(value(&i128::MAX.to_string()), Term::Integer(i128::MAX));
        assert_eq!(value(&i128::MIN.to_string()), Term::Integer(i128::MIN));
        let e = err_terms(format!("{{a,{}}}.", i128::MAX.unsigned_abs() + 1).as_bytes());
        assert_eq!(
            e,
            "integer too large at line 1, column 4 (at most 128 bits are supported)"
        );
        let e = err_terms(b"{a,\n  -99999999999999999999999999999999999999999999}.");
        assert!(
            e.starts_with("integer too large at line 2, column 4"),
            "{e}"
        );
        let e = err_terms(b"{a,- -1}.");
        assert_eq!(
            e,
            "syntax error at line 1, column 6: expected an integer after `-` but found `-`"
        );
        // A file that ends where the integer should be says so, not "found `-`".
        let e = err_terms(b"{a,-");
        assert_eq!(
            e,
            "syntax error at line 1, column 5: expected an integer after `-` but found the end of the file"
        );
        let e = err_terms(b"{<<\"a\">>, <<");
        assert!(
            e.contains("expected an integer or a string in a binary but found the end of the file"),
            "{e}"
        );
        let e = err_terms(b"{a,-b}.");
        assert!(
            e.contains("expected an integer after `-` but found the atom `b`"),
            "{e}"
        );
    }

    #[test]
    fn tuples_lists_maps() {
        assert_eq!(value("{}"), Term::Tuple(vec![]));
        assert_eq!(value("[]"), Term::List(vec![]));
        assert_eq!(value("#{}"), Term::Map(vec![]));
        assert_eq!(
            value(r#"[1, {b, "c"}, [[]], #{<<"k">> => [v], 2 => 3}]"#),
            Term::List(vec![
                Term::Integer(1),
                Term::Tuple(vec![atom("b"), s("c")]),
                Term::List(vec![Term::List(vec![])]),
                Term::Map(vec![
                    (bin(b"k"), Term::List(vec![atom("v")])),
                    (Term::Integer(2), Term::Integer(3)),
                ]),
            ])
        );
        // Duplicate map keys are kept in source order.
        assert_eq!(
            value("#{a => 1, a => 2}"),
            Term::Map(vec![
                (atom("a"), Term::Integer(1)),
                (atom("a"), Term::Integer(2))
            ])
        );
    }

    #[test]
    fn nesting_is_capped() {
        let ok = format!("{}{}.", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_terms(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}.",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let e = err_terms(deep.as_bytes());
        assert_eq!(
            e,
            format!(
                "terms nested too deeply at line 1, column {} (more than 256 levels)",
                MAX_DEPTH + 1
            )
        );
        // Far deeper input fails fast instead of overflowing the stack.
        let huge = "[{#{".repeat(200_000);
        assert!(matches!(
            parse_terms(huge.as_bytes()),
            Err(MetadataError::TooDeep { .. })
        ));
    }

    // -- syntax errors --------------------------------------------------------

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"{a,\n  {b, c]}.",
                "syntax error at line 2, column 8: expected `,` or `}` but found `]`",
            ),
            (
                b"{a,[1,2}.",
                "syntax error at line 1, column 8: expected `,` or `]` but found `}`",
            ),
            (
                b"{a,1} {b,2}.",
                "syntax error at line 1, column 7: expected `.` (end of the form) but found `{`",
            ),
            (
                b"{a,1}",
                "syntax error at line 1, column 6: expected `.` (end of the form) but found the \
                 end of the file",
            ),
            (
                b"{a,1}.\n{b,",
                "syntax error at line 2, column 4: expected a term but found the end of the file",
            ),
            (
                b"{a,.}.",
                "syntax error at line 1, column 4: expected a term but found `.`",
            ),
            (
                b"#{a}.",
                "syntax error at line 1, column 4: expected `=>` but found `}`",
            ),
            (
                b"#[].",
                "syntax error at line 1, column 2: expected `{` after `#` but found `[`",
            ),
            (
                b"{a, % note\n1}.",
                "syntax error at line 1, column 5: unexpected character `%` (comments are not \
                 allowed in metadata.config)",
            ),
            (
                b"{a, Foo}.",
                "syntax error at line 1, column 5: unexpected character `F` (variables are not \
                 allowed; quote atoms that start with an uppercase letter)",
            ),
            (
                b"{a, $c}.",
                "syntax error at line 1, column 5: unexpected character `$` (character literals are not allowed)",
            ),
            (
                b"{a, 1.5}.",
                "syntax error at line 1, column 6: expected `,` or `}` but found `.`",
            ),
            (
                b"[a|b].",
                "syntax error at line 1, column 3: unexpected character `|`",
            ),
            (
                b"{a, b < c}.",
                "syntax error at line 1, column 7: unexpected character `<`",
            ),
            (
                b"{a, \"abc}.",
                "syntax error at line 1, column 5: unterminated string (no closing `\"`)",
            ),
            (
                b"{a, 'abc}.",
                "syntax error at line 1, column 5: unterminated quoted atom (no closing `'`)",
            ),
            (
                b"{a, \"x\\\"}.",
                "syntax error at line 1, column 5: string ends with a lone backslash before its closing `\"`",
            ),
            (
                "{a, \u{FEFF}1}.".as_bytes(),
                "syntax error at line 1, column 5: unexpected character U+FEFF",
            ),
        ];
        for (src, expected) in cases {
            assert_eq!(
                &err_terms(src),
                expected,
                "{:?}",
                String::from_utf8_lossy(src)
            );
        }
    }

    #[test]
    fn unpaired_trailing_backslash() {
        // The literal `"x\\\"` has no later quote, so it ends at its last quote and
        // its interior `x\\\` unescapes to `x\` and then a lone backslash (hex_core
        // crashes on this).
        let e = err_terms(b"{a, \"x\\\\\\\"}.");
        assert!(e.contains("ends with a lone backslash"), "{e}");
        assert!(e.contains("line 1, column 5"), "{e}");
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse_terms(b"").unwrap(), vec![]);
        assert_eq!(parse_terms(b" \n\t").unwrap(), vec![]);
        assert!(matches!(parse(b"\n"), Err(MetadataError::Empty)));
    }

    // -- parse: real files ----------------------------------------------------

    #[test]
    fn mix_layout() {
        let m = parse(ACME_EDGE.as_bytes()).unwrap();
        assert_eq!(m.name, "acme_edge");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.app, "acme_edge");
        let dep =
            |name: &str, app: &str, requirement: &str, optional: bool, repo: &str| Requirement {
                name: name.to_string(),
                app: Some(app.to_string()),
                requirement: requirement.to_string(),
                optional,
                repository: Some(repo.to_string()),
            };
        assert_eq!(
            m.requirements,
            vec![
                dep("acme_a", "aliased_a", "~> 0.1", true, "acme"),
                dep("jason", "jason", "~> 1.4", false, "hexpm"),
                dep("org_pkg", "org_pkg", "== 1.0.0", false, "myorg"),
                dep("other_pkg", "other_pkg", "~> 2.0", false, "other"),
            ]
        );
    }

    #[test]
    fn rebar3_layout() {
        let m = parse(ACME_ERL.as_bytes()).unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_str(), m.app.as_str()),
            ("acme_erl", "0.2.0", "acme_erl")
        );
        assert_eq!(
            m.requirements,
            vec![req("acme_erl_base", Some("acme_erl_base"), "~> 0.1")]
        );
    }

    #[test]
    fn real_files() {
        let m = parse(ACME_B.as_bytes()).unwrap();
        assert_eq!(m.requirements.len(), 2);
        assert_eq!(m.requirements[1].name, "acme_c");
        assert!(m.requirements[1].optional);
        assert!(!m.requirements[0].optional);
        let m = parse(ACME_A_RC.as_bytes()).unwrap();
        assert_eq!(m.version, "1.0.0-rc.1");
        assert!(m.requirements.is_empty());
        // The byte-list description is UTF-8.
        let terms = parse_terms(ACME_B.as_bytes()).unwrap();
        let description = terms.iter().find_map(|t| match t {
            Term::Tuple(kv) if kv.first() == Some(&bin(b"description")) => kv.get(1),
            _ => None,
        });
        assert_eq!(
            description,
            Some(&bin("Acme B with optional acme_c — émoji 🚀".as_bytes()))
        );
    }

    #[test]
    fn display_reparses_to_the_same_terms() {
        for src in REAL {
            let terms = parse_terms(src.as_bytes()).unwrap();
            let printed: String = terms.iter().map(|t| format!("{t}.\n")).collect();
            assert_eq!(parse_terms(printed.as_bytes()).unwrap(), terms, "{printed}");
        }
        let odd = value(r#"{'A b', "q\"\n\001", <<0, 255>>, <<"é"/utf8>>, #{-1 => []}}"#);
        assert_eq!(value(&odd.to_string()), odd);
        assert_eq!(
            odd.to_string(),
            r#"{'A b',"q\"\n\001",<<0,255>>,<<"é"/utf8>>,#{-1 => []}}"#
        );
    }

    // -- parse: normalisation -------------------------------------------------

    #[test]
    fn duplicate_keys_last_wins() {
        let src = format!(
            "{HEAD}{{<<\"version\">>,<<\"2.0.0\">>}}.\n{{<<\"requirements\">>,[]}}.\n\
             {{<<\"requirements\">>,[[{{<<\"name\">>,<<\"x\">>}},{{<<\"requirement\">>,<<\"1\">>}},\
             {{<<\"requirement\">>,<<\"2\">>}}],[{{<<\"name\">>,<<\"x\">>}},\
             {{<<\"requirement\">>,<<\"3\">>}}]]}}.\n"
        );
        let m = parse(src.as_bytes()).unwrap();
        assert_eq!(m.version, "2.0.0");
        assert_eq!(m.requirements, vec![req("x", None, "3")]);
        let m = parse(
            with_requirements(r#"[[{<<"name">>,<<"x">>},{<<"requirement">>,<<"1">>},{<<"requirement">>,<<"2">>}]]"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.requirements, vec![req("x", None, "2")]);
    }

    #[test]
    fn requirements_sorted_and_unique() {
        let m = parse(
            with_requirements(
                r#"[{<<"zz">>,[{<<"requirement">>,<<"1">>}]},
                    {<<"Ab">>,[{<<"requirement">>,<<"2">>}]},
                    {<<"aa">>,[{<<"requirement">>,<<"3">>}]},
                    {<<"zz">>,[{<<"requirement">>,<<"4">>}]}]"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let names: Vec<_> = m
            .requirements
            .iter()
            .map(|r| (r.name.as_str(), r.requirement.as_str()))
            .collect();
        assert_eq!(names, vec![("Ab", "2"), ("aa", "3"), ("zz", "4")]);
    }

    #[test]
    fn missing_optional_keys() {
        let m = parse(
            with_requirements(r#"[{<<"dep">>,[{<<"requirement">>,<<"~> 1.0">>}]}]"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(m.requirements, vec![req("dep", None, "~> 1.0")]);
        // `undefined` (which hex_core never turns into a binary) counts as absent.
        let m = parse(
            with_requirements(
                r#"[{<<"dep">>,[{<<"requirement">>,<<"1">>},{<<"repository">>,undefined},
                   {<<"app">>,undefined},{<<"optional">>,<<"true">>}]}]"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.requirements, vec![req("dep", None, "1")]);
    }

    #[test]
    fn optional_true_only_for_the_atom() {
        for (value, expected) in [
            ("true", true),
            ("false", false),
            ("'true'", true),
            ("1", false),
        ] {
            let m = parse(
                with_requirements(&format!(
                    r#"[{{<<"d">>,[{{<<"requirement">>,<<"1">>}},{{<<"optional">>,{value}}}]}}]"#
                ))
                .as_bytes(),
            )
            .unwrap();
            assert_eq!(m.requirements[0].optional, expected, "{value}");
        }
    }

    #[test]
    fn other_requirement_layouts() {
        // rebar3 layout with map properties, and string (charlist) names/values.
        let m = parse(
            with_requirements(
                r#"[{"dep", #{<<"requirement">> => "~> 1.0", <<"app">> => <<"dep_app">>}}]"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.requirements, vec![req("dep", Some("dep_app"), "~> 1.0")]);
        // A map keyed by name (the normalised form).
        let m = parse(
            with_requirements(r#"#{<<"b">> => [{<<"requirement">>,<<"1">>}], <<"a">> => #{<<"requirement">> => <<"2">>}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            m.requirements,
            vec![req("a", None, "2"), req("b", None, "1")]
        );
        // Empty forms.
        for empty in ["[]", "\"\"", "#{}"] {
            assert!(
                parse(with_requirements(empty).as_bytes())
                    .unwrap()
                    .requirements
                    .is_empty()
            );
        }
        // No `requirements` key at all: no dependencies (as `mix hex.registry build`).
        assert!(parse(HEAD.as_bytes()).unwrap().requirements.is_empty());
    }

    #[test]
    fn text_values() {
        let src = "{<<\"name\">>,\"n\"}.{<<\"version\">>,[49,46,48]}.{<<\"app\">>,<<\"é\"/utf8>>}.\
                   {name,<<\"ignored\">>}.{\"version\",<<\"ignored\">>}.{<<\"unknown\">>,{x}}.";
        let m = parse(src.as_bytes()).unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_str(), m.app.as_str()),
            ("n", "1.0", "é")
        );
    }

    // -- parse: errors --------------------------------------------------------

    #[test]
    fn missing_keys() {
        let e = err("{<<\"version\">>,<<\"1.0.0\">>}.{<<\"app\">>,<<\"a\">>}.{name,<<\"n\">>}.");
        assert!(matches!(e, MetadataError::MissingKey("name")), "{e:?}");
        assert_eq!(e.to_string(), "missing `name` entry");
        let e = err("{<<\"name\">>,<<\"n\">>}.{<<\"app\">>,<<\"a\">>}.");
        assert_eq!(e.to_string(), "missing `version` entry");
        let e = err("{<<\"name\">>,<<\"n\">>}.{<<\"version\">>,<<\"1\">>}.");
        assert!(matches!(e, MetadataError::MissingKey("app")), "{e:?}");
    }

    #[test]
    fn wrong_types() {
        let e = err("{<<\"name\">>,<<\"n\">>}.{<<\"version\">>,{1,0,0}}.{<<\"app\">>,<<\"a\">>}.");
        match &e {
            MetadataError::WrongType {
                key,
                expected,
                found,
            } => {
                assert_eq!(key, "version");
                assert!(expected.starts_with("text"));
                assert_eq!(found, "a tuple ({1,0,0})");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "`version` entry must be text (a binary such as <<\"...\">> or a string), but it is a \
             tuple ({1,0,0})"
        );
        let e = err("{<<\"name\">>,foo}.");
        assert!(e.to_string().contains("`name` entry must be text"), "{e}");
        assert!(e.to_string().contains("an atom (foo)"), "{e}");
    }

    #[test]
    fn not_key_value() {
        let e = err("{<<\"name\">>,<<\"n\">>}.\n\n{a,b,c}.");
        assert!(
            matches!(e, MetadataError::NotKeyValue { form: 2, line: 3 }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("form 2 is not a {Key, Value} pair"),
            "{e}"
        );
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = err("ok.");
        assert!(
            e.to_string()
                .starts_with("form 1 is not a {Key, Value} pair"),
            "{e}"
        );
    }

    #[test]
    fn requirement_errors() {
        let cases: &[(&str, &str)] = &[
            (
                r#"[[{<<"name">>,<<"jason">>},{<<"app">>,<<"jason">>}]]"#,
                "`requirements` entry for dependency `jason` has no `requirement`",
            ),
            (
                r#"[{<<"jason">>,[{<<"app">>,<<"jason">>}]}]"#,
                "`requirements` entry for dependency `jason` has no `requirement`",
            ),
            (
                r#"[[{<<"app">>,<<"jason">>},{<<"requirement">>,<<"1">>}]]"#,
                "`requirements` element 1 has no `name` entry",
            ),
            (
                r#"[[{<<"name">>,<<"a">>},{<<"requirement">>,<<"1">>}], []]"#,
                "`requirements` element 2 has no `name` entry",
            ),
            (
                r#"[[{<<"name">>,<<"a">>},{<<"requirement">>,<<"1">>}], {<<"b">>, []}]"#,
                "element 2 is a tuple ({<<\"b\">>,[]}), but element 1 is a list (mix layout)",
            ),
            (
                r#"[[{<<"name">>,<<"a">>}, oops]]"#,
                "element 1 is a list ([{<<\"name\">>,<<\"a\">>},oops]), but element 1 is a list",
            ),
            (
                r#"[{<<"a">>,[{<<"requirement">>,<<"1">>}]}, {<<"b">>}]"#,
                "element 2 is a tuple ({<<\"b\">>}), but element 1 is a {Name, Properties} pair",
            ),
            (
                r#"[{<<"a">>, <<"~> 1.0">>}]"#,
                "element 1 (dependency `a`) has properties that are a binary (<<\"~> 1.0\">>)",
            ),
            (
                r#"[5]"#,
                "element 1 is an integer (5), expected a list (mix layout) or a {Name, Properties} pair",
            ),
            (
                r#"<<"jason">>"#,
                "it is a binary (<<\"jason\">>), not a list",
            ),
            (
                r#"[{jason, [{<<"requirement">>,<<"1">>}]}]"#,
                "`requirements` element 1: the dependency name must be text (a binary such as \
                 <<\"...\">> or a string), but it is an atom (jason)",
            ),
            (
                r#"[{<<255>>, [{<<"requirement">>,<<"1">>}]}]"#,
                "`requirements` element 1: the dependency name is a binary that is not valid UTF-8",
            ),
            (
                r#"[{<<"jason">>, [{<<"requirement">>,'~> 1.0'}]}]"#,
                "`requirements` entry for dependency `jason`: `requirement` must be text (a binary \
                 such as <<\"...\">> or a string), but it is an atom ('~> 1.0')",
            ),
            (
                r#"[{<<"jason">>, [{<<"requirement">>,<<"1">>},{<<"repository">>,<<200>>}]}]"#,
                "`requirements` entry for dependency `jason`: `repository` must be text (a binary \
                 such as <<\"...\">> or a string), but it is a binary that is not valid UTF-8",
            ),
        ];
        for (requirements, expected) in cases {
            let e = err(&with_requirements(requirements)).to_string();
            assert!(
                e.contains(expected),
                "{requirements}\n  got: {e}\n  want: {expected}"
            );
        }
        let e = err(&with_requirements("[5]")).to_string();
        assert!(
            e.starts_with("`requirements` entry is in neither the mix layout"),
            "{e}"
        );
    }

    // -- robustness -----------------------------------------------------------

    #[test]
    fn never_panics_on_garbage() {
        const PIECES: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            "#{",
            "<<",
            ">>",
            ",",
            "=>",
            ".",
            " ",
            "\n",
            "-",
            "+",
            "/",
            "utf8",
            "a",
            "\"",
            "'",
            "\\",
            "^",
            "1",
            "99999999999999999999999999999999999999999",
            "é",
            "\u{0}",
            "<",
            ">",
            "=",
            "#",
            "x",
            "\"a\"",
            "<<\"name\">>",
            "<<\"requirements\">>",
            "<<\"requirement\">>",
            "<<\"version\">>",
            "true",
            "\\377",
            "\r\n",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = next() % 24;
            let mut src = String::new();
            for _ in 0..len {
                let i = usize::try_from(next() % PIECES.len() as u64).unwrap_or(0);
                src.push_str(PIECES[i]);
            }
            let mut bytes = src.into_bytes();
            if next() % 8 == 0 {
                bytes.push(0xE9);
            }
            let _ = parse(&bytes);
            if let Ok(terms) = parse_terms(&bytes) {
                // Whatever parses prints back to the same terms.
                let printed: String = terms.iter().map(|t| format!("{t}.\n")).collect();
                assert_eq!(parse_terms(printed.as_bytes()).unwrap(), terms, "{printed}");
            }
        }
        // Mutations of a real file.
        let base = ACME_EDGE.as_bytes();
        for _ in 0..5_000 {
            let mut bytes = base.to_vec();
            for _ in 0..(1 + next() % 3) {
                let p = usize::try_from(next() % bytes.len() as u64).unwrap_or(0);
                let b = b"{}[],.\"\\<>/-+#=a1 \n\xE9"[usize::try_from(next() % 19).unwrap_or(0)];
                match next() % 3 {
                    0 => {
                        bytes.remove(p);
                    }
                    1 => bytes.insert(p, b),
                    _ => bytes[p] = b,
                }
            }
            let _ = parse(&bytes);
        }
    }
}

/// Writes `meta` as a `metadata.config` text in the shape hex_core's `encode_metadata/1`
/// gives it (one `{Key, Value}.` form per line, keys sorted, binaries for text, requirements
/// in mix's list-of-kvlists layout). The inverse of [`parse`] for what [`Metadata`] holds.
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

#[cfg(test)]
mod render_tests {
    use super::*;

    #[test]
    fn rendered_metadata_parses_back() {
        let meta = Metadata {
            name: "foo".into(),
            version: "1.0.0-rc.1".into(),
            app: "foo".into(),
            requirements: vec![
                Requirement {
                    name: "bar".into(),
                    app: Some("bar_app".into()),
                    requirement: "~> 1.0".into(),
                    optional: true,
                    repository: Some("hexpm".into()),
                },
                Requirement {
                    name: "baz".into(),
                    app: None,
                    requirement: ">= 0.0.0 and \"é\"".into(),
                    optional: false,
                    repository: None,
                },
            ],
        };
        assert_eq!(parse(render(&meta).as_bytes()).unwrap(), meta);
    }
}
