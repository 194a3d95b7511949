//! SQLite's `CREATE TABLE` text, read and changed for the table rebuild:
//! column definitions and table constraints as items, a column's type and
//! `NOT NULL` changed in place, identifiers renamed as `RENAME COLUMN` would.

/// Whether a constraint item or a `CREATE INDEX` statement names `name`.
pub(super) fn names_object(text: &str, name: &str) -> bool {
    let words = words(text);
    let n = name.to_ascii_lowercase();
    words
        .iter()
        .take(6)
        .any(|w| unquote(w).to_ascii_lowercase() == n)
}

/// `text` with every identifier `from` (bare or quoted; not inside a string
/// literal) replaced by `to`, as SQLite's `RENAME COLUMN` rewrites a table.
pub(super) fn rename_ident(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let close = match c {
            '"' | '`' => Some(c),
            '[' => Some(']'),
            '\'' => Some('\''),
            _ => None,
        };
        if let Some(close) = close {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == close)
                .map_or(chars.len(), |p| i + 1 + p);
            let inner: String = chars[i + 1..end.min(chars.len())].iter().collect();
            if c != '\'' && inner.eq_ignore_ascii_case(from) {
                out.push_str(to);
            } else {
                out.extend(&chars[i..(end + 1).min(chars.len())]);
            }
            i = end + 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.eq_ignore_ascii_case(from) {
                out.push_str(to);
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Changes column `column`'s type in its definition.
pub(super) fn set_type(items: &mut [String], column: &str, ty: &str) -> Result<(), String> {
    let i = column_item(items, column)?;
    let w = words(&items[i]);
    let constraints = w
        .iter()
        .skip(1)
        .position(|x| is_constraint_word(x))
        .map(|p| w[p + 1..].join(" "))
        .unwrap_or_default();
    items[i] = format!("{} {ty} {constraints}", w[0])
        .trim_end()
        .to_string();
    Ok(())
}

/// Adds or removes `NOT NULL` in column `column`'s definition.
pub(super) fn not_null(items: &mut [String], column: &str, on: bool) -> Result<(), String> {
    let i = column_item(items, column)?;
    let w = words(&items[i]);
    let mut kept: Vec<String> = Vec::new();
    let mut k = 0;
    while k < w.len() {
        if w[k].eq_ignore_ascii_case("NOT")
            && w.get(k + 1).is_some_and(|n| n.eq_ignore_ascii_case("NULL"))
        {
            k += 2;
            continue;
        }
        kept.push(w[k].clone());
        k += 1;
    }
    if on {
        kept.push("NOT NULL".into());
    }
    items[i] = kept.join(" ");
    Ok(())
}

pub(super) fn column_item(items: &[String], column: &str) -> Result<usize, String> {
    items
        .iter()
        .position(|it| {
            let w = words(it);
            !w.is_empty()
                && !is_table_constraint(&w[0])
                && unquote(&w[0]).eq_ignore_ascii_case(column)
        })
        .ok_or_else(|| format!("the definition of column {column} was not found"))
}

pub(super) fn is_table_constraint(w: &str) -> bool {
    ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"]
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k))
}

pub(super) fn is_constraint_word(w: &str) -> bool {
    [
        "CONSTRAINT",
        "PRIMARY",
        "NOT",
        "NULL",
        "UNIQUE",
        "CHECK",
        "DEFAULT",
        "COLLATE",
        "REFERENCES",
        "GENERATED",
        "AS",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

pub(super) fn unquote(w: &str) -> String {
    let t = w.trim();
    let b = t.as_bytes();
    if b.len() >= 2
        && matches!(
            (b[0], b[b.len() - 1]),
            (b'"', b'"') | (b'`', b'`') | (b'[', b']') | (b'\'', b'\'')
        )
    {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

/// Splits `text` into words: quoted names and parenthesised groups stay whole.
pub(super) fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for ch in text.chars() {
        match quote {
            Some(q) => {
                cur.push(ch);
                if ch == q {
                    quote = None;
                }
            }
            None => match ch {
                '"' | '`' | '\'' => {
                    quote = Some(ch);
                    cur.push(ch);
                }
                '[' => {
                    quote = Some(']');
                    cur.push(ch);
                }
                '(' => {
                    depth += 1;
                    cur.push(ch);
                }
                ')' => {
                    depth = depth.saturating_sub(1);
                    cur.push(ch);
                }
                c if c.is_whitespace() && depth == 0 => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            },
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A `CREATE TABLE` statement's column definitions and table constraints (one
/// item each), and what follows its closing parenthesis (`WITHOUT ROWID`, `STRICT`).
pub(super) fn parse(create: &str) -> Result<(Vec<String>, String), String> {
    let unparsable = || "its CREATE TABLE statement could not be parsed".to_string();
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut chars = create.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        if let Some(q) = quote {
            if depth > 0 {
                cur.push(ch);
            }
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '"' | '`' | '\'' | '[' => {
                quote = Some(if ch == '[' { ']' } else { ch });
                if depth > 0 {
                    cur.push(ch);
                }
            }
            '-' if chars.peek().is_some_and(|(_, c)| *c == '-') => {
                // A comment, to the end of its line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' => {
                depth += 1;
                if depth > 1 {
                    cur.push(ch);
                }
            }
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(unparsable)?;
                if depth == 0 {
                    items.push(cur.trim().to_string());
                    return Ok((items, create[i + 1..].to_string()));
                }
                cur.push(ch);
            }
            ',' if depth == 1 => items.push(std::mem::take(&mut cur).trim().to_string()),
            c if depth > 0 => cur.push(c),
            _ => {}
        }
    }
    Err(unparsable())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_changes_a_table() {
        let (mut items, tail) = parse(
            "CREATE TABLE \"a (b\" (id INTEGER PRIMARY KEY, -- the key\n \"na,me\" TEXT DEFAULT 'x,y' NOT NULL, price REAL CHECK (price > 0), CONSTRAINT u UNIQUE (\"na,me\")) WITHOUT ROWID",
        )
        .unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(tail, " WITHOUT ROWID");
        set_type(&mut items, "price", "NUMERIC(10,2)").unwrap();
        assert_eq!(items[2], "price NUMERIC(10,2) CHECK (price > 0)");
        not_null(&mut items, "na,me", false).unwrap();
        assert_eq!(items[1], "\"na,me\" TEXT DEFAULT 'x,y'");
        not_null(&mut items, "price", true).unwrap();
        assert!(items[2].ends_with("NOT NULL"));
        assert!(names_object(&items[3], "u"));
        assert!(set_type(&mut items, "nope", "INT").is_err());
        assert!(parse("CREATE TABLE t (a").is_err());
        assert_eq!(
            rename_ident(
                "CREATE INDEX i ON t (name, 'name', \"Name\", names)",
                "name",
                "\"full\""
            ),
            "CREATE INDEX i ON t (\"full\", 'name', \"full\", names)"
        );
    }
}
