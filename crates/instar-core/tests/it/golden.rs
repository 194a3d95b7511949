//! Golden files for the statement splitter: `tests/golden/<dialect>/<case>.sql`
//! is split and compared with `<case>.out`. Set INSTAR_BLESS=1 to rewrite the
//! `.out` files after a deliberate change, then review the diff.

use std::path::Path;

use instar_core::split::{split, Dialect, Split};

fn render(s: &Split) -> String {
    match s {
        Split::Whole { reason } => format!("== sent whole: {reason}\n"),
        Split::Unterminated { what, line } => {
            format!("== sent whole: unterminated {what} starting on line {line}\n")
        }
        Split::Statements(v) => v
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "== statement {} (line {})\n{}\n",
                    i + 1,
                    s.line,
                    s.sql.trim_end()
                )
            })
            .collect(),
    }
}

fn run(dialect: Dialect, folder: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(folder);
    let bless = std::env::var_os("INSTAR_BLESS").is_some();
    let mut cases = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for sql_path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
    {
        let sql = std::fs::read_to_string(&sql_path).expect("read sql");
        let got = render(&split(&sql, dialect));
        let out = sql_path.with_extension("out");
        if bless {
            std::fs::write(&out, &got).expect("bless");
        }
        let want = std::fs::read_to_string(&out)
            .unwrap_or_else(|_| panic!("missing {}; run with INSTAR_BLESS=1", out.display()));
        assert_eq!(
            got,
            want,
            "splitting {} differs from its golden file",
            sql_path.display()
        );
        cases += 1;
    }
    assert!(cases >= 3, "expected golden cases in {}", dir.display());
}

#[test]
fn postgres_golden() {
    run(Dialect::Postgres, "postgres");
}

#[test]
fn mysql_golden() {
    run(Dialect::MySql, "mysql");
}

#[test]
fn sqlite_golden() {
    run(Dialect::Sqlite, "sqlite");
}
