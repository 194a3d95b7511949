//! The endpoints, their access rules and their errors; runs over HTTP with
//! live, replayable events; cancel and resume; two runs at once.

use instar_server::routes::ROUTES;
use instar_server::Config;
use serde_json::Value;

use crate::client::{call, Events};
use crate::{start, with_token, Project};

const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-token");

/// A table of `rows` rows, then a data migration over it that takes a while
/// (batches of 100 with a pause between them).
fn slow_project(rows: u32) -> Project {
    Project::new(&[
        (
            "0001_t",
            &format!("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows}) INSERT INTO t SELECT i, 0 FROM c;"),
            "",
        ),
        (
            "0002_fill",
            "UPDATE t SET v = id * 2 WHERE {batch}",
            "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 100\npause = \"15ms\"\n",
        ),
        ("0003_after", "CREATE TABLE done (x INTEGER);", ""),
    ])
}

fn small_project() -> Project {
    Project::new(&[
        ("0001_a", "CREATE TABLE a (x INTEGER);", ""),
        ("0002_b", "CREATE TABLE b (x INTEGER);", ""),
    ])
}

#[tokio::test]
async fn the_openapi_document_is_the_route_table_and_every_route_answers() {
    let p = small_project();
    let (addr, _) = start(p.service(), with_token()).await;
    let doc = call(addr, "GET", "/openapi.json", &[], "").await.json();
    let paths = doc["paths"].as_object().unwrap();
    let mut listed = 0;
    for r in ROUTES {
        assert!(
            paths[r.path].get(r.method.to_ascii_lowercase()).is_some(),
            "{} {} is in the document",
            r.method,
            r.path
        );
        listed += 1;
        // Every route exists (whatever it answers, it is not "no route").
        let path = r
            .path
            .replace("{version}", "0001")
            .replace("{run_id}", "r-none")
            .replace("{collection}", "none")
            .replace("{key}", "1");
        let reply = call(
            addr,
            r.method,
            &path,
            &[AUTH],
            if r.method == "GET" { "" } else { "{}" },
        )
        .await;
        assert!(
            !reply.body.contains("no route"),
            "{} {path}: {}",
            r.method,
            reply.body
        );
    }
    let documented: usize = paths.values().map(|m| m.as_object().unwrap().len()).sum();
    assert_eq!(documented, listed, "nothing documented that is not served");
}

#[tokio::test]
async fn tokens_guard_every_change() {
    let p = small_project();
    // Without a token the server changes nothing.
    let (open, _) = start(p.service(), Config::default()).await;
    let r = call(open, "POST", "/migrations/execute-all", &[], "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("--token-file"), "{}", r.body);
    assert_eq!(call(open, "GET", "/status", &[], "").await.status, 200);

    let (addr, _) = start(p.service(), with_token()).await;
    let r = call(addr, "POST", "/migrations/execute-all", &[], "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "unauthorized");
    let r = call(
        addr,
        "POST",
        "/migrations/execute-all",
        &[("Authorization", "Bearer s3cret-tokeN")],
        "",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("wrong"), "{}", r.body);
    // Reads are open unless the server says otherwise; a token on a read is fine.
    assert_eq!(
        call(addr, "GET", "/migrations/pending", &[AUTH], "")
            .await
            .status,
        200
    );
    assert_eq!(
        call(addr, "GET", "/migrations/pending", &[], "")
            .await
            .status,
        200
    );

    let closed = Config {
        require_token_for_reads: true,
        ..with_token()
    };
    let (addr, _) = start(p.service(), closed).await;
    assert_eq!(call(addr, "GET", "/status", &[], "").await.status, 401);
    assert_eq!(call(addr, "GET", "/status", &[AUTH], "").await.status, 200);
    assert_eq!(call(addr, "GET", "/health", &[], "").await.status, 200);

    // A non-loopback address without a token is refused before binding.
    let c = Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Config::default()
    };
    let e = instar_server::bind(&c).await.unwrap_err().to_string();
    assert!(e.contains("without a token"), "{e}");
}

#[tokio::test]
async fn bad_requests_are_named() {
    let p = small_project();
    let (addr, _) = start(p.service(), with_token()).await;
    let r = call(addr, "GET", "/nope", &[], "").await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = call(addr, "POST", "/migrations/execute/0099", &[AUTH], "").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("0099"), "{}", r.body);
    let r = call(addr, "POST", "/runs", &[AUTH], "{\"direction\": 1}").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("field `direction`"), "{}", r.body);
    let r = call(addr, "POST", "/runs", &[AUTH], "{\"steps\": ").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(addr, "POST", "/runs", &[AUTH], "{\"stepz\": 1}").await;
    assert!(r.status == 400 && r.body.contains("stepz"), "{}", r.body);
    let big = format!("{{\"to\": \"{}\"}}", "x".repeat(2 << 20));
    let r = call(addr, "POST", "/runs", &[AUTH], &big).await;
    assert_eq!(r.status, 413, "{}", &r.body[..r.body.len().min(200)]);
    let r = call(addr, "GET", "/runs/r-missing", &[], "").await;
    assert_eq!(r.status, 404);
    let r = call(addr, "DELETE", "/status", &[], "").await;
    assert_eq!(r.status, 405, "{}", r.body);
    // A dry run plans, with the SQL, and changes nothing.
    let r = call(addr, "POST", "/runs", &[AUTH], "{\"dry_run\": true}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("CREATE TABLE a"), "{}", r.body);
    let pending = call(addr, "GET", "/migrations/pending", &[], "")
        .await
        .json();
    assert_eq!(pending["pending"].as_array().unwrap().len(), 2);
}

/// Starts every pending migration over HTTP; the run's id.
async fn execute_all(addr: std::net::SocketAddr) -> String {
    let r = call(addr, "POST", "/migrations/execute-all", &[AUTH], "").await;
    assert_eq!(r.status, 202, "{}", r.body);
    r.json()["run_id"].as_str().unwrap().to_string()
}

/// Waits (bounded) until the run is no longer running; its view.
async fn finished(addr: std::net::SocketAddr, id: &str) -> Value {
    for _ in 0..600 {
        let v = call(addr, "GET", &format!("/runs/{id}"), &[], "")
            .await
            .json();
        if v["outcome"]["state"] != "running" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("run {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_http_streams_its_events_and_a_second_one_waits_its_turn() {
    let p = slow_project(6000);
    let (addr, _) = start(p.service(), with_token()).await;
    let (a, b) = tokio::join!(
        call(addr, "POST", "/migrations/execute-all", &[AUTH], ""),
        call(addr, "POST", "/migrations/execute-all", &[AUTH], "")
    );
    let mut codes = [a.status, b.status];
    codes.sort_unstable();
    assert_eq!(codes, [202, 409], "{} / {}", a.body, b.body);
    let (ok, busy) = if a.status == 202 { (a, b) } else { (b, a) };
    let id = ok.json()["run_id"].as_str().unwrap().to_string();
    assert_eq!(busy.json()["error"]["run_id"], id.as_str());

    // Follow it, drop the connection part way, reconnect with Last-Event-ID.
    let path = format!("/runs/{id}/events");
    let mut ev = Events::open(addr, &path, &[]).await;
    let mut last = 0;
    for _ in 0..5 {
        let (seq, data) = ev.next().await.expect("an event");
        assert_eq!(seq, last + 1, "no gap");
        assert_eq!(data["run_id"], id.as_str());
        last = seq;
    }
    drop(ev);
    let progress = call(addr, "GET", &format!("/migrations/progress/{id}"), &[], "")
        .await
        .json();
    assert_eq!(progress["outcome"]["state"], "running", "{progress}");
    let running = call(addr, "GET", "/migrations/running", &[], "")
        .await
        .json();
    assert_eq!(running["running"][0]["run_id"], id.as_str());
    let since = last.to_string();
    let mut ev = Events::open(addr, &path, &[("Last-Event-ID", &since)]).await;
    let mut kinds = Vec::new();
    let mut saw_batch = false;
    while let Some((seq, data)) = ev.next().await {
        assert_eq!(seq, last + 1, "replayed from after {since} with no gap");
        last = seq;
        saw_batch |= data["event"] == "batch_finished";
        kinds.push(data["event"].as_str().unwrap_or("").to_string());
    }
    assert!(saw_batch, "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("run_finished"),
        "{kinds:?}"
    );
    let v = finished(addr, &id).await;
    assert_eq!(v["outcome"]["state"], "finished", "{v}");
    let fill = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == "0002")
        .cloned()
        .unwrap();
    assert_eq!(fill["rows_done"], 6000, "{v}");
    assert_eq!(
        call(addr, "GET", "/migrations/pending", &[], "")
            .await
            .json()["pending"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let metrics = call(addr, "GET", "/metrics", &[], "").await.body;
    assert!(metrics.contains("instar_runs_started_total 1"), "{metrics}");
    assert!(
        metrics.contains("instar_rows_migrated_total 6000"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_stops_at_a_checkpoint_and_resumes_later() {
    let p = slow_project(6000);
    let service = p.service();
    let (addr, _) = start(service.clone(), with_token()).await;
    let id = execute_all(addr).await;
    let mut ev = Events::open(addr, &format!("/runs/{id}/events"), &[]).await;
    while let Some((_, data)) = ev.next().await {
        if data["event"] == "batch_finished" {
            break;
        }
    }
    let r = call(addr, "POST", &format!("/runs/{id}/cancel"), &[AUTH], "").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v = finished(addr, &id).await;
    assert_eq!(v["outcome"]["report"]["cancelled"], true, "{v}");
    let status = call(addr, "GET", "/status", &[], "").await.json();
    let cps = status["checkpoints"].as_array().unwrap();
    assert_eq!(cps.len(), 1, "{status}");
    let done = cps[0]["rows_done"].as_i64().unwrap();
    assert!(done > 0 && done < 6000, "{status}");
    // Later, the CLI's way (the same service): it resumes after the checkpoint.
    let report = service
        .start(instar_service::RunRequest::up())
        .wait()
        .await
        .unwrap();
    assert!(
        report.migrations.contains(&"0002".to_string()),
        "{report:?}"
    );
    let pending = call(addr, "GET", "/migrations/pending", &[], "")
        .await
        .json();
    assert_eq!(pending["pending"].as_array().unwrap().len(), 0, "{pending}");
}

#[tokio::test]
async fn backups_validate_and_rollback() {
    let p = small_project();
    let (addr, _) = start(p.service(), with_token()).await;
    let id = execute_all(addr).await;
    assert_eq!(finished(addr, &id).await["outcome"]["state"], "finished");
    let r = call(addr, "POST", "/backups", &[AUTH], "").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let list = call(addr, "GET", "/backups", &[], "").await.json();
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list}");
    let v = call(addr, "POST", "/migrations/validate/0001", &[], "")
        .await
        .json();
    assert_eq!(v["valid"], true, "{v}");
    let r = call(addr, "POST", "/migrations/rollback/0002", &[AUTH], "").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["run_id"].as_str().unwrap().to_string();
    assert_eq!(finished(addr, &id).await["outcome"]["state"], "finished");
    let pending = call(addr, "GET", "/migrations/pending", &[], "")
        .await
        .json();
    let versions: Vec<&str> = pending["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0002"]);
    let r = call(addr, "POST", "/migrations/rollback/0002", &[AUTH], "").await;
    assert_eq!(r.status, 409, "{}", r.body);
}

#[tokio::test]
async fn the_fleet_is_read_over_http() {
    let p = small_project();
    std::fs::create_dir_all(p.dir.path().join("tenants")).unwrap();
    for t in ["a", "b"] {
        std::fs::write(p.dir.path().join(format!("tenants/{t}.db")), b"").unwrap();
    }
    let mut s = p.service().settings().clone();
    let fleet = instar_service::fleet::FleetFile {
        glob: Some("tenants/*.db".into()),
        ..Default::default()
    };
    s.fleet = Some(fleet.resolve(p.dir.path()).unwrap());
    let service = instar_service::Service::new(s);
    let r = service
        .fleet_up(&Default::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(r.done, 2);
    let (addr, _) = start(service, with_token()).await;
    let all = call(addr, "GET", "/fleet", &[AUTH], "").await;
    assert_eq!(all.status, 200, "{}", all.body);
    let v = all.json();
    assert_eq!(v["by_state"]["done"], 2, "{v}");
    assert_eq!(v["recorded"], 2, "{v}");
    let one = call(addr, "GET", "/fleet?target=tenants/a.db", &[AUTH], "").await;
    assert_eq!(one.json()["state"], "done", "{}", one.body);
    let none = call(addr, "GET", "/fleet?target=nope", &[AUTH], "").await;
    assert_eq!(none.status, 404, "{}", none.body);
}
