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

/// The process's stop signals, listened to from creation on: a signal that arrives while nobody
/// awaits [`Signals::next`] is kept for the next call, not lost.
pub struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Starts listening for SIGTERM and SIGINT.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                (Err(e), _) | (_, Err(e)) => {
                    warn!(error = %e, "cannot listen for SIGTERM/SIGINT; only Ctrl-C stops");
                    None
                }
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves on the next SIGTERM or SIGINT.
    pub async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.unix {
            return tokio::select! {
                _ = term.recv() => Stop::Terminate,
                _ = int.recv() => Stop::Interrupt,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Stop::Interrupt
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves on the first SIGTERM or SIGINT, and from then on ends the process at once on a second
/// one (the graceful stop may take a while: a drain's grace, a slot handover). The same listeners
/// carry over, so a second signal sent right after the first is not missed.
pub async fn first_then_force() -> Stop {
    let mut signals = Signals::new();
    let stop = signals.next().await;
    info!(signal = ?stop, "stopping gracefully (a second SIGTERM or SIGINT stops at once)");
    tokio::spawn(async move {
        let again = signals.next().await;
        warn!(signal = ?again, "second signal: exiting without finishing the graceful stop");
        std::process::exit(again.exit_code());
    });
    stop
}
