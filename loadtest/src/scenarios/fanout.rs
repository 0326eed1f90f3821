//! `fanout`: one room of `--members`; `--senders` of them send `update_status` on an open-loop
//! schedule adding up to `--rate`, and every member (the sender included) must receive each
//! `peer_updated_status`, or a newer one from the same sender: the server keeps only the latest
//! unsent status update of a member, so one an update overtook counts as `superseded`, not lost.
//!
//! Each status carries its sequence number and intended send instant (µs since the run's start).
//! `fanout` is the latency per recipient, `fanout_last` the latency until the last member has it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Member, Setup};
use crate::cli::FanoutArgs;
use crate::client::error_text;
use crate::progress::Stage;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::stats::{Counters, Errors, Latency};

/// Updates still on their way to some members, and the send-to-last-recipient latencies of the
/// complete ones. Shared by every member's task; the lock is never held across an await.
#[derive(Clone, Default)]
struct Tracker {
    inner: Arc<Mutex<TrackerInner>>,
}

#[derive(Default)]
struct TrackerInner {
    /// (sender id, sequence number) -> (recipients still missing, slowest latency so far).
    pending: HashMap<(String, u64), (usize, Duration)>,
    last: Latency,
}

impl Tracker {
    /// One member received update `seq` of `sender` after `latency`; `members` receive each update.
    fn delivered(&self, sender: &str, seq: u64, latency: Duration, members: usize) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (sender.to_owned(), seq);
        let entry = inner
            .pending
            .entry(key.clone())
            .or_insert((members, Duration::ZERO));
        entry.0 = entry.0.saturating_sub(1);
        entry.1 = entry.1.max(latency);
        if entry.0 == 0 {
            let slowest = entry.1;
            inner.pending.remove(&key);
            inner.last.record(slowest);
        }
    }

    fn last(&self) -> Latency {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last
            .clone()
    }
}

/// What one member's task needs.
struct Task {
    member: Member,
    /// Its own schedule when it is a sender.
    schedule: Option<Schedule>,
    members: usize,
    base: Instant,
    counters: Counters,
    tracker: Tracker,
    /// Told once this member sent its last update (or never will).
    finished: Option<tokio::sync::mpsc::Sender<()>>,
    cancel: CancellationToken,
}

impl Task {
    /// Tells the run this member sends no more updates (once).
    async fn finish(&mut self) {
        if let Some(finished) = self.finished.take() {
            let _ = finished.send(()).await;
        }
    }
}

/// What one member's task measured.
#[derive(Default)]
struct TaskResult {
    latency: Latency,
    errors: Errors,
    sent: u64,
}

/// Runs the scenario.
pub async fn run(args: &FanoutArgs) -> Result<Report> {
    let setup = Setup::new("fanout", &args.common)?;
    let senders = args.senders.min(args.members) as usize;
    let per_sender = args.rate / senders as f64;
    setup.warn_rate(per_sender, 0);

    let room = vec![(setup.room(0), (0..args.members as usize).collect())];
    let joined = setup.join_rooms(room).await?;
    let mut errors = joined.errors;
    let members = joined.rooms.into_iter().flatten().collect::<Vec<_>>();
    let member_count = members.len();

    let base = Instant::now();
    let start = base + Duration::from_millis(10);
    let end = start + args.duration;
    setup.progress.stage(Stage::Timed {
        name: "measuring",
        start,
        length: args.duration,
    });
    let cancel = CancellationToken::new();
    let tracker = Tracker::default();
    let (finished_tx, mut finished_rx) = tokio::sync::mpsc::channel::<()>(member_count.max(1));
    let tasks: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, member)| {
            let schedule = (i < senders)
                .then(|| Schedule::new(start, end, per_sender, i as f64 / senders as f64));
            tokio::spawn(member_task(Task {
                member,
                schedule,
                members: member_count,
                base,
                counters: setup.counters.clone(),
                tracker: tracker.clone(),
                finished: Some(finished_tx.clone()),
                cancel: cancel.clone(),
            }))
        })
        .collect();
    drop(finished_tx);

    tokio::time::sleep_until(end).await;
    setup.finish(tasks.len(), &mut finished_rx, &cancel).await;

    let mut latency = Latency::new();
    let mut sent = 0;
    for task in tasks {
        match task.await {
            Ok(result) => {
                latency.merge(&result.latency);
                errors.merge(&result.errors);
                sent += result.sent;
            }
            Err(e) => errors.add(format!("member task failed: {e}")),
        }
    }
    let (_, expected, received, _) = setup.counters.snapshot();
    let mut report = Report::new(
        "fanout",
        u64::from(args.members),
        args.duration.as_secs_f64(),
        (sent, expected, received),
        &errors,
        2 * u64::from(args.members) + sent,
    );
    report
        .latencies
        .insert("join".into(), joined.latency.summary());
    report.latencies.insert("fanout".into(), latency.summary());
    report
        .latencies
        .insert("fanout_last".into(), tracker.last().summary());
    report.extra.insert(
        "superseded".into(),
        serde_json::json!(setup.counters.superseded_total()),
    );
    Ok(report)
}

async fn member_task(mut task: Task) -> TaskResult {
    let mut result = TaskResult::default();
    if let Err(e) = drive(&mut task, &mut result).await {
        task.counters.error();
        result.errors.add(e.to_string());
    }
    task.finish().await;
    task.counters.disconnected();
    task.member.conn.close().await;
    result
}

async fn drive(task: &mut Task, result: &mut TaskResult) -> Result<()> {
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    loop {
        let next_send = task.schedule.as_ref().and_then(Schedule::peek);
        if next_send.is_none() {
            task.finish().await;
        }
        tokio::select! {
            _ = task.cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next_send.map_or_else(Instant::now, |(_, at)| at)),
                if next_send.is_some() =>
            {
                let Some((seq, at)) = next_send else { continue };
                if let Some(schedule) = task.schedule.as_mut() {
                    schedule.advance();
                }
                let sent_us = u64::try_from(at.saturating_duration_since(task.base).as_micros())
                    .unwrap_or(u64::MAX);
                let status = json!({
                    "name": format!("lt{}", task.member.index),
                    "lt_seq": seq,
                    "lt_us": sent_us,
                });
                task.member
                    .conn
                    .send(&json!({"event": "update_status", "status": status}))
                    .await?;
                result.sent += 1;
                task.counters.sent(task.members as u64);
            }
            message = task.member.conn.recv() => {
                let Some(message) = message? else {
                    bail!("connection closed by the server");
                };
                handle(task, result, &mut last_seq, &message);
            }
        }
    }
}

fn handle(
    task: &Task,
    result: &mut TaskResult,
    last_seq: &mut HashMap<String, u64>,
    message: &Value,
) {
    let mut error = |text: String| {
        task.counters.error();
        result.errors.add(text);
    };
    match message["event"].as_str().unwrap_or_default() {
        "peer_updated_status" => {
            let sender = message["sender_id"].as_str().unwrap_or_default();
            let status = &message["status"];
            let (Some(seq), Some(sent_us)) = (status["lt_seq"].as_u64(), status["lt_us"].as_u64())
            else {
                error("malformed status update".into());
                return;
            };
            let previous = last_seq.insert(sender.to_owned(), seq);
            match previous {
                Some(previous) if previous >= seq => error("status update out of order".into()),
                // The updates in between were replaced by this newer one while queued for this
                // member (the server coalesces a member's status updates): not lost.
                Some(previous) => task.counters.superseded(seq - previous - 1),
                // Sequence numbers start at 0, after every member joined.
                None => task.counters.superseded(seq),
            }
            task.counters.received();
            let latency = Instant::now()
                .saturating_duration_since(task.base + Duration::from_micros(sent_us));
            result.latency.record(latency);
            task.tracker.delivered(sender, seq, latency, task.members);
        }
        "error" => error(format!("server error: {}", error_text(message))),
        "peer_left" if !task.cancel.is_cancelled() => error("unexpected peer_left".into()),
        "shutdown" => error("server shutting down".into()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_recipient_latency_is_the_slowest() {
        let tracker = Tracker::default();
        tracker.delivered("a", 0, Duration::from_millis(3), 3);
        tracker.delivered("a", 0, Duration::from_millis(9), 3);
        tracker.delivered("b", 0, Duration::from_millis(1), 3);
        assert_eq!(tracker.last().count(), 0);
        tracker.delivered("a", 0, Duration::from_millis(5), 3);
        let last = tracker.last().summary();
        assert_eq!(last.count, 1);
        assert!((8_990..=9_010).contains(&last.max_us), "{last:?}");
    }
}
