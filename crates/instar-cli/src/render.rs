//! Rendering: human text (with a spinner for long statements on a terminal) or JSON.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use instar_core::event::{Event, EventSink, Stamped};
use instar_core::history::Direction;
use serde::Serialize;

use crate::args::Format;

/// Where a command's output goes.
pub struct Out {
    pub format: Format,
    pub quiet: bool,
    pub verbose: bool,
    spinner: Option<ProgressBar>,
    tty: bool,
    waited_for_lock: bool,
}

impl Out {
    pub fn new(format: Format, quiet: bool, verbose: bool) -> Self {
        Out {
            format,
            quiet,
            verbose,
            spinner: None,
            tty: std::io::stderr().is_terminal(),
            waited_for_lock: false,
        }
    }

    pub fn human(&self) -> bool {
        self.format == Format::Human
    }

    /// A line of human output (nothing in JSON mode or with --quiet).
    pub fn line(&self, s: impl std::fmt::Display) {
        if self.human() && !self.quiet {
            println!("{s}");
        }
    }

    /// A note shown only with --verbose.
    pub fn note(&self, s: impl std::fmt::Display) {
        if self.verbose && !self.quiet {
            eprintln!("note: {s}");
        }
    }

    /// The command's JSON document (JSON mode only).
    pub fn json(&self, v: &impl Serialize) {
        if !self.human() {
            println!(
                "{}",
                serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
        }
    }

    fn finish_spinner(&mut self) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }

    fn verb(d: Direction) -> &'static str {
        match d {
            Direction::Up => "applying",
            Direction::Down => "reverting",
        }
    }
}

impl Out {
    /// A spinner (terminal) or a line (verbose, or resuming) for a migration that starts.
    fn migration_started(
        &mut self,
        version: &str,
        name: &str,
        direction: Direction,
        resumed_from: usize,
        statements: usize,
    ) {
        let resume = if resumed_from > 0 {
            format!(" (resuming after statement {resumed_from} of {statements})")
        } else {
            String::new()
        };
        if self.tty {
            let s = ProgressBar::new_spinner();
            s.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            s.set_message(format!(
                "{} {version} {name}{resume}",
                Self::verb(direction)
            ));
            s.enable_steady_tick(Duration::from_millis(120));
            self.spinner = Some(s);
        } else if self.verbose || !resume.is_empty() {
            println!("{} {version} {name}{resume}", Self::verb(direction));
        }
    }

    /// A progress bar (terminal) or a line for a data migration that starts or resumes.
    fn data_started(&mut self, version: &str, rows_total: u64, rows_done: u64) {
        self.finish_spinner();
        let bar = ProgressBar::new(rows_total);
        if self.tty {
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(format!("data {version}"));
        } else {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            println!("data {version}: {rows_done} of {rows_total} rows done, walking the rest in batches");
        }
        bar.set_position(rows_done);
        self.spinner = Some(bar);
    }
}

impl Out {
    /// An event of a run: a JSON line (with its run id, sequence number and
    /// time), or rendered for people.
    pub fn stamped(&mut self, e: &Stamped) {
        if self.human() {
            self.event(&e.event);
        } else if let Ok(s) = serde_json::to_string(e) {
            println!("{s}");
        }
    }
}

impl EventSink for Out {
    fn event(&mut self, e: &Event) {
        if !self.human() {
            if let Ok(s) = serde_json::to_string(e) {
                println!("{s}");
            }
            return;
        }
        if self.quiet {
            return;
        }
        match e {
            Event::LockWaiting { lock } => {
                self.waited_for_lock = true;
                eprintln!("waiting for another instar run to release the lock on {lock}…")
            }
            Event::LockAcquired { waited_ms } if self.waited_for_lock => {
                eprintln!("lock acquired after {waited_ms} ms")
            }
            Event::BackupTaken { id, path } => println!("backup {id} taken ({path})"),
            Event::BackupRestored { id } => println!("restored backup {id}"),
            Event::MigrationStarted {
                version,
                name,
                direction,
                resumed_from,
                statements,
            } => self.migration_started(version, name, *direction, *resumed_from, *statements),
            Event::StatementStarted {
                version,
                line,
                summary,
                ..
            } => {
                if let Some(s) = &self.spinner {
                    s.set_message(format!("{version} line {line}: {summary}"));
                }
                if self.verbose {
                    eprintln!("  line {line}: {summary}");
                }
            }
            Event::DataStarted {
                version,
                rows_total,
                rows_done,
            } => self.data_started(version, *rows_total, *rows_done),
            Event::BatchFinished {
                rows_done,
                batch,
                rows_total,
                rows_per_sec,
                ..
            } => {
                if let Some(b) = &self.spinner {
                    b.set_position(*rows_done);
                    b.set_message(format!("batch {batch}"));
                }
                if self.verbose {
                    eprintln!(
                        "  batch {batch}: {rows_done}/{rows_total} rows, {rows_per_sec:.0} rows/s"
                    );
                }
            }
            Event::SlicesWaiting {
                version,
                rows_done,
                rows_total,
                held_by,
            } => match &self.spinner {
                Some(b) => {
                    b.set_position(*rows_done);
                    b.set_message(format!("waiting for {} slice(s) other workers hold", held_by.len()));
                }
                None => println!(
                    "{version}: {rows_done} of {rows_total} rows; waiting for slices other workers hold ({})",
                    held_by.join(", ")
                ),
            },
            Event::DataPaused {
                version,
                rows_done,
                rows_total,
            } => {
                self.finish_spinner();
                println!("paused {version} at {rows_done} of {rows_total} rows (checkpoint saved)");
            }
            Event::OpCompiled {
                version,
                op,
                line,
                summary,
            } => println!("{version} op {op} (line {line}): {summary}"),
            Event::Retry {
                what,
                code,
                attempt,
                backoff_ms,
            } => {
                self.finish_spinner();
                eprintln!(
                    "{what}: rolled back by the database ({code}: a serialization failure or a deadlock), attempt {attempt}; running it again in {backoff_ms} ms"
                );
            }
            Event::LockRetry {
                what,
                attempt,
                of,
                backoff_ms,
                holders,
            } => {
                self.finish_spinner();
                eprintln!(
                    "{what}: lock not granted within the lock timeout (attempt {attempt} of {of}); held by {holders}; trying again in {backoff_ms} ms"
                );
            }
            Event::MigrationFinished {
                version,
                direction,
                duration_ms,
                ..
            } => {
                self.finish_spinner();
                let done = if *direction == Direction::Up {
                    "applied"
                } else {
                    "reverted"
                };
                println!("{done} {version} ({duration_ms} ms)");
            }
            Event::MigrationFailed { version, .. } => {
                self.finish_spinner();
                eprintln!("FAILED {version}");
            }
            Event::RunStarted { plan } if self.verbose => {
                eprintln!("plan: {} step(s)", plan.len());
            }
            Event::RunFinished {
                migrations,
                duration_ms,
                cancelled,
            } => {
                self.finish_spinner();
                let how = if *cancelled { " (cancelled)" } else { "" };
                println!("{migrations} migration(s) in {duration_ms} ms{how}");
            }
            _ => {}
        }
    }
}

/// A run's event in a command that renders its own: printed as a JSON line
/// in JSON mode; `true` when the caller has nothing more to show (JSON mode,
/// or `--quiet`).
pub fn json_event_or_quiet(json: bool, human: bool, e: &impl Serialize) -> bool {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    }
    json || !human
}
