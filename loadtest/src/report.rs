//! The result of a run: serialized as JSON (`--json`), printed as a table, and judged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::stats::{Errors, LatencySummary};

/// What a scenario measured, and how it was run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `call`, `fanout`, `idle` or `churn`.
    pub scenario: String,
    /// This load generator's version.
    pub version: String,
    /// The git commit it was built from, when it was built from a git checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the run started, RFC 3339 in UTC (empty until [`Report::describe_run`]).
    pub started_at: String,
    /// The run's flags: URLs, rate, sizes, durations, timeouts (`null` until
    /// [`Report::describe_run`]).
    pub settings: Value,
    /// Connections opened (attempted) during the run.
    pub connections: u64,
    /// Length of the measured phase, seconds.
    pub duration_s: f64,
    /// Messages sent in the measured phase (`message`s for `call`, whose negotiation is counted
    /// apart; status updates for `fanout`; visits for `churn`).
    pub sent: u64,
    /// Deliveries that should have arrived (for `fanout`, each update once per member).
    pub expected: u64,
    /// Deliveries that arrived.
    pub received: u64,
    /// Deliveries that had not arrived when the drain timeout ended.
    pub lost: u64,
    /// Errors by text.
    pub errors: BTreeMap<String, u64>,
    /// All errors.
    pub error_count: u64,
    /// Operations that could fail: connects, joins, messages sent.
    pub operations: u64,
    /// `error_count / operations`.
    pub error_rate: f64,
    /// Deliveries per second of the measured phase: `received / duration_s`.
    pub throughput_msgs_per_s: f64,
    /// Latency distributions by name: `join`, `relay`, `fanout`, `fanout_last`.
    #[serde(flatten)]
    pub latencies: BTreeMap<String, LatencySummary>,
    /// Scenario-specific values (memory for `idle`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Report {
    /// A report of `scenario` with counts and errors; latencies and extras are added afterwards.
    pub fn new(
        scenario: &str,
        connections: u64,
        duration_s: f64,
        (sent, expected, received): (u64, u64, u64),
        errors: &Errors,
        operations: u64,
    ) -> Report {
        let error_count = errors.total();
        Report {
            scenario: scenario.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("SWITCHBOARD_LOADTEST_COMMIT").map(str::to_owned),
            started_at: String::new(),
            settings: Value::Null,
            connections,
            duration_s,
            sent,
            expected,
            received,
            lost: expected.saturating_sub(received),
            errors: errors.counts().clone(),
            error_count,
            operations,
            error_rate: if operations == 0 {
                if error_count > 0 { 1.0 } else { 0.0 }
            } else {
                error_count as f64 / operations as f64
            },
            throughput_msgs_per_s: if duration_s > 0.0 {
                received as f64 / duration_s
            } else {
                0.0
            },
            latencies: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Records how the run was made: its flags and when it started.
    pub fn describe_run(&mut self, settings: Value, started: SystemTime) {
        self.settings = settings;
        self.started_at = humantime::format_rfc3339_seconds(started).to_string();
    }

    /// Why the run failed, or `None` when it passed: a lost message, or more errors than allowed.
    pub fn failure(&self, max_error_rate: f64) -> Option<String> {
        if self.lost > 0 {
            return Some(format!("{} message(s) lost", self.lost));
        }
        if self.error_rate > max_error_rate {
            return Some(format!(
                "error rate {:.6} exceeds --max-error-rate {max_error_rate}",
                self.error_rate
            ));
        }
        None
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot serialize the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario     {}", self.scenario);
        let built = match &self.commit {
            Some(commit) => format!("{} (commit {commit})", self.version),
            None => self.version.clone(),
        };
        let _ = writeln!(
            out,
            "run          switchboard-loadtest {built}, started {}",
            self.started_at
        );
        let _ = writeln!(out, "connections  {}", self.connections);
        let _ = writeln!(out, "duration     {:.2} s", self.duration_s);
        let _ = writeln!(
            out,
            "messages     sent {}  expected {}  received {}  lost {}  (measured phase)",
            self.sent, self.expected, self.received, self.lost
        );
        let _ = writeln!(
            out,
            "throughput   {:.1} msgs/s  (received / duration)",
            self.throughput_msgs_per_s
        );
        let _ = writeln!(
            out,
            "errors       {} of {} operations (rate {:.6})",
            self.error_count, self.operations, self.error_rate
        );
        for (text, n) in &self.errors {
            let _ = writeln!(out, "  {n:>8}  {text}");
        }
        if !self.latencies.is_empty() {
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
                "latency", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
            );
            for (name, s) in &self.latencies {
                let ms = |us: u64| us as f64 / 1000.0;
                let _ = writeln!(
                    out,
                    "{:<12} {:>8} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                    name,
                    s.count,
                    ms(s.p50_us),
                    ms(s.p90_us),
                    ms(s.p99_us),
                    ms(s.p999_us),
                    ms(s.max_us)
                );
            }
        }
        for (name, value) in &self.extra {
            let _ = writeln!(out, "{name:<22} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;
    use std::time::Duration;

    fn sample() -> Report {
        let mut errors = Errors::default();
        errors.add("server error: rate limit exceeded");
        let mut report = Report::new("call", 4, 2.0, (100, 100, 98), &errors, 108);
        let mut relay = Latency::new();
        relay.record(Duration::from_micros(250));
        report.latencies.insert("relay".into(), relay.summary());
        report
            .latencies
            .insert("join".into(), Latency::new().summary());
        report
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["scenario"], "call");
        assert_eq!(json["sent"], 100);
        assert_eq!(json["received"], 98);
        assert_eq!(json["lost"], 2);
        assert_eq!(json["errors"]["server error: rate limit exceeded"], 1);
        assert_eq!(json["throughput_msgs_per_s"], 49.0);
        for name in ["join", "relay"] {
            for field in ["p50_us", "p99_us", "p999_us", "max_us", "count"] {
                assert!(json[name][field].is_u64(), "{name}.{field} in {json}");
            }
        }
        assert_eq!(json["relay"]["count"], 1);
        assert_eq!(json["relay"]["p50_us"], 250);
    }

    #[test]
    fn the_run_is_described() {
        let mut report = sample();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        report.describe_run(serde_json::json!({"rate": 5.0}), started);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["started_at"], "2026-09-21T14:13:20Z");
        assert_eq!(json["settings"]["rate"], 5.0);
        assert!(report.table().contains("started 2026-09-21T14:13:20Z"));
    }

    #[test]
    fn verdict() {
        let report = sample();
        assert!(report.failure(1.0).unwrap().contains("2 message(s) lost"));
        let mut clean = Report::new("call", 1, 1.0, (5, 5, 5), &Errors::default(), 7);
        assert_eq!(clean.failure(0.0), None);
        clean.error_rate = 0.1;
        assert!(clean.failure(0.0).is_some());
        assert_eq!(clean.failure(0.2), None);
        assert!(report.table().contains("relay"));
    }
}
