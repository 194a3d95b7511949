//! A foreign key's action (`ON UPDATE CASCADE`) writing a column that a
//! served op computes from: PostgreSQL and SQLite fire the sync triggers for
//! the rows it changes, so the computed column follows; MariaDB runs the
//! action below its triggers (shown here), so `start` refuses such an op.

use sqlx::Connection;

use crate::documents::run;
use crate::harness::{file, migration, Backend, TestDb};

fn project(t: &TestDb) {
    let fk = match t.backend {
        Backend::MySql => {
            "user_id int, FOREIGN KEY (user_id) REFERENCES users (id) ON UPDATE CASCADE"
        }
        _ => "user_id int REFERENCES users (id) ON UPDATE CASCADE",
    };
    migration(
        &t.migrations(),
        "0001_tables",
        &format!(
            "CREATE TABLE users (id int PRIMARY KEY, name varchar(50));\n\
             CREATE TABLE orders (id int PRIMARY KEY, amount int, {fk});\n\
             INSERT INTO users VALUES (1, 'Ada'), (2, 'Grace');\n\
             INSERT INTO orders VALUES (1, 5, 1), (2, 7, 2);"
        ),
        None,
    );
    let dir = t.migrations().join("0002_owner_code");
    std::fs::create_dir_all(&dir).unwrap();
    file(
        &dir.join("migration.toml"),
        "kind = \"online\"\n\n[[ops]]\nop = \"add_column\"\ntable = \"orders\"\ncolumn = \"owner_code\"\ntype = \"int\"\nup = \"user_id * 100\"\n",
    );
}

/// Runs `sql` as an old-version client (SQLite: with foreign keys enforced).
async fn as_old_client(t: &TestDb, sql: &str) {
    let mut c = t.raw().await;
    if t.backend == Backend::Sqlite {
        sqlx::raw_sql("PRAGMA foreign_keys = ON")
            .execute(&mut c)
            .await
            .unwrap();
    }
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    let _ = c.close().await;
}

on_every_engine!(a_cascade_that_bypasses_triggers_is_refused_where_it_does);

async fn a_cascade_that_bypasses_triggers_is_refused_where_it_does(b: Backend) {
    let Some(t) = TestDb::new(b, "online_cascade").await else {
        return;
    };
    project(&t);
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&t, &["start"], None);
    if b == Backend::MySql {
        assert_ne!(code, 0, "{out}{err}");
        assert!(
            err.contains("orders.owner_code is computed from orders.user_id")
                && err.contains("ON UPDATE CASCADE")
                && err.contains("without firing triggers"),
            "{err}"
        );
        assert_eq!(
            t.count("SELECT count(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND column_name = 'owner_code'")
                .await,
            0,
            "nothing expanded"
        );
        // Why: the cascade changes orders.user_id, and no trigger on orders fires.
        as_old_client(
            &t,
            "CREATE TRIGGER orders_touched BEFORE UPDATE ON orders FOR EACH ROW SET NEW.amount = NEW.amount + 1000",
        )
        .await;
        as_old_client(&t, "UPDATE users SET id = 10 WHERE id = 1").await;
        assert_eq!(
            t.count("SELECT count(*) FROM orders WHERE id = 1 AND user_id = 10 AND amount = 5")
                .await,
            1,
            "MariaDB cascaded without firing the trigger"
        );
        return;
    }
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    // An old-version client changes a user's id; the cascade rewrites orders.user_id.
    as_old_client(&t, "UPDATE users SET id = 10 WHERE id = 1").await;
    assert_eq!(
        t.count("SELECT count(*) FROM orders WHERE id = 1 AND user_id = 10 AND owner_code = 1000")
            .await,
        1,
        "{b:?}: the computed column followed the cascade"
    );
    let (code, out, err) = run(&t, &["complete"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM orders WHERE owner_code = user_id * 100")
            .await,
        2
    );
}
