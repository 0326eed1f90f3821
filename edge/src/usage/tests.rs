//! The edge's quota rules over a paused clock: exact standalone, rounds in a cluster (wait for the
//! next round while headroom remains, refuse at the limit), the tenant's message bucket and its
//! share, and the usage a round takes.

use std::time::Duration;

use switchboard_proto::TenantId;
use switchboard_proto::bus::{TenantCount, UsageReport};
use switchboard_tenants::{Directory, Limits, Origins, Tenant};
use tokio::time::Instant;

use super::*;

const INTERVAL: Duration = Duration::from_millis(100);

fn tenant(limits: Limits) -> Tenant {
    Tenant {
        id: TenantId::parse("acme").unwrap(),
        keys: Vec::new(),
        limits,
        origins: Origins::default(),
        turn: None,
        webhook: None,
    }
}

fn usage(tenant: &Tenant, clustered: bool, burst: u64) -> Usage {
    usage_waiting(tenant, clustered, burst, 64)
}

fn usage_waiting(tenant: &Tenant, clustered: bool, burst: u64, max_waiting: u64) -> Usage {
    let directory = Directory::new();
    directory.replace("test", vec![tenant.clone()]).unwrap();
    Usage::new(
        Settings {
            interval: INTERVAL,
            admit_burst: burst,
            quota_wait: Duration::from_secs(1),
            max_waiting,
        },
        Some(directory),
        clustered,
        Metrics::new().unwrap(),
    )
}

/// Another edge reports `count` connections of the tenant.
fn other_edge_reports(usage: &Usage, count: u64) {
    let report = UsageReport {
        interval_ms: 100,
        tenants: vec![TenantCount {
            tenant: TenantId::parse("acme").unwrap(),
            count,
        }],
    };
    usage.others().record("other", report, Instant::now());
}

fn connections(limit: u32) -> Limits {
    Limits {
        max_connections: limit,
        ..Limits::default()
    }
}

#[tokio::test(start_paused = true)]
async fn standalone_admits_exactly_up_to_the_limit() {
    let acme = tenant(connections(3));
    let usage = usage(&acme, false, 1);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(usage.admit(&acme).await.expect("under the limit"));
    }
    let started = Instant::now();
    assert_eq!(usage.admit(&acme).await.unwrap_err(), QuotaExceeded);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "refused at once, no waiting"
    );
    held.pop();
    usage.admit(&acme).await.expect("a place was given back");
}

#[tokio::test(start_paused = true)]
async fn a_clustered_edge_admits_its_part_per_round_and_waits_for_the_next() {
    let acme = tenant(connections(10));
    let usage = usage(&acme, true, 2);
    // Not warm yet: it has not heard the others; nobody of a limited tenant gets in meanwhile.
    let early = tokio::spawn({
        let (usage, acme) = (usage.clone(), acme.clone());
        async move { usage.admit(&acme).await }
    });
    tokio::time::sleep(INTERVAL * 2).await;
    other_edge_reports(&usage, 5);
    usage.end_round();
    let mut held = vec![early.await.unwrap().expect("admitted once warm")];
    assert!(usage.is_warm());
    // Headroom 5 - 1 = 4 of two edges: two per round, and the burst is 2 as well.
    held.push(usage.admit(&acme).await.unwrap());
    let waiting = tokio::spawn({
        let (usage, acme) = (usage.clone(), acme.clone());
        async move { usage.admit(&acme).await }
    });
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "the round's part is used up: it waits"
    );
    usage.end_round();
    held.push(waiting.await.unwrap().expect("admitted in the next round"));
    // 3 here and 5 there: headroom 2 between two edges is one each per round.
    let waiting = tokio::spawn({
        let (usage, acme) = (usage.clone(), acme.clone());
        async move { usage.admit(&acme).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    usage.end_round();
    held.push(waiting.await.unwrap().unwrap());
    usage.end_round();
    held.push(usage.admit(&acme).await.unwrap());
    let started = Instant::now();
    assert_eq!(usage.admit(&acme).await.unwrap_err(), QuotaExceeded);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "at the limit: refused at once"
    );
    assert_eq!(held.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn waiting_is_bounded_in_time_and_in_number() {
    let acme = tenant(connections(10));
    let usage = usage_waiting(&acme, true, 1, 1);
    tokio::time::sleep(INTERVAL * 2).await;
    other_edge_reports(&usage, 1);
    let _first = usage.admit(&acme).await.unwrap();
    // The round's one admission is used: one upgrade may wait, a second is refused at once
    // (at most one waits here; and never more than the headroom, tested below).
    let waiting = tokio::spawn({
        let (usage, acme) = (usage.clone(), acme.clone());
        async move { usage.admit(&acme).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(usage.admit(&acme).await.unwrap_err(), QuotaExceeded);
    // No round comes (the task is not running): after --quota-wait, refused.
    let started = Instant::now();
    assert_eq!(waiting.await.unwrap().unwrap_err(), QuotaExceeded);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // The waiter's place was given back.
    usage.end_round();
    let _second = usage.admit(&acme).await.unwrap();

    // Limit 11, 8 elsewhere and (soon) 2 here: headroom 1, so one waiter, not two.
    let acme = tenant(connections(11));
    let roomy = usage_waiting(&acme, true, 1, 64);
    tokio::time::sleep(INTERVAL * 2).await;
    other_edge_reports(&roomy, 8);
    let _held = (roomy.admit(&acme).await.unwrap(), {
        roomy.end_round();
        roomy.admit(&acme).await.unwrap()
    });
    let waiting = tokio::spawn({
        let (roomy, acme) = (roomy.clone(), acme.clone());
        async move { roomy.admit(&acme).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    assert_eq!(roomy.admit(&acme).await.unwrap_err(), QuotaExceeded);
    roomy.end_round();
    waiting.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_tenants_messages_share_one_bucket_split_by_connections() {
    let acme = tenant(Limits {
        messages_per_second: 4,
        message_burst: 4,
        ..Limits::default()
    });
    let usage = usage(&acme, true, 8);
    tokio::time::sleep(INTERVAL * 2).await;
    let a = usage.admit(&acme).await.unwrap();
    let b = usage.admit(&acme).await.unwrap();
    let now = Instant::now();
    // Alone: the whole burst, shared by both connections.
    assert_eq!(
        (0..10)
            .filter(|_| a.try_message(now) || b.try_message(now))
            .count(),
        4
    );
    // Another edge has as many connections: half the rate and burst here from the next round.
    other_edge_reports(&usage, 2);
    usage.end_round();
    tokio::time::advance(Duration::from_secs(10)).await;
    let later = Instant::now();
    assert_eq!((0..10).filter(|_| a.try_message(later)).count(), 2);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(a.try_message(Instant::now()), "2 per second refill");
    assert!(!b.try_message(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn a_round_takes_connection_seconds_peaks_and_relays() {
    let acme = tenant(Limits::default());
    let usage = usage(&acme, true, 8);
    tokio::time::sleep(INTERVAL * 2).await;
    other_edge_reports(&usage, 3);
    let a = usage.admit(&acme).await.unwrap();
    let b = usage.admit(&acme).await.unwrap();
    tokio::time::advance(Duration::from_millis(2500)).await;
    drop(b);
    tokio::time::advance(Duration::from_millis(1000)).await;
    a.relayed();
    a.relayed();
    let (batch, report) = usage.end_round();
    let (_, usage_now) = batch.into_iter().next().expect("usage of acme");
    // 2.5 s × 2 + 1 s × 1 = 6 s; the peak counts the other edge's 3.
    assert_eq!(usage_now.connection_seconds, 6);
    assert_eq!(usage_now.peak_connections, 5);
    assert_eq!(usage_now.messages_relayed, 2);
    assert_eq!(
        report,
        vec![TenantCount {
            tenant: acme.id.clone(),
            count: 1
        }]
    );
    // Fractions carry over: 0.4 s and 0.6 s make one second.
    tokio::time::advance(Duration::from_millis(400)).await;
    let (batch, _) = usage.end_round();
    assert!(batch.values().all(|u| u.connection_seconds == 0));
    tokio::time::advance(Duration::from_millis(600)).await;
    let (batch, _) = usage.end_round();
    assert_eq!(batch.values().map(|u| u.connection_seconds).sum::<u64>(), 1);
}
