//! How repository blobs are read and written: the one place that turns a blob's encoding and the
//! repository's key into transfer codecs.

use ib3_repo::keys::Keys;
use ib3_repo::manifest::PackSlice;
use ib3_repo::{layout, BlobId, Encoding, Entry};
use ib3_transfer::Codec;
use object_store::path::Path;

/// The codec that turns a stored blob back into its plaintext.
pub fn decode(encoding: Encoding, keys: Option<&Keys>) -> Codec {
    Codec {
        open: encoding
            .is_encrypted()
            .then(|| keys.map(|k| k.identity.clone()))
            .flatten(),
        decompress: encoding.is_compressed(),
        ..Codec::default()
    }
}

/// The codec that stores plaintext in a repository: compressed at `level` (if any), encrypted
/// when the repository has a key.
pub fn encode(level: Option<i32>, keys: Option<&Keys>) -> Codec {
    Codec {
        compress: level,
        seal: keys.map(|k| k.recipient.clone()),
        ..Codec::default()
    }
}

/// The key of a blob of plaintext `hash` stored compressed or not, in a repository encrypted
/// or not.
pub fn blob_key(hash: &blake3::Hash, compressed: bool, encrypted: bool) -> Path {
    layout::blob_key(&BlobId::from(*hash), Encoding::of(compressed, encrypted))
}

/// A stored blob as readers tell them apart: its id, its encoding and, in a pack, where.
pub type StoredBlob = (BlobId, Encoding, Option<PackSlice>);

/// The stored blob an entry names.
pub fn stored_blob(entry: &Entry) -> StoredBlob {
    (entry.blob, entry.encoding, entry.pack.as_deref().copied())
}

/// Where the stored form of an entry's blob is: the key of its blob object, or of the pack
/// holding it with the range it takes there.
pub fn stored_at(entry: &Entry) -> (Path, Option<std::ops::Range<u64>>) {
    location(&entry.blob, entry.encoding, entry.pack.as_deref())
}

/// Where a stored blob is: the key of its blob object, or of its pack and the range there.
fn location(
    blob: &BlobId,
    encoding: Encoding,
    pack: Option<&PackSlice>,
) -> (Path, Option<std::ops::Range<u64>>) {
    match pack {
        Some(slice) => {
            let end = slice.end().unwrap_or(u64::MAX);
            (layout::pack_key(&slice.pack), Some(slice.offset..end))
        }
        None => (layout::blob_key(blob, encoding), None),
    }
}

/// The slice of a pack an entry's blob takes, as the local file paths name it.
pub fn local_slice(entry: &Entry) -> Option<ib3_transfer::local::Slice> {
    entry
        .pack
        .as_deref()
        .map(|slice| ib3_transfer::local::Slice {
            offset: slice.offset,
            length: slice.length,
        })
}

/// The plaintext of an entry's blob, read whole through the repository's store.
pub async fn read_entry(
    repo: &ib3_repo::Repository,
    entry: &Entry,
) -> Result<bytes::Bytes, ib3_transfer::Error> {
    read_stored(repo, &entry.blob, entry.encoding, entry.pack.as_deref()).await
}

/// The plaintext of a stored blob (in a pack: `pack`), read whole through the repository's
/// store.
pub async fn read_stored(
    repo: &ib3_repo::Repository,
    blob: &BlobId,
    encoding: Encoding,
    pack: Option<&PackSlice>,
) -> Result<bytes::Bytes, ib3_transfer::Error> {
    let (key, range) = location(blob, encoding, pack);
    let codec = decode(encoding, repo.keys());
    ib3_transfer::read_plain_range(repo.store().as_ref(), &key, range, &codec).await
}

/// Where a stored blob lies in its pack. The pack readers ([`runs_by_pack`], [`read_run`]) are
/// given packed blobs only; a blob of its own would read as an empty slice.
pub fn slice_in_pack(blob: &BlobId, pack: Option<&PackSlice>) -> PackSlice {
    pack.copied().unwrap_or(PackSlice {
        pack: *blob,
        offset: 0,
        length: 0,
    })
}

/// The plaintext of a blob whose stored form (`encoding`) is `stored`, already read.
pub fn plaintext_of(
    stored: bytes::Bytes,
    encoding: Encoding,
    keys: Option<&Keys>,
) -> std::io::Result<bytes::Bytes> {
    let codec = decode(encoding, keys);
    if codec.is_identity() {
        return Ok(stored);
    }
    ib3_transfer::decode_all(&stored, &codec).map(bytes::Bytes::from)
}

/// Bytes between two members of a pack that one read takes in rather than read them apart.
pub const GAP_MAX: u64 = 1024 * 1024;

/// `items` whose blobs lie in packs (`slice` says where), grouped for reading: pack by pack, by
/// offset within each, and split where two members lie more than [`GAP_MAX`] apart — so a
/// bucket serves one ranged GET per run rather than one per member.
pub fn runs_by_pack<T>(items: Vec<T>, slice: impl Fn(&T) -> PackSlice) -> Vec<Vec<T>> {
    let mut by_pack: std::collections::BTreeMap<BlobId, Vec<T>> = Default::default();
    for item in items {
        by_pack.entry(slice(&item).pack).or_default().push(item);
    }
    let mut runs = Vec::new();
    for mut members in by_pack.into_values() {
        members.sort_by_key(|item| slice(item).offset);
        let mut run = Vec::new();
        let mut end = 0u64;
        for member in members {
            let at = slice(&member);
            if !run.is_empty() && at.offset > end.saturating_add(GAP_MAX) {
                runs.push(std::mem::take(&mut run));
            }
            end = end.max(at.end().unwrap_or(u64::MAX));
            run.push(member);
        }
        runs.push(run);
    }
    runs
}

/// The stored bytes of each member of `run` (one of [`runs_by_pack`]), read from its pack with
/// one ranged request.
pub async fn read_run<T>(
    repo: &ib3_repo::Repository,
    run: &[T],
    slice: impl Fn(&T) -> PackSlice,
) -> Result<Vec<bytes::Bytes>, ib3_transfer::Error> {
    let Some(first) = run.first().map(&slice) else {
        return Ok(Vec::new());
    };
    let end = run
        .iter()
        .map(|item| slice(item).end().unwrap_or(u64::MAX))
        .max()
        .unwrap_or(first.offset);
    let key = layout::pack_key(&first.pack);
    let range = Some(first.offset..end);
    let span =
        ib3_transfer::read_plain_range(repo.store().as_ref(), &key, range, &Codec::identity())
            .await?;
    Ok(run
        .iter()
        .map(|item| {
            let at = slice(item);
            let from = (at.offset - first.offset) as usize;
            span.slice(from..from + at.length as usize)
        })
        .collect())
}

/// The pack slice of a blob a local copy wrote into a pack.
pub fn pack_slice(packed: &ib3_transfer::local::Packed) -> PackSlice {
    PackSlice {
        pack: BlobId::from(packed.pack),
        offset: packed.offset,
        length: packed.length,
    }
}
