//! The cluster's room service for the control API ([`RoomService`]), over NATS request/reply:
//! requests about one room go to the owner of its slot ([`subject::rooms_slot`]); a tenant's
//! listing asks every slot at once (scatter-gather) and is complete only when every slot answered.
//! A slot without a serving router (a failover) is asked again until a bounded deadline, then the
//! call fails as `Unavailable` (the API caller may retry). Rooms are named by their keys on the
//! bus; names come back only in the listing's reply, to the asking tenant.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Map, Value};
use switchboard_api::service::{
    Audience, BoxFuture, MemberInfo, RoomInfo, RoomService, ServiceError,
};
use switchboard_proto::control::{RoomReply, RoomRequest};
use switchboard_proto::{ConnId, RoomId, RoomKey, RoomKeyer, TenantId, subject};
use tokio::time::{Instant, sleep, timeout};

/// Longest a call waits in all, failovers included: about the cluster's failover time (lease
/// lifetime plus resync) with room to spare.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Longest wait for one reply before asking again.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause before asking a slot without a serving router again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The room service over NATS; any process connected to the cluster's NATS with the edges'
/// room-key secret can use it (the routers do, for their control API).
#[derive(Debug, Clone)]
pub struct ClusterRoomService {
    client: async_nats::Client,
    keyer: RoomKeyer,
    slots: u32,
    deadline: Duration,
}

impl ClusterRoomService {
    /// A room service asking the routers over `client`; `keyer` must be the edges' (their
    /// `--room-key-secret`) and `slots` the cluster's `--slots`.
    pub fn shared(
        client: async_nats::Client,
        keyer: RoomKeyer,
        slots: u32,
    ) -> Arc<dyn RoomService> {
        Arc::new(ClusterRoomService {
            client,
            keyer,
            slots,
            deadline: DEFAULT_DEADLINE,
        })
    }

    /// Asks the owner of `slot`, again while it has none, until the deadline.
    async fn ask_slot(&self, slot: u32, request: &RoomRequest) -> Result<RoomReply, ServiceError> {
        let payload: bytes::Bytes = serde_json::to_vec(request)
            .map_err(|_| ServiceError::Unavailable)?
            .into();
        let deadline = Instant::now() + self.deadline;
        loop {
            let reply = timeout(
                ATTEMPT_TIMEOUT,
                self.client
                    .request(subject::rooms_slot(slot), payload.clone()),
            )
            .await;
            if let Ok(Ok(message)) = reply {
                match serde_json::from_slice::<RoomReply>(&message.payload) {
                    Ok(RoomReply::NotServing) | Err(_) => {}
                    Ok(RoomReply::NotFound) => return Err(ServiceError::NotFound),
                    Ok(reply) => return Ok(reply),
                }
            }
            // No responders, a timeout or "not serving": the slot's owner is changing.
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ServiceError::Unavailable);
            }
            sleep(RETRY_PAUSE).await;
        }
    }

    async fn ask_room(&self, request: RoomRequest) -> Result<RoomReply, ServiceError> {
        let slot = request
            .room()
            .ok_or(ServiceError::Unavailable)?
            .slot(self.slots);
        self.ask_slot(slot, &request).await
    }

    async fn act(&self, request: RoomRequest) -> Result<(), ServiceError> {
        match self.ask_room(request).await? {
            RoomReply::Done => Ok(()),
            _ => Err(ServiceError::Unavailable),
        }
    }
}

/// The key of `tenant`'s room `name`; a name no client could join with has no room.
fn room_key(keyer: &RoomKeyer, tenant: &TenantId, name: &str) -> Result<RoomKey, ServiceError> {
    let id = RoomId::parse(Some(&Value::String(name.to_string())))
        .map_err(|_| ServiceError::NotFound)?;
    Ok(keyer.key_in(tenant, &id))
}

impl RoomService for ClusterRoomService {
    fn rooms(&self, tenant: &TenantId) -> BoxFuture<'_, Result<Vec<RoomInfo>, ServiceError>> {
        let request = RoomRequest::Rooms {
            tenant: tenant.clone(),
        };
        Box::pin(async move {
            let request = &request;
            let replies = join_all((0..self.slots).map(|slot| self.ask_slot(slot, request))).await;
            let mut rooms = Vec::new();
            for reply in replies {
                match reply? {
                    RoomReply::Rooms(entries) => {
                        rooms.extend(entries.into_iter().map(|entry| RoomInfo {
                            name: entry.name,
                            members: entry.members,
                            peak_members: entry.peak,
                            opened_at_ms: entry.opened_at_ms,
                        }))
                    }
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
        let room = room_key(&self.keyer, &tenant, room);
        Box::pin(async move {
            match self
                .ask_room(RoomRequest::Members {
                    tenant,
                    room: room?,
                })
                .await?
            {
                RoomReply::Members(members) => Ok(members
                    .into_iter()
                    .map(|entry| MemberInfo {
                        peer_id: entry.peer_id,
                        status: match entry.status.to_json() {
                            Value::Object(map) => map,
                            _ => Map::new(),
                        },
                        edge: entry.edge,
                        joined_at_ms: entry.joined_at_ms,
                    })
                    .collect()),
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
        let room = room_key(&self.keyer, &tenant, room);
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
        let room = room_key(&self.keyer, &tenant, room);
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
        let room = room_key(&self.keyer, &tenant, room);
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
