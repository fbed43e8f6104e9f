//! Layout generation detection from the keys present under a node prefix (format doc §0).

use crate::path::{classify, CatalogGeneration, ObjectClass};
use serde::Serialize;
use std::collections::BTreeSet;

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
        match (self.active_catalog, self.parquet_naming) {
            (Some(CatalogGeneration::V3), _) => "3.10+",
            (Some(CatalogGeneration::V2), _) => "3.4–3.9",
            // Id-named Parquet (3.6+) next to a v1 catalog (3.0–3.3) is no version's layout.
            (Some(CatalogGeneration::V1), ParquetNaming::Names | ParquetNaming::None) => "3.0–3.3",
            _ => "unknown",
        }
    }
}

/// Detect the layout from relative keys under the node prefix.
pub fn detect<'a>(relative_keys: impl IntoIterator<Item = &'a str>) -> Layout {
    let mut generations = BTreeSet::new();
    let (mut ids, mut names) = (false, false);
    for key in relative_keys {
        match classify(key) {
            ObjectClass::CatalogLog { generation, .. }
            | ObjectClass::CatalogCheckpoint { generation } => {
                generations.insert(generation);
            }
            ObjectClass::Parquet => match parquet_style(key) {
                Some(ParquetNaming::Ids) => ids = true,
                Some(ParquetNaming::Names) => names = true,
                _ => {}
            },
            _ => {}
        }
    }
    // The server loads the newest generation it finds (format doc §3.1); older ones are leftovers.
    let active_catalog = generations.pop_last();
    Layout {
        active_catalog,
        stale_catalogs: generations.into_iter().collect(),
        parquet_naming: match (ids, names) {
            (false, false) => ParquetNaming::None,
            (true, false) => ParquetNaming::Ids,
            (false, true) => ParquetNaming::Names,
            (true, true) => ParquetNaming::Mixed,
        },
    }
}

/// The naming style of one Parquet key, from its database segment (`dbs/{segment}/…`):
/// `2` → ids, `sensors-1` → names (the id follows the last `-`; names may contain `-`).
fn parquet_style(key: &str) -> Option<ParquetNaming> {
    let segment = key.strip_prefix("dbs/")?.split('/').next()?;
    let is_id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if is_id(segment) {
        return Some(ParquetNaming::Ids);
    }
    match segment.rsplit_once('-') {
        Some((name, id)) if !name.is_empty() && is_id(id) => Some(ParquetNaming::Names),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::testing::{fixture_objects, FIXTURES};
    use CatalogGeneration::*;

    fn layout(fixture: &str) -> Layout {
        let objects = fixture_objects(fixture);
        detect(objects.keys().map(String::as_str))
    }

    fn expect(
        fixture: &str,
        active: CatalogGeneration,
        stale: &[CatalogGeneration],
        naming: ParquetNaming,
        versions: &str,
    ) {
        let found = layout(fixture);
        assert_eq!(
            found,
            Layout {
                active_catalog: Some(active),
                stale_catalogs: stale.to_vec(),
                parquet_naming: naming,
            },
            "{fixture}"
        );
        assert_eq!(found.server_versions(), versions, "{fixture}");
    }

    #[test]
    fn fixtures() {
        use ParquetNaming::*;
        expect("core-3.10.0-basic", V3, &[], Ids, "3.10+");
        expect("core-3.10.0-deleted-db", V3, &[], Ids, "3.10+");
        expect("core-3.10.0-retention", V3, &[], Ids, "3.10+");
        expect("core-3.10.0-wal-only", V3, &[], None, "3.10+");
        expect("core-3.9.6-basic", V2, &[], Ids, "3.4–3.9");
        expect("core-3.9.6-deleted-db", V2, &[], Ids, "3.4–3.9");
        expect("core-3.9.6-wal-only", V2, &[], None, "3.4–3.9");
        expect("core-3.9.6-upgraded-3.10.0", V3, &[V2], Ids, "3.10+");
        expect("core-3.3.0-basic", V1, &[], Names, "3.0–3.3");
        expect("core-3.3.0-deleted-db", V1, &[], Names, "3.0–3.3");
        expect("core-3.3.0-wal-only", V1, &[], None, "3.0–3.3");
        expect("core-3.3.0-upgraded-3.9.6", V2, &[V1], Mixed, "3.4–3.9");
        assert_eq!(FIXTURES.len(), 12);
    }

    #[test]
    fn synthetic_layouts() {
        let empty = detect([]);
        assert_eq!(empty.active_catalog, Option::None);
        assert!(empty.stale_catalogs.is_empty());
        assert_eq!(empty.parquet_naming, ParquetNaming::None);
        assert_eq!(empty.server_versions(), "unknown");

        let all = detect([
            "_catalog_checkpoint",
            "catalog/v3/logs/00000000000000000001.catalog",
            "catalog/v2/snapshot",
            "dbs/my-db-7/cpu-0/2026-01-01/00-00/0000000001.parquet",
            "dbs/7/0/2026-01-01/00-00/0000000001.parquet",
        ]);
        assert_eq!(all.active_catalog, Some(V3));
        assert_eq!(all.stale_catalogs, [V1, V2]);
        assert_eq!(all.parquet_naming, ParquetNaming::Mixed);

        // Only logs of a generation still make it present; malformed names do not.
        let logs_only = detect([
            "catalogs/00000000000000000001.catalog",
            "catalog/v2/logs/bad",
        ]);
        assert_eq!(logs_only.active_catalog, Some(V1));
        assert!(logs_only.stale_catalogs.is_empty());

        let odd = detect([
            "_catalog_checkpoint",
            "dbs/7/0/2026-01-01/00-00/0000000001.parquet",
        ]);
        assert_eq!(odd.server_versions(), "unknown");
        assert_eq!(parquet_style("dbs/weird/x.parquet"), Option::None);
        assert_eq!(parquet_style("dbs/-1/x.parquet"), Option::None);
        assert_eq!(
            parquet_style("dbs/123-4/x.parquet"),
            Some(ParquetNaming::Names)
        );
    }
}
