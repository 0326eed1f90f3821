//! One nats-server node: its configuration file, its process, and the ports it reports.
//!
//! A node lives in its own directory: `nats.conf`, `nats-server.log` (appended across restarts),
//! `ports/` (nats-server's ports file) and `store/` (JetStream). Ports are chosen by nats-server
//! (`-1` means random) and read back from `ports/nats-server_<pid>.ports`, which it writes once all
//! of its listeners are bound.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::time::Instant;

use crate::wait::{POLL_INTERVAL, tail};

/// Bound on one node's start-up, until its ports file appears (typically tens of milliseconds).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Log lines quoted in error messages.
pub(super) const LOG_TAIL_LINES: usize = 30;

/// Where a node listens, as it reported in its ports file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ports {
    /// NATS clients.
    pub(super) client: u16,
    /// Routes from the other nodes; 0 for a single node, which has no cluster port.
    pub(super) cluster: u16,
    /// The HTTP monitoring endpoints (`/healthz`, `/jsz`, `/routez`).
    pub(super) monitoring: u16,
}

/// A running nats-server, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub(super) struct Running(pub(super) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a node joins its cluster.
pub(super) struct Clustering<'a> {
    /// The cluster name, unique per [`super::NatsCluster`], so that nodes of clusters of parallel
    /// tests reject each other should a reused port ever connect them.
    pub(super) name: &'a str,
    /// Cluster ports of the nodes already running.
    pub(super) routes: &'a [u16],
}

/// Writes the node's configuration to `<dir>/nats.conf` and returns its path.
///
/// `ports` asks for specific ports (a restart keeping its URLs), `None` for random ones.
/// `clustering` is `None` for a single node, which runs JetStream standalone.
pub(super) fn write_config(
    name: &str,
    dir: &Path,
    ports: Option<Ports>,
    clustering: Option<&Clustering<'_>>,
    token: Option<&str>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("ports"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let port = |pick: fn(&Ports) -> u16| ports.map_or(-1, |p| i32::from(pick(&p)));
    let quoted = |path: PathBuf| Value::from(path.to_string_lossy()).to_string();

    let mut config = String::from("# Written by switchboard-testkit for one test.\n");
    // Writing to a String cannot fail.
    let _ = writeln!(config, "server_name: {}", Value::from(name));
    let _ = writeln!(config, "listen: \"127.0.0.1:{}\"", port(|p| p.client));
    let _ = writeln!(config, "http: \"127.0.0.1:{}\"", port(|p| p.monitoring));
    let _ = writeln!(config, "ports_file_dir: {}", quoted(dir.join("ports")));
    // Small limits: tests store little, and the defaults (a share of the machine's memory and disk)
    // would let a runaway test fill the machine.
    let _ = writeln!(
        config,
        "jetstream {{\n  store_dir: {}\n  max_memory_store: 268435456\n  max_file_store: 1073741824\n}}",
        quoted(dir.join("store"))
    );
    if let Some(token) = token {
        // Clients must present the token; routes between the nodes are not affected.
        let _ = writeln!(
            config,
            "authorization {{\n  token: {}\n}}",
            Value::from(token)
        );
    }
    if let Some(clustering) = clustering {
        let _ = writeln!(config, "cluster {{");
        let _ = writeln!(config, "  name: {}", Value::from(clustering.name));
        let _ = writeln!(config, "  listen: \"127.0.0.1:{}\"", port(|p| p.cluster));
        // nats-server 2.9 refuses to start clustered JetStream without at least one configured
        // route, but the first node cannot know anyone's port yet. Port 0 satisfies that check and
        // can never be connected to (connect(2) to port 0 is refused), so it costs one error line in
        // the log; the other nodes then route to this one and gossip completes the mesh.
        let routes: Vec<u16> = match clustering.routes {
            [] => vec![0],
            routes => routes.to_vec(),
        };
        let routes: Vec<String> = routes
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let _ = writeln!(config, "  routes: [{}]\n}}", routes.join(", "));
    }

    let path = dir.join("nats.conf");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Starts nats-server with `config` and waits until it reports its ports.
pub(super) async fn spawn(
    binary: &Path,
    name: &str,
    dir: &Path,
    config: &Path,
) -> Result<(Running, Ports)> {
    let log_path = log_path(dir);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    // Restarts append to the same log; this line tells the runs apart.
    writeln!(log, "==== switchboard-testkit: starting {name}")?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut running = Running(child);

    let ports_dir = dir.join("ports");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(ports) = read_ports(&ports_dir, running.0.id()) {
            return Ok((running, ports));
        }
        if let Some(status) = running.0.try_wait()? {
            bail!(
                "nats-server {name} exited ({status}) during start-up; {}",
                log_tail(name, dir)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "nats-server {name} reported no ports within {START_TIMEOUT:?}; {}",
                log_tail(name, dir)
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Reads `<executable>_<pid>.ports`. The file is not written atomically, so a half-written one reads
/// as `None` and the next poll tries again. A killed node leaves its file behind; the pid in the
/// name keeps a restart from reading the old one.
fn read_ports(ports_dir: &Path, pid: u32) -> Option<Ports> {
    let suffix = format!("_{pid}.ports");
    let entry = std::fs::read_dir(ports_dir)
        .ok()?
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().ends_with(&suffix))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    // {"nats":["nats://127.0.0.1:P"],"monitoring":["http://127.0.0.1:Q"],"cluster":["nats://..."]}
    let json: Value = serde_json::from_str(&text).ok()?;
    let port = |key: &str| -> Option<u16> {
        let url = json.get(key)?.get(0)?.as_str()?;
        url.rsplit_once(':')?.1.parse().ok()
    };
    Some(Ports {
        client: port("nats")?,
        cluster: port("cluster").unwrap_or(0),
        monitoring: port("monitoring")?,
    })
}

/// The node's log file, kept across restarts.
pub(super) fn log_path(dir: &Path) -> PathBuf {
    dir.join("nats-server.log")
}

/// The end of a node's log, headed by its path, for error messages.
pub(super) fn log_tail(name: &str, dir: &Path) -> String {
    let path = log_path(dir);
    let log = std::fs::read(&path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    format!(
        "log of {name} ({}) ends:\n{}",
        path.display(),
        tail(&log, LOG_TAIL_LINES)
    )
}

/// The oldest nats-server our async-nats understands (docs/operations.md): 2.9's JetStream replies
/// do not parse.
const MIN_VERSION: (u32, u32) = (2, 10);

/// Finds nats-server: `SWITCHBOARD_NATS_SERVER_BIN`, else the pinned release `scripts/nats-server`
/// installs under the workspace's `target/tools/`, else `PATH`; and refuses one older than
/// [`MIN_VERSION`] with a clear message rather than letting JetStream calls fail obscurely later.
pub(super) fn binary() -> Result<PathBuf> {
    static FOUND: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| find().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn find() -> Result<PathBuf> {
    let path = if let Some(path) = std::env::var_os("SWITCHBOARD_NATS_SERVER_BIN") {
        PathBuf::from(path)
    } else {
        let pinned = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/tools/nats-server/bin/nats-server");
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default();
        std::iter::once(pinned)
            .chain(on_path.into_iter().map(|dir| dir.join("nats-server")))
            .find(|path| path.is_file())
            .context(
                "nats-server not found: run scripts/nats-server (installs the pinned release) \
                 or set SWITCHBOARD_NATS_SERVER_BIN",
            )?
    };
    let output = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text)
        .with_context(|| format!("{}: unexpected --version output {text:?}", path.display()))?;
    if version < MIN_VERSION {
        bail!(
            "{} is nats-server {}.{}; Switchboard needs {}.{} or later \
             (run scripts/nats-server, or set SWITCHBOARD_NATS_SERVER_BIN)",
            path.display(),
            version.0,
            version.1,
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(path)
}

/// `nats-server: v2.15.1` -> (2, 15).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("nats-server: v")?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_parse_from_the_servers_own_words() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.10") < Some((2, 10)));
        assert_eq!(parse_version("something else"), None);
    }
}
