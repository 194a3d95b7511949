//! An application that migrates its database at start-up (migrations embedded
//! in the binary), and refuses to start when the database is newer than the
//! migrations it ships.
//!
//! Run: `cargo run -p instar-service --example startup` (uses a temp dir and SQLite).

use instar_core::plan::Problem;
use instar_service::{embed_migrations, MemorySource, Migrator};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("app.db").display());

    // This build ships two migrations, compiled into the binary.
    let report = Migrator::new(embed_migrations!("tests/fixtures/embedded"))
        .run(&url)
        .await?;
    println!("start-up: applied {:?}", report.migrations);
    let report = Migrator::new(embed_migrations!("tests/fixtures/embedded"))
        .run(&url)
        .await?;
    println!(
        "second start-up: applied {:?} (nothing pending)",
        report.migrations
    );

    // An older build of the application ships only the first migration.
    let older = MemorySource::new().with(
        "0001_people/up.sql",
        "CREATE TABLE people (id INT PRIMARY KEY, name TEXT);\n",
    );
    match Migrator::new(older).run(&url).await {
        Err(instar_service::Error::Db(instar_db::Error::Core(
            instar_core::Error::Validation { problems },
        ))) if matches!(problems.first(), Some(Problem::NewerThanFiles { .. })) => {
            println!("older build refuses to start: {}", problems[0]);
            Ok(())
        }
        other => Err(format!("expected a refusal, got {other:?}").into()),
    }
}
