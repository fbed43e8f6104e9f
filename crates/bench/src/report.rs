//! The results: a table on stdout, the issue's targets as ratios, and the same as JSON.

use crate::jobs::Row;
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
    /// Whether this run meets it.
    pub met: bool,
}

fn seconds(rows: &[Row], job: &str, tool: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.job == job && r.tool == tool)
        .map(|r| r.measured.seconds)
}

/// The issue's targets that this run's rows can answer.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let ours = "influxdb3-backup";
    let full = seconds(rows, "full backup", ours);
    let mut out = Vec::new();
    let mut push = |what: String, ratio: Option<f64>, goal: &'static str, ok: fn(f64) -> bool| {
        if let Some(ratio) = ratio {
            out.push(Target {
                what,
                ratio,
                goal,
                met: ok(ratio),
            });
        }
    };
    let over = |a: Option<f64>, b: Option<f64>| Some(a? / b?.max(1e-9));
    push(
        "full backup: ours / cp -r".into(),
        over(full, seconds(rows, "full backup", "cp -r")),
        "<= 1",
        |r| r <= 1.0,
    );
    push(
        "full backup: ours / cp -r + sync".into(),
        over(full, seconds(rows, "full backup", "cp -r + sync")),
        "<= 1",
        |r| r <= 1.0,
    );
    push(
        "restore: ours / cp -r".into(),
        over(
            seconds(rows, "restore", ours),
            seconds(rows, "restore", "cp -r"),
        ),
        "<= 1",
        |r| r <= 1.0,
    );
    push(
        "no-change incremental / full backup".into(),
        over(seconds(rows, "incremental, no change", ours), full),
        "<= 0.05",
        |r| r <= 0.05,
    );
    push(
        "1% incremental / full backup".into(),
        over(seconds(rows, "incremental, 1% new files", ours), full),
        "<= 0.10",
        |r| r <= 0.10,
    );
    push(
        "full backup: restic / ours".into(),
        over(seconds(rows, "full backup", "restic backup"), full),
        ">= 3",
        |r| r >= 3.0,
    );
    push(
        "no-change incremental: restic / ours".into(),
        over(
            seconds(rows, "incremental, no change", "restic backup"),
            seconds(rows, "incremental, no change", ours),
        ),
        ">= 10",
        |r| r >= 10.0,
    );
    let s3 = "influxdb3-backup (s3)";
    push(
        "backup to S3: aws s3 sync / ours".into(),
        over(
            seconds(rows, "full backup", "aws s3 sync"),
            seconds(rows, "full backup", s3),
        ),
        ">= 1.5",
        |r| r >= 1.5,
    );
    push(
        "restore from S3: aws s3 sync / ours".into(),
        over(
            seconds(rows, "restore", "aws s3 sync"),
            seconds(rows, "restore", s3),
        ),
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
        .filter_map(|r| {
            let fastest = r.rounds.iter().copied().fold(f64::INFINITY, f64::min);
            let slowest = r.rounds.iter().copied().fold(0.0, f64::max);
            (r.rounds.len() > 1 && slowest > UNSTEADY_SPREAD * fastest).then(|| {
                format!(
                    "{} by {}: rounds from {fastest:.3} s to {slowest:.3} s ({:.1}x)",
                    r.job,
                    r.tool,
                    slowest / fastest.max(1e-9)
                )
            })
        })
        .collect()
}

/// Print the table and the targets.
pub fn print(rows: &[Row], targets: &[Target]) {
    println!(
        "{:<28} {:<24} {:>10} {:>10} {:>12} {:>10}",
        "JOB", "TOOL", "SECONDS", "MiB/s", "PEAK RSS", "OURS/THIS"
    );
    for r in rows {
        println!(
            "{:<28} {:<24} {:>10.3} {:>10.1} {:>8.1} MiB {:>10}",
            r.job,
            r.tool,
            r.measured.seconds,
            r.mib_per_second,
            r.measured.peak_rss_mib,
            r.ours_over_this
                .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"))
        );
    }
    println!();
    for t in targets {
        println!(
            "{:<44} {:>8.3}  goal {:<7} {}",
            t.what,
            t.ratio,
            t.goal,
            if t.met { "met" } else { "NOT MET" }
        );
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
        Row {
            job,
            tool: "influxdb3-backup",
            measured: Measured {
                seconds: rounds[rounds.len() / 2],
                peak_rss_mib: 1.0,
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
}
