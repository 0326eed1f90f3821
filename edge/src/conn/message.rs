//! The handling of one client message: rate limit, decode, the protocol's checks, and the way to
//! the router or the target peer. What is left for the loop to do comes back as [`Handled`].

use serde_json::{Map, Value};
use switchboard_proto::ConnId;
use switchboard_proto::bus::TenantScope;
use switchboard_proto::{ClientMessage, ProtocolError, ServerMessage, Status, decode_with_depth};
use switchboard_rooms::Command;
use switchboard_runtime::trace;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::field::{self, Empty};
use tracing::{Instrument as _, Span};

use super::Conn;
use super::end::End;
use crate::context::Context;
use crate::metrics;
use crate::ratelimit::Verdict;
use crate::registry::{Offer, Outlet, PeerRoute};
use switchboard_tenants::token::Session;

/// What handling one frame left for the loop to do.
pub(super) enum Handled {
    /// Nothing: read the next frame.
    Done,
    /// A peer message waits for room in its target's queue: read nothing more from this client until
    /// the target takes it, or is closed for not taking it in time.
    Parked(Relay),
}

/// A peer message for a client of this edge, from the moment it is read until its target's queue
/// takes it.
pub(super) struct Relay {
    outlet: Outlet,
    text: Utf8Bytes,
    event: &'static str,
    received: Instant,
    /// When the target is closed as a slow consumer if it still has no room.
    deadline: Instant,
}

impl Relay {
    /// Gives up on the target, which made no room in time: it is closed as a slow consumer, and the
    /// message dropped.
    pub(super) fn give_up(self) {
        self.outlet.mark_slow();
    }
}

/// Waits until the parked relay's target has room (never, when nothing is parked).
pub(super) async fn room(parked: &Option<Relay>) {
    match parked {
        Some(relay) => relay.outlet.room(relay.text.len()).await,
        None => std::future::pending().await,
    }
}

pub(super) fn deadline(parked: &Option<Relay>) -> Instant {
    parked
        .as_ref()
        .map_or_else(Instant::now, |relay| relay.deadline)
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Handles one frame.
    pub(super) async fn on_message(&mut self, message: Message) -> Result<Handled, End> {
        let text = match message {
            Message::Text(text) => Some(text),
            // Binary frames are not part of the protocol; they are answered, never fatal.
            Message::Binary(_) => None,
            // tungstenite answers pings itself; they take a token all the same, or a flood of them
            // would be free work for the server.
            Message::Ping(_) | Message::Pong(_) => return self.on_control_frame(),
            // tungstenite answers close frames itself.
            Message::Close(_) | Message::Frame(_) => return Ok(Handled::Done),
        };
        match self.limiter.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Drop => {
                self.ctx.metrics.message_in(metrics::INVALID);
                return self.reply_error(ProtocolError::RateLimited).await;
            }
            Verdict::Close => {
                self.ctx.metrics.message_in(metrics::INVALID);
                return Err(End::RATE_LIMIT_ABUSE);
            }
        }
        let Some(text) = text else {
            self.ctx.metrics.message_in(metrics::INVALID);
            return self.reply_error(ProtocolError::InvalidMessage).await;
        };
        let received = Instant::now();
        let result = match decode_with_depth(&text, self.ctx.limits.max_json_depth) {
            Ok(message) => {
                self.ctx.metrics.message_in(message.event());
                if self.over_tenant_rate(&message, received) {
                    return self.reply_error(ProtocolError::TenantRateLimited).await;
                }
                let span = self.command_span(&message);
                let result = self
                    .on_client_message(message, received)
                    .instrument(span.clone())
                    .await;
                if let Err(error) = &result {
                    span.record("sb.error", error.reason());
                    span.record("otel.status_code", "error");
                }
                result
            }
            Err(error) => {
                self.ctx.metrics.message_in(metrics::INVALID);
                Err(error)
            }
        };
        match result {
            Ok(handled) => Ok(handled),
            Err(error) => self.reply_error(error).await,
        }
    }

    /// The span of one client command (none for `info` and `ping`, nor while tracing is off): a
    /// root of its own trace, or a child of the client's trace when its upgrade carried one.
    fn command_span(&self, message: &ClientMessage) -> Span {
        let name = match message {
            ClientMessage::JoinRoom { .. } => "client.join_room",
            ClientMessage::LeaveRoom => "client.leave_room",
            ClientMessage::UpdateStatus { .. } => "client.update_status",
            // Its own span, on the relay path (`send_to_peer`).
            ClientMessage::SendToPeer { .. } | ClientMessage::Info | ClientMessage::Ping => {
                return Span::none();
            }
        };
        // A new trace, unless the client's upgrade named one for its connection.
        switchboard_runtime::trace_start!(
            self.trace_parent.as_deref().cloned();
            "client command",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = Empty,
            sb.conn = %self.id,
            sb.tenant = self.session().map(|s| s.tenant.id.as_str()),
            sb.room = Empty,
            sb.error = Empty,
        )
    }

    /// Hosted mode: whether `message` is over its tenant's message rate (then it is dropped and
    /// answered, never closing the connection). `ping` is spared: palava-client closes its socket
    /// after six unanswered pings, and a tenant over its rate should lose messages, not
    /// connections.
    fn over_tenant_rate(&self, message: &ClientMessage, now: Instant) -> bool {
        match &self.hosted {
            Some(hosted) if !matches!(message, ClientMessage::Ping) => {
                !hosted.quota.try_message(now)
            }
            _ => false,
        }
    }

    /// The verified token, in hosted mode.
    fn session(&self) -> Option<&Session> {
        self.hosted.as_deref().map(|hosted| &*hosted.session)
    }

    /// A ping or pong takes a token like any message. One over the limit is dropped without an
    /// error (there is no request to answer, and a reply would feed the flood); sustained abuse
    /// closes the connection as for text messages.
    fn on_control_frame(&mut self) -> Result<Handled, End> {
        match self.limiter.check(Instant::now()) {
            Verdict::Allow => Ok(Handled::Done),
            Verdict::Drop => {
                self.ctx.metrics.message_in(metrics::INVALID);
                Ok(Handled::Done)
            }
            Verdict::Close => {
                self.ctx.metrics.message_in(metrics::INVALID);
                Err(End::RATE_LIMIT_ABUSE)
            }
        }
    }

    async fn on_client_message(
        &mut self,
        message: ClientMessage,
        received: Instant,
    ) -> Result<Handled, ProtocolError> {
        let ctx = self.ctx.clone();
        match message {
            ClientMessage::Info => self.reply(ServerMessage::Info).await,
            ClientMessage::Ping => self.reply(ServerMessage::Pong).await,
            ClientMessage::JoinRoom { room_id, status } => {
                // Protocol order: room id (checked by decode), already joined, then what the
                // token allows (hosted mode), then status.
                if ctx.registry.membership(self.id).room().is_some() {
                    return Err(ProtocolError::AlreadyJoined);
                }
                if let Some(session) = self.session() {
                    if !session.may_join {
                        return Err(ProtocolError::JoinNotAllowed);
                    }
                    if session
                        .room
                        .as_deref()
                        .is_some_and(|allowed| allowed != room_id.as_str())
                    {
                        return Err(ProtocolError::RoomNotAllowed);
                    }
                }
                let status = Status::validate(self.named(status, true), &ctx.status_rules)?;
                let (room, tenant) = match self.session() {
                    None => (ctx.keyer.key(&room_id), None),
                    Some(session) => {
                        let tenant = &session.tenant;
                        let scope = TenantScope {
                            id: tenant.id.clone(),
                            max_rooms: tenant.limits.max_rooms,
                            max_room_size: tenant.limits.max_room_size,
                            room_name: Some(room_id.as_str().to_string()),
                        };
                        (ctx.keyer.key_in(&tenant.id, &room_id), Some(scope))
                    }
                };
                Span::current().record("sb.room", field::display(room));
                let tenant_id = tenant.as_ref().map(|scope| scope.id.clone());
                let room_name = tenant.as_ref().map(|_| room_id.as_str());
                ctx.registry
                    .begin_join(self.id, room, status.stored(), tenant_id, room_name)?;
                let join = Command::Join {
                    conn: self.id,
                    edge: ctx.edge,
                    room,
                    status,
                    tenant,
                };
                if ctx.bus.command(join).await.is_err() {
                    ctx.registry.leave(self.id);
                    return Err(ProtocolError::Unavailable);
                }
            }
            ClientMessage::LeaveRoom => {
                // Leaving when in no room is silently ignored, as in palava.
                if let Some(room) = ctx.registry.leave(self.id) {
                    Span::current().record("sb.room", field::display(room));
                    let leave = Command::Leave {
                        conn: self.id,
                        edge: ctx.edge,
                        room,
                    };
                    let _ = ctx.bus.command(leave).await;
                }
            }
            ClientMessage::UpdateStatus { status } => {
                let room = ctx
                    .registry
                    .membership(self.id)
                    .room()
                    .ok_or(ProtocolError::NotInRoom)?;
                Span::current().record("sb.room", field::display(room));
                let status = Status::validate(self.named(status, false), &ctx.status_rules)?;
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
            }
            ClientMessage::SendToPeer { peer_id, data } => {
                // The relay path's span is made by the SDK directly (`trace::Leaf`): at 10%
                // sampling every tenth relayed message has one.
                let mut span = trace::Leaf::start(
                    "client.send_to_peer",
                    trace::SpanKind::Server,
                    self.trace_parent.as_deref().cloned(),
                );
                if span.is_on() {
                    span.set("sb.conn", || self.id.to_string());
                    if let Some(session) = self.session() {
                        span.set("sb.tenant", || session.tenant.id.as_str().to_owned());
                    }
                }
                let result = self
                    .send_to_peer(&ctx, &mut span, peer_id, data, received)
                    .await;
                if let Err(error) = &result {
                    span.error(error.reason());
                }
                return result;
            }
        }
        Ok(Handled::Done)
    }

    /// `send_to_peer`: to a client of this edge (its queue), or over the bus to another edge.
    async fn send_to_peer(
        &mut self,
        ctx: &Context,
        span: &mut trace::Leaf,
        peer_id: Option<ConnId>,
        data: Map<String, Value>,
        received: Instant,
    ) -> Result<Handled, ProtocolError> {
        let (route, event) = ctx.registry.route_to_peer(self.id, peer_id, &data)?;
        span.set("sb.event", || event.name());
        if let Some(peer) = peer_id {
            span.set("sb.peer", || peer.to_string());
        }
        span.set("sb.route", || match route {
            PeerRoute::Local(_) => "local",
            PeerRoute::Remote(_) => "remote",
            PeerRoute::Gone => "gone",
        });
        // After the protocol's own checks, so a token without `send` learns nothing about the
        // room's peers it could not learn otherwise.
        if self.session().is_some_and(|s| !s.may_send) {
            return Err(ProtocolError::SendNotAllowed);
        }
        let text = || {
            Utf8Bytes::from(
                ServerMessage::Forward {
                    sender_id: self.id,
                    data,
                }
                .encode(),
            )
        };
        match route {
            PeerRoute::Local(outlet) => {
                let relay = Relay {
                    outlet,
                    text: text(),
                    event: event.name(),
                    received,
                    deadline: received + ctx.limits.slow_client_timeout,
                };
                return Ok(self.offer(relay).map_or(Handled::Done, Handled::Parked));
            }
            PeerRoute::Remote(target) => {
                let room = ctx
                    .registry
                    .membership(self.id)
                    .room()
                    .ok_or(ProtocolError::NotInRoom)?;
                // A failed publish means the bus is down: the message is lost like one sent just
                // before a crash; the client's ICE restart or a new offer recovers. Counted as
                // sent to a client by the edge that writes it to its socket.
                if ctx
                    .bus
                    .relay(target, room, event.name(), text(), span)
                    .await
                    .is_ok()
                {
                    ctx.metrics
                        .relay_seconds
                        .observe(received.elapsed().as_secs_f64());
                    self.count_relayed();
                }
            }
            PeerRoute::Gone => {}
        }
        Ok(Handled::Done)
    }

    /// The status with the token's `name` (hosted mode) in place of the client's: a token that
    /// names its user decides the name others see. On a join the name is added to a status without
    /// one; on an update only a `name` the client sends is replaced (the stored one stays).
    fn named(&self, status: Option<Value>, joining: bool) -> Option<Value> {
        let Some(name) = self.session().and_then(|s| s.name.as_deref()) else {
            return status;
        };
        match status {
            None | Some(Value::Null) if joining => {
                let mut map = Map::new();
                map.insert("name".into(), Value::String(name.to_owned()));
                Some(Value::Object(map))
            }
            Some(Value::Object(mut map)) if joining || map.contains_key("name") => {
                map.insert("name".into(), Value::String(name.to_owned()));
                Some(Value::Object(map))
            }
            other => other,
        }
    }

    /// Hosted mode: counts a forwarded peer message in its tenant's usage.
    fn count_relayed(&self) {
        if let Some(hosted) = &self.hosted {
            hosted.quota.relayed();
        }
    }

    /// Offers `relay` to its target's queue; hands it back if the queue is full.
    pub(super) fn offer(&self, relay: Relay) -> Option<Relay> {
        match relay.outlet.offer(relay.text) {
            Ok(()) => {
                self.count_relayed();
                self.ctx.metrics.messages_out(relay.event, 1);
                self.ctx
                    .metrics
                    .relay_seconds
                    .observe(relay.received.elapsed().as_secs_f64());
                None
            }
            Err(Offer::Full(text)) => Some(Relay { text, ..relay }),
            // The target is closing; its `peer_left` is on the way.
            Err(Offer::Gone) => None,
        }
    }
}
