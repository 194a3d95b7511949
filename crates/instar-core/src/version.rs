//! Migration versions and the order each layout gives them.
//!
//! Every layout orders versions the way the tool that owns it does, so an
//! adopted project runs in the order it always ran:
//! - Instar: every run of digits is a number (`2 < 10`, `2018-01-14-171611` works);
//! - diesel: the text with `-` removed, compared as a string;
//! - sqlx (and golang-migrate, goose, dbmate, popx): one integer, of any length
//!   (popx's are 20 digits, more than 64 bits hold);
//! - Flyway: dotted (or `_`-separated) numeric parts, trailing zero parts ignored;
//! - a declared `pattern`: numeric like Instar's, or as text.
//!
//! Numbers are compared exactly whatever their length: as digit strings
//! without leading zeros, shorter first.
//!
//! Repeatable migrations (Flyway `R__`) have no version; they sort after all
//! versioned ones, by name.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

/// Which tool's file layout a migration was read from; decides version order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `<version>_<name>/up.sql` (+ `down.sql`, `migration.toml`), numeric-segment order.
    Instar,
    /// diesel's `<version>_<name>/up.sql`, string order with `-` removed.
    Diesel,
    /// sqlx's (and golang-migrate's) `<version>_<name>.sql` or
    /// `.up.sql`/`.down.sql`, integer order.
    Sqlx,
    /// Flyway's `V<version>__<name>.sql`, `U…` undo and `R__…` repeatable files.
    Flyway,
    /// `V<version>.<Name>.up.sql` / `.down.sql`, numeric order.
    Dotted,
    /// ory/popx: `<version>_<name>[.<dialect>][.autocommit].up.sql` / `.down.sql`,
    /// the files of the connected engine chosen; integer order.
    Popx,
    /// dbmate: `<version>_<name>.sql` with `-- migrate:up` / `-- migrate:down` sections.
    Dbmate,
    /// goose: `<version>_<name>.sql` with `-- +goose Up` / `-- +goose Down` annotations.
    Goose,
    /// A `pattern` declared in `instar.toml`, in the order it names.
    Pattern(Order),
}

/// How a declared pattern's versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Order {
    /// Every run of digits is a number (`2 < 10`).
    #[default]
    Numeric,
    /// As text, character by character.
    Text,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Instar => "instar",
            Layout::Diesel => "diesel",
            Layout::Sqlx => "sqlx",
            Layout::Flyway => "flyway",
            Layout::Dotted => "dotted",
            Layout::Popx => "popx",
            Layout::Dbmate => "dbmate",
            Layout::Goose => "goose",
            Layout::Pattern(_) => "pattern",
        })
    }
}

impl Serialize for Layout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A whole number of any length: its digits without leading zeros. Shorter is
/// smaller; of equal length, the text decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Num(String);

impl Num {
    fn new(digits: &str) -> Num {
        let t = digits.trim_start_matches('0');
        Num(if t.is_empty() { "0".into() } else { t.into() })
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Numbers(Vec<Num>),
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
            Layout::Instar | Layout::Dotted | Layout::Pattern(Order::Numeric) => {
                Key::Numbers(digit_runs(text)?)
            }
            Layout::Pattern(Order::Text) => Key::Text(text.to_string()),
            Layout::Diesel => {
                if !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return None;
                }
                Key::Text(text.replace('-', ""))
            }
            Layout::Sqlx | Layout::Popx | Layout::Dbmate | Layout::Goose => {
                if !text.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Key::Numbers(vec![Num::new(text)])
            }
            Layout::Flyway => {
                let mut parts = Vec::new();
                for part in text.split(['.', '_']) {
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    parts.push(Num::new(part));
                }
                while parts.len() > 1 && parts.last().is_some_and(|p| p.0 == "0") {
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

fn digit_runs(text: &str) -> Option<Vec<Num>> {
    let mut out = Vec::new();
    for run in text.split(|c: char| !c.is_ascii_digit()) {
        if !run.is_empty() {
            out.push(Num::new(run));
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
    fn numbers_of_any_length_compare_exactly() {
        let popx = |t| v(t, Layout::Popx);
        assert!(popx("20150100000001000000") < popx("20150100000001000001"));
        assert!(popx("9") < popx("20150100000001000000"));
        assert_eq!(popx("007"), popx("7"));
        let long = "1".repeat(60);
        assert!(v(&long, Layout::Instar) > v(&"9".repeat(59), Layout::Instar));
        assert_eq!(v("1.0.0", Layout::Flyway), v("1", Layout::Flyway));
    }

    #[test]
    fn a_text_pattern_orders_as_text() {
        let t = |s| v(s, Layout::Pattern(Order::Text));
        assert!(t("10") < t("2"));
        assert!(v("2", Layout::Pattern(Order::Numeric)) < v("10", Layout::Pattern(Order::Numeric)));
    }

    #[test]
    fn repeatables_sort_last() {
        assert!(Version::repeatable("a") > v("999999", Layout::Flyway));
    }
}
