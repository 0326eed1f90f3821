//! Turning signals into a shutdown request: SIGTERM drains with the configured grace (a rolling
//! upgrade), SIGINT (Ctrl-C in a terminal) announces `shutdown` with 0 seconds and closes at once. A
//! second signal during the drain ends the process at once (`switchboard_runtime::signal`).

use std::time::Duration;

use switchboard_runtime::signal::{self, Stop};

/// A request to stop, with the grace to give clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// How long clients get between the `shutdown` event and the close with 4200.
    pub grace: Duration,
}

/// Resolves on the first SIGTERM (with `grace`) or SIGINT (with no grace).
pub async fn signal(grace: Duration) -> Shutdown {
    match signal::first_then_force().await {
        Stop::Terminate => Shutdown { grace },
        Stop::Interrupt => Shutdown {
            grace: Duration::ZERO,
        },
    }
}
