//! A tenant's rooms and members through the [`RoomService`]: listing them, closing a room,
//! removing a member, and server messages. Room names come percent-decoded from the path; the
//! service answers a name no client could join with as not found.

use serde::Serialize;
use serde_json::{Map, Value};
use switchboard_proto::limits::DEFAULT_MAX_JSON_DEPTH;
use switchboard_proto::{ConnId, TenantId, depth};
use switchboard_runtime::http::{Encoded, percent_decode};

use crate::error::ApiError;
use crate::service::{Audience, MemberInfo, RoomInfo, RoomService};

/// Largest `data` of a server message, as serialized JSON bytes. Clients get it in one WebSocket
/// message; an eighth of the default client frame limit leaves ample room for notifications while
/// keeping a fan-out to a large room cheap.
pub const MAX_MESSAGE_DATA_BYTES: usize = 32 * 1024;

/// Deepest nesting of a server message's request body (`{"data": …}` counting as one). The message
/// clients get, `{"event":"server_message","data":…}`, is then no deeper than the default limit of
/// their own messages, so it travels the bus wherever theirs do.
pub const MAX_MESSAGE_BODY_DEPTH: usize = DEFAULT_MAX_JSON_DEPTH;

/// The room service, or 503 where there is none (a clustered edge: the routers serve rooms).
pub fn service(service: Option<&dyn RoomService>) -> Result<&dyn RoomService, ApiError> {
    service.ok_or(ApiError::Unavailable(
        "rooms are not served here (a clustered edge: ask the routers' API)",
    ))
}

/// One room as listed.
#[derive(Debug, Serialize)]
pub struct RoomView {
    /// The name clients join it with.
    pub name: String,
    /// Members now.
    pub members: u64,
    /// Most members at once since it opened.
    pub peak_members: u64,
    /// When it opened, seconds since the Unix epoch (like every time of the API).
    pub opened_at: u64,
}

impl From<RoomInfo> for RoomView {
    fn from(info: RoomInfo) -> Self {
        RoomView {
            name: info.name,
            members: info.members,
            peak_members: info.peak_members,
            opened_at: info.opened_at_ms / 1000,
        }
    }
}

/// One member as listed.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Its peer id.
    pub peer_id: ConnId,
    /// Its status as the room sees it.
    pub status: Map<String, Value>,
    /// The edge holding its connection.
    pub edge: String,
    /// When it joined, seconds since the Unix epoch.
    pub joined_at: u64,
}

impl From<MemberInfo> for MemberView {
    fn from(info: MemberInfo) -> Self {
        MemberView {
            peer_id: info.peer_id,
            status: info.status,
            edge: info.edge.to_string(),
            joined_at: info.joined_at_ms / 1000,
        }
    }
}

/// The tenant's rooms, as `{"rooms": [...]}`.
pub async fn list(service: &dyn RoomService, tenant: &TenantId) -> Result<Value, ApiError> {
    let rooms: Vec<RoomView> = service
        .rooms(tenant)
        .await?
        .into_iter()
        .map(RoomView::from)
        .collect();
    Ok(serde_json::json!({ "rooms": rooms }))
}

/// One room, as `{"name": …, "members": [...]}`.
pub async fn get(
    service: &dyn RoomService,
    tenant: &TenantId,
    room: &str,
) -> Result<Value, ApiError> {
    let members: Vec<MemberView> = service
        .members(tenant, room)
        .await?
        .into_iter()
        .map(MemberView::from)
        .collect();
    Ok(serde_json::json!({ "name": room, "members": members }))
}

/// A peer id of a path; one that cannot be a peer id names no member.
pub fn peer_id(text: &str) -> Result<ConnId, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound)
}

/// A server message request, checked: where it goes and what it says.
#[derive(Debug, PartialEq)]
pub struct Message {
    /// The room or one member.
    pub audience: Audience,
    /// What the clients get as `data`.
    pub data: Map<String, Value>,
}

/// Reads a server message body `{"data": {…}, "to": "<peer id>"?}`, bounded in depth while
/// parsing (so a deeply nested body never builds a deep value) and in the size of `data`.
pub fn message(body: &[u8]) -> Result<Message, ApiError> {
    let bad = |reason: &str| ApiError::BadRequest(format!("invalid JSON body: {reason}"));
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    let value = depth::parse(text, MAX_MESSAGE_BODY_DEPTH).map_err(|e| match e {
        depth::ParseError::Syntax => bad("not JSON"),
        depth::ParseError::TooDeep => bad(&format!(
            "nested deeper than {MAX_MESSAGE_BODY_DEPTH} levels"
        )),
    })?;
    let Value::Object(mut fields) = value else {
        return Err(bad("expected an object"));
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "data" && *k != "to") {
        return Err(bad(&format!("unknown field `{unknown}`")));
    }
    let data = match fields.remove("data") {
        Some(Value::Object(data)) => data,
        Some(_) => return Err(bad("`data` must be an object")),
        None => return Err(bad("missing field `data`")),
    };
    let size = serde_json::to_vec(&data).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_MESSAGE_DATA_BYTES {
        return Err(bad(&format!(
            "`data` is larger than {MAX_MESSAGE_DATA_BYTES} bytes"
        )));
    }
    let audience = match fields.remove("to") {
        None | Some(Value::Null) => Audience::Room,
        Some(Value::String(to)) => Audience::Member(
            to.parse()
                .map_err(|_| bad("`to` must be a peer id (a UUID)"))?,
        ),
        Some(_) => return Err(bad("`to` must be a peer id (a UUID)")),
    };
    Ok(Message { audience, data })
}

/// Percent-decoding of a path segment (RFC 3986: `+` is itself, unlike in a query). A segment that
/// does not decode to UTF-8 names nothing the API knows: `None`.
pub fn path_segment(segment: &str) -> Option<String> {
    String::from_utf8(percent_decode(segment, Encoded::Path)).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn path_segments_decode_without_plus_as_space() {
        assert_eq!(path_segment("stand%20up+1").as_deref(), Some("stand up+1"));
        assert_eq!(path_segment("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(path_segment("100%").as_deref(), Some("100%"));
        assert_eq!(path_segment("%FF"), None);
    }

    #[test]
    fn messages_are_bounded() {
        let peer = ConnId::from_random_bytes([7; 16]);
        let to_one = message(format!(r#"{{"data":{{"a":1}},"to":"{peer}"}}"#).as_bytes()).unwrap();
        assert_eq!(to_one.audience, Audience::Member(peer));
        assert_eq!(message(br#"{"data":{}}"#).unwrap().audience, Audience::Room);
        for body in [
            &br#"{"data":[]}"#[..],
            br#"{}"#,
            br#"[{}]"#,
            br#"{"data":{},"to":"nobody"}"#,
            br#"{"data":{},"extra":1}"#,
            b"{",
        ] {
            assert!(
                matches!(message(body), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // The body at the limit passes; one level more does not.
        let nested = |levels: usize| {
            format!(
                r#"{{"data":{}{}}}"#,
                "{\"a\":".repeat(levels) + "{}",
                "}".repeat(levels)
            )
        };
        assert!(message(nested(MAX_MESSAGE_BODY_DEPTH - 2).as_bytes()).is_ok());
        assert!(message(nested(MAX_MESSAGE_BODY_DEPTH - 1).as_bytes()).is_err());
        let big = format!(
            r#"{{"data":{{"a":"{}"}}}}"#,
            "x".repeat(MAX_MESSAGE_DATA_BYTES)
        );
        assert!(message(big.as_bytes()).is_err());
    }
}
