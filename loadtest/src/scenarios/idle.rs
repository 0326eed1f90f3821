//! `idle`: `--connections` joined into rooms of `--peers` and kept idle for `--duration`; reports the
//! server's resident memory before connecting, once all have joined, and at the end, and the growth
//! per connection.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use switchboard_runtime::signal::Signals;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Member, Setup};
use crate::cli::IdleArgs;
use crate::client::{error_text, loopback_addr_with_scheme};
use crate::memory::Source;
use crate::progress::Stage;
use crate::report::Report;
use crate::stats::{Counters, Errors};

/// Runs the scenario.
pub async fn run(args: &IdleArgs) -> Result<Report> {
    let source = match (&args.metrics, args.pid) {
        (Some(url), _) => {
            loopback_addr_with_scheme(url, "http")?;
            Some(Source::Metrics(url.clone()))
        }
        (None, Some(pid)) => Some(Source::Pid(pid)),
        (None, None) => None,
    };
    // Handlers first, so that holding connections "until stopped" (a long --duration ended by
    // SIGTERM or Ctrl-C, as scripts/bench does) still ends with a report, even when the signal
    // comes while connections are still being opened.
    let mut signals = Signals::new();
    let setup = Setup::new("idle", &args.common)?;
    let mut errors = Errors::default();
    let before = match &source {
        Some(source) => Some(source.rss_bytes().await?),
        None => {
            setup
                .progress
                .println("warning: neither --metrics nor --pid given; memory is not reported");
            None
        }
    };

    let n = args.connections as usize;
    let k = args.peers as usize;
    let rooms = (0..n.div_ceil(k))
        .map(|r| {
            (
                setup.room(r as u32),
                (r * k..((r + 1) * k).min(n)).collect(),
            )
        })
        .collect();
    let joined = setup.join_rooms(rooms).await?;
    errors.merge(&joined.errors);
    let members: Vec<Member> = joined.rooms.into_iter().flatten().collect();
    let connected = members.len() as u64;
    // Scripts holding connections for another measurement wait for this line (scripts/bench).
    setup
        .progress
        .println(format!("joined {connected} of {n} connections; idle now"));
    let rss_joined = read(&source, &mut errors).await;

    let started = Instant::now();
    setup.progress.stage(Stage::timed("idle", args.duration));
    let cancel = CancellationToken::new();
    let tasks: Vec<_> = members
        .into_iter()
        .map(|member| tokio::spawn(idle(member, setup.counters.clone(), cancel.clone())))
        .collect();
    tokio::select! {
        () = tokio::time::sleep(args.duration) => {}
        stop = signals.next() => setup
            .progress
            .println(format!("{stop:?}: ending the idle phase early")),
    }
    // Read before closing: the connections are still held.
    let rss_end = read(&source, &mut errors).await;
    cancel.cancel();
    for task in tasks {
        match task.await {
            Ok(e) => errors.merge(&e),
            Err(e) => errors.add(format!("connection task failed: {e}")),
        }
    }

    let mut report = Report::new(
        "idle",
        n as u64,
        started.elapsed().as_secs_f64(),
        (0, 0, 0),
        &errors,
        2 * n as u64,
    );
    report
        .latencies
        .insert("join".into(), joined.latency.summary());
    report.extra.insert("connected".into(), json!(connected));
    if let Some(before) = before {
        report
            .extra
            .insert("rss_before_bytes".into(), json!(before));
        if let Some(joined) = rss_joined {
            report
                .extra
                .insert("rss_joined_bytes".into(), json!(joined));
            let per = joined.saturating_sub(before) as f64 / connected.max(1) as f64;
            report
                .extra
                .insert("bytes_per_connection".into(), json!(per.round() as u64));
        }
        if let Some(end) = rss_end {
            report.extra.insert("rss_end_bytes".into(), json!(end));
        }
    }
    Ok(report)
}

async fn read(source: &Option<Source>, errors: &mut Errors) -> Option<u64> {
    match source.as_ref()?.rss_bytes().await {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            errors.add(format!("memory: {e}"));
            None
        }
    }
}

/// Holds one connection open, reading (which also answers the server's pings) until cancelled.
async fn idle(mut member: Member, counters: Counters, cancel: CancellationToken) -> Errors {
    let mut errors = Errors::default();
    let mut error = |text: String| {
        counters.error();
        errors.add(text);
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            message = member.conn.recv() => match message {
                Ok(Some(message)) => match message["event"].as_str().unwrap_or_default() {
                    "error" => error(format!("server error: {}", error_text(&message))),
                    "shutdown" => error("server shutting down".into()),
                    _ => {}
                },
                Ok(None) => {
                    error("connection closed by the server".into());
                    break;
                }
                Err(e) => {
                    error(e.to_string());
                    break;
                }
            },
        }
    }
    counters.disconnected();
    // Closing many connections at once may take a while; the scenario's time is bounded.
    let _ = tokio::time::timeout(Duration::from_secs(2), member.conn.close()).await;
    errors
}
