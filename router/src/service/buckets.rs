//! The JetStream buckets and streams the routers share: created by the first router, and brought up
//! to date by every router that starts (replica count, max age), so that a cluster that grew from one
//! NATS server to three, or an older version's lease bucket, does not keep a single point of failure.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use switchboard_api::webhooks::Backoff;
use tracing::{info, warn};

/// The pauses of [`until_set_up`] between failed attempts: 100 ms doubling up to 5 s (how often a
/// lasting refusal is logged), jittered so that routers started together do not retry in step.
const RETRY: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

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

/// Runs `attempt` until it succeeds, pausing between failures (about 100 ms doubling to 5 s, with
/// jitter) and logging each one with its cause.
///
/// JetStream refuses to create or look up streams while a NATS cluster has no meta leader (servers
/// started together: a Helm install, a whole cluster restarted), and has been seen to refuse a
/// creation once right after a fresh cluster looked healthy from outside (CI, on a loaded machine).
/// A router started then waits for JetStream, not ready meanwhile, rather than exiting and counting
/// on a supervisor to start it again. A lasting refusal (JetStream disabled
/// or not permitted for the account, no storage left) keeps the router not ready and is logged every
/// 5 s with the server's reason.
pub async fn until_set_up<T, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BucketError>>,
{
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(done) => {
                if failures > 0 {
                    info!(failures, "JetStream storage set up after failed attempts");
                }
                return done;
            }
            Err(e) => {
                failures += 1;
                let pause = RETRY.delay(failures, rand::random());
                warn!(
                    error = %switchboard_runtime::describe(&e),
                    retry_in = ?pause,
                    "cannot set up JetStream storage yet (a NATS cluster still forming, or JetStream \
                     disabled, not permitted or out of storage): not ready, retrying"
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
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
                // Another router created it meanwhile; if not, the refusal of the creation says
                // why (the lookup would only say that the bucket is missing).
                Err(refused) => js
                    .get_key_value(bucket)
                    .await
                    .map_err(|_| failed("create bucket", bucket)(Box::new(refused)))?,
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

/// The stream's bounds for a cluster's webhook events (docs/webhooks.md, "Cluster").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookStreamLimits {
    /// Events older than this are removed by the server: the delivery engine's retry time.
    pub max_age: Duration,
    /// Most bytes stored; a router cannot store an event beyond it.
    pub max_bytes: i64,
    /// Most events stored; a router cannot store an event beyond it.
    pub max_msgs: i64,
}

/// How long the stream remembers a message id: a router's retried publish of the same event
/// within it is stored once.
pub const WEBHOOKS_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The webhook stream (`SB_WEBHOOKS`, subjects `sb.wh.<slot>`), created if missing, its bounds and
/// replicas brought up to date if not. Work-queue retention: an acknowledged event is removed. A
/// full stream refuses new events (rather than dropping stored ones unseen): the producer counts
/// them.
pub async fn webhooks_stream(
    js: &jetstream::Context,
    limits: WebhookStreamLimits,
    replicas: usize,
) -> Result<(), BucketError> {
    let name = switchboard_proto::subject::WEBHOOKS_STREAM;
    let wanted = stream::Config {
        name: name.to_string(),
        subjects: vec![switchboard_proto::subject::WEBHOOKS_SUBJECTS.to_string()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        duplicate_window: WEBHOOKS_DUPLICATE_WINDOW,
        max_age: limits.max_age,
        max_bytes: limits.max_bytes,
        max_messages: limits.max_msgs,
        num_replicas: replicas,
        ..Default::default()
    };
    let mut existing = match js.get_stream(name).await {
        Ok(existing) => existing,
        Err(_) => match js.create_stream(wanted.clone()).await {
            Ok(_) => return Ok(()),
            // Another router created it meanwhile; if not, the refusal says why.
            Err(refused) => js
                .get_stream(name)
                .await
                .map_err(|_| failed("create stream", name)(Box::new(refused)))?,
        },
    };
    let mut config = existing
        .info()
        .await
        .map_err(|e| failed("stream info", name)(Box::new(e)))?
        .config
        .clone();
    let bounds = (
        config.max_bytes,
        config.max_messages,
        config.duplicate_window,
    );
    if bounds
        != (
            wanted.max_bytes,
            wanted.max_messages,
            wanted.duplicate_window,
        )
    {
        info!(
            stream = %name,
            max_bytes = wanted.max_bytes,
            max_msgs = wanted.max_messages,
            "webhook stream bounds changed"
        );
        config.max_bytes = wanted.max_bytes;
        config.max_messages = wanted.max_messages;
        config.duplicate_window = wanted.duplicate_window;
        if let Err(e) = js.update_stream(&config).await {
            warn!(stream = %name, error = %e, "cannot update the webhook stream's bounds");
        }
    }
    update(js, config, replicas, Some(limits.max_age)).await;
    Ok(())
}
