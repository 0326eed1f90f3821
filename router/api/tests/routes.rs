//! Every route of the control API, with each scope: allowed, refused (401, 403, 404), and what the
//! allowed ones do; and the OpenAPI document against the routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use serde_json::Map;
use serde_json::{Value, json};
use switchboard_api::auth::OperatorTokens;
use switchboard_api::service::{
    Audience, BoxFuture, MemberInfo, RoomInfo, RoomService, ServiceError,
};
use switchboard_api::store::FileStore;
use switchboard_api::usage::UsageSource;
use switchboard_api::{Api, Tenants, server};
use switchboard_proto::{ConnId, EdgeId, TenantId};
use switchboard_rooms::{HourlyStats, TenantUsage};
use switchboard_tenants::token::{self, Claims, Grant, Rules};
use switchboard_tenants::{Directory, Key, Secret, Tenant};

const OPERATOR: &str = "Bearer operator-token-0123456789";
const FILED_SECRET: &str = "filed-secret-0123456789abcdef0123456789";

struct Stats;

impl UsageSource for Stats {
    fn hourly(&self) -> BoxFuture<'_, Result<HourlyStats, ServiceError>> {
        Box::pin(async {
            let mut stats = HourlyStats::new(1_000_000);
            let usage = TenantUsage {
                connection_seconds: 42,
                ..TenantUsage::default()
            };
            for tenant in ["acme", "filed"] {
                stats.tenant_usage(10, &TenantId::parse(tenant).unwrap(), &usage);
            }
            Ok(stats)
        })
    }
}

/// A member of every tenant's room `stand up` (a name that needs percent-encoding in a path).
const PEER: &str = "5f0c8e2a-1b3d-4c5e-8f70-123456789abc";

/// A room service with one room, `stand up`, of one member, [`PEER`], in every tenant; the room
/// `failing over` is unavailable. It records what it was asked, as `tenant op room [detail]`.
#[derive(Default)]
struct FakeRooms {
    calls: Mutex<Vec<String>>,
}

impl FakeRooms {
    fn answer(&self, call: String, room: &str) -> Result<(), ServiceError> {
        self.calls.lock().unwrap().push(call);
        match room {
            "stand up" => Ok(()),
            "failing over" => Err(ServiceError::Unavailable),
            _ => Err(ServiceError::NotFound),
        }
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl RoomService for FakeRooms {
    fn rooms(&self, tenant: &TenantId) -> BoxFuture<'_, Result<Vec<RoomInfo>, ServiceError>> {
        let result = self.answer(format!("{tenant} rooms"), "stand up");
        Box::pin(async move {
            result.map(|()| {
                vec![RoomInfo {
                    name: "stand up".into(),
                    members: 1,
                    peak_members: 2,
                    opened_at_ms: 1_700_000_000_500,
                }]
            })
        })
    }

    fn members(
        &self,
        tenant: &TenantId,
        room: &str,
    ) -> BoxFuture<'_, Result<Vec<MemberInfo>, ServiceError>> {
        let result = self.answer(format!("{tenant} members {room}"), room);
        Box::pin(async move {
            result.map(|()| {
                vec![MemberInfo {
                    peer_id: PEER.parse().unwrap(),
                    status: json!({"name": "Alice"}).as_object().cloned().unwrap(),
                    edge: EdgeId(0xabcd),
                    joined_at_ms: 1_700_000_001_999,
                }]
            })
        })
    }

    fn remove_member(
        &self,
        tenant: &TenantId,
        room: &str,
        peer: ConnId,
    ) -> BoxFuture<'_, Result<(), ServiceError>> {
        let mut result = self.answer(format!("{tenant} remove {room} {peer}"), room);
        if peer.to_string() != PEER {
            result = result.and(Err(ServiceError::NotFound));
        }
        Box::pin(async move { result })
    }

    fn close_room(&self, tenant: &TenantId, room: &str) -> BoxFuture<'_, Result<(), ServiceError>> {
        let result = self.answer(format!("{tenant} close {room}"), room);
        Box::pin(async move { result })
    }

    fn send(
        &self,
        tenant: &TenantId,
        room: &str,
        audience: Audience,
        data: Map<String, Value>,
    ) -> BoxFuture<'_, Result<(), ServiceError>> {
        let to = match audience {
            Audience::Room => "room".to_owned(),
            Audience::Member(peer) => peer.to_string(),
        };
        let data = Value::Object(data);
        let result = self.answer(format!("{tenant} send {room} {to} {data}"), room);
        Box::pin(async move { result })
    }
}

struct Fixture {
    api: Api,
    rooms: Arc<FakeRooms>,
    directory: Directory,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("sb-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let directory = Directory::new();
    // A tenant of the tenants file, read-only through the API.
    directory
        .replace(
            switchboard_tenants::watch::SOURCE,
            vec![Tenant {
                id: TenantId::parse("filed").unwrap(),
                keys: vec![Key::hs256("filed-1", Secret::new(FILED_SECRET))],
                limits: Default::default(),
                origins: Default::default(),
                turn: None,
                webhook: None,
            }],
        )
        .unwrap();
    let (store, records) = FileStore::open(dir.join("state.json")).unwrap();
    let tenants = Tenants::new(directory.clone(), Arc::new(store), records).unwrap();
    let rooms = Arc::new(FakeRooms::default());
    Fixture {
        api: Api {
            tenants,
            operators: OperatorTokens::new(["operator-token-0123456789".to_owned()]),
            rules: Rules {
                leeway: 30,
                max_lifetime: 86_400,
            },
            usage: Some(Arc::new(Stats)),
            rooms: Some(rooms.clone()),
        },
        rooms,
        directory,
        dir,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Fixture {
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let response = server::handle(&self.api, request.body(Full::new(body)).unwrap()).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    /// A token signed by `kid` with `grants`.
    fn jwt(&self, kid: &str, grants: Vec<Grant>) -> String {
        let snapshot = self.directory.snapshot();
        let (_, key) = snapshot.key(kid).unwrap();
        let claims = Claims {
            exp: now() + 600,
            grants: Some(grants),
            ..Claims::default()
        };
        format!("Bearer {}", token::mint(key, &claims).unwrap())
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// Creates tenant `id` with one HS256 key; returns the key's id and secret.
async fn onboard(f: &Fixture, id: &str) -> (String, String) {
    let (status, body) = f
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({"id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, key) = f
        .call(
            "POST",
            &format!("/v1/tenants/{id}/keys"),
            Some(OPERATOR),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (
        key["id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

/// The routes as (method, path, body, scope): `operator` only, or `tenant` (the operator or acme
/// itself).
fn routes() -> Vec<(&'static str, &'static str, Option<Value>, &'static str)> {
    vec![
        ("GET", "/v1/tenants", None, "operator"),
        (
            "POST",
            "/v1/tenants",
            Some(json!({"id": "newco"})),
            "operator",
        ),
        ("GET", "/v1/tenants/acme", None, "tenant"),
        (
            "PATCH",
            "/v1/tenants/acme",
            Some(json!({"limits": {"max_rooms": 3}})),
            "operator",
        ),
        ("GET", "/v1/tenants/acme/keys", None, "tenant"),
        (
            "POST",
            "/v1/tenants/acme/keys",
            Some(json!({"id": "acme-extra"})),
            "operator",
        ),
        (
            "POST",
            "/v1/tenants/acme/keys/acme-extra/revoke",
            None,
            "operator",
        ),
        ("GET", "/v1/tenants/acme/usage?from=0", None, "tenant"),
        ("GET", "/v1/tenants/acme/rooms", None, "tenant"),
        ("GET", "/v1/tenants/acme/rooms/stand%20up", None, "tenant"),
        (
            "POST",
            "/v1/tenants/acme/rooms/stand%20up/messages",
            Some(json!({"data": {"text": "hi"}})),
            "tenant",
        ),
        (
            "DELETE",
            "/v1/tenants/acme/rooms/stand%20up/members/5f0c8e2a-1b3d-4c5e-8f70-123456789abc",
            None,
            "tenant",
        ),
        (
            "DELETE",
            "/v1/tenants/acme/rooms/stand%20up",
            None,
            "tenant",
        ),
        (
            "PUT",
            "/v1/tenants/acme/webhook",
            Some(json!({"url": "http://127.0.0.1:9/hooks", "secret": "whsec_0123456789abcdef"})),
            "operator",
        ),
        ("DELETE", "/v1/tenants/acme/webhook", None, "operator"),
        ("DELETE", "/v1/tenants/acme", None, "operator"),
    ]
}

#[tokio::test]
async fn every_route_refuses_the_wrong_scope_and_serves_the_right_one() {
    let f = fixture("scopes");
    let (acme_key, acme_secret) = onboard(&f, "acme").await;
    let (globex_key, globex_secret) = onboard(&f, "globex").await;
    let acme_admin = f.jwt(&acme_key, vec![Grant::Admin]);
    let acme_join = f.jwt(&acme_key, vec![Grant::Join, Grant::Send]);
    let globex_admin = f.jwt(&globex_key, vec![Grant::Admin]);
    let acme_pair = basic(&acme_key, &acme_secret);
    let globex_pair = basic(&globex_key, &globex_secret);

    for (method, path, body, scope) in routes() {
        let what = format!("{method} {path}");
        for auth in [
            None,
            Some("Bearer wrong-operator-token-0123"),
            Some("Basic bm90LWEta2V5Ondyb25n"),
            Some("Digest abc"),
        ] {
            let (status, error) = f.call(method, path, auth, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} with {auth:?}");
            assert!(error["error"].is_string(), "{what}: {error}");
        }
        let (status, _) = f.call(method, path, Some(&acme_join), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{what}: a join token has no admin grant"
        );
        if scope == "operator" {
            for tenant in [&acme_admin, &acme_pair] {
                let (status, error) = f.call(method, path, Some(tenant), body.clone()).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {error}");
                assert_eq!(error["error"], "operator scope required");
            }
        } else {
            for other in [&globex_admin, &globex_pair] {
                let (status, _) = f.call(method, path, Some(other), body.clone()).await;
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{what}: another tenant's is not found"
                );
            }
            for own in [&acme_admin, &acme_pair] {
                let (status, body) = f.call(method, path, Some(own), body.clone()).await;
                assert!(status.is_success(), "{what}: {status} {body}");
            }
        }
        let (status, answer) = f.call(method, path, Some(OPERATOR), body.clone()).await;
        assert!(status.is_success(), "{what}: {status} {answer}");
    }
    // The last route deleted acme: its credentials are gone with it.
    let (status, _) = f
        .call("GET", "/v1/tenants/acme", Some(&acme_pair), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f
        .call("GET", "/v1/tenants/acme", Some(OPERATOR), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenants_and_keys_at_runtime() {
    let f = fixture("runtime");
    let (key, secret) = onboard(&f, "acme").await;
    assert!(secret.len() >= 32);

    // The secret is shown once: no later answer carries it.
    let (_, tenant) = f
        .call("GET", "/v1/tenants/acme", Some(OPERATOR), None)
        .await;
    assert!(!tenant.to_string().contains(&secret));
    assert_eq!(tenant["source"], "api");
    assert_eq!(tenant["keys"][0]["id"], key.as_str());

    // Limits, origins, TURN settings.
    let (status, tenant) = f
        .call(
            "PATCH",
            "/v1/tenants/acme",
            Some(OPERATOR),
            Some(json!({
                "limits": {"max_connections": 5},
                "allowed_origins": ["https://app.acme.test"],
                "turn": {"urls": ["turn:turn.acme.test:3478"], "secrets": ["turn-secret"], "ttl_seconds": 3600}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["limits"]["max_connections"], 5);
    assert_eq!(
        tenant["turn"]["secrets"], 1,
        "TURN secrets are counted, not shown"
    );
    let acme = TenantId::parse("acme").unwrap();
    let snapshot = f.directory.snapshot();
    let in_force = snapshot.tenant(&acme).unwrap();
    assert_eq!(in_force.limits.max_connections, 5);
    assert!(in_force.origins.check(Some("https://evil.test")).is_err());
    let (_, tenant) = f
        .call(
            "PATCH",
            "/v1/tenants/acme",
            Some(OPERATOR),
            Some(json!({"turn": null})),
        )
        .await;
    assert_eq!(tenant["turn"], Value::Null);

    // Bad input is 400 with a reason; duplicates and the tenants file's entries are 409.
    for (method, path, body) in [
        ("POST", "/v1/tenants", json!({"id": "no spaces"})),
        (
            "POST",
            "/v1/tenants",
            json!({"id": "x", "limits": {"max_rooms": -1}}),
        ),
        (
            "POST",
            "/v1/tenants",
            json!({"id": "x", "allowed_origins": ["https://a.test/"]}),
        ),
        ("POST", "/v1/tenants", json!({"id": "x", "unknown": 1})),
        (
            "POST",
            "/v1/tenants/acme/keys",
            json!({"algorithm": "EdDSA", "public_key": "nope"}),
        ),
        (
            "POST",
            "/v1/tenants/acme/keys",
            json!({"algorithm": "HS256", "public_key": "x"}),
        ),
    ] {
        let (status, error) = f
            .call(method, path, Some(OPERATOR), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
    }
    let (status, _) = f
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({"id": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = f
        .call(
            "POST",
            "/v1/tenants/acme/keys",
            Some(OPERATOR),
            Some(json!({"id": "filed-1"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "key ids are unique over all tenants"
    );
    for (method, path) in [
        ("PATCH", "/v1/tenants/filed"),
        ("DELETE", "/v1/tenants/filed"),
        ("POST", "/v1/tenants/filed/keys"),
        ("POST", "/v1/tenants/filed/keys/filed-1/revoke"),
    ] {
        let (status, error) = f.call(method, path, Some(OPERATOR), Some(json!({}))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {path}");
        assert!(
            error["error"].as_str().unwrap().contains("tenants file"),
            "{error}"
        );
    }
    let (_, list) = f.call("GET", "/v1/tenants", Some(OPERATOR), None).await;
    let ids: Vec<&str> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "filed"]);
    assert_eq!(list["tenants"][1]["source"], "tenants_file");
    // A file tenant may use the API for itself, read-only.
    let (status, _) = f
        .call(
            "GET",
            "/v1/tenants/filed/usage",
            Some(&basic("filed-1", FILED_SECRET)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A public key.
    let (status, created) = f
        .call(
            "POST",
            "/v1/tenants/acme/keys",
            Some(OPERATOR),
            Some(json!({"id": "acme-ed", "algorithm": "EdDSA", "public_key":
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAhZiR3RAqGd3QMjXtzG/EsrgUHorHkREYQnwaqX9RCKY=\n-----END PUBLIC KEY-----\n"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["secret"], Value::Null);

    // Revoking: the key pair stops working at once.
    let pair = basic(&key, &secret);
    assert_eq!(
        f.call("GET", "/v1/tenants/acme", Some(&pair), None).await.0,
        StatusCode::OK
    );
    let (status, revoked) = f
        .call(
            "POST",
            &format!("/v1/tenants/acme/keys/{key}/revoke"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(
        (status, &revoked["revoked"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(
        f.call("GET", "/v1/tenants/acme", Some(&pair), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(f.directory.snapshot().key(&key).unwrap().1.revoked);
    let (status, _) = f
        .call(
            "POST",
            "/v1/tenants/acme/keys/nope/revoke",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Everything survives a restart (the state file), and the file's own tenant is not in it.
    let (store, records) = FileStore::open(f.dir.join("state.json")).unwrap();
    assert_eq!(
        records.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["acme"]
    );
    let directory = Directory::new();
    Tenants::new(directory.clone(), Arc::new(store), records).unwrap();
    let snapshot = directory.snapshot();
    assert_eq!(snapshot.tenant(&acme).unwrap().limits.max_connections, 5);
    assert!(snapshot.key(&key).unwrap().1.revoked);
    assert!(snapshot.key("acme-ed").is_some());
}

#[tokio::test]
async fn usage_errors_and_limits() {
    let f = fixture("usage");
    let (status, usage) = f
        .call(
            "GET",
            "/v1/tenants/filed/usage?from=0&to=1970-01-01T11:00:00Z",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage["hours"][0]["hour"], 10);
    assert_eq!(usage["hours"][0]["connection_seconds"], 42);
    assert_eq!(usage["hours"][0]["start"], "1970-01-01T10:00:00Z");
    let (status, usage) = f
        .call(
            "GET",
            "/v1/tenants/filed/usage?from=0&to=36000",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(
        (status, usage["hours"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (status, _) = f
        .call(
            "GET",
            "/v1/tenants/filed/usage?from=soon",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Unknown paths and methods, for anyone; bodies too large or not JSON.
    assert_eq!(
        f.call("GET", "/v2/tenants", Some(OPERATOR), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.call("GET", "/v1/nothing", None, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.call("PUT", "/v1/tenants", None, None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let huge = json!({"id": "x", "allowed_origins": vec!["https://a.test"; 10_000]});
    let (status, error) = f
        .call("POST", "/v1/tenants", Some(OPERATOR), Some(huge))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    let (status, error) = f.call("POST", "/v1/tenants", Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes() {
    let f = fixture("openapi");
    let (status, doc) = f.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mut served = BTreeSet::from([("GET".to_owned(), "/v1/openapi.json".to_owned())]);
    for (method, path, _, _) in routes() {
        let path = path.split('?').next().unwrap();
        let templated = path
            .replace("/acme-extra/", "/{key}/")
            .replace("/acme", "/{id}")
            .replace("/stand%20up", "/{room}")
            .replace(PEER, "{peer_id}");
        served.insert((method.to_owned(), templated));
    }
    assert_eq!(documented, served);
    // And each documented path answers (not 404) with each documented method, 405 with others.
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "acme")
            .replace("{key}", "k")
            .replace("{room}", "r")
            .replace("{peer_id}", PEER);
        let (status, _) = f.call(method, &concrete, None, None).await;
        assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
}

#[tokio::test]
async fn rooms_members_and_messages() {
    let f = fixture("rooms");
    let (status, listed) = f
        .call("GET", "/v1/tenants/filed/rooms", Some(OPERATOR), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed,
        json!({"rooms": [{"name": "stand up", "members": 1, "peak_members": 2,
                          "opened_at": 1_700_000_000}]})
    );
    // Names are percent-decoded, `+` included as itself (a path is not a query).
    let (status, room) = f
        .call(
            "GET",
            "/v1/tenants/filed/rooms/stand%20up",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        room,
        json!({"name": "stand up", "members": [{"peer_id": PEER, "status": {"name": "Alice"},
               "edge": "0000abcd", "joined_at": 1_700_000_001}]})
    );
    f.rooms.calls();
    for (path, call) in [
        ("/v1/tenants/filed/rooms/a+b", "filed members a+b"),
        ("/v1/tenants/filed/rooms/caf%C3%A9", "filed members café"),
    ] {
        let (status, _) = f.call("GET", path, Some(OPERATOR), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(f.rooms.calls(), [call]);
    }
    let (status, _) = f
        .call("GET", "/v1/tenants/filed/rooms/%FF", Some(OPERATOR), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not UTF-8: no room");
    let (status, error) = f
        .call(
            "GET",
            "/v1/tenants/filed/rooms/failing%20over",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["error"], "room service unavailable, try again");
    f.rooms.calls();

    // A member: one that is not there, and a path that is no peer id (not asked at all).
    let member = format!("/v1/tenants/filed/rooms/stand%20up/members/{PEER}");
    let (status, _) = f.call("DELETE", &member, Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let other = member.replace("abc", "abd");
    let (status, _) = f.call("DELETE", &other, Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f
        .call(
            "DELETE",
            "/v1/tenants/filed/rooms/stand%20up/members/alice",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        f.rooms.calls(),
        [
            format!("filed remove stand up {PEER}"),
            format!("filed remove stand up {}", &other[other.len() - 36..]),
        ]
    );

    // Messages: to the room, to one member; bad bodies are 400 and reach no room.
    let messages = "/v1/tenants/filed/rooms/stand%20up/messages";
    let (status, _) = f
        .call(
            "POST",
            messages,
            Some(OPERATOR),
            Some(json!({"data": {"n": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f
        .call(
            "POST",
            messages,
            Some(OPERATOR),
            Some(json!({"data": {"n": 2}, "to": PEER})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        f.rooms.calls(),
        [
            r#"filed send stand up room {"n":1}"#.to_owned(),
            format!(r#"filed send stand up {PEER} {{"n":2}}"#),
        ]
    );
    let deep = (0..40).fold(json!({}), |inner, _| json!({ "a": inner }));
    for body in [
        json!({"data": "text"}),
        json!({"data": {}, "to": "alice"}),
        json!({"to": PEER}),
        json!({"data": deep}),
        json!({"data": {"text": "x".repeat(40 * 1024)}}),
    ] {
        let (status, error) = f.call("POST", messages, Some(OPERATOR), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    }
    assert!(f.rooms.calls().is_empty());
    let (status, _) = f
        .call(
            "POST",
            "/v1/tenants/filed/rooms/nowhere/messages",
            Some(OPERATOR),
            Some(json!({"data": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A tenant that does not exist has no rooms; neither does an API without a room service.
    let (status, _) = f
        .call("GET", "/v1/tenants/nobody/rooms", Some(OPERATOR), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut f = f;
    f.api.rooms = None;
    let (status, error) = f
        .call("GET", "/v1/tenants/filed/rooms", Some(OPERATOR), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        error["error"].as_str().unwrap().contains("not served here"),
        "{error}"
    );
}

#[tokio::test]
async fn a_webhook_is_set_checked_shown_without_its_secret_and_removed() {
    let f = fixture("webhook");
    onboard(&f, "acme").await;
    let secret = "whsec_write_only_0123456789";
    let (status, view) = f
        .call(
            "PUT",
            "/v1/tenants/acme/webhook",
            Some(OPERATOR),
            Some(json!({"url": "http://hooks.acme.test:8080/sb", "secret": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        view["webhook"],
        json!({"url": "http://hooks.acme.test:8080/sb"})
    );
    let (_, shown) = f
        .call("GET", "/v1/tenants/acme", Some(OPERATOR), None)
        .await;
    let (_, listed) = f.call("GET", "/v1/tenants", Some(OPERATOR), None).await;
    for answer in [&view, &shown, &listed] {
        assert!(!answer.to_string().contains(secret), "{answer}");
    }
    assert_eq!(shown["webhook"]["url"], "http://hooks.acme.test:8080/sb");
    // The directory serves it to the delivery engine.
    let acme = switchboard_proto::TenantId::parse("acme").unwrap();
    let snapshot = f.directory.snapshot();
    let in_force = snapshot.tenant(&acme).unwrap().webhook.clone().unwrap();
    assert_eq!(in_force.secret, secret);

    for (body, want) in [
        (
            json!({"url": "ftp://hooks.acme.test/sb", "secret": secret}),
            "must start with https:// or http://",
        ),
        (
            json!({"url": "http://hooks.acme.test/sb", "secret": "short"}),
            "16 bytes",
        ),
        (json!({"url": "not a url", "secret": secret}), "valid URL"),
        (json!({"url": "http://hooks.acme.test/sb"}), "secret"),
    ] {
        let (status, error) = f
            .call(
                "PUT",
                "/v1/tenants/acme/webhook",
                Some(OPERATOR),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(error["error"].as_str().unwrap().contains(want), "{error}");
    }
    // HTTPS is taken, and delivered to (tests/webhooks.rs).
    let (status, view) = f
        .call(
            "PUT",
            "/v1/tenants/acme/webhook",
            Some(OPERATOR),
            Some(json!({"url": "https://hooks.acme.test/sb", "secret": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        view["webhook"],
        json!({"url": "https://hooks.acme.test/sb"})
    );
    let in_force = f
        .directory
        .snapshot()
        .tenant(&acme)
        .unwrap()
        .webhook
        .clone()
        .unwrap();
    assert_eq!(in_force.url, "https://hooks.acme.test/sb");
    let (status, _) = f
        .call(
            "PUT",
            "/v1/tenants/nobody/webhook",
            Some(OPERATOR),
            Some(json!({"url": "http://h/", "secret": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = f
        .call("DELETE", "/v1/tenants/acme/webhook", Some(OPERATOR), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, shown) = f
        .call("GET", "/v1/tenants/acme", Some(OPERATOR), None)
        .await;
    assert_eq!(shown["webhook"], Value::Null);
    assert!(
        f.directory
            .snapshot()
            .tenant(&acme)
            .unwrap()
            .webhook
            .is_none()
    );
}
