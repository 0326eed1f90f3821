//! Turning signals into a shutdown request: SIGTERM drains with the configured grace (a rolling
//! upgrade), SIGINT (Ctrl-C in a terminal) announces `shutdown` with 0 seconds and closes at once.

use std::time::Duration;

use tracing::info;

/// A request to stop, with the grace to give clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// How long clients get between the `shutdown` event and the close with 4200.
    pub grace: Duration,
}

/// Resolves on the first SIGTERM (with `grace`) or SIGINT (with no grace).
pub async fn signal(grace: Duration) -> Shutdown {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {
                        info!("SIGTERM received");
                        return Shutdown { grace };
                    }
                    _ = tokio::signal::ctrl_c() => {
                        info!("SIGINT received");
                        return Shutdown { grace: Duration::ZERO };
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    info!("SIGINT received");
    Shutdown {
        grace: Duration::ZERO,
    }
}
