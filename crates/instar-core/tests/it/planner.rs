//! Property tests of the planner: what `up` plans, applied, leaves nothing
//! pending; `down` reverts in reverse order; `--to` never passes its target.

use instar_core::history::{derive, Direction, EventKind, HistoryRow, State};
use instar_core::plan::{plan, PlanOptions, Target};
use instar_core::source::read_dir;
use instar_core::{Dialect, Migration};
use proptest::prelude::*;

fn migrations(versions: &[u32]) -> (tempfile::TempDir, Vec<Migration>) {
    let d = tempfile::tempdir().unwrap();
    for v in versions {
        let f = d.path().join(format!("{v}_m{v}"));
        std::fs::create_dir_all(&f).unwrap();
        std::fs::write(f.join("up.sql"), format!("CREATE TABLE t{v} (id int);")).unwrap();
        std::fs::write(f.join("down.sql"), format!("DROP TABLE t{v};")).unwrap();
    }
    let s = read_dir(d.path(), None).unwrap();
    (d, s.migrations)
}

fn row(id: i64, m: &Migration, event: EventKind) -> HistoryRow {
    HistoryRow {
        id,
        version: m.version.to_string(),
        name: m.name.clone(),
        event,
        direction: if event == EventKind::Revert {
            Direction::Down
        } else {
            Direction::Up
        },
        kind: "schema".into(),
        checksum: Some(m.checksum.clone()),
        schema_version: None,
        started_at: String::new(),
        finished_at: None,
        duration_ms: None,
        statements_applied: 1,
        statements_total: 1,
        statement_hashes: None,
        rows_affected: None,
        error: None,
        failed_statement: None,
        operator: String::new(),
        run_id: None,
        in_flight: None,
        tool_version: String::new(),
        note: None,
    }
}

fn opts(target: Target) -> PlanOptions {
    PlanOptions {
        target,
        dialect: Dialect::Sqlite,
        allow_out_of_order: false,
        ignore_missing: false,
    }
}

/// Applies a plan's steps to a history, as the runner would record them.
fn execute(ms: &[Migration], rows: &mut Vec<HistoryRow>, target: Target) -> Vec<String> {
    let state = derive(rows);
    let p = plan(ms, &state, &opts(target)).expect("plan");
    for s in &p.steps {
        let ev = if s.direction == Direction::Up {
            EventKind::Apply
        } else {
            EventKind::Revert
        };
        let id = rows.len() as i64 + 1;
        rows.push(row(id, &ms[s.index], ev));
    }
    p.steps.iter().map(|s| s.version.clone()).collect()
}

fn state_of(rows: &[HistoryRow]) -> State {
    derive(rows)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn up_then_nothing_pending(set in proptest::collection::btree_set(1u32..500, 1..15)) {
        let versions: Vec<u32> = set.into_iter().collect();
        let (_d, ms) = migrations(&versions);
        let mut rows = Vec::new();
        let applied = execute(&ms, &mut rows, Target::Up { to: None });
        let expected: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
        prop_assert_eq!(applied, expected, "applied in version order");
        let again = execute(&ms, &mut rows, Target::Up { to: None });
        prop_assert!(again.is_empty(), "nothing pending after up: {:?}", again);
    }

    #[test]
    fn up_to_never_passes_target(set in proptest::collection::btree_set(1u32..500, 1..15), pick in any::<prop::sample::Index>()) {
        let versions: Vec<u32> = set.into_iter().collect();
        let (_d, ms) = migrations(&versions);
        let target = versions[pick.index(versions.len())];
        let mut rows = Vec::new();
        let applied = execute(&ms, &mut rows, Target::Up { to: Some(target.to_string()) });
        let passed = applied.iter().any(|v| v.parse::<u32>().unwrap() > target);
        prop_assert!(!passed, "applied past {}: {:?}", target, applied);
        prop_assert_eq!(state_of(&rows).applied.len(), versions.iter().filter(|&&v| v <= target).count());
    }

    #[test]
    fn down_reverts_in_reverse_and_round_trips(set in proptest::collection::btree_set(1u32..500, 1..15), steps in 1usize..20) {
        let versions: Vec<u32> = set.into_iter().collect();
        let (_d, ms) = migrations(&versions);
        let mut rows = Vec::new();
        execute(&ms, &mut rows, Target::Up { to: None });
        let reverted = execute(&ms, &mut rows, Target::Down { to: None, steps: Some(steps) });
        let expected: Vec<String> = versions.iter().rev().take(steps).map(|v| v.to_string()).collect();
        prop_assert_eq!(&reverted, &expected);
        let reapplied = execute(&ms, &mut rows, Target::Up { to: None });
        let mut back = expected.clone();
        back.reverse();
        prop_assert_eq!(reapplied, back);
    }
}

#[test]
fn planner_refuses_when_database_is_newer() {
    let (_d, ms) = migrations(&[1, 2, 3]);
    let mut rows = Vec::new();
    execute(&ms, &mut rows, Target::Up { to: None });
    let (_d2, fewer) = migrations(&[1, 2]);
    let e = plan(&fewer, &derive(&rows), &opts(Target::Up { to: None })).unwrap_err();
    assert!(
        e.to_string().contains("newer than these migration files"),
        "{e}"
    );
}
