//! How repository blobs are read and written: the one place that turns a blob's encoding and the
//! repository's key into transfer codecs.

use ib3_repo::keys::Keys;
use ib3_repo::{layout, BlobId, Encoding};
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
