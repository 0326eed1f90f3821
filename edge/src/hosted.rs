//! Who may open a connection: open mode (palava's; an optional list of origins) or hosted mode (a
//! join token signed by a tenant's key, and the tenant's origins).
//!
//! The check runs on the upgrade request, before the connection takes a place under
//! `--max-connections`; a refusal is an HTTP answer with a JSON body `{"error": REASON}`
//! (docs/hosting.md lists every reason).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{self, HeaderMap};
use hyper::{StatusCode, Uri};
use switchboard_runtime::http::Encoded;
use switchboard_tenants::token::{self, Rules, Session, TokenError};
use switchboard_tenants::{Directory, OriginRefused, Origins};

use crate::config::{AuthMode, HostedArgs};

/// How this edge admits connections.
#[derive(Debug, Clone)]
pub enum Access {
    /// Open mode: anyone, from the allowed origins.
    Open(Origins),
    /// Hosted mode: a valid token of a tenant, from one of the tenant's origins.
    Tokens {
        /// The tenants in force.
        directory: Directory,
        /// Token checks.
        rules: Rules,
    },
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 401 (no valid token), 403 (origin), 429 (quota).
    pub status: StatusCode,
    /// The `error` of the JSON body, and the metric label (with `_` for spaces).
    pub reason: &'static str,
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: match error {
                TokenError::Missing => "missing token",
                TokenError::Invalid => "invalid token",
                TokenError::UnknownKey => "unknown key",
                TokenError::KeyRevoked => "key revoked",
                TokenError::Expired => "token expired",
                TokenError::NotYetValid => "token not yet valid",
                TokenError::LifetimeTooLong => "token lifetime too long",
            },
        }
    }
}

impl From<OriginRefused> for Refusal {
    fn from(error: OriginRefused) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            reason: match error {
                OriginRefused::NotAllowed => "origin not allowed",
                OriginRefused::Missing => "origin required",
            },
        }
    }
}

impl Refusal {
    /// The metric label of the reason.
    pub fn label(&self) -> String {
        self.reason.replace(' ', "_")
    }
}

impl Access {
    /// The access of these settings, reading tenants from `directory` (fed by the tenants file).
    pub fn new(hosted: &HostedArgs, directory: Directory) -> Access {
        match hosted.auth {
            AuthMode::None => Access::Open(Origins {
                allowed: hosted.allowed_origins.clone(),
                allow_missing: hosted.allow_missing_origin,
            }),
            AuthMode::Tokens => Access::Tokens {
                directory,
                rules: hosted.tenants.rules(),
            },
        }
    }

    /// Whether connections carry tenants.
    pub fn hosted(&self) -> bool {
        matches!(self, Access::Tokens { .. })
    }

    /// Checks an upgrade request: its session in hosted mode, `None` in open mode.
    pub fn admit(&self, uri: &Uri, headers: &HeaderMap) -> Result<Option<Arc<Session>>, Refusal> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|value| value.to_str().unwrap_or("\u{FFFD}"));
        match self {
            Access::Open(origins) => {
                origins.check(origin)?;
                Ok(None)
            }
            Access::Tokens { directory, rules } => {
                let token = token_of(uri, headers).ok_or(TokenError::Missing)?;
                let session = token::verify(&directory.snapshot(), &token, *rules, unix_now())?;
                session.tenant.origins.check(origin)?;
                Ok(Some(Arc::new(session)))
            }
        }
    }
}

/// The token of an upgrade: `Authorization: Bearer` (native clients), else the URL's `access_token`
/// (browsers cannot set headers on a WebSocket, and palava-client takes a plain URL).
fn token_of(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "access_token")
        .map(|(_, value)| percent_decode(value))
}

/// Percent-decoding of a query value (a JWT is URL-safe already, but a client may still encode it).
/// Malformed escapes stay as they are; the token check then refuses the result.
fn percent_decode(value: &str) -> String {
    let bytes = switchboard_runtime::http::percent_decode(value, Encoded::Query);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Seconds since the Unix epoch (token times are in seconds).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn tokens_come_from_the_header_or_the_url() {
        let uri: Uri = "/?foo=1&access_token=a.b%2Ec&x".parse().unwrap();
        assert_eq!(token_of(&uri, &HeaderMap::new()).as_deref(), Some("a.b.c"));
        let bearer = headers(&[("authorization", "Bearer  h.e.d ")]);
        assert_eq!(token_of(&uri, &bearer).as_deref(), Some("h.e.d"));
        let basic = headers(&[("authorization", "Basic abc")]);
        assert_eq!(
            token_of(&uri, &basic),
            None,
            "a non-bearer header is no token"
        );
        assert_eq!(token_of(&"/".parse().unwrap(), &HeaderMap::new()), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn open_mode_checks_origins_only() {
        let access = Access::Open(Origins {
            allowed: vec!["https://ok.test".into()],
            allow_missing: false,
        });
        let uri: Uri = "/".parse().unwrap();
        assert_eq!(
            access
                .admit(&uri, &headers(&[("origin", "https://ok.test")]))
                .map(|s| s.is_none()),
            Ok(true)
        );
        assert_eq!(
            access
                .admit(&uri, &headers(&[("origin", "https://evil.test")]))
                .map(|_| ())
                .unwrap_err()
                .reason,
            "origin not allowed"
        );
        assert_eq!(
            access
                .admit(&uri, &HeaderMap::new())
                .map(|_| ())
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
    }
}
