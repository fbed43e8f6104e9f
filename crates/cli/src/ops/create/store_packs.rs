//! Small objects captured through the stores go into packs (`ib3_transfer::pack`): read whole,
//! `concurrency` at a time together with the objects stored alone, gathered in the order they
//! arrive into groups of up to 4 MiB of stored bytes, and each group's new blobs written as one
//! pack. A result is recorded only once its pack is written, so no entry (hence no progress
//! record or manifest) references a pack that is not there.

use super::{keeps_bytes, lock, Numbered, RepoCapture};
use crate::ops::codecs;
use anyhow::Result;
use futures::{Stream, StreamExt};
use ib3_influx::cut::SourceObject;
use ib3_repo::{layout, BlobId, Entry};
use ib3_transfer::local::PACK_MEMBER_MAX;
use ib3_transfer::pack::{gather, prepare, put_pack, Member, Prepared};
use ib3_transfer::read_hashed;
use object_store::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Packs being written at once while the next ones fill.
const PACKS_IN_FLIGHT: usize = 4;

/// An object read and made ready, at its position among the objects captured.
type Ready = (usize, SourceObject, Result<Prepared, ib3_transfer::Error>);

impl RepoCapture {
    /// `objects` split into those that go into packs — small ones, when the repository is not
    /// encrypted (each blob of an encrypted one is an age file of its own) — and the rest.
    pub(super) fn split_packable(&self, objects: Numbered) -> (Numbered, Numbered) {
        if self.repo.keys().is_some() {
            return (Vec::new(), objects);
        }
        objects
            .into_iter()
            .partition(|(_, object)| object.size <= PACK_MEMBER_MAX as u64)
    }

    /// Capture `objects` into packs; each object's entry (`None`: it vanished), at its
    /// position, as its pack is written. No more objects are read once `stop` is set.
    pub(super) fn capture_packed<'a>(
        &'a self,
        objects: Numbered,
        stop: &'a AtomicBool,
    ) -> impl Stream<Item = (usize, Result<Option<Entry>>)> + 'a {
        let ready = futures::stream::iter(objects)
            .take_while(move |_| futures::future::ready(!stop.load(Ordering::Relaxed)))
            .map(move |(i, object)| async move {
                let prepared = self.in_flight.run(self.prepare_member(&object)).await;
                (i, object, prepared)
            })
            .buffer_unordered(self.concurrency.max(1));
        gather(ready, |(_, _, prepared)| {
            prepared.as_ref().map_or(0, Prepared::pack_bytes)
        })
        .map(move |group| self.store_group(group))
        .buffer_unordered(PACKS_IN_FLIGHT)
        .flat_map(futures::stream::iter)
    }

    /// Read `object` whole, hand it to the cut if it parses it, and make it ready to store.
    async fn prepare_member(&self, object: &SourceObject) -> Result<Prepared, ib3_transfer::Error> {
        let key = Path::from(object.key.as_str());
        let kept = keeps_bytes(&object.class);
        // As when captured alone: a file that may change is not held to its listed size.
        let expected = (!kept || object.class.is_immutable()).then_some(object.size);
        let (bytes, hash) = read_hashed(self.source.as_ref(), &key, expected, &self.bar).await?;
        if kept {
            self.inspect_read(object, bytes.clone());
        }
        prepare(
            self.repo.store().as_ref(),
            bytes,
            hash,
            &|h, compressed| codecs::blob_key(h, compressed, false),
            &|h| lock(&self.index).contains(&BlobId::from(*h)),
            &self.encode_for(&object.class),
            &self.copy,
        )
        .await
    }

    /// Write the pack of `group`'s new blobs, then record each object of the group.
    async fn store_group(&self, group: Vec<Ready>) -> Vec<(usize, Result<Option<Entry>>)> {
        let members: Vec<&Member> = group
            .iter()
            .filter_map(|(_, _, prepared)| match prepared {
                Ok(Prepared::Member(member)) => Some(member),
                _ => None,
            })
            .collect();
        let pack_name = |h: &blake3::Hash| layout::pack_key(&BlobId::from(*h));
        // Beside the bound on reads (`in_flight`): reads for the next groups hold their turns
        // while their stream waits for these writes, so a write taking a turn would wait for
        // whichever the reads happen to free (one at a time at worst).
        let written = put_pack(self.repo.store().as_ref(), &members, &pack_name, &self.copy).await;
        let mut written = written.into_iter();
        group
            .into_iter()
            .map(|(i, object, prepared)| {
                let stored = match prepared {
                    Ok(Prepared::Done(copy)) => Ok(self.record(copy, None)),
                    Ok(Prepared::Member(_)) => match written.next() {
                        Some(Ok((copy, packed))) => {
                            Ok(self.record(copy, Some(codecs::pack_slice(&packed))))
                        }
                        Some(Err(e)) => Err(e),
                        None => {
                            let missing = format!("internal error: no pack for {}", object.key);
                            return (i, Err(anyhow::anyhow!(missing)));
                        }
                    },
                    Err(e) => Err(e),
                };
                (i, self.entry_of(&object, stored))
            })
            .collect()
    }
}
