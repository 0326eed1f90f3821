//! The process's own metrics (`process_*`): the `prometheus` crate's collector, except for
//! `process_cpu_seconds_total`, which that collector counts in whole seconds (an integer counter), so
//! a `rate()` over a minute of an idle process reads 0 and then jumps. Here it is fractional, to the
//! clock tick (usually 10 ms): `utime + stime` of `/proc/self/stat` over the ticks per second.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Opts};

/// The name of the CPU counter this collector replaces.
pub const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// `process_*` of this process (Linux; elsewhere nothing is registered).
pub struct ProcessCollector {
    inner: prometheus::process_collector::ProcessCollector,
    cpu: Counter,
}

impl ProcessCollector {
    /// The collector of the calling process.
    pub fn for_self() -> Result<Self, prometheus::Error> {
        Ok(ProcessCollector {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
            cpu: Counter::with_opts(Opts::new(
                CPU_SECONDS,
                "Total user and system CPU time spent in seconds.",
            ))?,
        })
    }

    /// User plus system CPU seconds of this process so far (`None` if `/proc` cannot tell).
    fn cpu_seconds() -> Option<f64> {
        let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
        let ticks = procfs::ticks_per_second();
        (ticks > 0).then(|| (stat.utime + stat.stime) as f64 / ticks as f64)
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.inner
            .desc()
            .into_iter()
            .filter(|d| d.fq_name != CPU_SECONDS)
            .chain(self.cpu.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(seconds) = Self::cpu_seconds() {
            // A counter only grows: add what the kernel counted since the last scrape.
            let delta = seconds - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        let mut families: Vec<MetricFamily> = self
            .inner
            .collect()
            .into_iter()
            .filter(|f| f.name() != CPU_SECONDS)
            .collect();
        families.extend(self.cpu.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_fractional_and_reported_once() {
        let collector = ProcessCollector::for_self().unwrap_or_else(|e| panic!("{e}"));
        // Burn a little CPU, so the counter is above 0 but (almost surely) not a whole number.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(120) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let families = collector.collect();
        let cpu: Vec<_> = families
            .iter()
            .filter(|f| f.name() == CPU_SECONDS)
            .collect();
        assert_eq!(cpu.len(), 1, "one CPU family");
        let seconds = cpu[0].get_metric()[0].get_counter().get_value();
        assert!(seconds > 0.0, "{seconds}");
        assert!(seconds.fract() != 0.0, "whole seconds: {seconds}");
        assert!(
            families
                .iter()
                .any(|f| f.name() == "process_resident_memory_bytes")
        );
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(collector))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
