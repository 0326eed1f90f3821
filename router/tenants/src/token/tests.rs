use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_proto::TenantId;

use super::*;
use crate::tenant::{Limits, Origins};
use crate::{Directory, Secret};

const NOW: u64 = 1_800_000_000;
const RULES: Rules = Rules {
    leeway: 30,
    max_lifetime: 86_400,
};
const SECRET_A: &str = "tenant-a-secret-0123456789abcdef!!";
const SECRET_B: &str = "tenant-b-secret-0123456789abcdef!!";

fn ed_public() -> &'static str {
    include_str!("../../testdata/ed25519-public.pem")
}
fn ed_private() -> &'static str {
    include_str!("../../testdata/ed25519-private.pem")
}

fn directory() -> Arc<Snapshot> {
    let tenant = |id: &str, keys: Vec<Key>| Tenant {
        id: TenantId::parse(id).unwrap(),
        keys,
        limits: Limits::default(),
        origins: Origins::default(),
        turn: None,
        webhook: None,
    };
    let mut revoked = Key::hs256("a-old", Secret::new(SECRET_A));
    revoked.revoked = true;
    let directory = Directory::new();
    directory
        .replace(
            "test",
            vec![
                tenant(
                    "a",
                    vec![
                        Key::hs256("a1", Secret::new(SECRET_A)),
                        revoked,
                        Key::public("a-ed", Algorithm::EdDSA, ed_public()).unwrap(),
                        Key::public(
                            "a-es",
                            Algorithm::ES256,
                            include_str!("../../testdata/p256-public.pem"),
                        )
                        .unwrap(),
                    ],
                ),
                tenant("b", vec![Key::hs256("b1", Secret::new(SECRET_B))]),
            ],
        )
        .unwrap();
    directory.snapshot()
}

fn claims() -> Claims {
    Claims {
        exp: NOW + 3600,
        iat: Some(NOW),
        sub: Some("alice".into()),
        room: Some("lobby".into()),
        name: Some("Alice".into()),
        ..Claims::default()
    }
}

fn sign(kid: &str, secret: &str, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn check(token: &str) -> Result<Session, TokenError> {
    verify(&directory(), token, RULES, NOW)
}

#[test]
fn a_valid_token_names_its_tenant_and_claims() {
    let snapshot = directory();
    let (_, key) = snapshot.key("a1").unwrap();
    let session = check(&mint(key, &claims()).unwrap()).unwrap();
    assert_eq!(session.tenant.id.as_str(), "a");
    assert_eq!(session.key_id, "a1");
    assert_eq!(session.subject.as_deref(), Some("alice"));
    assert_eq!(session.room.as_deref(), Some("lobby"));
    assert_eq!(session.name.as_deref(), Some("Alice"));
    assert!(session.may_join && session.may_send);
    assert_eq!(session.expires_at, NOW + 3600);
}

#[test]
fn public_keys_verify_tokens_signed_with_their_private_keys() {
    let snapshot = directory();
    let (_, ed) = snapshot.key("a-ed").unwrap();
    let token = mint_with_private_key(ed, ed_private(), &claims()).unwrap();
    assert_eq!(check(&token).unwrap().tenant.id.as_str(), "a");
    let (_, es) = snapshot.key("a-es").unwrap();
    let token = mint_with_private_key(
        es,
        include_str!("../../testdata/p256-private.pem"),
        &claims(),
    )
    .unwrap();
    assert_eq!(check(&token).unwrap().key_id, "a-es");
    assert!(matches!(mint(ed, &claims()), Err(MintError::PublicKey(_))));
}

#[test]
fn expiry_and_lifetime() {
    let at = |exp: u64, nbf: Option<u64>| {
        check(&sign(
            "a1",
            SECRET_A,
            &Claims {
                exp,
                nbf,
                ..claims()
            },
        ))
        .map(|_| ())
    };
    assert_eq!(at(NOW - 31, None), Err(TokenError::Expired));
    assert_eq!(at(NOW - 29, None), Ok(()), "within the leeway");
    assert_eq!(at(NOW + 60, Some(NOW + 31)), Err(TokenError::NotYetValid));
    assert_eq!(at(NOW + 60, Some(NOW + 29)), Ok(()));
    assert_eq!(
        at(NOW + 86_400 + 31, None),
        Err(TokenError::LifetimeTooLong)
    );
    assert_eq!(at(NOW + 86_400, None), Ok(()));
    // `exp` is required.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("a1".into());
    let token = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": "x"}),
        &EncodingKey::from_secret(SECRET_A.as_bytes()),
    )
    .unwrap();
    assert_eq!(check(&token).map(|_| ()), Err(TokenError::Invalid));
}

#[test]
fn forgeries_are_refused() {
    // Signed with tenant b's secret but naming tenant a's key.
    assert_eq!(
        check(&sign("a1", SECRET_B, &claims())).map(|_| ()),
        Err(TokenError::Invalid)
    );
    // Tenant b's key, claiming to be tenant a.
    let wrong_tenant = Claims {
        tenant: Some("a".into()),
        ..claims()
    };
    assert_eq!(
        check(&sign("b1", SECRET_B, &wrong_tenant)).map(|_| ()),
        Err(TokenError::Invalid)
    );
    let right_tenant = Claims {
        tenant: Some("b".into()),
        ..claims()
    };
    assert!(check(&sign("b1", SECRET_B, &right_tenant)).is_ok());
    // alg: none, unsigned.
    let part = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let payload = part(serde_json::to_value(claims()).unwrap());
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{payload}.",
            part(serde_json::json!({"alg": alg, "kid": "a1"}))
        );
        assert_eq!(check(&token).map(|_| ()), Err(TokenError::Invalid), "{alg}");
    }
    // Algorithm confusion: HS256 "signed" with the Ed25519 public key's PEM as the secret.
    assert_eq!(
        check(&sign("a-ed", ed_public(), &claims())).map(|_| ()),
        Err(TokenError::Invalid)
    );
    // A tampered payload.
    let token = sign("a1", SECRET_A, &claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let tampered = part(
        serde_json::to_value(Claims {
            room: Some("other".into()),
            ..claims()
        })
        .unwrap(),
    );
    parts[1] = &tampered;
    assert_eq!(
        check(&parts.join(".")).map(|_| ()),
        Err(TokenError::Invalid)
    );
    for garbage in ["x", "a.b.c", "Bearer x", "..."] {
        assert_eq!(
            check(garbage).map(|_| ()),
            Err(TokenError::Invalid),
            "{garbage}"
        );
    }
    assert_eq!(check("").map(|_| ()), Err(TokenError::Missing));
}

#[test]
fn keys_unknown_missing_or_revoked() {
    assert_eq!(
        check(&sign("nope", SECRET_A, &claims())).map(|_| ()),
        Err(TokenError::UnknownKey)
    );
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET_A.as_bytes()),
    )
    .unwrap();
    assert_eq!(check(&no_kid).map(|_| ()), Err(TokenError::UnknownKey));
    assert_eq!(
        check(&sign("a-old", SECRET_A, &claims())).map(|_| ()),
        Err(TokenError::KeyRevoked)
    );
}

#[test]
fn grants_and_rooms() {
    let with = |grants: serde_json::Value| {
        let mut value = serde_json::to_value(claims()).unwrap();
        value["grants"] = grants;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a1".into());
        let token = jsonwebtoken::encode(
            &header,
            &value,
            &EncodingKey::from_secret(SECRET_A.as_bytes()),
        )
        .unwrap();
        check(&token).map(|s| (s.may_join, s.may_send))
    };
    assert_eq!(with(serde_json::json!(["join"])), Ok((true, false)));
    assert_eq!(
        with(serde_json::json!(["send", "publish"])),
        Ok((false, true))
    );
    assert_eq!(with(serde_json::json!([])), Ok((false, false)));
    assert_eq!(with(serde_json::json!("join")), Err(TokenError::Invalid));
    let long_room = Claims {
        room: Some("x".repeat(51)),
        ..claims()
    };
    assert_eq!(
        check(&sign("a1", SECRET_A, &long_room)).map(|_| ()),
        Err(TokenError::Invalid)
    );
}
