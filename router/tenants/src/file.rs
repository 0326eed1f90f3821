//! The tenants file: TOML, written by the operator (a Kubernetes Secret mounts it), checked as a
//! whole before any of it is used.
//!
//! ```toml
//! [tenants.acme]
//! allowed_origins = ["https://app.acme.example"]
//! allow_missing_origin = false
//!
//! [tenants.acme.limits]
//! max_connections = 1000
//! max_rooms = 200
//! max_room_size = 8
//! messages_per_second = 500
//!
//! [[tenants.acme.keys]]
//! id = "acme-2026-11"
//! secret = "at least 32 bytes of random, e.g. from openssl rand -base64 32"
//!
//! [[tenants.acme.keys]]
//! id = "acme-ed25519"
//! algorithm = "EdDSA"
//! public_key = """
//! -----BEGIN PUBLIC KEY-----
//! ...
//! -----END PUBLIC KEY-----
//! """
//!
//! [tenants.acme.webhook]
//! url = "http://hooks.acme.internal:8080/switchboard"
//! secret = "at least 16 bytes, e.g. from openssl rand -base64 32"
//! ```
//!
//! Errors name the tenant, the key and the line, never a secret: the `toml` crate's own messages
//! quote the offending line, which may hold one, so they are rebuilt here from the position alone.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use switchboard_proto::TenantId;

use crate::tenant::{Key, Limits, Origins, Tenant};
use crate::{Secret, TurnSettings, WebhookSettings};

/// The shortest HS256 secret accepted: shorter than the hash, a secret is easier to guess than the
/// signature is to forge (RFC 7518, 3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a tenants file was refused. The text says where and what, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        error: String,
    },
    /// Not valid TOML, or a field of the wrong type or name.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong (without the line's text).
        message: String,
    },
    /// A tenant's entry is wrong.
    #[error("tenant {tenant:?}: {message}")]
    Tenant {
        /// The tenant's id as written.
        tenant: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    tenants: BTreeMap<String, TenantDoc>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantDoc {
    #[serde(default)]
    keys: Vec<KeyDoc>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default = "yes")]
    allow_missing_origin: bool,
    #[serde(default)]
    turn: Option<TurnSettings>,
    #[serde(default)]
    webhook: Option<WebhookSettings>,
}

fn yes() -> bool {
    true
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    id: String,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    secret: Option<Secret>,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    revoked: bool,
}

/// Reads and checks the tenants file at `path`.
pub fn read(path: &Path) -> Result<Vec<Tenant>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Read {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    parse(&text)
}

/// Parses and checks a tenants file's text.
pub fn parse(text: &str) -> Result<Vec<Tenant>, FileError> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
    let mut key_ids = HashSet::new();
    let mut tenants = Vec::with_capacity(doc.tenants.len());
    for (id, entry) in doc.tenants {
        let fail = |message: String| FileError::Tenant {
            tenant: id.clone(),
            message,
        };
        let tenant_id = TenantId::parse(&id).map_err(|e| fail(e.to_string()))?;
        let mut keys = Vec::with_capacity(entry.keys.len());
        for key in entry.keys {
            let key = parse_key(key).map_err(&fail)?;
            if !key_ids.insert(key.id.clone()) {
                return Err(fail(format!(
                    "key id {:?} is used twice (key ids are unique over all tenants: a token's \
                     kid picks its tenant)",
                    key.id
                )));
            }
            keys.push(key);
        }
        for origin in &entry.allowed_origins {
            check_origin(origin).map_err(&fail)?;
        }
        if let Some(turn) = &entry.turn {
            turn.validate().map_err(|e| fail(format!("turn: {e}")))?;
        }
        if let Some(webhook) = &entry.webhook {
            webhook.validate().map_err(|e| fail(e.to_string()))?;
        }
        tenants.push(Tenant {
            id: tenant_id,
            keys,
            limits: entry.limits,
            origins: Origins {
                allowed: entry.allowed_origins,
                allow_missing: entry.allow_missing_origin,
            },
            turn: entry.turn.map(Arc::new),
            webhook: entry.webhook.map(Arc::new),
        });
    }
    Ok(tenants)
}

fn parse_key(doc: KeyDoc) -> Result<Key, String> {
    let id = doc.id;
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(format!(
            "key id {id:?} must be 1 to 128 characters without control characters"
        ));
    }
    let mut key = match (doc.secret, doc.public_key, doc.algorithm.as_deref()) {
        (Some(secret), None, None | Some("HS256")) => {
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "key {id:?}: the secret is shorter than {MIN_SECRET_BYTES} bytes"
                ));
            }
            Key::hs256(id, secret)
        }
        (Some(_), None, Some(other)) => {
            return Err(format!(
                "key {id:?}: a secret is an HS256 key, not {other:?} (give public_key for EdDSA \
                 or ES256)"
            ));
        }
        (None, Some(pem), Some(name @ ("EdDSA" | "ES256"))) => {
            let algorithm = if name == "EdDSA" {
                Algorithm::EdDSA
            } else {
                Algorithm::ES256
            };
            Key::public(id.clone(), algorithm, &pem).map_err(|e| {
                format!("key {id:?}: public_key is not a {name} public key in PEM: {e}")
            })?
        }
        (None, Some(_), other) => {
            return Err(format!(
                "key {id:?}: public_key needs algorithm = \"EdDSA\" (Ed25519) or \"ES256\" \
                 (P-256), not {other:?}"
            ));
        }
        (Some(_), Some(_), _) => {
            return Err(format!(
                "key {id:?}: give either secret (HS256) or public_key, not both"
            ));
        }
        (None, None, _) => {
            return Err(format!(
                "key {id:?}: give secret (HS256) or public_key with algorithm"
            ));
        }
    };
    key.revoked = doc.revoked;
    Ok(key)
}

/// Checks one allowed origin: `*`, or `scheme://host[:port]` without a path.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let valid = origin == "*"
        || ((origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.ends_with('/')
            && !origin.contains(char::is_whitespace)
            && origin
                .split("://")
                .nth(1)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "allowed origin {origin:?} is not `*` or `scheme://host[:port]` (no path, no trailing /)"
        ))
    }
}

/// A syntax error at its line and column, with the parser's message but not the line's text.
fn syntax_error(text: &str, error: &toml::de::Error) -> FileError {
    let (line, column) = match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        }
        None => (0, 0),
    };
    FileError::Syntax {
        line,
        column,
        message: redact(error.message().trim()),
    }
}

/// serde's type errors quote the value (``invalid type: integer `123`, expected a string``), which
/// may be a mistyped secret: keep the kind and the expectation only. Also for the control API's
/// JSON bodies, which may hold secrets too.
pub fn redact(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind = rest.split_whitespace().next().unwrap_or_default();
            let expected = rest.find(", expected ").map_or("", |at| &rest[at..]);
            return format!("{}{kind}{expected}", prefix);
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests;
