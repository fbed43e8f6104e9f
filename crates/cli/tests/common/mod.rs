//! Shared helpers of the CLI integration tests: run the real binary, read the real fixtures.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixtures written by real InfluxDB 3 servers (read-only).
pub fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    assert!(
        dir.is_dir(),
        "missing {}: the tests need ../shared/fixtures",
        dir.display()
    );
    dir
}

/// Names of every fixture.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("data").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 12,
        "expected the 12 fixtures, found {names:?}"
    );
    names
}

/// The data dir of a fixture.
pub fn data_dir(name: &str) -> PathBuf {
    fixtures().join(name).join("data")
}

/// Copy a fixture's data dir into `dest` (so a test may damage it).
pub fn copy_fixture(name: &str, dest: &Path) {
    copy_tree(&data_dir(name), dest);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Output of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Assert exit code 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// `create --json` of node `node0` of the data dir `data` into the repository `repo`.
pub fn create_node0(data: &Path, repo: &Path) -> Run {
    create_node0_env::<&str, &str>(data, repo, &[])
}

/// [`create_node0`] with extra environment variables.
pub fn create_node0_env<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
    data: &Path,
    repo: &Path,
    env: &[(K, V)],
) -> Run {
    run_env(&create_node0_args(data, repo), env)
}

/// The arguments of [`create_node0`].
pub fn create_node0_args<'a>(data: &'a Path, repo: &'a Path) -> [&'a str; 8] {
    [
        "create",
        "--json",
        "--data-dir",
        s(data),
        "--node-id",
        "node0",
        "--repo",
        s(repo),
    ]
}

/// [`create_node0`], which must succeed; its report.
pub fn create_json(data: &Path, repo: &Path) -> serde_json::Value {
    create_node0(data, repo).ok().json()
}

/// Run `influxdb3-backup args…` with a clean environment for the variables it reads.
pub fn run(args: &[&str]) -> Run {
    run_env::<&str, &str>(args, &[])
}

/// [`run`] with extra environment variables.
pub fn run_env<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
    args: &[&str],
    env: &[(K, V)],
) -> Run {
    let output = command(args, env).output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The command `influxdb3-backup args…`, its environment clean of the variables it reads but
/// for `env`.
pub fn command<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
    args: &[&str],
    env: &[(K, V)],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_influxdb3-backup"));
    cmd.args(args);
    for var in [
        "INFLUXDB3_OBJECT_STORE",
        "INFLUXDB3_DB_DIR",
        "INFLUXDB3_DATA_DIR",
        "INFLUXDB3_NODE_IDENTIFIER_PREFIX",
        "INFLUXDB3_NODE_ID",
        "INFLUXDB3_ENTERPRISE_CLUSTER_ID",
        "INFLUXDB3_BACKUP_REPO",
        "INFLUXDB3_BUCKET",
        "INFLUXDB3_BACKUP_PASSPHRASE",
        "INFLUXDB3_BACKUP_KEY_FILE",
        "INFLUXDB3_BACKUP_RESCAN_AFTER",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Every file under `root` (relative path → bytes), skipping the derived table-index state.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let derived = rel.starts_with("table-snapshots")
            || rel.starts_with("db-indices")
            || rel == "table-index-conversion-completed";
        if derived {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, files);
        } else {
            files.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// A path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Add `count` distinct Parquet files of 17 MiB (three parts of at most 8 MiB each when
/// streamed) to the node `node0` of the data dir `data`, each in a directory of its own.
pub fn add_large_parquet_files(data: &Path, count: u8) {
    for i in 0..count {
        let parquet = data.join(format!(
            "node0/dbs/9/9/2030-01-01/00-{i:02}/0000000001.parquet"
        ));
        std::fs::create_dir_all(parquet.parent().unwrap()).unwrap();
        std::fs::write(&parquet, [i, 1, 2, 3].repeat(17 << 18)).unwrap();
    }
}
