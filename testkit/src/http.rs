//! A plain HTTP/1.0 GET, enough for health, readiness, metrics and nats-server monitoring endpoints.
//!
//! HTTP/1.0 makes the server close the connection after one response, without chunked encoding, so
//! reading to the end of the stream is the whole response and no HTTP client crate is needed.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on one whole request, so that a hung server fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `path` (e.g. `/healthz`) from `addr` and returns the status code and the body.
///
/// Any status is a successful result; an error means no HTTP response arrived (refused, reset,
/// timed out after 5 s, or not HTTP).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    tokio::time::timeout(REQUEST_TIMEOUT, get(addr, path))
        .await
        .with_context(|| format!("GET http://{addr}{path} timed out"))?
        .with_context(|| format!("GET http://{addr}{path}"))
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("incomplete HTTP response: {response:?}");
    };
    // "HTTP/1.1 200 OK": the second word is the status.
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("no status in the HTTP response head {head:?}"))?;
    Ok((status, body.to_owned()))
}
