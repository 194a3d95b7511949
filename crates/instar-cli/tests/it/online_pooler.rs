//! A transaction pooler (PgBouncer, `pool_mode = transaction`) runs each
//! transaction of a client in whichever server session is free, so a
//! version chosen with `SET search_path` is lost, and so is Instar's run
//! lock. Through one, `start` refuses and `connect-sql` warns; through a
//! pool in session mode, or directly, neither does.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::documents::{run, run_at};
use crate::harness::{file, migration, Backend, TestDb};

/// PgBouncer in front of the test's PostgreSQL server, on a free loopback port.
struct Pooler {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer(test: &str) -> Option<String> {
    let sbin = "/usr/sbin/pgbouncer";
    if std::path::Path::new(sbin).exists() {
        return Some(sbin.into());
    }
    crate::harness::tool("pgbouncer", test)
}

impl Pooler {
    fn start(bin: &str, server: &url::Url, mode: &str) -> Pooler {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Readable by the user PgBouncer switches to when started as root.
        let dir = tempfile::tempdir().unwrap();
        let open = |p: &std::path::Path, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        open(dir.path(), 0o755);
        let users = dir.path().join("users.txt");
        file(&users, &format!("\"{}\" \"\"\n", server.username()));
        let ini = dir.path().join("pgbouncer.ini");
        file(
            &ini,
            &format!(
                "[databases]\n* = host={} port={}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = {mode}\nignore_startup_parameters = extra_float_digits,options\n",
                server.host_str().unwrap(),
                server.port().unwrap_or(5432),
                users.display()
            ),
        );
        open(&users, 0o644);
        open(&ini, 0o644);
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut c = Command::new(bin);
        if root {
            // PgBouncer refuses to run as root.
            c.args(["-u", "postgres"]);
        }
        let child = c
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Pooler {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PgBouncer did not listen on {port}");
    }

    fn url(&self, t: &TestDb) -> String {
        let mut u = url::Url::parse(&t.url).unwrap();
        u.set_port(Some(self.port)).unwrap();
        u.to_string()
    }
}

#[tokio::test]
async fn a_transaction_pooler_is_detected_start_refuses_and_connect_sql_warns() {
    let test = "online_pooler";
    let Some(t) = TestDb::new(Backend::Postgres, test).await else {
        return;
    };
    let Some(bin) = pgbouncer(test) else {
        return;
    };
    migration(
        &t.migrations(),
        "0001_users",
        "CREATE TABLE users (id int PRIMARY KEY, mail varchar(100));\nINSERT INTO users VALUES (1, 'a@x');",
        None,
    );
    let dir = t.migrations().join("0002_email");
    std::fs::create_dir_all(&dir).unwrap();
    file(
        &dir.join("migration.toml"),
        "kind = \"online\"\n\n[[ops]]\nop = \"rename_column\"\ntable = \"users\"\ncolumn = \"mail\"\nto = \"email\"\n",
    );
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");

    let server = url::Url::parse(&t.url).unwrap();
    let pooled = Pooler::start(&bin, &server, "transaction");
    let through = pooled.url(&t);
    let (code, out, err) = run_at(&t, &through, &["start"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("`instar start` needs a connection that keeps its session")
            && err.contains("pool_mode = transaction")
            && err.contains("Point instar at the database server itself"),
        "{err}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM pg_namespace WHERE nspname = 'instar_0002'")
            .await,
        0,
        "nothing expanded"
    );

    // Directly, start serves both versions; a client behind the pooler is warned.
    let (code, out, err) = run(&t, &["start"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_at(&t, &through, &["connect-sql", "--at", "0002"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("SET search_path = \"instar_0002\", public;"),
        "{out}"
    );
    assert!(
        err.contains("warning: connections to this database do not keep their session")
            && err.contains("ALTER ROLE"),
        "{err}"
    );
    let (code, out, err) = run(&t, &["connect-sql", "--at", "0002"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("warning"), "{err}");
    drop(pooled);

    // A pool in session mode keeps each client's session: no warning.
    let session = Pooler::start(&bin, &server, "session");
    let (code, out, err) = run_at(&t, &session.url(&t), &["connect-sql", "--at", "0002"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("warning"), "{err}");
    let (code, out, err) = run_at(&t, &session.url(&t), &["complete"]);
    assert_eq!(code, 0, "{out}{err}");
}
