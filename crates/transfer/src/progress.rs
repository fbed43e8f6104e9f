//! Progress reporting: a small trait the copy functions call as bytes move, so that the CLI can
//! draw bars and tests can count, without this crate knowing either.

/// Receives byte counts as transfers advance. Implementations must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// `bytes` more bytes were moved.
    fn advance(&self, bytes: u64);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
