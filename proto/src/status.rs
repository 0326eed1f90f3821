//! Peer status: what a client says about itself (`name`, `user_agent`, and anything else it likes).
//!
//! `new_peer` and `peer_updated_status` relay the status as the client sent it; only `name` and
//! `user_agent` are stored and shown to later joiners in `joined_room.peers` (as palava did), so an
//! arbitrary status cannot make every later join expensive.

use serde_json::{Map, Value};

use crate::ProtocolError;
use crate::limits::{DEFAULT_MAX_STATUS_BYTES, DEFAULT_USER_AGENTS, MAX_NAME_CHARS};

/// The configurable part of status validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRules {
    /// Allowed `user_agent` values (exact, case-sensitive match).
    pub user_agents: Vec<String>,
    /// Largest status, as serialized JSON bytes.
    pub max_bytes: usize,
}

impl Default for StatusRules {
    fn default() -> Self {
        StatusRules {
            user_agents: DEFAULT_USER_AGENTS.iter().map(|s| s.to_string()).collect(),
            max_bytes: DEFAULT_MAX_STATUS_BYTES,
        }
    }
}

/// A validated status, exactly as the client sent it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Status(Map<String, Value>);

impl Status {
    /// Validates a status field. A missing or `null` status is the empty status `{}`.
    ///
    /// Order: not an object -> `invalid status`; too large -> `status too large`; then palava's rules:
    /// `name` blank -> `blank name not allowed`, `name` too long -> `name too long`, `user_agent` not
    /// allowed -> `unknown user agent`. A `null` name or user agent counts as absent.
    pub fn validate(value: Option<Value>, rules: &StatusRules) -> Result<Status, ProtocolError> {
        let map = match value {
            None | Some(Value::Null) => return Ok(Status::default()),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(ProtocolError::InvalidStatus),
        };
        if serialized_len(&map) > rules.max_bytes {
            return Err(ProtocolError::StatusTooLarge);
        }
        match map.get("name") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) => {
                if name.chars().all(char::is_whitespace) {
                    return Err(ProtocolError::BlankName);
                }
                if name.chars().count() > MAX_NAME_CHARS {
                    return Err(ProtocolError::NameTooLong);
                }
            }
            Some(_) => return Err(ProtocolError::InvalidStatus),
        }
        match map.get("user_agent") {
            None | Some(Value::Null) => {}
            Some(Value::String(agent)) if rules.user_agents.iter().any(|a| a == agent) => {}
            Some(_) => return Err(ProtocolError::UnknownUserAgent),
        }
        Ok(Status(map))
    }

    /// The status as sent, for `new_peer` and `peer_updated_status`.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The status as sent, by value.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// The part of the status that is stored and shown to later joiners.
    pub fn stored(&self) -> StoredStatus {
        let text = |key: &str| match self.0.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        StoredStatus {
            name: text("name"),
            user_agent: text("user_agent"),
        }
    }
}

fn serialized_len(map: &Map<String, Value>) -> usize {
    // Counting through a writer avoids building the string only to measure it.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing a `Map<String, Value>` cannot fail, and the writer never errors; if it somehow did,
    // report the status as too large rather than accept an unmeasured one.
    match serde_json::to_writer(&mut counter, map) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// The stored subset of a status: what later joiners see in `joined_room.peers`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct StoredStatus {
    /// The peer's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The peer's browser family, from the allowed list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl StoredStatus {
    /// Applies an update: fields present in `update` replace the stored ones, others stay (palava set
    /// each field it was given and kept the rest).
    pub fn merge(&mut self, update: StoredStatus) {
        if update.name.is_some() {
            self.name = update.name;
        }
        if update.user_agent.is_some() {
            self.user_agent = update.user_agent;
        }
    }

    /// The JSON object shown to clients: only the fields that are set, `{}` when none are.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if let Some(name) = &self.name {
            map.insert("name".into(), Value::String(name.clone()));
        }
        if let Some(agent) = &self.user_agent {
            map.insert("user_agent".into(), Value::String(agent.clone()));
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value) -> Result<Status, ProtocolError> {
        Status::validate(Some(value), &StatusRules::default())
    }

    #[test]
    fn empty_and_missing_statuses_are_fine() {
        assert_eq!(
            Status::validate(None, &StatusRules::default()),
            Ok(Status::default())
        );
        assert_eq!(check(json!(null)), Ok(Status::default()));
        assert_eq!(
            check(json!({})).map(|s| s.stored()),
            Ok(StoredStatus::default())
        );
    }

    #[test]
    fn palava_rules_in_order() {
        assert_eq!(check(json!({"name": ""})), Err(ProtocolError::BlankName));
        assert_eq!(
            check(json!({"name": " \t\n"})),
            Err(ProtocolError::BlankName)
        );
        assert_eq!(
            check(json!({"name": "x".repeat(51)})),
            Err(ProtocolError::NameTooLong)
        );
        assert!(check(json!({"name": "x".repeat(50)})).is_ok());
        assert_eq!(
            check(json!({"user_agent": "netscape"})),
            Err(ProtocolError::UnknownUserAgent)
        );
        assert_eq!(
            check(json!({"user_agent": "Chrome"})),
            Err(ProtocolError::UnknownUserAgent),
            "case-sensitive like palava"
        );
        assert_eq!(
            check(json!({"user_agent": 7})),
            Err(ProtocolError::UnknownUserAgent)
        );
        // Name rules come before the user agent rule.
        assert_eq!(
            check(json!({"name": " ", "user_agent": "netscape"})),
            Err(ProtocolError::BlankName)
        );
        for agent in DEFAULT_USER_AGENTS {
            assert!(check(json!({"user_agent": agent})).is_ok(), "{agent}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(check(json!("alice")), Err(ProtocolError::InvalidStatus));
        assert_eq!(check(json!([1])), Err(ProtocolError::InvalidStatus));
        assert_eq!(check(json!({"name": 5})), Err(ProtocolError::InvalidStatus));
        let big = json!({"avatar": "x".repeat(5000)});
        assert_eq!(check(big.clone()), Err(ProtocolError::StatusTooLarge));
        let roomy = StatusRules {
            max_bytes: 10_000,
            ..StatusRules::default()
        };
        assert!(Status::validate(Some(big), &roomy).is_ok());
        // Size is judged before the name rules: a huge status is refused without being inspected.
        assert_eq!(
            check(json!({"name": " ", "pad": "x".repeat(5000)})),
            Err(ProtocolError::StatusTooLarge)
        );
    }

    #[test]
    fn unicode_names_are_kept_and_counted_in_characters() {
        let name = "Zoë \u{1F600} 李".repeat(5);
        let status = check(json!({"name": name, "user_agent": "firefox", "mood": "ok"})).unwrap();
        assert_eq!(status.stored().name.as_deref(), Some(name.as_str()));
        assert_eq!(status.as_map().get("mood"), Some(&json!("ok")));
        assert_eq!(
            status.stored().to_json(),
            json!({"name": name, "user_agent": "firefox"})
        );
        assert_eq!(
            check(json!({"name": "é".repeat(51)})),
            Err(ProtocolError::NameTooLong)
        );
    }

    #[test]
    fn merge_keeps_what_is_not_updated() {
        let mut stored = StoredStatus {
            name: Some("a".into()),
            user_agent: Some("chrome".into()),
        };
        stored.merge(StoredStatus {
            name: Some("b".into()),
            user_agent: None,
        });
        assert_eq!(
            stored.to_json(),
            json!({"name": "b", "user_agent": "chrome"})
        );
    }
}
