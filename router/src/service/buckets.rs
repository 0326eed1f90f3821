//! The JetStream buckets and streams the routers share: created by the first router, and brought up
//! to date by every router that starts (replica count, max age), so that a cluster that grew from one
//! NATS server to three, or an older version's lease bucket, does not keep a single point of failure.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tracing::{info, warn};

/// Why a bucket or stream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// JetStream refused or did not answer.
    #[error("JetStream {what} {name}")]
    JetStream {
        /// What was attempted.
        what: &'static str,
        /// The bucket or stream.
        name: String,
        /// The cause.
        #[source]
        source: async_nats::Error,
    },
}

fn failed(
    what: &'static str,
    name: &str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> BucketError {
    let name = name.to_string();
    move |source| BucketError::JetStream { what, name, source }
}

/// The KV bucket `bucket` with `max_age` (zero: keys never expire) and `replicas`, created if
/// missing and updated if it has fewer replicas or another max age.
pub async fn key_value(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, BucketError> {
    let store = match js.get_key_value(bucket).await {
        Ok(store) => store,
        Err(_) => {
            let created = js
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    history: 1,
                    max_age,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(store) => return Ok(store),
                // Another router created it meanwhile.
                Err(_) => js
                    .get_key_value(bucket)
                    .await
                    .map_err(|e| failed("get bucket", bucket)(Box::new(e)))?,
            }
        }
    };
    let stream_name = format!("KV_{bucket}");
    let mut existing = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| failed("get stream", &stream_name)(Box::new(e)))?;
    let config = existing
        .info()
        .await
        .map_err(|e| failed("stream info", &stream_name)(Box::new(e)))?
        .config
        .clone();
    update(js, config, replicas, Some(max_age)).await;
    Ok(store)
}

/// Raises the replica count to `replicas` (never lowers it: an operator may have raised it on
/// purpose) and sets `max_age` if given. Failing is loud but not fatal: the router still works with
/// the stream as it is.
async fn update(
    js: &jetstream::Context,
    mut config: stream::Config,
    replicas: usize,
    max_age: Option<Duration>,
) {
    let name = config.name.clone();
    let mut changed = Vec::new();
    if config.num_replicas < replicas {
        changed.push(format!("replicas {} -> {replicas}", config.num_replicas));
        config.num_replicas = replicas;
    }
    if let Some(max_age) = max_age
        && config.max_age != max_age
    {
        changed.push(format!("max age {:?} -> {max_age:?}", config.max_age));
        config.max_age = max_age;
    }
    if changed.is_empty() {
        return;
    }
    match js.update_stream(&config).await {
        Ok(_) => info!(stream = %name, changes = ?changed, "JetStream stream updated"),
        Err(e) => warn!(
            stream = %name,
            changes = ?changed,
            error = %e,
            "cannot update a JetStream stream: it stays as it is (check the NATS cluster's size \
             and JetStream limits)"
        ),
    }
}
