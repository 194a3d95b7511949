//! [`Tenants`]: a multi-tenant service's start-up path. Each tenant database
//! is migrated the first time the process opens it, before it is used, with
//! at most `max_concurrent` migrations at once (a burst of first requests
//! does not open a thousand migration connections); concurrent openers of the
//! same tenant wait for the one migration; a failed one is tried again at the
//! next open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use instar_core::event::EventSink;
use instar_db::runner::Report;
use tokio::sync::{OnceCell, Semaphore};

use crate::{Error, Migrator};

/// Migrates tenants on first use (see the module's docs).
pub struct Tenants {
    migrator: Migrator,
    limit: Semaphore,
    opened: Mutex<HashMap<String, Arc<OnceCell<Report>>>>,
}

impl Migrator {
    /// A tenant-by-tenant front door over this migrator: at most
    /// `max_concurrent` tenants migrated at once (at least 1).
    pub fn for_tenants(self, max_concurrent: usize) -> Tenants {
        Tenants {
            migrator: self,
            limit: Semaphore::new(max_concurrent.max(1)),
            opened: Mutex::new(HashMap::new()),
        }
    }
}

impl Tenants {
    /// Migrates the tenant at `url` unless this process already did: its
    /// report (the first time, or the one it made then).
    pub async fn open(&self, url: &str) -> Result<Report, Error> {
        self.open_as(url, None, &mut instar_core::event::NullSink)
            .await
    }

    /// [`Tenants::open`] for the PostgreSQL schema `schema` on `url` (schema
    /// per tenant: the tenant's history table lives in its schema).
    pub async fn open_schema(&self, url: &str, schema: &str) -> Result<Report, Error> {
        self.open_as(url, Some(schema), &mut instar_core::event::NullSink)
            .await
    }

    /// [`Tenants::open`], reporting the migration's events to `sink`.
    pub async fn open_as(
        &self,
        url: &str,
        schema: Option<&str>,
        sink: &mut dyn EventSink,
    ) -> Result<Report, Error> {
        let key = format!("{url}\u{0}{}", schema.unwrap_or(""));
        let cell = {
            let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
            opened.entry(key).or_default().clone()
        };
        let report = cell
            .get_or_try_init(|| async {
                let _permit = self
                    .limit
                    .acquire()
                    .await
                    .map_err(|_| Error::Config("the tenant migrator was closed".into()))?;
                self.migrator.run_in(url, schema, sink).await
            })
            .await?;
        Ok(report.clone())
    }

    /// Tenants this process has migrated (or found up to date).
    pub fn opened(&self) -> usize {
        let opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        opened.values().filter(|c| c.initialized()).count()
    }
}
