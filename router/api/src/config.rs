//! The API's flags, shared by the edge (standalone) and the router (cluster).

use std::net::SocketAddr;
use std::path::PathBuf;

/// `--api-*` (docs/operations.md, "Control API").
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ApiArgs {
    /// Serve the control API (docs/api.md) on this address; off when absent. Needs
    /// --api-token-file.
    #[arg(long, env = "SWITCHBOARD_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,

    /// The operator's bearer tokens for the control API, one per line (at least 16 characters;
    /// blank lines and `#` comments skipped). Read at start; tokens are never taken on the command
    /// line.
    #[arg(long, env = "SWITCHBOARD_API_TOKEN_FILE", value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,

    /// Standalone: keep the tenants and keys created through the API in this JSON file (written
    /// atomically at each change, mode 0600). Without it they last until the process stops.
    #[arg(long, env = "SWITCHBOARD_API_STATE_FILE", value_name = "PATH")]
    pub api_state_file: Option<PathBuf>,
}

impl ApiArgs {
    /// Checks the flags against each other and reads the token file (so that a bad one stops the
    /// process before it binds).
    pub fn check(&self) -> Result<(), String> {
        match (&self.api_listen, &self.api_token_file) {
            (Some(_), None) => {
                return Err("--api-listen needs --api-token-file (the operator's tokens)".into());
            }
            (None, Some(_)) => return Err("--api-token-file is only read with --api-listen".into()),
            _ => {}
        }
        if self.api_listen.is_none() && self.api_state_file.is_some() {
            return Err("--api-state-file is only used with --api-listen".into());
        }
        if let Some(path) = &self.api_token_file {
            crate::auth::OperatorTokens::read(path)
                .map_err(|e| format!("--api-token-file: {}", switchboard_runtime::describe(&e)))?;
        }
        if let Some(path) = &self.api_state_file {
            crate::store::FileStore::open(path.clone())
                .map_err(|e| format!("--api-state-file: {}", switchboard_runtime::describe(&e)))?;
        }
        Ok(())
    }
}
