//! Packs written through a store: small blobs gathered into one object of a few megabytes, so
//! that a repository reached over HTTP (S3, Azure, GCS) takes one PUT per pack rather than one
//! per small file. The local fast path fills its packs on its copying threads
//! ([`crate::local`]); both write the same thing (DESIGN §3.4b): stored blobs one after the
//! other, named by the BLAKE3 of the pack's bytes, written whole and never changed.

use crate::copy::{encode_unknown, put_alone, put_with_retries, Encoded, NewBlob};
use crate::local::{same_failure, PackName, Packed, PACK_MEMBER_MAX, PACK_TARGET};
use crate::{CasCopy, Codec, CopyOptions, NameFor, Result};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use object_store::ObjectStore;

/// Items one group (hence one pack) takes at most: a pack of tiny blobs still hands its results
/// over, to be recorded, after a few hundred files.
pub const GROUP_ITEMS_MAX: usize = 256;

/// A small object read whole and made ready to store.
pub enum Prepared {
    /// Nothing left to do: the repository held it already, or it was written as an object of
    /// its own (its stored form is larger than a pack member may be).
    Done(CasCopy),
    /// Its stored form, waiting for a pack.
    Member(Member),
}

impl Prepared {
    /// The bytes it adds to its pack.
    pub fn pack_bytes(&self) -> usize {
        match self {
            Prepared::Done(_) => 0,
            Prepared::Member(member) => member.0.stored.body.len(),
        }
    }
}

/// A blob in its stored form that goes into a pack.
pub struct Member(NewBlob);

/// Make `bytes` (plaintext whose BLAKE3 is `hash`) ready to store in `dst`: known already
/// (`is_known`), a pack member (stored form of up to [`PACK_MEMBER_MAX`] bytes), or else written
/// now under `name_for(hash, compressed)` as an object of its own.
pub async fn prepare(
    dst: &dyn ObjectStore,
    bytes: Bytes,
    hash: blake3::Hash,
    name_for: NameFor<'_>,
    is_known: &(dyn Fn(&blake3::Hash) -> bool + Sync),
    encode: &Codec,
    options: &CopyOptions,
) -> Result<Prepared> {
    match encode_unknown(bytes, hash, name_for, is_known, encode)? {
        Encoded::Known(known) => Ok(Prepared::Done(known)),
        Encoded::New(blob) if blob.stored.body.len() <= PACK_MEMBER_MAX => {
            Ok(Prepared::Member(Member(blob)))
        }
        Encoded::New(blob) => put_alone(dst, blob, options).await.map(Prepared::Done),
    }
}

/// The items of `items` in groups, in the order they come: a group closes once its items
/// `weigh` `PACK_TARGET` bytes, holds [`GROUP_ITEMS_MAX`] items, or the stream ends.
pub fn gather<S>(items: S, weigh: fn(&S::Item) -> usize) -> impl Stream<Item = Vec<S::Item>>
where
    S: Stream + Unpin,
{
    futures::stream::unfold(items, move |mut items| async move {
        let (mut group, mut weight) = (Vec::new(), 0);
        while let Some(item) = items.next().await {
            weight += weigh(&item);
            group.push(item);
            if weight >= PACK_TARGET || group.len() >= GROUP_ITEMS_MAX {
                break;
            }
        }
        (!group.is_empty()).then_some((group, items))
    })
}

/// Write `members`' stored forms one after the other as one pack in `dst`, under
/// `pack_name(BLAKE3 of its bytes)`; for each member, in order, what storing it did and where it
/// lies — or, if the pack could not be written, the pack's failure.
pub async fn put_pack(
    dst: &dyn ObjectStore,
    members: &[&Member],
    pack_name: PackName<'_>,
    options: &CopyOptions,
) -> Vec<Result<(CasCopy, Packed)>> {
    if members.is_empty() {
        return Vec::new();
    }
    let length = members.iter().map(|m| m.0.stored.body.len()).sum();
    let mut bytes = BytesMut::with_capacity(length);
    let mut slices = Vec::with_capacity(members.len());
    for member in members {
        let body = &member.0.stored.body;
        slices.push((bytes.len() as u64, body.len() as u64));
        bytes.extend_from_slice(body);
    }
    let bytes = bytes.freeze();
    let pack = blake3::hash(&bytes);
    let key = pack_name(&pack);
    match put_with_retries(dst, &key, &bytes, options).await {
        Ok(()) => members
            .iter()
            .zip(slices)
            .map(|(member, (offset, length))| {
                let packed = Packed {
                    pack,
                    offset,
                    length,
                };
                Ok((member.0.uploaded(), packed))
            })
            .collect(),
        Err(e) => members.iter().map(|_| Err(same_failure(&e))).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{read_plain_range, Error};
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    fn blob_key(hash: &blake3::Hash, compressed: bool) -> Path {
        let ext = if compressed { ".zst" } else { "" };
        Path::from(format!("blobs/{hash}{ext}"))
    }

    fn pack_key(hash: &blake3::Hash) -> Path {
        Path::from(format!("packs/{hash}"))
    }

    /// `content` made ready to store in `dst`; `known` says what the destination holds.
    async fn prepared_with(
        dst: &dyn ObjectStore,
        content: Vec<u8>,
        known: &(dyn Fn(&blake3::Hash) -> bool + Sync),
        encode: &Codec,
    ) -> Prepared {
        let hash = blake3::hash(&content);
        let options = CopyOptions::default();
        let prepared = prepare(
            dst,
            content.into(),
            hash,
            &blob_key,
            known,
            encode,
            &options,
        );
        prepared.await.unwrap()
    }

    async fn prepared(dst: &dyn ObjectStore, content: Vec<u8>, encode: &Codec) -> Prepared {
        prepared_with(dst, content, &|_| false, encode).await
    }

    fn member(prepared: &Prepared) -> &Member {
        match prepared {
            Prepared::Member(member) => member,
            Prepared::Done(_) => panic!("expected a pack member"),
        }
    }

    /// Members are stored one after the other in one object named by its hash, and each reads
    /// back, through its slice, as the plaintext it was: compressed or not.
    #[tokio::test]
    async fn members_read_back_from_their_slices() {
        let store = InMemory::new();
        let compress = Codec {
            compress: Some(3),
            ..Codec::default()
        };
        let contents = [vec![7u8; 20_000], (0..5_000u32).map(|i| i as u8).collect()];
        let first = prepared(&store, contents[0].clone(), &compress).await;
        let second = prepared(&store, contents[1].clone(), &Codec::identity()).await;
        let written = put_pack(
            &store,
            &[member(&first), member(&second)],
            &pack_key,
            &CopyOptions::default(),
        )
        .await;
        let listed: Vec<_> = store
            .list(None)
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        assert_eq!(listed.len(), 1, "one object for both: {listed:?}");
        for ((copy, packed), content) in written.into_iter().map(Result::unwrap).zip(&contents) {
            assert!(copy.uploaded);
            assert_eq!(copy.hash, blake3::hash(content));
            assert_eq!(copy.stored, packed.length);
            assert_eq!(listed[0], pack_key(&packed.pack));
            let codec = if copy.compressed {
                Codec {
                    decompress: true,
                    ..Codec::default()
                }
            } else {
                Codec::identity()
            };
            let range = packed.offset..packed.offset + packed.length;
            let back = read_plain_range(&store, &listed[0], Some(range), &codec)
                .await
                .unwrap();
            assert_eq!(back.as_ref(), content.as_slice());
        }
        let pack = store.get(&listed[0]).await.unwrap().bytes().await.unwrap();
        assert_eq!(pack_key(&blake3::hash(&pack)), listed[0]);
    }

    /// Content the repository holds is not stored again, and a blob too large to be a member is
    /// written as an object of its own.
    #[tokio::test]
    async fn known_and_large_blobs_are_not_members() {
        let store = InMemory::new();
        let content = vec![1u8; 100];
        let known_hash = blake3::hash(&content);
        let known = |h: &blake3::Hash| *h == known_hash;
        let encode = Codec::identity();
        let Prepared::Done(copy) = prepared_with(&store, content, &known, &encode).await else {
            panic!("a known blob is done")
        };
        assert!(!copy.uploaded);

        let large: Vec<u8> = (0..PACK_MEMBER_MAX as u32 + 1).map(|i| i as u8).collect();
        let hash = blake3::hash(&large);
        let Prepared::Done(copy) = prepared_with(&store, large, &known, &encode).await else {
            panic!("a large blob is written alone")
        };
        assert!(copy.uploaded);
        assert!(store.head(&blob_key(&hash, false)).await.is_ok());
    }

    /// A pack that cannot be written fails every member with its cause, naming the pack.
    #[tokio::test]
    async fn a_pack_not_written_fails_each_member() {
        let dir = tempfile::tempdir().unwrap();
        // `packs` is a file: nothing can be written under it.
        std::fs::write(dir.path().join("packs"), b"").unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let first = prepared(&store, vec![1; 10], &Codec::identity()).await;
        let second = prepared(&store, vec![2; 10], &Codec::identity()).await;
        let options = CopyOptions {
            retries: 0,
            ..CopyOptions::default()
        };
        let written = put_pack(
            &store,
            &[member(&first), member(&second)],
            &pack_key,
            &options,
        )
        .await;
        assert_eq!(written.len(), 2);
        for result in written {
            match result {
                Err(Error::Write { key, .. }) => assert!(key.starts_with("packs/"), "{key}"),
                other => panic!("expected a write failure, got {:?}", other.map(|_| ())),
            }
        }
    }

    /// Groups close at the weight or the count, keep the order, and the last takes the rest.
    #[tokio::test]
    async fn groups_close_at_weight_count_or_end() {
        let heavy = futures::stream::iter(vec![PACK_TARGET / 2; 5]);
        let sizes: Vec<usize> = gather(heavy, |w| *w).map(|g| g.len()).collect().await;
        assert_eq!(sizes, [2, 2, 1]);

        let light = futures::stream::iter(0..GROUP_ITEMS_MAX * 2 + 3);
        let groups: Vec<Vec<usize>> = gather(light, |_| 1).collect().await;
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, [GROUP_ITEMS_MAX, GROUP_ITEMS_MAX, 3]);
        let flat: Vec<usize> = groups.concat();
        assert_eq!(flat, (0..GROUP_ITEMS_MAX * 2 + 3).collect::<Vec<_>>());
    }
}
