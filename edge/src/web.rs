//! Plain HTTP on the public port: the demo app and the JS client, embedded in the binary.
//!
//! `/sdk/switchboard.js` (the JS client) is always served. With the demo on (`--demo`, the default
//! standalone), so are the page at `/` and `/r/<room>`, its script, style and icon, and
//! `/config.json` (the ICE servers of `--ice-server`). With the demo off, `/` answers 426 as a bare
//! signaling endpoint does. Everything else is 404. WebSocket upgrades never get here: http.rs
//! turns them into client connections on any path first.
//!
//! The files live in `edge/web/` and are compiled in, so one binary is the whole deployment and the
//! page always matches the server it came from.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::ice::IceServer;

type Body = Full<Bytes>;

/// The page may load its own scripts, styles and icon, fetch `/config.json` and open a WebSocket to
/// the same host and port (CSP Level 3 lets `'self'` match `ws:`/`wss:` there); nothing else: no
/// inline script, no other origin, no plugins, no framing. Media from the camera and from peers is
/// attached with `srcObject`, which involves no URL and so needs no `media-src`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The answer to a plain GET of `/` when the demo is off (unchanged from before the demo existed).
const SIGNALING_ONLY: &str =
    "Switchboard signaling endpoint: connect with a WebSocket (palava protocol 1.0.0).\n";

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The page, served for `/` and every `/r/<room>`.
const INDEX: &[u8] = include_bytes!("../web/demo/index.html");

/// The JS client, `/sdk/switchboard.js`.
pub const SDK_PATH: &str = "/sdk/switchboard.js";

/// The demo's other files: (path, content type, body).
const DEMO_FILES: [(&str, &str, &[u8]); 4] = [
    ("/app.js", JAVASCRIPT, include_bytes!("../web/demo/app.js")),
    (
        "/call.js",
        JAVASCRIPT,
        include_bytes!("../web/demo/call.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/demo/style.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/demo/favicon.svg"),
    ),
];

/// One file ready to serve.
#[derive(Debug, Clone)]
struct Resource {
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
    /// Readable by pages of any origin (the JS client may be imported from elsewhere).
    shared: bool,
}

impl Resource {
    fn new(content_type: &'static str, body: Bytes) -> Resource {
        // Quoted hex is always a valid header value.
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(&body)))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Resource {
            content_type,
            body,
            etag,
            shared: false,
        }
    }
}

/// What the public port serves besides WebSockets and health; built once at start-up.
#[derive(Debug, Clone)]
pub struct Site {
    demo: bool,
    index: Resource,
    files: HashMap<&'static str, Resource>,
}

impl Site {
    /// The site for these settings: `demo` serves the page, `ice_servers` go into `/config.json`.
    pub fn new(demo: bool, ice_servers: &[IceServer]) -> Site {
        let mut files = HashMap::new();
        let mut sdk = Resource::new(
            JAVASCRIPT,
            Bytes::from_static(include_bytes!("../web/sdk/switchboard.js")),
        );
        sdk.shared = true;
        files.insert(SDK_PATH, sdk);
        if demo {
            for (path, content_type, body) in DEMO_FILES {
                files.insert(path, Resource::new(content_type, Bytes::from_static(body)));
            }
            let config = serde_json::json!({ "ice_servers": ice_servers });
            files.insert(
                "/config.json",
                Resource::new("application/json", Bytes::from(config.to_string())),
            );
        }
        Site {
            demo,
            index: Resource::new(HTML, Bytes::from_static(INDEX)),
            files,
        }
    }

    /// Whether the demo page is served.
    pub fn demo(&self) -> bool {
        self.demo
    }

    /// The answer to a request that is not a WebSocket upgrade.
    pub fn respond(&self, method: &Method, path: &str, request: &HeaderMap) -> Response<Body> {
        let resource = if self.demo && is_page(path) {
            &self.index
        } else if let Some(resource) = self.files.get(path) {
            resource
        } else if path == "/" {
            return plain(StatusCode::UPGRADE_REQUIRED, SIGNALING_ONLY);
        } else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| etag_matches(tags, &resource.etag));
        let mut response = if fresh {
            let mut response = Response::new(Body::default());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            // hyper sends the Content-Length of this body but not the body itself for HEAD.
            let mut response = Response::new(Body::from(resource.body.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(resource.content_type),
            );
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, resource.etag.clone());
        // The files are not named by their content, so a cached copy must be revalidated (cheaply,
        // with the ETag) or a browser would mix an old page with a new server after an upgrade.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if resource.shared {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        secure(headers);
        response
    }
}

/// `/` and `/r/<room>`: one non-empty path segment after `/r/`.
fn is_page(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix("/r/")
            .is_some_and(|room| !room.is_empty() && !room.contains('/'))
}

/// `If-None-Match` holds `*` or a comma-separated list of (possibly weak) entity tags.
fn etag_matches(tags: &str, etag: &HeaderValue) -> bool {
    tags.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag.as_bytes()
    })
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(headers);
    response
}

fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// 64-bit FNV-1a: a stable content hash for ETags (the same on every edge of a cluster, unlike
/// std's randomly seeded hasher), with no dependency for ten lines.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_the_root_and_one_room_segment() {
        assert!(is_page("/"));
        assert!(is_page("/r/hello"));
        assert!(is_page("/r/caf%C3%A9"));
        assert!(!is_page("/r/"));
        assert!(!is_page("/r/a/b"));
        assert!(!is_page("/room"));
    }

    #[test]
    fn etags_match_strong_weak_lists_and_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(etag_matches("\"abc\"", &etag));
        assert!(etag_matches("W/\"abc\"", &etag));
        assert!(etag_matches("\"x\", \"abc\"", &etag));
        assert!(etag_matches("*", &etag));
        assert!(!etag_matches("\"abcd\"", &etag));
    }

    #[test]
    fn fnv1a_is_the_reference_function() {
        // Test vectors of the FNV reference (draft-eastlake-fnv).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
