//! The packages a write key may change (`hexreg key add --write --packages PATTERN,...`):
//! patterns of package names where `*` matches any run of characters, without I/O.

use std::fmt;

/// The package names a key may write: any name matching one of its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    patterns: Vec<String>,
}

impl Scope {
    /// Parses `PATTERN[,PATTERN...]`: each pattern lowercase letters, digits, `_` and `*`.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let patterns: Vec<String> = text.split(',').map(str::to_string).collect();
        for p in &patterns {
            let valid = !p.is_empty()
                && p.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'*'));
            if !valid {
                return Err(format!(
                    "{:?} is not a package pattern: use lowercase letters, digits, `_` and `*` (any run of characters), several separated by commas",
                    crate::format::tarball::one_line(p)
                ));
            }
        }
        Ok(Scope { patterns })
    }

    /// Whether the key may write package `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| glob(p.as_bytes(), name.as_bytes()))
    }
}

impl fmt::Display for Scope {
    /// `PATTERN,PATTERN`, as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.patterns.join(","))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes: the classic greedy
/// matcher with one backtrack point, linear in practice and O(pattern × text) at worst.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let scope = Scope::parse("acme_*,tool").unwrap();
        assert!(scope.allows("acme_a"));
        assert!(scope.allows("acme_"));
        assert!(scope.allows("tool"));
        assert!(!scope.allows("tools"));
        assert!(!scope.allows("xacme_a"));
        assert_eq!(scope.to_string(), "acme_*,tool");
        let mid = Scope::parse("a*b*c").unwrap();
        assert!(mid.allows("abc") && mid.allows("axxbyyc") && !mid.allows("axxbyy"));
        assert!(Scope::parse("*").unwrap().allows("anything"));
        for bad in ["", "a,,b", "Acme", "a b", "a/b"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }
}
