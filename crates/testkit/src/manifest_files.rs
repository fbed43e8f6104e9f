//! Reading a local repository's manifests as files, without the tool's repository code: the
//! steps DESIGN.md §3.12 gives an operator (read the manifest, then each entry chunk named in it:
//! `zstd -d < blobs/<hh>/<blob>.zst`, one JSON entry per line). Tests use it to look at what a
//! run stored, and thereby keep that recipe true.

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

/// The file names (`<64 hex>[.zst]`) of every blob backup `id` references: its entries' blobs
/// and its entry chunks.
pub fn referenced_blob_files(repo: &Path, id: &str) -> std::collections::BTreeSet<String> {
    let file = |reference: &serde_json::Value| {
        let suffix = match reference["encoding"].as_str().unwrap_or("raw") {
            "zstd" => ".zst",
            "raw" => "",
            other => panic!("unencrypted repositories only, found encoding {other}"),
        };
        format!("{}{suffix}", reference["blob"].as_str().unwrap_or_default())
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
