//! Identifiers: [`BlobId`] names content, [`BackupId`] names a backup.
//!
//! Invariants: a `BlobId` is the BLAKE3 hash of the plaintext, the source object's bytes (a blob
//! stored as is can be checked with `b3sum`, a `.zst` one with `zstd -dc | b3sum`); it prints as
//! 64 lowercase hex digits. A `BackupId` is `YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx` (UTC time of the
//! start of the backup to the millisecond, 8 random hex digits), so that lexical order is time
//! order and two concurrent backups never collide.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// BLAKE3 hash of a blob's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        BlobId(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl From<blake3::Hash> for BlobId {
    fn from(hash: blake3::Hash) -> Self {
        BlobId(*hash.as_bytes())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for BlobId {
    type Err = String;

    /// Strict: exactly 64 lowercase hex digits. One table lookup per digit, the validity of all
    /// of them checked once at the end: a manifest of 2 000 000 entries parses as many ids, and
    /// a check-then-decode through `blake3::Hash::from_hex` took ~3% of a no-change backup.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BlobId::from_hex_digits(s.as_bytes())
            .ok_or_else(|| format!("not a blob id (64 lowercase hex digits): {s:?}"))
    }
}

impl BlobId {
    /// The id `digits` spell: exactly 64 lowercase hex digits, else `None`. Arithmetic without
    /// branches over the whole array: a manifest of 2 000 000 packed entries holds 4 000 000
    /// ids, and a table lookup per digit took twice as long (2% of a no-change run's CPU).
    pub fn from_hex_digits(digits: &[u8]) -> Option<Self> {
        let digits: &[u8; 64] = digits.try_into().ok()?;
        let mut values = [0u8; 64];
        let mut invalid = 0u8;
        for (value, &c) in values.iter_mut().zip(digits) {
            let decimal = c.wrapping_sub(b'0') < 10;
            let letter = c.wrapping_sub(b'a') < 6;
            invalid |= u8::from(!(decimal | letter));
            // '0'..='9' are 0x30..=0x39, 'a'..='f' are 0x61..=0x66: bit 6 tells them apart.
            *value = (c & 0x0f) + 9 * (c >> 6);
        }
        let mut id = [0u8; 32];
        for (byte, pair) in id.iter_mut().zip(values.chunks_exact(2)) {
            *byte = (pair[0] << 4) | pair[1];
        }
        (invalid == 0).then_some(BlobId(id))
    }
}

impl Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Parsed from the borrowed text: a manifest of millions of entries holds millions of ids.
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = BlobId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a blob id (64 lowercase hex digits)")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<BlobId, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

/// Identifier of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(String);

impl BackupId {
    /// A new id for a backup starting at `at`.
    pub fn new(at: SystemTime) -> Self {
        let stamp = humantime::format_rfc3339_millis(at).to_string();
        // 2026-11-25T09:44:18.123Z -> 20261125T094418.123Z
        let compact: String = stamp.chars().filter(|c| *c != '-' && *c != ':').collect();
        BackupId(format!("{compact}-{:08x}", fastrand::u32(..)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BackupId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let valid = s.len() == 29
            && b[8] == b'T'
            && b[15] == b'.'
            && b[19] == b'Z'
            && b[20] == b'-'
            && s.bytes().enumerate().all(|(i, c)| {
                matches!(i, 8 | 15 | 19 | 20)
                    || (i < 20 && c.is_ascii_digit())
                    || (i > 20 && matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            });
        if valid {
            Ok(BackupId(s.to_string()))
        } else {
            Err(format!(
                "not a backup id (expected YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx, as `list` prints): {s:?}"
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn backup_ids_sort_by_time_and_round_trip() {
        let a = BackupId::new(UNIX_EPOCH + Duration::from_secs(1_795_599_000));
        let b = BackupId::new(UNIX_EPOCH + Duration::from_secs(1_795_599_001));
        assert!(a < b);
        assert!(a.as_str().starts_with("20261125T"), "{a}");
        assert_eq!(a.as_str().parse::<BackupId>().unwrap(), a);
        assert!("latest".parse::<BackupId>().is_err());
        assert!("20261125T094418.000Z-zzzzzzzz".parse::<BackupId>().is_err());
        let c = BackupId::new(UNIX_EPOCH + Duration::from_millis(1_795_599_001_001));
        assert!(b < c, "ids order by millisecond");
    }

    #[test]
    fn blob_ids_are_blake3_hex() {
        let id = BlobId::of(b"hello");
        assert_eq!(id.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("ABC".parse::<BlobId>().is_err());
        // Every byte that is not a lowercase hex digit, in every position, is refused.
        let hex = id.to_hex();
        for position in [0, 1, 31, 62, 63] {
            for bad in [b'A', b'F', b'g', b'/', b':', b'`', b' ', 0x80, 0xff] {
                let mut text = hex.clone().into_bytes();
                text[position] = bad;
                let text = String::from_utf8_lossy(&text).into_owned();
                assert!(text.parse::<BlobId>().is_err(), "{text:?} accepted");
            }
        }
        let all_digits = "0123456789abcdef".repeat(4);
        assert_eq!(all_digits.parse::<BlobId>().unwrap().to_hex(), all_digits);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }
}
