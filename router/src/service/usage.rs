//! Hosted mode at the router: each tenant's open rooms over this process's slots, what the other
//! routers last reported of theirs, and the rounds of the room quota.
//!
//! A join that may open a room of a tenant with `max_rooms` is decided under that tenant's lock
//! ([`TenantBook::rooms_of`]): the slot task reads the process's exact count (all its slots) and the
//! others' reported one, asks [`switchboard_rooms::quota::decide`], and applies the join before it
//! lets go, so two slots of one router never both take the last room. Across routers the counts
//! travel as [`UsageReport`]s on `sb.usage.router.<process>`, every `--usage-interval`, published
//! while the router has rooms of a tenant (and once more when it has none left); per round a router
//! opens at most its part of the headroom (and `--quota-admit-burst`) of a tenant, and a join beyond
//! that is answered [`CommandReply::Busy`](switchboard_proto::bus::CommandReply::Busy): the edge
//! asks again, and the join waits for the next round instead of being refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::Client;
use futures_util::StreamExt;
use switchboard_proto::TenantId;
use switchboard_proto::bus::{TenantCount, UsageReport};
use switchboard_proto::subject;
use switchboard_runtime::usage::RemoteView;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::metrics::RouterMetrics;

/// Every tenant's rooms in this process, and the other routers' reports; cheap to clone.
#[derive(Clone, Default)]
pub struct TenantBook {
    tenants: Arc<Mutex<HashMap<TenantId, Arc<TenantRooms>>>>,
    others: Arc<Mutex<RemoteView>>,
}

/// One tenant's open rooms in this process; lock it with [`TenantRooms::lock`].
#[derive(Debug, Default)]
pub struct TenantRooms {
    counts: Mutex<RoomCounts>,
}

/// One tenant's rooms per slot of this process, and its room openings in the current round.
#[derive(Debug, Default)]
pub struct RoomCounts {
    per_slot: HashMap<u32, usize>,
    /// Rooms opened by joins in the current round.
    pub this_round: u64,
}

impl RoomCounts {
    /// Open rooms over every slot of this process.
    pub fn total(&self) -> u64 {
        self.per_slot.values().map(|n| *n as u64).sum()
    }

    /// Open rooms in `slot`.
    pub fn in_slot(&self, slot: u32) -> u64 {
        self.per_slot.get(&slot).map_or(0, |n| *n as u64)
    }

    /// Sets the open rooms of `slot`.
    pub fn set(&mut self, slot: u32, rooms: usize) {
        if rooms == 0 {
            self.per_slot.remove(&slot);
        } else {
            self.per_slot.insert(slot, rooms);
        }
    }
}

impl TenantRooms {
    /// The counts, locked: a join that may open a room holds this while it is decided and applied.
    pub fn lock(&self) -> MutexGuard<'_, RoomCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TenantBook {
    /// Nothing counted yet.
    pub fn new() -> Self {
        TenantBook::default()
    }

    fn tenants(&self) -> MutexGuard<'_, HashMap<TenantId, Arc<TenantRooms>>> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn others_view(&self) -> MutexGuard<'_, RemoteView> {
        self.others.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `tenant`'s rooms in this process (made on first use).
    pub fn rooms_of(&self, tenant: &TenantId) -> Arc<TenantRooms> {
        self.tenants().entry(tenant.clone()).or_default().clone()
    }

    /// What the other routers last reported of `tenant`'s rooms.
    pub fn others(&self, tenant: &TenantId) -> u64 {
        self.others_view().others(tenant)
    }

    /// Sets `slot`'s open rooms of each tenant to `rooms` (tenants left out have none there): after
    /// a reconciliation, and with an empty map when the slot is given up.
    pub fn sync_slot(&self, slot: u32, rooms: &HashMap<TenantId, usize>) {
        let known: Vec<(TenantId, Arc<TenantRooms>)> = self
            .tenants()
            .iter()
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect();
        for (id, tenant) in known {
            if !rooms.contains_key(&id) {
                tenant.lock().set(slot, 0);
            }
        }
        for (id, count) in rooms {
            self.rooms_of(id).lock().set(slot, *count);
        }
    }

    /// Ends a round: resets each tenant's openings and returns this process's counts (tenants with
    /// rooms), dropping the tenants it no longer has rooms of.
    fn end_round(&self) -> Vec<TenantCount> {
        let mut tenants = self.tenants();
        let mut report = Vec::new();
        tenants.retain(|id, rooms| {
            let mut counts = rooms.lock();
            counts.this_round = 0;
            let total = counts.total();
            if total > 0 {
                report.push(TenantCount {
                    tenant: id.clone(),
                    count: total,
                });
            }
            // A tenant without rooms here is forgotten; a slot task holding its entry (deciding
            // a join right now) re-creates it when it counts the room.
            total > 0 || Arc::strong_count(rooms) > 1
        });
        report
    }
}

/// Publishes this router's rooms per tenant every `interval` and follows the other routers'
/// reports, until `stop`. Sets `switchboard_tenant_rooms` on the way.
pub async fn run(
    book: TenantBook,
    client: Client,
    owner: String,
    interval: Duration,
    metrics: RouterMetrics,
    stop: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut reports = client.subscribe(subject::ROUTER_USAGE).await?;
    let own_subject = subject::router_usage(&owner);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Tenants reported last time: they get a series update (or removal), and an empty report
    // tells the others at once that this router has no rooms left.
    let mut reported: Vec<TenantId> = Vec::new();
    let mut seen: HashMap<TenantId, u64> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            Some(message) = reports.next() => {
                let Some(sender) = message.subject.as_str().rsplit('.').next() else { continue };
                if sender == owner {
                    continue;
                }
                match serde_json::from_slice::<UsageReport>(&message.payload) {
                    Ok(report) => book.others_view().record(sender, report, Instant::now()),
                    Err(e) => debug!(error = %e, "malformed usage report"),
                }
            }
            _ = ticks.tick() => {
                book.others_view().expire(Instant::now());
                let counts = book.end_round();
                for gone in reported.iter().filter(|t| !counts.iter().any(|c| c.tenant == **t)) {
                    metrics.tenant_rooms.set_rooms(gone, 0);
                }
                for count in &counts {
                    metrics.tenant_rooms.set_rooms(&count.tenant, count.count as usize);
                }
                seen = cluster_rooms(&book, &counts, seen, &metrics);
                if counts.is_empty() && reported.is_empty() {
                    // Nothing to say (open mode, or no tenant rooms here): no traffic.
                    continue;
                }
                reported = counts.iter().map(|c| c.tenant.clone()).collect();
                let report = UsageReport {
                    interval_ms: interval.as_millis() as u64,
                    tenants: counts,
                };
                let Ok(payload) = serde_json::to_vec(&report) else { continue };
                if let Err(e) = client.publish(own_subject.clone(), payload.into()).await {
                    metrics.bus_errors.with_label_values(&["usage"]).inc();
                    debug!(error = %e, "cannot publish the usage report");
                }
            }
        }
    }
}

/// Sets `switchboard_tenant_cluster_rooms` from this router's `counts` and the others' reports;
/// a tenant with no rooms anywhere (as far as this router knows) loses its series. Returns what was
/// set, for the next round.
fn cluster_rooms(
    book: &TenantBook,
    counts: &[TenantCount],
    before: HashMap<TenantId, u64>,
    metrics: &RouterMetrics,
) -> HashMap<TenantId, u64> {
    let mut now: HashMap<TenantId, u64> = book
        .others_view()
        .tenants()
        .map(|(tenant, n)| (tenant.clone(), n))
        .collect();
    for count in counts {
        *now.entry(count.tenant.clone()).or_default() += count.count;
    }
    for tenant in before.keys().filter(|t| !now.contains_key(*t)) {
        let _ = metrics
            .tenant_cluster_rooms
            .remove_label_values(&[tenant.as_str()]);
    }
    for (tenant, rooms) in &now {
        metrics
            .tenant_cluster_rooms
            .with_label_values(&[tenant.as_str()])
            .set(*rooms as i64);
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn slots_add_up_and_rounds_reset_and_forget() {
        let book = TenantBook::new();
        let (a, b) = (tenant("a"), tenant("b"));
        book.sync_slot(1, &HashMap::from([(a.clone(), 2), (b.clone(), 1)]));
        book.sync_slot(2, &HashMap::from([(a.clone(), 3)]));
        {
            let rooms = book.rooms_of(&a);
            let mut counts = rooms.lock();
            assert_eq!(
                (counts.total(), counts.in_slot(1), counts.in_slot(2)),
                (5, 2, 3)
            );
            counts.this_round = 4;
        }
        let mut report = book.end_round();
        report.sort_by(|x, y| x.tenant.cmp(&y.tenant));
        assert_eq!(
            report,
            [
                TenantCount {
                    tenant: a.clone(),
                    count: 5
                },
                TenantCount {
                    tenant: b.clone(),
                    count: 1
                }
            ]
        );
        assert_eq!(book.rooms_of(&a).lock().this_round, 0);
        // Slot 1 given up: b has no rooms left and is forgotten at the next round.
        book.sync_slot(1, &HashMap::new());
        assert_eq!(
            book.end_round(),
            [TenantCount {
                tenant: a.clone(),
                count: 3
            }]
        );
        assert_eq!(book.tenants().len(), 1);
    }
}
