//! Command-line flags: the options every scenario shares ([`Common`]) and one subcommand per scenario.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use switchboard_runtime::config::parse_duration;

/// A duration in the reports' settings as it is written on the command line (`10s`, `1m 30s`).
fn duration_text<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*duration).to_string())
}

/// Load generator for palava-compatible signaling servers (loopback only).
#[derive(Debug, Parser)]
#[command(
    name = "switchboard-loadtest",
    version,
    after_help = "Every scenario takes the common flags (--url, --source-ips, --json, --max-error-rate, \
                  timeouts); see `switchboard-loadtest <SCENARIO> --help`. `bare-server`, `bare` and \
                  `nats-rtt` measure reference points with the same client code: a minimal WebSocket \
                  relay and raw NATS publish/subscribe.\n\
                  Exit status: 0 if no message was lost and the error rate is within --max-error-rate, \
                  1 otherwise, 2 on bad usage or when no server could be reached."
)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Rooms of peers that negotiate (offer, answer, ICE candidates), then exchange `message`s at an
    /// open-loop total rate; measures join and relay latency.
    Call(CallArgs),
    /// One room; some members send `update_status` at a rate and every member must receive each
    /// `peer_updated_status`; measures fan-out latency.
    Fanout(FanoutArgs),
    /// Many joined, idle connections; reports the server's resident memory per connection.
    Idle(IdleArgs),
    /// Connections join a random room of a pool at a rate, stay a short random time and leave;
    /// measures join latency and errors.
    Churn(ChurnArgs),
    /// Reference: a minimal WebSocket relay (no JSON, no rooms) that pairs connections in arrival
    /// order and forwards every text frame verbatim to the pair. Not a load scenario: it serves
    /// until SIGINT or SIGTERM.
    BareServer(BareServerArgs),
    /// Reference: opens 2 x --pairs connections in order to a `bare-server` and exchanges messages
    /// between the pairs at an open-loop total rate, like `call`'s message phase; measures relay
    /// latency. The cost floor of a WebSocket relay on this machine.
    // `--join-timeout` and `--connect-concurrency` mean nothing here (no joins, connects are
    // sequential so that the server pairs them in order).
    #[command(
        mut_arg("join_timeout", |a| a.hide(true)),
        mut_arg("connect_concurrency", |a| a.hide(true))
    )]
    Bare(BareArgs),
    /// Reference: 2 x --pairs raw NATS connections; each subscribes to its own subject and
    /// publishes to its pair's at an open-loop total rate, like `call`'s message phase; measures
    /// publish-to-delivery latency. The cost floor of the bus hop on this machine.
    // NATS replaces the WebSocket targets: `--url` is refused, and joins do not exist.
    #[command(
        mut_arg("urls", |a| a.required(false).hide(true)),
        mut_arg("join_timeout", |a| a.hide(true)),
        mut_arg("source_ips", |a| a.hide(true))
    )]
    NatsRtt(NatsRttArgs),
}

impl Scenario {
    /// The scenario's flags as JSON, for the report: every setting of the run (`Null` for
    /// `bare-server`).
    pub fn settings(&self) -> serde_json::Value {
        let settings = match self {
            Scenario::Call(a) => serde_json::to_value(a),
            Scenario::Fanout(a) => serde_json::to_value(a),
            Scenario::Idle(a) => serde_json::to_value(a),
            Scenario::Churn(a) => serde_json::to_value(a),
            Scenario::Bare(a) => serde_json::to_value(a),
            Scenario::NatsRtt(a) => serde_json::to_value(a),
            Scenario::BareServer(_) => Ok(serde_json::Value::Null),
        };
        // Plain structs of numbers, strings and paths always serialize.
        settings.unwrap_or_default()
    }

    /// The flags every scenario takes (`None` for `bare-server`, which is not a load scenario).
    pub fn common(&self) -> Option<&Common> {
        match self {
            Scenario::Call(a) => Some(&a.common),
            Scenario::Fanout(a) => Some(&a.common),
            Scenario::Idle(a) => Some(&a.common),
            Scenario::Churn(a) => Some(&a.common),
            Scenario::Bare(a) => Some(&a.common),
            Scenario::NatsRtt(a) => Some(&a.common),
            Scenario::BareServer(_) => None,
        }
    }
}

/// Flags every scenario takes.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// WebSocket URL of a server, e.g. ws://127.0.0.1:4233/ (repeatable or comma-separated; clients
    /// are spread round-robin over them). Only loopback hosts are allowed.
    #[arg(
        long = "url",
        value_name = "URL",
        required = true,
        value_delimiter = ','
    )]
    pub urls: Vec<String>,

    /// Spread the clients' TCP source addresses over 127.0.0.1 ..= 127.0.0.N (more ephemeral ports
    /// for many connections).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,

    /// Write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Highest error rate (errors per operation: connects, joins and messages sent) that still
    /// passes, from 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub max_error_rate: f64,

    /// Bound on one TCP connect and WebSocket upgrade.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub connect_timeout: Duration,

    /// Bound on one join (join_room until joined_room).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub join_timeout: Duration,

    /// How long to wait at the end for messages still in flight; what has not arrived by then is lost.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub drain_timeout: Duration,

    /// Connects (and joins) in progress at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,

    /// Do not draw the live progress line.
    #[arg(long)]
    pub no_progress: bool,
}

/// Flags of `call`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct CallArgs {
    /// Common flags.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,

    /// Number of rooms.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rooms: u32,

    /// Peers per room.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..))]
    pub peers: u32,

    /// ICE candidates each peer sends each other peer after offer and answer.
    #[arg(long, default_value_t = 5)]
    pub ice: u32,

    /// Total `message` rate over all connections, messages per second (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// How long `message` traffic runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub duration: Duration,
}

/// Flags of `fanout`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct FanoutArgs {
    /// Common flags.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,

    /// Members of the room.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub members: u32,

    /// Members that send status updates (the rate is split between them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub senders: u32,

    /// Total `update_status` rate, updates per second (open loop).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// How long updates are sent.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub duration: Duration,
}

/// Flags of `idle`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    /// Common flags.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,

    /// Connections to open and join.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Peers per room.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub peers: u32,

    /// How long the connections stay idle once all have joined. SIGINT (Ctrl-C) or SIGTERM ends
    /// this early; the report is still printed and written.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub duration: Duration,

    /// The server's Prometheus endpoint (loopback), read for `process_resident_memory_bytes`, e.g.
    /// http://127.0.0.1:9233/metrics.
    #[arg(long, value_name = "URL")]
    pub metrics: Option<String>,

    /// The server's process id, for its VmRSS in `/proc/<pid>/status` (instead of --metrics).
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Flags of `churn`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ChurnArgs {
    /// Common flags.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,

    /// New connections (join, stay, leave) per second (open loop).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,

    /// How long new connections are started.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub duration: Duration,

    /// Size of the pool of rooms the connections join at random.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rooms: u32,

    /// Shortest stay in a room.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub stay_min: Duration,

    /// Longest stay in a room.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub stay_max: Duration,
}

/// Flags of `bare-server`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BareServerArgs {
    /// Address to listen on (loopback only); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Once listening, write `{"listen":"ADDR"}` to this file (atomically: temporary file, then
    /// rename). The address is also printed on stdout.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Frames queued per connection for writing; a connection whose queue is full (it does not
    /// read) is dropped.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
}

/// Flags of `bare`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BareArgs {
    /// Common flags (--url must point at a `bare-server`).
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,

    /// Pairs, rate and duration.
    #[command(flatten)]
    #[serde(flatten)]
    pub load: PairLoad,
}

/// The load of the reference scenarios (`bare`, `nats-rtt`).
#[derive(Debug, Clone, Args, Serialize)]
pub struct PairLoad {
    /// Pairs of connections (2 x N connections, opened one after the other).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub pairs: u32,

    /// Total message rate over all connections, messages per second (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// How long messages are sent.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub duration: Duration,
}

/// Flags of `nats-rtt`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct NatsRttArgs {
    /// Common flags (without --url: the target is --nats).
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,

    /// NATS server URL, e.g. nats://127.0.0.1:4222 (loopback only).
    #[arg(long, value_name = "URL")]
    pub nats: String,

    /// Pairs (of NATS connections), rate and duration.
    #[command(flatten)]
    #[serde(flatten)]
    pub load: PairLoad,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn urls_may_repeat_or_be_comma_separated() {
        let cli = Cli::parse_from([
            "switchboard-loadtest",
            "call",
            "--url",
            "ws://127.0.0.1:1/,ws://127.0.0.1:2/",
            "--url",
            "ws://localhost:3/",
        ]);
        let Scenario::Call(args) = cli.scenario else {
            panic!("not call")
        };
        assert_eq!(args.common.urls.len(), 3);
        assert_eq!(args.peers, 4);
    }

    #[test]
    fn references_parse() {
        let cli = Cli::parse_from([
            "switchboard-loadtest",
            "nats-rtt",
            "--nats",
            "nats://127.0.0.1:4222",
            "--pairs",
            "3",
        ]);
        let Scenario::NatsRtt(args) = &cli.scenario else {
            panic!("not nats-rtt")
        };
        assert!(args.common.urls.is_empty());
        assert_eq!(args.load.pairs, 3);
        assert!(cli.scenario.common().is_some());
        // bare needs its server's URL.
        assert!(Cli::try_parse_from(["switchboard-loadtest", "bare"]).is_err());
        let cli = Cli::parse_from(["switchboard-loadtest", "bare-server"]);
        assert!(cli.scenario.common().is_none());
    }
}
