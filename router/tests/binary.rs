//! The `switchboard-router` binary's command line, as an operator meets it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-router");

fn command() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") {
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
