//! Time as the state machine sees it: a value passed in by the driver, never read from a clock.

use std::fmt;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The UTC hour this instant falls in, as hours since the epoch.
    pub fn hour(self) -> u64 {
        self.0 / 3_600_000
    }

    /// Whole minutes from `earlier` to `self` (0 if `earlier` is later: clocks can step back).
    pub fn whole_minutes_since(self, earlier: UnixMillis) -> u64 {
        self.0.saturating_sub(earlier.0) / 60_000
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_minutes() {
        assert_eq!(UnixMillis(0).hour(), 0);
        assert_eq!(UnixMillis(3_599_999).hour(), 0);
        assert_eq!(UnixMillis(3_600_000).hour(), 1);
        assert_eq!(UnixMillis(179_999).whole_minutes_since(UnixMillis(0)), 2);
        assert_eq!(UnixMillis(0).whole_minutes_since(UnixMillis(60_000)), 0);
    }
}
