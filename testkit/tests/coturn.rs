//! Credentials minted by `switchboard_tenants` against a real coturn: what coturn grants and what it
//! refuses, as a browser would find out. These also prove the harness: a refusal is only reported
//! when coturn answered, and coturn's own log names the refused username.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_tenants::turn::password;
use switchboard_tenants::{Secret, TurnCredentials, TurnSettings};
use switchboard_testkit::Coturn;
use switchboard_testkit::coturn::{Allocation, allocate};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn settings(secrets: &[&str], coturn: &Coturn) -> TurnSettings {
    let settings = TurnSettings {
        urls: vec![coturn.url()],
        secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        ttl: Duration::from_secs(600),
    };
    settings.validate().unwrap();
    settings
}

async fn allocate_with(coturn: &Coturn, credentials: &TurnCredentials) -> Allocation {
    allocate(coturn.addr(), &credentials.username, &credentials.password)
        .await
        .unwrap()
}

/// Refused, and by coturn's authentication: its log names the username.
async fn assert_refused(coturn: &Coturn, username: &str, password: &str) {
    let outcome = allocate(coturn.addr(), username, password).await.unwrap();
    assert!(
        matches!(outcome, Allocation::Refused { .. }),
        "{username}: {outcome:?}"
    );
    let log = coturn.log();
    assert!(
        log.lines()
            .any(|line| line.contains("check_stun_auth") && line.contains(username)),
        "coturn logged no refusal of {username}:\n{log}"
    );
}

#[tokio::test]
async fn fresh_credentials_get_a_relay() {
    let coturn = Coturn::start(&["fresh-secret"]).await.unwrap();
    let credentials = settings(&["fresh-secret"], &coturn)
        .mint("alice", now())
        .unwrap();
    match allocate_with(&coturn, &credentials).await {
        Allocation::Granted { relay } => assert!(relay.ip().is_loopback(), "{relay}"),
        refused => panic!("fresh credentials refused: {refused:?}"),
    }
}

#[tokio::test]
async fn expired_credentials_are_refused() {
    let coturn = Coturn::start(&["expiry-secret"]).await.unwrap();
    // Minted long enough ago that they expired 10 s before now.
    let credentials = settings(&["expiry-secret"], &coturn)
        .mint("alice", now() - 610)
        .unwrap();
    assert!(credentials.expires_at < now());
    assert_refused(&coturn, &credentials.username, &credentials.password).await;
}

#[tokio::test]
async fn forged_passwords_are_refused() {
    let coturn = Coturn::start(&["forgery-secret"]).await.unwrap();
    let secret = Secret::new("forgery-secret");
    let credentials = settings(&["forgery-secret"], &coturn)
        .mint("alice", now())
        .unwrap();
    // A later expiry, with the password of the genuine username.
    let stretched = format!("{}:alice", credentials.expires_at + 86_400);
    assert_refused(&coturn, &stretched, &credentials.password).await;
    // Another user, with alice's password.
    let bob = format!("{}:bob", credentials.expires_at);
    assert_refused(&coturn, &bob, &credentials.password).await;
    // A plausible password that is not the HMAC.
    let guessed = password(&secret, "someone else");
    assert_refused(&coturn, &credentials.username, &guessed).await;
}

#[tokio::test]
async fn credentials_of_an_unknown_secret_are_refused() {
    let coturn = Coturn::start(&["known-secret"]).await.unwrap();
    let credentials = settings(&["unknown-secret"], &coturn)
        .mint("alice", now())
        .unwrap();
    assert_refused(&coturn, &credentials.username, &credentials.password).await;
}

/// Rotation: coturn lists the new secret and the old one; credentials minted with either are
/// good, so edges can move to the new secret one by one.
#[tokio::test]
async fn every_secret_coturn_lists_is_accepted() {
    let coturn = Coturn::start(&["new-secret", "old-secret"]).await.unwrap();
    let rotated = settings(&["new-secret", "old-secret"], &coturn);
    let not_yet = settings(&["old-secret"], &coturn);
    let (alice, bob) = (
        rotated.mint("alice", now()).unwrap(),
        not_yet.mint("bob", now()).unwrap(),
    );
    let (first, second) =
        tokio::join!(allocate_with(&coturn, &alice), allocate_with(&coturn, &bob));
    assert!(matches!(first, Allocation::Granted { .. }), "{first:?}");
    assert!(matches!(second, Allocation::Granted { .. }), "{second:?}");
    let retired = settings(&["retired-secret"], &coturn)
        .mint("carol", now())
        .unwrap();
    assert_refused(&coturn, &retired.username, &retired.password).await;
}

/// A server that is not there is an error, never a refusal: tests of refused credentials cannot
/// pass against a dead server.
#[tokio::test]
async fn no_server_is_an_error_not_a_refusal() {
    let coturn = Coturn::start(&["short-lived"]).await.unwrap();
    let addr = coturn.addr();
    drop(coturn);
    let outcome = allocate(addr, "1:alice", "x").await;
    assert!(outcome.is_err(), "{outcome:?}");
}
