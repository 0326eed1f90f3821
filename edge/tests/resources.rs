//! Resource bounds of the real binary, measured from outside: the memory clients that do not read can
//! pin, and descriptors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{Client, PATIENCE, parse_metric};
use serde_json::json;
use switchboard_testkit::{Process, http_get};
use tokio::net::TcpSocket;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-edge");

/// A field of /proc/<pid>/status in bytes (the kernel reports kB).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

async fn metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, body) = http_get(admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    parse_metric(&body, name, labels)
}

/// A client whose socket receive buffer is tiny and who never reads: what the server sends it stays
/// in the server (the kernel would otherwise absorb megabytes on loopback).
async fn sleeper(addr: SocketAddr) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .unwrap();
    Client { ws }
}

/// Clients that never read, each sent far more than its queue may hold in messages of 200 KB: the
/// edge's peak resident memory grows by what the byte bound allows (plus the messages in flight),
/// not by what the message bound would (250 of them, 50 MB, per client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_pin_no_more_than_the_byte_bound() {
    const PAIRS: u64 = 4;
    const MESSAGES: u64 = 250; // under --outbound-queue (256): only the byte bound can stop them
    const SIZE: u64 = 200_000;
    const QUEUE_BYTES: u64 = 256 * 1024; // the least allowed: --max-frame-bytes
    const FRAME: u64 = 256 * 1024;
    let edge = Process::spawn(
        BIN,
        [
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--outbound-queue-bytes",
            &QUEUE_BYTES.to_string(),
            "--max-frame-bytes",
            &FRAME.to_string(),
            "--rate-limit",
            "100000",
            "--rate-burst",
            "100000",
            "--slow-client-timeout",
            "1s",
        ],
    )
    .await
    .unwrap();
    let (addr, admin) = (
        edge.addr("listen").unwrap(),
        edge.addr("admin_listen").unwrap(),
    );
    let url = format!("ws://{addr}/");

    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        let room = format!("pinned-{i}");
        let mut sender = Client::connect_url(&url).await;
        sender.join(&room, json!({})).await;
        let mut sleeper = sleeper(addr).await;
        let (sleeper_id, _) = sleeper.join(&room, json!({})).await;
        sender.expect("new_peer").await;
        pairs.push((sender, sleeper, sleeper_id));
    }
    let before = proc_status_bytes(edge.pid(), "VmHWM");

    let blob = "x".repeat(SIZE as usize);
    let mut tasks = Vec::new();
    let mut sleepers = Vec::new();
    for (mut sender, sleeper, sleeper_id) in pairs {
        sleepers.push(sleeper);
        let message = json!({"event": "send_to_peer", "peer_id": sleeper_id,
                             "data": {"event": "message", "blob": blob}})
        .to_string();
        tasks.push(tokio::spawn(async move {
            for _ in 0..MESSAGES {
                sender
                    .send_raw(tokio_tungstenite::tungstenite::Message::text(
                        message.clone(),
                    ))
                    .await;
            }
            // The pong comes once the edge has handled every message before it.
            sender.send(json!({"event": "ping"})).await;
            loop {
                let reply = sender.recv().await;
                if reply["event"] == "pong" {
                    break;
                }
            }
            sender
        }));
    }
    let mut senders = Vec::new();
    for task in tasks {
        senders.push(
            tokio::time::timeout(PATIENCE * 3, task)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let growth = proc_status_bytes(edge.pid(), "VmHWM").saturating_sub(before);

    // Each sleeper's queue holds at most the byte bound plus one message; each sender has at most a
    // few messages in flight (the frame read, its parsed form, its encoding); the rest is allocator
    // slack, independent of how much was sent.
    let allowed = PAIRS * (QUEUE_BYTES + SIZE) + PAIRS * 4 * FRAME + 16 * 1024 * 1024;
    let unbounded = PAIRS * MESSAGES * SIZE;
    eprintln!(
        "peak RSS grew by {} KiB; allowed {} KiB; 256 messages per queue would allow {} KiB",
        growth / 1024,
        allowed / 1024,
        unbounded / 1024
    );
    assert!(
        growth <= allowed,
        "peak RSS grew by {growth} bytes, more than the {allowed} the byte bound allows\n{}",
        edge.log()
    );
    assert!(
        metric(
            admin,
            "switchboard_outbound_queue_full_total",
            &[("bound", "bytes")]
        )
        .await
            >= 1.0
    );
    drop((senders, sleepers));
}

/// Under a descriptor limit too low for --max-connections, the edge serves what fits: excess
/// upgrades get HTTP 503 (not a failed accept), and the admin port answers throughout, even while
/// idle connections crowd the public port. The limit is set from outside with prlimit(1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_descriptor_limit_lowers_the_connection_limit_and_admin_keeps_answering() {
    const FD_LIMIT: usize = 128;
    const RESERVE: usize = 32;
    const CLIENTS: usize = FD_LIMIT - RESERVE;
    let nofile = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
    let reserve = RESERVE.to_string();
    let edge = Process::spawn(
        "prlimit",
        [
            nofile.as_str(),
            BIN,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--fd-reserve",
            &reserve,
        ],
    )
    .await
    .unwrap();
    let (addr, admin) = (
        edge.addr("listen").unwrap(),
        edge.addr("admin_listen").unwrap(),
    );
    let url = format!("ws://{addr}/");
    let admin_answers = || async {
        assert_eq!(http_get(admin, "/healthz").await.unwrap().0, 200);
        assert_eq!(http_get(admin, "/metrics").await.unwrap().0, 200);
    };
    assert!(
        edge.log()
            .contains("the descriptor limit cannot cover --max-connections"),
        "{}",
        edge.log()
    );
    assert_eq!(
        metric(admin, "switchboard_connections_limit", &[]).await,
        CLIENTS as f64
    );

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = Client::connect_url(&url).await;
        if i % 16 == 0 {
            client.sync().await;
            admin_answers().await;
        }
        clients.push(client);
    }
    for _ in 0..5 {
        let refused = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(&url))
            .await
            .expect("an answer, not a hang");
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503)
            }
            other => panic!("expected HTTP 503, got {other:?}"),
        }
        admin_answers().await;
    }

    // Idle TCP connections to the public port, more than the descriptors left: the edge takes a few
    // (it must read their requests) and leaves the rest waiting in the backlog.
    let mut idle = Vec::new();
    for _ in 0..2 * RESERVE {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    admin_answers().await;
    drop(idle);
    // Everyone connected is still served.
    for client in clients.iter_mut().step_by(8) {
        client.sync().await;
    }
    assert!(
        metric(
            admin,
            "switchboard_connections_refused_total",
            &[("reason", "capacity")]
        )
        .await
            >= 5.0
    );
    assert_eq!(
        metric(admin, "switchboard_accept_errors_total", &[]).await,
        0.0,
        "the edge never ran out of descriptors"
    );
}

/// A descriptor limit that leaves nothing for clients after the reserve cannot work: exit 64.
#[test]
fn a_descriptor_limit_below_the_reserve_is_refused_at_start() {
    let output = std::process::Command::new("prlimit")
        .args([
            "--nofile=64:64",
            BIN,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--fd-reserve"));
}
