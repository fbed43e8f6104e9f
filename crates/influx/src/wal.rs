//! WAL files (`wal/{seq:011}.wal`): `idb3.001` magic, CRC-32 (IEEE, big-endian) of the payload,
//! then a bitcode payload we do not decode (format doc §2.1).

/// The 8-byte file identifier of every WAL file from 3.0 to 3.10.
pub const WAL_MAGIC: &[u8; 8] = b"idb3.001";

/// Check a WAL file's magic, length and CRC. `object` names it in errors.
pub fn check_wal(object: &str, bytes: &[u8]) -> crate::Result<()> {
    todo!()
}
