//! `instar lint`, its summary under `instar plan`, and `instar compat`
//! (the versioning rule is checked with lint's findings).

use anyhow::Result;
use instar_core::lint::{Severity, RULES};
use instar_service::{LintOptions, LintReport, Service};

use crate::args::Format;
use crate::render::Out;

pub async fn lint(s: &Service, offline: bool, rules: bool, out: &Out) -> Result<i32> {
    if rules {
        for r in RULES {
            out.line(format!(
                "{:<32} {:<8} {}",
                r.id,
                severity(r.severity),
                r.summary
            ));
        }
        out.json(&serde_json::json!({ "rules": RULES }));
        return Ok(0);
    }
    let report = s
        .lint(&LintOptions {
            offline,
            only: None,
        })
        .await?;
    match out.format {
        Format::Sarif => println!("{}", sarif(&report)),
        Format::Json => out.json(&serde_json::json!({ "lint": report })),
        Format::Human => text(&report, out),
    }
    Ok(if report.errors() > 0 { 1 } else { 0 })
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// `file:line: severity[rule]: message`.
fn located(f: &instar_core::lint::Finding) -> String {
    format!(
        "{}:{}: {}[{}]: {}",
        f.file.display(),
        f.line,
        severity(f.severity),
        f.rule,
        f.message
    )
}

fn text(r: &LintReport, out: &Out) {
    for f in &r.findings {
        out.line(located(f));
        out.line(format!("  instead: {}", f.instead));
    }
    let warnings = r.findings.len() - r.errors();
    out.line(format!(
        "{} migrations read as {}: {} errors, {} warnings; table sizes {}{}",
        r.migrations,
        r.dialect,
        r.errors(),
        warnings,
        r.table_sizes,
        if r.findings.is_empty() {
            ""
        } else {
            ". Silence one with `-- instar:allow RULE reason` before the statement"
        }
    ));
}

/// SARIF 2.1.0: one run, the rules as the tool's, one result per finding.
fn sarif(r: &LintReport) -> serde_json::Value {
    let level = |s: Severity| severity(s);
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "instar lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": RULES.iter().map(|r| serde_json::json!({
                    "id": r.id,
                    "shortDescription": { "text": r.summary },
                    "defaultConfiguration": { "level": level(r.severity) },
                })).collect::<Vec<_>>(),
            }},
            "results": r.findings.iter().map(|f| serde_json::json!({
                "ruleId": f.rule,
                "level": level(f.severity),
                "message": { "text": format!("{} Instead: {}", f.message, f.instead) },
                "locations": [{ "physicalLocation": {
                    "artifactLocation": { "uri": f.file.display().to_string() },
                    "region": { "startLine": f.line },
                }}],
            })).collect::<Vec<_>>(),
        }],
    })
}

/// Under `instar plan`: the planned migrations' findings, counted.
pub async fn summary(s: &Service, steps: &[instar_db::runner::PlannedStep], out: &Out) {
    if steps.is_empty() {
        return;
    }
    let only = steps.iter().map(|st| st.version.clone()).collect();
    match s
        .lint(&LintOptions {
            offline: false,
            only: Some(only),
        })
        .await
    {
        Ok(r) if r.findings.is_empty() => out.line("lint: nothing found in the planned migrations"),
        Ok(r) => {
            for f in &r.findings {
                out.line(format!("lint: {}", located(f)));
            }
            out.line(format!("lint: {} errors, {} warnings in the planned migrations; `instar lint` says what to do instead", r.errors(), r.findings.len() - r.errors()));
        }
        Err(e) => out.line(format!("lint: not run ({e})")),
    }
}

/// `instar compat [check --app V]`.
pub async fn compat(
    s: &Service,
    action: Option<crate::args::CompatCommand>,
    out: &Out,
) -> Result<i32> {
    if let Some(crate::args::CompatCommand::Check { app, offline }) = action {
        let c = s.compat_check(&app, !offline).await?;
        let mark = |ok: Option<bool>| match ok {
            Some(true) => "runs",
            Some(false) => "DOES NOT RUN",
            None => "unknown",
        };
        out.line(format!(
            "release {} runs against schema versions {}",
            c.release, c.requires
        ));
        out.line(format!(
            "  the database now: {} — {}",
            c.current.as_deref().unwrap_or(if offline {
                "not read (--offline)"
            } else {
                "no schema version recorded"
            }),
            mark(c.current_ok)
        ));
        out.line(format!(
            "  after `instar up`: {} — {}",
            c.after_up
                .as_deref()
                .unwrap_or("no schema version declared"),
            mark(c.after_up_ok)
        ));
        out.json(&serde_json::json!({ "compat_check": c, "ok": c.ok() }));
        return Ok(if c.ok() { 0 } else { 1 });
    }
    let m = s.compat_matrix()?;
    let mut header = format!("{:<10} {:<28} {:<6}", "schema", "migration", "bump");
    for r in &m.releases {
        header.push_str(&format!(" {r:>10}"));
    }
    out.line(format!("{header}  notes"));
    let mut violations = 0;
    for row in &m.rows {
        let mut line = format!(
            "{:<10} {:<28} {:<6}",
            row.schema_version, row.migration, row.bump
        );
        for ok in &row.runs {
            line.push_str(&format!(" {:>10}", if *ok { "yes" } else { "-" }));
        }
        let mut notes = Vec::new();
        if !row.moves_off.is_empty() {
            notes.push(format!("moves {} off its range", row.moves_off.join(", ")));
        }
        match row.lens_readable {
            Some(true) => {
                notes.push("lenses keep its collection readable at older versions".into())
            }
            Some(false) => notes.push("a one-way lens: older versions read defaults".into()),
            None => {}
        }
        out.line(format!("{line}  {}", notes.join("; ")));
        for v in &row.rule {
            out.line(format!("  versioning rule: {v}"));
        }
        violations += row.rule.len();
    }
    if m.releases.is_empty() {
        out.line("no releases declared: add [compat] to instar.toml, e.g. \"1.4\" = \">=1.1, <2\"");
    }
    out.json(&serde_json::json!({ "compat": m }));
    Ok(if violations > 0 { 1 } else { 0 })
}
