//! Switchboard's router: room membership, statuses and palava's statistics.
//!
//! The heart is [`Rooms`], a synchronous state machine: `apply(now, command) -> effects`. It never
//! reads a clock, spawns a task or touches a socket, so every ordering and failure case can be tested
//! deterministically; a driver (in-process in the standalone edge, over NATS in a cluster) owns the
//! I/O and turns [`Effect`]s into messages.
//!
//! # Layout
//! - [`rooms`]: [`Rooms`], its [`Command`]s and [`Effect`]s.
//! - [`reconcile`]: bringing a slot's rooms and the edges' views in line with the edges' members.
//! - [`stats`]: per-hour `room_peaks` and `connection_time` statistics.
//! - [`time`]: [`UnixMillis`], the only notion of time the state machine has.
//! - [`service`]: the `switchboard-router` service around it (NATS, leases, slots, admin port).
//! - [`nats`]: NATS connection options shared by the router and the edge.
//! - [`cli`]: command-line plumbing shared by both binaries (exit codes, logging, ready file).

pub mod cli;
pub mod nats;
pub mod reconcile;
pub mod rooms;
pub mod service;
pub mod stats;
pub mod time;

pub use rooms::{Command, Effect, MemberRecord, Rooms, RoomsConfig};
pub use stats::{HourStats, HourlyStats};
pub use time::UnixMillis;
