//! Test support for Switchboard's cluster and TURN tests: real processes on free loopback ports, no
//! mocks.
//!
//! Integration tests take this crate as a dev-dependency to start a clustered `nats-server` with
//! JetStream ([`NatsCluster`]) and our own binaries ([`Process`]), then speak to them over real
//! sockets. Everything listens on 127.0.0.1 with ports the processes chose themselves and reported
//! back (nats-server's ports file, our `--ready-file`), so tests never guess ports and never sleep
//! to wait for start-up. Every process is owned by a guard that kills it on drop, panics included.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use switchboard_testkit::{NatsCluster, Process, binary_path};
//!
//! let nats = NatsCluster::start(3).await?;
//! let edge = Process::spawn(
//!     binary_path("switchboard-edge")?,
//!     ["--nats", &nats.url_list(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
//! )
//! .await?;
//! let ws_url = format!("ws://{}/", edge.addr("listen")?);
//! # let _ = ws_url;
//! # Ok(())
//! # }
//! ```
//!
//! Set `SWITCHBOARD_KEEP_TEST_DIRS=1` to keep the temporary directories (configurations, logs,
//! JetStream stores) after a test for a post-mortem; their paths are in the error messages.
//!
//! Tests of TURN credentials get a real coturn ([`Coturn`]) and make real allocations on it
//! ([`coturn::allocate`]). coturn cannot report the ports it bound, so it gets ports checked free
//! and kept apart from every other coturn of the test process, and it is ready when it answers a
//! STUN binding request.
//!
//! Tests of the Consul integration get [`ConsulAgent`], an HTTP stand-in for the local agent's API
//! (no Consul binary runs here), which records every request.
//!
//! Tests of tracing export get [`OtlpReceiver`], an OTLP trace receiver (gRPC and HTTP) on the
//! official protobuf definitions (no collector binary installs here), which records every span and
//! checks and prints traces as trees.
//!
//! # Layout
//! - [`consul`]: [`ConsulAgent`], the Consul agent's HTTP API as Switchboard uses it, recorded.
//! - [`coturn`]: [`Coturn`], coturn's `turnserver` with REST-API secrets; TURN allocations.
//! - [`otlp`]: [`OtlpReceiver`], OTLP/gRPC and OTLP/HTTP trace export, recorded as [`otlp::ReceivedSpan`]s.
//! - [`nats`]: [`NatsCluster`], N clustered `nats-server` nodes with JetStream; kill and restart nodes.
//! - [`process`]: [`Process`], one of our binaries started with `--ready-file`; signals; [`binary_path`].
//! - [`http`]: [`http_get`], a plain HTTP/1.0 GET for health, metrics and monitoring endpoints.
//! - [`wait`]: [`wait_until`], a bounded poll for a condition.
//! - [`tempdir`]: [`TempDir`], the temporary directories, removed on drop unless kept for debugging.

pub mod consul;
pub mod coturn;
pub mod http;
pub mod nats;
pub mod otlp;
pub mod process;
pub mod tempdir;
pub mod wait;

pub use consul::ConsulAgent;
pub use coturn::Coturn;
pub use http::http_get;
pub use nats::NatsCluster;
pub use otlp::OtlpReceiver;
pub use process::{Process, binary_path};
pub use tempdir::TempDir;
pub use wait::wait_until;

/// Environment variable that keeps the temporary directories of a test when set (to anything).
pub const KEEP_DIRS_ENV: &str = "SWITCHBOARD_KEEP_TEST_DIRS";
