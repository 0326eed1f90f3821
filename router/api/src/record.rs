//! Tenants as the API keeps them: [`TenantRecord`], serializable (the standalone state file, the
//! cluster's `sb-tenants` bucket), turned into the [`Tenant`]s the directory serves; and the views
//! the API answers with, which never carry a secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use switchboard_proto::TenantId;
use switchboard_tenants::file::MIN_SECRET_BYTES;
use switchboard_tenants::{Key, Limits, Origins, Secret, Tenant, TurnSettings, WebhookSettings};

/// One tenant created through the API, with everything needed to verify its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    /// Its id.
    pub id: TenantId,
    /// Its quotas.
    #[serde(default)]
    pub limits: Limits,
    /// Origins of pages that may connect (empty: any).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Whether clients without an `Origin` header may connect.
    pub allow_missing_origin: bool,
    /// Its own TURN servers.
    #[serde(default)]
    pub turn: Option<TurnRecord>,
    /// Its keys, revoked ones included.
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
    /// Its webhook (`PUT /v1/tenants/{id}/webhook`); absent in records stored before webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSettings>,
    /// When it was created, seconds since the Unix epoch.
    pub created_at: u64,
}

/// A tenant's TURN settings as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnRecord {
    /// TURN (and STUN) URLs.
    pub urls: Vec<String>,
    /// coturn's shared secrets; the first mints.
    pub secrets: Vec<String>,
    /// Lifetime of minted credentials, in seconds.
    pub ttl_seconds: u64,
}

/// One key as stored: an HS256 secret or a public key in PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The key id (a token's `kid`; the user name of an API key pair).
    pub id: String,
    /// `HS256`, `EdDSA` or `ES256`.
    pub algorithm: String,
    /// HS256: the shared secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// EdDSA, ES256: the public key in PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// A revoked key verifies nothing.
    #[serde(default)]
    pub revoked: bool,
    /// When it was created, seconds since the Unix epoch.
    pub created_at: u64,
}

/// Why a record cannot be a tenant. The texts never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

impl TurnRecord {
    /// The settings the edge mints credentials with, checked.
    pub fn settings(&self) -> Result<TurnSettings, RecordError> {
        let settings = TurnSettings {
            urls: self.urls.clone(),
            secrets: self.secrets.iter().cloned().map(Secret::new).collect(),
            ttl: Duration::from_secs(self.ttl_seconds),
        };
        settings
            .validate()
            .map_err(|e| RecordError(format!("turn: {e}")))?;
        Ok(settings)
    }
}

impl KeyRecord {
    /// The key, checked.
    pub fn key(&self) -> Result<Key, RecordError> {
        let id = &self.id;
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c == ':') {
            return Err(RecordError(format!(
                "key id {id:?} must be 1 to 128 characters, without control characters or ':'"
            )));
        }
        let mut key = match (self.algorithm.as_str(), &self.secret, &self.public_key) {
            ("HS256", Some(secret), None) => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(RecordError(format!(
                        "key {id:?}: the secret is shorter than {MIN_SECRET_BYTES} bytes"
                    )));
                }
                Key::hs256(id.clone(), Secret::new(secret.clone()))
            }
            (name @ ("EdDSA" | "ES256"), None, Some(pem)) => {
                let algorithm = if name == "EdDSA" {
                    Algorithm::EdDSA
                } else {
                    Algorithm::ES256
                };
                Key::public(id.clone(), algorithm, pem).map_err(|e| {
                    RecordError(format!(
                        "key {id:?}: public_key is not a {name} public key in PEM: {e}"
                    ))
                })?
            }
            (other, _, _) => {
                return Err(RecordError(format!(
                    "key {id:?}: algorithm {other:?} needs a secret (HS256) or a public_key \
                     (EdDSA, ES256)"
                )));
            }
        };
        key.revoked = self.revoked;
        Ok(key)
    }
}

impl TenantRecord {
    /// The tenant the directory serves, checked.
    pub fn tenant(&self) -> Result<Tenant, RecordError> {
        for origin in &self.allowed_origins {
            switchboard_tenants::file::check_origin(origin).map_err(RecordError)?;
        }
        let keys = self
            .keys
            .iter()
            .map(KeyRecord::key)
            .collect::<Result<Vec<_>, _>>()?;
        let turn = self
            .turn
            .as_ref()
            .map(TurnRecord::settings)
            .transpose()?
            .map(Arc::new);
        if let Some(webhook) = &self.webhook {
            webhook.validate().map_err(|e| RecordError(e.to_string()))?;
        }
        Ok(Tenant {
            id: self.id.clone(),
            keys,
            limits: self.limits,
            origins: Origins {
                allowed: self.allowed_origins.clone(),
                allow_missing: self.allow_missing_origin,
            },
            turn,
            webhook: self.webhook.clone().map(Arc::new),
        })
    }
}

/// Where a tenant comes from, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Created through the API: it may change it.
    Api,
    /// The operator's tenants file: read-only through the API.
    TenantsFile,
}

/// A tenant as the API shows it: no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantView {
    /// Its id.
    pub id: TenantId,
    /// `api` or `tenants_file` (read-only).
    pub source: Origin,
    /// Its quotas.
    pub limits: Limits,
    /// Allowed origins.
    pub allowed_origins: Vec<String>,
    /// Whether clients without `Origin` may connect.
    pub allow_missing_origin: bool,
    /// Its TURN settings, without the secrets.
    pub turn: Option<TurnView>,
    /// Its keys.
    pub keys: Vec<KeyView>,
    /// Its webhook, without the secret.
    pub webhook: Option<WebhookView>,
}

/// A webhook without its secret: the secret is write-only (a `PUT` sets it, nothing shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookView {
    /// Where events are POSTed.
    pub url: String,
}

/// TURN settings without their secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnView {
    /// TURN URLs.
    pub urls: Vec<String>,
    /// How many secrets are set.
    pub secrets: usize,
    /// Lifetime of minted credentials, in seconds.
    pub ttl_seconds: u64,
}

/// A key without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Its id.
    pub id: String,
    /// Its algorithm.
    pub algorithm: String,
    /// Whether it is revoked.
    pub revoked: bool,
}

impl TenantView {
    /// The view of a tenant in force.
    pub fn of(tenant: &Tenant, source: Origin) -> TenantView {
        TenantView {
            id: tenant.id.clone(),
            source,
            limits: tenant.limits,
            allowed_origins: tenant.origins.allowed.clone(),
            allow_missing_origin: tenant.origins.allow_missing,
            turn: tenant.turn.as_ref().map(|turn| TurnView {
                urls: turn.urls.clone(),
                secrets: turn.secrets.len(),
                ttl_seconds: turn.ttl.as_secs(),
            }),
            keys: tenant.keys.iter().map(KeyView::of).collect(),
            webhook: tenant.webhook.as_ref().map(|webhook| WebhookView {
                url: webhook.url.clone(),
            }),
        }
    }
}

impl KeyView {
    /// The view of a key.
    pub fn of(key: &Key) -> KeyView {
        KeyView {
            id: key.id.clone(),
            algorithm: format!("{:?}", key.algorithm),
            revoked: key.revoked,
        }
    }
}

/// The records of a store, by tenant.
pub type Records = BTreeMap<TenantId, TenantRecord>;
