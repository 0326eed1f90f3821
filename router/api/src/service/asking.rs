//! The room service over [`RoomRequest`]s: [`AskingRoomService`] turns the API's calls into
//! requests and their [`RoomReply`]s into answers, once for every deployment; a [`RoomAsk`] only
//! carries a request to the owner of its room (standalone the in-process router, in a cluster the
//! owner of its slot over the bus) and gathers a listing from every owner.

use serde_json::{Map, Value};
use switchboard_proto::control::{MemberEntry, RoomEntry, RoomReply, RoomRequest};
use switchboard_proto::{ConnId, RoomId, RoomKey, RoomKeyer, TenantId};

use super::{Audience, BoxFuture, MemberInfo, RoomInfo, RoomService, ServiceError};

/// How [`RoomRequest`]s reach the rooms. Failing to reach them (no answer in time, a transport
/// gone) is [`ServiceError::Unavailable`]; what the rooms answered, [`RoomReply::NotFound`] and
/// [`RoomReply::NotServing`] included, is left to [`AskingRoomService`].
pub trait RoomAsk: Send + Sync + 'static {
    /// Asks the owner of the request's room ([`RoomRequest::room`] is `Some`).
    fn ask(&self, request: RoomRequest) -> BoxFuture<'_, Result<RoomReply, ServiceError>>;

    /// Asks every owner a request that all of them answer (a listing), each answer in a fixed
    /// order. By default there is one owner, asked as by [`RoomAsk::ask`].
    fn ask_all(&self, request: RoomRequest) -> BoxFuture<'_, Vec<Result<RoomReply, ServiceError>>> {
        Box::pin(async move { vec![self.ask(request).await] })
    }
}

/// The [`RoomService`] over a [`RoomAsk`]: room names are hashed into keys with the edges' room
/// keyer, and only keys travel; names come back in the listing.
#[derive(Debug, Clone)]
pub struct AskingRoomService<T> {
    rooms: T,
    keyer: RoomKeyer,
}

impl<T: RoomAsk> AskingRoomService<T> {
    /// The room service asking through `rooms`; `keyer` must be the one the edges' connections
    /// hash room names with.
    pub fn new(rooms: T, keyer: RoomKeyer) -> Self {
        AskingRoomService { rooms, keyer }
    }

    /// The key of `tenant`'s room `name`; a name no client could join with has no room.
    fn room_key(&self, tenant: &TenantId, name: &str) -> Result<RoomKey, ServiceError> {
        let id = RoomId::parse(Some(&Value::String(name.to_string())))
            .map_err(|_| ServiceError::NotFound)?;
        Ok(self.keyer.key_in(tenant, &id))
    }

    /// Asks about one room and expects [`RoomReply::Done`].
    async fn act(&self, request: RoomRequest) -> Result<(), ServiceError> {
        match settle(self.rooms.ask(request).await)? {
            RoomReply::Done => Ok(()),
            _ => Err(ServiceError::Unavailable),
        }
    }
}

/// An answer as the API sees it: no room is [`ServiceError::NotFound`]; a room without a serving
/// owner (a failover), [`ServiceError::Unavailable`].
fn settle(reply: Result<RoomReply, ServiceError>) -> Result<RoomReply, ServiceError> {
    match reply? {
        RoomReply::NotFound => Err(ServiceError::NotFound),
        RoomReply::NotServing => Err(ServiceError::Unavailable),
        reply => Ok(reply),
    }
}

/// A listed room as the API shows it.
fn room_info(entry: RoomEntry) -> RoomInfo {
    RoomInfo {
        name: entry.name,
        members: entry.members,
        peak_members: entry.peak,
        opened_at_ms: entry.opened_at_ms,
    }
}

/// A listed member as the API shows it.
fn member_info(entry: MemberEntry) -> MemberInfo {
    MemberInfo {
        peer_id: entry.peer_id,
        status: match entry.status.to_json() {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        edge: entry.edge,
        joined_at_ms: entry.joined_at_ms,
    }
}

impl<T: RoomAsk> RoomService for AskingRoomService<T> {
    fn rooms(&self, tenant: &TenantId) -> BoxFuture<'_, Result<Vec<RoomInfo>, ServiceError>> {
        let request = RoomRequest::Rooms {
            tenant: tenant.clone(),
        };
        Box::pin(async move {
            let mut rooms = Vec::new();
            for reply in self.rooms.ask_all(request).await {
                match settle(reply)? {
                    RoomReply::Rooms(entries) => rooms.extend(entries.into_iter().map(room_info)),
                    _ => return Err(ServiceError::Unavailable),
                }
            }
            rooms.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            Ok(rooms)
        })
    }

    fn members(
        &self,
        tenant: &TenantId,
        room: &str,
    ) -> BoxFuture<'_, Result<Vec<MemberInfo>, ServiceError>> {
        let tenant = tenant.clone();
        let room = self.room_key(&tenant, room);
        Box::pin(async move {
            let request = RoomRequest::Members {
                tenant,
                room: room?,
            };
            match settle(self.rooms.ask(request).await)? {
                RoomReply::Members(members) => Ok(members.into_iter().map(member_info).collect()),
                _ => Err(ServiceError::Unavailable),
            }
        })
    }

    fn remove_member(
        &self,
        tenant: &TenantId,
        room: &str,
        peer: ConnId,
    ) -> BoxFuture<'_, Result<(), ServiceError>> {
        let tenant = tenant.clone();
        let room = self.room_key(&tenant, room);
        Box::pin(async move {
            self.act(RoomRequest::Remove {
                tenant,
                room: room?,
                peer,
            })
            .await
        })
    }

    fn close_room(&self, tenant: &TenantId, room: &str) -> BoxFuture<'_, Result<(), ServiceError>> {
        let tenant = tenant.clone();
        let room = self.room_key(&tenant, room);
        Box::pin(async move {
            self.act(RoomRequest::Close {
                tenant,
                room: room?,
            })
            .await
        })
    }

    fn send(
        &self,
        tenant: &TenantId,
        room: &str,
        audience: Audience,
        data: Map<String, Value>,
    ) -> BoxFuture<'_, Result<(), ServiceError>> {
        let tenant = tenant.clone();
        let room = self.room_key(&tenant, room);
        let to = match audience {
            Audience::Room => None,
            Audience::Member(peer) => Some(peer),
        };
        Box::pin(async move {
            self.act(RoomRequest::Send {
                tenant,
                room: room?,
                to,
                data,
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use switchboard_proto::{EdgeId, StoredStatus};

    use super::*;

    /// Owners that answer from a script, in turn, and record what they were asked.
    struct Scripted {
        replies: Mutex<Vec<Result<RoomReply, ServiceError>>>,
        asked: Mutex<Vec<RoomRequest>>,
    }

    fn service(replies: Vec<Result<RoomReply, ServiceError>>) -> AskingRoomService<Scripted> {
        let scripted = Scripted {
            replies: Mutex::new(replies),
            asked: Mutex::new(Vec::new()),
        };
        AskingRoomService::new(scripted, RoomKeyer::new(b"0123456789abcdef"))
    }

    impl Scripted {
        fn next(&self, request: RoomRequest) -> Result<RoomReply, ServiceError> {
            self.asked.lock().unwrap().push(request);
            self.replies.lock().unwrap().remove(0)
        }
    }

    impl RoomAsk for Scripted {
        fn ask(&self, request: RoomRequest) -> BoxFuture<'_, Result<RoomReply, ServiceError>> {
            Box::pin(async move { self.next(request) })
        }

        /// Every scripted reply is one owner's.
        fn ask_all(
            &self,
            request: RoomRequest,
        ) -> BoxFuture<'_, Vec<Result<RoomReply, ServiceError>>> {
            let owners = self.replies.lock().unwrap().len();
            Box::pin(async move { (0..owners).map(|_| self.next(request.clone())).collect() })
        }
    }

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn room(name: &str, members: u64) -> RoomEntry {
        RoomEntry {
            name: name.into(),
            members,
            peak: members + 1,
            opened_at_ms: 7,
        }
    }

    #[tokio::test]
    async fn a_listing_gathers_every_owner_by_name_and_needs_them_all() {
        let rooms = service(vec![
            Ok(RoomReply::Rooms(vec![room("b", 2)])),
            Ok(RoomReply::Rooms(vec![room("a", 1), room("c", 3)])),
        ]);
        let names: Vec<String> = rooms
            .rooms(&tenant())
            .await
            .unwrap()
            .into_iter()
            .map(|info| info.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);

        let rooms = service(vec![
            Ok(RoomReply::Rooms(vec![room("a", 1)])),
            Ok(RoomReply::NotServing),
        ]);
        assert_eq!(rooms.rooms(&tenant()).await, Err(ServiceError::Unavailable));
    }

    #[tokio::test]
    async fn replies_become_answers() {
        let cases = [
            (Ok(RoomReply::Done), Ok(())),
            (Ok(RoomReply::NotFound), Err(ServiceError::NotFound)),
            (Ok(RoomReply::NotServing), Err(ServiceError::Unavailable)),
            (
                Ok(RoomReply::Members(vec![])),
                Err(ServiceError::Unavailable),
            ),
            (
                Err(ServiceError::Unavailable),
                Err(ServiceError::Unavailable),
            ),
        ];
        for (reply, answer) in cases {
            let rooms = service(vec![reply.clone()]);
            assert_eq!(
                rooms.close_room(&tenant(), "lobby").await,
                answer,
                "{reply:?}"
            );
        }
    }

    #[tokio::test]
    async fn only_the_room_key_travels_and_members_show_their_status() {
        let peer = ConnId::from_random_bytes([1; 16]);
        let status = StoredStatus {
            name: Some("ada".into()),
            user_agent: None,
        };
        let rooms = service(vec![Ok(RoomReply::Members(vec![MemberEntry {
            peer_id: peer,
            status,
            edge: EdgeId(3),
            joined_at_ms: 9,
        }]))]);
        let members = rooms.members(&tenant(), "lobby").await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].peer_id, peer);
        assert_eq!(members[0].status.get("name"), Some(&Value::from("ada")));
        assert_eq!(members[0].edge, EdgeId(3));
        let key = RoomKeyer::new(b"0123456789abcdef").key_in(
            &tenant(),
            &RoomId::parse(Some(&Value::from("lobby"))).unwrap(),
        );
        let asked = rooms.rooms.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            [RoomRequest::Members {
                tenant: tenant(),
                room: key
            }]
        );
    }

    #[tokio::test]
    async fn a_name_no_client_could_join_with_has_no_room_and_nobody_is_asked() {
        let rooms = service(vec![]);
        assert_eq!(
            rooms
                .remove_member(&tenant(), "", ConnId::from_random_bytes([1; 16]))
                .await,
            Err(ServiceError::NotFound)
        );
        assert!(rooms.rooms.asked.lock().unwrap().is_empty());
    }
}
