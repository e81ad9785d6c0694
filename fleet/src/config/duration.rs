//! Durations written as text in config files: `"250ms"`, `"10s"`, `"5m"`, `"1h"`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};
use thiserror::Error;

/// A duration with millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub u64);

impl Millis {
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| DurationError::NoUnit(text.to_owned()))?;
        let (number, unit) = text.split_at(split);
        let value: u64 = number
            .parse()
            .map_err(|_| DurationError::NoNumber(text.to_owned()))?;
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    text: text.to_owned(),
                });
            }
        };
        value
            .checked_mul(scale)
            .map(Millis)
            .ok_or_else(|| DurationError::TooLong(text.to_owned()))
    }
}

/// Why a duration in the config file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("{0:?} has no unit; write e.g. \"500ms\", \"10s\", \"5m\"")]
    NoUnit(String),
    #[error("{0:?} does not start with a whole number")]
    NoNumber(String),
    #[error("unknown unit {unit:?} in {text:?}; use ms, s, m or h")]
    UnknownUnit { unit: String, text: String },
    #[error("{0:?} is too long")]
    TooLong(String),
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Millis::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(Millis::parse("250ms"), Ok(Millis(250)));
        assert_eq!(Millis::parse("10s"), Ok(Millis(10_000)));
        assert_eq!(Millis::parse("5m"), Ok(Millis(300_000)));
        assert_eq!(Millis::parse("1h"), Ok(Millis(3_600_000)));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(matches!(Millis::parse("10"), Err(DurationError::NoUnit(_))));
        assert!(matches!(
            Millis::parse("10d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(Millis::parse("ms").is_err());
        assert!(Millis::parse("99999999999999999999h").is_err());
    }
}
