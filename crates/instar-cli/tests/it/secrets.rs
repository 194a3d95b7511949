//! Passwords: percent-decoded for every tool that needs them, shown nowhere
//! (messages, JSON output, history rows), on the server engines.

use crate::harness::{migration, Backend, TestDb};

on_every_engine!(passwords_never_show_and_reach_the_tools_decoded);

/// The password of the test user: every character URL user info must encode.
const PASSWORD: &str = "a+b@c=d&e%f:g/h";

fn instar(t: &TestDb, url: &str, args: &[&str]) -> (i32, String) {
    let out = crate::instar_at(t, url)
        .args(args)
        .output()
        .expect("run instar");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn passwords_never_show_and_reach_the_tools_decoded(b: Backend) {
    let Some(t) = TestDb::new(b, "passwords").await else {
        return;
    };
    let mut u = url::Url::parse(&t.url).expect("url");
    match b {
        // SQLite has no password; its URL shows nothing to hide.
        Backend::Sqlite => return,
        Backend::MySql => {
            let db = u.path().trim_start_matches('/').to_string();
            let user = format!("pw_{}", &db[db.len().saturating_sub(12)..]);
            let mut c = t.raw().await;
            for sql in [
                format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'"),
                format!("CREATE USER '{user}'@'localhost' IDENTIFIED BY '{PASSWORD}'"),
                format!("GRANT ALL ON `{db}`.* TO '{user}'@'%'"),
                format!("GRANT ALL ON `{db}`.* TO '{user}'@'localhost'"),
                format!("GRANT RELOAD, PROCESS ON *.* TO '{user}'@'%'"),
                format!("GRANT RELOAD, PROCESS ON *.* TO '{user}'@'localhost'"),
            ] {
                sqlx::raw_sql(&sql).execute(&mut c).await.expect(&sql);
            }
            u.set_username(&user).expect("user");
        }
        // Trust authentication ignores the password, but every tool still gets it.
        Backend::Postgres => {}
    }
    u.set_password(Some(PASSWORD)).expect("password");
    let url = u.to_string();
    assert!(
        url.contains("%40"),
        "the password is percent-encoded in the URL: {url}"
    );
    let encoded = url::form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect::<String>();
    let leaks = |text: &str| {
        [
            "a+b@c",
            "b%40c",
            "a%2Bb",
            encoded.as_str(),
            "e%f:g",
            "e%25f",
        ]
        .iter()
        .find(|p| text.contains(*p))
        .map(|p| p.to_string())
    };

    migration(
        &t.migrations(),
        "0001_a",
        "-- instar:no-transaction\nCREATE TABLE a (id INT);\n",
        None,
    );
    let (code, text) = instar(&t, &url, &["up"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(leaks(&text), None, "{text}");
    // A backup runs the client tool with the decoded password (MySQL checks it).
    let (code, text) = instar(&t, &url, &["backup", "--format", "json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(leaks(&text), None, "{text}");
    for args in [
        &["status"][..],
        &["status", "--format", "json"],
        &["history", "--format", "json"],
        &["backups"],
    ] {
        let (code, text) = instar(&t, &url, args);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert_eq!(leaks(&text), None, "{args:?}: {text}");
    }
    // A failure, in both output formats.
    migration(
        &t.migrations(),
        "0002_bad",
        "CREATE TABLE b (id INT);\nSELEC 1;\n",
        None,
    );
    for format in ["human", "json"] {
        let (code, text) = instar(&t, &url, &["up", "--format", format]);
        assert_eq!(code, 2, "{text}");
        assert_eq!(leaks(&text), None, "{text}");
    }
    // A refused connection names the server, not the password.
    let mut wrong = u.clone();
    wrong.set_port(Some(1)).expect("port");
    let (code, text) = instar(&t, wrong.as_str(), &["status", "--format", "json"]);
    assert_eq!(code, 2, "{text}");
    assert_eq!(leaks(&text), None, "{text}");
    assert!(text.contains("***"), "{text}");
    // Nor is it in any history row.
    let mut c = t.raw().await;
    let rows = sqlx::query(
        "SELECT CONCAT(COALESCE(error, ''), COALESCE(note, ''), COALESCE(failed_statement, ''), operator) FROM instar_history",
    )
    .fetch_all(&mut c)
    .await
    .expect("history rows");
    assert!(!rows.is_empty());
    for r in rows {
        use sqlx::Row;
        let text = r
            .try_get::<String, _>(0)
            .or_else(|_| {
                r.try_get::<Vec<u8>, _>(0)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .expect("text");
        assert_eq!(leaks(&text), None, "{text}");
    }
    if b == Backend::MySql {
        let user = u.username().to_string();
        for host in ["%", "localhost"] {
            let _ = sqlx::raw_sql(&format!("DROP USER '{user}'@'{host}'"))
                .execute(&mut c)
                .await;
        }
    }
}
