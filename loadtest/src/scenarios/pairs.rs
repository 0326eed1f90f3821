//! What the reference scenarios `bare` and `nats-rtt` share: pairs of endpoints (connection 2i
//! with 2i+1) exchanging messages at an open-loop total rate, measured like `call`'s message phase.
//!
//! Every endpoint first sends a `hello` carrying its number and waits for the `hello` it expects
//! (its pair's through a relay, its own through NATS, which proves its subscription is in place),
//! so that a relay pairing connections differently is reported, not mistaken for loss. Then each
//! endpoint sends messages to its pair on its own [`Schedule`]; the rates add up to `--rate` and
//! the phases are spread like `call`'s. A message is the JSON text of a forwarded `call` message
//! (`event`, a 36-character `sender_id`, `seq`, `sent_us`: the intended send instant in µs since the
//! run's start), so the bytes on the wire are comparable; the receiver measures the latency from
//! the intended instant and checks the order.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Phase, SenderResult, Setup};
use crate::progress::Stage;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::stats::{Counters, Errors};

/// One endpoint's way to its pair.
pub trait Link: Send + 'static {
    /// Sends `message` to the pair.
    fn send(&mut self, message: &Value) -> impl Future<Output = Result<()>> + Send;
    /// Sends the `hello` where [`Link`]'s receiving side expects it (see [`run`]'s `hello_from`).
    fn send_hello(&mut self, message: &Value) -> impl Future<Output = Result<()>> + Send;
    /// The next message as JSON; `Ok(None)` once the link has ended. Cancel safe.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Value>>> + Send;
    /// Closes the link politely.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A stand-in for a server-assigned connection id: 36 characters, like a forwarded message's
/// `sender_id`.
pub fn sender_id(number: usize) -> String {
    format!("00000000-0000-4000-8000-{number:012x}")
}

/// What the scenario passes to [`run`].
pub struct Pairs<L> {
    /// The scenario's name in the report.
    pub scenario: &'static str,
    /// The endpoints that connected, by number (2i and 2i+1 are a pair); `None` for a failed one.
    pub links: Vec<Option<L>>,
    /// Endpoint number -> the number whose `hello` it must receive.
    pub hello_from: fn(usize) -> usize,
    /// Bound on waiting for the `hello`s.
    pub ready_timeout: Duration,
    /// Total rate, messages per second.
    pub rate: f64,
    /// Length of the measured phase.
    pub duration: Duration,
    /// Connect failures so far.
    pub errors: Errors,
}

/// Runs the hello round and the measured phase; returns the report (`relay` latency, counts).
pub async fn run<L: Link>(setup: &Setup, pairs: Pairs<L>) -> Result<Report> {
    let Pairs {
        scenario,
        links,
        hello_from,
        ready_timeout,
        rate,
        duration,
        mut errors,
    } = pairs;
    let total = links.len();
    let per_endpoint = rate / total.max(1) as f64;
    let base = Instant::now();
    let cancel = CancellationToken::new();
    let (phase_tx, phase_rx) = watch::channel(None::<Phase>);
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(total.max(1));
    let (done_tx, mut done_rx) = mpsc::channel::<()>(total.max(1));
    let mut tasks = Vec::new();
    let present: Vec<bool> = links.iter().map(Option::is_some).collect();
    for (number, link) in links.into_iter().enumerate() {
        // Half a pair has nobody to talk to: it is left out (its pair's failure is counted).
        let Some(link) = link.filter(|_| present.get(number ^ 1) == Some(&true)) else {
            continue;
        };
        let endpoint = Endpoint {
            link,
            number,
            hello_from: hello_from(number),
            id: sender_id(number),
            rate: per_endpoint,
            total,
            base,
            counters: setup.counters.clone(),
            result: SenderResult::default(),
            last_seq: None,
            schedule: None,
            finished: false,
        };
        tasks.push(tokio::spawn(endpoint_task(
            endpoint,
            phase_rx.clone(),
            Signals {
                ready: ready_tx.clone(),
                done: done_tx.clone(),
            },
            cancel.clone(),
        )));
    }
    drop(ready_tx);
    drop(done_tx);

    setup.progress.stage(Stage::Waiting("pairing"));
    let mut ready = 0;
    let deadline = Instant::now() + ready_timeout;
    while ready < tasks.len() {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            Ok(None) | Err(_) => break,
        }
    }

    let (relay, sent, phase_errors) = setup
        .measured_phase(
            duration,
            &phase_tx,
            tasks,
            &mut done_rx,
            &cancel,
            "no hello from the pair (pairing incomplete)",
        )
        .await;
    errors.merge(&phase_errors);
    let (_, expected, received, _) = setup.counters.snapshot();
    let seconds = duration.as_secs_f64();
    let mut report = Report::new(
        scenario,
        total as u64,
        seconds,
        (sent, expected, received),
        &errors,
        total as u64 + sent,
    );
    report.latencies.insert("relay".into(), relay.summary());
    Ok(report)
}

struct Endpoint<L> {
    link: L,
    number: usize,
    hello_from: usize,
    id: String,
    rate: f64,
    total: usize,
    base: Instant,
    counters: Counters,
    result: SenderResult,
    last_seq: Option<u64>,
    schedule: Option<Schedule>,
    /// Whether the run was told this endpoint sent its last message (or never will).
    finished: bool,
}

impl<L: Link> Endpoint<L> {
    fn error(&mut self, text: impl Into<String>) {
        self.counters.error();
        self.result.errors.add(text);
    }

    fn handle(&mut self, message: &Value) {
        match message["event"].as_str().unwrap_or_default() {
            "hello" => {
                let from = message["from"].as_u64();
                if from == Some(self.hello_from as u64) {
                    self.result.ready = true;
                } else {
                    self.error(
                        "hello from the wrong connection (is another client using the server?)",
                    );
                }
            }
            "message" => self.on_message(message),
            _ => self.error("unexpected message"),
        }
    }

    fn on_message(&mut self, message: &Value) {
        let (Some(seq), Some(sent_us)) = (message["seq"].as_u64(), message["sent_us"].as_u64())
        else {
            self.error("malformed message");
            return;
        };
        self.counters.received();
        let intended = self.base + Duration::from_micros(sent_us);
        self.result
            .relay
            .record(Instant::now().saturating_duration_since(intended));
        if self.last_seq.replace(seq).is_some_and(|last| last >= seq) {
            self.error("message out of order");
        }
    }

    /// Sends the next scheduled message, stamped with its intended instant.
    async fn send_scheduled(&mut self) -> Result<()> {
        let Some((seq, at)) = self.schedule.as_ref().and_then(Schedule::peek) else {
            return Ok(());
        };
        if let Some(schedule) = self.schedule.as_mut() {
            schedule.advance();
        }
        let sent_us =
            u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX);
        let message =
            json!({"event": "message", "sender_id": self.id, "seq": seq, "sent_us": sent_us});
        self.link.send(&message).await?;
        self.result.sent += 1;
        self.counters.sent(1);
        Ok(())
    }
}

/// How an endpoint tells the run it got its `hello`, and that it sent its last message.
struct Signals {
    ready: mpsc::Sender<()>,
    done: mpsc::Sender<()>,
}

async fn endpoint_task<L: Link>(
    mut endpoint: Endpoint<L>,
    mut phase: watch::Receiver<Option<Phase>>,
    signals: Signals,
    cancel: CancellationToken,
) -> SenderResult {
    endpoint.counters.connected();
    if let Err(e) = drive(&mut endpoint, &mut phase, &signals, &cancel).await {
        endpoint.error(e.to_string());
    }
    if !endpoint.finished {
        let _ = signals.done.send(()).await;
    }
    endpoint.counters.disconnected();
    let Endpoint { link, result, .. } = endpoint;
    link.close().await;
    result
}

async fn drive<L: Link>(
    endpoint: &mut Endpoint<L>,
    phase: &mut watch::Receiver<Option<Phase>>,
    signals: &Signals,
    cancel: &CancellationToken,
) -> Result<()> {
    let hello = json!({"event": "hello", "from": endpoint.number});
    endpoint.link.send_hello(&hello).await?;
    let mut reported = false;
    let mut phase_open = true;
    loop {
        if !reported && endpoint.result.ready {
            reported = true;
            let _ = signals.ready.send(()).await;
        }
        let next_send = endpoint.schedule.as_ref().and_then(Schedule::peek);
        if !endpoint.finished && endpoint.schedule.is_some() && next_send.is_none() {
            endpoint.finished = true;
            let _ = signals.done.send(()).await;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = phase.changed(), if phase_open && endpoint.schedule.is_none() => {
                if changed.is_err() {
                    phase_open = false;
                    continue;
                }
                if let Some(p) = *phase.borrow_and_update() {
                    let offset = endpoint.number as f64 / endpoint.total as f64;
                    endpoint.schedule = Some(Schedule::new(p.start, p.end, endpoint.rate, offset));
                }
            }
            message = endpoint.link.recv() => match message? {
                Some(message) => endpoint.handle(&message),
                None => anyhow::bail!("connection closed by the server"),
            },
            _ = tokio::time::sleep_until(next_send.map_or_else(Instant::now, |(_, at)| at)),
                if next_send.is_some() => endpoint.send_scheduled().await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_ids_look_like_connection_ids() {
        assert_eq!(sender_id(0).len(), 36);
        assert_eq!(sender_id(usize::MAX >> 16).len(), 36);
        assert_ne!(sender_id(1), sender_id(2));
    }
}
