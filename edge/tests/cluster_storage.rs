//! What the routers keep in JetStream, against real processes (a 3-node nats-server cluster, routers
//! and edges on loopback): statistics storage grows with the hours kept, not with traffic; `sb-peaks`
//! holds only open rooms; the hourly statistics stay exact when the router that counted them dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use common::Client;
use common::cluster::{Cluster, SECRET};
use futures_util::TryStreamExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use switchboard_proto::{RoomId, RoomKeyer, subject};
use switchboard_testkit::{http_get, wait_until};

/// How long storage and the routers' views may take to catch up.
const PATIENCE: Duration = Duration::from_secs(15);

/// The JetStream stream behind a key-value bucket.
fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// Reads until `pong`, skipping room events; fails on an error.
async fn until_pong(client: &mut Client) {
    loop {
        let message = client.recv().await;
        assert_ne!(message["event"], "error", "unexpected error: {message}");
        if message["event"] == "pong" {
            return;
        }
    }
}

/// `size` members join `room` (alternating between the two edges), then all leave. Returns once the
/// router has applied every leave (the edge answers a ping only after the leave before it).
async fn visit(cluster: &Cluster, room: &str, size: usize) {
    let mut members = Vec::new();
    for i in 0..size {
        let mut member = Client::connect_url(&cluster.edge_url(i % 2)).await;
        member.join(room, json!({})).await;
        members.push(member);
    }
    for member in &mut members {
        member.send(json!({"event": "leave_room"})).await;
        member.send(json!({"event": "ping"})).await;
    }
    for member in &mut members {
        until_pong(member).await;
    }
}

/// Waits until every running router has stored all it counted and every peak operation
/// (`switchboard_router_store_pending` 0 for both kinds).
async fn stored(cluster: &Cluster) {
    for router in cluster.routers.iter().flatten() {
        let admin = router.addr("admin_listen").unwrap();
        wait_until(PATIENCE, || async {
            let Ok((200, body)) = http_get(admin, "/metrics").await else {
                return false;
            };
            ["peaks", "stats"].iter().all(|kind| {
                body.lines()
                    .any(|l| l == format!("switchboard_router_store_pending{{kind=\"{kind}\"}} 0"))
            })
        })
        .await
        .unwrap_or_else(|e| panic!("a router did not store everything: {e}\n{}", cluster.logs()));
    }
}

/// Messages held by a stream (for a key-value bucket with history 1: its entries, markers included).
async fn messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .unwrap()
        .cached_info()
        .state
        .messages
}

/// A router's `/stats`.
async fn stats(cluster: &Cluster, router: usize) -> Value {
    let admin = cluster.router(router).addr("admin_listen").unwrap();
    let (status, body) = http_get(admin, "/stats").await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `room_peaks` and `connection_time` of an `hourly` object, summed over its hours.
fn totals(hourly: &Value) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let (mut peaks, mut minutes) = (BTreeMap::new(), BTreeMap::new());
    for hour in hourly["hours"].as_object().unwrap().values() {
        for (field, sums) in [
            ("room_peaks", &mut peaks),
            ("connection_time", &mut minutes),
        ] {
            for (value, n) in hour[field].as_object().unwrap() {
                *sums.entry(value.clone()).or_insert(0) += n.as_u64().unwrap();
            }
        }
    }
    (peaks, minutes)
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Waits until router `router`'s `/stats` sums to `peaks` and `minutes`; returns its `hourly`.
async fn wait_for_totals(
    cluster: &Cluster,
    router: usize,
    peaks: &BTreeMap<String, u64>,
    minutes: &BTreeMap<String, u64>,
) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let reached = wait_until(PATIENCE, || {
        let last = &last;
        async move {
            // A router that was just started answers 503 until it reaches JetStream.
            let admin = cluster.router(router).addr("admin_listen").unwrap();
            let Ok((200, body)) = http_get(admin, "/stats").await else {
                return false;
            };
            let hourly = serde_json::from_str::<Value>(&body).unwrap()["hourly"].clone();
            let done = totals(&hourly) == (peaks.clone(), minutes.clone());
            *last.lock().unwrap() = hourly;
            done
        }
    })
    .await;
    let last = last.into_inner().unwrap();
    if let Err(e) = reached {
        panic!(
            "router {router}: /stats {last}, expected room_peaks {peaks:?} and connection_time \
             {minutes:?}: {e}\n{}",
            cluster.logs()
        );
    }
    last
}

/// `n` room names (`prefix-<i>`) whose slots router `router` serves.
async fn rooms_of(cluster: &Cluster, router: usize, prefix: &str, n: usize) -> Vec<String> {
    let mut rooms = Vec::new();
    for i in 0.. {
        let room = format!("{prefix}-{i}");
        if cluster.owner_of(&room).await == Some(router) {
            rooms.push(room);
            if rooms.len() == n {
                break;
            }
        }
    }
    rooms
}

fn now_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
}

/// Churn leaves nothing behind that grows with it: after rooms opened and closed, `sb-peaks` holds no
/// entry (not even a deletion marker) for them, and ten times as many joins in the same hour leave the
/// statistics bucket with exactly as many records. Every join and leave is still counted. The
/// bucket keeps the configured retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_grows_with_hours_and_open_rooms_not_with_joins() {
    let cluster = Cluster::start(2, 2).await;
    let js = jetstream::new(async_nats::connect(cluster.nats.url(0)).await.unwrap());
    let peaks_stream = kv_stream(subject::PEAKS_BUCKET);
    let stats_stream = kv_stream(subject::STATS_BUCKET);
    let rooms: Vec<String> = (0..20).map(|i| format!("churn-{i}")).collect();
    let first_hour = now_hour();

    join_all(rooms.iter().map(|room| visit(&cluster, room, 2))).await;
    stored(&cluster).await;
    assert_eq!(
        messages(&js, &peaks_stream).await,
        0,
        "sb-peaks keeps entries of closed rooms"
    );
    let records_once = messages(&js, &stats_stream).await;
    assert!(records_once >= 1, "nothing stored");

    for _ in 0..10 {
        join_all(rooms.iter().map(|room| visit(&cluster, room, 2))).await;
    }
    stored(&cluster).await;
    assert_eq!(
        messages(&js, &peaks_stream).await,
        0,
        "sb-peaks keeps entries of closed rooms"
    );
    let records_after = messages(&js, &stats_stream).await;
    if now_hour() == first_hour {
        assert_eq!(
            records_after, records_once,
            "10x the joins in one hour changed the number of statistics records"
        );
    } else {
        // A new hour began meanwhile: at most one more record per router process.
        assert!(
            records_after <= records_once + 2,
            "{records_once} records, then {records_after} after 10x the joins"
        );
    }
    // One record per hour and router process, whatever the traffic.
    let bucket = js.get_key_value(subject::STATS_BUCKET).await.unwrap();
    let keys: Vec<String> = bucket.keys().await.unwrap().try_collect().await.unwrap();
    let mut per_hour: BTreeMap<u64, usize> = BTreeMap::new();
    for key in &keys {
        let (hour, _) = subject::parse_stats_key(key).unwrap_or_else(|| panic!("key {key}"));
        *per_hour.entry(hour).or_default() += 1;
    }
    assert_eq!(keys.len() as u64, records_after);
    assert!(per_hour.values().all(|&n| n <= 2), "{keys:?}");

    // Every visit counted, exactly: 220 rooms closed with a peak of 2, 440 leaves.
    for router in 0..2 {
        wait_for_totals(
            &cluster,
            router,
            &counts(&[("2", 220)]),
            &counts(&[("0", 440)]),
        )
        .await;
    }

    // An open room has exactly its own entry.
    let (mut a, mut b) = (
        Client::connect_url(&cluster.edge_url(0)).await,
        Client::connect_url(&cluster.edge_url(1)).await,
    );
    a.join("still-open", json!({})).await;
    b.join("still-open", json!({})).await;
    b.sync().await;
    stored(&cluster).await;
    let peaks = js.get_key_value(subject::PEAKS_BUCKET).await.unwrap();
    let keys: Vec<String> = peaks.keys().await.unwrap().try_collect().await.unwrap();
    let open = RoomKeyer::new(SECRET.as_bytes())
        .key(&RoomId::parse(Some(&json!("still-open"))).unwrap())
        .to_string();
    assert_eq!(keys, [open]);
    assert_eq!(messages(&js, &peaks_stream).await, 1);

    // The bucket's max age is the retention; a router started with another retention updates it.
    let max_age = || async {
        let stream = js.get_stream(&stats_stream).await.unwrap();
        stream.cached_info().config.max_age
    };
    assert_eq!(max_age().await, Duration::from_secs(3600 * 168));
    let mut cluster = cluster;
    cluster
        .add_router_with(&["--stats-retention-hours", "24"])
        .await;
    wait_until(PATIENCE, || async {
        max_age().await == Duration::from_secs(3600 * 24)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "retention not applied to the bucket: {e}\n{}",
            cluster.logs()
        )
    });
}

/// The hourly statistics served at `/stats` are exactly the same before and after the router that
/// counted them is killed (SIGKILL, after its flush), on the surviving router and on a router started
/// afterwards; a router restarted under the same id adds its new counts to its predecessor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_statistics_are_exact_after_their_router_is_killed() {
    let mut cluster = Cluster::start(2, 2).await;
    let rooms = rooms_of(&cluster, 0, "exact", 5).await;
    for room in &rooms[..3] {
        visit(&cluster, room, 2).await;
    }
    for room in &rooms[3..] {
        visit(&cluster, room, 3).await;
    }
    stored(&cluster).await;
    let peaks = counts(&[("2", 3), ("3", 2)]);
    let minutes = counts(&[("0", 12)]);
    let before = wait_for_totals(&cluster, 1, &peaks, &minutes).await;
    assert_eq!(stats(&cluster, 0).await["hourly"], before);
    let killed_id = stats(&cluster, 0).await["router"]
        .as_str()
        .unwrap()
        .to_string();

    cluster.routers[0].as_mut().unwrap().kill9().unwrap();
    cluster.routers[0] = None;
    cluster.settled().await;
    assert_eq!(stats(&cluster, 1).await["hourly"], before);

    let restarted = cluster.add_router_with(&["--router-id", &killed_id]).await;
    cluster.settled().await;
    let seen = wait_for_totals(&cluster, restarted, &peaks, &minutes).await;
    assert_eq!(seen, before);

    // The restarted router counts under a name of its own: nothing of its predecessor is replaced.
    let room = rooms_of(&cluster, restarted, "exact-after", 1).await;
    visit(&cluster, &room[0], 2).await;
    stored(&cluster).await;
    let peaks = counts(&[("2", 4), ("3", 2)]);
    let minutes = counts(&[("0", 14)]);
    for router in [1, restarted] {
        wait_for_totals(&cluster, router, &peaks, &minutes).await;
    }
}
