//! Shared harness of the edge's integration tests: an edge started in-process with `run()` on port 0,
//! and a small WebSocket client speaking the protocol as JSON.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod cluster;
pub mod hosted;
pub mod views;
pub mod webhook;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;

use switchboard_api::service::RoomService;
use switchboard_edge::{Config, Listeners, Shutdown, run_exposing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for something it expects before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// An edge running in this process.
pub struct TestEdge {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The standalone room service of the control API, once `run` handed it over.
    rooms: Option<oneshot::Receiver<Arc<dyn RoomService>>>,
    room_service: Option<Arc<dyn RoomService>>,
    /// The control API, with `--api-listen`.
    pub api: Option<SocketAddr>,
    stop: Option<oneshot::Sender<Shutdown>>,
    task: Option<JoinHandle<()>>,
}

impl TestEdge {
    /// The control API's room service of this (standalone) edge.
    pub async fn room_service(&mut self) -> Arc<dyn RoomService> {
        if let Some(rooms) = self.rooms.take() {
            self.room_service = Some(rooms.await.expect("a standalone edge has a room service"));
        }
        self.room_service.clone().expect("room service")
    }

    /// Starts an edge with the default configuration on loopback port 0.
    pub async fn start() -> TestEdge {
        Self::start_with(|_| {}).await
    }

    /// Starts an edge after `adjust` changed the default configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestEdge {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        adjust(&mut config);
        config.validate().expect("test configuration is valid");
        let listeners = Listeners::bind(&config).unwrap();
        let addresses = listeners.addresses().unwrap();
        let (stop, stopped) = oneshot::channel::<Shutdown>();
        let (rooms_tx, rooms) = oneshot::channel();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                stopped.await.unwrap_or(Shutdown {
                    grace: Duration::ZERO,
                })
            };
            let expose = move |service| {
                let _ = rooms_tx.send(service);
            };
            run_exposing(config, listeners, shutdown, expose)
                .await
                .unwrap();
        });
        TestEdge {
            addr: addresses.listen,
            admin: addresses.admin_listen,
            rooms: Some(rooms),
            room_service: None,
            api: addresses.api_listen,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// This edge alone, for the shared protocol checks.
    pub fn edges(&self) -> Edges {
        Edges::new(vec![self.url()])
    }

    /// Starts the graceful shutdown with `grace`.
    pub fn begin_shutdown(&mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Shutdown { grace });
        }
    }

    /// Waits until `run` has returned.
    pub async fn stopped(&mut self) {
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE * 3, task)
                .await
                .expect("edge stops in time")
                .unwrap();
        }
    }

    /// One metric's value (the sum over series whose labels contain every `labels` pair).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").await;
        parse_metric(&body, name, labels)
    }

    /// Waits until a metric reaches `want` (metrics are updated by other tasks a moment later).
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.metric(name, labels).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{labels:?} = {got}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The edges a check talks to: clients connect to them in turn, so with two edges every room a check
/// makes spans both.
pub struct Edges {
    urls: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    tag: String,
}

impl Edges {
    /// Edges at these WebSocket URLs.
    pub fn new(urls: Vec<String>) -> Edges {
        use std::hash::{BuildHasher, RandomState};
        let tag = RandomState::new().hash_one(std::time::SystemTime::now()) as u32;
        Edges {
            urls,
            next: Default::default(),
            tag: format!("{tag:08x}"),
        }
    }

    /// A client on the next edge.
    pub async fn client(&self) -> Client {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Client::connect_url(&self.urls[i % self.urls.len()]).await
    }

    /// A room name unique to this run (checks sharing a cluster never meet).
    pub fn room(&self, name: &str) -> String {
        format!("{name}-{}", self.tag)
    }
}

/// Sums the samples of `name` whose label set contains all of `labels`.
pub fn parse_metric(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A plain HTTP/1.0 GET: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = http_request(addr, "GET", path, &[]).await;
    (response.status, response.body)
}

/// An HTTP response as a test reads it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request (the server closes after answering, so the response is the whole stream).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: test\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("http response in time")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A protocol client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What ended a connection, as a client sees it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Close(Option<u16>, String),
    Eof,
}

impl Client {
    pub async fn connect(edge: &TestEdge) -> Client {
        Self::connect_url(&edge.url()).await
    }

    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = connect_async(url).await.expect("websocket connects");
        Client { ws }
    }

    pub async fn send(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// The next text message as JSON within `limit`, or `None` (pings and pongs are skipped);
    /// panics on close.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?
                .expect("connection open")
                .expect("no websocket error");
            match frame {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next text message as JSON (pings and pongs are skipped); panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message in time")
                .expect("connection open")
                .expect("no websocket error");
            match frame {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next message, which must have event `event`.
    pub async fn expect(&mut self, event: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["event"], event, "unexpected message: {message}");
        message
    }

    /// The next message, which must be an error with `text`.
    pub async fn expect_error(&mut self, text: &str) {
        let message = self.recv().await;
        assert_eq!(
            message,
            json!({"event": "error", "message": text, "description": text})
        );
    }

    /// Sends ping and waits for pong: everything sent before has been processed.
    pub async fn sync(&mut self) {
        self.send(json!({"event": "ping"})).await;
        self.expect("pong").await;
    }

    /// Joins `room` and returns (own id, joined_room message).
    pub async fn join(&mut self, room: &str, status: Value) -> (String, Value) {
        self.send(json!({"event": "join_room", "room_id": room, "status": status}))
            .await;
        let joined = self.expect("joined_room").await;
        (joined["own_id"].as_str().unwrap().to_string(), joined)
    }

    /// Reads until the connection ends; returns how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("connection ends in time");
            match frame {
                None => return Ended::Eof,
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|CloseFrame { code, reason }| {
                            (Some(u16::from(code)), reason.to_string())
                        })
                        .unwrap_or((None, String::new()));
                    return Ended::Close(code, reason);
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) => return Ended::Eof,
            }
        }
    }

    /// Reads messages until the connection ends; returns them and how it ended.
    pub async fn drain_until_closed(&mut self) -> (Vec<Value>, Ended) {
        let mut seen = Vec::new();
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("connection ends in time");
            match frame {
                None | Some(Err(_)) => return (seen, Ended::Eof),
                Some(Ok(Message::Text(text))) => seen.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|CloseFrame { code, reason }| {
                            (Some(u16::from(code)), reason.to_string())
                        })
                        .unwrap_or((None, String::new()));
                    return (seen, Ended::Close(code, reason));
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// A hand-driven WebSocket client over raw TCP, for what a well-behaved library will not do: invalid
/// UTF-8, unmasked frames, never answering pings.
pub struct RawWs {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawWs {
    /// Connects and completes the upgrade handshake on `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
                .await
                .expect("handshake in time")
                .unwrap();
            assert!(n > 0, "connection closed during handshake");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // The accept key for the RFC 6455 sample nonce.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        buffer.drain(..head_end);
        RawWs { stream, buffer }
    }

    /// Sends one frame with FIN set; `masked` as a client must (or not, to break the rules).
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8], masked: bool) {
        let mut frame = vec![0x80 | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n < 65536 => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x12, 0x34, 0x56, 0x78];
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads frames until a close frame or EOF; returns the close code and reason if one came, and
    /// counts the pings seen on the way.
    pub async fn read_until_close(&mut self) -> (Option<(u16, String)>, usize) {
        let mut pings = 0;
        loop {
            match self.read_frame().await {
                None => return (None, pings),
                Some((0x8, payload)) => {
                    let close = (payload.len() >= 2).then(|| {
                        (
                            u16::from_be_bytes([payload[0], payload[1]]),
                            String::from_utf8_lossy(&payload[2..]).to_string(),
                        )
                    });
                    return (close, pings);
                }
                Some((0x9, _)) => pings += 1,
                Some(_) => {}
            }
        }
    }

    /// Reads one server frame (servers never mask): (opcode, payload), or None at EOF.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, payload, used)) = parse_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some((opcode, payload));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
                .await
                .expect("a frame in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4;
    }
    (buf.len() >= at + len).then(|| (opcode, buf[at..at + len].to_vec(), at + len))
}

/// A status object nested `levels` deep, the status object itself included (1 is `{"name":…}`); in
/// a join or status update the message adds one more level.
pub fn nested_status(levels: usize) -> Value {
    let mut value = json!("bottom");
    for i in 1..levels {
        value = if i % 2 == 0 {
            json!([value])
        } else {
            json!({"in": value})
        };
    }
    json!({"name": "deep", "x": value})
}
