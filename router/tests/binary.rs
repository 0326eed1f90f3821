//! The `switchboard-router` binary's command line, as an operator meets it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-router");

fn command() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn invalid_configuration_exits_64_naming_the_setting() {
    for (args, needle) in [
        (vec![], "--nats"),
        (vec!["--nats", "not a url"], "--nats"),
        (vec!["--nats-consul-service", "nats"], "--consul-addr"),
        (
            vec![
                "--nats",
                "nats://127.0.0.1:4222",
                "--consul-addr",
                "http://127.0.0.1:8500",
                "--admin-listen",
                "0.0.0.0:9234",
            ],
            "--consul-advertise-addr",
        ),
        (
            vec!["--nats", "nats://127.0.0.1:4222", "--lease-ttl", "10ms"],
            "--lease-ttl",
        ),
        (
            vec!["--nats", "nats://127.0.0.1:4222", "--router-id", "a b"],
            "--router-id",
        ),
        (
            vec!["--nats", "nats://127.0.0.1:4222", "--slots", "0"],
            "--slots",
        ),
        (
            vec![
                "--nats",
                "nats://127.0.0.1:4222",
                "--nats-creds",
                "/nonexistent",
            ],
            "--nats-creds",
        ),
        (
            vec!["--nats", "nats://127.0.0.1:4222", "--log", "[["],
            "--log",
        ),
    ] {
        let output = command().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// A bad value from the environment names the variable the operator set (and its flag).
#[test]
fn invalid_environment_exits_64_naming_the_variable() {
    for (variable, value, flag) in [
        ("SWITCHBOARD_LEASE_TTL", "soon", "--lease-ttl"),
        ("SWITCHBOARD_LEASE_TTL", "10ms", "--lease-ttl"),
        ("SWITCHBOARD_SLOTS", "many", "--slots"),
        ("SWITCHBOARD_SLOTS", "0", "--slots"),
        ("SWITCHBOARD_LOG", "[[", "--log"),
        ("SWITCHBOARD_NATS_REPLICAS", "9", "--nats-replicas"),
    ] {
        let output = command()
            .args(["--nats", "nats://127.0.0.1:4222"])
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable) && stderr.contains(flag),
            "{variable}={value}: {stderr}"
        );
    }
    let output = command()
        .args(["--nats", "nats://127.0.0.1:4222", "--slots", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("SWITCHBOARD_SLOTS"));
}

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let output = command().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env) in [
        ("nats", "SWITCHBOARD_NATS"),
        ("nats-user", "SWITCHBOARD_NATS_USER"),
        ("nats-token", "SWITCHBOARD_NATS_TOKEN"),
        ("nats-creds", "SWITCHBOARD_NATS_CREDS"),
        ("nats-tls-ca", "SWITCHBOARD_NATS_TLS_CA"),
        ("admin-listen", "SWITCHBOARD_ADMIN_LISTEN"),
        ("lease-ttl", "SWITCHBOARD_LEASE_TTL"),
        ("edge-timeout", "SWITCHBOARD_EDGE_TIMEOUT"),
        ("resync-timeout", "SWITCHBOARD_RESYNC_TIMEOUT"),
        ("max-room-size", "SWITCHBOARD_MAX_ROOM_SIZE"),
        ("nats-replicas", "SWITCHBOARD_NATS_REPLICAS"),
        ("router-id", "SWITCHBOARD_ROUTER_ID"),
    ] {
        assert!(help.contains(&format!("--{flag}")), "--{flag} missing");
        assert!(help.contains(env), "{env} missing");
    }
}

fn http_get(addr: &str, path: &str) -> u16 {
    http(addr, "GET", path).0
}

/// One HTTP/1.0 request: the status and the `Allow` header, if any.
fn http(addr: &str, method: &str, path: &str) -> (u16, Option<String>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(stream, "{method} {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let allow = response
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("allow"))
        .map(|(_, value)| value.trim().to_string());
    (status, allow)
}

/// A router that cannot reach NATS still answers its probes: alive, not ready.
#[test]
fn without_nats_the_router_is_alive_but_not_ready() {
    let dir = std::env::temp_dir().join(format!("switchboard-router-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready.json");
    // Nothing listens on port 1: the router keeps trying to connect.
    let mut child = command()
        .args([
            "--nats",
            "nats://127.0.0.1:1",
            "--admin-listen",
            "127.0.0.1:0",
            "--ready-file",
        ])
        .arg(&ready)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let admin = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            break value["admin_listen"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no ready file");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let (health, readiness) = (http_get(&admin, "/healthz"), http_get(&admin, "/readyz"));
    let stats = http_get(&admin, "/stats");
    // The endpoints answer GET and HEAD only; other methods are told so.
    let other_methods: Vec<_> = ["/healthz", "/readyz", "/metrics", "/stats", "/slots"]
        .into_iter()
        .map(|path| (path, http(&admin, "POST", path)))
        .collect();
    let head = http(&admin, "HEAD", "/healthz").0;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((health, readiness, stats), (200, 503, 503));
    for (path, answer) in other_methods {
        assert_eq!(answer, (405, Some("GET, HEAD".into())), "POST {path}");
    }
    assert_eq!(head, 200);
}
