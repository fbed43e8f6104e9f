//! Catalog files of the three generations: v1/v2 (10-byte version id + CRC-32 BE + JSON) and
//! v3 (binary `IDB3`, 64-byte little-endian header with header and payload CRCs). We read the
//! sequence number, the catalog uuid where the file carries it, and (v1/v2, best effort) the
//! database and table names for `inspect` (format doc §2.6, §2.7).

use crate::path::{catalog_log_seq_from_name, CatalogGeneration};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Log or checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogFileKind {
    /// Immutable log file.
    Log,
    /// Checkpoint (`snapshot`), overwritten in place.
    Checkpoint,
}

/// What a catalog file's header (and, for v1/v2, its JSON) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogFileInfo {
    /// Generation the file belongs to.
    pub generation: CatalogGeneration,
    /// Log or checkpoint.
    pub kind: CatalogFileKind,
    /// Version id: `idb3.003.l`, `idb3.004.s`, `IDB3 v1`, ….
    pub version_id: String,
    /// Catalog sequence number (v1/v2 logs: `sequence_number`; checkpoints: `sequence`; v3: header).
    pub sequence: u64,
    /// Catalog uuid (v3 headers and v2 checkpoints) in canonical hyphenated form.
    pub catalog_uuid: Option<String>,
    /// Whether this is an `idb3.EOF.l` end marker left by a layout migration.
    pub end_marker: bool,
}

/// Parse a catalog file's header (and JSON envelope for v1/v2), checking magic and CRCs.
///
/// Files whose content does not carry a sequence take it from their name (`object`'s
/// `{seq:020}.catalog`): `idb3.EOF.l` end markers and pre-GA bitcode logs (`idb3.001.l`). A
/// bitcode checkpoint (`idb3.001.s`) is not decoded and reports sequence 0 and no uuid.
pub fn parse_catalog_file(
    object: &str,
    generation: CatalogGeneration,
    kind: CatalogFileKind,
    bytes: &[u8],
) -> crate::Result<CatalogFileInfo> {
    match generation {
        CatalogGeneration::V1 | CatalogGeneration::V2 => {
            parse_versioned_file(object, generation, kind, bytes)
        }
        CatalogGeneration::V3 => parse_v3_file(object, kind, bytes),
    }
}

/// What a catalog file says about an Enterprise cluster: the nodes it registers and the storage
/// engine it selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// Node ids registered by this file (v1/v2 JSON: exact).
    pub registered_nodes: Vec<String>,
    /// Bodies of v3 `RegisterNode` records (bitcode, not decoded; searched for node ids).
    pub register_records: Vec<Vec<u8>>,
    /// The storage mode this file sets, if it sets one: `PachaTree`, `ParquetAndPachaTree`,
    /// `Parquet`, or `undecoded` (a v3 `SetStorageMode` record, whose body is not decoded).
    pub storage_mode: Option<String>,
}

/// v3 record id of `RegisterNode` (`format/record_ids.rs`).
const V3_REGISTER_NODE: u16 = 2;
/// v3 record id of `SetStorageMode`.
const V3_SET_STORAGE_MODE: u16 = 25;

/// Read the cluster facts of one catalog file (already known to be of `generation` and `kind`).
/// Pre-GA bitcode files yield nothing.
pub fn cluster_facts(
    object: &str,
    generation: CatalogGeneration,
    kind: CatalogFileKind,
    bytes: &[u8],
) -> crate::Result<ClusterFacts> {
    let mut facts = ClusterFacts::default();
    if generation == CatalogGeneration::V3 {
        parse_v3_file(object, kind, bytes)?;
        for (id, body) in v3_records(object, bytes)? {
            match id {
                V3_REGISTER_NODE => facts.register_records.push(body.to_vec()),
                V3_SET_STORAGE_MODE => facts.storage_mode = Some(v3_storage_mode(body).into()),
                _ => {}
            }
        }
        return Ok(facts);
    }
    let Payload::Json(json) = open_versioned(object, kind, bytes)?.payload else {
        return Ok(facts);
    };
    let value = json_value(object, json)?;
    match kind {
        CatalogFileKind::Checkpoint => {
            facts.storage_mode = value.get("storage_mode").map(storage_mode_name);
            if let Some(nodes) = value.pointer("/nodes/repo").and_then(|v| v.as_array()) {
                for pair in nodes {
                    if let Some(id) = pair.pointer("/1/node_id").and_then(|v| v.as_str()) {
                        facts.registered_nodes.push(id.to_string());
                    }
                }
            }
        }
        CatalogFileKind::Log => {
            let batch = value.get("catalog_batch");
            if let Some(mode) = batch.and_then(|b| b.get("StorageMode")) {
                facts.storage_mode = Some(storage_mode_name(mode));
            }
            let ops = batch
                .and_then(|b| b.pointer("/Node/ops"))
                .and_then(|v| v.as_array());
            for op in ops.into_iter().flatten() {
                if let Some(id) = op.pointer("/RegisterNode/node_id").and_then(|v| v.as_str()) {
                    facts.registered_nodes.push(id.to_string());
                }
            }
        }
    }
    Ok(facts)
}

/// The mode a v3 `SetStorageMode` body sets. A fresh 3.10 Core checkpoint (fixture
/// `core-3.10.0-basic`) holds this record with the one-byte body `00` for `Parquet`; 1 and 2 are
/// taken to be the next variants in declaration order (`PachaTree`, `ParquetAndPachaTree`,
/// format doc §7). Any other body is `undecoded`, which callers treat as not Parquet.
pub fn v3_storage_mode(body: &[u8]) -> &'static str {
    match body {
        [0] => "Parquet",
        [1] => "PachaTree",
        [2] => "ParquetAndPachaTree",
        _ => "undecoded",
    }
}

/// The storage mode named anywhere in a JSON value (`"PachaTree"`, `{"mode": "PachaTree"}`, …);
/// a value naming none of the known modes is `undecoded`.
fn storage_mode_name(value: &serde_json::Value) -> String {
    let text = value.to_string();
    ["ParquetAndPachaTree", "PachaTree", "Parquet"]
        .into_iter()
        .find(|mode| text.contains(mode))
        .unwrap_or("undecoded")
        .to_string()
}

/// Whether a v3 `RegisterNode` record body names `node_id`. The body is bitcode, not decoded:
/// the id is looked for as its bytes preceded by its length (how the 3.10 fixtures encode it),
/// or in the recorded command line (`"node-id":"…"`).
pub fn v3_record_names_node(body: &[u8], node_id: &str) -> bool {
    let id = node_id.as_bytes();
    let Ok(len) = u8::try_from(id.len()) else {
        return false;
    };
    let mut prefixed = vec![len];
    prefixed.extend_from_slice(id);
    let quoted = format!("\"node-id\":\"{node_id}\"");
    contains(body, &prefixed) || contains(body, quoted.as_bytes())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Length of a v3 record header: u16 id, u16 flags, u64 sequence, u32 body length.
const V3_RECORD_HEADER_LEN: usize = 16;
/// Length of a legacy group-index entry at the start of a v3 snapshot payload.
const V3_GROUP_ENTRY_LEN: usize = 24;

/// The records of a v3 file (already checked by [`parse_v3_file`]): (record id, body).
fn v3_records<'a>(object: &str, bytes: &'a [u8]) -> crate::Result<Vec<(u16, &'a [u8])>> {
    let corrupt = |reason: &str| crate::Error::corrupt(object, reason.to_string());
    let Some((header, payload)) = bytes.split_first_chunk::<V3_HEADER_LEN>() else {
        return Err(corrupt("truncated catalog file"));
    };
    let count = le_u32(header, 0x28) as usize;
    let groups = le_u32(header, 0x2C) as usize;
    let mut at = groups
        .checked_mul(V3_GROUP_ENTRY_LEN)
        .filter(|&n| n <= payload.len())
        .ok_or_else(|| corrupt("catalog group index runs past the payload"))?;
    let mut records = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Some(record_header) = payload.get(at..at + V3_RECORD_HEADER_LEN) else {
            return Err(corrupt("catalog record header runs past the payload"));
        };
        let id = u16::from_le_bytes([record_header[0], record_header[1]]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&record_header[12..16]);
        let start = at + V3_RECORD_HEADER_LEN;
        let end = start + u32::from_le_bytes(len) as usize;
        let Some(body) = payload.get(start..end) else {
            return Err(corrupt("catalog record body runs past the payload"));
        };
        records.push((id, body));
        at = end;
    }
    Ok(records)
}

/// A database as the catalog names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseInfo {
    /// Database id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Soft- or hard-deleted.
    pub deleted: bool,
    /// Tables.
    pub tables: Vec<TableInfo>,
}

/// A table as the catalog names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Table id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Deleted.
    pub deleted: bool,
}

/// Databases and tables from a v1/v2 checkpoint plus the logs after it (in sequence order).
/// Returns `Ok(None)` for v3 (binary records are not decoded).
pub fn catalog_schema(
    generation: CatalogGeneration,
    checkpoint: Option<&[u8]>,
    logs: &[&[u8]],
) -> crate::Result<Option<Vec<DatabaseInfo>>> {
    if generation == CatalogGeneration::V3 {
        return Ok(None);
    }
    let mut schema = Schema::default();
    if let Some(bytes) = checkpoint {
        let file = open_versioned("catalog checkpoint", CatalogFileKind::Checkpoint, bytes)?;
        match file.payload {
            Payload::Json(json) => schema.load_checkpoint(&json_value("catalog checkpoint", json)?),
            // Pre-GA bitcode catalogs: names are not decodable.
            Payload::Bitcode | Payload::EndMarker => return Ok(None),
        }
    }
    for (i, bytes) in logs.iter().enumerate() {
        let object = format!("catalog log #{} of {}", i + 1, logs.len());
        match open_versioned(&object, CatalogFileKind::Log, bytes)?.payload {
            Payload::Json(json) => schema.apply_log(&json_value(&object, json)?),
            Payload::EndMarker => {}
            Payload::Bitcode => return Ok(None),
        }
    }
    Ok(Some(schema.into_databases()))
}

// ---- v1/v2: 10-byte version id, CRC-32 (BE) of the payload, payload ----

/// Length of the v1/v2 header: version id plus CRC.
const VERSIONED_HEADER_LEN: usize = 14;

/// The payload of a v1/v2 file, by what its version id says it is.
enum Payload<'a> {
    /// `idb3.001.*`: bitcode (pre-GA betas), not decoded.
    Bitcode,
    /// `idb3.002.*` … `idb3.004.*`: JSON.
    Json(&'a [u8]),
    /// `idb3.EOF.l`: the layout moved on; the payload (JSON `null`) carries nothing.
    EndMarker,
}

struct VersionedFile<'a> {
    version_id: String,
    payload: Payload<'a>,
}

/// Check a v1/v2 file's version id (against `kind`) and CRC.
fn open_versioned<'a>(
    object: &str,
    kind: CatalogFileKind,
    bytes: &'a [u8],
) -> crate::Result<VersionedFile<'a>> {
    let corrupt = |reason: String| crate::Error::corrupt(object, reason);
    let Some((header, body)) = bytes.split_first_chunk::<VERSIONED_HEADER_LEN>() else {
        return Err(corrupt(format!(
            "truncated catalog file ({} bytes; a catalog file starts with a 10-byte version id \
             and a 4-byte CRC)",
            bytes.len()
        )));
    };
    let id = &header[..10];
    let version_id = String::from_utf8_lossy(id).into_owned();
    let (number, kind_char) = match (id.strip_prefix(b"idb3."), id.get(8)) {
        (Some(rest), Some(b'.')) if matches!(id[9], b'l' | b's') => (&rest[..3], id[9]),
        _ => {
            return Err(corrupt(format!(
                "not a catalog file: bad version id \"{}\" (expected idb3.00N.l or idb3.00N.s)",
                id.escape_ascii()
            )))
        }
    };
    let file_kind = if kind_char == b'l' {
        CatalogFileKind::Log
    } else {
        CatalogFileKind::Checkpoint
    };
    if file_kind != kind {
        return Err(corrupt(format!(
            "expected a catalog {} but the version id {version_id} marks a {}",
            kind_name(kind),
            kind_name(file_kind)
        )));
    }
    let payload = match (number, kind_char) {
        (b"EOF", b'l') => Payload::EndMarker,
        (b"001", _) => Payload::Bitcode,
        (b"002" | b"003" | b"004", _) => Payload::Json(body),
        _ => {
            return Err(corrupt(format!(
                "unsupported catalog version id {version_id} (this tool reads idb3.001 to \
                 idb3.004 and idb3.EOF.l; written by a newer server?)"
            )))
        }
    };
    let stored = u32::from_be_bytes([header[10], header[11], header[12], header[13]]);
    check_crc(object, "catalog file", stored, body)?;
    Ok(VersionedFile {
        version_id,
        payload,
    })
}

fn kind_name(kind: CatalogFileKind) -> &'static str {
    match kind {
        CatalogFileKind::Log => "log",
        CatalogFileKind::Checkpoint => "checkpoint",
    }
}

/// The fields of a JSON log (`OrderedCatalogBatch`) we read.
#[derive(Deserialize)]
struct LogEnvelope {
    sequence_number: Option<u64>,
}

/// The fields of a JSON checkpoint we read; `catalog_uuid` is absent in early versions.
#[derive(Deserialize)]
struct CheckpointEnvelope {
    sequence: u64,
    catalog_uuid: Option<String>,
}

fn parse_versioned_file(
    object: &str,
    generation: CatalogGeneration,
    kind: CatalogFileKind,
    bytes: &[u8],
) -> crate::Result<CatalogFileInfo> {
    let file = open_versioned(object, kind, bytes)?;
    let mut info = CatalogFileInfo {
        generation,
        kind,
        version_id: file.version_id,
        sequence: 0,
        catalog_uuid: None,
        end_marker: false,
    };
    match (file.payload, kind) {
        (Payload::EndMarker, _) => {
            info.end_marker = true;
            info.sequence = sequence_from_name(object)?;
        }
        (Payload::Bitcode, CatalogFileKind::Log) => info.sequence = sequence_from_name(object)?,
        // A bitcode checkpoint is not decoded: sequence 0 makes every log after it required,
        // which is the safe reading.
        (Payload::Bitcode, CatalogFileKind::Checkpoint) => {}
        (Payload::Json(json), CatalogFileKind::Log) => {
            let envelope: LogEnvelope = json_payload(object, json)?;
            info.sequence = match envelope.sequence_number {
                Some(seq) => check_name_matches(object, seq)?,
                None => sequence_from_name(object)?,
            };
        }
        (Payload::Json(json), CatalogFileKind::Checkpoint) => {
            let envelope: CheckpointEnvelope = json_payload(object, json)?;
            info.sequence = envelope.sequence;
            info.catalog_uuid = envelope.catalog_uuid.map(|u| u.to_ascii_lowercase());
        }
    }
    Ok(info)
}

/// The sequence a log's file name (`{seq:020}.catalog`) carries.
fn sequence_from_name(object: &str) -> crate::Result<u64> {
    catalog_log_seq_from_name(object).ok_or_else(|| {
        crate::Error::corrupt(
            object,
            "cannot tell this catalog log's sequence: its content does not carry one and its \
             name is not {sequence:020}.catalog",
        )
    })
}

/// A log whose content disagrees with its name was renamed or overwritten: the server loads logs
/// by name, so it would apply the wrong change.
fn check_name_matches(object: &str, seq: u64) -> crate::Result<u64> {
    match catalog_log_seq_from_name(object) {
        Some(named) if named != seq => Err(crate::Error::corrupt(
            object,
            format!("catalog log named sequence {named} holds sequence {seq}"),
        )),
        _ => Ok(seq),
    }
}

fn json_payload<T: for<'de> Deserialize<'de>>(object: &str, json: &[u8]) -> crate::Result<T> {
    serde_json::from_slice(json).map_err(|e| {
        crate::Error::corrupt(
            object,
            format!("catalog file payload is not the expected JSON: {e}"),
        )
    })
}

fn json_value(object: &str, json: &[u8]) -> crate::Result<serde_json::Value> {
    json_payload(object, json)
}

// ---- v3: binary, 64-byte little-endian header ----

/// Length of the v3 header.
const V3_HEADER_LEN: usize = 64;
/// The v3 magic.
const V3_MAGIC: &[u8; 4] = b"IDB3";
/// The only v3 format version (`format/mod.rs`).
const V3_FORMAT_VERSION: u32 = 1;
/// Header flag: the file is a snapshot (checkpoint).
const V3_FLAG_SNAPSHOT: u16 = 0x0001;

fn parse_v3_file(
    object: &str,
    kind: CatalogFileKind,
    bytes: &[u8],
) -> crate::Result<CatalogFileInfo> {
    let corrupt = |reason: String| Err(crate::Error::corrupt(object, reason));
    let Some((header, payload)) = bytes.split_first_chunk::<V3_HEADER_LEN>() else {
        return corrupt(format!(
            "truncated catalog file ({} bytes; a v3 catalog file has a 64-byte header)",
            bytes.len()
        ));
    };
    if &header[..4] != V3_MAGIC {
        return corrupt(format!(
            "not a v3 catalog file: bad magic \"{}\" (expected \"IDB3\")",
            header[..4].escape_ascii()
        ));
    }
    let version = le_u32(header, 0x04);
    if version != V3_FORMAT_VERSION {
        return corrupt(format!(
            "unsupported v3 catalog format version {version} (this tool reads version 1; written \
             by a newer server?)"
        ));
    }
    check_crc(
        object,
        "catalog header",
        le_u32(header, 0x08),
        &header[0x0C..],
    )?;
    let file_kind = if le_u16(header, 0x0C) & V3_FLAG_SNAPSHOT != 0 {
        CatalogFileKind::Checkpoint
    } else {
        CatalogFileKind::Log
    };
    if file_kind != kind {
        return corrupt(format!(
            "expected a catalog {} but the header marks a {}",
            kind_name(kind),
            kind_name(file_kind)
        ));
    }
    let payload_len = le_u64(header, 0x30);
    if payload_len != payload.len() as u64 {
        return corrupt(format!(
            "catalog payload length mismatch: header says {payload_len} bytes, the file has {} \
             after the header (truncated or overwritten)",
            payload.len()
        ));
    }
    check_crc(object, "catalog payload", le_u32(header, 0x38), payload)?;
    let sequence = le_u64(header, 0x20);
    if kind == CatalogFileKind::Log {
        check_name_matches(object, sequence)?;
    }
    Ok(CatalogFileInfo {
        generation: CatalogGeneration::V3,
        kind,
        version_id: format!("IDB3 v{version}"),
        sequence,
        catalog_uuid: Some(v3_uuid(header)),
        end_marker: false,
    })
}

/// The writer stores `uuid.as_u128().to_le_bytes()` and the loader reads it back with
/// `Uuid::from_u128`, so the canonical bytes are 0x10..0x20 reversed (format doc §2.7; the
/// fixtures agree: an upgraded node's v3 header matches its v2 checkpoint's `catalog_uuid`).
fn v3_uuid(header: &[u8; V3_HEADER_LEN]) -> String {
    let hex: String = header[0x10..0x20]
        .iter()
        .rev()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn le_u16(h: &[u8; V3_HEADER_LEN], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

fn le_u32(h: &[u8; V3_HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

fn le_u64(h: &[u8; V3_HEADER_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

fn check_crc(object: &str, what: &str, stored: u32, content: &[u8]) -> crate::Result<()> {
    let actual = crc32fast::hash(content);
    if stored == actual {
        return Ok(());
    }
    Err(crate::Error::corrupt(
        object,
        format!(
            "{what} CRC mismatch: header says {stored:#010x}, content hashes to {actual:#010x} \
             (file is corrupt)"
        ),
    ))
}

// ---- v1/v2 schema: checkpoint `databases.repo`, then log ops ----

#[derive(Default)]
struct Schema {
    databases: BTreeMap<u32, (DatabaseInfo, BTreeMap<u32, TableInfo>)>,
}

impl Schema {
    /// `databases.repo`: `[[id, {name, deleted, tables: {repo: [[id, {table_name, deleted}]]}}]]`.
    fn load_checkpoint(&mut self, checkpoint: &Value) {
        for (id, db) in repo(&checkpoint["databases"]) {
            let Some(name) = db["name"].as_str() else {
                continue;
            };
            self.create_database(id, name);
            if db["deleted"].as_bool() == Some(true) {
                self.delete_database(id);
            }
            for (table_id, table) in repo(&db["tables"]) {
                let Some(table_name) = table["table_name"].as_str() else {
                    continue;
                };
                self.create_table(id, table_id, table_name);
                if table["deleted"].as_bool() == Some(true) {
                    self.delete_table(id, table_id);
                }
            }
        }
    }

    /// `{"catalog_batch": {"Database": {database_id, database_name, ops}} | {"Delete": {ops}} | …}`.
    fn apply_log(&mut self, log: &Value) {
        let batch = &log["catalog_batch"];
        if let Some(db_batch) = batch.get("Database") {
            if let (Some(id), Some(name)) = (
                as_id(&db_batch["database_id"]),
                db_batch["database_name"].as_str(),
            ) {
                self.ensure_database(id, name);
            }
            for op in ops(db_batch) {
                self.apply_database_op(op);
            }
        }
        if let Some(delete_batch) = batch.get("Delete") {
            for op in ops(delete_batch) {
                self.apply_delete_op(op);
            }
        }
    }

    fn apply_database_op(&mut self, (name, body): (&str, &Value)) {
        let db = as_id(&body["database_id"]);
        let table = as_id(&body["table_id"]);
        match (name, db, table) {
            ("CreateDatabase", Some(db), _) => {
                if let Some(db_name) = body["database_name"].as_str() {
                    self.create_database(db, db_name);
                }
            }
            ("SoftDeleteDatabase", Some(db), _) => self.delete_database(db),
            ("CreateTable", Some(db), Some(table)) => {
                if let Some(table_name) = body["table_name"].as_str() {
                    self.create_table(db, table, table_name);
                }
            }
            ("SoftDeleteTable", Some(db), Some(table)) => self.delete_table(db, table),
            // Columns, caches, triggers, retention: not part of the names report.
            _ => {}
        }
    }

    /// Hard deletes: `{"DeleteDatabase": db}`, `{"DeleteTable": [db, table]}`. The server drops
    /// the entry; we keep it, marked deleted, so the report can say what happened to the ids.
    fn apply_delete_op(&mut self, (name, body): (&str, &Value)) {
        match name {
            "DeleteDatabase" => {
                if let Some(db) = as_id(body) {
                    self.delete_database(db);
                }
            }
            "DeleteTable" => {
                if let (Some(db), Some(table)) = (as_id(&body[0]), as_id(&body[1])) {
                    self.delete_table(db, table);
                }
            }
            _ => {}
        }
    }

    fn ensure_database(&mut self, id: u32, name: &str) {
        if !self.databases.contains_key(&id) {
            self.create_database(id, name);
        }
    }

    fn create_database(&mut self, id: u32, name: &str) {
        let entry = self.databases.entry(id).or_insert_with(|| {
            let info = DatabaseInfo {
                id,
                name: String::new(),
                deleted: false,
                tables: Vec::new(),
            };
            (info, BTreeMap::new())
        });
        entry.0.name = name.to_string();
        entry.0.deleted = false;
    }

    fn delete_database(&mut self, id: u32) {
        if let Some((db, _)) = self.databases.get_mut(&id) {
            db.deleted = true;
        }
    }

    fn create_table(&mut self, db: u32, id: u32, name: &str) {
        if let Some((_, tables)) = self.databases.get_mut(&db) {
            let table = TableInfo {
                id,
                name: name.to_string(),
                deleted: false,
            };
            tables.insert(id, table);
        }
    }

    fn delete_table(&mut self, db: u32, id: u32) {
        if let Some(table) = self
            .databases
            .get_mut(&db)
            .and_then(|(_, t)| t.get_mut(&id))
        {
            table.deleted = true;
        }
    }

    fn into_databases(self) -> Vec<DatabaseInfo> {
        self.databases
            .into_values()
            .map(|(mut db, tables)| {
                db.tables = tables.into_values().collect();
                db
            })
            .collect()
    }
}

/// A `Repository` serialised as `{"repo": [[id, value], …]}`.
fn repo(value: &Value) -> impl Iterator<Item = (u32, &Value)> {
    value["repo"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|pair| Some((as_id(&pair[0])?, &pair[1])))
}

/// A batch's `ops`: externally tagged enums, `{"OpName": body}`.
fn ops(batch: &Value) -> impl Iterator<Item = (&str, &Value)> {
    batch["ops"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|op| op.as_object())
        .flat_map(|op| op.iter().map(|(name, body)| (name.as_str(), body)))
}

fn as_id(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|id| u32::try_from(id).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::path::testing::{fixture_objects, read, FIXTURES};
    use crate::path::{catalog_checkpoint_key, catalog_log_key, classify, ObjectClass};
    use CatalogFileKind::*;
    use CatalogGeneration::*;

    const V3_LOG_9: &str = "catalog/v3/logs/00000000000000000009.catalog";

    fn reason<T: std::fmt::Debug>(result: crate::Result<T>) -> String {
        match result {
            Err(crate::Error::Corrupt { reason, .. }) => reason,
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    /// A v1/v2 file: version id, CRC-32 BE, payload.
    fn versioned(id: &[u8; 10], payload: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Parse every catalog file of a fixture, keyed like the store.
    fn catalog_files(fixture: &str) -> BTreeMap<String, CatalogFileInfo> {
        let mut out = BTreeMap::new();
        for key in fixture_objects(fixture).keys() {
            let (generation, kind) = match classify(key) {
                ObjectClass::CatalogLog { generation, .. } => (generation, Log),
                ObjectClass::CatalogCheckpoint { generation } => (generation, Checkpoint),
                _ => continue,
            };
            let info = parse_catalog_file(key, generation, kind, &read(fixture, key))
                .unwrap_or_else(|e| panic!("{fixture}: {e}"));
            assert_eq!((info.generation, info.kind), (generation, kind));
            out.insert(key.clone(), info);
        }
        out
    }

    #[test]
    fn every_fixture_catalog_file_parses() {
        for fixture in FIXTURES {
            let files = catalog_files(fixture);
            assert!(!files.is_empty(), "{fixture}");
            for (key, info) in &files {
                if let ObjectClass::CatalogLog { seq, .. } = classify(key) {
                    assert_eq!(info.sequence, seq, "{fixture}: {key}");
                }
                // Every checkpoint the fixtures hold names its uuid, v1 (3.3) included.
                if info.kind == Checkpoint {
                    assert!(info.catalog_uuid.is_some(), "{fixture}: {key}");
                }
            }
            // All files of one generation that carry a uuid agree.
            for generation in [V1, V2, V3] {
                let uuids: std::collections::BTreeSet<&String> = files
                    .values()
                    .filter(|i| i.generation == generation)
                    .filter_map(|i| i.catalog_uuid.as_ref())
                    .collect();
                assert!(uuids.len() <= 1, "{fixture} {generation:?}: {uuids:?}");
            }
        }
    }

    #[test]
    fn v3_header_of_basic() {
        let files = catalog_files("core-3.10.0-basic");
        let uuid = "54951fa1-cf60-4a90-b5b8-d2a9f41d506a";
        assert_eq!(
            files[V3_LOG_9],
            CatalogFileInfo {
                generation: V3,
                kind: Log,
                version_id: "IDB3 v1".into(),
                sequence: 9,
                catalog_uuid: Some(uuid.into()),
                end_marker: false,
            }
        );
        let snapshot = &files["catalog/v3/snapshot"];
        assert_eq!((snapshot.kind, snapshot.sequence), (Checkpoint, 0));
        assert_eq!(files.len(), 10);
        assert!(files
            .values()
            .all(|i| i.catalog_uuid.as_deref() == Some(uuid)));
    }

    #[test]
    fn v3_uuid_matches_the_migrated_v2_uuid() {
        let files = catalog_files("core-3.9.6-upgraded-3.10.0");
        let v2 = &files[catalog_checkpoint_key(V2)];
        let v3 = &files[catalog_checkpoint_key(V3)];
        assert_eq!(
            v2.catalog_uuid.as_deref(),
            Some("e616bb1a-d88b-4442-b498-c9b0f79aeabd")
        );
        assert_eq!(v3.catalog_uuid, v2.catalog_uuid);
        assert_eq!(v3.sequence, 7);
        let marker = &files[&catalog_log_key(V2, 8)];
        assert!(marker.end_marker);
        assert_eq!(
            (marker.sequence, marker.version_id.as_str()),
            (8, "idb3.EOF.l")
        );
    }

    #[test]
    fn v1_files_and_end_marker() {
        let files = catalog_files("core-3.3.0-upgraded-3.9.6");
        let v1 = &files[catalog_checkpoint_key(V1)];
        assert_eq!((v1.version_id.as_str(), v1.sequence), ("idb3.003.s", 0));
        assert_eq!(
            v1.catalog_uuid.as_deref(),
            Some("85dc77af-e4c2-4f3d-a302-835e4341d61b")
        );
        let marker = &files[&catalog_log_key(V1, 8)];
        assert!(marker.end_marker && marker.sequence == 8 && marker.catalog_uuid.is_none());
        let log = &files[&catalog_log_key(V1, 7)];
        assert_eq!(
            (log.version_id.as_str(), log.end_marker),
            ("idb3.003.l", false)
        );
        let v2 = &files[catalog_checkpoint_key(V2)];
        assert_eq!((v2.version_id.as_str(), v2.sequence), ("idb3.004.s", 7));
        assert_eq!(v2.catalog_uuid, v1.catalog_uuid);
    }

    #[test]
    fn broken_v1_v2_files() {
        let log = read(
            "core-3.9.6-basic",
            "catalog/v2/logs/00000000000000000004.catalog",
        );
        let key = "catalog/v2/logs/00000000000000000004.catalog";
        let parse = |kind, bytes: &[u8]| reason(parse_catalog_file(key, V2, kind, bytes));
        assert!(parse(Log, &log[..13]).starts_with("truncated catalog file (13 bytes"));
        let r = parse(Checkpoint, &log);
        assert_eq!(
            r,
            "expected a catalog checkpoint but the version id idb3.004.l marks a log"
        );
        let mut flipped = log.clone();
        flipped[40] ^= 0x20;
        let r = parse(Log, &flipped);
        assert!(
            r.starts_with("catalog file CRC mismatch: header says 0x"),
            "{r}"
        );
        assert!(r.ends_with("(file is corrupt)"), "{r}");
        let r = parse(Log, &log[..log.len() - 1]);
        assert!(r.contains("CRC mismatch"), "{r}");
        let r = parse(Log, &versioned(b"IDB3.004.l", b"{}"));
        assert!(
            r.starts_with("not a catalog file: bad version id \"IDB3.004.l\""),
            "{r}"
        );
        let r = parse(Log, &versioned(b"idb3.009.l", b"{}"));
        assert!(
            r.starts_with("unsupported catalog version id idb3.009.l"),
            "{r}"
        );
        let r = parse(
            Log,
            &versioned(b"idb3.004.l", b"{\"sequence_number\": \"x\"}"),
        );
        assert!(
            r.starts_with("catalog file payload is not the expected JSON"),
            "{r}"
        );
        let r = parse(Log, &versioned(b"idb3.004.l", b"not json"));
        assert!(
            r.starts_with("catalog file payload is not the expected JSON"),
            "{r}"
        );
        let r = parse(
            Checkpoint,
            &versioned(b"idb3.004.s", b"{\"catalog_uuid\": \"u\"}"),
        );
        assert!(r.contains("missing field `sequence`"), "{r}");
        // Renamed log: the server would load it as sequence 4.
        let r = parse(Log, &versioned(b"idb3.004.l", b"{\"sequence_number\": 5}"));
        assert_eq!(r, "catalog log named sequence 4 holds sequence 5");
    }

    #[test]
    fn synthetic_v1_variants() {
        let key = "catalogs/00000000000000000003.catalog";
        let info = |kind, bytes: &[u8]| parse_catalog_file(key, V1, kind, bytes).unwrap();
        // Pre-GA bitcode: the sequence comes from the name, a checkpoint's is unknown (0).
        let bitcode = info(Log, &versioned(b"idb3.001.l", &[1, 2, 3]));
        assert_eq!((bitcode.sequence, bitcode.end_marker), (3, false));
        assert_eq!(
            info(Checkpoint, &versioned(b"idb3.001.s", &[9])).sequence,
            0
        );
        // A log without sequence_number falls back to its name.
        assert_eq!(info(Log, &versioned(b"idb3.002.l", b"{}")).sequence, 3);
        // A 3.0-era checkpoint without catalog_uuid.
        let old = info(
            Checkpoint,
            &versioned(b"idb3.002.s", b"{\"sequence\": 100}"),
        );
        assert_eq!((old.sequence, old.catalog_uuid), (100, None));
        // The end marker's sequence comes from the name, so it needs one.
        let marker = versioned(b"idb3.EOF.l", b"null");
        let r = reason(parse_catalog_file("somewhere", V1, Log, &marker));
        assert!(
            r.starts_with("cannot tell this catalog log's sequence"),
            "{r}"
        );
        let r = reason(parse_catalog_file(
            key,
            V1,
            Checkpoint,
            &versioned(b"idb3.EOF.s", b""),
        ));
        assert!(
            r.starts_with("unsupported catalog version id idb3.EOF.s"),
            "{r}"
        );
    }

    /// Recompute the header CRC after editing the header (so later checks are reached).
    fn reseal(bytes: &mut [u8]) {
        let crc = crc32fast::hash(&bytes[0x0C..0x40]);
        bytes[0x08..0x0C].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn broken_v3_files() {
        let log = read("core-3.10.0-basic", V3_LOG_9);
        let parse =
            |key: &str, kind, bytes: &[u8]| reason(parse_catalog_file(key, V3, kind, bytes));
        let r = parse(V3_LOG_9, Log, &log[..63]);
        assert_eq!(
            r,
            "truncated catalog file (63 bytes; a v3 catalog file has a 64-byte header)"
        );
        let mut bad = log.clone();
        bad[0] = b'X';
        assert!(parse(V3_LOG_9, Log, &bad).starts_with("not a v3 catalog file: bad magic \"XDB3\""));
        let mut bad = log.clone();
        bad[4] = 2;
        assert!(parse(V3_LOG_9, Log, &bad).starts_with("unsupported v3 catalog format version 2"));
        let mut bad = log.clone();
        bad[0x20] = 10;
        let r = parse(V3_LOG_9, Log, &bad);
        assert!(
            r.starts_with("catalog header CRC mismatch: header says 0x"),
            "{r}"
        );
        let r = parse(V3_LOG_9, Checkpoint, &log);
        assert_eq!(
            r,
            "expected a catalog checkpoint but the header marks a log"
        );
        let r = parse(V3_LOG_9, Log, &log[..log.len() - 1]);
        assert!(
            r.starts_with("catalog payload length mismatch: header says 50 bytes, the file has 49"),
            "{r}"
        );
        let mut bad = log.clone();
        *bad.last_mut().unwrap() ^= 0xff;
        let r = parse(V3_LOG_9, Log, &bad);
        assert!(r.starts_with("catalog payload CRC mismatch"), "{r}");
        let r = parse("catalog/v3/logs/00000000000000000008.catalog", Log, &log);
        assert_eq!(r, "catalog log named sequence 8 holds sequence 9");
        let mut snapshot_flag = log.clone();
        snapshot_flag[0x0C] |= 1;
        reseal(&mut snapshot_flag);
        let info =
            parse_catalog_file("catalog/v3/snapshot", V3, Checkpoint, &snapshot_flag).unwrap();
        assert_eq!((info.kind, info.sequence), (Checkpoint, 9));
    }

    fn schema(fixture: &str) -> Option<Vec<DatabaseInfo>> {
        let files = catalog_files(fixture);
        let generation = [V3, V2, V1]
            .into_iter()
            .find(|g| files.values().any(|i| i.generation == *g))
            .unwrap();
        let checkpoint_key = catalog_checkpoint_key(generation);
        let floor = files[checkpoint_key].sequence;
        let mut logs: Vec<(u64, Vec<u8>)> = files
            .iter()
            .filter(|(_, i)| i.generation == generation && i.kind == Log && i.sequence > floor)
            .map(|(k, i)| (i.sequence, read(fixture, k)))
            .collect();
        logs.sort();
        let logs: Vec<&[u8]> = logs.iter().map(|(_, b)| b.as_slice()).collect();
        let checkpoint = read(fixture, checkpoint_key);
        catalog_schema(generation, Some(&checkpoint), &logs).unwrap()
    }

    fn names(dbs: &[DatabaseInfo]) -> Vec<(String, bool, Vec<String>)> {
        dbs.iter()
            .map(|db| {
                let tables = db.tables.iter().map(|t| t.name.clone()).collect();
                (db.name.clone(), db.deleted, tables)
            })
            .collect()
    }

    fn expected(with_scratch: bool) -> Vec<(String, bool, Vec<String>)> {
        let mut out = vec![
            ("_internal".to_string(), false, vec![]),
            (
                "sensors".to_string(),
                false,
                vec!["cpu".to_string(), "mem".to_string()],
            ),
            (
                "metrics".to_string(),
                false,
                vec!["http_requests".to_string()],
            ),
        ];
        if with_scratch {
            out.push(("scratch".to_string(), true, vec!["tmp".to_string()]));
        }
        out
    }

    #[test]
    fn schema_from_v2_logs() {
        let dbs = schema("core-3.9.6-basic").unwrap();
        assert_eq!(names(&dbs), expected(false));
        let ids: Vec<(u32, Vec<u32>)> = dbs
            .iter()
            .map(|d| (d.id, d.tables.iter().map(|t| t.id).collect()))
            .collect();
        assert_eq!(ids, [(0, vec![]), (1, vec![0, 1]), (2, vec![0])]);
        assert_eq!(
            names(&schema("core-3.9.6-deleted-db").unwrap()),
            expected(true)
        );
    }

    #[test]
    fn schema_from_v1_logs() {
        assert_eq!(names(&schema("core-3.3.0-basic").unwrap()), expected(false));
        assert_eq!(
            names(&schema("core-3.3.0-deleted-db").unwrap()),
            expected(true)
        );
    }

    #[test]
    fn schema_from_a_migrated_v2_checkpoint() {
        // The v2 checkpoint holds the migrated state (sequence 7); logs 8–10 add nothing.
        assert_eq!(
            names(&schema("core-3.3.0-upgraded-3.9.6").unwrap()),
            expected(false)
        );
    }

    #[test]
    fn schema_of_v3_is_not_decoded() {
        assert_eq!(schema("core-3.10.0-basic"), None);
    }

    #[test]
    fn schema_applies_table_and_hard_deletes() {
        let log = |json: &str| versioned(b"idb3.004.l", json.as_bytes());
        let create = log(
            r#"{"catalog_batch":{"Database":{"time_ns":1,"database_id":4,"database_name":"d","ops":[
            {"CreateDatabase":{"database_id":4,"database_name":"d","retention_period":null}},
            {"CreateTable":{"database_id":4,"database_name":"d","table_name":"a","table_id":0}},
            {"CreateTable":{"database_id":4,"database_name":"d","table_name":"b","table_id":1}},
            {"SomeFutureOp":{"x":1}}]}},"sequence_number":1}"#,
        );
        let soft = log(
            r#"{"catalog_batch":{"Database":{"time_ns":2,"database_id":4,"database_name":"d","ops":[
            {"SoftDeleteTable":{"database_id":4,"database_name":"d","table_id":1,"table_name":"b",
             "deletion_time":2,"hard_deletion_time":null}}]}},"sequence_number":2}"#,
        );
        let hard = log(
            r#"{"catalog_batch":{"Delete":{"time_ns":3,"ops":[{"DeleteTable":[4,0]}]}},"sequence_number":3}"#,
        );
        let node = log(r#"{"catalog_batch":{"Node":{"ops":[]}},"sequence_number":4}"#);
        let dbs = catalog_schema(V2, None, &[&create, &soft, &hard, &node])
            .unwrap()
            .unwrap();
        assert_eq!(dbs.len(), 1);
        assert_eq!((dbs[0].name.as_str(), dbs[0].deleted), ("d", false));
        let tables: Vec<(&str, bool)> = dbs[0]
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.deleted))
            .collect();
        assert_eq!(tables, [("a", true), ("b", true)]);
        let drop_db = log(
            r#"{"catalog_batch":{"Delete":{"time_ns":3,"ops":[{"DeleteDatabase":4}]}},"sequence_number":5}"#,
        );
        let dbs = catalog_schema(V2, None, &[&create, &drop_db])
            .unwrap()
            .unwrap();
        assert!(dbs[0].deleted);
    }

    #[test]
    fn schema_edge_cases() {
        let marker = versioned(b"idb3.EOF.l", b"null");
        assert_eq!(catalog_schema(V1, None, &[&marker]).unwrap(), Some(vec![]));
        let bitcode = versioned(b"idb3.001.l", &[1, 2, 3]);
        assert_eq!(catalog_schema(V1, None, &[&bitcode]).unwrap(), None);
        let broken = versioned(b"idb3.004.l", b"{");
        let r = reason(catalog_schema(V2, None, &[&broken]));
        assert!(
            r.starts_with("catalog file payload is not the expected JSON"),
            "{r}"
        );
        let log = read(
            "core-3.9.6-basic",
            "catalog/v2/logs/00000000000000000001.catalog",
        );
        assert!(catalog_schema(V2, Some(&log), &[]).is_err());
    }

    /// Node registrations and the storage mode, read from the real 3.9.6 and 3.10.0 catalogs.
    #[test]
    fn cluster_facts_of_real_catalogs() {
        let facts = |fixture: &str, key: &str, generation, kind| {
            cluster_facts(key, generation, kind, &read(fixture, key)).expect("facts")
        };
        let v3 = "core-3.10.0-basic";
        let register = facts(v3, "catalog/v3/logs/00000000000000000002.catalog", V3, Log);
        let [body] = register.register_records.as_slice() else {
            panic!("one RegisterNode record: {register:?}");
        };
        assert!(v3_record_names_node(body, "node0"));
        assert!(!v3_record_names_node(body, "node"));
        assert!(!v3_record_names_node(body, "node00"));
        let checkpoint = facts(v3, "catalog/v3/snapshot", V3, Checkpoint);
        assert_eq!(checkpoint.storage_mode.as_deref(), Some("Parquet"));
        assert_eq!(v3_storage_mode(&[1]), "PachaTree");
        assert_eq!(v3_storage_mode(&[9, 9]), "undecoded");

        let v2 = "core-3.9.6-basic";
        let register = facts(v2, "catalog/v2/logs/00000000000000000002.catalog", V2, Log);
        assert_eq!(register.registered_nodes, ["node0"]);
        assert_eq!(register.storage_mode, None);
        let mode = versioned(
            b"idb3.004.l",
            br#"{"catalog_batch":{"StorageMode":{"storage_mode":"ParquetAndPachaTree"}},"sequence_number":3}"#,
        );
        let mode = cluster_facts(
            "catalog/v2/logs/00000000000000000003.catalog",
            V2,
            Log,
            &mode,
        );
        assert_eq!(
            mode.expect("facts").storage_mode.as_deref(),
            Some("ParquetAndPachaTree")
        );
    }
}
