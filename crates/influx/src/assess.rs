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
    SnapshotHeader,
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

/// Findings about the headers a backup kept for its snapshot files (`kept`: key and facts of
/// each entry that has facts; DESIGN §4.3, "Kept headers") that the files, as `assessment`
/// parsed them, do not bear out. An incremental takes a kept header over instead of reading the
/// file, so a wrong one would have it judge the node from a header the node never wrote. Facts
/// of another kind are not this layer's; a file that did not parse has its own finding.
pub fn kept_header_findings<'a>(
    assessment: &Assessment,
    kept: impl IntoIterator<Item = (&'a str, &'a serde_json::Value)>,
) -> Vec<Finding> {
    let parsed: BTreeMap<u64, &PersistedSnapshot> = assessment
        .snapshots
        .iter()
        .map(|s| (s.snapshot_sequence_number, s))
        .collect();
    kept.into_iter()
        .filter_map(|(key, facts)| {
            let header = SnapshotHeader::from_facts(facts)?;
            let held = match classify(key) {
                ObjectClass::Snapshot { seq } => SnapshotHeader::of(parsed.get(&seq)?),
                _ => None,
            };
            (held.as_ref() != Some(&header)).then(|| Finding {
                severity: Severity::Error,
                code: "kept-header-wrong".into(),
                object: Some(key.to_string()),
                message: format!(
                    "the backup keeps a snapshot header for {key} ({}) that the file does not \
                     hold ({}): the next incremental would take it over unread. Take the next \
                     backup with `create --reread-snapshots`, which reads every snapshot file \
                     again and keeps what they hold",
                    describe(Some(&header)),
                    describe(held.as_ref())
                ),
            })
        })
        .collect()
}

/// A kept header in a finding's words.
fn describe(header: Option<&SnapshotHeader>) -> String {
    header.map_or_else(
        || "not a snapshot file without removals".to_string(),
        |h| {
            let snapshot = h.snapshot();
            format!(
                "node {}, snapshot {}, WAL {}, catalog {}, {} bytes, {} rows",
                snapshot.node_id,
                snapshot.snapshot_sequence_number,
                snapshot.wal_file_sequence_number,
                snapshot.catalog_sequence_number,
                snapshot.parquet_size_bytes,
                snapshot.row_count
            )
        },
    )
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::path::testing::{fixture_objects, read};

    /// Reads the files of a fixture.
    struct FixtureReader(&'static str);

    impl Reader for FixtureReader {
        async fn read(&self, key: &str) -> Result<Bytes> {
            Ok(Bytes::from(read(self.0, key)))
        }
    }

    /// Headers kept as they are in the files pass; a header with one field changed, or kept for
    /// a snapshot file that records removals (none is kept for those), or for a file that is no
    /// snapshot, is named; facts of another kind are left alone.
    #[tokio::test]
    async fn kept_headers_are_checked_against_the_files() {
        let fixture = "core-3.10.0-retention";
        let objects = fixture_objects(fixture);
        let assessment = assess(
            &FixtureReader(fixture),
            "node0",
            &objects,
            CatalogScope::Here,
            4,
        )
        .await
        .unwrap();
        let (mut kept, mut removing) = (Vec::new(), Vec::new());
        for key in objects.keys() {
            if let ObjectClass::Snapshot { .. } = classify(key) {
                let snapshot = parse_snapshot(key, &read(fixture, key)).unwrap();
                match SnapshotHeader::of(&snapshot) {
                    Some(header) => kept.push((key.clone(), header.to_facts())),
                    None => removing.push(key.clone()),
                }
            }
        }
        assert_eq!((kept.len(), removing.len()), (28, 4));
        let check = |kept: &[(String, serde_json::Value)]| {
            kept_header_findings(&assessment, kept.iter().map(|(k, f)| (k.as_str(), f)))
        };
        assert_eq!(check(&kept), Vec::new());

        let mut wrong = kept.clone();
        let wal = wrong[3].1["wal_file_sequence_number"].as_u64().unwrap();
        wrong[3].1["wal_file_sequence_number"] = (wal + 1).into();
        // Kept for a file that records removals: what it holds is not a kept header.
        wrong.push((removing[0].clone(), kept[0].1.clone()));
        wrong.push(("wal/00000000001.wal".into(), kept[0].1.clone()));
        let mut other_kind = kept[1].1.clone();
        other_kind["kind"] = "something-else/1".into();
        wrong.push((kept[1].0.clone(), other_kind));
        let findings = check(&wrong);
        let named: Vec<&str> = findings
            .iter()
            .map(|f| f.object.as_deref().unwrap())
            .collect();
        assert_eq!(
            named,
            [
                wrong[3].0.as_str(),
                removing[0].as_str(),
                "wal/00000000001.wal"
            ]
        );
        assert!(findings
            .iter()
            .all(|f| f.code == "kept-header-wrong" && f.severity == Severity::Error));
        assert!(
            findings[0].message.contains(&format!("WAL {}", wal + 1))
                && findings[0].message.contains(&format!("WAL {wal}"))
                && findings[0].message.contains("--reread-snapshots"),
            "{}",
            findings[0].message
        );
    }
}
