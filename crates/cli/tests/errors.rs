//! Bad input gets a clear error, a documented exit code, and loses nothing: wrong node id, empty
//! or foreign directory, missing repository, non-empty restore target, interrupted restore,
//! corrupt files in the source and in the repository.
//!
//! Run: `cargo test -p influxdb3-backup --test errors`.
#![allow(clippy::unwrap_used)]

mod common;
use ib3_testkit::manifest_files::StoredAt;

use common::*;
use std::path::Path;

fn create(data: &Path, repo: &Path) -> Run {
    create_node0(data, repo)
}

#[test]
fn wrong_node_id_names_the_nodes_present() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "create",
        "--data-dir",
        s(&data_dir("core-3.10.0-basic")),
        "--node-id",
        "node1",
        "--repo",
        s(&tmp.path().join("r")),
    ]);
    assert_eq!(out.code, 13, "{out:?}");
    assert!(out.stderr.contains("\"node1\""), "{}", out.stderr);
    assert!(
        out.stderr.contains("the node prefixes it holds: node0"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: pass --node-id node0"),
        "{}",
        out.stderr
    );
    let inspect = run(&[
        "inspect",
        "--data-dir",
        s(&data_dir("core-3.10.0-basic")),
        "--node-id",
        "node1",
    ]);
    assert_eq!(inspect.code, 13, "{inspect:?}");
}

#[test]
fn empty_missing_and_foreign_data_dirs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = create(&empty, &tmp.path().join("r1"));
    assert_eq!(out.code, 13, "{out:?}");
    assert!(
        out.stderr.contains("holds no InfluxDB 3 node at all"),
        "{}",
        out.stderr
    );

    let out = create(&tmp.path().join("nope"), &tmp.path().join("r2"));
    assert_eq!(out.code, 13, "{out:?}");
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);

    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(foreign.join("node0/photos")).unwrap();
    std::fs::write(foreign.join("node0/photos/cat.jpg"), b"meow").unwrap();
    let out = create(&foreign, &tmp.path().join("r3"));
    assert_eq!(out.code, 13, "{out:?}");
    assert!(
        out.stderr.contains("none is an InfluxDB 3 file"),
        "{}",
        out.stderr
    );
    // The node's own directory in place of the data dir: the fix names the data dir.
    let data = data_dir("core-3.10.0-basic");
    let out = create(&data.join("node0"), &tmp.path().join("r4"));
    assert_eq!(out.code, 13, "{out:?}");
    let parent = std::fs::canonicalize(&data).unwrap();
    let fix = format!("`--data-dir {} --node-id node0`", parent.display());
    assert!(out.stderr.contains(&fix), "{}", out.stderr);
    // Nothing was committed: no manifest in the repositories.
    for r in ["r1", "r2", "r3", "r4"] {
        assert!(!tmp.path().join(r).join("manifests").exists());
    }
}

#[test]
fn missing_and_foreign_repositories() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["list", "--repo", s(&tmp.path().join("none"))]);
    assert_eq!(out.code, 10, "{out:?}");
    let not_repo = tmp.path().join("not-repo");
    std::fs::create_dir_all(&not_repo).unwrap();
    std::fs::write(not_repo.join("notes.txt"), b"x").unwrap();
    let out = run(&["list", "--repo", s(&not_repo)]);
    assert_eq!(out.code, 10, "{out:?}");
    let out = create(&data_dir("core-3.10.0-wal-only"), &not_repo);
    assert_eq!(out.code, 10, "{out:?}");
    assert!(
        out.stderr.contains("not a backup repository"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(&not_repo).unwrap().count(),
        1,
        "nothing written into a foreign directory"
    );
    // A file where the repository should be: said so, by `create` and by a reader alike.
    let file = not_repo.join("notes.txt");
    for out in [
        create(&data_dir("core-3.10.0-wal-only"), &file),
        run(&["list", "--repo", s(&file)]),
    ] {
        assert_eq!(out.code, 10, "{out:?}");
        assert!(
            out.stderr.contains("it is a file, not a directory"),
            "{out:?}"
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // A repository with no backup yet: `latest` names none, and the error says so.
    let fresh = tmp.path().join("fresh");
    run(&["init", "--repo", s(&fresh)]).ok();
    let target = tmp.path().join("target");
    let out = run(&["restore", "--repo", s(&fresh), "--data-dir", s(&target)]);
    assert_eq!(out.code, 10, "{out:?}");
    let said = format!("the repository at {} holds no backup yet", fresh.display());
    assert!(out.stderr.contains(&said), "{out:?}");
}

#[test]
fn newer_repository_format_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-wal-only"), &repo).ok();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    config["format_version"] = 99.into();
    std::fs::write(repo.join("config"), config.to_string()).unwrap();
    let out = run(&["list", "--repo", s(&repo)]);
    assert_eq!(out.code, 10, "{out:?}");
    assert!(
        out.stderr.contains("newer than this tool supports"),
        "{}",
        out.stderr
    );
}

#[test]
fn restore_refuses_a_non_empty_target_and_force_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.9.6-basic"), &repo).ok();
    let target = tmp.path().join("target");
    std::fs::create_dir_all(target.join("node0/wal")).unwrap();
    std::fs::write(target.join("node0/wal/00000099999.wal"), b"stale").unwrap();

    let out = run(&["restore", "--repo", s(&repo), "--data-dir", s(&target)]);
    assert_eq!(out.code, 15, "{out:?}");
    assert!(
        out.stderr.contains("already holds 1 object (e.g."),
        "{}",
        out.stderr
    );

    let plan = run(&[
        "restore",
        "--json",
        "--dry-run",
        "--force",
        "--live-check",
        "10ms",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&target),
    ])
    .ok()
    .json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["plan"]["deletes"][0], "wal/00000099999.wal");
    assert_eq!(
        std::fs::read(target.join("node0/wal/00000099999.wal")).unwrap(),
        b"stale",
        "dry run changed nothing"
    );
    let phases: Vec<&str> = plan["plan"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "data",
            "snapshots",
            "wal",
            "catalog-logs",
            "catalog-checkpoint"
        ]
    );

    run(&[
        "restore",
        "--json",
        "--force",
        "--live-check",
        "10ms",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&target),
    ])
    .ok();
    assert!(!target.join("node0/wal/00000099999.wal").exists());
    assert_eq!(
        tree(&target.join("node0")),
        tree(&data_dir("core-3.9.6-basic").join("node0"))
    );
}

#[test]
fn restore_under_another_node_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-wal-only"), &repo).ok();
    let out = run(&[
        "restore",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&tmp.path().join("t")),
        "--node-id",
        "other",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--node-id node0"), "{}", out.stderr);
}

#[test]
fn interrupted_restore_is_reported_not_mistaken_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-basic"), &repo).ok();
    let target = tmp.path().join("target");
    run(&["restore", "--repo", s(&repo), "--data-dir", s(&target)]).ok();
    // Simulate a restore killed before its catalog phase: marker present, catalog missing.
    std::fs::write(target.join("node0/.influxdb3-backup-restore.json"), b"{}").unwrap();
    std::fs::remove_dir_all(target.join("node0/catalog")).unwrap();
    let out = run(&["restore", "--repo", s(&repo), "--data-dir", s(&target)]);
    assert_eq!(out.code, 15, "{out:?}");
    assert!(out.stderr.contains("did not complete"), "{}", out.stderr);
    run(&[
        "restore",
        "--force",
        "--live-check",
        "10ms",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&target),
    ])
    .ok();
    assert!(!target.join("node0/.influxdb3-backup-restore.json").exists());
    assert_eq!(
        tree(&target.join("node0")),
        tree(&data_dir("core-3.10.0-basic").join("node0"))
    );
}

#[test]
fn restore_refuses_while_the_target_wal_advances() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-wal-only"), &repo).ok();
    let target = tmp.path().join("target");
    std::fs::create_dir_all(target.join("node0/wal")).unwrap();
    let wal_dir = target.join("node0/wal");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = stop.clone();
    // A "server" appending a WAL file every 50 ms until the restore has answered.
    let writer = std::thread::spawn(move || {
        let mut seq = 100;
        while !writing.load(std::sync::atomic::Ordering::Relaxed) && seq < 2100 {
            std::fs::write(wal_dir.join(format!("{seq:011}.wal")), b"x").unwrap();
            seq += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let out = run(&[
        "restore",
        "--force",
        "--live-check",
        "500ms",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&target),
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(out.code, 15, "{out:?}");
    assert!(
        out.stderr.contains("server is writing there"),
        "{}",
        out.stderr
    );
}

#[test]
fn chown_sets_owner_of_restored_files() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-wal-only"), &repo).ok();
    let target = tmp.path().join("target");
    let out = run(&[
        "restore",
        "--chown",
        "1500:1501",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&target),
    ]);
    if out.code != 0 && out.stderr.contains("Operation not permitted") {
        eprintln!("skipping: not running as root");
        return;
    }
    out.ok();
    use std::os::unix::fs::MetadataExt;
    for path in [
        target.join("node0"),
        target.join("node0/wal/00000000001.wal"),
        target.join("node0/catalog/v3/snapshot"),
    ] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1500, 1501), "{}", path.display());
    }
    let bad = run(&[
        "restore",
        "--chown",
        "influx",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&tmp.path().join("t2")),
    ]);
    assert_eq!(bad.code, 2);
}

#[test]
fn verify_finds_missing_and_corrupt_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let created = create(&data_dir("core-3.3.0-basic"), &repo).ok().json();
    let id = created["backup_id"].as_str().unwrap();
    run(&["verify", "--repo", s(&repo), id]).ok();
    // Corrupt one blob in place (same size): only --read-data can see it.
    let files = raw_blobs(&repo);
    flip_first_byte(&files[0].0);
    run(&["verify", "--repo", s(&repo), id]).ok();
    let out = run(&["verify", "--json", "--read-data", "--repo", s(&repo), id]);
    assert_eq!(out.code, 12, "{out:?}");
    let report = out.json();
    assert_eq!(report["backups"][0]["blobs"][0]["kind"], "hash-mismatch");
    // A missing blob (or pack) is found without reading data.
    std::fs::remove_file(&files[1].0.file).unwrap();
    let out = run(&["verify", "--json", "--repo", s(&repo), id]);
    assert_eq!(out.code, 12, "{out:?}");
    assert!(out.stdout.contains("\"missing\""), "{}", out.stdout);
}

/// A backup whose manifest entry chunk is gone fails `verify` by name (exit 12) while the other
/// backups are still checked and pass; `list` still shows it.
#[test]
fn verify_names_a_missing_entry_chunk_and_checks_the_other_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let damaged = create(&data_dir("core-3.10.0-wal-only"), &repo).ok().json();
    let sound = create(&data_dir("core-3.3.0-basic"), &repo).ok().json();
    let id = damaged["backup_id"].as_str().unwrap();
    let document = ib3_testkit::manifest_files::manifest_document(&repo, id);
    let chunk = document["entry_chunks"][0]["blob"].as_str().unwrap();
    let sound_chunks = ib3_testkit::manifest_files::referenced_blob_files(
        &repo,
        sound["backup_id"].as_str().unwrap(),
    );
    assert!(
        !sound_chunks.contains(&format!("{chunk}.zst")),
        "chunks shared"
    );
    std::fs::remove_file(repo.join(format!("blobs/{}/{chunk}.zst", &chunk[..2]))).unwrap();

    let out = run(&["verify", "--json", "--repo", s(&repo)]);
    assert_eq!(out.code, 12, "{out:?}");
    let report = out.json();
    let backups = report["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2);
    let verdict = |id: &serde_json::Value| {
        backups
            .iter()
            .find(|b| b["backup_id"] == *id)
            .unwrap()
            .clone()
    };
    let failed = verdict(&damaged["backup_id"]);
    assert_eq!(failed["ok"], false);
    let problem = failed["structure"][0].as_str().unwrap();
    assert!(
        problem.contains("is missing") && problem.contains(chunk),
        "{problem}"
    );
    assert_eq!(verdict(&sound["backup_id"])["ok"], true);
    let listed = run(&["list", "--json", "--repo", s(&repo)]).ok().json();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2);
}

/// `verify --read-data` of every backup reads each blob once, and reports a corrupt blob in
/// every backup that references it.
#[test]
fn verify_reads_each_blob_once_and_blames_every_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let data = data_dir("core-3.3.0-basic");
    create(&data, &repo).ok();
    create(&data, &repo).ok();
    let out = run(&["verify", "--json", "--read-data", "--repo", s(&repo)]);
    let report = out.ok().json();
    let backups = report["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2);
    assert!(backups[0]["bytes_read"].as_u64().unwrap() > 0);
    assert_eq!(
        backups[1]["bytes_read"], 0,
        "the second backup's blobs were all read already"
    );
    flip_first_byte(&raw_blobs(&repo)[0].0);
    let out = run(&["verify", "--json", "--read-data", "--repo", s(&repo)]);
    assert_eq!(out.code, 12, "{out:?}");
    for backup in out.json()["backups"].as_array().unwrap() {
        assert_eq!(backup["ok"], false, "{backup}");
        assert_eq!(backup["blobs"][0]["kind"], "hash-mismatch", "{backup}");
    }
}

/// `verify --read-data-subset N/T`: the slices 1/T … T/T read every blob once between them,
/// and only the slice that holds a corrupt blob fails; `100%` reads them all; a wrong subset is
/// a usage error.
#[test]
fn verify_reads_a_subset_and_its_slices_cover_every_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.3.0-basic"), &repo).ok();
    let read = |subset: &str| {
        let mut args = vec!["verify", "--json", "--repo", s(&repo)];
        match subset {
            "" => args.push("--read-data"),
            subset => args.extend(["--read-data-subset", subset]),
        }
        run(&args)
    };
    let figures = |out: Run| {
        let backup = out.json()["backups"][0].clone();
        (
            backup["blobs_read"].as_u64().unwrap(),
            backup["bytes_read"].as_u64().unwrap(),
        )
    };
    let all = figures(read("").ok());
    let slices: Vec<(u64, u64)> = (1..=3)
        .map(|k| figures(read(&format!("{k}/3")).ok()))
        .collect();
    assert!(slices.iter().all(|(blobs, _)| *blobs > 0), "{slices:?}");
    let summed = slices
        .iter()
        .fold((0, 0), |(b, n), (blobs, bytes)| (b + blobs, n + bytes));
    assert_eq!(summed, all, "the slices read every blob once: {slices:?}");
    assert_eq!(figures(read("100%").ok()), all);

    flip_first_byte(&raw_blobs(&repo)[0].0);
    let codes: Vec<i32> = (1..=3).map(|k| read(&format!("{k}/3")).code).collect();
    let failed = codes.iter().filter(|&&code| code == 12).count();
    assert_eq!(failed, 1, "one slice holds the corrupt blob: {codes:?}");
    assert!(
        codes.iter().all(|&code| code == 12 || code == 0),
        "{codes:?}"
    );
    assert_eq!(read("100%").code, 12);

    for wrong in ["0/3", "4/3", "5", "0%", "150%"] {
        assert_eq!(read(wrong).code, 2, "{wrong}");
    }
    let both = ["verify", "--read-data", "--read-data-subset", "1/2"];
    assert_eq!(run(&[&both[..], &["--repo", s(&repo)]].concat()).code, 2);
}

/// A blob corrupted in a local repository stops a restore into a local data dir (the direct
/// file-to-file path) with the verification exit code, naming the blob and the file.
#[test]
fn restore_refuses_a_corrupt_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-basic"), &repo).ok();
    let (victim, blob) = raw_blobs(&repo)[0].clone();
    flip_first_byte(&victim);
    let target = tmp.path().join("restored");
    let out = run(&[
        "restore",
        "--repo",
        s(&repo),
        "latest",
        "--data-dir",
        s(&target),
        "--node-id",
        "node0",
    ]);
    assert_eq!(out.code, 12, "{out:?}");
    assert!(
        out.stderr.contains("corrupt in the repository") && out.stderr.contains(&blob),
        "{}",
        out.stderr
    );
    // The corrupt content was read back before the rename and never put in place.
    let corrupt = victim.read();
    for file in ib3_testkit::files_under(&target) {
        let name = file.to_string_lossy();
        assert!(!name.contains('#'), "a hidden write was left: {name}");
        assert_ne!(std::fs::read(&file).unwrap(), corrupt, "{name} holds it");
    }
}

/// Where the raw (uncompressed, unencrypted) blobs of a repository are stored (blob files, or
/// slices of packs), sorted, with their ids. Only these give a hash mismatch when a byte is
/// flipped: a flipped byte in a compressed one is "unreadable".
fn raw_blobs(repo: &Path) -> Vec<(StoredAt, String)> {
    let mut found: Vec<(StoredAt, String)> = ib3_testkit::manifest_files::all_entries(repo)
        .iter()
        .filter(|e| e.get("encoding").is_none())
        .map(|e| {
            let at = ib3_testkit::manifest_files::stored_at(repo, e);
            (at, e["blob"].as_str().unwrap().to_string())
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Corrupt a stored blob in place, keeping its size (only reading its content can tell).
fn flip_first_byte(at: &StoredAt) {
    let mut bytes = std::fs::read(&at.file).unwrap();
    bytes[at.offset as usize] ^= 0xff;
    std::fs::write(&at.file, &bytes).unwrap();
}

#[test]
fn inspect_reports_corrupt_wal_missing_parquet_and_catalog_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_fixture("core-3.10.0-basic", &data);
    let node = data.join("node0");
    let clean = run(&[
        "inspect",
        "--json",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
    ])
    .ok()
    .json();
    assert_eq!(clean["layout"]["active_catalog"], "v3");
    assert_eq!(clean["judgement"]["point"]["wal_first"], 178);

    // Truncate a WAL file the server would replay.
    let wal = node.join("wal/00000000179.wal");
    let bytes = std::fs::read(&wal).unwrap();
    std::fs::write(&wal, &bytes[..bytes.len() / 2]).unwrap();
    // Remove a Parquet file the newest snapshot references.
    let snapshot: serde_json::Value = serde_json::from_slice(
        &std::fs::read(node.join("snapshots/18446744073709551556.info.json")).unwrap(),
    )
    .unwrap();
    let parquet = snapshot["databases"][0][1]["tables"][0][1][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(data.join(&parquet)).unwrap();
    // Remove a catalog log after the checkpoint.
    std::fs::remove_file(node.join("catalog/v3/logs/00000000000000000005.catalog")).unwrap();

    let out = run(&[
        "inspect",
        "--json",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    let findings = out.json()["judgement"]["findings"].clone();
    let has =
        |code: &str, object: &str| {
            findings.as_array().unwrap().iter().any(|f| {
                f["code"] == code && f["object"].as_str().is_some_and(|o| o.contains(object))
            })
        };
    assert!(has("corrupt-file", "wal/00000000179.wal"), "{findings:#}");
    assert!(has("parquet-missing", &parquet), "{findings:#}");
    assert!(
        has("catalog-log-gap", "00000000000000000005.catalog"),
        "{findings:#}"
    );

    // create refuses such a source after its re-plans, and writes no manifest.
    let repo = tmp.path().join("repo");
    let out = run(&[
        "create",
        "--max-replans",
        "1",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ]);
    assert_eq!(out.code, 14, "{out:?}");
    assert!(
        out.stderr.contains("00000000000000000005.catalog"),
        "{}",
        out.stderr
    );
    assert!(!repo.join("manifests").exists());
    // ... unless told to back it up as it is; verify then fails on the recorded problems.
    let out = run(&[
        "create",
        "--json",
        "--allow-inconsistent",
        "--max-replans",
        "0",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    let out = run(&["verify", "--repo", s(&repo)]);
    assert_eq!(out.code, 12, "{out:?}");
}

#[test]
fn retention_removed_parquet_is_reported_never_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let created = create(&data_dir("core-3.10.0-retention"), &repo)
        .ok()
        .json();
    let removed = created["source"]["removed_by_server"].as_array().unwrap();
    assert_eq!(removed.len(), 9, "{created:#}");
    run(&["verify", "--repo", s(&repo), "--read-data"]).ok();
}

#[test]
fn dry_run_into_a_new_directory_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-wal-only"), &repo).ok();
    let target = tmp.path().join("not-yet");
    let plan = run(&[
        "restore",
        "--json",
        "--dry-run",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&target),
    ])
    .ok()
    .json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["objects_written"], 0);
    assert!(plan["plan"]["phases"].as_array().unwrap().len() >= 3);
    assert!(!target.exists(), "a dry run created the target directory");
}

/// The backups `list --json` shows.
fn backups_listed(repo: &Path) -> usize {
    let list = run(&["list", "--json", "--repo", s(repo)]).ok().json();
    list["backups"].as_array().unwrap().len()
}

#[test]
fn a_report_nobody_reads_is_dropped_quietly_and_the_backup_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let data = data_dir("core-3.10.0-basic");
    let args = create_node0_args(&data, &repo);
    // The reader is gone before the command reports (`… --json | head -c0`).
    let mut child = command::<&str, &str>(&args, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(backups_listed(&repo), 1);

    // A report that cannot be written (a full disk under a redirect) fails the command, and
    // says that its work is done.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = command::<&str, &str>(&args, &[])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write the report on stdout: No space left on device"),
        "{stderr}"
    );
    assert!(stderr.contains("the command itself completed"), "{stderr}");
    assert_eq!(backups_listed(&repo), 2);

    // An error said on a stderr nobody reads keeps its exit code (a panic's was 101).
    let missing = tmp.path().join("no-repo");
    let mut child = command::<&str, &str>(&["list", "--repo", s(&missing)], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(10));
}
