//! One held slot: a task that owns the slot's [`Rooms`], its lease and its command subscription.
//!
//! Life of a slot task: (1) reconcile with the edges (at a takeover the rooms are empty: members
//! are restored silently from the edges, the ground truth, with stored peaks, and whatever the
//! clients were told wrongly is corrected); (2) serve: apply commands in arrival order, publish
//! effects to the edges with the lease's epoch, reply; remove the members of lost edges; reconcile
//! again when events may have been missed, and every `--reconcile-interval`; store the tenants'
//! webhook events before publishing the effects, and deliver the slot's stored events (a worker
//! per served slot, module `webhooks`); (3) pause while this
//! router cannot hear its own presence (it may be presumed gone), and resume (reconciling first)
//! once it hears itself and the lease is still its own; (4) end: on purpose (release the lease so
//! another router takes over at once), or deposed (another router holds the slot at a newer epoch).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Message, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_proto::bus::{
    Command, CommandReply, EdgeEvent, ResyncReply, ResyncRequest, TenantScope,
};
use switchboard_proto::control::{RoomReply, RoomRequest};
use switchboard_proto::{EdgeId, RoomKey, ServerMessage, subject};
use switchboard_runtime::trace;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::field::{self, Empty};
use tracing::{Instrument as _, Span, debug, info, warn};

use super::Shared;
use super::lease::Lease;
use super::liveness::Notice;
use switchboard_rooms::quota::{self, Admission, Decision};
use switchboard_rooms::reconcile::reconcile;
use switchboard_rooms::{Effect, Rooms, RoomsConfig, TenantUsage, UnixMillis};

/// How a slot task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotEnd {
    /// Handed over on purpose.
    Released,
    /// Another router took the slot over.
    Lost,
}

/// Why serving stopped for a while or for good.
#[derive(Debug)]
enum Outcome {
    /// This router cannot hear itself: stop serving, keep the lease, resume later.
    Pause,
    /// The task ends.
    End(SlotEnd),
}

/// Holds `slot` under `lease` until `stop` or until another router takes it over.
pub async fn serve(shared: Arc<Shared>, lease: Lease, stop: CancellationToken) -> SlotEnd {
    let slot = lease.slot;
    let mut notices = shared.liveness.subscribe();
    shared.liveness.set_claim(slot, Some(lease.epoch));
    let mut task = SlotTask {
        rooms: Rooms::new(RoomsConfig {
            max_room_size: shared.config.max_room_size,
            stats_retention_hours: shared.config.stats_retention_hours,
        }),
        peaks: HashMap::new(),
        counted: (0, 0),
        follow_up: None,
        follow_ups: 0,
        shared: shared.clone(),
        slot,
        epoch: lease.epoch,
    };
    let mut reason = "takeover";
    let end = loop {
        if reason == "resume" {
            shared.metrics.slots_paused.inc();
            let resumed = wait_to_resume(&shared, lease, &stop, &mut notices).await;
            shared.metrics.slots_paused.dec();
            if let Err(end) = resumed {
                break end;
            }
        }
        let started = Instant::now();
        if let Err(e) = task.reconcile(reason).await {
            warn!(slot, error = %switchboard_runtime::describe(&e), "cannot ask the edges for their members; giving the slot up");
            break SlotEnd::Released;
        }
        shared
            .metrics
            .resync_seconds
            .observe(started.elapsed().as_secs_f64());

        // Logged before subscribing and after unsubscribing, so that the logged interval contains
        // the whole time this router serves the slot (tests check that such intervals never overlap).
        info!(slot, epoch = lease.epoch, "slot serving starts");
        let mut commands = match shared.client.subscribe(subject::slot(slot)).await {
            Ok(subscriber) => subscriber,
            Err(e) => {
                warn!(slot, error = %e, "cannot subscribe to the slot; giving it up");
                info!(slot, "slot serving ended");
                break SlotEnd::Released;
            }
        };
        // The control API's requests for this slot's rooms, served by the same task (so they are
        // ordered with the commands, and stop with them).
        let mut requests = match shared.client.subscribe(subject::rooms_slot(slot)).await {
            Ok(subscriber) => subscriber,
            Err(e) => {
                warn!(slot, error = %e, "cannot subscribe to the slot's control requests; giving it up");
                let _ = commands.unsubscribe().await;
                info!(slot, "slot serving ended");
                break SlotEnd::Released;
            }
        };
        if reason == "takeover" {
            shared.metrics.slot_takeovers.inc();
        }
        shared.metrics.slots_owned.inc();
        shared.set_serving(slot, true);
        // The slot's webhook events are delivered by whoever serves it, and only while it does.
        let webhook_worker = shared.webhooks.start_worker(slot);
        info!(
            slot,
            members = task.rooms.member_count(),
            reason,
            "serving slot"
        );
        let outcome = task
            .serve(&mut commands, &mut requests, &stop, &mut notices)
            .await;
        // No command is applied after this point (what is still queued is dropped unanswered, and
        // the edges ask again), so this is where serving ends.
        info!(slot, ?outcome, "slot serving ended");
        shared.set_serving(slot, false);
        webhook_worker.stop().await;
        let _ = commands.unsubscribe().await;
        let _ = requests.unsubscribe().await;
        shared.metrics.slots_owned.dec();
        match outcome {
            Outcome::Pause => {
                warn!(
                    slot,
                    "this router cannot hear itself on NATS: pausing the slot"
                );
                reason = "resume";
            }
            Outcome::End(end) => break end,
        }
    };

    task.forget();
    shared.liveness.set_claim(slot, None);
    match end {
        SlotEnd::Released => {
            shared.metrics.slot_releases.inc();
            let span = switchboard_runtime::trace_root!(
                "lease.release",
                sb.slot = slot,
                sb.epoch = lease.epoch,
            );
            if let Err(e) = shared.leases.release(lease).instrument(span).await {
                debug!(slot, error = %switchboard_runtime::describe(&e), "lease release failed; the others take it over later");
            }
            info!(slot, "slot handed over");
        }
        SlotEnd::Lost => {
            shared.metrics.lease_losses.inc();
            warn!(slot, "slot taken over by another router");
        }
    }
    end
}

/// Waits until this router hears itself again and knows the lease is still its own: the lease store
/// says so, or (while the store cannot answer) it has heard the other routers' presence for half a
/// lease lifetime without any of them claiming the slot at a newer epoch.
async fn wait_to_resume(
    shared: &Shared,
    lease: Lease,
    stop: &CancellationToken,
    notices: &mut broadcast::Receiver<Notice>,
) -> Result<(), SlotEnd> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut hearing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return Err(SlotEnd::Released),
            notice = notices.recv() => match notice {
                Ok(Notice::Deposed { slot, ours }) if slot == lease.slot && ours == lease.epoch => {
                    return Err(SlotEnd::Lost);
                }
                Err(RecvError::Closed) => return Err(SlotEnd::Released),
                _ => continue,
            },
            _ = tick.tick() => {}
        }
        if !shared.liveness.hears_itself() {
            hearing_since = None;
            continue;
        }
        let since = *hearing_since.get_or_insert_with(Instant::now);
        let asked = Instant::now();
        let span = switchboard_runtime::trace_root!(
            "lease.check",
            sb.slot = lease.slot,
            sb.epoch = lease.epoch,
            sb.outcome = Empty,
        );
        let check =
            tokio::time::timeout(Duration::from_millis(500), shared.leases.still_ours(lease))
                .instrument(span.clone())
                .await;
        span.record(
            "sb.outcome",
            match &check {
                Ok(Ok(true)) => "ours",
                Ok(Ok(false)) => "lost",
                _ => "unknown",
            },
        );
        shared
            .metrics
            .lease_check_seconds
            .observe(asked.elapsed().as_secs_f64());
        match check {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => return Err(SlotEnd::Lost),
            // The store cannot tell; the other routers' claims can.
            _ if since.elapsed() >= shared.config.lease_ttl / 2 => return Ok(()),
            _ => {}
        }
    }
}

struct SlotTask {
    shared: Arc<Shared>,
    slot: u32,
    /// The lease's epoch, carried on every event and reply.
    epoch: u64,
    rooms: Rooms,
    /// The peak last stored for each open room.
    peaks: HashMap<RoomKey, usize>,
    /// (rooms, members) last added to the process-wide gauges.
    counted: (i64, i64),
    /// When to reconcile again because an edge did not answer the last time.
    follow_up: Option<Instant>,
    /// Follow-ups since every edge last answered.
    follow_ups: u32,
}

/// Why the edges could not be asked for their reports.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The reply inbox could not be subscribed.
    #[error("cannot subscribe to the replies")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The request could not be published.
    #[error("cannot publish the resync request")]
    Publish(#[from] async_nats::PublishError),
    /// The request could not be flushed to the server.
    #[error("cannot flush the resync request")]
    Flush(#[from] async_nats::client::FlushError),
    /// The request could not be encoded.
    #[error("cannot encode the resync request")]
    Encode(#[from] serde_json::Error),
}

/// Pause before asking edges that did not answer a reconciliation again.
const FOLLOW_UP: Duration = Duration::from_secs(1);
/// Follow-ups in a row; after that, the periodic reconciliation takes over.
const MAX_FOLLOW_UPS: u32 = 5;

impl SlotTask {
    /// Serves commands until this router must pause or the task must end.
    async fn serve(
        &mut self,
        commands: &mut Subscriber,
        requests: &mut Subscriber,
        stop: &CancellationToken,
        notices: &mut broadcast::Receiver<Notice>,
    ) -> Outcome {
        let liveness = self.shared.liveness.clone();
        let mut serving_until = liveness.serving_until();
        let interval = self.shared.config.reconcile_interval;
        // Spread the slots' periodic reconciliations over the interval.
        let mut periodic = (!interval.is_zero()).then(|| {
            let first = interval.mul_f64(rand::random_range(0.5..1.5));
            tokio::time::interval_at(Instant::now() + first, interval)
        });
        let mut new_hour = next_hour();
        loop {
            let deadline = *serving_until.borrow_and_update();
            tokio::select! {
                biased;
                () = stop.cancelled() => return Outcome::End(SlotEnd::Released),
                () = sleep_until(deadline) => {
                    if !liveness.hears_itself() {
                        return Outcome::Pause;
                    }
                }
                _ = serving_until.changed() => {}
                notice = notices.recv() => {
                    // Take every notice already queued too, so that a burst (edges reconnecting
                    // after a NATS outage) costs one reconciliation, not one each.
                    let mut reason = None;
                    let mut next = Some(notice);
                    while let Some(notice) = next {
                        match self.on_notice(notice).await {
                            Ok(None) => {}
                            Ok(Some(wanted)) => reason = reason.or(Some(wanted)),
                            Err(end) => return Outcome::End(end),
                        }
                        next = match notices.try_recv() {
                            Ok(notice) => Some(Ok(notice)),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                Some(Err(RecvError::Lagged(n)))
                            }
                            Err(_) => None,
                        };
                    }
                    if let Some(reason) = reason {
                        self.reconcile_logged(reason).await;
                    }
                }
                () = async { sleep_until(self.follow_up.unwrap_or_else(Instant::now)).await },
                    if self.follow_up.is_some() =>
                {
                    self.follow_up = None;
                    self.reconcile_logged("retry").await;
                }
                _ = async { periodic.as_mut()?.tick().await; Some(()) }, if periodic.is_some() => {
                    self.reconcile_logged("periodic").await;
                }
                () = sleep_until(new_hour) => {
                    // Hosted mode: an hour's room peaks start with the rooms open at its start.
                    let now = now();
                    let effects = self.rooms.roll_hour(now);
                    self.publish_effects(effects, now).await;
                    new_hour = next_hour();
                }
                message = commands.next() => {
                    let Some(message) = message else {
                        return Outcome::Pause;
                    };
                    // Checked per command as well: never apply while possibly presumed gone.
                    if !liveness.hears_itself() {
                        self.respond(&message, &CommandReply::NotServing).await;
                        return Outcome::Pause;
                    }
                    self.handle(message).await;
                }
                message = requests.next() => {
                    let Some(message) = message else {
                        return Outcome::Pause;
                    };
                    if !liveness.hears_itself() {
                        self.respond(&message, &RoomReply::NotServing).await;
                        return Outcome::Pause;
                    }
                    self.on_request(message).await;
                }
            }
        }
    }

    /// Acts on one notice; returns why a reconciliation is wanted, if it is, or how the task ends.
    async fn on_notice(
        &mut self,
        notice: Result<Notice, RecvError>,
    ) -> Result<Option<&'static str>, SlotEnd> {
        match notice {
            Ok(Notice::EdgeLost(edge)) => {
                let _ = self.apply(Command::EdgeLost { edge }).await;
                Ok(None)
            }
            Ok(Notice::Deposed { slot, ours }) if slot == self.slot && ours == self.epoch => {
                Err(SlotEnd::Lost)
            }
            Ok(Notice::Deposed { .. }) => Ok(None),
            Ok(Notice::Reconcile) => Ok(Some("lost_events")),
            // An edge this router did not hear before (new, or back after being cut off): its
            // clients' views may lack what happened meanwhile.
            Ok(Notice::EdgeAppeared(_)) => Ok(Some("edge_appeared")),
            Err(RecvError::Lagged(missed)) => {
                // Edge-lost notices may be among those missed: ask the edges.
                warn!(
                    slot = self.slot,
                    missed, "missed router notices: reconciling"
                );
                self.shared
                    .metrics
                    .lost_events
                    .with_label_values(&["notices_lagged"])
                    .inc();
                Ok(Some("lag"))
            }
            Err(RecvError::Closed) => Err(SlotEnd::Released),
        }
    }

    async fn reconcile_logged(&mut self, reason: &'static str) {
        if let Err(e) = self.reconcile(reason).await {
            warn!(slot = self.slot, reason, error = %switchboard_runtime::describe(&e), "reconciliation failed");
        }
    }

    /// Asks every edge for its members and views in the slot (raising their epoch for it to ours),
    /// then brings the rooms and the views in line (see [`switchboard_rooms::reconcile`]).
    async fn reconcile(&mut self, reason: &'static str) -> Result<(), ReconcileError> {
        // A root span (nothing a client did): the edges' `edge.resync_report`s and the
        // corrections' `router.fan_out`s are its children.
        let span = switchboard_runtime::trace_root!(
            "router.resync",
            otel.status_code = Empty,
            sb.slot = self.slot,
            sb.epoch = self.epoch,
            sb.reason = reason,
            sb.edges_expected = Empty,
            sb.edges_answered = Empty,
            sb.corrections = Empty,
        );
        let result = self.resync(reason).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }

    async fn resync(&mut self, reason: &'static str) -> Result<(), ReconcileError> {
        self.shared
            .metrics
            .reconciles
            .with_label_values(&[reason])
            .inc();
        let client = &self.shared.client;
        let expected: HashSet<EdgeId> = self.shared.liveness.edges().into_iter().collect();
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await?;
        let request = ResyncRequest {
            slot: self.slot,
            slots: self.shared.config.slots,
            epoch: self.epoch,
        };
        let payload = serde_json::to_vec(&request)?.into();
        match trace::traced_headers(&Span::current()) {
            Some(headers) => {
                client
                    .publish_with_reply_and_headers(subject::RESYNC, inbox, headers, payload)
                    .await?
            }
            None => {
                client
                    .publish_with_reply(subject::RESYNC, inbox, payload)
                    .await?
            }
        }
        client.flush().await?;
        let deadline = Instant::now() + self.shared.config.resync_timeout;
        let mut answered = HashSet::new();
        let mut reports: Vec<ResyncReply> = Vec::new();
        while !expected.is_subset(&answered) {
            tokio::select! {
                () = sleep_until(deadline) => {
                    let missing: Vec<String> =
                        expected.difference(&answered).map(|e| e.to_string()).collect();
                    warn!(slot = self.slot, ?missing, "resync: edges did not answer in time");
                    // Their clients' views are not corrected yet: ask again shortly (an edge
                    // that has just reconnected may not have renewed its subscription yet).
                    if self.follow_ups < MAX_FOLLOW_UPS {
                        self.follow_ups += 1;
                        self.follow_up = Some(Instant::now() + FOLLOW_UP);
                    }
                    break;
                }
                reply = replies.next() => {
                    let Some(reply) = reply else { break };
                    let Ok(reply) = serde_json::from_slice::<ResyncReply>(&reply.payload) else {
                        continue;
                    };
                    if answered.insert(reply.edge) {
                        reports.push(reply);
                    }
                }
            }
        }
        let _ = replies.unsubscribe().await;
        let span = Span::current();
        span.record("sb.edges_expected", expected.len());
        span.record("sb.edges_answered", answered.len());
        if expected.is_subset(&answered) {
            self.follow_ups = 0;
        }

        let (slots, slot) = (self.shared.config.slots, self.slot);
        let effects = reconcile(&mut self.rooms, now(), &reports, |room| {
            room.slot(slots) == slot
        });
        for effect in &effects {
            let kind = match effect {
                Effect::Deliver {
                    message: ServerMessage::PeerLeft { .. },
                    ..
                } => "peer_left",
                Effect::Deliver { .. } => "new_peer",
                Effect::MemberLeft { .. } => "removed",
                _ => continue,
            };
            self.shared
                .metrics
                .reconcile_corrections
                .with_label_values(&[kind])
                .inc();
        }
        span.record("sb.corrections", effects.len());
        if !effects.is_empty() {
            info!(
                slot,
                reason,
                corrections = effects.len(),
                "reconciled with the edges"
            );
        }
        // Peaks of rooms this router did not know yet (a takeover) come from storage.
        let unknown: HashSet<RoomKey> = self
            .rooms
            .records()
            .iter()
            .map(|m| m.room)
            .filter(|room| !self.peaks.contains_key(room))
            .collect();
        for room in unknown {
            if let Some(peak) = self.shared.store.stored_peak(room).await {
                self.rooms.restore_peak(room, peak);
            }
            if let Some((_, peak)) = self.rooms.room_size(room) {
                self.peaks.insert(room, peak);
            }
        }
        self.publish_effects(effects, now()).await;
        self.store_peaks(None);
        self.count();
        // A takeover restores rooms silently: the tenants' counts follow the whole slot.
        self.shared
            .tenants
            .sync_slot(self.slot, self.rooms.tenant_rooms());
        Ok(())
    }

    async fn handle(&mut self, message: Message) {
        let command = match serde_json::from_slice::<Command>(&message.payload) {
            Ok(command) => command,
            Err(e) => {
                debug!(slot = self.slot, error = %e, "malformed command");
                return;
            }
        };
        let misrouted = command
            .room()
            .is_some_and(|room| room.slot(self.shared.config.slots) != self.slot);
        if misrouted {
            self.respond(&message, &CommandReply::NotServing).await;
            return;
        }
        let started = Instant::now();
        // A child of the edge's `bus.command` when the command carries its trace context.
        let span = switchboard_runtime::trace_continue!(
            message.headers.as_ref().and_then(trace::extract);
            "router.apply",
            otel.kind = "server",
            sb.slot = self.slot,
            sb.epoch = self.epoch,
            sb.command = command.kind(),
            sb.room = command.room().map(field::display),
            sb.events = Empty,
            sb.busy = Empty,
        );
        async {
            let reply = self.apply(command).await;
            if matches!(reply, CommandReply::Busy) {
                Span::current().record("sb.busy", true);
            }
            self.respond(&message, &reply).await;
        }
        .instrument(span)
        .await;
        self.shared
            .metrics
            .command_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Answers one control API request about this slot's rooms, publishing its effects first.
    async fn on_request(&mut self, message: Message) {
        let request = match serde_json::from_slice::<RoomRequest>(&message.payload) {
            Ok(request) => request,
            Err(e) => {
                debug!(slot = self.slot, error = %e, "malformed control request");
                return;
            }
        };
        let misrouted = request
            .room()
            .is_some_and(|room| room.slot(self.shared.config.slots) != self.slot);
        if misrouted {
            self.respond(&message, &RoomReply::NotServing).await;
            return;
        }
        let touched = request.room();
        let now = now();
        let (reply, effects) = self.rooms.answer(now, request);
        self.settle(effects, touched, now).await;
        self.respond(&message, &reply).await;
    }

    /// Applies a command and publishes its effects, then stores what changed. A join that would
    /// open a room of a tenant whose round is used up is not applied: `Busy`, the edge asks again.
    async fn apply(&mut self, command: Command) -> CommandReply {
        self.shared
            .metrics
            .commands
            .with_label_values(&[command.kind()])
            .inc();
        debug!(slot = self.slot, ?command, "applying");
        let touched = command.room();
        let now = now();
        let effects = match self.room_quota(&command) {
            Some(scope) => match self.apply_within_quota(now, command, &scope) {
                Some(effects) => effects,
                None => return CommandReply::Busy,
            },
            None => self.rooms.apply(now, command),
        };
        self.settle(effects, touched, now).await;
        CommandReply::Applied { epoch: self.epoch }
    }

    /// What follows every change to the rooms (a command or a control request), before its reply:
    /// the tenants' room counts, the effects (webhook events stored, then the edges told), the
    /// peaks of the room `touched` (or of every room, `None`) and the gauges.
    async fn settle(&mut self, effects: Vec<Effect>, touched: Option<RoomKey>, now: UnixMillis) {
        self.count_tenant_rooms(&effects);
        self.publish_effects(effects, now).await;
        self.store_peaks(touched);
        self.count();
    }

    /// The tenant whose room quota `command` is subject to: a join that would open a room of a
    /// tenant with `max_rooms`.
    fn room_quota(&self, command: &Command) -> Option<TenantScope> {
        match command {
            Command::Join {
                room,
                tenant: Some(scope),
                ..
            } if scope.max_rooms > 0 && self.rooms.room_size(*room).is_none() => {
                Some(scope.clone())
            }
            _ => None,
        }
    }

    /// Decides and applies a join that may open a room of `scope`'s tenant under the tenant's lock,
    /// so that no other slot of this router takes the same last room meanwhile (module `usage`).
    /// `None`: this router has opened its part of the tenant's headroom for this round.
    fn apply_within_quota(
        &mut self,
        now: UnixMillis,
        command: Command,
        scope: &TenantScope,
    ) -> Option<Vec<Effect>> {
        let book = &self.shared.tenants;
        let tenant = book.rooms_of(&scope.id);
        let mut counts = tenant.lock();
        let others = book.others(&scope.id);
        let own = counts.total();
        let decision = quota::decide(&Admission {
            limit: u64::from(scope.max_rooms),
            own,
            others,
            peers: (self.shared.liveness.routers() as u64).saturating_sub(1),
            this_round: counts.this_round,
            burst: self.shared.config.quota_admit_burst,
        });
        if decision == Decision::Wait {
            return None;
        }
        // Refused or admitted, the state machine decides with the same count and says so.
        let here = counts.in_slot(self.slot);
        let elsewhere = own.saturating_sub(here).saturating_add(others);
        self.rooms
            .set_rooms_elsewhere(scope.id.clone(), elsewhere as usize);
        let effects = self.rooms.apply(now, command);
        let now_here = self
            .rooms
            .tenant_rooms()
            .get(&scope.id)
            .copied()
            .unwrap_or(0);
        if now_here as u64 > here {
            counts.this_round += 1;
        }
        counts.set(self.slot, now_here);
        Some(effects)
    }

    /// Keeps the process's per-tenant room counts in step with the rooms that opened or closed.
    fn count_tenant_rooms(&self, effects: &[Effect]) {
        for effect in effects {
            if let Effect::TenantRoomOpened { tenant } | Effect::TenantRoomClosed { tenant, .. } =
                effect
            {
                let open = self.rooms.tenant_rooms().get(tenant).copied().unwrap_or(0);
                self.shared
                    .tenants
                    .rooms_of(tenant)
                    .lock()
                    .set(self.slot, open);
            }
        }
    }

    /// Stores the effects' webhook events, then carries the effects out (the edges' events, metrics,
    /// statistics): an event is stored before anyone can see the change it reports.
    async fn publish_effects(&mut self, effects: Vec<Effect>, now: UnixMillis) {
        self.shared.webhooks.store(self.slot, &effects, now).await;
        let epoch = self.epoch;
        let events = effects
            .iter()
            .filter(|effect| {
                matches!(
                    effect,
                    Effect::Deliver { .. } | Effect::Refuse { .. } | Effect::Remove { .. }
                )
            })
            .count();
        Span::current().record("sb.events", events);
        for effect in effects {
            match effect {
                Effect::Deliver {
                    edge,
                    room,
                    to,
                    message,
                } => {
                    let event = EdgeEvent::Deliver {
                        epoch,
                        room,
                        to,
                        message,
                    };
                    self.publish(edge, &event).await
                }
                Effect::Refuse {
                    edge,
                    conn,
                    room,
                    error,
                } => {
                    let event = EdgeEvent::Refuse {
                        epoch,
                        conn,
                        room,
                        error,
                    };
                    self.publish(edge, &event).await
                }
                Effect::RoomClosed { peak } => {
                    self.shared.metrics.room_peak_members.observe(peak as f64);
                    self.shared.store.count_room_closed(now.hour(), peak);
                }
                Effect::MemberLeft { minutes, millis } => {
                    self.shared
                        .metrics
                        .connection_seconds
                        .observe(millis as f64 / 1000.0);
                    self.shared.store.count_member_left(now.hour(), minutes);
                }
                Effect::TenantRoomOpened { tenant } => {
                    self.shared.metrics.tenant_rooms.opened(&tenant);
                    let usage = TenantUsage {
                        rooms_opened: 1,
                        ..TenantUsage::default()
                    };
                    self.shared
                        .store
                        .count_tenant_usage(now.hour(), &tenant, &usage);
                }
                Effect::TenantRoomMembers { tenant, members } => {
                    let usage = TenantUsage {
                        peak_room_members: members,
                        ..TenantUsage::default()
                    };
                    self.shared
                        .store
                        .count_tenant_usage(now.hour(), &tenant, &usage);
                }
                Effect::Remove { edge, room, to } => {
                    let event = EdgeEvent::Remove { epoch, room, to };
                    self.publish(edge, &event).await
                }
                Effect::TenantRoomClosed { .. } => {}
                // Stored in the webhook stream above.
                Effect::TenantMemberJoined { .. } | Effect::TenantMemberLeft { .. } => {}
            }
        }
    }

    /// Stores raised peaks, and forgets those of rooms that closed (after `apply` counted their peak
    /// in the hourly statistics: `Effect::RoomClosed` comes before this).
    fn store_peaks(&mut self, touched: Option<RoomKey>) {
        match touched {
            Some(room) => match self.rooms.room_size(room) {
                Some((_, peak)) => {
                    if self.peaks.get(&room).is_none_or(|stored| peak > *stored) {
                        self.peaks.insert(room, peak);
                        self.shared.store.peak(room, peak);
                    }
                }
                None => {
                    if self.peaks.remove(&room).is_some() {
                        self.shared.store.forget_peak(room);
                    }
                }
            },
            // Losing an edge may close any number of rooms.
            None => {
                let closed: Vec<RoomKey> = self
                    .peaks
                    .keys()
                    .filter(|room| self.rooms.room_size(**room).is_none())
                    .copied()
                    .collect();
                for room in closed {
                    self.peaks.remove(&room);
                    self.shared.store.forget_peak(room);
                }
            }
        }
    }

    async fn publish(&self, edge: EdgeId, event: &EdgeEvent) {
        let Ok(payload) = serde_json::to_vec(event) else {
            return;
        };
        // One room event for one edge (the fan-out of a command is one of these per edge and
        // event); the edge's `edge.deliver` is its child.
        let span = switchboard_runtime::trace_span!(
            "router.fan_out",
            otel.kind = "producer",
            sb.edge = %edge,
            sb.event = event.kind(),
        );
        let started = Instant::now();
        let subject = subject::edge_events(edge);
        let payload = Bytes::from(payload);
        let published = match trace::traced_headers(&span) {
            Some(headers) => {
                self.shared
                    .client
                    .publish_with_headers(subject, headers, payload)
                    .instrument(span)
                    .await
            }
            None => self.shared.client.publish(subject, payload).await,
        };
        self.shared
            .metrics
            .bus_publish_event
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = published {
            self.shared
                .metrics
                .bus_errors
                .with_label_values(&["event"])
                .inc();
            warn!(slot = self.slot, edge = %edge, error = %e, "cannot publish a room event");
        }
    }

    /// Answers a command or a control request (nothing if it wants no answer).
    async fn respond(&self, message: &Message, reply: &impl serde::Serialize) {
        let Some(inbox) = &message.reply else {
            return;
        };
        let Ok(payload) = serde_json::to_vec(reply) else {
            return;
        };
        let started = Instant::now();
        let published = self
            .shared
            .client
            .publish(inbox.clone(), payload.into())
            .await;
        self.shared
            .metrics
            .bus_publish_reply
            .observe(started.elapsed().as_secs_f64());
        if published.is_err() {
            self.shared
                .metrics
                .bus_errors
                .with_label_values(&["reply"])
                .inc();
        }
    }

    /// Keeps the process-wide room and member gauges in step with this slot.
    fn count(&mut self) {
        let now = (
            self.rooms.room_count() as i64,
            self.rooms.member_count() as i64,
        );
        self.shared.metrics.rooms.add(now.0 - self.counted.0);
        self.shared.metrics.members.add(now.1 - self.counted.1);
        self.counted = now;
    }

    /// Takes this slot's rooms out of the gauges (and the tenants' counts) when the slot is given
    /// up.
    fn forget(&mut self) {
        self.shared.tenants.sync_slot(self.slot, &HashMap::new());
        self.shared.metrics.rooms.sub(self.counted.0);
        self.shared.metrics.members.sub(self.counted.1);
        self.counted = (0, 0);
    }
}

fn now() -> UnixMillis {
    UnixMillis(switchboard_runtime::clock::unix_millis())
}

/// Just after the start of the next UTC hour.
fn next_hour() -> Instant {
    const HOUR_MS: u64 = 3_600_000;
    let into_hour = switchboard_runtime::clock::unix_millis() % HOUR_MS;
    Instant::now() + Duration::from_millis(HOUR_MS - into_hour + 10)
}
