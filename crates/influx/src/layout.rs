//! Layout generation detection from the keys present under a node prefix (format doc §0).

use crate::path::CatalogGeneration;
use serde::Serialize;

/// How Parquet paths are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParquetNaming {
    /// No Parquet files.
    None,
    /// `dbs/{db_id}/{table_id}/…` (3.6+).
    Ids,
    /// `dbs/{db_name}-{db_id}/{table_name}-{table_id}/…` (3.0–3.5).
    Names,
    /// Both styles side by side (upgraded node).
    Mixed,
}

/// The layout found under a node prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// The generation the server loads: the newest present (v3 > v2 > v1).
    pub active_catalog: Option<CatalogGeneration>,
    /// Older generations left behind by an upgrade (kept in backups, reported).
    pub stale_catalogs: Vec<CatalogGeneration>,
    /// Parquet path style.
    pub parquet_naming: ParquetNaming,
}

impl Layout {
    /// Server versions that write this layout, e.g. `"3.10+"`, `"3.4–3.9"`, `"3.0–3.3"`.
    pub fn server_versions(&self) -> &'static str {
        todo!()
    }
}

/// Detect the layout from relative keys under the node prefix.
pub fn detect<'a>(relative_keys: impl IntoIterator<Item = &'a str>) -> Layout {
    todo!()
}
