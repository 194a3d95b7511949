//! `alter_column … lens = "profiles"`: a column of JSON documents changes
//! version online, its up and down made from the collection's lens (a
//! rename and an added field) in the engine's JSON functions: old-version
//! writes reach the new version translated, and new-version writes reach
//! the old one translated back.

use sqlx::Connection;

use crate::documents::run;
use crate::harness::{file, migration, Backend, TestDb};
use crate::online_served::{at_new_version_as, Connect};

fn project(t: &TestDb, lens: &str) {
    let body = match t.backend {
        Backend::Sqlite => "TEXT",
        Backend::Postgres => "JSONB",
        Backend::MySql => "JSON",
    };
    file(
        &t.dir.path().join("instar.toml"),
        "[collections.profiles]\ntable = \"profiles\"\nkey = \"id\"\nbody = \"doc\"\nversions = [\"1.0.0\", \"2.0.0\"]\n",
    );
    file(
        &t.dir
            .path()
            .join("collections/profiles/lenses/1.0.0--2.0.0.lens.yaml"),
        lens,
    );
    // SQLite keeps documents as text: written as its JSON functions write them.
    migration(
        &t.migrations(),
        "0001_profiles",
        &format!(
            "CREATE TABLE profiles (id int PRIMARY KEY, doc {body});\n\
             INSERT INTO profiles VALUES (1, '{{\"name\":\"Ada\",\"mail\":\"ada@x\"}}'), (2, '{{\"name\":\"Grace\",\"mail\":\"grace@x\"}}');"
        ),
        None,
    );
    let dir = t.migrations().join("0002_profiles_v2");
    std::fs::create_dir_all(&dir).unwrap();
    file(
        &dir.join("migration.toml"),
        "kind = \"online\"\n\n[[ops]]\nop = \"alter_column\"\ntable = \"profiles\"\ncolumn = \"doc\"\nlens = \"profiles\"\nfrom_version = \"1.0.0\"\nto_version = \"2.0.0\"\n",
    );
}

/// The document field `f` of column `doc`, as text, in the engine's JSON functions.
fn field(b: Backend, f: &str) -> String {
    match b {
        Backend::Postgres => format!("doc->>'{f}'"),
        Backend::MySql => format!("JSON_UNQUOTE(JSON_EXTRACT(doc, '$.{f}'))"),
        Backend::Sqlite => format!("json_extract(doc, '$.{f}')"),
    }
}

on_every_engine!(
    a_json_column_changes_version_through_the_collections_lens,
    a_lens_that_loses_a_field_is_refused_with_examples
);

async fn a_json_column_changes_version_through_the_collections_lens(b: Backend) {
    let Some(t) = TestDb::new(b, "online_lens").await else {
        return;
    };
    project(
        &t,
        "lens:\n- rename: {source: mail, destination: email}\n- add: {name: plan, type: string, default: free}\n",
    );
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&t, &["start"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");

    // The new version reads documents at 2.
    let mut new = t.raw().await;
    let email = field(b, "email");
    let probe = format!("SELECT {email} FROM profiles WHERE id = 1");
    assert!(
        at_new_version_as(&mut new, &Connect::of(&t), &probe).await,
        "{b:?}"
    );
    let plan = field(b, "plan");
    let mail = field(b, "mail");
    assert_eq!(
        read(
            &mut new,
            &format!("SELECT {email} FROM profiles WHERE id = 1")
        )
        .await,
        Some("ada@x".into()),
        "{b:?}"
    );
    assert_eq!(
        read(
            &mut new,
            &format!("SELECT {plan} FROM profiles WHERE id = 2")
        )
        .await,
        Some("free".into()),
        "{b:?}"
    );
    // An old-version insert reaches the new version translated.
    let mut old = t.raw().await;
    sqlx::raw_sql(
        r#"INSERT INTO profiles (id, doc) VALUES (3, '{"name":"Alan","mail":"alan@x"}')"#,
    )
    .execute(&mut old)
    .await
    .unwrap();
    assert_eq!(
        read(
            &mut new,
            &format!("SELECT {email} FROM profiles WHERE id = 3")
        )
        .await,
        Some("alan@x".into()),
        "{b:?}"
    );
    // A new-version update reaches the old version translated back.
    sqlx::raw_sql(
        r#"UPDATE profiles SET doc = '{"name":"Ada","email":"ada@new","plan":"pro"}' WHERE id = 1"#,
    )
    .execute(&mut new)
    .await
    .unwrap();
    assert_eq!(
        read(
            &mut old,
            &format!("SELECT {mail} FROM profiles WHERE id = 1")
        )
        .await,
        Some("ada@new".into()),
        "{b:?}"
    );
    assert_eq!(
        read(
            &mut old,
            &format!("SELECT {plan} FROM profiles WHERE id = 1")
        )
        .await,
        None,
        "{b:?}: the old version has no plan"
    );
    let _ = new.close().await;
    let _ = old.close().await;

    let (code, out, err) = run(&t, &["complete"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM profiles WHERE id = 1 AND {email} = 'ada@new' AND {plan} = 'pro'"
        ))
        .await,
        1,
        "{b:?}"
    );
    assert_eq!(t.count(&format!("SELECT count(*) FROM profiles WHERE id IN (2, 3) AND {plan} = 'free' AND {mail} IS NULL")).await, 2, "{b:?}");
}

async fn a_lens_that_loses_a_field_is_refused_with_examples(b: Backend) {
    let Some(t) = TestDb::new(b, "online_lens_lossy").await else {
        return;
    };
    // Version 2 drops `mail`: going back, it comes back as its default.
    project(&t, "lens:\n- remove: {name: mail, type: string}\n");
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&t, &["start"], None);
    assert_ne!(code, 0, "{b:?}: {out}{err}");
    assert!(
        err.contains("lossy") && err.contains("key 1"),
        "{b:?}: {err}"
    );
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM profiles WHERE {} = 'ada@x'",
            field(b, "mail")
        ))
        .await,
        1,
        "{b:?}: nothing changed"
    );
}

/// The first column of the one row of `sql`, as text.
async fn read(c: &mut sqlx::AnyConnection, sql: &str) -> Option<String> {
    use sqlx::Row;
    let row = sqlx::raw_sql(sql).fetch_one(c).await.unwrap();
    // MariaDB reports JSON function results as blobs.
    row.try_get::<Option<String>, _>(0).unwrap_or_else(|_| {
        row.try_get::<Option<Vec<u8>>, _>(0)
            .unwrap()
            .map(|b| String::from_utf8(b).unwrap())
    })
}
