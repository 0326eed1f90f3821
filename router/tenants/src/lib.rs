//! Switchboard's hosted mode: who may connect, as whom, with which limits.
//!
//! # Layout
//! - [`secret`]: [`Secret`], a string that never shows itself.
//! - [`turn`]: coturn's REST-API credentials (`use-auth-secret`).

pub mod secret;
pub mod turn;

pub use secret::Secret;
