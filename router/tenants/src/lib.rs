//! Switchboard's hosted mode: who may connect, as whom, with which limits.
//!
//! # Layout
//! - [`turn`]: coturn's REST-API credentials (`use-auth-secret`).
#![allow(missing_docs)]

pub mod turn;
