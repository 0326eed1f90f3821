//! One client connection: a single task that reads frames, writes queued messages, pings, enforces
//! limits and takes part in the shutdown sequence.
//!
//! One task (not a reader and a writer) keeps per-connection memory small. Everything for the client,
//! from room events to forwarded offers, arrives on a bounded queue filled by other tasks with
//! `try_send`: a client that does not read fills its queue and is closed as a slow consumer, so it can
//! never slow down a sender or grow memory. Replies to the client's own messages (errors, `pong`,
//! `info`) are written directly, in order.

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_proto::limits::close_code;
use switchboard_proto::{
    ClientMessage, ConnId, ProtocolError, ServerMessage, Status, decode_with_depth,
};
use switchboard_rooms::Command;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError as ProtocolViolation;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::context::{ConnectionPermit, Context};
use crate::metrics::{self, DisconnectReason};
use crate::queue;
use crate::ratelimit::{RateLimiter, Verdict};
use crate::registry::{Offer, Outlet, PeerRoute};

/// Most queued messages written in one batch before flushing.
const WRITE_BATCH: usize = 64;

/// How long to wait for the client's close reply after sending a close frame, so that the frame is
/// not lost to a TCP reset when the socket is dropped with unread data.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;
type Stream<S> = futures_util::stream::SplitStream<WebSocketStream<S>>;

/// Serves one upgraded WebSocket until it ends. `_permit` holds the connection's place under
/// `--max-connections` until then.
pub async fn serve<S>(ws: WebSocketStream<S>, ctx: Arc<Context>, _permit: ConnectionPermit)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = ConnId::for_edge(ctx.edge, rand::random());
    let (tx, rx) = queue::bounded(ctx.limits.outbound_queue, ctx.metrics.queue.clone());
    let slow = CancellationToken::new();
    ctx.registry.register(id, Outlet::new(tx, slow.clone()));
    ctx.metrics.connections.inc();
    ctx.metrics.connections_accepted.inc();
    debug!(conn.id = %id, "connection opened");

    let (sink, stream) = ws.split();
    let now = Instant::now();
    let mut conn = Conn {
        id,
        limiter: RateLimiter::new(
            ctx.limits.rate_limit,
            ctx.limits.rate_burst,
            ctx.limits.rate_limit_close_after,
            now,
        ),
        ctx: ctx.clone(),
        blocked: None,
        sink,
        announced: false,
        last_seen: now,
    };
    let reason = conn.run(stream, rx, slow).await;

    // The one cleanup path, whatever ended the connection: a socket close is a leave_room.
    if let Some(room) = ctx.registry.unregister(id).room() {
        let leave = Command::Leave {
            conn: id,
            edge: ctx.edge,
            room,
        };
        // If the router is gone the process is stopping and the room with it.
        let _ = ctx.bus.command(leave).await;
    }
    ctx.metrics.connections.dec();
    ctx.metrics.disconnect(reason);
    debug!(conn.id = %id, reason = reason.label(), "connection closed");
}

struct Conn<S> {
    id: ConnId,
    /// A relay waiting for room in its target's queue, set by `on_message`.
    blocked: Option<Blocked>,
    ctx: Arc<Context>,
    sink: Sink<S>,
    limiter: RateLimiter,
    /// Whether this client has been sent the `shutdown` event.
    announced: bool,
    last_seen: Instant,
}

/// A peer message waiting for room in its target's queue. While one waits, the sender's input is not
/// read (backpressure on the sender alone) but its own queue keeps draining, so two peers relaying to
/// each other can never deadlock. A target that stays full past `--slow-client-timeout` is closed.
struct Blocked {
    outlet: Outlet,
    text: Utf8Bytes,
    event: &'static str,
    received: Instant,
    deadline: Instant,
}

/// Waits until the blocked relay's target has room (never, when nothing is blocked).
async fn room(blocked: &Option<Blocked>) {
    match blocked {
        Some(blocked) => blocked.outlet.room(blocked.text.len()).await,
        None => std::future::pending().await,
    }
}

fn deadline(blocked: &Option<Blocked>) -> Instant {
    blocked.as_ref().map_or_else(Instant::now, |b| b.deadline)
}

/// Why the write side failed.
enum WriteFailure {
    Io,
    Closed(DisconnectReason),
    SlowConsumer,
}

/// A write that fails because the client already went away is the client closing, not an I/O
/// problem of ours.
fn write_error_reason(error: &WsError) -> DisconnectReason {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => DisconnectReason::ClientClosed,
        WsError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) =>
        {
            DisconnectReason::ClientClosed
        }
        _ => DisconnectReason::IoError,
    }
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(
        &mut self,
        mut stream: Stream<S>,
        mut rx: queue::Receiver,
        slow: CancellationToken,
    ) -> DisconnectReason {
        // Copied out rather than cloning all limits: this future lives as long as the connection.
        let (ping_interval, idle_timeout) =
            (self.ctx.limits.ping_interval, self.ctx.limits.idle_timeout);
        let lifecycle_close = self.ctx.lifecycle.close_all.clone();
        let mut announce = self.ctx.lifecycle.announce.subscribe();
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut idle = pin!(sleep_until(self.last_seen + idle_timeout));

        // A connection that arrives while the edge is already draining hears about it at once.
        let already = *announce.borrow_and_update();
        if let Some(seconds) = already
            && self.announce(seconds).await.is_err()
        {
            return DisconnectReason::IoError;
        }

        let mut blocked: Option<Blocked> = None;
        loop {
            tokio::select! {
                biased;
                () = slow.cancelled() => {
                    self.close(&mut stream, close_code::POLICY, "slow consumer").await;
                    return DisconnectReason::SlowConsumer;
                }
                () = lifecycle_close.cancelled() => {
                    if !self.announced {
                        let _ = self.announce(0).await;
                    }
                    self.close(&mut stream, close_code::SHUTDOWN, "server shutting down").await;
                    return DisconnectReason::Shutdown;
                }
                Ok(()) = announce.changed() => {
                    let seconds = *announce.borrow_and_update();
                    if let Some(seconds) = seconds
                        && self.announce(seconds).await.is_err()
                    {
                        return DisconnectReason::IoError;
                    }
                }
                // Outbound before inbound: a client that sends at full speed must not starve its own
                // queue (and be cut as a slow consumer); reading less applies TCP backpressure to it.
                first = rx.recv() => {
                    match self.write_batch(first, &mut rx, &slow).await {
                        Ok(()) => {}
                        Err(WriteFailure::Io) => return DisconnectReason::IoError,
                        Err(WriteFailure::Closed(reason)) => return reason,
                        Err(WriteFailure::SlowConsumer) => return DisconnectReason::SlowConsumer,
                    }
                }
                () = room(&blocked), if blocked.is_some() => {
                    if let Some(b) = blocked.take() {
                        match b.outlet.offer(b.text) {
                            Ok(()) => self.relayed(b.event, b.received),
                            // Another sender took the place first: wait again, same deadline.
                            Err(Offer::Full(text)) => blocked = Some(Blocked { text, ..b }),
                            Err(Offer::Gone) => {}
                        }
                    }
                }
                () = sleep_until(deadline(&blocked)), if blocked.is_some() => {
                    if let Some(b) = blocked.take() {
                        b.outlet.mark_slow();
                    }
                }
                frame = stream.next(), if blocked.is_none() => {
                    let Some(frame) = frame else {
                        return DisconnectReason::ClientClosed;
                    };
                    self.last_seen = Instant::now();
                    match frame {
                        Ok(message) => {
                            // Boxed: the handling of one message is the largest state of this
                            // loop, and inline it would be part of every idle connection's task.
                            // One allocation per message is cheap next to parsing it.
                            if let Some(reason) = Box::pin(self.on_message(message)).await {
                                if reason == DisconnectReason::RateLimitAbuse {
                                    self.close(&mut stream, close_code::POLICY, "rate limit exceeded").await;
                                }
                                return reason;
                            }
                            blocked = self.blocked.take();
                        }
                        Err(e) => return self.on_read_error(e, &mut stream).await,
                    }
                }
                _ = ping.tick() => {
                    if self.write_timed(Message::Ping(Default::default())).await.is_err() {
                        return DisconnectReason::IoError;
                    }
                }
                () = &mut idle => {
                    let deadline = self.last_seen + idle_timeout;
                    if Instant::now() >= deadline {
                        self.close(&mut stream, close_code::NORMAL, "idle timeout").await;
                        return DisconnectReason::IdleTimeout;
                    }
                    // Re-armed lazily: traffic only moves `last_seen`, never the timer itself.
                    idle.as_mut().reset(deadline);
                }
            }
        }
    }

    /// Handles one frame; `Some` ends the connection.
    async fn on_message(&mut self, message: Message) -> Option<DisconnectReason> {
        let text = match message {
            Message::Text(text) => Some(text),
            // Binary frames are not part of the protocol; they are answered, never fatal.
            Message::Binary(_) => None,
            // tungstenite answers pings itself; they take a token all the same, or a flood of them
            // would be free work for the server.
            Message::Ping(_) | Message::Pong(_) => return self.on_control_frame(),
            // tungstenite answers close frames itself.
            Message::Close(_) | Message::Frame(_) => return None,
        };
        match self.limiter.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Drop => {
                self.ctx.metrics.message_in(metrics::INVALID);
                return self.reply_error(ProtocolError::RateLimited).await.err();
            }
            Verdict::Close => {
                self.ctx.metrics.message_in(metrics::INVALID);
                return Some(DisconnectReason::RateLimitAbuse);
            }
        }
        let Some(text) = text else {
            self.ctx.metrics.message_in(metrics::INVALID);
            return self.reply_error(ProtocolError::InvalidMessage).await.err();
        };
        let received = Instant::now();
        let result = match decode_with_depth(&text, self.ctx.limits.max_json_depth) {
            Ok(message) => {
                self.ctx.metrics.message_in(message.event());
                self.on_client_message(message, received).await
            }
            Err(error) => {
                self.ctx.metrics.message_in(metrics::INVALID);
                Err(error)
            }
        };
        match result {
            Ok(()) => None,
            Err(error) => self.reply_error(error).await.err(),
        }
    }

    /// A ping or pong takes a token like any message. One over the limit is dropped without an
    /// error (there is no request to answer, and a reply would feed the flood); sustained abuse
    /// closes the connection as for text messages.
    fn on_control_frame(&mut self) -> Option<DisconnectReason> {
        match self.limiter.check(Instant::now()) {
            Verdict::Allow => None,
            Verdict::Drop => {
                self.ctx.metrics.message_in(metrics::INVALID);
                None
            }
            Verdict::Close => {
                self.ctx.metrics.message_in(metrics::INVALID);
                Some(DisconnectReason::RateLimitAbuse)
            }
        }
    }

    async fn on_client_message(
        &mut self,
        message: ClientMessage,
        received: Instant,
    ) -> Result<(), ProtocolError> {
        let ctx = self.ctx.clone();
        match message {
            ClientMessage::Info => self.reply(ServerMessage::Info).await,
            ClientMessage::Ping => self.reply(ServerMessage::Pong).await,
            ClientMessage::JoinRoom { room_id, status } => {
                // Protocol order: room id (checked by decode), already joined, then status.
                if ctx.registry.membership(self.id).room().is_some() {
                    return Err(ProtocolError::AlreadyJoined);
                }
                let status = Status::validate(status, &ctx.status_rules)?;
                let room = ctx.keyer.key(&room_id);
                ctx.registry.begin_join(self.id, room, status.stored())?;
                let join = Command::Join {
                    conn: self.id,
                    edge: ctx.edge,
                    room,
                    status,
                };
                if ctx.bus.command(join).await.is_err() {
                    ctx.registry.leave(self.id);
                    return Err(ProtocolError::Unavailable);
                }
                Ok(())
            }
            ClientMessage::LeaveRoom => {
                // Leaving when in no room is silently ignored, as in palava.
                if let Some(room) = ctx.registry.leave(self.id) {
                    let leave = Command::Leave {
                        conn: self.id,
                        edge: ctx.edge,
                        room,
                    };
                    let _ = ctx.bus.command(leave).await;
                }
                Ok(())
            }
            ClientMessage::UpdateStatus { status } => {
                let room = ctx
                    .registry
                    .membership(self.id)
                    .room()
                    .ok_or(ProtocolError::NotInRoom)?;
                let status = Status::validate(status, &ctx.status_rules)?;
                let stored = status.stored();
                let update = Command::UpdateStatus {
                    conn: self.id,
                    edge: ctx.edge,
                    room,
                    status,
                };
                ctx.bus
                    .command(update)
                    .await
                    .map_err(|_| ProtocolError::Unavailable)?;
                ctx.registry.merge_status(self.id, stored);
                Ok(())
            }
            ClientMessage::SendToPeer { peer_id, data } => {
                let (route, event) = ctx.registry.route_to_peer(self.id, peer_id, &data)?;
                let text = || {
                    Utf8Bytes::from(
                        ServerMessage::Forward {
                            sender_id: self.id,
                            data,
                        }
                        .encode(),
                    )
                };
                if let PeerRoute::Remote(target) = route {
                    let room = ctx
                        .registry
                        .membership(self.id)
                        .room()
                        .ok_or(ProtocolError::NotInRoom)?;
                    // A failed publish means the bus is down: the message is lost like one sent
                    // just before a crash; the client's ICE restart or a new offer recovers.
                    // Counted as sent to a client by the edge that writes it to its socket.
                    if ctx
                        .bus
                        .relay(target, room, event.name(), text())
                        .await
                        .is_ok()
                    {
                        ctx.metrics
                            .relay_seconds
                            .observe(received.elapsed().as_secs_f64());
                    }
                } else if let PeerRoute::Local(outlet) = route {
                    match outlet.offer(text()) {
                        Ok(()) => self.relayed(event.name(), received),
                        Err(Offer::Full(text)) => {
                            self.blocked = Some(Blocked {
                                outlet,
                                text,
                                event: event.name(),
                                received,
                                deadline: Instant::now() + ctx.limits.slow_client_timeout,
                            });
                        }
                        Err(Offer::Gone) => {}
                    }
                }
                Ok(())
            }
        }
    }

    fn relayed(&self, event: &'static str, received: Instant) {
        self.ctx.metrics.messages_out(event, 1);
        self.ctx
            .metrics
            .relay_seconds
            .observe(received.elapsed().as_secs_f64());
    }

    async fn on_read_error(&mut self, error: WsError, stream: &mut Stream<S>) -> DisconnectReason {
        match error {
            WsError::Capacity(e) => {
                info!(conn.id = %self.id, error = %e, "closing: frame too large");
                self.close(stream, close_code::TOO_BIG, "message too big")
                    .await;
                DisconnectReason::FrameTooLarge
            }
            WsError::Utf8(_) => {
                self.close(stream, close_code::INVALID_PAYLOAD, "invalid utf-8")
                    .await;
                DisconnectReason::ProtocolViolation
            }
            // A client that vanishes without a close frame (tab closed, network gone) just left.
            WsError::Protocol(ProtocolViolation::ResetWithoutClosingHandshake) => {
                DisconnectReason::ClientClosed
            }
            WsError::Protocol(e) => {
                debug!(conn.id = %self.id, error = %e, "closing: websocket protocol violation");
                self.close(stream, close_code::PROTOCOL_ERROR, "protocol error")
                    .await;
                DisconnectReason::ProtocolViolation
            }
            WsError::ConnectionClosed | WsError::AlreadyClosed => DisconnectReason::ClientClosed,
            WsError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                DisconnectReason::ClientClosed
            }
            e => {
                debug!(conn.id = %self.id, error = %e, "closing: read error");
                DisconnectReason::IoError
            }
        }
    }

    /// Writes `first` and whatever else is queued (up to a batch), then flushes once.
    async fn write_batch(
        &mut self,
        first: Utf8Bytes,
        rx: &mut queue::Receiver,
        slow: &CancellationToken,
    ) -> Result<(), WriteFailure> {
        let io_timeout = self.ctx.limits.io_timeout;
        let write = async {
            self.sink.feed(Message::Text(first)).await?;
            for _ in 1..WRITE_BATCH {
                match rx.try_recv() {
                    Some(text) => self.sink.feed(Message::Text(text)).await?,
                    None => break,
                }
            }
            self.sink.flush().await
        };
        let id = self.id;
        tokio::select! {
            result = timeout(io_timeout, write) => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    debug!(conn.id = %id, error = %e, "write failed");
                    Err(WriteFailure::Closed(write_error_reason(&e)))
                }
                Err(_) => {
                    debug!(conn.id = %id, "write timed out");
                    Err(WriteFailure::Io)
                }
            },
            // A client stuck while its queue overflows is dropped at once, not after the timeout.
            () = slow.cancelled() => Err(WriteFailure::SlowConsumer),
        }
    }

    async fn write_timed(&mut self, message: Message) -> Result<(), DisconnectReason> {
        match timeout(self.ctx.limits.io_timeout, self.sink.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(conn.id = %self.id, error = %e, "write failed");
                Err(write_error_reason(&e))
            }
            Err(_) => {
                debug!(conn.id = %self.id, "write timed out");
                Err(DisconnectReason::IoError)
            }
        }
    }

    async fn reply(&mut self, message: ServerMessage) -> Result<(), ProtocolError> {
        let event = message.event();
        // A failed reply means the socket is gone; the read side will notice and end the task.
        if self
            .write_timed(Message::text(message.encode()))
            .await
            .is_ok()
        {
            self.ctx.metrics.messages_out(event, 1);
        }
        Ok(())
    }

    async fn reply_error(&mut self, error: ProtocolError) -> Result<(), DisconnectReason> {
        self.ctx.metrics.error(error);
        self.write_timed(Message::text(ServerMessage::Error(error).encode()))
            .await
    }

    async fn announce(&mut self, seconds: u64) -> Result<(), DisconnectReason> {
        self.announced = true;
        self.ctx.metrics.messages_out("shutdown", 1);
        self.write_timed(Message::text(ServerMessage::Shutdown { seconds }.encode()))
            .await
    }

    /// Sends a close frame, then waits briefly for the client's reply so the frame is not lost.
    async fn close(&mut self, stream: &mut Stream<S>, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        if self.write_timed(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = timeout(CLOSE_LINGER, drain).await;
    }
}
