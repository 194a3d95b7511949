//! Cloud Spanner, against the emulator's REST gateway
//! (`INSTAR_TEST_SPANNER_EMULATOR=host:port`; `.ci/run` starts it). Each test
//! has its own database. Covered: groups of DDL (operations) and DML
//! (transactions), down; a batch that applies partly (dirty, exactly the
//! statements that took effect, resumed after the fix, or repaired); a
//! process killed around a schema-change operation (found on restart, never
//! sent twice), by hand-made state and at random moments; the lease (racing
//! runners, a holder paused past its lease, unlock); data migrations in
//! batches (killed and resumed, each row once; the mutation limit).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use instar_spanner::client::Client;
use instar_spanner::SpannerUrl;
use serde_json::Value;

use crate::harness::{file, migration};

struct Sp {
    dir: tempfile::TempDir,
    url: String,
    parsed: SpannerUrl,
}

/// A fresh database on the emulator, or `None` with a skip line (a failure under CI=true).
fn spanner(test: &str) -> Option<Sp> {
    let Some(host) = std::env::var("INSTAR_TEST_SPANNER_EMULATOR")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: INSTAR_TEST_SPANNER_EMULATOR is not set, and CI=true (.ci/run starts the emulator)"
        );
        eprintln!("SKIPPED {test}: INSTAR_TEST_SPANNER_EMULATOR is not set (the emulator's REST gateway, host:port)");
        return None;
    };
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let id = format!(
        "t{:x}{:x}{}",
        std::process::id(),
        nanos % 0xfffff,
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let url = format!("spanner://{host}/projects/instar-test/instances/instar-test/databases/{id}");
    let parsed = SpannerUrl::parse(&url).unwrap();
    instar_spanner::admin::create_database(&parsed).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("migrations")).unwrap();
    Some(Sp { dir, url, parsed })
}

impl Drop for Sp {
    fn drop(&mut self) {
        let _ = instar_spanner::admin::drop_database(&self.parsed);
    }
}

impl Sp {
    fn migrations(&self) -> PathBuf {
        self.dir.path().join("migrations")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_at(&self.url, args)
    }

    fn cmd_at(&self, url: &str, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("instar"));
        c.current_dir(self.dir.path())
            .args(["--database", url, "--migrations"])
            .arg(self.migrations())
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("INSTAR_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "instar {args:?}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        Client::new(&self.parsed)
            .session()
            .unwrap()
            .query(sql, &[])
            .unwrap()
    }

    fn int(&self, sql: &str) -> i64 {
        self.query(sql)[0][0].as_str().unwrap().parse().unwrap()
    }

    fn tables(&self) -> Vec<String> {
        self.query("SELECT table_name FROM information_schema.tables WHERE table_schema = '' AND table_name NOT LIKE 'instar_%' ORDER BY table_name")
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect()
    }

    /// (event, version) of every history row.
    fn history(&self) -> Vec<(String, String)> {
        self.query("SELECT event, version FROM instar_history ORDER BY id")
            .iter()
            .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
            .collect()
    }

    fn applied(&self, version: &str) -> usize {
        self.history()
            .iter()
            .filter(|(e, v)| e == "apply" && v == version)
            .count()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ddl_and_dml_groups_apply_and_revert() {
    let Some(sp) = spanner("ddl_and_dml_groups_apply_and_revert") else {
        return;
    };
    migration(
        &sp.migrations(),
        "0001_users",
        "CREATE TABLE users (id INT64 NOT NULL, email STRING(MAX)) PRIMARY KEY (id);\nCREATE INDEX users_email ON users (email);\nINSERT INTO users (id, email) VALUES (1, 'a@x.org'), (2, 'b@y.org');\nINSERT INTO users (id, email) VALUES (3, 'c@x.org');\nALTER TABLE users ADD COLUMN domain STRING(MAX);\n",
        Some("DROP INDEX users_email;\nDROP TABLE users;\n"),
    );
    let plan = sp.ok(&["plan"]);
    assert!(
        plan.contains("one schema-change operation") && plan.contains("one read-write transaction"),
        "{plan}"
    );
    assert!(
        plan.contains("-- line 5\nALTER TABLE users ADD COLUMN domain"),
        "{plan}"
    );
    let out = sp.ok(&["up"]);
    assert!(out.contains("1 migration(s) done"), "{out}");
    assert_eq!(sp.int("SELECT COUNT(*) FROM users"), 3);
    let cols = sp.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position");
    assert_eq!(cols.len(), 3);
    let status = sp.ok(&["status", "--check"]);
    assert!(status.contains("applied    0001"), "{status}");
    let json: Value = serde_json::from_str(&sp.ok(&["--format", "json", "history"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.last().unwrap()["event"], "apply");
    assert_eq!(rows.last().unwrap()["statements_applied"], 5);
    assert!(sp.ok(&["up"]).contains("nothing to do"));
    sp.ok(&["down"]);
    assert!(sp.tables().is_empty(), "{:?}", sp.tables());
    assert_eq!(sp.history().last().unwrap().0, "revert");
}

#[test]
fn a_batch_that_applies_partly_is_dirty_with_what_took_effect() {
    let Some(sp) = spanner("a_batch_that_applies_partly_is_dirty_with_what_took_effect") else {
        return;
    };
    migration(
        &sp.migrations(),
        "0001_t",
        "CREATE TABLE t (id INT64 NOT NULL, v STRING(MAX)) PRIMARY KEY (id);\nINSERT INTO t (id, v) VALUES (1, 'same'), (2, 'same');\n",
        None,
    );
    // Checked up front and valid; the unique index fails while it runs,
    // after the first statement has committed.
    migration(
        &sp.migrations(),
        "0002_index",
        "CREATE TABLE audit (id INT64 NOT NULL) PRIMARY KEY (id);\n\nCREATE UNIQUE INDEX t_v ON t (v);\nCREATE TABLE later (id INT64 NOT NULL) PRIMARY KEY (id);\n",
        None,
    );
    let o = sp.run(&["up"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "0002_index/up.sql:3) stopped: statement 1 took effect; statement 2 (line 3) failed"
        ),
        "{err}"
    );
    assert!(
        err.contains("uniqueness")
            && err.contains("`instar up` to resume at statement 2")
            && err.contains("`instar repair`"),
        "{err}"
    );
    assert_eq!(sp.tables(), ["audit", "t"]);
    let status = sp.ok(&["status"]);
    assert!(
        status.contains("dirty 0002: 1 of 3 statements took effect"),
        "{status}"
    );
    let v = sp.run(&["validate"]);
    assert_eq!(v.status.code(), Some(1), "a dirty migration fails validate");
    // Running again without a fix fails the same way and changes nothing.
    assert_eq!(sp.run(&["up"]).status.code(), Some(2));
    assert_eq!(sp.tables(), ["audit", "t"]);
    // The fix: the data. Resuming does not send statement 1 again (it would fail: audit exists).
    sp.query("SELECT 1");
    Client::new(&sp.parsed)
        .session()
        .unwrap()
        .rw(|txn| txn.execute("UPDATE t SET v = 'other' WHERE id = 2", &[]))
        .unwrap();
    let out = sp.ok(&["up"]);
    assert!(out.contains("resuming after statement 1"), "{out}");
    assert_eq!(sp.tables(), ["audit", "later", "t"]);
    assert_eq!(sp.applied("0002"), 1);
}

#[test]
fn repair_makes_a_dirty_migration_pending_again() {
    let Some(sp) = spanner("repair_makes_a_dirty_migration_pending_again") else {
        return;
    };
    migration(
        &sp.migrations(),
        "0001_t",
        "CREATE TABLE t (id INT64 NOT NULL, v STRING(MAX)) PRIMARY KEY (id);\nINSERT INTO t (id, v) VALUES (1, 'x'), (2, 'x');\nCREATE UNIQUE INDEX t_v ON t (v);\n",
        None,
    );
    assert_eq!(sp.run(&["up"]).status.code(), Some(2));
    // Undo by hand what took effect, then repair: the migration is pending and runs whole.
    let client = Client::new(&sp.parsed);
    let op = client
        .update_ddl(&["DROP TABLE t".into()], "by_hand")
        .unwrap();
    client.wait(op, |_| {}).unwrap();
    std::fs::write(
        sp.migrations().join("0001_t/up.sql"),
        "CREATE TABLE t (id INT64 NOT NULL, v STRING(MAX)) PRIMARY KEY (id);\nINSERT INTO t (id, v) VALUES (1, 'x'), (2, 'y');\nCREATE UNIQUE INDEX t_v ON t (v);\n",
    )
    .unwrap();
    let out = sp.ok(&["repair", "--reason", "dropped t by hand"]);
    assert!(out.contains("repaired 0001"), "{out}");
    sp.ok(&["up"]);
    assert_eq!(sp.int("SELECT COUNT(*) FROM t"), 2);
    let events: Vec<String> = sp.history().into_iter().map(|(e, _)| e).collect();
    assert_eq!(events, ["start", "repair", "start", "apply"]);
}

/// Writes the `start` row a process killed right after recording an
/// operation leaves behind (statement 0 in flight, the operation named).
fn killed_start_row(sp: &Sp, version: &str, name: &str, sql: &str, operation: &str) {
    let client = Client::new(&sp.parsed);
    let session = client.session().unwrap();
    instar_spanner::tables::ensure(&client, &session).unwrap();
    let stmts = instar_spanner::script::statements(sql, std::path::Path::new("up.sql")).unwrap();
    let mut r = instar_spanner::tables::new_row(
        version,
        name,
        instar_core::history::EventKind::Start,
        instar_core::history::Direction::Up,
        "schema",
    );
    let m = instar_core::checksum::checksum(
        &instar_core::checksum::normalise(sql.as_bytes().to_vec()).unwrap(),
    );
    r.checksum = Some(m);
    r.statements_total = stmts.len() as i64;
    r.statement_hashes = Some(
        stmts
            .iter()
            .map(|(s, _)| instar_core::checksum::statement_hash(s))
            .collect::<Vec<_>>()
            .join(","),
    );
    session
        .rw(|txn| {
            let id = instar_spanner::tables::insert(txn, &r)?;
            instar_spanner::tables::update_start(
                txn,
                id,
                &instar_spanner::tables::Progress {
                    applied: 0,
                    in_flight: Some(0),
                    operation: Some(operation.into()),
                    ..Default::default()
                },
            )
        })
        .unwrap();
}

#[test]
fn a_run_killed_during_an_operation_finds_it_instead_of_resubmitting() {
    let Some(sp) = spanner("a_run_killed_during_an_operation_finds_it_instead_of_resubmitting")
    else {
        return;
    };
    let sql = "CREATE TABLE a (id INT64 NOT NULL) PRIMARY KEY (id);\nCREATE TABLE b (id INT64 NOT NULL) PRIMARY KEY (id);\nINSERT INTO a (id) VALUES (1);\n";
    migration(&sp.migrations(), "0001_ab", sql, None);
    // Spanner received the operation and finished it; the process died before hearing.
    let client = Client::new(&sp.parsed);
    let name = format!("{}/operations/instar_killed_0001_0", sp.parsed.database);
    killed_start_row(&sp, "0001", "ab", sql, &name);
    let op = client
        .update_ddl(
            &[
                "CREATE TABLE a (id INT64 NOT NULL) PRIMARY KEY (id)".into(),
                "CREATE TABLE b (id INT64 NOT NULL) PRIMARY KEY (id)".into(),
            ],
            "instar_killed_0001_0",
        )
        .unwrap();
    client.wait(op, |_| {}).unwrap();
    let status = sp.ok(&["status"]);
    assert!(
        status.contains("operation") && status.contains("instar_killed_0001_0"),
        "{status}"
    );
    let out = sp.ok(&["up"]);
    assert!(
        out.contains("schema change") && out.contains("instar_killed_0001_0"),
        "found again: {out}"
    );
    assert_eq!(sp.int("SELECT COUNT(*) FROM a"), 1);
    assert_eq!(sp.applied("0001"), 1);

    // Recorded, then killed before Spanner received it: submitted now (a new id).
    let Some(sp) = spanner("a_run_killed_during_an_operation_finds_it_instead_of_resubmitting")
    else {
        return;
    };
    migration(&sp.migrations(), "0001_ab", sql, None);
    let name = format!("{}/operations/instar_never_sent_0001_0", sp.parsed.database);
    killed_start_row(&sp, "0001", "ab", sql, &name);
    sp.ok(&["up"]);
    assert_eq!(sp.tables(), ["a", "b"]);
    assert_eq!(sp.int("SELECT COUNT(*) FROM a"), 1);
    assert!(Client::new(&sp.parsed).operation(&name).unwrap().is_none());
}

/// Random kill moments: a run of several migrations (DDL and DML groups) is
/// killed once or twice, then run to the end; every statement takes effect
/// exactly once (a second CREATE TABLE or INSERT of the same key would fail
/// the run). A new database each trial.
#[test]
fn killed_at_random_moments_every_statement_once() {
    let trials: u64 = std::env::var("INSTAR_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .min(12);
    let mut seed = u64::from(std::process::id()) | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for trial in 0..trials {
        let Some(sp) = spanner("killed_at_random_moments_every_statement_once") else {
            return;
        };
        for i in 1..=4 {
            migration(
                &sp.migrations(),
                &format!("000{i}_m"),
                &format!("CREATE TABLE t{i} (id INT64 NOT NULL) PRIMARY KEY (id);\nINSERT INTO t{i} (id) VALUES (1), (2);\nCREATE TABLE u{i} (id INT64 NOT NULL) PRIMARY KEY (id);\nCREATE INDEX u{i}_id ON u{i} (id);\nINSERT INTO u{i} (id) SELECT id FROM t{i};\n"),
                None,
            );
        }
        file(
            &sp.dir.path().join("instar.toml"),
            "[run]\nlease = \"2s\"\n",
        );
        for _ in 0..1 + next() % 2 {
            let mut child = sp.cmd(&["up", "--lock-timeout", "60s"]).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(10 + next() % 180));
            let _ = child.kill();
            let _ = child.wait();
        }
        // The next run waits until the killed run's lease (2 s here) runs out.
        let o = sp.run(&["up", "--lock-timeout", "60s"]);
        assert!(o.status.success(), "trial {trial}: {}", text(&o.stderr));
        for i in 1..=4 {
            assert_eq!(
                sp.int(&format!("SELECT COUNT(*) FROM u{i}")),
                2,
                "trial {trial}"
            );
            assert_eq!(sp.applied(&format!("000{i}")), 1, "trial {trial}");
        }
    }
}

#[test]
fn racing_runners_apply_each_migration_once() {
    let Some(sp) = spanner("racing_runners_apply_each_migration_once") else {
        return;
    };
    for i in 1..=4 {
        migration(
            &sp.migrations(),
            &format!("000{i}_m"),
            &format!("CREATE TABLE t{i} (id INT64 NOT NULL) PRIMARY KEY (id);\nINSERT INTO t{i} (id) VALUES (1);\n"),
            None,
        );
    }
    let children: Vec<_> = (0..3)
        .map(|_| sp.cmd(&["up", "--lock-timeout", "120s"]).spawn().unwrap())
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    for i in 1..=4 {
        assert_eq!(sp.applied(&format!("000{i}")), 1);
        assert_eq!(sp.int(&format!("SELECT COUNT(*) FROM t{i}")), 1);
    }
}

fn data_migration(sp: &Sp, rows: usize, batch: usize, pause: &str) {
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, {i}, 0)")).collect();
    migration(
        &sp.migrations(),
        "0001_t",
        &format!("CREATE TABLE t (id INT64 NOT NULL, a INT64, b INT64) PRIMARY KEY (id);\nINSERT INTO t (id, a, b) VALUES {};\n", values.join(", ")),
        None,
    );
    migration(
        &sp.migrations(),
        "0002_double",
        "UPDATE t SET b = a * 2 + b WHERE {batch}",
        None,
    );
    file(
        &sp.migrations().join("0002_double/migration.toml"),
        &format!("kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = {batch}\npause = \"{pause}\"\n[checks]\nafter = [\"SELECT COUNT(*) = 0 FROM t WHERE b != a * 2\"]\n"),
    );
}

#[test]
fn a_data_migration_killed_and_resumed_changes_each_row_once() {
    let Some(sp) = spanner("a_data_migration_killed_and_resumed_changes_each_row_once") else {
        return;
    };
    data_migration(&sp, 400, 10, "5ms");
    sp.ok(&["up", "--to", "0001"]);
    let mut seed = u64::from(std::process::id()) | 1;
    for _ in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = sp.cmd(&["up", "--lock-timeout", "60s"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100 + seed % 600));
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = sp.ok(&["status"]);
    let o = sp.run(&["up", "--lock-timeout", "60s"]);
    assert!(o.status.success(), "{status}\n{}", text(&o.stderr));
    assert_eq!(
        sp.int("SELECT COUNT(*) FROM t WHERE b = a * 2"),
        400,
        "every row doubled exactly once"
    );
    assert_eq!(sp.applied("0002"), 1);
    assert_eq!(sp.int("SELECT COUNT(*) FROM instar_checkpoints"), 0);
}

#[test]
fn batches_stay_within_the_mutation_limit() {
    let Some(sp) = spanner("batches_stay_within_the_mutation_limit") else {
        return;
    };
    data_migration(&sp, 30, 1_000_000, "0ms");
    sp.ok(&["up"]);
    // 3 columns, no secondary index: at most 80,000 / 3 rows a commit.
    let note =
        sp.query("SELECT note FROM instar_history WHERE version = '0002' AND event = 'apply'");
    assert_eq!(
        note[0][0].as_str().unwrap(),
        "30 rows walked in 1 batches of up to 26666 rows"
    );
}

#[test]
fn a_holder_paused_past_its_lease_stops_before_writing() {
    let Some(sp) = spanner("a_holder_paused_past_its_lease_stops_before_writing") else {
        return;
    };
    data_migration(&sp, 200, 5, "50ms");
    file(
        &sp.dir.path().join("instar.toml"),
        "[run]\nlease = \"2s\"\n",
    );
    sp.ok(&["up", "--to", "0001"]);
    let holder = sp.cmd(&["up"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let pid = holder.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_secs(4));
    // The lease has run out: another runner takes over and finishes.
    let o = sp.run(&["up", "--lock-timeout", "30s"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let out = holder.wait_with_output_timeout();
    assert_eq!(
        out.status.code(),
        Some(2),
        "the paused holder stops: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("lease was lost"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        sp.int("SELECT COUNT(*) FROM t WHERE b = a * 2"),
        200,
        "every row doubled exactly once"
    );
    assert_eq!(sp.applied("0002"), 1);
}

trait WaitTimeout {
    fn wait_with_output_timeout(self) -> Output;
}

impl WaitTimeout for std::process::Child {
    fn wait_with_output_timeout(mut self) -> Output {
        for _ in 0..600 {
            if self.try_wait().unwrap().is_some() {
                return self.wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.kill();
        panic!("the process did not end within 60 s");
    }
}

#[test]
fn a_dead_holders_lease_is_shown_and_broken_by_unlock() {
    let Some(sp) = spanner("a_dead_holders_lease_is_shown_and_broken_by_unlock") else {
        return;
    };
    data_migration(&sp, 100, 2, "100ms");
    file(
        &sp.dir.path().join("instar.toml"),
        "[run]\nlease = \"1s\"\n",
    );
    let mut holder = sp.cmd(&["up"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = holder.kill();
    let _ = holder.wait();
    let status = sp.ok(&["status"]);
    assert!(status.contains("lock: lease held by"), "{status}");
    let o = sp.run(&["up", "--lock-timeout", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("the run lock is held by"),
        "{}",
        text(&o.stderr)
    );
    std::thread::sleep(Duration::from_millis(1200));
    let out = sp.ok(&["unlock"]);
    assert!(out.contains("broke the lease"), "{out}");
    assert!(sp.history().iter().any(|(e, _)| e == "unlock"));
    assert!(sp.ok(&["status"]).contains("lock: free"));
}

#[test]
fn scripts_spanner_cannot_run_are_refused_with_their_line() {
    let Some(sp) = spanner("scripts_spanner_cannot_run_are_refused_with_their_line") else {
        return;
    };
    migration(
        &sp.migrations(),
        "0001_t",
        "CREATE TABLE t (id INT64 NOT NULL) PRIMARY KEY (id);\nSELECT 1;\n",
        None,
    );
    let o = sp.run(&["up"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("0001_t/up.sql:2: `SELECT`"),
        "{}",
        text(&o.stderr)
    );
    assert!(sp.tables().is_empty(), "nothing ran");
    let o = sp.run(&["up", "--parallel", "2"]);
    assert!(
        text(&o.stderr).contains("not available on Spanner"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_postgresql_dialect_database_or_a_missing_one_is_refused() {
    let Some(sp) = spanner("a_postgresql_dialect_database_or_a_missing_one_is_refused") else {
        return;
    };
    migration(
        &sp.migrations(),
        "0001_t",
        "CREATE TABLE t (id bigint PRIMARY KEY);\n",
        None,
    );
    let pg = SpannerUrl::parse(&format!("{}pg", sp.url)).unwrap();
    instar_spanner::admin::create(&pg, "POSTGRESQL").unwrap();
    let o = sp
        .cmd_at(&format!("{}pg", sp.url), &["up"])
        .output()
        .unwrap();
    let _ = instar_spanner::admin::drop_database(&pg);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("PostgreSQL-dialect"),
        "{}",
        text(&o.stderr)
    );
    let o = sp
        .cmd_at(&format!("{}nope", sp.url), &["status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("does not exist ("),
        "{}",
        text(&o.stderr)
    );
}
