//! Encrypted repositories: every fixture round-trips through compression + encryption, no
//! plaintext of a fixture file appears in the repository's bytes, a missing or wrong key (key file
//! or passphrase) is a clear error with exit code 17, and `copy` moves backups between
//! repositories with different encryption settings.
//!
//! Run: `cargo test -p influxdb3-backup --test encryption`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::Path;

fn all_bytes(dir: &Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_bytes(&path, out);
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
}

#[test]
fn every_fixture_round_trips_encrypted_and_no_plaintext_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let key = tmp.path().join("repo.key");
    let init = run(&[
        "init",
        "--json",
        "--encrypt",
        "--repo",
        s(&repo),
        "--key-file",
        s(&key),
    ])
    .ok()
    .json();
    assert!(init["encryption"]["recipient"]
        .as_str()
        .unwrap()
        .starts_with("age1"));
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("AGE-SECRET-KEY-1"));
    for name in fixture_names() {
        let source = data_dir(&name);
        let create = || {
            run(&[
                "create",
                "--json",
                "--data-dir",
                s(&source),
                "--node-id",
                "node0",
                "--repo",
                s(&repo),
                "--key-file",
                s(&key),
            ])
            .ok()
            .json()
        };
        let created = create();
        // An incremental re-reads the snapshot files it reuses from the repository: decrypted.
        let again = create();
        // Everything but catalog checkpoints (always re-read) is reused; nothing is stored.
        let reused = again["entries_reused"].as_u64().unwrap();
        assert!(
            reused + 2 >= created["entries"].as_u64().unwrap(),
            "{name}: {again}"
        );
        assert_eq!(again["blobs_uploaded"], 0, "{name}: {again}");
        assert_eq!(again["consistent"], true, "{name}: {again}");
        let id = created["backup_id"].as_str().unwrap();
        run(&[
            "verify",
            "--read-data",
            "--repo",
            s(&repo),
            id,
            "--key-file",
            s(&key),
        ])
        .ok();
        let restored = tmp.path().join(format!("restored-{name}"));
        run(&[
            "restore",
            "--repo",
            s(&repo),
            id,
            "--data-dir",
            s(&restored),
            "--key-file",
            s(&key),
        ])
        .ok();
        assert_eq!(
            tree(&restored.join("node0")),
            tree(&source.join("node0")),
            "{name}"
        );
    }
    // No 24-byte run of any fixture file's content is in the repository.
    let mut stored = Vec::new();
    all_bytes(&repo, &mut stored);
    let mut probes = 0;
    for name in ["core-3.10.0-basic", "core-3.9.6-basic", "core-3.3.0-basic"] {
        // Every 7th file of each class (a full search per probe is slow in debug builds).
        for (path, bytes) in tree(&data_dir(name).join("node0")).into_iter().step_by(7) {
            if bytes.len() < 64 {
                continue;
            }
            let probe = &bytes[bytes.len() / 2..bytes.len() / 2 + 24];
            assert!(
                !stored.windows(24).any(|w| w == probe),
                "plaintext of {name}/{path} found in the repository"
            );
            probes += 1;
        }
    }
    assert!(probes > 40, "{probes} probes");
    let text = String::from_utf8_lossy(&stored);
    // Long markers: a short one (say the 4-byte Parquet magic) turns up by chance in megabytes of
    // ciphertext.
    for clear in [
        "node0/dbs/",
        "snapshot_sequence_number",
        "idb3.001",
        "usage_system",
    ] {
        assert!(
            !text.contains(clear),
            "{clear:?} found in the repository's bytes"
        );
    }
}

#[test]
fn missing_or_wrong_keys_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let key = tmp.path().join("repo.key");
    let data = data_dir("core-3.10.0-wal-only");
    let pass = [(
        "INFLUXDB3_BACKUP_PASSPHRASE",
        "correct horse battery staple",
    )];
    run_env(
        &[
            "init",
            "--encrypt",
            "--repo",
            s(&repo),
            "--key-file",
            s(&key),
        ],
        &pass,
    )
    .ok();
    // The passphrase and the key file both unlock it.
    run_env(
        &[
            "create",
            "--data-dir",
            s(&data),
            "--node-id",
            "node0",
            "--repo",
            s(&repo),
        ],
        &pass,
    )
    .ok();
    run(&[
        "verify",
        "--read-data",
        "--repo",
        s(&repo),
        "--key-file",
        s(&key),
    ])
    .ok();

    let out = run(&["list", "--repo", s(&repo)]);
    assert_eq!(out.code, 17, "{out:?}");
    assert!(
        out.stderr.contains("encrypted") && out.stderr.contains("--key-file"),
        "{}",
        out.stderr
    );
    let out = run_env(
        &["list", "--repo", s(&repo)],
        &[("INFLUXDB3_BACKUP_PASSPHRASE", "wrong")],
    );
    assert_eq!(out.code, 17, "{out:?}");
    assert!(out.stderr.contains("wrong passphrase"), "{}", out.stderr);
    assert!(!out.stderr.contains("correct horse"), "{}", out.stderr);
    let other = tmp.path().join("other.key");
    run(&[
        "init",
        "--encrypt",
        "--repo",
        s(&tmp.path().join("other-repo")),
        "--key-file",
        s(&other),
    ])
    .ok();
    let out = run(&[
        "restore",
        "--repo",
        s(&repo),
        "--data-dir",
        s(&tmp.path().join("t")),
        "--key-file",
        s(&other),
    ]);
    assert_eq!(out.code, 17, "{out:?}");
    assert!(out.stderr.contains("wrong key"), "{}", out.stderr);
    // An encrypted repository needs a key at init.
    let out = run(&["init", "--encrypt", "--repo", s(&tmp.path().join("no-key"))]);
    assert_eq!(out.code, 17, "{out:?}");
}

#[test]
fn copy_between_plain_and_encrypted_repositories() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    let sealed = tmp.path().join("sealed");
    let back = tmp.path().join("back");
    let key = tmp.path().join("k");
    let data = data_dir("core-3.9.6-upgraded-3.10.0");
    run(&[
        "create",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
        "--repo",
        s(&plain),
    ])
    .ok();
    run(&[
        "init",
        "--encrypt",
        "--repo",
        s(&sealed),
        "--key-file",
        s(&key),
    ])
    .ok();
    run(&[
        "copy",
        "--repo",
        s(&plain),
        "--to-repo",
        s(&sealed),
        "--to-key-file",
        s(&key),
    ])
    .ok();
    run(&[
        "verify",
        "--read-data",
        "--repo",
        s(&sealed),
        "--key-file",
        s(&key),
    ])
    .ok();
    run(&[
        "copy",
        "--repo",
        s(&sealed),
        "--key-file",
        s(&key),
        "--to-repo",
        s(&back),
    ])
    .ok();
    run(&["verify", "--read-data", "--repo", s(&back)]).ok();
    let restored = tmp.path().join("restored");
    run(&["restore", "--repo", s(&back), "--data-dir", s(&restored)]).ok();
    assert_eq!(tree(&restored.join("node0")), tree(&data.join("node0")));
    // The plain round trip ends where it began: the same blobs in the same stored form (the
    // first repository may hold more: entry chunks of its runs' progress records, until a prune;
    // and its small blobs are in packs, which an encrypted repository does not have, so they
    // come back as blob files of their own).
    let names = |dir: &Path| -> Vec<String> {
        let mut all = Vec::new();
        for fan in std::fs::read_dir(dir.join("blobs")).unwrap() {
            for b in std::fs::read_dir(fan.unwrap().path()).unwrap() {
                all.push(b.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        all.sort();
        all
    };
    let packed_names = ib3_testkit::manifest_files::all_entries(&plain)
        .into_iter()
        .filter(|e| e.get("pack").is_some())
        .map(|e| {
            let suffix = if e["encoding"] == "zstd" { ".zst" } else { "" };
            format!("{}{suffix}", e["blob"].as_str().unwrap())
        });
    // The entries' blobs (the entry chunks differ: entries name packs in one, not the other).
    let back_names: Vec<String> = ib3_testkit::manifest_files::all_entries(&back)
        .iter()
        .map(|e| {
            let at = ib3_testkit::manifest_files::stored_at(&back, e);
            assert!(at.length.is_none(), "a copy writes blob files: {e}");
            at.file.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    let plain_names: Vec<String> = names(&plain).into_iter().chain(packed_names).collect();
    assert!(
        std::fs::read_dir(plain.join("packs")).is_ok(),
        "the plain repository packs its small blobs"
    );
    assert!(
        back_names.iter().all(|n| plain_names.contains(n)),
        "{back_names:?} vs {plain_names:?}"
    );
    assert!(names(&sealed).iter().all(|n| n.ends_with(".age")));
}
