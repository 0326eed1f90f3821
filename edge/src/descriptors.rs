//! File descriptors: every client is a socket, so the process's descriptor limit caps clients as
//! surely as `--max-connections` does, only less gracefully. When descriptors ran out, `accept` failed
//! on both ports: excess clients got no answer instead of HTTP 503, and the admin port stopped
//! answering `/healthz`, so a liveness probe would restart a healthy edge.
//!
//! So the edge raises its soft `RLIMIT_NOFILE` to the hard limit at start, and plans its sockets
//! within it ([`plan`]): `--fd-reserve` descriptors are kept for everything but clients (the admin
//! port, NATS, listeners, the runtime, files, and public HTTP requests still being answered: web
//! files, and the 503s themselves). If the limit cannot cover `--max-connections` plus the reserve,
//! the edge serves fewer clients and says so (WARN at start, `switchboard_connections_limit`), rather
//! than refusing to start: an orchestrator restarting it in a loop would serve nobody, and the limit
//! is often set by the platform rather than by whoever wrote the flags.

use std::io;

/// What the descriptor limit leaves for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Upgraded client connections at most: `--max-connections`, or fewer if descriptors are short.
    pub connections: usize,
    /// Public-port HTTP connections not (yet) upgraded at most (requests being read or answered).
    /// Beyond it the public port stops accepting until one ends, so the admin port keeps its share.
    pub pending_http: usize,
    /// Whether `connections` is below `--max-connections`.
    pub lowered: bool,
}

/// Plans `max_connections` clients within `fd_limit` descriptors (`None`: no limit known), keeping
/// `reserve` for the rest. Half the reserve may serve public HTTP requests that are not (yet)
/// WebSockets; the other half stays for the admin port and the process itself.
pub fn plan(max_connections: usize, fd_limit: Option<u64>, reserve: usize) -> Result<Plan, String> {
    let pending_http = reserve / 2;
    let Some(fd_limit) = fd_limit else {
        return Ok(Plan {
            connections: max_connections,
            pending_http,
            lowered: false,
        });
    };
    let budget = usize::try_from(fd_limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve);
    if budget == 0 {
        return Err(format!(
            "the descriptor limit ({fd_limit}) leaves no room for clients after --fd-reserve \
             ({reserve}); raise the limit (ulimit -n, LimitNOFILE=, the container's nofile) or lower \
             --fd-reserve"
        ));
    }
    Ok(Plan {
        connections: max_connections.min(budget),
        pending_http,
        lowered: budget < max_connections,
    })
}

/// Raises the soft descriptor limit to the hard limit; returns the soft limit now in force.
pub fn raise_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft descriptor limit in force, if the platform has one.
pub fn soft_limit() -> Option<u64> {
    if !rlimit::Resource::NOFILE.is_supported() {
        return None;
    }
    rlimit::Resource::NOFILE
        .get()
        .ok()
        .map(|(soft, _)| soft)
        .filter(|&soft| soft != rlimit::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_within_the_limit() {
        let plan = |max, limit, reserve| super::plan(max, limit, reserve);
        // Plenty of descriptors: the configured limit stands.
        assert_eq!(
            plan(100_000, Some(1 << 20), 128),
            Ok(Plan {
                connections: 100_000,
                pending_http: 64,
                lowered: false
            })
        );
        // Exactly enough.
        assert_eq!(plan(872, Some(1000), 128).map(|p| p.lowered), Ok(false));
        // Too few: serve what fits, and say so.
        assert_eq!(
            plan(100_000, Some(1024), 128),
            Ok(Plan {
                connections: 896,
                pending_http: 64,
                lowered: true
            })
        );
        // No known limit.
        assert_eq!(plan(7, None, 128).map(|p| p.connections), Ok(7));
        // Nothing left for clients.
        assert!(
            plan(10, Some(128), 128)
                .unwrap_err()
                .contains("--fd-reserve")
        );
        assert!(plan(10, Some(64), 128).is_err());
    }
}
