//! Every migration source is read by the same code and applies the same way.

use instar_service::{embed_migrations, MemorySource, MigrationSource, Service, Settings};

use crate::harness::{Backend, TestDb};

#[tokio::test]
async fn embedded_and_in_memory_migrations_apply() {
    let embedded = embed_migrations!("tests/fixtures/embedded");
    assert_eq!(embedded.files().len(), 3);
    let memory = MemorySource::new()
        .with(
            "0001_people/up.sql",
            "CREATE TABLE people (id INT PRIMARY KEY, name TEXT);\n",
        )
        .with("0001_people/down.sql", "DROP TABLE people;\n")
        .with(
            "0002_pets/up.sql",
            "CREATE TABLE pets (id INT PRIMARY KEY, owner INT);\n",
        );
    let a = embedded.load().expect("embedded");
    let b = memory.load().expect("memory");
    let sums = |s: &instar_core::Source| {
        s.migrations
            .iter()
            .map(|m| (m.version.to_string(), m.checksum.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(sums(&a), sums(&b), "the same files read the same way");

    let t = TestDb::new(Backend::Sqlite, "embedded")
        .await
        .expect("sqlite");
    let service = Service::with_source(Settings::new(&t.url, t.dir.path()), embedded);
    let r = service
        .start(instar_service::RunRequest::up())
        .wait()
        .await
        .expect("up");
    assert_eq!(r.migrations, vec!["0001", "0002"]);
    assert!(t.table_exists("pets").await);
}

#[test]
fn a_broken_memory_migration_names_its_file() {
    let s = MemorySource::new().with("1_a/up.sql", vec![0xff, 0xfe]);
    let e = s.load().unwrap_err().to_string();
    assert!(e.contains("1_a/up.sql"), "{e}");
}
