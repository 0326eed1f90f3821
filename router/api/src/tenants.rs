//! [`Tenants`]: the tenants and keys the API manages, kept in a [`Store`] and served by the
//! [`Directory`] as its source [`SOURCE`]. Tenants of the tenants file are shown, never changed.

use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use switchboard_proto::TenantId;
use switchboard_tenants::directory::ConflictError;
use switchboard_tenants::{Directory, Limits, WebhookSettings};
use tracing::warn;

use crate::error::ApiError;
use crate::record::{KeyRecord, KeyView, Origin, Records, TenantRecord, TenantView, TurnRecord};
use crate::store::Store;

/// The directory source name of the API's tenants.
pub const SOURCE: &str = "api";

/// Bytes of randomness in a generated HS256 secret (encoded as 43 URL-safe base64 characters,
/// which are the key's bytes, as in the tenants file).
const SECRET_BYTES: usize = 32;

/// The body of `POST /v1/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The new tenant's id.
    pub id: String,
    /// Its quotas.
    #[serde(default)]
    pub limits: Limits,
    /// Allowed origins.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Whether clients without `Origin` may connect (default true).
    #[serde(default)]
    pub allow_missing_origin: Option<bool>,
    /// Its own TURN servers.
    #[serde(default)]
    pub turn: Option<TurnRecord>,
}

/// The body of `PATCH /v1/tenants/{id}`: what is given replaces what was; `turn: null` removes the
/// tenant's TURN settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New quotas (all of them); `null` or absent: unchanged.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// New allowed origins.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    /// Whether clients without `Origin` may connect.
    #[serde(default)]
    pub allow_missing_origin: Option<bool>,
    /// New TURN settings; `null` removes them.
    #[serde(default, deserialize_with = "present")]
    pub turn: Option<Option<TurnRecord>>,
}

/// A field that may be `null`: absent is `None`, `null` is `Some(None)`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body of `POST /v1/tenants/{id}/keys`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The key id; generated (`<tenant>-<random>`) when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// `HS256` (default: the server generates the secret), `EdDSA` or `ES256` (with `public_key`).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The public key in PEM, for EdDSA and ES256.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// A key just created: the only answer that carries an HS256 secret.
#[derive(Debug, serde::Serialize)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: KeyView,
    /// The tenant.
    pub tenant: TenantId,
    /// HS256: the secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The API's tenants; cheap to clone.
#[derive(Clone)]
pub struct Tenants {
    shared: Arc<Shared>,
}

struct Shared {
    directory: Directory,
    store: Arc<dyn Store>,
    records: Mutex<Records>,
    /// One change at a time, across the store's write: a key id must be checked unique and stored
    /// without another change slipping between (an async lock, since the store write awaits).
    change: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants").finish_non_exhaustive()
    }
}

impl Tenants {
    /// The API's tenants `records` (as loaded from `store`), put in force in `directory`.
    pub fn new(
        directory: Directory,
        store: Arc<dyn Store>,
        records: Records,
    ) -> Result<Tenants, ApiError> {
        let tenants = Tenants {
            shared: Arc::new(Shared {
                directory,
                store,
                records: Mutex::new(Records::new()),
                change: tokio::sync::Mutex::new(()),
            }),
        };
        tenants.replace_all(records)?;
        Ok(tenants)
    }

    /// The tenants in force (all sources).
    pub fn directory(&self) -> &Directory {
        &self.shared.directory
    }

    /// Replaces every API tenant with `records`. Records that do not check are left out, with a
    /// warning; a clash with another source (the tenants file) is an error and changes nothing.
    pub fn replace_all(&self, records: Records) -> Result<(), ApiError> {
        self.shared
            .directory
            .replace(SOURCE, checked(&records))
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        *self.lock() = records;
        Ok(())
    }

    /// Replaces every API tenant with `records` as a cluster's tenants bucket holds them (another
    /// router changed them): what clashes with this process's tenants file is left out, with a
    /// warning, and the rest is put in force.
    pub fn follow(&self, records: Records) {
        put_in_force(&self.shared.directory, &records);
        *self.lock() = records;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every tenant in force.
    pub fn list(&self) -> Vec<TenantView> {
        let snapshot = self.shared.directory.snapshot();
        let records = self.lock();
        let mut views: Vec<TenantView> = snapshot
            .tenants()
            .map(|tenant| TenantView::of(tenant, origin(&records, &tenant.id)))
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    /// One tenant in force.
    pub fn get(&self, id: &TenantId) -> Result<TenantView, ApiError> {
        let snapshot = self.shared.directory.snapshot();
        let tenant = snapshot.tenant(id).ok_or(ApiError::NotFound)?;
        Ok(TenantView::of(tenant, origin(&self.lock(), id)))
    }

    /// Creates a tenant.
    pub async fn create(&self, body: CreateTenant, now: u64) -> Result<TenantView, ApiError> {
        let id = TenantId::parse(&body.id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let record = TenantRecord {
            id: id.clone(),
            limits: body.limits,
            allowed_origins: body.allowed_origins,
            allow_missing_origin: body.allow_missing_origin.unwrap_or(true),
            turn: body.turn,
            keys: Vec::new(),
            webhook: None,
            created_at: now,
        };
        // A bad body is 400 whether or not the tenant exists.
        record.tenant().map_err(|e| ApiError::BadRequest(e.0))?;
        let _change = self.shared.change.lock().await;
        if self.shared.directory.snapshot().tenant(&id).is_some() {
            return Err(ApiError::Conflict(format!("tenant \"{id}\" exists")));
        }
        self.commit(record).await?;
        self.get(&id)
    }

    /// Changes a tenant's limits, origins or TURN settings.
    pub async fn update(&self, id: &TenantId, body: UpdateTenant) -> Result<TenantView, ApiError> {
        let _change = self.shared.change.lock().await;
        let mut record = self.writable(id)?;
        if let Some(limits) = body.limits {
            record.limits = limits;
        }
        if let Some(origins) = body.allowed_origins {
            record.allowed_origins = origins;
        }
        if let Some(allow) = body.allow_missing_origin {
            record.allow_missing_origin = allow;
        }
        if let Some(turn) = body.turn {
            record.turn = turn;
        }
        self.commit(record).await?;
        self.get(id)
    }

    /// Deletes a tenant: its keys verify nothing from then on, and edges close its connections.
    pub async fn delete(&self, id: &TenantId) -> Result<(), ApiError> {
        let _change = self.shared.change.lock().await;
        self.writable(id)?;
        self.shared
            .store
            .delete(id.clone())
            .await
            .map_err(ApiError::store)?;
        let mut records = self.lock().clone();
        records.remove(id);
        self.replace_all(records)
    }

    /// Adds a key to a tenant; an HS256 key's secret is generated and returned this once.
    pub async fn create_key(
        &self,
        id: &TenantId,
        body: CreateKey,
        now: u64,
    ) -> Result<CreatedKey, ApiError> {
        let _change = self.shared.change.lock().await;
        let mut record = self.writable(id)?;
        let key_id = body
            .id
            .unwrap_or_else(|| format!("{id}-{:08x}", rand::random::<u32>()));
        if self.shared.directory.snapshot().key(&key_id).is_some() {
            return Err(ApiError::Conflict(format!("key id {key_id:?} exists")));
        }
        let algorithm = body.algorithm.unwrap_or_else(|| "HS256".into());
        let (secret, public_key) = match (algorithm.as_str(), body.public_key) {
            ("HS256", None) => (
                Some(URL_SAFE_NO_PAD.encode(rand::random::<[u8; SECRET_BYTES]>())),
                None,
            ),
            ("HS256", Some(_)) => {
                return Err(ApiError::BadRequest(
                    "an HS256 key's secret is generated by the server: give no public_key".into(),
                ));
            }
            (_, public_key) => (None, public_key),
        };
        let key = KeyRecord {
            id: key_id,
            algorithm,
            secret: secret.clone(),
            public_key,
            revoked: false,
            created_at: now,
        };
        let view = KeyView::of(&key.key().map_err(|e| ApiError::BadRequest(e.0))?);
        record.keys.push(key);
        self.commit(record).await?;
        Ok(CreatedKey {
            key: view,
            tenant: id.clone(),
            secret,
        })
    }

    /// Revokes a key: it stays listed and verifies nothing.
    pub async fn revoke_key(&self, id: &TenantId, key_id: &str) -> Result<KeyView, ApiError> {
        let _change = self.shared.change.lock().await;
        let mut record = self.writable(id)?;
        let key = record
            .keys
            .iter_mut()
            .find(|key| key.id == key_id)
            .ok_or(ApiError::NotFound)?;
        key.revoked = true;
        let view = KeyView::of(&key.key().map_err(|e| ApiError::BadRequest(e.0))?);
        self.commit(record).await?;
        Ok(view)
    }

    /// Sets a tenant's webhook (replacing any); events queued for it are sent with the new settings.
    pub async fn set_webhook(
        &self,
        id: &TenantId,
        webhook: WebhookSettings,
    ) -> Result<TenantView, ApiError> {
        // A bad body is 400 whether or not the tenant exists.
        webhook
            .validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let _change = self.shared.change.lock().await;
        let mut record = self.writable(id)?;
        record.webhook = Some(webhook);
        self.commit(record).await?;
        self.get(id)
    }

    /// Removes a tenant's webhook: its events are no longer queued, and pending ones are dropped.
    pub async fn remove_webhook(&self, id: &TenantId) -> Result<TenantView, ApiError> {
        let _change = self.shared.change.lock().await;
        let mut record = self.writable(id)?;
        record.webhook = None;
        self.commit(record).await?;
        self.get(id)
    }

    /// The API's record of `id`: not found if no such tenant is in force, a conflict if it is the
    /// tenants file's.
    fn writable(&self, id: &TenantId) -> Result<TenantRecord, ApiError> {
        if let Some(record) = self.lock().get(id) {
            return Ok(record.clone());
        }
        if self.shared.directory.snapshot().tenant(id).is_some() {
            return Err(ApiError::Conflict(format!(
                "tenant \"{id}\" is defined by the tenants file: change it there"
            )));
        }
        Err(ApiError::NotFound)
    }

    /// Checks `record`, stores it, and puts it in force.
    async fn commit(&self, record: TenantRecord) -> Result<(), ApiError> {
        record.tenant().map_err(|e| ApiError::BadRequest(e.0))?;
        let mut records = self.lock().clone();
        records.insert(record.id.clone(), record.clone());
        self.shared
            .store
            .put(record)
            .await
            .map_err(ApiError::store)?;
        self.replace_all(records)
    }
}

/// The tenants of `records` that check; the others are left out with a warning (a record written by
/// a newer version, or changed by hand in the store).
fn checked(records: &Records) -> Vec<switchboard_tenants::Tenant> {
    let mut tenants = Vec::with_capacity(records.len());
    for record in records.values() {
        match record.tenant() {
            Ok(tenant) => tenants.push(tenant),
            Err(e) => warn!(tenant = %record.id, error = %e, "stored tenant left out"),
        }
    }
    tenants
}

/// Puts the API tenants `records` in force in `directory` as its source [`SOURCE`], leaving out
/// (with a warning) any that clashes with another source: a tenant of the same id, or a key of the
/// same id, in this process's tenants file. One process's file then cannot stop every other tenant
/// of a cluster from applying there.
pub fn put_in_force(directory: &Directory, records: &Records) {
    let mut tenants = checked(records);
    loop {
        let Err(conflict) = directory.replace(SOURCE, tenants.clone()) else {
            return;
        };
        let culprit = match &conflict {
            ConflictError::Tenant { tenant, .. } => vec![tenant.clone()],
            ConflictError::Key { first, second, .. } => vec![first.clone(), second.clone()],
        };
        let before = tenants.len();
        tenants.retain(|t| !culprit.iter().any(|c| c == t.id.as_str()));
        warn!(error = %conflict, "a tenant of the control API clashes with the tenants file: it is left out here");
        if tenants.len() == before {
            // Not one of ours (cannot happen: the other sources were in force without it); give up
            // rather than loop.
            return;
        }
    }
}

fn origin(records: &Records, id: &TenantId) -> Origin {
    if records.contains_key(id) {
        Origin::Api
    } else {
        Origin::TenantsFile
    }
}
