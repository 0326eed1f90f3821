//! The Switchboard signaling protocol (palava protocol "1.0.0" plus our documented extensions).
//!
//! This crate is pure: no tokio, no sockets, no clock, no randomness source. Everything here can be
//! fuzzed and property-tested, and the edge, the router and the load generator share it. CI fails if
//! tokio ever enters its dependency tree.
//!
//! # Layout
//! - [`client`]: messages a client sends, and [`decode`] with palava's exact error order.
//! - [`depth`]: JSON parsing with a nesting limit, so that whatever the edge accepts fits the bus.
//! - [`server`]: messages the server sends, encoded to JSON text.
//! - [`status`]: peer status validation (`name`, `user_agent`, size) and the stored subset.
//! - [`room`]: room ids and the keyed [`RoomKey`] that stands for a room everywhere after the edge.
//! - [`id`]: connection ids ([`ConnId`], lowercase UUID v4) and edge ids ([`EdgeId`]).
//! - [`error`]: [`ProtocolError`], whose `Display` is the exact text sent to clients.
//! - [`limits`]: protocol constants and configurable defaults.
//! - [`bus`]: what travels between edges and routers: commands, room events, resync, heartbeats.
//! - [`control`]: what the control API asks of the rooms (list, members, remove, close, send).
//! - [`subject`]: names of bus subjects and storage, which carry ids and slots, never room ids.

pub mod bus;
pub mod client;
pub mod control;
pub mod depth;
pub mod error;
pub mod id;
pub mod limits;
pub mod room;
pub mod server;
pub mod status;
pub mod subject;
pub mod tenant;

pub use client::{ClientMessage, ForwardEvent, decode, decode_with_depth};
pub use error::ProtocolError;
pub use id::{ConnId, EdgeId};
pub use room::{RoomId, RoomKey, RoomKeyer};
pub use server::{PeerEntry, ServerMessage};
pub use status::{Status, StatusRules, StoredStatus};
pub use tenant::TenantId;
