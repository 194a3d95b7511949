//! `instar test`: migration tests. Each `tests/*.toml` file of the project
//! loads fixtures (SQL, documents) at one version, migrates to another (and
//! optionally back), and checks the result with SQL assertions and expected
//! documents — on a scratch database created for it and dropped after it,
//! never on the configured one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use instar_core::event::NullSink;
use instar_core::plan::Target;
use instar_db::scratch::{self, Scratch};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, RunRequest, Service};

/// One test file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// What it shows.
    description: Option<String>,
    /// The version the fixtures are loaded at (default: an empty database).
    from: Option<String>,
    /// The version migrated to (default: the newest).
    to: Option<String>,
    /// Then migrate back down to `from` and run `[[assert_down]]`.
    #[serde(default)]
    down: bool,
    /// SQL run at `from`.
    fixture: Option<String>,
    /// A file of SQL run at `from`, relative to the test file.
    fixture_file: Option<PathBuf>,
    #[serde(default)]
    documents: Vec<FixtureDocument>,
    #[serde(default)]
    assert: Vec<Assertion>,
    #[serde(default)]
    expect: Vec<ExpectedDocument>,
    #[serde(default)]
    assert_down: Vec<Assertion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureDocument {
    collection: String,
    key: String,
    /// The version it was written at.
    version: String,
    body: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assertion {
    /// A name for the report (default: the query).
    name: Option<String>,
    /// A query returning one true value.
    sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedDocument {
    collection: String,
    key: String,
    /// Read at this version (default: the collection's current one).
    version: Option<String>,
    /// The document expected; `null`: no document under the key.
    body: Value,
}

/// What one test did.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// The test's name (its file name without `.toml`).
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// Its description.
    pub description: Option<String>,
    /// Whether every step and assertion passed.
    pub passed: bool,
    /// Assertions that held, by name.
    pub passed_assertions: Vec<String>,
    /// What failed (a step's error, or an assertion with what it returned).
    pub failures: Vec<String>,
    /// Milliseconds it took.
    pub duration_ms: u64,
    /// The scratch database it ran on (dropped after, unless kept).
    pub scratch: Option<String>,
}

/// What `instar test` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TestReport {
    /// The tests, in file-name order.
    pub tests: Vec<TestResult>,
    /// Scratch databases a killed earlier run left behind, dropped first.
    pub cleaned: Vec<String>,
}

impl TestReport {
    /// Whether every test passed.
    pub fn passed(&self) -> bool {
        self.tests.iter().all(|t| t.passed)
    }

    /// The report as JUnit XML (one `testsuite`, a `testcase` per test, a
    /// `failure` per failed one).
    pub fn junit(&self) -> String {
        let failed = self.tests.iter().filter(|t| !t.passed).count();
        let secs: f64 = self.tests.iter().map(|t| t.duration_ms as f64).sum::<f64>() / 1000.0;
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x += &format!(
            "<testsuites name=\"instar\" tests=\"{}\" failures=\"{failed}\" time=\"{secs:.3}\">\n  <testsuite name=\"migrations\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{secs:.3}\">\n",
            self.tests.len(),
            self.tests.len()
        );
        for t in &self.tests {
            x += &format!(
                "    <testcase name=\"{}\" classname=\"migrations\" file=\"{}\" time=\"{:.3}\"",
                xml(&t.name),
                xml(&t.file.display().to_string()),
                t.duration_ms as f64 / 1000.0
            );
            if t.passed {
                x += "/>\n";
                continue;
            }
            let first = t.failures.first().map(String::as_str).unwrap_or("failed");
            x += &format!(
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                xml(first.lines().next().unwrap_or(first)),
                xml(&t.failures.join("\n"))
            );
        }
        x += "  </testsuite>\n</testsuites>\n";
        x
    }
}

fn xml(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => " ".into(),
            c => c.to_string(),
        })
        .collect()
}

/// The line and column of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Reads and checks one test file; an error names the file, line and column.
fn parse(file: &Path) -> Result<TestFile, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read it: {e}", file.display()))?;
    let t: TestFile = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |s| line_col(&text, s.start));
        format!("{}:{line}:{col}: {}", file.display(), e.message())
    })?;
    let at = |needle: &str| {
        let line = text.lines().position(|l| l.contains(needle)).unwrap_or(0) + 1;
        format!("{}:{line}", file.display())
    };
    if t.fixture.is_some() && t.fixture_file.is_some() {
        return Err(format!(
            "{}: fixture and fixture_file both given; keep one (or put the file's SQL in fixture)",
            at("fixture_file")
        ));
    }
    if t.down && t.assert_down.is_empty() {
        return Err(format!(
            "{}: down = true but no [[assert_down]]: say what must hold after migrating back",
            at("down")
        ));
    }
    if t.assert.is_empty() && t.expect.is_empty() {
        return Err(format!(
            "{}: no [[assert]] and no [[expect]]: a test must check something",
            file.display()
        ));
    }
    for d in &t.documents {
        if !d.body.is_object() {
            return Err(format!(
                "{}: document {:?} of {}: body is a JSON object (a TOML table)",
                at(&d.key),
                d.key,
                d.collection
            ));
        }
    }
    Ok(t)
}

/// Options of `instar test`.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Run only tests whose name contains this.
    pub filter: Option<String>,
    /// Keep each scratch database (its URL is printed) instead of dropping it.
    pub keep: bool,
}

impl Service {
    /// The test files of the project, in name order.
    pub fn test_files(&self) -> Result<Vec<PathBuf>, Error> {
        let dir = &self.settings().tests;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Config(format!("cannot read {}: {e}", dir.display()))),
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Runs the project's migration tests, each on its own scratch database;
    /// `each` sees every result as it is known. Scratch databases that an
    /// earlier, killed run left behind are dropped first.
    pub async fn test(
        &self,
        opts: &TestOptions,
        each: &mut dyn FnMut(&TestResult),
    ) -> Result<TestReport, Error> {
        let url = &self.settings().db.url;
        let scratch_dir = &self.settings().scratch_dir;
        // Scratch databases are the project's: named by its tests folder and database.
        let project = format!("{}|{}", self.settings().tests.display(), url);
        let mut report = TestReport {
            cleaned: scratch::clean_leftovers(url, scratch_dir, &project).await?,
            ..Default::default()
        };
        for file in self.test_files()? {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if opts.filter.as_ref().is_some_and(|f| !name.contains(f)) {
                continue;
            }
            let started = Instant::now();
            let mut r = TestResult {
                name,
                file: file.clone(),
                description: None,
                passed: false,
                passed_assertions: Vec::new(),
                failures: Vec::new(),
                duration_ms: 0,
                scratch: None,
            };
            match parse(&file) {
                Err(e) => r.failures.push(e),
                Ok(t) => {
                    r.description = t.description.clone();
                    let scratch = Scratch::create(url, scratch_dir, &project, opts.keep).await?;
                    r.scratch = Some(scratch.name.clone());
                    self.run_test(&t, &file, &scratch.url, &mut r).await;
                    if opts.keep {
                        r.passed_assertions.push(format!(
                            "scratch database kept: {}",
                            instar_db::url::redact(&scratch.url)
                        ));
                    } else {
                        scratch.remove().await?;
                    }
                }
            }
            r.passed = r.failures.is_empty();
            r.duration_ms = started.elapsed().as_millis() as u64;
            each(&r);
            report.tests.push(r);
        }
        Ok(report)
    }

    /// The steps of one test on the scratch database at `url`; what fails is
    /// recorded in `r` (a step's failure ends the test).
    async fn run_test(&self, t: &TestFile, file: &Path, url: &str, r: &mut TestResult) {
        let mut settings = self.settings().clone();
        settings.db.url = url.to_string();
        settings.backup = false;
        let scratch = self.with_settings(settings);
        if let Err(e) = scratch.test_steps(t, file, r).await {
            r.failures.push(e);
        }
    }

    async fn migrate_to(&self, target: Target, what: &str) -> Result<(), String> {
        let req = RunRequest::new(target);
        let run_id = instar_db::new_run_id();
        self.run(&req, &run_id, instar_db::CancelToken::new(), &mut NullSink)
            .await
            .map(|_| ())
            .map_err(|f| format!("{what}: {}", f.error))
    }

    async fn test_steps(
        &self,
        t: &TestFile,
        file: &Path,
        r: &mut TestResult,
    ) -> Result<(), String> {
        let shown = file.display().to_string();
        if let Some(from) = &t.from {
            self.migrate_to(
                Target::Up {
                    to: Some(from.clone()),
                },
                &format!("migrating up to {from}"),
            )
            .await?;
        }
        let fixture = match (&t.fixture, &t.fixture_file) {
            (Some(sql), _) => Some((sql.clone(), shown.clone())),
            (None, Some(f)) => {
                let path = file.parent().unwrap_or(Path::new(".")).join(f);
                let sql = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{shown}: fixture_file {}: {e}", path.display()))?;
                Some((sql, path.display().to_string()))
            }
            (None, None) => None,
        };
        if let Some((sql, origin)) = fixture {
            let mut db = self.connect().await.map_err(|e| e.to_string())?;
            let ran = db.run_script(&sql, &format!("{origin} (fixture)")).await;
            let _ = db.close().await;
            ran.map_err(|e| e.to_string())?;
        }
        for d in &t.documents {
            let docs = self
                .documents(&d.collection)
                .map_err(|e| format!("{shown}: {e}"))?;
            docs.put_as_written(&d.key, &d.body, &d.version)
                .await
                .map_err(|e| format!("{shown}: fixture document {:?}: {e}", d.key))?;
        }
        let to = t.to.clone();
        let label = to.clone().unwrap_or_else(|| "the newest version".into());
        self.migrate_to(Target::Up { to }, &format!("migrating up to {label}"))
            .await?;
        self.assertions(&t.assert, r).await?;
        for e in &t.expect {
            self.expectation(e, r).await?;
        }
        if t.down {
            let target = match &t.from {
                Some(from) => Target::Down {
                    to: Some(from.clone()),
                    steps: None,
                },
                None => Target::Down {
                    to: None,
                    steps: Some(usize::MAX),
                },
            };
            let back = t.from.clone().unwrap_or_else(|| "an empty database".into());
            self.migrate_to(target, &format!("migrating back down to {back}"))
                .await?;
            self.assertions(&t.assert_down, r).await?;
        }
        Ok(())
    }

    async fn assertions(&self, list: &[Assertion], r: &mut TestResult) -> Result<(), String> {
        let mut db = self.connect().await.map_err(|e| e.to_string())?;
        for a in list {
            let name = a.name.clone().unwrap_or_else(|| a.sql.trim().to_string());
            match db.check_query(&a.sql, &format!("assertion {name:?}")).await {
                Ok((true, _)) => r.passed_assertions.push(name),
                Ok((false, got)) => r.failures.push(format!(
                    "assertion {name:?} returned {got}, not true\n  query: {}",
                    a.sql.trim()
                )),
                Err(e) => r.failures.push(e.to_string()),
            }
        }
        let _ = db.close().await;
        Ok(())
    }

    async fn expectation(&self, e: &ExpectedDocument, r: &mut TestResult) -> Result<(), String> {
        let docs = self.documents(&e.collection).map_err(|x| x.to_string())?;
        let at = e.version.as_deref();
        let shown_at = at.unwrap_or(docs.current()).to_string();
        let name = format!("{} {:?} at {shown_at}", e.collection, e.key);
        match docs.get(&e.key, at).await {
            Err(x) => r.failures.push(format!("reading {name}: {x}")),
            Ok(got) => {
                let got = got.unwrap_or(Value::Null);
                if got == e.body {
                    r.passed_assertions.push(name);
                } else {
                    r.failures
                        .push(format!("{name}: expected {}, got {got}", e.body));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_file_is_named_with_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "from = \"1\"\nto = 2x\n").unwrap();
        let e = parse(&f).unwrap_err();
        assert!(e.contains("bad.toml:2:"), "{e}");
        std::fs::write(
            &f,
            "from = \"1\"\nsurprise = true\n[[assert]]\nsql = \"SELECT 1\"\n",
        )
        .unwrap();
        let e = parse(&f).unwrap_err();
        assert!(e.contains("bad.toml:2:1") && e.contains("surprise"), "{e}");
        std::fs::write(&f, "down = true\n[[assert]]\nsql = \"SELECT 1\"\n").unwrap();
        assert!(parse(&f).unwrap_err().contains("bad.toml:1: down = true"));
        std::fs::write(&f, "from = \"1\"\n").unwrap();
        assert!(parse(&f).unwrap_err().contains("must check something"));
    }

    #[test]
    fn junit_escapes_and_counts_failures() {
        let report = TestReport {
            tests: vec![
                TestResult {
                    name: "a<b".into(),
                    file: "tests/a.toml".into(),
                    description: None,
                    passed: false,
                    passed_assertions: vec![],
                    failures: vec!["assertion \"x\" returned 'f' & more".into()],
                    duration_ms: 1500,
                    scratch: None,
                },
                TestResult {
                    name: "ok".into(),
                    file: "tests/ok.toml".into(),
                    description: None,
                    passed: true,
                    passed_assertions: vec!["y".into()],
                    failures: vec![],
                    duration_ms: 10,
                    scratch: None,
                },
            ],
            cleaned: vec![],
        };
        let x = report.junit();
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(x.contains("name=\"a&lt;b\""), "{x}");
        assert!(x.contains("&apos;f&apos; &amp; more"), "{x}");
        assert!(x.contains("<testcase name=\"ok\" classname=\"migrations\" file=\"tests/ok.toml\" time=\"0.010\"/>"), "{x}");
    }
}
