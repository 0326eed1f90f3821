//! Connecting to NATS: the options both binaries share (`--nats` and its credentials), so that an
//! operator configures edges and routers the same way.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::watch;
use tracing::{info, warn};

/// NATS connection settings, flattened into each binary's configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated (nats://host:port); the client fails over between them. (An
    /// edge given --nats runs as a node of a cluster; a router needs it.)
    #[arg(long = "nats", env = "SWITCHBOARD_NATS", value_delimiter = ',')]
    pub urls: Vec<String>,

    /// Without --nats: find the NATS servers as the passing instances of this Consul service
    /// (needs --consul-addr). Resolved once at start; the client then learns the rest of the NATS
    /// cluster from the servers themselves.
    #[arg(long, env = "SWITCHBOARD_NATS_CONSUL_SERVICE", value_name = "NAME")]
    pub nats_consul_service: Option<String>,

    /// NATS user (with --nats-password).
    #[arg(long, env = "SWITCHBOARD_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,

    /// NATS password (with --nats-user).
    #[arg(
        long,
        env = "SWITCHBOARD_NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub nats_password: Option<String>,

    /// NATS token.
    #[arg(long, env = "SWITCHBOARD_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,

    /// NATS credentials file (JWT and NKey seed, as issued by an operator).
    #[arg(long, env = "SWITCHBOARD_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,

    /// CA certificate (PEM) to verify the NATS servers' TLS certificates; implies TLS.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
}

/// Why a connection to NATS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials file could not be read or parsed.
    #[error("cannot use the NATS credentials file")]
    Credentials(#[source] std::io::Error),
    /// A server URL is not a NATS URL.
    #[error("invalid NATS server URL")]
    Url(#[source] std::io::Error),
    /// The client refused the options (TLS set-up, for instance).
    #[error("cannot connect to NATS")]
    Connect(#[source] async_nats::ConnectError),
}

/// Connection state, observed through the client's event callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connected to a server.
    Up,
    /// Connection lost; the client is reconnecting.
    Down,
}

impl NatsArgs {
    /// Whether the process is a node of a cluster: servers were given, or are to be found through
    /// Consul (`--nats-consul-service`, resolved by [`crate::consul::discovery::resolve`] before
    /// connecting).
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty() || self.nats_consul_service.is_some()
    }

    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<(), String> {
        for url in &self.urls {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                return Err(format!(
                    "--nats: {url:?} is not a NATS URL (nats://host:port)"
                ));
            }
        }
        for (flag, path) in [
            ("--nats-creds", &self.nats_creds),
            ("--nats-tls-ca", &self.nats_tls_ca),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(format!("{flag}: {} is not a readable file", path.display()));
            }
        }
        if self.nats_token.is_some() && (self.nats_user.is_some() || self.nats_creds.is_some()) {
            return Err("--nats-token cannot be combined with --nats-user or --nats-creds".into());
        }
        Ok(())
    }

    /// Connects (retrying until a server answers) and reports the link state on the returned watch.
    /// `name` identifies the process in the servers' monitoring.
    pub async fn connect(
        &self,
        name: &str,
    ) -> Result<(Client, watch::Receiver<Link>), ConnectError> {
        let (client, link, _) = self.connect_watching(name).await?;
        Ok((client, link))
    }

    /// [`Self::connect`], also counting the times the server dropped messages for this client (a
    /// slow consumer): whoever lost events that way must resynchronise.
    pub async fn connect_watching(
        &self,
        name: &str,
    ) -> Result<(Client, watch::Receiver<Link>, watch::Receiver<u64>), ConnectError> {
        let (link_tx, link_rx) = watch::channel(Link::Down);
        let (slow_tx, slow_rx) = watch::channel(0u64);
        let initial = link_tx.clone();
        // The callback names the server it lost or reached; the client exists only after connect.
        let this: Arc<OnceLock<Client>> = Arc::default();
        let server = {
            let this = this.clone();
            move || {
                this.get()
                    .map(|c| {
                        let info = c.server_info();
                        format!("nats://{}:{}", info.host, info.port)
                    })
                    .unwrap_or_else(|| "-".to_string())
            }
        };
        let mut options = ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            // Detects a dead server fast enough to meet the failover bounds (a few seconds).
            .ping_interval(Duration::from_secs(1))
            .request_timeout(Some(Duration::from_secs(2)))
            // Room events and relays are small; a big buffer only delays slow-consumer detection.
            .subscription_capacity(64 * 1024)
            .event_callback(move |event| {
                let link_tx = link_tx.clone();
                let slow_tx = slow_tx.clone();
                let server = server();
                async move {
                    match event {
                        Event::Connected => {
                            info!(server, "NATS connected");
                            link_tx.send_replace(Link::Up);
                        }
                        Event::Disconnected => {
                            warn!(server, "NATS disconnected; reconnecting");
                            link_tx.send_replace(Link::Down);
                        }
                        Event::SlowConsumer(sid) => {
                            warn!(
                                server,
                                subscription = sid,
                                "NATS dropped messages for us (slow consumer)"
                            );
                            slow_tx.send_modify(|n| *n += 1);
                        }
                        Event::ServerError(e) => warn!(server, error = %e, "NATS server error"),
                        Event::ClientError(e) => warn!(server, error = %e, "NATS client error"),
                        other => info!(server, event = %other, "NATS event"),
                    }
                }
            });
        if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.nats_token {
            options = options.token(token.clone());
        }
        if let Some(creds) = &self.nats_creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(ConnectError::Credentials)?;
        }
        if let Some(ca) = &self.nats_tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let servers = self
            .urls
            .iter()
            .map(|url| url.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConnectError::Url)?;
        let client = options
            .connect(servers)
            .await
            .map_err(ConnectError::Connect)?;
        let _ = this.set(client.clone());
        // The callback may have fired before anyone looked; the state says where we are now.
        if client.connection_state() == async_nats::connection::State::Connected {
            initial.send_replace(Link::Up);
        }
        Ok((client, link_rx, slow_rx))
    }
}
