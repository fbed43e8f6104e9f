//! A reader for entry lines in exactly the form this tool writes them (DESIGN §3.6): a manifest
//! of 2 000 000 entries holds half a gigabyte of JSON lines, and `serde_json`'s general parser
//! took 0.55 µs an entry — most of the time an incremental spends loading the previous backup.
//! The written form is fixed (keys in [`Entry`]'s field order, no whitespace, the defaults left
//! out), so a line in that form is read here field by field; anything else — escapes in a
//! string, a field this reader does not know (`facts`), another order, whitespace, a number
//! `serde_json` would refuse — gives `None`, and the caller parses that line with `serde_json`.
//! Every line this reader accepts gives the entry `serde_json` gives for it (the tests compare
//! the two on written, damaged and hand-made lines).

use crate::layout::Encoding;
use crate::manifest::{Entry, PackSlice};
use crate::BlobId;
use serde::Deserialize;

/// The entry on the first line of `text` and the text after that line, when the line is in the
/// written form; `None` for any other line, valid or not.
pub(crate) fn parse_first(text: &[u8]) -> Option<(Entry, &[u8])> {
    let mut line = Cursor(text);
    line.expect(b"{\"path\":")?;
    let path = line.string()?;
    line.expect(b",\"size\":")?;
    let size = line.number()?;
    line.expect(b",\"blob\":")?;
    let blob = line.blob_id()?;
    let encoding = if line.eat(b",\"encoding\":") {
        Encoding::deserialize(
            serde::de::value::StrDeserializer::<serde::de::value::Error>::new(line.string()?),
        )
        .ok()?
    } else {
        Encoding::Raw
    };
    line.expect(b",\"class\":")?;
    let class = line.string()?;
    let pack = if line.eat(b",\"pack\":{\"id\":") {
        let pack = line.blob_id()?;
        line.expect(b",\"offset\":")?;
        let offset = line.number()?;
        line.expect(b",\"length\":")?;
        let length = line.number()?;
        line.expect(b"}")?;
        Some(Box::new(PackSlice {
            pack,
            offset,
            length,
        }))
    } else {
        None
    };
    line.expect(b"}")?;
    let after = match line.0.split_first() {
        None => line.0,
        Some((b'\n', after)) => after,
        Some(_) => return None,
    };
    let entry = Entry {
        path: path.to_string(),
        size,
        blob,
        encoding,
        class: class.to_string(),
        pack,
        facts: None,
    };
    Some((entry, after))
}

/// What is left of a line to read.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// Step over `text` if the line goes on with it.
    fn eat(&mut self, text: &[u8]) -> bool {
        match self.0.strip_prefix(text) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, text: &[u8]) -> Option<()> {
        self.eat(text).then_some(())
    }

    /// A string without escapes or control characters (either makes `None`).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b"\"")?;
        let end = self.0.iter().position(|&b| ENDS_PLAIN_STRING[b as usize])?;
        if self.0[end] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&self.0[..end]).ok()?;
        self.0 = &self.0[end + 1..];
        Some(text)
    }

    /// An unsigned integer as JSON writes it: digits, no leading zero, within `u64`.
    fn number(&mut self) -> Option<u64> {
        let digits = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (text, rest) = self.0.split_at(digits);
        if text.is_empty() || (text[0] == b'0' && digits > 1) {
            return None;
        }
        let mut value: u64 = 0;
        for &digit in text {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
        }
        self.0 = rest;
        Some(value)
    }

    /// A blob id: a string of exactly 64 lowercase hex digits.
    fn blob_id(&mut self) -> Option<BlobId> {
        let (digits, rest) = self.0.strip_prefix(b"\"")?.split_at_checked(64)?;
        self.0 = rest.strip_prefix(b"\"")?;
        BlobId::from_hex_digits(digits)
    }
}

/// The bytes that end a string this reader takes whole: its closing quote, or what it leaves to
/// `serde_json` (an escape, a control character, which JSON does not allow unescaped).
const ENDS_PLAIN_STRING: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(seed: &str) -> BlobId {
        BlobId::of(seed.as_bytes())
    }

    /// The entry on a line that is all of the text.
    fn parse(line: &[u8]) -> Option<Entry> {
        parse_first(line).map(|(entry, after)| {
            assert!(after.is_empty());
            entry
        })
    }

    fn written(entry: &Entry) -> Vec<u8> {
        serde_json::to_vec(entry).unwrap()
    }

    /// Entries of every shape the writer gives: each encoding, with and without a pack slice,
    /// sizes and offsets at their bounds, paths with any plain character.
    fn written_shapes() -> Vec<Entry> {
        let encodings = [
            Encoding::Raw,
            Encoding::Zstd,
            Encoding::Age,
            Encoding::ZstdAge,
        ];
        let mut entries = Vec::new();
        for (i, encoding) in encodings.into_iter().enumerate() {
            for pack in [false, true] {
                entries.push(Entry {
                    path: format!("dbs/cpu-{i}/mem ü/2026-10-0{i}/00-1{i}/{i}.parquet"),
                    size: [0, 1, 10, u64::MAX][i],
                    blob: id(&format!("blob {i}")),
                    encoding,
                    class: "parquet".into(),
                    pack: pack.then(|| {
                        Box::new(PackSlice {
                            pack: id(&format!("pack {i}")),
                            offset: [0, 7, 4_294_967_296, u64::MAX][i],
                            length: [1, 0, 99, u64::MAX][i],
                        })
                    }),
                    facts: None,
                });
            }
        }
        entries
    }

    #[test]
    fn written_lines_read_as_serde_reads_them() {
        for entry in written_shapes() {
            let line = written(&entry);
            let serde: Entry = serde_json::from_slice(&line).unwrap();
            assert_eq!(
                parse(&line),
                Some(serde.clone()),
                "{}",
                String::from_utf8_lossy(&line)
            );
            assert_eq!(serde, entry);
        }
    }

    /// Lines this reader leaves to `serde_json`, valid ones among them: never a different entry.
    #[test]
    fn other_lines_are_left_to_serde() {
        let mut with_facts = written_shapes().remove(0);
        with_facts.facts = Some(Box::new(serde_json::json!({"kind": "x"})));
        let mut escaped = written_shapes().remove(1);
        escaped.path = "dbs/a\"b/c\\d/\u{1}.parquet".into();
        for entry in [with_facts, escaped] {
            let line = written(&entry);
            assert_eq!(parse(&line), None, "{}", String::from_utf8_lossy(&line));
            assert_eq!(serde_json::from_slice::<Entry>(&line).unwrap(), entry);
        }
        let base = String::from_utf8(written(&written_shapes()[5])).unwrap();
        let variants = [
            base.replacen(",\"size\":", ", \"size\":", 1),
            base.replacen("{", " {", 1),
            base.replacen(",\"size\":10", ",\"size\":010", 1),
            base.replacen(",\"size\":10", ",\"size\":1e1", 1),
            base.replacen(",\"size\":10", ",\"size\":18446744073709551616", 1),
            base.replacen(",\"size\":10", ",\"size\":-1", 1),
            base.replacen("\"class\"", "\"other\":1,\"class\"", 1),
            base.replacen("}", "}x", 1),
            base.replacen("\"blob\":\"", "\"blob\":\"A", 1),
            base.replacen("\"encoding\":\"age\"", "\"encoding\":\"gzip\"", 1),
            base.clone() + " ",
            base[..base.len() - 1].to_string(),
        ];
        for line in variants {
            assert_ne!(line, base);
            assert_eq!(parse(line.as_bytes()), None, "{line}");
        }
        // Damage anywhere in a written line: whatever this reader still takes, serde reads
        // the same way.
        let mut rng = fastrand::Rng::with_seed(7);
        for entry in written_shapes() {
            let line = written(&entry);
            for _ in 0..2_000 {
                let mut damaged = line.clone();
                let at = rng.usize(..damaged.len());
                damaged[at] = *rng.choice(b"0123456789abcdefA\\\"{},: \n\x01\xff").unwrap();
                if let Some((read, after)) = parse_first(&damaged) {
                    let serde: Entry =
                        serde_json::from_slice(&damaged[..damaged.len() - after.len()])
                            .unwrap_or_else(|e| {
                                panic!("{e}: {}", String::from_utf8_lossy(&damaged))
                            });
                    assert_eq!(read, serde, "{}", String::from_utf8_lossy(&damaged));
                }
            }
        }
        // The default written out is read as serde reads it.
        let raw = base.replacen("\"encoding\":\"age\"", "\"encoding\":\"raw\"", 1);
        assert_eq!(
            parse(raw.as_bytes()),
            Some(serde_json::from_str::<Entry>(&raw).unwrap())
        );
    }
}
