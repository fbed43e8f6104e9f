//! [`Repository`]: opening or initialising a repository, listing and loading manifests,
//! committing a manifest, and the index of blobs present.

use crate::config::{RepoConfig, FORMAT_VERSION};
use crate::keys::{KeySource, Keys};
use crate::layout::{self, Encoding};
use crate::manifest::PackSlice;
use crate::{BackupId, BlobId, Entry, Error, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Fan-out directories of `blobs/` listed at once.
const BLOB_LISTINGS: usize = 16;
/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    location: String,
    config: RepoConfig,
    keys: Option<Keys>,
}

/// The blobs present in a repository. Blob objects: (id, encoding) → stored size, from one
/// listing of `blobs/`. Blobs in packs: (id, encoding) → their slice, known from the entries
/// of manifests (a pack's content is not in its name), with the packs present and their
/// sizes (from a listing of `packs/`, or at least what those entries say). The same content
/// may be stored in both encodings (written by runs with different compression settings).
#[derive(Debug, Clone, Default)]
pub struct BlobIndex {
    // Keys are BLAKE3 hashes: a cheap hash of them spreads as well as SipHash, at a fraction of
    // its cost (an incremental looks every object up here).
    sizes: FxHashMap<(BlobId, Encoding), u64>,
    /// Where each packed blob lies, its pack named by number: a pack holds hundreds of blobs,
    /// and its 32-byte id once per blob made this most of an incremental's blob index (88 bytes
    /// a blob; 56 now, and a 4-byte position).
    packed: PackedBlobs,
    /// The packs present, with their sizes, by number.
    packs: Vec<(BlobId, u64)>,
    /// Each pack's number.
    pack_numbers: FxHashMap<BlobId, u32>,
}

/// A packed blob's place: its pack's number in [`BlobIndex::packs`], and the offset and length
/// in 32-bit halves (4-byte aligned after the 33-byte key, where `u64`s would pad it to 40).
#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    offset: [u32; 2],
    length: [u32; 2],
}

/// The blobs in packs, and where each lies: in the order they were added, found through a table
/// of their positions. Dense, where a map held each place in a slot of a power-of-two table
/// written at random: at 2 000 000 packed blobs (an incremental's index of its previous
/// backup) 239 MB of map, against 112 MB written in order and 21 MB of positions.
#[derive(Debug, Clone, Default)]
struct PackedBlobs {
    places: Vec<(BlobId, Encoding, Slot)>,
    /// Positions in `places`, hashed by [`packed_hash`].
    by_id: hashbrown::HashTable<u32>,
}

impl PackedBlobs {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            places: Vec::with_capacity(capacity),
            by_id: hashbrown::HashTable::with_capacity(capacity),
        }
    }

    fn reserve(&mut self, additional: usize) {
        self.places.reserve(additional);
        let places = &self.places;
        self.by_id.reserve(additional, |&known| {
            let (id, encoding, _) = &places[known as usize];
            packed_hash(id, *encoding)
        });
    }

    fn get(&self, id: &BlobId, encoding: Encoding) -> Option<&Slot> {
        let at = self.by_id.find(packed_hash(id, encoding), |&at| {
            let (known, known_encoding, _) = &self.places[at as usize];
            known == id && *known_encoding == encoding
        })?;
        Some(&self.places[*at as usize].2)
    }

    /// Add a blob's place unless it is known already (the first place stays). Past `u32::MAX`
    /// blobs, more are not added: such a blob is stored again rather than found.
    fn insert_if_absent(&mut self, id: BlobId, encoding: Encoding, slot: Slot) {
        let Ok(at) = u32::try_from(self.places.len()) else {
            return;
        };
        if self.get(&id, encoding).is_some() {
            return;
        }
        let places = &self.places;
        self.by_id
            .insert_unique(packed_hash(&id, encoding), at, |&known| {
                let (id, encoding, _) = &places[known as usize];
                packed_hash(id, *encoding)
            });
        self.places.push((id, encoding, slot));
    }

    fn len(&self) -> usize {
        self.places.len()
    }

    fn is_empty(&self) -> bool {
        self.places.is_empty()
    }
}

/// A blob id is a BLAKE3 hash: its first eight bytes hash it already.
fn packed_hash(id: &BlobId, encoding: Encoding) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(first) ^ encoding as u64
}

fn halves(value: u64) -> [u32; 2] {
    [(value >> 32) as u32, value as u32]
}

fn whole(halves: [u32; 2]) -> u64 {
    (u64::from(halves[0]) << 32) | u64::from(halves[1])
}

/// Encodings in the order a writer prefers to reuse them.
const PREFERRED: [Encoding; 4] = [
    Encoding::Raw,
    Encoding::Zstd,
    Encoding::Age,
    Encoding::ZstdAge,
];

impl BlobIndex {
    /// An encoding in which the content is present, if any (raw preferred).
    pub fn find(&self, id: &BlobId) -> Option<Encoding> {
        self.find_stored(id).map(|(encoding, _)| encoding)
    }

    /// An encoding in which the content is present and, for a blob in a pack, where (raw
    /// preferred; a blob object before a packed copy).
    pub fn find_stored(&self, id: &BlobId) -> Option<(Encoding, Option<PackSlice>)> {
        PREFERRED.into_iter().find_map(|e| {
            if self.sizes.contains_key(&(*id, e)) {
                return Some((e, None));
            }
            self.packed
                .get(id, e)
                .map(|slot| self.slice_of(slot))
                .filter(|slice| self.holds_slice(slice))
                .map(|slice| (e, Some(slice)))
        })
    }

    /// Whether the content is present in any encoding.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.find_stored(id).is_some()
    }

    /// Stored size of a blob object in an encoding.
    pub fn size(&self, id: &BlobId, encoding: Encoding) -> Option<u64> {
        self.sizes.get(&(*id, encoding)).copied()
    }

    /// Whether the stored blob an entry names is present: its pack, long enough to hold its
    /// slice, or its blob object.
    pub fn holds(&self, entry: &Entry) -> bool {
        match &entry.pack {
            Some(slice) => self.holds_slice(slice),
            None => self.size(&entry.blob, entry.encoding).is_some(),
        }
    }

    /// Whether the pack of `slice` is present and reaches its end.
    pub fn holds_slice(&self, slice: &PackSlice) -> bool {
        let size = self.pack_size(&slice.pack);
        slice
            .end()
            .is_some_and(|end| size.is_some_and(|size| size >= end))
    }

    /// Size of a pack present (as listed, or at least as far as known entries reach).
    pub fn pack_size(&self, pack: &BlobId) -> Option<u64> {
        let number = *self.pack_numbers.get(pack)?;
        self.packs.get(number as usize).map(|(_, size)| *size)
    }

    fn slice_of(&self, slot: &Slot) -> PackSlice {
        PackSlice {
            pack: self.packs[slot.pack as usize].0,
            offset: whole(slot.offset),
            length: whole(slot.length),
        }
    }

    /// The number of `pack`, numbered now if it is new (with size 0).
    fn pack_number(&mut self, pack: BlobId) -> u32 {
        let next = u32::try_from(self.packs.len()).unwrap_or(u32::MAX);
        match self.pack_numbers.entry(pack) {
            std::collections::hash_map::Entry::Occupied(known) => *known.get(),
            std::collections::hash_map::Entry::Vacant(new) => {
                self.packs.push((pack, 0));
                *new.insert(next)
            }
        }
    }

    /// An empty index with room for `blobs` blob objects and `packed` blobs in packs.
    pub fn with_capacity(blobs: usize, packed: usize) -> Self {
        Self {
            sizes: FxHashMap::with_capacity_and_hasher(blobs, Default::default()),
            packed: PackedBlobs::with_capacity(packed),
            packs: Vec::new(),
            pack_numbers: FxHashMap::default(),
        }
    }

    /// Room for `blobs` more blob objects and `packed` more blobs in packs.
    pub fn reserve(&mut self, blobs: usize, packed: usize) {
        self.sizes.reserve(blobs);
        self.packed.reserve(packed);
    }

    /// Record a blob object written after the listing.
    pub fn insert(&mut self, id: BlobId, encoding: Encoding, size: u64) {
        self.sizes.insert((id, encoding), size);
    }

    /// Record where an entry's blob is stored: as a blob object (its stored size unknown here,
    /// `stored` stands for it) or in a pack, which is then known present at least that far.
    pub fn insert_entry(&mut self, entry: &Entry, stored: u64) {
        match &entry.pack {
            Some(slice) => self.insert_packed(entry.blob, entry.encoding, **slice),
            None => self.insert(entry.blob, entry.encoding, stored),
        }
    }

    /// Record a blob stored in a pack (the pack known present at least to the slice's end).
    pub fn insert_packed(&mut self, id: BlobId, encoding: Encoding, slice: PackSlice) {
        let number = self.pack_number(slice.pack);
        self.packed.insert_if_absent(
            id,
            encoding,
            Slot {
                pack: number,
                offset: halves(slice.offset),
                length: halves(slice.length),
            },
        );
        let end = slice.end().unwrap_or(0);
        let size = &mut self.packs[number as usize].1;
        *size = (*size).max(end);
    }

    /// Record a pack present, with its size.
    pub fn insert_pack(&mut self, pack: BlobId, size: u64) {
        let number = self.pack_number(pack);
        self.packs[number as usize].1 = size;
    }

    /// Number of blobs (blob objects and blobs known in packs).
    pub fn len(&self) -> usize {
        self.sizes.len() + self.packed.len()
    }

    /// Whether there are no blobs.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty() && self.packed.is_empty()
    }

    /// Total stored bytes of the blob objects and packs.
    pub fn total_bytes(&self) -> u64 {
        self.sizes.values().sum::<u64>() + self.packs.iter().map(|(_, size)| size).sum::<u64>()
    }
}

impl Repository {
    /// Open the repository at `store` (`location` names it in messages); an encrypted one
    /// needs its key (see [`Repository::open_with`]).
    pub async fn open(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Result<Self> {
        Self::open_with(store, location, &KeySource::default()).await
    }

    /// Open the repository, unlocking its key from `keys` when it is encrypted.
    pub async fn open_with(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        keys: &KeySource,
    ) -> Result<Self> {
        let location = location.into();
        let config = match read_config(store.as_ref(), &location).await? {
            Some(config) => config,
            None => return Err(Error::NotFound { location }),
        };
        let keys = match &config.encryption {
            Some(encryption) => {
                let sealed =
                    read_optional(store.as_ref(), &Path::from(layout::PASSPHRASE_KEY)).await?;
                Some(crate::keys::unlock(encryption, keys, sealed.as_deref())?)
            }
            None => None,
        };
        Ok(Repository {
            store,
            location,
            config,
            keys,
        })
    }

    /// Open the repository, initialising a plain (unencrypted) one first when the location is
    /// empty. Refuses a non-empty location without a config. Returns whether it was created.
    pub async fn open_or_init(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        tool: &str,
    ) -> Result<(Self, bool)> {
        Self::open_or_init_with(store, location, tool, &KeySource::default()).await
    }

    /// [`Repository::open_or_init`] with the key of an existing encrypted repository.
    pub async fn open_or_init_with(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        tool: &str,
        keys: &KeySource,
    ) -> Result<(Self, bool)> {
        let location = location.into();
        if let Some(repo) = Self::open_if_any_with(store.clone(), location.clone(), keys).await? {
            return Ok((repo, false));
        }
        match Self::init(store.clone(), location.clone(), tool, None).await {
            Ok(repo) => Ok((repo, true)),
            // Another process initialised it first: use theirs.
            Err(Error::Exists { .. }) => Ok((Self::open_with(store, location, keys).await?, false)),
            Err(e) => Err(e),
        }
    }

    /// Open the repository at `location` if there is one; `None` where the location is empty
    /// (a repository would be initialised there). A location that holds other things is
    /// [`Error::Foreign`]. Writes nothing.
    pub async fn open_if_any_with(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        keys: &KeySource,
    ) -> Result<Option<Self>> {
        let location = location.into();
        if read_config(store.as_ref(), &location).await?.is_some() {
            return Ok(Some(Self::open_with(store, location, keys).await?));
        }
        match first_object(store.as_ref()).await? {
            None => Ok(None),
            Some(example) => Err(Error::Foreign { location, example }),
        }
    }

    /// Initialise a repository in an empty location; encrypted when `encrypt` gives the key
    /// source (a key file, created if missing, and/or a passphrase).
    pub async fn init(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        tool: &str,
        encrypt: Option<&KeySource>,
    ) -> Result<Self> {
        let location = location.into();
        if let Some(example) = first_object(store.as_ref()).await? {
            if read_config(store.as_ref(), &location).await?.is_some() {
                return Err(Error::Exists {
                    id: format!("repository at {location}"),
                });
            }
            return Err(Error::Foreign { location, example });
        }
        let mut config = RepoConfig::new(tool);
        let keys = match encrypt {
            Some(source) => {
                let (keys, encryption, sealed) = crate::keys::new_repository_key(source)?;
                if let Some(sealed) = sealed {
                    let key = Path::from(layout::PASSPHRASE_KEY);
                    store
                        .put_opts(&key, PutPayload::from(sealed), create_only())
                        .await
                        .map_err(|e| Error::store(key, e))?;
                }
                config.encryption = Some(encryption);
                Some(keys)
            }
            None => None,
        };
        let body = serde_json::to_vec_pretty(&config).map_err(|e| Error::Corrupt {
            key: layout::CONFIG.into(),
            reason: e.to_string(),
        })?;
        let key = Path::from(layout::CONFIG);
        match store
            .put_opts(&key, PutPayload::from(body), create_only())
            .await
        {
            Ok(_) => Ok(Repository {
                store,
                location,
                config,
                keys,
            }),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::Exists {
                id: format!("repository at {location}"),
            }),
            Err(e) => Err(Error::store(key, e)),
        }
    }

    /// The unlocked key, for an encrypted repository.
    pub fn keys(&self) -> Option<&Keys> {
        self.keys.as_ref()
    }

    /// Serialise a JSON document as stored: encrypted in an encrypted repository.
    pub(crate) fn encode_json<T: serde::Serialize>(
        &self,
        value: &T,
        key: &Path,
    ) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        match &self.keys {
            Some(keys) => crate::keys::seal(keys, &json),
            None => Ok(json),
        }
    }

    /// Parse a stored JSON document.
    pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        key: &Path,
    ) -> Result<T> {
        let plain;
        let json = match &self.keys {
            Some(keys) => {
                plain = crate::keys::open(keys, bytes, key.as_ref())?;
                plain.as_slice()
            }
            None => bytes,
        };
        serde_json::from_slice(json).map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// The underlying store (rooted at the repository).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where the repository is, as given by the user.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The repository config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// List every blob object and pack present (one paged listing of each of `blobs/` and
    /// `packs/`). Which blobs a pack holds its entries say: see [`BlobIndex`].
    pub async fn blob_index(&self) -> Result<BlobIndex> {
        let mut index = BlobIndex::default();
        for meta in self.list_fanned_out(layout::BLOBS).await? {
            if let Some((id, encoding)) = layout::blob_id_of(&meta.location) {
                index.insert(id, encoding, meta.size);
            }
        }
        for meta in self.list_fanned_out(layout::PACKS).await? {
            if let Some(id) = layout::pack_id_of(&meta.location) {
                index.insert_pack(id, meta.size);
            }
        }
        Ok(index)
    }

    /// Every object under `prefix`, whose 256 fan-out directories (`<prefix>/<hh>/`) are
    /// listed in parallel.
    async fn list_fanned_out(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        use futures::StreamExt;
        let prefix = Path::from(prefix);
        let store_error = |e| Error::store(&prefix, e);
        let top = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(store_error)?;
        let store = &self.store;
        let listed: Vec<Vec<ObjectMeta>> = futures::stream::iter(top.common_prefixes)
            .map(|p| async move { store.list(Some(&p)).try_collect::<Vec<_>>().await })
            .buffer_unordered(BLOB_LISTINGS)
            .try_collect()
            .await
            .map_err(store_error)?;
        Ok(top
            .objects
            .into_iter()
            .chain(listed.into_iter().flatten())
            .collect())
    }

    /// Every object under a top-level prefix of the repository (one paged listing).
    /// (Blob listings run [`BLOB_LISTINGS`] fan-out directories at a time.)
    pub(crate) async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = Path::from(prefix);
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::store(&prefix, e))
    }

    /// Every backup id, oldest first.
    pub async fn list_backups(&self) -> Result<Vec<BackupId>> {
        let metas = self.list_prefix(layout::MANIFESTS).await?;
        let mut ids: Vec<BackupId> = metas
            .iter()
            .filter_map(|m| layout::backup_id_of(&m.location))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Resolve `latest` or a backup id to an existing backup.
    pub async fn resolve(&self, spec: &str) -> Result<BackupId> {
        let ids = self.list_backups().await?;
        if spec == "latest" {
            return ids.last().cloned().ok_or_else(|| Error::NoBackups {
                location: self.location().to_string(),
            });
        }
        let id: BackupId = spec
            .parse()
            .map_err(|_| Error::NoSuchBackup { id: spec.into() })?;
        if ids.contains(&id) {
            Ok(id)
        } else {
            Err(Error::NoSuchBackup { id: spec.into() })
        }
    }
}

pub(crate) fn create_only() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    }
}

async fn read_config(store: &dyn ObjectStore, location: &str) -> Result<Option<RepoConfig>> {
    let key = Path::from(layout::CONFIG);
    let bytes = match store.get(&key).await {
        Ok(result) => result.bytes().await.map_err(|e| Error::store(&key, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store(format!("{location}/{key}"), e)),
    };
    let config: RepoConfig = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        key: format!("{location}/{key}"),
        reason: e.to_string(),
    })?;
    if config.format_version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: config.format_version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(Some(config))
}

pub(crate) async fn read_optional(store: &dyn ObjectStore, key: &Path) -> Result<Option<Bytes>> {
    match store.get(key).await {
        Ok(result) => Ok(Some(
            result.bytes().await.map_err(|e| Error::store(key, e))?,
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::store(key, e)),
    }
}

async fn first_object(store: &dyn ObjectStore) -> Result<Option<String>> {
    let mut listing = store.list(None);
    let first = listing
        .try_next()
        .await
        .map_err(|e| Error::store("(repository root)", e))?;
    Ok(first.map(|m| m.location.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::Summary;
    use crate::{Entry, Manifest};
    use object_store::memory::InMemory;

    #[test]
    fn packed_blobs_are_found_where_they_lie_while_their_pack_reaches_them() {
        let (pack, other) = (BlobId([1; 32]), BlobId([2; 32]));
        let slice = |pack, offset, length| PackSlice {
            pack,
            offset,
            length,
        };
        let far = (1u64 << 33) + 5;
        let mut index = BlobIndex::with_capacity(0, 3);
        index.insert_packed(BlobId([10; 32]), Encoding::Zstd, slice(pack, 0, 100));
        index.insert_packed(BlobId([11; 32]), Encoding::Raw, slice(pack, far, 7));
        index.insert_packed(BlobId([12; 32]), Encoding::Raw, slice(other, 40, 2));
        assert_eq!(index.len(), 3);
        assert_eq!(
            index.find_stored(&BlobId([11; 32])),
            Some((Encoding::Raw, Some(slice(pack, far, 7))))
        );
        assert_eq!(
            index.find_stored(&BlobId([10; 32])),
            Some((Encoding::Zstd, Some(slice(pack, 0, 100))))
        );
        // Known present as far as its entries reach; a listing says how far it really does.
        assert_eq!(index.pack_size(&pack), Some(far + 7));
        assert_eq!(index.pack_size(&other), Some(42));
        assert_eq!(index.total_bytes(), far + 7 + 42);
        index.insert_pack(pack, 100);
        assert!(index.holds_slice(&slice(pack, 0, 100)));
        assert!(!index.holds_slice(&slice(pack, far, 7)));
        assert_eq!(index.find_stored(&BlobId([11; 32])), None);
        assert!(!index.holds_slice(&slice(BlobId([3; 32]), 0, 1)));
    }

    /// Many packed blobs, some given twice (the first place stays), some in two encodings, ids
    /// alike in their first bytes: each is found where a map says it lies, and no other is.
    #[test]
    fn packed_blobs_are_found_as_a_map_finds_them() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut packed = PackedBlobs::default();
        let mut map = std::collections::HashMap::new();
        let encodings = [Encoding::Raw, Encoding::Zstd];
        for i in 0..50_000u32 {
            let mut id = BlobId::of(&(i % 40_000).to_le_bytes());
            if i % 7 == 0 {
                id.0[..8].copy_from_slice(&[9; 8]);
            }
            let encoding = encodings[rng.usize(..2)];
            let slot = Slot {
                pack: i,
                offset: [0, i],
                length: [i, 0],
            };
            packed.insert_if_absent(id, encoding, slot);
            map.entry((id, encoding)).or_insert(slot);
        }
        assert_eq!(packed.len(), map.len());
        for ((id, encoding), slot) in &map {
            let found = packed
                .get(id, *encoding)
                .map(|s| (s.pack, s.offset, s.length));
            assert_eq!(found, Some((slot.pack, slot.offset, slot.length)));
        }
        for i in 40_000..41_000u32 {
            assert!(packed
                .get(&BlobId::of(&i.to_le_bytes()), Encoding::Raw)
                .is_none());
        }
    }

    fn manifest(id: BackupId, entries: Vec<Entry>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            id,
            tool_version: "test".into(),
            started_at: String::new(),
            finished_at: String::new(),
            source: serde_json::json!({"k": "v"}),
            summary: Summary {
                entries: entries.len() as u64,
                bytes: entries.iter().map(|e| e.size).sum(),
                ..Summary::default()
            },
            entries,
        }
    }

    #[tokio::test]
    async fn init_then_open_and_commit_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        assert!(matches!(
            Repository::open(store.clone(), "mem").await,
            Err(Error::NotFound { .. })
        ));
        let (repo, created) = Repository::open_or_init(store.clone(), "mem", "t")
            .await
            .unwrap();
        assert!(created);
        let (again, created) = Repository::open_or_init(store.clone(), "mem", "t")
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.config(), repo.config());

        let id = BackupId::new(std::time::SystemTime::now());
        let m = manifest(id.clone(), vec![]);
        repo.write_manifest(&m).await.unwrap();
        assert!(matches!(
            repo.write_manifest(&m).await,
            Err(Error::Exists { .. })
        ));
        assert_eq!(repo.resolve("latest").await.unwrap(), id);
        assert_eq!(repo.load_manifest(&id).await.unwrap(), m);
        assert!(matches!(
            repo.resolve("20000101T000000.000Z-00000000").await,
            Err(Error::NoSuchBackup { .. })
        ));
    }

    #[tokio::test]
    async fn refuses_foreign_and_newer_repositories() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        store
            .put(&Path::from("photos/cat.jpg"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert!(matches!(
            Repository::open_or_init(store, "mem", "t").await,
            Err(Error::Foreign { .. })
        ));

        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut config = RepoConfig::new("future");
        config.format_version = FORMAT_VERSION + 1;
        let body = serde_json::to_vec(&config).unwrap();
        store.put(&Path::from("config"), body.into()).await.unwrap();
        assert!(matches!(
            Repository::open(store, "mem").await,
            Err(Error::UnsupportedVersion { .. })
        ));
    }
}
