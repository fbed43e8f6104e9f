//! Persisted snapshot files (`snapshots/*.info.json`) and snapshot checkpoints
//! (`snapshot-checkpoints/*/*.checkpoint.json`): the fields a backup needs (format doc §2.2, §2.3).

use serde::{Deserialize, Serialize};

/// One Parquet file referenced by a snapshot or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParquetRef {
    /// Database id.
    pub db_id: u32,
    /// Table id.
    pub table_id: u32,
    /// Parquet file id.
    pub file_id: u64,
    /// Full object key as recorded, **including the node prefix** (`node0/dbs/…`).
    pub path: String,
    /// Size recorded by the server; the object must have exactly this size.
    pub size_bytes: u64,
    /// Rows in the file.
    pub row_count: u64,
    /// Minimum timestamp (ns).
    pub min_time: i64,
    /// Maximum timestamp (ns).
    pub max_time: i64,
}

/// A parsed `snapshots/*.info.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersistedSnapshot {
    /// `node_id` (alias `writer_id`).
    pub node_id: String,
    /// Snapshot sequence number.
    pub snapshot_sequence_number: u64,
    /// Last WAL file covered by snapshots up to this one.
    pub wal_file_sequence_number: u64,
    /// Catalog sequence at snapshot time.
    pub catalog_sequence_number: u64,
    /// Total Parquet bytes as recorded.
    pub parquet_size_bytes: u64,
    /// Total rows as recorded.
    pub row_count: u64,
    /// Files added (`databases`).
    pub files: Vec<ParquetRef>,
    /// Files removed by the server (`removed_files`, 3.2+; empty when absent).
    pub removed_files: Vec<ParquetRef>,
}

/// A parsed `snapshot-checkpoints/{YYYY-MM}/*.checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotCheckpoint {
    /// `node_id`.
    pub node_id: String,
    /// `YYYY-MM`.
    pub year_month: String,
    /// Last snapshot sequence number folded into this checkpoint.
    pub last_snapshot_sequence_number: u64,
    /// WAL sequence covered.
    pub wal_file_sequence_number: u64,
    /// Catalog sequence at checkpoint time.
    pub catalog_sequence_number: u64,
    /// Cumulative file set of the month.
    pub files: Vec<ParquetRef>,
    /// Removals referring to earlier months.
    pub pending_removed_files: Vec<ParquetRef>,
}

/// Parse a snapshot file; `object` names it in errors.
pub fn parse_snapshot(object: &str, bytes: &[u8]) -> crate::Result<PersistedSnapshot> {
    let mut raw: RawSnapshot<RawDatabases> = parse_versioned(object, "snapshot", bytes)?;
    let files = flatten(std::mem::take(&mut raw.databases));
    Ok(snapshot_of(raw, files))
}

/// [`parse_snapshot`] but for the Parquet files the snapshot adds, which are checked as JSON and
/// skipped (`files` is left empty): for a snapshot whose references the caller has settled
/// otherwise. Every other field, removals included, is read as `parse_snapshot` reads it.
pub fn parse_snapshot_header(object: &str, bytes: &[u8]) -> crate::Result<PersistedSnapshot> {
    let raw: RawSnapshot<serde::de::IgnoredAny> = parse_versioned(object, "snapshot", bytes)?;
    Ok(snapshot_of(raw, Vec::new()))
}

fn snapshot_of<D>(raw: RawSnapshot<D>, files: Vec<ParquetRef>) -> PersistedSnapshot {
    PersistedSnapshot {
        node_id: raw.node_id,
        snapshot_sequence_number: raw.snapshot_sequence_number,
        wal_file_sequence_number: raw.wal_file_sequence_number,
        catalog_sequence_number: raw.catalog_sequence_number,
        parquet_size_bytes: raw.parquet_size_bytes,
        row_count: raw.row_count,
        files,
        removed_files: flatten(raw.removed_files),
    }
}

/// A snapshot file's header, as a backup keeps it beside the file's entry (`facts`, DESIGN §4.3)
/// so that a later backup that takes the file over unchanged need not read it: every field of
/// [`parse_snapshot_header`] but the removals, which must be none (a snapshot that removes
/// files is read each time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// What this is and how it is written ([`HEADER_FACTS`]): facts of another kind or of a
    /// later layout are not taken.
    kind: String,
    node_id: String,
    snapshot_sequence_number: u64,
    wal_file_sequence_number: u64,
    catalog_sequence_number: u64,
    parquet_size_bytes: u64,
    row_count: u64,
}

/// The `kind` of [`SnapshotHeader`] facts; a change to their meaning takes a new one.
const HEADER_FACTS: &str = "snapshot-header/1";

impl SnapshotHeader {
    /// The header of `snapshot` (parsed whole or by [`parse_snapshot_header`]); `None` when it
    /// removes files (removals are not kept).
    pub fn of(snapshot: &PersistedSnapshot) -> Option<Self> {
        snapshot.removed_files.is_empty().then(|| SnapshotHeader {
            kind: HEADER_FACTS.to_string(),
            node_id: snapshot.node_id.clone(),
            snapshot_sequence_number: snapshot.snapshot_sequence_number,
            wal_file_sequence_number: snapshot.wal_file_sequence_number,
            catalog_sequence_number: snapshot.catalog_sequence_number,
            parquet_size_bytes: snapshot.parquet_size_bytes,
            row_count: snapshot.row_count,
        })
    }

    /// Read back from an entry's facts; `None` when they are not a header of this kind.
    pub fn from_facts(facts: &serde_json::Value) -> Option<Self> {
        let header = SnapshotHeader::deserialize(facts).ok()?;
        (header.kind == HEADER_FACTS).then_some(header)
    }

    /// As an entry's facts.
    pub fn to_facts(&self) -> serde_json::Value {
        // A struct of strings and integers: serialising it cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The snapshot as [`parse_snapshot_header`] reads it: no references, no removals.
    pub fn snapshot(&self) -> PersistedSnapshot {
        PersistedSnapshot {
            node_id: self.node_id.clone(),
            snapshot_sequence_number: self.snapshot_sequence_number,
            wal_file_sequence_number: self.wal_file_sequence_number,
            catalog_sequence_number: self.catalog_sequence_number,
            parquet_size_bytes: self.parquet_size_bytes,
            row_count: self.row_count,
            files: Vec::new(),
            removed_files: Vec::new(),
        }
    }
}

/// Parse a snapshot checkpoint file; `object` names it in errors.
pub fn parse_snapshot_checkpoint(object: &str, bytes: &[u8]) -> crate::Result<SnapshotCheckpoint> {
    let raw: RawCheckpoint = parse_versioned(object, "snapshot checkpoint", bytes)?;
    Ok(SnapshotCheckpoint {
        node_id: raw.node_id,
        year_month: raw.year_month,
        last_snapshot_sequence_number: raw.last_snapshot_sequence_number,
        wal_file_sequence_number: raw.wal_file_sequence_number,
        catalog_sequence_number: raw.catalog_sequence_number,
        files: flatten(raw.databases),
        pending_removed_files: flatten(raw.pending_removed_files),
    })
}

/// The only version tag the server writes (`PersistedSnapshotVersion::V1`, format doc §2.2).
const SUPPORTED_VERSION: &str = "1";

/// `SerdeVecMap<DbId, {tables: SerdeVecMap<TableId, Vec<ParquetFile>>}>`: arrays of `[key, value]`.
type RawDatabases = Vec<(u32, RawDatabase)>;

#[derive(Deserialize)]
struct RawDatabase {
    tables: Vec<(u32, Vec<RawParquetFile>)>,
}

#[derive(Deserialize)]
struct RawParquetFile {
    id: u64,
    path: String,
    size_bytes: u64,
    row_count: u64,
    min_time: i64,
    max_time: i64,
}

/// Fields of `PersistedSnapshot` we read; serde skips the rest. `D`: how `databases` (the files
/// the snapshot adds) is read, or skipped.
#[derive(Deserialize)]
struct RawSnapshot<D> {
    version: String,
    #[serde(alias = "writer_id")]
    node_id: String,
    snapshot_sequence_number: u64,
    wal_file_sequence_number: u64,
    catalog_sequence_number: u64,
    #[serde(default)]
    parquet_size_bytes: u64,
    #[serde(default)]
    row_count: u64,
    databases: D,
    /// Added in 3.2 (`#[serde(default)]` on the server too).
    #[serde(default)]
    removed_files: RawDatabases,
}

/// Fields of `PersistedSnapshotCheckpoint` we read (`next_file_id` may be null: not read).
#[derive(Deserialize)]
struct RawCheckpoint {
    version: String,
    #[serde(alias = "writer_id")]
    node_id: String,
    year_month: String,
    last_snapshot_sequence_number: u64,
    wal_file_sequence_number: u64,
    catalog_sequence_number: u64,
    databases: RawDatabases,
    #[serde(default)]
    pending_removed_files: RawDatabases,
}

trait Versioned {
    fn version(&self) -> &str;
}

impl<D> Versioned for RawSnapshot<D> {
    fn version(&self) -> &str {
        &self.version
    }
}

impl Versioned for RawCheckpoint {
    fn version(&self) -> &str {
        &self.version
    }
}

/// Only the tag, to explain a failed parse: serde skips every other field without building it.
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<serde_json::Value>,
}

/// Parse `bytes` as `T`, explaining failures in terms of what `what` (a snapshot, a checkpoint)
/// should look like.
fn parse_versioned<T>(object: &str, what: &str, bytes: &[u8]) -> crate::Result<T>
where
    T: for<'de> Deserialize<'de> + Versioned,
{
    let corrupt = |reason: String| crate::Error::corrupt(object, reason);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt(format!("not a {what} file: the file is empty")));
    }
    match serde_json::from_slice::<T>(bytes) {
        Ok(raw) if raw.version() == SUPPORTED_VERSION => Ok(raw),
        Ok(raw) => Err(corrupt(unsupported_version(what, raw.version()))),
        Err(e) => Err(corrupt(explain(what, bytes, &e))),
    }
}

fn unsupported_version(what: &str, version: &str) -> String {
    format!(
        "unsupported {what} format version \"{version}\" (this tool reads version \"{SUPPORTED_VERSION}\"; \
         the file was probably written by a newer InfluxDB 3 server)"
    )
}

/// Why `bytes` did not parse: a foreign version tag first (its schema may differ), else the
/// JSON error with its position.
fn explain(what: &str, bytes: &[u8], e: &serde_json::Error) -> String {
    if let Ok(VersionProbe {
        version: Some(version),
    }) = serde_json::from_slice(bytes)
    {
        match version.as_str() {
            Some(SUPPORTED_VERSION) => {}
            Some(other) => return unsupported_version(what, other),
            None => return unsupported_version(what, &version.to_string()),
        }
    }
    let kind = match e.classify() {
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Data => "unexpected content",
        serde_json::error::Category::Io => "unreadable",
    };
    // serde_json appends " at line L column C" itself; say it once, up front.
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    format!(
        "not a {what} file: {kind} at line {} column {}: {message}",
        e.line(),
        e.column()
    )
}

fn flatten(databases: RawDatabases) -> Vec<ParquetRef> {
    let mut out = Vec::new();
    for (db_id, db) in databases {
        for (table_id, files) in db.tables {
            out.extend(files.into_iter().map(|f| ParquetRef {
                db_id,
                table_id,
                file_id: f.id,
                path: f.path,
                size_bytes: f.size_bytes,
                row_count: f.row_count,
                min_time: f.min_time,
                max_time: f.max_time,
            }));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::path::testing::{fixture_objects, read, FIXTURES};
    use crate::path::{classify, snapshot_key, ObjectClass};

    fn reason<T: std::fmt::Debug>(result: crate::Result<T>) -> String {
        match result {
            Err(crate::Error::Corrupt { object, reason }) => {
                assert_eq!(object, "snapshots/x.info.json");
                reason
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    fn snapshots_of(fixture: &str) -> Vec<PersistedSnapshot> {
        fixture_objects(fixture)
            .keys()
            .filter_map(|key| match classify(key) {
                ObjectClass::Snapshot { seq } => {
                    let bytes = read(fixture, key);
                    let s = parse_snapshot(key, &bytes).unwrap();
                    assert_eq!(s.snapshot_sequence_number, seq, "{fixture}: {key}");
                    let header = parse_snapshot_header(key, &bytes).unwrap();
                    assert!(header.files.is_empty(), "{fixture}: {key}");
                    let without_files = PersistedSnapshot {
                        files: Vec::new(),
                        ..s.clone()
                    };
                    assert_eq!(header, without_files, "{fixture}: {key}");
                    assert_kept_header_reads_back(&header, fixture, key);
                    Some(s)
                }
                _ => None,
            })
            .collect()
    }

    /// A header kept as facts reads back as the header parsed; one of a snapshot that removes
    /// files is not kept; facts of another kind are not taken for a header.
    fn assert_kept_header_reads_back(header: &PersistedSnapshot, fixture: &str, key: &str) {
        let Some(kept) = SnapshotHeader::of(header) else {
            assert!(!header.removed_files.is_empty(), "{fixture}: {key}");
            return;
        };
        let facts = kept.to_facts();
        assert_eq!(facts["kind"], "snapshot-header/1");
        let back = SnapshotHeader::from_facts(&facts).unwrap();
        assert_eq!(back.snapshot(), *header, "{fixture}: {key}");
        let mut other = facts.clone();
        other["kind"] = "snapshot-header/2".into();
        assert_eq!(SnapshotHeader::from_facts(&other), None);
        assert_eq!(
            SnapshotHeader::from_facts(&serde_json::json!({"pack": 1})),
            None
        );
    }

    #[test]
    fn every_fixture_snapshot_and_checkpoint_parses() {
        for fixture in FIXTURES {
            let snapshots = snapshots_of(fixture);
            for s in &snapshots {
                assert_eq!(s.node_id, "node0");
                assert!(s.files.iter().all(|f| f.path.starts_with("node0/dbs/")));
                let bytes: u64 = s.files.iter().map(|f| f.size_bytes).sum();
                assert_eq!(
                    bytes, s.parquet_size_bytes,
                    "{fixture} {}",
                    s.snapshot_sequence_number
                );
            }
            for key in fixture_objects(fixture).keys() {
                if let ObjectClass::SnapshotCheckpoint { seq } = classify(key) {
                    let c = parse_snapshot_checkpoint(key, &read(fixture, key)).unwrap();
                    assert_eq!(c.last_snapshot_sequence_number, seq);
                    assert_eq!(c.node_id, "node0");
                    assert!(key.contains(&c.year_month));
                }
            }
        }
    }

    #[test]
    fn newest_snapshot_of_basic() {
        let snapshots = snapshots_of("core-3.10.0-basic");
        assert_eq!(snapshots.len(), 59);
        let newest = snapshots
            .iter()
            .max_by_key(|s| s.snapshot_sequence_number)
            .unwrap();
        assert_eq!(newest.snapshot_sequence_number, 59);
        assert_eq!(newest.wal_file_sequence_number, 177);
        assert_eq!(newest.catalog_sequence_number, 8);
        assert_eq!(newest.row_count, 100);
        assert_eq!(
            newest.files[0],
            ParquetRef {
                db_id: 2,
                table_id: 0,
                file_id: 292,
                path: "node0/dbs/2/0/2026-11-25/09-02/0000000177.parquet".into(),
                size_bytes: 2874,
                row_count: 1,
                min_time: 1795597379999997716,
                max_time: 1795597379999997716,
            }
        );
        assert!(newest.removed_files.is_empty());
        // Ids are unique across the node: 297 files in 59 snapshots.
        let ids: std::collections::BTreeSet<u64> = snapshots
            .iter()
            .flat_map(|s| s.files.iter().map(|f| f.file_id))
            .collect();
        assert_eq!(ids.len(), 297);
    }

    #[test]
    fn retention_snapshots_record_removals() {
        let snapshots = snapshots_of("core-3.10.0-retention");
        assert_eq!(snapshots.len(), 32);
        let removed: Vec<&ParquetRef> = snapshots.iter().flat_map(|s| &s.removed_files).collect();
        assert_eq!(removed.len(), 9);
        assert!(removed.iter().all(|f| f.db_id == 1 || f.db_id == 3));
    }

    #[test]
    fn checkpoint_of_basic() {
        let key = "snapshot-checkpoints/2026-11/18446744073709551586.checkpoint.json";
        let c = parse_snapshot_checkpoint(key, &read("core-3.10.0-basic", key)).unwrap();
        assert_eq!(c.year_month, "2026-11");
        assert_eq!(c.last_snapshot_sequence_number, 29);
        assert_eq!(c.wal_file_sequence_number, 87);
        assert_eq!(c.catalog_sequence_number, 6);
        assert_eq!(c.files.len(), 146);
        assert_eq!(
            c.files[0].path,
            "node0/dbs/1/0/2026-11-25/08-04/0000000003.parquet"
        );
        assert!(c.pending_removed_files.is_empty());
    }

    const MINIMAL: &str = r#"{"version": "1", "writer_id": "old", "next_file_id": 1,
        "snapshot_sequence_number": 3, "wal_file_sequence_number": 9,
        "catalog_sequence_number": 2, "parquet_size_bytes": 10, "row_count": 1,
        "min_time": 0, "max_time": 1,
        "databases": [[7, {"tables": [[4, [{"id": 5, "path": "old/dbs/7/4/f.parquet",
            "size_bytes": 10, "row_count": 1, "chunk_time": 0, "min_time": 0, "max_time": 1}]]]}]]}"#;

    #[test]
    fn old_snapshots_without_removed_files_and_with_writer_id() {
        let s = parse_snapshot("snapshots/x.info.json", MINIMAL.as_bytes()).unwrap();
        assert_eq!(s.node_id, "old");
        assert_eq!(
            (s.snapshot_sequence_number, s.wal_file_sequence_number),
            (3, 9)
        );
        assert_eq!(s.files.len(), 1);
        assert_eq!(
            (s.files[0].db_id, s.files[0].table_id, s.files[0].file_id),
            (7, 4, 5)
        );
        assert!(s.removed_files.is_empty());
    }

    #[test]
    fn checkpoint_with_null_next_file_id() {
        let json = r#"{"version": "1", "node_id": "n", "year_month": "2026-01",
            "last_snapshot_sequence_number": 4, "next_file_id": null,
            "wal_file_sequence_number": 8, "catalog_sequence_number": 2,
            "parquet_size_bytes": 0, "row_count": 0, "min_time": 0, "max_time": 0,
            "databases": [],
            "pending_removed_files": [[1, {"tables": [[2, [{"id": 5, "path": "n/dbs/1/2/f.parquet",
                "size_bytes": 10, "row_count": 1, "chunk_time": 0, "min_time": 0, "max_time": 1}]]]}]]}"#;
        let c = parse_snapshot_checkpoint("c", json.as_bytes()).unwrap();
        assert_eq!(c.last_snapshot_sequence_number, 4);
        assert!(c.files.is_empty());
        assert_eq!(c.pending_removed_files[0].path, "n/dbs/1/2/f.parquet");
        assert_eq!(c.pending_removed_files[0].table_id, 2);
    }

    #[test]
    fn broken_inputs_are_explained() {
        let parse = |s: &str| reason(parse_snapshot("snapshots/x.info.json", s.as_bytes()));
        assert_eq!(parse(""), "not a snapshot file: the file is empty");
        let r = parse("{\n  \"version\": \"1\",\n    oops }");
        assert!(
            r.starts_with("not a snapshot file: invalid JSON at line 3 column 5: "),
            "{r}"
        );
        assert!(!r.ends_with("column 5"), "{r}");
        let r = parse(&MINIMAL[..MINIMAL.len() / 2]);
        assert!(
            r.starts_with("not a snapshot file: truncated JSON at line"),
            "{r}"
        );
        let r = parse(&MINIMAL.replace("\"writer_id\"", "\"someone\""));
        assert!(
            r.contains("unexpected content") && r.contains("missing field `node_id`"),
            "{r}"
        );
        let r = parse(&MINIMAL.replace("\"version\": \"1\"", "\"version\": \"2\""));
        assert!(
            r.starts_with("unsupported snapshot format version \"2\""),
            "{r}"
        );
        // A newer version with an incompatible schema is still named by its version.
        let r = parse(r#"{"version": "7", "something": "else"}"#);
        assert!(
            r.starts_with("unsupported snapshot format version \"7\""),
            "{r}"
        );
        let r = parse("[1, 2]");
        assert!(
            r.starts_with("not a snapshot file: unexpected content"),
            "{r}"
        );
        let r = reason(parse_snapshot("snapshots/x.info.json", &[0xff, 0x00, 0x12]));
        assert!(
            r.starts_with("not a snapshot file: invalid JSON at line 1 column 1"),
            "{r}"
        );
        let r = reason(parse_snapshot_checkpoint(
            "snapshots/x.info.json",
            MINIMAL.as_bytes(),
        ));
        assert!(
            r.contains("not a snapshot checkpoint file") && r.contains("year_month"),
            "{r}"
        );
    }

    #[test]
    fn snapshot_key_matches_parsed_sequence() {
        let key = snapshot_key(59);
        let s = parse_snapshot(&key, &read("core-3.9.6-basic", &key)).unwrap();
        assert_eq!(s.snapshot_sequence_number, 59);
        assert_eq!(s.wal_file_sequence_number, 177);
    }
}
