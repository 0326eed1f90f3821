//! Hosted mode in tests: a tenants file in a temporary directory, tokens signed with its keys, and
//! upgrades with chosen headers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchboard_edge::Config;
use switchboard_edge::config::AuthMode;
use switchboard_tenants::token::{Claims, Grant, mint};
use switchboard_tenants::{Key, Secret};
use switchboard_testkit::TempDir;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{Client, HttpResponse, http_request};

/// Tenant a's first key.
pub const A1: (&str, &str) = ("a1", "tenant-a-key-1-0123456789abcdefghij");
/// Tenant a's second key (rotation).
pub const A2: (&str, &str) = ("a2", "tenant-a-key-2-0123456789abcdefghij");
/// Tenant b's key.
pub const B1: (&str, &str) = ("b1", "tenant-b-key-1-0123456789abcdefghij");
/// The origin tenant a allows.
pub const A_ORIGIN: &str = "https://app.a.test";

/// Two tenants: `a` (keys a1 and a2, browser origin `A_ORIGIN` only, no native clients) and `b`
/// (key b1, any origin), with `limits` under tenant a.
pub fn two_tenants(a_limits: &str) -> String {
    format!(
        r#"
[tenants.a]
allowed_origins = ["{A_ORIGIN}"]
allow_missing_origin = false
keys = [
  {{ id = "{}", secret = "{}" }},
  {{ id = "{}", secret = "{}" }},
]

[tenants.a.limits]
{a_limits}

[tenants.b]
keys = [{{ id = "{}", secret = "{}" }}]
"#,
        A1.0, A1.1, A2.0, A2.1, B1.0, B1.1
    )
}

/// A tenants file that tests may rewrite.
pub struct TenantsFile {
    _dir: TempDir,
    pub path: PathBuf,
}

impl TenantsFile {
    pub fn new(text: &str) -> TenantsFile {
        let dir = TempDir::new("tenants").unwrap();
        let path = dir.path().join("tenants.toml");
        std::fs::write(&path, text).unwrap();
        TenantsFile { _dir: dir, path }
    }

    /// Replaces the content (atomically, as a Secret volume does).
    pub fn rewrite(&self, text: &str) {
        let next = self.path.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &self.path).unwrap();
    }

    /// Hosted-mode settings reading this file, re-read every 100 ms.
    pub fn configure(&self, config: &mut Config) {
        config.hosted.auth = AuthMode::Tokens;
        config.hosted.tenants.tenants_file = Some(self.path.clone());
        config.hosted.tenants.tenants_reload_interval = std::time::Duration::from_millis(100);
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for an hour, for user `sub`.
pub fn claims(sub: &str) -> Claims {
    Claims {
        exp: now() + 3600,
        iat: Some(now()),
        sub: Some(sub.into()),
        ..Claims::default()
    }
}

/// `claims` restricted to `room`.
pub fn claims_for_room(sub: &str, room: &str) -> Claims {
    Claims {
        room: Some(room.into()),
        ..claims(sub)
    }
}

/// `claims` with only `grants`.
pub fn claims_with_grants(sub: &str, grants: &[Grant]) -> Claims {
    Claims {
        grants: Some(grants.to_vec()),
        ..claims(sub)
    }
}

/// A token signed with `key` (id, secret).
pub fn token(key: (&str, &str), claims: &Claims) -> String {
    mint(&Key::hs256(key.0, Secret::new(key.1)), claims).unwrap()
}

/// Connects with `token` in the URL and `origin` as the `Origin` header.
pub async fn connect(url: &str, token: &str, origin: Option<&str>) -> Client {
    match try_connect(url, token, origin).await {
        Ok(client) => client,
        Err(status) => panic!("the upgrade was refused with HTTP {status}"),
    }
}

/// An upgrade request on `path` with extra `headers`, answered with anything but 101.
pub async fn refused_upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut all = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    all.extend_from_slice(headers);
    let HttpResponse { status, body, .. } = http_request(addr, "GET", path, &all).await;
    assert_ne!(status, 101, "the upgrade must be refused");
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// Connects as [`connect`] does, or returns the HTTP status the upgrade was refused with.
pub async fn try_connect(url: &str, token: &str, origin: Option<&str>) -> Result<Client, u16> {
    let mut request = format!("{url}?access_token={token}")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    match connect_async(request).await {
        Ok((ws, _)) => Ok(Client { ws }),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("the upgrade failed: {e}"),
    }
}

/// A tenant's usage in `/stats` (an edge's standalone, a router's in a cluster), added up over
/// the hours shown (a test may straddle an hour): totals add, peaks take the largest.
pub fn usage_of(stats: &Value, tenant: &str) -> Value {
    let mut total = json!({
        "connection_seconds": 0, "peak_connections": 0, "rooms_opened": 0,
        "peak_room_members": 0, "messages_relayed": 0
    });
    let hours = stats["hourly"]["hours"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (_, hour) in hours {
        let Some(usage) = hour["tenants"].get(tenant) else {
            continue;
        };
        for (field, value) in total.as_object_mut().unwrap() {
            let got = usage[field.as_str()].as_u64().unwrap_or(0);
            let have = value.as_u64().unwrap();
            *value = json!(if field.starts_with("peak") {
                have.max(got)
            } else {
                have + got
            });
        }
    }
    total
}
