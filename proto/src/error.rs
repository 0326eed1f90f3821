//! Errors a client can cause. `Display` is the exact text sent in both `message` and `description` of
//! an `error` event: palava clients match on these strings, so they never change.

/// Every error the server reports to a client. The first block is palava-machine's; the texts marked
/// "extension" are ours (documented in docs/protocol.md).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum ProtocolError {
    /// The frame is not JSON (or is a binary frame).
    #[error("invalid message")]
    InvalidMessage,
    /// The frame is JSON but not an object.
    #[error("invalid message: not a hash")]
    NotAHash,
    /// `event` is missing, `null` or `false`.
    #[error("no event given")]
    NoEvent,
    /// `event` is any other value that is not a known event name.
    #[error("unknown event")]
    UnknownEvent,
    /// `join_room` without a non-empty string `room_id`.
    #[error("no room id given")]
    NoRoomId,
    /// `room_id` longer than [`crate::limits::MAX_ROOM_ID_CHARS`] characters.
    #[error("room id too long")]
    RoomIdTooLong,
    /// `join_room` while already in (or joining) a room.
    #[error("already joined another room")]
    AlreadyJoined,
    /// A status `name` that is empty or only whitespace.
    #[error("blank name not allowed")]
    BlankName,
    /// A status `name` longer than [`crate::limits::MAX_NAME_CHARS`] characters.
    #[error("name too long")]
    NameTooLong,
    /// A status `user_agent` not in the configured list.
    #[error("unknown user agent")]
    UnknownUserAgent,
    /// `update_status` or `send_to_peer` while in no room.
    #[error("currently not in any room")]
    NotInRoom,
    /// `send_to_peer` whose `data` is not an object.
    #[error("cannot send raw data")]
    CannotSendRawData,
    /// `send_to_peer` to a connection that is not in the sender's room.
    #[error("unknown peer")]
    UnknownPeer,
    /// `send_to_peer` whose `data.event` is not one of [`crate::limits::FORWARD_EVENTS`].
    #[error("event not allowed")]
    EventNotAllowed,
    /// The connection exceeded its message rate; the message was dropped.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The room has reached its configured size limit.
    #[error("room is full")]
    RoomFull,
    /// Extension: a status that is not an object, or whose `name` is not a string.
    #[error("invalid status")]
    InvalidStatus,
    /// Extension: a status larger than the configured limit when serialized.
    #[error("status too large")]
    StatusTooLarge,
    /// Extension: the room service could not take the request in time (cluster failover, or the
    /// server is stopping). Nothing was changed; the client may retry.
    #[error("service unavailable")]
    Unavailable,
    /// Extension: objects and arrays nested deeper than the configured limit. In the `invalid
    /// message` class (the frame is refused while it is parsed), with the reason after the colon.
    #[error("invalid message: nested too deeply")]
    NestedTooDeeply,
    /// Extension (hosted mode): `join_room` of a room other than the one the connection's token
    /// names in its `room` claim.
    #[error("room not allowed by token")]
    RoomNotAllowed,
    /// Extension (hosted mode): `join_room` with a token that does not grant `join`.
    #[error("join not allowed by token")]
    JoinNotAllowed,
    /// Extension (hosted mode): `send_to_peer` with a token that does not grant `send`.
    #[error("send not allowed by token")]
    SendNotAllowed,
    /// Extension (hosted mode): the join would open a room beyond the tenant's `max_rooms`.
    #[error("room quota exceeded")]
    RoomQuotaExceeded,
    /// Extension (hosted mode): the tenant's messages per second, over all its connections, are
    /// used up; the message was dropped.
    #[error("tenant rate limit exceeded")]
    TenantRateLimited,
    /// Extension (hosted mode): the tenant's backend removed this member through the control API
    /// (or closed its room); the connection is then closed with
    /// [`crate::limits::close_code::REMOVED`].
    #[error("removed by the service")]
    RemovedByService,
}

impl ProtocolError {
    /// A stable, low-cardinality name for metric labels and logs.
    pub fn reason(&self) -> &'static str {
        use ProtocolError::*;
        match self {
            InvalidMessage => "invalid_message",
            NotAHash => "not_a_hash",
            NoEvent => "no_event",
            UnknownEvent => "unknown_event",
            NoRoomId => "no_room_id",
            RoomIdTooLong => "room_id_too_long",
            AlreadyJoined => "already_joined",
            BlankName => "blank_name",
            NameTooLong => "name_too_long",
            UnknownUserAgent => "unknown_user_agent",
            NotInRoom => "not_in_room",
            CannotSendRawData => "raw_data",
            UnknownPeer => "unknown_peer",
            EventNotAllowed => "event_not_allowed",
            RateLimited => "rate_limited",
            RoomFull => "room_full",
            InvalidStatus => "invalid_status",
            StatusTooLarge => "status_too_large",
            Unavailable => "unavailable",
            NestedTooDeeply => "nested_too_deeply",
            RoomNotAllowed => "room_not_allowed",
            JoinNotAllowed => "join_not_allowed",
            SendNotAllowed => "send_not_allowed",
            RoomQuotaExceeded => "room_quota_exceeded",
            TenantRateLimited => "tenant_rate_limited",
            RemovedByService => "removed_by_service",
        }
    }

    /// Every variant, for exhaustive tests and for pre-registering metric label values.
    pub const ALL: [ProtocolError; 26] = {
        use ProtocolError::*;
        [
            InvalidMessage,
            NotAHash,
            NoEvent,
            UnknownEvent,
            NoRoomId,
            RoomIdTooLong,
            AlreadyJoined,
            BlankName,
            NameTooLong,
            UnknownUserAgent,
            NotInRoom,
            CannotSendRawData,
            UnknownPeer,
            EventNotAllowed,
            RateLimited,
            RoomFull,
            InvalidStatus,
            StatusTooLarge,
            Unavailable,
            NestedTooDeeply,
            RoomNotAllowed,
            JoinNotAllowed,
            SendNotAllowed,
            RoomQuotaExceeded,
            TenantRateLimited,
            RemovedByService,
        ]
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The texts are the protocol: this table is checked against ../shared/protocol.md by hand and
    /// must only ever grow.
    #[test]
    fn texts_are_exactly_palavas() {
        use ProtocolError::*;
        let expected = [
            (InvalidMessage, "invalid message"),
            (NotAHash, "invalid message: not a hash"),
            (NoEvent, "no event given"),
            (UnknownEvent, "unknown event"),
            (NoRoomId, "no room id given"),
            (RoomIdTooLong, "room id too long"),
            (AlreadyJoined, "already joined another room"),
            (BlankName, "blank name not allowed"),
            (NameTooLong, "name too long"),
            (UnknownUserAgent, "unknown user agent"),
            (NotInRoom, "currently not in any room"),
            (CannotSendRawData, "cannot send raw data"),
            (UnknownPeer, "unknown peer"),
            (EventNotAllowed, "event not allowed"),
            (RateLimited, "rate limit exceeded"),
            (RoomFull, "room is full"),
            (InvalidStatus, "invalid status"),
            (StatusTooLarge, "status too large"),
            (Unavailable, "service unavailable"),
            (NestedTooDeeply, "invalid message: nested too deeply"),
            (RoomNotAllowed, "room not allowed by token"),
            (JoinNotAllowed, "join not allowed by token"),
            (SendNotAllowed, "send not allowed by token"),
            (RoomQuotaExceeded, "room quota exceeded"),
            (TenantRateLimited, "tenant rate limit exceeded"),
            (RemovedByService, "removed by the service"),
        ];
        assert_eq!(expected.len(), ProtocolError::ALL.len());
        for (error, text) in expected {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn reasons_are_unique_metric_labels() {
        let reasons: HashSet<_> = ProtocolError::ALL.iter().map(|e| e.reason()).collect();
        assert_eq!(reasons.len(), ProtocolError::ALL.len());
        for reason in reasons {
            assert!(reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
