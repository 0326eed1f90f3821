//! Measurements: latency histograms, error counts, and the live counters the progress line shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded exactly; anything slower is recorded as this (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram (1 µs to 1 h, three significant digits).
    pub fn new() -> Latency {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5): this
        // cannot fail, whatever the input of a run (a unit test covers it).
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds");
        Latency { histogram }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_LATENCY_US)
            .clamp(1, MAX_LATENCY_US);
        self.histogram.saturating_record(us);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Percentiles and maximum.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean().round() as u64,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// A latency distribution as reported, in microseconds (all zero when `count` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Smallest value.
    pub min_us: u64,
    /// Mean, rounded.
    pub mean_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

/// Errors by their text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    counts: BTreeMap<String, u64>,
}

impl Errors {
    /// Counts one occurrence of `text`.
    pub fn add(&mut self, text: impl Into<String>) {
        *self.counts.entry(text.into()).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Errors) {
        for (text, n) in &other.counts {
            *self.counts.entry(text.clone()).or_default() += n;
        }
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The counts by text.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }
}

/// Live totals shared by every task of a run, for the progress line and for deciding when all
/// messages have arrived.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    inner: Arc<CountersInner>,
}

#[derive(Debug, Default)]
struct CountersInner {
    connected: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    superseded: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    /// One more connection joined.
    pub fn connected(&self) {
        self.inner.connected.fetch_add(1, Ordering::Relaxed);
    }
    /// One connection fewer.
    pub fn disconnected(&self) {
        self.inner.connected.fetch_sub(1, Ordering::Relaxed);
    }
    /// `n` more messages sent that must arrive (`n` recipients each).
    pub fn sent(&self, n: u64) {
        self.inner.sent.fetch_add(n, Ordering::Relaxed);
    }
    /// One more expected message arrived.
    pub fn received(&self) {
        self.inner.received.fetch_add(1, Ordering::Relaxed);
    }
    /// `n` expected deliveries will not come because a newer message replaced them on the way (the
    /// server keeps only a member's latest unsent status update): no longer expected, not lost.
    pub fn superseded(&self, n: u64) {
        self.inner.superseded.fetch_add(n, Ordering::Relaxed);
    }
    /// Expected deliveries that were superseded so far.
    pub fn superseded_total(&self) -> u64 {
        self.inner.superseded.load(Ordering::Relaxed)
    }
    /// One more error.
    pub fn error(&self) {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
    }
    /// (connected, expected deliveries, received, errors) now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        let i = &self.inner;
        (
            i.connected.load(Ordering::Relaxed),
            i.sent
                .load(Ordering::Relaxed)
                .saturating_sub(i.superseded.load(Ordering::Relaxed)),
            i.received.load(Ordering::Relaxed),
            i.errors.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Latency::new();
        for us in 1..=1000 {
            a.record(Duration::from_micros(us));
        }
        let mut b = Latency::new();
        b.record(Duration::from_secs(2));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 1001);
        assert!((495..=505).contains(&s.p50_us), "{s:?}");
        assert!(s.max_us >= 1_999_000, "{s:?}");
        assert_eq!(Latency::new().summary().count, 0);
    }

    #[test]
    fn errors_count_by_text() {
        let mut e = Errors::default();
        e.add("join timeout");
        e.add("join timeout");
        let mut f = Errors::default();
        f.add("server error: room is full");
        e.merge(&f);
        assert_eq!(e.total(), 3);
        assert_eq!(e.counts()["join timeout"], 2);
    }
}
