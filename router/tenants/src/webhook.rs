//! A tenant's webhook settings: where its room events are POSTed and what they are signed with
//! (docs/webhooks.md). The delivery engine is `switchboard_api::webhooks`; the settings live here, with
//! the tenant, so the tenants file and the API store and check them alike.

use http::Uri;
use serde::{Deserialize, Serialize};

/// Fewest bytes of a webhook secret: shorter secrets are guessable by brute force against one signed
/// request, and nothing forces an operator to pick a short one.
pub const MIN_SECRET_BYTES: usize = 16;

/// A tenant's webhook: the endpoint its events are POSTed to and the secret they are signed with.
/// Stored with the tenant (the API manages it); the engine reads it at every attempt, so a changed
/// URL or secret applies to events already queued.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// `https://host[:port][/path]` or `http://host[:port][/path]` (docs/webhooks.md).
    pub url: String,
    /// The HMAC-SHA256 key, at least [`MIN_SECRET_BYTES`] bytes.
    pub secret: String,
}

// The secret never appears in logs, even through a `{:?}` of a tenant.
impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why webhook settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The URL does not parse.
    #[error("webhook url is not a valid URL")]
    InvalidUrl,
    /// The scheme is neither `https://` nor `http://`.
    #[error("webhook url must start with https:// or http://")]
    UnsupportedScheme,
    /// No host in the URL.
    #[error("webhook url has no host")]
    MissingHost,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("webhook secret must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort,
}

/// A checked endpoint: what a delivery connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address, as in the URL (IPv6 without brackets).
    pub host: String,
    /// Port (443 for `https://`, 80 for `http://`, when the URL names none).
    pub port: u16,
    /// `https://`: the connection is TLS, and the receiver's certificate must name `host`.
    pub tls: bool,
    /// `host[:port]` as sent in the `Host` header.
    pub authority: String,
    /// Path and query (`/` when the URL has none).
    pub path: String,
}

impl WebhookSettings {
    /// Checks the settings; the API calls this before storing them, the engine before each attempt.
    pub fn validate(&self) -> Result<Endpoint, SettingsError> {
        if self.secret.len() < MIN_SECRET_BYTES {
            return Err(SettingsError::SecretTooShort);
        }
        let uri: Uri = self.url.parse().map_err(|_| SettingsError::InvalidUrl)?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(_) => return Err(SettingsError::UnsupportedScheme),
            None => return Err(SettingsError::InvalidUrl),
        };
        let authority = uri.authority().ok_or(SettingsError::MissingHost)?;
        let host = authority.host();
        if host.is_empty() {
            return Err(SettingsError::MissingHost);
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned();
        Ok(Endpoint {
            host,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
            authority: authority.as_str().to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, secret: &str) -> WebhookSettings {
        WebhookSettings {
            url: url.to_owned(),
            secret: secret.to_owned(),
        }
    }

    #[test]
    fn validation_table() {
        let ok = "0123456789abcdef";
        // url, secret, (host, port, tls, path) or the refusal
        type Case<'a> = (
            &'a str,
            &'a str,
            Result<(&'a str, u16, bool, &'a str), SettingsError>,
        );
        let cases: &[Case] = &[
            (
                "http://127.0.0.1:8080/hooks?x=1",
                ok,
                Ok(("127.0.0.1", 8080, false, "/hooks?x=1")),
            ),
            (
                "http://example.com",
                ok,
                Ok(("example.com", 80, false, "/")),
            ),
            ("http://[::1]:9/h", ok, Ok(("::1", 9, false, "/h"))),
            (
                "https://example.com/h",
                ok,
                Ok(("example.com", 443, true, "/h")),
            ),
            (
                "https://127.0.0.1:8443/hooks",
                ok,
                Ok(("127.0.0.1", 8443, true, "/hooks")),
            ),
            ("https://[::1]", ok, Ok(("::1", 443, true, "/"))),
            (
                "HTTPS://example.com/h",
                ok,
                Ok(("example.com", 443, true, "/h")),
            ),
            ("https:///h", ok, Err(SettingsError::InvalidUrl)),
            (
                "ftp://example.com/h",
                ok,
                Err(SettingsError::UnsupportedScheme),
            ),
            ("example.com/h", ok, Err(SettingsError::InvalidUrl)),
            ("not a url", ok, Err(SettingsError::InvalidUrl)),
            (
                "http://example.com/h",
                "short",
                Err(SettingsError::SecretTooShort),
            ),
        ];
        for (url, secret, want) in cases {
            let got = settings(url, secret)
                .validate()
                .map(|e| (e.host, e.port, e.tls, e.path));
            let want = want
                .clone()
                .map(|(h, p, tls, path)| (h.to_owned(), p, tls, path.to_owned()));
            assert_eq!(got, want, "{url}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", settings("http://h/", "supersecretvalue!"));
        assert!(!text.contains("supersecret"), "{text}");
    }
}
