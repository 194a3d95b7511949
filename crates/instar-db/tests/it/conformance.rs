//! The backend conformance suite: every test runs on SQLite, PostgreSQL and
//! MySQL/MariaDB (the latter two when their URLs are set), each on a fresh database.

use std::time::Duration;

use instar_core::event::NullSink;
use instar_core::plan::{Problem, Target};
use instar_db::runner::{self, RepairOptions, RunOptions};
use instar_db::{backup, Aftermath, Error};

use crate::harness::{file, migration, Backend, TestDb};

on_every_engine!(
    up_down_round_trip,
    broken_sql_mid_file_leaves_database_as_before,
    failed_non_transactional_file_is_dirty_then_resumes,
    repair_clears_a_dirty_mark,
    edited_applied_migration_is_refused_until_accepted,
    deleted_applied_migration_is_refused,
    database_newer_than_files_is_refused_untouched,
    lock_excludes_a_second_runner,
    concurrent_runners_apply_each_migration_once,
    single_transaction_is_all_or_nothing,
    failing_check_rolls_back,
    init_sql_runs_first,
    baseline_skips_older_migrations,
    out_of_order_is_refused_unless_allowed,
    down_to_and_irreversible,
    repeatable_reruns_when_changed,
    backup_and_restore,
    runtime_error_mid_file_names_its_line,
    real_world_scripts_run,
    data_migration_backfills_in_batches,
    data_migration_resumes_from_its_checkpoint,
    data_migration_refuses_bad_definitions,
    data_migration_error_policies,
    schema_and_data_migrations_interleave,
    data_migration_dry_run_estimates_and_changes_nothing,
    data_migration_runs_in_parallel_slices,
    data_migration_reverts_in_batches,
    data_migration_with_two_runners_is_done_once,
    data_migration_with_uuid_keys,
    a_failed_run_keeps_what_other_clients_wrote,
);

fn two_tables(t: &TestDb) {
    let m = t.migrations();
    migration(
        &m,
        "0001_a",
        "CREATE TABLE a (id INT PRIMARY KEY);\n",
        Some("DROP TABLE a;\n"),
    );
    migration(
        &m,
        "0002_b",
        "CREATE TABLE b (id INT PRIMARY KEY);\nINSERT INTO b VALUES (1);\n",
        Some("DROP TABLE b;\n"),
    );
}

fn problems(e: Error) -> Vec<Problem> {
    match e {
        Error::Core(instar_core::Error::Validation { problems }) => problems,
        other => panic!("expected a validation error, got: {other}"),
    }
}

async fn up_down_round_trip(b: Backend) {
    let Some(t) = TestDb::new(b, "up_down_round_trip").await else {
        return;
    };
    two_tables(&t);
    let r = t.up().await.expect("up");
    assert_eq!(r.migrations, vec!["0001", "0002"]);
    assert!(t.table_exists("a").await && t.table_exists("b").await);
    assert_eq!(t.events("apply").await, 2);
    assert!(
        t.up().await.expect("second up").migrations.is_empty(),
        "nothing pending"
    );
    let r = t.down(2).await.expect("down");
    assert_eq!(r.migrations, vec!["0002", "0001"]);
    assert!(!t.table_exists("a").await && !t.table_exists("b").await);
    assert_eq!(t.events("revert").await, 2);
    let mut db = t.db().await;
    let (st, _) = runner::status(&mut db, &t.source()).await.expect("status");
    assert!(st
        .migrations
        .iter()
        .all(|m| m.standing == instar_core::plan::Standing::Pending));
}

async fn broken_sql_mid_file_leaves_database_as_before(b: Backend) {
    let Some(t) = TestDb::new(b, "broken_sql_mid_file").await else {
        return;
    };
    let m = t.migrations();
    migration(
        &m,
        "0001_ok",
        "CREATE TABLE ok1 (id INT PRIMARY KEY);\n",
        None,
    );
    migration(
        &m,
        "0002_bad",
        "CREATE TABLE c1 (id INT PRIMARY KEY);\n\nCREATE TABLE c2 (id INT PRIMARY KEY,);\nCREATE TABLE c3 (id INT);\n",
        None,
    );
    let e = t.up().await.expect_err("must fail");
    let text = e.to_string();
    match &e {
        Error::StatementFailed {
            version,
            line,
            path,
            aftermath,
            ..
        } => {
            assert_eq!(version, "0002");
            assert_eq!(*line, 3, "{text}");
            assert!(path.ends_with("0002_bad/up.sql"));
            let expected = if b == Backend::MySql {
                "marked dirty after 1 statement"
            } else {
                "rolled back"
            };
            assert!(aftermath.to_string().contains(expected), "{text}");
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(text.contains("0002_bad/up.sql:3"), "{text}");
    assert!(
        t.table_exists("ok1").await,
        "the first migration stays applied"
    );
    assert_eq!(t.events("apply").await, 1);
    if b == Backend::MySql {
        // MySQL cannot roll DDL back: the statement before the failure stays, the
        // migration is dirty, and nothing is restored behind the user's back.
        assert!(t.table_exists("c1").await);
        let mut db = t.db().await;
        let (_, state) = runner::status(&mut db, &t.source()).await.expect("status");
        assert_eq!(state.dirty_of("0002").expect("dirty").statements_applied, 1);
        if let Error::StatementFailed {
            aftermath: Aftermath::Dirty {
                backup: Some(id), ..
            },
            ..
        } = &e
        {
            assert!(
                text.contains(&format!("instar restore {id} --force"))
                    && text.contains("discarding every write"),
                "offers the restore and says what it discards: {text}"
            );
        }
    } else {
        assert!(
            !t.table_exists("c1").await,
            "the failed migration left nothing behind"
        );
        assert_eq!(t.events("fail").await, 1);
    }
}

async fn failed_non_transactional_file_is_dirty_then_resumes(b: Backend) {
    let Some(t) = TestDb::new(b, "dirty_then_resumes").await else {
        return;
    };
    let up = t.migrations().join("0001_d/up.sql");
    let head = "-- instar:no-transaction\nCREATE TABLE d1 (id INT PRIMARY KEY);\n";
    file(
        &up,
        &format!(
            "{head}CREATE TABLE d2 (id INT PRIMARY KEY,);\nCREATE TABLE d3 (id INT PRIMARY KEY);\n"
        ),
    );
    let opts = RunOptions {
        restore_on_failure: false,
        ..t.options()
    };
    let e = t
        .run_with(Target::Up { to: None }, &opts)
        .await
        .expect_err("must fail");
    assert!(
        matches!(
            &e,
            Error::StatementFailed {
                aftermath: Aftermath::Dirty { applied: 1, .. },
                line: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("instar up"),
        "says how to get out: {e}"
    );
    assert!(t.table_exists("d1").await && !t.table_exists("d2").await);

    // Editing a statement that already ran is refused.
    file(&up, "-- instar:no-transaction\nCREATE TABLE d1 (id INT PRIMARY KEY, x INT);\nCREATE TABLE d2 (id INT PRIMARY KEY);\n");
    let p = problems(
        t.run_with(Target::Up { to: None }, &opts)
            .await
            .expect_err("refused"),
    );
    assert!(
        matches!(&p[0], Problem::Dirty { why, .. } if why.contains("has changed")),
        "{p:?}"
    );

    // Fixing the failed statement resumes after the one that ran (re-creating d1 would fail).
    file(
        &up,
        &format!(
            "{head}CREATE TABLE d2 (id INT PRIMARY KEY);\nCREATE TABLE d3 (id INT PRIMARY KEY);\n"
        ),
    );
    let r = t
        .run_with(Target::Up { to: None }, &opts)
        .await
        .expect("resumed");
    assert_eq!(r.migrations, vec!["0001"]);
    assert!(t.table_exists("d2").await && t.table_exists("d3").await);
    assert_eq!(t.events("apply").await, 1);
}

async fn repair_clears_a_dirty_mark(b: Backend) {
    let Some(t) = TestDb::new(b, "repair_clears_dirty").await else {
        return;
    };
    migration(
        &t.migrations(),
        "0001_r",
        "-- instar:no-transaction\nCREATE TABLE r1 (id INT);\nSELEC 1;\n",
        None,
    );
    let opts = RunOptions {
        restore_on_failure: false,
        ..t.options()
    };
    t.run_with(Target::Up { to: None }, &opts)
        .await
        .expect_err("fails");
    let mut db = t.db().await;
    let (st, state) = runner::status(&mut db, &t.source()).await.expect("status");
    assert_eq!(
        st.migrations[0].standing,
        instar_core::plan::Standing::Dirty
    );
    assert_eq!(state.dirty_of("0001").expect("dirty").statements_applied, 1);
    let done = runner::repair(
        &mut db,
        &t.source(),
        &RepairOptions {
            reason: Some("dropped r1 by hand".into()),
            ..Default::default()
        },
        Duration::from_secs(5),
    )
    .await
    .expect("repair");
    assert_eq!(done.len(), 1, "{done:?}");
    let (st, _) = runner::status(&mut db, &t.source()).await.expect("status");
    assert_eq!(
        st.migrations[0].standing,
        instar_core::plan::Standing::Pending
    );
    db.close().await.expect("close");
    assert_eq!(t.events("repair").await, 1);
}

async fn edited_applied_migration_is_refused_until_accepted(b: Backend) {
    let Some(t) = TestDb::new(b, "edited_applied").await else {
        return;
    };
    let m = t.migrations();
    migration(&m, "0001_e", "CREATE TABLE e1 (id INT);\n", None);
    t.up().await.expect("up");
    migration(&m, "0001_e", "CREATE TABLE e1 (id INT, x INT);\n", None);
    migration(&m, "0002_f", "CREATE TABLE f1 (id INT);\n", None);
    let p = problems(t.up().await.expect_err("refused"));
    assert!(
        matches!(&p[0], Problem::ChecksumMismatch { version, recorded, found, .. } if version == "0001" && recorded != found),
        "{p:?}"
    );
    assert!(
        p[0].to_string().contains("sha256:"),
        "names both checksums: {}",
        p[0]
    );
    assert!(!t.table_exists("f1").await, "nothing ran");
    let mut db = t.db().await;
    runner::repair(
        &mut db,
        &t.source(),
        &RepairOptions {
            accept_checksums: true,
            ..Default::default()
        },
        Duration::from_secs(5),
    )
    .await
    .expect("accept");
    db.close().await.expect("close");
    t.up().await.expect("up after accepting");
    assert!(t.table_exists("f1").await);
    assert_eq!(t.events("realign").await, 1);
}

async fn deleted_applied_migration_is_refused(b: Backend) {
    let Some(t) = TestDb::new(b, "deleted_applied").await else {
        return;
    };
    let m = t.migrations();
    two_tables(&t);
    migration(&m, "0003_c", "CREATE TABLE c (id INT);\n", None);
    t.up().await.expect("up");
    std::fs::remove_dir_all(m.join("0002_b")).expect("rm");
    migration(&m, "0004_d", "CREATE TABLE d (id INT);\n", None);
    let p = problems(t.up().await.expect_err("refused"));
    assert!(
        matches!(&p[0], Problem::Missing { version, .. } if version == "0002"),
        "{p:?}"
    );
    assert!(!t.table_exists("d").await);
    let opts = RunOptions {
        ignore_missing: true,
        ..t.options()
    };
    t.run_with(Target::Up { to: None }, &opts)
        .await
        .expect("with --ignore-missing");
    assert!(t.table_exists("d").await);
}

async fn database_newer_than_files_is_refused_untouched(b: Backend) {
    let Some(t) = TestDb::new(b, "newer_than_files").await else {
        return;
    };
    two_tables(&t);
    t.up().await.expect("up");
    std::fs::remove_dir_all(t.migrations().join("0002_b")).expect("rm");
    let before = t.count("SELECT count(*) FROM instar_history").await;
    let p = problems(t.up().await.expect_err("refused"));
    assert!(
        matches!(&p[0], Problem::NewerThanFiles { versions, .. } if versions == &vec!["0002".to_string()]),
        "{p:?}"
    );
    let p = problems(t.down(1).await.expect_err("refused too"));
    assert!(matches!(&p[0], Problem::NewerThanFiles { .. }));
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history").await,
        before,
        "history untouched"
    );
    assert!(t.table_exists("b").await);
}

async fn lock_excludes_a_second_runner(b: Backend) {
    let Some(t) = TestDb::new(b, "lock_excludes").await else {
        return;
    };
    two_tables(&t);
    let mut holder = t.db().await;
    holder
        .lock(Duration::ZERO, || {})
        .await
        .expect("first lock");
    let opts = RunOptions {
        lock_timeout: Duration::ZERO,
        ..t.options()
    };
    let e = t
        .run_with(Target::Up { to: None }, &opts)
        .await
        .expect_err("lock is held");
    assert!(matches!(e, Error::LockTimeout { .. }), "{e}");
    assert!(e
        .to_string()
        .contains("another instar run holds the migration lock"));
    assert!(!t.table_exists("a").await);
    let opts = RunOptions {
        lock_timeout: Duration::from_secs(20),
        ..t.options()
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.unlock().await.expect("unlock");
    };
    let (_, r) = tokio::join!(release, t.run_with(Target::Up { to: None }, &opts));
    assert_eq!(r.expect("waited, then ran").migrations.len(), 2);
}

/// Starts `up` on two threads at the same moment, each with its own runtime and
/// connection; returns the test database and what each run applied.
fn up_twice_at_once(t: TestDb) -> (std::sync::Arc<TestDb>, Vec<Vec<String>>) {
    let t = std::sync::Arc::new(t);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (t, barrier) = (t.clone(), barrier.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("rt");
                barrier.wait();
                rt.block_on(t.up()).map(|r| r.migrations)
            })
        })
        .collect();
    let applied = threads
        .into_iter()
        .map(|h| h.join().expect("thread").expect("run"))
        .collect();
    (t, applied)
}

async fn concurrent_runners_apply_each_migration_once(b: Backend) {
    let Some(t) = TestDb::new(b, "concurrent_runners").await else {
        return;
    };
    for i in 1..=4 {
        migration(
            &t.migrations(),
            &format!("000{i}_m{i}"),
            &format!("CREATE TABLE m{i} (id INT);\n{};\n", t.sleep_sql(0)),
            None,
        );
    }
    let (t, applied) = up_twice_at_once(t);
    let applied: Vec<usize> = applied.iter().map(Vec::len).collect();
    assert_eq!(applied.iter().sum::<usize>(), 4, "{applied:?}");
    assert_eq!(
        t.events("apply").await,
        4,
        "each migration applied exactly once"
    );
}

async fn single_transaction_is_all_or_nothing(b: Backend) {
    let Some(t) = TestDb::new(b, "single_transaction").await else {
        return;
    };
    two_tables(&t);
    migration(
        &t.migrations(),
        "0003_bad",
        "CREATE TABLE s3 (id INT);\nSELEC 1;\n",
        None,
    );
    let opts = RunOptions {
        single_transaction: true,
        ..t.options()
    };
    let e = t
        .run_with(Target::Up { to: None }, &opts)
        .await
        .expect_err("fails");
    if b == Backend::MySql {
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
    } else {
        assert!(matches!(e, Error::StatementFailed { line: 2, .. }), "{e}");
        assert_eq!(t.events("apply").await, 0);
        assert_eq!(t.events("fail").await, 1);
    }
    assert!(!t.table_exists("a").await && !t.table_exists("s3").await);
    std::fs::remove_dir_all(t.migrations().join("0003_bad")).expect("rm");
    if b != Backend::MySql {
        assert_eq!(
            t.run_with(Target::Up { to: None }, &opts)
                .await
                .expect("ok")
                .migrations
                .len(),
            2
        );
    }
}

async fn failing_check_rolls_back(b: Backend) {
    let Some(t) = TestDb::new(b, "failing_check").await else {
        return;
    };
    let m = t.migrations();
    migration(&m, "0001_chk", "CREATE TABLE chk (id INT);\n", None);
    file(
        &m.join("0001_chk/migration.toml"),
        "checks.after = [\"SELECT count(*) = 1 FROM chk\"]\n",
    );
    let e = t.up().await.expect_err("check fails");
    assert!(
        matches!(e, Error::CheckFailed { phase: "after", .. }),
        "{e}"
    );
    // MySQL commits DDL as it goes: the migration stays dirty after its statement,
    // and the fixed file resumes after it.
    assert_eq!(t.table_exists("chk").await, b == Backend::MySql, "{e}");
    migration(
        &m,
        "0001_chk",
        "CREATE TABLE chk (id INT);\nINSERT INTO chk VALUES (1);\n",
        None,
    );
    t.up().await.expect("check passes");
    assert_eq!(t.events("apply").await, 1);
}

async fn init_sql_runs_first(b: Backend) {
    let Some(t) = TestDb::new(b, "init_sql").await else {
        return;
    };
    let mut s = instar_db::Settings::new(&t.url);
    s.init_sql = vec!["CREATE TABLE init_marker (id INT)".into()];
    s.history_table = "custom_history".into();
    migration(
        &t.migrations(),
        "0001_x",
        "INSERT INTO init_marker VALUES (1);\n",
        None,
    );
    let mut db = instar_db::Db::connect(&s).await.expect("connect");
    runner::run(
        &mut db,
        &t.source(),
        Target::Up { to: None },
        &t.options(),
        &mut NullSink,
    )
    .await
    .expect("up");
    db.close().await.expect("close");
    assert_eq!(t.count("SELECT count(*) FROM init_marker").await, 1);
    assert_eq!(
        t.count("SELECT count(*) FROM custom_history WHERE event = 'apply'")
            .await,
        1
    );
    assert!(!t.table_exists("instar_history").await);
}

async fn baseline_skips_older_migrations(b: Backend) {
    let Some(t) = TestDb::new(b, "baseline").await else {
        return;
    };
    two_tables(&t);
    migration(
        &t.migrations(),
        "0003_c",
        "CREATE TABLE c (id INT);\n",
        None,
    );
    let mut db = t.db().await;
    runner::baseline(
        &mut db,
        &t.source(),
        "0002",
        Some("adopted".into()),
        Duration::from_secs(5),
    )
    .await
    .expect("baseline");
    db.close().await.expect("close");
    assert_eq!(t.up().await.expect("up").migrations, vec!["0003"]);
    assert!(!t.table_exists("a").await && t.table_exists("c").await);
    let mut db = t.db().await;
    let e = runner::baseline(&mut db, &t.source(), "0003", None, Duration::from_secs(5))
        .await
        .expect_err("not twice");
    assert!(matches!(e, Error::Unsupported(_)));
}

async fn out_of_order_is_refused_unless_allowed(b: Backend) {
    let Some(t) = TestDb::new(b, "out_of_order").await else {
        return;
    };
    let m = t.migrations();
    migration(&m, "0001_a", "CREATE TABLE a (id INT);\n", None);
    migration(&m, "0003_c", "CREATE TABLE c (id INT);\n", None);
    t.up().await.expect("up");
    migration(&m, "0002_b", "CREATE TABLE b (id INT);\n", None);
    let p = problems(t.up().await.expect_err("refused"));
    assert!(
        matches!(&p[0], Problem::OutOfOrder { version, .. } if version == "0002"),
        "{p:?}"
    );
    let opts = RunOptions {
        allow_out_of_order: true,
        ..t.options()
    };
    assert_eq!(
        t.run_with(Target::Up { to: None }, &opts)
            .await
            .expect("allowed")
            .migrations,
        vec!["0002"]
    );
}

async fn down_to_and_irreversible(b: Backend) {
    let Some(t) = TestDb::new(b, "down_to").await else {
        return;
    };
    two_tables(&t);
    migration(
        &t.migrations(),
        "0003_c",
        "CREATE TABLE c (id INT);\n",
        Some("DROP TABLE c;\n"),
    );
    migration(
        &t.migrations(),
        "0004_d",
        "CREATE TABLE d (id INT);\n",
        None,
    );
    t.up().await.expect("up");
    let e = t.down(1).await.expect_err("no down script");
    assert!(
        e.to_string().contains("0004") && e.to_string().contains("no down script"),
        "{e}"
    );
    std::fs::write(t.migrations().join("0004_d/down.sql"), "DROP TABLE d;\n").expect("write");
    let r = t
        .run_with(
            Target::Down {
                to: Some("0002".into()),
                steps: None,
            },
            &t.options(),
        )
        .await
        .expect("down --to");
    assert_eq!(r.migrations, vec!["0004", "0003"]);
    assert!(t.table_exists("b").await && !t.table_exists("c").await);
}

async fn repeatable_reruns_when_changed(b: Backend) {
    let Some(t) = TestDb::new(b, "repeatable").await else {
        return;
    };
    let m = t.migrations();
    file(
        &m.join("V1__base.sql"),
        "CREATE TABLE base (id INT);\nINSERT INTO base VALUES (1);\n",
    );
    file(
        &m.join("R__view.sql"),
        "DROP VIEW IF EXISTS v;\nCREATE VIEW v AS SELECT id FROM base;\n",
    );
    assert_eq!(t.up().await.expect("up").migrations, vec!["1", "R__view"]);
    assert!(t.up().await.expect("noop").migrations.is_empty());
    file(
        &m.join("R__view.sql"),
        "DROP VIEW IF EXISTS v;\nCREATE VIEW v AS SELECT id, id * 2 AS twice FROM base;\n",
    );
    assert_eq!(t.up().await.expect("rerun").migrations, vec!["R__view"]);
    assert_eq!(t.count("SELECT twice FROM v").await, 2);
}

async fn backup_and_restore(b: Backend) {
    let Some(t) = TestDb::new(b, "backup_and_restore").await else {
        return;
    };
    if crate::harness::backup_tool_missing(b, "backup_and_restore") {
        return;
    }
    two_tables(&t);
    t.run_with(
        Target::Up {
            to: Some("0001".into()),
        },
        &t.options(),
    )
    .await
    .expect("up to 0001");
    let mut db = t.db().await;
    let info = backup::take(&mut db, &t.backups(), "test")
        .await
        .expect("backup")
        .expect("taken");
    db.close().await.expect("close");
    t.up().await.expect("up");
    assert!(t.table_exists("b").await);
    let mut db = t.db().await;
    backup::restore(&mut db, &t.backups(), &info.id)
        .await
        .expect("restore");
    db.close().await.expect("close");
    assert!(!t.table_exists("b").await && t.table_exists("a").await);
    assert_eq!(t.events("apply").await, 1);
    assert!(backup::list(&t.backups())
        .expect("list")
        .iter()
        .any(|x| x.id == info.id));
}

async fn runtime_error_mid_file_names_its_line(b: Backend) {
    let Some(t) = TestDb::new(b, "runtime_error_mid_file").await else {
        return;
    };
    migration(
        &t.migrations(),
        "0001_dup",
        "CREATE TABLE dup (id INT PRIMARY KEY);\nINSERT INTO dup VALUES (1);\n-- the next insert repeats the key\nINSERT INTO dup VALUES (1);\n",
        None,
    );
    let e = t.up().await.expect_err("duplicate key");
    assert!(matches!(&e, Error::StatementFailed { line: 4, .. }), "{e}");
    if b == Backend::MySql {
        assert!(e.to_string().contains("dirty after 2 statement"), "{e}");
    } else {
        assert!(!t.table_exists("dup").await, "{e}");
        assert_eq!(t.events("fail").await, 1);
    }
}

/// Script shapes found in real projects, per engine: function bodies, triggers,
/// procedures, comments with semicolons. Each must split and run.
async fn real_world_scripts_run(b: Backend) {
    let Some(t) = TestDb::new(b, "real_world_scripts").await else {
        return;
    };
    let (up, probe) = match b {
        Backend::Postgres => (
            "CREATE TABLE users (id SERIAL PRIMARY KEY, email TEXT, updated_at TIMESTAMPTZ);
CREATE TYPE mood AS ENUM ('ok');
-- A trigger function; its body is full of semicolons.
CREATE OR REPLACE FUNCTION touch() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now(); -- comment; here
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
CREATE FUNCTION add(a integer, b integer) RETURNS integer LANGUAGE SQL
    BEGIN ATOMIC
        SELECT a + b;
    END;
/* block; /* nested */ comment */
INSERT INTO users (email) VALUES ('it''s; fine');
",
            "SELECT add(count(*)::int, 0)::bigint FROM users",
        ),
        Backend::MySql => (
            "CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(100), n INT DEFAULT 0);
# a MySQL comment; with a semicolon
CREATE PROCEDURE bump(IN x INT)
BEGIN
    IF x > 0 THEN
        UPDATE users SET n = n + x;
    END IF;
    SELECT CASE WHEN x > 1 THEN 'many' ELSE 'one' END;
END;
CREATE TRIGGER users_bi BEFORE INSERT ON users FOR EACH ROW
BEGIN
    SET NEW.n = IF(NEW.n IS NULL, 0, NEW.n);
END;
INSERT INTO users (email) VALUES ('a\\'b;c');
",
            "SELECT count(*) FROM users",
        ),
        Backend::Sqlite => (
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
CREATE TABLE log (msg TEXT);
CREATE TRIGGER users_ai AFTER INSERT ON users
BEGIN
    INSERT INTO log VALUES ('inserted; ' || NEW.id);
    UPDATE log SET msg = CASE WHEN msg IS NULL THEN '' ELSE msg END;
END;
INSERT INTO users (email) VALUES ('x;y');
",
            "SELECT count(*) FROM log",
        ),
    };
    migration(&t.migrations(), "0001_real", up, None);
    if b == Backend::Postgres {
        // Statements PostgreSQL refuses inside a transaction, in an opted-out file.
        migration(
            &t.migrations(),
            "0002_concurrently",
            "-- instar:no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nALTER TYPE mood ADD VALUE 'great';\n",
            None,
        );
    }
    t.up().await.expect("real-world script");
    assert_eq!(t.count(probe).await, 1);
}

/// A multi-row INSERT of `n` users, portable across the three engines.
fn seed_users(n: usize) -> String {
    let rows: Vec<String> = (1..=n)
        .map(|i| format!("({i}, 'User{i}@Example.COM')"))
        .collect();
    format!(
        "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, email_lower VARCHAR(100));\nINSERT INTO users (id, email) VALUES {};\n",
        rows.join(", ")
    )
}

pub(crate) fn data_migration(t: &TestDb, folder: &str, toml: &str, statement: &str) {
    migration(&t.migrations(), folder, statement, None);
    file(&t.migrations().join(folder).join("migration.toml"), toml);
}

async fn data_migration_backfills_in_batches(b: Backend) {
    let Some(t) = TestDb::new(b, "data_backfill").await else {
        return;
    };
    migration(&t.migrations(), "0001_users", &seed_users(250), None);
    data_migration(
        &t,
        "0002_backfill",
        "kind = \"data\"\n[data]\ntable = \"users\"\nkey = \"id\"\nbatch_size = 40\n[checks]\nafter = [\"SELECT count(*) = 0 FROM users WHERE email_lower IS NULL\"]\n",
        "UPDATE users SET email_lower = lower(email) WHERE {batch};\n",
    );
    let mut events = Vec::new();
    let mut db = t.db().await;
    let r = t.up_on(&mut db, &mut events).await.expect("up");
    db.close().await.expect("close");
    assert_eq!(r.migrations, vec!["0001", "0002"]);
    let batches = events
        .iter()
        .filter(|e| matches!(e, instar_core::event::Event::BatchFinished { .. }))
        .count();
    assert_eq!(batches, 7, "250 rows in batches of 40");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE email_lower = lower(email)")
            .await,
        250
    );
    assert_eq!(
        t.count(
            "SELECT rows_affected FROM instar_history WHERE version = '0002' AND event = 'apply'"
        )
        .await,
        250
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_checkpoints").await,
        0,
        "the checkpoint goes with the apply row"
    );
}

/// Runs `up` with `opts` until it is no longer paused (at most `max` runs) and
/// returns the checkpoints found after each paused run.
async fn run_until_done(
    t: &TestDb,
    opts: &RunOptions,
    max: usize,
) -> Vec<Vec<instar_db::data::Checkpoint>> {
    let mut seen = Vec::new();
    for _ in 0..max {
        let r = t
            .run_with(Target::Up { to: None }, opts)
            .await
            .expect("run");
        if r.paused.is_none() {
            return seen;
        }
        let mut db = t.db().await;
        seen.push(
            instar_db::data::checkpoints(&mut db)
                .await
                .expect("checkpoints"),
        );
        db.close().await.expect("close");
    }
    panic!("the run never finished in {max} runs");
}

async fn data_migration_resumes_from_its_checkpoint(b: Backend) {
    let Some(t) = TestDb::new(b, "data_resume").await else {
        return;
    };
    // A composite text key, walked in batches of 7 with a one-batch time budget per run.
    let rows: Vec<String> = (1..=60)
        .map(|i| format!("('t{}', 'name{i:03}', {i})", i % 3))
        .collect();
    migration(
        &t.migrations(),
        "0001_members",
        &format!(
            "CREATE TABLE members (tenant VARCHAR(10) NOT NULL, name VARCHAR(20) NOT NULL, n INT NOT NULL, doubled INT, PRIMARY KEY (tenant, name));\nINSERT INTO members (tenant, name, n) VALUES {};\n",
            rows.join(", ")
        ),
        None,
    );
    data_migration(
        &t,
        "0002_double",
        "kind = \"data\"\n[data]\ntable = \"members\"\nkey = [\"tenant\", \"name\"]\nbatch_size = 7\n",
        "UPDATE members SET doubled = n * 2 WHERE {batch}\n",
    );
    let opts = RunOptions {
        max_duration: Some(Duration::ZERO),
        ..t.options()
    };
    let seen = run_until_done(&t, &opts, 50).await;
    for (run, cps) in seen.iter().enumerate() {
        assert_eq!(cps.len(), 1);
        assert_eq!(
            cps[0].batches,
            run as i64 + 1,
            "one batch per run, never redone or skipped"
        );
        assert_eq!(cps[0].rows_total, 60);
    }
    let runs = seen.len() + 1;
    assert_eq!(runs, 9, "60 rows in batches of 7 is 9 batches");
    assert_eq!(
        t.count("SELECT count(*) FROM members WHERE doubled = n * 2")
            .await,
        60
    );
    assert_eq!(t.events("apply").await, 2);
}

async fn data_migration_refuses_bad_definitions(b: Backend) {
    let Some(t) = TestDb::new(b, "data_refused").await else {
        return;
    };
    migration(&t.migrations(), "0001_users", &format!("{}CREATE TABLE dupes (k INT NOT NULL, v INT);\nINSERT INTO dupes VALUES (7, 1), (7, 2);\n", seed_users(10)), None);
    t.up().await.expect("seed");
    let toml = |key: &str| {
        format!("kind = \"data\"\n[data]\ntable = \"users\"\nkey = \"{key}\"\nbatch_size = 3\n")
    };
    data_migration(
        &t,
        "0002_bad",
        &toml("no_such_column"),
        "UPDATE users SET email_lower = email WHERE {batch}\n",
    );
    let e = t.up().await.expect_err("missing column");
    assert!(
        matches!(e, Error::DataRefused { .. }) && e.to_string().contains("no_such_column"),
        "{e}"
    );
    data_migration(
        &t,
        "0002_bad",
        &toml("email_lower"),
        "UPDATE users SET email_lower = email WHERE {batch}\n",
    );
    let e = t.up().await.expect_err("NULL keys");
    assert!(e.to_string().contains("NULL values"), "{e}");
    data_migration(
        &t,
        "0002_bad",
        "kind = \"data\"\n[data]\ntable = \"dupes\"\nkey = \"k\"\nbatch_size = 3\n",
        "UPDATE dupes SET v = 0 WHERE {batch}\n",
    );
    let e = t.up().await.expect_err("non-unique key");
    assert!(
        e.to_string().contains("not unique") && e.to_string().contains("[7]"),
        "{e}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE email_lower IS NOT NULL")
            .await,
        0,
        "no batch ran"
    );
    assert_eq!(t.events("apply").await, 1);
}

fn limited_table() -> &'static str {
    "CREATE TABLE limited (id INT PRIMARY KEY, v INT NOT NULL, CHECK (v < 100));\nINSERT INTO limited (id, v) VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0), (10, 0), (11, 0), (12, 0);\n"
}

async fn data_migration_error_policies(b: Backend) {
    let Some(t) = TestDb::new(b, "data_errors").await else {
        return;
    };
    migration(&t.migrations(), "0001_limited", limited_table(), None);
    let toml = |policy: &str| {
        format!("kind = \"data\"\n[data]\ntable = \"limited\"\nkey = \"id\"\nbatch_size = 4\non_error = \"{policy}\"\n")
    };
    // v = id * 10 breaks the CHECK from id 10 on: the third batch (9..12) fails.
    data_migration(
        &t,
        "0002_scale",
        &toml("stop"),
        "UPDATE limited SET v = id * 10 WHERE {batch}\n",
    );
    let e = t.up().await.expect_err("stop policy");
    assert!(matches!(&e, Error::BatchFailed { rows_done: 8, .. }), "{e}");
    assert!(e.to_string().contains("after [8] up to [12]"), "{e}");
    let recorded = t
        .count("SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'start' AND error IS NOT NULL AND failed_statement LIKE '%up to [12]%'")
        .await;
    assert_eq!(recorded, 1, "the start row names the failed batch");
    assert_eq!(
        t.count("SELECT count(*) FROM limited WHERE v > 0").await,
        8,
        "batches before the failure stay done"
    );
    let mut db = t.db().await;
    let cps = instar_db::data::checkpoints(&mut db)
        .await
        .expect("checkpoints");
    db.close().await.expect("close");
    assert_eq!((cps[0].rows_done, cps[0].batches), (8, 2));

    // The same migration with on_error = "skip" (a new file: the edit is refused mid-run).
    let mut db = t.db().await;
    runner::repair(
        &mut db,
        &t.source(),
        &RepairOptions::default(),
        Duration::from_secs(5),
    )
    .await
    .expect("repair");
    db.close().await.expect("close");
    data_migration(
        &t,
        "0002_scale",
        &toml("skip"),
        "UPDATE limited SET v = id * 10 WHERE {batch}\n",
    );
    let mut db = t.db().await;
    assert_eq!(
        instar_db::data::checkpoints(&mut db)
            .await
            .expect("checkpoints")
            .len(),
        1,
        "the stale checkpoint is replaced"
    );
    db.close().await.expect("close");
    let r = t.up().await.expect("skip policy completes");
    assert_eq!(r.migrations, vec!["0002"]);
    assert_eq!(
        t.count("SELECT count(*) FROM limited WHERE v = id * 10")
            .await,
        9
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_errors WHERE version = '0002'")
            .await,
        3,
        "ids 10, 11, 12 are recorded"
    );
    let mut db = t.db().await;
    assert_eq!(
        instar_db::data::skipped_rows(&mut db)
            .await
            .expect("skipped"),
        vec![("0002".to_string(), 3)]
    );
    db.close().await.expect("close");
    let noted = t.count("SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'apply' AND note LIKE '%table rows before: 12, after: 12%'").await;
    assert_eq!(noted, 1, "row counts before and after are in the history");
}

/// The README's worked example: add a column, backfill it in batches, make it NOT NULL —
/// schema and data migrations in one plan, under one lock.
async fn schema_and_data_migrations_interleave(b: Backend) {
    let Some(t) = TestDb::new(b, "interleave").await else {
        return;
    };
    let m = t.migrations();
    migration(&m, "0001_users", &seed_users(95), None);
    migration(
        &m,
        "0002_add_email_domain",
        "ALTER TABLE users ADD COLUMN email_domain VARCHAR(100);\n",
        None,
    );
    let domain = match b {
        Backend::Sqlite => "lower(substr(email, instr(email, '@') + 1))",
        Backend::Postgres => "lower(split_part(email, '@', 2))",
        Backend::MySql => "lower(substring_index(email, '@', -1))",
    };
    data_migration(
        &t,
        "0003_backfill_email_domain",
        "kind = \"data\"\n[data]\ntable = \"users\"\nkey = \"id\"\nbatch_size = 10\n[checks]\nafter = [\"SELECT count(*) = 0 FROM users WHERE email_domain IS NULL\"]\n",
        &format!("UPDATE users SET email_domain = {domain} WHERE {{batch}}\n"),
    );
    let not_null = match b {
        // SQLite cannot add NOT NULL to a column in place: a CHECK-backed trigger stands in.
        Backend::Sqlite => "CREATE TRIGGER users_email_domain_nn BEFORE INSERT ON users WHEN NEW.email_domain IS NULL BEGIN SELECT RAISE(ABORT, 'email_domain is required'); END;\n",
        Backend::Postgres => "ALTER TABLE users ALTER COLUMN email_domain SET NOT NULL;\n",
        Backend::MySql => "ALTER TABLE users MODIFY email_domain VARCHAR(100) NOT NULL;\n",
    };
    migration(&m, "0004_email_domain_not_null", not_null, None);
    let r = t.up().await.expect("one plan");
    assert_eq!(r.migrations, vec!["0001", "0002", "0003", "0004"]);
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE email_domain = 'example.com'")
            .await,
        95
    );
    let mut c = t.raw().await;
    let refused = sqlx::raw_sql("INSERT INTO users (id, email) VALUES (1000, 'x@y.z')")
        .execute(&mut c)
        .await;
    assert!(refused.is_err(), "the column is required now");
}

async fn data_migration_dry_run_estimates_and_changes_nothing(b: Backend) {
    let Some(t) = TestDb::new(b, "data_dry_run").await else {
        return;
    };
    migration(&t.migrations(), "0001_users", &seed_users(250), None);
    t.up().await.expect("seed");
    data_migration(
        &t,
        "0002_backfill",
        "kind = \"data\"\n[data]\ntable = \"users\"\nkey = \"id\"\nbatch_size = 40\n",
        "UPDATE users SET email_lower = lower(email) WHERE {batch}\n",
    );
    let mut db = t.db().await;
    let steps = runner::preview(&mut db, &t.source(), Target::Up { to: None }, &t.options())
        .await
        .expect("preview");
    db.close().await.expect("close");
    let e = steps[0]
        .estimate
        .as_ref()
        .expect("an estimate for the data step");
    assert_eq!((e.rows_total, e.first_batch_rows, e.batches), (250, 40, 7));
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE email_lower IS NOT NULL")
            .await,
        0,
        "rolled back"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE version = '0002'")
            .await,
        0,
        "nothing recorded"
    );
}

/// A `counts (id, v)` table of `n` rows (ids `stride` apart) and a data migration
/// `v = v + 1` over it. Not idempotent: a redone batch leaves 2, a skipped one 0.
fn counts_and_bump(t: &TestDb, n: usize, stride: usize, batch: u64) {
    let values: Vec<String> = (1..=n).map(|i| format!("({}, 0)", i * stride)).collect();
    migration(
        &t.migrations(),
        "0001_counts",
        &format!("CREATE TABLE counts (id INT PRIMARY KEY, v INT NOT NULL);\nINSERT INTO counts VALUES {};\n", values.join(", ")),
        None,
    );
    data_migration(
        t,
        "0002_bump",
        &format!(
            "kind = \"data\"\n[data]\ntable = \"counts\"\nkey = \"id\"\nbatch_size = {batch}\n"
        ),
        "UPDATE counts SET v = v + 1 WHERE {batch}\n",
    );
}

async fn data_migration_runs_in_parallel_slices(b: Backend) {
    let Some(t) = TestDb::new(b, "data_parallel").await else {
        return;
    };
    counts_and_bump(&t, 1000, 3, 40);
    let opts = RunOptions {
        parallel: 3,
        max_duration: Some(Duration::ZERO),
        ..t.options()
    };
    if b == Backend::Sqlite {
        let e = t
            .run_with(Target::Up { to: None }, &opts)
            .await
            .expect_err("one writer");
        assert!(e.to_string().contains("one write lock"), "{e}");
        return;
    }
    let seen = run_until_done(&t, &opts, 40).await;
    assert!(!seen.is_empty());
    for (run, cps) in seen.iter().enumerate() {
        assert_eq!(cps.len(), 3, "three slices, each with its checkpoint");
        assert_eq!(cps.iter().map(|c| c.rows_total).sum::<i64>(), 1000);
        assert!(
            cps.iter().all(|c| c.batches == run as i64 + 1),
            "each slice did one batch per run: {cps:?}"
        );
    }
    assert_eq!(
        t.count("SELECT count(*) FROM counts WHERE v = 1").await,
        1000,
        "every row exactly once"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE note LIKE '%3 parallel slices%'")
            .await,
        1
    );
}

async fn data_migration_reverts_in_batches(b: Backend) {
    let Some(t) = TestDb::new(b, "data_down").await else {
        return;
    };
    migration(&t.migrations(), "0001_users", &seed_users(30), None);
    t.up().await.expect("seed");
    let backups_before = instar_db::backup::list(&t.backups())
        .expect("backups")
        .len();
    data_migration(
        &t,
        "0002_backfill",
        "kind = \"data\"\n[data]\ntable = \"users\"\nkey = \"id\"\nbatch_size = 7\n",
        "UPDATE users SET email_lower = lower(email) WHERE {batch}\n",
    );
    std::fs::write(
        t.migrations().join("0002_backfill/down.sql"),
        "UPDATE users SET email_lower = NULL WHERE {batch}\n",
    )
    .expect("down");
    t.up().await.expect("up");
    let backups_after = instar_db::backup::list(&t.backups())
        .expect("backups")
        .len();
    if b == Backend::MySql {
        // A run with only a data migration pending takes no dump: its batches commit with checkpoints.
        assert_eq!(
            backups_after, backups_before,
            "no mysqldump for a data-only run"
        );
    }
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE email_lower IS NOT NULL")
            .await,
        30
    );
    assert_eq!(t.down(1).await.expect("down").migrations, vec!["0002"]);
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE email_lower IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'revert'")
            .await,
        1
    );
}

async fn data_migration_with_two_runners_is_done_once(b: Backend) {
    let Some(t) = TestDb::new(b, "data_two_runners").await else {
        return;
    };
    counts_and_bump(&t, 600, 1, 25);
    let (t, done) = up_twice_at_once(t);
    assert_eq!(
        done.iter()
            .filter(|m| m.contains(&"0002".to_string()))
            .count(),
        1,
        "one runner did the work: {done:?}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM counts WHERE v = 1").await,
        600,
        "every row exactly once"
    );
}

async fn data_migration_with_uuid_keys(b: Backend) {
    let Some(t) = TestDb::new(b, "data_uuid").await else {
        return;
    };
    let key_type = if b == Backend::Postgres {
        "uuid"
    } else {
        "CHAR(36)"
    };
    let values: Vec<String> = (1..=100u64)
        .map(|i| {
            format!(
                "('{:08x}-0000-4000-8000-{:012x}', 0)",
                i.wrapping_mul(2_654_435_761) % 0xffff_ffff,
                i
            )
        })
        .collect();
    migration(
        &t.migrations(),
        "0001_tokens",
        &format!("CREATE TABLE tokens (id {key_type} PRIMARY KEY, v INT NOT NULL);\nINSERT INTO tokens VALUES {};\n", values.join(", ")),
        None,
    );
    data_migration(
        &t,
        "0002_bump",
        "kind = \"data\"\n[data]\ntable = \"tokens\"\nkey = \"id\"\nbatch_size = 7\n",
        "UPDATE tokens SET v = v + 1 WHERE {batch}\n",
    );
    let opts = RunOptions {
        max_duration: Some(Duration::ZERO),
        ..t.options()
    };
    for _ in 0..3 {
        t.run_with(Target::Up { to: None }, &opts)
            .await
            .expect("a few batches, resumed from a UUID checkpoint");
    }
    t.up().await.expect("the rest");
    assert_eq!(
        t.count("SELECT count(*) FROM tokens WHERE v = 1").await,
        100,
        "every row exactly once"
    );
}

/// The database is shared: an application inserting rows while a migration
/// fails half way keeps every row it wrote (no automatic restore by default).
async fn a_failed_run_keeps_what_other_clients_wrote(b: Backend) {
    let Some(t) = TestDb::new(b, "failed_run_keeps_other_writes").await else {
        return;
    };
    let m = t.migrations();
    migration(
        &m,
        "0001_orders",
        "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(20));\n",
        None,
    );
    t.up().await.expect("0001");
    migration(
        &m,
        "0002_slow_then_broken",
        &format!(
            "-- instar:no-transaction\nCREATE TABLE side (id INT);\n{};\nSELEC broken;\n",
            t.sleep_sql(2)
        ),
        None,
    );
    // The application is another client: its own thread, runtime and
    // connection (a SQLite statement runs on its caller's thread).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = instar_db::url::DbUrl::parse(&t.url)
        .expect("url")
        .driver_url;
    let stop = done.clone();
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            let mut written = 0i64;
            // Bounded: at most 600 inserts, 20 ms apart (the run takes about 2 s).
            for i in 0..600 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let sql = format!("INSERT INTO orders (id, note) VALUES ({i}, 'app')");
                if sqlx::raw_sql(&sql).execute(&mut c).await.is_ok() {
                    written += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            written
        })
    });
    let result = t.up().await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().expect("writer");
    let e = result.expect_err("0002 fails at its last statement");
    assert!(
        matches!(
            &e,
            Error::StatementFailed {
                aftermath: Aftermath::Dirty { applied: 2, .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(written > 0, "the application wrote during the run");
    assert_eq!(
        t.count("SELECT count(*) FROM orders").await,
        written,
        "every row the application wrote is still there"
    );
    assert!(
        t.table_exists("side").await,
        "the migration's own work stays, marked dirty"
    );
}
