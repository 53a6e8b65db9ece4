//! The lexer of `metadata.config`: hex_core's `safe_erl_term.xrl` tokenizer,
//! turning the decoded text into [`Token`]s.

use std::ops::Range;

use super::{MetadataError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Punct {
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
    pub(super) fn text(self) -> &'static str {
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
pub(super) enum Tok {
    Atom(String),
    /// Where the string's codes lie in the lexer's code buffer.
    Str(Range<usize>),
    /// The decimal digits, unconverted.
    Int(String),
    Punct(Punct),
    Dot,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) column: usize,
}

pub(super) fn syntax(line: usize, column: usize, message: impl Into<String>) -> MetadataError {
    MetadataError::Syntax {
        line,
        column,
        message: message.into(),
    }
}

/// What the lexer makes of a file: its tokens, the codes their strings index, and the line and
/// column just past its end.
pub(super) struct Lexed {
    pub(super) tokens: Vec<Token>,
    pub(super) codes: Vec<u32>,
    pub(super) eof: (usize, usize),
}

pub(super) struct Lexer {
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
    pub(super) fn new(bytes: &[u8]) -> Lexer {
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
    pub(super) fn tokens(mut self) -> Result<Lexed> {
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
