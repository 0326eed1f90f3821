use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use serde_json::json;

use super::*;

/// The Consul and NATS flags alone, parsed as the binaries parse them.
#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    consul: ConsulArgs,
}

fn settings(args: &[&str], listen: &str) -> Result<Option<Settings>, ConfigError> {
    let flags = Flags::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"));
    let listen: SocketAddr = listen.parse().unwrap();
    flags
        .consul
        .settings(&flags.nats, "switchboard-edge", listen)
}

fn error(args: &[&str], listen: &str) -> String {
    match settings(args, listen) {
        Err(ConfigError(message)) => message,
        Ok(s) => panic!("{args:?} accepted: {s:?}"),
    }
}

#[test]
fn off_without_an_agent() {
    assert_eq!(settings(&[], "0.0.0.0:4233").unwrap(), None);
    assert_eq!(
        error(&["--consul-tags", "a"], "127.0.0.1:4233"),
        "--consul-tags needs --consul-addr"
    );
    assert_eq!(
        error(&["--nats-consul-service", "nats"], "127.0.0.1:4233"),
        "--nats-consul-service needs --consul-addr: the Consul agent to ask"
    );
}

#[test]
fn defaults_and_advertised_address() {
    let s = settings(&["--consul-addr", "http://127.0.0.1:8500"], "10.0.0.7:4233")
        .unwrap()
        .unwrap();
    assert_eq!(s.service_name, "switchboard-edge");
    assert_eq!(s.advertise, "10.0.0.7");
    assert_eq!(s.token, None);
    assert_eq!(s.deregister_after, Duration::from_secs(60));
    assert_eq!(s.sync_interval, Duration::from_secs(30));

    // Listening on every interface, Consul cannot be told where to find us.
    let message = error(&["--consul-addr", "http://127.0.0.1:8500"], "0.0.0.0:4233");
    assert!(
        message.starts_with("--consul-advertise-addr is required with --consul-addr"),
        "{message}"
    );
    let s = settings(
        &[
            "--consul-addr",
            "http://127.0.0.1:8500",
            "--consul-advertise-addr",
            "edge-0.example",
            "--consul-tags",
            "blue, eu",
            "--consul-service-name",
            "signaling",
        ],
        "0.0.0.0:4233",
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.advertise, "edge-0.example");
    assert_eq!(s.tags, ["blue", "eu"]);
    assert_eq!(s.service_name, "signaling");
}

#[test]
fn invalid_settings_name_their_flag() {
    let agent = ["--consul-addr", "http://127.0.0.1:8500"];
    let with = |extra: &[&str]| error(&[&agent[..], extra].concat(), "127.0.0.1:4233");
    assert!(
        with(&["--consul-deregister-after", "30s"])
            .starts_with("--consul-deregister-after must be at least 1m")
    );
    assert!(
        with(&["--consul-service-name", "my_service"])
            .starts_with("--consul-service-name \"my_service\"")
    );
    assert!(
        with(&["--consul-advertise-addr", "10.0.0.1:80"]).starts_with("--consul-advertise-addr")
    );
    assert!(with(&["--consul-advertise-addr", "0.0.0.0"]).starts_with("--consul-advertise-addr"));
    assert!(with(&["--consul-tags", "a,,b"]).starts_with("--consul-tags"));
    assert!(
        with(&["--consul-token-file", "/nonexistent/token"])
            .starts_with("--consul-token-file /nonexistent/token: cannot read it")
    );
    assert!(with(&["--nats-consul-service", "nats.x"]).starts_with("--nats-consul-service"));
    assert!(
        error(
            &["--consul-addr", "https://127.0.0.1:8501"],
            "127.0.0.1:4233"
        )
        .starts_with("--consul-addr")
    );
}

#[test]
fn the_token_comes_from_its_file_and_is_never_echoed() {
    let dir = std::env::temp_dir().join(format!("consul-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, "  b1gs3cret\n").unwrap();
    let file = path.to_str().unwrap();
    let agent = [
        "--consul-addr",
        "http://127.0.0.1:8500",
        "--consul-token-file",
        file,
    ];
    let s = settings(&agent, "127.0.0.1:4233").unwrap().unwrap();
    assert_eq!(s.token.as_deref(), Some("b1gs3cret"));
    std::fs::write(&path, "first-s3cret\nsecond-s3cret\n").unwrap();
    let message = error(&agent, "127.0.0.1:4233");
    assert!(message.contains("expected one token"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    std::fs::write(&path, "\n").unwrap();
    assert!(error(&agent, "127.0.0.1:4233").contains("expected one token"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nats_discovery_makes_a_cluster_node() {
    let flags = Flags::try_parse_from(["test", "--nats-consul-service", "nats"]).unwrap();
    assert!(flags.nats.enabled());
    assert!(!Flags::try_parse_from(["test"]).unwrap().nats.enabled());
}

#[test]
fn the_registration_body_uses_consuls_field_names() {
    let s = settings(
        &[
            "--consul-addr",
            "http://127.0.0.1:8500",
            "--consul-tags",
            "blue",
            "--consul-deregister-after",
            "90s",
        ],
        "10.0.0.7:4233",
    )
    .unwrap()
    .unwrap();
    let service = Service::new(
        &s,
        "0000abcd",
        4233,
        "0.0.0.0:9233".parse().unwrap(),
        "1.2.3",
    );
    assert_eq!(
        service.body(),
        json!({
            "ID": "switchboard-edge-0000abcd",
            "Name": "switchboard-edge",
            "Tags": ["blue"],
            "Address": "10.0.0.7",
            "Port": 4233,
            "Meta": {"version": "1.2.3", "admin_port": "9233"},
            "Check": {
                "Name": "switchboard-edge readiness",
                "HTTP": "http://10.0.0.7:9233/readyz",
                "Method": "GET",
                "Interval": "5s",
                "Timeout": "2s",
                "DeregisterCriticalServiceAfter": "90s",
            },
        })
    );
    // An admin port on one address is checked there (the agent shares the host).
    let service = Service::new(&s, "r1", 9234, "[::1]:9234".parse().unwrap(), "1.2.3");
    assert_eq!(service.check_url, "http://[::1]:9234/readyz");
}

#[test]
fn durations_in_gos_syntax() {
    assert_eq!(go_duration(Duration::from_secs(60)), "60s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
}
