//! TURN credentials for clients: every `joined_room` of a connection that has a [`TurnGrant`]
//! carries credentials minted for it at that moment (coturn's REST scheme,
//! [`switchboard_tenants::turn`]), as our `ice_servers` extension and as signaltower's `turn_user`
//! and `turn_password`, which palava-client reads (docs/protocol.md).
//!
//! Minting happens here at the edge, never in a router: the secrets stay with the process that
//! terminates the client's connection. The global settings come from `--turn-url`,
//! `--turn-secret-file` and `--turn-ttl` ([`crate::Config::turn_settings`]).
//!
//! Who the credentials are for is decided when a connection is registered: open mode grants each
//! connection the global settings with its connection id as the TURN user
//! ([`crate::context::Context::turn_grant`]). Hosted mode makes its own grant, with the join token's
//! subject and the tenant's settings, and hands it to [`crate::registry::Registry::grant_turn`].

use std::io;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use switchboard_tenants::turn::MintError;
use switchboard_tenants::{Secret, TurnSettings};

/// The TURN settings a connection's credentials are minted with, and the user they are minted for.
#[derive(Debug, Clone)]
pub struct TurnGrant {
    settings: Arc<TurnSettings>,
    user: String,
}

impl TurnGrant {
    /// Credentials from `settings` (validated) for `user`: the part of the TURN username after the
    /// expiry, which coturn logs and counts its per-user quotas by.
    pub fn new(settings: Arc<TurnSettings>, user: impl Into<String>) -> Self {
        TurnGrant {
            settings,
            user: user.into(),
        }
    }

    /// The TURN user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The fields a `joined_room` gets, with credentials minted at `now_unix_seconds`:
    /// `ice_servers` (one `RTCIceServer`: the settings' URLs with the credentials), and `turn_user`
    /// and `turn_password` (the same credentials, for palava-client, which pairs them with the TURN
    /// URLs of its own configuration).
    pub fn joined_room_fields(
        &self,
        now_unix_seconds: u64,
    ) -> Result<Map<String, Value>, MintError> {
        let credentials = self.settings.mint(&self.user, now_unix_seconds)?;
        let mut fields = Map::new();
        fields.insert(
            "ice_servers".into(),
            json!([{
                "urls": self.settings.urls,
                "username": credentials.username,
                "credential": credentials.password,
            }]),
        );
        fields.insert("turn_user".into(), Value::String(credentials.username));
        fields.insert("turn_password".into(), Value::String(credentials.password));
        Ok(fields)
    }
}

/// Reads `--turn-secret-file`: one secret per line, the first minting. Surrounding whitespace is
/// dropped, as are empty lines and lines starting with `#`, so the file can say which secret is
/// which. Errors name the file, never its content.
pub fn read_secret_file(path: &Path) -> io::Result<Vec<Secret>> {
    Ok(parse_secrets(&std::fs::read_to_string(path)?))
}

/// The secrets of a secret file's text (see [`read_secret_file`]).
pub fn parse_secrets(text: &str) -> Vec<Secret> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(Secret::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn joined_room_gets_browser_and_palava_fields() {
        let settings = Arc::new(TurnSettings {
            urls: vec![
                "turn:t.example.org:3478".into(),
                "stun:t.example.org".into(),
            ],
            secrets: vec![Secret::new("north")],
            ttl: Duration::from_secs(3600),
        });
        let fields = TurnGrant::new(settings, "alice")
            .joined_room_fields(1_700_000_000)
            .unwrap();
        // The password is the known answer of switchboard_tenants' tests.
        assert_eq!(
            Value::Object(fields),
            json!({
                "ice_servers": [{
                    "urls": ["turn:t.example.org:3478", "stun:t.example.org"],
                    "username": "1700003600:alice",
                    "credential": "wjwSXO2ch1B6VaLTLMy2Avn5O9o=",
                }],
                "turn_user": "1700003600:alice",
                "turn_password": "wjwSXO2ch1B6VaLTLMy2Avn5O9o=",
            })
        );
    }

    #[test]
    fn secret_files_have_one_secret_per_line() {
        let secrets = parse_secrets("# rotated in on 1 May\n  new-one \n\nold-one\r\n# end\n");
        assert_eq!(secrets, [Secret::new("new-one"), Secret::new("old-one")]);
        assert!(parse_secrets("\n# nothing\n").is_empty());
    }
}
