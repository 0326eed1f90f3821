//! Switchboard's router service: the process that serves rooms in a cluster.
//!
//! Rooms are hashed into slots; each router holds the leases of some slots and runs, for each, a task
//! that owns the slot's [`switchboard_rooms::Rooms`] (the pure state machine), applies the commands
//! the edges send over NATS, publishes the effects, reconciles with the edges after anything that may
//! have made views diverge, and stores peaks and hourly statistics in JetStream.
//!
//! # Layout
//! - [`service`]: the service: configuration, leases, liveness, slot tasks, balancing, storage, the
//!   admin port and metrics.
//!
//! The room state machine is `switchboard-rooms`; what the edge and router binaries share (NATS
//! options, command line, logging, signals, admin HTTP, clock, common metrics) is
//! `switchboard-runtime`.

pub mod service;
