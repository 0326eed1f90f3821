//! Switchboard's rooms: membership, statuses and palava's statistics, as a pure state machine.
//!
//! The heart is [`Rooms`], a synchronous state machine: `apply(now, command) -> effects`. It never
//! reads a clock, spawns a task or touches a socket (CI checks this crate's dependencies and source,
//! as for `switchboard-proto`), so every ordering and failure case is tested deterministically; a
//! driver owns the I/O and turns [`Effect`]s into messages: the standalone edge's in-process router,
//! or a cluster router's slot task over NATS.
//!
//! # Layout
//! - [`rooms`]: [`Rooms`], its [`Command`]s and [`Effect`]s.
//! - [`reconcile`]: bringing a slot's rooms and the edges' views in line with the edges' members.
//! - [`quota`]: hosted mode's admission and rate-share policies, used by edges and routers.
//! - [`stats`]: per-hour `room_peaks` and `connection_time` statistics, and their aggregates.
//! - [`time`]: [`UnixMillis`], the only notion of time the state machine has.

pub mod quota;
pub mod reconcile;
pub mod rooms;
pub mod stats;
pub mod time;

pub use rooms::{Command, Effect, MemberRecord, Rooms, RoomsConfig, status_map};
pub use stats::{HourStats, HourlyStats, TenantUsage};
pub use time::UnixMillis;
