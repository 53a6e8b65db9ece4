//! Version requirements as Hex packages write them (`~> 1.2`, `>= 1.0.0 and < 2.0.0`,
//! `1.0.0 or ~> 2.0`), read as Elixir's `Version.parse_requirement/1` reads them, and whether a
//! version satisfies one.
//!
//! Matching is deliberately generous with pre-releases: a pre-release satisfies a requirement
//! whenever its precedence lies within the bounds (Elixir's `allow_pre: true`), and the upper
//! bound of `~> 1.2` (`< 2.0.0`) lets `2.0.0-rc.1` through. A mirror that selects versions with
//! these rules keeps every version a client could pick, and at most a few more.

use std::cmp::Ordering;

use crate::version;

/// A parsed requirement: alternatives (`or`), each a conjunction (`and`) of comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    alternatives: Vec<Vec<Clause>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    op: Op,
    version: semver::Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A requirement that cannot be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{text}` is not a version requirement ({reason}); write e.g. `~> 1.2`, `>= 1.0.0 and < 2.0.0` or `1.0.0`"
)]
pub struct RequirementError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Requirement {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Requirement, RequirementError> {
        let error = |reason: String| RequirementError {
            text: text.to_string(),
            reason,
        };
        let tokens = lex(text);
        if tokens.is_empty() {
            return Err(error("it is empty".into()));
        }
        let mut alternatives = vec![Vec::new()];
        let mut expect_clause = true;
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            if expect_clause {
                let (op, version_text) = match token.as_str() {
                    "==" | "!=" | ">" | ">=" | "<" | "<=" | "~>" => {
                        i += 1;
                        let v = tokens.get(i).ok_or_else(|| {
                            error(format!("`{token}` is not followed by a version"))
                        })?;
                        (token.as_str(), v.as_str())
                    }
                    _ => ("==", token.as_str()),
                };
                let clauses = alternatives
                    .last_mut()
                    .ok_or_else(|| error("empty".into()))?;
                clauses.extend(clauses_of(op, version_text).map_err(error)?);
                expect_clause = false;
            } else {
                match token.as_str() {
                    "and" => {}
                    "or" => alternatives.push(Vec::new()),
                    other => return Err(error(format!("expected `and` or `or`, found `{other}`"))),
                }
                expect_clause = true;
            }
            i += 1;
        }
        if expect_clause {
            return Err(error("it ends with `and` or `or`".into()));
        }
        Ok(Requirement { alternatives })
    }

    /// Whether `version` satisfies the requirement (pre-releases within the bounds do).
    pub fn matches(&self, version: &semver::Version) -> bool {
        self.alternatives
            .iter()
            .any(|clauses| clauses.iter().all(|c| c.matches(version)))
    }
}

impl Clause {
    fn matches(&self, v: &semver::Version) -> bool {
        let order = version::compare(v, &self.version);
        match self.op {
            Op::Eq => order == Ordering::Equal,
            Op::Ne => order != Ordering::Equal,
            Op::Gt => order == Ordering::Greater,
            Op::Ge => order != Ordering::Less,
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
        }
    }
}

/// Splits on whitespace, and an operator from a version written against it (`>=1.0.0`).
fn lex(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let op_len = word
            .char_indices()
            .find(|(_, c)| !matches!(c, '=' | '!' | '>' | '<' | '~'))
            .map_or(word.len(), |(i, _)| i);
        if op_len > 0 && op_len < word.len() {
            tokens.push(word[..op_len].to_string());
            tokens.push(word[op_len..].to_string());
        } else {
            tokens.push(word.to_string());
        }
    }
    tokens
}

/// The comparisons `op version` stands for: `~>` gives two bounds.
fn clauses_of(op: &str, text: &str) -> Result<Vec<Clause>, String> {
    let (version, parts) = parse_partial(text)?;
    let clause = |op, version| Clause { op, version };
    Ok(match op {
        "~>" => {
            let upper = match parts {
                // `~> 1.2` and `~> 1`: below the next major.
                1 | 2 => semver::Version::new(version.major.saturating_add(1), 0, 0),
                // `~> 1.2.3`: below the next minor.
                _ => semver::Version::new(version.major, version.minor.saturating_add(1), 0),
            };
            vec![clause(Op::Ge, version), clause(Op::Lt, upper)]
        }
        "==" => vec![clause(Op::Eq, version)],
        "!=" => vec![clause(Op::Ne, version)],
        ">" => vec![clause(Op::Gt, version)],
        ">=" => vec![clause(Op::Ge, version)],
        "<" => vec![clause(Op::Lt, version)],
        "<=" => vec![clause(Op::Le, version)],
        other => return Err(format!("`{other}` is not an operator")),
    })
}

/// A version, possibly without its patch (or minor) number, and how many numbers it had.
fn parse_partial(text: &str) -> Result<(semver::Version, usize), String> {
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let parts = text[..core_end].split('.').count();
    let full = match parts {
        1 => format!("{}.0.0{}", &text[..core_end], &text[core_end..]),
        2 => format!("{}.0{}", &text[..core_end], &text[core_end..]),
        _ => text.to_string(),
    };
    version::parse(&full)
        .map(|v| (v, parts))
        .map_err(|e| e.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(req: &str, version: &str) -> bool {
        Requirement::parse(req)
            .unwrap()
            .matches(&version::parse(version).unwrap())
    }

    #[test]
    fn pessimistic_operator() {
        assert!(ok("~> 1.2", "1.2.0"));
        assert!(ok("~> 1.2", "1.9.3"));
        assert!(!ok("~> 1.2", "2.0.0"));
        assert!(!ok("~> 1.2", "1.1.9"));
        assert!(ok("~> 1.2.3", "1.2.9"));
        assert!(!ok("~> 1.2.3", "1.3.0"));
        assert!(!ok("~> 0.1", "0.0.9"));
        assert!(ok("~> 0.1", "0.2.0"));
    }

    #[test]
    fn comparisons_and_alternatives() {
        assert!(ok("1.0.0", "1.0.0"));
        assert!(ok("== 1.0.0", "1.0.0+build"));
        assert!(!ok("1.0.0", "1.0.1"));
        assert!(ok(">= 1.0.0 and < 2.0.0", "1.5.0"));
        assert!(!ok(">= 1.0.0 and < 2.0.0", "2.0.0"));
        assert!(ok("~> 1.0 or ~> 3.0", "3.1.0"));
        assert!(!ok("~> 1.0 or ~> 3.0", "2.1.0"));
        assert!(ok(">=1.0.0", "1.0.0"));
        assert!(ok("!= 1.0.0", "1.0.1"));
        assert!(ok("<= 1.0.0", "1.0.0"));
        assert!(!ok("> 1.0.0", "1.0.0"));
    }

    #[test]
    fn pre_releases_within_bounds_match() {
        assert!(ok("~> 1.0", "1.1.0-rc.1"));
        assert!(ok("~> 1.0", "2.0.0-rc.1"));
        assert!(!ok(">= 1.0.0", "1.0.0-rc.1"));
        assert!(ok("~> 1.0.0-rc.1", "1.0.0-rc.2"));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "~>",
            "~> x",
            "1.0.0 and",
            "1.0.0 1.0.1",
            "=> 1.0.0",
            "and 1.0.0",
        ] {
            assert!(Requirement::parse(bad).is_err(), "{bad:?}");
        }
    }
}
