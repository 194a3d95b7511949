//! Adopting a database another tool has migrated: each tool's history table is
//! created with that tool's own DDL and rows (written here, shaped like the
//! real ones), the old tool's migrations applied as it would have, and then:
//! `up` refuses to run them again, `status` says what it found, `adopt`
//! records them, `up` applies only the rest, and the old table is untouched.

use std::path::Path;

use crate::harness::{file, Backend, TestDb};

const USERS: &str = "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100));\n";
const POSTS: &str = "CREATE TABLE posts (id INT PRIMARY KEY, user_id INT);\n";
const INDEX: &str = "CREATE INDEX posts_user ON posts (user_id);\n";

/// One tool: its files, its table, and the rows it wrote for the first two migrations.
struct Tool {
    name: &'static str,
    table: &'static str,
    files: fn(&Path),
    ddl: fn(Backend) -> String,
    rows: fn(Backend) -> String,
}

fn sqlx_checksum(sql: &str) -> String {
    use sha2::Digest;
    sha2::Sha384::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bytes(b: Backend, hex: &str) -> String {
    match b {
        Backend::Postgres => format!("decode('{hex}', 'hex')"),
        _ => format!("X'{hex}'"),
    }
}

/// Flyway's checksum: CRC32 over the file's lines without line breaks.
fn flyway_checksum(sql: &str) -> i32 {
    let mut h = crc32fast::Hasher::new();
    for line in sql.lines() {
        h.update(line.as_bytes());
    }
    h.finalize() as i32
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "diesel",
        table: "__diesel_schema_migrations",
        files: |m| {
            file(
                &m.parent().unwrap().join("diesel.toml"),
                "[print_schema]\nfile = \"src/schema.rs\"\n",
            );
            for (dir, up) in [
                ("2018-01-14-171611_create_users", USERS),
                ("2018-01-15-000000_add_posts", POSTS),
                ("2018-01-16-000000_add_index", INDEX),
            ] {
                file(&m.join(dir).join("up.sql"), up);
                file(&m.join(dir).join("down.sql"), "SELECT 1;\n");
            }
        },
        ddl: |_| {
            "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)".into()
        },
        rows: |_| {
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('20180114171611'), ('20180115000000')".into()
        },
    },
    Tool {
        name: "sqlx",
        table: "_sqlx_migrations",
        files: |m| {
            file(&m.join("20200101000000_create_users.sql"), USERS);
            file(&m.join("20200102000000_add_posts.sql"), POSTS);
            file(&m.join("20200103000000_add_index.sql"), INDEX);
        },
        ddl: |b| {
            let (ts, blob) = match b {
                Backend::Postgres => ("TIMESTAMPTZ NOT NULL DEFAULT now()", "BYTEA"),
                _ => ("TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP", "BLOB"),
            };
            format!("CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on {ts}, success BOOLEAN NOT NULL, checksum {blob} NOT NULL, execution_time BIGINT NOT NULL)")
        },
        rows: |b| {
            format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (20200101000000, 'create users', TRUE, {}, 1200), (20200102000000, 'add posts', TRUE, {}, 900)",
                bytes(b, &sqlx_checksum(USERS)),
                bytes(b, &sqlx_checksum(POSTS))
            )
        },
    },
    Tool {
        name: "Flyway",
        table: "flyway_schema_history",
        files: |m| {
            file(&m.join("V1__create_users.sql"), USERS);
            file(&m.join("V1.1__add_posts.sql"), POSTS);
            file(&m.join("V2__add_index.sql"), INDEX);
            file(
                &m.join("R__user_names.sql"),
                "DELETE FROM users WHERE id < 0;\n",
            );
        },
        // As Flyway's PostgreSQLDatabase, MySQLDatabase and SQLiteDatabase write it.
        ddl: |b| {
            match b {
            Backend::Postgres => "CREATE TABLE \"flyway_schema_history\" (\"installed_rank\" INT NOT NULL, \"version\" VARCHAR(50), \"description\" VARCHAR(200) NOT NULL, \"type\" VARCHAR(20) NOT NULL, \"script\" VARCHAR(1000) NOT NULL, \"checksum\" INTEGER, \"installed_by\" VARCHAR(100) NOT NULL, \"installed_on\" TIMESTAMP NOT NULL DEFAULT now(), \"execution_time\" INTEGER NOT NULL, \"success\" BOOLEAN NOT NULL); ALTER TABLE \"flyway_schema_history\" ADD CONSTRAINT \"flyway_schema_history_pk\" PRIMARY KEY (\"installed_rank\"); CREATE INDEX \"flyway_schema_history_s_idx\" ON \"flyway_schema_history\" (\"success\")".into(),
            Backend::MySql => "CREATE TABLE `flyway_schema_history` (`installed_rank` INT NOT NULL, `version` VARCHAR(50), `description` VARCHAR(200) NOT NULL, `type` VARCHAR(20) NOT NULL, `script` VARCHAR(1000) NOT NULL, `checksum` INT, `installed_by` VARCHAR(100) NOT NULL, `installed_on` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, `execution_time` INT NOT NULL, `success` BOOL NOT NULL, CONSTRAINT `flyway_schema_history_pk` PRIMARY KEY (`installed_rank`)) ENGINE=InnoDB; CREATE INDEX `flyway_schema_history_s_idx` ON `flyway_schema_history` (`success`)".into(),
            Backend::Sqlite => "CREATE TABLE \"main\".\"flyway_schema_history\" (\"installed_rank\" INT NOT NULL PRIMARY KEY, \"version\" VARCHAR(50), \"description\" VARCHAR(200) NOT NULL, \"type\" VARCHAR(20) NOT NULL, \"script\" VARCHAR(1000) NOT NULL, \"checksum\" INT, \"installed_by\" VARCHAR(100) NOT NULL, \"installed_on\" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')), \"execution_time\" INT NOT NULL, \"success\" BOOLEAN NOT NULL); CREATE INDEX \"main\".\"flyway_schema_history_s_idx\" ON \"flyway_schema_history\" (\"success\")".into(),
        }
        },
        rows: |_| {
            format!(
                "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) VALUES \
                 (1, '1', 'create users', 'SQL', 'V1__create_users.sql', {}, 'deploy', 12, TRUE), \
                 (2, '1.1', 'add posts', 'SQL', 'V1.1__add_posts.sql', {}, 'deploy', 9, TRUE), \
                 (3, NULL, 'user names', 'SQL', 'R__user_names.sql', {}, 'deploy', 3, TRUE)",
                flyway_checksum(USERS),
                flyway_checksum(POSTS),
                flyway_checksum("DELETE FROM users WHERE id < 0;\n")
            )
        },
    },
    Tool {
        name: "refinery",
        table: "refinery_schema_history",
        files: |m| {
            file(&m.join("V1__create_users.sql"), USERS);
            file(&m.join("V2__add_posts.sql"), POSTS);
            file(&m.join("V3__add_index.sql"), INDEX);
        },
        ddl: |b| {
            let int = if b == Backend::Postgres {
                "INT4"
            } else {
                "INT"
            };
            format!("CREATE TABLE IF NOT EXISTS refinery_schema_history (version {int} PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))")
        },
        rows: |_| {
            let sum = instar_core::foreign::refinery_checksum;
            format!(
                "INSERT INTO refinery_schema_history VALUES (1, 'create_users', '2021-01-01T00:00:00Z', '{}'), (2, 'add_posts', '2021-01-02T00:00:00Z', '{}')",
                sum("create_users", 1, USERS),
                sum("add_posts", 2, POSTS)
            )
        },
    },
    Tool {
        name: "golang-migrate",
        table: "schema_migrations",
        files: |m| {
            for (name, up) in [
                ("1_create_users", USERS),
                ("2_add_posts", POSTS),
                ("3_add_index", INDEX),
            ] {
                file(&m.join(format!("{name}.up.sql")), up);
                file(&m.join(format!("{name}.down.sql")), "SELECT 1;\n");
            }
        },
        ddl: |b| {
            match b {
            Backend::Sqlite => "CREATE TABLE IF NOT EXISTS schema_migrations (version uint64,dirty bool); CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON schema_migrations (version)".into(),
            _ => "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint not null primary key, dirty boolean not null)".into(),
        }
        },
        rows: |_| "INSERT INTO schema_migrations (version, dirty) VALUES (2, FALSE)".into(),
    },
    Tool {
        name: "dbmate",
        table: "schema_migrations",
        files: |m| {
            for (v, name, up) in [
                ("20151129054053", "create_users", USERS),
                ("20151129054054", "add_posts", POSTS),
                ("20151129054055", "add_index", INDEX),
            ] {
                file(
                    &m.join(format!("{v}_{name}.sql")),
                    &format!("-- migrate:up\n{up}\n-- migrate:down\nSELECT 1;\n"),
                );
            }
        },
        ddl: |_| {
            "CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) primary key)".into()
        },
        rows: |_| {
            "INSERT INTO schema_migrations (version) VALUES ('20151129054053'), ('20151129054054')"
                .into()
        },
    },
    Tool {
        name: "goose",
        table: "goose_db_version",
        files: |m| {
            for (v, name, up) in [
                ("00001", "create_users", USERS),
                ("00002", "add_posts", POSTS),
                ("00003", "add_index", INDEX),
            ] {
                file(
                    &m.join(format!("{v}_{name}.sql")),
                    &format!("-- +goose Up\n-- +goose StatementBegin\n{up}-- +goose StatementEnd\n\n-- +goose Down\nSELECT 1;\n"),
                );
            }
        },
        ddl: |b| {
            match b {
            Backend::Sqlite => "CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL, is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')))".into(),
            _ => "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id))".into(),
        }
        },
        // 3 was applied and rolled back: goose counts the newest row per version.
        rows: |_| {
            "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, TRUE), (1, TRUE), (2, TRUE), (3, TRUE), (3, FALSE)".into()
        },
    },
];

pub(crate) async fn exec(t: &TestDb, sql: &str) {
    use sqlx::Connection;
    let mut c = t.raw().await;
    for s in sql.split("; ") {
        sqlx::raw_sql(s).execute(&mut c).await.expect(s);
    }
    let _ = c.close().await;
}

fn run(t: &TestDb, args: &[&str]) -> (i32, String) {
    let out = crate::instar_at(t, &t.url).args(args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A database `tool` migrated up to its second migration, with the project's files.
async fn migrated_by(b: Backend, tool: &Tool) -> Option<TestDb> {
    let t = TestDb::new(b, &format!("adopt_{}", tool.name)).await?;
    (tool.files)(&t.migrations());
    exec(&t, USERS.trim().trim_end_matches(';')).await;
    exec(&t, POSTS.trim().trim_end_matches(';')).await;
    exec(&t, &(tool.ddl)(b)).await;
    exec(&t, &(tool.rows)(b)).await;
    Some(t)
}

on_every_engine!(every_tools_history_is_adopted);

async fn every_tools_history_is_adopted(b: Backend) {
    for tool in TOOLS {
        let Some(t) = migrated_by(b, tool).await else {
            return;
        };
        let ctx = format!("{} on {b:?}", tool.name);
        let old_rows = t
            .count(&format!("SELECT count(*) FROM {}", tool.table))
            .await;

        let (code, text) = run(&t, &["up", "--no-backup"]);
        assert_eq!(code, 2, "{ctx}: up before adopt is refused: {text}");
        assert!(
            text.contains(tool.name) && text.contains("instar adopt"),
            "{ctx}: {text}"
        );
        assert!(
            !t.table_exists("instar_history").await,
            "{ctx}: nothing written"
        );

        // Flyway's repeatable migration is adopted too.
        let adopted = if tool.name == "Flyway" { 3 } else { 2 };
        let (code, text) = run(&t, &["status"]);
        assert_eq!(code, 0, "{ctx}: {text}");
        assert!(
            text.contains(&format!(
                "{} history ({}): {adopted} applied migrations match the files",
                tool.name, tool.table
            )),
            "{ctx}: {text}"
        );

        let (code, text) = run(&t, &["adopt", "--dry-run"]);
        assert_eq!(code, 0, "{ctx}: {text}");
        assert!(
            !t.table_exists("instar_history").await,
            "{ctx}: a dry run writes nothing"
        );

        let (code, text) = run(&t, &["adopt"]);
        assert_eq!(code, 0, "{ctx}: {text}");
        assert_eq!(t.events("baseline").await, adopted, "{ctx}: {text}");
        let noted = t
            .count(&format!(
                "SELECT count(*) FROM instar_history WHERE note LIKE 'adopted from {}%'",
                tool.name
            ))
            .await;
        assert_eq!(noted, adopted, "{ctx}: each row names the tool");

        let (code, text) = run(&t, &["status"]);
        assert!(
            code == 0 && text.contains(&format!("{adopted} applied, 1 pending")),
            "{ctx}: {text}"
        );

        let (code, text) = run(&t, &["up", "--no-backup"]);
        assert_eq!(code, 0, "{ctx}: {text}");
        assert_eq!(
            t.events("apply").await,
            1,
            "{ctx}: only the third migration ran"
        );
        assert_eq!(
            t.count("SELECT count(*) FROM posts WHERE user_id IS NULL")
                .await,
            0,
            "{ctx}"
        );
        assert_eq!(
            t.count(&format!("SELECT count(*) FROM {}", tool.table))
                .await,
            old_rows,
            "{ctx}: the old table is left as it was"
        );

        let (code, text) = run(&t, &["adopt"]);
        assert!(
            code == 0 && text.contains("recorded 0"),
            "{ctx}: adopting twice records nothing: {text}"
        );
    }
}

/// What stops an adoption: each refused with the way out, nothing recorded.
#[tokio::test]
async fn a_history_that_does_not_match_the_files_is_not_adopted() {
    let sqlx = &TOOLS[1];
    let cases: [(&str, &Tool, &str, &[&str]); 5] = [
        (
            "edited file",
            sqlx,
            "",
            &[
                "20200101000000_create_users.sql",
                "edited after sqlx applied it",
            ],
        ),
        (
            "failed entry",
            sqlx,
            "UPDATE _sqlx_migrations SET success = FALSE WHERE version = 20200102000000",
            &["20200102000000", "failed", "sqlx migrate run"],
        ),
        (
            "dirty golang-migrate",
            &TOOLS[4],
            "UPDATE schema_migrations SET dirty = TRUE",
            &["dirty", "migrate force 2"],
        ),
        (
            "file gone",
            &TOOLS[0],
            "",
            &["20180115000000", "no migration", "restore its file"],
        ),
        (
            "flyway failure",
            &TOOLS[2],
            "UPDATE flyway_schema_history SET success = FALSE WHERE installed_rank = 2",
            &["1.1", "flyway repair"],
        ),
    ];
    for (what, tool, damage, words) in cases {
        let t = migrated_by(Backend::Sqlite, tool)
            .await
            .expect("SQLite always runs");
        match what {
            "edited file" => file(
                &t.migrations().join("20200101000000_create_users.sql"),
                "CREATE TABLE users (id INT PRIMARY KEY);\n",
            ),
            "file gone" => {
                std::fs::remove_dir_all(t.migrations().join("2018-01-15-000000_add_posts")).unwrap()
            }
            _ => exec(&t, damage).await,
        }
        let (code, text) = run(&t, &["adopt"]);
        assert_eq!(code, 2, "{what}: {text}");
        for w in words {
            assert!(text.contains(w), "{what}: {w:?} in {text}");
        }
        if t.table_exists("instar_history").await {
            assert_eq!(t.events("baseline").await, 0, "{what}: nothing recorded");
        }
    }
}

/// sqlx hashes the file as read: a checkout with CRLF line ends and a
/// byte-order mark still matches; a history that records nothing the files
/// have (goose, every version rolled back) does not stop `up`; a baseline
/// note cannot pass for an adoption.
#[tokio::test]
async fn adoption_edge_cases() {
    let t = TestDb::sqlite("adopt_crlf").await;
    let crlf = "\u{feff}CREATE TABLE users (id INT PRIMARY KEY,\r\n  name VARCHAR(100));\r\n";
    file(&t.migrations().join("1_create_users.sql"), crlf);
    exec(
        &t,
        "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100))",
    )
    .await;
    exec(&t, &(TOOLS[1].ddl)(Backend::Sqlite)).await;
    exec(&t, &format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (1, 'create users', TRUE, X'{}', 1)",
        sqlx_checksum(crlf)
    )).await;
    let (code, text) = run(&t, &["adopt"]);
    assert_eq!(code, 0, "{text}");

    let t = TestDb::sqlite("adopt_goose_rolled_back").await;
    file(
        &t.migrations().join("00001_a.sql"),
        "-- +goose Up\nCREATE TABLE a (x INT);\n-- +goose Down\nDROP TABLE a;\n",
    );
    exec(&t, &(TOOLS[6].ddl)(Backend::Sqlite)).await;
    exec(&t, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, TRUE), (1, TRUE), (1, FALSE)").await;
    let (code, text) = run(&t, &["up", "--no-backup"]);
    assert_eq!(code, 0, "nothing to adopt, nothing to refuse: {text}");

    let t = TestDb::sqlite("baseline_note").await;
    file(&t.migrations().join("1_a.sql"), "SELECT 1;\n");
    let (code, text) = run(&t, &["baseline", "1", "--note", "adopted from the old app"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("reword the note"), "{text}");
}

/// `--ignore-other-history` runs anyway (the table belongs to something else).
#[tokio::test]
async fn another_tools_table_can_be_ignored() {
    let t = migrated_by(Backend::Sqlite, &TOOLS[5])
        .await
        .expect("SQLite always runs");
    exec(&t, "DROP TABLE posts; DROP TABLE users").await;
    let (code, text) = run(&t, &["up", "--no-backup", "--ignore-other-history"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(t.events("apply").await, 3);
}
