//! `bench`: measure influxdb3-backup against `cp -r`, `rclone`, `restic` and `aws s3 sync` on the
//! same generated InfluxDB 3 node tree, in one run. Prints figures and writes them as JSON; it
//! never fails on a slow result. Run through `./bench.sh` (installs the reference tools, starts
//! the local S3 server, builds in release mode).

mod jobs;
mod measure;
mod report;
mod trash;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ib3_testkit::generate::{generate, grow, SizeProfile, TreeSpec, TreeState};
use std::path::PathBuf;

/// Benchmark of influxdb3-backup against the tools an operator would otherwise use.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a tree, run every job of every tool on it, print and save the figures.
    Run(RunArgs),
    /// Only write a generated node tree (`<dir>/node0/…`).
    Generate {
        /// Data dir to write.
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        tree: TreeArgs,
    },
    /// Add Parquet files (and their snapshots and WAL) to a generated tree, as a server would
    /// between two backups: for profiling an incremental by hand.
    Grow {
        /// Data dir written by `generate`.
        #[arg(long)]
        dir: PathBuf,
        /// The state `generate` printed (saved to a file); rewritten with the new state.
        #[arg(long)]
        state: PathBuf,
        /// Parquet files to add.
        #[arg(long)]
        files: u64,
    },
    /// Internal: run a command and report its exit status, peak RSS and CPU time as JSON.
    #[command(hide = true)]
    MeasureChild {
        /// Where the command's output goes.
        #[arg(long)]
        log: PathBuf,
        /// The command.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

#[derive(clap::Args)]
struct TreeArgs {
    /// Parquet files.
    #[arg(long, default_value_t = 10_000)]
    files: u64,
    /// Parquet size profile.
    #[arg(long, value_enum, default_value = "small")]
    profile: Profile,
    /// Parquet files per snapshot file.
    #[arg(long, default_value_t = 50)]
    files_per_snapshot: u64,
    /// Parquet files the "server" then hard-deletes (the oldest snapshot files' whole), recorded
    /// in a snapshot file: a node that lost files, whose old snapshot files still name them.
    #[arg(long, default_value_t = 0)]
    removals: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Profile {
    Tiny,
    Small,
    Realistic,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    tree: TreeArgs,
    /// Working directory (emptied first).
    #[arg(long, default_value = "target/bench-work")]
    work: PathBuf,
    /// Tools taking part.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ours,cp,rclone,restic,aws"
    )]
    tools: Vec<jobs::Tool>,
    /// The influxdb3-backup binary [default: next to this one].
    #[arg(long)]
    ours: Option<PathBuf>,
    /// Bucket of the local S3 server for `aws` (endpoint and keys from IB3_TEST_S3_*).
    #[arg(long, default_value = "bench")]
    s3_bucket: String,
    /// Write the results here as JSON [default: WORK/results.json].
    #[arg(long)]
    json: Option<PathBuf>,
    /// Rounds of the full backup by every tool (into S3: fresh prefixes each round, the first
    /// tool alternating), of the restore and the no-change incremental by every tool but the S3
    /// ones, and of the incremental after 1% new files by every tool (1% more before each
    /// round), taken in turn (the median is reported): these ratios are close to their goals
    /// and a disk's (and the local S3 server's) speed drifts between runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    rounds: u32,
}

impl TreeArgs {
    fn spec(&self) -> TreeSpec {
        TreeSpec {
            files_per_snapshot: self.files_per_snapshot,
            removed: self.removals,
            sizes: match self.profile {
                Profile::Tiny => SizeProfile::Tiny,
                Profile::Small => SizeProfile::Small,
                Profile::Realistic => SizeProfile::Realistic,
            },
            ..TreeSpec::new(self.files)
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::MeasureChild { log, argv } => measure::measure_child(&log, &argv),
        Command::Generate { dir, tree } => {
            let state = generate(&dir, &tree.spec())?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(())
        }
        Command::Grow { dir, state, files } => grow_tree(&dir, &state, files),
        Command::Run(args) => run(args),
    }
}

fn grow_tree(dir: &std::path::Path, state_file: &std::path::Path, files: u64) -> Result<()> {
    let read = std::fs::read(state_file)
        .with_context(|| format!("reading the tree state {}", state_file.display()))?;
    let mut state: TreeState = serde_json::from_slice(&read).with_context(|| {
        format!(
            "{} is not the state `bench generate` printed",
            state_file.display()
        )
    })?;
    grow(dir, &mut state, files)?;
    std::fs::write(state_file, serde_json::to_vec_pretty(&state)?)
        .with_context(|| format!("writing {}", state_file.display()))
}

fn run(args: RunArgs) -> Result<()> {
    let ours = match args.ours {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("locating the influxdb3-backup binary")?
            .join("influxdb3-backup"),
    };
    anyhow::ensure!(
        ours.is_file(),
        "{} not found: build it (cargo build --release -p influxdb3-backup) or pass --ours",
        ours.display()
    );
    let mut tools = args.tools.clone();
    tools.retain(|t| available(*t));
    let s3 = tools
        .contains(&jobs::Tool::Aws)
        .then(|| s3(&args.s3_bucket))
        .flatten();
    if s3.is_none() {
        tools.retain(|t| *t != jobs::Tool::Aws);
    }
    let settings = jobs::Settings {
        work: args.work.clone(),
        spec: args.tree.spec(),
        tools,
        ours,
        s3,
        rounds: args.rounds,
    };
    let mut rows = jobs::run(&settings)?;
    jobs::compare(&mut rows);
    let targets = report::targets(&rows);
    report::print(&rows, &targets, cores());
    let json = args.json.unwrap_or_else(|| args.work.join("results.json"));
    let document = serde_json::json!({
        "tree": settings.spec,
        "tools": settings.tools,
        "rows": rows,
        "targets": targets,
        "unsteady": report::unsteady(&rows),
        "floors": report::floors(&rows),
        "s3_cpu": report::s3_cpu(&rows, cores()),
    });
    std::fs::write(&json, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("results written to {}", json.display());
    Ok(())
}

/// Whether a reference tool's binary is on PATH (`ours` always is; `bench.sh` installs the rest).
fn available(tool: jobs::Tool) -> bool {
    let program = match tool {
        jobs::Tool::Ours => return true,
        jobs::Tool::Cp => "cp",
        jobs::Tool::Rclone => "rclone",
        jobs::Tool::Restic => "restic",
        jobs::Tool::Aws => "aws",
    };
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
    if !found {
        eprintln!("skipping {program}: not on PATH (./bench.sh installs it)");
    }
    found
}

/// The local S3 server from the emulator environment (`ci-emulators/up.sh`, `env.sh`).
fn s3(bucket: &str) -> Option<jobs::S3> {
    let var = |name: &str| std::env::var(name).ok();
    let found = Some(jobs::S3 {
        endpoint: var("IB3_TEST_S3_ENDPOINT")?,
        access_key: var("IB3_TEST_S3_ACCESS_KEY")?,
        secret_key: var("IB3_TEST_S3_SECRET_KEY")?,
        bucket: bucket.to_string(),
        server_pid: var("IB3_TEST_S3_SERVER_PID").and_then(|p| p.parse().ok()),
    });
    if found.is_none() {
        eprintln!("skipping aws: no local S3 server (IB3_TEST_S3_* unset; ./bench.sh starts one)");
    }
    found
}

/// The cores the machine offers (that the S3 server and its client share).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
