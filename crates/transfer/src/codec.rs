//! What happens to bytes on their way: decryption (age) and decompression (zstd) of a stored
//! form, then compression and encryption into another. The plaintext sits in the middle: it is
//! what every copy hashes and measures.
//!
//! Encoding stages are push-based ([`Encoder`]: feed a chunk, take what is ready). Decryption is
//! pull-based in the `age` crate, so it wraps the body stream instead ([`open_stream`]).

use age::x25519::{Identity, Recipient};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use futures::AsyncReadExt;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The transformations of one copy: `open` and `decompress` turn the source's stored form into
/// plaintext; `compress` and `seal` turn plaintext into the destination's stored form.
#[derive(Clone, Default)]
pub struct Codec {
    /// Decrypt the source with this identity.
    pub open: Option<Arc<Identity>>,
    /// Decompress (zstd) the source after decryption.
    pub decompress: bool,
    /// Compress (zstd, this level) the plaintext.
    pub compress: Option<i32>,
    /// Encrypt the result to this recipient.
    pub seal: Option<Arc<Recipient>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("open", &self.open.is_some())
            .field("decompress", &self.decompress)
            .field("compress", &self.compress)
            .field("seal", &self.seal.is_some())
            .finish()
    }
}

impl Codec {
    /// Copy as is.
    pub fn identity() -> Self {
        Codec::default()
    }

    /// Whether the destination receives the source bytes unchanged.
    pub fn is_identity(&self) -> bool {
        self.open.is_none() && !self.decompress && self.compress.is_none() && self.seal.is_none()
    }
}

/// A `Write` into a shared buffer, so that bytes written through a wrapping writer can be taken
/// out as they are produced.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The push-based half of a codec: decompression of a (decrypted) stream, then compression and
/// encryption of the plaintext. `update` returns (plaintext seen, output ready).
pub(crate) struct Encoder {
    decompress: Option<zstd::stream::write::Decoder<'static, Vec<u8>>>,
    compress: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    seal: Option<(age::stream::StreamWriter<SharedBuf>, SharedBuf)>,
}

impl Encoder {
    pub(crate) fn new(codec: &Codec) -> std::io::Result<Self> {
        let decompress = codec
            .decompress
            .then(|| zstd::stream::write::Decoder::new(Vec::new()))
            .transpose()?;
        let compress = codec
            .compress
            .map(|level| zstd::stream::write::Encoder::new(Vec::new(), level))
            .transpose()?;
        let seal = match &codec.seal {
            Some(recipient) => {
                let buf = SharedBuf::default();
                let encryptor = age::Encryptor::with_recipients(std::iter::once(
                    recipient.as_ref() as &dyn age::Recipient,
                ))
                .map_err(std::io::Error::other)?;
                Some((encryptor.wrap_output(buf.clone())?, buf))
            }
            None => None,
        };
        Ok(Encoder {
            decompress,
            compress,
            seal,
        })
    }

    /// Feed stored-form input (already decrypted); returns the plaintext it yielded and the
    /// destination bytes ready.
    pub(crate) fn update(&mut self, input: Bytes) -> std::io::Result<(Bytes, Bytes)> {
        let plain = match &mut self.decompress {
            Some(d) => {
                d.write_all(&input)?;
                Bytes::from(std::mem::take(d.get_mut()))
            }
            None => input,
        };
        let out = self.encode(plain.clone())?;
        Ok((plain, out))
    }

    fn encode(&mut self, plain: Bytes) -> std::io::Result<Bytes> {
        let packed = match &mut self.compress {
            Some(c) => {
                c.write_all(&plain)?;
                Bytes::from(std::mem::take(c.get_mut()))
            }
            None => plain,
        };
        match &mut self.seal {
            Some((writer, buf)) => {
                writer.write_all(&packed)?;
                Ok(Bytes::from(buf.take()))
            }
            None => Ok(packed),
        }
    }

    /// End of input: the remaining plaintext and output.
    pub(crate) fn finish(mut self) -> std::io::Result<(Bytes, Bytes)> {
        let plain = match self.decompress.take() {
            Some(mut d) => {
                d.flush()?;
                Bytes::from(std::mem::take(d.get_mut()))
            }
            None => Bytes::new(),
        };
        let mut out = self.encode(plain.clone())?.to_vec();
        let tail = match self.compress.take() {
            Some(c) => Bytes::from(c.finish()?),
            None => Bytes::new(),
        };
        match self.seal.take() {
            Some((mut writer, buf)) => {
                writer.write_all(&tail)?;
                writer.finish()?;
                out.extend(buf.take());
            }
            None => out.extend_from_slice(&tail),
        }
        Ok((plain, Bytes::from(out)))
    }
}

/// A wrong key or a damaged age file, in words an operator can act on.
fn age_error(e: age::DecryptError) -> std::io::Error {
    let text = match e {
        age::DecryptError::NoMatchingKeys => {
            "cannot decrypt: the key does not match this repository (wrong key file or passphrase)"
                .to_string()
        }
        other => format!("cannot decrypt: {other}"),
    };
    std::io::Error::new(std::io::ErrorKind::InvalidData, text)
}

/// Decrypt a body stream with `identity`, as a stream of plaintext chunks.
pub(crate) async fn open_stream(
    body: BoxStream<'static, object_store::Result<Bytes>>,
    identity: Arc<Identity>,
) -> std::io::Result<BoxStream<'static, std::io::Result<Bytes>>> {
    let reader = body.map_err(std::io::Error::other).into_async_read();
    let decryptor = age::Decryptor::new_async_buffered(reader)
        .await
        .map_err(age_error)?;
    let stream = decryptor
        .decrypt_async(std::iter::once(identity.as_ref() as &dyn age::Identity))
        .map_err(age_error)?;
    Ok(futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        let mut buf = vec![0u8; 256 * 1024];
        match stream.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(stream)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed())
}

/// Encode a whole buffer of plaintext with the encoding stages of `codec`.
pub fn encode_all(plain: &[u8], codec: &Codec) -> std::io::Result<Vec<u8>> {
    let encode_only = Codec {
        open: None,
        decompress: false,
        ..codec.clone()
    };
    let mut encoder = Encoder::new(&encode_only)?;
    let (_, head) = encoder.update(Bytes::copy_from_slice(plain))?;
    let (_, tail) = encoder.finish()?;
    let mut out = head.to_vec();
    out.extend_from_slice(&tail);
    Ok(out)
}

/// Decode a whole stored buffer to its plaintext with the decoding stages of `codec`.
pub fn decode_all(stored: &[u8], codec: &Codec) -> std::io::Result<Vec<u8>> {
    let decrypted = match &codec.open {
        Some(identity) => {
            let decryptor = age::Decryptor::new_buffered(stored).map_err(age_error)?;
            let mut reader = decryptor
                .decrypt(std::iter::once(identity.as_ref() as &dyn age::Identity))
                .map_err(age_error)?;
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut out)?;
            std::borrow::Cow::Owned(out)
        }
        None => std::borrow::Cow::Borrowed(stored),
    };
    if codec.decompress {
        decompress(&decrypted)
    } else {
        Ok(decrypted.into_owned())
    }
}

/// Compress a whole buffer.
pub fn compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    zstd::stream::encode_all(bytes, level)
}

/// Most plaintext bytes per stored byte a recorded frame size is believed for (a damaged frame
/// could claim any size).
const MAX_RATIO: u64 = 1024;

/// Decompress a whole buffer (every frame in it), with this thread's decompression context.
pub fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    thread_local! {
        // Reused: making a context per buffer (an incremental re-reads thousands of snapshot
        // files) was ~3% of a no-change backup's CPU time.
        static CONTEXT: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::stream::decode_all(bytes);
        };
        let context = match slot.as_mut() {
            Some(context) => context,
            None => slot.insert(
                zstd::zstd_safe::DCtx::try_create()
                    .ok_or_else(|| std::io::Error::other("cannot make a zstd context"))?,
            ),
        };
        // Into a buffer of the size the frames record when they do (and it is plausible): one
        // allocation, never grown or zeroed as a streamed read grows it.
        if let Some(size) = single_frame_size(bytes) {
            if size <= (bytes.len() as u64).saturating_mul(MAX_RATIO) {
                let mut plain = Vec::with_capacity(size as usize);
                context
                    .decompress(&mut plain, bytes)
                    .map_err(|code| std::io::Error::other(zstd::zstd_safe::get_error_name(code)))?;
                return Ok(plain);
            }
        }
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut zstd::stream::read::Decoder::with_context(bytes, context),
            &mut plain,
        )?;
        Ok(plain)
    })
}

/// The plaintext size `stored` records, when it is exactly one zstd frame that records it.
fn single_frame_size(stored: &[u8]) -> Option<u64> {
    use zstd::zstd_safe;
    let whole = zstd_safe::find_frame_compressed_size(stored).ok()?;
    if whole != stored.len() {
        return None;
    }
    zstd_safe::get_frame_content_size(stored).ok()?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The reused context decodes concatenated frames, and a damaged buffer leaves nothing
    /// behind for the next one on the same thread.
    #[test]
    fn decompression_reuses_its_context_cleanly() {
        let (first, second) = (b"first frame ".repeat(500), b"second".repeat(700));
        let mut both = compress(&first, 3).unwrap();
        both.extend(compress(&second, 3).unwrap());
        assert_eq!(decompress(&both).unwrap(), [first.clone(), second].concat());
        let cut_short = &both[..both.len() / 3];
        assert!(decompress(cut_short).is_err());
        assert!(decompress(b"not zstd at all").is_err());
        let alone = compress(&first, 3).unwrap();
        assert_eq!(decompress(&alone).unwrap(), first);
        let codec = Codec {
            decompress: true,
            ..Codec::default()
        };
        assert_eq!(decode_all(&alone, &codec).unwrap(), first);
    }
}
