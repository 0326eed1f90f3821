//! One slot's webhook worker: a durable pull consumer (`wh-<slot>`) on `SB_WEBHOOKS` feeding the
//! delivery engine, which keeps the per-room rule (one event in flight per room, later events held
//! back in order) and hands each event back once delivered or given up on, to be acknowledged.
//!
//! At start the consumer is deleted and created again: a consumer keeps redelivering
//! unacknowledged messages only after their ack wait, so a new owner re-creating it gets every
//! unacknowledged event at once, in stream order, after a takeover. While the worker lives, the
//! events it holds are kept from redelivery by progress acknowledgements; a redelivery that comes
//! anyway (a lost progress ack) is recognised by its stream sequence and not queued twice.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use switchboard_api::webhooks::{Limits, StoredEvent, Webhooks};
use switchboard_proto::subject;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{ClusterWebhooks, MALFORMED};

/// Pause before trying to consume again after the consumer could not be set up or went away.
const RETRY: Duration = Duration::from_secs(1);

/// A running worker.
pub struct Worker {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Why a worker stopped consuming for a while.
#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("cannot find the webhook stream")]
    Stream(#[source] async_nats::jetstream::context::GetStreamError),
    #[error("cannot create the slot's webhook consumer")]
    Consumer(#[source] async_nats::jetstream::stream::ConsumerError),
    #[error("cannot pull from the slot's webhook consumer")]
    Messages(#[source] async_nats::jetstream::consumer::StreamError),
    #[error("the slot's webhook consumer failed")]
    Pull(#[source] async_nats::jetstream::consumer::pull::MessagesError),
    #[error("the slot's webhook consumer ended")]
    Ended,
}

impl Worker {
    /// Starts the worker of `slot`.
    pub(super) fn start(webhooks: ClusterWebhooks, slot: u32) -> Worker {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(webhooks, slot, stop.clone()));
        Worker { stop, task }
    }

    /// Stops delivering: attempts in flight are abandoned, events not acknowledged stay in the
    /// stream for the slot's next owner (or this router, when it serves the slot again).
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            warn!(error = %e, "webhook worker failed");
        }
    }
}

async fn run(webhooks: ClusterWebhooks, slot: u32, stop: CancellationToken) {
    loop {
        // Stopping must not wait for JetStream requests that may hang while it is down (the slot's
        // hand-over waits for this): the engine's token is a child of `stop`, so it ends too.
        let consumed = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            consumed = consume(&webhooks, slot, &stop) => consumed,
        };
        match consumed {
            Ok(()) => return,
            Err(e) => {
                warn!(slot, error = %switchboard_runtime::describe(&e), "webhook worker: retrying in a second");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// (Re)creates the slot's consumer and delivers from it until `stop`.
async fn consume(
    webhooks: &ClusterWebhooks,
    slot: u32,
    stop: &CancellationToken,
) -> Result<(), ConsumeError> {
    let inner = &webhooks.inner;
    let config = &inner.config;
    let stream = inner
        .js
        .get_stream(subject::WEBHOOKS_STREAM)
        .await
        .map_err(ConsumeError::Stream)?;
    let name = subject::webhooks_consumer(slot);
    // Absent is fine; any other failure shows at the creation below.
    let _ = stream.delete_consumer(&name).await;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            filter_subject: subject::webhooks(slot),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: config.ack_wait,
            max_ack_pending: i64::try_from(config.max_ack_pending).unwrap_or(i64::MAX),
            ..Default::default()
        })
        .await
        .map_err(ConsumeError::Consumer)?;
    let mut messages = consumer.messages().await.map_err(ConsumeError::Messages)?;

    // Every token comes back at most once, and at most `max_ack_pending` messages are held, so
    // this channel never fills: `try_send` never drops one.
    let (done_tx, mut done_rx) = mpsc::channel::<u64>(config.max_ack_pending.max(1));
    let mut engine_config = config.engine.clone();
    // The consumer bounds what is held; a refusal by the outbox would break a room's order.
    engine_config.limits = Limits {
        per_tenant: config.max_ack_pending,
        global: config.max_ack_pending,
    };
    let engine = Webhooks::<u64>::with_done(
        engine_config,
        inner.directory.clone(),
        inner.metrics.clone(),
        move |seq| {
            let _ = done_tx.try_send(seq);
        },
    );
    let engine_stop = stop.child_token();
    let engine_task = tokio::spawn({
        let (engine, engine_stop) = (engine.clone(), engine_stop.clone());
        async move { engine.run(engine_stop).await }
    });
    debug!(slot, "webhook worker delivering");

    // The messages the engine holds, by stream sequence, until it hands them back.
    let mut held: HashMap<u64, jetstream::Message> = HashMap::new();
    let mut progress = tokio::time::interval(config.ack_wait / 3);
    let result = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break Ok(()),
            Some(seq) = done_rx.recv() => {
                if let Some(message) = held.remove(&seq)
                    && let Err(e) = message.ack().await
                {
                    // Redelivered later (at least once): a duplicate, not a loss.
                    debug!(slot, seq, error = %e, "cannot acknowledge a webhook event");
                }
            }
            _ = progress.tick() => {
                for message in held.values() {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
            next = messages.next() => match next {
                None => break Err(ConsumeError::Ended),
                Some(Err(e)) if matches!(e.kind(), MessagesErrorKind::MissingHeartbeat) => {
                    // The client re-issues its pull requests itself.
                    debug!(slot, error = %e, "webhook consumer: missed heartbeat");
                }
                Some(Err(e)) => break Err(ConsumeError::Pull(e)),
                Some(Ok(message)) => take(webhooks, slot, &engine, &mut held, message).await,
            },
        }
    };
    engine_stop.cancel();
    let _ = engine_task.await;
    // What is still held stays unacknowledged: the next consumer (re)delivers it.
    result
}

/// Hands one message to the engine (or acknowledges it at once if it is no event).
async fn take(
    webhooks: &ClusterWebhooks,
    slot: u32,
    engine: &Webhooks<u64>,
    held: &mut HashMap<u64, jetstream::Message>,
    message: jetstream::Message,
) {
    let seq = match message.info() {
        Ok(info) => info.stream_sequence,
        Err(e) => {
            debug!(slot, error = %e, "webhook consumer: message without JetStream metadata");
            return;
        }
    };
    if let Some(old) = held.get_mut(&seq) {
        // Redelivered while queued: the engine has it already; acknowledge the latest delivery.
        *old = message;
        return;
    }
    let stored = match serde_json::from_slice::<StoredEvent>(&message.payload) {
        Ok(stored) => stored,
        Err(e) => {
            webhooks
                .inner
                .metrics
                .dropped
                .with_label_values(&[MALFORMED])
                .inc();
            warn!(slot, seq, error = %e, "webhook stream: a message that is no event; removed");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let now_ms = switchboard_runtime::clock::unix_millis();
    let age = Duration::from_millis(now_ms.saturating_sub(stored.event.occurred_at_ms));
    match engine.push(stored.event, stored.id, seq, seq, age) {
        Ok(_) => {
            held.insert(seq, message);
        }
        Err((error, _)) => {
            // Not expected (the outbox's bounds are the consumer's): try it again later.
            debug!(slot, seq, error = %error, "webhook event refused by the outbox");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}
