//! The open-loop send schedule.
//!
//! A sender's send instants are fixed before it starts: `first + k * interval` for k = 0, 1, ... up
//! to the end. A sender that falls behind sends the overdue messages at once, each stamped with its
//! intended instant, so the time it spent behind counts as latency (no coordinated omission).

use std::time::Duration;

use tokio::time::Instant;

/// One sender's schedule of intended send instants.
#[derive(Debug, Clone)]
pub struct Schedule {
    first: Instant,
    interval: Duration,
    end: Instant,
    next: u64,
}

impl Schedule {
    /// `rate` sends per second from `start` until `end` (exclusive), the first one `phase` (0..1)
    /// of an interval after `start`, so that many senders with the same rate do not send in bursts.
    /// A rate of zero or less sends nothing.
    pub fn new(start: Instant, end: Instant, rate: f64, phase: f64) -> Schedule {
        if !(rate > 0.0 && rate.is_finite()) {
            return Schedule {
                first: end,
                interval: Duration::ZERO,
                end,
                next: 0,
            };
        }
        let interval = Duration::from_secs_f64(1.0 / rate);
        Schedule {
            first: start + interval.mul_f64(phase.clamp(0.0, 1.0)),
            interval,
            end,
            next: 0,
        }
    }

    /// The intended instant of send number `k`.
    fn instant(&self, k: u64) -> Instant {
        // Multiplying (rather than adding intervals up) keeps rounding from drifting.
        self.first + self.interval.mul_f64(k as f64)
    }

    /// The next send: its sequence number and intended instant, or `None` once the schedule is over.
    pub fn peek(&self) -> Option<(u64, Instant)> {
        let at = self.instant(self.next);
        (at < self.end).then_some((self.next, at))
    }

    /// Marks the next send as done (whenever it actually happened).
    pub fn advance(&mut self) {
        self.next += 1;
    }

    /// How many sends the whole schedule has.
    pub fn len(&self) -> u64 {
        let mut copy = self.clone();
        copy.next = 0;
        let mut n = 0;
        while copy.peek().is_some() {
            copy.advance();
            n += 1;
        }
        n
    }

    /// Whether the schedule has no sends at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_until_the_end() {
        let start = Instant::now();
        let mut s = Schedule::new(start, start + Duration::from_secs(1), 10.0, 0.0);
        let mut instants = Vec::new();
        while let Some((k, at)) = s.peek() {
            assert_eq!(k, instants.len() as u64);
            instants.push(at - start);
            s.advance();
        }
        assert_eq!(instants.len(), 10);
        for (k, at) in instants.iter().enumerate() {
            let want = Duration::from_millis(100 * k as u64);
            assert!(at.abs_diff(want) < Duration::from_micros(1), "{k}: {at:?}");
        }
    }

    #[test]
    fn falling_behind_keeps_intended_instants() {
        // Open loop: however late the sender asks, the intended instants stay where they were and
        // none is skipped.
        let start = Instant::now();
        let end = start + Duration::from_secs(2);
        let mut s = Schedule::new(start, end, 100.0, 0.5);
        let reference = s.clone();
        let mut seen = 0;
        while let Some((k, at)) = s.peek() {
            assert_eq!(at, reference.instant(k));
            assert_eq!(
                at - start,
                Duration::from_millis(10).mul_f64(k as f64 + 0.5)
            );
            s.advance();
            seen += 1;
        }
        assert_eq!(seen, 200);
        assert_eq!(reference.len(), 200);
    }

    #[test]
    fn phase_shifts_and_zero_rate_sends_nothing() {
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let s = Schedule::new(start, end, 4.0, 0.5);
        assert_eq!(
            s.peek().map(|(_, at)| at - start),
            Some(Duration::from_millis(125))
        );
        assert_eq!(s.len(), 4);
        assert!(Schedule::new(start, end, 0.0, 0.0).is_empty());
        assert!(Schedule::new(start, end, f64::NAN, 0.0).is_empty());
    }
}
