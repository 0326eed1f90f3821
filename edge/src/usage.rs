//! Hosted mode's per-tenant bookkeeping at the edge: the connection quota (admission at the
//! upgrade), the tenant's message rate (one token bucket per tenant, shared by its connections on
//! this edge), and the usage counted for metrics and the hourly statistics.
//!
//! Standalone, the edge sees every connection and admits exactly up to the limit. In a cluster it
//! adds what the other edges last reported (`sb.usage.edge.<id>`, every `--usage-interval`) and
//! admits in rounds: per round at most its part of the headroom it sees, and at most
//! `--quota-admit-burst`, so that the edges' unseen admissions stay bounded
//! ([`switchboard_rooms::quota`], docs/quotas.md). An upgrade that finds its round used up waits
//! for the next one (at most `--quota-wait`) instead of being refused while headroom remains.
//!
//! # Layout
//! - this file: [`Usage`], [`TenantState`], [`TenantPermit`], admission and the message check.
//! - `round`: the task that ends each round (report, rate shares, usage, metrics) and follows the
//!   other edges' reports.
//! - `hourly`: where the usage goes: the in-process router's statistics standalone, the KV bucket
//!   `sb-stats` in a cluster.

mod hourly;
pub mod round;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::{Counter, IntCounter, IntGauge};
use switchboard_proto::TenantId;
use switchboard_rooms::quota::{self, Admission, Decision, RateShare};
use switchboard_runtime::usage::RemoteView;
use switchboard_tenants::{Directory, Tenant};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::ratelimit::TokenBucket;

/// The settings of quotas and usage at the edge (`--usage-interval`, `--quota-admit-burst`,
/// `--quota-wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How often a round ends: the edge reports its counts and recomputes its rate shares.
    pub interval: Duration,
    /// Most connections of one tenant admitted per round while other edges admit too.
    pub admit_burst: u64,
    /// Longest an upgrade waits for a round with room for it while the tenant has headroom.
    pub quota_wait: Duration,
    /// Most upgrades of one tenant waiting at once (besides its headroom): half the public port's
    /// places for HTTP connections not upgraded yet, which waiting upgrades hold.
    pub max_waiting: u64,
}

/// Why a connection was not admitted: the tenant's `max_connections` is reached (or this edge could
/// not get a place for it within `--quota-wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection quota exceeded")]
pub struct QuotaExceeded;

/// The edge's per-tenant state; cheap to clone. Inert in open mode.
#[derive(Debug, Clone)]
pub struct Usage {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: Settings,
    /// The tenants in force (hosted mode).
    directory: Option<Directory>,
    tenants: Mutex<HashMap<TenantId, Arc<TenantState>>>,
    /// The other edges' connections per tenant (cluster).
    others: Mutex<RemoteView>,
    /// Counts the rounds ended; waiting upgrades wake at each.
    rounds: watch::Sender<u64>,
    /// Before this, a clustered edge has not heard every other edge yet and admits nobody of a
    /// tenant with a connection limit.
    warm_at: Instant,
    metrics: Metrics,
}

/// One tenant at this edge. Its connections hold it through their [`TenantPermit`].
#[derive(Debug)]
pub struct TenantState {
    id: TenantId,
    counts: Mutex<Counts>,
    /// The tenant's message rate at this edge (its share in a cluster); `None`: unlimited. Locked
    /// once per message by this tenant's connections only: tenants never wait for each other.
    bucket: Mutex<Option<TokenBucket>>,
    /// Peer messages forwarded since the last round.
    relayed: AtomicU64,
    metrics: TenantMetrics,
}

#[derive(Debug)]
struct Counts {
    /// Connections admitted and not ended (upgrades in progress included).
    connections: u64,
    /// Admitted in the current round.
    this_round: u64,
    /// Upgrades waiting for a round.
    waiting: u64,
    /// Connection-seconds since `since`'s last move, not yet taken by a round.
    open_seconds: f64,
    since: Instant,
    /// Most connections (cluster-wide, as seen) since the last round took it.
    peak: u64,
}

impl Counts {
    /// Accrues connection-seconds up to `now` at the current count.
    fn accrue(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        self.open_seconds += elapsed * self.connections as f64;
        self.since = now;
    }
}

/// Metric handles of one tenant, taken once so that no message looks a label up.
#[derive(Debug)]
struct TenantMetrics {
    connections: IntGauge,
    connection_seconds: Counter,
    relayed: IntCounter,
    refused_connections: IntCounter,
    refused_messages: IntCounter,
}

/// A connection's place in its tenant's count, given back on drop.
#[derive(Debug)]
pub struct TenantPermit {
    state: Arc<TenantState>,
}

impl Usage {
    /// The bookkeeping of an edge: hosted if `directory` is given (the tenants in force), in a
    /// cluster if `clustered`.
    pub fn new(
        settings: Settings,
        directory: Option<Directory>,
        clustered: bool,
        metrics: Metrics,
    ) -> Usage {
        let now = Instant::now();
        // Two intervals: every other edge has reported once by then (they report every interval).
        let warm_at = if clustered && directory.is_some() {
            now + settings.interval * 2
        } else {
            now
        };
        Usage {
            shared: Arc::new(Shared {
                settings,
                directory,
                tenants: Mutex::new(HashMap::new()),
                others: Mutex::new(RemoteView::new()),
                rounds: watch::Sender::new(0),
                warm_at,
                metrics,
            }),
        }
    }

    /// Whether connections carry tenants (hosted mode).
    pub fn hosted(&self) -> bool {
        self.shared.directory.is_some()
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.shared.settings
    }

    /// Whether the edge has heard the other edges' reports (always, standalone and in open mode):
    /// part of readiness, so that a load balancer sends no clients to an edge that would have to
    /// make them wait.
    pub fn is_warm(&self) -> bool {
        Instant::now() >= self.shared.warm_at
    }

    fn tenants(&self) -> MutexGuard<'_, HashMap<TenantId, Arc<TenantState>>> {
        self.shared
            .tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn others(&self) -> MutexGuard<'_, RemoteView> {
        self.shared
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `tenant`'s state, made on first use.
    fn state_of(&self, tenant: &Tenant) -> Arc<TenantState> {
        if let Some(state) = self.tenants().get(&tenant.id) {
            return state.clone();
        }
        let others = self.others().others(&tenant.id);
        let state = Arc::new(TenantState::new(tenant, others, &self.shared.metrics));
        self.tenants()
            .entry(tenant.id.clone())
            .or_insert(state)
            .clone()
    }

    /// Admits one connection of `tenant`, waiting for the next round (at most `--quota-wait`)
    /// while the tenant has headroom but this edge has admitted its part of it for this round.
    pub async fn admit(&self, tenant: &Tenant) -> Result<TenantPermit, QuotaExceeded> {
        let state = self.state_of(tenant);
        let limit = u64::from(tenant.limits.max_connections);
        let settings = self.shared.settings;
        let deadline = Instant::now() + settings.quota_wait;
        let mut rounds = self.shared.rounds.subscribe();
        let mut waiting: Option<Waiting> = None;
        loop {
            let (others, peers) = {
                let view = self.others();
                (view.others(&state.id), view.senders())
            };
            let warm = limit == 0 || self.is_warm();
            let decision = {
                let mut counts = state.counts();
                let decision = if warm {
                    quota::decide(&Admission {
                        limit,
                        own: counts.connections,
                        others,
                        peers,
                        this_round: counts.this_round,
                        burst: settings.admit_burst,
                    })
                } else {
                    Decision::Wait
                };
                if decision == Decision::Admit {
                    counts.accrue(Instant::now());
                    counts.connections += 1;
                    counts.this_round += 1;
                    counts.peak = counts.peak.max(counts.connections + others);
                }
                if decision == Decision::Wait && waiting.is_none() {
                    // More waiters than the headroom would wait in vain; and each holds an HTTP
                    // connection, a place among the public port's pending ones: one tenant's
                    // storm must not hold them all.
                    let headroom = limit.saturating_sub(counts.connections + others);
                    if counts.waiting >= headroom.min(settings.max_waiting) {
                        Decision::Refuse
                    } else {
                        counts.waiting += 1;
                        waiting = Some(Waiting(state.clone()));
                        decision
                    }
                } else {
                    decision
                }
            };
            match decision {
                Decision::Admit => {
                    state.metrics.connections.inc();
                    return Ok(TenantPermit { state });
                }
                Decision::Refuse => {
                    state.metrics.refused_connections.inc();
                    return Err(QuotaExceeded);
                }
                Decision::Wait => {
                    let next = tokio::time::timeout_at(deadline, rounds.changed()).await;
                    if !matches!(next, Ok(Ok(()))) {
                        state.metrics.refused_connections.inc();
                        return Err(QuotaExceeded);
                    }
                }
            }
        }
    }
}

/// An upgrade's place among its tenant's waiting ones, given back on drop.
struct Waiting(Arc<TenantState>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut counts = self.0.counts();
        counts.waiting = counts.waiting.saturating_sub(1);
    }
}

impl TenantState {
    fn new(tenant: &Tenant, others: u64, metrics: &Metrics) -> TenantState {
        let id = tenant.id.clone();
        let label = [id.as_str()];
        let refusals = |quota: &str| {
            metrics
                .tenant_quota_refusals
                .with_label_values(&[id.as_str(), quota])
        };
        let now = Instant::now();
        // Until the first round sets the share, price this edge's first connection among the
        // others' (standalone: all of it).
        let share = quota::rate_share(
            tenant.limits.messages_per_second,
            tenant.limits.message_burst,
            1,
            1 + others,
        );
        TenantState {
            counts: Mutex::new(Counts {
                connections: 0,
                this_round: 0,
                waiting: 0,
                open_seconds: 0.0,
                since: now,
                peak: 0,
            }),
            bucket: Mutex::new(share.map(|s| TokenBucket::new(s.per_second, s.burst, now))),
            relayed: AtomicU64::new(0),
            metrics: TenantMetrics {
                connections: metrics.tenant_connections.with_label_values(&label),
                connection_seconds: metrics.tenant_connection_seconds.with_label_values(&label),
                relayed: metrics.tenant_messages_relayed.with_label_values(&label),
                refused_connections: refusals("connections"),
                refused_messages: refusals("messages"),
            },
            id,
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bucket(&self) -> MutexGuard<'_, Option<TokenBucket>> {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the tenant's message rate at this edge (`None`: unlimited), keeping the tokens it has
    /// (up to the new burst), so a round's new share neither refills nor empties the bucket.
    fn reshape(&self, share: Option<RateShare>, now: Instant) {
        let mut bucket = self.bucket();
        match (bucket.as_mut(), share) {
            (Some(bucket), Some(share)) => bucket.reshape(share.per_second, share.burst, now),
            (None, Some(share)) => {
                *bucket = Some(TokenBucket::new(share.per_second, share.burst, now))
            }
            (_, None) => *bucket = None,
        }
    }
}

impl TenantPermit {
    /// Takes one of the tenant's message tokens; false: over the tenant's rate (the message is
    /// dropped and answered `tenant rate limit exceeded`, and counted).
    pub fn try_message(&self, now: Instant) -> bool {
        let allowed = match self.state.bucket().as_mut() {
            Some(bucket) => bucket.try_take(now),
            None => true,
        };
        if !allowed {
            self.state.metrics.refused_messages.inc();
        }
        allowed
    }

    /// Counts a peer message of this connection that was forwarded.
    pub fn relayed(&self) {
        self.state.relayed.fetch_add(1, Ordering::Relaxed);
        self.state.metrics.relayed.inc();
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.state.id
    }
}

impl Drop for TenantPermit {
    fn drop(&mut self) {
        let mut counts = self.state.counts();
        counts.accrue(Instant::now());
        counts.connections = counts.connections.saturating_sub(1);
        drop(counts);
        self.state.metrics.connections.dec();
    }
}

#[cfg(test)]
mod tests;
