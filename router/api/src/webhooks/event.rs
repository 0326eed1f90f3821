//! The events a tenant's webhook receives, as producers report them and as they are sent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchboard_proto::{ConnId, TenantId};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The room's first member joined.
    RoomStarted,
    /// The room's last member left.
    RoomFinished,
    /// A member joined (after `room_started` for the first one).
    ParticipantJoined,
    /// A member left, was removed, or its edge died (before `room_finished` for the last one).
    ParticipantLeft,
}

/// An event as the room's owner reports it to the engine ([`super::Webhooks::emit`]), or, in a
/// cluster, stores it in the webhook stream (inside a [`StoredEvent`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    /// What happened.
    pub kind: EventKind,
    /// The room's tenant.
    pub tenant: TenantId,
    /// The room's name (its `room_id`): sent to its owner only, never logged.
    pub room: String,
    /// The member, for `participant_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<ConnId>,
    /// The member's stored status (`name`, `user_agent`), for `participant_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Map<String, Value>>,
    /// When it happened, in milliseconds since the Unix epoch (the producer's clock).
    pub occurred_at_ms: u64,
}

/// An event as a cluster's router stores it in the webhook stream (`SB_WEBHOOKS`): its id is fixed
/// when it is produced, so a retried publish (de-duplicated by the server on the id) and every
/// delivery attempt, by whichever router, carry the same one. Its `seq` is the stream's sequence
/// number, known only once stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event id.
    pub id: String,
    /// The event.
    pub event: RoomEvent,
}

impl RoomEvent {
    /// `room_started`.
    pub fn room_started(tenant: TenantId, room: impl Into<String>, at_ms: u64) -> Self {
        Self::room(EventKind::RoomStarted, tenant, room.into(), at_ms)
    }

    /// `room_finished`.
    pub fn room_finished(tenant: TenantId, room: impl Into<String>, at_ms: u64) -> Self {
        Self::room(EventKind::RoomFinished, tenant, room.into(), at_ms)
    }

    /// `participant_joined`, with the member's status as stored.
    pub fn participant_joined(
        tenant: TenantId,
        room: impl Into<String>,
        peer: ConnId,
        status: Map<String, Value>,
        at_ms: u64,
    ) -> Self {
        Self::member(
            EventKind::ParticipantJoined,
            tenant,
            room.into(),
            peer,
            status,
            at_ms,
        )
    }

    /// `participant_left`, with the member's last status.
    pub fn participant_left(
        tenant: TenantId,
        room: impl Into<String>,
        peer: ConnId,
        status: Map<String, Value>,
        at_ms: u64,
    ) -> Self {
        Self::member(
            EventKind::ParticipantLeft,
            tenant,
            room.into(),
            peer,
            status,
            at_ms,
        )
    }

    fn room(kind: EventKind, tenant: TenantId, room: String, at_ms: u64) -> Self {
        RoomEvent {
            kind,
            tenant,
            room,
            peer_id: None,
            status: None,
            occurred_at_ms: at_ms,
        }
    }

    fn member(
        kind: EventKind,
        tenant: TenantId,
        room: String,
        peer: ConnId,
        status: Map<String, Value>,
        at_ms: u64,
    ) -> Self {
        RoomEvent {
            kind,
            tenant,
            room,
            peer_id: Some(peer),
            status: Some(status),
            occurred_at_ms: at_ms,
        }
    }
}

/// The JSON body of one webhook request (docs/webhooks.md). Every attempt of an event sends the
/// same body, so `id` de-duplicates redeliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event, the same on every attempt: the receiver's de-duplication key.
    pub id: String,
    /// What happened.
    pub event: EventKind,
    /// The tenant's id.
    pub tenant: String,
    /// The room's name.
    pub room: String,
    /// Increases with every event of the room; events of a room are delivered in this order.
    /// Standalone it grows by one (from 1 at the room's first event after the engine started); in a
    /// cluster it is the webhook stream's sequence number (increasing, with gaps). It orders, it
    /// does not prove completeness: an event dropped after its retry time leaves a gap.
    pub seq: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub occurred_at_ms: u64,
    /// The member, for `participant_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The member's status, for `participant_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Map<String, Value>>,
}

impl WebhookEvent {
    /// The body for `event`, with its id and its room's sequence number.
    pub fn new(event: RoomEvent, id: String, seq: u64) -> Self {
        WebhookEvent {
            id,
            event: event.kind,
            tenant: event.tenant.as_str().to_owned(),
            room: event.room,
            seq,
            occurred_at_ms: event.occurred_at_ms,
            peer_id: event.peer_id.map(|p| p.to_string()),
            status: event.status,
        }
    }
}

/// A fresh event id: 128 random bits, so ids never repeat across processes and restarts without any
/// coordination.
pub fn new_event_id() -> String {
    format!("evt_{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let tenant = TenantId::parse("acme").ok();
        let Some(tenant) = tenant else {
            panic!("acme is a valid tenant id")
        };
        let peer: ConnId = match "00000001-0000-4000-8000-000000000002".parse() {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        };
        let mut status = Map::new();
        status.insert("name".into(), Value::from("Ada"));
        let body = WebhookEvent::new(
            RoomEvent::participant_joined(
                tenant.clone(),
                "standup",
                peer,
                status,
                1_700_000_000_123,
            ),
            "evt_1".into(),
            2,
        );
        assert_eq!(
            serde_json::to_value(&body).ok(),
            Some(serde_json::json!({
                "id": "evt_1", "event": "participant_joined", "tenant": "acme", "room": "standup",
                "seq": 2, "occurred_at_ms": 1_700_000_000_123u64,
                "peer_id": "00000001-0000-4000-8000-000000000002", "status": {"name": "Ada"}
            }))
        );
        let started = WebhookEvent::new(
            RoomEvent::room_started(tenant, "standup", 5),
            "evt_0".into(),
            1,
        );
        assert_eq!(
            serde_json::to_value(&started).ok(),
            Some(serde_json::json!({
                "id": "evt_0", "event": "room_started", "tenant": "acme", "room": "standup",
                "seq": 1, "occurred_at_ms": 5
            }))
        );
    }

    #[test]
    fn stored_events_round_trip() {
        let Ok(tenant) = TenantId::parse("acme") else {
            panic!("acme is a valid tenant id")
        };
        let peer = ConnId::for_edge(switchboard_proto::EdgeId(7), [1; 16]);
        let mut status = Map::new();
        status.insert("name".into(), Value::from("Ada"));
        for event in [
            RoomEvent::room_started(tenant.clone(), "standup", 5),
            RoomEvent::participant_left(tenant.clone(), "standup", peer, status, 6),
        ] {
            let stored = StoredEvent {
                id: "evt_1".into(),
                event,
            };
            let bytes = serde_json::to_vec(&stored).ok();
            let back = bytes.and_then(|b| serde_json::from_slice::<StoredEvent>(&b).ok());
            assert_eq!(back, Some(stored));
        }
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_event_id(), new_event_id());
    }
}
