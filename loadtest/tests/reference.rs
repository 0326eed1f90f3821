//! The reference points: `bare-server` (a real process) with the `bare` scenario, and `nats-rtt`
//! against a real nats-server. Short runs that assert no loss and no errors, never timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard_testkit::{NatsCluster, Process};
use tokio_tungstenite::tungstenite::Message;

/// Runs the loadtest in-process with `args` (after the program name); returns the JSON report
/// after checking that the run passed cleanly.
async fn execute(name: &str, args: &[&str]) -> Value {
    let json = std::env::temp_dir().join(format!(
        "switchboard-loadtest-{name}-{}.json",
        std::process::id()
    ));
    let json_text = json.display().to_string();
    let mut all = vec!["switchboard-loadtest"];
    all.extend_from_slice(args);
    all.extend(["--no-progress", "--json", &json_text]);
    let cli = switchboard_loadtest::Cli::parse_from(all);
    let (report, failure) = switchboard_loadtest::execute(&cli).await.unwrap();
    assert_eq!(failure, None, "{}", report.table());
    let text = std::fs::read_to_string(&json).unwrap();
    let _ = std::fs::remove_file(&json);
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["errors"], serde_json::json!({}), "{value}");
    assert_eq!(value["lost"], 0, "{value}");
    let sent = value["sent"].as_u64().unwrap();
    assert!(sent > 0, "{value}");
    assert_eq!(value["received"].as_u64(), Some(sent), "{value}");
    assert_eq!(value["relay"]["count"].as_u64(), Some(sent), "{value}");
    for field in ["p50_us", "p99_us", "p999_us", "max_us", "count"] {
        assert!(value["relay"][field].is_u64(), "relay.{field}: {value}");
    }
    assert!(value["throughput_msgs_per_s"].is_number(), "{value}");
    value
}

async fn bare_server() -> Process {
    Process::spawn(
        env!("CARGO_BIN_EXE_switchboard-loadtest"),
        ["bare-server", "--listen", "127.0.0.1:0"],
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_relays_every_message() {
    let server = bare_server().await;
    let url = format!("ws://{}/", server.addr("listen").unwrap());
    for _ in 0..2 {
        // Twice against the same server: a clean run leaves its pairing intact for the next.
        let report = execute(
            "bare",
            &[
                "bare",
                "--url",
                &url,
                "--pairs",
                "4",
                "--rate",
                "200",
                "--duration",
                "1s",
            ],
        )
        .await;
        assert_eq!(report["scenario"], "bare");
        assert_eq!(report["connections"], 8, "{report}");
        assert_eq!(report["sent"], 200, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_server_pairs_in_order_and_forwards_verbatim() {
    let server = bare_server().await;
    let url = format!("ws://{}/", server.addr("listen").unwrap());
    let (mut a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut c, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    a.send(Message::text("not JSON {")).await.unwrap();
    b.send(Message::text("from b")).await.unwrap();
    c.send(Message::text("c has no pair")).await.unwrap();
    let within = Duration::from_secs(5);
    let got = tokio::time::timeout(within, b.next()).await.unwrap();
    assert_eq!(got.unwrap().unwrap(), Message::text("not JSON {"));
    let got = tokio::time::timeout(within, a.next()).await.unwrap();
    assert_eq!(got.unwrap().unwrap(), Message::text("from b"));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c.next())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_server_drops_a_pair_that_does_not_read() {
    let server = Process::spawn(
        env!("CARGO_BIN_EXE_switchboard-loadtest"),
        ["bare-server", "--listen", "127.0.0.1:0", "--queue", "4"],
    )
    .await
    .unwrap();
    let url = format!("ws://{}/", server.addr("listen").unwrap());
    let (mut a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // b does not read: once the socket buffers and its queue are full, the server drops it.
    let frame = "x".repeat(64 * 1024);
    for _ in 0..800 {
        a.send(Message::text(frame.as_str())).await.unwrap();
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(Message::Text(_))) = b.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the slow pair was not dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_rtt_delivers_every_message() {
    let nats = NatsCluster::start(1).await.unwrap();
    let url = nats.url(0);
    let report = execute(
        "nats",
        &[
            "nats-rtt",
            "--nats",
            &url,
            "--pairs",
            "4",
            "--rate",
            "200",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_eq!(report["scenario"], "nats");
    assert_eq!(report["connections"], 8, "{report}");
}

#[test]
fn help_documents_the_references() {
    let help = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard-loadtest"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let top = help(&["--help"]);
    for scenario in ["bare-server", "bare", "nats-rtt"] {
        assert!(top.contains(scenario), "{top}");
    }
    let bare = help(&["bare", "--help"]);
    for flag in [
        "--url",
        "--pairs",
        "--rate",
        "--duration",
        "--source-ips",
        "--json",
    ] {
        assert!(bare.contains(flag), "{flag} missing from\n{bare}");
    }
    let nats = help(&["nats-rtt", "--help"]);
    assert!(nats.contains("--nats") && !nats.contains("--url"), "{nats}");
    let server = help(&["bare-server", "--help"]);
    assert!(
        server.contains("--listen") && server.contains("--ready-file"),
        "{server}"
    );
}

#[test]
fn bare_server_refuses_non_loopback_listen() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard-loadtest"))
        .args(["bare-server", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only loopback"), "{stderr}");
}
