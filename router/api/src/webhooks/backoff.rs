//! How long a room's failing event waits before its next attempt: exponential, capped, with jitter.

use std::time::Duration;

/// The retry schedule: after the n-th failure in a row, wait about `initial * 2^(n-1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (before jitter).
    pub initial: Duration,
    /// The longest wait (before jitter).
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to 5 minutes: a receiver that is down for a minute hears again within about
    /// 30 s of coming back, one down for an hour is tried about a dozen times an hour.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failures in a row (1 for the first), with `jitter` in `[0, 1]`
    /// (a fresh random number per call; values outside are clamped). "Equal jitter": the wait is
    /// between half and all of the exponential delay, so rooms that failed together (one endpoint
    /// down) spread their retries out instead of hitting it at once when it comes back, yet no
    /// retry comes sooner than half the schedule.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let base = self
            .initial
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |d| d.min(self.max));
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_table() {
        let backoff = Backoff::default();
        let ms = Duration::from_millis;
        let cases: &[(u32, f64, Duration)] = &[
            // failures, jitter, wait
            (1, 1.0, ms(1_000)),
            (1, 0.0, ms(500)),
            (1, 0.5, ms(750)),
            (2, 1.0, ms(2_000)),
            (3, 1.0, ms(4_000)),
            (4, 0.0, ms(4_000)),
            (9, 1.0, ms(256_000)),
            // capped at max
            (10, 1.0, ms(300_000)),
            (10, 0.0, ms(150_000)),
            (1_000, 1.0, ms(300_000)),
            (u32::MAX, 1.0, ms(300_000)),
            // 0 failures is treated as the first
            (0, 1.0, ms(1_000)),
            // jitter outside [0, 1] is clamped
            (1, 7.0, ms(1_000)),
            (1, -3.0, ms(500)),
        ];
        for &(failures, jitter, want) in cases {
            assert_eq!(
                backoff.delay(failures, jitter),
                want,
                "failures {failures} jitter {jitter}"
            );
        }
    }
}
