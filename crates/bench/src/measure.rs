//! Running one command and measuring it: wall time, and the peak resident set size and CPU time
//! of that command alone. Both come from `getrusage(RUSAGE_CHILDREN)` taken by a fresh
//! intermediate process (this binary's hidden `measure-child`) whose only child is the command,
//! so earlier jobs never leak into a later job's figure. Where the command talks to a server on
//! this machine (the local S3 server), the server's CPU time over the same span is read from
//! `/proc/<pid>/stat`: client and server share the cores, so a wall time is only understood
//! beside both.

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
    cpu_seconds: f64,
}

/// Wall time, peak RSS and CPU time of one command.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Measured {
    /// Wall time in seconds.
    pub seconds: f64,
    /// Peak resident set size in MiB.
    pub peak_rss_mib: f64,
    /// CPU time (user and system) of the command and its children, in seconds.
    pub cpu_seconds: f64,
    /// CPU time the watched server spent while the command ran, in seconds (S3 jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_seconds: Option<f64>,
}

/// Run `cmd` through `measure-child`, its output in `log`, taking the CPU time that the process
/// `server` (when given) spends meanwhile; fail when the command fails.
pub fn measure(cmd: &Cmd, log: &Path, server: Option<u32>) -> Result<Measured> {
    let me = std::env::current_exe().context("locating the bench binary")?;
    let server_before = server.map(process_cpu_seconds).transpose()?;
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
    let server_cpu_seconds = match (server, server_before) {
        (Some(pid), Some(before)) => Some(process_cpu_seconds(pid)? - before),
        _ => None,
    };
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
        cpu_seconds: report.cpu_seconds,
        server_cpu_seconds,
    })
}

/// CPU time (user and system) process `pid` has used so far, in seconds, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}: is the server (pid {pid}) running?"))?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start at field 3 (state), so utime (14) and stime (15) are the 12th and 13th of them.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{path}: unexpected contents"))?;
    anyhow::ensure!(ticks.len() == 2, "{path}: fewer fields than expected");
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .context("sysconf(CLK_TCK)")?;
    Ok((ticks[0] + ticks[1]) as f64 / per_second as f64)
}

/// Seconds in a `timeval`.
fn seconds(t: nix::sys::time::TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
}

/// The hidden `measure-child` command: run `argv` with its output appended to `log`, wait, and
/// print its exit status, peak RSS and CPU time (the only child of this process) as JSON.
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
        cpu_seconds: seconds(usage.user_time()) + seconds(usage.system_time()),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A process's CPU time is read from `/proc` and grows as it works.
    #[test]
    fn the_cpu_time_of_a_process_is_read_and_grows() {
        let me = std::process::id();
        let before = process_cpu_seconds(me).unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        while process_cpu_seconds(me).unwrap() <= before {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(
                started.elapsed().as_secs() < 30,
                "no CPU time counted after 30 s"
            );
        }
        assert!(process_cpu_seconds(me).unwrap() > before);
        assert!(process_cpu_seconds(u32::MAX).is_err());
    }
}
