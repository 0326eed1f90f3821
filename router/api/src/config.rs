//! The API's flags, shared by the edge (standalone) and the router (cluster), and the webhook
//! engine's (`--webhook-ca-file`), which both run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchboard_runtime::config::parse_duration;
use switchboard_tenants::token::Rules;

use crate::webhooks::{CaFileError, Tls};

/// The tenants file and the checks of tenants' JWTs: read by a hosted edge (join tokens) and by a
/// router serving the control API (tenant-scope admin tokens), with the same flags and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct TenantArgs {
    /// The tenants file (TOML: tenants, their keys, limits and origins; docs/hosting.md). Re-read
    /// when its content changes; a file that does not check keeps the previous tenants in force.
    /// Its tenants are shown by the control API, never changed through it.
    #[arg(long, env = "SWITCHBOARD_TENANTS_FILE")]
    pub tenants_file: Option<PathBuf>,

    /// How often the tenants file is checked for changes. A change applies once two checks in a row
    /// read it (a file caught half-written is never applied), so a revoked key or a new tenant takes
    /// at most twice this to apply.
    #[arg(long, env = "SWITCHBOARD_TENANTS_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub tenants_reload_interval: Duration,

    /// Clock difference forgiven on a token's `exp` and `nbf`.
    #[arg(long, env = "SWITCHBOARD_TOKEN_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub token_leeway: Duration,

    /// The longest a token may still be valid for when it is used (`exp` minus now): longer-lived
    /// tokens are refused (`token lifetime too long`), so a leaked token is not a password.
    #[arg(long, env = "SWITCHBOARD_TOKEN_MAX_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub token_max_lifetime: Duration,
}

impl TenantArgs {
    /// The checks of a token's times.
    pub fn rules(&self) -> Rules {
        Rules {
            leeway: self.token_leeway.as_secs(),
            max_lifetime: self.token_max_lifetime.as_secs(),
        }
    }

    /// Checks the flags, and reads the tenants file (so that a bad one stops the process before it
    /// binds, naming the file).
    pub fn check(&self) -> Result<(), String> {
        if self.tenants_reload_interval < Duration::from_millis(100) {
            return Err("--tenants-reload-interval must be at least 100ms".into());
        }
        if self.token_max_lifetime < Duration::from_secs(1) {
            return Err("--token-max-lifetime must be at least 1s".into());
        }
        if let Some(path) = &self.tenants_file {
            switchboard_tenants::file::read(path)
                .map_err(|e| format!("--tenants-file {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

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
    /// atomically at each change, mode 0600). Without it they last until the process stops. (In a
    /// cluster they are kept in the replicated JetStream KV bucket `sb-tenants`.)
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

/// `--webhook-ca-file` (docs/webhooks.md, "HTTPS"): the trust of `https://` webhook receivers, on
/// the edge (standalone) and the routers (cluster) alike.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookArgs {
    /// Extra CA certificates (PEM files) that `https://` webhook receivers may chain to, besides the
    /// system's roots: for receivers behind a private CA. Repeatable or comma-separated. Read at
    /// start; a file that cannot be read or holds no certificate stops the process.
    #[arg(
        long = "webhook-ca-file",
        env = "SWITCHBOARD_WEBHOOK_CA_FILE",
        value_name = "PATH",
        value_delimiter = ','
    )]
    pub webhook_ca_files: Vec<PathBuf>,
}

impl WebhookArgs {
    /// Reads the CA files (so that a bad one stops the process before it binds, naming the file).
    pub fn check(&self) -> Result<(), String> {
        Tls::check_ca_files(&self.webhook_ca_files)
            .map_err(|e| format!("--webhook-ca-file: {}", switchboard_runtime::describe(&e)))
    }

    /// The TLS client configuration of the webhook engine: the system's roots and the CA files.
    pub fn tls(&self) -> Result<Tls, CaFileError> {
        Tls::with_ca_files(&self.webhook_ca_files)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        webhooks: WebhookArgs,
    }

    fn ca() -> String {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/webhook-test-ca.pem"
        )
        .to_owned()
    }

    #[test]
    fn ca_files_repeat_or_are_comma_separated() {
        let ca = ca();
        let flags = Flags::try_parse_from([
            "x",
            "--webhook-ca-file",
            &format!("{ca},{ca}"),
            "--webhook-ca-file",
            &ca,
        ])
        .unwrap();
        assert_eq!(flags.webhooks.webhook_ca_files.len(), 3);
        flags.webhooks.check().unwrap();
    }

    #[test]
    fn an_unreadable_ca_file_is_a_config_error_naming_it() {
        let flags =
            Flags::try_parse_from(["x", "--webhook-ca-file", "/nonexistent/webhook-ca.pem"])
                .unwrap();
        let err = flags.webhooks.check().unwrap_err();
        assert!(err.starts_with("--webhook-ca-file: "), "{err}");
        assert!(err.contains("/nonexistent/webhook-ca.pem"), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_config_error() {
        // The server's key: PEM, but no certificate in it.
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/webhook-test-server.key"
        );
        let flags = Flags::try_parse_from(["x", "--webhook-ca-file", key]).unwrap();
        let err = flags.webhooks.check().unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(err.contains("webhook-test-server.key"), "{err}");
    }
}
