//! Reading a migrations folder in any supported layout.
//!
//! [`read_dir`] classifies every entry (Instar/diesel folder, sqlx file, Flyway
//! file, or something else to ignore), refuses mixed layouts and malformed
//! names, reads scripts and metadata, and returns the migrations in run order:
//! a topological order over `depends_on` (default: the previous migration)
//! with versions breaking ties, repeatable migrations last.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checksum;
use crate::files::{Disk, Files};
use crate::meta::{self, Meta};
use crate::version::{Layout, Version};
use crate::Error;

/// One script file, normalised (BOM stripped, CRLF → LF).
#[derive(Debug, Clone, Serialize)]
pub struct Script {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its normalised text.
    pub sql: String,
    /// The text exactly as read, when normalising changed it (a byte-order
    /// mark, CRLF line ends): what other tools' checksums were taken of.
    #[serde(skip)]
    pub original: Option<String>,
}

/// A migration as found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    /// Its version (for a repeatable migration, `R__<name>`).
    pub version: Version,
    /// Its name, from the file or folder name.
    pub name: String,
    /// The layout it was read from.
    pub layout: Layout,
    /// The forward script.
    pub up: Script,
    /// The reverse script, if any.
    pub down: Option<Script>,
    /// Metadata from `migration.toml`.
    pub meta: Meta,
    /// Whether the script runs in a transaction (default) or statement by statement.
    pub transaction: bool,
    /// Whether the reverse script does, when its layout says so apart from the
    /// forward one (dbmate's `transaction:false`, popx's `.autocommit`); `None`:
    /// as the forward one, unless the reverse script's own header opts out.
    pub down_transaction: Option<bool>,
    /// `sha256:<hex>` of the normalised forward script.
    pub checksum: String,
    /// popx: the scripts for each engine (the dialect-free one has no dialect);
    /// [`Source::for_dialect`] picks one. Empty for every other layout.
    #[serde(skip)]
    pub variants: Vec<Variant>,
    /// A documents migration: the fingerprint (`sha256:…`) of its collection's
    /// lenses and modules up to its target, when the program that loaded it
    /// knows the collection; recorded when it is applied and compared after.
    #[serde(skip)]
    pub lenses: Option<String>,
}

/// One engine's scripts of a popx migration.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The dialect suffix (`sqlite3`, `postgres` …); `None` for every engine.
    pub dialect: Option<String>,
    /// The forward script.
    pub up: Script,
    /// The reverse script, if any.
    pub down: Option<Script>,
    /// `false` for an `.autocommit` up file.
    pub transaction: bool,
    /// `false` for an `.autocommit` down file.
    pub down_transaction: bool,
}

impl Migration {
    /// Whether this is a repeatable migration (re-applied when its checksum changes).
    pub fn is_repeatable(&self) -> bool {
        self.version.is_repeatable()
    }

    /// Its forward SQL as the tools that read without a database see it: the
    /// script, or for an online migration its ops sketched as SQL.
    pub fn readable_sql(&self) -> std::borrow::Cow<'_, str> {
        if self.meta.kind == Some(crate::meta::Kind::Online) {
            crate::online::sketch(&self.meta.ops, &self.up.sql).into()
        } else {
            self.up.sql.as_str().into()
        }
    }
}

/// The migrations of one folder, in run order.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The folder.
    pub dir: PathBuf,
    /// The layout the folder uses, if it holds any migration.
    pub layout: Option<Layout>,
    /// The migrations, in the order `up` applies them.
    pub migrations: Vec<Migration>,
    /// Entries that were ignored, and why (shown with `--verbose`).
    pub notes: Vec<String>,
}

impl Source {
    /// The migrations as they run on `dialect`: each popx migration's files for
    /// that engine (or its dialect-free files); one with neither does not exist
    /// on this engine, as popx has it (said in the notes). Other layouts are
    /// returned as they are.
    pub fn for_dialect(mut self, dialect: crate::split::Dialect) -> Source {
        if self.layout != Some(Layout::Popx) {
            return self;
        }
        let mut notes = Vec::new();
        self.migrations.retain_mut(|m| {
            if m.variants.is_empty() {
                return true;
            }
            let chosen = m
                .variants
                .iter()
                .find(|v| {
                    v.dialect
                        .as_deref()
                        .is_some_and(|d| crate::layouts::popx_dialect_is(d, dialect))
                })
                .or_else(|| m.variants.iter().find(|v| v.dialect.is_none()));
            let Some(v) = chosen else {
                notes.push(format!(
                    "skipped {} {}: no file for {dialect} and no dialect-free file",
                    m.version, m.name
                ));
                return false;
            };
            m.checksum = checksum::checksum(&v.up.sql);
            m.up = v.up.clone();
            m.down = v.down.clone();
            m.transaction = v.transaction && !meta::header_no_transaction(&v.up.sql);
            m.down_transaction = Some(v.down_transaction);
            true
        });
        self.notes.extend(notes);
        self
    }

    /// The migration with this version text, if any.
    pub fn find(&self, version: &str) -> Option<&Migration> {
        let parsed = self.layout.and_then(|l| Version::parse(version, l));
        self.migrations.iter().find(|m| {
            m.version.as_str() == version || parsed.as_ref().is_some_and(|p| *p == m.version)
        })
    }
}

enum Family {
    Folder,
    Sqlx,
    Flyway,
    Dotted,
}

/// How to read a folder: a layout forced instead of detected, and a declared
/// file-name pattern (with `Layout::Pattern`).
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The layout to use instead of detecting it.
    pub layout: Option<Layout>,
    /// The file-name pattern of `Layout::Pattern`.
    pub pattern: Option<crate::layouts::Pattern>,
}

/// What every message about an unreadable folder ends with.
pub const LAYOUTS_TRIED: &str = "the layouts Instar reads are: <version>_<name>/up.sql folders (Instar, diesel), <version>_<name>.sql or .up.sql/.down.sql (sqlx, golang-migrate, popx with .<dialect> suffixes, dbmate, goose), V<version>__<name>.sql (Flyway, refinery) and V<version>.<Name>.up.sql; for another, declare it in instar.toml: [migrations] pattern = \"{version}.{name}.{direction}.sql\"";

#[derive(PartialEq, Clone, Copy, Debug)]
pub(crate) enum Part {
    Simple,
    Up,
    Down,
}

pub(crate) struct Found {
    pub(crate) version_text: String,
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) part: Part,
    /// popx file-name suffixes (`.sqlite3`, `.autocommit`).
    pub(crate) popx: Option<crate::layouts::PopxSuffix>,
}

/// Reads the migrations in folder `dir`. `forced` overrides layout detection
/// (only meaningful to tell Instar folders from diesel ones).
pub fn read_dir(dir: &Path, forced: Option<Layout>) -> Result<Source, Error> {
    read_tree(&Disk, dir, forced)
}

/// Reads the migrations in folder `dir` of `files` (the file system, or files
/// in memory), exactly as [`read_dir`] reads a folder on disk.
pub fn read_tree(files: &dyn Files, dir: &Path, forced: Option<Layout>) -> Result<Source, Error> {
    read_tree_with(
        files,
        dir,
        &Reading {
            layout: forced,
            pattern: None,
        },
    )
}

/// Reads the migrations in folder `dir` of `files` as `reading` says.
pub fn read_tree_with(files: &dyn Files, dir: &Path, reading: &Reading) -> Result<Source, Error> {
    let forced = reading.layout;
    if let Some(pattern) = &reading.pattern {
        return read_pattern(files, dir, pattern, forced);
    }
    let mut source = Source {
        dir: dir.to_path_buf(),
        ..Source::default()
    };
    let mut entries = files.list(dir).map_err(|e| Error::io(dir, e))?;
    entries.sort();

    let mut folders = Vec::new();
    let mut sqlx = Vec::new();
    let mut flyway = Vec::new();
    let mut dotted = Vec::new();
    let mut code = Vec::new();
    for (file_name, is_dir) in entries {
        let path = dir.join(&file_name);
        if file_name.starts_with('.') {
            continue;
        }
        if !is_dir && file_name.starts_with(|c: char| c.is_ascii_digit()) {
            // Migrations Instar cannot run: they must not be skipped without a word.
            if file_name.ends_with(".fizz") || file_name.ends_with(".go") {
                code.push(path);
                continue;
            }
        }
        match classify(files, &path, &file_name, is_dir)? {
            Some((Family::Folder, f)) => folders.push(f),
            Some((Family::Sqlx, f)) => sqlx.push(f),
            Some((Family::Flyway, f)) => flyway.push(f),
            Some((Family::Dotted, f)) => dotted.push(f),
            // A folder with an up.sql is meant as a migration: never skipped silently.
            None if is_dir && files.is_file(&path.join("up.sql")) => {
                return Err(Error::MalformedName {
                    path,
                    reason: "it holds an up.sql, but its name does not start with a version number (like 0002_name); rename it, or move it out of the migrations folder".into(),
                })
            }
            None => source
                .notes
                .push(format!("ignored {}: not a migration", path.display())),
        }
    }

    // Each layout present, named by its first entries, so the message says which files to move.
    let families: Vec<String> = [
        ("folder (up.sql)", &folders),
        ("sqlx", &sqlx),
        ("flyway", &flyway),
        ("dotted", &dotted),
    ]
    .iter()
    .filter(|(_, found)| !found.is_empty())
    .map(|(name, found)| {
        let mut names: Vec<String> = found
            .iter()
            .take(3)
            .filter_map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if found.len() > 3 {
            names.push(format!("… {} in all", found.len()));
        }
        format!("{name} ({})", names.join(", "))
    })
    .collect();
    if families.len() > 1 {
        return Err(Error::MixedLayouts {
            dir: dir.to_path_buf(),
            a: families[0].clone(),
            b: families[1].clone(),
        });
    }

    let migrations = if !folders.is_empty() {
        let layout = match forced {
            Some(l @ (Layout::Diesel | Layout::Instar)) => l,
            _ if looks_like_diesel(files, dir, &folders) => Layout::Diesel,
            _ => Layout::Instar,
        };
        source.layout = Some(layout);
        read_folders(files, folders, layout, &mut source.notes)?
    } else if !sqlx.is_empty() {
        let (layout, migrations) = read_sqlx(files, sqlx)?;
        source.layout = Some(layout);
        migrations
    } else if !flyway.is_empty() {
        source.layout = Some(Layout::Flyway);
        read_flyway(files, flyway, Layout::Flyway)?
    } else if !dotted.is_empty() {
        source.layout = Some(Layout::Dotted);
        read_flyway(files, dotted, Layout::Dotted)?
    } else {
        Vec::new()
    };
    if let (Some(declared), Some(found)) = (forced, source.layout) {
        // popx files without engine suffixes are named as sqlx's are.
        if declared == Layout::Popx && found == Layout::Sqlx {
            source.layout = Some(Layout::Popx);
        } else if !matches!(declared, Layout::Instar | Layout::Diesel) && declared != found {
            return Err(Error::MalformedName {
                path: dir.to_path_buf(),
                reason: format!(
                    "instar.toml declares the {declared} layout, but the files are in the {found} layout; fix the layout key (or remove it: layouts are recognised from the files)"
                ),
            });
        }
    }
    if let Some(path) = code.first() {
        return Err(Error::MalformedName {
            path: path.clone(),
            reason: "a migration written in code (Go, or pop's fizz), which Instar cannot run; write it as SQL (`soda` prints a fizz file's SQL), or move it out of the migrations folder".into(),
        });
    }
    source.migrations = order(migrations)?;
    Ok(source)
}

/// Reads a folder whose file names follow a declared pattern.
fn read_pattern(
    files: &dyn Files,
    dir: &Path,
    pattern: &crate::layouts::Pattern,
    forced: Option<Layout>,
) -> Result<Source, Error> {
    let layout = match forced {
        Some(l @ Layout::Pattern(_)) => l,
        _ => Layout::Pattern(crate::version::Order::Numeric),
    };
    let mut source = Source {
        dir: dir.to_path_buf(),
        layout: Some(layout),
        ..Source::default()
    };
    let mut entries = files.list(dir).map_err(|e| Error::io(dir, e))?;
    entries.sort();
    let mut found = Vec::new();
    for (file_name, is_dir) in entries {
        let path = dir.join(&file_name);
        match (is_dir, pattern.matches(&file_name)) {
            (false, Some(m)) => found.push(Found {
                version_text: m.version,
                name: m.name,
                path,
                part: match m.up {
                    None => Part::Simple,
                    Some(true) => Part::Up,
                    Some(false) => Part::Down,
                },
                popx: None,
            }),
            _ => source.notes.push(format!(
                "ignored {}: does not match the pattern {:?}",
                path.display(),
                pattern.as_str()
            )),
        }
    }
    let migrations = pair(files, found, layout)?
        .into_iter()
        .map(|(v, n, up, down)| build(v, n, layout, up, down, Meta::default(), true))
        .collect();
    source.migrations = order(migrations)?;
    Ok(source)
}

fn classify(
    files: &dyn Files,
    path: &Path,
    file_name: &str,
    is_dir: bool,
) -> Result<Option<(Family, Found)>, Error> {
    let malformed = |reason: &str| Error::MalformedName {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let starts_digit = file_name.starts_with(|c: char| c.is_ascii_digit());
    if is_dir {
        // Whether it holds an up.sql is checked when the folder is listed.
        if !starts_digit {
            return Ok(None);
        }
        let Some((version, name)) = file_name.split_once('_') else {
            if files.is_file(&path.join("up.sql")) {
                return Err(malformed("expected <version>_<name>"));
            }
            return Ok(None);
        };
        return Ok(Some((
            Family::Folder,
            Found {
                version_text: version.into(),
                name: name.into(),
                path: path.to_path_buf(),
                part: Part::Simple,
                popx: None,
            },
        )));
    }
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Ok(None);
    };
    let first = stem.chars().next().unwrap_or(' ');
    let second_digit = stem[first.len_utf8()..].starts_with(|c: char| c.is_ascii_digit());
    let (dotted_rest, dotted_part) = up_or_down(stem);
    if first == 'V'
        && second_digit
        && !stem.contains("__")
        && dotted_part != Part::Simple
        && dotted_rest.contains('.')
    {
        // `V0001.Initial_Schema.up.sql`: the version up to the first dot.
        let (rest, part) = (dotted_rest, dotted_part);
        let (version, name) = rest[1..].split_once('.').unwrap_or((&rest[1..], ""));
        return Ok(Some((Family::Dotted, found(version, name, path, part))));
    }
    if (first == 'V' || first == 'U') && second_digit || stem.starts_with("R__") {
        let (version, name) = stem[1..].split_once("__").ok_or_else(|| {
            malformed(&format!("expected V<version>__<name>.sql (Flyway: two underscores) or V<version>.<Name>.up.sql; {LAYOUTS_TRIED}"))
        })?;
        let part = match first {
            'V' => Part::Up,
            'U' => Part::Down,
            _ => Part::Simple,
        };
        return Ok(Some((Family::Flyway, found(version, name, path, part))));
    }
    if starts_digit {
        let (rest, part) = up_or_down(stem);
        let (version, name) = rest
            .split_once('_')
            .ok_or_else(|| malformed(&format!("expected <version>_<name>.sql; {LAYOUTS_TRIED}")))?;
        let (name, popx) = match crate::layouts::popx_suffix(name) {
            Some((n, suffix)) if part != Part::Simple => (n, Some(suffix)),
            _ => (name, None),
        };
        return Ok(Some((
            Family::Sqlx,
            Found {
                version_text: version.into(),
                name: name.into(),
                path: path.to_path_buf(),
                part,
                popx,
            },
        )));
    }
    Ok(None)
}

/// A file found as a migration's script (no popx suffixes).
fn found(version: &str, name: &str, path: &Path, part: Part) -> Found {
    Found {
        version_text: version.into(),
        name: name.into(),
        path: path.to_path_buf(),
        part,
        popx: None,
    }
}

/// A file stem without its `.up` / `.down` part, and which it was.
fn up_or_down(stem: &str) -> (&str, Part) {
    if let Some(r) = stem.strip_suffix(".up") {
        (r, Part::Up)
    } else if let Some(r) = stem.strip_suffix(".down") {
        (r, Part::Down)
    } else {
        (stem, Part::Simple)
    }
}

fn looks_like_diesel(files: &dyn Files, dir: &Path, folders: &[Found]) -> bool {
    // diesel.toml lives beside the folder, outside the tree of an embedded set.
    let parent_has_toml = dir
        .parent()
        .is_some_and(|p| p.join("diesel.toml").is_file());
    parent_has_toml
        || folders.iter().any(|f| {
            f.path
                .file_name()
                .is_some_and(|n| n == "00000000000000_diesel_initial_setup")
        })
        || folders
            .iter()
            .take(64)
            .any(|f| files.is_file(&f.path.join("metadata.toml")))
}

fn read_text(files: &dyn Files, path: &Path) -> Result<String, Error> {
    let bytes = files.read(path).map_err(|e| Error::io(path, e))?;
    checksum::normalise(bytes).map_err(|(line, offset)| Error::NotUtf8 {
        path: path.to_path_buf(),
        line,
        offset,
    })
}

pub(crate) fn read_script(files: &dyn Files, path: &Path) -> Result<Script, Error> {
    let bytes = files.read(path).map_err(|e| Error::io(path, e))?;
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::NulByte {
            path: path.to_path_buf(),
            line: 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count(),
        });
    }
    let changed = bytes.starts_with(b"\xEF\xBB\xBF") || bytes.windows(2).any(|w| w == b"\r\n");
    let original = changed.then(|| String::from_utf8_lossy(&bytes).into_owned());
    let sql = checksum::normalise(bytes).map_err(|(line, offset)| Error::NotUtf8 {
        path: path.to_path_buf(),
        line,
        offset,
    })?;
    Ok(Script {
        path: path.to_path_buf(),
        sql,
        original,
    })
}

pub(crate) fn parse_version(f: &Found, layout: Layout) -> Result<Version, Error> {
    Version::parse(&f.version_text, layout).ok_or_else(|| Error::MalformedName {
        path: f.path.clone(),
        reason: format!(
            "{:?} is not a valid version for the {layout} layout; {LAYOUTS_TRIED}",
            f.version_text
        ),
    })
}

pub(crate) fn build(
    version: Version,
    name: String,
    layout: Layout,
    up: Script,
    down: Option<Script>,
    meta: Meta,
    tx: bool,
) -> Migration {
    let transaction =
        tx && meta.transaction != Some(false) && !meta::header_no_transaction(&up.sql);
    Migration {
        checksum: checksum::checksum(&up.sql),
        version,
        name,
        layout,
        up,
        down,
        meta,
        transaction,
        down_transaction: None,
        variants: Vec::new(),
        lenses: None,
    }
}

/// Reads folder migrations, on up to two threads when there are many: on a
/// cold cache or a slow file system the open/read calls dominate a no-op run.
fn read_folders(
    files: &dyn Files,
    folders: Vec<Found>,
    layout: Layout,
    notes: &mut Vec<String>,
) -> Result<Vec<Migration>, Error> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2);
    if folders.len() < 64 || threads < 2 {
        return read_folder_chunk(files, &folders, layout, notes);
    }
    let (a, b) = folders.split_at(folders.len() / 2);
    let (ra, rb) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut n = Vec::new();
            read_folder_chunk(files, b, layout, &mut n).map(|m| (m, n))
        });
        let ra = read_folder_chunk(files, a, layout, notes);
        (
            ra,
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let mut out = ra?;
    let (mb, nb) = rb?;
    out.extend(mb);
    notes.extend(nb);
    Ok(out)
}

fn read_folder_chunk(
    files: &dyn Files,
    folders: &[Found],
    layout: Layout,
    notes: &mut Vec<String>,
) -> Result<Vec<Migration>, Error> {
    let mut out = Vec::new();
    for f in folders {
        let f = Found {
            version_text: f.version_text.clone(),
            name: f.name.clone(),
            path: f.path.clone(),
            part: Part::Simple,
            popx: None,
        };
        // One listing per folder tells which of its files exist.
        let names: Vec<String> = files
            .list(&f.path)
            .map_err(|e| Error::io(&f.path, e))?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let has = |n: &str| names.iter().any(|x| x == n);
        if !has("up.sql") && has("down.sql") {
            return Err(Error::MalformedName {
                path: f.path.clone(),
                reason: "it holds a down.sql but no up.sql; add the up.sql (or remove the folder)"
                    .into(),
            });
        }
        // `UP.SQL`, `up.sql.bak`, `up.psql`: a migration meant, whose up script
        // would be skipped without a word.
        let near: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| n.to_ascii_lowercase().contains(".sql") || n.eq_ignore_ascii_case("up"))
            .collect();
        if !has("up.sql") && !near.is_empty() {
            return Err(Error::MalformedName {
                path: f.path.clone(),
                reason: format!(
                    "it holds {} but no up.sql; name the up script up.sql (lower case), or move the folder out of the migrations",
                    near.join(", ")
                ),
            });
        }
        if !has("up.sql") && has("migration.toml") {
            // An online migration: its ops are its script.
            out.push(online_migration(files, &f, layout)?);
            continue;
        }
        if !has("up.sql") {
            notes.push(format!(
                "ignored {}: a folder without up.sql",
                f.path.display()
            ));
            continue;
        }
        for n in &names {
            if !matches!(
                n.as_str(),
                "up.sql" | "down.sql" | "migration.toml" | "metadata.toml"
            ) {
                notes.push(format!(
                    "ignored {}: not part of a migration",
                    f.path.join(n).display()
                ));
            }
        }
        let version = parse_version(&f, layout)?;
        let up = read_script(files, &f.path.join("up.sql"))?;
        let down = has("down.sql")
            .then(|| read_script(files, &f.path.join("down.sql")))
            .transpose()?;
        let meta = if has("migration.toml") {
            let p = f.path.join("migration.toml");
            meta::parse_meta(&p, &read_text(files, &p)?)?
        } else {
            Meta::default()
        };
        let diesel_tx = if has("metadata.toml") {
            let p = f.path.join("metadata.toml");
            meta::parse_diesel_metadata(&p, &read_text(files, &p)?)?
        } else {
            None
        };
        check_data(&meta, &up, down.as_ref(), &f.path)?;
        out.push(build(
            version,
            f.name,
            layout,
            up,
            down,
            meta,
            diesel_tx != Some(false),
        ));
    }
    Ok(out)
}

/// A folder with a `migration.toml` and no `up.sql`: an online migration,
/// whose `[[ops]]` are its script (checksummed as written; the engine crate
/// compiles them when the migration runs). It has a down when every op can be undone.
fn online_migration(files: &dyn Files, f: &Found, layout: Layout) -> Result<Migration, Error> {
    let p = f.path.join("migration.toml");
    let script = read_script(files, &p)?;
    let meta = meta::parse_meta(&p, &script.sql)?;
    check_online(&meta, &script)?;
    let down = meta
        .ops
        .iter()
        .all(|o| o.irreversible().is_none())
        .then(|| script.clone());
    let version = parse_version(f, layout)?;
    Ok(build(
        version,
        f.name.clone(),
        layout,
        script,
        down,
        meta,
        true,
    ))
}

/// Refuses a malformed online migration when it is read: `kind = "online"`,
/// at least one op, each well formed (named with its line).
fn check_online(meta: &Meta, toml: &Script) -> Result<(), Error> {
    let bad = |reason: String| Error::BadMetadata {
        path: toml.path.clone(),
        message: reason,
    };
    if meta.kind != Some(meta::Kind::Online) {
        return Err(bad(
            "this folder has a migration.toml but no up.sql: add the up.sql, or make it an online migration (kind = \"online\" with [[ops]])".into(),
        ));
    }
    if meta.ops.is_empty() {
        return Err(bad(
            "kind = \"online\" needs at least one [[ops]] entry (op = \"add_column\", …)".into(),
        ));
    }
    if meta.data.is_some() || meta.documents.is_some() {
        return Err(bad(
            "an online migration takes [[ops]] only, not a [data] or [documents] table".into(),
        ));
    }
    let lines = crate::online::op_lines(&toml.sql);
    for (i, op) in meta.ops.iter().enumerate() {
        if let Some(why) = op.malformed() {
            let line = lines
                .get(i)
                .map_or(String::new(), |l| format!("line {l}: "));
            return Err(bad(format!("{line}op {} ({}): {why}", i + 1, op.name())));
        }
    }
    Ok(())
}

pub(crate) fn duplicate(version: &Version, first: &Path, second: &Path) -> Error {
    Error::DuplicateVersion {
        version: version.to_string(),
        first: first.to_path_buf(),
        second: second.to_path_buf(),
    }
}

/// Refuses a malformed data migration before anything runs: `kind = "data"`
/// needs a `[data]` table with a key and a positive batch size, and each script
/// must hold the `{batch}` placeholder. That each is exactly one statement is
/// checked with the engine's own dialect by [`check_data_statement`].
fn check_data(meta: &Meta, up: &Script, down: Option<&Script>, folder: &Path) -> Result<(), Error> {
    use crate::meta::{Kind, BATCH_PLACEHOLDER};
    let bad = |path: &Path, reason: String| Error::BadDataMigration {
        path: path.to_path_buf(),
        reason,
    };
    let toml = folder.join("migration.toml");
    if meta.kind == Some(Kind::Online) || !meta.ops.is_empty() {
        return Err(Error::BadMetadata {
            path: toml,
            message: "an online migration's SQL is compiled from its [[ops]] (kind = \"online\"): remove up.sql/down.sql, or write the SQL in an op = \"sql\" entry".into(),
        });
    }
    check_documents(meta, up, &toml)?;
    match (meta.kind, &meta.data) {
        (Some(Kind::Data), None) => {
            return Err(bad(
                &toml,
                "kind = \"data\" needs a [data] table (table, key, batch_size)".into(),
            ))
        }
        (Some(Kind::Data), Some(d)) => {
            if d.key.columns().is_empty() || d.key.columns().iter().any(String::is_empty) {
                return Err(bad(&toml, "[data] key names no column".into()));
            }
            if d.batch_size == 0 {
                return Err(bad(&toml, "[data] batch_size must be at least 1".into()));
            }
        }
        (_, Some(_)) => return Err(bad(&toml, "a [data] table needs kind = \"data\"".into())),
        _ => return Ok(()),
    }
    for script in std::iter::once(up).chain(down) {
        if !script.sql.contains(BATCH_PLACEHOLDER) {
            return Err(bad(
                &script.path,
                format!("the statement has no {BATCH_PLACEHOLDER} placeholder (e.g. `UPDATE t SET … WHERE {BATCH_PLACEHOLDER}`)"),
            ));
        }
    }
    Ok(())
}

/// Refuses a malformed documents migration: `kind = "documents"` needs a
/// `[documents]` table, a positive batch size, and an up.sql with no statement
/// (it runs no SQL of its own).
fn check_documents(meta: &Meta, up: &Script, toml: &Path) -> Result<(), Error> {
    use crate::meta::Kind;
    let bad = |path: &Path, reason: &str| Error::BadDataMigration {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    match (meta.kind, &meta.documents) {
        (Some(Kind::Documents), None) => Err(bad(
            toml,
            "kind = \"documents\" needs a [documents] table (collection, to)",
        )),
        (Some(Kind::Documents), Some(d)) => {
            if d.batch_size == 0 {
                return Err(bad(toml, "[documents] batch_size must be at least 1"));
            }
            let statements = match crate::split::split(&up.sql, crate::split::Dialect::Sqlite) {
                crate::split::Split::Statements(s) => s.len(),
                _ => 1,
            };
            if statements > 0 {
                return Err(bad(&up.path, "a documents migration runs no SQL of its own: leave up.sql empty (comments only) and put SQL in a migration of its own"));
            }
            Ok(())
        }
        (_, Some(_)) => Err(bad(toml, "a [documents] table needs kind = \"documents\"")),
        _ => Ok(()),
    }
}

/// Refuses a data migration script that is not exactly one statement in `dialect`
/// (the engine it is about to run on), naming the file.
pub fn check_data_statement(script: &Script, dialect: crate::split::Dialect) -> Result<(), Error> {
    let n = match crate::split::split(&script.sql, dialect) {
        crate::split::Split::Statements(s) => s.len(),
        crate::split::Split::Whole { .. } | crate::split::Split::Unterminated { .. } => 1,
    };
    if n != 1 {
        return Err(Error::BadDataMigration {
            path: script.path.clone(),
            reason: format!("must be exactly one statement, found {n}"),
        });
    }
    Ok(())
}

/// A version, its name, and its forward and reverse scripts.
type Paired = (Version, String, Script, Option<Script>);

/// Groups up/down parts by version; refuses duplicates and orphaned down parts.
fn pair(files: &dyn Files, found: Vec<Found>, layout: Layout) -> Result<Vec<Paired>, Error> {
    let mut ups: BTreeMap<Version, Found> = BTreeMap::new();
    let mut downs: BTreeMap<Version, Found> = BTreeMap::new();
    for f in found {
        let version = if f.version_text.is_empty() && layout == Layout::Flyway {
            Version::repeatable(&f.name)
        } else {
            parse_version(&f, layout)?
        };
        let map = if f.part == Part::Down {
            &mut downs
        } else {
            &mut ups
        };
        if let Some(prev) = map.get(&version) {
            return Err(duplicate(&version, &prev.path, &f.path));
        }
        map.insert(version, f);
    }
    let mut out = Vec::new();
    for (version, d) in &downs {
        if !ups.contains_key(version) {
            return Err(Error::MalformedName {
                path: d.path.clone(),
                reason: format!(
                    "reverse script for version {version}, which has no forward script"
                ),
            });
        }
    }
    for (version, f) in ups {
        let up = read_script(files, &f.path)?;
        let down = downs
            .remove(&version)
            .map(|d| read_script(files, &d.path))
            .transpose()?;
        out.push((version, f.name, up, down));
    }
    Ok(out)
}

/// Reads `<version>_<name>.sql` files: sqlx (and golang-migrate) files, popx
/// files when a name carries a dialect or `.autocommit` suffix, and dbmate or
/// goose files when their contents have those tools' sections.
fn read_sqlx(files: &dyn Files, found: Vec<Found>) -> Result<(Layout, Vec<Migration>), Error> {
    if found.iter().any(|f| f.popx.is_some()) {
        return Ok((Layout::Popx, crate::source_popx::read(files, found)?));
    }
    for f in &found {
        if f.part == Part::Simple
            && found
                .iter()
                .any(|g| g.part != Part::Simple && g.version_text == f.version_text)
        {
            return Err(Error::MalformedName {
                path: f.path.clone(),
                reason: "a version has both a plain .sql file and .up.sql/.down.sql files".into(),
            });
        }
    }
    let paired = pair(files, found, Layout::Sqlx)?;
    let sectioned = |is: fn(&str) -> bool| {
        paired
            .iter()
            .any(|(_, _, up, down)| down.is_none() && is(&up.sql))
    };
    let layout = if sectioned(crate::layouts::is_dbmate) {
        Layout::Dbmate
    } else if sectioned(crate::layouts::is_goose) {
        Layout::Goose
    } else {
        return Ok((
            Layout::Sqlx,
            paired
                .into_iter()
                .map(|(v, n, up, down)| build(v, n, Layout::Sqlx, up, down, Meta::default(), true))
                .collect(),
        ));
    };
    let mut out = Vec::with_capacity(paired.len());
    for (v, n, up, down) in paired {
        let path = up.path.clone();
        let bad = |reason: String| Error::MalformedName {
            path: path.clone(),
            reason,
        };
        if down.is_some() {
            return Err(bad(format!(
                "a {layout} folder holds one file per migration, with both directions in it; this one has .up.sql/.down.sql files"
            )));
        }
        let sections = match layout {
            Layout::Dbmate => crate::layouts::dbmate_sections(&up.sql),
            _ => crate::layouts::goose_sections(&up.sql),
        }
        .map_err(|e| bad(format!("as a {layout} file: {e}")))?;
        let script = |sql: String| Script {
            path: path.clone(),
            sql,
            original: None,
        };
        let mut m = build(
            v,
            n,
            layout,
            script(sections.up),
            sections.down.map(script),
            Meta::default(),
            sections.up_transaction,
        );
        m.down_transaction = Some(sections.down_transaction);
        out.push(m);
    }
    Ok((layout, out))
}

fn read_flyway(
    files: &dyn Files,
    found: Vec<Found>,
    layout: Layout,
) -> Result<Vec<Migration>, Error> {
    Ok(pair(files, found, layout)?
        .into_iter()
        .map(|(v, n, up, down)| build(v, n, layout, up, down, Meta::default(), true))
        .collect())
}

/// Orders migrations topologically over `depends_on`, smallest version first
/// among the ready ones; repeatable migrations go last.
fn order(mut migrations: Vec<Migration>) -> Result<Vec<Migration>, Error> {
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    for w in migrations.windows(2) {
        if w[0].version == w[1].version {
            return Err(duplicate(&w[0].version, &w[0].up.path, &w[1].up.path));
        }
    }
    let (repeatable, versioned): (Vec<_>, Vec<_>) =
        migrations.into_iter().partition(|m| m.is_repeatable());
    let n = versioned.len();
    let index: HashMap<Version, usize> = versioned
        .iter()
        .enumerate()
        .map(|(i, m)| (m.version.clone(), i))
        .collect();
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(n);
    for (i, m) in versioned.iter().enumerate() {
        let d = match &m.meta.depends_on {
            Some(list) => list
                .iter()
                .map(|t| {
                    Version::parse(t, m.layout)
                        .and_then(|v| index.get(&v).copied())
                        .ok_or_else(|| Error::MissingDependency {
                            version: m.version.to_string(),
                            missing: t.clone(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None if i > 0 => vec![i - 1],
            None => vec![],
        };
        deps.push(d);
    }
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in &dependents[i] {
            remaining[k] -= 1;
            if remaining[k] == 0 {
                ready.insert(k);
            }
        }
    }
    if order.len() < n {
        return Err(Error::DependencyCycle {
            cycle: find_cycle(&deps, &remaining)
                .into_iter()
                .map(|i| versioned[i].version.to_string())
                .collect(),
        });
    }
    let mut slots: Vec<Option<Migration>> = versioned.into_iter().map(Some).collect();
    let mut out: Vec<Migration> = order.into_iter().filter_map(|i| slots[i].take()).collect();
    out.extend(repeatable);
    Ok(out)
}

/// Walks dependencies from a node still blocked until one repeats.
fn find_cycle(deps: &[Vec<usize>], remaining: &[usize]) -> Vec<usize> {
    let Some(mut cur) = (0..deps.len()).find(|&i| remaining[i] > 0) else {
        return Vec::new();
    };
    let mut path = Vec::new();
    for _ in 0..=deps.len() {
        if let Some(pos) = path.iter().position(|&p| p == cur) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(cur);
            return cycle;
        }
        path.push(cur);
        match deps[cur].iter().find(|&&d| remaining[d] > 0) {
            Some(&next) => cur = next,
            None => break,
        }
    }
    path
}
