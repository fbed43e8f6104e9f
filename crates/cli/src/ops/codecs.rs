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

/// The pack slice of a blob a local copy wrote into a pack.
pub fn pack_slice(packed: &ib3_transfer::local::Packed) -> PackSlice {
    PackSlice {
        pack: BlobId::from(packed.pack),
        offset: packed.offset,
        length: packed.length,
    }
}
