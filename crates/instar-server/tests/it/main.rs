//! The HTTP API on a real socket, over a SQLite project in a temp dir (and
//! PostgreSQL/MariaDB where a test says so): auth, errors, runs, replayable
//! events, cancel and resume, concurrency.

mod api;
mod browser;
mod client;
mod fleet;

use std::sync::Arc;

use instar_server::{App, Config};
use instar_service::{Service, Settings};

/// A project with `migrations` (name, up.sql, migration.toml) in a temp dir.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(migrations: &[(&str, &str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        for (name, up, toml) in migrations {
            let m = dir.path().join("migrations").join(name);
            std::fs::create_dir_all(&m).unwrap();
            std::fs::write(m.join("up.sql"), up).unwrap();
            if !toml.contains("kind = \"data\"") {
                std::fs::write(m.join("down.sql"), "SELECT 1;").unwrap();
            }
            if !toml.is_empty() {
                std::fs::write(m.join("migration.toml"), toml).unwrap();
            }
        }
        Project { dir }
    }

    pub fn service(&self) -> Service {
        let url = format!("sqlite:{}", self.dir.path().join("app.db").display());
        let mut s = Settings::new(url, self.dir.path());
        s.backup = false;
        Service::new(s)
    }
}

/// A server on a free loopback port: its address; it stops when the test's runtime does.
pub async fn start(service: Service, config: Config) -> (std::net::SocketAddr, Arc<App>) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let listener = instar_server::bind(&config).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::new(service, config);
    tokio::spawn(instar_server::serve(
        listener,
        app.clone(),
        std::future::pending(),
    ));
    (addr, app)
}

pub fn with_token() -> Config {
    Config {
        token: Some("s3cret-token".into()),
        ..Config::default()
    }
}
