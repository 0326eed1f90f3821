//! The server's resident memory, from its Prometheus endpoint or from `/proc`.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::client::loopback_addr_with_scheme;

/// Bound on one metrics request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to read the server's memory from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A Prometheus endpoint (loopback `http://` URL) with `process_resident_memory_bytes`.
    Metrics(String),
    /// A local process id (VmRSS of `/proc/<pid>/status`).
    Pid(u32),
}

impl Source {
    /// The server's resident set size in bytes now.
    pub async fn rss_bytes(&self) -> Result<u64> {
        match self {
            Source::Metrics(url) => {
                let body = tokio::time::timeout(REQUEST_TIMEOUT, http_get(url))
                    .await
                    .map_err(|_| anyhow!("GET {url} timed out"))??;
                metric_value(&body, "process_resident_memory_bytes")
                    .with_context(|| format!("{url} has no process_resident_memory_bytes"))
            }
            Source::Pid(pid) => {
                let path = format!("/proc/{pid}/status");
                let text = tokio::fs::read_to_string(&path)
                    .await
                    .with_context(|| format!("cannot read {path}"))?;
                vm_rss_bytes(&text).with_context(|| format!("no VmRSS in {path}"))
            }
        }
    }
}

/// A plain HTTP/1.0 GET of a loopback URL; the body if the status is 200.
async fn http_get(url: &str) -> Result<String> {
    let addr = loopback_addr_with_scheme(url, "http")?;
    let uri: Uri = url.parse()?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("incomplete HTTP response from {url}"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The value of an unlabelled metric in the Prometheus text format.
fn metric_value(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.split_once(' ')?;
            (series == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
}

/// VmRSS of a `/proc/<pid>/status` text, in bytes.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metrics_and_proc() {
        let body = "# HELP process_resident_memory_bytes x\n# TYPE process_resident_memory_bytes gauge\n\
                    process_resident_memory_bytes 1.2345678e7\nprocess_virtual_memory_bytes 9\n";
        assert_eq!(
            metric_value(body, "process_resident_memory_bytes"),
            Some(12_345_678)
        );
        assert_eq!(metric_value(body, "nope"), None);
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(vm_rss_bytes(status), Some(2048 * 1024));
    }

    #[tokio::test]
    async fn reads_own_rss_and_refuses_remote_metrics() {
        let own = Source::Pid(std::process::id()).rss_bytes().await.unwrap();
        assert!(own > 0);
        let remote = Source::Metrics("http://192.0.2.1:9233/metrics".into());
        assert!(remote.rss_bytes().await.is_err());
    }
}
