//! What the other processes of a cluster last reported of their per-tenant counts (hosted mode):
//! edges follow each other's connections, routers each other's open rooms. The view keeps the
//! latest [`UsageReport`] of each sender, forgets a sender that has been silent for
//! [`USAGE_EXPIRY_INTERVALS`] of its intervals, and answers "how many elsewhere" per tenant in
//! constant time.

use std::collections::HashMap;
use std::time::Duration;

use switchboard_proto::TenantId;
use switchboard_proto::bus::{USAGE_EXPIRY_INTERVALS, UsageReport};
use tokio::time::Instant;

/// The others' latest reports, and their sums per tenant.
#[derive(Debug, Default)]
pub struct RemoteView {
    senders: HashMap<String, Sender>,
    totals: HashMap<TenantId, u64>,
}

#[derive(Debug)]
struct Sender {
    /// When its report counts no more.
    expires: Instant,
    report: UsageReport,
}

impl RemoteView {
    /// Nobody heard yet.
    pub fn new() -> Self {
        RemoteView::default()
    }

    /// `sender` reported `report` (received at `now`); it replaces the sender's previous one.
    pub fn record(&mut self, sender: &str, report: UsageReport, now: Instant) {
        // At least one millisecond, so a zero interval cannot make a report expire at once.
        let interval = Duration::from_millis(report.interval_ms.max(1));
        let expires = now + interval * USAGE_EXPIRY_INTERVALS;
        let previous = self
            .senders
            .insert(sender.to_owned(), Sender { expires, report });
        if let Some(previous) = previous {
            self.subtract(&previous.report);
        }
        if let Some(current) = self.senders.get(sender) {
            for count in &current.report.tenants {
                *self.totals.entry(count.tenant.clone()).or_default() += count.count;
            }
        }
    }

    /// Forgets the senders silent for too long (stopped, or cut off); returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let gone: Vec<String> = self
            .senders
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            if let Some(sender) = self.senders.remove(name) {
                self.subtract(&sender.report);
            }
        }
        gone.len()
    }

    fn subtract(&mut self, report: &UsageReport) {
        for count in &report.tenants {
            if let Some(total) = self.totals.get_mut(&count.tenant) {
                *total = total.saturating_sub(count.count);
                if *total == 0 {
                    self.totals.remove(&count.tenant);
                }
            }
        }
    }

    /// What the others hold of `tenant`, summed.
    pub fn others(&self, tenant: &TenantId) -> u64 {
        self.totals.get(tenant).copied().unwrap_or(0)
    }

    /// The tenants the others hold something of, with their sums.
    pub fn tenants(&self) -> impl Iterator<Item = (&TenantId, u64)> {
        self.totals.iter().map(|(tenant, total)| (tenant, *total))
    }

    /// How many others are reporting.
    pub fn senders(&self) -> u64 {
        self.senders.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::bus::TenantCount;

    fn report(interval_ms: u64, counts: &[(&str, u64)]) -> UsageReport {
        UsageReport {
            interval_ms,
            tenants: counts
                .iter()
                .map(|(tenant, count)| TenantCount {
                    tenant: TenantId::parse(tenant).unwrap_or_else(|e| panic!("{e}")),
                    count: *count,
                })
                .collect(),
        }
    }

    #[test]
    fn latest_reports_add_up_and_silent_senders_expire() {
        let a = TenantId::parse("a").unwrap_or_else(|e| panic!("{e}"));
        let b = TenantId::parse("b").unwrap_or_else(|e| panic!("{e}"));
        let start = Instant::now();
        let mut view = RemoteView::new();
        view.record("e1", report(100, &[("a", 3), ("b", 1)]), start);
        view.record("e2", report(1000, &[("a", 2)]), start);
        assert_eq!(
            (view.others(&a), view.others(&b), view.senders()),
            (5, 1, 2)
        );
        // A newer report replaces the sender's previous one.
        view.record("e1", report(100, &[("a", 1)]), start);
        assert_eq!((view.others(&a), view.others(&b)), (3, 0));
        // e1 reports every 100 ms: after 8 of them without a report it is forgotten; e2 is not.
        let before = start + Duration::from_millis(799);
        assert_eq!(view.expire(before), 0);
        assert_eq!(view.expire(start + Duration::from_millis(800)), 1);
        assert_eq!((view.others(&a), view.senders()), (2, 1));
        assert_eq!(view.expire(start + Duration::from_secs(8)), 1);
        assert_eq!((view.others(&a), view.senders()), (0, 0));
    }
}
