//! The shared end-to-end suite, run on every backend: the repository on a local directory, on S3
//! (SeaweedFS), on Azure Blob (Azurite) and on Google Cloud Storage (object_store's GCS client
//! through a local XML-API front), and a node living in a bucket of each cloud as the source,
//! restored across stores. Also the permanent-error cases: wrong secret, missing bucket,
//! unreachable endpoint.
//!
//! The cloud backends need the emulators: `ci-emulators/up.sh` starts them and writes an
//! `env.sh` to source (`./test.sh` does both). Without `IB3_TEST_BACKENDS` the cloud cases are
//! skipped — unless `IB3_TEST_REQUIRE_BACKENDS=1` (set by `./test.sh` in CI), which turns a skip
//! into a failure.
//!
//! Run: `cargo test -p influxdb3-backup --test backends`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    S3,
    Azure,
    Gcs,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::S3 => "s3",
            Backend::Azure => "azure",
            Backend::Gcs => "gcs",
        }
    }

    /// Whether the backend is configured; a missing one fails when backends are required.
    fn available(self) -> bool {
        let listed = std::env::var("IB3_TEST_BACKENDS").unwrap_or_default();
        let on = listed.split(',').any(|b| b.trim() == self.name());
        if !on && std::env::var("IB3_TEST_REQUIRE_BACKENDS").as_deref() == Ok("1") {
            panic!("backend {} is required (IB3_TEST_REQUIRE_BACKENDS=1) but not configured in IB3_TEST_BACKENDS", self.name());
        }
        if !on {
            eprintln!(
                "skipping {}: IB3_TEST_BACKENDS does not list it",
                self.name()
            );
        }
        on
    }

    /// A fresh bucket (container) for this test.
    fn new_bucket(self, tag: &str) -> String {
        let name = format!("ib3-{tag}-{:08x}", fastrand::u32(..));
        let script = match self {
            Backend::Azure => "mkcontainer.sh",
            Backend::S3 | Backend::Gcs => "mkbucket.sh",
        };
        let status = Command::new(repo_root().join("ci-emulators").join(script))
            .arg(&name)
            .status()
            .unwrap();
        assert!(status.success(), "creating bucket {name} failed");
        name
    }

    /// Environment for the binary so that `--object-store <kind> --bucket B` reaches the emulator.
    fn source_env(self) -> Vec<(String, String)> {
        match self {
            Backend::S3 => vec![
                ("AWS_ENDPOINT".into(), env("IB3_TEST_S3_ENDPOINT")),
                ("AWS_ACCESS_KEY_ID".into(), env("IB3_TEST_S3_ACCESS_KEY")),
                (
                    "AWS_SECRET_ACCESS_KEY".into(),
                    env("IB3_TEST_S3_SECRET_KEY"),
                ),
                ("AWS_ALLOW_HTTP".into(), "true".into()),
            ],
            Backend::Azure => vec![
                ("AZURE_ENDPOINT".into(), env("IB3_TEST_AZURE_ENDPOINT")),
                (
                    "AZURE_STORAGE_ACCOUNT".into(),
                    env("IB3_TEST_AZURE_ACCOUNT"),
                ),
                ("AZURE_STORAGE_ACCESS_KEY".into(), env("IB3_TEST_AZURE_KEY")),
                ("AZURE_ALLOW_HTTP".into(), "true".into()),
            ],
            Backend::Gcs => vec![(
                "GOOGLE_SERVICE_ACCOUNT".into(),
                env("IB3_TEST_GCS_SERVICE_ACCOUNT"),
            )],
        }
    }

    /// The same, in the repository's own env family.
    fn repo_env(self) -> Vec<(String, String)> {
        self.source_env()
            .into_iter()
            .map(|(k, v)| (format!("INFLUXDB3_BACKUP_REPO_{k}"), v))
            .collect()
    }

    fn object_store_flag(self) -> &'static str {
        match self {
            Backend::S3 => "s3",
            Backend::Azure => "azure",
            Backend::Gcs => "google",
        }
    }

    fn url(self, bucket: &str, prefix: &str) -> String {
        match self {
            Backend::S3 => format!("s3://{bucket}/{prefix}"),
            Backend::Azure => format!("az://{bucket}/{prefix}"),
            Backend::Gcs => format!("gs://{bucket}/{prefix}"),
        }
    }

    /// A direct object_store client, for seeding and reading buckets in tests.
    fn client(self, bucket: &str) -> Arc<dyn ObjectStore> {
        match self {
            Backend::S3 => Arc::new(
                object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(env("IB3_TEST_S3_ENDPOINT"))
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id(env("IB3_TEST_S3_ACCESS_KEY"))
                    .with_secret_access_key(env("IB3_TEST_S3_SECRET_KEY"))
                    .with_bucket_name(bucket)
                    .build()
                    .unwrap(),
            ),
            Backend::Azure => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::new()
                    .with_endpoint(env("IB3_TEST_AZURE_ENDPOINT"))
                    .with_allow_http(true)
                    .with_account(env("IB3_TEST_AZURE_ACCOUNT"))
                    .with_access_key(env("IB3_TEST_AZURE_KEY"))
                    .with_container_name(bucket)
                    .build()
                    .unwrap(),
            ),
            Backend::Gcs => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::new()
                    .with_service_account_path(env("IB3_TEST_GCS_SERVICE_ACCOUNT"))
                    .with_bucket_name(bucket)
                    .build()
                    .unwrap(),
            ),
        }
    }
}

const ALL: [Backend; 3] = [Backend::S3, Backend::Azure, Backend::Gcs];

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (source ci-emulators env.sh)"))
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Upload a fixture's data dir (node0/…) to the root of a bucket.
fn seed_bucket(store: &dyn ObjectStore, fixture: &str) {
    seed_tree(store, &data_dir(fixture));
}

/// Upload every file under `dir` to the root of a bucket (32 at a time).
fn seed_tree(store: &dyn ObjectStore, dir: &Path) {
    use futures::StreamExt;
    let files = tree(dir);
    runtime().block_on(async {
        futures::stream::iter(files)
            .map(|(path, bytes)| async move {
                store.put(&ObjPath::from(path), bytes.into()).await.unwrap();
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    });
}

/// Every object under `node0/` of a bucket (relative to it), derived files excluded.
fn bucket_tree(store: &dyn ObjectStore) -> BTreeMap<String, Vec<u8>> {
    whole_bucket(store)
        .into_iter()
        .filter_map(|(key, bytes)| {
            let rel = key.strip_prefix("node0/")?.to_string();
            let derived = rel.starts_with("table-snapshots")
                || rel.starts_with("db-indices")
                || rel == "table-index-conversion-completed";
            (!derived).then_some((rel, bytes))
        })
        .collect()
}

/// The keys under `prefix` in a bucket.
fn keys_under(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = ObjPath::from(prefix);
    runtime().block_on(async {
        let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
        metas.into_iter().map(|m| m.location.to_string()).collect()
    })
}

/// A first backup into the repository at `prefix` of `bucket` wrote its small files into packs:
/// the blob objects are its entry chunks (and files too large to pack, none in the fixtures),
/// and the packs are far fewer than the files.
fn assert_small_files_in_packs(
    backend: Backend,
    bucket: &str,
    prefix: &str,
    created: &serde_json::Value,
) {
    let store = backend.client(bucket);
    let packs = keys_under(&*store, &format!("{prefix}/packs/")).len();
    let blob_objects = keys_under(&*store, &format!("{prefix}/blobs/")).len();
    let chunks = created["entry_chunks_written"].as_u64().unwrap() as usize;
    let stored = created["blobs_uploaded"].as_u64().unwrap() as usize;
    let at = format!("{}/{prefix}", backend.name());
    assert_eq!(
        blob_objects, chunks,
        "{at}: only entry chunks are blob objects"
    );
    assert!(packs >= 1, "{at}: no pack");
    assert!(
        packs * 4 <= stored,
        "{at}: {packs} packs for {stored} blobs"
    );
}

/// Every object of a bucket: key → bytes (read 32 at a time).
fn whole_bucket(store: &dyn ObjectStore) -> BTreeMap<String, Vec<u8>> {
    use futures::{StreamExt, TryStreamExt};
    runtime().block_on(async {
        let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
        futures::stream::iter(metas)
            .map(|meta| async move {
                let got = store.get(&meta.location).await.unwrap();
                (
                    meta.location.to_string(),
                    got.bytes().await.unwrap().to_vec(),
                )
            })
            .buffer_unordered(32)
            .collect()
            .await
    })
}

#[test]
fn every_fixture_round_trips_through_a_cloud_repository() {
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("repo");
        for name in fixture_names() {
            let repo = backend.url(&bucket, &name);
            let tmp = tempfile::tempdir().unwrap();
            let restored = tmp.path().join("restored");
            let env = backend.repo_env();
            let source = data_dir(&name);
            let created = run_env(
                &[
                    "create",
                    "--json",
                    "--data-dir",
                    s(&source),
                    "--node-id",
                    "node0",
                    "--repo",
                    &repo,
                ],
                &env,
            )
            .ok()
            .json();
            assert_small_files_in_packs(backend, &bucket, &name, &created);
            let again = run_env(
                &[
                    "create",
                    "--json",
                    "--data-dir",
                    s(&source),
                    "--node-id",
                    "node0",
                    "--repo",
                    &repo,
                ],
                &env,
            )
            .ok()
            .json();
            assert_eq!(
                again["bytes_uploaded"],
                0,
                "{}/{name}: incremental uploaded new bytes",
                backend.name()
            );
            let verified = run_env(&["verify", "--json", "--read-data", "--repo", &repo], &env)
                .ok()
                .json();
            assert_eq!(
                verified["ok"],
                true,
                "{}/{name}: {verified:#}",
                backend.name()
            );
            let id = created["backup_id"].as_str().unwrap();
            assert_restores(
                &repo,
                &[id],
                &env,
                &restored,
                &tree(&source.join("node0")),
                &format!("{}/{name}", backend.name()),
            );
        }
    }
}

#[test]
fn a_node_in_a_bucket_backs_up_and_restores_across_stores() {
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let fixture = "core-3.9.6-upgraded-3.10.0";
        let source_bucket = backend.new_bucket("src");
        seed_bucket(backend.client(&source_bucket).as_ref(), fixture);
        let inspected = run_env(
            &[
                "inspect",
                "--json",
                "--object-store",
                backend.object_store_flag(),
                "--bucket",
                &source_bucket,
                "--node-id",
                "node0",
            ],
            &backend.source_env(),
        )
        .ok()
        .json();
        assert_eq!(
            inspected["layout"]["active_catalog"],
            "v3",
            "{}",
            backend.name()
        );
        assert_eq!(
            inspected["judgement"]["findings"][0]["code"],
            "catalog-stale-generation",
            "{}",
            backend.name()
        );
        let tmp = tempfile::tempdir().unwrap();
        let local_repo = tmp.path().join("repo");
        let flag = backend.object_store_flag();
        let env = backend.source_env();
        // `create` of the node in the bucket into `repo`, with `extra` arguments.
        let create_with = |repo: &str, env: &[(String, String)], extra: &[&str]| {
            let mut args = vec![
                "create",
                "--json",
                "--object-store",
                flag,
                "--bucket",
                &source_bucket,
                "--node-id",
                "node0",
                "--repo",
                repo,
            ];
            args.extend_from_slice(extra);
            run_env(&args, env).ok().json()
        };
        let create = |repo: &str, env: &[(String, String)]| create_with(repo, env, &[]);
        // Cloud → local repository.
        let created = create(s(&local_repo), &env);
        assert_eq!(created["source"]["consistent"], true);
        // An incremental follows the snapshot files (DESIGN §4.6): the node listed with a
        // delimiter but for `dbs/`, taken from the backup above. The restore below restores it.
        let followed = create(s(&local_repo), &env);
        assert_eq!(followed["source"]["consistent"], true);
        assert_eq!(
            followed["source"]["parquet_followed"],
            true,
            "{}",
            backend.name()
        );
        assert_eq!(
            followed["entries"],
            created["entries"],
            "{}",
            backend.name()
        );
        // Local repository → a fresh bucket of the same cloud.
        let target_bucket = backend.new_bucket("dst");
        run_env(
            &[
                "restore",
                "--json",
                "--repo",
                s(&local_repo),
                "--object-store",
                flag,
                "--bucket",
                &target_bucket,
            ],
            &env,
        )
        .ok();
        let expected = tree(&data_dir(fixture).join("node0"));
        assert_eq!(
            bucket_tree(backend.client(&target_bucket).as_ref()),
            expected,
            "{}",
            backend.name()
        );
        // The node restored in place (DESIGN §3.7 rule 3, *written since*): every object written
        // anew, one Parquet file with other bytes at the same size. The store's own times (whole
        // seconds on S3, hence the wait) tell the next backup to take no entry over.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let client = backend.client(&source_bucket);
        seed_bucket(client.as_ref(), fixture);
        let files = tree(&data_dir(fixture));
        let (parquet, bytes) = files.iter().find(|(k, _)| k.ends_with(".parquet")).unwrap();
        let mut other = bytes.clone();
        other[bytes.len() / 2] ^= 0xff;
        runtime()
            .block_on(client.put(&ObjPath::from(parquet.as_str()), other.clone().into()))
            .unwrap();
        // A dry run sees it too, from the bucket's own times, and foretells the reads.
        let plan = create_with(s(&local_repo), &env, &["--dry-run"]);
        let rewritten = create(s(&local_repo), &env);
        let name = backend.name();
        assert_eq!(rewritten["entries_reused"], 0, "{name}: {rewritten}");
        assert_eq!(plan["objects_unchanged"], 0, "{name}: {plan}");
        assert_eq!(plan["bytes_to_read"], rewritten["bytes_read"], "{name}");
        assert!(
            rewritten["source"].get("parquet_followed").is_none(),
            "{name}"
        );
        let restored = tmp.path().join(format!("in-place-{name}"));
        run(&[
            "restore",
            "--repo",
            s(&local_repo),
            "--data-dir",
            s(&restored),
        ])
        .ok();
        assert_eq!(
            std::fs::read(restored.join(parquet)).unwrap(),
            other,
            "{name}"
        );
        // The fixture's bytes back, for the backup across clouds below.
        runtime()
            .block_on(client.put(&ObjPath::from(parquet.as_str()), bytes.clone().into()))
            .unwrap();
        // The repository on the next cloud (S3 → Azure → GCS → S3): every cloud is a source and
        // a repository across clouds.
        let position = ALL.iter().position(|b| *b == backend).unwrap_or(0);
        let other = ALL[(position + 1) % ALL.len()];
        if other.available() {
            let repo_bucket = other.new_bucket("x");
            let repo = other.url(&repo_bucket, "cross");
            let mut env2 = env.clone();
            env2.extend(other.repo_env());
            create(&repo, &env2);
            run_env(&["verify", "--read-data", "--repo", &repo], &env2).ok();
            let restored = tmp.path().join(format!("from-{}", other.name()));
            assert_restores(
                &repo,
                &[],
                &env2,
                &restored,
                &expected,
                &format!("{} → {}", backend.name(), other.name()),
            );
        }
    }
}

#[test]
fn permanent_store_errors_are_clear_and_write_nothing() {
    if !Backend::S3.available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let quick = [
        "--object-store-max-retries",
        "0",
        "--object-store-retry-timeout",
        "2s",
    ];
    let mut env = Backend::S3.source_env();
    let bucket = Backend::S3.new_bucket("err");

    // Wrong secret key.
    for (k, v) in env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let mut args = vec![
        "create",
        "--object-store",
        "s3",
        "--bucket",
        &bucket,
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ];
    args.extend(quick);
    let out = run_env(&args, &env);
    assert_eq!(out.code, 16, "{out:?}");
    assert!(out.stderr.contains("access was refused"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("not-the-secret"),
        "the secret leaked: {}",
        out.stderr
    );
    assert!(
        !repo.exists() || !repo.join("config").exists(),
        "nothing written to the repository"
    );

    // Missing bucket.
    let env = Backend::S3.source_env();
    let mut args = vec![
        "create",
        "--object-store",
        "s3",
        "--bucket",
        "no-such-bucket-ib3",
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ];
    args.extend(quick);
    let out = run_env(&args, &env);
    assert_eq!(out.code, 16, "{out:?}");
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);

    // Unreachable endpoint (nothing listens on port 9 here).
    let mut env = Backend::S3.source_env();
    env[0].1 = "http://127.0.0.1:9".into();
    let mut args = vec![
        "create",
        "--object-store",
        "s3",
        "--bucket",
        &bucket,
        "--node-id",
        "node0",
        "--repo",
        s(&repo),
    ];
    args.extend(quick);
    let out = run_env(&args, &env);
    assert_eq!(out.code, 16, "{out:?}");
    assert!(
        out.stderr.contains("could not be reached"),
        "{}",
        out.stderr
    );

    // Repository side: wrong secret in the repository family.
    let mut env = Backend::S3.repo_env();
    for (k, v) in env.iter_mut() {
        if k.ends_with("AWS_SECRET_ACCESS_KEY") {
            *v = "not-the-secret".into();
        }
    }
    let repo_url = Backend::S3.url(&bucket, "r");
    let out = run_env(
        &[
            "create",
            "--data-dir",
            s(&data_dir("core-3.10.0-wal-only")),
            "--node-id",
            "node0",
            "--repo",
            &repo_url,
        ],
        &env,
    );
    assert_eq!(out.code, 16, "{out:?}");
    assert!(!out.stderr.contains("not-the-secret"), "{}", out.stderr);
    let listed = runtime().block_on(async {
        use futures::TryStreamExt;
        Backend::S3
            .client(&bucket)
            .list(None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    });
    assert!(listed.is_empty(), "objects were written: {listed:?}");
}

/// What the repository assumes of every store: create-only PUT is exclusive (the manifest commit
/// point), a listing pages through more objects than one page holds, and a rename of a streamed
/// staging object lands whole.
#[test]
fn store_assumptions_hold_on_every_backend() {
    use object_store::{PutMode, PutOptions, PutPayload};
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("assume");
        let store = backend.client(&bucket);
        runtime().block_on(async {
            let key = ObjPath::from("manifests/x.json");
            let create = || PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            store
                .put_opts(&key, PutPayload::from_static(b"first"), create())
                .await
                .unwrap();
            let second = store
                .put_opts(&key, PutPayload::from_static(b"second"), create())
                .await;
            assert!(
                matches!(second, Err(object_store::Error::AlreadyExists { .. })),
                "{}: {second:?}",
                backend.name()
            );
            let kept = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(
                kept.as_ref(),
                b"first",
                "{}: create-only overwrote",
                backend.name()
            );

            // More objects than one S3 listing page (1000).
            let puts = (0..1100).map(|i| {
                let store = store.clone();
                async move {
                    store
                        .put(
                            &ObjPath::from(format!("many/{i:05}")),
                            PutPayload::from_static(b"x"),
                        )
                        .await
                }
            });
            let results: Vec<_> = futures::stream::iter(puts)
                .buffer_unordered(32)
                .collect()
                .await;
            assert!(results.iter().all(|r| r.is_ok()));
            use futures::TryStreamExt;
            let listed: Vec<_> = store
                .list(Some(&ObjPath::from("many")))
                .try_collect()
                .await
                .unwrap();
            assert_eq!(
                listed.len(),
                1100,
                "{}: listing did not page",
                backend.name()
            );
        });
    }
}

/// The large Parquet file [`node_with_large_parquet`] adds, relative to the node.
const LARGE_PARQUET: &str = "dbs/1/0/2026-11-25/09-59/0000009999.parquet";

/// Copy a small Core node to `data` and add a Parquet file of `size` bytes that do not compress
/// ([`LARGE_PARQUET`]); its content.
fn node_with_large_parquet(data: &Path, size: u32) -> Vec<u8> {
    copy_fixture("core-3.10.0-wal-only", data);
    let big = data.join("node0").join(LARGE_PARQUET);
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let content: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &content).unwrap();
    content
}

/// A large object goes through multipart upload to the repository and back, byte for byte.
#[test]
fn large_objects_stream_through_multipart_on_every_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let content = node_with_large_parquet(&data, (40 << 20) + 12345);
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("big");
        let repo = backend.url(&bucket, "r");
        let env = backend.repo_env();
        let created = run_env(
            &[
                "create",
                "--json",
                "--data-dir",
                s(&data),
                "--node-id",
                "node0",
                "--repo",
                &repo,
            ],
            &env,
        )
        .ok()
        .json();
        assert!(created["bytes_uploaded"].as_u64().unwrap() > 40 << 20);
        run_env(&["verify", "--read-data", "--repo", &repo], &env).ok();
        let restored = tmp.path().join(format!("restored-{}", backend.name()));
        run_env(
            &["restore", "--repo", &repo, "--data-dir", s(&restored)],
            &env,
        )
        .ok();
        let back = std::fs::read(restored.join("node0").join(LARGE_PARQUET)).unwrap();
        assert!(
            back == content,
            "{}: large object differs after the round trip",
            backend.name()
        );
    }
}

/// `--limit-upload` holds a backup into every cloud, and a restore into a bucket, to the rate;
/// `--limit-download` a full read-back of every cloud repository and a restore from one: 10 MiB
/// that does not compress, at 2 MiB/s, cannot all have gone before 5 s less the two seconds of
/// burst a cap allows (unpaced, the emulators take it in well under a second). Only a lower
/// bound is asserted: a slow machine cannot fail it. What is read or written is whole.
#[test]
fn transfers_keep_to_their_caps_on_every_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let content = node_with_large_parquet(&data, 10 << 20);
    let at_least = std::time::Duration::from_secs(3);
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("cap");
        let repo = backend.url(&bucket, "r");
        let env = backend.repo_env();
        let began = std::time::Instant::now();
        let args = ["create", "--data-dir", s(&data), "--node-id", "node0"];
        let created = run_env(
            &[
                &args[..],
                &["--json", "--repo", &repo, "--limit-upload", "2MiB"],
            ]
            .concat(),
            &env,
        )
        .ok()
        .json();
        let took = began.elapsed();
        assert!(took >= at_least, "{}: took {took:?}", backend.name());
        assert!(created["bytes_uploaded"].as_u64().unwrap() > 10 << 20);
        let began = std::time::Instant::now();
        let verify = ["verify", "--read-data", "--repo", &repo];
        run_env(&[&verify[..], &["--limit-download", "2MiB"]].concat(), &env).ok();
        let took = began.elapsed();
        assert!(
            took >= at_least,
            "{}: read back in {took:?}",
            backend.name()
        );
        if backend == Backend::S3 {
            let restored = tmp.path().join("restored");
            let began = std::time::Instant::now();
            let restore = ["restore", "--repo", &repo, "--data-dir", s(&restored)];
            run_env(
                &[&restore[..], &["--limit-download", "2MiB"]].concat(),
                &env,
            )
            .ok();
            let took = began.elapsed();
            assert!(took >= at_least, "restore from S3 took {took:?}");
            let back = std::fs::read(restored.join("node0").join(LARGE_PARQUET)).unwrap();
            assert!(
                back == content,
                "the large file differs after a paced restore"
            );
        }
    }
    // A restore into a bucket: its uploads are the target's.
    let backend = Backend::S3;
    if !backend.available() {
        return;
    }
    let local_repo = tmp.path().join("repo");
    create_node0(&data, &local_repo).ok();
    let target = backend.new_bucket("capdst");
    let began = std::time::Instant::now();
    run_env(
        &[
            "restore",
            "--repo",
            s(&local_repo),
            "--object-store",
            backend.object_store_flag(),
            "--bucket",
            &target,
            "--limit-upload",
            "2MiB/s",
        ],
        &backend.source_env(),
    )
    .ok();
    let took = began.elapsed();
    assert!(took >= at_least, "restore into a bucket took {took:?}");
    let restored = bucket_tree(backend.client(&target).as_ref());
    assert!(
        restored.get(LARGE_PARQUET) == Some(&content),
        "the large file differs after a paced restore"
    );
}

/// `copy` to a repository on every cloud, with the target's own credential family, then from
/// that cloud to the next one: deduplicated, verified, restorable.
#[test]
fn copy_off_site_to_every_cloud() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("repo");
    let data = data_dir("core-3.3.0-upgraded-3.9.6");
    run(&[
        "create",
        "--data-dir",
        s(&data),
        "--node-id",
        "node0",
        "--repo",
        s(&local),
    ])
    .ok();
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("copy");
        let target = backend.url(&bucket, "offsite");
        let to_env: Vec<(String, String)> = backend
            .source_env()
            .into_iter()
            .map(|(k, v)| (format!("INFLUXDB3_BACKUP_TO_REPO_{k}"), v))
            .collect();
        let copied = run_env(
            &["copy", "--json", "--repo", s(&local), "--to-repo", &target],
            &to_env,
        )
        .ok()
        .json();
        assert_eq!(
            copied["copied"].as_array().unwrap().len(),
            1,
            "{}",
            backend.name()
        );
        let again = run_env(
            &["copy", "--json", "--repo", s(&local), "--to-repo", &target],
            &to_env,
        )
        .ok()
        .json();
        assert_eq!(again["blobs_copied"], 0);
        let env = backend.repo_env();
        run_env(&["verify", "--read-data", "--repo", &target], &env).ok();
        let restored = tmp.path().join(format!("restored-{}", backend.name()));
        assert_restores(
            &target,
            &[],
            &env,
            &restored,
            &tree(&data.join("node0")),
            backend.name(),
        );
    }
}

/// Retention, garbage collection and locks on every cloud repository: prune keeps the newest,
/// collects what only the removed backup held, and a live exclusive lock refuses a create.
#[test]
fn prune_and_locks_on_every_cloud() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_fixture("core-3.10.0-wal-only", &data);
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("prune");
        let repo = backend.url(&bucket, "r");
        let mut env = backend.repo_env();
        // Listing the Parquet tree every run: the extra file below is in no snapshot file.
        env.push(("INFLUXDB3_BACKUP_RESCAN_AFTER".into(), "0s".into()));
        let create = || {
            run_env(
                &[
                    "create",
                    "--json",
                    "--data-dir",
                    s(&data),
                    "--node-id",
                    "node0",
                    "--repo",
                    &repo,
                ],
                &env,
            )
            .ok()
            .json()
        };
        let first = create();
        let extra = data.join("node0/dbs/9/9/2030-01-01/00-00/0000000001.parquet");
        std::fs::create_dir_all(extra.parent().unwrap()).unwrap();
        let extra_content = format!("only in the first backup of {}", backend.name());
        std::fs::write(&extra, &extra_content).unwrap();
        let with_extra = create();
        std::fs::remove_file(&extra).unwrap();
        let last = create();
        assert_ne!(first["backup_id"], last["backup_id"]);
        // Keep the newest backup; collect at once what only the others held.
        let prune = |dry_run: bool| {
            let mut argv = vec!["prune", "--json", "--keep-last", "1", "--gc-grace", "0s"];
            if dry_run {
                argv.push("--dry-run");
            }
            argv.extend(["--repo", &repo]);
            run_env(&argv, &env).ok().json()
        };
        let plan = prune(false);
        assert_eq!(
            plan["gc"]["remove_backups"].as_array().unwrap().len(),
            2,
            "{}",
            backend.name()
        );
        // The extra file's blob goes, with the entry chunks only the removed backups (and the
        // runs' progress records) had; nothing the kept backup needs (verify below reads it all).
        assert_eq!(
            with_extra["bytes"].as_u64().unwrap() - last["bytes"].as_u64().unwrap(),
            extra_content.len() as u64
        );
        // The extra file was that run's only new content: a pack of its own, which goes whole.
        let packs = plan["gc"]["remove_packs"].as_array().unwrap();
        assert_eq!(
            packs
                .iter()
                .map(|p| p[1].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [extra_content.len() as u64],
            "{}: the extra file's pack is collected: {packs:?}",
            backend.name()
        );
        let removed = plan["gc"]["remove_blobs"].as_array().unwrap();
        assert!(
            removed.iter().all(|b| b[1] == "zstd"),
            "{}: besides it, only entry chunks: {removed:?}",
            backend.name()
        );
        let again = prune(true);
        assert_eq!(
            again["gc"]["remove_blobs"].as_array().unwrap().len()
                + again["gc"]["remove_packs"].as_array().unwrap().len(),
            0,
            "{}: nothing unreferenced is left",
            backend.name()
        );
        let listed = run_env(&["list", "--json", "--repo", &repo], &env)
            .ok()
            .json();
        assert_eq!(listed["backups"][0]["backup_id"], last["backup_id"]);
        run_env(&["verify", "--read-data", "--repo", &repo], &env).ok();

        // A live exclusive lock of another host refuses a create; unlock clears it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let lock = serde_json::json!({"id": "other", "kind": "exclusive", "command": "prune", "host": "elsewhere", "pid": 1, "created": now, "refreshed": now});
        let store = backend.client(&bucket);
        runtime()
            .block_on(store.put(
                &ObjPath::from("r/locks/other.json"),
                serde_json::to_vec(&lock).unwrap().into(),
            ))
            .unwrap();
        let out = run_env(
            &[
                "create",
                "--data-dir",
                s(&data),
                "--node-id",
                "node0",
                "--repo",
                &repo,
            ],
            &env,
        );
        assert_eq!(out.code, 11, "{}: {out:?}", backend.name());
        run_env(&["unlock", "--repo", &repo], &env).ok();
        create();
    }
}

/// An encrypted repository on every cloud: backups, verification and restore through it, and no
/// plaintext marker in what the store holds.
#[test]
fn encrypted_repository_on_every_cloud() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir("core-3.10.0-basic");
    let key = tmp.path().join("repo.key");
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("enc");
        let repo = backend.url(&bucket, "sealed");
        let env = backend.repo_env();
        run_env(
            &["init", "--encrypt", "--repo", &repo, "--key-file", s(&key)],
            &env,
        )
        .ok();
        run_env(
            &[
                "create",
                "--data-dir",
                s(&data),
                "--node-id",
                "node0",
                "--repo",
                &repo,
                "--key-file",
                s(&key),
            ],
            &env,
        )
        .ok();
        run_env(
            &[
                "verify",
                "--read-data",
                "--repo",
                &repo,
                "--key-file",
                s(&key),
            ],
            &env,
        )
        .ok();
        let out = run_env(&["list", "--repo", &repo], &env);
        assert_eq!(out.code, 17, "{}: {out:?}", backend.name());
        let restored = tmp.path().join(format!("restored-{}", backend.name()));
        assert_restores(
            &repo,
            &["--key-file", s(&key)],
            &env,
            &restored,
            &tree(&data.join("node0")),
            backend.name(),
        );
        let stored = bucket_bytes(backend.client(&bucket).as_ref());
        let text = String::from_utf8_lossy(&stored);
        assert!(
            !text.contains("node0/dbs/") && !text.contains("usage_system"),
            "{}: plaintext in the bucket",
            backend.name()
        );
    }
}

/// A restore from a cloud repository reads each pack once and checks every member before it
/// writes its file: with every pack damaged it stops (exit 12, "corrupt") having written no
/// file that differs from the source; with the packs gone it stops naming a pack.
#[test]
fn restore_from_cloud_packs_checks_every_member() {
    let tmp = tempfile::tempdir().unwrap();
    let source = data_dir("core-3.10.0-basic");
    let expected = tree(&source.join("node0"));
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let bucket = backend.new_bucket("packs");
        let repo = backend.url(&bucket, "r");
        let env = backend.repo_env();
        let argv = ["create", "--data-dir", s(&source), "--node-id", "node0"];
        run_env(&[&argv[..], &["--repo", &repo]].concat(), &env).ok();
        let store = backend.client(&bucket);
        let packs = keys_under(&*store, "r/packs/");
        assert!(!packs.is_empty(), "{}: no pack", backend.name());
        let restore = |into: &Path| {
            let argv = ["restore", "--repo", &repo, "latest", "--data-dir", s(into)];
            run_env(&[&argv[..], &["--node-id", "node0"]].concat(), &env)
        };
        for key in &packs {
            let key = ObjPath::from(key.as_str());
            runtime().block_on(async {
                let mut bytes = store
                    .get(&key)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec();
                for byte in bytes.iter_mut().step_by(97) {
                    *byte ^= 0xff;
                }
                store.put(&key, bytes.into()).await.unwrap();
            });
        }
        let damaged = tmp.path().join(format!("damaged-{}", backend.name()));
        let out = restore(&damaged);
        assert_eq!(out.code, 12, "{}: {out:?}", backend.name());
        assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
        for (path, content) in tree(&damaged.join("node0")) {
            if path.starts_with(".influxdb3-backup") {
                continue;
            }
            assert_eq!(
                expected.get(&path),
                Some(&content),
                "{}: {path} was written with content not the source's",
                backend.name()
            );
        }
        for key in &packs {
            runtime()
                .block_on(store.delete(&ObjPath::from(key.as_str())))
                .unwrap();
        }
        let out = restore(&tmp.path().join(format!("gone-{}", backend.name())));
        assert_ne!(out.code, 0, "{}: {out:?}", backend.name());
        assert!(out.stderr.contains("from pack"), "{}", out.stderr);
    }
}

/// Restore `repo` (plus `extra` arguments: a backup id, a key file) into the data dir `into`
/// and check that its node equals `expected` byte for byte.
fn assert_restores(
    repo: &str,
    extra: &[&str],
    env: &[(String, String)],
    into: &Path,
    expected: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let mut args = vec!["restore", "--repo", repo, "--data-dir", s(into)];
    args.extend_from_slice(extra);
    run_env(&args, env).ok();
    assert_eq!(&tree(&into.join("node0")), expected, "{what}");
}

/// Every byte of every object in a bucket.
fn bucket_bytes(store: &dyn ObjectStore) -> Vec<u8> {
    use futures::TryStreamExt;
    runtime().block_on(async {
        let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
        let mut out = Vec::new();
        for meta in metas {
            out.extend(
                store
                    .get(&meta.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
            );
        }
        out
    })
}

/// A synthetic Enterprise cluster (catalog v2 and v3) living in a bucket of each cloud: inspect,
/// create into a repository in that cloud, an incremental that uploads nothing, verify
/// --read-data, restore into a fresh bucket, compare every object. Then a PachaTree cluster is
/// refused and its built-in backup is copied and restored.
#[test]
fn a_cluster_in_a_bucket_round_trips_on_every_cloud() {
    use ib3_testkit::cluster::{build_cluster, ClusterSpec};
    for backend in ALL {
        if !backend.available() {
            continue;
        }
        let flag = backend.object_store_flag();
        let mut env = backend.source_env();
        env.extend(backend.repo_env());
        let repo_bucket = backend.new_bucket("clrepo");
        for material in ["core-3.9.6-basic", "core-3.10.0-basic"] {
            let what = format!("{}/{material}", backend.name());
            let tmp = tempfile::tempdir().unwrap();
            let data = build_cluster(&tmp.path().join("source"), &ClusterSpec::standard(material));
            let source_bucket = backend.new_bucket("cl");
            seed_tree(backend.client(&source_bucket).as_ref(), &data);
            let source = [
                "--object-store",
                flag,
                "--bucket",
                &source_bucket,
                "--cluster-id",
                "cluster1",
            ];
            let mut inspect = vec!["inspect", "--json"];
            inspect.extend_from_slice(&source);
            let inspected = run_env(&inspect, &env).ok().json();
            assert_eq!(
                inspected["cluster"]["members"].as_array().unwrap().len(),
                4,
                "{what}"
            );
            let repo = backend.url(&repo_bucket, material);
            let mut create = vec!["create", "--json", "--repo", &repo];
            create.extend_from_slice(&source);
            let created = run_env(&create, &env).ok().json();
            assert_eq!(created["source"]["consistent"], true, "{what}");
            let again = run_env(&create, &env).ok().json();
            assert_eq!(again["bytes_uploaded"], 0, "{what}: incremental");
            let verified = run_env(&["verify", "--json", "--read-data", "--repo", &repo], &env)
                .ok()
                .json();
            assert_eq!(verified["ok"], true, "{what}: {verified:#}");
            let target_bucket = backend.new_bucket("cldst");
            run_env(
                &[
                    "restore",
                    "--repo",
                    &repo,
                    "--object-store",
                    flag,
                    "--bucket",
                    &target_bucket,
                ],
                &env,
            )
            .ok();
            assert_eq!(
                whole_bucket(backend.client(&target_bucket).as_ref()),
                tree(&data),
                "{what}: restored bucket differs"
            );
        }

        let tmp = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec::standard("core-3.10.0-basic");
        spec.storage_mode = Some("PachaTree");
        spec.builtin_backups = vec!["nightly-1"];
        let data = build_cluster(&tmp.path().join("source"), &spec);
        let source_bucket = backend.new_bucket("pt");
        seed_tree(backend.client(&source_bucket).as_ref(), &data);
        let repo = backend.url(&repo_bucket, "pacha");
        let source = [
            "--object-store",
            flag,
            "--bucket",
            &source_bucket,
            "--cluster-id",
            "cluster1",
        ];
        let mut create = vec!["create", "--json", "--repo", &repo];
        create.extend_from_slice(&source);
        let refused = run_env(&create, &env);
        assert_eq!(refused.code, 18, "{}: {}", backend.name(), refused.stderr);
        create.extend_from_slice(&["--builtin-backup", "nightly-1"]);
        run_env(&create, &env).ok();
        run_env(&["verify", "--read-data", "--repo", &repo], &env).ok();
        let target_bucket = backend.new_bucket("ptdst");
        run_env(
            &[
                "restore",
                "--repo",
                &repo,
                "--object-store",
                flag,
                "--bucket",
                &target_bucket,
            ],
            &env,
        )
        .ok();
        let mut expected = tree(&data);
        expected.retain(|k, _| k.starts_with("cluster1/backups/nightly-1/"));
        assert_eq!(
            whole_bucket(backend.client(&target_bucket).as_ref()),
            expected,
            "{}: restored built-in backup differs",
            backend.name()
        );
    }
}
