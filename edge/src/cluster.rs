//! The edge as a node of a cluster: what it receives over NATS and what it keeps telling the routers.
//!
//! - Everything addressed to the edge arrives on one subscription (`sb.edge.<edge>.>`) and is handled
//!   by one task, in arrival order: peer messages for its connections (`….conn.<id>`) go to their
//!   targets if these are still in the room the message was sent in; room events and refusals from
//!   routers (`….events`) go through the registry exactly as the in-process router's do.
//! - Resync requests (`sb.resync`) from a router taking over (or reconciling) a slot are answered with
//!   this edge's members there and what their clients were told the rooms hold: the edges are the
//!   ground truth of who is connected. The request's lease epoch is recorded first: from then on,
//!   events and replies of older epochs (a deposed router) are dropped.
//! - When NATS drops messages for this edge (slow consumer), room events may be lost: the edge asks
//!   the routers to reconcile (`sb.reconcile`).
//! - Heartbeats tell the routers this edge is alive; when they stop, its members are removed.
//! - After the NATS connection comes back, or when a router asks, every member is re-announced
//!   (`Rejoin`, idempotent at the router), so memberships are re-established without duplicates.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Message;
use futures_util::StreamExt;
use switchboard_proto::bus::{
    Command, EdgeEvent, Heartbeat, MemberRecord, ReconcileRequest, ResyncRequest,
};
use switchboard_proto::{ConnId, RoomKey, subject};
use switchboard_runtime::nats::Link;
use switchboard_runtime::trace;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::field::{self, Empty};
use tracing::{Instrument as _, Span, debug, info, warn};

use crate::bus::NatsBus;
use crate::context::Context;
use crate::registry::Membership;

/// Subscribes and starts the edge's cluster tasks; they end when the edge has stopped.
pub async fn start(
    ctx: Arc<Context>,
    bus: NatsBus,
    heartbeat_interval: Duration,
) -> Result<Vec<JoinHandle<()>>, async_nats::SubscribeError> {
    let client = bus.client.clone();
    let inbox = client.subscribe(subject::edge_inbox(ctx.edge)).await?;
    let resyncs = client.subscribe(subject::RESYNC).await?;
    // No flush here: the subscriptions are queued on the same connection ahead of the first
    // heartbeat (which is what makes routers talk to this edge), so they reach the server first. Not
    // waiting lets the edge serve /healthz and report /readyz 503 while NATS is unreachable.
    Ok(vec![
        tokio::spawn(inbox_loop(ctx.clone(), bus.clone(), inbox)),
        tokio::spawn(resync_loop(ctx.clone(), bus.clone(), resyncs)),
        tokio::spawn(reconcile_after_loss(ctx.clone(), bus.clone())),
        tokio::spawn(heartbeat_loop(ctx, bus, heartbeat_interval)),
    ])
}

async fn inbox_loop(ctx: Arc<Context>, bus: NatsBus, mut inbox: async_nats::Subscriber) {
    let stopped = ctx.lifecycle.stopped.clone();
    let events_subject = subject::edge_events(ctx.edge);
    loop {
        let message = tokio::select! {
            () = stopped.cancelled() => return,
            message = inbox.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        if message.subject.as_str() == events_subject {
            let span = switchboard_runtime::trace_continue!(
                parent_of(&message);
                "edge.deliver",
                otel.kind = "consumer",
                sb.room = Empty,
                sb.event = Empty,
                sb.recipients = Empty,
                sb.stale = Empty,
            );
            span.in_scope(|| on_event(&ctx, &bus, &message));
        } else if let Some((target, room, event, text)) = parse_relay(&message) {
            // The hottest span there is: made by the SDK directly (`trace::Leaf`).
            let mut span = trace::Leaf::continuing(
                "edge.relay",
                trace::SpanKind::Consumer,
                parent_of(&message),
            );
            span.set("sb.conn", || target.to_string());
            span.set("sb.event", || event.clone());
            ctx.registry.deliver_relay(target, room, &event, text);
        } else {
            debug!(subject = %message.subject, "malformed message for this edge");
        }
    }
}

/// The trace context `message` carries, if any (only a traced sender adds one).
fn parent_of(message: &Message) -> Option<trace::Context> {
    message.headers.as_ref().and_then(trace::extract)
}

fn parse_relay(message: &Message) -> Option<(ConnId, RoomKey, String, Utf8Bytes)> {
    let target: ConnId = message.subject.as_str().rsplit('.').next()?.parse().ok()?;
    let headers = message.headers.as_ref()?;
    let room: RoomKey = headers.get(subject::HEADER_ROOM)?.as_str().parse().ok()?;
    let event = headers.get(subject::HEADER_EVENT)?.as_str().to_string();
    let text = Utf8Bytes::try_from(message.payload.clone()).ok()?;
    Some((target, room, event, text))
}

fn on_event(ctx: &Arc<Context>, bus: &NatsBus, message: &Message) {
    let span = Span::current();
    let admit = |room: RoomKey, epoch: u64| {
        span.record("sb.room", field::display(room));
        let admitted = bus.epochs.admit(room.slot(bus.slots), epoch);
        span.record("sb.stale", !admitted);
        if !admitted {
            ctx.metrics.stale_epochs.inc();
            debug!(%room, epoch, "dropped an event of a deposed router");
        }
        admitted
    };
    match serde_json::from_slice::<EdgeEvent>(&message.payload) {
        Ok(EdgeEvent::Deliver {
            epoch,
            room,
            to,
            message,
        }) => {
            span.record("sb.event", message.event());
            span.record("sb.recipients", to.len());
            if admit(room, epoch) {
                ctx.registry.deliver(room, &to, message);
            }
        }
        Ok(EdgeEvent::Refuse {
            epoch,
            conn,
            room,
            error,
        }) => {
            span.record("sb.event", "refuse");
            span.record("sb.recipients", 1);
            if admit(room, epoch) {
                ctx.registry.refuse(conn, room, error);
            }
        }
        Ok(EdgeEvent::Remove { epoch, room, to }) => {
            span.record("sb.event", "remove");
            span.record("sb.recipients", to.len());
            if admit(room, epoch) {
                ctx.registry.remove_by_service(room, &to);
            }
        }
        Err(e) => debug!(error = %e, "malformed event from a router"),
    }
}

async fn resync_loop(ctx: Arc<Context>, bus: NatsBus, mut requests: async_nats::Subscriber) {
    let client = bus.client.clone();
    let stopped = ctx.lifecycle.stopped.clone();
    loop {
        let message = tokio::select! {
            () = stopped.cancelled() => return,
            message = requests.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let (Ok(request), Some(reply_to)) = (
            serde_json::from_slice::<ResyncRequest>(&message.payload),
            message.reply.clone(),
        ) else {
            continue;
        };
        let span = switchboard_runtime::trace_continue!(
            parent_of(&message);
            "edge.resync_report",
            otel.kind = "consumer",
            sb.slot = request.slot,
            sb.epoch = request.epoch,
            sb.members = Empty,
        );
        // Before answering: whatever the asking router's predecessors still send is stale now.
        bus.epochs.admit(request.slot, request.epoch);
        let reply = ctx.registry.slot_report(request.slots, request.slot);
        span.record("sb.members", reply.members.len());
        let Ok(payload) = serde_json::to_vec(&reply) else {
            continue;
        };
        let published = client
            .publish(reply_to, payload.into())
            .instrument(span)
            .await;
        if let Err(e) = published {
            ctx.metrics.bus_errors.with_label_values(&["resync"]).inc();
            warn!(error = %e, "cannot answer a resync request");
        }
    }
}

/// When NATS drops messages for this edge, room events may be among them: ask every router to
/// reconcile its slots with the edges (which corrects what this edge's clients were told).
async fn reconcile_after_loss(ctx: Arc<Context>, bus: NatsBus) {
    let mut slow = bus.slow_consumers.clone();
    let stopped = ctx.lifecycle.stopped.clone();
    loop {
        tokio::select! {
            () = stopped.cancelled() => return,
            changed = slow.changed() => if changed.is_err() { return },
        }
        ctx.metrics.bus_slow_consumers.inc();
        request_reconcile(&ctx, &bus).await;
    }
}

/// Asks every router to reconcile its slots with the edges (this one's views may be stale).
async fn request_reconcile(ctx: &Context, bus: &NatsBus) {
    let request = ReconcileRequest { edge: ctx.edge };
    let Ok(payload) = serde_json::to_vec(&request) else {
        return;
    };
    if let Err(e) = bus.client.publish(subject::RECONCILE, payload.into()).await {
        warn!(error = %e, "cannot ask the routers to reconcile");
    }
}

/// Publishes heartbeats, and re-announces every member when the NATS link comes back.
async fn heartbeat_loop(ctx: Arc<Context>, bus: NatsBus, interval: Duration) {
    let stopped = ctx.lifecycle.stopped.clone();
    let subject = subject::edge_heartbeat(ctx.edge);
    let mut link = bus.link.clone();
    let mut ticks = tokio::time::interval(interval);
    let mut was_up = *link.borrow_and_update() == Link::Up;
    ctx.metrics.bus_connected.set(i64::from(was_up));
    loop {
        tokio::select! {
            () = stopped.cancelled() => return,
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
                let up = *link.borrow_and_update() == Link::Up;
                ctx.metrics.bus_connected.set(i64::from(up));
                if up && !was_up {
                    let members = ctx.registry.members(bus.slots, None);
                    info!(members = members.len(), "NATS connection back: re-establishing memberships");
                    tokio::spawn(rejoin(ctx.clone(), bus.clone(), members));
                    // Room events sent while the link was down are lost: have the routers correct
                    // what this edge's clients were told.
                    request_reconcile(&ctx, &bus).await;
                }
                was_up = up;
            }
            _ = ticks.tick() => {
                let beat = Heartbeat {
                    edge: ctx.edge,
                    connections: ctx.registry.connection_count() as u64,
                };
                let Ok(payload) = serde_json::to_vec(&beat) else { continue };
                let started = std::time::Instant::now();
                let published = bus.client.publish(subject.clone(), payload.into()).await;
                ctx.metrics.bus_publish_heartbeat.observe(started.elapsed().as_secs_f64());
                match published {
                    Ok(()) => ctx.metrics.heartbeats.inc(),
                    Err(_) => ctx.metrics.bus_errors.with_label_values(&["heartbeat"]).inc(),
                }
            }
        }
    }
}

/// Re-announces members to their rooms' routers (a no-op for those the routers still have).
async fn rejoin(ctx: Arc<Context>, bus: NatsBus, members: Vec<MemberRecord>) {
    let bus = crate::bus::Bus::nats(bus);
    for member in members {
        let (conn, room) = (member.conn, member.room);
        if ctx.registry.membership(conn) != Membership::Joined(room) {
            continue;
        }
        if bus.command(Command::Rejoin { member }).await.is_ok() {
            ctx.metrics.rejoins.inc();
        }
        // The member may have left while its rejoin was on the way, and the two commands may have
        // crossed: leaving again is harmless, and leaves no ghost behind.
        if ctx.registry.membership(conn) != Membership::Joined(room) {
            let _ = bus
                .command(Command::Leave {
                    conn,
                    edge: ctx.edge,
                    room,
                })
                .await;
        }
    }
}
