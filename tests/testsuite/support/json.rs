//! A small strict JSON reader for API response bodies, into [`hexreg::api::etf::Term`] so that a
//! JSON body can be compared with the Erlang term format body of the same answer: objects
//! become maps with binary keys, strings binaries, integers integers, `true`/`false` atoms,
//! `null` the atom `nil`, arrays lists. Fractions and exponents are refused (the API sends
//! none).

use hexreg::api::etf::Term;

/// `text` parsed as one JSON value; `Err` says where it is not JSON.
pub fn parse(text: &str) -> Result<Term, String> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = p.value(0)?;
    p.ws();
    if p.at != p.bytes.len() {
        return Err(format!("trailing bytes at {}", p.at));
    }
    Ok(value)
}

/// `term` with every map's entries sorted by key, to compare terms whatever their key order.
pub fn sorted(term: &Term) -> Term {
    match term {
        Term::Map(entries) => {
            let mut entries: Vec<(Term, Term)> = entries
                .iter()
                .map(|(k, v)| (sorted(k), sorted(v)))
                .collect();
            entries.sort_by_key(|(k, _)| format!("{k:?}"));
            Term::Map(entries)
        }
        Term::List(items) => Term::List(items.iter().map(sorted).collect()),
        Term::Tuple(items) => Term::Tuple(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.ws();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", byte as char, self.at))
        }
    }

    fn literal(&mut self, word: &str, term: Term) -> Result<Term, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(term)
        } else {
            Err(format!("bad literal at {}", self.at))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Term, String> {
        if depth > 64 {
            return Err("nested too deep".into());
        }
        self.ws();
        match self.bytes.get(self.at) {
            None => Err("unexpected end".into()),
            Some(b'{') => {
                self.at += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Term::Map(entries));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.expect(b':')?;
                    let value = self.value(depth + 1)?;
                    entries.push((Term::Binary(key.into_bytes()), value));
                    self.ws();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Term::Map(entries));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.at)),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Term::List(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Term::List(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.at)),
                    }
                }
            }
            Some(b'"') => Ok(Term::Binary(self.string()?.into_bytes())),
            Some(b't') => self.literal("true", Term::atom("true")),
            Some(b'f') => self.literal("false", Term::atom("false")),
            Some(b'n') => self.literal("null", Term::atom("nil")),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                if self.bytes[self.at] == b'-' {
                    self.at += 1;
                }
                while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap();
                text.parse::<i64>()
                    .map(Term::Integer)
                    .map_err(|e| format!("bad number {text:?}: {e}"))
            }
            Some(other) => Err(format!("unexpected {:?} at {}", *other as char, self.at)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err("unterminated string".into());
            };
            self.at += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.bytes.get(self.at) else {
                        return Err("unterminated escape".into());
                    };
                    self.at += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hex = self
                                .bytes
                                .get(self.at..self.at + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("bad \\u escape")?;
                            self.at += 4;
                            out.push(char::from_u32(hex).ok_or("surrogate in \\u escape")?);
                        }
                        _ => return Err(format!("bad escape at {}", self.at)),
                    }
                }
                b if b < 0x20 => return Err(format!("control byte in string at {}", self.at)),
                _ => {
                    // Copy the whole UTF-8 sequence this byte starts.
                    let start = self.at - 1;
                    let len = match b {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let chunk = self
                        .bytes
                        .get(start..start + len)
                        .and_then(|c| std::str::from_utf8(c).ok())
                        .ok_or_else(|| format!("bad UTF-8 at {start}"))?;
                    out.push_str(chunk);
                    self.at = start + len;
                }
            }
        }
    }
}
