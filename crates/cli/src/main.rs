//! Entry point: parse, run, map the outcome to a documented exit code (see `exit`).

use clap::Parser;
use influxdb3_backup::{args::Cli, exit, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => Some(result),
            _ = tokio::signal::ctrl_c() => {
                // The work is dropped here; its repository locks must not outlive it.
                ib3_repo::lock::release_all_held().await;
                None
            }
        }
    });
    match outcome {
        Some(Ok(code)) => ExitCode::from(code),
        Some(Err(error)) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = exit::hint_of(&error) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(exit::code_of(&error))
        }
        None => {
            eprintln!("interrupted: nothing was committed (a backup exists only once its manifest is written; a restore left incomplete is flagged on the next run)");
            ExitCode::from(exit::INTERRUPTED)
        }
    }
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default: warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
