//! **Synthetic** InfluxDB 3 Enterprise cluster trees, built from the real Core fixtures.
//!
//! No Enterprise server can run here, so a cluster is assembled from the documented layout
//! (format doc §7, seed page "File structure"): the cluster catalog, `enterprise` and license
//! files under the cluster id; each data node's WAL, snapshots and Parquet under its node id,
//! siblings at the root; a compactor with `cs/`, `cd/` and `c/`. The bytes are a Core fixture's
//! real WAL, snapshot, Parquet and catalog files:
//! - every data node is a copy of the fixture's `node0` without its catalog, with `node0`
//!   replaced by the node id in snapshot and checkpoint JSON (`node_id` and every Parquet path);
//! - the cluster catalog is `node0`'s catalog moved under the cluster id: `node0` renamed to the
//!   first data node inside it (ids have the same length, so v3 record bodies keep their shape),
//!   `catalog_id` set to the cluster id (v1/v2), CRCs recomputed; then one appended log per other
//!   node, a copy of the registration log with the id and sequence changed;
//! - compactor output, license files and the `enterprise` file are placeholders (their formats
//!   are not documented); `c/` holds copies of real Parquet files;
//! - a PachaTree cluster gets an appended storage-mode log (v1/v2: a JSON `StorageMode` batch;
//!   v3: a record 25 with a placeholder body), and built-in backups are placeholder files.
//!
//! [`write_readme`] labels a generated tree as synthetic. See `crates/testkit/SYNTHETIC.md`.

use crate::fixture_data_dir;
use std::path::{Path, PathBuf};

/// The node id of every Core fixture.
const MATERIAL_NODE: &str = "node0";

/// What to build.
#[derive(Debug, Clone)]
pub struct ClusterSpec<'a> {
    /// The Core fixture whose bytes are used (e.g. `core-3.10.0-basic`).
    pub material: &'a str,
    /// Cluster id.
    pub cluster_id: &'a str,
    /// Data node ids (each 5 bytes long, like `node0`).
    pub data_nodes: Vec<&'a str>,
    /// Compactor node id (5 bytes).
    pub compactor: Option<&'a str>,
    /// Whether the compactor also holds node files (WAL, snapshots, Parquet: a node that
    /// ingests and compacts, as one in mode `all` does).
    pub compactor_ingests: bool,
    /// Storage mode to switch to (`PachaTree`), if any.
    pub storage_mode: Option<&'a str>,
    /// Names of built-in backups to place under `backups/`.
    pub builtin_backups: Vec<&'a str>,
    /// Also put a Core node (own catalog) and an unregistered node prefix beside the cluster.
    pub neighbours: bool,
}

impl<'a> ClusterSpec<'a> {
    /// Three data nodes `node1`–`node3`, compactor `comp1`, cluster `cluster1`, Parquet engine.
    pub fn standard(material: &'a str) -> Self {
        ClusterSpec {
            material,
            cluster_id: "cluster1",
            data_nodes: vec!["node1", "node2", "node3"],
            compactor: Some("comp1"),
            compactor_ingests: false,
            storage_mode: None,
            builtin_backups: Vec::new(),
            neighbours: false,
        }
    }
}

/// Build the cluster into `data_dir` (created); returns it.
pub fn build_cluster(data_dir: &Path, spec: &ClusterSpec<'_>) -> PathBuf {
    let material = fixture_data_dir(spec.material).join(MATERIAL_NODE);
    for node in &spec.data_nodes {
        assert_eq!(node.len(), MATERIAL_NODE.len(), "node ids are 5 bytes");
        copy_node_files(&material, &data_dir.join(node), node);
    }
    let cluster = data_dir.join(spec.cluster_id);
    let first = spec.data_nodes.first().copied().unwrap_or(MATERIAL_NODE);
    let catalog = build_catalog(&material, &cluster, spec.cluster_id, first);
    let others = spec.data_nodes.iter().skip(1).chain(spec.compactor.iter());
    let mut next = catalog.last_seq + 1;
    for node in others {
        assert_eq!(node.len(), MATERIAL_NODE.len(), "node ids are 5 bytes");
        catalog.append_registration(&cluster, first, node, next);
        next += 1;
    }
    if let Some(mode) = spec.storage_mode {
        catalog.append_storage_mode(&cluster, mode, next);
    }
    write(
        &cluster.join("enterprise"),
        b"synthetic enterprise configuration\n",
    );
    write(
        &cluster.join("commercial_license"),
        b"synthetic commercial license (placeholder bytes)\n",
    );
    if let Some(compactor) = spec.compactor {
        write_compactor(&material, &data_dir.join(compactor));
        if spec.compactor_ingests {
            copy_node_files(&material, &data_dir.join(compactor), compactor);
        }
    }
    for name in &spec.builtin_backups {
        let dir = cluster.join("backups").join(name);
        write(
            &dir.join("manifest.json"),
            format!("{{\"name\":\"{name}\"}}\n").as_bytes(),
        );
        write(&dir.join("data/00000001.pt"), &[7u8; 3000]);
        write(&dir.join("catalog/snapshot"), b"synthetic catalog copy\n");
    }
    if spec.neighbours {
        crate::copy_fixture(spec.material, &data_dir.join("core-neighbour-tmp"));
        std::fs::rename(
            data_dir.join("core-neighbour-tmp").join(MATERIAL_NODE),
            data_dir.join("corex"),
        )
        .expect("move the Core neighbour");
        std::fs::remove_dir_all(data_dir.join("core-neighbour-tmp")).expect("clean up");
        copy_node_files(&material, &data_dir.join("strayx"), "strayx");
    }
    data_dir.to_path_buf()
}

/// Write the README that labels a generated tree synthetic, beside its data dir.
pub fn write_readme(dir: &Path, spec: &ClusterSpec<'_>) {
    let text = format!(
        "# SYNTHETIC InfluxDB 3 Enterprise cluster (not written by an Enterprise server)\n\n\
         Built by ib3-testkit `cluster::build_cluster` from the Core fixture `{}`: cluster `{}`, \
         data nodes {:?}, compactor {:?}, storage mode {:?}, built-in backups {:?}.\n\
         The layout follows the documented Enterprise layout; WAL, snapshot, Parquet and catalog \
         bytes are the Core fixture's, rewritten for the new ids; compactor, license and \
         `enterprise` files are placeholders. See crates/testkit/SYNTHETIC.md.\n",
        spec.material,
        spec.cluster_id,
        spec.data_nodes,
        spec.compactor,
        spec.storage_mode,
        spec.builtin_backups
    );
    write(&dir.join("README.md"), text.as_bytes());
}

/// Copy a node's files except its catalog (and derived state), renaming `node0` in JSON files.
fn copy_node_files(from: &Path, to: &Path, node: &str) {
    for (relative, bytes) in walk(from) {
        let top = relative.split('/').next().unwrap_or_default();
        if matches!(
            top,
            "catalog" | "catalogs" | "_catalog_checkpoint" | "table-snapshots" | "db-indices"
        ) || relative == "table-index-conversion-completed"
        {
            continue;
        }
        let bytes = if relative.ends_with(".json") {
            rename_in_json(&bytes, node)
        } else {
            bytes
        };
        write(&to.join(&relative), &bytes);
    }
}

/// `node0` → `node` where it names the node: the `node_id` field and Parquet path prefixes.
fn rename_in_json(bytes: &[u8], node: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes)
        .replace(&format!("\"{MATERIAL_NODE}/"), &format!("\"{node}/"))
        .replace(
            &format!("\"node_id\": \"{MATERIAL_NODE}\""),
            &format!("\"node_id\": \"{node}\""),
        )
        .replace(
            &format!("\"node_id\":\"{MATERIAL_NODE}\""),
            &format!("\"node_id\":\"{node}\""),
        );
    text.into_bytes()
}

/// The cluster catalog as built: where its logs are and what they look like.
struct BuiltCatalog {
    logs_dir: PathBuf,
    v3: bool,
    last_seq: u64,
    /// The first log that registers a node (copied for the other nodes).
    registration: Vec<u8>,
}

fn build_catalog(material: &Path, cluster: &Path, cluster_id: &str, first: &str) -> BuiltCatalog {
    let mut logs_dir = None;
    let mut v3 = false;
    let mut best = (0u8, 0u64);
    let mut registration: Option<(u8, Vec<u8>)> = None;
    for (relative, bytes) in walk(material) {
        let in_catalog = relative.starts_with("catalog/")
            || relative.starts_with("catalogs/")
            || relative == "_catalog_checkpoint";
        if !in_catalog {
            continue;
        }
        let is_v3 = relative.starts_with("catalog/v3/");
        let renamed = if is_v3 {
            v3_fix(replace_bytes(&bytes, MATERIAL_NODE, first), None)
        } else {
            json_catalog_rewrite(&bytes, |json| {
                json.replace(&format!("\"{MATERIAL_NODE}\""), &format!("\"{first}\""))
                    .replace(
                        &format!("\"catalog_id\":\"{first}\""),
                        &format!("\"catalog_id\":\"{cluster_id}\""),
                    )
            })
        };
        let target = cluster.join(&relative);
        let rank = generation_rank(&relative);
        if let Some(seq) = log_seq(&relative) {
            if rank > best.0 || rank == best.0 && seq > best.1 {
                best = (rank, seq);
                logs_dir = target.parent().map(Path::to_path_buf);
                v3 = is_v3;
            }
            let registers = if is_v3 {
                v3_has_record(&renamed, 2)
            } else {
                contains(&renamed, b"RegisterNode")
            };
            if registers && registration.as_ref().is_none_or(|(r, _)| rank > *r) {
                registration = Some((rank, renamed.clone()));
            }
        }
        write(&target, &renamed);
    }
    BuiltCatalog {
        logs_dir: logs_dir.expect("the material has catalog logs"),
        v3,
        last_seq: best.1,
        registration: registration.expect("the material registers its node").1,
    }
}

impl BuiltCatalog {
    fn log_path(&self, seq: u64) -> PathBuf {
        self.logs_dir.join(format!("{seq:020}.catalog"))
    }

    /// Append a copy of the registration log naming `node` instead of `first`, as log `seq`.
    fn append_registration(&self, _cluster: &Path, first: &str, node: &str, seq: u64) {
        let bytes = if self.v3 {
            v3_fix(replace_bytes(&self.registration, first, node), Some(seq))
        } else {
            json_catalog_rewrite(&self.registration, |json| {
                let json = json.replace(&format!("\"{first}\""), &format!("\"{node}\""));
                set_sequence_number(&json, seq)
            })
        };
        write(&self.log_path(seq), &bytes);
    }

    /// Append a log that switches the storage mode, as log `seq`.
    fn append_storage_mode(&self, _cluster: &Path, mode: &str, seq: u64) {
        let bytes = if self.v3 {
            let mut template = self.registration.clone();
            v3_single_record(&mut template, 25, &[1]);
            v3_fix(template, Some(seq))
        } else {
            json_catalog_rewrite(&self.registration, |_| {
                format!(
                    "{{\"catalog_batch\":{{\"StorageMode\":{{\"time_ns\":1,\"storage_mode\":\"{mode}\"}}}},\"sequence_number\":{seq}}}"
                )
            })
        };
        write(&self.log_path(seq), &bytes);
    }
}

/// 3 for v3, 2 for v2, 1 for v1 catalog files: the newest generation is the active one.
fn generation_rank(relative: &str) -> u8 {
    if relative.starts_with("catalog/v3/") {
        3
    } else if relative.starts_with("catalog/v2/") {
        2
    } else {
        1
    }
}

fn log_seq(relative: &str) -> Option<u64> {
    let name = relative.strip_suffix(".catalog")?.rsplit('/').next()?;
    name.parse().ok()
}

fn set_sequence_number(json: &str, seq: u64) -> String {
    let key = "\"sequence_number\":";
    let Some(at) = json.rfind(key) else {
        return json.to_string();
    };
    let start = at + key.len();
    let end = json[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(json.len(), |n| start + n);
    format!("{}{seq}{}", &json[..start], &json[end..])
}

/// Rewrite the JSON payload of a v1/v2 catalog file (10-byte version id, CRC-32 BE, payload).
fn json_catalog_rewrite(bytes: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let (header, payload) = bytes.split_at(14);
    let edited = edit(&String::from_utf8_lossy(payload));
    let mut out = header[..10].to_vec();
    out.extend_from_slice(&crc32fast::hash(edited.as_bytes()).to_be_bytes());
    out.extend_from_slice(edited.as_bytes());
    out
}

/// Recompute a v3 file's payload CRC and header CRC, setting its sequence (header and records)
/// when given.
fn v3_fix(mut bytes: Vec<u8>, seq: Option<u64>) -> Vec<u8> {
    if let Some(seq) = seq {
        bytes[0x20..0x28].copy_from_slice(&seq.to_le_bytes());
        let mut at = 64 + 24 * le_u32(&bytes, 0x2C) as usize;
        for _ in 0..le_u32(&bytes, 0x28) {
            bytes[at + 4..at + 12].copy_from_slice(&seq.to_le_bytes());
            at += 16 + le_u32(&bytes, at + 12) as usize;
        }
    }
    let payload_crc = crc32fast::hash(&bytes[64..]);
    bytes[0x38..0x3C].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[0x0C..0x40]);
    bytes[0x08..0x0C].copy_from_slice(&header_crc.to_le_bytes());
    bytes
}

/// Replace a v3 log's records with one record `id` carrying `body`.
fn v3_single_record(bytes: &mut Vec<u8>, id: u16, body: &[u8]) {
    bytes.truncate(64);
    bytes.extend_from_slice(&id.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(body);
    let payload_len = (bytes.len() - 64) as u64;
    bytes[0x28..0x2C].copy_from_slice(&1u32.to_le_bytes());
    bytes[0x2C..0x30].copy_from_slice(&0u32.to_le_bytes());
    bytes[0x30..0x38].copy_from_slice(&payload_len.to_le_bytes());
}

fn v3_has_record(bytes: &[u8], id: u16) -> bool {
    let mut at = 64 + 24 * le_u32(bytes, 0x2C) as usize;
    for _ in 0..le_u32(bytes, 0x28) {
        if u16::from_le_bytes([bytes[at], bytes[at + 1]]) == id {
            return true;
        }
        at += 16 + le_u32(bytes, at + 12) as usize;
    }
    false
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Placeholder compactor output: summaries, details, and generations holding real Parquet.
fn write_compactor(material: &Path, to: &Path) {
    let parquet: Vec<(String, Vec<u8>)> = walk(material)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".parquet"))
        .take(6)
        .collect();
    for (i, (_, bytes)) in parquet.iter().enumerate() {
        write(&to.join(format!("c/1/{}/{i:010}.parquet", i % 2)), bytes);
    }
    write(&to.join("c/1/generation.json"), b"{\"generation\":1}\n");
    for seq in 1..=3u64 {
        write(
            &to.join(format!("cs/{:020}.json", u64::MAX - seq)),
            format!("{{\"summary\":{seq}}}\n").as_bytes(),
        );
        write(
            &to.join(format!("cd/1/{seq:020}.json")),
            format!("{{\"detail\":{seq}}}\n").as_bytes(),
        );
    }
}

fn replace_bytes(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut at = 0;
    while at + from.len() <= out.len() {
        if &out[at..at + from.len()] == from {
            out[at..at + from.len()].copy_from_slice(to);
            at += from.len();
        } else {
            at += 1;
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`: (relative path with `/`, bytes), sorted.
fn walk(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    walk_into(dir, "", &mut out);
    out.sort();
    out
}

fn walk_into(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}{name}");
        if entry.path().is_dir() {
            walk_into(&entry.path(), &format!("{relative}/"), out);
        } else {
            let bytes = std::fs::read(entry.path()).expect("read fixture file");
            out.push((relative, bytes));
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create directory");
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
