//! A token bucket, driven by instants passed in (so tests need no clock).

use std::time::Duration;

use tokio::time::Instant;

/// A classic token bucket: holds at most `burst` tokens, refills `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            burst,
            rate: rate_per_second,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl TokenBucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
    }

    /// Changes the rate and size from `now` on, keeping the tokens it holds (at most the new size):
    /// a new share of a tenant's rate neither refills nor empties the bucket.
    pub fn reshape(&mut self, rate_per_second: f64, burst: f64, now: Instant) {
        self.refill(now);
        self.rate = rate_per_second;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }
}

/// The edge's per-connection limit: a message bucket, and a second bucket of "strikes" (rate-limited
/// messages) whose exhaustion means sustained abuse.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    messages: TokenBucket,
    strikes: TokenBucket,
}

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Allow,
    /// Drop it and answer `rate limit exceeded`.
    Drop,
    /// Drop it and close the connection with 1008.
    Close,
}

/// Window over which `close_after` strikes mean sustained abuse.
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

impl RateLimiter {
    /// `rate` messages/s with bursts of `burst`; close after `close_after` dropped messages within
    /// ten seconds.
    pub fn new(rate: u32, burst: u32, close_after: u32, now: Instant) -> Self {
        let close_after = f64::from(close_after);
        RateLimiter {
            messages: TokenBucket::new(f64::from(rate), f64::from(burst), now),
            strikes: TokenBucket::new(close_after / STRIKE_WINDOW.as_secs_f64(), close_after, now),
        }
    }

    /// Judges one incoming message at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.messages.try_take(now) {
            Verdict::Allow
        } else if self.strikes.try_take(now) {
            Verdict::Drop
        } else {
            Verdict::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, start);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        assert!(bucket.try_take(start + Duration::from_millis(100)));
        assert!(!bucket.try_take(start + Duration::from_millis(150)));
        // Refill is capped at the burst size however long the pause.
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| bucket.try_take(later)).count(), 3);
    }

    #[test]
    fn a_reshaped_bucket_keeps_its_tokens_within_the_new_size() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 10.0, start);
        assert!((0..4).all(|_| bucket.try_take(start)));
        // 6 left: a smaller bucket holds 2 of them, and refills at the new rate.
        bucket.reshape(1.0, 2.0, start);
        assert_eq!((0..10).filter(|_| bucket.try_take(start)).count(), 2);
        assert!(!bucket.try_take(start + Duration::from_millis(900)));
        assert!(bucket.try_take(start + Duration::from_millis(1000)));
        // A larger one does not refill by growing.
        bucket.reshape(1.0, 100.0, start + Duration::from_millis(1000));
        assert!(!bucket.try_take(start + Duration::from_millis(1000)));
    }

    #[test]
    fn abuse_is_closed_but_a_burst_is_not() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(50, 200, 100, start);
        let verdicts: Vec<_> = (0..400).map(|_| limiter.check(start)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Allow).count(),
            200
        );
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Drop).count(),
            100
        );
        assert_eq!(verdicts[300..], [Verdict::Close; 100]);

        // A client that stays within its rate never gets a strike.
        let mut polite = RateLimiter::new(50, 200, 100, start);
        for i in 0..10_000u64 {
            let now = start + Duration::from_millis(i * 20);
            assert_eq!(polite.check(now), Verdict::Allow, "message {i}");
        }
    }
}
