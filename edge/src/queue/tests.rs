use std::time::Duration;

use super::*;

fn text(s: &'static str) -> Utf8Bytes {
    Utf8Bytes::from_static(s)
}

fn metrics() -> Arc<QueueMetrics> {
    let counter = |name: &str| IntCounter::new(name, "test").unwrap();
    Arc::new(QueueMetrics {
        queued_bytes: IntGauge::new("queued_bytes", "test").unwrap(),
        full_messages: counter("full_messages"),
        full_bytes: counter("full_bytes"),
        coalesced: counter("coalesced"),
    })
}

fn queue(messages: usize, bytes: usize) -> (Sender, Receiver) {
    bounded(Limits { messages, bytes }, metrics())
}

fn drain(rx: &mut Receiver) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv().map(|t| t.to_string())).collect()
}

fn member(n: u8) -> ConnId {
    ConnId::from_random_bytes([n; 16])
}

#[tokio::test]
async fn delivers_in_order_up_to_capacity() {
    let (tx, mut rx) = queue(2, usize::MAX);
    assert_eq!(tx.try_send(text("a"), Kind::Other), Ok(()));
    assert_eq!(tx.try_send(text("b"), Kind::Other), Ok(()));
    assert_eq!(
        tx.try_send(text("c"), Kind::Other),
        Err(Refused::Full(text("c"), Bound::Messages))
    );
    assert_eq!(rx.recv().await, "a");
    assert_eq!(tx.try_send(text("c"), Kind::Other), Ok(()));
    assert_eq!(drain(&mut rx), ["b", "c"]);
    assert_eq!(tx.shared.metrics.full_messages.get(), 1);
}

#[test]
fn bytes_are_bounded_but_one_message_of_any_size_fits() {
    let (tx, mut rx) = queue(100, 10);
    assert_eq!(tx.try_send(text("0123456789abcdef"), Kind::Other), Ok(()));
    assert_eq!(
        tx.try_send(text("x"), Kind::Other),
        Err(Refused::Full(text("x"), Bound::Bytes))
    );
    assert_eq!(drain(&mut rx), ["0123456789abcdef"]);
    assert_eq!(tx.try_send(text("12345"), Kind::Other), Ok(()));
    assert_eq!(tx.try_send(text("67890"), Kind::Other), Ok(()));
    assert_eq!(
        tx.try_send(text("!"), Kind::Other),
        Err(Refused::Full(text("!"), Bound::Bytes))
    );
    let metrics = tx.shared.metrics.clone();
    assert_eq!(metrics.queued_bytes.get(), 10);
    assert_eq!(metrics.full_bytes.get(), 2);
    assert_eq!(rx.try_recv().as_deref(), Some("12345"));
    assert_eq!(metrics.queued_bytes.get(), 5);
    drop(rx);
    assert_eq!(
        metrics.queued_bytes.get(),
        0,
        "a closed queue holds nothing"
    );
}

#[test]
fn a_newer_status_replaces_the_unsent_one_and_queues_last() {
    let (tx, mut rx) = queue(100, usize::MAX);
    let (s1, s2) = (member(1), member(2));
    tx.try_send(text("s1-old"), Kind::Status(s1)).unwrap();
    tx.try_send(text("offer"), Kind::Other).unwrap();
    tx.try_send(text("s2"), Kind::Status(s2)).unwrap();
    tx.try_send(text("s1-new"), Kind::Status(s1)).unwrap();
    assert_eq!(drain(&mut rx), ["offer", "s2", "s1-new"]);
    assert_eq!(tx.shared.metrics.coalesced.get(), 1);
    assert_eq!(tx.shared.metrics.queued_bytes.get(), 0);
}

#[test]
fn never_across_a_membership_change_of_the_sender_or_a_room_change() {
    let (tx, mut rx) = queue(100, usize::MAX);
    let (s1, s2) = (member(1), member(2));
    tx.try_send(text("s1-a"), Kind::Status(s1)).unwrap();
    tx.try_send(text("left-1"), Kind::Membership(s1)).unwrap();
    tx.try_send(text("new-1"), Kind::Membership(s1)).unwrap();
    tx.try_send(text("s1-b"), Kind::Status(s1)).unwrap();
    // Another member's membership is no barrier for s1.
    tx.try_send(text("new-2"), Kind::Membership(s2)).unwrap();
    tx.try_send(text("s1-c"), Kind::Status(s1)).unwrap();
    tx.try_send(text("s2-a"), Kind::Status(s2)).unwrap();
    tx.try_send(text("joined"), Kind::RoomChange).unwrap();
    tx.try_send(text("s2-b"), Kind::Status(s2)).unwrap();
    assert_eq!(
        drain(&mut rx),
        [
            "s1-a", "left-1", "new-1", "new-2", "s1-c", "s2-a", "joined", "s2-b"
        ]
    );
}

#[test]
fn a_full_queue_still_takes_a_replacing_status_and_keeps_the_old_one_if_not() {
    let (tx, mut rx) = queue(2, 12);
    let s1 = member(1);
    tx.try_send(text("s1-old"), Kind::Status(s1)).unwrap();
    tx.try_send(text("other"), Kind::Other).unwrap();
    // Full by count, yet the replacement frees a place.
    tx.try_send(text("s1-mid"), Kind::Status(s1)).unwrap();
    // Too large even without the old one: refused, and the old one stays.
    let big = text("s1-new-but-far-too-large");
    assert_eq!(
        tx.try_send(big.clone(), Kind::Status(s1)),
        Err(Refused::Full(big, Bound::Bytes))
    );
    assert_eq!(drain(&mut rx), ["other", "s1-mid"]);
}

#[tokio::test]
async fn reader_wakes_for_a_message_sent_later() {
    let (tx, mut rx) = queue(4, usize::MAX);
    let reader = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    assert_eq!(tx.try_send(text("late"), Kind::Other), Ok(()));
    let got = tokio::time::timeout(Duration::from_secs(5), reader).await;
    assert!(matches!(got, Ok(Ok(t)) if t == "late"));
}

#[tokio::test]
async fn a_waiting_writer_wakes_when_room_frees_up() {
    // Full by bytes, not by count: the writer waits until its message fits.
    let (tx, mut rx) = queue(10, 9);
    tx.try_send(text("first"), Kind::Other).unwrap();
    tx.try_send(text("sec"), Kind::Other).unwrap();
    let writer = {
        let tx = tx.clone();
        tokio::spawn(async move {
            tx.room(6).await;
            tx.try_send(text("third!"), Kind::Other)
        })
    };
    tokio::task::yield_now().await;
    assert!(!writer.is_finished(), "no room yet, the writer must wait");
    assert_eq!(rx.recv().await, "first");
    let sent = tokio::time::timeout(Duration::from_secs(5), writer).await;
    assert!(matches!(sent, Ok(Ok(Ok(())))));
    assert_eq!(drain(&mut rx), ["sec", "third!"]);
}

#[tokio::test]
async fn dropping_the_reader_closes_and_wakes_writers() {
    let (tx, rx) = queue(1, usize::MAX);
    assert_eq!(tx.try_send(text("queued"), Kind::Other), Ok(()));
    let waiting = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.room(1).await })
    };
    tokio::task::yield_now().await;
    drop(rx);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .is_ok()
    );
    assert_eq!(
        tx.try_send(text("after"), Kind::Other),
        Err(Refused::Closed)
    );
}

#[tokio::test]
async fn a_drained_queue_gives_back_what_a_burst_grew() {
    let (tx, mut rx) = queue(1000, usize::MAX);
    for _ in 0..1000 {
        assert_eq!(tx.try_send(text("x"), Kind::Other), Ok(()));
    }
    while rx.try_recv().is_some() {}
    assert!(tx.shared.lock().items.capacity() <= KEEP_CAPACITY);
}
