//! The splitter on arbitrary input: it always finishes (quickly), never panics,
//! and every statement it returns is a piece of the input on a line that exists.

use std::sync::mpsc;
use std::time::Duration;

use instar_core::split::{split, Dialect, Split};
use proptest::prelude::*;

/// Pieces that exercise every branch of the lexer, glued in random order.
const PIECES: &[&str] = &[
    ";",
    "\n",
    " ",
    "(",
    ")",
    "'",
    "\"",
    "`",
    "[",
    "]",
    "$",
    "$$",
    "$a$",
    "--",
    "-- c\n",
    "#",
    "/*",
    "*/",
    "/*!",
    "\\",
    "E'",
    "DELIMITER x\n",
    "DELIMITER $$\n",
    "DELIMITER //\n",
    "DELIMITER ;\n",
    "x",
    "//",
    "BEGIN",
    "END",
    "END IF",
    "CASE",
    "END CASE",
    "NOT",
    "CREATE",
    "PROCEDURE",
    "FUNCTION",
    "TRIGGER",
    "SELECT",
    "é",
    "\r\n",
    "\0",
    "1",
    "_",
];

fn script() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::sample::select(PIECES), 0..60).prop_map(|v| v.join("")),
        ".{0,200}",
    ]
}

/// Splits on another thread; fails the test if it takes more than two seconds.
fn split_bounded(sql: &str, d: Dialect) -> Split<'static> {
    let (tx, rx) = mpsc::channel();
    let owned = sql.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(split(&owned, d).into_owned());
    });
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(s) => s,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("splitter hangs on {sql:?} ({d:?})"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("splitter panicked on {sql:?} ({d:?})"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn splitter_terminates_without_panicking(sql in script()) {
        let lines = sql.split('\n').count();
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            if let Split::Statements(stmts) = split_bounded(&sql, d) {
                for s in stmts {
                    prop_assert!(sql.contains(&*s.sql), "{:?} is not part of the input", s.sql);
                    prop_assert!(s.line >= 1 && s.line <= lines, "line {} of {}", s.line, lines);
                }
            }
        }
    }
}
