//! Signals that stop a process: SIGTERM (an orchestrator's stop, a rolling upgrade) and SIGINT
//! (Ctrl-C in a terminal). The first starts a graceful stop; a second one, while that stop is still
//! under way, ends the process at once, as users expect of a second Ctrl-C.

use tracing::{info, warn};

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM.
    Terminate,
    /// SIGINT.
    Interrupt,
}

impl Stop {
    /// The conventional exit status of a process ended by this signal (128 + its number).
    pub fn exit_code(self) -> i32 {
        match self {
            Stop::Terminate => 143,
            Stop::Interrupt => 130,
        }
    }
}

/// Resolves on the next SIGTERM or SIGINT.
pub async fn next() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                return tokio::select! {
                    _ = term.recv() => Stop::Terminate,
                    _ = tokio::signal::ctrl_c() => Stop::Interrupt,
                };
            }
            Err(e) => warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    Stop::Interrupt
}

/// Resolves on the first SIGTERM or SIGINT, and from then on ends the process at once on a second
/// one (the graceful stop may take a while: a drain's grace, a slot handover).
pub async fn first_then_force() -> Stop {
    let stop = next().await;
    info!(signal = ?stop, "stopping gracefully (a second SIGTERM or SIGINT stops at once)");
    tokio::spawn(async {
        let again = next().await;
        warn!(signal = ?again, "second signal: exiting without finishing the graceful stop");
        std::process::exit(again.exit_code());
    });
    stop
}
