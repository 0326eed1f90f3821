//! ICE servers (STUN and TURN) that the edge hands to the demo page, from `--ice-server`.
//!
//! One entry is one `RTCIceServer` of the browser's API: one or more URLs sharing optional
//! credentials, written `URL[,URL…][ username=NAME credential=SECRET]`, for example
//! `stun:stun.example.org:3478` or
//! `turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349 username=alice credential=s3cret`.
//! The syntax is checked when the edge starts (the URLs by [`switchboard_tenants::ice_url`], which the
//! TURN settings share), because a browser that is handed a malformed entry refuses to create any peer
//! connection at all, and the operator would only find out from a user's console.

use std::fmt;
use std::str::FromStr;

use switchboard_tenants::ice_url::{SCHEMES, check_ice_url, is_turn_url};

/// One ICE server, serialized exactly as the browser's `RTCIceServer` dictionary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Why an `--ice-server` entry was refused; the text names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} (expected `URL[,URL…][ username=NAME credential=SECRET]` with stun:, stuns:, turn: or turns: URLs)"
)]
pub struct IceServerError(String);

impl FromStr for IceServer {
    type Err = IceServerError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let fail = |msg: String| Err(IceServerError(msg));
        let mut server = IceServer {
            urls: Vec::new(),
            username: None,
            credential: None,
        };
        for field in entry.split_whitespace() {
            if let Some(name) = field.strip_prefix("username=") {
                server.username = Some(name.to_owned());
            } else if let Some(secret) = field.strip_prefix("credential=") {
                server.credential = Some(secret.to_owned());
            } else if SCHEMES.iter().any(|scheme| field.starts_with(scheme)) {
                for url in field.split(',') {
                    check_ice_url(url).map_err(|e| IceServerError(e.to_string()))?;
                    server.urls.push(url.to_owned());
                }
            } else {
                return fail(format!(
                    "{field:?} is neither a STUN/TURN URL nor username=/credential="
                ));
            }
        }
        if server.urls.is_empty() {
            return fail(format!("{entry:?} has no URL"));
        }
        let turn = server.urls.iter().any(|url| is_turn_url(url));
        match (&server.username, &server.credential) {
            (Some(name), Some(secret)) if name.is_empty() || secret.is_empty() => {
                fail("username= and credential= must not be empty".into())
            }
            (Some(_), None) | (None, Some(_)) => {
                fail("username= and credential= go together".into())
            }
            // Browsers refuse a TURN URL without credentials (InvalidAccessError).
            (None, None) if turn => fail(format!(
                "{entry:?}: TURN URLs need username= and credential="
            )),
            _ => Ok(server),
        }
    }
}

impl fmt::Display for IceServer {
    /// Back in the flag's syntax, with the credential hidden (for logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.urls.join(","))?;
        if let Some(name) = &self.username {
            write!(f, " username={name} credential=…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_and_turn_entries_parse() {
        let stun: IceServer = "stun:stun.example.org:3478".parse().unwrap();
        assert_eq!(stun.urls, ["stun:stun.example.org:3478"]);
        assert_eq!(stun.username, None);

        let turn: IceServer = "turn:t.example.org:3478?transport=udp,turns:t.example.org:5349 \
                               username=alice credential=s3cret"
            .parse()
            .unwrap();
        assert_eq!(
            turn.urls,
            [
                "turn:t.example.org:3478?transport=udp",
                "turns:t.example.org:5349"
            ]
        );
        assert_eq!(turn.username.as_deref(), Some("alice"));
        assert_eq!(turn.credential.as_deref(), Some("s3cret"));
        assert_eq!(
            serde_json::to_value(&turn).unwrap(),
            serde_json::json!({
                "urls": ["turn:t.example.org:3478?transport=udp", "turns:t.example.org:5349"],
                "username": "alice",
                "credential": "s3cret",
            })
        );
        assert!(!turn.to_string().contains("s3cret"), "{turn}");
        assert!("stun:[::1]:3478".parse::<IceServer>().is_ok());
    }

    #[test]
    fn mistakes_are_named() {
        let err = |entry: &str| entry.parse::<IceServer>().unwrap_err().to_string();
        assert!(err("").contains("no URL"));
        assert!(err("http://example.org").contains("neither a STUN/TURN URL"));
        assert!(err("turn:t.example.org").contains("need username= and credential="));
        assert!(err("turn:t.example.org username=a").contains("go together"));
        assert!(err("stun:").contains("no host"));
        assert!(err("stun:example.org:99999").contains("invalid port"));
        assert!(err("stun:example.org?transport=udp").contains("only TURN URLs"));
        assert!(err("turn:t.example.org?x=1 username=a credential=b").contains("unknown query"));
        assert!(err("stun:a.example.org,http://b").contains("not a stun:"));
        assert!(err("stun:a.example.org password=x").contains("neither"));
    }
}
