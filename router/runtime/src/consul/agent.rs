//! The HTTP client of the local Consul agent: HTTP/1.1 over a new TCP connection per request
//! (hyper's client connection), with the ACL token in `X-Consul-Token`.
//!
//! A connection per request keeps the client free of pool state; it makes a few requests a minute to
//! an agent on the same host. Plain HTTP only: the agent this talks to is the local one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The header carrying the ACL token.
pub const TOKEN_HEADER: &str = "X-Consul-Token";

/// Where the agent listens: an `http://host:port` URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAddr {
    /// Host to connect to (an IPv6 address without its brackets).
    pub host: String,
    /// Port (80 when the URL has none, as for any `http://` URL).
    pub port: u16,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
}

impl AgentAddr {
    /// Parses `http://host[:port][/]`.
    pub fn parse(text: &str) -> Result<AgentAddr, String> {
        let uri: hyper::Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{text:?}: only http:// is supported (the local agent's HTTP port, e.g. \
                     http://127.0.0.1:8500)"
                ));
            }
            _ => return Err(format!("{text:?}: expected http://host:port")),
        }
        let Some(authority) = uri.authority() else {
            return Err(format!("{text:?}: expected http://host:port"));
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{text:?}: give the agent's address only, without a path"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        Ok(AgentAddr {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
        })
    }
}

/// Why a request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No TCP connection (the agent is down, or not there yet).
    #[error("cannot connect to the Consul agent")]
    Connect(#[source] std::io::Error),
    /// No whole answer in time.
    #[error("the Consul agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The HTTP exchange failed.
    #[error("HTTP exchange with the Consul agent failed")]
    Http(#[source] hyper::Error),
    /// The request could not be built (a token that is no valid header value).
    #[error("cannot build the request to the Consul agent")]
    Request(#[source] hyper::http::Error),
    /// The agent refused (403: the token lacks a permission; 400: the body).
    #[error("the Consul agent answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the agent's explanation.
        body: String,
    },
    /// The answer is not the JSON expected.
    #[error("the Consul agent's answer is not the JSON expected")]
    Decode(#[source] serde_json::Error),
}

impl AgentError {
    /// An error for a status the caller does not expect, with the start of the agent's text.
    pub fn status(status: u16, body: &[u8]) -> AgentError {
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(200).collect();
        AgentError::Status { status, body: text }
    }
}

/// An answer of the agent: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// The client of one agent.
#[derive(Debug, Clone)]
pub struct Agent {
    addr: AgentAddr,
    token: Option<String>,
}

impl Agent {
    /// A client of the agent at `addr`, sending `token` with every request.
    pub fn new(addr: AgentAddr, token: Option<String>) -> Agent {
        Agent { addr, token }
    }

    /// `method path` (path and query), with a JSON `body`, answered within `timeout` (connecting
    /// included). Any status is an answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, AgentError> {
        match tokio::time::timeout(timeout, self.exchange(method, path, body)).await {
            Ok(result) => result,
            Err(_) => Err(AgentError::Timeout(timeout)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, AgentError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.authority.as_str())
            .header(USER_AGENT, "switchboard");
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token.as_str());
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(AgentError::Request)?;
        let stream = TcpStream::connect((self.addr.host.as_str(), self.addr.port))
            .await
            .map_err(AgentError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(AgentError::Http)?;
        // The connection future does the I/O until the response body has been read.
        let driver = tokio::spawn(connection);
        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Answer { status, body })
        }
        .await;
        drop(sender);
        driver.abort();
        result.map_err(AgentError::Http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_addresses() {
        let addr = AgentAddr::parse("http://127.0.0.1:8500").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((addr.host.as_str(), addr.port), ("127.0.0.1", 8500));
        assert_eq!(addr.authority, "127.0.0.1:8500");
        let addr = AgentAddr::parse("http://[::1]:8500/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((addr.host.as_str(), addr.port), ("::1", 8500));
        let addr = AgentAddr::parse("http://consul.local").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(addr.port, 80);
        for bad in [
            "https://127.0.0.1:8501",
            "127.0.0.1:8500",
            "http://127.0.0.1:8500/v1",
            "http://127.0.0.1:8500?dc=x",
            "not a url",
        ] {
            assert!(AgentAddr::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
