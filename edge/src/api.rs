//! The control API of a standalone edge (docs/api.md): tenants and keys kept in `--api-state-file`
//! and served by the directory as its source "api"; usage, rooms and members from the in-process
//! room service.

use std::sync::Arc;

use switchboard_api::auth::OperatorTokens;
use switchboard_api::service::{BoxFuture, RoomService, ServiceError};
use switchboard_api::store::{FileStore, MemoryStore, Store};
use switchboard_api::usage::UsageSource;
use switchboard_api::{Api, Tenants};
use switchboard_rooms::HourlyStats;
use switchboard_tenants::Directory;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::bus::Bus;
use crate::context::Context;
use crate::{Config, RunError};

/// The in-process room service's hourly statistics.
struct LocalUsage(Bus);

impl UsageSource for LocalUsage {
    fn hourly(&self) -> BoxFuture<'_, Result<HourlyStats, ServiceError>> {
        Box::pin(async move {
            self.0
                .stats()
                .await
                .map(|snapshot| snapshot.hourly)
                .map_err(|_| ServiceError::Unavailable)
        })
    }
}

/// Loads the API's tenants into `directory` and starts serving on `listener` until the edge stops;
/// `rooms` is the standalone edge's room service (`None` in a cluster).
pub async fn start(
    config: &Config,
    listener: std::net::TcpListener,
    directory: Directory,
    rooms: Option<Arc<dyn RoomService>>,
    ctx: &Arc<Context>,
) -> Result<JoinHandle<()>, RunError> {
    let fail =
        |e: &(dyn std::error::Error + 'static)| RunError::Api(switchboard_runtime::describe(e));
    let operators = match &config.api.api_token_file {
        Some(path) => OperatorTokens::read(path).map_err(|e| fail(&e))?,
        None => OperatorTokens::default(),
    };
    let (store, records): (Arc<dyn Store>, _) = match &config.api.api_state_file {
        Some(path) => {
            let (store, records) = FileStore::open(path.clone()).map_err(|e| fail(&e))?;
            info!(path = %path.display(), tenants = records.len(), "control API: state file loaded");
            (Arc::new(store), records)
        }
        None => {
            warn!(
                "control API without --api-state-file: tenants created through it last until \
                 the edge stops"
            );
            (Arc::new(MemoryStore), Default::default())
        }
    };
    let tenants = Tenants::new(directory, store, records).map_err(|e| fail(&e))?;
    let api = Arc::new(Api {
        tenants,
        operators,
        rules: config.hosted.tenants.rules(),
        usage: Some(Arc::new(LocalUsage(ctx.bus.clone()))),
        rooms,
    });
    let listener = tokio::net::TcpListener::from_std(listener)?;
    Ok(tokio::spawn(switchboard_api::serve(
        listener,
        api,
        config.io_timeout,
        ctx.lifecycle.stopped.clone(),
    )))
}
