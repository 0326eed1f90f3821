//! Short `call` runs against a standalone edge started in-process and against a small cluster of
//! real processes (nats-server, one router, two edges). They assert what a user relies on: no
//! errors, every message received, a complete JSON report. Never timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use switchboard_edge::{Config, Listeners, Shutdown, run};
use switchboard_testkit::{NatsCluster, Process, binary_path, http_get, wait_until};

const SECRET: &str = "loadtest-smoke-secret";

fn json_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "switchboard-loadtest-{name}-{}.json",
        std::process::id()
    ))
}

/// Reads the JSON report of [`call_args`]' run against `urls` and checks that it is complete and
/// clean, and says how the run was made.
fn check_report(path: &Path, urls: &[String]) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let _ = std::fs::remove_file(path);
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["scenario"], "call", "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    assert_eq!(report["received"].as_u64(), Some(sent), "{report}");
    // `sent`, `received` and the throughput count the same messages: the measured phase's, each
    // with a relay latency. Negotiation is counted apart: per room of 2, an offer, an answer and
    // 3 candidates each way.
    assert_eq!(report["relay"]["count"].as_u64(), Some(sent), "{report}");
    let per_second = sent as f64 / report["duration_s"].as_f64().unwrap();
    assert_eq!(
        report["throughput_msgs_per_s"].as_f64(),
        Some(per_second),
        "{report}"
    );
    assert_eq!(report["negotiation_sent"], 2 * 8, "{report}");
    assert_eq!(report["negotiation_received"], 2 * 8, "{report}");
    // The run's settings, version and start time.
    let settings = &report["settings"];
    assert_eq!(settings["urls"], serde_json::json!(urls), "{report}");
    assert_eq!(
        (&settings["rate"], &settings["rooms"], &settings["peers"]),
        (
            &serde_json::json!(50.0),
            &serde_json::json!(2),
            &serde_json::json!(2)
        ),
        "{report}"
    );
    assert_eq!(settings["duration"], "1s", "{report}");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"), "{report}");
    let started = report["started_at"].as_str().unwrap();
    assert!(started.ends_with('Z'), "UTC: {started}");
    let started = humantime::parse_rfc3339(started).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(started)
        .unwrap();
    assert!(
        age < Duration::from_secs(600),
        "started {age:?} ago: {report}"
    );
    // 2 rooms of 2 peers: each of the 4 peers joins once.
    assert_eq!(report["join"]["count"], 4, "{report}");
    assert!(report["relay"]["count"].as_u64().unwrap() > 0, "{report}");
    for name in ["join", "relay"] {
        for field in ["p50_us", "p99_us", "p999_us", "max_us", "count"] {
            assert!(report[name][field].is_u64(), "{name}.{field}: {report}");
        }
    }
    report
}

fn call_args(urls: &[String], json: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "switchboard-loadtest",
        "call",
        "--rooms",
        "2",
        "--peers",
        "2",
        "--ice",
        "3",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--no-progress",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(json.display().to_string());
    for url in urls {
        args.push("--url".into());
        args.push(url.clone());
    }
    args
}

/// A standalone edge running in this process on loopback port 0; stopped on drop.
struct Edge {
    listen: SocketAddr,
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Edge {
    fn start() -> Edge {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        config.validate().unwrap();
        let listeners = Listeners::bind(&config).unwrap();
        let addresses = listeners.addresses().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
                Shutdown {
                    grace: Duration::ZERO,
                }
            };
            run(config, listeners, shutdown).await.unwrap();
        });
        Edge {
            listen: addresses.listen,
            admin: addresses.admin_listen,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.listen)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the loadtest in-process with `args` (after the program name) plus `--json`; returns the JSON
/// report after checking that the run passed.
async fn execute(name: &str, args: &[&str]) -> Value {
    let json = json_path(name);
    let mut all = vec!["switchboard-loadtest"];
    all.extend_from_slice(args);
    let json_text = json.display().to_string();
    all.extend(["--no-progress", "--json", &json_text]);
    let cli = switchboard_loadtest::Cli::parse_from(all);
    let (report, failure) = switchboard_loadtest::execute(&cli).await.unwrap();
    assert_eq!(failure, None, "{}", report.table());
    let text = std::fs::read_to_string(&json).unwrap();
    let _ = std::fs::remove_file(&json);
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["errors"], serde_json::json!({}), "{value}");
    assert_eq!(value["lost"], 0, "{value}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_against_a_standalone_edge() {
    let edge = Edge::start();
    let json = json_path("standalone");
    let cli = switchboard_loadtest::Cli::parse_from(call_args(&[edge.url()], &json));
    let (report, failure) = switchboard_loadtest::execute(&cli).await.unwrap();
    assert_eq!(failure, None, "{}", report.table());
    check_report(&json, &[edge.url()]);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_reaches_every_member() {
    let edge = Edge::start();
    let url = edge.url();
    let report = execute(
        "fanout",
        &[
            "fanout",
            "--url",
            &url,
            "--members",
            "5",
            "--senders",
            "2",
            "--rate",
            "20",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_eq!(report["scenario"], "fanout");
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    assert_eq!(report["received"].as_u64(), Some(sent * 5), "{report}");
    assert_eq!(
        report["fanout"]["count"].as_u64(),
        Some(sent * 5),
        "{report}"
    );
    assert_eq!(
        report["fanout_last"]["count"].as_u64(),
        Some(sent),
        "{report}"
    );
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_memory_per_connection() {
    let edge = Edge::start();
    let url = edge.url();
    let metrics = format!("http://{}/metrics", edge.admin);
    let pid = std::process::id().to_string();
    let report = execute(
        "idle",
        &[
            "idle",
            "--url",
            &url,
            "--connections",
            "20",
            "--peers",
            "4",
            "--duration",
            "200ms",
            "--pid",
            &pid,
            "--metrics",
            &metrics,
        ],
    )
    .await;
    assert_eq!(report["scenario"], "idle");
    assert_eq!(report["connected"], 20, "{report}");
    assert_eq!(report["join"]["count"], 20, "{report}");
    assert!(report["rss_before_bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["bytes_per_connection"].is_u64(), "{report}");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_joins_and_leaves() {
    let edge = Edge::start();
    let url = edge.url();
    let report = execute(
        "churn",
        &[
            "churn",
            "--url",
            &url,
            "--rate",
            "20",
            "--duration",
            "1s",
            "--rooms",
            "2",
            "--stay-min",
            "20ms",
            "--stay-max",
            "200ms",
        ],
    )
    .await;
    assert_eq!(report["scenario"], "churn");
    let visits = report["sent"].as_u64().unwrap();
    assert_eq!(visits, 20, "{report}");
    assert_eq!(report["join"]["count"].as_u64(), Some(visits), "{report}");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_across_a_cluster() {
    let nats = NatsCluster::start(1).await.unwrap();
    let router = Process::spawn(
        binary_path("switchboard-router").unwrap(),
        ["--nats", &nats.url_list(), "--admin-listen", "127.0.0.1:0"],
    )
    .await
    .unwrap();
    let mut edges = Vec::new();
    for _ in 0..2 {
        let edge = Process::spawn(
            binary_path("switchboard-edge").unwrap(),
            [
                "--nats",
                &nats.url_list(),
                "--room-key-secret",
                SECRET,
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ],
        )
        .await
        .unwrap();
        edges.push(edge);
    }
    let router_admin = router.addr("admin_listen").unwrap();
    let slots = switchboard_proto::bus::DEFAULT_SLOTS as usize;
    wait_until(Duration::from_secs(20), || async {
        let Ok((200, body)) = http_get(router_admin, "/slots").await else {
            return false;
        };
        let value: Value = serde_json::from_str(&body).unwrap_or_default();
        let served = value["slots"].as_array().map_or(0, Vec::len) == slots;
        let mut ready = true;
        for edge in &edges {
            let admin = edge.addr("admin_listen").unwrap();
            ready &= matches!(http_get(admin, "/readyz").await, Ok((200, _)));
        }
        served && ready
    })
    .await
    .unwrap_or_else(|e| panic!("the cluster did not settle: {e}\n{}", router.log()));

    let urls: Vec<String> = edges
        .iter()
        .map(|e| format!("ws://{}/", e.addr("listen").unwrap()))
        .collect();
    let json = json_path("cluster");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard-loadtest"))
        .args(&call_args(&urls, &json)[1..])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("relay"), "{stdout}");
    check_report(&json, &urls);
}

#[test]
fn refuses_non_loopback_targets() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard-loadtest"))
        .args(["call", "--url", "ws://192.0.2.1:4233/", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only loopback"), "{stderr}");
}

#[test]
fn help_documents_every_scenario() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard-loadtest"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for scenario in ["call", "fanout", "idle", "churn"] {
        assert!(help.contains(scenario), "{help}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard-loadtest"))
        .args(["call", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--url",
        "--source-ips",
        "--json",
        "--max-error-rate",
        "--rate",
        "--peers",
        "--ice",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

/// A port nothing listens on: the run fails at once with a clear error, instead of running its whole
/// duration against nothing.
#[test]
fn fails_fast_when_no_server_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    let nats = format!("nats://127.0.0.1:{port}");
    let long = ["--duration", "10m", "--no-progress"];
    for (args, target) in [
        (vec!["call", "--url", &url, "--rooms", "3"], &url),
        (vec!["churn", "--url", &url, "--rate", "50"], &url),
        (vec!["idle", "--url", &url, "--connections", "4"], &url),
        (vec!["fanout", "--url", &url], &url),
        (vec!["bare", "--url", &url], &url),
        (vec!["nats-rtt", "--nats", &nats], &nats),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-loadtest"))
            .args(&args)
            .args(long)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?} still runs 30 s against a dead port");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot connect to {target}")),
            "{args:?}: {stderr}"
        );
    }
}
