//! The rounds of hosted mode at the edge: every `--usage-interval` one task ends the round. For each
//! tenant it takes the round's usage (connection-seconds, peak connections, messages relayed),
//! resets the round's admissions and, in a cluster, reports the edge's connections to the other
//! edges (`sb.usage.edge.<id>`); then it recomputes each tenant's message-rate share from the new
//! counts, wakes the upgrades waiting for a round, and drops the series of tenants that left the
//! tenants file. In a cluster the same task follows the other edges' reports.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchboard_proto::bus::{TenantCount, UsageReport};
use switchboard_proto::{EdgeId, TenantId, subject};
use switchboard_rooms::TenantUsage;
use switchboard_rooms::quota;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

use super::hourly::{Batch, FLUSH_INTERVAL, Sink};
use super::{TenantState, Usage};
use crate::bus::NatsBus;
use crate::context::Context;

/// Bound on the last flush when the edge stops.
const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// Runs the rounds until the edge has stopped, then counts and stores the last usage. `nats`: the
/// cluster's bus (reports are published and followed), or `None` standalone.
pub async fn run(ctx: Arc<Context>, nats: Option<NatsBus>) {
    let usage = ctx.usage.clone();
    let settings = usage.settings();
    let mut reports = match &nats {
        Some(bus) => match bus.client.subscribe(subject::EDGE_USAGE).await {
            Ok(subscriber) => Some(subscriber),
            Err(e) => {
                // Without the others' reports this edge would admit as if alone: be loud.
                warn!(error = %e, "cannot follow the other edges' usage reports");
                None
            }
        },
        None => None,
    };
    let mut sink = match &nats {
        Some(bus) => Sink::store(
            bus.client.clone(),
            format!("edge-{}", ctx.edge),
            ctx.stats_retention_hours,
            ctx.metrics.clone(),
        ),
        None => Sink::Local(ctx.bus.clone()),
    };
    let own_subject = subject::edge_usage(ctx.edge);
    let mut rounds = tokio::time::interval(settings.interval);
    rounds.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flushes = tokio::time::interval(FLUSH_INTERVAL);
    flushes.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stopped = ctx.lifecycle.stopped.clone();
    loop {
        tokio::select! {
            () = stopped.cancelled() => break,
            Some(message) = async { reports.as_mut()?.next().await } => {
                let Some(sender) = message.subject.as_str().rsplit('.').next() else { continue };
                if sender.parse::<EdgeId>().ok() == Some(ctx.edge) {
                    continue;
                }
                match serde_json::from_slice::<UsageReport>(&message.payload) {
                    Ok(report) => usage.others().record(sender, report, Instant::now()),
                    Err(e) => debug!(error = %e, "malformed usage report"),
                }
            }
            _ = rounds.tick() => {
                let (batch, report) = usage.end_round();
                if let Some(bus) = &nats {
                    publish(bus, &own_subject, report, settings.interval).await;
                }
                sink.add(batch).await;
            }
            _ = flushes.tick() => sink.flush().await,
        }
    }
    let (batch, _) = usage.end_round();
    sink.add(batch).await;
    if tokio::time::timeout(FINAL_FLUSH, sink.flush())
        .await
        .is_err()
    {
        warn!("the last usage was not stored in time; it is lost");
    }
}

async fn publish(bus: &NatsBus, subject: &str, tenants: Vec<TenantCount>, interval: Duration) {
    let report = UsageReport {
        interval_ms: interval.as_millis() as u64,
        tenants,
    };
    let Ok(payload) = serde_json::to_vec(&report) else {
        return;
    };
    if let Err(e) = bus.client.publish(subject.to_owned(), payload.into()).await {
        bus.metrics.bus_errors.with_label_values(&["usage"]).inc();
        debug!(error = %e, "cannot publish the usage report");
    }
}

impl Usage {
    /// Ends the round: takes each tenant's usage and resets its admissions; returns the usage and
    /// this edge's report (to be published before the next round's admissions are reported). Also
    /// reshapes the rate shares, forgets tenants that are gone, and wakes the waiting upgrades.
    pub(super) fn end_round(&self) -> (Batch, Vec<TenantCount>) {
        let now = Instant::now();
        let hour = switchboard_runtime::clock::unix_millis() / 3_600_000;
        self.others().expire(now);
        let snapshot = self.shared.directory.as_ref().map(|d| d.snapshot());
        let states: Vec<Arc<TenantState>> = self.tenants().values().cloned().collect();
        let mut batch = Batch::new();
        let mut report = Vec::new();
        for state in states {
            let others = self.others().others(&state.id);
            let (connections, usage, idle) = state.end_round(now, others);
            self.shared
                .metrics
                .tenant_cluster_connections
                .with_label_values(&[state.id.as_str()])
                .set((connections + others) as i64);
            if !usage.is_empty() {
                batch.insert((hour, state.id.clone()), usage);
            }
            if connections > 0 {
                report.push(TenantCount {
                    tenant: state.id.clone(),
                    count: connections,
                });
            }
            let tenant = snapshot.as_ref().and_then(|s| s.tenant(&state.id).cloned());
            match tenant {
                Some(tenant) => {
                    let share = quota::rate_share(
                        tenant.limits.messages_per_second,
                        tenant.limits.message_burst,
                        connections,
                        connections + others,
                    );
                    state.reshape(share, now);
                }
                None if idle => self.forget(&state.id),
                None => {}
            }
        }
        // Admissions from here on belong to the next round (and its report).
        self.shared.rounds.send_modify(|round| *round += 1);
        (batch, report)
    }

    /// Drops a tenant that left the tenants file and has no connection here, with its series, so
    /// that they stay as many as the tenants in force.
    fn forget(&self, tenant: &TenantId) {
        self.tenants().remove(tenant);
        let metrics = &self.shared.metrics;
        let label = [tenant.as_str()];
        let _ = metrics.tenant_connections.remove_label_values(&label);
        let _ = metrics
            .tenant_cluster_connections
            .remove_label_values(&label);
        let _ = metrics
            .tenant_connection_seconds
            .remove_label_values(&label);
        let _ = metrics.tenant_messages_relayed.remove_label_values(&label);
        for quota in crate::metrics::QUOTAS {
            let _ = metrics
                .tenant_quota_refusals
                .remove_label_values(&[tenant.as_str(), quota]);
        }
        metrics.tenant_rooms.forget(tenant);
        debug!(%tenant, "tenant gone from the tenants file: its series are dropped");
    }
}

impl TenantState {
    /// Takes this round's usage and resets the round; returns the connections now, the usage, and
    /// whether the tenant is idle here (nothing open, nobody waiting).
    fn end_round(&self, now: Instant, others: u64) -> (u64, TenantUsage, bool) {
        let mut counts = self.counts();
        counts.accrue(now);
        // Whole seconds; the fraction stays for the next round, so nothing is lost to rounding.
        let seconds = counts.open_seconds.floor();
        counts.open_seconds -= seconds;
        let connections = counts.connections;
        // Only an edge where the tenant was active counts a peak (the cluster-wide count it sees):
        // the edges where it was active cover it, and an idle edge's stale view would only add noise.
        let active = connections > 0 || counts.peak > 0;
        let peak = if active {
            counts.peak.max(connections + others)
        } else {
            0
        };
        counts.peak = 0;
        // The report about to go out carries every admission of the round that ends here.
        counts.this_round = 0;
        let idle = connections == 0 && counts.waiting == 0;
        drop(counts);
        let relayed = self.relayed.swap(0, std::sync::atomic::Ordering::Relaxed);
        self.metrics.connection_seconds.inc_by(seconds);
        let usage = TenantUsage {
            connection_seconds: seconds as u64,
            peak_connections: peak,
            messages_relayed: relayed,
            ..TenantUsage::default()
        };
        (connections, usage, idle)
    }
}
