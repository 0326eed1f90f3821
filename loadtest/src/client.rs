//! Connecting to the servers under test, and a small protocol client.
//!
//! Targets must be loopback: this tool generates enough traffic to hurt a shared machine, so it
//! refuses anything else. Clients are spread round-robin over the targets and over the source
//! addresses 127.0.0.1 ..= 127.0.0.N (each source address has its own ephemeral port range).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;

/// A server to connect to: its URL and the loopback address it resolved to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The WebSocket URL, used in the upgrade request.
    pub url: String,
    /// The address connected to.
    pub addr: SocketAddr,
}

/// The host of a `ws://` URL, if it is a loopback one (127.0.0.0/8, ::1 or localhost).
fn loopback_host(uri: &Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    ip.is_loopback().then_some(ip)
}

/// Checks that `url` is a `ws://` URL of a loopback host and returns its address.
pub fn loopback_addr(url: &str) -> Result<SocketAddr> {
    loopback_addr_with_scheme(url, "ws")
}

/// Checks that `url` is a `SCHEME://` URL of a loopback host and returns its address.
pub fn loopback_addr_with_scheme(url: &str, scheme: &str) -> Result<SocketAddr> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some(scheme) {
        bail!("{url:?}: only {scheme}:// URLs are supported");
    }
    let ip = loopback_host(&uri).ok_or_else(|| {
        anyhow!(
            "{url:?}: only loopback servers may be load-tested (127.0.0.0/8, ::1 or localhost), \
             refusing host {:?}",
            uri.host().unwrap_or("")
        )
    })?;
    let port = uri.port_u16().unwrap_or(80);
    Ok(SocketAddr::new(ip, port))
}

/// Connects clients to the targets in turn.
#[derive(Debug, Clone)]
pub struct Connector {
    targets: Vec<Target>,
    source_ips: u8,
    connect_timeout: Duration,
    reach: Arc<Reach>,
}

/// The outcome of the connection attempts so far, shared by every clone of a [`Connector`]: whether
/// the servers can be reached at all.
#[derive(Debug, Default)]
struct Reach {
    succeeded: AtomicU64,
    failed: AtomicU64,
    first_error: OnceLock<String>,
}

impl Connector {
    /// Checks every URL (loopback only) and remembers how to connect.
    pub fn new(urls: &[String], source_ips: u8, connect_timeout: Duration) -> Result<Connector> {
        if urls.is_empty() {
            bail!("no --url given");
        }
        let targets = urls
            .iter()
            .map(|url| {
                let addr = loopback_addr(url)?;
                if addr.is_ipv6() && source_ips > 1 {
                    bail!("{url:?}: --source-ips needs an IPv4 target (127.0.0.0/8)");
                }
                Ok(Target {
                    url: url.clone(),
                    addr,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Connector {
            targets,
            source_ips,
            connect_timeout,
            reach: Arc::default(),
        })
    }

    /// An error when no connection attempt has succeeded yet and at least `attempts` (at least one)
    /// have failed: the servers cannot be reached, and running on would measure nothing.
    pub fn check_reachable(&self, attempts: u64) -> Result<()> {
        let failed = self.reach.failed.load(Ordering::Relaxed);
        if self.reach.succeeded.load(Ordering::Relaxed) > 0 || failed < attempts.max(1) {
            return Ok(());
        }
        let urls: Vec<&str> = self.targets.iter().map(|t| t.url.as_str()).collect();
        bail!(
            "cannot connect to {}: {} ({failed} attempt(s), none succeeded; is the server running?)",
            urls.join(", "),
            self.reach.first_error.get().map_or("", String::as_str),
        )
    }

    /// How many targets there are.
    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// Connects client number `index`: target `index % targets`, source address
    /// 127.0.0.(1 + index % source_ips).
    pub async fn connect(&self, index: usize) -> Result<Conn> {
        let target = &self.targets[index % self.targets.len()];
        let source = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                1 + (index % self.source_ips as usize) as u8,
            )),
            0,
        );
        let result = tokio::time::timeout(self.connect_timeout, connect(target, source))
            .await
            .map_err(|_| anyhow!("connect timeout"))
            .and_then(|connected| connected);
        match &result {
            Ok(_) => self.reach.succeeded.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                let _ = self.reach.first_error.set(e.to_string());
                self.reach.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        result
    }
}

async fn connect(target: &Target, source: SocketAddr) -> Result<Conn> {
    let socket = if target.addr.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
    .map_err(|e| anyhow!("connect failed: {e}"))?;
    if target.addr.is_ipv4() {
        socket
            .bind(source)
            .map_err(|e| anyhow!("bind {source} failed: {e}"))?;
    }
    let _ = socket.set_nodelay(true);
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| anyhow!("connect failed: {e}"))?;
    let (ws, _) = tokio_tungstenite::client_async(target.url.as_str(), stream)
        .await
        .map_err(|e| anyhow!("upgrade failed: {e}"))?;
    Ok(Conn { ws })
}

/// What `join_room` got back.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The connection's own id.
    pub own_id: String,
    /// The ids of the members already in the room.
    pub peers: Vec<String>,
    /// From sending `join_room` until `joined_room` arrived.
    pub latency: Duration,
}

/// One protocol connection.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
}

impl Conn {
    /// Sends one message.
    pub async fn send(&mut self, message: &Value) -> Result<()> {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| anyhow!("send failed: {e}"))
    }

    /// The next text message as JSON; `Ok(None)` once the connection has ended. Cancel safe.
    pub async fn recv(&mut self) -> Result<Option<Value>> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Err(e)) => bail!("connection failed: {e}"),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .map_err(|_| anyhow!("server sent invalid JSON"));
                }
                Some(Ok(Message::Binary(_))) => bail!("server sent a binary frame"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Joins `room` with `status` and waits for `joined_room` (at most `timeout`). A server `error`
    /// fails the join with `server error: TEXT`.
    pub async fn join(&mut self, room: &str, status: Value, timeout: Duration) -> Result<Joined> {
        let started = Instant::now();
        self.send(&json!({"event": "join_room", "room_id": room, "status": status}))
            .await?;
        let joined = tokio::time::timeout(timeout, async {
            loop {
                let Some(message) = self.recv().await? else {
                    bail!("connection closed during join");
                };
                match message["event"].as_str() {
                    Some("joined_room") => return Ok(message),
                    Some("error") => bail!("server error: {}", error_text(&message)),
                    _ => continue,
                }
            }
        })
        .await
        .map_err(|_| anyhow!("join timeout"))??;
        let latency = started.elapsed();
        let own_id = joined["own_id"]
            .as_str()
            .ok_or_else(|| anyhow!("joined_room without own_id"))?
            .to_owned();
        let peers = joined["peers"]
            .as_array()
            .map(|peers| {
                peers
                    .iter()
                    .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Joined {
            own_id,
            peers,
            latency,
        })
    }

    /// Closes the connection politely (bounded by one second).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// The text of a server `error` event.
pub fn error_text(message: &Value) -> String {
    message["message"]
        .as_str()
        .unwrap_or("error without text")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_loopback() {
        assert!(loopback_addr("ws://127.0.0.1:4233/").is_ok());
        assert!(loopback_addr("ws://127.9.8.7:4233/").is_ok());
        assert!(loopback_addr("ws://localhost:4233/").is_ok());
        assert_eq!(
            loopback_addr("ws://[::1]:4233/").unwrap(),
            "[::1]:4233".parse().unwrap()
        );
        for bad in [
            "ws://10.0.0.1:4233/",
            "ws://example.com/",
            "ws://0.0.0.0:4233/",
            "wss://127.0.0.1/",
        ] {
            assert!(loopback_addr(bad).is_err(), "{bad} accepted");
        }
        let e = loopback_addr("ws://192.168.1.1:1/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only loopback"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_once_attempts_failed_and_none_succeeded() {
        // Port 1 on loopback: nothing listens there, the connect is refused at once.
        let connector =
            Connector::new(&["ws://127.0.0.1:1/".to_owned()], 1, Duration::from_secs(5)).unwrap();
        assert!(connector.check_reachable(1).is_ok(), "nothing tried yet");
        assert!(connector.clone().connect(0).await.is_err());
        assert!(connector.check_reachable(2).is_ok(), "one failure of two");
        let e = connector.check_reachable(1).unwrap_err().to_string();
        assert!(
            e.contains("cannot connect to ws://127.0.0.1:1/: connect failed"),
            "{e}"
        );
    }

    #[test]
    fn ipv6_target_refuses_source_ips() {
        let urls = ["ws://[::1]:1/".to_owned()];
        assert!(Connector::new(&urls, 1, Duration::from_secs(1)).is_ok());
        assert!(Connector::new(&urls, 2, Duration::from_secs(1)).is_err());
    }
}
