//! The room service as the API sees it: a tenant's rooms (by their names, which only their owner
//! is shown), their members, and what the API may do to them. Standalone the edge implements it
//! over its in-process router; in a cluster a router implements it over the bus (every router
//! answers for the slots it serves; listing gathers from all). Both are an [`AskingRoomService`]:
//! they differ only in how a request reaches its room ([`RoomAsk`]).
//!
//! # Layout
//! - [`asking`]: [`AskingRoomService`], the room service over any [`RoomAsk`].

pub mod asking;

pub use asking::{AskingRoomService, RoomAsk};

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::{Map, Value};
use switchboard_proto::{ConnId, EdgeId, TenantId};

/// A boxed future, so that the trait can be used as `dyn RoomService`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One open room of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// The room's name (its `room_id` as clients sent it).
    pub name: String,
    /// Members now.
    pub members: u64,
    /// Most members at once since it opened.
    pub peak_members: u64,
    /// When it opened, in milliseconds since the Unix epoch.
    pub opened_at_ms: u64,
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberInfo {
    /// Its peer id.
    pub peer_id: ConnId,
    /// Its stored status (`name`, `user_agent`).
    pub status: Map<String, Value>,
    /// The edge holding its connection.
    pub edge: EdgeId,
    /// When it joined, in milliseconds since the Unix epoch.
    pub joined_at_ms: u64,
}

/// Where a server message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every member of the room.
    Room,
    /// One member.
    Member(ConnId),
}

/// Why the room service could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// No such room (or member) of this tenant.
    #[error("not found")]
    NotFound,
    /// The room service did not answer in time (a failover in progress); the caller may retry.
    #[error("room service unavailable")]
    Unavailable,
}

/// What the API asks of the room service. Every call is scoped to one tenant: another tenant's rooms
/// do not exist for it.
pub trait RoomService: Send + Sync + 'static {
    /// The tenant's open rooms.
    fn rooms(&self, tenant: &TenantId) -> BoxFuture<'_, Result<Vec<RoomInfo>, ServiceError>>;

    /// One room's members, in join order.
    fn members(
        &self,
        tenant: &TenantId,
        room: &str,
    ) -> BoxFuture<'_, Result<Vec<MemberInfo>, ServiceError>>;

    /// Removes a member: its client gets the documented `error` and close, the others `peer_left`.
    fn remove_member(
        &self,
        tenant: &TenantId,
        room: &str,
        peer: ConnId,
    ) -> BoxFuture<'_, Result<(), ServiceError>>;

    /// Closes a room: every member is removed as by [`RoomService::remove_member`].
    fn close_room(&self, tenant: &TenantId, room: &str) -> BoxFuture<'_, Result<(), ServiceError>>;

    /// Sends `data` as a server message (docs/protocol.md, extension) to the room or one member.
    fn send(
        &self,
        tenant: &TenantId,
        room: &str,
        audience: Audience,
        data: Map<String, Value>,
    ) -> BoxFuture<'_, Result<(), ServiceError>>;
}
