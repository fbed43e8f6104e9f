//! The `source` document of a manifest for an InfluxDB 3 node: what was backed up and the
//! consistent point it represents. The repository treats it as opaque JSON; this module owns it.

use ib3_influx::path::CatalogGeneration;
use serde::{Deserialize, Serialize};

/// `manifest.source` for an InfluxDB 3 node backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Always `influxdb3`.
    pub product: String,
    /// Node id (object-store prefix).
    pub node_id: String,
    /// `file`, `s3`, ….
    pub object_store: String,
    /// Data dir or bucket.
    pub location: String,
    /// Active catalog generation at backup time (decides the restore phase of checkpoints).
    pub active_catalog: Option<CatalogGeneration>,
    /// Layout found (generation, stale catalogs, Parquet naming).
    pub layout: serde_json::Value,
    /// Server versions writing that layout.
    pub server_versions: String,
    /// Whether every consistency rule held.
    pub consistent: bool,
    /// The consistent point (snapshot, WAL range, catalog sequence, counts).
    pub point: serde_json::Value,
    /// Referenced Parquet files the server had removed.
    pub removed_by_server: serde_json::Value,
    /// Findings of the rules at capture time.
    pub findings: serde_json::Value,
    /// Re-plans and why.
    pub replan_reasons: Vec<String>,
    /// Objects that vanished during the run.
    pub vanished: Vec<String>,
    /// Derived objects left out.
    pub derived_skipped: u64,
}

/// `source.product` of InfluxDB 3 backups.
pub const PRODUCT: &str = "influxdb3";
