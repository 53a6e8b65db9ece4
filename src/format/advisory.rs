//! Security advisories of a package, as Hex 2.5 reads them (`mix hex.audit`, and policies'
//! `advisory_min_severity`): `Package.advisories` of `packages/NAME`, each release's
//! `advisory_indexes` into it, and `Versions.Package.with_advisories`. Free of I/O: what an
//! advisory holds, its checks, and how adding or removing one changes the indexes.
//!
//! The registry format records which releases an advisory affects, not the requirement it was
//! given: the requirement is matched against the releases present when the advisory is added.
//! Adding it again (same id) matches it again, e.g. after new releases.

use crate::format::registry::{AdvisorySeverity, Release, SecurityAdvisory};
use crate::format::requirement::Requirement;

/// An advisory refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdvisoryError {
    /// `--id` is empty or holds whitespace or control characters.
    #[error(
        "--id `{0}` is not an advisory id: give one word without spaces, e.g. GHSA-xxxx-xxxx-xxxx or CVE-2026-1234"
    )]
    Id(String),
    /// `--summary` is empty or holds control characters (a line break, an escape).
    #[error(
        "--summary is empty or holds control characters: give a one-line description of the vulnerability"
    )]
    Summary,
    /// A URL that is not http(s).
    #[error("{flag} `{url}` is not an http:// or https:// URL: give the advisory's web page")]
    Url {
        /// The flag.
        flag: &'static str,
        /// The text given.
        url: String,
    },
    /// `--cvss` out of range.
    #[error("--cvss {0} is not a CVSS score: give a number from 0.0 to 10.0")]
    Cvss(f32),
    /// An alias that is not one word.
    #[error("--alias `{0}` is not an advisory id: give one word without spaces")]
    Alias(String),
}

/// An advisory to add to a package, checked by [`NewAdvisory::check`].
#[derive(Debug, Clone)]
pub struct NewAdvisory {
    /// Its id, e.g. `GHSA-...` (also what `advisory remove` takes).
    pub id: String,
    /// One line on what it is.
    pub summary: String,
    /// Its web page.
    pub html_url: String,
    /// Its machine-readable URL (`api_url`); the web page when not given.
    pub api_url: Option<String>,
    /// How severe.
    pub severity: AdvisorySeverity,
    /// CVSS score, 0.0 to 10.0.
    pub cvss_score: Option<f32>,
    /// Other ids (e.g. the CVE of a GHSA).
    pub aliases: Vec<String>,
    /// The versions it affects.
    pub affects: Requirement,
}

fn is_word(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_url(flag: &'static str, url: &str) -> Result<(), AdvisoryError> {
    let ok = ["https://", "http://"]
        .iter()
        .any(|scheme| url.strip_prefix(scheme).is_some_and(is_word));
    if ok {
        Ok(())
    } else {
        Err(AdvisoryError::Url {
            flag,
            url: crate::format::tarball::one_line(url),
        })
    }
}

impl NewAdvisory {
    /// Checks every field; the requirement was checked when parsed.
    pub fn check(&self) -> Result<(), AdvisoryError> {
        if !is_word(&self.id) {
            return Err(AdvisoryError::Id(crate::format::tarball::one_line(
                &self.id,
            )));
        }
        if self.summary.trim().is_empty() || self.summary.chars().any(char::is_control) {
            return Err(AdvisoryError::Summary);
        }
        check_url("--url", &self.html_url)?;
        if let Some(api_url) = &self.api_url {
            check_url("--api-url", api_url)?;
        }
        if let Some(score) = self.cvss_score
            && !(0.0..=10.0).contains(&score)
        {
            return Err(AdvisoryError::Cvss(score));
        }
        if let Some(alias) = self.aliases.iter().find(|a| !is_word(a)) {
            return Err(AdvisoryError::Alias(crate::format::tarball::one_line(
                alias,
            )));
        }
        Ok(())
    }

    /// The advisory as `package.proto` encodes it.
    pub fn to_proto(&self) -> SecurityAdvisory {
        SecurityAdvisory {
            id: self.id.clone(),
            summary: self.summary.clone(),
            html_url: self.html_url.clone(),
            severity: Some(self.severity as i32),
            cvss_score: self.cvss_score,
            api_url: self
                .api_url
                .clone()
                .unwrap_or_else(|| self.html_url.clone()),
            aliases: self.aliases.clone(),
        }
    }
}

/// Adds `new` to `advisories` (replacing the one with its id, if any) and sets, in each of
/// `releases`, whether it is affected. Returns the versions it affects (possibly none).
pub fn add(
    releases: &mut [Release],
    advisories: &mut Vec<SecurityAdvisory>,
    new: &NewAdvisory,
) -> Vec<String> {
    let index = match advisories.iter().position(|a| a.id == new.id) {
        Some(i) => {
            advisories[i] = new.to_proto();
            i
        }
        None => {
            advisories.push(new.to_proto());
            advisories.len() - 1
        }
    };
    let index = index as u32;
    let mut affected = Vec::new();
    for release in releases {
        release.advisory_indexes.retain(|&i| i != index);
        if new.affects.matches(&release.parsed) {
            release.advisory_indexes.push(index);
            release.advisory_indexes.sort_unstable();
            affected.push(release.version.clone());
        }
    }
    affected
}

/// Removes the advisory `id` from `advisories` and from every release's indexes (renumbering
/// the others). Returns whether there was one.
pub fn remove(releases: &mut [Release], advisories: &mut Vec<SecurityAdvisory>, id: &str) -> bool {
    let Some(index) = advisories.iter().position(|a| a.id == id) else {
        return false;
    };
    advisories.remove(index);
    let index = index as u32;
    for release in releases {
        release.advisory_indexes.retain(|&i| i != index);
        for i in release.advisory_indexes.iter_mut() {
            if *i > index {
                *i -= 1;
            }
        }
    }
    true
}

/// The name of a severity, as the command line spells it.
pub fn severity_name(severity: Option<i32>) -> &'static str {
    match severity.and_then(|s| AdvisorySeverity::try_from(s).ok()) {
        Some(AdvisorySeverity::SeverityNone) | None => "none",
        Some(AdvisorySeverity::SeverityLow) => "low",
        Some(AdvisorySeverity::SeverityMedium) => "medium",
        Some(AdvisorySeverity::SeverityHigh) => "high",
        Some(AdvisorySeverity::SeverityCritical) => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::proto;

    fn release(v: &str) -> Release {
        Release::from_proto(proto::package::Release {
            version: v.into(),
            inner_checksum: vec![0; 32],
            outer_checksum: Some(vec![1; 32]),
            ..Default::default()
        })
        .unwrap()
    }

    fn advisory(id: &str, affects: &str) -> NewAdvisory {
        NewAdvisory {
            id: id.into(),
            summary: "bad".into(),
            html_url: "https://example.com/a".into(),
            api_url: None,
            severity: AdvisorySeverity::SeverityHigh,
            cvss_score: Some(7.5),
            aliases: vec![],
            affects: Requirement::parse(affects).unwrap(),
        }
    }

    #[test]
    fn adding_and_removing_keeps_indexes_right() {
        let mut releases: Vec<Release> = ["1.0.0", "1.1.0", "2.0.0"]
            .iter()
            .map(|v| release(v))
            .collect();
        let mut advisories = Vec::new();
        assert_eq!(
            add(&mut releases, &mut advisories, &advisory("A", "< 2.0.0")),
            ["1.0.0", "1.1.0"]
        );
        add(&mut releases, &mut advisories, &advisory("B", ">= 1.1.0"));
        assert_eq!(releases[1].advisory_indexes, [0, 1]);
        assert_eq!(releases[2].advisory_indexes, [1]);
        // Again with another requirement: replaced, not added.
        add(&mut releases, &mut advisories, &advisory("A", "== 1.0.0"));
        assert_eq!(advisories.len(), 2);
        assert_eq!(releases[1].advisory_indexes, [1]);
        assert!(remove(&mut releases, &mut advisories, "A"));
        assert_eq!(advisories.len(), 1);
        assert!(releases[0].advisory_indexes.is_empty());
        assert_eq!(releases[1].advisory_indexes, [0]);
        assert_eq!(releases[2].advisory_indexes, [0]);
        assert!(!remove(&mut releases, &mut advisories, "A"));
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut a = advisory("GHSA-1", "1.0.0");
        assert_eq!(a.check(), Ok(()));
        assert_eq!(a.to_proto().api_url, "https://example.com/a");
        a.id = "has space".into();
        assert!(matches!(a.check(), Err(AdvisoryError::Id(_))));
        a.id = "ok".into();
        a.html_url = "ftp://x".into();
        assert!(matches!(a.check(), Err(AdvisoryError::Url { .. })));
        a.html_url = "https://x".into();
        a.cvss_score = Some(11.0);
        assert!(matches!(a.check(), Err(AdvisoryError::Cvss(_))));
        a.cvss_score = Some(f32::NAN);
        assert!(matches!(a.check(), Err(AdvisoryError::Cvss(_))));
        a.cvss_score = None;
        a.summary = "two\nlines".into();
        assert_eq!(a.check(), Err(AdvisoryError::Summary));
    }
}
