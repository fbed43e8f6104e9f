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

fn blob_count(repo: &Path) -> usize {
    let Ok(fans) = std::fs::read_dir(repo.join("blobs")) else {
        return 0;
    };
    fans.map(|f| std::fs::read_dir(f.unwrap().path()).unwrap().count())
        .sum()
}

fn manifest_count(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("manifests"))
        .map(|d| d.count())
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
        // A re-run completes and uploads exactly the blobs that were not there.
        let before = blob_count(&repo);
        let manifests = manifest_count(&repo);
        let report = run(&[
            "create",
            "--json",
            "--data-dir",
            s(&data),
            "--node-id",
            "node0",
            "--repo",
            s(&repo),
        ])
        .ok()
        .json();
        let uploaded = report["blobs_uploaded"].as_u64().unwrap() as usize;
        assert_eq!(
            blob_count(&repo) - before,
            uploaded,
            "round {round}: a stored blob was uploaded again"
        );
        assert_eq!(manifest_count(&repo), manifests + 1);
    }
    run(&["verify", "--read-data", "--repo", s(&repo)]).ok();
    assert!(manifest_count(&repo) >= 3);
}
