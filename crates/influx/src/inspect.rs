//! `inspect`: a read-only report on a live node prefix — layout generation, databases and
//! tables, snapshot and WAL ranges, sizes per class, and every consistency problem found.

use crate::assess::{assess, Reader};
use crate::catalog::{catalog_schema, CatalogFileKind};
use crate::cut::list_classified;
use crate::layout::Layout;
use crate::path::{catalog_checkpoint_key, classify, classify_cluster, ObjectClass};
use crate::rules::{CatalogScope, Judgement};
use crate::{Error, Result};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use std::collections::BTreeMap;

/// Objects and bytes of one class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassStats {
    /// Number of objects.
    pub objects: u64,
    /// Total bytes.
    pub bytes: u64,
}

/// A range of sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    /// Lowest.
    pub first: u64,
    /// Highest.
    pub last: u64,
    /// How many are present.
    pub count: u64,
}

/// A table with its Parquet files as referenced by the snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// Table id.
    pub id: u32,
    /// Name, when the catalog could be read.
    pub name: Option<String>,
    /// Deleted in the catalog.
    pub deleted: bool,
    /// Parquet files referenced.
    pub parquet_files: u64,
    /// Their recorded bytes.
    pub parquet_bytes: u64,
}

/// A database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseReport {
    /// Database id.
    pub id: u32,
    /// Name, when the catalog could be read.
    pub name: Option<String>,
    /// Deleted in the catalog.
    pub deleted: bool,
    /// Tables.
    pub tables: Vec<TableReport>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Node prefix inspected.
    pub node_prefix: String,
    /// Layout found.
    pub layout: Layout,
    /// Server versions that write this layout.
    pub server_versions: String,
    /// Per class label: objects and bytes (derived included).
    pub classes: BTreeMap<String, ClassStats>,
    /// Snapshot sequence numbers present.
    pub snapshots: Option<SeqRange>,
    /// WAL sequence numbers present.
    pub wal: Option<SeqRange>,
    /// Databases (names from v1/v2 catalogs; ids from snapshots otherwise).
    pub databases: Vec<DatabaseReport>,
    /// Consistent point and findings.
    pub judgement: Judgement,
}

struct StoreReader<'a>(&'a dyn ObjectStore);

impl Reader for StoreReader<'_> {
    async fn read(&self, key: &str) -> Result<Bytes> {
        let path = Path::from(key);
        let store_error = |source| Error::Store {
            object: key.to_string(),
            source,
        };
        self.0
            .get(&path)
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)
    }
}

/// Inspect the node prefix `source` is rooted at, whose catalog is where `catalog` says.
pub async fn inspect(
    source: &dyn ObjectStore,
    node_prefix: &str,
    catalog: CatalogScope,
    concurrency: usize,
) -> Result<Inspection> {
    let listing = list_node(source, node_prefix).await?;
    inspect_listing(source, node_prefix, listing, catalog, concurrency).await
}

/// Every object under the node prefix `source` is rooted at; none at all is
/// [`Error::NotANode`].
pub async fn list_node(
    source: &dyn ObjectStore,
    node_prefix: &str,
) -> Result<Vec<crate::cut::SourceObject>> {
    let listing = list_classified(source, None).await?;
    if listing.is_empty() {
        return Err(Error::NotANode {
            message: format!("no objects under the node prefix {node_prefix}/"),
        });
    }
    Ok(listing)
}

/// Inspect an Enterprise cluster catalog (`source` rooted at the cluster prefix): its catalog
/// files only, judged against `required`, the highest sequence the nodes' data needs.
pub async fn inspect_cluster_catalog(
    source: &dyn ObjectStore,
    cluster_id: &str,
    required: u64,
    concurrency: usize,
) -> Result<Inspection> {
    let listing = list_classified(source, None)
        .await?
        .into_iter()
        .filter(|o| {
            matches!(
                classify_cluster(&o.key),
                ObjectClass::CatalogLog { .. } | ObjectClass::CatalogCheckpoint { .. }
            )
        })
        .collect();
    let scope = CatalogScope::HereAtLeast(required);
    inspect_listing(source, cluster_id, listing, scope, concurrency).await
}

/// Inspect the node prefix `source` is rooted at from its `listing` (taken by the caller, who
/// needs it too: `create --dry-run` matches it with a previous backup).
pub async fn inspect_listing(
    source: &dyn ObjectStore,
    node_prefix: &str,
    listing: Vec<crate::cut::SourceObject>,
    catalog: CatalogScope,
    concurrency: usize,
) -> Result<Inspection> {
    let mut classes: BTreeMap<String, ClassStats> = BTreeMap::new();
    for object in &listing {
        let stats = classes.entry(object.class.label().to_string()).or_default();
        stats.objects += 1;
        stats.bytes += object.size;
    }
    let objects: BTreeMap<String, u64> = listing
        .iter()
        .filter(|o| o.class != ObjectClass::Derived)
        .map(|o| (o.key.clone(), o.size))
        .collect();
    let reader = StoreReader(source);
    let assessment = assess(&reader, node_prefix, &objects, catalog, concurrency).await?;
    let databases = databases(&reader, &assessment).await?;
    Ok(Inspection {
        node_prefix: node_prefix.to_string(),
        server_versions: assessment.layout.server_versions().to_string(),
        layout: assessment.layout,
        classes,
        snapshots: range(listing.iter().filter_map(|o| match o.class {
            ObjectClass::Snapshot { seq } => Some(seq),
            _ => None,
        })),
        wal: range(listing.iter().filter_map(|o| match o.class {
            ObjectClass::Wal { seq } => Some(seq),
            _ => None,
        })),
        databases,
        judgement: assessment.judgement,
    })
}

fn range(seqs: impl Iterator<Item = u64>) -> Option<SeqRange> {
    let seqs: Vec<u64> = seqs.collect();
    Some(SeqRange {
        first: *seqs.iter().min()?,
        last: *seqs.iter().max()?,
        count: seqs.len() as u64,
    })
}

/// Databases and tables: names from the catalog where it is JSON (v1/v2), Parquet counts from
/// the snapshots (files added and not later removed).
async fn databases<R: Reader>(
    reader: &R,
    assessment: &crate::assess::Assessment,
) -> Result<Vec<DatabaseReport>> {
    let mut reports: BTreeMap<u32, DatabaseReport> = BTreeMap::new();
    if let Some(schema) = read_schema(reader, assessment).await? {
        for db in schema {
            let tables = db
                .tables
                .iter()
                .map(|t| TableReport {
                    id: t.id,
                    name: Some(t.name.clone()),
                    deleted: t.deleted,
                    parquet_files: 0,
                    parquet_bytes: 0,
                })
                .collect();
            reports.insert(
                db.id,
                DatabaseReport {
                    id: db.id,
                    name: Some(db.name.clone()),
                    deleted: db.deleted,
                    tables,
                },
            );
        }
    }
    let removed: std::collections::HashSet<&str> = assessment
        .snapshots
        .iter()
        .flat_map(|s| s.removed_files.iter().map(|f| f.path.as_str()))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for file in assessment.snapshots.iter().flat_map(|s| s.files.iter()) {
        if removed.contains(file.path.as_str()) || !seen.insert(file.path.as_str()) {
            continue;
        }
        let db = reports.entry(file.db_id).or_insert_with(|| DatabaseReport {
            id: file.db_id,
            name: None,
            deleted: false,
            tables: Vec::new(),
        });
        let position = db.tables.iter().position(|t| t.id == file.table_id);
        let table = match position {
            Some(i) => &mut db.tables[i],
            None => {
                db.tables.push(TableReport {
                    id: file.table_id,
                    name: None,
                    deleted: false,
                    parquet_files: 0,
                    parquet_bytes: 0,
                });
                let last = db.tables.len() - 1;
                &mut db.tables[last]
            }
        };
        table.parquet_files += 1;
        table.parquet_bytes += file.size_bytes;
    }
    Ok(reports.into_values().collect())
}

async fn read_schema<R: Reader>(
    reader: &R,
    assessment: &crate::assess::Assessment,
) -> Result<Option<Vec<crate::catalog::DatabaseInfo>>> {
    let Some(generation) = assessment.layout.active_catalog else {
        return Ok(None);
    };
    let checkpoint_key = catalog_checkpoint_key(generation);
    let checkpoint = match assessment.catalog_files.get(checkpoint_key) {
        Some(info) if info.kind == CatalogFileKind::Checkpoint => {
            Some(reader.read(checkpoint_key).await?)
        }
        _ => None,
    };
    let floor = assessment
        .catalog_files
        .get(checkpoint_key)
        .map(|i| i.sequence)
        .unwrap_or(0);
    let mut logs = Vec::new();
    for (key, info) in &assessment.catalog_files {
        let is_active_log = matches!(classify(key), ObjectClass::CatalogLog { generation: g, .. } if g == generation);
        if is_active_log && info.sequence > floor && !info.end_marker {
            logs.push((info.sequence, reader.read(key).await?));
        }
    }
    logs.sort_by_key(|(seq, _)| *seq);
    let log_bytes: Vec<&[u8]> = logs.iter().map(|(_, b)| b.as_ref()).collect();
    // A catalog we cannot decode only costs the names, never the report.
    Ok(catalog_schema(generation, checkpoint.as_deref(), &log_bytes).unwrap_or(None))
}
