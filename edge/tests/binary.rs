//! The `switchboard-edge` binary as an operator runs it: configuration errors, the ready file, logs,
//! and signals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, Ended, PATIENCE, http_get};
use serde_json::{Value, json};
use switchboard_edge::BoundAddresses;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-edge");

/// A running binary, killed on drop.
struct Process {
    child: Child,
    addresses: BoundAddresses,
    _dir: TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop (no extra crate for one use).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn command() -> Command {
    let mut command = Command::new(BIN);
    // The tests' environment must not configure the binary behind their back.
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
}

/// Starts the binary on port 0 and waits for its ready file.
async fn start(extra: &[&str]) -> Process {
    start_with_env(extra, &[]).await
}

/// [`start`] with these environment variables set.
async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Process {
    let dir = TempDir::new();
    let ready = dir.0.join("ready.json");
    let child = command()
        .envs(env.iter().copied())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ready-file",
        ])
        .arg(&ready)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addresses = wait_for_ready_file(&ready).await;
    Process {
        child,
        addresses,
        _dir: dir,
    }
}

/// The binary writes the file atomically once bound; poll for it (bounded), never sleep blindly.
async fn wait_for_ready_file(path: &Path) -> BoundAddresses {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).expect("ready file is JSON");
        }
        assert!(tokio::time::Instant::now() < deadline, "no ready file");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn invalid_configuration_exits_64_with_a_clear_message() {
    for (args, needle) in [
        (vec!["--listen", "not-an-address"], "--listen"),
        (vec!["--rate-limit", "0"], "--rate-limit"),
        (vec!["--max-json-depth", "125"], "--max-json-depth"),
        (
            vec!["--outbound-queue-bytes", "1024"],
            "--outbound-queue-bytes",
        ),
        (vec!["--fd-reserve", "8"], "--fd-reserve"),
        (
            vec!["--idle-timeout", "1s", "--ping-interval", "5s"],
            "--idle-timeout",
        ),
        (vec!["--shutdown-grace", "soon"], "--shutdown-grace"),
        (vec!["--log", "[[["], "--log"),
        (vec!["--no-such-flag"], "--no-such-flag"),
        (vec!["--demo=maybe"], "--demo"),
        (
            vec!["--room-key-secret", "fifteen-bytes!!"],
            "at least 16 bytes",
        ),
        (vec!["--ice-server", "turn:turn.example.org"], "username="),
        (vec!["--ice-server", "https://example.org"], "--ice-server"),
        (
            vec!["--turn-url", "turn:127.0.0.1:3478"],
            "--turn-url needs --turn-secret-file",
        ),
        (
            vec![
                "--turn-url",
                "turn:127.0.0.1:3478",
                "--turn-secret-file",
                "/nonexistent/turn-secrets",
            ],
            "--turn-secret-file /nonexistent/turn-secrets",
        ),
        (vec!["--turn-ttl", "0s"], "--turn-ttl"),
        (
            vec!["--otel-traces-sampler-arg", "1.5"],
            "--otel-traces-sampler-arg must be a ratio from 0 to 1",
        ),
        (
            vec!["--otel-exporter-otlp-endpoint", "ftp://collector"],
            "--otel-exporter-otlp-endpoint",
        ),
        (vec!["--otel-traces-sampler", "sometimes"], "always_on"),
    ] {
        let output = command().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// A bad value from the environment is validated just the same, and the message names the variable
/// the operator set (and its flag); a bad flag's message names no variable.
#[test]
fn invalid_environment_exits_64_naming_the_variable() {
    for (variable, value, flag) in [
        ("SWITCHBOARD_MAX_CONNECTIONS", "abc", "--max-connections"),
        ("SWITCHBOARD_SHUTDOWN_GRACE", "soon", "--shutdown-grace"),
        ("SWITCHBOARD_DEMO", "maybe", "--demo"),
        ("SWITCHBOARD_LOG_FORMAT", "xml", "--log-format"),
        ("SWITCHBOARD_MAX_FRAME_BYTES", "12", "--max-frame-bytes"),
        ("SWITCHBOARD_ROOM_KEY_SECRET", "short", "--room-key-secret"),
        ("SWITCHBOARD_LOG", "[[[", "--log"),
        ("SWITCHBOARD_TURN_TTL", "30days", "--turn-ttl"),
        ("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1", "--turn-url"),
        // The standard OpenTelemetry variables are named just the same.
        ("OTEL_TRACES_SAMPLER", "sometimes", "--otel-traces-sampler"),
        ("OTEL_TRACES_SAMPLER_ARG", "2", "--otel-traces-sampler-arg"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "localhost:4317",
            "--otel-exporter-otlp-endpoint",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "--otel-exporter-otlp-protocol",
        ),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "--otel-max-queue-size"),
    ] {
        let output = command().env(variable, value).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable) && stderr.contains(flag),
            "{variable}={value}: {stderr}"
        );
    }
    // Given on the command line, the flag is to blame, even with its variable set (to a good value).
    let output = command()
        .env("SWITCHBOARD_MAX_CONNECTIONS", "5")
        .args(["--max-connections", "abc"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-connections") && !stderr.contains("SWITCHBOARD_"),
        "{stderr}"
    );
}

/// Boolean settings take the usual spellings from the environment (`SWITCHBOARD_DEMO=0`), not only
/// `true` and `false`.
#[tokio::test]
async fn booleans_from_the_environment_take_the_usual_spellings() {
    for (value, page) in [("0", 426), ("Off", 426), ("1", 200), ("YES", 200)] {
        let process = start_with_env(&[], &[("SWITCHBOARD_DEMO", value)]).await;
        let (status, _) = http_get(process.addresses.listen, "/").await;
        assert_eq!(status, page, "SWITCHBOARD_DEMO={value}");
    }
}

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let output = command().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "listen",
        "admin-listen",
        "ready-file",
        "log-format",
        "max-frame-bytes",
        "rate-limit",
        "rate-burst",
        "max-room-size",
        "max-connections",
        "outbound-queue",
        "outbound-queue-bytes",
        "max-json-depth",
        "fd-reserve",
        "ping-interval",
        "idle-timeout",
        "shutdown-grace",
        "user-agents",
        "slow-client-timeout",
        "demo",
        "turn-secret-file",
        "turn-ttl",
    ] {
        assert!(help.contains(&format!("--{flag}")), "--{flag} missing");
        let env = format!("SWITCHBOARD_{}", flag.to_uppercase().replace('-', "_"));
        assert!(help.contains(&env), "{env} missing");
    }
    assert!(help.contains("--ice-server") && help.contains("SWITCHBOARD_ICE_SERVERS"));
    assert!(help.contains("--turn-url") && help.contains("SWITCHBOARD_TURN_URLS"));
    for (flag, env) in [
        (
            "--otel-exporter-otlp-endpoint",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            "--otel-exporter-otlp-protocol",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ("--otel-service-name", "OTEL_SERVICE_NAME"),
        ("--otel-traces-sampler ", "OTEL_TRACES_SAMPLER="),
        ("--otel-traces-sampler-arg", "OTEL_TRACES_SAMPLER_ARG"),
        ("--otel-max-queue-size", "OTEL_BSP_MAX_QUEUE_SIZE"),
        ("--otel-exporter-otlp-timeout", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} missing"
        );
    }
}

/// With tracing on and the collector dead, the edge serves, counts what it cannot export, and a
/// SIGTERM still ends it (the last export waits 2 s at most).
#[tokio::test]
async fn a_dead_collector_neither_stops_the_edge_nor_delays_its_exit() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{dead}");
    let mut process = start_with_env(
        &["--shutdown-grace", "0s"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )
    .await;
    let (status, metrics) = http_get(process.addresses.admin_listen, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("switchboard_trace_spans_dropped_total 0"),
        "{metrics}"
    );
    signal(&process.child, "TERM");
    let status = wait_exit(&mut process.child).await;
    assert!(status.success(), "{status:?}: {}", stderr_of(&mut process));
}

/// TURN secrets come from a file and go nowhere else: not to the log, even at debug level, while
/// the edge mints with them.
#[tokio::test]
async fn turn_secrets_stay_out_of_the_log() {
    let dir = TempDir::new();
    let secrets = dir.0.join("turn-secrets");
    std::fs::write(
        &secrets,
        "fresh-turn-secret-1
retired-turn-secret-2
",
    )
    .unwrap();
    let mut process = start(&[
        "--turn-url",
        "turn:127.0.0.1:3478",
        "--turn-secret-file",
        secrets.to_str().unwrap(),
        "--log",
        "debug",
    ])
    .await;
    let mut a = Client::connect_url(&format!("ws://{}/", process.addresses.listen)).await;
    let (_, joined) = a.join("turn", json!({})).await;
    let password = joined["turn_password"].as_str().unwrap().to_owned();
    signal(&process.child, "INT");
    assert!(wait_exit(&mut process.child).await.success());
    let stderr = stderr_of(&mut process);
    assert!(
        stderr.contains("minting TURN credentials"),
        "no TURN start-up line:\n{stderr}"
    );
    for secret in ["fresh-turn-secret-1", "retired-turn-secret-2", &password] {
        assert!(!stderr.contains(secret), "{secret} in the log:\n{stderr}");
    }
}

#[tokio::test]
async fn serves_with_no_other_process_and_drains_on_sigterm() {
    let mut process = start(&["--shutdown-grace", "1s"]).await;
    let BoundAddresses {
        listen,
        admin_listen,
        ..
    } = process.addresses;
    assert_eq!(http_get(admin_listen, "/healthz").await.0, 200);
    assert_eq!(http_get(admin_listen, "/readyz").await.0, 200);

    let mut a = Client::connect_url(&format!("ws://{listen}/")).await;
    let mut b = Client::connect_url(&format!("ws://{listen}/")).await;
    let (a_id, _) = a.join("bin", json!({})).await;
    let (b_id, _) = b.join("bin", json!({})).await;
    a.expect("new_peer").await;
    a.send(json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "answer"}}))
        .await;
    assert_eq!(
        b.recv().await,
        json!({"event": "answer", "sender_id": a_id})
    );

    signal(&process.child, "TERM");
    assert_eq!(a.recv().await, json!({"event": "shutdown", "seconds": 1}));
    assert_eq!(b.recv().await, json!({"event": "shutdown", "seconds": 1}));
    assert_eq!(
        a.ended().await,
        Ended::Close(Some(4200), "server shutting down".into())
    );
    let status = wait_exit(&mut process.child).await;
    assert!(status.success(), "{status:?}");
}

/// A second SIGTERM during a long drain ends the process at once, as users expect of a second
/// Ctrl-C or `kill` (the first alone would wait out the 60 s grace for the connected client).
#[tokio::test]
async fn a_second_signal_ends_a_long_drain_at_once() {
    let mut process = start(&["--shutdown-grace", "60s"]).await;
    let listen = process.addresses.listen;
    let mut a = Client::connect_url(&format!("ws://{listen}/")).await;
    a.join("drain", json!({})).await;

    signal(&process.child, "TERM");
    assert_eq!(a.recv().await, json!({"event": "shutdown", "seconds": 60}));
    signal(&process.child, "TERM");
    // Well within the grace: wait_exit gives up after PATIENCE (10 s).
    let status = wait_exit(&mut process.child).await;
    assert_eq!(status.code(), Some(143), "{status:?}");
}

#[tokio::test]
async fn sigint_closes_at_once_and_logs_are_json_when_asked() {
    let mut process = start(&["--shutdown-grace", "30s", "--log-format", "json"]).await;
    let mut a = Client::connect_url(&format!("ws://{}/", process.addresses.listen)).await;
    a.sync().await;
    signal(&process.child, "INT");
    let (seen, ended) = a.drain_until_closed().await;
    assert_eq!(seen, [json!({"event": "shutdown", "seconds": 0})]);
    assert_eq!(
        ended,
        Ended::Close(Some(4200), "server shutting down".into())
    );
    assert!(wait_exit(&mut process.child).await.success());

    let mut stderr = String::new();
    use std::io::Read;
    process
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
        .collect();
    let serving = lines
        .iter()
        .find(|l| l["message"] == "switchboard-edge serving")
        .expect("a start-up line");
    assert_eq!(serving["listen"], process.addresses.listen.to_string());
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "switchboard-edge stopped")
    );
}

fn stderr_of(process: &mut Process) -> String {
    use std::io::Read;
    let mut stderr = String::new();
    if let Some(mut pipe) = process.child.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    stderr
}

/// With --stats-file, palava's hourly statistics outlive a restart. Room ids stay private all along:
/// not in logs (even at debug level), metrics, statistics or the file.
#[tokio::test]
async fn statistics_survive_a_restart_and_room_ids_stay_private() {
    const ROOM: &str = "secret-room-4711";
    let dir = TempDir::new();
    let stats_file = dir.0.join("stats.json");
    let stats_arg = stats_file.to_str().unwrap();

    let mut first = start(&["--stats-file", stats_arg, "--log", "debug"]).await;
    let url = format!("ws://{}/", first.addresses.listen);
    let mut a = Client::connect_url(&url).await;
    let mut b = Client::connect_url(&url).await;
    a.join(ROOM, json!({"name": "a"})).await;
    b.join(ROOM, json!({})).await;
    a.expect("new_peer").await;
    b.send(json!({"event": "leave_room"})).await;
    a.expect("peer_left").await;
    a.send(json!({"event": "leave_room"})).await;
    a.sync().await;
    let (_, metrics) = http_get(first.addresses.admin_listen, "/metrics").await;
    let (_, stats) = http_get(first.addresses.admin_listen, "/stats").await;
    // With every client gone, SIGTERM need not wait out the grace.
    drop((a, b));
    signal(&first.child, "TERM");
    assert!(wait_exit(&mut first.child).await.success());
    let logs = stderr_of(&mut first);
    assert!(logs.contains("connection opened"), "debug logs were on");
    for (what, text) in [("logs", &logs), ("metrics", &metrics), ("stats", &stats)] {
        assert!(!text.contains(ROOM), "the room id leaked into {what}");
    }
    let saved = std::fs::read_to_string(&stats_file).expect("statistics saved at shutdown");
    assert!(!saved.contains(ROOM));

    let second = start(&["--stats-file", stats_arg]).await;
    let (_, stats) = http_get(second.addresses.admin_listen, "/stats").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let hours = stats["hourly"]["hours"].as_object().unwrap();
    let restored: Vec<&Value> = hours.values().collect();
    assert_eq!(restored.len(), 1, "{stats}");
    assert_eq!(restored[0]["room_peaks"], json!({"2": 1}));
    assert_eq!(restored[0]["connection_time"], json!({"0": 2}));
}

/// Hosted mode: key secrets and tokens never reach the logs (even at debug level) or the metrics,
/// whether the tenants file is refused at start (exit 64, naming the tenant and key), refused at a
/// reload (the previous tenants stay), or in use.
#[tokio::test]
async fn hosted_mode_never_logs_secrets_or_tokens() {
    use common::hosted::{claims, token};
    const SECRET: &str = "do-not-log-me-0123456789abcdefghijkl";
    let dir = TempDir::new();
    let file = dir.0.join("tenants.toml");
    let file_arg = file.to_str().unwrap();
    let hosted = [
        "--auth",
        "tokens",
        "--tenants-file",
        file_arg,
        "--log",
        "debug",
    ];

    std::fs::write(
        &file,
        "[tenants.acme]\nkeys = [{ id = \"k1\", secret = \"short-do-not-log\" }]\n",
    )
    .unwrap();
    let output = command()
        .args(hosted)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("tenant \"acme\": key \"k1\": the secret is shorter than 32 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("short-do-not-log"), "{stderr}");

    std::fs::write(
        &file,
        format!("[tenants.acme]\nkeys = [{{ id = \"k1\", secret = \"{SECRET}\" }}]\n"),
    )
    .unwrap();
    let mut edge = start(&hosted).await;
    let token = token(("k1", SECRET), &claims("alice"));
    let url = format!("ws://{}/?access_token={token}", edge.addresses.listen);
    let mut client = Client::connect_url(&url).await;
    client.join("lobby", json!({})).await;
    // A broken reload whose bad line holds the secret.
    std::fs::write(
        &file,
        format!(
            "[tenants.acme]\nkeys = [{{ id = \"k1\", secret = {SECRET:?}, oops = {SECRET:?} }}]\n"
        ),
    )
    .unwrap();
    let admin = edge.addresses.admin_listen;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let metrics = loop {
        let (_, metrics) = http_get(admin, "/metrics").await;
        if common::parse_metric(
            &metrics,
            "switchboard_tenants_reloads_total",
            &[("result", "refused")],
        ) == 1.0
        {
            break metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bad file was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The previous tenants stay: the token still connects.
    Client::connect_url(&url).await.sync().await;
    drop(client);
    signal(&edge.child, "TERM");
    assert!(wait_exit(&mut edge.child).await.success());
    let logs = stderr_of(&mut edge);
    assert!(logs.contains("connection opened"), "debug logs were on");
    assert!(logs.contains("not reloaded"), "{logs}");
    assert!(logs.contains("unknown field `oops`"), "{logs}");
    for (what, text) in [("logs", &logs), ("metrics", &metrics)] {
        assert!(!text.contains(SECRET), "the key secret leaked into {what}");
        assert!(!text.contains(&token), "the token leaked into {what}");
    }
}
