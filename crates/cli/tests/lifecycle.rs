//! Repository lifecycle: retention (`prune --keep-*`, `--dry-run`), garbage collection (the
//! repository shrinks by exactly what the removed backups alone held, and every remaining backup
//! still verifies with `--read-data`), and locks (`prune` is exclusive, a live lock refuses,
//! a stale one does not, `unlock`).
//!
//! Run: `cargo test -p influxdb3-backup --test lifecycle`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ib3_testkit::manifest_files::referenced_blob_files;
use std::collections::BTreeMap;
use std::path::Path;

fn create(data: &Path, repo: &Path) -> serde_json::Value {
    create_json(data, repo)
}

/// Blob file or pack name → size, read from the repository directory.
fn blobs(repo: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for top in ["blobs", "packs"] {
        let Ok(fans) = std::fs::read_dir(repo.join(top)) else {
            continue;
        };
        for fan in fans {
            for blob in std::fs::read_dir(fan.unwrap().path()).unwrap() {
                let blob = blob.unwrap();
                out.insert(
                    blob.file_name().to_string_lossy().into_owned(),
                    blob.metadata().unwrap().len(),
                );
            }
        }
    }
    out
}

/// The path of the blob file or pack named `name` in `repo` (a pack when no blob file has it).
fn stored_file(repo: &Path, name: &str) -> std::path::PathBuf {
    let blob = repo.join("blobs").join(&name[..2]).join(name);
    if blob.exists() {
        return blob;
    }
    repo.join("packs").join(&name[..2]).join(name)
}

#[test]
fn prune_keeps_by_policy_and_collects_exactly_what_removed_backups_alone_held() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_fixture("core-3.10.0-basic", &data);
    let repo = tmp.path().join("repo");
    let node = data.join("node0");

    // Three backups; between them the "server" removes old Parquet files (retention) and adds new
    // ones, so each backup holds blobs of its own.
    let mut ids = Vec::new();
    for round in 0..3 {
        if round > 0 {
            let parquet = node.join(format!("dbs/9/9/2030-01-0{round}/00-00/0000000001.parquet"));
            std::fs::create_dir_all(parquet.parent().unwrap()).unwrap();
            std::fs::write(&parquet, format!("unreferenced parquet of round {round}")).unwrap();
            if round == 2 {
                std::fs::remove_file(node.join("dbs/9/9/2030-01-01/00-00/0000000001.parquet"))
                    .unwrap();
            }
        }
        // Listing the Parquet tree every run: these files are in no snapshot file.
        let created = create_node0_env(&data, &repo, &[("INFLUXDB3_BACKUP_RESCAN_AFTER", "0s")])
            .ok()
            .json();
        ids.push(created["backup_id"].as_str().unwrap().to_string());
    }
    let before = blobs(&repo);

    // Without a rule prune refuses; a dry run changes nothing and gives its reasons.
    assert_eq!(run(&["prune", "--repo", s(&repo)]).code, 2);
    let plan = run(&[
        "prune",
        "--json",
        "--dry-run",
        "--keep-last",
        "1",
        "--gc-grace",
        "0s",
        "--repo",
        s(&repo),
    ])
    .ok()
    .json();
    assert_eq!(plan["dry_run"], true);
    let decisions = plan["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 3);
    assert_eq!(
        decisions[0]["backup_id"]
            .as_str()
            .or(decisions[0]["id"].as_str()),
        Some(ids[2].as_str())
    );
    assert_eq!(decisions[0]["reasons"][0], "last");
    assert_eq!(blobs(&repo), before, "dry run deleted nothing");
    assert_eq!(
        run(&["list", "--json", "--repo", s(&repo)]).ok().json()["backups"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Keep the newest only: what it does not reference goes (what ids[0] and ids[1] alone held,
    // their entry chunks, and those of the runs' progress records).
    let kept = referenced_blob_files(&repo, &ids[2]);
    let alone: u64 = before
        .iter()
        .filter(|(name, _)| !kept.contains(*name))
        .map(|(_, size)| size)
        .sum();
    let parquet_alone = referenced_blob_files(&repo, &ids[0])
        .union(&referenced_blob_files(&repo, &ids[1]))
        .filter(|b| !kept.contains(*b))
        .count();
    assert!(parquet_alone > 0, "the test must remove something");
    let report = run(&[
        "prune",
        "--json",
        "--keep-last",
        "1",
        "--gc-grace",
        "0s",
        "--repo",
        s(&repo),
    ])
    .ok()
    .json();
    assert_eq!(report["gc"]["bytes_freed"].as_u64().unwrap(), alone);
    let after = blobs(&repo);
    assert_eq!(
        before.values().sum::<u64>() - after.values().sum::<u64>(),
        alone
    );
    let listed = run(&["list", "--json", "--repo", s(&repo)]).ok().json();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1);
    assert_eq!(listed["backups"][0]["backup_id"], ids[2].as_str());
    run(&["verify", "--read-data", "--repo", s(&repo)]).ok();
    // The kept backup still restores byte for byte.
    let restored = tmp.path().join("restored");
    run(&["restore", "--repo", s(&repo), "--data-dir", s(&restored)]).ok();
    assert_eq!(tree(&restored.join("node0")), tree(&node));
}

#[test]
fn grace_period_protects_young_unreferenced_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-wal-only"), &repo);
    create(&data_dir("core-3.9.6-wal-only"), &repo);
    // Both backups are of node0 but of different data dirs: two groups, --keep-last 1 keeps both.
    let report = run(&["prune", "--json", "--keep-last", "1", "--repo", s(&repo)])
        .ok()
        .json();
    assert_eq!(report["gc"]["remove_backups"].as_array().unwrap().len(), 0);
    let young_before = report["gc"]["blobs_in_grace"].as_u64().unwrap();
    // A blob a crashed create left (no manifest) survives a prune inside the grace period.
    let id = blake3::hash(b"orphan").to_hex().to_string();
    let orphan = repo.join(format!("blobs/{}/{id}", &id[..2]));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"orphan").unwrap();
    let report = run(&[
        "prune",
        "--json",
        "--keep-last",
        "1",
        "--gc-grace",
        "1h",
        "--repo",
        s(&repo),
    ])
    .ok()
    .json();
    // (The runs' progress records left entry chunks, unreferenced and young too.)
    assert_eq!(
        report["gc"]["blobs_in_grace"].as_u64().unwrap(),
        young_before + 1
    );
    assert!(orphan.exists());
    run(&[
        "prune",
        "--keep-last",
        "1",
        "--gc-grace",
        "0s",
        "--repo",
        s(&repo),
    ])
    .ok();
    assert!(!orphan.exists());
}

fn write_lock(repo: &Path, id: &str, kind: &str, refreshed_secs_ago: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::create_dir_all(repo.join("locks")).unwrap();
    let lock = serde_json::json!({
        "id": id, "kind": kind, "command": "prune", "host": "elsewhere", "pid": 4242,
        "created": now - refreshed_secs_ago, "refreshed": now - refreshed_secs_ago,
    });
    std::fs::write(
        repo.join(format!("locks/{id}.json")),
        serde_json::to_vec(&lock).unwrap(),
    )
    .unwrap();
}

#[test]
fn live_exclusive_lock_refuses_stale_one_does_not_and_unlock_clears() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let data = data_dir("core-3.10.0-wal-only");
    create(&data, &repo);

    write_lock(&repo, "stale", "exclusive", 3 * 3600);
    create(&data, &repo);

    write_lock(&repo, "live", "exclusive", 5);
    let out = run(&[
        "create",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ]);
    assert_eq!(out.code, 11, "{out:?}");
    assert!(
        out.stderr.contains("locked") && out.stderr.contains("`prune` by pid 4242"),
        "{}",
        out.stderr
    );
    assert_eq!(run(&["verify", "--repo", s(&repo)]).code, 11);
    assert_eq!(
        run(&["prune", "--keep-last", "1", "--repo", s(&repo)]).code,
        11
    );

    // A dry run names the lock it would remove and removes none.
    let planned = run(&[
        "unlock",
        "--json",
        "--dry-run",
        "--stale-only",
        "--repo",
        s(&repo),
    ])
    .ok()
    .json();
    assert_eq!(planned["dry_run"], true);
    assert_eq!(planned["removed"].as_array().unwrap().len(), 1);
    assert_eq!(planned["removed"][0]["id"], "stale");
    assert!(repo.join("locks/stale.json").exists());

    let removed = run(&["unlock", "--json", "--stale-only", "--repo", s(&repo)])
        .ok()
        .json();
    assert_eq!(removed["removed"].as_array().unwrap().len(), 1);
    assert_eq!(removed["removed"][0]["id"], "stale");
    assert_eq!(
        run(&["verify", "--repo", s(&repo)]).code,
        11,
        "the live lock is still there"
    );
    run(&["unlock", "--repo", s(&repo)]).ok();
    run(&["verify", "--repo", s(&repo)]).ok();
    assert_eq!(
        std::fs::read_dir(repo.join("locks"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "commands release their locks"
    );

    // A shared lock (a running create) blocks prune but not another create.
    write_lock(&repo, "creating", "shared", 5);
    create(&data, &repo);
    assert_eq!(
        run(&["prune", "--keep-last", "1", "--repo", s(&repo)]).code,
        11
    );
}

#[test]
fn copy_sends_each_blob_once_verifies_it_and_the_copy_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let offsite = tmp.path().join("offsite");
    for fixture in ["core-3.10.0-basic", "core-3.9.6-basic"] {
        create(&data_dir(fixture), &repo);
    }
    let latest = run(&[
        "copy",
        "--json",
        "--repo",
        s(&repo),
        "--to-repo",
        s(&offsite),
    ])
    .ok()
    .json();
    assert_eq!(
        latest["copied"].as_array().unwrap().len(),
        1,
        "latest only by default"
    );
    let all = run(&[
        "copy",
        "--json",
        "--all",
        "--repo",
        s(&repo),
        "--to-repo",
        s(&offsite),
    ])
    .ok()
    .json();
    assert_eq!(all["copied"].as_array().unwrap().len(), 1);
    assert_eq!(all["skipped"].as_array().unwrap().len(), 1);
    let again = run(&[
        "copy",
        "--json",
        "--all",
        "--repo",
        s(&repo),
        "--to-repo",
        s(&offsite),
    ])
    .ok()
    .json();
    assert_eq!(again["blobs_copied"], 0, "a second copy sends nothing");
    // The copy holds the blobs its backups reference, stored the same way (not the entry chunks
    // of the first repository's progress records).
    let (copied, source) = (blobs(&offsite), blobs(&repo));
    assert!(
        copied
            .iter()
            .all(|(name, size)| source.get(name) == Some(size)),
        "{copied:?} vs {source:?}"
    );
    for backup in run(&["list", "--json", "--repo", s(&offsite)]).ok().json()["backups"]
        .as_array()
        .unwrap()
    {
        let id = backup["backup_id"].as_str().unwrap();
        assert!(referenced_blob_files(&offsite, id)
            .iter()
            .all(|name| copied.contains_key(name)));
    }
    run(&["verify", "--read-data", "--repo", s(&offsite)]).ok();
    let restored = tmp.path().join("restored");
    let first =
        &run(&["list", "--json", "--repo", s(&offsite)]).ok().json()["backups"][0]["backup_id"];
    run(&[
        "restore",
        "--repo",
        s(&offsite),
        first.as_str().unwrap(),
        "--data-dir",
        s(&restored),
    ])
    .ok();
    assert_eq!(
        tree(&restored.join("node0")),
        tree(&data_dir("core-3.10.0-basic").join("node0"))
    );
}

#[test]
fn copy_refuses_a_corrupt_blob_and_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    create(&data_dir("core-3.10.0-wal-only"), &repo);
    let victim = blobs(&repo)
        .into_keys()
        .find(|k| !k.ends_with(".zst"))
        .unwrap();
    let path = stored_file(&repo, &victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let offsite = tmp.path().join("offsite");
    let out = run(&["copy", "--repo", s(&repo), "--to-repo", s(&offsite)]);
    assert_eq!(out.code, 12, "{out:?}");
    assert!(out.stderr.contains(&victim), "{}", out.stderr);
    assert_eq!(
        std::fs::read_dir(offsite.join("manifests"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    assert!(
        !stored_file(&offsite, &victim).exists(),
        "the corrupt blob or pack was removed"
    );
}

/// Two `create`s into one repository at the same time both succeed (shared locks), and both
/// backups verify.
#[test]
fn concurrent_creates_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    run(&["init", "--repo", s(&repo)]).ok();
    let spawn = |fixture: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_influxdb3-backup"))
            .args([
                "create",
                "--quiet",
                "--data-dir",
                s(&data_dir(fixture)),
                "--node-id",
                "node0",
                "--repo",
                s(&repo),
            ])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| spawn("core-3.10.0-basic"));
        let b = scope.spawn(|| spawn("core-3.9.6-basic"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let listed = run(&["list", "--json", "--repo", s(&repo)]).ok().json();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2);
    run(&["verify", "--read-data", "--repo", s(&repo)]).ok();
}

#[test]
fn copy_dry_run_writes_nothing_and_foretells_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let offsite = tmp.path().join("offsite");
    for fixture in ["core-3.10.0-basic", "core-3.9.6-basic"] {
        create(&data_dir(fixture), &repo);
    }
    let copy = |extra: &[&str]| {
        let mut args = vec!["copy", "--json", "--all", "--repo", s(&repo)];
        args.extend(["--to-repo", s(&offsite)]);
        args.extend(extra);
        run(&args)
    };
    let plan = copy(&["--dry-run"]).ok().json();
    assert!(!offsite.exists(), "a dry run made the target");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["copied"].as_array().unwrap().len(), 2);

    let done = copy(&[]).ok().json();
    assert_eq!(done["dry_run"], false);
    for figure in [
        "copied",
        "skipped",
        "blobs_copied",
        "packs_copied",
        "bytes_copied",
        "blobs_present",
    ] {
        assert_eq!(plan[figure], done[figure], "{figure}: {plan} vs {done}");
    }
    assert!(done["blobs_copied"].as_u64().unwrap() + done["packs_copied"].as_u64().unwrap() > 0);

    // Against a target that holds them: nothing to send, and nothing written (no lock either).
    let before = tree(&offsite);
    let again = copy(&["--dry-run"]).ok().json();
    assert_eq!(again["copied"].as_array().unwrap().len(), 0);
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(again["bytes_copied"], 0);
    assert_eq!(tree(&offsite), before);

    // A foreign target is refused as by the copy itself.
    let foreign = tmp.path().join("photos");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("cat.jpg"), b"meow").unwrap();
    let out = run(&[
        "copy",
        "--dry-run",
        "--repo",
        s(&repo),
        "--to-repo",
        s(&foreign),
    ]);
    assert_eq!(out.code, 10, "{out:?}");
}

/// `--concurrency` bounds the parts of the large blobs `copy` streams to its target: each
/// streams up to four parts, so a quarter of the turns stream at once (five blobs of three
/// parts, four at a time, kept 12 parts in flight before).
#[tokio::test]
async fn copy_keeps_the_parts_of_large_blobs_within_concurrency() {
    use ib3_testkit::counting::CountingStore;
    use influxdb3_backup::ops::copy::{copy, CopySettings};
    use influxdb3_backup::stores::repo_store;
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let (repo, data) = (tmp.path().join("repo"), tmp.path().join("data"));
    ib3_testkit::copy_fixture("core-3.10.0-basic", &data);
    add_large_parquet_files(&data, 5);
    create_json(&data, &repo);
    let (store, location) = repo_store(s(&repo), false).await.unwrap();
    let from = ib3_repo::Repository::open(store, location).await.unwrap();
    let offsite = tmp.path().join("offsite");
    let (store, location) = repo_store(s(&offsite), true).await.unwrap();
    let delay = std::time::Duration::from_millis(50);
    let counting = Arc::new(CountingStore::with_delay(store, delay));
    let (to, _) = ib3_repo::Repository::open_or_init(counting.clone(), location, "test")
        .await
        .unwrap();
    let settings = CopySettings {
        backup: None,
        concurrency: 4,
        bar: influxdb3_backup::progress::Bar::new(false),
    };
    let report = copy(&from, &to, settings).await.unwrap();
    assert!(report.blobs_copied >= 5, "{report:?}");
    let peak = counting.peak_parts();
    assert!((1..=4).contains(&peak), "parts in flight at once: {peak}");
}
