//! Counters for `GET /metrics`, in Prometheus' text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the run-duration histogram's buckets.
const BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0];

/// What the server has done since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    runs_started: AtomicU64,
    runs_failed: AtomicU64,
    runs_cancelled: AtomicU64,
    rows_migrated: AtomicU64,
    lock_waits: AtomicU64,
    requests_refused: AtomicU64,
    durations: Mutex<Vec<f64>>,
}

impl Metrics {
    /// A run began.
    pub fn started(&self) {
        self.runs_started.fetch_add(1, Ordering::Relaxed);
    }

    /// A run ended after `seconds`: failed, cancelled, or neither.
    pub fn ended(&self, seconds: f64, failed: bool, cancelled: bool) {
        if failed {
            self.runs_failed.fetch_add(1, Ordering::Relaxed);
        }
        if cancelled {
            self.runs_cancelled.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut d) = self.durations.lock() {
            d.push(seconds);
        }
    }

    /// A data or documents batch moved `rows`.
    pub fn rows(&self, rows: u64) {
        self.rows_migrated.fetch_add(rows, Ordering::Relaxed);
    }

    /// A run waited for another's lock.
    pub fn lock_wait(&self) {
        self.lock_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused for its token.
    pub fn refused(&self) {
        self.requests_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The text `GET /metrics` serves.
    pub fn render(&self, running: usize) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "instar_runs_started_total",
            "Runs started over HTTP.",
            get(&self.runs_started),
        );
        counter(
            "instar_runs_failed_total",
            "Runs that ended with an error.",
            get(&self.runs_failed),
        );
        counter(
            "instar_runs_cancelled_total",
            "Runs stopped by a cancel.",
            get(&self.runs_cancelled),
        );
        counter(
            "instar_rows_migrated_total",
            "Rows moved by data and documents migrations.",
            get(&self.rows_migrated),
        );
        counter(
            "instar_lock_waits_total",
            "Runs that waited for another runner's lock.",
            get(&self.lock_waits),
        );
        counter(
            "instar_requests_refused_total",
            "Requests refused for a missing or wrong token.",
            get(&self.requests_refused),
        );
        out.push_str(&format!(
            "# HELP instar_runs_running Runs under way.\n# TYPE instar_runs_running gauge\ninstar_runs_running {running}\n"
        ));
        let durations = self.durations.lock().map(|d| d.clone()).unwrap_or_default();
        out.push_str("# HELP instar_run_duration_seconds How long runs took.\n# TYPE instar_run_duration_seconds histogram\n");
        for b in BUCKETS {
            let n = durations.iter().filter(|d| **d <= b).count();
            out.push_str(&format!(
                "instar_run_duration_seconds_bucket{{le=\"{b}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "instar_run_duration_seconds_bucket{{le=\"+Inf\"}} {}\ninstar_run_duration_seconds_sum {}\ninstar_run_duration_seconds_count {}\n",
            durations.len(),
            durations.iter().sum::<f64>(),
            durations.len()
        ));
        out
    }
}
