//! Command-line arguments, as parsed (stage one; `config` turns them into settings).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Instar: versioned SQL migrations for SQLite, PostgreSQL and MySQL/MariaDB.
#[derive(Debug, Parser)]
#[command(name = "instar", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Database URL (sqlite:app.db, postgres://…, mysql://…). Default: INSTAR_DATABASE_URL,
    /// then DATABASE_URL, then instar.toml, then sqlite:instar.db.
    #[arg(long, short = 'd', global = true)]
    pub database: Option<String>,
    /// Migrations folder (default: from instar.toml, else ./migrations).
    #[arg(long, short = 'm', global = true)]
    pub migrations: Option<PathBuf>,
    /// Config file (default: ./instar.toml when it exists).
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
    pub format: Format,
    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Print more: ignored files, every statement.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// SQL run on every connection before anything else (repeatable; added after instar.toml's init_sql).
    #[arg(long = "init-sql", global = true)]
    pub init_sql: Vec<String>,
    /// How long to wait for another run's lock (e.g. 30s, 2m; 0 = fail at once).
    #[arg(long, global = true)]
    pub lock_timeout: Option<String>,
    /// How long connecting to the database may take (default 10s).
    #[arg(long, global = true)]
    pub connect_timeout: Option<String>,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text for people.
    Human,
    /// JSON: one document per command; events as JSON lines while running.
    Json,
    /// SARIF 2.1.0, for code-review tools (`lint` only).
    Sarif,
}

/// Migration folder layouts for `new` and `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// <version>_<name>/up.sql (+ down.sql, migration.toml)
    Instar,
    /// diesel's <version>_<name>/up.sql + down.sql
    Diesel,
    /// sqlx's <version>_<name>.sql or .up.sql + .down.sql
    Sqlx,
    /// Flyway's V<version>__<name>.sql (+ U… undo)
    Flyway,
    /// V<version>.<Name>.up.sql (+ .down.sql)
    Dotted,
    /// popx's <version>_<name>.up.sql (+ .down.sql; per-engine files by hand)
    Popx,
    /// dbmate's <version>_<name>.sql with -- migrate:up / -- migrate:down
    Dbmate,
    /// goose's <version>_<name>.sql with -- +goose Up / -- +goose Down
    Goose,
}

/// Options of commands that apply or revert.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Print the plan with its exact SQL and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply the whole run in one transaction (SQLite, PostgreSQL): all or nothing.
    #[arg(long)]
    pub single_transaction: bool,
    /// Apply pending migrations older than the newest applied one.
    #[arg(long)]
    pub allow_out_of_order: bool,
    /// Do not refuse when applied migrations have no file.
    #[arg(long)]
    pub ignore_missing: bool,
    /// Do not take the automatic backup before the run.
    #[arg(long)]
    pub no_backup: bool,
    /// When a run fails outside a transaction, restore the automatic backup taken
    /// before it. This discards everything written since, by any client: only safe
    /// while no application writes. Default: leave the migration dirty.
    #[arg(long)]
    pub restore_on_failure: bool,
    /// Key-value stores (rocksdb:): leave a failed run as it stopped (every batch
    /// whole) instead of restoring the backup taken before it. On SQL databases
    /// not restoring is already the default.
    #[arg(long)]
    pub no_restore: bool,
    /// Stop data migrations at a checkpoint after this long (e.g. 10m); the next `up` resumes.
    #[arg(long)]
    pub max_duration: Option<String>,
    /// Data migrations: walk the key range in N slices at once (PostgreSQL, MySQL).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Data migrations: split the key range into N slices (at least --parallel) that
    /// workers in other processes (`instar up --worker`) claim and walk too.
    #[arg(long)]
    pub slices: Option<usize>,
    /// Join the data migration another `instar up` is walking: claim and walk its free
    /// slices (--parallel at once), then leave; that run records the migration.
    #[arg(long, conflicts_with_all = ["dry_run", "single_transaction", "slices"])]
    pub worker: bool,
    /// Run even though another tool's history table (diesel, sqlx, Flyway …) has
    /// rows and Instar's has none (default: refused; `instar adopt` records them).
    #[arg(long)]
    pub ignore_other_history: bool,
}

/// A tool whose history `adopt` reads, by name.
fn tool(name: &str) -> Result<instar_core::foreign::Tool, String> {
    instar_core::foreign::Tool::from_name(name).ok_or_else(|| {
        "one of diesel, sqlx, flyway, refinery, golang-migrate, dbmate, goose".to_string()
    })
}

/// What `instar compat` does besides printing the matrix.
#[derive(Debug, Subcommand)]
pub enum CompatCommand {
    /// Exit 1 when release --app cannot run against the database's schema
    /// version, or against the one `up` would produce.
    Check {
        /// The application's release (semver, e.g. 1.4.0).
        #[arg(long)]
        app: String,
        /// Do not read the database: check the folder's newest schema version only.
        #[arg(long)]
        offline: bool,
    },
}

/// What `instar fleet` does.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Run `up` on every tenant not done in this release: the canary first, then
    /// the waves; stop after a wave with more than --max-failures failures.
    Up {
        /// Tenants at once (default: [fleet] parallel, else 1).
        #[arg(long)]
        parallel: Option<usize>,
        /// Failures a wave may have before the rollout stops (default: [fleet]
        /// max_failures, else 0: the first failure stops it after its wave).
        #[arg(long)]
        max_failures: Option<usize>,
        /// Go on past failed tenants, whatever their number.
        #[arg(long)]
        continue_on_error: bool,
        /// Run nothing: print the waves, each tenant's pending migrations (or
        /// why it would refuse) and the SQL once; nothing is recorded.
        #[arg(long)]
        dry_run: bool,
    },
    /// Counts per state and schema version, the failed tenants and the slowest,
    /// from the fleet's state file (no tenant is read).
    Status {
        /// One tenant's record: state, attempts, wave, error, timings, run id.
        #[arg(long)]
        target: Option<String>,
    },
    /// Read every tenant: pending migrations, refusals (newer, edited, dirty) and
    /// schema drift from the fleet's majority (exit 1 on any finding).
    Check {
        /// Tenants read at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
}

/// What `instar docs` does.
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Print one document (JSON), at version --at (default: the current one).
    Get {
        /// The collection.
        collection: String,
        /// The document's key.
        key: String,
        /// The version to read it at.
        #[arg(long)]
        at: Option<String>,
    },
    /// Print documents as JSON lines (`{"key": …, "doc": …}`), in key order.
    List {
        /// The collection.
        collection: String,
        /// The version to read them at.
        #[arg(long)]
        at: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only keys after this one (the last key of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// Move every stored document to version --to (default: the current one), in
    /// key order; stopped or killed, it goes on where it stopped when run again.
    Migrate {
        /// The collection.
        collection: String,
        /// The target version.
        #[arg(long)]
        to: Option<String>,
        /// Documents per batch (one transaction each, with its checkpoint).
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// Walk the key range in N slices at once (PostgreSQL, MySQL).
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// Stop at a checkpoint after this long (e.g. 10m); running it again goes on.
        #[arg(long)]
        max_duration: Option<String>,
        /// A document that cannot be translated: stop (its batch rolls back) or skip (recorded in instar_errors).
        #[arg(long, default_value = "stop")]
        on_error: String,
        /// Translate every batch in process, even where SQL could do it.
        #[arg(long)]
        no_pushdown: bool,
        /// Print how each version gets there (the exact UPDATE, or why in process) and time the first batch; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Store the JSON document on stdin, written at version --at.
    Put {
        /// The collection.
        collection: String,
        /// The document's key.
        key: String,
        /// The version the document is written at (default: the current one).
        #[arg(long)]
        at: Option<String>,
    },
}

/// What `instar lens` does.
#[derive(Debug, Subcommand)]
pub enum LensCommand {
    /// Read a JSON array of documents on stdin, write them translated on stdout.
    Apply {
        /// The lens file (Cambria YAML, or JSON).
        file: PathBuf,
        /// Translate backward, through the reverse lens.
        #[arg(long)]
        reverse: bool,
    },
    /// Read a lens and print its reverse.
    Check {
        /// The lens file.
        file: PathBuf,
    },
    /// Run the examples stored next to a lens (`<lens>.examples.yaml`).
    Test {
        /// The lens file.
        file: PathBuf,
    },
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create instar.toml and a migrations folder (with --example: two example migrations).
    Init {
        /// Project folder (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Add example migrations.
        #[arg(long)]
        example: bool,
        /// Apply the migrations right away.
        #[arg(long)]
        up: bool,
        /// Layout of the migrations folder.
        #[arg(long, value_enum, default_value_t = LayoutArg::Instar)]
        layout: LayoutArg,
    },
    /// Create the next migration.
    New {
        /// Its name (words are joined with _).
        name: Vec<String>,
        /// Also create a down script.
        #[arg(long, short = 'r')]
        reversible: bool,
        /// A data migration: one statement applied in keyset batches (Instar layout).
        #[arg(long)]
        data: bool,
        /// Layout (default: the folder's, else instar).
        #[arg(long, value_enum)]
        layout: Option<LayoutArg>,
    },
    /// Show applied, pending, missing, edited and dirty migrations, and the schema version.
    Status {
        /// Exit 1 unless the schema version satisfies this requirement (e.g. '>=1.2, <2').
        #[arg(long)]
        require: Option<String>,
        /// Exit 1 when migrations are pending.
        #[arg(long)]
        check: bool,
    },
    /// Print what `up` (or `down`) would run, with the exact SQL; change nothing.
    Plan {
        /// Stop at this version.
        #[arg(long)]
        to: Option<String>,
        /// Plan a `down` instead of an `up`.
        #[arg(long)]
        down: bool,
        /// With --down: how many to revert.
        #[arg(long)]
        steps: Option<usize>,
        /// With --down: revert every applied migration.
        #[arg(long, conflicts_with_all = ["to", "steps"])]
        all: bool,
        /// Plan even though another tool's history has rows and Instar's has none.
        #[arg(long)]
        ignore_other_history: bool,
    },
    /// Apply pending migrations.
    Up {
        /// Last version to apply.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Revert applied migrations (default: the last one).
    Down {
        /// Revert everything after this version (it stays applied).
        #[arg(long, conflicts_with = "steps")]
        to: Option<String>,
        /// How many to revert.
        #[arg(long)]
        steps: Option<usize>,
        /// Revert every applied migration (same as --to 0).
        #[arg(long, conflicts_with_all = ["to", "steps"])]
        all: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Check every migration before it runs: destructive changes, locks on big
    /// tables, NOT NULL without a default, narrowing types, … (exit 1 on an error).
    Lint {
        /// Do not read table sizes from the database's statistics.
        #[arg(long)]
        offline: bool,
        /// List the rules and exit.
        #[arg(long)]
        rules: bool,
    },
    /// The compatibility matrix: which application release runs against which
    /// schema version ([compat] of instar.toml), and semver bumps checked
    /// against what each migration does (exit 1 on a violation).
    Compat {
        #[command(subcommand)]
        action: Option<CompatCommand>,
    },
    /// Many tenant databases ([fleet] of instar.toml): roll the migrations out in
    /// waves (`up`), see where every tenant stands (`status`), find drift (`check`).
    Fleet {
        #[command(subcommand)]
        action: FleetCommand,
    },
    /// Run the migration tests of tests/*.toml, each on a scratch database
    /// made for it and dropped after (the configured one is never touched):
    /// fixtures at one version, migrate, assertions (exit 1 on a failure).
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
        /// Keep each scratch database (its URL is printed) for a look after.
        #[arg(long)]
        keep: bool,
        /// Also write a JUnit XML report here, for CI.
        #[arg(long, value_name = "FILE")]
        junit: Option<std::path::PathBuf>,
    },
    /// Check the database the migrations built: integrity, rows breaking
    /// foreign keys or checks it does not enforce, invalid indexes, objects
    /// the migrations declare that are missing, row counts, documents against
    /// their version's schema (exit 1 on an error).
    Audit {
        /// Rows (documents) read per table (collection).
        #[arg(long, default_value_t = 100_000)]
        sample: u64,
        /// Read every row and document.
        #[arg(long)]
        exact: bool,
    },
    /// Copy the application's data into another database (SQLite → PostgreSQL
    /// …): the target's schema by the migrations, then every table in
    /// checkpointed batches (a killed copy resumes), then verified. The
    /// source is only read.
    Copy {
        #[command(flatten)]
        args: CopyArgs,
    },
    /// Replace the migrations up to --to by one baseline (the schema and
    /// seeded rows they build, dumped from a scratch database); their folders
    /// move to archive/. Databases that applied them keep working.
    Squash {
        /// The last migration to replace.
        #[arg(long)]
        to: String,
        /// Print the baseline's SQL; move and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the next pending migration (an online one) at two versions at
    /// once: expand the schema, backfill changed columns in batches, make the
    /// version views. Run again after a kill: it goes on where it stopped.
    Start {
        /// Rows per backfill batch.
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// Backfill each table in N slices at once (PostgreSQL).
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// Stop the backfill at a checkpoint after this long (e.g. 10m); `start` again goes on.
        #[arg(long)]
        max_duration: Option<String>,
        /// Print what start, complete and rollback would run; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Finish the online migration in flight: drop what only the old version
    /// used and record the migration as applied.
    Complete {
        /// Complete even though clients of the old version are connected.
        #[arg(long)]
        force: bool,
    },
    /// Remove the new version of the online migration in flight; the old one
    /// stays, with every write made through either.
    Rollback,
    /// Print the SQL a connection runs to read and write at a version while
    /// an online migration is in flight (PostgreSQL: its search_path; SQLite:
    /// TEMP views and triggers), for applications in any language.
    ConnectSql {
        /// The version the connection works at.
        #[arg(long)]
        at: String,
    },
    /// Break the run lock's lease that a dead run left (once it has
    /// expired), writing an `unlock` row to the history.
    Unlock {
        /// Break it even though it has not expired (only for a run known to be dead).
        #[arg(long)]
        force: bool,
    },
    /// Print the history log.
    History,
    /// Check files and history; exit 1 on any problem.
    Validate,
    /// Re-run the `checks.after` of every applied migration; exit 1 if one is false.
    Verify,
    /// Record the migrations another tool applied (diesel, sqlx, Flyway, refinery,
    /// golang-migrate, dbmate, goose) in Instar's history; its table is only read.
    Adopt {
        /// The tool (diesel, sqlx, flyway, refinery, golang-migrate, dbmate, goose),
        /// when the database has several tools' histories.
        #[arg(long, value_parser = tool)]
        from: Option<instar_core::foreign::Tool>,
        /// Show what would be recorded; record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not compare the checksums the tool recorded with the files.
        #[arg(long)]
        no_checksums: bool,
    },
    /// Read and write a collection's documents at any of its versions.
    Docs {
        #[command(subcommand)]
        action: DocsCommand,
    },
    /// Serve the HTTP API and the web console over this project.
    Serve {
        /// The address to listen on (a non-loopback one needs a token).
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: String,
        /// A file holding the bearer token that requests changing anything must carry
        /// (or INSTAR_SERVE_TOKEN; never a flag value, which `ps` would show).
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// Reads need the token too.
        #[arg(long)]
        require_token_for_reads: bool,
    },
    /// Work with a lens file alone, without a database: translate, check, test.
    Lens {
        #[command(subcommand)]
        action: LensCommand,
    },
    /// Record that the database already has every migration up to VERSION.
    Baseline {
        /// The last version already in the database.
        #[arg(id = "baseline_version", value_name = "VERSION")]
        version: String,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Clear dirty marks, mark a migration applied, or accept edited checksums.
    Repair {
        /// Record the new checksum of every edited applied migration.
        #[arg(long)]
        accept_checksums: bool,
        /// Mark this migration applied (you finished it by hand).
        #[arg(long)]
        mark_applied: Option<String>,
        /// Count the statement this dirty migration stopped at as done (it took
        /// effect, though the run that sent it died first); `up` resumes after it.
        #[arg(long)]
        statement_done: Option<String>,
        /// Why (kept in the history).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Take a backup now.
    Backup,
    /// List backups (or prune old ones).
    Backups {
        /// Delete backups older than --older-than.
        #[arg(long)]
        prune: bool,
        /// Age for --prune (e.g. 30d, 12h).
        #[arg(long, default_value = "30d")]
        older_than: String,
    },
    /// Restore a backup over the database.
    Restore {
        /// The backup's id (see `instar backups`).
        id: String,
        /// Required: everything written since the backup is lost.
        #[arg(long)]
        force: bool,
    },
}

/// `instar copy`'s flags.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The source (default: the configured database).
    #[arg(long)]
    pub from: Option<String>,
    /// The target database (it must exist; its tables are created by the migrations).
    #[arg(long)]
    pub to: String,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Then move a collection's documents to a version in the target (checkpointed, complements
    /// kept): COLLECTION:VERSION (repeatable).
    #[arg(long, value_name = "COLLECTION:VERSION")]
    pub lens: Vec<String>,
    /// Copy into tables that hold rows already (rows whose key is there are kept as they are).
    #[arg(long)]
    pub append: bool,
    /// counts, sample (rows compared in windows over the key) or full (every row).
    #[arg(long, default_value = "sample")]
    pub verify: String,
    /// Rows compared per table with --verify sample.
    #[arg(long, default_value_t = 10_000)]
    pub sample: u64,
    /// Rows per batch (one transaction with its checkpoint).
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Tables copied at once.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Show the tables and column types, copy nothing.
    #[arg(long)]
    pub dry_run: bool,
}
