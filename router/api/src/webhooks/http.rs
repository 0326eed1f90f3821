//! One webhook attempt: an HTTP/1.1 POST over a new TCP connection (hyper's client connection),
//! TLS first for `https://` endpoints.
//!
//! A connection per attempt keeps the engine free of pool state; webhook rates are per room event,
//! far below where a connection handshake on the same network matters.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::settings::Endpoint;
use super::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER};
use super::tls::Tls;

/// Why an attempt failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The receiver answered with a status other than 2xx.
    #[error("receiver answered {0}")]
    Status(u16),
    /// No TCP connection.
    #[error("could not connect to the receiver")]
    Connect(#[source] std::io::Error),
    /// The TLS handshake failed (an untrusted or mismatched certificate, a receiver that does not
    /// speak TLS, a host that is no valid server name).
    #[error("TLS handshake with the receiver failed")]
    Tls(#[source] std::io::Error),
    /// No answer within the request timeout.
    #[error("receiver did not answer in time")]
    Timeout,
    /// The HTTP exchange failed.
    #[error("HTTP exchange failed")]
    Http(#[source] hyper::Error),
    /// The request could not be built (a header value the endpoint or event made invalid).
    #[error("request could not be built")]
    Request(#[source] hyper::http::Error),
}

impl AttemptError {
    /// The `reason` label of `switchboard_webhooks_failed_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AttemptError::Status(_) => "status",
            AttemptError::Connect(_) => "connect",
            AttemptError::Tls(_) => "tls",
            AttemptError::Timeout => "timeout",
            AttemptError::Http(_) | AttemptError::Request(_) => "io",
        }
    }
}

/// POSTs `body` to `endpoint` with the signature and event id headers; `Ok` on a 2xx within
/// `timeout` (connection and TLS handshake included). `tls` is the trust of `https://` endpoints.
pub async fn post(
    endpoint: &Endpoint,
    tls: &Tls,
    signature: &str,
    event_id: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(), AttemptError> {
    match tokio::time::timeout(timeout, exchange(endpoint, tls, signature, event_id, body)).await {
        Ok(result) => result,
        Err(_) => Err(AttemptError::Timeout),
    }
}

async fn exchange(
    endpoint: &Endpoint,
    tls: &Tls,
    signature: &str,
    event_id: &str,
    body: Bytes,
) -> Result<(), AttemptError> {
    let request = Request::post(endpoint.path.as_str())
        .header(HOST, endpoint.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "switchboard-webhooks")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, event_id)
        .body(Full::new(body))
        .map_err(AttemptError::Request)?;
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(AttemptError::Connect)?;
    // Webhook bodies are small: sending at once beats Nagle's wait for an ACK.
    let _ = stream.set_nodelay(true);
    if !endpoint.tls {
        return send(stream, request).await;
    }
    // The certificate must name the URL's host; an IP address must be among its IP SANs.
    let name = ServerName::try_from(endpoint.host.as_str())
        .map_err(|e| AttemptError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?
        .to_owned();
    let stream = tls
        .connector()
        .connect(name, stream)
        .await
        .map_err(AttemptError::Tls)?;
    send(stream, request).await
}

/// The HTTP/1.1 exchange over a connected (and, for `https://`, TLS) stream.
async fn send<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(), AttemptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(AttemptError::Http)?;
    // The connection future does the I/O; it ends when `sender` is dropped (or the peer closes).
    let driver = tokio::spawn(connection);
    let result = sender.send_request(request).await;
    drop(sender);
    driver.abort();
    let status = result.map_err(AttemptError::Http)?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(AttemptError::Status(status.as_u16()))
    }
}
