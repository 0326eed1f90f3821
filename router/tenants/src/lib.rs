//! Switchboard's hosted mode: who may connect, as whom, with which limits.
//!
//! # Layout
//! - [`tenant`]: [`Tenant`], its [`Key`]s, [`Limits`] and [`Origins`].
//! - [`file`](mod@file): the tenants file (TOML), checked as a whole.
//! - [`directory`]: [`Directory`], the tenants in force, merged from their sources.
//! - [`watch`]: the tenants file as a source, re-read when it changes.
//! - [`token`]: join tokens (JWT): verify and mint.
//! - [`secret`]: [`Secret`], a string that never shows itself.
//! - [`turn`]: coturn's REST-API credentials (`use-auth-secret`): [`TurnSettings`] and minting.
//! - [`ice_url`]: STUN and TURN URLs as browsers accept them.
//! - [`webhook`]: a tenant's [`WebhookSettings`] (endpoint and signing secret), checked.

pub mod directory;
pub mod file;
pub mod ice_url;
pub mod secret;
pub mod tenant;
pub mod token;
pub mod turn;
pub mod watch;
pub mod webhook;

pub use directory::{Directory, Snapshot};
pub use secret::Secret;
pub use tenant::{Key, Limits, OriginRefused, Origins, Tenant};
pub use turn::{TurnCredentials, TurnSettings};
pub use webhook::WebhookSettings;
