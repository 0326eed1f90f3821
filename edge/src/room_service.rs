//! The standalone edge's room service for the control API ([`RoomService`]): each call is a
//! request to the in-process router ([`crate::local_router`]), which answers from its [`Rooms`]
//! and hands the effects (room events, removals) to the registry like those of a command.
//!
//! [`Rooms`]: switchboard_rooms::Rooms

use std::sync::Arc;

use serde_json::{Map, Value};
use switchboard_api::service::{
    Audience, BoxFuture, MemberInfo, RoomInfo, RoomService, ServiceError,
};
use switchboard_proto::control::{MemberEntry, RoomEntry, RoomReply, RoomRequest};
use switchboard_proto::{ConnId, RoomId, RoomKey, RoomKeyer, TenantId};
use tokio::sync::{mpsc, oneshot};

use crate::bus::LocalRequest;
use crate::local_router::status_map;

/// The room service over the in-process router; build it with [`LocalRoomService::shared`] and hand
/// it to the API server as an `Arc<dyn RoomService>`.
#[derive(Debug, Clone)]
pub struct LocalRoomService {
    /// Weak: the router ends when the edge's last connection and task let go of it; an API
    /// server still holding this service must not keep it alive.
    router: mpsc::WeakSender<LocalRequest>,
    keyer: RoomKeyer,
}

impl LocalRoomService {
    /// A room service asking the router fed by `router`, with the edge's room keyer (the same one
    /// its connections hash room names with).
    pub fn shared(router: &mpsc::Sender<LocalRequest>, keyer: RoomKeyer) -> Arc<dyn RoomService> {
        Arc::new(LocalRoomService {
            router: router.downgrade(),
            keyer,
        })
    }

    async fn ask(&self, request: RoomRequest) -> Result<RoomReply, ServiceError> {
        let (tx, rx) = oneshot::channel();
        let router = self.router.upgrade().ok_or(ServiceError::Unavailable)?;
        router
            .send(LocalRequest::Rooms(request, tx))
            .await
            .map_err(|_| ServiceError::Unavailable)?;
        match rx.await {
            Ok(RoomReply::NotFound) => Err(ServiceError::NotFound),
            Ok(RoomReply::NotServing) | Err(_) => Err(ServiceError::Unavailable),
            Ok(reply) => Ok(reply),
        }
    }

    async fn act(&self, request: RoomRequest) -> Result<(), ServiceError> {
        match self.ask(request).await? {
            RoomReply::Done => Ok(()),
            _ => Err(ServiceError::Unavailable),
        }
    }
}

/// The key of `tenant`'s room `name`; a name no client could join with has no room.
pub fn room_key(keyer: &RoomKeyer, tenant: &TenantId, name: &str) -> Result<RoomKey, ServiceError> {
    let id = RoomId::parse(Some(&Value::String(name.to_string())))
        .map_err(|_| ServiceError::NotFound)?;
    Ok(keyer.key_in(tenant, &id))
}

/// A listed room as the API shows it.
pub fn room_info(entry: RoomEntry) -> RoomInfo {
    RoomInfo {
        name: entry.name,
        members: entry.members,
        peak_members: entry.peak,
        opened_at_ms: entry.opened_at_ms,
    }
}

/// A listed member as the API shows it.
pub fn member_info(entry: MemberEntry) -> MemberInfo {
    MemberInfo {
        peer_id: entry.peer_id,
        status: status_map(&entry.status),
        edge: entry.edge,
        joined_at_ms: entry.joined_at_ms,
    }
}

impl RoomService for LocalRoomService {
    fn rooms(&self, tenant: &TenantId) -> BoxFuture<'_, Result<Vec<RoomInfo>, ServiceError>> {
        let tenant = tenant.clone();
        Box::pin(async move {
            match self.ask(RoomRequest::Rooms { tenant }).await? {
                RoomReply::Rooms(rooms) => Ok(rooms.into_iter().map(room_info).collect()),
                _ => Err(ServiceError::Unavailable),
            }
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
                .ask(RoomRequest::Members {
                    tenant,
                    room: room?,
                })
                .await?
            {
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
