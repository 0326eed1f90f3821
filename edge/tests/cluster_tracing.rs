//! Tracing across a cluster: real processes (a 3-node nats-server cluster, one router, two edges)
//! export their spans over OTLP to a real OTLP receiver in this test (testkit's `OtlpReceiver`, a
//! gRPC `TraceService` and an HTTP `/v1/traces` built on the official opentelemetry-proto
//! definitions; no collector binary installs here). The edges export over gRPC, the router over
//! HTTP/protobuf, so both transports are proven from the binaries.
//!
//! Asserted: one client command is one trace across the processes it touches, with the parentage
//! docs/operations.md describes; attributes never carry a room's name or a status; a client that
//! names its own trace (`traceparent`) gets the connection's spans in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use common::hosted::{B1, TenantsFile, claims, connect, token, try_connect, two_tenants};
use serde_json::json;
use switchboard_testkit::otlp::{OtlpReceiver, ReceivedSpan, check_tree, render_tree};

/// How long spans may take to arrive: the processes export every 100 ms (below), on a loaded CI
/// machine a few seconds.
const ARRIVAL: Duration = Duration::from_secs(30);

/// A cluster whose processes export to `receiver`: edge `i` as service `edge-<i>`, the router as
/// `router` (logging warnings only), every span sampled.
async fn traced_cluster(receiver: &OtlpReceiver) -> Cluster {
    traced_cluster_with(receiver, &[]).await
}

/// [`traced_cluster`] with `edge_args` for both edges.
async fn traced_cluster_with(receiver: &OtlpReceiver, edge_args: &[&str]) -> Cluster {
    let common = |endpoint: String, protocol: &str, name: &str| -> Vec<String> {
        [
            "--otel-exporter-otlp-endpoint",
            &endpoint,
            "--otel-exporter-otlp-protocol",
            protocol,
            "--otel-service-name",
            name,
            "--otel-traces-sampler",
            "parentbased_always_on",
            "--otel-bsp-schedule-delay",
            "100",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut cluster = Cluster::nats_only().await;
    cluster.router_args = common(receiver.endpoint_http(), "http/protobuf", "router");
    // Quiet logs do not quiet the traces: what is exported is not decided by --log.
    cluster
        .router_args
        .extend(["--log".to_string(), "warn".to_string()]);
    cluster.add_router().await;
    for i in 0..2 {
        cluster.edge_args = common(receiver.endpoint_grpc(), "grpc", &format!("edge-{i}"));
        cluster
            .edge_args
            .extend(edge_args.iter().map(|s| s.to_string()));
        cluster.add_edge().await;
    }
    cluster.settled().await;
    cluster
}

/// The one span named `name` of `service` in `spans` that `pick` accepts.
fn one<'a>(
    spans: &'a [ReceivedSpan],
    service: &str,
    name: &str,
    pick: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service_name == service && s.name == name && pick(s))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {service}: {name} wanted, found {}:\n{}",
        found.len(),
        render_tree(spans)
    );
    found[0]
}

/// The spans of `spans` in the trace `trace_id`.
fn trace_of(spans: &[ReceivedSpan], trace_id: &str) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect()
}

/// The trace `root` starts, checked to be one whole tree, and its rendering (printed under `label`).
fn whole_trace(
    spans: &[ReceivedSpan],
    root: &ReceivedSpan,
    label: &str,
) -> (Vec<ReceivedSpan>, String) {
    let trace = trace_of(spans, &root.trace_id);
    check_tree(&trace).unwrap();
    let rendered = render_tree(&trace);
    println!("{label}:\n{rendered}");
    (trace, rendered)
}

/// Waits for the one span named `name` of `edge-0` that connection `conn` caused.
async fn conn_span(receiver: &OtlpReceiver, name: &str, conn: &str) -> ReceivedSpan {
    let of_conn = |s: &ReceivedSpan| s.name == name && s.attribute("sb.conn") == Some(conn);
    let spans = receiver
        .wait_for(ARRIVAL, |spans| spans.iter().any(of_conn))
        .await
        .unwrap();
    one(&spans, "edge-0", name, of_conn).clone()
}

fn is_child(child: &ReceivedSpan, parent: &ReceivedSpan) -> bool {
    child.trace_id == parent.trace_id
        && child.parent_span_id.as_deref() == Some(parent.span_id.as_str())
}

/// No attribute of any span carries the room's name or anything of a status.
fn assert_nothing_private(spans: &[ReceivedSpan], secrets: &[&str]) {
    for span in spans {
        for (key, value) in &span.attributes {
            for secret in secrets {
                assert!(
                    !value.contains(secret),
                    "{}: {} has {key}={value}, which shows {secret:?}",
                    span.service_name,
                    span.name
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_and_a_cross_edge_relay_are_one_trace_each_across_the_processes() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let cluster = traced_cluster(&receiver).await;
    let room = "tracing-room-name-7f3a";
    let mut alice = Client::connect_url(&cluster.edge_url(0)).await;
    let mut bob = Client::connect_url(&cluster.edge_url(1)).await;
    let (alice_id, _) = alice.join(room, json!({"name": "Alice-secret"})).await;

    // Bob's join on edge 1 fans out to both edges: joined_room to him, new_peer to Alice.
    let (bob_id, _) = bob.join(room, json!({"name": "Bob-secret"})).await;
    alice.expect("new_peer").await;
    let is_bobs_join = |s: &ReceivedSpan| s.attribute("sb.conn") == Some(bob_id.as_str());
    // Every span of the trace, from three processes exporting on their own schedules: the whole
    // tree (seven spans, one root) before anything is judged.
    let spans = receiver
        .wait_for(ARRIVAL, |spans| {
            let Some(join) = spans
                .iter()
                .find(|s| s.name == "client.join_room" && is_bobs_join(s))
            else {
                return false;
            };
            let trace = trace_of(spans, &join.trace_id);
            trace.len() >= 7 && check_tree(&trace).is_ok()
        })
        .await
        .unwrap();
    let join = one(&spans, "edge-1", "client.join_room", is_bobs_join);
    let (trace, rendered) = whole_trace(&spans, join, "Bob's join");
    assert_eq!(join.parent_span_id, None, "{rendered}");
    let room_key = join
        .attribute("sb.room")
        .expect("the room's key")
        .to_owned();
    assert_eq!(room_key.len(), 32, "a keyed hash, not the name: {room_key}");

    let command = one(&trace, "edge-1", "bus.command", |s| is_child(s, join));
    let apply = one(&trace, "router", "router.apply", |s| is_child(s, command));
    assert_eq!(apply.attribute("sb.command"), Some("join"), "{rendered}");
    assert_eq!(apply.attribute("sb.room"), Some(room_key.as_str()));
    assert_eq!(apply.attribute("sb.events"), Some("2"), "{rendered}");
    assert!(apply.attribute("sb.slot").is_some(), "{rendered}");
    // One fan-out per edge, each continued by that edge.
    for (edge, event) in [("edge-1", "joined_room"), ("edge-0", "new_peer")] {
        let fan_out = one(&trace, "router", "router.fan_out", |s| {
            is_child(s, apply) && s.attribute("sb.event") == Some(event)
        });
        let deliver = one(&trace, edge, "edge.deliver", |s| is_child(s, fan_out));
        assert_eq!(deliver.attribute("sb.event"), Some(event), "{rendered}");
        assert_eq!(deliver.attribute("sb.recipients"), Some("1"), "{rendered}");
        assert_eq!(deliver.attribute("sb.room"), Some(room_key.as_str()));
    }
    assert_eq!(trace.len(), 7, "{rendered}");

    // Alice's offer to Bob crosses from edge 0 to edge 1 over NATS (no router on the way).
    alice
        .send(json!({"event": "send_to_peer", "peer_id": bob_id,
                     "data": {"event": "offer", "sdp": "sdp-secret"}}))
        .await;
    assert_eq!(bob.recv().await["sdp"], "sdp-secret");
    let is_alices_offer = |s: &ReceivedSpan| {
        s.name == "client.send_to_peer" && s.attribute("sb.conn") == Some(alice_id.as_str())
    };
    let spans = receiver
        .wait_for(ARRIVAL, |spans| {
            spans.iter().filter(|s| is_alices_offer(s)).any(|send| {
                spans
                    .iter()
                    .any(|s| s.name == "edge.relay" && is_child(s, send))
            })
        })
        .await
        .unwrap();
    let send = one(&spans, "edge-0", "client.send_to_peer", is_alices_offer);
    let (trace, rendered) = whole_trace(&spans, send, "Alice's offer");
    assert_eq!(send.parent_span_id, None);
    assert_eq!(send.attribute("sb.event"), Some("offer"));
    assert_eq!(send.attribute("sb.route"), Some("remote"));
    assert_eq!(send.attribute("sb.peer"), Some(bob_id.as_str()));
    let relay = one(&trace, "edge-1", "edge.relay", |s| is_child(s, send));
    assert_eq!(relay.attribute("sb.conn"), Some(bob_id.as_str()));
    assert_eq!(relay.attribute("sb.event"), Some("offer"));
    assert_eq!(trace.len(), 2, "{rendered}");

    assert_nothing_private(
        &receiver.spans(),
        &[room, "Alice-secret", "Bob-secret", "sdp-secret"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_names_its_trace_gets_its_connection_in_it() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let cluster = traced_cluster(&receiver).await;
    // Browsers cannot set headers on a WebSocket: the query parameter is their way.
    let (trace_id, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let url = format!(
        "{}?traceparent=00-{trace_id}-{client_span}-01",
        cluster.edge_url(0)
    );
    let mut carol = Client::connect_url(&url).await;
    let (carol_id, _) = carol.join("named-trace", json!({})).await;
    let is_carols = |s: &ReceivedSpan| s.attribute("sb.conn") == Some(carol_id.as_str());
    let spans = receiver
        .wait_for(ARRIVAL, |spans| {
            [
                "ws.upgrade",
                "client.join_room",
                "bus.command",
                "router.apply",
            ]
            .iter()
            .all(|name| {
                spans
                    .iter()
                    .any(|s| s.name == *name && s.trace_id == trace_id)
            })
        })
        .await
        .unwrap();
    let upgrade = one(&spans, "edge-0", "ws.upgrade", |s| s.trace_id == trace_id);
    assert_eq!(upgrade.parent_span_id.as_deref(), Some(client_span));
    assert_eq!(upgrade.attribute("http.response.status_code"), Some("101"));
    let join = one(&spans, "edge-0", "client.join_room", is_carols);
    assert_eq!(join.trace_id, trace_id, "{}", render_tree(&spans));
    assert!(is_child(join, upgrade), "{}", render_tree(&spans));
    let command = one(&spans, "edge-0", "bus.command", |s| is_child(s, join));
    one(&spans, "router", "router.apply", |s| is_child(s, command));

    // A client that names no trace starts none of its own: its commands are roots.
    let mut dave = Client::connect_url(&cluster.edge_url(0)).await;
    let (dave_id, _) = dave.join("unnamed-trace", json!({})).await;
    let join = conn_span(&receiver, "client.join_room", &dave_id).await;
    assert_eq!(join.parent_span_id, None);
    assert_ne!(join.trace_id, trace_id);

    // A refused command says why on its span.
    dave.send(json!({"event": "leave_room"})).await;
    dave.send(json!({"event": "update_status", "status": {"name": "D"}}))
        .await;
    dave.expect_error("currently not in any room").await;
    let refused = conn_span(&receiver, "client.update_status", &dave_id).await;
    assert_eq!(refused.attribute("sb.error"), Some("not_in_room"));

    // So does a refused peer message (its span is made on the relay path's own way).
    dave.join("unnamed-trace", json!({})).await;
    dave.send(
        json!({"event": "send_to_peer", "peer_id": "00000000-0000-4000-8000-000000000000",
                     "data": {"event": "offer", "sdp": "x"}}),
    )
    .await;
    dave.expect_error("unknown peer").await;
    let refused = conn_span(&receiver, "client.send_to_peer", &dave_id).await;
    assert_eq!(refused.attribute("sb.error"), Some("unknown_peer"));
    assert_eq!(refused.parent_span_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_spans_name_the_tenant_and_refused_upgrades_their_status() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let file = TenantsFile::new(&two_tenants(""));
    let path = file.path.display().to_string();
    let cluster =
        traced_cluster_with(&receiver, &["--auth", "tokens", "--tenants-file", &path]).await;
    let url = cluster.edge_url(0);
    let erin_token = token(B1, &claims("erin"));
    let mut erin = connect(&url, &erin_token, None).await;
    let (erin_id, _) = erin.join("tenant-room-name-91c2", json!({})).await;
    let refused = try_connect(&url, "not-a-token", None).await.err();
    assert_eq!(refused, Some(401));

    let is_erins = |s: &ReceivedSpan| s.attribute("sb.conn") == Some(erin_id.as_str());
    let spans = receiver
        .wait_for(ARRIVAL, |spans| {
            spans
                .iter()
                .any(|s| s.name == "client.join_room" && is_erins(s))
                && spans.iter().any(|s| {
                    s.name == "ws.upgrade"
                        && s.attribute("http.response.status_code") == Some("401")
                })
        })
        .await
        .unwrap();
    let join = one(&spans, "edge-0", "client.join_room", is_erins);
    assert_eq!(join.attribute("sb.tenant"), Some("b"));
    one(&spans, "edge-0", "ws.upgrade", |s| {
        s.attribute("sb.tenant") == Some("b")
            && s.attribute("http.response.status_code") == Some("101")
    });
    let refused = one(&spans, "edge-0", "ws.upgrade", |s| {
        s.attribute("http.response.status_code") == Some("401")
    });
    assert_eq!(refused.attribute("sb.tenant"), None);
    assert_nothing_private(
        &receiver.spans(),
        &["tenant-room-name-91c2", "not-a-token", &erin_token],
    );
}
