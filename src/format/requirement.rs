//! Version requirements in Elixir's syntax (`Version.parse_requirement/1`), as Hex writes them
//! in dependencies, advisories and policies: `~> 1.2`, `>= 1.0.0 and < 2.0.0`,
//! `== 1.0.0 or == 1.1.0`, a bare `1.0.0` meaning `== 1.0.0`.
//!
//! Operators: `==`, `!=`, `>`, `>=`, `<`, `<=` with a full SemVer version, `~>` also with
//! `MAJOR.MINOR`; clauses joined by `and`, which binds tighter than `or`. Matching compares by
//! precedence (build metadata ignored) and lets pre-releases match, as `Version.match?/2` does
//! by default. `~> 2.1` is `>= 2.1.0 and < 3.0.0-0`, `~> 2.1.3` is `>= 2.1.3 and < 2.2.0-0`.

use std::cmp::Ordering;

use crate::format::version;

/// A requirement that is not in Elixir's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a version requirement ({reason}); write it as Elixir does, e.g. `~> 1.2`, `>= 1.0.0 and < 1.4.2` or `== 1.0.0`"
)]
pub struct RequirementError {
    /// The text as given.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// A parsed requirement: alternatives (`or`) of conjunctions (`and`) of comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    text: String,
    any_of: Vec<Vec<Clause>>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    op: Op,
    version: semver::Version,
}

const OPERATORS: [(&str, Option<Op>); 7] = [
    ("==", Some(Op::Eq)),
    ("!=", Some(Op::Ne)),
    (">=", Some(Op::Ge)),
    ("<=", Some(Op::Le)),
    ("~>", None),
    (">", Some(Op::Gt)),
    ("<", Some(Op::Lt)),
];

impl Requirement {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Requirement, RequirementError> {
        let fail = |reason: String| RequirementError {
            text: crate::format::tarball::one_line(text),
            reason,
        };
        if text.trim().is_empty() {
            return Err(fail("it is empty".into()));
        }
        let mut any_of = Vec::new();
        for alternative in split_words(text, "or") {
            let mut all_of = Vec::new();
            for part in split_words(&alternative, "and") {
                all_of.extend(parse_comparison(part.trim()).map_err(fail)?);
            }
            any_of.push(all_of);
        }
        Ok(Requirement {
            text: text.to_string(),
            any_of,
        })
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `version` satisfies the requirement.
    pub fn matches(&self, version: &semver::Version) -> bool {
        self.any_of.iter().any(|all_of| {
            all_of.iter().all(|c| {
                let order = version::compare(version, &c.version);
                match c.op {
                    Op::Eq => order == Ordering::Equal,
                    Op::Ne => order != Ordering::Equal,
                    Op::Gt => order == Ordering::Greater,
                    Op::Ge => order != Ordering::Less,
                    Op::Lt => order == Ordering::Less,
                    Op::Le => order != Ordering::Greater,
                }
            })
        })
    }
}

/// `text` split at the whitespace-separated word `word`; an empty piece (`and` at an end,
/// twice in a row) stays, and fails to parse as a comparison.
fn split_words(text: &str, word: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    for token in text.split_whitespace() {
        if token == word {
            pieces.push(String::new());
        } else if let Some(last) = pieces.last_mut() {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(token);
        }
    }
    pieces
}

/// One comparison, `OP VERSION` or `VERSION`: one clause, or two for `~>`.
fn parse_comparison(text: &str) -> Result<Vec<Clause>, String> {
    if text.is_empty() {
        return Err("`and` or `or` needs a comparison on each side".into());
    }
    let (op, rest) = OPERATORS
        .iter()
        .find_map(|(token, op)| text.strip_prefix(token).map(|rest| (Some(*op), rest)))
        .unwrap_or((None, text));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(format!("`{text}` has no version"));
    }
    if rest.contains(char::is_whitespace) {
        return Err(format!(
            "`{text}` is not one comparison: join comparisons with `and` or `or`"
        ));
    }
    match op {
        // `~>`: the version may lack its patch number.
        Some(None) => pessimistic(rest),
        Some(Some(op)) => Ok(vec![Clause {
            op,
            version: full_version(rest)?,
        }]),
        None => Ok(vec![Clause {
            op: Op::Eq,
            version: full_version(rest)?,
        }]),
    }
}

fn full_version(text: &str) -> Result<semver::Version, String> {
    version::parse(text).map_err(|e| e.to_string())
}

/// `~> VERSION` as two clauses.
fn pessimistic(text: &str) -> Result<Vec<Clause>, String> {
    let core = text.split(['-', '+']).next().unwrap_or_default();
    let (lower, upper) = if core.split('.').count() == 2 {
        let lower = full_version(&format!("{core}.0{}", &text[core.len()..]))?;
        let upper = bump(lower.major.checked_add(1), 0)?;
        (lower, upper)
    } else {
        let lower = full_version(text)?;
        let upper = semver::Version {
            minor: lower
                .minor
                .checked_add(1)
                .ok_or_else(|| format!("`{text}` is too large"))?,
            ..bump(Some(lower.major), 0)?
        };
        (lower, upper)
    };
    Ok(vec![
        Clause {
            op: Op::Ge,
            version: lower,
        },
        Clause {
            op: Op::Lt,
            version: upper,
        },
    ])
}

/// `MAJOR.MINOR.0-0`, the lowest version of that minor.
fn bump(major: Option<u64>, minor: u64) -> Result<semver::Version, String> {
    let major = major.ok_or("the version is too large")?;
    let mut v = semver::Version::new(major, minor, 0);
    v.pre = semver::Prerelease::new("0").map_err(|e| e.to_string())?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(req: &str, v: &str) -> bool {
        Requirement::parse(req)
            .unwrap()
            .matches(&version::parse(v).unwrap())
    }

    #[test]
    fn comparisons_match_as_elixir_does() {
        assert!(matches("== 1.0.0", "1.0.0"));
        assert!(matches("1.0.0", "1.0.0+build"));
        assert!(!matches("1.0.0", "1.0.1"));
        assert!(matches("!= 1.0.0", "1.0.1"));
        assert!(matches(">= 1.0.0 and < 1.4.2", "1.4.1"));
        assert!(!matches(">= 1.0.0 and < 1.4.2", "1.4.2"));
        assert!(!matches(">= 1.0.0 and < 1.4.2", "0.9.0"));
        assert!(matches("< 1.0.0 or > 2.0.0", "2.1.0"));
        assert!(!matches("< 1.0.0 or > 2.0.0", "1.5.0"));
        assert!(matches("<=1.2.3", "1.2.3"));
    }

    #[test]
    fn pessimistic_bounds() {
        assert!(matches("~> 2.1", "2.1.0"));
        assert!(matches("~> 2.1", "2.9.9"));
        assert!(!matches("~> 2.1", "3.0.0"));
        assert!(!matches("~> 2.1", "2.0.9"));
        assert!(matches("~> 2.1.3", "2.1.9"));
        assert!(!matches("~> 2.1.3", "2.2.0"));
        assert!(!matches("~> 2.1.3", "2.2.0-rc.1"));
        assert!(matches("~> 2.0-rc", "2.0.0-rc.1"));
    }

    #[test]
    fn malformed_requirements_are_refused() {
        for bad in [
            "",
            "  ",
            ">=",
            "1.0",
            ">= 1.0",
            "=> 1.0.0",
            "1.0.0 2.0.0",
            ">= 1.0.0 and",
            "or 1.0.0",
            "~> 1",
            "latest",
        ] {
            let e = Requirement::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("is not a version requirement"),
                "{bad}"
            );
        }
    }
}
