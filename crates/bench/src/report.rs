//! The results: a table on stdout, the issue's targets as ratios, and the same as JSON.

use crate::jobs::{Row, AWS, FLOOR, FULL, OURS_S3, RESTORE};
use serde::Serialize;

/// One target and where this run stands.
#[derive(Debug, Serialize)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The measured ratio.
    pub ratio: f64,
    /// The goal, in words.
    pub goal: &'static str,
    /// Whether this run meets it, or cannot say.
    pub verdict: Verdict,
}

/// Where a run stands against one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The ratio meets the goal.
    Met,
    /// It does not.
    NotMet,
    /// Not judged: a job the ratio uses was [unsteady], so the ratio measures the disk
    /// (a full backup slowed by the disk makes the incrementals' ratios look met).
    Unsteady,
}

impl Verdict {
    fn words(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT MET",
            Verdict::Unsteady => "not judged: a job it uses is unsteady",
        }
    }
}

/// The row of `job` by `tool`.
fn row<'a>(rows: &'a [Row], job: &str, tool: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.job == job && r.tool == tool)
}

/// The issue's targets that this run's rows can answer.
pub fn targets<'a>(rows: &'a [Row]) -> Vec<Target> {
    let ours = "influxdb3-backup";
    let full = row(rows, "full backup", ours);
    let mut out = Vec::new();
    let mut push =
        |what: String, ratio: Option<(&Row, &Row)>, goal: &'static str, ok: fn(f64) -> bool| {
            if let Some((a, b)) = ratio {
                let ratio = a.measured.seconds / b.measured.seconds.max(1e-9);
                let verdict = if is_unsteady(a) || is_unsteady(b) {
                    Verdict::Unsteady
                } else if ok(ratio) {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                };
                out.push(Target {
                    what,
                    ratio,
                    goal,
                    verdict,
                });
            }
        };
    let over = |a: Option<&'a Row>, b: Option<&'a Row>| Some((a?, b?));
    push(
        "full backup: ours / cp -r".into(),
        over(full, row(rows, "full backup", "cp -r")),
        "<= 1",
        |r| r <= 1.0,
    );
    push(
        "full backup: ours / cp -r + sync".into(),
        over(full, row(rows, "full backup", "cp -r + sync")),
        "<= 1",
        |r| r <= 1.0,
    );
    push(
        "restore: ours / cp -r".into(),
        over(row(rows, "restore", ours), row(rows, "restore", "cp -r")),
        "<= 1",
        |r| r <= 1.0,
    );
    push(
        "no-change incremental / full backup".into(),
        over(row(rows, "incremental, no change", ours), full),
        "<= 0.05",
        |r| r <= 0.05,
    );
    push(
        "1% incremental / full backup".into(),
        over(row(rows, "incremental, 1% new files", ours), full),
        "<= 0.10",
        |r| r <= 0.10,
    );
    push(
        "full backup: restic / ours".into(),
        over(row(rows, "full backup", "restic backup"), full),
        ">= 3",
        |r| r >= 3.0,
    );
    push(
        "no-change incremental: restic / ours".into(),
        over(
            row(rows, "incremental, no change", "restic backup"),
            row(rows, "incremental, no change", ours),
        ),
        ">= 10",
        |r| r >= 10.0,
    );
    push(
        "backup to S3: aws s3 sync / ours".into(),
        over(
            row(rows, "full backup", AWS),
            row(rows, "full backup", OURS_S3),
        ),
        ">= 1.5",
        |r| r >= 1.5,
    );
    push(
        "restore from S3: aws s3 sync / ours".into(),
        over(row(rows, "restore", AWS), row(rows, "restore", OURS_S3)),
        ">= 1.5",
        |r| r >= 1.5,
    );
    out
}

/// Rounds of one job by one tool whose slowest took more than this times the fastest: the disk
/// (or machine) changed speed during the run.
const UNSTEADY_SPREAD: f64 = 2.0;

/// The rows whose rounds spread wider than [`UNSTEADY_SPREAD`], described: a ratio that uses one
/// of them says more about the disk than about the tools (a full backup's median inflated by a
/// slow disk makes the incrementals' ratios look better than they are).
pub fn unsteady(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| is_unsteady(r))
        .map(|r| {
            let (fastest, slowest) = spread(r);
            format!(
                "{} by {}: rounds from {fastest:.3} s to {slowest:.3} s ({:.1}x)",
                r.job,
                r.tool,
                slowest / fastest.max(1e-9)
            )
        })
        .collect()
}

/// The fastest and the slowest round of a row.
fn spread(row: &Row) -> (f64, f64) {
    let fastest = row.rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = row.rounds.iter().copied().fold(0.0, f64::max);
    (fastest, slowest)
}

fn is_unsteady(row: &Row) -> bool {
    let (fastest, slowest) = spread(row);
    row.rounds.len() > 1 && slowest > UNSTEADY_SPREAD * fastest
}

/// The floor of the no-change incrementals, warm and cold ([`FLOOR`]), against the full backup
/// and against ours: how much of a no-change incremental's goal the kernel's share alone takes.
pub fn floors(rows: &[Row]) -> Vec<String> {
    let ours = "influxdb3-backup";
    let full = row(rows, "full backup", ours);
    ["incremental, no change", "incremental, no change, cold"]
        .into_iter()
        .filter_map(|job| {
            let floor = row(rows, job, FLOOR)?;
            let mine = row(rows, job, ours)?;
            let of_full = full.map_or_else(String::new, |full| {
                let share = floor.measured.seconds / full.measured.seconds.max(1e-9);
                format!(" = {:.1}% of the full backup", 100.0 * share)
            });
            Some(format!(
                "{job}: its floor (a stat of each leaf directory, one thread) {:.3} s{of_full}; \
                 ours took {:.1}x that",
                floor.measured.seconds,
                mine.measured.seconds / floor.measured.seconds.max(1e-9)
            ))
        })
        .collect()
}

/// The S3 jobs that both tools ran with the server's CPU time taken, each described: the CPU
/// time of client and server, per GiB for the client (what counts where the server has machines
/// of its own), the floor the two set on `cores` shared cores, and the most any client could
/// gain over `aws s3 sync` on this machine, whose server alone needs `server CPU / cores`.
pub fn s3_cpu(rows: &[Row], cores: usize) -> Vec<String> {
    [FULL, RESTORE]
        .into_iter()
        .filter_map(|job| {
            let (ours, aws) = (row(rows, job, OURS_S3)?, row(rows, job, AWS)?);
            let (ours_server, aws_server) = (
                ours.measured.server_cpu_seconds?,
                aws.measured.server_cpu_seconds?,
            );
            let cores = cores.max(1) as f64;
            let per_gib = |r: &Row| r.measured.cpu_seconds / (r.bytes.max(1) as f64 / GIB);
            let floor = |r: &Row, server: f64| (r.measured.cpu_seconds + server) / cores;
            Some(format!(
                "{job}, S3: client CPU ours {:.1} s ({:.2} s/GiB), aws {:.1} s ({:.2} s/GiB): \
                 aws {:.1}x ours; server CPU {ours_server:.1} s and {aws_server:.1} s; \
                 (client + server) / {cores} cores {:.1} s and {:.1} s (wall {:.1} s and \
                 {:.1} s); a client costing nothing: at most {:.2}x aws here",
                ours.measured.cpu_seconds,
                per_gib(ours),
                aws.measured.cpu_seconds,
                per_gib(aws),
                aws.measured.cpu_seconds / ours.measured.cpu_seconds.max(1e-9),
                floor(ours, ours_server),
                floor(aws, aws_server),
                ours.measured.seconds,
                aws.measured.seconds,
                aws.measured.seconds / (ours_server / cores).max(1e-9),
            ))
        })
        .collect()
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A row's CPU time: the command's, and the server's after a `+` where it was taken.
fn cpu_cell(r: &Row) -> String {
    match r.measured.server_cpu_seconds {
        Some(server) => format!("{:.2}+{server:.2}", r.measured.cpu_seconds),
        None => format!("{:.2}", r.measured.cpu_seconds),
    }
}

/// Print the table and the targets.
pub fn print(rows: &[Row], targets: &[Target], cores: usize) {
    println!(
        "{:<28} {:<24} {:>10} {:>10} {:>12} {:>11} {:>10}",
        "JOB", "TOOL", "SECONDS", "MiB/s", "PEAK RSS", "CPU s", "OURS/THIS"
    );
    for r in rows {
        println!(
            "{:<28} {:<24} {:>10.3} {:>10.1} {:>8.1} MiB {:>11} {:>10}",
            r.job,
            r.tool,
            r.measured.seconds,
            r.mib_per_second,
            r.measured.peak_rss_mib,
            cpu_cell(r),
            r.ours_over_this
                .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"))
        );
    }
    println!("(CPU s: user + system of the command; for S3 jobs + the local S3 server's)");
    println!();
    for t in targets {
        println!(
            "{:<44} {:>8.3}  goal {:<7} {}",
            t.what,
            t.ratio,
            t.goal,
            t.verdict.words()
        );
    }
    let s3_cpu = s3_cpu(rows, cores);
    if !s3_cpu.is_empty() {
        println!();
        for line in s3_cpu {
            println!("{line}");
        }
    }
    let floors = floors(rows);
    if !floors.is_empty() {
        println!();
        for line in floors {
            println!("{line}");
        }
    }
    let unsteady = unsteady(rows);
    if !unsteady.is_empty() {
        println!();
        println!("unsteady (ratios that use these measure the disk as much as the tools):");
        for line in unsteady {
            println!("  {line}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::measure::Measured;

    fn row(job: &'static str, rounds: &[f64]) -> Row {
        by("influxdb3-backup", job, rounds)
    }

    fn by(tool: &'static str, job: &'static str, rounds: &[f64]) -> Row {
        Row {
            job,
            tool,
            measured: Measured {
                seconds: rounds[rounds.len() / 2],
                peak_rss_mib: 1.0,
                cpu_seconds: 1.0,
                server_cpu_seconds: None,
            },
            rounds: rounds.to_vec(),
            bytes: 1,
            mib_per_second: 1.0,
            ours_over_this: None,
        }
    }

    #[test]
    fn rounds_that_spread_more_than_twofold_are_named() {
        let rows = [
            row("full backup", &[9.24, 5.77, 2.95]),
            row("incremental, no change", &[0.348, 0.345, 0.354]),
            row("restore", &[6.0]),
        ];
        let unsteady = unsteady(&rows);
        assert_eq!(unsteady.len(), 1, "{unsteady:?}");
        assert!(
            unsteady[0].starts_with(
                "full backup by influxdb3-backup: rounds from 2.950 s to 9.240 s (3.1x)"
            ),
            "{}",
            unsteady[0]
        );
    }

    fn verdict(targets: &[Target], what: &str) -> Verdict {
        targets.iter().find(|t| t.what == what).unwrap().verdict
    }

    #[test]
    fn a_ratio_that_uses_an_unsteady_job_is_not_judged() {
        let steady_full = [
            row("full backup", &[3.0, 3.1, 3.2]),
            row("incremental, no change", &[0.10, 0.12, 0.11]),
            row("incremental, 1% new files", &[0.50, 0.40, 0.45]),
        ];
        let targets = targets(&steady_full);
        assert_eq!(
            verdict(&targets, "no-change incremental / full backup"),
            Verdict::Met
        );
        assert_eq!(
            verdict(&targets, "1% incremental / full backup"),
            Verdict::NotMet
        );
        // A full backup slowed threefold by the disk in one round: its median makes the 1%
        // incremental look within 10%, which the bench must not call met.
        let unsteady_full = [
            row("full backup", &[3.0, 9.3, 5.0]),
            row("incremental, 1% new files", &[0.40, 0.45, 0.42]),
        ];
        let targets = super::targets(&unsteady_full);
        assert_eq!(targets[0].what, "1% incremental / full backup");
        assert!(targets[0].ratio < 0.10);
        assert_eq!(targets[0].verdict, Verdict::Unsteady);
    }

    #[test]
    fn the_floor_is_reported_against_the_full_backup_and_ours() {
        let rows = [
            row("full backup", &[4.0]),
            row("incremental, no change", &[0.30]),
            by(FLOOR, "incremental, no change", &[0.20]),
        ];
        let floors = floors(&rows);
        assert_eq!(floors.len(), 1, "{floors:?}");
        assert!(
            floors[0].contains("0.200 s = 5.0% of the full backup"),
            "{}",
            floors[0]
        );
        assert!(floors[0].ends_with("ours took 1.5x that"), "{}", floors[0]);
    }

    #[test]
    fn the_s3_jobs_cpu_is_set_beside_the_floor_it_puts_on_the_wall_time() {
        let s3 = |tool, seconds, cpu, server| {
            let mut r = by(tool, "full backup", &[seconds]);
            r.bytes = 3 * 1024 * 1024 * 1024;
            r.measured.cpu_seconds = cpu;
            r.measured.server_cpu_seconds = server;
            r
        };
        let rows = [
            s3(OURS_S3, 20.0, 6.0, Some(32.0)),
            s3(AWS, 27.0, 18.0, Some(33.0)),
        ];
        let lines = s3_cpu(&rows, 2);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        for part in [
            "client CPU ours 6.0 s (2.00 s/GiB), aws 18.0 s (6.00 s/GiB): aws 3.0x ours",
            "server CPU 32.0 s and 33.0 s",
            "(client + server) / 2 cores 19.0 s and 25.5 s (wall 20.0 s and 27.0 s)",
            "a client costing nothing: at most 1.69x aws here",
        ] {
            assert!(line.contains(part), "{part:?} not in {line}");
        }
        // Without the server's figure (an emulator the bench did not start) there is no line.
        let rows = [
            s3(OURS_S3, 20.0, 6.0, None),
            s3(AWS, 27.0, 18.0, Some(33.0)),
        ];
        assert!(s3_cpu(&rows, 2).is_empty());
    }
}
