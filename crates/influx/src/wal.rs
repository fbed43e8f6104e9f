//! WAL files (`wal/{seq:011}.wal`): `idb3.001` magic, CRC-32 (IEEE, big-endian) of the payload,
//! then a bitcode payload we do not decode (format doc §2.1).

/// The 8-byte file identifier of every WAL file from 3.0 to 3.10.
pub const WAL_MAGIC: &[u8; 8] = b"idb3.001";

/// Check a WAL file's magic, length and CRC. `object` names it in errors.
pub fn check_wal(object: &str, bytes: &[u8]) -> crate::Result<()> {
    let corrupt = |reason: String| Err(crate::Error::corrupt(object, reason));
    let Some((header, payload)) = bytes.split_first_chunk::<12>() else {
        return corrupt(format!(
            "truncated WAL file ({} bytes; a WAL file has at least a 12-byte header)",
            bytes.len()
        ));
    };
    let (magic, crc) = header.split_at(8);
    if magic != WAL_MAGIC {
        return corrupt(format!(
            "not a WAL file: bad magic \"{}\" (expected \"idb3.001\")",
            magic.escape_ascii()
        ));
    }
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32fast::hash(payload);
    if stored != actual {
        return corrupt(format!(
            "WAL file CRC mismatch: header says {stored:#010x}, content hashes to {actual:#010x} \
             (file is corrupt)"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::path::testing::{fixture_objects, read, FIXTURES};
    use crate::path::{classify, ObjectClass};

    fn reason(result: crate::Result<()>) -> String {
        match result {
            Err(crate::Error::Corrupt { object, reason }) => {
                assert_eq!(object, "wal/00000000001.wal");
                reason
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    fn real_wal() -> Vec<u8> {
        read("core-3.10.0-wal-only", "wal/00000000001.wal")
    }

    #[test]
    fn every_fixture_wal_passes() {
        let mut checked = 0;
        for fixture in FIXTURES {
            for key in fixture_objects(fixture).keys() {
                if let ObjectClass::Wal { .. } = classify(key) {
                    check_wal(key, &read(fixture, key)).unwrap();
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 91, "WAL files in the fixtures");
    }

    #[test]
    fn truncation_fails() {
        let bytes = real_wal();
        for len in [0, 5, 11] {
            let r = reason(check_wal("wal/00000000001.wal", &bytes[..len]));
            assert_eq!(
                r,
                format!(
                    "truncated WAL file ({len} bytes; a WAL file has at least a 12-byte header)"
                )
            );
        }
        let r = reason(check_wal("wal/00000000001.wal", &bytes[..bytes.len() - 1]));
        assert!(
            r.starts_with("WAL file CRC mismatch: header says 0x"),
            "{r}"
        );
    }

    #[test]
    fn bit_flip_fails() {
        let mut bytes = real_wal();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let r = reason(check_wal("wal/00000000001.wal", &bytes));
        assert!(
            r.contains("CRC mismatch") && r.ends_with("(file is corrupt)"),
            "{r}"
        );
        let mut bytes = real_wal();
        bytes[9] ^= 0x80;
        assert!(reason(check_wal("wal/00000000001.wal", &bytes)).contains("CRC mismatch"));
    }

    #[test]
    fn bad_magic_fails() {
        let mut bytes = real_wal();
        bytes[..8].copy_from_slice(b"idb3.002");
        let r = reason(check_wal("wal/00000000001.wal", &bytes));
        assert_eq!(
            r,
            "not a WAL file: bad magic \"idb3.002\" (expected \"idb3.001\")"
        );
        let r = reason(check_wal(
            "wal/00000000001.wal",
            b"{\"json\": true, \"x\": 1}",
        ));
        assert!(r.starts_with("not a WAL file: bad magic"), "{r}");
    }

    #[test]
    fn empty_payload_with_valid_crc_passes() {
        let mut bytes = WAL_MAGIC.to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&[]).to_be_bytes());
        check_wal("wal/00000000001.wal", &bytes).unwrap();
    }
}
