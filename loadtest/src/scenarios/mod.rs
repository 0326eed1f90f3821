//! The scenarios, and what they share: connecting and joining rooms in bulk, rate warnings, and
//! waiting for messages in flight.
//!
//! - [`call`]: negotiation and `message` traffic between the peers of many rooms.
//! - [`fanout`]: status updates in one large room.
//! - [`idle`]: memory per idle connection.
//! - [`churn`]: joins and leaves at a rate.
//! - [`bare`] and [`nats`]: reference points, pairs of connections exchanging messages through a
//!   minimal WebSocket relay or raw NATS (sharing [`pairs`]).

pub mod bare;
pub mod call;
pub mod churn;
pub mod fanout;
pub mod idle;
pub mod nats;
pub mod pairs;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::Common;
use crate::client::{Conn, Connector, Joined};
use crate::progress::{Progress, Stage};
use crate::stats::{Counters, Errors, Latency};

/// The server's default per-connection rate limit, messages per second.
pub const SERVER_RATE_LIMIT: f64 = 50.0;

/// The server's default burst (token bucket size).
pub const SERVER_RATE_BURST: u64 = 200;

/// When the measured phase runs; sent to every sending task once all are ready.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// First intended send time.
    pub start: Instant,
    /// No message is intended at or after this.
    pub end: Instant,
}

/// What one sending task measured.
#[derive(Default)]
pub struct SenderResult {
    /// Latency of the messages it received.
    pub relay: Latency,
    /// What went wrong, by text.
    pub errors: Errors,
    /// Messages it sent.
    pub sent: u64,
    /// Whether it was ready for the measured phase (negotiated, paired).
    pub ready: bool,
}

/// What every scenario sets up first.
pub struct Setup {
    /// Connects clients round-robin over the targets.
    pub connector: Connector,
    /// Live totals.
    pub counters: Counters,
    /// The progress line.
    pub progress: Progress,
    /// The common flags.
    pub common: Common,
    /// Prefix of this run's room names, so that runs against the same server never meet.
    pub tag: String,
}

impl Setup {
    /// Checks the URLs and starts the progress line.
    pub fn new(scenario: &str, common: &Common) -> Result<Setup> {
        let connector = Connector::new(&common.urls, common.source_ips, common.connect_timeout)?;
        let counters = Counters::default();
        let progress = Progress::start(scenario, counters.clone(), common.no_progress);
        let tag = format!("lt-{:08x}", rand::random::<u32>());
        Ok(Setup {
            connector,
            counters,
            progress,
            common: common.clone(),
            tag,
        })
    }

    /// The name of room `i` of this run.
    pub fn room(&self, i: u32) -> String {
        format!("{}-{i}", self.tag)
    }

    /// Warns (above the progress line) when each connection would send more than the server's
    /// default rate limit allows.
    pub fn warn_rate(&self, per_connection: f64, burst: u64) {
        if per_connection > SERVER_RATE_LIMIT {
            self.progress.println(format!(
                "warning: {per_connection:.1} msgs/s per connection exceeds the server's default \
                 --rate-limit of {SERVER_RATE_LIMIT}/s; start the server with a higher --rate-limit"
            ));
        }
        if burst > SERVER_RATE_BURST {
            self.progress.println(format!(
                "warning: {burst} messages at once per connection exceed the server's default \
                 --rate-burst of {SERVER_RATE_BURST}; start the server with a higher --rate-burst"
            ));
        }
    }

    /// Connects client number `index` and joins it to `room`; counts the connection on success.
    pub async fn connect_and_join(
        &self,
        index: usize,
        room: &str,
        status: Value,
    ) -> Result<Member> {
        let mut conn = self.connector.connect(index).await?;
        let joined = conn.join(room, status, self.common.join_timeout).await?;
        self.counters.connected();
        Ok(Member {
            index,
            conn,
            joined,
        })
    }

    /// Joins `rooms` (each a list of client numbers), members of one room one after the other (so
    /// every member's place in the room is known), rooms in parallel. Failures are counted and
    /// leave the room smaller; if every connection failed, the servers cannot be reached and the
    /// run fails.
    pub async fn join_rooms(&self, rooms: Vec<(String, Vec<usize>)>) -> Result<JoinedRooms> {
        let total = rooms.iter().map(|(_, clients)| clients.len() as u64).sum();
        self.progress.stage(Stage::connecting(total));
        let limit = Arc::new(Semaphore::new(self.common.connect_concurrency as usize));
        let results = futures_util::future::join_all(rooms.into_iter().map(|(room, clients)| {
            let limit = limit.clone();
            async move {
                let mut members = Vec::new();
                let mut latency = Latency::new();
                let mut errors = Errors::default();
                for index in clients {
                    let Ok(_permit) = limit.acquire().await else {
                        break;
                    };
                    match self
                        .connect_and_join(
                            index,
                            &room,
                            serde_json::json!({"name": format!("lt{index}")}),
                        )
                        .await
                    {
                        Ok(member) => {
                            latency.record(member.joined.latency);
                            members.push(member);
                        }
                        Err(e) => {
                            self.counters.error();
                            errors.add(e.to_string());
                        }
                    }
                }
                (members, latency, errors)
            }
        }))
        .await;
        let mut joined = JoinedRooms::default();
        for (members, latency, errors) in results {
            joined.rooms.push(members);
            joined.latency.merge(&latency);
            joined.errors.merge(&errors);
        }
        self.connector.check_reachable(1)?;
        Ok(joined)
    }

    /// Ends a measured phase: waits for the `senders` tasks to report (through `finished`) that they
    /// sent their last message, then for every expected delivery, together within the drain timeout,
    /// then stops the tasks. A sender running late is still sending when the phase ends; until it is
    /// done its last messages are not even expected yet, and draining could stop too early.
    pub async fn finish(
        &self,
        senders: usize,
        finished: &mut tokio::sync::mpsc::Receiver<()>,
        cancel: &tokio_util::sync::CancellationToken,
    ) {
        self.progress
            .stage(Stage::timed("draining", self.common.drain_timeout));
        let deadline = Instant::now() + self.common.drain_timeout;
        let mut done = 0;
        while done < senders {
            match tokio::time::timeout_at(deadline, finished.recv()).await {
                Ok(Some(())) => done += 1,
                Ok(None) | Err(_) => break,
            }
        }
        self.drain().await;
        cancel.cancel();
    }

    /// Runs the measured phase of `call` and the references: announces it to the `senders` (starting
    /// shortly from now, lasting `duration`), waits for its end, [`finish`](Self::finish)es it, and
    /// collects what the senders measured: the merged relay latency, the messages sent, and their
    /// errors (a sender that was not ready adds `not_ready`).
    pub async fn measured_phase(
        &self,
        duration: Duration,
        phase: &tokio::sync::watch::Sender<Option<Phase>>,
        senders: Vec<tokio::task::JoinHandle<SenderResult>>,
        finished: &mut tokio::sync::mpsc::Receiver<()>,
        cancel: &tokio_util::sync::CancellationToken,
        not_ready: &str,
    ) -> (Latency, u64, Errors) {
        // A little ahead, so that every sender has its first send time before it passes.
        let start = Instant::now() + Duration::from_millis(10);
        let end = start + duration;
        let _ = phase.send(Some(Phase { start, end }));
        self.progress.stage(Stage::Timed {
            name: "measuring",
            start,
            length: duration,
        });
        tokio::time::sleep_until(end).await;
        self.finish(senders.len(), finished, cancel).await;

        let mut relay = Latency::new();
        let mut sent = 0;
        let mut errors = Errors::default();
        for sender in senders {
            match sender.await {
                Ok(result) => {
                    relay.merge(&result.relay);
                    errors.merge(&result.errors);
                    sent += result.sent;
                    if !result.ready {
                        errors.add(not_ready);
                    }
                }
                Err(e) => errors.add(format!("sender task failed: {e}")),
            }
        }
        (relay, sent, errors)
    }

    /// Waits until `counters` shows every expected delivery arrived, at most the drain timeout.
    pub async fn drain(&self) {
        let deadline = Instant::now() + self.common.drain_timeout;
        while Instant::now() < deadline {
            let (_, expected, received, _) = self.counters.snapshot();
            if received >= expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A joined connection.
pub struct Member {
    /// Its client number (decides its target and source address).
    pub index: usize,
    /// The connection.
    pub conn: Conn,
    /// What `joined_room` said.
    pub joined: Joined,
}

/// The outcome of [`Setup::join_rooms`].
#[derive(Default)]
pub struct JoinedRooms {
    /// The members that joined, room by room, in join order.
    pub rooms: Vec<Vec<Member>>,
    /// Join latencies.
    pub latency: Latency,
    /// Connect and join failures.
    pub errors: Errors,
}
