//! `call`: rooms of peers that negotiate as WebRTC peers do, then exchange `message`s.
//!
//! Each pair of peers runs offer -> answer -> `--ice` candidates each way (the earlier joiner
//! offers). Once every pair has negotiated, every peer sends `message`s to its peers in turn, on an
//! open-loop schedule whose rates add up to `--rate`. Each `message` carries a sequence number and its
//! intended send instant (µs since the run's start), so the receiver measures relay latency and
//! checks per-sender order.
//!
//! The report's `sent`, `expected`, `received`, `lost` and throughput count the `message`s of the
//! measured phase, as in every scenario; negotiation (offers, answers, candidates: set-up traffic, not
//! rate-controlled) is counted apart, as `negotiation_sent` and `negotiation_received`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Member, Phase, SenderResult, Setup};
use crate::cli::CallArgs;
use crate::client::error_text;
use crate::progress::Stage;
use crate::report::Report;
use crate::schedule::Schedule;
use crate::stats::Counters;

/// What one peer's task needs.
struct Peer {
    member: Member,
    /// Its place in the global list of peers (spreads the schedules' phases).
    number: usize,
    /// The other members' ids, in join order; `place` is this peer's own place in that order.
    others: Vec<String>,
    place: usize,
    ice: u32,
    rate: f64,
    total_peers: usize,
    base: Instant,
    counters: Counters,
}

/// Runs the scenario.
pub async fn run(args: &CallArgs) -> Result<Report> {
    let setup = Setup::new("call", &args.common)?;
    let peers_per_room = args.peers as usize;
    let total = args.rooms as usize * peers_per_room;
    let per_connection = args.rate / total as f64;
    setup.warn_rate(
        per_connection,
        (peers_per_room as u64 - 1) * (1 + u64::from(args.ice)),
    );

    let rooms = (0..args.rooms)
        .map(|r| {
            let first = r as usize * peers_per_room;
            (setup.room(r), (first..first + peers_per_room).collect())
        })
        .collect();
    let joined = setup.join_rooms(rooms).await?;
    let mut errors = joined.errors;
    setup.progress.stage(Stage::Waiting("negotiating"));

    let base = Instant::now();
    let cancel = CancellationToken::new();
    let (phase_tx, phase_rx) = watch::channel(None::<Phase>);
    let (negotiated_tx, mut negotiated_rx) = tokio::sync::mpsc::channel::<()>(total.max(1));
    // One `()` per peer once it sent its last scheduled `message` (or never will).
    let (finished_tx, mut finished_rx) = tokio::sync::mpsc::channel::<()>(total.max(1));
    let mut tasks = Vec::new();
    let mut number = 0;
    for room in joined.rooms {
        let ids: Vec<String> = room.iter().map(|m| m.joined.own_id.clone()).collect();
        for (place, member) in room.into_iter().enumerate() {
            let others = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != place)
                .map(|(_, id)| id.clone())
                .collect();
            let peer = Peer {
                member,
                number,
                others,
                place,
                ice: args.ice,
                rate: per_connection,
                total_peers: total,
                base,
                counters: setup.counters.clone(),
            };
            number += 1;
            tasks.push(tokio::spawn(peer_task(
                peer,
                phase_rx.clone(),
                negotiated_tx.clone(),
                finished_tx.clone(),
                cancel.clone(),
            )));
        }
    }
    drop(negotiated_tx);
    drop(finished_tx);

    // Negotiation is bounded like a join; peers still negotiating then count as lost messages.
    let mut negotiated = 0;
    let negotiation_deadline = Instant::now() + setup.common.join_timeout;
    while negotiated < tasks.len() {
        match tokio::time::timeout_at(negotiation_deadline, negotiated_rx.recv()).await {
            Ok(Some(())) => negotiated += 1,
            Ok(None) | Err(_) => break,
        }
    }

    let (relay, sent, phase_errors) = setup
        .measured_phase(
            args.duration,
            &phase_tx,
            tasks,
            &mut finished_rx,
            &cancel,
            "negotiation incomplete",
        )
        .await;
    errors.merge(&phase_errors);
    // The counters hold every message; `sent` and the relay latencies only the `message`s (each to
    // one peer). The difference is the negotiation.
    let (_, all_expected, all_received, _) = setup.counters.snapshot();
    let received = relay.count();
    let negotiation_sent = all_expected.saturating_sub(sent);
    let negotiation_received = all_received.saturating_sub(received);
    let mut report = Report::new(
        "call",
        total as u64,
        args.duration.as_secs_f64(),
        (sent, sent, received),
        &errors,
        2 * total as u64 + sent + negotiation_sent,
    );
    report
        .extra
        .insert("negotiation_sent".into(), negotiation_sent.into());
    report
        .extra
        .insert("negotiation_received".into(), negotiation_received.into());
    report
        .latencies
        .insert("join".into(), joined.latency.summary());
    report.latencies.insert("relay".into(), relay.summary());
    Ok(report)
}

/// The peer message `event` with `data` to `peer_id`.
fn to_peer(peer_id: &str, data: Value) -> Value {
    json!({"event": "send_to_peer", "peer_id": peer_id, "data": data})
}

struct State {
    peer: Peer,
    result: SenderResult,
    /// Peers this one knows are in the room (from joined_room and new_peer).
    known: HashSet<String>,
    offered: bool,
    /// Negotiation messages received; negotiation is complete at (peers - 1) * (1 + ice).
    negotiation_received: usize,
    /// Highest `message` sequence number seen per sender.
    last_seq: HashMap<String, u64>,
    schedule: Option<Schedule>,
    /// Told once this peer sent its last scheduled `message` (or never will).
    finished: Option<tokio::sync::mpsc::Sender<()>>,
    cancel: CancellationToken,
}

impl State {
    /// Tells the run this peer sends no more `message`s (once).
    async fn finish(&mut self) {
        if let Some(finished) = self.finished.take() {
            let _ = finished.send(()).await;
        }
    }

    /// Sends one message to one peer (it counts as expected there). Scheduled `message`s are also
    /// counted in `result.sent`, by [`send_scheduled`](Self::send_scheduled).
    async fn send(&mut self, message: &Value) -> Result<()> {
        self.peer.member.conn.send(message).await?;
        self.peer.counters.sent(1);
        Ok(())
    }

    fn error(&mut self, text: impl Into<String>) {
        self.peer.counters.error();
        self.result.errors.add(text);
    }

    /// Sends `ice` candidates to `peer_id`.
    async fn send_candidates(&mut self, peer_id: &str) -> Result<()> {
        for i in 0..self.peer.ice {
            let candidate = json!({
                "event": "ice_candidate",
                "sdpmlineindex": 0,
                "sdpmid": "0",
                "candidate": format!("candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host", 50000 + i),
            });
            self.send(&to_peer(peer_id, candidate)).await?;
        }
        Ok(())
    }

    /// Offers to every later joiner once this peer has seen them all join.
    async fn maybe_offer(&mut self) -> Result<()> {
        if self.offered || !self.peer.others.iter().all(|id| self.known.contains(id)) {
            return Ok(());
        }
        self.offered = true;
        let later: Vec<String> = self.peer.others[self.peer.place..].to_vec();
        for id in later {
            let offer = json!({"event": "offer", "sdp": {"type": "offer", "sdp": "v=0 loadtest"}});
            self.send(&to_peer(&id, offer)).await?;
        }
        Ok(())
    }

    /// Handles one message from the server.
    async fn handle(&mut self, message: Value) -> Result<()> {
        let sender = message["sender_id"].as_str().unwrap_or_default().to_owned();
        match message["event"].as_str().unwrap_or_default() {
            "new_peer" => {
                if let Some(id) = message["peer_id"].as_str() {
                    self.known.insert(id.to_owned());
                }
            }
            "offer" => {
                self.negotiated_one();
                let answer =
                    json!({"event": "answer", "sdp": {"type": "answer", "sdp": "v=0 loadtest"}});
                self.send(&to_peer(&sender, answer)).await?;
                self.send_candidates(&sender).await?;
            }
            "answer" => {
                self.negotiated_one();
                self.send_candidates(&sender).await?;
            }
            "ice_candidate" => self.negotiated_one(),
            "message" => self.on_message(&sender, &message),
            "error" => {
                let text = format!("server error: {}", error_text(&message));
                self.error(text);
            }
            // Peers leave at the end, when the run is cancelled; before that nobody should.
            "peer_left" if !self.cancel.is_cancelled() => self.error("unexpected peer_left"),
            "shutdown" => self.error("server shutting down"),
            _ => {}
        }
        Ok(())
    }

    fn negotiated_one(&mut self) {
        self.negotiation_received += 1;
        self.peer.counters.received();
    }

    fn negotiation_complete(&self) -> bool {
        self.negotiation_received >= self.peer.others.len() * (1 + self.peer.ice as usize)
    }

    fn on_message(&mut self, sender: &str, message: &Value) {
        let (Some(seq), Some(sent_us)) = (message["seq"].as_u64(), message["sent_us"].as_u64())
        else {
            self.error("malformed message");
            return;
        };
        self.peer.counters.received();
        let intended = self.peer.base + Duration::from_micros(sent_us);
        self.result
            .relay
            .record(Instant::now().saturating_duration_since(intended));
        let last = self.last_seq.insert(sender.to_owned(), seq);
        if last.is_some_and(|last| last >= seq) {
            self.error("message out of order");
        }
    }

    /// Sends the next scheduled `message`, stamped with its intended instant.
    async fn send_scheduled(&mut self) -> Result<()> {
        let Some((seq, at)) = self.schedule.as_ref().and_then(Schedule::peek) else {
            return Ok(());
        };
        if let Some(schedule) = self.schedule.as_mut() {
            schedule.advance();
        }
        let others = &self.peer.others;
        let target = others[seq as usize % others.len()].clone();
        let sent_us = u64::try_from(at.saturating_duration_since(self.peer.base).as_micros())
            .unwrap_or(u64::MAX);
        let message = json!({"event": "message", "seq": seq, "sent_us": sent_us});
        self.send(&to_peer(&target, message)).await?;
        self.result.sent += 1;
        Ok(())
    }
}

async fn peer_task(
    peer: Peer,
    mut phase: watch::Receiver<Option<Phase>>,
    negotiated: tokio::sync::mpsc::Sender<()>,
    finished: tokio::sync::mpsc::Sender<()>,
    cancel: CancellationToken,
) -> SenderResult {
    let known = peer.member.joined.peers.iter().cloned().collect();
    let mut state = State {
        peer,
        result: SenderResult::default(),
        known,
        offered: false,
        negotiation_received: 0,
        last_seq: HashMap::new(),
        schedule: None,
        finished: Some(finished),
        cancel: cancel.clone(),
    };
    if let Err(e) = drive(&mut state, &mut phase, &negotiated, &cancel).await {
        state.error(e.to_string());
    }
    state.finish().await;
    state.peer.counters.disconnected();
    state.result.ready = state.negotiation_complete();
    let State { peer, result, .. } = state;
    peer.member.conn.close().await;
    result
}

async fn drive(
    state: &mut State,
    phase: &mut watch::Receiver<Option<Phase>>,
    negotiated: &tokio::sync::mpsc::Sender<()>,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut reported = false;
    let mut phase_open = true;
    state.maybe_offer().await?;
    loop {
        if !reported && state.negotiation_complete() {
            reported = true;
            let _ = negotiated.send(()).await;
        }
        let next_send = state.schedule.as_ref().and_then(Schedule::peek);
        if state.schedule.is_some() && next_send.is_none() {
            state.finish().await;
        }
        // Unbiased: neither reading nor the schedule may starve the other.
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = phase.changed(), if phase_open && state.schedule.is_none() => {
                if changed.is_err() {
                    phase_open = false;
                    continue;
                }
                if let Some(p) = *phase.borrow_and_update() {
                    let offset = state.peer.number as f64 / state.peer.total_peers as f64;
                    state.schedule = Some(Schedule::new(p.start, p.end, state.peer.rate, offset));
                }
            }
            message = state.peer.member.conn.recv() => match message? {
                Some(message) => {
                    state.handle(message).await?;
                    state.maybe_offer().await?;
                }
                None => anyhow::bail!("connection closed by the server"),
            },
            _ = tokio::time::sleep_until(next_send.map_or_else(Instant::now, |(_, at)| at)),
                if next_send.is_some() => state.send_scheduled().await?,
        }
    }
}
