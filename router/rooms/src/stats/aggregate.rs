//! The hourly statistics of a cluster, stored as aggregates instead of a journal of events.
//!
//! Every router process counts its own events into a [`LocalTally`] and, every flush, stores for
//! each hour that changed its *whole* totals of that hour under one key of its own (one key per hour
//! and process: `switchboard_proto::subject::stats_key`). A stored value replaces the previous one of
//! its key, so storing is idempotent: a retried or repeated write never counts twice, and storage
//! grows with the hours kept times the router processes, not with traffic. Readers keep the latest
//! value of every key in [`StoredStats`] and add them up per hour.
//!
//! Keys are per process, not per router id, so that a router restarted under the same id never
//! overwrites what its previous incarnation stored; and no two writers ever share a key, so there is
//! no write contention and no read-modify-write.

use std::collections::BTreeMap;

use switchboard_proto::TenantId;

use super::{HourStats, HourlyStats, TenantUsage};

/// One router process's own counts, and how many of them are not stored yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTally {
    totals: HourlyStats,
    /// Events counted per hour since the last stored write of that hour's totals began.
    unstored: BTreeMap<u64, u64>,
}

/// One hour's totals to store; storing them covers `events` events that were not stored before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourWrite {
    /// The UTC hour (hours since the epoch).
    pub hour: u64,
    /// This process's totals of that hour.
    pub totals: HourStats,
    /// Events counted in the hour that no acknowledged write included yet.
    pub events: u64,
}

impl LocalTally {
    /// Nothing counted yet; keeps `retention_hours` hours.
    pub fn new(retention_hours: u64) -> Self {
        LocalTally {
            totals: HourlyStats::new(retention_hours),
            unstored: BTreeMap::new(),
        }
    }

    /// Counts a room that closed during `hour` with `peak` members.
    pub fn room_closed(&mut self, hour: u64, peak: u64) {
        self.totals.room_closed(hour, peak);
        self.counted(hour);
    }

    /// Counts a member that left during `hour` after `minutes` whole minutes in its room.
    pub fn member_left(&mut self, hour: u64, minutes: u64) {
        self.totals.member_left(hour, minutes);
        self.counted(hour);
    }

    /// Adds `usage` to `tenant`'s usage during `hour` (hosted mode); one event.
    pub fn tenant_usage(&mut self, hour: u64, tenant: &TenantId, usage: &TenantUsage) {
        if usage.is_empty() {
            return;
        }
        self.totals.tenant_usage(hour, tenant, usage);
        self.counted(hour);
    }

    fn counted(&mut self, hour: u64) {
        *self.unstored.entry(hour).or_default() += 1;
        // Hours that fell out of the retention window are gone from the totals: nothing to store.
        self.unstored
            .retain(|hour, _| self.totals.hours().contains_key(hour));
    }

    /// Events counted and not stored yet (what a crash would lose).
    pub fn pending(&self) -> u64 {
        self.unstored.values().sum()
    }

    /// The hours that changed since they were last stored, with their current totals.
    pub fn writes(&self) -> Vec<HourWrite> {
        self.unstored
            .iter()
            .filter_map(|(&hour, &events)| {
                let totals = self.totals.hours().get(&hour)?.clone();
                Some(HourWrite {
                    hour,
                    totals,
                    events,
                })
            })
            .collect()
    }

    /// `write` was acknowledged: the events it covered are stored. Events counted while it was in
    /// flight stay pending (the next write of the hour includes them).
    pub fn stored(&mut self, write: &HourWrite) {
        if let Some(left) = self.unstored.get_mut(&write.hour) {
            *left = left.saturating_sub(write.events);
            if *left == 0 {
                self.unstored.remove(&write.hour);
            }
        }
    }

    /// Everything this process counted (within the retention window).
    pub fn totals(&self) -> &HourlyStats {
        &self.totals
    }
}

/// The latest stored value of every statistics key: each router process's totals per hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredStats {
    /// Hour -> process (instance) -> that process's totals of the hour.
    hours: BTreeMap<u64, BTreeMap<String, HourStats>>,
}

impl StoredStats {
    /// Empty.
    pub fn new() -> Self {
        StoredStats::default()
    }

    /// `instance` stored `totals` for `hour`; they replace what it stored before (they include it).
    pub fn put(&mut self, hour: u64, instance: &str, totals: HourStats) {
        self.hours
            .entry(hour)
            .or_default()
            .insert(instance.to_string(), totals);
    }

    /// The key of `instance` for `hour` was deleted.
    pub fn remove(&mut self, hour: u64, instance: &str) {
        if let Some(by_instance) = self.hours.get_mut(&hour) {
            by_instance.remove(instance);
            if by_instance.is_empty() {
                self.hours.remove(&hour);
            }
        }
    }

    /// Drops every hour before `oldest` (storage expires them by age; nobody announces that).
    pub fn forget_before(&mut self, oldest: u64) {
        self.hours = self.hours.split_off(&oldest);
    }

    /// How many keys (hour and process) are held.
    pub fn records(&self) -> usize {
        self.hours.values().map(BTreeMap::len).sum()
    }

    /// The cluster's statistics for the `retention_hours` hours up to `now_hour`: every process's
    /// totals added up per hour, with this process's (`own_instance`) taken from `own`, which is
    /// never older than what it stored.
    pub fn combined(
        &self,
        own_instance: &str,
        own: &HourlyStats,
        retention_hours: u64,
        now_hour: u64,
    ) -> HourlyStats {
        let oldest = now_hour.saturating_sub(retention_hours.max(1) - 1);
        let mut out = HourlyStats::new(retention_hours);
        for (&hour, by_instance) in self.hours.range(oldest..) {
            for (instance, totals) in by_instance {
                if instance != own_instance {
                    out.add_hour(hour, totals);
                }
            }
        }
        for (&hour, totals) in own.hours().range(oldest..) {
            out.add_hour(hour, totals);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peaks(pairs: &[(u64, u64)]) -> HourStats {
        HourStats {
            room_peaks: pairs.iter().copied().collect(),
            connection_time: BTreeMap::new(),
            ..HourStats::default()
        }
    }

    /// Stores every pending write of `tally` as `instance` would (the flush), acknowledging them.
    fn flush(tally: &mut LocalTally, instance: &str, stored: &mut StoredStats) {
        for write in tally.writes() {
            stored.put(write.hour, instance, write.totals.clone());
            tally.stored(&write);
        }
    }

    #[test]
    fn a_tally_writes_only_changed_hours_with_their_whole_totals() {
        let mut tally = LocalTally::new(24);
        tally.room_closed(10, 2);
        tally.member_left(10, 0);
        tally.member_left(11, 3);
        assert_eq!(tally.pending(), 3);
        let writes = tally.writes();
        assert_eq!(writes.iter().map(|w| w.hour).collect::<Vec<_>>(), [10, 11]);
        for write in &writes {
            tally.stored(write);
        }
        assert_eq!(tally.pending(), 0);
        assert!(tally.writes().is_empty());

        // Only hour 10 changed; its write carries everything counted in it, old and new.
        tally.room_closed(10, 2);
        let writes = tally.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].hour, 10);
        assert_eq!(writes[0].events, 1);
        assert_eq!(writes[0].totals.room_peaks, BTreeMap::from([(2, 2)]));
        assert_eq!(writes[0].totals.connection_time, BTreeMap::from([(0, 1)]));
    }

    #[test]
    fn events_counted_during_a_write_stay_pending() {
        let mut tally = LocalTally::new(24);
        tally.room_closed(10, 2);
        let write = tally.writes().remove(0);
        tally.member_left(10, 1); // while the write is in flight
        tally.stored(&write);
        assert_eq!(tally.pending(), 1);
        assert_eq!(tally.writes()[0].totals.events(), 2);
    }

    #[test]
    fn a_failed_write_is_retried_with_the_newer_totals() {
        let mut tally = LocalTally::new(24);
        tally.room_closed(10, 2);
        let _lost = tally.writes(); // never acknowledged
        tally.room_closed(10, 3);
        let writes = tally.writes();
        assert_eq!(writes[0].events, 2);
        assert_eq!(
            writes[0].totals.room_peaks,
            BTreeMap::from([(2, 1), (3, 1)])
        );
    }

    #[test]
    fn hours_out_of_retention_are_not_written() {
        let mut tally = LocalTally::new(2);
        tally.room_closed(10, 2);
        tally.room_closed(12, 2);
        assert_eq!(
            tally.writes().iter().map(|w| w.hour).collect::<Vec<_>>(),
            [12]
        );
        assert_eq!(tally.pending(), 1);
    }

    #[test]
    fn a_stored_value_replaces_the_previous_one_of_its_key() {
        let mut stored = StoredStats::new();
        stored.put(10, "a", peaks(&[(2, 1)]));
        stored.put(10, "a", peaks(&[(2, 3)]));
        // Seeing the same value again (a replayed watch) changes nothing either.
        stored.put(10, "a", peaks(&[(2, 3)]));
        assert_eq!(stored.records(), 1);
        let view = stored.combined("me", &HourlyStats::new(24), 24, 10);
        assert_eq!(view.hours()[&10].room_peaks, BTreeMap::from([(2, 3)]));
    }

    #[test]
    fn the_view_adds_up_every_process_per_hour() {
        let mut stored = StoredStats::new();
        stored.put(10, "a-1", peaks(&[(2, 1)]));
        stored.put(10, "a-2", peaks(&[(2, 1), (5, 1)]));
        stored.put(11, "b-1", peaks(&[(3, 4)]));
        let view = stored.combined("me", &HourlyStats::new(24), 24, 11);
        assert_eq!(
            view.hours()[&10].room_peaks,
            BTreeMap::from([(2, 2), (5, 1)])
        );
        assert_eq!(view.hours()[&11].room_peaks, BTreeMap::from([(3, 4)]));
        stored.remove(10, "a-1");
        let view = stored.combined("me", &HourlyStats::new(24), 24, 11);
        assert_eq!(
            view.hours()[&10].room_peaks,
            BTreeMap::from([(2, 1), (5, 1)])
        );
    }

    #[test]
    fn the_own_process_counts_from_its_tally_not_twice() {
        let mut tally = LocalTally::new(24);
        let mut stored = StoredStats::new();
        tally.room_closed(10, 2);
        flush(&mut tally, "me", &mut stored);
        tally.room_closed(10, 2); // not stored yet
        stored.put(10, "other", peaks(&[(2, 1)]));
        let view = stored.combined("me", tally.totals(), 24, 10);
        assert_eq!(view.hours()[&10].room_peaks, BTreeMap::from([(2, 3)]));
    }

    #[test]
    fn hours_before_the_retention_window_are_left_out() {
        let mut stored = StoredStats::new();
        for hour in 0..10 {
            stored.put(hour, "a", peaks(&[(2, 1)]));
        }
        let view = stored.combined("me", &HourlyStats::new(3), 3, 9);
        assert_eq!(view.hours().keys().copied().collect::<Vec<_>>(), [7, 8, 9]);
        stored.forget_before(8);
        assert_eq!(stored.records(), 2);
    }

    #[test]
    fn a_crashed_process_loses_only_what_it_had_not_stored() {
        let mut stored = StoredStats::new();
        let mut first = LocalTally::new(24);
        for _ in 0..1000 {
            first.room_closed(10, 2);
            first.member_left(10, 0);
        }
        flush(&mut first, "r1-aaaa", &mut stored);
        first.room_closed(10, 7); // counted after the last flush, then the process dies
        drop(first);

        // The same router id restarts as a new process: its counts add to, never replace, the old.
        let mut second = LocalTally::new(24);
        second.room_closed(10, 2);
        flush(&mut second, "r1-bbbb", &mut stored);

        // Records grow with processes and hours, not with events.
        assert_eq!(stored.records(), 2);
        let view = stored.combined("r2-cccc", &HourlyStats::new(24), 24, 10);
        assert_eq!(view.hours()[&10].room_peaks, BTreeMap::from([(2, 1001)]));
        assert_eq!(
            view.hours()[&10].connection_time,
            BTreeMap::from([(0, 1000)])
        );
    }
}
