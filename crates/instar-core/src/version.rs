//! Migration versions and the order each layout gives them.
//!
//! Every layout orders versions the way the tool that owns it does, so an
//! adopted project runs in the order it always ran:
//! - Instar: every run of digits is a number (`2 < 10`, `2018-01-14-171611` works);
//! - diesel: the text with `-` removed, compared as a string;
//! - sqlx: one signed 64-bit integer;
//! - Flyway: dotted (or `_`-separated) numeric parts, trailing zero parts ignored.
//!
//! Repeatable migrations (Flyway `R__`) have no version; they sort after all
//! versioned ones, by name.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

/// Which tool's file layout a migration was read from; decides version order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `<version>_<name>/up.sql` (+ `down.sql`, `migration.toml`), numeric-segment order.
    Instar,
    /// diesel's `<version>_<name>/up.sql`, string order with `-` removed.
    Diesel,
    /// sqlx's `<version>_<name>.sql` or `.up.sql`/`.down.sql`, integer order.
    Sqlx,
    /// Flyway's `V<version>__<name>.sql`, `U…` undo and `R__…` repeatable files.
    Flyway,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Instar => "instar",
            Layout::Diesel => "diesel",
            Layout::Sqlx => "sqlx",
            Layout::Flyway => "flyway",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Numbers(Vec<u128>),
    Text(String),
    Repeatable(String),
}

/// A migration version: the text as written plus the key it orders by.
///
/// Two versions are equal when their keys are equal (`V1.0` and `V1` in Flyway),
/// which is how duplicates are caught.
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    key: Key,
}

impl Version {
    /// Parses `text` as a version of `layout`; `None` when it is not one.
    pub fn parse(text: &str, layout: Layout) -> Option<Version> {
        if text.is_empty() || !text.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        let key = match layout {
            Layout::Instar => Key::Numbers(digit_runs(text)?),
            Layout::Diesel => {
                if !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return None;
                }
                Key::Text(text.replace('-', ""))
            }
            Layout::Sqlx => {
                let n: i64 = text.parse().ok()?;
                Key::Numbers(vec![u128::try_from(n).ok()?])
            }
            Layout::Flyway => {
                let mut parts = Vec::new();
                for part in text.split(['.', '_']) {
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    parts.push(part.parse::<u128>().ok()?);
                }
                while parts.len() > 1 && parts.last() == Some(&0) {
                    parts.pop();
                }
                Key::Numbers(parts)
            }
        };
        let text = if layout == Layout::Flyway {
            text.replace('_', ".")
        } else {
            text.to_string()
        };
        Some(Version { text, key })
    }

    /// The identity of a repeatable migration (it has no version): `R__<name>`.
    pub fn repeatable(name: &str) -> Version {
        Version {
            text: format!("R__{name}"),
            key: Key::Repeatable(name.to_string()),
        }
    }

    /// The version as written (Flyway's `_` separators shown as `.`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a repeatable migration's identity.
    pub fn is_repeatable(&self) -> bool {
        matches!(self.key, Key::Repeatable(_))
    }
}

fn digit_runs(text: &str) -> Option<Vec<u128>> {
    let mut out = Vec::new();
    for run in text.split(|c: char| !c.is_ascii_digit()) {
        if !run.is_empty() {
            out.push(run.parse::<u128>().ok()?);
        }
    }
    (!out.is_empty()).then_some(out)
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.key, &other.key) {
            (Key::Numbers(a), Key::Numbers(b)) => a.cmp(b),
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            (Key::Repeatable(a), Key::Repeatable(b)) => a.cmp(b),
            (Key::Repeatable(_), _) => Ordering::Greater,
            (_, Key::Repeatable(_)) => Ordering::Less,
            // Mixed layouts are refused when a folder is read; fall back to text.
            _ => self.text.cmp(&other.text),
        }
    }
}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(t: &str, l: Layout) -> Version {
        Version::parse(t, l).unwrap()
    }

    #[test]
    fn instar_orders_numbers_as_numbers() {
        assert!(v("2", Layout::Instar) < v("10", Layout::Instar));
        assert!(v("2018-01-14-171611", Layout::Instar) < v("2018-01-15-000000", Layout::Instar));
        assert_eq!(v("001", Layout::Instar), v("1", Layout::Instar));
    }

    #[test]
    fn diesel_orders_text_without_dashes() {
        assert!(v("10", Layout::Diesel) < v("2", Layout::Diesel));
        assert!(v("2018-01-14-171611", Layout::Diesel) < v("20180115000000", Layout::Diesel));
        assert_eq!(
            v("2018-01-14", Layout::Diesel),
            v("20180114", Layout::Diesel)
        );
    }

    #[test]
    fn sqlx_orders_integers() {
        assert!(v("2", Layout::Sqlx) < v("10", Layout::Sqlx));
        assert!(Version::parse("1.2", Layout::Sqlx).is_none());
    }

    #[test]
    fn flyway_orders_dotted_parts() {
        assert!(v("1.2", Layout::Flyway) < v("1.10", Layout::Flyway));
        assert_eq!(v("1_1", Layout::Flyway).as_str(), "1.1");
        assert_eq!(v("1.0", Layout::Flyway), v("1", Layout::Flyway));
        assert!(Version::parse("1..2", Layout::Flyway).is_none());
    }

    #[test]
    fn repeatables_sort_last() {
        assert!(Version::repeatable("a") > v("999999", Layout::Flyway));
    }
}
