//! Switchboard's control API, version 1 (docs/api.md): what an operator and a tenant's backend do
//! over HTTP. The same routes are served by the edge standalone and by the routers in a cluster;
//! what differs between the two is behind the traits of [`service`].
//!
//! # Layout
//! - [`webhooks`]: the webhook delivery engine (events, signatures, retries, metrics).
//! - [`service`]: the room service as the API sees it ([`service::RoomService`]), implemented by
//!   the standalone edge and by the cluster's routers, and the types it answers with.

pub mod service;
pub mod webhooks;
