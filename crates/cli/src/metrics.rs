//! `--metrics-file`: the outcome of a `create`, `verify`, `restore`, `prune` or `copy` run in
//! Prometheus' text format, for node_exporter's textfile collector (or any scraper of such
//! files), so that an alert can fire when the last successful run grows old. After every run
//! that completes or fails the file is rewritten (beside it, then renamed): this job's series
//! anew, other jobs' series (another command, another node) as they were, under an exclusive
//! lock on `<file>.lock` so that jobs ending together each keep their update. An interrupted run
//! leaves it as it was.

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
    /// The command (`create`, `verify`, …): part of every name.
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
        let _lock = lock_beside(&self.path)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let earlier = std::fs::read_to_string(&self.path).unwrap_or_default();
        let last_success = if exit_code == 0 {
            Some(now)
        } else {
            self.sample_in(&earlier, "success_timestamp_seconds")
        };
        // Other jobs' series in the same file stay; this job's are written anew.
        let mut families = Families::parse(&earlier);
        let labels = self.label_text();
        families.drop_series(&format!("{PREFIX}_{}_last_", self.command), &labels);
        let help = "When the last run ended (Unix time).";
        self.gauge(&mut families, "run_timestamp_seconds", help, now);
        if let Some(success) = last_success {
            let help = "When the last successful run ended (Unix time).";
            self.gauge(&mut families, "success_timestamp_seconds", help, success);
        }
        let help = "Exit code of the last run (0: success; see the README's table).";
        self.gauge(&mut families, "exit_code", help, f64::from(exit_code));
        let help = "How long the last run took.";
        self.gauge(&mut families, "duration_seconds", help, duration_seconds);
        if exit_code == 0 || exit_code == crate::exit::FINDINGS {
            let figures = self
                .figures
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (name, help, value) in figures.iter() {
                self.gauge(&mut families, name, help, *value);
            }
        }
        replace(&self.path, &families.render())
    }

    /// Set one gauge of this run, with its labels.
    fn gauge(&self, families: &mut Families, name: &str, help: &str, value: f64) {
        let name = format!("{PREFIX}_{}_last_{name}", self.command);
        let sample = format!("{name}{{{}}} {value}", self.label_text());
        families.add(&name, help, sample);
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

/// A file in the text format as its metric families, in order: each with its `# HELP` and
/// `# TYPE` lines and its samples (a family's samples stay together, as the format requires).
#[derive(Debug, Default)]
struct Families(Vec<Family>);

#[derive(Debug)]
struct Family {
    name: String,
    header: Vec<String>,
    samples: Vec<String>,
}

impl Families {
    /// The families of `text`; lines of no family (blank, other comments) are dropped.
    fn parse(text: &str) -> Self {
        let mut families = Families::default();
        for line in text.lines() {
            let header = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "));
            let name = match header {
                Some(rest) => rest.split(' ').next(),
                None if line.starts_with('#') => None,
                None => line.split(['{', ' ']).next(),
            };
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                continue;
            };
            let family = families.family(name);
            match header {
                Some(_) => family.header.push(line.to_string()),
                None => family.samples.push(line.to_string()),
            }
        }
        families
    }

    fn family(&mut self, name: &str) -> &mut Family {
        let at = match self.0.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                self.0.push(Family {
                    name: name.to_string(),
                    header: Vec::new(),
                    samples: Vec::new(),
                });
                self.0.len() - 1
            }
        };
        &mut self.0[at]
    }

    /// Remove the samples with exactly `labels` of the families named `prefix…`.
    fn drop_series(&mut self, prefix: &str, labels: &str) {
        let series = |family: &Family| format!("{}{{{labels}}} ", family.name);
        for family in self.0.iter_mut().filter(|f| f.name.starts_with(prefix)) {
            let own = series(family);
            family.samples.retain(|sample| !sample.starts_with(&own));
        }
    }

    /// Add `sample` to the gauge family `name` (made with `help` if new).
    fn add(&mut self, name: &str, help: &str, sample: String) {
        let family = self.family(name);
        if family.header.is_empty() {
            family.header = vec![
                format!("# HELP {name} {help}"),
                format!("# TYPE {name} gauge"),
            ];
        }
        family.samples.push(sample);
    }

    /// The text of every family that has samples.
    fn render(&self) -> String {
        let mut text = String::new();
        for family in self.0.iter().filter(|f| !f.samples.is_empty()) {
            for line in family.header.iter().chain(&family.samples) {
                let _ = writeln!(text, "{line}");
            }
        }
        text
    }
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// An exclusive lock on `<path>.lock`, held until the file returned is dropped: two jobs that end
/// at the same moment (two timers firing together) would otherwise each rewrite `path` from what
/// it held before either, and one's series would be lost. The lock file stays; a textfile
/// collector reads only `*.prom` files.
fn lock_beside(path: &Path) -> std::io::Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(file)
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

    /// Jobs may share a file: another command's series and another node's stay, each family's
    /// samples together; a run replaces only its own series.
    #[test]
    fn jobs_sharing_a_file_keep_each_others_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.prom");
        let job = |command: &'static str, node: &str| {
            let labels = vec![("repository", "/b".to_string()), ("node", node.to_string())];
            Recorder::new(path.clone(), command, labels)
        };
        let (node0, node1, verify) = (
            job("create", "node0"),
            job("create", "node1"),
            job("verify", "node0"),
        );
        node0.figure("bytes", "Bytes.", 1.0);
        node0.write(0, 1.0).unwrap();
        node1.figure("bytes", "Bytes.", 2.0);
        node1.write(0, 1.0).unwrap();
        verify.write(0, 1.0).unwrap();
        node0.write(13, 1.0).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(node0.sample_in(&text, "exit_code"), Some(13.0));
        assert_eq!(node0.sample_in(&text, "bytes"), None, "{text}");
        assert_eq!(node1.sample_in(&text, "bytes"), Some(2.0), "{text}");
        assert_eq!(verify.sample_in(&text, "exit_code"), Some(0.0), "{text}");
        // One HELP per family, its samples right after it.
        let name = "influxdb3_backup_create_last_exit_code";
        assert_eq!(
            text.matches(&format!("# HELP {name} ")).count(),
            1,
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let help = lines
            .iter()
            .position(|l| l.starts_with(&format!("# HELP {name} ")))
            .unwrap();
        assert!(
            lines[help + 2].starts_with(name) && lines[help + 3].starts_with(name),
            "{text}"
        );
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

    /// Jobs that end at the same moment each keep their series: without the lock, one rewrote
    /// the file from what it held before the other's update and lost it.
    #[test]
    fn jobs_ending_together_each_keep_their_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.prom");
        let nodes: Vec<String> = (0..8).map(|n| format!("node{n}")).collect();
        for round in 0..20 {
            let start = std::sync::Barrier::new(nodes.len());
            std::thread::scope(|scope| {
                for node in &nodes {
                    let (path, start) = (&path, &start);
                    scope.spawn(move || {
                        let labels = vec![("node", format!("{node}-{round}"))];
                        let job = Recorder::new(path.clone(), "create", labels);
                        start.wait();
                        job.write(0, 1.0).unwrap();
                    });
                }
            });
            let text = std::fs::read_to_string(&path).unwrap();
            for node in &nodes {
                let labels = vec![("node", format!("{node}-{round}"))];
                let job = Recorder::new(path.clone(), "create", labels);
                assert_eq!(
                    job.sample_in(&text, "exit_code"),
                    Some(0.0),
                    "round {round}: {node}'s series lost:\n{text}"
                );
            }
        }
    }
}
