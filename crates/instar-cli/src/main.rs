//! The `instar` command line: arguments → settings → the service layer →
//! rendering → exit code.
//!
//! Exit codes: 0 success; 1 a check failed (`validate`, `status --check`,
//! `status --require`); 2 an error (bad input, refused plan, failed migration,
//! lock timeout, connection failure).

// Errors carry what failed and the state it left; they happen once per command.
#![allow(clippy::result_large_err)]

mod args;
mod commands;
mod render;

use clap::Parser;

fn main() {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let json = cli.global.format == args::Format::Json;
    let mut out = render::Out::new(cli.global.format, cli.global.quiet, cli.global.verbose);
    // The server answers many clients while a run goes on: worker threads.
    let runtime = if matches!(cli.command, args::Command::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let code = match runtime {
        Ok(rt) => match rt.block_on(commands::run(cli, &mut out)) {
            Ok(code) => code,
            Err(e) => {
                // One error, said once: a JSON object on stdout, or text on stderr.
                let text = message(&e);
                if json {
                    println!("{}", serde_json::json!({ "error": text }));
                } else {
                    eprintln!("error: {text}");
                }
                2
            }
        },
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            2
        }
    };
    std::process::exit(code);
}

/// The error and its causes, each said once: many errors already include their
/// cause's text (`cannot read f: Permission denied`), which the chain repeats.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.is_empty() {
            text = c;
        } else if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// Bad arguments: clap's message (help and version exit 0), or with
/// `--format json` anywhere on the line, one JSON error object. Exit code 2.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let args: Vec<String> = std::env::args().collect();
    let json = args
        .windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json");
    if json {
        let text = e.kind().to_string();
        let detail = e.to_string();
        println!(
            "{}",
            serde_json::json!({ "error": detail.trim(), "kind": text })
        );
        std::process::exit(2);
    }
    e.exit()
}
