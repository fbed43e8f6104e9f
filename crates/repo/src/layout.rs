//! Repository object keys. This is the only module that builds them.
//!
//! ```text
//! config                                  repository config (create-only)
//! blobs/<2 hex>/<64 hex>[.zst][.age]      content, named by BLAKE3 of the plaintext;
//!                                         `.zst`: zstd-compressed, `.age`: age-encrypted
//! packs/<2 hex>/<64 hex>                  small stored blobs one after the other, named by
//!                                         BLAKE3 of the pack's bytes (entries give the slice)
//! keys/repository.age                     the repository key, sealed with a passphrase
//! manifests/<backup id>.json              one per backup, create-only, written last
//! staging/<random>                        in-flight streamed uploads, renamed into blobs/
//! locks/<random>.json                     shared and exclusive locks
//! partial/<backup id>.json                progress of a run not committed yet (resume hints)
//! ```
//! Keys never contain `#`: `object_store`'s `LocalFileSystem` reserves `name#<digits>` for its
//! own staging files and hides them from listings.

use crate::{BackupId, BlobId};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// How a blob's bytes are stored. The key says it, so a reader never guesses.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The plaintext as is (e.g. Parquet, already compressed).
    #[default]
    Raw,
    /// A zstd frame of the plaintext (`.zst` key suffix).
    Zstd,
    /// The plaintext encrypted with age (`.age`).
    Age,
    /// A zstd frame of the plaintext, encrypted with age (`.zst.age`).
    ZstdAge,
}

impl Encoding {
    /// The encoding of a blob stored compressed and/or encrypted.
    pub fn of(compressed: bool, encrypted: bool) -> Self {
        match (compressed, encrypted) {
            (false, false) => Encoding::Raw,
            (true, false) => Encoding::Zstd,
            (false, true) => Encoding::Age,
            (true, true) => Encoding::ZstdAge,
        }
    }

    /// Whether this is [`Encoding::Raw`] (serde skips the default).
    pub fn is_raw(&self) -> bool {
        *self == Encoding::Raw
    }

    /// Whether the stored bytes are a zstd frame (after decryption).
    pub fn is_compressed(&self) -> bool {
        matches!(self, Encoding::Zstd | Encoding::ZstdAge)
    }

    /// Whether the stored bytes are age-encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Encoding::Age | Encoding::ZstdAge)
    }

    fn suffix(&self) -> &'static str {
        match self {
            Encoding::Raw => "",
            Encoding::Zstd => ".zst",
            Encoding::Age => ".age",
            Encoding::ZstdAge => ".zst.age",
        }
    }
}

/// Key of the repository config.
pub const CONFIG: &str = "config";
/// Prefix of all blobs.
pub const BLOBS: &str = "blobs";
/// Prefix of all packs (small blobs stored together, DESIGN §3.4b).
pub const PACKS: &str = "packs";
/// Prefix of all manifests.
pub const MANIFESTS: &str = "manifests";
/// Prefix of in-flight uploads.
pub const STAGING: &str = "staging";
/// Prefix of locks.
pub const LOCKS: &str = "locks";
/// The repository key sealed with a passphrase (encrypted repositories).
pub const PASSPHRASE_KEY: &str = "keys/repository.age";
/// Prefix of partial-progress records of runs in flight.
pub const PARTIAL: &str = "partial";

/// Key of a blob: `blobs/ab/abcdef…` (raw) or `blobs/ab/abcdef….zst`.
pub fn blob_key(id: &BlobId, encoding: Encoding) -> Path {
    let hex = id.to_hex();
    Path::from(format!("{BLOBS}/{}/{hex}{}", &hex[..2], encoding.suffix()))
}

/// Parse a blob key back into its id and encoding (`None` for anything else under `blobs/`).
pub fn blob_id_of(key: &Path) -> Option<(BlobId, Encoding)> {
    let mut parts = key.parts();
    let (top, fan, name) = (parts.next()?, parts.next()?, parts.next()?);
    if top.as_ref() != BLOBS || parts.next().is_some() {
        return None;
    }
    let (name, encrypted) = match name.as_ref().strip_suffix(".age") {
        Some(rest) => (rest, true),
        None => (name.as_ref(), false),
    };
    let (hex, compressed) = match name.strip_suffix(".zst") {
        Some(hex) => (hex, true),
        None => (name, false),
    };
    let encoding = Encoding::of(compressed, encrypted);
    let id: BlobId = hex.parse().ok()?;
    id.to_hex()
        .starts_with(fan.as_ref())
        .then_some((id, encoding))
}

/// Key of a pack: `packs/ab/abcdef…`, named by the BLAKE3 of its bytes.
pub fn pack_key(id: &BlobId) -> Path {
    let hex = id.to_hex();
    Path::from(format!("{PACKS}/{}/{hex}", &hex[..2]))
}

/// Parse a pack key back into its id (`None` for anything else).
pub fn pack_id_of(key: &Path) -> Option<BlobId> {
    let mut parts = key.parts();
    let (top, fan, name) = (parts.next()?, parts.next()?, parts.next()?);
    if top.as_ref() != PACKS || parts.next().is_some() {
        return None;
    }
    let id: BlobId = name.as_ref().parse().ok()?;
    id.to_hex().starts_with(fan.as_ref()).then_some(id)
}

/// Key of a manifest.
pub fn manifest_key(id: &BackupId) -> Path {
    Path::from(format!("{MANIFESTS}/{id}.json"))
}

/// Parse a manifest key back into its backup id.
pub fn backup_id_of(key: &Path) -> Option<BackupId> {
    let name = key.filename()?.strip_suffix(".json")?;
    let mut parts = key.parts();
    (parts.next()?.as_ref() == MANIFESTS).then_some(())?;
    name.parse().ok()
}

/// Key of a run's partial-progress record.
pub fn partial_key(id: &BackupId) -> Path {
    Path::from(format!("{PARTIAL}/{id}.json"))
}

/// A fresh staging key.
pub fn staging_key() -> Path {
    Path::from(format!(
        "{STAGING}/{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let id = BlobId::of(b"x");
        let key = blob_key(&id, Encoding::Raw);
        assert!(key
            .as_ref()
            .starts_with(&format!("blobs/{}/", &id.to_hex()[..2])));
        assert_eq!(blob_id_of(&key), Some((id, Encoding::Raw)));
        let zst = blob_key(&id, Encoding::Zstd);
        assert!(zst.as_ref().ends_with(".zst"));
        assert_eq!(blob_id_of(&zst), Some((id, Encoding::Zstd)));
        for encoding in [Encoding::Age, Encoding::ZstdAge] {
            assert_eq!(blob_id_of(&blob_key(&id, encoding)), Some((id, encoding)));
        }
        assert_eq!(blob_id_of(&Path::from("blobs/00/abc")), None);
        let pack = pack_key(&id);
        assert_eq!(
            pack.as_ref(),
            format!("packs/{}/{}", &id.to_hex()[..2], id.to_hex())
        );
        assert_eq!(pack_id_of(&pack), Some(id));
        assert_eq!(blob_id_of(&pack), None);
        assert_eq!(pack_id_of(&key), None);
        let backup: BackupId = "20261125T094418.123Z-0123abcd".parse().unwrap();
        assert_eq!(backup_id_of(&manifest_key(&backup)), Some(backup));
        assert!(!staging_key().as_ref().contains('#'));
    }
}
