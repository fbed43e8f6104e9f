//! Command-line arguments, exactly as typed (clap derive). Resolution into stores and options
//! happens in [`crate::stores`] and the command modules; nothing here does I/O.
//!
//! Source options use the names of `influxdb3 serve` (flags and environment variables), so an
//! operator can reuse the server's settings.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Consistent hot backup and restore for InfluxDB 3.
#[derive(Debug, Parser)]
#[command(name = "influxdb3-backup", version, about, long_about = None)]
pub struct Cli {
    /// Print the result as one JSON document on stdout (logs and progress go to stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// Hide progress bars (they are hidden anyway when stderr is not a terminal).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a node (hot: the server may keep writing) into a repository.
    Create(CreateArgs),
    /// List the backups in a repository.
    List(ListArgs),
    /// Verify backups: structure, blobs present, consistency rules; --read-data re-hashes all.
    Verify(VerifyArgs),
    /// Report on a live node: layout, databases, snapshot and WAL ranges, problems.
    Inspect(InspectArgs),
    /// Restore a backup into an empty node prefix (stop the server first).
    Restore(RestoreArgs),
    /// Remove backups by a retention policy and garbage-collect what only they held.
    Prune(PruneArgs),
    /// Remove repository locks left by processes that died.
    Unlock(UnlockArgs),
    /// Copy backups to a second repository (off-site), deduplicated and verified.
    Copy(CopyArgs),
    /// Initialise a repository, optionally encrypted (`create` initialises plain ones itself).
    Init(InitArgs),
}

/// Kinds of object store, as `influxdb3 serve --object-store` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectStoreKind {
    /// A local directory (`--data-dir`).
    File,
    /// In-process memory (tests only: always empty at start).
    Memory,
    /// Amazon S3 or S3-compatible.
    S3,
    /// Google Cloud Storage.
    Google,
    /// Azure Blob Storage.
    Azure,
}

/// Where the InfluxDB 3 node lives (mirrors `influxdb3 serve`: same flags, same environment
/// variables, so the server's environment file works as is).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Object store the server uses.
    #[arg(
        long = "object-store",
        env = "INFLUXDB3_OBJECT_STORE",
        value_enum,
        default_value = "file"
    )]
    pub object_store: ObjectStoreKind,

    /// Data directory of a `file` object store [default: ~/.influxdb3]
    /// (env INFLUXDB3_DB_DIR, or INFLUXDB3_DATA_DIR from 3.11).
    #[arg(long = "data-dir", env = "INFLUXDB3_DB_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Node id: the object-store prefix of the node
    /// (env INFLUXDB3_NODE_IDENTIFIER_PREFIX, or INFLUXDB3_NODE_ID from 3.11). With
    /// --cluster-id: the cluster's nodes to include, repeated or comma-separated (default: every
    /// node found).
    #[arg(
        long = "node-id",
        alias = "host-id",
        env = "INFLUXDB3_NODE_IDENTIFIER_PREFIX",
        value_delimiter = ','
    )]
    pub node_id: Vec<String>,

    /// Enterprise cluster id: the object-store prefix of the cluster catalog, license files and
    /// `enterprise` file (env INFLUXDB3_ENTERPRISE_CLUSTER_ID). Backs up or restores the whole
    /// cluster: every node, the compactor, the catalog and the licenses.
    #[arg(long = "cluster-id", env = "INFLUXDB3_ENTERPRISE_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// Bucket (S3, Google) or container (Azure) of the object store.
    #[arg(long, env = "INFLUXDB3_BUCKET")]
    pub bucket: Option<String>,

    #[command(flatten)]
    /// Cloud credentials and client settings.
    pub cloud: CloudArgs,
}

/// Cloud object-store credentials and HTTP client settings, named as `influxdb3 serve` names them.
#[derive(Clone, Args, Default)]
pub struct CloudArgs {
    /// S3 access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<String>,
    /// S3 session token.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub aws_session_token: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    pub aws_default_region: String,
    /// S3 endpoint (S3-compatible stores such as MinIO or SeaweedFS).
    #[arg(long, env = "AWS_ENDPOINT")]
    pub aws_endpoint: Option<String>,
    /// Allow plain HTTP to the S3 endpoint.
    #[arg(long, env = "AWS_ALLOW_HTTP", action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub aws_allow_http: bool,
    /// Send unsigned S3 requests (public buckets).
    #[arg(long, env = "AWS_SKIP_SIGNATURE", action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub aws_skip_signature: bool,
    /// JSON file with `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`
    /// (read once at start).
    #[arg(long, env = "AWS_CREDENTIALS_FILE")]
    pub aws_credentials_file: Option<PathBuf>,
    /// Azure storage account.
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT")]
    pub azure_storage_account: Option<String>,
    /// Azure storage access key.
    #[arg(long, env = "AZURE_STORAGE_ACCESS_KEY", hide_env_values = true)]
    pub azure_storage_access_key: Option<String>,
    /// Azure Blob endpoint (e.g. Azurite's `http://127.0.0.1:10000/devstoreaccount1`).
    #[arg(long, env = "AZURE_ENDPOINT")]
    pub azure_endpoint: Option<String>,
    /// Allow plain HTTP to the Azure endpoint.
    #[arg(long, env = "AZURE_ALLOW_HTTP", action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub azure_allow_http: bool,
    /// Google service account JSON file.
    #[arg(long, env = "GOOGLE_SERVICE_ACCOUNT")]
    pub google_service_account: Option<PathBuf>,
    /// Maximum concurrent object-store requests.
    #[arg(
        long,
        env = "INFLUXDB3_OBJECT_STORE_CONNECTION_LIMIT",
        default_value_t = 64
    )]
    pub object_store_connection_limit: usize,
    /// Retries of a failed request.
    #[arg(long, env = "INFLUXDB3_OBJECT_STORE_MAX_RETRIES")]
    pub object_store_max_retries: Option<usize>,
    /// Time after which a request is no longer retried.
    #[arg(long, env = "INFLUXDB3_OBJECT_STORE_RETRY_TIMEOUT", value_parser = humantime::parse_duration)]
    pub object_store_retry_timeout: Option<std::time::Duration>,
    /// Timeout of one request.
    #[arg(long, env = "INFLUXDB3_OBJECT_STORE_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    pub object_store_request_timeout: Option<std::time::Duration>,
    /// PEM file of extra CA certificates to trust.
    #[arg(long, env = "INFLUXDB3_OBJECT_STORE_TLS_CA")]
    pub object_store_tls_ca: Option<PathBuf>,
    /// Accept invalid TLS certificates (testing only).
    #[arg(long, env = "INFLUXDB3_OBJECT_STORE_TLS_ALLOW_INSECURE", action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub object_store_tls_allow_insecure: bool,
}

/// Secrets never reach logs: this Debug names which credentials are set, not their values.
impl std::fmt::Debug for CloudArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudArgs")
            .field(
                "aws_access_key_id",
                &self.aws_access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "aws_secret_access_key",
                &self.aws_secret_access_key.as_ref().map(|_| "<set>"),
            )
            .field("aws_endpoint", &self.aws_endpoint)
            .field("azure_storage_account", &self.azure_storage_account)
            .field(
                "azure_storage_access_key",
                &self.azure_storage_access_key.as_ref().map(|_| "<set>"),
            )
            .field("azure_endpoint", &self.azure_endpoint)
            .field("google_service_account", &self.google_service_account)
            .finish_non_exhaustive()
    }
}

/// The backup repository.
#[derive(Debug, Clone, Args)]
pub struct RepoArgs {
    /// Backup repository: a directory, or a URL: `file:///path`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` (credentials: see README, "Repository
    /// credentials").
    #[arg(long, env = "INFLUXDB3_BACKUP_REPO")]
    pub repo: String,
    /// Key file of an encrypted repository (an age identity); without it the passphrase in
    /// INFLUXDB3_BACKUP_PASSPHRASE unlocks the repository.
    #[arg(long, env = "INFLUXDB3_BACKUP_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

/// Where a run leaves its outcome for monitoring (`create`, `verify`, `restore`, `prune`,
/// `copy`).
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Write the run's outcome to this file in Prometheus' text format (for node_exporter's
    /// textfile collector: a path ending in `.prom` in its directory), rewritten after every run
    /// that completes or fails: last run and last success times, exit code, duration, figures.
    /// Jobs may share a file: each rewrites its own series only, under a lock on `PATH.lock`.
    #[arg(long, env = "INFLUXDB3_BACKUP_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// Transfer tuning shared by commands that move bytes.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// Objects transferred in parallel, small ones (in packs) and larger ones together; packs are
    /// also written (`create`) or read (`restore`) up to 4 at a time.
    #[arg(long, env = "INFLUXDB3_BACKUP_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
}

/// Caps on what a command uploads to and downloads from S3, Azure Blob Storage and Google Cloud
/// Storage.
#[derive(Debug, Clone, Args)]
pub struct BandwidthArgs {
    /// At most RATE bytes per second uploaded to S3, Azure or GCS (the repository, or a restore's
    /// target bucket), on average over a few requests: `500KiB`, `20MiB`, `1GiB` (`K`, `M`, `G`
    /// the same; `kB`, `MB`, `GB` powers of 1000; an optional `/s`). Local directories are not
    /// limited; reads have --limit-download.
    #[arg(long, env = "INFLUXDB3_BACKUP_LIMIT_UPLOAD", value_name = "RATE", value_parser = parse_rate)]
    pub limit_upload: Option<u64>,
    #[command(flatten)]
    /// Download cap.
    pub downloads: DownloadArgs,
}

impl BandwidthArgs {
    /// The upload and download caps, in bytes per second.
    pub fn caps(&self) -> (Option<u64>, Option<u64>) {
        (self.limit_upload, self.downloads.limit_download)
    }
}

/// A cap on what a command downloads from S3, Azure Blob Storage and Google Cloud Storage.
#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// At most RATE bytes per second read from S3, Azure or GCS (the repository, or a source
    /// bucket), on average over a few requests: `500KiB`, `20MiB`, `1GiB` (`kB`, `MB`, `GB`
    /// powers of 1000; an optional `/s`). Reads of whole objects first ask for their size;
    /// reads over 8 MiB go in ranges of 8 MiB. Local directories are not limited.
    #[arg(long, env = "INFLUXDB3_BACKUP_LIMIT_DOWNLOAD", value_name = "RATE", value_parser = parse_rate)]
    pub limit_download: Option<u64>,
}

/// A rate in bytes per second: a number, a unit (`B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, or
/// `kB`/`MB`/`GB` for powers of 1000) and an optional `/s`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let trimmed = trimmed.strip_suffix("/s").unwrap_or(trimmed);
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate: expected a number and a unit, as 20MiB"))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "k" | "KiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unit {other:?} of {text:?} is not understood: use B, KiB, MiB, GiB (or kB, MB, GB)"
            ))
        }
    };
    let rate = number * scale;
    if !(1.0..=1e15).contains(&rate) {
        return Err(format!(
            "{text:?} is out of range: from 1 byte to 1 PB per second"
        ));
    }
    Ok(rate as u64)
}

/// `create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    /// Source.
    pub source: SourceArgs,
    #[command(flatten)]
    /// Repository.
    pub repo: RepoArgs,
    #[command(flatten)]
    /// Transfer tuning.
    pub transfer: TransferArgs,
    #[command(flatten)]
    /// Upload and download caps.
    pub bandwidth: BandwidthArgs,
    /// Re-plans allowed when the server snapshots during the backup.
    #[arg(long, default_value_t = 10)]
    pub max_replans: u32,
    /// zstd level for WAL, snapshot and catalog files (Parquet is stored as is: it is ZSTD
    /// inside already); 0 stores everything uncompressed.
    #[arg(long, env = "INFLUXDB3_BACKUP_COMPRESSION_LEVEL", default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression_level: i32,
    /// Write the backup even if the source breaks a consistency rule (a damaged node); the
    /// manifest records every finding and `verify` reports them.
    #[arg(long)]
    pub allow_inconsistent: bool,
    /// Read every snapshot file again, taking no header the previous backup kept for it
    /// (DESIGN §4.3): for when `verify` reports a kept header wrong (`kept-header-wrong`);
    /// this backup keeps what the files hold.
    #[arg(long)]
    pub reread_snapshots: bool,
    /// List a Core node's Parquet tree (`dbs/`) again once its last listing is this old; until
    /// then an incremental takes the previous backup's tree and adds the files of the snapshot
    /// files written since (DESIGN §4.6). A listing drops the files the server deleted without
    /// recording it (past their retention); `0s` lists every run.
    #[arg(long, env = "INFLUXDB3_BACKUP_RESCAN_AFTER", default_value = "24h", value_parser = humantime::parse_duration)]
    pub rescan_after: std::time::Duration,
    /// With --cluster-id: copy the server's own backup `<cluster-id>/backups/NAME/` (written
    /// by `influxdb3 create backup` on a PachaTree cluster) into the repository, verified,
    /// instead of backing up the cluster's files.
    #[arg(long, value_name = "NAME", requires = "cluster_id")]
    pub builtin_backup: Option<String>,
    /// Say what a backup of the node (or cluster) would hold and read (new or changed since its
    /// previous backup) and whether it is consistent now; read no Parquet or WAL file, write
    /// nothing, take no lock.
    #[arg(long, conflicts_with = "builtin_backup")]
    pub dry_run: bool,
    #[command(flatten)]
    /// Monitoring.
    pub metrics: MetricsArgs,
}

/// `list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    /// Repository.
    pub repo: RepoArgs,
}

/// `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    /// Repository.
    pub repo: RepoArgs,
    /// Backup id or `latest`; every backup when omitted.
    pub backup: Option<String>,
    /// Also read every blob back and check its hash.
    #[arg(long)]
    pub read_data: bool,
    /// Read back and check only part of the blobs: slice `N/T` (`1/7` … `7/7` on successive
    /// nights read each blob once a week) or about `P%`, drawn afresh each run.
    #[arg(long, value_name = "N/T|P%", conflicts_with = "read_data")]
    pub read_data_subset: Option<crate::ops::verify::Subset>,
    #[command(flatten)]
    /// Monitoring.
    pub metrics: MetricsArgs,
    #[command(flatten)]
    /// Transfer tuning.
    pub transfer: TransferArgs,
    #[command(flatten)]
    /// Download cap.
    pub downloads: DownloadArgs,
}

/// `inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    /// Source.
    pub source: SourceArgs,
    #[command(flatten)]
    /// Transfer tuning.
    pub transfer: TransferArgs,
}

/// `restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    /// Repository.
    pub repo: RepoArgs,
    /// Backup id or `latest`.
    #[arg(default_value = "latest")]
    pub backup: String,
    #[command(flatten)]
    /// Target (same options as a source); --node-id defaults to the backup's node.
    pub target: SourceArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Restore into a node prefix that already holds files: objects of the backup replace
    /// theirs, and every other object under the prefix is deleted (stale WAL or snapshot files
    /// would otherwise be replayed by the server).
    #[arg(long)]
    pub force: bool,
    /// Set the owner of restored files and directories (`UID:GID`), e.g. for a Docker volume.
    #[arg(long, value_name = "UID:GID")]
    pub chown: Option<String>,
    /// How long to watch the target's WAL for a running server before a --force restore.
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    pub live_check: std::time::Duration,
    #[command(flatten)]
    /// Transfer tuning.
    pub transfer: TransferArgs,
    #[command(flatten)]
    /// Upload and download caps.
    pub bandwidth: BandwidthArgs,
    #[command(flatten)]
    /// Monitoring (of a scheduled restore drill).
    pub metrics: MetricsArgs,
}

/// `prune`.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    /// Repository.
    pub repo: RepoArgs,
    /// Keep the N newest backups (of each node).
    #[arg(long, default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest backup of each of the last N hours.
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: u32,
    /// Keep the newest backup of each of the last N days (UTC).
    #[arg(long, default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the newest backup of each of the last N ISO weeks.
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the newest backup of each of the last N months.
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: u32,
    /// Keep the newest backup of each of the last N years.
    #[arg(long, default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep every backup taken within this duration before the newest one (e.g. `48h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keep_within: Option<std::time::Duration>,
    /// Unreferenced blobs younger than this are kept (they may belong to a backup in progress).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub gc_grace: std::time::Duration,
    /// Print the plan (which backups are kept, by which rule) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    /// Monitoring.
    pub metrics: MetricsArgs,
}

/// `unlock`.
#[derive(Debug, Clone, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    /// Repository.
    pub repo: RepoArgs,
    /// Remove only locks whose holder stopped refreshing them (30 minutes); without it, every
    /// lock is removed: make sure no other influxdb3-backup process uses the repository.
    #[arg(long)]
    pub stale_only: bool,
    /// List the locks that would be removed and remove none.
    #[arg(long)]
    pub dry_run: bool,
}

/// `copy`.
#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    /// Source repository.
    pub repo: RepoArgs,
    /// Target repository (created if empty); its credentials come from the
    /// `INFLUXDB3_BACKUP_TO_REPO_*` environment family, else the standard variables.
    #[arg(long, env = "INFLUXDB3_BACKUP_TO_REPO")]
    pub to_repo: String,
    /// Backup id or `latest`; with neither this nor --all, `latest`.
    pub backup: Option<String>,
    /// Copy every backup the target does not hold yet.
    #[arg(long, conflicts_with = "backup")]
    pub all: bool,
    /// Key file of an encrypted target repository; without it the passphrase in
    /// INFLUXDB3_BACKUP_TO_PASSPHRASE unlocks it.
    #[arg(long, env = "INFLUXDB3_BACKUP_TO_KEY_FILE")]
    pub to_key_file: Option<PathBuf>,
    /// Print which backups would be copied and what would be sent; write nothing (not even the
    /// target repository or a lock).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    /// Transfer tuning.
    pub transfer: TransferArgs,
    #[command(flatten)]
    /// Upload and download caps.
    pub bandwidth: BandwidthArgs,
    #[command(flatten)]
    /// Monitoring.
    pub metrics: MetricsArgs,
}

/// `init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    #[command(flatten)]
    /// Repository (and, with --encrypt, its key file: created when it does not exist).
    pub repo: RepoArgs,
    /// Encrypt every blob and manifest (age X25519) to a new repository key, kept in --key-file
    /// and/or sealed in the repository with the passphrase in INFLUXDB3_BACKUP_PASSPHRASE.
    #[arg(long)]
    pub encrypt: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_binary_and_decimal_units() {
        assert_eq!(parse_rate("500KiB"), Ok(500 * 1024));
        assert_eq!(parse_rate("20M"), Ok(20 << 20));
        assert_eq!(parse_rate("1.5GiB/s"), Ok(3 << 29));
        assert_eq!(parse_rate("10MB"), Ok(10_000_000));
        assert_eq!(parse_rate("64"), Ok(64));
        for wrong in ["", "fast", "10 parsecs", "0MiB", "-1M", "1.2.3M"] {
            let error = parse_rate(wrong).unwrap_err();
            assert!(error.contains(&format!("{wrong:?}")), "{wrong}: {error}");
        }
    }
}
