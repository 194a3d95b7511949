//! `instar lint` through the CLI: findings with file, line and what to do
//! instead, allow comments, exit codes, JSON and SARIF, the summary under
//! `plan`, and table sizes from PostgreSQL's and MySQL's statistics.

use crate::adopt::exec;
use crate::documents::{json, run};
use crate::harness::{file, Backend, TestDb};

fn migrations(t: &TestDb) {
    let m = t.migrations();
    file(&m.join("0001_users/up.sql"), "CREATE TABLE users (id int PRIMARY KEY, name varchar(200), legacy text);\nCREATE INDEX users_name ON users (name);\n");
    file(&m.join("0002_tighten/up.sql"), "-- the cleanup\nALTER TABLE users DROP COLUMN legacy;\n\n-- instar:allow add-not-null-without-default the table is empty in every environment\nALTER TABLE users ADD COLUMN age int NOT NULL;\nALTER TABLE users ALTER COLUMN name TYPE varchar(20);\n");
    file(
        &m.join("0003_index/up.sql"),
        "CREATE INDEX users_age ON users (age);\n",
    );
}

on_every_engine!(
    lint_names_file_line_rule_and_what_to_do_instead,
    lint_reads_table_sizes_from_the_statistics
);

async fn lint_names_file_line_rule_and_what_to_do_instead(b: Backend) {
    let Some(t) = TestDb::new(b, "lint_cli").await else {
        return;
    };
    migrations(&t);
    let (code, out, err) = run(&t, &["lint"], None);
    assert_eq!(code, 1, "{b:?}: {out}{err}");
    assert!(
        out.contains("0002_tighten/up.sql:2: error[drop-column]: drops column users.legacy"),
        "{b:?}: {out}"
    );
    assert!(
        out.contains("instead: stop reading and writing legacy in a release first"),
        "{b:?}: {out}"
    );
    assert!(
        !out.contains("add-not-null-without-default"),
        "{b:?}: allowed with a reason: {out}"
    );
    // The type change is judged against the CREATE TABLE of 0001 (Postgres syntax only).
    if b == Backend::Postgres {
        assert!(out.contains("0002_tighten/up.sql:6: error[narrowing-type]: changes users.name from VARCHAR(200) to VARCHAR(20)"), "{out}");
        assert!(
            out.contains("0003_index/up.sql:1: warning[create-index-blocking]"),
            "{out}"
        );
        assert!(
            !out.contains("0001_users/up.sql:2"),
            "an index on a table created in the same migration is fine: {out}"
        );
    }
    let (_, j, _) = run(&t, &["lint", "--format", "json"], None);
    let j = json(&j);
    assert!(j["lint"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "drop-column" && f["line"] == 2));
    let (code, s, _) = run(&t, &["lint", "--format", "sarif"], None);
    assert_eq!(code, 1);
    let s = json(&s);
    assert_eq!(s["version"], "2.1.0");
    let results = s["runs"][0]["results"].as_array().unwrap();
    assert!(
        results.iter().any(|r| r["ruleId"] == "drop-column"
            && r["locations"][0]["physicalLocation"]["region"]["startLine"] == 2),
        "{s}"
    );
    assert!(
        s["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .len()
            > 10
    );
    // plan shows the planned migrations' findings.
    let (code, plan, err) = run(&t, &["plan"], None);
    assert_eq!(code, 0, "{plan}{err}");
    assert!(
        plan.contains("lint: ") && plan.contains("errors,") && plan.contains("drop-column"),
        "{b:?}: {plan}"
    );
    // Fixed, it passes (warnings do not fail).
    file(
        &t.migrations().join("0002_tighten/up.sql"),
        "ALTER TABLE users ADD COLUMN age int;\n",
    );
    let (code, out, err) = run(&t, &["lint"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    let (code, _, err) = run(&t, &["status", "--format", "sarif"], None);
    assert_eq!(code, 2, "sarif is for lint: {err}");
}

async fn lint_reads_table_sizes_from_the_statistics(b: Backend) {
    if b == Backend::Sqlite {
        return;
    }
    let Some(t) = TestDb::new(b, "lint_stats").await else {
        return;
    };
    exec(&t, "CREATE TABLE big (id int PRIMARY KEY, v int)").await;
    let values: Vec<String> = (1..=3000).map(|i| format!("({i}, {i})")).collect();
    exec(&t, &format!("INSERT INTO big VALUES {}", values.join(", "))).await;
    exec(
        &t,
        if b == Backend::Postgres {
            "ANALYZE big"
        } else {
            "ANALYZE TABLE big"
        },
    )
    .await;
    file(
        &t.migrations().join("0001_v/up.sql"),
        "ALTER TABLE big ALTER COLUMN v TYPE bigint;\nALTER TABLE big MODIFY COLUMN v bigint;\n",
    );
    let (_, out, err) = run(&t, &["lint"], None);
    assert!(
        out.contains("type-change") && out.contains("rows, from the database's statistics"),
        "{b:?}: {out}{err}"
    );
    assert!(
        out.contains("table sizes read from the database's statistics"),
        "{b:?}: {out}"
    );
    let (_, off, _) = run(&t, &["lint", "--offline"], None);
    assert!(
        !off.contains("from the database's statistics)"),
        "{b:?}: {off}"
    );
}

/// `[compat]`: the matrix, the versioning rule checked with lint's findings,
/// `compat check --app` against the database and after `up`, and a
/// malformed declaration named with its file and line.
#[tokio::test]
async fn the_compatibility_matrix_and_the_check_before_a_deploy() {
    let Some(t) = TestDb::new(Backend::Sqlite, "compat").await else {
        return;
    };
    let m = t.migrations();
    let w = |dir: &str, sv: &str, sql: &str| {
        file(&m.join(dir).join("up.sql"), sql);
        file(
            &m.join(dir).join("migration.toml"),
            &format!("schema_version = \"{sv}\"\n"),
        );
    };
    w(
        "0001_users",
        "1.0.0",
        "CREATE TABLE users (id int PRIMARY KEY, name text, legacy text);\n",
    );
    w(
        "0002_email",
        "1.1.0",
        "ALTER TABLE users ADD COLUMN email text;\n",
    );
    w(
        "0003_cleanup",
        "1.2.0",
        "ALTER TABLE users DROP COLUMN legacy;\n",
    );
    w(
        "0004_split",
        "2.0.0",
        "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
    );
    std::fs::write(
        t.dir.path().join("instar.toml"),
        "[compat]\n\"1.4\" = \">=1.0, <2\"\n\"2.0\" = \">=2.0\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&t, &["compat"], None);
    assert_eq!(
        code, 1,
        "a MINOR that drops a column is a violation: {out}{err}"
    );
    assert!(
        out.contains("versioning rule:")
            && out.contains(
                "0003_cleanup/up.sql:1: a minor version (1.2.0) drops column users.legacy"
            ),
        "{out}"
    );
    assert!(out.contains("moves 1.4 off its range"), "{out}");
    let (_, j, _) = run(&t, &["compat", "--format", "json"], None);
    let j = json(&j);
    assert_eq!(j["compat"]["releases"], serde_json::json!(["1.4", "2.0"]));
    assert_eq!(
        j["compat"]["rows"][3]["runs"],
        serde_json::json!([false, true])
    );
    assert_eq!(j["compat"]["rows"][3]["bump"], "major");
    // Release 1.4 runs on the database now (1.1.0 after two migrations), not after `up`.
    let (code, out, err) = run(&t, &["up", "--to", "0002"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&t, &["compat", "check", "--app", "1.4.3"], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the database now: 1.1.0 — runs")
            && out.contains("after `instar up`: 2.0.0 — DOES NOT RUN"),
        "{out}"
    );
    let (code, out, _) = run(&t, &["compat", "check", "--app", "2.0.1"], None);
    assert_eq!(code, 1, "2.0 does not run on 1.1.0: {out}");
    let (code, out, err) = run(&t, &["compat", "check", "--app", "3.1.0"], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("release 3.1.0 is not declared in [compat]"),
        "{err}"
    );
    // A malformed declaration: file and line.
    std::fs::write(
        t.dir.path().join("instar.toml"),
        "[compat]\n\"1.4\" = \">=1.0, <2\"\n\"2.0\" = \"at least two\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&t, &["compat"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "instar.toml:3: [compat] \"2.0\" = \"at least two\": not a semver requirement"
        ),
        "{err}"
    );
}

/// A rename in a schema version that a declared release runs against (as it
/// did the version before) is an error naming the release; narrowing the
/// release's range makes it a warning again.
#[tokio::test]
async fn a_rename_a_release_still_uses_is_an_error() {
    let Some(t) = TestDb::new(Backend::Sqlite, "compat_rename").await else {
        return;
    };
    let m = t.migrations();
    file(
        &m.join("0001_users/up.sql"),
        "CREATE TABLE users (id int PRIMARY KEY, name text);\n",
    );
    file(
        &m.join("0001_users/migration.toml"),
        "schema_version = \"1.0.0\"\n",
    );
    file(
        &m.join("0002_rename/up.sql"),
        "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
    );
    file(
        &m.join("0002_rename/migration.toml"),
        "schema_version = \"1.1.0\"\n",
    );
    std::fs::write(
        t.dir.path().join("instar.toml"),
        "[compat]\n\"1.4\" = \">=1.0, <2\"\n",
    )
    .unwrap();
    let (code, out, _) = run(&t, &["lint"], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[rename-used-by-release]")
            && out.contains("release 1.4 runs against 1.0.0 and against 1.1.0"),
        "{out}"
    );
    std::fs::write(
        t.dir.path().join("instar.toml"),
        "[compat]\n\"1.4\" = \">=1.0, <1.1\"\n",
    )
    .unwrap();
    let (code, out, _) = run(&t, &["lint"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning[rename]"), "{out}");
}
