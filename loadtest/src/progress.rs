//! The live progress line on stderr (hidden when stderr is not a terminal): the stage of the run
//! with how far it is and how long it has left, then the live totals.
//!
//! `⠋ call [00:00:04] measuring 3.2 of 10.0 s, ETA 6.8 s | connections 40  expected 1234  …`

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::stats::Counters;

/// What a run is doing now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// Nothing to report yet.
    Starting,
    /// Opening (and joining) `total` connections; done are those joined plus those that failed.
    Connecting {
        /// Connections to open.
        total: u64,
        /// When this stage began.
        since: Instant,
    },
    /// Something whose end is not known in advance (negotiating, pairing).
    Waiting(&'static str),
    /// A stage of known length, `name` from `start` for `length` (measuring, idle, draining).
    Timed {
        /// What the run does meanwhile.
        name: &'static str,
        /// When it began.
        start: Instant,
        /// How long it lasts (at most, for draining).
        length: Duration,
    },
}

impl Stage {
    /// A stage of `length` starting now.
    pub fn timed(name: &'static str, length: Duration) -> Stage {
        Stage::Timed {
            name,
            start: Instant::now(),
            length,
        }
    }

    /// Opening `total` connections, from now.
    pub fn connecting(total: u64) -> Stage {
        Stage::Connecting {
            total,
            since: Instant::now(),
        }
    }
}

/// The stage's part of the progress line at `now`, given `(connected, expected, received, errors)`.
pub fn describe(
    stage: &Stage,
    now: Instant,
    (connected, _, _, errors): (u64, u64, u64, u64),
) -> String {
    match *stage {
        Stage::Starting => "starting".into(),
        Stage::Connecting { total, since } => {
            let done = (connected + errors).min(total);
            let elapsed = now.saturating_duration_since(since);
            let eta = match done {
                0 => "ETA ?".to_owned(),
                _ if done >= total => "ETA 0 s".to_owned(),
                _ => format!(
                    "ETA {:.0} s",
                    elapsed.as_secs_f64() / done as f64 * (total - done) as f64
                ),
            };
            format!("connecting {done} of {total}, {eta}")
        }
        Stage::Waiting(name) => name.into(),
        Stage::Timed {
            name,
            start,
            length,
        } => {
            let elapsed = now.saturating_duration_since(start).min(length);
            format!(
                "{name} {:.1} of {:.1} s, ETA {:.1} s",
                elapsed.as_secs_f64(),
                length.as_secs_f64(),
                (length - elapsed).as_secs_f64()
            )
        }
    }
}

/// A progress line redrawn a few times a second until dropped.
pub struct Progress {
    bar: ProgressBar,
    stage: watch::Sender<Stage>,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing `counters` for `scenario` (or nothing, when `hidden`).
    pub fn start(scenario: &str, counters: Counters, hidden: bool) -> Progress {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {msg}") {
            bar.set_style(style);
        }
        bar.set_prefix(scenario.to_owned());
        let (stage, watched) = watch::channel(Stage::Starting);
        let task = tokio::spawn({
            let bar = bar.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let totals = counters.snapshot();
                    let (connected, sent, received, errors) = totals;
                    let stage = describe(&watched.borrow(), Instant::now(), totals);
                    bar.set_message(format!(
                        "{stage} | connections {connected}  expected {sent}  received {received}  \
                         errors {errors}"
                    ));
                    bar.tick();
                }
            }
        });
        Progress { bar, stage, task }
    }

    /// Shows that the run is now at `stage`.
    pub fn stage(&self, stage: Stage) {
        self.stage.send_replace(stage);
    }

    /// Prints a line above the progress line.
    pub fn println(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_show_how_far_and_how_long() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let measuring = Stage::Timed {
            name: "measuring",
            start: t0,
            length: s(10),
        };
        assert_eq!(
            describe(&measuring, t0 + Duration::from_millis(3200), (4, 0, 0, 0)),
            "measuring 3.2 of 10.0 s, ETA 6.8 s"
        );
        assert_eq!(
            describe(&measuring, t0 + s(12), (4, 0, 0, 0)),
            "measuring 10.0 of 10.0 s, ETA 0.0 s"
        );
        let connecting = Stage::Connecting {
            total: 400,
            since: t0,
        };
        // 100 joined and 20 failed in 3 s: the other 280 take 7 s more at that pace.
        assert_eq!(
            describe(&connecting, t0 + s(3), (100, 0, 0, 20)),
            "connecting 120 of 400, ETA 7 s"
        );
        assert_eq!(
            describe(&connecting, t0, (0, 0, 0, 0)),
            "connecting 0 of 400, ETA ?"
        );
        assert_eq!(
            describe(&Stage::Waiting("negotiating"), t0, (0, 0, 0, 0)),
            "negotiating"
        );
    }
}
