//! Encryption keys (DESIGN.md §3.4a). An encrypted repository has one age X25519 key: its
//! public half (the recipient) is in `config`, every blob, manifest and progress record is
//! encrypted to it. The secret half reaches the tool from a key file (the age identity text,
//! `AGE-SECRET-KEY-1…`), or from a passphrase that unlocks `keys/repository.age` — the identity
//! sealed with age's scrypt passphrase encryption. Both are the `age`/`rage` formats, so an
//! operator can decrypt by hand with the `age` command.

use crate::layout;
use crate::{Error, Result};
use age::secrecy::{ExposeSecret, SecretString};
use age::x25519::{Identity, Recipient};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// `config.encryption` of an encrypted repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionConfig {
    /// Always `age-x25519` in format 1.
    pub scheme: String,
    /// The repository's public key (`age1…`).
    pub recipient: String,
    /// Whether `keys/repository.age` holds the key sealed with a passphrase.
    pub passphrase: bool,
}

/// Where the secret key comes from.
#[derive(Clone, Default)]
pub struct KeySource {
    /// A file holding the age identity.
    pub key_file: Option<PathBuf>,
    /// A passphrase unlocking `keys/repository.age`.
    pub passphrase: Option<SecretString>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("key_file", &self.key_file)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The unlocked key of an encrypted repository.
#[derive(Clone)]
pub struct Keys {
    /// Secret key (decrypts).
    pub identity: Arc<Identity>,
    /// Public key (encrypts).
    pub recipient: Arc<Recipient>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({})", self.recipient)
    }
}

fn key_error(message: impl Into<String>) -> Error {
    Error::Key {
        message: message.into(),
    }
}

/// Parse an age identity file (comment lines allowed).
fn read_key_file(path: &PathBuf) -> Result<Identity> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| key_error(format!("cannot read key file {}: {e}", path.display())))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| {
            key_error(format!(
                "{} holds no age identity (a line AGE-SECRET-KEY-1…)",
                path.display()
            ))
        })?;
    Identity::from_str(line)
        .map_err(|e| key_error(format!("{}: not a valid age identity: {e}", path.display())))
}

/// Write a new identity to `path` (readable by the owner only).
fn write_key_file(path: &PathBuf, identity: &Identity) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_error(format!("cannot create key file {}: {e}", path.display())))?;
    let text = format!(
        "# influxdb3-backup repository key (age X25519); keep it safe: without it the backups cannot be read\n# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    );
    file.write_all(text.as_bytes())
        .map_err(|e| key_error(format!("cannot write key file {}: {e}", path.display())))
}

/// Create the key of a new encrypted repository: from an existing key file, or a new one
/// (written to the key file if one is named). Returns the keys, the config section and, with a
/// passphrase, the sealed key to store at `keys/repository.age`.
pub fn new_repository_key(source: &KeySource) -> Result<(Keys, EncryptionConfig, Option<Vec<u8>>)> {
    let identity = match &source.key_file {
        Some(path) if path.exists() => read_key_file(path)?,
        Some(path) => {
            let identity = Identity::generate();
            write_key_file(path, &identity)?;
            identity
        }
        None if source.passphrase.is_some() => Identity::generate(),
        None => return Err(key_error("an encrypted repository needs a key: pass --key-file FILE or set INFLUXDB3_BACKUP_PASSPHRASE")),
    };
    let sealed = match &source.passphrase {
        Some(passphrase) => {
            let encryptor = age::Encryptor::with_user_passphrase(passphrase.clone());
            let mut out = Vec::new();
            let mut writer = encryptor
                .wrap_output(&mut out)
                .map_err(|e| key_error(format!("sealing the key: {e}")))?;
            writer
                .write_all(identity.to_string().expose_secret().as_bytes())
                .and_then(|_| writer.finish().map(|_| ()))
                .map_err(|e| key_error(format!("sealing the key: {e}")))?;
            Some(out)
        }
        None => None,
    };
    let recipient = identity.to_public();
    let config = EncryptionConfig {
        scheme: "age-x25519".into(),
        recipient: recipient.to_string(),
        passphrase: sealed.is_some(),
    };
    Ok((
        Keys {
            identity: Arc::new(identity),
            recipient: Arc::new(recipient),
        },
        config,
        sealed,
    ))
}

/// Unlock the key of an existing encrypted repository. `sealed` is `keys/repository.age`, when
/// present. A key that is not the repository's is refused by name.
pub fn unlock(
    config: &EncryptionConfig,
    source: &KeySource,
    sealed: Option<&[u8]>,
) -> Result<Keys> {
    let identity = if let Some(path) = &source.key_file {
        read_key_file(path)?
    } else if let Some(passphrase) = &source.passphrase {
        let sealed = sealed.ok_or_else(|| {
            key_error(format!(
                "this repository has no passphrase-sealed key ({} is missing): use --key-file",
                layout::PASSPHRASE_KEY
            ))
        })?;
        let decryptor = age::Decryptor::new_buffered(sealed)
            .map_err(|e| key_error(format!("{}: {e}", layout::PASSPHRASE_KEY)))?;
        let scrypt = age::scrypt::Identity::new(passphrase.clone());
        let mut reader = decryptor
            .decrypt(std::iter::once(&scrypt as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                    key_error("wrong passphrase for this repository (INFLUXDB3_BACKUP_PASSPHRASE)")
                }
                other => key_error(format!("{}: {other}", layout::PASSPHRASE_KEY)),
            })?;
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| key_error(format!("{}: {e}", layout::PASSPHRASE_KEY)))?;
        Identity::from_str(text.trim())
            .map_err(|e| key_error(format!("{}: {e}", layout::PASSPHRASE_KEY)))?
    } else {
        return Err(key_error(format!(
            "the repository is encrypted (key {}): pass --key-file FILE{}",
            config.recipient,
            if config.passphrase {
                " or set INFLUXDB3_BACKUP_PASSPHRASE"
            } else {
                ""
            }
        )));
    };
    let recipient = identity.to_public();
    if recipient.to_string() != config.recipient {
        return Err(key_error(format!(
            "wrong key: it is {recipient}, but the repository is encrypted to {}",
            config.recipient
        )));
    }
    Ok(Keys {
        identity: Arc::new(identity),
        recipient: Arc::new(recipient),
    })
}

/// Encrypt a whole buffer to the repository key.
pub fn seal(keys: &Keys, plain: &[u8]) -> Result<Vec<u8>> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(
        keys.recipient.as_ref() as &dyn age::Recipient
    ))
    .map_err(|e| key_error(format!("encrypting: {e}")))?;
    let mut out = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| key_error(format!("encrypting: {e}")))?;
    writer
        .write_all(plain)
        .and_then(|_| writer.finish().map(|_| ()))
        .map_err(|e| key_error(format!("encrypting: {e}")))?;
    Ok(out)
}

/// Decrypt a whole buffer with the repository key; `what` names it in errors.
pub fn open(keys: &Keys, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(|e| Error::Corrupt {
        key: what.to_string(),
        reason: format!("not an age file: {e}"),
    })?;
    let mut reader = decryptor
        .decrypt(std::iter::once(keys.identity.as_ref() as &dyn age::Identity))
        .map_err(|e| key_error(format!("cannot decrypt {what}: {e}")))?;
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).map_err(|e| Error::Corrupt {
        key: what.to_string(),
        reason: format!("decryption failed (damaged?): {e}"),
    })?;
    Ok(plain)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::Summary;
    use crate::{BackupId, Manifest, Repository};
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt};

    fn manifest() -> Manifest {
        let entry = crate::Entry {
            path: "dbs/secret-table-name/1.parquet".into(),
            size: 3,
            blob: crate::BlobId::of(b"abc"),
            encoding: crate::Encoding::Age,
            class: "parquet".into(),
            pack: None,
            facts: None,
        };
        Manifest {
            format_version: crate::config::FORMAT_VERSION,
            id: BackupId::new(std::time::SystemTime::now()),
            tool_version: "t".into(),
            started_at: String::new(),
            finished_at: String::new(),
            source: serde_json::json!({"node_id": "secret-node-name"}),
            summary: Summary {
                entries: 1,
                bytes: 3,
                ..Summary::default()
            },
            entries: vec![entry],
        }
    }

    #[tokio::test]
    async fn passphrase_and_key_file_unlock_and_wrong_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("repo.key");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let source = KeySource {
            key_file: Some(key_file.clone()),
            passphrase: Some(SecretString::from("correct horse".to_string())),
        };
        let repo = Repository::init(store.clone(), "mem", "t", Some(&source))
            .await
            .unwrap();
        let m = manifest();
        repo.write_manifest(&m).await.unwrap();
        let read = |key: object_store::path::Path| {
            let store = store.clone();
            async move { store.get(&key).await.unwrap().bytes().await.unwrap() }
        };
        let stored = read(crate::layout::manifest_key(&m.id)).await;
        assert!(
            !stored.windows(16).any(|w| w == b"secret-node-name"),
            "manifest stored in clear"
        );
        // Its entry chunk too: sealed, under a `.zst.age` key.
        let blobs: Vec<_> = store
            .list(Some(&object_store::path::Path::from("blobs")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(blobs.len(), 1);
        assert!(blobs[0].location.as_ref().ends_with(".zst.age"));
        let chunk = read(blobs[0].location.clone()).await;
        assert!(
            !chunk.windows(17).any(|w| w == b"secret-table-name"),
            "entry chunk stored in clear"
        );

        for unlock_with in [
            KeySource {
                key_file: Some(key_file.clone()),
                passphrase: None,
            },
            KeySource {
                key_file: None,
                passphrase: Some(SecretString::from("correct horse".to_string())),
            },
        ] {
            let opened = Repository::open_with(store.clone(), "mem", &unlock_with)
                .await
                .unwrap();
            assert_eq!(opened.load_manifest(&m.id).await.unwrap(), m);
        }
        let wrong = KeySource {
            key_file: None,
            passphrase: Some(SecretString::from("wrong".to_string())),
        };
        let err = Repository::open_with(store.clone(), "mem", &wrong)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        let other_key = dir.path().join("other.key");
        write_key_file(&other_key, &Identity::generate()).unwrap();
        let err = Repository::open_with(
            store.clone(),
            "mem",
            &KeySource {
                key_file: Some(other_key),
                passphrase: None,
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("wrong key"), "{err}");
        let err = Repository::open(store, "mem").await.unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
