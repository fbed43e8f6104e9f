//! Reading a local repository's manifests as files, without the tool's repository code: the
//! steps DESIGN.md §3.12 gives an operator (read the manifest, then each entry chunk named in it:
//! `zstd -d < blobs/<hh>/<blob>.zst`, one JSON entry per line; an entry's stored bytes are its
//! blob file, or the slice of its pack `packs/<hh>/<pack>` it names). Tests use it to look at what
//! a run stored, and thereby keep that recipe true.

use std::path::Path;

/// The manifest document of backup `id` in the (unencrypted, local) repository `repo`.
pub fn manifest_document(repo: &Path, id: &str) -> serde_json::Value {
    document(&repo.join("manifests").join(format!("{id}.json")))
}

fn document(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read manifest {}: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("manifest {} does not parse: {e}", path.display()))
}

/// Every entry of backup `id`, in order: inline (format 1) or from its entry chunks (format 2).
pub fn manifest_entries(repo: &Path, id: &str) -> Vec<serde_json::Value> {
    entries_of(repo, &manifest_document(repo, id))
}

/// Every entry of the progress record `partial/<file name>`.
pub fn partial_entries(repo: &Path, file_name: &str) -> Vec<serde_json::Value> {
    entries_of(repo, &document(&repo.join("partial").join(file_name)))
}

fn entries_of(repo: &Path, document: &serde_json::Value) -> Vec<serde_json::Value> {
    let id = document["id"].as_str().unwrap_or_default();
    if let Some(entries) = document["entries"].as_array() {
        return entries.clone();
    }
    let chunks = document["entry_chunks"]
        .as_array()
        .unwrap_or_else(|| panic!("manifest {id} has neither entries nor entry_chunks"));
    chunks
        .iter()
        .flat_map(|chunk| chunk_entries(repo, chunk))
        .collect()
}

fn chunk_entries(repo: &Path, chunk: &serde_json::Value) -> Vec<serde_json::Value> {
    let blob = chunk["blob"].as_str().unwrap_or_default();
    assert_eq!(
        chunk["encoding"], "zstd",
        "unencrypted chunks only: {chunk}"
    );
    let path = repo
        .join("blobs")
        .join(blob.get(..2).unwrap_or_default())
        .join(format!("{blob}.zst"));
    let stored = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read entry chunk {}: {e}", path.display()));
    let plain = zstd::stream::decode_all(stored.as_slice())
        .unwrap_or_else(|e| panic!("entry chunk {} is not zstd: {e}", path.display()));
    serde_json::Deserializer::from_slice(&plain)
        .into_iter::<serde_json::Value>()
        .map(|line| line.unwrap_or_else(|e| panic!("entry chunk {}: {e}", path.display())))
        .collect()
}

/// Where an entry's stored bytes are: its blob file, or its pack and the slice there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredAt {
    /// The blob file, or the pack file.
    pub file: std::path::PathBuf,
    /// Where the stored bytes begin in it.
    pub offset: u64,
    /// How many there are (`None`: the whole file).
    pub length: Option<u64>,
}

impl StoredAt {
    /// The stored bytes.
    pub fn read(&self) -> Vec<u8> {
        let bytes = std::fs::read(&self.file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.file.display()));
        let start = self.offset as usize;
        let end = self.length.map_or(bytes.len(), |l| start + l as usize);
        bytes
            .get(start..end)
            .unwrap_or_else(|| panic!("{} ends before {end}", self.file.display()))
            .to_vec()
    }

    /// Overwrite the stored bytes with `#` (the file keeps its length, a pack its other blobs).
    pub fn damage(&self) {
        let mut bytes = std::fs::read(&self.file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.file.display()));
        let start = self.offset as usize;
        let end = self.length.map_or(bytes.len(), |l| start + l as usize);
        bytes[start..end].fill(b'#');
        std::fs::write(&self.file, &bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.file.display()));
    }
}

/// Where the stored bytes of `entry` (unencrypted) are in the local repository `repo`.
pub fn stored_at(repo: &Path, entry: &serde_json::Value) -> StoredAt {
    let fanned = |top: &str, name: &str| {
        repo.join(top)
            .join(name.get(..2).unwrap_or_default())
            .join(name)
    };
    if let Some(pack) = entry.get("pack") {
        let id = pack["id"].as_str().unwrap_or_default();
        return StoredAt {
            file: fanned("packs", id),
            offset: pack["offset"].as_u64().unwrap_or_default(),
            length: pack["length"].as_u64(),
        };
    }
    let blob = entry["blob"].as_str().unwrap_or_default();
    let suffix = match entry["encoding"].as_str().unwrap_or("raw") {
        "zstd" => ".zst",
        "raw" => "",
        other => panic!("unencrypted repositories only, found encoding {other}"),
    };
    StoredAt {
        file: fanned("blobs", &format!("{blob}{suffix}")),
        offset: 0,
        length: None,
    }
}

/// Every entry of every backup in the local repository `repo`.
pub fn all_entries(repo: &Path) -> Vec<serde_json::Value> {
    let mut ids: Vec<String> = std::fs::read_dir(repo.join("manifests"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".json")
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.iter()
        .flat_map(|id| manifest_entries(repo, id))
        .collect()
}

/// The file names (`<64 hex>[.zst]`) of every blob file and pack backup `id` references: its
/// entries' blobs (or their packs) and its entry chunks.
pub fn referenced_blob_files(repo: &Path, id: &str) -> std::collections::BTreeSet<String> {
    let file = |reference: &serde_json::Value| {
        let at = stored_at(repo, reference);
        at.file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let document = manifest_document(repo, id);
    let chunks = document["entry_chunks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries_of(repo, &document)
        .iter()
        .chain(chunks.iter())
        .map(file)
        .collect()
}
