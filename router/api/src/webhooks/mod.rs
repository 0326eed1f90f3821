//! Webhooks: telling a tenant's backend when its rooms start and finish and members join and leave,
//! signed, at least once, in order per room, retried with backoff for a bounded time
//! (docs/webhooks.md).
//!
//! The room's owner turns its room effects into [`RoomEvent`]s ([`events_of`]) in the room's order.
//! Standalone it calls [`Webhooks::emit`] with each; in a cluster the router stores them in a
//! JetStream stream and a per-slot worker feeds them to [`Webhooks::push`]. [`Webhooks::run`]
//! delivers them. Tenants' endpoints and secrets
//! ([`WebhookSettings`]) come from a [`WebhookDirectory`] the caller implements over its tenant
//! registry.
//!
//! # Layout
//! - [`event`]: the events ([`RoomEvent`] in, [`StoredEvent`] in a cluster's stream, [`WebhookEvent`]
//!   on the wire).
//! - [`effects`]: which events the room state machine's effects are ([`events_of`]).
//! - [`signature`]: signing and verifying (`Switchboard-Signature: t=..,v1=..`).
//! - [`settings`]: a tenant's [`WebhookSettings`] and the [`WebhookDirectory`] they are read from.
//! - [`backoff`]: the retry schedule, a pure function.
//! - [`outbox`]: the in-memory queue: per-room order, retries, bounds (pure state).
//! - [`http`]: one attempt, an HTTP/1.1 POST (over TLS for `https://`).
//! - [`tls`]: whom `https://` receivers are trusted through: the system's roots, extra CA files.
//! - [`metrics`]: delivery metrics.
//! - [`engine`]: the handle and the delivery task around the outbox.

pub mod backoff;
pub mod effects;
pub mod engine;
pub mod event;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod settings;
pub mod signature;
pub mod tls;

pub use backoff::Backoff;
pub use effects::events_of;
pub use engine::{EmitError, EngineConfig, Webhooks};
pub use event::{EventKind, RoomEvent, StoredEvent, WebhookEvent, new_event_id};
pub use metrics::WebhookMetrics;
pub use outbox::{Limits, Queued};
pub use settings::{WebhookDirectory, WebhookSettings};
pub use signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, verify};
pub use tls::{CaFileError, Tls};
