//! The admin ports' HTTP: one set of HTTP/1 settings (a client that sends its headers slowly or never
//! cannot hold a connection open), and the responses both binaries give.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioTimer;

/// The body of every response.
pub type Body = Full<Bytes>;

/// Largest request head accepted; admin requests and WebSocket upgrades are small.
const MAX_BUF: usize = 64 * 1024;

/// HTTP/1 connection settings: request headers must arrive within `io_timeout`.
pub fn builder(io_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(io_timeout)
        .max_buf_size(MAX_BUF);
    builder
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON response (pretty-printed: operators read these with curl).
pub fn json<T: serde::Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

/// 405 with `Allow: GET, HEAD`: the answer of an endpoint asked with another method. A probe or
/// scraper misconfigured to POST learns so, rather than getting a 200 it might take for an answer to
/// its request.
pub fn method_not_allowed() -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// The Prometheus text exposition `body`.
pub fn metrics(body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Where a percent-encoded text comes from: a query value (where `+` stands for a space) or a path
/// segment (where `+` is itself, RFC 3986).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A query value.
    Query,
    /// A path segment.
    Path,
}

/// Percent-decodes `value`. Malformed escapes stay as they are (the caller's own checks then refuse
/// what they do not accept); the bytes need not be UTF-8.
pub fn percent_decode(value: &str, from: Encoded) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                let plus_is_space = from == Encoded::Query && bytes[i] == b'+';
                out.push(if plus_is_space { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb+c", Encoded::Query), b"a.b c");
        assert_eq!(percent_decode("a%2Eb+c", Encoded::Path), b"a.b+c");
        assert_eq!(percent_decode("%zz%4", Encoded::Query), b"%zz%4");
        assert_eq!(
            percent_decode("caf%C3%A9", Encoded::Path),
            "café".as_bytes()
        );
        assert_eq!(percent_decode("%FF", Encoded::Path), [0xFF]);
    }
}
