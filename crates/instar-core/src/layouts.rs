//! The layouts read from file names and file contents beyond one file per
//! script: ory/popx dialect suffixes, dbmate and goose sections in one file,
//! and a `pattern` declared in `instar.toml`.

use crate::split::Dialect;

/// The dialect suffixes popx files carry (`.sqlite3.up.sql` …), and the
/// engine each is for (`cockroach` runs on none of Instar's engines).
const POPX_DIALECTS: &[(&str, Option<Dialect>)] = &[
    ("sqlite3", Some(Dialect::Sqlite)),
    ("sqlite", Some(Dialect::Sqlite)),
    ("postgres", Some(Dialect::Postgres)),
    ("postgresql", Some(Dialect::Postgres)),
    ("mysql", Some(Dialect::MySql)),
    ("mariadb", Some(Dialect::MySql)),
    ("cockroach", None),
    ("cockroachdb", None),
];

/// What a popx file name says after `<version>_<name>`: its dialect (`None`
/// for every engine) and whether it runs outside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PopxSuffix {
    /// The dialect suffix as written (`sqlite3`, `postgres` …).
    pub dialect: Option<String>,
    /// `.autocommit`: the file runs outside a transaction.
    pub autocommit: bool,
}

/// Splits `<name>[.<dialect>][.autocommit]` into the name and its suffixes;
/// `None` when the name carries no popx suffix.
pub fn popx_suffix(rest: &str) -> Option<(&str, PopxSuffix)> {
    let (mut name, mut suffix) = (rest, PopxSuffix::default());
    if let Some(n) = name.strip_suffix(".autocommit") {
        name = n;
        suffix.autocommit = true;
    }
    if let Some((n, d)) = name.rsplit_once('.') {
        if POPX_DIALECTS.iter().any(|(known, _)| *known == d) {
            name = n;
            suffix.dialect = Some(d.to_string());
        }
    }
    (suffix != PopxSuffix::default()).then_some((name, suffix))
}

/// Whether a popx dialect suffix is one of `dialect`'s.
pub fn popx_dialect_is(suffix: &str, dialect: Dialect) -> bool {
    POPX_DIALECTS
        .iter()
        .any(|(known, d)| *known == suffix && *d == Some(dialect))
}

/// The two halves of a file holding both directions (dbmate, goose). Each
/// keeps the file's line numbers: the lines of the other half and the
/// annotations are blank, so an error names the line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    /// The forward half.
    pub up: String,
    /// The reverse half, when it holds any SQL.
    pub down: Option<String>,
    /// Whether the forward half runs in a transaction.
    pub up_transaction: bool,
    /// Whether the reverse half runs in a transaction.
    pub down_transaction: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Half {
    Before,
    Up,
    Down,
}

/// A line's role in a sectioned file.
enum Mark {
    Up {
        transaction: bool,
    },
    Down {
        transaction: bool,
    },
    /// An annotation kept for the splitter (goose's StatementBegin/End).
    Keep,
    /// An annotation that only says something about the file (goose NO TRANSACTION).
    NoTransaction,
    Sql,
}

fn dbmate_mark(line: &str) -> Mark {
    // dbmate reads `--migrate:up` as well as `-- migrate:up`.
    let Some(rest) = line
        .trim()
        .strip_prefix("--")
        .and_then(|r| r.trim_start().strip_prefix("migrate:"))
    else {
        return Mark::Sql;
    };
    let mut words = rest.split_whitespace();
    let half = words.next().unwrap_or("");
    let transaction = !words.any(|w| w == "transaction:false");
    match half {
        "up" => Mark::Up { transaction },
        "down" => Mark::Down { transaction },
        _ => Mark::Sql,
    }
}

fn goose_mark(line: &str) -> Mark {
    let t = line.trim();
    let Some(rest) = t.strip_prefix("--") else {
        return Mark::Sql;
    };
    let Some(rest) = rest.trim_start().strip_prefix("+goose") else {
        return Mark::Sql;
    };
    let words: Vec<String> = rest
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    match words.first().map(String::as_str) {
        Some("up") => Mark::Up { transaction: true },
        Some("down") => Mark::Down { transaction: true },
        Some("statementbegin" | "statementend") => Mark::Keep,
        Some("no") if words.get(1).is_some_and(|w| w == "transaction") => Mark::NoTransaction,
        _ => Mark::Sql,
    }
}

/// Whether a line is goose's `StatementBegin` (`Some(true)`) or
/// `StatementEnd` (`Some(false)`) annotation.
pub(crate) fn goose_statement_mark(line: &str) -> Option<bool> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("+goose")?;
    match rest.trim().to_ascii_lowercase().as_str() {
        "statementbegin" => Some(true),
        "statementend" => Some(false),
        _ => None,
    }
}

/// Whether a line is one of dbmate's section markers.
pub fn is_dbmate(text: &str) -> bool {
    text.lines()
        .any(|l| matches!(dbmate_mark(l), Mark::Up { .. } | Mark::Down { .. }))
}

/// Whether a line is one of goose's annotations.
pub fn is_goose(text: &str) -> bool {
    text.lines()
        .any(|l| matches!(goose_mark(l), Mark::Up { .. } | Mark::Down { .. }))
}

/// The halves of a dbmate file (`-- migrate:up`, `-- migrate:down`, each
/// optionally `transaction:false`); `Err` says what is wrong.
pub fn dbmate_sections(text: &str) -> Result<Sections, String> {
    sections(text, dbmate_mark, "-- migrate:up")
}

/// The halves of a goose SQL file (`-- +goose Up`, `-- +goose Down`,
/// `-- +goose NO TRANSACTION`; `StatementBegin`/`StatementEnd` stay for the
/// splitter); `Err` says what is wrong.
pub fn goose_sections(text: &str) -> Result<Sections, String> {
    sections(text, goose_mark, "-- +goose Up")
}

fn sections(text: &str, mark: fn(&str) -> Mark, up_marker: &str) -> Result<Sections, String> {
    let (mut up, mut down) = (String::new(), String::new());
    let (mut up_tx, mut down_tx, mut file_tx) = (true, true, true);
    let mut half = Half::Before;
    let (mut seen_up, mut seen_down) = (false, false);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let blank = if line.ends_with('\n') { "\n" } else { "" };
        let (to_up, to_down) = match mark(line) {
            Mark::Up { transaction } => {
                if seen_up {
                    return Err(format!("line {}: a second {up_marker}", i + 1));
                }
                if seen_down {
                    return Err(format!(
                        "line {}: {up_marker} after the down section; put the up section first",
                        i + 1
                    ));
                }
                (seen_up, half, up_tx) = (true, Half::Up, transaction);
                (blank, blank)
            }
            Mark::Down { transaction } => {
                if seen_down {
                    return Err(format!("line {}: a second down section", i + 1));
                }
                (seen_down, half, down_tx) = (true, Half::Down, transaction);
                (blank, blank)
            }
            Mark::NoTransaction => {
                file_tx = false;
                (blank, blank)
            }
            Mark::Keep | Mark::Sql => match half {
                Half::Before => {
                    if !line.trim().is_empty() && !line.trim_start().starts_with("--") {
                        return Err(format!(
                            "line {}: SQL before {up_marker}; every statement belongs to a section",
                            i + 1
                        ));
                    }
                    (blank, blank)
                }
                Half::Up => (line, blank),
                Half::Down => (blank, line),
            },
        };
        up.push_str(to_up);
        down.push_str(to_down);
    }
    if !seen_up {
        return Err(format!("no {up_marker} line"));
    }
    let has_sql = down.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with("--")
    });
    Ok(Sections {
        up: trim_trailing_blank_lines(up),
        down: has_sql.then(|| trim_trailing_blank_lines(down)),
        up_transaction: up_tx && file_tx,
        down_transaction: down_tx && file_tx,
    })
}

fn trim_trailing_blank_lines(mut s: String) -> String {
    let keep = s.trim_end().len();
    s.truncate(keep);
    s.push('\n');
    s
}

/// A declared file-name pattern: `{version}`, `{name}` and `{direction}`
/// (`up` / `down`) between literal text, e.g. `{version}.{name}.{direction}.sql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    parts: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Version,
    Name,
    Direction,
}

/// What a pattern read from a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The version text.
    pub version: String,
    /// The name (empty when the pattern has none).
    pub name: String,
    /// `Some(true)` for up, `Some(false)` for down, `None` without `{direction}`.
    pub up: Option<bool>,
}

impl Pattern {
    /// Parses a pattern; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut lit = String::new();
        while !rest.is_empty() {
            let piece = [
                ("{version}", Piece::Version),
                ("{name}", Piece::Name),
                ("{direction}", Piece::Direction),
            ]
            .into_iter()
            .find(|(t, _)| rest.starts_with(t));
            if let Some((t, p)) = piece {
                if !lit.is_empty() {
                    parts.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                if parts.last().is_some_and(|l| !matches!(l, Piece::Lit(_))) {
                    return Err(format!(
                        "pattern {text:?}: {t} right after another placeholder cannot be told apart; put text (like `_` or `.`) between them"
                    ));
                }
                if parts.contains(&p) {
                    return Err(format!("pattern {text:?}: {t} twice"));
                }
                parts.push(p);
                rest = &rest[t.len()..];
            } else {
                let c = rest.chars().next().unwrap_or(' ');
                if c == '{' || c == '}' || c == '/' {
                    return Err(format!(
                        "pattern {text:?}: unexpected {c:?} (the placeholders are {{version}}, {{name}} and {{direction}}; a pattern names files, not folders)"
                    ));
                }
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !lit.is_empty() {
            parts.push(Piece::Lit(lit));
        }
        if !parts.contains(&Piece::Version) {
            return Err(format!("pattern {text:?} has no {{version}}"));
        }
        Ok(Pattern {
            text: text.to_string(),
            parts,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Reads a file name; `None` when it does not match. The version is the
    /// leading digits-and-separators a version may hold, `{direction}` is `up`
    /// or `down`, and a name may hold anything but `/`.
    pub fn matches(&self, file: &str) -> Option<Matched> {
        let mut m = Matched {
            version: String::new(),
            name: String::new(),
            up: None,
        };
        self.match_from(0, file, &mut m).then_some(m)
    }

    fn match_from(&self, k: usize, rest: &str, m: &mut Matched) -> bool {
        let Some(piece) = self.parts.get(k) else {
            return rest.is_empty();
        };
        if let Piece::Lit(l) = piece {
            return rest
                .strip_prefix(l.as_str())
                .is_some_and(|r| self.match_from(k + 1, r, m));
        }
        // A placeholder takes 1..=len characters: a version the longest that lets
        // the rest match (`1.2.0.add.up.sql` is version 1.2.0), anything else the shortest.
        let mut ends: Vec<usize> = rest
            .char_indices()
            .skip(1)
            .map(|(i, _)| i)
            .chain([rest.len()])
            .collect();
        if *piece == Piece::Version {
            ends.reverse();
        }
        for end in ends {
            let taken = &rest[..end];
            let ok = match piece {
                Piece::Version => {
                    taken.starts_with(|c: char| c.is_ascii_digit())
                        && taken
                            .chars()
                            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
                }
                Piece::Direction => matches!(taken, "up" | "down"),
                _ => true,
            };
            if ok && self.match_from(k + 1, &rest[end..], m) {
                match piece {
                    Piece::Version => m.version = taken.to_string(),
                    Piece::Name => m.name = taken.to_string(),
                    Piece::Direction => m.up = Some(taken == "up"),
                    Piece::Lit(_) => {}
                }
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popx_suffixes_are_read_from_the_end() {
        assert_eq!(popx_suffix("create_users"), None);
        let (name, s) = popx_suffix("create_users.sqlite3").expect("suffix");
        assert_eq!(
            (name, s.dialect.as_deref(), s.autocommit),
            ("create_users", Some("sqlite3"), false)
        );
        let (name, s) = popx_suffix("index.postgres.autocommit").expect("suffix");
        assert_eq!(
            (name, s.dialect.as_deref(), s.autocommit),
            ("index", Some("postgres"), true)
        );
        let (name, s) = popx_suffix("index.autocommit").expect("suffix");
        assert_eq!((name, s.dialect, s.autocommit), ("index", None, true));
        assert!(popx_dialect_is("sqlite3", Dialect::Sqlite));
        assert!(!popx_dialect_is("cockroach", Dialect::Postgres));
    }

    #[test]
    fn dbmate_sections_keep_the_lines_of_the_file() {
        let s = dbmate_sections(
            "-- migrate:up\nCREATE TABLE a (id INT);\n\n-- migrate:down transaction:false\nDROP TABLE a;\n",
        )
        .expect("sections");
        assert_eq!(s.up, "\nCREATE TABLE a (id INT);\n");
        assert_eq!(s.down.as_deref(), Some("\n\n\n\nDROP TABLE a;\n"));
        assert!(s.up_transaction && !s.down_transaction);
        let e =
            dbmate_sections("CREATE TABLE a (id INT);\n-- migrate:up\n").expect_err("sql before");
        assert!(e.contains("line 1"), "{e}");
        let s = dbmate_sections("-- migrate:up\nSELECT 1;\n-- migrate:down\n").expect("empty down");
        assert_eq!(s.down, None);
        assert!(is_dbmate("--migrate:up\nSELECT 1;\n"));
    }

    #[test]
    fn goose_annotations_are_read_case_insensitively() {
        let s = goose_sections(
            "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n-- +goose StatementEnd\n-- +goose down\nSELECT 2;\n",
        )
        .expect("sections");
        assert!(!s.up_transaction && !s.down_transaction);
        assert_eq!(
            s.up,
            "\n\n-- +goose StatementBegin\nSELECT 1;\n-- +goose StatementEnd\n"
        );
        assert_eq!(s.down.as_deref(), Some("\n\n\n\n\n\nSELECT 2;\n"));
        assert!(is_goose("-- +goose Up\n") && !is_goose("-- goose\n"));
    }

    #[test]
    fn a_pattern_reads_versions_names_and_directions() {
        let p = Pattern::parse("{version}.{name}.{direction}.sql").expect("pattern");
        let m = p.matches("0003.add.users.index.up.sql").expect("match");
        assert_eq!(
            (m.version.as_str(), m.name.as_str(), m.up),
            ("0003", "add.users.index", Some(true))
        );
        assert_eq!(p.matches("0003.x.sideways.sql"), None);
        assert_eq!(p.matches("README.md"), None);
        let m = p.matches("1.2.0.add.up.sql").expect("dotted version");
        assert_eq!((m.version.as_str(), m.name.as_str()), ("1.2.0", "add"));
        let p = Pattern::parse("migration-{version}.sql").expect("pattern");
        assert_eq!(
            p.matches("migration-12.sql").map(|m| m.version),
            Some("12".into())
        );
        assert!(Pattern::parse("{name}.sql").is_err());
        assert!(Pattern::parse("{version}{name}.sql").is_err());
        assert!(Pattern::parse("{version}/{name}.sql").is_err());
    }
}
