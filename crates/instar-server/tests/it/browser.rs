//! The web console in a real browser: Debian's Chromium driven over
//! WebDriver (chromedriver), a screenshot of each step saved under the
//! test's temp dir. Without the browser the test prints a SKIPPED line, and
//! fails with CI=true (`.ci/run` installs it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::call;
use crate::{start, with_token, Project};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    async fn start(profile: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = d.send("POST", "/session", &caps).await;
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        d
    }

    async fn send(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let r = call(self.addr, method, path, &[], &body).await;
        serde_json::from_str::<Value>(&r.body).map_or(Value::Null, |v| v["value"].clone())
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.send(method, &format!("/session/{}{path}", self.session), &body)
            .await
    }

    /// Runs JavaScript in the page and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn element(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// Waits (up to 60 s) until `script` returns something truthy; its value.
    async fn until(&self, what: &str, script: &str) -> Value {
        for _ in 0..600 {
            let v = self.js(script).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the console never showed {what}");
    }

    /// A browser on the console at `addr`, and the folder for screenshots.
    async fn console(p: &Project, addr: SocketAddr) -> (Driver, PathBuf) {
        let shots = p.dir.path().join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let d = Driver::start(&p.dir.path().join("profile")).await;
        d.cmd("POST", "/url", json!({"url": format!("http://{addr}/")}))
            .await;
        (d, shots)
    }

    /// Types the token into its field and clicks `button`.
    async fn click_with_token(&self, button: &str) {
        let token = self.element("#token").await.expect("token field");
        self.cmd(
            "POST",
            &format!("/element/{token}/value"),
            json!({"text": "s3cret-token"}),
        )
        .await;
        let b = self.element(button).await.expect("the button");
        self.cmd("POST", &format!("/element/{b}/click"), json!({}))
            .await;
    }

    async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let v = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = base64(v.as_str().expect("a screenshot"));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

fn browser_present() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(DRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {CHROMIUM} or {DRIVER} is missing: .ci/run installs chromium and chromium-driver"
    );
    println!("SKIPPED console browser test: {CHROMIUM} or {DRIVER} is not installed (apt install chromium chromium-driver)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_pending_migrations_and_shows_their_progress() {
    if !browser_present() {
        return;
    }
    let p = Project::new(&[
        (
            "0001_t",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000) INSERT INTO t SELECT i, 0 FROM c;",
            "",
        ),
        (
            "0002_fill",
            "UPDATE t SET v = id * 2 WHERE {batch}",
            "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 250\npause = \"40ms\"\n",
        ),
        ("0003_done", "CREATE TABLE done (x INTEGER);", ""),
    ]);
    let (addr, _) = start(p.service(), with_token()).await;
    let (d, shots) = Driver::console(&p, addr).await;

    // 1. The pending migrations, with their SQL.
    d.until(
        "three pending migrations",
        "return document.querySelectorAll('.pending-migration').length === 3",
    )
    .await;
    let sql = d
        .js("return document.querySelector('#pending').textContent")
        .await;
    assert!(
        sql.as_str().unwrap().contains("UPDATE t SET v = id * 2"),
        "{sql}"
    );
    d.screenshot(&shots, "1-pending").await;

    // 2. Run them with the token; the data migration's progress moves.
    d.click_with_token("#run").await;
    let first = d
        .until(
            "rows of the data migration",
            "const e = document.querySelector('.migration-progress[data-version=\"0002\"] .rows'); return e && !e.textContent.startsWith('0 /') && e.textContent",
        )
        .await;
    let later = d
        .until(
            "the progress moving",
            &format!("const e = document.querySelector('.migration-progress[data-version=\"0002\"] .rows'); return e && e.textContent !== {first} && e.textContent"),
        )
        .await;
    assert_ne!(first, later);
    d.screenshot(&shots, "2-progress").await;

    // 3. The run ends, and shows in the timeline.
    d.until(
        "the run finished",
        "const e = document.querySelector('#run-state'); return e && e.textContent === 'finished'",
    )
    .await;
    d.screenshot(&shots, "3-finished").await;
    d.until(
        "the run in the timeline",
        "return [...document.querySelectorAll('.timeline-run')].some(r => r.textContent.includes('0002') && r.textContent.includes('20000 rows'))",
    )
    .await;
    d.until(
        "nothing pending",
        "return document.querySelector('#pending').textContent.includes('up to date')",
    )
    .await;
    d.screenshot(&shots, "4-timeline").await;
    let pending = call(addr, "GET", "/migrations/pending", &[], "")
        .await
        .json();
    assert_eq!(pending["pending"].as_array().unwrap().len(), 0);
    keep_screenshots(&shots);
}

/// Keeps the screenshots for a look after the run, when asked to.
fn keep_screenshots(shots: &Path) {
    if let Ok(keep) = std::env::var("INSTAR_KEEP_SCREENSHOTS") {
        for f in std::fs::read_dir(shots).unwrap().flatten() {
            let _ = std::fs::copy(f.path(), Path::new(&keep).join(f.file_name()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_rolls_out_to_the_fleet_and_shows_every_tenant() {
    if !browser_present() {
        return;
    }
    // Twelve tenant files; each tenant's data migration takes a moment.
    let p = Project::new(&[
        (
            "0001_t",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000) INSERT INTO t SELECT i, 0 FROM c;",
            "",
        ),
        (
            "0002_fill",
            "UPDATE t SET v = id * 2 WHERE {batch}",
            "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 200\npause = \"30ms\"\n",
        ),
    ]);
    let tenants = p.dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    for i in 1..=12 {
        std::fs::write(tenants.join(format!("t{i:02}.db")), b"").unwrap();
    }
    // One tenant has a table `t` of its own: its first migration fails.
    rusqlite::Connection::open(tenants.join("t07.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (other TEXT);")
        .unwrap();
    let mut settings = p.service().settings().clone();
    let fleet = instar_service::fleet::FleetFile {
        glob: Some("tenants/*.db".into()),
        parallel: Some(2),
        ..Default::default()
    };
    settings.fleet = Some(fleet.resolve(p.dir.path()).unwrap());
    let (addr, _) = start(instar_service::Service::new(settings), with_token()).await;
    let (d, shots) = Driver::console(&p, addr).await;

    // 1. The grid: a cell per tenant, all pending.
    d.until(
        "twelve pending tenants",
        "return document.querySelectorAll('#fleet-grid .cell[data-state=\"pending\"]').length === 12",
    )
    .await;
    d.screenshot(&shots, "fleet-1-pending").await;

    // 2. Roll out with the token: tenants run, then end done or failed.
    d.click_with_token("#fleet-run").await;
    d.until(
        "a running tenant",
        "return document.querySelectorAll('#fleet-grid .cell[data-state=\"running\"]').length > 0",
    )
    .await;
    d.screenshot(&shots, "fleet-2-running").await;
    let outcome = d
        .until(
            "the rollout's outcome",
            "const e = document.querySelector('#fleet-outcome'); return e && e.textContent",
        )
        .await;
    assert!(
        outcome.as_str().unwrap().contains("11 done now"),
        "{outcome}"
    );
    let cells = d
        .js("return [...document.querySelectorAll('#fleet-grid .cell')].map(c => c.dataset.state + ' ' + c.title)")
        .await;
    let cells: Vec<&str> = cells
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        cells.iter().filter(|c| c.starts_with("done ")).count(),
        11,
        "{cells:?}"
    );
    let failed: Vec<&&str> = cells.iter().filter(|c| c.starts_with("failed ")).collect();
    assert_eq!(failed.len(), 1, "{cells:?}");
    assert!(
        failed[0].contains("tenants/t07.db") && failed[0].contains("0001"),
        "{failed:?}"
    );
    d.screenshot(&shots, "fleet-3-done").await;
    // The page's view is the state file's.
    let grid = call(addr, "GET", "/fleet/targets", &[], "").await.json();
    let done = grid["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "done")
        .count();
    assert_eq!(done, 11, "{grid}");
    keep_screenshots(&shots);
}
