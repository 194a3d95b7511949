//! Where the fleet stands, from its state file alone (no tenant is read):
//! what `instar fleet status` prints and `GET /fleet` answers, and every
//! target's standing (`GET /fleet/targets`, the console's grid).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{State, TargetState};
use crate::{Error, Service};

/// The fleet's state in a few numbers.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// The release the files make (fingerprint of the migration set).
    pub release: String,
    /// Tenants recorded.
    pub recorded: usize,
    /// Tenants per state (`done`, `failed`, `running`; `… (older release)` for rows of another release).
    pub by_state: BTreeMap<String, usize>,
    /// Tenants per last migration applied.
    pub by_version: BTreeMap<String, usize>,
    /// The failed tenants, with their errors.
    pub failed: Vec<TargetState>,
    /// The five slowest last runs.
    pub slowest: Vec<TargetState>,
}

/// One target of the fleet as its last rollout left it.
#[derive(Debug, Clone, Serialize)]
pub struct GridCell {
    /// The target.
    pub target: String,
    /// `pending` (never run in this release), `running`, `done`, `failed`, `stopped`.
    pub state: String,
    /// The schema version its last run left.
    pub version: Option<String>,
    /// Why its last run in this release failed.
    pub error: Option<String>,
}

/// Every target of the fleet, in the fleet's order.
#[derive(Debug, Clone, Serialize)]
pub struct FleetGrid {
    /// The release the files make.
    pub release: String,
    /// The targets.
    pub targets: Vec<GridCell>,
}

impl Service {
    /// Every target the fleet lists now (its list resolved: a command or
    /// query runs) with its recorded state in this release.
    pub async fn fleet_grid(&self) -> Result<FleetGrid, Error> {
        let cfg = self.fleet_config()?;
        let targets = self.fleet_targets().await?;
        let release = super::release(self)?;
        let mut rows: BTreeMap<String, TargetState> = match State::read(&cfg.state)? {
            Some(st) => st
                .all()?
                .into_iter()
                .map(|r| (r.target.clone(), r))
                .collect(),
            None => BTreeMap::new(),
        };
        let targets = targets
            .into_iter()
            .map(|t| match rows.remove(&t.name) {
                Some(r) if r.release == release => GridCell {
                    target: t.name,
                    state: r.state,
                    version: r.version,
                    error: r.error,
                },
                other => GridCell {
                    target: t.name,
                    state: "pending".into(),
                    version: other.and_then(|r| r.version),
                    error: None,
                },
            })
            .collect();
        Ok(FleetGrid { release, targets })
    }

    /// The fleet's state file, summed up.
    pub fn fleet_status(&self) -> Result<FleetStatus, Error> {
        let cfg = self.fleet_config()?;
        let rows = match State::read(&cfg.state)? {
            Some(st) => st.all()?,
            None => Vec::new(),
        };
        let release = super::release(self)?;
        let mut by_state = BTreeMap::new();
        let mut by_version = BTreeMap::new();
        for r in &rows {
            let st = if r.release == release {
                r.state.clone()
            } else {
                format!("{} (older release)", r.state)
            };
            *by_state.entry(st).or_insert(0) += 1;
            *by_version
                .entry(r.version.clone().unwrap_or_else(|| "-".into()))
                .or_insert(0) += 1;
        }
        let failed: Vec<TargetState> = rows
            .iter()
            .filter(|r| r.state == "failed")
            .cloned()
            .collect();
        let mut slowest: Vec<TargetState> = rows
            .iter()
            .filter(|r| r.duration_ms.is_some())
            .cloned()
            .collect();
        slowest.sort_by_key(|r| std::cmp::Reverse(r.duration_ms));
        slowest.truncate(5);
        Ok(FleetStatus {
            release,
            recorded: rows.len(),
            by_state,
            by_version,
            failed,
            slowest,
        })
    }

    /// One tenant's record in the state file.
    pub fn fleet_target(&self, target: &str) -> Result<Option<TargetState>, Error> {
        let cfg = self.fleet_config()?;
        match State::read(&cfg.state)? {
            Some(st) => st.get(target),
            None => Ok(None),
        }
    }
}
