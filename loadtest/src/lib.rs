//! Switchboard's load generator: speaks the palava signaling protocol (`1.0.0`) to any compatible
//! server and measures what a user would notice: join latency, relay latency, lost messages, errors.
//!
//! Load is open loop: senders follow a schedule of intended send instants fixed in advance, and
//! latency counts from the intended instant, so a slow server cannot hide its slowness by slowing
//! the sender down (no coordinated omission). Only loopback servers are accepted.
//!
//! # Layout
//! - [`cli`]: the flags, one subcommand per scenario.
//! - [`client`]: loopback checks, source-address spreading, and a small protocol client ([`client::Conn`]).
//! - [`schedule`]: the open-loop send schedule.
//! - [`stats`]: latency histograms (hdrhistogram), error counts, live counters.
//! - [`memory`]: the server's resident memory (Prometheus endpoint or `/proc`), for `idle`.
//! - [`progress`]: the live progress line on stderr.
//! - [`report`]: the result of a run: JSON, the summary table, the pass/fail verdict.
//! - [`scenarios`]: `call`, `fanout`, `idle` and `churn`, and the references `bare` and `nats-rtt`.
//! - [`bare_server`]: the minimal WebSocket relay `bare` measures (`bare-server`).

pub mod bare_server;
pub mod cli;
pub mod client;
pub mod memory;
pub mod progress;
pub mod report;
pub mod scenarios;
pub mod schedule;
pub mod stats;

pub use cli::{Cli, Scenario};
pub use report::Report;

/// Runs the scenario `cli` asks for and returns its report (not yet written anywhere), with the
/// run's settings and start time.
pub async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let started = std::time::SystemTime::now();
    let mut report = match &cli.scenario {
        Scenario::Call(args) => scenarios::call::run(args).await,
        Scenario::Fanout(args) => scenarios::fanout::run(args).await,
        Scenario::Idle(args) => scenarios::idle::run(args).await,
        Scenario::Churn(args) => scenarios::churn::run(args).await,
        Scenario::Bare(args) => scenarios::bare::run(args).await,
        Scenario::NatsRtt(args) => scenarios::nats::run(args).await,
        Scenario::BareServer(_) => {
            anyhow::bail!("bare-server is a server, not a load scenario; see bare_server::serve")
        }
    }?;
    report.describe_run(cli.scenario.settings(), started);
    Ok(report)
}

/// Runs the scenario, prints the summary table to stdout, and writes the JSON report if `--json`
/// asks for it. Returns the report and, if the run failed, why (lost messages, too many errors).
pub async fn execute(cli: &Cli) -> anyhow::Result<(Report, Option<String>)> {
    let report = run(cli).await?;
    print!("{}", report.table());
    let common = cli.scenario.common();
    if let Some(path) = common.and_then(|c| c.json.as_ref()) {
        report.write_json(path)?;
    }
    let failure = report.failure(common.map_or(0.0, |c| c.max_error_rate));
    Ok((report, failure))
}
