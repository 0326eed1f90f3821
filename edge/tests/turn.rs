//! TURN credentials end to end: an edge given `--turn-url` and `--turn-secret-file` hands every
//! joiner credentials of its own in `joined_room`, and a real coturn sharing the secret grants
//! them a relay until they expire; a new join brings fresh ones. Without TURN settings,
//! `joined_room` is as before.
//!
//! coturn must be installed (`scripts/test` installs it); without it these tests fail and say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, TestEdge};
use serde_json::{Value, json};
use switchboard_testkit::coturn::{Allocation, allocate};
use switchboard_testkit::{Coturn, wait_until};

const SECRET: &str = "edge-test-turn-secret";

/// Lifetime of the credentials: long enough for an allocation right after the join, even on a
/// loaded machine (coturn keeps a credential good through the second it expires in), short enough
/// to wait for.
const TTL: Duration = Duration::from_secs(3);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn coturn(secrets: &[&str]) -> Coturn {
    Coturn::start(secrets)
        .await
        .unwrap_or_else(|e| panic!("cannot start coturn: {e:#}"))
}

/// The edge's secret file, in coturn's directory: the first secret mints.
fn secret_file(coturn: &Coturn, secrets: &[&str]) -> PathBuf {
    let path = coturn.dir().join("edge-turn-secrets");
    let text = format!("# the first mints\n{}\n", secrets.join("\n"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The credentials of a `joined_room`, checked for shape: `ice_servers` holds one RTCIceServer with
/// the TURN URL and the same username and password as `turn_user` and `turn_password`.
fn credentials(joined: &Value, url: &str) -> (String, String) {
    let user = joined["turn_user"].as_str().expect("turn_user").to_owned();
    let password = joined["turn_password"]
        .as_str()
        .expect("turn_password")
        .to_owned();
    assert_eq!(
        joined["ice_servers"],
        json!([{"urls": [url], "username": user, "credential": password}]),
        "{joined}"
    );
    (user, password)
}

/// The expiry and user of a REST-API username.
fn parse_username(username: &str) -> (u64, &str) {
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    (expiry.parse().expect("expiry in Unix seconds"), user)
}

#[tokio::test]
async fn joiners_get_credentials_coturn_grants_until_they_expire() {
    let coturn = coturn(&[SECRET]).await;
    let file = secret_file(&coturn, &[SECRET]);
    let url = coturn.url();
    let edge = TestEdge::start_with(|c| {
        c.turn_urls = vec![url.clone()];
        c.turn_secret_file = Some(file);
        c.turn_ttl = TTL;
    })
    .await;

    let mut alice = Client::connect(&edge).await;
    let before = now();
    let (alice_id, joined) = alice.join("turn", json!({"name": "Alice"})).await;
    let after = now();
    let (username, password) = credentials(&joined, &url);
    let (expiry, user) = parse_username(&username);
    assert_eq!(user, alice_id, "open mode: the TURN user is the connection");
    assert!(
        (before + TTL.as_secs()..=after + TTL.as_secs()).contains(&expiry),
        "expiry {expiry}, joined between {before} and {after}"
    );
    let granted = allocate(coturn.addr(), &username, &password).await.unwrap();
    assert!(matches!(granted, Allocation::Granted { .. }), "{granted:?}");

    // Another joiner gets credentials of its own; the members already in the room get none.
    let mut bob = Client::connect(&edge).await;
    let (bob_id, bob_joined) = bob.join("turn", json!({"name": "Bob"})).await;
    let (bob_username, _) = credentials(&bob_joined, &url);
    assert_eq!(parse_username(&bob_username).1, bob_id);
    let new_peer = alice.expect("new_peer").await;
    assert_eq!(
        new_peer,
        json!({"event": "new_peer", "peer_id": bob_id, "status": {"name": "Bob"}})
    );

    // coturn refuses a credential from the second after its expiry: wait for that known moment,
    // then for the refusal (bounded).
    let expired_at = UNIX_EPOCH + Duration::from_secs(expiry + 1);
    if let Ok(wait) = expired_at.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    wait_until(Duration::from_secs(10), || async {
        matches!(
            allocate(coturn.addr(), &username, &password).await,
            Ok(Allocation::Refused { .. })
        )
    })
    .await
    .expect("coturn refuses the credentials once they expired");

    // A new join mints fresh credentials, which coturn grants again.
    alice.send(json!({"event": "leave_room"})).await;
    alice.sync().await;
    let (_, rejoined) = alice.join("turn", json!({"name": "Alice"})).await;
    let (fresh_username, fresh_password) = credentials(&rejoined, &url);
    let (fresh_expiry, fresh_user) = parse_username(&fresh_username);
    assert_eq!(fresh_user, alice_id);
    assert!(fresh_expiry > expiry, "{fresh_expiry} after {expiry}");
    let granted = allocate(coturn.addr(), &fresh_username, &fresh_password)
        .await
        .unwrap();
    assert!(matches!(granted, Allocation::Granted { .. }), "{granted:?}");
}

/// Rotation as an operator does it: coturn accepts the new and the old secret, and an edge whose
/// file lists the new one first mints with it; coturn grants what it mints.
#[tokio::test]
async fn the_first_secret_of_the_file_mints() {
    let coturn = coturn(&["rotated-in", "rotated-out"]).await;
    let file = secret_file(&coturn, &["rotated-in", "rotated-out"]);
    let url = coturn.url();
    let edge = TestEdge::start_with(|c| {
        c.turn_urls = vec![url.clone(), "stun:127.0.0.1:3478".into()];
        c.turn_secret_file = Some(file);
    })
    .await;
    let mut client = Client::connect(&edge).await;
    let (_, joined) = client.join("rotation", json!({})).await;
    let username = joined["turn_user"].as_str().unwrap();
    let password = joined["turn_password"].as_str().unwrap();
    assert_eq!(
        joined["ice_servers"][0]["urls"],
        json!([url, "stun:127.0.0.1:3478"])
    );
    assert_eq!(
        password,
        switchboard_tenants::turn::password(
            &switchboard_tenants::Secret::new("rotated-in"),
            username
        )
    );
    let (expiry, _) = parse_username(username);
    let ttl = expiry - now();
    assert!(
        (12 * 3600 - 5..=12 * 3600).contains(&ttl),
        "default ttl: {ttl}"
    );
    let granted = allocate(coturn.addr(), username, password).await.unwrap();
    assert!(matches!(granted, Allocation::Granted { .. }), "{granted:?}");
}

/// Without TURN settings, `joined_room` has exactly the protocol's fields.
#[tokio::test]
async fn without_turn_joined_room_is_unchanged() {
    let edge = TestEdge::start().await;
    let mut client = Client::connect(&edge).await;
    let (own_id, joined) = client.join("plain", json!({})).await;
    assert_eq!(
        joined,
        json!({"event": "joined_room", "own_id": own_id, "peers": []})
    );
}

/// Hosted mode: a tenant with TURN settings of its own mints with its own secret, for the user its
/// token names; a tenant without falls back to the edge's settings. coturn grants both.
#[tokio::test]
async fn tenants_mint_with_their_own_turn_settings_for_the_tokens_user() {
    use common::hosted::{A_ORIGIN, A1, B1, TenantsFile, claims, connect, token, two_tenants};
    let coturn = coturn(&["tenant-a-turn-secret", SECRET]).await;
    let global = secret_file(&coturn, &[SECRET]);
    let url = coturn.url();
    let tenants = two_tenants("").replace(
        "[tenants.a.limits]",
        &format!(
            "[tenants.a.turn]\nurls = [\"{url}\"]\nsecrets = [\"tenant-a-turn-secret\"]\nttl = \"10m\"\n\n[tenants.a.limits]"
        ),
    );
    let file = TenantsFile::new(&tenants);
    let edge = TestEdge::start_with(|c| {
        file.configure(c);
        c.turn_urls = vec![url.clone()];
        c.turn_secret_file = Some(global);
    })
    .await;

    let mut alice = connect(&edge.url(), &token(A1, &claims("alice")), Some(A_ORIGIN)).await;
    let (_, joined) = alice.join("lobby", json!({})).await;
    let (username, password) = credentials(&joined, &url);
    let (expiry, user) = parse_username(&username);
    assert_eq!(user, "alice", "the token's subject is the TURN user");
    assert!((expiry - now()).abs_diff(600) <= 5, "the tenant's ttl");
    let tenant_secret = switchboard_tenants::Secret::new("tenant-a-turn-secret");
    assert_eq!(
        password,
        switchboard_tenants::turn::password(&tenant_secret, &username)
    );
    let granted = allocate(coturn.addr(), &username, &password).await.unwrap();
    assert!(matches!(granted, Allocation::Granted { .. }), "{granted:?}");

    // A subject coturn would not take as a user name: the connection id stands in.
    let mut odd = connect(&edge.url(), &token(B1, &claims("bob smith")), None).await;
    let (odd_id, joined) = odd.join("lobby", json!({})).await;
    let (username, password) = credentials(&joined, &url);
    assert_eq!(parse_username(&username).1, odd_id);
    let global_secret = switchboard_tenants::Secret::new(SECRET);
    assert_eq!(
        password,
        switchboard_tenants::turn::password(&global_secret, &username),
        "tenant b has no TURN settings: the edge's apply"
    );
    let granted = allocate(coturn.addr(), &username, &password).await.unwrap();
    assert!(matches!(granted, Allocation::Granted { .. }), "{granted:?}");
}
