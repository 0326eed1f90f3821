//! A cluster's API tenants: the replicated JetStream KV bucket [`TENANTS_BUCKET`], one key per
//! tenant holding its [`TenantRecord`] as JSON. The routers' API writes it ([`Bucket::store`]);
//! every router and every hosted edge follows it ([`Bucket::follow`]) and puts what it holds in
//! force as the directory's source "api", so a change applies cluster-wide as fast as NATS carries
//! a message (milliseconds; the promise is one second).
//!
//! The bucket holds the tenants' HS256 secrets, as the tenants file does: NATS permissions must
//! keep it from anyone but the routers and the edges (docs/operations.md, "NATS permissions").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use switchboard_proto::TenantId;
use switchboard_proto::subject::TENANTS_BUCKET;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::record::{Records, TenantRecord};
use crate::service::BoxFuture;
use crate::store::{Store, StoreError};

/// Pause before watching again after the watch failed or the bucket was missing.
const RETRY: Duration = Duration::from_secs(1);

/// Longest wait for a write to the bucket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What this process knows of the bucket: per tenant, the newest revision seen and its record
/// (`None`: deleted). A watch can lag behind a write this process just made; an entry older than
/// what is known never undoes a newer one.
#[derive(Debug, Default)]
struct Known(BTreeMap<TenantId, (u64, Option<TenantRecord>)>);

impl Known {
    /// Takes `record` at `revision` unless something newer is known; whether anything changed.
    fn apply(&mut self, id: TenantId, revision: u64, record: Option<TenantRecord>) -> bool {
        match self.0.get(&id) {
            Some((known, _)) if *known >= revision => false,
            _ => {
                self.0.insert(id, (revision, record));
                true
            }
        }
    }

    fn records(&self) -> Records {
        self.0
            .iter()
            .filter_map(|(id, (_, record))| Some((id.clone(), record.clone()?)))
            .collect()
    }
}

/// The tenants bucket as this process follows it; cheap to clone.
#[derive(Clone)]
pub struct Bucket {
    shared: Arc<Shared>,
}

struct Shared {
    js: jetstream::Context,
    known: Mutex<Known>,
    /// The API tenants now (sent on every change), and whether the first full read is done.
    records: watch::Sender<(Records, bool)>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").finish_non_exhaustive()
    }
}

impl Bucket {
    /// The bucket of the cluster behind `js`. Nothing is read until [`Bucket::follow`] runs.
    pub fn new(js: jetstream::Context) -> Bucket {
        Bucket {
            shared: Arc::new(Shared {
                js,
                known: Mutex::new(Known::default()),
                records: watch::channel((Records::new(), false)).0,
            }),
        }
    }

    /// The API tenants as followed: the current value, and every change.
    pub fn subscribe(&self) -> watch::Receiver<(Records, bool)> {
        self.shared.records.subscribe()
    }

    /// Calls `apply` with the API tenants now and after every change, until `stop`: how a process
    /// puts them in force.
    pub async fn apply_changes(&self, stop: CancellationToken, mut apply: impl FnMut(Records)) {
        let mut changes = self.subscribe();
        loop {
            apply(changes.borrow_and_update().0.clone());
            tokio::select! {
                () = stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Waits until the bucket has been read in full once (or found missing: no tenant was ever
    /// created through the API).
    pub async fn caught_up(&self) {
        let mut rx = self.subscribe();
        // The sender lives in `self`, so this never fails while `self` exists.
        let _ = rx.wait_for(|(_, caught_up)| *caught_up).await;
    }

    /// A [`Store`] writing to the bucket `kv` (which the routers create); what it writes is known
    /// here at once, before the watch brings it back.
    pub fn store(&self, kv: kv::Store) -> KvStore {
        KvStore {
            kv,
            bucket: self.clone(),
        }
    }

    fn take(&self, id: TenantId, revision: u64, record: Option<TenantRecord>) {
        let mut known = self
            .shared
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.apply(id, revision, record) {
            let records = known.records();
            self.shared
                .records
                .send_modify(|(current, _)| *current = records);
        }
    }

    fn set_caught_up(&self) {
        self.shared.records.send_if_modified(|(_, caught_up)| {
            let changed = !*caught_up;
            *caught_up = true;
            changed
        });
    }

    /// Follows the bucket until `stop`: reads it in full, then every change as it happens. A failed
    /// watch (NATS gone, the bucket deleted) is started again, and a new full read reconciles what
    /// was missed.
    pub async fn follow(self, stop: CancellationToken) {
        let mut warned = false;
        loop {
            let result = tokio::select! {
                () = stop.cancelled() => return,
                result = self.watch_once() => result,
            };
            match result {
                Ok(()) => debug!("tenants bucket watch ended; watching again"),
                Err(Missing) => {
                    // No router has created it yet: there are no API tenants to wait for.
                    self.set_caught_up();
                    if !warned {
                        info!(
                            bucket = TENANTS_BUCKET,
                            "tenants bucket not there yet; looking again every second"
                        );
                        warned = true;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// One watch, from a full read of every key's latest value to its end.
    async fn watch_once(&self) -> Result<(), Missing> {
        let kv = match self.shared.js.get_key_value(TENANTS_BUCKET).await {
            Ok(kv) => kv,
            Err(e) => {
                debug!(error = %e, "tenants bucket not available");
                return Err(Missing);
            }
        };
        let mut entries = match kv.watch_with_history(">").await {
            Ok(entries) => entries,
            Err(e) => {
                warn!(error = %e, "cannot watch the tenants bucket; trying again");
                return Ok(());
            }
        };
        // An empty bucket replays nothing: it is read in full at once.
        let empty = matches!(kv.status().await, Ok(status) if status.values() == 0);
        if empty {
            self.set_caught_up();
        }
        // Keys the full read brings; a key known before but absent from it was removed for good
        // (purged) while this process was not watching.
        let mut replayed = BTreeSet::new();
        let mut replaying = !empty;
        while let Some(entry) = entries.next().await {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    warn!(error = %e, "tenants bucket watch failed; watching again");
                    return Ok(());
                }
            };
            let Ok(id) = TenantId::parse(&entry.key) else {
                warn!("tenants bucket: a key that is not a tenant id is ignored");
                continue;
            };
            let record = match entry.operation {
                kv::Operation::Put => match serde_json::from_slice::<TenantRecord>(&entry.value) {
                    Ok(record) if record.id == id => Some(record),
                    Ok(_) => {
                        warn!(tenant = %id, "tenants bucket: a record under another tenant's key is ignored");
                        None
                    }
                    Err(e) => {
                        // serde's message may quote the value, which holds secrets: position only.
                        warn!(tenant = %id, line = e.line(), column = e.column(), "tenants bucket: a record that does not parse is ignored");
                        None
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            if replaying {
                replayed.insert(id.clone());
            }
            self.take(id, entry.revision, record);
            if replaying && entry.delta == 0 {
                replaying = false;
                self.forget_all_but(&replayed);
                self.set_caught_up();
            }
        }
        Ok(())
    }

    /// Forgets tenants the bucket no longer has at all (purged while not watched).
    fn forget_all_but(&self, present: &BTreeSet<TenantId>) {
        let mut known = self
            .shared
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = known.0.len();
        known.0.retain(|id, _| present.contains(id));
        if known.0.len() != before {
            let records = known.records();
            self.shared
                .records
                .send_modify(|(current, _)| *current = records);
        }
    }
}

/// The bucket was not there.
struct Missing;

/// The routers' [`Store`]: the tenants bucket.
pub struct KvStore {
    kv: kv::Store,
    bucket: Bucket,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

impl Store for KvStore {
    fn put(&self, record: TenantRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec(&record).map_err(unavailable)?;
            let revision =
                tokio::time::timeout(WRITE_TIMEOUT, self.kv.put(record.id.as_str(), bytes.into()))
                    .await
                    .map_err(unavailable)?
                    .map_err(unavailable)?;
            self.bucket.take(record.id.clone(), revision, Some(record));
            Ok(())
        })
    }

    fn delete(&self, id: TenantId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // What `kv::Store::delete` publishes (a delete marker on the key's subject), published
            // here so that the marker's revision is known: the watch may still bring older puts.
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("KV-Operation", "DEL");
            let write = async {
                self.bucket
                    .shared
                    .js
                    .publish_with_headers(
                        format!("$KV.{TENANTS_BUCKET}.{id}"),
                        headers,
                        bytes::Bytes::new(),
                    )
                    .await
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)
            };
            let ack = tokio::time::timeout(WRITE_TIMEOUT, write)
                .await
                .map_err(unavailable)??;
            self.bucket.take(id, ack.sequence, None);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_tenants::Limits;

    fn record(id: &str, created_at: u64) -> TenantRecord {
        TenantRecord {
            id: TenantId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            limits: Limits::default(),
            allowed_origins: vec![],
            allow_missing_origin: true,
            turn: None,
            keys: vec![],
            webhook: None,
            created_at,
        }
    }

    #[test]
    fn an_older_revision_never_undoes_a_newer_one() {
        let id = |s: &str| TenantId::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let mut known = Known::default();
        assert!(known.apply(id("a"), 5, Some(record("a", 5))));
        // The watch brings revision 3 (the tenant's creation) after this process wrote revision 5.
        assert!(!known.apply(id("a"), 3, Some(record("a", 3))));
        assert_eq!(known.records()[&id("a")].created_at, 5);
        // Deleted at 7; a late put of revision 6 does not bring it back.
        assert!(known.apply(id("a"), 7, None));
        assert!(!known.apply(id("a"), 6, Some(record("a", 6))));
        assert!(known.records().is_empty());
        // Created again later.
        assert!(known.apply(id("a"), 9, Some(record("a", 9))));
        assert_eq!(known.records().len(), 1);
    }
}
