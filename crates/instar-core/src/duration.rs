//! Durations as people write them (`500ms`, `30s`, `5m`, `2h 30m`, `30d`): one
//! parser for flags, `instar.toml` and `migration.toml`, so they all accept the same text.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration accepted anywhere: ten years. Longer values are
/// almost certainly typos, and arithmetic on instants stays far from overflow.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses a duration: a number with a unit (`ms`, `s`, `m`, `h`, `d`, and the
/// other units humantime knows), several such parts (`1h 30m`), or a bare
/// whole number of seconds. Never panics; the error says what is accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let help = "use a number with a unit, e.g. 500ms, 30s, 5m, 2h or 30d";
    if t.is_empty() {
        return Err(format!("empty duration: {help}"));
    }
    if t.starts_with('-') {
        return Err(format!("duration {text:?} is negative: {help}"));
    }
    let d = if t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("duration {text:?} is too long (the limit is 3650 days)"))?
    } else {
        humantime::parse_duration(t).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => {
                format!("duration {text:?} is too long (the limit is 3650 days)")
            }
            other => format!("invalid duration {text:?} ({other}): {help}"),
        })?
    };
    if d > MAX {
        return Err(format!(
            "duration {text:?} is too long (the limit is 3650 days)"
        ));
    }
    Ok(d)
}

/// A duration read from a file or a flag, kept with the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dur {
    /// The parsed value.
    pub value: Duration,
    /// The text as written.
    pub text: String,
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Dur {
            value: parse(s)?,
            text: s.to_string(),
        })
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("2h 30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse(" 7 ").unwrap(), Duration::from_secs(7));
    }

    #[test]
    fn refusals_say_what_to_write_and_never_panic() {
        for bad in [
            "",
            "-5s",
            "1e3s",
            "5 parsecs",
            "99999999999999999999s",
            "99999999999999999999",
            "4000d",
            "1.5.2s",
            "s",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(
                e.contains("e.g.") || e.contains("limit"),
                "{bad:?} gave {e:?}"
            );
            assert!(!e.contains("float"), "{bad:?} gave {e:?}");
        }
    }
}
