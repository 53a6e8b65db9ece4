//! The choices a registry remembers between runs, so that a later command without the flag
//! keeps them: the `public_key` format (`hexreg build --public-key-format spki`, which gleam's
//! client needs) and whether releases are dated (`--published-at`, which Hex 2.5's
//! `HEX_COOLDOWN` reads).
//!
//! They live in [`SETTINGS_FILE`], a dotfile at the registry's top: `hexreg serve` never serves
//! dotfiles and the engine skips them in listings. The text is one `key = value` per line
//! (`public_key_format = spki`, `published_at = true`), plain so an operator can read and edit
//! it; unknown keys are kept out of the way (ignored), so an older hexreg reads a newer file.
//! A registry without the file (made before it existed) falls back on what it holds: the
//! `public_key`'s PEM header tells its format.

use crate::format::resource_path::ResourcePath;
use crate::format::signing::PublicKeyFormat;
use crate::storage::{Condition, Storage, StorageError};

/// The settings file's path in a registry.
pub const SETTINGS_FILE: &str = ".hexreg-settings";

/// What a registry remembers; `None`: never chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// The format its `public_key` is written in.
    pub public_key_format: Option<PublicKeyFormat>,
    /// Whether releases entering it are dated (`published_at`).
    pub published_at: Option<bool>,
}

/// Why the settings file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The storage failed reading or writing it.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A line of the file is not `key = value` with a known value.
    #[error(
        "{file} line {line}: {reason}; write `public_key_format = pkcs1|spki` and `published_at = true|false`, or delete the file to forget the choices"
    )]
    Invalid {
        /// The file, as shown.
        file: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl Settings {
    /// Parses the file's text; `Err((line, reason))` for a bad line.
    pub fn parse(text: &str) -> Result<Settings, (usize, String)> {
        let mut settings = Settings::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err((n + 1, format!("`{line}` is not `key = value`")));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "public_key_format" => {
                    settings.public_key_format = Some(match value {
                        "pkcs1" => PublicKeyFormat::Pkcs1,
                        "spki" => PublicKeyFormat::Spki,
                        _ => {
                            return Err((
                                n + 1,
                                format!("public_key_format is `{value}`, not pkcs1 or spki"),
                            ));
                        }
                    })
                }
                "published_at" => {
                    settings.published_at = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err((
                                n + 1,
                                format!("published_at is `{value}`, not true or false"),
                            ));
                        }
                    })
                }
                // A newer hexreg's setting.
                _ => {}
            }
        }
        Ok(settings)
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# Choices hexreg keeps for this registry (written by `hexreg build`/`add` when a flag sets them).\n",
        );
        if let Some(format) = self.public_key_format {
            let name = match format {
                PublicKeyFormat::Pkcs1 => "pkcs1",
                PublicKeyFormat::Spki => "spki",
            };
            text.push_str(&format!("public_key_format = {name}\n"));
        }
        if let Some(on) = self.published_at {
            text.push_str(&format!("published_at = {on}\n"));
        }
        text
    }

    /// The registry's settings: its file, else what its `public_key` shows (its format).
    pub fn read(storage: &dyn Storage) -> Result<Settings, SettingsError> {
        let mut settings = match storage.read(SETTINGS_FILE)? {
            Some(object) => Settings::parse(&String::from_utf8_lossy(&object.bytes)).map_err(
                |(line, reason)| SettingsError::Invalid {
                    file: storage.display(SETTINGS_FILE),
                    line,
                    reason,
                },
            )?,
            None => Settings::default(),
        };
        if settings.public_key_format.is_none()
            && let Some(object) = storage.read(&ResourcePath::PublicKey.key())?
        {
            settings.public_key_format = format_of_pem(&object.bytes);
        }
        Ok(settings)
    }

    /// Records `chosen` over what `storage` holds, when it changes anything.
    pub fn remember(storage: &dyn Storage, chosen: Settings) -> Result<(), SettingsError> {
        let existing = storage.read(SETTINGS_FILE)?;
        let old = match &existing {
            Some(object) => {
                Settings::parse(&String::from_utf8_lossy(&object.bytes)).unwrap_or_default()
            }
            None => Settings::default(),
        };
        let new = Settings {
            public_key_format: chosen.public_key_format.or(old.public_key_format),
            published_at: chosen.published_at.or(old.published_at),
        };
        if existing.is_some() && new == old {
            return Ok(());
        }
        if new == Settings::default() {
            return Ok(());
        }
        storage.write(
            SETTINGS_FILE,
            new.to_text().as_bytes(),
            Condition::after(existing.as_ref().map(|o| &o.version)),
        )?;
        Ok(())
    }
}

/// The format of a PEM public key, by its header; `None` for anything else.
pub fn format_of_pem(pem: &[u8]) -> Option<PublicKeyFormat> {
    let text = String::from_utf8_lossy(pem);
    let text = text.trim_start();
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        Some(PublicKeyFormat::Spki)
    } else if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        Some(PublicKeyFormat::Pkcs1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_back_what_they_write() {
        for settings in [
            Settings::default(),
            Settings {
                public_key_format: Some(PublicKeyFormat::Spki),
                published_at: Some(true),
            },
            Settings {
                public_key_format: Some(PublicKeyFormat::Pkcs1),
                published_at: Some(false),
            },
        ] {
            assert_eq!(Settings::parse(&settings.to_text()), Ok(settings));
        }
    }

    #[test]
    fn bad_lines_are_named_and_unknown_keys_ignored() {
        assert_eq!(
            Settings::parse("a_newer_setting = 3\npublished_at = true\n"),
            Ok(Settings {
                public_key_format: None,
                published_at: Some(true)
            })
        );
        let (line, reason) = Settings::parse("# c\npublic_key_format = der\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(reason.contains("der"), "{reason}");
        assert_eq!(Settings::parse("published_at\n").unwrap_err().0, 1);
    }

    #[test]
    fn a_pem_header_tells_the_format() {
        assert_eq!(
            format_of_pem(b"-----BEGIN PUBLIC KEY-----\nAA==\n"),
            Some(PublicKeyFormat::Spki)
        );
        assert_eq!(
            format_of_pem(b"-----BEGIN RSA PUBLIC KEY-----\nAA==\n"),
            Some(PublicKeyFormat::Pkcs1)
        );
        assert_eq!(format_of_pem(b"junk"), None);
    }
}
