//! `instar fleet up --dry-run`: what a rollout would do — its waves, and
//! per tenant the migrations `up` would apply there or why it would refuse —
//! with the SQL once (every tenant runs the same files). Nothing is run or
//! recorded: no rollout lock, no state row, each tenant only read.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use serde::Serialize;

use super::rollout::missing_schemas;
use super::{not_done, release, waves, State, Target};
use crate::{Error, RunRequest, Service};

/// One tenant in a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedTarget {
    /// The target.
    pub target: String,
    /// Its wave (0 is the canary).
    pub wave: usize,
    /// The migrations `up` would apply, in order.
    pub pending: Vec<String>,
    /// Why `up` would refuse, or why it cannot be read.
    pub error: Option<String>,
}

/// One migration's SQL, as every tenant would run it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedSql {
    /// Its name.
    pub name: String,
    /// Whether it runs in a transaction.
    pub transaction: bool,
    /// Its statements.
    pub statements: Vec<String>,
}

/// What `fleet up` would do.
#[derive(Debug, Clone, Serialize)]
pub struct FleetPlan {
    /// The release the files make.
    pub release: String,
    /// Tenants done in this release (they would be skipped).
    pub skipped: usize,
    /// Every tenant it would run, in wave order.
    pub targets: Vec<PlannedTarget>,
    /// The SQL of every migration some tenant would apply, by version.
    pub sql: BTreeMap<String, PlannedSql>,
}

impl FleetPlan {
    /// Tenants that would fail to start (refused, unreadable).
    pub fn refused(&self) -> usize {
        self.targets.iter().filter(|t| t.error.is_some()).count()
    }
}

impl Service {
    /// What `fleet up` would do now (see the module's docs); `parallel`
    /// tenants read at once.
    pub async fn fleet_plan(&self, parallel: usize) -> Result<FleetPlan, Error> {
        let this = self.pinned()?;
        this.plan_of(parallel).await
    }

    async fn plan_of(&self, parallel: usize) -> Result<FleetPlan, Error> {
        let cfg = self.fleet_config()?.clone();
        let targets = self.fleet_listed().await?;
        let release = release(self)?;
        let known = match State::read(&cfg.state)? {
            Some(st) => st.all()?,
            None => Vec::new(),
        };
        let todo = not_done(&targets, &known, &release);
        let missing = &missing_schemas(self, &todo).await;
        let plan = waves(&cfg, &targets, &todo)?;
        let order: Vec<(usize, Target)> = plan
            .into_iter()
            .enumerate()
            .flat_map(|(w, group)| group.into_iter().map(move |t| (w, t)))
            .collect();
        let read: Vec<_> = order
            .iter()
            .map(|(w, t)| async move {
                let service = self.with_settings(self.target_settings(t));
                let steps = match missing.get(&t.name) {
                    Some(e) => Err(Error::Config(e.clone())),
                    None => service.plan(&RunRequest::up()).await,
                };
                (*w, t, steps)
            })
            .collect();
        let read: Vec<_> = futures_util::stream::iter(read)
            .buffered(parallel.max(1))
            .collect()
            .await;
        let mut sql = BTreeMap::new();
        let mut out = Vec::new();
        for (wave, t, steps) in read {
            let (pending, error) = match steps {
                Ok(steps) => {
                    let versions = steps.iter().map(|s| s.version.clone()).collect();
                    for s in steps {
                        sql.entry(s.version).or_insert_with(|| PlannedSql {
                            name: s.name,
                            transaction: s.transaction,
                            statements: s
                                .statements
                                .into_iter()
                                .map(|st| st.sql.into_owned())
                                .collect(),
                        });
                    }
                    (versions, None)
                }
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            out.push(PlannedTarget {
                target: t.name.clone(),
                wave,
                pending,
                error,
            });
        }
        Ok(FleetPlan {
            release,
            skipped: targets.len() - todo.len(),
            targets: out,
            sql,
        })
    }
}
