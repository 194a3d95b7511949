//! Where the fleet stands, from its state file alone (no tenant is read):
//! what `instar fleet status` prints and `GET /fleet` answers.

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

impl Service {
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
