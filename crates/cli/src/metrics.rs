//! `--metrics-file`: the outcome of a `create`, `verify`, `restore`, `prune` or `copy` run in
//! Prometheus' text format, for node_exporter's textfile collector (or any scraper of such
//! files), so that an alert can fire when the last successful run grows old. The file is
//! replaced whole (written beside it, then renamed) after every run that completes or fails;
//! an interrupted run leaves it as it was.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prefix of every metric name.
const PREFIX: &str = "influxdb3_backup";

/// The metrics of one run of a command, written when it ends ([`Recorder::write`]).
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    /// `create` or `verify`: part of every name.
    command: &'static str,
    /// Labels of every sample (the repository, the node).
    labels: Vec<(&'static str, String)>,
    /// Figures of the run's report: name (after the command's), help, value.
    figures: Mutex<Vec<(&'static str, &'static str, f64)>>,
}

impl Recorder {
    /// Metrics of a run of `command` with `labels`, to be written to `path`.
    pub fn new(path: PathBuf, command: &'static str, labels: Vec<(&'static str, String)>) -> Self {
        Recorder {
            path,
            command,
            labels,
            figures: Mutex::new(Vec::new()),
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Add a figure of the run's report, written as `<prefix>_<command>_last_<name>`.
    pub fn figure(&self, name: &'static str, help: &'static str, value: f64) {
        let mut figures = self
            .figures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        figures.push((name, help, value));
    }

    /// Write the file for a run that ended with `exit_code` after `duration_seconds`. The time of
    /// the last success is this run's when it succeeded, else the one the file held before.
    pub fn write(&self, exit_code: u8, duration_seconds: f64) -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let last_success = if exit_code == 0 {
            Some(now)
        } else {
            std::fs::read_to_string(&self.path)
                .ok()
                .and_then(|text| self.sample_in(&text, "success_timestamp_seconds"))
        };
        let mut text = String::new();
        self.gauge(
            &mut text,
            "run_timestamp_seconds",
            "When the last run ended (Unix time).",
            now,
        );
        if let Some(success) = last_success {
            let help = "When the last successful run ended (Unix time).";
            self.gauge(&mut text, "success_timestamp_seconds", help, success);
        }
        let help = "Exit code of the last run (0: success; see the README's table).";
        self.gauge(&mut text, "exit_code", help, f64::from(exit_code));
        let help = "How long the last run took.";
        self.gauge(&mut text, "duration_seconds", help, duration_seconds);
        if exit_code == 0 || exit_code == crate::exit::FINDINGS {
            let figures = self
                .figures
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (name, help, value) in figures.iter() {
                self.gauge(&mut text, name, help, *value);
            }
        }
        replace(&self.path, &text)
    }

    /// Append one gauge with this run's labels.
    fn gauge(&self, text: &mut String, name: &str, help: &str, value: f64) {
        let name = format!("{PREFIX}_{}_last_{name}", self.command);
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name}{{{}}} {value}", self.label_text());
    }

    /// `name="value",…`, values escaped as the text format requires.
    fn label_text(&self) -> String {
        self.labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The value of this command's gauge `last_<name>` with this run's labels in `text`.
    fn sample_in(&self, text: &str, name: &str) -> Option<f64> {
        let series = format!(
            "{PREFIX}_{}_last_{name}{{{}}} ",
            self.command,
            self.label_text()
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|value| value.trim().parse().ok())
    }
}

impl Recorder {
    /// The figures of a backup.
    pub fn create_figures(&self, r: &crate::ops::create::CreateReport) {
        self.figure(
            "bytes",
            "Bytes of the objects the last backup holds.",
            r.bytes as f64,
        );
        self.figure(
            "objects",
            "Objects the last backup holds.",
            r.entries as f64,
        );
        let help = "Bytes the last backup read from the source.";
        self.figure("bytes_read", help, r.bytes_read as f64);
        let help = "Bytes of new content the last backup uploaded (before compression).";
        self.figure("bytes_uploaded", help, r.bytes_uploaded as f64);
        let help = "Whether the last backup is consistent (1) or was kept with findings (0).";
        self.figure("consistent", help, f64::from(u8::from(r.consistent)));
    }

    /// The figures of a verification.
    pub fn verify_figures(&self, r: &crate::ops::verify::VerifyReport) {
        let failed = r.backups.iter().filter(|b| !b.ok).count();
        let help = "Backups the last verification checked.";
        self.figure("backups", help, r.backups.len() as f64);
        let help = "Backups the last verification failed.";
        self.figure("backups_failed", help, failed as f64);
        let read: u64 = r.backups.iter().map(|b| b.bytes_read).sum();
        let help = "Bytes the last verification read back (--read-data, --read-data-subset).";
        self.figure("bytes_read", help, read as f64);
    }

    /// The figures of a restore (a drill, scheduled to prove the backups restore).
    pub fn restore_figures(&self, r: &crate::ops::restore::RestoreReport) {
        let help = "Objects the last restore wrote.";
        self.figure("objects_written", help, r.objects_written as f64);
        let help = "Bytes the last restore wrote.";
        self.figure("bytes_written", help, r.bytes_written as f64);
        let help = "Objects the last restore read back and found as the backup holds them.";
        self.figure("objects_verified", help, r.objects_verified as f64);
    }

    /// The figures of a retention run.
    pub fn prune_figures(&self, r: &crate::ops::prune::PruneReport) {
        let kept = r.decisions.iter().filter(|d| d.keep).count();
        let help = "Backups the last retention run removed.";
        self.figure("backups_removed", help, (r.decisions.len() - kept) as f64);
        let help = "Backups the last retention run kept.";
        self.figure("backups_kept", help, kept as f64);
        let help = "Bytes the last retention run freed.";
        self.figure("bytes_freed", help, r.gc.bytes_freed as f64);
    }

    /// The figures of an off-site copy.
    pub fn copy_figures(&self, r: &crate::ops::copy::CopyReport) {
        let help = "Backups the last copy sent.";
        self.figure("backups_copied", help, r.copied.len() as f64);
        let help = "Backups the last copy found the target holding already.";
        self.figure("backups_present", help, r.skipped.len() as f64);
        let help = "Bytes the last copy sent.";
        self.figure("bytes_copied", help, r.bytes_copied as f64);
    }
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replace `path` with `text` whole: a scraper never reads half a file.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut staged = path.as_os_str().to_owned();
    staged.push(".tmp");
    std::fs::write(&staged, text)?;
    std::fs::rename(&staged, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn recorder(path: &Path) -> Recorder {
        let labels = vec![
            ("repository", "/b \"x\"".to_string()),
            ("node", "node0".into()),
        ];
        Recorder::new(path.to_path_buf(), "create", labels)
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_drops_the_figures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.prom");
        let first = recorder(&path);
        first.figure("bytes", "Bytes.", 42.0);
        first.write(0, 1.5).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(
                r#"influxdb3_backup_create_last_bytes{repository="/b \"x\"",node="node0"} 42"#
            ),
            "{text}"
        );
        let success = first.sample_in(&text, "success_timestamp_seconds").unwrap();
        assert_eq!(
            first.sample_in(&text, "run_timestamp_seconds"),
            Some(success)
        );

        std::thread::sleep(std::time::Duration::from_millis(20));
        let failed = recorder(&path);
        failed.figure("bytes", "Bytes.", 7.0);
        failed.write(13, 0.1).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(failed.sample_in(&text, "exit_code"), Some(13.0));
        assert_eq!(
            failed.sample_in(&text, "success_timestamp_seconds"),
            Some(success)
        );
        assert!(failed.sample_in(&text, "run_timestamp_seconds").unwrap() > success);
        assert_eq!(failed.sample_in(&text, "bytes"), None, "{text}");
        assert!(!dir.path().join("backup.prom.tmp").exists());
    }

    #[test]
    fn a_first_run_that_fails_has_no_success_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.prom");
        let failed = recorder(&path);
        failed.write(16, 0.1).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(failed.sample_in(&text, "success_timestamp_seconds"), None);
        assert_eq!(failed.sample_in(&text, "exit_code"), Some(16.0));
    }
}
