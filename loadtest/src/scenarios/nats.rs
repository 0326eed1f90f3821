//! `nats-rtt`: pairs of raw NATS connections publishing to each other, the cost floor of the bus
//! hop on this machine, measured like `call`'s message phase.
//!
//! Connection i subscribes to `<run tag>.i` and publishes to its pair's subject (i XOR 1). Its
//! `hello` goes to its own subject: receiving it proves the server has the subscription (the server
//! handles one connection's commands in order). See [`super::pairs`] for the traffic.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use async_nats::{Client, ConnectOptions, Subject, Subscriber};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::Setup;
use super::pairs::{self, Link, Pairs};
use crate::cli::NatsRttArgs;
use crate::client::loopback_addr_with_scheme;
use crate::progress::Stage;
use crate::report::Report;
use crate::stats::Errors;

/// One NATS connection with its subscription.
pub struct NatsLink {
    client: Client,
    subscriber: Subscriber,
    own: Subject,
    pair: Subject,
}

impl NatsLink {
    async fn publish(&mut self, subject: Subject, message: &Value) -> Result<()> {
        let payload = serde_json::to_vec(message).context("cannot serialize")?;
        self.client
            .publish(subject, payload.into())
            .await
            .map_err(|e| anyhow!("publish failed: {e}"))
    }
}

impl Link for NatsLink {
    async fn send(&mut self, message: &Value) -> Result<()> {
        self.publish(self.pair.clone(), message).await
    }

    async fn send_hello(&mut self, message: &Value) -> Result<()> {
        self.publish(self.own.clone(), message).await?;
        self.client
            .flush()
            .await
            .map_err(|e| anyhow!("flush failed: {e}"))
    }

    async fn recv(&mut self) -> Result<Option<Value>> {
        match self.subscriber.next().await {
            None => Ok(None),
            Some(message) => serde_json::from_slice(&message.payload)
                .map(Some)
                .map_err(|_| anyhow!("invalid JSON payload")),
        }
    }

    async fn close(mut self) {
        let _ = self.subscriber.unsubscribe().await;
        let _ = self.client.flush().await;
    }
}

/// Checks that `url` is a loopback `nats://` URL.
fn check_url(url: &str) -> Result<()> {
    // Without a port the URL means 4222; the check is about the host.
    loopback_addr_with_scheme(url, "nats").map(|_| ())
}

/// Runs the scenario.
pub async fn run(args: &NatsRttArgs) -> Result<Report> {
    if !args.common.urls.is_empty() {
        bail!("nats-rtt takes --nats, not --url");
    }
    check_url(&args.nats)?;
    // `Setup` checks WebSocket targets; nats-rtt has none, so it gets a placeholder.
    let mut common = args.common.clone();
    common.urls = vec!["ws://127.0.0.1:9/".into()];
    let setup = Setup::new("nats", &common)?;
    let tag = format!("{}.{}", setup.tag, std::process::id());
    let total = 2 * args.load.pairs as usize;
    setup.progress.stage(Stage::connecting(total as u64));
    let limit = Arc::new(Semaphore::new(common.connect_concurrency as usize));
    let results = futures_util::future::join_all((0..total).map(|number| {
        let limit = limit.clone();
        let tag = &tag;
        let url = args.nats.as_str();
        let timeout = common.connect_timeout;
        async move {
            let _permit = limit.acquire().await.map_err(|_| anyhow!("closed"))?;
            let client = ConnectOptions::new()
                .connection_timeout(timeout)
                .name(format!("switchboard-loadtest-{number}"))
                .connect(url)
                .await
                .map_err(|e| anyhow!("nats connect failed: {e}"))?;
            let own = Subject::from(format!("{tag}.{number}"));
            let pair = Subject::from(format!("{tag}.{}", number ^ 1));
            let subscriber = client
                .subscribe(own.clone())
                .await
                .map_err(|e| anyhow!("subscribe failed: {e}"))?;
            Ok::<_, anyhow::Error>(NatsLink {
                client,
                subscriber,
                own,
                pair,
            })
        }
    }))
    .await;
    let mut errors = Errors::default();
    let mut first_error = None;
    let links: Vec<_> = results
        .into_iter()
        .map(|result| match result {
            Ok(link) => Some(link),
            Err(e) => {
                setup.counters.error();
                errors.add(e.to_string());
                first_error.get_or_insert(e);
                None
            }
        })
        .collect();
    if let Some(e) = first_error.filter(|_| links.iter().all(Option::is_none)) {
        bail!(
            "cannot connect to {}: {e:#} ({total} attempt(s), none succeeded; is the server running?)",
            args.nats
        );
    }
    pairs::run(
        &setup,
        Pairs {
            scenario: "nats",
            links,
            hello_from: |number| number,
            ready_timeout: common.connect_timeout,
            rate: args.load.rate,
            duration: args.load.duration,
            errors,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_url_must_be_loopback() {
        assert!(check_url("nats://127.0.0.1:4222").is_ok());
        assert!(check_url("nats://localhost:4222").is_ok());
        assert!(check_url("nats://10.1.2.3:4222").is_err());
        assert!(check_url("ws://127.0.0.1:4222").is_err());
    }
}
