//! Online migrations (`kind = "online"`, `[[ops]]`) run plainly on every
//! engine: compiled against the catalog (idempotent adds say what they added
//! and skipped), the cheap forms each engine has, `down` undoing exactly what
//! `up` did, and a failure named by the op's line that resumes (where DDL
//! commits by itself) with the very statements it started with.

use crate::documents::run;
use crate::harness::{file, migration, Backend, TestDb};

fn base(t: &TestDb) {
    migration(
        &t.migrations(),
        "0001_tables",
        "CREATE TABLE users (id int PRIMARY KEY, name varchar(100), nick varchar(50));\n\
         CREATE TABLE orders (id int PRIMARY KEY, amount int, user_id int);\n\
         CREATE TABLE accounts (id int PRIMARY KEY, note varchar(10) DEFAULT 'mine');\n\
         INSERT INTO users VALUES (1, 'Ada', NULL), (2, 'Grace', 'g');\n\
         INSERT INTO orders VALUES (1, 5, 1), (2, 7, 2);\n\
         INSERT INTO accounts VALUES (1, 'kept');",
        None,
    );
}

fn online(t: &TestDb, folder: &str, toml: &str) {
    let dir = t.migrations().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    file(&dir.join("migration.toml"), toml);
}

const OPS: &str = r#"kind = "online"
description = "notes everywhere, a rename, and constraints"

[[ops]]
op = "add_column"
tables = ["users", "orders", "accounts", "ghosts"]
column = "note"
type = "varchar(100)"
default = "'none'"
if_not_exists = true
skip_missing_table = true

[[ops]]
op = "rename_column"
table = "users"
column = "name"
to = "full_name"

[[ops]]
op = "set_not_null"
table = "users"
column = "nick"
up = "'anon'"

[[ops]]
op = "alter_column"
table = "orders"
column = "amount"
type = "bigint"
from_type = "int"

[[ops]]
op = "add_check"
table = "orders"
name = "orders_amount_positive"
check = "amount > 0"

[[ops]]
op = "create_index"
table = "orders"
columns = ["user_id"]

[[ops]]
op = "add_foreign_key"
table = "orders"
columns = ["user_id"]
references = "users"
references_columns = ["id"]

[[ops]]
op = "add_unique"
table = "users"
columns = ["full_name"]
"#;

async fn works(t: &TestDb, sql: &str) -> bool {
    let mut c = t.raw().await;
    let ok = sqlx::raw_sql(sql).execute(&mut c).await.is_ok();
    let _ = sqlx::Connection::close(c).await;
    ok
}

on_every_engine!(
    ops_run_plainly_and_down_undoes_exactly_what_up_did,
    a_failing_op_is_named_by_its_line_and_resumes
);

async fn ops_run_plainly_and_down_undoes_exactly_what_up_did(b: Backend) {
    let Some(t) = TestDb::new(b, "online_plain").await else {
        return;
    };
    base(&t);
    online(&t, "0002_online", OPS);
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");

    // The dry run compiles against the catalog and prints every statement.
    let (code, plan, err) = run(&t, &["plan"], None);
    assert_eq!(code, 0, "{b:?}: {plan}{err}");
    assert!(
        plan.contains(
            "added 2 (users, orders), skipped 2 (accounts (has it), ghosts (no such table))"
        ),
        "{b:?}: {plan}"
    );
    let cheap = match b {
        Backend::Postgres => vec![
            "CONCURRENTLY",
            "NOT VALID",
            "VALIDATE CONSTRAINT",
            "USING INDEX",
        ],
        Backend::MySql => vec!["ALGORITHM=INSTANT", "LOCK=NONE"],
        Backend::Sqlite => vec![
            "\"orders__instar_new\"",
            "INSERT INTO \"users__instar_new\"",
        ],
    };
    for word in cheap {
        assert!(plan.contains(word), "{b:?}: {word} missing from\n{plan}");
    }
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE nick IS NULL")
            .await,
        1,
        "a dry run changes nothing"
    );
    // lint reads the ops (as SQL), naming each finding by its op's line.
    let (_, out, err) = run(&t, &["lint", "--offline"], None);
    assert!(
        format!("{out}{err}").contains("0002_online/migration.toml:13: warning[rename]"),
        "{out}{err}"
    );

    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(
        out.contains("op 1 (line 4): add column note: added 2"),
        "{out}"
    );
    assert_eq!(t.count("SELECT count(*) FROM users WHERE full_name = 'Ada' AND nick = 'anon' AND note = 'none'").await, 1);
    assert_eq!(
        t.count("SELECT count(*) FROM accounts WHERE note = 'kept'")
            .await,
        1
    );
    assert!(
        !works(
            &t,
            "INSERT INTO users (id, full_name, nick) VALUES (3, 'Eve', NULL)"
        )
        .await,
        "{b:?}: nick is NOT NULL now"
    );
    assert!(
        !works(
            &t,
            "INSERT INTO orders (id, amount, user_id) VALUES (3, -1, 1)"
        )
        .await,
        "{b:?}: the check holds"
    );
    assert!(
        !works(
            &t,
            "INSERT INTO users (id, full_name, nick) VALUES (4, 'Ada', 'x')"
        )
        .await,
        "{b:?}: full_name is unique"
    );
    assert!(
        works(
            &t,
            "INSERT INTO orders (id, amount, user_id) VALUES (4, 3000000000, 1)"
        )
        .await,
        "{b:?}: amount is a bigint"
    );
    assert!(works(&t, "DELETE FROM orders WHERE id = 4").await);
    if b != Backend::Sqlite {
        assert!(
            !works(
                &t,
                "INSERT INTO orders (id, amount, user_id) VALUES (5, 1, 99)"
            )
            .await,
            "{b:?}: the foreign key holds"
        );
    }
    // The schema matches the ops: validate and audit find nothing wrong.
    let (code, out, err) = run(&t, &["validate"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");

    // Down undoes exactly what up did: accounts keeps the note column it had.
    let (code, out, err) = run(&t, &["down"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE name = 'Ada'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM accounts WHERE note = 'kept'")
            .await,
        1
    );
    assert!(
        !works(&t, "SELECT note FROM users").await,
        "{b:?}: users.note dropped"
    );
    assert!(
        !works(&t, "SELECT note FROM orders").await,
        "{b:?}: orders.note dropped"
    );
    assert!(
        works(
            &t,
            "INSERT INTO orders (id, amount, user_id) VALUES (6, -1, 99)"
        )
        .await,
        "{b:?}: constraints gone"
    );
    assert!(
        works(
            &t,
            "INSERT INTO users (id, name, nick) VALUES (7, 'Ada', NULL)"
        )
        .await,
        "{b:?}: nullable and not unique again"
    );
    assert!(
        works(&t, "DELETE FROM orders WHERE id = 6").await
            && works(&t, "DELETE FROM users WHERE id = 7").await
    );

    // And up again compiles against the catalog as it is now.
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE full_name = 'Grace'")
            .await,
        1
    );
}

async fn a_failing_op_is_named_by_its_line_and_resumes(b: Backend) {
    let Some(t) = TestDb::new(b, "online_fail").await else {
        return;
    };
    base(&t);
    online(
        &t,
        "0002_online",
        r#"kind = "online"

[[ops]]
op = "add_column"
table = "orders"
column = "paid"
type = "int"
default = "0"

[[ops]]
op = "add_check"
table = "orders"
name = "orders_big"
check = "amount > 6"
"#,
    );
    // An op naming a column that is not there: refused before anything runs.
    online(
        &t,
        "0003_wrong",
        "kind = \"online\"\n\n[[ops]]\nop = \"rename_column\"\ntable = \"users\"\ncolumn = \"nope\"\nto = \"x\"\n",
    );
    let (code, out, err) = run(&t, &["up", "--to", "0002"], None);
    assert_ne!(code, 0, "{b:?}: {out}{err}");
    let toml = t.migrations().join("0002_online").join("migration.toml");
    assert!(
        err.contains(&format!("{}:10", toml.display())),
        "{b:?}: the failing op's line is named: {err}"
    );
    let column_kept = b != Backend::Sqlite;
    assert_eq!(
        works(&t, "SELECT paid FROM orders").await,
        column_kept,
        "{b:?}: {err}"
    );
    if column_kept {
        // DDL committed statement by statement: the migration is dirty at the check,
        // and `up` resumes the kept statements (a fresh compile would refuse the column that is there now).
        assert!(
            err.contains("instar up"),
            "{b:?}: the way out is named: {err}"
        );
    }
    assert!(works(&t, "UPDATE orders SET amount = 10").await);
    let (code, out, err) = run(&t, &["up", "--to", "0002"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(
        !works(
            &t,
            "INSERT INTO orders (id, amount, user_id, paid) VALUES (9, 1, 1, 0)"
        )
        .await,
        "{b:?}: the check holds"
    );

    let (code, out, err) = run(&t, &["up"], None);
    assert_ne!(code, 0, "{b:?}: {out}{err}");
    let wrong = t.migrations().join("0003_wrong").join("migration.toml");
    assert!(
        err.contains(&wrong.display().to_string())
            && err.contains("line 3")
            && err.contains("no column nope"),
        "{b:?}: {err}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE version = '0003'")
            .await,
        0,
        "nothing ran"
    );
}
