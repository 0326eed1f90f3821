//! coturn REST-API credentials (`use-auth-secret`): short-lived TURN credentials that the TURN server
//! checks with a secret it shares with us, without a user database.
//!
//! The scheme (draft-uberti-behave-turn-rest-00, as coturn implements it):
//! - username: `"<expiry>:<user>"`, the expiry in Unix seconds;
//! - password: `base64(HMAC-SHA1(secret, username))`, standard alphabet with padding.
//!
//! coturn (`use-auth-secret` with one or more `static-auth-secret=` lines) recomputes the password
//! with each of its secrets and refuses a username whose expiry has passed (compared with its clock
//! in whole seconds: a credential is good through the second it expires in). It checks this when a
//! client authenticates a new TURN session (an allocation); an allocation made in time keeps being
//! refreshed after the expiry. So [`TurnSettings::ttl`] bounds how long after a join a client can
//! start using the relay, not how long a call may last.
//!
//! Minting is a pure function of the settings, the user and the time the caller passes in: no clock
//! is read here.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::Secret;
use crate::ice_url::{IceUrlError, check_ice_url};

/// Default lifetime of minted credentials: 12 hours. Credentials are minted once per join, and a
/// member creates a peer connection for every newcomer with the credentials of its own join, so
/// they must outlive a long stay in one room (a working day); shorter would leave a long-standing
/// member without a relay for late newcomers. A leaked credential is good for at most as long.
pub const DEFAULT_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// Longest lifetime accepted: 7 days. More is almost certainly a mistake (milliseconds written as
/// seconds), and credentials that live that long are as good as static ones.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Longest user part of a username, in bytes. STUN usernames are shorter than 513 bytes (RFC 8489)
/// and coturn keeps at most 512; 256 leaves room for the expiry and the separator.
pub const MAX_USER_BYTES: usize = 256;

/// Where and how to mint TURN credentials: the TURN servers' URLs, the shared secrets and the
/// credentials' lifetime.
///
/// Deserializable from a TOML table (a tenant's `turn` section):
///
/// ```toml
/// urls = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]
/// secrets = ["new-secret", "old-secret"]   # the first mints; list the same in coturn
/// ttl = "12h"                              # or seconds: ttl = 43200; optional, 12h by default
/// ```
///
/// Check it with [`TurnSettings::validate`] when it is loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSettings {
    /// `turn:`, `turns:` (and possibly `stun:`, `stuns:`) URLs of the TURN servers that share the
    /// secrets; handed to the browser as one `RTCIceServer` with the minted credentials.
    pub urls: Vec<String>,
    /// The shared secrets. The first mints; the TURN servers should accept every one listed here
    /// (coturn: one `static-auth-secret=` line each), so that a secret can be rotated: add the new one
    /// to the TURN servers, put it first here, and drop the old one once the credentials it minted
    /// have expired.
    pub secrets: Vec<Secret>,
    /// How long minted credentials are good for, at least one second and at most [`MAX_TTL`]; whole
    /// seconds (a fraction is dropped). In TOML a humantime string (`"90s"`, `"12h"`, `"1h 30m"`) or
    /// a number of seconds; [`DEFAULT_TTL`] when left out.
    #[serde(default = "default_ttl", deserialize_with = "ttl::deserialize")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

/// Why [`TurnSettings`] cannot be used. The texts never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnSettingsError {
    /// `urls` is empty.
    #[error("no TURN URL given")]
    NoUrls,
    /// A URL a browser would refuse.
    #[error("TURN URL {0}")]
    Url(#[source] IceUrlError),
    /// Only STUN URLs: there is no TURN server to use the credentials with.
    #[error("no turn: or turns: URL among the TURN URLs (STUN needs no credentials)")]
    NoTurnUrl,
    /// `secrets` is empty.
    #[error("no TURN secret given")]
    NoSecrets,
    /// Secret number `index` (from 1) is empty.
    #[error("TURN secret #{0} is empty")]
    EmptySecret(usize),
    /// Secret number `index` (from 1) has a control character (a line break, a NUL), which coturn's
    /// configuration cannot hold: coturn would never accept what it mints.
    #[error("TURN secret #{0} contains a control character")]
    ControlCharacter(usize),
    /// The lifetime is under a second.
    #[error("the TURN credential lifetime must be at least 1s")]
    TtlTooShort,
    /// The lifetime is over [`MAX_TTL`].
    #[error("the TURN credential lifetime must be at most 7 days (got {})", humantime::format_duration(*.0))]
    TtlTooLong(Duration),
}

/// Why no credentials could be minted for a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The settings have no secret (they were not validated).
    #[error("no TURN secret to mint with")]
    NoSecret,
    /// coturn would refuse a username with this user in it.
    #[error("TURN user not usable: {0}")]
    User(&'static str),
}

/// Credentials for one user, good until `expires_at`.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `"<expires_at>:<user>"`: the `username` of the `RTCIceServer`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`: its `credential`.
    pub password: String,
    /// Unix seconds after which the TURN server refuses new allocations with these credentials.
    pub expires_at: u64,
    /// The lifetime they were minted with, in seconds.
    pub ttl_seconds: u64,
}

impl fmt::Debug for TurnCredentials {
    /// Without the password: credentials are handed to one client, not to logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .field("password", &"<secret>")
            .field("expires_at", &self.expires_at)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish()
    }
}

impl TurnSettings {
    /// Checks the settings: at least one valid URL, among them a TURN one; at least one secret, none
    /// empty or with control characters; a lifetime between 1 s and [`MAX_TTL`].
    pub fn validate(&self) -> Result<(), TurnSettingsError> {
        if self.urls.is_empty() {
            return Err(TurnSettingsError::NoUrls);
        }
        for url in &self.urls {
            check_ice_url(url).map_err(TurnSettingsError::Url)?;
        }
        if !self.urls.iter().any(|url| crate::ice_url::is_turn_url(url)) {
            return Err(TurnSettingsError::NoTurnUrl);
        }
        if self.secrets.is_empty() {
            return Err(TurnSettingsError::NoSecrets);
        }
        for (index, secret) in self.secrets.iter().enumerate() {
            if secret.is_empty() {
                return Err(TurnSettingsError::EmptySecret(index + 1));
            }
            if secret.expose().iter().any(u8::is_ascii_control) {
                return Err(TurnSettingsError::ControlCharacter(index + 1));
            }
        }
        if self.ttl < Duration::from_secs(1) {
            return Err(TurnSettingsError::TtlTooShort);
        }
        if self.ttl > MAX_TTL {
            return Err(TurnSettingsError::TtlTooLong(self.ttl));
        }
        Ok(())
    }

    /// Mints credentials for `user` at `now_unix_seconds`, with the first secret; they expire
    /// [`TurnSettings::ttl`] later (whole seconds).
    pub fn mint(&self, user: &str, now_unix_seconds: u64) -> Result<TurnCredentials, MintError> {
        let secret = self.secrets.first().ok_or(MintError::NoSecret)?;
        check_user(user).map_err(MintError::User)?;
        let ttl_seconds = self.ttl.as_secs();
        let expires_at = now_unix_seconds.saturating_add(ttl_seconds);
        let username = format!("{expires_at}:{user}");
        let password = password(secret, &username);
        Ok(TurnCredentials {
            username,
            password,
            expires_at,
            ttl_seconds,
        })
    }
}

/// The REST-API password of `username`: `base64(HMAC-SHA1(secret, username))`.
pub fn password(secret: &Secret, username: &str) -> String {
    // HMAC is defined for keys of every length (long ones are hashed first), so the only error
    // `new_from_slice` can return, InvalidLength, cannot happen.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether coturn takes a username with `user` in it. It answers 400 to a username with a space,
/// a quote, a backslash or a line break, or with both `union` and `select` in it (its guard against
/// SQL injection into its user database, applied even without one); the STUN username has a size
/// limit. The user part is also what coturn's per-user quotas count, so it is refused, not mangled.
pub fn check_user(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        return Err("empty");
    }
    if user.len() > MAX_USER_BYTES {
        return Err("longer than 256 bytes");
    }
    if user
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
    {
        return Err("contains whitespace, a control character, a quote or a backslash");
    }
    let lower = user.to_ascii_lowercase();
    if lower.contains("union") && lower.contains("select") {
        return Err("contains both \"union\" and \"select\"");
    }
    Ok(())
}

/// `ttl` as a humantime string or a number of seconds.
mod ttl {
    use std::time::Duration;

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Ttl {
        Seconds(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D>(deserializer: D) -> Result<Duration, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        match <Ttl as serde::Deserialize>::deserialize(deserializer)? {
            Ttl::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
            Ttl::Text(text) => humantime::parse_duration(&text).map_err(|e| {
                serde::de::Error::custom(format!(
                    "ttl {text:?}: {e} (write e.g. \"90s\", \"12h\" or a number of seconds)"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests;
