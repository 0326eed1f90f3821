//! `bare`: pairs of WebSocket connections exchanging messages through a `bare-server`, the cost
//! floor of a WebSocket relay on this machine, measured with the same client code as `call`.
//!
//! The 2 x `--pairs` connections are opened one after the other, so that the server, which pairs
//! connections in arrival order, pairs 2i with 2i+1. The first connect failure ends the opening
//! (later connections would be paired wrongly); what opened in whole pairs runs. See
//! [`super::pairs`] for the traffic.

use anyhow::Result;
use serde_json::Value;

use super::Setup;
use super::pairs::{self, Link, Pairs};
use crate::cli::BareArgs;
use crate::client::Conn;
use crate::progress::Stage;
use crate::report::Report;
use crate::stats::Errors;

impl Link for Conn {
    async fn send(&mut self, message: &Value) -> Result<()> {
        Conn::send(self, message).await
    }

    async fn send_hello(&mut self, message: &Value) -> Result<()> {
        // Through the relay, to the pair.
        Conn::send(self, message).await
    }

    async fn recv(&mut self) -> Result<Option<Value>> {
        Conn::recv(self).await
    }

    async fn close(self) {
        Conn::close(self).await;
    }
}

/// Runs the scenario.
pub async fn run(args: &BareArgs) -> Result<Report> {
    let setup = Setup::new("bare", &args.common)?;
    let total = 2 * args.load.pairs as usize;
    let mut links = Vec::with_capacity(total);
    let mut errors = Errors::default();
    setup.progress.stage(Stage::connecting(total as u64));
    for index in 0..total {
        match setup.connector.connect(index).await {
            Ok(conn) => links.push(Some(conn)),
            Err(e) => {
                setup.counters.error();
                errors.add(e.to_string());
                break;
            }
        }
    }
    setup.connector.check_reachable(1)?;
    // An unpaired last connection is closed (it would shift the server's pairing for anyone else).
    if links.len() % 2 == 1
        && let Some(Some(conn)) = links.pop()
    {
        conn.close().await;
    }
    links.resize_with(total, || None);
    pairs::run(
        &setup,
        Pairs {
            scenario: "bare",
            links,
            hello_from: |number| number ^ 1,
            ready_timeout: setup.common.connect_timeout,
            rate: args.load.rate,
            duration: args.load.duration,
            errors,
        },
    )
    .await
}
