//! Instances and databases: what a test, a benchmark or a new project on the
//! emulator needs before migrating (Instar never creates a production
//! database by itself).

use serde_json::json;

use crate::client::{Client, Operation};
use crate::url::SpannerUrl;
use crate::Error;

/// Creates the URL's instance (on the emulator: `emulator-config`) unless it
/// exists, then its database unless it exists.
pub fn create_database(url: &SpannerUrl) -> Result<(), Error> {
    create(url, "GOOGLE_STANDARD_SQL")
}

/// As [`create_database`], of the given dialect (`GOOGLE_STANDARD_SQL` or `POSTGRESQL`).
pub fn create(url: &SpannerUrl, dialect: &str) -> Result<(), Error> {
    let client = Client::new(url);
    let (project, instance_id) = url
        .instance()
        .split_once("/instances/")
        .ok_or_else(|| Error::Url(format!("no instance in {}", url.database)))?;
    let config = if url.tls {
        "regional-us-central1"
    } else {
        "emulator-config"
    };
    let made = client.call(
        "POST",
        &format!("{project}/instances"),
        Some(json!({
            "instanceId": instance_id,
            "instance": { "config": format!("{project}/instanceConfigs/{config}"),
                          "displayName": instance_id, "nodeCount": 1 }
        })),
    );
    match made {
        Ok(v) => wait(&client, &v)?,
        Err(Error::Api { code: 6, .. }) => {}
        Err(e) => return Err(e),
    }
    let made = client.call(
        "POST",
        &format!("{}/databases", url.instance()),
        Some(json!({
            "createStatement": if dialect == "POSTGRESQL" {
                format!("CREATE DATABASE \"{}\"", url.database_id())
            } else {
                format!("CREATE DATABASE `{}`", url.database_id())
            },
            "databaseDialect": dialect,
        })),
    );
    match made {
        Ok(v) => wait(&client, &v),
        Err(Error::Api { code: 6, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn wait(client: &Client, v: &serde_json::Value) -> Result<(), Error> {
    let op = Operation {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        done: v["done"].as_bool().unwrap_or(false),
        statements_done: 0,
        error: None,
    };
    let op = client.wait(op, |_| {})?;
    match op.error {
        Some(e) => Err(Error::Run(e)),
        None => Ok(()),
    }
}

/// Drops the URL's database.
pub fn drop_database(url: &SpannerUrl) -> Result<(), Error> {
    Client::new(url)
        .call("DELETE", &url.database, None)
        .map(|_| ())
}
