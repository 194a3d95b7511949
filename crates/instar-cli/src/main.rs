//! The `instar` command line: arguments → settings → the shared runner → rendering → exit code.
//!
//! Exit codes: 0 success; 1 a check failed (`validate`, `status --check`,
//! `status --require`); 2 an error (bad input, refused plan, failed migration,
//! lock timeout, connection failure).

mod args;
mod commands;
mod config;
mod render;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    let json = cli.global.format == args::Format::Json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let code = match runtime {
        Ok(rt) => match rt.block_on(commands::run(cli)) {
            Ok(code) => code,
            Err(e) => {
                if json {
                    println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
                }
                eprintln!("error: {e:#}");
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
