//! End-to-end proof over every real fixture: `create` → `verify --read-data` → `restore` into an
//! empty directory → the restored tree equals the source minus the derived table-index files,
//! byte for byte; a second `create` reads no immutable file again; and `--metrics-file` leaves
//! each run's outcome for monitoring.
//!
//! Run: `cargo test -p influxdb3-backup --test e2e`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    for name in fixture_names() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let restored = tmp.path().join("restored");
        let source = data_dir(&name);

        let created = create_json(&source, &repo);
        assert_eq!(created["source"]["consistent"], true, "{name}: {created:#}");
        let id = created["backup_id"].as_str().unwrap().to_string();

        let verified = run(&["verify", "--json", "--repo", s(&repo), &id, "--read-data"])
            .ok()
            .json();
        assert_eq!(verified["ok"], true, "{name}: {verified:#}");
        assert_eq!(verified["backups"][0]["read_data"], true);

        let report = run(&[
            "restore",
            "--json",
            "--repo",
            s(&repo),
            &id,
            "--data-dir",
            s(&restored),
            "--node-id",
            "node0",
        ])
        .ok()
        .json();
        assert_eq!(report["objects_verified"], created["entries"], "{name}");

        let expected = tree(&source.join("node0"));
        let got = tree(&restored.join("node0"));
        assert_eq!(
            expected.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>(),
            "{name}: restored file set differs"
        );
        for (path, bytes) in &expected {
            assert!(got[path] == *bytes, "{name}: {path} differs after restore");
        }
        let entries = created["entries"].as_u64().unwrap();
        assert_eq!(
            entries as usize,
            expected.len(),
            "{name}: manifest entries vs source files"
        );
    }
}

#[test]
fn consistent_point_of_the_basic_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let created = create_json(&data_dir("core-3.10.0-basic"), &repo);
    let point = &created["source"]["point"];
    assert_eq!(point["snapshot_sequence_number"], 59);
    assert_eq!(point["wal_file_sequence_number"], 177);
    assert_eq!(point["wal_first"], 178);
    assert_eq!(point["wal_last"], 180);
    assert_eq!(point["catalog_sequence"], 9);
    assert!(point["catalog_sequence_required"].as_u64().unwrap() <= 9);
    assert_eq!(created["source"]["active_catalog"], "v3");
    assert_eq!(
        created["source"]["derived_skipped"], 4,
        "3 db-indices files and the conversion marker"
    );
    assert_eq!(
        created["bytes_uploaded"], created["bytes"],
        "first backup uploads everything"
    );
    // WAL, snapshot and catalog files are stored compressed, Parquet as is.
    let stored = created["bytes_stored"].as_u64().unwrap();
    assert!(stored < created["bytes"].as_u64().unwrap(), "{created:#}");
    assert!(created["compression_ratio"].as_f64().unwrap() > 1.0);
    let entries = ib3_testkit::manifest_files::manifest_entries(
        &repo,
        created["backup_id"].as_str().unwrap(),
    );
    assert_eq!(entries.len() as u64, created["entries"].as_u64().unwrap());
    for entry in &entries {
        let class = entry["class"].as_str().unwrap();
        let encoding = entry["encoding"].as_str().unwrap_or("raw");
        if class == "parquet" {
            assert_eq!(encoding, "raw", "{entry}");
        }
        if class == "snapshot" {
            assert_eq!(encoding, "zstd", "{entry}");
        }
    }
    // --compression-level 0 stores everything as is.
    let plain_repo = tmp.path().join("plain");
    let plain = run(&[
        "create",
        "--json",
        "--compression-level",
        "0",
        "--data-dir",
        s(&data_dir("core-3.10.0-basic")),
        "--node-id",
        "node0",
        "--repo",
        s(&plain_repo),
    ])
    .ok()
    .json();
    assert_eq!(plain["bytes_stored"], plain["bytes"]);
}

#[test]
fn second_create_reads_and_uploads_only_the_mutable_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let source = data_dir("core-3.9.6-upgraded-3.10.0");
    let args = [
        "create",
        "--json",
        "--data-dir",
        s(&source),
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ];
    let first = run(&args).ok().json();
    let second = run(&args).ok().json();
    // Mutable: the catalog checkpoints of both generations (v2 stale, v3 active).
    let mutable: u64 = ["catalog/v2/snapshot", "catalog/v3/snapshot"]
        .iter()
        .map(|p| {
            std::fs::metadata(source.join("node0").join(p))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(
        second["bytes_read"].as_u64().unwrap(),
        mutable,
        "{second:#}"
    );
    assert_eq!(second["bytes_uploaded"], 0);
    assert_eq!(second["blobs_uploaded"], 0);
    assert_eq!(second["entries"], first["entries"]);
    assert_eq!(
        second["entries_reused"].as_u64().unwrap() + 2,
        second["entries"].as_u64().unwrap()
    );

    let listed = run(&["list", "--json", "--repo", s(&repo)]).ok().json();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2);
    assert_eq!(listed["backups"][1]["backup_id"], second["backup_id"]);
}

/// `--metrics-file` leaves each run's outcome for monitoring: a backup's figures and the time of
/// its success; a failed run's exit code, with the earlier success kept; a verification's
/// verdict. A metrics file that cannot be written fails a run that did its work (exit 1).
#[test]
fn the_metrics_file_records_successes_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("data"), tmp.path().join("repo"));
    copy_fixture("core-3.10.0-basic", &data);
    let metrics = tmp.path().join("backup.prom");
    let create = |metrics: &std::path::Path| {
        let mut args = create_node0_args(&data, &repo).to_vec();
        args.extend(["--metrics-file", s(metrics)]);
        run(&args)
    };
    let sample_in = |file: &std::path::Path, name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(file).unwrap();
        let series = format!("influxdb3_backup_{name}{{");
        let line = text.lines().find(|line| line.starts_with(&series))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    let sample = |name: &str| sample_in(&metrics, name);

    let report = create(&metrics).ok().json();
    assert_eq!(sample("create_last_exit_code"), Some(0.0));
    assert_eq!(sample("create_last_bytes"), report["bytes"].as_f64());
    assert_eq!(sample("create_last_consistent"), Some(1.0));
    let success = sample("create_last_success_timestamp_seconds").unwrap();
    assert_eq!(sample("create_last_run_timestamp_seconds"), Some(success));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains(r#"node="node0""#), "{text}");

    // The node gone: the run fails, and the file says so while keeping the last success.
    std::fs::rename(data.join("node0"), tmp.path().join("away")).unwrap();
    assert_eq!(create(&metrics).code, 13);
    assert_eq!(sample("create_last_exit_code"), Some(13.0));
    assert_eq!(
        sample("create_last_success_timestamp_seconds"),
        Some(success)
    );
    assert!(sample("create_last_run_timestamp_seconds").unwrap() >= success);
    assert_eq!(
        sample("create_last_bytes"),
        None,
        "no figures of a failed run"
    );
    std::fs::rename(tmp.path().join("away"), data.join("node0")).unwrap();

    // One file per job: a verification writes its own.
    let verify_metrics = tmp.path().join("verify.prom");
    let verified = run(&[
        "verify",
        "--repo",
        s(&repo),
        "--metrics-file",
        s(&verify_metrics),
    ]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert_eq!(
        sample_in(&verify_metrics, "verify_last_exit_code"),
        Some(0.0)
    );
    assert_eq!(sample_in(&verify_metrics, "verify_last_backups"), Some(1.0));
    assert_eq!(
        sample_in(&verify_metrics, "verify_last_backups_failed"),
        Some(0.0)
    );

    let nowhere = tmp.path().join("no-such-dir/backup.prom");
    let out = create(&nowhere);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot write the metrics file"),
        "{}",
        out.stderr
    );
    let listed = run(&["list", "--json", "--repo", s(&repo)]).ok().json();
    assert_eq!(
        listed["backups"].as_array().unwrap().len(),
        2,
        "the backup was committed"
    );

    // A restore drill into a scratch directory.
    let (drill, scratch) = (tmp.path().join("restore.prom"), tmp.path().join("scratch"));
    let restored = [
        "restore",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&scratch),
        "--metrics-file",
        s(&drill),
    ];
    run(&restored).ok();
    assert_eq!(sample_in(&drill, "restore_last_exit_code"), Some(0.0));
    let written = sample_in(&drill, "restore_last_objects_written").unwrap();
    assert!(written > 0.0);
    assert_eq!(
        sample_in(&drill, "restore_last_objects_verified"),
        Some(written)
    );

    // The other scheduled jobs: retention and the off-site copy.
    let (prune, copy) = (tmp.path().join("prune.prom"), tmp.path().join("copy.prom"));
    let repo_args = ["--repo", s(&repo), "--metrics-file"];
    let pruned = [&["prune", "--keep-last", "1"], &repo_args[..], &[s(&prune)]].concat();
    run(&pruned).ok();
    assert_eq!(sample_in(&prune, "prune_last_exit_code"), Some(0.0));
    assert_eq!(sample_in(&prune, "prune_last_backups_removed"), Some(1.0));
    assert_eq!(sample_in(&prune, "prune_last_backups_kept"), Some(1.0));
    let offsite = tmp.path().join("offsite");
    let sent = [
        &["copy", "--to-repo", s(&offsite)],
        &repo_args[..],
        &[s(&copy)],
    ]
    .concat();
    run(&sent).ok();
    assert_eq!(sample_in(&copy, "copy_last_exit_code"), Some(0.0));
    assert_eq!(sample_in(&copy, "copy_last_backups_copied"), Some(1.0));
    assert!(sample_in(&copy, "copy_last_bytes_copied").unwrap() > 0.0);
}

/// Rolling back an upgrade (the 3.10 catalog migration is one-way: 3.9 cannot read catalog v3,
/// format doc §2.7; README, "Before an upgrade"): a backup taken
/// before it, restored with `--force` over the node as the new version left it, gives back the
/// node as it was, byte for byte — the new version's catalog, WAL and snapshot files gone.
#[test]
fn an_upgrade_rolls_back_to_the_backup_taken_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("data"), tmp.path().join("repo"));
    copy_fixture("core-3.9.6-basic", &data);
    let before = create_json(&data, &repo);
    let as_it_was = tree(&data.join("node0"));

    // The upgrade: the node as 3.10.0 leaves it (catalog v3 beside v2, its own WAL and snapshots).
    std::fs::remove_dir_all(&data).unwrap();
    copy_fixture("core-3.9.6-upgraded-3.10.0", &data);
    assert!(data.join("node0/catalog/v3/snapshot").exists());

    let id = before["backup_id"].as_str().unwrap();
    let restore = [
        "restore",
        "--force",
        "--live-check",
        "10ms",
        "--repo",
        s(&repo),
        id,
        "--data-dir",
        s(&data),
    ];
    run(&restore).ok();
    assert_eq!(tree(&data.join("node0")), as_it_was);
    assert!(
        !data.join("node0/catalog/v3").exists(),
        "no v3 catalog left"
    );
}
