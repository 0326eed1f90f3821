//! What both Switchboard binaries run on, defined once: how they connect to NATS, read their
//! command line and environment, log and trace, stop on signals, answer on their admin port, read the wall
//! clock and register the metrics they have in common.
//!
//! # Layout
//! - [`cli`]: parsing with the exit codes operators script against, logging set-up, the ready file.
//! - [`config`]: duration parsing and the configuration error both binaries report.
//! - [`consul`]: optional Consul registration with the local agent, and NATS servers found through
//!   Consul.
//! - [`config_sources`]: which settings came from environment variables, so messages name them.
//! - [`nats`]: NATS connection options (`--nats` and its credentials) and link state.
//! - [`signal`]: SIGTERM and SIGINT, and a second one forcing the exit.
//! - [`http`]: the admin port's HTTP/1 settings (timeouts) and response helpers.
//! - [`clock`]: the wall clock, for the state machines that take time as an argument.
//! - [`metrics`]: registering metrics, and the ones both binaries export under the same names.
//! - [`process`]: the process's own metrics (memory, CPU time to the clock tick, descriptors).
//! - [`trace`]: OpenTelemetry export (OTLP, off by default), trace ids on log lines, and the W3C
//!   trace context in NATS headers.
//! - [`usage`]: the other processes' per-tenant counts, as they last reported them (hosted mode).

pub mod cli;
pub mod clock;
pub mod config;
pub mod config_sources;
pub mod consul;
pub mod http;
pub mod metrics;
pub mod nats;
#[cfg(target_os = "linux")]
pub mod process;
pub mod signal;
pub mod trace;
pub mod usage;

/// An error with its chain of causes, `outer: cause: root cause`, for logs (a `Display` of the
/// error alone says what failed, not why).
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot set up the NATS connection")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_description_names_every_cause() {
        let error = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            super::describe(&error),
            "cannot set up the NATS connection: connection refused"
        );
    }
}
