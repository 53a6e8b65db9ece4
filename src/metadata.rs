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
    #[error("metadata.config is empty: it should hold `{{Key, Value}}.` forms")]
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
    #[error("`requirements` entry for dependency `{dependency}` has no `requirement`")]
    MissingRequirement { dependency: String },
    /// A dependency property of the wrong kind.
    #[error(
        "`requirements` entry for dependency `{dependency}`: `{key}` must be {expected}, but it \
         is {found}"
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
            "element {element} (dependency `{name}`) has properties that are {}, expected a list \
             of {{Key, Value}} pairs",
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
        '\\' => f.write_str("\\\\"),
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
    Str(Vec<u32>),
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

struct Lexer {
    chars: Vec<char>,
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

    fn tokens(mut self) -> Result<Vec<Token>> {
        let mut out = Vec::new();
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
                    let text: Option<String> = codes.into_iter().map(char::from_u32).collect();
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
        Ok(out)
    }

    /// A `"..."` string or `'...'` atom starting at the current position.
    ///
    /// The extent is the longest match of leex's `Q(\\\^.|\\.|[^Q])*Q` (where
    /// `.` is any char but newline), found by running the NFA; the interior is
    /// then unescaped left to right as `safe_erl_term:escape/1` does.
    fn quoted(&mut self, quote: char) -> Result<Vec<u32>> {
        const LOOP: u8 = 1; // inside the literal; a quote may end it
        const ESC: u8 = 2; // after a backslash
        const CTRL: u8 = 4; // after a backslash and a caret
        let (line, column) = (self.line, self.column);
        let start = self.pos + 1;
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
                format!("unterminated {what} (no closing {quote})"),
            ));
        };
        let codes = unescape(&self.chars[start..end]).ok_or_else(|| {
            syntax(
                line,
                column,
                format!("{what} ends with a lone backslash before its closing {quote}"),
            )
        })?;
        while self.pos <= end {
            self.bump();
        }
        Ok(codes)
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
    let tokens = Lexer::new(bytes).tokens()?;
    let mut parser = Parser { tokens, pos: 0 };
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
    pos: usize,
}

fn describe_token(tok: Option<&Token>) -> String {
    match tok.map(|t| &t.tok) {
        None => "the end of the file".to_string(),
        Some(Tok::Atom(a)) => format!("the atom `{}`", Term::Atom(a.clone())),
        Some(Tok::Str(_)) => "a string".to_string(),
        Some(Tok::Int(digits)) => format!("the integer {digits}"),
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
    Str(Vec<u32>),
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_punct(&self, p: Punct) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Punct(q), .. }) if *q == p)
    }

    fn next(&mut self) -> Option<Token> {
        let tok = self.tokens.get(self.pos).cloned();
        if tok.is_some() {
            self.pos += 1;
        }
        tok
    }

    /// Line and column of the current token, or of the end of the last one.
    fn here(&self) -> (usize, usize) {
        match self.peek().or_else(|| self.tokens.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
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

    /// Adjacent string literals concatenate, as in Erlang.
    fn strings(&mut self, mut codes: Vec<u32>) -> Vec<u32> {
        while let Some(Token {
            tok: Tok::Str(more),
            ..
        }) = self.peek()
        {
            codes.extend_from_slice(more);
            self.pos += 1;
        }
        codes
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
            Tok::Str(codes) => Ok(Term::String(self.strings(codes))),
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
                _ => {
                    self.pos = self.pos.saturating_sub(1);
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
            _ => {
                self.pos = self.pos.saturating_sub(1);
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
        let segment = match self.next().map(|t| (t.tok, t.line, t.column)) {
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
                _ => {
                    self.pos = self.pos.saturating_sub(1);
                    return Err(self.error_expected(&format!("an integer after `{}`", sign.text())));
                }
            },
            Some((Tok::Str(codes), _, _)) => Segment::Str(self.strings(codes)),
            _ => {
                self.pos = self.pos.saturating_sub(1);
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
                                "{}{digits} is not a Unicode code point, so it cannot be a /utf8 \
                                 segment",
                                if negative { "-" } else { "" }
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
                for code in codes {
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
                        format!("unsupported binary segment type `{a}` (only `utf8` is supported)"),
                    ));
                }
                _ => {
                    self.pos = self.pos.saturating_sub(1);
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
