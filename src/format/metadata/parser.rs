//! The parser of `metadata.config`: the subset of `erl_parse:parse_term/1`
//! reachable with the lexer's tokens, turning them into `Term.` forms.

use std::ops::Range;

use super::lexer::{Lexed, Lexer, Punct, Tok, Token, syntax};
use super::{MAX_DEPTH, MetadataError, Result, Term};
use crate::format::tarball::one_line;

pub(super) struct Form {
    pub(super) term: Term,
    pub(super) line: usize,
}

pub(super) fn parse_forms(bytes: &[u8]) -> Result<Vec<Form>> {
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
