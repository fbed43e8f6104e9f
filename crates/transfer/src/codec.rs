//! Codecs applied to bytes while they stream: identity, zstd compression (backup side) and zstd
//! decompression (restore side). The hash a copy reports is always of the **plaintext**: the
//! input of compression, the output of decompression.

use std::io::Write;

/// What to do to the bytes on their way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Copy as is.
    Identity,
    /// Compress with zstd at this level.
    Compress(i32),
    /// Decompress zstd.
    Decompress,
}

/// A streaming encoder/decoder: feed plaintext or stored bytes, take output as it is produced.
pub(crate) enum Coder {
    Identity,
    Compress(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Decompress(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Coder {
    pub(crate) fn new(codec: Codec) -> std::io::Result<Self> {
        Ok(match codec {
            Codec::Identity => Coder::Identity,
            Codec::Compress(level) => {
                Coder::Compress(zstd::stream::write::Encoder::new(Vec::new(), level)?)
            }
            Codec::Decompress => Coder::Decompress(zstd::stream::write::Decoder::new(Vec::new())?),
        })
    }

    /// Feed `input`; returns the output produced so far (empty while the coder buffers).
    pub(crate) fn update(&mut self, input: bytes::Bytes) -> std::io::Result<bytes::Bytes> {
        match self {
            Coder::Identity => Ok(input),
            Coder::Compress(e) => {
                e.write_all(&input)?;
                Ok(std::mem::take(e.get_mut()).into())
            }
            Coder::Decompress(d) => {
                d.write_all(&input)?;
                Ok(std::mem::take(d.get_mut()).into())
            }
        }
    }

    /// End of input: the remaining output.
    pub(crate) fn finish(self) -> std::io::Result<bytes::Bytes> {
        match self {
            Coder::Identity => Ok(bytes::Bytes::new()),
            Coder::Compress(e) => Ok(e.finish()?.into()),
            Coder::Decompress(mut d) => {
                d.flush()?;
                Ok(std::mem::take(d.get_mut()).into())
            }
        }
    }
}

/// Compress a whole buffer.
pub fn compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    zstd::stream::encode_all(bytes, level)
}

/// Decompress a whole buffer.
pub fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::stream::decode_all(bytes)
}
