//! A generic, content-addressed backup repository on any `object_store` store.
//!
//! This crate implements the repository format that `DESIGN.md` specifies, section by section:
//! - [`layout`]: the only place object keys are built (`config`, `blobs/`, `manifests/`, `staging/`);
//! - [`id`]: blob ids (BLAKE3 of the content) and backup ids (UTC time + random suffix);
//! - [`config`]: the repository `config` object, its format version and the refusal of newer ones;
//! - [`manifest`]: one manifest per backup, written last with create-only semantics;
//! - [`keys`]: the age key of an encrypted repository, from a key file or a passphrase;
//! - [`durable`]: a local-directory repository made durable at one filesystem flush per record;
//! - [`lock`]: shared and exclusive locks, refreshed while held, stale when their holder died;
//! - [`check`]: structural verification of manifests against the blobs present.
//!
//! It contains no InfluxDB knowledge: an entry is a relative path, a size, a blob id and an opaque
//! `class` label, and a manifest carries an opaque `source` JSON document that the caller owns.
//! The test for this boundary: it could back up a directory of photos unchanged.

pub mod check;
pub mod chunks;
pub mod config;
pub mod durable;
mod entry_line;
pub mod error;
pub mod gc;
pub mod id;
pub mod keys;
pub mod layout;
pub mod lock;
pub mod manifest;
mod repository;
pub mod retention;
pub mod stored;

pub use chunks::EntryChunk;
pub use error::{Error, Result};
pub use id::{BackupId, BlobId};
pub use layout::Encoding;
pub use manifest::{Entry, Manifest};
pub use repository::{BlobIndex, Repository};
pub use stored::{StoredManifest, WrittenChunks};
