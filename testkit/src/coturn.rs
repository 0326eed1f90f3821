//! A real TURN server for tests: coturn's `turnserver` on 127.0.0.1 with the REST-API credentials
//! Switchboard mints (`use-auth-secret` and one `static-auth-secret` per secret), killed on drop.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use switchboard_testkit::coturn::{Allocation, Coturn, allocate};
//!
//! let coturn = Coturn::start(&["new-secret", "old-secret"]).await?;
//! // `username` and `password` as minted with one of the secrets:
//! # let (username, password) = ("", "");
//! let outcome = allocate(coturn.addr(), username, password).await?;
//! assert!(matches!(outcome, Allocation::Granted { .. }));
//! # Ok(())
//! # }
//! ```
//!
//! coturn accepts several `static-auth-secret=` lines and tries each in turn, which is what rotation
//! needs. It cannot be told to listen on port 0 and report the port, so a free one is picked here
//! (free for TCP and UDP at once), and start-up is awaited with real STUN binding requests, never a
//! sleep. coturn shares its listening ports with `SO_REUSEPORT`, so two servers given the same port
//! would both start and split the requests between them: the ports handed out are remembered for as
//! long as their server runs, and never given to another server of this process (test binaries
//! run one at a time; the tests in one of them run in parallel).
//!
//! The TURN side is `turnutils_uclient` (also from Debian's coturn package): [`allocate`] makes one
//! real TURN allocation with the given credentials.
//!
//! # Layout
//! - this file: [`Coturn`], the server;
//! - `allocate`: [`allocate`] and its [`Allocation`];
//! - `ports`: the free ports for the listener and the relays.

mod allocate;
mod ports;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

pub use self::allocate::{Allocation, allocate};
use self::ports::Reserved;
use crate::tempdir::TempDir;
use crate::wait::{POLL_INTERVAL, tail};

/// The realm coturn authenticates in; REST-API credentials do not depend on it.
pub const REALM: &str = "switchboard.test";

/// Bound on start-up, until coturn answers a STUN binding request (typically tens of milliseconds).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one STUN binding request waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// Log lines quoted in error messages.
const LOG_TAIL_LINES: usize = 30;

/// What to tell a developer whose machine lacks coturn.
pub(crate) const INSTALL_HINT: &str =
    "install Debian's coturn package: run scripts/test, which does, or `apt-get install coturn`";

/// A running `turnserver`, killed (SIGKILL) and reaped on drop.
///
/// Its files live in a temporary directory ([`Coturn::dir`]): `turnserver.conf`, `turnserver.log`,
/// its SQLite user database (empty: REST credentials need none), and whatever a test puts there.
#[derive(Debug)]
pub struct Coturn {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    // Dropped after the process: the ports stay reserved, and the files kept, until it is dead.
    _ports: Reserved,
    dir: TempDir,
}

impl Coturn {
    /// Starts `turnserver` on a free loopback port with `use-auth-secret` and these secrets (at
    /// least one), and waits until it answers STUN (at most 10 s). Loopback peers are allowed (the
    /// relays are on 127.0.0.1 too); no TLS, DTLS or admin CLI.
    pub async fn start(secrets: &[&str]) -> Result<Coturn> {
        if secrets.is_empty() {
            bail!("coturn needs at least one static-auth-secret");
        }
        if let Some(bad) = secrets
            .iter()
            .position(|s| s.is_empty() || s.chars().any(char::is_control))
        {
            bail!("secret #{} is empty or has a control character", bad + 1);
        }
        let dir = TempDir::new("coturn")?;
        let ports = ports::reserve()?;
        let log_path = dir.path().join("turnserver.log");
        let config_path = dir.path().join("turnserver.conf");
        let config = config(dir.path(), &ports, &log_path, secrets);
        std::fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let output = dir.path().join("turnserver.out");
        let output = std::fs::File::create(&output)
            .with_context(|| format!("cannot create {}", output.display()))?;

        // -c: without it turnserver would read /etc/turnserver.conf as well.
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    anyhow::anyhow!("turnserver is not installed: {INSTALL_HINT}")
                }
                _ => anyhow::Error::new(e).context("cannot start turnserver"),
            })?;
        // From here on the guard exists, so every early return below kills the child.
        let mut coturn = Coturn {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, ports.listen)),
            log_path,
            _ports: ports,
            dir,
        };
        coturn.wait_ready().await?;
        Ok(coturn)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if stun_binding(self.addr).await {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "turnserver exited ({status}) before answering STUN; its log ends:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "turnserver did not answer STUN on {} within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its TURN URL for a browser or `--turn-url`: `turn:127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("turn:{}", self.addr)
    }

    /// Its temporary directory, removed on drop (a test may put files there too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log so far. Refused credentials show as `check_stun_auth` errors naming the username.
    pub fn log(&self) -> String {
        crate::wait::read_log(&self.log_path)
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), LOG_TAIL_LINES)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration file: everything on 127.0.0.1, REST-API credentials only, files in `dir`.
fn config(dir: &Path, ports: &Reserved, log_path: &Path, secrets: &[&str]) -> String {
    let mut config = String::from("# Written by switchboard-testkit for one test.\n");
    for line in [
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        "use-auth-secret",
        // Tests relay between processes on this machine; coturn refuses loopback peers otherwise.
        "allow-loopback-peers",
        "no-tls",
        "no-dtls",
        "no-cli",
        // One address has no alternate port for NAT behaviour discovery; say so rather than have
        // coturn warn about it.
        "no-rfc5780",
        "no-stdout-log",
        // One file, not one per day with the date in its name.
        "simple-log",
    ] {
        let _ = writeln!(config, "{line}");
    }
    // Writing to a String cannot fail.
    let _ = writeln!(config, "realm={REALM}");
    let _ = writeln!(config, "listening-port={}", ports.listen);
    let _ = writeln!(config, "min-port={}", ports.relay.start());
    let _ = writeln!(config, "max-port={}", ports.relay.end());
    for secret in secrets {
        let _ = writeln!(config, "static-auth-secret={secret}");
    }
    // Its own files, not /var/lib/turn/turndb and /var/run/turnserver.pid.
    let _ = writeln!(config, "log-file={}", log_path.display());
    let _ = writeln!(config, "userdb={}", dir.join("turndb").display());
    let _ = writeln!(config, "pidfile={}", dir.join("turnserver.pid").display());
    config
}

/// Whether a STUN binding request (RFC 8489) to `addr` over UDP gets its success response.
async fn stun_binding(addr: SocketAddr) -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await else {
        return false;
    };
    if socket.connect(addr).await.is_err() {
        return false;
    }
    let transaction = transaction_id();
    let mut request = Vec::with_capacity(20);
    request.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]); // Binding request, no attributes
    request.extend_from_slice(&MAGIC_COOKIE);
    request.extend_from_slice(&transaction);
    if socket.send(&request).await.is_err() {
        return false;
    }
    let mut response = [0u8; 512];
    // Nothing listening shows as an ICMP port unreachable, reported by recv at once.
    match timeout(PROBE_TIMEOUT, socket.recv(&mut response)).await {
        Ok(Ok(len)) => {
            len >= 20 && response[..2] == [0x01, 0x01] && response[8..20] == transaction[..]
        }
        _ => false,
    }
}

/// STUN's magic cookie, bytes 4 to 8 of every message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// A transaction id that differs between probes: a late answer to an earlier one is not mistaken
/// for this one's.
fn transaction_id() -> [u8; 12] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[4..].copy_from_slice(&nanos.to_be_bytes());
    id
}
