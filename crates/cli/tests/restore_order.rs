//! Restore writes in the server's order, proven by a store that records every write: the
//! in-progress marker first, then Parquet, snapshot files and checkpoints, WAL, catalog logs, and
//! the active catalog checkpoint last; and with as many requests in flight as `--concurrency`
//! allows, parts of large objects included.
//!
//! Run: `cargo test -p influxdb3-backup --test restore_order`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ib3_testkit::counting::CountingStore;
use influxdb3_backup::args::{CloudArgs, ObjectStoreKind, SourceArgs};
use influxdb3_backup::ops::record::BackupSource;
use influxdb3_backup::progress::Bar;
use influxdb3_backup::stores::{open_root, repo_store};
use std::sync::Arc;

/// Restore writes in the server's order — Parquet, then snapshot files and checkpoints, then
/// WAL, then catalog logs (stale generations' checkpoints among them), then the active catalog
/// checkpoint last — recorded by a store that logs every write.
#[tokio::test]
async fn restore_writes_in_the_servers_order() {
    use ib3_influx::path::{classify, ObjectClass};
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let data = tmp.path().join("data");
    ib3_testkit::copy_fixture("core-3.9.6-upgraded-3.10.0", &data);
    let report = create_json(&data, &repo);

    let target = tmp.path().join("target");
    let recording = restore_recorded(&repo, &report, &target, 8, None).await;

    let written: Vec<String> = recording
        .keys_written()
        .iter()
        .map(|k| k.strip_prefix("node0/").unwrap().to_string())
        .collect();
    assert_eq!(
        written.first().map(String::as_str),
        Some(".influxdb3-backup-restore.json"),
        "the marker comes first"
    );
    let rank = |key: &str| match classify(key) {
        ObjectClass::Parquet => 1,
        ObjectClass::Snapshot { .. } | ObjectClass::SnapshotCheckpoint { .. } => 2,
        ObjectClass::Wal { .. } => 3,
        ObjectClass::CatalogLog { .. } => 4,
        ObjectClass::CatalogCheckpoint { .. } if key == "catalog/v3/snapshot" => 5,
        ObjectClass::CatalogCheckpoint { .. } => 4, // the stale v2 checkpoint
        _ => 0,
    };
    let ranks: Vec<u8> = written.iter().skip(1).map(|k| rank(k)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "writes out of order: {written:?}"
    );
    assert_eq!(
        written.last().map(String::as_str),
        Some("catalog/v3/snapshot"),
        "the active checkpoint is written last"
    );
    assert!(ranks.contains(&1) && ranks.contains(&2) && ranks.contains(&3) && ranks.contains(&4));
}

/// Restore the backup `report` names from the local repository `repo` into the data dir
/// `target` through the stores (no local fast path), `concurrency` objects at a time, each part
/// of a multipart upload taking `part_delay` longer; the store that recorded the writes.
async fn restore_recorded(
    repo: &std::path::Path,
    report: &serde_json::Value,
    target: &std::path::Path,
    concurrency: usize,
    part_delay: Option<std::time::Duration>,
) -> Arc<CountingStore> {
    let (store, location) = repo_store(repo.to_str().unwrap(), false).await.unwrap();
    let repository = ib3_repo::Repository::open(store, location).await.unwrap();
    let id: ib3_repo::BackupId = report["backup_id"].as_str().unwrap().parse().unwrap();
    let manifest = repository.load_manifest(&id).await.unwrap();
    let source = BackupSource::parse(&manifest.source).unwrap();
    let args = SourceArgs {
        object_store: ObjectStoreKind::File,
        data_dir: Some(target.to_path_buf()),
        node_id: vec!["node0".into()],
        cluster_id: None,
        bucket: None,
        cloud: CloudArgs::default(),
    };
    let mut target = open_root(&args, true).await.unwrap();
    let recording = Arc::new(match part_delay {
        Some(delay) => CountingStore::with_delay(target.store.clone(), delay),
        None => CountingStore::new(target.store.clone()),
    });
    target.store = recording.clone();
    influxdb3_backup::ops::restore::restore(influxdb3_backup::ops::restore::RestoreOptions {
        repo: repository,
        manifest,
        source,
        target,
        nodes: Vec::new(),
        dry_run: false,
        force: false,
        chown: None,
        live_check: std::time::Duration::ZERO,
        concurrency,
        bar: Bar::new(false),
        repo_dir: None,
    })
    .await
    .unwrap();
    recording
}

/// With a single turn in flight a restore from many packs still finishes: the ranged reads of
/// packs take no turn, so the member writes they feed never wait behind them.
#[tokio::test]
async fn a_single_turn_in_flight_restores_from_many_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, data) = (tmp.path().join("repo"), tmp.path().join("data"));
    ib3_testkit::generate::generate(&data, &ib3_testkit::generate::TreeSpec::new(1500)).unwrap();
    let report = create_json(&data, &repo);
    let packs = ib3_testkit::files_under(&repo.join("packs")).len();
    assert!(
        packs > 5,
        "{packs} packs: more than the reads in flight at once"
    );
    let target = tmp.path().join("target");
    let restored = restore_recorded(&repo, &report, &target, 1, None);
    let recording = tokio::time::timeout(std::time::Duration::from_secs(300), restored)
        .await
        .expect("restore with one turn in flight finished");
    assert_eq!(
        recording.keys_written().len() as u64,
        report["entries"].as_u64().unwrap() + 1,
        "every object and the marker written"
    );
}

/// `--concurrency` bounds the parts of large objects a restore writes through the stores: each
/// streams up to four parts, so a quarter of the turns stream at once (five files of three
/// parts, four at a time, kept 12 parts in flight before).
#[tokio::test]
async fn concurrency_bounds_the_parts_of_large_objects_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, data) = (tmp.path().join("repo"), tmp.path().join("data"));
    ib3_testkit::copy_fixture("core-3.10.0-basic", &data);
    add_large_parquet_files(&data, 5);
    let report = create_json(&data, &repo);
    let target = tmp.path().join("target");
    let delay = Some(std::time::Duration::from_millis(50));
    let recording = restore_recorded(&repo, &report, &target, 4, delay).await;
    let peak = recording.peak_parts();
    assert!((1..=4).contains(&peak), "parts in flight at once: {peak}");
    let restored = target.join("node0/dbs/9/9/2030-01-01/00-04/0000000001.parquet");
    assert_eq!(std::fs::metadata(restored).unwrap().len(), 17 << 20);
}
