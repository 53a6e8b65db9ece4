//! Dependency policies of Hex 2.5: `policies/NAME`, `gzip(Signed{Policy})` as hex_core's
//! `hex_pb_policy.proto` defines it, which mix loads with `HEX_POLICY=REPO/NAME` and applies to
//! dependency resolution and `mix hex.audit`. Free of I/O: the names, durations and overrides
//! a policy may hold, and its payload.

use prost::Message;

use crate::format::proto::policy::{
    AdvisorySeverity, Override, OverrideAction, PackageRef, Policy, RepositoryPolicy, Restriction,
    RetirementReason, Visibility,
};
use crate::format::registry::{self, ResourceError};
use crate::format::requirement::{Requirement, RequirementError};

/// What a policy name looks like, for error messages (hex_core's rule).
pub const NAME_RULE: &str = "3 to 64 characters: lowercase letters, digits, `_`, `-` and `.`, starting and ending with a letter or digit";

/// A policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A name clients cannot fetch, or that would leave `policies/`.
    #[error("policy name `{0}` is not valid ({NAME_RULE})")]
    Name(String),
    /// A cooldown Hex cannot parse.
    #[error(
        "--cooldown `{0}` is not a duration Hex reads: give `0` or a whole number of days, weeks or months, e.g. `7d`, `2w`, `1mo`"
    )]
    Cooldown(String),
    /// An override that names no valid package.
    #[error(
        "{flag} `{text}` does not start with a package name ({})",
        crate::format::package_name::RULE
    )]
    OverridePackage {
        /// `--allow` or `--deny`.
        flag: &'static str,
        /// The text given.
        text: String,
    },
    /// An override whose requirement does not parse.
    #[error("{flag} `{package}:...`: {source}")]
    OverrideRequirement {
        /// `--allow` or `--deny`.
        flag: &'static str,
        /// The package.
        package: String,
        /// What is wrong with the requirement.
        source: RequirementError,
    },
    /// A description with control characters.
    #[error(
        "--description holds control characters (a line break, an escape): give one line of text"
    )]
    Description,
    /// A repository name that is empty or holds whitespace.
    #[error(
        "--repository `{0}` is not a repository name: give the name clients use, e.g. `hexpm` or the registry's --name"
    )]
    Repository(String),
}

/// Whether `name` is a policy name hex_core accepts: `^[a-z0-9][a-z0-9_\-\.]*[a-z0-9]$`,
/// 3 to 64 characters. No `/`, so `policies/NAME` never leaves its directory.
pub fn is_valid_name(name: &str) -> bool {
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=64).contains(&name.len())
        && name.starts_with(edge)
        && name.ends_with(edge)
        && name
            .chars()
            .all(|c| edge(c) || matches!(c, '_' | '-' | '.'))
}

/// Checks a cooldown as Hex's `Hex.Cooldown.duration_to_seconds/1` parses it: `0`, or digits
/// then `d`, `w` or `mo`. Returns its length in seconds.
pub fn cooldown_seconds(text: &str) -> Result<u64, PolicyError> {
    let bad = || PolicyError::Cooldown(crate::format::tarball::one_line(text));
    if text == "0" {
        return Ok(0);
    }
    let (digits, unit) = if let Some(d) = text.strip_suffix("mo") {
        (d, 30 * 86_400)
    } else if let Some(d) = text.strip_suffix('w') {
        (d, 7 * 86_400)
    } else if let Some(d) = text.strip_suffix('d') {
        (d, 86_400)
    } else {
        return Err(bad());
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(unit).ok_or_else(bad)
}

/// An `--allow` or `--deny` override: `PKG` or `PKG:REQUIREMENT`.
pub fn parse_override(flag: &'static str, text: &str) -> Result<PackageRef, PolicyError> {
    let (package, requirement) = match text.split_once(':') {
        Some((p, r)) => (p, Some(r)),
        None => (text, None),
    };
    if !crate::format::package_name::is_valid(package) {
        return Err(PolicyError::OverridePackage {
            flag,
            text: crate::format::tarball::one_line(text),
        });
    }
    if let Some(requirement) = requirement {
        Requirement::parse(requirement).map_err(|source| PolicyError::OverrideRequirement {
            flag,
            package: package.to_string(),
            source,
        })?;
    }
    Ok(PackageRef {
        package: package.to_string(),
        requirement: requirement.map(str::to_string),
    })
}

/// A policy as `hexreg policy set` describes it.
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    /// Its name, `policies/NAME`.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Readable by anyone who can read the registry (public) or not.
    pub public: bool,
    /// The repository whose releases it constrains (the registry's own name, `hexpm`...).
    pub repository: String,
    /// Minimum release age.
    pub cooldown: Option<String>,
    /// Deny releases with an advisory at least this severe.
    pub min_severity: Option<AdvisorySeverity>,
    /// Deny releases retired for these reasons.
    pub retired: Vec<RetirementReason>,
    /// Packages (and versions) always allowed.
    pub allow: Vec<PackageRef>,
    /// Packages (and versions) always denied.
    pub deny: Vec<PackageRef>,
}

impl PolicySpec {
    /// Checks the name, the repository and the cooldown (overrides are checked when parsed).
    pub fn check(&self) -> Result<(), PolicyError> {
        if !is_valid_name(&self.name) {
            return Err(PolicyError::Name(crate::format::tarball::one_line(
                &self.name,
            )));
        }
        if self.repository.is_empty()
            || self
                .repository
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(PolicyError::Repository(crate::format::tarball::one_line(
                &self.repository,
            )));
        }
        if let Some(cooldown) = &self.cooldown {
            cooldown_seconds(cooldown)?;
        }
        if self
            .description
            .as_deref()
            .is_some_and(|d| d.chars().any(char::is_control))
        {
            return Err(PolicyError::Description);
        }
        Ok(())
    }

    /// The `Policy` message of repository `repo`.
    pub fn to_proto(&self, repo: &str) -> Policy {
        let has_restriction =
            self.cooldown.is_some() || self.min_severity.is_some() || !self.retired.is_empty();
        let restriction = has_restriction.then(|| Restriction {
            advisory_min_severity: self.min_severity.map(|s| s as i32),
            retirement_reasons: self.retired.iter().map(|r| *r as i32).collect(),
            cooldown: self.cooldown.clone(),
        });
        let overrides = self
            .allow
            .iter()
            .map(|r| (OverrideAction::Allow, r))
            .chain(self.deny.iter().map(|r| (OverrideAction::Deny, r)))
            .map(|(action, r)| Override {
                action: action as i32,
                r#ref: r.clone(),
                advisory_id: None,
                retirement_reason: None,
                comment: None,
            })
            .collect();
        Policy {
            repository: repo.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            visibility: if self.public {
                Visibility::Public
            } else {
                Visibility::Private
            } as i32,
            repositories: vec![RepositoryPolicy {
                repository: self.repository.clone(),
                restriction,
                overrides,
            }],
        }
    }
}

/// The `policies/NAME` payload of `spec` in repository `repo`.
pub fn policy_payload(repo: &str, spec: &PolicySpec) -> Vec<u8> {
    spec.to_proto(repo).encode_to_vec()
}

/// Decodes a `policies/NAME` payload and checks its repository and name, as the registry's
/// other resources are checked.
pub fn decode_policy(payload: &[u8], repo: &str, name: &str) -> Result<Policy, ResourceError> {
    let policy = Policy::decode(payload).map_err(|e| ResourceError::BadPayload {
        kind: "Policy",
        reason: e.to_string(),
    })?;
    if policy.repository != repo {
        return Err(ResourceError::WrongRepository {
            expected: repo.to_string(),
            found: policy.repository,
        });
    }
    if policy.name != name {
        return Err(ResourceError::WrongPackage {
            expected: name.to_string(),
            found: policy.name,
        });
    }
    Ok(policy)
}

/// Opens a `policies/NAME` file: gunzips it, checks its signature with `key`, decodes it and
/// checks its repository and name.
pub fn open_policy(
    file: &[u8],
    key: &crate::format::signing::PublicKey,
    repo: &str,
    name: &str,
) -> Result<Policy, ResourceError> {
    let opened = registry::open(file)?;
    opened.verify(key)?;
    decode_policy(&opened.payload, repo, name)
}

/// One line describing a policy, for `policy list`.
pub fn describe(policy: &Policy) -> String {
    let mut parts = Vec::new();
    for rp in &policy.repositories {
        let mut what = vec![format!("repository {}", rp.repository)];
        if let Some(r) = &rp.restriction {
            if let Some(c) = &r.cooldown {
                what.push(format!("cooldown {c}"));
            }
            if let Some(s) = r.advisory_min_severity {
                what.push(format!(
                    "min-severity {}",
                    crate::format::advisory::severity_name(Some(s))
                ));
            }
            if !r.retirement_reasons.is_empty() {
                let reasons: Vec<&str> = r
                    .retirement_reasons
                    .iter()
                    .map(|&r| reason_name(r))
                    .collect();
                what.push(format!("retired {}", reasons.join(",")));
            }
        }
        for o in &rp.overrides {
            let action = match OverrideAction::try_from(o.action) {
                Ok(OverrideAction::Allow) => "allow",
                Ok(OverrideAction::Deny) => "deny",
                _ => "override",
            };
            match &o.r#ref.requirement {
                Some(req) => what.push(format!("{action} {}:{req}", o.r#ref.package)),
                None => what.push(format!("{action} {}", o.r#ref.package)),
            }
        }
        parts.push(what.join(", "));
    }
    let visibility = if policy.visibility == Visibility::Public as i32 {
        "public"
    } else {
        "private"
    };
    format!("{} ({visibility}): {}", policy.name, parts.join("; "))
}

/// The name of a retirement reason, as the command line spells it.
pub fn reason_name(reason: i32) -> &'static str {
    crate::format::registry::RetirementReason::try_from(reason)
        .map_or("unknown", crate::format::registry::RetirementReason::to_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_hex_core() {
        for good in ["strict", "ci-7d", "a.b_c", "abc", "0ab"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "ab",
            "a/bc",
            "../x",
            "Strict",
            "-abc",
            "abc.",
            "",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn cooldowns_parse_as_hex_does() {
        assert_eq!(cooldown_seconds("0"), Ok(0));
        assert_eq!(cooldown_seconds("7d"), Ok(7 * 86_400));
        assert_eq!(cooldown_seconds("2w"), Ok(14 * 86_400));
        assert_eq!(cooldown_seconds("1mo"), Ok(30 * 86_400));
        for bad in ["", "7", "d", "7h", "-1d", "1.5d", "7 d", "0d0"] {
            assert!(cooldown_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_take_a_package_and_an_optional_requirement() {
        let r = parse_override("--allow", "jason:~> 1.4").unwrap();
        assert_eq!(r.package, "jason");
        assert_eq!(r.requirement.as_deref(), Some("~> 1.4"));
        assert_eq!(parse_override("--deny", "evil").unwrap().requirement, None);
        assert!(matches!(
            parse_override("--deny", "Evil"),
            Err(PolicyError::OverridePackage { .. })
        ));
        assert!(matches!(
            parse_override("--deny", "evil:>= 1.0"),
            Err(PolicyError::OverrideRequirement { .. })
        ));
    }

    #[test]
    fn payload_round_trips_and_checks_names() {
        let spec = PolicySpec {
            name: "strict".into(),
            repository: "acme".into(),
            cooldown: Some("7d".into()),
            min_severity: Some(AdvisorySeverity::SeverityHigh),
            retired: vec![RetirementReason::RetiredSecurity],
            deny: vec![parse_override("--deny", "evil").unwrap()],
            ..Default::default()
        };
        spec.check().unwrap();
        let payload = policy_payload("acme", &spec);
        let policy = decode_policy(&payload, "acme", "strict").unwrap();
        let restriction = policy.repositories[0].restriction.clone().unwrap();
        assert_eq!(restriction.cooldown.as_deref(), Some("7d"));
        assert_eq!(restriction.retirement_reasons, [2]);
        assert_eq!(policy.repositories[0].overrides[0].action, 1);
        assert!(decode_policy(&payload, "other", "strict").is_err());
        assert!(decode_policy(&payload, "acme", "lax").is_err());
        assert_eq!(
            describe(&policy),
            "strict (private): repository acme, cooldown 7d, min-severity high, retired security, deny evil"
        );
    }
}
