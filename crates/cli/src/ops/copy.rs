//! `copy`: transfer backups to a second repository (another store, another cloud), deduplicated
//! against what it already holds, verifying every blob as it lands. A blob is copied in its
//! stored form and its plaintext re-hashed on arrival; a backup's manifest is written to the
//! target last, so an interrupted copy leaves no partial backup there, and a re-run sends only
//! the blobs still missing.

use super::codecs::{self, StoredBlob};
use crate::exit::{Failure, VERIFY_FAILED};
use crate::progress::Bar;
use anyhow::{Context, Result};
use ib3_repo::lock::LockKind;
use ib3_repo::manifest::PackSlice;
use ib3_repo::{layout, BackupId, BlobId, BlobIndex, Encoding, Manifest, Repository};
use ib3_transfer::{
    for_each_bounded, hash_object, stream_copy, Codec, CopyOptions, NoProgress, StreamTurns,
};
use object_store::ObjectStoreExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Options of `copy`, resolved.
pub struct CopySettings {
    /// Backups to copy: one id, `latest`, or every backup (`None`).
    pub backup: Option<String>,
    /// Objects in flight.
    pub concurrency: usize,
    /// Progress.
    pub bar: Bar,
}

/// What `copy` did, or would do.
#[derive(Debug, Serialize)]
pub struct CopyReport {
    /// Source repository.
    pub from: String,
    /// Target repository.
    pub to: String,
    /// Nothing was written: the figures say what would be sent ([`plan`]).
    pub dry_run: bool,
    /// Backups copied.
    pub copied: Vec<String>,
    /// Backups the target already held.
    pub skipped: Vec<String>,
    /// Blobs sent as objects of their own.
    pub blobs_copied: u64,
    /// Packs sent (each holds many small blobs).
    pub packs_copied: u64,
    /// Stored bytes sent (in a dry run, as the source stores them).
    pub bytes_copied: u64,
    /// Blobs the target already held.
    pub blobs_present: u64,
    /// Entry chunks of the copied manifests the target did not hold (written, not copied: the
    /// target stores them in its own encoding).
    pub entry_chunks_written: u64,
}

/// Run `copy` from `from` to `to`.
pub async fn copy(from: &Repository, to: &Repository, options: CopySettings) -> Result<CopyReport> {
    let source_lock = from.lock(LockKind::Shared, "copy").await?;
    let target_lock = match to.lock(LockKind::Shared, "copy").await {
        Ok(lock) => lock,
        Err(e) => {
            source_lock.release().await?;
            return Err(e.into());
        }
    };
    let result = copy_locked(from, to, &options).await;
    let released = (source_lock.release().await, target_lock.release().await);
    let report = result?;
    released.0?;
    released.1?;
    options.bar.finish();
    Ok(report)
}

async fn copy_locked(
    from: &Repository,
    to: &Repository,
    options: &CopySettings,
) -> Result<CopyReport> {
    let ids = backups_to_copy(from, options.backup.as_deref()).await?;
    let present: BTreeSet<BackupId> = to.list_backups().await?.into_iter().collect();
    let mut index = to.blob_index().await?;
    let mut report = CopyReport::new(from, to.location(), false);
    for id in ids {
        if present.contains(&id) {
            report.skipped.push(id.to_string());
            continue;
        }
        let mut manifest = from.load_manifest(&id).await?;
        copy_blobs(from, to, &mut manifest, &mut index, options, &mut report).await?;
        // Commit point on the target: every blob of the backup is there and verified.
        report.entry_chunks_written += to.write_manifest(&manifest).await?.new;
        report.copied.push(id.to_string());
    }
    Ok(report)
}

impl CopyReport {
    fn new(from: &Repository, to: &str, dry_run: bool) -> Self {
        CopyReport {
            from: from.location().to_string(),
            to: to.to_string(),
            dry_run,
            copied: Vec::new(),
            skipped: Vec::new(),
            blobs_copied: 0,
            packs_copied: 0,
            bytes_copied: 0,
            blobs_present: 0,
            entry_chunks_written: 0,
        }
    }
}

/// The backups `spec` names in `from` (an id or `latest`), or every one (`None`).
async fn backups_to_copy(from: &Repository, spec: Option<&str>) -> Result<Vec<BackupId>> {
    Ok(match spec {
        Some(spec) => vec![from.resolve(spec).await?],
        None => from.list_backups().await?,
    })
}

/// What `copy` would send, writing nothing (and taking no lock): the backups `to` lacks, and
/// the packs and blobs of theirs it does not hold, counted as `from` stores them. A target that
/// does not exist yet (`None`, at `to_location`) counts as an empty, unencrypted repository,
/// which is what `copy` would initialise there.
pub async fn plan(
    from: &Repository,
    to: Option<&Repository>,
    to_location: &str,
    backup: Option<&str>,
) -> Result<CopyReport> {
    let ids = backups_to_copy(from, backup).await?;
    let (present, mut index, whole_packs) = match to {
        Some(to) => (
            to.list_backups().await?.into_iter().collect(),
            to.blob_index().await?,
            to.keys().is_none(),
        ),
        None => (BTreeSet::new(), BlobIndex::default(), true),
    };
    let stored = from.blob_index().await?;
    let mut report = CopyReport::new(from, to_location, true);
    for id in ids {
        if present.contains(&id) {
            report.skipped.push(id.to_string());
            continue;
        }
        let manifest = from.load_manifest(&id).await?;
        let sending = Sending::of(&manifest, &index, whole_packs);
        report.blobs_present += sending.present;
        for pack in sending.packs {
            let size = stored.pack_size(&pack).unwrap_or(0);
            index.insert_pack(pack, size);
            report.packs_copied += 1;
            report.bytes_copied += size;
        }
        for ((blob, encoding, pack), _) in sending.blobs {
            let size = match pack {
                Some(slice) => slice.length,
                None => stored.size(&blob, encoding).unwrap_or(0),
            };
            index.insert(blob, encoding, size);
            report.blobs_copied += 1;
            report.bytes_copied += size;
        }
        report.copied.push(id.to_string());
    }
    Ok(report)
}

/// What of one backup's stored blobs a target lacks, and how it is sent.
struct Sending {
    /// Packs sent whole.
    packs: BTreeSet<BlobId>,
    /// Blobs sent as objects of their own (from a pack, for an encrypted target), each with
    /// its plaintext size.
    blobs: Vec<(StoredBlob, u64)>,
    /// Distinct stored blobs the target holds already.
    present: u64,
    /// Plaintext bytes of the entries whose blobs are sent.
    bytes: u64,
}

impl Sending {
    /// Against the target's `index`. Packs go whole to a target that stores blobs as this one
    /// does (`whole_packs`: unencrypted, where packs exist); to an encrypted one each blob goes
    /// as its own object.
    fn of(manifest: &Manifest, index: &BlobIndex, whole_packs: bool) -> Self {
        let all: BTreeSet<StoredBlob> = manifest.entries.iter().map(codecs::stored_blob).collect();
        let wanted: BTreeMap<StoredBlob, u64> = manifest
            .entries
            .iter()
            .map(|e| (codecs::stored_blob(e), e.size))
            .filter(|((id, _, pack), _)| index.find(id).is_none() && !holds_pack(index, pack))
            .collect();
        let bytes = manifest
            .entries
            .iter()
            .filter(|e| wanted.contains_key(&codecs::stored_blob(e)))
            .map(|e| e.size)
            .sum();
        let packs = wanted
            .keys()
            .filter_map(|(_, _, pack)| pack.filter(|_| whole_packs).map(|p| p.pack))
            .collect();
        let present = (all.len() - wanted.len()) as u64;
        let blobs = wanted
            .into_iter()
            .filter(|((_, _, pack), _)| !(whole_packs && pack.is_some()))
            .collect();
        Sending {
            packs,
            blobs,
            present,
            bytes,
        }
    }
}

async fn copy_blobs(
    from: &Repository,
    to: &Repository,
    manifest: &mut Manifest,
    index: &mut BlobIndex,
    options: &CopySettings,
    report: &mut CopyReport,
) -> Result<()> {
    let Sending {
        packs,
        blobs,
        present,
        bytes,
    } = Sending::of(manifest, index, to.keys().is_none());
    report.blobs_present += present;
    options
        .bar
        .phase(&format!("copying {}", manifest.id), bytes);
    let copy = CopyOptions::default();
    let copied_packs = for_each_bounded(packs.into_iter().collect(), options.concurrency, |pack| {
        let copy = &copy;
        async move { copy_pack(from, to, pack, copy, &options.bar).await }
    })
    .await;
    for result in copied_packs {
        let (pack, stored) = result?;
        index.insert_pack(pack, stored);
        report.packs_copied += 1;
        report.bytes_copied += stored;
    }
    // A blob of its own streams in parts when large: those take turns, so that parts too stay
    // within `concurrency`.
    let streams = StreamTurns::new(options.concurrency, &copy);
    let results = for_each_bounded(
        blobs,
        options.concurrency,
        |((id, encoding, pack), size)| {
            let (copy, streams) = (&copy, &streams);
            async move {
                let copied = match pack {
                    Some(slice) => {
                        copy_packed_blob(from, to, id, encoding, slice, &options.bar).await
                    }
                    None => {
                        let copied = copy_blob(from, to, id, encoding, copy, &options.bar);
                        streams.run(size, copied).await
                    }
                };
                copied.map(|stored| (id, stored))
            }
        },
    )
    .await;
    for result in results {
        let (id, (encoding, stored)) = result?;
        index.insert(id, encoding, stored);
        report.blobs_copied += 1;
        report.bytes_copied += stored;
    }
    // The target may store the content differently (its own encryption; or it held it already;
    // a blob in a pack here is a blob object there): entries name the target's form.
    for entry in &mut manifest.entries {
        if entry.pack.is_some() && index.holds(entry) {
            continue;
        }
        if let Some((encoding, pack)) = index.find_stored(&entry.blob) {
            (entry.encoding, entry.pack) = (encoding, pack.map(Box::new));
        }
    }
    Ok(())
}

/// Whether the target holds the pack `pack` names (if any).
fn holds_pack(index: &BlobIndex, pack: &Option<PackSlice>) -> bool {
    pack.as_ref().is_some_and(|slice| index.holds_slice(slice))
}

/// Copy one pack as it is stored, and check that its bytes hash to its name (a pack is named
/// by the BLAKE3 of its bytes); a pack that does not is removed from the target and fails the
/// copy. Returns the pack and its size.
async fn copy_pack(
    from: &Repository,
    to: &Repository,
    pack: BlobId,
    copy: &CopyOptions,
    bar: &Bar,
) -> Result<(BlobId, u64)> {
    let key = layout::pack_key(&pack);
    let copied = stream_copy(
        from.store().as_ref(),
        &key,
        to.store().as_ref(),
        &key,
        None,
        &Codec::identity(),
        copy,
        bar,
    )
    .await
    .with_context(|| format!("copying pack {key}"))?;
    if BlobId::from(copied.hash) != pack {
        let _ = to.store().delete(&key).await;
        return Err(Failure::new(
            VERIFY_FAILED,
            format!(
                "pack {key} of {} is corrupt: its content hashes to {}",
                from.location(),
                copied.hash
            ),
        )
        .hint("run `verify --read-data` on the source repository")
        .into());
    }
    Ok((pack, copied.size))
}

/// Copy one blob that the source holds in a pack into a blob object of its own on the target
/// (packs are the local writer's; the target may be any store): read whole and decoded, its
/// plaintext checked against its id before anything is written, encoded for the target as
/// [`copy_blob`] does. Returns the target encoding and the stored size.
async fn copy_packed_blob(
    from: &Repository,
    to: &Repository,
    id: BlobId,
    encoding: Encoding,
    slice: PackSlice,
    bar: &Bar,
) -> Result<(Encoding, u64)> {
    let source_key = layout::pack_key(&slice.pack);
    let plain = codecs::read_stored(from, &id, encoding, Some(&slice))
        .await
        .with_context(|| format!("copying blob {id} from pack {source_key}"))?;
    let plaintext = blake3::hash(&plain);
    if BlobId::from(plaintext) != id {
        return Err(Failure::new(
            VERIFY_FAILED,
            format!(
                "blob {id} in pack {source_key} of {} is corrupt: its content hashes to {plaintext}",
                from.location()
            ),
        )
        .hint("run `verify --read-data` on the source repository")
        .into());
    }
    let target_encoding = Encoding::of(encoding.is_compressed(), to.keys().is_some());
    let target_key = layout::blob_key(&id, target_encoding);
    let codec = codecs::encode(encoding.is_compressed().then_some(3), to.keys());
    let stored = ib3_transfer::encode_all(&plain, &codec)
        .with_context(|| format!("encoding blob {id} for {}", to.location()))?;
    let size = stored.len() as u64;
    to.store()
        .put(&target_key, stored.into())
        .await
        .with_context(|| format!("writing blob {target_key}"))?;
    ib3_transfer::Progress::advance(bar, plain.len() as u64);
    Ok((target_encoding, size))
}

/// Copy one blob: decode it with the source's key, re-encode it for the target (compressed as it
/// was, encrypted if the target is), and check that its plaintext hashes to its id; a blob that
/// does not is removed from the target and fails the copy. Returns the target encoding and the
/// stored size.
async fn copy_blob(
    from: &Repository,
    to: &Repository,
    id: BlobId,
    encoding: Encoding,
    copy: &CopyOptions,
    bar: &Bar,
) -> Result<(Encoding, u64)> {
    let source_key = layout::blob_key(&id, encoding);
    let target_encoding = Encoding::of(encoding.is_compressed(), to.keys().is_some());
    let target_key = layout::blob_key(&id, target_encoding);
    let same_form = encoding == target_encoding
        && from.keys().map(|k| k.recipient.to_string())
            == to.keys().map(|k| k.recipient.to_string());
    let codec = if same_form {
        Codec::identity()
    } else {
        let decode = codecs::decode(encoding, from.keys());
        let encode = codecs::encode(encoding.is_compressed().then_some(3), to.keys());
        Codec {
            compress: encode.compress,
            seal: encode.seal,
            ..decode
        }
    };
    let copied = stream_copy(
        from.store().as_ref(),
        &source_key,
        to.store().as_ref(),
        &target_key,
        None,
        &codec,
        copy,
        bar,
    )
    .await
    .with_context(|| format!("copying blob {source_key}"))?;
    // The copy hashed the plaintext unless it moved stored bytes unchanged.
    let plaintext = if codec.is_identity() && !encoding.is_raw() {
        hash_object(
            to.store().as_ref(),
            &target_key,
            &codecs::decode(target_encoding, to.keys()),
            &NoProgress,
        )
        .await
        .with_context(|| format!("verifying copied blob {target_key}"))?
        .hash
    } else {
        copied.hash
    };
    if BlobId::from(plaintext) != id {
        let _ = to.store().delete(&target_key).await;
        return Err(Failure::new(
            VERIFY_FAILED,
            format!(
                "blob {source_key} of {} is corrupt: its content hashes to {plaintext}",
                from.location()
            ),
        )
        .hint("run `verify --read-data` on the source repository")
        .into());
    }
    Ok((target_encoding, copied.stored))
}
