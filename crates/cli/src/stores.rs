//! Building stores from options: the node prefix of a source (or restore target) exactly as
//! `influxdb3 serve` would address it, and the repository from `--repo`.

use crate::args::{ObjectStoreKind, SourceArgs};
use crate::cloud;
use crate::exit::{Failure, NOT_A_NODE, REPOSITORY, USAGE};
use anyhow::Result;
use ib3_transfer::listing::FastListing;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

/// A resolved node prefix in an object store.
#[derive(Debug, Clone)]
pub struct NodeStore {
    /// The store root (data dir or bucket).
    pub root: Arc<dyn ObjectStore>,
    /// The store rooted at the node prefix.
    pub node: Arc<dyn ObjectStore>,
    /// The node id (prefix).
    pub node_id: String,
    /// `file`, `memory`, `s3`, `azure` or `google`.
    pub kind: &'static str,
    /// Human-readable location of the store root (the data dir).
    pub location: String,
    /// The data dir, for `file` stores.
    pub data_dir: Option<PathBuf>,
    /// The node store again, for `file` stores: hints for its listings (keys relative to the
    /// node).
    pub listing: Option<Arc<FastListing>>,
}

/// The node ids from `--node-id`, `INFLUXDB3_NODE_IDENTIFIER_PREFIX`, or (3.11)
/// `INFLUXDB3_NODE_ID` (comma-separated).
pub fn node_ids(args: &SourceArgs) -> Vec<String> {
    let given: Vec<String> = if args.node_id.is_empty() {
        std::env::var("INFLUXDB3_NODE_ID")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    } else {
        args.node_id.clone()
    };
    given.into_iter().filter(|s| !s.is_empty()).collect()
}

/// The one node id of a Core command; several are a usage error (they need --cluster-id).
pub fn node_id(args: &SourceArgs) -> Result<Option<String>> {
    let mut ids = node_ids(args);
    if ids.len() > 1 {
        return Err(Failure::new(
            USAGE,
            format!("{} node ids given ({}) without --cluster-id", ids.len(), ids.join(", ")),
        )
        .hint("a Core node has one --node-id; for the nodes of an Enterprise cluster pass --cluster-id as well")
        .into());
    }
    Ok(ids.pop())
}

/// The data dir from `--data-dir`, `INFLUXDB3_DB_DIR`, (3.11) `INFLUXDB3_DATA_DIR`, or `~/.influxdb3`.
pub fn data_dir(args: &SourceArgs) -> Result<PathBuf> {
    if let Some(dir) = args
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("INFLUXDB3_DATA_DIR").map(PathBuf::from))
    {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        Failure::new(USAGE, "no --data-dir given and HOME is not set").hint("pass --data-dir DIR")
    })?;
    Ok(PathBuf::from(home).join(".influxdb3"))
}

/// A resolved store root (data dir or bucket), before any node or cluster prefix.
#[derive(Debug, Clone)]
pub struct RootStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// `file`, `memory`, `s3`, `azure` or `google`.
    pub kind: &'static str,
    /// Human-readable location (data dir or bucket URL).
    pub location: String,
    /// The data dir, for `file` stores.
    pub data_dir: Option<PathBuf>,
    /// The store again, for `file` stores: hints for its listings.
    pub listing: Option<Arc<FastListing>>,
}

impl RootStore {
    /// The fast listing, if it is the very store in use: a caller that wrapped or replaced
    /// `store` (to record what is read or written) must see every access of the node stores.
    fn listing_in_use(&self) -> Option<&Arc<FastListing>> {
        self.listing
            .as_ref()
            .filter(|listing| std::ptr::addr_eq(Arc::as_ptr(listing), Arc::as_ptr(&self.store)))
    }

    /// The node (or cluster) prefix `prefix` of this store.
    pub fn node(&self, prefix: &str) -> NodeStore {
        // A local node directory is walked from itself: no prefix added to each key and cut again.
        let listing = self
            .listing_in_use()
            .and_then(|root| root.at(prefix))
            .map(Arc::new);
        let node: Arc<dyn ObjectStore> = match &listing {
            Some(fast) => fast.clone(),
            None => Arc::new(PrefixStore::new(self.store.clone(), prefix)),
        };
        NodeStore {
            root: self.store.clone(),
            node,
            node_id: prefix.to_string(),
            kind: self.kind,
            location: self.location.clone(),
            data_dir: self.data_dir.clone(),
            listing,
        }
    }
}

/// Open the node prefix named by `args` with node id `node_id`, and check that its store
/// answers. A `file` store's data dir must exist unless `create` (restore targets) is set.
pub async fn open_node(args: &SourceArgs, node_id: &str, create: bool) -> Result<NodeStore> {
    check_node_id(node_id)?;
    Ok(open_root(args, create).await?.node(node_id))
}

/// Open the store root named by `args` (data dir or bucket) and check that it answers. A `file`
/// store's data dir must exist unless `create` (restore targets) is set.
pub async fn open_root(args: &SourceArgs, create: bool) -> Result<RootStore> {
    let mut listing = None;
    let (store, kind, location, data_dir): (Arc<dyn ObjectStore>, _, _, _) = match args.object_store
    {
        ObjectStoreKind::File => {
            let dir = data_dir(args)?;
            if create {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    anyhow::anyhow!("cannot create data dir {}: {e}", dir.display())
                })?;
            } else if !dir.is_dir() {
                return Err(Failure::new(
                    NOT_A_NODE,
                    format!(
                        "data dir {} does not exist or is not a directory",
                        dir.display()
                    ),
                )
                .hint("pass the directory `influxdb3 serve --data-dir` uses")
                .into());
            }
            // The same directory however it was named (`./data`, a symlink, an absolute
            // path): the location identifies the source for incremental backups.
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            let store = Arc::new(FastListing::new(local_store(&dir, create)?, &dir));
            listing = Some(store.clone());
            (store, "file", dir.display().to_string(), Some(dir))
        }
        ObjectStoreKind::Memory => (
            Arc::new(InMemory::new()),
            "memory",
            "memory".to_string(),
            None,
        ),
        cloud_kind => {
            let cloud = cloud::source_store(cloud_kind, args.bucket.as_deref(), &args.cloud)?;
            let role = if create { "restore target" } else { "source" };
            cloud::preflight(cloud.store.as_ref(), &cloud.location, role).await?;
            (cloud.store, cloud.kind, cloud.location, None)
        }
    };
    Ok(RootStore {
        store,
        kind,
        location,
        data_dir,
        listing,
    })
}

/// A stand-in for a restore target root that does not exist yet (a `--dry-run` plans against it
/// without creating anything): an empty store named like the real one.
pub fn absent_root(args: &SourceArgs) -> Result<Option<RootStore>> {
    if args.object_store != ObjectStoreKind::File {
        return Ok(None);
    }
    let dir = data_dir(args)?;
    if dir.exists() {
        return Ok(None);
    }
    Ok(Some(RootStore {
        store: Arc::new(InMemory::new()),
        kind: "file",
        location: dir.display().to_string(),
        data_dir: Some(dir),
        listing: None,
    }))
}

/// [`absent_root`] at the node prefix `node_id`.
pub fn absent_target(args: &SourceArgs, node_id: &str) -> Result<Option<NodeStore>> {
    check_node_id(node_id)?;
    Ok(absent_root(args)?.map(|root| root.node(node_id)))
}

/// A node id is one path segment, as the server uses it as the object-store prefix.
pub fn check_node_id(node_id: &str) -> Result<()> {
    let valid = !node_id.is_empty()
        && node_id != "."
        && node_id != ".."
        && !node_id.contains('/')
        && !node_id.contains('#');
    if valid {
        Ok(())
    } else {
        Err(Failure::new(USAGE, format!("invalid node id {node_id:?}"))
            .hint("the node id is one path segment, as passed to `influxdb3 serve --node-id`")
            .into())
    }
}

/// A local store; `cleanup` removes directories left empty by deletes (restore targets only:
/// nothing is ever deleted from a source).
fn local_store(dir: &FsPath, cleanup: bool) -> Result<LocalFileSystem> {
    LocalFileSystem::new_with_prefix(dir)
        .map(|s| s.with_automatic_cleanup(cleanup))
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))
}

/// Open the repository store named by `--repo` (a directory, created if `create`, or a URL),
/// checking that it answers.
pub async fn repo_store(spec: &str, create: bool) -> Result<(Arc<dyn ObjectStore>, String)> {
    repo_store_in(cloud::REPO_ENV_PREFIX, spec, create).await
}

/// [`repo_store`] with the credentials of the environment family `env_prefix`.
pub async fn repo_store_in(
    env_prefix: &str,
    spec: &str,
    create: bool,
) -> Result<(Arc<dyn ObjectStore>, String)> {
    let Some(path) = local_repo_dir(spec) else {
        return cloud_repo(env_prefix, spec).await;
    };
    if path.exists() && !path.is_dir() {
        return Err(Failure::new(
            REPOSITORY,
            format!(
                "no backup repository at {}: it is a file, not a directory",
                path.display()
            ),
        )
        .hint("check --repo (or INFLUXDB3_BACKUP_REPO): a repository is a directory or a URL")
        .into());
    }
    if create {
        std::fs::create_dir_all(&path).map_err(|e| {
            anyhow::anyhow!("cannot create repository directory {}: {e}", path.display())
        })?;
    } else if !path.is_dir() {
        return Err(Failure::new(
            REPOSITORY,
            format!(
                "no backup repository at {}: the directory does not exist",
                path.display()
            ),
        )
        .hint("check --repo (or INFLUXDB3_BACKUP_REPO); `create` initialises a new repository")
        .into());
    }
    // Durable: a backup must survive a power loss once its manifest is written.
    let store = ib3_repo::durable::local_repository_store(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    Ok((store, path.display().to_string()))
}

/// The directory of a local repository (`None` for a URL of a cloud store).
pub fn local_repo_dir(spec: &str) -> Option<PathBuf> {
    match spec.strip_prefix("file://") {
        Some(rest) => Some(PathBuf::from(rest)),
        None if spec.contains("://") => None,
        None => Some(PathBuf::from(spec)),
    }
}

async fn cloud_repo(env_prefix: &str, spec: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
    let url = url::Url::parse(spec).map_err(|e| {
        Failure::new(
            USAGE,
            format!("repository URL {spec:?} does not parse: {e}"),
        )
    })?;
    let (store, prefix) = cloud::repo_store_from_url(env_prefix, spec, &url)?;
    // The URL without user info or query: safe to print and record.
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    let location = shown.to_string();
    cloud::preflight(store.as_ref(), &location, "repository").await?;
    let rooted: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    };
    Ok((rooted, location))
}

/// Node prefixes present at the store root: top-level directories holding InfluxDB 3 files.
/// Used to suggest the right `--node-id`.
pub async fn discover_nodes(root: &dyn ObjectStore) -> Vec<String> {
    let Ok(listing) = root.list_with_delimiter(None).await else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    for prefix in listing.common_prefixes {
        let Ok(inner) = root.list_with_delimiter(Some(&prefix)).await else {
            continue;
        };
        if looks_like_a_node(&inner) {
            nodes.push(prefix.to_string());
        }
    }
    nodes
}

/// Whether the store's root is itself a node prefix: `--data-dir` given the node's directory
/// (`~/.influxdb3/node0`) instead of the server's data dir.
pub async fn root_is_a_node(root: &dyn ObjectStore) -> bool {
    root.list_with_delimiter(None)
        .await
        .is_ok_and(|listing| looks_like_a_node(&listing))
}

/// A listing one level down a prefix that holds what only a node prefix holds.
fn looks_like_a_node(listing: &object_store::ListResult) -> bool {
    listing.common_prefixes.iter().any(|p| {
        matches!(
            p.filename(),
            Some("wal" | "snapshots" | "dbs" | "catalog" | "catalogs")
        )
    }) || listing
        .objects
        .iter()
        .any(|o| o.location.filename() == Some("_catalog_checkpoint"))
}
