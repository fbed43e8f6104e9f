//! Entry point: parse, run, map the outcome to a documented exit code (see `exit`).

use clap::Parser;
use influxdb3_backup::output::tell;
use influxdb3_backup::{args::Cli, exit, run};
use std::process::ExitCode;

/// A backup of many small files allocates and frees per object (paths, entries, buffers):
/// mimalloc takes ~30% off the user CPU of a full backup of 100 000 files and ~10% off a
/// no-change incremental (DESIGN §2). Built without transparent huge pages (`no_thp` in the
/// workspace manifest): zeroing re-touched 2 MiB pages took half the CPU of an incremental.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for blocking file I/O (local stores run every call on one): twice the cores, at least
/// four. Tokio's default (512) lets a run of small files wake hundreds of threads, and the
/// futex wake-ups and context switches then cost more CPU than the copying (measured).
fn blocking_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cores).max(4)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking_threads())
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tell(format_args!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FAILURE);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => Ok(result),
            signal = stop_signal() => {
                // The work is dropped here; its repository locks must not outlive it.
                ib3_repo::lock::release_all_held().await;
                Err(signal)
            }
        }
    });
    match outcome {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(error)) => {
            tell(format_args!("error: {error:#}"));
            if let Some(hint) = exit::hint_of(&error) {
                tell(format_args!("hint: {hint}"));
            }
            ExitCode::from(exit::code_of(&error))
        }
        Err(Stop::Interrupt) => {
            tell(format_args!("interrupted: {}", what_was_committed()));
            ExitCode::from(exit::INTERRUPTED)
        }
        Err(Stop::Terminate) => {
            tell(format_args!(
                "terminated (SIGTERM): {}",
                what_was_committed()
            ));
            ExitCode::from(exit::TERMINATED)
        }
    }
}

/// A signal that stops a run cleanly.
enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM: what systemd and Kubernetes send first, before they kill. Unhandled, it left
    /// the run's lock behind, and a lock from a pod that is gone blocks for 30 minutes.
    Terminate,
}

/// The first stop signal to arrive. A handler that cannot be installed never fires: the run
/// then goes on, as it would without one.
async fn stop_signal() -> Stop {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Stop::Interrupt,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        stop = interrupt => stop,
        stop = terminate() => stop,
    }
}

#[cfg(unix)]
async fn terminate() -> Stop {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
            Stop::Terminate
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() -> Stop {
    std::future::pending().await
}

/// What an interrupted run leaves: the backups it committed before the signal (complete), or
/// nothing (a backup exists only once its manifest is written).
fn what_was_committed() -> String {
    use ib3_repo::stored::{commits_in_this_process, Commit};
    let commits = commits_in_this_process();
    let ids = |state| {
        commits
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (done, started) = (ids(Commit::Done), ids(Commit::Started));
    if !started.is_empty() {
        return format!("while committing backup {started}: it may or may not exist (see `list`)");
    }
    if !done.is_empty() {
        return format!("after committing backup {done}, which is complete; only the clean-up after it was cut short (a later create or prune finishes it)");
    }
    "nothing was committed (a backup exists only once its manifest is written; a restore left incomplete is flagged on the next run)".into()
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
