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

/// A file in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "switchboard-config-test-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn turn_flags_parse() {
    let config = Config::try_parse_from([
        "switchboard-edge",
        "--turn-url",
        "turn:t.example.org:3478?transport=udp,turns:t.example.org:5349",
        "--turn-url",
        "stun:t.example.org",
        "--turn-secret-file",
        "/run/secrets/turn",
        "--turn-ttl",
        "2h",
    ])
    .unwrap();
    assert_eq!(
        config.turn_urls,
        [
            "turn:t.example.org:3478?transport=udp",
            "turns:t.example.org:5349",
            "stun:t.example.org"
        ]
    );
    assert_eq!(
        config.turn_secret_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/turn"))
    );
    assert_eq!(config.turn_ttl, Duration::from_secs(7200));
    let default = Config::default();
    assert_eq!(default.turn_ttl, Duration::from_secs(12 * 3600));
    assert_eq!(default.turn_settings(), Ok(None));
}

#[test]
fn turn_settings_come_from_the_flags_and_the_secret_file() {
    let file = TempFile::new("turn-ok", "# newest first\nsecret-two\n\n  secret-one  \n");
    let config = Config {
        turn_urls: vec!["turn:127.0.0.1:3478".into()],
        turn_secret_file: Some(file.0.clone()),
        turn_ttl: Duration::from_secs(90),
        ..Config::default()
    };
    assert_eq!(config.validate(), Ok(()));
    let settings = config.turn_settings().unwrap().unwrap();
    assert_eq!(settings.urls, ["turn:127.0.0.1:3478"]);
    let secrets: Vec<_> = settings.secrets.iter().map(|s| s.expose()).collect();
    assert_eq!(secrets, [&b"secret-two"[..], b"secret-one"]);
    assert_eq!(settings.ttl, Duration::from_secs(90));
    assert!(!format!("{config:?}").contains("secret-two"));
}

#[test]
fn turn_mistakes_are_refused_with_the_flag_named() {
    let good = TempFile::new("turn-good", "k1\n");
    let empty = TempFile::new("turn-empty", "# no secret yet\n\n");
    let control = TempFile::new("turn-control", "hunter\u{7}2\n");
    let refused = |urls: &[&str], file: Option<&TempFile>, ttl: u64| {
        let config = Config {
            turn_urls: urls.iter().map(|u| u.to_string()).collect(),
            turn_secret_file: file.map(|f| f.0.clone()),
            turn_ttl: Duration::from_secs(ttl),
            ..Config::default()
        };
        config.validate().unwrap_err().to_string()
    };
    let turn = ["turn:127.0.0.1:3478"];
    let message = refused(&turn, None, 60);
    assert!(
        message.contains("--turn-url needs --turn-secret-file"),
        "{message}"
    );
    let message = refused(&[], Some(&good), 60);
    assert!(
        message.contains("--turn-secret-file needs --turn-url"),
        "{message}"
    );
    let message = refused(&["http://t"], Some(&good), 60);
    assert!(message.contains("--turn-url: TURN URL"), "{message}");
    let message = refused(&["stun:s"], Some(&good), 60);
    assert!(message.contains("no turn: or turns: URL"), "{message}");
    let message = refused(&turn, Some(&empty), 60);
    assert!(
        message.contains("--turn-secret-file") && message.contains("no TURN secret"),
        "{message}"
    );
    let message = refused(&turn, Some(&control), 60);
    assert!(message.contains("control character"), "{message}");
    assert!(!message.contains("hunter"), "{message}");
    let missing = TempFile::new("turn-missing", "");
    std::fs::remove_file(&missing.0).unwrap();
    let message = refused(&turn, Some(&missing), 60);
    assert!(
        message.contains(&format!("--turn-secret-file {}", missing.0.display())),
        "{message}"
    );
    for ttl in [0, 8 * 24 * 3600] {
        let message = refused(&turn, Some(&good), ttl);
        assert!(message.contains("--turn-ttl must be between"), "{message}");
    }
}
