//! Randomized kill trials: `instar up` over 21 migrations is killed with
//! SIGKILL at a random moment, then run again. Every trial must end fully
//! migrated, with no statement applied twice (each migration logs one row).
//!
//! `INSTAR_KILL_TRIALS` sets the trials per engine (default 20; `.ci/run` runs 100).
//! The seed is printed, and `INSTAR_KILL_SEED` replays a run.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{migration, Backend, TestDb};

on_every_engine!(killed_at_random_moments_ends_fully_migrated);

const MIGRATIONS: usize = 21;

fn instar(t: &TestDb) -> Command {
    let mut c = crate::instar_at(t, &t.url);
    c.args(["--lock-timeout", "30s"]);
    c
}

fn project(t: &TestDb) {
    let m = t.migrations();
    migration(&m, "0000_log", "CREATE TABLE log (n INT NOT NULL);\n", None);
    for i in 1..=MIGRATIONS {
        migration(
            &m,
            &format!("{i:04}_t{i}"),
            &format!("CREATE TABLE t{i} (id INT PRIMARY KEY);\nINSERT INTO t{i} VALUES ({i});\nINSERT INTO log VALUES ({i});\n"),
            None,
        );
    }
}

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Trials per engine of a randomized kill test: `INSTAR_KILL_TRIALS`
/// (default 20; `.ci/run` runs 100).
pub(crate) fn kill_trials() -> usize {
    std::env::var("INSTAR_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

async fn killed_at_random_moments_ends_fully_migrated(b: Backend) {
    let trials = kill_trials();
    let seed = std::env::var("INSTAR_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("kill trials on {b:?}: {trials}, INSTAR_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    // How long an uninterrupted run takes here: kill moments are drawn within it.
    let Some(probe) = TestDb::new(b, "kill_probe").await else {
        return;
    };
    project(&probe);
    let t0 = Instant::now();
    let out = instar(&probe).arg("up").output().expect("probe run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full_ms = (t0.elapsed().as_millis() as u64).max(20);
    let mut recovered_with_repair = 0;
    for trial in 0..trials {
        let t = TestDb::new(b, "kill_trial").await.expect("database");
        project(&t);
        let at = rng.below(full_ms);
        let mut child = instar(&t).arg("up").spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(at));
        let _ = child.kill();
        let _ = child.wait();
        // The documented way on: `up` again (it resumes, checking an interrupted statement).
        let out = instar(&t).arg("up").output().expect("up again");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            // Only an interrupted statement whose effect could not be checked may need
            // the documented repair; anything else is a defect.
            assert!(
                text.contains("--statement-done"),
                "trial {trial} (seed {seed}, kill at {at} ms): {text}"
            );
            let version = text
                .split("--statement-done ")
                .nth(1)
                .and_then(|r| r.split('`').next())
                .expect("version")
                .to_string();
            let r = instar(&t)
                .args(["repair", "--statement-done", &version])
                .output()
                .expect("repair");
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            let again = instar(&t).arg("up").output().expect("up after repair");
            assert!(
                again.status.success(),
                "trial {trial} (seed {seed}): {}",
                String::from_utf8_lossy(&again.stderr)
            );
            recovered_with_repair += 1;
        }
        assert_eq!(
            t.count("SELECT count(*) FROM log").await,
            MIGRATIONS as i64,
            "trial {trial} (seed {seed}, kill at {at} ms): every migration logged exactly once; {text}"
        );
        assert_eq!(
            t.count("SELECT count(DISTINCT n) FROM log").await,
            MIGRATIONS as i64,
            "trial {trial} (seed {seed})"
        );
        assert!(t.table_exists(&format!("t{MIGRATIONS}")).await);
    }
    eprintln!("kill trials on {b:?}: {trials} fully migrated ({recovered_with_repair} needed `repair --statement-done`)");
}
