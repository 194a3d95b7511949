//! `instar init` and `instar new`: create a project and new migration files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use instar_core::Layout;

use crate::args::LayoutArg;
use crate::render::Out;
use instar_service::Settings;

const CONFIG: &str = r#"# Instar project configuration. Every key is optional.

[database]
# URL: sqlite:file.db, postgres://user@host/db, mysql://user@host/db.
# Overridden by --database, INSTAR_DATABASE_URL and DATABASE_URL.
url = "sqlite:instar.db"
# Statements run on every connection first, e.g. ["PRAGMA foreign_keys = OFF"].
init_sql = []
# history_table = "instar_history"
# history_schema = "public"

[migrations]
dir = "migrations"
# What was read is kept in .instar/cache, so an unchanged folder is not read again.
cache = true

[run]
lock_timeout = "60s"
backup = true
backup_dir = ".instar/backups"
# Restore the automatic backup when a run fails outside a transaction. It puts
# the WHOLE database back as it was before the run, discarding what other
# clients wrote meanwhile: only safe while no application writes.
restore_on_failure = false
"#;

/// Example migrations, portable across SQLite, PostgreSQL and MySQL.
const EXAMPLES: &[(&str, &str, &str, &str)] = &[
    (
        "0001_create_users",
        "CREATE TABLE users (\n    id BIGINT PRIMARY KEY,\n    email VARCHAR(255) NOT NULL UNIQUE,\n    created_at VARCHAR(40) NOT NULL\n);\n",
        "DROP TABLE users;\n",
        "description = \"Users of the application\"\nschema_version = \"1.0.0\"\n",
    ),
    (
        "0002_create_posts",
        "CREATE TABLE posts (\n    id BIGINT PRIMARY KEY,\n    user_id BIGINT NOT NULL REFERENCES users (id),\n    title VARCHAR(200) NOT NULL,\n    body TEXT\n);\n\nCREATE INDEX posts_user_id ON posts (user_id);\n",
        "DROP TABLE posts;\n",
        "description = \"Posts written by users\"\nschema_version = \"1.1.0\"\n\n[checks]\nafter = [\"SELECT count(*) = 0 FROM posts\"]\n",
    ),
];

/// Writes the up script and, when there is one, the down script: the files written.
fn write_pair(up: (PathBuf, &str), down: Option<(PathBuf, &str)>) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(2);
    for (path, text) in std::iter::once(up).chain(down) {
        write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if path.exists() {
        bail!("{} already exists; not overwriting it", path.display());
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub fn init(dir: &Path, example: bool, layout: LayoutArg, out: &Out) -> Result<()> {
    let migrations = dir.join("migrations");
    std::fs::create_dir_all(&migrations)
        .with_context(|| format!("cannot create {}", migrations.display()))?;
    let config = dir.join("instar.toml");
    if !config.exists() {
        // The layout is kept so that `instar new` writes the next file in it.
        let text = match layout {
            LayoutArg::Instar => CONFIG.to_string(),
            other => CONFIG.replace(
                "dir = \"migrations\"",
                &format!("dir = \"migrations\"\nlayout = \"{}\"", to_layout(other)),
            ),
        };
        write(&config, &text)?;
        out.line(format!("created {}", config.display()));
    }
    if example {
        if layout != LayoutArg::Instar {
            bail!(
                "--example writes Instar-layout migrations; drop --layout or use --layout instar"
            );
        }
        let existing = std::fs::read_dir(&migrations)
            .with_context(|| format!("cannot read {}", migrations.display()))?
            .filter_map(Result::ok)
            .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
        if existing {
            bail!(
                "{} already holds migrations: --example would add a second 0001 next to yours; run `instar init` without --example, and `instar new <name>` for the next one",
                migrations.display()
            );
        }
        for (folder, up, down, meta) in EXAMPLES {
            let f = migrations.join(folder);
            std::fs::create_dir_all(&f)
                .with_context(|| format!("cannot create {}", f.display()))?;
            write(&f.join("up.sql"), up)?;
            write(&f.join("down.sql"), down)?;
            write(&f.join("migration.toml"), meta)?;
            out.line(format!("created {}", f.display()));
        }
    }
    out.line(format!(
        "project ready in {}; next: `instar new <name>`, `instar up`",
        dir.display()
    ));
    Ok(())
}

fn to_layout(l: LayoutArg) -> Layout {
    match l {
        LayoutArg::Instar => Layout::Instar,
        LayoutArg::Diesel => Layout::Diesel,
        LayoutArg::Sqlx => Layout::Sqlx,
        LayoutArg::Flyway => Layout::Flyway,
        LayoutArg::Dotted => Layout::Dotted,
        LayoutArg::Popx => Layout::Popx,
        LayoutArg::Dbmate => Layout::Dbmate,
        LayoutArg::Goose => Layout::Goose,
    }
}

/// The next version: one more than the newest when versions are small
/// sequence numbers (keeping their width), else a UTC timestamp.
fn next_version(existing: &[String], layout: Layout) -> String {
    let stamp = instar_core::time::now_rfc3339();
    let digits: String = stamp
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    let numbers: Vec<(u64, usize)> = existing
        .iter()
        .filter_map(|v| {
            (v.len() < 10)
                .then(|| v.parse::<u64>().ok().map(|n| (n, v.len())))
                .flatten()
        })
        .collect();
    if layout != Layout::Diesel && !numbers.is_empty() && numbers.len() == existing.len() {
        let (max, width) = numbers.iter().max().copied().unwrap_or((0, 4));
        return format!("{:0width$}", max + 1);
    }
    match layout {
        Layout::Diesel => format!(
            "{}-{}-{}-{}",
            &digits[0..4],
            &digits[4..6],
            &digits[6..8],
            &digits[8..14]
        ),
        // popx's versions are 20 digits: a timestamp and six more.
        Layout::Popx => format!("{digits}000000"),
        _ => digits,
    }
}

const DATA_TOML: &str = r#"# A data migration: up.sql is one statement run in keyset batches; {batch} becomes
# the batch's key range. See "Data migrations" in the README.
kind = "data"

[data]
table = "my_table"        # the table to walk
key = "id"                # its unique, non-NULL key (or ["a", "b"])
batch_size = 5000
# pause = "10ms"
# target_batch_time = "250ms"
# on_error = "skip"

# [checks]
# after = ["SELECT count(*) = 0 FROM my_table WHERE my_column IS NULL"]
"#;

pub fn new(
    settings: &Settings,
    name: &str,
    reversible: bool,
    data: bool,
    layout: Option<LayoutArg>,
    out: &Out,
) -> Result<i32> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("migration name {name:?}: use letters, digits, _ and -");
    }
    let dir = &settings.migrations;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let reading = instar_core::source::Reading {
        layout: settings.layout,
        pattern: settings.pattern.clone(),
    };
    let source = instar_core::source::read_tree_with(&instar_core::files::Disk, dir, &reading)?;
    let layout = layout
        .map(to_layout)
        .or(source.layout)
        .or(settings.layout)
        .unwrap_or(Layout::Instar);
    let existing: Vec<String> = source
        .migrations
        .iter()
        .filter(|m| !m.is_repeatable())
        .map(|m| m.version.to_string())
        .collect();
    let v = next_version(&existing, layout);
    if data && layout != Layout::Instar {
        bail!("--data writes migration.toml, which only the Instar folder layout has");
    }
    let (up, down) = if data {
        let statement = "UPDATE my_table SET my_column = my_column WHERE {batch}\n".to_string();
        (statement.clone(), statement)
    } else {
        (format!("-- {name}\n"), format!("-- revert {name}\n"))
    };
    let created: Vec<PathBuf> = match layout {
        Layout::Instar | Layout::Diesel => {
            let f = dir.join(format!("{v}_{name}"));
            std::fs::create_dir_all(&f)
                .with_context(|| format!("cannot create {}", f.display()))?;
            write(&f.join("up.sql"), &up)?;
            let mut c = vec![f.join("up.sql")];
            if data {
                write(&f.join("migration.toml"), DATA_TOML)?;
                c.push(f.join("migration.toml"));
            }
            if reversible || layout == Layout::Diesel {
                write(&f.join("down.sql"), &down)?;
                c.push(f.join("down.sql"));
            }
            c
        }
        Layout::Sqlx | Layout::Popx if reversible => write_pair(
            (dir.join(format!("{v}_{name}.up.sql")), &up),
            Some((dir.join(format!("{v}_{name}.down.sql")), &down)),
        )?,
        Layout::Sqlx | Layout::Popx => {
            let u = dir.join(format!("{v}_{name}.sql"));
            write(&u, &up)?;
            vec![u]
        }
        Layout::Dotted => write_pair(
            (dir.join(format!("V{v}.{name}.up.sql")), &up),
            reversible.then(|| (dir.join(format!("V{v}.{name}.down.sql")), down.as_str())),
        )?,
        Layout::Dbmate | Layout::Goose => {
            let u = dir.join(format!("{v}_{name}.sql"));
            let text = if layout == Layout::Dbmate {
                format!("-- migrate:up\n{up}\n-- migrate:down\n{down}")
            } else {
                format!("-- +goose Up\n{up}\n-- +goose Down\n{down}")
            };
            write(&u, &text)?;
            vec![u]
        }
        Layout::Pattern(_) => {
            let Some(pattern) = &settings.pattern else {
                bail!("the pattern layout needs [migrations] pattern in instar.toml");
            };
            let file = |direction: &str| {
                dir.join(
                    pattern
                        .as_str()
                        .replace("{version}", &v)
                        .replace("{name}", name)
                        .replace("{direction}", direction),
                )
            };
            let with_down = reversible && pattern.as_str().contains("{direction}");
            write_pair(
                (file("up"), &up),
                with_down.then(|| (file("down"), down.as_str())),
            )?
        }
        Layout::Flyway => write_pair(
            (dir.join(format!("V{v}__{name}.sql")), &up),
            reversible.then(|| (dir.join(format!("U{v}__{name}.sql")), down.as_str())),
        )?,
    };
    for c in &created {
        out.line(format!("created {}", c.display()));
    }
    out.json(&serde_json::json!({ "version": v, "created": created }));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_version_keeps_sequence_width() {
        assert_eq!(
            next_version(&["0001".into(), "0002".into()], Layout::Instar),
            "0003"
        );
        assert_eq!(next_version(&[], Layout::Instar).len(), 14);
        assert_eq!(next_version(&[], Layout::Diesel).len(), 17);
    }
}
