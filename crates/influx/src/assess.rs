//! Assessing a set of objects: read the small files that carry the state (snapshot files,
//! snapshot checkpoints, catalog files, and the WAL files the server would replay), check their
//! headers and CRCs, and judge the set with [`crate::rules`]. `inspect` assesses a live source,
//! `verify` a backup's manifest; both read through a [`Reader`].

use crate::catalog::{parse_catalog_file, CatalogFileInfo, CatalogFileKind};
use crate::layout::{detect, Layout};
use crate::path::{classify, ObjectClass};
use crate::rules::{judge, CapturedSet, CatalogScope, Finding, Judgement, Severity};
use crate::snapshot::{
    parse_snapshot, parse_snapshot_checkpoint, PersistedSnapshot, SnapshotCheckpoint,
};
use crate::wal::check_wal;
use crate::{Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::future::Future;

/// Reads an object by its key relative to the node prefix.
pub trait Reader: Sync {
    /// The object's bytes.
    fn read(&self, key: &str) -> impl Future<Output = Result<Bytes>> + Send;

    /// `parse` of the object's bytes, run on a thread for blocking work (parsing thousands of
    /// state files takes every core). A reader that reads on such a thread itself parses there
    /// too: one hand-off per object instead of two.
    fn read_parsed<T: Send + 'static>(
        &self,
        key: &str,
        parse: impl FnOnce(&[u8]) -> Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send {
        async move {
            let bytes = self.read(key).await?;
            tokio::task::spawn_blocking(move || parse(&bytes))
                .await
                .map_err(|e| Error::Capture(format!("parsing {key}: {e}")))?
        }
    }
}

/// The parsed state of a set of objects, and its judgement.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// Layout generation.
    pub layout: Layout,
    /// Rules applied, plus a finding per corrupt file.
    pub judgement: Judgement,
    /// Parsed snapshot files, oldest first.
    pub snapshots: Vec<PersistedSnapshot>,
    /// Parsed snapshot checkpoints.
    pub checkpoints: Vec<SnapshotCheckpoint>,
    /// Parsed catalog files by key.
    pub catalog_files: BTreeMap<String, CatalogFileInfo>,
}

enum Parsed {
    Snapshot(PersistedSnapshot),
    Checkpoint(SnapshotCheckpoint),
    Catalog(CatalogFileInfo),
    WalOk,
}

/// Read, check and judge `objects` (relative key → size) of the node `node_prefix`, whose
/// catalog is where `catalog` says. Corrupt files become `corrupt-file` findings; store failures
/// are errors.
pub async fn assess<R: Reader>(
    reader: &R,
    node_prefix: &str,
    objects: &BTreeMap<String, u64>,
    catalog: CatalogScope,
    concurrency: usize,
) -> Result<Assessment> {
    let layout = detect(objects.keys().map(String::as_str));
    let state_files: Vec<(String, ObjectClass)> = objects
        .keys()
        .map(|k| (k.clone(), classify(k)))
        .filter(|(_, c)| c.is_state_file())
        .collect();
    let (mut parsed, mut findings) = read_all(reader, state_files, concurrency).await?;
    let mut snapshots: Vec<PersistedSnapshot> = Vec::new();
    let mut checkpoints = Vec::new();
    let mut catalog_files = BTreeMap::new();
    for (key, item) in parsed.drain(..) {
        match item {
            Parsed::Snapshot(s) => snapshots.push(s),
            Parsed::Checkpoint(c) => checkpoints.push(c),
            Parsed::Catalog(info) => {
                catalog_files.insert(key, info);
            }
            Parsed::WalOk => {}
        }
    }
    snapshots.sort_by_key(|s| s.snapshot_sequence_number);
    // WAL content matters only for files the server replays: after the newest snapshot.
    let floor = snapshots.last().map(|s| s.wal_file_sequence_number);
    let replayed: Vec<(String, ObjectClass)> = objects
        .keys()
        .filter_map(|k| match classify(k) {
            class @ ObjectClass::Wal { seq } if floor.is_none_or(|w| seq > w) => {
                Some((k.clone(), class))
            }
            _ => None,
        })
        .collect();
    let (_, wal_findings) = read_all(reader, replayed, concurrency).await?;
    findings.extend(wal_findings);

    let mut judgement = judge(&CapturedSet {
        node_prefix,
        objects,
        snapshots: &snapshots,
        checkpoints: &checkpoints,
        catalog_files: &catalog_files,
        active_catalog: layout.active_catalog,
        catalog,
    });
    judgement.findings.extend(findings);
    judgement.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.object.cmp(&b.object))
    });
    Ok(Assessment {
        layout,
        judgement,
        snapshots,
        checkpoints,
        catalog_files,
    })
}

type ReadAll = (Vec<(String, Parsed)>, Vec<Finding>);

async fn read_all<R: Reader>(
    reader: &R,
    files: Vec<(String, ObjectClass)>,
    concurrency: usize,
) -> Result<ReadAll> {
    let results: Vec<(String, Result<Parsed>)> = futures::stream::iter(files)
        .map(|(key, class)| async move {
            let parsed = match reader.read(&key).await {
                Ok(bytes) => parse(&key, class, &bytes),
                Err(e) => Err(e),
            };
            (key, parsed)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut parsed = Vec::new();
    let mut findings = Vec::new();
    for (key, result) in results {
        match result {
            Ok(item) => parsed.push((key, item)),
            Err(Error::Corrupt { object, reason }) => findings.push(Finding {
                severity: Severity::Error,
                code: "corrupt-file".into(),
                object: Some(object.clone()),
                message: format!("{object}: {reason}"),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((parsed, findings))
}

fn parse(key: &str, class: ObjectClass, bytes: &[u8]) -> Result<Parsed> {
    Ok(match class {
        ObjectClass::Snapshot { .. } => Parsed::Snapshot(parse_snapshot(key, bytes)?),
        ObjectClass::SnapshotCheckpoint { .. } => {
            Parsed::Checkpoint(parse_snapshot_checkpoint(key, bytes)?)
        }
        ObjectClass::CatalogLog { generation, .. } => Parsed::Catalog(parse_catalog_file(
            key,
            generation,
            CatalogFileKind::Log,
            bytes,
        )?),
        ObjectClass::CatalogCheckpoint { generation } => Parsed::Catalog(parse_catalog_file(
            key,
            generation,
            CatalogFileKind::Checkpoint,
            bytes,
        )?),
        ObjectClass::Wal { .. } => {
            check_wal(key, bytes)?;
            Parsed::WalOk
        }
        _ => return Err(Error::corrupt(key, "not a state file")),
    })
}
