//! Manifests and progress records as stored: a header document under `manifests/` (or
//! `partial/`) that names the entry chunks holding its entries (DESIGN.md §3.6). Writing stores
//! the chunks the repository lacks, then the header — the commit point; reading fetches and parses
//! the chunks in parallel. Format 1 manifests, with their entries inline, are still read.

use crate::chunks::{self, EncodedChunk, EntryChunk, Piece, UnchangedChunks};
use crate::config::FORMAT_VERSION;
use crate::layout::{self, Encoding};
use crate::manifest::Summary;
use crate::repository::{create_only, read_optional};
use crate::{BackupId, BlobId, Entry, Error, Manifest, Repository, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Entry chunks fetched, or encoded and stored, at once.
const CHUNKS_IN_FLIGHT: usize = 8;
/// zstd level of entry chunks (JSON lines shrink ~3×; higher levels gain little on hex hashes).
const CHUNK_ZSTD_LEVEL: i32 = 3;

/// A manifest as stored: the header, whose `entries` is empty when they are in chunks, and the
/// references to those chunks (empty for a format 1 manifest).
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The manifest without the entries held in chunks.
    pub manifest: Manifest,
    /// Where its entries are, in order.
    pub entry_chunks: Vec<EntryChunk>,
}

/// The entry chunks of a manifest or progress record just written.
#[derive(Debug, Clone, Default)]
pub struct WrittenChunks {
    /// References to all its chunks, in order.
    pub chunks: Vec<EntryChunk>,
    /// How many of them were new blobs (the others were known or already stored).
    pub new: u64,
}

/// The stored header of a format 2 manifest (borrows the manifest it is written for).
#[derive(Serialize)]
struct Header<'a> {
    format_version: u32,
    id: &'a BackupId,
    tool_version: &'a str,
    started_at: &'a str,
    finished_at: &'a str,
    source: &'a serde_json::Value,
    summary: &'a Summary,
    entry_chunks: &'a [EntryChunk],
}

/// A stored manifest of either format, as parsed.
#[derive(Deserialize)]
struct Document {
    format_version: u32,
    id: BackupId,
    tool_version: String,
    started_at: String,
    finished_at: String,
    source: serde_json::Value,
    summary: Summary,
    #[serde(default)]
    entries: Vec<Entry>,
    #[serde(default)]
    entry_chunks: Vec<EntryChunk>,
}

impl Document {
    fn into_stored(self) -> StoredManifest {
        StoredManifest {
            manifest: Manifest {
                format_version: self.format_version,
                id: self.id,
                tool_version: self.tool_version,
                started_at: self.started_at,
                finished_at: self.finished_at,
                source: self.source,
                summary: self.summary,
                entries: self.entries,
            },
            entry_chunks: self.entry_chunks,
        }
    }
}

/// How far this process got in committing a backup (writing its manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The manifest is being written: once its write has begun, the backup may exist even if
    /// the process stops (a local write finishes on its own thread; a request may have reached
    /// the server).
    Started,
    /// The manifest is written: the backup exists.
    Done,
}

/// Backups whose commit this process began, by id, and how far it got: an interrupted process
/// says which backups exist instead of claiming that nothing was committed.
static COMMITS: std::sync::Mutex<Vec<(String, Commit)>> = std::sync::Mutex::new(Vec::new());

fn note_commit(id: &str, state: Commit) {
    let mut commits = COMMITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match commits.iter_mut().find(|(known, _)| known == id) {
        Some(entry) => entry.1 = state,
        None => commits.push((id.to_string(), state)),
    }
}

/// The backups whose commit this process began, and how far each got.
pub fn commits_in_this_process() -> Vec<(String, Commit)> {
    COMMITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

impl Repository {
    /// Load a manifest's header and chunk references without its chunked entries.
    pub async fn load_stored_manifest(&self, id: &BackupId) -> Result<StoredManifest> {
        let key = layout::manifest_key(id);
        let Some(bytes) = read_optional(self.store().as_ref(), &key).await? else {
            return Err(Error::NoSuchBackup { id: id.to_string() });
        };
        let stored = self.decode_json::<Document>(&bytes, &key)?.into_stored();
        if stored.manifest.format_version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: stored.manifest.format_version,
                supported: FORMAT_VERSION,
            });
        }
        if &stored.manifest.id != id {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: format!(
                    "manifest names backup {} but is stored as {id}",
                    stored.manifest.id
                ),
            });
        }
        Ok(stored)
    }

    /// Load and parse a manifest with all its entries, refusing a newer format.
    pub async fn load_manifest(&self, id: &BackupId) -> Result<Manifest> {
        let stored = self.load_stored_manifest(id).await?;
        self.load_entries(stored).await
    }

    /// A manifest loaded by [`Repository::load_stored_manifest`], with its chunked entries read
    /// in (for a caller that looked at the header first).
    pub async fn load_entries(&self, stored: StoredManifest) -> Result<Manifest> {
        let key = layout::manifest_key(&stored.manifest.id);
        self.with_entries(stored, &key).await
    }

    /// A stored manifest with its chunked entries read back in.
    async fn with_entries(&self, stored: StoredManifest, key: &Path) -> Result<Manifest> {
        let mut manifest = stored.manifest;
        reserve_claimed(&mut manifest.entries, &stored.entry_chunks);
        // Each chunk is moved in as it arrives and its vector freed, so the decoders of the chunks
        // still in flight reuse its memory: at millions of entries, collecting every chunk first
        // and then copying them into one vector held (and page-faulted) the entries twice.
        let mut chunks = futures::stream::iter(&stored.entry_chunks)
            .map(|chunk| self.load_entry_chunk(chunk, key))
            .buffered(CHUNKS_IN_FLIGHT);
        while let Some(entries) = chunks.try_next().await? {
            manifest.entries.extend(entries);
        }
        Ok(manifest)
    }

    /// Read one entry chunk of the manifest (or progress record) stored at `owner`.
    pub async fn load_entry_chunk(&self, chunk: &EntryChunk, owner: &Path) -> Result<Vec<Entry>> {
        let key = layout::blob_key(&chunk.blob, chunk.encoding);
        let Some(stored) = read_optional(self.store().as_ref(), &key).await? else {
            return Err(Error::Corrupt {
                key: owner.to_string(),
                reason: format!(
                    "its entry chunk {key} is missing (deleted or never written); \
                     this backup cannot be read — restore another one"
                ),
            });
        };
        let keys = self.keys().cloned();
        let chunk = chunk.clone();
        // Decryption, decompression and parsing are CPU work: off the async workers, in parallel.
        tokio::task::spawn_blocking(move || {
            let name = key.to_string();
            let sealed_or_plain = match (&keys, chunk.encoding.is_encrypted()) {
                (Some(keys), true) => crate::keys::open(keys, &stored, &name)?,
                _ => stored.to_vec(),
            };
            let plaintext = if chunk.encoding.is_compressed() {
                chunks::decompress(&sealed_or_plain).map_err(|e| Error::Corrupt {
                    key: name.clone(),
                    reason: format!("entry chunk is not a zstd frame: {e}"),
                })?
            } else {
                sealed_or_plain
            };
            chunks::decode(&plaintext, &chunk, &name)
        })
        .await
        .map_err(|e| Error::Corrupt {
            key: owner.to_string(),
            reason: format!("reading an entry chunk failed: {e}"),
        })?
    }

    /// Commit a backup: store its entry chunks, then its manifest with create-only semantics.
    /// Every blob it references must already be stored (the caller's duty; DESIGN.md §3.7).
    /// Returns the chunks written (see [`Repository::write_manifest_known`]).
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<WrittenChunks> {
        self.write_manifest_known(manifest, &HashSet::new()).await
    }

    /// [`Repository::write_manifest`], skipping chunks in `known`: blobs the caller knows are
    /// stored and stay so (referenced by a manifest the caller's lock protects, or written by the
    /// caller's own run). Unchanged entries give identical chunks, so an incremental writes only
    /// the chunks around what changed.
    pub async fn write_manifest_known(
        &self,
        manifest: &Manifest,
        known: &HashSet<BlobId>,
    ) -> Result<WrittenChunks> {
        self.write_manifest_reusing(manifest, known, None).await
    }

    /// [`Repository::write_manifest_known`], referencing the chunks `unchanged` shows to hold
    /// runs of the entries as they are, without encoding those entries (each such chunk must be
    /// in `known`).
    pub async fn write_manifest_reusing(
        &self,
        manifest: &Manifest,
        known: &HashSet<BlobId>,
        unchanged: Option<&UnchangedChunks>,
    ) -> Result<WrittenChunks> {
        let key = layout::manifest_key(&manifest.id);
        let (body, chunks) = self.encode_stored(manifest, &key, known, unchanged).await?;
        let id = manifest.id.to_string();
        note_commit(&id, Commit::Started);
        match self
            .store()
            .put_opts(&key, PutPayload::from(body), create_only())
            .await
        {
            Ok(_) => {
                note_commit(&id, Commit::Done);
                Ok(chunks)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::Exists {
                id: manifest.id.to_string(),
            }),
            Err(e) => Err(Error::store(key, e)),
        }
    }

    /// Record the progress of a run that has not committed yet: a manifest-shaped document under
    /// `partial/` listing entries whose blobs are stored. It is not a backup (never listed or
    /// restored); a later run may reuse its entries instead of reading their sources again.
    /// `known` as for [`Repository::write_manifest_known`]; returns the chunks written.
    pub async fn write_partial(
        &self,
        partial: &Manifest,
        known: &HashSet<BlobId>,
    ) -> Result<WrittenChunks> {
        let key = layout::partial_key(&partial.id);
        let (body, chunks) = self.encode_stored(partial, &key, known, None).await?;
        self.store()
            .put(&key, PutPayload::from(body))
            .await
            .map_err(|e| Error::store(key, e))?;
        Ok(chunks)
    }

    /// Every partial-progress record (unreadable ones are skipped: they are only hints).
    pub async fn partials(&self) -> Result<Vec<Manifest>> {
        let metas = self.list_prefix(layout::PARTIAL).await?;
        let mut partials = Vec::new();
        for meta in metas {
            let Ok(Some(bytes)) = read_optional(self.store().as_ref(), &meta.location).await else {
                continue;
            };
            let Ok(document) = self.decode_json::<Document>(&bytes, &meta.location) else {
                continue;
            };
            if let Ok(partial) = self
                .with_entries(document.into_stored(), &meta.location)
                .await
            {
                partials.push(partial);
            }
        }
        Ok(partials)
    }

    /// Remove a run's partial-progress record (after its manifest is written).
    pub async fn remove_partial(&self, id: &BackupId) -> Result<()> {
        let key = layout::partial_key(id);
        match self.store().delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(key, e)),
        }
    }

    /// Store a manifest-shaped document's entry chunks (those not `known`; the unchanged ones
    /// referenced as they are) and encode its header for `key`: the body to write there, and
    /// the chunks.
    async fn encode_stored(
        &self,
        document: &Manifest,
        key: &Path,
        known: &HashSet<BlobId>,
        unchanged: Option<&UnchangedChunks>,
    ) -> Result<(Vec<u8>, WrittenChunks)> {
        let chunks = self
            .store_entries(&document.entries, known, unchanged)
            .await?;
        let body = self.encode_json(&header(document, &chunks.chunks), key)?;
        Ok((body, chunks))
    }

    /// Cut entries into chunks and store those not `known` (create-only: a chunk stored
    /// meanwhile by another run is the same bytes). Returns the references, in order.
    async fn store_entries(
        &self,
        entries: &[Entry],
        known: &HashSet<BlobId>,
        unchanged: Option<&UnchangedChunks>,
    ) -> Result<WrittenChunks> {
        let encoding = Encoding::of(true, self.keys().is_some());
        let pieces = chunks::pieces(entries, unchanged, encoding);
        let mut written = WrittenChunks {
            chunks: Vec::with_capacity(pieces.len()),
            new: 0,
        };
        // A batch at a time: encoded on threads (CPU), then stored concurrently (I/O), so memory
        // holds one batch of compressed chunks, not the whole manifest.
        for batch in pieces.chunks(CHUNKS_IN_FLIGHT) {
            let encoded = self.encode_batch(batch, encoding, known)?;
            written
                .chunks
                .extend(encoded.iter().map(|(chunk, _)| chunk.clone()));
            let created: Vec<bool> =
                futures::stream::iter(encoded.into_iter().filter_map(|(chunk, stored)| {
                    stored.map(|bytes| self.put_chunk(chunk, bytes))
                }))
                .buffer_unordered(CHUNKS_IN_FLIGHT)
                .try_collect()
                .await?;
            written.new += created.into_iter().filter(|c| *c).count() as u64;
        }
        Ok(written)
    }

    /// Encode a batch of chunks on threads: each chunk's reference, and its stored form unless
    /// it is `known` (an unchanged piece is its earlier chunk, encoded by nobody).
    fn encode_batch(
        &self,
        batch: &[Piece<'_>],
        encoding: Encoding,
        known: &HashSet<BlobId>,
    ) -> Result<Vec<(EntryChunk, Option<Vec<u8>>)>> {
        std::thread::scope(|scope| {
            let workers: Vec<_> = batch
                .iter()
                .map(|piece| match piece {
                    Piece::Unchanged(chunk) => Err(chunk.clone()),
                    Piece::Entries(entries) => {
                        Ok(scope.spawn(move || self.encode_chunk(entries, encoding, known)))
                    }
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| match worker {
                    Err(chunk) => Ok((chunk, None)),
                    Ok(worker) => worker.join().unwrap_or_else(|_| {
                        Err(Error::Corrupt {
                            key: layout::MANIFESTS.into(),
                            reason: "encoding an entry chunk panicked".into(),
                        })
                    }),
                })
                .collect()
        })
    }

    fn encode_chunk(
        &self,
        entries: &[Entry],
        encoding: Encoding,
        known: &HashSet<BlobId>,
    ) -> Result<(EntryChunk, Option<Vec<u8>>)> {
        let EncodedChunk {
            reference,
            plaintext,
        } = chunks::encode(entries, encoding)?;
        if known.contains(&reference.blob) {
            return Ok((reference, None));
        }
        let key = layout::blob_key(&reference.blob, encoding);
        let compressed =
            zstd::bulk::compress(&plaintext, CHUNK_ZSTD_LEVEL).map_err(|e| Error::Corrupt {
                key: key.to_string(),
                reason: format!("compressing the entry chunk: {e}"),
            })?;
        let stored = match self.keys() {
            Some(keys) => crate::keys::seal(keys, &compressed)?,
            None => compressed,
        };
        Ok((reference, Some(stored)))
    }

    /// Store a chunk unless present; whether it was new.
    async fn put_chunk(&self, chunk: EntryChunk, bytes: Vec<u8>) -> Result<bool> {
        let key = layout::blob_key(&chunk.blob, chunk.encoding);
        match self
            .store()
            .put_opts(&key, PutPayload::from(bytes), create_only())
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::store(key, e)),
        }
    }
}

/// Room for the entries the chunk references claim, so moving them in never copies the vector
/// to grow it. Each chunk's count is checked when it is read; a damaged header's claim costs at
/// most address space (pages are taken when entries are written), and one the system refuses
/// is dropped: the vector then grows as the entries come.
fn reserve_claimed(entries: &mut Vec<Entry>, chunks: &[EntryChunk]) {
    let claimed = chunks
        .iter()
        .fold(0u64, |sum, chunk| sum.saturating_add(chunk.entries));
    if let Ok(claimed) = usize::try_from(claimed) {
        let _ = entries.try_reserve_exact(claimed);
    }
}

fn header<'a>(manifest: &'a Manifest, chunks: &'a [EntryChunk]) -> Header<'a> {
    Header {
        format_version: FORMAT_VERSION,
        id: &manifest.id,
        tool_version: &manifest.tool_version,
        started_at: &manifest.started_at,
        finished_at: &manifest.finished_at,
        source: &manifest.source,
        summary: &manifest.summary,
        entry_chunks: chunks,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStore;
    use std::sync::Arc;

    fn entries(count: u32, salt: &str) -> Vec<Entry> {
        let mut list: Vec<Entry> = (0..count)
            .map(|i| {
                let path = format!("dbs/1/2/2026-11-25/{i:08}.parquet");
                Entry {
                    blob: BlobId::of(format!("{path}{salt}").as_bytes()),
                    path,
                    size: u64::from(i),
                    encoding: Encoding::Raw,
                    class: "parquet".into(),
                    pack: None,
                    facts: None,
                }
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            id: BackupId::new(std::time::SystemTime::now()),
            tool_version: "t".into(),
            started_at: String::new(),
            finished_at: String::new(),
            source: serde_json::json!({"node_id": "n"}),
            summary: Summary {
                entries: entries.len() as u64,
                bytes: entries.iter().map(|e| e.size).sum(),
                ..Summary::default()
            },
            entries,
        }
    }

    async fn repo() -> Repository {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        Repository::open_or_init(store, "mem", "t").await.unwrap().0
    }

    async fn blob_count(repo: &Repository) -> usize {
        repo.list_prefix(layout::BLOBS).await.unwrap().len()
    }

    #[tokio::test]
    async fn entries_round_trip_through_chunks_and_unchanged_chunks_are_not_rewritten() {
        let repo = repo().await;
        let first = manifest(entries(50_000, ""));
        let written = repo.write_manifest(&first).await.unwrap();
        let chunks = written.chunks;
        assert_eq!(written.new, chunks.len() as u64);
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        assert_eq!(blob_count(&repo).await, chunks.len());
        assert_eq!(repo.load_manifest(&first.id).await.unwrap(), first);
        let header = repo.load_stored_manifest(&first.id).await.unwrap();
        assert!(header.manifest.entries.is_empty());
        assert_eq!(header.entry_chunks, chunks);

        // One entry changed: one new chunk; the others are the same blobs.
        let mut second = manifest(entries(50_000, ""));
        second.entries[100].blob = BlobId::of(b"changed");
        let known = chunks.iter().map(|c| c.blob).collect();
        let again = repo.write_manifest_known(&second, &known).await.unwrap();
        let new: Vec<_> = again
            .chunks
            .iter()
            .filter(|c| !chunks.contains(c))
            .collect();
        assert_eq!(new.len(), 1, "{new:?}");
        assert_eq!(again.new, 1);
        assert_eq!(blob_count(&repo).await, chunks.len() + 1);
        assert_eq!(repo.load_manifest(&second.id).await.unwrap(), second);
    }

    /// Referencing unchanged chunks gives the very chunks a full encoding would, around a
    /// changed, an inserted and a removed entry, and the manifest reads back whole.
    #[tokio::test]
    async fn unchanged_chunks_are_referenced_as_a_full_encoding_names_them() {
        let repo = repo().await;
        let first = manifest(entries(30_000, ""));
        let earlier = repo.write_manifest(&first).await.unwrap().chunks;
        let known: HashSet<BlobId> = earlier.iter().map(|c| c.blob).collect();

        let mut unchanged = UnchangedChunks::new(&earlier);
        let mut second = Vec::new();
        for (at, entry) in first.entries.iter().enumerate() {
            match at {
                7_000 => continue,
                12_000 => {
                    second.push(Entry {
                        size: 1,
                        ..entry.clone()
                    });
                    unchanged.push(None);
                }
                _ => {
                    second.push(entry.clone());
                    unchanged.push(Some(at));
                }
            }
            if at == 20_000 {
                second.push(Entry {
                    path: format!("{}-added", entry.path),
                    ..entry.clone()
                });
                unchanged.push(None);
            }
        }
        let second = manifest(second);
        let reusing = repo
            .write_manifest_reusing(&second, &known, Some(&unchanged))
            .await
            .unwrap();
        let other = self::repo().await;
        let encoded = other.write_manifest(&second).await.unwrap();
        assert_eq!(reusing.chunks, encoded.chunks);
        let new = reusing.chunks.iter().filter(|c| !known.contains(&c.blob));
        assert_eq!(new.count() as u64, reusing.new, "what is new was written");
        assert!(
            (1..=4).contains(&reusing.new),
            "only chunks around the changes are new"
        );
        assert_eq!(repo.load_manifest(&second.id).await.unwrap(), second);

        // The caller's word is taken, not checked by encoding: told that a changed entry is
        // unchanged, the writer references the earlier chunk.
        let mut told = UnchangedChunks::new(&earlier);
        let mut changed = first.entries.clone();
        changed[12_000].size += 1;
        for at in 0..changed.len() {
            told.push(Some(at));
        }
        let changed = manifest(changed);
        let written = repo
            .write_manifest_reusing(&changed, &known, Some(&told))
            .await
            .unwrap();
        assert_eq!(written.chunks, earlier);
    }

    #[tokio::test]
    async fn a_missing_or_damaged_chunk_is_named() {
        let repo = repo().await;
        let m = manifest(entries(20_000, ""));
        let chunks = repo.write_manifest(&m).await.unwrap().chunks;
        let key = layout::blob_key(&chunks[1].blob, chunks[1].encoding);
        let good = repo.store().get(&key).await.unwrap().bytes().await.unwrap();
        let other = zstd::bulk::compress(b"{}\n", 3).unwrap();
        repo.store().put(&key, other.into()).await.unwrap();
        let err = repo.load_manifest(&m.id).await.unwrap_err().to_string();
        assert!(
            err.contains(key.as_ref()) && err.contains("hashes to"),
            "{err}"
        );
        repo.store().delete(&key).await.unwrap();
        let err = repo.load_manifest(&m.id).await.unwrap_err().to_string();
        assert!(
            err.contains("is missing") && err.contains(key.as_ref()),
            "{err}"
        );
        repo.store().put(&key, good.into()).await.unwrap();
        assert_eq!(repo.load_manifest(&m.id).await.unwrap(), m);
    }

    #[tokio::test]
    async fn format_1_manifests_with_inline_entries_are_read() {
        let repo = repo().await;
        let mut m = manifest(entries(10, ""));
        m.format_version = 1;
        let body = serde_json::to_vec(&m).unwrap();
        let key = layout::manifest_key(&m.id);
        repo.store().put(&key, body.into()).await.unwrap();
        assert_eq!(repo.load_manifest(&m.id).await.unwrap(), m);
        assert!(repo
            .load_stored_manifest(&m.id)
            .await
            .unwrap()
            .entry_chunks
            .is_empty());
    }

    #[tokio::test]
    async fn progress_records_store_their_entries_in_chunks() {
        let repo = repo().await;
        let partial = manifest(entries(5_000, "p"));
        let written = repo.write_partial(&partial, &HashSet::new()).await.unwrap();
        assert!(written.new > 0);
        assert_eq!(repo.partials().await.unwrap(), vec![partial.clone()]);
        // Known chunks are not written again.
        let before = blob_count(&repo).await;
        let known = written.chunks.iter().map(|c| c.blob).collect();
        let again = repo.write_partial(&partial, &known).await.unwrap();
        assert_eq!((again.new, blob_count(&repo).await), (0, before));
        // Unknown but present: not counted as new.
        let again = repo.write_partial(&partial, &HashSet::new()).await.unwrap();
        assert_eq!((again.new, blob_count(&repo).await), (0, before));
    }
}
