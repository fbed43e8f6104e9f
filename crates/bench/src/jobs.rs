//! The benchmark's jobs, on one generated tree in one run: full backup, no-change incremental,
//! incremental after 1% new files, restore, and verify with a full read — by influxdb3-backup and
//! by the references an operator would otherwise use: `cp -r` (local), `rclone copy`, `restic`
//! (local repository) and `aws s3 sync` (against a local S3 server). Each job starts after a
//! `sync` and a metadata walk of the source tree (not timed: see `settle`), except the cold
//! no-change incremental, which starts after the kernel dropped its caches (`settle_cold`;
//! skipped where the bench may not). influxdb3-backup makes its local repository durable (one
//! `syncfs` before its manifest) before it reports success; `cp -r` and `rclone copy` leave their
//! writes in the page cache, so `cp -r` is also timed with a `sync` after it (`cp -r + sync`):
//! the same durability as influxdb3-backup's.

use crate::measure::{measure, setup, Cmd, Measured};
use crate::trash::Trash;
use anyhow::{Context, Result};
use ib3_testkit::generate::{generate, grow, TreeSpec, TreeState};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Before each measured command (untimed): `sync`, so that no tool pays for the previous one's
/// dirty pages, and a metadata walk of the source tree, so that each tool finds it equally warm
/// (the tools run in a fixed order: the first would otherwise warm the page cache for the next).
fn settle(src: &Path) -> Result<()> {
    sync()?;
    // `du` reads the metadata of every directory and file: the walk every tool starts with.
    du(src)?;
    Ok(())
}

/// `sync`: every dirty page written out, so that no tool pays for another's writes.
fn sync() -> Result<()> {
    let status = std::process::Command::new("sync")
        .status()
        .context("running sync")?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(())
}

/// Where the kernel is told to drop its clean caches.
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Before each measured command of a cold job (untimed): `sync`, then the kernel drops its
/// clean page cache, dentries and inodes, so the tool finds the tree's metadata on disk only,
/// as a daily backup finds the disk of a server whose data fills the cache.
fn settle_cold() -> Result<()> {
    sync()?;
    std::fs::write(DROP_CACHES, "3").with_context(|| format!("writing {DROP_CACHES}"))
}

/// Whether this process may drop the kernel's caches (root, outside a read-only `/proc`).
fn can_drop_caches() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(DROP_CACHES)
        .is_ok()
}

/// `cp -r` followed by `sync`: a copy as durable as influxdb3-backup's repository.
const CP_SYNC: &str = "cp -r + sync";

fn cp_then_sync(from: &str, to: &str) -> Cmd {
    Cmd::new(&["sh", "-c", "cp -r \"$0\" \"$1\" && sync", from, to])
}

/// A tool that can take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// influxdb3-backup into a local repository (and into S3 when `aws` is on).
    Ours,
    /// `cp -r`.
    Cp,
    /// `rclone copy` (local to local).
    Rclone,
    /// `restic backup` / `restore` / `check --read-data` with a local repository.
    Restic,
    /// `aws s3 sync` against the local S3 server (compared with influxdb3-backup into S3).
    Aws,
}

/// An S3 endpoint (the local emulator).
#[derive(Debug, Clone)]
pub struct S3 {
    /// `http://127.0.0.1:8333`.
    pub endpoint: String,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// Bucket to use (created by the caller).
    pub bucket: String,
    /// The server's process, whose CPU time each S3 job also reports (none: not reported).
    pub server_pid: Option<u32>,
}

/// How to run.
pub struct Settings {
    /// Working directory (the tree, repositories, copies).
    pub work: PathBuf,
    /// The tree.
    pub spec: TreeSpec,
    /// Tools taking part.
    pub tools: Vec<Tool>,
    /// The influxdb3-backup binary.
    pub ours: PathBuf,
    /// The S3 server for `aws`.
    pub s3: Option<S3>,
    /// Rounds of the jobs whose ratios sit close to their goals (full backup by every tool,
    /// into S3 too; restore by ours and `cp`; no-change incremental by every local tool).
    pub rounds: u32,
}

/// One measured job.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Job.
    pub job: &'static str,
    /// Tool (`influxdb3-backup`, `influxdb3-backup (s3)`, `cp -r`, …).
    pub tool: &'static str,
    /// Wall time and peak RSS (of the median round).
    #[serde(flatten)]
    pub measured: Measured,
    /// Wall time of every round, in the order run.
    pub rounds: Vec<f64>,
    /// Bytes of the tree (or of the change, for an incremental).
    pub bytes: u64,
    /// `bytes / seconds` in MiB/s.
    pub mib_per_second: f64,
    /// influxdb3-backup's time over this tool's time for the same job (< 1: ours is faster).
    pub ours_over_this: Option<f64>,
}

const OURS: &str = "influxdb3-backup";
/// The least any incremental of the generated tree must do: look at each leaf directory once
/// (one `statx`), reading none ([`Bench::floor`]).
pub const FLOOR: &str = "find: stat each leaf dir";
pub const OURS_S3: &str = "influxdb3-backup (s3)";
pub const AWS: &str = "aws s3 sync";
pub const FULL: &str = "full backup";
const NO_CHANGE: &str = "incremental, no change";
const NO_CHANGE_COLD: &str = "incremental, no change, cold";
const ONE_PERCENT: &str = "incremental, 1% new files";
pub const RESTORE: &str = "restore";
const VERIFY: &str = "verify, reading all data";

/// Generate the tree and run every job of every tool; returns the rows in run order.
pub fn run(settings: &Settings) -> Result<Vec<Row>> {
    let w = &settings.work;
    let mut trash = Trash::fresh_work_dir(w)?;
    let src = w.join("src");
    eprintln!(
        "generating {} Parquet files ({:?} sizes) in {}",
        settings.spec.files,
        settings.spec.sizes,
        src.display()
    );
    let mut state = generate(&src, &settings.spec).context("generating the tree")?;
    let tree_bytes = du(&src)?;
    eprintln!(
        "tree: {} files ({} Parquet files hard-deleted), {:.1} MiB",
        state.files - state.removed + state.snapshots,
        state.removed,
        tree_bytes as f64 / 1048576.0
    );
    trash.set_tree_bytes(tree_bytes);
    let mut b = Bench {
        settings,
        log: w.join("bench.log"),
        rows: Vec::new(),
        trash,
        s3_round: 0,
    };
    b.setup_tools()?;
    b.backups(FULL, tree_bytes)?;
    b.backups(NO_CHANGE, 0)?;
    b.cold_no_change()?;
    b.one_percent_incrementals(&mut state)?;
    b.restores(du(&src)?)?;
    b.verifies(du(&src)?)?;
    eprintln!("removing the earlier rounds' outputs");
    b.trash.empty()?;
    Ok(b.rows)
}

/// One tool's command in a job taken in rounds, and the directory it writes, retired (see
/// [`Trash`]) before every round but the first (none: a round may run on what the last one
/// left, as a no-change incremental does), then remade by `prepare` (untimed) if the tool needs
/// that; and how the command starts.
struct Contender {
    tool: &'static str,
    cmd: Cmd,
    output: Option<PathBuf>,
    prepare: Option<Cmd>,
    start: Start,
}

/// How a measured command finds the machine.
#[derive(Clone, Copy)]
enum Start {
    /// After [`settle`]: nothing dirty, the tree's metadata in the cache.
    Warm,
    /// After [`settle_cold`]: nothing cached.
    Cold,
}

impl Contender {
    fn new(tool: &'static str, cmd: Cmd, output: Option<&str>) -> Self {
        let output = output.map(PathBuf::from);
        Self {
            tool,
            cmd,
            output,
            prepare: None,
            start: Start::Warm,
        }
    }

    fn started_cold(mut self) -> Self {
        self.start = Start::Cold;
        self
    }

    fn prepared_by(mut self, prepare: Cmd) -> Self {
        self.prepare = Some(prepare);
        self
    }
}

struct Bench<'a> {
    settings: &'a Settings,
    log: PathBuf,
    rows: Vec<Row>,
    trash: Trash,
    /// The round of the full backups into S3 whose prefixes the S3 jobs use ([`Bench::s3_dest`]).
    s3_round: u32,
}

impl Bench<'_> {
    fn on(&self, tool: Tool) -> bool {
        self.settings.tools.contains(&tool)
    }

    fn path(&self, name: &str) -> String {
        self.settings.work.join(name).display().to_string()
    }

    fn ours(&self, args: &[&str]) -> Cmd {
        let mut argv = vec![self.settings.ours.display().to_string(), "--quiet".into()];
        argv.extend(args.iter().map(|a| a.to_string()));
        Cmd::new(&argv)
    }

    fn restic_env(&self) -> Vec<(String, String)> {
        vec![
            ("RESTIC_PASSWORD".into(), "bench".into()),
            ("RESTIC_REPOSITORY".into(), self.path("restic")),
            ("RESTIC_CACHE_DIR".into(), self.path("restic-cache")),
        ]
    }

    fn aws(&self, args: &[&str]) -> Option<Cmd> {
        let s3 = self.settings.s3.as_ref()?;
        let mut argv = vec!["aws", "--endpoint-url", &s3.endpoint, "s3"];
        argv.extend_from_slice(args);
        argv.push("--only-show-errors");
        Some(Cmd::new(&argv).env(&[
            ("AWS_ACCESS_KEY_ID".into(), s3.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), s3.secret_key.clone()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ]))
    }

    /// influxdb3-backup's repository in S3 and the environment that reaches it.
    fn ours_s3(&self, args: &[&str]) -> Option<Cmd> {
        let s3 = self.settings.s3.as_ref()?;
        Some(self.ours(args).env(&[
            (
                "INFLUXDB3_BACKUP_REPO_AWS_ENDPOINT".into(),
                s3.endpoint.clone(),
            ),
            (
                "INFLUXDB3_BACKUP_REPO_AWS_ACCESS_KEY_ID".into(),
                s3.access_key.clone(),
            ),
            (
                "INFLUXDB3_BACKUP_REPO_AWS_SECRET_ACCESS_KEY".into(),
                s3.secret_key.clone(),
            ),
            ("INFLUXDB3_BACKUP_REPO_AWS_ALLOW_HTTP".into(), "true".into()),
        ]))
    }

    fn s3_url(&self, what: &str) -> String {
        let bucket = self.settings.s3.as_ref().map_or("", |s| s.bucket.as_str());
        format!("s3://{bucket}/{what}")
    }

    /// The S3 prefix a tool writes (`repo`, ours; `sync`, the AWS CLI's) in the current round of
    /// full backups, which the later S3 jobs then use.
    fn s3_dest(&self, what: &str) -> String {
        self.s3_url(&format!("{what}-{}", self.s3_round))
    }

    fn setup_tools(&self) -> Result<()> {
        if self.on(Tool::Restic) {
            setup(&self.restic_init(), &self.log)?;
        }
        self.warm_up_s3()
    }

    /// Warm the local S3 server up (untimed) with one upload of the tree into the bucket the
    /// jobs use: the first upload into a freshly started SeaweedFS paid for its process warming
    /// up and its bucket's first volumes (a realistic-size backup 21.5 s, the next ones
    /// 15.5–17.2 s), a cost the first timed tool (ours) bore alone. The client doing it changes
    /// nothing the server keeps; ours is the quicker one.
    fn warm_up_s3(&self) -> Result<()> {
        if !self.on(Tool::Aws) {
            return Ok(());
        }
        let (src, repo) = (self.path("src"), self.s3_url("warm-up"));
        match self.ours_s3(&create_args(&src, &repo)) {
            Some(cmd) => {
                eprintln!("  warming the S3 server up (untimed)");
                setup(&cmd, &self.log)
            }
            None => Ok(()),
        }
    }

    fn restic_init(&self) -> Cmd {
        Cmd::new(&["restic", "init"]).env(&self.restic_env())
    }

    fn record(
        &mut self,
        job: &'static str,
        tool: &'static str,
        cmd: Cmd,
        bytes: u64,
    ) -> Result<()> {
        let measured = self.measure_settled(job, tool, &cmd, Start::Warm)?;
        self.push(job, tool, vec![measured], bytes);
        Ok(())
    }

    fn measure_settled(&self, job: &str, tool: &str, cmd: &Cmd, start: Start) -> Result<Measured> {
        eprintln!("  {job:<28} {tool}");
        match start {
            Start::Cold => settle_cold()?,
            Start::Warm => settle(&self.settings.work.join("src"))?,
        }
        measure(cmd, &self.log, self.server_of(tool))
    }

    /// The local S3 server's process, for the tools that talk to it.
    fn server_of(&self, tool: &str) -> Option<u32> {
        let s3 = self.settings.s3.as_ref()?;
        if [OURS_S3, AWS].contains(&tool) {
            s3.server_pid
        } else {
            None
        }
    }

    /// Run `contenders` in turn for `rounds` rounds, each round after retiring what the
    /// previous one wrote; one row each, with the median round.
    fn record_rounds(
        &mut self,
        job: &'static str,
        contenders: Vec<Contender>,
        bytes: u64,
    ) -> Result<()> {
        let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); contenders.len()];
        for round in 0..self.settings.rounds {
            for (c, runs) in contenders.iter().zip(&mut runs) {
                if let Some(output) = c.output.as_ref().filter(|_| round > 0) {
                    self.trash.retire(output)?;
                    if let Some(prepare) = &c.prepare {
                        setup(prepare, &self.log)?;
                    }
                }
                runs.push(self.measure_settled(job, c.tool, &c.cmd, c.start)?);
            }
        }
        for (c, runs) in contenders.into_iter().zip(runs) {
            self.push(job, c.tool, runs, bytes);
        }
        Ok(())
    }

    /// Run each of `contenders` once.
    fn record_once(
        &mut self,
        job: &'static str,
        contenders: Vec<Contender>,
        bytes: u64,
    ) -> Result<()> {
        for c in contenders {
            self.record(job, c.tool, c.cmd, bytes)?;
        }
        Ok(())
    }

    /// Add the row of `runs` (at least one): the median round's figures.
    fn push(&mut self, job: &'static str, tool: &'static str, runs: Vec<Measured>, bytes: u64) {
        let mut by_time = runs.clone();
        by_time.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let measured = by_time[by_time.len() / 2];
        self.rows.push(Row {
            job,
            tool,
            measured,
            rounds: runs.iter().map(|m| m.seconds).collect(),
            bytes,
            mib_per_second: bytes as f64 / 1048576.0 / measured.seconds.max(1e-9),
            ours_over_this: None,
        });
    }

    /// `ours` and, with `cp` on, `cp -r` and `cp -r` + `sync` of `from` into `<to>cp` and
    /// `<to>cp-sync`.
    fn with_cp(&self, ours: Contender, from: &str, to: &str) -> Vec<Contender> {
        let mut contenders = vec![ours];
        if self.on(Tool::Cp) {
            let (plain, synced) = (
                self.path(&format!("{to}cp")),
                self.path(&format!("{to}cp-sync")),
            );
            let cmd = Cmd::new(&["cp", "-r", from, &plain]);
            contenders.push(Contender::new("cp -r", cmd, Some(&plain)));
            contenders.push(Contender::new(
                CP_SYNC,
                cp_then_sync(from, &synced),
                Some(&synced),
            ));
        }
        contenders
    }

    /// A full or no-change backup by every tool. Both go in rounds (their ratios are close to
    /// their goals): a full backup with each tool's repository or copy retired, and restic's
    /// initialised again, between rounds; later jobs run on what the last round left. The S3
    /// tools' full backups go in rounds of their own ([`Bench::s3_full_backups`]); their
    /// no-change incrementals run once.
    fn backups(&mut self, job: &'static str, bytes: u64) -> Result<()> {
        let full = job == FULL;
        let (ours, others) = self.local_backups(full);
        let mut contenders = if full {
            let ours = Contender::new(OURS, ours, Some(&self.path("repo")));
            self.with_cp(ours, &self.path("src"), "")
        } else {
            vec![Contender::new(OURS, ours, None), self.floor()]
        };
        contenders.extend(others);
        self.record_rounds(job, contenders, bytes)?;
        if full {
            return self.s3_full_backups(bytes);
        }
        let s3 = self.s3_backups();
        self.record_once(job, s3, bytes)
    }

    /// The full backups into the local S3 server, in rounds: the one ratio bound by the server's
    /// CPU, which drifts from run to run (`aws s3 sync` of one tree took 29–38 s). Each round
    /// writes fresh prefixes (a removal would leave the server reclaiming space during the next
    /// timed run), and the tool that goes first alternates; later S3 jobs use the last round's.
    fn s3_full_backups(&mut self, bytes: u64) -> Result<()> {
        let mut runs: Vec<(&'static str, Vec<Measured>)> = Vec::new();
        for round in 0..self.settings.rounds {
            self.s3_round = round;
            let mut contenders = self.s3_backups();
            if round % 2 == 1 {
                contenders.reverse();
            }
            for c in contenders {
                let measured = self.measure_settled(FULL, c.tool, &c.cmd, c.start)?;
                match runs.iter_mut().find(|(tool, _)| *tool == c.tool) {
                    Some((_, tool_runs)) => tool_runs.push(measured),
                    None => runs.push((c.tool, vec![measured])),
                }
            }
        }
        for (tool, tool_runs) in runs {
            self.push(FULL, tool, tool_runs, bytes);
        }
        Ok(())
    }

    /// The no-change incremental by every local tool again, in rounds, each run after the
    /// kernel dropped its caches; skipped (and said so) where this process may not drop them.
    fn cold_no_change(&mut self) -> Result<()> {
        if !can_drop_caches() {
            eprintln!("  {NO_CHANGE_COLD:<28} skipped: cannot write {DROP_CACHES} (not root)");
            return Ok(());
        }
        let (ours, others) = self.local_backups(false);
        let contenders = [Contender::new(OURS, ours, None), self.floor()]
            .into_iter()
            .chain(others)
            .map(Contender::started_cold)
            .collect();
        self.record_rounds(NO_CHANGE_COLD, contenders, 0)
    }

    /// The incremental after 1% new files, by every tool, in rounds: before each, 1% more
    /// files are added (untimed), so every round backs up new files.
    fn one_percent_incrementals(&mut self, state: &mut TreeState) -> Result<()> {
        let (ours, others) = self.local_backups(false);
        let mut contenders = vec![Contender::new(OURS, ours, None)];
        contenders.extend(others);
        contenders.extend(self.s3_backups());
        let src = self.settings.work.join("src");
        let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); contenders.len()];
        let mut added = 0;
        for _ in 0..self.settings.rounds {
            let before = state.parquet_bytes;
            grow(&src, state, (self.settings.spec.files / 100).max(1))
                .context("adding 1% files")?;
            added += state.parquet_bytes - before;
            for (c, runs) in contenders.iter().zip(&mut runs) {
                runs.push(self.measure_settled(ONE_PERCENT, c.tool, &c.cmd, c.start)?);
            }
        }
        let bytes = added / u64::from(self.settings.rounds);
        for (c, runs) in contenders.into_iter().zip(runs) {
            self.push(ONE_PERCENT, c.tool, runs, bytes);
        }
        Ok(())
    }

    /// Our backup of the source into the local repository, and the other local tools' (their
    /// outputs retired between rounds when `full`).
    fn local_backups(&self, full: bool) -> (Cmd, Vec<Contender>) {
        let (src, repo) = (self.path("src"), self.path("repo"));
        let ours = self.ours(&create_args(&src, &repo));
        let (rclone, restic) = (self.path("rclone"), self.path("restic"));
        let mut others = Vec::new();
        if self.on(Tool::Rclone) {
            let cmd = Cmd::new(&["rclone", "copy", &src, &rclone]);
            others.push(Contender::new("rclone copy", cmd, full.then_some(&rclone)));
        }
        if self.on(Tool::Restic) {
            let cmd = Cmd::new(&["restic", "backup", "--quiet", &src]).env(&self.restic_env());
            let restic = Contender::new("restic backup", cmd, full.then_some(&restic));
            others.push(restic.prepared_by(self.restic_init()));
        }
        (ours, others)
    }

    /// The floor of an incremental: a `statx` of each leaf directory of the generated tree
    /// (`node0/dbs/<db>/<table>/<day>/<HH-MM>`), by `find` on one thread, reading no directory
    /// below the days. An incremental must do at least that to see which directories changed
    /// (DESIGN §2, "Unchanged directories"); with one Parquet file per directory it is the bulk
    /// of a no-change incremental's kernel time.
    fn floor(&self) -> Contender {
        let dbs = self.settings.work.join("src").join("node0").join("dbs");
        let dbs = dbs.display().to_string();
        let argv = [
            "find",
            &dbs,
            "-mindepth",
            "4",
            "-maxdepth",
            "4",
            "-type",
            "d",
            "-printf",
            "%C@\\n",
        ];
        Contender::new(FLOOR, Cmd::new(&argv), None)
    }

    /// Our backup into the local S3 server, and `aws s3 sync` to it.
    fn s3_backups(&self) -> Vec<Contender> {
        let mut contenders = Vec::new();
        if !self.on(Tool::Aws) {
            return contenders;
        }
        let (src, repo) = (self.path("src"), self.s3_dest("repo"));
        if let Some(cmd) = self.ours_s3(&create_args(&src, &repo)) {
            contenders.push(Contender::new(OURS_S3, cmd, None));
        }
        if let Some(cmd) = self.aws(&["sync", &src, &self.s3_dest("sync")]) {
            contenders.push(Contender::new(AWS, cmd, None));
        }
        contenders
    }

    fn restores(&mut self, bytes: u64) -> Result<()> {
        let repo = self.path("repo");
        let into = self.path("restore-ours");
        let cmd = self.ours(&["restore", "--repo", &repo, "--data-dir", &into]);
        let ours = Contender::new(OURS, cmd, Some(&into));
        let mut contenders = self.with_cp(ours, &self.path("cp"), "restore-");
        if self.on(Tool::Rclone) {
            let target = self.path("restore-rclone");
            let cmd = Cmd::new(&["rclone", "copy", &self.path("rclone"), &target]);
            contenders.push(Contender::new("rclone copy", cmd, Some(&target)));
        }
        if self.on(Tool::Restic) {
            let target = self.path("restore-restic");
            let cmd = Cmd::new(&["restic", "restore", "latest", "--target", &target])
                .env(&self.restic_env());
            contenders.push(Contender::new("restic restore", cmd, Some(&target)));
        }
        self.record_rounds(RESTORE, contenders, bytes)?;
        if self.on(Tool::Aws) {
            let (repo, into) = (self.s3_dest("repo"), self.path("restore-ours-s3"));
            if let Some(cmd) = self.ours_s3(&["restore", "--repo", &repo, "--data-dir", &into]) {
                self.record(RESTORE, OURS_S3, cmd, bytes)?;
            }
            let sync = self.s3_dest("sync");
            if let Some(cmd) = self.aws(&["sync", &sync, &self.path("restore-aws")]) {
                self.record(RESTORE, AWS, cmd, bytes)?;
            }
        }
        Ok(())
    }

    fn verifies(&mut self, bytes: u64) -> Result<()> {
        let repo = self.path("repo");
        let cmd = self.ours(&["verify", "--read-data", "--repo", &repo, "latest"]);
        self.record(VERIFY, OURS, cmd, bytes)?;
        if self.on(Tool::Restic) {
            let cmd = Cmd::new(&["restic", "check", "--read-data"]).env(&self.restic_env());
            self.record(VERIFY, "restic check", cmd, bytes)?;
        }
        Ok(())
    }
}

/// `create` arguments backing up node `node0` of the data dir `src` into `repo`.
fn create_args<'a>(src: &'a str, repo: &'a str) -> [&'a str; 7] {
    [
        "create",
        "--data-dir",
        src,
        "--node-id",
        "node0",
        "--repo",
        repo,
    ]
}

/// Fill in each reference row's `ours_over_this`: influxdb3-backup's time for the same job (its
/// S3 run for `aws s3 sync`) over the reference's.
pub fn compare(rows: &mut [Row]) {
    let ours: Vec<(&'static str, &'static str, f64)> = rows
        .iter()
        .filter(|r| r.tool == OURS || r.tool == OURS_S3)
        .map(|r| (r.job, r.tool, r.measured.seconds))
        .collect();
    for row in rows.iter_mut() {
        if row.tool == OURS || row.tool == OURS_S3 {
            continue;
        }
        let mine = if row.tool == AWS { OURS_S3 } else { OURS };
        row.ours_over_this = ours
            .iter()
            .find(|(job, tool, _)| *job == row.job && *tool == mine)
            .map(|(_, _, s)| s / row.measured.seconds.max(1e-9));
    }
}

/// Bytes of every file under `dir`.
fn du(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        total += if kind.is_dir() {
            du(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}
