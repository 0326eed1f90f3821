//! The bounded queue of messages waiting to be written to one client.
//!
//! Every connection has one, so its idle size matters more than its speed: tokio's `mpsc` allocates
//! a block of 32 slots and a cache-padded channel up front (about 1.5 KB per connection, most of an
//! idle connection's budget). This queue is a `VecDeque` behind a mutex that allocates only when
//! messages are waiting and gives the space back once it has drained, so an idle connection pays
//! about a hundred bytes. Contention is low by construction: one reader (the connection's task) and
//! short critical sections for the writers (other connections' tasks and the router's event loop).
//!
//! It is bounded twice: in messages, and in bytes, because a client that does not read must not pin
//! more memory than configured whatever the size of what it is sent. An empty queue still takes one
//! message of any size, so nothing is undeliverable. And a `peer_updated_status` replaces an unsent
//! one from the same member ([`Kind`]): only the latest status matters, so members updating within
//! their rate limits cannot fill a reading client's queue.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::{IntCounter, IntGauge};
use switchboard_proto::ConnId;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A drained queue keeps at most this much capacity; what a burst grew beyond it is released.
const KEEP_CAPACITY: usize = 8;

/// What a queued message is, as far as replacing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Never replaced: peer messages, errors.
    Other,
    /// `peer_updated_status` of this member: replaces an unsent older one of the same member.
    Status(ConnId),
    /// `new_peer` or `peer_left` of this member: a status never replaces one across it.
    Membership(ConnId),
    /// `joined_room`: the recipient changed rooms; nothing is replaced across it.
    RoomChange,
}

/// Which bound a refused message met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `--outbound-queue` messages.
    Messages,
    /// `--outbound-queue-bytes`.
    Bytes,
}

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full by `Bound`; here is the message back.
    Full(Utf8Bytes, Bound),
    /// The reader is gone (the connection is closing).
    Closed,
}

/// The limits of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most messages queued.
    pub messages: usize,
    /// Most bytes queued, unless the queue holds a single message.
    pub bytes: usize,
}

/// Metrics every queue of an edge updates.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// Bytes waiting in all queues.
    pub queued_bytes: IntGauge,
    /// Messages refused because the queue held `--outbound-queue` messages.
    pub full_messages: IntCounter,
    /// Messages refused because the queue held `--outbound-queue-bytes`.
    pub full_bytes: IntCounter,
    /// Status updates that replaced an unsent older one.
    pub coalesced: IntCounter,
}

#[derive(Debug)]
struct Item {
    text: Utf8Bytes,
    kind: Kind,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    limits: Limits,
    metrics: Arc<QueueMetrics>,
    /// Wakes the reader when a message arrives.
    readable: Notify,
    /// Wakes writers waiting for room when a message leaves or the reader goes.
    writable: Notify,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    bytes: usize,
    closed: bool,
    /// A writer found no room and waits; the next pop wakes it.
    writers_waiting: bool,
}

/// Whether a message of `len` bytes fits beside `others` messages of `other_bytes`. Alone, any
/// message fits: one larger than the byte bound must still be deliverable.
fn fits(limits: Limits, others: usize, other_bytes: usize, len: usize) -> Result<(), Bound> {
    if others >= limits.messages {
        Err(Bound::Messages)
    } else if others > 0 && other_bytes + len > limits.bytes {
        Err(Bound::Bytes)
    } else {
        Ok(())
    }
}

impl State {
    fn has_room(&self, limits: Limits, len: usize) -> Result<(), Bound> {
        fits(limits, self.items.len(), self.bytes, len)
    }

    /// The unsent status update of `sender` that a newer one may replace: the latest one queued,
    /// unless a membership change of `sender` or a room change came after it.
    fn replaceable(&self, sender: ConnId) -> Option<usize> {
        for (i, item) in self.items.iter().enumerate().rev() {
            match item.kind {
                Kind::Status(s) if s == sender => return Some(i),
                Kind::Membership(s) if s == sender => return None,
                Kind::RoomChange => return None,
                _ => {}
            }
        }
        None
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the queue's contents are
        // still consistent (every operation is a single push, pop or removal).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender {
    shared: Arc<Shared>,
}

/// The reading side, owned by the connection's task. Dropping it closes the queue.
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
}

/// A queue within `limits` (at least one message).
pub fn bounded(limits: Limits, metrics: Arc<QueueMetrics>) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        limits: Limits {
            messages: limits.messages.max(1),
            ..limits
        },
        metrics,
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl Sender {
    /// Queues `text` if there is room, without waiting. A status update first takes the place of
    /// the same member's unsent one (removed, so the new one never overtakes anything queued before
    /// it); if the queue is full even so, nothing changes.
    pub fn try_send(&self, text: Utf8Bytes, kind: Kind) -> Result<(), Refused> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        let replaced = match kind {
            Kind::Status(sender) => state.replaceable(sender),
            _ => None,
        };
        // Judged as if the update it replaces were gone already.
        let (others, other_bytes) = match replaced.and_then(|i| state.items.get(i)) {
            Some(old) => (state.items.len() - 1, state.bytes - old.text.len()),
            None => (state.items.len(), state.bytes),
        };
        let room = fits(shared.limits, others, other_bytes, text.len());
        if let Err(bound) = room {
            drop(state);
            match bound {
                Bound::Messages => shared.metrics.full_messages.inc(),
                Bound::Bytes => shared.metrics.full_bytes.inc(),
            }
            return Err(Refused::Full(text, bound));
        }
        let mut change = text.len() as i64;
        if let Some(old) = replaced.and_then(|i| state.items.remove(i)) {
            state.bytes -= old.text.len();
            change -= old.text.len() as i64;
            shared.metrics.coalesced.inc();
        }
        state.bytes += text.len();
        state.items.push_back(Item { text, kind });
        drop(state);
        shared.metrics.queued_bytes.add(change);
        // One reader: a stored permit covers a reader that is not waiting yet.
        shared.readable.notify_one();
        Ok(())
    }

    /// Waits until the queue has room for a message of `len` bytes, or is closed. Room is not
    /// reserved: a writer that loses a race for it gets `Full` from `try_send` and waits again.
    pub async fn room(&self, len: usize) {
        loop {
            let mut notified = pin!(self.shared.writable.notified());
            // Registered before checking, so a pop between the check and the await is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed || state.has_room(self.shared.limits, len).is_ok() {
                    return;
                }
                state.writers_waiting = true;
            }
            notified.await;
        }
    }
}

impl Receiver {
    /// The next message, waiting for one.
    pub async fn recv(&mut self) -> Utf8Bytes {
        loop {
            if let Some(text) = self.try_recv() {
                return text;
            }
            self.shared.readable.notified().await;
        }
    }

    /// The next message, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Utf8Bytes> {
        let mut state = self.shared.lock();
        let Item { text, .. } = state.items.pop_front()?;
        state.bytes -= text.len();
        if state.items.is_empty() && state.items.capacity() > KEEP_CAPACITY {
            state.items.shrink_to(KEEP_CAPACITY);
        }
        let wake_writers = std::mem::take(&mut state.writers_waiting);
        drop(state);
        self.shared.metrics.queued_bytes.sub(text.len() as i64);
        if wake_writers {
            self.shared.writable.notify_waiters();
        }
        Some(text)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let (items, bytes) = {
            let mut state = self.shared.lock();
            state.closed = true;
            (
                std::mem::take(&mut state.items),
                std::mem::take(&mut state.bytes),
            )
        };
        // Dropped outside the lock.
        drop(items);
        self.shared.metrics.queued_bytes.sub(bytes as i64);
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
