//! The connection loop's timing rules, over an in-memory socket (`tokio::io::duplex`) with the clock
//! paused: no network, no sleeps, and every deadline is exact. Both ends speak real WebSocket frames
//! (`from_raw_socket`: the HTTP upgrade is not part of the loop). The edge around the loop is real too:
//! a registry and the in-process router, as `run` builds them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_rooms::RoomsConfig;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::bus::Bus;
use crate::context::Context;
use crate::metrics::{DisconnectReason, Metrics};
use crate::registry::Registry;
use crate::{Config, descriptors, local_router};

/// Socket buffer of a client that reads: far more than any test sends.
const ROOMY: usize = 1 << 20;

/// Longest a test waits (in paused time) for something it expects.
const PATIENCE: Duration = Duration::from_secs(3600);

/// One edge's shared context with its in-process router, without the HTTP ports.
fn edge(adjust: impl FnOnce(&mut Config)) -> Arc<Context> {
    let mut config = Config::default();
    adjust(&mut config);
    config.validate().expect("test configuration is valid");
    let metrics = Metrics::new().expect("metrics register");
    let id = switchboard_proto::EdgeId(7);
    let registry = Registry::new(id, metrics.clone());
    let (tx, rx) = mpsc::channel(local_router::QUEUE);
    tokio::spawn(local_router::run(
        RoomsConfig::default(),
        rx,
        registry.clone(),
        metrics.clone(),
        None,
        None,
    ));
    let plan = descriptors::plan(config.max_connections, None, config.fd_reserve)
        .expect("no descriptor limit");
    Context::new(
        &config,
        id,
        switchboard_proto::RoomKeyer::new(b"test"),
        registry,
        Bus::local(tx),
        metrics,
        plan,
        crate::hosted::Access::new(&config.hosted, switchboard_tenants::Directory::new()),
        config.turn_settings().expect("valid").map(Arc::new),
    )
}

/// A client of the loop, and the task serving it.
struct Client {
    ws: WebSocketStream<DuplexStream>,
    task: JoinHandle<()>,
}

/// Connects a client whose socket holds `buffer` bytes in each direction.
async fn connect(ctx: &Arc<Context>, buffer: usize) -> Client {
    let (server, client) = tokio::io::duplex(buffer);
    let server =
        WebSocketStream::from_raw_socket(server, Role::Server, Some(ctx.limits.websocket)).await;
    let permit = ctx
        .connection_permits
        .try_acquire()
        .expect("a free connection place");
    let task = tokio::spawn(super::serve(server, ctx.clone(), permit, None, None));
    let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    Client { ws, task }
}

/// Connects a client that never writes, not even a pong: it keeps the raw socket, which the test
/// reads once the connection has ended.
async fn connect_silent(ctx: &Arc<Context>) -> (DuplexStream, JoinHandle<()>) {
    let (server, client) = tokio::io::duplex(ROOMY);
    let server =
        WebSocketStream::from_raw_socket(server, Role::Server, Some(ctx.limits.websocket)).await;
    let permit = ctx
        .connection_permits
        .try_acquire()
        .expect("a free connection place");
    (
        client,
        tokio::spawn(super::serve(server, ctx.clone(), permit, None, None)),
    )
}

/// The frames a server sent, as (opcode, payload): server frames are unmasked, and these are small.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let [head, len, rest @ ..] = bytes {
        let len = usize::from(*len);
        assert!(len < 126 && rest.len() >= len, "a small, whole frame");
        frames.push((head & 0x0f, rest[..len].to_vec()));
        bytes = &rest[len..];
    }
    frames
}

impl Client {
    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("the server reads");
    }

    /// The next frame. Reading also answers the server's pings (tungstenite sends the pong with the
    /// next read or write).
    async fn frame(&mut self) -> Message {
        match timeout(PATIENCE, self.ws.next()).await {
            Ok(Some(Ok(frame))) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next protocol message, skipping pings.
    async fn recv(&mut self) -> Value {
        loop {
            match self.frame().await {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Joins `room` and returns its own id.
    async fn join(&mut self, room: &str) -> String {
        self.send(json!({"event": "join_room", "room_id": room}))
            .await;
        let joined = self.recv().await;
        assert_eq!(joined["event"], "joined_room", "{joined}");
        joined["own_id"].as_str().expect("own_id").to_owned()
    }

    /// Waits until the server's task for this client has ended.
    async fn ended(&mut self) {
        timeout(PATIENCE, &mut self.task)
            .await
            .expect("the connection ends")
            .expect("the connection task does not panic");
    }
}

fn disconnects(ctx: &Context, reason: DisconnectReason) -> u64 {
    ctx.metrics
        .disconnects
        .with_label_values(&[reason.label()])
        .get()
}

/// A client that answers no WebSocket ping (it reads nothing, so tungstenite sends no pong) is
/// closed with 1000 "idle timeout" once the idle timeout has passed since its last frame, and not
/// before.
#[tokio::test(start_paused = true)]
async fn a_client_that_answers_no_ping_is_closed_after_the_idle_timeout() {
    let ctx = edge(|c| {
        c.ping_interval = Duration::from_secs(20);
        c.idle_timeout = Duration::from_secs(50);
    });
    let start = Instant::now();
    let (mut silent, mut task) = connect_silent(&ctx).await;

    let ping = (0x9, Vec::new());

    // Just before the idle timeout: pinged at 20 s and 40 s, not closed.
    sleep_until(start + Duration::from_secs(50) - Duration::from_millis(1)).await;
    let mut before = vec![0; 1024];
    let n = futures_util::FutureExt::now_or_never(silent.read(&mut before))
        .expect("the pings are waiting")
        .expect("buffered frames");
    assert_eq!(server_frames(&before[..n]), [ping.clone(), ping]);

    // Then closed. The task ends once the server stops waiting for the reply to its close frame.
    timeout(PATIENCE, &mut task)
        .await
        .expect("the connection ends")
        .expect("no panic");
    assert_eq!(disconnects(&ctx, DisconnectReason::IdleTimeout), 1);
    let mut after = Vec::new();
    silent
        .read_to_end(&mut after)
        .await
        .expect("buffered frames");
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"idle timeout");
    assert_eq!(server_frames(&after), [(0x8, close)]);
}

/// A client that answers pings (it reads, so its WebSocket library sends pongs) but says nothing
/// else outlives the idle timeout many times over.
#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_is_not_idle() {
    let ctx = edge(|c| {
        c.ping_interval = Duration::from_secs(20);
        c.idle_timeout = Duration::from_secs(60);
    });
    let mut live = connect(&ctx, ROOMY).await;
    let until = Instant::now() + Duration::from_secs(600);
    while Instant::now() < until {
        assert!(live.frame().await.is_ping());
    }
    assert!(!live.task.is_finished());
    assert_eq!(disconnects(&ctx, DisconnectReason::IdleTimeout), 0);
    live.send(json!({"event": "ping"})).await;
    assert_eq!(live.recv().await, json!({"event": "pong"}));
}

/// The server pings every `--ping-interval`, counted from the connection's start, whatever the
/// client does in between.
#[tokio::test(start_paused = true)]
async fn pings_are_sent_every_ping_interval() {
    let ctx = edge(|c| {
        c.ping_interval = Duration::from_secs(7);
        c.idle_timeout = Duration::from_secs(60);
    });
    let start = Instant::now();
    let mut client = connect(&ctx, ROOMY).await;
    let mut at = Vec::new();
    while at.len() < 5 {
        let frame = client.frame().await;
        assert!(frame.is_ping(), "{frame:?}");
        at.push(start.elapsed());
        // Traffic between pings does not move them.
        client.send(json!({"event": "info"})).await;
        assert_eq!(client.recv().await["event"], "info");
    }
    let expected: Vec<Duration> = (1..=5).map(|n| Duration::from_secs(7 * n)).collect();
    for (got, want) in at.iter().zip(&expected) {
        assert!(
            *got >= *want && *got < *want + Duration::from_millis(5),
            "pings at {at:?}, expected at {expected:?}"
        );
    }
}

/// A peer that does not read while a peer on the same edge relays to it: the sender's message
/// parks and its input waits, while what others send it still arrives. After
/// `--slow-client-timeout` the target is closed as a slow consumer, and the sender carries on: its
/// waiting input is read and answered, and it learns that the target left.
#[tokio::test(start_paused = true)]
async fn a_target_that_does_not_read_is_closed_after_the_slow_client_timeout() {
    let slow_client_timeout = Duration::from_secs(2);
    let ctx = edge(|c| {
        c.outbound_queue = 2;
        c.slow_client_timeout = slow_client_timeout;
        // Far beyond the test: a target stuck in a write is closed for being slow, not for I/O.
        c.io_timeout = Duration::from_secs(600);
        c.idle_timeout = Duration::from_secs(600);
        c.ping_interval = Duration::from_secs(300);
    });
    let mut sender = connect(&ctx, ROOMY).await;
    let mut bystander = connect(&ctx, ROOMY).await;
    // The sleeper's socket holds less than one message: its task blocks in the first write.
    let mut sleeper = connect(&ctx, 256).await;
    let sender_id = sender.join("r").await;
    bystander.join("r").await;
    let sleeper_id = sleeper.join("r").await;
    for _ in 0..2 {
        assert_eq!(sender.recv().await["event"], "new_peer");
    }
    assert_eq!(bystander.recv().await["event"], "new_peer");

    // The sleeper reads no more. Enough messages to fill its socket, the writer's buffer and its
    // queue, so the sender's relay parks; then a ping that waits behind it.
    let start = Instant::now();
    let blob = "x".repeat(1024);
    for _ in 0..64 {
        sender
            .send(json!({"event": "send_to_peer", "peer_id": sleeper_id,
                         "data": {"event": "message", "blob": blob}}))
            .await;
    }
    sender.send(json!({"event": "ping"})).await;

    // While it waits, the sender's own queue is written: it gets the bystander's offer (two peers
    // relaying to each other at once must not deadlock).
    sleep(slow_client_timeout / 2).await;
    bystander
        .send(json!({"event": "send_to_peer", "peer_id": sender_id, "data": {"event": "offer"}}))
        .await;
    let offer = sender.recv().await;
    assert_eq!(offer["event"], "offer", "{offer}");
    assert!(
        start.elapsed() < slow_client_timeout,
        "the offer waited for the sender's relay"
    );

    // Until the timeout, the sleeper stays and the sender's input waits: no pong yet.
    sleep_until(start + slow_client_timeout - Duration::from_millis(1)).await;
    assert!(
        !sleeper.task.is_finished(),
        "closed before the slow-client timeout"
    );
    assert_eq!(disconnects(&ctx, DisconnectReason::SlowConsumer), 0);
    let early = futures_util::FutureExt::now_or_never(sender.ws.next());
    assert!(
        early.is_none(),
        "the sender was read while parked: {early:?}"
    );

    sleeper.ended().await;
    let waited = start.elapsed();
    assert!(
        waited >= slow_client_timeout && waited < slow_client_timeout + Duration::from_millis(5),
        "the sleeper was closed after {waited:?}"
    );
    assert_eq!(disconnects(&ctx, DisconnectReason::SlowConsumer), 1);

    // The sender carries on: its ping is answered, and the sleeper leaves its room. Relays read
    // after the sleeper left go nowhere (or are answered `unknown peer` once it left the view).
    let (mut pong, mut left) = (false, false);
    while !(pong && left) {
        let message = sender.recv().await;
        match message["event"].as_str() {
            Some("pong") => pong = true,
            Some("peer_left") => {
                assert_eq!(message["sender_id"], sleeper_id.as_str());
                left = true;
            }
            Some("error") => assert_eq!(message["message"], "unknown peer"),
            _ => panic!("unexpected {message}"),
        }
    }
    assert!(!sender.task.is_finished());
}

/// A burst beyond `--rate-burst` is answered `rate limit exceeded` and dropped; tokens come back at
/// `--rate-limit` per second.
#[tokio::test(start_paused = true)]
async fn messages_beyond_the_burst_are_refused_until_tokens_refill() {
    let ctx = edge(|c| {
        c.rate_limit = 1;
        c.rate_burst = 3;
        c.rate_limit_close_after = 10;
    });
    let mut client = connect(&ctx, ROOMY).await;
    for _ in 0..4 {
        client.send(json!({"event": "ping"})).await;
    }
    let replies = [
        client.recv().await,
        client.recv().await,
        client.recv().await,
        client.recv().await,
    ];
    let pong = json!({"event": "pong"});
    let refused = json!({"event": "error", "message": "rate limit exceeded",
                         "description": "rate limit exceeded"});
    assert_eq!(replies, [pong.clone(), pong.clone(), pong.clone(), refused]);

    // One token back after a second: one message more, not two.
    sleep(Duration::from_secs(1)).await;
    client.send(json!({"event": "ping"})).await;
    client.send(json!({"event": "ping"})).await;
    assert_eq!(client.recv().await, pong);
    assert_eq!(client.recv().await["message"], "rate limit exceeded");
    assert!(!client.task.is_finished());
}

/// Sustained abuse (more refused messages than `--rate-limit-close-after` within ten seconds)
/// closes the connection with 1008.
#[tokio::test(start_paused = true)]
async fn sustained_rate_limit_abuse_closes_with_1008() {
    let ctx = edge(|c| {
        c.rate_limit = 1;
        c.rate_burst = 2;
        c.rate_limit_close_after = 3;
    });
    let mut client = connect(&ctx, ROOMY).await;
    // Two allowed, three refused, and the sixth closes.
    for _ in 0..6 {
        client.send(json!({"event": "ping"})).await;
    }
    let mut replies = Vec::new();
    let close = loop {
        match client.frame().await {
            Message::Text(text) => {
                let reply: Value = serde_json::from_str(&text).expect("JSON");
                replies.push(reply["event"].as_str().unwrap_or_default().to_owned());
            }
            Message::Close(Some(frame)) => break (frame.code, frame.reason.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(replies, ["pong", "pong", "error", "error", "error"]);
    assert_eq!(close, (CloseCode::Policy, "rate limit exceeded".to_owned()));
    client.ended().await;
    assert_eq!(disconnects(&ctx, DisconnectReason::RateLimitAbuse), 1);
}
