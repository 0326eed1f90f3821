//! The tenants a router knows, and the control API it serves with `--api-listen` (docs/api.md).
//!
//! Every router follows the tenants file (`--tenants-file`, if given) and the cluster's tenants
//! bucket (`sb-tenants`, written by the API of any router) into one directory: the webhooks of its
//! slots' rooms and the API's tenant scope are looked up there. The API's usage comes from the stored
//! hourly statistics (every router reads the same totals), its rooms from the room service over NATS
//! (any router answers for any slot), so every router answers every route alike and a client may use
//! any of them, before and after a failover.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use switchboard_api::auth::OperatorTokens;
use switchboard_api::cluster::Bucket;
use switchboard_api::record::Records;
use switchboard_api::service::{BoxFuture, RoomService, ServiceError};
use switchboard_api::usage::UsageSource;
use switchboard_api::{Api, Tenants};
use switchboard_rooms::HourlyStats;
use switchboard_tenants::Directory;
use switchboard_tenants::watch::{FileSource, Reload};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::Config;
use super::store::Store;

/// Longest an API connection may sit idle between requests, or take to send one.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The stored hourly statistics, the same at every router.
struct StoredUsage(Store);

impl UsageSource for StoredUsage {
    fn hourly(&self) -> BoxFuture<'_, Result<HourlyStats, ServiceError>> {
        Box::pin(async move { Ok(self.0.hourly()) })
    }
}

/// Why the tenants could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// The tenants file does not check (it did at validation: it changed since).
    #[error("tenants file")]
    File(#[from] switchboard_tenants::watch::LoadError),
    /// The operator's token file could not be read (it did at validation: it changed since).
    #[error("--api-token-file")]
    Tokens(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The API's tenants could not be set up.
    #[error("control API: {0}")]
    Api(String),
}

/// The tenants this router knows, as followed.
pub struct Tenancy {
    /// The tenants in force: the file's and the bucket's.
    pub directory: Directory,
    /// The API's view of them (it writes through it).
    pub tenants: Tenants,
    /// The bucket as followed.
    pub bucket: Bucket,
    tasks: Vec<JoinHandle<()>>,
}

impl Tenancy {
    /// Loads the tenants file and starts following it and the tenants bucket `kv` until `stop`.
    pub fn start(
        config: &Config,
        js: jetstream::Context,
        kv: kv::Store,
        stop: &CancellationToken,
    ) -> Result<Tenancy, TenantsError> {
        let directory = Directory::new();
        let mut tasks = Vec::new();
        if let Some(path) = &config.tenants.tenants_file {
            let (source, count) = FileSource::load(path.clone(), directory.clone())?;
            info!(path = %path.display(), tenants = count, "tenants file loaded");
            tasks.push(tokio::spawn(source.follow(
                config.tenants.tenants_reload_interval,
                stop.clone(),
                report_reload,
            )));
        }
        let bucket = Bucket::new(js);
        let store = Arc::new(bucket.store(kv));
        // Nothing of the bucket is known yet: the follower below brings it.
        let tenants = Tenants::new(directory.clone(), store, Records::new())
            .map_err(|e| TenantsError::Api(e.to_string()))?;
        tasks.push(tokio::spawn(bucket.clone().follow(stop.clone())));
        tasks.push(tokio::spawn({
            let (bucket, tenants, stop) = (bucket.clone(), tenants.clone(), stop.clone());
            async move {
                bucket
                    .apply_changes(stop, |records| tenants.follow(records))
                    .await
            }
        }));
        Ok(Tenancy {
            directory,
            tenants,
            bucket,
            tasks,
        })
    }

    /// Serves the control API on `listener` until `stop`, once the tenants bucket has been read
    /// (before that, a tenant created a moment ago elsewhere would look unknown).
    pub fn serve(
        &mut self,
        config: &Config,
        listener: std::net::TcpListener,
        store: Store,
        rooms: Option<Arc<dyn RoomService>>,
        stop: &CancellationToken,
    ) -> Result<(), TenantsError> {
        let operators = match &config.api.api_token_file {
            Some(path) => {
                OperatorTokens::read(path).map_err(|e| TenantsError::Tokens(Box::new(e)))?
            }
            None => OperatorTokens::default(),
        };
        if rooms.is_none() {
            warn!(
                "control API without --room-key-secret: its room routes answer 503 (the routers \
                 need the edges' secret to find a room by its name)"
            );
        }
        let api = Arc::new(Api {
            tenants: self.tenants.clone(),
            operators,
            rules: config.tenants.rules(),
            usage: Some(Arc::new(StoredUsage(store))),
            rooms,
        });
        let (bucket, stop) = (self.bucket.clone(), stop.clone());
        self.tasks.push(tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => return,
                () = bucket.caught_up() => {}
            }
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => switchboard_api::serve(listener, api, IO_TIMEOUT, stop).await,
                Err(e) => warn!(error = %e, "control API: cannot use its listener"),
            }
        }));
        Ok(())
    }

    /// Waits for the followers and the API server, once `stop` was cancelled.
    pub async fn finish(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Logs a change of the tenants file.
fn report_reload(reload: &Reload) {
    match reload {
        Reload::Loaded(count) => info!(tenants = count, "tenants file reloaded"),
        Reload::Refused(error) => warn!(
            error = %error,
            "tenants file changed but not reloaded: the previous tenants stay in force"
        ),
    }
}
