//! Package versions and their order, as Elixir's `Version.parse/1` and `Version.compare/2` see
//! them: SemVer 2.0 with pre-release precedence, build metadata ignored when comparing.

use std::cmp::Ordering;

/// A version string that is not SemVer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("`{text}` is not a SemVer version (MAJOR.MINOR.PATCH[-PRE][+BUILD]): {reason}")]
pub struct VersionError {
    /// The text as found.
    pub text: String,
    /// What the parser objected to.
    pub reason: String,
}

/// Parses a version, e.g. `1.0.0-rc.1`.
pub fn parse(text: &str) -> Result<semver::Version, VersionError> {
    semver::Version::parse(text).map_err(|e| VersionError {
        text: text.to_string(),
        reason: e.to_string(),
    })
}

/// Orders two parsed versions as `Version.compare/2` does: by precedence, so `1.0.0+a` and
/// `1.0.0+b` are equal.
pub fn compare(a: &semver::Version, b: &semver::Version) -> Ordering {
    a.cmp_precedence(b)
}

/// Sorts items by version precedence; items of equal precedence (differing only in build
/// metadata) keep a deterministic order by their full text.
pub fn sort_by_version<T>(items: &mut [T], version: impl Fn(&T) -> &semver::Version) {
    items.sort_by(|a, b| {
        let (va, vb) = (version(a), version(b));
        compare(va, vb).then_with(|| va.build.as_str().cmp(vb.build.as_str()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<_> = list.iter().map(|s| parse(s).unwrap()).collect();
        sort_by_version(&mut v, |v| v);
        v.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn orders_like_elixir() {
        assert_eq!(
            sorted(&[
                "1.0.0",
                "0.10.0",
                "1.0.0-rc.1",
                "0.9.0",
                "0.2.0",
                "0.1.1",
                "0.1.0",
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-beta"
            ]),
            [
                "0.1.0",
                "0.1.1",
                "0.2.0",
                "0.9.0",
                "0.10.0",
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0"
            ]
        );
    }

    #[test]
    fn build_metadata_is_ignored_when_comparing() {
        let a = parse("2.0.0+build.5").unwrap();
        let b = parse("2.0.0").unwrap();
        assert_eq!(compare(&a, &b), Ordering::Equal);
        assert_eq!(
            sorted(&["2.0.0+b", "2.0.0+a", "1.0.0"]),
            ["1.0.0", "2.0.0+a", "2.0.0+b"]
        );
    }

    #[test]
    fn rejects_what_is_not_semver() {
        for bad in ["1.0", "v1.0.0", "1.0.0.0", "", "1.0.0-", "01.0.0", "1.0.0 "] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().contains("not a SemVer version"), "{bad}");
        }
    }
}
