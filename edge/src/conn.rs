//! One client connection: a single task that reads frames, writes queued messages, pings, enforces
//! limits and takes part in the shutdown sequence.
//!
//! One task (not a reader and a writer) keeps per-connection memory small. Everything other tasks
//! have for the client, from room events to forwarded offers, arrives on its bounded queue
//! ([`crate::queue`]); replies to the client's own messages (errors, `pong`, `info`) are written
//! directly, in order. A client that does not read fills its queue, and what happens then depends
//! on who is sending:
//! - room events (from the router) and peer messages from other edges never wait: a full queue
//!   closes the client as a slow consumer (1008);
//! - a peer message from a client of this edge waits for room. Its sender's task parks it
//!   (`Handled::Parked`) and stops reading that sender's input, so TCP slows the sender alone,
//!   while it keeps writing the sender's own queue (two peers relaying to each other cannot
//!   deadlock). If the target makes no room within `--slow-client-timeout`, it is closed as a slow
//!   consumer and the sender carries on.
//!
//! # Layout
//! - this file: [`serve`], the loop, and the writes to the socket;
//! - `message`: the handling of one client message, which tells the loop what is left to do;
//! - `end`: how a connection ends (reason and close frame), and what a socket error means.

mod end;
mod message;
#[cfg(test)]
mod tests;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_proto::{ConnId, ProtocolError, ServerMessage};
use switchboard_rooms::Command;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use self::end::{Close, End};
use self::message::{Handled, Relay, deadline, room};
use crate::context::{ConnectionPermit, Context};
use crate::hosted::Access;
use crate::metrics::DisconnectReason;
use crate::queue;
use crate::ratelimit::RateLimiter;
use crate::registry::Outlet;
use crate::usage::TenantPermit;
use switchboard_proto::TenantId;
use switchboard_runtime::trace;
use switchboard_tenants::Snapshot;
use switchboard_tenants::token::Session;
use tokio::sync::watch;

/// Most queued messages written in one batch before flushing.
const WRITE_BATCH: usize = 64;

/// How long to wait for the client's close reply after sending a close frame, so that the frame is
/// not lost to a TCP reset when the socket is dropped with unread data.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;
type Stream<S> = futures_util::stream::SplitStream<WebSocketStream<S>>;

/// Hosted mode: what a connection carries besides its socket.
#[derive(Debug)]
pub struct Hosted {
    /// The verified token (tenant, room, grants).
    pub session: Arc<Session>,
    /// Its place in the tenant's connection count, and the tenant's message rate and usage.
    pub quota: TenantPermit,
}

/// Serves one upgraded WebSocket until it ends. `_permit` holds the connection's place under
/// `--max-connections` until then; `hosted`, in hosted mode, its tenant's. `trace_parent`: the
/// trace the client's commands belong to, if its upgrade named one.
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    ctx: Arc<Context>,
    _permit: ConnectionPermit,
    hosted: Option<Hosted>,
    trace_parent: Option<Box<trace::Context>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = ConnId::for_edge(ctx.edge, rand::random());
    let (tx, mut rx) = queue::bounded(ctx.limits.outbound_queue, ctx.metrics.queue.clone());
    let slow = CancellationToken::new();
    ctx.registry.register(id, Outlet::new(tx, slow.clone()));
    if let Some(grant) = ctx.turn_grant(id, hosted.as_ref().map(|h| &*h.session)) {
        ctx.registry.grant_turn(id, grant);
    }
    ctx.metrics.connections.inc();
    ctx.metrics.connections_accepted.inc();
    debug!(conn.id = %id, "connection opened");

    let (sink, mut stream) = ws.split();
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
        sink,
        announced: false,
        last_seen: now,
        hosted: hosted.map(Box::new),
        trace_parent,
    };
    let end = conn.run(&mut stream, &mut rx, &slow).await;
    if let Some(close) = end.close {
        conn.close(&mut stream, close).await;
    }
    // Closes the queue: a sender waiting for room in it stops waiting.
    drop(rx);

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
    ctx.metrics.disconnect(end.reason);
    debug!(conn.id = %id, reason = end.reason.label(), "connection closed");
}

/// Resolves once the tenant is no longer in force (deleted through the API or from the tenants
/// file); never in open mode. A change that keeps the tenant (a new limit, a revoked key) leaves
/// open connections alone: tokens are checked when a connection opens.
async fn tenant_deleted(tenants: &mut Option<(watch::Receiver<Arc<Snapshot>>, TenantId)>) {
    let Some((changes, id)) = tenants else {
        return std::future::pending().await;
    };
    loop {
        if changes.borrow_and_update().tenant(id).is_none() {
            return;
        }
        if changes.changed().await.is_err() {
            // The directory is gone: the edge is stopping, and its own shutdown closes us.
            return std::future::pending().await;
        }
    }
}

struct Conn<S> {
    id: ConnId,
    ctx: Arc<Context>,
    sink: Sink<S>,
    limiter: RateLimiter,
    /// Whether this client has been sent the `shutdown` event.
    announced: bool,
    last_seen: Instant,
    /// Hosted mode: the token and the tenant's quota. Boxed: one pointer, so an open-mode
    /// connection is no larger than before hosted mode.
    hosted: Option<Box<Hosted>>,
    /// The trace this client's commands continue, when its upgrade request carried one (a
    /// `traceparent`); boxed for the reason `hosted` is.
    trace_parent: Option<Box<trace::Context>>,
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The loop: waits for whichever comes first of the connection's inputs, and returns how the
    /// connection ends. At most one relay is parked, in a local of this loop; while it is, the
    /// client's frames are not read.
    async fn run(
        &mut self,
        stream: &mut Stream<S>,
        rx: &mut queue::Receiver,
        slow: &CancellationToken,
    ) -> End {
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
            && let Err(end) = self.announce(seconds).await
        {
            return end;
        }

        // Hosted mode: the tenants in force, to close this connection if its tenant is deleted.
        let mut tenants = match (&self.hosted, &self.ctx.access) {
            (Some(hosted), Access::Tokens { directory, .. }) => {
                Some((directory.subscribe(), hosted.session.tenant.id.clone()))
            }
            _ => None,
        };
        let mut parked: Option<Relay> = None;
        loop {
            tokio::select! {
                biased;
                () = slow.cancelled() => return self.cut(rx).await,
                () = tenant_deleted(&mut tenants) => return End::TENANT_DELETED,
                () = lifecycle_close.cancelled() => {
                    if !self.announced {
                        let _ = self.announce(0).await;
                    }
                    return End::SHUTDOWN;
                }
                Ok(()) = announce.changed() => {
                    let seconds = *announce.borrow_and_update();
                    if let Some(seconds) = seconds
                        && let Err(end) = self.announce(seconds).await
                    {
                        return end;
                    }
                }
                // Outbound before inbound: a client that sends at full speed must not starve its own
                // queue (and be cut as a slow consumer); reading less applies TCP backpressure to it.
                first = rx.recv() => {
                    if let Err(end) = self.write_batch(first, rx, slow).await {
                        return end;
                    }
                }
                () = room(&parked), if parked.is_some() => {
                    // Another sender may take the place first: then it stays parked, same deadline.
                    parked = parked.take().and_then(|relay| self.offer(relay));
                }
                () = sleep_until(deadline(&parked)), if parked.is_some() => {
                    // This client is read again.
                    if let Some(relay) = parked.take() {
                        relay.give_up();
                    }
                }
                frame = stream.next(), if parked.is_none() => {
                    let Some(frame) = frame else {
                        return End::quiet(DisconnectReason::ClientClosed);
                    };
                    self.last_seen = Instant::now();
                    let message = match frame {
                        Ok(message) => message,
                        Err(error) => return self.read_failed(error),
                    };
                    // Boxed: the handling of one message is the largest state of this loop, and
                    // inline it would be part of every idle connection's task. One allocation per
                    // message is cheap next to parsing it.
                    match Box::pin(self.on_message(message)).await {
                        Ok(Handled::Done) => {}
                        Ok(Handled::Parked(relay)) => parked = Some(relay),
                        Err(end) => return end,
                    }
                }
                _ = ping.tick() => {
                    if let Err(end) = self.write_timed(Message::Ping(Default::default())).await {
                        return end;
                    }
                }
                () = &mut idle => {
                    let deadline = self.last_seen + idle_timeout;
                    if Instant::now() >= deadline {
                        return End::IDLE_TIMEOUT;
                    }
                    // Re-armed lazily: traffic only moves `last_seen`, never the timer itself.
                    idle.as_mut().reset(deadline);
                }
            }
        }
    }

    /// The connection's switch was thrown: the control API removed it (then what is queued, its
    /// `removed by the service` error last, is written before the close), or it is a slow consumer.
    async fn cut(&mut self, rx: &mut queue::Receiver) -> End {
        if !self.ctx.registry.was_removed(self.id) {
            return End::SLOW_CONSUMER;
        }
        let io_timeout = self.ctx.limits.io_timeout;
        let write = async {
            while let Some(text) = rx.try_recv() {
                self.sink.feed(Message::Text(text)).await?;
            }
            self.sink.flush().await
        };
        match timeout(io_timeout, write).await {
            Ok(Ok(())) => End::REMOVED,
            Ok(Err(e)) => End::of_write_error(Some(&e)),
            Err(_) => End::of_write_error(None),
        }
    }

    /// Logs a failed read and says how the connection ends.
    fn read_failed(&self, error: WsError) -> End {
        let end = End::of_read_error(&error);
        match end.reason {
            DisconnectReason::FrameTooLarge => {
                info!(conn.id = %self.id, error = %error, "closing: frame too large");
            }
            DisconnectReason::ProtocolViolation => {
                debug!(conn.id = %self.id, error = %error, "closing: websocket protocol violation");
            }
            DisconnectReason::IoError => {
                debug!(conn.id = %self.id, error = %error, "closing: read error");
            }
            _ => {}
        }
        end
    }

    /// Writes `first` and whatever else is queued (up to a batch), then flushes once.
    async fn write_batch(
        &mut self,
        first: Utf8Bytes,
        rx: &mut queue::Receiver,
        slow: &CancellationToken,
    ) -> Result<(), End> {
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
                    Err(End::of_write_error(Some(&e)))
                }
                Err(_) => {
                    debug!(conn.id = %id, "write timed out");
                    Err(End::of_write_error(None))
                }
            },
            // A client stuck while its queue overflows is dropped at once, not after the timeout.
            // No close frame: the socket takes no writes.
            () = slow.cancelled() => Err(End::quiet(DisconnectReason::SlowConsumer)),
        }
    }

    async fn write_timed(&mut self, message: Message) -> Result<(), End> {
        match timeout(self.ctx.limits.io_timeout, self.sink.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(conn.id = %self.id, error = %e, "write failed");
                Err(End::of_write_error(Some(&e)))
            }
            Err(_) => {
                debug!(conn.id = %self.id, "write timed out");
                Err(End::of_write_error(None))
            }
        }
    }

    async fn reply(&mut self, message: ServerMessage) {
        let event = message.event();
        // A failed reply means the socket is gone; the read side will notice and end the task.
        if self
            .write_timed(Message::text(message.encode()))
            .await
            .is_ok()
        {
            self.ctx.metrics.messages_out(event, 1);
        }
    }

    /// Answers `error`; fails only if the socket does.
    async fn reply_error(&mut self, error: ProtocolError) -> Result<Handled, End> {
        self.ctx.metrics.error(error);
        self.write_timed(Message::text(ServerMessage::Error(error).encode()))
            .await
            .map(|()| Handled::Done)
    }

    async fn announce(&mut self, seconds: u64) -> Result<(), End> {
        self.announced = true;
        self.ctx.metrics.messages_out("shutdown", 1);
        self.write_timed(Message::text(ServerMessage::Shutdown { seconds }.encode()))
            .await
    }

    /// Sends a close frame, then waits briefly for the client's reply so the frame is not lost.
    async fn close(&mut self, stream: &mut Stream<S>, close: Close) {
        let frame = CloseFrame {
            code: CloseCode::from(close.code),
            reason: close.text.into(),
        };
        if self.write_timed(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = timeout(CLOSE_LINGER, drain).await;
    }
}
