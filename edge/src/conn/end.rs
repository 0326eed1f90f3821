//! How a connection ends: why (the `reason` of `switchboard_disconnects_total`), and the close frame
//! the client is owed, if any. Also what a socket error means, for reads and writes alike.

use std::io;

use switchboard_proto::limits::close_code;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::error::ProtocolError as ProtocolViolation;

use crate::metrics::DisconnectReason;

/// A close frame: its code and reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Close {
    pub(super) code: u16,
    pub(super) text: &'static str,
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct End {
    pub(super) reason: DisconnectReason,
    /// Sent before the socket is dropped. None when the client is gone already or our side of the
    /// socket failed (nothing would arrive), or when the client stopped reading (it would not be read).
    pub(super) close: Option<Close>,
}

impl End {
    /// The client stopped reading: its queue overflowed, or a relay to it waited too long.
    pub(super) const SLOW_CONSUMER: End = End::closing(
        DisconnectReason::SlowConsumer,
        close_code::POLICY,
        "slow consumer",
    );
    /// The grace of a graceful shutdown is over.
    pub(super) const SHUTDOWN: End = End::closing(
        DisconnectReason::Shutdown,
        close_code::SHUTDOWN,
        "server shutting down",
    );
    /// Nothing, not even a pong, arrived within the idle timeout.
    /// Hosted mode: the tenant is gone (docs/api.md): its connections go with it.
    pub(super) const TENANT_DELETED: End = End::closing(
        DisconnectReason::TenantDeleted,
        close_code::TENANT_DELETED,
        "tenant deleted",
    );

    pub(super) const IDLE_TIMEOUT: End = End::closing(
        DisconnectReason::IdleTimeout,
        close_code::NORMAL,
        "idle timeout",
    );
    /// The control API removed the client from its room (after the `removed by the service`
    /// error, already queued).
    pub(super) const REMOVED: End = End::closing(
        DisconnectReason::Removed,
        close_code::REMOVED,
        "removed by the service",
    );
    /// Sustained rate-limit abuse.
    pub(super) const RATE_LIMIT_ABUSE: End = End::closing(
        DisconnectReason::RateLimitAbuse,
        close_code::POLICY,
        "rate limit exceeded",
    );

    const fn closing(reason: DisconnectReason, code: u16, text: &'static str) -> End {
        End {
            reason,
            close: Some(Close { code, text }),
        }
    }

    /// An end without a close frame.
    pub(super) const fn quiet(reason: DisconnectReason) -> End {
        End {
            reason,
            close: None,
        }
    }

    /// What a failed read means: a client that broke the rules of RFC 6455 is told so with the code
    /// the RFC asks for; one that went away, or a socket that failed, ends without a word.
    pub(super) fn of_read_error(error: &WsError) -> End {
        match error {
            WsError::Capacity(_) => End::closing(
                DisconnectReason::FrameTooLarge,
                close_code::TOO_BIG,
                "message too big",
            ),
            WsError::Utf8(_) => End::closing(
                DisconnectReason::ProtocolViolation,
                close_code::INVALID_PAYLOAD,
                "invalid utf-8",
            ),
            error if client_gone(error) => End::quiet(DisconnectReason::ClientClosed),
            WsError::Protocol(_) => End::closing(
                DisconnectReason::ProtocolViolation,
                close_code::PROTOCOL_ERROR,
                "protocol error",
            ),
            _ => End::quiet(DisconnectReason::IoError),
        }
    }

    /// What a failed or timed-out write means (`None`: it timed out). No close frame: the socket
    /// does not take writes.
    pub(super) fn of_write_error(error: Option<&WsError>) -> End {
        match error {
            Some(error) if client_gone(error) => End::quiet(DisconnectReason::ClientClosed),
            _ => End::quiet(DisconnectReason::IoError),
        }
    }
}

/// Whether a socket error means the client went away (it closed, reset the connection, or vanished
/// without a close frame: tab closed, network gone). That is the client leaving, not an I/O problem
/// of ours, whichever direction noticed it.
fn client_gone(error: &WsError) -> bool {
    match error {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolViolation::ResetWithoutClosingHandshake) => true,
        WsError::Io(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}
