//! Who is asking: the operator (a bearer token of `--api-token-file`) or one tenant (a JWT of one of
//! its keys with the `admin` grant, or an API key pair: `Basic` with an HS256 key's id and secret).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::header::{self, HeaderMap};
use subtle::ConstantTimeEq;
use switchboard_proto::TenantId;
use switchboard_tenants::Snapshot;
use switchboard_tenants::token::{self, Rules};

use crate::error::ApiError;

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The operator: every tenant.
    Operator,
    /// One tenant: only itself.
    Tenant(TenantId),
}

impl Scope {
    /// The operator only; a tenant gets 403.
    pub fn operator(&self) -> Result<(), ApiError> {
        match self {
            Scope::Operator => Ok(()),
            Scope::Tenant(_) => Err(ApiError::Forbidden("operator scope required")),
        }
    }

    /// The operator or tenant `id` itself. Another tenant's id is not found, so that a tenant cannot
    /// learn which other tenants exist.
    pub fn may_see(&self, id: &TenantId) -> Result<(), ApiError> {
        match self {
            Scope::Operator => Ok(()),
            Scope::Tenant(own) if own == id => Ok(()),
            Scope::Tenant(_) => Err(ApiError::NotFound),
        }
    }
}

/// The operator's bearer tokens. Never printed.
#[derive(Clone, Default)]
pub struct OperatorTokens(Vec<Vec<u8>>);

impl std::fmt::Debug for OperatorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorTokens({} tokens)", self.0.len())
    }
}

/// Why the token file cannot be used. Never quotes a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A token is too short to resist guessing.
    #[error("{path}, line {line}: a token must have at least {MIN_TOKEN_BYTES} characters")]
    Short {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
    },
    /// No token at all.
    #[error("{path} holds no token (one per line)")]
    Empty {
        /// The file.
        path: String,
    },
}

/// The shortest operator token accepted.
pub const MIN_TOKEN_BYTES: usize = 16;

impl OperatorTokens {
    /// Tokens given directly (tests, and callers that read them elsewhere).
    pub fn new(tokens: impl IntoIterator<Item = String>) -> OperatorTokens {
        OperatorTokens(tokens.into_iter().map(String::into_bytes).collect())
    }

    /// Reads the token file: one token per line; blank lines and lines starting with `#` are
    /// skipped.
    pub fn read(path: &Path) -> Result<OperatorTokens, TokenFileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: name.clone(),
            source,
        })?;
        let mut tokens = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() < MIN_TOKEN_BYTES {
                return Err(TokenFileError::Short {
                    path: name,
                    line: index + 1,
                });
            }
            tokens.push(line.as_bytes().to_vec());
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty { path: name });
        }
        Ok(OperatorTokens(tokens))
    }

    /// Whether `candidate` is one of the tokens. Every token is compared, each in constant time, so
    /// the time taken does not tell how much of a guess was right.
    fn matches(&self, candidate: &[u8]) -> bool {
        self.0.iter().fold(0u8, |found, token| {
            found | token.ct_eq(candidate).unwrap_u8()
        }) == 1
    }
}

/// Authenticates a request from its `Authorization` header, against the operator's tokens and
/// the tenants in force at `now` (seconds since the Unix epoch).
pub fn authenticate(
    headers: &HeaderMap,
    operators: &OperatorTokens,
    snapshot: &Snapshot,
    rules: Rules,
    now: u64,
) -> Result<Scope, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing credentials"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("invalid credentials"))?;
    let (scheme, credentials) = value
        .split_once(' ')
        .ok_or(ApiError::Unauthorized("invalid credentials"))?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if operators.matches(credentials.as_bytes()) {
            return Ok(Scope::Operator);
        }
        let session = token::verify(snapshot, credentials, rules, now)
            .map_err(|_| ApiError::Unauthorized("invalid credentials"))?;
        if !session.may_admin {
            return Err(ApiError::Forbidden("the token has no admin grant"));
        }
        return Ok(Scope::Tenant(session.tenant.id.clone()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(ApiError::Unauthorized("invalid credentials"))?;
        let (key_id, secret) = decoded
            .split_once(':')
            .ok_or(ApiError::Unauthorized("invalid credentials"))?;
        // One answer for an unknown key, a revoked one and a wrong secret: which of them it was
        // helps only someone guessing.
        return match snapshot.key(key_id) {
            Some((tenant, key)) if !key.revoked && key.secret_matches(secret.as_bytes()) => {
                Ok(Scope::Tenant(tenant.id.clone()))
            }
            _ => Err(ApiError::Unauthorized("invalid credentials")),
        };
    }
    Err(ApiError::Unauthorized("invalid credentials"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_tokens_match_whole() {
        let tokens =
            OperatorTokens::new(["first-token-0123456789".into(), "second-token-0123".into()]);
        assert!(tokens.matches(b"second-token-0123"));
        assert!(!tokens.matches(b"second-token-012"));
        assert!(!tokens.matches(b""));
        assert!(!format!("{tokens:?}").contains("first"));
    }
}
