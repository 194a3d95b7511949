//! The fleet over HTTP: its state, rollouts started by id with every
//! tenant's progress as events, the lock shared with `instar fleet up`,
//! cancel. Tenants are SQLite files in the project's temp dir.

use instar_service::fleet::{Amount, FleetFile, State};
use instar_service::Service;

use crate::client::{call, Events};
use crate::{start, with_token, Project};

const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-token");

fn project() -> Project {
    Project::new(&[
        ("0001_a", "CREATE TABLE a (x INTEGER);", ""),
        ("0002_b", "CREATE TABLE b (x INTEGER);", ""),
    ])
}

/// `names` as tenant files (`tenants/NAME.db`); a name starting with `bad`
/// already has a table `b`, so its `0002_b` fails.
fn tenants(p: &Project, names: &[&str]) {
    let dir = p.dir.path().join("tenants");
    std::fs::create_dir_all(&dir).unwrap();
    for n in names {
        let path = dir.join(format!("{n}.db"));
        let c = rusqlite::Connection::open(&path).unwrap();
        if n.starts_with("bad") {
            c.execute_batch("CREATE TABLE b (y INTEGER);").unwrap();
        }
    }
}

/// The project's service with `fleet` as its `[fleet]`.
fn fleet_service(p: &Project, fleet: FleetFile) -> Service {
    let mut s = p.service().settings().clone();
    s.fleet = Some(fleet.resolve(p.dir.path()).unwrap());
    Service::new(s)
}

/// Cancels the rollout `run`.
async fn cancel(addr: std::net::SocketAddr, run: &str) {
    let c = call(
        addr,
        "POST",
        &format!("/fleet/runs/{run}/cancel"),
        &[AUTH],
        "",
    )
    .await;
    assert_eq!(c.status, 202, "{}", c.body);
}

/// `GET /fleet/runs/{run}`.
async fn run_view(addr: std::net::SocketAddr, run: &str) -> serde_json::Value {
    let r = call(addr, "GET", &format!("/fleet/runs/{run}"), &[AUTH], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Every event of a rollout's stream, to its end.
async fn all_events(addr: std::net::SocketAddr, run: &str) -> Vec<(u64, serde_json::Value)> {
    let mut s = Events::open(addr, &format!("/fleet/runs/{run}/events"), &[AUTH]).await;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match s.next().await {
            Some(e) => out.push(e),
            None => return out,
        }
    }
    panic!("the stream did not end");
}

#[tokio::test]
async fn a_rollout_started_over_http_shows_every_tenant_and_resumes() {
    let p = project();
    tenants(&p, &["t1", "t2", "bad3", "t4", "t5", "t6"]);
    let service = fleet_service(
        &p,
        FleetFile {
            glob: Some("tenants/*.db".into()),
            canary: Some(Amount::Names(vec!["tenants/t1.db".into()])),
            waves: Some(vec![
                Amount::Text("50%".into()),
                Amount::Text("100%".into()),
            ]),
            ..Default::default()
        },
    );
    let (addr, _) = start(service, with_token()).await;
    // Before any rollout: every tenant is pending.
    let grid = call(addr, "GET", "/fleet/targets", &[AUTH], "").await;
    assert_eq!(grid.status, 200, "{}", grid.body);
    let cells = grid.json()["targets"].as_array().unwrap().clone();
    assert_eq!(cells.len(), 6);
    assert!(cells.iter().all(|c| c["state"] == "pending"), "{cells:?}");
    // Writes need the token; bodies are checked.
    assert_eq!(
        call(addr, "POST", "/fleet/runs", &[], "{}").await.status,
        401
    );
    let bad = call(addr, "POST", "/fleet/runs", &[AUTH], r#"{"parallel": "x"}"#).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("parallel"), "{}", bad.body);

    // The plan first: nothing run.
    let plan = call(addr, "POST", "/fleet/runs", &[AUTH], r#"{"dry_run": true}"#).await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    let plan = plan.json();
    assert_eq!(
        plan["plan"]["targets"].as_array().unwrap().len(),
        6,
        "{plan}"
    );
    assert_eq!(
        plan["plan"]["targets"][0]["pending"],
        serde_json::json!(["0001", "0002"])
    );
    assert!(!p.dir.path().join(".instar/fleet.db").exists());
    let r = call(
        addr,
        "POST",
        "/fleet/runs",
        &[AUTH],
        r#"{"continue_on_error": true, "parallel": 2}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run = r.json()["run_id"].as_str().unwrap().to_string();
    let events = all_events(addr, &run).await;
    // Numbered from 1 without gaps; the plan first, then every tenant started
    // and finished once, with its migrations in between.
    for (i, (seq, _)) in events.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "planned", "{kinds:?}");
    assert_eq!(
        events[0].1["waves"][0],
        serde_json::json!(["tenants/t1.db"])
    );
    for name in ["t1", "t2", "bad3", "t4", "t5", "t6"] {
        let target = format!("tenants/{name}.db");
        let of = |k: &str| {
            events
                .iter()
                .filter(|(_, e)| e["event"] == k && e["target"] == target.as_str())
                .count()
        };
        assert_eq!(
            (of("target_started"), of("target_finished")),
            (1, 1),
            "{target}"
        );
        let finished_migrations = events
            .iter()
            .filter(|(_, e)| {
                e["event"] == "migration"
                    && e["target"] == target.as_str()
                    && e["state"] == "finished"
            })
            .count();
        assert_eq!(
            finished_migrations,
            if name == "bad3" { 1 } else { 2 },
            "{target}"
        );
    }
    assert!(events.iter().all(|(_, e)| e["run_id"] == run.as_str()));

    let view = run_view(addr, &run).await;
    assert_eq!(view["outcome"]["state"], "finished", "{view}");
    assert_eq!(view["outcome"]["report"]["done"], 5, "{view}");
    assert_eq!(view["counts"]["done"], 5, "{view}");
    assert_eq!(view["counts"]["failed"], 1, "{view}");
    let bad3 = view["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "tenants/bad3.db")
        .unwrap();
    assert_eq!(bad3["state"], "failed");
    assert!(bad3["error"].as_str().unwrap().contains("0002_b"), "{bad3}");

    // The grid reads the state file: the same states.
    let grid = call(addr, "GET", "/fleet/targets", &[AUTH], "")
        .await
        .json();
    let state_of = |t: &str| {
        grid["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["target"] == t)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of("tenants/bad3.db"), "failed");
    assert_eq!(state_of("tenants/t6.db"), "done");
    // The failed tenant was rolled back to where it was (0001 applied, 0002 not).
    let c = rusqlite::Connection::open(p.dir.path().join("tenants/bad3.db")).unwrap();
    let a: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(a, 1);

    // Fixed, a second rollout runs exactly that tenant.
    c.execute_batch("DROP TABLE b;").unwrap();
    drop(c);
    let r = call(addr, "POST", "/fleet/runs", &[AUTH], "").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run2 = r.json()["run_id"].as_str().unwrap().to_string();
    let events = all_events(addr, &run2).await;
    let started: Vec<&str> = events
        .iter()
        .filter(|(_, e)| e["event"] == "target_started")
        .map(|(_, e)| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["tenants/bad3.db"]);
    let view = run_view(addr, &run2).await;
    assert_eq!(view["outcome"]["report"]["skipped"], 5, "{view}");
    assert_eq!(view["outcome"]["report"]["done"], 1, "{view}");
    // Replay from a sequence number: what came after it, nothing else.
    let mut again = Events::open(
        addr,
        &format!("/fleet/runs/{run2}/events"),
        &[AUTH, ("Last-Event-ID", "2")],
    )
    .await;
    assert_eq!(again.next().await.unwrap().0, 3);
}

#[tokio::test]
async fn a_second_rollout_is_refused_and_a_cancelled_one_starts_nobody() {
    let p = project();
    tenants(&p, &["t1", "t2"]);
    // The list command waits (bounded) for a file the test writes once it
    // has cancelled: the rollout is under way meanwhile, whatever the timing.
    let service = fleet_service(
        &p,
        FleetFile {
            command: Some(
                "sh -c 'for i in $(seq 1 600); do [ -f go ] && break; sleep 0.05; done; touch listed'; ls tenants/*.db"
                    .into(),
            ),
            ..Default::default()
        },
    );
    let state_path = service.fleet_config().unwrap().state.clone();
    let (addr, _) = start(service, with_token()).await;
    let first = call(addr, "POST", "/fleet/runs", &[AUTH], "{}").await;
    assert_eq!(first.status, 202, "{}", first.body);
    let run = first.json()["run_id"].as_str().unwrap().to_string();
    // This server's own rollout: 409 naming it.
    let second = call(addr, "POST", "/fleet/runs", &[AUTH], "{}").await;
    assert_eq!(second.status, 409, "{}", second.body);
    assert_eq!(
        second.json()["error"]["run_id"],
        run.as_str(),
        "{}",
        second.body
    );
    // Cancelled while its list command runs: it ends at once, nobody run.
    cancel(addr, &run).await;
    let events = all_events(addr, &run).await;
    // The abandoned list command was killed with the shell it started: it
    // never gets past its wait.
    std::fs::write(p.dir.path().join("go"), b"").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !p.dir.path().join("listed").exists(),
        "the list command was killed"
    );
    assert!(
        events.iter().any(|(_, e)| e["event"] == "cancelled"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|(_, e)| e["event"] == "target_started"),
        "{events:?}"
    );
    let view = run_view(addr, &run).await;
    assert_eq!(view["outcome"]["report"]["done"], 0, "{view}");
    assert_eq!(view["outcome"]["report"]["cancelled"], true, "{view}");
    for t in ["t1", "t2"] {
        let c = rusqlite::Connection::open(p.dir.path().join(format!("tenants/{t}.db"))).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{t} untouched");
    }

    // A rollout elsewhere (an `instar fleet up` holding the state file's
    // lock): 409, nothing started.
    let held = State::open(&state_path).unwrap();
    let lock = held.lock().unwrap();
    let busy = call(addr, "POST", "/fleet/runs", &[AUTH], "{}").await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(
        busy.body.contains("another `instar fleet up`"),
        "{}",
        busy.body
    );
    drop(lock);
    let free = call(addr, "POST", "/fleet/runs", &[AUTH], "{}").await;
    assert_eq!(free.status, 202, "{}", free.body);
    let run = free.json()["run_id"].as_str().unwrap().to_string();
    all_events(addr, &run).await;
    let view = run_view(addr, &run).await;
    assert_eq!(view["outcome"]["report"]["done"], 2, "{view}");
}

#[tokio::test]
async fn without_a_fleet_the_endpoints_say_so() {
    let p = project();
    let (addr, _) = start(p.service(), with_token()).await;
    for (m, path) in [("GET", "/fleet/targets"), ("POST", "/fleet/runs")] {
        let r = call(addr, m, path, &[AUTH], "").await;
        assert_eq!(r.status, 422, "{m} {path}: {}", r.body);
        assert!(r.body.contains("no [fleet] in instar.toml"), "{}", r.body);
    }
    let none = call(addr, "GET", "/fleet/runs/nope", &[AUTH], "").await;
    assert_eq!(none.status, 404, "{}", none.body);
}

#[tokio::test]
async fn a_rollout_cancelled_mid_wave_stops_the_running_tenant_and_starts_no_other() {
    // Each tenant's data migration takes a while (40 batches, 20 ms apart).
    let p = Project::new(&[
        (
            "0001_t",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000) INSERT INTO t SELECT i, 0 FROM c;",
            "",
        ),
        (
            "0002_fill",
            "UPDATE t SET v = id * 2 WHERE {batch}",
            "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 50\npause = \"20ms\"\n",
        ),
    ]);
    tenants(&p, &["t1", "t2", "t3"]);
    let service = fleet_service(
        &p,
        FleetFile {
            glob: Some("tenants/*.db".into()),
            parallel: Some(1),
            ..Default::default()
        },
    );
    let (addr, _) = start(service, with_token()).await;
    let r = call(addr, "POST", "/fleet/runs", &[AUTH], "{}").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run = r.json()["run_id"].as_str().unwrap().to_string();
    // Cancel once the first tenant's data migration has committed a batch.
    let mut s = Events::open(addr, &format!("/fleet/runs/{run}/events"), &[AUTH]).await;
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let (_, e) = s.next().await.expect("a batch before the end");
        let batch = e["event"] == "migration" && e["state"] == "batch";
        seen.push(e);
        if batch {
            break;
        }
    }
    cancel(addr, &run).await;
    while let Some((_, e)) = s.next().await {
        seen.push(e);
    }
    let view = run_view(addr, &run).await;
    let report = &view["outcome"]["report"];
    assert_eq!(report["cancelled"], true, "{view}");
    assert_eq!(report["done"], 0, "{view}");
    assert_eq!(
        report["failed"].as_array().unwrap().len(),
        0,
        "not failures: {view}"
    );
    assert_eq!(report["stopped"][0][0], "tenants/t1.db", "{view}");
    assert_eq!(report["not_run"], 2, "{view}");
    assert_eq!(view["counts"]["stopped"], 1, "{view}");
    assert_eq!(view["counts"]["pending"], 2, "{view}");
    let started = seen
        .iter()
        .filter(|e| e["event"] == "target_started")
        .count();
    assert_eq!(started, 1, "{seen:?}");
    // In the state file: t1 stopped (not done), the others untouched.
    let grid = call(addr, "GET", "/fleet/targets", &[AUTH], "")
        .await
        .json();
    let states: Vec<&str> = grid["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["stopped", "pending", "pending"], "{grid}");
    // t1 stopped at a checkpoint: every batch it committed is whole.
    let c = rusqlite::Connection::open(p.dir.path().join("tenants/t1.db")).unwrap();
    let (changed, total): (i64, i64) = c
        .query_row("SELECT sum(v = id * 2), count(*) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(total, 2000);
    assert!(
        changed > 0 && changed < 2000 && changed % 50 == 0,
        "{changed}"
    );
    // The next rollout finishes every tenant, t1 from its checkpoint.
    let r = call(addr, "POST", "/fleet/runs", &[AUTH], "").await;
    let run = r.json()["run_id"].as_str().unwrap().to_string();
    all_events(addr, &run).await;
    let view = run_view(addr, &run).await;
    assert_eq!(view["outcome"]["report"]["done"], 3, "{view}");
    let changed: i64 = c
        .query_row("SELECT sum(v = id * 2) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(changed, 2000);
}
