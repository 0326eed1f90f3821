//! Join tokens: JWTs a customer's backend signs with one of its tenant's keys, checked when a
//! client connects.
//!
//! The header's `kid` picks the key, and with it the tenant; the key decides the algorithm (a
//! token's `alg` must match it, so `alg: none` and an HS256 token "signed" with a public key both
//! fail). Claims: `exp` (required), `nbf`, `iat`, `sub` (the user), `room` (the only room the
//! connection may join), `name` (the peer's name, replacing the one the client sends), `grants`
//! (`["join", "send"]` when absent), `tenant` (if present, must be the key's tenant).
//!
//! Time is the caller's: [`verify`] takes `now`, so every expiry case is tested without a clock.

use std::sync::Arc;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use switchboard_proto::limits::MAX_ROOM_ID_CHARS;

use crate::directory::Snapshot;
use crate::tenant::{Key, Tenant};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Join rooms.
    Join,
    /// Send messages to peers (`send_to_peer`).
    Send,
    /// Use the control API (docs/api.md) for the key's tenant. Never implied: a token without
    /// `grants` may join and send, not administer.
    Admin,
    /// A grant this version does not know; ignored, so newer backends can add grants.
    #[serde(other)]
    Unknown,
}

/// The claims of a join token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The user (the customer's own id for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The only room the connection may join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The peer's name: replaces any `name` the client puts in its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the token allows; absent means join and send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<Grant>>,
    /// The tenant; if present it must be the tenant of the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// The settings of token checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Seconds of clock difference forgiven on `exp` and `nbf`.
    pub leeway: u64,
    /// The longest a token may still be valid for when it is used (`exp - now`), in seconds: a
    /// leaked long-lived token would be a password.
    pub max_lifetime: u64,
}

/// Why a token was refused. `Display` is the `error` of the HTTP 401 answer (docs/hosting.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token in the URL or the `Authorization` header.
    #[error("missing token")]
    Missing,
    /// Not a JWT, a bad signature, the wrong algorithm for the key, or claims of the wrong shape.
    #[error("invalid token")]
    Invalid,
    /// No key has the token's `kid`.
    #[error("unknown key")]
    UnknownKey,
    /// The key was revoked.
    #[error("key revoked")]
    KeyRevoked,
    /// Past `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// Before `nbf` (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp` is further away than the maximum lifetime.
    #[error("token lifetime too long")]
    LifetimeTooLong,
}

impl TokenError {
    /// A stable name for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing_token",
            TokenError::Invalid => "invalid_token",
            TokenError::UnknownKey => "unknown_key",
            TokenError::KeyRevoked => "key_revoked",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::LifetimeTooLong => "token_lifetime_too_long",
        }
    }
}

/// A verified token: who connects, for which tenant, allowed to do what.
#[derive(Debug, Clone)]
pub struct Session {
    /// The tenant.
    pub tenant: Arc<Tenant>,
    /// The key that signed the token.
    pub key_id: String,
    /// `sub`.
    pub subject: Option<String>,
    /// `room`.
    pub room: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// May join rooms.
    pub may_join: bool,
    /// May send to peers.
    pub may_send: bool,
    /// May use the control API for its tenant (the `admin` grant).
    pub may_admin: bool,
    /// `exp`.
    pub expires_at: u64,
}

/// Checks `token` against the tenants of `snapshot` at `now` (seconds since the Unix epoch).
pub fn verify(
    snapshot: &Snapshot,
    token: &str,
    rules: Rules,
    now: u64,
) -> Result<Session, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    // The header is read unverified only to find the key; everything it says is checked against
    // the key below.
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let (tenant, key) = snapshot.key(&kid).ok_or(TokenError::UnknownKey)?;
    if key.revoked {
        return Err(TokenError::KeyRevoked);
    }
    let mut validation = Validation::new(key.algorithm);
    // Expiry is checked below against the caller's clock, with our own error texts.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    // Every failure here (signature, algorithm, shape of the claims) is `invalid token`: telling
    // a forger which check failed helps only the forger.
    let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
        .map_err(|_| TokenError::Invalid)?;
    let claims = data.claims;
    if claims
        .tenant
        .as_deref()
        .is_some_and(|claimed| claimed != tenant.id.as_str())
    {
        return Err(TokenError::Invalid);
    }
    if now > claims.exp.saturating_add(rules.leeway) {
        return Err(TokenError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(rules.leeway))
    {
        return Err(TokenError::NotYetValid);
    }
    if claims.exp.saturating_sub(now) > rules.max_lifetime.saturating_add(rules.leeway) {
        return Err(TokenError::LifetimeTooLong);
    }
    if let Some(room) = &claims.room
        && (room.is_empty() || room.chars().count() > MAX_ROOM_ID_CHARS)
    {
        return Err(TokenError::Invalid);
    }
    let (may_join, may_send, may_admin) = match &claims.grants {
        None => (true, true, false),
        Some(grants) => (
            grants.contains(&Grant::Join),
            grants.contains(&Grant::Send),
            grants.contains(&Grant::Admin),
        ),
    };
    Ok(Session {
        tenant: tenant.clone(),
        key_id: kid,
        subject: claims.sub,
        room: claims.room,
        name: claims.name,
        may_join,
        may_send,
        may_admin,
        expires_at: claims.exp,
    })
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The key is a public key: only its owner, with the private key, can sign.
    #[error("key {0:?} is a public key: sign with its private key (--private-key-file)")]
    PublicKey(String),
    /// Signing failed.
    #[error("cannot sign")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Signs `claims` with `key` (an HS256 key), with `kid` set.
pub fn mint(key: &Key, claims: &Claims) -> Result<String, MintError> {
    let encoding = key
        .encoding()
        .ok_or_else(|| MintError::PublicKey(key.id.clone()))?;
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.id.clone());
    jsonwebtoken::encode(&header, claims, &encoding).map_err(MintError::Sign)
}

/// Signs `claims` for key id `kid` with a private key in PEM (EdDSA or ES256, per `key`).
pub fn mint_with_private_key(
    key: &Key,
    private_pem: &str,
    claims: &Claims,
) -> Result<String, MintError> {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let encoding = match key.algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        _ => return mint(key, claims),
    }
    .map_err(MintError::Sign)?;
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.id.clone());
    jsonwebtoken::encode(&header, claims, &encoding).map_err(MintError::Sign)
}

#[cfg(test)]
mod tests;
