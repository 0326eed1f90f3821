//! STUN and TURN URLs as a browser accepts them in `RTCIceServer.urls` (RFC 7064, RFC 7065).
//!
//! They are checked where they are configured (the edge's `--ice-server` and `--turn-url`, a tenant's
//! TURN section), because a browser handed one malformed URL refuses to create any peer connection at
//! all, and the operator would only find out from a user's console.

/// URL schemes a browser accepts in `RTCIceServer.urls`.
pub const SCHEMES: [&str; 4] = ["stun:", "stuns:", "turn:", "turns:"];

/// Why a URL is not a STUN or TURN URL a browser takes; the text names the URL and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IceUrlError(String);

/// Checks `scheme:host[:port][?transport=udp|tcp]`, as far as a browser checks it before using it.
pub fn check_ice_url(url: &str) -> Result<(), IceUrlError> {
    let fail = |message: String| Err(IceUrlError(message));
    let Some(scheme) = SCHEMES.iter().find(|scheme| url.starts_with(*scheme)) else {
        return fail(format!(
            "{url:?} is not a stun:, stuns:, turn: or turns: URL"
        ));
    };
    let rest = &url[scheme.len()..];
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    if authority.is_empty() || authority.starts_with(':') || authority.starts_with('/') {
        return fail(format!("{url:?} has no host"));
    }
    if let Some((_, port)) = authority
        .rsplit_once(':')
        .filter(|_| !authority.ends_with(']'))
        && port.parse::<u16>().map_or(true, |port| port == 0)
    {
        return fail(format!("{url:?} has an invalid port"));
    }
    match query {
        None => Ok(()),
        Some("transport=udp" | "transport=tcp") if scheme.starts_with("turn") => Ok(()),
        Some(_) if !scheme.starts_with("turn") => {
            fail(format!("{url:?}: only TURN URLs take ?transport="))
        }
        Some(other) => fail(format!(
            "{url:?}: unknown query {other:?} (only transport=udp or transport=tcp)"
        )),
    }
}

/// Whether `url` is a TURN URL (`turn:` or `turns:`), the kind that needs credentials.
pub fn is_turn_url(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_browsers_take_pass() {
        for url in [
            "stun:stun.example.org",
            "stun:stun.example.org:3478",
            "stuns:stun.example.org:5349",
            "turn:t.example.org:3478?transport=udp",
            "turn:t.example.org?transport=tcp",
            "turns:t.example.org:5349",
            "stun:[::1]:3478",
            "turn:127.0.0.1:3478",
        ] {
            assert_eq!(check_ice_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let err = |url: &str| check_ice_url(url).unwrap_err().to_string();
        assert!(err("http://example.org").contains("not a stun:"));
        assert!(err("stun:").contains("no host"));
        assert!(err("turn::3478").contains("no host"));
        assert!(err("stun:example.org:99999").contains("invalid port"));
        assert!(err("turn:example.org:0").contains("invalid port"));
        assert!(err("stun:example.org?transport=udp").contains("only TURN URLs"));
        assert!(err("turn:t.example.org?x=1").contains("unknown query"));
    }

    #[test]
    fn turn_urls_are_told_apart() {
        assert!(is_turn_url("turn:t.example.org"));
        assert!(is_turn_url("turns:t.example.org"));
        assert!(!is_turn_url("stun:t.example.org"));
        assert!(!is_turn_url("stuns:t.example.org"));
    }
}
