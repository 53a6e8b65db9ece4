//! How long after its publication a release may be replaced or reverted through the API
//! (`hexreg serve --replace-window`), as hex.pm allows for one hour: parsed, shown, and
//! applied, without I/O.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long a release stays open to replace and revert through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceWindow {
    /// While younger than this (zero: never).
    Within(Duration),
    /// At any age (hex.pm's organizations).
    Unlimited,
}

impl Default for ReplaceWindow {
    /// hex.pm's one hour.
    fn default() -> Self {
        ReplaceWindow::Within(Duration::from_secs(3600))
    }
}

/// A window that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{text:?} is not a replace window: give a number with a unit (`90s`, `30m`, `1h`, `7d`), `0` to refuse every replace, or `unlimited`"
)]
pub struct WindowError {
    /// The text given.
    pub text: String,
}

impl FromStr for ReplaceWindow {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, WindowError> {
        let bad = || WindowError {
            text: text.to_string(),
        };
        let t = text.trim();
        if t == "unlimited" {
            return Ok(ReplaceWindow::Unlimited);
        }
        if t == "0" {
            return Ok(ReplaceWindow::Within(Duration::ZERO));
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = t.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let secs = number.checked_mul(unit_secs).ok_or_else(bad)?;
        Ok(ReplaceWindow::Within(Duration::from_secs(secs)))
    }
}

impl fmt::Display for ReplaceWindow {
    /// In words: `one hour`, `90 minutes`, `2 days`, `0 seconds`, `unlimited`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ReplaceWindow::Within(d) = self else {
            return f.write_str("unlimited");
        };
        let secs = d.as_secs();
        let (n, unit) = if secs != 0 && secs % 86_400 == 0 {
            (secs / 86_400, "day")
        } else if secs != 0 && secs % 3600 == 0 {
            (secs / 3600, "hour")
        } else if secs != 0 && secs % 60 == 0 {
            (secs / 60, "minute")
        } else {
            (secs, "second")
        };
        match n {
            1 => write!(f, "one {unit}"),
            n => write!(f, "{n} {unit}s"),
        }
    }
}

impl ReplaceWindow {
    /// Whether a release published at `published` (Unix seconds) may be changed at `now`.
    pub fn allows(self, published: i64, now: i64) -> bool {
        match self {
            ReplaceWindow::Unlimited => true,
            ReplaceWindow::Within(d) => {
                !d.is_zero() && now.saturating_sub(published) < d.as_secs() as i64
            }
        }
    }

    /// hex.pm's words for a change refused: "can only modify a release up to one hour after
    /// publication", with this window's length.
    pub fn refusal(self) -> String {
        match self {
            ReplaceWindow::Within(d) if d.is_zero() => {
                "this registry does not allow modifying a release after publication (hexreg serve --replace-window 0); ask its operator".to_string()
            }
            _ => format!("can only modify a release up to {self} after publication"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let hour: ReplaceWindow = "1h".parse().unwrap();
        assert_eq!(hour, ReplaceWindow::default());
        assert_eq!(
            hour.refusal(),
            "can only modify a release up to one hour after publication"
        );
        assert_eq!(
            "90m".parse::<ReplaceWindow>().unwrap().to_string(),
            "90 minutes"
        );
        assert_eq!("2d".parse::<ReplaceWindow>().unwrap().to_string(), "2 days");
        assert!(hour.allows(1000, 1000 + 3599));
        assert!(!hour.allows(1000, 1000 + 3600));
        let never: ReplaceWindow = "0".parse().unwrap();
        assert!(!never.allows(1000, 1000));
        assert!(never.refusal().contains("--replace-window 0"));
        let always: ReplaceWindow = "unlimited".parse().unwrap();
        assert!(always.allows(0, i64::MAX));
        for bad in ["", "h", "1y", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<ReplaceWindow>().is_err(), "{bad}");
        }
    }
}
