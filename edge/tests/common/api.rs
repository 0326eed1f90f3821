//! The control API in tests: plain HTTP requests with JSON bodies, as an operator's script sends them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The operator's bearer token of the test processes.
pub const OPERATOR_TOKEN: &str = "operator-token-for-tests-0123456789";

/// One HTTP/1.0 request with a JSON body: (status, body as JSON or null).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: test\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Creates tenant `acme` (with `tenant`'s other fields) and an HS256 key for it, as the operator,
/// asserting both answers; returns the key's id and secret.
pub async fn acme_with_a_key(addr: SocketAddr, tenant: Value) -> (String, String) {
    let operator = format!("Bearer {OPERATOR_TOKEN}");
    let mut body = serde_json::json!({"id": "acme"});
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), tenant) {
        body.extend(fields);
    }
    let (status, created) = call(addr, "POST", "/v1/tenants", &operator, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let (status, key) = call(
        addr,
        "POST",
        "/v1/tenants/acme/keys",
        &operator,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}
