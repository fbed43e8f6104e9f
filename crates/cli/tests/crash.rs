//! Crash safety: `create` and `prune` killed with SIGKILL at many points leave a valid
//! repository — every backup in it verifies with `--read-data`, a killed run's backup simply does
//! not exist — and the next run completes without uploading content the repository already holds.
//! A lock left by a killed process on this host does not block the next run (its process is gone).
//!
//! Run: `cargo test -p influxdb3-backup --test crash`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Blob files and packs stored, not counting `name#N` files: object_store's local staging of a
/// write that was killed, invisible to every listing (so never part of the repository).
fn blob_count(repo: &Path) -> usize {
    ["blobs", "packs"]
        .iter()
        .map(|top| files_in_fans(&repo.join(top)))
        .sum()
}

fn files_in_fans(dir: &Path) -> usize {
    let Ok(fans) = std::fs::read_dir(dir) else {
        return 0;
    };
    let visible = |dir: std::path::PathBuf| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|b| {
                !b.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains('#')
            })
            .count()
    };
    fans.map(|f| visible(f.unwrap().path())).sum()
}

/// The ids of the blobs a repository is known to hold: its blob files, and the blobs in packs
/// that its backups' entries and its runs' progress records name.
fn stored_blob_ids(repo: &Path) -> std::collections::BTreeSet<String> {
    // A run killed soon after it initialised the repository may have stored nothing outside
    // packs: no `blobs/` yet.
    let blobs = repo.join("blobs");
    let blob_files = if blobs.is_dir() {
        tree(&blobs)
    } else {
        Default::default()
    };
    let mut ids: std::collections::BTreeSet<String> = blob_files
        .into_keys()
        .filter(|name| !name.contains('#'))
        .filter_map(|name| Some(name.split('/').nth(1)?.split('.').next()?.to_string()))
        .collect();
    let mut entries = ib3_testkit::manifest_files::all_entries(repo);
    if let Ok(records) = std::fs::read_dir(repo.join("partial")) {
        for record in records {
            let name = record.unwrap().file_name().to_string_lossy().into_owned();
            entries.extend(ib3_testkit::manifest_files::partial_entries(repo, &name));
        }
    }
    ids.extend(
        entries
            .iter()
            .filter(|e| e.get("pack").is_some())
            .map(|e| e["blob"].as_str().unwrap().to_string()),
    );
    ids
}

/// The visible blob files and packs of a repository, by path.
fn stored_names(repo: &Path) -> std::collections::BTreeSet<String> {
    ["blobs", "packs"]
        .iter()
        .filter(|top| repo.join(top).is_dir())
        .flat_map(|top| {
            tree(&repo.join(top))
                .into_keys()
                .map(move |k| format!("{top}/{k}"))
        })
        .filter(|name| !name.contains('#'))
        .collect()
}

/// Manifests stored, not counting `name#N` files (a killed write's local staging, invisible to
/// every listing: `list` does not show it and `prune` removes it).
fn manifest_count(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("manifests"))
        .map(|d| {
            d.filter(|m| {
                !m.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains('#')
            })
            .count()
        })
        .unwrap_or(0)
}

/// Start the binary and SIGKILL it after `delay` (if it is still running).
fn run_and_kill(args: &[&str], delay: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_influxdb3-backup"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}

#[test]
fn killed_creates_and_prunes_leave_a_valid_repository_and_reruns_upload_only_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let sources = [
        "core-3.10.0-basic",
        "core-3.9.6-upgraded-3.10.0",
        "core-3.3.0-basic",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..12 {
        let data = data_dir(sources[round % sources.len()]);
        let delay = Duration::from_millis(rng.u64(2..120));
        run_and_kill(
            &[
                "create",
                "--quiet",
                "--concurrency",
                "2",
                "--data-dir",
                s(&data),
                "--node-id",
                "node0",
                "--repo",
                s(&repo),
            ],
            delay,
        );
        if round % 4 == 3 {
            let delay = Duration::from_millis(rng.u64(2..60));
            run_and_kill(
                &[
                    "prune",
                    "--quiet",
                    "--keep-last",
                    "1",
                    "--gc-grace",
                    "0s",
                    "--repo",
                    s(&repo),
                ],
                delay,
            );
        }
        if !repo.join("config").exists() {
            continue; // killed before the repository existed
        }
        // Whatever was committed verifies completely.
        let verified = run(&["verify", "--json", "--read-data", "--repo", s(&repo)]);
        assert_eq!(verified.code, 0, "round {round}: {verified:?}");
        // A re-run completes and uploads exactly the blobs that were not there: neither a blob
        // file nor a blob in a pack that a backup or a run's progress record names (a killed
        // run's pack that no record names is not known to hold anything).
        let before = stored_blob_ids(&repo);
        let manifests = manifest_count(&repo);
        let report = create_json(&data, &repo);
        let uploaded = report["blobs_uploaded"].as_u64().unwrap() as usize;
        let id = report["backup_id"].as_str().unwrap();
        let missing: std::collections::BTreeSet<String> =
            ib3_testkit::manifest_files::manifest_entries(&repo, id)
                .iter()
                .map(|e| e["blob"].as_str().unwrap().to_string())
                .filter(|blob| !before.contains(blob))
                .collect();
        assert_eq!(
            uploaded,
            missing.len(),
            "round {round}: a stored blob was uploaded again"
        );
        assert_eq!(manifest_count(&repo), manifests + 1);
    }
    run(&["verify", "--read-data", "--repo", s(&repo)]).ok();
    assert!(manifest_count(&repo) >= 3);
}

/// Ctrl-C (SIGINT) stops a run cleanly: exit code 130, its lock removed, nothing committed.
#[test]
fn ctrl_c_stops_cleanly_and_releases_the_lock() {
    a_signal_stops_cleanly_and_releases_the_lock("-INT", 130, "interrupted");
}

/// SIGTERM (systemd, Kubernetes) likewise, with exit code 143.
#[test]
fn sigterm_stops_cleanly_and_releases_the_lock() {
    a_signal_stops_cleanly_and_releases_the_lock("-TERM", 143, "terminated (SIGTERM)");
}

/// `kill <signal>` at a few points of a run: one of them stops it before its commit, with
/// `code` and `said` on stderr, leaving no lock and nothing committed.
fn a_signal_stops_cleanly_and_releases_the_lock(signal: &str, code: i32, said: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_fixture("core-3.10.0-basic", &data);
    // Enough content, all of it distinct (nothing deduplicated), that the run is still going
    // when interrupted: 400 files of 64 KiB, 256 of them distinct, took 30-70 ms, and the
    // signal often came after the commit.
    for i in 0..2000u32 {
        let parquet = data.join(format!(
            "node0/dbs/9/9/2030-01-{:02}/{:02}-{:02}/0000000001.parquet",
            1 + i / 1440,
            i / 60 % 24,
            i % 60
        ));
        std::fs::create_dir_all(parquet.parent().unwrap()).unwrap();
        std::fs::write(&parquet, i.to_le_bytes().repeat(8 * 1024)).unwrap();
    }
    let repo = tmp.path().join("repo");
    let mut interrupted = false;
    for delay_ms in [150, 80, 40, 20, 10, 300] {
        let child = Command::new(env!("CARGO_BIN_EXE_influxdb3-backup"))
            .args([
                "create",
                "--quiet",
                "--concurrency",
                "1",
                "--data-dir",
                s(&data),
                "--node-id",
                "node0",
                "--repo",
                s(&repo),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(code) {
            assert!(stderr.contains(said), "{stderr}");
            if stderr.contains("nothing was committed") {
                interrupted = true;
                break;
            }
            // Interrupted after its commit: it says so, and the backup is there.
            if stderr.contains("after committing backup") {
                assert_eq!(manifest_count(&repo), 1, "{stderr}");
            }
        }
        // Finished (or committed) before the signal: start over with an empty repository.
        std::fs::remove_dir_all(&repo).unwrap();
    }
    assert!(interrupted, "no run could be interrupted");
    let locks = std::fs::read_dir(repo.join("locks"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(locks, 0, "the interrupted run left its lock");
    assert_eq!(manifest_count(&repo), 0, "nothing committed");
    run(&[
        "create",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ])
    .ok();
    run(&["verify", "--read-data", "--repo", s(&repo)]).ok();
}

/// `copy` killed at many points: the target holds only complete, verifiable backups, and the
/// next copy sends exactly the blobs still missing.
#[test]
fn killed_copies_leave_a_valid_target_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    for fixture in ["core-3.10.0-basic", "core-3.9.6-basic", "core-3.3.0-basic"] {
        run(&[
            "create",
            "--data-dir",
            s(&data_dir(fixture)),
            "--node-id",
            "node0",
            "--repo",
            s(&repo),
        ])
        .ok();
    }
    let offsite = tmp.path().join("offsite");
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..8 {
        let delay = Duration::from_millis(rng.u64(2..80));
        run_and_kill(
            &[
                "copy",
                "--quiet",
                "--all",
                "--concurrency",
                "2",
                "--repo",
                s(&repo),
                "--to-repo",
                s(&offsite),
            ],
            delay,
        );
        if !offsite.join("config").exists() {
            continue;
        }
        run(&["verify", "--read-data", "--repo", s(&offsite)]).ok();
    }
    let before = blob_count(&offsite);
    let names_before = stored_names(&offsite);
    let report = run(&[
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
    let added: Vec<String> = stored_names(&offsite)
        .difference(&names_before)
        .cloned()
        .collect();
    assert_eq!(
        blob_count(&offsite) - before,
        (report["blobs_copied"].as_u64().unwrap()
            + report["packs_copied"].as_u64().unwrap()
            + report["entry_chunks_written"].as_u64().unwrap()) as usize,
        "{report}\nadded: {added:?}"
    );
    assert_eq!(manifest_count(&offsite), 3);
    // Everything the copies hold, the source holds under the same names (it may hold more: the
    // entry chunks of its runs' progress records, until a prune).
    let names = |repo: &Path| -> std::collections::BTreeSet<String> {
        let mut names = tree(&repo.join("blobs"));
        names.extend(tree(&repo.join("packs")));
        names
            .into_keys()
            .filter(|name| !name.contains('#'))
            .collect()
    };
    assert!(names(&offsite).is_subset(&names(&repo)));
    run(&["verify", "--read-data", "--repo", s(&offsite)]).ok();
    // prune removes what the killed writes left on the local file system (invisible to listings).
    run(&[
        "prune",
        "--keep-last",
        "10",
        "--gc-grace",
        "0s",
        "--repo",
        s(&offsite),
    ])
    .ok();
    let mut leftovers = Vec::new();
    find_staging(&offsite, &mut leftovers);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    run(&["verify", "--read-data", "--repo", s(&offsite)]).ok();
}

fn find_staging(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            find_staging(&path, out);
        } else if path.file_name().unwrap().to_string_lossy().contains('#') {
            out.push(path);
        }
    }
}
