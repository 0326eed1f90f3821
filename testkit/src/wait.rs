//! Bounded polling: the way tests wait for something another process does.
//!
//! A process in another address space cannot notify the test, so tests poll, but always against a
//! deadline and with a short interval, so a failure shows up as an error after the timeout rather
//! than a hang, and success is noticed within milliseconds.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

/// How often conditions are checked: short enough to add little latency to a test, long enough
/// not to busy-loop the machine the processes under test run on.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` every 20 ms until it returns `true`, or fails once `timeout` has passed.
///
/// The condition is always checked at least once, and once more at the deadline. Add what was awaited
/// with [`anyhow::Context`] at the call site:
///
/// ```no_run
/// # async fn example(admin: std::net::SocketAddr) -> anyhow::Result<()> {
/// use std::time::Duration;
/// use anyhow::Context;
/// use switchboard_testkit::{http_get, wait_until};
///
/// wait_until(Duration::from_secs(5), || async {
///     matches!(http_get(admin, "/readyz").await, Ok((200, _)))
/// })
/// .await
/// .context("the edge never became ready")?;
/// # Ok(())
/// # }
/// ```
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep_until((Instant::now() + POLL_INTERVAL).min(deadline)).await;
    }
}

/// The last `lines` lines of a log, for error messages.
/// A log file's content so far (empty if it cannot be read: a process that has not written yet).
pub(crate) fn read_log(path: &std::path::Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

pub(crate) fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
