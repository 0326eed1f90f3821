//! `bare-server`: the cheapest WebSocket relay that can carry a `bare` run's traffic, a reference
//! point for the edge.
//!
//! It uses the edge's stack (tokio, tokio-tungstenite, the edge's default WebSocket limits: 4 KiB
//! read buffer, 16 KiB write buffer, 256 KiB frames) and nothing else: no JSON, no rooms, no
//! rate limits. Connections are paired in the order they are accepted (1st with 2nd, 3rd with
//! 4th, ...); every text frame is queued verbatim for the pair. Frames of a connection without a
//! pair (yet, or any more) are dropped. A connection whose queue is full because it does not read
//! is dropped. Loopback addresses only, like the rest of this tool.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use switchboard_runtime::signal::Signals;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::cli::BareServerArgs;

/// Bound on the WebSocket upgrade of one connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames written to the socket before one flush, at most.
const WRITE_BATCH: usize = 64;

/// The edge's default WebSocket limits (`--ws-read-buffer`, `--max-frame-bytes`, and its write
/// buffer).
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(256 * 1024))
        .max_message_size(Some(256 * 1024))
        .read_buffer_size(2048)
        .write_buffer_size(16 * 1024)
}

/// How to reach one connection: its write queue, and a token that drops it.
struct Handle {
    queue: mpsc::Sender<Message>,
    drop: CancellationToken,
}

/// A connection's pair, as far as it knows.
enum Partner {
    /// The first of a pair, until the second is accepted.
    Pending(oneshot::Receiver<Handle>),
    /// The pair's queue.
    Known(Handle),
    /// Never paired (the server stopped first) or dropped for not reading.
    Gone,
}

impl Partner {
    /// Queues `frame` for the pair, or drops it if there is none. A pair whose queue is full is
    /// dropped (and its frames from then on with it).
    fn forward(&mut self, frame: Message) {
        if let Partner::Pending(pending) = self {
            match pending.try_recv() {
                Ok(handle) => *self = Partner::Known(handle),
                Err(oneshot::error::TryRecvError::Empty) => return,
                Err(oneshot::error::TryRecvError::Closed) => *self = Partner::Gone,
            }
        }
        if let Partner::Known(handle) = self {
            match handle.queue.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    handle.drop.cancel();
                    *self = Partner::Gone;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => *self = Partner::Gone,
            }
        }
    }
}

/// Serves until SIGINT or SIGTERM: prints the bound address on stdout and writes the ready file.
pub async fn serve(args: &BareServerArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: only loopback addresses are allowed (127.0.0.0/8 or ::1)",
            args.listen
        );
    }
    // Handlers first, so that a signal right after the ready file is not fatal.
    let mut signals = Signals::new();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listen = listener.local_addr().context("no local address")?;
    println!("{listen}");
    if let Some(path) = &args.ready_file {
        write_ready_file(path, listen)?;
    }

    let queue = args.queue as usize;
    let config = websocket_config();
    let stop = CancellationToken::new();
    // The first connection of a pair whose second has not arrived yet.
    let mut waiting: Option<oneshot::Sender<Handle>> = None;
    let mut waiting_handle: Option<Handle> = None;
    loop {
        let (stream, _) = tokio::select! {
            _ = signals.next() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    eprintln!("bare-server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (tx, rx) = mpsc::channel(queue);
        let drop = stop.child_token();
        let handle = Handle {
            queue: tx,
            drop: drop.clone(),
        };
        let partner = match (waiting.take(), waiting_handle.take()) {
            (Some(first), Some(first_handle)) => {
                // The first one may already be gone; then this one has a pair that never reads.
                let _ = first.send(handle);
                Partner::Known(first_handle)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                waiting = Some(tx);
                waiting_handle = Some(handle);
                Partner::Pending(rx)
            }
        };
        tokio::spawn(connection(stream, rx, partner, drop, config));
    }
    stop.cancel();
    Ok(())
}

/// Writes `{"listen":"ADDR"}` to `path` atomically (temporary file, then rename).
fn write_ready_file(path: &Path, listen: SocketAddr) -> Result<()> {
    let text = serde_json::json!({ "listen": listen.to_string() }).to_string();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// One connection: reads frames and forwards them to the pair, writes what the pair forwards.
async fn connection(
    stream: TcpStream,
    mut queue: mpsc::Receiver<Message>,
    mut partner: Partner,
    drop: CancellationToken,
    config: WebSocketConfig,
) {
    let _ = stream.set_nodelay(true);
    let upgrade = tokio_tungstenite::accept_async_with_config(stream, Some(config));
    let mut ws = tokio::select! {
        _ = drop.cancelled() => return,
        upgraded = tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade) => match upgraded {
            Ok(Ok(ws)) => ws,
            Ok(Err(_)) | Err(_) => return,
        },
    };
    let mut queue_open = true;
    loop {
        tokio::select! {
            _ = drop.cancelled() => break,
            frame = ws.next() => match frame {
                Some(Ok(frame @ Message::Text(_))) => partner.forward(frame),
                // Pings are answered by tungstenite; binary frames are not part of the traffic.
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            frame = queue.recv(), if queue_open => {
                let Some(frame) = frame else {
                    // The pair is gone; this connection may still talk (its frames are dropped).
                    queue_open = false;
                    continue;
                };
                let write = async {
                    ws.feed(frame).await?;
                    for _ in 1..WRITE_BATCH {
                        match queue.try_recv() {
                            Ok(frame) => ws.feed(frame).await?,
                            Err(_) => break,
                        }
                    }
                    ws.flush().await
                };
                let written = tokio::select! {
                    _ = drop.cancelled() => false,
                    result = write => result.is_ok(),
                };
                if !written {
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_partner_drops_frames_then_forwards() {
        let (tx, rx) = oneshot::channel();
        let mut partner = Partner::Pending(rx);
        partner.forward(Message::text("lost"));
        let (queue, mut frames) = mpsc::channel(1);
        let drop = CancellationToken::new();
        let _ = tx.send(Handle {
            queue,
            drop: drop.clone(),
        });
        partner.forward(Message::text("one"));
        assert_eq!(frames.try_recv().ok(), Some(Message::text("one")));
        assert!(frames.try_recv().is_err());
        // A full queue drops the pair.
        partner.forward(Message::text("two"));
        partner.forward(Message::text("three"));
        assert!(drop.is_cancelled());
        assert!(matches!(partner, Partner::Gone));
    }

    #[test]
    fn ready_file_is_written_whole() {
        let path = std::env::temp_dir().join(format!("bare-ready-{}.json", std::process::id()));
        write_ready_file(
            &path,
            "127.0.0.1:4321".parse().unwrap_or_else(|_| unreachable!()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.trim(), r#"{"listen":"127.0.0.1:4321"}"#);
    }
}
