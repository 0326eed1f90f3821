use super::*;
use clap::Parser;
use switchboard_proto::limits::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_SHUTDOWN_GRACE_SECS};

#[test]
fn defaults_are_the_documented_ones() {
    let config = Config::default();
    assert_eq!(config.listen, "127.0.0.1:4233".parse().unwrap());
    assert_eq!(config.admin_listen, "127.0.0.1:9233".parse().unwrap());
    assert_eq!(config.max_frame_bytes, 256 * 1024);
    assert_eq!(config.max_json_depth, 32);
    assert_eq!(config.outbound_queue_bytes, 4 << 20);
    assert_eq!((config.rate_limit, config.rate_burst), (50, 200));
    assert_eq!(config.idle_timeout.as_secs(), DEFAULT_IDLE_TIMEOUT_SECS);
    assert_eq!(config.shutdown_grace.as_secs(), DEFAULT_SHUTDOWN_GRACE_SECS);
    assert_eq!(config.status_rules(), StatusRules::default());
    assert!(config.demo_enabled(), "the demo is on standalone");
    assert!(config.ice_servers.is_empty());
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn nonsense_is_refused_with_the_flag_named() {
    let bad = |f: fn(&mut Config)| {
        let mut config = Config::default();
        f(&mut config);
        config.validate().unwrap_err().to_string()
    };
    assert!(bad(|c| c.max_frame_bytes = 10).contains("--max-frame-bytes"));
    assert!(bad(|c| c.rate_limit = 0).contains("--rate-limit"));
    assert!(bad(|c| c.max_json_depth = 1).contains("--max-json-depth"));
    assert!(bad(|c| c.outbound_queue_bytes = 1000).contains("--outbound-queue-bytes"));
    assert!(bad(|c| c.fd_reserve = 8).contains("--fd-reserve"));
    assert!(bad(|c| c.max_json_depth = MAX_JSON_DEPTH + 1).contains("--max-json-depth"));
    assert!(bad(|c| c.idle_timeout = Duration::from_secs(1)).contains("--idle-timeout"));
    assert!(bad(|c| c.admin_listen = c.listen).contains("--admin-listen"));
    assert!(bad(|c| c.user_agents = vec!["".into()]).contains("--user-agents"));
}

#[test]
fn flags_parse() {
    let config = Config::try_parse_from([
        "switchboard-edge",
        "--listen",
        "127.0.0.1:0",
        "--shutdown-grace",
        "1m 30s",
        "--user-agents",
        "chrome,bot",
    ])
    .unwrap();
    assert_eq!(config.listen.port(), 0);
    assert_eq!(config.shutdown_grace, Duration::from_secs(90));
    assert_eq!(config.user_agents, ["chrome", "bot"]);
    assert!(Config::try_parse_from(["switchboard-edge", "--listen", "nowhere"]).is_err());
}

#[test]
fn the_demo_is_on_standalone_and_opt_in_for_a_cluster() {
    let parse = |args: &[&str]| {
        let args = ["switchboard-edge"].iter().chain(args);
        Config::try_parse_from(args).unwrap().demo_enabled()
    };
    let nats = ["--nats", "nats://127.0.0.1:4222"];
    assert!(parse(&[]));
    assert!(!parse(&nats));
    assert!(parse(&[&nats[..], &["--demo"]].concat()));
    assert!(parse(&[&nats[..], &["--demo=true"]].concat()));
    assert!(parse(&[&nats[..], &["--demo", "true"]].concat()));
    assert!(!parse(&["--demo=false"]));
    assert!(!parse(&["--demo", "false", "--listen", "127.0.0.1:0"]));
    assert!(Config::try_parse_from(["switchboard-edge", "--demo=maybe"]).is_err());
}

/// The usual spellings of a boolean, in any case (the same parser reads `SWITCHBOARD_DEMO`;
/// tests/binary.rs passes it through the environment).
#[test]
fn booleans_take_the_usual_spellings() {
    for (text, want) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("On", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("NO", false),
        ("off", false),
    ] {
        let config = Config::try_parse_from(["switchboard-edge", &format!("--demo={text}")])
            .unwrap_or_else(|e| panic!("--demo={text}: {e}"));
        assert_eq!(config.demo, Some(want), "--demo={text}");
    }
}

#[test]
fn the_room_key_secret_is_at_least_16_bytes() {
    let with = |secret: &str| Config {
        room_key_secret: Some(secret.into()),
        ..Config::default()
    };
    let refused = with(&"k".repeat(15)).validate().unwrap_err().to_string();
    assert!(
        refused.contains("--room-key-secret must be at least 16 bytes (got 15)"),
        "{refused}"
    );
    assert_eq!(with(&"k".repeat(16)).validate(), Ok(()));
    assert!(with("").validate().is_err());
}

/// A setting from the environment is named by its variable too (the binary's test sets one).
#[test]
fn checks_name_the_variable_a_setting_came_from() {
    let mut config = Config {
        max_frame_bytes: 10,
        ..Config::default()
    };
    let message = config.validate().unwrap_err().to_string();
    assert!(!message.contains("SWITCHBOARD_"), "{message}");
    config
        .sources
        .set_from_env("--max-frame-bytes", "SWITCHBOARD_MAX_FRAME_BYTES");
    let message = config.validate().unwrap_err().to_string();
    assert!(
        message.contains("--max-frame-bytes (from SWITCHBOARD_MAX_FRAME_BYTES) must be"),
        "{message}"
    );
}

#[test]
fn ice_servers_repeat_and_split_on_semicolons() {
    let config = Config::try_parse_from([
        "switchboard-edge",
        "--ice-server",
        "stun:a.example.org:3478; stun:b.example.org",
        "--ice-server",
        "turn:t.example.org:3478?transport=udp username=u credential=c",
    ])
    .unwrap();
    let urls: Vec<_> = config
        .ice_servers
        .iter()
        .map(|s| s.urls.join(","))
        .collect();
    assert_eq!(
        urls,
        [
            "stun:a.example.org:3478",
            "stun:b.example.org",
            "turn:t.example.org:3478?transport=udp"
        ]
    );
    let refused = Config::try_parse_from(["switchboard-edge", "--ice-server", "turn:t"]);
    assert!(refused.unwrap_err().to_string().contains("username="));
}
