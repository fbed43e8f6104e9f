//! Incremental by construction, proven by counting what the source store serves: a second
//! `create` reads no immutable source file (Parquet, WAL, snapshot, snapshot checkpoint, catalog
//! log) that the repository already holds under the same key and size — only the catalog
//! checkpoints, which the server overwrites in place — and uploads nothing. A third `create`
//! after the "server" added files reads exactly those.
//!
//! Run: `cargo test -p influxdb3-backup --test incremental`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{add_large_parquet_files, create_json, create_node0_args, run, tree};
use ib3_testkit::counting::CountingStore;
use ib3_testkit::generate::{generate, grow, TreeSpec, TreeState};
use influxdb3_backup::args::{CloudArgs, ObjectStoreKind, SourceArgs};
use influxdb3_backup::ops::create::{create, CreateOptions, CreateReport, DEFAULT_RESCAN_AFTER};
use influxdb3_backup::stores::{open_node, repo_store, NodeStore};
use object_store::ObjectStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The local node `node0` of the data dir `data`.
async fn local_node(data: &Path) -> NodeStore {
    let args = SourceArgs {
        object_store: ObjectStoreKind::File,
        data_dir: Some(data.to_path_buf()),
        node_id: vec!["node0".into()],
        cluster_id: None,
        bucket: None,
        cloud: CloudArgs::default(),
    };
    open_node(&args, "node0", false).await.unwrap()
}

/// A temporary directory holding a copy of `fixture` as its `data` dir, and that dir.
fn fixture_copy(fixture: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ib3_testkit::copy_fixture(fixture, &data);
    (tmp, data)
}

/// `create` of `source` into the local repository `repo`.
async fn create_into(
    source: NodeStore,
    repo: &Path,
    max_replans: u32,
) -> anyhow::Result<CreateReport> {
    create_reading(source, repo, max_replans, false).await
}

/// [`create_into`], with `create --reread-snapshots` or without.
async fn create_reading(
    source: NodeStore,
    repo: &Path,
    max_replans: u32,
    reread_snapshots: bool,
) -> anyhow::Result<CreateReport> {
    create_with(
        source,
        repo,
        max_replans,
        reread_snapshots,
        4,
        DEFAULT_RESCAN_AFTER,
    )
    .await
}

/// [`create_into`], listing the Parquet tree (`--rescan-after 0s`) instead of following the
/// snapshot files from the previous backup's: for files a test adds or removes by hand, which no
/// snapshot file records.
async fn create_listing(
    source: NodeStore,
    repo: &Path,
    max_replans: u32,
) -> anyhow::Result<CreateReport> {
    create_with(source, repo, max_replans, false, 4, Duration::ZERO).await
}

/// [`create_reading`], `concurrency` objects at a time, listing the Parquet tree again once its
/// last listing is `rescan_after` old.
async fn create_with(
    source: NodeStore,
    repo: &Path,
    max_replans: u32,
    reread_snapshots: bool,
    concurrency: usize,
    rescan_after: Duration,
) -> anyhow::Result<CreateReport> {
    let repo = repo_store(repo.to_str().unwrap(), true).await.unwrap();
    create(CreateOptions {
        concurrency,
        max_replans,
        reread_snapshots,
        rescan_after,
        ..options(source, repo)
    })
    .await
}

/// The `create` options of these tests, of `source` into `repo` (a store and its location):
/// 4 objects at a time, 3 re-plans, compression level 3, no progress bar, through the stores.
fn options(source: NodeStore, repo: (Arc<dyn ObjectStore>, String)) -> CreateOptions {
    let source = influxdb3_backup::ops::create::CreateSource::Node(source);
    CreateOptions {
        concurrency: 4,
        max_replans: 3,
        ..CreateOptions::new(source, repo)
    }
}

async fn counted_create(data: &Path, repo: &Path) -> (CreateReport, Arc<CountingStore>) {
    let (source, counting) = counted_node(data).await;
    (create_into(source, repo, 3).await.unwrap(), counting)
}

/// [`counted_create`] through [`create_listing`].
async fn counted_create_listing(data: &Path, repo: &Path) -> (CreateReport, Arc<CountingStore>) {
    let (source, counting) = counted_node(data).await;
    (create_listing(source, repo, 3).await.unwrap(), counting)
}

/// The node of `data` behind a store that counts what is read of it.
async fn counted_node(data: &Path) -> (NodeStore, Arc<CountingStore>) {
    let mut source = local_node(data).await;
    let counting = Arc::new(CountingStore::new(source.node.clone()));
    source.node = counting.clone();
    (source, counting)
}

/// `--concurrency` bounds a run's reads of the source in all: the small objects read for packs
/// and the larger ones stored alone take turns from one bound, not one each.
#[tokio::test]
async fn concurrency_bounds_packed_and_alone_reads_together() {
    use ib3_testkit::generate::{generate, SizeProfile, TreeSpec};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = TreeSpec {
        sizes: SizeProfile::Realistic,
        ..TreeSpec::new(60)
    };
    generate(&data, &spec).unwrap();
    let sizes: Vec<u64> = ib3_testkit::files_under(&data.join("node0/dbs"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    let large = sizes.iter().filter(|s| **s > 256 << 10).count();
    assert!(
        large >= 4 && sizes.len() - large >= 8,
        "the tree needs both small and large Parquet files: {sizes:?}"
    );

    let mut source = local_node(&data).await;
    let delay = std::time::Duration::from_millis(20);
    let counting = Arc::new(CountingStore::with_delay(source.node.clone(), delay));
    source.node = counting.clone();
    let report = create_into(source, &tmp.path().join("repo"), 3)
        .await
        .unwrap();
    assert!(report.consistent);
    // `create_into` runs with a concurrency of 4.
    assert_eq!(counting.peak_gets(), 4, "reads in flight at once");
}

/// `--concurrency` also bounds the parts of large objects uploaded at once: each large object
/// keeps up to 4 parts in flight, so a quarter as many of them stream together. Unbounded, 4
/// objects of 3 parts each put 12 parts (and their 8 MiB buffers) in flight at `--concurrency 4`.
#[tokio::test]
async fn concurrency_bounds_the_parts_of_large_objects_in_flight() {
    let (tmp, data) = fixture_copy("core-3.10.0-basic");
    add_large_parquet_files(&data, 5);
    let (store, location) = repo_store(tmp.path().join("repo").to_str().unwrap(), true)
        .await
        .unwrap();
    let delay = Duration::from_millis(50);
    let counting = Arc::new(CountingStore::with_delay(store, delay));
    let repo = (counting.clone() as Arc<dyn ObjectStore>, location);
    let report = create(options(local_node(&data).await, repo))
        .await
        .unwrap();
    assert!(report.blobs_uploaded >= 5, "{report:?}");
    let peak = counting.peak_parts();
    assert!((1..=4).contains(&peak), "parts in flight at once: {peak}");
}

/// With a single turn in flight a capture into more packs than are written at once still
/// finishes, one read at a time: reads wait on pack writes there (their stream is not polled
/// while four packs are being written), and those writes take no turn.
#[tokio::test]
async fn a_single_turn_in_flight_fills_and_writes_many_packs() {
    use ib3_testkit::generate::{generate, TreeSpec};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 1 500 small files: six groups of 256 or more, beyond the four packs written at once.
    generate(&data, &TreeSpec::new(1500)).unwrap();
    let mut source = local_node(&data).await;
    let counting = Arc::new(CountingStore::new(source.node.clone()));
    source.node = counting.clone();
    let repo = tmp.path().join("repo");
    let created = create_with(source, &repo, 3, false, 1, DEFAULT_RESCAN_AFTER);
    let report = tokio::time::timeout(std::time::Duration::from_secs(300), created)
        .await
        .expect("create with one turn in flight finished")
        .unwrap();
    assert!(report.consistent);
    assert_eq!(counting.peak_gets(), 1, "reads in flight at once");
    let packs = ib3_testkit::files_under(&repo.join("packs")).len();
    assert!(packs >= 5, "{packs} packs written");
}

#[tokio::test]
async fn second_create_reads_only_the_overwritten_checkpoints() {
    let (tmp, data) = fixture_copy("core-3.3.0-upgraded-3.9.6");
    let repo = tmp.path().join("repo");

    let (first, counted) = counted_create(&data, &repo).await;
    assert_eq!(
        counted.bytes_read(),
        first.bytes,
        "the first backup reads every object once"
    );

    let (second, counted) = counted_create(&data, &repo).await;
    let read: Vec<String> = counted.keys_read().into_keys().collect();
    assert_eq!(
        read,
        ["_catalog_checkpoint", "catalog/v2/snapshot"],
        "only mutable objects are read again"
    );
    let mutable: u64 = ["_catalog_checkpoint", "catalog/v2/snapshot"]
        .iter()
        .map(|k| std::fs::metadata(data.join("node0").join(k)).unwrap().len())
        .sum();
    assert_eq!(counted.bytes_read(), mutable);
    assert_eq!(
        second.bytes_read, mutable,
        "the report agrees with the store"
    );
    assert_eq!(second.bytes_uploaded, 0);

    // The "server" writes a new WAL file and a new Parquet file: only they are read.
    let node = data.join("node0");
    let (newest_seq, wal) = newest_wal(&node);
    let new_wal = format!("wal/{:011}.wal", newest_seq + 1);
    std::fs::write(node.join(&new_wal), &wal).unwrap();
    let parquet = node.join("dbs/1/0/2030-01-01/00-00/0000099999.parquet");
    std::fs::create_dir_all(parquet.parent().unwrap()).unwrap();
    std::fs::write(&parquet, b"PAR1 new parquet bytes PAR1").unwrap();
    let (_, counted) = counted_create_listing(&data, &repo).await;
    let read: BTreeMap<String, u64> = counted.keys_read();
    let mut expected: Vec<&str> = vec![
        "_catalog_checkpoint",
        "catalog/v2/snapshot",
        "dbs/1/0/2030-01-01/00-00/0000099999.parquet",
        new_wal.as_str(),
    ];
    expected.sort();
    assert_eq!(
        read.keys().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
}

/// Content that new objects share with another path of the previous backup: a phase that
/// stores many objects finds it among all of that backup's blobs and stores none of it again;
/// one that stores a few adds only the blobs their own paths had (DESIGN §3.7), so the content is
/// stored once more.
#[tokio::test]
async fn content_shared_with_another_path_is_stored_again_only_by_a_few_new_objects() {
    let (tmp, data) = fixture_copy("core-3.3.0-upgraded-3.9.6");
    let repo = tmp.path().join("repo");
    counted_create(&data, &repo).await;
    let node = data.join("node0");
    let parquet: Vec<Vec<u8>> = ib3_testkit::files_under(&node.join("dbs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let (many_of, few_of) = (&parquet[0], &parquet[1]);
    assert_ne!(many_of, few_of);
    let copy_into = |day: &str, copies: usize, bytes: &[u8]| {
        let dir = node.join(format!("dbs/1/0/{day}/00-00"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..copies {
            std::fs::write(dir.join(format!("{i:010}.parquet")), bytes).unwrap();
        }
    };
    let many = influxdb3_backup::ops::create::FEW_TO_STORE + 1;
    copy_into("2030-02-01", many, many_of);
    let (report, _) = counted_create_listing(&data, &repo).await;
    assert!(
        report.bytes_read >= (many * many_of.len()) as u64,
        "the copies were read"
    );
    assert_eq!(report.blobs_uploaded, 0, "{many} copies of a stored blob");

    copy_into("2030-02-02", 3, few_of);
    let (report, _) = counted_create_listing(&data, &repo).await;
    assert!(
        report.blobs_uploaded >= 1,
        "3 copies of a stored blob found known: {}",
        report.blobs_uploaded
    );
}

/// A local node's directories that have not changed since the previous backup began are
/// neither read again nor their files stat-ed (DESIGN §2), yet a file replaced the way the
/// server writes (under a temporary name, renamed into place) is seen at its new size, and a
/// file added is found: both change their directory's status time. A file changed in place
/// keeps it, and is listed at its earlier size: the backup keeps the content it captured.
#[tokio::test]
async fn unchanged_directories_still_show_replaced_and_added_files() {
    let (tmp, data) = fixture_copy("core-3.3.0-upgraded-3.9.6");
    let node = data.join("node0");
    let unreferenced = "dbs/2/0/2026-11-25/08-43/0000088888.parquet";
    std::fs::write(node.join(unreferenced), b"PAR1 beyond the cut PAR1").unwrap();
    let in_place = "dbs/2/0/2026-11-25/08-44/0000088889.parquet";
    std::fs::create_dir_all(node.join(in_place).parent().unwrap()).unwrap();
    std::fs::write(node.join(in_place), b"PAR1 written once PAR1").unwrap();
    let repo = tmp.path().join("repo");
    // Directories are trusted only when they last changed 2 s before a backup began (which
    // is recorded in whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(3_200));
    let (first, _) = counted_create(&data, &repo).await;

    let staged = node.join(format!("{unreferenced}#1"));
    std::fs::write(&staged, b"PAR1 replaced by a rename, longer PAR1").unwrap();
    std::fs::rename(&staged, node.join(unreferenced)).unwrap();
    std::fs::write(
        node.join(in_place),
        b"PAR1 changed in place PAR1 and longer",
    )
    .unwrap();
    let added = "dbs/2/0/2026-11-25/08-56/0000077777.parquet";
    std::fs::write(node.join(added), b"PAR1 added PAR1").unwrap();
    let (second, counted) = counted_create_listing(&data, &repo).await;
    let read: Vec<String> = counted.keys_read().into_keys().collect();
    assert_eq!(
        read,
        [
            "_catalog_checkpoint",
            "catalog/v2/snapshot",
            unreferenced,
            added
        ]
    );
    let entries = ib3_testkit::manifest_files::manifest_entries(&repo, &second.backup_id);
    let size_of = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"].as_str() == Some(path))
            .map(|e| e["size"].as_u64().unwrap())
    };
    assert_eq!(size_of(in_place), Some(22), "its earlier capture, kept");
    let (third, counted) = counted_create_listing(&data, &repo).await;
    assert_eq!(counted.keys_read().len(), 2, "only the checkpoints again");
    assert_eq!(
        third.bytes - first.bytes,
        38 - 24 + 15,
        "the replaced file at its new size, and the added one"
    );
}

/// The codes of the findings a backup's record holds.
fn finding_codes(report: &CreateReport) -> Vec<String> {
    report.source["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// An incremental that lists the Parquet tree takes the snapshot files of a clean previous backup
/// as settled (their Parquet references are not read again) only while every Parquet file of
/// that backup is still there: a file deleted from the source is found missing (not carried
/// forward from the previous backup's copy, which a full backup would not have), and a backup
/// that recorded it missing still says so in the next run, settled or not. (One that follows
/// the snapshot files carries the tree forward instead, until its next listing: see
/// `an_incremental_follows_the_snapshot_files_instead_of_listing_parquet`.)
#[tokio::test]
async fn settled_snapshots_never_hide_a_missing_parquet_file() {
    let (tmp, data) = fixture_copy("core-3.10.0-basic");
    let repo = tmp.path().join("repo");
    let (first, _) = counted_create(&data, &repo).await;
    assert!(first.consistent);
    assert_eq!(finding_codes(&first), Vec::<String>::new());
    let (second, _) = counted_create(&data, &repo).await;
    assert_eq!(second.source["point"], first.source["point"]);
    assert_eq!(finding_codes(&second), Vec::<String>::new());

    // The newest Parquet file: referenced by snapshots only (the checkpoint predates it).
    let entries = ib3_testkit::manifest_files::manifest_entries(&repo, &second.backup_id);
    let newest = entries
        .iter()
        .filter_map(|e| e["path"].as_str())
        .filter(|p| p.ends_with(".parquet"))
        .max()
        .unwrap()
        .to_string();
    std::fs::remove_file(data.join("node0").join(&newest)).unwrap();
    let (third, _) = counted_create_listing(&data, &repo).await;
    assert_eq!(finding_codes(&third), ["parquet-missing"]);
    assert_eq!(
        third.source["findings"][0]["object"],
        format!("node0/{newest}").as_str()
    );
    let (fourth, _) = counted_create_listing(&data, &repo).await;
    assert_eq!(
        finding_codes(&fourth),
        ["parquet-missing"],
        "the next backup still reports the file missing"
    );

    // Back at another size than recorded: its references are judged anew, not settled.
    let node = data.join("node0");
    std::fs::write(node.join(&newest), b"PAR1 not the recorded bytes PAR1").unwrap();
    let error = create_listing(local_node(&data).await, &repo, 0)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&newest) && message.contains("bytes"),
        "{message}"
    );
}

/// Each snapshot file's entry keeps the header the cut read (`facts`); the next incremental,
/// finding the files settled, takes their headers from there and reads none of them: with every
/// snapshot blob of the repository damaged it still judges the node as before. Facts that are
/// already there change no entry, so a no-change incremental still writes no entry chunk; with
/// `--reread-snapshots` every file is read again.
#[tokio::test]
async fn settled_snapshot_files_are_judged_from_their_kept_headers_unread() {
    let (tmp, data) = fixture_copy("core-3.10.0-basic");
    let repo = tmp.path().join("repo");
    let (first, _) = counted_create(&data, &repo).await;
    let snapshot_entries = |id: &str| -> Vec<serde_json::Value> {
        ib3_testkit::manifest_files::manifest_entries(&repo, id)
            .into_iter()
            .filter(|e| e["class"] == "snapshot")
            .collect()
    };
    let snapshots = snapshot_entries(&first.backup_id);
    assert_eq!(snapshots.len(), 59);
    for entry in &snapshots {
        let facts = &entry["facts"];
        assert_eq!(facts["kind"], "snapshot-header/1", "{entry}");
        let seq = facts["snapshot_sequence_number"].as_u64().unwrap();
        let name = entry["path"].as_str().unwrap();
        assert_eq!(
            name,
            format!("snapshots/{}.info.json", u64::MAX - seq),
            "{entry}"
        );
    }
    let (second, _) = counted_create(&data, &repo).await;
    assert_eq!(snapshot_entries(&second.backup_id), snapshots);
    assert_eq!(second.entry_chunks_written, 0);

    for entry in &snapshots {
        ib3_testkit::manifest_files::stored_at(&repo, entry).damage();
    }
    let (third, _) = counted_create(&data, &repo).await;
    assert!(third.consistent);
    assert_eq!(third.source["point"], first.source["point"]);
    assert_eq!(finding_codes(&third), Vec::<String>::new());

    // `--reread-snapshots` takes no kept header: it reads the (damaged) files and says so.
    let error = create_reading(local_node(&data).await, &repo, 3, true)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("reading repository blob") && message.contains("snapshots/"),
        "{message}"
    );
}

/// Damage the node's v3 catalog checkpoint (found only after every other file was captured);
/// returns its path and good bytes, to put back.
fn corrupt_catalog_checkpoint(node: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let checkpoint = node.join("catalog/v3/snapshot");
    let good = std::fs::read(&checkpoint).unwrap();
    let mut bad = good.clone();
    bad[0x44] ^= 0xff;
    std::fs::write(&checkpoint, &bad).unwrap();
    (checkpoint, good)
}

/// The newest WAL file's sequence number and bytes.
fn newest_wal(node: &Path) -> (u64, Vec<u8>) {
    let mut wals: Vec<_> = std::fs::read_dir(node.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wals.sort();
    let newest = wals.last().unwrap();
    let seq = newest
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (seq, std::fs::read(newest).unwrap())
}

/// A run that fails late (here: a corrupt catalog checkpoint, found after every Parquet, snapshot
/// and WAL file was stored) leaves a progress record; the next run reuses it and reads none of
/// those files again — not even a large, streamed one — then removes the record.
#[tokio::test]
async fn a_failed_run_is_resumed_without_reading_what_it_stored() {
    let (tmp, data) = fixture_copy("core-3.10.0-basic");
    let node = data.join("node0");
    let big = node.join("dbs/1/0/2030-01-01/00-00/0000099999.parquet");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let mut content = vec![0u8; 20 << 20];
    fastrand::Rng::with_seed(1).fill(&mut content);
    std::fs::write(&big, &content).unwrap();
    let (checkpoint, good) = corrupt_catalog_checkpoint(&node);
    let repo = tmp.path().join("repo");

    let failed = create_into(local_node(&data).await, &repo, 0).await;
    assert!(failed.is_err(), "the corrupt checkpoint must fail the run");
    assert_eq!(
        std::fs::read_dir(repo.join("partial")).unwrap().count(),
        1,
        "progress was recorded"
    );

    std::fs::write(&checkpoint, &good).unwrap();
    let (report, counted) = counted_create(&data, &repo).await;
    let read = counted.keys_read();
    assert!(
        !read.keys().any(|k| k.ends_with(".parquet")
            || k.starts_with("wal/")
            || k.starts_with("snapshots/")),
        "re-read: {read:?}"
    );
    assert!(
        report.bytes_read < 1 << 20,
        "{} bytes read again",
        report.bytes_read
    );
    assert_eq!(
        std::fs::read_dir(repo.join("partial"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "record removed after the commit"
    );
    let restored_big = ib3_testkit::manifest_files::manifest_entries(&repo, &report.backup_id)
        .iter()
        .any(|e| e["path"].as_str().unwrap().ends_with("0000099999.parquet"));
    assert!(restored_big);
}

/// A source file that fails its read in the middle of the Parquet phase (here: truncated just
/// before its read, so its size no longer matches) fails the run by name and commits nothing.
/// Nothing is begun after the failure, but every file whose read had begun is finished and
/// recorded: the next run reads none of them again, only the file that failed.
#[tokio::test]
async fn a_read_failing_mid_phase_stops_the_run_and_keeps_what_was_begun() {
    let (tmp, data) = fixture_copy("core-3.10.0-basic");
    let node = data.join("node0");
    let repo = tmp.path().join("repo");
    let mut parquet: Vec<String> = ib3_testkit::files_under(&node.join("dbs"))
        .iter()
        .map(|p| p.strip_prefix(&node).unwrap().to_str().unwrap().to_string())
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    parquet.sort();
    let victim = parquet[parquet.len() / 2].clone();
    let victim_file = node.join(&victim);
    let good = std::fs::read(&victim_file).unwrap();

    let mut source = local_node(&data).await;
    let (truncate, key_of_victim) = (victim_file.clone(), victim.clone());
    // Reads begun after the victim's are slowed down, so that they are still in flight when its
    // failure shows.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let counting = Arc::new(CountingStore::with_hook(
        source.node.clone(),
        Box::new(move |key| {
            if key == key_of_victim {
                std::fs::write(&truncate, b"PAR1").unwrap();
                failed.store(true, std::sync::atomic::Ordering::SeqCst);
            } else if failed.load(std::sync::atomic::Ordering::SeqCst) && key.ends_with(".parquet")
            {
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }),
    ));
    source.node = counting.clone();
    let err = create_into(source, &repo, 0).await.unwrap_err();
    assert!(format!("{err:#}").contains(&victim), "{err:#}");
    let manifests = std::fs::read_dir(repo.join("manifests")).map_or(0, |d| d.count());
    assert_eq!(manifests, 0, "the failed run committed a backup");
    let begun: Vec<String> = counting
        .keys_read()
        .into_keys()
        .filter(|k| k.ends_with(".parquet") && *k != victim)
        .collect();
    assert!(!begun.is_empty(), "the failure came before any other read");

    std::fs::write(&victim_file, &good).unwrap();
    let (_, counted) = counted_create(&data, &repo).await;
    let read_again = counted.keys_read();
    assert!(read_again.contains_key(&victim), "{read_again:?}");
    let begun_read_again: Vec<&String> = begun
        .iter()
        .filter(|k| read_again.contains_key(*k))
        .collect();
    assert!(
        begun_read_again.is_empty(),
        "begun in the failed run, read again: {begun_read_again:?}"
    );
}

/// An incremental's progress record holds what it stored, not what the previous backup holds
/// already: a failed incremental records only its new file, and the next run reads it no more.
#[tokio::test]
async fn a_failed_incremental_records_only_its_changes() {
    let (tmp, data) = fixture_copy("core-3.10.0-basic");
    let node = data.join("node0");
    let repo = tmp.path().join("repo");
    let (first, _) = counted_create(&data, &repo).await;
    assert!(first.entries > 50);

    let new = node.join("dbs/1/0/2030-01-01/00-00/0000099998.parquet");
    std::fs::create_dir_all(new.parent().unwrap()).unwrap();
    std::fs::write(&new, b"a new parquet file").unwrap();
    let (checkpoint, good) = corrupt_catalog_checkpoint(&node);
    assert!(create_listing(local_node(&data).await, &repo, 0)
        .await
        .is_err());
    let records: Vec<String> = std::fs::read_dir(repo.join("partial"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(records.len(), 1);
    let recorded: Vec<String> = ib3_testkit::manifest_files::partial_entries(&repo, &records[0])
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        recorded.contains(&"dbs/1/0/2030-01-01/00-00/0000099998.parquet".to_string()),
        "{recorded:?}"
    );
    assert!(
        recorded.len() < 5,
        "only what changed since the first backup: {recorded:?}"
    );

    std::fs::write(&checkpoint, &good).unwrap();
    let (report, counted) = counted_create_listing(&data, &repo).await;
    assert!(
        !counted.keys_read().keys().any(|k| k.ends_with(".parquet")),
        "{:?}",
        counted.keys_read()
    );
    assert_eq!(report.entries, first.entries + 1);
}

/// A create whose repository lock is removed mid-run (an `unlock` from another host) checks
/// every blob before committing: with them all present it commits; when one it reuses was
/// collected meanwhile, it fails and writes no manifest.
#[tokio::test]
async fn a_run_that_lost_its_lock_checks_its_blobs_before_committing() {
    let (tmp, data) = fixture_copy("core-3.10.0-wal-only");
    let repo = tmp.path().join("repo");
    let (first, _) = counted_create(&data, &repo).await;

    for collect_a_blob in [false, true] {
        let repo_dir = repo.clone();
        let hook = move |key: &str| {
            // The catalog checkpoint is read last: act just before the commit.
            if key != "catalog/v3/snapshot" {
                return;
            }
            for lock in std::fs::read_dir(repo_dir.join("locks"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_file(lock.path());
            }
            if collect_a_blob {
                // A prune that ran meanwhile collected a blob this run reuses (a WAL file's:
                // its blob file, or the pack holding it).
                let manifest = std::fs::read_dir(repo_dir.join("manifests"))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path();
                let id = manifest.file_stem().unwrap().to_str().unwrap();
                let wal = ib3_testkit::manifest_files::manifest_entries(&repo_dir, id)
                    .into_iter()
                    .find(|e| e["class"] == "wal")
                    .unwrap();
                let at = ib3_testkit::manifest_files::stored_at(&repo_dir, &wal);
                std::fs::remove_file(&at.file).unwrap();
            }
        };
        let mut source = local_node(&data).await;
        source.node = Arc::new(CountingStore::with_hook(
            source.node.clone(),
            Box::new(hook),
        ));
        let manifests_before = std::fs::read_dir(repo.join("manifests")).unwrap().count();
        let result = create_into(source, &repo, 0).await;
        let manifests_after = std::fs::read_dir(repo.join("manifests")).unwrap().count();
        if collect_a_blob {
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("lock was lost") && err.contains("gone"),
                "{err}"
            );
            assert_eq!(manifests_after, manifests_before, "nothing committed");
        } else {
            let report = result.unwrap();
            assert_ne!(report.backup_id, first.backup_id);
            assert_eq!(manifests_after, manifests_before + 1);
        }
    }
}

/// The local-to-local path (plain threads, `ib3_transfer::local`) stores exactly what the path
/// through the object stores stores: the same manifest entries and the same stored bytes for
/// each; both put small blobs into packs (DESIGN §3.4b), each gathering them its own way.
#[tokio::test]
async fn local_copies_store_what_the_store_path_stores() {
    for fixture in [
        "core-3.10.0-basic",
        "core-3.3.0-upgraded-3.9.6",
        "core-3.9.6-wal-only",
    ] {
        let (tmp, data) = fixture_copy(fixture);
        let mut manifests = Vec::new();
        for (name, local) in [("through-stores", false), ("local", true)] {
            let repo = tmp.path().join(name);
            let store = repo_store(repo.to_str().unwrap(), true).await.unwrap();
            let report = create(CreateOptions {
                local: local.then(|| influxdb3_backup::ops::create::LocalDirs {
                    data_dir: data.clone(),
                    repo_dir: repo.clone(),
                }),
                ..options(local_node(&data).await, store)
            })
            .await
            .unwrap();
            assert!(report.consistent, "{fixture} via {name}");
            assert_eq!(report.bytes_read, report.bytes, "{fixture} via {name}");
            let (store, location) = repo_store(repo.to_str().unwrap(), false).await.unwrap();
            let repository = ib3_repo::Repository::open(store, location).await.unwrap();
            let id = repository.resolve("latest").await.unwrap();
            manifests.push(repository.load_manifest(&id).await.unwrap().entries);
            assert!(!tree(&repo.join("blobs")).is_empty());
        }
        // Both pack their small blobs, gathered differently: entries equal but for their slices.
        let without_packs = |entries: &[ib3_repo::Entry]| -> Vec<ib3_repo::Entry> {
            entries
                .iter()
                .map(|e| ib3_repo::Entry {
                    pack: None,
                    ..e.clone()
                })
                .collect()
        };
        for (name, entries) in ["through-stores", "local"].iter().zip(&manifests) {
            let packed = entries.iter().filter(|e| e.pack.is_some()).count();
            assert!(packed > 0, "{fixture}: nothing packed via {name}");
        }
        assert_eq!(
            without_packs(&manifests[0]),
            without_packs(&manifests[1]),
            "{fixture}: entries differ"
        );
        let stored = |name: &str, entry: &ib3_repo::Entry| {
            let entry = serde_json::to_value(entry).unwrap();
            ib3_testkit::manifest_files::stored_at(&tmp.path().join(name), &entry).read()
        };
        for (through_stores, local) in manifests[0].iter().zip(&manifests[1]) {
            assert_eq!(
                stored("through-stores", through_stores),
                stored("local", local),
                "{fixture}: {} stored differently",
                local.path
            );
        }
    }
}

/// The paths of a backup's manifest entries.
fn manifest_paths(repo: &Path, report: &CreateReport) -> Vec<String> {
    ib3_testkit::manifest_files::manifest_entries(repo, &report.backup_id)
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

/// [`ib3_testkit::hard_delete_newest_snapshot`] in a generated tree, which counts the snapshot
/// file it writes.
fn remove_newest_snapshot_files(node: &Path, state: &mut TreeState) -> Vec<String> {
    let removed = ib3_testkit::hard_delete_newest_snapshot(node);
    state.snapshots += 1;
    removed
}

/// A generated node of `files` Parquet files and its first, consistent backup: the temporary
/// directory holding both, the data dir, the repository and the backup's report.
async fn generated_backup(
    files: u64,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    CreateReport,
) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generate(&data, &TreeSpec::new(files)).unwrap();
    let repo = tmp.path().join("repo");
    let (first, _) = counted_create(&data, &repo).await;
    assert!(first.consistent, "{}", first.source);
    (tmp, data, repo, first)
}

/// Rewrite the file at `path` with other bytes at the same size (its middle byte flipped);
/// those bytes.
fn with_other_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// The blob a backup's manifest gives `path`.
fn blob_at(repo: &Path, report: &CreateReport, path: &str) -> String {
    let entries = ib3_testkit::manifest_files::manifest_entries(repo, &report.backup_id);
    let entry = entries.iter().find(|e| e["path"] == path).unwrap();
    entry["blob"].as_str().unwrap().to_string()
}

/// An incremental of a Core node whose previous backup listed the Parquet tree recently takes
/// that backup's tree instead of listing `dbs/` again, and adds the files of the snapshot files
/// written since (DESIGN §4.6): it reads exactly the new files, drops those the server recorded
/// as removed, and neither sees a file no snapshot file records nor misses one deleted without a
/// record, until a listing (`--rescan-after`) does both.
#[tokio::test]
async fn an_incremental_follows_the_snapshot_files_instead_of_listing_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut state = generate(&data, &TreeSpec::new(200)).unwrap();
    let node = data.join("node0");
    // A file in no snapshot file, there for the first listing and deleted after it.
    let unrecorded_gone = "dbs/9/9/2030-01-01/00-00/0000000001.parquet";
    std::fs::create_dir_all(node.join(unrecorded_gone).parent().unwrap()).unwrap();
    std::fs::write(
        node.join(unrecorded_gone),
        b"PAR1 deleted without a record PAR1",
    )
    .unwrap();
    let repo = tmp.path().join("repo");
    let (first, _) = counted_create(&data, &repo).await;
    let listed_at = first.source["parquet_listed_at"].clone();
    assert!(listed_at.is_string(), "{}", first.source);
    let followed = |report: &CreateReport| report.source["parquet_followed"] == true;
    assert!(!followed(&first));
    let parquet_of = |paths: &[String]| paths.iter().filter(|p| p.ends_with(".parquet")).count();
    assert_eq!(parquet_of(&manifest_paths(&repo, &first)), 201);

    std::fs::remove_file(node.join(unrecorded_gone)).unwrap();
    let unrecorded_new = "dbs/9/9/2030-01-02/00-00/0000000002.parquet";
    std::fs::create_dir_all(node.join(unrecorded_new).parent().unwrap()).unwrap();
    std::fs::write(node.join(unrecorded_new), b"PAR1 in no snapshot file PAR1").unwrap();
    grow(&data, &mut state, 20).unwrap();
    let (second, counted) = counted_create(&data, &repo).await;
    assert!(second.consistent, "{}", second.source);
    assert_eq!(second.source["parquet_listed_at"], listed_at);
    assert!(followed(&second));
    let paths = manifest_paths(&repo, &second);
    assert_eq!(
        parquet_of(&paths),
        221,
        "the 20 new files added, none dropped"
    );
    assert!(
        paths.iter().any(|p| p == unrecorded_gone),
        "carried forward"
    );
    assert!(
        !paths.iter().any(|p| p == unrecorded_new),
        "dbs/ is not listed"
    );
    let parquet_read = counted
        .keys_read()
        .into_keys()
        .filter(|k| k.ends_with(".parquet"))
        .count();
    assert_eq!(
        parquet_read,
        20,
        "only the new files are read: {:?}",
        counted.keys_read()
    );

    let removed = remove_newest_snapshot_files(&node, &mut state);
    assert_eq!(removed.len(), 20);
    grow(&data, &mut state, 5).unwrap();
    let (third, _) = counted_create(&data, &repo).await;
    assert!(third.consistent, "{}", third.source);
    assert_eq!(third.source["parquet_listed_at"], listed_at);
    let paths = manifest_paths(&repo, &third);
    assert_eq!(parquet_of(&paths), 221 - 20 + 5);
    assert!(
        removed.iter().all(|r| !paths.contains(r)),
        "recorded removals dropped"
    );
    assert_eq!(
        third.source["removed_by_server"].as_array().unwrap().len(),
        20
    );

    let (fourth, _) = counted_create_listing(&data, &repo).await;
    assert!(fourth.consistent, "{}", fourth.source);
    assert!(!followed(&fourth));
    let paths = manifest_paths(&repo, &fourth);
    assert!(
        !paths.iter().any(|p| p == unrecorded_gone),
        "a listing drops it"
    );
    assert!(
        paths.iter().any(|p| p == unrecorded_new),
        "a listing finds it"
    );
    assert_eq!(parquet_of(&paths), 206);
    let relisted = fourth.source["parquet_listed_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(relisted).is_ok(), "{relisted}");
}

/// The server never deletes or rewrites a snapshot file: when one the previous backup holds is
/// gone or changed, the node is not the one that backup saw (restored from an older backup,
/// started afresh), and an incremental lists `dbs/` instead of following the snapshot files.
#[tokio::test]
async fn a_node_whose_snapshot_files_changed_is_listed_again() {
    let (_tmp, data, repo, _) = generated_backup(100).await;
    let node = data.join("node0");

    let unrecorded = "dbs/9/9/2030-01-02/00-00/0000000002.parquet";
    std::fs::create_dir_all(node.join(unrecorded).parent().unwrap()).unwrap();
    std::fs::write(node.join(unrecorded), b"PAR1 in no snapshot file PAR1").unwrap();
    let (followed, _) = counted_create(&data, &repo).await;
    assert_eq!(followed.source["parquet_followed"], true);
    assert!(!manifest_paths(&repo, &followed)
        .iter()
        .any(|p| p == unrecorded));

    let oldest = node.join(format!("snapshots/{:020}.info.json", u64::MAX));
    let mut rewritten = std::fs::read(&oldest).unwrap();
    rewritten.push(b'\n');
    std::fs::write(&oldest, rewritten).unwrap();
    let (listed, _) = counted_create(&data, &repo).await;
    assert!(listed.consistent, "{}", listed.source);
    assert!(listed.source.get("parquet_followed").is_none());
    assert!(manifest_paths(&repo, &listed)
        .iter()
        .any(|p| p == unrecorded));
}

/// A node whose snapshot files reference Parquet files the server removed still settles them
/// (DESIGN §4.3): the next incremental judges them from their kept headers, unread, and carries
/// the previous backup's findings about the removed files over, so its record says what a full
/// judgement would.
#[tokio::test]
async fn settled_snapshot_files_carry_the_removals_they_no_longer_show() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut state = generate(&data, &TreeSpec::new(200)).unwrap();
    let node = data.join("node0");
    let repo = tmp.path().join("repo");
    counted_create(&data, &repo).await;
    let removed = remove_newest_snapshot_files(&node, &mut state);
    grow(&data, &mut state, 5).unwrap();
    let (second, _) = counted_create(&data, &repo).await;
    let removals = |report: &CreateReport| report.source["removed_by_server"].clone();
    assert_eq!(removals(&second).as_array().unwrap().len(), removed.len());
    assert_eq!(
        finding_codes(&second),
        vec!["parquet-removed-by-server"; removed.len()]
    );

    let (third, _) = counted_create(&data, &repo).await;
    assert_eq!(removals(&third), removals(&second));
    assert_eq!(third.source["findings"], second.source["findings"]);

    // Every snapshot file that keeps its header in the manifest, damaged in the repository: a
    // run that settles them does not read them.
    let entries = ib3_testkit::manifest_files::manifest_entries(&repo, &third.backup_id);
    let kept: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["class"] == "snapshot" && e["facts"]["kind"] == "snapshot-header/1")
        .collect();
    assert!(
        kept.len() >= 4,
        "{} snapshot files keep headers",
        kept.len()
    );
    for entry in kept {
        ib3_testkit::manifest_files::stored_at(&repo, entry).damage();
    }
    let (fourth, _) = counted_create(&data, &repo).await;
    assert!(fourth.consistent);
    assert_eq!(fourth.source["point"], third.source["point"]);
    assert_eq!(removals(&fourth), removals(&second));
    assert_eq!(fourth.source["findings"], second.source["findings"]);
}

/// A node restored in place from an older backup, or started afresh, writes keys its earlier life
/// used with other content, often at the same size (DESIGN §3.7 rule 3, *written since*). The
/// next incremental takes no entry over for what was written since the previous backup: it
/// follows no snapshot file, reads the node again and keeps the new bytes. The one after reads
/// as little as ever.
#[tokio::test]
async fn a_node_restored_in_place_is_read_again() {
    let (_tmp, data, repo, first) = generated_backup(100).await;
    let node = data.join("node0");
    assert!(
        first.source["newest_modified"].is_string(),
        "{}",
        first.source
    );

    // The new life: every file written anew (as a restore writes them), and a WAL file and a
    // Parquet file with other bytes at the same key and size.
    let files = tree(&node);
    for (key, bytes) in &files {
        std::fs::write(node.join(key), bytes).unwrap();
    }
    let key_of = |suffix: &str| files.keys().find(|k| k.ends_with(suffix)).unwrap().clone();
    let changed = [key_of(".wal"), key_of(".parquet")]
        .map(|key| (key.clone(), with_other_bytes(&node.join(&key))));

    let (second, counted) = counted_create(&data, &repo).await;
    assert!(second.consistent, "{}", second.source);
    assert!(
        second.source.get("parquet_followed").is_none(),
        "{}",
        second.source
    );
    assert_eq!(second.entries_reused, 0, "every file was written since");
    let read = counted.keys_read();
    let unread: Vec<&String> = files.keys().filter(|k| !read.contains_key(*k)).collect();
    assert!(unread.is_empty(), "{unread:?}");
    for (key, bytes) in &changed {
        let blob = blob_at(&repo, &second, key);
        assert_eq!(blob, ib3_repo::BlobId::of(bytes).to_string(), "{key}");
    }
    assert_eq!(second.blobs_uploaded, 2, "the rest is stored already");

    let (third, counted) = counted_create(&data, &repo).await;
    assert_eq!(third.source["parquet_followed"], true, "{}", third.source);
    assert!(
        counted.keys_read().keys().all(|k| k.contains("catalog")),
        "{:?}",
        counted.keys_read()
    );
}

/// A file copied in with its old modification time kept (`cp -a`, `rsync -a` from another node
/// or an older copy of this one) still shows as written since the previous backup: a local
/// listing takes the later of a file's modification and status-change times, and no copy tool
/// sets the latter back. The next backup reads it and keeps its bytes.
#[tokio::test]
async fn a_file_copied_in_with_its_old_time_is_read_again() {
    let (_tmp, data, repo, _) = generated_backup(20).await;
    let node = data.join("node0");

    let (key, _) = newest_wal(&node);
    let key = format!("wal/{key:011}.wal");
    let path = node.join(&key);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let other = with_other_bytes(&path);
    let times = std::fs::FileTimes::new().set_modified(modified);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(times)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );

    let (second, counted) = counted_create(&data, &repo).await;
    assert!(
        counted.keys_read().contains_key(&key),
        "{:?}",
        counted.keys_read()
    );
    let blob = blob_at(&repo, &second, &key);
    assert_eq!(blob, ib3_repo::BlobId::of(&other).to_string());
}

/// `create --dry-run` foretells what `create` then reads, to the byte: everything for a first
/// backup, and after the "server" added files, those and the files it rewrites in place. It
/// writes nothing: no repository made, none changed.
#[test]
fn a_dry_run_foretells_what_the_backup_reads_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("data"), tmp.path().join("repo"));
    let mut state = generate(&data, &TreeSpec::new(300)).unwrap();
    let dry_run = |repo: &Path| {
        let mut args = create_node0_args(&data, repo).to_vec();
        args.push("--dry-run");
        let out = run(&args);
        assert_eq!(out.code, 0, "{out:?}");
        out.json()
    };

    let plan = dry_run(&repo);
    assert!(!repo.exists(), "a dry run makes no repository");
    assert_eq!(plan["repository_exists"], false);
    assert_eq!(plan["consistent"], true);
    assert_eq!(plan["objects_to_read"], plan["objects"]);
    let first = create_json(&data, &repo);
    assert_eq!(plan["objects"], first["entries"]);
    assert_eq!(plan["bytes_to_read"], first["bytes_read"]);

    grow(&data, &mut state, 7).unwrap();
    let before = tree(&repo);
    let plan = dry_run(&repo);
    assert_eq!(
        tree(&repo),
        before,
        "a dry run changes nothing in the repository"
    );
    assert_eq!(plan["previous_backup"], first["backup_id"]);
    let second = create_json(&data, &repo);
    assert_eq!(plan["objects"], second["entries"]);
    assert_eq!(plan["objects_unchanged"], second["entries_reused"]);
    assert_eq!(plan["bytes_to_read"], second["bytes_read"]);
    let added = plan["objects_to_read"].as_u64().unwrap();
    assert!(
        (7..50).contains(&added),
        "{added} objects to read after 7 new files"
    );
}
