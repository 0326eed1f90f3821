//! The bounded queue of messages waiting to be written to one client.
//!
//! Every connection has one, so its idle size matters more than its speed: tokio's `mpsc` allocates
//! a block of 32 slots and a cache-padded channel up front (about 1.5 KB per connection, most of an
//! idle connection's budget). This queue is a `VecDeque` behind a mutex that allocates only when
//! messages are waiting and gives the space back once it has drained, so an idle connection pays
//! about a hundred bytes. Contention is low by construction: one reader (the connection's task) and
//! short critical sections for the writers (other connections' tasks and the router's event loop).

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A drained queue keeps at most this much capacity; what a burst grew beyond it is released.
const KEEP_CAPACITY: usize = 8;

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `capacity` messages; here is the message back.
    Full(Utf8Bytes),
    /// The reader is gone (the connection is closing).
    Closed,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the reader when a message arrives.
    readable: Notify,
    /// Wakes writers waiting for room when a message leaves or the reader goes.
    writable: Notify,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Utf8Bytes>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the queue's contents are
        // still consistent (every operation is a single push or pop).
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

/// A queue for at most `capacity` messages (at least one).
pub fn bounded(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        capacity: capacity.max(1),
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
    /// Queues `text` if there is room, without waiting.
    pub fn try_send(&self, text: Utf8Bytes) -> Result<(), Refused> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.items.len() >= self.shared.capacity {
            return Err(Refused::Full(text));
        }
        state.items.push_back(text);
        drop(state);
        // One reader: a stored permit covers a reader that is not waiting yet.
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Waits until the queue has room for one more message or is closed. Room is not reserved: a
    /// writer that loses a race for it gets `Full` from `try_send` and waits again.
    pub async fn room(&self) {
        loop {
            let mut notified = pin!(self.shared.writable.notified());
            // Registered before checking, so a pop between the check and the await is not missed.
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.closed || state.items.len() < self.shared.capacity {
                    return;
                }
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
        let was_full = state.items.len() >= self.shared.capacity;
        let text = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > KEEP_CAPACITY {
            state.items.shrink_to(KEEP_CAPACITY);
        }
        drop(state);
        if was_full {
            self.shared.writable.notify_waiters();
        }
        Some(text)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        // Dropped outside the lock.
        drop(items);
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(s: &'static str) -> Utf8Bytes {
        Utf8Bytes::from_static(s)
    }

    #[tokio::test]
    async fn delivers_in_order_up_to_capacity() {
        let (tx, mut rx) = bounded(2);
        assert_eq!(tx.try_send(text("a")), Ok(()));
        assert_eq!(tx.try_send(text("b")), Ok(()));
        assert_eq!(tx.try_send(text("c")), Err(Refused::Full(text("c"))));
        assert_eq!(rx.recv().await, "a");
        assert_eq!(tx.try_send(text("c")), Ok(()));
        assert_eq!(rx.try_recv().as_deref(), Some("b"));
        assert_eq!(rx.try_recv().as_deref(), Some("c"));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn reader_wakes_for_a_message_sent_later() {
        let (tx, mut rx) = bounded(4);
        let reader = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        assert_eq!(tx.try_send(text("late")), Ok(()));
        let got = tokio::time::timeout(Duration::from_secs(5), reader).await;
        assert!(matches!(got, Ok(Ok(t)) if t == "late"));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_when_room_frees_up() {
        let (tx, mut rx) = bounded(1);
        assert_eq!(tx.try_send(text("first")), Ok(()));
        let writer = {
            let tx = tx.clone();
            tokio::spawn(async move {
                tx.room().await;
                tx.try_send(text("second"))
            })
        };
        tokio::task::yield_now().await;
        assert!(!writer.is_finished(), "no room yet, the writer must wait");
        assert_eq!(rx.recv().await, "first");
        let sent = tokio::time::timeout(Duration::from_secs(5), writer).await;
        assert!(matches!(sent, Ok(Ok(Ok(())))));
        assert_eq!(rx.recv().await, "second");
    }

    #[tokio::test]
    async fn dropping_the_reader_closes_and_wakes_writers() {
        let (tx, rx) = bounded(1);
        assert_eq!(tx.try_send(text("queued")), Ok(()));
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.room().await })
        };
        tokio::task::yield_now().await;
        drop(rx);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .is_ok()
        );
        assert_eq!(tx.try_send(text("after")), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_drained_queue_gives_back_what_a_burst_grew() {
        let (tx, mut rx) = bounded(1000);
        for _ in 0..1000 {
            assert_eq!(tx.try_send(text("x")), Ok(()));
        }
        assert!(tx.shared.lock().items.capacity() >= 1000);
        while rx.try_recv().is_some() {}
        assert!(tx.shared.lock().items.capacity() <= KEEP_CAPACITY);
    }
}
