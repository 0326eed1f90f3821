//! The in-memory outbox: pending events per room, which room may send next, and when. Pure state
//! (the caller passes the time and the jitter), driven by the engine's task.
//!
//! Rules:
//! - A room has at most one event in flight; its next event waits until that one is acknowledged
//!   ([`Outbox::succeeded`]), or given up on. That is what keeps a room's events in order under retries.
//! - A failed event is retried after [`Backoff::delay`]; an event older than `max_age` when its turn
//!   comes is dropped (counted), and the room moves on.
//! - Bounds: at most `per_tenant` pending events per tenant and `global` in all; an event over
//!   either bound is refused at once (counted as dropped), never queued.
//! - Each event may carry a token `T` (in a cluster: the JetStream message to acknowledge), handed
//!   back when the event leaves the outbox for good: delivered, given up on or expired.
//! - Standalone, the outbox numbers a room's events itself (`seq` from 1); in a cluster the caller
//!   gives each event its `seq` (the stream sequence), and a room is forgotten whenever its queue
//!   is empty, since there is no counter to keep.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use switchboard_proto::TenantId;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::event::{RoomEvent, WebhookEvent};

/// A room, as the outbox keys it.
pub type RoomKey = (TenantId, String);

/// Queue bounds (docs/webhooks.md, "Bounds").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most pending events of one tenant (so one tenant's dead endpoint cannot starve the others).
    pub per_tenant: usize,
    /// Most pending events in all.
    pub global: usize,
}

impl Default for Limits {
    /// 10,000 per tenant, 100,000 in all: an event is about 300 bytes plus its status (at most
    /// 4 KiB), so typically 30 MB at the global bound.
    fn default() -> Self {
        Limits {
            per_tenant: 10_000,
            global: 100_000,
        }
    }
}

/// Why an event was not queued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    /// The tenant has [`Limits::per_tenant`] events pending.
    #[error("tenant's webhook queue is full")]
    TenantFull,
    /// [`Limits::global`] events are pending.
    #[error("webhook queue is full")]
    GlobalFull,
    /// The body could not be encoded (not expected: every field is plain JSON).
    #[error("webhook event could not be encoded")]
    Encode(#[source] std::sync::Arc<serde_json::Error>),
}

// By kind: the encoding error's details do not make two refusals different.
impl PartialEq for Refused {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl Eq for Refused {}

/// An event accepted into the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Its id.
    pub id: String,
    /// Its room's sequence number.
    pub seq: u64,
}

/// One attempt to make: the room's head event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The room (and its tenant, whose settings to use).
    pub room: RoomKey,
    /// The event id (for the header).
    pub id: String,
    /// The body, identical on every attempt.
    pub body: Bytes,
}

#[derive(Debug)]
struct Pending<T> {
    id: String,
    body: Bytes,
    created: Instant,
    token: T,
}

#[derive(Debug)]
struct Room<T> {
    /// The room's next `seq`, when the outbox numbers its events (`None`: the caller does).
    next_seq: Option<u64>,
    queue: VecDeque<Pending<T>>,
    in_flight: bool,
    failures: u32,
    not_before: Instant,
    /// The room has finished (its `room_finished` is queued): forget it once its queue is empty.
    finished: bool,
}

/// The outbox's state; `T` is what the caller gets back when an event leaves it for good.
#[derive(Debug)]
pub struct Outbox<T = ()> {
    limits: Limits,
    backoff: Backoff,
    max_age: Duration,
    rooms: HashMap<RoomKey, Room<T>>,
    /// Rooms whose head may be attempted at the given instant (non-empty, not in flight).
    schedule: BTreeSet<(Instant, RoomKey)>,
    per_tenant: HashMap<TenantId, usize>,
    pending: usize,
    /// Creation instants of pending events (with multiplicity), for the oldest's age.
    created: BTreeMap<Instant, usize>,
    retrying: usize,
}

impl Outbox<()> {
    /// Queues `event` behind its room's earlier ones, giving it `id` and the room's next sequence
    /// number.
    pub fn push(&mut self, event: RoomEvent, id: String, now: Instant) -> Result<Queued, Refused> {
        self.push_with(event, id, None, (), now)
            .map_err(|(refused, ())| refused)
    }
}

impl<T> Outbox<T> {
    /// An empty outbox.
    pub fn new(limits: Limits, backoff: Backoff, max_age: Duration) -> Self {
        Outbox {
            limits,
            backoff,
            max_age,
            rooms: HashMap::new(),
            schedule: BTreeSet::new(),
            per_tenant: HashMap::new(),
            pending: 0,
            created: BTreeMap::new(),
            retrying: 0,
        }
    }

    /// Queues `event` behind its room's earlier ones with `id` and `seq` (`None`: the room's next
    /// number), carrying `token`; `created` is when it happened, from which its retry time runs.
    pub fn push_with(
        &mut self,
        event: RoomEvent,
        id: String,
        seq: Option<u64>,
        token: T,
        created: Instant,
    ) -> Result<Queued, (Refused, T)> {
        let now = created;
        let tenant_pending = self.per_tenant.get(&event.tenant).copied().unwrap_or(0);
        if tenant_pending >= self.limits.per_tenant {
            return Err((Refused::TenantFull, token));
        }
        if self.pending >= self.limits.global {
            return Err((Refused::GlobalFull, token));
        }
        let key: RoomKey = (event.tenant.clone(), event.room.clone());
        let finishing = event.kind == super::event::EventKind::RoomFinished;
        let room = self.rooms.entry(key.clone()).or_insert_with(|| Room {
            next_seq: seq.is_none().then_some(1),
            queue: VecDeque::new(),
            in_flight: false,
            failures: 0,
            not_before: now,
            finished: false,
        });
        let seq = match (seq, room.next_seq) {
            (Some(seq), _) => seq,
            (None, counter) => counter.unwrap_or(1),
        };
        let body = match serde_json::to_vec(&WebhookEvent::new(event, id.clone(), seq)) {
            Ok(body) => body,
            Err(e) => return Err((Refused::Encode(std::sync::Arc::new(e)), token)),
        };
        if let Some(next) = room.next_seq.as_mut() {
            *next = seq + 1;
        }
        // A room that starts again under the same name before its old events are out keeps its
        // sequence, so the receiver still sees one increasing order for the name.
        room.finished = finishing;
        let was_idle = room.queue.is_empty() && !room.in_flight;
        room.queue.push_back(Pending {
            id: id.clone(),
            body: Bytes::from(body),
            created: now,
            token,
        });
        if was_idle {
            // Due at once, however long ago it happened.
            room.not_before = now;
            self.schedule.insert((now, key.clone()));
        }
        *self.per_tenant.entry(key.0).or_insert(0) += 1;
        self.pending += 1;
        *self.created.entry(now).or_insert(0) += 1;
        Ok(Queued { id, seq })
    }

    /// The attempts due at `now`, at most `max` of them, each room's head marked in flight; and the
    /// tokens of the events dropped because they were older than `max_age` when their turn came.
    pub fn due(&mut self, now: Instant, max: usize) -> (Vec<Attempt>, Vec<T>) {
        let mut attempts = Vec::new();
        let mut expired = Vec::new();
        while attempts.len() < max {
            let Some(first) = self.schedule.first() else {
                break;
            };
            if first.0 > now {
                break;
            }
            let Some((_, key)) = self.schedule.pop_first() else {
                break;
            };
            while let Some(head) = self.rooms.get(&key).and_then(|r| r.queue.front()) {
                if now.saturating_duration_since(head.created) >= self.max_age {
                    expired.extend(self.pop_head(&key));
                    continue;
                }
                attempts.push(Attempt {
                    room: key.clone(),
                    id: head.id.clone(),
                    body: head.body.clone(),
                });
                if let Some(room) = self.rooms.get_mut(&key) {
                    room.in_flight = true;
                }
                break;
            }
            self.forget_if_done(&key);
        }
        (attempts, expired)
    }

    /// The room's head was acknowledged: remove it (its token is returned); the next event may go
    /// at once.
    pub fn succeeded(&mut self, key: &RoomKey, now: Instant) -> Option<T> {
        let token = self.pop_head(key);
        self.settle(key, now);
        token
    }

    /// The room's head was not acknowledged: retry it after the backoff (`jitter` in `[0, 1]`).
    /// Returns the wait.
    pub fn failed(&mut self, key: &RoomKey, now: Instant, jitter: f64) -> Duration {
        let Some(room) = self.rooms.get_mut(key) else {
            return Duration::ZERO;
        };
        if room.failures == 0 {
            self.retrying += 1;
        }
        room.failures = room.failures.saturating_add(1);
        let wait = self.backoff.delay(room.failures, jitter);
        self.settle(key, now + wait);
        wait
    }

    /// The room's head cannot be delivered at all (its tenant has no valid webhook now): drop it
    /// (its token is returned).
    pub fn abandoned(&mut self, key: &RoomKey, now: Instant) -> Option<T> {
        let token = self.pop_head(key);
        self.settle(key, now);
        token
    }

    /// Events pending (queued or in flight).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Rooms whose head has failed at least once and not yet gone through.
    pub fn retrying(&self) -> usize {
        self.retrying
    }

    /// Age of the oldest pending event.
    pub fn oldest_age(&self, now: Instant) -> Option<Duration> {
        self.created
            .first_key_value()
            .map(|(t, _)| now.saturating_duration_since(*t))
    }

    /// When the next attempt is due, if any room waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.schedule.first().map(|(t, _)| *t)
    }

    fn pop_head(&mut self, key: &RoomKey) -> Option<T> {
        let room = self.rooms.get_mut(key)?;
        let head = room.queue.pop_front()?;
        if room.failures > 0 {
            room.failures = 0;
            self.retrying -= 1;
        }
        self.pending -= 1;
        if let Some(n) = self.per_tenant.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_tenant.remove(&key.0);
            }
        }
        if let Some(n) = self.created.get_mut(&head.created) {
            *n -= 1;
            if *n == 0 {
                self.created.remove(&head.created);
            }
        }
        Some(head.token)
    }

    /// The room's attempt is over: schedule its head (if any) at `at`.
    fn settle(&mut self, key: &RoomKey, at: Instant) {
        if let Some(room) = self.rooms.get_mut(key) {
            room.in_flight = false;
            room.not_before = at;
            if !room.queue.is_empty() {
                self.schedule.insert((at, key.clone()));
            }
        }
        self.forget_if_done(key);
    }

    fn forget_if_done(&mut self, key: &RoomKey) {
        if self.rooms.get(key).is_some_and(|r| {
            (r.finished || r.next_seq.is_none()) && r.queue.is_empty() && !r.in_flight
        }) {
            self.rooms.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
