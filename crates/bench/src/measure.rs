//! Running one command and measuring it: wall time, and the peak resident set size of that
//! command alone. The peak comes from `getrusage(RUSAGE_CHILDREN)` taken by a fresh
//! intermediate process (this binary's hidden `measure-child`) whose only child is the command,
//! so earlier jobs never leak into a later job's figure.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Cmd {
    /// `program args…`.
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        Cmd {
            argv: argv.iter().map(|a| a.as_ref().to_string()).collect(),
            env: Vec::new(),
        }
    }

    /// With environment variables.
    pub fn env(mut self, env: &[(String, String)]) -> Self {
        self.env.extend_from_slice(env);
        self
    }
}

/// What the intermediate process reports.
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    status: i32,
    maxrss_kib: i64,
}

/// Wall time and peak RSS of one command.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Measured {
    /// Wall time in seconds.
    pub seconds: f64,
    /// Peak resident set size in MiB.
    pub peak_rss_mib: f64,
}

/// Run `cmd` through `measure-child`, its output in `log`; fail when it fails.
pub fn measure(cmd: &Cmd, log: &Path) -> Result<Measured> {
    let me = std::env::current_exe().context("locating the bench binary")?;
    let started = Instant::now();
    let output = Command::new(me)
        .arg("measure-child")
        .arg("--log")
        .arg(log)
        .arg("--")
        .args(&cmd.argv)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {:?}", cmd.argv))?;
    let seconds = started.elapsed().as_secs_f64();
    let report: ChildReport = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("measure-child of {:?} did not report", cmd.argv))?;
    if report.status != 0 {
        bail!(
            "{} exited with {} (output in {})",
            cmd.argv.join(" "),
            report.status,
            log.display()
        );
    }
    Ok(Measured {
        seconds,
        peak_rss_mib: report.maxrss_kib as f64 / 1024.0,
    })
}

/// The hidden `measure-child` command: run `argv` with its output appended to `log`, wait, and
/// print its exit status and peak RSS (the only child of this process) as JSON.
pub fn measure_child(log: &Path, argv: &[String]) -> Result<()> {
    let Some((program, args)) = argv.split_first() else {
        bail!("measure-child: no command");
    };
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let status = Command::new(program)
        .args(args)
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("starting {program}"))?;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .context("getrusage")?;
    let report = ChildReport {
        status: status.code().unwrap_or(-1),
        maxrss_kib: usage.max_rss(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Run a setup command (not measured); fail when it fails.
pub fn setup(cmd: &Cmd, log: &Path) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let (program, args) = cmd.argv.split_first().context("setup: empty command")?;
    let status = Command::new(program)
        .args(args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!(
            "{} failed (output in {})",
            cmd.argv.join(" "),
            log.display()
        );
    }
    Ok(())
}
