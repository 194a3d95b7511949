//! A profile named in the URL (`?instar_profile=…`) that is not the server's
//! family is refused before anything runs; the right one is accepted and the
//! parameter never reaches the driver.

use crate::harness::{migration, Backend, TestDb};

fn with_param(url: &str, profile: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}instar_profile={profile}")
}

fn status(t: &TestDb, url: &str) -> (i32, String, String) {
    crate::documents::run_at(t, url, &["status"])
}

#[tokio::test]
async fn a_profile_used_against_the_wrong_server_is_refused() {
    for (b, wrong, other_wire, right) in [
        (Backend::Postgres, "cockroachdb", "tidb", "postgres"),
        (Backend::MySql, "tidb", "yugabytedb", "mariadb"),
    ] {
        let Some(t) = TestDb::new(b, "profile_wrong").await else {
            continue;
        };
        migration(
            &t.migrations(),
            "0001_t",
            "CREATE TABLE t (id int PRIMARY KEY);",
            None,
        );
        let (code, out, err) = status(&t, &with_param(&t.url, wrong));
        assert_eq!(code, 2, "{b:?}: {out}{err}");
        assert!(
            err.contains(&format!(
                "instar_profile={wrong} was named, but the server is"
            )),
            "{b:?}: {err}"
        );
        let (code, _, err) = status(&t, &with_param(&t.url, other_wire));
        assert_eq!(code, 2, "{b:?}");
        assert!(err.contains("protocol, but this URL is"), "{b:?}: {err}");
        let (code, _, err) = status(&t, &with_param(&t.url, "oracle"));
        assert_eq!(code, 2);
        assert!(err.contains("not a profile"), "{err}");
        let url = with_param(&t.url, right);
        let out = crate::instar_at(&t, &url).arg("up").output().unwrap();
        assert!(
            out.status.success(),
            "{b:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(t.table_exists("t").await, "{b:?}");
    }
}
