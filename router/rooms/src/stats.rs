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
use switchboard_proto::TenantId;

/// The statistics of one UTC hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourStats {
    /// Peak member count -> number of rooms that closed this hour with that peak.
    pub room_peaks: BTreeMap<u64, u64>,
    /// Whole minutes spent in a room -> number of leaves this hour after that long.
    pub connection_time: BTreeMap<u64, u64>,
    /// Hosted mode: each tenant's usage this hour. Left out when empty, so open mode's statistics
    /// (and what older versions read) stay as they were.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<TenantId, TenantUsage>,
}

/// One tenant's usage during one UTC hour (hosted mode). Edges count connections and messages,
/// routers (or a standalone edge's room service) count rooms; a cluster adds the records of all its
/// processes up with [`TenantUsage::add`]: sums for the totals, maxima for the peaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantUsage {
    /// Seconds its connections were open, summed over them.
    pub connection_seconds: u64,
    /// Most connections it had open at once, cluster-wide (as the edges saw it).
    pub peak_connections: u64,
    /// Rooms it opened (a join into an empty room).
    pub rooms_opened: u64,
    /// Most members one of its rooms had at once.
    pub peak_room_members: u64,
    /// Peer messages (`send_to_peer`) its connections sent that were forwarded.
    pub messages_relayed: u64,
}

impl TenantUsage {
    /// Adds `other` into this: totals add up, peaks take the larger.
    pub fn add(&mut self, other: &TenantUsage) {
        self.connection_seconds += other.connection_seconds;
        self.peak_connections = self.peak_connections.max(other.peak_connections);
        self.rooms_opened += other.rooms_opened;
        self.peak_room_members = self.peak_room_members.max(other.peak_room_members);
        self.messages_relayed += other.messages_relayed;
    }

    /// Whether it counts nothing.
    pub fn is_empty(&self) -> bool {
        *self == TenantUsage::default()
    }
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
        for (tenant, usage) in &other.tenants {
            self.tenants.entry(tenant.clone()).or_default().add(usage);
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

    /// Adds `usage` to `tenant`'s usage during `hour` (hosted mode).
    pub fn tenant_usage(&mut self, hour: u64, tenant: &TenantId, usage: &TenantUsage) {
        if usage.is_empty() {
            return;
        }
        self.bucket(hour)
            .tenants
            .entry(tenant.clone())
            .or_default()
            .add(usage);
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
            ..HourStats::default()
        };
        let b = HourStats {
            room_peaks: BTreeMap::from([(2, 1), (4, 1)]),
            connection_time: BTreeMap::from([(7, 2)]),
            ..HourStats::default()
        };
        a.add(&b);
        assert_eq!(a.room_peaks, BTreeMap::from([(2, 4), (4, 1)]));
        assert_eq!(a.connection_time, BTreeMap::from([(0, 5), (7, 2)]));
        assert_eq!(a.events(), 12);
    }

    #[test]
    fn tenant_usage_adds_totals_and_keeps_the_larger_peaks() {
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let usage = |seconds, peak, rooms, members, relayed| TenantUsage {
            connection_seconds: seconds,
            peak_connections: peak,
            rooms_opened: rooms,
            peak_room_members: members,
            messages_relayed: relayed,
        };
        let mut stats = HourlyStats::new(24);
        stats.tenant_usage(5, &a, &usage(10, 3, 1, 2, 7));
        stats.tenant_usage(5, &a, &usage(5, 2, 1, 4, 1));
        stats.tenant_usage(5, &b, &TenantUsage::default());
        assert_eq!(
            stats.hours()[&5].tenants,
            BTreeMap::from([(a.clone(), usage(15, 3, 2, 4, 8))]),
            "nothing recorded for a tenant that used nothing"
        );
        // An edge's record and a router's record of the same hour make one.
        let mut edge = HourStats::default();
        edge.tenants.insert(a.clone(), usage(60, 3, 0, 0, 9));
        let mut router = HourStats::default();
        router.tenants.insert(a.clone(), usage(0, 0, 2, 3, 0));
        edge.add(&router);
        assert_eq!(edge.tenants[&a], usage(60, 3, 2, 3, 9));
        // Open mode's statistics look as they always did.
        let json = serde_json::to_value(HourStats::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"room_peaks": {}, "connection_time": {}})
        );
        let old: HourStats =
            serde_json::from_str(r#"{"room_peaks": {"2": 1}, "connection_time": {}}"#).unwrap();
        assert!(old.tenants.is_empty());
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
