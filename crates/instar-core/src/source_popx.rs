//! ory/popx folders: `<version>_<name>[.<dialect>][.autocommit].up.sql` and
//! `.down.sql`, several engines' files per migration. Every file is read; the
//! engine's are picked when the engine is known ([`Source::for_dialect`]).
//!
//! [`Source::for_dialect`]: crate::Source::for_dialect

use std::collections::BTreeMap;

use crate::files::Files;
use crate::meta::Meta;
use crate::source::{build, duplicate, parse_version, read_script, Found, Part, Variant};
use crate::version::{Layout, Version};
use crate::{Error, Migration};

/// One migration's files, by dialect (`None`: every engine).
#[derive(Default)]
struct PopxFiles {
    name: String,
    up: BTreeMap<Option<String>, Found>,
    down: BTreeMap<Option<String>, Found>,
}

pub(crate) fn read(files: &dyn Files, found: Vec<Found>) -> Result<Vec<Migration>, Error> {
    let mut by_version: BTreeMap<Version, PopxFiles> = BTreeMap::new();
    for f in found {
        if f.part == Part::Simple {
            return Err(Error::MalformedName {
                path: f.path.clone(),
                reason: "a popx folder (files with .<dialect> or .autocommit suffixes) names each file .up.sql or .down.sql".into(),
            });
        }
        let version = parse_version(&f, Layout::Popx)?;
        let entry = by_version.entry(version.clone()).or_default();
        if entry.name.is_empty() {
            entry.name = f.name.clone();
        }
        let dialect = f.popx.as_ref().and_then(|p| p.dialect.clone());
        let map = if f.part == Part::Up {
            &mut entry.up
        } else {
            &mut entry.down
        };
        if let Some(prev) = map.get(&dialect) {
            return Err(duplicate(&version, &prev.path, &f.path));
        }
        map.insert(dialect, f);
    }
    let mut out = Vec::with_capacity(by_version.len());
    for (version, m) in by_version {
        // Each direction is chosen by itself, as popx does: the engine's file,
        // else the dialect-free one.
        // An engine's variant needs an up script: its own, or the dialect-free
        // one (which serves every engine it names no file for).
        let dialects: std::collections::BTreeSet<&Option<String>> =
            m.up.keys()
                .chain(m.down.keys().filter(|d| d.is_some()))
                .collect();
        let mut variants = Vec::with_capacity(dialects.len());
        for dialect in dialects {
            let pick = |map: &'_ BTreeMap<Option<String>, Found>| {
                map.get(dialect).or_else(|| map.get(&None)).map(|f| {
                    let autocommit = f.popx.as_ref().is_some_and(|p| p.autocommit);
                    (f.path.clone(), autocommit)
                })
            };
            let Some((up, up_auto)) = pick(&m.up) else {
                let Some(orphan) = m.down.get(dialect) else {
                    continue;
                };
                return Err(Error::MalformedName {
                    path: orphan.path.clone(),
                    reason: format!(
                        "reverse script for version {version}, which has no forward script for the same engine (nor a dialect-free one)"
                    ),
                });
            };
            let down = pick(&m.down);
            variants.push(Variant {
                dialect: dialect.clone(),
                up: read_script(files, &up)?,
                down: down
                    .as_ref()
                    .map(|(p, _)| read_script(files, p))
                    .transpose()?,
                transaction: !up_auto,
                down_transaction: !down.is_some_and(|(_, auto)| auto),
            });
        }
        // Shown before an engine is chosen: the dialect-free files, else the first engine's.
        let shown = variants
            .iter()
            .find(|v| v.dialect.is_none())
            .unwrap_or(&variants[0])
            .clone();
        let mut migration = build(
            version,
            m.name,
            Layout::Popx,
            shown.up,
            shown.down,
            Meta::default(),
            shown.transaction,
        );
        migration.down_transaction = Some(shown.down_transaction);
        migration.variants = variants;
        out.push(migration);
    }
    Ok(out)
}
