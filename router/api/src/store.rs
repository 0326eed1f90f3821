//! Where the API keeps the tenants it creates: [`Store`]. Standalone, [`FileStore`], a local JSON
//! file; in a cluster, the replicated JetStream KV bucket `sb-tenants` ([`crate::cluster`]).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use switchboard_proto::TenantId;

use crate::record::{Records, TenantRecord};
use crate::service::BoxFuture;

/// Why a store could not save or load.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state file could not be read or written.
    #[error("state file {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file is not what this version writes.
    #[error("state file {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong (never a secret: serde's messages are reduced to position and kind).
        message: String,
    },
    /// The replicated store did not answer or refused the write.
    #[error("tenant store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A place that keeps the API's tenants, one record per tenant.
pub trait Store: Send + Sync + 'static {
    /// Stores `record`, replacing the tenant's previous one.
    fn put(&self, record: TenantRecord) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Removes the tenant's record.
    fn delete(&self, id: TenantId) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Keeps nothing: the API's tenants last as long as the process (a standalone edge without
/// `--api-state-file`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn put(&self, _record: TenantRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, _id: TenantId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The state file's content.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDoc {
    version: u32,
    tenants: Vec<TenantRecord>,
}

const VERSION: u32 = 1;

/// Standalone: the API's tenants in a local JSON file, rewritten whole (atomically: a temporary file
/// renamed over it, so a crash leaves the old or the new content, never half of one) at each change.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    records: Mutex<Records>,
    /// Serializes writes: two changes at once must not race to rename their files.
    write: tokio::sync::Mutex<()>,
}

impl FileStore {
    /// Opens the state file at `path` (absent: no tenants yet) and returns what it holds.
    pub fn open(path: PathBuf) -> Result<(FileStore, Records), StoreError> {
        let records = match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let store = FileStore {
            path,
            records: Mutex::new(records.clone()),
            write: tokio::sync::Mutex::new(()),
        };
        Ok((store, records))
    }

    async fn save(&self, change: impl FnOnce(&mut Records)) -> Result<(), StoreError> {
        let _writing = self.write.lock().await;
        let mut next = self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        change(&mut next);
        let doc = StateDoc {
            version: VERSION,
            tenants: next.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::Format {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomically(&self.path, &bytes)
            .await
            .map_err(|source| StoreError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
        *self.records.lock().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }
}

impl Store for FileStore {
    fn put(&self, record: TenantRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.save(move |records| {
            records.insert(record.id.clone(), record);
        }))
    }

    fn delete(&self, id: TenantId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.save(move |records| {
            records.remove(&id);
        }))
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Records, StoreError> {
    let doc: StateDoc = serde_json::from_slice(bytes).map_err(|e| StoreError::Format {
        path: path.display().to_string(),
        message: format!(
            "line {}, column {}: {}",
            e.line(),
            e.column(),
            switchboard_tenants::file::redact(&e.to_string())
        ),
    })?;
    if doc.version != VERSION {
        return Err(StoreError::Format {
            path: path.display().to_string(),
            message: format!("version {} is not {VERSION}", doc.version),
        });
    }
    Ok(doc
        .tenants
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`. The file
/// holds secrets: it is created readable by its owner only.
async fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let (path, bytes) = (path.to_owned(), bytes.to_vec());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_tenants::Limits;

    fn record(id: &str) -> TenantRecord {
        TenantRecord {
            id: TenantId::parse(id).unwrap(),
            limits: Limits::default(),
            allowed_origins: vec![],
            allow_missing_origin: true,
            turn: None,
            keys: vec![],
            webhook: None,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn changes_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("sb-api-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let _ = std::fs::remove_file(&path);
        let (store, records) = FileStore::open(path.clone()).unwrap();
        assert!(records.is_empty());
        store.put(record("a")).await.unwrap();
        store.put(record("b")).await.unwrap();
        store.delete(TenantId::parse("a").unwrap()).await.unwrap();
        let (_, records) = FileStore::open(path.clone()).unwrap();
        assert_eq!(
            records.keys().map(|id| id.as_str()).collect::<Vec<_>>(),
            ["b"]
        );

        std::fs::write(&path, "{\"version\": 1, \"tenants\": 3}").unwrap();
        let error = FileStore::open(path.clone()).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
