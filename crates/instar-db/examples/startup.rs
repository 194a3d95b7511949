//! An application that migrates its database at start-up, and refuses to
//! start when the database is newer than the migrations it ships.
//!
//! Run: `cargo run -p instar-db --example startup` (uses a temp dir and SQLite).

use instar_core::plan::Problem;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let migrations = dir.path().join("migrations");
    for (folder, sql) in [
        (
            "0001_create_users",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);",
        ),
        ("0002_add_name", "ALTER TABLE users ADD COLUMN name TEXT;"),
    ] {
        std::fs::create_dir_all(migrations.join(folder))?;
        std::fs::write(migrations.join(folder).join("up.sql"), sql)?;
    }
    let url = format!("sqlite:{}", dir.path().join("app.db").display());

    let report = instar_db::Migrator::from_dir(&migrations)?
        .run_url(&url)
        .await?;
    println!("start-up: applied {:?}", report.migrations);
    let report = instar_db::Migrator::from_dir(&migrations)?
        .run_url(&url)
        .await?;
    println!(
        "second start-up: applied {:?} (nothing pending)",
        report.migrations
    );

    // An older build of the application ships only the first migration.
    std::fs::remove_dir_all(migrations.join("0002_add_name"))?;
    match instar_db::Migrator::from_dir(&migrations)?
        .run_url(&url)
        .await
    {
        Err(instar_db::Error::Core(instar_core::Error::Validation { problems }))
            if matches!(problems.first(), Some(Problem::NewerThanFiles { .. })) =>
        {
            println!("older build refuses to start: {}", problems[0]);
            Ok(())
        }
        other => Err(format!("expected a refusal, got {other:?}").into()),
    }
}
