//! The AWS shared files, `~/.aws/credentials` and `~/.aws/config`, read as the AWS CLI and SDKs
//! read them, for what `object_store`'s environment reading lacks: `AWS_PROFILE` and static
//! keys, a region and an endpoint kept in those files.
//!
//! The profile is `AWS_PROFILE` (or `AWS_DEFAULT_PROFILE`), else `default`. Its section is
//! `[NAME]` in the credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
//! `~/.aws/credentials`) and `[profile NAME]` (`[default]` for the default) in the config file
//! (`AWS_CONFIG_FILE`, default `~/.aws/config`); the credentials file wins where both set a key.
//! As in the SDKs, the environment wins over the files: a key is taken from a file only when
//! its environment variable is unset. Profiles that get their credentials some other way
//! (`role_arn`, `sso_session`, `credential_process`, ...) are refused with what to do, rather
//! than silently ignored.
//!
//! Free of I/O: the caller passes how to read a variable and a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// `AWS_PROFILE` names a profile that neither file has.
    #[error(
        "AWS_PROFILE is {profile:?}, but neither {credentials} nor {config} has that profile: check the name, or unset AWS_PROFILE"
    )]
    Missing {
        /// The profile.
        profile: String,
        /// The credentials file, as looked up.
        credentials: String,
        /// The config file, as looked up.
        config: String,
    },
    /// The profile gets its credentials in a way hexreg does not implement.
    #[error(
        "profile {profile:?} in {file} uses `{key}`, which hexreg does not support: export the credentials first (AWS CLI v2: eval \"$(aws configure export-credentials --profile {profile} --format env)\")"
    )]
    Unsupported {
        /// The profile.
        profile: String,
        /// The file that says so.
        file: String,
        /// The key.
        key: String,
    },
}

/// Keys of a profile that hexreg does not implement: each gets credentials another way.
const UNSUPPORTED: [&str; 6] = [
    "role_arn",
    "source_profile",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
];

/// Each profile key hexreg uses, its `object_store` setting and the environment variables that
/// win over it.
const KEYS: [(&str, &str, &[&str]); 5] = [
    (
        "aws_access_key_id",
        "aws_access_key_id",
        &["AWS_ACCESS_KEY_ID"],
    ),
    (
        "aws_secret_access_key",
        "aws_secret_access_key",
        &["AWS_SECRET_ACCESS_KEY"],
    ),
    (
        "aws_session_token",
        "aws_session_token",
        &["AWS_SESSION_TOKEN"],
    ),
    (
        "region",
        "aws_region",
        &["AWS_REGION", "AWS_DEFAULT_REGION"],
    ),
    (
        "endpoint_url",
        "aws_endpoint",
        &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"],
    ),
];

/// The `object_store` settings (key, value) the shared files give, where the environment does
/// not set them. `var` reads an environment variable; `read` a file (`None`: absent or
/// unreadable, as the SDKs treat it).
pub fn settings(
    var: impl Fn(&str) -> Option<String>,
    read: impl Fn(&Path) -> Option<String>,
) -> Result<Vec<(String, String)>, ProfileError> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    let named = set("AWS_PROFILE").or_else(|| set("AWS_DEFAULT_PROFILE"));
    let profile = named.clone().unwrap_or_else(|| "default".to_string());
    let home = set("HOME").map(PathBuf::from);
    let file = |variable: &str, name: &str| {
        set(variable)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let credentials_path = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_path = file("AWS_CONFIG_FILE", "config");
    let section_of = |path: &Option<PathBuf>, section: &str| {
        let text = path.as_deref().and_then(&read)?;
        parse(&text).remove(section)
    };
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let from_credentials = section_of(&credentials_path, &profile);
    let from_config = section_of(&config_path, &config_section);
    let shown = |path: &Option<PathBuf>| {
        path.as_ref()
            .map_or("(no HOME)".to_string(), |p| p.display().to_string())
    };
    if from_credentials.is_none() && from_config.is_none() {
        return match named {
            Some(profile) => Err(ProfileError::Missing {
                profile,
                credentials: shown(&credentials_path),
                config: shown(&config_path),
            }),
            None => Ok(Vec::new()),
        };
    }
    let mut merged = from_config.unwrap_or_default();
    let has_static_keys = from_credentials
        .as_ref()
        .is_some_and(|s| s.contains_key("aws_access_key_id"))
        || merged.contains_key("aws_access_key_id");
    for (section, path) in [
        (from_credentials.as_ref(), &credentials_path),
        (Some(&merged), &config_path),
    ] {
        let Some(section) = section else { continue };
        if let Some(key) = UNSUPPORTED.iter().find(|k| section.contains_key(**k))
            && !has_static_keys
            && set("AWS_ACCESS_KEY_ID").is_none()
        {
            return Err(ProfileError::Unsupported {
                profile,
                file: shown(path),
                key: key.to_string(),
            });
        }
    }
    merged.extend(from_credentials.unwrap_or_default());
    Ok(KEYS
        .iter()
        .filter(|(_, _, vars)| vars.iter().all(|v| set(v).is_none()))
        .filter_map(|(key, setting, _)| {
            merged
                .get(*key)
                .map(|value| (setting.to_string(), value.clone()))
        })
        .collect())
}

/// An INI file as the AWS tools write it: `[section]` headers, `key = value` lines, `#` and `;`
/// comments; keys lowercased. Indented lines (nested `s3 =` blocks) are skipped.
fn parse(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('='))
            && let Some(entries) = sections.get_mut(section)
        {
            entries.insert(key.trim().to_lowercase(), value.trim().to_string());
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(
        env: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, ProfileError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect();
        settings(|k| env.get(k).cloned(), |p| files.get(p).cloned())
    }

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = sdefault\n\n# comment\n[ci]\naws_access_key_id=AKCI\naws_secret_access_key = sci\naws_session_token = tci\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile ci]\nregion = us-west-2\nendpoint_url = http://127.0.0.1:9000\ns3 =\n  addressing_style = path\n[profile sso]\nsso_session = corp\n";

    fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_named_profile_gives_keys_region_and_endpoint() {
        let got = run(
            &[("HOME", "/h"), ("AWS_PROFILE", "ci")],
            &[
                ("/h/.aws/credentials", CREDENTIALS),
                ("/h/.aws/config", CONFIG),
            ],
        )
        .unwrap();
        assert_eq!(setting(&got, "aws_access_key_id"), Some("AKCI"));
        assert_eq!(setting(&got, "aws_secret_access_key"), Some("sci"));
        assert_eq!(setting(&got, "aws_session_token"), Some("tci"));
        assert_eq!(setting(&got, "aws_region"), Some("us-west-2"));
        assert_eq!(setting(&got, "aws_endpoint"), Some("http://127.0.0.1:9000"));
    }

    #[test]
    fn without_aws_profile_the_default_profile_is_read() {
        let got = run(
            &[("HOME", "/h")],
            &[
                ("/h/.aws/credentials", CREDENTIALS),
                ("/h/.aws/config", CONFIG),
            ],
        )
        .unwrap();
        assert_eq!(setting(&got, "aws_access_key_id"), Some("AKDEFAULT"));
        assert_eq!(setting(&got, "aws_region"), Some("eu-west-1"));
        assert_eq!(setting(&got, "aws_endpoint"), None);
    }

    #[test]
    fn the_environment_wins_and_the_file_variables_move_the_files() {
        let got = run(
            &[
                ("HOME", "/h"),
                ("AWS_PROFILE", "ci"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/etc/creds"),
                ("AWS_CONFIG_FILE", "/etc/conf"),
                ("AWS_REGION", "ap-south-1"),
                ("AWS_ENDPOINT_URL", "http://elsewhere"),
            ],
            &[("/etc/creds", CREDENTIALS), ("/etc/conf", CONFIG)],
        )
        .unwrap();
        assert_eq!(setting(&got, "aws_access_key_id"), Some("AKCI"));
        assert_eq!(setting(&got, "aws_region"), None, "AWS_REGION wins");
        assert_eq!(setting(&got, "aws_endpoint"), None, "AWS_ENDPOINT_URL wins");
    }

    #[test]
    fn no_files_and_no_profile_give_nothing_but_a_missing_named_profile_is_an_error() {
        assert!(run(&[("HOME", "/h")], &[]).unwrap().is_empty());
        let e = run(&[("HOME", "/h"), ("AWS_PROFILE", "nope")], &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"nope\""), "{text}");
        assert!(text.contains("/h/.aws/credentials"), "{text}");
    }

    #[test]
    fn a_profile_without_static_keys_that_needs_sso_is_refused() {
        let e = run(
            &[("HOME", "/h"), ("AWS_PROFILE", "sso")],
            &[("/h/.aws/config", CONFIG)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("sso_session"), "{e}");
        assert!(e.to_string().contains("export-credentials"), "{e}");
    }
}
