//! The API's HTTP server: routing, authentication, JSON in and out.
//!
//! Routes (docs/api.md; `openapi.json` is their contract, and the tests check the two agree):
//!
//! | method | path | scope |
//! |---|---|---|
//! | GET | `/v1/openapi.json` | none |
//! | GET, POST | `/v1/tenants` | operator |
//! | GET | `/v1/tenants/{id}` | operator, the tenant |
//! | PATCH, DELETE | `/v1/tenants/{id}` | operator |
//! | GET | `/v1/tenants/{id}/keys` | operator, the tenant |
//! | POST | `/v1/tenants/{id}/keys` | operator |
//! | POST | `/v1/tenants/{id}/keys/{key}/revoke` | operator |
//! | GET | `/v1/tenants/{id}/usage` | operator, the tenant |
//! | GET | `/v1/tenants/{id}/rooms` | operator, the tenant |
//! | GET, DELETE | `/v1/tenants/{id}/rooms/{room}` | operator, the tenant |
//! | DELETE | `/v1/tenants/{id}/rooms/{room}/members/{peer_id}` | operator, the tenant |
//! | POST | `/v1/tenants/{id}/rooms/{room}/messages` | operator, the tenant |
//! | PUT, DELETE | `/v1/tenants/{id}/webhook` | operator |
//!
//! A tenant cannot set its own webhook: the URL is an address the server POSTs to from inside the
//! operator's network, which only the operator may choose (a tenant could otherwise aim requests at
//! internal services).

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use switchboard_proto::TenantId;
use switchboard_runtime::http::{self, Body, Encoded};
use switchboard_tenants::token::Rules;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::{self, OperatorTokens, Scope};
use crate::error::ApiError;
use crate::rooms;
use crate::service::RoomService;
use crate::tenants::Tenants;
use crate::usage::{self, UsageSource};

/// The OpenAPI 3 document of these routes.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Largest request body taken: tenants and keys are small (a PEM public key is well under 1 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the API serves from.
pub struct Api {
    /// The tenants and keys.
    pub tenants: Tenants,
    /// The operator's tokens.
    pub operators: OperatorTokens,
    /// Checks of tenant JWTs (the edge's `--token-leeway` and `--token-max-lifetime`).
    pub rules: Rules,
    /// The hourly statistics; `None`: the usage route answers 503.
    pub usage: Option<Arc<dyn UsageSource>>,
    /// The tenants' rooms; `None` (a clustered edge, whose routers serve the rooms): the room
    /// routes answer 503.
    pub rooms: Option<Arc<dyn RoomService>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("operators", &self.operators)
            .finish_non_exhaustive()
    }
}

/// Serves the API on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    api: Arc<Api>,
    io_timeout: Duration,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(api_listen = %addr, "control API serving");
    }
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let (api, stop) = (api.clone(), stop.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(handle(&api, request).await) }
                    });
                    let connection =
                        http::builder(io_timeout).serve_connection(TokioIo::new(stream), service);
                    let connection = pin!(connection);
                    tokio::select! {
                        result = connection => {
                            if let Err(e) = result {
                                debug!(error = %e, "API connection ended with an error");
                            }
                        }
                        () = stop.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "control API: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Answers one request.
pub async fn handle<B>(api: &Api, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match route(api, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

/// The JSON answer of an error.
fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json_with(
        error.status(),
        &serde_json::json!({ "error": error.to_string() }),
    );
    match error {
        ApiError::Unauthorized(_) => {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, Basic realm=\"switchboard\""),
            );
        }
        ApiError::MethodNotAllowed(allow) => {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        _ => {}
    }
    response
}

fn json_with<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut response = http::json(value);
    *response.status_mut() = status;
    response
}

fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The routes: the path's segments pick the route, then its methods.
async fn route<B>(api: &Api, request: Request<B>) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path
        .strip_prefix("/v1/")
        .ok_or(ApiError::NotFound)?
        .split('/')
        .collect();
    let method = parts.method.clone();
    let now = unix_now();
    // The route is known (or not) before the credentials are looked at: an unknown path is 404
    // and a wrong method 405 for everyone, which tells nothing about tenants.
    let allow = match segments.as_slice() {
        ["openapi.json"] => "GET",
        ["tenants"] => "GET, POST",
        ["tenants", _] => "GET, PATCH, DELETE",
        ["tenants", _, "keys"] => "GET, POST",
        ["tenants", _, "keys", _, "revoke"] => "POST",
        ["tenants", _, "usage"] => "GET",
        ["tenants", _, "rooms"] => "GET",
        ["tenants", _, "rooms", _] => "GET, DELETE",
        ["tenants", _, "rooms", _, "members", _] => "DELETE",
        ["tenants", _, "rooms", _, "messages"] => "POST",
        ["tenants", _, "webhook"] => "PUT, DELETE",
        _ => return Err(ApiError::NotFound),
    };
    if !allow.split(", ").any(|m| m == method.as_str()) {
        return Err(ApiError::MethodNotAllowed(allow));
    }
    if segments == ["openapi.json"] {
        let mut response = Response::new(Body::from(OPENAPI));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    let scope = auth::authenticate(
        &parts.headers,
        &api.operators,
        &api.tenants.directory().snapshot(),
        api.rules,
        now,
    )?;
    let tenants = &api.tenants;
    match (segments.as_slice(), method) {
        (["tenants"], Method::GET) => {
            scope.operator()?;
            Ok(http::json(
                &serde_json::json!({ "tenants": tenants.list() }),
            ))
        }
        (["tenants"], _) => {
            scope.operator()?;
            let body = read_json(body).await?;
            let view = tenants.create(body, now).await?;
            info!(tenant = %view.id, "control API: tenant created");
            Ok(json_with(StatusCode::CREATED, &view))
        }
        (["tenants", id], Method::GET) => {
            let id = visible(&scope, id)?;
            Ok(http::json(&tenants.get(&id)?))
        }
        (["tenants", id], Method::PATCH) => {
            let id = tenant_id(id)?;
            scope.operator()?;
            let body = read_json(body).await?;
            let view = tenants.update(&id, body).await?;
            info!(tenant = %id, "control API: tenant updated");
            Ok(http::json(&view))
        }
        (["tenants", id], _) => {
            let id = tenant_id(id)?;
            scope.operator()?;
            tenants.delete(&id).await?;
            info!(tenant = %id, "control API: tenant deleted");
            Ok(no_content())
        }
        (["tenants", id, "keys"], Method::GET) => {
            let id = visible(&scope, id)?;
            Ok(http::json(
                &serde_json::json!({ "keys": tenants.get(&id)?.keys }),
            ))
        }
        (["tenants", id, "keys"], _) => {
            let id = tenant_id(id)?;
            scope.operator()?;
            let body = read_json(body).await?;
            let created = tenants.create_key(&id, body, now).await?;
            info!(tenant = %id, key = %created.key.id, "control API: key created");
            Ok(json_with(StatusCode::CREATED, &created))
        }
        (["tenants", id, "keys", key, "revoke"], _) => {
            let id = tenant_id(id)?;
            scope.operator()?;
            let key = percent_decode(key);
            let view = tenants.revoke_key(&id, &key).await?;
            info!(tenant = %id, key = %view.id, "control API: key revoked");
            Ok(http::json(&view))
        }
        (["tenants", id, "webhook"], Method::PUT) => {
            let id = tenant_id(id)?;
            scope.operator()?;
            let body = read_json(body).await?;
            let view = tenants.set_webhook(&id, body).await?;
            info!(tenant = %id, "control API: webhook set");
            Ok(http::json(&view))
        }
        (["tenants", id, "webhook"], _) => {
            let id = tenant_id(id)?;
            scope.operator()?;
            tenants.remove_webhook(&id).await?;
            info!(tenant = %id, "control API: webhook removed");
            Ok(no_content())
        }
        (["tenants", id, "usage"], _) => {
            let id = visible(&scope, id)?;
            // A tenant that no longer exists still has its past usage: no check against the
            // directory here, only against the scope.
            let (from, to) = usage::range(parts.uri.query(), now)?;
            let source = api
                .usage
                .as_ref()
                .ok_or(ApiError::Unavailable("usage is not kept here"))?;
            let stats = source.hourly().await?;
            Ok(http::json(&usage::report(&stats, &id, from, to)))
        }
        (["tenants", id, "rooms"], _) => {
            let id = existing(api, &scope, id)?;
            let service = rooms::service(api.rooms.as_deref())?;
            Ok(http::json(&rooms::list(service, &id).await?))
        }
        (["tenants", id, "rooms", room], Method::GET) => {
            let (id, room) = (existing(api, &scope, id)?, room_name(room)?);
            let service = rooms::service(api.rooms.as_deref())?;
            Ok(http::json(&rooms::get(service, &id, &room).await?))
        }
        (["tenants", id, "rooms", room], _) => {
            let (id, room) = (existing(api, &scope, id)?, room_name(room)?);
            let service = rooms::service(api.rooms.as_deref())?;
            service.close_room(&id, &room).await?;
            // Never the room's name: room names stay out of logs (docs/protocol.md).
            info!(tenant = %id, "control API: room closed");
            Ok(no_content())
        }
        (["tenants", id, "rooms", room, "members", peer], _) => {
            let (id, room) = (existing(api, &scope, id)?, room_name(room)?);
            let peer = rooms::peer_id(peer)?;
            let service = rooms::service(api.rooms.as_deref())?;
            service.remove_member(&id, &room, peer).await?;
            info!(tenant = %id, peer = %peer, "control API: member removed");
            Ok(no_content())
        }
        (["tenants", id, "rooms", room, "messages"], _) => {
            let (id, room) = (existing(api, &scope, id)?, room_name(room)?);
            let message = rooms::message(&read_body(body).await?)?;
            let service = rooms::service(api.rooms.as_deref())?;
            service
                .send(&id, &room, message.audience, message.data)
                .await?;
            Ok(no_content())
        }
        _ => Err(ApiError::NotFound),
    }
}

/// A tenant id of a path; one that cannot be an id names no tenant.
fn tenant_id(text: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(text).map_err(|_| ApiError::NotFound)
}

/// A tenant id the scope may see.
fn visible(scope: &Scope, text: &str) -> Result<TenantId, ApiError> {
    let id = tenant_id(text)?;
    scope.may_see(&id)?;
    Ok(id)
}

/// A tenant the scope may see and that exists: rooms of a tenant that does not exist are not
/// found, rather than an empty list that would suggest it does.
fn existing(api: &Api, scope: &Scope, text: &str) -> Result<TenantId, ApiError> {
    let id = visible(scope, text)?;
    api.tenants.get(&id)?;
    Ok(id)
}

/// A room name of a path, percent-decoded; one that is not UTF-8 names no room.
fn room_name(segment: &str) -> Result<String, ApiError> {
    rooms::path_segment(segment).ok_or(ApiError::NotFound)
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`].
async fn read_json<B, T>(body: B) -> Result<T, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
    T: DeserializeOwned,
{
    let bytes = read_body(body).await?;
    let invalid = |e: serde_json::Error| {
        ApiError::BadRequest(format!(
            "invalid JSON body: {}",
            switchboard_tenants::file::redact(&e.to_string())
        ))
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
    // serde also reads a struct from an array of its fields in order; the API takes objects only.
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected an object".into(),
        ));
    }
    serde_json::from_value(value).map_err(invalid)
}

/// Reads a body of at most [`MAX_BODY_BYTES`].
async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    Ok(Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest("cannot read the request body".into())
            }
        })?
        .to_bytes())
}

/// Percent-decoding of a query value; malformed escapes stay as they are.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = switchboard_runtime::http::percent_decode(value, Encoded::Query);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
