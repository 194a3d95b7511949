//! `instar fleet check`: per target, what `up` would do or refuse (pending
//! migrations, a database newer than the files, edited or dirty migrations),
//! and schema drift — each target's tables, views and indexes compared with
//! the shape most of the fleet has, naming the objects that differ.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use serde::Serialize;

use super::Target;
use crate::{Error, Service};

/// What `fleet check` found on one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// The target.
    pub target: String,
    /// It could not be read: why.
    pub error: Option<String>,
    /// Migrations `up` would apply.
    pub pending: usize,
    /// What `up` would refuse (newer database, edits, dirty marks …).
    pub problems: Vec<String>,
    /// The schema version.
    pub version: Option<String>,
    /// Objects that differ from the fleet's majority: `+ table x` (only
    /// here), `- index y` (missing here), `~ table z: …` (another shape).
    pub drift: Vec<String>,
}

/// What `fleet check` found.
#[derive(Debug, Clone, Serialize)]
pub struct FleetCheck {
    /// Each target.
    pub targets: Vec<TargetCheck>,
    /// Targets with the majority's schema.
    pub majority: usize,
}

impl FleetCheck {
    /// Whether anything needs attention (exit 1).
    pub fn findings(&self) -> bool {
        self.targets.iter().any(|t| {
            t.error.is_some() || t.pending > 0 || !t.problems.is_empty() || !t.drift.is_empty()
        })
    }
}

/// One target's database as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct TargetNow {
    /// Migrations `up` would apply.
    pub pending: usize,
    /// What `up` would refuse.
    pub problems: Vec<String>,
    /// The schema version.
    pub version: Option<String>,
}

type Objects = BTreeMap<String, String>;

async fn standing(service: &Service) -> Result<TargetNow, Error> {
    let st = service.status().await?;
    let pending = st
        .status
        .migrations
        .iter()
        .filter(|m| m.standing == instar_core::plan::Standing::Pending)
        .count();
    Ok(TargetNow {
        pending,
        problems: st.status.problems.iter().map(ToString::to_string).collect(),
        version: st.status.schema_version,
    })
}

async fn read(service: Service) -> Result<(usize, Vec<String>, Option<String>, Objects), Error> {
    let now = standing(&service).await?;
    let mut db = service.connect().await?;
    let objects = db.schema_objects().await;
    let _ = db.close().await;
    Ok((now.pending, now.problems, now.version, objects?))
}

fn drift(mine: &Objects, majority: &Objects) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in mine {
        match majority.get(k) {
            None => out.push(format!("+ {k}")),
            Some(m) if m != v => out.push(format!("~ {k}: {v} (most targets: {m})")),
            _ => {}
        }
    }
    for k in majority.keys().filter(|k| !mine.contains_key(*k)) {
        out.push(format!("- {k}"));
    }
    out
}

impl Service {
    /// The target `name` of the fleet read now (`None`: the fleet does not
    /// list it).
    pub async fn fleet_target_now(&self, name: &str) -> Result<Option<TargetNow>, Error> {
        let targets = self.fleet_targets().await?;
        let Some(t) = targets.into_iter().find(|t| t.name == name) else {
            return Ok(None);
        };
        let service = self.with_settings(self.target_settings(&t));
        standing(&service).await.map(Some)
    }

    /// Reads every target (`parallel` at once) and compares their schemas.
    pub async fn fleet_check(&self, parallel: usize) -> Result<FleetCheck, Error> {
        // Every tenant compared with the same files, read once.
        let this = self.pinned()?;
        let targets: Vec<Target> = this.fleet_targets().await?;
        let results: Vec<(Target, Result<_, Error>)> =
            futures_util::stream::iter(targets.into_iter().map(|t| {
                let service = this.with_settings(this.target_settings(&t));
                async move { (t, read(service).await) }
            }))
            .buffered(parallel.max(1))
            .collect()
            .await;
        let mut counts: BTreeMap<String, (usize, Objects)> = BTreeMap::new();
        for (_, r) in &results {
            if let Ok((_, _, _, objects)) = r {
                let key = format!("{objects:?}");
                counts.entry(key).or_insert((0, objects.clone())).0 += 1;
            }
        }
        let (majority, shape) = counts
            .into_values()
            .max_by_key(|(n, _)| *n)
            .unwrap_or_default();
        let targets = results
            .into_iter()
            .map(|(t, r)| match r {
                Ok((pending, problems, version, objects)) => TargetCheck {
                    target: t.name,
                    error: None,
                    pending,
                    problems,
                    version,
                    drift: drift(&objects, &shape),
                },
                Err(e) => TargetCheck {
                    target: t.name,
                    error: Some(e.to_string()),
                    pending: 0,
                    problems: Vec::new(),
                    version: None,
                    drift: Vec::new(),
                },
            })
            .collect();
        Ok(FleetCheck { targets, majority })
    }
}
