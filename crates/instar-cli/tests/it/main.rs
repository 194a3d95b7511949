//! CLI tests: the built `instar` binary in temp dirs, against every engine.
#![allow(clippy::result_large_err)]

// The database harness is shared with instar-db's suite, not copied.
#[path = "../../../instar-db/tests/it/harness.rs"]
#[allow(dead_code)]
#[macro_use]
mod harness;

// The server's test HTTP client, shared rather than copied.
#[path = "../../../instar-server/tests/it/client.rs"]
#[allow(dead_code)]
mod http_client;

/// The built `instar` binary in the test's folder, pointed at `url` and the
/// test's migrations, with the environment's database URLs removed and its
/// output captured.
pub fn instar_at(t: &harness::TestDb, url: &str) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("instar"));
    c.current_dir(t.dir.path())
        .args(["--database", url, "--migrations"])
        .arg(t.migrations())
        .env_remove("DATABASE_URL")
        .env_remove("INSTAR_DATABASE_URL")
        .env("XDG_CACHE_HOME", t.dir.path().join(".cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// The built `instar` binary run in folder `dir`, with the environment's
/// database URLs removed (the project's own settings apply).
pub fn instar_in(dir: &std::path::Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("instar").expect("binary");
    c.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("INSTAR_DATABASE_URL")
        .env("XDG_CACHE_HOME", dir.join(".cache"));
    c
}

mod adopt;
mod audit;
mod basics;
mod cache;
mod copy;
mod documents;
mod documents_eager;
mod doors;
mod faults;
mod fleet;
mod galera;
mod hostile;
mod kills;
mod kv;
mod lease;
mod lens;
mod lint;
mod migration_tests;
mod newcomer;
mod online;
mod online_cascade;
mod online_lens;
mod online_locks;
mod online_pooler;
mod online_served;
mod profiles;
mod retries;
mod schemas;
mod secrets;
mod serve;
mod spanner;
mod squash;
mod wasm;
mod workers;
