//! Test helpers of influxdb3-backup (dev-dependency only, never shipped).
//!
//! - [`fixtures_dir`], [`fixture_data_dir`], [`copy_fixture`]: the data directories written by
//!   real InfluxDB 3 servers in `../shared/fixtures` (read-only; tests work on copies);
//! - [`simulator`]: a [`simulator::ServerSimulator`] that mutates a copied data directory the way
//!   `influxdb3 serve` does (WAL files every few milliseconds, snapshots that write Parquet files,
//!   then the snapshot file, then delete the WAL files they cover, catalog logs appended and the
//!   catalog checkpoint rewritten in place), in the server's order and with the server's atomic
//!   writes, so a test can run `create` against a live-looking source;
//! - [`store`]: a [`store::SlowStore`] wrapper that delays reads and listings and can list in a
//!   cloud store's lexicographic order, to widen the race windows.
//!
//! Facts about the layout come from `../shared/docs/influxdb3-storage-format.md` (§1, §2.1, §2.2,
//! §2.7, §3.2); the simulator's byte formats were checked against the fixtures.

pub mod cluster;
pub mod counting;
pub mod generate;
pub mod manifest_files;
pub mod simulator;
pub mod store;

use std::path::{Path, PathBuf};

/// The fixtures directory (`<workspace>/../shared/fixtures`). Panics with a clear message when it
/// is missing: the tests that use it need the real data directories.
pub fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    assert!(
        dir.is_dir(),
        "missing fixtures directory {}: these tests need the real InfluxDB 3 data directories \
         in ../shared/fixtures (next to the workspace)",
        dir.display()
    );
    dir
}

/// The data dir (`<fixture>/data`) of the fixture `name`, e.g. `core-3.10.0-basic`.
pub fn fixture_data_dir(name: &str) -> PathBuf {
    let dir = fixtures_dir().join(name).join("data");
    assert!(
        dir.is_dir(),
        "no fixture {name:?}: {} does not exist",
        dir.display()
    );
    dir
}

/// Copy the data dir of fixture `name` into `dest` (created if missing), recursively. The copies
/// are made writable (the fixtures are read-only) so a test or the simulator may change them.
pub fn copy_fixture(name: &str, dest: &Path) {
    let from = fixture_data_dir(name);
    if let Err(e) = copy_tree(&from, dest) {
        panic!(
            "cannot copy fixture {} to {}: {e}",
            from.display(),
            dest.display()
        );
    }
}

/// Every file under `dir`, recursively, in no particular order; a directory that cannot be read
/// panics, naming it (a test's own tree).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => panic!("cannot read directory {}: {e}", dir.display()),
        };
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            let mut permissions = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(&target, permissions)?;
        }
    }
    Ok(())
}

/// `(path, size_bytes)` of every Parquet file a snapshot file adds (its `databases`), paths as
/// recorded (node prefix included). A snapshot not of the server's shape panics, naming what is
/// missing (a test's own tree).
pub fn snapshot_parquet_refs(snapshot: &serde_json::Value) -> Vec<(String, u64)> {
    let mut refs = Vec::new();
    for db in json_array(&snapshot["databases"], "databases") {
        for table in json_array(&db[1]["tables"], "tables") {
            for file in json_array(&table[1], "a table's files") {
                match (file["path"].as_str(), file["size_bytes"].as_u64()) {
                    (Some(path), Some(size)) => refs.push((path.to_string(), size)),
                    _ => panic!("snapshot JSON: a Parquet file without path or size: {file}"),
                }
            }
        }
    }
    refs
}

/// Have the "server" of the node directory `node` hard-delete the Parquet files its newest
/// snapshot file adds: delete them and write the next snapshot file, which records them in
/// `removed_files` (as a hard delete does). Their keys, relative to the node. A node that cannot
/// be read or written panics, naming what failed (a test's own tree).
pub fn hard_delete_newest_snapshot(node: &Path) -> Vec<String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        panic!("hard delete in {}: {what}: {e}", node.display())
    };
    let snapshots = node.join("snapshots");
    // Names count down from `u64::MAX`: the newest sorts first.
    let newest = files_under(&snapshots)
        .into_iter()
        .min()
        .unwrap_or_else(|| fail("no snapshot file", &snapshots.display()));
    let bytes = std::fs::read(&newest).unwrap_or_else(|e| fail("reading the newest", &e));
    let newest: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| fail("parsing the newest", &e));
    let mut removed = Vec::new();
    for (path, _) in snapshot_parquet_refs(&newest) {
        let key = path.split_once('/').map_or(path.as_str(), |(_, key)| key);
        std::fs::remove_file(node.join(key)).unwrap_or_else(|e| fail(key, &e));
        removed.push(key.to_string());
    }
    let seq = newest["snapshot_sequence_number"]
        .as_u64()
        .unwrap_or_else(|| fail("no snapshot_sequence_number", &"in the newest"))
        + 1;
    let mut removal = newest.clone();
    removal["snapshot_sequence_number"] = seq.into();
    removal["removed_files"] = newest["databases"].clone();
    removal["databases"] = serde_json::json!([]);
    let name = snapshots.join(format!("{:020}.info.json", u64::MAX - seq));
    let json = serde_json::to_vec_pretty(&removal).unwrap_or_else(|e| fail("encoding", &e));
    std::fs::write(&name, json).unwrap_or_else(|e| fail("writing the removal", &e));
    removed
}

/// `value` as an array; anything else panics, naming `what` it should be.
fn json_array<'v>(value: &'v serde_json::Value, what: &str) -> &'v [serde_json::Value] {
    value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("snapshot JSON: {what} is not an array: {value}"))
}
