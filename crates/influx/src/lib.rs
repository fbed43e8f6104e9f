//! What InfluxDB 3 (Core, and one Enterprise node on the Parquet engine) looks like in object
//! storage, and what makes a copy of it restorable.
//!
//! This crate owns every piece of InfluxDB-specific knowledge in influxdb3-backup:
//! - [`path`]: classification of object keys under a node prefix (WAL, snapshot, Parquet,
//!   catalog generations, derived table-index state) and the restore phase of each class;
//! - [`layout`]: detection of the layout generation (catalog v1/v2/v3, Parquet naming);
//! - [`snapshot`], [`wal`], [`catalog`]: parsers for the fields we need, with header and CRC checks;
//! - [`rules`]: the consistency rules of a restorable cut, as pure functions returning findings;
//! - [`assess`]: reading and judging a set of objects (a live source, or a backup's manifest);
//! - [`inspect`]: the read-only report on a live source;
//! - [`cut`]: the online algorithm that captures a consistent cut while the server writes;
//! - `shard` (internal): the checks over every Parquet reference, split by path among threads.
//!
//! It reads source stores, never writes them, and knows nothing of the backup repository or of how
//! bytes are moved: [`cut`] drives a caller-provided [`cut::Capture`] to do the copying.
//! Facts cited here come from `../shared/docs/influxdb3-storage-format.md`, which in turn cites
//! the server's source by file and symbol.

pub mod assess;
pub mod catalog;
pub mod cluster;
pub mod cut;
pub mod error;
pub mod inspect;
pub mod layout;
pub mod path;
pub mod rules;
mod shard;
pub mod snapshot;
pub mod wal;

pub use error::{Error, Result};
