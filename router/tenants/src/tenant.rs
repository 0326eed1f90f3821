//! A tenant: one customer of a hosted endpoint, with its keys, limits and allowed origins.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::sync::Arc;

use switchboard_proto::TenantId;

use crate::{Secret, TurnSettings, WebhookSettings};

/// One customer of a hosted endpoint.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its id (in metric labels, logs and the bus; the operator's name for the customer).
    pub id: TenantId,
    /// Its signing keys; several at once, so a key can be rotated without downtime.
    pub keys: Vec<Key>,
    /// Its quotas.
    pub limits: Limits,
    /// Which pages may connect.
    pub origins: Origins,
    /// Its own TURN servers and secrets; without them its connections get the edge's global
    /// settings (`--turn-url`), if any.
    pub turn: Option<Arc<TurnSettings>>,
    /// Where its room events are POSTed (docs/webhooks.md); none: no webhooks.
    pub webhook: Option<Arc<WebhookSettings>>,
}

impl Tenant {
    /// The key with id `kid`.
    pub fn key(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|key| key.id == kid)
    }
}

/// A tenant's quotas; 0 means unlimited. In a cluster they hold cluster-wide, within the bound
/// docs/hosting.md gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent connections.
    pub max_connections: u32,
    /// Open rooms.
    pub max_rooms: u32,
    /// Members per room (the edge's `--max-room-size` applies too; the smaller wins).
    pub max_room_size: u32,
    /// Messages per second over all the tenant's connections (each connection also has the edge's
    /// per-connection limit).
    pub messages_per_second: u32,
    /// How many messages the tenant may send at once above that rate; 0 means one second's worth.
    pub message_burst: u32,
}

/// Which `Origin`s may open a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    /// Allowed origins (`scheme://host[:port]`, compared without case), or `*` for any. Empty: any.
    pub allowed: Vec<String>,
    /// Whether an upgrade without an `Origin` header (a native client, not a browser) is allowed.
    pub allow_missing: bool,
}

impl Default for Origins {
    fn default() -> Self {
        Origins {
            allowed: Vec::new(),
            allow_missing: true,
        }
    }
}

/// Why an upgrade's `Origin` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefused {
    /// The `Origin` is not in the list.
    #[error("origin not allowed")]
    NotAllowed,
    /// There is no `Origin` and native clients are not allowed.
    #[error("origin required")]
    Missing,
}

impl Origins {
    /// Checks the `Origin` header of an upgrade (`None`: no header).
    pub fn check(&self, origin: Option<&str>) -> Result<(), OriginRefused> {
        let Some(origin) = origin else {
            return if self.allow_missing {
                Ok(())
            } else {
                Err(OriginRefused::Missing)
            };
        };
        let origin = origin.trim().trim_end_matches('/');
        let allowed = self.allowed.is_empty()
            || self
                .allowed
                .iter()
                .any(|entry| entry == "*" || entry.eq_ignore_ascii_case(origin));
        if allowed {
            Ok(())
        } else {
            Err(OriginRefused::NotAllowed)
        }
    }
}

/// A tenant's signing key. The algorithm is part of the key, not taken from a token's header, so a
/// token cannot pick how it is verified (no `alg: none`, no HS256 with a public key as the secret).
#[derive(Clone)]
pub struct Key {
    /// The key id: a token's header `kid` picks the key (unique over all tenants).
    pub id: String,
    /// The only algorithm this key verifies.
    pub algorithm: Algorithm,
    /// A revoked key stays listed but verifies nothing.
    pub revoked: bool,
    pub(crate) decoding: DecodingKey,
    /// HS256 keys can also sign (the `token` command, tests); public keys cannot.
    pub(crate) secret: Option<Secret>,
}

impl Key {
    /// An HS256 key.
    pub fn hs256(id: impl Into<String>, secret: Secret) -> Key {
        Key {
            id: id.into(),
            algorithm: Algorithm::HS256,
            revoked: false,
            decoding: DecodingKey::from_secret(secret.expose()),
            secret: Some(secret),
        }
    }

    /// A public key in PEM for `algorithm` (EdDSA with Ed25519, or ES256 with P-256).
    pub fn public(
        id: impl Into<String>,
        algorithm: Algorithm,
        pem: &str,
    ) -> Result<Key, jsonwebtoken::errors::Error> {
        let decoding = match algorithm {
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes())?,
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem.as_bytes())?,
            _ => {
                return Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into());
            }
        };
        Ok(Key {
            id: id.into(),
            algorithm,
            revoked: false,
            decoding,
            secret: None,
        })
    }

    /// Whether `candidate` is this HS256 key's secret (an API key pair's password, docs/api.md),
    /// compared in constant time. Public keys have no secret: always false.
    pub fn secret_matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.secret
            .as_ref()
            .is_some_and(|secret| bool::from(secret.expose().ct_eq(candidate)))
    }

    /// The key that signs with this one: the secret of an HS256 key. Public keys sign nothing here
    /// (the customer keeps the private key).
    pub fn encoding(&self) -> Option<EncodingKey> {
        self.secret
            .as_ref()
            .map(|secret| EncodingKey::from_secret(secret.expose()))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let origins = Origins {
            allowed: vec![
                "https://app.example.com".into(),
                "http://127.0.0.1:8080".into(),
            ],
            allow_missing: false,
        };
        assert_eq!(origins.check(Some("https://APP.example.com")), Ok(()));
        assert_eq!(origins.check(Some("http://127.0.0.1:8080/")), Ok(()));
        assert_eq!(
            origins.check(Some("https://app.example.com.evil.test")),
            Err(OriginRefused::NotAllowed)
        );
        assert_eq!(
            origins.check(Some("http://app.example.com")),
            Err(OriginRefused::NotAllowed)
        );
        assert_eq!(origins.check(None), Err(OriginRefused::Missing));
        let open = Origins::default();
        assert_eq!(open.check(Some("https://anything.test")), Ok(()));
        assert_eq!(open.check(None), Ok(()));
        let star = Origins {
            allowed: vec!["*".into()],
            allow_missing: false,
        };
        assert_eq!(star.check(Some("https://anything.test")), Ok(()));
    }

    #[test]
    fn keys_never_print_their_secret() {
        let key = Key::hs256("k1", Secret::new("a very secret secret of 32 bytes!"));
        assert!(!format!("{key:?}").contains("secret of"));
    }
}
