//! Catalog files of the three generations: v1/v2 (10-byte version id + CRC-32 BE + JSON) and
//! v3 (binary `IDB3`, 64-byte little-endian header with header and payload CRCs). We read the
//! sequence number, the catalog uuid where the file carries it, and (v1/v2, best effort) the
//! database and table names for `inspect` (format doc §2.6, §2.7).

use crate::path::CatalogGeneration;
use serde::Serialize;

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
pub fn parse_catalog_file(
    object: &str,
    generation: CatalogGeneration,
    kind: CatalogFileKind,
    bytes: &[u8],
) -> crate::Result<CatalogFileInfo> {
    todo!()
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
    todo!()
}
