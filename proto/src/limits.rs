//! Protocol constants and the defaults of every configurable limit. The edge exposes each default as a
//! flag; docs/operations.md lists them. Fixed protocol facts are not configurable.

/// The protocol version answered to `info`; palava-client checks it.
pub const PROTOCOL_VERSION: &str = "1.0.0";

/// Longest room id, in Unicode scalar values (palava counted characters, not bytes).
pub const MAX_ROOM_ID_CHARS: usize = 50;

/// Longest peer name, in Unicode scalar values.
pub const MAX_NAME_CHARS: usize = 50;

/// Default largest status, as serialized JSON bytes.
pub const DEFAULT_MAX_STATUS_BYTES: usize = 4 * 1024;

/// Default user agents a status may name.
pub const DEFAULT_USER_AGENTS: &[&str] = &["firefox", "chrome", "safari", "edge", "unknown"];

/// Default largest WebSocket frame/message a client may send.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 256 * 1024;

/// Default deepest nesting of objects and arrays in a client message, the message itself counting as
/// one (`{"event":"ping"}` is 1 deep, a join's status object 2). Statuses and peer messages are flat
/// in practice; 32 leaves ample room while keeping every bus message far from serde_json's limit.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;

/// The least nesting limit that still lets a client send a status or a peer message (both objects
/// inside the message object).
pub const MIN_JSON_DEPTH: usize = 2;

/// How deep serde_json nests when it decodes (it refuses the 128th level with "recursion limit
/// exceeded"). Routers and edges decode bus messages with it.
pub const SERDE_JSON_MAX_DEPTH: usize = 127;

/// The deepest nesting limit the edge may be configured with: a client message this deep, wrapped in
/// the deepest bus message ([`crate::bus::ENVELOPE_DEPTH`] levels more), still decodes everywhere.
pub const MAX_JSON_DEPTH: usize = SERDE_JSON_MAX_DEPTH - crate::bus::ENVELOPE_DEPTH;

/// Default sustained client message rate (token bucket refill, messages per second).
pub const DEFAULT_RATE_PER_SECOND: u32 = 50;

/// Default token bucket size: how many messages a client may send in a burst.
pub const DEFAULT_RATE_BURST: u32 = 200;

/// Default room size limit; 0 means unlimited.
pub const DEFAULT_MAX_ROOM_SIZE: usize = 0;

/// Default seconds announced in `shutdown` and waited before closing on SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 5;

/// Default seconds without any frame from a client (pongs included) before it is closed.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;

/// `send_to_peer` payload events a client may forward.
pub const FORWARD_EVENTS: &[&str] = &["offer", "answer", "ice_candidate", "message"];

/// WebSocket close codes the server sends (RFC 6455, section 7.4.1, and one private code).
pub mod close_code {
    /// Normal closure: the connection idled out (no frame, not even a pong, within the idle timeout).
    pub const NORMAL: u16 = 1000;
    /// The client broke the WebSocket protocol itself (an unmasked frame, a reserved opcode, ...).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation: sustained rate-limit abuse, or a client that does not read its messages.
    pub const POLICY: u16 = 1008;
    /// A frame or message larger than the configured limit.
    pub const TOO_BIG: u16 = 1009;
    /// The end of a graceful shutdown's grace period (announced earlier by a `shutdown` event).
    pub const SHUTDOWN: u16 = 4200;
    /// Hosted mode: the tenant's backend removed the member (or closed its room) through the
    /// control API; an `error` event with the text `removed by the service` comes first. Like
    /// HTTP's 403: the client should not simply reconnect and join again.
    pub const REMOVED: u16 = 4403;
    /// Hosted mode: the connection's tenant was deleted (control API, or removed from the tenants
    /// file); reconnecting will not help.
    pub const TENANT_DELETED: u16 = 4401;
}
