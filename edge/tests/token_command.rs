//! `switchboard-edge token` as an operator runs it: the token it prints gets a client into an edge
//! in token mode, with the room, name and grants asked for; when it cannot make a token it says why
//! and exits 64; and the server's own command line is unchanged by it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use serde_json::json;

use common::TestEdge;
use common::hosted::{A_ORIGIN, A1, B1, TenantsFile, connect, two_tenants};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-edge");
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../router/tenants/testdata");

/// Runs `switchboard-edge token ARGS` without the test's `SWITCHBOARD_*` environment, plus `env`.
fn token_command(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") {
            command.env_remove(key);
        }
    }
    command.arg("token").args(args).envs(env.iter().copied());
    command.output().unwrap()
}

/// The token printed on stdout (one line, nothing else), asserting success.
fn printed_token(output: &Output) -> String {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    let token = stdout.trim_end_matches('\n').to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token
}

/// The message and exit status of a refusal.
fn refusal(output: &Output) -> (Option<i32>, String) {
    assert!(output.stdout.is_empty(), "no token when refused");
    (
        output.status.code(),
        String::from_utf8(output.stderr.clone()).unwrap(),
    )
}

/// Tenants a and b of the hosted tests, and tenant c whose only key is an Ed25519 public key.
fn tenants() -> TenantsFile {
    let ed_public = std::fs::read_to_string(format!("{TESTDATA}/ed25519-public.pem")).unwrap();
    TenantsFile::new(&format!(
        "{}\n[[tenants.c.keys]]\nid = \"c-ed\"\nalgorithm = \"EdDSA\"\npublic_key = \"\"\"\n{ed_public}\"\"\"\n",
        two_tenants("")
    ))
}

#[tokio::test]
async fn a_printed_token_gets_a_client_into_an_edge_in_token_mode() {
    let file = tenants();
    let path = file.path.to_str().unwrap();
    let edge = TestEdge::start_with(|config| file.configure(config)).await;

    let alice = printed_token(&token_command(
        &[
            "--tenants-file",
            path,
            "--key",
            A1.0,
            "--room",
            "standup",
            "--name",
            "Alice",
            "--ttl",
            "10m",
        ],
        &[],
    ));
    let mut alice = connect(&edge.url(), &alice, Some(A_ORIGIN)).await;
    alice
        .send(json!({"event": "join_room", "room_id": "retro"}))
        .await;
    alice.expect_error("room not allowed by token").await;
    let (alice_id, _) = alice.join("standup", json!({"name": "someone"})).await;

    // The tenants file from the environment, as in the edge's container; join only.
    let bob = printed_token(&token_command(
        &["--key", A1.0, "--grant", "join", "--name", "Bob"],
        &[("SWITCHBOARD_TENANTS_FILE", path)],
    ));
    let mut bob = connect(&edge.url(), &bob, Some(A_ORIGIN)).await;
    let (_, joined) = bob.join("standup", json!({})).await;
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": alice_id, "status": {"name": "Alice"}}]),
        "the token's name is the one others see"
    );
    assert_eq!(alice.expect("new_peer").await["status"]["name"], "Bob");
    bob.send(json!({"event": "send_to_peer", "peer_id": alice_id, "data": {"event": "offer", "sdp": "x"}}))
        .await;
    bob.expect_error("send not allowed by token").await;

    // Tenant b's key makes a token of tenant b: another tenant's standup.
    let carol = printed_token(&token_command(
        &["--tenants-file", path, "--key", B1.0],
        &[],
    ));
    let mut carol = connect(&edge.url(), &carol, None).await;
    let (_, joined) = carol.join("standup", json!({})).await;
    assert_eq!(joined["peers"], json!([]));

    // A public key signs with its private key.
    let private = format!("{TESTDATA}/ed25519-private.pem");
    let dave = printed_token(&token_command(
        &[
            "--tenants-file",
            path,
            "--key",
            "c-ed",
            "--private-key-file",
            &private,
        ],
        &[],
    ));
    let mut dave = connect(&edge.url(), &dave, None).await;
    dave.join("standup", json!({})).await;
}

#[test]
fn refusals_say_why_and_exit_64() {
    let file = tenants();
    let path = file.path.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--key", "nobody"],
            "switchboard-edge token: --key \"nobody\": no such key in",
        ),
        (
            &["--key", "c-ed"],
            "is an EdDSA public key: the tenants file cannot sign with it; give its private key \
             with --private-key-file",
        ),
        (
            &["--key", A1.0, "--ttl", "25h"],
            "--ttl 1day 1h must be between 1s and --token-max-lifetime (1day)",
        ),
        (&["--key"], "a value is required for '--key <KEY_ID>'"),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["--tenants-file", path];
        argv.extend_from_slice(args);
        let (code, stderr) = refusal(&token_command(&argv, &[]));
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains(A1.1), "no secret in {stderr}");
    }
    // The edges' lifetime from their environment applies here too, and the message names it.
    let (code, stderr) = refusal(&token_command(
        &["--tenants-file", path, "--key", A1.0, "--ttl", "2h"],
        &[("SWITCHBOARD_TOKEN_MAX_LIFETIME", "1h")],
    ));
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("--token-max-lifetime (from SWITCHBOARD_TOKEN_MAX_LIFETIME) (1h)"),
        "{stderr}"
    );
}

#[test]
fn help_shows_the_command_and_the_server_keeps_its_own() {
    let help = token_command(&["--help"], &[]);
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains(
            "Usage: switchboard-edge token [OPTIONS] --tenants-file <FILE> --key <KEY_ID>"
        )
    );
    assert!(text.contains("--private-key-file"));

    let server = Command::new(BIN).arg("--help").output().unwrap();
    assert!(server.status.success());
    let text = String::from_utf8(server.stdout).unwrap();
    assert!(
        text.contains("switchboard-edge token --tenants-file FILE --key KEY_ID"),
        "{text}"
    );
    assert!(
        text.contains("--auth <AUTH>"),
        "the server's flags are all there"
    );
    // `token` anywhere but first is no command: the server refuses it as before.
    let stray = Command::new(BIN)
        .args(["--log", "info", "token"])
        .output()
        .unwrap();
    assert_eq!(stray.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&stray.stderr).contains("unexpected argument 'token'"));
}
