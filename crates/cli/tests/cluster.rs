//! InfluxDB 3 Enterprise clusters, on SYNTHETIC cluster trees built from the real Core fixtures
//! (`ib3_testkit::cluster`, `crates/testkit/SYNTHETIC.md`): discovery, create → verify → restore
//! → compare for catalog v1, v2 and v3, the documented order in both directions (recorded by
//! wrapping stores), single-node restore, license portability warnings, and PachaTree refusal
//! with the copy of a built-in backup. The same round trip on every cloud is in `backends.rs`.
//!
//! Run: `cargo test -p influxdb3-backup --test cluster`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ib3_testkit::cluster::{build_cluster, ClusterSpec};
use ib3_testkit::counting::CountingStore;
use influxdb3_backup::args::{CloudArgs, ObjectStoreKind, SourceArgs};
use influxdb3_backup::ops::record::BackupSource;
use influxdb3_backup::progress::Bar;
use influxdb3_backup::stores::{open_root, repo_store};
use std::path::Path;
use std::sync::{Arc, Mutex};

const CLUSTER: &str = "cluster1";

fn build(dir: &Path, spec: &ClusterSpec<'_>) -> std::path::PathBuf {
    build_cluster(&dir.join("source"), spec)
}

fn create(data: &Path, repo: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "create",
        "--json",
        "--data-dir",
        s(data),
        "--cluster-id",
        CLUSTER,
        "--repo",
        s(repo),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn restore(repo: &Path, target: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "restore",
        "--json",
        "--repo",
        s(repo),
        "--data-dir",
        s(target),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn synthetic_clusters_of_every_catalog_generation_round_trip() {
    for material in [
        "core-3.3.0-basic",
        "core-3.9.6-basic",
        "core-3.10.0-basic",
        "core-3.9.6-upgraded-3.10.0",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let data = build(tmp.path(), &ClusterSpec::standard(material));
        let repo = tmp.path().join("repo");
        let created = create(&data, &repo, &[]).ok().json();
        let source = &created["source"];
        assert_eq!(source["product"], "influxdb3-enterprise", "{material}");
        assert_eq!(source["consistent"], true, "{material}: {source:#}");
        let members: Vec<(&str, &str)> = source["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["node_id"].as_str().unwrap(), m["role"].as_str().unwrap()))
            .collect();
        assert_eq!(
            members,
            [
                ("comp1", "compactor"),
                ("node1", "data"),
                ("node2", "data"),
                ("node3", "data")
            ],
            "{material}"
        );
        assert_eq!(source["members"][0]["compaction_objects"], 13);
        assert_eq!(
            source["cluster_files"],
            serde_json::json!(["enterprise", "commercial_license"])
        );
        let catalog = &source["catalog"]["point"];
        assert!(
            catalog["catalog_sequence"].as_u64() >= catalog["catalog_sequence_required"].as_u64(),
            "{material}: {catalog}"
        );

        let again = create(&data, &repo, &[]).ok().json();
        assert_eq!(again["bytes_uploaded"], 0, "{material}: incremental");
        let verified = run(&["verify", "--json", "--read-data", "--repo", s(&repo)])
            .ok()
            .json();
        assert_eq!(verified["ok"], true, "{material}: {verified:#}");

        if material == "core-3.10.0-basic" {
            // Off-site copy: cluster manifests are ordinary manifests to `copy`.
            let offsite = tmp.path().join("offsite");
            run(&[
                "copy",
                "--repo",
                s(&repo),
                "--to-repo",
                s(&offsite),
                "--all",
            ])
            .ok();
            let copied = run(&["verify", "--json", "--read-data", "--repo", s(&offsite)])
                .ok()
                .json();
            assert_eq!(copied["backups"].as_array().unwrap().len(), 2);
            let from_offsite = tmp.path().join("from-offsite");
            restore(&offsite, &from_offsite, &[]).ok();
            assert_eq!(tree(&from_offsite), tree(&data));
        }
        let target = tmp.path().join("target");
        let restored = restore(&repo, &target, &[]).ok().json();
        assert_eq!(
            restored["plan"]["prefixes"],
            serde_json::json!(["cluster1", "node1", "node2", "node3", "comp1"])
        );
        assert_eq!(
            tree(&target),
            tree(&data),
            "{material}: restored tree differs"
        );
    }
}

/// A cluster's incremental settles each clean member's snapshot files as a node's does, and
/// takes their kept headers: with every member's snapshot bytes damaged in the repository it
/// still judges the cluster as before, reading none of them; `--reread-snapshots` reads them
/// (and fails on the damage, naming it).
#[test]
fn members_snapshot_files_are_judged_from_their_kept_headers_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), &ClusterSpec::standard("core-3.10.0-basic"));
    let repo = tmp.path().join("repo");
    let first = create(&data, &repo, &[]).ok().json();
    create(&data, &repo, &[]).ok();
    let id = first["backup_id"].as_str().unwrap();
    let snapshots: Vec<serde_json::Value> =
        ib3_testkit::manifest_files::manifest_entries(&repo, id)
            .into_iter()
            .filter(|e| e["class"] == "snapshot")
            .collect();
    let members: std::collections::BTreeSet<&str> = snapshots
        .iter()
        .filter_map(|e| e["path"].as_str()?.split('/').next())
        .collect();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(snapshots
        .iter()
        .all(|e| e["facts"]["kind"] == "snapshot-header/1"));
    for entry in &snapshots {
        ib3_testkit::manifest_files::stored_at(&repo, entry).damage();
    }
    let third = create(&data, &repo, &[]).ok().json();
    assert_eq!(third["source"]["consistent"], true);
    for (i, member) in first["source"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(
            third["source"]["members"][i]["node"]["point"],
            member["node"]["point"]
        );
    }
    let reread = create(&data, &repo, &["--reread-snapshots"]);
    assert_ne!(reread.code, 0, "{}", reread.stdout);
    assert!(reread.stderr.contains("snapshots/"), "{}", reread.stderr);
}

/// A member whose snapshot files reference Parquet files the server removed settles them as a
/// node does (DESIGN §4.3): with the blob of every snapshot file that has a kept header damaged
/// in the repository, the next incremental judges the cluster unread and carries the member's
/// removals over.
#[test]
fn a_member_that_lost_parquet_files_still_settles_its_snapshot_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), &ClusterSpec::standard("core-3.10.0-basic"));
    let removed = ib3_testkit::hard_delete_newest_snapshot(&data.join("node2"));
    assert!(!removed.is_empty());
    let repo = tmp.path().join("repo");
    let member = |report: &serde_json::Value, field: &str| -> serde_json::Value {
        let members = report["source"]["members"].as_array().unwrap();
        let node2 = members.iter().find(|m| m["node_id"] == "node2").unwrap();
        node2["node"][field].clone()
    };
    let first = create(&data, &repo, &[]).ok().json();
    assert_eq!(first["source"]["consistent"], true, "{first}");
    let removed_by_server = member(&first, "removed_by_server");
    let recorded: Vec<&str> = removed_by_server
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(recorded.len(), removed.len(), "{removed_by_server}");
    let second = create(&data, &repo, &[]).ok().json();
    let id = second["backup_id"].as_str().unwrap();
    // Every snapshot file with a kept header (those that record removals are read again).
    let mut damaged = 0;
    for entry in ib3_testkit::manifest_files::manifest_entries(&repo, id) {
        if entry["facts"]["kind"] == "snapshot-header/1" {
            ib3_testkit::manifest_files::stored_at(&repo, &entry).damage();
            damaged += 1;
        }
    }
    assert!(damaged > 3, "{damaged}");
    let third = create(&data, &repo, &[]).ok().json();
    assert_eq!(third["source"]["consistent"], true, "{third}");
    assert_eq!(member(&third, "removed_by_server"), removed_by_server);
    assert_eq!(member(&third, "findings"), member(&first, "findings"));
}

/// A member's snapshot files are settled only while every Parquet file of its previous backup
/// is still there, whichever member was cut before it: here a compactor that also ingests,
/// cut first (compactors come first) though its id sorts after the data node's, with many files
/// of its own (the entries given out when its cut ended are most of the previous backup's). A
/// Parquet file deleted from the data node is found missing.
#[test]
fn a_member_cut_after_one_that_sorts_later_still_finds_a_missing_parquet_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::standard("core-3.10.0-basic");
    spec.data_nodes = vec!["node1"];
    spec.compactor = Some("node9");
    spec.compactor_ingests = true;
    let data = build(tmp.path(), &spec);
    // Unreferenced files (a persist cut short leaves such): no finding, many entries.
    let extra = data.join("node9/dbs/9/9/2030-01-01/00-00");
    std::fs::create_dir_all(&extra).unwrap();
    for i in 0..3000 {
        std::fs::write(extra.join(format!("{i:010}.parquet")), format!("PAR1 {i}")).unwrap();
    }
    let repo = tmp.path().join("repo");
    let first = create(&data, &repo, &[]).ok().json();
    let roles: Vec<&str> = first["source"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["node9", "node1"], "the compactor is cut first");
    let second = create(&data, &repo, &[]).ok().json();
    let id = second["backup_id"].as_str().unwrap();
    let newest = ib3_testkit::manifest_files::manifest_entries(&repo, id)
        .iter()
        .filter_map(|e| e["path"].as_str())
        .filter(|p| p.starts_with("node1/") && p.ends_with(".parquet"))
        .max()
        .unwrap()
        .to_string();
    std::fs::remove_file(data.join(&newest)).unwrap();
    let third = create(
        &data,
        &repo,
        &["--max-replans", "0", "--allow-inconsistent"],
    );
    let findings = third.json()["source"]["members"][1]["node"]["findings"].to_string();
    assert!(findings.contains("parquet-missing"), "{findings}");
    assert!(findings.contains(&newest), "{findings}");
}

/// Discovery leaves out a Core node (own catalog) and a prefix the catalog does not register,
/// and says so; naming one of them, or a wrong cluster id, is a clear error.
#[test]
fn discovery_names_what_it_leaves_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::standard("core-3.9.6-basic");
    spec.neighbours = true;
    let data = build(tmp.path(), &spec);
    let inspected = run(&[
        "inspect",
        "--json",
        "--data-dir",
        s(&data),
        "--cluster-id",
        CLUSTER,
    ])
    .ok()
    .json();
    let roles: Vec<(&str, &str, &str)> = inspected["cluster"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let field = |f: &str| m[f].as_str().unwrap();
            (field("node_id"), field("role"), field("registration"))
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("comp1", "compactor", "registered"),
            ("node1", "data", "registered"),
            ("node2", "data", "registered"),
            ("node3", "data", "registered")
        ]
    );
    assert_eq!(
        inspected["members"].as_array().unwrap().len(),
        3,
        "node files: data nodes"
    );
    assert_eq!(
        inspected["catalog"]["judgement"]["point"]["catalog_sequence_required"],
        8
    );
    assert_eq!(inspected["file_backup_supported"], true);
    assert_eq!(inspected["cluster"]["skipped"].as_array().unwrap().len(), 2);
    let repo = tmp.path().join("repo");
    let created = create(&data, &repo, &[]).ok().json();
    let skipped: Vec<&str> = created["source"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["corex", "strayx"]);
    assert_eq!(created["source"]["members"].as_array().unwrap().len(), 4);

    let named = create(&data, &repo, &["--node-id", "corex"]);
    assert_eq!(named.code, 13, "{}", named.stderr);
    assert!(
        named.stderr.contains("catalog of its own"),
        "{}",
        named.stderr
    );
    assert!(named.stderr.contains("node1 (data)"), "{}", named.stderr);

    let wrong = run(&[
        "create",
        "--data-dir",
        s(&data),
        "--cluster-id",
        "clusterX",
        "--repo",
        s(&repo),
    ]);
    assert_eq!(wrong.code, 13, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("cluster1"), "{}", wrong.stderr);

    // A subset: the compactor is still captured first, the catalog last.
    let subset = create(&data, &repo, &["--node-id", "node2,comp1"])
        .ok()
        .json();
    let ids: Vec<&str> = subset["source"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["comp1", "node2"]);
    // A backup of some nodes is its own retention group: keeping the last one keeps both.
    let list = run(&["list", "--json", "--repo", s(&repo)]).ok().json();
    let subjects: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["cluster cluster1", "cluster cluster1 nodes comp1,node2"]
    );
    let pruned = run(&[
        "prune",
        "--json",
        "--dry-run",
        "--keep-last",
        "1",
        "--repo",
        s(&repo),
    ])
    .ok()
    .json();
    let kept = pruned["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true);
    assert_eq!(kept.count(), 2, "{pruned:#}");
}

/// The backup reads the compactor's output first, then the nodes, then the cluster catalog,
/// then the cluster files (the seed page's order), recorded by a store that logs every read.
#[tokio::test]
async fn create_reads_in_the_documented_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), &ClusterSpec::standard("core-3.10.0-basic"));
    let args = local_args(&data, &[]);
    let mut root = open_root(&args, false).await.unwrap();
    let reads = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = reads.clone();
    root.store = Arc::new(CountingStore::with_hook(
        root.store.clone(),
        Box::new(move |key| log.lock().unwrap().push(key.to_string())),
    ));
    let repo = repo_store(s(&tmp.path().join("repo")), true).await.unwrap();
    use influxdb3_backup::ops::create::{create, CreateOptions, CreateSource};
    let source = CreateSource::Cluster(influxdb3_backup::ops::create_cluster::ClusterSource {
        root,
        cluster_id: CLUSTER.into(),
        nodes: Vec::new(),
        builtin_backup: None,
    });
    let options = CreateOptions {
        concurrency: 4,
        max_replans: 3,
        ..CreateOptions::new(source, repo)
    };
    let report = create(options).await.unwrap();
    assert!(report.consistent);
    let reads = reads.lock().unwrap().clone();
    // The survey reads the catalog first (storage engine, registrations); the backup proper
    // starts with the compactor's output.
    let start = reads.iter().position(|k| k.starts_with("comp1/")).unwrap();
    let rank = |key: &str| {
        let (prefix, rest) = key.split_once('/').unwrap();
        match prefix {
            "comp1" => 1,
            "node1" | "node2" | "node3" => 2,
            // `catalog/`, `catalogs/` and `_catalog_checkpoint` (looked up for v1 catalogs).
            CLUSTER if rest.starts_with("catalog") || rest == "_catalog_checkpoint" => 3,
            CLUSTER => 4,
            _ => 0,
        }
    };
    let ranks: Vec<u8> = reads[start..].iter().map(|k| rank(k)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "reads out of the documented order: {:?}",
        &reads[start..]
    );
    for expected in 1..=4 {
        assert!(
            ranks.contains(&expected),
            "no read of rank {expected}: {reads:?}"
        );
    }
    let first = |prefix: &str| reads[start..].iter().position(|k| k.starts_with(prefix));
    assert!(first("comp1/cs/") < first("comp1/cd/") && first("comp1/cd/") < first("comp1/c/"));
}

/// The restore writes every prefix's marker first, then the cluster catalog (logs, then the
/// checkpoint), the cluster files, every data node (Parquet, snapshots, WAL), and the compactor
/// last (its `c/`, then `cd/`, then `cs/`); recorded by a store that logs every write.
#[tokio::test]
async fn restore_writes_in_the_documented_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), &ClusterSpec::standard("core-3.10.0-basic"));
    let repo_dir = tmp.path().join("repo");
    let created = create(&data, &repo_dir, &[]).ok().json();
    let (store, location) = repo_store(s(&repo_dir), false).await.unwrap();
    let repository = ib3_repo::Repository::open(store, location).await.unwrap();
    let id: ib3_repo::BackupId = created["backup_id"].as_str().unwrap().parse().unwrap();
    let manifest = repository.load_manifest(&id).await.unwrap();
    let source = BackupSource::parse(&manifest.source).unwrap();
    let target_dir = tmp.path().join("target");
    let mut target = open_root(&local_args(&target_dir, &[]), true)
        .await
        .unwrap();
    let recording = Arc::new(CountingStore::new(target.store.clone()));
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
        concurrency: 8,
        bar: Bar::new(false),
        repo_dir: None,
    })
    .await
    .unwrap();
    let written = recording.keys_written();
    let markers = 5;
    assert!(
        written[..markers]
            .iter()
            .all(|k| k.ends_with("/.influxdb3-backup-restore.json")),
        "markers first: {:?}",
        &written[..markers]
    );
    let rank = |key: &str| {
        let (prefix, rest) = key.split_once('/').unwrap();
        let dir = rest.split('/').next().unwrap();
        match (prefix, dir) {
            (CLUSTER, "catalog") if rest.ends_with("/snapshot") => 2,
            (CLUSTER, "catalog") => 1,
            (CLUSTER, _) => 3,
            ("comp1", "c") => 7,
            ("comp1", "cd") => 8,
            ("comp1", "cs") => 9,
            (_, "dbs") => 4,
            (_, "snapshots" | "snapshot-checkpoints") => 5,
            (_, "wal") => 6,
            _ => 0,
        }
    };
    let ranks: Vec<u8> = written[markers..].iter().map(|k| rank(k)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "writes out of the documented order: {:?}",
        &written[markers..]
    );
    assert_eq!(
        (1..=9).filter(|r| ranks.contains(r)).count(),
        9,
        "{written:?}"
    );
    assert_eq!(tree(&target_dir), tree(&data));
}

/// A cluster catalog behind what the nodes' data needs is no consistent backup (exit 14); with
/// --allow-inconsistent it is written, marked, and `verify` fails it naming the catalog.
#[test]
fn a_cluster_catalog_behind_the_nodes_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), &ClusterSpec::standard("core-3.9.6-basic"));
    for seq in 8..=20 {
        let _ =
            std::fs::remove_file(data.join(format!("{CLUSTER}/catalog/v2/logs/{seq:020}.catalog")));
    }
    let repo = tmp.path().join("repo");
    let refused = create(&data, &repo, &["--max-replans", "1"]);
    assert_eq!(refused.code, 14, "{}", refused.stderr);
    assert!(refused.stderr.contains("cluster1/"), "{}", refused.stderr);
    let kept = create(
        &data,
        &repo,
        &["--max-replans", "0", "--allow-inconsistent"],
    );
    assert_eq!(kept.code, 3, "{}", kept.stderr);
    let findings = kept.json()["source"]["catalog"]["findings"].to_string();
    assert!(findings.contains("catalog-behind-data"), "{findings}");
    let verified = run(&["verify", "--json", "--repo", s(&repo)]);
    assert_eq!(verified.code, 12, "{}", verified.stdout);
    let consistency = verified.json()["backups"][0]["consistency"].to_string();
    assert!(consistency.contains("catalog-behind-data"), "{consistency}");
}

/// `create --dry-run` of a cluster foretells what the backup then reads, to the byte, first
/// and incremental (compactor output, members, catalog, cluster files), and writes nothing.
#[test]
fn a_cluster_dry_run_foretells_what_the_backup_reads() {
    for compactor_ingests in [false, true] {
        let mut spec = ClusterSpec::standard("core-3.9.6-basic");
        spec.compactor_ingests = compactor_ingests;
        foretells_the_cluster_backup(&spec);
    }
}

fn foretells_the_cluster_backup(spec: &ClusterSpec<'_>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), spec);
    let repo = tmp.path().join("repo");
    let dry_run = || {
        let out = create(&data, &repo, &["--dry-run"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json()
    };
    let plan = dry_run();
    assert!(!repo.exists(), "a dry run makes no repository");
    assert_eq!(plan["cluster"]["cluster"]["cluster_id"], CLUSTER);
    let first = create(&data, &repo, &[]).ok().json();
    assert_eq!(plan["objects"], first["entries"]);
    assert_eq!(plan["bytes_to_read"], first["bytes_read"]);

    let plan = dry_run();
    assert_eq!(plan["previous_backup"], first["backup_id"]);
    let second = create(&data, &repo, &[]).ok().json();
    assert_eq!(plan["objects"], second["entries"]);
    assert_eq!(plan["objects_unchanged"], second["entries_reused"]);
    assert_eq!(plan["bytes_to_read"], second["bytes_read"]);
}

/// One node out of a cluster backup: into an empty store it comes with the cluster's catalog
/// and files; into a store whose catalog is sufficient, alone; a catalog behind its data is
/// refused.
#[test]
fn one_node_restores_out_of_a_cluster_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), &ClusterSpec::standard("core-3.9.6-basic"));
    let repo = tmp.path().join("repo");
    create(&data, &repo, &[]).ok();

    let empty = tmp.path().join("empty");
    let alone = restore(&repo, &empty, &["--node-id", "node2"]).ok().json();
    assert_eq!(
        alone["plan"]["prefixes"],
        serde_json::json!(["cluster1", "node2"])
    );
    let mut expected = tree(&data);
    expected.retain(|k, _| k.starts_with("cluster1/") || k.starts_with("node2/"));
    assert_eq!(tree(&empty), expected);

    // The live cluster lost node2: restore only it; the catalog there is kept.
    let live = tmp.path().join("live");
    build_cluster(&live, &ClusterSpec::standard("core-3.9.6-basic"));
    std::fs::remove_dir_all(live.join("node2")).unwrap();
    let before = tree(&live.join(CLUSTER));
    let only = restore(
        &repo,
        &live,
        &["--node-id", "node2", "--cluster-id", CLUSTER],
    )
    .ok()
    .json();
    assert_eq!(only["plan"]["prefixes"], serde_json::json!(["node2"]));
    assert!(only["plan"]["warnings"].to_string().contains("is kept"));
    assert_eq!(tree(&live), tree(&data));
    assert_eq!(tree(&live.join(CLUSTER)), before);

    // A catalog behind what node2's data needs is refused.
    std::fs::remove_dir_all(live.join("node2")).unwrap();
    for seq in 8..=20 {
        let _ =
            std::fs::remove_file(live.join(format!("{CLUSTER}/catalog/v2/logs/{seq:020}.catalog")));
    }
    let behind = restore(&repo, &live, &["--node-id", "node2"]);
    assert_eq!(behind.code, 15, "{}", behind.stderr);
    assert!(behind.stderr.contains("needs 8"), "{}", behind.stderr);
    assert!(!live.join("node2").exists());

    let unknown = restore(&repo, &empty, &["--node-id", "node9"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("node1, node2, node3"),
        "{}",
        unknown.stderr
    );
    let renamed = restore(&repo, &empty, &["--cluster-id", "other"]);
    assert_eq!(renamed.code, 2, "{}", renamed.stderr);
}

/// A non-empty target is refused; --force replaces the cluster's files and deletes stale ones,
/// but never the target's license files or the server's own backups.
#[test]
fn force_keeps_licenses_and_built_in_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let data = build(tmp.path(), &ClusterSpec::standard("core-3.10.0-basic"));
    let repo = tmp.path().join("repo");
    create(&data, &repo, &[]).ok();
    let target = tmp.path().join("target");
    restore(&repo, &target, &[]).ok();
    let refused = restore(&repo, &target, &[]);
    assert_eq!(refused.code, 15, "{}", refused.stderr);

    let stale_log = target.join(format!(
        "{CLUSTER}/catalog/v3/logs/00000000000000000099.catalog"
    ));
    std::fs::write(&stale_log, b"stale").unwrap();
    let stale_wal = target.join("node1/wal/00000000999.wal");
    std::fs::write(&stale_wal, b"stale").unwrap();
    let license = target.join(format!("{CLUSTER}/trial_or_home_license"));
    std::fs::write(&license, b"the target's own license").unwrap();
    let builtin = target.join(format!("{CLUSTER}/backups/b1/manifest.json"));
    std::fs::create_dir_all(builtin.parent().unwrap()).unwrap();
    std::fs::write(&builtin, b"server backup").unwrap();
    let forced = restore(&repo, &target, &["--force", "--live-check", "0s"])
        .ok()
        .json();
    let deletes = forced["plan"]["deletes"].to_string();
    assert!(
        deletes.contains("00000000000000000099.catalog") && deletes.contains("00000000999.wal")
    );
    assert!(!stale_log.exists() && !stale_wal.exists());
    assert!(license.exists() && builtin.exists());
}

/// Licenses written before 3.10 were bound to the store: moving them warns and names the fix.
#[test]
fn moving_a_pre_3_10_license_warns() {
    for (material, warns) in [("core-3.9.6-basic", true), ("core-3.10.0-basic", false)] {
        let tmp = tempfile::tempdir().unwrap();
        let data = build(tmp.path(), &ClusterSpec::standard(material));
        let repo = tmp.path().join("repo");
        create(&data, &repo, &[]).ok();
        let plan = restore(&repo, &tmp.path().join("elsewhere"), &["--dry-run"])
            .ok()
            .json();
        let warnings = plan["plan"]["warnings"].to_string();
        assert_eq!(
            warnings.contains("bound to the object-store provider, bucket and path"),
            warns,
            "{material}: {warnings}"
        );
        if warns {
            assert!(warnings.contains("--license-file"), "{warnings}");
        }
        assert!(
            !tmp.path().join("elsewhere").exists(),
            "a dry run creates nothing"
        );
    }
}

/// A PachaTree cluster is detected and its file-level backup refused (exit 18) with the way
/// out; the server's own backup is copied into the repository, verified, and restored.
#[test]
fn pacha_tree_is_refused_and_its_built_in_backup_is_kept_off_site() {
    for material in ["core-3.9.6-basic", "core-3.10.0-basic"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec::standard(material);
        spec.storage_mode = Some("PachaTree");
        spec.builtin_backups = vec!["nightly-1"];
        let data = build(tmp.path(), &spec);
        let inspected = run(&[
            "inspect",
            "--json",
            "--data-dir",
            s(&data),
            "--cluster-id",
            CLUSTER,
        ])
        .ok()
        .json();
        assert_eq!(inspected["file_backup_supported"], false, "{material}");
        assert_eq!(
            inspected["cluster"]["storage_mode"], "pacha-tree",
            "{material}"
        );
        assert_eq!(
            inspected["cluster"]["builtin_backups"],
            serde_json::json!(["nightly-1"])
        );
        let repo = tmp.path().join("repo");
        let refused = create(&data, &repo, &[]);
        assert_eq!(refused.code, 18, "{material}: {}", refused.stderr);
        for needle in [
            "PachaTree",
            "influxdb3 create backup",
            "--builtin-backup NAME",
            "nightly-1",
        ] {
            assert!(
                refused.stderr.contains(needle),
                "{material}: {needle}: {}",
                refused.stderr
            );
        }
        assert!(
            !repo.join("manifests").exists()
                || std::fs::read_dir(repo.join("manifests")).unwrap().count() == 0
        );

        let missing = create(&data, &repo, &["--builtin-backup", "nightly-9"]);
        assert_eq!(missing.code, 13, "{}", missing.stderr);
        assert!(missing.stderr.contains("nightly-1"), "{}", missing.stderr);

        let copied = create(&data, &repo, &["--builtin-backup", "nightly-1"])
            .ok()
            .json();
        assert_eq!(copied["source"]["kind"], "builtin-backup");
        assert_eq!(copied["entries"], 3);
        let verified = run(&["verify", "--json", "--read-data", "--repo", s(&repo)])
            .ok()
            .json();
        assert_eq!(verified["ok"], true, "{verified:#}");
        let target = tmp.path().join("target");
        restore(&repo, &target, &[]).ok();
        let backup = format!("{CLUSTER}/backups/nightly-1");
        assert_eq!(tree(&target.join(&backup)), tree(&data.join(&backup)));
        assert_eq!(
            tree(&target).len(),
            3,
            "only the built-in backup is written"
        );
        let again = restore(&repo, &target, &[]);
        assert_eq!(again.code, 15, "{}", again.stderr);
    }
}

fn local_args(data: &Path, nodes: &[&str]) -> SourceArgs {
    SourceArgs {
        object_store: ObjectStoreKind::File,
        data_dir: Some(data.to_path_buf()),
        node_id: nodes.iter().map(|n| n.to_string()).collect(),
        cluster_id: Some(CLUSTER.into()),
        bucket: None,
        cloud: CloudArgs::default(),
    }
}
