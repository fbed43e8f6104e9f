//! How bytes move: streaming, hashing, bounded-parallel copies between object stores.
//!
//! This crate knows neither InfluxDB nor the backup repository. A copy is "read this object from
//! store A, write it to store B (under a fixed key or under the hash of its content), expect size
//! N, tell me the BLAKE3 hash". Large objects stream through multipart uploads with bounded
//! memory; small ones are read whole (one request each way), or gathered into packs ([`pack`]:
//! one write per few megabytes of small blobs).
//!
//! Retries: `object_store` already retries individual HTTP requests (its `RetryConfig`: 10
//! retries within 3 minutes by default). This crate adds whole-object retries for what a request
//! retry cannot fix — a body stream cut mid-way — and reports a source object that no longer
//! exists as [`Error::Vanished`], so that a caller can re-plan instead of failing.

mod codec;
mod copy;
pub mod direct;
mod engine;
mod error;
pub mod listing;
pub mod local;
mod noatime;
pub mod pace;
pub mod pack;
mod progress;

pub use codec::{compress, decode_all, decompress, encode_all, Codec};
pub use copy::{
    copy_content_addressed, hash_object, put_content_addressed, read_hashed, read_plain,
    read_plain_range, stream_copy, CasCopy, Copied, CopyOptions, NameFor,
};
pub use engine::{for_each_bounded, InFlight, StreamTurns};
pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};

#[cfg(test)]
mod flaky_tests;
