//! palava's hourly statistics: `room_peaks` (peak size -> rooms that closed with it) and
//! `connection_time` (whole minutes in a room -> number of leaves), bucketed by the UTC hour in which
//! the room closed or the member left. Only a bounded number of hours is kept.
//!
//! # Layout
//! - [`HourStats`], [`HourlyStats`]: the counts, and adding them up.
//! - [`aggregate`]: how a cluster of routers stores them as per-process totals and sums them back
//!   ([`aggregate::LocalTally`], [`aggregate::StoredStats`]).

pub mod aggregate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The statistics of one UTC hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourStats {
    /// Peak member count -> number of rooms that closed this hour with that peak.
    pub room_peaks: BTreeMap<u64, u64>,
    /// Whole minutes spent in a room -> number of leaves this hour after that long.
    pub connection_time: BTreeMap<u64, u64>,
}

impl HourStats {
    /// Adds `other`'s counts into these.
    pub fn add(&mut self, other: &HourStats) {
        for (&peak, &n) in &other.room_peaks {
            *self.room_peaks.entry(peak).or_default() += n;
        }
        for (&minutes, &n) in &other.connection_time {
            *self.connection_time.entry(minutes).or_default() += n;
        }
    }

    /// How many events these counts hold (rooms closed plus leaves).
    pub fn events(&self) -> u64 {
        self.room_peaks.values().sum::<u64>() + self.connection_time.values().sum::<u64>()
    }
}

/// Statistics per UTC hour (hours since the epoch), keeping the newest `retention_hours`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourlyStats {
    hours: BTreeMap<u64, HourStats>,
    retention_hours: u64,
}

impl HourlyStats {
    /// Empty statistics that keep `retention_hours` hours (at least one).
    pub fn new(retention_hours: u64) -> Self {
        HourlyStats {
            hours: BTreeMap::new(),
            retention_hours: retention_hours.max(1),
        }
    }

    /// Records a room that closed during `hour` with `peak` members.
    pub fn room_closed(&mut self, hour: u64, peak: u64) {
        *self.bucket(hour).room_peaks.entry(peak).or_default() += 1;
    }

    /// Records a member that left during `hour` after `minutes` whole minutes in its room.
    pub fn member_left(&mut self, hour: u64, minutes: u64) {
        *self
            .bucket(hour)
            .connection_time
            .entry(minutes)
            .or_default() += 1;
    }

    /// How many hours are kept.
    pub fn retention_hours(&self) -> u64 {
        self.retention_hours
    }

    /// The statistics by hour, oldest first.
    pub fn hours(&self) -> &BTreeMap<u64, HourStats> {
        &self.hours
    }

    /// Adds `other`'s counts into these (used when statistics are restored or merged from storage).
    pub fn merge(&mut self, other: &HourlyStats) {
        for (&hour, stats) in &other.hours {
            self.add_hour(hour, stats);
        }
    }

    /// Adds `stats` into the counts of `hour`.
    pub fn add_hour(&mut self, hour: u64, stats: &HourStats) {
        self.bucket(hour).add(stats);
    }

    /// Drops every hour before `oldest`.
    pub fn forget_before(&mut self, oldest: u64) {
        self.hours = self.hours.split_off(&oldest);
    }

    fn bucket(&mut self, hour: u64) -> &mut HourStats {
        // Drop hours that fell out of the retention window, so memory stays bounded however long the
        // process runs. A late event for an already dropped hour opens that hour again and is dropped
        // on the next call; that only happens when the clock steps back by more than the window.
        let oldest_kept = hour.saturating_sub(self.retention_hours - 1);
        while let Some((&first, _)) = self.hours.first_key_value() {
            if first >= oldest_kept {
                break;
            }
            self.hours.pop_first();
        }
        self.hours.entry(hour).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_hour_and_value() {
        let mut stats = HourlyStats::new(24);
        stats.room_closed(10, 2);
        stats.room_closed(10, 2);
        stats.room_closed(10, 5);
        stats.member_left(11, 0);
        stats.member_left(11, 3);
        stats.member_left(11, 3);
        let hours = stats.hours();
        assert_eq!(hours[&10].room_peaks, BTreeMap::from([(2, 2), (5, 1)]));
        assert!(hours[&10].connection_time.is_empty());
        assert_eq!(hours[&11].connection_time, BTreeMap::from([(0, 1), (3, 2)]));
    }

    #[test]
    fn old_hours_are_dropped() {
        let mut stats = HourlyStats::new(3);
        for hour in 0..10 {
            stats.member_left(hour, 1);
        }
        assert_eq!(stats.hours().keys().copied().collect::<Vec<_>>(), [7, 8, 9]);
    }

    #[test]
    fn forget_before_keeps_the_newer_hours() {
        let mut stats = HourlyStats::new(24);
        for hour in 5..9 {
            stats.room_closed(hour, 2);
        }
        stats.forget_before(7);
        assert_eq!(stats.hours().keys().copied().collect::<Vec<_>>(), [7, 8]);
    }

    #[test]
    fn hour_stats_add_and_count_events() {
        let mut a = HourStats {
            room_peaks: BTreeMap::from([(2, 3)]),
            connection_time: BTreeMap::from([(0, 5)]),
        };
        let b = HourStats {
            room_peaks: BTreeMap::from([(2, 1), (4, 1)]),
            connection_time: BTreeMap::from([(7, 2)]),
        };
        a.add(&b);
        assert_eq!(a.room_peaks, BTreeMap::from([(2, 4), (4, 1)]));
        assert_eq!(a.connection_time, BTreeMap::from([(0, 5), (7, 2)]));
        assert_eq!(a.events(), 12);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = HourlyStats::new(24);
        a.room_closed(1, 4);
        let mut b = HourlyStats::new(24);
        b.room_closed(1, 4);
        b.member_left(2, 9);
        a.merge(&b);
        assert_eq!(a.hours()[&1].room_peaks[&4], 2);
        assert_eq!(a.hours()[&2].connection_time[&9], 1);
    }
}
