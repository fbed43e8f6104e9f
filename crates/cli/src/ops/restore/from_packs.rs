//! Restoring through the stores the entries whose blobs lie in packs: each pack is read once
//! for a step — the range its members of that step take, split where they leave a wide gap
//! (`codecs::runs_by_pack`) — rather than once per member, so a bucket serves one GET per few
//! hundred small files. Each member is then decoded, checked against its entry (nothing corrupt is
//! written) and written with one PUT.

use super::{check_restored, RestoreOptions, Unit, Writes};
use crate::ops::codecs;
use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use ib3_repo::manifest::PackSlice;
use ib3_repo::Entry;
use ib3_transfer::InFlight;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

/// Pack ranges read at once; their members are written `in_flight`'s turns at a time (shared
/// with the objects restored alone). The reads take no turns: a read whose members wait for
/// turns would hold its own while they wait.
const READS_IN_FLIGHT: usize = 4;

/// Members of one pack read together: their unit and entry, by offset.
type Run<'u> = Vec<(usize, &'u Entry)>;

/// Restore `writes` (entries whose blobs lie in packs) into their units' stores; sizes written.
pub(super) async fn restore_from_packs(
    options: &RestoreOptions,
    units: &[Unit],
    writes: Writes<'_>,
    in_flight: &InFlight,
) -> Vec<Result<u64>> {
    let runs = codecs::runs_by_pack(writes, |(_, entry)| slice_of(entry));
    futures::stream::iter(runs)
        .map(|run| read_run(options, run))
        .buffered(READS_IN_FLIGHT)
        .flat_map(futures::stream::iter)
        .map(|member| async move {
            let (unit, entry, stored) = member?;
            let put = put_member(options, units[unit].store.as_ref(), entry, stored);
            in_flight.run(put).await
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await
}

/// Where an entry's stored blob lies in its pack (callers pass only packed entries).
fn slice_of(entry: &Entry) -> PackSlice {
    codecs::slice_in_pack(&entry.blob, entry.pack.as_deref())
}

/// Read the range of its pack that `run` takes, with one request; each member's stored bytes
/// (or the failure of the read, once for the run).
async fn read_run<'u>(
    options: &RestoreOptions,
    run: Run<'u>,
) -> Vec<Result<(usize, &'u Entry, Bytes)>> {
    let slice = |(_, entry): &(usize, &Entry)| slice_of(entry);
    match codecs::read_run(&options.repo, &run, slice).await {
        Ok(stored) => run
            .into_iter()
            .zip(stored)
            .map(|((unit, entry), bytes)| Ok((unit, entry, bytes)))
            .collect(),
        Err(e) => {
            let pack = run.first().map(|member| slice(member).pack);
            let last = run.last().map_or("", |(_, entry)| entry.path.as_str());
            let (pack, more) = (pack.map(|p| p.to_string()), run.len().saturating_sub(1));
            let pack = pack.unwrap_or_default();
            vec![Err(anyhow::Error::from(e).context(format!(
                "restoring {last} and {more} more from pack {pack}"
            )))]
        }
    }
}

/// Decode a member's stored bytes, check them against its entry, and write them to `target`.
async fn put_member(
    options: &RestoreOptions,
    target: &dyn ObjectStore,
    entry: &Entry,
    stored: Bytes,
) -> Result<u64> {
    let plain = codecs::plaintext_of(stored, entry.encoding, options.repo.keys())
        .with_context(|| format!("restoring {} from blob {}", entry.path, entry.blob))?;
    put_checked(target, entry, plain, &options.bar).await
}

/// Write `plain` (an entry's content, read from the repository) to `target` once it has the
/// entry's hash and size: nothing corrupt is written.
async fn put_checked(
    target: &dyn ObjectStore,
    entry: &Entry,
    plain: Bytes,
    bar: &crate::progress::Bar,
) -> Result<u64> {
    let copied = ib3_transfer::Copied {
        size: plain.len() as u64,
        hash: blake3::hash(&plain),
        stored: plain.len() as u64,
    };
    let size = check_restored(entry, copied)?;
    if size != entry.size {
        anyhow::bail!(
            "blob {} (for {}) holds {size} bytes, the backup recorded {}",
            entry.blob,
            entry.path,
            entry.size
        );
    }
    target
        .put(&Path::from(entry.path.as_str()), plain.into())
        .await
        .with_context(|| format!("restoring {} from blob {}", entry.path, entry.blob))?;
    ib3_transfer::Progress::advance(bar, size);
    Ok(size)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ops::codecs::GAP_MAX;
    use ib3_repo::BlobId;

    fn member(pack: u8, offset: u64, length: u64) -> (usize, Entry) {
        let entry = Entry {
            path: format!("dbs/{pack}/{offset}.parquet"),
            size: length,
            blob: BlobId([offset as u8; 32]),
            encoding: Default::default(),
            class: "parquet".into(),
            pack: Some(Box::new(PackSlice {
                pack: BlobId([pack; 32]),
                offset,
                length,
            })),
            facts: None,
        };
        (0, entry)
    }

    fn offsets(runs: &[Vec<(usize, Entry)>]) -> Vec<Vec<u64>> {
        runs.iter()
            .map(|run| run.iter().map(|(_, e)| slice_of(e).offset).collect())
            .collect()
    }

    /// Members are read pack by pack, in offset order, one read per pack unless a gap wider
    /// than `GAP_MAX` lies between two of them.
    #[test]
    fn members_are_read_by_pack_in_offset_order_split_at_wide_gaps() {
        let far = 35 + GAP_MAX + 1;
        let writes = vec![
            member(2, 100, 50),
            member(1, 10, 5),
            member(1, far, 5),
            member(1, 0, 10),
            member(2, 0, 100),
            member(1, 15, 20),
        ];
        let runs = codecs::runs_by_pack(writes, |(_, entry)| slice_of(entry));
        assert_eq!(offsets(&runs), [vec![0, 10, 15], vec![far], vec![0, 100]]);
    }

    /// A gap of exactly `GAP_MAX` after the furthest end so far is still read in one go.
    #[test]
    fn a_gap_up_to_the_limit_is_read_through() {
        let writes = vec![
            member(1, 0, 100),
            member(1, 50, 10),
            member(1, 100 + GAP_MAX, 1),
        ];
        let runs = codecs::runs_by_pack(writes, |(_, e)| slice_of(e));
        assert_eq!(offsets(&runs), [vec![0, 50, 100 + GAP_MAX]]);
    }
}
