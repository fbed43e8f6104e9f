//! influxdb3-backup: the command-line tool. This crate is the glue: it parses arguments
//! ([`args`]), builds stores ([`stores`]), runs one orchestration function per command
//! ([`ops`]) and prints reports ([`output`]) with documented exit codes ([`exit`]).
//! InfluxDB knowledge lives in `ib3-influx`, the repository format in `ib3-repo`, byte
//! movement in `ib3-transfer`.

pub mod args;
pub mod cloud;
pub mod exit;
pub mod metrics;
pub mod ops;
pub mod output;
pub mod progress;
pub mod stores;

use anyhow::Result;
use args::{Cli, Command, SourceArgs};
use exit::{Failure, USAGE};
use progress::Bar;

/// Run a parsed command line; returns the exit code for a command that completed and reported.
pub async fn run(cli: Cli) -> Result<u8> {
    let recorder = metrics_of(&cli.command);
    let started = std::time::Instant::now();
    let outcome = run_command(cli, recorder.as_ref()).await;
    if let Some(recorder) = &recorder {
        let code = match &outcome {
            Ok(code) => *code,
            Err(e) => exit::code_of(e),
        };
        if let Err(e) = recorder.write(code, started.elapsed().as_secs_f64()) {
            let failure = Failure::new(
                exit::FAILURE,
                format!(
                    "cannot write the metrics file {}: {e}; the command itself ended with exit \
                     code {code}",
                    recorder.path().display()
                ),
            )
            .hint("check that --metrics-file names a file in a directory this user can write");
            match outcome {
                Ok(_) => return Err(failure.into()),
                Err(_) => output::tell(format_args!("warning: {failure}")),
            }
        }
    }
    let code = outcome?;
    output::written()?;
    Ok(code)
}

/// What a run leaves for monitoring (`--metrics-file`), if asked: the jobs an operator schedules
/// (a backup, a verification, a restore drill, retention, an off-site copy), not their dry runs.
fn metrics_of(command: &Command) -> Option<metrics::Recorder> {
    let repository = |repo: &args::RepoArgs| ("repository", repo.repo.clone());
    let (metrics, name, labels) = match command {
        Command::Create(args) if !args.dry_run => {
            let subject = match &args.source.cluster_id {
                Some(cluster) => ("cluster", cluster.clone()),
                None => ("node", stores::node_ids(&args.source).join(",")),
            };
            (
                &args.metrics,
                "create",
                vec![repository(&args.repo), subject],
            )
        }
        Command::Verify(args) => (&args.metrics, "verify", vec![repository(&args.repo)]),
        Command::Restore(args) if !args.dry_run => {
            let backup = ("backup", args.backup.clone());
            (
                &args.metrics,
                "restore",
                vec![repository(&args.repo), backup],
            )
        }
        Command::Prune(args) if !args.dry_run => {
            (&args.metrics, "prune", vec![repository(&args.repo)])
        }
        Command::Copy(args) if !args.dry_run => {
            let target = ("target", args.to_repo.clone());
            (&args.metrics, "copy", vec![repository(&args.repo), target])
        }
        _ => return None,
    };
    let path = metrics.metrics_file.clone()?;
    Some(metrics::Recorder::new(path, name, labels))
}

/// The caps on uploads and downloads a command was given (`--limit-upload`,
/// `--limit-download`).
fn bandwidth_limits(command: &Command) -> (Option<u64>, Option<u64>) {
    match command {
        Command::Create(args) => args.bandwidth.caps(),
        Command::Restore(args) => args.bandwidth.caps(),
        Command::Copy(args) => args.bandwidth.caps(),
        Command::Verify(args) => (None, args.downloads.limit_download),
        _ => (None, None),
    }
}

async fn run_command(cli: Cli, recorder: Option<&metrics::Recorder>) -> Result<u8> {
    let (uploads, downloads) = bandwidth_limits(&cli.command);
    cloud::limit_bandwidth(uploads, downloads);
    let bar = Bar::new(!cli.json && !cli.quiet);
    let json = cli.json;
    match cli.command {
        Command::Create(args) => {
            let source = create_source(&args).await?;
            if args.dry_run {
                let keys = key_source(args.repo.key_file.clone(), "INFLUXDB3_BACKUP_PASSPHRASE");
                let (repo, location) =
                    repo_if_any(cloud::REPO_ENV_PREFIX, &args.repo.repo, &keys).await?;
                let concurrency = args.transfer.concurrency as usize;
                let plan =
                    ops::create::plan(source, repo, location, args.rescan_after, concurrency)
                        .await?;
                return output::create_plan(&plan, json);
            }
            let local = source
                .data_dir()
                .zip(stores::local_repo_dir(&args.repo.repo))
                .map(|(data_dir, repo_dir)| ops::create::LocalDirs {
                    data_dir: data_dir.clone(),
                    repo_dir,
                });
            let report = ops::create::create(ops::create::CreateOptions {
                source,
                repo: stores::repo_store(&args.repo.repo, true).await?,
                concurrency: args.transfer.concurrency as usize,
                max_replans: args.max_replans,
                allow_inconsistent: args.allow_inconsistent,
                reread_snapshots: args.reread_snapshots,
                rescan_after: args.rescan_after,
                compression: (args.compression_level > 0).then_some(args.compression_level),
                keys: key_source(args.repo.key_file.clone(), "INFLUXDB3_BACKUP_PASSPHRASE"),
                bar,
                local,
            })
            .await?;
            if let Some(recorder) = recorder {
                recorder.create_figures(&report);
            }
            output::create(&report, json)
        }
        Command::List(args) => {
            let repo = open_repo(&args.repo).await?;
            output::list(&ops::list::list(&repo).await?, json)
        }
        Command::Verify(args) => {
            let repo = open_repo(&args.repo).await?;
            let report = ops::verify::verify(ops::verify::VerifyOptions {
                repo,
                backup: args.backup,
                read_data: args
                    .read_data_subset
                    .or(args.read_data.then_some(ops::verify::Subset::All)),
                concurrency: args.transfer.concurrency as usize,
                bar,
            })
            .await?;
            if let Some(recorder) = recorder {
                recorder.verify_figures(&report);
            }
            output::verify(&report, json)
        }
        Command::Inspect(args) => {
            let concurrency = args.transfer.concurrency as usize;
            if let Some(cluster_id) = &args.source.cluster_id {
                stores::check_node_id(cluster_id)?;
                let root = stores::open_root(&args.source, false).await?;
                let report = ops::inspect::inspect_cluster(&root, cluster_id, concurrency).await?;
                return output::inspect_cluster(&report, json);
            }
            let source =
                stores::open_node(&args.source, &required_node_id(&args.source)?, false).await?;
            let report = ops::inspect::inspect(&source, concurrency).await?;
            output::inspect(&report, json)
        }
        Command::Restore(args) => {
            let repo = open_repo(&args.repo).await?;
            let id = repo.resolve(&args.backup).await?;
            let manifest = repo.load_manifest(&id).await?;
            let source = ops::record::BackupSource::parse(&manifest.source).map_err(|e| {
                Failure::new(
                    exit::REPOSITORY,
                    format!("backup {id} is not an InfluxDB 3 backup of this tool: {e}"),
                )
            })?;
            let nodes = restore_prefixes(&args.target, &source)?;
            let chown = args
                .chown
                .as_deref()
                .map(ops::restore::parse_chown)
                .transpose()?;
            if chown.is_some() && args.target.object_store != args::ObjectStoreKind::File {
                return Err(
                    Failure::new(USAGE, "--chown applies to a `file` object store only").into(),
                );
            }
            // A dry run into a directory that does not exist yet plans against an empty stand-in.
            let absent = if args.dry_run {
                stores::absent_root(&args.target)?
            } else {
                None
            };
            let target = match absent {
                Some(target) => target,
                None => stores::open_root(&args.target, !args.dry_run).await?,
            };
            let lock = repo
                .lock(ib3_repo::lock::LockKind::Shared, "restore")
                .await?;
            let result = ops::restore::restore(ops::restore::RestoreOptions {
                repo: repo.clone(),
                manifest,
                source,
                target,
                nodes,
                dry_run: args.dry_run,
                force: args.force,
                chown,
                live_check: args.live_check,
                concurrency: args.transfer.concurrency as usize,
                bar,
                repo_dir: stores::local_repo_dir(&args.repo.repo),
            })
            .await;
            let released = lock.release().await;
            let report = result?;
            released?;
            if let Some(recorder) = recorder {
                recorder.restore_figures(&report);
            }
            output::restore(&report, json)
        }
        Command::Prune(args) => {
            let repo = open_repo(&args.repo).await?;
            let policy = ib3_repo::retention::KeepPolicy {
                last: args.keep_last,
                hourly: args.keep_hourly,
                daily: args.keep_daily,
                weekly: args.keep_weekly,
                monthly: args.keep_monthly,
                yearly: args.keep_yearly,
                within: args.keep_within,
            };
            let local_dir = stores::local_repo_dir(&args.repo.repo);
            let report = ops::prune::prune(
                &repo,
                local_dir.as_deref(),
                &policy,
                args.gc_grace,
                args.dry_run,
            )
            .await?;
            if let Some(recorder) = recorder {
                recorder.prune_figures(&report);
            }
            output::prune(&report, json)
        }
        Command::Copy(args) => {
            let from = open_repo(&args.repo).await?;
            let to_keys = key_source(args.to_key_file.clone(), "INFLUXDB3_BACKUP_TO_PASSPHRASE");
            let backup = if args.all {
                None
            } else {
                Some(args.backup.clone().unwrap_or_else(|| "latest".into()))
            };
            if args.dry_run {
                let (to, location) =
                    repo_if_any(cloud::TO_REPO_ENV_PREFIX, &args.to_repo, &to_keys).await?;
                let report =
                    ops::copy::plan(&from, to.as_ref(), &location, backup.as_deref()).await?;
                return output::copy(&report, json);
            }
            let (store, location) =
                stores::repo_store_in(cloud::TO_REPO_ENV_PREFIX, &args.to_repo, true).await?;
            let (to, _) = ib3_repo::Repository::open_or_init_with(
                store,
                location,
                &ops::tool_version(),
                &to_keys,
            )
            .await?;
            let report = ops::copy::copy(
                &from,
                &to,
                ops::copy::CopySettings {
                    backup,
                    concurrency: args.transfer.concurrency as usize,
                    bar,
                },
            )
            .await?;
            if let Some(recorder) = recorder {
                recorder.copy_figures(&report);
            }
            output::copy(&report, json)
        }
        Command::Init(args) => {
            let (store, location) = stores::repo_store(&args.repo.repo, true).await?;
            let keys = key_source(args.repo.key_file.clone(), "INFLUXDB3_BACKUP_PASSPHRASE");
            let repo = ib3_repo::Repository::init(
                store,
                location,
                &ops::tool_version(),
                args.encrypt.then_some(&keys),
            )
            .await?;
            output::init(&repo, json)
        }
        Command::Unlock(args) => {
            let repo = open_repo(&args.repo).await?;
            let report = ops::unlock::unlock(&repo, args.stale_only, args.dry_run).await?;
            output::unlock(&report, json)
        }
    }
}

/// A repository for a dry run (`create`'s, or `copy`'s target), opened without writing anything:
/// `None` where none exists yet (a directory not made yet, or an empty location); its
/// credentials from the variables with `env_prefix`. Also its location.
async fn repo_if_any(
    env_prefix: &str,
    spec: &str,
    keys: &ib3_repo::keys::KeySource,
) -> Result<(Option<ib3_repo::Repository>, String)> {
    if let Some(dir) = stores::local_repo_dir(spec).filter(|dir| !dir.exists()) {
        return Ok((None, dir.display().to_string()));
    }
    let (store, location) = stores::repo_store_in(env_prefix, spec, false).await?;
    let repo = ib3_repo::Repository::open_if_any_with(store, location.clone(), keys).await?;
    Ok((repo, location))
}

async fn open_repo(args: &args::RepoArgs) -> Result<ib3_repo::Repository> {
    let (store, location) = stores::repo_store(&args.repo, false).await?;
    Ok(ib3_repo::Repository::open_with(
        store,
        location,
        &key_source(args.key_file.clone(), "INFLUXDB3_BACKUP_PASSPHRASE"),
    )
    .await?)
}

/// The key of an encrypted repository: `--key-file`, else the passphrase in `passphrase_env`.
fn key_source(
    key_file: Option<std::path::PathBuf>,
    passphrase_env: &str,
) -> ib3_repo::keys::KeySource {
    ib3_repo::keys::KeySource {
        key_file,
        passphrase: std::env::var(passphrase_env)
            .ok()
            .filter(|p| !p.is_empty())
            .map(age::secrecy::SecretString::from),
    }
}

/// What `create` backs up: a cluster with --cluster-id, else the one node.
async fn create_source(args: &args::CreateArgs) -> Result<ops::create::CreateSource> {
    let Some(cluster_id) = args.source.cluster_id.clone() else {
        let node_id = required_node_id(&args.source)?;
        return Ok(ops::create::CreateSource::Node(
            stores::open_node(&args.source, &node_id, false).await?,
        ));
    };
    stores::check_node_id(&cluster_id)?;
    Ok(ops::create::CreateSource::Cluster(
        ops::create_cluster::ClusterSource {
            root: stores::open_root(&args.source, false).await?,
            cluster_id,
            nodes: stores::node_ids(&args.source),
            builtin_backup: args.builtin_backup.clone(),
        },
    ))
}

fn required_node_id(args: &SourceArgs) -> Result<String> {
    stores::node_id(args)?.ok_or_else(|| {
        Failure::new(USAGE, "no node id given")
            .hint("pass --node-id (or set INFLUXDB3_NODE_IDENTIFIER_PREFIX), as for `influxdb3 serve`")
            .into()
    })
}

/// Check the target's ids against the backup's: a node backup restores under its own node id
/// (snapshot files name their Parquet files with the node prefix, so a renamed node would not
/// find its data), a cluster backup under its own cluster id. Returns the cluster members to
/// restore (`--node-id`; empty: all).
fn restore_prefixes(args: &SourceArgs, source: &ops::record::BackupSource) -> Result<Vec<String>> {
    use ops::record::BackupSource;
    match source {
        BackupSource::Node(record) => {
            if let Some(cluster) = &args.cluster_id {
                return Err(Failure::new(
                    USAGE,
                    format!("this backup is of node {:?}, not of an Enterprise cluster; --cluster-id {cluster} does not apply", record.node_id),
                )
                .into());
            }
            match stores::node_id(args)? {
                Some(id) if id != record.node_id => Err(Failure::new(
                    USAGE,
                    format!(
                        "this backup is of node {:?}; restoring it as {id:?} is not supported: its snapshot files name every Parquet file under {:?}/",
                        record.node_id, record.node_id
                    ),
                )
                .hint(format!("restore with --node-id {} and start the server with that node id", record.node_id))
                .into()),
                _ => Ok(Vec::new()),
            }
        }
        BackupSource::Cluster(cluster) => match &args.cluster_id {
            Some(id) if *id != cluster.cluster_id => Err(Failure::new(
                USAGE,
                format!(
                    "this backup is of cluster {:?}; restoring it as cluster {id:?} is not supported: node and catalog files are bound to the cluster id",
                    cluster.cluster_id
                ),
            )
            .hint(format!("restore with --cluster-id {}", cluster.cluster_id))
            .into()),
            _ => Ok(stores::node_ids(args)),
        },
    }
}
