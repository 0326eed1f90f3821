//! `churn`: new connections at `--rate` per second (open loop) for `--duration`; each joins a random
//! room of a pool of `--rooms`, stays a random time between `--stay-min` and `--stay-max`, sends
//! `leave_room` and disconnects. Measures join latency and counts errors.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;
use tokio::time::Instant;

use super::Setup;
use crate::cli::ChurnArgs;
use crate::client::error_text;
use crate::progress::Stage;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::stats::{Errors, Latency};

/// Failed connects, with none succeeded, after which a run gives up: the servers cannot be reached.
const UNREACHABLE_AFTER: u64 = 5;

/// What one visit (connect, join, stay, leave) measured.
#[derive(Default)]
struct Visit {
    join: Latency,
    errors: Errors,
}

/// Runs the scenario.
pub async fn run(args: &ChurnArgs) -> Result<Report> {
    if args.stay_min > args.stay_max {
        bail!("--stay-min must not exceed --stay-max");
    }
    let setup = Arc::new(Setup::new("churn", &args.common)?);
    let start = Instant::now() + Duration::from_millis(10);
    let end = start + args.duration;
    let mut schedule = Schedule::new(start, end, args.rate, 0.0);
    setup.progress.stage(Stage::Timed {
        name: "churning",
        start,
        length: args.duration,
    });
    let mut tasks = Vec::new();
    while let Some((seq, at)) = schedule.peek() {
        tokio::time::sleep_until(at).await;
        if let Err(e) = setup.connector.check_reachable(UNREACHABLE_AFTER) {
            tasks.iter().for_each(tokio::task::JoinHandle::abort);
            return Err(e);
        }
        schedule.advance();
        let room = setup.room(rand::random_range(0..args.rooms));
        let stay = if args.stay_max > args.stay_min {
            rand::random_range(args.stay_min..=args.stay_max)
        } else {
            args.stay_min
        };
        tasks.push(tokio::spawn(visit(setup.clone(), seq as usize, room, stay)));
    }
    setup
        .progress
        .stage(Stage::Waiting("waiting for the last visits"));
    let visits = tasks.len() as u64;
    let mut join = Latency::new();
    let mut errors = Errors::default();
    for task in tasks {
        match task.await {
            Ok(visit) => {
                join.merge(&visit.join);
                errors.merge(&visit.errors);
            }
            Err(e) => errors.add(format!("visit task failed: {e}")),
        }
    }
    let joined = join.count();
    let mut report = Report::new(
        "churn",
        visits,
        args.duration.as_secs_f64(),
        (visits, joined, joined),
        &errors,
        2 * visits,
    );
    report.latencies.insert("join".into(), join.summary());
    Ok(report)
}

async fn visit(setup: Arc<Setup>, index: usize, room: String, stay: Duration) -> Visit {
    let mut visit = Visit::default();
    let error = |visit: &mut Visit, text: String| {
        setup.counters.error();
        visit.errors.add(text);
    };
    setup.counters.sent(1);
    let mut member = match setup
        .connect_and_join(index, &room, json!({"name": format!("lt{index}")}))
        .await
    {
        Ok(member) => member,
        Err(e) => {
            error(&mut visit, e.to_string());
            return visit;
        }
    };
    setup.counters.received();
    visit.join.record(member.joined.latency);
    let leave_at = Instant::now() + stay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(leave_at) => break,
            message = member.conn.recv() => match message {
                Ok(Some(message)) => match message["event"].as_str().unwrap_or_default() {
                    "error" => error(&mut visit, format!("server error: {}", error_text(&message))),
                    "shutdown" => error(&mut visit, "server shutting down".into()),
                    _ => {}
                },
                Ok(None) => {
                    error(&mut visit, "connection closed by the server".into());
                    break;
                }
                Err(e) => {
                    error(&mut visit, e.to_string());
                    break;
                }
            },
        }
    }
    if let Err(e) = member.conn.send(&json!({"event": "leave_room"})).await {
        error(&mut visit, e.to_string());
    }
    setup.counters.disconnected();
    member.conn.close().await;
    visit
}
