//! Settings: flags > environment > `instar.toml` > defaults, resolved into one
//! plain struct that a CLI, a server or a library can build without clap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use instar_core::duration;
use instar_core::layouts::Pattern;
use instar_core::version::Order;
use instar_core::Layout;
use serde::Deserialize;

use crate::Error;

/// Everything an operation needs to know, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How to connect, and where the history lives.
    pub db: instar_db::Settings,
    /// The migrations folder (used by the default, folder source).
    pub migrations: PathBuf,
    /// A layout to use instead of detecting it.
    pub layout: Option<Layout>,
    /// The file-name pattern of a declared layout.
    pub pattern: Option<Pattern>,
    /// Where the folder source keeps what it last read (`None`: read every file each time).
    pub source_cache: Option<PathBuf>,
    /// How long a run waits for another run's lock.
    pub lock_timeout: Duration,
    /// Whether runs take automatic backups where the engine needs them.
    pub backup: bool,
    /// Where backups go.
    pub backup_dir: PathBuf,
    /// Restore the automatic backup when a non-transactional run fails.
    ///
    /// # Warning
    /// The restore discards what other clients wrote during the run; off by default.
    pub restore_on_failure: bool,
    /// Document collections, by name (`[collections.<name>]`).
    pub collections: std::collections::BTreeMap<String, Collection>,
    /// The application's releases and the schema versions each runs against
    /// (`[compat]`), oldest release first.
    pub compat: Vec<CompatRelease>,
    /// The sandbox of WebAssembly lens stages (`[wasm]`).
    pub wasm: instar_wasm::Limits,
    /// Where compiled WebAssembly modules are cached (`None`: compiled every time).
    pub wasm_cache: Option<PathBuf>,
    /// The migration tests' folder (`instar test`; `[test] dir`, default `tests`).
    pub tests: PathBuf,
    /// Where scratch SQLite files of `instar test` go (`.instar/scratch`).
    pub scratch_dir: PathBuf,
    /// `[fleet]`: the tenant databases `instar fleet` rolls migrations out to.
    pub fleet: Option<crate::fleet::FleetConfig>,
}

impl Settings {
    /// Works in PostgreSQL schema `schema` (schema per tenant): every
    /// connection sets it as the `search_path`, and the history table lives in it.
    pub fn use_schema(&mut self, schema: &str) {
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        self.db
            .init_sql
            .push(format!("SET search_path TO {quoted}"));
        self.db.history_schema = Some(schema.to_string());
    }
}

/// A collection of JSON documents in a table, and the lenses between its versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// The table (optionally `schema.table`).
    pub table: String,
    /// Its key column.
    pub key: String,
    /// Its JSON body column.
    pub body: String,
    /// Its version column; without one, every document has `default_version`.
    pub version_column: Option<String>,
    /// The version of a document without one (default: the first version).
    pub default_version: String,
    /// The versions, oldest first; the last is the one documents are stored at.
    pub versions: Vec<String>,
    /// The folder of its lenses (`<from>--<to>.lens.yaml`).
    pub lenses: PathBuf,
    /// A document read at the current version from an older one is stored upgraded.
    pub write_back: bool,
    /// Every translated document is checked against its version's JSON Schema.
    pub validate: bool,
    /// The folder of declared schemas (`<version>.schema.json`), used with `validate`.
    pub schemas: PathBuf,
    /// Records under a key prefix of a key-value store (`store = "kv"`)
    /// instead of rows of a table.
    pub kv: Option<KvSpec>,
}

/// Where a key-value collection's records are (`store = "kv"`).
#[derive(Debug, Clone, PartialEq)]
pub struct KvSpec {
    /// The key prefix of its records (`task:`).
    pub prefix: String,
    /// How its records are encoded.
    pub encoding: instar_kv::Encoding,
    /// The record field holding its version.
    pub version_field: String,
}

/// `[collections.<name>]` of `instar.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// The table (default: the collection's name).
    pub table: Option<String>,
    /// The key column (default `id`).
    pub key: Option<String>,
    /// The JSON body column (default `doc`).
    pub body: Option<String>,
    /// The version column, if the table has one.
    pub version_column: Option<String>,
    /// The version of a document without one.
    pub default_version: Option<String>,
    /// The versions, oldest first.
    pub versions: Vec<String>,
    /// The lens folder, relative to the file (default `collections/<name>/lenses`).
    pub lenses: Option<PathBuf>,
    /// Store a document read at the current version upgraded (default false).
    #[serde(default)]
    pub write_back: bool,
    /// Check every translated document against its version's JSON Schema (default false).
    #[serde(default)]
    pub validate: bool,
    /// The folder of declared schemas, relative to the file (default `collections/<name>/schemas`).
    pub schemas: Option<PathBuf>,
    /// `"kv"`: records under a key prefix of a key-value store (default `"sql"`: a table).
    pub store: Option<String>,
    /// The key prefix of a key-value collection's records (`store = "kv"`).
    pub prefix: Option<String>,
    /// The encoding of its records: `json` (default) or `msgpack`.
    pub encoding: Option<String>,
    /// The record field holding its version (default `schema_version`).
    pub version_field: Option<String>,
}

fn collection(name: &str, c: CollectionConfig, root: &Path) -> Result<Collection, Error> {
    let bad = |what: String| Error::Config(format!("instar.toml: [collections.{name}] {what}"));
    if c.versions.is_empty() {
        return Err(bad(
            "lists no versions (versions = [\"1.0.0\", \"2.0.0\"])".into()
        ));
    }
    let kv = kv_spec(&c).map_err(bad)?;
    for v in &c.versions {
        if kv.is_some() {
            // Records often carry a plain integer (`"schema_version": 2`).
            if !instar_kv::codec::is_version(v) {
                return Err(bad(format!(
                    "version {v:?} is neither a plain integer nor semver"
                )));
            }
            continue;
        }
        semver::Version::parse(v).map_err(|e| bad(format!("version {v:?} is not semver: {e}")))?;
    }
    let default_version = c.default_version.unwrap_or_else(|| c.versions[0].clone());
    if !c.versions.contains(&default_version) {
        return Err(bad(format!(
            "default_version {default_version:?} is not one of its versions"
        )));
    }
    Ok(Collection {
        table: c.table.unwrap_or_else(|| name.to_string()),
        key: c.key.unwrap_or_else(|| "id".into()),
        body: c.body.unwrap_or_else(|| "doc".into()),
        version_column: c.version_column,
        default_version,
        versions: c.versions,
        lenses: root.join(
            c.lenses
                .unwrap_or_else(|| Path::new("collections").join(name).join("lenses")),
        ),
        write_back: c.write_back,
        validate: c.validate,
        schemas: root.join(
            c.schemas
                .unwrap_or_else(|| Path::new("collections").join(name).join("schemas")),
        ),
        kv,
    })
}

/// A key-value collection's spec, or `None` for a table; table-only keys on
/// a key-value collection (and the reverse) are refused.
fn kv_spec(c: &CollectionConfig) -> Result<Option<KvSpec>, String> {
    match c.store.as_deref().unwrap_or("sql") {
        "sql" => {
            if c.prefix.is_some() || c.encoding.is_some() || c.version_field.is_some() {
                return Err(
                    "prefix, encoding and version_field are for store = \"kv\" collections".into(),
                );
            }
            Ok(None)
        }
        "kv" => {
            if c.table.is_some()
                || c.key.is_some()
                || c.body.is_some()
                || c.version_column.is_some()
            {
                return Err("table, key, body and version_column are for tables; a store = \"kv\" collection has prefix, encoding and version_field".into());
            }
            let prefix = c
                .prefix
                .clone()
                .ok_or("a store = \"kv\" collection needs its key prefix (prefix = \"task:\")")?;
            if prefix.starts_with('\0') {
                return Err(
                    "a prefix starting with a NUL byte is Instar's own (\\0instar/)".into(),
                );
            }
            let encoding = instar_kv::Encoding::parse(c.encoding.as_deref().unwrap_or("json"))?;
            Ok(Some(KvSpec {
                prefix,
                encoding,
                version_field: c
                    .version_field
                    .clone()
                    .unwrap_or_else(|| "schema_version".into()),
            }))
        }
        other => Err(format!(
            "store = {other:?}: sql (a table, the default) or kv (a key prefix)"
        )),
    }
}

/// `[compat]`, checked: each key a release (its last word a version,
/// `1.4` or `1.4.2`), each value a semver requirement. Errors give the file
/// and line.
fn compat(cfg: &FileConfig) -> Result<Vec<CompatRelease>, Error> {
    let at = |key: &str| -> String {
        let Some((path, text)) = &cfg.source else {
            return "instar.toml".into();
        };
        let line = text.lines().position(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("\"{key}\""))
                || l.starts_with(&format!("{key} "))
                || l.starts_with(&format!("{key}="))
        });
        match line {
            Some(n) => format!("{}:{}", path.display(), n + 1),
            None => path.display().to_string(),
        }
    };
    let mut out = Vec::new();
    for (release, req) in &cfg.compat {
        let bad = |what: String| {
            Error::Config(format!(
                "{}: [compat] {release:?} = {req:?}: {what}",
                at(release)
            ))
        };
        let word = release.split_whitespace().last().unwrap_or("");
        let parts: Vec<&str> = word.split('.').collect();
        let padded = match parts.len() {
            1 => format!("{word}.0.0"),
            2 => format!("{word}.0"),
            _ => word.to_string(),
        };
        let version = semver::Version::parse(&padded).map_err(|_| {
            bad(format!(
                "{word:?} is not a release version (write \"1.4\" or \"app 1.4.2\")"
            ))
        })?;
        let requires = semver::VersionReq::parse(req).map_err(|e| {
            bad(format!(
                "not a semver requirement ({e}); write e.g. \">=1.1, <2\""
            ))
        })?;
        out.push(CompatRelease {
            release: release.clone(),
            version,
            requires,
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// The user's cache folder (`$XDG_CACHE_HOME`, else `~/.cache`): compiled
/// code is kept there, never in a project folder someone else may have filled.
fn user_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
}

impl Settings {
    /// Every default, for `url`, with the project rooted at `root`.
    pub fn new(url: impl Into<String>, root: &Path) -> Settings {
        Settings {
            db: instar_db::Settings::new(url),
            migrations: root.join("migrations"),
            layout: None,
            pattern: None,
            source_cache: Some(root.join(".instar").join("cache")),
            lock_timeout: Duration::from_secs(60),
            backup: true,
            backup_dir: root.join(".instar").join("backups"),
            restore_on_failure: false,
            collections: Default::default(),
            compat: Vec::new(),
            wasm: instar_wasm::Limits::default(),
            wasm_cache: user_cache().map(|d| d.join("instar").join("wasm")),
            tests: root.join("tests"),
            scratch_dir: root.join(".instar").join("scratch"),
            fleet: None,
        }
    }
}

/// What the caller's flags say (each `None` defers to the environment, the file, then the default).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--database`.
    pub database: Option<String>,
    /// `--migrations`.
    pub migrations: Option<PathBuf>,
    /// `--config`; without it, `instar.toml` in the working folder when present.
    pub config: Option<PathBuf>,
    /// `--init-sql`, run after the config file's.
    pub init_sql: Vec<String>,
    /// `--lock-timeout`, as written.
    pub lock_timeout: Option<String>,
    /// `--restore-on-failure`.
    pub restore_on_failure: Option<bool>,
    /// `--connect-timeout`, as written.
    pub connect_timeout: Option<String>,
}

/// `instar.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[database]`.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// `[migrations]`.
    #[serde(default)]
    pub migrations: MigrationsConfig,
    /// `[run]`.
    #[serde(default)]
    pub run: RunConfig,
    /// `[collections.<name>]`.
    #[serde(default)]
    pub collections: std::collections::BTreeMap<String, CollectionConfig>,
    /// `[wasm]`.
    #[serde(default)]
    pub wasm: WasmConfig,
    /// `[compat]`: application release → the schema versions it runs against.
    #[serde(default)]
    pub compat: std::collections::BTreeMap<String, String>,
    /// `[test]`.
    #[serde(default)]
    pub test: TestConfig,
    /// `[online]`.
    #[serde(default)]
    pub online: OnlineConfig,
    /// `[fleet]`.
    pub fleet: Option<crate::fleet::FleetFile>,
    /// The file it was read from, and its text (for line numbers).
    #[serde(skip)]
    pub source: Option<(PathBuf, String)>,
}

/// A release of the application and the schema versions it runs against
/// (`[compat]` of `instar.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompatRelease {
    /// The release as declared (`"1.4"`, `"app 1.4"`).
    pub release: String,
    /// Its version, for matching `--app` (the last word, padded: `1.4` → `1.4.0`).
    pub version: semver::Version,
    /// The schema versions it runs against.
    pub requires: semver::VersionReq,
}

/// `[wasm]` of `instar.toml`: the sandbox of WebAssembly lens stages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmConfig {
    /// Fuel per document (about one unit per instruction; default 50,000,000).
    pub fuel: Option<u64>,
    /// Wall-clock limit of one call into a module (default `5s`).
    pub deadline: Option<String>,
    /// A module's memory limit in MiB (default 64).
    pub memory_mb: Option<u64>,
    /// Cache compiled modules in the user's cache folder (default true).
    pub cache: Option<bool>,
}

/// `[database]` of `instar.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The URL.
    pub url: Option<String>,
    /// Statements run on every connection first.
    #[serde(default)]
    pub init_sql: Vec<String>,
    /// The history table's name.
    pub history_table: Option<String>,
    /// The schema (PostgreSQL) or database (MySQL) of the history table.
    pub history_schema: Option<String>,
    /// How long connecting may take (default 10s).
    pub connect_timeout: Option<String>,
}

/// `[migrations]` of `instar.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsConfig {
    /// The folder, relative to the file.
    pub dir: Option<PathBuf>,
    /// `instar`, `diesel`, `sqlx`, `flyway`, `dotted`, `popx`, `dbmate` or `goose`.
    pub layout: Option<String>,
    /// A file-name pattern for any other layout: `{version}.{name}.{direction}.sql`.
    pub pattern: Option<String>,
    /// How a pattern's versions are ordered: `numeric` (default) or `text`.
    pub order: Option<String>,
    /// Keep what was read in `.instar/cache` so an unchanged folder is not read again (default true).
    pub cache: Option<bool>,
}

/// `[run]` of `instar.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// E.g. `30s`.
    pub lock_timeout: Option<String>,
    /// How runs keep each other out: `auto`, `advisory`, `lease` or `none`.
    pub lock: Option<String>,
    /// How long a lease lasts without its heartbeat (default `30s`).
    pub lease: Option<String>,
    /// Automatic backups (default true).
    pub backup: Option<bool>,
    /// Where backups go, relative to the file.
    pub backup_dir: Option<PathBuf>,
    /// Restore the automatic backup after a failed non-transactional run (default false).
    pub restore_on_failure: Option<bool>,
}

/// `[online]` of `instar.toml`: how online DDL waits for table locks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineConfig {
    /// How long one DDL statement waits for a table lock before it is tried
    /// again (default `2s`).
    pub lock_timeout: Option<String>,
    /// Attempts before the step fails (default 10).
    pub lock_attempts: Option<u32>,
}

/// `[test]` of `instar.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// The migration tests' folder, relative to the file (default `tests`).
    pub dir: Option<PathBuf>,
}

/// The process environment, as the settings read it.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Reads the config file: `overrides.config` (relative to `cwd`), else
/// `cwd/instar.toml` when it exists. Returns it and the folder it is in.
pub fn load(overrides: &Overrides, cwd: &Path) -> Result<(FileConfig, PathBuf), Error> {
    let (path, explicit) = match &overrides.config {
        Some(p) => (cwd.join(p), true),
        None => (cwd.join("instar.toml"), false),
    };
    if !path.is_file() {
        if explicit {
            return Err(Error::Config(if path.is_dir() {
                format!(
                    "config file {} is a folder; name the instar.toml inside it",
                    path.display()
                )
            } else {
                format!("config file {} not found", path.display())
            }));
        }
        return Ok((FileConfig::default(), cwd.to_path_buf()));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let mut cfg: FileConfig = toml::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "{}: {}",
            path.display(),
            instar_db::url::redact_text(e.to_string().trim_end())
        ))
    })?;
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    cfg.source = Some((path, text));
    Ok((cfg, root))
}

/// A SQLite or RocksDB URL from the config file names its file relative to
/// the file's folder.
fn relative_to(url: &str, root: &Path) -> String {
    for prefix in ["sqlite://", "sqlite:", "rocksdb://", "rocksdb:"] {
        if let Some(path) = url.strip_prefix(prefix) {
            let (file, query) = path.split_at(path.find('?').unwrap_or(path.len()));
            if file.is_empty() || file == ":memory:" || Path::new(file).is_absolute() {
                return url.to_string();
            }
            return format!("{prefix}{}{query}", root.join(file).display());
        }
    }
    url.to_string()
}

fn parse_duration(what: &str, text: &str) -> Result<Duration, Error> {
    duration::parse(text).map_err(|e| Error::Config(format!("{what}: {e}")))
}

fn layout(cfg: &MigrationsConfig) -> Result<(Option<Layout>, Option<Pattern>), Error> {
    let order = match cfg.order.as_deref() {
        None | Some("numeric") => Order::Numeric,
        Some("text") => Order::Text,
        Some(other) => {
            return Err(Error::Config(format!(
                "instar.toml: [migrations] order {other:?}: numeric or text"
            )))
        }
    };
    if let Some(p) = &cfg.pattern {
        if cfg.layout.as_deref().is_some_and(|l| l != "pattern") {
            return Err(Error::Config(
                "instar.toml: [migrations] has both a layout and a pattern; a pattern is a layout of its own, keep one".into(),
            ));
        }
        let pattern = Pattern::parse(p)
            .map_err(|e| Error::Config(format!("instar.toml: [migrations] {e}")))?;
        return Ok((Some(Layout::Pattern(order)), Some(pattern)));
    }
    if cfg.order.is_some() {
        return Err(Error::Config(
            "instar.toml: [migrations] order applies to a pattern only; each layout orders versions as its tool does".into(),
        ));
    }
    let layout = match cfg.layout.as_deref() {
        None => None,
        Some("instar") => Some(Layout::Instar),
        Some("diesel") => Some(Layout::Diesel),
        Some("sqlx" | "golang-migrate") => Some(Layout::Sqlx),
        Some("flyway" | "refinery") => Some(Layout::Flyway),
        Some("dotted") => Some(Layout::Dotted),
        Some("popx") => Some(Layout::Popx),
        Some("dbmate") => Some(Layout::Dbmate),
        Some("goose") => Some(Layout::Goose),
        Some(other) => {
            return Err(Error::Config(format!(
                "instar.toml: unknown layout {other:?} (instar, diesel, sqlx, golang-migrate, flyway, refinery, dotted, popx, dbmate or goose; any other is declared with pattern = \"{{version}}_{{name}}.{{direction}}.sql\")"
            )))
        }
    };
    Ok((layout, None))
}

/// Resolves the settings: `overrides`, then the environment (`INSTAR_DATABASE_URL`,
/// `DATABASE_URL`), then the config file, then defaults. Relative paths are taken
/// from `cwd` (flags) or from the config file's folder (the file's settings).
pub fn resolve(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Settings, Error> {
    let (cfg, root) = load(overrides, cwd)?;
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let url = overrides
        .database
        .clone()
        .or_else(|| env("INSTAR_DATABASE_URL"))
        .or_else(|| env("DATABASE_URL"))
        .or_else(|| cfg.database.url.as_deref().map(|u| relative_to(u, &root)))
        .unwrap_or_else(|| format!("sqlite:{}", root.join("instar.db").display()));
    let mut s = Settings::new(url, &root);
    s.compat = compat(&cfg)?;
    s.fleet = match cfg.fleet {
        Some(f) => Some(f.resolve(&root)?),
        None => None,
    };
    s.db.init_sql = cfg.database.init_sql.clone();
    s.db.init_sql.extend(overrides.init_sql.iter().cloned());
    if let Some(t) = cfg.database.history_table {
        if t.trim().is_empty() {
            return Err(Error::Config(
                "instar.toml: [database] history_table is empty; name a table, or remove the key for instar_history".into(),
            ));
        }
        s.db.history_table = t;
    }
    s.db.connect_timeout = match (&overrides.connect_timeout, &cfg.database.connect_timeout) {
        (Some(t), _) => parse_duration("--connect-timeout", t)?,
        (None, Some(t)) => parse_duration("instar.toml [database] connect_timeout", t)?,
        (None, None) => Duration::from_secs(10),
    };
    if s.db.connect_timeout.is_zero() {
        return Err(Error::Config(
            "the connect timeout is 0: no server could answer in time; give one of at least 1s (--connect-timeout, [database] connect_timeout), default 10s".into(),
        ));
    }
    s.db.history_schema = cfg.database.history_schema;
    s.migrations = match &overrides.migrations {
        Some(m) => cwd.join(m),
        None => root.join(
            cfg.migrations
                .dir
                .clone()
                .unwrap_or_else(|| "migrations".into()),
        ),
    };
    (s.layout, s.pattern) = layout(&cfg.migrations)?;
    if cfg.migrations.cache == Some(false) {
        s.source_cache = None;
    }
    s.lock_timeout = match (&overrides.lock_timeout, &cfg.run.lock_timeout) {
        (Some(t), _) => parse_duration("--lock-timeout", t)?,
        (None, Some(t)) => parse_duration("instar.toml [run] lock_timeout", t)?,
        (None, None) => Duration::from_secs(60),
    };
    if let Some(t) = &cfg.online.lock_timeout {
        s.db.ddl_lock_timeout = parse_duration("instar.toml [online] lock_timeout", t)?;
        if s.db.ddl_lock_timeout.is_zero() {
            return Err(Error::Config(
                "instar.toml: [online] lock_timeout is 0, which some engines read as \"wait for ever\"; give one of at least 1ms (default 2s)".into(),
            ));
        }
    }
    if let Some(n) = cfg.online.lock_attempts {
        if n == 0 {
            return Err(Error::Config(
                "instar.toml: [online] lock_attempts is 0; give at least 1 (default 10)".into(),
            ));
        }
        s.db.ddl_lock_attempts = n;
    }
    if let Some(l) = &cfg.run.lock {
        s.db.lock = instar_db::lease::LockStrategy::parse(l)
            .map_err(|e| Error::Config(format!("instar.toml [run] {e}")))?;
    }
    if let Some(t) = &cfg.run.lease {
        s.db.lease = parse_duration("instar.toml [run] lease", t)?;
        if s.db.lease < Duration::from_millis(300) {
            return Err(Error::Config(
                "instar.toml: [run] lease is under 300ms: its heartbeat (a third of it) could not keep it; give at least 1s (default 30s)".into(),
            ));
        }
    }
    s.backup = cfg.run.backup.unwrap_or(true);
    if let Some(d) = cfg.run.backup_dir {
        s.backup_dir = root.join(d);
    }
    if let Some(d) = &cfg.test.dir {
        s.tests = root.join(d);
    }
    s.restore_on_failure = overrides
        .restore_on_failure
        .or(cfg.run.restore_on_failure)
        .unwrap_or(false);
    for (name, c) in cfg.collections {
        let c = collection(&name, c, &root)?;
        s.collections.insert(name, c);
    }
    wasm(&mut s, cfg.wasm)?;
    Ok(s)
}

fn wasm(s: &mut Settings, w: WasmConfig) -> Result<(), Error> {
    let bad = |what: &str| Error::Config(format!("instar.toml [wasm] {what}"));
    if let Some(f) = w.fuel {
        if f == 0 {
            return Err(bad("fuel = 0 leaves a module no instruction to run"));
        }
        s.wasm.fuel = f;
    }
    if let Some(d) = w.deadline {
        s.wasm.deadline = parse_duration("instar.toml [wasm] deadline", &d)?;
        if s.wasm.deadline.is_zero() {
            return Err(bad("deadline = 0 stops every module at once"));
        }
    }
    if let Some(m) = w.memory_mb {
        if !(1..=4096).contains(&m) {
            return Err(bad(
                "memory_mb must be from 1 to 4096 (a wasm32 module addresses 4 GiB)",
            ));
        }
        s.wasm.memory = (m as usize) << 20;
    }
    if w.cache == Some(false) {
        s.wasm_cache = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn key_value_collections_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let read = |coll: &str| {
            let text =
                format!("[database]\nurl = \"rocksdb:data/store\"\n[collections.tasks]\n{coll}");
            std::fs::write(d.path().join("instar.toml"), text).unwrap();
            resolve(&Overrides::default(), &no_env, d.path())
        };
        let ok = read("store = \"kv\"\nprefix = \"task:\"\nversions = [\"1\", \"2\"]\n").unwrap();
        assert_eq!(
            ok.db.url,
            format!("rocksdb:{}", d.path().join("data/store").display())
        );
        let kv = ok.collections["tasks"].kv.clone().unwrap();
        assert_eq!(
            (kv.prefix.as_str(), kv.version_field.as_str()),
            ("task:", "schema_version")
        );
        for (coll, says) in [
            (
                "store = \"kv\"\nversions = [\"1\"]\n",
                "needs its key prefix",
            ),
            (
                "store = \"kv\"\nprefix = \"t:\"\ntable = \"t\"\nversions = [\"1\"]\n",
                "table, key, body and version_column are for tables",
            ),
            (
                "store = \"kv\"\nprefix = \"t:\"\nencoding = \"bincode\"\nversions = [\"1\"]\n",
                "bincode records carry no field names",
            ),
            (
                "store = \"kv\"\nprefix = \"t:\"\nversions = [\"one\"]\n",
                "neither a plain integer nor semver",
            ),
            (
                "prefix = \"t:\"\nversions = [\"1.0.0\"]\n",
                "are for store = \"kv\" collections",
            ),
            (
                "store = \"redis\"\nversions = [\"1.0.0\"]\n",
                "store = \"redis\"",
            ),
        ] {
            let e = read(coll).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains("[collections.tasks]"),
                "{coll}: {e}"
            );
        }
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let d = tempfile::tempdir().unwrap();
        let defaults = resolve(&Overrides::default(), &no_env, d.path()).unwrap();
        assert!(defaults.db.url.ends_with("instar.db"));
        assert_eq!(defaults.lock_timeout, Duration::from_secs(60));
        assert!(!defaults.restore_on_failure);
        std::fs::write(
            d.path().join("instar.toml"),
            "[database]\nurl = \"sqlite:file.db\"\n[run]\nlock_timeout = \"5m\"\n",
        )
        .unwrap();
        let file = resolve(&Overrides::default(), &no_env, d.path()).unwrap();
        assert_eq!(
            file.db.url,
            format!("sqlite:{}", d.path().join("file.db").display())
        );
        assert_eq!(file.lock_timeout, Duration::from_secs(300));
        let env = |k: &str| (k == "DATABASE_URL").then(|| "sqlite:env.db".to_string());
        assert_eq!(
            resolve(&Overrides::default(), &env, d.path())
                .unwrap()
                .db
                .url,
            "sqlite:env.db"
        );
        let flags = Overrides {
            database: Some("sqlite:flag.db".into()),
            lock_timeout: Some("2s".into()),
            ..Overrides::default()
        };
        let f = resolve(&flags, &env, d.path()).unwrap();
        assert_eq!(f.db.url, "sqlite:flag.db");
        assert_eq!(f.lock_timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_config_syntax_error_never_shows_the_password() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("instar.toml"),
            "[database]\nurl = \"postgres://app:hunter2@db/prod\" oops\n",
        )
        .unwrap();
        let e = resolve(&Overrides::default(), &no_env, d.path())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2") && e.contains("instar.toml"), "{e}");
        std::fs::write(
            d.path().join("instar.toml"),
            "[database]\nhistory_table = \"\"\n",
        )
        .unwrap();
        let e = resolve(&Overrides::default(), &no_env, d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("history_table is empty"), "{e}");
    }

    #[test]
    fn bad_durations_are_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["99999999999999999999s", "-5s", "1e3s", ""] {
            let o = Overrides {
                lock_timeout: Some(bad.into()),
                ..Overrides::default()
            };
            let e = resolve(&o, &no_env, d.path()).unwrap_err().to_string();
            assert!(e.contains("--lock-timeout"), "{bad}: {e}");
        }
    }
}
