//! The public port's plain HTTP: the demo page, its files and the JS client, as a browser fetches
//! them, and WebSocket upgrades that stay client connections on every one of those paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, HttpResponse, TestEdge, http_request};
use serde_json::json;
use switchboard_proto::ProtocolError;

async fn get(edge: &TestEdge, path: &str) -> HttpResponse {
    http_request(edge.addr, "GET", path, &[]).await
}

/// The page, its script, style and icon, the JS client and the configuration, each with the type a
/// browser needs to use it, revalidated on every load, and locked down by the page's policy.
#[tokio::test]
async fn the_demo_and_the_client_are_served_with_their_types() {
    let edge = TestEdge::start().await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<title>"),
        ("/r/hello", "text/html; charset=utf-8", "/app.js"),
        ("/r/caf%C3%A9%20bar", "text/html; charset=utf-8", "/app.js"),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "SwitchboardClient",
        ),
        (
            "/call.js",
            "text/javascript; charset=utf-8",
            "RTCPeerConnection",
        ),
        ("/style.css", "text/css; charset=utf-8", ".tile"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
        (
            "/sdk/switchboard.js",
            "text/javascript; charset=utf-8",
            "export class SwitchboardClient",
        ),
        ("/config.json", "application/json", "ice_servers"),
    ] {
        let response = get(&edge, path).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert!(response.body.contains(needle), "{path} lacks {needle:?}");
        assert_eq!(response.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        let csp = response.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        assert!(response.header("etag").is_some(), "{path}");
    }
    // Pages elsewhere may import the client; the demo's own files stay same-origin.
    let sdk = get(&edge, "/sdk/switchboard.js").await;
    assert_eq!(sdk.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        get(&edge, "/app.js")
            .await
            .header("access-control-allow-origin"),
        None
    );
}

/// Everything the page loads is served by the edge itself: no CDN, no web font, nothing that
/// breaks offline or leaks visitors to a third party.
#[tokio::test]
async fn the_page_loads_only_files_the_edge_serves() {
    let edge = TestEdge::start().await;
    let page = get(&edge, "/").await.body;
    let mut references = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (i, _) in page.match_indices(attribute) {
            let rest = &page[i + attribute.len()..];
            references.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    for js in ["/app.js", "/call.js"] {
        let script = get(&edge, js).await.body;
        for line in script.lines().filter(|l| l.starts_with("import ")) {
            let from = line.rsplit_once(" from '").unwrap().1;
            references.push(from.trim_end_matches("';").to_string());
        }
    }
    assert!(references.len() >= 5, "{references:?}");
    for reference in references {
        assert!(
            reference.starts_with('/') && !reference.starts_with("//"),
            "{reference} is not a path on this server"
        );
        assert_eq!(get(&edge, &reference).await.status, 200, "{reference}");
    }
}

/// Every error text the server can send has a code in the JS client, the same name the server's
/// `errors_total{reason}` metric uses.
#[tokio::test]
async fn the_js_client_has_a_code_for_every_server_error() {
    let edge = TestEdge::start().await;
    let sdk = get(&edge, "/sdk/switchboard.js").await.body;
    for error in ProtocolError::ALL {
        let entry = format!("'{error}': '{}'", error.reason());
        assert!(sdk.contains(&entry), "the JS client lacks {entry}");
    }
}

/// HEAD tells size and type without the body; a cached copy is confirmed with 304; only GET and
/// HEAD are allowed; unknown paths are 404.
#[tokio::test]
async fn head_revalidation_methods_and_unknown_paths() {
    let edge = TestEdge::start().await;
    let full = get(&edge, "/app.js").await;
    let head = http_request(edge.addr, "HEAD", "/app.js", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(head.header("content-type"), full.header("content-type"));
    assert_eq!(
        head.header("content-length").unwrap(),
        full.body.len().to_string()
    );

    let etag = full.header("etag").unwrap();
    let cached = http_request(edge.addr, "GET", "/app.js", &[("If-None-Match", etag)]).await;
    assert_eq!(cached.status, 304);
    assert_eq!(cached.body, "");
    let stale = http_request(edge.addr, "GET", "/app.js", &[("If-None-Match", "\"old\"")]).await;
    assert_eq!(stale.status, 200);

    for method in ["POST", "PUT", "DELETE"] {
        let response = http_request(edge.addr, method, "/", &[]).await;
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
    for path in [
        "/nope",
        "/r/",
        "/r/a/b",
        "/sdk/",
        "/sdk/other.js",
        "/index.html",
        "/app.js/x",
    ] {
        let response = get(&edge, path).await;
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.body, "not found\n");
    }
}

/// `--ice-server` entries reach the page as RTCIceServer dictionaries.
#[tokio::test]
async fn ice_servers_reach_the_page() {
    let edge = TestEdge::start_with(|c| {
        c.ice_servers = vec![
            "stun:stun.example.org:3478".parse().unwrap(),
            "turn:turn.example.org:3478?transport=udp username=alice credential=s3cret"
                .parse()
                .unwrap(),
        ];
    })
    .await;
    let config: serde_json::Value =
        serde_json::from_str(&get(&edge, "/config.json").await.body).unwrap();
    assert_eq!(
        config,
        json!({"ice_servers": [
            {"urls": ["stun:stun.example.org:3478"]},
            {"urls": ["turn:turn.example.org:3478?transport=udp"], "username": "alice", "credential": "s3cret"},
        ]})
    );
}

/// A WebSocket upgrade is a palava client connection on the demo's paths too: a room link pasted
/// into a WebSocket client still works.
#[tokio::test]
async fn websocket_upgrades_on_page_paths_are_client_connections() {
    let edge = TestEdge::start().await;
    let mut members = Vec::new();
    for path in ["/r/x", "/sdk/switchboard.js", "/app.js", "/nope"] {
        let mut client = Client::connect_url(&format!("ws://{}{path}", edge.addr)).await;
        let (id, joined) = client.join("upgrade-paths", json!({})).await;
        assert_eq!(
            joined["peers"].as_array().unwrap().len(),
            members.len(),
            "{path}"
        );
        members.push((id, client));
    }
    let (last_id, _) = members.last().unwrap();
    let last_id = last_id.clone();
    let first = &mut members[0].1;
    for _ in 0..3 {
        first.expect("new_peer").await;
    }
    first
        .send(json!({"event": "send_to_peer", "peer_id": last_id, "data": {"event": "message", "data": "hi"}}))
        .await;
    let last = &mut members.last_mut().unwrap().1;
    assert_eq!(last.expect("message").await["data"], "hi");
}

/// With the demo off (a cluster's default), `/` is the bare signaling endpoint it always was and the
/// demo's files do not exist; the JS client is still there for pages hosted elsewhere.
#[tokio::test]
async fn demo_off_keeps_the_bare_endpoint() {
    let edge = TestEdge::start_with(|c| c.demo = Some(false)).await;
    let root = get(&edge, "/").await;
    assert_eq!(root.status, 426);
    assert!(
        root.body.contains("connect with a WebSocket"),
        "{}",
        root.body
    );
    for path in ["/r/hello", "/app.js", "/style.css", "/config.json"] {
        assert_eq!(get(&edge, path).await.status, 404, "{path}");
    }
    assert_eq!(get(&edge, "/sdk/switchboard.js").await.status, 200);
    let mut client = Client::connect(&edge).await;
    client.join("demo-off", json!({})).await;
}
