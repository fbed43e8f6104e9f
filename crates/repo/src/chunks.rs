//! Entry chunks: how a manifest's entries are stored (format 2, DESIGN.md §3.6).
//!
//! A backup of millions of objects has millions of entries. Storing them inside the manifest made
//! each manifest a single document of ~160 bytes per entry (320 MB at 2 000 000 files), written
//! whole by every incremental and parsed on one core. Instead the sorted entries are cut into
//! chunks at boundaries that depend only on the paths (content-defined: a boundary follows an entry
//! whose path hash has its low bits zero), each chunk is stored as a zstd-compressed blob of JSON
//! lines, named like any blob by the BLAKE3 of its plaintext. Objects that did not change between
//! two backups produce byte-identical chunks, so an incremental writes only the chunks around what
//! changed, and a reader parses chunks in parallel (and `prune` reads each distinct chunk once).

use crate::entry_line;
use crate::layout::Encoding;
use crate::{BlobId, Entry, Error, Result};
use serde::{Deserialize, Serialize};

/// A boundary follows an entry whose path hash has these bits zero: ~4 096 entries per chunk.
const BOUNDARY_MASK: u64 = (1 << 12) - 1;
/// No chunk boundary before this many entries (keeps chunks worth a request).
const MIN_ENTRIES: usize = 256;
/// A chunk is cut here whatever the paths (bounds a chunk's size).
const MAX_ENTRIES: usize = 32_768;

/// Fewer bytes than any entry's line takes (its blob id alone is 64 hex digits).
const MIN_ENTRY_BYTES: usize = 64;

/// Reference from a manifest to one chunk of its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryChunk {
    /// Blob holding the chunk (BLAKE3 of its plaintext: JSON lines, one entry per line).
    pub blob: BlobId,
    /// How the blob is stored (`zstd`, or `zstd-age` in an encrypted repository).
    pub encoding: Encoding,
    /// Number of entries in the chunk.
    pub entries: u64,
    /// Sum of the entries' sizes.
    pub bytes: u64,
}

/// A chunk ready to store: its reference and plaintext.
pub(crate) struct EncodedChunk {
    pub reference: EntryChunk,
    pub plaintext: Vec<u8>,
}

/// Chunks of an earlier manifest that a new one may reference as they are, without encoding its
/// entries again: a chunk's boundaries depend only on its entries, so a run of new entries that
/// are, one for one and in order, exactly the entries of an earlier chunk is that chunk. The
/// caller says which new entries are earlier entries moved over unchanged, and from where.
#[derive(Debug, Default)]
pub struct UnchangedChunks {
    /// The earlier manifest's chunks by the position of their first entry among its entries.
    earlier: rustc_hash::FxHashMap<usize, EntryChunk>,
    /// For each new entry in order: its position among the earlier entries if it is that entry
    /// unchanged, else [`UnchangedChunks::CHANGED`].
    origins: Vec<u32>,
}

impl UnchangedChunks {
    const CHANGED: u32 = u32::MAX;

    /// For a manifest whose entries, in order, the chunks `earlier` hold.
    pub fn new(earlier: &[EntryChunk]) -> Self {
        let mut start = 0usize;
        let mut by_start = rustc_hash::FxHashMap::default();
        for chunk in earlier {
            by_start.insert(start, chunk.clone());
            start = start.saturating_add(usize::try_from(chunk.entries).unwrap_or(usize::MAX));
        }
        Self {
            earlier: by_start,
            origins: Vec::new(),
        }
    }

    /// The next new entry is the earlier entry at `position` unchanged (`None`: it is not).
    pub fn push(&mut self, position: Option<usize>) {
        let origin = position
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(Self::CHANGED);
        self.origins.push(origin);
    }

    /// The earlier chunk (in `encoding`) whose entries are exactly the new entries from `start`
    /// on, of which there are `available`, if one is.
    fn starting_at(
        &self,
        start: usize,
        available: usize,
        encoding: Encoding,
    ) -> Option<&EntryChunk> {
        let first = *self.origins.get(start)?;
        if first == Self::CHANGED {
            return None;
        }
        let chunk = self.earlier.get(&(first as usize))?;
        let len = usize::try_from(chunk.entries)
            .ok()
            .filter(|&len| len <= available)?;
        let origins = self.origins.get(start..start + len)?;
        let consecutive = origins
            .iter()
            .zip(first..)
            .all(|(&origin, expected)| origin == expected);
        (consecutive && chunk.encoding == encoding).then_some(chunk)
    }
}

/// How each piece of a manifest's entries is stored: an earlier chunk referenced again, or the
/// entries to encode.
pub(crate) enum Piece<'a> {
    Unchanged(EntryChunk),
    Entries(&'a [Entry]),
}

/// [`split`], with each piece an earlier chunk where `unchanged` shows one holds it. Walked from
/// boundary to boundary: where the entries from a boundary on are exactly an earlier chunk,
/// one for one, that chunk is the next piece without hashing its paths — split decides a
/// chunk's end from its own entries alone, so from a boundary the same entries end at the same
/// place (its last entry is checked to end it, unless it is the last piece: a chunk that
/// ended an earlier manifest only because the entries did is split again when more follow). A no-change incremental of 2 000 000 files hashed
/// every path here, on one core.
pub(crate) fn pieces<'a>(
    entries: &'a [Entry],
    unchanged: Option<&UnchangedChunks>,
    encoding: Encoding,
) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let rest = &entries[start..];
        let earlier = unchanged
            .and_then(|u| u.starting_at(start, rest.len(), encoding))
            .filter(|chunk| {
                let len = chunk.entries as usize;
                len == rest.len() || ends_chunk(rest, len)
            });
        let piece = match earlier {
            Some(chunk) => (chunk.entries as usize, Piece::Unchanged(chunk.clone())),
            None => {
                let len = first_chunk_len(rest);
                (len, Piece::Entries(&rest[..len]))
            }
        };
        start += piece.0;
        pieces.push(piece.1);
    }
    pieces
}

/// Decompress a stored chunk into a buffer of the size its frame records: one allocation, never
/// grown or zeroed (the streaming decoder did both, a tenth of an incremental's page faults).
/// Streamed when the frame does not say, or claims more than a chunk can compress from.
pub(crate) fn decompress(stored: &[u8]) -> std::io::Result<Vec<u8>> {
    const MAX_RATIO: u64 = 64;
    match single_frame_size(stored) {
        Some(size) if size <= (stored.len() as u64).saturating_mul(MAX_RATIO) => {
            zstd::bulk::decompress(stored, size as usize)
        }
        _ => zstd::stream::decode_all(stored),
    }
}

/// Cut sorted entries into chunks (deterministic: the same entries always give the same chunks).
#[cfg(test)]
pub(crate) fn split(entries: &[Entry]) -> Vec<&[Entry]> {
    let mut chunks = Vec::new();
    let mut rest = entries;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(first_chunk_len(rest));
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

/// How many entries the first chunk of `entries` (which begin at a boundary) holds.
fn first_chunk_len(entries: &[Entry]) -> usize {
    (1..=entries.len())
        .find(|&len| ends_chunk(entries, len))
        .unwrap_or(entries.len())
}

/// Whether a chunk that begins at a boundary with `entries` ends after `len` of them.
fn ends_chunk(entries: &[Entry], len: usize) -> bool {
    let Some(last) = len.checked_sub(1).and_then(|i| entries.get(i)) else {
        return false;
    };
    len == MAX_ENTRIES || (len >= MIN_ENTRIES && path_hash(&last.path) & BOUNDARY_MASK == 0)
}

/// FNV-1a (64 bit) of a path: stable across releases and platforms, unlike `std`'s hasher, so
/// chunk boundaries (and hence chunk reuse) survive upgrades of the tool.
fn path_hash(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Serialise one chunk (JSON lines) and name it.
pub(crate) fn encode(entries: &[Entry], encoding: Encoding) -> Result<EncodedChunk> {
    let mut plaintext = Vec::with_capacity(entries.len() * 160);
    for entry in entries {
        serde_json::to_writer(&mut plaintext, entry).map_err(|e| Error::Corrupt {
            key: entry.path.clone(),
            reason: format!("cannot serialise the entry: {e}"),
        })?;
        plaintext.push(b'\n');
    }
    let reference = EntryChunk {
        blob: BlobId::of(&plaintext),
        encoding,
        entries: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size).sum(),
    };
    Ok(EncodedChunk {
        reference,
        plaintext,
    })
}

/// Parse a chunk's plaintext, checking it against its reference; `key` names it in errors.
pub(crate) fn decode(plaintext: &[u8], reference: &EntryChunk, key: &str) -> Result<Vec<Entry>> {
    let corrupt = |reason: String| Error::Corrupt {
        key: key.to_string(),
        reason,
    };
    let actual = BlobId::of(plaintext);
    if actual != reference.blob {
        return Err(corrupt(format!(
            "entry chunk content hashes to {actual}, its name says {}",
            reference.blob
        )));
    }
    // Sized from the header, never beyond what the plaintext can hold: not grown by copying.
    let room = usize::try_from(reference.entries).unwrap_or(0);
    let room = room.min(plaintext.len() / MIN_ENTRY_BYTES);
    let entries = match by_lines(plaintext, room) {
        Some(entries) => entries,
        None => {
            let mut entries = Vec::with_capacity(room);
            for entry in serde_json::Deserializer::from_slice(plaintext).into_iter::<Entry>() {
                entries
                    .push(entry.map_err(|e| corrupt(format!("entry chunk does not parse: {e}")))?);
            }
            entries
        }
    };
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    if entries.len() as u64 != reference.entries || bytes != reference.bytes {
        return Err(corrupt(format!(
            "entry chunk holds {} entries / {bytes} bytes, the manifest says {} / {}",
            entries.len(),
            reference.entries,
            reference.bytes
        )));
    }
    Ok(entries)
}

/// The entries of `plaintext` read a line each: in the written form by
/// [`entry_line::parse_first`], any other line by `serde_json`. `None` when a line is not one
/// entry on its own (then the whole chunk is parsed as a stream of JSON values, as before there
/// was this path, and its error, if any, is reported from there).
fn by_lines(plaintext: &[u8], room: usize) -> Option<Vec<Entry>> {
    let mut entries = Vec::with_capacity(room);
    let mut rest = plaintext;
    while !rest.is_empty() {
        if let Some((entry, after)) = entry_line::parse_first(rest) {
            entries.push(entry);
            rest = after;
            continue;
        }
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        if !line.is_empty() {
            entries.push(serde_json::from_slice(line).ok()?);
        }
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    Some(entries)
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

    fn entries(paths: impl Iterator<Item = String>) -> Vec<Entry> {
        paths
            .map(|path| Entry {
                blob: BlobId::of(path.as_bytes()),
                path,
                size: 7,
                encoding: Encoding::Raw,
                class: "parquet".into(),
                pack: None,
                facts: None,
            })
            .collect()
    }

    fn numbered(range: std::ops::Range<u32>) -> Vec<Entry> {
        let mut list = entries(range.map(|i| format!("dbs/1/2/{i:08}.parquet")));
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }

    #[test]
    fn chunks_cover_every_entry_within_bounds() {
        let all = numbered(0..100_000);
        let chunks = split(&all);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), all.len());
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| (MIN_ENTRIES..=MAX_ENTRIES).contains(&c.len())));
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let before = numbered(0..100_000);
        let mut after = before.clone();
        after.insert(
            50_000,
            entries(std::iter::once("dbs/1/2/00050000a.parquet".into())).remove(0),
        );
        let names = |list: &[Entry]| -> Vec<BlobId> {
            split(list)
                .iter()
                .map(|c| encode(c, Encoding::Zstd).unwrap().reference.blob)
                .collect()
        };
        let (old, new) = (names(&before), names(&after));
        let changed = new.iter().filter(|b| !old.contains(b)).count();
        assert!(changed <= 2, "{changed} of {} chunks changed", new.len());
    }

    /// What `pieces` gives, as (entries, earlier chunk referenced) per piece.
    fn shape(pieces: &[Piece<'_>]) -> Vec<(usize, Option<BlobId>)> {
        pieces
            .iter()
            .map(|piece| match piece {
                Piece::Unchanged(chunk) => (chunk.entries as usize, Some(chunk.blob)),
                Piece::Entries(entries) => (entries.len(), None),
            })
            .collect()
    }

    /// Walking past unchanged chunks unhashed gives what splitting everything and then looking
    /// for unchanged chunks gives: after insertions, removals, changed entries and appended
    /// ones (the earlier manifest's last chunk, which ended only because the entries did, is
    /// not taken as a whole when entries follow it).
    #[test]
    fn pieces_skip_unchanged_chunks_as_splitting_would_find_them() {
        let earlier = numbered(0..60_000);
        let earlier_chunks: Vec<EntryChunk> = split(&earlier)
            .iter()
            .map(|c| encode(c, Encoding::Zstd).unwrap().reference)
            .collect();
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..40 {
            let mut new: Vec<(Entry, Option<usize>)> = Vec::new();
            for (i, entry) in earlier.iter().enumerate() {
                match rng.u32(..40_000) {
                    0 => continue,
                    1 => {
                        let mut changed = entry.clone();
                        changed.size += 1;
                        new.push((changed, None));
                    }
                    2 => {
                        new.push((entry.clone(), Some(i)));
                        let mut inserted = entry.clone();
                        inserted.path.push('a');
                        new.push((inserted, None));
                    }
                    _ => new.push((entry.clone(), Some(i))),
                }
            }
            for extra in 0..round * 50 {
                new.extend(
                    entries(std::iter::once(format!("dbs/9/{extra:08}")))
                        .into_iter()
                        .map(|e| (e, None)),
                );
            }
            let mut unchanged = UnchangedChunks::new(&earlier_chunks);
            for (_, origin) in &new {
                unchanged.push(*origin);
            }
            let entries: Vec<Entry> = new.into_iter().map(|(e, _)| e).collect();
            let walked = shape(&pieces(&entries, Some(&unchanged), Encoding::Zstd));
            let mut at = 0;
            let by_splitting: Vec<_> = split(&entries)
                .iter()
                .map(|piece| {
                    let chunk = unchanged
                        .starting_at(at, piece.len(), Encoding::Zstd)
                        .filter(|chunk| chunk.entries as usize == piece.len());
                    at += piece.len();
                    (piece.len(), chunk.map(|c| c.blob))
                })
                .collect();
            assert_eq!(walked, by_splitting, "round {round}");
            let reused = walked.iter().filter(|(_, chunk)| chunk.is_some()).count();
            assert!(
                reused > 0 && reused < walked.len(),
                "round {round}: {reused} of {}",
                walked.len()
            );
        }
        let all_unchanged = {
            let mut unchanged = UnchangedChunks::new(&earlier_chunks);
            (0..earlier.len()).for_each(|i| unchanged.push(Some(i)));
            shape(&pieces(&earlier, Some(&unchanged), Encoding::Zstd))
        };
        assert!(all_unchanged.iter().all(|(_, chunk)| chunk.is_some()));
        assert_eq!(all_unchanged.len(), earlier_chunks.len());
    }

    #[test]
    fn decode_checks_hash_and_counts() {
        let all = numbered(0..10);
        let chunk = encode(&all, Encoding::Zstd).unwrap();
        assert_eq!(
            decode(&chunk.plaintext, &chunk.reference, "k").unwrap(),
            all
        );
        let mut damaged = chunk.plaintext.clone();
        damaged[3] ^= 1;
        assert!(decode(&damaged, &chunk.reference, "k").is_err());
        let mut wrong_count = chunk.reference.clone();
        wrong_count.entries += 1;
        let err = decode(&chunk.plaintext, &wrong_count, "k").unwrap_err();
        assert!(err.to_string().contains("holds 10 entries"), "{err}");
    }

    /// A reference that names `plaintext` and counts `entries`.
    fn naming(plaintext: &[u8], entries: &[Entry]) -> EntryChunk {
        EntryChunk {
            blob: BlobId::of(plaintext),
            encoding: Encoding::Raw,
            entries: entries.len() as u64,
            bytes: entries.iter().map(|e| e.size).sum(),
        }
    }

    /// Lines the fast reader leaves to `serde_json` (facts, escapes, a blank line, spaces) are
    /// read among written ones in order; an entry over several lines, or a line that parses as
    /// nothing, sends the whole chunk to the stream parser, as before the fast reader.
    #[test]
    fn every_line_form_decodes_in_order_and_damage_is_reported_as_before() {
        let mut all = numbered(0..6);
        all[1].facts = Some(Box::new(serde_json::json!({"kind": "k", "n": [1, 2]})));
        all[3].path = "dbs/1/2/quote\"back\\slash\ttab.parquet".into();
        let mut plaintext = encode(&all, Encoding::Raw).unwrap().plaintext;
        plaintext.extend_from_slice(b"\n");
        let spaced = serde_json::to_string(&all[0]).unwrap().replace(",", ", ");
        plaintext.extend_from_slice(format!("  {spaced}  \n").as_bytes());
        let mut expected = all.clone();
        expected.push(all[0].clone());
        assert_eq!(
            decode(&plaintext, &naming(&plaintext, &expected), "k").unwrap(),
            expected
        );

        let pretty: Vec<u8> = all
            .iter()
            .flat_map(|e| serde_json::to_vec_pretty(e).unwrap())
            .collect();
        assert_eq!(decode(&pretty, &naming(&pretty, &all), "k").unwrap(), all);

        let mut broken = encode(&all, Encoding::Raw).unwrap().plaintext;
        broken.extend_from_slice(b"{\"path\":\"x\"}\n");
        let err = decode(&broken, &naming(&broken, &all), "k").unwrap_err();
        assert!(
            err.to_string().contains("entry chunk does not parse"),
            "{err}"
        );
    }
}
