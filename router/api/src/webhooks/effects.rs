//! Which webhook events the room state machine's effects are: shared by the standalone edge and the
//! cluster's routers, so both send the same events for the same membership changes.

use switchboard_rooms::{Effect, UnixMillis, status_map};

use super::event::RoomEvent;

/// The webhook events of `effect`, in order: a join that opened the room is `room_started` then
/// `participant_joined`, a leave that closed it `participant_left` then `room_finished`. Other
/// effects are no events (empty).
pub fn events_of(effect: &Effect, now: UnixMillis) -> Vec<RoomEvent> {
    let at = now.0;
    match effect {
        Effect::TenantMemberJoined {
            tenant,
            room,
            conn,
            status,
            opened,
        } => {
            let joined =
                RoomEvent::participant_joined(tenant.clone(), room, *conn, status_map(status), at);
            match opened {
                true => vec![RoomEvent::room_started(tenant.clone(), room, at), joined],
                false => vec![joined],
            }
        }
        Effect::TenantMemberLeft {
            tenant,
            room,
            conn,
            status,
            closed,
        } => {
            let left =
                RoomEvent::participant_left(tenant.clone(), room, *conn, status_map(status), at);
            match closed {
                true => vec![left, RoomEvent::room_finished(tenant.clone(), room, at)],
                false => vec![left],
            }
        }
        _ => Vec::new(),
    }
}

/// Whether `effect` has webhook events (cheaper than [`events_of`] when most effects have none).
pub fn has_events(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::TenantMemberJoined { .. } | Effect::TenantMemberLeft { .. }
    )
}

#[cfg(test)]
mod tests {
    use switchboard_proto::{ConnId, EdgeId, StoredStatus, TenantId};

    use super::*;
    use crate::webhooks::EventKind;

    fn kinds(effect: &Effect) -> Vec<EventKind> {
        events_of(effect, UnixMillis(9))
            .iter()
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn member_effects_table() {
        let Ok(tenant) = TenantId::parse("acme") else {
            panic!("acme is a valid tenant id")
        };
        let conn = ConnId::for_edge(EdgeId(1), [2; 16]);
        let joined = |opened| Effect::TenantMemberJoined {
            tenant: tenant.clone(),
            room: "standup".into(),
            conn,
            status: StoredStatus::default(),
            opened,
        };
        let left = |closed| Effect::TenantMemberLeft {
            tenant: tenant.clone(),
            room: "standup".into(),
            conn,
            status: StoredStatus::default(),
            closed,
        };
        use EventKind::*;
        let cases: Vec<(Effect, Vec<EventKind>)> = vec![
            (joined(true), vec![RoomStarted, ParticipantJoined]),
            (joined(false), vec![ParticipantJoined]),
            (left(false), vec![ParticipantLeft]),
            (left(true), vec![ParticipantLeft, RoomFinished]),
            (
                Effect::MemberLeft {
                    minutes: 3,
                    millis: 180_000,
                },
                vec![],
            ),
        ];
        for (effect, want) in cases {
            assert_eq!(kinds(&effect), want, "{effect:?}");
            assert_eq!(has_events(&effect), !want.is_empty());
        }
        let events = events_of(&joined(true), UnixMillis(9));
        assert!(
            events
                .iter()
                .all(|e| e.room == "standup" && e.tenant == tenant && e.occurred_at_ms == 9)
        );
        assert_eq!(events[1].peer_id, Some(conn));
        assert_eq!(events[0].peer_id, None);
    }
}
