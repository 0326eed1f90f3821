//! Switchboard's control API, version 1 (docs/api.md): what an operator and a tenant's backend do
//! over HTTP. The same routes are served by the edge standalone and by the routers in a cluster;
//! what differs between the two is behind the traits of [`service`], [`store`] and [`usage`].
//!
//! # Layout
//! - [`webhooks`]: the webhook delivery engine (events, signatures, retries, metrics).
//! - [`server`]: the HTTP server and its routes; `openapi.json` (beside `src/`) is their contract.
//! - [`auth`]: who is asking: the operator (bearer tokens) or one tenant (an admin JWT, a key pair).
//! - [`tenants`]: tenants and keys at runtime, put in force in the tenants directory.
//! - [`record`]: tenants as stored, and as shown (without secrets).
//! - [`store`]: where the API's tenants are kept ([`store::FileStore`] standalone).
//! - [`cluster`]: a cluster's tenants bucket in JetStream KV, written by the routers' API and
//!   followed by every router and hosted edge.
//! - [`rooms`]: a tenant's rooms and members, and server messages, through the room service.
//! - [`usage`]: a tenant's usage per hour.
//! - [`config`]: the `--api-*` flags, the tenants' and `--webhook-ca-file`.
//! - [`error`]: [`error::ApiError`], every refusal with its status.
//! - [`service`]: the room service as the API sees it ([`service::RoomService`]), implemented by
//!   the standalone edge and by the cluster's routers, and the types it answers with.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod record;
pub mod rooms;
pub mod server;
pub mod service;
pub mod store;
pub mod tenants;
pub mod usage;
pub mod webhooks;

pub use server::{Api, serve};
pub use tenants::Tenants;
