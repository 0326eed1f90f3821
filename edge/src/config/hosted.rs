//! Settings of hosted mode: authentication, the tenants file, join tokens, origins, quotas.

use std::time::Duration;

use clap::builder::BoolishValueParser;

use super::ConfigError;
use switchboard_runtime::config::parse_duration;

/// How connections are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Open mode (palava's): anyone may connect and join any room.
    None,
    /// Hosted mode: every connection needs a join token signed by a tenant's key.
    Tokens,
}

/// Hosted mode's flags (docs/hosting.md).
#[derive(Debug, Clone, clap::Args)]
pub struct HostedArgs {
    /// `none`: open, as palava (the default). `tokens`: every connection needs a join token (a JWT
    /// in `?access_token=` or `Authorization: Bearer`) signed by a key of --tenants-file.
    #[arg(long, env = "SWITCHBOARD_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub auth: AuthMode,

    /// The tenants file and the checks of join tokens (shared with the routers' control API).
    #[command(flatten)]
    pub tenants: switchboard_api::config::TenantArgs,

    /// Open mode: an `Origin` allowed to connect (`scheme://host[:port]`), repeatable or
    /// comma-separated; none means any. Tenants have their own lists in the tenants file.
    #[arg(
        long = "allowed-origin",
        env = "SWITCHBOARD_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Open mode: whether an upgrade without an `Origin` header (a native client) is allowed.
    #[arg(
        long,
        env = "SWITCHBOARD_ALLOW_MISSING_ORIGIN",
        value_name = "BOOL",
        default_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub allow_missing_origin: bool,

    /// Hosted mode in a cluster: how often each edge tells the others its connections per tenant,
    /// and the length of a quota round (docs/quotas.md). Shorter: fresher counts, more messages.
    #[arg(long, env = "SWITCHBOARD_USAGE_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub usage_interval: Duration,

    /// Hosted mode in a cluster: most connections of one tenant an edge admits per round while
    /// other edges admit too. Bounds the overshoot of a tenant's connection limit to
    /// (edges - 1) x 2 x this; lower is tighter, higher admits storms faster (docs/quotas.md).
    #[arg(long, env = "SWITCHBOARD_QUOTA_ADMIT_BURST", default_value_t = 32)]
    pub quota_admit_burst: u64,

    /// Hosted mode: longest an upgrade waits for a round with room for it while its tenant is under
    /// its connection limit, before HTTP 429.
    #[arg(long, env = "SWITCHBOARD_QUOTA_WAIT", default_value = "3s", value_parser = parse_duration)]
    pub quota_wait: Duration,
}

impl HostedArgs {
    /// The quota and usage settings, with `pending_http` places for public HTTP connections not
    /// upgraded yet (`descriptors`).
    pub fn usage_settings(&self, pending_http: usize) -> crate::usage::Settings {
        crate::usage::Settings {
            interval: self.usage_interval,
            admit_burst: self.quota_admit_burst,
            quota_wait: self.quota_wait,
            max_waiting: (pending_http as u64 / 2).max(1),
        }
    }

    /// Checks the settings against each other. `api`: whether tenants may come from a control API
    /// (this edge's, standalone, or the routers', in a cluster) rather than only the tenants file.
    pub fn check(&self, api: bool) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        match (self.auth, &self.tenants.tenants_file) {
            (AuthMode::Tokens, None) if !api => {
                return fail(
                    "--auth tokens needs --tenants-file, --api-listen or --nats (a cluster's \
                     tenants come from the routers' control API): the tenants and the keys their \
                     tokens are signed with"
                        .into(),
                );
            }
            (AuthMode::None, Some(_)) => {
                return fail(
                    "--tenants-file is only read with --auth tokens (open mode has no tenants)"
                        .into(),
                );
            }
            _ => {}
        }
        if self.usage_interval < Duration::from_millis(10) {
            return fail("--usage-interval must be at least 10ms".into());
        }
        if self.quota_admit_burst == 0 {
            return fail("--quota-admit-burst must be at least 1".into());
        }
        if self.auth == AuthMode::Tokens && !self.allowed_origins.is_empty() {
            return fail(
                "--allowed-origin is for open mode; with --auth tokens each tenant's \
                 allowed_origins in the tenants file apply"
                    .into(),
            );
        }
        // Reads the tenants file too, so that a bad one stops the edge before it binds, with exit
        // code 64.
        self.tenants.check().map_err(ConfigError)?;
        for origin in &self.allowed_origins {
            switchboard_tenants::file::check_origin(origin).map_err(ConfigError)?;
        }
        Ok(())
    }
}
